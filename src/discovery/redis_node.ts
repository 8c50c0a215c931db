/**
 * Plain node-redis clients with Switchyard's timeouts and reconnects, their MULTI as a
 * {@link RedisTransaction}, and subscriber connections that keep a wanted set of subscriptions
 * applied across reconnects. The building blocks of every {@link RedisConnection} mode.
 * @module
 */
import { createClient } from "redis";
import {
  reconnectStrategy,
  type RedisListener,
  type RedisTransaction,
  withTimeout,
} from "./redis_client.ts";

/** A node-redis client for one node. */
export type NodeClient = ReturnType<typeof createClient>;

/** Options for {@link createNodeClient}. */
export interface NodeClientOptions {
  /** `redis://` URL; or {@link host} and {@link port}. */
  readonly url?: string;
  /** Host name or IP. */
  readonly host?: string;
  /** TCP port. */
  readonly port?: number;
  /** ACL user. */
  readonly username?: string;
  /** Password (`AUTH`). */
  readonly password?: string;
  /** Database index (`SELECT`). */
  readonly database?: number;
  /** Milliseconds allowed for a TCP (and TLS) connect. */
  readonly connectTimeout: number;
  /** Milliseconds allowed for one command's reply. */
  readonly commandTimeout: number;
}

/**
 * Creates (but does not connect) a node client that reconnects forever with jittered backoff
 * and fails commands at once while disconnected, so callers keep their last-known state
 * instead of queueing behind an outage.
 */
export function createNodeClient(options: NodeClientOptions): NodeClient {
  return createClient({
    ...(options.url !== undefined ? { url: options.url } : {}),
    ...nodeCredentials(options),
    ...(options.database !== undefined ? { database: options.database } : {}),
    socket: {
      ...(options.host !== undefined ? { host: options.host, port: options.port } : {}),
      connectTimeout: options.connectTimeout,
      reconnectStrategy: reconnectStrategy(),
    },
    commandOptions: { timeout: options.commandTimeout },
    disableOfflineQueue: true,
  });
}

/** `username` and `password`, only where set (node-redis treats `undefined` as given). */
export function nodeCredentials(
  options: { readonly username?: string; readonly password?: string },
): { username?: string; password?: string } {
  return {
    ...(options.username !== undefined ? { username: options.username } : {}),
    ...(options.password !== undefined ? { password: options.password } : {}),
  };
}

/** What node-redis MULTI objects have in common across modes. */
export interface MultiLike {
  /** Queues `SET key value`, with node-redis's SET options. */
  set(key: string, value: string, options?: object): unknown;
  /** Queues `SADD key member`. */
  sAdd(key: string, member: string): unknown;
  /** Queues `SREM key member`. */
  sRem(key: string, member: string): unknown;
  /** Queues `DEL key`. */
  del(key: string): unknown;
  /** Runs the queued commands. */
  exec(): Promise<unknown>;
}

/**
 * A {@link RedisTransaction} that builds `start()`'s MULTI when it runs, and fails its EXEC
 * after `timeoutMs` when given (the chained calls return this same object, so the timeout
 * holds however the transaction is built).
 */
export function queuedTransaction(start: () => MultiLike, timeoutMs?: number): RedisTransaction {
  const queued: ((multi: MultiLike) => void)[] = [];
  const transaction: RedisTransaction = {
    set(key, value, ttlMs) {
      const options = ttlMs === undefined ? {} : { expiration: { type: "PX", value: ttlMs } };
      queued.push((multi) => multi.set(key, value, options));
      return transaction;
    },
    sAdd(key, member) {
      queued.push((multi) => multi.sAdd(key, member));
      return transaction;
    },
    sRem(key, member) {
      queued.push((multi) => multi.sRem(key, member));
      return transaction;
    },
    del(key) {
      queued.push((multi) => multi.del(key));
      return transaction;
    },
    async exec() {
      const multi = start();
      for (const add of queued) add(multi);
      const result = multi.exec() as Promise<unknown[]>;
      return await (timeoutMs === undefined ? result : withTimeout(result, timeoutMs));
    },
  };
  return transaction;
}

