/**
 * Command-line options of `deno task bench`.
 * @module
 */
import { parseArgs } from "node:util";
import { SCENARIO_NAMES, type ScenarioName } from "./scenarios.ts";
import { TARGET_NAMES, type TargetKind } from "./targets/target.ts";

/** Usage text for `--help`. */
export const BENCH_USAGE = `deno task bench [options]

  --duration S        measured seconds per scenario and target (default 10)
  --warmup S          unmeasured load before each measurement (default 2)
  --scenarios LIST    comma-separated, from: ${SCENARIO_NAMES.join(", ")} (default: all)
  --targets LIST      comma-separated, from: ${TARGET_NAMES.join(", ")} (default: all available)
  --load KIND         auto | h2load | builtin (default auto: h2load when installed)
  --clients N         connections for unary_high (default 8)
  --streams N         calls in flight per connection for unary_high (default 32)
  --many-clients N    connections for many_clients, 1 call in flight each (default 400)
  --idle-connections N
                      idle client connections idle_connections opens (default 1000)
  --gate-calls N      checked calls before and after each run (default 5)
  --json-out FILE     results file (default bench/results/latest.json)
  --charts DIR        also write SVG charts of the run into DIR (created if need be):
                      cpu-per-call.svg, calls-per-second.svg, latency.svg,
                      stream-cpu-per-mb.svg, and charts.json (date, machine, command)
  --cpu-prof-dir DIR  run Switchyard under --cpu-prof; the profile lands in DIR on exit
  --baseline DIR      also run DIR/main.ts (e.g. from \`git archive HEAD\`, after \`deno install\`
                      there) as the target switchyard-baseline
  --workers LIST      comma-separated worker counts, e.g. 1,2: run Switchyard once per count, with
                      \`workers\` set in its config, as the targets switchyard-w<N> (default: one
                      target, switchyard, with workers 1)
  --help              show this text
`;

/** Which load generator to use for scenarios that allow h2load. */
export type LoadChoice = "auto" | "h2load" | "builtin";

/** Parsed options. */
export interface BenchOptions {
  /** Measured seconds per scenario and target. */
  readonly durationS: number;
  /** Warm-up seconds before each measurement. */
  readonly warmupS: number;
  /** Scenarios to run, in run order. */
  readonly scenarios: readonly ScenarioName[];
  /** Targets to compare; undefined means every available one. */
  readonly targets?: readonly TargetKind[];
  /** Load generator choice. */
  readonly load: LoadChoice;
  /** Connections for `unary_high`. */
  readonly clients: number;
  /** Streams per connection for `unary_high`. */
  readonly streams: number;
  /** Connections for `many_clients`. */
  readonly manyClients: number;
  /** Connections `idle_connections` opens. */
  readonly idleConnections: number;
  /** Checked calls around each run. */
  readonly gateCalls: number;
  /** Where the JSON results go. */
  readonly jsonOut: string;
  /** Directory to write the run's SVG charts into; no charts without it. */
  readonly charts?: string;
  /** Directory for Switchyard's CPU profile, if profiling. */
  readonly cpuProfDir?: string;
  /** A checkout to run beside this one as `switchyard-baseline`. */
  readonly baselineDir?: string;
  /**
   * Worker counts to run Switchyard with, one `switchyard-w<N>` target each, ascending and
   * distinct; undefined runs the one target `switchyard`, with 1 worker.
   */
  readonly workers?: readonly number[];
  /** Print usage and exit. */
  readonly help: boolean;
}

const DEFAULT_JSON_OUT = new URL("./results/latest.json", import.meta.url).pathname;

function positive(name: string, text: string, integer: boolean, allowZero = false): number {
  const value = Number(text);
  const inRange = allowZero ? value >= 0 : value > 0;
  if (!inRange || (integer && !Number.isInteger(value))) {
    throw new Error(`--${name}: expected a positive ${integer ? "integer" : "number"}`);
  }
  return value;
}

/** `--workers`: distinct positive integers, ascending. */
function workerCounts(text: string): number[] {
  const counts = text.split(",").map((item) => positive("workers", item.trim(), true));
  return [...new Set(counts)].sort((a, b) => a - b);
}

function subset<T extends string>(name: string, text: string, allowed: readonly T[]): T[] {
  const picked = text.split(",").map((item) => item.trim()).filter(Boolean);
  const unknown = picked.filter((item) => !(allowed as readonly string[]).includes(item));
  if (unknown.length > 0 || picked.length === 0) {
    throw new Error(`--${name}: unknown ${unknown.join(", ")}; choose from ${allowed.join(", ")}`);
  }
  return allowed.filter((item) => picked.includes(item));
}

/** Parses `args`; throws an Error with a readable message on a bad command line. */
export function parseBenchArgs(args: string[]): BenchOptions {
  const { values } = parseArgs({
    args,
    strict: true,
    options: {
      duration: { type: "string", default: "10" },
      warmup: { type: "string", default: "2" },
      scenarios: { type: "string" },
      targets: { type: "string" },
      load: { type: "string", default: "auto" },
      clients: { type: "string", default: "8" },
      streams: { type: "string", default: "32" },
      "many-clients": { type: "string", default: "400" },
      "idle-connections": { type: "string", default: "1000" },
      "gate-calls": { type: "string", default: "5" },
      "json-out": { type: "string", default: DEFAULT_JSON_OUT },
      charts: { type: "string" },
      "cpu-prof-dir": { type: "string" },
      baseline: { type: "string" },
      workers: { type: "string" },
      help: { type: "boolean", default: false },
    },
  });
  const load = values.load as LoadChoice;
  if (!["auto", "h2load", "builtin"].includes(load)) {
    throw new Error("--load: expected auto, h2load or builtin");
  }
  if (values.charts === "") throw new Error("--charts: expected a directory");
  return {
    durationS: positive("duration", values.duration, false),
    warmupS: positive("warmup", values.warmup, false, true),
    scenarios: values.scenarios
      ? subset("scenarios", values.scenarios, SCENARIO_NAMES)
      : [...SCENARIO_NAMES],
    targets: values.targets ? subset("targets", values.targets, TARGET_NAMES) : undefined,
    load,
    clients: positive("clients", values.clients, true),
    streams: positive("streams", values.streams, true),
    manyClients: positive("many-clients", values["many-clients"], true),
    idleConnections: positive("idle-connections", values["idle-connections"], true),
    gateCalls: positive("gate-calls", values["gate-calls"], true),
    jsonOut: values["json-out"],
    charts: values.charts,
    cpuProfDir: values["cpu-prof-dir"],
    baselineDir: values.baseline,
    workers: values.workers === undefined ? undefined : workerCounts(values.workers),
    help: values.help,
  };
}
