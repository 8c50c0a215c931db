/**
 * The HPACK static table (RFC 7541 §2.3.1, Appendix A), indexed from 1, with the reverse
 * lookups an encoder needs.
 * @module
 */

/** How many entries the static table has; dynamic table indices start after it (§2.3.3). */
export const STATIC_TABLE_LENGTH = 61;

/** Appendix A, flattened: entry `i` (1-based) has its name at `2 * (i - 1)` and value after it. */
// deno-fmt-ignore: one entry a line, as Appendix A lists them
const ENTRIES: readonly string[] = [
  ":authority", "",
  ":method", "GET",
  ":method", "POST",
  ":path", "/",
  ":path", "/index.html",
  ":scheme", "http",
  ":scheme", "https",
  ":status", "200",
  ":status", "204",
  ":status", "206",
  ":status", "304",
  ":status", "400",
  ":status", "404",
  ":status", "500",
  "accept-charset", "",
  "accept-encoding", "gzip, deflate",
  "accept-language", "",
  "accept-ranges", "",
  "accept", "",
  "access-control-allow-origin", "",
  "age", "",
  "allow", "",
  "authorization", "",
  "cache-control", "",
  "content-disposition", "",
  "content-encoding", "",
  "content-language", "",
  "content-length", "",
  "content-location", "",
  "content-range", "",
  "content-type", "",
  "cookie", "",
  "date", "",
  "etag", "",
  "expect", "",
  "expires", "",
  "from", "",
  "host", "",
  "if-match", "",
  "if-modified-since", "",
  "if-none-match", "",
  "if-range", "",
  "if-unmodified-since", "",
  "last-modified", "",
  "link", "",
  "location", "",
  "max-forwards", "",
  "proxy-authenticate", "",
  "proxy-authorization", "",
  "range", "",
  "referer", "",
  "refresh", "",
  "retry-after", "",
  "server", "",
  "set-cookie", "",
  "strict-transport-security", "",
  "transfer-encoding", "",
  "user-agent", "",
  "vary", "",
  "via", "",
  "www-authenticate", "",
];

/** Static entry names: index `i` (1-based) is at `STATIC_NAMES[i - 1]`. */
export const STATIC_NAMES: readonly string[] = ENTRIES.filter((_, i) => i % 2 === 0);

/** Static entry values: index `i` (1-based) is at `STATIC_VALUES[i - 1]`. */
export const STATIC_VALUES: readonly string[] = ENTRIES.filter((_, i) => i % 2 === 1);

/** What the static table holds for one header name. */
export interface StaticName {
  /** The lowest index with this name, for a literal with an indexed name (§6.2). */
  readonly index: number;
  /** The index of each (name, value) pair the table has, for an indexed field (§6.1). */
  readonly values: ReadonlyMap<string, number>;
}

/** Header name → its static table entries; names not in the table are absent. */
export const STATIC_LOOKUP: ReadonlyMap<string, StaticName> = buildLookup();

function buildLookup(): Map<string, StaticName> {
  const lookup = new Map<string, { index: number; values: Map<string, number> }>();
  for (let index = 1; index <= STATIC_TABLE_LENGTH; index++) {
    const name = STATIC_NAMES[index - 1];
    let entry = lookup.get(name);
    if (entry === undefined) {
      entry = { index, values: new Map() };
      lookup.set(name, entry);
    }
    entry.values.set(STATIC_VALUES[index - 1], index);
  }
  return lookup;
}
