/**
 * One cluster's affinity table in Redis (`store: "redis"`): the key layout of `keys.ts`, the
 * scripts of `redis_scripts.ts`. Every method is one round trip (keeps: one per
 * {@link KEEP_BATCH} ids) and rejects when Redis cannot answer; the caller falls back on its
 * own memory.
 * @module
 */
import type { RedisConnection } from "../discovery/redis_client.ts";
import { affinityChannel, affinityKey, affinityMessage } from "./keys.ts";
import type { ClaimResult } from "./local_store.ts";
import { CLAIM_SCRIPT, KEEP_SCRIPT, LOOKUP_SCRIPT, RESOLVE_SCRIPT } from "./redis_scripts.ts";

/** Ids per keep script: a long script would hold up every other client of the Redis. */
export const KEEP_BATCH = 500;

/** Thrown when the client is not connected: commands would fail anyway, without a cause. */
export class AffinityRedisOffline extends Error {
  /** Names the state. */
  constructor() {
    super("redis not connected");
    this.name = "AffinityRedisOffline";
  }
}

/** An owner as Redis holds it, and its remaining TTL. */
export interface StoredOwner {
  /** `host:port`. */
  readonly owner: string;
  /** Milliseconds until the key expires. */
  readonly ttlMs: number;
}

/** One cluster's table in Redis. */
export class RedisAffinityStore {
  readonly #cluster: string;
  readonly #ttl: string;
  readonly #channel: string;
  readonly #client: RedisConnection;

  /** The table of `cluster`, whose keys live `ttlMs`, over `client`. */
  constructor(cluster: string, ttlMs: number, client: RedisConnection) {
    this.#cluster = cluster;
    this.#ttl = String(ttlMs);
    this.#channel = affinityChannel(cluster);
    this.#client = client;
  }

  /** The owner of `id`; when it has none, `proposed` is recorded (SET NX PX) and published. */
  async resolve(id: string, proposed: string): Promise<string> {
    const owner = await this.#eval(RESOLVE_SCRIPT, [affinityKey(this.#cluster, id)], [
      proposed,
      this.#ttl,
      this.#channel,
      affinityMessage(proposed, id),
    ]);
    // A key that expired between the SET and the GET of another client's script cannot
    // happen inside one script; null would mean someone deleted it at once: ours then.
    return typeof owner === "string" ? owner : proposed;
  }

  /** Gives `id` to `next` when its owner is still `expected` or it has none (CAS script). */
  async claim(id: string, expected: string, next: string): Promise<ClaimResult> {
    const reply = await this.#eval(CLAIM_SCRIPT, [affinityKey(this.#cluster, id)], [
      expected,
      next,
      this.#ttl,
      this.#channel,
      affinityMessage(next, id),
    ]) as [string, number];
    return { owner: String(reply[0]), claimed: Number(reply[1]) === 1 };
  }

  /**
   * Gives the keys of `ids` a fresh TTL; a key that is gone is recorded again with the owner
   * in `known` (same index; `undefined` for none). Returns each id's owner now.
   */
  async keep(
    ids: readonly string[],
    known: readonly (string | undefined)[],
  ): Promise<(string | undefined)[]> {
    const owners: (string | undefined)[] = [];
    for (let start = 0; start < ids.length; start += KEEP_BATCH) {
      const batch = ids.slice(start, start + KEEP_BATCH);
      const args = [this.#ttl, this.#channel];
      batch.forEach((id, i) => {
        const owner = known[start + i] ?? "";
        args.push(owner, owner === "" ? "" : affinityMessage(owner, id));
      });
      const keys = batch.map((id) => affinityKey(this.#cluster, id));
      const reply = await this.#eval(KEEP_SCRIPT, keys, args) as (string | null)[];
      for (let i = 0; i < batch.length; i++) {
        const owner = reply[i];
        owners.push(typeof owner === "string" ? owner : undefined);
      }
    }
    return owners;
  }

  /** The owner of `id` and its TTL, or `undefined` when it has none. */
  async lookup(id: string): Promise<StoredOwner | undefined> {
    const [owner, ttlMs] = await this.#eval(
      LOOKUP_SCRIPT,
      [affinityKey(this.#cluster, id)],
      [],
    ) as [
      string | null,
      number,
    ];
    return typeof owner === "string" ? { owner, ttlMs: Number(ttlMs) } : undefined;
  }

  #eval(script: string, keys: string[], args: string[]): Promise<unknown> {
    if (!this.#client.isReady) return Promise.reject(new AffinityRedisOffline());
    return this.#client.eval(script, keys, args);
  }
}
