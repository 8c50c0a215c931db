/**
 * Redis connections with Switchyard's timeouts and reconnect behaviour, for the three ways
 * Redis runs: one node (`redis.url`), a master followed through Sentinel (`redis.sentinel`) or
 * a Redis Cluster (`redis.cluster`). Discovery, `switchyard register`, the admin write-through
 * and affinity tables use the narrow {@link RedisConnection} below and do not care which.
 * @module
 */
import type { BackoffConfig, RedisConfig } from "../config/schema.ts";
import { redactUrl } from "../log/redact.ts";
import { Backoff } from "../upstream/backoff.ts";

/** Which kind of Redis deployment a connection talks to. */
export type RedisMode = "url" | "sentinel" | "cluster";

/** What a connection needs: where Redis is, and how long to wait for it. */
export interface RedisClientSettings {
  /** One node: `redis://` or `rediss://` URL, optionally with password and database index. */
  readonly url?: string;
  /** A master found through Sentinel. */
  readonly sentinel?: RedisConfig["sentinel"];
  /** A Redis Cluster. */
  readonly cluster?: RedisConfig["cluster"];
  /** Milliseconds allowed for a TCP (and TLS) connect. */
  readonly connectTimeout: number;
  /** Milliseconds allowed for one command's reply. */
  readonly commandTimeout: number;
}

/** Commands queued for one MULTI/EXEC; in a Redis Cluster every key must be in one slot. */
export interface RedisTransaction {
  /** `SET key value`, with `PX ttlMs` when given. */
  set(key: string, value: string, ttlMs?: number): RedisTransaction;
  /** `SADD key member`. */
  sAdd(key: string, member: string): RedisTransaction;
  /** `SREM key member`. */
  sRem(key: string, member: string): RedisTransaction;
  /** `DEL key`. */
  del(key: string): RedisTransaction;
  /** Runs the transaction; one reply per command. */
  exec(): Promise<unknown[]>;
}

/** The commands run on each master, one by one, for settings Redis keeps per node. */
export interface RedisNodeAdmin {
  /** `CONFIG GET name`. */
  configGet(name: string): Promise<Record<string, string>>;
  /** `CONFIG SET name value`. */
  configSet(name: string, value: string): Promise<unknown>;
}

/** A message listener: the payload and the channel it came on. */
export type RedisListener = (message: string, channel: string) => void;

/** What a connection tells its owner. */
export interface RedisConnectionEvents {
  /**
   * Connected: the first time, again after an outage, or to new masters (a Sentinel failover,
   * a Cluster resharding or failover). Owners re-read what they watch and re-apply per-node
   * settings (keyspace notifications), which a new master does not have.
   */
  ready: () => void;
  /** A connection problem; repeated while an outage lasts, so owners log it once. */
  error: (error: unknown) => void;
  /**
   * A subscriber connection is (again) subscribed: connected the first time, back after an
   * outage, or on a new master. Messages sent before were not received, so owners re-read
   * what they watch.
   */
  resubscribed: () => void;
}

/**
 * One logical connection to Redis: commands and pub/sub. It connects in the background and
 * reconnects forever with jittered backoff (100 ms to 3 s), following failovers; commands fail
 * at once while it is not ready (no offline queue) and after `commandTimeout`, so callers keep
 * their last-known state instead of waiting behind an outage.
 */
export interface RedisConnection {
  /** Which deployment it talks to. */
  readonly mode: RedisMode;
  /** Where it connects, credentials removed, for logs. */
  readonly target: string;
  /** The database index, which keyspace channels name (always 0 in a Redis Cluster). */
  readonly database: number;
  /**
   * True while commands can be sent: the node (one node), the current master (Sentinel), or
   * every master (Cluster) is connected.
   */
  readonly isReady: boolean;
  /** Registers a listener (see {@link RedisConnectionEvents}). */
  on<E extends keyof RedisConnectionEvents>(event: E, listener: RedisConnectionEvents[E]): void;
  /** Starts connecting in the background; it keeps trying until {@link destroy}. */
  connect(): void;
  /** Closes every connection at once; pending commands fail. */
  destroy(): void;

