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
import { backendTls, type TlsMaterial } from "../config/tls.ts";
import { connectionOptions } from "../h2/options.ts";
import { loadTls } from "../h2/server.ts";
import { type BackendOutcome, OutcomeBatcher } from "../health/outcomes.ts";
import { DataPlaneMetrics, type MetricsJson } from "../metrics/data_plane_metrics.ts";
import type { CallObserver, CallTracer } from "../proxy/call_record.ts";
import type { CallContext } from "../proxy/proxied_call.ts";
import { GrpcWebListener } from "../grpc_web/listener.ts";
import { ProxyListener } from "../proxy/listener.ts";
import { Router } from "../route/router.ts";
import { CallLimits, limitSettings, resetWorkerSlots } from "../upstream/call_limits.ts";
import { DialGate } from "../upstream/dial_gate.ts";
import { UpstreamCluster } from "../upstream/upstream_cluster.ts";
import { DataPlaneAffinity } from "../affinity/data_plane_affinity.ts";
import type { AffinityFromDataPlane, AffinityToDataPlane } from "../affinity/messages.ts";
import { type DataPlaneStats, STREAM_AGE_SAMPLE_LIMIT } from "./stats.ts";

/**
 * The part of the config a data plane reads. Only this crosses to worker threads: the admin
 * token and the Redis URL's credentials stay in the control plane.
 */
export type DataPlaneConfig = Pick<
  Config,
  "listen" | "grpcWeb" | "http2" | "clusters" | "routes" | "accessLog" | "metrics" | "drain"
>;

/** The data plane's part of `config`. */
export function dataPlaneConfig(config: Config): DataPlaneConfig {
  const { listen, grpcWeb, http2, clusters, routes, accessLog, metrics, drain } = config;
  return { listen, grpcWeb, http2, clusters, routes, accessLog, metrics, drain };
}

/** What a data plane is built from: its first {@link DataPlaneChange}, and where it runs. */
export interface DataPlaneInit extends DataPlaneChange {
  /** The worker's number, from 1. */
  readonly worker: number;
  /** How many data planes share the listening address. */
  readonly workers: number;
  /** The clusters' limit counters, shared by every data plane (from `limitsMemory`). */
  readonly limits: SharedArrayBuffer;
}

/** What a running data plane is changed to by a reload. */
export interface DataPlaneChange {
  /** The data plane's part of the new config. */
  readonly config: DataPlaneConfig;
  /** Every PEM the new config names. */
  readonly tls: TlsMaterial;
  /** Every cluster's latest snapshot: the members are known before the first call. */
  readonly snapshots: readonly ClusterSnapshot[];
  /** Each cluster's slot in the limits memory; stable across reloads. */
  readonly limitSlots: Readonly<Record<string, number>>;
}

/** Where a data plane's passive health signals go, and how soon. */
export interface OutcomeSink {
  /** Takes one batch. */
  readonly deliver: (batch: BackendOutcome[]) => void;
  /** How long a batch collects calls; 0 delivers at the end of the task. */
  readonly delayMs: number;
}

/**
 * The calls' tracer when Deno's OpenTelemetry is on. Deno 2.9 reads `OTEL_DENO` as `true` in
 * any case (and warns about any value but `true` and `false`, leaving it off); so does this.
 * Off, `src/tracing/` is never loaded, and a call pays one `!== undefined` check.
 */
async function callTracer(): Promise<CallTracer | undefined> {
  let on = false;
  try {
    on = Deno.env.get("OTEL_DENO")?.toLowerCase() === "true";
  } catch {
    // No env permission: Deno could not read it either.
  }
  return on ? (await import("../tracing/call_tracer.ts")).denoCallTracer() : undefined;
}

/**
 * The listener settings a config gives; a change in them needs new listeners. The gRPC
 * listener takes new TLS material in place (it stays TLS or h2c), so only whether it speaks
 * TLS counts for it; the gRPC-Web listener (`Deno.serve`) needs a new one for a new
 * certificate.
 */
function listenerSettings(config: DataPlaneConfig, tls: TlsMaterial): string {
  return JSON.stringify([
    config.listen,
    config.grpcWeb,
    { ...config.http2, upstream: undefined },
    config.grpcWeb ? tls.listener : tls.listener !== undefined,
  ]);
}

