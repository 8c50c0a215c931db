/**
 * The gRPC-Web listener: HTTP/1.1 and HTTP/2 through `Deno.serve` (gRPC-Web needs no HTTP
 * trailers), translated to gRPC calls that take the same route, cluster and picker as native
 * ones (PROTOCOL-WEB.md in grpc/grpc). Browsers send a whole request at once, so unary and
 * server-streaming calls are carried; a body with more than one message (client or bidi
 * streaming) is refused with UNIMPLEMENTED, as Envoy's `grpc_web` filter does.
 * @module
 */
import { parseHostPort } from "../config/address.ts";
import { componentLogger } from "../log/logger.ts";
import type { CallRecord } from "../proxy/call_record.ts";
import { GrpcStatus, statusTrailers } from "../proxy/grpc_status.ts";
import { type CallContext, ProxiedCall } from "../proxy/proxied_call.ts";
import type { HeaderList } from "../transport/stream.ts";
import {
  checkRequestFrames,
  decodeBase64Body,
  MalformedRequest,
  RequestTooLarge,
  StreamingRequest,
} from "./codec.ts";
import { type CorsConfig, CorsPolicy } from "./cors.ts";
import { GrpcWebStream, type WebResponseShape } from "./web_stream.ts";

const log = componentLogger("grpc_web");

/** `grpcWeb` in `config.json`. */
export interface GrpcWebOptions {
  /** `host:port` to bind. */
  readonly listen: string;
  /** The largest request body (the decoded message), in bytes. */
  readonly maxRequestBytes: number;
  /** CORS for browsers on other origins. */
  readonly cors: CorsConfig;
  /** PEM certificate and key: HTTPS (pages served over HTTPS need it). */
  readonly tls?: { readonly cert: string; readonly key: string };
  /** Share the address with other data-plane workers. */
  readonly reusePort: boolean;
}

/**
 * Request headers that describe the HTTP/1.1 connection or the gRPC-Web wrapping, not the
 * call (RFC 9113 §8.2.2 forbids the connection-specific ones on the backend's HTTP/2).
 */
const NOT_FORWARDED: ReadonlySet<string> = new Set([
  "connection",
  "content-length",
  "content-type",
  "host",
  "http2-settings",
  "keep-alive",
  "proxy-connection",
  "te",
  "transfer-encoding",
  "upgrade",
  "x-grpc-web",
]);

/** The gRPC-Web content types: `-text` carries base64; `+proto` and the like stay. */
const CONTENT_TYPE = /^application\/grpc-web(-text)?(\+[\w.-]+)?\s*(;.*)?$/i;

/** A running gRPC-Web listener. */
export class GrpcWebListener {
  readonly #server: Deno.HttpServer;

  private constructor(server: Deno.HttpServer) {
    this.#server = server;
  }

  /** Binds and starts translating calls into `context`. */
  static start(options: GrpcWebOptions, context: CallContext): GrpcWebListener {
    const { host, port } = parseHostPort(options.listen)!;
    const cors = new CorsPolicy(options.cors);
    const handle = (request: Request, info: Deno.ServeHandlerInfo<Deno.NetAddr>) =>
      serve(request, info, options.maxRequestBytes, cors, context);
    const server = Deno.serve({
      hostname: host,
      port,
      reusePort: options.reusePort,
      ...options.tls,
      onListen: () => {},
      onError: (error) => {
        log.error("gRPC-Web request failed inside the proxy: {error}", { error: String(error) });
        return new Response(null, { status: 500 });
      },
    }, handle);
    return new GrpcWebListener(server);
  }

  /** Stops accepting and waits up to `timeoutMs` for calls in flight. */
  async drain(timeoutMs: number): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      this.#server.shutdown(),
      new Promise((resolve) => timer = setTimeout(resolve, timeoutMs)),
    ]);
    clearTimeout(timer);
  }
}

