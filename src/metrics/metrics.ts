/**
 * The proxy's `/metrics`: the control plane's own series (membership, health, Redis) plus
 * every data plane's (calls, latency, connections), summed series by series with
 * prom-client's aggregator. Registries are private, never prom-client's global one, so
 * nothing else in the process can leak series into them.
 *
 * Sums of counters must never go down, or Prometheus sees a counter reset and `rate()` a
 * spike: a worker that misses a scrape counts with its last answer, and the counters of a
 * worker that died stay in the sum, as they were at its last scrape.
 * @module
 */
import { AggregatorRegistry, Registry } from "prom-client";
import type { Cluster } from "../cluster/cluster.ts";
import type { ReloadStatus } from "../config/reload.ts";
import type { RedisDiscovery } from "../discovery/redis_discovery.ts";
import type { WorkerMetrics, WorkerState } from "../dataplane/data_planes.ts";
import type { MetricsJson } from "./data_plane_metrics.ts";
import { registerHealthMetrics } from "./health_metrics.ts";
import { registerAccessLogMetrics } from "./access_log_metrics.ts";
import { registerStateMetrics } from "./state_metrics.ts";
import { registerReloadMetrics } from "./reload_metrics.ts";
import { registerProcessMetrics } from "./runtime_metrics.ts";
import { VERSION } from "../version.ts";
import { registerWorkerMetrics } from "./worker_metrics.ts";
import { registerAffinityMetrics } from "./affinity_metrics.ts";
import type { AffinityStatus } from "../affinity/table.ts";

/**
 * The metric types whose values only grow. (prom-client's types declare a numeric enum, but
 * its JSON carries these names.)
 */
const CUMULATIVE: ReadonlySet<string> = new Set(["counter", "histogram"]);

/** The series of `metrics` whose values only grow. */
function cumulative(metrics: MetricsJson): MetricsJson {
  return metrics.filter((metric) => CUMULATIVE.has(String(metric.type)));
}

/** What the control plane's gauges read at each scrape (a running `Switchyard` satisfies it). */
export interface MetricsSource {
  /** Clusters by name. */
  readonly clusters: ReadonlyMap<string, Cluster>;
  /** Redis discovery, when any cluster uses it. */
  readonly discovery: Pick<RedisDiscovery, "status"> | undefined;
  /** Every data plane's series. */
  dataPlaneMetrics(): Promise<WorkerMetrics[]>;
  /**
   * The data planes' liveness, and the access-log lines the main thread dropped writing the
   * workers' lines to stdout (each data plane counts its own; absent counts as 0).
   */
  readonly dataPlanes: { workers(): WorkerState[]; accessLogDropped?(): number };
  /** Every config reload so far. */
  readonly reloadStatus: ReloadStatus;
  /** The clusters' affinity tables; absent means none. */
  readonly affinity?: { statuses(): AffinityStatus[] };
}

/** Everything `/metrics` exposes. */
export class ProxyMetrics {
  /** The Prometheus text exposition format's content type. */
  readonly contentType: string;
  readonly #registry: Registry;
  readonly #source: MetricsSource;
  /** Each worker's last answer, and which incarnation gave it. */
  readonly #last = new Map<number, { restarts: number; series: MetricsJson }>();
  /** The counters and histograms of workers that died, as last scraped. */
  #retired: MetricsJson[] = [];

  /** Creates the metrics for `source`, read live at each scrape. */
  constructor(source: MetricsSource) {
    this.#source = source;
    this.#registry = new Registry();
    this.contentType = this.#registry.contentType;
    const clusters = () => source.clusters.values();
    registerStateMetrics(this.#registry, clusters);
    registerHealthMetrics(this.#registry, clusters, () => source.discovery?.status);
    registerWorkerMetrics(this.#registry, () => source.dataPlanes.workers());
    registerAccessLogMetrics(this.#registry, () => source.dataPlanes.accessLogDropped?.() ?? 0);
    registerReloadMetrics(this.#registry, () => source.reloadStatus);
    registerAffinityMetrics(this.#registry, () => source.affinity?.statuses() ?? []);
    registerProcessMetrics(this.#registry, VERSION);
  }

  /** The current exposition text. */
  async render(): Promise<string> {
    const own = await this.#registry.getMetricsAsJSON();
    const planes: MetricsJson[] = [];
    for (const { worker, restarts, series } of await this.#source.dataPlaneMetrics()) {
      let last = this.#last.get(worker);
      if (last && restarts < last.restarts) continue; // an older scrape, answered late
      if (last && restarts > last.restarts) {
        this.#retired.push(cumulative(last.series));
        this.#last.delete(worker);
        last = undefined;
      }
      if (series) this.#last.set(worker, { restarts, series });
      // A worker that did not answer counts with its last counters; its gauges are unknown.
      const current = series ?? (last && cumulative(last.series));
      if (current) planes.push(current);
    }
    if (this.#retired.length > 1) {
      this.#retired = [await AggregatorRegistry.aggregate(this.#retired).getMetricsAsJSON()];
    }
    return AggregatorRegistry.aggregate([own, ...this.#retired, ...planes]).metrics();
  }
}
