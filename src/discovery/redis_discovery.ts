/**
 * Live cluster membership from Redis sets: one {@link RedisConnection} (commands and
 * subscriptions; one node, Sentinel or Cluster) shared by every cluster with `discovery`.
 * Keyspace notifications give fast updates; a poll catches whatever pub/sub lost; a Redis
 * outage (or a failover) keeps the last-known membership, because only a successful read ever
 * changes it.
 * @module
 */
import type { Cluster } from "../cluster/cluster.ts";
import type { Config, RedisConfig } from "../config/schema.ts";
import { componentLogger } from "../log/logger.ts";
import { ensureKeyspaceEvents, requiredKeyspaceFlags } from "./keyspace_events.ts";
import { heartbeatChannelPattern, keyspaceChannel, weightChannelPattern } from "./keys.ts";
import { listMember, unlistMember } from "./member_writes.ts";
import { createRedisConnection, describeRedisError, type RedisConnection } from "./redis_client.ts";
import { SerialTask } from "./serial_task.ts";
import { SetWatch } from "./set_watch.ts";

const log = componentLogger("discovery");

/** What admin and metrics can read about the Redis source. */
export interface RedisDiscoveryStatus {
  /** True while the command connection is up. */
  readonly connected: boolean;
  /** True when keyspace notifications are enabled; false means polling only. */
  readonly keyspaceEvents: boolean;
  /** The latest Redis error, if any since start. */
  readonly lastError: string | undefined;
  /** Epoch milliseconds of the latest successful read of a set. */
  readonly lastSyncMs: number | undefined;
}

/**
 * A membership write that Redis did not take (unreachable, timed out, refused), or that this
 * proxy could not read back; the message starts with "redis unavailable: ".
 */
export class RedisUnavailableError extends Error {
  /** Creates the error from the underlying Redis problem. */
  constructor(problem: string) {
    super(`redis unavailable: ${problem}`);
    this.name = "RedisUnavailableError";
  }
}

type ConnectionState = "connecting" | "connected" | "lost";

interface WatchTask {
  readonly watch: SetWatch;
  readonly task: SerialTask;
}

/** Feeds clusters from their Redis sets until {@link RedisDiscovery.stop}. */
export class RedisDiscovery {
  readonly #config: RedisConfig;
  readonly #client: RedisConnection;
  readonly #watches: WatchTask[];
  #state: ConnectionState = "connecting";
  /** Undefined until the first attempt, so the polling-only warning is logged once. */
  #keyspaceEvents: boolean | undefined;
  #lastError: string | undefined;
  #lastSyncMs: number | undefined;
  #pollTimer: ReturnType<typeof setInterval> | undefined;
  #stopped = false;

