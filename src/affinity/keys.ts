/**
 * The Redis layout of affinity tables. Every key of one cluster carries the hash tag
 * `{switchyard:NAME}`, so one cluster's table lives in one Redis Cluster slot and the
 * scripts that touch several of its keys at once are allowed there. With `redis.cluster` the
 * cluster's membership set must carry the same tag (checked by the config schema).
 *
 * - `{switchyard:NAME}:affinity:<id>`: a string, the owner's `host:port`, with a TTL (PX).
 * - `{switchyard:NAME}:affinity`: the pub/sub channel; every record and claim publishes
 *   `<owner> <id>` on it (the owner has no space; the id is the rest).
 * @module
 */

/**
 * The hash tag every key of `cluster` starts with: its affinity keys, and in a Redis Cluster
 * its membership set (and so the set's heartbeat and weight keys).
 */
export function clusterHashTag(cluster: string): string {
  return `{switchyard:${cluster}}`;
}

/**
 * The part of `key` that Redis Cluster hashes, by its rule: the text between the first `{` and
 * the first `}` after it when that is not empty, else the whole key.
 */
export function hashedPart(key: string): string {
  const open = key.indexOf("{");
  if (open === -1) return key;
  const close = key.indexOf("}", open + 1);
  return close > open + 1 ? key.slice(open + 1, close) : key;
}

/**
 * True when Redis Cluster hashes `key` by `tag` (written with its braces), so that it and every
 * key that starts with it share the tag's slot.
 */
export function hasHashTag(key: string, tag: string): boolean {
  return `{${hashedPart(key)}}` === tag && key.includes(tag);
}

/** The key holding the owner of `id` in `cluster`'s table. */
export function affinityKey(cluster: string, id: string): string {
  return `${clusterHashTag(cluster)}:affinity:${id}`;
}

/** The channel on which `cluster`'s records and claims are published. */
export function affinityChannel(cluster: string): string {
  return `${clusterHashTag(cluster)}:affinity`;
}

/** A message of {@link affinityChannel}: `<owner> <id>`. */
export function affinityMessage(owner: string, id: string): string {
  return `${owner} ${id}`;
}

/** Reads a message of {@link affinityChannel}; `undefined` when it is not one. */
export function parseAffinityMessage(text: string): { owner: string; id: string } | undefined {
  const space = text.indexOf(" ");
  if (space <= 0 || space === text.length - 1) return undefined;
  return { owner: text.slice(0, space), id: text.slice(space + 1) };
}