/** The access log settings; a change in them opens a new log. */
function accessLogSettings(config: DataPlaneConfig): string {
  return JSON.stringify(config.accessLog);
}

/** A running data plane. */
export class DataPlane {
  /** The worker's number, from 1. */
  readonly worker: number;
  readonly #workers: number;
  readonly #limits: SharedArrayBuffer;
  readonly #clusters = new Map<string, UpstreamCluster>();
  readonly #outcomes: OutcomeSink;
  readonly #forwardAccessLog: ((batch: Uint8Array) => void) | undefined;
  readonly #metrics: DataPlaneMetrics;
  /** What every call of the gRPC listener, and of the gRPC-Web one, reads: swapped by reloads. */
  readonly #grpcContext: CallContext;
  readonly #webContext: CallContext;
  readonly #dialGate: DialGate;
  /** The clusters' affinity caches. */
  readonly #affinity: DataPlaneAffinity;
  #config: DataPlaneConfig;
  #tls: TlsMaterial;
  #listener: ProxyListener | undefined;
  #grpcWeb: GrpcWebListener | undefined;
  #accessLog: AccessLog | undefined;
  /** Lines the access logs before `#accessLog` dropped: the metric counts every log's. */
  #accessLogDroppedBefore = 0;
  /** Listeners replaced by a reload, still draining their connections. */
  readonly #retiring = new Set<Promise<void>>();

