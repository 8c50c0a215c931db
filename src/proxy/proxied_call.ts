/**
 * One gRPC call relayed from a client stream to a backend stream and back.
 *
 * The call is the {@link StreamHandler} of all of its streams and the one timer entry of its
 * deadline, per-try timeout, retry backoff and idle timeout, so relaying a call allocates no
 * closures and no timer. Flow control runs end to end: data received on one side is credited
 * to its sender only once the other side has written it on (`onFlushed` → `consume`), so a
 * slow reader on either side holds the proxy to about one stream window per call.
 *
 * Endings follow gRPC over HTTP/2 (PROTOCOL-HTTP2): the backend's trailers, or its
 * trailers-only response, end the call with its status; a backend reset is forwarded with
 * its code, so REFUSED_STREAM stays retryable; a stream the backend never processed (above
 * its GOAWAY's last stream id) is refused retryably; a lost backend connection is
 * UNAVAILABLE naming the backend; a client cancel or disconnect reaches the backend as CANCEL.
 *
 * Retries replay the request bytes kept so far, while the call is uncommitted (gRFC A6: no
 * response headers yet) and its request fits `retryBufferBytes`. A call no backend processed
 * is retried at once on another backend (transparent retry); a call that got a status in the
 * route's `retryOn` is retried after a jittered backoff. Both draw on the cluster's retry
 * budget, so a dying cluster is not hammered.
 * @module
 */
import type { PickInfo, PickResult } from "../balancer/types.ts";
import { type TimerEntry, timers } from "../timer/timer_queue.ts";
import { componentLogger } from "../log/logger.ts";
import {
  CloseCause,
  type HeaderList,
  headerValue,
  setHeader,
  type StreamHandler,
  type TransportStream,
} from "../transport/stream.ts";
import type {
  CallObserver,
  CallOrigin,
  CallProtocol,
  CallSpan,
  CallStartObserver,
  CallTracer,
} from "./call_record.ts";
import { formatGrpcTimeout, MAX_TIMER_MS, parseGrpcTimeout } from "./deadline.ts";
import {
  decodeGrpcMessage,
  GrpcStatus,
  isGrpcContentType,
  parseGrpcStatus,
  statusTrailers,
} from "./grpc_status.ts";
import { durationBucket } from "../dataplane/stats.ts";
import type { LimitName } from "../upstream/call_limits.ts";
import type { TrackedStream, UpstreamBackend } from "../upstream/upstream_backend.ts";
import type { UpstreamCluster } from "../upstream/upstream_cluster.ts";
import type { ClusterAffinity } from "../affinity/cluster_affinity.ts";
import type { Route, Router } from "../route/router.ts";
import { retryBackoffMs } from "../route/policy.ts";
import { REQUEST_ID } from "../route/rewrite.ts";

/** RST_STREAM codes the relay sends or maps (RFC 9113 §7). */
const NO_ERROR = 0x0;
const REFUSED_STREAM = 0x7;
const CANCEL = 0x8;

/** gRFC A6: the server's pushback, in ms; a malformed or negative one means "do not retry". */
const RETRY_PUSHBACK = "grpc-retry-pushback-ms";
const PUSHBACK_PATTERN = /^[0-9]+$/;
/** gRFC A6: how many attempts came before this one, on every retry. */
const PREVIOUS_ATTEMPTS = "grpc-previous-rpc-attempts";

const log = componentLogger("proxy");

/**
 * Everything a call needs from the proxy; one per listener. A reload swaps `router` and
 * `observers` for new calls; a call in flight keeps the route it took.
 */
