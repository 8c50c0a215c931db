/**
 * Long-lived streams: scale-out rebalancing (`clusters.NAME.rebalance`) and the per-backend
 * stream statistics. In process: the shedding decision, the backends' stream lists, a
 * rebalancer pass, the median over workers and the config. Through the real proxy with real
 * grpc-js backends: 30 long streams over 3 `least_request` backends, a fourth added, with and
 * without `rebalance`, and what `/clusters` and `/metrics` show.
 */
import * as grpc from "@grpc/grpc-js";
import assert from "node:assert/strict";
import { streamAgeP50 } from "../src/admin/cluster_view.ts";
import { registeredPolicies } from "../src/balancer/registry.ts";
import { parseConfig } from "../src/config/load.ts";
import type { BackendStats } from "../src/dataplane/stats.ts";
import { type BackendLoad, Rebalancer, shedPlan } from "../src/upstream/rebalancer.ts";
import type { Upstream } from "../src/upstream/upstream.ts";
import { type TrackedStream, UpstreamBackend } from "../src/upstream/upstream_backend.ts";
import { adminRequest, startAdminProxy } from "./support/admin_client.ts";
import { clusterConfig, GRPC_JS, type ProxyProcess, waitFor } from "./support/harness.ts";
import { parsePrometheusText, sumSamples } from "./support/prometheus.ts";
import {
  serverStream,
  startTestBackend,
  type TestBackend,
  testClient,
} from "./support/test_backend.ts";
import { clusterProblems } from "./support/config_problems.ts";

// --- the shedding decision ------------------------------------------------------------------

/** Loads with every stream old enough and weight 1. */
function loads(...streams: number[]): BackendLoad[] {
  return streams.map((count) => ({ streams: count, old: count, weight: 1 }));
}

const SETTINGS = { maxShare: 0.2, tolerance: 0.1 };

Deno.test("shedPlan: a new backend takes streams from the busiest, bounded by maxShare", () => {
  // 30 streams over 3, a fourth joins: fair 7.5; each of the others may give 10 − 8 = 2, and
  // ⌈0.2 × 30⌉ = 6 is the bound per interval.
  assert.deepEqual(shedPlan(loads(10, 10, 10, 0), SETTINGS), [2, 2, 2, 0]);
  // maxShare bounds it: 5 % of 100 is 5, though 50 are lacking.
  assert.deepEqual(shedPlan(loads(100, 0), { maxShare: 0.05, tolerance: 0.1 }), [5, 0]);
  // The busiest gives first: ⌈0.2 × 30⌉ = 6 from 16, 8, 6, 0 (fair 7.5) goes 16 → 10.
  assert.deepEqual(shedPlan(loads(16, 8, 6, 0), SETTINGS), [6, 0, 0, 0]);
  // Then both givers level together.
  assert.deepEqual(shedPlan(loads(12, 12, 0), { maxShare: 0.5, tolerance: 0 }), [4, 4, 0]);
  // Never more than the others lack: fair 9.5, the newcomer lacks 2.5, so 2 go, the busiest's
  // first; while it is below 9, the others give down to 9.
  assert.deepEqual(shedPlan(loads(10, 10, 11, 7), { maxShare: 0.5, tolerance: 0.1 }), [1, 0, 1, 0]);
  // 8/8/8/6 (fair 7.5): the newcomer is below 7, so an 8 gives one.
  assert.deepEqual(shedPlan(loads(8, 8, 8, 6), SETTINGS), [1, 0, 0, 0]);
});

