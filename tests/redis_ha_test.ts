/**
 * Redis high availability: membership, register, the admin write-through and affinity tables
 * on Redis Sentinel (with a failover under load) and on a Redis Cluster, with real
 * `redis-server`s and `redis-sentinel`, real grpc-js backends and the real proxy process.
 */
import * as grpc from "@grpc/grpc-js";
import assert from "node:assert/strict";
import { affinityKey, clusterHashTag, hasHashTag, hashedPart } from "../src/affinity/keys.ts";
import { heartbeatKey, weightKey } from "../src/discovery/keys.ts";
import { parseConfig } from "../src/config/load.ts";
import { redactConfig } from "../src/admin/redact.ts";
import { registeredPolicies } from "../src/balancer/registry.ts";
import { adminRequest, startAdminProxy } from "./support/admin_client.ts";
import {
  clusterConfig,
  expectUsageErrors,
  GRPC_JS,
  type ProxyProcess,
  waitFor,
  whileRegistered,
} from "./support/harness.ts";
import {
  startRedis,
  startRedisCluster,
  startRedisSentinel,
  type TestRedisClient,
} from "./support/redis.ts";
import {
  startTestBackend,
  type TestBackend,
  testClient,
  TestMethod,
  unaryCall,
  untilServedBy,
} from "./support/test_backend.ts";
/** The single-node discovery tests' bound for a set change to reach a call. */
const SET_CHANGE_BOUND_MS = 1_000;

/** CRC16/XMODEM, as Redis Cluster hashes keys (`CLUSTER KEYSLOT`). */
function crc16(text: string): number {
  let crc = 0;
  for (const byte of new TextEncoder().encode(text)) {
    crc ^= byte << 8;
    for (let bit = 0; bit < 8; bit++) {
      crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
    }
  }
  return crc;
}

/** The Redis Cluster slot of `key`. */
function keySlot(key: string): number {
  return crc16(hashedPart(key)) % 16_384;
}

/** Every key one Switchyard cluster uses, for a member `address` and an affinity id. */
function clusterKeys(setKey: string, cluster: string, address: string, id: string): string[] {
  return [
    setKey,
    heartbeatKey(setKey, address),
    weightKey(setKey, address),
    affinityKey(cluster, id),
  ];
}

function problems(config: Record<string, unknown>): string[] {
  try {
    parseConfig(config, "test", { pickers: registeredPolicies() });
    return [];
  } catch (error) {
    return (error as { problems: string[] }).problems;
  }
}

function haConfig(redis: Record<string, unknown>, redisSet: string) {
  return { ...clusterConfig([], { discovery: { redisSet } }), redis };
}

/** The addresses `/clusters/echo` lists. */
async function listed(proxy: ProxyProcess): Promise<string[]> {
  const { body } = await adminRequest(proxy, "/clusters/echo");
  return body.backends.map((backend: { address: string }) => backend.address).sort();
}

/** One echo call carrying an affinity id. */
async function callWithId(client: grpc.Client, id: string): Promise<string> {
  const metadata = new grpc.Metadata();
  metadata.set("x-client-id", id);
  const { headers } = await unaryCall(client, TestMethod.echo, Buffer.from("ha"), {
    metadata,
    timeoutMs: 5_000,
  });
  return String(headers.get("x-backend")[0]);
}

/** Sequential calls on `concurrency` loops until stopped; failures are kept. */
class Load {
  calls = 0;
  readonly failures: string[] = [];
  #running = true;
  readonly #loops: Promise<void>[];

  constructor(client: grpc.Client, concurrency: number) {
    this.#loops = Array.from({ length: concurrency }, async (_, loop) => {
      for (let i = 0; this.#running; i++) {
        try {
          // A fresh id now and then: a new id asks the table (Redis) before its call goes.
          await callWithId(client, i % 10 === 0 ? `load-${loop}-${i}` : `load-${loop}`);
          this.calls++;
        } catch (error) {
          this.failures.push(String((error as Error).message));
        }
      }
    });
  }

  async stop(): Promise<void> {
    this.#running = false;
    await Promise.all(this.#loops);
  }
}

