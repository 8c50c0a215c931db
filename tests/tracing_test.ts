/**
 * W3C Trace Context and the proxy's spans (`src/tracing/`): the `traceparent` parser, the
 * header rewriting on a stand-in tracer, and end to end: a grpc-js client → the real proxy
 * with Deno's OpenTelemetry on (`OTEL_DENO=true`) → a grpc-js backend that records the trace
 * headers it got, with the proxy's spans exported over OTLP/HTTP (JSON) to a receiver here.
 */
import * as grpc from "@grpc/grpc-js";
import type { Span, SpanContext, SpanOptions, Tracer } from "@opentelemetry/api";
import assert from "node:assert/strict";
import http2 from "node:http2";
import type { CallRecord } from "../src/proxy/call_record.ts";
import { OtelCallTracer } from "../src/tracing/call_tracer.ts";
import { isServerError, rpcName } from "../src/tracing/rpc_names.ts";
import { formatTraceparent, parseTraceparent } from "../src/tracing/traceparent.ts";
import {
  clusterConfig,
  freePort,
  GRPC_JS,
  type ProxyProcess,
  startProxy,
  waitFor,
} from "./support/harness.ts";
import { respondOk } from "./support/raw_h2.ts";
import {
  type OtlpReceiver,
  type ReceivedSpan,
  startOtlpReceiver,
} from "./support/otlp_receiver.ts";
import {
  expectServiceError,
  testClient,
  TestMethod,
  testService,
  unaryCall,
} from "./support/test_backend.ts";

const TRACE_ID = "0af7651916cd43dd8448eb211c80319c";
const CLIENT_SPAN = "b7ad6b7169203331";
const TRACEPARENT = `00-${TRACE_ID}-${CLIENT_SPAN}-01`;
const TRACESTATE = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7";

// --- traceparent (W3C Trace Context Level 1, §3.2) ---------------------------------------------

Deno.test("traceparent: a version-00 value is parsed into its fields", () => {
  assert.deepEqual(parseTraceparent(TRACEPARENT), {
    traceId: TRACE_ID,
    parentId: CLIENT_SPAN,
    flags: 1,
  });
  assert.deepEqual(parseTraceparent(`00-${TRACE_ID}-${CLIENT_SPAN}-00`)?.flags, 0);
  // Flags other than `sampled` are kept as received; only bit 0 means anything (§3.2.2.5).
  assert.deepEqual(parseTraceparent(`00-${TRACE_ID}-${CLIENT_SPAN}-09`)?.flags, 9);
});

Deno.test("traceparent: malformed values are rejected", () => {
  const invalid = [
    "",
    "00",
    TRACEPARENT.slice(0, -1), // too short
    `${TRACEPARENT}-`, // version 00 takes nothing after the flags
    `${TRACEPARENT}0`,
    TRACEPARENT.toUpperCase(), // HEXDIGLC only
    `00-${TRACE_ID.toUpperCase()}-${CLIENT_SPAN}-01`,
    `00-${TRACE_ID}-${CLIENT_SPAN.toUpperCase()}-01`,
    `00-${TRACE_ID}-${CLIENT_SPAN}-0A`,
    `00-${"0".repeat(32)}-${CLIENT_SPAN}-01`, // all-zero trace-id (§3.2.2.3)
    `00-${TRACE_ID}-${"0".repeat(16)}-01`, // all-zero parent-id (§3.2.2.4)
    `ff-${TRACE_ID}-${CLIENT_SPAN}-01`, // version ff is forbidden (§3.2.2.1)
    `0g-${TRACE_ID}-${CLIENT_SPAN}-01`,
    `00_${TRACE_ID}-${CLIENT_SPAN}-01`,
    `00-${TRACE_ID}_${CLIENT_SPAN}-01`,
    `00-${TRACE_ID}-${CLIENT_SPAN}_01`,
    `00-${TRACE_ID.slice(1)}-${CLIENT_SPAN}-010`, // fields shifted
    `00-${TRACE_ID}-${CLIENT_SPAN}-0x`,
    ` ${TRACEPARENT}`.slice(0, 55),
  ];
  for (const value of invalid) {
    assert.equal(parseTraceparent(value), undefined, JSON.stringify(value));
  }
});