Deno.test("shedPlan: nothing moves when balanced, within tolerance, young, or alone", () => {
  assert.deepEqual(shedPlan(loads(10, 10, 10), SETTINGS), [0, 0, 0]);
  // 11/10/9: within ±10 % of 10.
  assert.deepEqual(shedPlan(loads(11, 10, 9), SETTINGS), [0, 0, 0]);
  // 8/8/7/7 and 8/8/8/7: every backend at its share rounded down or up, whatever the
  // tolerance: a state that sheds nothing, so shedding settles.
  for (const tolerance of [0, 0.1]) {
    assert.deepEqual(shedPlan(loads(8, 8, 7, 7), { maxShare: 0.5, tolerance }), [0, 0, 0, 0]);
    assert.deepEqual(shedPlan(loads(8, 8, 8, 7), { maxShare: 0.5, tolerance }), [0, 0, 0, 0]);
  }
  // 9/9/9/3 with a tolerance of 0.6: 3 is within 0.4 × 7.5, 9 within 1.6 × 7.5.
  assert.deepEqual(shedPlan(loads(9, 9, 9, 3), { maxShare: 0.5, tolerance: 0.6 }), [0, 0, 0, 0]);
  // One stream cannot be split.
  assert.deepEqual(shedPlan(loads(1, 0), SETTINGS), [0, 0]);
  assert.deepEqual(shedPlan(loads(0, 0, 0), SETTINGS), [0, 0, 0]);
  assert.deepEqual(shedPlan(loads(10), SETTINGS), [0]);
  assert.deepEqual(shedPlan([], SETTINGS), []);
  // Only old streams are shed: the busiest has 2 old ones, the other none.
  assert.deepEqual(
    shedPlan([{ streams: 10, old: 2, weight: 1 }, { streams: 10, old: 0, weight: 1 }, {
      streams: 0,
      old: 0,
      weight: 1,
    }], { maxShare: 0.5, tolerance: 0.1 }),
    [2, 0, 0],
  );
  // A tolerance of 0.5 puts up with 14/8/8 (fair 10), not with 16/7/7.
  assert.deepEqual(shedPlan(loads(14, 8, 8), { maxShare: 0.5, tolerance: 0.5 }), [0, 0, 0]);
  assert.deepEqual(shedPlan(loads(16, 7, 7), { maxShare: 0.5, tolerance: 0.5 }), [6, 0, 0]);
});

Deno.test("shedPlan: fair shares follow the weights", () => {
  // Weights 1:3 over 20 streams: fair 5 and 15.
  const weighted = (a: number, b: number): BackendLoad[] => [
    { streams: a, old: a, weight: 1 },
    { streams: b, old: b, weight: 3 },
  ];
  assert.deepEqual(shedPlan(weighted(5, 15), SETTINGS), [0, 0]);
  assert.deepEqual(shedPlan(weighted(10, 10), { maxShare: 0.5, tolerance: 0.1 }), [5, 0]);
  // Unweighted, 10/10 would be balanced; weighted, the light one is the busy one.
  assert.deepEqual(shedPlan(loads(10, 10), SETTINGS), [0, 0]);
});

// --- the backends' stream lists ---------------------------------------------------------------

/** A stream as a call is one: it unlinks itself when shed, as the relay does. */
class FakeStream implements TrackedStream {
  streamBackend: UpstreamBackend | undefined = undefined;
  streamPrev: TrackedStream | undefined = undefined;
  streamNext: TrackedStream | undefined = undefined;
  streamOpenedAt = 0;
  shedWith: string | undefined;

  shed(message: string): void {
    this.shedWith = message;
    this.streamBackend?.untrackStream(this);
  }
}

/** A member whose pool is never used: only its stream list and state are. */
function fakeBackend(address: string, state: "READY" | "CONNECTING" = "READY"): UpstreamBackend {
  const backend = new UpstreamBackend(
    { address, drained: false, health: "unknown", ejected: false, reason: undefined },
    {} as Upstream,
  );
  backend.effectiveState = state;
  return backend;
}

/** The streams of `backend`, oldest first. */
function listed(backend: UpstreamBackend): TrackedStream[] {
  const streams: TrackedStream[] = [];
  for (let s = backend.oldestStream; s !== undefined; s = s.streamNext) streams.push(s);
  return streams;
}

