/**
 * Routing, call policy, header rewrites and cluster limits, unit by unit in-process: the
 * router against validated configs, the rewrites against header lists, the retry backoff
 * against gRFC A6's bounds, and the shared limit counters as two workers see them.
 * @module
 */
import assert from "node:assert/strict";
import { ConfigError, parseConfig } from "../src/config/load.ts";
import { type Config, configSchema } from "../src/config/schema.ts";
import { GrpcStatus } from "../src/proxy/grpc_status.ts";
import { retryBackoffMs } from "../src/route/policy.ts";
import { RequestRewrite } from "../src/route/rewrite.ts";
import { setHeader } from "../src/transport/stream.ts";
import { Router } from "../src/route/router.ts";
import {
  CallLimits,
  type LimitSettings,
  limitsMemory,
  resetWorkerSlots,
} from "../src/upstream/call_limits.ts";

/** A validated config with clusters `a` and `b` and the given routes. */
function parse(routes: unknown[], cluster: Record<string, unknown> = {}): Config {
  return configSchema.parse({
    clusters: {
      a: { backends: ["127.0.0.1:1"], ...cluster },
      b: { backends: ["127.0.0.1:2"] },
    },
    routes,
  });
}

/** A router whose targets are cluster names. */
function router(routes: unknown[], cluster: Record<string, unknown> = {}): Router<string> {
  const config = parse(routes, cluster);
  return new Router(config.routes, config.clusters, (name) => name);
}

const GRPC_HEADERS = [":method", "POST", ":authority", "api.example.com:443"];

function target(routes: Router<string>, path: string, headers: string[] = GRPC_HEADERS) {
  return routes.match(path, headers)?.target;
}

Deno.test("router: method beats service beats any path", () => {
  // Listed least specific first; duplicates of a path are config errors (tests/check_test.ts).
  const routes = router([
    { service: "pkg.Greeter", cluster: "a" },
    { method: "/pkg.Greeter/SayHello", cluster: "b" },
    { cluster: "a" },
  ]);
  assert.equal(target(routes, "/pkg.Greeter/SayHello"), "b");
  assert.equal(target(routes, "/pkg.Greeter/SayGoodbye"), "a");
  assert.equal(target(routes, "/pkg.GreeterV2/SayHello"), "a");
  assert.equal(target(routes, ""), "a");
});

Deno.test("router: without a catch-all an unknown service has no route", () => {
  const routes = router([{ service: "pkg.Greeter", cluster: "a" }]);
  assert.equal(target(routes, "/pkg.Greeter/X"), "a");
  assert.equal(target(routes, "/other.Service/X"), undefined);
  assert.equal(target(routes, "/pkg.Greete/X"), undefined);
});

Deno.test("router: within one path, more conditions win, then config order", () => {
  const routes = router([
    { service: "pkg.S", cluster: "a" },
    { service: "pkg.S", headers: [{ name: "x-canary", exact: "1" }], cluster: "b" },
    {
      service: "pkg.S",
      headers: [{ name: "x-canary", exact: "1" }, { name: "x-tenant", prefix: "acme" }],
      cluster: "a",
    },
  ]);
  assert.equal(target(routes, "/pkg.S/M", [...GRPC_HEADERS, "x-canary", "1"]), "b");
  assert.equal(
    target(routes, "/pkg.S/M", [...GRPC_HEADERS, "x-canary", "1", "x-tenant", "acme-eu"]),
    "a",
    "the route with two conditions comes before the one with one",
  );
  assert.equal(target(routes, "/pkg.S/M", [...GRPC_HEADERS, "x-canary", "2"]), "a");
  // A method route without conditions still beats a service route whose conditions hold.
  const byPath = router([
    { service: "pkg.S", headers: [{ name: "x-canary", present: true }], cluster: "b" },
    { method: "/pkg.S/M", cluster: "a" },
  ]);
  assert.equal(target(byPath, "/pkg.S/M", [...GRPC_HEADERS, "x-canary", "1"]), "a");
  assert.equal(target(byPath, "/pkg.S/N", [...GRPC_HEADERS, "x-canary", "1"]), "b");
  assert.equal(target(byPath, "/pkg.S/N"), undefined);
});

