/**
 * The admin Hono application in process, through `app.request()`: no proxy, no sockets.
 * The app runs against a fake {@link AdminTarget} holding one real, memberless cluster, whose
 * snapshots are recorded instead of reaching data planes.
 */
import type { ReloadResult } from "../src/config/reload.ts";
import assert from "node:assert/strict";
import type { OpenAPIHono } from "@hono/zod-openapi";
import { createAdminApp } from "../src/admin/app.ts";
import type { AdminTarget } from "../src/admin/target.ts";
import { Cluster } from "../src/cluster/cluster.ts";
import type { ClusterSnapshot } from "../src/cluster/snapshot.ts";
import { type Config, configSchema } from "../src/config/schema.ts";
import { ProxyMetrics } from "../src/metrics/metrics.ts";
import {
  adminRequestInit,
  type AdminRequestOptions,
  type AdminResponse,
  readAdminResponse,
} from "./support/admin_client.ts";

const ADMIN = "http://127.0.0.1:9901";
const TOKEN = "s3cret-admin-token-0123456789";

/**
 * A fake proxy: cluster `echo` without members and without data planes, a drain counter,
 * and the snapshots the cluster published.
 */
interface FakeTarget extends AdminTarget {
  drains: number;
  readonly published: ClusterSnapshot[];
  /** What the next reloads answer, in order; a success once empty. */
  readonly reloadResults: ReloadResult[];
}

/** Builds the admin app over a fake proxy whose config has `admin` merged in. */
function adminApp(
  admin: Record<string, unknown> = {},
  token?: string,
): { app: OpenAPIHono; target: FakeTarget; [Symbol.dispose](): void } {
  const config: Config = configSchema.parse({
    admin: { listen: "127.0.0.1:9901", ...admin },
    clusters: { echo: { backends: ["127.0.0.1:1"] } },
    routes: [{ cluster: "echo" }],
  });
  const published: ClusterSnapshot[] = [];
  const echo = new Cluster("echo", { ...config.clusters.echo, backends: [] }, {
    publish: (snapshot) => published.push(snapshot),
  });
  const target: FakeTarget = {
    config,
    clusters: new Map([["echo", echo]]),
    discovery: undefined,
    draining: false,
    dataPlanes: { workers: () => [], usableClusters: () => Promise.resolve(new Set()) },
    drains: 0,
    published,
    drain() {
      target.drains++;
      return Promise.resolve();
    },
    dataPlaneStats: () => Promise.resolve([]),
    settled: () => Promise.resolve(echo.flush()),
    reloadResults: [],
    reloadStatus: { successes: 0, failures: 0, lastSuccessAt: 0, lastErrors: undefined },
    reload() {
      return Promise.resolve(
        target.reloadResults.shift() ?? { ok: true, changed: [], warnings: [] },
      );
    },
  };
  const metrics = new ProxyMetrics({
    clusters: target.clusters,
    discovery: undefined,
    dataPlaneMetrics: () => Promise.resolve([]),
    dataPlanes: { workers: () => [] },
    reloadStatus: target.reloadStatus,
  });
  return {
    app: createAdminApp(target, { token, metrics }),
    target,
    [Symbol.dispose]: () => echo.close(),
  };
}

/** Sends a request to `url` (relative to the loopback admin address); `init` overrides. */
async function send(
  app: OpenAPIHono,
  url: string,
  options: AdminRequestOptions = {},
  init: RequestInit = {},
): Promise<AdminResponse> {
  const request = { ...adminRequestInit(options), ...init };
  return await readAdminResponse(await app.request(new URL(url, ADMIN).href, request));
}

Deno.test("unknown clusters are 404 and unknown pickers 400, as JSON naming the choices", async () => {
  using fake = adminApp();
  const cases: [string, string, unknown, number, RegExp, string[]][] = [
    ["GET", "/clusters/nope", undefined, 404, /unknown cluster "nope"/, ["echo"]],
    ["PUT", "/clusters/nope/picker", { name: "pick_first" }, 404, /unknown cluster/, ["echo"]],
    [
      "PUT",
      "/clusters/echo/picker",
      { name: "fastest" },
      400,
      /unknown picker "fastest"/,
      ["pick_first", "round_robin", "ring_hash", "least_request", "weighted_round_robin"],
    ],
  ];
  for (const [method, path, json, status, error, known] of cases) {
    const response = await send(fake.app, path, { method, json });
    const label = `${method} ${path}`;
    assert.equal(response.status, status, label);
    assert.match(response.contentType, /application\/json/, label);
    assert.match(response.body.error, error, label);
    assert.deepEqual(response.body.known, known, label);
  }
  const notJson = await send(fake.app, "/clusters/echo/picker", { method: "PUT", json: "{" });
  assert.equal(notJson.status, 400);
  assert.match(notJson.body.error, /Malformed JSON/);
  assert.equal(fake.target.clusters.get("echo")!.policy, "round_robin", "nothing changed");
});