  private constructor(config: RedisConfig, watches: SetWatch[], client: RedisConnection) {
    this.#config = config;
    this.#client = client;
    this.#watches = watches.map((watch) => ({
      watch,
      task: new SerialTask(() => this.#sync(watch)),
    }));
  }

  /**
   * Starts discovery for the clusters whose config has `discovery`; returns `undefined` when
   * none do. Waits for the first read at most `connectTimeout + commandTimeout`, so a Redis
   * that is down at startup delays the proxy briefly and then it starts on static members.
   */
  static async start(
    config: Config,
    clusters: ReadonlyMap<string, Cluster>,
  ): Promise<RedisDiscovery | undefined> {
    const watches = [...clusters.values()].flatMap((cluster) => {
      const discovery = cluster.config.discovery;
      return discovery
        ? [
          new SetWatch(
            cluster,
            discovery.redisSet,
            discovery.requireHeartbeat,
            discovery.maxMembers,
          ),
        ]
        : [];
    });
    // The schema guarantees a redis section whenever a cluster has discovery.
    if (watches.length === 0 || !config.redis) return undefined;
    const discovery = new RedisDiscovery(
      config.redis,
      watches,
      await createRedisConnection(config.redis),
    );
    await discovery.#start();
    return discovery;
  }

  /** Connection state, last error and last sync time. */
  get status(): RedisDiscoveryStatus {
    return {
      connected: this.#state === "connected" && this.#client.isReady,
      keyspaceEvents: this.#keyspaceEvents === true,
      lastError: this.#lastError,
      lastSyncMs: this.#lastSyncMs,
    };
  }

  /**
   * Adds `address` to the Redis set of cluster `clusterName`, so every proxy on that set
   * takes it, and re-reads the set so this proxy has applied it on return. For a
   * `requireHeartbeat` cluster it also writes the member's heartbeat key without a TTL:
   * nothing refreshes an operator-registered member, so it counts as live until
   * {@link RedisDiscovery.removeMember} (a `switchyard register` run for the same address
   * puts its TTL back). True when the set did not list it yet. Rejects with
   * {@link RedisUnavailableError}, having written nothing, while Redis is unreachable.
   */
  addMember(clusterName: string, address: string): Promise<boolean> {
    return this.#writeMember(clusterName, address, true, (watch) =>
      listMember(
        this.#client,
        watch.setKey,
        address,
        watch.requireHeartbeat ? "untilRemoved" : "none",
      ));
  }

  /**
   * Removes `address` and its heartbeat key from the Redis set of cluster `clusterName`, and
   * re-reads the set so this proxy sends it no new calls on return (in-flight calls finish).
   * True when the set listed it. Rejects like {@link RedisDiscovery.addMember}.
   */
  removeMember(clusterName: string, address: string): Promise<boolean> {
    return this.#writeMember(
      clusterName,
      address,
      false,
      (watch) => unlistMember(this.#client, watch.setKey, address),
    );
  }

  /** Stops polling and closes the connections; membership stays as last read. */
  stop(): void {
    this.#stopped = true;
    clearInterval(this.#pollTimer);
    this.#client.destroy();
  }

  async #start(): Promise<void> {
    const firstSync = Promise.withResolvers<void>();
    this.#client.on("ready", () => this.#onReady().then(firstSync.resolve));
    this.#client.on("error", (error: unknown) => this.#onError(error));
    // Events published while a subscriber was away (or before it moved to a new master) are
    // lost: re-read once it is subscribed again.
    this.#client.on("resubscribed", () => void this.#syncAll());
    this.#client.connect();
    void this.#subscribe();
    this.#pollTimer = setInterval(() => this.#syncAll(), this.#config.pollInterval);
    const startupWaitMs = this.#config.connectTimeout + this.#config.commandTimeout;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const gaveUp = new Promise<void>((resolve) => timer = setTimeout(resolve, startupWaitMs));
    await Promise.race([firstSync.promise, gaveUp]);
    clearTimeout(timer);
    if (this.#state !== "connected") {
      log.warn("starting without redis members: redis not reachable yet, retrying", {
        redis: this.#client.target,
      });
    }
  }

  async #subscribe(): Promise<void> {
    const db = this.#client.database;
    try {
      // Subscribed once connected (on every master of a Redis Cluster, and again after a
      // failover); the connection reports `resubscribed` then, and the watches re-read.
      for (const { watch, task } of this.#watches) {
        const onEvent = () => void task.request();
        await this.#client.subscribeKeyspace(keyspaceChannel(db, watch.setKey), false, onEvent);
        if (watch.requireHeartbeat) {
          await this.#client.subscribeKeyspace(
            heartbeatChannelPattern(db, watch.setKey),
            true,
            onEvent,
          );
        }
        await this.#client.subscribeKeyspace(weightChannelPattern(db, watch.setKey), true, onEvent);
      }
      // Changes made before the subscriptions took effect would otherwise wait for a poll.
      await this.#syncAll();
    } catch (error) {
      // Tried again whenever the subscriber is next ready; the poll covers the gap.
      log.warn("redis subscribe failed: {error}; relying on polling until it reconnects", {
        error: describeRedisError(error),
      });
    }
  }

  async #onReady(): Promise<void> {
    if (this.#stopped) return;
    if (this.#state !== "connected") {
      this.#state = "connected";
      log.info("redis connected", { redis: this.#client.target });
    }
    // Runs on every (re)connect: a restarted Redis has forgotten a CONFIG SET, and a replica
    // promoted by a failover (or a new Cluster master) never had it.
    await this.#enableKeyspaceEvents();
    await this.#syncAll();
  }

  #onError(error: unknown): void {
    if (this.#stopped) return;
    this.#lastError = describeRedisError(error);
    // With Sentinel or Cluster an error can concern a sentinel or a replica while commands
    // still go through: only a connection that cannot take commands is lost.
    if (this.#state === "lost" || this.#client.isReady) return;
    this.#state = "lost";
    log.warn("redis unreachable: {error}; keeping last-known membership, reconnecting", {
      error: this.#lastError,
      redis: this.#client.target,
    });
  }

  async #enableKeyspaceEvents(): Promise<void> {
    let enabled: boolean;
    try {
      const added = await ensureKeyspaceEvents(this.#client, requiredKeyspaceFlags());
      if (added !== "") log.info("enabled redis keyspace notifications {flags}", { flags: added });
      enabled = true;
    } catch (error) {
      if (this.#keyspaceEvents !== false) {
        log.warn(
          "cannot enable redis keyspace notifications ({error}): polling every {ms}ms only",
          {
            error: describeRedisError(error),
            ms: this.#config.pollInterval,
          },
        );
      }
      enabled = false;
    }
    this.#keyspaceEvents = enabled;
  }

  async #writeMember(
    clusterName: string,
    address: string,
    listedAfter: boolean,
    write: (watch: SetWatch) => Promise<boolean>,
  ): Promise<boolean> {
    const found = this.#watches.find(({ watch }) => watch.cluster.name === clusterName);
    if (!found) throw new Error(`cluster ${clusterName} has no redis discovery`);
    // Without an offline queue the write would fail at once anyway; checking first reports
    // the outage's cause (e.g. ECONNREFUSED) instead of a bare "client offline".
    if (this.#stopped || !this.#client.isReady) {
      throw new RedisUnavailableError(this.#lastError ?? "not connected");
    }
    let changed: boolean;
    try {
      changed = await write(found.watch);
    } catch (error) {
      throw new RedisUnavailableError(describeRedisError(error));
    }
    // The keyspace event would do this too, but the caller's answer should already hold here.
    await found.task.request();
    if (found.watch.cluster.membersFrom("redis").includes(address) !== listedAfter) {
      throw new RedisUnavailableError(
        `${address} was written to ${found.watch.setKey} but not read back ` +
          `(${this.#lastError ?? "read skipped"}); proxies apply it on their next read`,
      );
    }
    return changed;
  }

  async #syncAll(): Promise<void> {
    if (this.#stopped || !this.#client.isReady) return;
    await Promise.all(this.#watches.map(({ task }) => task.request()));
  }

  async #sync(watch: SetWatch): Promise<void> {
    if (this.#stopped || !this.#client.isReady) return;
    try {
      await watch.sync(this.#client);
      this.#lastSyncMs = Date.now();
    } catch (error) {
      const message = describeRedisError(error);
      // A lost connection is already logged once by #onError; this catches the rest
      // (timeouts, WRONGTYPE) without repeating the same line every poll.
      if (this.#client.isReady && message !== this.#lastError) {
        log.warn("reading redis set {set} failed: {error}; membership unchanged", {
          set: watch.setKey,
          error: message,
        });
      }
      this.#lastError = message;
    }
  }
}
