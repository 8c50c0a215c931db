/**
 * The gRPC-Web listener: HTTP/1.1 and HTTP/2 through `Deno.serve` (gRPC-Web needs no HTTP
 * trailers), translated to gRPC calls that take the same route, cluster and picker as native
 * ones (PROTOCOL-WEB.md in grpc/grpc). Browsers send a whole request at once, so unary and
 * server-streaming calls are carried; a body with more than one message (client or bidi
 * streaming) is refused with UNIMPLEMENTED, as Envoy's `grpc_web` filter does.
 * @module
 */
import { parseHostPort } from "../config/address.ts";
import { concatBytes } from "../h2/bytes.ts";
import { entrySize } from "../h2/hpack/dynamic_table.ts";
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

/** `grpcWeb` in `config.json`, with what the listener takes from the rest of the config. */
export interface GrpcWebOptions {
  /** `host:port` to bind. */
  readonly listen: string;
  /** The largest request body (the decoded message), in bytes. */
  readonly maxRequestBytes: number;
  /** Calls in flight at once on this listener; more get RESOURCE_EXHAUSTED. */
  readonly maxConcurrentCalls: number;
  /** How long a request body may take to arrive. */
  readonly bodyTimeout: number;
  /** CORS for browsers on other origins. */
  readonly cors: CorsConfig;
  /** `http2.maxHeaderListSize`: the same limit as for native calls. */
  readonly maxHeaderListSize: number;
  /** `http2.sendTimeout`: a browser that reads nothing for this long loses the call. */
  readonly sendTimeout: number;
  /**
   * PEM certificate and key: HTTPS (pages served over HTTPS need it). `Deno.serve` asks no
   * client for a certificate, so `clientIdentityHeader`, the header native mTLS calls carry
   * the verified identity in, is removed from every gRPC-Web call: none can forge it.
   */
  readonly tls?: {
    readonly cert: string;
    readonly key: string;
    readonly clientIdentityHeader?: string;
  };
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
  "expect",
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

/** A body that did not arrive within `bodyTimeout`. */
class BodyTimeout extends Error {}

/** A running gRPC-Web listener. */
export class GrpcWebListener {
  readonly #options: GrpcWebOptions;
  readonly #context: CallContext;
  readonly #cors: CorsPolicy;
  #server: Deno.HttpServer | undefined;
  #inFlight = 0;

  private constructor(options: GrpcWebOptions, context: CallContext) {
    this.#options = options;
    this.#context = context;
    this.#cors = new CorsPolicy(options.cors);
  }

  /** Binds and starts translating calls into `context`. */
  static start(options: GrpcWebOptions, context: CallContext): GrpcWebListener {
    const listener = new GrpcWebListener(options, context);
    const { host, port } = parseHostPort(options.listen)!;
    listener.#server = Deno.serve({
      hostname: host,
      port,
      reusePort: options.reusePort,
      ...(options.tls && { cert: options.tls.cert, key: options.tls.key }),
      onListen: () => {},
      onError: (error) => {
        log.error("gRPC-Web request failed inside the proxy: {error}", { error: String(error) });
        return new Response(null, { status: 500 });
      },
    }, (request, info) => listener.#serve(request, info.remoteAddr));
    return listener;
  }

