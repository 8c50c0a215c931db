/**
 * Passive health signals, from the data planes to the control plane's outlier detectors.
 *
 * A data plane does not send one message per call: it folds each backend's calls into a
 * streak summary and delivers the summaries in batches. Folding keeps the detector's answer
 * exact for one data plane: a backend-answered call resets the streak, so only the failures
 * after the last reset matter.
 * @module
 */
import type { CallObserver, CallRecord } from "../proxy/call_record.ts";

/** One backend's calls since the last batch, folded. */
export interface BackendOutcome {
  /** The cluster's name. */
  readonly cluster: string;
  /** The backend's `host:port`. */
  readonly backend: string;
  /** Backend-caused failures after the last reset (or in the whole batch, without one). */
  readonly failures: number;
  /** Some call the backend answered ended the streak during the batch. */
  readonly reset: boolean;
}

interface Streak {
  failures: number;
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
    let streak = backends.get(record.backend);
    if (record.backendFailure) {
      if (!streak) backends.set(record.backend, streak = { failures: 0, reset: false });
      streak.failures++;
    } else if (record.origin === "backend") {
      if (!streak) backends.set(record.backend, streak = { failures: 0, reset: true });
      streak.failures = 0;
      streak.reset = true;
    } else {
      return;
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
      for (const [backend, { failures, reset }] of backends) {
        batch.push({ cluster, backend, failures, reset });
      }
      backends.clear();
    }
    if (batch.length > 0) this.#deliver(batch);
  };
}