  /** `SCARD key`. */
  sCard(key: string): Promise<number>;
  /** `SMEMBERS key`. */
  sMembers(key: string): Promise<string[]>;
  /** `MGET keys…`: in a Redis Cluster all keys must be in one slot. */
  mGet(keys: string[]): Promise<(string | null)[]>;
  /** `EVAL script`: in a Redis Cluster all keys must be in one slot (routed by the first). */
  eval(script: string, keys: string[], args: string[]): Promise<unknown>;
  /** A MULTI/EXEC whose keys share `routingKey`'s slot. */
  multi(routingKey: string): RedisTransaction;
  /** Runs `fn` on every master (the one master outside a Redis Cluster). */
  forEachMaster(fn: (node: RedisNodeAdmin) => Promise<void>): Promise<void>;

  /**
   * Subscribes to a pub/sub channel, wherever PUBLISH reaches it: classic pub/sub reaches every
   * node of a Redis Cluster, so one subscription (node-redis moves it when its node fails)
   * suffices. Resubscribed after reconnects and failovers.
   */
  subscribe(channel: string, listener: RedisListener): Promise<void>;
  /** Stops delivering `channel`. */
  unsubscribe(channel: string): Promise<void>;
  /**
   * Subscribes to a keyspace-notification channel (`pattern`: a PSUBSCRIBE pattern). Keyspace
   * notifications are published only by the node that holds the key, so in a Redis Cluster
   * this subscribes on every master, and on new masters as the topology changes.
   */
  subscribeKeyspace(channel: string, pattern: boolean, listener: RedisListener): Promise<void>;
}

/** Thrown for a command issued while the connection is not ready. */
export class RedisOfflineError extends Error {
  /** Names the problem, with the latest connection error when there is one. */
  constructor(lastError?: string) {
    super(lastError ? `redis not connected (${lastError})` : "redis not connected");
    this.name = "RedisOfflineError";
  }
}

// Short enough that a restarted Redis is picked up within a few seconds, long enough not to
// hammer one that is down; jitter keeps a fleet of proxies from reconnecting in lockstep.
const RECONNECT_BACKOFF: BackoffConfig = { initial: 100, max: 3_000, multiplier: 2, jitter: 0.3 };

/**
 * A node-redis `reconnectStrategy`: retries forever, the delay growing with the attempt as
 * {@link RECONNECT_BACKOFF} says, up to `maxMs`. Stateless, so the clients of a Cluster can
 * share it.
 */
export function reconnectStrategy(maxMs = RECONNECT_BACKOFF.max): (retries: number) => number {
  const { initial, multiplier, jitter } = RECONNECT_BACKOFF;
  const max = Math.min(maxMs, RECONNECT_BACKOFF.max);
  return (retries: number) => {
    const base = Math.min(max, initial * multiplier ** Math.min(retries, 32));
    return Math.round(base * (1 + jitter * (Math.random() * 2 - 1)));
  };
}

/** A fresh {@link Backoff} with the reconnect settings, for retrying a whole connect. */
export function reconnectBackoff(): Backoff {
  return new Backoff(RECONNECT_BACKOFF);
}

/** Which mode `settings` selects (the schema guarantees exactly one). */
export function redisMode(settings: RedisClientSettings): RedisMode {
  if (settings.sentinel) return "sentinel";
  if (settings.cluster) return "cluster";
  return "url";
}

/** Where `settings` point, without credentials, for logs. */
export function describeRedisTarget(settings: RedisClientSettings): string {
  if (settings.sentinel) {
    const { masterName, sentinels } = settings.sentinel;
    return `sentinel master ${masterName} via ${sentinels.join(",")}`;
  }
  if (settings.cluster) return `cluster ${settings.cluster.nodes.join(",")}`;
  return redactUrl(settings.url ?? "");
}

