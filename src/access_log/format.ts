/**
 * The access log's line format: one JSON object per finished call, with the fields
 * `accessLog.fields` chooses (every field, in {@link ACCESS_LOG_FIELDS} order, by default).
 *
 * The formatter runs once per call on the data path, so the choice is made once, when the log
 * opens: it becomes a list of field writers, each giving its value's JSON text, and a line
 * costs the chosen fields only (no object is built: a header-list scan per header field
 * chosen, and the strings of the line). Building an entry object and `JSON.stringify`ing it
 * measured about 1.6 times slower with every field: V8 turns an object given all 20 fields
 * one by one into a dictionary, off `JSON.stringify`'s fast path.
 * @module
 */
import type { CallOrigin, CallProtocol, CallRecord } from "../proxy/call_record.ts";
import { headerValue } from "../transport/stream.ts";

/** Every access-log field, in the order a line carries them by default. */
export const ACCESS_LOG_FIELDS = [
  "time",
  "method",
  "protocol",
  "authority",
  "cluster",
  "backend",
  "grpcStatus",
  "grpcMessage",
  "resetCode",
  "origin",
  "retries",
  "durationMs",
  "upstreamDurationMs",
  "bytesReceived",
  "bytesSent",
  "client",
  "clientIdentity",
  "userAgent",
  "requestId",
  "traceId",
] as const;

/** The name of one access-log field. */
export type AccessLogField = typeof ACCESS_LOG_FIELDS[number];

/** `grpcMessage` keeps this many characters (UTF-16 code units) of a longer message. */
export const GRPC_MESSAGE_MAX_CHARS = 256;
/** Appended to a `grpcMessage` that was cut. */
export const TRUNCATION_MARKER = "…";

/** One access-log line, as JSON, with every field; `accessLog.fields` may pick fewer. */
export interface AccessLogEntry {
  /** ISO time the call arrived. */
  readonly time: string;
  /** `:path`, e.g. `/helloworld.Greeter/SayHello`. */
  readonly method: string;
  /** `grpc`, or `grpc-web` for calls the proxy translated. */
  readonly protocol: CallProtocol;
  /** The request's `:authority` as the backend got it, or null without one. */
  readonly authority: string | null;
  /** Routed cluster, or null when no route matched. */
  readonly cluster: string | null;
  /** Picked backend, or null when none was picked. */
  readonly backend: string | null;
  /** Final grpc-status sent to the client. */
  readonly grpcStatus: number;
  /**
   * The grpc-message the client got, percent-decoded, cut to {@link GRPC_MESSAGE_MAX_CHARS}
   * characters plus {@link TRUNCATION_MARKER}; null without one.
   */
  readonly grpcMessage: string | null;
  /** The RST_STREAM code the call ended with, or null when it did not end in a reset. */
  readonly resetCode: number | null;
  /** Who ended the call. */
  readonly origin: CallOrigin;
  /** Retries of the call, transparent and configured; the backend is the last attempt's. */
  readonly retries: number;
  /** Wall time from arrival to end, in ms to the microsecond. */
  readonly durationMs: number;
  /**
   * Time from arrival to the last attempt's first response byte from the backend, in ms to
   * the microsecond; null when no backend answered.
   */
  readonly upstreamDurationMs: number | null;
  /** Request bytes received from the client. */
  readonly bytesReceived: number;
  /** Response bytes sent to the client. */
  readonly bytesSent: number;
  /** The client's address, when known. */
  readonly client: string | null;
  /** Who the client is by its verified TLS certificate (mTLS), or null without one. */
  readonly clientIdentity: string | null;
  /** The request's `user-agent`, or null without one. */
  readonly userAgent: string | null;
  /** The request's `x-request-id`, or null without one. */
  readonly requestId: string | null;
  /**
   * The call's W3C trace id: the proxy's span's when tracing is on, else the one of a
   * well-formed `traceparent` request header; null otherwise.
   */
  readonly traceId: string | null;
}

/** Formats one finished call as a JSON line, newline included. */
export type AccessLogFormatter = (record: CallRecord) => string;

/** One field's value as JSON text. */
type FieldWriter = (record: CallRecord) => string;

/** A string, or null, as JSON text: `JSON.stringify` escapes quotes, controls, lone surrogates. */
function jsonString(value: string | null | undefined): string {
  return value === undefined || value === null ? "null" : JSON.stringify(value);
}

/** A number, or null, as JSON text (JSON has no NaN or Infinity: those are null, as there). */
function jsonNumber(value: number | undefined): string {
  return value !== undefined && Number.isFinite(value) ? String(value) : "null";
}

/** Milliseconds rounded to 3 decimals (microseconds): sub-µs digits are noise in a log. */
function roundMs(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}

