/**
 * Scale-out rebalancing of long-lived streams (`clusters.NAME.rebalance`). A stream stays on
 * the backend it was placed on for its whole life, so a backend that joins a cluster of long
 * streams gets only the new ones: the cluster stays unbalanced for as long as the streams
 * live. Every `interval`, each data plane compares its READY backends' open streams with their
 * fair shares and, while one is below (1 − tolerance) × its share or above (1 + tolerance) ×
 * it, sheds streams from the busiest: oldest first, only those older than `minStreamAge`,
 * never more than `⌈maxShare × streams⌉` per interval, and never more than it takes to bring
 * them down to their share. A shed stream ends with UNAVAILABLE, which
 * gRPC clients retry: they reconnect through the picker, which favours the emptier backends.
 *
 * It is bounded by construction: streams reconnected after a shed are young, so they are not
 * shed again before `minStreamAge`; and a balanced cluster costs one pass over its backends
 * per interval. Each data plane rebalances its own streams against its own counts, so the
 * bounds hold per worker. One timer entry per cluster with `rebalance` on, none otherwise.
 * @module
 */
import { REBALANCING_PICKERS } from "../balancer/types.ts";
import type { RebalanceConfig } from "../config/schema.ts";
import { componentLogger } from "../log/logger.ts";
import { type TimerEntry, timers } from "../timer/timer_queue.ts";
import type { TrackedStream, UpstreamBackend } from "./upstream_backend.ts";

const log = componentLogger("rebalance");

/** One READY backend as {@link shedPlan} sees it. */
export interface BackendLoad {
  /** Streams open on it. */
  readonly streams: number;
  /** Of those, streams old enough to be shed (older than `minStreamAge`). */
  readonly old: number;
  /** Its load-balancing weight: fair shares are proportional to it. */
  readonly weight: number;
}

/** What {@link shedPlan} needs of the `rebalance` settings. */
export interface ShedSettings {
  /** The share of all streams shed at most per interval, in (0, 0.5]. */
  readonly maxShare: number;
  /** How unbalanced before acting, in [0, 1]. */
  readonly tolerance: number;
}

/**
 * How many streams to shed from each backend, in the order of `loads` (all zero when the
 * cluster is balanced enough). A pure function of the loads, so that the decision can be
 * tested on its own.
 *
 * Fair share: `streams × weight / Σ weight`. Nothing is shed unless some backend is below
 * (1 − tolerance) × its share (a new one, typically) or above (1 + tolerance) × it. Then
 * backends above their share give streams, no more than they have old ones, down to their
 * share rounded up, or rounded down while some backend is below its own rounded down; the
 * total is at most ⌈maxShare × streams⌉ and at most what the backends below their share lack
 * (rounded down). Streams are taken one at a time from the busiest giver relative to its
 * weight, so the plan levels the busiest first.
 */
export function shedPlan(loads: readonly BackendLoad[], settings: ShedSettings): number[] {
  const plan = loads.map(() => 0);
  if (loads.length < 2) return plan;
  let total = 0;
  let weights = 0;
  for (const load of loads) {
    total += load.streams;
    weights += load.weight;
  }
  if (total === 0 || weights <= 0) return plan;
  const { maxShare, tolerance } = settings;
  // Shares in whole streams; the epsilon keeps a share computed as 6.9999… from rounding down
  // to 6, or 7.0000…1 up to 8.
  const fair = loads.map((load) => total * load.weight / weights);
  const floor = fair.map((share) => Math.floor(share + 1e-9));
  const ceil = fair.map((share) => Math.ceil(share - 1e-9));
  let lacking = 0;
  let unbalanced = false;
  let belowFloor = false;
  loads.forEach((load, i) => {
    const share = fair[i];
    if (load.streams < (1 - tolerance) * share || load.streams > (1 + tolerance) * share) {
      unbalanced = true;
    }
    if (load.streams < share) lacking += share - load.streams;
    if (load.streams < floor[i]) belowFloor = true;
  });
  if (!unbalanced) return plan;
  // Givers come down to their share rounded up; while some backend is below its share rounded
  // down, to that. Every backend between the two roundings is then a state that sheds
  // nothing, whatever the tolerance, so shedding settles rather than shuffling streams round.
  const room = loads.map((load, i) =>
    Math.max(0, Math.min(load.old, load.streams - (belowFloor ? floor[i] : ceil[i])))
  );
  // A small epsilon: a share computed as 7.4999… must still lack 7.
  let budget = Math.min(Math.ceil(maxShare * total), Math.floor(lacking + 1e-9));
  while (budget > 0) {
    let busiest = -1;
    let busiestLoad = -Infinity;
    for (let i = 0; i < loads.length; i++) {
      if (room[i] === 0) continue;
      const load = (loads[i].streams - plan[i]) / loads[i].weight;
      if (load > busiestLoad) {
        busiest = i;
        busiestLoad = load;
      }
    }
    if (busiest < 0) break;
    plan[busiest]++;
    room[busiest]--;
    budget--;
  }
  return plan;
}

