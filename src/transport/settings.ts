/**
 * HTTP/2 flow-control settings shared by the listener and the upstream connections.
 *
 * The per-stream window bounds what the proxy may hold for one slow reader: when a reader
 * stalls, the proxy stops reading the other side, so at most about one stream window is
 * buffered per stream. The connection window is larger so that many streams can be in
 * flight on one connection without starving each other.
 * @module
 */

/** Per-stream receive window (SETTINGS_INITIAL_WINDOW_SIZE): 1 MiB. */
export const STREAM_WINDOW_BYTES = 1 << 20;

/** Per-connection receive window: 16 MiB. */
export const CONNECTION_WINDOW_BYTES = 16 << 20;

/** Largest HTTP/2 frame we accept: 64 KiB, fewer frames per large gRPC message. */
export const MAX_FRAME_BYTES = 1 << 16;

/** The SETTINGS frame the proxy sends on both sides. */
export const LOCAL_SETTINGS: Readonly<{
  initialWindowSize: number;
  maxFrameSize: number;
  enablePush: boolean;
}> = {
  initialWindowSize: STREAM_WINDOW_BYTES,
  maxFrameSize: MAX_FRAME_BYTES,
  enablePush: false,
};
