/**
 * Passive health signals, from the data planes to the control plane's outlier detectors.
 *
 * A data plane does not send one message per call: it folds each backend's calls into a
 * streak summary and delivers the summaries in batches. A backend-answered call resets the
 * streak, so the runs of failures are all that matter: the run that continues the previous
 * batch's streak, the longest run inside the batch, and the run still open at its end. From
 * those the detector decides exactly as it would call by call, for one data plane.
 * @module
 */
import type { CallObserver, CallRecord } from "../proxy/call_record.ts";

/** One backend's calls since the last batch, folded. */
export interface BackendOutcome {
  /** The cluster's name. */
  readonly cluster: string;
  /** The backend's `host:port`. */
  readonly backend: string;
  /** Backend-caused failures before the batch's first reset (all of them, without one). */
  readonly leading: number;
  /** The longest run of failures between two resets of the batch. */
  readonly longest: number;
  /** Failures after the batch's last reset (0 without one). */
  readonly trailing: number;
  /** Some call the backend answered ended the streak during the batch. */
  readonly reset: boolean;
}

interface Streak {
  leading: number;
  longest: number;
  trailing: number;
  reset: boolean;
}

/** Folds the calls of the clusters that use outlier detection, and delivers them in batches. */
export class OutcomeBatcher {
  /** Accounts one finished call; register it with the data plane's call observers. */
  readonly observe: CallObserver;
  readonly #pending = new Map<string, Map<string, Streak>>();
  readonly #deliver: (batch: BackendOutcome[]) => void;
  readonly #delayMs: number;
  #scheduled = false;

  /**
   * Watches `clusters`; batches go to `deliver` `delayMs` after their first call (at the end
   * of the task with 0).
   */
  constructor(
    clusters: Iterable<string>,
    deliver: (batch: BackendOutcome[]) => void,
    delayMs: number,
  ) {
    for (const cluster of clusters) this.#pending.set(cluster, new Map());
    this.#deliver = deliver;
    this.#delayMs = delayMs;
    this.observe = (record) => this.#account(record);
  }

  #account(record: CallRecord): void {
    if (record.cluster === undefined || record.backend === undefined) return;
    const backends = this.#pending.get(record.cluster);
    if (!backends) return;
    // Attempts that failed and were retried count against their backends, as Envoy's
    // outlier detection sees every attempt.
    const failed = record.failedAttempts;
    if (failed !== undefined) { for (const backend of failed) this.#fold(backends, backend, true); }
    if (!record.backendFailure && record.origin !== "backend") return; // proves nothing
    this.#fold(backends, record.backend, record.backendFailure);
  }

  /** Folds one outcome into its backend's runs, and schedules a batch. */
  #fold(backends: Map<string, Streak>, backend: string, failure: boolean): void {
    let streak = backends.get(backend);
    if (!streak) {
      streak = { leading: 0, longest: 0, trailing: 0, reset: false };
      backends.set(backend, streak);
    }
    if (failure) {
      if (streak.reset) streak.trailing++;
      else streak.leading++;
    } else {
      if (streak.reset) streak.longest = Math.max(streak.longest, streak.trailing);
      streak.reset = true;
      streak.trailing = 0;
    }
    if (this.#scheduled) return;
    this.#scheduled = true;
    if (this.#delayMs === 0) queueMicrotask(this.#flush);
    else setTimeout(this.#flush, this.#delayMs);
  }

  #flush = (): void => {
    this.#scheduled = false;
    const batch: BackendOutcome[] = [];
    for (const [cluster, backends] of this.#pending) {
      for (const [backend, streak] of backends) batch.push({ cluster, backend, ...streak });
      backends.clear();
    }
    if (batch.length > 0) this.#deliver(batch);
  };
}
