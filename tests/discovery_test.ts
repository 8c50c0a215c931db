/**
 * Redis membership end to end: a real `redis-server`, real grpc-js backends and the real
 * proxy process (and the real `register` command).
 */
import type * as grpc from "@grpc/grpc-js";
import assert from "node:assert/strict";
import { missingKeyspaceFlags } from "../src/discovery/keyspace_events.ts";
import { heartbeatChannelPattern, heartbeatKey } from "../src/discovery/keys.ts";
import { partitionMembers } from "../src/discovery/members.ts";
import {
  clusterConfig,
  expectUsageErrors,
  freePort,
  GRPC_JS,
  type ProxyProcess,
  runSwitchyard,
  startProxy,
  waitFor,
  whileRegistered,
} from "./support/harness.ts";
import { type RedisServer, startRedis, type StartRedisOptions } from "./support/redis.ts";
import {
  collectStream,
  expectedStream,
  servedBy,
  serverStream,
  startTestBackend,
  type TestBackend,
  testClient,
  untilServedBy,
} from "./support/test_backend.ts";

const SET = "switchyard:test:members";

interface DiscoveryOptions {
  readonly staticBackends?: readonly string[];
  readonly requireHeartbeat?: boolean;
  readonly pollInterval?: string;
  readonly redisUrl?: string;
}

function discoveryConfig(redis: RedisServer | undefined, options: DiscoveryOptions = {}) {
  const discovery = { redisSet: SET, requireHeartbeat: options.requireHeartbeat ?? false };
  return {
    ...clusterConfig(options.staticBackends ?? [], { discovery }),
    redis: {
      url: options.redisUrl ?? redis!.url,
      pollInterval: options.pollInterval ?? "5s",
      connectTimeout: "500ms",
    },
  };
}

interface Fixture {
  readonly redis: RedisServer;
  readonly backends: TestBackend[];
  /** Starts a proxy (stopped with the fixture) and a client for it. */
  proxy(options?: DiscoveryOptions): Promise<{ proxy: ProxyProcess; client: grpc.Client }>;
}

/** Runs `body` with a Redis, `backendCount` backends b1…bN, and cleans everything up. */
async function withFixture(
  backendCount: number,
  body: (fixture: Fixture) => Promise<void>,
  redisOptions: StartRedisOptions = {},
): Promise<void> {
  const redis = await startRedis(redisOptions);
  const backends: TestBackend[] = [];
  const proxies: ProxyProcess[] = [];
  const clients: grpc.Client[] = [];
  try {
    for (let i = 1; i <= backendCount; i++) backends.push(await startTestBackend(`b${i}`));
    await body({
      redis,
      backends,
      async proxy(options = {}) {
        const proxy = await startProxy(discoveryConfig(redis, options));
        proxies.push(proxy);
        const client = testClient(proxy.address);
        clients.push(client);
        return { proxy, client };
      },
    });
  } finally {
    for (const client of clients) client.close();
    await Promise.all(proxies.map((proxy) => proxy.stop()));
    await Promise.all(backends.map((backend) => backend.stop()));
    await redis.stop();
  }
}

/** Backend names that served `count` consecutive calls. */
async function servedNames(client: grpc.Client, count: number): Promise<Set<string>> {
  const names = new Set<string>();
  for (let i = 0; i < count; i++) names.add(await servedBy(client));
  return names;
}

/** True once a log message contains `text`; the logger quotes values, quotes are ignored. */
function logged(proxy: ProxyProcess, text: string): boolean {
  return proxy.logs().some((line) => String(line.message).replaceAll('"', "").includes(text));
}

async function waitForLog(proxy: ProxyProcess, text: string): Promise<void> {
  await waitFor(() => logged(proxy, text), { what: `log line containing ${JSON.stringify(text)}` });
}

