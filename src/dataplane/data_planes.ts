/**
 * Every data plane of the process, as the control plane drives them together: snapshots go
 * to all, stats and metrics come from all, drain and close act on all.
 *
 * With `workers: 1` the one data plane runs in the main thread. With more, each runs in a
 * worker thread with its own `SO_REUSEPORT` listener on the same address, and the kernel
 * spreads new connections over them.
 * @module
 */
import { AccessLog, STDOUT_PATH } from "../access_log/access_log.ts";
import type { AffinityFromDataPlane, AffinityToDataPlane } from "../affinity/messages.ts";
import type { SnapshotSink } from "../cluster/cluster.ts";
import type { ClusterSnapshot } from "../cluster/snapshot.ts";
import { parseHostPort } from "../config/address.ts";
import type { Config } from "../config/schema.ts";
import type { TlsMaterial } from "../config/tls.ts";
import type { BackendOutcome } from "../health/outcomes.ts";
import { componentLogger, type LogLevel } from "../log/logger.ts";
import type { MetricsJson } from "../metrics/data_plane_metrics.ts";
import {
  type DataPlaneChange,
  type DataPlaneConfig,
  dataPlaneConfig,
  type DataPlaneInit,
} from "./data_plane.ts";
import { type DataPlaneHandle, LocalDataPlane } from "./handle.ts";
import type { DataPlaneStats } from "./stats.ts";
import { WorkerDataPlane } from "./worker_plane.ts";
import { limitsMemory } from "../upstream/call_limits.ts";

const log = componentLogger("lifecycle");

/**
 * Cluster names one process can have over its life, reloads included: the limits memory is
 * sized once, and a cluster keeps its slot.
 */
const MAX_CLUSTER_SLOTS = 1024;

/** One data plane's liveness, for `/ready` and `/metrics`. */
export interface WorkerState {
  /** The worker's number, from 1. */
  readonly worker: number;
  /** Its listener is bound and it answers. */
  readonly listening: boolean;
  /** Times it was restarted after dying. */
  readonly restarts: number;
}

/** One data plane's metric series, with which incarnation of the worker gave them. */
export interface WorkerMetrics extends Omit<WorkerState, "listening"> {
  /** Its series, or `undefined` when it did not answer. */
  readonly series: MetricsJson | undefined;
}

/** What the data planes are built from. */
export interface DataPlanesOptions {
  /** The effective config. */
  readonly config: Config;
  /** How many data planes: 1 runs in the main thread. */
  readonly workers: number;
  /** Every PEM the config names, read and checked by the control plane. */
  readonly tls: TlsMaterial;
  /** The workers' log level. */
  readonly logLevel: LogLevel;
  /** Let tests crash a worker (see `debug_hooks.ts`). */
  readonly debugHooks: boolean;
  /** Where passive health signals go. */
  readonly onOutcomes: (batch: BackendOutcome[]) => void;
  /** Where each data plane's affinity lookups, claims and keeps go, with its number. */
  readonly onAffinity?: (worker: number, message: AffinityFromDataPlane) => void;
}

/** The process's data planes. */
export class DataPlanes implements SnapshotSink {
  readonly #latest = new Map<string, ClusterSnapshot>();
  #handles: DataPlaneHandle[] = [];
  /** What a (re)started data plane is built from: the latest config, PEMs and slots. */
  #current: Omit<DataPlaneChange, "snapshots"> | undefined;
  /** Each cluster's slot in the limits memory, kept for the process's life. */
  readonly #limitSlots = new Map<string, number>();
  #published: Promise<unknown> = Promise.resolve();
  /** With workers and an access log on stdout: the one writer of every worker's lines. */
  #stdoutLog: AccessLog | undefined;
  /** How many data planes run: with more than one they are worker threads. */
  #workers = 0;
  /** The `maxBufferedBytes` `#stdoutLog` was opened with. */
  #stdoutLogBytes: number | undefined;
  /** Lines the stdout logs before `#stdoutLog` dropped. */
  #stdoutDroppedBefore = 0;

