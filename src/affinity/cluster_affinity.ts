/**
 * One cluster's affinity in one data plane: which backend owns a call's id. A call whose id
 * is cached with a usable owner goes there synchronously (a Map lookup, no message, no
 * Redis). Otherwise the call waits, as it waits for a pick and within its deadline, for the
 * control plane to resolve the id: a miss records the policy's pick unless the id has an
 * owner; a claim replaces an unusable owner with the policy's pick of another backend unless
 * someone claimed first. No answer within `lookupTimeout` (or half the call's remaining
 * deadline): the call goes by the policy's pick.
 *
 * Every `ttl / 4` the ids that had calls (open or finished) since the previous tick are sent
 * to the control plane, which extends their keys; ids unused for a whole TTL leave the cache.
 * @module
 */
import type { HashKeySource } from "../balancer/hash_policy.ts";
import type { PickInfo, PickResult, SubConn } from "../balancer/types.ts";
import type { AffinityConfig } from "../config/schema.ts";
import type { UpstreamBackend } from "../upstream/upstream_backend.ts";
import type { UpstreamCluster } from "../upstream/upstream_cluster.ts";
import { AffinityCache } from "./cache.ts";
import { parseHashKey } from "../balancer/hash_policy.ts";
import { affinityId } from "./key.ts";
import type { AffinityLink } from "./link.ts";

/** Keep ticks per TTL: a key in use is extended at least three times before it would expire. */
export const KEEP_TICKS_PER_TTL = 4;

/** One data plane's lookups of one cluster's table, by result (never reset by a reload). */
export interface AffinityCounters {
  /** Calls that went to their cached, usable owner without asking. */
  hit: number;
  /** The others: an unknown id, or an owner not usable here (most then ask the table). */
  miss: number;
}

/** A completed pick of `backend`. */
function pickOf(backend: SubConn): PickResult {
  return { kind: "complete", subConn: backend };
}

/** True when a call can go to `backend` now: a READY member, not drained. */
export function isUsable(backend: UpstreamBackend): boolean {
  return backend.effectiveState === "READY" && !backend.verdict.drained;
}

/**
 * Why `backend`, an owner that is not usable, should lose its ids: gone from the cluster,
 * drained, ejected, unhealthy, or its connections failing. `undefined` while it is merely not
 * connected yet (IDLE or CONNECTING, or no health verdict yet): a call then goes by the policy
 * and the owner keeps its ids.
 */
export function unusableReason(backend: UpstreamBackend | undefined): string | undefined {
  if (backend === undefined) return "removed";
  const verdict = backend.verdict;
  if (verdict.drained) return "drained";
  if (verdict.ejected) return "ejected";
  if (verdict.health === "unhealthy") return "unhealthy";
  if (backend.upstream.state === "TRANSIENT_FAILURE") {
    return `unreachable (${backend.upstream.lastError ?? "connection failed"})`;
  }
  return undefined;
}

/** How long a call may wait for the control plane: `lookupMs`, or half its time left. */
function waitBound(lookupMs: number, deadlineAt: number): number {
  if (deadlineAt === 0) return lookupMs;
  return Math.min(lookupMs, Math.floor((deadlineAt - Date.now()) / 2));
}

/** One cluster's affinity cache, lookups and keep reports in one data plane. */
export class ClusterAffinity {
  /** The cluster's name. */
  readonly cluster: string;
  /** The settings it was built from; a reload that changes them builds a new one. */
  readonly config: AffinityConfig;
  /** Lookups by result. */
  readonly counters: AffinityCounters;
  readonly #source: HashKeySource;
  readonly #cache: AffinityCache;
  readonly #link: AffinityLink;
  /** Calls in flight per id. */
  readonly #open = new Map<string, number>();
  /** Requests in flight per id: concurrent calls for one id ask once. */
  readonly #asking = new Map<string, Promise<string | undefined>>();
  readonly #timer: ReturnType<typeof setInterval>;

  /** Starts the cluster's cache and its keep ticks; `counters` outlive reloads. */
  constructor(
    cluster: string,
    config: AffinityConfig,
    link: AffinityLink,
    counters: AffinityCounters = { hit: 0, miss: 0 },
  ) {
    this.cluster = cluster;
    this.config = config;
    this.counters = counters;
    this.#link = link;
    // The schema checks the spelling: an unparsable key would mean a version mismatch.
    const source = parseHashKey(config.key);
    if (source === undefined) throw new Error(`invalid affinity key ${JSON.stringify(config.key)}`);
    this.#source = source;
    this.#cache = new AffinityCache(config.maxEntries);
    this.#timer = setInterval(() => this.#tick(), config.ttl / KEEP_TICKS_PER_TTL);
  }

  /** Ids cached. */
  get entries(): number {
    return this.#cache.size;
  }