Deno.test("backend addresses: RFC 1123 names, dotted quads and bracketed IPv6 only", async () => {
  using fake = adminApp();
  const long = (length: number) => "a".repeat(length);
  const rejected = [
    "no-port",
    "127.0.0.1:99999",
    "127.0.0.1:0",
    "127.1:50051", // inet_aton shorthand for 127.0.0.1
    "0x7f.1:50051", // hex
    "0x7f000001:50051",
    "2130706433:50051", // one 32-bit number
    "0177.0.0.1:50051", // a leading zero reads as octal
    "256.0.0.1:50051",
    "1.2.3.4.5:50051",
    "-backend:50051",
    "backend-:50051",
    "back_end:50051",
    "a..b:50051",
    ".a:50051",
    `${long(64)}:50051`,
    `${[long(63), long(63), long(63), long(63)].join(".")}:50051`, // 255 characters
    "[::1:50051",
    "[not:v6]:50051",
    "[127.0.0.1]:50051",
    "::1:50051",
  ];
  for (const address of rejected) {
    const response = await send(fake.app, "/clusters/echo/backends", {
      method: "POST",
      json: { address },
    });
    assert.equal(response.status, 400, address);
    assert.match(response.body.error, /is not a host:port address/, address);
    const deleted = await send(fake.app, `/clusters/echo/backends/${encodeURIComponent(address)}`, {
      method: "DELETE",
    });
    assert.equal(deleted.status, 400, `DELETE ${address}`);
  }
  // Well-formed addresses pass validation and only then miss: 404, not 400.
  const accepted = [
    "127.0.0.1:1",
    "backend-1.svc.cluster.local:50051",
    "B1:50051",
    "[::1]:50051",
    "[2001:db8::1]:50051",
    `${long(63)}.example:50051`,
    `${[long(63), long(63), long(63), long(61)].join(".")}:50051`, // 253 characters
    "1e100.net:443",
  ];
  for (const address of accepted) {
    const response = await send(fake.app, `/clusters/echo/backends/${address}/drain`, {
      method: "POST",
    });
    assert.equal(response.status, 404, address);
    assert.match(response.body.error, /has no backend/, address);
  }
  assert.deepEqual(fake.target.clusters.get("echo")!.backends(), [], "nothing was added");
});

/** A 50 MiB body produced on demand, counting what the server pulled. */
function hugeBody(): { stream: ReadableStream<Uint8Array>; pulled: () => number } {
  const chunk = new Uint8Array(64 * 1024).fill(0x20);
  let pulled = 0;
  const stream = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (pulled >= 50 * 1024 * 1024) return controller.close();
      pulled += chunk.length;
      controller.enqueue(chunk);
    },
  }, { highWaterMark: 0 });
  return { stream, pulled: () => pulled };
}

Deno.test("a body over 64 KiB is refused with 413 JSON before it is read whole", async () => {
  using fake = adminApp();
  for (const declared of [true, false]) {
    const { stream, pulled } = hugeBody();
    const headers: Record<string, string> = { "content-type": "application/json" };
    if (declared) headers["content-length"] = String(50 * 1024 * 1024);
    const response = await send(fake.app, "/clusters/echo/backends", { method: "POST", headers }, {
      body: stream,
      duplex: "half",
    } as RequestInit);
    const label = declared ? "with content-length" : "streamed";
    assert.equal(response.status, 413, label);
    assert.match(response.contentType, /application\/json/, label);
    assert.match(response.body.error, /larger than 65536 bytes/, label);
    assert.ok(pulled() <= 128 * 1024, `${label}: read ${pulled()} bytes`);
  }
  // Exactly at the limit is still served.
  const json = JSON.stringify({ name: "fastest" });
  const atLimit = await send(fake.app, "/clusters/echo/picker", {
    method: "PUT",
    json: json + " ".repeat(64 * 1024 - json.length),
  });
  assert.equal(atLimit.status, 400);
  assert.match(atLimit.body.error, /unknown picker/);
});

/** The status of `method url` with `token` as bearer (if any); 403s must name the Host. */
async function statusFor(
  app: OpenAPIHono,
  url: string,
  { method = "GET", token }: { method?: string; token?: string } = {},
): Promise<number> {
  const headers = { origin: new URL(url).origin };
  const response = await send(app, url, { method, token, headers });
  if (response.status === 403) assert.match(response.body.error, /Host "[^"]+" is not allowed/);
  return response.status;
}

