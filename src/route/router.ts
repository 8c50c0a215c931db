/**
 * Routing: which route, and so which cluster and call policy, a request takes.
 *
 * The most specific route wins. By path first: an exact method, then a service, then the
 * routes without either. Among the routes of one path, those with more conditions
 * (`authority` and `headers`, each one counts) come first, and then the config's order. The
 * first whose conditions all hold is taken.
 * @module
 */
import type { ClusterConfig, RouteConfig } from "../config/schema.ts";
import type { HeaderList } from "../transport/stream.ts";
import { RouteConditions } from "./match.ts";
import { type CallPolicy, callPolicy } from "./policy.ts";
import { RequestRewrite } from "./rewrite.ts";

/** One built route. */
export interface Route<T> {
  /** Where its calls go: the cluster. */
  readonly target: T;
  /** How its calls are timed and retried. */
  readonly policy: CallPolicy;
  /** What it changes in the request headers, if anything. */
  readonly rewrite: RequestRewrite | undefined;
  /** Its conditions beyond the path. */
  readonly conditions: RouteConditions;
}

/** Routes sharing one path key, most specific first. */
type Candidates<T> = Route<T>[];

function first<T>(
  candidates: Candidates<T> | undefined,
  headers: HeaderList,
): Route<T> | undefined {
  if (candidates === undefined) return undefined;
  for (let i = 0; i < candidates.length; i++) {
    const route = candidates[i];
    if (route.conditions.count === 0 || route.conditions.matches(headers)) return route;
  }
  return undefined;
}

/** Resolves a request's `:path` and headers to a {@link Route} whose target is of type `T`. */
export class Router<T> {
  readonly #byMethod = new Map<string, Candidates<T>>();
  readonly #byService = new Map<string, Candidates<T>>();
  readonly #anyPath: Candidates<T> = [];

  /**
   * Builds the tables from `routes`; `clusters` gives each route's policy defaults and
   * `resolve` maps a route's cluster name to its target.
   */
  constructor(
    routes: readonly RouteConfig[],
    clusters: Readonly<Record<string, ClusterConfig>>,
    resolve: (cluster: string) => T,
  ) {
    for (const config of routes) {
      const route: Route<T> = {
        target: resolve(config.cluster),
        policy: callPolicy(config, clusters[config.cluster]),
        rewrite: RequestRewrite.of(config),
        conditions: new RouteConditions(config.authority, config.headers),
      };
      const key = config.method ?? config.service;
      const table = config.method ? this.#byMethod : this.#byService;
      let candidates = this.#anyPath;
      if (key !== undefined) {
        candidates = table.get(key) ?? [];
        table.set(key, candidates);
      }
      candidates.push(route);
    }
    // A stable sort keeps the config's order among routes with as many conditions.
    const bySpecificity = (a: Route<T>, b: Route<T>) => b.conditions.count - a.conditions.count;
    for (const candidates of [...this.#byMethod.values(), ...this.#byService.values()]) {
      candidates.sort(bySpecificity);
    }
    this.#anyPath.sort(bySpecificity);
  }

  /** The route for a request, or `undefined` when none matches. */
  match(path: string, headers: HeaderList): Route<T> | undefined {
    const exact = first(this.#byMethod.get(path), headers);
    if (exact !== undefined) return exact;
    const serviceEnd = path.indexOf("/", 1);
    if (serviceEnd > 1) {
      const byService = first(this.#byService.get(path.slice(1, serviceEnd)), headers);
      if (byService !== undefined) return byService;
    }
    return first(this.#anyPath, headers);
  }
}
