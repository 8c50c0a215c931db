/**
 * The messages between the control plane and a data-plane worker. Everything is plain data
 * (structured clone); requests carry an id that their response repeats.
 * @module
 */
import type { AffinityFromDataPlane, AffinityToDataPlane } from "../affinity/messages.ts";
import type { ClusterSnapshot } from "../cluster/snapshot.ts";
import type { BackendOutcome } from "../health/outcomes.ts";
import type { MetricsJson } from "../metrics/data_plane_metrics.ts";
import type { LogLevel } from "../log/logger.ts";
import type { DataPlaneChange, DataPlaneInit } from "./data_plane.ts";
import type { DataPlaneStats } from "./stats.ts";

/** The first message a worker receives. */
export interface InitMessage {
  /** Tag. */
  readonly type: "init";
  /** What the data plane is built from. */
  readonly init: DataPlaneInit;
  /** The log level. */
  readonly logLevel: LogLevel;
  /** Honour the `crash` request (tests only; see `debug_hooks.ts`). */
  readonly debugHooks: boolean;
}

/** What the control plane asks of a worker, and what each answer holds. */
export interface Requests {
  /** Apply these snapshots. */
  apply: { readonly args: readonly ClusterSnapshot[]; readonly result: void };
  /** Apply a reload. */
  reconfigure: { readonly args: DataPlaneChange; readonly result: void };
  /** Report connectivity and counters. */
  stats: { readonly args: undefined; readonly result: DataPlaneStats };
  /** Name the clusters with a usable member (for `/ready`). */
  usable: { readonly args: undefined; readonly result: string[] };
  /** Report metric series. */
  metrics: { readonly args: undefined; readonly result: MetricsJson };
  /** Open the access-log file again at its path (SIGUSR1, after logrotate moved it). */
  reopenAccessLog: { readonly args: undefined; readonly result: void };
  /** Drain the listener, waiting up to this many milliseconds. */
  drain: { readonly args: number; readonly result: void };
  /** Close every backend connection and the access log. */
  close: { readonly args: undefined; readonly result: void };
  /** Answer, to show the event loop turns (the watchdog's heartbeat). */
  ping: { readonly args: undefined; readonly result: void };
  /** Die at once, as a crash would (tests only). */
  crash: { readonly args: undefined; readonly result: void };
}

/** A request's name. */
export type RequestName = keyof Requests;

/** A request to a worker. */
export interface RequestMessage<N extends RequestName = RequestName> {
  /** Tag. */
  readonly type: "request";
  /** Repeated in the response. */
  readonly id: number;
  /** What is asked. */
  readonly name: N;
  /** Its argument. */
  readonly args: Requests[N]["args"];
}

/** The control plane's affinity answers and owner updates, which need no response. */
export interface AffinityMessage {
  /** Tag. */
  readonly type: "affinity";
  /** The message. */
  readonly message: AffinityToDataPlane;
}

/** Messages to a worker. */
export type ToWorker = InitMessage | RequestMessage | AffinityMessage;

/** Messages from a worker. */
export type FromWorker =
  /** The data plane listens. */
  | { readonly type: "listening" }
  /** The data plane could not start (the address cannot be bound, say). */
  | { readonly type: "failed"; readonly error: string }
  /** A request's answer, or why it failed. */
  | {
    readonly type: "response";
    readonly id: number;
    readonly result?: unknown;
    readonly error?: string;
  }
  /** Access-log lines for the shared stdout, written by the main thread. */
  | { readonly type: "accessLog"; readonly batch: Uint8Array }
  /** A batch of passive health signals. */
  | { readonly type: "outcomes"; readonly batch: BackendOutcome[] }
  /** An affinity lookup, claim or keep for the control plane's tables. */
  | { readonly type: "affinity"; readonly message: AffinityFromDataPlane };
