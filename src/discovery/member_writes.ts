/**
 * Writing membership to a Redis set, shared by `switchyard register` and the admin API. A
 * member and its heartbeat key change in one transaction, so proxies that require
 * heartbeats never see one without the other.
 * @module
 */
import { heartbeatKey } from "./keys.ts";
import type { RedisConnection } from "./redis_client.ts";

/**
 * The heartbeat key written with a member: none; one that expires after `ttlMs` unless it
 * is refreshed; or one without a TTL, which keeps the member live until it is removed.
 */
export type MemberHeartbeat = "none" | "untilRemoved" | { readonly ttlMs: number };

/** SADDs `address` to `setKey`, with its heartbeat; true when the set did not list it yet. */
export async function listMember(
  client: RedisConnection,
  setKey: string,
  address: string,
  heartbeat: MemberHeartbeat,
): Promise<boolean> {
  // In a Redis Cluster the set's hash tag puts the heartbeat key in the set's slot.
  const transaction = client.multi(setKey);
  if (heartbeat !== "none") {
    const ttlMs = heartbeat === "untilRemoved" ? undefined : heartbeat.ttlMs;
    transaction.set(heartbeatKey(setKey, address), String(Date.now()), ttlMs);
  }
  const replies = await transaction.sAdd(setKey, address).exec();
  return Number(replies.at(-1)) === 1;
}

/** SREMs `address` from `setKey` and deletes its heartbeat key; true when the set listed it. */
export async function unlistMember(
  client: RedisConnection,
  setKey: string,
  address: string,
): Promise<boolean> {
  const [removed] = await client.multi(setKey)
    .sRem(setKey, address)
    .del(heartbeatKey(setKey, address))
    .exec();
  return Number(removed) === 1;
}
