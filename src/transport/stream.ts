/**
 * What the relay sees of an HTTP/2 stream, whichever engine carries it: header lists, data
 * with flow-control credit, trailers, resets and the stream's end. The relay implements
 * {@link StreamHandler} once per call and is told about both of its streams through it, so
 * no call allocates listener closures. Header lists are read and edited in place with
 * {@link headerValue}, {@link setHeader} and {@link removeHeader}, by the engine and the relay alike.
 * @module
 */

/**
 * A header list as flat `[name, value, name, value, ...]` pairs, in wire order. Names are
 * lower case; values are latin1 strings (one char per octet), so every octet round-trips.
 */
export type HeaderList = string[];

/** The value of the first field called `name` in `headers`, or `undefined`. */
export function headerValue(headers: readonly string[], name: string): string | undefined {
  for (let i = 0; i < headers.length; i += 2) {
    if (headers[i] === name) return headers[i + 1];
  }
  return undefined;
}

/**
 * Replaces the first `name` field's value, or adds the field; removes any later ones. A new
 * pseudo-header goes before the regular fields (RFC 9113 §8.3).
 */
export function setHeader(headers: HeaderList, name: string, value: string): void {
  let found = false;
  for (let i = 0; i < headers.length; i += 2) {
    if (headers[i] !== name) continue;
    if (!found) {
      headers[i + 1] = value;
      found = true;
    } else {
      headers.splice(i, 2);
      i -= 2;
    }
  }
  if (found) return;
  if (name[0] !== ":") {
    headers.push(name, value);
    return;
  }
  let at = 0;
  while (at < headers.length && headers[at][0] === ":") at += 2;
  headers.splice(at, 0, name, value);
}

/** Removes every `name` field. */
export function removeHeader(headers: HeaderList, name: string): void {
  for (let i = headers.length - 2; i >= 0; i -= 2) {
    if (headers[i] === name) headers.splice(i, 2);
  }
}

/** Why a stream ended, as {@link StreamHandler.onClose} reports it. */
export const CloseCause = {
  /** Both sides ended their halves (END_STREAM each way). */
  DONE: 0,
  /** The peer sent RST_STREAM; the code is in `stream.resetCode`. */
  PEER_RESET: 1,
  /** This side reset the stream (through {@link TransportStream.reset} or an engine limit). */
  LOCAL_RESET: 2,
  /** The connection failed or closed under the stream. */
  CONNECTION_LOST: 3,
  /** The peer did not process the stream (beyond its GOAWAY's last stream id): safe to retry. */
  UNPROCESSED: 4,
  /** The stream never left this process (its connection failed or closed first): safe to retry. */
  NOT_SENT: 5,
} as const;

/** One of {@link CloseCause}. */
export type CloseCause = typeof CloseCause[keyof typeof CloseCause];

/** Events of one stream. Chunks and header lists are only valid during the call. */
export interface StreamHandler {
  /** A HEADERS block: request or response headers, or trailers (then `endStream`). */
  onHeaders(stream: TransportStream, headers: HeaderList, endStream: boolean): void;
  /**
   * DATA payload, a view into the connection's read buffer: copy it or write it on before
   * returning. Credit it with {@link TransportStream.consume} once it has been written on.
   */
  onData(stream: TransportStream, data: Uint8Array, endStream: boolean): void;
  /** `bytes` of what was passed to {@link TransportStream.sendData} went out to the connection. */
  onFlushed(stream: TransportStream, bytes: number): void;
  /** The stream is over; nothing more is delivered. `stream.closeReason` says why when not DONE. */
  onClose(stream: TransportStream, cause: CloseCause): void;
}

/** One HTTP/2 stream, as the relay uses it. */
export interface TransportStream {
  /** Receives this stream's events. */
  handler: StreamHandler | undefined;
  /** The RST_STREAM code once the stream was reset (by either side). */
  readonly resetCode: number;
  /** A human-readable reason when the stream ended other than cleanly. */
  readonly closeReason: string;
  /** Bytes handed to {@link sendData} that wait for flow-control window. */
  readonly queuedBytes: number;
  /** Sends a HEADERS block (with CONTINUATION as needed); `endStream` ends this side. */
  sendHeaders(headers: HeaderList, endStream: boolean): void;
  /** Sends data within the peer's windows; the rest waits in the stream (copied). */
  sendData(data: Uint8Array, endStream: boolean): void;
  /** Ends this side with trailers, after any queued data. */
  sendTrailers(trailers: HeaderList): void;
  /** Resets the stream with `code` (RST_STREAM alone, no END_STREAM before it). */
  reset(code: number): void;
  /** Returns `bytes` of received data to the peer's flow-control window. */
  consume(bytes: number): void;
}
