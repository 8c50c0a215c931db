/**
 * The backend pool's promises (`src/upstream/upstream.ts`), against the real proxy process
 * and real backends on loopback: keepalive finds a blackholed backend and leaves a healthy
 * idle one alone; a backend that allows no streams gets its calls queued, not a dial storm;
 * the pool grows only at the backend's stream limit and never past
 * `http2.upstream.maxConnectionsPerBackend`; one lost connection costs one redial; and a
 * backend's GOAWAY costs no call.
 */
import assert from "node:assert/strict";
import http2 from "node:http2";
import { adminRequest, startAdminProxy } from "./support/admin_client.ts";
import {
  clusterConfig,
  GRPC_JS,
  type ProxyProcess,
  startProxy,
  waitFor,
} from "./support/harness.ts";
import { startH2RawBackend } from "./support/h2_raw_backend.ts";
import {
  CLIENT_PREFACE,
  concatBytes,
  encodeFrame,
  ErrorCode,
  Flag,
  FrameType,
  Setting,
  settingsPayload,
} from "./support/h2_wire.ts";
import {
  connectRaw,
  rawCall,
  type RawCallResult,
  respondOk,
  startRawBackend,
} from "./support/raw_h2.ts";
import { startTcpBackend } from "./support/tcp_backend.ts";

const ECHO = "/test.Test/Echo";
const OK = 0;
const DEADLINE_EXCEEDED = 4;
const UNAVAILABLE = 14;

/** The keepalive settings under test: short, so a dead connection is found in about a second. */
const KEEPALIVE_INTERVAL_MS = 300;
const KEEPALIVE_TIMEOUT_MS = 300;
const KEEPALIVE = {
  keepaliveInterval: `${KEEPALIVE_INTERVAL_MS}ms`,
  keepaliveTimeout: `${KEEPALIVE_TIMEOUT_MS}ms`,
};

/**
 * How late a keepalive close may come after the connection went quiet. The proxy checks for
 * reads once per interval, so a connection that goes quiet just after a check is pinged only
 * at the check after next: up to two intervals, then the PING's timeout. The slack covers
 * scheduling on a loaded machine.
 */
const KEEPALIVE_CLOSE_BOUND_MS = 2 * KEEPALIVE_INTERVAL_MS + KEEPALIVE_TIMEOUT_MS + 500;

/** {@link clusterConfig} with `http2.upstream` settings. */
function poolConfig(
  backends: readonly string[],
  upstream: Record<string, unknown>,
  cluster: Record<string, unknown> = {},
): Record<string, unknown> {
  return { ...clusterConfig(backends, cluster), http2: { upstream } };
}

/** Log messages so far that match `pattern`. */
function logMessages(proxy: ProxyProcess, pattern: RegExp): string[] {
  return proxy.logs().map((line) => String(line.message)).filter((message) =>
    pattern.test(message)
  );
}

/**
 * Waits until the upstream logged `times` times that `address` became READY (its SETTINGS
 * arrived); it logs each time the backend gets there from another state.
 */
async function connected(proxy: ProxyProcess, address: string, times = 1): Promise<void> {
  await waitFor(
    () =>
      logMessages(proxy, /^backend connected /).filter((m) => m.includes(address)).length >=
        times,
    { what: `the proxy to connect to ${address} (${times})` },
  );
}

/** Calls the proxy has on the backend at `address` of cluster `echo`, started or waiting. */
async function activeStreams(proxy: ProxyProcess, address: string): Promise<number> {
  const { body } = await adminRequest(proxy, "/clusters/echo");
  return body.backends.find((b: { address: string }) => b.address === address).activeStreams;
}

/** `count` concurrent calls on `client` with `grpc-timeout` `timeout`. */
function concurrentCalls(
  client: http2.ClientHttp2Session,
  count: number,
  timeout: string,
): Promise<RawCallResult>[] {
  return Array.from(
    { length: count },
    () => rawCall(client, ECHO, undefined, { "grpc-timeout": timeout }),
  );
}

