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
import type { BackendView, ClusterAffinityView, ClusterView } from "./schemas.ts";
import type { AffinityStatus } from "../affinity/table.ts";

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
      streamsOpened: stats?.streamsOpened ?? 0,
      streamsEnded: stats?.streamsEnded ?? 0,
      streamAgeP50Ms: stats === undefined ? null : streamAgeP50([stats]),
      streamAgeMaxMs: stats === undefined ? null : streamAgeMax([stats]),
    };
  });
  const sum = (
    field:
      | "activeStreams"
      | "calls"
      | "failures"
      | "bytesReceived"
      | "bytesSent"
      | "streamsOpened"
      | "streamsEnded",
  ) => perWorker.reduce((total, stats) => total + stats[field], 0);
  const reported = workers.flatMap(({ backends }) => backends.get(backend.address) ?? []);
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
    streamsOpened: sum("streamsOpened"),
    streamsEnded: sum("streamsEnded"),
    streamAgeP50Ms: streamAgeP50(reported),
    streamAgeMaxMs: streamAgeMax(reported),
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
export function clusterView(
  cluster: Cluster,
  planes: readonly DataPlaneStats[],
  affinity?: AffinityStatus,
): ClusterView {
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
    rebalanceShed: workers.reduce((total, { stats }) => total + (stats?.rebalanceShed ?? 0), 0),
    affinity: affinity === undefined ? null : affinityView(affinity, workers),
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

/** Streams open on a backend in one worker's report. */
function openStreams(stats: BackendStats): number {
  return stats.streamsOpened - stats.streamsEnded;
}

/** The oldest stream's age over workers' reports, in whole ms; null while none is open. */
function streamAgeMax(reports: readonly BackendStats[]): number | null {
  let max: number | null = null;
  for (const stats of reports) {
    if (openStreams(stats) > 0) max = Math.max(max ?? 0, Math.round(stats.streamAgeMaxMs));
  }
  return max;
}

/**
 * The median age of the streams of every report together, in whole ms, by nearest rank (the
 * ⌈n/2⌉-th youngest); null while none is open. Each report's sample holds all of its ages up
 * to `STREAM_AGE_SAMPLE_LIMIT` (256) streams, which makes this exact; past that, each sampled
 * age stands for its share of the worker's streams, and the rank is off by at most one
 * sample's stretch (n / 256 streams).
 */
export function streamAgeP50(reports: readonly BackendStats[]): number | null {
  const weighted: [age: number, weight: number][] = [];
  let total = 0;
  for (const stats of reports) {
    const open = openStreams(stats);
    const sample = stats.streamAgeSampleMs;
    if (open <= 0 || sample.length === 0) continue;
    total += open;
    for (const age of sample) weighted.push([age, open / sample.length]);
  }
  if (total === 0) return null;
  weighted.sort((a, b) => a[0] - b[0]);
  let seen = 0;
  for (const [age, weight] of weighted) {
    seen += weight;
    // Fractional weights: a rounding error must not skip the entry that reaches the rank.
    if (seen >= total / 2 - 1e-9) return Math.round(age);
  }
  return Math.round(weighted[weighted.length - 1][0]);
}

/** A cluster's affinity table: the control plane's counts and the workers' lookups. */
function affinityView(
  status: AffinityStatus,
  workers: readonly ClusterInWorkers[],
): ClusterAffinityView {
  let hits = 0;
  let misses = 0;
  for (const { stats } of workers) {
    hits += stats?.affinity?.hits ?? 0;
    misses += stats?.affinity?.misses ?? 0;
  }
  const { store, key, ttlMs, entries, claims } = status;
  return { store, key, ttlMs, entries, hits, misses, claims };
}
