/**
 * Secret removal for everything operators see: log lines and the admin API's `/config`.
 * One function for both, so a secret hidden in one place is hidden in the other.
 * @module
 */

/** What replaces a secret. */
export const REDACTED = "[redacted]";

/**
 * `url` with its password replaced, or its username when it has no password: Redis reads
 * `redis://secret@host` as `AUTH secret`, a password (Redis `AUTH`, legacy form), so a
 * lone username is a secret too. A URL that does not parse is replaced whole, since where its
 * credentials start cannot be told.
 */
export function redactUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return REDACTED;
  }
  if (parsed.password) parsed.password = REDACTED;
  else if (parsed.username) parsed.username = REDACTED;
  return parsed.toString();
}
