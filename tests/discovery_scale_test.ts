/**
 * Redis membership at scale: a huge set must not wedge the proxy (it is capped by
 * `discovery.maxMembers`), and a large one that is applied is dialled at most
 * `http2.upstream.maxConcurrentDials` at a time. Real `redis-server`, real proxy process;
 * every dialled address is on loopback.
 */
import assert from "node:assert/strict";
import { adminUrl } from "./support/admin_client.ts";
import {
  clusterConfig,
  GRPC_JS,
  type ProxyProcess,
  startProxy,
  waitFor,
} from "./support/harness.ts";
import { type RedisServer, startRedis } from "./support/redis.ts";
import { startTcpBackend, type TcpBackend } from "./support/tcp_backend.ts";
import { type H2RawBackend, startH2RawBackend } from "./support/h2_raw_backend.ts";
import { expectCallThrough } from "./support/h2_wire.ts";
import { TestMethod } from "./support/test_backend.ts";

const SET = "switchyard:test:scale";
const OVER_CAP = "more than clusters.echo.discovery.maxMembers";

/** Loopback members `count` long; none is expected to answer (closed ports refuse at once). */
function loopbackMembers(count: number, firstPort: number): string[] {
  // Past 50,000 ports the second loopback address takes over, so 100,000 members fit.
  return Array.from(
    { length: count },
    (_, i) => `127.0.0.${1 + Math.floor(i / 50_000)}:${firstPort + (i % 50_000)}`,
  );
}

/** SADDs `members` in pipelined chunks, so one huge command does not stall Redis. */
async function addMembers(redis: RedisServer, members: readonly string[]): Promise<void> {
  const chunk = 10_000;
  const writes: Promise<number>[] = [];
  for (let i = 0; i < members.length; i += chunk) {
    writes.push(redis.client.sAdd(SET, members.slice(i, i + chunk)));
  }
  await Promise.all(writes);
}

function logCount(proxy: ProxyProcess, text: string): number {
  return proxy.logs().filter((line) => String(line.message).replaceAll('"', "").includes(text))
    .length;
}

/** `/live` answers 200 within `withinMs`. */
async function assertLiveWithin(proxy: ProxyProcess, withinMs: number): Promise<void> {
  const start = performance.now();
  const response = await fetch(adminUrl(proxy, "/live"), { signal: AbortSignal.timeout(withinMs) });
  await response.body?.cancel();
  assert.equal(response.status, 200);
  console.log(`/live answered in ${Math.round(performance.now() - start)}ms`);
}

/** Streams a raw backend has seen, over all its connections. */
function streamsSeen(backend: H2RawBackend): number {
  return backend.connections.reduce((total, connection) => total + connection.streams.length, 0);
}

/**
 * A call through the proxy answers within `withinMs`; returns the name of the backend that
 * served it. The test process speaks HTTP/2 through its own raw frame client and raw-frame
 * backends only: the calls' GOAWAYs never reach a `node:http2` session here.
 */
async function callWithin(
  proxy: ProxyProcess,
  backends: Readonly<Record<string, H2RawBackend>>,
  withinMs: number,
): Promise<string> {
  const before = Object.entries(backends).map(([name, backend]) => [name, streamsSeen(backend)]);
  const start = performance.now();
  await expectCallThrough(proxy.address, TestMethod.echo, new Uint8Array(1), withinMs);
  const elapsed = performance.now() - start;
  assert.ok(elapsed < withinMs, `a call took ${Math.round(elapsed)}ms`);
  const served = before.find(([name, count]) => streamsSeen(backends[name]) > Number(count));
  assert.ok(served, "a backend saw the call");
  return String(served[0]);
}

/** A raw-frame backend that answers every call with OK. */
function okBackend(): H2RawBackend {
  return startH2RawBackend({ onStream: (connection, id) => connection.respond(id) });
}

/** SIGTERM exits 0 within `withinMs`. */
async function assertStopsWithin(proxy: ProxyProcess, withinMs: number): Promise<void> {
  const start = performance.now();
  const code = await proxy.stop();
  const elapsed = Math.round(performance.now() - start);
  console.log(`SIGTERM → exit ${code} in ${elapsed}ms`);
  assert.equal(code, 0);
  assert.ok(elapsed < withinMs, `SIGTERM took ${elapsed}ms`);
}

interface ScaleFixture {
  readonly redis: RedisServer;
  readonly b1: H2RawBackend;
  readonly b2: H2RawBackend;
}

async function withScaleFixture(body: (fixture: ScaleFixture) => Promise<void>): Promise<void> {
  const redis = await startRedis();
  const b1 = okBackend();
  const b2 = okBackend();
  try {
    await body({ redis, b1, b2 });
  } finally {
    await b1.close();
    await b2.close();
    await redis.stop();
  }
}

function scaleConfig(
  redis: RedisServer,
  b1: H2RawBackend,
  discovery: Record<string, unknown>,
  http2: Record<string, unknown> = {},
): Record<string, unknown> {
  return {
    ...clusterConfig([b1.address], {
      discovery: { redisSet: SET, ...discovery },
      connectTimeout: "1s",
      // Closed ports fail every dial: a slow redial keeps the churn down.
      reconnectBackoff: { initial: "3s", max: "3s" },
    }),
    redis: { url: redis.url, pollInterval: "100ms", connectTimeout: "500ms" },
    http2,
  };
}

