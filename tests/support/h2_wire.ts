/**
 * A raw HTTP/2 client for frame-level tests: it speaks the wire directly over `Deno.connect`,
 * so a test can send anything, including frames no real client would send (bad lengths,
 * reserved bits, padding that overruns, half-finished header blocks), and see every frame the
 * peer answers with.
 *
 * - Frames are written as given: {@link encodeFrame} only lays out the 9-octet header
 *   (RFC 9113 §4.1) and checks nothing, and `length` may lie about the payload.
 * - Header blocks are encoded by {@link encodeFieldBlock} as HPACK literals without indexing
 *   and without Huffman coding (RFC 7541 §6.2.2), which needs no compression state, so any
 *   name and value octets (uppercase, NUL, CR) reach the peer exactly as written.
 * - Incoming frames are parsed in the background into {@link Frame}s; the field blocks the
 *   peer sends are decoded with `hpack.js` in arrival order (one decoding context per
 *   connection, RFC 9113 §4.3), and the decoded list is attached to the frame that ends
 *   the block.
 * - Readers take frames out of an unread queue by predicate ({@link H2Wire.readUntil}), so
 *   several streams can be read at once; every wait has a deadline and none sleeps.
 *
 * The `expect*` helpers encode the RFC's two error classes: a connection error is a GOAWAY
 * carrying the code, then the TCP connection closing (§5.4.1); a stream error is a
 * RST_STREAM on that stream (§5.4.2).
 * @module
 */
import hpack from "hpack.js";
import { Buffer } from "node:buffer";
import { concatBytes } from "../../src/h2/bytes.ts";
export { concatBytes };
import { grpcFrame } from "./raw_h2.ts";

// The wire constants are the RFC's numbers; sharing the engine's copy keeps one source.
export {
  CLIENT_PREFACE,
  DEFAULT_WINDOW as DEFAULT_WINDOW_SIZE,
  ErrorCode,
  Flag,
  FRAME_HEADER_BYTES as FRAME_HEADER_LENGTH,
  FrameType,
  MAX_WINDOW as MAX_WINDOW_SIZE,
  MIN_MAX_FRAME_SIZE as DEFAULT_MAX_FRAME_SIZE,
  readUint32,
  Setting,
} from "../../src/h2/frame.ts";
import {
  CLIENT_PREFACE,
  ErrorCode,
  Flag,
  FRAME_HEADER_BYTES as FRAME_HEADER_LENGTH,
  FrameType,
  MIN_MAX_FRAME_SIZE as DEFAULT_MAX_FRAME_SIZE,
  readUint32,
  Setting,
} from "../../src/h2/frame.ts";

/** How many of the latest received frames {@link H2Wire.received} keeps (for diagnostics). */
export const RECEIVED_LOG_LIMIT = 1000;

/** How long an `expect*` helper or a read waits by default, in milliseconds. */
export const DEFAULT_TIMEOUT_MS = 5_000;

/** One header or trailer field: name and value, each one octet per character (latin1). */
export type HeaderField = readonly [name: string, value: string];

/** A SETTINGS parameter: identifier and value (RFC 9113 §6.5.1). */
export type SettingEntry = readonly [id: number, value: number];

/** A frame received from the peer. */
export interface Frame {
  /** The frame type ({@link FrameType}, or an extension type). */
  readonly type: number;
  /** The flags octet. */
  readonly flags: number;
  /** The stream identifier, reserved bit cleared. */
  readonly streamId: number;
  /** The whole frame payload, padding included. */
  readonly payload: Uint8Array;
  /** On the frame that ends a field block (END_HEADERS): the decoded fields of the block. */
  readonly fields?: readonly HeaderField[];
  /** On the frame that ends a field block: why the block could not be decoded. */
  readonly fieldsError?: string;
}

/** What to write as one frame; see {@link encodeFrame}. */
export interface FrameSpec {
  /** The frame type. */
  readonly type: number;
  /** The flags octet; 0 by default. */
  readonly flags?: number;
  /** The stream identifier; 0 by default. May exceed 2^31-1 to set the reserved bit. */
  readonly streamId?: number;
  /** The payload; empty by default. */
  readonly payload?: Uint8Array;
  /** The Length field to declare, when it should not match the payload (truncated frames). */
  readonly length?: number;
}

/** A GOAWAY frame's fields (RFC 9113 §6.8). */
export interface Goaway {
  /** The last stream the peer processed or might process. */
  readonly lastStreamId: number;
  /** Why the connection is closing. */
  readonly errorCode: number;
  /** Opaque diagnostic data, as text. */
  readonly debugData: string;
}

/** Everything the peer sent on one stream, as {@link H2Wire.readResponse} collected it. */
export interface StreamResponse {
  /** The first decoded field block (the response header section). */
  readonly headers: readonly HeaderField[] | undefined;
  /** The DATA payloads, padding removed, concatenated. */
  readonly body: Uint8Array;
  /** The second decoded field block (the trailer section), if any. */
  readonly trailers: readonly HeaderField[] | undefined;
  /** The RST_STREAM error code, when the stream was reset. */
  readonly rstCode: number | undefined;
  /** True when the stream ended with END_STREAM. */
  readonly ended: boolean;
  /** `grpc-status` from the trailers, or from a trailers-only response. */
  readonly grpcStatus: number | undefined;
}

