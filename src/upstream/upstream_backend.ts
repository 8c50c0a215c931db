/**
 * A cluster member as one data plane sees it: its connection pool, the verdicts from the
 * latest snapshot, and this data plane's counters. Balancers see it as a {@link SubConn}.
 * @module
 */
import type { ConnectivityState, SubConn } from "../balancer/types.ts";
import type { BackendSnapshot } from "../cluster/snapshot.ts";
import type { Upstream } from "./upstream.ts";

/** Per-backend counters of one data plane, read by the admin API through the control plane. */
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

/** One member of an {@link UpstreamCluster}. */
export class UpstreamBackend implements SubConn {
  /** `host:port`. */
  readonly address: string;
  /** The member's connection pool. */
  readonly upstream: Upstream;
  /** Counters since the member joined. */
  readonly counters: BackendCounters = { calls: 0, failures: 0, bytesReceived: 0, bytesSent: 0 };
  /** The control plane's latest verdicts. */
  verdict: BackendSnapshot;
  /** The state last reported to the balancer. */
  effectiveState: ConnectivityState = "IDLE";

  /** Wraps a connection pool for the member `verdict` describes. */
  constructor(verdict: BackendSnapshot, upstream: Upstream) {
    this.address = verdict.address;
    this.verdict = verdict;
    this.upstream = upstream;
  }

  /** The effective state the balancer sees (connectivity folded with the verdicts). */
  get state(): ConnectivityState {
    return this.effectiveState;
  }

  /** Streams in flight on this member's connections (`least_request` compares it). */
  get activeStreams(): number {
    return this.upstream.activeStreams;
  }

  /** The member's load-balancing weight from the latest snapshot (1 unless set). */
  get weight(): number {
    return this.verdict.weight ?? 1;
  }

  /** Why the member cannot take calls now, or `undefined` when it can. */
  get unusableReason(): string | undefined {
    const verdict = this.verdict;
    if (verdict.drained) return "drained";
    if (this.upstream.state !== "READY") {
      return this.upstream.lastError ?? this.upstream.state.toLowerCase();
    }
    if (verdict.ejected) return "ejected by outlier detection";
    if (verdict.health === "unhealthy") return `unhealthy (${verdict.reason ?? "health check"})`;
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