/**
 * Starts an admin proxy for the HA tests on `redis` (its `url`, `sentinel` or `cluster`):
 * members of `setKey` need a heartbeat, affinity is kept in Redis, timeouts are short, and
 * polling is far beyond a test, so only keyspace events and re-reads (after a failover) count.
 */
function startHaProxy(setKey: string, redis: Record<string, unknown>): Promise<ProxyProcess> {
  return startAdminProxy({
    ...clusterConfig([], {
      discovery: { redisSet: setKey, requireHeartbeat: true },
      affinity: { key: "header:x-client-id", store: "redis", ttl: "10m" },
    }),
    redis: { ...redis, pollInterval: "10m", connectTimeout: "500ms", commandTimeout: "500ms" },
  });
}

/**
 * Waits until `owner` serves `client`, pins the affinity id `sticky` to it and waits until
 * `replica` has the record (a failover must not lose it).
 */
async function pinStickyOnReplica(
  client: grpc.Client,
  owner: TestBackend,
  replica: TestRedisClient,
): Promise<void> {
  await untilServedBy(client, owner.name);
  assert.equal(await callWithId(client, "sticky"), owner.name);
  await waitFor(async () => (await replica.get(affinityKey("echo", "sticky"))) === owner.address, {
    what: "the affinity record to reach the replica",
  });
}

/** What differs between the Sentinel and the Cluster failover under load. */
interface FailoverScenario {
  /** The deployment, for the timings line. */
  readonly mode: string;
  /** The proxy under load. */
  readonly proxy: ProxyProcess;
  /** A client of {@link proxy}. */
  readonly client: grpc.Client;
  /** The membership set. */
  readonly setKey: string;
  /** A backend not listed yet: added on the new master after the failover. */
  readonly member: TestBackend;
  /** A client of the replica that the failover promotes. */
  readonly replica: TestRedisClient;
  /** Kills the master. */
  killMaster(): Promise<void>;
  /** True once the replica has been promoted. */
  promoted(): Promise<boolean>;
  /** How long the promotion may take, and what it is called in a timeout. */
  readonly promotion: { readonly timeoutMs: number; readonly what: string };
}

/**
 * Kills the master under steady load, waits for the promotion, adds a member on the new
 * master and asserts that the proxy applies it within 5 s and that no call failed; prints
 * the timings.
 */
async function failOverUnderLoad(scenario: FailoverScenario): Promise<void> {
  const { proxy, client, setKey, member, replica } = scenario;
  const load = new Load(client, 4);
  try {
    await waitFor(() => load.calls > 20, { what: "steady load" });
    const lostAt = performance.now();
    await scenario.killMaster();
    await waitFor(() => scenario.promoted(), { ...scenario.promotion, intervalMs: 5 });
    const promotedAt = performance.now();
    // The first membership change after the failover, written on the new master.
    await waitFor(async () => {
      await replica.multi()
        .set(heartbeatKey(setKey, member.address), "beat", {
          expiration: { type: "PX", value: 60_000 },
        })
        .sAdd(setKey, member.address)
        .exec();
      return true;
    }, { intervalMs: 5, what: "a write on the promoted master" });
    await waitFor(async () => (await listed(proxy)).includes(member.address), {
      timeoutMs: 15_000,
      intervalMs: 5,
      what: "the proxy to apply the member added on the new master",
    });
    const appliedAt = performance.now();
    await untilServedBy(client, member.name);
    const calls = load.calls;
    await load.stop();

    const promotion = Math.round(promotedAt - lostAt);
    const applied = Math.round(appliedAt - promotedAt);
    console.log(
      `${scenario.mode} failover: master lost → replica promoted ${promotion}ms → first ` +
        `membership change applied ${applied}ms later (${Math.round(appliedAt - lostAt)}ms ` +
        `after the loss); ${calls} calls, ${load.failures.length} failed`,
    );
    assert.deepEqual(load.failures, [], "no call failed");
    assert.ok(applied < 5_000, `the change took ${applied}ms after the promotion`);
  } finally {
    await load.stop();
  }
}

