/**
 * A data plane's stream metrics: per backend, the streams opened and ended and the ages of the
 * open ones; per cluster, the streams the rebalancer shed. All are read from the backends'
 * lists and counters at scrape time: a call pays nothing for them.
 * @module
 */
import { Counter, type Registry } from "prom-client";
import type { UpstreamBackend } from "../upstream/upstream_backend.ts";
import { backendCounter, backendGauge } from "./state_metrics.ts";

/** What the stream metrics read of each cluster. */
export type StreamClusterSource = () => Iterable<{
  readonly name: string;
  backends(): UpstreamBackend[];
  readonly counters: { readonly rebalanceShed: number };
}>;

/** Registers the stream metrics for `clusters` on `registry`. */
export function registerStreamMetrics(registry: Registry, clusters: StreamClusterSource): void {
  const registers = [registry];
  backendCounter(registry, clusters, {
    name: "switchyard_streams_opened_total",
    help: "Backend streams opened, per backend (every attempt of every call, unary included).",
    value: (backend) => backend.counters.streamsOpened,
  });
  backendCounter(registry, clusters, {
    name: "switchyard_streams_ended_total",
    help: "Backend streams that ended, per backend; open = opened - ended.",
    value: (backend) => backend.counters.streamsEnded,
  });
  // Ages over workers: the largest, not the sum.
  backendGauge(registry, clusters, {
    name: "switchyard_stream_age_p50_seconds",
    help: "Median age of the streams open on each backend (nearest rank; 0 with none). Over " +
      "workers, the largest worker's median, which bounds the overall median from above.",
    aggregator: "max",
    value: (backend) => backend.streamAgeP50Ms(performance.now()) / 1000,
  });
  backendGauge(registry, clusters, {
    name: "switchyard_stream_age_max_seconds",
    help: "Age of the oldest stream open on each backend (0 with none); the oldest over workers.",
    aggregator: "max",
    value: (backend) => backend.streamAgeMaxMs(performance.now()) / 1000,
  });
  new Counter({
    name: "switchyard_rebalance_shed_total",
    help: "Streams the rebalancer ended with UNAVAILABLE to move them to emptier backends " +
      "(clusters.NAME.rebalance).",
    labelNames: ["cluster"] as const,
    registers,
    collect() {
      this.reset();
      for (const cluster of clusters()) {
        this.inc({ cluster: cluster.name }, cluster.counters.rebalanceShed);
      }
    },
  });
}
