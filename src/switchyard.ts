/**
 * The composition root: builds the control plane (clusters, health, discovery, admin) and
 * the data planes from a validated config, and owns the process-wide lifecycle (drain,
 * shutdown). The two planes meet only at {@link DataPlanes}: snapshots go out, passive
 * health signals, stats and metrics come back.
 * @module
 */
import { resolveAdminToken } from "./admin/auth.ts";
import { AdminServer } from "./admin/server.ts";
import { Cluster } from "./cluster/cluster.ts";
import type { Config } from "./config/schema.ts";
import type { TlsMaterial } from "./config/tls_material.ts";
import { DataPlanes } from "./dataplane/data_planes.ts";
import type { WorkerMetrics } from "./dataplane/data_planes.ts";
import type { DataPlaneStats } from "./dataplane/stats.ts";
import { RedisDiscovery } from "./discovery/redis_discovery.ts";
import { HealthSupervisor } from "./health/supervisor.ts";
import { componentLogger, type LogLevel } from "./log/logger.ts";
import { ProxyMetrics } from "./metrics/metrics.ts";

const log = componentLogger("lifecycle");

/** How the process runs, beyond the config. */
export interface RunSettings {
  /** The data-plane workers' log level. */
  readonly logLevel: LogLevel;
  /** Let tests crash a worker (`SWITCHYARD_DEBUG_HOOKS=1`). */
  readonly debugHooks: boolean;
}

/** The data-plane worker count `workers` asks for: `"auto"` is one per core. */
export function workerCount(workers: Config["workers"]): number {
  return workers === "auto" ? Math.max(1, navigator.hardwareConcurrency) : workers;
}

/** A running proxy. */
export class Switchyard {
  /** The effective config. */
  readonly config: Config;
  /** Clusters by name. */
  readonly clusters: ReadonlyMap<string, Cluster>;
  /** Live membership from Redis; undefined when no cluster has `discovery`. */
  readonly discovery: RedisDiscovery | undefined;
  /** The data planes. */
  readonly dataPlanes: DataPlanes;
  readonly #health: HealthSupervisor;
  #admin: AdminServer | undefined;
  #draining = false;

  private constructor(
    config: Config,
    clusters: ReadonlyMap<string, Cluster>,
    dataPlanes: DataPlanes,
    health: HealthSupervisor,
    discovery: RedisDiscovery | undefined,
  ) {
    this.config = config;
    this.clusters = clusters;
    this.dataPlanes = dataPlanes;
    this.#health = health;
    this.discovery = discovery;
  }

  /** Builds everything and starts listening, with the PEM files `tls` read from the config. */
  static async start(
    config: Config,
    tls: TlsMaterial,
    settings: RunSettings,
  ): Promise<Switchyard> {
    // First, so a missing admin token stops the process before anything binds or connects.
    const adminToken = resolveAdminToken(config.admin);
    const dataPlanes = new DataPlanes();
    const clusters = new Map(
      Object.entries(config.clusters).map((
        [name, cluster],
      ) => [name, new Cluster(name, cluster, dataPlanes)]),
    );
    const health = HealthSupervisor.start(clusters.values());
    const discovery = await RedisDiscovery.start(config, clusters);
    for (const cluster of clusters.values()) cluster.flush();
    const workers = workerCount(config.workers);
    try {
      await dataPlanes.start({
        config,
        workers,
        tls,
        logLevel: settings.logLevel,
        debugHooks: settings.debugHooks,
        onOutcomes: (batch) => health.observeOutcomes(batch),
      });
    } catch (error) {
      health.stop();
      discovery?.stop();
      throw error;
    }
    log.info("listening on {address} ({protocol}, {workers} data-plane workers)", {
      address: config.listen,
      protocol: config.tls ? "h2 over TLS" : "h2c",
      workers,
    });
    if (config.grpcWeb) {
      log.info("gRPC-Web on {address} ({protocol})", {
        address: config.grpcWeb.listen,
        protocol: config.tls ? "HTTPS" : "HTTP/1.1 and h2c",
      });
    }
    const proxy = new Switchyard(config, clusters, dataPlanes, health, discovery);
    proxy.#admin = AdminServer.start(proxy, {
      token: adminToken,
      metrics: new ProxyMetrics(proxy),
    });
    return proxy;
  }

  /** True once draining has begun. */
  get draining(): boolean {
    return this.#draining;
  }

  /** Every data plane's connectivity and counters. */
  dataPlaneStats(): Promise<DataPlaneStats[]> {
    return this.dataPlanes.stats();
  }

  /** Every data plane's metric series. */
  dataPlaneMetrics(): Promise<WorkerMetrics[]> {
    return this.dataPlanes.metrics();
  }

  /** Settles once every data plane has applied every change made so far. */
  settled(): Promise<void> {
    for (const cluster of this.clusters.values()) cluster.flush();
    return this.dataPlanes.settled();
  }

  /** Stops accepting, sends GOAWAY, and waits for in-flight calls up to `drainTimeout`. */
  async drain(): Promise<void> {
    if (!this.#draining) {
      log.info("draining: GOAWAY sent, waiting up to {timeoutMs}ms for in-flight calls", {
        timeoutMs: this.config.drainTimeout,
      });
    }
    this.#draining = true;
    await this.dataPlanes.drain(this.config.drainTimeout);
  }

  /** Drains, stops health checking and discovery, then closes every data plane. */
  async shutdown(): Promise<void> {
    await this.drain();
    this.#health.stop();
    this.discovery?.stop();
    for (const cluster of this.clusters.values()) cluster.close();
    await this.dataPlanes.close();
    await this.#admin?.stop();
    log.info("shutdown complete");
  }
}
