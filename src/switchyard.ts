/**
 * The composition root: builds the control plane (clusters, health, discovery, admin) and
 * the data planes from a validated config, and owns the process-wide lifecycle (drain,
 * shutdown). The two planes meet only at {@link DataPlanes}: snapshots go out, passive
 * health signals, stats and metrics come back.
 * @module
 */
import { resolveAdminToken } from "./admin/auth.ts";
import { AffinityService } from "./affinity/service.ts";
import { AdminServer } from "./admin/server.ts";
import { Cluster } from "./cluster/cluster.ts";
import type { Config } from "./config/schema.ts";
import type { TlsMaterial } from "./config/tls.ts";
import { ConfigError } from "./config/load.ts";
import { ConfigWatcher } from "./config/watch.ts";
import {
  changedSections,
  keepRestartOnly,
  type LoadedConfig,
  type ReloadResult,
  type ReloadStatus,
} from "./config/reload.ts";
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
  /**
   * Reads the config again for a reload, as the process read it at start (the same file and
   * command-line overrides); `undefined` when there is nothing to read again (the embedded
   * config). Throws {@link ConfigError}.
   */
  readonly reread: (() => Promise<LoadedConfig>) | undefined;
  /** The config file, watched while the config says `watch: true`. */
  readonly configPath: string | undefined;
}

/** The data-plane worker count `workers` asks for: `"auto"` is one per core. */
export function workerCount(workers: Config["workers"]): number {
  return workers === "auto" ? Math.max(1, navigator.hardwareConcurrency) : workers;
}

/** A running proxy. */
export class Switchyard {
  readonly #clusters: Map<string, Cluster>;
  /** The data planes. */
  readonly dataPlanes: DataPlanes;
  readonly #health: HealthSupervisor;
  readonly #settings: RunSettings;
  /** The clusters' affinity tables (and their Redis connections, when any is in Redis). */
  readonly #affinity: AffinityService;
  #config: Config;
  #tls: TlsMaterial;
  #discovery: RedisDiscovery | undefined;
  #admin: AdminServer | undefined;
  #draining = false;
  /** The drain under way, once one started. */
  #drain: Promise<void> | undefined;
  /** Ends the drain delay early (a second SIGTERM). */
  #skipDelay: (() => void) | undefined;
  /** Reloads run one at a time, in order. */
  #reloading: Promise<unknown> = Promise.resolve();
  #reloads: ReloadStatus;
  /** Watches the config file while `watch` is on (a reload may turn it on or off). */
  #watcher: ConfigWatcher | undefined;

  private constructor(
    config: Config,
    tls: TlsMaterial,
    clusters: Map<string, Cluster>,
    dataPlanes: DataPlanes,
    health: HealthSupervisor,
    discovery: RedisDiscovery | undefined,
    settings: RunSettings,
    affinity: AffinityService,
  ) {
    this.#affinity = affinity;
    this.#config = config;
    this.#tls = tls;
    this.#clusters = clusters;
    this.dataPlanes = dataPlanes;
    this.#health = health;
    this.#discovery = discovery;
    this.#settings = settings;
    this.#reloads = { successes: 0, failures: 0, lastSuccessAt: Date.now(), lastErrors: undefined };
    this.#syncWatcher();
  }

  /** The effective config: the one read at start, or at the last reload that applied. */
  get config(): Config {
    return this.#config;
  }

  /** Clusters by name. */
  get clusters(): ReadonlyMap<string, Cluster> {
    return this.#clusters;
  }

  /** Live membership from Redis; undefined when no cluster has `discovery`. */
  get discovery(): RedisDiscovery | undefined {
    return this.#discovery;
  }

  /** The clusters' affinity tables: their counts, and the owner of an id. */
  get affinity(): AffinityService {
    return this.#affinity;
  }