/** Options for {@link H2Wire.open}. */
export interface OpenOptions {
  /** Octets sent first; the real preface by default, `null` for none. */
  readonly preface?: Uint8Array | null;
  /** The client's first SETTINGS frame; empty by default, `null` to send none. */
  readonly settings?: readonly SettingEntry[] | null;
  /** Acknowledge the peer's SETTINGS frames automatically (RFC 9113 §6.5.3); true by default. */
  readonly ackSettings?: boolean;
  /**
   * Wait for the peer's SETTINGS and for the ACK of ours before resolving; true by default,
   * and ignored without a preface or SETTINGS.
   */
  readonly handshake?: boolean;
  /** Deadline for the handshake, in milliseconds. */
  readonly timeoutMs?: number;
}

/** Options for {@link H2Wire.sendHeaders} and {@link H2Wire.sendHeaderBlock}. */
export interface HeadersOptions {
  /** Set END_STREAM. */
  readonly endStream?: boolean;
  /** Set END_HEADERS; true by default. */
  readonly endHeaders?: boolean;
  /** Add the PADDED flag with this many zero octets of padding (RFC 9113 §6.2). */
  readonly padLength?: number;
  /** Add the PRIORITY flag with these fields (RFC 9113 §6.2). */
  readonly priority?: PriorityFields;
}

/** The deprecated priority fields of HEADERS and PRIORITY frames (RFC 9113 §6.3). */
export interface PriorityFields {
  /** The stream this one depends on. */
  readonly dependency: number;
  /** Weight minus one, 0–255. */
  readonly weight: number;
  /** The exclusive bit. */
  readonly exclusive?: boolean;
}

/** Options for the `expect*` helpers of {@link H2Wire}. */
export interface ExpectOptions {
  /** How long to wait, in milliseconds; {@link DEFAULT_TIMEOUT_MS} by default. */
  readonly timeoutMs?: number;
  /**
   * The error must answer frames already sent: a PING is sent at once, and its ACK arriving
   * before the error fails the expectation without waiting out the deadline (the peer
   * processes frames in order, RFC 9113 §6.7). Not for errors a peer raises later, such as
   * timeouts or rate thresholds.
   */
  readonly immediate?: boolean;
}

/** Options for {@link H2Wire.sendData}. */
export interface DataOptions {
  /** Set END_STREAM. */
  readonly endStream?: boolean;
  /** Add the PADDED flag with this many zero octets of padding (RFC 9113 §6.1). */
  readonly padLength?: number;
}

/** The name of an error code, for messages: `PROTOCOL_ERROR (0x1)`. */
export function errorName(code: number): string {
  const name = Object.entries(ErrorCode).find(([, value]) => value === code)?.[0] ?? "unknown";
  return `${name} (0x${code.toString(16)})`;
}

/** The name of a frame type, for messages. */
export function frameTypeName(type: number): string {
  return Object.entries(FrameType).find(([, value]) => value === type)?.[0] ??
    `type 0x${type.toString(16)}`;
}

/** A one-line description of a frame, for assertion messages. */
export function describeFrame(frame: Frame): string {
  let detail = "";
  if (frame.type === FrameType.GOAWAY && frame.payload.length >= 8) {
    detail = ` ${errorName(parseGoaway(frame).errorCode)}`;
  } else if (frame.type === FrameType.RST_STREAM && frame.payload.length === 4) {
    detail = ` ${errorName(readUint32(frame.payload, 0))}`;
  }
  return `${frameTypeName(frame.type)}(stream ${frame.streamId}, flags 0x${
    frame.flags.toString(16)
  }, ${frame.payload.length} octets${detail})`;
}

/** Four octets, big-endian. */
export function uint32(value: number): Uint8Array {
  const bytes = new Uint8Array(4);
  new DataView(bytes.buffer).setUint32(0, value >>> 0);
  return bytes;
}

/**
 * Lays out one frame: the 9-octet header (RFC 9113 §4.1) and the payload. Nothing is
 * validated; `length` overrides the Length field, and a `streamId` above 2^31-1 sets the
 * reserved bit.
 */
export function encodeFrame(spec: FrameSpec): Uint8Array {
  const payload = spec.payload ?? new Uint8Array();
  const length = spec.length ?? payload.length;
  const out = new Uint8Array(FRAME_HEADER_LENGTH + payload.length);
  out[0] = (length >>> 16) & 0xff;
  out[1] = (length >>> 8) & 0xff;
  out[2] = length & 0xff;
  out[3] = spec.type & 0xff;
  out[4] = (spec.flags ?? 0) & 0xff;
  out.set(uint32(spec.streamId ?? 0), 5);
  out.set(payload, FRAME_HEADER_LENGTH);
  return out;
}

/** A SETTINGS payload (RFC 9113 §6.5.1): six octets per entry. */
export function settingsPayload(entries: readonly SettingEntry[]): Uint8Array {
  const out = new Uint8Array(entries.length * 6);
  const view = new DataView(out.buffer);
  entries.forEach(([id, value], i) => {
    view.setUint16(i * 6, id);
    view.setUint32(i * 6 + 2, value >>> 0);
  });
  return out;
}

/** The five octets of priority fields (RFC 9113 §6.3). */
export function priorityPayload(priority: PriorityFields): Uint8Array {
  const out = new Uint8Array(5);
  out.set(uint32((priority.dependency & 0x7fff_ffff) | (priority.exclusive ? 0x8000_0000 : 0)));
  out[4] = priority.weight & 0xff;
  return out;
}

/**
 * Wraps `content` as the payload of a PADDED frame: Pad Length, content, then `padLength`
 * zero octets (RFC 9113 §6.1). `declaredPadLength` overrides the Pad Length octet, to
 * claim more padding than the frame holds.
 */
export function paddedPayload(
  content: Uint8Array,
  padLength: number,
  declaredPadLength: number = padLength,
): Uint8Array {
  return concatBytes(Uint8Array.of(declaredPadLength & 0xff), content, new Uint8Array(padLength));
}