Deno.test("router: header matchers read the first value; present and absent", () => {
  const routes = router([
    { headers: [{ name: "x-v", exact: "blue" }], cluster: "b" },
    {
      headers: [{ name: "x-debug", present: false }, { name: "x-id", regex: "[0-9]+" }],
      cluster: "a",
    },
  ]);
  assert.equal(target(routes, "/p.S/M", [...GRPC_HEADERS, "x-v", "blue", "x-v", "green"]), "b");
  assert.equal(
    target(routes, "/p.S/M", [...GRPC_HEADERS, "x-v", "green", "x-v", "blue"]),
    undefined,
  );
  assert.equal(target(routes, "/p.S/M", [...GRPC_HEADERS, "x-id", "42"]), "a");
  assert.equal(
    target(routes, "/p.S/M", [...GRPC_HEADERS, "x-id", "42x"]),
    undefined,
    "a regex matches the whole value",
  );
  assert.equal(target(routes, "/p.S/M", [...GRPC_HEADERS, "x-id", "42", "x-debug", ""]), undefined);
});

Deno.test("router: :authority matchers", () => {
  const routes = router([
    { authority: { suffix: ".internal:50051" }, cluster: "b" },
    { authority: { exact: "api.example.com:443" }, cluster: "a" },
  ]);
  assert.equal(target(routes, "/p.S/M"), "a");
  assert.equal(target(routes, "/p.S/M", [":authority", "orders.internal:50051"]), "b");
  assert.equal(target(routes, "/p.S/M", [":authority", "other:443"]), undefined);
  assert.equal(target(routes, "/p.S/M", []), undefined, "no :authority matches no condition");
});

Deno.test("config: route conditions and rewrites are validated, naming the field", () => {
  const problems = (routes: unknown[]) => {
    const raw = { clusters: { a: { backends: ["127.0.0.1:1"] } }, routes };
    try {
      parseConfig(raw, "test", { pickers: ["round_robin"] });
    } catch (error) {
      assert.ok(error instanceof ConfigError);
      return error.problems.join("\n");
    }
    assert.fail(`${JSON.stringify(routes)} must be refused`);
  };
  assert.match(
    problems([{ cluster: "a", headers: [{ name: "x-a", exact: "1", prefix: "1" }] }]),
    /routes\[0\]\.headers\[0\]: set exactly one of/,
  );
  assert.match(
    problems([{ cluster: "a", headers: [{ name: "x-a", regex: "(" }] }]),
    /routes\[0\]\.headers\[0\]\.regex: "\(" is not a regular expression/,
  );
  assert.match(
    problems([{ cluster: "a", headers: [{ name: "X-Upper", present: true }] }]),
    /routes\[0\]\.headers\[0\]\.name: is not a lower-case HTTP header name/,
  );
  assert.match(
    problems([{ cluster: "a", requestHeaders: { set: { "grpc-timeout": "1S" } } }]),
    /routes\[0\]\.requestHeaders\.set\.grpc-timeout: "grpc-timeout" cannot be rewritten/,
  );
  assert.match(
    problems([{ cluster: "a", requestHeaders: { append: { "x-a": "line\nbreak" } } }]),
    /is not a valid header value/,
  );
  assert.match(
    problems([{ cluster: "a", retry: { retryOn: ["UNAVAILBLE"] } }]),
    /routes\[0\]\.retry\.retryOn\[0\]/,
  );
  assert.match(
    problems([{ cluster: "a", retry: { retryOn: ["UNAVAILABLE"], maxAttempts: 6 } }]),
    /routes\[0\]\.retry\.maxAttempts/,
  );
  assert.match(
    problems([{ cluster: "a", authorityRewrite: { literal: "a/b" } }]),
    /routes\[0\]\.authorityRewrite/,
  );
});

