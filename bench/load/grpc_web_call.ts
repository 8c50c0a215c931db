/**
 * One gRPC-Web call over HTTP/1.1 (`fetch`), checked as strictly as a native one: the call is
 * correct only with HTTP 200, `grpc-status: 0` (in the trailer frame that ends the body, or
 * in the headers of a trailers-only response) and exactly the expected response messages.
 * @module
 */
import { GRPC_PREFIX_BYTES, GrpcMessageCounter } from "../grpc_frame.ts";
import { callHeaders, type CallShape } from "../scenarios.ts";
import { type CallChannel, type CallOutcome, verdict } from "./grpc_call.ts";

/** The flag bit of gRPC-Web's trailer frame. */
const TRAILER_FLAG = 0x80;

/** The fields of a trailer frame's payload: `name: value` lines, CRLF-separated. */
function parseTrailers(payload: Uint8Array): Headers {
  const trailers = new Headers();
  for (const line of new TextDecoder().decode(payload).split("\r\n")) {
    const colon = line.indexOf(":");
    if (colon > 0) trailers.append(line.slice(0, colon).trim(), line.slice(colon + 1).trim());
  }
  return trailers;
}

/** Why a gRPC-Web response of `shape` is wrong; undefined when it is correct. */
function webVerdict(shape: CallShape, response: Response, body: Uint8Array): string | undefined {
  if (response.status !== 200) return `HTTP ${response.status}`;
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
  const counter = new GrpcMessageCounter();
  let trailers: Headers | undefined;
  for (let offset = 0; offset < body.length;) {
    if (trailers) return "response data after the trailer frame";
    if (body.length - offset < GRPC_PREFIX_BYTES) return "response ends inside a frame prefix";
    const end = offset + GRPC_PREFIX_BYTES + view.getUint32(offset + 1);
    if (end > body.length) return "response ends inside a frame";
    if ((body[offset] & TRAILER_FLAG) !== 0) {
      trailers = parseTrailers(body.subarray(offset + GRPC_PREFIX_BYTES, end));
    } else counter.push(body.subarray(offset, end));
    offset = end;
  }
  // Without a trailer frame, only a trailers-only response (status in the headers) is right.
  const fields = trailers ?? response.headers;
  const status = fields.get("grpc-status") ?? undefined;
  return verdict(shape, counter, status, fields.get("grpc-message") ?? undefined, undefined);
}

/** Makes one call and checks it; never rejects. */
async function grpcWebCall(
  client: Deno.HttpClient,
  url: string,
  headers: Record<string, string>,
  shape: CallShape,
): Promise<CallOutcome> {
  const started = performance.now();
  try {
    const response = await fetch(url, { method: "POST", headers, body: shape.body, client });
    const body = await response.bytes();
    return {
      latencyMs: performance.now() - started,
      responseBytes: body.length,
      error: webVerdict(shape, response, body),
    };
  } catch (error) {
    return {
      latencyMs: performance.now() - started,
      responseBytes: 0,
      error: `fetch: ${(error as Error).message}`,
    };
  }
}

/**
 * A gRPC-Web channel: a `fetch` client of its own, HTTP/1.1 only, to `address`. HTTP/1.1
 * carries one call at a time, so calls made on it concurrently open more connections.
 */
export function openGrpcWebChannel(address: string, shape: CallShape): CallChannel {
  const client = Deno.createHttpClient({ http2: false });
  const url = `http://${address}${shape.path}`;
  const headers = callHeaders(shape);
  return {
    call: () => grpcWebCall(client, url, headers, shape),
    close: () => client.close(),
  };
}
