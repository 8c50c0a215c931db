/**
 * Affinity tables (`clusters.NAME.affinity`): the in-memory store, the data plane's cache
 * bound, the Redis scripts against a real Redis, and end to end with real grpc-js backends:
 * two proxies sharing one Redis agree on every id's owner, a dead owner's ids are claimed
 * (and both proxies follow the claim), a Redis outage keeps known ids where they were, the
 * local store, and key extension while a stream is open.
 * @module
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import * as grpc from "@grpc/grpc-js";
import { AffinityCache, SECOND_CHANCES } from "../src/affinity/cache.ts";
import { affinityChannel, affinityKey, parseAffinityMessage } from "../src/affinity/keys.ts";
import { affinityId, MAX_AFFINITY_ID_LENGTH } from "../src/affinity/key.ts";
import { parseHashKey as parseAffinityKey } from "../src/balancer/hash_policy.ts";
import { LocalAffinityStore } from "../src/affinity/local_store.ts";
import { RedisAffinityStore } from "../src/affinity/redis_store.ts";
import { createRedisConnection } from "../src/discovery/redis_client.ts";
import { configSchema } from "../src/config/schema.ts";
import { adminRequest, startAdminProxy } from "./support/admin_client.ts";
import { clusterConfig, GRPC_JS, type ProxyProcess, waitFor } from "./support/harness.ts";
import { parsePrometheusText, sumSamples } from "./support/prometheus.ts";
import { startRedis } from "./support/redis.ts";
import {
  serverStream,
  startTestBackend,
  type TestBackend,
  testClient,
  TestMethod,
  unaryCall,
} from "./support/test_backend.ts";

// --- units ------------------------------------------------------------------------------------

Deno.test("affinity key: a header's first value or the client's IP, as hashKey spells it", () => {
  const header = parseAffinityKey("header:x-client-id")!;
  assert.equal(affinityId(header, ["x-client-id", "a", "x-client-id", "b"], "1.2.3.4:5"), "a");
  assert.equal(affinityId(header, ["other", "a"], "1.2.3.4:5"), undefined);
  assert.equal(affinityId(header, ["x-client-id", ""], "1.2.3.4:5"), undefined);
  const long = "x".repeat(MAX_AFFINITY_ID_LENGTH + 1);
  assert.equal(affinityId(header, ["x-client-id", long], "1.2.3.4:5"), undefined, "too long");
  const address = parseAffinityKey("client_address")!;
  assert.equal(affinityId(address, [], "10.0.0.7:40000"), "10.0.0.7");
  assert.equal(affinityId(address, [], "[::1]:40000"), "::1");
  assert.equal(affinityId(address, [], "::1:40000"), "::1", "gRPC-Web's spelling, same id");
  assert.equal(parseAffinityKey("cookie:x"), undefined);
});

Deno.test("affinity local store: records once, claims by compare-and-set, keeps, expires", () => {
  let now = 1_000;
  const store = new LocalAffinityStore(3, 100, () => now);
  assert.equal(store.resolve("a", "b1:1"), "b1:1");
  assert.equal(store.resolve("a", "b2:1"), "b1:1", "the first record stands");
  assert.deepEqual(store.claim("a", "b9:1", "b2:1"), { owner: "b1:1", claimed: false });
  assert.deepEqual(store.claim("a", "b1:1", "b2:1"), { owner: "b2:1", claimed: true });
  assert.deepEqual(store.claim("a", "b1:1", "b3:1"), { owner: "b2:1", claimed: false });
  now += 80;
  store.keep(["a"]);
  now += 80;
  assert.equal(store.get("a"), "b2:1", "kept past its first TTL");
  assert.equal(store.expiresIn("a"), 20);
  now += 21;
  assert.equal(store.get("a"), undefined, "expired once no call kept it");
  assert.deepEqual(store.claim("a", "b2:1", "b3:1"), { owner: "b3:1", claimed: true });
  // Full: the least recently written goes.
  store.resolve("b", "b1:1");
  store.resolve("c", "b1:1");
  store.keep(["a"]);
  store.resolve("d", "b1:1");
  assert.equal(store.size, 3);
  assert.equal(store.get("b"), undefined, "b was written longest ago");
  assert.equal(store.get("a"), "b3:1");
  now += 1_000;
  store.sweep();
  assert.equal(store.size, 0);
});

Deno.test("affinity cache: bounded, second chance for ids in use, idle ids leave", () => {
  const cache = new AffinityCache(100);
  for (let i = 0; i < 100; i++) cache.set(`id-${i}`, "b:1");
  // A tick: every entry is "used since the last tick" no more.
  assert.equal(cache.tick(4).length, 100);
  for (let i = 0; i < 5; i++) cache.get(`id-${i}`)!.idle = 0; // hits on the five oldest
  for (let i = 100; i < 150; i++) cache.set(`id-${i}`, "b:1");
  assert.equal(cache.size, 100, "never past its capacity");
  for (let i = 0; i < 5; i++) assert.ok(cache.get(`id-${i}`), `id-${i}, in use, was kept`);
  assert.equal(cache.get("id-5"), undefined, "the oldest unused went first");
  // Every entry in use: a bounded number of second chances, then the oldest goes anyway.
  const hot = new AffinityCache(SECOND_CHANCES * 2);
  for (let i = 0; i < SECOND_CHANCES * 2; i++) hot.set(`h-${i}`, "b:1");
  hot.set("new", "b:1");
  assert.equal(hot.size, SECOND_CHANCES * 2);
  assert.ok(hot.get("new"));
  // Unused for more than four ticks: forgotten.
  const idle = new AffinityCache(10);
  idle.set("x", "b:1");
  idle.set("y", "b:1");
  for (let tick = 0; tick < 5; tick++) {
    idle.touch("y");
    idle.tick(4);
  }
  assert.equal(idle.get("x"), undefined);
  assert.ok(idle.get("y"));
  idle.update("y", "c:1");
  idle.update("z", "c:1");
  assert.equal(idle.get("y")!.owner, "c:1");
  assert.equal(idle.get("z"), undefined, "updates do not add ids");
});

Deno.test("affinity config: errors name the field", () => {
  const base = clusterConfig(["127.0.0.1:1"], {}, "s");
  const problems = (affinity: unknown, extra: Record<string, unknown> = {}) => {
    const result = configSchema.safeParse({
      ...base,
      ...extra,
      clusters: { s: { backends: ["127.0.0.1:1"], affinity } },
    });
    return result.success
      ? []
      : result.error.issues.map((issue) => `${issue.path.join(".")}: ${issue.message}`);
  };
  assert.deepEqual(problems({ key: "header:x-id", store: "redis" }), [
    'clusters.s.affinity.store: "redis" needs a top-level redis section',
  ]);
  assert.deepEqual(
    problems({ key: "header:x-id", store: "redis" }, {
      redis: { url: "redis://127.0.0.1:6379" },
    }),
    [],
  );
  assert.match(problems({ key: "header:X-Id" }).join(), /^clusters\.s\.affinity\.key: /);
  assert.match(problems({ key: "client_address", ttl: "0s" }).join(), /affinity\.ttl: .*1s/);
  assert.match(problems({ key: "client_address", store: "disk" }).join(), /affinity\.store: /);
  const parsed = configSchema.parse({
    ...base,
    clusters: { s: { backends: ["127.0.0.1:1"], affinity: { key: "client_address" } } },
  });
  assert.deepEqual(parsed.clusters.s.affinity, {
    key: "client_address",
    store: "local",
    ttl: 600_000,
    lookupTimeout: 250,
    maxEntries: 100_000,
  });
});

Deno.test("affinity in Redis: SET NX agrees, the claim is a compare-and-set, keep re-records", async () => {
  const redis = await startRedis();
  const client = await createRedisConnection({
    url: redis.url,
    connectTimeout: 1_000,
    commandTimeout: 1_000,
  });
  client.connect();
  await waitFor(() => client.isReady, { what: "the store's connection" });
  const subscriber = redis.client.duplicate();
  subscriber.on("error", () => {});
  await subscriber.connect();
  const published: string[] = [];
  await subscriber.subscribe(affinityChannel("c"), (message: string) => published.push(message));
  try {
    const store = new RedisAffinityStore("c", 60_000, client);
    const [first, second] = await Promise.all([
      store.resolve("id1", "10.0.0.1:1"),
      store.resolve("id1", "10.0.0.2:1"),
    ]);
    assert.equal(first, second, "two racing records agree on one owner");
    const owner = first;
    assert.equal(await redis.client.get("{switchyard:c}:affinity:id1"), owner, "hash-tagged key");
    assert.equal(affinityKey("c", "id1"), "{switchyard:c}:affinity:id1");
    const ttl = await redis.client.pTTL(affinityKey("c", "id1"));
    assert.ok(ttl > 59_000 && ttl <= 60_000, `PX ttl, got ${ttl}`);
    // Two claims of the same old owner at once: exactly one moves it, both see its result.
    const claims = await Promise.all([
      store.claim("id1", owner, "10.0.0.3:1"),
      store.claim("id1", owner, "10.0.0.4:1"),
    ]);
    assert.equal(claims.filter((claim) => claim.claimed).length, 1);
    assert.equal(claims[0].owner, claims[1].owner);
    const claimed = claims[0].owner;
    assert.deepEqual(await store.claim("id1", "10.0.0.9:1", "10.0.0.5:1"), {
      owner: claimed,
      claimed: false,
    }, "a stale claim changes nothing");
    const found = await store.lookup("id1");
    assert.equal(found?.owner, claimed);
    assert.ok(found!.ttlMs > 59_000 && found!.ttlMs <= 60_000, `ttl ${found?.ttlMs}`);
    // Keep: a fresh TTL; a key that expired is recorded again with the owner known here.
    await redis.client.pExpire(affinityKey("c", "id1"), 50);
    await redis.client.del(affinityKey("c", "gone"));
    const kept = await store.keep(["id1", "gone", "unknown"], [claimed, "10.0.0.6:1", undefined]);
    assert.deepEqual(kept, [claimed, "10.0.0.6:1", undefined]);
    assert.ok((await redis.client.pTTL(affinityKey("c", "id1"))) > 59_000, "extended");
    assert.equal(await redis.client.get(affinityKey("c", "gone")), "10.0.0.6:1");
    assert.equal(await store.lookup("unknown"), undefined);
    await waitFor(() => published.length >= 3, { what: "the record, the claim and the re-record" });
    assert.deepEqual(published.map((text) => parseAffinityMessage(text)), [
      { owner, id: "id1" },
      { owner: claimed, id: "id1" },
      { owner: "10.0.0.6:1", id: "gone" },
    ]);
    await redis.kill();
    await assert.rejects(store.resolve("id2", "10.0.0.1:1"), "Redis down: the caller decides");
  } finally {
    client.destroy();
    subscriber.destroy();
    await redis.stop();
  }
});

// --- end to end -------------------------------------------------------------------------------

const CLUSTER = "sessions";

/** Calls Echo as client `id`; resolves to the serving backend's name. */
async function callAs(client: grpc.Client, id: string): Promise<string> {
  const metadata = new grpc.Metadata();
  metadata.set("x-client-id", id);
  const { headers } = await unaryCall(client, TestMethod.echo, Buffer.from("hi"), { metadata });
  return String(headers.get("x-backend")[0]);
}

