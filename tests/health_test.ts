/**
 * Active health checks, passive ejection and health-aware picking, end to end: the real
 * proxy process in front of real grpc-js backends with real health services.
 * @module
 */
import assert from "node:assert/strict";
import type * as grpc from "@grpc/grpc-js";
import { ejectionDurationMs, mayEject } from "../src/health/ejection_policy.ts";
import { deferGoawayCloseOnAllClientSessions } from "../src/health/node_http2_goaway.ts";
import { HealthVerdict, type ProbeOutcome } from "../src/health/verdict.ts";
import { freePort, GRPC_JS, type ProxyProcess, startProxy, waitFor } from "./support/harness.ts";
import {
  type HealthBackend,
  type HealthKind,
  startHealthBackend,
} from "./support/health_backends.ts";
import { greeterClient, healthLogs, sayHello, Traffic } from "./support/health_traffic.ts";

// The test's own grpc-js clients see the proxy's GOAWAY at shutdown (docs/deno-http2.md).
deferGoawayCloseOnAllClientSessions();

const INTERVAL_MS = 100;
const TIMEOUT_MS = 1_000;

/** Everything a test started, so that cleanup is one call whatever fails. */
interface Setup {
  readonly proxy: ProxyProcess;
  readonly client: grpc.Client;
  readonly backends: HealthBackend[];
  readonly cleanup: () => Promise<void>;
}

/** What {@link setUp} starts. */
interface SetupOptions {
  /** One in-process backend per entry. */
  readonly kinds: HealthKind[];
  /** Cluster settings besides `backends`. */
  readonly cluster: Record<string, unknown>;
  /** Members that the test runs itself, listed after the in-process ones. */
  readonly extraAddresses?: string[];
  /** Runs on the backends before the proxy starts. */
  readonly prepare?: (backends: HealthBackend[]) => void;
}

async function setUp(options: SetupOptions): Promise<Setup> {
  const { kinds, cluster, extraAddresses = [], prepare } = options;
  const backends = await Promise.all(kinds.map((kind, i) => startHealthBackend(`b${i}`, kind)));
  prepare?.(backends);
  const stopBackends = () => backends.forEach((backend) => backend.stop());
  let proxy: ProxyProcess;
  try {
    proxy = await startProxy(
      {
        clusters: {
          x: { backends: [...backends.map((b) => b.address), ...extraAddresses], ...cluster },
        },
        routes: [{ cluster: "x" }],
      },
      { args: ["--log-level", "debug"] },
    );
  } catch (error) {
    stopBackends();
    throw error;
  }
  const client = greeterClient(proxy.address);
  return {
    proxy,
    client,
    backends,
    // The client and backends go first, so the test process never receives a GOAWAY.
    cleanup: async () => {
      client.close();
      stopBackends();
      await proxy.stop();
    },
  };
}

function healthCheck(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    interval: `${INTERVAL_MS}ms`,
    timeout: `${TIMEOUT_MS}ms`,
    unhealthyThreshold: 3,
    healthyThreshold: 2,
    ...overrides,
  };
}

/** Calls until every backend in `backends` has answered at least once. */
async function waitUntilServing(setup: Setup, backends: HealthBackend[]): Promise<void> {
  const seen = new Set<string>();
  await waitFor(async () => {
    const result = await sayHello(setup.client);
    if (result.backend) seen.add(result.backend);
    return backends.every((backend) => seen.has(backend.name));
  }, { what: `${backends.map((b) => b.name)} to serve`, timeoutMs: 15_000 });
}

/** Waits for the `nth` health log line about `address` that contains `text`. */
function waitForLog(proxy: ProxyProcess, address: string, text: string, nth = 1) {
  return waitFor(() => healthLogs(proxy, address, text)[nth - 1], {
    what: `log #${nth} "${text}" for ${address}`,
    timeoutMs: 15_000,
  });
}

/** The cluster's panic-mode changes so far ("entered", "left"). */
function panicChanges(proxy: ProxyProcess): unknown[] {
  return proxy.logs()
    .filter((line) => String(line.message).includes("panic mode"))
    .map((line) => (line.properties as { change: unknown }).change);
}

/**
 * Notes the matching lines logged so far; the returned function waits for the next one, so
 * that a line logged before the test's action is never mistaken for its effect.
 */
function nextLog(
  proxy: ProxyProcess,
  address: string,
  text: string,
): () => Promise<Record<string, unknown>> {
  const seen = healthLogs(proxy, address, text).length;
  return () => waitForLog(proxy, address, text, seen + 1);
}

function reasonOf(logLine: Record<string, unknown>): string {
  return (logLine.properties as { reason: string }).reason;
}

