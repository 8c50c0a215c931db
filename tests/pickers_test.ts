/**
 * Load-balancing policies through the real proxy: pick_first order and failover, the
 * round_robin spread, ring_hash affinity and the weighted_round_robin shares.
 */
import * as grpc from "@grpc/grpc-js";
import assert from "node:assert/strict";
import { weightKey } from "../src/discovery/keys.ts";
import { adminRequest, startAdminProxy } from "./support/admin_client.ts";
import {
  clusterConfig,
  GRPC_JS,
  type ProxyProcess,
  startProxy,
  waitFor,
} from "./support/harness.ts";
import { startRedis } from "./support/redis.ts";
import { startTcpBackend } from "./support/tcp_backend.ts";
import {
  servedBy,
  startTestBackend,
  type TestBackend,
  testClient,
  TestMethod,
  unaryCall,
} from "./support/test_backend.ts";

async function startBackends(count: number): Promise<TestBackend[]> {
  const backends: TestBackend[] = [];
  for (let i = 1; i <= count; i++) backends.push(await startTestBackend(`b${i}`));
  return backends;
}

/** Makes `count` sequential calls and tallies which backend served each. */
async function tally(client: grpc.Client, count: number): Promise<Map<string, number>> {
  const served = new Map<string, number>();
  for (let i = 0; i < count; i++) {
    const name = await servedBy(client);
    served.set(name, (served.get(name) ?? 0) + 1);
  }
  return served;
}

Deno.test({
  name: "pick_first: every call goes to the first backend, then fails over in list order",
  ...GRPC_JS,
  fn: async () => {
    const backends = await startBackends(3);
    try {
      const proxy = await startProxy(
        clusterConfig(backends.map((b) => b.address), { picker: "pick_first" }),
      );
      const client = testClient(proxy.address);
      try {
        assert.deepEqual(await tally(client, 30), new Map([["b1", 30]]));

        await backends[0].stop();
        // Calls in the switch-over window may fail; once b2 serves, it must serve them all.
        await waitFor(() => servedBy(client).then((name) => name === "b2"), {
          what: "failover to b2",
        });
        assert.deepEqual(await tally(client, 30), new Map([["b2", 30]]));

        await backends[1].stop();
        await waitFor(() => servedBy(client).then((name) => name === "b3"), {
          what: "failover to b3",
        });
        assert.deepEqual(await tally(client, 30), new Map([["b3", 30]]));
      } finally {
        client.close();
        await proxy.stop();
      }
    } finally {
      for (const backend of backends) await backend.stop();
    }
  },
});

/** A backend that accepts TCP and never speaks HTTP/2; it notices when the proxy hangs up. */
interface SilentBackend {
  readonly address: string;
  /** Connections accepted. */
  readonly accepted: number;
  /** Connections the proxy has closed. */
  readonly hungUp: number;
  close(): Promise<void>;
}

function startSilentBackend(): SilentBackend {
  let hungUp = 0;
  const backend = startTcpBackend(async (conn) => {
    const buffer = new Uint8Array(4096);
    try {
      while (await conn.read(buffer) !== null) { /* swallow the preface, answer nothing */ }
    } catch { /* reset by the proxy */ }
    hungUp++;
  });
  return {
    address: backend.address,
    get accepted() {
      return backend.conns.length;
    },
    get hungUp() {
      return hungUp;
    },
    close: () => backend.close(),
  };
}

Deno.test({
  name: "pick_first: a first backend that never speaks HTTP/2 costs the connection delay, " +
    "and its connection is closed once another is chosen",
  ...GRPC_JS,
  fn: async () => {
    const silent = startSilentBackend();
    const healthy = await startTestBackend("b2");
    // connectTimeout far beyond the call's deadline: only the connection delay can save it.
    const proxy = await startProxy(clusterConfig([silent.address, healthy.address], {
      picker: "pick_first",
      connectTimeout: "60s",
      pickFirst: { connectionDelay: "250ms" },
    }));
    const client = testClient(proxy.address);
    try {
      const { headers } = await unaryCall(client, TestMethod.echo, undefined, { timeoutMs: 5_000 });
      assert.equal(String(headers.get("x-backend")[0]), "b2");
      assert.deepEqual(await tally(client, 10), new Map([["b2", 10]]));
      assert.ok(silent.accepted >= 1, "the silent backend was tried first");
      await waitFor(() => silent.hungUp === silent.accepted, {
        what: "the proxy to close its attempt on the silent backend",
      });
    } finally {
      client.close();
      await proxy.stop();
      await healthy.stop();
      await silent.close();
    }
  },
});

Deno.test({
  name: "round_robin: 600 calls over 3 backends land within 200 ± 20 each",
  ...GRPC_JS,
  fn: async () => {
    const backends = await startBackends(3);
    try {
      const proxy = await startProxy(
        clusterConfig(backends.map((b) => b.address), { picker: "round_robin" }),
      );
      const client = testClient(proxy.address);
      try {
        // Until every backend is connected the rotation only holds the ready ones.
        await waitFor(async () => {
          await unaryCall(client, TestMethod.echo);
          return backends.every((backend) => backend.calls() > 0);
        }, { what: "all backends in the rotation" });
        for (const backend of backends) backend.resetCalls();

        await Promise.all(
          Array.from({ length: 6 }, () => tally(client, 100)),
        );
        const counts = backends.map((backend) => backend.calls());
        assert.equal(counts.reduce((a, b) => a + b), 600);
        for (const count of counts) {
          assert.ok(count >= 180 && count <= 220, `spread ${counts.join("/")}`);
        }
      } finally {
        client.close();
        await proxy.stop();
      }
    } finally {
      for (const backend of backends) await backend.stop();
    }
  },
});

