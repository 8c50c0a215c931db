/**
 * The HPACK Huffman code (RFC 7541 §5.2, Appendix B): encoding, encoded length, and a decoder
 * that consumes a whole octet per step through a precomputed state table instead of walking
 * the code tree bit by bit.
 * @module
 */

/**
 * The code of each symbol 0–255 and of EOS (256), aligned to the least significant bit, as
 * Appendix B lists them.
 */
// deno-fmt-ignore: rows as in Appendix B, not one number a line
const CODES: Uint32Array = new Uint32Array([
  // 0–31: control characters
  0x1ff8, 0x7fffd8, 0xfffffe2, 0xfffffe3, 0xfffffe4, 0xfffffe5, 0xfffffe6, 0xfffffe7,
  0xfffffe8, 0xffffea, 0x3ffffffc, 0xfffffe9, 0xfffffea, 0x3ffffffd, 0xfffffeb, 0xfffffec,
  0xfffffed, 0xfffffee, 0xfffffef, 0xffffff0, 0xffffff1, 0xffffff2, 0x3ffffffe, 0xffffff3,
  0xffffff4, 0xffffff5, 0xffffff6, 0xffffff7, 0xffffff8, 0xffffff9, 0xffffffa, 0xffffffb,
  // 32–127: printable ASCII and DEL
  0x14, 0x3f8, 0x3f9, 0xffa, 0x1ff9, 0x15, 0xf8, 0x7fa,
  0x3fa, 0x3fb, 0xf9, 0x7fb, 0xfa, 0x16, 0x17, 0x18,
  0x0, 0x1, 0x2, 0x19, 0x1a, 0x1b, 0x1c, 0x1d,
  0x1e, 0x1f, 0x5c, 0xfb, 0x7ffc, 0x20, 0xffb, 0x3fc,
  0x1ffa, 0x21, 0x5d, 0x5e, 0x5f, 0x60, 0x61, 0x62,
  0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a,
  0x6b, 0x6c, 0x6d, 0x6e, 0x6f, 0x70, 0x71, 0x72,
  0xfc, 0x73, 0xfd, 0x1ffb, 0x7fff0, 0x1ffc, 0x3ffc, 0x22,
  0x7ffd, 0x3, 0x23, 0x4, 0x24, 0x5, 0x25, 0x26,
  0x27, 0x6, 0x74, 0x75, 0x28, 0x29, 0x2a, 0x7,
  0x2b, 0x76, 0x2c, 0x8, 0x9, 0x2d, 0x77, 0x78,
  0x79, 0x7a, 0x7b, 0x7ffe, 0x7fc, 0x3ffd, 0x1ffd, 0xffffffc,
  // 128–255
  0xfffe6, 0x3fffd2, 0xfffe7, 0xfffe8, 0x3fffd3, 0x3fffd4, 0x3fffd5, 0x7fffd9,
  0x3fffd6, 0x7fffda, 0x7fffdb, 0x7fffdc, 0x7fffdd, 0x7fffde, 0xffffeb, 0x7fffdf,
  0xffffec, 0xffffed, 0x3fffd7, 0x7fffe0, 0xffffee, 0x7fffe1, 0x7fffe2, 0x7fffe3,
  0x7fffe4, 0x1fffdc, 0x3fffd8, 0x7fffe5, 0x3fffd9, 0x7fffe6, 0x7fffe7, 0xffffef,
  0x3fffda, 0x1fffdd, 0xfffe9, 0x3fffdb, 0x3fffdc, 0x7fffe8, 0x7fffe9, 0x1fffde,
  0x7fffea, 0x3fffdd, 0x3fffde, 0xfffff0, 0x1fffdf, 0x3fffdf, 0x7fffeb, 0x7fffec,
  0x1fffe0, 0x1fffe1, 0x3fffe0, 0x1fffe2, 0x7fffed, 0x3fffe1, 0x7fffee, 0x7fffef,
  0xfffea, 0x3fffe2, 0x3fffe3, 0x3fffe4, 0x7ffff0, 0x3fffe5, 0x3fffe6, 0x7ffff1,
  0x3ffffe0, 0x3ffffe1, 0xfffeb, 0x7fff1, 0x3fffe7, 0x7ffff2, 0x3fffe8, 0x1ffffec,
  0x3ffffe2, 0x3ffffe3, 0x3ffffe4, 0x7ffffde, 0x7ffffdf, 0x3ffffe5, 0xfffff1, 0x1ffffed,
  0x7fff2, 0x1fffe3, 0x3ffffe6, 0x7ffffe0, 0x7ffffe1, 0x3ffffe7, 0x7ffffe2, 0xfffff2,
  0x1fffe4, 0x1fffe5, 0x3ffffe8, 0x3ffffe9, 0xffffffd, 0x7ffffe3, 0x7ffffe4, 0x7ffffe5,
  0xfffec, 0xfffff3, 0xfffed, 0x1fffe6, 0x3fffe9, 0x1fffe7, 0x1fffe8, 0x7ffff3,
  0x3fffea, 0x3fffeb, 0x1ffffee, 0x1ffffef, 0xfffff4, 0xfffff5, 0x3ffffea, 0x7ffff4,
  0x3ffffeb, 0x7ffffe6, 0x3ffffec, 0x3ffffed, 0x7ffffe7, 0x7ffffe8, 0x7ffffe9, 0x7ffffea,
  0x7ffffeb, 0xffffffe, 0x7ffffec, 0x7ffffed, 0x7ffffee, 0x7ffffef, 0x7fffff0, 0x3ffffee,
  // EOS
  0x3fffffff,
]);

