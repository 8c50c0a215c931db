/**
 * What OpenTelemetry's RPC and gRPC semantic conventions make of a call: its span name, its
 * `rpc.service` and `rpc.method`, and which gRPC statuses are a server span's errors.
 * @module
 */

/** A call's RPC identity, from its `:path`. */
export interface RpcName {
  /** The span name: `service/method` (the `:path` without its leading slash). */
  readonly spanName: string;
  /** `rpc.service`: the fully qualified service, such as `pkg.Service`; `undefined` if none. */
  readonly service: string | undefined;
  /** `rpc.method`: the method's name; `undefined` if none. */
  readonly method: string | undefined;
}

/** The span name of a call whose `:path` is not `/service/method`. */
const UNKNOWN_METHOD_SPAN = "grpc";

/**
 * The span name, service and method of a gRPC `:path` (PROTOCOL-HTTP2: `/Service/Method`).
 * Any other path gets the span name `grpc` and no service or method, so that a client cannot
 * mint span names of its own.
 */
export function rpcName(path: string): RpcName {
  const slash = path.indexOf("/", 1);
  if (path.charCodeAt(0) !== 0x2f || slash <= 1 || slash === path.length - 1) {
    return { spanName: UNKNOWN_METHOD_SPAN, service: undefined, method: undefined };
  }
  if (path.indexOf("/", slash + 1) !== -1) {
    return { spanName: UNKNOWN_METHOD_SPAN, service: undefined, method: undefined };
  }
  return { spanName: path.slice(1), service: path.slice(1, slash), method: path.slice(slash + 1) };
}

/**
 * The gRPC statuses that make a SERVER span's status ERROR (OpenTelemetry semantic conventions
 * for gRPC, "gRPC Status"): UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE,
 * DATA_LOSS. Other codes (NOT_FOUND, PERMISSION_DENIED, …) are the caller's errors, not the
 * server's, and leave the status unset.
 */
const SERVER_ERRORS: ReadonlySet<number> = new Set([2, 4, 12, 13, 14, 15]);

/** True when a server span that ended with `grpcStatus` has status ERROR. */
export function isServerError(grpcStatus: number): boolean {
  return SERVER_ERRORS.has(grpcStatus);
}