  /** See {@link SnapshotSink.publish}: the snapshot goes to every data plane. */
  publish(snapshot: ClusterSnapshot): void {
    this.#latest.set(snapshot.cluster, snapshot);
    if (this.#handles.length === 0) return;
    this.#published = Promise.all(this.#handles.map((handle) => handle.apply([snapshot])));
  }

  /**
   * Settles once every running data plane has applied every snapshot published so far (a
   * worker that is restarting takes the latest with its start).
   */
  settled(): Promise<void> {
    return this.#published.then(() => {});
  }

  /**
   * Starts `options.workers` data planes from the latest snapshots; resolves once all of
   * them listen. Throws, having stopped any that started, when one cannot.
   */
  async start(options: DataPlanesOptions): Promise<void> {
    const { workers } = options;
    this.#workers = workers;
    const config = dataPlaneConfig(options.config);
    // Listeners always share their address (a reload binds it again before the old one
    // closes), so first make sure no other process listens there.
    assertNobodyListens(config.listen, "listen");
    if (config.grpcWeb) assertNobodyListens(config.grpcWeb.listen, "grpcWeb.listen");
    this.#current = { config, tls: options.tls, limitSlots: this.#slotsFor(config) };
    // One block of limit counters for the whole process: every worker counts into it.
    const limits = limitsMemory(MAX_CLUSTER_SLOTS, workers);
    const init = (worker: number): DataPlaneInit => ({
      ...this.#current!,
      worker,
      workers,
      snapshots: [...this.#latest.values()],
      limits,
    });
    if (workers === 1) {
      const onAffinity = options.onAffinity;
      const local = await LocalDataPlane.start(
        init(1),
        options.onOutcomes,
        onAffinity && ((message) => onAffinity(1, message)),
      );
      this.#handles = [local];
      // Snapshots published while it started went nowhere.
      await local.apply([...this.#latest.values()]);
      return;
    }
    await this.#syncStdoutLog(config);
    // Handles exist before their workers listen, so that no snapshot published meanwhile
    // is lost: each worker gets the latest of every cluster when it listens.
    const planes = Array.from({ length: workers }, (_, index) =>
      new WorkerDataPlane({
        worker: index + 1,
        init: () => ({
          type: "init",
          init: init(index + 1),
          logLevel: options.logLevel,
          debugHooks: options.debugHooks,
        }),
        onOutcomes: options.onOutcomes,
        onAccessLog: (batch) => this.#stdoutLog?.writeBatch(batch),
        onAffinity: (message) => options.onAffinity?.(index + 1, message),
      }));
    this.#handles = planes;
    const started = await Promise.allSettled(planes.map((plane) => plane.start()));
    const failed = started.find((result) => result.status === "rejected");
    if (failed) {
      await Promise.all(planes.map((plane) => plane.close()));
      await this.#stdoutLog?.close();
      this.#handles = [];
      throw (failed as PromiseRejectedResult).reason;
    }
  }

  /**
   * Applies a reloaded config to every data plane, with the latest snapshots (new clusters
   * get their members with it). Throws, having changed nothing, when a new listen address
   * is taken or a cluster slot cannot be given, and when a data plane could not apply it
   * (it could not bind): then every data plane is set back to the running config. A worker
   * that restarts starts from the config in force.
   */
  async reconfigure(fullConfig: Config, tls: TlsMaterial): Promise<void> {
    const config = dataPlaneConfig(fullConfig);
    const previous = this.#current!.config;
    if (config.listen !== previous.listen) assertNobodyListens(config.listen, "listen");
    if (config.grpcWeb && config.grpcWeb.listen !== previous.grpcWeb?.listen) {
      assertNobodyListens(config.grpcWeb.listen, "grpcWeb.listen");
    }
    const running = this.#current!;
    const next = { config, tls, limitSlots: this.#slotsFor(config) };
    const apply = async (target: Omit<DataPlaneChange, "snapshots">) => {
      this.#current = target;
      const snapshots = [...this.#latest.values()]
        .filter((snapshot) => snapshot.cluster in target.config.clusters);
      const change: DataPlaneChange = { ...target, snapshots };
      const results = await Promise.allSettled(this.#handles.map((h) => h.reconfigure(change)));
      return results.find((result) => result.status === "rejected") as
        | PromiseRejectedResult
        | undefined;
    };
    if (this.#workers > 1) await this.#syncStdoutLog(config);
    const failed = await apply(next);
    if (failed) {
      if (this.#workers > 1) await this.#syncStdoutLog(running.config);
      // Every worker goes back to the running config, so that none serves one the control
      // plane does not run (a worker that failed changed nothing; the others rebind).
      const back = await apply(running);
      if (back) {
        log.error("a worker did not return to the running config: {error}", {
          error: String(back.reason),
        });
      }
      throw failed.reason;
    }
    for (const name of this.#latest.keys()) {
      if (!(name in config.clusters)) this.#latest.delete(name);
    }
  }

  /** Drops the snapshots of clusters a failed reload had added. */
  forget(clusters: readonly string[]): void {
    for (const name of clusters) this.#latest.delete(name);
  }

  /**
   * With workers, the main thread writes every worker's access-log lines to stdout: it
   * holds that log while `config` sends the access log there, opened with its settings.
   */
  async #syncStdoutLog(config: DataPlaneConfig): Promise<void> {
    const { enabled, path, maxBufferedBytes } = config.accessLog;
    const wanted = enabled && path === STDOUT_PATH ? maxBufferedBytes : undefined;
    if (wanted === this.#stdoutLogBytes) return;
    const old = this.#stdoutLog;
    this.#stdoutLog = wanted === undefined ? undefined : await AccessLog.open(STDOUT_PATH, wanted);
    this.#stdoutLogBytes = wanted;
    // Batches go to the new log from now on: the old one's drops are final.
    this.#stdoutDroppedBefore += old?.dropped ?? 0;
    await old?.close();
  }

  /**
   * Access-log lines the main thread dropped writing the workers' batches to stdout, over
   * the process's life (each data plane counts the lines it dropped itself).
   */
  accessLogDropped(): number {
    return this.#stdoutDroppedBefore + (this.#stdoutLog?.dropped ?? 0);
  }

  /**
   * Has every data plane open the access-log file again at its path, once what it buffered
   * is written to the old one (SIGUSR1, after logrotate moved the file away); logs one line.
   * Stdout needs no reopen. A worker that is restarting opens the path anyway as it starts.
   */
  async reopenAccessLog(): Promise<void> {
    const { enabled, path } = this.#current?.config.accessLog ?? {};
    if (!enabled || path === STDOUT_PATH) {
      log.info("access log reopen: the access log is not a file; nothing to reopen");
      return;
    }
    const handles = this.#handles;
    const results = await Promise.allSettled(handles.map((handle) => handle.reopenAccessLog()));
    const failed = results.flatMap((result, i) =>
      result.status === "rejected" ? [`worker ${handles[i].worker}: ${String(result.reason)}`] : []
    );
    if (failed.length > 0) {
      log.error("access log {path} not reopened, still writing to the old file: {errors}", {
        path,
        errors: failed.join("; "),
      });
      return;
    }
    log.info("access log {path} reopened by {dataPlanes} data planes", {
      path,
      dataPlanes: handles.length,
    });
  }

  /** Slots for `config`'s clusters: a cluster keeps its slot across reloads. */
  #slotsFor(config: DataPlaneConfig): Record<string, number> {
    for (const name of Object.keys(config.clusters)) {
      if (this.#limitSlots.has(name)) continue;
      if (this.#limitSlots.size >= MAX_CLUSTER_SLOTS) {
        throw new Error(
          `more than ${MAX_CLUSTER_SLOTS} cluster names in this process's life: restart it`,
        );
      }
      this.#limitSlots.set(name, this.#limitSlots.size);
    }
    return Object.fromEntries(this.#limitSlots);
  }

  /** Each data plane's number, whether it listens now, and how often it was restarted. */
  workers(): WorkerState[] {
    return this.#handles.map(({ worker, listening, restarts }) => ({
      worker,
      listening,
      restarts,
    }));
  }

  /** Every answering data plane's stats, in worker order. */
  async stats(): Promise<DataPlaneStats[]> {
    return answered(await Promise.allSettled(this.#handles.map((handle) => handle.stats())));
  }

  /**
   * The clusters that every data plane can serve now; `undefined` when some data plane did
   * not answer in time.
   */
  async usableClusters(): Promise<Set<string> | undefined> {
    const results = await Promise.allSettled(this.#handles.map((h) => h.usableClusters()));
    const lists = answered(results);
    if (lists.length < this.#handles.length) return undefined;
    return new Set(lists[0]?.filter((name) => lists.every((list) => list.includes(name))));
  }

  /** Every data plane's metric series; `undefined` for one that did not answer. */
  async metrics(): Promise<WorkerMetrics[]> {
    // Which incarnation answers is fixed when asking: a worker that dies fails what it owed.
    const asked = this.#handles.map(({ worker, restarts }) => ({ worker, restarts }));
    const results = await Promise.allSettled(this.#handles.map((handle) => handle.metrics()));
    return asked.map((incarnation, i) => {
      const result = results[i];
      return { ...incarnation, series: result.status === "fulfilled" ? result.value : undefined };
    });
  }

  /** Drains every data plane together, up to `timeoutMs`. */
  async drain(timeoutMs: number): Promise<void> {
    await Promise.allSettled(this.#handles.map((handle) => handle.drain(timeoutMs)));
  }

  /** Closes every data plane, then the shared access log. */
  async close(): Promise<void> {
    await Promise.all(this.#handles.map((handle) => handle.close()));
    await this.#stdoutLog?.close();
  }

  /** Sends an affinity answer to data plane `worker` (a request of its). */
  affinityTo(worker: number, message: AffinityToDataPlane): void {
    this.#handles.find((handle) => handle.worker === worker)?.affinity(message);
  }

  /** Sends affinity owner updates to every data plane. */
  affinityToAll(message: AffinityToDataPlane): void {
    for (const handle of this.#handles) handle.affinity(message);
  }

  /** Makes worker `worker` die silently (tests only). */
  crash(worker: number): void {
    const handle = this.#handles.find((handle) => handle.worker === worker);
    if (handle instanceof WorkerDataPlane) handle.crash();
  }
}

/**
 * Binds `listen` once without SO_REUSEPORT, which fails while anything listens there.
 * Otherwise the workers' shared binds would quietly join another process that listens with
 * SO_REUSEPORT (another Switchyard, say) and split its connections with it.
 */
function assertNobodyListens(listen: string, setting: string): void {
  const { host, port } = parseHostPort(listen)!;
  try {
    Deno.listen({ hostname: host, port }).close();
  } catch (error) {
    throw new Error(`cannot listen on ${listen} (${setting}): ${(error as Error).message}`);
  }
}

function answered<T>(results: PromiseSettledResult<T>[]): T[] {
  return results.flatMap((result) => result.status === "fulfilled" ? [result.value] : []);
}
