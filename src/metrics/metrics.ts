/**
 * The proxy's Prometheus registry. It is private to one {@link ProxyMetrics}, never
 * prom-client's global one, so nothing else in the process can leak series into it.
 * @module
 */
import { Registry } from "prom-client";
import type { Cluster } from "../cluster/cluster.ts";
import type { RedisDiscovery } from "../discovery/redis_discovery.ts";
import type { CallObserver } from "../proxy/call_record.ts";
import { registerCallMetrics } from "./call_metrics.ts";
import { registerHealthMetrics } from "./health_metrics.ts";
import { registerStateMetrics } from "./state_metrics.ts";

/** What the live gauges read at each scrape (a running `Switchyard` satisfies it). */
export interface MetricsSource {
  /** Clusters by name. */
  readonly clusters: ReadonlyMap<string, Cluster>;
  /** Redis discovery, when any cluster uses it. */
  readonly discovery: Pick<RedisDiscovery, "status"> | undefined;
}

/** Everything `/metrics` exposes. */
export class ProxyMetrics {
  /** The Prometheus text exposition format's content type. */
  readonly contentType: string;
  /** Feeds the per-call counters; register it with the proxy's call observers. */
  readonly observeCall: CallObserver;
  readonly #registry: Registry;

  /** Creates the metrics for `source`, read live at each scrape. */
  constructor(source: MetricsSource) {
    this.#registry = new Registry();
    this.contentType = this.#registry.contentType;
    const callMetrics = registerCallMetrics(this.#registry);
    this.observeCall = callMetrics.observe;
    for (const cluster of source.clusters.values()) {
      cluster.addListener({
        onBackendRemoved: (backend) =>
          void callMetrics.forgetBackend(cluster.name, backend.address),
      });
    }
    const clusters = () => source.clusters.values();
    registerStateMetrics(this.#registry, clusters);
    registerHealthMetrics(this.#registry, clusters, () => source.discovery?.status);
  }

  /** The current exposition text. */
  render(): Promise<string> {
    return this.#registry.metrics();
  }
}
