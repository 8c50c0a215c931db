/**
 * The Lua scripts of the Redis affinity table. Each runs atomically on the server, so a
 * record, a claim or a keep is one round trip and two proxies racing each other agree. Every
 * script touches only keys of one cluster (one hash tag), as Redis Cluster requires.
 * @module
 */

/**
 * Records the owner of an id unless it has one (`SET NX PX`), publishing the record; returns
 * the owner either way.
 * KEYS[1]: the id's key. ARGV: proposed owner, TTL in ms, channel, message.
 */
export const RESOLVE_SCRIPT = `
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  redis.call('PUBLISH', ARGV[3], ARGV[4])
  return ARGV[1]
end
return redis.call('GET', KEYS[1])
`;

/**
 * A claim, as a compare-and-set: when the id's owner is still the expected one (or it has
 * none), the new owner replaces it with a fresh TTL and the change is published. Returns
 * `{owner, 1}` when this claim set it, `{owner, 0}` when another owner stands.
 * KEYS[1]: the id's key. ARGV: expected owner, new owner, TTL in ms, channel, message.
 */
export const CLAIM_SCRIPT = `
local current = redis.call('GET', KEYS[1])
if current == false or current == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  redis.call('PUBLISH', ARGV[4], ARGV[5])
  return {ARGV[2], 1}
end
return {current, 0}
`;

/**
 * Keeps ids in use: each key gets a fresh TTL (PEXPIRE); one that is gone (it expired) is
 * recorded again with the owner this proxy knows, unless someone recorded another meanwhile
 * (SET NX), and the record is published. Returns each id's owner now (nil: none, and none
 * known here).
 * KEYS: the ids' keys. ARGV[1]: TTL in ms; ARGV[2]: channel; then per key its owner as known
 * here ('' for none) and its message.
 */
export const KEEP_SCRIPT = `
local owners = {}
for i, key in ipairs(KEYS) do
  local known = ARGV[2 * i + 1]
  if redis.call('PEXPIRE', key, ARGV[1]) == 0 and known ~= '' then
    if redis.call('SET', key, known, 'NX', 'PX', ARGV[1]) then
      redis.call('PUBLISH', ARGV[2], ARGV[2 * i + 2])
    end
  end
  owners[i] = redis.call('GET', key)
end
return owners
`;

/**
 * An id's owner and remaining TTL in ms (-2: no key), read together.
 * KEYS[1]: the id's key.
 */
export const LOOKUP_SCRIPT = `
return {redis.call('GET', KEYS[1]), redis.call('PTTL', KEYS[1])}
`;
