/**
 * HTTP/2 wire constants: frame types, flags, error codes and settings (RFC 9113 §6, §7,
 * §11), and the serializers for the fixed-layout frames.
 * @module
 */
import type { ByteBuffer } from "./bytes.ts";

/** The client connection preface (RFC 9113 §3.4): `PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`. */
export const CLIENT_PREFACE: Uint8Array = new TextEncoder().encode(
  "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
);

/** Every frame starts with a 9-octet header (RFC 9113 §4.1). */
export const FRAME_HEADER_BYTES = 9;

/** Frame types (RFC 9113 §6). */
export const FrameType = {
  DATA: 0x0,
  HEADERS: 0x1,
  PRIORITY: 0x2,
  RST_STREAM: 0x3,
  SETTINGS: 0x4,
  PUSH_PROMISE: 0x5,
  PING: 0x6,
  GOAWAY: 0x7,
  WINDOW_UPDATE: 0x8,
  CONTINUATION: 0x9,
} as const;

/** Frame flags (RFC 9113 §6). */
export const Flag = {
  END_STREAM: 0x1,
  ACK: 0x1,
  END_HEADERS: 0x4,
  PADDED: 0x8,
  PRIORITY: 0x20,
} as const;

/** Error codes for RST_STREAM and GOAWAY (RFC 9113 §7). */
export const ErrorCode = {
  NO_ERROR: 0x0,
  PROTOCOL_ERROR: 0x1,
  INTERNAL_ERROR: 0x2,
  FLOW_CONTROL_ERROR: 0x3,
  SETTINGS_TIMEOUT: 0x4,
  STREAM_CLOSED: 0x5,
  FRAME_SIZE_ERROR: 0x6,
  REFUSED_STREAM: 0x7,
  CANCEL: 0x8,
  COMPRESSION_ERROR: 0x9,
  CONNECT_ERROR: 0xa,
  ENHANCE_YOUR_CALM: 0xb,
  INADEQUATE_SECURITY: 0xc,
  HTTP_1_1_REQUIRED: 0xd,
} as const;

const ERROR_NAMES: readonly string[] = Object.keys(ErrorCode);

/** The RFC name of an error code, for logs and messages. */
export function errorCodeName(code: number): string {
  return ERROR_NAMES[code] ?? `0x${code.toString(16)}`;
}

/** Setting identifiers (RFC 9113 §6.5.2). */
export const Setting = {
  HEADER_TABLE_SIZE: 0x1,
  ENABLE_PUSH: 0x2,
  MAX_CONCURRENT_STREAMS: 0x3,
  INITIAL_WINDOW_SIZE: 0x4,
  MAX_FRAME_SIZE: 0x5,
  MAX_HEADER_LIST_SIZE: 0x6,
} as const;

/** The largest flow-control window and window increment (RFC 9113 §6.9.1). */
export const MAX_WINDOW = 2 ** 31 - 1;

/** The window every stream and connection starts with (RFC 9113 §6.9.2). */
export const DEFAULT_WINDOW = 65_535;

/** SETTINGS_MAX_FRAME_SIZE bounds (RFC 9113 §6.5.2). */
export const MIN_MAX_FRAME_SIZE = 16_384;
/** See {@link MIN_MAX_FRAME_SIZE}. */
export const MAX_MAX_FRAME_SIZE = 16_777_215;

/** The largest stream identifier (RFC 9113 §5.1.1). */
export const MAX_STREAM_ID = 2 ** 31 - 1;

/** Appends a frame header for a payload of `length` octets. */
export function writeFrameHeader(
  out: ByteBuffer,
  length: number,
  type: number,
  flags: number,
  streamId: number,
): void {
  out.reserve(FRAME_HEADER_BYTES + length);
  const bytes = out.bytes;
  const at = out.length;
  bytes[at] = length >>> 16;
  bytes[at + 1] = length >>> 8;
  bytes[at + 2] = length;
  bytes[at + 3] = type;
  bytes[at + 4] = flags;
  bytes[at + 5] = streamId >>> 24;
  bytes[at + 6] = streamId >>> 16;
  bytes[at + 7] = streamId >>> 8;
  bytes[at + 8] = streamId;
  out.length = at + FRAME_HEADER_BYTES;
}

/** Appends a 32-bit big-endian integer. */
function writeUint32(out: ByteBuffer, value: number): void {
  out.reserve(4);
  const bytes = out.bytes;
  const at = out.length;
  bytes[at] = value >>> 24;
  bytes[at + 1] = value >>> 16;
  bytes[at + 2] = value >>> 8;
  bytes[at + 3] = value;
  out.length = at + 4;
}

/** Reads a 32-bit big-endian integer. */
export function readUint32(bytes: Uint8Array, at: number): number {
  return ((bytes[at] << 24) | (bytes[at + 1] << 16) | (bytes[at + 2] << 8) | bytes[at + 3]) >>> 0;
}

/** Appends RST_STREAM (RFC 9113 §6.4). */
export function writeRstStream(out: ByteBuffer, streamId: number, code: number): void {
  writeFrameHeader(out, 4, FrameType.RST_STREAM, 0, streamId);
  writeUint32(out, code);
}

/** Appends WINDOW_UPDATE (RFC 9113 §6.9). */
export function writeWindowUpdate(out: ByteBuffer, streamId: number, increment: number): void {
  writeFrameHeader(out, 4, FrameType.WINDOW_UPDATE, 0, streamId);
  writeUint32(out, increment);
}

/** Appends GOAWAY with an optional debug text (RFC 9113 §6.8). */
export function writeGoaway(
  out: ByteBuffer,
  lastStreamId: number,
  code: number,
  debug: string,
): void {
  // Debug data is for diagnostics only; keep it short and ASCII.
  const text = debug.length > 256 ? debug.slice(0, 256) : debug;
  writeFrameHeader(out, 8 + text.length, FrameType.GOAWAY, 0, 0);
  writeUint32(out, lastStreamId);
  writeUint32(out, code);
  out.pushLatin1(text.replace(/[^\x20-\x7e]/g, "?"));
}

/** Appends a PING or its ACK with the 8-octet opaque payload at `bytes[at..at+8)`. */
export function writePing(out: ByteBuffer, ack: boolean, bytes: Uint8Array, at: number): void {
  writeFrameHeader(out, 8, FrameType.PING, ack ? Flag.ACK : 0, 0);
  out.pushBytes(bytes, at, at + 8);
}

/** Appends a SETTINGS frame from `[id, value, id, value, ...]`, or an ACK when empty. */
export function writeSettings(out: ByteBuffer, settings: readonly number[], ack: boolean): void {
  writeFrameHeader(out, (settings.length / 2) * 6, FrameType.SETTINGS, ack ? Flag.ACK : 0, 0);
  for (let i = 0; i < settings.length; i += 2) {
    out.pushByte(settings[i] >>> 8);
    out.pushByte(settings[i] & 0xff);
    writeUint32(out, settings[i + 1]);
  }
}
