/**
 * The admin listener: the admin application on `Deno.serve`, separate from the proxy's
 * listener so operators can reach it while the proxy drains.
 * @module
 */
import { formatHostPort, parseHostPort } from "../config/address.ts";
import { componentLogger } from "../log/logger.ts";
import type { ProxyMetrics } from "../metrics/metrics.ts";
import type { AdminTarget } from "./target.ts";
import { createAdminApp } from "./app.ts";

const log = componentLogger("admin");

/** A running admin listener. */
export class AdminServer {
  /** The bound `host:port`. */
  readonly address: string;
  readonly #server: Deno.HttpServer<Deno.NetAddr>;

  private constructor(server: Deno.HttpServer<Deno.NetAddr>) {
    this.#server = server;
    this.address = formatHostPort({ host: server.addr.hostname, port: server.addr.port });
  }

  /** Binds `switchyard.config.admin.listen` and serves the admin API. */
  static start(
    switchyard: AdminTarget,
    options: { readonly token: string | undefined; readonly metrics: ProxyMetrics },
  ): AdminServer {
    const app = createAdminApp(switchyard, options);
    const { host, port } = parseHostPort(switchyard.config.admin.listen)!;
    // A silent onListen: Deno's default banner would go to stdout, which the access log owns.
    const server = Deno.serve({ hostname: host, port, onListen: () => {} }, app.fetch);
    const admin = new AdminServer(server);
    log.info("admin API on http://{address} ({auth})", {
      address: admin.address,
      auth: options.token === undefined ? "no token" : "bearer token required",
    });
    return admin;
  }

  /** Stops accepting and waits for in-flight admin requests. */
  async stop(): Promise<void> {
    await this.#server.shutdown();
  }
}
