/**
 * Turning on the keyspace notifications that membership watching relies on, without
 * dropping flags that the operator (or another application) already enabled.
 * @module
 */
import type { RedisClient } from "./redis_client.ts";

const SETTING = "notify-keyspace-events";
// What the "A" alias stands for in `notify-keyspace-events` (redis.conf documentation).
const ALIAS_A = "g$lshzxetd";

/**
 * Keyspace flags needed: K (keyspace channel), s (SADD/SREM), g (DEL, EXPIRE), x (expiry),
 * and $ (SET of a weight key, so a new weight applies at once; and of a heartbeat key, so a
 * fresh heartbeat counts at once).
 */
export function requiredKeyspaceFlags(): string {
  return "Ksgx$";
}

/** The flags of `required` that `current` does not already enable. */
export function missingKeyspaceFlags(current: string, required: string): string {
  const covered = (flag: string) =>
    current.includes(flag) || (current.includes("A") && ALIAS_A.includes(flag));
  return [...required].filter((flag) => !covered(flag)).join("");
}

/**
 * Adds the missing flags with CONFIG SET; returns the flags it added ("" when none were
 * needed). Throws when the server refuses CONFIG (renamed command, ACLs, managed Redis).
 */
export async function ensureKeyspaceEvents(client: RedisClient, required: string): Promise<string> {
  const current = (await client.configGet(SETTING))[SETTING] ?? "";
  const missing = missingKeyspaceFlags(current, required);
  if (missing !== "") await client.configSet(SETTING, current + missing);
  return missing;
}