Deno.test("traceparent: a higher version is parsed by the version-00 rules (§3.2.4)", () => {
  const expected = { traceId: TRACE_ID, parentId: CLIENT_SPAN, flags: 1 };
  assert.deepEqual(parseTraceparent(`01-${TRACE_ID}-${CLIENT_SPAN}-01`), expected);
  assert.deepEqual(parseTraceparent(`cc-${TRACE_ID}-${CLIENT_SPAN}-01-what-ever`), expected);
  // After the flags, a higher version must have a dash or nothing.
  assert.equal(parseTraceparent(`cc-${TRACE_ID}-${CLIENT_SPAN}-01x`), undefined);
  assert.equal(parseTraceparent(`cc-${TRACE_ID}-${CLIENT_SPAN}-0`), undefined);
  assert.equal(parseTraceparent(`fe-${TRACE_ID}-${"0".repeat(16)}-01`), undefined);
});

Deno.test("traceparent: formatted as version 00 with only the sampled flag", () => {
  assert.equal(formatTraceparent(TRACE_ID, CLIENT_SPAN, true), TRACEPARENT);
  assert.equal(formatTraceparent(TRACE_ID, CLIENT_SPAN, false), `00-${TRACE_ID}-${CLIENT_SPAN}-00`);
  assert.deepEqual(parseTraceparent(formatTraceparent(TRACE_ID, CLIENT_SPAN, false)), {
    traceId: TRACE_ID,
    parentId: CLIENT_SPAN,
    flags: 0,
  });
});

Deno.test("rpc names: span name, service and method of a gRPC path", () => {
  assert.deepEqual(rpcName("/pkg.Service/Method"), {
    spanName: "pkg.Service/Method",
    service: "pkg.Service",
    method: "Method",
  });
  for (const path of ["", "/", "//Method", "/pkg.Service/", "/pkg.Service", "/a/b/c", "x/y"]) {
    assert.deepEqual(rpcName(path), { spanName: "grpc", service: undefined, method: undefined });
  }
  // OpenTelemetry's gRPC semantic conventions, server spans.
  assert.deepEqual(
    Array.from({ length: 17 }, (_, code) => code).filter(isServerError),
    [2, 4, 12, 13, 14, 15],
  );
});

// --- header rewriting, on a stand-in tracer ---------------------------------------------------

/** What the stand-in tracer was asked for. */
interface Started {
  readonly name: string;
  readonly options: SpanOptions | undefined;
  readonly parent: SpanContext | undefined;
  readonly ended: boolean;
  readonly attributes: Record<string, unknown>;
  readonly status: unknown;
}

/**
 * A tracer whose spans get `spanId` and are sampled or not as `sample` says (Deno's sampler
 * in the proxy): enough to check what the call tracer does with headers.
 */
function standInTracer(sample: (parent: SpanContext | undefined) => boolean) {
  const started: Started[] = [];
  const tracer = {
    startSpan(name: string, options?: SpanOptions, context?: unknown): Span {
      const parent = (context as { getValue(key: symbol): Span | undefined } | undefined)
        ?.getValue(Symbol.for("OpenTelemetry Context Key SPAN"))?.spanContext();
      const record = {
        name,
        options,
        parent,
        ended: false,
        attributes: {} as Record<string, unknown>,
        status: undefined as unknown,
      };
      started.push(record);
      const spanContext: SpanContext = {
        traceId: parent?.traceId ?? "1".repeat(32),
        spanId: "2".repeat(16),
        traceFlags: sample(parent) ? 1 : 0,
      };
      return {
        spanContext: () => spanContext,
        setAttributes(attributes: Record<string, unknown>) {
          Object.assign(record.attributes, attributes);
          return this;
        },
        setStatus(status: unknown) {
          record.status = status;
          return this;
        },
        end: () => record.ended = true,
      } as unknown as Span;
    },
  } as unknown as Tracer;
  return { tracer, started };
}

function request(...extra: string[]): string[] {
  return [
    ":method",
    "POST",
    ":path",
    "/pkg.Service/Method",
    "content-type",
    "application/grpc",
    ...extra,
  ];
}

const RECORD = {
  protocol: "grpc",
  cluster: "echo",
  backend: "127.0.0.1:1",
  grpcStatus: 14,
  grpcMessage: "no backend",
  retries: 2,
} as unknown as CallRecord;

