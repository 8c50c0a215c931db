/**
 * Config reload and the drain delay, on the real proxy process with real grpc-js backends:
 * SIGHUP under load changes members, the picker and routes without failing a call or ending
 * a stream; an invalid config changes nothing and `/reload` says why; `watch` reloads on a
 * file change; a new listen address is bound before the old one closes; `drain.delay` keeps
 * serving while `/ready` fails.
 * @module
 */
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import tls from "node:tls";
import * as grpc from "@grpc/grpc-js";
import { GreeterClient } from "../examples/greeter_backend.ts";
import { adminRequest, startAdminProxy } from "./support/admin_client.ts";
import { startHealthBackend } from "./support/health_backends.ts";
import { sayHello } from "./support/health_traffic.ts";
import { type Pem, selfSigned } from "./support/pki.ts";
import { startRedis } from "./support/redis.ts";
import { freePort, GRPC_JS, type ProxyProcess, waitFor } from "./support/harness.ts";
import { parsePrometheusText, sumSamples } from "./support/prometheus.ts";
import http2 from "node:http2";
import { closeRaw, connectRaw, rawCall } from "./support/raw_h2.ts";
import {
  collectStream,
  serverStream,
  startHeldRawStream,
  startTestBackend,
  type TestBackend,
  testClient,
  TestMethod,
  unaryCall,
} from "./support/test_backend.ts";

/** The parts of `/clusters/{name}` these tests read. */
interface ClusterBody {
  readonly picker: string;
  readonly backends: { readonly address: string }[];
}

/** `/config`'s reload status. */
interface ReloadBody {
  readonly successes: number;
  readonly failures: number;
  readonly lastErrors: string[] | null;
}

/** A config with cluster `echo` over `backends` and the given extra routes first. */
function echoConfig(
  backends: TestBackend[],
  cluster: Record<string, unknown> = {},
  extra: Record<string, unknown> = {},
): Record<string, unknown> {
  return {
    drain: { timeout: "5s" },
    clusters: {
      echo: { backends: backends.map((backend) => backend.address), ...cluster },
      ...(extra.clusters as object | undefined),
    },
    routes: [...((extra.routes as unknown[] | undefined) ?? []), {
      service: "test.Test",
      cluster: "echo",
    }],
    ...Object.fromEntries(
      Object.entries(extra).filter(([key]) => key !== "clusters" && key !== "routes"),
    ),
  };
}

async function reloadStatus(proxy: ProxyProcess): Promise<ReloadBody> {
  const response = await adminRequest(proxy, "/config");
  assert.equal(response.status, 200);
  return (response.body as { reload: ReloadBody }).reload;
}

async function cluster(proxy: ProxyProcess, name: string): Promise<ClusterBody | undefined> {
  const response = await adminRequest(proxy, `/clusters/${name}`);
  return response.status === 200 ? response.body as ClusterBody : undefined;
}

/** Unary calls in `lanes` loops until {@link stop}; every failure is kept. */
function steadyLoad(client: grpc.Client, lanes = 4) {
  let running = true;
  let calls = 0;
  const failures: string[] = [];
  const done = Promise.all(Array.from({ length: lanes }, async () => {
    while (running) {
      try {
        await unaryCall(client, TestMethod.echo, Buffer.from("x"), { timeoutMs: 5_000 });
      } catch (error) {
        failures.push(`${(error as grpc.ServiceError).code} ${(error as Error).message}`);
      }
      calls++;
    }
  }));
  return {
    calls: () => calls,
    failures,
    async stop() {
      running = false;
      await done;
    },
  };
}

