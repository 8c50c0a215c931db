/**
 * One HTTP/2 stream's state (RFC 9113 §5.1): its windows, what each side has ended, and the
 * data waiting for window. The logic lives in the connection, which implements
 * {@link StreamOwner}; a stream only forwards to it, so the two files import one way.
 * @module
 */
import type { HeaderList, StreamHandler, TransportStream } from "../transport/stream.ts";

/** What a stream needs from its connection. */
export interface StreamOwner {
  /** See {@link TransportStream.sendHeaders}. */
  sendHeaders(stream: H2Stream, headers: HeaderList, endStream: boolean): void;
  /** See {@link TransportStream.sendData}. */
  sendData(stream: H2Stream, data: Uint8Array, endStream: boolean): void;
  /** See {@link TransportStream.sendTrailers}. */
  sendTrailers(stream: H2Stream, trailers: HeaderList): void;
  /** See {@link TransportStream.reset}. */
  resetStream(stream: H2Stream, code: number, reason: string): void;
  /** See {@link TransportStream.consume}. */
  consume(stream: H2Stream, bytes: number): void;
}

/** A stream of an {@link StreamOwner} connection. Fields are the connection's to write. */
export class H2Stream implements TransportStream {
  /** The stream identifier; 0 while a client stream waits for a concurrency slot. */
  id = 0;
  /** See {@link TransportStream.handler}. */
  handler: StreamHandler | undefined;
  /** See {@link TransportStream.resetCode}. */
  resetCode = 0;
  /** See {@link TransportStream.closeReason}. */
  closeReason = "";
  /**
   * Response headers were sent (server side: rapid-reset accounting) or received (client
   * side: later HEADERS are trailers, and DATA before them is malformed).
   */
  headersDone = false;
  /** See {@link TransportStream.queuedBytes}. */
  queuedBytes = 0;
  /** The stream left its connection; nothing more is sent or delivered. */
  closed = false;
  /** This side sent END_STREAM (or has it queued behind data). */
  localEnded = false;
  /** The peer sent END_STREAM. */
  remoteEnded = false;
  /** What the peer may still send us (our receive window for this stream). */
  recvWindow = 0;
  /** Received data bytes the relay has not yet returned with {@link consume}. */
  recvUnconsumed = 0;
  /** Consumed bytes not yet announced with WINDOW_UPDATE. */
  recvUnacked = 0;
  /** What we may still send (the peer's window for this stream). */
  sendWindow = 0;
  /** Data waiting for window, in order; each chunk is this stream's own copy. */
  queue: Uint8Array[] = [];
  /** Offset into `queue[0]` of what is already sent. */
  queueOffset = 0;
  /** Trailers to send once the queue is empty. */
  queuedTrailers: HeaderList | undefined;
  /** Request headers of a client stream still waiting for a slot. */
  pendingHeaders: HeaderList | undefined;
  /** On the connection's list of streams waiting for window. */
  blocked = false;
  /** Epoch ms since when queued data made no progress; 0 when not waiting. */
  blockedSince = 0;
  /** A declared `content-length` (RFC 9113 §8.1.1), or -1. */
  expectedLength = -1;
  /** Data bytes received, checked against {@link expectedLength}. */
  receivedLength = 0;
  /**
   * The connection the stream is on. A client stream still waiting for a slot (id 0) may
   * move to another connection of the same backend that frees one first.
   */
  owner: StreamOwner;

  /** Creates a stream owned by `owner`. */
  constructor(owner: StreamOwner, handler: StreamHandler | undefined) {
    this.owner = owner;
    this.handler = handler;
  }

  /** See {@link TransportStream.sendHeaders}. */
  sendHeaders(headers: HeaderList, endStream: boolean): void {
    this.owner.sendHeaders(this, headers, endStream);
  }

  /** See {@link TransportStream.sendData}. */
  sendData(data: Uint8Array, endStream: boolean): void {
    this.owner.sendData(this, data, endStream);
  }

  /** See {@link TransportStream.sendTrailers}. */
  sendTrailers(trailers: HeaderList): void {
    this.owner.sendTrailers(this, trailers);
  }

  /** See {@link TransportStream.reset}. */
  reset(code: number): void {
    this.owner.resetStream(this, code, "");
  }

  /** See {@link TransportStream.consume}. */
  consume(bytes: number): void {
    this.owner.consume(this, bytes);
  }
}
