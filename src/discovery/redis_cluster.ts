/**
 * {@link RedisConnection} to a Redis Cluster (`redis.cluster`), with node-redis's own Cluster
 * client: it reads the slot map from any listed node, sends each command to the master of its
 * key's slot, follows MOVED/ASK redirections, and re-reads the slot map when a node keeps
 * failing (a failover promotes a replica).
 *
 * Keyspace notifications are published only by the node that holds the key, so keyspace
 * subscriptions get a subscriber connection on every master, added and dropped as masters
 * come and go. Classic pub/sub (`PUBLISH`, which affinity tables use) reaches every node, so
 * one subscription through the Cluster client suffices.
 * @module
 */
import { createCluster } from "redis";
import { parseHostPort } from "../config/address.ts";
import { type RedisCommands, RedisConnectionBase } from "./redis_base.ts";
import {
  ReadinessWatch,
  reconnectStrategy,
  type RedisClientSettings,
  type RedisConnection,
  type RedisListener,
  type RedisNodeAdmin,
  RedisOfflineError,
  withTimeout,
} from "./redis_client.ts";
import {
  createNodeClient,
  type MultiLike,
  nodeCredentials,
  NodeSubscriber,
  type Subscription,
  subscriptionKey,
} from "./redis_node.ts";

type Cluster = ReturnType<typeof createCluster>;

/**
 * How long a node may keep failing to reconnect before the slot map is read again from the
 * other nodes. node-redis re-reads it on a reconnect attempt, so node clients retry at least
 * this often too: a failover is noticed within about this long after the replica's promotion.
 * Retrying a dead node twice a second costs it nothing; a live one answers the first retry.
 */
const TOPOLOGY_REFRESH_MS = 500;

/** A Redis Cluster. */
export class ClusterConnection extends RedisConnectionBase implements RedisConnection {
  readonly mode = "cluster" as const;
  /** A Redis Cluster has database 0 only. */
  readonly database = 0;
  readonly #settings: RedisClientSettings;
  readonly #cluster: Cluster;
  readonly #channels = new Map<string, Subscription>();
  readonly #keyspace = new Map<string, Subscription>();
  /** One keyspace subscriber per master, by `host:port`. */
  readonly #subscribers = new Map<string, NodeSubscriber>();
  readonly #watch: ReadinessWatch;

