/**
 * Active-health thresholds with Envoy's semantics, as a pure state machine:
 * - a member that has never been healthy becomes healthy on its first pass, and unhealthy
 *   on its first failure (Envoy starts new hosts as failed until a check passes);
 * - a healthy member becomes unhealthy at once when it answers "not serving", or after
 *   `unhealthyThreshold` consecutive unanswered checks (timeouts, connection errors);
 * - an unhealthy member comes back after `healthyThreshold` consecutive passes.
 * @module
 */
import type { HealthStatus } from "../cluster/backend.ts";

/** One check's outcome, once `whenUnimplemented` has been applied. */
export type ProbeOutcome =
  | { readonly kind: "pass" }
  | { readonly kind: "fail"; readonly immediate: boolean; readonly reason: string };

/** The thresholds that turn outcomes into verdicts. */
export interface Thresholds {
  /** Consecutive counted failures that make a healthy member unhealthy. */
  readonly unhealthyThreshold: number;
  /** Consecutive passes that make an unhealthy member healthy. */
  readonly healthyThreshold: number;
}

/** Folds a member's check outcomes into a health verdict. */
export class HealthVerdict {
  readonly #thresholds: Thresholds;
  #health: HealthStatus = "unknown";
  #passes = 0;
  #failures = 0;

  /** Starts at `unknown`. */
  constructor(thresholds: Thresholds) {
    this.#thresholds = thresholds;
  }

  /** The current verdict. */
  get health(): HealthStatus {
    return this.#health;
  }

  /** Consecutive failures so far (0 after a pass). */
  get consecutiveFailures(): number {
    return this.#failures;
  }

  /** Applies one outcome and returns the (possibly unchanged) verdict. */
  record(outcome: ProbeOutcome): HealthStatus {
    if (outcome.kind === "pass") {
      this.#failures = 0;
      this.#passes++;
      const recovered = this.#passes >= this.#thresholds.healthyThreshold;
      if (this.#health === "unknown" || recovered) this.#health = "healthy";
    } else {
      this.#passes = 0;
      this.#failures++;
      const exhausted = this.#failures >= this.#thresholds.unhealthyThreshold;
      if (this.#health !== "healthy" || outcome.immediate || exhausted) this.#health = "unhealthy";
    }
    return this.#health;
  }
}
