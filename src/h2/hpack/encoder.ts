/**
 * The HPACK encoder (RFC 7541 §6): turns flat name/value lists into header blocks.
 *
 * Strategy: a field whose name and value are in a table becomes an index (§6.1). Otherwise it
 * is a literal (§6.2) that reuses a table name when there is one, and is added to the dynamic
 * table when small enough that the repeat a gRPC peer sends on its next call becomes a one-octet
 * index. Sensitive fields are never indexed (§6.2.3, §7.1.3) and fields known to change on
 * every call are not indexed, so they don't evict entries that would be reused. A string is
 * Huffman-coded only when that makes it shorter (§5.2).
 * @module
 */

import type { ByteBuffer } from "../bytes.ts";
import { DynamicTable, entrySize } from "./dynamic_table.ts";
import { huffmanEncode, huffmanEncodedLength } from "./huffman.ts";
import { STATIC_LOOKUP, STATIC_TABLE_LENGTH } from "./static_table.ts";

/**
 * The largest dynamic table the encoder uses whatever the peer allows: HTTP/2's default, enough
 * for a gRPC call's repeated headers, and it bounds the memory a connection costs us.
 */
const MAX_TABLE_SIZE = 4096;

/** Longest name plus value added to the dynamic table; longer values rarely repeat. */
const MAX_INDEXED_OCTETS = 256;

/**
 * How a field whose name has a policy is represented when it is not in a table:
 * - `"not-indexed"`: literal without indexing (§6.2.2), for values that change on every call;
 * - `"never-indexed"`: never indexed (§6.2.3), for credentials;
 * - `"never-indexed-if-short"`: never indexed when the value is short, since a short secret is
 *   the one a guessing attack recovers, otherwise the ordinary strategy.
 */
type Policy = "not-indexed" | "never-indexed" | "never-indexed-if-short";

/** Values shorter than this of a `"never-indexed-if-short"` field are never indexed. */
const SHORT_SECRET = 20;

/**
 * Names that are not indexed the ordinary way. The list is short on purpose: every entry is
 * a field whose indexing either exposes a secret or only churns the table.
 */
const POLICIES: ReadonlyMap<string, Policy> = new Map<string, Policy>([
  // Credentials. Indexing lets an attacker who injects guesses into the same connection test
  // them against the table by watching the compressed size (§7.1.3); the never-indexed form
  // also tells intermediaries to keep it that way.
  ["authorization", "never-indexed"],
  ["proxy-authorization", "never-indexed"],
  ["cookie", "never-indexed"],
  ["set-cookie", "never-indexed-if-short"],
  // The remaining deadline and the body length differ on almost every call, and trace ids
  // always do: an entry for them would never be referenced and would evict one that would.
  ["grpc-timeout", "not-indexed"],
  ["content-length", "not-indexed"],
  ["traceparent", "not-indexed"],
  ["grpc-trace-bin", "not-indexed"],
  ["x-request-id", "not-indexed"],
]);

/** First octets of the representations (§6). */
const INDEXED = 0x80;
const INCREMENTAL = 0x40;
const SIZE_UPDATE = 0x20;
const NOT_INDEXED = 0x00;
const NEVER_INDEXED = 0x10;

/** Room for a field's first octet and its two string lengths, each at most 1 + 5 octets. */
const FIELD_OVERHEAD = 18;

/**
 * What the encoder knows about one header name: where it is in the static table, its policy,
 * and its dynamic table entries. One lookup by name then one by value finds a field.
 */
interface NameEntry {
  /** The lowest static index with this name (§6.2), or 0. */
  readonly staticIndex: number;
  /** Value → static index of the (name, value) pairs the static table has (§6.1). */
  readonly staticValues: ReadonlyMap<string, number> | undefined;
  /** How the name is represented when not in a table, if not the ordinary way. */
  readonly policy: Policy | undefined;
  /** The name as a ready string literal, for a policy name the static table lacks. */
  readonly literal: Uint8Array | undefined;
  /** Insertion number of the newest dynamic entry with this name, or -1. */
  newest: number;
  /** Value → insertion number of the newest dynamic entry with this name and value. */
  values: Map<string, number> | undefined;
}

