/**
 * The status page's series: the ring buffer, histogram percentiles, the sampler over fake
 * data-plane stats with a fake clock (exact rates, percentiles, shares, states, worker
 * restarts, wraparound, clusters and backends that leave), its timer, and
 * `GET /clusters/{name}/series` through `app.request()`.
 */
import assert from "node:assert/strict";
import { createAdminApp } from "../src/admin/app.ts";
import { clusterSeriesSchema } from "../src/admin/schemas.ts";
import {
  histogramQuantile,
  Ring,
  SERIES_CAPACITY,
  SeriesSampler,
  type SeriesTarget,
} from "../src/admin/series.ts";
import type { AdminTarget } from "../src/admin/target.ts";
import { Cluster } from "../src/cluster/cluster.ts";
import { parseConfig } from "../src/config/load.ts";
import { type Config, configSchema } from "../src/config/schema.ts";
import {
  type BackendStats,
  clusterCounters,
  type ClusterStats,
  type DataPlaneStats,
  DURATION_BUCKETS_SECONDS,
} from "../src/dataplane/stats.ts";
import { ProxyMetrics } from "../src/metrics/metrics.ts";
import { registeredPolicies } from "../src/balancer/registry.ts";
import { waitFor } from "./support/harness.ts";

const A = "127.0.0.1:50051";
const B = "127.0.0.1:50052";
const C = "127.0.0.1:50053";
const INTERVAL_MS = 5_000;

/** Index of the bucket whose upper bound is `seconds`. */
function bucket(seconds: number): number {
  const index = DURATION_BUCKETS_SECONDS.indexOf(seconds);
  assert.ok(index >= 0, `${seconds} is a bucket bound`);
  return index;
}

/** Per-bucket counts with `entries` ([bucket index, count]) set, the rest 0. */
function durations(entries: [number, number][]): number[] {
  const counts = clusterCounters().durations;
  for (const [index, count] of entries) counts[index] = count;
  return counts;
}

function near(actual: number | null, expected: number, label: string): void {
  assert.ok(actual !== null, `${label}: null`);
  assert.ok(Math.abs(actual - expected) < 1e-12, `${label}: ${actual} ≠ ${expected}`);
}

Deno.test("a ring keeps the newest items, oldest first, at a fixed capacity", () => {
  const ring = new Ring<number>(4);
  assert.deepEqual(ring.toArray(), []);
  for (let i = 0; i < 3; i++) ring.push(i);
  assert.deepEqual(ring.toArray(), [0, 1, 2]);
  for (let i = 3; i < 11; i++) ring.push(i);
  assert.deepEqual(ring.toArray(), [7, 8, 9, 10]);
  assert.equal(ring.length, 4);
  assert.throws(() => new Ring(0), RangeError);
});

Deno.test("percentiles interpolate inside a bucket as histogram_quantile does", () => {
  // 40 calls in (5 ms, 10 ms], 50 in (10 ms, 25 ms], 10 in (50 ms, 100 ms].
  const counts = durations([[bucket(0.01), 40], [bucket(0.025), 50], [bucket(0.1), 10]]);
  near(histogramQuantile(0.5, counts), 0.01 + 0.015 * (10 / 50), "p50");
  near(histogramQuantile(0.99, counts), 0.05 + 0.05 * (9 / 10), "p99");
  near(histogramQuantile(0.4, counts), 0.01, "a rank at a bucket's end: its upper bound");
  // The first bucket starts at 0.
  near(histogramQuantile(0.5, durations([[0, 4]])), 0.00005 / 2, "first bucket");
  // Past the last bound there is no upper end: the last bound is the answer.
  const slow = durations([[DURATION_BUCKETS_SECONDS.length, 3]]);
  assert.equal(histogramQuantile(0.99, slow), 60);
  assert.equal(histogramQuantile(0.5, durations([])), null, "no calls, no percentile");
});

