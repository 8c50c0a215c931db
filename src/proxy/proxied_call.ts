/**
 * One gRPC call relayed from a client stream to a backend stream and back.
 *
 * The relay is written by hand rather than with `pipe()` for three reasons:
 * - backpressure must pause the *other* stream, so a slow reader on either side holds the
 *   proxy to about one flow-control window per stream;
 * - Deno can emit upstream `data` before `response`; such data waits for the headers;
 * - without trailers, the downstream ends only after the upstream `close`, so that a
 *   backend reset is forwarded with its own code (REFUSED_STREAM stays retryable) instead
 *   of becoming an INTERNAL error.
 *
 * It runs once per call, so it is kept cheap: the stream listeners are shared functions
 * that find their call through a symbol on the stream (an emitter calls listeners with
 * `this` set to itself) instead of a dozen closures per call, response chunks that arrive
 * together leave in one write, and frames are batched per turn (`write_batching.ts`).
 * @module
 */
import http2 from "node:http2";
import type { Backend } from "../cluster/backend.ts";
import type { Cluster } from "../cluster/cluster.ts";
import type { CallObserver, CallOrigin } from "./call_record.ts";
import { formatGrpcTimeout, MAX_TIMER_MS, parseGrpcTimeout } from "./deadline.ts";
import { GrpcStatus, statusTrailers } from "./grpc_status.ts";
import { forwardableHeaders, upstreamRequestHeaders } from "./headers.ts";
import { resetStream } from "../transport/reset_stream.ts";
import {
  holdWrites,
  holdWritesThroughImmediates,
  noteStreamClosed,
  noteStreamOpened,
} from "../transport/write_batching.ts";
import type { Router } from "./router.ts";
import { componentLogger } from "../log/logger.ts";

const { NGHTTP2_CANCEL, NGHTTP2_NO_ERROR, NGHTTP2_REFUSED_STREAM } = http2.constants;

const log = componentLogger("proxy");

/** Response bytes gathered before they are written downstream at once. */
const COALESCE_BYTES = 64 * 1024;

/** The call a stream belongs to, for the shared listeners. */
const CALL = Symbol("proxiedCall");

type CallStream = (http2.ServerHttp2Stream | http2.ClientHttp2Stream) & { [CALL]?: ProxiedCall };

/** Everything a call needs from the proxy; built once per listener. */
export interface CallContext {
  /** Maps `:path` to a cluster. */
  readonly router: Router<Cluster>;
  /** Told about every finished call. */
  readonly observers: readonly CallObserver[];
}

function ignoreError(): void {}

/** The grpc-status a client observes for a given RST_STREAM code (as gRPC clients map it). */
function statusForReset(code: number): number {
  if (code === NGHTTP2_CANCEL) return GrpcStatus.CANCELLED;
  if (code === NGHTTP2_REFUSED_STREAM) return GrpcStatus.UNAVAILABLE;
  return GrpcStatus.INTERNAL;
}

const OK_TRAILERS: Readonly<Record<string, string>> = statusTrailers(GrpcStatus.OK, "");

/** Relays one call; construct it from the listener's `stream` event and call {@link start}. */
export class ProxiedCall {
  readonly #context: CallContext;
  readonly #downstream: http2.ServerHttp2Stream;
  readonly #requestHeaders: http2.IncomingHttpHeaders;
  readonly #path: string;
  readonly #startedAt = Date.now();
  /** Read at arrival: Deno's `node:http2` detaches the stream's session once it closes. */
  readonly #clientAddress: string | undefined;
  readonly #downstreamSession: http2.Http2Session | undefined;
  #cluster: Cluster | undefined;
  #backend: Backend | undefined;
  #upstream: http2.ClientHttp2Stream | undefined;
  /** Kept from the start: Deno detaches `upstream.session` once the stream closes. */
  #upstreamSession: http2.Http2Session | undefined;
  #deadlineTimer: ReturnType<typeof setTimeout> | undefined;
  /** Set while the call is queued for a backend, so a client cancel can withdraw it. */
  #pickWait: AbortController | undefined;
  /** Response headers have been sent downstream. */
  #responded = false;
  /** The call's outcome is decided; later upstream events change nothing. */
  #decided = false;
  #trailersOut: http2.OutgoingHttpHeaders | undefined;
  /** Response chunks not yet written downstream: before the headers, or within one turn. */
  #pendingOut: Buffer[] = [];
  #pendingOutBytes = 0;
  #flushQueued = false;
  #upstreamError: (Error & { code?: string }) | undefined;
  #grpcStatus: number = GrpcStatus.UNKNOWN;
  #resetCode: number | undefined;
  #origin: CallOrigin = "client";
  #backendFailure = false;
  #bytesIn = 0;
  #bytesOut = 0;

