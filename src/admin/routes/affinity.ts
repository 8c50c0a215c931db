/**
 * `GET /clusters/{name}/affinity?id=X`: which backend owns an id in a cluster's affinity
 * table. With `store: "redis"` the answer is read from Redis (what every proxy on it follows),
 * or from this proxy's memory while Redis is unreachable.
 * @module
 */
import { createRoute, type OpenAPIHono } from "@hono/zod-openapi";
import { AdminError } from "../errors.ts";
import { createAdminRouter, jsonContent } from "../router.ts";
import {
  affinityLookupSchema,
  affinityQuerySchema,
  clusterParamsSchema,
  errorSchema,
} from "../schemas.ts";
import type { AdminTarget } from "../target.ts";

const lookupRoute = createRoute({
  method: "get",
  path: "/clusters/{name}/affinity",
  tags: ["clusters"],
  summary: "The backend that owns an id in the cluster's affinity table",
  request: { params: clusterParamsSchema, query: affinityQuerySchema },
  responses: {
    200: { description: "The id's owner (null: none)", content: jsonContent(affinityLookupSchema) },
    400: { description: "No id given", content: jsonContent(errorSchema) },
    404: {
      description: "Unknown cluster, or one without affinity",
      content: jsonContent(errorSchema),
    },
  },
});

/** The affinity lookup endpoint. */
export function affinityRoutes(
  switchyard: Pick<AdminTarget, "clusters" | "affinity">,
): OpenAPIHono {
  return createAdminRouter().openapi(lookupRoute, async (c) => {
    const { name } = c.req.valid("param");
    const { id } = c.req.valid("query");
    if (!switchyard.clusters.has(name)) {
      throw new AdminError(404, `unknown cluster ${JSON.stringify(name)}`, [
        ...switchyard.clusters.keys(),
      ]);
    }
    const lookup = switchyard.affinity?.lookup(name, id);
    if (lookup === undefined) {
      throw new AdminError(
        404,
        `cluster ${name} keeps no affinity table (clusters.${name}.affinity)`,
      );
    }
    return c.json(await lookup, 200);
  });
}
