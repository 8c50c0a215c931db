/**
 * gRPC-Web end to end: the real proxy with a `grpcWeb` listener in front of the grpc-js test
 * backend, called with `fetch` (HTTP/1.1) as gRPC-Web clients do, and from a page in headless
 * Chromium on another origin, so the CORS path is exercised for real.
 */
import assert from "node:assert/strict";
import {
  checkRequestFrames,
  decodeBase64Body,
  MalformedRequest,
  StreamingRequest,
  trailerFrame,
} from "../src/grpc_web/codec.ts";
import { GRPC_STATUS_NAMES } from "../src/proxy/grpc_status.ts";
import { CorsPolicy } from "../src/grpc_web/cors.ts";
import { GrpcWebStream } from "../src/grpc_web/web_stream.ts";
import { CloseCause, type StreamHandler, type TransportStream } from "../src/transport/stream.ts";
import { adminRequest, startAdminProxy } from "./support/admin_client.ts";
import { concatBytes } from "./support/h2_wire.ts";
import { hasChromium, launchChromium } from "./support/chromium.ts";
import { clusterConfig, freePort, GRPC_JS, type ProxyProcess, waitFor } from "./support/harness.ts";
import { parsePrometheusText, sumSamples } from "./support/prometheus.ts";
import {
  FAIL_IMMEDIATELY_STATUS,
  FAIL_STATUS,
  startTestBackend,
  type TestBackend,
  TestMethod,
} from "./support/test_backend.ts";

/** The browser example, whose gRPC-Web client the browser test drives. */
const EXAMPLE_PAGE = new URL("../examples/grpc_web.html", import.meta.url);

/** The example page's `grpcWebCall`. */
type GrpcWebCall = (
  web: string,
  path: string,
  message: Uint8Array,
  metadata?: Record<string, string>,
) => Promise<{ messages: Uint8Array[]; status: number; message: string }>;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** One message with gRPC's 5-byte prefix. */
function frame(payload: Uint8Array, flag = 0): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(5 + payload.length);
  out[0] = flag;
  new DataView(out.buffer).setUint32(1, payload.length);
  out.set(payload, 5);
  return out;
}

/** A gRPC-Web response body, split into its messages and its trailer frame. */
interface WebBody {
  readonly messages: Uint8Array[];
  readonly trailers: Record<string, string>;
}

function parseFrames(body: Uint8Array): WebBody {
  const messages: Uint8Array[] = [];
  const trailers: Record<string, string> = {};
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
  for (let offset = 0; offset < body.length;) {
    const length = view.getUint32(offset + 1);
    const payload = body.subarray(offset + 5, offset + 5 + length);
    if (body[offset] & 0x80) {
      for (const line of decoder.decode(payload).split("\r\n").filter(Boolean)) {
        const colon = line.indexOf(":");
        trailers[line.slice(0, colon)] = line.slice(colon + 1).trim();
      }
    } else {
      messages.push(payload);
    }
    offset += 5 + length;
  }
  return { messages, trailers };
}

/** Decodes a `-text` body: padded base64 pieces one after another. */
function fromBase64Pieces(text: string): Uint8Array {
  const pieces = text.match(/[^=]*=*/g)!.filter(Boolean);
  return concatBytes(...pieces.map((piece) => Uint8Array.fromBase64(piece)));
}

interface Setup {
  readonly proxy: ProxyProcess;
  readonly backend: TestBackend;
  /** The gRPC-Web base URL. */
  readonly web: string;
  [Symbol.asyncDispose](): Promise<void>;
}

async function setUp(
  cors: Record<string, unknown> = {},
  extra: Record<string, unknown> = {},
  grpcWeb: Record<string, unknown> = {},
) {
  const backend = await startTestBackend("web");
  const webListen = `127.0.0.1:${await freePort()}`;
  const proxy = await startAdminProxy({
    ...clusterConfig([backend.address]),
    grpcWeb: { listen: webListen, maxRequestBytes: 65_536, cors, ...grpcWeb },
    ...extra,
  });
  return {
    proxy,
    backend,
    web: `http://${webListen}`,
    async [Symbol.asyncDispose]() {
      try {
        await proxy.stop();
      } finally {
        await backend.stop();
      }
    },
  } satisfies Setup;
}

