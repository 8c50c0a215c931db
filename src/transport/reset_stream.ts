/**
 * Resetting an HTTP/2 stream with a given code, and nothing else.
 *
 * `node:http2`'s `stream.close(code)` (Node's and Deno's alike) first ends the writable side
 * when it is still open, which sends an empty DATA frame with END_STREAM. When the peer has
 * already half-closed, that END_STREAM closes the stream and nghttp2 drops the RST_STREAM
 * that follows: a backend's CANCEL after its headers reached clients as a clean end without
 * trailers, and a client's cancel reached backends as "request complete", then CANCEL.
 * Marking the writable side as ending first makes `close()` send the RST_STREAM alone.
 * @module
 */
import type { Http2Stream } from "node:http2";

type StreamWithWritableState = Http2Stream & { _writableState?: { ending: boolean } };

/** Sends RST_STREAM with `code` on `stream`, without a preceding END_STREAM. */
export function resetStream(stream: Http2Stream, code: number): void {
  const state = (stream as StreamWithWritableState)._writableState;
  if (state) state.ending = true;
  stream.close(code);
}
