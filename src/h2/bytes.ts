/**
 * A growable byte buffer that frames and header blocks are serialized into. One per
 * connection direction, reused across writes, so serializing a frame allocates nothing once
 * the buffer has grown to the connection's working size. Also the one-off concatenation of
 * byte arrays, for paths that are not per frame.
 * @module
 */

/** Concatenates byte arrays into a new one. */
export function concatBytes(...parts: readonly Uint8Array[]): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/** Appends bytes to a reusable backing array, doubling it when full. */
export class ByteBuffer {
  /** The backing array; valid bytes are `bytes[0..length)`. */
  bytes: Uint8Array;
  /** How many bytes are filled. */
  length = 0;

  /** Creates a buffer with `capacity` bytes of backing store. */
  constructor(capacity = 1024) {
    this.bytes = new Uint8Array(capacity);
  }

  /** Makes room for `extra` more bytes. */
  reserve(extra: number): void {
    const needed = this.length + extra;
    if (needed <= this.bytes.length) return;
    let capacity = this.bytes.length * 2;
    while (capacity < needed) capacity *= 2;
    const grown = new Uint8Array(capacity);
    grown.set(this.bytes.subarray(0, this.length));
    this.bytes = grown;
  }

  /** Appends one byte. */
  pushByte(byte: number): void {
    if (this.length === this.bytes.length) this.reserve(1);
    this.bytes[this.length++] = byte;
  }

  /** Appends `source[start..end)`. */
  pushBytes(source: Uint8Array, start = 0, end: number = source.length): void {
    const count = end - start;
    this.reserve(count);
    this.bytes.set(
      start === 0 && end === source.length ? source : source.subarray(start, end),
      this.length,
    );
    this.length += count;
  }

  /**
   * Appends a string whose characters are all below 256, one byte each (latin1). Header
   * names and values are carried this way, so any octet a peer sends round-trips exactly.
   */
  pushLatin1(text: string): void {
    const count = text.length;
    this.reserve(count);
    const bytes = this.bytes;
    let at = this.length;
    for (let i = 0; i < count; i++) bytes[at++] = text.charCodeAt(i);
    this.length = at;
  }

  /** Forgets the contents and keeps the backing array. */
  clear(): void {
    this.length = 0;
  }
}