Deno.test("stream list: oldest first, counted, ages at read time, no per-call allocation", () => {
  const backend = fakeBackend("127.0.0.1:1");
  const streams = Array.from({ length: 5 }, () => new FakeStream());
  streams.forEach((stream, i) => backend.trackStream(stream, 1000 + i * 100));
  assert.equal(backend.trackedStreams, 5);
  assert.deepEqual(listed(backend), streams);
  // Ages at 2000: 1000, 900, 800, 700, 600; the median is the 3rd youngest.
  assert.equal(backend.streamAgeMaxMs(2000), 1000);
  assert.equal(backend.streamAgeP50Ms(2000), 800);
  assert.deepEqual(backend.streamAgeSample(2000, 256), [600, 700, 800, 900, 1000]);
  // Past the limit, evenly spaced by rank: each stands for n / limit streams.
  assert.deepEqual(backend.streamAgeSample(2000, 2), [700, 900]);

  backend.untrackStream(streams[0]);
  backend.untrackStream(streams[2]);
  backend.untrackStream(streams[2]); // twice: once only
  assert.deepEqual(listed(backend), [streams[1], streams[3], streams[4]]);
  assert.equal(backend.streamAgeMaxMs(2000), 900);
  // 900, 700, 600: the 2nd youngest of 3.
  assert.equal(backend.streamAgeP50Ms(2000), 700);
  assert.deepEqual(backend.counters, {
    calls: 0,
    failures: 0,
    bytesReceived: 0,
    bytesSent: 0,
    streamsOpened: 5,
    streamsEnded: 2,
  });

  // A retry on another member moves the stream: it leaves the first list.
  const other = fakeBackend("127.0.0.1:2");
  other.trackStream(streams[4], 1900);
  assert.deepEqual(listed(backend), [streams[1], streams[3]]);
  assert.deepEqual(listed(other), [streams[4]]);
  assert.equal(streams[4].streamBackend, other);
  for (const stream of [streams[1], streams[3]]) backend.untrackStream(stream);
  assert.equal(backend.trackedStreams, 0);
  assert.equal(backend.oldestStream, undefined);
  assert.equal(backend.streamAgeMaxMs(2000), 0);
  assert.equal(backend.streamAgeP50Ms(2000), 0);
  assert.deepEqual(backend.streamAgeSample(2000, 256), []);
  // Even counts: the ⌈n/2⌉-th youngest.
  const four = fakeBackend("127.0.0.1:3");
  for (let i = 0; i < 4; i++) four.trackStream(new FakeStream(), i);
  assert.equal(four.streamAgeP50Ms(10), 8, "ages 10, 9, 8, 7: the 2nd youngest");
});

/** One worker's report of a backend with `ages` open (all of them in the sample). */
function report(ages: number[], sample = ages, ended = 0): BackendStats {
  return {
    address: "127.0.0.1:1",
    connectivity: "READY",
    state: "READY",
    lastConnectionError: null,
    activeStreams: ages.length,
    calls: 0,
    failures: 0,
    bytesReceived: 0,
    bytesSent: 0,
    streamsOpened: ages.length + ended,
    streamsEnded: ended,
    streamAgeMaxMs: Math.max(0, ...ages),
    streamAgeSampleMs: sample,
  };
}

Deno.test("the median age over workers is taken over their streams together", () => {
  assert.equal(streamAgeP50([]), null);
  assert.equal(streamAgeP50([report([], [], 3)]), null);
  assert.equal(streamAgeP50([report([5, 7, 9])]), 7);
  // 1, 2, 3 and 100: the 2nd youngest of 4, where the mean of medians would say 51.
  assert.equal(streamAgeP50([report([1, 2, 3]), report([100])]), 2);
  assert.equal(streamAgeP50([report([100]), report([1, 2, 3])]), 2);
  // A sampled worker: 1,000 streams aged 0…999 ms, sent as 256 evenly spaced ages.
  const ages = Array.from({ length: 1000 }, (_, i) => i);
  const backend = fakeBackend("127.0.0.1:1");
  // Opened oldest first, as streams open.
  for (const age of [...ages].reverse()) backend.trackStream(new FakeStream(), 1000 - age);
  const sample = backend.streamAgeSample(1000, 256);
  assert.equal(sample.length, 256);
  const median = streamAgeP50([report(ages, sample)])!;
  assert.ok(Math.abs(median - 499) <= 1000 / 256, `sampled median ${median}`);
});

