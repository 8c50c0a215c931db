/**
 * Admin API end to end: the real proxy process, real grpc-js backends and clients, and
 * `fetch` against the admin listener.
 */
import assert from "node:assert/strict";
import {
  adminRequest,
  adminUrl,
  callsByBackend,
  rawAdminRequest,
  startAdminProxy,
} from "./support/admin_client.ts";
import {
  clusterConfig,
  freePort,
  GRPC_JS,
  type ProxyProcess,
  startProxy,
  type StartProxyOptions,
  waitFor,
} from "./support/harness.ts";
import {
  collectStream,
  expectedStream,
  serverStream,
  startTestBackend,
  type TestBackend,
  testClient,
} from "./support/test_backend.ts";

const TOKEN = "s3cret-admin-token-0123456789";

/** Runs `body` with `count` backends (b1, b2, …) and a proxy built by `config`; cleans up. */
async function withBackends(
  count: number,
  config: (backends: TestBackend[]) => Record<string, unknown> | Promise<Record<string, unknown>>,
  body: (ctx: { backends: TestBackend[]; proxy: ProxyProcess }) => Promise<void>,
  options: StartProxyOptions = {},
): Promise<void> {
  const backends: TestBackend[] = [];
  try {
    for (let i = 1; i <= count; i++) backends.push(await startTestBackend(`b${i}`));
    const proxy = await startAdminProxy(await config(backends), options);
    try {
      await body({ backends, proxy });
    } finally {
      await proxy.stop();
    }
  } finally {
    for (const backend of backends) await backend.stop();
  }
}

/** The parts of a cluster that a rejected request must leave alone. */
async function clusterShape(proxy: ProxyProcess, name = "echo"): Promise<unknown> {
  const { body } = await adminRequest(proxy, `/clusters/${name}`);
  return {
    picker: body.picker,
    backends: body.backends.map((b: { address: string; sources: string[]; drained: boolean }) => ({
      address: b.address,
      sources: b.sources,
      drained: b.drained,
    })),
  };
}

Deno.test("a non-loopback admin listener without a token refuses to start (exit 2)", async () => {
  const proxy = await startProxy({
    ...clusterConfig([`127.0.0.1:${await freePort()}`]),
    admin: { listen: `0.0.0.0:${await freePort()}`, tokenEnv: "SWITCHYARD_TEST_UNSET_TOKEN" },
  }, { expectExit: true });
  const status = await proxy.exited;
  assert.equal(status.code, 2);
  assert.match(proxy.output(), /admin\.token: required because admin\.listen .* is not loopback/);
});

Deno.test(
  "a non-loopback admin listener requires the configured bearer token",
  GRPC_JS,
  async () => {
    await withBackends(1, async (backends) => ({
      ...clusterConfig(backends.map((b) => b.address)),
      admin: { listen: `0.0.0.0:${await freePort()}`, token: TOKEN },
    }), async ({ proxy }) => {
      const missing = await adminRequest(proxy, "/clusters");
      assert.equal(missing.status, 401);
      assert.match(missing.contentType, /application\/json/);
      assert.match(missing.body.error, /missing bearer token/);

      const wrong = await adminRequest(proxy, "/clusters", { token: "not-the-token-at-all" });
      assert.equal(wrong.status, 401);
      assert.match(wrong.body.error, /invalid bearer token/);

      const basic = await adminRequest(proxy, "/clusters", {
        headers: { authorization: "Basic eA==" },
      });
      assert.equal(basic.status, 401);

      const right = await adminRequest(proxy, "/clusters", { token: TOKEN });
      assert.equal(right.status, 200);
      assert.equal(right.body[0].name, "echo");

      const drain = await adminRequest(proxy, "/drain", { method: "POST" });
      assert.equal(drain.status, 401, "a mutation without the token is refused");
      assert.equal((await adminRequest(proxy, "/ready", { token: TOKEN })).status, 200);
      for (const path of ["/metrics", "/config", "/openapi.json", "/docs", "/live"]) {
        assert.equal((await adminRequest(proxy, path)).status, 401, path);
        assert.equal((await adminRequest(proxy, path, { token: TOKEN })).status, 200, path);
      }

      // The status page shell carries no data, so a browser can load it before it has a token.
      const page = await fetch(adminUrl(proxy, "/"));
      assert.equal(page.status, 200);
      assert.doesNotMatch(await page.text(), /127\.0\.0\.1/);
    });
  },
);