/** An HPACK integer with an N-bit prefix (RFC 7541 §5.1); `firstByte` holds the flag bits. */
export function hpackInteger(value: number, prefixBits: number, firstByte = 0): Uint8Array {
  const max = (1 << prefixBits) - 1;
  if (value < max) return Uint8Array.of(firstByte | value);
  const out = [firstByte | max];
  let rest = value - max;
  while (rest >= 128) {
    out.push((rest % 128) | 0x80);
    rest = Math.floor(rest / 128);
  }
  out.push(rest);
  return Uint8Array.from(out);
}

/** An HPACK string literal without Huffman coding (RFC 7541 §5.2), one octet per character. */
export function hpackString(text: string): Uint8Array {
  const octets = Uint8Array.from(text, (char) => char.charCodeAt(0) & 0xff);
  return concatBytes(hpackInteger(octets.length, 7), octets);
}

/**
 * Encodes fields as a field block of literals without indexing and with literal names
 * (RFC 7541 §6.2.2). Names are sent as given, so a test can send uppercase or otherwise
 * invalid names; nothing enters the peer's dynamic table.
 */
export function encodeFieldBlock(fields: readonly HeaderField[]): Uint8Array {
  return concatBytes(
    ...fields.flatMap((
      [name, value],
    ) => [Uint8Array.of(0x00), hpackString(name), hpackString(value)]),
  );
}

/** The header section of a gRPC request over h2c (`:scheme http`) to `path`, plus `extra`. */
export function grpcRequestFields(
  path: string,
  authority: string,
  extra: readonly HeaderField[] = [],
): HeaderField[] {
  return [
    [":method", "POST"],
    [":scheme", "http"],
    [":path", path],
    [":authority", authority],
    ["content-type", "application/grpc"],
    ["te", "trailers"],
    ...extra,
  ];
}

/** Parses a GOAWAY payload (RFC 9113 §6.8). */
export function parseGoaway(frame: Frame): Goaway {
  return {
    lastStreamId: readUint32(frame.payload, 0) & 0x7fff_ffff,
    errorCode: readUint32(frame.payload, 4),
    debugData: new TextDecoder().decode(frame.payload.subarray(8)),
  };
}

/** The value of `name` in `fields`, or `undefined`. */
export function fieldValue(
  fields: readonly HeaderField[] | undefined,
  name: string,
): string | undefined {
  return fields?.find(([field]) => field === name)?.[1];
}

/**
 * Opens a fresh connection to `address`, makes one gRPC call with {@link H2Wire.callOk} and
 * closes it: the check that a server still serves after a test did something to it.
 */
export async function expectCallThrough(
  address: string,
  path: string,
  message: Uint8Array = new Uint8Array(),
  timeoutMs = DEFAULT_TIMEOUT_MS,
): Promise<StreamResponse> {
  const wire = await H2Wire.open(address, { timeoutMs });
  try {
    return await wire.callOk(path, message, timeoutMs);
  } finally {
    await wire.close();
  }
}

/** The minimal surface of `hpack.js`'s decompressor that this module uses. */
interface HpackDecompressor {
  write(chunk: Uint8Array): void;
  execute(): void;
  read(): { name: string; value: string } | null;
  on(event: "error", listener: (error: unknown) => void): void;
}

/** Strips the Pad Length octet, padding and priority fields from a HEADERS or DATA payload. */
function framePayloadContent(frame: Frame): Uint8Array {
  let start = 0;
  let end = frame.payload.length;
  if (frame.flags & Flag.PADDED && frame.type !== FrameType.CONTINUATION) {
    start = 1;
    end -= frame.payload[0] ?? 0;
  }
  if (frame.type === FrameType.HEADERS && frame.flags & Flag.PRIORITY) start += 5;
  return frame.payload.subarray(start, Math.max(start, end));
}

function splitAddress(address: string): { hostname: string; port: number } {
  const colon = address.lastIndexOf(":");
  return {
    hostname: address.slice(0, colon).replace(/^\[|\]$/g, ""),
    port: Number(address.slice(colon + 1)),
  };
}

/** One raw HTTP/2 client connection. Open it with {@link H2Wire.open}; close it with `close()`. */
export class H2Wire {
  /** The peer's SETTINGS values as received so far. */
  readonly peerSettings: Map<number, number> = new Map();
  /** How many frames of each type arrived so far, read or not (flood tests count with it). */
  readonly receivedCounts: Map<number, number> = new Map();

  readonly #conn: Deno.TcpConn;
  readonly #ackSettings: boolean;
  /** Frames no reader took yet, each with its arrival number. */
  readonly #unread: { readonly seq: number; readonly frame: Frame }[] = [];
  #received: Frame[] = [];
  #seq = 0;
  #lastGoaway: Frame | undefined;
  /** Writes run one after another, so concurrent writers never interleave partial frames. */
  #writes: Promise<unknown> = Promise.resolve();
  readonly #decoder: HpackDecompressor;
  #blockParts: Uint8Array[] = [];
  #decodeFailure: unknown;
  #changed = Promise.withResolvers<void>();
  #closed = false;
  #closeReason = "";
  #nextStreamId = 1;
  #highestStreamId = 0;
  #pingCounter = 0;
  /** Set while reading is paused; see {@link H2Wire.pauseReading}. */
  #readGate: PromiseWithResolvers<void> | undefined;
  /** Resolved once the preface and first SETTINGS are written; see {@link H2Wire.open}. */
  readonly #opened = Promise.withResolvers<void>();
  readonly #pump: Promise<void>;

