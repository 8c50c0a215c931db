/**
 * The control-plane / data-plane split in process: the control plane's {@link Cluster} and
 * the snapshots it publishes, a data plane's {@link UpstreamCluster} applying them, the
 * passive-health path back ({@link OutcomeBatcher} folding call records for the
 * {@link OutlierDetector}), and {@link DataPlanes} with one local data plane.
 *
 * No subprocesses. Data-plane tests whose members must not be dialled keep them drained;
 * tests that need READY members use in-process raw HTTP/2 backends on loopback
 * (`support/h2_raw_backend.ts`), which make a pool READY with their SETTINGS and answer
 * nothing else. Every test closes what it opened, so Deno's sanitizers stay on.
 */
import { CallLimits, limitsMemory } from "../src/upstream/call_limits.ts";
import assert from "node:assert/strict";
import type { ConnectivityState } from "../src/balancer/types.ts";
import { Cluster, type SnapshotSink } from "../src/cluster/cluster.ts";
import {
  type BackendSnapshot,
  type ClusterSnapshot,
  effectiveState,
  type HealthStatus,
} from "../src/cluster/snapshot.ts";
import { type ClusterConfig, type Config, configSchema } from "../src/config/schema.ts";
import { DataPlanes } from "../src/dataplane/data_planes.ts";
import { connectionOptions } from "../src/h2/options.ts";
import { type BackendOutcome, OutcomeBatcher } from "../src/health/outcomes.ts";
import { OutlierDetector } from "../src/health/outlier_detector.ts";
import { HealthSupervisor } from "../src/health/supervisor.ts";
import type { CallRecord } from "../src/proxy/call_record.ts";
import { DialGate } from "../src/upstream/dial_gate.ts";
import type { UpstreamBackend } from "../src/upstream/upstream_backend.ts";
import { UpstreamCluster } from "../src/upstream/upstream_cluster.ts";
import { type H2RawBackend, startH2RawBackend } from "./support/h2_raw_backend.ts";
import { freePort, waitFor } from "./support/harness.ts";

// Control-plane addresses: the control plane never dials, so any host:port will do.
const A = "10.0.0.1:50051";
const B = "10.0.0.2:50051";
const C = "10.0.0.3:50051";
const D = "10.0.0.4:50051";

// Data-plane addresses for members that stay drained and so are never dialled.
const DRAINED_1 = "127.0.0.1:1";
const DRAINED_2 = "127.0.0.1:2";
const DRAINED_3 = "127.0.0.1:3";
const DRAINED_4 = "127.0.0.1:4";

/** A whole config with one cluster `c`, its settings merged from `cluster`. */
function parseConfig(cluster: Record<string, unknown> = {}): Config {
  return configSchema.parse({
    listen: "127.0.0.1:8080",
    clusters: { c: { backends: [A], ...cluster } },
    routes: [{ cluster: "c" }],
  });
}

/** One cluster's validated settings. */
function clusterConfig(cluster: Record<string, unknown> = {}): ClusterConfig {
  return parseConfig(cluster).clusters.c;
}

/** Records every snapshot a cluster publishes. */
class Recorder implements SnapshotSink {
  readonly published: ClusterSnapshot[] = [];

  publish(snapshot: ClusterSnapshot): void {
    this.published.push(snapshot);
  }

  /** The latest snapshot. */
  get last(): ClusterSnapshot {
    assert.ok(this.published.length > 0, "a snapshot was published");
    return this.published[this.published.length - 1];
  }
}