Deno.test("a loopback admin listener takes its token from admin.tokenEnv", GRPC_JS, async () => {
  await withBackends(1, (backends) => ({
    ...clusterConfig(backends.map((b) => b.address)),
    admin: { tokenEnv: "SWITCHYARD_TEST_ADMIN_TOKEN" },
  }), async ({ proxy }) => {
    assert.equal((await adminRequest(proxy, "/clusters")).status, 401);
    assert.equal((await adminRequest(proxy, "/clusters", { token: TOKEN })).status, 200);
  }, { env: { SWITCHYARD_TEST_ADMIN_TOKEN: TOKEN } });
});

Deno.test("read endpoints: live, ready, clusters, config, openapi, docs", GRPC_JS, async () => {
  await withBackends(2, (backends) => ({
    ...clusterConfig(backends.map((b) => b.address)),
    redis: { url: "redis://switchyard:hunter2-password@127.0.0.1:6379/0" },
  }), async ({ backends, proxy }) => {
    const live = await adminRequest(proxy, "/live");
    assert.deepEqual([live.status, live.body], [200, { status: "live" }]);
    await waitFor(async () => (await adminRequest(proxy, "/ready")).status === 200, {
      what: "/ready to answer 200",
    });

    const list = await adminRequest(proxy, "/clusters");
    assert.equal(list.status, 200);
    assert.deepEqual(list.body.map((c: { name: string }) => c.name), ["echo"]);
    const { body: cluster } = await adminRequest(proxy, "/clusters/echo");
    assert.equal(cluster.picker, "round_robin");
    assert.equal(cluster.panic, false);
    assert.deepEqual(
      cluster.backends.map((b: { address: string }) => b.address),
      backends.map((b) => b.address),
    );
    const [first] = cluster.backends;
    assert.deepEqual(first.sources, ["static"]);
    for (const field of ["connectivity", "state", "health"]) {
      assert.equal(typeof first[field], "string");
    }
    for (
      const field of [
        "activeStreams",
        "calls",
        "failures",
        "bytesSent",
        "bytesReceived",
        "ejections",
      ]
    ) {
      assert.equal(typeof first[field], "number", field);
    }
    assert.equal(first.drained, false);
    assert.equal(first.ejected, false);

    const config = await adminRequest(proxy, "/config");
    assert.equal(config.status, 200);
    assert.equal(config.body.drain.timeout, 5000, "durations are effective values in ms");
    assert.doesNotMatch(JSON.stringify(config.body), /hunter2/);
    assert.match(config.body.redis.url, /^redis:\/\/switchyard:.*redacted.*@127\.0\.0\.1:6379\/0$/);

    const openapi = await adminRequest(proxy, "/openapi.json");
    assert.equal(openapi.status, 200);
    assert.match(openapi.body.openapi, /^3\./);
    for (
      const path of [
        "/live",
        "/ready",
        "/drain",
        "/clusters",
        "/clusters/{name}",
        "/clusters/{name}/picker",
        "/clusters/{name}/backends",
        "/clusters/{name}/backends/{address}",
        "/clusters/{name}/backends/{address}/drain",
        "/clusters/{name}/backends/{address}/undrain",
        "/config",
        "/metrics",
      ]
    ) {
      assert.ok(openapi.body.paths[path], `OpenAPI documents ${path}`);
    }

    const docs = await adminRequest(proxy, "/docs");
    assert.equal(docs.status, 200);
    assert.match(docs.contentType, /text\/html/);
    assert.match(docs.body, /\/clusters\/\{name\}\/picker/);
    assert.doesNotMatch(docs.body, /<script src=|<link [^>]*href="http/, "no external assets");

    const unknown = await adminRequest(proxy, "/nope");
    assert.equal(unknown.status, 404);
    assert.match(unknown.body.error, /no such endpoint: GET \/nope/);
  });
});

Deno.test("the token from config is redacted in /config", GRPC_JS, async () => {
  await withBackends(1, (backends) => ({
    ...clusterConfig(backends.map((b) => b.address)),
    admin: { token: TOKEN },
  }), async ({ proxy }) => {
    const config = await adminRequest(proxy, "/config", { token: TOKEN });
    assert.equal(config.status, 200);
    assert.doesNotMatch(JSON.stringify(config.body), new RegExp(TOKEN));
    assert.equal(config.body.admin.token, "[redacted]");
  });
});

Deno.test("bad input is rejected with a JSON error and changes nothing", GRPC_JS, async () => {
  await withBackends(
    1,
    (backends) => clusterConfig(backends.map((b) => b.address)),
    async ({ backends, proxy }) => {
      const before = await clusterShape(proxy);
      const address = backends[0].address;
      const cases: [string, string, unknown, number, RegExp][] = [
        ["PUT", "/clusters/echo/picker", { name: "fastest" }, 400, /unknown picker "fastest"/],
        ["PUT", "/clusters/echo/picker", "{not json", 400, /Malformed JSON/],
        ["PUT", "/clusters/echo/picker", { nombre: "pick_first" }, 400, /name/],
        ["PUT", "/clusters/nope/picker", { name: "pick_first" }, 404, /unknown cluster "nope"/],
        ["GET", "/clusters/nope", undefined, 404, /unknown cluster "nope"/],
        [
          "POST",
          "/clusters/echo/backends",
          { address: "no-port" },
          400,
          /"no-port" is not a host:port/,
        ],
        ["POST", "/clusters/echo/backends", { address: "127.0.0.1:99999" }, 400, /not a host:port/],
        ["POST", "/clusters/echo/backends", { address: 42 }, 400, /address/],
        ["POST", "/clusters/echo/backends", "[", 400, /Malformed JSON/],
        ["POST", "/clusters/nope/backends", { address: "127.0.0.1:1" }, 404, /unknown cluster/],
        [
          "DELETE",
          "/clusters/echo/backends/127.0.0.1:1",
          undefined,
          404,
          /has no backend 127\.0\.0\.1:1/,
        ],
        ["DELETE", "/clusters/echo/backends/garbage", undefined, 400, /not a host:port/],
        ["POST", "/clusters/echo/backends/127.0.0.1:1/drain", undefined, 404, /has no backend/],
        ["POST", "/clusters/nope/backends/127.0.0.1:1/undrain", undefined, 404, /unknown cluster/],
        // Mutations never act on GET.
        ["GET", `/clusters/echo/backends/${address}/drain`, undefined, 404, /no such endpoint/],
        ["GET", "/drain", undefined, 404, /no such endpoint/],
        ["GET", "/clusters/echo/picker", undefined, 404, /no such endpoint/],
      ];
      for (const [method, path, json, status, error] of cases) {
        const response = await adminRequest(proxy, path, { method, json });
        const label = `${method} ${path} ${JSON.stringify(json)}`;
        assert.equal(response.status, status, label);
        assert.match(response.contentType, /application\/json/, label);
        assert.match(response.body.error, error, label);
      }
      const unknownPicker = await adminRequest(proxy, "/clusters/echo/picker", {
        method: "PUT",
        json: { name: "fastest" },
      });
      assert.deepEqual(unknownPicker.body.known, [
        "pick_first",
        "round_robin",
        "ring_hash",
        "least_request",
        "weighted_round_robin",
      ]);
      assert.deepEqual(await clusterShape(proxy), before, "rejected requests changed nothing");
      assert.equal((await adminRequest(proxy, "/ready")).status, 200, "GET /drain did not drain");
    },
  );
});

Deno.test("register, drain, undrain and unregister change where calls go", GRPC_JS, async () => {
  await withBackends(
    2,
    ([b1]) => clusterConfig([b1.address]),
    async ({ backends: [b1, b2], proxy }) => {
      const client = testClient(proxy.address);
      try {
        assert.deepEqual([...(await callsByBackend(client, 6)).keys()], ["b1"]);

        const registered = await adminRequest(proxy, "/clusters/echo/backends", {
          method: "POST",
          json: { address: b2.address },
        });
        assert.equal(registered.status, 201);
        assert.deepEqual(registered.body.sources, ["admin"]);
        await waitFor(async () => (await callsByBackend(client, 4)).has("b2"), {
          what: "calls to reach the registered b2",
        });
        const again = await adminRequest(proxy, "/clusters/echo/backends", {
          method: "POST",
          json: { address: b2.address },
        });
        assert.equal(again.status, 200, "registering twice is idempotent");

        const drained = await adminRequest(proxy, `/clusters/echo/backends/${b1.address}/drain`, {
          method: "POST",
        });
        assert.equal(drained.status, 200);
        assert.equal(drained.body.drained, true);
        assert.deepEqual(
          [...(await callsByBackend(client, 8)).keys()],
          ["b2"],
          "drained b1 gets none",
        );

        const undrained = await adminRequest(
          proxy,
          `/clusters/echo/backends/${b1.address}/undrain`,
          {
            method: "POST",
          },
        );
        assert.equal(undrained.body.drained, false);
        await waitFor(async () => (await callsByBackend(client, 4)).has("b1"), {
          what: "calls to reach b1 again",
        });

        const removed = await adminRequest(proxy, `/clusters/echo/backends/${b2.address}`, {
          method: "DELETE",
        });
        assert.equal(removed.status, 200);
        assert.deepEqual(removed.body.backends.map((b: { address: string }) => b.address), [
          b1.address,
        ]);
        assert.deepEqual(
          [...(await callsByBackend(client, 8)).keys()],
          ["b1"],
          "removed b2 gets none",
        );
      } finally {
        client.close();
      }
    },
  );
});

Deno.test(
  "a live picker switch changes the distribution; an in-flight stream survives",
  GRPC_JS,
  async () => {
    await withBackends(
      2,
      (backends) => clusterConfig(backends.map((b) => b.address)),
      async ({ backends, proxy }) => {
        const client = testClient(proxy.address);
        try {
          await waitFor(async () => (await callsByBackend(client, 4)).size === 2, {
            what: "round_robin to use both backends",
          });
          // The held stream sends one message, then waits for release() across the switch.
          const stream = serverStream(client, 5, 64, { "x-hold": "1" });
          const result = collectStream(stream);
          await waitFor(async () => {
            const { body } = await adminRequest(proxy, "/clusters/echo");
            return body.backends.some((b: { activeStreams: number }) => b.activeStreams === 1);
          }, { what: "the held stream to be in flight" });

          const switched = await adminRequest(proxy, "/clusters/echo/picker", {
            method: "PUT",
            json: { name: "pick_first" },
          });
          assert.equal(switched.status, 200);
          assert.equal(switched.body.picker, "pick_first");
          await waitFor(async () => (await callsByBackend(client, 10)).size === 1, {
            what: "pick_first to send every call to one backend",
          });
          assert.equal((await callsByBackend(client, 10)).size, 1);

          for (const backend of backends) backend.release();
          const { messages } = await result;
          assert.deepEqual(messages, expectedStream(5, 64), "the stream finished intact");
          assert.equal((await adminRequest(proxy, "/clusters/echo")).body.picker, "pick_first");
        } finally {
          client.close();
        }
      },
    );
  },
);

Deno.test("POST /drain answers 202 and /ready flips to 503", GRPC_JS, async () => {
  await withBackends(
    1,
    (backends) => clusterConfig(backends.map((b) => b.address)),
    async ({ proxy }) => {
      await waitFor(async () => (await adminRequest(proxy, "/ready")).status === 200, {
        what: "/ready to answer 200",
      });
      const crossSite = await adminRequest(proxy, "/drain", {
        method: "POST",
        headers: {
          origin: "http://attacker.example",
          "content-type": "application/x-www-form-urlencoded",
        },
      });
      assert.equal(crossSite.status, 403, "a cross-origin form post is refused");
      assert.match(crossSite.contentType, /application\/json/);
      assert.equal((await adminRequest(proxy, "/ready")).status, 200, "and drains nothing");

      // DNS rebinding: the attacker's page is same-origin with itself, only Host gives it away.
      const evil = `evil.example:${new URL(adminUrl(proxy)).port}`;
      const rebound = await rawAdminRequest(proxy, "POST /drain", {
        host: evil,
        origin: `http://${evil}`,
        "content-length": "0",
      });
      assert.equal(rebound.status, 403, rebound.body);
      assert.match(rebound.body, /Host \\"evil\.example\\" is not allowed/);
      // A body announced as 50 MiB is refused from its Content-Length, before it arrives.
      const huge = await rawAdminRequest(proxy, "POST /clusters/echo/backends", {
        host: new URL(adminUrl(proxy)).host,
        "content-type": "application/json",
        "content-length": String(50 * 1024 * 1024),
      }, '{"address": "');
      assert.equal(huge.status, 413, huge.body);
      assert.equal((await adminRequest(proxy, "/ready")).status, 200, "and drains nothing");

      const drain = await adminRequest(proxy, "/drain", { method: "POST" });
      assert.deepEqual([drain.status, drain.body], [202, { status: "draining" }]);
      const ready = await adminRequest(proxy, "/ready");
      assert.equal(ready.status, 503);
      assert.deepEqual(ready.body, { ready: false, reason: "draining" });
      assert.equal((await adminRequest(proxy, "/live")).status, 200, "still live while draining");
    },
  );
});

Deno.test("/ready is 503 while no routed cluster has a usable backend", GRPC_JS, async () => {
  const proxy = await startAdminProxy(clusterConfig([`127.0.0.1:${await freePort()}`]));
  try {
    const ready = await adminRequest(proxy, "/ready");
    assert.equal(ready.status, 503);
    assert.match(ready.body.reason, /no routed cluster has a usable backend/);
  } finally {
    await proxy.stop();
  }
});