function affinityConfig(
  backends: readonly TestBackend[],
  affinity: Record<string, unknown>,
  extra: Record<string, unknown> = {},
): Record<string, unknown> {
  return {
    ...clusterConfig(backends.map((backend) => backend.address), {
      picker: "round_robin",
      affinity: { key: "header:x-client-id", ...affinity },
    }, CLUSTER),
    ...extra,
  };
}

async function lookup(proxy: ProxyProcess, id: string) {
  const { status, body } = await adminRequest(
    proxy,
    `/clusters/${CLUSTER}/affinity?id=${encodeURIComponent(id)}`,
  );
  assert.equal(status, 200, JSON.stringify(body));
  return body;
}

async function metric(proxy: ProxyProcess, name: string, labels: Record<string, string> = {}) {
  const text = String((await adminRequest(proxy, "/metrics")).body);
  return sumSamples(parsePrometheusText(text), name, { cluster: CLUSTER, ...labels });
}

/** The backend's state in the proxy's `/clusters/NAME`. */
async function backendState(proxy: ProxyProcess, address: string): Promise<string | undefined> {
  const { body } = await adminRequest(proxy, `/clusters/${CLUSTER}`);
  // deno-lint-ignore no-explicit-any
  return body.backends.find((backend: any) => backend.address === address)?.state;
}