export interface CallContext {
  /** Maps `:path` and headers to a route. */
  router: Router<UpstreamCluster>;
  /** Told about every finished call. */
  observers: readonly CallObserver[];
  /**
   * Read the clock when the backend answers, for the record's `upstreamDurationMs`: only the
   * access log wants it, and a clock read (`performance.now()`, an op in Deno) is not free.
   */
  timesFirstByte: boolean;
  /** Told about every call once it is routed (or refused before a route). */
  onStart: CallStartObserver | undefined;
  /** Starts each call's span; `undefined` while tracing is off, which then costs nothing. */
  tracer: CallTracer | undefined;
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

/** Idle checks per `streamIdleTimeout`: the timeout fires at most a quarter late. */
const IDLE_CHECKS = 4;

/**
 * Relays one call; construct it from the listener's stream and call {@link start}. It is
 * also the {@link PickInfo} its picks see, so that a pick allocates nothing.
 */
export class ProxiedCall implements StreamHandler, TimerEntry, PickInfo, TrackedStream {
  /** See {@link TimerEntry}: the earliest of the call's timers. */
  timerAt = 0;
  /** See {@link TimerEntry}. */
  timerIndex = -1;
  /** See {@link TrackedStream}: the backend whose open streams list this call's attempt. */
  streamBackend: UpstreamBackend | undefined = undefined;
  /** See {@link TrackedStream}. */
  streamPrev: TrackedStream | undefined = undefined;
  /** See {@link TrackedStream}. */
  streamNext: TrackedStream | undefined = undefined;
  /** See {@link TrackedStream}. */
  streamOpenedAt = 0;
  readonly #context: CallContext;
  readonly #downstream: TransportStream;
  readonly #requestHeaders: HeaderList;
  readonly #path: string;
  readonly #startedAt = Date.now();
  /** `performance.now()` at arrival, for durations below a millisecond. */
  readonly #startedMono = performance.now();
  /** `performance.now()` when the last attempt's backend answered; 0 before. */
  #answeredMono = 0;
  readonly #clientAddress: string;
  readonly #clientIdentity: string | undefined;
  /** The request hash under the cluster's `hashKey`, computed once, before the first pick. */
  #hash: number | undefined;
  /** The cluster's affinity table, when it keeps one and the call carries an id for it. */
  #affinity: ClusterAffinity | undefined;
  /** The call's id in that table. */
  #affinityId: string | undefined;
  #cluster: UpstreamCluster | undefined;
  #route: Route<UpstreamCluster> | undefined;
  #backend: UpstreamBackend | undefined;
  /** The current attempt's backend stream, while it is open. */
  #upstream: TransportStream | undefined;
  /** Request data that arrived before the first backend stream opened (copies). */
  #early: Uint8Array[] | undefined;
  /** Copies of the request data sent so far, while a retry is still possible. */
  #replay: Uint8Array[] | undefined = [];
  #replayBytes = 0;
  /** Request bytes credited back to the client so far. */
  #requestCredited = 0;
  /** Replayed bytes whose flush must not credit the client a second time. */
  #creditDebt = 0;
  /** Backend streams opened. */
  #attempts = 0;
  /** Retries after attempts no backend processed. */
  #transparentRetries = 0;
  /** Retries after a status in `retryOn` or a per-try timeout (gRFC A6). */
  #configuredRetries = 0;
  /** Backends of earlier attempts that failed because of the backend. */
  #failedAttempts: string[] | undefined;
  /** Epoch ms of the call's deadline; 0 for none. */
  #deadlineAt = 0;
  /** Epoch ms by which the current attempt must have its response headers; 0 for none. */
  #tryDeadlineAt = 0;
  /** Epoch ms when the backoff before the next attempt ends; 0 when not backing off. */
  #retryAt = 0;
  /**
   * The idle timeout, checked every quarter of it: frames only bump {@link #frames}, and a
   * check that finds it unchanged counts one more silent quarter. Four in a row (silence of at
   * least the timeout, at most a quarter more) end the call. No clock read per frame.
   */
  #idleTimeoutMs = 0;
  #idleCheckAt = 0;
  #frames = 0;
  #framesAtCheck = 0;
  #silentChecks = 0;
  #requestEnded: boolean;
  /** The backend ended its side (trailers or END_STREAM). */
  #responseEnded = false;
  /** Set while the call waits for a backend, so a client cancel can withdraw it. */
  #pickWait: AbortController | undefined;
  /** Response headers were sent downstream: the call is committed (gRFC A6). */
  #responded = false;
  /** The call's outcome is decided; later upstream events change nothing. */
  #decided = false;
  /** Counted into the cluster's `maxConcurrentCalls`, `maxPendingCalls`, retry budget. */
  #admitted = false;
  #pending = false;
  #retrying = false;
  /** The retry budget refused this call once; it is not asked (or counted) again. */
  #budgetRefused = false;
  #requestId: string | undefined;
  #grpcStatus: number = GrpcStatus.UNKNOWN;
  /** The message of a status the proxy produced. */
  #proxyMessage: string | undefined;
  /** The backend's trailers, read for their `grpc-message` only when the call is reported. */
  #trailers: HeaderList | undefined;
  #span: CallSpan | undefined;
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
    clientIdentity: string | undefined,
  ) {
    this.#context = context;
    this.#downstream = downstream;
    this.#requestHeaders = headers;
    this.#requestEnded = endStream;
    this.#clientAddress = clientAddress;
    this.#clientIdentity = clientIdentity;
    this.#path = headerValue(headers, ":path") ?? "";
    downstream.handler = this;
  }

