/**
 * One cluster's affinity table as the control plane keeps it: an in-memory table (the table
 * itself with `store: "local"`, the proxy's cache of Redis with `store: "redis"`), and the
 * Redis table when there is one. Data planes ask it on a miss or a claim; every id they keep
 * using is kept here and in Redis.
 *
 * Redis down: every operation falls back on memory. Known ids keep their owners, a new id is
 * recorded here with the data plane's pick, a claim moves the id here; once Redis is back the
 * next keep (every `ttl / 4` for ids in use) reconciles: Redis's owner wins where it has one,
 * and ours is recorded where it has none.
 * @module
 */
import type { AffinityConfig } from "../config/schema.ts";
import { componentLogger } from "../log/logger.ts";
import { affinityChannel, parseAffinityMessage } from "./keys.ts";
import { type ClaimResult, LocalAffinityStore } from "./local_store.ts";
import type { AffinityRedis } from "./redis_connection.ts";
import { RedisAffinityStore } from "./redis_store.ts";

const log = componentLogger("affinity");

/** One cluster's table as `/clusters` and `/metrics` show it. */
export interface AffinityStatus {
  /** The cluster's name. */
  readonly cluster: string;
  /** Where the table lives. */
  readonly store: "local" | "redis";
  /** Where a call's id comes from (`header:<name>` or `client_address`). */
  readonly key: string;
  /** How long an id unused by any call keeps its owner. */
  readonly ttlMs: number;
  /** Ids this proxy's control plane holds (with Redis: its cache of the table). */
  readonly entries: number;
  /** Claims this proxy made that moved an id (not those another proxy made first). */
  readonly claims: number;
}

/** The owner of one id, as `GET /clusters/{name}/affinity?id=` answers. */
export interface AffinityLookup {
  /** The cluster's name. */
  readonly cluster: string;
  /** The id. */
  readonly id: string;
  /** Its owner, `host:port`, or `null` when it has none. */
  readonly owner: string | null;
  /** Where the table lives. */
  readonly store: "local" | "redis";
  /** Milliseconds until the owner expires unless a call keeps it; `null` without an owner. */
  readonly ttlMs: number | null;
  /** Where the answer was read: Redis, or this proxy's memory (local store, Redis down). */
  readonly source: "redis" | "memory";
}

/** Tells the data planes that an id's owner changed. */
export type OwnerChanged = (cluster: string, id: string, owner: string) => void;

/** One cluster's table in the control plane. */
export class AffinityTable {
  /** The cluster's name. */
  readonly cluster: string;
  /** Its settings. */
  readonly config: AffinityConfig;
  /** The connections it was built over (`undefined` for `store: "local"`). */
  readonly redis: AffinityRedis | undefined;
  readonly #memory: LocalAffinityStore;
  readonly #store: RedisAffinityStore | undefined;
  readonly #changed: OwnerChanged;
  readonly #sweeper: ReturnType<typeof setInterval>;
  /** Claims that moved an id; kept by the owner across rebuilds, so the counter never drops. */
  readonly #counts: { claims: number };