Deno.test("policy: a route's fields override its cluster's; the rest are the cluster's", () => {
  const config = parse([
    { service: "p.S", cluster: "a", timeout: "2s", retry: { retryOn: ["ABORTED"] } },
    { cluster: "a" },
  ], {
    timeout: "10s",
    maxTimeout: "30s",
    streamIdleTimeout: "1m",
    retry: { retryOn: ["UNAVAILABLE", "RESOURCE_EXHAUSTED"], maxAttempts: 4 },
    transparentRetry: { maxAttempts: 2 },
  });
  const routes = new Router(config.routes, config.clusters, (name) => name);
  const route = routes.match("/p.S/M", [])!.policy;
  assert.equal(route.timeoutMs, 2_000);
  assert.equal(route.maxTimeoutMs, 30_000);
  assert.equal(route.streamIdleTimeoutMs, 60_000);
  assert.equal(route.retry?.retryOn, 1 << GrpcStatus.ABORTED);
  assert.equal(route.retry?.maxAttempts, 3, "the route's retry policy, with its own defaults");
  assert.equal(route.transparentAttempts, 2);
  assert.equal(route.retryBufferBytes, 64 * 1024);
  const fallback = routes.match("/q.T/M", [])!.policy;
  assert.equal(fallback.timeoutMs, 10_000);
  assert.equal(
    fallback.retry?.retryOn,
    (1 << GrpcStatus.UNAVAILABLE) | (1 << GrpcStatus.RESOURCE_EXHAUSTED),
  );
  assert.equal(fallback.retry?.maxAttempts, 4);
  const off = new Router(
    parse([{ cluster: "a", retry: null }], { retry: { retryOn: ["UNAVAILABLE"] } }).routes,
    config.clusters,
    (name) => name,
  );
  assert.equal(off.match("/q.T/M", [])!.policy.retry, undefined, "retry: null turns it off");
  const defaults = router([{ cluster: "b" }]).match("/q.T/M", [])!.policy;
  assert.equal(defaults.timeoutMs, undefined);
  assert.equal(defaults.streamIdleTimeoutMs, 300_000, "Envoy's 5 minutes");
  assert.equal(defaults.retry, undefined);
  assert.equal(defaults.transparentAttempts, 3);
});

Deno.test("policy: retry backoff stays within gRFC A6's bounds and grows to maxBackoff", () => {
  const policy = {
    retryOn: 0,
    maxAttempts: 5,
    perTryTimeoutMs: 0,
    initialBackoffMs: 10,
    maxBackoffMs: 35,
    backoffMultiplier: 2,
  };
  for (const [retry, ceiling] of [[1, 10], [2, 20], [3, 35], [4, 35]]) {
    const samples = Array.from({ length: 2_000 }, () => retryBackoffMs(policy, retry));
    assert.ok(samples.every((ms) => ms >= 0 && ms <= ceiling), `retry ${retry} within ${ceiling}`);
    // Uniform on [0, ceiling]: the largest of 2,000 draws is near the ceiling.
    assert.ok(Math.max(...samples) > ceiling * 0.9, `retry ${retry} spreads up to ${ceiling}`);
  }
});

Deno.test("rewrite: remove, set, append, x-forwarded-for and x-request-id, in that order", () => {
  const config = parse([{
    cluster: "a",
    requestHeaders: {
      remove: ["x-secret"],
      set: { "x-env": "prod", "x-secret": "replaced" },
      append: { "x-tag": "proxy" },
    },
    xForwardedFor: true,
    requestId: true,
    authorityRewrite: { literal: "backend.internal" },
  }]);
  const rewrite = RequestRewrite.of(config.routes[0])!;
  const headers = [
    ":method",
    "POST",
    ":authority",
    "api.example.com",
    ":path",
    "/p.S/M",
    "x-secret",
    "a",
    "x-env",
    "dev",
    "x-env",
    "qa",
    "x-tag",
    "client",
    "x-forwarded-for",
    "203.0.113.7",
  ];
  const id = rewrite.apply(headers, "[2001:db8::1]:40000");
  assert.match(id ?? "", /^[0-9a-f-]{36}$/, "a generated UUID");
  assert.deepEqual(headers, [
    ":method",
    "POST",
    ":authority",
    "backend.internal",
    ":path",
    "/p.S/M",
    "x-env",
    "prod",
    "x-tag",
    "client",
    "x-forwarded-for",
    "203.0.113.7, 2001:db8::1",
    "x-secret",
    "replaced",
    "x-tag",
    "proxy",
    "x-request-id",
    id,
  ]);
  // The client's own request id is kept and returned.
  const withId = [":path", "/p.S/M", "x-request-id", "abc"];
  assert.equal(rewrite.apply(withId, "127.0.0.1:1"), "abc");
  assert.equal(withId.filter((field) => field === "x-request-id").length, 1);
  assert.equal(RequestRewrite.of(parse([{ cluster: "a" }]).routes[0]), undefined);
});

