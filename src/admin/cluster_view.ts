/**
 * Read-only views of clusters and backends, shared by the JSON API and the status page: the
 * control plane's membership and verdicts joined with every data plane's connectivity and
 * counters, summed over workers and also shown per worker.
 * @module
 */
import type { ConnectivityState } from "../balancer/types.ts";
import type { Backend } from "../cluster/backend.ts";
import type { Cluster } from "../cluster/cluster.ts";
import {
  type BackendStats,
  clusterCounters,
  type ClusterStats,
  type DataPlaneStats,
} from "../dataplane/stats.ts";
import type { BackendView, ClusterView } from "./schemas.ts";

/** Higher is more usable: a cluster or backend that some worker can use shows that state. */
const RANK: Readonly<Record<ConnectivityState, number>> = {
  IDLE: 0,
  TRANSIENT_FAILURE: 1,
  CONNECTING: 2,
  READY: 3,
};

function mostUsable(states: readonly ConnectivityState[]): ConnectivityState {
  return states.reduce<ConnectivityState>((best, s) => RANK[s] > RANK[best] ? s : best, "IDLE");
}

/** One cluster as each data plane reports it (undefined where a worker did not answer). */
interface ClusterInWorkers {
  readonly worker: number;
  readonly stats: ClusterStats | undefined;
  readonly backends: ReadonlyMap<string, BackendStats>;
}

function inWorkers(name: string, planes: readonly DataPlaneStats[]): ClusterInWorkers[] {
  return planes.map((plane) => {
    const stats = plane.clusters.find((cluster) => cluster.name === name);
    return {
      worker: plane.worker,
      stats,
      backends: new Map(stats?.backends.map((backend) => [backend.address, backend])),
    };
  });
}

function backendViewIn(backend: Backend, workers: readonly ClusterInWorkers[]): BackendView {
  const ejected = backend.ejected;
  const detail = backend.healthDetail;
  const perWorker = workers.map(({ worker, backends }) => {
    const stats = backends.get(backend.address);
    return {
      worker,
      connectivity: stats?.connectivity ?? "IDLE",
      state: stats?.state ?? "IDLE",
      lastConnectionError: stats?.lastConnectionError ?? null,
      activeStreams: stats?.activeStreams ?? 0,
      calls: stats?.calls ?? 0,
      failures: stats?.failures ?? 0,
      bytesReceived: stats?.bytesReceived ?? 0,
      bytesSent: stats?.bytesSent ?? 0,
    };
  });
  const sum = (field: "activeStreams" | "calls" | "failures" | "bytesReceived" | "bytesSent") =>
    perWorker.reduce((total, stats) => total + stats[field], 0);
  return {
    address: backend.address,
    sources: [...backend.sources],
    connectivity: mostUsable(perWorker.map((stats) => stats.connectivity)),
    state: mostUsable(perWorker.map((stats) => stats.state)),
    health: backend.health,
    lastCheckAt: detail.lastCheckAt > 0 ? new Date(detail.lastCheckAt).toISOString() : null,
    lastHealthError: detail.lastError ?? null,
    lastConnectionError: perWorker.find((stats) => stats.lastConnectionError !== null)
      ?.lastConnectionError ?? null,
    lastTransitionReason: detail.lastTransitionReason ?? null,
    healthChecksPassed: detail.checksPassed,
    healthChecksFailed: detail.checksFailed,
    ejections: detail.ejections,
    ejected,
    ejectedUntil: ejected ? new Date(backend.ejectedUntil).toISOString() : null,
    drained: backend.drained,
    activeStreams: sum("activeStreams"),
    calls: sum("calls"),
    failures: sum("failures"),
    bytesSent: sum("bytesSent"),
    bytesReceived: sum("bytesReceived"),
    workers: perWorker,
  };
}

/** Views one backend of `cluster`. */
export function backendView(
  cluster: Cluster,
  backend: Backend,
  planes: readonly DataPlaneStats[],
): BackendView {
  return backendViewIn(backend, inWorkers(cluster.name, planes));
}

/** Views one cluster with all of its members. */
export function clusterView(cluster: Cluster, planes: readonly DataPlaneStats[]): ClusterView {
  const workers = inWorkers(cluster.name, planes);
  const zero = clusterCounters();
  const perWorker = workers.map(({ worker, stats }) => ({
    worker,
    state: stats?.state ?? "IDLE",
    calls: stats?.calls ?? 0,
    errors: stats?.errors ?? 0,
  }));
  return {
    name: cluster.name,
    picker: cluster.policy,
    state: mostUsable(perWorker.map((stats) => stats.state)),
    panic: cluster.panic,
    redisSet: cluster.config.discovery?.redisSet ?? null,
    calls: perWorker.reduce((total, stats) => total + stats.calls, 0),
    errors: perWorker.reduce((total, stats) => total + stats.errors, 0),
    retries: sumCounters(workers.map(({ stats }) => stats?.retries), zero.retries),
    overflow: sumCounters(workers.map(({ stats }) => stats?.overflow), zero.overflow),
    workers: perWorker,
    backends: cluster.backends().map((backend) => backendViewIn(backend, workers)),
  };
}

/** Adds up each field of `counts` over workers into `zero`. */
function sumCounters<T extends Record<string, number>>(
  counts: readonly (Readonly<T> | undefined)[],
  zero: T,
): T {
  const total: Record<string, number> = { ...zero };
  for (const count of counts) {
    if (count === undefined) continue;
    for (const key of Object.keys(total)) total[key] += count[key];
  }
  return total as T;
}
