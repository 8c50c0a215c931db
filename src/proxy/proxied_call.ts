/**
 * One gRPC call relayed from a client stream to a backend stream and back.
 *
 * The call is the {@link StreamHandler} of both of its streams and the timer entry of its
 * deadline, so relaying a call allocates no closures and no timer. Flow control runs end to
 * end: data received on one side is credited to its sender only once the other side has
 * written it on (`onFlushed` → `consume`), so a slow reader on either side holds the proxy
 * to about one stream window per call.
 *
 * Endings follow gRPC over HTTP/2 (PROTOCOL-HTTP2): the backend's trailers, or its
 * trailers-only response, end the call with its status; a backend reset is forwarded with
 * its code, so REFUSED_STREAM stays retryable; a stream the backend never processed (above
 * its GOAWAY's last stream id) is refused retryably; a lost backend connection is
 * UNAVAILABLE naming the backend; a client cancel or disconnect reaches the backend as CANCEL.
 * @module
 */
import type { PickResult } from "../balancer/types.ts";
import { type TimerEntry, timers } from "../timer/timer_queue.ts";
import { componentLogger } from "../log/logger.ts";
import {
  CloseCause,
  type HeaderList,
  type StreamHandler,
  type TransportStream,
} from "../transport/stream.ts";
import type { CallObserver, CallOrigin, CallProtocol } from "./call_record.ts";
import { formatGrpcTimeout, MAX_TIMER_MS, parseGrpcTimeout } from "./deadline.ts";
import { GrpcStatus, isGrpcContentType, parseGrpcStatus, statusTrailers } from "./grpc_status.ts";
import type { UpstreamBackend } from "../upstream/upstream_backend.ts";
import type { UpstreamCluster } from "../upstream/upstream_cluster.ts";
import { upstreamRequestHeaders } from "./headers.ts";
import type { Router } from "./router.ts";

/** RST_STREAM codes the relay sends or maps (RFC 9113 §7). */
const NO_ERROR = 0x0;
const REFUSED_STREAM = 0x7;
const CANCEL = 0x8;

const log = componentLogger("proxy");

/** Everything a call needs from the proxy; built once per listener. */
export interface CallContext {
  /** Maps `:path` to a cluster. */
  readonly router: Router<UpstreamCluster>;
  /** Told about every finished call. */
  readonly observers: readonly CallObserver[];
  /** How this listener's clients call. */
  readonly protocol: CallProtocol;
}

/** The grpc-status a client observes for a given RST_STREAM code (as gRPC clients map it). */
function statusForReset(code: number): number {
  if (code === CANCEL) return GrpcStatus.CANCELLED;
  if (code === REFUSED_STREAM) return GrpcStatus.UNAVAILABLE;
  return GrpcStatus.INTERNAL;
}

const EMPTY = new Uint8Array(0);

/**
 * Request bytes kept for a transparent retry. A call the backend never processed (above its
 * GOAWAY's last stream id, refused with REFUSED_STREAM, or queued on a connection that never
 * came up) is replayed on a fresh pick when its request so far fits here, as gRPC's
 * transparent retry (A6) and Envoy's retry buffer do.
 */
const REPLAY_BUFFER_BYTES = 64 * 1024;

/** Attempts per call, the first included, when backends keep refusing it unprocessed. */
const MAX_ATTEMPTS = 3;

/** Relays one call; construct it from the listener's stream and call {@link start}. */
export class ProxiedCall implements StreamHandler, TimerEntry {
  /** See {@link TimerEntry}: the call's deadline. */
  timerAt = 0;
  /** See {@link TimerEntry}. */
  timerIndex = -1;
  readonly #context: CallContext;
  readonly #downstream: TransportStream;
  readonly #requestHeaders: HeaderList;
  readonly #path: string;
  readonly #startedAt = Date.now();
  readonly #clientAddress: string;
  #cluster: UpstreamCluster | undefined;
  #backend: UpstreamBackend | undefined;
  #upstream: TransportStream | undefined;
  #upstreamOpen = false;
  /** Request data that arrived before the backend stream opened (copies). */
  #early: Uint8Array[] | undefined;
  /** Copies of the request data sent so far, while a transparent retry is still possible. */
  #replay: Uint8Array[] | undefined = [];
  #replayBytes = 0;
  /** Request bytes credited back to the client so far. */
  #requestCredited = 0;
  /** Replayed bytes whose flush must not credit the client a second time. */
  #creditDebt = 0;
  #attempts = 0;
  #deadlineMs: number | undefined;
  #requestEnded: boolean;
  /** The backend ended its side (trailers or END_STREAM). */
  #responseEnded = false;
  /** Set while the call waits for a backend, so a client cancel can withdraw it. */
  #pickWait: AbortController | undefined;
  /** Response headers were sent downstream. */
  #responded = false;
  /** The call's outcome is decided; later upstream events change nothing. */
  #decided = false;
  #grpcStatus: number = GrpcStatus.UNKNOWN;
  #resetCode: number | undefined;
  #origin: CallOrigin = "client";
  #backendFailure = false;
  #bytesReceived = 0;
  #bytesSent = 0;

