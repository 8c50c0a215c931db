/**
 * The HPACK decoder (RFC 7541 §3, §6): turns header blocks into flat name/value lists.
 *
 * Strings come out as latin1 (one character per octet, 0–255), so every octet a peer sends,
 * binary metadata included, survives unchanged. Table hits return the stored strings, and
 * literal strings go through a small cache shared by all decoders: steady traffic repeats the
 * same literals (content types, user agents, status codes) and a hit skips Huffman decoding
 * and string building.
 * @module
 */

import { DynamicTable } from "./dynamic_table.ts";
import { huffmanDecode, huffmanDecodedMaxLength } from "./huffman.ts";
import { STATIC_NAMES, STATIC_TABLE_LENGTH, STATIC_VALUES } from "./static_table.ts";

/**
 * A header block that cannot be decoded: the connection must end with COMPRESSION_ERROR
 * (RFC 9113 §4.3).
 */
export class HpackError extends Error {
  /** Names the class in stack traces and logs. */
  override name = "HpackError";
}

/** HTTP/2's initial SETTINGS_HEADER_TABLE_SIZE (RFC 9113 §6.5.2). */
const DEFAULT_TABLE_SIZE = 4096;

/** The largest integer accepted (§5.1 lets a decoder bound them): sizes in HTTP/2 are 32-bit. */
const MAX_INTEGER = 0xffffffff;

/** Continuation octets of an integer carry 7 bits each; 5 of them already exceed 32 bits. */
const MAX_INTEGER_SHIFT = 28;

const EMPTY = new Uint8Array(0);

/**
 * Below this length a `String.fromCharCode` loop beats `String.fromCharCode.apply` on a
 * subarray (measured in V8); it is also where V8 stops building concatenations flat.
 */
const SHORT_STRING = 12;

/** `String.fromCharCode.apply` takes its octets as arguments: keep each call well within limits. */
const APPLY_CHUNK = 8192;

/** Decodes `bytes[start..end)` as latin1: each octet becomes the character with that code. */
function latin1(bytes: Uint8Array, start: number, end: number): string {
  if (end - start < SHORT_STRING) {
    let text = "";
    for (let i = start; i < end; i++) text += String.fromCharCode(bytes[i]);
    return text;
  }
  let text = "";
  for (let at = start; at < end; at += APPLY_CHUNK) {
    const chunk = bytes.subarray(at, Math.min(at + APPLY_CHUNK, end));
    text += String.fromCharCode.apply(null, chunk as unknown as number[]);
  }
  return text;
}

/** Huffman output before it becomes a string; grown on demand, shared (decoding never nests). */
let huffmanScratch = new Uint8Array(256);

/** Decodes a Huffman-coded string (§5.2); throws HpackError on invalid coding. */
function huffmanString(bytes: Uint8Array, start: number, end: number): string {
  const most = huffmanDecodedMaxLength(end - start);
  if (huffmanScratch.length < most) {
    huffmanScratch = new Uint8Array(Math.max(most, 2 * huffmanScratch.length));
  }
  const length = huffmanDecode(bytes, start, end, huffmanScratch);
  if (length < 0) throw new HpackError("invalid Huffman-coded string");
  return latin1(huffmanScratch, 0, length);
}

// The literal cache: a direct-mapped table of CACHE_SLOTS slots, keyed by the string's raw
// octets as sent (Huffman-coded or not) and whether they are Huffman-coded. A slot keeps a copy
// of the octets in `cacheOctets` so a hash hit is confirmed by comparing them, and a new string
// replaces whatever held its slot. Memory is fixed: CACHE_SLOTS * CACHE_WIDTH octets plus the
// strings. One cache serves every decoder in the isolate, since new connections repeat what
// earlier ones sent.

/** Number of cache slots (a power of two). */
const CACHE_SLOTS = 1024;

/** Longest encoded string the cache keeps; longer ones are rarer repeats and cost more to hold. */
const CACHE_WIDTH = 128;

