/**
 * The Redis key layout of membership: the set, its heartbeat keys, and the keyspace channels
 * that announce changes to them.
 * @module
 */

/** The heartbeat key of one member: `<set>:hb:<host:port>`. */
export function heartbeatKey(setKey: string, address: string): string {
  return `${setKey}:hb:${address}`;
}

/** The keyspace-notification channel for one key in database `db`. */
export function keyspaceChannel(db: number, key: string): string {
  return `__keyspace@${db}__:${key}`;
}

/** A PSUBSCRIBE pattern matching the keyspace channels of every heartbeat key of `setKey`. */
export function heartbeatChannelPattern(db: number, setKey: string): string {
  // The set name is operator text; glob metacharacters in it must match literally.
  return `${keyspaceChannel(db, escapeGlob(setKey))}:hb:*`;
}

function escapeGlob(text: string): string {
  return text.replace(/[*?[\]\\]/g, (char) => `\\${char}`);
}
