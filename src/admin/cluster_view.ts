/**
 * Read-only snapshots of clusters and backends, shared by the JSON API and the status page.
 * @module
 */
import type { Backend } from "../cluster/backend.ts";
import type { Cluster } from "../cluster/cluster.ts";
import type { BackendView, ClusterView } from "./schemas.ts";

/** Snapshots one backend. */
export function backendView(backend: Backend): BackendView {
  const ejected = backend.ejected;
  const detail = backend.healthDetail;
  return {
    address: backend.address,
    sources: [...backend.sources],
    connectivity: backend.upstream.state,
    state: backend.effectiveState,
    health: backend.health,
    lastCheckAt: detail.lastCheckAt > 0 ? new Date(detail.lastCheckAt).toISOString() : null,
    lastHealthError: detail.lastError ?? null,
    lastConnectionError: backend.upstream.lastError ?? null,
    lastTransitionReason: detail.lastTransitionReason ?? null,
    healthChecksPassed: detail.checksPassed,
    healthChecksFailed: detail.checksFailed,
    ejections: detail.ejections,
    ejected,
    ejectedUntil: ejected ? new Date(backend.ejectedUntil).toISOString() : null,
    drained: backend.drained,
    activeStreams: backend.upstream.activeStreams,
    calls: backend.counters.calls,
    failures: backend.counters.failures,
    bytesSent: backend.counters.bytesSent,
    bytesReceived: backend.counters.bytesReceived,
  };
}

/** Snapshots one cluster with all of its members. */
export function clusterView(cluster: Cluster): ClusterView {
  return {
    name: cluster.name,
    picker: cluster.policy,
    state: cluster.state,
    panic: cluster.panic,
    redisSet: cluster.config.discovery?.redisSet ?? null,
    calls: cluster.counters.calls,
    errors: cluster.counters.errors,
    backends: cluster.backends().map(backendView),
  };
}
