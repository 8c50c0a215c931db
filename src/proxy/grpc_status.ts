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
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
} as const;

/** Percent-encodes a `grpc-message` value as the gRPC HTTP/2 spec requires. */
export function encodeGrpcMessage(message: string): string {
  return encodeURIComponent(message).replace(/%20/g, " ");
}

/** The trailing metadata of a status the proxy produces. */
export function statusTrailers(code: number, message: string): Record<string, string> {
  return { "grpc-status": String(code), "grpc-message": encodeGrpcMessage(message) };
}