const cacheOctets = new Uint8Array(CACHE_SLOTS * CACHE_WIDTH);
/** Per slot: encoded length * 2 + 1 if Huffman-coded, or -1 while empty. */
const cacheKeys = new Int32Array(CACHE_SLOTS).fill(-1);
const cacheStrings: string[] = new Array<string>(CACHE_SLOTS).fill("");
let cacheUsed = 0;

/** Decodes a literal string (§5.2) through the cache; `end - start` is at most CACHE_WIDTH. */
function cachedString(bytes: Uint8Array, start: number, end: number, huffman: boolean): string {
  const key = ((end - start) << 1) | (huffman ? 1 : 0);
  // FNV-1a over the octets, seeded with the key.
  let hash = 0x811c9dc5 ^ key;
  for (let i = start; i < end; i++) hash = Math.imul(hash ^ bytes[i], 0x01000193);
  const slot = (hash ^ (hash >>> 16)) & (CACHE_SLOTS - 1);
  const base = slot * CACHE_WIDTH;
  if (cacheKeys[slot] === key) {
    let at = base;
    let i = start;
    while (i < end && cacheOctets[at] === bytes[i]) {
      at++;
      i++;
    }
    if (i === end) return cacheStrings[slot];
  }
  const text = huffman ? huffmanString(bytes, start, end) : latin1(bytes, start, end);
  if (cacheKeys[slot] === -1) cacheUsed++;
  cacheKeys[slot] = key;
  for (let i = start, at = base; i < end; i++, at++) cacheOctets[at] = bytes[i];
  cacheStrings[slot] = text;
  return text;
}

/**
 * Decodes the header blocks of one direction of one connection. The dynamic table persists
 * from block to block, so blocks must be decoded in the order they were sent, each exactly
 * once, and a decoder that threw must not be used again.
 */
export class HpackDecoder {
  readonly #table: DynamicTable = new DynamicTable(DEFAULT_TABLE_SIZE);
  readonly #maxTableSize: number;
  // The block being decoded and the read position in it, shared by the private readers.
  #bytes: Uint8Array = EMPTY;
  #pos = 0;
  #end = 0;

  /**
   * maxTableSize: the SETTINGS_HEADER_TABLE_SIZE we advertised (default 4096): a size update
   * above it is an error (§6.3).
   *
   * The table starts at HTTP/2's initial 4096 octets whatever we advertised, because the peer
   * may encode before it sees our SETTINGS; it shrinks when the peer's encoder signals a
   * smaller size, as §4.2 requires it to after a reduction. A table larger than the encoder's
   * is harmless: the encoder never refers past its own entries.
   */
  constructor(maxTableSize: number = DEFAULT_TABLE_SIZE) {
    this.#maxTableSize = maxTableSize;
  }

  /**
   * How many strings the literal cache shared by all decoders holds; it never exceeds its
   * fixed number of slots.
   */
  static get cacheSize(): number {
    return cacheUsed;
  }

