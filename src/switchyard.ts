/**
 * The composition root: builds clusters, the router and the listener from a validated
 * config, and owns the process-wide lifecycle (drain, shutdown).
 * @module
 */
import { Cluster } from "./cluster/cluster.ts";
import type { Config } from "./config/schema.ts";
import { componentLogger } from "./log/logger.ts";
import type { CallObserver } from "./proxy/call_record.ts";
import { ProxyListener } from "./proxy/listener.ts";
import { Router } from "./proxy/router.ts";

const log = componentLogger("lifecycle");

/** A running proxy. */
export class Switchyard {
  /** The effective config. */
  readonly config: Config;
  /** Clusters by name. */
  readonly clusters: ReadonlyMap<string, Cluster>;
  /** Told about every finished call. */
  readonly callObservers: CallObserver[];
  readonly #listener: ProxyListener;

  private constructor(
    config: Config,
    clusters: ReadonlyMap<string, Cluster>,
    observers: CallObserver[],
    listener: ProxyListener,
  ) {
    this.config = config;
    this.clusters = clusters;
    this.callObservers = observers;
    this.#listener = listener;
  }

  /** Builds everything and starts listening. */
  static async start(config: Config): Promise<Switchyard> {
    const clusters = new Map(
      Object.entries(config.clusters).map(([name, cluster]) => [name, new Cluster(name, cluster)]),
    );
    const router = new Router(config.routes, (name) => clusters.get(name)!);
    const observers: CallObserver[] = [];
    const listener = await ProxyListener.start(
      { listen: config.listen, tls: config.tls && (await readTls(config.tls)) },
      { router, observers },
    );
    return new Switchyard(config, clusters, observers, listener);
  }

  /** The proxy listener's bound address. */
  get listenAddress(): string {
    return this.#listener.address;
  }

  /** True once draining has begun. */
  get draining(): boolean {
    return this.#listener.draining;
  }

  /** Stops accepting, sends GOAWAY, and waits for in-flight calls up to `drainTimeout`. */
  async drain(): Promise<void> {
    log.info("draining: GOAWAY sent, waiting up to {timeoutMs}ms for in-flight calls", {
      timeoutMs: this.config.drainTimeout,
    });
    await this.#listener.drain(this.config.drainTimeout);
  }

  /** Drains, then closes every upstream connection. */
  async shutdown(): Promise<void> {
    await this.drain();
    for (const cluster of this.clusters.values()) cluster.close();
    log.info("shutdown complete");
  }
}

async function readTls(tls: { cert: string; key: string }): Promise<{ cert: string; key: string }> {
  return { cert: await Deno.readTextFile(tls.cert), key: await Deno.readTextFile(tls.key) };
}
