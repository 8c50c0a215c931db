/**
 * Reading and validating `config.json`, with errors that name the JSON path and the reason.
 * @module
 */
import type { z } from "zod";
import { substituteEnv } from "./env_vars.ts";
import { type Config, configSchema } from "./schema.ts";

/** A config that failed validation; `problems` holds one `path: reason` line per issue. */
export class ConfigError extends Error {
  /** The file name, or a description of where the config came from. */
  readonly source: string;
  /** Each problem as `clusters.echo.backends[1]: "127.0.0.1" is not host:port`. */
  readonly problems: readonly string[];

  /** Creates the error from the source name and the problem lines. */
  constructor(source: string, problems: readonly string[]) {
    super(`invalid config ${source}:\n  ${problems.join("\n  ")}`);
    this.name = "ConfigError";
    this.source = source;
    this.problems = problems;
  }
}

/** What the loader needs to know beyond the schema. */
export interface ConfigContext {
  /** Policy names that the balancer registry knows. */
  readonly pickers: readonly string[];
}

/** Formats a zod issue path as `clusters.echo.backends[1]`. */
export function formatIssuePath(path: readonly PropertyKey[]): string {
  let text = "";
  for (const part of path) {
    if (typeof part === "number") text += `[${part}]`;
    else text += text === "" ? String(part) : `.${String(part)}`;
  }
  return text === "" ? "(root)" : text;
}

function describeIssue(issue: z.core.$ZodIssue): string {
  // A bad key of a record (a header name, say): its own reasons, not "Invalid key in record".
  if (issue.code === "invalid_key") return issue.issues.map(describeIssue).join("; ");
  if (issue.code === "unrecognized_keys") {
    return `unknown field${issue.keys.length > 1 ? "s" : ""} ${
      issue.keys.map((key) => JSON.stringify(key)).join(", ")
    }`;
  }
  return issue.message;
}

/**
 * `drainTimeout`, from before `drain.timeout`, still works: it is moved there (with a warning
 * in `warnings`), and setting both is an error.
 */
function migrateDrainTimeout(raw: unknown, warnings: string[]): unknown {
  if (typeof raw !== "object" || raw === null || !("drainTimeout" in raw)) return raw;
  const { drainTimeout, ...rest } = raw as Record<string, unknown>;
  const drain = rest.drain;
  if (typeof drain === "object" && drain !== null && "timeout" in drain) return raw;
  warnings.push("drainTimeout is deprecated: use drain.timeout");
  return { ...rest, drain: { ...(drain as object | undefined), timeout: drainTimeout } };
}

/** The `picker` of every cluster in `raw` that names no registered policy. */
function pickerProblems(raw: unknown, pickers: readonly string[]): string[] {
  const clusters = (raw as { clusters?: unknown } | null)?.clusters;
  if (typeof clusters !== "object" || clusters === null) return [];
  return Object.entries(clusters).flatMap(([name, cluster]) => {
    const picker = (cluster as { picker?: unknown } | null)?.picker;
    if (typeof picker !== "string" || pickers.includes(picker)) return [];
    return [
      `${formatIssuePath(["clusters", name, "picker"])}: unknown picker ${
        JSON.stringify(picker)
      } (known: ${pickers.join(", ")})`,
    ];
  });
}

/**
 * Validates an already-parsed JSON value, after replacing the environment variables its
 * strings name (see `env_vars.ts`); throws {@link ConfigError} listing every problem.
 * Deprecations that still work are pushed to `warnings`, when given.
 */
export function parseConfig(
  raw: unknown,
  source: string,
  context: ConfigContext,
  warnings: string[] = [],
): Config {
  const substituted = substituteEnv(raw, (name) => Deno.env.get(name));
  const problems = substituted.problems.map((problem) =>
    `${formatIssuePath(problem.path)}: ${problem.message}`
  );
  // A string whose variable is missing still holds its `${…}`: what the schema says about that
  // text would only repeat the problem.
  const unset = new Set(substituted.problems.map((problem) => formatIssuePath(problem.path)));
  const result = configSchema.safeParse(migrateDrainTimeout(substituted.value, warnings));
  for (const issue of result.error?.issues ?? []) {
    const path = formatIssuePath(issue.path);
    if (!unset.has(path)) problems.push(`${path}: ${describeIssue(issue)}`);
  }
  problems.push(...pickerProblems(substituted.value, context.pickers));
  if (!result.success || problems.length > 0) throw new ConfigError(source, problems);
  return result.data;
}

/**
 * Reads a config file as JSON without validating it, so that command-line overrides can be
 * applied first; unreadable files and bad JSON are {@link ConfigError}s.
 */
export async function readConfigJson(path: string): Promise<unknown> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    throw new ConfigError(path, [`(file): cannot read: ${(error as Error).message}`]);
  }
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new ConfigError(path, [`(file): not valid JSON: ${(error as Error).message}`]);
  }
}
