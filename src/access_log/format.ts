/**
 * The access log's line format.
 * @module
 */
import type { CallOrigin, CallProtocol, CallRecord } from "../proxy/call_record.ts";

/** One access-log line, as JSON. */
export interface AccessLogEntry {
  /** ISO time the call arrived. */
  readonly time: string;
  /** `:path`, e.g. `/helloworld.Greeter/SayHello`. */
  readonly method: string;
  /** `grpc`, or `grpc-web` for calls the proxy translated. */
  readonly protocol: CallProtocol;
  /** Routed cluster, or null when no route matched. */
  readonly cluster: string | null;
  /** Picked backend, or null when none was picked. */
  readonly backend: string | null;
  /** Final grpc-status sent to the client. */
  readonly grpcStatus: number;
  /** Who ended the call. */
  readonly origin: CallOrigin;
  /** Retries of the call, transparent and configured; the backend is the last attempt's. */
  readonly retries: number;
  /** Wall time from arrival to end. */
  readonly durationMs: number;
  /** Request bytes received from the client. */
  readonly bytesReceived: number;
  /** Response bytes sent to the client. */
  readonly bytesSent: number;
  /** The client's address, when known. */
  readonly client: string | null;
  /** Who the client is by its verified TLS certificate (mTLS), or null without one. */
  readonly clientIdentity: string | null;
}

/** Formats one finished call as a JSON line, newline included. */
export function formatAccessLogLine(record: CallRecord): string {
  const entry: AccessLogEntry = {
    time: new Date(record.startedAt).toISOString(),
    method: record.method,
    protocol: record.protocol,
    cluster: record.cluster ?? null,
    backend: record.backend ?? null,
    grpcStatus: record.grpcStatus,
    origin: record.origin,
    retries: record.retries,
    durationMs: record.durationMs,
    bytesReceived: record.bytesReceived,
    bytesSent: record.bytesSent,
    client: record.clientAddress ?? null,
    clientIdentity: record.clientIdentity ?? null,
  };
  return JSON.stringify(entry) + "\n";
}