/** Lets every microtask of the current task run (one timer turn; not a sleep). */
function endOfTask(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

/** A member's verdicts: healthy, not drained, not ejected unless `overrides` say so. */
function verdict(address: string, overrides: Partial<BackendSnapshot> = {}): BackendSnapshot {
  return {
    address,
    drained: false,
    health: "healthy",
    ejected: false,
    reason: undefined,
    ...overrides,
  };
}

/** A snapshot of cluster `c`. */
function snapshot(
  backends: readonly BackendSnapshot[],
  { policy = "round_robin", panic = false }: { policy?: string; panic?: boolean } = {},
): ClusterSnapshot {
  return { cluster: "c", policy, panic, backends };
}

/** The addresses of a snapshot's members, in order. */
function addressesOf(snapshot: ClusterSnapshot): string[] {
  return snapshot.backends.map((backend) => backend.address);
}

/** A data plane's cluster `c` (round_robin), before its first snapshot; close it at the end. */
function upstreamCluster(): UpstreamCluster {
  const config = parseConfig();
  const limits = new CallLimits(limitsMemory(1, 1), 0, 1, 1, {
    ...config.clusters.c.limits,
    retryBudgetPercent: 20,
    minRetryConcurrency: 3,
  });
  return new UpstreamCluster("c", config.clusters.c, {
    connection: connectionOptions(config.http2, "client"),
    maxConnectionsPerBackend: 1,
    dialGate: new DialGate(8),
    tls: undefined,
    dialObserver: undefined,
  }, limits);
}

/** The addresses `count` picks go to ("queue" or "fail" when none is picked). */
function picks(cluster: UpstreamCluster, count: number): string[] {
  return Array.from({ length: count }, () => {
    const result = cluster.pick();
    return result.kind === "complete" ? result.subConn.address : result.kind;
  });
}

/** The distinct addresses `count` picks go to, sorted. */
function picked(cluster: UpstreamCluster, count = 20): string[] {
  return [...new Set(picks(cluster, count))].sort();
}

/** Waits until every member's effective state (what the balancer sees) is `state`. */
function allEffectively(cluster: UpstreamCluster, state: ConnectivityState): Promise<boolean> {
  return waitFor(() => cluster.backends().every((backend) => backend.effectiveState === state), {
    what: `every member of ${cluster.name} ${state}`,
  });
}

// ---------------------------------------------------------------------------------------
// 1. The control plane's Cluster and the snapshots it publishes.
// ---------------------------------------------------------------------------------------

Deno.test("cluster: the changes of one task go out as one snapshot, in membership order", async () => {
  const sink = new Recorder();
  const cluster = new Cluster("c", clusterConfig({ backends: [A, B], panicThreshold: 0 }), sink);
  try {
    assert.equal(sink.published.length, 0, "the first snapshot waits for the end of the task");
    await endOfTask();
    assert.equal(sink.published.length, 1);
    assert.deepEqual(addressesOf(sink.last), [A, B]);

    cluster.setMembers("redis", [C, A]); // C joins; A is now listed by two sources
    assert.equal(cluster.addMember("admin", D), true); // D joins…
    cluster.setMembers("static", [B]); // A stays: redis still lists it
    assert.equal(cluster.setDrained(B, true), true);
    cluster.setHealth(A, "unhealthy");
    cluster.setHealth(C, "unhealthy");
    cluster.setHealth(C, "healthy"); // and back, within the task
    cluster.switchPolicy("pick_first");
    assert.equal(cluster.removeMember("admin", D), true); // …and leaves within the task
    assert.equal(sink.published.length, 1, "nothing is published before the task ends");

    await Promise.resolve();
    assert.equal(sink.published.length, 2, "one snapshot for every change of the task");
    assert.deepEqual(sink.last, {
      cluster: "c",
      policy: "pick_first",
      panic: false,
      backends: [
        { address: A, drained: false, health: "unhealthy", ejected: false, reason: undefined },
        { address: B, drained: true, health: "healthy", ejected: false, reason: undefined },
        { address: C, drained: false, health: "healthy", ejected: false, reason: undefined },
      ],
    });
    assert.deepEqual([...cluster.backend(A)!.sources], ["redis"]);
    await endOfTask();
    assert.equal(sink.published.length, 2, "no second snapshot for the same task");
  } finally {
    cluster.close();
  }
});

Deno.test("cluster: flush() publishes a pending change at once; a second flush publishes nothing", async () => {
  const sink = new Recorder();
  const cluster = new Cluster("c", clusterConfig({ backends: [A, B] }), sink);
  try {
    cluster.flush();
    assert.equal(sink.published.length, 1, "flush publishes the constructor's pending snapshot");
    cluster.flush();
    assert.equal(sink.published.length, 1);
    await endOfTask();
    assert.equal(sink.published.length, 1, "the end of the task finds nothing left to publish");

    cluster.setDrained(A, true);
    assert.equal(sink.published.length, 1);
    cluster.flush();
    assert.equal(sink.published.length, 2);
    assert.equal(sink.last.backends[0].drained, true);
    cluster.flush();
    await endOfTask();
    assert.equal(sink.published.length, 2);

    // Changes that change nothing are not changes.
    cluster.setDrained(A, true);
    cluster.setHealth(B, "healthy");
    cluster.switchPolicy("round_robin");
    assert.equal(cluster.setDrained("10.9.9.9:1", true), false, "an unknown member");
    assert.equal(cluster.addMember("static", A), false, "already listed");
    assert.equal(cluster.removeMember("redis", A), false, "not listed by that source");
    cluster.flush();
    await endOfTask();
    assert.equal(sink.published.length, 2);

    // A closed cluster publishes nothing more.
    cluster.close();
    cluster.setDrained(A, false);
    cluster.flush();
    await endOfTask();
    assert.equal(sink.published.length, 2);
  } finally {
    cluster.close();
  }
});

Deno.test("cluster: switchPolicy to an unknown name throws and publishes nothing", async () => {
  const sink = new Recorder();
  const cluster = new Cluster("c", clusterConfig({ backends: [A] }), sink);
  try {
    cluster.flush();
    assert.throws(() => cluster.switchPolicy("fastest"), /unknown picker "fastest"/);
    assert.equal(cluster.policy, "round_robin");
    cluster.flush();
    await endOfTask();
    assert.equal(sink.published.length, 1);

    // Other changes of the same task still go out, with the policy unchanged.
    cluster.setDrained(A, true);
    assert.throws(() => cluster.switchPolicy(""), /unknown picker/);
    await endOfTask();
    assert.equal(sink.published.length, 2);
    assert.equal(sink.last.policy, "round_robin");
    assert.equal(sink.last.backends[0].drained, true);
  } finally {
    cluster.close();
  }
});

Deno.test("cluster: the panic flag follows panicThreshold over the undrained members", async () => {
  const sink = new Recorder();
  const cluster = new Cluster(
    "c",
    clusterConfig({ backends: [A, B, C], panicThreshold: 50 }),
    sink,
  );
  /** Publishes the pending change and returns its panic flag, checking it matches the getter. */
  const panicNow = (): boolean => {
    cluster.flush();
    assert.equal(sink.last.panic, cluster.panic);
    return sink.last.panic;
  };
  try {
    assert.equal(panicNow(), false);
    cluster.setHealth(A, "unhealthy");
    assert.equal(panicNow(), false, "2 of 3 healthy: 66% ≥ 50%");
    cluster.setHealth(B, "unhealthy");
    assert.equal(panicNow(), true, "1 of 3 healthy: 33% < 50%");
    cluster.setHealth(B, "healthy");
    assert.equal(panicNow(), false);
    cluster.setEjectedUntil(B, Date.now() + 60_000);
    assert.equal(panicNow(), true, "an ejected member is not healthy");
    cluster.setEjectedUntil(B, 0);
    assert.equal(panicNow(), false);
    cluster.setDrained(C, true);
    assert.equal(panicNow(), false, "1 of 2 undrained healthy: 50% is not below 50%");
    cluster.setHealth(B, "unhealthy");
    assert.equal(panicNow(), true, "0 of 2 undrained healthy");
    cluster.setDrained(A, true);
    cluster.setDrained(B, true);
    cluster.setDrained(C, true);
    assert.equal(panicNow(), false, "no undrained member: nothing to panic over");
    await endOfTask();
  } finally {
    cluster.close();
  }

  const off = new Recorder();
  const never = new Cluster("c", clusterConfig({ backends: [A, B], panicThreshold: 0 }), off);
  try {
    never.setHealth(A, "unhealthy");
    never.setHealth(B, "unhealthy");
    never.flush();
    assert.equal(off.last.panic, false, "panicThreshold 0 never panics");
  } finally {
    never.close();
  }
});

// ---------------------------------------------------------------------------------------
// 2. A data plane's UpstreamCluster applying snapshots.
// ---------------------------------------------------------------------------------------

Deno.test("effectiveState: connectivity folded with verdicts; panic ignores verdicts", () => {
  const cases: [ConnectivityState, HealthStatus, boolean, boolean, ConnectivityState][] = [
    // connectivity, health, ejected, panic → effective
    ["READY", "healthy", false, false, "READY"],
    ["READY", "unknown", false, false, "CONNECTING"],
    ["READY", "unhealthy", false, false, "TRANSIENT_FAILURE"],
    ["READY", "healthy", true, false, "TRANSIENT_FAILURE"],
    ["READY", "unknown", true, false, "TRANSIENT_FAILURE"],
    ["READY", "healthy", false, true, "READY"],
    ["READY", "unknown", false, true, "READY"],
    ["READY", "unhealthy", false, true, "READY"],
    ["READY", "unhealthy", true, true, "READY"],
    ["IDLE", "healthy", false, false, "IDLE"],
    ["IDLE", "unhealthy", true, false, "IDLE"],
    ["CONNECTING", "healthy", false, false, "CONNECTING"],
    ["CONNECTING", "unhealthy", false, false, "CONNECTING"],
    ["CONNECTING", "unknown", false, true, "CONNECTING"],
    ["TRANSIENT_FAILURE", "healthy", false, false, "TRANSIENT_FAILURE"],
    ["TRANSIENT_FAILURE", "healthy", false, true, "TRANSIENT_FAILURE"],
  ];
  for (const [connectivity, health, ejected, panic, expected] of cases) {
    for (const drained of [false, true]) {
      // Draining is not folded in: a drained member is kept from the balancer altogether.
      const member = verdict(A, { health, ejected, drained });
      assert.equal(
        effectiveState(connectivity, member, panic),
        expected,
        `${connectivity} ${health}${ejected ? " ejected" : ""}${drained ? " drained" : ""}${
          panic ? " in panic" : ""
        }`,
      );
    }
  }
});

Deno.test("data plane: members join and leave; a leaving member's pool is closed", () => {
  const cluster = upstreamCluster();
  const removed: UpstreamBackend[] = [];
  cluster.onBackendRemoved((backend) => removed.push(backend));
  try {
    const drained = { drained: true };
    cluster.apply(snapshot([DRAINED_1, DRAINED_2, DRAINED_3].map((a) => verdict(a, drained))));
    assert.deepEqual(cluster.backends().map((b) => b.address), [DRAINED_1, DRAINED_2, DRAINED_3]);
    const [first, second, third] = cluster.backends();
    assert.ok(cluster.backends().every((b) => b.upstream.state === "IDLE"), "nothing dialled");
    assert.equal(cluster.state, "TRANSIENT_FAILURE", "no member is handed to the balancer");
    assert.equal(cluster.pick().kind, "fail");

    cluster.apply(snapshot([DRAINED_2, DRAINED_3, DRAINED_4].map((a) => verdict(a, drained))));
    assert.deepEqual(cluster.backends().map((b) => b.address), [DRAINED_2, DRAINED_3, DRAINED_4]);
    assert.equal(removed.length, 1);
    assert.equal(removed[0], first);
    assert.equal(cluster.backends()[0], second, "a staying member is the same object");
    assert.equal(cluster.backends()[1], third);
    // A closed pool ignores connect(); an open one would start dialling (CONNECTING).
    first.upstream.connect();
    assert.equal(first.upstream.state, "IDLE", "the leaving member's pool is closed");

    cluster.apply(snapshot([]));
    assert.deepEqual(cluster.backends(), []);
    assert.deepEqual(removed.map((b) => b.address), [DRAINED_1, DRAINED_2, DRAINED_3, DRAINED_4]);
    assert.match(cluster.describeUnavailable("no backends"), /^cluster c: no backends$/);
  } finally {
    cluster.close();
  }
});

Deno.test("data plane: verdicts are updated in place; the member keeps its counters", () => {
  const cluster = upstreamCluster();
  try {
    cluster.apply(snapshot([verdict(DRAINED_1, { drained: true, health: "unknown" })]));
    const [member] = cluster.backends();
    member.counters.calls = 7;
    member.counters.failures = 2;
    member.counters.bytesSent = 100;

    const changed = verdict(DRAINED_1, {
      drained: true,
      health: "unhealthy",
      ejected: true,
      reason: "status NOT_SERVING",
    });
    cluster.apply(snapshot([changed], { panic: true }));
    assert.equal(cluster.backends()[0], member);
    assert.equal(member.verdict, changed);
    assert.deepEqual(member.counters, {
      calls: 7,
      failures: 2,
      bytesReceived: 0,
      bytesSent: 100,
      streamsOpened: 0,
      streamsEnded: 0,
    });
    assert.equal(member.unusableReason, "drained");
    assert.match(cluster.describeUnavailable("no backends"), /127\.0\.0\.1:1: drained/);
  } finally {
    cluster.close();
  }
});

/** Two raw backends, each a READY member once dialled; closes them after `body`. */
async function withBackends(
  body: (addresses: [string, string]) => Promise<void>,
): Promise<void> {
  const backends: H2RawBackend[] = [startH2RawBackend(), startH2RawBackend()];
  try {
    await body([backends[0].address, backends[1].address]);
  } finally {
    await Promise.all(backends.map((backend) => backend.close()));
  }
}

/**
 * Runs `body` with a data-plane cluster over two live raw backends, both members READY under
 * round_robin, and closes it all after.
 */
async function withReadyCluster(
  body: (cluster: UpstreamCluster, addresses: [string, string]) => void | Promise<void>,
): Promise<void> {
  await withBackends(async ([X, Y]) => {
    const cluster = upstreamCluster();
    try {
      cluster.apply(snapshot([verdict(X), verdict(Y)]));
      await allEffectively(cluster, "READY");
      await body(cluster, [X, Y]);
    } finally {
      cluster.close();
    }
  });
}

Deno.test("data plane: a drained member is never picked; verdicts and panic fold into picks", async () => {
  await withReadyCluster((cluster, [X, Y]) => {
    assert.deepEqual(picked(cluster), [X, Y].sort());
    const [x, y] = cluster.backends();
    x.counters.calls = 5;

    cluster.apply(snapshot([verdict(X), verdict(Y, { drained: true })]));
    assert.deepEqual(picked(cluster), [X], "the drained member is not picked");
    assert.equal(y.upstream.state, "READY", "draining keeps the pool: in-flight calls finish");
    assert.equal(y.unusableReason, "drained");

    cluster.apply(snapshot([verdict(X), verdict(Y, { health: "unhealthy", reason: "check" })]));
    assert.deepEqual(picked(cluster), [X]);
    assert.equal(y.effectiveState, "TRANSIENT_FAILURE");
    assert.equal(y.unusableReason, "unhealthy (check)");

    cluster.apply(snapshot([verdict(X), verdict(Y, { health: "unhealthy" })], { panic: true }));
    assert.deepEqual(picked(cluster), [X, Y].sort(), "panic routes over every READY member");

    cluster.apply(snapshot([verdict(X, { ejected: true }), verdict(Y)]));
    assert.deepEqual(picked(cluster), [Y]);
    assert.equal(x.unusableReason, "ejected by outlier detection");

    cluster.apply(snapshot([verdict(X, { health: "unknown" }), verdict(Y)]));
    assert.deepEqual(picked(cluster), [Y], "an unchecked member is not READY yet");

    cluster.apply(snapshot([verdict(X, { drained: true }), verdict(Y, { drained: true })]));
    assert.deepEqual(picked(cluster), ["fail"], "every member drained");
    assert.match(cluster.describeUnavailable("no backends"), /: drained; .*: drained\)$/);

    cluster.apply(snapshot([verdict(X), verdict(Y)]));
    assert.deepEqual(picked(cluster), [X, Y].sort());
    assert.deepEqual(cluster.backends(), [x, y], "the same members throughout");
    assert.equal(x.counters.calls, 5);
  });
});

