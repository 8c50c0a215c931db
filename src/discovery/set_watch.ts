/**
 * One cluster's view of its Redis set: reads the set (and heartbeats, and the members'
 * weight keys), and applies the result to the cluster as a full-set diff. Reading is
 * idempotent, so any trigger (startup, keyspace event, poll, reconnect) simply asks for
 * another read.
 * @module
 */
import type { Cluster } from "../cluster/cluster.ts";
import { componentLogger } from "../log/logger.ts";
import { MAX_WEIGHT, parseWeight } from "../cluster/snapshot.ts";
import { heartbeatKey, weightKey } from "./keys.ts";
import { NewArrivals, partitionMembers } from "./members.ts";
import type { RedisConnection } from "./redis_client.ts";

const log = componentLogger("discovery");

/** Reads one cluster's set and keeps the cluster's `redis` members equal to it. */
export class SetWatch {
  /** The cluster being fed. */
  readonly cluster: Cluster;
  /** The Redis set key. */
  readonly setKey: string;
  /** Whether members need a live heartbeat key. */
  readonly requireHeartbeat: boolean;
  /** A set listing more members than this is not applied. */
  readonly maxMembers: number;
  readonly #invalid = new NewArrivals();
  readonly #withoutHeartbeat = new NewArrivals();
  readonly #invalidWeights = new NewArrivals();
  #synced = false;
  /** True while the set is over {@link SetWatch.maxMembers}, so that is logged once. */
  #overCap = false;

  /** Watches `setKey` for `cluster`. */
  constructor(cluster: Cluster, setKey: string, requireHeartbeat: boolean, maxMembers: number) {
    this.cluster = cluster;
    this.setKey = setKey;
    this.requireHeartbeat = requireHeartbeat;
    this.maxMembers = maxMembers;
  }

  /**
   * Reads the set and applies it. Throws on Redis errors, leaving membership unchanged; a set
   * over {@link SetWatch.maxMembers} leaves it unchanged too.
   */
  async sync(client: RedisConnection): Promise<void> {
    // SCARD first: an oversized set is neither transferred nor parsed on every poll.
    if (this.#overMaxMembers(await client.sCard(this.setKey))) return;
    const { valid, invalid } = partitionMembers(await client.sMembers(this.setKey));
    const live = this.requireHeartbeat ? await this.#withLiveHeartbeat(client, valid) : valid;
    for (const member of this.#invalid.update(invalid)) {
      log.warn("redis set {set} lists {member}, which is not host:port: skipped", {
        set: this.setKey,
        cluster: this.cluster.name,
        member,
      });
    }
    const liveSet = new Set(live);
    const stale = valid.filter((address) => !liveSet.has(address));
    for (const address of this.#withoutHeartbeat.update(stale)) {
      log.info("member {address} of redis set {set} has no heartbeat: ignored", {
        set: this.setKey,
        cluster: this.cluster.name,
        address,
      });
    }
    this.cluster.setWeights("redis", await this.#weights(client, live));
    this.#apply(live);
  }

  /**
   * The members' weights from their weight keys (one MGET); a missing key means weight 1,
   * and so does an invalid one, with a warning (once per address and value).
   */
  async #weights(client: RedisConnection, addresses: string[]): Promise<Map<string, number>> {
    const weights = new Map<string, number>();
    if (addresses.length === 0) return weights;
    const keys = addresses.map((address) => weightKey(this.setKey, address));
    const values = await client.mGet(keys);
    // Reported by key and value, so that a key set to another bad value is reported again.
    const invalid = new Map<string, { key: string; value: string }>();
    addresses.forEach((address, index) => {
      const value = values[index];
      if (value === null) return;
      const weight = parseWeight(value);
      if (weight === undefined) invalid.set(`${keys[index]}=${value}`, { key: keys[index], value });
      else if (weight !== 1) weights.set(address, weight);
    });
    for (const fresh of this.#invalidWeights.update([...invalid.keys()])) {
      log.warn("redis key {key} is not a weight (a whole number from 1 to {max}): weight 1", {
        set: this.setKey,
        cluster: this.cluster.name,
        ...invalid.get(fresh)!,
        max: MAX_WEIGHT,
      });
    }
    return weights;
  }

  #overMaxMembers(count: number): boolean {
    const over = count > this.maxMembers;
    if (over && !this.#overCap) {
      log.error(
        "redis set {set} lists {count} members, more than " +
          "clusters.{cluster}.discovery.maxMembers ({maxMembers}): keeping the last-known " +
          "members of {cluster} until the set shrinks or the setting is raised",
        { set: this.setKey, cluster: this.cluster.name, count, maxMembers: this.maxMembers },
      );
    } else if (!over && this.#overCap) {
      log.info("redis set {set} is back within maxMembers: {count} members", {
        set: this.setKey,
        cluster: this.cluster.name,
        count,
      });
    }
    this.#overCap = over;
    return over;
  }

  async #withLiveHeartbeat(client: RedisConnection, addresses: string[]): Promise<string[]> {
    // MGET with no keys is a Redis error, and nothing can be live anyway.
    if (addresses.length === 0) return [];
    const beats = await client.mGet(addresses.map((address) => heartbeatKey(this.setKey, address)));
    return addresses.filter((_, index) => beats[index] !== null);
  }

  #apply(live: string[]): void {
    const current = new Set(this.cluster.membersFrom("redis"));
    const added = live.filter((address) => !current.has(address));
    const listed = new Set(live);
    // Sets, not Array.includes: with thousands of members the diff would be quadratic.
    const removed = [...current].filter((address) => !listed.has(address));
    const firstSync = !this.#synced;
    this.#synced = true;
    if (added.length === 0 && removed.length === 0 && !firstSync) return;
    const fields = { set: this.setKey, cluster: this.cluster.name, added, removed };
    if (live.length === 0) {
      // Emptying is honoured because Redis really said so, but it is worth a loud line.
      log.warn("redis set {set} has no live members: cluster {cluster} has no redis members", {
        ...fields,
      });
    } else {
      log.info("redis set {set} synced: {count} members for {cluster}", {
        ...fields,
        count: live.length,
      });
    }
    this.cluster.setMembers("redis", live);
  }
}
