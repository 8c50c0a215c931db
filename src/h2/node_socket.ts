/**
 * A `node:net` or `node:tls` socket as the engine's {@link Socket}. Deno's own TLS cannot ask
 * a client for a certificate, nor give a backend a name other than the address dialled together
 * with a client certificate, nor skip verification, nor trust a configured CA alone, nor give
 * up a handshake (see `upstream/tls_dial.ts`); `node:tls` can, so those connections come
 * through this adapter. Every other connection uses Deno's sockets directly.
 * @module
 */
import type { Socket as NetSocket } from "node:net";
import type { Socket } from "./connection.ts";

/** Received bytes held for the engine before the socket is paused. */
const MAX_QUEUED_BYTES = 256 * 1024;

/** Reads pull from the chunks the socket delivered; a write resolves once it is flushed. */
export class NodeSocket implements Socket {
  readonly #socket: NetSocket;
  readonly #chunks: Uint8Array[] = [];
  /** Bytes of `#chunks[0]` already read. */
  #offset = 0;
  #queued = 0;
  #ended = false;
  #error: Error | undefined;
  #wake: (() => void) | undefined;

  /** Wraps `socket`, which must be connected (for TLS: past its handshake). */
  constructor(socket: NetSocket) {
    this.#socket = socket;
    socket.on("data", (chunk: Uint8Array) => {
      this.#chunks.push(chunk);
      this.#queued += chunk.length;
      // The engine stops reading while its peer does not read its answers; so does the socket.
      if (this.#queued >= MAX_QUEUED_BYTES) socket.pause();
      this.#wakeReader();
    });
    socket.on("end", () => {
      this.#ended = true;
      this.#wakeReader();
    });
    socket.on("close", () => {
      this.#ended = true;
      this.#wakeReader();
    });
    socket.on("error", (error: Error) => {
      this.#error = error;
      this.#wakeReader();
    });
  }

  /** The socket underneath, for what only it knows (the peer's certificate). */
  get socket(): NetSocket {
    return this.#socket;
  }

  /** See {@link Socket.read}: resolves with the bytes copied, or `null` at the end. */
  async read(buffer: Uint8Array): Promise<number | null> {
    while (this.#chunks.length === 0) {
      if (this.#error) throw this.#error;
      if (this.#ended) return null;
      await new Promise<void>((resolve) => this.#wake = resolve);
    }
    let count = 0;
    while (count < buffer.length && this.#chunks.length > 0) {
      const chunk = this.#chunks[0];
      const take = Math.min(buffer.length - count, chunk.length - this.#offset);
      buffer.set(chunk.subarray(this.#offset, this.#offset + take), count);
      count += take;
      this.#offset += take;
      if (this.#offset === chunk.length) {
        this.#chunks.shift();
        this.#offset = 0;
      }
    }
    this.#queued -= count;
    if (this.#socket.isPaused() && this.#queued < MAX_QUEUED_BYTES) this.#socket.resume();
    return count;
  }

  /** See {@link Socket.write}: every byte is written; resolves once the socket flushed them. */
  write(bytes: Uint8Array): Promise<number> {
    if (this.#error) return Promise.reject(this.#error);
    return new Promise((resolve, reject) => {
      // The engine reuses the buffer once this resolves, and node keeps it until flushed.
      this.#socket.write(bytes, (error) => error ? reject(error) : resolve(bytes.length));
    });
  }

  /** See {@link Socket.close}. */
  close(): void {
    this.#socket.destroy();
  }

  #wakeReader(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }
}
