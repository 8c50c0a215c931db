/**
 * A cluster's circuit breakers (Envoy's thresholds): calls in flight, calls waiting for a
 * ready backend, and the retry budget. They hold for the whole process, so every data-plane
 * worker counts into one `SharedArrayBuffer`: each worker adds to its own slots only, and a
 * check sums every worker's. A worker that dies takes its calls with it, and its successor
 * zeroes its slots as it starts, so nothing leaks. Two workers checking at the same instant may
 * each admit one call past a limit; no more.
 * @module
 */
import type { ClusterConfig } from "../config/schema.ts";

/** The counters of one cluster in one worker. */
const Slot = { CALLS: 0, PENDING: 1, RETRIES: 2 } as const;
const SLOTS = 3;

/** The limits a cluster's calls are held to. */
export interface LimitSettings {
  /** Calls in flight in the cluster. */
  readonly maxConcurrentCalls: number;
  /** Calls waiting while no backend is ready. */
  readonly maxPendingCalls: number;
  /** Retries in flight at most this share (0–100) of the calls in flight… */
  readonly retryBudgetPercent: number;
  /** …but at least this many. */
  readonly minRetryConcurrency: number;
}

/** The name a limit has in config, `grpc-message` and `switchyard_overflow_total{limit}`. */
export type LimitName =
  | "maxConcurrentCalls"
  | "maxPendingCalls"
  | "maxConnectionsPerBackend"
  | "retryBudget";

/** Memory for the limits of `clusters` clusters over `workers` workers, shared by all. */
export function limitsMemory(clusters: number, workers: number): SharedArrayBuffer {
  return new SharedArrayBuffer(clusters * workers * SLOTS * Int32Array.BYTES_PER_ELEMENT);
}

/**
 * Zeroes every slot of worker `worker` (from 1) of `workers`: a data plane does this once as
 * it starts, since a worker that died took its calls with it.
 */
export function resetWorkerSlots(memory: SharedArrayBuffer, worker: number, workers: number): void {
  const counters = new Int32Array(memory);
  const clusters = counters.length / (workers * SLOTS);
  for (let cluster = 0; cluster < clusters; cluster++) {
    const own = (cluster * workers + worker - 1) * SLOTS;
    for (let slot = 0; slot < SLOTS; slot++) Atomics.store(counters, own + slot, 0);
  }
}

/** A cluster's limits as its config sets them. */
export function limitSettings(cluster: ClusterConfig): LimitSettings {
  return {
    maxConcurrentCalls: cluster.limits.maxConcurrentCalls,
    maxPendingCalls: cluster.limits.maxPendingCalls,
    retryBudgetPercent: cluster.retryBudget.percent,
    minRetryConcurrency: cluster.retryBudget.minRetryConcurrency,
  };
}

/** One cluster's limits, as one worker counts them. */
export class CallLimits {
  readonly #counters: Int32Array;
  /** This cluster's first slot for worker 1. */
  readonly #base: number;
  /** This worker's first slot. */
  readonly #own: number;
  readonly #workers: number;
  #settings: LimitSettings;

  /**
   * Counts in `memory` (from {@link limitsMemory}) as worker `worker` (from 1) of `workers`,
   * for the cluster at `clusterIndex`. The slots are not zeroed here: a cluster removed and
   * added again by reloads finds the counts of its calls still in flight (see
   * {@link resetWorkerSlots}).
   */
  constructor(
    memory: SharedArrayBuffer,
    clusterIndex: number,
    worker: number,
    workers: number,
    settings: LimitSettings,
  ) {
    this.#counters = new Int32Array(memory);
    this.#base = clusterIndex * workers * SLOTS;
    this.#own = this.#base + (worker - 1) * SLOTS;
    this.#workers = workers;
    this.#settings = settings;
  }

  /** Takes new limits (a reload); the counts go on. */
  update(settings: LimitSettings): void {
    this.#settings = settings;
  }

  /** Calls in flight in the cluster, over every worker. */
  get calls(): number {
    return this.#sum(Slot.CALLS);
  }

  /** Admits a call, or returns false when the cluster is at `maxConcurrentCalls`. */
  admitCall(): boolean {
    return this.#admit(Slot.CALLS, this.#settings.maxConcurrentCalls);
  }

  /** A call admitted by {@link admitCall} ended. */
  releaseCall(): void {
    Atomics.sub(this.#counters, this.#own + Slot.CALLS, 1);
  }

  /** Lets a call wait for a ready backend, or returns false at `maxPendingCalls`. */
  admitPending(): boolean {
    return this.#admit(Slot.PENDING, this.#settings.maxPendingCalls);
  }

  /** A call admitted by {@link admitPending} stopped waiting. */
  releasePending(): void {
    Atomics.sub(this.#counters, this.#own + Slot.PENDING, 1);
  }

  /**
   * Lets a call retry, or returns false when the retries in flight are at the budget:
   * `retryBudgetPercent` of the calls in flight, at least `minRetryConcurrency`.
   */
  admitRetry(): boolean {
    const { retryBudgetPercent, minRetryConcurrency } = this.#settings;
    const budget = Math.max(minRetryConcurrency, (this.calls * retryBudgetPercent) / 100);
    return this.#admit(Slot.RETRIES, budget);
  }

  /** A call admitted by {@link admitRetry} ended. */
  releaseRetry(): void {
    Atomics.sub(this.#counters, this.#own + Slot.RETRIES, 1);
  }

  #admit(slot: number, limit: number): boolean {
    if (this.#sum(slot) >= limit) return false;
    Atomics.add(this.#counters, this.#own + slot, 1);
    return true;
  }

  #sum(slot: number): number {
    let total = 0;
    for (let worker = 0, at = this.#base + slot; worker < this.#workers; worker++, at += SLOTS) {
      total += Atomics.load(this.#counters, at);
    }
    return total;
  }
}
