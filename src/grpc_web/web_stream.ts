/**
 * One gRPC-Web call seen as a {@link TransportStream}, so the relay carries it exactly as it
 * carries a native gRPC call: the request body arrives whole (browsers send it at once), and
 * the response streams back as gRPC-Web frames, with the trailers as the last frame.
 *
 * Like the HTTP/2 engine's streams, no method throws back into the relay, and every ending
 * reaches the relay exactly once through `onClose`.
 * @module
 */
import { componentLogger } from "../log/logger.ts";
import { GrpcStatus, statusTrailers } from "../proxy/grpc_status.ts";
import {
  CloseCause,
  type HeaderList,
  type StreamHandler,
  type TransportStream,
} from "../transport/stream.ts";
import { encodeBase64, trailerFrame } from "./codec.ts";

const log = componentLogger("grpc_web");

/** RST_STREAM codes the relay resets a client stream with (RFC 9113 §7). */
const REFUSED_STREAM = 0x7;
const CANCEL = 0x8;

/** Response bytes queued for a slow browser before the backend's window stops. */
const HIGH_WATER_BYTES = 256 * 1024;

/**
 * Backend response headers that describe the backend's HTTP/2 message, not the call: the
 * gRPC-Web body has another length (a trailer frame, base64), and CORS is this listener's.
 */
const NOT_RETURNED: ReadonlySet<string> = new Set([
  "connection",
  "content-length",
  "content-type",
  "keep-alive",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
]);

/** How a call's response is shaped. */
export interface WebResponseShape {
  /** The response content type: the request's family (`application/grpc-web(-text)(+proto)`). */
  readonly contentType: string;
  /** Base64 (`-text`) rather than binary frames. */
  readonly text: boolean;
  /** CORS headers for this request's origin, added to the response. */
  readonly cors: Headers;
  /** A response the browser stops reading for this long is ended (`http2.sendTimeout`). */
  readonly sendTimeoutMs: number;
}