Deno.test(
  "a backend that flips to NOT_SERVING gets no new calls and returns after healthyThreshold passes",
  GRPC_JS,
  async () => {
    const setup = await setUp({
      kinds: ["standard", "standard"],
      cluster: { healthCheck: healthCheck(), panicThreshold: 0 },
    });
    const [flipped, steady] = setup.backends;
    try {
      await waitUntilServing(setup, [flipped, steady]);
      const traffic = new Traffic(setup.client);
      try {
        const unhealthy = nextLog(setup.proxy, flipped.address, "is unhealthy");
        const flippedAt = Date.now();
        flipped.setServing("NOT_SERVING");
        const verdict = await unhealthy();
        assert.equal(reasonOf(verdict), "status NOT_SERVING");
        const verdictSeen = Date.now();
        await waitFor(() => traffic.since(verdictSeen).length >= 20, { what: "20 more calls" });
        const lastCallDelayMs = flipped.lastCallAt() - flippedAt;
        console.log(`NOT_SERVING flip → last call on that backend: ${lastCallDelayMs}ms`);
        assert(traffic.since(verdictSeen).every((r) => r.code === 0 && r.backend === steady.name));
        // The next check starts within one interval and is answered within its timeout.
        assert(
          lastCallDelayMs < INTERVAL_MS + TIMEOUT_MS,
          `last call ${lastCallDelayMs}ms after flip`,
        );

        const healthy = nextLog(setup.proxy, flipped.address, "is healthy");
        flipped.setServing("SERVING");
        const back = await healthy();
        assert.equal(
          reasonOf(back),
          "2 consecutive checks passed",
        );
        const callsBefore = flipped.calls();
        await waitFor(() => flipped.calls() > callsBefore, {
          what: "calls on the recovered backend",
        });
        assert(traffic.results.every((r) => r.code === 0), "every call succeeded");
      } finally {
        await traffic.stop();
      }
    } finally {
      await setup.cleanup();
    }
  },
);

Deno.test(
  "a killed backend is marked unhealthy after the threshold; calls keep succeeding",
  GRPC_JS,
  async () => {
    // The victim runs in its own process, so that it can be killed for real (SIGKILL).
    const port = await freePort();
    const victim = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        new URL("../examples/greeter_backend.ts", import.meta.url).pathname,
        "--name",
        "victim",
        "--port",
        String(port),
      ],
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const victimOutput = victim.stdout.pipeThrough(new TextDecoderStream()).getReader();
    const victimAddress = `127.0.0.1:${port}`;
    let setup: Setup | undefined;
    try {
      await waitFor(async () => (await victimOutput.read()).value?.includes("listening"), {
        what: "victim backend to listen",
        timeoutMs: 20_000,
      });
      setup = await setUp({
        kinds: ["standard", "standard"],
        cluster: { healthCheck: healthCheck(), panicThreshold: 0 },
        extraAddresses: [victimAddress],
      });
      const { proxy } = setup;
      await waitForLog(proxy, victimAddress, "is healthy");
      const traffic = new Traffic(setup.client);
      try {
        await waitFor(() => traffic.results.some((r) => r.backend === "victim"), {
          what: "a call on the victim",
        });
        const killedAt = Date.now();
        const unhealthy = nextLog(proxy, victimAddress, "is unhealthy");
        victim.kill("SIGKILL");
        await victim.status;
        const reason = reasonOf(await unhealthy());
        assert(/^connection error: .*\(3 consecutive failures\)$/.test(reason), reason);
        const verdictSeen = Date.now();
        await waitFor(() => traffic.since(verdictSeen).length >= 20, { what: "20 more calls" });
        const afterKill = traffic.since(killedAt);
        // A call already in flight to the victim when it died may fail; no other call may.
        assert(afterKill.filter((r) => r.code !== 0).length <= 1, JSON.stringify(afterKill));
        assert(traffic.since(verdictSeen).every((r) => r.code === 0 && r.backend !== "victim"));
      } finally {
        await traffic.stop();
      }
    } finally {
      try {
        victim.kill("SIGKILL");
      } catch { /* already dead */ }
      await victim.status;
      await setup?.cleanup();
    }
  },
);

Deno.test(
  "a backend without a health service counts as healthy when whenUnimplemented is healthy, warned once",
  GRPC_JS,
  async () => {
    const setup = await setUp({
      kinds: ["standard", "none"],
      cluster: { healthCheck: healthCheck({ whenUnimplemented: "healthy" }), panicThreshold: 0 },
    });
    const [, bare] = setup.backends;
    try {
      await waitUntilServing(setup, setup.backends);
      // Several more checks of the bare backend, each answered UNIMPLEMENTED.
      await waitForLog(setup.proxy, bare.address, "check of", 5);
      assert.equal(healthLogs(setup.proxy, bare.address, "has no health service").length, 1);
      assert.equal(healthLogs(setup.proxy, bare.address, "is unhealthy").length, 0);
    } finally {
      await setup.cleanup();
    }
  },
);

