/**
 * `switchyard check`: what a start would refuse, found without listening or connecting (as
 * `nginx -t` does), and the effective config as operators may see it.
 * @module
 */
import { dirname } from "node:path";
import { STDOUT_PATH } from "./access_log/access_log.ts";
import { resolveAdminToken } from "./admin/auth.ts";
import { redactConfig } from "./admin/redact.ts";
import { DURATION_PATTERN, formatDuration } from "./config/duration.ts";
import { configJsonSchema } from "./config/json_schema.ts";
import { type ConfigContext, ConfigError } from "./config/load.ts";
import type { Config } from "./config/schema.ts";
import { workerCount } from "./switchyard.ts";

/**
 * Checks what a start needs beyond a valid config and usable PEM files: the token a non-loopback
 * admin listener requires, and an access-log file the process can append to. Throws
 * {@link ConfigError} listing every problem.
 */
export async function checkStartable(config: Config, source: string): Promise<void> {
  const problems = [...adminTokenProblems(config), ...await accessLogProblems(config.accessLog)];
  if (problems.length > 0) throw new ConfigError(source, problems);
}

function adminTokenProblems(config: Config): readonly string[] {
  try {
    resolveAdminToken(config.admin);
    return [];
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
}

/** Opens the access log as a start would (appending, creating it), leaving no file behind. */
async function accessLogProblems(accessLog: Config["accessLog"]): Promise<string[]> {
  const { enabled, path } = accessLog;
  if (!enabled || path === STDOUT_PATH) return [];
  try {
    (await Deno.open(path, { write: true, append: true })).close();
    return [];
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) {
      return [`accessLog.path: cannot append to ${path}: ${(error as Error).message}`];
    }
  }
  try {
    (await Deno.open(path, { write: true, createNew: true })).close();
    await Deno.remove(path);
    return [];
  } catch (error) {
    return [
      error instanceof Deno.errors.NotFound
        ? `accessLog.path: directory ${dirname(path)} does not exist`
        : `accessLog.path: cannot create ${path}: ${(error as Error).message}`,
    ];
  }
}

/** One line for a config that passed: `config OK: config.json — 2 clusters, 3 routes, …`. */
export function configSummary(config: Config, source: string): string {
  const count = (n: number, noun: string) => `${n} ${noun}${n === 1 ? "" : "s"}`;
  const parts = [
    count(Object.keys(config.clusters).length, "cluster"),
    count(config.routes.length, "route"),
    count(workerCount(config.workers), "worker") + (config.workers === "auto" ? " (auto)" : ""),
    `listen ${config.listen}${config.tls ? " (TLS)" : ""}`,
    ...(config.grpcWeb ? [`gRPC-Web ${config.grpcWeb.listen}`] : []),
    `admin ${config.admin.listen}`,
  ];
  return `config OK: ${source} — ${parts.join(", ")}`;
}

/**
 * The effective config (defaults filled in) as JSON, secrets redacted as in the admin API's
 * `/config`, and durations written back as duration strings.
 */
export function printableConfig(config: Config, context: ConfigContext): string {
  return JSON.stringify(renderDurations(configJsonSchema(context), redactConfig(config)), null, 2);
}

/** The parts of a JSON Schema that lead to the durations in a value. */
interface SchemaNode {
  readonly type?: string;
  readonly pattern?: string;
  readonly properties?: Readonly<Record<string, SchemaNode>>;
  readonly additionalProperties?: SchemaNode | boolean;
  readonly items?: SchemaNode;
  readonly anyOf?: readonly SchemaNode[];
}

/**
 * `value` with its durations, which a validated config holds in ms, written as duration strings.
 * They are found where `schema`, the config's JSON Schema, gives the duration pattern, so a
 * duration field added to the schema is rendered with no list to keep.
 */
function renderDurations(schema: SchemaNode | undefined, value: unknown): unknown {
  if (schema === undefined) return value;
  if (schema.anyOf) {
    return renderDurations(schema.anyOf.find((branch) => fits(branch, value)), value);
  }
  if (typeof value === "number" && schema.pattern === DURATION_PATTERN.source) {
    return formatDuration(value);
  }
  if (Array.isArray(value)) return value.map((item) => renderDurations(schema.items, item));
  if (typeof value !== "object" || value === null) return value;
  const others = typeof schema.additionalProperties === "object"
    ? schema.additionalProperties
    : undefined;
  return Object.fromEntries(
    Object.entries(value).map((
      [key, item],
    ) => [key, renderDurations(schema.properties?.[key] ?? others, item)]),
  );
}

/** Whether `value` (durations in ms) is an instance of the union member `branch`. */
function fits(branch: SchemaNode, value: unknown): boolean {
  if (branch.pattern === DURATION_PATTERN.source) return typeof value === "number";
  const type = value === null ? "null" : Array.isArray(value) ? "array" : typeof value;
  return branch.type === type || (branch.type === "integer" && type === "number");
}