/** The statuses of `results`, as `status: count` for readable failures. */
function statusCounts(results: readonly RawCallResult[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const { grpcStatus, rstCode } of results) {
    const key = grpcStatus === undefined ? `rst ${rstCode}` : String(grpcStatus);
    counts[key] = (counts[key] ?? 0) + 1;
  }
  return counts;
}

/** The distinct grpc-messages of `results` that are not OK, for assertion messages. */
function failureMessages(results: readonly RawCallResult[]): string {
  const messages = new Set(
    results.filter((r) => r.grpcStatus !== OK).map((r) => `${r.grpcStatus}: ${r.grpcMessage}`),
  );
  return [...messages].join("; ");
}

/** A backend that completes the HTTP/2 handshake once, then never reads or writes again. */
interface BlackholeBackend {
  /** `127.0.0.1:port`. */
  readonly address: string;
  /** When the first connection's handshake went out: the connection is quiet from then on. */
  readonly quietSince: number | undefined;
  /** Connections accepted so far. */
  readonly accepted: number;
  /** Stops listening and closes every connection. */
  close(): Promise<void>;
}

/**
 * Starts a blackholed backend: its first connection gets an empty SETTINGS frame and a
 * SETTINGS ACK after the client preface, so the proxy sees it READY, and then nothing, not
 * even a PING ACK, as when a host vanishes behind a firewall that drops its packets. Later
 * connections are accepted and never answered, as a host that is still gone would (the
 * raw-frame backend of `support/h2_raw_backend.ts` answers every PING, so it cannot do this).
 */
function startBlackholeBackend(): BlackholeBackend {
  let quietSince: number | undefined;
  const handshake = async (conn: Deno.Conn) => {
    const buffer = new Uint8Array(4096);
    for (let received = 0; received < CLIENT_PREFACE.length;) {
      const count = await conn.read(buffer.subarray(received));
      if (count === null) return;
      received += count;
    }
    const reply = concatBytes(
      encodeFrame({ type: FrameType.SETTINGS, payload: settingsPayload([]) }),
      encodeFrame({ type: FrameType.SETTINGS, flags: Flag.ACK }),
    );
    for (let at = 0; at < reply.length;) at += await conn.write(reply.subarray(at));
    quietSince = Date.now();
  };
  const backend = startTcpBackend((conn, index) => {
    if (index === 0) handshake(conn).catch(() => {});
  });
  return {
    address: backend.address,
    get quietSince() {
      return quietSince;
    },
    get accepted() {
      return backend.conns.length;
    },
    close: () => backend.close(),
  };
}

Deno.test({
  name: "keepalive closes a blackholed backend connection; its call gets UNAVAILABLE naming it",
  ...GRPC_JS,
  fn: async () => {
    const blackhole = startBlackholeBackend();
    const proxy = await startProxy(poolConfig([blackhole.address], KEEPALIVE));
    const client = await connectRaw(proxy.address);
    try {
      await connected(proxy, blackhole.address);
      const quietSince = await waitFor(() => blackhole.quietSince, { what: "the handshake" });
      // The call goes out on the blackholed connection and would wait its whole deadline,
      // were keepalive not to find the connection dead.
      const result = await rawCall(client, ECHO, undefined, { "grpc-timeout": "10S" });
      const closedAfterMs = Date.now() - quietSince;
      assert.equal(result.grpcStatus, UNAVAILABLE, JSON.stringify(result.grpcMessage));
      assert.match(result.grpcMessage ?? "", new RegExp(blackhole.address));
      assert.ok(
        closedAfterMs <= KEEPALIVE_CLOSE_BOUND_MS,
        `the connection was closed ${closedAfterMs}ms after it went quiet ` +
          `(bound ${KEEPALIVE_CLOSE_BOUND_MS}ms)`,
      );
      assert.ok(
        closedAfterMs >= KEEPALIVE_INTERVAL_MS + KEEPALIVE_TIMEOUT_MS - 50,
        `the connection was closed ${closedAfterMs}ms after it went quiet: before a whole ` +
          `interval and timeout`,
      );
      const lost = logMessages(proxy, /^backend connection lost /);
      assert.equal(lost.length, 1, lost.join("\n"));
      assert.match(lost[0], new RegExp(`${blackhole.address}.*keepalive`));

      // The backend is still gone: the proxy redials, the redial never completes, and calls
      // fail at once naming the backend.
      await waitFor(() => blackhole.accepted >= 2, { what: "a redial" });
      const next = await rawCall(client, ECHO, undefined, { "grpc-timeout": "3S" });
      assert.equal(next.grpcStatus, UNAVAILABLE, JSON.stringify(next.grpcMessage));
      assert.match(next.grpcMessage ?? "", new RegExp(blackhole.address));
      console.log(`keepalive: blackholed connection closed ${closedAfterMs}ms after going quiet`);
    } finally {
      client.destroy();
      await proxy.stop();
      await blackhole.close();
    }
  },
});