  /** A connection to `settings.cluster`; call {@link connect}. */
  constructor(settings: RedisClientSettings) {
    super(settings, settings.commandTimeout);
    const config = settings.cluster!;
    this.#settings = settings;
    this.#cluster = createCluster({
      rootNodes: config.nodes.map((address) => ({ socket: parseHostPort(address)! })),
      defaults: {
        ...nodeCredentials(config),
        socket: {
          connectTimeout: settings.connectTimeout,
          reconnectStrategy: reconnectStrategy(TOPOLOGY_REFRESH_MS),
        },
        disableOfflineQueue: true,
      },
      commandOptions: { timeout: settings.commandTimeout },
      topologyRefreshOnReconnectionAttemptStrategy: TOPOLOGY_REFRESH_MS,
    });
    this.#cluster.on("error", (error: unknown) => this.reportError(error));
    this.#cluster.on("node-error", (error: unknown) => {
      this.reportError(error);
      this.#watch.check();
    });
    this.#cluster.on("node-ready", () => this.#watch.check());
    this.#watch = new ReadinessWatch({
      isReady: () => this.isReady,
      topology: () => this.#masterAddresses().join(","),
      onReady: () => this.#onReady(),
      onLost: () => this.events.emit("error", new Error(this.lastError ?? "a master is lost")),
      onCheck: () => this.#reconcileSubscribers(),
    });
  }

  /** True while the slot map is known and every master is connected. */
  get isReady(): boolean {
    const masters = this.#cluster.isReady ? this.#cluster.masters : [];
    return masters.length > 0 && masters.every((master) => master.client?.isReady === true);
  }

  connect(): void {
    // node-redis gives up a first connect when no listed node answers; keep trying.
    this.connectRetrying(() => this.#cluster.connect());
  }

  destroy(): void {
    this.markDestroyed();
    this.#watch.stop();
    for (const subscriber of this.#subscribers.values()) subscriber.destroy();
    this.#subscribers.clear();
    try {
      this.#cluster.destroy();
    } catch {
      // Never connected.
    }
  }

  async forEachMaster(fn: (node: RedisNodeAdmin) => Promise<void>): Promise<void> {
    if (!this.isReady) throw new RedisOfflineError(this.lastError);
    const results = await Promise.allSettled(this.#cluster.masters.map(async (master) => {
      const client = await this.#cluster.nodeClient(master);
      await withTimeout(fn(client), this.#settings.commandTimeout);
    }));
    const failed = results.find((result) => result.status === "rejected");
    if (failed) throw (failed as PromiseRejectedResult).reason;
  }

  subscribe(channel: string, listener: RedisListener): Promise<void> {
    const subscription = { pattern: false, name: channel, listener };
    this.#channels.set(channel, subscription);
    // Before the slot map is known there is nowhere to subscribe: done on `ready`.
    return this.#cluster.isReady ? this.#applyChannel(subscription) : Promise.resolve();
  }

  async unsubscribe(channel: string): Promise<void> {
    if (!this.#channels.delete(channel)) return;
    if (this.#cluster.isReady) await this.#cluster.unsubscribe(channel);
  }

  subscribeKeyspace(channel: string, pattern: boolean, listener: RedisListener): Promise<void> {
    const key = subscriptionKey(pattern, channel);
    this.#keyspace.set(key, { pattern, name: channel, listener });
    this.#reconcileSubscribers();
    // Masters not connected yet get it once they are (and re-read then).
    return Promise.all(
      [...this.#subscribers.values()]
        .filter((subscriber) => subscriber.isReady)
        .map((subscriber) => subscriber.apply(key)),
    ).then(() => {});
  }

  async #applyChannel({ name, listener }: Subscription): Promise<void> {
    await withTimeout(this.#cluster.subscribe(name, listener), this.#settings.commandTimeout);
  }

  /** Keeps one keyspace subscriber on each current master, and none elsewhere. */
  #reconcileSubscribers(): void {
    if (this.destroyed || this.#keyspace.size === 0 || !this.#cluster.isReady) return;
    const masters = new Map(this.#cluster.masters.map((master) => [master.address, master]));
    for (const [address, subscriber] of this.#subscribers) {
      if (masters.has(address)) continue;
      subscriber.destroy();
      this.#subscribers.delete(address);
    }
    for (const [address, master] of masters) {
      if (this.#subscribers.has(address)) continue;
      const client = createNodeClient({
        ...this.#settings,
        ...nodeCredentials(this.#settings.cluster!),
        host: master.host,
        port: master.port,
      });
      this.#subscribers.set(
        address,
        new NodeSubscriber(client, this.#keyspace, () => this.events.emit("resubscribed")),
      );
    }
  }

  #masterAddresses(): string[] {
    return this.#cluster.masters.map((master) => master.address).sort();
  }

  #onReady(): void {
    if (!this.becameReady()) return;
    // node-redis moves its pub/sub connection when its node leaves the slot map; subscribing
    // every wanted channel again (same listener: no duplicates) covers any that failed.
    for (const subscription of this.#channels.values()) {
      void this.#applyChannel(subscription).catch(() => {});
    }
  }

  protected get commands(): RedisCommands {
    return this.#cluster;
  }

  protected commandsReady(): boolean {
    // Only the slot map is required: a command for a slot whose master is down fails at
    // once (no offline queue), the others go through.
    return this.#cluster.isReady;
  }

  protected startMulti(routingKey: string): MultiLike {
    return this.#cluster.multi(routingKey);
  }
}