/** `message` cut to {@link GRPC_MESSAGE_MAX_CHARS} characters, marked when cut. */
export function truncateGrpcMessage(message: string): string {
  if (message.length <= GRPC_MESSAGE_MAX_CHARS) return message;
  let end = GRPC_MESSAGE_MAX_CHARS;
  // Never end on half a surrogate pair: the line would carry a lone surrogate.
  const last = message.charCodeAt(end - 1);
  if (last >= 0xd800 && last <= 0xdbff) end--;
  return message.slice(0, end) + TRUNCATION_MARKER;
}

const DASH = 0x2d;

/** True when `text[start, end)` is lowercase hex digits (W3C Trace Context §3.2.2). */
function isLowerHex(text: string, start: number, end: number): boolean {
  for (let i = start; i < end; i++) {
    const c = text.charCodeAt(i);
    if (!((c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x66))) return false;
  }
  return true;
}

/** True when `text[start, end)` is all `0`: an invalid trace or parent id. */
function isAllZero(text: string, start: number, end: number): boolean {
  for (let i = start; i < end; i++) {
    if (text.charCodeAt(i) !== 0x30) return false;
  }
  return true;
}

/**
 * The trace id of a well-formed W3C `traceparent` value (`version-traceid-parentid-flags`,
 * W3C Trace Context §3.2), or null. Checked by hand rather than by a regex, as it runs per
 * call: version `ff` is invalid, version `00` is exactly 55 characters, and a later version may
 * carry more after a `-` (§3.2.4); trace and parent ids are lowercase hex, not all zero.
 */
export function traceparentTraceId(value: string | undefined): string | null {
  if (value === undefined || value.length < 55) return null;
  if (!isLowerHex(value, 0, 2) || (value[0] === "f" && value[1] === "f")) return null;
  if (value.length > 55 && (value.charCodeAt(55) !== DASH || value.startsWith("00"))) {
    return null;
  }
  if (
    value.charCodeAt(2) !== DASH || value.charCodeAt(35) !== DASH ||
    value.charCodeAt(52) !== DASH
  ) return null;
  if (!isLowerHex(value, 3, 35) || isAllZero(value, 3, 35)) return null;
  if (!isLowerHex(value, 36, 52) || isAllZero(value, 36, 52)) return null;
  if (!isLowerHex(value, 53, 55)) return null;
  return value.slice(3, 35);
}

/**
 * How each field is written; `satisfies` keeps the table complete. `protocol`, `origin` and
 * `time` are quoted as they are: they never hold a character JSON escapes.
 */
const WRITERS = {
  time: (record) => `"${new Date(record.startedAt).toISOString()}"`,
  method: (record) => JSON.stringify(record.method),
  protocol: (record) => `"${record.protocol}"`,
  authority: (record) => jsonString(headerValue(record.requestHeaders, ":authority")),
  cluster: (record) => jsonString(record.cluster),
  backend: (record) => jsonString(record.backend),
  grpcStatus: (record) => jsonNumber(record.grpcStatus),
  // An empty grpc-message says nothing: null, as for none.
  grpcMessage: (record) =>
    record.grpcMessage ? JSON.stringify(truncateGrpcMessage(record.grpcMessage)) : "null",
  resetCode: (record) => jsonNumber(record.resetCode),
  origin: (record) => `"${record.origin}"`,
  retries: (record) => jsonNumber(record.retries),
  durationMs: (record) => jsonNumber(roundMs(record.durationMs)),
  upstreamDurationMs: (record) =>
    record.upstreamDurationMs === undefined
      ? "null"
      : jsonNumber(roundMs(record.upstreamDurationMs)),
  bytesReceived: (record) => jsonNumber(record.bytesReceived),
  bytesSent: (record) => jsonNumber(record.bytesSent),
  client: (record) => jsonString(record.clientAddress),
  clientIdentity: (record) => jsonString(record.clientIdentity),
  userAgent: (record) => jsonString(headerValue(record.requestHeaders, "user-agent")),
  requestId: (record) => jsonString(headerValue(record.requestHeaders, "x-request-id")),
  traceId: (record) =>
    jsonString(
      record.traceId ?? traceparentTraceId(headerValue(record.requestHeaders, "traceparent")),
    ),
} satisfies Record<AccessLogField, FieldWriter>;

/**
 * A formatter whose lines carry `fields`, in that order (every field, in
 * {@link ACCESS_LOG_FIELDS} order, when not given). The config refuses unknown and repeated
 * names; here a repeated name would write its key twice.
 */
export function accessLogFormatter(
  fields: readonly AccessLogField[] = ACCESS_LOG_FIELDS,
): AccessLogFormatter {
  // Each key with what comes before it, quoted once here rather than per line.
  const keys: readonly string[] = fields.map((field, i) =>
    `${i === 0 ? "{" : ","}${JSON.stringify(field)}:`
  );
  const writers: readonly FieldWriter[] = fields.map((field) => WRITERS[field]);
  const end = fields.length === 0 ? "{}\n" : "}\n";
  return (record) => {
    let line = "";
    for (let i = 0; i < writers.length; i++) line += keys[i] + writers[i](record);
    return line + end;
  };
}
