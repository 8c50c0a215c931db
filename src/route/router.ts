/**
 * Routing by `:path`: exact methods first, then services, then the catch-all.
 * @module
 */
import type { RouteConfig } from "../config/schema.ts";

/** Resolves a gRPC `:path` (`/pkg.Service/Method`) to a target of type `T`. */
export class Router<T> {
  readonly #byMethod = new Map<string, T>();
  readonly #byService = new Map<string, T>();
  readonly #fallback: T | undefined;

  /** Builds the tables; `resolve` maps a route's cluster name to its target. */
  constructor(routes: readonly RouteConfig[], resolve: (cluster: string) => T) {
    let fallback: T | undefined;
    for (const route of routes) {
      const target = resolve(route.cluster);
      if (route.method) {
        if (!this.#byMethod.has(route.method)) this.#byMethod.set(route.method, target);
      } else if (route.service) {
        if (!this.#byService.has(route.service)) this.#byService.set(route.service, target);
      } else fallback ??= target;
    }
    this.#fallback = fallback;
  }

  /** The target for `path`, or `undefined` when no rule matches. */
  match(path: string): T | undefined {
    const exact = this.#byMethod.get(path);
    if (exact !== undefined) return exact;
    const serviceEnd = path.indexOf("/", 1);
    if (serviceEnd > 1) {
      const byService = this.#byService.get(path.slice(1, serviceEnd));
      if (byService !== undefined) return byService;
    }
    return this.#fallback;
  }
}