  private constructor(
    init: DataPlaneInit,
    outcomes: OutcomeSink,
    forwardAccessLog: ((batch: Uint8Array) => void) | undefined,
    affinity: ((message: AffinityFromDataPlane) => void) | undefined,
  ) {
    this.worker = init.worker;
    this.#affinity = new DataPlaneAffinity(affinity);
    this.#workers = init.workers;
    this.#limits = init.limits;
    resetWorkerSlots(init.limits, init.worker, init.workers);
    this.#outcomes = outcomes;
    this.#forwardAccessLog = forwardAccessLog;
    this.#config = init.config;
    this.#tls = init.tls;
    this.#metrics = new DataPlaneMetrics(
      this.#clusters,
      init.config.metrics.workerLabel ? String(init.worker) : undefined,
      () => this.accessLogDropped,
    );
    const router = new Router<UpstreamCluster>([], {}, () => undefined!);
    const onStart = this.#metrics.observeStart;
    const shared = { router, observers: [], onStart, tracer: undefined, timesFirstByte: false };
    this.#grpcContext = { ...shared, protocol: "grpc" };
    this.#webContext = { ...shared, protocol: "grpc-web" };
    // The process-wide caps are shared out: each data plane takes its part.
    this.#dialGate = new DialGate(
      Math.ceil(init.config.http2.upstream.maxConcurrentDials / init.workers),
    );
  }

  /**
   * Builds the clusters from `init.snapshots`, then binds the listeners. With
   * `forwardAccessLog`, an access log on stdout goes there in batches of whole lines (the
   * main thread writes every worker's), rather than to this thread's own stdout. Affinity
   * lookups go to the control plane through `affinity` (see {@link DataPlane.affinity}).
   */
  static async start(
    init: DataPlaneInit,
    outcomes: OutcomeSink,
    forwardAccessLog?: (batch: Uint8Array) => void,
    affinity?: (message: AffinityFromDataPlane) => void,
  ): Promise<DataPlane> {
    const plane = new DataPlane(init, outcomes, forwardAccessLog, affinity);
    try {
      const tracer = await callTracer();
      plane.#grpcContext.tracer = tracer;
      plane.#webContext.tracer = tracer;
      await plane.#configure(init, true);
    } catch (error) {
      // An address cannot be bound: undo what started, the dials included.
      await plane.close();
      throw error;
    }
    return plane;
  }

  /**
   * Applies a reload. New listeners are bound first, so a failure changes nothing. Then
   * clusters are added, changed and removed (a removed one finishes its calls), routes and
   * observers are swapped for new calls, and replaced listeners drain their connections:
   * no call in flight is dropped.
   */
  reconfigure(change: DataPlaneChange): Promise<void> {
    return this.#configure(change, false);
  }

  async #configure(change: DataPlaneChange, first: boolean): Promise<void> {
    const { config, tls } = change;
    const previous = this.#config;
    // Everything that can fail comes first, and everything after the first bind is
    // synchronous: a listener accepts only once this task yields, so no call sees a
    // half-applied change.
    let accessLog = this.#accessLog;
    const reopenLog = first || accessLogSettings(previous) !== accessLogSettings(config);
    if (reopenLog) accessLog = await this.#openAccessLog(config);
    let listeners: { grpc: ProxyListener; grpcWeb: GrpcWebListener | undefined } | undefined;
    if (first || listenerSettings(previous, this.#tls) !== listenerSettings(config, tls)) {
      try {
        if (tls.listener) await loadTls();
        listeners = this.#bind(config, tls);
      } catch (error) {
        if (reopenLog) await accessLog?.close();
        throw error;
      }
    }
    if (
      listeners === undefined && tls.listener !== undefined &&
      JSON.stringify(tls.listener) !== JSON.stringify(this.#tls.listener)
    ) {
      // A rotated certificate or client CA: no new listening socket, see listenerSettings.
      this.#listener!.updateTls(tls.listener);
    }
    this.#config = config;
    this.#tls = tls;
    // Only new clusters take the change's snapshots: the others have had every snapshot
    // since, and one published while this change waited would be newer than the change's.
    const added = this.#syncClusters(change);
    this.#affinity.sync(this.#clusters);
    for (const snapshot of change.snapshots) {
      if (added.has(snapshot.cluster)) this.#clusters.get(snapshot.cluster)!.apply(snapshot);
    }
    const retiredLog = reopenLog ? this.#accessLog : undefined;
    // No call logs to the retired log from now on: its drops are final.
    this.#accessLogDroppedBefore += retiredLog?.dropped ?? 0;
    this.#accessLog = accessLog;
    const observers: CallObserver[] = [this.#metrics.observeCall];
    const detected = Object.entries(config.clusters)
      .filter(([, cluster]) => cluster.outlierDetection !== undefined)
      .map(([name]) => name);
    if (detected.length > 0) {
      const { deliver, delayMs } = this.#outcomes;
      observers.push(new OutcomeBatcher(detected, deliver, delayMs).observe);
    }
    if (accessLog) observers.push(accessLog.observe);
    const router = new Router(config.routes, config.clusters, (name) => this.#clusters.get(name)!);
    const { enabled, fields } = config.accessLog;
    const timesFirstByte = enabled && (fields?.includes("upstreamDurationMs") ?? true);
    for (const context of [this.#grpcContext, this.#webContext]) {
      context.router = router;
      context.observers = observers;
      context.timesFirstByte = timesFirstByte;
    }
    if (listeners) {
      const old = [this.#listener, this.#grpcWeb];
      this.#listener = listeners.grpc;
      this.#grpcWeb = listeners.grpcWeb;
      for (const listener of old) {
        if (listener === undefined) continue;
        // Replaced listeners send GOAWAY and let their calls finish, as a drain does.
        const retiring = listener.drain(config.drain.timeout);
        this.#retiring.add(retiring);
        retiring.finally(() => this.#retiring.delete(retiring));
      }
    }
    // A call reads its context's observers when it ends, so calls in flight log to the new
    // log: the old one has nothing more coming and closes now.
    await retiredLog?.close();
  }

  /** Binds the listeners `config` asks for; on failure none stays bound. */
  #bind(
    config: DataPlaneConfig,
    tls: TlsMaterial,
  ): { grpc: ProxyListener; grpcWeb: GrpcWebListener | undefined } {
    const workers = this.#workers;
    // Always shared: a reload binds the same address again before the old listener closes.
    const reusePort = true;
    const grpc = ProxyListener.start({
      listen: config.listen,
      tls: tls.listener,
      http2: { ...config.http2, maxConnections: Math.ceil(config.http2.maxConnections / workers) },
      reusePort,
    }, this.#grpcContext);
    if (!config.grpcWeb) return { grpc, grpcWeb: undefined };
    try {
      const grpcWeb = GrpcWebListener.start({
        ...config.grpcWeb,
        maxConcurrentCalls: Math.ceil(config.grpcWeb.maxConcurrentCalls / workers),
        maxHeaderListSize: config.http2.maxHeaderListSize,
        sendTimeout: config.http2.sendTimeout,
        tls: tls.listener,
        reusePort,
      }, this.#webContext);
      return { grpc, grpcWeb };
    } catch (error) {
      void grpc.drain(0);
      throw error;
    }
  }

  /** Adds, changes and removes clusters to match `change.config.clusters`; returns the added. */
  #syncClusters(change: DataPlaneChange): Set<string> {
    const added = new Set<string>();
    const { config } = change;
    for (const [name, cluster] of this.#clusters) {
      if (name in config.clusters) continue;
      // Its calls in flight hold it and finish; its connections close after them.
      this.#clusters.delete(name);
      cluster.close();
      this.#metrics.forgetCluster(name);
    }
    const upstream = {
      connection: connectionOptions(config.http2, "client"),
      maxConnectionsPerBackend: config.http2.upstream.maxConnectionsPerBackend,
      dialGate: this.#dialGate,
      dialObserver: this.#metrics.dials,
    };
    for (const [name, settings] of Object.entries(config.clusters)) {
      const tls = backendTls(settings.tls, change.tls.clusters[name]);
      const existing = this.#clusters.get(name);
      if (existing) {
        existing.reconfigure(settings, { ...upstream, tls });
        continue;
      }
      const limits = new CallLimits(
        this.#limits,
        change.limitSlots[name],
        this.worker,
        this.#workers,
        limitSettings(settings),
      );
      const cluster = new UpstreamCluster(name, settings, { ...upstream, tls }, limits);
      this.#clusters.set(name, cluster);
      this.#metrics.track(cluster);
      added.add(name);
    }
    return added;
  }

  #openAccessLog(config: DataPlaneConfig): Promise<AccessLog | undefined> | undefined {
    const { enabled, path, maxBufferedBytes, fields } = config.accessLog;
    if (!enabled) return undefined;
    return this.#forwardAccessLog && path === STDOUT_PATH
      ? Promise.resolve(AccessLog.forwarding(this.#forwardAccessLog, maxBufferedBytes, fields))
      : AccessLog.open(path, maxBufferedBytes, fields);
  }

  /**
   * Opens the access-log file again at its path (SIGUSR1, after logrotate moved it), once
   * the lines buffered so far are written to the old one. Nothing to do for stdout.
   */
  reopenAccessLog(): Promise<void> {
    return this.#accessLog?.reopen() ?? Promise.resolve();
  }

  /** Access-log lines dropped because the sink did not keep up, over the data plane's life. */
  get accessLogDropped(): number {
    return this.#accessLogDroppedBefore + (this.#accessLog?.dropped ?? 0);
  }

  /** Takes the control plane's affinity answers and owner updates. */
  affinity(message: AffinityToDataPlane): void {
    this.#affinity.receive(message);
  }

  /** Applies the control plane's latest snapshots. */
  apply(snapshots: readonly ClusterSnapshot[]): void {
    for (const snapshot of snapshots) this.#clusters.get(snapshot.cluster)?.apply(snapshot);
  }

  /** Connectivity and counters of every cluster and backend. */
  stats(): DataPlaneStats {
    const now = performance.now();
    return {
      worker: this.worker,
      connections: this.#listener?.connections ?? 0,
      clusters: [...this.#clusters.values()].map((cluster) => ({
        name: cluster.name,
        state: cluster.state,
        calls: cluster.counters.calls,
        errors: cluster.counters.errors,
        durations: [...cluster.counters.durations],
        retries: { ...cluster.counters.retries },
        overflow: { ...cluster.counters.overflow },
        rebalanceShed: cluster.counters.rebalanceShed,
        affinity: this.#affinity.stats(cluster.name),
        backends: cluster.backends().map((backend) => ({
          address: backend.address,
          connectivity: backend.upstream.state,
          state: backend.effectiveState,
          lastConnectionError: backend.upstream.lastError ?? null,
          activeStreams: backend.upstream.activeStreams,
          ...backend.counters,
          streamAgeMaxMs: backend.streamAgeMaxMs(now),
          streamAgeSampleMs: backend.streamAgeSample(now, STREAM_AGE_SAMPLE_LIMIT),
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
    await Promise.all([
      this.#listener?.drain(timeoutMs),
      this.#grpcWeb?.drain(timeoutMs),
      ...this.#retiring,
    ]);
  }

  /**
   * Stops for good: closes the listener (and any connection a drain left), every backend
   * connection once its calls finish, and the access log.
   */
  async close(): Promise<void> {
    await this.drain(0);
    for (const cluster of this.#clusters.values()) cluster.close();
    this.#affinity.close();
    this.#metrics.close();
    await this.#accessLog?.close();
  }
}
