/**
 * Fakes for driving one {@link ProxiedCall} in process, the way grpc-go tests balancers
 * against a fake host: a {@link FakeStream} for each side of the call (it records what the
 * relay sends and lets a test deliver what the peer sends, flush held data, reset or close
 * it), a {@link FakeBackend} whose `upstream.openStream` creates them, and a
 * {@link FakeCluster} whose pick results a test can queue and whose pick waits it resolves.
 * {@link relayEnv} wires them to a real {@link Router} (so the route's policy is
 * `callPolicy(route, cluster)`), a real {@link CallLimits} in its own `SharedArrayBuffer` and
 * an observer that keeps every {@link CallRecord}.
 *
 * The fakes follow `src/h2/connection.ts` where the relay can tell: a stream closes once
 * both sides ended (a server stream also when its response ends first), closing clears the
 * handler before `onClose`, data held for flow control is flushed in order and dropped by a
 * reset, and sends after the local end or the close are dropped (kept in `ignored`).
 *
 * The fakes stand in for classes with private state, so they are cast to those classes in
 * one place only: {@link asUpstreamCluster} and {@link asUpstreamBackend}.
 * @module
 */
import { concatBytes } from "../../src/h2/bytes.ts";
import type { z } from "zod";
import type { PickResult } from "../../src/balancer/types.ts";
import { type ClusterConfig, type Config, configSchema } from "../../src/config/schema.ts";
import type { CallRecord } from "../../src/proxy/call_record.ts";
import { type CallContext, ProxiedCall } from "../../src/proxy/proxied_call.ts";
import { Router } from "../../src/route/router.ts";
import {
  CloseCause,
  type HeaderList,
  type StreamHandler,
  type TransportStream,
} from "../../src/transport/stream.ts";
import { CallLimits, limitsMemory } from "../../src/upstream/call_limits.ts";
import {
  type BackendCounters,
  backendCounters,
  type TrackedStream,
  UpstreamBackend,
} from "../../src/upstream/upstream_backend.ts";
import type { Upstream } from "../../src/upstream/upstream.ts";
import type { UpstreamCluster } from "../../src/upstream/upstream_cluster.ts";
import { type ClusterCounters, clusterCounters } from "../../src/dataplane/stats.ts";

// --- streams --------------------------------------------------------------------------------

/** Which end of the stream the proxy is: `server` for the client's call, `client` upstream. */
export type StreamRole = "server" | "client";

/** Something the relay sent on a stream (or tried to). */
export type SentFrame =
  | { readonly kind: "headers"; readonly headers: HeaderList; readonly endStream: boolean }
  | { readonly kind: "data"; readonly data: Uint8Array; readonly endStream: boolean }
  | { readonly kind: "trailers"; readonly trailers: HeaderList }
  | { readonly kind: "reset"; readonly code: number };

/** A {@link TransportStream} that records the relay's sends and plays the peer's part. */
export class FakeStream implements TransportStream {
  /** See {@link TransportStream.handler}; cleared when the stream closes. */
  handler: StreamHandler | undefined;
  /** See {@link TransportStream.resetCode}. */
  resetCode = 0;
  /** See {@link TransportStream.closeReason}. */
  closeReason = "";
  /** While set, data the relay sends waits (counted in {@link queuedBytes}) for {@link flush}. */
  holdFlushes = false;
  /** What the relay sent, in order. */
  readonly sent: SentFrame[] = [];
  /** What the relay sent after its side ended or the stream closed (an engine drops it). */
  readonly ignored: SentFrame[] = [];
  /** Bytes the relay credited back with {@link consume}. */
  consumed = 0;
  /** Bytes the peer sent with {@link receiveData}. */
  received = 0;
  /** The relay's side ended (END_STREAM sent). */
  localEnded = false;
  /** The peer's side ended. */
  remoteEnded: boolean;
  /** Why the stream closed; `undefined` while open. */
  closeCause: CloseCause | undefined;
  /** Epoch ms of the close. */
  closedAt = 0;
  #held = 0;

