/**
 * Gauges that read the control plane's live cluster state at scrape time (collect
 * callbacks), so they can never drift from what the admin API shows; and the per-backend
 * gauge and counter helpers every registry's collect-time series use.
 * @module
 */
import { type Aggregator, Counter, Gauge, type Registry } from "prom-client";
import type { Backend, BackendSource, HealthStatus } from "../cluster/backend.ts";
import type { Cluster } from "../cluster/cluster.ts";

const HEALTH_STATES: readonly HealthStatus[] = ["unknown", "healthy", "unhealthy"];
const SOURCES: readonly BackendSource[] = ["static", "redis", "admin"];

/** Where the gauges read clusters from, at every scrape: control-plane or data-plane ones. */
export type ClusterSource<B extends { readonly address: string } = Backend> = () => Iterable<{
  readonly name: string;
  backends(): B[];
}>;

/** The `{ cluster, backend }` labels of one backend series. */
export interface BackendLabels {
  /** Cluster name. */
  readonly cluster: string;
  /** Backend `host:port`. */
  readonly backend: string;
}

/** Every backend of every cluster, with its series labels, at scrape time. */
export function* backendsWithLabels<B extends { readonly address: string }>(
  clusters: ClusterSource<B>,
): Generator<[B, BackendLabels]> {
  for (const cluster of clusters()) {
    for (const backend of cluster.backends()) {
      yield [backend, { cluster: cluster.name, backend: backend.address }];
    }
  }
}

/** Registers the control plane's live-state gauges for `clusters` on `registry`. */
export function registerStateMetrics(
  registry: Registry,
  clusters: () => Iterable<Cluster>,
): void {
  backendGauge(registry, clusters, {
    name: "switchyard_backend_drained",
    help: "1 while a backend is drained by an operator.",
    value: (backend) => backend.drained ? 1 : 0,
  });
  backendStateSet(registry, clusters, {
    name: "switchyard_backend_health",
    help: "Active health of each backend: 1 for its current status, 0 for the others.",
    label: "status",
    states: HEALTH_STATES,
    current: (backend) => backend.health,
  });
  new Gauge({
    name: "switchyard_cluster_members",
    help: "Backends each membership source lists, per cluster.",
    labelNames: ["cluster", "source"] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const cluster of clusters()) {
        for (const source of SOURCES) {
          this.set({ cluster: cluster.name, source }, cluster.membersFrom(source).length);
        }
      }
    },
  });
  new Gauge({
    name: "switchyard_cluster_panic",
    help: "1 while a cluster's panic threshold overrides health.",
    labelNames: ["cluster"] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const cluster of clusters()) this.set({ cluster: cluster.name }, cluster.panic ? 1 : 0);
    },
  });
}

/** A gauge's name and help text. */
export interface GaugeSpec {
  /** The metric name. */
  readonly name: string;
  /** Its help text. */
  readonly help: string;
  /** How the control plane combines workers' series; prom-client's default is the sum. */
  readonly aggregator?: Aggregator;
}

/** A gauge with one series per backend. Reset at each scrape so removed backends vanish. */
export function backendGauge<B extends { readonly address: string }>(
  registry: Registry,
  clusters: ClusterSource<B>,
  spec: GaugeSpec & { readonly value: (backend: B) => number },
): void {
  new Gauge({
    name: spec.name,
    help: spec.help,
    labelNames: ["cluster", "backend"] as const,
    registers: [registry],
    aggregator: spec.aggregator ?? "sum",
    collect() {
      this.reset();
      for (const [backend, labels] of backendsWithLabels(clusters)) {
        this.set(labels, spec.value(backend));
      }
    },
  });
}

/**
 * A counter with one series per backend, read at each scrape from a running total the backend
 * keeps; a backend that leaves takes its series with it.
 */
export function backendCounter<B extends { readonly address: string }>(
  registry: Registry,
  clusters: ClusterSource<B>,
  spec: GaugeSpec & { readonly value: (backend: B) => number },
): void {
  new Counter({
    name: spec.name,
    help: spec.help,
    labelNames: ["cluster", "backend"] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const [backend, labels] of backendsWithLabels(clusters)) {
        this.inc(labels, spec.value(backend));
      }
    },
  });
}

/** A state set (one 0/1 series per possible state), so every state is queryable by label. */
export function backendStateSet<B extends { readonly address: string }, S extends string>(
  registry: Registry,
  clusters: ClusterSource<B>,
  spec: GaugeSpec & {
    readonly label: string;
    readonly states: readonly S[];
    readonly current: (backend: B) => S;
  },
): void {
  new Gauge({
    name: spec.name,
    help: spec.help,
    labelNames: ["cluster", "backend", spec.label],
    registers: [registry],
    collect() {
      this.reset();
      for (const [backend, labels] of backendsWithLabels(clusters)) {
        const current = spec.current(backend);
        for (const state of spec.states) {
          this.set({ ...labels, [spec.label]: state }, state === current ? 1 : 0);
        }
      }
    },
  });
}
