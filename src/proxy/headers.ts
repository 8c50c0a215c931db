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
 * Copies headers for the other side, leaving out hop-by-hop ones. `te: trailers` is kept:
 * gRPC requires it end to end.
 */
export function forwardableHeaders(headers: IncomingHttpHeaders): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const name in headers) {
    if (!DROPPED.has(name)) out[name] = headers[name];
  }
  return out;
}
