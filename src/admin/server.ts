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
import { SeriesSampler } from "./series.ts";

const log = componentLogger("admin");

/** A running admin listener, and the status page's sampler that lives and dies with it. */
export class AdminServer {
  /** The bound `host:port`. */
  readonly address: string;
  readonly #server: Deno.HttpServer<Deno.NetAddr>;
  readonly #series: SeriesSampler;

  private constructor(server: Deno.HttpServer<Deno.NetAddr>, series: SeriesSampler) {
    this.#server = server;
    this.#series = series;
    this.address = formatHostPort({ host: server.addr.hostname, port: server.addr.port });
  }

  /**
   * Binds `switchyard.config.admin.listen`, serves the admin API, and starts sampling the
   * series every `admin.seriesInterval`.
   */
  static start(
    switchyard: AdminTarget,
    options: { readonly token: string | undefined; readonly metrics: ProxyMetrics },
  ): AdminServer {
    const series = new SeriesSampler(switchyard, {
      intervalMs: switchyard.config.admin.seriesInterval,
    });
    const app = createAdminApp(switchyard, { ...options, series });
    const { host, port } = parseHostPort(switchyard.config.admin.listen)!;
    // A silent onListen: Deno's default banner would go to stdout, which the access log owns.
    const server = Deno.serve({ hostname: host, port, onListen: () => {} }, app.fetch);
    // Started once the listener is bound, so a failed bind leaves no timer behind.
    series.start();
    const admin = new AdminServer(server, series);
    log.info("admin API on http://{address} ({auth})", {
      address: admin.address,
      auth: options.token === undefined ? "no token" : "bearer token required",
    });
    return admin;
  }

  /** Stops sampling, stops accepting, and waits for in-flight admin requests. */
  async stop(): Promise<void> {
    await this.#series.stop();
    await this.#server.shutdown();
  }
}
