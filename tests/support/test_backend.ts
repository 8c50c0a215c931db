/**
 * A `@grpc/grpc-js` test backend and client for the `test.Test` service, with raw `Buffer`
 * messages (no .proto): the proxy never looks inside messages, so bytes in = bytes out is
 * the strongest check.
 *
 * Every response carries an `x-backend` header naming the backend that served it.
 * @module
 */
import "./raw_h2.ts"; // installs the GOAWAY guard before grpc-js opens any session
import type http2 from "node:http2";
import { grpcFrame, rawCall, type RawCallResult } from "./raw_h2.ts";
import { waitFor } from "./harness.ts";
import * as grpc from "@grpc/grpc-js";
import { HealthImplementation } from "grpc-health-check";

/** The full method paths of `test.Test`. */
export const TestMethod = {
  /**
   * Unary: answers with the request bytes, after `x-delay-ms` milliseconds when it is set.
   * `x-freeze-echoes: 1` calls {@link TestBackend.freezeEchoes} (for a backend in another
   * process) and answers at once.
   */
  echo: "/test.Test/Echo",
  /**
   * Client streaming: answers with all request messages concatenated; with `x-fail-code`, it
   * reads the whole request and then fails with that status, trailers-only.
   */
  collect: "/test.Test/Collect",
  /** Server streaming: `x-count` messages of `x-size` bytes, message i filled with i % 256. */
  stream: "/test.Test/Stream",
  /** Bidi streaming: echoes every message, ends when the client ends. */
  chat: "/test.Test/Chat",
  /** Unary: sends headers, then fails with {@link FAIL_STATUS}; `x-*` metadata → trailers. */
  fail: "/test.Test/Fail",
  /** Unary: fails at once with a trailers-only response. */
  failImmediately: "/test.Test/FailImmediately",
  /**
   * Unary: `x-*` request metadata comes back in the response headers and trailers, and
   * `x-authority` in both names the `:authority` the backend saw.
   */
  echoMetadata: "/test.Test/EchoMetadata",
  /** Unary: never answers; records its deadline and whether it was cancelled. */
  hang: "/test.Test/Hang",
  /**
   * Unary: fails with a trailers-only UNAVAILABLE unless the request carries
   * `grpc-previous-rpc-attempts` (a retry, gRFC A6); a retry succeeds and names the value in
   * an `x-previous-rpc-attempts` response header.
   */
  failFirst: "/test.Test/FailFirst",
} as const;

/** The status and details `Fail` ends with (details exercise percent-encoding). */
export const FAIL_STATUS: { readonly code: grpc.status; readonly details: string } = {
  code: grpc.status.FAILED_PRECONDITION,
  details: "custom failure: ünïcødé, 100% & more",
};

/** The status and details `FailImmediately` ends with. */
export const FAIL_IMMEDIATELY_STATUS: { readonly code: grpc.status; readonly details: string } = {
  code: grpc.status.RESOURCE_EXHAUSTED,
  details: "rejected before any message",
};

/** Message size limit for backends and clients: large enough for the 4 MiB test. */
export const MAX_MESSAGE_BYTES = 8 << 20;

const MESSAGE_LIMITS: grpc.ChannelOptions = {
  "grpc.max_receive_message_length": MAX_MESSAGE_BYTES,
  "grpc.max_send_message_length": MAX_MESSAGE_BYTES,
};

/** The (de)serializer of every `test.Test` message: raw bytes, unchanged. */
export const rawBytes = (bytes: Buffer): Buffer => bytes;

function method(path: string, requestStream: boolean, responseStream: boolean) {
  return {
    path,
    requestStream,
    responseStream,
    requestSerialize: rawBytes,
    requestDeserialize: rawBytes,
    responseSerialize: rawBytes,
    responseDeserialize: rawBytes,
  };
}

/** The `test.Test` service definition. */
export const testService: grpc.ServiceDefinition = {
  Echo: method(TestMethod.echo, false, false),
  Collect: method(TestMethod.collect, true, false),
  Stream: method(TestMethod.stream, false, true),
  Chat: method(TestMethod.chat, true, true),
  Fail: method(TestMethod.fail, false, false),
  FailImmediately: method(TestMethod.failImmediately, false, false),
  EchoMetadata: method(TestMethod.echoMetadata, false, false),
  Hang: method(TestMethod.hang, false, false),
  FailFirst: method(TestMethod.failFirst, false, false),
};

