/**
 * Secret removal for anything that shows the config to operators.
 * @module
 */
import type { Config } from "../config/schema.ts";
import { REDACTED, redactUrl } from "../log/redact.ts";

/**
 * Names of fields whose strings are replaced wherever they appear, so a secret in a field added
 * later (a key passphrase, a header that carries a credential) is hidden too. A key file's path
 * goes as well: what a field named `key` holds cannot be told from its name.
 */
const SECRET_FIELD = /(?:key|password|passphrase|secret|token|authorization|cookie)$/i;

/** Replaces, in place, every string under a field whose name {@link SECRET_FIELD} matches. */
function redactSecretFields(value: unknown): void {
  if (typeof value !== "object" || value === null) return;
  const fields = value as Record<string, unknown>;
  for (const [name, item] of Object.entries(fields)) {
    if (typeof item === "string" && SECRET_FIELD.test(name)) fields[name] = REDACTED;
    else redactSecretFields(item);
  }
}

/**
 * A copy of `config` with the admin token, any Redis URL credentials and every field named like
 * a key, password, secret or token replaced.
 */
export function redactConfig(config: Config): Config {
  const copy = structuredClone(config);
  if (copy.redis?.url) copy.redis.url = redactUrl(copy.redis.url);
  redactSecretFields(copy);
  return copy;
}