Deno.test("call tracer: a valid traceparent: child span, parent-id rewritten, tracestate kept", () => {
  const { tracer, started } = standInTracer(() => true);
  const headers = request("traceparent", TRACEPARENT, "tracestate", TRACESTATE);
  const span = new OtelCallTracer(tracer).start(headers, "/pkg.Service/Method");
  assert.ok(span);
  assert.equal(span.traceId, TRACE_ID);
  assert.equal(started.length, 1);
  assert.equal(started[0].name, "pkg.Service/Method");
  assert.deepEqual(started[0].parent, {
    traceId: TRACE_ID,
    spanId: CLIENT_SPAN,
    traceFlags: 1,
    isRemote: true,
  });
  assert.deepEqual(
    headers,
    request("traceparent", `00-${TRACE_ID}-${"2".repeat(16)}-01`, "tracestate", TRACESTATE),
  );
  span.end(RECORD);
  assert.equal(started[0].ended, true);
  assert.deepEqual(started[0].attributes, {
    "rpc.system": "grpc",
    "rpc.service": "pkg.Service",
    "rpc.method": "Method",
    "rpc.grpc.status_code": 14n,
    "switchyard.protocol": "grpc",
    "switchyard.retries": 2n,
    "switchyard.cluster": "echo",
    "switchyard.backend": "127.0.0.1:1",
  });
  assert.deepEqual(started[0].status, { code: 2, message: "no backend" });
});

Deno.test("call tracer: a higher version is downgraded to 00 on the rewrite (§3.4)", () => {
  const { tracer } = standInTracer(() => true);
  const headers = request("traceparent", `cc-${TRACE_ID}-${CLIENT_SPAN}-01-future`);
  new OtelCallTracer(tracer).start(headers, "/pkg.Service/Method");
  assert.deepEqual(headers, request("traceparent", `00-${TRACE_ID}-${"2".repeat(16)}-01`));
});

Deno.test("call tracer: no, malformed or repeated traceparent: a root span, tracestate dropped", () => {
  for (
    const received of [
      [],
      ["traceparent", TRACEPARENT.toUpperCase()],
      ["traceparent", TRACEPARENT, "traceparent", TRACEPARENT],
    ]
  ) {
    const { tracer, started } = standInTracer(() => true);
    const headers = request(...received, "tracestate", TRACESTATE);
    const span = new OtelCallTracer(tracer).start(headers, "/pkg.Service/Method");
    assert.ok(span, JSON.stringify(received));
    assert.equal(started[0].parent, undefined);
    assert.equal(started[0].options?.root, true);
    assert.deepEqual(headers, request("traceparent", `00-${"1".repeat(32)}-${"2".repeat(16)}-01`));
  }
});

Deno.test("call tracer: an unsampled span is not recorded; the client's headers pass untouched", () => {
  const { tracer, started } = standInTracer((parent) => (parent?.traceFlags ?? 1) === 1);
  const unsampled = `00-${TRACE_ID}-${CLIENT_SPAN}-00`;
  const headers = request("traceparent", unsampled, "tracestate", TRACESTATE);
  assert.equal(new OtelCallTracer(tracer).start(headers, "/pkg.Service/Method"), undefined);
  assert.deepEqual(headers, request("traceparent", unsampled, "tracestate", TRACESTATE));
  assert.equal(started[0].ended, false);
  // A root span the sampler drops still starts the backend's trace, unsampled.
  const { tracer: never } = standInTracer(() => false);
  const fresh = request();
  assert.equal(new OtelCallTracer(never).start(fresh, "/pkg.Service/Method"), undefined);
  assert.deepEqual(fresh, request("traceparent", `00-${"1".repeat(32)}-${"2".repeat(16)}-00`));
});

// --- end to end --------------------------------------------------------------------------------

/** The trace headers one backend call carried. */
interface SeenHeaders {
  readonly traceparent: readonly string[];
  readonly tracestate: readonly string[];
}

