/**
 * The hash behind `ring_hash` and every request hash: xxHash32 (Yann Collet's XXH32, seed 0)
 * of the UTF-8 bytes of a string.
 *
 * Why xxHash32: it is the 32-bit sibling of the xxHash64 that Envoy's ring hash and gRPC's
 * (gRFC A42) use for rings and request hashes; it passes SMHasher's distribution and
 * avalanche tests, so ring points and keys spread evenly even for near-identical inputs
 * (`10.0.0.1:50051_0`, `…_1`, `user-1`, `user-2`); and it needs only 32-bit integer
 * arithmetic, which JavaScript does exactly with `Math.imul` and `>>> 0`. xxHash64 would need
 * BigInt (an allocation per step) or emulated 64-bit multiplies on every call. 32 bits are
 * enough here: they index a ring of at most 8M points, and a collision between two ring
 * points only decides which of them comes first. A cryptographic hash would cost far more
 * and buy nothing, since keys are not secret and an attacker choosing keys can only choose
 * which backend they go to, which a hash cannot prevent anyway.
 *
 * Hashing is allocation-free: the string is encoded into a reused scratch buffer.
 * @module
 */

const PRIME1 = 0x9e3779b1;
const PRIME2 = 0x85ebca77;
const PRIME3 = 0xc2b2ae3d;
const PRIME4 = 0x27d4eb2f;
const PRIME5 = 0x165667b1;

/** UTF-8 of the string being hashed; grows for long keys, never shrinks. */
let scratch = new Uint8Array(256);

function rotl(value: number, bits: number): number {
  return (value << bits) | (value >>> (32 - bits));
}

function read32(bytes: Uint8Array, at: number): number {
  return bytes[at] | (bytes[at + 1] << 8) | (bytes[at + 2] << 16) | (bytes[at + 3] << 24);
}

function round(accumulator: number, lane: number): number {
  return Math.imul(rotl((accumulator + Math.imul(lane, PRIME2)) | 0, 13), PRIME1);
}

/** xxHash32 of `bytes[0, length)` with `seed`, as an unsigned 32-bit integer. */
export function xxHash32(bytes: Uint8Array, length: number = bytes.length, seed = 0): number {
  let at = 0;
  let hash: number;
  if (length >= 16) {
    let v1 = (seed + PRIME1 + PRIME2) | 0;
    let v2 = (seed + PRIME2) | 0;
    let v3 = seed | 0;
    let v4 = (seed - PRIME1) | 0;
    const limit = length - 16;
    while (at <= limit) {
      v1 = round(v1, read32(bytes, at));
      v2 = round(v2, read32(bytes, at + 4));
      v3 = round(v3, read32(bytes, at + 8));
      v4 = round(v4, read32(bytes, at + 12));
      at += 16;
    }
    hash = (rotl(v1, 1) + rotl(v2, 7) + rotl(v3, 12) + rotl(v4, 18)) | 0;
  } else {
    hash = (seed + PRIME5) | 0;
  }
  hash = (hash + length) | 0;
  while (at + 4 <= length) {
    hash = (hash + Math.imul(read32(bytes, at), PRIME3)) | 0;
    hash = Math.imul(rotl(hash, 17), PRIME4);
    at += 4;
  }
  while (at < length) {
    hash = (hash + Math.imul(bytes[at], PRIME5)) | 0;
    hash = Math.imul(rotl(hash, 11), PRIME1);
    at++;
  }
  hash ^= hash >>> 15;
  hash = Math.imul(hash, PRIME2);
  hash ^= hash >>> 13;
  hash = Math.imul(hash, PRIME3);
  hash ^= hash >>> 16;
  return hash >>> 0;
}

/**
 * xxHash32 of the UTF-8 encoding of `text.slice(start, end)`, without slicing or allocating
 * (a lone surrogate counts as U+FFFD, as `TextEncoder` encodes it).
 */
export function hashString(text: string, start = 0, end: number = text.length): number {
  const units = end - start;
  if (scratch.length < units * 3) scratch = new Uint8Array(units * 3);
  const bytes = scratch;
  let length = 0;
  for (let i = start; i < end; i++) {
    let code = text.charCodeAt(i);
    if (code < 0x80) {
      bytes[length++] = code;
      continue;
    }
    if (code < 0x800) {
      bytes[length++] = 0xc0 | (code >> 6);
      bytes[length++] = 0x80 | (code & 0x3f);
      continue;
    }
    if (code >= 0xd800 && code <= 0xdfff) {
      const next = i + 1 < end ? text.charCodeAt(i + 1) : 0;
      if (code <= 0xdbff && next >= 0xdc00 && next <= 0xdfff) {
        code = 0x10000 + ((code - 0xd800) << 10) + (next - 0xdc00);
        i++;
        bytes[length++] = 0xf0 | (code >> 18);
        bytes[length++] = 0x80 | ((code >> 12) & 0x3f);
        bytes[length++] = 0x80 | ((code >> 6) & 0x3f);
        bytes[length++] = 0x80 | (code & 0x3f);
        continue;
      }
      code = 0xfffd;
    }
    bytes[length++] = 0xe0 | (code >> 12);
    bytes[length++] = 0x80 | ((code >> 6) & 0x3f);
    bytes[length++] = 0x80 | (code & 0x3f);
  }
  return xxHash32(bytes, length);
}
