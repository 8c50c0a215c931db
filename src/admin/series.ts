/**
 * The recent history the status page draws: a sampler that, every interval, takes one stats
 * round from the data planes plus the control plane's verdicts on each backend, and keeps per
 * cluster the last {@link SERIES_CAPACITY} points in fixed-size rings (15 minutes at the
 * default 5 s). Nothing runs on the data path: the counters it reads are the ones `/clusters`
 * and `/metrics` already read.
 *
 * Rates come from the deltas of cumulative counters between two samples, per worker, so one
 * worker's restart (its counters start again from zero) loses nothing of the others: as
 * Prometheus' `rate()` does, a counter that went down counts from zero. Latency percentiles
 * come from the deltas of the duration buckets, interpolated inside a bucket as
 * `histogram_quantile` does.
 * @module
 */
import type { Cluster } from "../cluster/cluster.ts";
import {
  type ClusterStats,
  type DataPlaneStats,
  DURATION_BUCKETS_SECONDS,
} from "../dataplane/stats.ts";
import { componentLogger } from "../log/logger.ts";
import { clusterView } from "./cluster_view.ts";
import type { BackendView, ClusterSeriesView, SeriesBackendState } from "./schemas.ts";
import type { AdminTarget } from "./target.ts";

const log = componentLogger("admin");

/** Points kept per cluster and backend: 15 minutes at the default interval. */
export const SERIES_CAPACITY = 180;

/** The default sampling interval (`admin.seriesInterval`). */
export const DEFAULT_SERIES_INTERVAL_MS = 5_000;

/** The percentiles each point carries. */
const P50 = 0.5;
const P99 = 0.99;

/**
 * A fixed-capacity ring buffer: past its capacity, each push overwrites the oldest item, so
 * its memory never grows after it fills.
 */
export class Ring<T> {
  readonly #items: (T | undefined)[];
  #start = 0;
  #length = 0;