for (const workers of [1, 2]) {
  Deno.test({
    name: `workers: ${workers}: SIGHUP under load adds and removes backends, switches the ` +
      "picker and changes routes; no call fails and held streams complete",
    ...GRPC_JS,
    fn: async () => {
      const [b1, b2, b3] = await Promise.all(
        ["b1", "b2", "b3"].map((name) => startTestBackend(name)),
      );
      const proxy = await startAdminProxy({ ...echoConfig([b1, b2]), workers });
      const client = testClient(proxy.address);
      try {
        await waitFor(async () => (await adminRequest(proxy, "/ready")).status === 200, {
          what: "ready",
        });
        // Two streams, one per backend (round_robin), each held after its first message.
        const streams = [0, 1].map(() =>
          collectStream(serverStream(client, 50, 1024, { "x-hold": "1" }))
        );
        await waitFor(() => b1.calls() > 0 && b2.calls() > 0, { what: "a stream on each backend" });
        const load = steadyLoad(client);
        await waitFor(() => load.calls() > 50, { what: "steady load" });

        await proxy.writeConfig(echoConfig([b2, b3], { picker: "pick_first" }, {
          workers,
          clusters: { other: { backends: [b3.address] } },
          routes: [{
            method: TestMethod.echoMetadata,
            headers: [{ name: "x-route", exact: "other" }],
            cluster: "other",
          }],
        }));
        proxy.child.kill("SIGHUP");
        await waitFor(async () => (await reloadStatus(proxy)).successes === 1, {
          what: "the reload to apply",
        });
        const echo = (await cluster(proxy, "echo"))!;
        assert.equal(echo.picker, "pick_first");
        assert.deepEqual(
          echo.backends.map((backend) => backend.address).sort(),
          [
            b2.address,
            b3.address,
          ].sort(),
        );
        assert.ok(await cluster(proxy, "other"), "the new cluster is there");

        const before = load.calls();
        await waitFor(() => load.calls() > before + 50, { what: "calls after the reload" });
        await load.stop();
        b1.release();
        b2.release();
        for (const { messages, status } of await Promise.all(streams)) {
          assert.equal(status.code, grpc.status.OK);
          assert.equal(messages.length, 50, "the held stream got every message");
        }
        assert.deepEqual(
          load.failures,
          [],
          `${load.failures.length} of ${load.calls()} calls failed`,
        );
        console.log(
          `reload under load (workers: ${workers}): ${load.calls()} calls, 0 failed, ` +
            "2 held streams completed",
        );

        // The new route: the header takes the call to cluster other (b3 only).
        const metadata = new grpc.Metadata();
        metadata.set("x-route", "other");
        const routed = await unaryCall(client, TestMethod.echoMetadata, Buffer.alloc(0), {
          metadata,
        });
        assert.equal(routed.headers.get("x-backend")[0], "b3");
      } finally {
        client.close();
        await proxy.stop();
        await Promise.all([b1, b2, b3].map((backend) => backend.stop()));
      }
    },
  });
}

Deno.test({
  name: "an invalid config on SIGHUP changes nothing; POST /reload answers 400 naming the field",
  ...GRPC_JS,
  fn: async () => {
    const backend = await startTestBackend("b1");
    const proxy = await startAdminProxy(echoConfig([backend]));
    const client = testClient(proxy.address);
    try {
      await proxy.writeConfig(echoConfig([backend], { connectTimeout: "5 s" }));
      proxy.child.kill("SIGHUP");
      await waitFor(async () => (await reloadStatus(proxy)).failures === 1, {
        what: "the reload to fail",
      });
      const status = await reloadStatus(proxy);
      assert.match(status.lastErrors![0], /^clusters\.echo\.connectTimeout: /);
      assert.ok(
        proxy.output().includes("config reload failed, the running config is kept"),
        "the failure is logged",
      );
      // Still serving, with the old config.
      await unaryCall(client, TestMethod.echo, Buffer.from("still here"));
      const refused = await adminRequest(proxy, "/reload", { method: "POST" });
      assert.equal(refused.status, 400);
      const body = refused.body as { error: string; problems: string[] };
      assert.match(
        body.problems.join("\n"),
        /clusters\.echo\.connectTimeout: "5 s" is not a duration/,
      );
      const metrics = parsePrometheusText(
        (await adminRequest(proxy, "/metrics")).body as string,
      );
      assert.equal(
        sumSamples(metrics, "switchyard_config_reloads_total", { result: "failure" }),
        2,
      );
      // A valid config again applies.
      await proxy.writeConfig(echoConfig([backend], { connectTimeout: "2s" }));
      const applied = await adminRequest(proxy, "/reload", { method: "POST" });
      assert.equal(applied.status, 200, JSON.stringify(applied.body));
      assert.deepEqual((applied.body as { changed: string[] }).changed, ["clusters.echo"]);
      await unaryCall(client, TestMethod.echo, Buffer.from("after"));
    } finally {
      client.close();
      await proxy.stop();
      await backend.stop();
    }
  },
});

