/**
 * Turning on the keyspace notifications that membership watching relies on, without
 * dropping flags that the operator (or another application) already enabled.
 * @module
 */
import type { RedisConnection } from "./redis_client.ts";

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
 * Adds the missing flags with CONFIG SET on every master (the setting is per node, and a
 * replica promoted by a failover has its own); returns the flags it added anywhere ("" when
 * none were needed). Throws when a server refuses CONFIG (renamed command, ACLs, managed Redis).
 */
export async function ensureKeyspaceEvents(
  connection: RedisConnection,
  required: string,
): Promise<string> {
  const added = new Set<string>();
  await connection.forEachMaster(async (node) => {
    const current = (await node.configGet(SETTING))[SETTING] ?? "";
    const missing = missingKeyspaceFlags(current, required);
    if (missing !== "") await node.configSet(SETTING, current + missing);
    for (const flag of missing) added.add(flag);
  });
  return [...added].join("");
}