function nameEntry(
  staticIndex: number,
  staticValues: ReadonlyMap<string, number> | undefined,
  policy: Policy | undefined,
  literal: Uint8Array | undefined,
): NameEntry {
  return { staticIndex, staticValues, policy, literal, newest: -1, values: undefined };
}

/**
 * Writes `value` at `at` as an integer (§5.1) whose prefix is the `mask` bits of the first octet,
 * the other bits of which are `flags`, and returns the position after it.
 */
function writeInteger(
  bytes: Uint8Array,
  at: number,
  flags: number,
  mask: number,
  value: number,
): number {
  if (value < mask) {
    bytes[at++] = flags | value;
    return at;
  }
  bytes[at++] = flags | mask;
  value -= mask;
  while (value >= 0x80) {
    bytes[at++] = (value & 0x7f) | 0x80;
    value >>>= 7;
  }
  bytes[at++] = value;
  return at;
}

/**
 * Writes a string literal (§5.2), Huffman-coded if that makes it shorter, and returns the
 * position after it. Throws RangeError for a character above 255.
 */
function writeString(bytes: Uint8Array, at: number, text: string): number {
  const length = text.length;
  const huffmanLength = huffmanEncodedLength(text);
  if (huffmanLength < 0) throw new RangeError("header string has a character above 255");
  if (huffmanLength < length) {
    at = writeInteger(bytes, at, 0x80, 0x7f, huffmanLength);
    return huffmanEncode(text, bytes, at);
  }
  at = writeInteger(bytes, at, 0, 0x7f, length);
  for (let i = 0; i < length; i++) bytes[at++] = text.charCodeAt(i);
  return at;
}

/** The names every encoder starts knowing about: the static table's and the policies'. */
const KNOWN_NAMES: ReadonlyMap<string, NameEntry> = buildKnownNames();

function buildKnownNames(): Map<string, NameEntry> {
  const known = new Map<string, NameEntry>();
  for (const [name, { index, values }] of STATIC_LOOKUP) {
    known.set(name, nameEntry(index, values, POLICIES.get(name), undefined));
  }
  for (const [name, policy] of POLICIES) {
    if (known.has(name)) continue;
    // These names go out as literals on every call: encode them once.
    const literal = new Uint8Array(1 + name.length);
    known.set(
      name,
      nameEntry(0, undefined, policy, literal.slice(0, writeString(literal, 0, name))),
    );
  }
  return known;
}

/**
 * Encodes the header blocks of one direction of one connection. Blocks must be sent in the
 * order they were encoded, since each may refer to table entries the previous ones added.
 */
export class HpackEncoder {
  readonly #table: DynamicTable;
  /**
   * Name → what the encoder knows of it: known names (copied from KNOWN_NAMES on first use)
   * and names with dynamic table entries, kept in step with the table through its evictions.
   */
  readonly #names = new Map<string, NameEntry>();
  /** Size updates to signal at the start of the next block (§4.2), or -1 when none is due. */
  #pendingLowest = -1;
  #pendingFinal = -1;

