/**
 * Which id a call belongs to in its cluster's affinity table (`clusters.NAME.affinity.key`).
 * The spellings are the hash policy's (`header:<name>` or `client_address`), parsed by the
 * same parser, so `affinity.key` and `hashKey` name a call's key alike.
 * @module
 */
import { clientHost, type HashKeySource } from "../balancer/hash_policy.ts";
import { headerValue } from "../transport/stream.ts";
import type { PickInfo } from "../balancer/types.ts";

/**
 * Ids longer than this are not tracked (the call goes by the policy alone): a client must not
 * be able to make the proxy store, and Redis keep, header values of any size.
 */
export const MAX_AFFINITY_ID_LENGTH = 256;

/**
 * The affinity id of a call under `source`: the header's first value, or the client's IP
 * (its port changes per connection). `undefined` when the header is absent, empty or longer
 * than {@link MAX_AFFINITY_ID_LENGTH}. A header id allocates nothing: it is the header's own
 * string.
 */
export function affinityId(
  source: HashKeySource,
  headers: PickInfo["headers"],
  clientAddress: string,
): string | undefined {
  if (source.kind === "header") {
    const value = headerValue(headers, source.name);
    return value === undefined || value.length === 0 || value.length > MAX_AFFINITY_ID_LENGTH
      ? undefined
      : value;
  }
  return clientHost(clientAddress);
}