/** A grpc-js backend whose `Echo` and `FailFirst` record the trace headers of every call. */
async function startRecordingBackend() {
  const server = new grpc.Server();
  const seen: SeenHeaders[] = [];
  const record = (metadata: grpc.Metadata) =>
    seen.push({
      traceparent: metadata.get("traceparent").map(String),
      tracestate: metadata.get("tracestate").map(String),
    });
  server.addService(testService, {
    Echo: (call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
      record(call.metadata);
      callback(null, call.request);
    },
    FailFirst: (
      call: grpc.ServerUnaryCall<Buffer, Buffer>,
      callback: grpc.sendUnaryData<Buffer>,
    ) => {
      record(call.metadata);
      if (call.metadata.get("grpc-previous-rpc-attempts").length === 0) {
        callback({ code: grpc.status.UNAVAILABLE, details: "first attempts fail" });
      } else callback(null, call.request);
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(
      "127.0.0.1:0",
      grpc.ServerCredentials.createInsecure(),
      (error, bound) => error ? reject(error) : resolve(bound),
    )
  );
  return {
    address: `127.0.0.1:${port}`,
    seen,
    [Symbol.asyncDispose]: () => Promise.resolve(server.forceShutdown()),
  };
}

type RecordingBackend = Awaited<ReturnType<typeof startRecordingBackend>>;

/** Request metadata of `headers`, in order (grpc-js keeps repeated keys as sent). */
function metadataOf(headers: readonly (readonly [string, string])[]): grpc.Metadata {
  const metadata = new grpc.Metadata();
  for (const [name, value] of headers) metadata.add(name, value);
  return metadata;
}

/** The environment that turns Deno's OpenTelemetry on, exporting OTLP/JSON to `receiver`. */
function tracingEnv(receiver: OtlpReceiver, extra: Record<string, string> = {}) {
  return {
    OTEL_DENO: "true",
    OTEL_SERVICE_NAME: "switchyard-test",
    OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint,
    OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
    // Deno's batch span processor honours it: spans leave within 100 ms, not 5 s.
    OTEL_BSP_SCHEDULE_DELAY: "100",
    ...extra,
  };
}

/**
 * A proxy in front of `backend` whose `test.Test` cluster retries UNAVAILABLE once; `extra`
 * adds to its config.
 */
function proxyFor(
  backend: RecordingBackend,
  env: Record<string, string>,
  extra: Record<string, unknown> = {},
): Promise<ProxyProcess> {
  return startProxy(
    { ...clusterConfig([backend.address], { retry: { retryOn: ["UNAVAILABLE"] } }), ...extra },
    { env },
  );
}

/** Waits for the proxy's span of the trace `traceId`. */
function proxySpan(receiver: OtlpReceiver, traceId: string): Promise<ReceivedSpan> {
  return waitFor(
    () => receiver.spans().find((span) => span.scope === "switchyard" && span.traceId === traceId),
    { what: `the proxy's span of trace ${traceId}` },
  );
}

/** The parts of a valid traceparent, or a failed assertion. */
function parsed(value: string | undefined) {
  const traceparent = value === undefined ? undefined : parseTraceparent(value);
  assert.ok(traceparent, `a valid traceparent, not ${JSON.stringify(value)}`);
  return traceparent;
}

Deno.test({
  name: "tracing on, in worker threads: the proxy span is the client span's child and the " +
    "backend's parent, with the call's attributes; a call without or with a malformed " +
    "traceparent starts a trace",
  ...GRPC_JS,
  fn: async () => {
    await using backend = await startRecordingBackend();
    const receiver = await startOtlpReceiver();
    // Two data planes: each is a Web Worker, whose spans Deno's process-wide exporter sends.
    const proxy = await proxyFor(backend, tracingEnv(receiver), { workers: 2 });
    const client = testClient(proxy.address, { "grpc.enable_retries": 0 });
    try {
      // 1. The client's span is the parent.
      await unaryCall(client, TestMethod.echo, Buffer.from("hi"), {
        metadata: metadataOf([["traceparent", TRACEPARENT], ["tracestate", TRACESTATE]]),
      });
      const span = await proxySpan(receiver, TRACE_ID);
      assert.equal(span.parentSpanId, CLIENT_SPAN);
      assert.equal(span.name, "test.Test/Echo");
      assert.equal(span.kind, 2, "SERVER");
      assert.equal(span.serviceName, "switchyard-test");
      assert.deepEqual(span.attributes, {
        "rpc.system": "grpc",
        "rpc.service": "test.Test",
        "rpc.method": "Echo",
        "rpc.grpc.status_code": 0,
        "switchyard.cluster": "echo",
        "switchyard.backend": backend.address,
        "switchyard.retries": 0,
        "switchyard.protocol": "grpc",
      });
      assert.ok(span.intAttributes.has("rpc.grpc.status_code"), "status code is an int");
      assert.ok(span.intAttributes.has("switchyard.retries"), "retries is an int");
      assert.equal(span.status.code, 0, "UNSET for OK");
      assert.equal(backend.seen.length, 1);
      assert.deepEqual(backend.seen[0], {
        traceparent: [`00-${TRACE_ID}-${span.spanId}-01`],
        tracestate: [TRACESTATE],
      });

      // 2. No traceparent: a root span, and the backend's parent is it.
      await unaryCall(client, TestMethod.echo, Buffer.from("hi"));
      const fresh = parsed(backend.seen[1].traceparent[0]);
      assert.equal(backend.seen[1].traceparent.length, 1);
      assert.equal(fresh.flags, 1);
      const root = await proxySpan(receiver, fresh.traceId);
      assert.equal(root.parentSpanId, "");
      assert.equal(root.spanId, fresh.parentId);

      // 3. A malformed traceparent is no traceparent: a new trace, and tracestate goes with it.
      await unaryCall(client, TestMethod.echo, Buffer.from("hi"), {
        metadata: metadataOf([
          ["traceparent", TRACEPARENT.toUpperCase()],
          ["tracestate", TRACESTATE],
        ]),
      });
      const restarted = parsed(backend.seen[2].traceparent[0]);
      assert.notEqual(restarted.traceId, TRACE_ID);
      assert.deepEqual(backend.seen[2].tracestate, []);
      const restartedSpan = await proxySpan(receiver, restarted.traceId);
      assert.equal(restartedSpan.parentSpanId, "");
      assert.equal(restartedSpan.spanId, restarted.parentId);
    } finally {
      client.close();
      await proxy.stop();
      await receiver.close();
    }
  },
});

Deno.test({
  name: "tracing on: retries and failures are on the span; ERROR for a server-side status; " +
    "gRPC-Web calls are traced alike",
  ...GRPC_JS,
  fn: async () => {
    await using backend = await startRecordingBackend();
    const receiver = await startOtlpReceiver();
    const web = `127.0.0.1:${await freePort()}`;
    const proxy = await proxyFor(backend, tracingEnv(receiver), { grpcWeb: { listen: web } });
    const client = testClient(proxy.address, { "grpc.enable_retries": 0 });
    try {
      // FailFirst fails its first attempt with UNAVAILABLE; the route retries it once.
      const retriedTrace = "4bf92f3577b34da6a3ce929d0e0e4736";
      await unaryCall(client, TestMethod.failFirst, Buffer.from("again"), {
        metadata: metadataOf([["traceparent", `00-${retriedTrace}-00f067aa0ba902b7-01`]]),
      });
      const retried = await proxySpan(receiver, retriedTrace);
      assert.equal(retried.parentSpanId, "00f067aa0ba902b7");
      assert.equal(retried.attributes["switchyard.retries"], 1);
      assert.equal(retried.attributes["rpc.grpc.status_code"], 0);
      // Both attempts carried the proxy span as their parent.
      assert.deepEqual(
        backend.seen.map((seen) => seen.traceparent),
        [[`00-${retriedTrace}-${retried.spanId}-01`], [`00-${retriedTrace}-${retried.spanId}-01`]],
      );

      // No route: the proxy answers UNIMPLEMENTED, a server error in OpenTelemetry's terms.
      const unroutedTrace = "5bf92f3577b34da6a3ce929d0e0e4736";
      const error = await expectServiceError(
        unaryCall(client, "/other.Service/Method", Buffer.alloc(0), {
          metadata: metadataOf([["traceparent", `00-${unroutedTrace}-00f067aa0ba902b7-01`]]),
        }),
      );
      assert.equal(error.code, grpc.status.UNIMPLEMENTED);
      const unrouted = await proxySpan(receiver, unroutedTrace);
      assert.equal(unrouted.name, "other.Service/Method");
      assert.equal(unrouted.attributes["rpc.grpc.status_code"], grpc.status.UNIMPLEMENTED);
      assert.equal(unrouted.attributes["switchyard.cluster"], undefined);
      assert.equal(unrouted.attributes["switchyard.backend"], undefined);
      assert.deepEqual(unrouted.status, { code: 2, message: error.details });

      // gRPC-Web (on Deno.serve, which Deno traces too): the same span, protocol grpc-web.
      const webTrace = "7bf92f3577b34da6a3ce929d0e0e4736";
      const response = await fetch(`http://${web}${TestMethod.echo}`, {
        method: "POST",
        headers: {
          "content-type": "application/grpc-web+proto",
          "x-grpc-web": "1",
          traceparent: `00-${webTrace}-${CLIENT_SPAN}-01`,
          tracestate: TRACESTATE,
        },
        body: new Uint8Array(5), // one empty message
      });
      assert.equal(response.status, 200);
      await response.arrayBuffer();
      const webSpan = await proxySpan(receiver, webTrace);
      assert.equal(webSpan.parentSpanId, CLIENT_SPAN);
      assert.equal(webSpan.attributes["switchyard.protocol"], "grpc-web");
      assert.equal(webSpan.attributes["rpc.grpc.status_code"], 0);
      assert.deepEqual(backend.seen.at(-1), {
        traceparent: [`00-${webTrace}-${webSpan.spanId}-01`],
        tracestate: [TRACESTATE],
      });
      assert.equal(receiver.rejected(), 0);
    } finally {
      client.close();
      await proxy.stop();
      await receiver.close();
    }
  },
});

Deno.test({
  name: "tracing on, parentbased sampler: an unsampled client trace records nothing and its " +
    "headers reach the backend untouched",
  ...GRPC_JS,
  fn: async () => {
    await using backend = await startRecordingBackend();
    const receiver = await startOtlpReceiver();
    const proxy = await proxyFor(
      backend,
      tracingEnv(receiver, { OTEL_TRACES_SAMPLER: "parentbased_always_on" }),
    );
    const client = testClient(proxy.address);
    try {
      const unsampled = `00-${TRACE_ID}-${CLIENT_SPAN}-00`;
      await unaryCall(client, TestMethod.echo, Buffer.from("hi"), {
        metadata: metadataOf([["traceparent", unsampled], ["tracestate", TRACESTATE]]),
      });
      assert.deepEqual(backend.seen[0], { traceparent: [unsampled], tracestate: [TRACESTATE] });
      // A sampled call after it: once its span is in, the unsampled one would be too.
      const sampledTrace = "6bf92f3577b34da6a3ce929d0e0e4736";
      await unaryCall(client, TestMethod.echo, Buffer.from("hi"), {
        metadata: metadataOf([["traceparent", `00-${sampledTrace}-${CLIENT_SPAN}-01`]]),
      });
      // Deno's span processor exports spans in the order they ended.
      await proxySpan(receiver, sampledTrace);
      assert.equal(receiver.spans().filter((span) => span.traceId === TRACE_ID).length, 0);
    } finally {
      client.close();
      await proxy.stop();
      await receiver.close();
    }
  },
});

Deno.test({
  name: "tracing off: traceparent and tracestate reach the backend byte for byte, malformed " +
    "or repeated ones too",
  ...GRPC_JS,
  fn: async () => {
    const seen: (readonly [string, string])[][] = [];
    const server = http2.createServer();
    server.on(
      "stream",
      (stream: http2.ServerHttp2Stream, _headers, _flags, rawHeaders: string[]) => {
        const fields: [string, string][] = [];
        for (let i = 0; i < rawHeaders.length; i += 2) {
          if (rawHeaders[i] === "traceparent" || rawHeaders[i] === "tracestate") {
            fields.push([rawHeaders[i], rawHeaders[i + 1]]);
          }
        }
        seen.push(fields);
        respondOk(stream);
      },
    );
    const port = await new Promise<number>((resolve) =>
      server.listen(0, "127.0.0.1", () => resolve((server.address() as { port: number }).port))
    );
    // OTEL_DENO not "true" (and not inherited from the test's environment): tracing is off.
    const proxy = await startProxy(clusterConfig([`127.0.0.1:${port}`]), {
      env: { OTEL_DENO: "false" },
    });
    const client = testClient(proxy.address);
    try {
      const cases: (readonly [string, string])[][] = [
        [["traceparent", TRACEPARENT], ["tracestate", TRACESTATE]],
        [["traceparent", TRACEPARENT.toUpperCase()], ["tracestate", "odd ,, = value"]],
        [["traceparent", "cc-future-format"], ["traceparent", TRACEPARENT]],
        [["tracestate", "a=1"], ["tracestate", "b=2"]],
      ];
      for (const headers of cases) {
        await unaryCall(client, TestMethod.echo, Buffer.from("hi"), {
          metadata: metadataOf(headers),
        });
      }
      assert.deepEqual(seen, cases);
    } finally {
      client.close();
      await proxy.stop();
      await new Promise((resolve) => server.close(resolve));
    }
  },
});
