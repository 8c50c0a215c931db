/**
 * A raw-frame HTTP/2 backend: the server side of the wire, written frame by frame with the
 * encoders of `h2_wire.ts`, for tests whose backend must do what `node:http2` and grpc-js
 * never do (DATA before the response HEADERS, a 1xx response with END_STREAM, a SETTINGS
 * frame that comes late, responses to streams the proxy already cancelled).
 *
 * It acknowledges SETTINGS and PING (RFC 9113 §6.5.3, §6.7) and records every frame the
 * proxy sends; everything else, including answering requests, is up to the test through
 * {@link RawBackendConnection}. Request header blocks are not decoded: tests tell streams
 * apart by their order.
 * @module
 */
import { startTcpBackend } from "./tcp_backend.ts";
import { waitFor } from "./harness.ts";
import {
  CLIENT_PREFACE,
  concatBytes,
  DEFAULT_TIMEOUT_MS,
  encodeFieldBlock,
  encodeFrame,
  errorName,
  Flag,
  type Frame,
  FRAME_HEADER_LENGTH,
  FrameType,
  type Goaway,
  type HeaderField,
  parseGoaway,
  readUint32,
  type SettingEntry,
  settingsPayload,
  uint32,
} from "./h2_wire.ts";
import { grpcFrame } from "./raw_h2.ts";

/** The header section of a successful gRPC response (RFC 9113 §8.1, gRPC over HTTP/2). */
export const GRPC_RESPONSE_HEADERS: readonly HeaderField[] = [
  [":status", "200"],
  ["content-type", "application/grpc"],
];

/** Options for {@link startH2RawBackend}. */
export interface RawBackendOptions {
  /** The SETTINGS the backend announces on every connection; none by default. */
  readonly settings?: readonly SettingEntry[];
  /**
   * How long the backend waits before its SETTINGS on the connection with this index (0 for
   * the first accepted): a slow handshake. No delay by default.
   */
  readonly settingsDelayMs?: (connectionIndex: number) => number;
  /** Called for each stream the proxy opens (its first HEADERS frame), in arrival order. */
  readonly onStream?: (connection: RawBackendConnection, streamId: number) => void;
}

/** One connection the proxy opened to the backend. */
export class RawBackendConnection {
  /** The order in which the backend accepted it, from 0. */
  readonly index: number;
  /** Every frame the proxy sent, in arrival order. */
  readonly frames: Frame[] = [];
  /** Streams the proxy opened, in order. */
  readonly streams: number[] = [];
  /** RST_STREAM error codes the proxy sent, by stream. */
  readonly resets: Map<number, number> = new Map();
  /** The sum of the proxy's connection-level WINDOW_UPDATE increments (RFC 9113 §6.9). */
  connectionCredit = 0;
  readonly #conn: Deno.TcpConn;
  #closed = false;
  #pingCounter = 0;
  #writes: Promise<void> = Promise.resolve();

  /** Wraps an accepted socket; {@link startH2RawBackend} creates these. */
  constructor(conn: Deno.TcpConn, index: number) {
    this.#conn = conn;
    this.index = index;
  }

  /** True once either side closed the TCP connection. */
  get closed(): boolean {
    return this.#closed;
  }

  /** The GOAWAY frames the proxy sent on this connection. */
  goaways(): Goaway[] {
    return this.frames.filter((f) => f.type === FrameType.GOAWAY).map(parseGoaway);
  }