  /** Every reload so far. */
  get reloadStatus(): ReloadStatus {
    return this.#reloads;
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
    warnUnverified(config, undefined);
    const health = HealthSupervisor.start(clusters.values(), tls);
    const discovery = await RedisDiscovery.start(config, clusters);
    for (const cluster of clusters.values()) cluster.flush();
    const workers = workerCount(config.workers);
    const affinity = new AffinityService(dataPlanes);
    try {
      await affinity.sync(config);
      await dataPlanes.start({
        config,
        workers,
        tls,
        logLevel: settings.logLevel,
        debugHooks: settings.debugHooks,
        onOutcomes: (batch) => health.observeOutcomes(batch),
        onAffinity: (worker, message) => affinity.receive(worker, message),
      });
    } catch (error) {
      health.stop();
      discovery?.stop();
      affinity.stop();
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
    const proxy = new Switchyard(
      config,
      tls,
      clusters,
      dataPlanes,
      health,
      discovery,
      settings,
      affinity,
    );
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

  /**
   * Reads the config again and applies it without dropping a call: routes, clusters (added,
   * removed, changed), pickers, health checks, outlier detection, Redis discovery, access
   * log, listener addresses and certificates. A config that is invalid, names unusable PEM
   * files or cannot be bound changes nothing. `workers`, `admin`, `metrics` and `log` apply
   * at the next restart (the result warns). Reloads run one at a time.
   */
  reload(): Promise<ReloadResult> {
    const result = this.#reloading.then(() => this.#reload());
    this.#reloading = result.catch(() => {});
    return result;
  }

  async #reload(): Promise<ReloadResult> {
    let result: ReloadResult;
    try {
      result = await this.#apply();
    } catch (error) {
      result = {
        ok: false,
        errors: error instanceof ConfigError
          ? error.problems
          : [String((error as Error)?.message ?? error)],
      };
    }
    const status = this.#reloads;
    if (result.ok) {
      this.#reloads = {
        ...status,
        successes: status.successes + 1,
        lastSuccessAt: Date.now(),
        lastErrors: undefined,
      };
      log.info("config reloaded: {changed}", {
        changed: result.changed.length ? result.changed.join(", ") : "no changes",
      });
      for (const warning of result.warnings) log.warn("reload: {warning}", { warning });
    } else {
      this.#reloads = { ...status, failures: status.failures + 1, lastErrors: result.errors };
      log.error("config reload failed, the running config is kept: {errors}", {
        errors: result.errors.join("; "),
      });
    }
    return result;
  }

