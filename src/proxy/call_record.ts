/**
 * What the data plane reports about every finished call, for the access log, metrics and
 * passive health. Observers are registered once; the proxy never depends on them.
 * @module
 */

/** Who ended a call that did not complete with the backend's own trailers. */
export type CallOrigin =
  | "backend" // the backend's trailers or trailers-only response
  | "backend_reset" // the backend reset the stream
  | "proxy" // the proxy produced the status (no route, unavailable, deadline, …)
  | "client"; // the client cancelled or went away

/** How the client called: native gRPC, or gRPC-Web translated by the proxy. */
export type CallProtocol = "grpc" | "grpc-web";

/** One finished call. */
export interface CallRecord {
  /** How the client called. */
  readonly protocol: CallProtocol;
  /** Epoch ms when the call arrived. */
  readonly startedAt: number;
  /** Wall time from arrival to end. */
  readonly durationMs: number;
  /** `:path`. */
  readonly method: string;
  /** The routed cluster, if any. */
  readonly cluster: string | undefined;
  /** The backend picked, if any. */
  readonly backend: string | undefined;
  /** The final grpc-status sent to the client (or derived from a reset). */
  readonly grpcStatus: number;
  /** The RST_STREAM code when the call ended in a reset. */
  readonly resetCode: number | undefined;
  /** Who ended the call. */
  readonly origin: CallOrigin;
  /** True when the backend caused the failure (connection error, reset, UNAVAILABLE). */
  readonly backendFailure: boolean;
  /**
   * Backends of earlier attempts that failed because of the backend and were retried, in
   * order; `undefined` when there were none (most calls).
   */
  readonly failedAttempts: readonly string[] | undefined;
  /** Retries of the call, transparent and configured. */
  readonly retries: number;
  /** Request bytes received from the client. */
  readonly bytesReceived: number;
  /** Response bytes sent to the client. */
  readonly bytesSent: number;
  /** The client's address. */
  readonly clientAddress: string | undefined;
  /** Who the client is by its verified TLS certificate (mTLS); `undefined` without one. */
  readonly clientIdentity: string | undefined;
}

/** Receives every finished call. Must be cheap: it runs on the data path. */
export type CallObserver = (record: CallRecord) => void;
