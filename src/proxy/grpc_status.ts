/**
 * gRPC status codes and the metadata the proxy writes for errors it causes itself.
 * @module
 */

/** The gRPC status codes the proxy produces or inspects. */
export const GrpcStatus = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  RESOURCE_EXHAUSTED: 8,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
} as const;

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

/** The trailing metadata of a status the proxy produces, as a header list. */
export function statusTrailers(code: number, message: string): string[] {
  return ["grpc-status", String(code), "grpc-message", encodeGrpcMessage(message)];
}
