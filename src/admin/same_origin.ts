/**
 * Refuses state-changing requests that a browser marks as coming from another site.
 *
 * `POST /drain` and the drain endpoints take no body, so on a listener without a token any
 * web page the operator opens could trigger them with a cross-origin form post. Browsers
 * label such requests with `Origin` and `Sec-Fetch-Site`; scripts and `curl` send neither,
 * so they are unaffected. (Hono's `csrf()` also refuses requests without those headers,
 * which would break every non-browser client.)
 * @module
 */
import type { MiddlewareHandler } from "hono";
import { AdminError } from "./errors.ts";

const SAFE_METHODS: ReadonlySet<string> = new Set(["GET", "HEAD", "OPTIONS"]);
const FOREIGN_FETCH_SITES: ReadonlySet<string> = new Set(["cross-site", "same-site"]);

/** Middleware answering 403 JSON to cross-origin browser requests that change state. */
export function refuseCrossOriginMutations(): MiddlewareHandler {
  return async (c, next) => {
    if (!SAFE_METHODS.has(c.req.method)) {
      const origin = c.req.header("origin");
      const fetchSite = c.req.header("sec-fetch-site");
      const foreignOrigin = origin !== undefined && origin !== new URL(c.req.url).origin;
      if (foreignOrigin || (fetchSite !== undefined && FOREIGN_FETCH_SITES.has(fetchSite))) {
        throw new AdminError(403, `cross-origin request from ${origin ?? fetchSite} refused`);
      }
    }
    await next();
  };
}
