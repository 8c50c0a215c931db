/**
 * The proxy's `/metrics`: the control plane's own series (membership, health, Redis) plus
 * every data plane's (calls, latency, connections), summed series by series with
 * prom-client's aggregator. Registries are private, never prom-client's global one, so
 * nothing else in the process can leak series into them.
 * @module
 */
import { AggregatorRegistry, Registry } from "prom-client";
import type { Cluster } from "../cluster/cluster.ts";
import type { RedisDiscovery } from "../discovery/redis_discovery.ts";
import type { MetricsJson } from "./data_plane_metrics.ts";
import { registerHealthMetrics } from "./health_metrics.ts";
import { registerStateMetrics } from "./state_metrics.ts";

/** What the control plane's gauges read at each scrape (a running `Switchyard` satisfies it). */
export interface MetricsSource {
  /** Clusters by name. */
  readonly clusters: ReadonlyMap<string, Cluster>;
  /** Redis discovery, when any cluster uses it. */
  readonly discovery: Pick<RedisDiscovery, "status"> | undefined;
  /** Every data plane's series. */
  dataPlaneMetrics(): Promise<MetricsJson[]>;
}

/** Everything `/metrics` exposes. */
export class ProxyMetrics {
  /** The Prometheus text exposition format's content type. */
  readonly contentType: string;
  readonly #registry: Registry;
  readonly #source: MetricsSource;

  /** Creates the metrics for `source`, read live at each scrape. */
  constructor(source: MetricsSource) {
    this.#source = source;
    this.#registry = new Registry();
    this.contentType = this.#registry.contentType;
    const clusters = () => source.clusters.values();
    registerStateMetrics(this.#registry, clusters);
    registerHealthMetrics(this.#registry, clusters, () => source.discovery?.status);
  }

  /** The current exposition text. */
  async render(): Promise<string> {
    const own = await this.#registry.getMetricsAsJSON();
    const planes = await this.#source.dataPlaneMetrics();
    return AggregatorRegistry.aggregate([own, ...planes]).metrics();
  }
}