  /** Creates an encoder with HTTP/2's initial 4096-octet table. */
  constructor() {
    this.#table = new DynamicTable(MAX_TABLE_SIZE, (name, value, insertion) => {
      // Every name in the table has an entry: #remember made it.
      const entry = this.#names.get(name) as NameEntry;
      const values = entry.values as Map<string, number>;
      if (entry.newest === insertion) {
        // FIFO eviction: when the newest entry with this name goes, every older one went first.
        if (KNOWN_NAMES.has(name)) {
          entry.newest = -1;
          values.clear();
        } else {
          this.#names.delete(name);
        }
      } else if (values.get(value) === insertion) {
        values.delete(value);
      }
    });
  }

  /**
   * The peer's SETTINGS_HEADER_TABLE_SIZE: the encoder uses min(it, 4096) and signals the change
   * with a dynamic table size update at the start of the next block (§4.2, §6.3).
   */
  setMaxTableSize(size: number): void {
    const effective = Math.min(size, MAX_TABLE_SIZE);
    if (this.#pendingFinal < 0) {
      if (effective === this.#table.maxSize) return;
      this.#pendingLowest = effective;
    } else {
      // A decrease then an increase before the next block still signals the lowest first,
      // so the peer evicts what it would have (§4.2).
      this.#pendingLowest = Math.min(this.#pendingLowest, effective);
    }
    this.#pendingFinal = effective;
  }

  /**
   * Appends the encoded block for the flat `headers` list to `out`. Throws RangeError for a
   * string with a character above 255: header strings are latin1.
   */
  encode(headers: readonly string[], out: ByteBuffer): void {
    if (this.#pendingFinal >= 0) this.#writeSizeUpdates(out);
    for (let i = 0; i < headers.length; i += 2) this.#writeField(headers[i], headers[i + 1], out);
  }

  #writeSizeUpdates(out: ByteBuffer): void {
    out.reserve(12);
    let at = out.length;
    if (this.#pendingLowest < this.#pendingFinal) {
      at = writeInteger(out.bytes, at, SIZE_UPDATE, 0x1f, this.#pendingLowest);
      this.#table.setMaxSize(this.#pendingLowest);
    }
    at = writeInteger(out.bytes, at, SIZE_UPDATE, 0x1f, this.#pendingFinal);
    this.#table.setMaxSize(this.#pendingFinal);
    out.length = at;
    this.#pendingLowest = -1;
    this.#pendingFinal = -1;
  }

  #writeField(name: string, value: string, out: ByteBuffer): void {
    out.reserve(FIELD_OVERHEAD + name.length + value.length);
    const bytes = out.bytes;
    let at = out.length;
    let entry = this.#names.get(name);
    if (entry === undefined) {
      const known = KNOWN_NAMES.get(name);
      if (known !== undefined) {
        entry = nameEntry(known.staticIndex, known.staticValues, known.policy, known.literal);
        this.#names.set(name, entry);
      }
    }
    let nameIndex = 0;
    if (entry !== undefined) {
      const insertion = entry.values?.get(value);
      if (insertion !== undefined) {
        out.length = writeInteger(bytes, at, INDEXED, 0x7f, this.#indexOf(insertion));
        return;
      }
      const index = entry.staticValues?.get(value);
      if (index !== undefined) {
        out.length = writeInteger(bytes, at, INDEXED, 0x7f, index);
        return;
      }
      // A static name index is preferred: it is as short or shorter, and never goes stale.
      if (entry.staticIndex !== 0) nameIndex = entry.staticIndex;
      else if (entry.newest >= 0) nameIndex = this.#indexOf(entry.newest);
    }

    const policy = entry?.policy;
    if (
      policy === "never-indexed" ||
      (policy === "never-indexed-if-short" && value.length < SHORT_SECRET)
    ) {
      at = writeInteger(bytes, at, NEVER_INDEXED, 0x0f, nameIndex);
    } else if (policy === "not-indexed" || !this.#worthIndexing(name, value)) {
      at = writeInteger(bytes, at, NOT_INDEXED, 0x0f, nameIndex);
    } else {
      at = writeInteger(bytes, at, INCREMENTAL, 0x3f, nameIndex);
      this.#remember(name, value);
    }
    if (nameIndex === 0) {
      const literal = entry?.literal;
      if (literal !== undefined) {
        bytes.set(literal, at);
        at += literal.length;
      } else {
        at = writeString(bytes, at, name);
      }
    }
    out.length = writeString(bytes, at, value);
  }

  /**
   * Whether adding the field pays: it must be small (see MAX_INDEXED_OCTETS) and take at most
   * half the table, or one field would evict most of what is there.
   */
  #worthIndexing(name: string, value: string): boolean {
    return name.length + value.length <= MAX_INDEXED_OCTETS &&
      entrySize(name, value) * 2 <= this.#table.maxSize;
  }

  /** Adds the field to the table (evicting per §4.4) and to the name lookup. */
  #remember(name: string, value: string): void {
    this.#table.add(name, value);
    // Looked up after adding: the evictions may have dropped the name's entry.
    let entry = this.#names.get(name);
    if (entry === undefined) {
      entry = nameEntry(0, undefined, undefined, undefined);
      this.#names.set(name, entry);
    }
    entry.newest = this.#table.inserted - 1;
    (entry.values ??= new Map()).set(value, entry.newest);
  }

  /** The HPACK index (§2.3.3) of the dynamic entry with insertion number `insertion`. */
  #indexOf(insertion: number): number {
    return STATIC_TABLE_LENGTH + this.#table.inserted - insertion;
  }
}