  /** An empty ring holding up to `capacity` items. */
  constructor(capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) {
      throw new RangeError(`ring capacity must be a positive integer, not ${capacity}`);
    }
    this.#items = new Array(capacity);
  }

  /** Items held now. */
  get length(): number {
    return this.#length;
  }

  /** The most items it holds. */
  get capacity(): number {
    return this.#items.length;
  }

  /** Appends `item`, dropping the oldest when full. */
  push(item: T): void {
    const capacity = this.#items.length;
    this.#items[(this.#start + this.#length) % capacity] = item;
    if (this.#length < capacity) this.#length++;
    else this.#start = (this.#start + 1) % capacity;
  }

  /** The items, oldest first. */
  toArray(): T[] {
    const out: T[] = [];
    for (let i = 0; i < this.#length; i++) {
      out.push(this.#items[(this.#start + i) % this.#items.length] as T);
    }
    return out;
  }
}

/**
 * The `q` quantile (0 < q ≤ 1) of observations counted per bucket, as Prometheus'
 * `histogram_quantile` estimates it: find the bucket holding rank `q × total` and interpolate
 * linearly between its bounds (the first bucket starts at 0). `counts` are per bucket, not
 * cumulative, with one more entry than `bounds`: the bucket past the last bound, for which
 * the last bound is answered since the data say nothing more. Null without observations.
 */
export function histogramQuantile(
  q: number,
  counts: readonly number[],
  bounds: readonly number[] = DURATION_BUCKETS_SECONDS,
): number | null {
  const total = counts.reduce((sum, count) => sum + count, 0);
  if (total <= 0) return null;
  const rank = q * total;
  let below = 0;
  for (let i = 0; i < counts.length; i++) {
    const count = counts[i];
    if (count > 0 && below + count >= rank) {
      if (i >= bounds.length) return bounds[bounds.length - 1];
      const lower = i === 0 ? 0 : bounds[i - 1];
      return lower + (bounds[i] - lower) * ((rank - below) / count);
    }
    below += count;
  }
  // Only reached when float rounding left rank a hair above the total.
  return bounds[bounds.length - 1];
}

/** What the sampler reads: the data planes' counters and the control plane's clusters. */
export type SeriesTarget = Pick<AdminTarget, "clusters" | "dataPlaneStats">;

/** How a {@link SeriesSampler} runs. */
export interface SeriesSamplerOptions {
  /** Time between samples, in ms; {@link DEFAULT_SERIES_INTERVAL_MS} by default. */
  readonly intervalMs?: number;
  /** Points kept per cluster; {@link SERIES_CAPACITY} by default. */
  readonly capacity?: number;
  /**
   * A clock in ms, for tests: it then gives both the timestamps and the elapsed time. By
   * default timestamps come from `Date.now()` and elapsed time from the monotonic clock, so a
   * wall-clock step cannot distort a rate.
   */
  readonly clock?: () => number;
}

/** What the page and the API need about a cluster, at one sample. */
interface ClusterPoint {
  readonly at: number;
  readonly calls: number;
  readonly errors: number;
  readonly callsPerSecond: number;
  readonly errorRate: number | null;
  readonly p50Seconds: number | null;
  readonly p99Seconds: number | null;
}

/** One backend at one sample. */
interface BackendPoint {
  readonly calls: number;
  readonly share: number | null;
  readonly state: SeriesBackendState;
}

/** A cluster's rings. Backends live here too, so a cluster that goes takes them along. */
interface ClusterRecord {
  readonly points: Ring<ClusterPoint>;
  readonly backends: Map<string, Ring<BackendPoint>>;
}

/** One worker's cumulative counters for one cluster, as last sampled. */
interface Counted {
  readonly calls: number;
  readonly errors: number;
  readonly durations: readonly number[];
  readonly backends: ReadonlyMap<string, number>;
}

/** An interval's counts for one cluster, summed over workers. */
interface Deltas {
  calls: number;
  errors: number;
  readonly durations: number[];
  readonly backends: Map<string, number>;
}

/** Periodic sampling of every cluster into rings; see the module comment. */
export class SeriesSampler {
  /** Time between samples, in ms. */
  readonly intervalMs: number;
  /** Points kept per cluster and backend. */
  readonly capacity: number;
  readonly #target: SeriesTarget;
  readonly #wall: () => number;
  readonly #monotonic: () => number;
  readonly #records = new Map<string, ClusterRecord>();
  /** Worker → cluster → counters, from the previous sample only (rebuilt every time). */
  #baseline: Map<number, Map<string, Counted>> | undefined;
  #lastSampledAt = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #inFlight: Promise<void> | undefined;
  #running = false;

  /** A sampler of `target`; call {@link start} to sample on a timer. */
  constructor(target: SeriesTarget, options: SeriesSamplerOptions = {}) {
    this.#target = target;
    this.intervalMs = options.intervalMs ?? DEFAULT_SERIES_INTERVAL_MS;
    this.capacity = options.capacity ?? SERIES_CAPACITY;
    // Checked here rather than at the first sample, which would fail inside a timer.
    if (!(this.intervalMs > 0)) {
      throw new RangeError(`interval must be > 0, not ${this.intervalMs}`);
    }
    if (!Number.isInteger(this.capacity) || this.capacity < 1) {
      throw new RangeError(`capacity must be a positive integer, not ${this.capacity}`);
    }
    this.#wall = options.clock ?? Date.now;
    this.#monotonic = options.clock ?? (() => performance.now());
  }

  /** True while a sample is due or in progress: between {@link start} and {@link stop}. */
  get scheduled(): boolean {
    return this.#timer !== undefined || this.#inFlight !== undefined;
  }

  /** Takes a first sample (the baseline) now, then one every interval until {@link stop}. */
  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#tick();
  }

  /** Stops sampling and waits for a sample in progress; the rings are kept. */
  async stop(): Promise<void> {
    this.#running = false;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#inFlight;
  }

  #tick = (): void => {
    this.#timer = undefined;
    const startedAt = this.#monotonic();
    this.#inFlight = this.sample()
      .catch((error) => log.warn("series sample failed: {error}", { error: String(error) }))
      .finally(() => {
        this.#inFlight = undefined;
        if (!this.#running) return;
        // Keeps the cadence: the stats round's own time comes off the wait.
        const spent = this.#monotonic() - startedAt;
        this.#timer = setTimeout(this.#tick, Math.max(0, this.intervalMs - spent));
      });
  };

  /**
   * Takes one sample now: one stats round, then a point per cluster (none for the first
   * sample, which only sets the baseline). Tests call it directly instead of {@link start}.
   */
  async sample(): Promise<void> {
    const planes = await this.#target.dataPlaneStats();
    const at = this.#wall();
    const now = this.#monotonic();
    const previous = this.#baseline;
    const elapsedSeconds = (now - this.#lastSampledAt) / 1000;
    this.#baseline = baselineOf(planes);
    this.#lastSampledAt = now;
    const clusters = this.#target.clusters;
    for (const name of this.#records.keys()) {
      if (!clusters.has(name)) this.#records.delete(name);
    }
    // Without a baseline (the first sample) or with time standing still there is no rate.
    if (previous === undefined || !(elapsedSeconds > 0)) return;
    for (const cluster of clusters.values()) {
      this.#record(cluster, planes, deltasOf(cluster.name, planes, previous), at, elapsedSeconds);
    }
  }

  #record(
    cluster: Cluster,
    planes: readonly DataPlaneStats[],
    deltas: Deltas,
    at: number,
    elapsedSeconds: number,
  ): void {
    let record = this.#records.get(cluster.name);
    if (!record) {
      record = { points: new Ring(this.capacity), backends: new Map() };
      this.#records.set(cluster.name, record);
    }
    record.points.push({
      at,
      calls: deltas.calls,
      errors: deltas.errors,
      callsPerSecond: deltas.calls / elapsedSeconds,
      errorRate: deltas.calls > 0 ? Math.min(1, deltas.errors / deltas.calls) : null,
      p50Seconds: histogramQuantile(P50, deltas.durations),
      p99Seconds: histogramQuantile(P99, deltas.durations),
    });
    const members = clusterView(cluster, planes).backends;
    const backendCalls = members.reduce((sum, b) => sum + (deltas.backends.get(b.address) ?? 0), 0);
    const present = new Set<string>();
    for (const backend of members) {
      present.add(backend.address);
      let ring = record.backends.get(backend.address);
      if (!ring) {
        ring = new Ring(this.capacity);
        record.backends.set(backend.address, ring);
      }
      const calls = deltas.backends.get(backend.address) ?? 0;
      ring.push({
        calls,
        share: backendCalls > 0 ? calls / backendCalls : null,
        state: seriesState(backend),
      });
    }
    for (const address of record.backends.keys()) {
      if (!present.has(address)) record.backends.delete(address);
    }
  }

  /**
   * The series of cluster `name`, oldest point first; `undefined` when the control plane has
   * no such cluster. A known cluster not sampled yet has no points.
   */
  series(name: string): ClusterSeriesView | undefined {
    const cluster = this.#target.clusters.get(name);
    if (!cluster) return undefined;
    const record = this.#records.get(name);
    const points = record?.points.toArray() ?? [];
    // Every sample records every member, and a member that leaves is dropped, so a backend's
    // ring is always the newest part of its cluster's: pad the front to line them up.
    const backends = [...(record?.backends ?? [])].map(([address, ring]) => {
      const own = ring.toArray();
      const pad: null[] = new Array(points.length - own.length).fill(null);
      return {
        address,
        calls: [...pad, ...own.map((point) => point.calls)],
        share: [...pad, ...own.map((point) => point.share)],
        state: [...pad, ...own.map((point) => point.state)],
      };
    });
    return {
      cluster: name,
      intervalMs: this.intervalMs,
      capacity: this.capacity,
      latencyBucketsSeconds: [...DURATION_BUCKETS_SECONDS],
      points: points.map((point) => ({ ...point, at: new Date(point.at).toISOString() })),
      backends,
    };
  }
}