Deno.test("data plane: the snapshot's policy switches the balancer", async () => {
  await withReadyCluster(async (cluster, [X, Y]) => {
    assert.deepEqual(picked(cluster), [X, Y].sort());
    const [, y] = cluster.backends();

    cluster.apply(snapshot([verdict(X), verdict(Y)], { policy: "pick_first" }));
    assert.deepEqual(picks(cluster, 10), Array(10).fill(X), "pick_first: the first member");
    assert.equal(y.upstream.state, "IDLE", "pick_first lets the other member go");

    cluster.apply(snapshot([verdict(X), verdict(Y)], { policy: "round_robin" }));
    await allEffectively(cluster, "READY");
    assert.deepEqual(picked(cluster), [X, Y].sort(), "round_robin: every member again");

    assert.throws(
      () => cluster.apply(snapshot([verdict(X), verdict(Y)], { policy: "nope" })),
      /unknown picker "nope"/,
    );
  });
});

// Regression (found against 282e63e): apply() handed a new balancer the members' effective
// states from before the snapshot's verdicts were folded in, refreshing them only after
// updateSubConns. A snapshot that switched to pick_first and marked the first member
// unhealthy made pick_first choose that member, disconnect every other one, and then fail
// over to a member it had just disconnected: calls queued while it redialled.
Deno.test("data plane: a policy switch sees the verdicts of the same snapshot", async () => {
  await withReadyCluster((cluster, [X, Y]) => {
    const [, y] = cluster.backends();

    cluster.apply(
      snapshot([verdict(X, { health: "unhealthy" }), verdict(Y)], { policy: "pick_first" }),
    );
    assert.equal(y.upstream.state, "READY", "the healthy member's connection is kept");
    assert.deepEqual(picks(cluster, 5), Array(5).fill(Y), "calls go to the healthy member");
  });
});