  /**
   * The table of `cluster`; with `redis` (for `store: "redis"`) it follows the cluster's
   * channel. `changed` hears of every owner that changed; `counts` counts its claims.
   */
  constructor(
    cluster: string,
    config: AffinityConfig,
    redis: AffinityRedis | undefined,
    changed: OwnerChanged,
    counts: { claims: number } = { claims: 0 },
  ) {
    this.cluster = cluster;
    this.#counts = counts;
    this.config = config;
    this.redis = config.store === "redis" ? redis : undefined;
    this.#changed = changed;
    this.#memory = new LocalAffinityStore(config.maxEntries, config.ttl);
    if (this.redis !== undefined) {
      this.#store = new RedisAffinityStore(cluster, config.ttl, this.redis.client);
      this.redis.subscribe(affinityChannel(cluster), (message) => this.#published(message));
    }
    this.#sweeper = setInterval(() => this.#memory.sweep(), config.ttl);
  }

  /** Counts for `/clusters` and `/metrics`. */
  status(): AffinityStatus {
    return {
      cluster: this.cluster,
      store: this.config.store,
      key: this.config.key,
      ttlMs: this.config.ttl,
      entries: this.#memory.size,
      claims: this.#counts.claims,
    };
  }

  /**
   * The owner of `id`: from memory when known (no Redis round trip), else from Redis, which
   * records `proposed` unless the id has an owner there; from memory, recording `proposed`,
   * when Redis cannot answer.
   */
  async resolve(id: string, proposed: string): Promise<string> {
    const known = this.#memory.get(id);
    if (known !== undefined) return known;
    if (this.#store !== undefined) {
      try {
        const owner = await this.#store.resolve(id, proposed);
        this.#memory.set(id, owner);
        return owner;
      } catch (error) {
        this.redis!.reportError(error);
      }
    }
    return this.#memory.resolve(id, proposed);
  }

  /**
   * A data plane found `expected`, the owner of `id`, unusable (`reason`) and proposes
   * `next`: the compare-and-set in Redis (or memory) decides, so two proxies claiming at once
   * agree. Returns the owner now; a claim that moved the id is logged and counted.
   */
  async claim(id: string, expected: string, next: string, reason: string): Promise<string> {
    const known = this.#memory.get(id);
    // Moved already (another worker's claim, or another proxy's through pub/sub).
    if (known !== undefined && known !== expected) return known;
    let result: ClaimResult | undefined;
    if (this.#store !== undefined) {
      try {
        result = await this.#store.claim(id, expected, next);
        this.#memory.set(id, result.owner);
      } catch (error) {
        this.redis!.reportError(error);
      }
    }
    result ??= this.#memory.claim(id, expected, next);
    if (result.claimed) {
      this.#counts.claims++;
      log.info("affinity: {cluster} id {id} claimed from {from} ({reason}) for {to}", {
        cluster: this.cluster,
        id,
        from: expected,
        reason,
        to: result.owner,
      });
    }
    if (result.owner !== known) this.#changed(this.cluster, id, result.owner);
    return result.owner;
  }

  /**
   * Keeps ids that calls used: a fresh TTL here and in Redis, where an id whose key expired
   * is recorded again with the owner known here. An owner Redis names that differs from ours
   * (a message lost while the subscriber was away) replaces ours.
   */
  async keep(ids: readonly string[]): Promise<void> {
    this.#memory.keep(ids);
    if (this.#store === undefined) return;
    let owners: (string | undefined)[];
    try {
      owners = await this.#store.keep(ids, ids.map((id) => this.#memory.get(id)));
    } catch (error) {
      this.redis!.reportError(error);
      return;
    }
    ids.forEach((id, i) => {
      const owner = owners[i];
      if (owner === undefined) return;
      const known = this.#memory.get(id);
      this.#memory.set(id, owner);
      if (known !== owner) this.#changed(this.cluster, id, owner);
    });
  }

  /** The owner of `id`: Redis's, or this proxy's when the store is local or Redis is down. */
  async lookup(id: string): Promise<AffinityLookup> {
    const { cluster } = this;
    const store = this.config.store;
    if (this.#store !== undefined) {
      try {
        const found = await this.#store.lookup(id);
        return {
          cluster,
          id,
          owner: found?.owner ?? null,
          store,
          ttlMs: found?.ttlMs ?? null,
          source: "redis",
        };
      } catch (error) {
        this.redis!.reportError(error);
      }
    }
    const owner = this.#memory.get(id) ?? null;
    const ttlMs = owner === null ? null : Math.max(0, this.#memory.expiresIn(id) ?? 0);
    return { cluster, id, owner, store, ttlMs, source: "memory" };
  }

  /** Stops following the channel and sweeping. */
  close(): void {
    clearInterval(this.#sweeper);
    this.redis?.unsubscribe(affinityChannel(this.cluster));
  }

  /** Another proxy (or this one) recorded or claimed an id: a cached id follows. */
  #published(text: string): void {
    const message = parseAffinityMessage(text);
    if (message === undefined) return;
    const { id, owner } = message;
    const known = this.#memory.get(id);
    // Ids nobody here asked about stay out: every proxy would otherwise cache every id.
    if (known === undefined || known === owner) return;
    this.#memory.set(id, owner);
    this.#changed(this.cluster, id, owner);
  }
}
