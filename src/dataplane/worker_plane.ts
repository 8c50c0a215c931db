/**
 * A data plane in a worker thread, and its supervision: requests and answers over
 * `postMessage`, a watchdog heartbeat, and a restart when the worker dies or stops
 * answering (as NGINX's master respawns a worker). A restarted worker starts from the
 * latest snapshots; the connections of the one that died are lost, the others keep serving.
 * Once a drain has begun nothing is restarted: a new worker would take new connections.
 * @module
 */
import type { AffinityFromDataPlane, AffinityToDataPlane } from "../affinity/messages.ts";
import type { ClusterSnapshot } from "../cluster/snapshot.ts";
import type { BackendOutcome } from "../health/outcomes.ts";
import { componentLogger } from "../log/logger.ts";
import type { MetricsJson } from "../metrics/data_plane_metrics.ts";
import type { DataPlaneChange } from "./data_plane.ts";
import type { DataPlaneHandle } from "./handle.ts";
import type { FromWorker, InitMessage, RequestMessage, RequestName, Requests } from "./protocol.ts";
import type { DataPlaneStats } from "./stats.ts";

const log = componentLogger("lifecycle");

/** The watchdog pings this often. */
const HEARTBEAT_MS = 1_000;
/** A worker that has not answered for this long is taken for dead (hung, or gone). */
const UNRESPONSIVE_MS = 5_000;
/** A worker that does not listen this long after its spawn is taken for dead. */
const STARTUP_TIMEOUT_MS = 30_000;
/** How long a request other than drain may wait for its answer. */
const REQUEST_TIMEOUT_MS = 5_000;
/** Readiness probes have short timeouts of their own (Kubernetes: 1 s by default). */
const READINESS_TIMEOUT_MS = 500;
/** Restarts back off from this delay, doubling, while workers keep dying young. */
const RESTART_DELAY_MS = 100;
const MAX_RESTART_DELAY_MS = 5_000;
/** A worker that lived this long resets the restart backoff. */
const STABLE_MS = 10_000;

/** How a worker data plane is set up. */
export interface WorkerPlaneOptions {
  /** The worker's number, from 1. */
  readonly worker: number;
  /** Builds the init message, with the latest snapshots, for each (re)start. */
  readonly init: () => InitMessage;
  /** Where the worker's passive health signals go. */
  readonly onOutcomes: (batch: BackendOutcome[]) => void;
  /** Where the worker's access-log batches for stdout go. */
  readonly onAccessLog: (batch: Uint8Array) => void;
  /** Where the worker's affinity lookups, claims and keeps go. */
  readonly onAffinity?: (message: AffinityFromDataPlane) => void;
}

interface Pending {
  readonly resolve: (result: unknown) => void;
  readonly reject: (error: Error) => void;
  readonly timer: ReturnType<typeof setTimeout>;
}

/** Why a request got no answer: the worker is gone, which callers may expect. */
class WorkerGone extends Error {}

/** One supervised worker thread. */
export class WorkerDataPlane implements DataPlaneHandle {
  /** The worker's number, from 1. */
  readonly worker: number;
  readonly #options: WorkerPlaneOptions;
  readonly #pending = new Map<number, Pending>();
  #thread: Worker | undefined;
  #nextId = 1;
  #listening = false;
  #started: PromiseWithResolvers<void> | undefined;
  #startupTimer: ReturnType<typeof setTimeout> | undefined;
  #lastAnswerAt = 0;
  #pingInFlight = false;
  #watchdog: ReturnType<typeof setInterval> | undefined;
  #restartTimer: ReturnType<typeof setTimeout> | undefined;
  #restartDelayMs = RESTART_DELAY_MS;
  #spawnedAt = 0;
  #restarts = 0;
  #draining = false;
  #stopped = false;

  /**
   * Prepares the worker; nothing runs until {@link start}. Snapshots applied from then on
   * reach it in order, even before it listens (it applies them before serving).
   */
  constructor(options: WorkerPlaneOptions) {
    this.worker = options.worker;
    this.#options = options;
  }

  /** Spawns the worker; resolves once it listens, rejects when it cannot start. */
  async start(): Promise<void> {
    try {
      await this.#spawn();
    } catch (error) {
      this.#stopped = true;
      this.#stop();
      throw error;
    }
    this.#watchdog = setInterval(() => this.#heartbeat(), HEARTBEAT_MS);
  }

  /** True while the worker's listener is bound and it answers. */
  get listening(): boolean {
    return this.#listening;
  }

  /** Times the worker was restarted after dying. */
  get restarts(): number {
    return this.#restarts;
  }