Deno.test({
  name: "keepalive keeps a healthy idle backend connection and moves calls off a blackholed one",
  ...GRPC_JS,
  fn: async () => {
    const blackhole = startBlackholeBackend();
    const healthy = await startRawBackend(respondOk);
    const proxy = await startProxy(poolConfig([blackhole.address, healthy.address], KEEPALIVE, {
      picker: "round_robin",
    }));
    const client = await connectRaw(proxy.address);
    try {
      await connected(proxy, healthy.address);
      const session = await waitFor(
        () => healthy.sessions.size === 1 ? [...healthy.sessions][0] : undefined,
        { what: "the healthy backend's connection" },
      );
      let pings = 0;
      session.on("ping", () => pings++);

      const [blackholeLost] = await waitFor(() => {
        const lost = logMessages(proxy, /^backend connection lost /);
        return lost.length > 0 ? lost : undefined;
      }, {
        timeoutMs: KEEPALIVE_CLOSE_BOUND_MS + 2_000,
        what: "keepalive to close the blackholed connection",
      });
      assert.match(blackholeLost, new RegExp(`${blackhole.address}.*keepalive`));
      const results = await Promise.all(concurrentCalls(client, 6, "3S"));
      assert.deepEqual(
        statusCounts(results),
        { [OK]: 6 },
        `every call goes to the healthy one: ${failureMessages(results)}`,
      );

      // Idle again: the proxy pings the healthy connection every quiet interval, and each
      // PING is answered, so the connection must survive all of them.
      const pingsBefore = pings;
      await waitFor(() => pings >= pingsBefore + 3, {
        timeoutMs: 10 * KEEPALIVE_INTERVAL_MS + 3_000,
        what: "three keepalive PINGs on the idle healthy connection",
      });
      assert.equal(healthy.sessions.size, 1);
      assert.ok(healthy.sessions.has(session) && !session.destroyed, "the same connection");
      const lost = logMessages(proxy, /^backend connection lost /);
      assert.ok(
        lost.every((message) => !message.includes(healthy.address)),
        `the healthy backend's connection was lost:\n${lost.join("\n")}`,
      );
      const after = await rawCall(client, ECHO, undefined, { "grpc-timeout": "3S" });
      assert.equal(after.grpcStatus, OK);
      assert.ok(healthy.sessions.has(session), "served on the same connection");
    } finally {
      client.destroy();
      await proxy.stop();
      await Promise.all([blackhole.close(), healthy.close()]);
    }
  },
});

