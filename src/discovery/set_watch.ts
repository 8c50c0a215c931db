/**
 * One cluster's view of its Redis set: reads the set (and heartbeats), and applies the
 * result to the cluster as a full-set diff. Reading is idempotent, so any trigger (startup,
 * keyspace event, poll, reconnect) simply asks for another read.
 * @module
 */
import type { Cluster } from "../cluster/cluster.ts";
import { componentLogger } from "../log/logger.ts";
import { heartbeatKey } from "./keys.ts";
import { NewArrivals, partitionMembers } from "./members.ts";
import type { RedisClient } from "./redis_client.ts";

const log = componentLogger("discovery");

/** Reads one cluster's set and keeps the cluster's `redis` members equal to it. */
export class SetWatch {
  /** The cluster being fed. */
  readonly cluster: Cluster;
  /** The Redis set key. */
  readonly setKey: string;
  /** Whether members need a live heartbeat key. */
  readonly requireHeartbeat: boolean;
  readonly #invalid = new NewArrivals();
  readonly #withoutHeartbeat = new NewArrivals();
  #synced = false;

  /** Watches `setKey` for `cluster`. */
  constructor(cluster: Cluster, setKey: string, requireHeartbeat: boolean) {
    this.cluster = cluster;
    this.setKey = setKey;
    this.requireHeartbeat = requireHeartbeat;
  }

  /** Reads the set and applies it. Throws on Redis errors, leaving membership unchanged. */
  async sync(client: RedisClient): Promise<void> {
    const { valid, invalid } = partitionMembers(await client.sMembers(this.setKey));
    const live = this.requireHeartbeat ? await this.#withLiveHeartbeat(client, valid) : valid;
    for (const member of this.#invalid.update(invalid)) {
      log.warn("redis set {set} lists {member}, which is not host:port: skipped", {
        set: this.setKey,
        cluster: this.cluster.name,
        member,
      });
    }
    const stale = valid.filter((address) => !live.includes(address));
    for (const address of this.#withoutHeartbeat.update(stale)) {
      log.info("member {address} of redis set {set} has no heartbeat: ignored", {
        set: this.setKey,
        cluster: this.cluster.name,
        address,
      });
    }
    this.#apply(live);
  }

  async #withLiveHeartbeat(client: RedisClient, addresses: string[]): Promise<string[]> {
    // MGET with no keys is a Redis error, and nothing can be live anyway.
    if (addresses.length === 0) return [];
    const beats = await client.mGet(addresses.map((address) => heartbeatKey(this.setKey, address)));
    return addresses.filter((_, index) => beats[index] !== null);
  }

  #apply(live: string[]): void {
    const current = new Set(this.cluster.membersFrom("redis"));
    const added = live.filter((address) => !current.has(address));
    const removed = [...current].filter((address) => !live.includes(address));
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