// Finding: snapshot.ts promises that "every data plane that applies the same snapshot has
// the same members in the same order", but UpstreamCluster.apply() keeps the members it
// already has in their old positions (Map insertion order) and appends new ones. When a
// member leaves and rejoins within one control-plane task, the one coalesced snapshot lists
// it last; a data plane that had it keeps it first, while one built from that snapshot (a
// data plane started now, or a restarted worker) puts it last. pick_first, which walks the
// members in order, then chooses different backends in different workers.
Deno.test("data plane: two data planes that applied the same snapshot agree on member order", async () => {
  const sink = new Recorder();
  const control = new Cluster("c", clusterConfig({ backends: [DRAINED_1, DRAINED_2] }), sink);
  const long = upstreamCluster();
  const fresh = upstreamCluster();
  try {
    control.setDrained(DRAINED_1, true);
    control.setDrained(DRAINED_2, true);
    control.flush();
    long.apply(sink.last);

    // DRAINED_1 leaves and rejoins in one task: one snapshot.
    control.setMembers("static", [DRAINED_2]);
    control.setMembers("static", [DRAINED_1, DRAINED_2]);
    control.setDrained(DRAINED_1, true);
    await endOfTask();
    assert.equal(sink.published.length, 2);
    const latest = sink.last;
    long.apply(latest);
    fresh.apply(latest);

    const order = (cluster: UpstreamCluster) => cluster.backends().map((b) => b.address);
    assert.deepEqual(order(fresh), addressesOf(latest));
    assert.deepEqual(order(long), addressesOf(latest), "the snapshot's membership order");
  } finally {
    control.close();
    long.close();
    fresh.close();
  }
});

