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
  /** Wall time from arrival to end, with sub-millisecond precision. */
  readonly durationMs: number;
  /**
   * Time from arrival to the first response byte of the last attempt's backend (its response
   * headers, or its trailers-only response); `undefined` when no backend answered.
   */
  readonly upstreamDurationMs: number | undefined;
  /** `:path`. */
  readonly method: string;
  /** The routed cluster, if any. */
  readonly cluster: string | undefined;
  /** The backend picked, if any. */
  readonly backend: string | undefined;
  /** The final grpc-status sent to the client (or derived from a reset). */
  readonly grpcStatus: number;
  /**
   * The `grpc-message` the client received, percent-decoded (PROTOCOL-HTTP2, "Status"), or
   * `undefined` without one.
   */
  readonly grpcMessage: string | undefined;
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
  /**
   * The request headers as the last attempt sent them (after the route's rewrites), for
   * observers that want `:authority`, `user-agent` or `x-request-id`. Not a copy: read only.
   */
  readonly requestHeaders: readonly string[];
  /** The trace the call belongs to, when tracing is on; `undefined` otherwise. */
  readonly traceId: string | undefined;
}

/** Receives every finished call. Must be cheap: it runs on the data path. */
export type CallObserver = (record: CallRecord) => void;

/**
 * Told when a call has been routed (or refused before routing): `cluster` is `undefined`
 * for calls no route took. Must be cheap: it runs on the data path.
 */
export type CallStartObserver = (cluster: string | undefined, method: string) => void;

/**
 * A call's span, when tracing is on: the relay ends it with the call's record. The relay
 * never sees the tracing library; see `src/tracing/`.
 */
export interface CallSpan {
  /** The W3C trace id (32 lowercase hex digits). */
  readonly traceId: string;
  /** Ends the span with what the call did. */
  end(record: CallRecord): void;
}

/**
 * Starts a span for each call, when tracing is on. `start` reads the client's W3C
 * `traceparent` and `tracestate` from `headers` and rewrites `traceparent` so the proxy's
 * span becomes the backend's parent (W3C Trace Context §3.2); it returns `undefined` for a
 * call it does not record.
 */
export interface CallTracer {
  start(headers: string[], method: string): CallSpan | undefined;
}