Deno.test("redis config: exactly one of url, sentinel, cluster; errors name the field", () => {
  const set = "switchyard:echo";
  assert.deepEqual(problems(haConfig({}, set)), [
    'redis: needs one of "url", "sentinel" or "cluster"',
  ]);
  assert.deepEqual(
    problems(
      haConfig(
        { url: "redis://127.0.0.1:6379", cluster: { nodes: ["127.0.0.1:1"] } },
        "{switchyard:echo}",
      ),
    ),
    [
      'redis.cluster: cannot be combined with "url": set exactly one of "url", "sentinel" or ' +
      '"cluster"',
    ],
  );
  assert.match(
    problems(haConfig({ sentinel: { sentinels: ["127.0.0.1:26379"] } }, set)).join(),
    /^redis\.sentinel\.masterName: /,
  );
  assert.match(
    problems(haConfig({ sentinel: { masterName: "m", sentinels: ["nope"] } }, set)).join(),
    /^redis\.sentinel\.sentinels\[0\]: "nope" is not host:port/,
  );
  assert.match(
    problems(haConfig({ sentinel: { masterName: "m", sentinels: [] } }, set)).join(),
    /^redis\.sentinel\.sentinels: list at least one sentinel/,
  );
  assert.deepEqual(problems(haConfig({ cluster: { nodes: ["127.0.0.1:7000"] } }, set)), [
    "clusters.echo.discovery.redisSet: with redis.cluster it must carry the hash tag " +
    '{switchyard:echo} (for example "{switchyard:echo}:members"), so that the set, its ' +
    "heartbeat and weight keys and the affinity table share one slot",
  ]);
  assert.deepEqual(
    problems(haConfig({ cluster: { nodes: ["127.0.0.1:7000"] } }, "{switchyard:echo}:members")),
    [],
  );
  assert.deepEqual(
    problems(haConfig({ sentinel: { masterName: "m", sentinels: ["127.0.0.1:26379"] } }, set)),
    [],
    "Sentinel needs no hash tag",
  );
  const parsed = parseConfig(
    haConfig({
      sentinel: {
        masterName: "m",
        sentinels: ["127.0.0.1:26379"],
        password: "p1",
        sentinelPassword: "p2",
      },
    }, set),
    "test",
    { pickers: registeredPolicies() },
  );
  assert.deepEqual(redactConfig(parsed).redis?.sentinel, {
    masterName: "m",
    sentinels: ["127.0.0.1:26379"],
    password: "[redacted]",
    sentinelPassword: "[redacted]",
    database: 0,
  }, "/config hides the passwords");
});

Deno.test("hash tags: every key of one cluster hashes to one slot", () => {
  // Redis's own examples: CLUSTER KEYSLOT and the CRC16 check value.
  assert.equal(crc16("123456789"), 0x31c3);
  assert.equal(keySlot("foo"), 12_182);
  assert.equal(keySlot("{user1000}.following"), keySlot("{user1000}.followers"));
  assert.equal(hashedPart("a{}{b}"), "a{}{b}", "an empty tag hashes the whole key");

  const setKey = `${clusterHashTag("orders")}:members`;
  const slots = new Set(
    clusterKeys(setKey, "orders", "10.0.0.1:50051", "client-7").map(keySlot),
  );
  assert.equal(slots.size, 1, "set, heartbeat, weight and affinity keys share a slot");
  assert.ok(hasHashTag(setKey, "{switchyard:orders}"));
  assert.ok(!hasHashTag("switchyard:orders", "{switchyard:orders}"), "no braces: no tag");
  assert.ok(!hasHashTag("x{}{switchyard:orders}", "{switchyard:orders}"), "not the first tag");
});