  /**
   * Decodes one complete header block bytes[start..end) and appends name/value pairs to `out`.
   * Returns the header list size per RFC 9113 §6.5.2 (sum of name.length + value.length + 32).
   * When that size passes `maxListSize`, it stops appending to `out` but still decodes the
   * whole block (so the dynamic table stays in sync with the peer) and returns the full size;
   * the caller then answers with a stream error rather than a connection error.
   *
   * Throws HpackError on any malformed input: a bad index (0 or past the table), a truncated
   * integer or string, an integer over 2^32 - 1, invalid Huffman coding (EOS in the string,
   * padding over 7 bits or not all ones, §5.2), a table size update that is not at the start
   * of the block or is above maxTableSize (§4.2, §6.3).
   */
  decode(
    bytes: Uint8Array,
    start: number,
    end: number,
    out: string[],
    maxListSize: number,
  ): number {
    const table = this.#table;
    this.#bytes = bytes;
    this.#pos = start;
    this.#end = end;
    let listSize = 0;
    // Size updates may only precede the first field of a block (§4.2).
    let fields = 0;
    while (this.#pos < end) {
      const first = bytes[this.#pos];
      let name: string;
      let value: string;
      if (first >= 0x80) {
        // Indexed header field (§6.1).
        const index = this.#integer(0x7f);
        if (index === 0) throw new HpackError("indexed header field with index 0");
        if (index <= STATIC_TABLE_LENGTH) {
          name = STATIC_NAMES[index - 1];
          value = STATIC_VALUES[index - 1];
        } else {
          const entry = index - STATIC_TABLE_LENGTH - 1;
          if (entry >= table.length) throw new HpackError(`index ${index} is past the table`);
          name = table.name(entry);
          value = table.value(entry);
        }
      } else if (first >= 0x40) {
        // Literal with incremental indexing (§6.2.1). The name is read before the new entry
        // can evict the entry it came from (§4.4).
        const index = this.#integer(0x3f);
        name = index === 0 ? this.#string(true) : this.#name(index);
        value = this.#string(true);
        table.add(name, value);
      } else if (first >= 0x20) {
        // Dynamic table size update (§6.3).
        if (fields !== 0) throw new HpackError("table size update after a header field");
        const size = this.#integer(0x1f);
        if (size > this.#maxTableSize) {
          throw new HpackError(`table size update to ${size} is above ${this.#maxTableSize}`);
        }
        table.setMaxSize(size);
        continue;
      } else {
        // Literal without indexing (§6.2.2) or never indexed (§6.2.3). A never-indexed value
        // is sensitive (§7.1.3): it stays out of the cache shared with other connections, so
        // no copy of it outlives the block and its decoding time owes nothing to other peers.
        const neverIndexed = first >= 0x10;
        const index = this.#integer(0x0f);
        name = index === 0 ? this.#string(true) : this.#name(index);
        value = this.#string(!neverIndexed);
      }
      fields++;
      listSize += name.length + value.length + 32;
      if (listSize <= maxListSize) out.push(name, value);
    }
    this.#bytes = EMPTY;
    return listSize;
  }

  /** Reads an integer whose prefix is the `mask` bits of the current octet (§5.1). */
  #integer(mask: number): number {
    const bytes = this.#bytes;
    let pos = this.#pos;
    let value = bytes[pos++] & mask;
    if (value === mask) {
      let shift = 0;
      for (;;) {
        if (pos >= this.#end) throw new HpackError("truncated integer");
        const octet = bytes[pos++];
        // At a shift of 28, `<<` would lose bits to 32-bit arithmetic: multiply instead.
        value += shift < MAX_INTEGER_SHIFT ? (octet & 0x7f) << shift : (octet & 0x7f) * 2 ** shift;
        if (octet < 0x80) break;
        shift += 7;
        if (shift > MAX_INTEGER_SHIFT) throw new HpackError("integer overflow");
      }
      if (value > MAX_INTEGER) throw new HpackError("integer overflow");
    }
    this.#pos = pos;
    return value;
  }

  /** The name of table entry `index` (1-based across both tables, §2.3.3) for a literal. */
  #name(index: number): string {
    if (index <= STATIC_TABLE_LENGTH) return STATIC_NAMES[index - 1];
    const entry = index - STATIC_TABLE_LENGTH - 1;
    if (entry >= this.#table.length) throw new HpackError(`name index ${index} is past the table`);
    return this.#table.name(entry);
  }

  /** Reads a string literal (§5.2); `cacheable` lets it go through the shared cache. */
  #string(cacheable: boolean): string {
    if (this.#pos >= this.#end) throw new HpackError("truncated string");
    const huffman = this.#bytes[this.#pos] >= 0x80;
    const length = this.#integer(0x7f);
    const start = this.#pos;
    const end = start + length;
    if (end > this.#end) throw new HpackError("truncated string");
    this.#pos = end;
    if (length === 0) return "";
    if (cacheable && length <= CACHE_WIDTH) return cachedString(this.#bytes, start, end, huffman);
    return huffman ? huffmanString(this.#bytes, start, end) : latin1(this.#bytes, start, end);
  }
}
