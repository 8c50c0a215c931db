/**
 * {@link RedisConnection} to the master that Redis Sentinel names (`redis.sentinel`), with
 * node-redis's own Sentinel client: it asks the sentinels for the master, listens to their
 * `+switch-master` (and `sdown`/`odown`) announcements, and on a failover moves its master
 * connection and its subscriber connection to the promoted replica.
 * @module
 */
import { createSentinel } from "redis";
import { parseHostPort } from "../config/address.ts";
import { type RedisCommands, RedisConnectionBase } from "./redis_base.ts";
import {
  ReadinessWatch,
  reconnectStrategy,
  type RedisClientSettings,
  type RedisConnection,
  type RedisListener,
  type RedisNodeAdmin,
  withTimeout,
} from "./redis_client.ts";
import {
  type MultiLike,
  nodeCredentials,
  type Subscription,
  subscriptionKey,
} from "./redis_node.ts";

type Sentinel = ReturnType<typeof createSentinel>;

/**
 * How often the client re-reads the topology from the sentinels besides their announcements:
 * it reconnects a master whose connection broke without a failover, and a lost sentinel
 * connection (which carries the announcements).
 */
const SCAN_INTERVAL_MS = 2_000;

/** A master followed through Sentinel. */
export class SentinelConnection extends RedisConnectionBase implements RedisConnection {
  readonly mode = "sentinel" as const;
  readonly database: number;
  readonly #sentinel: Sentinel;
  readonly #commandTimeout: number;
  readonly #wanted = new Map<string, Subscription>();
  readonly #watch: ReadinessWatch;

  /** A connection through `settings.sentinel`; call {@link connect}. */
  constructor(settings: RedisClientSettings) {
    // Commands can wait for a master being replaced, which no node-redis timeout covers.
    super(settings, settings.commandTimeout);
    const config = settings.sentinel!;
    this.database = config.database;
    this.#commandTimeout = settings.commandTimeout;
    this.#sentinel = createSentinel({
      name: config.masterName,
      sentinelRootNodes: config.sentinels.map((address) => parseHostPort(address)!),
      nodeClientOptions: {
        ...nodeCredentials(config),
        database: config.database,
        socket: { connectTimeout: settings.connectTimeout, reconnectStrategy: reconnectStrategy() },
        disableOfflineQueue: true,
      },
      sentinelClientOptions: {
        ...nodeCredentials({
          username: config.sentinelUsername,
          password: config.sentinelPassword,
        }),
        socket: { connectTimeout: settings.connectTimeout },
      },
      commandOptions: { timeout: settings.commandTimeout },
      scanInterval: SCAN_INTERVAL_MS,
    });
    this.#sentinel.on("error", (error: unknown) => this.reportError(error));
    this.#sentinel.on("client-error", (event: { type: string; error: unknown }) => {
      if (event.type === "MASTER") this.reportError(event.error);
      this.#watch.check();
    });
    this.#sentinel.on("ready", () => this.#watch.check());
    this.#sentinel.on("reconnecting", () => this.#watch.check());
    this.#watch = new ReadinessWatch({
      isReady: () => this.isReady,
      topology: () => {
        const master = this.#sentinel.getMasterNode();
        return master ? `${master.host}:${master.port}` : "";
      },
      onReady: () => this.#onReady(),
      onLost: () => this.events.emit("error", new Error(this.lastError ?? "master lost")),
    });
  }

  /** True while the client has a connected master. */
  get isReady(): boolean {
    return this.#sentinel.isReady && this.#sentinel.getMasterNode() !== undefined;
  }

  connect(): void {
    // node-redis gives up a first connect after a few failed topology reads (and closes
    // itself); Switchyard keeps trying, as it does for one node.
    this.connectRetrying(() => this.#sentinel.connect());
  }

  destroy(): void {
    this.markDestroyed();
    this.#watch.stop();
    this.#sentinel.destroy().catch(() => {});
  }

  forEachMaster(fn: (node: RedisNodeAdmin) => Promise<void>): Promise<void> {
    return this.run(() => fn(this.#sentinel));
  }

  subscribe(channel: string, listener: RedisListener): Promise<void> {
    return this.#want(false, channel, listener);
  }

  async unsubscribe(channel: string): Promise<void> {
    const key = subscriptionKey(false, channel);
    if (!this.#wanted.delete(key)) return;
    if (this.isReady) await this.#sentinel.unsubscribe(channel);
  }

  subscribeKeyspace(channel: string, pattern: boolean, listener: RedisListener): Promise<void> {
    return this.#want(pattern, channel, listener);
  }

  #want(pattern: boolean, name: string, listener: RedisListener): Promise<void> {
    const key = subscriptionKey(pattern, name);
    const subscription = { pattern, name, listener };
    this.#wanted.set(key, subscription);
    // Before the first master is known there is nowhere to subscribe: done on `ready`.
    return this.isReady ? this.#apply(subscription) : Promise.resolve();
  }

  async #apply({ pattern, name, listener }: Subscription): Promise<void> {
    const subscribed = pattern
      ? this.#sentinel.pSubscribe(name, listener)
      : this.#sentinel.subscribe(name, listener);
    await withTimeout(subscribed, this.#commandTimeout);
  }

  #onReady(): void {
    if (!this.becameReady()) return;
    // node-redis moves acknowledged subscriptions to a new master itself; subscribing every
    // wanted one again (the same listener: no duplicate delivery) also covers any that failed
    // or were added while no master was reachable.
    const applied = [...this.#wanted.values()].map((subscription) => this.#apply(subscription));
    void Promise.allSettled(applied).then(() => {
      if (!this.destroyed) this.events.emit("resubscribed");
    });
  }

  protected get commands(): RedisCommands {
    return this.#sentinel;
  }

  protected commandsReady(): boolean {
    return this.isReady;
  }

  protected startMulti(_routingKey: string): MultiLike {
    return this.#sentinel.multi();
  }
}