/** A gRPC-Web call with `fetch`: binary unless `text`. */
function webCall(
  setup: Setup,
  path: string,
  body: Uint8Array<ArrayBuffer>,
  options: { text?: boolean; headers?: Record<string, string>; signal?: AbortSignal } = {},
): Promise<Response> {
  const type = options.text ? "application/grpc-web-text" : "application/grpc-web+proto";
  return fetch(`${setup.web}${path}`, {
    method: "POST",
    headers: { "content-type": type, "x-grpc-web": "1", ...options.headers },
    body: options.text ? body.toBase64() : body,
    signal: options.signal,
  });
}

Deno.test(
  "gRPC-Web unary: a data frame, then trailers with status 0 and custom metadata",
  GRPC_JS,
  async () => {
    await using setup = await setUp();
    const response = await webCall(setup, TestMethod.echoMetadata, frame(encoder.encode("hi")), {
      headers: { "x-trace": "t-1" },
    });
    assert.equal(response.status, 200);
    assert.equal(response.headers.get("content-type"), "application/grpc-web+proto");
    assert.equal(response.headers.get("x-trace"), "t-1", "request metadata echoed in headers");
    const body = parseFrames(new Uint8Array(await response.arrayBuffer()));
    assert.equal(body.messages.length, 1);
    assert.equal(body.trailers["grpc-status"], "0");
    assert.equal(body.trailers["x-trace"], "t-1", "custom trailing metadata");

    const echoed = await webCall(setup, TestMethod.echo, frame(encoder.encode("payload")));
    const echo = parseFrames(new Uint8Array(await echoed.arrayBuffer()));
    assert.equal(decoder.decode(echo.messages[0]), "payload");
    assert.equal(echo.trailers["grpc-status"], "0");
  },
);

Deno.test("gRPC-Web text mode: base64 both ways", GRPC_JS, async () => {
  await using setup = await setUp();
  const response = await webCall(setup, TestMethod.echo, frame(encoder.encode("in text")), {
    text: true,
  });
  assert.equal(response.headers.get("content-type"), "application/grpc-web-text");
  const body = parseFrames(fromBase64Pieces(await response.text()));
  assert.equal(decoder.decode(body.messages[0]), "in text");
  assert.equal(body.trailers["grpc-status"], "0");
});

Deno.test(
  "gRPC-Web server streaming: 100 messages in order, streamed as they come",
  GRPC_JS,
  async () => {
    await using setup = await setUp();
    const response = await webCall(setup, TestMethod.stream, frame(new Uint8Array(0)), {
      headers: { "x-count": "100", "x-size": "100", "x-hold": "1" },
    });
    const reader = response.body!.getReader();
    // The backend holds after its first message: it reaches the browser before the rest exists.
    const first = await reader.read();
    assert.ok(!first.done && first.value.length > 0, "the first message arrived alone");
    setup.backend.release();
    const chunks = [first.value!];
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      chunks.push(value);
    }
    const body = parseFrames(concatBytes(...chunks));
    assert.equal(body.messages.length, 100);
    body.messages.forEach((message, i) => assert.ok(message.every((byte) => byte === i % 256)));
    assert.equal(body.trailers["grpc-status"], "0");
  },
);

