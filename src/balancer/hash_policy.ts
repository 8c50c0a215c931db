/**
 * A cluster's hash policy (`clusters.NAME.hashKey`): which part of a call its request hash
 * is taken from, as Envoy's route `hash_policy` (`header`, `connection_properties.source_ip`)
 * and gRPC's xDS hash policies (gRFC A42). The relay computes the hash once per call and
 * hands it to the picker in {@link PickInfo.hash}; `ring_hash` uses it, and so can anything
 * else that wants the same key (an affinity table).
 * @module
 */
import { headerValue } from "../transport/stream.ts";
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

/** Reused by {@link clientHostBounds}, so that hashing a client address allocates nothing. */
const hostBounds = { start: 0, end: 0 };

/**
 * Where the host lies in a client address: `host:port`, `[v6]:port` (the HTTP/2 listener) or
 * `v6:port` (gRPC-Web), without brackets, so that both spellings of one client are one key.
 * The answer is overwritten by the next call.
 */
function clientHostBounds(address: string): { readonly start: number; readonly end: number } {
  let end = address.lastIndexOf(":");
  if (end <= 0) end = address.length;
  let start = 0;
  if (address.charCodeAt(0) === 0x5b && address.charCodeAt(end - 1) === 0x5d) {
    start = 1;
    end--;
  }
  hostBounds.start = start;
  hostBounds.end = end;
  return hostBounds;
}

/** The host part of a client address (see {@link clientHostBounds}); `undefined` if empty. */
export function clientHost(address: string): string | undefined {
  const { start, end } = clientHostBounds(address);
  return end > start ? address.slice(start, end) : undefined;
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
    const value = headerValue(headers, source.name);
    return value === undefined ? undefined : hashString(value);
  }
  const { start, end } = clientHostBounds(clientAddress);
  return hashString(clientAddress, start, end);
}
