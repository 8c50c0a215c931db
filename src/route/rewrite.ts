/**
 * What a route changes in the request headers on the way to the backend, in a fixed order:
 * `remove`, `set`, `append`, then `x-forwarded-for` and `x-request-id`. The `:authority`
 * rewrite is applied per attempt, since it may name the backend each attempt picked.
 * @module
 */
import type { RouteConfig } from "../config/schema.ts";
import { type HeaderList, headerValue, removeHeader, setHeader } from "../transport/stream.ts";

/** The header a route generates when asked to (`requestId: true`). */
export const REQUEST_ID = "x-request-id";
const FORWARDED_FOR = "x-forwarded-for";

/** The IP of a `host:port` or `[v6]:port` peer address, as `x-forwarded-for` lists it. */
function clientIp(address: string): string {
  const colon = address.lastIndexOf(":");
  const host = colon > 0 ? address.slice(0, colon) : address;
  return host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host;
}

/** One route's request-header rewrites. */
export class RequestRewrite {
  readonly #remove: readonly string[];
  readonly #set: readonly [string, string][];
  readonly #append: readonly [string, string][];
  readonly #forwardedFor: boolean;
  readonly #requestId: boolean;
  /** A literal `:authority` for every attempt, if the route sets one. */
  readonly authorityLiteral: string | undefined;
  /** True when each attempt's `:authority` is its backend's `host:port`. */
  readonly authorityIsBackend: boolean;

  private constructor(route: RouteConfig) {
    this.#remove = route.requestHeaders?.remove ?? [];
    this.#set = Object.entries(route.requestHeaders?.set ?? {});
    this.#append = Object.entries(route.requestHeaders?.append ?? {});
    this.#forwardedFor = route.xForwardedFor;
    this.#requestId = route.requestId;
    const authority = route.authorityRewrite;
    this.authorityLiteral = authority && "literal" in authority ? authority.literal : undefined;
    this.authorityIsBackend = authority !== undefined && "backendAddress" in authority;
  }

  /** The rewrites of `route`, or `undefined` when it changes nothing (the common case). */
  static of(route: RouteConfig): RequestRewrite | undefined {
    const headers = route.requestHeaders;
    const changesHeaders = headers !== undefined &&
      (headers.remove.length > 0 || Object.keys(headers.set).length > 0 ||
        Object.keys(headers.append).length > 0);
    if (
      !changesHeaders && !route.xForwardedFor && !route.requestId &&
      route.authorityRewrite === undefined
    ) return undefined;
    return new RequestRewrite(route);
  }

  /**
   * Rewrites `headers` in place for the backend. Returns the call's `x-request-id` when the
   * route asks for one: the client's, or a generated UUID (then added to the request).
   */
  apply(headers: HeaderList, clientAddress: string): string | undefined {
    for (const name of this.#remove) removeHeader(headers, name);
    for (const [name, value] of this.#set) setHeader(headers, name, value);
    for (const [name, value] of this.#append) headers.push(name, value);
    if (this.#forwardedFor) {
      // RFC 7239's predecessor convention: the proxy appends the peer it saw to the list.
      const ip = clientIp(clientAddress);
      const previous = headerValue(headers, FORWARDED_FOR);
      setHeader(headers, FORWARDED_FOR, previous === undefined ? ip : `${previous}, ${ip}`);
    }
    if (this.authorityLiteral !== undefined) {
      setHeader(headers, ":authority", this.authorityLiteral);
    }
    if (!this.#requestId) return undefined;
    let id = headerValue(headers, REQUEST_ID);
    if (id === undefined) {
      id = crypto.randomUUID();
      headers.push(REQUEST_ID, id);
    }
    return id;
  }
}