  private constructor(conn: Deno.TcpConn, ackSettings: boolean) {
    this.#conn = conn;
    this.#ackSettings = ackSettings;
    this.#decoder = hpack.decompressor.create({ table: { size: 4096 } }) as HpackDecompressor;
    // hpack.js reports a decoding failure as an "error" event, synchronously inside execute().
    this.#decoder.on("error", (error) => this.#decodeFailure ??= error);
    this.#pump = this.#readLoop();
  }

  /**
   * Connects to `address` (`host:port`), sends the preface and a SETTINGS frame, and by
   * default waits for the peer's SETTINGS and its acknowledgement of ours.
   */
  static async open(address: string, options: OpenOptions = {}): Promise<H2Wire> {
    const conn = await Deno.connect({ ...splitAddress(address), transport: "tcp" });
    conn.setNoDelay(true);
    const wire = new H2Wire(conn, options.ackSettings ?? true);
    const preface = options.preface === undefined ? CLIENT_PREFACE : options.preface;
    const settings = options.settings === undefined ? [] : options.settings;
    // One write, and only then may the reader acknowledge the server's SETTINGS: an ACK
    // written between the preface and our SETTINGS would be a protocol error (§3.4).
    await wire.write(
      concatBytes(
        preface ?? new Uint8Array(),
        settings
          ? encodeFrame({
            type: FrameType.SETTINGS,
            payload: settingsPayload(settings),
          })
          : new Uint8Array(),
      ),
    );
    wire.#opened.resolve();
    if ((options.handshake ?? true) && preface && settings) {
      const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
      const isSettings = (ack: boolean) => (frame: Frame) =>
        frame.type === FrameType.SETTINGS && (frame.flags & Flag.ACK) === (ack ? Flag.ACK : 0);
      try {
        if (!await wire.readUntil(isSettings(false), timeoutMs)) {
          throw new Error(`the peer closed the connection before its SETTINGS: ${wire.#history()}`);
        }
        if (!await wire.readUntil(isSettings(true), timeoutMs)) {
          throw new Error(
            `the peer closed the connection before acknowledging our SETTINGS: ${wire.#history()}`,
          );
        }
      } catch (error) {
        await wire.close();
        throw error;
      }
    }
    return wire;
  }

  /** True once the peer closed or reset the TCP connection (or `close()` was called). */
  get closed(): boolean {
    return this.#closed;
  }

  /** The peer's SETTINGS_MAX_FRAME_SIZE (16,384 until it announces one). */
  get peerMaxFrameSize(): number {
    return this.peerSettings.get(Setting.MAX_FRAME_SIZE) ?? DEFAULT_MAX_FRAME_SIZE;
  }

  /**
   * The frames received so far in arrival order, read or not: the latest
   * {@link RECEIVED_LOG_LIMIT} of them, so long floods stay cheap (for diagnostics).
   */
  get received(): readonly Frame[] {
    return this.#received;
  }

  /** The GOAWAY the peer sent last, if any (whether or not a reader took the frame). */
  get goaway(): Goaway | undefined {
    const frame = this.#lastGoaway;
    return frame && frame.payload.length >= 8 ? parseGoaway(frame) : undefined;
  }

  /**
   * A new client stream identifier (odd, RFC 9113 §5.1.1) above every identifier this
   * connection has sent HEADERS on, so a call after hand-numbered streams stays valid.
   */
  nextStreamId(): number {
    let id = this.#nextStreamId;
    if (id <= this.#highestStreamId) id = (this.#highestStreamId + 1) | 1;
    this.#nextStreamId = id + 2;
    return id;
  }

  /**
   * Writes raw octets. Resolves false, rather than throwing, when the peer has already
   * closed or reset the connection: hostile-input tests keep writing after an error.
   */
  write(bytes: Uint8Array): Promise<boolean> {
    // A failed earlier write must not stop the later ones: each reports its own outcome.
    const written = this.#writes.catch(() => {}).then(() => this.#writeNow(bytes));
    this.#writes = written;
    return written;
  }

  async #writeNow(bytes: Uint8Array): Promise<boolean> {
    let offset = 0;
    try {
      while (offset < bytes.length) offset += await this.#conn.write(bytes.subarray(offset));
      return true;
    } catch (error) {
      // Interrupted: the reader saw the peer close and closed the socket under this write.
      if (
        error instanceof Deno.errors.BrokenPipe || error instanceof Deno.errors.ConnectionReset ||
        error instanceof Deno.errors.BadResource || error instanceof Deno.errors.NotConnected ||
        error instanceof Deno.errors.Interrupted
      ) {
        return false;
      }
      throw error;
    }
  }

  /** Writes one frame laid out by {@link encodeFrame}. */
  sendFrame(spec: FrameSpec): Promise<boolean> {
    this.#noteStream(spec);
    return this.write(encodeFrame(spec));
  }

  /** Writes several frames in one write, so the peer sees them back to back. */
  sendFrames(specs: readonly FrameSpec[]): Promise<boolean> {
    for (const spec of specs) this.#noteStream(spec);
    return this.write(concatBytes(...specs.map(encodeFrame)));
  }

  #noteStream(spec: FrameSpec): void {
    if (spec.type !== FrameType.HEADERS) return;
    const id = (spec.streamId ?? 0) & 0x7fff_ffff;
    if (id > this.#highestStreamId) this.#highestStreamId = id;
  }

  /** Sends a SETTINGS frame with `entries` (RFC 9113 §6.5). */
  sendSettings(entries: readonly SettingEntry[]): Promise<boolean> {
    return this.sendFrame({ type: FrameType.SETTINGS, payload: settingsPayload(entries) });
  }