Deno.test({
  name: "SADD: a new member gets traffic within 1s via keyspace events (password, db 3)",
  ...GRPC_JS,
  fn: () =>
    withFixture(2, async ({ redis, backends: [b1, b2], proxy: startOne }) => {
      // A non-zero database proves the keyspace channel names the URL's db index: the
      // default 5s poll could not meet the 1s bound.
      const db3 = redis.client.duplicate({ database: 3 });
      await db3.connect();
      try {
        await db3.sAdd(SET, b1.address);
        const { client } = await startOne({ redisUrl: `${redis.url}/3` });
        await untilServedBy(client, "b1");
        const flags = await db3.configGet("notify-keyspace-events");
        assert.match(flags["notify-keyspace-events"], /K/, "the proxy enabled keyspace events");
        const start = performance.now();
        await db3.sAdd(SET, b2.address);
        const elapsed = await untilServedBy(client, "b2", start);
        console.log(`SADD → first call on the new member (keyspace events): ${elapsed}ms`);
        assert.ok(elapsed < 1_000, `took ${elapsed}ms`);
      } finally {
        db3.destroy();
      }
    }, { password: "s3cret/pw" }),
});

Deno.test({
  name: "SADD: with CONFIG refused, polling alone adds a member within the poll interval",
  ...GRPC_JS,
  fn: () =>
    withFixture(2, async ({ redis, backends: [b1, b2], proxy: startOne }) => {
      await redis.client.sAdd(SET, b1.address);
      const { proxy, client } = await startOne({ pollInterval: "500ms" });
      await untilServedBy(client, "b1");
      assert.ok(logged(proxy, "polling every 500ms only"), "warns that it falls back to polling");
      const start = performance.now();
      await redis.client.sAdd(SET, b2.address);
      const elapsed = await untilServedBy(client, "b2", start);
      console.log(`SADD → first call on the new member (polling only, 500ms): ${elapsed}ms`);
      assert.ok(elapsed < 1_500, `took ${elapsed}ms`);
    }, { refuseConfig: true }),
});

Deno.test({
  name: "SREM: a removed member gets no new calls while its in-flight stream completes",
  ...GRPC_JS,
  fn: () =>
    withFixture(2, async ({ redis, backends: [b1, b2], proxy: startOne }) => {
      await redis.client.sAdd(SET, b2.address);
      const { proxy, client } = await startOne();
      await untilServedBy(client, "b2");
      // The stream sends one message, then holds until released: it is in flight on b2.
      const stream = serverStream(client, 5, 32, { "x-hold": "1" });
      // Settled at once so a failure surfaces at the assertion, not as an unhandled rejection.
      const result = collectStream(stream).then(
        (value) => ({ value, error: undefined }),
        (error: Error) => ({ value: undefined, error }),
      );
      const firstMessage = new Promise((resolve) => stream.once("data", resolve));
      await firstMessage;
      await redis.client.sAdd(SET, b1.address);
      await untilServedBy(client, "b1");

      await redis.client.sRem(SET, b2.address);
      await waitForLog(proxy, `backend ${b2.address} left`);
      const callsBefore = b2.calls();
      assert.deepEqual(await servedNames(client, 20), new Set(["b1"]));
      assert.equal(b2.calls(), callsBefore, "b2 got no new calls");

      b2.release();
      const { value, error } = await result;
      assert.equal(error, undefined, "the in-flight stream completed");
      assert.deepEqual(value?.messages, expectedStream(5, 32));
    }),
});

Deno.test({
  name: "an invalid member is logged and skipped; valid members are still served",
  ...GRPC_JS,
  fn: () =>
    withFixture(2, async ({ redis, backends: [b1, b2], proxy: startOne }) => {
      await redis.client.sAdd(SET, ["not-an-address", "127.0.0.1:99999", b1.address]);
      const { proxy, client } = await startOne();
      assert.deepEqual(await servedNames(client, 10), new Set(["b1"]));
      const warnings = proxy.logs().filter((line) =>
        /^WARN/.test(String(line.level)) && String(line.message).includes("not host:port: skipped")
      );
      assert.equal(warnings.length, 2, JSON.stringify(warnings));
      await redis.client.sAdd(SET, b2.address);
      await untilServedBy(client, "b2");
    }),
});

