/**
 * What every {@link RedisConnection} mode shares: the key commands, forwarded to the mode's
 * node-redis object (a node client, the Sentinel client or the Cluster client) under one
 * policy, its events and last error, and retrying a first connect that node-redis gives up.
 * Each mode keeps what really differs: its topology, readiness and subscriptions.
 * @module
 */
import type { Backoff } from "../upstream/backoff.ts";
import {
  describeRedisError,
  describeRedisTarget,
  reconnectBackoff,
  type RedisClientSettings,
  type RedisConnection,
  type RedisConnectionEvents,
  RedisEvents,
  RedisOfflineError,
  type RedisTransaction,
  withTimeout,
} from "./redis_client.ts";
import { type MultiLike, queuedTransaction } from "./redis_node.ts";

/** The commands that node-redis node, Sentinel and Cluster clients all run alike. */
export interface RedisCommands {
  /** `SCARD key`. */
  sCard(key: string): Promise<number>;
  /** `SMEMBERS key`. */
  sMembers(key: string): Promise<string[]>;
  /** `MGET keys…`. */
  mGet(keys: string[]): Promise<(string | null)[]>;
  /** `EVAL script` with its keys and arguments. */
  eval(script: string, options: { keys: string[]; arguments: string[] }): Promise<unknown>;
}

/**
 * The part of a {@link RedisConnection} that is the same in every mode. A mode says, through
 * the protected hooks, which node-redis object runs its commands, when commands may be sent
 * (otherwise they fail at once with {@link RedisOfflineError}) and how it starts a MULTI.
 */
export abstract class RedisConnectionBase
  implements
    Pick<RedisConnection, "target" | "on" | "sCard" | "sMembers" | "mGet" | "eval" | "multi"> {
  /** Where it connects, credentials removed, for logs. */
  readonly target: string;
  /** The listeners of {@link RedisConnectionEvents}. */
  protected readonly events: RedisEvents = new RedisEvents();
  /** The latest connection error, for {@link RedisOfflineError}; cleared when ready. */
  protected lastError: string | undefined;
  /** Set by {@link markDestroyed}: nothing is reported or retried any more. */
  protected destroyed = false;
  readonly #commandTimeout: number | undefined;
  readonly #backoff: Backoff = reconnectBackoff();
  #retry: ReturnType<typeof setTimeout> | undefined;

  /**
   * A connection to where `settings` point. `commandTimeout`: milliseconds after which a
   * command (and a MULTI's `exec`) is abandoned; `undefined` where the node-redis object
   * enforces its own and never waits beyond it.
   */
  protected constructor(settings: RedisClientSettings, commandTimeout: number | undefined) {
    this.target = describeRedisTarget(settings);
    this.#commandTimeout = commandTimeout;
  }

  /** Starts connecting in the background (see {@link RedisConnection.connect}). */
  abstract connect(): void;

  /** The node-redis object the key commands go to. */
  protected abstract get commands(): RedisCommands;

  /** True while commands may be sent. */
  protected abstract commandsReady(): boolean;

  /** A node-redis MULTI for `routingKey`'s slot (run only while {@link commandsReady}). */
  protected abstract startMulti(routingKey: string): MultiLike;

  on<E extends keyof RedisConnectionEvents>(event: E, listener: RedisConnectionEvents[E]): void {
    this.events.on(event, listener);
  }

  sCard(key: string): Promise<number> {
    return this.run(() => this.commands.sCard(key));
  }

  sMembers(key: string): Promise<string[]> {
    return this.run(() => this.commands.sMembers(key));
  }

  mGet(keys: string[]): Promise<(string | null)[]> {
    return this.run(() => this.commands.mGet(keys));
  }

  eval(script: string, keys: string[], args: string[]): Promise<unknown> {
    return this.run(() => this.commands.eval(script, { keys, arguments: args }));
  }

  multi(routingKey: string): RedisTransaction {
    return queuedTransaction(() => {
      if (!this.commandsReady()) throw new RedisOfflineError(this.lastError);
      return this.startMulti(routingKey);
    }, this.#commandTimeout);
  }

  /** Runs `command` if commands may be sent, within the command timeout; else rejects at once. */
  protected run<T>(command: () => Promise<T>): Promise<T> {
    if (!this.commandsReady()) return Promise.reject(new RedisOfflineError(this.lastError));
    const timeout = this.#commandTimeout;
    return timeout === undefined ? command() : withTimeout(command(), timeout);
  }

  /** Clears the last error and emits `ready`; false (and nothing done) once destroyed. */
  protected becameReady(): boolean {
    if (this.destroyed) return false;
    this.lastError = undefined;
    this.events.emit("ready");
    return true;
  }

  /** Keeps the error for {@link RedisOfflineError} and tells the listeners, until destroyed. */
  protected reportError(error: unknown): void {
    if (this.destroyed) return;
    this.lastError = describeRedisError(error);
    this.events.emit("error", error);
  }

  /**
   * Runs `start` (a node-redis connect); when it fails, reports the error and calls
   * {@link connect} again after a jittered backoff, until destroyed: node-redis gives up a
   * first connect that Switchyard keeps trying.
   */
  protected connectRetrying(start: () => Promise<unknown>): void {
    if (this.destroyed) return;
    start().then(() => this.#backoff.reset(), (error: unknown) => {
      if (this.destroyed) return;
      this.reportError(error);
      this.#retry = setTimeout(() => this.connect(), this.#backoff.nextDelayMs());
    });
  }

  /** Stops reporting and a pending connect retry; the mode then closes its clients. */
  protected markDestroyed(): void {
    this.destroyed = true;
    clearTimeout(this.#retry);
  }
}