// ---------------------------------------------------------------------------------------
// 3. Passive health: OutcomeBatcher folding call records for the OutlierDetector.
// ---------------------------------------------------------------------------------------

/** How a call ended, as far as passive health cares. */
type Call =
  | "fail" // the backend reset the stream
  | "unavailable" // the backend answered UNAVAILABLE
  | "ok" // the backend answered OK
  | "error" // the backend answered with an application error: it is alive
  | "cancel" // the client went away: proves nothing
  | "deadline"; // the proxy ended it (deadline): proves nothing

const CALLS: Readonly<Record<Call, Pick<CallRecord, "origin" | "grpcStatus" | "backendFailure">>> =
  {
    fail: { origin: "backend_reset", grpcStatus: 14, backendFailure: true },
    unavailable: { origin: "backend", grpcStatus: 14, backendFailure: true },
    ok: { origin: "backend", grpcStatus: 0, backendFailure: false },
    error: { origin: "backend", grpcStatus: 5, backendFailure: false },
    cancel: { origin: "client", grpcStatus: 1, backendFailure: false },
    deadline: { origin: "proxy", grpcStatus: 4, backendFailure: false },
  };

/** One finished call of `cluster` on `backend`. */
function callRecord(call: Call, backend = A, cluster = "od"): CallRecord {
  return {
    protocol: "grpc",
    startedAt: 0,
    durationMs: 1,
    upstreamDurationMs: undefined,
    grpcMessage: undefined,
    requestHeaders: [],
    traceId: undefined,
    method: "/test.Test/Echo",
    cluster,
    backend,
    resetCode: call === "fail" ? 2 : undefined,
    failedAttempts: undefined,
    retries: 0,
    bytesReceived: 0,
    bytesSent: 0,
    clientAddress: "127.0.0.1:40000",
    clientIdentity: undefined,
    ...CALLS[call],
  };
}

/** One member's folded calls, as a batch carries them: runs not given are 0, no reset. */
function outcome(
  backend: string,
  fold: Partial<Omit<BackendOutcome, "cluster" | "backend">> = {},
  cluster = "od",
): BackendOutcome {
  return { cluster, backend, leading: 0, longest: 0, trailing: 0, reset: false, ...fold };
}

/** A step of a call sequence: a call on member A, or on another member. */
type Step = Call | readonly [Call, string];

function recordOf(step: Step): CallRecord {
  return typeof step === "string" ? callRecord(step) : callRecord(step[0], step[1]);
}

/**
 * Control-plane cluster `od` (members A and B) with an outlier detector ejecting after
 * `consecutiveFailures`, fed by a batcher with `delayMs` 0.
 */
class Detection {
  readonly cluster: Cluster;
  readonly detector: OutlierDetector;
  readonly batcher: OutcomeBatcher;
  readonly batches: BackendOutcome[][] = [];