/** One wanted subscription. */
export interface Subscription {
  /** `SUBSCRIBE` a channel or `PSUBSCRIBE` a pattern. */
  readonly pattern: boolean;
  /** The channel or pattern. */
  readonly name: string;
  /** Gets every message. */
  readonly listener: RedisListener;
}

/** The key of a subscription in a {@link Subscription} map. */
export function subscriptionKey(pattern: boolean, name: string): string {
  return `${pattern ? "p" : "c"}:${name}`;
}

/**
 * A subscriber connection to one node that keeps `wanted` applied: node-redis resubscribes
 * what it had acknowledged when it reconnects; what failed or was added while it was away is
 * subscribed whenever it is ready again.
 */
export class NodeSubscriber {
  /** The connection. */
  readonly client: NodeClient;
  readonly #wanted: ReadonlyMap<string, Subscription>;
  readonly #acknowledged = new Set<string>();
  readonly #inFlight = new Map<string, Promise<void>>();
  readonly #onResubscribed: () => void;
  #destroyed = false;

  /**
   * Connects `client` and keeps `wanted` subscribed on it. `onResubscribed` runs each time it
   * is ready and has subscribed `wanted`: messages sent before then were not received.
   */
  constructor(
    client: NodeClient,
    wanted: ReadonlyMap<string, Subscription>,
    onResubscribed: () => void,
  ) {
    this.client = client;
    this.#wanted = wanted;
    this.#onResubscribed = onResubscribed;
    client.on("error", () => {});
    client.on("ready", () => {
      if (this.#destroyed) return;
      const applied = [...this.#wanted.keys()].map((key) => this.apply(key));
      void Promise.allSettled(applied).then(() => {
        if (!this.#destroyed) this.#onResubscribed();
      });
    });
    client.connect().catch(() => {/* only when destroyed before connecting */});
  }

  /** True while connected. */
  get isReady(): boolean {
    return this.client.isReady;
  }

  /**
   * Subscribes the wanted subscription `key` unless it is already; rejects when that fails
   * (it is tried again when the connection is next ready).
   */
  apply(key: string): Promise<void> {
    if (this.#acknowledged.has(key)) return Promise.resolve();
    const inFlight = this.#inFlight.get(key);
    if (inFlight) return inFlight;
    const subscription = this.#wanted.get(key);
    if (!subscription || this.#destroyed) return Promise.resolve();
    if (!this.client.isReady) return Promise.reject(new Error("redis subscriber not connected"));
    const { pattern, name, listener } = subscription;
    const done =
      (pattern ? this.client.pSubscribe(name, listener) : this.client.subscribe(name, listener))
        .then(() => {
          // Unwanted meanwhile: undo, or node-redis would resubscribe it forever.
          if (this.#wanted.get(key) === subscription) this.#acknowledged.add(key);
          else void this.#undo(pattern, name, listener);
        })
        .finally(() => this.#inFlight.delete(key));
    this.#inFlight.set(key, done);
    return done;
  }

  /** Unsubscribes `subscription`, which is no longer wanted. */
  async remove(key: string, subscription: Subscription): Promise<void> {
    if (!this.#acknowledged.delete(key) || !this.client.isReady) return;
    await this.#undo(subscription.pattern, subscription.name, subscription.listener);
  }

  /** Closes the connection. */
  destroy(): void {
    this.#destroyed = true;
    this.client.destroy();
  }

  async #undo(pattern: boolean, name: string, listener: RedisListener): Promise<void> {
    try {
      if (pattern) await this.client.pUnsubscribe(name, listener);
      else await this.client.unsubscribe(name, listener);
    } catch {
      // Gone with the connection; node-redis forgets it when the listener is removed.
    }
  }
}