// --- a rebalancer pass ------------------------------------------------------------------------

Deno.test("a rebalancer pass sheds the oldest old streams of the busiest, and counts them", () => {
  const [b1, b2, b3] = ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"].map((a) => fakeBackend(a));
  const down = fakeBackend("127.0.0.1:4", "CONNECTING");
  const now = performance.now();
  const streamsOf = new Map<UpstreamBackend, FakeStream[]>();
  const open = (backend: UpstreamBackend, count: number, openedAt: number) => {
    for (let i = 0; i < count; i++) {
      const stream = new FakeStream();
      backend.trackStream(stream, openedAt + i);
      streamsOf.set(backend, [...streamsOf.get(backend) ?? [], stream]);
    }
  };
  open(b1, 6, now - 60_000); // old
  open(b1, 4, now); // young
  open(b2, 10, now - 60_000);
  const cluster = {
    name: "c",
    policy: "least_request",
    backends: () => [b1, b2, b3, down],
    counters: { rebalanceShed: 0 },
  };
  const rebalancer = new Rebalancer(cluster, {
    interval: 60_000,
    maxShare: 0.5,
    minStreamAge: 1000,
    tolerance: 0.1,
  });
  try {
    // 20 streams over the 3 READY ones (the CONNECTING one does not count): fair 6.7, so
    // each busy one gives 10 − 7 = 3, its oldest.
    assert.equal(rebalancer.rebalance(), 6);
    assert.equal(cluster.counters.rebalanceShed, 6);
    for (const backend of [b1, b2]) {
      const streams = streamsOf.get(backend)!;
      assert.deepEqual(
        streams.map((stream) => stream.shedWith !== undefined),
        streams.map((_, i) => i < 3),
        `${backend.address} sheds its three oldest`,
      );
      assert.match(
        streams[0].shedWith!,
        new RegExp(`^cluster c: stream shed by rebalance from backend ${backend.address} `),
      );
      assert.equal(backend.trackedStreams, 7);
    }
    // Nothing reconnected yet: 7/7/0 (fair 4.7) sheds 2 + 2 more, which is all 0 lacks.
    assert.equal(rebalancer.rebalance(), 4);
    assert.equal(cluster.counters.rebalanceShed, 10);
    // b1 keeps its 4 young streams and 1 old one.
    assert.equal(b1.trackedStreams, 5);
    assert.deepEqual(
      streamsOf.get(b1)!.map((stream) => stream.shedWith === undefined),
      [false, false, false, false, false, true, true, true, true, true],
    );
    assert.equal(b2.trackedStreams, 5);
    // Under ring_hash (a picker switched live) nothing is shed.
    const hashed = { ...cluster, policy: "ring_hash" };
    const idle = new Rebalancer(hashed, {
      interval: 60_000,
      maxShare: 0.5,
      minStreamAge: 0,
      tolerance: 0,
    });
    try {
      assert.equal(idle.rebalance(), 0);
    } finally {
      idle.stop();
    }
  } finally {
    rebalancer.stop();
  }
});

// --- config -----------------------------------------------------------------------------------