  /** Binds the call to its client stream and becomes its handler. */
  constructor(
    context: CallContext,
    downstream: TransportStream,
    headers: HeaderList,
    endStream: boolean,
    clientAddress: string,
  ) {
    this.#context = context;
    this.#downstream = downstream;
    this.#requestHeaders = headers;
    this.#requestEnded = endStream;
    this.#clientAddress = clientAddress;
    let path = "";
    for (let i = 0; i < headers.length; i += 2) {
      if (headers[i] === ":path") {
        path = headers[i + 1];
        break;
      }
    }
    this.#path = path;
    downstream.handler = this;
  }

  /**
   * Routes, picks a backend and starts relaying. Never throws; failures become statuses.
   * Synchronous unless no backend is ready and the call has to wait for one.
   */
  start(): void {
    try {
      this.#route();
    } catch (error) {
      this.#internalError(error);
    }
  }

  /** A bug here must cost this call only: answer it rather than leave it hanging. */
  #internalError(error: unknown): void {
    log.error("call {method} failed inside the proxy: {error}", {
      method: this.#path,
      error: String((error as Error)?.stack ?? error),
    });
    if (!this.#decided) this.#finishByProxy(GrpcStatus.INTERNAL, "internal proxy error");
  }

  #route(): void {
    const headers = this.#requestHeaders;
    let method = "";
    let contentType = "";
    let timeoutHeader: string | undefined;
    for (let i = 0; i < headers.length; i += 2) {
      const name = headers[i];
      if (name === ":method") method = headers[i + 1];
      else if (name === "content-type") contentType = headers[i + 1];
      else if (name === "grpc-timeout") timeoutHeader = headers[i + 1];
    }
    if (method !== "POST" || !isGrpcContentType(contentType)) {
      this.#rejectNonGrpc(method, contentType);
      return;
    }
    let deadlineMs: number | undefined;
    if (timeoutHeader !== undefined) {
      deadlineMs = parseGrpcTimeout(timeoutHeader);
      if (deadlineMs === undefined) {
        // Quoted: an empty value would otherwise leave trailing whitespace in grpc-message,
        // which RFC 9113 §8.2.1 forbids and clients' HTTP/2 stacks drop.
        this.#finishByProxy(
          GrpcStatus.INTERNAL,
          `malformed grpc-timeout ${JSON.stringify(timeoutHeader)}`,
        );
        return;
      }
    }

    const cluster = this.#context.router.match(this.#path);
    if (!cluster) {
      this.#finishByProxy(GrpcStatus.UNIMPLEMENTED, `no route for ${this.#path}`);
      return;
    }
    this.#cluster = cluster;
    this.#deadlineMs = deadlineMs;
    this.#pick();
  }

  /** Picks a backend, waiting for one while none is ready, then opens the backend stream. */
  #pick(): void {
    const cluster = this.#cluster!;
    const pick = cluster.pick();
    if (pick.kind === "queue") {
      // While no backend is ready the call waits up to its deadline (or the cluster's
      // default) and then fails with UNAVAILABLE, as gRPC's pickers do.
      const deadlineMs = this.#deadlineMs;
      const waitMs = deadlineMs === undefined
        ? cluster.config.waitForReadyTimeout
        : this.#startedAt + deadlineMs - Date.now();
      this.#pickWait = new AbortController();
      cluster.waitForPick(Math.min(Math.max(0, waitMs), MAX_TIMER_MS), this.#pickWait.signal)
        .then((result) => {
          this.#pickWait = undefined;
          if (this.#decided) return; // the client cancelled while waiting
          try {
            this.#picked(result);
          } catch (error) {
            this.#internalError(error);
          }
        });
      return;
    }
    this.#picked(pick);
  }

  /** Opens the backend stream for a completed pick, or answers why there is none. */
  #picked(pick: PickResult): void {
    const deadlineMs = this.#deadlineMs;
    const cluster = this.#cluster!;
    const headers = this.#requestHeaders;
    if (pick.kind !== "complete") {
      const reason = pick.kind === "fail" ? pick.message : "no backend";
      this.#finishByProxy(GrpcStatus.UNAVAILABLE, cluster.describeUnavailable(reason));
      return;
    }
    // Cluster pickers only ever hand out the cluster's own Backend objects.
    const backend = pick.subConn as UpstreamBackend;
    this.#backend = backend;
    backend.counters.calls++;
    let grpcTimeout: string | undefined;
    if (deadlineMs !== undefined) {
      const deadline = this.#startedAt + deadlineMs;
      const remainingMs = deadline - Date.now();
      if (remainingMs <= 0) {
        this.#deadlineExceeded();
        return;
      }
      timers.schedule(this, deadline);
      grpcTimeout = formatGrpcTimeout(remainingMs);
    }
    const upstream = backend.upstream.openStream(
      upstreamRequestHeaders(headers, grpcTimeout),
      this,
    );
    if (upstream === undefined) {
      this.#backendFailure = true;
      this.#finishByProxy(
        GrpcStatus.UNAVAILABLE,
        `cluster ${cluster.name}: backend ${backend.address} has no ready connection`,
      );
      return;
    }
    this.#upstream = upstream;
    this.#upstreamOpen = true;
    this.#attempts++;
    let chunks = this.#early;
    this.#early = undefined;
    if (this.#attempts > 1) {
      // A replay: the bytes that went out before were credited to the client then.
      chunks = this.#replay;
      this.#creditDebt = this.#requestCredited;
    } else if (chunks !== undefined) {
      for (const chunk of chunks) this.#keepForReplay(chunk);
    }
    if (chunks !== undefined && chunks.length > 0) {
      for (let i = 0; i < chunks.length; i++) {
        upstream.sendData(chunks[i], this.#requestEnded && i === chunks.length - 1);
      }
    } else if (this.#requestEnded) upstream.sendData(EMPTY, true);
  }

  /** Keeps a copy of request data for a transparent retry, while one is still possible. */
  #keepForReplay(chunk: Uint8Array): void {
    if (this.#replay === undefined) return;
    this.#replayBytes += chunk.length;
    if (this.#replayBytes > REPLAY_BUFFER_BYTES) this.#replay = undefined;
    else this.#replay.push(chunk);
  }

  // --- StreamHandler: events of both streams ----------------------------------------------

  /** See {@link StreamHandler.onHeaders}. */
  onHeaders(stream: TransportStream, headers: HeaderList, endStream: boolean): void {
    if (stream === this.#downstream) {
      // Request trailers: gRPC sends none, but HTTP allows them; they end the request.
      this.#requestEnded = true;
      if (this.#upstreamOpen) this.#upstream!.sendTrailers(headers);
      return;
    }
    if (endStream) this.#responseEnded = true;
    if (this.#decided) return;
    if (!endStream) {
      this.#responded = true;
      this.#replay = undefined; // the backend processed the call: no transparent retry now
      this.#downstream.sendHeaders(headers, false);
      return;
    }
    this.#decided = true;
    this.#origin = "backend";
    this.#grpcStatus = grpcStatusOf(headers);
    this.#backendFailure = this.#grpcStatus === GrpcStatus.UNAVAILABLE;
    if (this.#responded) {
      this.#downstream.sendTrailers(headers);
    } else {
      // A trailers-only response travels as the only HEADERS frame, END_STREAM set.
      this.#responded = true;
      this.#downstream.sendHeaders(headers, true);
    }
  }

  /** See {@link StreamHandler.onData}. */
  onData(stream: TransportStream, data: Uint8Array, endStream: boolean): void {
    if (stream === this.#downstream) {
      this.#bytesReceived += data.length;
      if (endStream) this.#requestEnded = true;
      if (this.#upstreamOpen) {
        if (this.#replay !== undefined && data.length > 0) this.#keepForReplay(data.slice());
        this.#upstream!.sendData(data, endStream);
      } else if (this.#decided) {
        stream.consume(data.length);
      } else if (data.length > 0) {
        // Not credited until it goes upstream: the client's window bounds this buffer.
        (this.#early ??= []).push(data.slice());
      }
      return;
    }
    this.#bytesSent += data.length;
    if (endStream) this.#responseEnded = true;
    if (this.#decided) {
      stream.consume(data.length);
      return;
    }
    this.#downstream.sendData(data, false);
    if (endStream) this.#endedWithoutTrailers();
  }

  /** See {@link StreamHandler.onFlushed}: what one side wrote on is credited to the other. */
  onFlushed(stream: TransportStream, bytes: number): void {
    if (stream === this.#downstream) {
      this.#upstream?.consume(bytes);
      return;
    }
    if (this.#creditDebt > 0) {
      const replayed = Math.min(this.#creditDebt, bytes);
      this.#creditDebt -= replayed;
      bytes -= replayed;
    }
    if (bytes > 0) {
      this.#requestCredited += bytes;
      this.#downstream.consume(bytes);
    }
  }

  /** See {@link StreamHandler.onClose}. */
  onClose(stream: TransportStream, cause: CloseCause): void {
    if (stream === this.#downstream) this.#downstreamClosed(cause);
    else this.#upstreamClosed(stream, cause);
  }

  /** See {@link TimerEntry.onTimer}: the call's deadline passed. */
  onTimer(): void {
    this.#deadlineExceeded();
  }

  // --- endings ------------------------------------------------------------------------------

  #downstreamClosed(cause: CloseCause): void {
    timers.cancel(this);
    this.#early = undefined;
    if (!this.#decided) {
      // The client cancelled or disconnected before the call ended.
      this.#decided = true;
      this.#grpcStatus = GrpcStatus.CANCELLED;
      this.#origin = "client";
      if (cause === CloseCause.PEER_RESET) this.#resetCode = this.#downstream.resetCode;
    }
    // A backend stream still open either way is cancelled: the client is gone, or the
    // backend answered before the client finished its request and the request side would
    // otherwise stay open. A stream that both sides ended closes on its own: a reset there
    // would cost the backend a RST_STREAM per call, which its rapid-reset guard counts.
    const upstream = this.#upstream;
    if (
      this.#upstreamOpen &&
      !(this.#responseEnded && this.#requestEnded && upstream!.queuedBytes === 0)
    ) upstream!.reset(CANCEL);
    this.#pickWait?.abort();
    this.#report();
  }

  #upstreamClosed(upstream: TransportStream, cause: CloseCause): void {
    this.#upstreamOpen = false;
    if (this.#decided || cause === CloseCause.DONE) {
      if (!this.#decided) this.#endedWithoutTrailers();
      return;
    }
    if (this.#retryable(upstream, cause)) {
      this.#upstream = undefined;
      this.#pick();
      return;
    }
    const backend = this.#backend!.address;
    const cluster = this.#cluster!.name;
    switch (cause) {
      case CloseCause.PEER_RESET: {
        const code = upstream.resetCode;
        // NO_ERROR before the trailers still leaves the call without a status: the client
        // sees it as a cancel, and the record says what the client saw.
        const forwarded = code === NO_ERROR ? CANCEL : code;
        this.#decided = true;
        this.#origin = "backend_reset";
        this.#resetCode = forwarded;
        this.#grpcStatus = statusForReset(forwarded);
        this.#backendFailure = code !== CANCEL && code !== NO_ERROR;
        this.#downstream.reset(forwarded);
        return;
      }
      case CloseCause.UNPROCESSED:
        if (!this.#responded) {
          // The backend never saw the call (GOAWAY, or its connection never came up): the
          // client may retry it safely, and gRPC clients do so for REFUSED_STREAM.
          this.#decided = true;
          this.#origin = "proxy";
          this.#resetCode = REFUSED_STREAM;
          this.#grpcStatus = GrpcStatus.UNAVAILABLE;
          this.#downstream.reset(REFUSED_STREAM);
          return;
        }
        break;
      default:
        break;
    }
    this.#backendFailure = true;
    const reason = upstream.closeReason;
    const message = cause === CloseCause.LOCAL_RESET
      ? `backend ${backend} broke the protocol: ${reason}`
      : this.#responded
      ? `connection to backend ${backend} lost: ${reason}`
      : `backend ${backend} unavailable: ${reason}`;
    this.#finishByProxy(GrpcStatus.UNAVAILABLE, `cluster ${cluster}: ${message}`);
  }

  /**
   * A call the backend never processed, whose request so far is kept, goes to a fresh pick:
   * streams above a GOAWAY's last stream id, refused with REFUSED_STREAM (RFC 9113 §8.7), or
   * queued on a connection that never came up.
   */
  #retryable(upstream: TransportStream, cause: CloseCause): boolean {
    const unprocessed = cause === CloseCause.UNPROCESSED ||
      (cause === CloseCause.PEER_RESET && upstream.resetCode === REFUSED_STREAM);
    return unprocessed && !this.#responded && this.#replay !== undefined &&
      this.#attempts < MAX_ATTEMPTS;
  }

  #endedWithoutTrailers(): void {
    this.#backendFailure = true;
    this.#finishByProxy(
      GrpcStatus.INTERNAL,
      `cluster ${this.#cluster!.name}: backend ${
        this.#backend!.address
      } ended the stream without trailers`,
    );
    if (this.#upstreamOpen) this.#upstream!.reset(CANCEL);
  }

  #deadlineExceeded(): void {
    if (this.#decided) return;
    this.#finishByProxy(
      GrpcStatus.DEADLINE_EXCEEDED,
      `deadline exceeded after ${Date.now() - this.#startedAt}ms (backend ${
        this.#backend!.address
      })`,
    );
    // Decided first, so the reset's own close event is not taken for a backend failure.
    if (this.#upstreamOpen) this.#upstream!.reset(CANCEL);
  }

  /** Ends the call with a status the proxy produced itself. */
  #finishByProxy(code: number, message: string): void {
    this.#decided = true;
    this.#origin = "proxy";
    this.#grpcStatus = code;
    if (!this.#responded) {
      this.#responded = true;
      this.#downstream.sendHeaders(
        [":status", "200", "content-type", "application/grpc", ...statusTrailers(code, message)],
        true,
      );
    } else {
      this.#downstream.sendTrailers(statusTrailers(code, message));
    }
  }

  #rejectNonGrpc(method: string, contentType: string): void {
    this.#decided = true;
    this.#origin = "proxy";
    this.#grpcStatus = GrpcStatus.INTERNAL;
    this.#responded = true;
    const isPost = method === "POST";
    this.#downstream.sendHeaders([
      ":status",
      isPost ? "415" : "405",
      "content-type",
      "application/grpc",
      ...statusTrailers(
        GrpcStatus.INTERNAL,
        isPost ? `unsupported content-type ${JSON.stringify(contentType)}` : "gRPC requires POST",
      ),
    ], true);
  }

  #report(): void {
    const cluster = this.#cluster;
    if (cluster) {
      cluster.counters.calls++;
      if (this.#grpcStatus !== GrpcStatus.OK) cluster.counters.errors++;
    }
    const backend = this.#backend;
    if (backend) {
      backend.counters.bytesReceived += this.#bytesReceived;
      backend.counters.bytesSent += this.#bytesSent;
      if (this.#backendFailure) backend.counters.failures++;
    }
    const observers = this.#context.observers;
    if (observers.length === 0) return;
    const record = {
      protocol: this.#context.protocol,
      startedAt: this.#startedAt,
      durationMs: Date.now() - this.#startedAt,
      method: this.#path,
      cluster: cluster?.name,
      backend: backend?.address,
      grpcStatus: this.#grpcStatus,
      resetCode: this.#resetCode,
      origin: this.#origin,
      backendFailure: this.#backendFailure,
      bytesReceived: this.#bytesReceived,
      bytesSent: this.#bytesSent,
      clientAddress: this.#clientAddress,
    };
    for (const observe of observers) observe(record);
  }
}

/** The `grpc-status` of a trailer list, as {@link parseGrpcStatus} reads it. */
function grpcStatusOf(headers: HeaderList): number {
  for (let i = 0; i < headers.length; i += 2) {
    if (headers[i] === "grpc-status") return parseGrpcStatus(headers[i + 1]);
  }
  return GrpcStatus.UNKNOWN;
}