  /** Acknowledges the peer's SETTINGS (RFC 9113 §6.5.3). */
  sendSettingsAck(): Promise<boolean> {
    return this.sendFrame({ type: FrameType.SETTINGS, flags: Flag.ACK });
  }

  /** Sends a HEADERS frame carrying `fields`, encoded by {@link encodeFieldBlock}. */
  sendHeaders(
    streamId: number,
    fields: readonly HeaderField[],
    options: HeadersOptions = {},
  ): Promise<boolean> {
    return this.sendHeaderBlock(streamId, encodeFieldBlock(fields), options);
  }

  /** Sends a HEADERS frame carrying `block` as is (e.g. hand-made or corrupt HPACK). */
  sendHeaderBlock(
    streamId: number,
    block: Uint8Array,
    options: HeadersOptions = {},
  ): Promise<boolean> {
    let flags = (options.endHeaders ?? true) ? Flag.END_HEADERS : 0;
    if (options.endStream) flags |= Flag.END_STREAM;
    let payload = block;
    if (options.priority) {
      flags |= Flag.PRIORITY;
      payload = concatBytes(priorityPayload(options.priority), payload);
    }
    if (options.padLength !== undefined) {
      flags |= Flag.PADDED;
      payload = paddedPayload(payload, options.padLength);
    }
    return this.sendFrame({ type: FrameType.HEADERS, flags, streamId, payload });
  }

  /** Sends a CONTINUATION frame (RFC 9113 §6.10). */
  sendContinuation(streamId: number, block: Uint8Array, endHeaders: boolean): Promise<boolean> {
    return this.sendFrame({
      type: FrameType.CONTINUATION,
      flags: endHeaders ? Flag.END_HEADERS : 0,
      streamId,
      payload: block,
    });
  }

  /** Sends one DATA frame (RFC 9113 §6.1); it is not split to the peer's frame size. */
  sendData(streamId: number, data: Uint8Array, options: DataOptions = {}): Promise<boolean> {
    let flags = options.endStream ? Flag.END_STREAM : 0;
    let payload = data;
    if (options.padLength !== undefined) {
      flags |= Flag.PADDED;
      payload = paddedPayload(data, options.padLength);
    }
    return this.sendFrame({ type: FrameType.DATA, flags, streamId, payload });
  }

  /** Sends RST_STREAM (RFC 9113 §6.4). */
  sendRst(streamId: number, errorCode: number): Promise<boolean> {
    return this.sendFrame({ type: FrameType.RST_STREAM, streamId, payload: uint32(errorCode) });
  }

  /** Sends PING (RFC 9113 §6.7) with an 8-octet payload. */
  sendPing(payload: Uint8Array, ack = false): Promise<boolean> {
    return this.sendFrame({ type: FrameType.PING, flags: ack ? Flag.ACK : 0, payload });
  }

  /** Sends GOAWAY (RFC 9113 §6.8). */
  sendGoaway(lastStreamId: number, errorCode: number): Promise<boolean> {
    return this.sendFrame({
      type: FrameType.GOAWAY,
      payload: concatBytes(uint32(lastStreamId), uint32(errorCode)),
    });
  }

  /** Sends WINDOW_UPDATE (RFC 9113 §6.9); stream 0 is the connection window. */
  sendWindowUpdate(streamId: number, increment: number): Promise<boolean> {
    return this.sendFrame({ type: FrameType.WINDOW_UPDATE, streamId, payload: uint32(increment) });
  }

  /** Sends PRIORITY (RFC 9113 §6.3). */
  sendPriority(streamId: number, priority: PriorityFields): Promise<boolean> {
    return this.sendFrame({
      type: FrameType.PRIORITY,
      streamId,
      payload: priorityPayload(priority),
    });
  }

  /**
   * Starts a gRPC call on `streamId`: request HEADERS, then one DATA frame with `message`
   * framed as a gRPC message and END_STREAM. `extra` fields follow the standard ones.
   */
  async startCall(
    streamId: number,
    path: string,
    message: Uint8Array = new Uint8Array(),
    extra: readonly HeaderField[] = [],
  ): Promise<boolean> {
    const authority = `${this.#conn.remoteAddr.hostname}:${this.#conn.remoteAddr.port}`;
    return await this.sendHeaders(streamId, grpcRequestFields(path, authority, extra)) &&
      await this.sendData(streamId, grpcFrame(message), { endStream: true });
  }

  /** Makes a whole gRPC call on a new stream and reads its response. */
  async call(
    path: string,
    message: Uint8Array = new Uint8Array(),
    extra: readonly HeaderField[] = [],
    timeoutMs = DEFAULT_TIMEOUT_MS,
  ): Promise<StreamResponse> {
    const streamId = this.nextStreamId();
    await this.startCall(streamId, path, message, extra);
    return this.readResponse(streamId, timeoutMs);
  }

  /**
   * Makes a gRPC call like {@link H2Wire.call} and throws, with what arrived, unless it ends
   * with grpc-status 0. A REFUSED_STREAM is retried on a new stream, as gRPC clients do: RFC
   * 9113 §8.7 guarantees such a request was not processed (a proxy answers so when its
   * backend connection goes away under the call).
   */
  async callOk(
    path: string,
    message: Uint8Array = new Uint8Array(),
    timeoutMs = DEFAULT_TIMEOUT_MS,
  ): Promise<StreamResponse> {
    for (let attempt = 1;; attempt++) {
      const response = await this.call(path, message, [], timeoutMs);
      if (response.rstCode === ErrorCode.REFUSED_STREAM && attempt < 5) continue;
      if (response.grpcStatus === 0 && response.rstCode === undefined) return response;
      throw new Error(
        `call ${path} failed: ${
          JSON.stringify({
            rstCode: response.rstCode === undefined ? undefined : errorName(response.rstCode),
            headers: response.headers,
            trailers: response.trailers,
          })
        }`,
      );
    }
  }

