/**
 * {@link RedisConnection} to one Redis node (`redis.url`): a command client and, once something
 * subscribes, a subscriber client, each reconnecting on its own.
 * @module
 */
import { type RedisCommands, RedisConnectionBase } from "./redis_base.ts";
import {
  describeRedisError,
  type RedisClientSettings,
  type RedisConnection,
  type RedisListener,
  type RedisNodeAdmin,
  RedisOfflineError,
} from "./redis_client.ts";
import {
  createNodeClient,
  type MultiLike,
  type NodeClient,
  NodeSubscriber,
  type Subscription,
  subscriptionKey,
} from "./redis_node.ts";

/** One Redis node. */
export class StandaloneConnection extends RedisConnectionBase implements RedisConnection {
  readonly mode = "url" as const;
  readonly database: number;
  readonly #settings: RedisClientSettings;
  readonly #client: NodeClient;
  readonly #wanted = new Map<string, Subscription>();
  #subscriber: NodeSubscriber | undefined;

  /** A connection to `settings.url`; call {@link connect}. */
  constructor(settings: RedisClientSettings) {
    // The node client enforces `commandTimeout` itself and never waits for a topology.
    super(settings, undefined);
    this.#settings = settings;
    this.#client = createNodeClient(settings);
    this.database = this.#client.options?.database ?? 0;
    this.#client.on("ready", () => {
      this.lastError = undefined;
      this.events.emit("ready");
    });
    this.#client.on("error", (error: unknown) => {
      this.lastError = describeRedisError(error);
      this.events.emit("error", error);
    });
  }

  get isReady(): boolean {
    return this.#client.isReady;
  }

  connect(): void {
    this.#client.connect().catch(() => {/* only when destroyed before connecting */});
  }

  destroy(): void {
    this.markDestroyed();
    this.#client.destroy();
    this.#subscriber?.destroy();
  }

  async forEachMaster(fn: (node: RedisNodeAdmin) => Promise<void>): Promise<void> {
    if (!this.#client.isReady) throw new RedisOfflineError(this.lastError);
    await fn(this.#client);
  }

  subscribe(channel: string, listener: RedisListener): Promise<void> {
    return this.#want(false, channel, listener);
  }

  async unsubscribe(channel: string): Promise<void> {
    const key = subscriptionKey(false, channel);
    const subscription = this.#wanted.get(key);
    if (!subscription) return;
    this.#wanted.delete(key);
    await this.#subscriber?.remove(key, subscription);
  }

  subscribeKeyspace(channel: string, pattern: boolean, listener: RedisListener): Promise<void> {
    return this.#want(pattern, channel, listener);
  }

  #want(pattern: boolean, name: string, listener: RedisListener): Promise<void> {
    const key = subscriptionKey(pattern, name);
    this.#wanted.set(key, { pattern, name, listener });
    if (this.destroyed) return Promise.resolve();
    // Created on first use (`register` never subscribes); a separate client rather than
    // duplicate(), so each connection backs off on its own.
    this.#subscriber ??= new NodeSubscriber(
      createNodeClient(this.#settings),
      this.#wanted,
      () => this.events.emit("resubscribed"),
    );
    // Not connected yet: subscribed once it is.
    return this.#subscriber.isReady ? this.#subscriber.apply(key) : Promise.resolve();
  }

  protected get commands(): RedisCommands {
    return this.#client;
  }

  protected commandsReady(): boolean {
    return this.#client.isReady;
  }

  protected startMulti(_routingKey: string): MultiLike {
    return this.#client.multi();
  }
}