  /**
   * See {@link DataPlaneHandle.apply}. A worker that dies meanwhile needs nothing: its
   * successor starts from the latest snapshots.
   */
  async apply(snapshots: readonly ClusterSnapshot[]): Promise<void> {
    if (this.#thread === undefined) return;
    if (!this.#listening) {
      // A starting worker applies them before it listens; nobody need wait for that.
      this.#request("apply", snapshots, STARTUP_TIMEOUT_MS, true).catch(() => {});
      return;
    }
    try {
      await this.#request("apply", snapshots);
    } catch (error) {
      if (error instanceof WorkerGone) return;
      log.error("worker {worker} did not apply a snapshot: {error}", {
        worker: this.worker,
        error: String(error),
      });
    }
  }

  /**
   * See {@link DataPlaneHandle.reconfigure}. A worker that dies meanwhile needs nothing: its
   * successor starts from the new config.
   */
  async reconfigure(change: DataPlaneChange): Promise<void> {
    if (this.#thread === undefined) return;
    try {
      await this.#request("reconfigure", change, STARTUP_TIMEOUT_MS, !this.#listening);
    } catch (error) {
      if (!(error instanceof WorkerGone)) throw error;
    }
  }

  /** See {@link DataPlaneHandle.stats}. */
  stats(): Promise<DataPlaneStats> {
    return this.#request("stats", undefined);
  }

  /** See {@link DataPlaneHandle.usableClusters}. */
  usableClusters(): Promise<string[]> {
    return this.#request("usable", undefined, READINESS_TIMEOUT_MS);
  }

  /** See {@link DataPlaneHandle.metrics}. */
  metrics(): Promise<MetricsJson> {
    return this.#request("metrics", undefined);
  }

  /**
   * See {@link DataPlaneHandle.reopenAccessLog}. A worker that is gone needs nothing: its
   * successor opens the path as it starts. One still starting may have opened the file
   * before it was moved, so it is asked too (it answers once it is built).
   */
  async reopenAccessLog(): Promise<void> {
    if (this.#thread === undefined) return;
    try {
      await this.#request("reopenAccessLog", undefined, STARTUP_TIMEOUT_MS, !this.#listening);
    } catch (error) {
      if (!(error instanceof WorkerGone)) throw error;
    }
  }

  /** See {@link DataPlaneHandle.drain}. From now on a worker that dies is not restarted. */
  async drain(timeoutMs: number): Promise<void> {
    this.#draining = true;
    clearTimeout(this.#restartTimer);
    this.#restartTimer = undefined;
    // A restart still starting holds no connection: it must not start listening now.
    if (this.#thread !== undefined && !this.#listening) this.#stop();
    await this.#request("drain", timeoutMs, timeoutMs + REQUEST_TIMEOUT_MS).catch((error) => {
      if (!(error instanceof WorkerGone)) throw error;
    });
  }

  /** See {@link DataPlaneHandle.close}: the worker is terminated once it has closed. */
  async close(): Promise<void> {
    this.#stopped = true;
    clearInterval(this.#watchdog);
    clearTimeout(this.#restartTimer);
    if (this.#listening) {
      await this.#request("close", undefined).catch((error) =>
        log.warn("worker {worker} did not close cleanly: {error}", {
          worker: this.worker,
          error: String(error),
        })
      );
    }
    this.#stop();
  }

  /**
   * See {@link DataPlaneHandle.affinity}. A worker that is not listening has no call waiting
   * and starts with an empty cache: nothing is sent.
   */
  affinity(message: AffinityToDataPlane): void {
    if (this.#listening) this.#thread?.postMessage({ type: "affinity", message });
  }

  /** Makes the worker die silently (tests only; the worker ignores it otherwise). */
  crash(): void {
    if (this.#listening) this.#post({ type: "request", id: 0, name: "crash", args: undefined });
  }

  #spawn(): Promise<void> {
    clearTimeout(this.#startupTimer);
    this.#started = Promise.withResolvers<void>();
    this.#spawnedAt = Date.now();
    const thread = new Worker(new URL("./worker.ts", import.meta.url), { type: "module" });
    this.#thread = thread;
    thread.onmessage = (event: MessageEvent<FromWorker>) => {
      if (thread === this.#thread) this.#receive(event.data);
    };
    thread.onerror = (event: ErrorEvent) => {
      // Unhandled, it would end the whole process; a worker's death ends only the worker.
      event.preventDefault();
      if (thread === this.#thread) this.#died(`uncaught error: ${event.message}`);
    };
    this.#startupTimer = setTimeout(() => {
      if (thread === this.#thread) this.#died(`not listening ${STARTUP_TIMEOUT_MS}ms after start`);
    }, STARTUP_TIMEOUT_MS);
    thread.postMessage(this.#options.init());
    return this.#started.promise;
  }

  #receive(message: FromWorker): void {
    this.#lastAnswerAt = Date.now();
    switch (message.type) {
      case "listening":
        clearTimeout(this.#startupTimer);
        this.#listening = true;
        this.#started?.resolve();
        return;
      case "failed":
        this.#died(`failed to start: ${message.error}`);
        return;
      case "outcomes":
        this.#options.onOutcomes(message.batch);
        return;
      case "affinity":
        this.#options.onAffinity?.(message.message);
        return;
      case "accessLog":
        this.#options.onAccessLog(message.batch);
        return;
      case "response": {
        const pending = this.#pending.get(message.id);
        if (!pending) return;
        this.#pending.delete(message.id);
        clearTimeout(pending.timer);
        if (message.error === undefined) pending.resolve(message.result);
        else pending.reject(new Error(message.error));
      }
    }
  }

  /**
   * Sends a request and waits for its answer. Only `apply` goes to a worker that is still
   * starting: it queues requests until its data plane is built.
   */
  #request<N extends RequestName>(
    name: N,
    args: Requests[N]["args"],
    timeoutMs = REQUEST_TIMEOUT_MS,
    whileStarting = false,
  ): Promise<Requests[N]["result"]> {
    if (!(this.#listening || (whileStarting && this.#thread !== undefined))) {
      return Promise.reject(new WorkerGone(`worker ${this.worker} is not running`));
    }
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new Error(`worker ${this.worker} did not answer ${name} within ${timeoutMs}ms`));
      }, timeoutMs);
      this.#pending.set(id, { resolve: resolve as (result: unknown) => void, reject, timer });
      this.#post({ type: "request", id, name, args });
    });
  }

  #post(message: RequestMessage): void {
    this.#thread!.postMessage(message);
  }

  #heartbeat(): void {
    if (!this.#listening || this.#stopped) return;
    if (Date.now() - this.#lastAnswerAt > UNRESPONSIVE_MS) {
      this.#died(`no answer for ${UNRESPONSIVE_MS}ms`);
      return;
    }
    if (this.#pingInFlight) return;
    this.#pingInFlight = true;
    this.#request("ping", undefined).catch(() => {}).finally(() => this.#pingInFlight = false);
  }

  /** Ends the worker's thread and fails whatever it still owed, its start included. */
  #stop(): void {
    if (this.#thread !== undefined && !this.#listening) {
      this.#started?.reject(new WorkerGone(`worker ${this.worker} stopped while starting`));
    }
    this.#listening = false;
    clearTimeout(this.#startupTimer);
    this.#thread?.terminate();
    this.#thread = undefined;
    for (const pending of this.#pending.values()) {
      clearTimeout(pending.timer);
      pending.reject(new WorkerGone(`worker ${this.worker} stopped`));
    }
    this.#pending.clear();
    this.#pingInFlight = false;
  }

  #died(reason: string): void {
    if (this.#thread === undefined) return;
    const starting = !this.#listening;
    if (starting) this.#started?.reject(new Error(`worker ${this.worker} ${reason}`));
    this.#stop();
    // A first start that fails stops the proxy's start (a bad address, say).
    if (starting && this.#restarts === 0) return;
    const fields = { worker: this.worker, reason };
    if (this.#stopped || this.#draining) {
      log.error("worker {worker} died ({reason}) while draining: not restarted", fields);
      return;
    }
    if (Date.now() - this.#spawnedAt >= STABLE_MS) this.#restartDelayMs = RESTART_DELAY_MS;
    const delayMs = this.#restartDelayMs;
    this.#restartDelayMs = Math.min(this.#restartDelayMs * 2, MAX_RESTART_DELAY_MS);
    log.error(
      "worker {worker} died ({reason}): its connections are lost; restarting in {delayMs}ms",
      {
        ...fields,
        delayMs,
      },
    );
    this.#restartTimer = setTimeout(() => this.#restart(), delayMs);
  }

  #restart(): void {
    this.#restartTimer = undefined;
    this.#restarts++;
    try {
      this.#spawn().then(
        () => log.info("worker {worker} restarted and listening", { worker: this.worker }),
        () => {}, // #died has logged it and scheduled the next attempt
      );
    } catch (error) {
      this.#stop();
      log.error("worker {worker} could not be spawned: {error}", {
        worker: this.worker,
        error: String(error),
      });
      this.#restartTimer = setTimeout(() => this.#restart(), MAX_RESTART_DELAY_MS);
    }
  }
}
