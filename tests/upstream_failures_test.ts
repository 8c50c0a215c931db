/**
 * How the proxy treats backends that misbehave: resets, missing trailers, peers that do not
 * speak HTTP/2, connections dropped at once, backends that never become ready, and extreme
 * deadlines. Each failure must reach the client as the right status, and none may crash
 * the proxy or make it spin.
 */
import assert from "node:assert/strict";
import http2 from "node:http2";
import net from "node:net";
import { clusterConfig, GRPC_JS, startProxy, waitFor } from "./support/harness.ts";
import {
  closeRaw,
  connectRaw,
  grpcFrame,
  grpcRequestHeaders,
  rawCall,
  resetStream,
  respondOk,
  startRawBackend,
} from "./support/raw_h2.ts";

const { NGHTTP2_CANCEL, NGHTTP2_REFUSED_STREAM, NGHTTP2_INTERNAL_ERROR } = http2.constants;

/** A TCP server whose every connection is handed to `onConnection`; counts connections. */
async function startTcpServer(
  onConnection: (socket: net.Socket) => void,
): Promise<{ address: string; accepted: () => number; close: () => Promise<void> }> {
  let accepted = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    accepted++;
    sockets.add(socket);
    socket.on("error", () => {});
    socket.once("close", () => sockets.delete(socket));
    onConnection(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    address: `127.0.0.1:${port}`,
    accepted: () => accepted,
    close: () => {
      for (const socket of sockets) socket.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

Deno.test({
  name: "a backend RST_STREAM reaches the client with its own code",
  ...GRPC_JS,
  fn: async () => {
    const backend = await startRawBackend((stream, headers) => {
      const code = Number(headers["x-reset-code"]);
      if (headers["x-respond-first"] === "1") {
        stream.respond({ ":status": 200, "content-type": "application/grpc" });
      }
      // resetStream: a plain close() after headers would send END_STREAM instead.
      setImmediate(() => resetStream(stream, code));
    });
    const proxy = await startProxy(clusterConfig([backend.address]));
    const client = await connectRaw(proxy.address);
    try {
      for (const code of [NGHTTP2_CANCEL, NGHTTP2_REFUSED_STREAM, NGHTTP2_INTERNAL_ERROR]) {
        for (const respondFirst of ["0", "1"]) {
          const result = await rawCall(client, "/test.Test/Echo", undefined, {
            "x-reset-code": String(code),
            "x-respond-first": respondFirst,
          });
          assert.equal(result.rstCode, code, `reset ${code}, headers first: ${respondFirst}`);
          assert.equal(result.grpcStatus, undefined, "a reset carries no status");
        }
      }
      assert.ok(!proxy.hasExited());
    } finally {
      await closeRaw(client);
      await proxy.stop();
      await backend.close();
    }
  },
});

Deno.test({
  name: "a backend that ends without trailers gives INTERNAL naming the backend",
  ...GRPC_JS,
  fn: async () => {
    const backend = await startRawBackend((stream) => {
      stream.respond({ ":status": 200, "content-type": "application/grpc" });
      stream.end();
    });
    const proxy = await startProxy(clusterConfig([backend.address]));
    const client = await connectRaw(proxy.address);
    try {
      const result = await rawCall(client, "/test.Test/Echo");
      assert.equal(result.grpcStatus, 13);
      assert.match(result.grpcMessage ?? "", new RegExp(`${backend.address}.*without trailers`));
    } finally {
      await closeRaw(client);
      await proxy.stop();
      await backend.close();
    }
  },
});

Deno.test({
  name: "a backend that is not an HTTP/2 server gets UNAVAILABLE and does not crash the proxy",
  ...GRPC_JS,
  fn: async () => {
    const http1 = await startTcpServer((socket) =>
      socket.once("data", () => socket.end("HTTP/1.1 400 Bad Request\r\n\r\n"))
    );
    const good = await startRawBackend(respondOk);
    const proxy = await startProxy({
      drain: { timeout: "5s" },
      clusters: {
        bad: { backends: [http1.address], waitForReadyTimeout: "200ms" },
        good: { backends: [good.address] },
      },
      routes: [{ service: "bad.Service", cluster: "bad" }, { cluster: "good" }],
    });
    const client = await connectRaw(proxy.address);
    try {
      await waitFor(() => http1.accepted() >= 2, { what: "the proxy to retry the bad backend" });
      const bad = await rawCall(client, "/bad.Service/Call");
      assert.equal(bad.grpcStatus, 14);
      assert.match(bad.grpcMessage ?? "", /cluster bad/);
      const ok = await rawCall(client, "/test.Test/Echo");
      assert.equal(ok.grpcStatus, 0, "other clusters keep serving");
      assert.ok(!proxy.hasExited(), proxy.output());
    } finally {
      await closeRaw(client);
      await proxy.stop();
      await Promise.all([http1.close(), good.close()]);
    }
  },
});

Deno.test({
  name: "a backend that drops every connection at once is retried with backoff, not in a loop",
  ...GRPC_JS,
  fn: async () => {
    // Completes the HTTP/2 handshake, then closes: the connection never carries a stream.
    const flaky = await startRawBackend(() => {});
    const closer = new Set<http2.ServerHttp2Session>();
    const proxy = await startProxy(clusterConfig([flaky.address], {
      reconnectBackoff: { initial: "100ms", max: "1s" },
    }));
    try {
      const startedAt = Date.now();
      let dropped = 0;
      await waitFor(() => {
        for (const session of flaky.sessions) {
          if (closer.has(session)) continue;
          closer.add(session);
          dropped++;
          session.destroy();
        }
        return Date.now() - startedAt > 2_000;
      }, { intervalMs: 5, timeoutMs: 5_000, what: "two seconds of dropped connections" });
      // Backoff of 100ms growing ×1.6 allows about 8 attempts in 2 s; a loop would make
      // hundreds.
      assert.ok(dropped <= 15, `the proxy reconnected ${dropped} times in 2 s`);
      assert.ok(dropped >= 2, "and it does keep retrying");
      assert.ok(!proxy.hasExited());
    } finally {
      await proxy.stop();
      await flaky.close();
    }
  },
});

Deno.test({
  name: "a call waits for a connecting backend up to its deadline (DEADLINE_EXCEEDED), " +
    "or without one up to waitForReadyTimeout (UNAVAILABLE)",
  ...GRPC_JS,
  fn: async () => {
    // Accepts TCP but never sends SETTINGS: the backend stays CONNECTING.
    const silent = await startTcpServer(() => {});
    const proxy = await startProxy(clusterConfig([silent.address], {
      connectTimeout: "30s",
      waitForReadyTimeout: "300ms",
    }));
    const client = await connectRaw(proxy.address);
    try {
      let startedAt = Date.now();
      const withDeadline = await rawCall(client, "/test.Test/Echo", undefined, {
        "grpc-timeout": "1500m",
      });
      const waitedWithDeadline = Date.now() - startedAt;
      assert.equal(withDeadline.grpcStatus, 4, "the client's deadline ended the wait");
      assert.match(withDeadline.grpcMessage ?? "", /waiting for a backend/);
      assert.ok(waitedWithDeadline >= 1_400, `waited only ${waitedWithDeadline}ms of 1500ms`);

      startedAt = Date.now();
      const withoutDeadline = await rawCall(client, "/test.Test/Echo");
      const waitedWithout = Date.now() - startedAt;
      assert.equal(withoutDeadline.grpcStatus, 14);
      assert.ok(waitedWithout >= 250, `waited ${waitedWithout}ms, the default is 300ms`);
      assert.ok(waitedWithout < 1_400, `waited ${waitedWithout}ms, the default is 300ms`);
      assert.match(withoutDeadline.grpcMessage ?? "", /became ready within 300ms/);
    } finally {
      await closeRaw(client);
      await proxy.stop();
      await silent.close();
    }
  },
});

Deno.test({
  name: "a grpc-timeout beyond what a timer can hold does not expire at once",
  ...GRPC_JS,
  fn: async () => {
    const backend = await startRawBackend((stream) => setTimeout(() => respondOk(stream), 50));
    const proxy = await startProxy(clusterConfig([backend.address]));
    const client = await connectRaw(proxy.address);
    try {
      for (const timeout of ["99999999H", "3000000S"]) {
        const result = await rawCall(client, "/test.Test/Echo", undefined, {
          "grpc-timeout": timeout,
        });
        assert.equal(result.grpcStatus, 0, `grpc-timeout ${timeout}`);
      }
    } finally {
      await closeRaw(client);
      await proxy.stop();
      await backend.close();
    }
  },
});

Deno.test({
  name: "a backend that answers before the request ends leaves no stream open behind it",
  ...GRPC_JS,
  fn: async () => {
    // Reads the request but answers trailers-only at once, while the client is still sending.
    const backend = await startRawBackend((stream) => {
      stream.resume();
      stream.respond({ ":status": 200, "content-type": "application/grpc", "grpc-status": "0" }, {
        endStream: true,
      });
    });
    const proxy = await startProxy(clusterConfig([backend.address]));
    const client = await connectRaw(proxy.address);
    const activeStreams = async () => {
      const response = await fetch(`http://${proxy.adminAddress}/clusters/echo`);
      return (await response.json()).backends[0].activeStreams as number;
    };
    try {
      for (const finish of ["end", "cancel"] as const) {
        const stream = client.request(grpcRequestHeaders("/test.Test/Echo"));
        stream.on("error", () => {});
        stream.resume();
        stream.write(grpcFrame(new Uint8Array(10)));
        await new Promise((resolve) => stream.once("response", resolve));
        if (finish === "end") stream.end();
        else resetStream(stream, NGHTTP2_CANCEL);
        await waitFor(async () => (await activeStreams()) === 0, {
          what: `the backend stream to close after the client's ${finish}`,
        });
      }
    } finally {
      await closeRaw(client);
      await proxy.stop();
      await backend.close();
    }
  },
});
