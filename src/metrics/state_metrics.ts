/**
 * Gauges that read live cluster state at scrape time (collect callbacks), so they can never
 * drift from what the admin API shows.
 * @module
 */
import { Gauge, type Registry } from "prom-client";
import type { ConnectivityState } from "../balancer/types.ts";
import type { Backend, BackendSource, HealthStatus } from "../cluster/backend.ts";
import type { Cluster } from "../cluster/cluster.ts";

const CONNECTIVITY_STATES: readonly ConnectivityState[] = [
  "IDLE",
  "CONNECTING",
  "READY",
  "TRANSIENT_FAILURE",
];
const HEALTH_STATES: readonly HealthStatus[] = ["unknown", "healthy", "unhealthy"];
const SOURCES: readonly BackendSource[] = ["static", "redis", "admin"];

/** Where the gauges read clusters from, at every scrape. */
export type ClusterSource = () => Iterable<Cluster>;

/** The `{ cluster, backend }` labels of one backend series. */
export interface BackendLabels {
  /** Cluster name. */
  readonly cluster: string;
  /** Backend `host:port`. */
  readonly backend: string;
}

/** Every backend of every cluster, with its series labels, at scrape time. */
export function* backendsWithLabels(
  clusters: ClusterSource,
): Generator<[Backend, BackendLabels]> {
  for (const cluster of clusters()) {
    for (const backend of cluster.backends()) {
      yield [backend, { cluster: cluster.name, backend: backend.address }];
    }
  }
}

/** Registers the live-state gauges for `clusters` on `registry`. */
export function registerStateMetrics(registry: Registry, clusters: ClusterSource): void {
  backendGauge(registry, clusters, {
    name: "switchyard_active_streams",
    help: "Calls in flight to each backend.",
    value: (backend) => backend.upstream.activeStreams,
  });
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
  backendStateSet(registry, clusters, {
    name: "switchyard_backend_connectivity",
    help: "Connection state of each backend: 1 for its current state, 0 for the others.",
    label: "state",
    states: CONNECTIVITY_STATES,
    current: (backend) => backend.upstream.state,
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

interface GaugeSpec {
  readonly name: string;
  readonly help: string;
}

/** A gauge with one series per backend. Reset at each scrape so removed backends vanish. */
function backendGauge(
  registry: Registry,
  clusters: ClusterSource,
  spec: GaugeSpec & { readonly value: (backend: Backend) => number },
): void {
  new Gauge({
    name: spec.name,
    help: spec.help,
    labelNames: ["cluster", "backend"] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const [backend, labels] of backendsWithLabels(clusters)) {
        this.set(labels, spec.value(backend));
      }
    },
  });
}

/** A state set (one 0/1 series per possible state), so every state is queryable by label. */
function backendStateSet<S extends string>(
  registry: Registry,
  clusters: ClusterSource,
  spec: GaugeSpec & {
    readonly label: string;
    readonly states: readonly S[];
    readonly current: (backend: Backend) => S;
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
