/**
 * The Redis key layout of membership: the set, its heartbeat keys, its weight keys, and the
 * keyspace channels that announce changes to them.
 * @module
 */

/** The heartbeat key of one member: `<set>:hb:<host:port>`. */
export function heartbeatKey(setKey: string, address: string): string {
  return `${setKey}:hb:${address}`;
}

/**
 * The weight key of one member: `<set>:w:<host:port>`, a string holding a whole number from
 * 1 to 1000000. A member without one weighs 1 (unless the config weighs it).
 */
export function weightKey(setKey: string, address: string): string {
  return `${setKey}:w:${address}`;
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

/** A PSUBSCRIBE pattern matching the keyspace channels of every weight key of `setKey`. */
export function weightChannelPattern(db: number, setKey: string): string {
  return `${keyspaceChannel(db, escapeGlob(setKey))}:w:*`;
}

function escapeGlob(text: string): string {
  return text.replace(/[*?[\]\\]/g, (char) => `\\${char}`);
}
