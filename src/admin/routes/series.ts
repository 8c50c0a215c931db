/**
 * `GET /clusters/{name}/series`: a cluster's recent history from the admin's sampler, for the
 * status page's charts. Reading it costs no stats round: the sampler already took one.
 * @module
 */
import { createRoute, type OpenAPIHono } from "@hono/zod-openapi";
import { AdminError } from "../errors.ts";
import { createAdminRouter, jsonContent } from "../router.ts";
import { clusterParamsSchema, clusterSeriesSchema, errorSchema } from "../schemas.ts";
import type { SeriesSampler } from "../series.ts";
import type { AdminTarget } from "../target.ts";

const seriesRoute = createRoute({
  method: "get",
  path: "/clusters/{name}/series",
  tags: ["clusters"],
  summary: "The cluster's calls/s, error rate, p50/p99 latency and backend shares and states " +
    "over the last samples, oldest first",
  request: { params: clusterParamsSchema },
  responses: {
    200: { description: "The cluster's series", content: jsonContent(clusterSeriesSchema) },
    404: { description: "Unknown cluster", content: jsonContent(errorSchema) },
  },
});

/** The series endpoint over `sampler`. */
export function seriesRoutes(
  switchyard: Pick<AdminTarget, "clusters">,
  sampler: Pick<SeriesSampler, "series">,
): OpenAPIHono {
  return createAdminRouter().openapi(seriesRoute, (c) => {
    const { name } = c.req.valid("param");
    const series = sampler.series(name);
    if (!series) {
      throw new AdminError(404, `unknown cluster ${JSON.stringify(name)}`, [
        ...switchyard.clusters.keys(),
      ]);
    }
    return c.json(series, 200);
  });
}
