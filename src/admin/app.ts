/**
 * The admin API as one Hono application: route groups, auth, JSON errors, OpenAPI.
 * @module
 */
import type { OpenAPIHono } from "@hono/zod-openapi";
import type { Context } from "hono";
import { bodyLimit } from "hono/body-limit";
import { VERSION } from "../version.ts";
import type { ProxyMetrics } from "../metrics/metrics.ts";
import type { AdminTarget } from "./target.ts";
import { requireBearer } from "./auth.ts";
import { renderError, renderNotFound } from "./errors.ts";
import { refuseForeignHosts } from "./host_check.ts";
import { renderDocsPage } from "./pages/docs_page.ts";
import { renderStatusPage } from "./pages/status_page.ts";
import { createAdminRouter } from "./router.ts";
import type { ErrorBody } from "./schemas.ts";
import { refuseCrossOriginMutations } from "./same_origin.ts";
import { SeriesSampler } from "./series.ts";
import { affinityRoutes } from "./routes/affinity.ts";
import { clusterRoutes } from "./routes/clusters.ts";
import { configRoutes } from "./routes/config.ts";
import { lifecycleRoutes } from "./routes/lifecycle.ts";
import { metricsRoutes } from "./routes/metrics.ts";
import { seriesRoutes } from "./routes/series.ts";
import { workerRoutes } from "./routes/workers.ts";

/** What the admin application is built from. */
export interface AdminAppOptions {
  /** Required bearer token; without one, requests are not authenticated. */
  readonly token: string | undefined;
  /** The metrics `/metrics` exposes. */
  readonly metrics: ProxyMetrics;
  /**
   * The sampler `/clusters/{name}/series` reads; its owner starts and stops it. Without one,
   * an idle sampler answers: known clusters, no points.
   */
  readonly series?: SeriesSampler;
}

// The status page shell holds no data (its script fetches /clusters with the token), so a
// browser can load it before it has a way to send the header.
const PUBLIC_PATHS: ReadonlySet<string> = new Set(["/"]);

/**
 * The largest request body the admin API takes. Its bodies are a picker name or one address,
 * so this is generous; beyond it the request is refused from `Content-Length` alone, or as
 * soon as a chunked body crosses it, so no client can make the proxy buffer more.
 */
export const MAX_ADMIN_BODY_BYTES = 64 * 1024;

const tooLarge = (c: Context): Response =>
  c.json(
    { error: `request body larger than ${MAX_ADMIN_BODY_BYTES} bytes` } satisfies ErrorBody,
    413,
  );

const OPENAPI_INFO = {
  openapi: "3.1.0",
  info: {
    title: "Switchyard admin API",
    version: VERSION,
    description: "Inspect and change a running Switchyard proxy.",
  },
};

/** Builds the admin application for `switchyard`. */
export function createAdminApp(switchyard: AdminTarget, options: AdminAppOptions): OpenAPIHono {
  const app = createAdminRouter();
  app.onError(renderError);
  app.notFound(renderNotFound);
  // Without a token, a DNS-rebound page is the one caller the cross-origin check misses. With
  // one, that page cannot send the bearer header, and proxies and Kubernetes probes reach the
  // API by names (Service DNS, pod IP) nobody listed, so Host is checked only when asked.
  const admin = switchyard.config.admin;
  if (options.token === undefined || admin.allowedHosts !== undefined) {
    app.use("*", refuseForeignHosts(admin));
  }
  app.use("*", refuseCrossOriginMutations());
  if (options.token !== undefined) app.use("*", requireBearer(options.token, PUBLIC_PATHS));
  app.use("*", bodyLimit({ maxSize: MAX_ADMIN_BODY_BYTES, onError: tooLarge }));
  app.get("/", (c) => c.html(renderStatusPage()));
  app.route("/", lifecycleRoutes(switchyard));
  app.route("/", clusterRoutes(switchyard));
  app.route("/", affinityRoutes(switchyard));
  app.route("/", seriesRoutes(switchyard, options.series ?? new SeriesSampler(switchyard)));
  app.route("/", configRoutes(switchyard));
  app.route("/", metricsRoutes(options.metrics));
  app.route("/", workerRoutes(switchyard));
  app.doc31("/openapi.json", OPENAPI_INFO);
  app.get("/docs", (c) => c.html(renderDocsPage(app.getOpenAPI31Document(OPENAPI_INFO))));
  return app;
}