/** Waits until the admin API shows every member of cluster `echo` READY. */
async function allReady(proxy: ProxyProcess, count: number): Promise<void> {
  await waitFor(async () => {
    const { body } = await adminRequest(proxy, "/clusters/echo");
    const states: string[] = body.backends.map((backend: { state: string }) => backend.state);
    return states.length === count && states.every((state) => state === "READY");
  }, { what: "every backend READY" });
}

/** The backend that serves a call carrying `x-client-id: id`. */
async function servedFor(client: grpc.Client, id: string): Promise<string> {
  const metadata = new grpc.Metadata();
  metadata.set("x-client-id", id);
  const { headers } = await unaryCall(client, TestMethod.echo, Buffer.from("who"), { metadata });
  return String(headers.get("x-backend")[0]);
}

Deno.test({
  name: "ring_hash on x-client-id: each of 20 ids reaches one backend on all of its 5 calls",
  ...GRPC_JS,
  fn: async () => {
    const backends = await startBackends(3);
    try {
      const proxy = await startAdminProxy(clusterConfig(backends.map((b) => b.address), {
        picker: "ring_hash",
        hashKey: "header:x-client-id",
      }));
      const client = testClient(proxy.address);
      try {
        // Until every backend is READY a key whose owner is not yet connected goes elsewhere.
        await allReady(proxy, 3);
        const ids = Array.from({ length: 20 }, (_, i) => `client-${i}`);
        const servedBy = new Map(ids.map((id) => [id, new Set<string>()]));
        for (let round = 0; round < 5; round++) {
          for (const id of ids) servedBy.get(id)!.add(await servedFor(client, id));
        }
        for (const [id, names] of servedBy) {
          assert.equal(names.size, 1, `${id} was served by ${[...names]}`);
        }
        const used = new Set([...servedBy.values()].flatMap((names) => [...names]));
        console.log(
          `ring_hash: 20 ids → ${
            [...used].map((name) => {
              const ids = [...servedBy.values()].filter((names) => names.has(name)).length;
              return `${name} ${ids}`;
            })
          }`,
        );
        assert.ok(used.size >= 2, `the ids spread over backends: ${[...used]}`);
      } finally {
        client.close();
        await proxy.stop();
      }
    } finally {
      for (const backend of backends) await backend.stop();
    }
  },
});

Deno.test({
  name: "weighted_round_robin: weights 1:2:3 give shares within ±3 points over 600 calls",
  ...GRPC_JS,
  fn: async () => {
    const backends = await startBackends(3);
    try {
      const addresses = backends.map((b) => b.address);
      const proxy = await startAdminProxy(clusterConfig(addresses, {
        picker: "weighted_round_robin",
        weights: { [addresses[0]]: 1, [addresses[1]]: 2, [addresses[2]]: 3 },
      }));
      const client = testClient(proxy.address);
      try {
        await allReady(proxy, 3);
        for (const backend of backends) backend.resetCalls();
        await Promise.all(Array.from({ length: 6 }, () => tally(client, 100)));
        const counts = backends.map((backend) => backend.calls());
        const total = counts.reduce((a, b) => a + b);
        assert.equal(total, 600);
        const shares = counts.map((count) => count / total);
        console.log(
          `weighted_round_robin 1:2:3 over 600 calls: ${
            shares.map((share) => `${(100 * share).toFixed(1)}%`).join("/")
          }`,
        );
        [1 / 6, 2 / 6, 3 / 6].forEach((expected, i) => {
          assert.ok(Math.abs(shares[i] - expected) <= 0.03, `shares ${counts.join("/")}`);
        });
      } finally {
        client.close();
        await proxy.stop();
      }
    } finally {
      for (const backend of backends) await backend.stop();
    }
  },
});

Deno.test({
  name: "weighted_round_robin: a Redis weight key changes the shares live",
  ...GRPC_JS,
  fn: async () => {
    const redis = await startRedis();
    const backends = await startBackends(2);
    const set = "switchyard:test:weights";
    try {
      await redis.client.sAdd(set, backends.map((b) => b.address));
      const proxy = await startAdminProxy({
        ...clusterConfig([], { picker: "weighted_round_robin", discovery: { redisSet: set } }),
        redis: { url: redis.url, pollInterval: "1m", connectTimeout: "500ms" },
      });
      const client = testClient(proxy.address);
      try {
        await allReady(proxy, 2);
        /** b2's share of `count` calls. */
        const b2Share = async (count: number) => {
          const counts = await tally(client, count);
          return (counts.get("b2") ?? 0) / count;
        };
        const even = await b2Share(100);
        assert.ok(Math.abs(even - 0.5) <= 0.02, `equal weights: b2 took ${even}`);
        // The poll is a minute away: the keyspace event applies it.
        await redis.client.set(weightKey(set, backends[1].address), "3");
        await waitFor(async () => await b2Share(40) >= 0.7, { what: "b2 at weight 3" });
        const weighted = await b2Share(400);
        assert.ok(Math.abs(weighted - 0.75) <= 0.02, `weights 1:3: b2 took ${weighted}`);
      } finally {
        client.close();
        await proxy.stop();
      }
    } finally {
      for (const backend of backends) await backend.stop();
      await redis.stop();
    }
  },
});