Deno.test({
  name: "Redis down: traffic continues on last-known members; after a restart updates resume",
  ...GRPC_JS,
  fn: () =>
    withFixture(2, async ({ redis, backends: [b1, b2], proxy: startOne }) => {
      await redis.client.sAdd(SET, b1.address);
      const { proxy, client } = await startOne({ pollInterval: "300ms" });
      await untilServedBy(client, "b1");

      await redis.kill();
      await waitForLog(proxy, "redis unreachable");
      // Several failed polls and reconnect attempts pass while every call still succeeds.
      const until = Date.now() + 1_500;
      while (Date.now() < until) assert.equal(await servedBy(client), "b1");

      await redis.restart();
      await waitFor(
        () => proxy.logs().filter((line) => line.message === "redis connected").length >= 2,
        {
          what: "the proxy to reconnect",
        },
      );
      // The restarted Redis has no data (no persistence): the operator re-adds members.
      await redis.client.sAdd(SET, [b1.address, b2.address]);
      await untilServedBy(client, "b2");
    }),
});

Deno.test({
  name: "Redis down at startup: the proxy serves static members and picks Redis up later",
  ...GRPC_JS,
  fn: async () => {
    const port = await freePort();
    const b1 = await startTestBackend("b1");
    const b2 = await startTestBackend("b2");
    let redis: RedisServer | undefined;
    const proxy = await startProxy(discoveryConfig(undefined, {
      staticBackends: [b1.address],
      redisUrl: `redis://127.0.0.1:${port}`,
      pollInterval: "500ms",
    }));
    const client = testClient(proxy.address);
    try {
      assert.deepEqual(await servedNames(client, 5), new Set(["b1"]));
      assert.ok(logged(proxy, "starting without redis members"));
      redis = await startRedis({ port });
      await redis.client.sAdd(SET, b2.address);
      await untilServedBy(client, "b2");
    } finally {
      client.close();
      await proxy.stop();
      await Promise.all([b1.stop(), b2.stop()]);
      await redis?.stop();
    }
  },
});

Deno.test({
  name: "heartbeats: members without one are ignored, and an expired one is dropped",
  ...GRPC_JS,
  fn: () =>
    withFixture(3, async ({ redis, backends: [b1, b2, b3], proxy: startOne }) => {
      await redis.client.sAdd(SET, [b1.address, b2.address, b3.address]);
      for (const backend of [b1, b2]) {
        await redis.client.set(heartbeatKey(SET, backend.address), "1", {
          expiration: { type: "PX", value: 60_000 },
        });
      }
      const { proxy, client } = await startOne({ requireHeartbeat: true });
      await untilServedBy(client, "b1");
      await untilServedBy(client, "b2");
      assert.equal(b3.calls(), 0, "b3 has no heartbeat");

      await redis.client.pExpire(heartbeatKey(SET, b2.address), 200);
      await waitForLog(proxy, `backend ${b2.address} left`);
      const callsBefore = b2.calls();
      assert.deepEqual(await servedNames(client, 10), new Set(["b1"]));
      assert.equal(b2.calls(), callsBefore);

      // A heartbeat that appears later brings its member in without waiting for a poll.
      const start = performance.now();
      await redis.client.set(heartbeatKey(SET, b3.address), "1", {
        expiration: { type: "PX", value: 60_000 },
      });
      await untilServedBy(client, "b3", start, 1_000);
    }),
});

Deno.test({
  name: "register adds the member with a heartbeat and removes both on SIGTERM",
  ...GRPC_JS,
  fn: () =>
    withFixture(2, async ({ redis, backends: [b1, b2], proxy: startOne }) => {
      await redis.client.sAdd(SET, b1.address);
      await redis.client.set(heartbeatKey(SET, b1.address), "1");
      const { proxy, client } = await startOne({ requireHeartbeat: true });
      await untilServedBy(client, "b1");

      const args = ["--redis", redis.url, "--set", SET, "--addr", b2.address, "--ttl", "3s"];
      await whileRegistered(args, async () => {
        await untilServedBy(client, "b2");
        assert.equal(await redis.client.sIsMember(SET, b2.address), 1);
        const ttl = await redis.client.pTTL(heartbeatKey(SET, b2.address));
        assert.ok(ttl > 0 && ttl <= 3_000, `heartbeat ttl ${ttl}`);
      });
      assert.equal(await redis.client.sIsMember(SET, b2.address), 0);
      assert.equal(await redis.client.exists(heartbeatKey(SET, b2.address)), 0);
      await waitForLog(proxy, `backend ${b2.address} left`);
    }),
});

