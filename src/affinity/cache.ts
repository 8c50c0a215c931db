/**
 * A data plane's cache of one cluster's affinity table: id → owner, bounded. A hit is one Map
 * lookup and one field write; it allocates nothing, not even the pick it hands out, which is
 * made once per owner object.
 *
 * Eviction is second chance (CLOCK): when full, the oldest entry goes, unless it was used
 * since the last keep tick, in which case it moves to the back, up to
 * {@link SECOND_CHANCES} times per insertion; then the oldest left goes anyway. Entries also
 * leave once unused for a whole TTL (see {@link AffinityCache.tick}): their key has expired
 * in the store too, unless another proxy kept it, and the next call asks again.
 * @module
 */
import type { SubConn } from "../balancer/types.ts";

/** Entries moved to the back, at most, before the oldest is evicted anyway. */
export const SECOND_CHANCES = 8;

/** A completed pick of one backend, made once and handed out on every hit. */
export interface OwnerPick {
  /** Tag. */
  readonly kind: "complete";
  /** The owner. */
  readonly subConn: SubConn;
}

/** One cached id. */
export interface CacheEntry {
  /** The owner, `host:port`. */
  owner: string;
  /** Keep ticks since the last call for the id; 0 while used since the last tick. */
  idle: number;
  /** The pick last handed out for `owner`: reused while the owner is the same object. */
  pick: OwnerPick | undefined;
}

/** A bounded id → owner map. */
export class AffinityCache {
  readonly #entries = new Map<string, CacheEntry>();
  readonly #capacity: number;

  /** Holds up to `capacity` ids. */
  constructor(capacity: number) {
    this.#capacity = Math.max(1, capacity);
  }

  /** Ids cached. */
  get size(): number {
    return this.#entries.size;
  }

  /** The entry of `id`; the caller marks it used (`idle = 0`) when it serves a call. */
  get(id: string): CacheEntry | undefined {
    return this.#entries.get(id);
  }

  /** Records `owner` for `id` (a new entry counts as used), evicting one entry when full. */
  set(id: string, owner: string): void {
    const entry = this.#entries.get(id);
    if (entry !== undefined) {
      if (entry.owner !== owner) {
        entry.owner = owner;
        entry.pick = undefined;
      }
      entry.idle = 0;
      return;
    }
    if (this.#entries.size >= this.#capacity) this.#evictOne();
    this.#entries.set(id, { owner, idle: 0, pick: undefined });
  }

  /** Changes the owner of `id` only when it is cached (an update from the control plane). */
  update(id: string, owner: string): void {
    const entry = this.#entries.get(id);
    if (entry === undefined || entry.owner === owner) return;
    entry.owner = owner;
    entry.pick = undefined;
  }

  /** Marks `id` used, when cached (a call for it is still open). */
  touch(id: string): void {
    const entry = this.#entries.get(id);
    if (entry !== undefined) entry.idle = 0;
  }

  /**
   * One keep tick: returns the ids used since the previous tick, and forgets the ids unused
   * for more than `maxIdleTicks` ticks.
   */
  tick(maxIdleTicks: number): string[] {
    const used: string[] = [];
    for (const [id, entry] of this.#entries) {
      if (entry.idle === 0) used.push(id);
      if (++entry.idle > maxIdleTicks) this.#entries.delete(id);
    }
    return used;
  }

  #evictOne(): void {
    let moved = 0;
    for (const [id, entry] of this.#entries) {
      this.#entries.delete(id);
      if (entry.idle === 0 && moved < SECOND_CHANCES) {
        moved++;
        this.#entries.set(id, entry);
        continue;
      }
      return;
    }
  }
}