/** What the backend saw of one `Hang` call. */
export interface HangRecord {
  /** Milliseconds left until the call's deadline when it arrived; `undefined` without one. */
  readonly remainingMs: number | undefined;
  /** True once grpc-js reported the call cancelled. */
  cancelled: boolean;
}

/** A running test backend. */
export interface TestBackend {
  /** Name sent in every `x-backend` header. */
  readonly name: string;
  /** `127.0.0.1:port`. */
  readonly address: string;
  /** The bound port. */
  readonly port: number;
  /** Calls that reached a handler since the start or the last {@link resetCalls}. */
  calls(): number;
  /** Zeroes the call counter. */
  resetCalls(): void;
  /** Every `Hang` call so far. */
  readonly hangs: readonly HangRecord[];
  /**
   * The `grpc-previous-rpc-attempts` of every `FailFirst` call so far, in arrival order
   * (`undefined`: a first attempt).
   */
  readonly previousAttempts: readonly (string | undefined)[];
  /** `Echo` calls waiting out their `x-delay-ms` (or frozen), not cancelled. */
  delayedEchoes(): number;
  /**
   * From now on, `Echo` calls with `x-delay-ms` never answer: a test that kills the backend
   * then knows that the calls inside it have sent nothing.
   */
  freezeEchoes(): void;
  /**
   * Cancellations seen by `Stream` calls before they ended. (`Chat` cannot tell: grpc-js on
   * Deno reports a reset as a half-close first, so the handler ends normally.)
   */
  streamCancellations(): number;
  /**
   * Lets `Stream` calls sent with `x-hold: 1` continue: such calls send their first message,
   * then wait for this before sending the rest.
   */
  release(): void;
  /** Stops the server at once, cancelling calls in flight. */
  stop(): Promise<void>;
  /**
   * Stops gracefully, as a rolling restart does (grpc-js `tryShutdown`): GOAWAY on every
   * connection, and calls in flight finish.
   */
  shutDownGracefully(): Promise<void>;
}

function metadataPrefixed(source: grpc.Metadata, prefix: string): grpc.Metadata {
  const out = new grpc.Metadata();
  for (const key of Object.keys(source.getMap())) {
    if (!key.startsWith(prefix)) continue;
    for (const value of source.get(key)) out.add(key, value);
  }
  return out;
}

function numberHeader(metadata: grpc.Metadata, key: string, fallback: number): number {
  const value = metadata.get(key)[0];
  return value === undefined ? fallback : Number(value);
}

/** A test backend's TLS, as PEM text. */
export interface TestBackendTls {
  /** The server's certificate chain. */
  readonly cert: string;
  /** Its private key. */
  readonly key: string;
  /**
   * The CA that client certificates must chain to. Given even when no client certificate is
   * asked for: under Deno 2.9, grpc-js's `createSsl` without one serves no TLS at all.
   */
  readonly ca: string;
  /** Refuse clients without a certificate from `ca` (mTLS). */
  readonly requireClientCert?: boolean;
}

/** What {@link startTestBackend} serves besides `test.Test` in h2c. */
export interface TestBackendOptions {
  /** Serve TLS (ALPN `h2`) instead of h2c. */
  readonly tls?: TestBackendTls;
  /** Serve `grpc.health.v1.Health`, answering SERVING for the whole server. */
  readonly health?: boolean;
}

