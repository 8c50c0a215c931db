/**
 * Admin registration on a cluster fed by a Redis set: written to Redis so every proxy on the
 * set sees it. A real `redis-server`, real grpc-js backends and two real proxy processes.
 */
import type * as grpc from "@grpc/grpc-js";
import assert from "node:assert/strict";
import { heartbeatKey } from "../src/discovery/keys.ts";
import { adminRequest, callsByBackend, startAdminProxy } from "./support/admin_client.ts";
import { clusterConfig, GRPC_JS, type ProxyProcess, waitFor } from "./support/harness.ts";
import { type RedisServer, startRedis } from "./support/redis.ts";
import {
  collectStream,
  expectedStream,
  serverStream,
  startTestBackend,
  type TestBackend,
  testClient,
} from "./support/test_backend.ts";

const SET = "switchyard:test:admin";

interface Fixture {
  readonly redis: RedisServer;
  readonly backends: TestBackend[];
  readonly proxies: ProxyProcess[];
  readonly clients: grpc.Client[];
}

/**
 * Runs `body` with a Redis whose set lists b1, backends b1…bN, and `proxyCount` proxies on
 * that set with a client each; cleans everything up. The poll interval is far beyond the
 * test's waits, so only the admin write's own re-read and keyspace events can pass it.
 */
async function withProxies(
  options: { backendCount: number; proxyCount: number; requireHeartbeat: boolean },
  body: (fixture: Fixture) => Promise<void>,
): Promise<void> {
  const redis = await startRedis();
  const backends: TestBackend[] = [];
  const proxies: ProxyProcess[] = [];
  const clients: grpc.Client[] = [];
  try {
    for (let i = 1; i <= options.backendCount; i++) {
      backends.push(await startTestBackend(`b${i}`));
    }
    await redis.client.sAdd(SET, backends[0].address);
    if (options.requireHeartbeat) {
      await redis.client.set(heartbeatKey(SET, backends[0].address), "seed");
    }
    const discovery = { redisSet: SET, requireHeartbeat: options.requireHeartbeat };
    const config = {
      ...clusterConfig([], { discovery }),
      redis: { url: redis.url, pollInterval: "10m", connectTimeout: "500ms" },
    };
    for (let i = 0; i < options.proxyCount; i++) {
      const proxy = await startAdminProxy(config);
      proxies.push(proxy);
      clients.push(testClient(proxy.address));
    }
    for (const client of clients) {
      await waitFor(async () => (await callsByBackend(client, 1)).has("b1"), {
        what: "each proxy to serve the seeded b1",
      });
    }
    await body({ redis, backends, proxies, clients });
  } finally {
    for (const client of clients) client.close();
    await Promise.all(proxies.map((proxy) => proxy.stop()));
    await Promise.all(backends.map((backend) => backend.stop()));
    await redis.stop();
  }
}

/** The backend addresses the admin API of `proxy` lists for cluster `echo`. */
async function listedAddresses(proxy: ProxyProcess): Promise<string[]> {
  const { body } = await adminRequest(proxy, "/clusters/echo");
  return body.backends.map((backend: { address: string }) => backend.address).sort();
}