Deno.test("register: exactly one Redis flag; a Cluster set needs a hash tag (exit 2)", async () => {
  const base = ["register", "--addr", "127.0.0.1:1"];
  const cases: [string[], string][] = [
    [["--set", "s"], "exactly one of --redis"],
    [["--set", "s", "--redis", "redis://x:1", "--redis-cluster", "127.0.0.1:1"], "exactly one"],
    [["--set", "s", "--redis-sentinel", "127.0.0.1:1"], "--redis-master-name go together"],
    [["--set", "s", "--redis-cluster", "127.0.0.1:1,nope"], '--redis-cluster "nope"'],
    [["--set", "plain", "--redis-cluster", "127.0.0.1:1"], "needs a hash tag"],
  ];
  await expectUsageErrors(base, cases);
});

Deno.test({
  name: "Sentinel: the master dies under load; no call fails, membership and affinity survive; " +
    "register and the admin write-through follow the new master",
  ...GRPC_JS,
  fn: async () => {
    const SET = "switchyard:ha:members";
    const redis = await startRedisSentinel({ downAfterMs: 500 });
    const backends: TestBackend[] = [];
    let proxy: ProxyProcess | undefined;
    let client: grpc.Client | undefined;
    try {
      for (const name of ["b1", "b2", "b3"]) backends.push(await startTestBackend(name));
      const [b1, b2, b3] = backends;
      const master = redis.clients.get(redis.masterPort)!;
      await master.sAdd(SET, b1.address);
      await master.set(heartbeatKey(SET, b1.address), "seed");
      proxy = await startHaProxy(SET, {
        sentinel: { masterName: redis.masterName, sentinels: [redis.sentinel] },
      });
      client = testClient(proxy.address);
      const replica = redis.clients.get(redis.replicaPort)!;
      await pinStickyOnReplica(client, b1, replica);

      const newMaster = `127.0.0.1:${redis.replicaPort}`;
      await failOverUnderLoad({
        mode: "Sentinel",
        proxy,
        client,
        setKey: SET,
        member: b2,
        replica,
        killMaster: () => redis.killMaster(),
        promoted: async () => (await redis.currentMaster()) === newMaster,
        promotion: { timeoutMs: 15_000, what: "the sentinel to promote the replica" },
      });

      // The affinity table has its own connection, which follows the failover on its own
      // schedule: until it has, lookups answer from this proxy's memory.
      const body = await waitFor(async () => {
        const { body } = await adminRequest(proxy!, "/clusters/echo/affinity?id=sticky");
        return body.source === "redis" ? body : undefined;
      }, { what: "the affinity table to read Redis again after the failover" });
      assert.equal(body.owner, b1.address, "the affinity record survived the failover");
      await waitFor(async () => {
        const metrics = (await adminRequest(proxy!, "/metrics")).body as string;
        return /^switchyard_redis_connected 1$/m.test(metrics);
      }, { what: "switchyard_redis_connected 1" });
      const flags = await replica.configGet("notify-keyspace-events");
      assert.match(flags["notify-keyspace-events"], /K/, "keyspace events on the new master");

      // The admin write-through and `switchyard register` on the new master.
      const added = await adminRequest(proxy, "/clusters/echo/backends", {
        method: "POST",
        json: { address: b3.address },
      });
      assert.equal(added.status, 201, JSON.stringify(added.body));
      assert.equal(await replica.sIsMember(SET, b3.address), 1);
      const removed = await adminRequest(proxy, `/clusters/echo/backends/${b3.address}`, {
        method: "DELETE",
      });
      assert.equal(removed.status, 200, JSON.stringify(removed.body));
      assert.equal(await replica.sIsMember(SET, b3.address), 0);
      await whileRegistered(
        ["--redis-sentinel", redis.sentinel, "--redis-master-name", redis.masterName]
          .concat(["--set", SET, "--addr", b3.address]),
        () => untilServedBy(client!, "b3"),
      );
      assert.equal(await replica.sIsMember(SET, b3.address), 0, "deregistered on SIGTERM");
    } finally {
      client?.close();
      await proxy?.stop();
      await Promise.all(backends.map((backend) => backend.stop()));
      await redis.stop();
    }
  },
});