/** Starts a test backend on `127.0.0.1:port` (0 picks a free port). */
export async function startTestBackend(
  name: string,
  port = 0,
  options: TestBackendOptions = {},
): Promise<TestBackend> {
  const server = new grpc.Server(MESSAGE_LIMITS);
  let calls = 0;
  let streamCancellations = 0;
  const hangs: HangRecord[] = [];
  const previousAttempts: (string | undefined)[] = [];
  let delayedEchoes = 0;
  let echoesFrozen = false;
  let released = Promise.withResolvers<void>();

  const backendHeader = (): grpc.Metadata => {
    const metadata = new grpc.Metadata();
    metadata.set("x-backend", name);
    return metadata;
  };
  type Unary = grpc.handleUnaryCall<Buffer, Buffer>;
  const echo: Unary = (call, callback) => {
    calls++;
    if (call.metadata.get("x-freeze-echoes")[0] === "1") echoesFrozen = true;
    const delayMs = numberHeader(call.metadata, "x-delay-ms", 0);
    if (delayMs <= 0) {
      call.sendMetadata(backendHeader());
      callback(null, call.request);
      return;
    }
    // Nothing is sent before the delay ends: the call stays uncommitted (retryable) until then.
    delayedEchoes++;
    let waiting = true;
    const done = () => {
      if (waiting) delayedEchoes--;
      waiting = false;
    };
    call.on("cancelled", done);
    setTimeout(() => {
      if (echoesFrozen || call.cancelled) return;
      done();
      call.sendMetadata(backendHeader());
      callback(null, call.request);
    }, delayMs);
  };
  const collect: grpc.handleClientStreamingCall<Buffer, Buffer> = (call, callback) => {
    calls++;
    const failCode = call.metadata.get("x-fail-code")[0];
    // A failing Collect sends no headers: its status goes out trailers-only.
    if (failCode === undefined) call.sendMetadata(backendHeader());
    const parts: Buffer[] = [];
    call.on("data", (part: Buffer) => parts.push(part));
    call.on("end", () => {
      if (failCode === undefined) callback(null, Buffer.concat(parts));
      else callback({ code: Number(failCode), details: `failed after ${parts.length} messages` });
    });
  };
  const stream: grpc.handleServerStreamingCall<Buffer, Buffer> = async (call) => {
    calls++;
    call.on("cancelled", () => {
      if (!call.writableEnded) streamCancellations++;
    });
    call.sendMetadata(backendHeader());
    const count = numberHeader(call.metadata, "x-count", 3);
    const size = numberHeader(call.metadata, "x-size", 16);
    const hold = call.metadata.get("x-hold")[0] === "1";
    for (let i = 0; i < count && !call.cancelled; i++) {
      if (hold && i === 1) await released.promise;
      const more = call.write(Buffer.alloc(size, i % 256));
      if (!more) await new Promise((resolve) => call.once("drain", resolve));
    }
    if (!call.cancelled) call.end();
  };
  const chat: grpc.handleBidiStreamingCall<Buffer, Buffer> = (call) => {
    calls++;
    call.sendMetadata(backendHeader());
    call.on("data", (message: Buffer) => call.write(message));
    call.on("end", () => call.end());
  };
  const fail: Unary = (call, callback) => {
    calls++;
    call.sendMetadata(backendHeader());
    callback({ ...FAIL_STATUS, metadata: metadataPrefixed(call.metadata, "x-") });
  };
  const failImmediately: Unary = (_call, callback) => {
    calls++;
    callback({ ...FAIL_IMMEDIATELY_STATUS, metadata: backendHeader() });
  };
  const echoMetadata: Unary = (call, callback) => {
    calls++;
    const echoed = metadataPrefixed(call.metadata, "x-");
    echoed.set("x-authority", call.getHost());
    const headers = echoed.clone();
    headers.merge(backendHeader());
    call.sendMetadata(headers);
    callback(null, Buffer.alloc(0), echoed);
  };
  const hang: Unary = (call) => {
    calls++;
    const deadline = call.getDeadline();
    const record: HangRecord = {
      remainingMs: deadline === Infinity ? undefined : Number(deadline) - Date.now(),
      cancelled: false,
    };
    hangs.push(record);
    call.on("cancelled", () => record.cancelled = true);
  };
  const failFirst: Unary = (call, callback) => {
    calls++;
    const previous = call.metadata.get("grpc-previous-rpc-attempts")[0];
    previousAttempts.push(previous === undefined ? undefined : String(previous));
    if (previous === undefined) {
      // No sendMetadata first: a trailers-only response, which a retry policy may retry.
      callback({ code: grpc.status.UNAVAILABLE, details: "first attempts fail" });
      return;
    }
    const headers = backendHeader();
    headers.set("x-previous-rpc-attempts", String(previous));
    call.sendMetadata(headers);
    callback(null, call.request);
  };
  server.addService(testService, {
    Echo: echo,
    Collect: collect,
    Stream: stream,
    Chat: chat,
    Fail: fail,
    FailImmediately: failImmediately,
    EchoMetadata: echoMetadata,
    Hang: hang,
    FailFirst: failFirst,
  });
  if (options.health) new HealthImplementation({ "": "SERVING" }).addToServer(server);
  const { tls } = options;
  const credentials = tls === undefined
    ? grpc.ServerCredentials.createInsecure()
    : grpc.ServerCredentials.createSsl(
      Buffer.from(tls.ca),
      [{ cert_chain: Buffer.from(tls.cert), private_key: Buffer.from(tls.key) }],
      tls.requireClientCert ?? false,
    );
  const boundPort = await new Promise<number>((resolve, reject) => {
    server.bindAsync(
      `127.0.0.1:${port}`,
      credentials,
      (error, bound) => error ? reject(error) : resolve(bound),
    );
  });
  return {
    name,
    address: `127.0.0.1:${boundPort}`,
    port: boundPort,
    calls: () => calls,
    resetCalls: () => calls = 0,
    hangs,
    previousAttempts,
    delayedEchoes: () => delayedEchoes,
    freezeEchoes: () => echoesFrozen = true,
    streamCancellations: () => streamCancellations,
    release: () => {
      released.resolve();
      released = Promise.withResolvers<void>();
    },
    stop: () => {
      server.forceShutdown();
      return Promise.resolve();
    },
    shutDownGracefully: () => new Promise((resolve) => server.tryShutdown(() => resolve())),
  };
}