  /** Stops accepting and waits up to `timeoutMs` for calls in flight. */
  async drain(timeoutMs: number): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      this.#server!.shutdown(),
      new Promise((resolve) => timer = setTimeout(resolve, timeoutMs)),
    ]);
    clearTimeout(timer);
  }

  /** One request: CORS, then the content type, the limits, the body, and the call. */
  async #serve(request: Request, remote: Deno.NetAddr): Promise<Response> {
    const startedAt = Date.now();
    const origin = request.headers.get("origin");
    if (request.method === "OPTIONS") return this.#cors.preflight(origin);
    const corsHeaders = this.#cors.headersFor(origin);
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
      sendTimeoutMs: this.#options.sendTimeout,
    };
    const url = new URL(request.url);
    const call = { path: url.pathname, client: `${remote.hostname}:${remote.port}`, startedAt };
    const headers = this.#requestHeaders(request, url, suffix);
    if (typeof headers === "string") {
      return this.#refuse(shape, call, GrpcStatus.RESOURCE_EXHAUSTED, headers);
    }
    if (this.#inFlight >= this.#options.maxConcurrentCalls) {
      return this.#refuse(
        shape,
        call,
        GrpcStatus.RESOURCE_EXHAUSTED,
        `more than ${this.#options.maxConcurrentCalls} gRPC-Web calls in flight ` +
          "(grpcWeb.maxConcurrentCalls)",
      );
    }
    this.#inFlight++;
    let body: Uint8Array;
    try {
      body = await this.#readBodyInTime(request, text);
    } catch (error) {
      this.#inFlight--;
      const [status, message] = refusal(error);
      return this.#refuse(shape, call, status, message);
    }
    const { promise, resolve } = Promise.withResolvers<Response>();
    const stream = new GrpcWebStream(shape, resolve, () => this.#inFlight--);
    request.signal.addEventListener("abort", () => stream.cancel("the browser aborted the call"));
    new ProxiedCall(this.#context, stream, headers, body.length === 0, call.client, undefined)
      .start();
    if (body.length > 0) stream.deliver(body);
    if (request.signal.aborted) stream.cancel("the browser aborted the call");
    return promise;
  }

  /**
   * The call's request headers for the relay, or why they are refused: over
   * `http2.maxHeaderListSize`, as a native call's would be.
   */
  #requestHeaders(request: Request, url: URL, suffix: string): HeaderList | string {
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
    const identityHeader = this.#options.tls?.clientIdentityHeader;
    // Headers the Connection header nominates are hop-by-hop too (RFC 9110 §7.6.1).
    const nominated = new Set(
      (request.headers.get("connection") ?? "").toLowerCase().split(",").map((t) => t.trim()),
    );
    for (const [name, value] of request.headers) {
      if (NOT_FORWARDED.has(name) || nominated.has(name) || name === identityHeader) continue;
      headers.push(name, value);
    }
    // Counted as RFC 9113 §6.5.2 counts a header list: HPACK's entry size for each field.
    let size = 0;
    for (let i = 0; i < headers.length; i += 2) size += entrySize(headers[i], headers[i + 1]);
    const limit = this.#options.maxHeaderListSize;
    return size > limit
      ? `request headers of ${size} bytes exceed http2.maxHeaderListSize (${limit})`
      : headers;
  }

  /** Reads the body, giving up after `bodyTimeout` (a client that trickles it). */
  async #readBodyInTime(request: Request, text: boolean): Promise<Uint8Array> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new BodyTimeout(
              `request body not received within ${this.#options.bodyTimeout}ms (grpcWeb.bodyTimeout)`,
            ),
          ),
        this.#options.bodyTimeout,
      );
    });
    try {
      return await Promise.race([readBody(request, this.#options.maxRequestBytes, text), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * A trailers-only answer for a call that never reached the relay, counted and logged like
   * any call the proxy answered itself.
   */
  #refuse(
    shape: WebResponseShape,
    call: { path: string; client: string; startedAt: number },
    status: number,
    message: string,
  ): Response {
    log.debug("gRPC-Web call {method} refused: {message}", { method: call.path, message });
    const record: CallRecord = {
      protocol: "grpc-web",
      startedAt: call.startedAt,
      durationMs: Date.now() - call.startedAt,
      upstreamDurationMs: undefined,
      method: call.path,
      cluster: undefined,
      backend: undefined,
      grpcStatus: status,
      grpcMessage: message,
      resetCode: undefined,
      origin: status === GrpcStatus.CANCELLED ? "client" : "proxy",
      backendFailure: false,
      failedAttempts: undefined,
      retries: 0,
      bytesReceived: 0,
      bytesSent: 0,
      clientAddress: call.client,
      clientIdentity: undefined,
      requestHeaders: [],
      traceId: undefined,
    };
    this.#context.onStart?.(undefined, call.path);
    for (const observe of this.#context.observers) observe(record);
    const headers = new Headers(shape.cors);
    headers.set("content-type", shape.contentType);
    const trailers = statusTrailers(status, message);
    for (let i = 0; i < trailers.length; i += 2) headers.set(trailers[i], trailers[i + 1]);
    if (headers.has("access-control-allow-origin")) {
      headers.set("access-control-expose-headers", "grpc-status, grpc-message");
    }
    return new Response(null, { status: 200, headers });
  }
}

/**
 * The status and message a body that could not be taken answers with. Anything but the
 * codec's own refusals means the body never fully arrived: the client went away.
 */
function refusal(error: unknown): [number, string] {
  if (error instanceof RequestTooLarge) {
    return [GrpcStatus.RESOURCE_EXHAUSTED, `${error.message} (grpcWeb.maxRequestBytes)`];
  }
  if (error instanceof StreamingRequest) return [GrpcStatus.UNIMPLEMENTED, error.message];
  if (error instanceof MalformedRequest) {
    return [GrpcStatus.INTERNAL, `malformed gRPC-Web request: ${error.message}`];
  }
  if (error instanceof BodyTimeout) return [GrpcStatus.DEADLINE_EXCEEDED, error.message];
  return [GrpcStatus.CANCELLED, `request body not received: ${String(error)}`];
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
  return concatBytes(...chunks);
}