Deno.test("without a token, a DNS-rebound Host is refused with 403 JSON", async () => {
  using fake = adminApp();
  // The rebinding attack: the page's own origin, so the cross-origin check passes.
  const evil = "http://evil.example:9901";
  assert.equal(await statusFor(fake.app, `${evil}/drain`, { method: "POST" }), 403);
  const register = await send(fake.app, `${evil}/clusters/echo/backends`, {
    method: "POST",
    headers: { origin: evil },
    json: { address: "127.0.0.1:1" },
  });
  assert.equal(register.status, 403);
  assert.match(register.contentType, /application\/json/);
  assert.match(register.body.error, /Host "evil\.example" is not allowed/);
  assert.equal(await statusFor(fake.app, `${evil}/clusters`), 403, "reads too");
  assert.equal(await statusFor(fake.app, "http://127.0.0.1.evil.example:9901/live"), 403);
  assert.equal(await statusFor(fake.app, "http://0.0.0.0:9901/live"), 403);
  assert.equal(fake.target.drains, 0);
  assert.deepEqual(fake.target.clusters.get("echo")!.backends(), []);

  for (const host of ["localhost", "LocalHost", "127.0.0.1", "127.9.8.7", "[::1]"]) {
    assert.equal(await statusFor(fake.app, `http://${host}:9901/live`), 200, host);
  }
  assert.equal(await statusFor(fake.app, `http://localhost:9901/drain`, { method: "POST" }), 202);
  assert.equal(fake.target.drains, 1);
});

Deno.test("admin.allowedHosts and the admin.listen host are answered", async () => {
  using fake = adminApp({
    listen: "localhost:9901",
    allowedHosts: ["Admin.Internal", "[fd00::1]"],
  });
  for (const host of ["admin.internal", "ADMIN.internal", "[fd00::1]", "127.0.0.1"]) {
    assert.equal(await statusFor(fake.app, `http://${host}:9901/live`), 200, host);
  }
  assert.equal(await statusFor(fake.app, "http://evil.example:9901/live"), 403);
});

Deno.test("with a token, Host is checked only when admin.allowedHosts is set", async () => {
  {
    // The token is the protection: a rebound page cannot send it, and probes and proxies
    // reach the API by names nobody listed (pod IP, Service DNS).
    using fake = adminApp({ listen: "0.0.0.0:9901" }, TOKEN);
    assert.equal(await statusFor(fake.app, "http://10.1.2.3:9901/live", { token: TOKEN }), 200);
    assert.equal(
      await statusFor(fake.app, "http://evil.example:9901/drain", { method: "POST" }),
      401,
    );
  }
  {
    using fake = adminApp(
      { listen: "0.0.0.0:9901", allowedHosts: ["switchyard-admin.prod.svc"] },
      TOKEN,
    );
    const allowed = "http://switchyard-admin.prod.svc:9901/live";
    assert.equal(await statusFor(fake.app, allowed, { token: TOKEN }), 200);
    assert.equal(await statusFor(fake.app, "http://localhost:9901/live", { token: TOKEN }), 200);
    for (const host of ["evil.example", "10.1.2.3", "0.0.0.0"]) {
      assert.equal(
        await statusFor(fake.app, `http://${host}:9901/live`, { token: TOKEN }),
        403,
        host,
      );
    }
  }
});

Deno.test("POST /reload: 200 with what changed, 400 naming the field; /config shows reloads", async () => {
  using fixture = adminApp();
  const { app, target } = fixture;
  target.reloadResults.push(
    { ok: true, changed: ["routes", "clusters.echo"], warnings: ["workers: restart"] },
    { ok: false, errors: ['clusters.echo.connectTimeout: "5 s" is not a duration'] },
  );
  const applied = await app.request("http://127.0.0.1:9901/reload", { method: "POST" });
  assert.equal(applied.status, 200);
  assert.deepEqual(await applied.json(), {
    status: "reloaded",
    changed: ["routes", "clusters.echo"],
    warnings: ["workers: restart"],
  });
  const refused = await app.request("http://127.0.0.1:9901/reload", { method: "POST" });
  assert.equal(refused.status, 400);
  const body = await refused.json();
  assert.equal(body.error, "reload refused");
  assert.match(body.problems[0], /^clusters\.echo\.connectTimeout: /);
  const config = await (await app.request("http://127.0.0.1:9901/config")).json();
  assert.deepEqual(config.reload, {
    successes: 0,
    failures: 0,
    lastSuccessAt: new Date(0).toISOString(),
    lastErrors: null,
  });
  assert.ok("routes" in config, "the config itself is still there");
});