/** A grpc-js client constructor for {@link testService}. */
export const TestClient: grpc.ServiceClientConstructor = grpc.makeGenericClientConstructor(
  testService,
  "test.Test",
);

/**
 * A `test.Test` client for `address` (the proxy), with the large-message limits; `options`
 * adds channel options (e.g. `grpc.enable_retries: 0`, `grpc.default_authority`).
 */
export function testClient(address: string, options: grpc.ChannelOptions = {}): grpc.Client {
  return new TestClient(address, grpc.credentials.createInsecure(), {
    ...MESSAGE_LIMITS,
    ...options,
  });
}

/** The outcome of a unary call, including both metadata blocks. */
export interface UnaryResult {
  /** The response message. */
  readonly response: Buffer;
  /** Response headers. */
  readonly headers: grpc.Metadata;
  /** The final status, with its trailers in `metadata`. */
  readonly status: grpc.StatusObject;
}

/** Options for {@link unaryCall}. */
export interface UnaryCallOptions {
  /** Request metadata. */
  readonly metadata?: grpc.Metadata;
  /** Deadline in milliseconds from now. */
  readonly timeoutMs?: number;
  /** Receives the call object, e.g. to cancel it. */
  readonly onCall?: (call: grpc.ClientUnaryCall) => void;
}

/**
 * Makes a unary call by method path. Resolves on success; rejects with the grpc-js
 * `ServiceError` (which has `code`, `details` and trailing `metadata`) on failure.
 */
export function unaryCall(
  client: grpc.Client,
  path: string,
  request: Buffer = Buffer.alloc(0),
  options: UnaryCallOptions = {},
): Promise<UnaryResult> {
  return new Promise((resolve, reject) => {
    let headers = new grpc.Metadata();
    let response: Buffer | undefined;
    const callOptions: grpc.CallOptions = options.timeoutMs === undefined
      ? {}
      : { deadline: Date.now() + options.timeoutMs };
    const call = client.makeUnaryRequest<Buffer, Buffer>(
      path,
      rawBytes,
      rawBytes,
      request,
      options.metadata ?? new grpc.Metadata(),
      callOptions,
      (error, value) => {
        if (error) reject(error);
        else response = value;
      },
    );
    call.on("metadata", (metadata: grpc.Metadata) => headers = metadata);
    call.on("status", (status: grpc.StatusObject) => {
      if (status.code === grpc.status.OK) resolve({ response: response!, headers, status });
    });
    options.onCall?.(call);
  });
}