Deno.test("register rejects a bad --addr, --ttl or --redis with exit 2", async () => {
  const base = ["register", "--set", SET];
  const cases: [string[], string][] = [
    [["--redis", "redis://127.0.0.1:1", "--addr", "nope"], '--addr "nope" is not host:port'],
    [["--redis", "redis://127.0.0.1:1", "--addr", "127.0.0.1:1", "--ttl", "5x"], "--ttl"],
    [["--redis", "redis://127.0.0.1:1", "--addr", "127.0.0.1:1", "--ttl", "10ms"], "at least"],
    [["--redis", "http://x", "--addr", "127.0.0.1:1"], "--redis must start with redis://"],
  ];
  await expectUsageErrors(base, cases);
});

Deno.test({
  name: "two proxies on one Redis both see a change within 1s",
  ...GRPC_JS,
  fn: () =>
    withFixture(2, async ({ redis, backends: [b1, b2], proxy: startOne }) => {
      await redis.client.sAdd(SET, b1.address);
      const first = await startOne();
      const second = await startOne();
      await untilServedBy(first.client, "b1");
      await untilServedBy(second.client, "b1");
      const start = performance.now();
      await redis.client.sAdd(SET, b2.address);
      const elapsed = await Promise.all([
        untilServedBy(first.client, "b2", start),
        untilServedBy(second.client, "b2", start),
      ]);
      console.log(`SADD → first call on the new member, two proxies: ${elapsed.join("ms, ")}ms`);
      for (const ms of elapsed) assert.ok(ms < 1_000, `took ${ms}ms`);
    }),
});

Deno.test("bad Redis config exits 2 naming the path", async () => {
  const cases: [Record<string, unknown>, string][] = [
    [
      { ...discoveryConfig(undefined, { redisUrl: "http://127.0.0.1:6379" }) },
      "redis.url: must start with redis:// or rediss://",
    ],
    [
      { ...discoveryConfig(undefined, { redisUrl: "redis://x" }), redis: undefined },
      "clusters.echo.discovery: needs a top-level redis section",
    ],
    [
      {
        ...discoveryConfig(undefined, { redisUrl: "redis://x", pollInterval: "often" }),
      },
      "redis.pollInterval:",
    ],
  ];
  for (const [config, message] of cases) {
    const file = await Deno.makeTempFile({ suffix: ".json" });
    try {
      await Deno.writeTextFile(file, JSON.stringify(config));
      const { code, stderr } = await runSwitchyard(["--config", file]);
      assert.equal(code, 2, stderr);
      assert.ok(stderr.includes(message), stderr);
    } finally {
      await Deno.remove(file);
    }
  }
});

Deno.test("keyspace flags: existing flags are kept and the A alias counts", () => {
  assert.equal(missingKeyspaceFlags("", "Ksgx$"), "Ksgx$");
  assert.equal(missingKeyspaceFlags("AKE", "Ksgx$"), "");
  assert.equal(missingKeyspaceFlags("Ex", "Ksgx"), "Ksg");
});

Deno.test("members: invalid entries are split off; heartbeat patterns escape globs", () => {
  assert.deepEqual(partitionMembers(["b:2", "nope", "a:1", "[::1]:3", "x:0"]), {
    valid: ["[::1]:3", "a:1", "b:2"],
    invalid: ["nope", "x:0"],
  });
  assert.equal(heartbeatChannelPattern(2, "svc*[1]"), "__keyspace@2__:svc\\*\\[1\\]:hb:*");
});