  async #apply(): Promise<ReloadResult> {
    if (this.#draining) throw new Error("draining: reloads are refused");
    const reread = this.#settings.reread;
    if (reread === undefined) throw new Error("no config file to read again (the embedded config)");
    const loaded = await reread();
    const warnings = [...loaded.warnings];
    const next = keepRestartOnly(this.#config, loaded.config, warnings);
    const changed = changedSections(this.#config, next);
    if (JSON.stringify(loaded.tls) !== JSON.stringify(this.#tls)) changed.push("certificates");
    // New clusters exist in the control plane first, so the data planes get their members
    // with the change; if the data planes refuse it, they go again and nothing changed.
    const added = Object.entries(next.clusters)
      .filter(([name]) => !this.#clusters.has(name))
      .map(([name, settings]) => new Cluster(name, settings, this.dataPlanes));
    for (const cluster of added) cluster.flush();
    // Tables first, so that a data plane's first lookup under the new config finds its table.
    await this.#affinity.sync(next);
    try {
      await this.dataPlanes.reconfigure(next, loaded.tls);
    } catch (error) {
      for (const cluster of added) cluster.close();
      this.dataPlanes.forget(added.map((cluster) => cluster.name));
      await this.#affinity.sync(this.#config);
      throw error;
    }
    const before = this.#config;
    warnUnverified(next, before);
    this.#config = next;
    this.#tls = loaded.tls;
    for (const cluster of added) this.#clusters.set(cluster.name, cluster);
    for (const [name, cluster] of this.#clusters) {
      const settings = next.clusters[name];
      if (settings === undefined) {
        cluster.close();
        this.#clusters.delete(name);
      } else if (JSON.stringify(settings) !== JSON.stringify(cluster.config)) {
        cluster.reconfigure(settings);
      }
    }
    this.#health.sync(this.#clusters.values(), this.#tls);
    if (discoveryChanged(before, next)) {
      this.#discovery?.stop();
      for (const [name, cluster] of this.#clusters) {
        if (!next.clusters[name].discovery) cluster.setMembers("redis", []);
      }
      this.#discovery = await RedisDiscovery.start(next, this.#clusters);
    }
    this.#syncWatcher();
    await this.settled();
    return { ok: true, changed, warnings };
  }

  /**
   * Watches the config file exactly while the running config says `watch: true`: a watch
   * wakes the process for every change in the file's directory, which is not free.
   */
  #syncWatcher(): void {
    const path = this.#settings.configPath;
    const wanted = this.#config.watch && path !== undefined && !this.#draining;
    if (wanted && this.#watcher === undefined) {
      this.#watcher = new ConfigWatcher(path!, () => void this.reload());
    } else if (!wanted && this.#watcher !== undefined) {
      this.#watcher.close();
      this.#watcher = undefined;
    }
  }

  /**
   * Starts the shutdown: readiness fails at once; after `drain.delay`, during which the
   * listeners still serve so that load balancers deregister the proxy first, every listener
   * sends GOAWAY and in-flight calls get up to `drain.timeout`. Settles when done.
   */
  drain(): Promise<void> {
    // A second caller (SIGTERM after POST /drain) waits for the same drain.
    this.#drain ??= this.#drainOnce();
    return this.#drain;
  }

  async #drainOnce(): Promise<void> {
    this.#draining = true;
    this.#syncWatcher();
    const { delay, timeout } = this.#config.drain;
    if (delay > 0) {
      log.info("draining: not ready; serving for {delayMs}ms more before GOAWAY", {
        delayMs: delay,
      });
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, delay);
        this.#skipDelay = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.#skipDelay = undefined;
    }
    // A reload under way binds its listeners first, so that the drain reaches them too;
    // reloads that come later are refused.
    await this.#reloading;
    log.info("draining: GOAWAY sent, waiting up to {timeoutMs}ms for in-flight calls", {
      timeoutMs: timeout,
    });
    await this.dataPlanes.drain(timeout);
  }

  /** Ends the drain delay now (a second SIGTERM). */
  skipDrainDelay(): void {
    this.#skipDelay?.();
  }

  /** Drains, stops health checking and discovery, then closes every data plane. */
  async shutdown(): Promise<void> {
    await this.drain();
    this.#health.stop();
    this.#discovery?.stop();
    for (const cluster of this.#clusters.values()) cluster.close();
    await this.dataPlanes.close();
    this.#affinity.stop();
    await this.#admin?.stop();
    log.info("shutdown complete");
  }
}

/** Warns once per cluster that turns `tls.insecureSkipVerify` on (at start, or by a reload). */
function warnUnverified(config: Config, before: Config | undefined): void {
  for (const [name, cluster] of Object.entries(config.clusters)) {
    if (!cluster.tls?.insecureSkipVerify) continue;
    if (before?.clusters[name]?.tls?.insecureSkipVerify) continue;
    log.warn("cluster {cluster}: backend certificates are not verified (tls.insecureSkipVerify)", {
      cluster: name,
    });
  }
}

/** Whether Redis discovery must start again: its connection or any cluster's set changed. */
function discoveryChanged(before: Config, after: Config): boolean {
  const discovery = (config: Config) =>
    JSON.stringify([
      config.redis,
      Object.entries(config.clusters).map(([name, cluster]) => [name, cluster.discovery]),
    ]);
  return discovery(before) !== discovery(after);
}
