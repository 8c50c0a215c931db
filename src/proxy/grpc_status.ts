/**
 * gRPC status codes and the metadata the proxy writes for errors it causes itself.
 * @module
 */

/** The gRPC status codes (gRPC's statuscodes.md). */
export const GrpcStatus = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;

/** A status code's name, such as `"UNAVAILABLE"`. */
export type GrpcStatusName = keyof typeof GrpcStatus;

/** Every status name, in code order. */
export const GRPC_STATUS_NAMES = Object.keys(GrpcStatus) as GrpcStatusName[];

/** The highest status code gRPC defines (UNAUTHENTICATED). */
const MAX_STATUS = GrpcStatus.UNAUTHENTICATED;

/** `grpc-status` is `1*DIGIT` (PROTOCOL-HTTP2, "Status"). */
const STATUS_PATTERN = /^[0-9]+$/;

/**
 * The status a `grpc-status` value stands for. A missing value, one that is not `1*DIGIT`
 * (`Number()` would read `""` as OK and `"1e1"` as 10) or a code past 16 is UNKNOWN, as
 * gRPC clients map a status they cannot interpret (PROTOCOL-HTTP2, "Status").
 */
export function parseGrpcStatus(value: string | undefined): number {
  if (value === undefined || !STATUS_PATTERN.test(value)) return GrpcStatus.UNKNOWN;
  const code = Number(value);
  return code <= MAX_STATUS ? code : GrpcStatus.UNKNOWN;
}

const GRPC_MEDIA_TYPE = "application/grpc";

/**
 * True for a gRPC request `content-type`: `application/grpc`, optionally followed by
 * `+<subtype>` or `;<params>` (PROTOCOL-HTTP2, "Content-Type"); `application/grpcfoo` and
 * `application/grpc-web` are other media types.
 */
export function isGrpcContentType(value: string): boolean {
  if (!value.startsWith(GRPC_MEDIA_TYPE)) return false;
  if (value.length === GRPC_MEDIA_TYPE.length) return true;
  const next = value[GRPC_MEDIA_TYPE.length];
  return next === ";" || (next === "+" && value.length > GRPC_MEDIA_TYPE.length + 1);
}

/**
 * Percent-encodes a `grpc-message` value as the gRPC HTTP/2 spec requires: only `%` and
 * bytes outside printable ASCII. Escaping more (as `encodeURIComponent` does with `/`) is
 * not undone by clients that decode with `decodeURI`, such as grpc-js.
 */
export function encodeGrpcMessage(message: string): string {
  let encoded = "";
  for (const byte of new TextEncoder().encode(message)) {
    encoded += byte >= 0x20 && byte <= 0x7e && byte !== 0x25
      ? String.fromCharCode(byte)
      : `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return encoded;
}

/**
 * Decodes a received `grpc-message`: `%XX` sequences are UTF-8 bytes (PROTOCOL-HTTP2,
 * "Status"). A malformed sequence is kept as it came, as the spec asks of receivers.
 */
export function decodeGrpcMessage(value: string): string {
  if (!value.includes("%")) return value;
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}

/** The trailing metadata of a status the proxy produces, as a header list. */
export function statusTrailers(code: number, message: string): string[] {
  return ["grpc-status", String(code), "grpc-message", encodeGrpcMessage(message)];
}
