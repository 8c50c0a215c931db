/**
 * A cluster's hash policy (`clusters.NAME.hashKey`): which part of a call its request hash
 * is taken from, as Envoy's route `hash_policy` (`header`, `connection_properties.source_ip`)
 * and gRPC's xDS hash policies (gRFC A42). The relay computes the hash once per call and
 * hands it to the picker in {@link PickInfo.hash}; `ring_hash` uses it, and so can anything
 * else that wants the same key (an affinity table).
 * @module
 */
import { hashString } from "./hash.ts";
import type { PickInfo } from "./types.ts";

/** Where a request hash comes from. */
export type HashKeySource =
  /** The first value of a request header. */
  | { readonly kind: "header"; readonly name: string }
  /** The client's IP address (its port changes per connection, so it is left out). */
  | { readonly kind: "client_address" };

/**
 * The spellings `hashKey` accepts: `header:<lower-case name>` (a pseudo-header such as
 * `:authority` too) or `client_address`.
 */
export const HASH_KEY_PATTERN: RegExp = /^(?:header::?[!#$%&'*+.^_`|~0-9a-z-]+|client_address)$/;

/** Parses a `hashKey` setting; `undefined` when it is not one of {@link HASH_KEY_PATTERN}. */
export function parseHashKey(text: string): HashKeySource | undefined {
  if (!HASH_KEY_PATTERN.test(text)) return undefined;
  if (text === "client_address") return { kind: "client_address" };
  return { kind: "header", name: text.slice("header:".length) };
}

/**
 * The request hash of a call under `source`: xxHash32 of the header's first value or of the
 * client's IP; `undefined` when the header is absent, so that the picker picks at random as
 * gRPC does for a call without a hash. Allocates nothing.
 */
export function requestHash(
  source: HashKeySource,
  headers: PickInfo["headers"],
  clientAddress: string,
): number | undefined {
  if (source.kind === "header") {
    const name = source.name;
    for (let i = 0; i < headers.length; i += 2) {
      if (headers[i] === name) return hashString(headers[i + 1]);
    }
    return undefined;
  }
  // `host:port`, `[v6]:port` (the HTTP/2 listener) or `v6:port` (gRPC-Web): the host part,
  // without brackets, so that both spellings of one client hash alike.
  let end = clientAddress.lastIndexOf(":");
  if (end <= 0) end = clientAddress.length;
  let start = 0;
  if (clientAddress.charCodeAt(0) === 0x5b && clientAddress.charCodeAt(end - 1) === 0x5d) {
    start = 1;
    end--;
  }
  return hashString(clientAddress, start, end);
}