Deno.test({
  name: "Cluster: membership, heartbeats, register, admin write-through and affinity",
  ...GRPC_JS,
  fn: async () => {
    const SET = "{switchyard:echo}:members";
    const cluster = await startRedisCluster();
    const single = await startRedis();
    const backends: TestBackend[] = [];
    const proxies: ProxyProcess[] = [];
    const clients: grpc.Client[] = [];
    try {
      for (const name of ["b1", "b2", "b3"]) backends.push(await startTestBackend(name));
      const [b1, b2, b3] = backends;
      const redis = cluster.client;
      // Every key of the cluster is in one slot, as Redis itself computes it.
      const slots = await Promise.all(
        clusterKeys(SET, "echo", b1.address, "client-1").map((key) =>
          cluster.nodeClients[0].clusterKeySlot(key)
        ),
      );
      assert.equal(new Set(slots).size, 1, `slots ${slots.join(",")}`);
      assert.equal(slots[0], keySlot(SET));

      await redis.multi()
        .set(heartbeatKey(SET, b1.address), "seed")
        .sAdd(SET, b1.address)
        .exec();
      await single.client.multi()
        .set(heartbeatKey(SET, b1.address), "seed")
        .sAdd(SET, b1.address)
        .exec();
      const onCluster = await startHaProxy(SET, { cluster: { nodes: cluster.nodes } });
      proxies.push(onCluster);
      const onSingle = await startHaProxy(SET, { url: single.url });
      proxies.push(onSingle);
      const [client, singleClient] = proxies.map((proxy) => testClient(proxy.address));
      clients.push(client, singleClient);
      await untilServedBy(client, "b1");
      await untilServedBy(singleClient, "b1");

      // A set change: the same write on both, timed to the first call on the new member.
      const addB2 = async (write: () => Promise<unknown>, on: grpc.Client) => {
        const start = performance.now();
        await write();
        return await untilServedBy(on, "b2", start);
      };
      const beat = { expiration: { type: "PX", value: 60_000 } } as const;
      const clusterMs = await addB2(
        () =>
          redis.multi().set(heartbeatKey(SET, b2.address), "1", beat).sAdd(SET, b2.address).exec(),
        client,
      );
      const singleMs = await addB2(
        () =>
          single.client.multi().set(heartbeatKey(SET, b2.address), "1", beat)
            .sAdd(SET, b2.address).exec(),
        singleClient,
      );
      console.log(
        `set change → first call on the new member: Redis Cluster ${clusterMs}ms, single node ` +
          `${singleMs}ms (keyspace events)`,
      );
      assert.ok(clusterMs < SET_CHANGE_BOUND_MS, `cluster took ${clusterMs}ms`);

      // An expiring heartbeat drops its member (the keyspace event comes from the slot's node).
      await redis.pExpire(heartbeatKey(SET, b2.address), 100);
      await waitFor(async () => !(await listed(onCluster)).includes(b2.address), {
        what: "b2 to leave when its heartbeat expires",
      });

      // `switchyard register` against the Cluster.
      await whileRegistered(
        ["--redis-cluster", cluster.nodes.join(","), "--set", SET, "--addr", b3.address]
          .concat(["--ttl", "3s"]),
        async () => {
          await untilServedBy(client, "b3");
          const ttl = await redis.pTTL(heartbeatKey(SET, b3.address));
          assert.ok(ttl > 0 && ttl <= 3_000, `heartbeat ttl ${ttl}`);
        },
      );
      assert.equal(await redis.sIsMember(SET, b3.address), 0);
      await waitFor(async () => !(await listed(onCluster)).includes(b3.address), {
        what: "b3 to leave after register's SIGTERM",
      });

      // The admin write-through.
      const added = await adminRequest(onCluster, "/clusters/echo/backends", {
        method: "POST",
        json: { address: b3.address },
      });
      assert.equal(added.status, 201, JSON.stringify(added.body));
      assert.equal(added.body.source, "redis");
      assert.equal(await redis.sIsMember(SET, b3.address), 1);
      assert.equal(await redis.pTTL(heartbeatKey(SET, b3.address)), -1);
      const removed = await adminRequest(onCluster, `/clusters/echo/backends/${b3.address}`, {
        method: "DELETE",
      });
      assert.equal(removed.status, 200, JSON.stringify(removed.body));
      assert.equal(await redis.sIsMember(SET, b3.address), 0);
      assert.equal(await redis.exists(heartbeatKey(SET, b3.address)), 0);

      // Affinity tables: the scripts run in the set's slot.
      const owner = await callWithId(client, "client-1");
      assert.equal(
        await redis.get(affinityKey("echo", "client-1")),
        `${backends.find((backend) => backend.name === owner)!.address}`,
      );
      const { body } = await adminRequest(onCluster, "/clusters/echo/affinity?id=client-1");
      assert.equal(body.source, "redis");
      const metrics = (await adminRequest(onCluster, "/metrics")).body as string;
      assert.match(metrics, /^switchyard_redis_connected 1$/m);
    } finally {
      for (const client of clients) client.close();
      await Promise.all(proxies.map((proxy) => proxy.stop()));
      await Promise.all(backends.map((backend) => backend.stop()));
      await single.stop();
      await cluster.stop();
    }
  },
});

