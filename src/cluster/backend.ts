/**
 * A cluster member as the control plane keeps it: where it came from and every verdict on
 * whether it may take new calls (health, ejection, drain). Its connections live in each data
 * plane (`src/upstream/`), which learns the verdicts through {@link ClusterSnapshot}s.
 * @module
 */
import type { BackendSnapshot, HealthStatus } from "./snapshot.ts";

export type { HealthStatus } from "./snapshot.ts";

/** Where a member came from; a member stays while any source lists it. */
export type BackendSource = "static" | "redis" | "admin";

/**
 * Health bookkeeping for the admin API and metrics, written only by `src/health`. The
 * verdicts themselves live in {@link Backend.health} and {@link Backend.ejectedUntil}.
 */
export interface BackendHealthDetail {
  /** Epoch ms when the last active check finished; 0 before the first one. */
  lastCheckAt: number;
  /** Why the last active check failed (status, timeout, connection error); cleared on a pass. */
  lastError: string | undefined;
  /** Why the latest health or ejection transition happened. */
  lastTransitionReason: string | undefined;
  /** Active checks that passed. */
  checksPassed: number;
  /** Active checks that failed, for any reason. */
  checksFailed: number;
  /** Times passive outlier detection has ejected the member. */
  ejections: number;
}

/** One member of a cluster, with its verdicts. */
export class Backend {
  /** `host:port`. */
  readonly address: string;
  /** Which sources currently list this member. */
  readonly sources: Set<BackendSource> = new Set();
  /** Drained members take no new calls; in-flight calls finish. */
  drained = false;
  /** Latest active-health verdict. */
  health: HealthStatus = "unknown";
  /** Epoch ms until which passive ejection keeps the member out; 0 when not ejected. */
  ejectedUntil = 0;
  /** The load-balancing weight (config `weights`, else the Redis weight key, else 1). */
  weight = 1;
  /** Active-check and ejection history since the member joined. */
  readonly healthDetail: BackendHealthDetail = {
    lastCheckAt: 0,
    lastError: undefined,
    lastTransitionReason: undefined,
    checksPassed: 0,
    checksFailed: 0,
    ejections: 0,
  };

  /** A new member at `address`. */
  constructor(address: string) {
    this.address = address;
  }

  /** True while passive ejection holds the member out. */
  get ejected(): boolean {
    return this.ejectedUntil > Date.now();
  }

  /** The member's verdicts for the data plane. */
  snapshot(): BackendSnapshot {
    const snapshot = {
      address: this.address,
      drained: this.drained,
      health: this.health,
      ejected: this.ejected,
      reason: this.healthDetail.lastTransitionReason,
    };
    // Weight 1 is left out: see BackendSnapshot.weight.
    return this.weight === 1 ? snapshot : { ...snapshot, weight: this.weight };
  }
}
