/**
 * Per-call metrics, fed by the data plane's {@link CallObserver}: counts, latency and bytes.
 * @module
 */
import { Counter, Histogram, type Registry } from "prom-client";
import type { CallObserver } from "../proxy/call_record.ts";

// gRPC latencies span sub-millisecond unary calls to long streams.
const DURATION_BUCKETS = [
  0.001,
  0.0025,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
  10,
  30,
];

/**
 * Distinct `method` label values kept per process. The path comes from clients, so without a
 * cap anyone who can reach the listener could grow the registry without bound.
 */
const MAX_METHOD_LABELS = 1000;

/** The label for methods past the cap, and for calls no route matched. */
const OTHER_METHOD = "other";

/** Maps a call's `:path` to a bounded set of label values. */
function methodLabeler(): (method: string, routed: boolean) => string {
  const seen = new Set<string>();
  return (method, routed) => {
    if (!routed) return OTHER_METHOD;
    if (seen.has(method)) return method;
    if (seen.size >= MAX_METHOD_LABELS) return OTHER_METHOD;
    seen.add(method);
    return method;
  };
}

/** The per-call metrics' entry points. */
export interface CallMetrics {
  /** Updates the metrics for one finished call. */
  readonly observe: CallObserver;
  /** Deletes every series of a backend that left its cluster, or of a whole cluster. */
  readonly forget: (cluster: string, backend?: string) => Promise<void>;
}

/** Registers the call metrics on `registry`. */
export function registerCallMetrics(registry: Registry): CallMetrics {
  const registers = [registry];
  const calls = new Counter({
    name: "switchyard_calls_total",
    help: 'Finished calls by cluster, backend, method ("other" past 1000 methods or when ' +
      "unrouted), final grpc-status and protocol (grpc, or grpc-web translated by the proxy).",
    labelNames: ["cluster", "backend", "method", "grpc_status", "protocol"] as const,
    registers,
  });
  const duration = new Histogram({
    name: "switchyard_call_duration_seconds",
    help: "Wall time from a call's arrival to its end.",
    labelNames: ["cluster", "method", "protocol"] as const,
    buckets: DURATION_BUCKETS,
    registers,
  });
  const bytesReceived = new Counter({
    name: "switchyard_bytes_received_total",
    help: "Request bytes received from clients.",
    labelNames: ["cluster", "backend"] as const,
    registers,
  });
  const bytesSent = new Counter({
    name: "switchyard_bytes_sent_total",
    help: "Response bytes sent to clients.",
    labelNames: ["cluster", "backend"] as const,
    registers,
  });
  const methodLabel = methodLabeler();

  const observe: CallObserver = (record) => {
    // Unrouted calls have no cluster or backend; Prometheus treats "" as an absent label.
    const cluster = record.cluster ?? "";
    const backend = record.backend ?? "";
    const method = methodLabel(record.method, record.cluster !== undefined);
    const protocol = record.protocol;
    calls.inc({ cluster, backend, method, grpc_status: record.grpcStatus, protocol });
    duration.observe({ cluster, method, protocol }, record.durationMs / 1000);
    bytesReceived.inc({ cluster, backend }, record.bytesReceived);
    bytesSent.inc({ cluster, backend }, record.bytesSent);
  };
  // Series of departed backends would otherwise stay forever: membership from Redis can
  // churn through any number of addresses.
  const forget = async (cluster: string, backend?: string) => {
    for (const counter of [calls, bytesReceived, bytesSent] as Counter<string>[]) {
      for (const { labels } of (await counter.get()).values) {
        if (labels.cluster !== cluster) continue;
        if (backend === undefined || labels.backend === backend) counter.remove(labels);
      }
    }
    if (backend !== undefined) return;
    // A histogram lists each series once per bucket, with `le`: remove each series once.
    const series = new Map<string, Record<string, string | number>>();
    for (const { labels } of (await duration.get()).values) {
      if (labels.cluster !== cluster) continue;
      const { le: _bucket, ...rest } = labels as Record<string, string | number>;
      series.set(JSON.stringify(rest), rest);
    }
    for (const labels of series.values()) duration.remove(labels);
  };
  return { observe, forget };
}
