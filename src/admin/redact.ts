/**
 * Secret removal for anything that shows the config to operators.
 * @module
 */
import type { Config } from "../config/schema.ts";
import { REDACTED, redactUrl } from "../log/redact.ts";

/** A copy of `config` with the admin token and any Redis URL credentials replaced. */
export function redactConfig(config: Config): Config {
  const copy = structuredClone(config);
  if (copy.admin.token !== undefined) copy.admin.token = REDACTED;
  if (copy.redis) copy.redis.url = redactUrl(copy.redis.url);
  return copy;
}
