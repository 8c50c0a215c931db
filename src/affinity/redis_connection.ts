/**
 * The control plane's Redis connections for affinity tables: one command connection and one
 * subscriber (pub/sub needs its own), shared by every cluster with `store: "redis"`. Both
 * reconnect forever with backoff and fail commands at once while down, so a Redis outage costs
 * no call any wait: tables serve from memory meanwhile.
 *
 * Messages published while the subscriber was away are lost; nothing needs them back: every
 * id in use is kept every `ttl / 4`, and a keep reads each key's owner back.
 * @module
 */
import type { RedisConfig } from "../config/schema.ts";
import { componentLogger } from "../log/logger.ts";
import { redactUrl } from "../log/redact.ts";
import {
  createRedisClient,
  describeRedisError,
  type RedisClient,
} from "../discovery/redis_client.ts";

const log = componentLogger("affinity");

type Listener = (message: string) => void;

/** One pair of connections for every Redis affinity table of the process. */
export class AffinityRedis {
  /** The command connection. */
  readonly client: RedisClient;
  readonly #subscriber: RedisClient;
  readonly #config: RedisConfig;
  readonly #listeners = new Map<string, Listener>();
  /** Channels the subscriber has acknowledged (node-redis resubscribes them on reconnect). */
  readonly #subscribed = new Set<string>();
  /** Channels with a SUBSCRIBE in flight, so that a channel is never subscribed twice. */
  readonly #subscribing = new Set<string>();
  #state: "connecting" | "connected" | "lost" = "connecting";
  #lastError: string | undefined;
  #ready = Promise.withResolvers<void>();
  #stopped = false;

  private constructor(config: RedisConfig, client: RedisClient, subscriber: RedisClient) {
    this.#config = config;
    this.client = client;
    this.#subscriber = subscriber;
  }

  /**
   * Connects to `config`'s Redis, waiting for it at most `connectTimeout + commandTimeout`: a
   * Redis that is down at start delays the proxy briefly, and tables start from memory.
   */
  static async open(config: RedisConfig): Promise<AffinityRedis> {
    const redis = new AffinityRedis(
      config,
      await createRedisClient(config),
      await createRedisClient(config),
    );
    redis.#start();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const gaveUp = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, config.connectTimeout + config.commandTimeout);
    });
    await Promise.race([redis.#ready.promise, gaveUp]);
    clearTimeout(timer);
    if (!redis.client.isReady) {
      log.warn("affinity: redis not reachable yet ({error}): tables serve from memory meanwhile", {
        url: redactUrl(config.url),
        error: redis.#lastError ?? "connecting",
      });
    }
    return redis;
  }

  /** True while the command connection is up. */
  get connected(): boolean {
    return this.client.isReady;
  }

  /** Delivers the messages of `channel` to `listener` (one listener per channel). */
  subscribe(channel: string, listener: Listener): void {
    this.#listeners.set(channel, listener);
    if (this.#subscriber.isReady) void this.#subscribeOne(channel);
  }

  /** Stops delivering `channel`. */
  unsubscribe(channel: string): void {
    this.#listeners.delete(channel);
    if (!this.#subscribed.delete(channel) || !this.#subscriber.isReady) return;
    this.#subscriber.unsubscribe(channel).catch(() => {});
  }

  /**
   * Logs a failed table command once per distinct message; a lost connection is logged by
   * the connection itself.
   */
  reportError(error: unknown): void {
    if (this.#stopped) return;
    const message = describeRedisError(error);
    if (!this.client.isReady || message === this.#lastError) return;
    this.#lastError = message;
    log.warn("affinity: redis command failed ({error}): answering from memory", {
      error: message,
    });
  }

  /** Closes both connections. */
  stop(): void {
    this.#stopped = true;
    this.client.destroy();
    this.#subscriber.destroy();
  }

  #start(): void {
    this.client.on("ready", () => {
      if (this.#stopped) return;
      if (this.#state === "lost") {
        log.info("affinity: redis connected again", { url: redactUrl(this.#config.url) });
      }
      this.#state = "connected";
      this.#lastError = undefined;
      this.#ready.resolve();
    });
    this.client.on("error", (error: unknown) => {
      if (this.#stopped) return;
      this.#lastError = describeRedisError(error);
      if (this.#state !== "connected") return;
      this.#state = "lost";
      log.warn(
        "affinity: redis unreachable ({error}): known ids keep their owners, new ids go by " +
          "the picker; reconnecting",
        { error: this.#lastError, url: redactUrl(this.#config.url) },
      );
    });
    this.#subscriber.on("error", () => {});
    // Channels not acknowledged yet (added while it was away) are subscribed on every return.
    this.#subscriber.on("ready", () => {
      for (const channel of this.#listeners.keys()) {
        if (!this.#subscribed.has(channel)) void this.#subscribeOne(channel);
      }
    });
    this.client.connect().catch(() => {/* only when stopped before connecting */});
    this.#subscriber.connect().catch(() => {});
  }

  async #subscribeOne(channel: string): Promise<void> {
    if (this.#subscribing.has(channel) || this.#subscribed.has(channel)) return;
    this.#subscribing.add(channel);
    try {
      await this.#subscriber.subscribe(channel, (message: string) => {
        this.#listeners.get(channel)?.(message);
      });
      if (this.#listeners.has(channel)) this.#subscribed.add(channel);
      else this.#subscriber.unsubscribe(channel).catch(() => {});
    } catch (error) {
      if (this.#stopped) return;
      log.debug("affinity: subscribing to {channel} failed ({error}); retried on reconnect", {
        channel,
        error: describeRedisError(error),
      });
    } finally {
      this.#subscribing.delete(channel);
    }
  }
}