function shares(owners: ReadonlyMap<string, string>): string {
  const counts = new Map<string, number>();
  for (const owner of owners.values()) counts.set(owner, (counts.get(owner) ?? 0) + 1);
  return [...counts].sort().map(([name, count]) => `${name}=${count}`).join(" ");
}

Deno.test(
  "affinity through Redis: two proxies agree, a dead owner's ids are claimed, Redis down keeps them",
  GRPC_JS,
  async (t) => {
    const redis = await startRedis();
    const backends = await Promise.all(["b1", "b2", "b3"].map((name) => startTestBackend(name)));
    const byName = new Map(backends.map((backend) => [backend.name, backend]));
    const config = affinityConfig(backends, { store: "redis", ttl: "10m" }, {
      redis: { url: redis.url, connectTimeout: "500ms", commandTimeout: "500ms" },
    });
    const proxies = await Promise.all([startAdminProxy(config), startAdminProxy(config)]);
    const clients = proxies.map((proxy) => testClient(proxy.address));
    const ids = Array.from({ length: 20 }, (_, i) => `client-${i}`);
    const owners = new Map<string, string>();
    try {
      await t.step("the same id reaches the same backend through both proxies", async () => {
        for (let round = 0; round < 4; round++) {
          for (const id of ids) {
            // Alternately through each proxy, the first call of half the ids through each.
            const served = await callAs(clients[(round + ids.indexOf(id)) % 2], id);
            const owner = owners.get(id);
            if (owner === undefined) owners.set(id, served);
            else assert.equal(served, owner, `${id} moved from ${owner} to ${served}`);
          }
        }
        const spread = shares(owners);
        console.log(`20 ids × 4 calls through 2 proxies, owners: ${spread}`);
        assert.ok(new Set(owners.values()).size > 1, `the picker spread the ids: ${spread}`);
        for (const id of ids) {
          const [a, b] = await Promise.all(proxies.map((proxy) => lookup(proxy, id)));
          assert.equal(a.owner, byName.get(owners.get(id)!)!.address);
          assert.equal(b.owner, a.owner);
          assert.equal(a.source, "redis");
          assert.ok(a.ttlMs > 590_000, `ttl ${a.ttlMs}`);
        }
        const keys = await redis.client.keys(`{switchyard:${CLUSTER}}:affinity:*`);
        assert.equal(keys.length, 20, "one hash-tagged key per id");
        // New ids called through both proxies at once: both miss, one record wins, both follow.
        for (let i = 0; i < 10; i++) {
          const [a, b] = await Promise.all(clients.map((client) => callAs(client, `race-${i}`)));
          assert.equal(a, b, `race-${i}: the proxies agree`);
        }
        const { body } = await adminRequest(proxies[0], `/clusters/${CLUSTER}`);
        assert.equal(body.affinity.store, "redis");
        assert.equal(body.affinity.key, "header:x-client-id");
        assert.ok(
          body.affinity.hits > 0 && body.affinity.misses > 0,
          JSON.stringify(body.affinity),
        );
        assert.ok(body.affinity.entries >= 10, JSON.stringify(body.affinity));
        assert.ok(
          await metric(proxies[0], "switchyard_affinity_lookups_total", { result: "hit" }) > 0,
        );
      });

      await t.step("the owner is stopped: its ids are claimed, both proxies follow", async () => {
        // The backend that owns the most ids.
        const victimName = shares(owners).split(" ").map((entry) => entry.split("="))
          .sort((a, b) => Number(b[1]) - Number(a[1]))[0][0];
        const victim = byName.get(victimName)!;
        const orphans = ids.filter((id) => owners.get(id) === victimName);
        await victim.stop();
        for (const proxy of proxies) {
          await waitFor(
            async () => (await backendState(proxy, victim.address)) === "TRANSIENT_FAILURE",
            {
              what: `${victim.address} to fail in a proxy`,
            },
          );
        }
        const moved = new Map<string, string>();
        for (const id of orphans) {
          const served = await callAs(clients[0], id);
          assert.notEqual(served, victimName);
          moved.set(id, served);
          assert.equal(await callAs(clients[1], id), served, `${id}: the other proxy follows`);
        }
        for (const id of orphans) {
          for (let i = 0; i < 2; i++) assert.equal(await callAs(clients[i], id), moved.get(id));
          const [a, b] = await Promise.all(proxies.map((proxy) => lookup(proxy, id)));
          assert.equal(a.owner, byName.get(moved.get(id)!)!.address);
          assert.equal(b.owner, a.owner);
        }
        for (const id of ids) {
          if (!moved.has(id)) assert.equal(await callAs(clients[1], id), owners.get(id), "stayed");
        }
        const claims = (await Promise.all(
          proxies.map((proxy) => metric(proxy, "switchyard_affinity_claims_total")),
        )).reduce((a, b) => a + b, 0);
        console.log(
          `stopped ${victimName}, owner of ${orphans.length} ids: moved to ${shares(moved)}; ` +
            `claims counted: ${claims}`,
        );
        assert.equal(claims, orphans.length, "each orphan claimed once, by one proxy");
        const logged = proxies.flatMap((proxy) => proxy.logs())
          .filter((line) => String(line.message ?? "").includes("claimed from"));
        assert.equal(logged.length, orphans.length, "each claim logged once");
        for (const [id, owner] of moved) owners.set(id, owner);
      });

      await t.step(
        "Redis stopped: known ids keep their backend, new ids still succeed",
        async () => {
          await redis.kill();
          let calls = 0;
          for (let round = 0; round < 2; round++) {
            for (const id of ids) {
              assert.equal(await callAs(clients[round % 2], id), owners.get(id), `${id} kept`);
              calls++;
            }
          }
          const fresh = new Map<string, string>();
          for (let i = 0; i < 10; i++) {
            const id = `new-${i}`;
            const served = await callAs(clients[0], id);
            fresh.set(id, served);
            // Recorded in this proxy's memory meanwhile: it sticks here too.
            assert.equal(await callAs(clients[0], id), served);
            calls += 2;
          }
          console.log(`Redis down: ${calls} calls, none failed; new ids went to ${shares(fresh)}`);
          const answer = await lookup(proxies[0], ids[0]);
          assert.equal(answer.source, "memory");
          assert.equal(answer.owner, byName.get(owners.get(ids[0])!)!.address);
        },
      );
    } finally {
      for (const client of clients) client.close();
      await Promise.all(proxies.map((proxy) => proxy.stop()));
      await Promise.all(backends.map((backend) => backend.stop()));
      await redis.stop();
    }
  },
);

