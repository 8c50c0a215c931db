/**
 * Per-call metrics, fed by the data plane's {@link CallObserver}: counts, latency and bytes.
 * @module
 */
import { Counter, Histogram, type Registry } from "prom-client";
import type { CallObserver, CallStartObserver } from "../proxy/call_record.ts";
import { DURATION_BUCKETS_SECONDS } from "../dataplane/stats.ts";
import { GRPC_STATUS_NAMES } from "../proxy/grpc_status.ts";

/**
 * Distinct `method` label values kept per process. The path comes from clients, so without a
 * cap anyone who can reach the listener could grow the registry without bound.
 */
const MAX_METHOD_LABELS = 1000;

/** The label for methods past the cap, and for calls no route matched. */
const OTHER_METHOD = "other";

/**
 * The `grpc_status` label: the code's name, as gRPC's metrics (gRFC A66) and dashboards
 * use. The record's status is already 0–16: a backend's out-of-range code parses as UNKNOWN.
 */
function statusLabel(code: number): string {
  return GRPC_STATUS_NAMES[code] ?? "UNKNOWN";
}

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
  /** Counts one call routed (or refused before a route). */
  readonly observeStart: CallStartObserver;
  /** Deletes every series of a backend that left its cluster, or of a whole cluster. */
  readonly forget: (cluster: string, backend?: string) => Promise<void>;
}

/** Registers the call metrics on `registry`. */
export function registerCallMetrics(registry: Registry): CallMetrics {
  const registers = [registry];
  const started = new Counter({
    name: "switchyard_calls_started_total",
    help: 'Calls started, by cluster ("" when no route took the call) and method, counted ' +
      "once routed: calls in flight are started minus finished (switchyard_calls_total).",
    labelNames: ["cluster", "method"] as const,
    registers,
  });
  const calls = new Counter({
    name: "switchyard_calls_total",
    help: 'Finished calls by cluster, backend, method ("other" past 1000 methods or when ' +
      "unrouted), final grpc-status and protocol (grpc, or grpc-web translated by the proxy).",
    labelNames: ["cluster", "backend", "method", "grpc_status", "protocol"] as const,
    registers,
  });
  const duration = new Histogram({
    name: "switchyard_call_duration_seconds",
    help: "Wall time from a call's arrival to its end, by final grpc-status name.",
    labelNames: ["cluster", "method", "grpc_status"] as const,
    buckets: [...DURATION_BUCKETS_SECONDS],
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
    const grpc_status = statusLabel(record.grpcStatus);
    calls.inc({ cluster, backend, method, grpc_status, protocol: record.protocol });
    duration.observe({ cluster, method, grpc_status }, record.durationMs / 1000);
    bytesReceived.inc({ cluster, backend }, record.bytesReceived);
    bytesSent.inc({ cluster, backend }, record.bytesSent);
  };
  const observeStart: CallStartObserver = (cluster, method) => {
    started.inc({ cluster: cluster ?? "", method: methodLabel(method, cluster !== undefined) });
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
    for (const { labels } of (await started.get()).values) {
      if (labels.cluster === cluster) started.remove(labels);
    }
    // A histogram lists each series once per bucket, with `le`: remove each series once.
    const series = new Map<string, Record<string, string | number>>();
    for (const { labels } of (await duration.get()).values) {
      if (labels.cluster !== cluster) continue;
      const { le: _bucket, ...rest } = labels as Record<string, string | number>;
      series.set(JSON.stringify(rest), rest);
    }
    for (const labels of series.values()) duration.remove(labels);
  };
  return { observe, observeStart, forget };
}
