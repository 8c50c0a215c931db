/**
 * `switchyard register`: keeps one backend listed in a Redis set with a live heartbeat, and
 * takes it out again on SIGTERM/SIGINT so proxies stop sending it new calls.
 * @module
 */
import { hashedPart } from "../affinity/keys.ts";
import { registeredPolicies } from "../balancer/registry.ts";
import type { RegisterOptions } from "../cli.ts";
import { UsageError } from "../cli.ts";
import { parseHostPort } from "../config/address.ts";
import { parseDuration } from "../config/duration.ts";
import { parseConfig, readConfigJson } from "../config/load.ts";
import { componentLogger } from "../log/logger.ts";
import { listMember, unlistMember } from "./member_writes.ts";
import {
  createRedisConnection,
  describeRedisError,
  describeRedisTarget,
  type RedisClientSettings,
  type RedisConnection,
} from "./redis_client.ts";

const log = componentLogger("discovery");

// Refreshing at a third of the TTL survives two lost refreshes before the key expires.
const REFRESHES_PER_TTL = 3;
const MIN_TTL_MS = 1_000;
const REDIS_TIMEOUT_MS = 2_000;

/** A validated registration. */
export interface Registration {
  /** Where Redis is (one node, Sentinel or Cluster), and its timeouts. */
  readonly redis: RedisClientSettings;
  /** The set to join. */
  readonly setKey: string;
  /** This backend's `host:port`. */
  readonly address: string;
  /** Heartbeat TTL in milliseconds. */
  readonly ttlMs: number;
}

/**
 * Checks the register options and reads `--config`'s `redis` section; throws
 * {@link UsageError} naming the bad flag (or `ConfigError` for a bad config file).
 */
export async function validateRegistration(options: RegisterOptions): Promise<Registration> {
  const redis = await redisSettings(options);
  if (redis.cluster && hashedPart(options.set) === options.set) {
    throw new UsageError(
      `register: --set ${JSON.stringify(options.set)} needs a hash tag in a Redis Cluster, ` +
        'like "{switchyard:NAME}:members" (the set and its heartbeat keys must share a slot)',
    );
  }
  if (!parseHostPort(options.addr)) {
    throw new UsageError(`register: --addr ${JSON.stringify(options.addr)} is not host:port`);
  }
  const ttlMs = parseDuration(options.ttl);
  if (ttlMs === undefined) {
    throw new UsageError(
      `register: --ttl ${JSON.stringify(options.ttl)} is not a duration like "15s"`,
    );
  }
  if (ttlMs < MIN_TTL_MS) throw new UsageError("register: --ttl must be at least 1s");
  return { redis, setKey: options.set, address: options.addr, ttlMs };
}

/** The Redis to register in, from whichever flag gave it. */
async function redisSettings(options: RegisterOptions): Promise<RedisClientSettings> {
  const timeouts = { connectTimeout: REDIS_TIMEOUT_MS, commandTimeout: REDIS_TIMEOUT_MS };
  if (options.config !== undefined) {
    const config = parseConfig(await readConfigJson(options.config), options.config, {
      pickers: registeredPolicies(),
    });
    if (!config.redis) throw new UsageError(`register: ${options.config} has no redis section`);
    return config.redis;
  }
  if (options.redisSentinel !== undefined) {
    return {
      ...timeouts,
      sentinel: {
        masterName: options.redisMasterName!,
        sentinels: addressList("--redis-sentinel", options.redisSentinel),
        database: 0,
      },
    };
  }
  if (options.redisCluster !== undefined) {
    return {
      ...timeouts,
      cluster: { nodes: addressList("--redis-cluster", options.redisCluster) },
    };
  }
  if (!/^rediss?:\/\//.test(options.redis ?? "")) {
    throw new UsageError("register: --redis must start with redis:// or rediss://");
  }
  return { ...timeouts, url: options.redis };
}