Deno.test(
  "gRPC-Web errors: trailers after headers, trailers-only as headers",
  GRPC_JS,
  async () => {
    await using setup = await setUp();
    const failed = parseFrames(
      new Uint8Array(
        await (await webCall(setup, TestMethod.fail, frame(new Uint8Array(0)))).arrayBuffer(),
      ),
    );
    assert.equal(failed.trailers["grpc-status"], String(FAIL_STATUS.code));
    assert.equal(decodeURIComponent(failed.trailers["grpc-message"]), FAIL_STATUS.details);

    const immediate = await webCall(setup, TestMethod.failImmediately, frame(new Uint8Array(0)));
    assert.equal(immediate.headers.get("grpc-status"), String(FAIL_IMMEDIATELY_STATUS.code));
    assert.equal((await immediate.arrayBuffer()).byteLength, 0, "trailers-only: no body");

    const unrouted = await webCall(setup, "/nope.Service/Call", frame(new Uint8Array(0)));
    assert.equal(unrouted.headers.get("grpc-status"), "12", "no route: UNIMPLEMENTED");
  },
);

Deno.test("gRPC-Web deadlines and aborted fetches reach the backend", GRPC_JS, async () => {
  await using setup = await setUp();
  const timedOut = await webCall(setup, TestMethod.hang, frame(new Uint8Array(0)), {
    headers: { "grpc-timeout": "200m" },
  });
  const deadline = parseFrames(new Uint8Array(await timedOut.arrayBuffer()));
  const status = deadline.trailers["grpc-status"] ?? timedOut.headers.get("grpc-status");
  assert.equal(status, "4", "DEADLINE_EXCEEDED");
  assert.ok(setup.backend.hangs[0].remainingMs! <= 200, "the backend got the deadline");

  const abort = new AbortController();
  const call = webCall(setup, TestMethod.hang, frame(new Uint8Array(0)), { signal: abort.signal });
  await waitFor(() => setup.backend.hangs.length === 2, { what: "the call to reach the backend" });
  abort.abort();
  await assert.rejects(call);
  await waitFor(() => setup.backend.hangs[1].cancelled, { what: "the backend to see the cancel" });
});