Deno.test(
  "a backend without a health service gets no calls when whenUnimplemented is unhealthy",
  GRPC_JS,
  async () => {
    const setup = await setUp({
      kinds: ["standard", "none"],
      cluster: { healthCheck: healthCheck({ whenUnimplemented: "unhealthy" }), panicThreshold: 0 },
    });
    const [served, bare] = setup.backends;
    try {
      const verdict = await waitForLog(setup.proxy, bare.address, "is unhealthy");
      assert.equal(reasonOf(verdict), "no health service (UNIMPLEMENTED)");
      for (let i = 0; i < 20; i++) {
        const result = await sayHello(setup.client);
        assert.deepEqual([result.code, result.backend], [0, served.name]);
      }
      assert.equal(bare.calls(), 0);
    } finally {
      await setup.cleanup();
    }
  },
);

Deno.test(
  "a backend whose Check hangs becomes unhealthy after unhealthyThreshold timeouts",
  GRPC_JS,
  async () => {
    const setup = await setUp({
      kinds: ["standard", "hangable"],
      cluster: { healthCheck: healthCheck({ timeout: "300ms" }), panicThreshold: 0 },
    });
    const [, hanging] = setup.backends;
    try {
      await waitUntilServing(setup, setup.backends);
      const checksBeforeHang = hanging.checks();
      const unhealthy = nextLog(setup.proxy, hanging.address, "is unhealthy");
      hanging.hangChecks();
      const verdict = await unhealthy();
      assert.equal(reasonOf(verdict), "timeout after 300ms (3 consecutive failures)");
      assert(hanging.checks() - checksBeforeHang >= 3, "three checks timed out first");
      const callsAtVerdict = hanging.calls();
      for (let i = 0; i < 20; i++) assert.equal((await sayHello(setup.client)).code, 0);
      assert.equal(hanging.calls(), callsAtVerdict);
    } finally {
      await setup.cleanup();
    }
  },
);

Deno.test(
  "a backend that returns UNAVAILABLE is ejected after consecutiveFailures and readmitted",
  GRPC_JS,
  async () => {
    const setup = await setUp({
      kinds: ["standard", "standard"],
      cluster: {
        picker: "round_robin",
        outlierDetection: {
          consecutiveFailures: 3,
          baseEjectionTime: "5s",
          maxEjectionTime: "10s",
          maxEjectionPercent: 10,
        },
        panicThreshold: 0,
      },
    });
    const [failing, steady] = setup.backends;
    try {
      await waitUntilServing(setup, setup.backends);
      const callsBefore = failing.calls();
      failing.failCalls(true);
      const failures = await waitFor(async () => {
        await sayHello(setup.client);
        return healthLogs(setup.proxy, failing.address, "ejected").length > 0;
      }, { what: "ejection" }).then(() => failing.calls() - callsBefore);
      const ejection = healthLogs(setup.proxy, failing.address, "ejected")[0];
      assert.equal(reasonOf(ejection), "ejected for 5000ms after 3 consecutive failures");
      assert.equal(failures, 3, "ejected right after the third failure");
      // Ten calls take far less than the 5 s ejection, even on a slow machine: all go to the
      // steady backend.
      for (let i = 0; i < 10; i++) {
        const result = await sayHello(setup.client);
        assert.deepEqual([result.code, result.backend], [0, steady.name]);
      }
      failing.failCalls(false);
      await waitForLog(setup.proxy, failing.address, "readmitted");
      await waitUntilServing(setup, [failing]);
    } finally {
      await setup.cleanup();
    }
  },
);

Deno.test(
  "panic threshold 50: with most backends unhealthy, traffic goes to all of them",
  GRPC_JS,
  async () => {
    const setup = await setUp({
      kinds: ["standard", "standard", "standard", "standard"],
      cluster: { healthCheck: healthCheck(), panicThreshold: 50 },
      prepare: (backends) => backends.slice(1).forEach((b) => b.setServing("NOT_SERVING")),
    });
    try {
      await Promise.all(
        setup.backends.slice(1).map((b) => waitForLog(setup.proxy, b.address, "is unhealthy")),
      );
      await waitFor(() => panicChanges(setup.proxy).includes("entered"), { what: "panic mode" });
      await waitUntilServing(setup, setup.backends);
    } finally {
      await setup.cleanup();
    }
  },
);