  /** Writes raw octets, in order with every other write; a closed socket is ignored. */
  write(bytes: Uint8Array): Promise<void> {
    this.#writes = this.#writes.then(async () => {
      try {
        for (let at = 0; at < bytes.length;) at += await this.#conn.write(bytes.subarray(at));
      } catch {
        // The proxy closed the connection: what a test sends afterwards is lost, as on a wire.
      }
    });
    return this.#writes;
  }

  /** Writes HEADERS carrying `fields` (one frame, END_HEADERS; RFC 9113 §6.2). */
  sendHeaders(streamId: number, fields: readonly HeaderField[], endStream = false): Promise<void> {
    return this.write(headersFrame(streamId, fields, endStream));
  }

  /** Writes one DATA frame (RFC 9113 §6.1). */
  sendData(streamId: number, data: Uint8Array, endStream = false): Promise<void> {
    return this.write(dataFrame(streamId, data, endStream));
  }

  /** Writes GOAWAY (RFC 9113 §6.8). */
  sendGoaway(lastStreamId: number, errorCode: number): Promise<void> {
    return this.write(encodeFrame({
      type: FrameType.GOAWAY,
      payload: concatBytes(uint32(lastStreamId), uint32(errorCode)),
    }));
  }

  /**
   * Answers a gRPC call in one write: response HEADERS, `message` as one gRPC message, and
   * trailers with `grpc-status` `status`.
   */
  respond(streamId: number, message: Uint8Array = new Uint8Array(), status = 0): Promise<void> {
    return this.write(concatBytes(
      headersFrame(streamId, GRPC_RESPONSE_HEADERS, false),
      dataFrame(streamId, grpcFrame(message), false),
      headersFrame(streamId, [["grpc-status", String(status)]], true),
    ));
  }

  /**
   * A PING round trip: the proxy answers frames in order (RFC 9113 §6.7), so once the ACK is
   * back it has processed everything written before, and what it sent before the ACK is in
   * {@link frames}.
   */
  async ping(timeoutMs = DEFAULT_TIMEOUT_MS): Promise<void> {
    const payload = concatBytes(uint32(0xbac0_0000), uint32(++this.#pingCounter));
    const isAck = (f: Frame) =>
      f.type === FrameType.PING && (f.flags & Flag.ACK) !== 0 &&
      f.payload.every((octet, i) => octet === payload[i]);
    await this.write(encodeFrame({ type: FrameType.PING, payload }));
    await waitFor(() => this.frames.some(isAck) || this.#closed, {
      timeoutMs,
      what: `the proxy's PING ACK on backend connection ${this.index}`,
    });
    if (!this.frames.some(isAck)) {
      const goaways = this.goaways().map((g) =>
        `GOAWAY ${errorName(g.errorCode)} "${g.debugData}"`
      );
      throw new Error(
        `backend connection ${this.index} closed before the PING ACK, after [${
          goaways.join(", ")
        }]`,
      );
    }
  }

  /** Closes the socket. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#conn.close();
    } catch { /* closed already */ }
  }

  /** Sends SETTINGS (after `delayMs`), then reads and answers until the socket closes. */
  async serve(options: RawBackendOptions): Promise<void> {
    const delayMs = options.settingsDelayMs?.(this.index) ?? 0;
    if (delayMs > 0) await new Promise((resolve) => setTimeout(resolve, delayMs));
    await this.write(encodeFrame({
      type: FrameType.SETTINGS,
      payload: settingsPayload(options.settings ?? []),
    }));
    let pending: Uint8Array = new Uint8Array();
    let prefaceSeen = false;
    const chunk = new Uint8Array(64 * 1024);
    try {
      for (let count = await this.#conn.read(chunk); count !== null;) {
        pending = concatBytes(pending, chunk.subarray(0, count));
        if (!prefaceSeen && pending.length >= CLIENT_PREFACE.length) {
          prefaceSeen = true;
          pending = pending.subarray(CLIENT_PREFACE.length);
        }
        if (prefaceSeen) pending = this.#onBytes(pending, options);
        count = await this.#conn.read(chunk);
      }
    } catch { /* reset by the proxy, or closed by the test */ }
    this.close();
  }

  /** Handles every whole frame at the front of `bytes`; returns the partial rest. */
  #onBytes(bytes: Uint8Array, options: RawBackendOptions): Uint8Array {
    let rest = bytes;
    for (;;) {
      if (rest.length < FRAME_HEADER_LENGTH) return rest;
      const length = (rest[0] << 16) | (rest[1] << 8) | rest[2];
      const frameEnd = FRAME_HEADER_LENGTH + length;
      if (rest.length < frameEnd) return rest;
      const frame: Frame = {
        type: rest[3],
        flags: rest[4],
        streamId: readUint32(rest, 5) & 0x7fff_ffff,
        payload: rest.slice(FRAME_HEADER_LENGTH, frameEnd),
      };
      rest = rest.subarray(frameEnd);
      this.frames.push(frame);
      this.#onFrame(frame, options);
    }
  }

  #onFrame(frame: Frame, options: RawBackendOptions): void {
    const acked = (frame.flags & Flag.ACK) !== 0;
    switch (frame.type) {
      case FrameType.SETTINGS:
        if (!acked) this.write(encodeFrame({ type: FrameType.SETTINGS, flags: Flag.ACK }));
        break;
      case FrameType.PING:
        if (!acked) {
          this.write(
            encodeFrame({ type: FrameType.PING, flags: Flag.ACK, payload: frame.payload }),
          );
        }
        break;
      case FrameType.WINDOW_UPDATE:
        if (frame.streamId === 0) this.connectionCredit += readUint32(frame.payload, 0);
        break;
      case FrameType.RST_STREAM:
        this.resets.set(frame.streamId, readUint32(frame.payload, 0));
        break;
      case FrameType.HEADERS:
        if (!this.streams.includes(frame.streamId)) {
          this.streams.push(frame.streamId);
          options.onStream?.(this, frame.streamId);
        }
        break;
    }
  }
}

