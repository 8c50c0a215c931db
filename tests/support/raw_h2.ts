/**
 * Raw `node:http2` helpers for tests that must see the wire: gRPC message framing, one-call
 * clients that report headers, trailers and reset codes separately, and the GOAWAY guard
 * that every `node:http2` session in the test process needs on Deno 2.9.4+.
 * @module
 */
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import {
  deferGoawayCloseOnAllClientSessions,
  deferGoawayCloseOnAllServerSessions,
} from "../../src/health/node_http2_goaway.ts";

// The GOAWAY deferral (see `docs/deno-http2.md`) on every `node:http2` session this process
// creates from now on, client sessions (the ones inside `@grpc/grpc-js` included) and server
// sessions alike. Without it the *test process* can abort when the proxy drains or closes its
// upstream connections, which would look like a test failure of the proxy.
deferGoawayCloseOnAllClientSessions();
deferGoawayCloseOnAllServerSessions();

type StreamWithWritableState = http2.Http2Stream & { _writableState?: { ending: boolean } };

/**
 * Sends RST_STREAM with `code` on a `node:http2` stream, without a preceding END_STREAM.
 * `stream.close(code)` first ends the writable side when it is still open, which sends an
 * empty DATA frame with END_STREAM; when the peer has already half-closed, that closes the
 * stream and nghttp2 drops the RST_STREAM. Marking the writable side as ending first makes
 * `close()` send the RST_STREAM alone, which test backends need to reset on purpose.
 */
export function resetStream(stream: http2.Http2Stream, code: number): void {
  const state = (stream as StreamWithWritableState)._writableState;
  if (state) state.ending = true;
  stream.close(code);
}

/** Frames one gRPC message (uncompressed): a 5-byte prefix and the payload. */
export function grpcFrame(payload: Uint8Array): Buffer {
  const frame = Buffer.alloc(5 + payload.length);
  frame.writeUInt32BE(payload.length, 1);
  frame.set(payload, 5);
  return frame;
}

/** Request headers of a gRPC call to `path`, plus `extra`. */
export function grpcRequestHeaders(
  path: string,
  extra: http2.OutgoingHttpHeaders = {},
): http2.OutgoingHttpHeaders {
  return {
    ":method": "POST",
    ":path": path,
    "content-type": "application/grpc",
    te: "trailers",
    ...extra,
  };
}

/** Everything one raw call produced. */
export interface RawCallResult {
  /** Response headers, or `undefined` when none arrived. */
  readonly headers: http2.IncomingHttpHeaders | undefined;
  /** Trailers, or `undefined` (e.g. for a trailers-only response). */
  readonly trailers: http2.IncomingHttpHeaders | undefined;
  /** The response body as received (still gRPC-framed). */
  readonly body: Buffer;
  /** The stream's RST_STREAM code (0 for a clean end). */
  readonly rstCode: number | undefined;
  /** The final grpc-status, from trailers or a trailers-only response. */
  readonly grpcStatus: number | undefined;
  /** The final grpc-message, percent-decoded. */
  readonly grpcMessage: string | undefined;
}

/**
 * Makes one call on `session` sending `messages`, and collects the whole response.
 * `onStream` gets the stream right away, e.g. to watch progress or reset it.
 */
export function rawCall(
  session: http2.ClientHttp2Session,
  path: string,
  messages: readonly Uint8Array[] = [new Uint8Array()],
  extraHeaders: http2.OutgoingHttpHeaders = {},
  onStream?: (stream: http2.ClientHttp2Stream) => void,
): Promise<RawCallResult> {
  return new Promise((resolve) => {
    const stream = session.request(grpcRequestHeaders(path, extraHeaders));
    onStream?.(stream);
    let headers: http2.IncomingHttpHeaders | undefined;
    let trailers: http2.IncomingHttpHeaders | undefined;
    const chunks: Buffer[] = [];
    stream.on("response", (h) => headers = h);
    stream.on("trailers", (t) => trailers = t);
    stream.on("data", (chunk: Buffer) => chunks.push(chunk));
    stream.on("error", () => {}); // the outcome is read from rstCode and the status
    stream.once("close", () => {
      const final = trailers ?? headers;
      const status = final?.["grpc-status"];
      const message = final?.["grpc-message"];
      resolve({
        headers,
        trailers,
        body: Buffer.concat(chunks),
        rstCode: stream.rstCode,
        grpcStatus: status === undefined ? undefined : Number(status),
        grpcMessage: message === undefined ? undefined : decodeURIComponent(String(message)),
      });
    });
    for (const message of messages) stream.write(grpcFrame(message));
    stream.end();
  });
}

/** Opens an h2c session to `address` and waits until it is connected. */
export async function connectRaw(address: string): Promise<http2.ClientHttp2Session> {
  const session = http2.connect(`http://${address}`);
  session.on("error", () => {}); // failures surface as failed calls
  await new Promise<void>((resolve, reject) => {
    session.once("connect", () => resolve());
    session.once("close", () => reject(new Error(`connection to ${address} closed`)));
  });
  return session;
}

/** Closes a session gracefully (GOAWAY, then close once streams end) and waits for it. */
export function closeRaw(session: http2.ClientHttp2Session): Promise<void> {
  if (session.destroyed) return Promise.resolve();
  const closed = new Promise<void>((resolve) => session.once("close", () => resolve()));
  session.close();
  return closed;
}

/** A raw `node:http2` backend on loopback. */
export interface RawBackend {
  /** `127.0.0.1:port`. */
  readonly address: string;
  /** Open sessions (proxy connections). */
  readonly sessions: ReadonlySet<http2.ServerHttp2Session>;
  /** Closes the listener and destroys every session. */
  close(): Promise<void>;
}

/**
 * Starts a raw h2c backend on a free loopback port; `onStream` handles every stream, and
 * `settings` is the SETTINGS frame it announces.
 */
export async function startRawBackend(
  onStream: (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => void,
  settings: http2.Settings = {},
): Promise<RawBackend> {
  const server = http2.createServer({ settings });
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on("session", (session: http2.ServerHttp2Session) => {
    sessions.add(session);
    session.on("error", () => {});
    session.once("close", () => sessions.delete(session));
  });
  server.on("stream", (stream: http2.ServerHttp2Stream, headers) => {
    stream.on("error", () => {}); // resets are part of what these backends test
    onStream(stream, headers);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    address: `127.0.0.1:${port}`,
    sessions,
    close: () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const session of sessions) session.destroy();
      return closed;
    },
  };
}

/** Answers a unary call with one empty message and grpc-status 0. */
export function respondOk(stream: http2.ServerHttp2Stream): void {
  stream.respond({ ":status": 200, "content-type": "application/grpc" }, {
    waitForTrailers: true,
  });
  stream.once("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
  stream.resume();
  stream.end(grpcFrame(new Uint8Array()));
}