/** Expects `promise` to reject with a grpc-js `ServiceError` and returns it. */
export async function expectServiceError(promise: Promise<unknown>): Promise<grpc.ServiceError> {
  try {
    await promise;
  } catch (error) {
    if (typeof (error as grpc.ServiceError).code === "number") return error as grpc.ServiceError;
    throw error;
  }
  throw new Error("expected the call to fail, but it succeeded");
}

/** The name in the `x-backend` header of a unary call's response. */
export async function servedBy(client: grpc.Client): Promise<string> {
  const { headers } = await unaryCall(client, TestMethod.echo, Buffer.from("who"));
  return String(headers.get("x-backend")[0]);
}

/** Calls until `name` serves one; returns the milliseconds since `sinceMs`. */
export async function untilServedBy(
  client: grpc.Client,
  name: string,
  sinceMs: number = performance.now(),
  timeoutMs = 15_000,
): Promise<number> {
  await waitFor(async () => (await servedBy(client)) === name, {
    timeoutMs,
    intervalMs: 1,
    what: `a call served by ${name}`,
  });
  return Math.round(performance.now() - sinceMs);
}

/** Everything a streaming call returned. */
export interface StreamResult {
  /** Response messages in order. */
  readonly messages: Buffer[];
  /** The final status. */
  readonly status: grpc.StatusObject;
}

/**
 * Reads a server-streaming or bidi call to its end. Resolves once both the last message and
 * an OK status arrived; rejects with the `ServiceError` otherwise.
 */
export function collectStream(call: grpc.ClientReadableStream<Buffer>): Promise<StreamResult> {
  const messages: Buffer[] = [];
  call.on("data", (message: Buffer) => messages.push(message));
  const ended = new Promise<void>((resolve) => call.once("end", () => resolve()));
  const status = new Promise<grpc.StatusObject>((resolve, reject) => {
    call.once("error", reject);
    call.once("status", (status: grpc.StatusObject) => {
      if (status.code === grpc.status.OK) resolve(status);
    });
  });
  return Promise.all([ended, status]).then(([, status]) => ({ messages, status }));
}

/** Opens a server-streaming call to `Stream` asking for `count` messages of `size` bytes. */
export function serverStream(
  client: grpc.Client,
  count: number,
  size: number,
  extra: Record<string, string> = {},
): grpc.ClientReadableStream<Buffer> {
  const metadata = new grpc.Metadata();
  metadata.set("x-count", String(count));
  metadata.set("x-size", String(size));
  for (const [key, value] of Object.entries(extra)) metadata.set(key, value);
  return client.makeServerStreamRequest(
    TestMethod.stream,
    rawBytes,
    rawBytes,
    Buffer.alloc(0),
    metadata,
    {},
  );
}

/** The messages `Stream` sends for `count` and `size`. */
export function expectedStream(count: number, size: number): Buffer[] {
  return Array.from({ length: count }, (_, i) => Buffer.alloc(size, i % 256));
}

/** A `Stream` call held after its first message, on a raw client session. */
export interface HeldRawStream {
  /** Settles with the whole call once the backend is released and the stream ends. */
  readonly result: Promise<RawCallResult>;
  /** The body the whole stream must deliver, gRPC-framed. */
  readonly expectedBody: Buffer;
}

/**
 * Starts a `Stream` call of `count` messages of `size` bytes with `x-hold: 1` on `session`
 * and resolves once its first message arrived: the backend then holds the rest until
 * {@link TestBackend.release}. A raw client, because grpc-js on Deno can drop a stream's last
 * messages when its connection gets GOAWAY right after the status, which is what a draining
 * listener sends.
 */
export async function startHeldRawStream(
  session: http2.ClientHttp2Session,
  count: number,
  size: number,
): Promise<HeldRawStream> {
  let firstMessage = false;
  const result = rawCall(session, TestMethod.stream, undefined, {
    "x-count": String(count),
    "x-size": String(size),
    "x-hold": "1",
  }, (stream) => stream.once("data", () => firstMessage = true));
  await waitFor(() => firstMessage, { what: "the held stream's first message" });
  return { result, expectedBody: Buffer.concat(expectedStream(count, size).map(grpcFrame)) };
}
