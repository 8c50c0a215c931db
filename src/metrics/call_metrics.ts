/**
 * Per-call metrics, fed by the data plane's {@link CallObserver}: counts, latency and bytes.
 *
 * A call only adds to plain numbers, found through nested maps (cluster → backend → method,
 * then an array indexed by status and protocol): no label objects, no string keys, no
 * allocation once a series exists. prom-client's own `inc`/`observe` hash a label object on
 * every call, which profiled at about 15 % of the proxy's busy time under load. The series
 * become prom-client metrics only when `/metrics` is scraped.
 * @module
 */
import { Counter, type Metric, type Registry } from "prom-client";
import type { CallObserver, CallProtocol, CallStartObserver } from "../proxy/call_record.ts";
import { DURATION_BUCKETS_SECONDS, durationBucket } from "../dataplane/stats.ts";
import { GRPC_STATUS_NAMES } from "../proxy/grpc_status.ts";

/**
 * Distinct `method` label values kept per process. The path comes from clients, so without a
 * cap anyone who can reach the listener could grow the registry without bound.
 */
const MAX_METHOD_LABELS = 1000;

/** The label for methods past the cap, and for calls no route matched. */
const OTHER_METHOD = "other";

const PROTOCOLS: readonly CallProtocol[] = ["grpc", "grpc-web"];

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

/** What one (cluster, backend, method, status, protocol) series has counted. */
interface CallSeries {
  calls: number;
  /** Calls per duration bucket, not cumulative; the last is past the largest bound. */
  readonly durations: Float64Array;
  durationSeconds: number;
  bytesReceived: number;
  bytesSent: number;
}

/** Series by status and protocol: index `status * 2 + protocol`. */
type StatusSeries = (CallSeries | undefined)[];

/** A series with its labels: cluster, backend, method, status code, protocol. */
type SeriesWithLabels = [CallSeries, string, string, string, number, CallProtocol];

function emptySeries(): CallSeries {
  return {
    calls: 0,
    durations: new Float64Array(DURATION_BUCKETS_SECONDS.length + 1),
    durationSeconds: 0,
    bytesReceived: 0,
    bytesSent: 0,
  };
}

/** The per-call metrics' entry points. */
export interface CallMetrics {
  /** Updates the metrics for one finished call. */
  readonly observe: CallObserver;
  /** Counts one call routed (or refused before a route). */
  readonly observeStart: CallStartObserver;
  /** Deletes every series of a backend that left its cluster, or of a whole cluster. */
  readonly forget: (cluster: string, backend?: string) => void;
}