  /** See {@link PickInfo.method}: the call's `:path`. */
  get method(): string {
    return this.#path;
  }

  /** See {@link PickInfo.headers}: the request headers, after the route's rewrites. */
  get headers(): readonly string[] {
    return this.#requestHeaders;
  }

  /** See {@link PickInfo.hash}. */
  get hash(): number | undefined {
    return this.#hash;
  }

  /**
   * Routes, picks a backend and starts relaying. Never throws; failures become statuses.
   * Synchronous unless no backend is ready and the call has to wait for one.
   */
  start(): void {
    try {
      this.#start();
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

  #start(): void {
    const headers = this.#requestHeaders;
    const tracer = this.#context.tracer;
    if (tracer !== undefined) this.#span = tracer.start(headers, this.#path);
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
      this.#context.onStart?.(undefined, this.#path);
      this.#rejectNonGrpc(method, contentType);
      return;
    }
    let timeoutMs: number | undefined;
    if (timeoutHeader !== undefined) {
      timeoutMs = parseGrpcTimeout(timeoutHeader);
      if (timeoutMs === undefined) {
        this.#context.onStart?.(undefined, this.#path);
        // Quoted: an empty value would otherwise leave trailing whitespace in grpc-message,
        // which RFC 9113 §8.2.1 forbids and clients' HTTP/2 stacks drop.
        this.#finishByProxy(
          GrpcStatus.INTERNAL,
          `malformed grpc-timeout ${JSON.stringify(timeoutHeader)}`,
        );
        return;
      }
    }

    const route = this.#context.router.match(this.#path, headers);
    this.#context.onStart?.(route?.target.name, this.#path);
    if (!route) {
      this.#finishByProxy(GrpcStatus.UNIMPLEMENTED, `no route for ${this.#path}`);
      return;
    }
    const cluster = route.target;
    this.#route = route;
    this.#cluster = cluster;
    // First, so that even a call a limit refuses gets its x-request-id back.
    if (route.rewrite) this.#requestId = route.rewrite.apply(headers, this.#clientAddress);
    if (!cluster.limits.admitCall()) {
      this.#overflow("maxConcurrentCalls", cluster.config.limits.maxConcurrentCalls);
      return;
    }
    this.#admitted = true;
    const policy = route.policy;
    // The client's deadline, capped by maxTimeout; the route's timeout when it sent none.
    if (timeoutMs === undefined) timeoutMs = policy.timeoutMs;
    else if (policy.maxTimeoutMs !== undefined) {
      timeoutMs = Math.min(timeoutMs, policy.maxTimeoutMs);
    }
    if (timeoutMs !== undefined) this.#deadlineAt = this.#startedAt + timeoutMs;
    if (policy.streamIdleTimeoutMs > 0) {
      this.#idleTimeoutMs = policy.streamIdleTimeoutMs;
      this.#idleCheckAt = this.#startedAt + policy.streamIdleTimeoutMs / IDLE_CHECKS;
    }
    // Once per call, retries included; only clusters with a hashKey compute anything.
    this.#hash = cluster.requestHash(headers, this.#clientAddress);
    const affinity = cluster.affinity;
    if (affinity !== undefined) {
      const id = affinity.idOf(headers, this.#clientAddress);
      if (id !== undefined) {
        this.#affinity = affinity;
        this.#affinityId = id;
        affinity.opened(id);
      }
    }
    this.#arm();
    this.#pick();
  }