Deno.test({
  name: "watch: true reloads when the config file changes",
  ...GRPC_JS,
  fn: async () => {
    const [b1, b2] = await Promise.all(["b1", "b2"].map((name) => startTestBackend(name)));
    const proxy = await startAdminProxy(echoConfig([b1], {}, { watch: true }));
    try {
      await proxy.writeConfig(echoConfig([b1, b2], {}, { watch: true }));
      await waitFor(async () => (await cluster(proxy, "echo"))?.backends.length === 2, {
        what: "the file change to be applied",
      });
      assert.equal((await reloadStatus(proxy)).successes, 1);
    } finally {
      await proxy.stop();
      await Promise.all([b1.stop(), b2.stop()]);
    }
  },
});

Deno.test({
  name: "a reload that moves the listener binds the new address first; the old one's " +
    "stream completes",
  ...GRPC_JS,
  fn: async () => {
    const backend = await startTestBackend("b1");
    const proxy = await startAdminProxy(echoConfig([backend]));
    const newAddress = `127.0.0.1:${await freePort()}`;
    const newClient = testClient(newAddress);
    const session = await connectRaw(proxy.address);
    try {
      const held = await startHeldRawStream(session, 20, 1000);
      await proxy.writeConfig({ ...echoConfig([backend]), listen: newAddress });
      const applied = await adminRequest(proxy, "/reload", { method: "POST" });
      assert.equal(applied.status, 200, JSON.stringify(applied.body));
      await unaryCall(newClient, TestMethod.echo, Buffer.from("new"));
      await assert.rejects(connectRaw(proxy.address), "the old address accepts no connections");
      backend.release();
      const result = await held.result;
      assert.equal(result.grpcStatus, grpc.status.OK);
      assert.deepEqual(result.body, held.expectedBody);
    } finally {
      session.destroy();
      newClient.close();
      await proxy.stop();
      await backend.stop();
    }
  },
});

Deno.test({
  name: "drain.delay: /ready answers 503 while calls still succeed, then GOAWAY follows",
  ...GRPC_JS,
  fn: async () => {
    const backend = await startTestBackend("b1");
    const proxy = await startAdminProxy(
      echoConfig([backend], {}, { drain: { delay: "1500ms", timeout: "5s" } }),
    );
    const client = testClient(proxy.address);
    try {
      await waitFor(async () => (await adminRequest(proxy, "/ready")).status === 200, {
        what: "ready",
      });
      const signalledAt = Date.now();
      proxy.child.kill("SIGTERM");
      await waitFor(async () => (await adminRequest(proxy, "/ready")).status === 503, {
        what: "/ready to fail",
      });
      // During the delay a new connection is still served. Both clients close before the
      // GOAWAY comes: node:http2 on Deno can abort on a GOAWAY that races a client's close.
      const late = testClient(proxy.address);
      try {
        await unaryCall(late, TestMethod.echo, Buffer.from("during the delay"));
        await unaryCall(client, TestMethod.echo, Buffer.from("during the delay"));
      } finally {
        late.close();
        client.close();
      }
      const { code } = await proxy.exited;
      const tookMs = Date.now() - signalledAt;
      assert.equal(code, 0);
      assert.ok(tookMs >= 1_400, `exited after ${tookMs}ms; the delay is 1500ms`);
      const lines = proxy.output();
      const delayAt = lines.indexOf("serving for 1500ms more before GOAWAY");
      const goawayAt = lines.indexOf("draining: GOAWAY sent");
      assert.ok(delayAt >= 0 && goawayAt > delayAt, "the delay, then GOAWAY");
    } finally {
      client.close();
      await proxy.stop();
      await backend.stop();
    }
  },
});

