/**
 * The control plane's Redis connection for affinity tables (commands and a subscriber; one
 * node, Sentinel or Cluster), shared by every cluster with `store: "redis"`. It reconnects
 * forever with backoff, follows failovers, and fails commands at once while down, so a Redis
 * outage costs no call any wait: tables serve from memory meanwhile.
 *
 * Messages published while the subscriber was away are lost; nothing needs them back: every
 * id in use is kept every `ttl / 4`, and a keep reads each key's owner back.
 * @module
 */
import type { RedisConfig } from "../config/schema.ts";
import { componentLogger } from "../log/logger.ts";
import {
  createRedisConnection,
  describeRedisError,
  type RedisConnection,
} from "../discovery/redis_client.ts";

const log = componentLogger("affinity");

type Listener = (message: string) => void;

/** One connection for every Redis affinity table of the process. */
export class AffinityRedis {
  /** The connection. */
  readonly client: RedisConnection;
  readonly #listeners = new Map<string, Listener>();
  #state: "connecting" | "connected" | "lost" = "connecting";
  #lastError: string | undefined;
  #ready = Promise.withResolvers<void>();
  #stopped = false;

  private constructor(client: RedisConnection) {
    this.client = client;
  }

  /**
   * Connects to `config`'s Redis, waiting for it at most `connectTimeout + commandTimeout`: a
   * Redis that is down at start delays the proxy briefly, and tables start from memory.
   */
  static async open(config: RedisConfig): Promise<AffinityRedis> {
    const redis = new AffinityRedis(await createRedisConnection(config));
    redis.#start();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const gaveUp = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, config.connectTimeout + config.commandTimeout);
    });
    await Promise.race([redis.#ready.promise, gaveUp]);
    clearTimeout(timer);
    if (!redis.client.isReady) {
      log.warn("affinity: redis not reachable yet ({error}): tables serve from memory meanwhile", {
        redis: redis.client.target,
        error: redis.#lastError ?? "connecting",
      });
    }
    return redis;
  }

  /** True while the command connection is up. */
  get connected(): boolean {
    return this.client.isReady;
  }

  /**
   * Delivers the messages of `channel` to `listener` (one listener per channel). The
   * connection keeps it subscribed across reconnects and failovers.
   */
  subscribe(channel: string, listener: Listener): void {
    this.#listeners.set(channel, listener);
    this.client.subscribe(channel, (message: string) => {
      this.#listeners.get(channel)?.(message);
    }).catch((error: unknown) => {
      if (this.#stopped) return;
      log.debug("affinity: subscribing to {channel} failed ({error}); retried on reconnect", {
        channel,
        error: describeRedisError(error),
      });
    });
  }

  /** Stops delivering `channel`. */
  unsubscribe(channel: string): void {
    this.#listeners.delete(channel);
    this.client.unsubscribe(channel).catch(() => {});
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

  /** Closes the connection. */
  stop(): void {
    this.#stopped = true;
    this.client.destroy();
  }

  #start(): void {
    this.client.on("ready", () => {
      if (this.#stopped) return;
      if (this.#state === "lost") {
        log.info("affinity: redis connected again", { redis: this.client.target });
      }
      this.#state = "connected";
      this.#lastError = undefined;
      this.#ready.resolve();
    });
    this.client.on("error", (error: unknown) => {
      if (this.#stopped) return;
      this.#lastError = describeRedisError(error);
      // A Sentinel or Cluster error may concern a sentinel or a replica while commands go on.
      if (this.#state !== "connected" || this.client.isReady) return;
      this.#state = "lost";
      log.warn(
        "affinity: redis unreachable ({error}): known ids keep their owners, new ids go by " +
          "the picker; reconnecting",
        { error: this.#lastError, redis: this.client.target },
      );
    });
    this.client.connect();
  }
}