Deno.test(
  "panic threshold 0: with every backend unhealthy, calls fail fast with UNAVAILABLE",
  GRPC_JS,
  async () => {
    const setup = await setUp({
      kinds: ["standard", "standard"],
      cluster: { healthCheck: healthCheck(), panicThreshold: 0, waitForReadyTimeout: "5s" },
      prepare: (backends) => backends.forEach((b) => b.setServing("NOT_SERVING")),
    });
    try {
      await Promise.all(
        setup.backends.map((b) => waitForLog(setup.proxy, b.address, "is unhealthy")),
      );
      const startedAt = Date.now();
      const result = await sayHello(setup.client);
      assert.equal(result.code, 14, "UNAVAILABLE");
      // Far below waitForReadyTimeout: the call was failed, not queued.
      assert(result.at - startedAt < 2_000, `took ${result.at - startedAt}ms`);
      assert.equal(setup.backends[0].calls() + setup.backends[1].calls(), 0);
      assert.deepEqual(panicChanges(setup.proxy), []);
    } finally {
      await setup.cleanup();
    }
  },
);

Deno.test(
  "pick_first fails over to the second backend when the first is NOT_SERVING",
  GRPC_JS,
  async () => {
    const setup = await setUp({
      kinds: ["standard", "standard"],
      cluster: { picker: "pick_first", healthCheck: healthCheck(), panicThreshold: 0 },
    });
    const [first, second] = setup.backends;
    try {
      await waitFor(async () => (await sayHello(setup.client)).backend === first.name, {
        what: "pick_first to select the first backend",
      });
      const unhealthy = nextLog(setup.proxy, first.address, "is unhealthy");
      first.setServing("NOT_SERVING");
      await unhealthy();
      for (let i = 0; i < 10; i++) {
        const result = await sayHello(setup.client);
        assert.deepEqual([result.code, result.backend], [0, second.name]);
      }
    } finally {
      await setup.cleanup();
    }
  },
);

Deno.test("a bad health config exits with code 2 and names the field", async () => {
  const cases: [Record<string, unknown>, string][] = [
    [{ healthCheck: { interval: "often" } }, "clusters.x.healthCheck.interval"],
    [{ healthCheck: { timeout: "0ms" } }, "clusters.x.healthCheck.timeout: must be greater than 0"],
    [{ healthCheck: { unhealthyThreshold: 0 } }, "clusters.x.healthCheck.unhealthyThreshold"],
    [{ healthCheck: { whenUnimplemented: "maybe" } }, "clusters.x.healthCheck.whenUnimplemented"],
    [
      { outlierDetection: { maxEjectionPercent: 150 } },
      "clusters.x.outlierDetection.maxEjectionPercent",
    ],
  ];
  for (const [cluster, expected] of cases) {
    const proxy = await startProxy(
      { clusters: { x: { backends: ["127.0.0.1:1"], ...cluster } }, routes: [{ cluster: "x" }] },
      { expectExit: true },
    );
    const status = await proxy.exited;
    assert.equal(status.code, 2);
    assert(proxy.output().includes(expected), proxy.output());
  }
});

Deno.test("verdicts follow Envoy's thresholds", () => {
  const pass: ProbeOutcome = { kind: "pass" };
  const timeout: ProbeOutcome = { kind: "fail", immediate: false, reason: "timeout" };
  const notServing: ProbeOutcome = { kind: "fail", immediate: true, reason: "NOT_SERVING" };
  const thresholds = { unhealthyThreshold: 3, healthyThreshold: 2 };
  const record = (outcomes: ProbeOutcome[]) => {
    const verdict = new HealthVerdict(thresholds);
    return outcomes.map((outcome) => verdict.record(outcome));
  };
  assert.deepEqual(record([pass]), ["healthy"]);
  assert.deepEqual(record([timeout, pass, pass]), ["unhealthy", "unhealthy", "healthy"]);
  assert.deepEqual(record([pass, timeout, timeout, pass, timeout, timeout, timeout]), [
    "healthy",
    "healthy",
    "healthy",
    "healthy",
    "healthy",
    "healthy",
    "unhealthy",
  ]);
  assert.deepEqual(record([pass, notServing, pass, timeout, pass]), [
    "healthy",
    "unhealthy",
    "unhealthy",
    "unhealthy",
    "unhealthy",
  ]);
});

Deno.test("ejection honours maxEjectionPercent and grows with each ejection", () => {
  assert(mayEject(0, 3, 10), "one member may always be ejected");
  assert(!mayEject(1, 3, 10));
  assert(mayEject(1, 4, 50));
  assert(!mayEject(2, 4, 50));
  assert(!mayEject(0, 3, 0), "0% ejects nothing");
  const config = {
    consecutiveFailures: 5,
    baseEjectionTime: 30_000,
    maxEjectionTime: 100_000,
    maxEjectionPercent: 10,
  };
  assert.deepEqual([1, 2, 3, 4].map((n) => ejectionDurationMs(config, n)), [
    30_000,
    60_000,
    90_000,
    100_000,
  ]);
});