Deno.test({
  name: "SETTINGS_MAX_CONCURRENT_STREAMS 0 queues calls on one connection, without a dial storm",
  ...GRPC_JS,
  fn: async (t) => {
    // The raw-frame backend, because it counts every connection it accepts and can send a
    // new SETTINGS frame at any time (node:http2's session.settings() on Deno 2.9.6 queues
    // the frame but does not send it until something else is written).
    const backend = startH2RawBackend({
      settings: [[Setting.MAX_CONCURRENT_STREAMS, 0]],
      onStream: (connection, id) => connection.respond(id),
    });
    const proxy = await startAdminProxy(clusterConfig([backend.address]));
    const client = await connectRaw(proxy.address);
    const streams = () => backend.connections.reduce((sum, c) => sum + c.streams.length, 0);
    try {
      await connected(proxy, backend.address);

      await t.step(
        "calls wait out their deadline: DEADLINE_EXCEEDED, not UNAVAILABLE",
        async () => {
          const startedAt = Date.now();
          const results = await Promise.all(concurrentCalls(client, 20, "1S"));
          const tookMs = Date.now() - startedAt;
          assert.deepEqual(statusCounts(results), { [DEADLINE_EXCEEDED]: 20 });
          assert.ok(tookMs >= 900, `the calls ended after ${tookMs}ms, before their deadline`);
          assert.equal(streams(), 0, "the backend allowed no stream, so it must have seen none");
          assert.equal(backend.connections.length, 1, "the backend was dialled more than once");
          await waitFor(
            async () => (await activeStreams(proxy, backend.address)) === 0,
            { what: "the expired calls to leave the connection's queue" },
          );
        },
      );

      await t.step("the backend raising its limit starts the queued calls", async () => {
        const calls = concurrentCalls(client, 20, "10S");
        await waitFor(
          async () => (await activeStreams(proxy, backend.address)) === 20,
          { what: "20 calls queued at the proxy" },
        );
        assert.equal(streams(), 0);
        await backend.connections[0].write(encodeFrame({
          type: FrameType.SETTINGS,
          payload: settingsPayload([[Setting.MAX_CONCURRENT_STREAMS, 10]]),
        }));
        const results = await Promise.all(calls);
        assert.deepEqual(statusCounts(results), { [OK]: 20 }, failureMessages(results));
        assert.equal(streams(), 20);
        assert.equal(backend.connections.length, 1, "the backend was dialled more than once");
      });
    } finally {
      client.destroy();
      await proxy.stop();
      await backend.close();
    }
  },
});

Deno.test({
  name: "the pool grows only at the backend's stream limit, up to maxConnectionsPerBackend",
  ...GRPC_JS,
  fn: async (t) => {
    // Held calls with the connection each came on (a closed stream forgets its session).
    const held: { stream: http2.ServerHttp2Stream; session: http2.Http2Session }[] = [];
    const backend = await startRawBackend(
      (stream) => held.push({ stream, session: stream.session! }),
      { maxConcurrentStreams: 2 },
    );
    const proxy = await startAdminProxy(poolConfig([backend.address], {
      maxConnectionsPerBackend: 3,
    }));
    const client = await connectRaw(proxy.address);
    const answered = new Set<http2.ServerHttp2Stream>();
    const answer = (calls: readonly { stream: http2.ServerHttp2Stream }[]) => {
      for (const { stream } of calls) {
        if (answered.has(stream)) continue;
        answered.add(stream);
        respondOk(stream);
      }
    };
    // Every connection the backend ever had, sampled while calls run: a dialled connection
    // stays in the pool while it has calls, so an extra one cannot slip between samples.
    const seen = new Set<http2.Http2Session>();
    const sample = () => {
      for (const session of backend.sessions) seen.add(session);
    };
    /** Held streams per connection, in the order the backend accepted the connections. */
    const heldPerConnection = () =>
      [...backend.sessions].map((session) =>
        held.filter((call) => call.session === session).length
      );
    try {
      await connected(proxy, backend.address);
      const calls = concurrentCalls(client, 10, "20S");

      await t.step("6 calls reach the backend over exactly 3 connections, 4 wait", async () => {
        await waitFor(() => held.length >= 6, { what: "6 calls at the backend" });
        await waitFor(
          async () => (await activeStreams(proxy, backend.address)) === 10,
          { what: "the 4 other calls waiting at the proxy" },
        );
        sample();
        assert.equal(held.length, 6, "the backend got more streams than 3 connections × 2");
        assert.equal(backend.sessions.size, 3, `${backend.sessions.size} connections`);
        assert.deepEqual(heldPerConnection(), [2, 2, 2]);
      });

      await t.step("two slots freed on any connection take two waiting calls", async () => {
        // The connection opened last is the one the waiting calls are least likely to have
        // been queued on: a waiting call must take a free slot wherever it opens.
        const last = [...backend.sessions].at(-1);
        answer(held.filter((call) => call.session === last));
        await waitFor(() => held.length === 8, {
          timeoutMs: 2_000,
          what: "two waiting calls to reach the backend",
        }).catch((error) => {
          throw new Error(
            `${error.message}; held calls per connection: ${heldPerConnection()}, ` +
              `answered ${answered.size}`,
          );
        });
      });

      await t.step("answering the held calls lets every waiting call through", async () => {
        let results: RawCallResult[] | undefined;
        Promise.all(calls).then((done) => results = done);
        await waitFor(() => {
          sample();
          answer(held);
          return results;
        }, { intervalMs: 5, what: "all 10 calls to end" });
        assert.deepEqual(statusCounts(results!), { [OK]: 10 }, failureMessages(results!));
        assert.equal(held.length, 10);
        assert.equal(seen.size, 3, `the backend saw ${seen.size} connections`);
      });
    } finally {
      client.destroy();
      await proxy.stop();
      await backend.close();
    }
  },
});

