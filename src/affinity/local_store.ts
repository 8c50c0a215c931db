/**
 * An affinity table in this process's memory: id → owner with a TTL, bounded. With
 * `store: "local"` it is the table; with `store: "redis"` it is the proxy's cache of the Redis
 * table, and what keeps serving while Redis is unreachable.
 *
 * Entries are kept in the order they were last written (recorded, claimed or kept): when the
 * table is full the least recently written goes, which is the least recently used, since ids
 * in use are kept every `ttl / 4`.
 * @module
 */

interface Entry {
  readonly owner: string;
  /** Epoch ms (of the table's clock) when the entry expires. */
  readonly expiresAt: number;
}

/** The outcome of a claim: the owner now, and whether this claim made it so. */
export interface ClaimResult {
  /** The owner after the claim, `host:port`. */
  readonly owner: string;
  /** True when the claim replaced the expected owner (or found none). */
  readonly claimed: boolean;
}

/** A bounded in-memory id → owner map with a TTL per entry. */
export class LocalAffinityStore {
  readonly #entries = new Map<string, Entry>();
  readonly #capacity: number;
  readonly #ttlMs: number;
  readonly #now: () => number;

  /** Holds up to `capacity` ids for `ttlMs` each; `now` is the clock (tests pass their own). */
  constructor(capacity: number, ttlMs: number, now: () => number = Date.now) {
    this.#capacity = Math.max(1, capacity);
    this.#ttlMs = ttlMs;
    this.#now = now;
  }

  /** Entries held, expired ones not yet swept included. */
  get size(): number {
    return this.#entries.size;
  }

  /** The owner of `id`, unless it has none or it expired. */
  get(id: string): string | undefined {
    const entry = this.#entries.get(id);
    if (entry === undefined) return undefined;
    if (entry.expiresAt > this.#now()) return entry.owner;
    this.#entries.delete(id);
    return undefined;
  }

  /** Milliseconds until `id` expires, or `undefined` when it has no owner. */
  expiresIn(id: string): number | undefined {
    return this.get(id) === undefined ? undefined : this.#entries.get(id)!.expiresAt - this.#now();
  }

  /** Records `owner` for `id` with a fresh TTL. */
  set(id: string, owner: string): void {
    // Deleted first, so that the entry moves to the back of the eviction order.
    if (!this.#entries.delete(id) && this.#entries.size >= this.#capacity) {
      const oldest = this.#entries.keys().next();
      if (!oldest.done) this.#entries.delete(oldest.value);
    }
    this.#entries.set(id, { owner, expiresAt: this.#now() + this.#ttlMs });
  }

  /** The owner of `id`; when it has none, `proposed` is recorded and returned. */
  resolve(id: string, proposed: string): string {
    const owner = this.get(id);
    if (owner !== undefined) return owner;
    this.set(id, proposed);
    return proposed;
  }

  /**
   * Gives `id` to `next` when its owner is still `expected` (or it has none); otherwise the
   * owner someone else recorded stands.
   */
  claim(id: string, expected: string, next: string): ClaimResult {
    const owner = this.get(id);
    if (owner !== undefined && owner !== expected) return { owner, claimed: false };
    this.set(id, next);
    return { owner: next, claimed: true };
  }

  /** Gives the ids that have an owner a fresh TTL. */
  keep(ids: readonly string[]): void {
    for (const id of ids) {
      const owner = this.get(id);
      if (owner !== undefined) this.set(id, owner);
    }
  }

  /** Drops expired entries. */
  sweep(): void {
    const now = this.#now();
    for (const [id, entry] of this.#entries) {
      if (entry.expiresAt <= now) this.#entries.delete(id);
    }
  }
}