/** A HEADERS frame with END_HEADERS carrying `fields` (RFC 9113 §6.2). */
export function headersFrame(
  streamId: number,
  fields: readonly HeaderField[],
  endStream: boolean,
): Uint8Array {
  return encodeFrame({
    type: FrameType.HEADERS,
    flags: Flag.END_HEADERS | (endStream ? Flag.END_STREAM : 0),
    streamId,
    payload: encodeFieldBlock(fields),
  });
}

/** One DATA frame (RFC 9113 §6.1). */
export function dataFrame(streamId: number, data: Uint8Array, endStream: boolean): Uint8Array {
  return encodeFrame({
    type: FrameType.DATA,
    flags: endStream ? Flag.END_STREAM : 0,
    streamId,
    payload: data,
  });
}

/** A running raw-frame backend. */
export interface H2RawBackend {
  /** `127.0.0.1:port`. */
  readonly address: string;
  /** Every connection accepted so far, in order. */
  readonly connections: readonly RawBackendConnection[];
  /**
   * Waits until connection `index` (0: the first accepted) has seen at least `count`
   * streams, and returns it.
   */
  streamsOn(count: number, index?: number): Promise<RawBackendConnection>;
  /** Stops listening, closes every connection and waits until all of it is done. */
  close(): Promise<void>;
}

/** Starts a raw-frame HTTP/2 (h2c) backend on a free loopback port. */
export function startH2RawBackend(options: RawBackendOptions = {}): H2RawBackend {
  const connections: RawBackendConnection[] = [];
  const served: Promise<void>[] = [];
  const tcp = startTcpBackend((conn, index) => {
    (conn as Deno.TcpConn).setNoDelay(true);
    const connection = new RawBackendConnection(conn as Deno.TcpConn, index);
    connections.push(connection);
    served.push(connection.serve(options));
  });
  return {
    address: tcp.address,
    connections,
    streamsOn: (count, index = 0) =>
      waitFor(
        () => (connections[index]?.streams.length ?? 0) >= count ? connections[index] : undefined,
        { what: `${count} streams on backend connection ${index}` },
      ),
    async close() {
      for (const connection of connections) connection.close();
      await tcp.close();
      await Promise.all(served);
    },
  };
}