Deno.test({
  name: "Cluster: the set's master dies under load; no call fails, its replica takes over",
  ...GRPC_JS,
  fn: async () => {
    const SET = "{switchyard:echo}:members";
    const cluster = await startRedisCluster({ replicas: 1 });
    const backends: TestBackend[] = [];
    let proxy: ProxyProcess | undefined;
    let client: grpc.Client | undefined;
    try {
      for (const name of ["b1", "b2"]) backends.push(await startTestBackend(name));
      const [b1, b2] = backends;
      const redis = cluster.client;
      await redis.multi().set(heartbeatKey(SET, b1.address), "seed").sAdd(SET, b1.address).exec();
      // The master holding the set's slot, and its replica.
      const slot = keySlot(SET);
      const roles = await Promise.all(cluster.nodeClients.map((node) => node.info("replication")));
      const masterIndex = (await Promise.all(
        cluster.nodeClients.map(async (node, index) =>
          roles[index].includes("role:master") && (await node.dbSize()) > 0
        ),
      )).indexOf(true);
      const masterPort = Number(cluster.nodes[masterIndex].split(":")[1]);
      const replicaIndex = roles.findIndex((info) => info.includes(`master_port:${masterPort}`));
      assert.ok(masterIndex >= 0 && replicaIndex >= 0, `slot ${slot}: master and replica`);
      const replica = cluster.nodeClients[replicaIndex];

      proxy = await startHaProxy(SET, { cluster: { nodes: cluster.nodes } });
      client = testClient(proxy.address);
      // A replica answers reads of its slots only after READONLY.
      await replica.sendCommand(["READONLY"]);
      await pinStickyOnReplica(client, b1, replica);

      await failOverUnderLoad({
        mode: "Cluster",
        proxy,
        client,
        setKey: SET,
        member: b2,
        replica,
        killMaster: () => cluster.kill(masterIndex),
        promoted: async () => (await replica.info("replication")).includes("role:master"),
        promotion: { timeoutMs: 20_000, what: "the replica to take over the slot" },
      });
      // The affinity connection follows the new slot map on its own, within about as long.
      const { body } = await waitFor(async () => {
        const answer = await adminRequest(proxy!, "/clusters/echo/affinity?id=sticky");
        return answer.body.source === "redis" ? answer : undefined;
      }, { what: "the affinity table to read Redis again" });
      assert.equal(body.owner, b1.address, "the affinity record survived the failover");
      const flags = await replica.configGet("notify-keyspace-events");
      assert.match(flags["notify-keyspace-events"], /K/, "keyspace events on the new master");
    } finally {
      client?.close();
      await proxy?.stop();
      await Promise.all(backends.map((backend) => backend.stop()));
      await cluster.stop();
    }
  },
});
