/**
 * What a data plane reports about itself when the control plane asks: its clusters'
 * connectivity and counters. The admin API sums them over workers and shows each worker's.
 * @module
 */
import type { ConnectivityState } from "../balancer/types.ts";
import type { ClusterCounters } from "../upstream/upstream_cluster.ts";

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
  /** Retries started, by kind. */
  readonly retries: ClusterCounters["retries"];
  /** Times each limit refused a call or a retry. */
  readonly overflow: ClusterCounters["overflow"];
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
