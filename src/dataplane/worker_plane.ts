/**
 * A data plane in a worker thread, and its supervision: requests and answers over
 * `postMessage`, a watchdog heartbeat, and a restart when the worker dies or stops
 * answering (as NGINX's master respawns a worker). A restarted worker starts from the
 * latest snapshots; the connections of the one that died are lost, the others keep serving.
 * @module
 */
import type { ClusterSnapshot } from "../cluster/snapshot.ts";
import type { BackendOutcome } from "../health/outcomes.ts";
import { componentLogger } from "../log/logger.ts";
import type { MetricsJson } from "../metrics/data_plane_metrics.ts";
import type { DataPlaneHandle } from "./handle.ts";
import type { FromWorker, InitMessage, RequestMessage, RequestName, Requests } from "./protocol.ts";
import type { DataPlaneStats } from "./stats.ts";

const log = componentLogger("lifecycle");

/** The watchdog pings this often. */
const HEARTBEAT_MS = 1_000;
/** A worker that has not answered for this long is taken for dead (hung, or gone). */
const UNRESPONSIVE_MS = 5_000;
/** How long a request other than drain may wait for its answer. */
const REQUEST_TIMEOUT_MS = 5_000;
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
  /** Every cluster's latest snapshot, re-sent when a (re)started worker listens. */
  readonly snapshots: () => ClusterSnapshot[];
  /** Where the worker's passive health signals go. */
  readonly onOutcomes: (batch: BackendOutcome[]) => void;
}

interface Pending {
  readonly resolve: (result: unknown) => void;
  readonly reject: (error: Error) => void;
  readonly timer: ReturnType<typeof setTimeout> | undefined;
}

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
  #lastAnswerAt = 0;
  #pingInFlight = false;
  #watchdog: ReturnType<typeof setInterval> | undefined;
  #restartTimer: ReturnType<typeof setTimeout> | undefined;
  #restartDelayMs = RESTART_DELAY_MS;
  #spawnedAt = 0;
  #stopped = false;
  /** Times the worker was restarted. */
  restarts = 0;

  /**
   * Prepares the worker; nothing runs until {@link start}. Snapshots applied before it
   * listens are not lost: it gets the latest of each on listening.
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
      this.#stop();
      throw error;
    }
    this.#watchdog = setInterval(() => this.#heartbeat(), HEARTBEAT_MS);
  }

  /** True while the worker's listener is bound and it answers. */
  get listening(): boolean {
    return this.#listening;
  }

  /** See {@link DataPlaneHandle.apply}. A worker that is (re)starting gets them on listening. */
  async apply(snapshots: readonly ClusterSnapshot[]): Promise<void> {
    if (!this.#listening) return;
    await this.#request("apply", snapshots).catch(() => {
      // The worker died meanwhile; its successor starts from the latest snapshots.
    });
  }

  /** See {@link DataPlaneHandle.stats}. */
  stats(): Promise<DataPlaneStats> {
    return this.#request("stats", undefined);
  }

  /** See {@link DataPlaneHandle.metrics}. */
  metrics(): Promise<MetricsJson> {
    return this.#request("metrics", undefined);
  }

  /** See {@link DataPlaneHandle.drain}. */
  drain(timeoutMs: number): Promise<void> {
    return this.#request("drain", timeoutMs, timeoutMs + REQUEST_TIMEOUT_MS);
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

  /** Makes the worker die silently (tests only; the worker ignores it otherwise). */
  crash(): void {
    if (this.#thread) this.#post({ type: "request", id: 0, name: "crash", args: undefined });
  }

  #spawn(): Promise<void> {
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
    thread.postMessage(this.#options.init());
    return this.#started.promise;
  }

  #receive(message: FromWorker): void {
    this.#lastAnswerAt = Date.now();
    switch (message.type) {
      case "listening":
        this.#listening = true;
        // Snapshots published while it started went nowhere; send the latest of each.
        void this.apply(this.#options.snapshots());
        this.#started?.resolve();
        return;
      case "failed":
        this.#started?.reject(new Error(`worker ${this.worker} failed to start: ${message.error}`));
        if (this.restarts > 0) this.#died(message.error);
        return;
      case "outcomes":
        this.#options.onOutcomes(message.batch);
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

  #request<N extends RequestName>(
    name: N,
    args: Requests[N]["args"],
    timeoutMs = REQUEST_TIMEOUT_MS,
  ): Promise<Requests[N]["result"]> {
    if (!this.#listening) {
      return Promise.reject(new Error(`worker ${this.worker} is not running`));
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

  /** Ends the worker's thread and fails whatever it still owed. */
  #stop(): void {
    this.#listening = false;
    this.#thread?.terminate();
    this.#thread = undefined;
    for (const pending of this.#pending.values()) {
      clearTimeout(pending.timer);
      pending.reject(new Error(`worker ${this.worker} stopped`));
    }
    this.#pending.clear();
    this.#pingInFlight = false;
  }

  #died(reason: string): void {
    if (this.#stopped || this.#restartTimer !== undefined) return;
    this.#stop();
    if (Date.now() - this.#spawnedAt >= STABLE_MS) this.#restartDelayMs = RESTART_DELAY_MS;
    const delayMs = this.#restartDelayMs;
    this.#restartDelayMs = Math.min(this.#restartDelayMs * 2, MAX_RESTART_DELAY_MS);
    log.error(
      "worker {worker} died ({reason}): its connections are lost; restarting in {delayMs}ms",
      {
        worker: this.worker,
        reason,
        delayMs,
      },
    );
    this.#restartTimer = setTimeout(() => {
      this.#restartTimer = undefined;
      this.restarts++;
      this.#spawn().then(
        () => log.info("worker {worker} restarted and listening", { worker: this.worker }),
        () => {}, // #receive has logged and scheduled the next attempt
      );
    }, delayMs);
  }
}