/** What a {@link Rebalancer} reads of its cluster on every pass. */
export interface RebalancedCluster {
  /** The cluster's name, for logs and messages. */
  readonly name: string;
  /** The current picker's name: only pickers that spread streams are rebalanced. */
  readonly policy: string;
  /** The members, in membership order. */
  backends(): UpstreamBackend[];
  /** Counts what was shed (`switchyard_rebalance_shed_total`). */
  readonly counters: { rebalanceShed: number };
}

/**
 * One cluster's periodic rebalancing in one data plane: a single entry in the data plane's
 * timer queue, re-armed every `interval` until {@link stop}.
 */
export class Rebalancer implements TimerEntry {
  /** See {@link TimerEntry}. */
  timerAt = 0;
  /** See {@link TimerEntry}. */
  timerIndex = -1;
  readonly #cluster: RebalancedCluster;
  #settings: RebalanceConfig;
  #stopped = false;

  /** Starts rebalancing `cluster` with `settings`; the first pass is one interval away. */
  constructor(cluster: RebalancedCluster, settings: RebalanceConfig) {
    this.#cluster = cluster;
    this.#settings = settings;
    timers.schedule(this, Date.now() + settings.interval);
  }

  /** Takes reloaded settings; a new interval applies from the next pass. */
  update(settings: RebalanceConfig): void {
    const before = this.#settings.interval;
    this.#settings = settings;
    if (settings.interval !== before && !this.#stopped) {
      timers.schedule(this, Date.now() + settings.interval);
    }
  }

  /** Stops for good. */
  stop(): void {
    this.#stopped = true;
    timers.cancel(this);
  }

  /** See {@link TimerEntry.onTimer}: one pass, then the next one is armed. */
  onTimer(now: number): void {
    if (this.#stopped) return;
    timers.schedule(this, now + this.#settings.interval);
    try {
      this.rebalance();
    } catch (error) {
      log.error("cluster {cluster}: rebalancing failed: {error}", {
        cluster: this.#cluster.name,
        error: String((error as Error)?.stack ?? error),
      });
    }
  }

  /**
   * One pass: sheds what {@link shedPlan} says, oldest streams first. Returns how many streams
   * it shed. Public for tests; the timer calls it every interval.
   */
  rebalance(): number {
    const cluster = this.#cluster;
    if (!REBALANCING_PICKERS.includes(cluster.policy)) return 0;
    const settings = this.#settings;
    const ready = cluster.backends().filter((backend) =>
      backend.effectiveState === "READY" && !backend.verdict.drained
    );
    if (ready.length < 2) return 0;
    const now = performance.now();
    // Only weighted_round_robin places by weight: under the others the balanced state is
    // equal counts, and weighted shares would shed streams that come straight back.
    const weighted = cluster.policy === "weighted_round_robin";
    const weightOf = (backend: UpstreamBackend) => weighted ? backend.weight : 1;
    let total = 0;
    let weights = 0;
    for (const backend of ready) {
      total += backend.trackedStreams;
      weights += weightOf(backend);
    }
    // No backend gives more than the whole budget: counting old streams past it is no use.
    const cap = Math.ceil(settings.maxShare * total);
    const loads = ready.map((backend): BackendLoad => ({
      streams: backend.trackedStreams,
      old: countOld(backend, now - settings.minStreamAge, cap),
      weight: weightOf(backend),
    }));
    const plan = shedPlan(loads, settings);
    let shed = 0;
    const victims: TrackedStream[] = [];
    const from: string[] = [];
    for (let i = 0; i < ready.length; i++) {
      if (plan[i] === 0) continue;
      const backend = ready[i];
      const fair = total * weightOf(backend) / weights;
      const message = `cluster ${cluster.name}: stream shed by rebalance from backend ` +
        `${backend.address} (${backend.trackedStreams} streams, fair share ` +
        `${Math.round(fair * 10) / 10}); reconnect`;
      victims.length = 0;
      let stream = backend.oldestStream;
      for (let k = 0; k < plan[i] && stream !== undefined; k++, stream = stream.streamNext) {
        victims.push(stream);
      }
      // Collected first: shedding a stream unlinks it from the list being walked.
      for (const victim of victims) victim.shed(message);
      shed += victims.length;
      from.push(`${backend.address}: ${victims.length} of ${loads[i].streams}`);
    }
    if (shed > 0) {
      cluster.counters.rebalanceShed += shed;
      log.info(
        "cluster {cluster}: rebalance shed {shed} of {total} streams ({from}) toward fair " +
          "shares",
        { cluster: cluster.name, shed, total, from: from.join(", ") },
      );
    }
    return shed;
  }
}

/** Streams of `backend` opened at or before `before` (`performance.now()`), up to `cap`. */
function countOld(backend: UpstreamBackend, before: number, cap: number): number {
  let old = 0;
  for (
    let stream = backend.oldestStream;
    stream !== undefined && old < cap && stream.streamOpenedAt <= before;
    stream = stream.streamNext
  ) old++;
  return old;
}
