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

/** Registers the call metrics on `registry` and returns the observer that updates them. */
export function registerCallMetrics(registry: Registry): CallObserver {
  const registers = [registry];
  const calls = new Counter({
    name: "switchyard_calls_total",
    help: "Finished calls by cluster, backend, method and final grpc-status.",
    labelNames: ["cluster", "backend", "method", "grpc_status"] as const,
    registers,
  });
  const duration = new Histogram({
    name: "switchyard_call_duration_seconds",
    help: "Wall time from a call's arrival to its end.",
    labelNames: ["cluster", "method"] as const,
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

  return (record) => {
    // Unrouted calls have no cluster or backend; Prometheus treats "" as an absent label.
    const cluster = record.cluster ?? "";
    const backend = record.backend ?? "";
    calls.inc({ cluster, backend, method: record.method, grpc_status: record.grpcStatus });
    duration.observe({ cluster, method: record.method }, record.durationMs / 1000);
    bytesReceived.inc({ cluster, backend }, record.bytesIn);
    bytesSent.inc({ cluster, backend }, record.bytesOut);
  };
}