Deno.test(
  "affinity in memory (store local, 2 workers): ids stick, also while a backend is added",
  GRPC_JS,
  async () => {
    const backends = await Promise.all(["b1", "b2"].map((name) => startTestBackend(name)));
    const proxy = await startAdminProxy({
      ...affinityConfig(backends, { store: "local" }),
      workers: 2,
      clusters: {
        [CLUSTER]: {
          picker: "round_robin",
          backends: backends.map((backend) => backend.address),
          affinity: { key: "header:x-client-id", store: "local" },
        },
        plain: { backends: [backends[0].address] },
      },
    });
    // Several clients: several connections, spread over both workers.
    const clients = Array.from({ length: 4 }, () => testClient(proxy.address));
    const third = await startTestBackend("b3");
    try {
      const owners = new Map<string, string>();
      for (let round = 0; round < 3; round++) {
        for (let i = 0; i < 20; i++) {
          const id = `local-${i}`;
          const served = await callAs(clients[(round + i) % clients.length], id);
          if (round === 0) owners.set(id, served);
          else assert.equal(served, owners.get(id), `${id} stuck`);
        }
      }
      const added = await adminRequest(proxy, `/clusters/${CLUSTER}/backends`, {
        method: "POST",
        json: { address: third.address },
      });
      assert.equal(added.status, 201);
      await waitFor(async () => (await backendState(proxy, third.address)) === "READY", {
        what: "the new backend to be READY",
      });
      const fresh = new Map<string, string>();
      for (let i = 0; i < 20; i++) {
        const id = `local-${i}`;
        assert.equal(await callAs(clients[i % clients.length], id), owners.get(id), "kept");
        fresh.set(`after-${i}`, await callAs(clients[i % clients.length], `after-${i}`));
      }
      console.log(
        `store local: 20 ids kept ${shares(owners)} while b3 joined; 20 new ids: ${shares(fresh)}`,
      );
      assert.ok([...fresh.values()].includes("b3"), "new ids reach the new backend");
      const answer = await lookup(proxy, "local-0");
      assert.equal(answer.owner, backends.find((b) => b.name === owners.get("local-0"))!.address);
      assert.equal(answer.store, "local");
      assert.equal(answer.source, "memory");
      assert.ok(answer.ttlMs > 590_000);
      assert.equal((await lookup(proxy, "nobody")).owner, null);
      const { body } = await adminRequest(proxy, `/clusters/${CLUSTER}`);
      assert.equal(body.affinity.entries, 40);
      assert.equal(body.affinity.claims, 0);
      assert.equal(body.affinity.hits + body.affinity.misses, 100);
      const plain = await adminRequest(proxy, "/clusters/plain");
      assert.equal(plain.body.affinity, null);
      assert.equal((await adminRequest(proxy, `/clusters/${CLUSTER}/affinity`)).status, 400);
      assert.equal((await adminRequest(proxy, "/clusters/nope/affinity?id=x")).status, 404);
      assert.equal((await adminRequest(proxy, "/clusters/plain/affinity?id=x")).status, 404);
    } finally {
      for (const client of clients) client.close();
      await proxy.stop();
      await Promise.all([...backends, third].map((backend) => backend.stop()));
    }
  },
);

