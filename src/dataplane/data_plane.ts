/**
 * One data plane: the listener, the relay, the router and a connection pool per backend,
 * with the pickers that choose among them. It runs in a worker thread, or in the main
 * thread with `workers: 1`, and knows the control plane only through what it is given:
 * {@link ClusterSnapshot}s in, {@link BackendOutcome} batches and stats out.
 * @module
 */
import { AccessLog, STDOUT_PATH } from "../access_log/access_log.ts";
import type { ClusterSnapshot } from "../cluster/snapshot.ts";
import type { Config } from "../config/schema.ts";
import type { TlsMaterial } from "../config/tls_material.ts";
import { connectionOptions } from "../h2/options.ts";
import { type BackendOutcome, OutcomeBatcher } from "../health/outcomes.ts";
import { DataPlaneMetrics, type MetricsJson } from "../metrics/data_plane_metrics.ts";
import type { CallObserver } from "../proxy/call_record.ts";
import { GrpcWebListener } from "../grpc_web/listener.ts";
import { ProxyListener } from "../proxy/listener.ts";
import { Router } from "../route/router.ts";
import { CallLimits } from "../upstream/call_limits.ts";
import { DialGate } from "../upstream/dial_gate.ts";
import { UpstreamCluster } from "../upstream/upstream_cluster.ts";
import type { DataPlaneStats } from "./stats.ts";

/**
 * The part of the config a data plane reads. Only this crosses to worker threads: the admin
 * token and the Redis URL's credentials stay in the control plane.
 */
export type DataPlaneConfig = Pick<
  Config,
  "listen" | "grpcWeb" | "http2" | "clusters" | "routes" | "accessLog" | "metrics"
>;

/** The data plane's part of `config`. */
export function dataPlaneConfig(config: Config): DataPlaneConfig {
  const { listen, grpcWeb, http2, clusters, routes, accessLog, metrics } = config;
  return { listen, grpcWeb, http2, clusters, routes, accessLog, metrics };
}

/** What a data plane is built from. */
export interface DataPlaneInit {
  /** The worker's number, from 1. */
  readonly worker: number;
  /** How many data planes share the listening address. */
  readonly workers: number;
  /** The data plane's part of the effective config. */
  readonly config: DataPlaneConfig;
  /** Every PEM the config names, read and checked by the control plane. */
  readonly tls: TlsMaterial;
  /** Every cluster's latest snapshot: the members are known before the first call. */
  readonly snapshots: readonly ClusterSnapshot[];
  /**
   * The clusters' limit counters, shared by every data plane (from `limitsMemory`), for
   * the clusters in `config.clusters` order.
   */
  readonly limits: SharedArrayBuffer;
}

/** Where a data plane's passive health signals go, and how soon. */
export interface OutcomeSink {
  /** Takes one batch. */
  readonly deliver: (batch: BackendOutcome[]) => void;
  /** How long a batch collects calls; 0 delivers at the end of the task. */
  readonly delayMs: number;
}

/** A running data plane. */
export class DataPlane {
  /** The worker's number, from 1. */
  readonly worker: number;
  readonly #clusters: ReadonlyMap<string, UpstreamCluster>;
  readonly #listener: ProxyListener;
  readonly #grpcWeb: GrpcWebListener | undefined;
  readonly #metrics: DataPlaneMetrics;
  readonly #accessLog: AccessLog | undefined;

  private constructor(
    worker: number,
    clusters: ReadonlyMap<string, UpstreamCluster>,
    listeners: { grpc: ProxyListener; grpcWeb: GrpcWebListener | undefined },
    metrics: DataPlaneMetrics,
    accessLog: AccessLog | undefined,
  ) {
    this.worker = worker;
    this.#clusters = clusters;
    this.#listener = listeners.grpc;
    this.#grpcWeb = listeners.grpcWeb;
    this.#metrics = metrics;
    this.#accessLog = accessLog;
  }