Deno.test("config: rebalance defaults, and refusals that name the field", () => {
  const backends = ["127.0.0.1:1"];
  const parse = (cluster: Record<string, unknown>) =>
    parseConfig({ clusters: { c: { backends, ...cluster } }, routes: [{ cluster: "c" }] }, "t", {
      pickers: registeredPolicies(),
    }).clusters.c;
  assert.equal(parse({}).rebalance, undefined, "off unless set");
  assert.deepEqual(parse({ picker: "least_request", rebalance: {} }).rebalance, {
    interval: 10_000,
    maxShare: 0.05,
    minStreamAge: 60_000,
    tolerance: 0.1,
  });
  assert.deepEqual(
    parse({
      rebalance: { interval: "500ms", maxShare: 0.2, minStreamAge: "200ms", tolerance: 0 },
    }).rebalance,
    { interval: 500, maxShare: 0.2, minStreamAge: 200, tolerance: 0 },
  );
  const refused: [Record<string, unknown>, string][] = [
    [{ maxShare: 0.6 }, "clusters.c.rebalance.maxShare: must be greater than 0 and at most 0.5"],
    [{ maxShare: 0 }, "clusters.c.rebalance.maxShare: must be greater than 0 and at most 0.5"],
    [{ interval: "50ms" }, "clusters.c.rebalance.interval: must be at least 100ms"],
    [{ interval: "soon" }, 'clusters.c.rebalance.interval: "soon" is not a duration'],
    [{ minStreamAge: "1 m" }, 'clusters.c.rebalance.minStreamAge: "1 m" is not a duration'],
    [{ tolerance: 1.5 }, "clusters.c.rebalance.tolerance: must be from 0 to 1"],
    [{ maxshare: 0.1 }, "clusters.c.rebalance"],
  ];
  for (const [rebalance, expected] of refused) {
    const [problem, ...more] = clusterProblems({ backends, rebalance });
    assert.ok(problem.startsWith(expected), `${JSON.stringify(rebalance)}: ${problem}`);
    assert.deepEqual(more, []);
  }
  for (const picker of ["pick_first", "ring_hash"]) {
    assert.deepEqual(
      clusterProblems({ backends, picker, hashKey: "client_address", rebalance: {} }),
      [
        "clusters.c.rebalance: needs a picker that spreads streams (least_request, " +
        `round_robin, weighted_round_robin), not ${picker}`,
      ],
    );
  }
});

// --- through the proxy ------------------------------------------------------------------------

/** One long server stream: held open by its backend after the first message. */
interface LongStream {
  readonly call: grpc.ClientReadableStream<Buffer>;
  /** The backend that serves it (`x-backend`), once its headers arrived. */
  backend?: string;
  /** Its status, once it ended. */
  status?: grpc.StatusObject;
}

/**
 * A client of `count` long streams that reopens every stream ending with UNAVAILABLE, as a
 * reconnecting streaming client does, and keeps every status it saw.
 */
class StreamingClient {
  readonly client: grpc.Client;
  readonly streams: LongStream[] = [];
  readonly endings: grpc.StatusObject[] = [];
  #closing = false;

  constructor(address: string, count: number) {
    this.client = testClient(address);
    for (let i = 0; i < count; i++) this.#open();
  }

  #open(): void {
    // The backend sends one message, then holds the stream until released (never, here).
    const call = serverStream(this.client, 1_000_000, 16, { "x-hold": "1" });
    const stream: LongStream = { call };
    this.streams.push(stream);
    call.on("metadata", (metadata: grpc.Metadata) => {
      stream.backend = String(metadata.get("x-backend")[0]);
    });
    call.on("data", () => {});
    call.on("error", () => {});
    call.on("status", (status: grpc.StatusObject) => {
      stream.status = status;
      if (this.#closing) return;
      this.endings.push(status);
      if (status.code === grpc.status.UNAVAILABLE) this.#open();
    });
  }

  /** Open streams whose backend is known, per backend name. */
  placement(names: readonly string[]): number[] {
    return names.map((name) =>
      this.streams.filter((s) => s.status === undefined && s.backend === name).length
    );
  }

  /** Streams open and placed. */
  get placed(): number {
    return this.streams.filter((s) => s.status === undefined && s.backend !== undefined).length;
  }

