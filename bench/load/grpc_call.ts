/**
 * One gRPC call over a raw `node:http2` client session, checked strictly: the call is
 * correct only with `grpc-status: 0` (in trailers or a trailers-only response) and exactly
 * the expected response messages. A proxy that loses trailers fails here.
 * @module
 */
import http2 from "node:http2";
import { deferCloseDuringGoaway } from "../../src/health/node_http2_goaway.ts";
import { GrpcMessageCounter } from "../grpc_frame.ts";
import type { CallShape } from "../scenarios.ts";

/** The outcome of one call. */
export interface CallOutcome {
  /** Wall time from request to stream close, ms. */
  readonly latencyMs: number;
  /** Response body bytes, frames included. */
  readonly responseBytes: number;
  /** Why the call is wrong; undefined when it is correct. */
  readonly error?: string;
}

const CONNECTION_WINDOW_BYTES = 16 << 20;

/** Opens a client connection with the same large windows the proxy uses. */
export function connectClient(address: string): http2.ClientHttp2Session {
  const session = http2.connect(`http://${address}`, {
    settings: { initialWindowSize: 1 << 20, enablePush: false },
  });
  deferCloseDuringGoaway(session);
  session.on("error", () => {}); // surfaces on the streams too
  session.once("connect", () => session.setLocalWindowSize(CONNECTION_WINDOW_BYTES));
  return session;
}

/** Request headers for `shape`, built once per load run. */
export function requestHeaders(shape: CallShape): http2.OutgoingHttpHeaders {
  return {
    ":method": "POST",
    ":path": shape.path,
    "content-type": "application/grpc",
    te: "trailers",
    ...shape.headers,
  };
}

function verdict(
  shape: CallShape,
  counter: GrpcMessageCounter,
  status: string | undefined,
  message: string | undefined,
  streamError: Error | undefined,
): string | undefined {
  if (status === undefined) {
    return `no grpc-status trailer${streamError ? ` (${streamError.message})` : ""}`;
  }
  if (status !== "0") return `grpc-status ${status}: ${decodeURIComponent(message ?? "")}`;
  if (counter.messages !== shape.expectedMessages || !counter.atBoundary) {
    return `${counter.messages} response messages, expected ${shape.expectedMessages}`;
  }
  if (counter.messages > 0 && counter.uniformSize !== shape.expectedMessageBytes) {
    return `response messages of ${counter.uniformSize} bytes, expected ${shape.expectedMessageBytes}`;
  }
  return undefined;
}

/** Makes one call and checks it; never rejects. */
export function grpcCall(
  session: http2.ClientHttp2Session,
  headers: http2.OutgoingHttpHeaders,
  shape: CallShape,
): Promise<CallOutcome> {
  const started = performance.now();
  return new Promise((resolve) => {
    const counter = new GrpcMessageCounter();
    let responseBytes = 0;
    let status: string | undefined;
    let message: string | undefined;
    let streamError: Error | undefined;
    const takeStatus = (fields: http2.IncomingHttpHeaders): void => {
      if (fields["grpc-status"] === undefined) return;
      status = String(fields["grpc-status"]);
      message = fields["grpc-message"] as string | undefined;
    };
    let stream: http2.ClientHttp2Stream;
    try {
      stream = session.request(headers, { endStream: false });
    } catch (error) {
      resolve({ latencyMs: 0, responseBytes: 0, error: `request: ${(error as Error).message}` });
      return;
    }
    // Deno may deliver data before the response headers; counting does not care.
    stream.on("response", takeStatus);
    stream.on("trailers", takeStatus);
    stream.on("data", (chunk: Uint8Array) => {
      responseBytes += chunk.length;
      counter.push(chunk);
    });
    stream.on("error", (error: Error) => streamError = error);
    stream.once("close", () => {
      resolve({
        latencyMs: performance.now() - started,
        responseBytes,
        error: verdict(shape, counter, status, message, streamError),
      });
    });
    stream.end(shape.body);
  });
}