Deno.test(
  "affinity TTL: an open stream keeps its id's key past the TTL; then the key expires",
  GRPC_JS,
  async () => {
    const redis = await startRedis();
    const backends = await Promise.all(["b1", "b2"].map((name) => startTestBackend(name)));
    const proxy = await startAdminProxy(
      affinityConfig(backends, { store: "redis", ttl: "1s" }, { redis: { url: redis.url } }),
    );
    const client = testClient(proxy.address);
    const key = affinityKey(CLUSTER, "streamer");
    try {
      const call = serverStream(client, 3, 10, { "x-hold": "1", "x-client-id": "streamer" });
      let messages = 0;
      call.on("data", () => messages++);
      call.on("error", () => {}); // the status says it
      const ended = new Promise<void>((resolve) => call.on("status", () => resolve()));
      await waitFor(() => messages === 1, { what: "the held stream's first message" });
      await callAs(client, "short-lived");
      const openedAt = Date.now();
      let minTtl = Infinity;
      // For three TTLs the key must never be missing, and its TTL keeps being refreshed.
      await waitFor(async () => {
        const ttl = await redis.client.pTTL(key);
        assert.ok(ttl > 0, `the key of an id with an open stream expired (PTTL ${ttl})`);
        minTtl = Math.min(minTtl, ttl);
        return Date.now() - openedAt > 3_000;
      }, { timeoutMs: 10_000, intervalMs: 50, what: "three TTLs with the stream open" });
      console.log(`open stream: key alive for 3 s with ttl 1 s (lowest PTTL seen ${minTtl} ms)`);
      // The unary call's id is not kept once its call ended.
      assert.equal(await redis.client.exists(affinityKey(CLUSTER, "short-lived")), 0);
      for (const backend of backends) backend.release();
      await ended;
      const closedAt = Date.now();
      await waitFor(async () => (await redis.client.exists(key)) === 0, {
        timeoutMs: 5_000,
        what: "the key to expire after the stream ended",
      });
      console.log(`stream ended: key expired ${Date.now() - closedAt} ms later`);
    } finally {
      client.close();
      await proxy.stop();
      await Promise.all(backends.map((backend) => backend.stop()));
      await redis.stop();
    }
  },
);