  /**
   * Builds the clusters from `init.snapshots`, then binds the listeners. With
   * `forwardAccessLog`, an access log on stdout goes there in batches of whole lines (the
   * main thread writes every worker's), rather than to this thread's own stdout.
   */
  static async start(
    init: DataPlaneInit,
    outcomes: OutcomeSink,
    forwardAccessLog?: (batch: Uint8Array) => void,
  ): Promise<DataPlane> {
    const { config, workers } = init;
    const upstream = {
      connection: connectionOptions(config.http2, "client"),
      maxConnectionsPerBackend: config.http2.upstream.maxConnectionsPerBackend,
      // The process-wide caps are shared out: each data plane takes its part.
      dialGate: new DialGate(Math.ceil(config.http2.upstream.maxConcurrentDials / workers)),
    };
    const clusters = new Map(
      Object.entries(config.clusters).map(([name, cluster], index) => {
        const limits = new CallLimits(init.limits, index, init.worker, workers, {
          ...cluster.limits,
          retryBudgetPercent: cluster.retryBudget.percent,
          minRetryConcurrency: cluster.retryBudget.minRetryConcurrency,
        });
        return [name, new UpstreamCluster(name, cluster, upstream, limits)];
      }),
    );
    for (const snapshot of init.snapshots) clusters.get(snapshot.cluster)?.apply(snapshot);
    const metrics = new DataPlaneMetrics(
      clusters,
      config.metrics.workerLabel ? String(init.worker) : undefined,
    );
    const observers: CallObserver[] = [metrics.observeCall];
    const detected = Object.entries(config.clusters)
      .filter(([, cluster]) => cluster.outlierDetection !== undefined)
      .map(([name]) => name);
    if (detected.length > 0) {
      observers.push(new OutcomeBatcher(detected, outcomes.deliver, outcomes.delayMs).observe);
    }
    const { enabled, path, maxBufferedBytes } = config.accessLog;
    const accessLog = !enabled
      ? undefined
      : forwardAccessLog && path === STDOUT_PATH
      ? AccessLog.forwarding(forwardAccessLog, maxBufferedBytes)
      : await AccessLog.open(path, maxBufferedBytes);
    if (accessLog) observers.push(accessLog.observe);
    const router = new Router(config.routes, config.clusters, (name) => clusters.get(name)!);
    const reusePort = workers > 1;
    let grpc: ProxyListener | undefined;
    let grpcWeb: GrpcWebListener | undefined;
    try {
      grpc = ProxyListener.start({
        listen: config.listen,
        tls: init.tls.listener,
        http2: {
          ...config.http2,
          maxConnections: Math.ceil(config.http2.maxConnections / workers),
        },
        reusePort,
      }, { router, observers, protocol: "grpc" });
      if (config.grpcWeb) {
        grpcWeb = GrpcWebListener.start({
          ...config.grpcWeb,
          maxConcurrentCalls: Math.ceil(config.grpcWeb.maxConcurrentCalls / workers),
          maxHeaderListSize: config.http2.maxHeaderListSize,
          sendTimeout: config.http2.sendTimeout,
          tls: init.tls.listener,
          reusePort,
        }, { router, observers, protocol: "grpc-web" });
      }
    } catch (error) {
      // An address cannot be bound: undo what started, the dials above included.
      await grpc?.drain(0);
      for (const cluster of clusters.values()) cluster.close();
      await accessLog?.close();
      throw error;
    }
    return new DataPlane(init.worker, clusters, { grpc, grpcWeb }, metrics, accessLog);
  }

  /** Applies the control plane's latest snapshots. */
  apply(snapshots: readonly ClusterSnapshot[]): void {
    for (const snapshot of snapshots) this.#clusters.get(snapshot.cluster)?.apply(snapshot);
  }

  /** Connectivity and counters of every cluster and backend. */
  stats(): DataPlaneStats {
    return {
      worker: this.worker,
      connections: this.#listener.connections,
      clusters: [...this.#clusters.values()].map((cluster) => ({
        name: cluster.name,
        state: cluster.state,
        calls: cluster.counters.calls,
        errors: cluster.counters.errors,
        retries: { ...cluster.counters.retries },
        overflow: { ...cluster.counters.overflow },
        backends: cluster.backends().map((backend) => ({
          address: backend.address,
          connectivity: backend.upstream.state,
          state: backend.effectiveState,
          lastConnectionError: backend.upstream.lastError ?? null,
          activeStreams: backend.upstream.activeStreams,
          ...backend.counters,
        })),
      })),
    };
  }

  /** The clusters with a member that can take a call now (READY and not drained). */
  usableClusters(): string[] {
    return [...this.#clusters.values()]
      .filter((cluster) =>
        cluster.backends().some((backend) =>
          backend.effectiveState === "READY" && !backend.verdict.drained
        )
      )
      .map((cluster) => cluster.name);
  }

  /** This data plane's metric series. */
  metrics(): Promise<MetricsJson> {
    return this.#metrics.json();
  }

  /** Stops accepting, sends GOAWAY, and waits for in-flight calls up to `timeoutMs`. */
  async drain(timeoutMs: number): Promise<void> {
    await Promise.all([this.#listener.drain(timeoutMs), this.#grpcWeb?.drain(timeoutMs)]);
  }

  /**
   * Stops for good: closes the listener (and any connection a drain left), every backend
   * connection once its calls finish, and the access log.
   */
  async close(): Promise<void> {
    await this.drain(0);
    for (const cluster of this.#clusters.values()) cluster.close();
    await this.#accessLog?.close();
  }
}