  /**
   * A stream named `name` (for messages), opened with `headers` (the request headers the
   * relay sent or received). `remoteEnded` is true for a request that came with END_STREAM.
   */
  constructor(
    readonly name: string,
    readonly role: StreamRole,
    readonly headers: HeaderList,
    handler: StreamHandler | undefined,
    remoteEnded = false,
  ) {
    this.handler = handler;
    this.remoteEnded = remoteEnded;
  }

  /** See {@link TransportStream.queuedBytes}. */
  get queuedBytes(): number {
    return this.#held;
  }

  /** True once the stream closed. */
  get closed(): boolean {
    return this.closeCause !== undefined;
  }

  // --- TransportStream: what the relay does ---------------------------------------------

  /** See {@link TransportStream.sendHeaders}. */
  sendHeaders(headers: HeaderList, endStream: boolean): void {
    if (!this.#accept({ kind: "headers", headers: [...headers], endStream })) return;
    if (endStream) {
      this.localEnded = true;
      this.#afterLocalEnd();
    }
  }

  /** See {@link TransportStream.sendData}. */
  sendData(data: Uint8Array, endStream: boolean): void {
    if (!this.#accept({ kind: "data", data: data.slice(), endStream })) return;
    if (endStream) this.localEnded = true;
    if (this.holdFlushes || this.#held > 0) {
      this.#held += data.length;
      return;
    }
    // As the engine's fast path: the end first (which may close the stream), then the credit.
    if (endStream) this.#afterLocalEnd();
    if (data.length > 0) this.handler?.onFlushed(this, data.length);
  }

  /** See {@link TransportStream.sendTrailers}. */
  sendTrailers(trailers: HeaderList): void {
    if (!this.#accept({ kind: "trailers", trailers: [...trailers] })) return;
    this.localEnded = true;
    if (this.#held === 0) this.#afterLocalEnd();
  }

  /** See {@link TransportStream.reset}. */
  reset(code: number): void {
    if (this.closed) {
      this.ignored.push({ kind: "reset", code });
      return;
    }
    this.sent.push({ kind: "reset", code });
    this.resetCode = code;
    this.closeReason = `reset with code ${code}`;
    this.#close(CloseCause.LOCAL_RESET);
  }

  /** See {@link TransportStream.consume}. */
  consume(bytes: number): void {
    if (bytes > 0) this.consumed += bytes;
  }

  // --- the peer's part ---------------------------------------------------------------------

  /** The peer sends a HEADERS block (response headers, trailers, request trailers). */
  receiveHeaders(headers: HeaderList, endStream: boolean): void {
    this.#assertOpen("receive headers");
    if (endStream) this.remoteEnded = true;
    this.handler?.onHeaders(this, headers, endStream);
    if (endStream) this.#closeIfDone();
  }

  /** The peer sends DATA. */
  receiveData(data: Uint8Array, endStream: boolean): void {
    this.#assertOpen("receive data");
    this.received += data.length;
    if (endStream) this.remoteEnded = true;
    this.handler?.onData(this, data, endStream);
    if (endStream) this.#closeIfDone();
  }

  /** The peer resets the stream with `code`. */
  peerReset(code: number): void {
    this.#assertOpen("be reset by the peer");
    this.resetCode = code;
    this.closeReason = `peer reset the stream with code ${code}`;
    this.#close(CloseCause.PEER_RESET);
  }

  /** The stream closes for `cause` (a lost connection, a GOAWAY, a stream never sent). */
  fail(cause: CloseCause, reason: string): void {
    this.#assertOpen("fail");
    this.closeReason = reason;
    this.#close(cause);
  }

  /** Window opens: `bytes` (default all) of the held data go out, and the relay hears so. */
  flush(bytes: number = this.#held): void {
    if (bytes > this.#held) throw new Error(`${this.name}: only ${this.#held} bytes held`);
    this.#held -= bytes;
    if (bytes > 0) this.handler?.onFlushed(this, bytes);
    if (this.#held === 0 && this.localEnded) this.#afterLocalEnd();
  }

  // --- what the relay sent, for assertions -------------------------------------------------

  /** The header blocks sent (response headers, trailers-only responses). */
  headersSent(): HeaderList[] {
    const blocks: HeaderList[] = [];
    for (const frame of this.sent) if (frame.kind === "headers") blocks.push(frame.headers);
    return blocks;
  }

  /** The DATA frames sent, in order. */
  dataSent(): { readonly data: Uint8Array; readonly endStream: boolean }[] {
    const frames: { data: Uint8Array; endStream: boolean }[] = [];
    for (const frame of this.sent) if (frame.kind === "data") frames.push(frame);
    return frames;
  }

  /** Every byte sent, concatenated. */
  bytesSent(): Uint8Array {
    return concatBytes(...this.dataSent().map((frame) => frame.data));
  }

  /** The RST_STREAM codes sent. */
  resetsSent(): number[] {
    const codes: number[] = [];
    for (const frame of this.sent) if (frame.kind === "reset") codes.push(frame.code);
    return codes;
  }

  #accept(frame: SentFrame): boolean {
    if (this.closed || this.localEnded) {
      this.ignored.push(frame);
      return false;
    }
    this.sent.push(frame);
    return true;
  }

  /** Our END_STREAM went out: the stream closes, or (server) stops the request (§8.1). */
  #afterLocalEnd(): void {
    if (this.closed) return;
    if (this.remoteEnded || this.role === "server") this.#close(CloseCause.DONE);
  }

  #closeIfDone(): void {
    if (this.localEnded && this.#held === 0 && !this.closed) this.#close(CloseCause.DONE);
  }

  #close(cause: CloseCause): void {
    if (this.closed) return;
    this.closeCause = cause;
    this.closedAt = Date.now();
    this.#held = 0;
    const handler = this.handler;
    this.handler = undefined;
    handler?.onClose(this, cause);
  }

  #assertOpen(what: string): void {
    if (this.closed) throw new Error(`${this.name} is closed: it cannot ${what}`);
  }
}

// --- backend and cluster ----------------------------------------------------------------------

/** The part of an {@link UpstreamBackend} the relay uses; its streams are {@link FakeStream}s. */
export class FakeBackend {
  /** See {@link UpstreamBackend.counters}. */
  readonly counters: BackendCounters = backendCounters();
  /**
   * A real {@link UpstreamBackend}'s list of open streams (its pool is never used), which
   * {@link trackStream} adds the relay's attempts to: empty again once every call ended.
   */
  readonly streamList: UpstreamBackend;
  /** Every stream the relay opened, in order. */
  readonly streams: FakeStream[] = [];
  /**
   * Runs in a microtask after each stream opens, so a test can answer an attempt as soon as
   * it exists. Never inside `openStream`: an engine delivers no event before it returns.
   */
  onOpen: ((stream: FakeStream, index: number) => void) | undefined;
  /** See {@link UpstreamBackend.upstream}: only `openStream`. */
  readonly upstream: {
    openStream(headers: HeaderList, handler: StreamHandler): TransportStream | undefined;
  };

  constructor(readonly address: string) {
    this.streamList = new UpstreamBackend(
      { address, drained: false, health: "unknown", ejected: false, reason: undefined },
      {} as Upstream,
    );
    this.upstream = {
      openStream: (headers, handler) => {
        const index = this.streams.length;
        // Copied: the relay rewrites its header list in place for the next attempt.
        const stream = new FakeStream(`upstream ${index}`, "client", [...headers], handler);
        this.streams.push(stream);
        const onOpen = this.onOpen;
        if (onOpen !== undefined) queueMicrotask(() => onOpen(stream, index));
        return stream;
      },
    };
  }

  /** See {@link UpstreamBackend.trackStream}: into {@link streamList}. */
  trackStream(stream: TrackedStream, now: number): void {
    this.streamList.trackStream(stream, now);
  }
}

/** A call waiting in {@link FakeCluster.waitForPick}. */
export interface PickWaiter {
  /** The wait the relay asked for. */
  readonly timeoutMs: number;
  /** The relay's abort signal. */
  readonly signal: AbortSignal;
  /** Ends the wait with `result` (the first result wins, as a promise settles once). */
  resolve(result: PickResult): void;
}

/**
 * The part of an {@link UpstreamCluster} the relay uses. Picks return its one backend unless
 * a test queued other results with {@link queuePick}; pick waits never time out on their own
 * (a test resolves them, or the relay aborts them).
 */
export class FakeCluster {
  /** See {@link UpstreamCluster.name}. */
  readonly name: string;
  /** See {@link UpstreamCluster.counters}. */
  readonly counters: ClusterCounters = clusterCounters();
  /** Every pick, as `pick` or `pickAnother <previous address>`. */
  readonly pickLog: string[] = [];
  /** Every pick wait, in order. */
  readonly waiters: PickWaiter[] = [];
  readonly #queued: PickResult[] = [];

  constructor(
    name: string,
    readonly config: ClusterConfig,
    readonly limits: CallLimits,
    readonly backend: FakeBackend,
  ) {
    this.name = name;
  }

  /** A completed pick of the backend. */
  complete(): PickResult {
    return { kind: "complete", subConn: asUpstreamBackend(this.backend) };
  }

  /** The next pick (of either kind) returns `result`; later ones the backend again. */
  queuePick(result: PickResult): void {
    this.#queued.push(result);
  }

  /** See {@link UpstreamCluster.requestHash}: the fake has no hash policy. */
  requestHash(): number | undefined {
    return undefined;
  }

  /** See {@link UpstreamCluster.pick}. */
  pick(): PickResult {
    this.pickLog.push("pick");
    return this.#queued.shift() ?? this.complete();
  }

  /** See {@link UpstreamCluster.pickAnother}. */
  pickAnother(previous: UpstreamBackend): PickResult {
    this.pickLog.push(`pickAnother ${previous.address}`);
    return this.#queued.shift() ?? this.complete();
  }

  /** See {@link UpstreamCluster.waitForPick}: an abort ends the wait with a failure. */
  waitForPick(timeoutMs: number, signal: AbortSignal): Promise<PickResult> {
    return new Promise((resolve) => {
      this.waiters.push({ timeoutMs, signal, resolve });
      signal.addEventListener(
        "abort",
        () => resolve({ kind: "fail", message: "the call was cancelled" }),
        { once: true },
      );
    });
  }

  /** See {@link UpstreamCluster.describeUnavailable}. */
  describeUnavailable(reason: string): string {
    return `cluster ${this.name}: ${reason}`;
  }
}

// The only casts: each fake has every member the relay uses of the class it stands in for.

/** The fake as the relay's cluster. */
export function asUpstreamCluster(cluster: FakeCluster): UpstreamCluster {
  return cluster as unknown as UpstreamCluster;
}

/** The fake as a cluster member (what a pick hands out). */
export function asUpstreamBackend(backend: FakeBackend): UpstreamBackend {
  return backend as unknown as UpstreamBackend;
}

// --- the environment of one test --------------------------------------------------------------

type ConfigInput = z.input<typeof configSchema>;
/** A cluster's settings as `config.json` spells them (its backends are the fake's). */
export type ClusterSettings = Omit<ConfigInput["clusters"][string], "backends" | "discovery">;
/** A route's settings as `config.json` spells them (it always routes to the fake cluster). */
export type RouteSettings = Omit<ConfigInput["routes"][number], "cluster">;

/** RST_STREAM CANCEL (RFC 9113 §7). */
const CANCEL = 0x8;

/** The method every call of these tests calls. */
export const METHOD = "/test.Echo/Call";

/** A gRPC request's headers, as the listener hands them to the relay. */
export const REQUEST_HEADERS: readonly string[] = [
  ":method",
  "POST",
  ":scheme",
  "http",
  ":path",
  METHOD,
  ":authority",
  "switchyard.test",
  "content-type",
  "application/grpc",
  "te",
  "trailers",
];

/** A backend's response headers. */
export const RESPONSE_HEADERS: readonly string[] = [
  ":status",
  "200",
  "content-type",
  "application/grpc",
];

/** A backend's trailers with `status`. */
export function trailers(status: number): HeaderList {
  return ["grpc-status", String(status)];
}

/** A backend's trailers-only response with `status` (sent with END_STREAM). */
export function trailersOnly(status: number): HeaderList {
  return [...RESPONSE_HEADERS, ...trailers(status)];
}

/** `length` bytes counting up from `first` (mod 256), so order and gaps show. */
export function bytes(first: number, length: number): Uint8Array {
  return Uint8Array.from({ length }, (_, i) => (first + i) & 0xff);
}

/** The cluster's limit slots in use, by name (the slot order of `call_limits.ts`). */
export interface LimitsInUse {
  readonly calls: number;
  readonly pending: number;
  readonly retries: number;
}

/** One started call: the relay and the client's stream. */
export interface StartedCall {
  readonly call: ProxiedCall;
  readonly downstream: FakeStream;
}

/** A fake cluster `a` with one fake backend, routed to by every call, and what it recorded. */
export interface RelayEnv {
  /** The parsed config: one cluster, one catch-all route. */
  readonly config: Config;
  readonly cluster: FakeCluster;
  readonly backend: FakeBackend;
  /** The listener's context the calls run in. */
  readonly context: CallContext;
  /** The limits' memory, as the data plane shares it between workers. */
  readonly memory: SharedArrayBuffer;
  /** Every finished call, in order. */
  readonly records: CallRecord[];
  /** Streams opened to the backend, in order. */
  readonly upstreams: FakeStream[];
  /** The client streams of the calls started, in order. */
  readonly downstreams: FakeStream[];
  /** The raw limit slots of this (only) worker: all zero when every call released its own. */
  limitSlots(): number[];
  /** The same, by name. */
  limitsInUse(): LimitsInUse;
  /**
   * Starts a call: the client's `headers` (default {@link REQUEST_HEADERS} plus `extraHeaders`),
   * with END_STREAM when `endStream`.
   */
  startCall(
    options?: { endStream?: boolean; extraHeaders?: readonly string[]; headers?: HeaderList },
  ): StartedCall;
  /**
   * Cancels (as the client would, RST_STREAM CANCEL) every call whose client stream is still
   * open, so that a failed test leaves no call and no timer behind; returns how many.
   */
  cancelOpenCalls(): number;
}

/** What {@link relayEnv} builds from. */
export interface RelayEnvOptions {
  /** The cluster's settings. */
  readonly cluster?: ClusterSettings;
  /** The route's settings. */
  readonly route?: RouteSettings;
}

/** Builds a {@link RelayEnv} from a cluster's and a route's settings. */
export function relayEnv(options: RelayEnvOptions = {}): RelayEnv {
  const config = configSchema.parse({
    clusters: { a: { ...options.cluster, backends: ["10.0.0.1:50051"] } },
    routes: [{ ...options.route, cluster: "a" }],
  });
  const clusterConfig = config.clusters.a;
  const memory = limitsMemory(1, 1);
  const limits = new CallLimits(memory, 0, 1, 1, {
    ...clusterConfig.limits,
    retryBudgetPercent: clusterConfig.retryBudget.percent,
    minRetryConcurrency: clusterConfig.retryBudget.minRetryConcurrency,
  });
  const backend = new FakeBackend("10.0.0.1:50051");
  const cluster = new FakeCluster("a", clusterConfig, limits, backend);
  const records: CallRecord[] = [];
  const context: CallContext = {
    router: new Router(config.routes, config.clusters, () => asUpstreamCluster(cluster)),
    observers: [(record) => records.push(record)],
    onStart: undefined,
    tracer: undefined,
    timesFirstByte: true,
    protocol: "grpc",
  };
  const downstreams: FakeStream[] = [];
  return {
    config,
    cluster,
    backend,
    context,
    memory,
    records,
    upstreams: backend.streams,
    downstreams,
    limitSlots: () => [...new Int32Array(memory)],
    limitsInUse: () => {
      const [calls, pending, retries] = new Int32Array(memory);
      return { calls, pending, retries };
    },
    startCall: ({ endStream = false, extraHeaders = [], headers } = {}) => {
      const requestHeaders = headers ?? [...REQUEST_HEADERS, ...extraHeaders];
      const downstream = new FakeStream(
        `downstream ${downstreams.length}`,
        "server",
        [...requestHeaders],
        undefined,
        endStream,
      );
      const call = new ProxiedCall(
        context,
        downstream,
        requestHeaders,
        endStream,
        "192.0.2.7:4000",
        undefined,
      );
      downstreams.push(downstream);
      call.start();
      return { call, downstream };
    },
    cancelOpenCalls: () => {
      const open = downstreams.filter((downstream) => !downstream.closed);
      for (const downstream of open) downstream.peerReset(CANCEL);
      return open.length;
    },
  };
}
