/**
 * One gRPC-Web call seen as a {@link TransportStream}, so the relay carries it exactly as it
 * carries a native gRPC call: the request body arrives whole (browsers send it at once), and
 * the response streams back as gRPC-Web frames, with the trailers as the last frame.
 * @module
 */
import {
  CloseCause,
  type HeaderList,
  type StreamHandler,
  type TransportStream,
} from "../transport/stream.ts";
import { GrpcStatus, statusTrailers } from "../proxy/grpc_status.ts";
import { encodeBase64, trailerFrame } from "./codec.ts";

/** RST_STREAM codes the relay resets a client stream with (RFC 9113 §7). */
const REFUSED_STREAM = 0x7;
const CANCEL = 0x8;

/** Response bytes queued for a slow browser before the backend's window stops. */
const HIGH_WATER_BYTES = 256 * 1024;

/** How a call's response is shaped. */
export interface WebResponseShape {
  /** The response content type: the request's family (`application/grpc-web(-text)(+proto)`). */
  readonly contentType: string;
  /** Base64 (`-text`) rather than binary frames. */
  readonly text: boolean;
  /** CORS headers for this request's origin, added to the response. */
  readonly cors: Headers;
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
  #controller: ReadableStreamDefaultController<Uint8Array> | undefined;
  /** Bytes handed to {@link sendData} not yet reported through `onFlushed`. */
  #unflushed = 0;
  #responded = false;
  #closed = false;

  /** A stream that answers through `respond` (the `Deno.serve` handler's response). */
  constructor(shape: WebResponseShape, respond: (response: Response) => void) {
    this.#shape = shape;
    this.#respond = respond;
  }

  /** See {@link TransportStream.queuedBytes}: what the browser has not read yet. */
  get queuedBytes(): number {
    return this.#unflushed;
  }

  /** Hands the whole request body to the relay. */
  deliver(body: Uint8Array): void {
    this.handler?.onData(this, body, true);
  }

  /** The browser went away (the fetch was aborted or the connection closed). */
  cancel(reason: string): void {
    if (this.#closed) return;
    this.resetCode = CANCEL;
    if (!this.#responded) {
      // Nobody reads it, but the server waits for every handler's answer before it shuts down.
      this.#responded = true;
      this.#respond(
        new Response(null, this.#headersOf(statusTrailers(GrpcStatus.CANCELLED, reason))),
      );
    }
    this.#close(CloseCause.PEER_RESET, reason);
  }

  /** See {@link TransportStream.sendHeaders}: trailers-only responses end here. */
  sendHeaders(headers: HeaderList, endStream: boolean): void {
    if (this.#closed || this.#responded) return;
    this.#responded = true;
    const response = this.#headersOf(headers);
    if (endStream) {
      this.#respond(new Response(null, response));
      this.#finishSoon();
      return;
    }
    const body = new ReadableStream<Uint8Array>({
      start: (controller) => {
        this.#controller = controller;
      },
      pull: () => this.#flushed(),
      cancel: () => this.cancel("the browser stopped reading the response"),
    }, new ByteLengthQueuingStrategy({ highWaterMark: HIGH_WATER_BYTES }));
    this.#respond(new Response(body, response));
  }

  /** See {@link TransportStream.sendData}: gRPC messages are gRPC-Web messages unchanged. */
  sendData(data: Uint8Array, endStream: boolean): void {
    const controller = this.#controller;
    if (this.#closed || !controller) return;
    controller.enqueue(this.#shape.text ? encodeBase64(data) : data.slice());
    this.#unflushed += data.length;
    if ((controller.desiredSize ?? 0) > 0) queueMicrotask(() => this.#flushed());
    if (endStream) this.#endBody();
  }

  /** See {@link TransportStream.sendTrailers}: the last frame, with the 0x80 flag. */
  sendTrailers(trailers: HeaderList): void {
    if (this.#closed) return;
    if (!this.#responded) {
      this.sendHeaders([":status", "200", ...trailers], true);
      return;
    }
    const frame = trailerFrame(trailers);
    this.#controller?.enqueue(this.#shape.text ? encodeBase64(frame) : frame);
    this.#endBody();
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
      const frame = trailerFrame(trailers);
      this.#controller?.enqueue(this.#shape.text ? encodeBase64(frame) : frame);
      this.#controller?.close();
    } else {
      this.#responded = true;
      this.#respond(new Response(null, this.#headersOf([":status", "200", ...trailers])));
    }
    this.#close(CloseCause.LOCAL_RESET, `reset with code ${code}`);
  }

  /** See {@link TransportStream.consume}: the body arrived whole; there is no window. */
  consume(_bytes: number): void {}

  #headersOf(headers: HeaderList): ResponseInit {
    const out = new Headers(this.#shape.cors);
    let status = 200;
    const exposed = ["grpc-status", "grpc-message"];
    for (let i = 0; i < headers.length; i += 2) {
      const name = headers[i];
      if (name === ":status") status = Number(headers[i + 1]);
      else if (name === "content-type") continue;
      else if (!name.startsWith(":")) {
        out.append(name, headers[i + 1]);
        if (!exposed.includes(name)) exposed.push(name);
      }
    }
    out.set("content-type", this.#shape.contentType);
    // Browsers show scripts only the response headers CORS exposes: the status and metadata.
    if (out.has("access-control-allow-origin")) {
      out.set("access-control-expose-headers", exposed.join(", "));
    }
    return { status, headers: out };
  }

  /** The browser read what was queued: credit the backend with it. */
  #flushed(): void {
    if (this.#unflushed === 0) return;
    const bytes = this.#unflushed;
    this.#unflushed = 0;
    this.handler?.onFlushed(this, bytes);
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
    this.handler?.onClose(this, cause);
  }
}