  /** Cancels every stream and closes the channel. */
  close(): void {
    this.#closing = true;
    for (const stream of this.streams) if (stream.status === undefined) stream.call.cancel();
    this.client.close();
  }
}

// deno-lint-ignore no-explicit-any -- the admin view, field by field
type View = any;

async function clusterView(proxy: ProxyProcess): Promise<View> {
  const { status, body } = await adminRequest(proxy, "/clusters/echo");
  assert.equal(status, 200);
  return body;
}

function backendIn(view: View, address: string): View {
  return view.backends.find((backend: View) => backend.address === address);
}

async function metrics(proxy: ProxyProcess) {
  return parsePrometheusText(String((await adminRequest(proxy, "/metrics")).body));
}

async function startBackends(names: readonly string[]): Promise<TestBackend[]> {
  return await Promise.all(names.map((name) => startTestBackend(name)));
}

const NAMES = ["b1", "b2", "b3", "b4"];
const STREAMS = 30;

/** Opens the 30 streams over b1–b3 and checks they land 10/10/10 (±2). */
async function placeStreams(proxy: ProxyProcess, backends: TestBackend[]) {
  // Every member READY first: least_request places only on READY ones.
  await waitFor(
    async () => (await clusterView(proxy)).backends.every((b: View) => b.state === "READY"),
    {
      what: "b1–b3 READY",
    },
  );
  const client = new StreamingClient(proxy.address, STREAMS);
  await waitFor(() => client.placed === STREAMS, { what: "30 streams placed" });
  const before = client.placement(NAMES);
  console.log(`least_request: ${STREAMS} long streams over 3 backends → ${before.join("/")}`);
  for (const count of before.slice(0, 3)) {
    assert.ok(Math.abs(count - 10) <= 2, `placement ${before.join("/")}`);
  }
  assert.equal(before[3], 0);
  // The proxy sees the same.
  const view = await clusterView(proxy);
  assert.deepEqual(
    backends.slice(0, 3).map((b) => backendIn(view, b.address).activeStreams),
    before.slice(0, 3),
  );
  return { client, before };
}

