/**
 * The composition root: builds clusters, the router and the listener from a validated
 * config, and owns the process-wide lifecycle (drain, shutdown).
 * @module
 */
import { AccessLog } from "./access_log/access_log.ts";
import { resolveAdminToken } from "./admin/auth.ts";
import { AdminServer } from "./admin/server.ts";
import { Cluster } from "./cluster/cluster.ts";
import type { Config } from "./config/schema.ts";
import { RedisDiscovery } from "./discovery/redis_discovery.ts";
import { connectionOptions } from "./h2/options.ts";
import { HealthSupervisor } from "./health/supervisor.ts";
import { componentLogger } from "./log/logger.ts";
import { ProxyMetrics } from "./metrics/metrics.ts";
import type { CallObserver } from "./proxy/call_record.ts";
import { ProxyListener } from "./proxy/listener.ts";
import { Router } from "./proxy/router.ts";
import { DialGate } from "./upstream/dial_gate.ts";

const log = componentLogger("lifecycle");

/** A running proxy. */
export class Switchyard {
  /** The effective config. */
  readonly config: Config;
  /** Clusters by name. */
  readonly clusters: ReadonlyMap<string, Cluster>;
  /** Told about every finished call. */
  readonly callObservers: CallObserver[];
  /** Live membership from Redis; undefined when no cluster has `discovery`. */
  readonly discovery: RedisDiscovery | undefined;
  readonly #listener: ProxyListener;
  readonly #health: HealthSupervisor;
  #admin: AdminServer | undefined;
  #accessLog: AccessLog | undefined;

  private constructor(
    config: Config,
    clusters: ReadonlyMap<string, Cluster>,
    observers: CallObserver[],
    listener: ProxyListener,
    health: HealthSupervisor,
    discovery: RedisDiscovery | undefined,
  ) {
    this.config = config;
    this.clusters = clusters;
    this.callObservers = observers;
    this.#listener = listener;
    this.#health = health;
    this.discovery = discovery;
  }

  /** Builds everything and starts listening. */
  static async start(config: Config): Promise<Switchyard> {
    // First, so a missing admin token stops the process before anything binds or connects.
    const adminToken = resolveAdminToken(config.admin);
    const upstream = {
      connection: connectionOptions(config.http2, "client"),
      maxConnectionsPerBackend: config.http2.upstream.maxConnectionsPerBackend,
      dialGate: new DialGate(config.http2.upstream.maxConcurrentDials),
    };
    const clusters = new Map(
      Object.entries(config.clusters).map((
        [name, cluster],
      ) => [name, new Cluster(name, cluster, upstream)]),
    );
    const router = new Router(config.routes, (name) => clusters.get(name)!);
    const observers: CallObserver[] = [];
    const health = HealthSupervisor.start(clusters.values(), observers);
    const discovery = await RedisDiscovery.start(config, clusters);
    const listener = ProxyListener.start(
      {
        listen: config.listen,
        tls: config.tls && (await readTls(config.tls)),
        http2: config.http2,
      },
      { router, observers },
    );
    const proxy = new Switchyard(config, clusters, observers, listener, health, discovery);
    await proxy.#startAdminPlane(adminToken);
    return proxy;
  }

  /** Metrics, the access log and the admin listener: everything operators look at. */
  async #startAdminPlane(adminToken: string | undefined): Promise<void> {
    const metrics = new ProxyMetrics(this);
    this.callObservers.push(metrics.observeCall);
    if (this.config.accessLog.enabled) {
      this.#accessLog = await AccessLog.open(
        this.config.accessLog.path,
        this.config.accessLog.maxBufferedBytes,
      );
      this.callObservers.push(this.#accessLog.observe);
    }
    this.#admin = AdminServer.start(this, { token: adminToken, metrics });
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

  /** Drains, stops health checking, then closes every upstream connection. */
  async shutdown(): Promise<void> {
    await this.drain();
    this.#health.stop();
    this.discovery?.stop();
    for (const cluster of this.clusters.values()) cluster.close();
    await this.#admin?.stop();
    await this.#accessLog?.close();
    log.info("shutdown complete");
  }
}

async function readTls(tls: { cert: string; key: string }): Promise<{ cert: string; key: string }> {
  return { cert: await Deno.readTextFile(tls.cert), key: await Deno.readTextFile(tls.key) };
}