/** The length in bits of each code in {@linkcode CODES} (Appendix B). */
// deno-fmt-ignore: rows as in Appendix B, not one number a line
const LENGTHS: Uint8Array = new Uint8Array([
  // 0–31: control characters
  13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28,
  28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28,
  // 32–127: printable ASCII and DEL
  6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6,
  5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10,
  13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
  7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6,
  15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5,
  6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28,
  // 128–255
  20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23,
  24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24,
  22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23,
  21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23,
  26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25,
  19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27,
  20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23,
  26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26,
  // EOS
  30,
]);

/** The EOS symbol: never part of a valid string (§5.2). */
const EOS = 256;

/**
 * Decoder state table. A state is an internal node of the code tree (the code is complete,
 * so 257 leaves give exactly 256 internal nodes; the root is state 0). Entry
 * `(state << 8) | octet` holds the state after consuming the octet's 8 bits (bits 0–7), the
 * first and second symbol completed on the way (bits 8–15 and 16–23) and how many were
 * completed (bits 24–25). Every code is at least 5 bits long, so one octet completes at most
 * two symbols; a count of 3 marks an octet that reaches EOS, which §5.2 makes an error.
 */
const DECODE_TABLE: Uint32Array = new Uint32Array(256 * 256);

/** Count field of a {@linkcode DECODE_TABLE} entry that reached EOS. */
const DECODE_EOS = 3;

/**
 * Whether a string may end in each state: the bits consumed since the last whole symbol must
 * be at most 7 bits of the EOS code, i.e. all ones (§5.2). These are the root and the first
 * seven nodes down the all-ones path.
 */
const ACCEPTS: Uint8Array = new Uint8Array(256);

buildDecoder();