/** Registers the call metrics on `registry`. */
export function registerCallMetrics(registry: Registry): CallMetrics {
  /** cluster → backend → method → series by status and protocol. */
  const finished = new Map<string, Map<string, Map<string, StatusSeries>>>();
  /** cluster → method → calls started. */
  const started = new Map<string, Map<string, number>>();
  const methodLabel = methodLabeler();

  const observe: CallObserver = (record) => {
    // Unrouted calls have no cluster or backend; Prometheus treats "" as an absent label.
    const cluster = record.cluster ?? "";
    const backend = record.backend ?? "";
    const method = methodLabel(record.method, record.cluster !== undefined);
    let backends = finished.get(cluster);
    if (backends === undefined) finished.set(cluster, backends = new Map());
    let methods = backends.get(backend);
    if (methods === undefined) backends.set(backend, methods = new Map());
    let statuses = methods.get(method);
    if (statuses === undefined) methods.set(method, statuses = []);
    const index = record.grpcStatus * 2 + (record.protocol === "grpc" ? 0 : 1);
    let series = statuses[index];
    if (series === undefined) statuses[index] = series = emptySeries();
    const seconds = record.durationMs / 1000;
    series.calls++;
    series.durations[durationBucket(seconds)]++;
    series.durationSeconds += seconds;
    series.bytesReceived += record.bytesReceived;
    series.bytesSent += record.bytesSent;
  };

  const observeStart: CallStartObserver = (cluster, method) => {
    const name = cluster ?? "";
    let methods = started.get(name);
    if (methods === undefined) started.set(name, methods = new Map());
    const label = methodLabel(method, cluster !== undefined);
    methods.set(label, (methods.get(label) ?? 0) + 1);
  };

  // Series of departed backends would otherwise stay forever: membership from Redis can
  // churn through any number of addresses.
  const forget = (cluster: string, backend?: string) => {
    if (backend !== undefined) {
      finished.get(cluster)?.delete(backend);
      return;
    }
    finished.delete(cluster);
    started.delete(cluster);
  };

  /** Every series with its labels, at scrape time. */
  function* eachSeries(): Generator<SeriesWithLabels> {
    for (const [cluster, backends] of finished) {
      for (const [backend, methods] of backends) {
        for (const [method, statuses] of methods) {
          for (let index = 0; index < statuses.length; index++) {
            const series = statuses[index];
            if (series === undefined) continue;
            yield [series, cluster, backend, method, index >> 1, PROTOCOLS[index & 1]];
          }
        }
      }
    }
  }

  const registers = [registry];
  new Counter({
    name: "switchyard_calls_started_total",
    help: 'Calls started, by cluster ("" when no route took the call) and method, counted ' +
      "once routed: calls in flight are started minus finished (switchyard_calls_total).",
    labelNames: ["cluster", "method"] as const,
    registers,
    collect() {
      this.reset();
      for (const [cluster, methods] of started) {
        for (const [method, count] of methods) this.inc({ cluster, method }, count);
      }
    },
  });
  new Counter({
    name: "switchyard_calls_total",
    help: 'Finished calls by cluster, backend, method ("other" past 1000 methods or when ' +
      "unrouted), final grpc-status name and protocol (grpc, or grpc-web translated by the " +
      "proxy).",
    labelNames: ["cluster", "backend", "method", "grpc_status", "protocol"] as const,
    registers,
    collect() {
      this.reset();
      for (const [series, cluster, backend, method, status, protocol] of eachSeries()) {
        this.inc(
          { cluster, backend, method, grpc_status: statusLabel(status), protocol },
          series.calls,
        );
      }
    },
  });
  registry.registerMetric(durationHistogram(eachSeries));
  for (
    const [name, help, value] of [
      [
        "switchyard_bytes_received_total",
        "Request bytes received from clients.",
        (series: CallSeries) => series.bytesReceived,
      ],
      [
        "switchyard_bytes_sent_total",
        "Response bytes sent to clients.",
        (series: CallSeries) => series.bytesSent,
      ],
    ] as const
  ) {
    new Counter({
      name,
      help,
      labelNames: ["cluster", "backend"] as const,
      registers,
      collect() {
        this.reset();
        for (const [series, cluster, backend] of eachSeries()) {
          this.inc({ cluster, backend }, value(series));
        }
      },
    });
  }
  return { observe, observeStart, forget };
}

/** One sample, as prom-client's `getMetricsAsJSON` writes it. */
interface JsonSample {
  readonly labels: Readonly<Record<string, string | number>>;
  readonly value: number;
  readonly metricName: string;
}

/**
 * `switchyard_call_duration_seconds{cluster, method, grpc_status}`, built at scrape time from
 * the series' bucket counts. prom-client's Histogram takes one observation at a time, so this
 * is a metric of its own that answers `get()` in the JSON form prom-client's registries and
 * aggregator read (type and aggregator as the strings its JSON carries).
 */
function durationHistogram(eachSeries: () => Iterable<SeriesWithLabels>): Metric {
  const name = "switchyard_call_duration_seconds";
  const help = "Wall time from a call's arrival to its end, by final grpc-status name.";
  const get = () => {
    const merged = new Map<string, { labels: Record<string, string>; sum: CallSeries }>();
    for (const [series, cluster, , method, status] of eachSeries()) {
      const key = `${cluster}\0${method}\0${status}`;
      let entry = merged.get(key);
      if (entry === undefined) {
        const labels = { cluster, method, grpc_status: statusLabel(status) };
        merged.set(key, entry = { labels, sum: emptySeries() });
      }
      const sum = entry.sum;
      sum.calls += series.calls;
      sum.durationSeconds += series.durationSeconds;
      for (let i = 0; i < series.durations.length; i++) sum.durations[i] += series.durations[i];
    }
    const values: JsonSample[] = [];
    for (const { labels, sum } of merged.values()) {
      let cumulative = 0;
      for (let i = 0; i < DURATION_BUCKETS_SECONDS.length; i++) {
        cumulative += sum.durations[i];
        const le = DURATION_BUCKETS_SECONDS[i];
        values.push({ labels: { ...labels, le }, value: cumulative, metricName: `${name}_bucket` });
      }
      values.push(
        { labels: { ...labels, le: "+Inf" }, value: sum.calls, metricName: `${name}_bucket` },
        { labels, value: sum.durationSeconds, metricName: `${name}_sum` },
        { labels, value: sum.calls, metricName: `${name}_count` },
      );
    }
    return Promise.resolve({ name, help, type: "histogram", aggregator: "sum", values });
  };
  // Registries only read `name` and call `get()`; the cast is to prom-client's class union.
  return { name, help, type: "histogram", aggregator: "sum", get } as unknown as Metric;
}
