/**
 * Which request headers cross the proxy. The engine already refuses connection-specific
 * fields as malformed (RFC 9113 §8.2.2), so everything it delivers is forwarded unchanged
 * except `grpc-timeout`, which the proxy rewrites to the time left.
 * @module
 */
import type { HeaderList } from "../transport/stream.ts";

/**
 * The request headers for the backend: `headers` itself when there is no deadline to
 * forward (the engine never changes a list it is given, so sharing it saves a copy per
 * call), else a copy with `grpc-timeout` set to `grpcTimeout`.
 */
export function upstreamRequestHeaders(
  headers: HeaderList,
  grpcTimeout: string | undefined,
): HeaderList {
  if (grpcTimeout === undefined) return headers;
  const out: HeaderList = [];
  for (let i = 0; i < headers.length; i += 2) {
    if (headers[i] !== "grpc-timeout") out.push(headers[i], headers[i + 1]);
  }
  out.push("grpc-timeout", grpcTimeout);
  return out;
}