  /** The affinity id of a call, or `undefined` when it has none (it goes by the policy). */
  idOf(headers: PickInfo["headers"], clientAddress: string): string | undefined {
    return affinityId(this.#source, headers, clientAddress);
  }

  /** A call for `id` started: its key is kept while the call is open. */
  opened(id: string): void {
    this.#open.set(id, (this.#open.get(id) ?? 0) + 1);
  }

  /** A call for `id` ended. */
  closed(id: string): void {
    const open = this.#open.get(id);
    if (open === undefined) return;
    if (open <= 1) this.#open.delete(id);
    else this.#open.set(id, open - 1);
  }

  /** The control plane answered: `owner` owns `id`. */
  learn(id: string, owner: string): void {
    this.#cache.set(id, owner);
  }

  /** The owner of `id` changed: the cache follows if it holds the id. */
  update(id: string, owner: string): void {
    this.#cache.update(id, owner);
  }

  /** The cached owner of `id` (tests, diagnostics). */
  cached(id: string): string | undefined {
    return this.#cache.get(id)?.owner;
  }

  /**
   * Picks for the first attempt of a call for `id`: the cached owner when usable (no
   * allocation), else a promise of the control plane's answer. A policy pick that is not
   * complete (no backend ready) is returned as is: the call waits for the policy as any.
   * `deadlineAt` is the call's deadline in epoch ms, 0 for none.
   */
  pick(
    id: string,
    cluster: UpstreamCluster,
    info: PickInfo,
    deadlineAt: number,
  ): PickResult | Promise<PickResult> {
    const entry = this.#cache.get(id);
    let owner: UpstreamBackend | undefined;
    if (entry !== undefined) {
      owner = cluster.backend(entry.owner);
      if (owner !== undefined && isUsable(owner)) {
        entry.idle = 0;
        this.counters.hit++;
        let pick = entry.pick;
        if (pick === undefined || pick.subConn !== owner) {
          entry.pick = pick = { kind: "complete", subConn: owner };
        }
        return pick;
      }
    }
    this.counters.miss++;
    const waitMs = waitBound(this.config.lookupTimeout, deadlineAt);
    if (entry === undefined) {
      const proposal = cluster.pick(info);
      if (proposal.kind !== "complete" || waitMs <= 0) return proposal;
      return this.#ask(id, cluster, proposal, waitMs, undefined, undefined);
    }
    const reason = unusableReason(owner);
    if (reason === undefined) {
      // Not connected here yet: this call goes by the policy, and the owner keeps the id.
      owner!.connect();
      return cluster.pick(info);
    }
    const proposal = owner === undefined ? cluster.pick(info) : cluster.pickAnother(owner, info);
    if (proposal.kind !== "complete" || proposal.subConn === owner || waitMs <= 0) return proposal;
    return this.#ask(id, cluster, proposal, waitMs, entry.owner, reason);
  }

  /** Stops the keep ticks; calls in flight still end through {@link closed}. */
  close(): void {
    clearInterval(this.#timer);
  }

  /**
   * Asks the control plane, and follows its answer when its owner is usable here. An answer
   * naming an owner that is unusable here too is claimed once more, for `proposal`.
   */
  async #ask(
    id: string,
    cluster: UpstreamCluster,
    proposal: PickResult & { kind: "complete" },
    waitMs: number,
    expected: string | undefined,
    reason: string | undefined,
  ): Promise<PickResult> {
    const until = Date.now() + waitMs;
    const proposed = proposal.subConn.address;
    let owner = await this.#request(id, proposed, waitMs, expected, reason);
    if (owner === undefined || owner === proposed) return proposal;
    let backend = cluster.backend(owner);
    if (backend !== undefined && isUsable(backend)) return pickOf(backend);
    const why = unusableReason(backend);
    const left = until - Date.now();
    if (why === undefined || left <= 0) return proposal;
    owner = await this.#request(id, proposed, left, owner, why);
    if (owner === undefined || owner === proposed) return proposal;
    backend = cluster.backend(owner);
    return backend !== undefined && isUsable(backend) ? pickOf(backend) : proposal;
  }

  #request(
    id: string,
    proposed: string,
    waitMs: number,
    expected: string | undefined,
    reason: string | undefined,
  ): Promise<string | undefined> {
    const asking = this.#asking.get(id);
    if (asking !== undefined) return asking;
    const answer = this.#link.resolve(this.cluster, id, proposed, waitMs, expected, reason);
    this.#asking.set(id, answer);
    answer.then(() => {
      if (this.#asking.get(id) === answer) this.#asking.delete(id);
    });
    return answer;
  }

  #tick(): void {
    for (const id of this.#open.keys()) this.#cache.touch(id);
    const ids = this.#cache.tick(KEEP_TICKS_PER_TTL);
    // Open calls whose id left the cache (evicted) keep their key all the same.
    for (const id of this.#open.keys()) {
      if (this.#cache.get(id) === undefined) ids.push(id);
    }
    if (ids.length > 0) this.#link.keep(this.cluster, ids);
  }
}