  constructor(consecutiveFailures: number) {
    const config = clusterConfig({
      backends: [A, B],
      outlierDetection: { consecutiveFailures, maxEjectionPercent: 100 },
    });
    this.cluster = new Cluster("od", config, new Recorder());
    this.detector = new OutlierDetector(this.cluster, config.outlierDetection!);
    this.batcher = new OutcomeBatcher(["od"], (batch) => {
      this.batches.push(batch);
      for (const outcome of batch) this.detector.observe(outcome);
    }, 0);
  }

  /** Whether member `address` is ejected now. */
  ejected(address = A): boolean {
    return this.cluster.backend(address)!.ejected;
  }

  /** Which of A and B are ejected now, as "A", "B", "A B" or "". */
  state(): string {
    return [A, B].filter((address) => this.ejected(address)).map((a) => a === A ? "A" : "B")
      .join(" ");
  }

  /** Feeds `steps` in one task, so that they reach the detector as one batch. */
  async folded(steps: readonly Step[]): Promise<void> {
    for (const step of steps) this.batcher.observe(recordOf(step));
    await Promise.resolve();
  }

  /** Feeds `steps` one task each; returns, after each, whether A is ejected. */
  async oneByOne(steps: readonly Step[]): Promise<boolean[]> {
    const ejected: boolean[] = [];
    for (const step of steps) {
      await this.folded([step]);
      ejected.push(this.ejected());
    }
    return ejected;
  }

  [Symbol.dispose](): void {
    this.detector.stop(); // cancels readmission timers
    this.cluster.close();
  }
}

/**
 * For every prefix of `steps`: is A ejected after feeding it one call at a time, and after
 * feeding it as one folded batch? Returns both lists; they must be equal.
 */
async function ejectionPoints(
  steps: readonly Step[],
  consecutiveFailures: number,
): Promise<{ oneByOne: boolean[]; folded: boolean[] }> {
  using single = new Detection(consecutiveFailures);
  const oneByOne = await single.oneByOne(steps);
  const folded: boolean[] = [];
  for (let length = 1; length <= steps.length; length++) {
    using batch = new Detection(consecutiveFailures);
    await batch.folded(steps.slice(0, length));
    assert.ok(batch.batches.length <= 1, "one task, at most one batch");
    folded.push(batch.ejected());
  }
  return { oneByOne, folded };
}

Deno.test("outcomes: folding is exact: one batch ejects where calls one by one do", async () => {
  const steps: Step[] = [
    "fail",
    "cancel",
    ["fail", B],
    "unavailable",
    "deadline",
    "ok", // resets A's streak
    "fail",
    ["ok", B],
    "cancel",
    "fail",
    ["fail", B],
    "deadline",
    "fail", // A's third failure in a row: ejected
    "cancel",
    "fail",
  ];
  const { oneByOne, folded } = await ejectionPoints(steps, 3);
  assert.equal(oneByOne.indexOf(true), 12, "ejected at the third failure after the reset");
  assert.deepEqual(folded, oneByOne);

  // The whole sequence in one batch: one outcome per member, B's streak apart from A's.
  using detection = new Detection(3);
  await detection.folded(steps);
  assert.deepEqual(detection.batches, [[
    outcome(A, { leading: 2, trailing: 4, reset: true }),
    outcome(B, { leading: 1, trailing: 1, reset: true }),
  ]]);
  assert.equal(detection.ejected(A), true);
  assert.equal(detection.ejected(B), false);

  // Calls that end while the member is ejected prove nothing new: no second ejection.
  using again = new Detection(3);
  await again.oneByOne([...steps, "fail", "fail", "fail", "fail"]);
  assert.equal(again.cluster.backend(A)!.healthDetail.ejections, 1);
});

/** A seeded PRNG (mulberry32): the same cases on every run, and a failing one can be replayed. */
function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

Deno.test("outcomes: folding is exact for random call sequences cut into random batches", async () => {
  const random = seededRandom(0x5eed);
  const calls: Call[] = ["fail", "fail", "unavailable", "ok", "error", "cancel", "deadline"];
  for (let round = 0; round < 300; round++) {
    const steps: Step[] = Array.from({ length: 1 + Math.floor(random() * 16) }, () => {
      const call = calls[Math.floor(random() * calls.length)];
      return random() < 0.3 ? [call, B] as const : call;
    });
    // Batch ends: after each step with probability 1/3, and after the last.
    const ends = steps.map((_, i) => i).filter((i) => i === steps.length - 1 || random() < 1 / 3);

    using perCall = new Detection(3);
    const states: string[] = [];
    for (const step of steps) {
      await perCall.folded([step]);
      states.push(perCall.state());
    }
    using batched = new Detection(3);
    let from = 0;
    for (const end of ends) {
      await batched.folded(steps.slice(from, end + 1));
      from = end + 1;
      const replay = `steps ${JSON.stringify(steps)}, batches ending at ${JSON.stringify(ends)}`;
      assert.equal(batched.state(), states[end], `after step ${end}: ${replay}`);
    }
  }
});

Deno.test("outcomes: a call the backend answered resets the streak, one by one or folded", async () => {
  const steps: Step[] = ["fail", "fail", "error", "fail", "fail", "ok", "fail", "fail", "fail"];
  const { oneByOne, folded } = await ejectionPoints(steps, 3);
  assert.deepEqual(oneByOne, [false, false, false, false, false, false, false, false, true]);
  assert.deepEqual(folded, oneByOne);

  // Client cancels and proxy-ended calls neither count nor reset.
  const neutral = await ejectionPoints(["fail", "cancel", "fail", "deadline", "fail"], 3);
  assert.deepEqual(neutral.oneByOne, [false, false, false, false, true]);
  assert.deepEqual(neutral.folded, neutral.oneByOne);
});

