// @ts-check
/**
 * The bench's fast backend: a bare `node:http2` server that answers every gRPC call with
 * fixed, pre-framed messages and `grpc-status: 0`, so that a benchmark measures the proxy,
 * not the backend. Plain JavaScript so that it runs on Node (preferred: its http2 is the
 * cheaper one) or on Deno.
 *
 * The response shape comes from request headers, which every target forwards unchanged:
 * - `bench-messages`: how many messages to send (default 1);
 * - `bench-message-bytes`: payload bytes per message (default 32).
 *
 * It counts the calls it finished with `grpc-status: 0` trailers; a request for
 * {@link COMPLETED_PATH} answers with that count in the `bench-completed` response header
 * (and is not counted), so the bench can check that every call a load run made was answered.
 *
 * Usage: `node bench/fast_backend.mjs --port 50051`. Prints `listening <port>` when ready.
 * @module
 */
import http2 from "node:http2";
import { parseArgs } from "node:util";

const DEFAULT_MESSAGE_BYTES = 32;
const STREAM_WINDOW_BYTES = 1 << 20;
const CONNECTION_WINDOW_BYTES = 16 << 20;
const OK_TRAILERS = { "grpc-status": "0" };
const RESPONSE_HEADERS = { ":status": 200, "content-type": "application/grpc" };

/** The path that reports the count of completed calls instead of being answered as a call. */
export const COMPLETED_PATH = "/bench.Stats/Completed";

/** Calls finished with OK trailers since the server started. */
let completedCalls = 0;

/** @type {Map<number, Buffer>} framed messages by payload size; built once per size */
const framedBySize = new Map();

/**
 * One framed gRPC message with a `size`-byte payload.
 * @param {number} size
 * @returns {Buffer}
 */
export function framedMessage(size) {
  let framed = framedBySize.get(size);
  if (!framed) {
    framed = Buffer.alloc(5 + size, "x".charCodeAt(0));
    framed[0] = 0;
    framed.writeUInt32BE(size, 1);
    framedBySize.set(size, framed);
  }
  return framed;
}

/**
 * Reads a non-negative integer header, or the fallback when it is absent or malformed.
 * @param {string | string[] | undefined} value
 * @param {number} fallback
 * @returns {number}
 */
function intHeader(value, fallback) {
  const parsed = Number(value);
  return Number.isInteger(parsed) && parsed >= 0 ? parsed : fallback;
}

/**
 * Writes `count` copies of `message`, waiting for `drain` whenever the stream pushes back,
 * then ends the stream (the trailers follow from `wantTrailers`).
 * @param {http2.ServerHttp2Stream} stream
 * @param {Buffer} message
 * @param {number} count
 * @returns {void}
 */
function writeMessages(stream, message, count) {
  let left = count;
  const pump = () => {
    while (left > 0) {
      if (stream.destroyed) return;
      left--;
      if (!stream.write(message)) {
        stream.once("drain", pump);
        return;
      }
    }
    stream.end();
  };
  pump();
}

/**
 * Answers one call once the request has been read completely, like a real unary handler.
 * @param {http2.ServerHttp2Stream} stream
 * @param {http2.IncomingHttpHeaders} headers
 * @returns {void}
 */
function answer(stream, headers) {
  const count = intHeader(headers["bench-messages"], 1);
  const size = intHeader(headers["bench-message-bytes"], DEFAULT_MESSAGE_BYTES);
  stream.on("error", () => {});
  stream.once("wantTrailers", () => {
    stream.sendTrailers(OK_TRAILERS);
    completedCalls++;
  });
  stream.resume(); // the request payload is not needed, only its end
  stream.once("end", () => {
    if (stream.destroyed) return;
    stream.respond(RESPONSE_HEADERS, { waitForTrailers: true });
    writeMessages(stream, framedMessage(size), count);
  });
}

/**
 * Starts the server on `127.0.0.1:port` and resolves with the bound port.
 * @param {number} port
 * @returns {Promise<number>}
 */
export async function startFastBackend(port) {
  // Deno's node:http2 needs the GOAWAY teardown workaround (docs/deno-http2.md).
  const deferClose = "Deno" in globalThis
    ? (await import("../src/health/node_http2_goaway.ts")).deferCloseDuringGoaway
    : undefined;
  const server = http2.createServer({
    settings: { initialWindowSize: STREAM_WINDOW_BYTES, maxConcurrentStreams: 1000 },
  });
  server.on("session", (session) => {
    deferClose?.(session);
    session.on("error", () => {});
    session.once("localSettings", () => session.setLocalWindowSize(CONNECTION_WINDOW_BYTES));
  });
  server.on(
    "stream",
    /** @param {import("node:http2").ServerHttp2Stream} stream */
    (stream, headers) => {
      if (headers[":path"] === COMPLETED_PATH) {
        stream.respond({ ":status": 200, "bench-completed": String(completedCalls) }, {
          endStream: true,
        });
      } else {
        answer(stream, headers);
      }
    },
  );
  return await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => {
      const address = server.address();
      resolve(typeof address === "object" && address ? address.port : port);
    });
  });
}

if (import.meta.url === `file://${process.argv[1]}` || import.meta.main) {
  const { values } = parseArgs({ options: { port: { type: "string", default: "0" } } });
  const bound = await startFastBackend(Number(values.port));
  console.log(`listening ${bound}`);
}
