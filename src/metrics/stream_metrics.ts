/**
 * A data plane's stream metrics: per backend, the streams opened and ended and the ages of the
 * open ones; per cluster, the streams the rebalancer shed. All are read from the backends'
 * lists and counters at scrape time: a call pays nothing for them.
 * @module
 */
import { Counter, Gauge, type Registry } from "prom-client";
import type { UpstreamBackend } from "../upstream/upstream_backend.ts";
import { backendsWithLabels } from "./state_metrics.ts";

/** What the stream metrics read of each cluster. */
export type StreamClusterSource = () => Iterable<{
  readonly name: string;
  backends(): UpstreamBackend[];
  readonly counters: { readonly rebalanceShed: number };
}>;

/** Registers the stream metrics for `clusters` on `registry`. */
export function registerStreamMetrics(registry: Registry, clusters: StreamClusterSource): void {
  const registers = [registry];
  new Counter({
    name: "switchyard_streams_opened_total",
    help: "Backend streams opened, per backend (every attempt of every call, unary included).",
    labelNames: ["cluster", "backend"] as const,
    registers,
    collect() {
      this.reset();
      for (const [backend, labels] of backendsWithLabels(clusters)) {
        this.inc(labels, backend.counters.streamsOpened);
      }
    },
  });
  new Counter({
    name: "switchyard_streams_ended_total",
    help: "Backend streams that ended, per backend; open = opened - ended.",
    labelNames: ["cluster", "backend"] as const,
    registers,
    collect() {
      this.reset();
      for (const [backend, labels] of backendsWithLabels(clusters)) {
        this.inc(labels, backend.counters.streamsEnded);
      }
    },
  });
  ageGauge(
    registry,
    clusters,
    "switchyard_stream_age_p50_seconds",
    "Median age of the streams open on each backend (nearest rank; 0 with none). Over " +
      "workers, the largest worker's median, which bounds the overall median from above.",
    (backend, now) => backend.streamAgeP50Ms(now),
  );
  ageGauge(
    registry,
    clusters,
    "switchyard_stream_age_max_seconds",
    "Age of the oldest stream open on each backend (0 with none); the oldest over workers.",
    (backend, now) => backend.streamAgeMaxMs(now),
  );
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

/** A per-backend age gauge in seconds, read at scrape time, the maximum over workers. */
function ageGauge(
  registry: Registry,
  clusters: StreamClusterSource,
  name: string,
  help: string,
  ageMs: (backend: UpstreamBackend, now: number) => number,
): void {
  new Gauge({
    name,
    help,
    labelNames: ["cluster", "backend"] as const,
    registers: [registry],
    aggregator: "max",
    collect() {
      this.reset();
      const now = performance.now();
      for (const [backend, labels] of backendsWithLabels(clusters)) {
        this.set(labels, ageMs(backend, now) / 1000);
      }
    },
  });
}
