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
  /** Backend streams opened (every attempt of every call, unary ones included). */
  streamsOpened: number;
  /** Of those, streams that ended (or that their call gave up on). */
  streamsEnded: number;
}

/**
 * A call with a stream open on a backend, as the backend's list of open streams holds it:
 * the list runs through these fields of the call itself, so tracking a stream allocates
 * nothing. Only {@link UpstreamBackend} writes them.
 */
export interface TrackedStream {
  /** The backend whose list holds it; `undefined` while in none. */
  streamBackend: UpstreamBackend | undefined;
  /** The stream opened just before it on the same backend (older). */
  streamPrev: TrackedStream | undefined;
  /** The stream opened just after it on the same backend (newer). */
  streamNext: TrackedStream | undefined;
  /** `performance.now()` when the stream opened. */
  streamOpenedAt: number;
  /**
   * Ends the call with UNAVAILABLE and `message` and cancels its backend stream (the
   * rebalancer sheds it; the client reconnects).
   */
  shed(message: string): void;
}

/** A member's counters, all zero. */
export function backendCounters(): BackendCounters {
  return {
    calls: 0,
    failures: 0,
    bytesReceived: 0,
    bytesSent: 0,
    streamsOpened: 0,
    streamsEnded: 0,
  };
}

/** One member of an {@link UpstreamCluster}. */
export class UpstreamBackend implements SubConn {
  /** `host:port`. */
  readonly address: string;
  /** The member's connection pool. */
  readonly upstream: Upstream;
  /** Counters since the member joined. */
  readonly counters: BackendCounters = backendCounters();
  /** The control plane's latest verdicts. */
  verdict: BackendSnapshot;
  /** The state last reported to the balancer. */
  effectiveState: ConnectivityState = "IDLE";
  /** The oldest open stream: the list runs oldest to newest, in the order streams opened. */
  #oldest: TrackedStream | undefined;
  #newest: TrackedStream | undefined;
  #tracked = 0;

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

  /** Streams open on this member that the relay tracks (its calls' current attempts). */
  get trackedStreams(): number {
    return this.#tracked;
  }

  /** The oldest tracked stream; follow `streamNext` for newer ones. */
  get oldestStream(): TrackedStream | undefined {
    return this.#oldest;
  }

  /** Adds a stream that just opened, as the newest; `now` is `performance.now()`. */
  trackStream(stream: TrackedStream, now: number): void {
    if (stream.streamBackend !== undefined) stream.streamBackend.untrackStream(stream);
    stream.streamBackend = this;
    stream.streamOpenedAt = now;
    stream.streamPrev = this.#newest;
    stream.streamNext = undefined;
    if (this.#newest === undefined) this.#oldest = stream;
    else this.#newest.streamNext = stream;
    this.#newest = stream;
    this.#tracked++;
    this.counters.streamsOpened++;
  }

  /** Removes a stream that ended; a stream in no list (or another's) is left alone. */
  untrackStream(stream: TrackedStream): void {
    if (stream.streamBackend !== this) return;
    const { streamPrev: prev, streamNext: next } = stream;
    if (prev === undefined) this.#oldest = next;
    else prev.streamNext = next;
    if (next === undefined) this.#newest = prev;
    else next.streamPrev = prev;
    stream.streamBackend = undefined;
    stream.streamPrev = undefined;
    stream.streamNext = undefined;
    this.#tracked--;
    this.counters.streamsEnded++;
  }

  /** The age in ms of the oldest open stream at `now` (`performance.now()`); 0 with none. */
  streamAgeMaxMs(now: number): number {
    return this.#oldest === undefined ? 0 : now - this.#oldest.streamOpenedAt;
  }

  /**
   * The median age in ms of the open streams at `now` (`performance.now()`), by nearest rank:
   * the ⌈n/2⌉-th youngest. 0 with none. Walks half the list from its closer end; read at
   * scrape time, never per call.
   */
  streamAgeP50Ms(now: number): number {
    const n = this.#tracked;
    if (n === 0) return 0;
    // The ⌈n/2⌉-th youngest is the (n − ⌈n/2⌉ + 1)-th oldest.
    const fromNewest = Math.ceil(n / 2);
    const fromOldest = n - fromNewest + 1;
    let stream: TrackedStream;
    if (fromOldest <= fromNewest) {
      stream = this.#oldest!;
      for (let i = 1; i < fromOldest; i++) stream = stream.streamNext!;
    } else {
      stream = this.#newest!;
      for (let i = 1; i < fromNewest; i++) stream = stream.streamPrev!;
    }
    return now - stream.streamOpenedAt;
  }

  /**
   * The ages in ms of the open streams at `now`, youngest first: all of them up to `limit`,
   * past it `limit` evenly spaced by rank (each then stands for n / limit streams). What a
   * data plane reports, so that the admin API can take the median over workers.
   */
  streamAgeSample(now: number, limit: number): number[] {
    const n = this.#tracked;
    const ages: number[] = [];
    if (n === 0) return ages;
    const step = n <= limit ? 1 : n / limit;
    // Rank i (from 0, youngest first) is taken when it is the middle of its stretch.
    let next = n <= limit ? 0 : Math.floor(step / 2);
    let rank = 0;
    for (let stream = this.#newest; stream !== undefined; stream = stream.streamPrev, rank++) {
      if (rank < next) continue;
      ages.push(now - stream.streamOpenedAt);
      if (ages.length === limit) break;
      next = n <= limit ? rank + 1 : Math.floor(step * ages.length + step / 2);
    }
    return ages;
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
