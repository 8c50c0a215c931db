/**
 * Process lifecycle: liveness, readiness (what a load balancer in front of the proxy
 * probes) and the drain trigger.
 * @module
 */
import { createRoute, type OpenAPIHono, type z } from "@hono/zod-openapi";
import { componentLogger } from "../../log/logger.ts";
import type { AdminTarget } from "../target.ts";
import { createAdminRouter, jsonContent } from "../router.ts";
import { readinessSchema, statusSchema } from "../schemas.ts";

const log = componentLogger("admin");

const liveRoute = createRoute({
  method: "get",
  path: "/live",
  tags: ["lifecycle"],
  summary: "Liveness: the process is up",
  responses: {
    200: { description: "Always, while the process runs", content: jsonContent(statusSchema) },
  },
});

const readyRoute = createRoute({
  method: "get",
  path: "/ready",
  tags: ["lifecycle"],
  summary: "Readiness: every worker listens, not draining, and some routed cluster has a " +
    "usable backend in every worker",
  responses: {
    200: { description: "Ready for traffic", content: jsonContent(readinessSchema) },
    503: {
      description: "Draining, a worker not listening, or no routed cluster can serve",
      content: jsonContent(readinessSchema),
    },
  },
});

const drainRoute = createRoute({
  method: "post",
  path: "/drain",
  tags: ["lifecycle"],
  summary: "Start a graceful drain: after drain.delay stop accepting, send GOAWAY, let " +
    "in-flight calls finish",
  responses: {
    202: {
      description: "Drain started; /ready now answers 503",
      content: jsonContent(statusSchema),
    },
  },
});

/** `/live`, `/ready` and `POST /drain`. */
export function lifecycleRoutes(switchyard: AdminTarget): OpenAPIHono {
  return createAdminRouter()
    .openapi(liveRoute, (c) => c.json({ status: "live" }, 200))
    .openapi(readyRoute, async (c) => {
      const readiness = await assessReadiness(switchyard);
      return c.json(readiness, readiness.ready ? 200 : 503);
    })
    .openapi(drainRoute, (c) => {
      // The drain waits for in-flight calls (up to drain.timeout), so the caller is not kept.
      switchyard.drain().catch((error) => log.error("drain failed: {error}", { error }));
      return c.json({ status: "draining" }, 202);
    });
}

/**
 * Why the proxy is or is not ready. A client's connection may land on any worker, so a
 * cluster counts only when every worker has a usable backend for it.
 */
async function assessReadiness(switchyard: AdminTarget): Promise<z.infer<typeof readinessSchema>> {
  if (switchyard.draining) return { ready: false, reason: "draining" };
  const down = switchyard.dataPlanes.workers().filter((w) => !w.listening).map((w) => w.worker);
  if (down.length > 0) return { ready: false, reason: `worker ${down.join(", ")} not listening` };
  const usable = await switchyard.dataPlanes.usableClusters();
  if (!usable) return { ready: false, reason: "a worker did not answer" };
  for (const route of switchyard.config.routes) {
    if (usable.has(route.cluster)) {
      return { ready: true, reason: `cluster ${route.cluster} has a usable backend` };
    }
  }
  return { ready: false, reason: "no routed cluster has a usable backend" };
}
