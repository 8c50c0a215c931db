/**
 * `GET /metrics`: Prometheus text exposition.
 * @module
 */
import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import type { ProxyMetrics } from "../../metrics/metrics.ts";
import { createAdminRouter } from "../router.ts";

const metricsRoute = createRoute({
  method: "get",
  path: "/metrics",
  tags: ["metrics"],
  summary: "Prometheus metrics (text exposition format 0.0.4)",
  responses: {
    200: {
      description: "Calls, latency, bytes, backend health and connectivity, membership",
      content: { "text/plain": { schema: z.string() } },
    },
  },
});

/** The `/metrics` endpoint. */
export function metricsRoutes(metrics: ProxyMetrics): OpenAPIHono {
  return createAdminRouter().openapi(metricsRoute, async (c) => {
    return c.text(await metrics.render(), 200, { "Content-Type": metrics.contentType });
  });
}
