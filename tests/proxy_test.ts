/**
 * End-to-end relay tests: real grpc-js clients → the real proxy process → real grpc-js (or
 * raw `node:http2`) backends, all on loopback.
 */
import * as grpc from "@grpc/grpc-js";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import http2 from "node:http2";
import { parseGrpcTimeout } from "../src/proxy/deadline.ts";
import {
  clusterConfig,
  freePort,
  GRPC_JS,
  type ProxyProcess,
  startProxy,
  waitFor,
} from "./support/harness.ts";
import {
  closeRaw,
  connectRaw,
  type RawBackend,
  rawCall,
  respondOk,
  startRawBackend,
} from "./support/raw_h2.ts";
import {
  collectStream,
  expectedStream,
  expectServiceError,
  FAIL_IMMEDIATELY_STATUS,
  FAIL_STATUS,
  rawBytes,
  serverStream,
  startHeldRawStream,
  startTestBackend,
  type TestBackend,
  testClient,
  TestMethod,
  unaryCall,
} from "./support/test_backend.ts";

/** Runs `body` against a fresh backend `b1` behind a fresh proxy, and cleans both up. */
async function withProxiedBackend(
  body: (ctx: { backend: TestBackend; proxy: ProxyProcess; client: grpc.Client }) => Promise<void>,
): Promise<void> {
  const backend = await startTestBackend("b1");
  try {
    const proxy = await startProxy(clusterConfig([backend.address]));
    try {
      const client = testClient(proxy.address);
      try {
        await body({ backend, proxy, client });
      } finally {
        client.close();
      }
    } finally {
      await proxy.stop();
    }
  } finally {
    await backend.stop();
  }
}

/** Random bytes that surely include 0x00 and 0xff, the values base64 and text paths break. */
function binaryValue(length: number): Buffer {
  const value = randomBytes(length);
  value[0] = 0x00;
  value[1] = 0xff;
  return value;
}

Deno.test({
  name: "relay: call shapes, errors, metadata, large messages, deadlines, cancellation",
  ...GRPC_JS,
  fn: (t) =>
    withProxiedBackend(async ({ backend, proxy, client }) => {
      await t.step("unary echo is served by the backend", async () => {
        const request = randomBytes(1024);
        const { response, headers } = await unaryCall(client, TestMethod.echo, request);
        assert.deepEqual(response, request);
        assert.deepEqual(headers.get("x-backend"), ["b1"]);
      });

      await t.step("client streaming", async () => {
        const parts = [randomBytes(10), randomBytes(1000), Buffer.alloc(0), randomBytes(70_000)];
        const response = await new Promise<Buffer>((resolve, reject) => {
          const call = client.makeClientStreamRequest<Buffer, Buffer>(
            TestMethod.collect,
            rawBytes,
            rawBytes,
            new grpc.Metadata(),
            {},
            (error, value) => error ? reject(error) : resolve(value!),
          );
          for (const part of parts) call.write(part);
          call.end();
        });
        assert.deepEqual(response, Buffer.concat(parts));
      });

      await t.step("server streaming", async () => {
        const { messages } = await collectStream(serverStream(client, 200, 3000));
        assert.deepEqual(messages, expectedStream(200, 3000));
      });

      await t.step("bidi streaming echoes each message before the next is sent", async () => {
        const call = client.makeBidiStreamRequest<Buffer, Buffer>(
          TestMethod.chat,
          rawBytes,
          rawBytes,
        );
        const echoes: Buffer[] = [];
        call.on("data", (message: Buffer) => echoes.push(message));
        const result = collectStream(call);
        const sent: Buffer[] = [];
        for (let i = 0; i < 20; i++) {
          sent.push(randomBytes(100 + i));
          call.write(sent[i]);
          await waitFor(() => echoes.length === sent.length, { what: `echo ${i}` });
        }
        call.end();
        assert.deepEqual((await result).messages, sent);
      });

      await t.step("an error keeps its status, message and custom trailers", async () => {
        const detailBin = binaryValue(64);
        const metadata = new grpc.Metadata();
        metadata.set("x-error-detail", "quota of tenant 42");
        metadata.set("x-error-detail-bin", detailBin);
        const error = await expectServiceError(
          unaryCall(client, TestMethod.fail, Buffer.alloc(0), { metadata }),
        );
        assert.equal(error.code, FAIL_STATUS.code);
        assert.equal(error.details, FAIL_STATUS.details);
        assert.deepEqual(error.metadata.get("x-error-detail"), ["quota of tenant 42"]);
        assert.deepEqual(error.metadata.get("x-error-detail-bin"), [detailBin]);
      });

      await t.step("a trailers-only error stays trailers-only", async () => {
        const error = await expectServiceError(unaryCall(client, TestMethod.failImmediately));
        assert.equal(error.code, FAIL_IMMEDIATELY_STATUS.code);
        assert.equal(error.details, FAIL_IMMEDIATELY_STATUS.details);

        const session = await connectRaw(proxy.address);
        try {
          const raw = await rawCall(session, TestMethod.failImmediately);
          assert.equal(raw.headers?.["grpc-status"], String(FAIL_IMMEDIATELY_STATUS.code));
          assert.equal(raw.trailers, undefined, "status must travel in the only HEADERS frame");
          assert.equal(raw.body.length, 0);
        } finally {
          await closeRaw(session);
        }
      });

      await t.step("-bin metadata round-trips byte-exact in headers and trailers", async () => {
        const blob = binaryValue(300);
        const second = binaryValue(1);
        const metadata = new grpc.Metadata();
        metadata.add("x-blob-bin", blob);
        metadata.add("x-blob-bin", second);
        metadata.set("x-text", "plain value");
        const { headers, status } = await unaryCall(client, TestMethod.echoMetadata, undefined, {
          metadata,
        });
        for (const received of [headers, status.metadata]) {
          assert.deepEqual(received.get("x-blob-bin"), [blob, second]);
          assert.deepEqual(received.get("x-text"), ["plain value"]);
        }
      });

      await t.step("a 4 MiB message crosses in both directions", async () => {
        const request = randomBytes(4 << 20);
        const { response } = await unaryCall(client, TestMethod.echo, request);
        assert.ok(response.equals(request));
      });

      await t.step(
        "deadline: the backend gets a no-longer timeout and sees the cancel",
        async () => {
          const timeoutMs = 1500;
          const before = backend.hangs.length;
          const error = await expectServiceError(
            unaryCall(client, TestMethod.hang, undefined, { timeoutMs }),
          );
          assert.equal(error.code, grpc.status.DEADLINE_EXCEEDED);
          const hang = backend.hangs[before];
          assert.ok(hang.remainingMs !== undefined, "the proxy must forward grpc-timeout");
          assert.ok(hang.remainingMs <= timeoutMs, `backend deadline ${hang.remainingMs}ms`);
          assert.ok(hang.remainingMs > 0);
          await waitFor(() => hang.cancelled, { what: "backend to see the cancellation" });
        },
      );

      await t.step("a client cancel reaches the backend (unary)", async () => {
        const before = backend.hangs.length;
        let call: grpc.ClientUnaryCall | undefined;
        const outcome = expectServiceError(
          unaryCall(client, TestMethod.hang, undefined, { onCall: (c) => call = c }),
        );
        await waitFor(() => backend.hangs.length > before, { what: "call to reach backend" });
        call!.cancel();
        assert.equal((await outcome).code, grpc.status.CANCELLED);
        await waitFor(() => backend.hangs[before].cancelled, { what: "backend cancelled event" });
      });

      await t.step("a client cancel reaches the backend (server stream)", async () => {
        const before = backend.streamCancellations();
        const call = serverStream(client, 10, 100, { "x-hold": "1" });
        call.on("error", () => {}); // CANCELLED, expected
        await new Promise((resolve) => call.once("data", resolve));
        call.cancel();
        await waitFor(() => backend.streamCancellations() > before, {
          what: "backend to see the stream cancelled",
        });
      });
    }),
});