// Both policies ask the pool to connect when it reports IDLE after the loss, synchronously
// inside the pool's own loss handling; the pool's redial must then not dial a second time.
for (const picker of ["round_robin", "pick_first"]) {
  Deno.test({
    name:
      `one lost backend connection costs exactly one redial, and calls keep working (${picker})`,
    ...GRPC_JS,
    fn: async (t) => {
      const backend = startH2RawBackend({ onStream: (connection, id) => connection.respond(id) });
      const proxy = await startProxy(clusterConfig([backend.address], { picker }));
      const client = await connectRaw(proxy.address);
      const lostCount = () => logMessages(proxy, /^backend connection lost /).length;
      try {
        await connected(proxy, backend.address);
        await waitFor(() => backend.connections.length === 1, { what: "the first connection" });

        await t.step("a fresh connection that never carried a call", async () => {
          backend.connections[0].close();
          // The loss of a connection that never proved itself is a failure: the backend is
          // TRANSIENT_FAILURE until the redial, after a backoff, completes.
          await connected(proxy, backend.address, 2);
          const result = await rawCall(client, ECHO, undefined, { "grpc-timeout": "5S" });
          assert.equal(result.grpcStatus, OK, JSON.stringify(result.grpcMessage));
          await backend.connections[1].ping();
          assert.equal(backend.connections.length, 2, "one lost connection, one redial");
        });

        await t.step(
          "a connection that carried calls, with calls arriving during the redial",
          async () => {
            const lostBefore = lostCount();
            backend.connections[1].close();
            await waitFor(() => lostCount() > lostBefore, { what: "the proxy to see the loss" });
            const results = await Promise.all(concurrentCalls(client, 5, "5S"));
            assert.deepEqual(statusCounts(results), { [OK]: 5 }, failureMessages(results));
            await backend.connections[2].ping();
            assert.equal(backend.connections.length, 3, "one lost connection, one redial");
            assert.ok(!backend.connections[2].closed);
            assert.equal(backend.connections[2].streams.length, 5, "all on the new connection");
          },
        );
      } finally {
        client.destroy();
        await proxy.stop();
        await backend.close();
      }
    },
  });
}