  /**
   * Reads one stream until END_STREAM or RST_STREAM, taking its frames from the unread
   * queue. A graceful GOAWAY (NO_ERROR) that covers the stream does not end it; any other
   * GOAWAY, a close, or the deadline first throws.
   */
  async readResponse(streamId: number, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<StreamResponse> {
    const deadline = Date.now() + timeoutMs;
    const blocks: (readonly HeaderField[])[] = [];
    const body: Uint8Array[] = [];
    let endAfterBlock = false;
    for (;;) {
      const frame = await this.readUntil(
        (f) => f.streamId === streamId || f.type === FrameType.GOAWAY,
        Math.max(0, deadline - Date.now()),
      );
      if (frame?.type === FrameType.GOAWAY && frame.payload.length >= 8) {
        // A graceful GOAWAY (§6.8) that covers this stream lets it finish.
        const goaway = parseGoaway(frame);
        if (goaway.errorCode === ErrorCode.NO_ERROR && goaway.lastStreamId >= streamId) continue;
      }
      if (!frame || frame.type === FrameType.GOAWAY) {
        throw new Error(
          `stream ${streamId}: the connection ended before the response did (${
            frame ? describeFrame(frame) : "closed"
          }); received: ${this.#history()}`,
        );
      }
      let ended = false;
      let rstCode: number | undefined;
      if (frame.type === FrameType.RST_STREAM) {
        rstCode = readUint32(frame.payload, 0);
      } else if (frame.type === FrameType.DATA) {
        body.push(framePayloadContent(frame));
        ended = (frame.flags & Flag.END_STREAM) !== 0;
      } else if (frame.type === FrameType.HEADERS || frame.type === FrameType.CONTINUATION) {
        if (frame.type === FrameType.HEADERS) endAfterBlock = (frame.flags & Flag.END_STREAM) !== 0;
        if (frame.fieldsError) throw new Error(`stream ${streamId}: ${frame.fieldsError}`);
        if (frame.fields) {
          blocks.push(frame.fields);
          ended = endAfterBlock;
        }
      }
      if (ended || rstCode !== undefined) {
        const status = fieldValue(blocks[blocks.length - 1], "grpc-status");
        return {
          headers: blocks[0],
          body: concatBytes(...body),
          trailers: blocks[1],
          rstCode,
          ended,
          grpcStatus: status === undefined ? undefined : Number(status),
        };
      }
    }
  }

  /**
   * Waits for the first unread frame that matches `predicate`, removes it from the unread
   * queue and returns it; frames that do not match stay queued for other readers. Resolves
   * `null` when the connection closes with no match; throws after `timeoutMs`.
   */
  async readUntil(
    predicate: (frame: Frame) => boolean,
    timeoutMs = DEFAULT_TIMEOUT_MS,
  ): Promise<Frame | null> {
    const deadline = Date.now() + timeoutMs;
    // Frames already looked at did not match and cannot start to: scan only newer ones, so a
    // reader waiting through a flood costs one look per frame.
    let scanned = 0;
    for (;;) {
      const unread = this.#unread;
      // The queue is in arrival order: binary-search the first frame not yet looked at.
      let i = 0;
      for (let hi = unread.length; i < hi;) {
        const mid = (i + hi) >>> 1;
        if (unread[mid].seq > scanned) hi = mid;
        else i = mid + 1;
      }
      for (; i < unread.length; i++) {
        if (predicate(unread[i].frame)) return unread.splice(i, 1)[0].frame;
      }
      scanned = this.#seq;
      if (this.#closed) return null;
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new Error(
          `timed out after ${timeoutMs}ms waiting for a frame; received: ${this.#history()}`,
        );
      }
      await this.#waitForChange(left);
    }
  }

  /**
   * Expects a connection error (RFC 9113 §5.4.1): a GOAWAY carrying `code` (or one of
   * `code`), then the peer closing the TCP connection. Returns the GOAWAY.
   */
  async expectGoaway(
    code: number | readonly number[],
    options: ExpectOptions = {},
  ): Promise<Goaway> {
    const codes = typeof code === "number" ? [code] : code;
    const wanted = `GOAWAY ${codes.map(errorName).join(" or ")}`;
    const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const isGoaway = (f: Frame) => f.type === FrameType.GOAWAY;
    const frame = options.immediate
      ? await this.#pingBarrier(isGoaway, timeoutMs)
      : await this.readUntil(isGoaway, timeoutMs);
    if (!frame || frame.type !== FrameType.GOAWAY) {
      throw new Error(
        `expected ${wanted}, but ${
          frame
            ? "the peer answered a PING sent after the frames first (it accepted them)"
            : "the connection closed without one"
        }; received: ${this.#history()}`,
      );
    }
    const goaway = parseGoaway(frame);
    if (!codes.includes(goaway.errorCode)) {
      throw new Error(
        `expected ${wanted}, got ${errorName(goaway.errorCode)}` +
          (goaway.debugData ? ` ("${goaway.debugData}")` : ""),
      );
    }
    await this.expectClosed(timeoutMs);
    return goaway;
  }

  /**
   * Expects a stream error (RFC 9113 §5.4.2): a RST_STREAM on `streamId` carrying `code`
   * (or one of `code`). Other frames on the stream before it (e.g. a 400 response that
   * §8.1.1 permits) are skipped; a GOAWAY, a close, or a stream that ends without one is a
   * failure.
   */
  async expectRst(
    streamId: number,
    code: number | readonly number[],
    options: ExpectOptions = {},
  ): Promise<void> {
    const codes = typeof code === "number" ? [code] : code;
    const wanted = `RST_STREAM ${codes.map(errorName).join(" or ")} on stream ${streamId}`;
    const outcome = await this.#readStreamError(streamId, options);
    if (typeof outcome === "string" || outcome.type === FrameType.GOAWAY) {
      throw new Error(
        `expected ${wanted}, got ${
          typeof outcome === "string" ? outcome : describeFrame(outcome)
        }; received: ${this.#history()}`,
      );
    }
    const got = readUint32(outcome.payload, 0);
    if (!codes.includes(got)) throw new Error(`expected ${wanted}, got ${errorName(got)}`);
  }

  /**
   * Expects either error class with `code`: a RST_STREAM on `streamId`, or a GOAWAY followed
   * by the connection closing (for the cases where RFC 9113 lets the peer choose). Returns
   * which one arrived.
   */
  async expectStreamOrConnectionError(
    streamId: number,
    code: number | readonly number[],
    options: ExpectOptions = {},
  ): Promise<"stream" | "connection"> {
    const codes = typeof code === "number" ? [code] : code;
    const wanted = `RST_STREAM on stream ${streamId} or GOAWAY, ${
      codes.map(errorName).join(" or ")
    }`;
    const outcome = await this.#readStreamError(streamId, options);
    if (typeof outcome === "string") {
      throw new Error(`expected ${wanted}, got ${outcome}; received: ${this.#history()}`);
    }
    const got = outcome.type === FrameType.GOAWAY
      ? parseGoaway(outcome).errorCode
      : readUint32(outcome.payload, 0);
    if (!codes.includes(got)) throw new Error(`expected ${wanted}, got ${describeFrame(outcome)}`);
    if (outcome.type === FrameType.RST_STREAM) return "stream";
    await this.expectClosed(options.timeoutMs);
    return "connection";
  }

  /**
   * Proves the connection healthy and everything sent before it processed: sends a PING and
   * reads up to its ACK (RFC 9113 §6.7 has the peer answer in order). Throws if a GOAWAY,
   * or a RST_STREAM on one of `watchStreams`, arrives first, or the connection closes.
   */
  async expectAlive(
    watchStreams: readonly number[] = [],
    timeoutMs = DEFAULT_TIMEOUT_MS,
  ): Promise<void> {
    const frame = await this.#pingBarrier(
      (f) =>
        f.type === FrameType.GOAWAY ||
        (f.type === FrameType.RST_STREAM && watchStreams.includes(f.streamId)),
      timeoutMs,
    );
    if (!frame || frame.type !== FrameType.PING) {
      throw new Error(
        `expected the connection to stay healthy (a PING ACK), got ${
          frame ? describeFrame(frame) : "the connection closing"
        }; received: ${this.#history()}`,
      );
    }
  }