/** The client half of one gRPC-Web call. */
export class GrpcWebStream implements TransportStream {
  /** See {@link TransportStream.handler}. */
  handler: StreamHandler | undefined;
  /** See {@link TransportStream.resetCode}. */
  resetCode = 0;
  /** See {@link TransportStream.closeReason}. */
  closeReason = "";
  readonly #shape: WebResponseShape;
  readonly #respond: (response: Response) => void;
  readonly #onEnd: () => void;
  #controller: ReadableStreamDefaultController<Uint8Array> | undefined;
  /** Bytes handed to {@link sendData} not yet reported through `onFlushed`. */
  #unflushed = 0;
  #stallTimer: ReturnType<typeof setTimeout> | undefined;
  #flushQueued = false;
  readonly #flushSoon = (): void => {
    this.#flushQueued = false;
    this.#flushed();
  };
  #responded = false;
  #closed = false;

  /**
   * A stream that answers through `respond` (the `Deno.serve` handler's response) and calls
   * `onEnd` once it is over.
   */
  constructor(shape: WebResponseShape, respond: (response: Response) => void, onEnd: () => void) {
    this.#shape = shape;
    this.#respond = respond;
    this.#onEnd = onEnd;
  }

  /** See {@link TransportStream.queuedBytes}: what the browser has not read yet. */
  get queuedBytes(): number {
    return this.#unflushed;
  }

  /** Hands the whole request body to the relay. */
  deliver(body: Uint8Array): void {
    this.#notify(() => this.handler?.onData(this, body, true));
  }

  /** The browser went away (the fetch was aborted or the connection closed). */
  cancel(reason: string): void {
    if (this.#closed) return;
    this.resetCode = CANCEL;
    // Nobody reads it, but the server waits for every handler's answer before it shuts down.
    this.#answer(statusTrailers(GrpcStatus.CANCELLED, reason));
    this.#close(CloseCause.PEER_RESET, reason);
  }

  /** See {@link TransportStream.sendHeaders}: trailers-only responses end here. */
  sendHeaders(headers: HeaderList, endStream: boolean): void {
    if (this.#closed || this.#responded) return;
    if (endStream) {
      this.#answer(headers);
      this.#finishSoon();
      return;
    }
    const body = new ReadableStream<Uint8Array>({
      start: (controller) => {
        this.#controller = controller;
      },
      pull: () => this.#pulled(),
      cancel: () => this.cancel("the browser stopped reading the response"),
    }, new ByteLengthQueuingStrategy({ highWaterMark: HIGH_WATER_BYTES }));
    if (!this.#answer(headers, body)) {
      this.#controller = undefined;
      this.#close(CloseCause.LOCAL_RESET, "the backend's response headers cannot be sent");
    }
  }

  /** See {@link TransportStream.sendData}: gRPC messages are gRPC-Web messages unchanged. */
  sendData(data: Uint8Array, endStream: boolean): void {
    if (this.#closed || !this.#controller) return;
    this.#enqueue(data, true);
    this.#unflushed += data.length;
    if ((this.#controller.desiredSize ?? 0) > 0) {
      // Once per turn, however many chunks it carries: the credit goes out in one piece.
      if (!this.#flushQueued) queueMicrotask(this.#flushSoon);
      this.#flushQueued = true;
    } else this.#stallTimer ??= setTimeout(() => this.#stalled(), this.#shape.sendTimeoutMs);
    if (endStream) this.#endBody();
  }

  /** See {@link TransportStream.sendTrailers}: the last frame, with the 0x80 flag. */
  sendTrailers(trailers: HeaderList): void {
    if (this.#closed) return;
    if (!this.#responded) {
      this.sendHeaders([":status", "200", ...trailers], true);
      return;
    }
    this.#endWithTrailers(trailers);
  }

  /**
   * See {@link TransportStream.reset}. gRPC-Web has no reset: the status the client would have
   * derived from it (as gRPC clients map RST_STREAM codes) ends the response instead.
   */
  reset(code: number): void {
    if (this.#closed) return;
    this.resetCode = code;
    const status = code === CANCEL
      ? GrpcStatus.CANCELLED
      : code === REFUSED_STREAM
      ? GrpcStatus.UNAVAILABLE
      : GrpcStatus.INTERNAL;
    const trailers = statusTrailers(status, `stream reset by the proxy (code ${code})`);
    if (this.#responded) {
      this.#endWithTrailers(trailers);
    } else {
      this.#answer(trailers);
    }
    this.#close(CloseCause.LOCAL_RESET, `reset with code ${code}`);
  }

  /** See {@link TransportStream.consume}: the body arrived whole; there is no window. */
  consume(_bytes: number): void {}

  /**
   * Answers the request with `headers` (and `body`, or none for trailers-only). Headers a
   * browser response cannot carry are left out; false when even that fails.
   */
  #answer(headers: HeaderList, body: ReadableStream<Uint8Array> | null = null): boolean {
    if (this.#responded) return true;
    const out = new Headers(this.#shape.cors);
    const exposed = ["grpc-status", "grpc-message"];
    for (let i = 0; i < headers.length; i += 2) {
      const name = headers[i];
      if (name.startsWith(":") || NOT_RETURNED.has(name) || name.startsWith("access-control-")) {
        continue;
      }
      try {
        out.append(name, headers[i + 1]);
      } catch {
        continue; // a name HTTP/2 allows but an HTTP/1.1 response cannot carry
      }
      if (!exposed.includes(name)) exposed.push(name);
    }
    out.set("content-type", this.#shape.contentType);
    // Browsers show scripts only the response headers CORS exposes: the status and metadata.
    if (out.has("access-control-allow-origin")) {
      out.set("access-control-expose-headers", exposed.join(", "));
    }
    try {
      // gRPC-Web answers 200 whatever the outcome: the status is grpc-status.
      this.#respond(new Response(body, { status: 200, headers: out }));
      this.#responded = true;
      return true;
    } catch (error) {
      log.debug("gRPC-Web response could not be built: {error}", { error: String(error) });
      const fallback = new Headers(this.#shape.cors);
      fallback.set("content-type", this.#shape.contentType);
      fallback.set("grpc-status", String(GrpcStatus.INTERNAL));
      fallback.set("grpc-message", "the backend's response headers cannot be sent to a browser");
      this.#respond(new Response(null, { status: 200, headers: fallback }));
      this.#responded = true;
      return false;
    }
  }

  /**
   * Queues bytes for the browser as the content type carries them: base64 for `-text`, else
   * as they are, copied when `borrowed` (a view into the backend connection's read buffer).
   */
  #enqueue(chunk: Uint8Array, borrowed = false): void {
    try {
      this.#controller?.enqueue(
        this.#shape.text ? encodeBase64(chunk) : borrowed ? chunk.slice() : chunk,
      );
    } catch {
      // The browser cancelled the response meanwhile; cancel() reports it.
    }
  }

  /** The browser read enough to make room: it is not stalled, and the backend gets credit. */
  #pulled(): void {
    clearTimeout(this.#stallTimer);
    this.#stallTimer = undefined;
    this.#flushed();
  }

  /** What was queued within the mark counts as sent: credit the backend with it. */
  #flushed(): void {
    if (this.#unflushed === 0 || this.#closed) return;
    const bytes = this.#unflushed;
    this.#unflushed = 0;
    this.#notify(() => this.handler?.onFlushed(this, bytes));
  }

  /** The browser has read nothing for `sendTimeoutMs`: end the response, as HTTP/2 does. */
  #stalled(): void {
    this.#stallTimer = undefined;
    if (this.#closed) return;
    try {
      this.#controller?.error(new Error("the browser stopped reading"));
    } catch {
      // Closed meanwhile.
    }
    this.#close(CloseCause.LOCAL_RESET, `no progress for ${this.#shape.sendTimeoutMs}ms`);
  }

  /** The last frame: the trailers, flag 0x80. */
  #endWithTrailers(trailers: HeaderList): void {
    this.#enqueue(trailerFrame(trailers));
    this.#endBody();
  }

  #endBody(): void {
    try {
      this.#controller?.close();
    } catch {
      // Cancelled by the browser meanwhile.
    }
    this.#finishSoon();
  }

  /** Both halves are done; the relay hears of it after the call that ended it returns. */
  #finishSoon(): void {
    queueMicrotask(() => this.#close(CloseCause.DONE, ""));
  }

  #close(cause: CloseCause, reason: string): void {
    if (this.#closed) return;
    this.#closed = true;
    this.closeReason = reason;
    clearTimeout(this.#stallTimer);
    this.#onEnd();
    this.#notify(() => this.handler?.onClose(this, cause));
  }

  /** Calls into the relay from timers, stream callbacks and microtasks: a bug costs one call. */
  #notify(callback: () => void): void {
    try {
      callback();
    } catch (error) {
      log.error("gRPC-Web call failed inside the proxy: {error}", {
        error: String((error as Error)?.stack ?? error),
      });
    }
  }
}