/** One worker's counters for cluster `echo`. */
interface WorkerCounts {
  readonly calls: number;
  readonly errors: number;
  readonly durations: number[];
  /** Calls per backend address. */
  readonly backends: Record<string, number>;
  /** Connectivity per backend; READY when not given. */
  readonly states?: Record<string, BackendStats["state"]>;
}

function planeStats(worker: number, counts: WorkerCounts, name = "echo"): DataPlaneStats {
  const zero = clusterCounters();
  const backends = Object.entries(counts.backends).map(([address, calls]): BackendStats => {
    const state = counts.states?.[address] ?? "READY";
    return {
      address,
      connectivity: state,
      state,
      lastConnectionError: null,
      activeStreams: 0,
      calls,
      failures: 0,
      bytesReceived: 0,
      bytesSent: 0,
      streamsOpened: 0,
      streamsEnded: 0,
      streamAgeMaxMs: 0,
      streamAgeSampleMs: [],
    };
  });
  const cluster: ClusterStats = {
    name,
    state: "READY",
    calls: counts.calls,
    errors: counts.errors,
    durations: counts.durations,
    retries: zero.retries,
    overflow: zero.overflow,
    rebalanceShed: 0,
    backends,
  };
  return { worker, connections: 0, clusters: [cluster] };
}

const CONFIG: Config = configSchema.parse({
  admin: { listen: "127.0.0.1:9901" },
  clusters: { echo: { backends: [A, B] } },
  routes: [{ cluster: "echo" }],
});

/** A fake proxy: cluster `echo` (members A, B), stats the test sets, and a clock it moves. */
class FakeProxy implements SeriesTarget {
  readonly clusters: Map<string, Cluster> = new Map();
  planes: DataPlaneStats[] = [];
  statsRounds = 0;
  now = Date.UTC(2026, 0, 1, 12);
  readonly echo: Cluster;

  constructor() {
    this.echo = this.addCluster("echo");
  }

  addCluster(name: string): Cluster {
    const cluster = new Cluster(name, CONFIG.clusters.echo, { publish: () => {} });
    this.clusters.set(name, cluster);
    return cluster;
  }

  dataPlaneStats(): Promise<DataPlaneStats[]> {
    this.statsRounds++;
    return Promise.resolve(this.planes);
  }

  sampler(capacity?: number): SeriesSampler {
    return new SeriesSampler(this, { intervalMs: INTERVAL_MS, capacity, clock: () => this.now });
  }

  /** Sets the workers' counters, moves the clock one interval on and samples. */
  async step(sampler: SeriesSampler, ...workers: (WorkerCounts | undefined)[]): Promise<void> {
    this.planes = workers.flatMap((counts, i) => counts ? [planeStats(i + 1, counts)] : []);
    this.now += INTERVAL_MS;
    await sampler.sample();
  }

  [Symbol.dispose](): void {
    for (const cluster of this.clusters.values()) cluster.close();
  }
}

