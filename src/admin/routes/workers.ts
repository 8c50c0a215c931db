/**
 * `GET /workers`: each data-plane worker's liveness and share of the traffic.
 * @module
 */
import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import type { AdminTarget } from "../target.ts";
import { createAdminRouter, jsonContent } from "../router.ts";
import { workerSchema } from "../schemas.ts";

const workersRoute = createRoute({
  method: "get",
  path: "/workers",
  tags: ["lifecycle"],
  summary: "Every data-plane worker: listening, restarts, connections and calls",
  responses: {
    200: { description: "The workers, in order", content: jsonContent(z.array(workerSchema)) },
  },
});

/** The `/workers` endpoint. */
export function workerRoutes(switchyard: AdminTarget): OpenAPIHono {
  return createAdminRouter().openapi(workersRoute, async (c) => {
    const stats = new Map(
      (await switchyard.dataPlaneStats()).map((plane) => [plane.worker, plane]),
    );
    return c.json(
      switchyard.dataPlanes.workers().map(({ worker, listening, restarts }) => {
        const plane = stats.get(worker);
        return {
          worker,
          listening,
          restarts,
          connections: plane?.connections ?? null,
          calls: plane?.clusters.reduce((total, cluster) => total + cluster.calls, 0) ?? null,
        };
      }),
      200,
    );
  });
}