Deno.test({
  name: "rebalance: with least_request, a fourth backend joining 30 long streams over 3 gets " +
    "its share (7.5 ± 2) and settles at 7–8 within 10 s; every shed stream ends UNAVAILABLE " +
    "naming the rebalance, and the shedding stays within maxShare per interval, then stops",
  ...GRPC_JS,
  async fn() {
    const backends = await startBackends(NAMES);
    const base = clusterConfig(backends.slice(0, 3).map((b) => b.address), {
      picker: "least_request",
    });
    const proxy = await startAdminProxy({ ...base, accessLog: { enabled: true } });
    let client: StreamingClient | undefined;
    try {
      ({ client } = await placeStreams(proxy, backends));
      // Rebalancing is turned on by a reload, so that the first placement is least_request's
      // alone; then the fourth backend joins through the admin API.
      const rebalance = { interval: "500ms", maxShare: 0.2, minStreamAge: "200ms" };
      await proxy.writeConfig({
        ...base,
        accessLog: { enabled: true },
        clusters: { echo: { ...(base.clusters as View).echo, rebalance } },
      });
      const reloaded = await adminRequest(proxy, "/reload", { method: "POST" });
      assert.equal(reloaded.status, 200, JSON.stringify(reloaded.body));
      const enabledAt = Date.now();
      const added = await adminRequest(proxy, "/clusters/echo/backends", {
        method: "POST",
        json: { address: backends[3].address },
      });
      assert.equal(added.status, 201, JSON.stringify(added.body));
      const joinedAt = Date.now();
      const streaming = client;
      /** The placement once all 30 streams are placed and every count is in `range`. */
      const placedWithin = (low: number, high: number) => () => {
        const placement = streaming.placement(NAMES);
        const total = placement.reduce((a, b) => a + b, 0);
        const even = total === STREAMS && placement.every((n) => n >= low && n <= high);
        return even ? placement : undefined;
      };
      const window = { timeoutMs: 10_000 };
      // Its share, 7.5 ± 2: 6 to 9 streams each.
      const within = await waitFor(placedWithin(6, 9), {
        ...window,
        what: "every backend within 7.5 ± 2 streams",
      });
      const withinMs = Date.now() - joinedAt;
      const shedThen = client.endings.length;
      // Then it settles where nothing more is shed: every backend at 7 or 8 (with tolerance
      // 0.1, 6 is below 0.9 × 7.5 and 9 above 1.1 × 7.5).
      const settled = await waitFor(placedWithin(7, 8), {
        timeoutMs: Math.max(1, 10_000 - withinMs),
        what: "every backend at 7 or 8 streams",
      });
      const settledMs = Date.now() - joinedAt;
      const shed = client.endings.length;
      console.log(
        `rebalance: 10/10/10 + b4 → ${within.join("/")} (share ± 2) in ${withinMs} ms after ` +
          `${shedThen} sheds; settled at ${settled.join("/")} in ${settledMs} ms after ${shed} ` +
          `sheds (interval 500ms, maxShare 0.2, minStreamAge 200ms, tolerance 0.1)`,
      );
      for (const status of client.endings) {
        assert.equal(status.code, grpc.status.UNAVAILABLE, status.details);
        assert.match(status.details, /^cluster echo: stream shed by rebalance from backend /);
      }
      // Bounded: at most ⌈0.2 × 30⌉ = 6 per interval, for the intervals that have passed.
      const intervals = Math.ceil(settledMs / 500) + 1;
      assert.ok(shed > 0 && shed <= 6 * intervals, `${shed} shed in ${intervals} intervals`);

      // Settled means settled: three more intervals shed nothing. (A wait for the clock, only
      // to prove that an event does not come.)
      const settledAt = Date.now();
      await waitFor(() => Date.now() - settledAt >= 1_500, { what: "three intervals to pass" });
      assert.equal(client.endings.length, shed, "nothing shed once settled");
      assert.deepEqual(client.placement(NAMES), settled);

      // The proxy counted what the client saw, and logged each as its own status.
      await waitFor(async () => (await clusterView(proxy)).rebalanceShed >= shed, {
        what: "the sheds counted",
      });
      const view = await clusterView(proxy);
      const samples = await metrics(proxy);
      const counted = sumSamples(samples, "switchyard_rebalance_shed_total", { cluster: "echo" });
      assert.equal(counted, view.rebalanceShed);
      assert.ok(view.rebalanceShed >= shed && view.rebalanceShed <= shed + 6);
      const shedLines = () =>
        proxy.stdout().split("\n").filter((line) => line.includes("shed by rebalance"))
          .map((line) => JSON.parse(line));
      // The access log is written in batches: wait for the lines.
      const logged = await waitFor(() => shedLines().length >= shed ? shedLines() : undefined, {
        what: "an access-log line per shed stream",
      });
      for (const line of logged) {
        assert.equal(line.grpcStatus, grpc.status.UNAVAILABLE);
        assert.equal(line.origin, "proxy");
      }
      const infoLines = proxy.logs().filter((line) =>
        String(line.message ?? "").includes("rebalance shed")
      );
      const passes = Math.ceil((Date.now() - enabledAt) / 500) + 1;
      assert.ok(infoLines.length >= 1 && infoLines.length <= passes, "one line a pass at most");
      // The streams ended on the old backends, never on the new one.
      assert.equal(backendIn(view, backends[3].address).streamsEnded, 0);
    } finally {
      client?.close();
      await proxy.stop();
      await Promise.all(backends.map((b) => b.stop()));
    }
  },
});

