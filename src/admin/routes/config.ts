/**
 * `GET /config`: the effective (validated, defaulted) config, secrets redacted.
 * @module
 */
import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import type { AdminTarget } from "../target.ts";
import { redactConfig } from "../redact.ts";
import { createAdminRouter, jsonContent } from "../router.ts";

const configRoute = createRoute({
  method: "get",
  path: "/config",
  tags: ["config"],
  summary: "The effective config (durations in ms), with admin.token and Redis passwords redacted",
  responses: {
    200: {
      description: "The effective config",
      content: jsonContent(z.record(z.string(), z.unknown()).openapi("EffectiveConfig")),
    },
  },
});

/** The `/config` endpoint. */
export function configRoutes(switchyard: AdminTarget): OpenAPIHono {
  return createAdminRouter().openapi(
    configRoute,
    (c) => c.json(redactConfig(switchyard.config) as Record<string, unknown>, 200),
  );
}