Deno.test(
  "gRPC-Web malformed, oversized and streaming requests get clean errors",
  GRPC_JS,
  async () => {
    await using setup = await setUp();
    const cases: [string, Uint8Array<ArrayBuffer> | string, boolean, string, RegExp][] = [
      ["a truncated frame", frame(encoder.encode("abc")).subarray(0, 6), false, "13", /malformed/],
      ["bad base64", "not*base64!", true, "13", /malformed gRPC-Web request: .*base64/],
      [
        "two messages",
        new Uint8Array([...frame(new Uint8Array(1)), ...frame(new Uint8Array(1))]),
        false,
        "12",
        /client and bidi streaming/,
      ],
      [
        "a body over maxRequestBytes",
        frame(new Uint8Array(70_000)),
        false,
        "8",
        /grpcWeb.maxRequestBytes/,
      ],
    ];
    for (const [what, body, text, status, message] of cases) {
      const response = await fetch(`${setup.web}${TestMethod.echo}`, {
        method: "POST",
        headers: { "content-type": text ? "application/grpc-web-text" : "application/grpc-web" },
        body,
      });
      await response.body?.cancel();
      assert.equal(response.headers.get("grpc-status"), status, what);
      assert.match(decodeURIComponent(response.headers.get("grpc-message") ?? ""), message, what);
    }
    assert.equal(setup.backend.calls(), 0, "none of them reached the backend");
    const metrics = parsePrometheusText((await adminRequest(setup.proxy, "/metrics")).body);
    for (const [what, , , status] of cases) {
      const counted = sumSamples(metrics, "switchyard_calls_total", {
        protocol: "grpc-web",
        grpc_status: GRPC_STATUS_NAMES[Number(status)],
      });
      assert.ok(counted >= 1, `${what} is counted with grpc-status ${status}`);
    }
    const notWeb = await fetch(`${setup.web}${TestMethod.echo}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{}",
    });
    await notWeb.body?.cancel();
    assert.equal(notWeb.status, 415);
  },
);

Deno.test(
  "gRPC-Web: a body that trickles in is cut off at grpcWeb.bodyTimeout",
  GRPC_JS,
  async () => {
    await using setup = await setUp({}, {}, { bodyTimeout: "300ms" });
    const conn = await Deno.connect({
      hostname: "127.0.0.1",
      port: Number(new URL(setup.web).port),
    });
    try {
      // Ten of the twenty declared bytes, then nothing.
      await conn.write(encoder.encode(
        `POST ${TestMethod.echo} HTTP/1.1\r\nhost: x\r\ncontent-type: application/grpc-web\r\n` +
          "content-length: 20\r\n\r\n0123456789",
      ));
      const buffer = new Uint8Array(4096);
      const read = await conn.read(buffer);
      const answer = decoder.decode(buffer.subarray(0, read ?? 0));
      assert.match(answer, /^HTTP\/1.1 200/);
      assert.match(answer, /grpc-status: 4/);
      assert.match(answer, /grpcWeb.bodyTimeout/);
    } finally {
      conn.close();
    }
    assert.equal(setup.backend.calls(), 0);
  },
);

Deno.test(
  "gRPC-Web CORS: preflight, allowed and refused origins, exposed metadata",
  GRPC_JS,
  async () => {
    await using setup = await setUp({
      allowedOrigins: ["http://app.example"],
      allowedHeaders: ["x-trace"],
      maxAge: "5m",
    });
    const preflight = await fetch(`${setup.web}${TestMethod.echo}`, {
      method: "OPTIONS",
      headers: {
        origin: "http://app.example",
        "access-control-request-method": "POST",
        "access-control-request-headers": "content-type, x-grpc-web, x-trace",
      },
    });
    assert.equal(preflight.status, 204);
    assert.equal(preflight.headers.get("access-control-allow-origin"), "http://app.example");
    assert.match(preflight.headers.get("access-control-allow-headers")!, /x-grpc-web.*x-trace/);
    assert.equal(preflight.headers.get("access-control-max-age"), "300");
    const refused = await fetch(`${setup.web}${TestMethod.echo}`, {
      method: "OPTIONS",
      headers: { origin: "http://evil.example", "access-control-request-method": "POST" },
    });
    assert.equal(refused.status, 403);
    assert.equal(refused.headers.get("access-control-allow-origin"), null);

    const call = await webCall(setup, TestMethod.echoMetadata, frame(new Uint8Array(0)), {
      headers: { origin: "http://app.example", "x-trace": "t-2" },
    });
    await call.body?.cancel();
    assert.equal(call.headers.get("access-control-allow-origin"), "http://app.example");
    const exposed = call.headers.get("access-control-expose-headers")!.split(", ");
    for (const name of ["grpc-status", "grpc-message", "x-trace"]) {
      assert.ok(
        exposed.includes(name),
        name,
      );
    }
  },
);

Deno.test(
  "gRPC-Web on 2 workers: every worker binds the listener and serves",
  GRPC_JS,
  async () => {
    await using setup = await setUp({}, { workers: 2 });
    for (let i = 0; i < 10; i++) {
      // A client of its own per call: a new connection, which the kernel may give either worker.
      const client = Deno.createHttpClient({});
      const response = await fetch(`${setup.web}${TestMethod.echo}`, {
        method: "POST",
        headers: { "content-type": "application/grpc-web" },
        body: frame(encoder.encode(`call ${i}`)),
        client,
      });
      const body = parseFrames(new Uint8Array(await response.arrayBuffer()));
      client.close();
      assert.equal(decoder.decode(body.messages[0]), `call ${i}`);
      assert.equal(body.trailers["grpc-status"], "0");
    }
    const workers = (await adminRequest(setup.proxy, "/workers")).body as { calls: number }[];
    assert.equal(workers.reduce((total, worker) => total + worker.calls, 0), 10);
  },
);

Deno.test("gRPC-Web calls are counted and logged with protocol grpc-web", GRPC_JS, async () => {
  const log = await Deno.makeTempFile({ prefix: "switchyard-access-" });
  await using setup = await setUp({}, { accessLog: { enabled: true, path: log } });
  const response = await webCall(setup, TestMethod.echo, frame(encoder.encode("count me")));
  await response.arrayBuffer();
  const metrics = parsePrometheusText((await adminRequest(setup.proxy, "/metrics")).body);
  assert.equal(sumSamples(metrics, "switchyard_calls_total", { protocol: "grpc-web" }), 1);
  const line = await waitFor(
    async () => (await Deno.readTextFile(log)).split("\n").find((l) => l.includes("grpc-web")),
    {
      what: "the access-log line",
    },
  );
  assert.equal(JSON.parse(line).protocol, "grpc-web");
  await Deno.remove(log);
});

Deno.test({
  name: "gRPC-Web from a real browser on another origin: unary and server streaming",
  ignore: !hasChromium,
  ...GRPC_JS,
  async fn() {
    const pagePort = await freePort();
    const origin = `http://127.0.0.1:${pagePort}`;
    // The stream call's x-count and x-size are custom metadata: the preflight must allow them.
    await using setup = await setUp({
      allowedOrigins: [origin],
      allowedHeaders: ["x-count", "x-size"],
    });
    const page = Deno.serve(
      { hostname: "127.0.0.1", port: pagePort, onListen: () => {} },
      async () =>
        new Response(await Deno.readFile(EXAMPLE_PAGE), {
          headers: { "content-type": "text/html" },
        }),
    );
    const browser = await launchChromium();
    try {
      const tab = await browser.newPage();
      await tab.goto(`${origin}/`);
      // The example page's own client, on the test service's raw-byte methods.
      const result = await tab.evaluate(async ([web, echo, stream]) => {
        const call = (globalThis as unknown as { grpcWebCall: GrpcWebCall }).grpcWebCall;
        const unary = await call(web, echo, new TextEncoder().encode("from the browser"));
        const streamed = await call(web, stream, new Uint8Array(0), {
          "x-count": "20",
          "x-size": "8",
        });
        return {
          echo: new TextDecoder().decode(unary.messages[0]),
          echoStatus: unary.status,
          streamed: streamed.messages.length,
          streamStatus: streamed.status,
        };
      }, [setup.web, TestMethod.echo, TestMethod.stream]);
      assert.deepEqual(result, {
        echo: "from the browser",
        echoStatus: 0,
        streamed: 20,
        streamStatus: 0,
      });
    } finally {
      await browser.close();
      await page.shutdown();
    }
  },
});