Deno.test({
  name: "without rebalance nothing is shed; /clusters and /metrics show streams opened and " +
    "ended and their ages, which grow",
  ...GRPC_JS,
  async fn() {
    const backends = await startBackends(NAMES);
    const proxy = await startAdminProxy(
      clusterConfig(backends.slice(0, 3).map((b) => b.address), { picker: "least_request" }),
    );
    let client: StreamingClient | undefined;
    try {
      let before: number[];
      ({ client, before } = await placeStreams(proxy, backends));
      const first = await clusterView(proxy);
      const added = await adminRequest(proxy, "/clusters/echo/backends", {
        method: "POST",
        json: { address: backends[3].address },
      });
      assert.equal(added.status, 201);
      await waitFor(async () =>
        backendIn(await clusterView(proxy), backends[3].address)
          .state === "READY", { what: "b4 READY" });
      // Long enough for three 500 ms intervals of the test above to have shed.
      const later = await waitFor(async () => {
        const view = await clusterView(proxy);
        return view.backends.every((b: View) =>
          b.streamAgeMaxMs === null || b.streamAgeMaxMs >= 1500
        ) &&
          view;
      }, { what: "the streams to be 1.5 s old" });
      assert.equal(client.endings.length, 0, "no stream ended");
      assert.deepEqual(client.placement(NAMES), before);
      assert.equal(later.rebalanceShed, 0);
      for (const [i, backend] of backends.entries()) {
        const [then, now] = [backendIn(first, backend.address), backendIn(later, backend.address)];
        if (i === 3) {
          assert.equal(then, undefined);
          assert.deepEqual(
            [now.activeStreams, now.streamsOpened, now.streamsEnded],
            [0, 0, 0],
          );
          assert.equal(now.streamAgeP50Ms, null);
          assert.equal(now.streamAgeMaxMs, null);
          continue;
        }
        assert.deepEqual([now.activeStreams, now.streamsOpened, now.streamsEnded], [
          before[i],
          before[i],
          0,
        ]);
        assert.ok(now.streamAgeMaxMs > then.streamAgeMaxMs, "the oldest grew older");
        assert.ok(now.streamAgeP50Ms > then.streamAgeP50Ms, "the median grew older");
        assert.ok(now.streamAgeP50Ms <= now.streamAgeMaxMs);
        assert.deepEqual(now.workers.map((w: View) => w.streamsOpened), [before[i]]);
        assert.ok(now.workers[0].streamAgeMaxMs >= 1500);
      }
      const samples = await metrics(proxy);
      for (const [i, backend] of backends.slice(0, 3).entries()) {
        const labels = { cluster: "echo", backend: backend.address };
        assert.equal(sumSamples(samples, "switchyard_streams_opened_total", labels), before[i]);
        assert.equal(sumSamples(samples, "switchyard_streams_ended_total", labels), 0);
        assert.ok(sumSamples(samples, "switchyard_stream_age_max_seconds", labels) >= 1.5);
        assert.ok(sumSamples(samples, "switchyard_stream_age_p50_seconds", labels) >= 1.5);
      }
      assert.equal(sumSamples(samples, "switchyard_rebalance_shed_total", { cluster: "echo" }), 0);

      // Every stream ends: ended catches up with opened, the ages go.
      client.close();
      const ended = await waitFor(async () => {
        const view = await clusterView(proxy);
        return view.backends.every((b: View) => b.streamsEnded === b.streamsOpened) && view;
      }, { what: "every stream ended" });
      for (const backend of ended.backends) {
        assert.equal(backend.streamAgeMaxMs, null);
        assert.equal(backend.streamAgeP50Ms, null);
      }
      const final = await metrics(proxy);
      assert.equal(sumSamples(final, "switchyard_streams_ended_total"), STREAMS);
      assert.equal(sumSamples(final, "switchyard_stream_age_max_seconds"), 0);
    } finally {
      client?.close();
      await proxy.stop();
      await Promise.all(backends.map((b) => b.stop()));
    }
  },
});
