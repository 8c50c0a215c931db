/**
 * The metrics one data plane keeps: per-call counters and latency, and the gauges of its own
 * connections. The control plane collects every data plane's series as JSON and sums them
 * (see {@link ProxyMetrics}); with `metrics.workerLabel` each series keeps a `worker` label.
 * @module
 */
import { Counter, Registry } from "prom-client";
import type { ConnectivityState } from "../balancer/types.ts";
import type { CallObserver, CallStartObserver } from "../proxy/call_record.ts";
import type { UpstreamCluster } from "../upstream/upstream_cluster.ts";
import type { DialObserver } from "../upstream/upstream.ts";
import { type CallMetrics, registerCallMetrics } from "./call_metrics.ts";
import { type ConnectionMetrics, registerConnectionMetrics } from "./connection_metrics.ts";
import { registerDataPlaneRuntimeMetrics } from "./runtime_metrics.ts";
import { backendGauge, backendStateSet } from "./state_metrics.ts";
import { registerAccessLogMetrics } from "./access_log_metrics.ts";
import { registerAffinityLookupMetrics } from "./affinity_metrics.ts";
import { registerStreamMetrics } from "./stream_metrics.ts";

const CONNECTIVITY_STATES: readonly ConnectivityState[] = [
  "IDLE",
  "CONNECTING",
  "READY",
  "TRANSIENT_FAILURE",
];

/** One data plane's series, as `Registry.getMetricsAsJSON` returns them. */
export type MetricsJson = Awaited<ReturnType<Registry["getMetricsAsJSON"]>>;

/** Everything one data plane contributes to `/metrics`. */
export class DataPlaneMetrics {
  /** Feeds the per-call metrics; register it with the data plane's call observers. */
  readonly observeCall: CallObserver;
  /** Counts calls as they start; the data plane's `CallContext.onStart`. */
  readonly observeStart: CallStartObserver;
  /** Counts dials; pass it to the clusters' upstream settings. */
  readonly dials: DialObserver;
  readonly #registry = new Registry();
  readonly #callMetrics: CallMetrics;
  readonly #connectionMetrics: ConnectionMetrics;
  readonly #stopRuntimeMetrics: () => void;

  /**
   * Creates the metrics for `clusters`, whose gauges are read at each collection (a reload
   * adds and removes clusters in the same map). `worker`, when given, labels every series.
   * `accessLogDropped` reads the data plane's running total of dropped access-log lines.
   */
  constructor(
    clusters: ReadonlyMap<string, UpstreamCluster>,
    worker?: string,
    accessLogDropped: () => number = () => 0,
  ) {
    if (worker !== undefined) this.#registry.setDefaultLabels({ worker });
    registerAccessLogMetrics(this.#registry, accessLogDropped);
    this.#callMetrics = registerCallMetrics(this.#registry);
    this.observeCall = this.#callMetrics.observe;
    this.observeStart = this.#callMetrics.observeStart;
    const source = () => clusters.values();
    this.#connectionMetrics = registerConnectionMetrics(this.#registry, source);
    this.dials = this.#connectionMetrics.dials;
    this.#stopRuntimeMetrics = registerDataPlaneRuntimeMetrics(this.#registry);
    registerAffinityLookupMetrics(this.#registry, clusters);
    for (const cluster of clusters.values()) this.track(cluster);
    backendGauge(this.#registry, source, {
      name: "switchyard_active_streams",
      help: "Calls in flight to each backend.",
      value: (backend) => backend.upstream.activeStreams,
    });
    clusterCounter(this.#registry, clusters, {
      name: "switchyard_retries_total",
      help: "Retries started, by kind: transparent (no backend processed the attempt) or " +
        "configured (a status in the route's retryOn, or a per-try timeout).",
      label: "kind",
      values: (cluster) => cluster.counters.retries,
    });
    clusterCounter(this.#registry, clusters, {
      name: "switchyard_overflow_total",
      help: "Calls or retries a cluster limit refused (maxConcurrentCalls, maxPendingCalls, " +
        "retryBudget), and calls that waited for a stream slot at maxConnectionsPerBackend.",
      label: "limit",
      values: (cluster) => cluster.counters.overflow,
    });
    registerStreamMetrics(this.#registry, source);
    backendStateSet(this.#registry, source, {
      name: "switchyard_backend_connectivity",
      help: "Connection state of each backend: per state, how many data-plane workers see " +
        "the backend in it (1 or 0 with one worker).",
      label: "state",
      states: CONNECTIVITY_STATES,
      current: (backend) => backend.upstream.state,
    });
  }

  /** Forgets a member's series when it leaves `cluster` (a cluster added by a reload too). */
  track(cluster: UpstreamCluster): void {
    cluster.onBackendRemoved((backend) => {
      this.#callMetrics.forget(cluster.name, backend.address);
      void this.#connectionMetrics.forget(cluster.name, backend.address);
    });
  }

  /** Forgets every series of a cluster a reload removed. */
  forgetCluster(name: string): void {
    this.#callMetrics.forget(name);
    void this.#connectionMetrics.forget(name);
  }

  /** Stops the timers the metrics keep (the event-loop lag monitor). */
  close(): void {
    this.#stopRuntimeMetrics();
  }

  /** The current series, for the control plane to aggregate. */
  json(): Promise<MetricsJson> {
    return this.#registry.getMetricsAsJSON();
  }
}

/** A counter per cluster and `label` value, read from the clusters' counters at each scrape. */
function clusterCounter(
  registry: Registry,
  clusters: ReadonlyMap<string, UpstreamCluster>,
  options: {
    name: string;
    help: string;
    label: string;
    values: (cluster: UpstreamCluster) => Readonly<Record<string, number>>;
  },
): void {
  const { name, help, label, values } = options;
  new Counter({
    name,
    help,
    labelNames: ["cluster", label],
    registers: [registry],
    collect() {
      this.reset();
      for (const cluster of clusters.values()) {
        for (const [value, count] of Object.entries(values(cluster))) {
          this.inc({ cluster: cluster.name, [label]: value }, count);
        }
      }
    },
  });
}
