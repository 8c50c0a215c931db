/**
 * Load-balancing policies through the real proxy: pick_first order and failover, and the
 * round_robin spread.
 */
import type * as grpc from "@grpc/grpc-js";
import assert from "node:assert/strict";
import { clusterConfig, GRPC_JS, startProxy, waitFor } from "./support/harness.ts";
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