Deno.test("gRPC-Web codec: frames, concatenated base64 and the trailer frame", () => {
  const one = frame(encoder.encode("abc"));
  checkRequestFrames(one);
  checkRequestFrames(new Uint8Array(0));
  assert.throws(() => checkRequestFrames(one.subarray(0, 4)), MalformedRequest);
  assert.throws(() => checkRequestFrames(one.subarray(0, 7)), MalformedRequest);
  assert.throws(() => checkRequestFrames(frame(new Uint8Array(0), 0x80)), MalformedRequest);
  assert.throws(() => checkRequestFrames(new Uint8Array([...one, ...one])), StreamingRequest);

  // Two pieces encoded on their own, the first padded: one body.
  const pieces = encoder.encode("ab").toBase64() + encoder.encode("cde").toBase64();
  assert.equal(decoder.decode(decodeBase64Body(pieces)), "abcde");
  assert.equal(decoder.decode(decodeBase64Body(one.toBase64())).slice(5), "abc");
  for (const bad of ["a", "ab=c", "a*bc", "YQ==YQ"]) {
    assert.throws(() => decodeBase64Body(bad), MalformedRequest, bad);
  }

  const trailers = parseFrames(trailerFrame(["grpc-status", "0", "x-b", "\u00e9"]));
  assert.deepEqual(trailers.messages, []);
  assert.equal(trailers.trailers["grpc-status"], "0");
});

