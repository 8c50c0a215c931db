/**
 * `GET /config`: the effective (validated, defaulted) config, secrets redacted.
 * @module
 */
import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import type { AdminTarget } from "../target.ts";
import { redactConfig } from "../redact.ts";
import { createAdminRouter, jsonContent } from "../router.ts";

const reloadStatusSchema = z.object({
  successes: z.int().openapi({ description: "Reloads that applied" }),
  failures: z.int().openapi({ description: "Reloads refused; each changed nothing" }),
  lastSuccessAt: z.string().openapi({
    description: "When the last reload applied (the start time before any)",
    example: "2026-01-01T12:00:00.000Z",
  }),
  lastErrors: z.array(z.string()).nullable().openapi({
    description: "Why the last reload failed, when it did: `path: reason` lines",
  }),
}).openapi("ReloadStatus");

const configRoute = createRoute({
  method: "get",
  path: "/config",
  tags: ["config"],
  summary: "The effective config (durations in ms), with admin.token, Redis passwords and " +
    "fields named like a key, password or secret redacted, and the reload status under `reload`",
  responses: {
    200: {
      description: "The effective config",
      content: jsonContent(
        z.record(z.string(), z.unknown()).and(z.object({ reload: reloadStatusSchema }))
          .openapi("EffectiveConfig"),
      ),
    },
  },
});

const reloadRoute = createRoute({
  method: "post",
  path: "/reload",
  tags: ["config"],
  summary: "Read the config file again and apply it, dropping no call (as SIGHUP does)",
  responses: {
    200: {
      description: "Applied; `changed` lists what differed, `warnings` what needs a restart",
      content: jsonContent(
        z.object({
          status: z.literal("reloaded"),
          changed: z.array(z.string()),
          warnings: z.array(z.string()),
        }).openapi("Reloaded"),
      ),
    },
    400: {
      description: "Refused: the running config is kept",
      content: jsonContent(
        z.object({ error: z.string(), problems: z.array(z.string()) }).openapi("ReloadRefused"),
      ),
    },
  },
});

/** `GET /config` and `POST /reload`. */
export function configRoutes(switchyard: AdminTarget): OpenAPIHono {
  return createAdminRouter()
    .openapi(configRoute, (c) => {
      const { lastSuccessAt, lastErrors, ...counts } = switchyard.reloadStatus;
      const reload = {
        ...counts,
        lastSuccessAt: new Date(lastSuccessAt).toISOString(),
        lastErrors: lastErrors === undefined ? null : [...lastErrors],
      };
      return c.json({ ...redactConfig(switchyard.config) as Record<string, unknown>, reload }, 200);
    })
    .openapi(reloadRoute, async (c) => {
      const result = await switchyard.reload();
      if (!result.ok) {
        return c.json({ error: "reload refused", problems: [...result.errors] }, 400);
      }
      return c.json({
        status: "reloaded" as const,
        changed: [...result.changed],
        warnings: [...result.warnings],
      }, 200);
    });
}
