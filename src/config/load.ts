/**
 * Reading and validating `config.json`, with errors that name the JSON path and the reason.
 * @module
 */
import type { z } from "zod";
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

/** Validates an already-parsed JSON value; throws {@link ConfigError} on any problem. */
export function parseConfig(raw: unknown, source: string, context: ConfigContext): Config {
  const result = configSchema.safeParse(raw);
  if (!result.success) {
    throw new ConfigError(
      source,
      result.error.issues.map((issue) => `${formatIssuePath(issue.path)}: ${describeIssue(issue)}`),
    );
  }
  const problems = Object.entries(result.data.clusters)
    .filter(([, cluster]) => !context.pickers.includes(cluster.picker))
    .map(([name, cluster]) =>
      `clusters.${name}.picker: unknown picker ${JSON.stringify(cluster.picker)} (known: ${
        context.pickers.join(", ")
      })`
    );
  if (problems.length > 0) throw new ConfigError(source, problems);
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
