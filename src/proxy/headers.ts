/**
 * Which request headers cross the proxy. The engine already refuses connection-specific
 * fields as malformed (RFC 9113 §8.2.2), so everything it delivers is forwarded unchanged
 * except `grpc-timeout`, which the proxy rewrites to the time left.
 * @module
 */
import type { HeaderList } from "../transport/stream.ts";

/**
 * The request headers for the backend: `headers` itself, with `grpc-timeout` set to
 * `grpcTimeout` when there is a deadline to forward. The engine hands each received header
 * list to one call and keeps no reference, so the call may rewrite it in place instead of
 * copying it for every call with a deadline.
 */
export function upstreamRequestHeaders(
  headers: HeaderList,
  grpcTimeout: string | undefined,
): HeaderList {
  if (grpcTimeout === undefined) return headers;
  for (let i = 0; i < headers.length; i += 2) {
    if (headers[i] === "grpc-timeout") {
      headers[i + 1] = grpcTimeout;
      return headers;
    }
  }
  headers.push("grpc-timeout", grpcTimeout);
  return headers;
}
