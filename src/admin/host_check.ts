/**
 * DNS rebinding protection for the admin API.
 *
 * A web page on `evil.example` can make its name resolve to 127.0.0.1 after the page has
 * loaded; the browser then treats the admin API as same-origin with the page (`Origin` and
 * `Host` both say `evil.example`), so the cross-origin check in `same_origin.ts` cannot tell, and
 * the page could drain the proxy or register a backend. The one thing such a request cannot
 * fake is its `Host` (RFC 9110 §7.2): it names the attacker's domain. So the API answers
 * only the names it is really reached by: loopback names and addresses, the host of
 * `admin.listen`, and `admin.allowedHosts`.
 * @module
 */
import type { MiddlewareHandler } from "hono";
import { isLoopbackHost, parseHostPort } from "../config/address.ts";
import type { Config } from "../config/schema.ts";
import { AdminError } from "./errors.ts";

// A wildcard listener is not a name anyone reaches it by; `0.0.0.0` as a destination was
// itself used to reach local services from web pages ("0.0.0.0 day", 2024).
const UNSPECIFIED_HOSTS: ReadonlySet<string> = new Set(["0.0.0.0", "::"]);

/** Middleware answering 403 JSON to requests whose `Host` the admin API does not answer to. */
export function refuseForeignHosts(admin: Config["admin"]): MiddlewareHandler {
  const allowed = new Set(admin.allowedHosts);
  const listenHost = parseHostPort(admin.listen)!.host.toLowerCase();
  if (!UNSPECIFIED_HOSTS.has(listenHost)) allowed.add(listenHost);
  return async (c, next) => {
    // The URL parser lowercases the name and reads IPv4 shorthands (127.1) as dotted quads.
    const host = new URL(c.req.url).hostname.replace(/^\[(.*)\]$/, "$1");
    if (!isLoopbackHost(host) && !allowed.has(host)) {
      throw new AdminError(
        403,
        `Host ${JSON.stringify(host)} is not allowed: the admin API answers only loopback ` +
          "names, the admin.listen host and admin.allowedHosts (DNS rebinding protection)",
      );
    }
    await next();
  };
}