// Regression: a fold that kept only the failures after the batch's last reset (as at
// 282e63e) lost a streak that reached consecutiveFailures and was then reset within one
// batch, or that continued the previous batch's streak up to the threshold before a reset.
// The per-call detector before the split ejected at the threshold. Under load (workers'
// 10 ms batches of many calls) a batch rarely ends on a streak, so a backend that fails most
// calls but answers a few was ejected far later, or never.
Deno.test("outcomes: a streak that reaches the threshold and then resets in one batch ejects", async () => {
  const within = await ejectionPoints(["fail", "fail", "fail", "ok"], 3);
  assert.deepEqual(within.oneByOne, [false, false, true, true]);
  assert.deepEqual(within.folded, within.oneByOne, "the streak before the reset counts");

  // Longer sequences: a run inside the batch, between two resets, reaches the threshold.
  const inside = await ejectionPoints(["ok", "fail", "fail", "fail", "ok", "fail", "ok"], 3);
  assert.equal(inside.oneByOne.indexOf(true), 3);
  assert.deepEqual(inside.folded, inside.oneByOne);
});

Deno.test("outcomes: a streak carried from the last batch and reset in this one ejects", async () => {
  using oneByOne = new Detection(3);
  await oneByOne.oneByOne(["fail", "fail", "fail", "ok"]);
  assert.equal(oneByOne.ejected(), true);

  using batched = new Detection(3);
  await batched.folded(["fail", "fail"]);
  await batched.folded(["fail", "ok"]);
  assert.deepEqual(batched.batches, [
    [outcome(A, { leading: 2 })],
    [outcome(A, { leading: 1, reset: true })],
  ]);
  assert.equal(batched.ejected(), true, "the third failure in a row came first");
});

Deno.test("outcomes: calls of clusters without outlier detection are ignored", async () => {
  const batches: BackendOutcome[][] = [];
  const batcher = new OutcomeBatcher(["od"], (batch) => batches.push(batch), 0);
  for (let i = 0; i < 10; i++) {
    batcher.observe(callRecord("fail", A, "plain"));
    batcher.observe({ ...callRecord("fail"), backend: undefined }); // no backend was picked
    batcher.observe({ ...callRecord("fail"), cluster: undefined }); // no route
  }
  await endOfTask();
  assert.deepEqual(batches, [], "nothing to deliver, not even an empty batch");

  // The control plane routes each outcome to its own cluster's detector only.
  const plain = new Cluster("plain", clusterConfig({ backends: [A] }), new Recorder());
  const detected = new Cluster(
    "od",
    clusterConfig({ backends: [A, B], outlierDetection: { consecutiveFailures: 2 } }),
    new Recorder(),
  );
  const health = HealthSupervisor.start([plain, detected], { listener: undefined, clusters: {} });
  try {
    health.observeOutcomes([
      outcome(A, { leading: 50 }, "plain"),
      outcome(A, { leading: 50 }, "nowhere"),
    ]);
    assert.equal(plain.backend(A)!.ejected, false);
    assert.equal(detected.backend(A)!.ejected, false);
    health.observeOutcomes([outcome(A, { leading: 2 })]);
    assert.equal(detected.backend(A)!.ejected, true);
  } finally {
    health.stop();
    plain.close();
    detected.close();
  }
});

Deno.test("outcomes: delayMs 0 delivers one folded batch at the end of the task", async () => {
  const batches: BackendOutcome[][] = [];
  const batcher = new OutcomeBatcher(["od"], (batch) => batches.push(batch), 0);
  const steps: Step[] = [
    "fail",
    ["fail", B],
    "fail",
    "ok",
    ["cancel", C], // proves nothing: C is not in the batch
    "fail",
    "fail",
    ["fail", B],
    "fail",
    "error",
    "fail",
  ];
  for (const step of steps) batcher.observe(recordOf(step));
  assert.equal(batches.length, 0, "nothing before the task ends");
  await Promise.resolve();
  assert.deepEqual(batches, [[
    outcome(A, { leading: 2, longest: 3, trailing: 1, reset: true }),
    outcome(B, { leading: 2 }),
  ]]);

  // The next task's calls make a batch of their own.
  batcher.observe(callRecord("unavailable", B));
  await Promise.resolve();
  assert.deepEqual(batches[1], [outcome(B, { leading: 1 })]);

  // Calls that prove nothing schedule nothing.
  batcher.observe(callRecord("cancel", A));
  batcher.observe(callRecord("deadline", A));
  await endOfTask();
  assert.equal(batches.length, 2);
});

Deno.test("outcomes: delayMs > 0 delivers the calls of the whole delay as one batch", async () => {
  const DELAY_MS = 40;
  const batches: BackendOutcome[][] = [];
  const deliveredAt: number[] = [];
  const batcher = new OutcomeBatcher(["od"], (batch) => {
    batches.push(batch);
    deliveredAt.push(performance.now());
  }, DELAY_MS);

  const start = performance.now();
  batcher.observe(callRecord("fail", A));
  await endOfTask(); // a 0 ms timer armed after the batch's fires before it
  assert.equal(batches.length, 0, "not at the end of the task");
  batcher.observe(callRecord("fail", A)); // a later task, within the delay
  batcher.observe(callRecord("ok", B));
  await waitFor(() => batches.length > 0, { intervalMs: 5, what: "the first batch" });
  assert.ok(deliveredAt[0] - start >= DELAY_MS - 2, `delivered after ${deliveredAt[0] - start}ms`);
  assert.deepEqual(batches, [[outcome(A, { leading: 2 }), outcome(B, { reset: true })]]);

  // The delivered calls are gone: the next batch holds only what came after.
  batcher.observe(callRecord("fail", B));
  await waitFor(() => batches.length > 1, { intervalMs: 5, what: "the second batch" });
  assert.deepEqual(batches[1], [outcome(B, { leading: 1 })]);
  assert.equal(batches.length, 2);
});

