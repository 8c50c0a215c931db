/**
 * JSON error responses. Every admin failure, including Hono's own (bad JSON, wrong method),
 * answers with an {@link ErrorBody} so scripts never have to parse HTML or plain text.
 * @module
 */
import type { Context } from "hono";
import { HTTPException } from "hono/http-exception";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import type { ErrorBody } from "./schemas.ts";

/** A rejected request: thrown by handlers, rendered by {@link renderError}. */
export class AdminError extends Error {
  /** The HTTP status to answer with. */
  readonly status: ContentfulStatusCode;
  /** Accepted values, when the problem is an unknown one. */
  readonly known: readonly string[] | undefined;

  /** Creates the error; `message` names the problem for the caller. */
  constructor(status: ContentfulStatusCode, message: string, known?: readonly string[]) {
    super(message);
    this.name = "AdminError";
    this.status = status;
    this.known = known;
  }
}

/** Turns any error escaping a handler into a JSON error response. */
export function renderError(error: Error, c: Context): Response {
  if (error instanceof AdminError) {
    const body: ErrorBody = { error: error.message };
    if (error.known) body.known = [...error.known];
    return c.json(body, error.status);
  }
  if (error instanceof HTTPException) {
    return c.json({ error: error.message || "bad request" } satisfies ErrorBody, error.status);
  }
  return c.json({ error: `internal error: ${error.message}` } satisfies ErrorBody, 500);
}

/** The answer for paths (or methods) the API does not have. */
export function renderNotFound(c: Context): Response {
  return c.json(
    { error: `no such endpoint: ${c.req.method} ${c.req.path}` } satisfies ErrorBody,
    404,
  );
}
