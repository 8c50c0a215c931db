/**
 * Secret removal for anything that shows the config to operators.
 * @module
 */
import type { Config } from "../config/schema.ts";

/** What replaces a secret. */
export const REDACTED = "[redacted]";

/** A copy of `config` with the admin token and any Redis URL credentials replaced. */
export function redactConfig(config: Config): Config {
  const copy = structuredClone(config);
  if (copy.admin.token !== undefined) copy.admin.token = REDACTED;
  if (copy.redis) copy.redis.url = redactUrlCredentials(copy.redis.url);
  return copy;
}

/** Replaces the password (and a lone username, which Redis ACLs may treat as the password). */
function redactUrlCredentials(text: string): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return REDACTED;
  }
  if (url.password) url.password = REDACTED;
  else if (url.username) url.username = REDACTED;
  return url.toString();
}