Deno.test("rates, error rate, p50/p99 and shares come from one interval's deltas", async () => {
  using proxy = new FakeProxy();
  const sampler = proxy.sampler();
  const base = durations([[bucket(0.001), 100]]);
  await proxy.step(sampler, {
    calls: 100,
    errors: 1,
    durations: base,
    backends: { [A]: 70, [B]: 30 },
  });
  assert.deepEqual(sampler.series("echo")!.points, [], "the first sample is only a baseline");

  // +100 calls: 40 in (5, 10] ms, 50 in (10, 25] ms, 10 in (50, 100] ms; 5 errors; A 60, B 40.
  const next = durations([[bucket(0.001), 100], [bucket(0.01), 40], [bucket(0.025), 50], [
    bucket(0.1),
    10,
  ]]);
  await proxy.step(sampler, {
    calls: 200,
    errors: 6,
    durations: next,
    backends: { [A]: 130, [B]: 70 },
  });
  const series = sampler.series("echo")!;
  assert.equal(series.intervalMs, INTERVAL_MS);
  assert.equal(series.capacity, SERIES_CAPACITY);
  assert.deepEqual(series.latencyBucketsSeconds, DURATION_BUCKETS_SECONDS);
  assert.equal(series.points.length, 1);
  const [point] = series.points;
  assert.equal(point.at, new Date(proxy.now).toISOString());
  assert.equal(point.calls, 100);
  assert.equal(point.errors, 5);
  near(point.callsPerSecond, 20, "calls/s");
  near(point.errorRate, 0.05, "error rate");
  near(point.p50Seconds, 0.013, "p50");
  near(point.p99Seconds, 0.095, "p99");
  assert.deepEqual(series.backends, [
    { address: A, calls: [60], share: [0.6], state: ["READY"] },
    { address: B, calls: [40], share: [0.4], state: ["READY"] },
  ]);
  assert.doesNotThrow(() => clusterSeriesSchema.parse(series), "the answer fits its schema");

  // A quiet interval: no rate to divide, no percentile.
  await proxy.step(sampler, {
    calls: 200,
    errors: 6,
    durations: next,
    backends: { [A]: 130, [B]: 70 },
  });
  const quiet = sampler.series("echo")!.points[1];
  assert.deepEqual(
    [quiet.calls, quiet.callsPerSecond, quiet.errorRate, quiet.p50Seconds, quiet.p99Seconds],
    [0, 0, null, null, null],
  );
  assert.deepEqual(sampler.series("echo")!.backends.map((b) => b.share[1]), [null, null]);
});

Deno.test("a worker whose counters went down restarted: it counts from zero, never negative", async () => {
  using proxy = new FakeProxy();
  const sampler = proxy.sampler();
  const w1 = (calls: number, a: number, b: number, fast: number) => ({
    calls,
    errors: 0,
    durations: durations([[bucket(0.001), fast]]),
    backends: { [A]: a, [B]: b },
  });
  await proxy.step(sampler, w1(1000, 500, 500, 1000), w1(400, 200, 200, 400));
  // Worker 1 restarted and has counted 30 calls since; worker 2 counted 20 more.
  await proxy.step(sampler, w1(30, 10, 20, 30), w1(420, 210, 210, 420));
  const [point] = sampler.series("echo")!.points;
  assert.equal(point.calls, 50);
  near(point.callsPerSecond, 10, "calls/s");
  near(point.p50Seconds, 0.0005 + 0.0005 * 0.5, "p50 over both workers");
  const [a, b] = sampler.series("echo")!.backends;
  assert.deepEqual([a.calls, b.calls], [[20], [30]]);

  // A worker that did not answer last time adds nothing now, rather than all it ever counted.
  await proxy.step(sampler, undefined, w1(440, 220, 220, 440));
  await proxy.step(sampler, w1(1030, 510, 520, 1030), w1(460, 230, 230, 460));
  const points = sampler.series("echo")!.points;
  assert.deepEqual(points.map((p) => p.calls), [50, 20, 20]);
  for (const p of points) assert.ok(p.callsPerSecond >= 0 && p.calls >= 0);
});

