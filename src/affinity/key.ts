/**
 * Which id a call belongs to in its cluster's affinity table (`clusters.NAME.affinity.key`).
 * The spellings are the hash policy's (`header:<name>` or `client_address`), parsed by the
 * same parser, so `affinity.key` and `hashKey` name a call's key alike.
 * @module
 */
import { type HashKeySource, parseHashKey } from "../balancer/hash_policy.ts";
import type { PickInfo } from "../balancer/types.ts";

/**
 * Ids longer than this are not tracked (the call goes by the policy alone): a client must not
 * be able to make the proxy store, and Redis keep, header values of any size.
 */
export const MAX_AFFINITY_ID_LENGTH = 256;

/** Parses `affinity.key`; `undefined` when it is not one of the hash policy's spellings. */
export function parseAffinityKey(text: string): HashKeySource | undefined {
  return parseHashKey(text);
}

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
    const name = source.name;
    for (let i = 0; i < headers.length; i += 2) {
      if (headers[i] !== name) continue;
      const value = headers[i + 1];
      return value.length === 0 || value.length > MAX_AFFINITY_ID_LENGTH ? undefined : value;
    }
    return undefined;
  }
  return clientHost(clientAddress);
}

/**
 * The host part of `host:port`, `[v6]:port` (the HTTP/2 listener) or `v6:port` (gRPC-Web),
 * without brackets, so both spellings of one client are one id (as `requestHash` reads it).
 */
function clientHost(address: string): string | undefined {
  let end = address.lastIndexOf(":");
  if (end <= 0) end = address.length;
  let start = 0;
  if (address.charCodeAt(0) === 0x5b && address.charCodeAt(end - 1) === 0x5d) {
    start = 1;
    end--;
  }
  return end > start ? address.slice(start, end) : undefined;
}
