/**
 * Creating Redis clients with Switchyard's timeouts and reconnect behaviour.
 * @module
 */
import type { createClient } from "redis";
import type { BackoffConfig } from "../config/schema.ts";
import { Backoff } from "../upstream/backoff.ts";

/** A connected-or-connecting node-redis client. */
export type RedisClient = ReturnType<typeof createClient>;

/** What a client needs: where Redis is, and how long to wait for it. */
export interface RedisClientSettings {
  /** `redis://` or `rediss://` URL, optionally with password and database index. */
  readonly url: string;
  /** Milliseconds allowed for a TCP (and TLS) connect. */
  readonly connectTimeout: number;
  /** Milliseconds allowed for one command's reply. */
  readonly commandTimeout: number;
}

// Short enough that a restarted Redis is picked up within a few seconds, long enough not to
// hammer one that is down; jitter keeps a fleet of proxies from reconnecting in lockstep.
const RECONNECT_BACKOFF: BackoffConfig = { initial: 100, max: 3_000, multiplier: 2, jitter: 0.3 };

/**
 * Creates (but does not connect) a client that reconnects forever with jittered backoff and
 * fails commands at once while disconnected, so callers keep their last-known state instead
 * of queueing behind an outage.
 */
export async function createRedisClient(settings: RedisClientSettings): Promise<RedisClient> {
  // Loaded on first use: the client costs about 20 MB of RSS that a proxy without Redis
  // discovery should not carry.
  const { createClient } = await import("redis");
  const backoff = new Backoff(RECONNECT_BACKOFF);
  return createClient({
    url: settings.url,
    socket: {
      connectTimeout: settings.connectTimeout,
      reconnectStrategy: (retries: number) => {
        if (retries === 0) backoff.reset();
        return backoff.nextDelayMs();
      },
    },
    commandOptions: { timeout: settings.commandTimeout },
    disableOfflineQueue: true,
  });
}

/** The database index the client selects (from the URL path), which keyspace channels name. */
export function clientDatabase(client: RedisClient): number {
  return client.options?.database ?? 0;
}

/** A Redis error as one line for logs and status. */
export function describeRedisError(error: unknown): string {
  if (error instanceof AggregateError && error.errors.length > 0) {
    return describeRedisError(error.errors[0]);
  }
  return error instanceof Error ? error.message || error.name : String(error);
}