function buildDecoder(): void {
  // children[node * 2 + bit]: an internal node's id, or LEAF + symbol. 0 is "unset": the root
  // is never anyone's child.
  const LEAF = 0x200;
  const children = new Uint16Array(256 * 2);
  let nodes = 1;
  for (let symbol = 0; symbol <= EOS; symbol++) {
    const code = CODES[symbol];
    let node = 0;
    for (let bit = LENGTHS[symbol] - 1; bit > 0; bit--) {
      const slot = node * 2 + ((code >>> bit) & 1);
      if (children[slot] === 0) children[slot] = nodes++;
      node = children[slot];
    }
    children[node * 2 + (code & 1)] = LEAF + symbol;
  }

  for (let state = 0; state < 256; state++) {
    for (let octet = 0; octet < 256; octet++) {
      let node = state;
      let count = 0;
      let symbols = 0;
      for (let bit = 7; bit >= 0; bit--) {
        const child = children[node * 2 + ((octet >>> bit) & 1)];
        if (child < LEAF) {
          node = child;
          continue;
        }
        const symbol = child - LEAF;
        if (symbol === EOS) {
          count = DECODE_EOS;
          break;
        }
        symbols |= symbol << (8 * count);
        count++;
        node = 0;
      }
      DECODE_TABLE[(state << 8) | octet] = (count << 24) | (symbols << 8) | node;
    }
  }

  ACCEPTS[0] = 1;
  let node = 0;
  for (let depth = 1; depth <= 7; depth++) {
    node = children[node * 2 + 1];
    ACCEPTS[node] = 1;
  }
}

/**
 * Decodes the Huffman-coded octets `src[start..end)` into `dst` from index 0 and returns how
 * many octets it wrote, or -1 when the input is invalid: it contains EOS, or ends with padding
 * longer than 7 bits or not made of the most significant bits of EOS (§5.2). `dst` must hold at
 * least {@linkcode huffmanDecodedMaxLength} of the input length.
 */
export function huffmanDecode(
  src: Uint8Array,
  start: number,
  end: number,
  dst: Uint8Array,
): number {
  let state = 0;
  let written = 0;
  for (let i = start; i < end; i++) {
    const entry = DECODE_TABLE[(state << 8) | src[i]];
    const count = entry >>> 24;
    if (count !== 0) {
      if (count === DECODE_EOS) return -1;
      // Typed-array stores keep the low 8 bits, which is the symbol in that position.
      dst[written++] = entry >>> 8;
      if (count === 2) dst[written++] = entry >>> 16;
    }
    state = entry & 0xff;
  }
  return ACCEPTS[state] === 1 ? written : -1;
}

/** The most octets `length` Huffman-coded octets can decode to: the shortest code is 5 bits. */
export function huffmanDecodedMaxLength(length: number): number {
  return Math.ceil((length * 8) / 5);
}

/**
 * The number of octets {@linkcode huffmanEncode} produces for `text`, or -1 when `text` has a
 * character above 255, which no latin1 header string has.
 */
export function huffmanEncodedLength(text: string): number {
  let bits = 0;
  let all = 0;
  for (let i = 0; i < text.length; i++) {
    const symbol = text.charCodeAt(i);
    all |= symbol;
    bits += LENGTHS[symbol];
  }
  // Checked once at the end: above 255 LENGTHS has EOS (256) and then undefined.
  return all < 256 ? (bits + 7) >>> 3 : -1;
}

/**
 * Huffman-codes `text` (characters 0–255) into `dst` at `at`, pads the last octet with the
 * most significant bits of EOS (§5.2), and returns the position after the last octet written.
 * `dst` must have {@linkcode huffmanEncodedLength} octets free from `at`.
 */
export function huffmanEncode(text: string, dst: Uint8Array, at: number): number {
  // `pending` low bits of `bits` are not yet written (fewer than 8 between symbols). Higher
  // bits of `bits` were written already and fall off the top as it shifts.
  let bits = 0;
  let pending = 0;
  for (let i = 0; i < text.length; i++) {
    const symbol = text.charCodeAt(i);
    let code = CODES[symbol];
    let length = LENGTHS[symbol];
    if (length > 25) {
      // Up to 7 pending bits plus a code over 25 bits would overflow 32: write its top first.
      const high = length - 16;
      bits = (bits << high) | (code >>> 16);
      pending += high;
      while (pending >= 8) {
        pending -= 8;
        dst[at++] = bits >>> pending;
      }
      code &= 0xffff;
      length = 16;
    }
    bits = (bits << length) | code;
    pending += length;
    while (pending >= 8) {
      pending -= 8;
      dst[at++] = bits >>> pending;
    }
  }
  if (pending > 0) dst[at++] = (bits << (8 - pending)) | (0xff >>> pending);
  return at;
}
