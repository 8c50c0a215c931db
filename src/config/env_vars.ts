/**
 * Environment variables in the config: `${NAME}` and `${NAME:-default}` in any string value are
 * replaced before validation, so secrets (a Redis password, the admin token) can stay out of the
 * file. `$${` is a literal `${`. Values go in as text: a string stays a string, and numbers,
 * booleans and keys are never read for references.
 * @module
 */

/** A reference that could not be replaced, and where. */
export interface SubstitutionProblem {
  /** The string's JSON path, as zod gives it: keys and array indexes. */
  readonly path: readonly (string | number)[];
  /** What is wrong, e.g. `environment variable REDIS_URL is not set`. */
  readonly message: string;
}

/** A config value with its references replaced, and the ones that could not be. */
export interface Substitution {
  /** A copy of the value; a string whose reference failed keeps that reference's text. */
  readonly value: unknown;
  /** One entry per reference that failed. */
  readonly problems: readonly SubstitutionProblem[];
}

/** Reads one environment variable; `undefined` when it is not set. */
export type EnvReader = (name: string) => string | undefined;

// `$${…` (the escape), `${NAME}`, `${NAME:-default}`, or a `${` that starts none of them.
const REFERENCE = /\$(\$?)\{(?:([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\})?/g;

const MALFORMED = 'malformed "${": write ${NAME} or ${NAME:-default}, or "$${" for a literal "${"';

/**
 * Replaces every reference in the string values of `raw` (parsed JSON) with `readEnv`'s value.
 * `${NAME:-default}` takes `default` when the variable is unset or empty, as the shell does.
 */
export function substituteEnv(raw: unknown, readEnv: EnvReader): Substitution {
  const problems: SubstitutionProblem[] = [];
  const substituteString = (text: string, path: readonly (string | number)[]): string =>
    text.replace(REFERENCE, (reference, escape: string, name?: string, fallback?: string) => {
      // The escape leaves the rest of the match as written, so `$${HOME}` is `${HOME}`.
      if (escape) return reference.slice(1);
      if (name === undefined) {
        // The message does not quote the value: it may be a secret.
        problems.push({ path, message: MALFORMED });
        return reference;
      }
      const value = readEnv(name);
      if (fallback !== undefined && !value) return fallback;
      if (value !== undefined) return value;
      problems.push({ path, message: `environment variable ${name} is not set` });
      return reference;
    });
  const visit = (value: unknown, path: readonly (string | number)[]): unknown => {
    if (typeof value === "string") return substituteString(value, path);
    if (Array.isArray(value)) return value.map((item, index) => visit(item, [...path, index]));
    if (typeof value !== "object" || value === null) return value;
    return Object.fromEntries(
      Object.entries(value).map(([key, item]) => [key, visit(item, [...path, key])]),
    );
  };
  return { value: visit(raw, []), problems };
}
