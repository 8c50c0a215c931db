/**
 * A cluster member: its connection pool plus everything that decides whether it may take
 * new calls (health, ejection, drain), and its counters.
 * @module
 */
import type { ConnectivityState, SubConn } from "../balancer/types.ts";
import type { Upstream } from "../upstream/upstream.ts";

/** Where a member came from; a member stays while any source lists it. */
export type BackendSource = "static" | "redis" | "admin";

/** Active health: `unknown` until the first check answers (or forever, with no checks). */
export type HealthStatus = "unknown" | "healthy" | "unhealthy";

/** Per-backend counters, read by the admin API and metrics. */
export interface BackendCounters {
  /** Calls that were sent to this backend. */
  calls: number;
  /** Calls that failed because of the backend (connection errors, resets, UNAVAILABLE). */
  failures: number;
  /** Request bytes received from clients for calls to this backend. */
  bytesReceived: number;
  /** Response bytes sent to clients from this backend. */
  bytesSent: number;
}

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

/** One member of a cluster, as the balancer (a {@link SubConn}) and operators see it. */
export class Backend implements SubConn {
  /** `host:port`. */
  readonly address: string;
  /** The member's connection pool. */
  readonly upstream: Upstream;
  /** Which sources currently list this member. */
  readonly sources: Set<BackendSource> = new Set();
  /** Counters since the member joined. */
  readonly counters: BackendCounters = { calls: 0, failures: 0, bytesReceived: 0, bytesSent: 0 };
  /** Drained members take no new calls; in-flight calls finish. */
  drained = false;
  /** Latest active-health verdict. */
  health: HealthStatus = "unknown";
  /** Epoch ms until which passive ejection keeps the member out; 0 when not ejected. */
  ejectedUntil = 0;
  /** Active-check and ejection history since the member joined. */
  readonly healthDetail: BackendHealthDetail = {
    lastCheckAt: 0,
    lastError: undefined,
    lastTransitionReason: undefined,
    checksPassed: 0,
    checksFailed: 0,
    ejections: 0,
  };
  /** The state last reported to the balancer. */
  effectiveState: ConnectivityState = "IDLE";

  /** Wraps a connection pool for `address`. */
  constructor(address: string, upstream: Upstream) {
    this.address = address;
    this.upstream = upstream;
  }

  /** The effective state the balancer sees (connectivity folded with health and ejection). */
  get state(): ConnectivityState {
    return this.effectiveState;
  }

  /** True while passive ejection holds the member out. */
  get ejected(): boolean {
    return this.ejectedUntil > Date.now();
  }

  /** Why the member cannot take calls now, or `undefined` when it can. */
  get unusableReason(): string | undefined {
    if (this.drained) return "drained";
    if (this.upstream.state !== "READY") {
      return this.upstream.lastError ?? this.upstream.state.toLowerCase();
    }
    if (this.ejected) return "ejected by outlier detection";
    if (this.health === "unhealthy") {
      return `unhealthy (${this.healthDetail.lastTransitionReason ?? "health check"})`;
    }
    return undefined;
  }

  /** Asks the pool to connect. */
  connect(): void {
    this.upstream.connect();
  }

  /** Lets the pool go IDLE; see {@link SubConn.disconnect}. */
  disconnect(): void {
    this.upstream.disconnect();
  }
}