  /** Picks a backend, waiting for one while none is ready, then opens the backend stream. */
  #pick(): void {
    const cluster = this.#cluster!;
    const previous = this.#backend;
    let pick: PickResult;
    if (previous !== undefined) pick = cluster.pickAnother(previous, this);
    else if (this.#affinityId === undefined) pick = cluster.pick(this);
    else {
      // The id's owner: at once from the cache, or once the control plane answers.
      const owned = this.#affinity!.pick(this.#affinityId, cluster, this, this.#deadlineAt);
      if (owned instanceof Promise) {
        owned.then((result) => this.#affinityPicked(result));
        return;
      }
      pick = owned;
    }
    this.#usePick(pick);
  }

  /** The affinity table answered for the call's id (or its wait ran out). */
  #affinityPicked(pick: PickResult): void {
    if (this.#decided) return; // the client cancelled, or the deadline passed
    try {
      this.#usePick(pick);
    } catch (error) {
      this.#internalError(error);
    }
  }

  /** Opens the backend stream for `pick`, or waits for one while the picker queues. */
  #usePick(pick: PickResult): void {
    const cluster = this.#cluster!;
    if (pick.kind !== "queue") {
      this.#picked(pick);
      return;
    }
    // While no backend is ready the call waits: up to its deadline, which then ends it with
    // DEADLINE_EXCEEDED from the call's timer; without one, up to the cluster's
    // waitForReadyTimeout, which ends it with UNAVAILABLE, as gRPC's pickers fail it.
    if (!cluster.limits.admitPending()) {
      this.#overflow("maxPendingCalls", cluster.config.limits.maxPendingCalls);
      return;
    }
    this.#pending = true;
    this.#pickWait = new AbortController();
    const waitMs = this.#deadlineAt === 0 ? cluster.config.waitForReadyTimeout : MAX_TIMER_MS;
    cluster.waitForPick(waitMs, this.#pickWait.signal, this)
      .then((result) => {
        this.#pickWait = undefined;
        this.#releasePending();
        if (this.#decided) return; // the client cancelled, or the deadline passed
        try {
          this.#picked(result);
        } catch (error) {
          this.#internalError(error);
        }
      });
  }

  /** Opens the backend stream for a completed pick, or answers why there is none. */
  #picked(pick: PickResult): void {
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
    if (this.#deadlineAt !== 0) {
      const remainingMs = this.#deadlineAt - Date.now();
      if (remainingMs <= 0) {
        this.#deadlineExceeded();
        return;
      }
      // The backend gets the time left (PROTOCOL-HTTP2 "Timeout"), not what the client asked.
      setHeader(headers, "grpc-timeout", formatGrpcTimeout(remainingMs));
    }
    const rewrite = this.#route!.rewrite;
    if (rewrite?.authorityIsBackend) setHeader(headers, ":authority", backend.address);
    if (this.#configuredRetries > 0) {
      setHeader(headers, PREVIOUS_ATTEMPTS, String(this.#configuredRetries));
    }
    const upstream = backend.upstream.openStream(headers, this);
    if (upstream === undefined) {
      // Nothing was sent: the backend lost its connection between the pick and now.
      const reason = `backend ${backend.address} has no ready connection`;
      if (this.#retryUnprocessed(false)) return;
      this.#backendFailure = true;
      this.#finishByProxy(GrpcStatus.UNAVAILABLE, `cluster ${cluster.name}: ${reason}`);
      return;
    }
    this.#upstream = upstream;
    this.#attempts++;
    // A first attempt opens at arrival, give or take the pick: no second clock read for it.
    backend.trackStream(this, this.#attempts === 1 ? this.#startedMono : performance.now());
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
    if (this.#requestEnded) this.#startTryTimer();
  }

  /**
   * Starts the attempt's `perTryTimeout` once its request is complete, as Envoy's does, so a
   * long upload to a healthy backend is not taken for a slow answer.
   */
  #startTryTimer(): void {
    const perTryMs = this.#route?.policy.retry?.perTryTimeoutMs ?? 0;
    if (perTryMs === 0 || this.#responded || this.#upstream === undefined) return;
    this.#tryDeadlineAt = Date.now() + perTryMs;
    this.#arm();
  }

  /** Keeps a copy of request data for a retry, while one is still possible. */
  #keepForReplay(chunk: Uint8Array): void {
    if (this.#replay === undefined) return;
    this.#replayBytes += chunk.length;
    if (this.#replayBytes > this.#route!.policy.retryBufferBytes) this.#replay = undefined;
    else this.#replay.push(chunk);
  }

  // --- StreamHandler: events of every stream -----------------------------------------------

  /** See {@link StreamHandler.onHeaders}. */
  onHeaders(stream: TransportStream, headers: HeaderList, endStream: boolean): void {
    this.#frames++;
    if (stream === this.#downstream) {
      // Request trailers: gRPC sends none, but HTTP allows them; they end the request.
      this.#requestEnded = true;
      if (this.#upstream === undefined) return;
      this.#upstream.sendTrailers(headers);
      this.#startTryTimer();
      return;
    }
    if (stream !== this.#upstream) return; // an attempt given up on
    if (endStream) this.#responseEnded = true;
    if (this.#decided) return;
    if (!endStream) {
      // Response headers commit the call (gRFC A6): no retry of either kind from here on.
      if (this.#context.timesFirstByte) this.#answeredMono = performance.now();
      this.#responded = true;
      this.#replay = undefined;
      this.#tryDeadlineAt = 0;
      this.#sendResponseHeaders(headers, false);
      return;
    }
    const status = grpcStatusOf(headers);
    if (
      !this.#responded &&
      this.#retryOnStatus(status, headers, status === GrpcStatus.UNAVAILABLE)
    ) {
      this.#abandonAttempt(stream);
      return;
    }
    this.#decided = true;
    this.#origin = "backend";
    this.#grpcStatus = status;
    this.#trailers = headers;
    if (!this.#responded && this.#context.timesFirstByte) this.#answeredMono = performance.now();
    this.#backendFailure = status === GrpcStatus.UNAVAILABLE;
    if (this.#responded) {
      this.#downstream.sendTrailers(headers);
    } else {
      // A trailers-only response travels as the only HEADERS frame, END_STREAM set.
      this.#sendResponseHeaders(headers, true);
    }
  }

  /** See {@link StreamHandler.onData}. */
  onData(stream: TransportStream, data: Uint8Array, endStream: boolean): void {
    this.#frames++;
    if (stream === this.#downstream) {
      this.#bytesReceived += data.length;
      if (endStream) this.#requestEnded = true;
      const upstream = this.#upstream;
      if (upstream !== undefined) {
        if (this.#replay !== undefined && data.length > 0) this.#keepForReplay(data.slice());
        upstream.sendData(data, endStream);
        if (endStream) this.#startTryTimer();
      } else if (this.#decided) {
        stream.consume(data.length);
      } else if (data.length > 0) {
        // Not credited until it goes upstream: the client's window bounds this buffer.
        if (this.#attempts === 0) (this.#early ??= []).push(data.slice());
        else {
          // Between attempts: the next one replays it, unless the request outgrew the buffer.
          this.#keepForReplay(data.slice());
          if (this.#replay === undefined) this.#retryAbandoned();
        }
      }
      return;
    }
    if (stream !== this.#upstream) {
      stream.consume(data.length);
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
    if (stream !== this.#upstream) return;
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
    else if (stream === this.#upstream) this.#upstreamClosed(stream, cause);
  }

  /** See {@link TimerEntry.onTimer}: the earliest of the call's timers is due. */
  onTimer(now: number): void {
    try {
      this.#onTimer(now);
    } catch (error) {
      this.#internalError(error);
    }
  }

  #onTimer(now: number): void {
    if (this.#decided) return;
    if (this.#deadlineAt !== 0 && now >= this.#deadlineAt) {
      this.#deadlineExceeded();
      return;
    }
    if (this.#idleTimeoutMs !== 0 && now >= this.#idleCheckAt) {
      if (this.#frames !== this.#framesAtCheck) {
        this.#framesAtCheck = this.#frames;
        this.#silentChecks = 0;
      } else if (++this.#silentChecks >= IDLE_CHECKS) {
        this.#idleTimeout();
        return;
      }
      this.#idleCheckAt = now + this.#idleTimeoutMs / IDLE_CHECKS;
    }
    if (this.#tryDeadlineAt !== 0 && now >= this.#tryDeadlineAt) {
      this.#perTryTimeout();
    } else if (this.#retryAt !== 0 && now >= this.#retryAt) {
      this.#retryAt = 0;
      this.#pick();
    }
    if (!this.#decided) this.#arm();
  }

  /** Queues the call's timer entry for the earliest of its timers (none: out of the queue). */
  #arm(): void {
    let at = this.#deadlineAt || Infinity;
    if (this.#idleTimeoutMs !== 0) at = Math.min(at, this.#idleCheckAt);
    if (this.#tryDeadlineAt !== 0) at = Math.min(at, this.#tryDeadlineAt);
    if (this.#retryAt !== 0) at = Math.min(at, this.#retryAt);
    if (at === Infinity) timers.cancel(this);
    else if (at !== this.timerAt || this.timerIndex < 0) timers.schedule(this, at);
  }

  // --- retries --------------------------------------------------------------------------------

  /** Takes a slot of the cluster's retry budget for this call's first retry. */
  #admitRetry(): boolean {
    if (this.#retrying) return true;
    if (this.#budgetRefused) return false;
    const cluster = this.#cluster!;
    if (!cluster.limits.admitRetry()) {
      this.#budgetRefused = true;
      cluster.counters.overflow.retryBudget++;
      return false;
    }
    this.#retrying = true;
    return true;
  }

  /**
   * Retries at once, on another backend where there is one, an attempt no backend processed:
   * above a GOAWAY's last stream id, refused with REFUSED_STREAM (RFC 9113 §8.7), queued on a
   * connection that never came up, or never handed to the socket. True when it did.
   *
   * Only attempts a backend `refused` draw on the retry budget: REFUSED_STREAM is how an
   * overloaded backend sheds load, and retrying every refusal would multiply that load. An
   * attempt that never left the proxy, or that a backend's orderly GOAWAY left unprocessed,
   * is no such signal: a restarting backend ends many at once, and none may be refused for
   * it. These are bounded by `transparentRetry.maxAttempts` alone.
   */
  #retryUnprocessed(refused: boolean): boolean {
    const policy = this.#route!.policy;
    if (
      this.#responded || this.#replay === undefined ||
      this.#transparentRetries + 1 >= policy.transparentAttempts ||
      (refused && !this.#admitRetry())
    ) return false;
    this.#transparentRetries++;
    this.#cluster!.counters.retries.transparent++;
    this.#pick();
    return true;
  }

  /**
   * A status the backend (or a failed attempt) produced before the call committed: retried
   * after a backoff when the route's `retryOn` lists it (gRFC A6). True when it will be.
   */
  #retryOnStatus(
    status: number,
    trailers: HeaderList | undefined,
    backendFailed: boolean,
  ): boolean {
    const retry = this.#route!.policy.retry;
    if (retry === undefined || ((retry.retryOn >>> status) & 1) === 0) return false;
    let pushbackMs: number | undefined;
    if (trailers !== undefined) {
      for (let i = 0; i < trailers.length; i += 2) {
        if (trailers[i] !== RETRY_PUSHBACK) continue;
        // A6: a pushback that is not a non-negative integer means the server says "stop".
        if (!PUSHBACK_PATTERN.test(trailers[i + 1])) return false;
        pushbackMs = Number(trailers[i + 1]);
      }
    }
    return this.#scheduleRetry(retry.maxAttempts, backendFailed, pushbackMs);
  }

  /**
   * Plans the next configured attempt after the backoff; false when none is allowed. A
   * `backendFailed` attempt still counts against its backend for outlier detection.
   */
  #scheduleRetry(maxAttempts: number, backendFailed: boolean, pushbackMs?: number): boolean {
    if (
      this.#replay === undefined || this.#configuredRetries + 1 >= maxAttempts ||
      !this.#admitRetry()
    ) return false;
    this.#configuredRetries++;
    this.#cluster!.counters.retries.configured++;
    if (backendFailed) (this.#failedAttempts ??= []).push(this.#backend!.address);
    const delayMs = pushbackMs ??
      retryBackoffMs(this.#route!.policy.retry!, this.#configuredRetries);
    this.#retryAt = Math.max(1, Date.now() + delayMs);
    this.#tryDeadlineAt = 0;
    this.#arm();
    return true;
  }

  /** Gives up on the current attempt's stream: its later events are ignored. */
  #abandonAttempt(upstream: TransportStream): void {
    this.#upstream = undefined;
    this.streamBackend?.untrackStream(this);
    this.#cancelUnlessEnded(upstream);
    this.#responseEnded = false;
  }

  #perTryTimeout(): void {
    const upstream = this.#upstream;
    this.#tryDeadlineAt = 0;
    if (upstream === undefined || this.#responded) return;
    const retry = this.#route!.policy.retry!;
    if (this.#scheduleRetry(retry.maxAttempts, true)) {
      this.#abandonAttempt(upstream);
      return;
    }
    this.#finishByProxy(
      GrpcStatus.DEADLINE_EXCEEDED,
      `cluster ${this.#cluster!.name}: backend ${this.#backend!.address} sent no response ` +
        `within perTryTimeout (${retry.perTryTimeoutMs}ms) on attempt ${this.#attempts}`,
    );
    this.#cancelUnlessEnded(upstream);
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
    // otherwise stay open.
    const upstream = this.#upstream;
    if (upstream !== undefined) this.#cancelUnlessEnded(upstream);
    this.#pickWait?.abort();
    this.#releasePending();
    this.#report();
  }

  /**
   * Cancels a backend stream unless both sides ended it: then it closes on its own, and a
   * reset would cost the backend a RST_STREAM per call, which its rapid-reset guard counts.
   */
  #cancelUnlessEnded(upstream: TransportStream): void {
    if (!(this.#responseEnded && this.#requestEnded && upstream.queuedBytes === 0)) {
      upstream.reset(CANCEL);
    }
  }

  #upstreamClosed(upstream: TransportStream, cause: CloseCause): void {
    this.#upstream = undefined;
    this.streamBackend?.untrackStream(this);
    if (this.#decided || cause === CloseCause.DONE) {
      if (!this.#decided) this.#endedWithoutTrailers();
      return;
    }
    const notSent = cause === CloseCause.NOT_SENT;
    const refused = cause === CloseCause.PEER_RESET && upstream.resetCode === REFUSED_STREAM;
    if (
      (notSent || refused || cause === CloseCause.UNPROCESSED) && this.#retryUnprocessed(refused)
    ) return;
    const backend = this.#backend!.address;
    const cluster = this.#cluster!.name;
    if (cause === CloseCause.PEER_RESET) {
      const code = upstream.resetCode;
      // NO_ERROR before the trailers still leaves the call without a status: the client
      // sees it as a cancel, and the record says what the client saw.
      const forwarded = code === NO_ERROR ? CANCEL : code;
      const status = statusForReset(forwarded);
      const failed = code !== CANCEL && code !== NO_ERROR;
      // A backend that resets a call it never answered dropped it, whatever the code (grpc-js
      // cancels every open stream when it is stopped): for retryOn that is UNAVAILABLE, as a
      // lost connection is, and Envoy's `reset` retry condition sees it the same way.
      if (!this.#responded && this.#retryOnStatus(GrpcStatus.UNAVAILABLE, undefined, failed)) {
        return;
      }
      this.#decided = true;
      this.#origin = "backend_reset";
      this.#resetCode = forwarded;
      this.#grpcStatus = status;
      this.#backendFailure = failed;
      this.#downstream.reset(forwarded);
      return;
    }
    const processed = cause === CloseCause.CONNECTION_LOST || cause === CloseCause.LOCAL_RESET;
    if (!this.#responded && this.#retryOnStatus(GrpcStatus.UNAVAILABLE, undefined, processed)) {
      return;
    }
    if ((cause === CloseCause.UNPROCESSED || notSent) && !this.#responded) {
      // The backend never saw the call (GOAWAY, or its connection never came up): the
      // client may retry it safely, and gRPC clients do so for REFUSED_STREAM.
      this.#decided = true;
      this.#origin = "proxy";
      this.#resetCode = REFUSED_STREAM;
      this.#grpcStatus = GrpcStatus.UNAVAILABLE;
      this.#downstream.reset(REFUSED_STREAM);
      return;
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

  #endedWithoutTrailers(): void {
    this.#backendFailure = true;
    this.#finishByProxy(
      GrpcStatus.INTERNAL,
      `cluster ${this.#cluster!.name}: backend ${
        this.#backend!.address
      } ended the stream without trailers`,
    );
    const upstream = this.#upstream;
    if (upstream !== undefined) this.#cancelUnlessEnded(upstream);
  }

  #deadlineExceeded(): void {
    if (this.#decided) return;
    const backend = this.#backend;
    this.#finishByProxy(
      GrpcStatus.DEADLINE_EXCEEDED,
      `deadline exceeded after ${Date.now() - this.#startedAt}ms (${
        backend ? `backend ${backend.address}` : `waiting for a backend of ${this.#cluster!.name}`
      })`,
    );
    this.#pickWait?.abort();
    // Decided first, so the reset's own close event is not taken for a backend failure.
    const upstream = this.#upstream;
    if (upstream !== undefined) upstream.reset(CANCEL);
  }

  /** Envoy's stream idle timeout: no frame either way for `streamIdleTimeout`. */
  #idleTimeout(): void {
    this.#finishByProxy(
      GrpcStatus.UNAVAILABLE,
      `stream idle timeout: no frame either way for ${this.#idleTimeoutMs}ms`,
    );
    this.#pickWait?.abort();
    const upstream = this.#upstream;
    if (upstream !== undefined) upstream.reset(CANCEL);
  }

  /**
   * Ends the call for its listener with a status the proxy produces (UNAVAILABLE when the
   * client connection closes after `http2.maxConnectionAgeGrace`), and cancels the backend
   * stream. A call already decided is left alone.
   */
  endFromListener(code: number, message: string): void {
    if (this.#decided) return;
    try {
      this.#finishByProxy(code, message);
      this.#pickWait?.abort();
      this.#upstream?.reset(CANCEL);
    } catch (error) {
      this.#internalError(error);
    }
  }

  /**
   * See {@link TrackedStream.shed}: the rebalancer ends the call with UNAVAILABLE (which
   * clients retry, reconnecting through the picker) and cancels the backend stream.
   */
  shed(message: string): void {
    this.endFromListener(GrpcStatus.UNAVAILABLE, message);
    this.streamBackend?.untrackStream(this);
  }

  /** The client sent more than `retryBufferBytes` while a retry waited: it cannot be replayed. */
  #retryAbandoned(): void {
    this.#finishByProxy(
      GrpcStatus.UNAVAILABLE,
      `cluster ${this.#cluster!.name}: retry abandoned: the request outgrew retryBufferBytes ` +
        `(${this.#route!.policy.retryBufferBytes}) after attempt ${this.#attempts} failed`,
    );
    this.#pickWait?.abort();
  }

  /** A cluster limit refused the call: it fails at once, naming the limit. */
  #overflow(limit: LimitName, value: number): void {
    const cluster = this.#cluster!;
    cluster.counters.overflow[limit]++;
    this.#finishByProxy(
      GrpcStatus.UNAVAILABLE,
      `cluster ${cluster.name}: ${limit} (${value}) reached`,
    );
  }

  /** Ends the call with a status the proxy produced itself. */
  #finishByProxy(code: number, message: string): void {
    this.#decided = true;
    this.#origin = "proxy";
    this.#grpcStatus = code;
    this.#proxyMessage = message;
    if (!this.#responded) {
      this.#sendResponseHeaders(
        [":status", "200", "content-type", "application/grpc", ...statusTrailers(code, message)],
        true,
      );
    } else {
      this.#downstream.sendTrailers(statusTrailers(code, message));
    }
  }

  /** Sends the response headers (or a trailers-only response), with the call's request id. */
  #sendResponseHeaders(headers: HeaderList, endStream: boolean): void {
    this.#responded = true;
    // Replaced, not added: a backend that echoes the request id must not make it a list.
    if (this.#requestId !== undefined) setHeader(headers, REQUEST_ID, this.#requestId);
    this.#downstream.sendHeaders(headers, endStream);
  }

  #rejectNonGrpc(method: string, contentType: string): void {
    this.#decided = true;
    this.#origin = "proxy";
    this.#grpcStatus = GrpcStatus.INTERNAL;
    this.#responded = true;
    const isPost = method === "POST";
    const message = isPost
      ? `unsupported content-type ${JSON.stringify(contentType)}`
      : "gRPC requires POST";
    this.#proxyMessage = message;
    this.#downstream.sendHeaders([
      ":status",
      isPost ? "415" : "405",
      "content-type",
      "application/grpc",
      ...statusTrailers(GrpcStatus.INTERNAL, message),
    ], true);
  }

  #releasePending(): void {
    if (!this.#pending) return;
    this.#pending = false;
    this.#cluster!.limits.releasePending();
  }

  #report(): void {
    const durationMs = performance.now() - this.#startedMono;
    if (this.#affinityId !== undefined) this.#affinity!.closed(this.#affinityId);
    const cluster = this.#cluster;
    if (cluster) {
      const counters = cluster.counters;
      counters.calls++;
      if (this.#grpcStatus !== GrpcStatus.OK) counters.errors++;
      counters.durations[durationBucket(durationMs / 1000)]++;
      if (this.#admitted) cluster.limits.releaseCall();
      if (this.#retrying) cluster.limits.releaseRetry();
    }
    // The call is over, whether or not its backend stream has closed yet.
    this.streamBackend?.untrackStream(this);
    const backend = this.#backend;
    if (backend) {
      backend.counters.bytesReceived += this.#bytesReceived;
      backend.counters.bytesSent += this.#bytesSent;
      if (this.#backendFailure) backend.counters.failures++;
    }
    const observers = this.#context.observers;
    const span = this.#span;
    if (observers.length === 0 && span === undefined) return;
    const trailers = this.#trailers;
    const message = this.#proxyMessage ??
      (trailers === undefined ? undefined : headerValue(trailers, "grpc-message"));
    const record = {
      protocol: this.#context.protocol,
      startedAt: this.#startedAt,
      durationMs,
      upstreamDurationMs: this.#answeredMono === 0
        ? undefined
        : this.#answeredMono - this.#startedMono,
      method: this.#path,
      cluster: cluster?.name,
      backend: backend?.address,
      grpcStatus: this.#grpcStatus,
      grpcMessage: message === undefined || this.#proxyMessage !== undefined
        ? message
        : decodeGrpcMessage(message),
      resetCode: this.#resetCode,
      origin: this.#origin,
      backendFailure: this.#backendFailure,
      failedAttempts: this.#failedAttempts,
      retries: this.#transparentRetries + this.#configuredRetries,
      bytesReceived: this.#bytesReceived,
      bytesSent: this.#bytesSent,
      clientAddress: this.#clientAddress,
      clientIdentity: this.#clientIdentity,
      requestHeaders: this.#requestHeaders,
      traceId: span?.traceId,
    };
    span?.end(record);
    for (const observe of observers) observe(record);
  }
}

/** The `grpc-status` of a trailer list, as {@link parseGrpcStatus} reads it. */
function grpcStatusOf(headers: HeaderList): number {
  return parseGrpcStatus(headerValue(headers, "grpc-status"));
}