Deno.test({
  name:
    "a backend that sends GOAWAY on every new connection is backed off, not redialled in a loop",
  ...GRPC_JS,
  fn: async () => {
    // The first half of a graceful shutdown (GOAWAY with the largest stream id, RFC 9113
    // §6.8), before the proxy opened any stream: no proof the backend works, so the pool
    // must back off as for any failing backend.
    const backend = startH2RawBackend();
    const proxy = await startProxy(clusterConfig([backend.address], {
      reconnectBackoff: { initial: "100ms", max: "1s" },
    }));
    try {
      const startedAt = Date.now();
      let answered = 0;
      await waitFor(() => {
        for (; answered < backend.connections.length; answered++) {
          backend.connections[answered].sendGoaway(2 ** 31 - 1, ErrorCode.NO_ERROR);
        }
        return Date.now() - startedAt > 2_000;
      }, { intervalMs: 5, timeoutMs: 5_000, what: "two seconds of GOAWAYs" });
      // Backoff from 100 ms growing ×1.6 allows about 8 dials in 2 s; a loop makes thousands.
      assert.ok(
        backend.connections.length <= 15,
        `the proxy dialled ${backend.connections.length} times in 2 s`,
      );
      assert.ok(backend.connections.length >= 2, "and it does keep retrying");
    } finally {
      await proxy.stop();
      await backend.close();
    }
  },
});

for (const proven of [false, true]) {
  Deno.test({
    name: "a backend GOAWAY with 5 calls in flight costs no call " +
      (proven ? "(the connection had carried calls)" : "(the calls are its first)"),
    ...GRPC_JS,
    fn: async () => {
      // Calls on the first connection that gets calls while `holding` are held until the
      // test answers them; every other call is answered at once.
      let holding = !proven;
      let holdOn: http2.Http2Session | undefined;
      const held: http2.ServerHttp2Stream[] = [];
      const backend = await startRawBackend((stream) => {
        if (holding && (holdOn ??= stream.session) === stream.session) held.push(stream);
        else respondOk(stream);
      });
      const proxy = await startProxy(clusterConfig([backend.address]));
      const client = await connectRaw(proxy.address);
      try {
        await connected(proxy, backend.address);
        if (proven) {
          const warmup = await rawCall(client, ECHO, undefined, { "grpc-timeout": "5S" });
          assert.equal(warmup.grpcStatus, OK);
          holding = true;
        }
        const inFlight = concurrentCalls(client, 5, "10S");
        await waitFor(() => held.length === 5, { what: "5 calls in flight at the backend" });
        const session = held[0].session!;
        const lastStreamId = Math.max(...held.map((stream) => stream.id!));
        session.goaway(http2.constants.NGHTTP2_NO_ERROR, lastStreamId);
        await waitFor(() => logMessages(proxy, /takes no new calls/).length > 0, {
          what: "the proxy to take the GOAWAY",
        });

        // New calls while the 5 are still in flight: they must wait for a new connection.
        const fresh = await Promise.all(concurrentCalls(client, 5, "5S"));
        const heldBeforeAnswers = held.length;
        for (const stream of held) respondOk(stream);
        const results = await Promise.all(inFlight);
        assert.deepEqual(
          { inFlight: statusCounts(results), fresh: statusCounts(fresh) },
          { inFlight: { [OK]: 5 }, fresh: { [OK]: 5 } },
          failureMessages([...results, ...fresh]),
        );
        assert.equal(heldBeforeAnswers, 5, "a new call went to the connection going away");
        // The proxy closes the old connection once its calls are done; the new one stays.
        await waitFor(
          () => backend.sessions.size === 1 && [...backend.sessions].every((s) => s !== session),
          { what: "the proxy to close the connection that went away" },
        );
        const lost = logMessages(proxy, /^backend (connection lost|unreachable) /);
        assert.deepEqual(lost, [], "a graceful GOAWAY is no failure");
      } finally {
        client.destroy();
        await proxy.stop();
        await backend.close();
      }
    },
  });
}