Deno.test("backend states follow drain, ejection and health; members that join or leave", async () => {
  using proxy = new FakeProxy();
  const sampler = proxy.sampler();
  const counts = (a: number, b: number, c?: number): WorkerCounts => ({
    calls: a + b + (c ?? 0),
    errors: 0,
    durations: durations([[bucket(0.001), a + b + (c ?? 0)]]),
    backends: c === undefined ? { [A]: a, [B]: b } : { [A]: a, [B]: b, [C]: c },
    states: { [B]: "CONNECTING" },
  });
  await proxy.step(sampler, counts(0, 0));
  await proxy.step(sampler, counts(10, 0));
  proxy.echo.setDrained(B, true);
  await proxy.step(sampler, counts(20, 0));
  proxy.echo.setDrained(B, false);
  proxy.echo.setEjectedUntil(B, Date.now() + 60_000);
  await proxy.step(sampler, counts(30, 0));
  proxy.echo.setEjectedUntil(B, 0);
  proxy.echo.setHealth(B, "unhealthy");
  proxy.echo.addMember("admin", C);
  await proxy.step(sampler, counts(40, 0, 10));
  const series = sampler.series("echo")!;
  assert.equal(series.points.length, 4);
  const byAddress = new Map(series.backends.map((backend) => [backend.address, backend]));
  assert.deepEqual(byAddress.get(A)!.state, ["READY", "READY", "READY", "READY"]);
  assert.deepEqual(byAddress.get(B)!.state, ["CONNECTING", "DRAINED", "EJECTED", "UNHEALTHY"]);
  // C joined at the last sample: its arrays line up with the points, null before it.
  assert.deepEqual(byAddress.get(C), {
    address: C,
    calls: [null, null, null, 10],
    share: [null, null, null, 0.5],
    state: [null, null, null, "READY"],
  });

  proxy.echo.removeMember("static", B);
  await proxy.step(sampler, counts(50, 0, 20));
  assert.deepEqual(sampler.series("echo")!.backends.map((b) => b.address), [A, C], "B dropped");

  // A cluster that goes is dropped with its backends; one of the same name starts afresh.
  proxy.echo.close();
  proxy.clusters.delete("echo");
  await proxy.step(sampler, counts(60, 0, 30));
  assert.equal(sampler.series("echo"), undefined);
  proxy.addCluster("echo");
  await proxy.step(sampler, counts(70, 0, 40));
  assert.equal(sampler.series("echo")!.points.length, 1);
});

Deno.test("the rings wrap: the newest `capacity` points, oldest first", async () => {
  using proxy = new FakeProxy();
  const sampler = proxy.sampler(3);
  const counts = (calls: number): WorkerCounts => ({
    calls,
    errors: 0,
    durations: durations([[bucket(0.001), calls]]),
    backends: { [A]: calls, [B]: 0 },
  });
  const times: string[] = [];
  for (let i = 0; i <= 6; i++) {
    await proxy.step(sampler, counts(i * (i + 1) / 2)); // +1, +2, … calls per interval
    times.push(new Date(proxy.now).toISOString());
  }
  const series = sampler.series("echo")!;
  assert.equal(series.capacity, 3);
  assert.deepEqual(series.points.map((p) => p.calls), [4, 5, 6]);
  assert.deepEqual(series.points.map((p) => p.at), times.slice(-3));
  assert.deepEqual(series.backends[0].calls, [4, 5, 6]);
  assert.deepEqual(series.backends[0].share, [1, 1, 1]);
  assert.deepEqual(series.backends[1].share, [0, 0, 0]);
});

Deno.test("start samples on a timer, one stats round each; stop leaves no timer", async () => {
  using proxy = new FakeProxy();
  proxy.planes = [planeStats(1, {
    calls: 0,
    errors: 0,
    durations: durations([]),
    backends: { [A]: 0, [B]: 0 },
  })];
  const sampler = new SeriesSampler(proxy, { intervalMs: 20 });
  sampler.start();
  sampler.start(); // idempotent: still one timer
  await waitFor(() => sampler.series("echo")!.points.length >= 3, { what: "three points" });
  await sampler.stop();
  const rounds = proxy.statsRounds;
  assert.equal(rounds, sampler.series("echo")!.points.length + 1, "a baseline, then a point each");
  assert.equal(sampler.scheduled, false, "no timer and no sample pending");
  // Deno 2.9's op sanitizer does not report a pending timer, so watch: while a second sampler
  // on the same interval takes five samples, the stopped one must take none.
  using other = new FakeProxy();
  const witness = new SeriesSampler(other, { intervalMs: 20 });
  witness.start();
  await waitFor(() => other.statsRounds >= 5, { what: "five samples of another sampler" });
  await witness.stop();
  assert.equal(proxy.statsRounds, rounds, "the stopped sampler took no more samples");
});