/** One request: CORS, then the content type, the body, and the call. */
async function serve(
  request: Request,
  info: Deno.ServeHandlerInfo<Deno.NetAddr>,
  maxRequestBytes: number,
  cors: CorsPolicy,
  context: CallContext,
): Promise<Response> {
  const startedAt = Date.now();
  const origin = request.headers.get("origin");
  if (request.method === "OPTIONS") return cors.preflight(origin);
  const corsHeaders = cors.headersFor(origin);
  if (request.method !== "POST") {
    corsHeaders.set("allow", "POST, OPTIONS");
    return new Response(null, { status: 405, headers: corsHeaders });
  }
  const type = CONTENT_TYPE.exec(request.headers.get("content-type") ?? "");
  if (!type) return new Response(null, { status: 415, headers: corsHeaders });
  const text = type[1] !== undefined;
  const suffix = type[2] ?? "";
  const shape: WebResponseShape = {
    contentType: `application/grpc-web${text ? "-text" : ""}${suffix}`,
    text,
    cors: corsHeaders,
  };
  const url = new URL(request.url);
  const remote = info.remoteAddr;
  const client = `${remote.hostname}:${remote.port}`;
  let body: Uint8Array;
  try {
    body = await readBody(request, maxRequestBytes, text);
  } catch (error) {
    const refused = refusal(error, request.signal.aborted);
    if (!refused) throw error;
    // Counted like any call the proxy answered itself, though no backend saw it.
    const [status, message] = refused;
    const record: CallRecord = {
      protocol: "grpc-web",
      startedAt,
      durationMs: Date.now() - startedAt,
      method: url.pathname,
      cluster: undefined,
      backend: undefined,
      grpcStatus: status,
      resetCode: undefined,
      origin: status === GrpcStatus.CANCELLED ? "client" : "proxy",
      backendFailure: false,
      bytesReceived: 0,
      bytesSent: 0,
      clientAddress: client,
    };
    for (const observe of context.observers) observe(record);
    return refuse(shape, status, message);
  }
  const headers: HeaderList = [
    ":method",
    "POST",
    ":scheme",
    url.protocol === "https:" ? "https" : "http",
    ":path",
    url.pathname,
    ":authority",
    url.host,
    "content-type",
    `application/grpc${suffix}`,
    "te",
    "trailers",
  ];
  for (const [name, value] of request.headers) {
    if (!NOT_FORWARDED.has(name)) headers.push(name, value);
  }
  const { promise, resolve } = Promise.withResolvers<Response>();
  const stream = new GrpcWebStream(shape, resolve);
  new ProxiedCall(context, stream, headers, body.length === 0, client).start();
  if (body.length > 0) stream.deliver(body);
  request.signal.addEventListener("abort", () => stream.cancel("the browser aborted the call"));
  return promise;
}

/** The status and message a body-reading error answers with; undefined for a bug. */
function refusal(error: unknown, aborted: boolean): [number, string] | undefined {
  if (error instanceof RequestTooLarge) {
    return [GrpcStatus.RESOURCE_EXHAUSTED, `${error.message} (grpcWeb.maxRequestBytes)`];
  }
  if (error instanceof StreamingRequest) return [GrpcStatus.UNIMPLEMENTED, error.message];
  if (error instanceof MalformedRequest) {
    return [GrpcStatus.INTERNAL, `malformed gRPC-Web request: ${error.message}`];
  }
  // The browser went away while it sent the body: nobody reads this answer.
  if (aborted) return [GrpcStatus.CANCELLED, "request aborted"];
  return undefined;
}

/** Reads and decodes the whole body, checking its size and framing. */
async function readBody(request: Request, maxBytes: number, text: boolean): Promise<Uint8Array> {
  // Base64 takes 4 characters for every 3 bytes.
  const limit = text ? Math.ceil(maxBytes / 3) * 4 : maxBytes;
  const tooLarge = () => new RequestTooLarge(`request body larger than ${maxBytes} bytes`);
  const declared = request.headers.get("content-length");
  let body: Uint8Array;
  if (declared !== null) {
    // The HTTP layer holds the body to its declared length: one read, no stream to walk.
    if (Number(declared) > limit) throw tooLarge();
    body = await request.bytes();
  } else {
    body = await readChunked(request.body, limit, tooLarge);
  }
  if (text) body = decodeBase64Body(new TextDecoder().decode(body).trim());
  if (body.length > maxBytes) throw tooLarge();
  checkRequestFrames(body);
  return body;
}

/** Reads a body of undeclared length, refusing it as soon as it passes `limit`. */
async function readChunked(
  stream: ReadableStream<Uint8Array> | null,
  limit: number,
  tooLarge: () => Error,
): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let total = 0;
  for await (const chunk of stream ?? []) {
    total += chunk.length;
    if (total > limit) throw tooLarge();
    chunks.push(chunk);
  }
  const body = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) {
    body.set(chunk, offset);
    offset += chunk.length;
  }
  return body;
}

/** A trailers-only answer for a call that never reached the relay. */
function refuse(shape: WebResponseShape, status: number, message: string): Response {
  log.debug("gRPC-Web request refused: {message}", { message });
  const headers = new Headers(shape.cors);
  headers.set("content-type", shape.contentType);
  const trailers = statusTrailers(status, message);
  for (let i = 0; i < trailers.length; i += 2) headers.set(trailers[i], trailers[i + 1]);
  if (headers.has("access-control-allow-origin")) {
    headers.set("access-control-expose-headers", "grpc-status, grpc-message");
  }
  return new Response(null, { status: 200, headers });
}