Deno.test("affinity by reload: a cluster gains its table, then loses it", GRPC_JS, async () => {
  const backends = await Promise.all(["b1", "b2", "b3"].map((name) => startTestBackend(name)));
  const without = clusterConfig(backends.map((backend) => backend.address), {}, CLUSTER);
  const proxy = await startAdminProxy(without);
  const client = testClient(proxy.address);
  const reload = async (config: Record<string, unknown>) => {
    await proxy.writeConfig(config);
    const { status, body } = await adminRequest(proxy, "/reload", { method: "POST" });
    assert.equal(status, 200, JSON.stringify(body));
    return body;
  };
  try {
    const before = new Set<string>();
    for (let i = 0; i < 6; i++) before.add(await callAs(client, "reloaded"));
    assert.ok(before.size > 1, "round_robin spreads the id without affinity");
    const added = await reload(affinityConfig(backends, { store: "local" }));
    assert.deepEqual(added.changed, [`clusters.${CLUSTER}`]);
    const owner = await callAs(client, "reloaded");
    for (let i = 0; i < 6; i++) assert.equal(await callAs(client, "reloaded"), owner);
    assert.equal(
      (await lookup(proxy, "reloaded")).owner,
      backends.find((b) => b.name === owner)!.address,
    );
    assert.equal((await adminRequest(proxy, `/clusters/${CLUSTER}`)).body.affinity.entries, 1);
    await reload(without);
    assert.equal((await adminRequest(proxy, `/clusters/${CLUSTER}`)).body.affinity, null);
    const after = await adminRequest(proxy, `/clusters/${CLUSTER}/affinity?id=reloaded`);
    assert.equal(after.status, 404);
    const spread = new Set<string>();
    for (let i = 0; i < 6; i++) spread.add(await callAs(client, "reloaded"));
    assert.ok(spread.size > 1, "spread again once the table is gone");
  } finally {
    client.close();
    await proxy.stop();
    await Promise.all(backends.map((backend) => backend.stop()));
  }
});