Deno.test({
  name: "100,000 members: over maxMembers, last-known members stay and the proxy stays live",
  ...GRPC_JS,
  fn: () =>
    withScaleFixture(async ({ redis, b1, b2 }) => {
      await redis.client.sAdd(SET, b2.address);
      const proxy = await startProxy(scaleConfig(redis, b1, {}));
      const backends = { b1, b2 };
      try {
        await waitFor(async () => (await callWithin(proxy, backends, 5_000)) === "b2", {
          what: "b2 from redis",
        });
        await addMembers(redis, loopbackMembers(100_000, 10_000));
        await waitFor(() => logCount(proxy, OVER_CAP) > 0, { what: "the over-cap error" });
        const line = proxy.logs().find((l) => String(l.message).includes("maxMembers"))!;
        assert.equal(line.level, "ERROR");
        assert.match(String(line.message), /lists \d+ members, .* \(10000\)/);

        await assertLiveWithin(proxy, 1_000);
        // Both the static member and the last-known Redis member still serve, promptly.
        const served = new Set<string>();
        await waitFor(async () => {
          served.add(await callWithin(proxy, backends, 1_000));
          return served.has("b1") && served.has("b2");
        }, { intervalMs: 1, what: "calls served by b1 and b2" });

        // Polls (every 100ms) kept seeing the oversized set meanwhile; once it shrinks the
        // episode ends, and the error was logged once for all of them.
        await redis.client.del(SET);
        await redis.client.sAdd(SET, b2.address);
        await waitFor(() => logCount(proxy, "back within maxMembers") > 0, {
          what: "the end of the over-cap episode",
        });
        assert.equal(logCount(proxy, OVER_CAP), 1, "the error is logged once per episode");
        await assertStopsWithin(proxy, 5_000);
      } finally {
        if (!proxy.hasExited()) await proxy.stop();
      }
    }),
});

/**
 * Loopback listeners that accept, never answer, and close each connection after `holdMs`,
 * counting connections open at once. They close first, so the proxy's next dial can only
 * start after the count went down: the peak is exact.
 */
interface SilentListeners {
  readonly addresses: string[];
  /** The most connections open at the same time, across all listeners. */
  readonly peak: number;
  /** Listeners that have accepted at least one connection. */
  readonly reached: number;
  close(): Promise<void>;
}

function silentListeners(count: number, holdMs: number): SilentListeners {
  let open = 0;
  let peak = 0;
  const hold = async (conn: Deno.Conn) => {
    peak = Math.max(peak, ++open);
    await new Promise((resolve) => setTimeout(resolve, holdMs));
    open--;
    try {
      conn.close();
    } catch { /* closed */ }
  };
  const backends: TcpBackend[] = Array.from({ length: count }, () => startTcpBackend(hold));
  return {
    addresses: backends.map((backend) => backend.address),
    get peak() {
      return peak;
    },
    get reached() {
      return backends.filter((backend) => backend.conns.length > 0).length;
    },
    async close() {
      await Promise.all(backends.map((backend) => backend.close()));
    },
  };
}

Deno.test({
  name: "5,000 members under a raised maxMembers: at most maxConcurrentDials dials in flight",
  ...GRPC_JS,
  fn: () =>
    withScaleFixture(async ({ redis, b1 }) => {
      const maxDials = 8;
      const silent = silentListeners(40, 400);
      const proxy = await startProxy(
        scaleConfig(redis, b1, { maxMembers: 6_000 }, {
          upstream: { maxConcurrentDials: maxDials },
        }),
      );
      try {
        // Closed ports give their slot back at once; each silent member holds one for 400ms,
        // so without the cap all 40 would be open together. They queue for 2s in all, longer
        // than the 1s connect timeout, which must count from the real dial only.
        const members = [...silent.addresses, ...loopbackMembers(4_960, 20_000)];
        await addMembers(redis, members);
        await waitFor(() => logCount(proxy, "synced: 5000 members") > 0, {
          what: "the 5,000 members applied",
        });
        await assertLiveWithin(proxy, 1_000);
        assert.equal(await callWithin(proxy, { b1 }, 1_000), "b1");
        // Every silent member gets its dial in turn: the queue moves as slots free.
        await waitFor(() => silent.reached === silent.addresses.length, {
          timeoutMs: 15_000,
          what: "every silent member dialled",
        });
        await assertLiveWithin(proxy, 1_000);
        console.log(`peak connections open at the silent members: ${silent.peak}`);
        assert.ok(silent.peak <= maxDials, `${silent.peak} dials in flight at once`);
        assert.equal(logCount(proxy, "connect timeout"), 0, "no dial timed out in the queue");
        await assertStopsWithin(proxy, 5_000);
      } finally {
        if (!proxy.hasExited()) await proxy.stop();
        await silent.close();
      }
    }),
});