Deno.test({
  name: "a reload applies health checks, Redis discovery and the access log",
  ...GRPC_JS,
  fn: async () => {
    const healthy = await startHealthBackend("healthy");
    const sick = await startHealthBackend("sick");
    sick.setServing("NOT_SERVING");
    const fromRedis = await startHealthBackend("from-redis");
    const redis = await startRedis();
    const logPath = await Deno.makeTempFile({ prefix: "switchyard-reload-", suffix: ".log" });
    const greeter = (cluster: Record<string, unknown>, top: Record<string, unknown> = {}) => ({
      drain: { timeout: "5s" },
      clusters: { greeter: { backends: [healthy.address, sick.address], ...cluster } },
      routes: [{ service: "helloworld.Greeter", cluster: "greeter" }],
      ...top,
    });
    const proxy = await startAdminProxy(greeter({ panicThreshold: 0 }));
    const client = new GreeterClient(proxy.address, grpc.credentials.createInsecure());
    const health = async (address: string) =>
      ((await adminRequest(proxy, "/clusters/greeter")).body as {
        backends: { address: string; health: string }[];
      }).backends.find((backend) => backend.address === address)?.health;
    try {
      await redis.client.sAdd("greeters", fromRedis.address);
      await proxy.writeConfig(greeter(
        {
          panicThreshold: 0,
          healthCheck: { interval: "100ms", timeout: "500ms" },
          discovery: { redisSet: "greeters" },
        },
        { redis: { url: redis.url }, accessLog: { enabled: true, path: logPath } },
      ));
      const applied = await adminRequest(proxy, "/reload", { method: "POST" });
      assert.equal(applied.status, 200, JSON.stringify(applied.body));
      assert.deepEqual(
        (applied.body as { changed: string[] }).changed.sort(),
        ["accessLog", "clusters.greeter", "redis"],
      );
      await waitFor(async () => (await health(sick.address)) === "unhealthy", {
        what: "the new health check to find the sick backend",
      });
      await waitFor(async () => (await health(fromRedis.address)) === "healthy", {
        what: "the Redis member to join and pass its checks",
      });
      // Calls now avoid the sick backend, and are logged to the new file.
      for (let i = 0; i < 6; i++) assert.equal((await sayHello(client)).code, grpc.status.OK);
      await waitFor(async () => (await Deno.readTextFile(logPath)).split("\n").length > 6, {
        what: "access-log lines in the new file",
      });
      const backends = (await Deno.readTextFile(logPath)).trim().split("\n")
        .map((line) => JSON.parse(line).backend);
      assert.ok(!backends.includes(sick.address), "no call went to the unhealthy backend");
    } finally {
      client.close();
      await proxy.stop();
      for (const backend of [healthy, sick, fromRedis]) backend.stop();
      await redis.stop();
      await Deno.remove(logPath).catch(() => {});
    }
  },
});

/** The SHA-256 fingerprint of the certificate a TLS listener at `address` presents. */
function servedCertificate(address: string): Promise<string> {
  const [host, port] = address.split(":");
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      host,
      port: Number(port),
      servername: "localhost",
      rejectUnauthorized: false,
      ALPNProtocols: ["h2"],
    }, () => {
      resolve(socket.getPeerCertificate().fingerprint256);
      socket.destroy();
    });
    socket.once("error", reject);
  });
}

Deno.test({
  name: "a reload serves new certificates on new connections, and refuses a mismatched pair",
  ...GRPC_JS,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "switchyard-certs-" });
    const backend = await startTestBackend("b1");
    const first = await selfSigned(dir, "first", "/CN=localhost", [
      "subjectAltName=DNS:localhost,IP:127.0.0.1",
    ]);
    const second = await selfSigned(dir, "second", "/CN=localhost", [
      "subjectAltName=DNS:localhost,IP:127.0.0.1",
    ]);
    const fingerprint = async (pem: Pem) =>
      new X509Certificate(await Deno.readTextFile(pem.cert)).fingerprint256;
    const config = (tlsFiles: Pem) => ({ ...echoConfig([backend]), tls: tlsFiles });
    const proxy = await startAdminProxy(config(first));
    // A connection made before the rotation: the listener takes the new certificate in place,
    // so it is not drained with a GOAWAY, as a replaced listener's connections are.
    const session = http2.connect(`https://${proxy.address}`, { rejectUnauthorized: false });
    session.on("error", () => {});
    try {
      assert.equal(await servedCertificate(proxy.address), await fingerprint(first));
      assert.equal((await rawCall(session, TestMethod.echo)).grpcStatus, grpc.status.OK);
      await proxy.writeConfig(config(second));
      const applied = await adminRequest(proxy, "/reload", { method: "POST" });
      assert.equal(applied.status, 200, JSON.stringify(applied.body));
      assert.ok((applied.body as { changed: string[] }).changed.includes("certificates"));
      assert.equal(await servedCertificate(proxy.address), await fingerprint(second));
      assert.equal((await rawCall(session, TestMethod.echo)).grpcStatus, grpc.status.OK);
      assert.ok(!session.closed && !session.destroyed, "the earlier connection stays up");
      // A certificate with another certificate's key is refused; the running one stays.
      await proxy.writeConfig(config({ cert: first.cert, key: second.key }));
      const refused = await adminRequest(proxy, "/reload", { method: "POST" });
      assert.equal(refused.status, 400);
      assert.match(
        (refused.body as { problems: string[] }).problems.join("\n"),
        /^tls\.cert: does not match its private key/m,
      );
      assert.equal(await servedCertificate(proxy.address), await fingerprint(second));
    } finally {
      await closeRaw(session);
      await proxy.stop();
      await backend.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "POST /drain, then SIGTERM: the delay and the drain still run; a held stream completes",
  ...GRPC_JS,
  fn: async () => {
    const backend = await startTestBackend("b1");
    const proxy = await startAdminProxy(
      echoConfig([backend], {}, { drain: { delay: "1s", timeout: "10s" } }),
    );
    const session = await connectRaw(proxy.address);
    try {
      const held = await startHeldRawStream(session, 20, 1000);
      const startedAt = Date.now();
      assert.equal((await adminRequest(proxy, "/drain", { method: "POST" })).status, 202);
      proxy.child.kill("SIGTERM");
      await waitFor(() => proxy.output().includes("draining: GOAWAY sent"), {
        what: "the GOAWAY after the delay",
      });
      assert.ok(Date.now() - startedAt >= 900, "the delay ran before GOAWAY");
      assert.ok(!proxy.hasExited(), "the process waits for the held stream");
      backend.release();
      const result = await held.result;
      assert.equal(result.grpcStatus, grpc.status.OK);
      assert.deepEqual(result.body, held.expectedBody);
      assert.equal((await proxy.exited).code, 0);
    } finally {
      session.destroy();
      await proxy.stop();
      await backend.stop();
    }
  },
});

