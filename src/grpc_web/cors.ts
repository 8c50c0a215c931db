/**
 * CORS for gRPC-Web (the Fetch standard's CORS protocol): preflight answers, and the headers
 * that let a page on an allowed origin call the proxy and read its status and metadata.
 * @module
 */

/** `grpcWeb.cors`. */
export interface CorsConfig {
  /** Origins allowed to call, exactly as browsers send them; `"*"` allows any. */
  readonly allowedOrigins: readonly string[];
  /** Request headers a page may send, beyond the gRPC-Web ones. */
  readonly allowedHeaders: readonly string[];
  /** How long browsers may cache a preflight answer, in milliseconds. */
  readonly maxAge: number;
  /** Allow cookies and HTTP authentication (never with `"*"`). */
  readonly allowCredentials: boolean;
}

/** What gRPC-Web clients send (grpc-web's and Connect's runtimes). */
const GRPC_WEB_HEADERS = [
  "content-type",
  "x-grpc-web",
  "x-user-agent",
  "grpc-timeout",
  "authorization",
];

/** Applies one {@link CorsConfig}. */
export class CorsPolicy {
  readonly #config: CorsConfig;
  readonly #anyOrigin: boolean;
  readonly #allowedHeaders: string;

  /** The policy `config` describes. */
  constructor(config: CorsConfig) {
    this.#config = config;
    this.#anyOrigin = config.allowedOrigins.includes("*");
    this.#allowedHeaders = [
      ...new Set([...GRPC_WEB_HEADERS, ...config.allowedHeaders.map((h) => h.toLowerCase())]),
    ].join(", ");
  }

  /**
   * The CORS response headers for a request from `origin` (none for a same-origin request or
   * an origin that is not allowed: the browser then withholds the answer from the page).
   */
  headersFor(origin: string | null): Headers {
    const headers = new Headers();
    // With credentials the origin must be named; without, "*" is cacheable by everyone. When
    // the answer depends on Origin, caches must know it, allowed or not (Fetch §3.2.5).
    const echo = this.#config.allowCredentials || !this.#anyOrigin;
    if (echo) headers.set("vary", "origin");
    if (origin === null || !(this.#anyOrigin || this.#config.allowedOrigins.includes(origin))) {
      return headers;
    }
    headers.set("access-control-allow-origin", echo ? origin : "*");
    if (this.#config.allowCredentials) headers.set("access-control-allow-credentials", "true");
    return headers;
  }

  /** The answer to a preflight (`OPTIONS` with `Access-Control-Request-Method`). */
  preflight(origin: string | null): Response {
    const headers = this.headersFor(origin);
    if (!headers.has("access-control-allow-origin")) {
      return new Response(null, { status: 403, headers });
    }
    headers.set("access-control-allow-methods", "POST, OPTIONS");
    headers.set("access-control-allow-headers", this.#allowedHeaders);
    headers.set("access-control-max-age", String(Math.floor(this.#config.maxAge / 1000)));
    return new Response(null, { status: 204, headers });
  }
}