  /**
   * Reads until a RST_STREAM on `streamId` or a GOAWAY, returning it; a string says what
   * happened instead. When the peer ends the stream with a response first, a PING round trip
   * bounds the wait for a RST_STREAM sent right after the response.
   */
  async #readStreamError(streamId: number, options: ExpectOptions): Promise<Frame | string> {
    const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const deadline = Date.now() + timeoutMs;
    const isError = (f: Frame) =>
      (f.type === FrameType.RST_STREAM && f.streamId === streamId) ||
      f.type === FrameType.GOAWAY;
    const isErrorOrEnd = (f: Frame) =>
      isError(f) ||
      (f.streamId === streamId && (f.type === FrameType.DATA || f.type === FrameType.HEADERS) &&
        (f.flags & Flag.END_STREAM) !== 0);
    const frame = options.immediate
      ? await this.#pingBarrier(isErrorOrEnd, timeoutMs)
      : await this.readUntil(isErrorOrEnd, timeoutMs);
    if (!frame) return "the connection closing";
    if (isError(frame)) return frame;
    if (frame.type === FrameType.PING) {
      return "nothing: the peer answered a PING sent after the frames first (it accepted them)";
    }
    const after = await this.#pingBarrier(isError, Math.max(0, deadline - Date.now()));
    if (after && after.type !== FrameType.PING) return after;
    const fields = this.received
      .filter((f) => f.streamId === streamId && f.fields)
      .flatMap((f) =>
        f.fields!.filter(([name]) => /^(:status|grpc-status|grpc-message)$/.test(name))
      )
      .map(([name, value]) => `${name}: ${value}`);
    return `the stream ending with a response (${fields.join(", ")}) and no RST_STREAM`;
  }

  /**
   * Sends a PING and reads until its ACK or a frame matching `stop`; returns that frame, or
   * `null` when the connection closes first.
   */
  async #pingBarrier(stop: (frame: Frame) => boolean, timeoutMs: number): Promise<Frame | null> {
    const id = ++this.#pingCounter;
    await this.sendPing(concatBytes(uint32(0xa11e_0000), uint32(id)));
    return await this.readUntil(
      (f) =>
        stop(f) ||
        (f.type === FrameType.PING && (f.flags & Flag.ACK) !== 0 && f.payload.length === 8 &&
          readUint32(f.payload, 0) === 0xa11e_0000 &&
          readUint32(f.payload, 4) === id),
      timeoutMs,
    );
  }

  /**
   * Waits until the peer closes the connection; frames that arrive meanwhile stay unread.
   * Throws after `timeoutMs`.
   */
  async expectClosed(timeoutMs = DEFAULT_TIMEOUT_MS): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.#closed) {
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new Error(
          `expected the peer to close the connection within ${timeoutMs}ms; received: ${this.#history()}`,
        );
      }
      await this.#waitForChange(left);
    }
  }

  /**
   * Ends the client's sending side (TCP FIN) while still reading: the peer sees the end of
   * the stream of frames, e.g. in the middle of a truncated frame.
   */
  async closeWrite(): Promise<void> {
    try {
      await this.#conn.closeWrite();
    } catch { /* already closed */ }
  }

  /**
   * Stops reading the socket, so the peer's frames pile up in the kernel's buffers and then
   * in the peer (a client that does not read, for flood tests). A read already in progress
   * still completes, so up to one read chunk (64 KiB) more may arrive. Writing goes on.
   */
  pauseReading(): void {
    this.#readGate ??= Promise.withResolvers<void>();
  }

  /** Reads the socket again after {@link H2Wire.pauseReading}. */
  resumeReading(): void {
    this.#readGate?.resolve();
    this.#readGate = undefined;
  }

  /** Closes the connection and waits for the background reader to finish. */
  async close(): Promise<void> {
    this.resumeReading();
    if (!this.#closed) {
      this.#closed = true;
      this.#closeReason = "closed by the test";
      try {
        this.#conn.close();
      } catch { /* already closed */ }
    }
    await this.#pump;
  }

  /** Why the connection closed: EOF, a reset, or the test. Empty while open. */
  get closeReason(): string {
    return this.#closeReason;
  }

  #history(): string {
    const list = this.received.map(describeFrame);
    const shown = list.length > 20 ? ["…", ...list.slice(-20)] : list;
    return `[${shown.join(", ")}]${this.#closed ? ` then ${this.#closeReason}` : ""}`;
  }

  async #waitForChange(timeoutMs: number): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<void>((resolve) => timer = setTimeout(resolve, timeoutMs));
    await Promise.race([this.#changed.promise, timeout]);
    clearTimeout(timer);
  }

  #notify(): void {
    this.#changed.resolve();
    this.#changed = Promise.withResolvers<void>();
  }

  async #readLoop(): Promise<void> {
    let buffer = new Uint8Array(64 * 1024);
    let filled = 0;
    const chunk = new Uint8Array(64 * 1024);
    try {
      for (;;) {
        if (this.#readGate) await this.#readGate.promise;
        if (this.#closed) break;
        const count = await this.#conn.read(chunk);
        if (count === null) {
          this.#closeReason ||= "closed by the peer (EOF)";
          break;
        }
        if (filled + count > buffer.length) {
          const grown = new Uint8Array(Math.max(buffer.length * 2, filled + count));
          grown.set(buffer.subarray(0, filled));
          buffer = grown;
        }
        buffer.set(chunk.subarray(0, count), filled);
        filled += count;
        let offset = 0;
        while (filled - offset >= FRAME_HEADER_LENGTH) {
          const length = (buffer[offset] << 16) | (buffer[offset + 1] << 8) | buffer[offset + 2];
          if (filled - offset < FRAME_HEADER_LENGTH + length) break;
          const start = offset + FRAME_HEADER_LENGTH;
          await this.#receive({
            type: buffer[offset + 3],
            flags: buffer[offset + 4],
            streamId: readUint32(buffer, offset + 5) & 0x7fff_ffff,
            payload: buffer.slice(start, start + length),
          });
          offset = start + length;
        }
        buffer.copyWithin(0, offset, filled);
        filled -= offset;
      }
    } catch (error) {
      this.#closeReason ||= `reset (${error instanceof Error ? error.name : String(error)})`;
    } finally {
      this.#closed = true;
      try {
        this.#conn.close();
      } catch { /* already closed */ }
      this.#notify();
    }
  }

  async #receive(raw: Frame): Promise<void> {
    let frame = raw;
    if (raw.type === FrameType.HEADERS || raw.type === FrameType.CONTINUATION) {
      this.#blockParts.push(framePayloadContent(raw));
      if (raw.flags & Flag.END_HEADERS) frame = { ...raw, ...this.#decodeBlock() };
    } else if (raw.type === FrameType.SETTINGS && !(raw.flags & Flag.ACK)) {
      for (let i = 0; i + 6 <= raw.payload.length; i += 6) {
        const view = new DataView(raw.payload.buffer, raw.payload.byteOffset + i, 6);
        this.peerSettings.set(view.getUint16(0), view.getUint32(2));
      }
      if (this.#ackSettings) {
        await this.#opened.promise;
        await this.sendSettingsAck();
      }
    }
    this.#received.push(frame);
    if (this.#received.length > 2 * RECEIVED_LOG_LIMIT) {
      this.#received = this.#received.slice(-RECEIVED_LOG_LIMIT);
    }
    if (frame.type === FrameType.GOAWAY) this.#lastGoaway = frame;
    this.receivedCounts.set(frame.type, (this.receivedCounts.get(frame.type) ?? 0) + 1);
    this.#unread.push({ seq: ++this.#seq, frame });
    this.#notify();
  }

  #decodeBlock(): { fields?: HeaderField[]; fieldsError?: string } {
    const block = concatBytes(...this.#blockParts);
    this.#blockParts = [];
    this.#decodeFailure = undefined;
    const fields: HeaderField[] = [];
    try {
      this.#decoder.write(Buffer.from(block));
      this.#decoder.execute();
      for (let field = this.#decoder.read(); field; field = this.#decoder.read()) {
        fields.push([field.name, field.value]);
      }
    } catch (error) {
      this.#decodeFailure ??= error;
    }
    return this.#decodeFailure === undefined
      ? { fields }
      : { fieldsError: `undecodable field block from the peer: ${String(this.#decodeFailure)}` };
  }
}