Deno.test({
  name: "workers: 2: a reload that turns the access log on to stdout logs every call",
  ...GRPC_JS,
  fn: async () => {
    const backend = await startTestBackend("b1");
    const proxy = await startAdminProxy({ ...echoConfig([backend]), workers: 2 });
    const client = testClient(proxy.address);
    try {
      await proxy.writeConfig({
        ...echoConfig([backend], {}, { accessLog: { enabled: true } }),
        workers: 2,
      });
      const applied = await adminRequest(proxy, "/reload", { method: "POST" });
      assert.equal(applied.status, 200, JSON.stringify(applied.body));
      for (let i = 0; i < 10; i++) await unaryCall(client, TestMethod.echo, Buffer.from("x"));
      await waitFor(
        () => proxy.stdout().split("\n").filter((line) => line.includes('"method"')).length >= 10,
        { what: "ten access-log lines on stdout" },
      );
    } finally {
      client.close();
      await proxy.stop();
      await backend.stop();
    }
  },
});

Deno.test({
  name: "watch: true follows a Kubernetes ConfigMap update (a ..data symlink swap)",
  ...GRPC_JS,
  fn: async () => {
    const [b1, b2] = await Promise.all(["b1", "b2"].map((name) => startTestBackend(name)));
    // A ConfigMap volume: config.json → ..data/config.json, ..data → ..2026_v1 (a directory).
    const volume = await Deno.makeTempDir({ prefix: "switchyard-configmap-" });
    const base = {
      listen: `127.0.0.1:${await freePort()}`,
      admin: { listen: `127.0.0.1:${await freePort()}` },
      workers: 1,
    };
    const version = async (name: string, backends: TestBackend[]) => {
      await Deno.mkdir(`${volume}/${name}`);
      await Deno.writeTextFile(
        `${volume}/${name}/config.json`,
        JSON.stringify({ ...base, ...echoConfig(backends, {}, { watch: true }) }),
      );
    };
    await version("..2026_v1", [b1]);
    await Deno.symlink("..2026_v1", `${volume}/..data`);
    await Deno.symlink("..data/config.json", `${volume}/config.json`);
    const proxy = await startAdminProxy(
      { ...base, ...echoConfig([b1]) },
      { args: ["--config", `${volume}/config.json`] },
    );
    try {
      assert.equal((await cluster(proxy, "echo"))?.backends.length, 1);
      // The kubelet's update: a new directory, a new symlink, renamed over ..data.
      await version("..2026_v2", [b1, b2]);
      await Deno.symlink("..2026_v2", `${volume}/..data_tmp`);
      await Deno.rename(`${volume}/..data_tmp`, `${volume}/..data`);
      await waitFor(async () => (await cluster(proxy, "echo"))?.backends.length === 2, {
        what: "the ConfigMap update to be applied",
      });
    } finally {
      await proxy.stop();
      await Promise.all([b1.stop(), b2.stop()]);
      await Deno.remove(volume, { recursive: true });
    }
  },
});