/** The admin app over a fake proxy whose series `sampler` reads. */
function adminApp(proxy: FakeProxy, sampler: SeriesSampler) {
  const target: AdminTarget = {
    config: CONFIG,
    clusters: proxy.clusters,
    discovery: undefined,
    draining: false,
    dataPlanes: { workers: () => [], usableClusters: () => Promise.resolve(new Set()) },
    drain: () => Promise.resolve(),
    dataPlaneStats: () => proxy.dataPlaneStats(),
    settled: () => Promise.resolve(),
    reload: () => Promise.resolve({ ok: true, changed: [], warnings: [] }),
    reloadStatus: { successes: 0, failures: 0, lastSuccessAt: 0, lastErrors: undefined },
  };
  const metrics = new ProxyMetrics({
    clusters: target.clusters,
    discovery: undefined,
    dataPlaneMetrics: () => Promise.resolve([]),
    dataPlanes: { workers: () => [] },
    reloadStatus: target.reloadStatus,
  });
  return createAdminApp(target, { token: undefined, metrics, series: sampler });
}

Deno.test("GET /clusters/{name}/series answers the points, and 404 JSON for an unknown cluster", async () => {
  using proxy = new FakeProxy();
  const sampler = proxy.sampler();
  const app = adminApp(proxy, sampler);
  const get = (path: string) => app.request(`http://127.0.0.1:9901${path}`);

  const empty = await get("/clusters/echo/series");
  assert.equal(empty.status, 200);
  assert.deepEqual((await empty.json()).points, [], "known but not sampled yet");

  const counts = (calls: number): WorkerCounts => ({
    calls,
    errors: calls / 10,
    durations: durations([[bucket(0.005), calls]]),
    backends: { [A]: calls / 2, [B]: calls / 2 },
  });
  await proxy.step(sampler, counts(0));
  await proxy.step(sampler, counts(50));
  const response = await get("/clusters/echo/series");
  assert.equal(response.status, 200);
  assert.match(response.headers.get("content-type") ?? "", /application\/json/);
  const body = clusterSeriesSchema.parse(await response.json());
  assert.equal(body.cluster, "echo");
  assert.equal(body.points.length, 1);
  near(body.points[0].callsPerSecond, 10, "calls/s");
  near(body.points[0].errorRate, 0.1, "error rate");
  near(body.points[0].p50Seconds, 0.0025 + 0.0025 * 0.5, "p50");
  assert.deepEqual(body.backends.map((b) => b.share), [[0.5], [0.5]]);

  const unknown = await get("/clusters/nope/series");
  assert.equal(unknown.status, 404);
  assert.match(unknown.headers.get("content-type") ?? "", /application\/json/);
  assert.deepEqual(await unknown.json(), { error: 'unknown cluster "nope"', known: ["echo"] });

  const document = await (await get("/openapi.json")).json();
  assert.ok(document.paths["/clusters/{name}/series"]?.get, "documented in /openapi.json");
});

Deno.test("admin.seriesInterval: 5s by default, 100ms to 1m, errors name the field", () => {
  const parse = (admin: Record<string, unknown>) =>
    parseConfig(
      { admin, clusters: { a: { backends: ["127.0.0.1:1"] } }, routes: [{ cluster: "a" }] },
      "test",
      { pickers: registeredPolicies() },
    );
  assert.equal(parse({}).admin.seriesInterval, 5_000);
  assert.equal(parse({ seriesInterval: "100ms" }).admin.seriesInterval, 100);
  assert.equal(parse({ seriesInterval: "1m" }).admin.seriesInterval, 60_000);
  const cases: [unknown, string][] = [
    ["50ms", "admin.seriesInterval: must be from 100ms to 1m"],
    ["2m", "admin.seriesInterval: must be from 100ms to 1m"],
    ["5 s", 'admin.seriesInterval: "5 s" is not a duration like "250ms" or "5s"'],
  ];
  for (const [value, expected] of cases) {
    assert.throws(() => parse({ seriesInterval: value }), (error: Error) => {
      assert.ok(error.message.includes(expected), `${value}: ${error.message}`);
      return true;
    });
  }
});
