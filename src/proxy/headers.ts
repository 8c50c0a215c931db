/**
 * Which headers cross the proxy. Everything is forwarded unchanged except hop-by-hop
 * headers, which describe one connection and must not be relayed (RFC 9110 §7.6.1), and
 * `grpc-timeout`, which the proxy rewrites to the time left.
 * @module
 */
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from "node:http2";

const DROPPED = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "transfer-encoding",
  "upgrade",
  "http2-settings",
  "grpc-timeout",
]);

/**
 * The headers to send on the other side: `headers` itself when it holds nothing to drop,
 * else a copy without the hop-by-hop ones. `te: trailers` is kept: gRPC requires it end to
 * end. Never mutate the result: `node:http2` copies headers it sends, so sharing the
 * received object saves a copy per HEADERS frame.
 */
export function forwardableHeaders(headers: IncomingHttpHeaders): OutgoingHttpHeaders {
  for (const name in headers) {
    if (DROPPED.has(name)) return copyForwardable(headers);
  }
  return headers;
}

/**
 * The request headers for the backend: like {@link forwardableHeaders}, with `grpc-timeout`
 * set to `grpcTimeout` when given.
 */
export function upstreamRequestHeaders(
  headers: IncomingHttpHeaders,
  grpcTimeout: string | undefined,
): OutgoingHttpHeaders {
  if (grpcTimeout === undefined) return forwardableHeaders(headers);
  const out = copyForwardable(headers);
  out["grpc-timeout"] = grpcTimeout;
  return out;
}

function copyForwardable(headers: IncomingHttpHeaders): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const name in headers) {
    if (!DROPPED.has(name)) out[name] = headers[name];
  }
  return out;
}
