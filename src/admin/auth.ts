/**
 * Admin authentication: a bearer token, mandatory whenever the listener is reachable from
 * other machines, because the API can drain the proxy and rewrite its membership.
 * @module
 */
import type { MiddlewareHandler } from "hono";
import { timingSafeEqual } from "hono/utils/buffer";
import { isLoopbackHost, parseHostPort } from "../config/address.ts";
import { ConfigError } from "../config/load.ts";
import type { Config } from "../config/schema.ts";
import type { ErrorBody } from "./schemas.ts";

const MIN_TOKEN_LENGTH = 16;

/**
 * The token the admin API requires: `admin.token`, else the environment variable named by
 * `admin.tokenEnv`. Throws a {@link ConfigError} when the listener is not loopback and
 * neither is set, so the process refuses to start rather than expose an open API.
 */
export function resolveAdminToken(
  admin: Config["admin"],
  readEnv: (name: string) => string | undefined = (name) => Deno.env.get(name),
): string | undefined {
  const fromEnv = readEnv(admin.tokenEnv);
  if (admin.token === undefined && fromEnv !== undefined && fromEnv.length < MIN_TOKEN_LENGTH) {
    throw new ConfigError(`$${admin.tokenEnv}`, [
      `admin.token: $${admin.tokenEnv} must be at least ${MIN_TOKEN_LENGTH} characters`,
    ]);
  }
  const token = admin.token ?? fromEnv;
  const { host } = parseHostPort(admin.listen)!;
  if (token === undefined && !isLoopbackHost(host)) {
    throw new ConfigError("(admin)", [
      `admin.token: required because admin.listen ${admin.listen} is not loopback; ` +
      `set admin.token or the $${admin.tokenEnv} environment variable`,
    ]);
  }
  return token;
}

/**
 * Rejects requests whose `Authorization: Bearer …` does not carry `token`, with 401 JSON.
 * `publicPaths` are served without it: only pages that hold no data belong there.
 */
export function requireBearer(token: string, publicPaths: ReadonlySet<string>): MiddlewareHandler {
  return async (c, next) => {
    if (publicPaths.has(c.req.path)) return await next();
    const header = c.req.header("authorization") ?? "";
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (!match || !(await timingSafeEqual(match[1], token))) {
      c.header("WWW-Authenticate", 'Bearer realm="switchyard-admin"');
      const error = match ? "invalid bearer token" : "missing bearer token";
      return c.json({ error } satisfies ErrorBody, 401);
    }
    await next();
  };
}