Deno.test({
  name: "admin POST/DELETE on a Redis-fed cluster reach every proxy; in-flight calls finish",
  ...GRPC_JS,
  fn: () =>
    withProxies(
      { backendCount: 2, proxyCount: 2, requireHeartbeat: true },
      async ({ redis, backends: [b1, b2], proxies: [a, b], clients: [clientA, clientB] }) => {
        const registered = await adminRequest(a, "/clusters/echo/backends", {
          method: "POST",
          json: { address: b2.address },
        });
        assert.equal(registered.status, 201);
        assert.equal(registered.body.source, "redis");
        assert.deepEqual(registered.body.sources, ["redis"], "A applied it before answering");
        assert.ok(await redis.client.sIsMember(SET, b2.address), "SMEMBERS lists it");
        const beat = heartbeatKey(SET, b2.address);
        assert.equal(await redis.client.pTTL(beat), -1, "the heartbeat key has no TTL");

        await waitFor(async () => (await callsByBackend(clientB, 4)).has("b2"), {
          what: "proxy B to route calls to b2",
        });
        assert.ok((await callsByBackend(clientA, 4)).has("b2"), "proxy A routes to b2 too");
        const again = await adminRequest(b, "/clusters/echo/backends", {
          method: "POST",
          json: { address: b2.address },
        });
        assert.equal(again.status, 200, "registering a listed member is idempotent");
        assert.equal(again.body.source, "redis");

        // Only b2 can take a new call while b1 is drained on B, so this stream is on b2.
        const drain = `/clusters/echo/backends/${b1.address}`;
        await adminRequest(b, `${drain}/drain`, { method: "POST" });
        const stream = serverStream(clientB, 5, 32, { "x-hold": "1" });
        // Settled at once so a failure surfaces at the assertion, not as an unhandled rejection.
        const result = collectStream(stream).then(
          (value) => ({ value, error: undefined }),
          (error: Error) => ({ value: undefined, error }),
        );
        await new Promise((resolve) => stream.once("data", resolve));
        await adminRequest(b, `${drain}/undrain`, { method: "POST" });

        const removed = await adminRequest(a, `/clusters/echo/backends/${b2.address}`, {
          method: "DELETE",
        });
        assert.equal(removed.status, 200);
        assert.deepEqual(
          removed.body.backends.map((backend: { address: string }) => backend.address),
          [b1.address],
          "A dropped b2 before answering",
        );
        assert.deepEqual(await redis.client.sMembers(SET), [b1.address]);
        assert.equal(await redis.client.exists(beat), 0, "the heartbeat key is gone");
        await waitFor(async () => !(await listedAddresses(b)).includes(b2.address), {
          what: "proxy B to drop b2",
        });
        const callsBefore = b2.calls();
        for (const client of [clientA, clientB]) {
          assert.deepEqual([...(await callsByBackend(client, 10)).keys()], ["b1"]);
        }
        assert.equal(b2.calls(), callsBefore, "b2 got no new calls from either proxy");

        b2.release();
        const { value, error } = await result;
        assert.equal(error, undefined, "the in-flight stream on b2 completed");
        assert.deepEqual(value?.messages, expectedStream(5, 32));

        const gone = await adminRequest(a, `/clusters/echo/backends/${b2.address}`, {
          method: "DELETE",
        });
        assert.equal(gone.status, 404);
      },
    ),
});

Deno.test({
  name: "admin POST/DELETE with Redis down answer 503 JSON and change nothing",
  ...GRPC_JS,
  fn: () =>
    withProxies(
      { backendCount: 2, proxyCount: 1, requireHeartbeat: false },
      async ({ redis, backends: [b1, b2], proxies: [proxy], clients: [client] }) => {
        await redis.kill();
        await waitFor(async () => {
          const { body } = await adminRequest(proxy, "/metrics");
          return /^switchyard_redis_connected 0$/m.test(body);
        }, { what: "the proxy to notice the outage" });
        const before = await listedAddresses(proxy);

        const registered = await adminRequest(proxy, "/clusters/echo/backends", {
          method: "POST",
          json: { address: b2.address },
        });
        assert.equal(registered.status, 503);
        assert.match(registered.contentType, /application\/json/);
        assert.match(registered.body.error, /^redis unavailable: /);
        const removed = await adminRequest(proxy, `/clusters/echo/backends/${b1.address}`, {
          method: "DELETE",
        });
        assert.equal(removed.status, 503);
        assert.match(removed.body.error, /^redis unavailable: /);

        assert.deepEqual(await listedAddresses(proxy), before);
        assert.deepEqual([...(await callsByBackend(client, 6)).keys()], ["b1"]);
        assert.equal(b2.calls(), 0, "b2 was never added");
      },
    ),
});