  /** Binds the call to its client stream. */
  constructor(
    context: CallContext,
    downstream: http2.ServerHttp2Stream,
    headers: http2.IncomingHttpHeaders,
  ) {
    this.#context = context;
    this.#downstream = downstream;
    this.#requestHeaders = headers;
    this.#path = headers[":path"] ?? "";
    this.#downstreamSession = downstream.session;
    this.#clientAddress = this.#downstreamSession?.socket?.remoteAddress;
    noteStreamOpened(this.#downstreamSession);
  }

  /** Routes, picks a backend and starts relaying. Never throws; failures become statuses. */
  async start(): Promise<void> {
    try {
      await this.#route();
    } catch (error) {
      // A bug here must cost this call only: answer it rather than leave it hanging.
      log.error("call {method} failed inside the proxy: {error}", {
        method: this.#path,
        error: String((error as Error)?.stack ?? error),
      });
      if (!this.#decided) this.#finishByProxy(GrpcStatus.INTERNAL, "internal proxy error");
    }
  }

  async #route(): Promise<void> {
    const downstream: CallStream = this.#downstream;
    downstream[CALL] = this;
    downstream.on("error", ignoreError);
    downstream.on("close", ProxiedCall.#onDownstreamClose);

    const contentType = this.#requestHeaders["content-type"] ?? "";
    if (this.#requestHeaders[":method"] !== "POST" || !contentType.startsWith("application/grpc")) {
      this.#rejectNonGrpc(contentType);
      return;
    }
    let deadlineMs: number | undefined;
    const timeoutHeader = this.#requestHeaders["grpc-timeout"];
    if (timeoutHeader !== undefined) {
      deadlineMs = parseGrpcTimeout(String(timeoutHeader));
      if (deadlineMs === undefined) {
        this.#finishByProxy(GrpcStatus.INTERNAL, `malformed grpc-timeout ${timeoutHeader}`);
        return;
      }
    }

    const cluster = this.#context.router.match(this.#path);
    if (!cluster) {
      this.#finishByProxy(GrpcStatus.UNIMPLEMENTED, `no route for ${this.#path}`);
      return;
    }
    this.#cluster = cluster;
    let pick = cluster.pick();
    if (pick.kind === "queue") {
      // While no backend is ready the call waits up to its deadline (or the cluster's
      // default) and then fails with UNAVAILABLE, as gRPC's pickers do.
      const waitMs = Math.min(deadlineMs ?? cluster.config.waitForReadyTimeout, MAX_TIMER_MS);
      this.#pickWait = new AbortController();
      pick = await cluster.waitForPick(waitMs, this.#pickWait.signal);
      this.#pickWait = undefined;
      if (this.#decided) return; // the client cancelled while waiting
    }
    if (pick.kind !== "complete") {
      const reason = pick.kind === "fail" ? pick.message : "no backend";
      this.#finishByProxy(GrpcStatus.UNAVAILABLE, cluster.describeUnavailable(reason));
      return;
    }
    // Cluster pickers only ever hand out the cluster's own Backend objects.
    const backend = pick.subConn as Backend;
    this.#backend = backend;
    backend.counters.calls++;
    if (deadlineMs !== undefined) {
      const remainingMs = this.#startedAt + deadlineMs - Date.now();
      if (remainingMs <= 0) {
        this.#deadlineExceeded();
        return;
      }
      // A deadline too far away for a timer is as good as none.
      if (remainingMs <= MAX_TIMER_MS) {
        this.#deadlineTimer = setTimeout(ProxiedCall.#onDeadlineTimer, remainingMs, this);
      }
    }

    const outgoing = upstreamRequestHeaders(
      this.#requestHeaders,
      deadlineMs === undefined
        ? undefined
        : formatGrpcTimeout(this.#startedAt + deadlineMs - Date.now()),
    );
    const upstream: CallStream | undefined = backend.upstream.openStream(outgoing);
    if (!upstream) {
      this.#backendFailure = true;
      this.#finishByProxy(
        GrpcStatus.UNAVAILABLE,
        `cluster ${cluster.name}: backend ${backend.address} has no ready connection`,
      );
      return;
    }
    this.#upstream = upstream;
    this.#upstreamSession = upstream.session;
    upstream[CALL] = this;
    upstream.on("response", ProxiedCall.#onUpstreamResponse);
    upstream.on("data", ProxiedCall.#onUpstreamData);
    upstream.on("trailers", ProxiedCall.#onUpstreamTrailers);
    upstream.on("error", ProxiedCall.#onUpstreamError);
    upstream.on("end", ProxiedCall.#onUpstreamEnd);
    upstream.on("close", ProxiedCall.#onUpstreamClose);
    downstream.on("data", ProxiedCall.#onDownstreamData);
    downstream.on("end", ProxiedCall.#onDownstreamEnd);
    downstream.on("wantTrailers", ProxiedCall.#onWantTrailers);
  }

  // --- shared listeners: `this` is the emitting stream ----------------------------------
  // 'end' and 'close' are emitted at most once, so plain `on` does what `once` would,
  // without a wrapper closure per call.

  static #onDownstreamData(this: CallStream, chunk: Buffer): void {
    this[CALL]!.#relayRequestChunk(chunk);
  }

  static #onDownstreamEnd(this: CallStream): void {
    this[CALL]!.#endRequest();
  }

  static #onDownstreamClose(this: CallStream): void {
    this[CALL]!.#downstreamClosed();
  }

  static #onWantTrailers(this: CallStream): void {
    this[CALL]!.#sendTrailers();
  }

  static #onUpstreamResponse(this: CallStream, headers: http2.IncomingHttpHeaders): void {
    this[CALL]!.#relayResponseHeaders(headers);
  }

  static #onUpstreamData(this: CallStream, chunk: Buffer): void {
    this[CALL]!.#relayResponseChunk(chunk);
  }

  static #onUpstreamTrailers(this: CallStream, trailers: http2.IncomingHttpHeaders): void {
    const call = this[CALL]!;
    if (call.#decided) return; // the proxy already ended the call (deadline, cancel)
    call.#trailersOut = forwardableHeaders(trailers);
    call.#grpcStatus = Number(trailers["grpc-status"] ?? GrpcStatus.UNKNOWN);
  }

  static #onUpstreamError(this: CallStream, error: Error & { code?: string }): void {
    this[CALL]!.#upstreamError = error;
  }

  /**
   * Trailers and the end of the data decide the call: nothing the backend does later (not
   * even a reset) changes the outcome, so the client gets its trailers without waiting for
   * the stream's `close`, which comes a turn or more later.
   */
  static #onUpstreamEnd(this: CallStream): void {
    const call = this[CALL]!;
    if (!call.#decided && call.#trailersOut) call.#finishWithBackendTrailers();
  }

  static #onUpstreamClose(this: CallStream): void {
    this[CALL]!.#upstreamClosed();
  }

  static #resumeDownstream(this: CallStream): void {
    this[CALL]!.#downstream.resume();
  }

  static #resumeUpstream(this: CallStream): void {
    this[CALL]!.#upstream?.resume();
  }

  static #flushQueuedOut(call: ProxiedCall): void {
    call.#flushQueued = false;
    if (!call.#decided && call.#responded) call.#flushResponse();
  }

  // --- request direction -------------------------------------------------------------

  #relayRequestChunk(chunk: Buffer): void {
    this.#bytesIn += chunk.length;
    if (this.#decided) return;
    const upstream = this.#upstream!;
    holdWrites(upstream.session);
    if (upstream.write(chunk)) return;
    this.#downstream.pause();
    upstream.once("drain", ProxiedCall.#resumeDownstream);
  }

  #endRequest(): void {
    const upstream = this.#upstream!;
    // Once decided by the backend's answer, ending the request lets its stream close too.
    if (this.#decided && upstream.closed) return;
    upstream.end();
    // With a write in flight, Deno sends END_STREAM two setImmediate hops after end().
    holdWritesThroughImmediates(upstream.session, 2);
  }

  #downstreamClosed(): void {
    clearTimeout(this.#deadlineTimer);
    noteStreamClosed(this.#downstreamSession);
    if (!this.#decided) {
      // The client cancelled or disconnected before the call ended.
      this.#decided = true;
      this.#grpcStatus = GrpcStatus.CANCELLED;
      this.#origin = "client";
      if (this.#upstream) resetStream(this.#upstream, NGHTTP2_CANCEL);
    } else if (this.#upstream && !this.#upstream.closed) {
      // The backend answered before the client finished its request, and the client went
      // away: the backend stream's request side is still open and would never close.
      resetStream(this.#upstream, NGHTTP2_CANCEL);
    }
    this.#pickWait?.abort();
    this.#report();
  }

  // --- response direction ------------------------------------------------------------

  #relayResponseHeaders(headers: http2.IncomingHttpHeaders): void {
    if (this.#decided) return;
    const forwarded = forwardableHeaders(headers);
    if (headers["grpc-status"] !== undefined) {
      // Trailers-only response: the status travels in the only HEADERS frame.
      this.#decided = true;
      this.#origin = "backend";
      this.#grpcStatus = Number(headers["grpc-status"]);
      this.#backendFailure = this.#grpcStatus === GrpcStatus.UNAVAILABLE;
      this.#respond(forwarded, true);
      return;
    }
    this.#respond(forwarded, false);
    // Deno can deliver data before the response headers; it waited in #pendingOut.
    if (this.#pendingOutBytes > 0) this.#flushResponse();
  }

  /**
   * Gathers the chunks of one read (a socket read carries many small messages) into one
   * downstream write, flushed at the end of the tick or at {@link COALESCE_BYTES}.
   */
  #relayResponseChunk(chunk: Buffer): void {
    this.#bytesOut += chunk.length;
    if (this.#decided) return;
    this.#pendingOut.push(chunk);
    this.#pendingOutBytes += chunk.length;
    if (!this.#responded) return;
    if (this.#pendingOutBytes >= COALESCE_BYTES) {
      this.#flushResponse();
    } else if (!this.#flushQueued) {
      this.#flushQueued = true;
      process.nextTick(ProxiedCall.#flushQueuedOut, this);
    }
  }

  #flushResponse(): void {
    const pending = this.#pendingOut;
    if (pending.length === 0) return;
    const data = pending.length === 1 ? pending[0] : Buffer.concat(pending, this.#pendingOutBytes);
    this.#pendingOut = [];
    this.#pendingOutBytes = 0;
    holdWrites(this.#downstream.session);
    if (this.#downstream.write(data)) return;
    this.#upstream!.pause();
    this.#downstream.once("drain", ProxiedCall.#resumeUpstream);
  }

  #finishWithBackendTrailers(): void {
    this.#decided = true;
    this.#origin = "backend";
    this.#backendFailure = this.#grpcStatus === GrpcStatus.UNAVAILABLE;
    this.#flushResponse();
    this.#downstream.end();
    // end() completes a turn later, in Deno's write callback; it then asks for trailers.
    holdWritesThroughImmediates(this.#downstream.session, 1);
  }

  #upstreamClosed(): void {
    const upstream = this.#upstream!;
    this.#backend!.upstream.streamClosed(upstream);
    if (this.#decided) return;
    const backend = this.#backend!.address;
    const cluster = this.#cluster!.name;
    if (this.#trailersOut) {
      this.#finishWithBackendTrailers();
      return;
    }
    // A stream error means the backend reset this stream; any other error, or a session that
    // is gone, means the connection failed under it.
    const error = this.#upstreamError;
    const connectionLost = (error !== undefined && error.code !== "ERR_HTTP2_STREAM_ERROR") ||
      this.#upstreamSession?.destroyed === true;
    const resetCode = upstream.rstCode ?? NGHTTP2_NO_ERROR;
    if (!connectionLost && resetCode !== NGHTTP2_NO_ERROR) {
      this.#decided = true;
      this.#origin = "backend_reset";
      this.#resetCode = resetCode;
      this.#grpcStatus = statusForReset(resetCode);
      this.#backendFailure = resetCode !== NGHTTP2_CANCEL;
      this.#flushResponse();
      resetStream(this.#downstream, resetCode);
      return;
    }
    this.#backendFailure = true;
    if (connectionLost) {
      const reason = error?.message ?? "connection closed";
      const message = this.#responded
        ? `connection to backend ${backend} lost: ${reason}`
        : `backend ${backend} unavailable: ${reason}`;
      this.#finishByProxy(GrpcStatus.UNAVAILABLE, `cluster ${cluster}: ${message}`);
    } else {
      this.#finishByProxy(
        GrpcStatus.INTERNAL,
        `cluster ${cluster}: backend ${backend} ended the stream without trailers`,
      );
    }
  }

  // --- endings -------------------------------------------------------------------------

  static #onDeadlineTimer(call: ProxiedCall): void {
    call.#deadlineExceeded();
  }

  #deadlineExceeded(): void {
    if (this.#decided) return;
    if (this.#upstream) resetStream(this.#upstream, NGHTTP2_CANCEL);
    this.#finishByProxy(
      GrpcStatus.DEADLINE_EXCEEDED,
      `deadline exceeded after ${Date.now() - this.#startedAt}ms (backend ${
        this.#backend!.address
      })`,
    );
  }

  #respond(headers: http2.OutgoingHttpHeaders, endStream: boolean): void {
    if (this.#downstream.destroyed) return;
    this.#responded = true;
    holdWrites(this.#downstream.session);
    this.#downstream.respond(headers, endStream ? { endStream } : { waitForTrailers: true });
  }

  /** Ends the call with a status the proxy produced itself. */
  #finishByProxy(code: number, message: string): void {
    this.#decided = true;
    this.#origin = "proxy";
    this.#grpcStatus = code;
    if (this.#downstream.destroyed) return;
    const trailers = statusTrailers(code, message);
    if (!this.#responded) {
      this.#respond({ ":status": 200, "content-type": "application/grpc", ...trailers }, true);
    } else {
      this.#trailersOut = trailers;
      this.#flushResponse();
      this.#downstream.end();
    }
  }

  #sendTrailers(): void {
    this.#downstream.sendTrailers(this.#trailersOut ?? OK_TRAILERS);
    // Deno serializes the trailers in a setImmediate callback of its own.
    holdWritesThroughImmediates(this.#downstream.session, 1);
  }

  #rejectNonGrpc(contentType: string): void {
    this.#decided = true;
    this.#origin = "proxy";
    this.#grpcStatus = GrpcStatus.INTERNAL;
    const isPost = this.#requestHeaders[":method"] === "POST";
    this.#respond({
      ":status": isPost ? 415 : 405,
      "content-type": "application/grpc",
      ...statusTrailers(
        GrpcStatus.INTERNAL,
        isPost ? `unsupported content-type ${JSON.stringify(contentType)}` : "gRPC requires POST",
      ),
    }, true);
  }

  #report(): void {
    const cluster = this.#cluster;
    if (cluster) {
      cluster.counters.calls++;
      if (this.#grpcStatus !== GrpcStatus.OK) cluster.counters.errors++;
    }
    const backend = this.#backend;
    if (backend) {
      backend.counters.bytesSent += this.#bytesIn;
      backend.counters.bytesReceived += this.#bytesOut;
      if (this.#backendFailure) backend.counters.failures++;
    }
    const observers = this.#context.observers;
    if (observers.length === 0) return;
    const record = {
      startedAt: this.#startedAt,
      durationMs: Date.now() - this.#startedAt,
      method: this.#path,
      cluster: cluster?.name,
      backend: backend?.address,
      grpcStatus: this.#grpcStatus,
      resetCode: this.#resetCode,
      origin: this.#origin,
      backendFailure: this.#backendFailure,
      bytesIn: this.#bytesIn,
      bytesOut: this.#bytesOut,
      clientAddress: this.#clientAddress,
    };
    for (const observe of observers) observe(record);
  }
}
