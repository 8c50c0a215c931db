/**
 * The engine's connection options for each side, from the validated `http2` config.
 * @module
 */
import type { Http2Config } from "../config/schema.ts";
import type { ConnectionOptions } from "./connection.ts";

/** Options of one connection on the given side. */
export function connectionOptions(
  config: Http2Config,
  role: "server" | "client",
): ConnectionOptions {
  const server = role === "server";
  return {
    role,
    maxConcurrentStreams: config.maxConcurrentStreams,
    initialStreamWindowSize: server
      ? config.initialStreamWindowSize
      : config.upstream.initialStreamWindowSize,
    initialConnectionWindowSize: server
      ? config.initialConnectionWindowSize
      : config.upstream.initialConnectionWindowSize,
    maxFrameSize: config.maxFrameSize,
    maxHeaderListSize: config.maxHeaderListSize,
    maxHeaderBlockSize: config.maxHeaderBlockSize,
    maxContinuationFrames: config.maxContinuationFrames,
    maxPrematureResets: config.maxPrematureResets,
    prematureResetWindowMs: config.prematureResetWindow,
    maxOutboundControlFrames: config.maxOutboundControlFrames,
    maxConsecutiveEmptyFrames: config.maxConsecutiveEmptyFrames,
    settingsTimeoutMs: config.settingsTimeout,
    // Backend connections stay up between calls; keepalive finds the dead ones instead.
    idleTimeoutMs: server ? config.idleTimeout : 0,
    sendTimeoutMs: config.sendTimeout,
    maxConnectionBufferSize: config.maxConnectionBufferSize,
    keepaliveIntervalMs: server ? 0 : config.upstream.keepaliveInterval,
    keepaliveTimeoutMs: config.upstream.keepaliveTimeout,
    // gRPC's MAX_CONNECTION_AGE applies to client connections; backends age their own.
    maxConnectionAgeMs: server ? config.maxConnectionAge ?? 0 : 0,
    maxConnectionAgeGraceMs: server ? config.maxConnectionAgeGrace ?? 0 : 0,
  };
}