Deno.test('gRPC-Web CORS policy: named origins, "*", credentials', () => {
  const named = new CorsPolicy({
    allowedOrigins: ["https://a.example"],
    allowedHeaders: ["X-Trace"],
    maxAge: 60_000,
    allowCredentials: true,
  });
  const allowed = named.headersFor("https://a.example");
  assert.equal(allowed.get("access-control-allow-origin"), "https://a.example");
  assert.equal(allowed.get("access-control-allow-credentials"), "true");
  assert.equal(allowed.get("vary"), "origin");
  // Refused or same-origin: no grant, but caches must still know the answer varies by Origin.
  assert.deepEqual([...named.headersFor("https://b.example")], [["vary", "origin"]]);
  assert.deepEqual([...named.headersFor(null)], [["vary", "origin"]]);
  const preflight = named.preflight("https://a.example");
  assert.equal(preflight.status, 204);
  assert.match(preflight.headers.get("access-control-allow-headers")!, /x-trace/);
  assert.equal(preflight.headers.get("access-control-max-age"), "60");

  const any = new CorsPolicy({
    allowedOrigins: ["*"],
    allowedHeaders: [],
    maxAge: 0,
    allowCredentials: false,
  });
  const wildcard = any.headersFor("https://c.example");
  assert.equal(wildcard.get("access-control-allow-origin"), "*");
  assert.equal(wildcard.get("vary"), null);
});

/**
 * A binary-mode {@link GrpcWebStream} with a recording relay stand-in as its handler, and the
 * response it answers with.
 */
function recordedStream(sendTimeoutMs: number) {
  const { promise, resolve } = Promise.withResolvers<Response>();
  const stream = new GrpcWebStream(
    { contentType: "application/grpc-web", text: false, cors: new Headers(), sendTimeoutMs },
    resolve,
    () => {},
  );
  const handler = recordingHandler();
  stream.handler = handler;
  return { stream, handler, promise };
}

/** A relay stand-in that records what a {@link GrpcWebStream} tells it. */
function recordingHandler(): StreamHandler & { closes: number[]; flushed: number } {
  const handler = {
    closes: [] as number[],
    flushed: 0,
    onHeaders() {},
    onData() {},
    onFlushed(_stream: TransportStream, bytes: number) {
      handler.flushed += bytes;
    },
    onClose(_stream: TransportStream, cause: number) {
      handler.closes.push(cause);
    },
  };
  return handler;
}

Deno.test("gRPC-Web stream: headers a browser response cannot carry are dropped, not thrown", async () => {
  const { stream, handler, promise } = recordedStream(1000);
  stream.sendHeaders([
    ":status",
    "600",
    "content-length",
    "5",
    "bad(name",
    "x",
    "access-control-allow-origin",
    "*",
    "x-ok",
    "1",
  ], false);
  const response = await promise;
  assert.equal(response.status, 200);
  assert.equal(response.headers.get("content-length"), null);
  assert.equal(response.headers.get("access-control-allow-origin"), null);
  assert.equal(response.headers.get("x-ok"), "1");
  stream.sendData(frame(encoder.encode("hello")), false);
  stream.sendTrailers(["grpc-status", "0"]);
  const body = parseFrames(new Uint8Array(await response.arrayBuffer()));
  assert.equal(decoder.decode(body.messages[0]), "hello", "nothing cut short");
  await waitFor(() => handler.closes.length > 0, { what: "the close" });
  assert.deepEqual(handler.closes, [CloseCause.DONE]);
});

Deno.test("gRPC-Web stream: a browser that stops reading loses the call after the send timeout", async () => {
  const { stream, handler, promise } = recordedStream(50);
  stream.sendHeaders([":status", "200"], false);
  const response = await promise;
  // More than the stream buffers, and nobody reads.
  for (let i = 0; i < 5; i++) stream.sendData(new Uint8Array(100_000), false);
  await waitFor(() => handler.closes.length > 0, { what: "the stall to end the call" });
  assert.deepEqual(handler.closes, [CloseCause.LOCAL_RESET]);
  assert.match(stream.closeReason, /no progress for 50ms/);
  await assert.rejects(response.arrayBuffer());
});
