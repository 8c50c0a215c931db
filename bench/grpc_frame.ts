/**
 * gRPC length-prefixed message framing (1 flag byte, 4-byte big-endian length), for the
 * bench's request bodies and for counting the messages of a response.
 * @module
 */

/** Bytes in a gRPC message prefix. */
export const GRPC_PREFIX_BYTES = 5;

/** Frames `payload` as one uncompressed gRPC message. */
export function frameGrpcMessage(payload: Uint8Array): Uint8Array<ArrayBuffer> {
  const framed = new Uint8Array(GRPC_PREFIX_BYTES + payload.length);
  new DataView(framed.buffer).setUint32(1, payload.length);
  framed.set(payload, GRPC_PREFIX_BYTES);
  return framed;
}

/**
 * Counts complete gRPC messages in a byte stream that arrives in arbitrary chunks, without
 * copying payloads: only the 5-byte prefixes are read.
 */
export class GrpcMessageCounter {
  /** Complete messages seen so far. */
  messages = 0;
  /** Payload bytes of complete messages. */
  payloadBytes = 0;
  /** Size of every complete message, or -1 once two sizes differed. */
  uniformSize: number | undefined;
  readonly #prefix = new Uint8Array(GRPC_PREFIX_BYTES);
  #prefixFill = 0;
  #payloadLeft = 0;
  #currentSize = 0;

  /** Consumes one chunk. */
  push(chunk: Uint8Array): void {
    let offset = 0;
    while (offset < chunk.length) {
      if (this.#payloadLeft > 0) {
        const take = Math.min(this.#payloadLeft, chunk.length - offset);
        this.#payloadLeft -= take;
        offset += take;
        if (this.#payloadLeft === 0) this.#completeMessage();
        continue;
      }
      this.#prefix[this.#prefixFill++] = chunk[offset++];
      if (this.#prefixFill < GRPC_PREFIX_BYTES) continue;
      this.#prefixFill = 0;
      this.#currentSize = new DataView(this.#prefix.buffer).getUint32(1);
      this.#payloadLeft = this.#currentSize;
      if (this.#currentSize === 0) this.#completeMessage();
    }
  }

  /** True when the stream ended on a message boundary. */
  get atBoundary(): boolean {
    return this.#prefixFill === 0 && this.#payloadLeft === 0;
  }

  #completeMessage(): void {
    this.messages++;
    this.payloadBytes += this.#currentSize;
    if (this.uniformSize === undefined) this.uniformSize = this.#currentSize;
    else if (this.uniformSize !== this.#currentSize) this.uniformSize = -1;
  }
}