/**
 * Creates (but does not connect) a connection of the kind `settings` select. The client module
 * is loaded on first use: it costs about 20 MB of RSS that a proxy without Redis should not
 * carry.
 */
export async function createRedisConnection(
  settings: RedisClientSettings,
): Promise<RedisConnection> {
  switch (redisMode(settings)) {
    case "sentinel":
      return new (await import("./redis_sentinel.ts")).SentinelConnection(settings);
    case "cluster":
      return new (await import("./redis_cluster.ts")).ClusterConnection(settings);
    default:
      return new (await import("./redis_standalone.ts")).StandaloneConnection(settings);
  }
}

/** A Redis error as one line for logs and status. */
export function describeRedisError(error: unknown): string {
  if (error instanceof AggregateError && error.errors.length > 0) {
    return describeRedisError(error.errors[0]);
  }
  return error instanceof Error ? error.message || error.name : String(error);
}

/**
 * `promise`, or a rejection after `ms`: some client paths (a Sentinel master being replaced)
 * wait for a topology change before sending, which no command timeout covers.
 */
export function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`redis command timed out after ${ms}ms`)), ms);
  });
  // A late rejection of the abandoned command must not surface as an unhandled rejection.
  promise.catch(() => {});
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
}

/** A tiny typed event emitter for {@link RedisConnectionEvents}. */
export class RedisEvents {
  readonly #listeners: { [E in keyof RedisConnectionEvents]: RedisConnectionEvents[E][] } = {
    ready: [],
    error: [],
    resubscribed: [],
  };

  /** Adds a listener. */
  on<E extends keyof RedisConnectionEvents>(event: E, listener: RedisConnectionEvents[E]): void {
    this.#listeners[event].push(listener);
  }

  /** Calls every listener of `event`; a throwing listener does not stop the others. */
  emit<E extends keyof RedisConnectionEvents>(
    event: E,
    ...args: Parameters<RedisConnectionEvents[E]>
  ): void {
    for (const listener of this.#listeners[event]) {
      try {
        (listener as (...values: unknown[]) => void)(...args);
      } catch {
        // Listeners report their own failures; one must not break the connection's loop.
      }
    }
  }
}

/** What a {@link ReadinessWatch} watches and tells. */
export interface ReadinessWatchOptions {
  /** Whether commands can be sent now. */
  readonly isReady: () => boolean;
  /** A text that changes when the connection uses other masters. */
  readonly topology: () => string;
  /** Became ready, or its masters changed while ready. */
  readonly onReady: () => void;
  /** Stopped being ready. */
  readonly onLost: () => void;
  /** Runs first on every check. */
  readonly onCheck?: () => void;
  /** Milliseconds between checks (also run on {@link ReadinessWatch.check}). */
  readonly intervalMs?: number;
}

/**
 * Watches a connection's readiness and topology (which masters it uses) and reports when it
 * becomes ready, its masters change while ready, or it stops being ready. Node-redis reports
 * these inconsistently across modes (a Sentinel master that reconnects emits nothing; a
 * Cluster failover only changes its slot map), so the state is also checked on a short timer.
 */
export class ReadinessWatch {
  readonly #options: ReadinessWatchOptions;
  #wasReady = false;
  #lastTopology = "";
  #timer: ReturnType<typeof setInterval> | undefined;

  /** Starts checking. */
  constructor(options: ReadinessWatchOptions) {
    this.#options = options;
    this.#timer = setInterval(() => this.check(), options.intervalMs ?? 200);
  }

  /** Compares the state with the last check; reports a transition. */
  check(): void {
    if (this.#timer === undefined) return;
    this.#options.onCheck?.();
    const ready = this.#options.isReady();
    const topology = ready ? this.#options.topology() : this.#lastTopology;
    const wasReady = this.#wasReady;
    const changed = ready && (!wasReady || topology !== this.#lastTopology);
    this.#wasReady = ready;
    this.#lastTopology = topology;
    if (changed) this.#options.onReady();
    else if (wasReady && !ready) this.#options.onLost();
  }

  /** Stops checking. */
  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }
}
