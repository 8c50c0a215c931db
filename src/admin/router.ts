/**
 * The one way admin route groups are created, so every group rejects invalid input the
 * same way: 400 JSON naming the offending field.
 * @module
 */
import { type Hook, OpenAPIHono, type z } from "@hono/zod-openapi";
import type { Env } from "hono";
import type { ErrorBody } from "./schemas.ts";

// deno-lint-ignore no-explicit-any -- the hook is shared by routes of every input type
const rejectInvalidInput: Hook<any, Env, any, any> = (result, c) => {
  if (result.success) return;
  const problems = result.error.issues.map((issue) => {
    const field = issue.path.length > 0 ? issue.path.join(".") : result.target;
    return `${field}: ${issue.message}`;
  });
  return c.json(
    { error: `invalid ${result.target}: ${problems.join("; ")}` } satisfies ErrorBody,
    400,
  );
};

/** A route group whose validation failures answer 400 JSON. */
export function createAdminRouter(): OpenAPIHono {
  return new OpenAPIHono({ defaultHook: rejectInvalidInput });
}

/** The `content` of an OpenAPI request or response carrying `schema` as JSON. */
export function jsonContent<T extends z.ZodType>(schema: T): { "application/json": { schema: T } } {
  return { "application/json": { schema } };
}