Deno.test({
  name: "deadline: the proxy ends the call itself and cancels the backend stream",
  ...GRPC_JS,
  fn: async () => {
    // A raw backend that never answers: it records the grpc-timeout it got and the reset.
    const seen: { timeout?: string; rstCode?: number } = {};
    const backend = await startRawBackend((stream, headers) => {
      seen.timeout = String(headers["grpc-timeout"]);
      stream.once("close", () => seen.rstCode = stream.rstCode);
    });
    try {
      const proxy = await startProxy(clusterConfig([backend.address]));
      try {
        const session = await connectRaw(proxy.address);
        try {
          // No client-side timer: only the proxy can end this call.
          const result = await rawCall(session, TestMethod.hang, undefined, {
            "grpc-timeout": "800m",
          });
          assert.equal(result.grpcStatus, grpc.status.DEADLINE_EXCEEDED);
          assert.match(result.grpcMessage ?? "", /deadline exceeded after \d+ms \(backend 127/);
          const forwarded = parseGrpcTimeout(seen.timeout ?? "");
          assert.ok(forwarded !== undefined, `forwarded grpc-timeout ${seen.timeout}`);
          assert.ok(forwarded <= 800 && forwarded > 0, `forwarded grpc-timeout ${seen.timeout}`);
          await waitFor(() => seen.rstCode !== undefined, { what: "backend stream reset" });
          assert.equal(seen.rstCode, http2.constants.NGHTTP2_CANCEL);
        } finally {
          await closeRaw(session);
        }
      } finally {
        await proxy.stop();
      }
    } finally {
      await backend.close();
    }
  },
});

Deno.test({
  name: "a backend that is down gives UNAVAILABLE naming the cluster and the backend",
  ...GRPC_JS,
  fn: async () => {
    const deadPort = await freePort();
    const proxy = await startProxy(clusterConfig([`127.0.0.1:${deadPort}`], {}, "ghost"));
    const client = testClient(proxy.address);
    try {
      const error = await expectServiceError(unaryCall(client, TestMethod.echo));
      assert.equal(error.code, grpc.status.UNAVAILABLE);
      assert.match(error.details, /cluster ghost/);
      assert.match(error.details, new RegExp(`127\\.0\\.0\\.1:${deadPort}: .*ECONNREFUSED`));
    } finally {
      client.close();
      await proxy.stop();
    }
  },
});

Deno.test({
  name: "a call with no route gives UNIMPLEMENTED",
  ...GRPC_JS,
  fn: () =>
    withProxiedBackend(async ({ backend, client }) => {
      const error = await expectServiceError(unaryCall(client, "/other.Service/Method"));
      assert.equal(error.code, grpc.status.UNIMPLEMENTED);
      assert.match(error.details, /no route for \/other\.Service\/Method/);
      assert.equal(backend.calls(), 0);
    }),
});

Deno.test({
  name: "SIGTERM drains: an in-flight stream completes, then the process exits 0",
  ...GRPC_JS,
  fn: () =>
    withProxiedBackend(async ({ backend, proxy }) => {
      const session = await connectRaw(proxy.address);
      try {
        const held = await startHeldRawStream(session, 50, 1000);
        proxy.child.kill("SIGTERM");
        await waitFor(() => proxy.output().includes("draining"), { what: "proxy to drain" });
        await assert.rejects(connectRaw(proxy.address), "a draining proxy accepts no connections");
        backend.release();
        const result = await held.result;
        assert.equal(result.grpcStatus, grpc.status.OK);
        assert.deepEqual(result.body, held.expectedBody);
        assert.equal((await proxy.exited).code, 0);
      } finally {
        session.destroy();
      }
    }),
});

/**
 * Runs `body` with a raw client session to a fresh proxy in front of a fresh raw backend
 * (`onStream` and `settings` as {@link startRawBackend} takes them), and cleans all up.
 */
async function withRawBackendProxy(
  onStream: (stream: http2.ServerHttp2Stream) => void,
  settings: http2.Settings,
  body: (ctx: { backend: RawBackend; session: http2.ClientHttp2Session }) => Promise<void>,
): Promise<void> {
  const backend = await startRawBackend(onStream, settings);
  try {
    const proxy = await startProxy(clusterConfig([backend.address]));
    try {
      const session = await connectRaw(proxy.address);
      try {
        await body({ backend, session });
      } finally {
        await closeRaw(session);
      }
    } finally {
      await proxy.stop();
    }
  } finally {
    await backend.close();
  }
}

Deno.test({
  name: "a backend's SETTINGS_MAX_CONCURRENT_STREAMS makes the proxy open more connections",
  ...GRPC_JS,
  fn: () => {
    const held: http2.ServerHttp2Stream[] = [];
    return withRawBackendProxy(
      (stream) => held.push(stream),
      { maxConcurrentStreams: 2 },
      async ({ backend, session }) => {
        const calls = Array.from({ length: 5 }, () => rawCall(session, "/test.Test/Echo"));
        await waitFor(() => held.length === 5, { what: "all 5 calls to reach the backend" });
        assert.equal(backend.sessions.size, 3, "2 + 2 + 1 streams need 3 connections");
        for (const stream of held) respondOk(stream);
        const results = await Promise.all(calls);
        assert.deepEqual(results.map((result) => result.grpcStatus), [0, 0, 0, 0, 0]);
      },
    );
  },
});

Deno.test({
  name: "an empty grpc-timeout gets INTERNAL whose grpc-message has no trailing whitespace",
  ...GRPC_JS,
  fn: () =>
    withRawBackendProxy(respondOk, {}, async ({ session }) => {
      const result = await rawCall(session, TestMethod.echo, undefined, { "grpc-timeout": "" });
      assert.equal(result.grpcStatus, grpc.status.INTERNAL);
      // RFC 9113 §8.2.1: a field value must not start or end with whitespace; a client's
      // HTTP/2 stack may drop such a field, and the message with it.
      const message = result.headers?.["grpc-message"];
      assert.equal(typeof message, "string", "the client received a grpc-message");
      assert.doesNotMatch(String(message), /^[ \t]|[ \t]$/, JSON.stringify(message));
      assert.match(result.grpcMessage ?? "", /malformed grpc-timeout ""/);
    }),
});

Deno.test({
  name: "content-type: only application/grpc, +subtype or ;params is gRPC",
  ...GRPC_JS,
  fn: () =>
    withRawBackendProxy(respondOk, {}, async ({ session }) => {
      const expected: [string, number][] = [
        ["application/grpcfoo", 415],
        ["application/grpc-web", 415],
        ["text/plain", 415],
        ["application/grpc", 200],
        ["application/grpc+proto", 200],
        ["application/grpc+json", 200],
        ["application/grpc;charset=utf-8", 200],
      ];
      for (const [contentType, httpStatus] of expected) {
        const result = await rawCall(session, TestMethod.echo, undefined, {
          "content-type": contentType,
        });
        assert.equal(result.headers?.[":status"], httpStatus, contentType);
        const grpcStatus = httpStatus === 200 ? grpc.status.OK : grpc.status.INTERNAL;
        assert.equal(result.grpcStatus, grpcStatus, contentType);
      }
    }),
});
