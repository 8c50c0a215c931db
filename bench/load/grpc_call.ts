/**
 * One gRPC call over a raw `node:http2` client session, checked strictly: the call is
 * correct only with `grpc-status: 0` (in trailers or a trailers-only response) and exactly
 * the expected response messages. A proxy that loses trailers fails here.
 * @module
 */
import http2 from "node:http2";
import { deferCloseDuringGoaway } from "../../src/health/node_http2_goaway.ts";
import { GrpcMessageCounter } from "../grpc_frame.ts";
import { callHeaders, type CallShape } from "../scenarios.ts";

/** The outcome of one call. */
export interface CallOutcome {
  /** Wall time from request to the end of the response, ms. */
  readonly latencyMs: number;
  /** Response body bytes, frames included. */
  readonly responseBytes: number;
  /** Why the call is wrong; undefined when it is correct. */
  readonly error?: string;
}

/** A client connection that makes checked calls of one shape. */
export interface CallChannel {
  /** Makes one call and checks it; never rejects. */
  call(): Promise<CallOutcome>;
  /** Closes the connection. */
  close(): void;
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

/** Request headers for `shape`, built once per channel. */
function requestHeaders(shape: CallShape): http2.OutgoingHttpHeaders {
  return { ":method": "POST", ":path": shape.path, ...callHeaders(shape) };
}

/**
 * Why a call of `shape` is wrong, from its response messages, its grpc-status and message
 * (undefined when none came) and the error its stream ended with; undefined when correct.
 */
export function verdict(
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
function grpcCall(
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

/** A native gRPC channel: one `node:http2` client session to `address`. */
export function openGrpcChannel(address: string, shape: CallShape): CallChannel {
  const session = connectClient(address);
  const headers = requestHeaders(shape);
  return {
    call: () => grpcCall(session, headers, shape),
    close: () => session.close(),
  };
}