/**
 * A backend's state in one word, most decisive verdict first: an operator's drain, then
 * passive ejection, then a failed active health check, else what the balancer sees (the
 * connectivity enum of `/clusters`).
 */
export function seriesState(backend: BackendView): SeriesBackendState {
  if (backend.drained) return "DRAINED";
  if (backend.ejected) return "EJECTED";
  if (backend.health === "unhealthy") return "UNHEALTHY";
  return backend.state;
}

function baselineOf(planes: readonly DataPlaneStats[]): Map<number, Map<string, Counted>> {
  return new Map(planes.map((plane) => [
    plane.worker,
    new Map(plane.clusters.map((stats) => [stats.name, counted(stats)])),
  ]));
}

function counted(stats: ClusterStats): Counted {
  return {
    calls: stats.calls,
    errors: stats.errors,
    durations: stats.durations,
    backends: new Map(stats.backends.map((backend) => [backend.address, backend.calls])),
  };
}

/** `now - before`, or `now` when the counter went down: it restarted from zero. */
function counterDelta(now: number, before: number): number {
  return now >= before ? now - before : now;
}

/**
 * What cluster `name` counted since the previous sample, over workers. A worker (or cluster
 * in a worker) without a baseline adds nothing this time: it may have been counting for long
 * (a worker that did not answer last time), so all of it cannot be put on this interval.
 */
function deltasOf(
  name: string,
  planes: readonly DataPlaneStats[],
  previous: ReadonlyMap<number, ReadonlyMap<string, Counted>>,
): Deltas {
  const deltas: Deltas = {
    calls: 0,
    errors: 0,
    durations: new Array(DURATION_BUCKETS_SECONDS.length + 1).fill(0),
    backends: new Map(),
  };
  for (const plane of planes) {
    const stats = plane.clusters.find((cluster) => cluster.name === name);
    const before = previous.get(plane.worker)?.get(name);
    if (!stats || !before) continue;
    // One counter going down means the worker restarted: all of its counters did.
    const reset = stats.calls < before.calls || stats.errors < before.errors ||
      stats.durations.some((count, i) => count < (before.durations[i] ?? 0));
    deltas.calls += reset ? stats.calls : stats.calls - before.calls;
    deltas.errors += reset ? stats.errors : stats.errors - before.errors;
    stats.durations.forEach((count, i) => {
      deltas.durations[i] += reset ? count : count - (before.durations[i] ?? 0);
    });
    for (const backend of stats.backends) {
      // A member new to the worker counts from zero, from when it joined.
      const was = reset ? 0 : before.backends.get(backend.address) ?? 0;
      const delta = counterDelta(backend.calls, was);
      deltas.backends.set(backend.address, (deltas.backends.get(backend.address) ?? 0) + delta);
    }
  }
  return deltas;
}
