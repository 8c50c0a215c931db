/**
 * What a data plane reports about itself when the control plane asks: its clusters'
 * connectivity and counters. The admin API sums them over workers and shows each worker's.
 * @module
 */
import type { ConnectivityState } from "../balancer/types.ts";
import type { LimitName } from "../upstream/call_limits.ts";
import type { AffinityStats } from "../affinity/data_plane_affinity.ts";

/** One backend in one data plane. */
export interface BackendStats {
  /** `host:port`. */
  readonly address: string;
  /** The connection pool's state. */
  readonly connectivity: ConnectivityState;
  /** Connectivity folded with the control plane's verdicts: what the balancer sees. */
  readonly state: ConnectivityState;
  /** The pool's last dial or connection error. */
  readonly lastConnectionError: string | null;
  /** Calls in flight. */
  readonly activeStreams: number;
  /** Calls sent to the backend. */
  readonly calls: number;
  /** Calls that failed because of the backend. */
  readonly failures: number;
  /** Request bytes received from clients for calls to this backend. */
  readonly bytesReceived: number;
  /** Response bytes sent to clients from this backend. */
  readonly bytesSent: number;
  /** Backend streams opened (every attempt of every call). */
  readonly streamsOpened: number;
  /** Of those, streams that ended; open now = opened − ended. */
  readonly streamsEnded: number;
  /** Age in ms of the oldest open stream; 0 with none. */
  readonly streamAgeMaxMs: number;
  /**
   * Ages in ms of the open streams, youngest first: all of them up to
   * {@link STREAM_AGE_SAMPLE_LIMIT}, past it that many evenly spaced by rank, so the admin
   * API can take the median over every worker's streams.
   */
  readonly streamAgeSampleMs: readonly number[];
}

/** Stream ages a data plane reports per backend at most; see {@link BackendStats}. */
export const STREAM_AGE_SAMPLE_LIMIT = 256;

/**
 * Upper bounds, in seconds, of the call-duration buckets: from 50 µs, where the proxy's own
 * overhead shows, to 60 s, for streams. `switchyard_call_duration_seconds` and the status
 * page's latency percentiles both count into them.
 */
export const DURATION_BUCKETS_SECONDS: readonly number[] = [
  0.00005,
  0.0001,
  0.00025,
  0.0005,
  0.001,
  0.0025,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
  10,
  30,
  60,
];

/** The index of the bucket `seconds` falls in; `DURATION_BUCKETS_SECONDS.length` past 60 s. */
export function durationBucket(seconds: number): number {
  const bounds = DURATION_BUCKETS_SECONDS;
  let i = 0;
  while (i < bounds.length && seconds > bounds[i]) i++;
  return i;
}

/** What one data plane counted for a cluster. */
export interface ClusterCounters {
  /**
   * Every call routed here, including those that failed before a backend was picked (which
   * per-backend counters cannot see).
   */
  calls: number;
  /** Of those, calls that ended with a non-OK status. */
  errors: number;
  /**
   * Finished calls per duration bucket ({@link durationBucket}; the last one is past 60 s),
   * not cumulative, so the control plane can sum workers and take percentiles.
   */
  readonly durations: number[];
  /** Retries started: of calls no backend processed, and configured ones (gRFC A6). */
  readonly retries: { transparent: number; configured: number };
  /** Times each limit refused a call or a retry. */
  readonly overflow: Record<LimitName, number>;
  /** Streams the rebalancer shed (`rebalance`). */
  rebalanceShed: number;
}

/** A cluster's counters, all zero. */
export function clusterCounters(): ClusterCounters {
  return {
    calls: 0,
    errors: 0,
    durations: new Array(DURATION_BUCKETS_SECONDS.length + 1).fill(0),
    retries: { transparent: 0, configured: 0 },
    overflow: {
      maxConcurrentCalls: 0,
      maxPendingCalls: 0,
      maxConnectionsPerBackend: 0,
      retryBudget: 0,
    },
    rebalanceShed: 0,
  };
}

/** One cluster in one data plane. */
export interface ClusterStats {
  /** The cluster's name. */
  readonly name: string;
  /** The balancer's aggregate state. */
  readonly state: ConnectivityState;
  /** Calls routed to the cluster, picked or not. */
  readonly calls: number;
  /** Of those, calls that ended with a non-OK status. */
  readonly errors: number;
  /** Finished calls per duration bucket; see {@link ClusterCounters.durations}. */
  readonly durations: readonly number[];
  /** Retries started, by kind. */
  readonly retries: ClusterCounters["retries"];
  /** Times each limit refused a call or a retry. */
  readonly overflow: ClusterCounters["overflow"];
  /** Streams the rebalancer shed. */
  readonly rebalanceShed: number;
  /** Affinity counts, when the cluster keeps an affinity table. */
  readonly affinity?: AffinityStats | undefined;
  /** Its members, in membership order. */
  readonly backends: readonly BackendStats[];
}

/** Everything one data plane reports. */
export interface DataPlaneStats {
  /** The worker's number, from 1. */
  readonly worker: number;
  /** Client connections open now. */
  readonly connections: number;
  /** Its clusters. */
  readonly clusters: readonly ClusterStats[];
}