/** A comma-separated list of `host:port`s. */
function addressList(flag: string, text: string): string[] {
  const addresses = text.split(",").map((address) => address.trim()).filter(Boolean);
  const bad = addresses.find((address) => !parseHostPort(address));
  if (addresses.length === 0 || bad !== undefined) {
    throw new UsageError(`register: ${flag} ${JSON.stringify(bad ?? text)} is not host:port`);
  }
  return addresses;
}

/**
 * Runs the register command until SIGTERM/SIGINT; returns the exit code (0 once the member
 * is removed again, 1 when Redis could not be told).
 */
export async function runRegister(options: RegisterOptions): Promise<number> {
  const registration = await validateRegistration(options);
  const client = await createRedisConnection(registration.redis);
  const heartbeat = new Heartbeat(client, registration);
  client.on("ready", () => void heartbeat.beat());
  // A Sentinel or Cluster error may concern a sentinel or a replica: only an outage pauses.
  client.on("error", (error: unknown) => {
    if (!client.isReady) heartbeat.lost(error);
  });
  client.connect();
  const timer = setInterval(
    () => void heartbeat.beat(),
    registration.ttlMs / REFRESHES_PER_TTL,
  );

  const signalled = Promise.withResolvers<Deno.Signal>();
  const signals: Deno.Signal[] = ["SIGTERM", "SIGINT"];
  const handlers = signals.map((signal) => [signal, () => signalled.resolve(signal)] as const);
  for (const [signal, handler] of handlers) Deno.addSignalListener(signal, handler);
  const signal = await signalled.promise;
  for (const [name, handler] of handlers) Deno.removeSignalListener(name, handler);
  clearInterval(timer);
  log.info("received {signal}: deregistering {address}", { signal, ...logFields(registration) });
  const removed = await heartbeat.deregister();
  client.destroy();
  return removed ? 0 : 1;
}

/** Keeps the member and its heartbeat key in Redis; logs once per state change. */
class Heartbeat {
  readonly #client: RedisConnection;
  readonly #registration: Registration;
  #state: "starting" | "registered" | "unreachable" = "starting";
  #stopped = false;

  constructor(client: RedisConnection, registration: Registration) {
    this.#client = client;
    this.#registration = registration;
  }

  /** Re-adds the member too, so a Redis that restarted empty gets it back. */
  async beat(): Promise<void> {
    if (this.#stopped || !this.#client.isReady) return;
    const { setKey, address, ttlMs } = this.#registration;
    try {
      await listMember(this.#client, setKey, address, { ttlMs });
      if (this.#state !== "registered") {
        this.#state = "registered";
        log.info("registered {address} in redis set {set} (heartbeat ttl {ttlMs}ms)", {
          ...logFields(this.#registration),
          ttlMs,
        });
      }
    } catch (error) {
      this.lost(error);
    }
  }

  /** Notes that Redis is unreachable; the heartbeat resumes on reconnect. */
  lost(error: unknown): void {
    if (this.#stopped || this.#state === "unreachable") return;
    this.#state = "unreachable";
    log.warn("redis unreachable: {error}; heartbeat for {address} paused, retrying", {
      ...logFields(this.#registration),
      error: describeRedisError(error),
    });
  }

  /** Removes the member and its heartbeat; returns false when Redis could not be told. */
  async deregister(): Promise<boolean> {
    this.#stopped = true;
    const { setKey, address } = this.#registration;
    try {
      await unlistMember(this.#client, setKey, address);
      log.info("deregistered {address} from redis set {set}", logFields(this.#registration));
      return true;
    } catch (error) {
      log.error("could not deregister {address}: {error}; its heartbeat will expire", {
        ...logFields(this.#registration),
        error: describeRedisError(error),
      });
      return false;
    }
  }
}

function logFields({ redis, setKey, address }: Registration): Record<string, string> {
  return { redis: describeRedisTarget(redis), set: setKey, address };
}