// ---------------------------------------------------------------------------------------
// 4. DataPlanes with one local data plane.
// ---------------------------------------------------------------------------------------

/** True when something listens on 127.0.0.1:`port` (binding it fails). */
function bound(port: number): boolean {
  try {
    Deno.listen({ hostname: "127.0.0.1", port }).close();
    return false;
  } catch (error) {
    if (error instanceof Deno.errors.AddrInUse) return true;
    throw error;
  }
}

/**
 * Polls until nothing listens on 127.0.0.1:`port` any more; false after `timeoutMs`. (Deno
 * frees a closed listener's port only once its pending accept has settled, a turn later.)
 */
async function released(port: number, timeoutMs = 2_000): Promise<boolean> {
  try {
    await waitFor(() => !bound(port), { timeoutMs, intervalMs: 5, what: `port ${port} free` });
    return true;
  } catch {
    return false;
  }
}

/**
 * A config for one local data plane on a free port whose cluster `echo` lists `backends`
 * (without a panic threshold, so that one unhealthy member shows as such).
 */
async function localConfig(backends: string[]): Promise<Config> {
  return configSchema.parse({
    listen: `127.0.0.1:${await freePort()}`,
    workers: 1,
    clusters: { echo: { backends, panicThreshold: 0 } },
    routes: [{ cluster: "echo" }],
  });
}

/** Starts one local data plane for `config`. */
function startLocal(planes: DataPlanes, config: Config): Promise<void> {
  return planes.start({
    config,
    workers: 1,
    tls: { listener: undefined, clusters: {} },
    logLevel: "error",
    debugHooks: false,
    onOutcomes: () => {},
  });
}

Deno.test("data planes (workers: 1): snapshots before and after start reach the data plane", async () => {
  await withBackends(async ([X, Y]) => {
    const config = await localConfig([X]);
    const port = Number(config.listen.split(":")[1]);
    const planes = new DataPlanes();
    const cluster = new Cluster("echo", config.clusters.echo, planes);
    let stopped = false;
    try {
      cluster.setHealth(X, "unhealthy");
      cluster.flush(); // before start: kept as the latest snapshot
      await startLocal(planes, config);
      assert.equal(planes.workers().length, 1);
      assert.deepEqual(planes.workers(), [{ worker: 1, listening: true, restarts: 0 }]);
      assert.equal(bound(port), true, "the data plane listens");

      const echo = async () => {
        const [stats, ...others] = await planes.stats();
        assert.equal(others.length, 0);
        assert.equal(stats.worker, 1);
        return stats.clusters.find((c) => c.name === "echo")!;
      };
      const before = await echo();
      assert.deepEqual(before.backends.map((b) => b.address), [X]);
      await waitFor(async () => (await echo()).backends[0].connectivity === "READY");
      assert.equal((await echo()).backends[0].state, "TRANSIENT_FAILURE", "X is unhealthy");

      cluster.addMember("admin", Y);
      cluster.setHealth(X, "healthy");
      cluster.flush();
      await planes.settled();
      const after = await echo();
      assert.deepEqual(after.backends.map((b) => b.address), [X, Y]);
      assert.equal(after.backends[0].state, "READY", "the verdict reached the data plane");
      await waitFor(async () =>
        (await echo()).state === "READY" &&
        (await echo()).backends.every((b) => b.state === "READY")
      );

      cluster.removeMember("static", X);
      await endOfTask(); // published at the end of the task, without flush()
      await planes.settled();
      assert.deepEqual((await echo()).backends.map((b) => b.address), [Y]);

      await planes.drain(1_000);
      await planes.close();
      stopped = true;
      assert.equal(await released(port), true, "the port is free again");
    } finally {
      cluster.close();
      if (!stopped) {
        await planes.drain(1_000);
        await planes.close();
      }
    }
  });
});

// Finding: DataPlaneHandle.close() promises to stop a data plane "for good", and a worker's
// close() terminates its thread (and its listener), but LocalDataPlane.close() (workers: 1)
// closes only the clusters and the access log: its listener keeps accepting connections and
// relaying calls to clusters that are shut down, until drain() is called.
Deno.test("data planes (workers: 1): close() alone stops listening", async () => {
  const config = await localConfig([DRAINED_1]);
  const port = Number(config.listen.split(":")[1]);
  const planes = new DataPlanes();
  const cluster = new Cluster("echo", config.clusters.echo, planes);
  cluster.setDrained(DRAINED_1, true);
  cluster.flush();
  try {
    await startLocal(planes, config);
    assert.equal(bound(port), true);
    await planes.close();
    assert.equal(await released(port, 500), true, "the listener is closed");
  } finally {
    cluster.close();
    await planes.drain(1_000); // releases the listener close() left bound
  }
});