Deno.test("rewrite: a new pseudo-header goes before the regular fields (RFC 9113 §8.3)", () => {
  const headers = [":method", "POST", ":path", "/p.S/M", "te", "trailers"];
  setHeader(headers, ":authority", "127.0.0.1:50051");
  assert.deepEqual(headers, [
    ":method",
    "POST",
    ":path",
    "/p.S/M",
    ":authority",
    "127.0.0.1:50051",
    "te",
    "trailers",
  ]);
});

const LIMITS: LimitSettings = {
  maxConcurrentCalls: 4,
  maxPendingCalls: 1,
  retryBudgetPercent: 50,
  minRetryConcurrency: 1,
};

Deno.test("limits: shared by two workers; a restarted worker starts its slots from zero", () => {
  const memory = limitsMemory(2, 2);
  const one = new CallLimits(memory, 1, 1, 2, LIMITS);
  const two = new CallLimits(memory, 1, 2, 2, LIMITS);
  const otherCluster = new CallLimits(memory, 0, 1, 2, LIMITS);
  assert.ok(one.admitCall() && one.admitCall() && two.admitCall() && two.admitCall());
  assert.equal(one.calls, 4);
  assert.ok(!one.admitCall() && !two.admitCall(), "maxConcurrentCalls holds over both workers");
  assert.ok(otherCluster.admitCall(), "another cluster counts apart");
  two.releaseCall();
  assert.ok(one.admitCall(), "a released slot is free for any worker");
  assert.ok(one.admitPending() && !two.admitPending(), "maxPendingCalls over both workers");
  one.releasePending();
  assert.ok(two.admitPending());
  // Worker 2 dies with its calls; its successor zeroes only its own slots.
  resetWorkerSlots(memory, 2, 2);
  const successor = new CallLimits(memory, 1, 2, 2, LIMITS);
  assert.equal(successor.calls, 3, "worker 1's three calls remain");
  assert.ok(successor.admitPending(), "the dead worker's pending call is gone");
});

Deno.test("limits: the retry budget is a share of calls in flight, with a floor", () => {
  const limits = new CallLimits(limitsMemory(1, 1), 0, 1, 1, {
    ...LIMITS,
    maxConcurrentCalls: 100,
    retryBudgetPercent: 20,
    minRetryConcurrency: 3,
  });
  for (let i = 0; i < 30; i++) assert.ok(limits.admitCall());
  // 20 % of 30 calls is 6 retries in flight.
  const admitted = Array.from({ length: 10 }, () => limits.admitRetry()).filter(Boolean).length;
  assert.equal(admitted, 6);
  for (let i = 0; i < 6; i++) limits.releaseRetry();
  for (let i = 0; i < 28; i++) limits.releaseCall();
  // 20 % of 2 calls is 0.4: the floor of 3 applies.
  const floor = Array.from({ length: 10 }, () => limits.admitRetry()).filter(Boolean).length;
  assert.equal(floor, 3);
});

Deno.test("limits: a cluster added again keeps counting the calls it still has in flight", () => {
  const memory = limitsMemory(1, 1);
  const before = new CallLimits(memory, 0, 1, 1, { ...LIMITS, maxConcurrentCalls: 1 });
  assert.ok(before.admitCall());
  // Removed and added again by reloads: the same slot, its call still in flight.
  const after = new CallLimits(memory, 0, 1, 1, { ...LIMITS, maxConcurrentCalls: 1 });
  assert.ok(!after.admitCall(), "the call still in flight counts");
  before.releaseCall();
  assert.ok(after.admitCall());
  assert.ok(!after.admitCall());
});
