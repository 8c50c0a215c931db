/**
 * `deno task bench`: starts the backends, then direct / Switchyard (once per `--workers`
 * count) / NGINX targets, runs every scenario against every target in the same run (scenario
 * by scenario, so that the figures being compared are measured close together), prints a
 * table and writes JSON.
 *
 * Exits 1 when any target fails the correctness gate (for example by losing trailers),
 * 2 for a bad command line.
 * @module
 */
import { dirname } from "node:path";
import { type ChartRun, writeCharts } from "./charts.ts";
import { BENCH_USAGE, type BenchOptions, parseBenchArgs } from "./cli.ts";
import {
  couldNotMeasure,
  endpointFor,
  failedMeasurement,
  measure,
  type Measurement,
  type MeasureSettings,
} from "./measure.ts";
import {
  type IdleConnectionsFigure,
  idleRss,
  measureIdleConnections,
  memoryFigures,
} from "./memory.ts";
import {
  compare,
  compareMemory,
  compareWorkers,
  formatHeadline,
  formatMemoryTable,
  formatTable,
} from "./report.ts";
import { buildScenarios, connectionsHeld, type Scenario } from "./scenarios.ts";
import { type Backends, startBackends } from "./targets/backends.ts";
import { nginxVersion, startNginx } from "./targets/nginx.ts";
import { type CurrentSwitchyard, startSwitchyard } from "./targets/switchyard.ts";
import { startTracedSwitchyard } from "./targets/switchyard_traced.ts";
import {
  directTarget,
  switchyardWorkersName,
  type Target,
  type TargetKind,
  type TargetName,
} from "./targets/target.ts";
import { captureOutput, findExecutable } from "./tools.ts";

/** Which tools this run found, recorded with the results. */
interface Environment {
  readonly deno: string;
  readonly h2load?: string;
  readonly nginx?: string;
  readonly nginxVersion?: string;
  readonly fastBackendRuntime?: string;
  readonly cpus: number;
  /** For the charts' caption: the same figures differ by 2× between machines. */
  readonly cpuModel?: string;
  readonly osRelease: string;
}

/** `/proc/cpuinfo`'s first `model name`; undefined where it has none (say, on arm64). */
async function cpuModel(): Promise<string | undefined> {
  const cpuinfo = await Deno.readTextFile("/proc/cpuinfo").catch(() => "");
  return /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1].trim();
}

/** `args` as a shell command line, quoted where need be, for the record of the run. */
function commandLine(args: readonly string[]): string {
  const quoted = args.map((arg) =>
    /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replaceAll("'", `'\\''`)}'`
  );
  return ["deno task bench", ...quoted].join(" ");
}

function wantsTarget(options: BenchOptions, kind: TargetKind): boolean {
  return options.targets === undefined || options.targets.includes(kind);
}

/**
 * This checkout's Switchyard targets: one per `--workers` count, or else `switchyard` with
 * 1 worker, written out so that its figures stay comparable with runs from before `workers`.
 */
function currentSwitchyards(options: BenchOptions): CurrentSwitchyard[] {
  const cpuProfDir = options.cpuProfDir;
  return options.workers?.map((workers) => ({
    name: switchyardWorkersName(workers),
    workers,
    cpuProfDir,
  })) ?? [{ name: "switchyard", workers: 1, cpuProfDir }];
}

function h2loadChoice(options: BenchOptions): string | undefined {
  if (options.load === "builtin") return undefined;
  const path = findExecutable("h2load");
  if (!path && options.load === "h2load") throw new Error("--load h2load: h2load not installed");
  return path;
}

async function startTargets(
  options: BenchOptions,
  backends: Backends,
  workDir: string,
  nginxPath: string | undefined,
  nginxConnections: number,
): Promise<Target[]> {
  const targets: Target[] = [];
  try {
    if (wantsTarget(options, "direct")) {
      targets.push(directTarget(backends.addresses, backends.fastLedger));
    }
    if (options.baselineDir !== undefined && wantsTarget(options, "switchyard-baseline")) {
      targets.push(
        await startSwitchyard(backends.addresses, workDir, { baselineDir: options.baselineDir }),
      );
    }
    if (wantsTarget(options, "switchyard")) {
      for (const switchyard of currentSwitchyards(options)) {
        targets.push(await startSwitchyard(backends.addresses, workDir, switchyard));
      }
    }
    // Tracing's cost: opt-in, it is not one of the default targets.
    if (options.targets?.includes("switchyard-traced")) {
      targets.push(await startTracedSwitchyard(backends.addresses, workDir));
    }
    if (wantsTarget(options, "nginx")) {
      if (nginxPath) {
        targets.push(await startNginx(nginxPath, backends.addresses, workDir, nginxConnections));
      } else if (options.targets) throw new Error("--targets nginx: nginx is not installed");
      else console.error("nginx is not installed: skipping the nginx target");
    }
    return targets;
  } catch (error) {
    await Promise.allSettled(targets.map((target) => target.stop()));
    throw error;
  }
}

/** What the scenarios measured. */
interface ScenarioResults {
  /** One per load scenario and target. */
  readonly measurements: Measurement[];
  /** The `idle_connections` scenario's figures, by proxy target. */
  readonly idleConnections: Map<TargetName, IdleConnectionsFigure>;
}

/** Prints one measurement's progress line. */
function progress(target: Target, figure: string, failure: string | undefined): void {
  console.error(`  ${target.name}: ${figure}${failure ? ` FAIL: ${failure}` : ""}`);
}

/**
 * Runs every scenario against every target that can take its calls, scenario by scenario,
 * printing progress (and `n/a` for the others: gRPC-Web scenarios run on this checkout's
 * Switchyard only).
 */
async function runScenarios(
  scenarios: readonly Scenario[],
  targets: readonly Target[],
  settings: MeasureSettings,
): Promise<ScenarioResults> {
  const results: ScenarioResults = { measurements: [], idleConnections: new Map() };
  for (const scenario of scenarios) {
    console.error(`# ${scenario.name}: ${scenario.description}`);
    for (const target of targets) {
      if (scenario.kind === "idle") {
        if (target.proxyPid === undefined) continue; // direct: no proxy to measure
        const figure = await measureIdleConnections(scenario, target, target.proxyPid, settings)
          .catch((error): IdleConnectionsFigure => ({
            connections: scenario.connections,
            failure: couldNotMeasure(error),
          }));
        const kib = figure.kibPerConnection?.toFixed(1) ?? "-";
        progress(target, `${kib} KiB/connection`, figure.failure);
        results.idleConnections.set(target.name, figure);
        continue;
      }
      if (!endpointFor(scenario, target)) {
        console.error(`  ${target.name}: n/a (no ${scenario.shape.protocol} listener)`);
        continue;
      }
      const measurement = await measure(scenario, target, settings).catch((error) =>
        failedMeasurement(scenario, target, error)
      );
      progress(target, `${measurement.callsPerS.toFixed(0)} calls/s`, measurement.failure);
      results.measurements.push(measurement);
    }
  }
  return results;
}

async function run(options: BenchOptions, command: string): Promise<number> {
  const scenarios = buildScenarios(options).filter((s) => options.scenarios.includes(s.name));
  const h2loadPath = h2loadChoice(options);
  const nginxPath = findExecutable("nginx");
  const workDir = await Deno.makeTempDir({ prefix: "switchyard-bench-" });
  const backends = await startBackends();
  const environment: Environment = {
    deno: Deno.version.deno,
    h2load: h2loadPath && (await captureOutput(h2loadPath, ["--version"])).trim(),
    nginx: nginxPath,
    nginxVersion: nginxPath && await nginxVersion(nginxPath),
    fastBackendRuntime: backends.fastRuntime,
    cpus: navigator.hardwareConcurrency,
    cpuModel: await cpuModel(),
    osRelease: Deno.osRelease(),
  };
  let results: ScenarioResults;
  let idleRssByTarget: Map<TargetName, number>;
  try {
    const nginxConnections = Math.max(...scenarios.map(connectionsHeld));
    const targets = await startTargets(options, backends, workDir, nginxPath, nginxConnections);
    const settings: MeasureSettings = {
      durationS: options.durationS,
      warmupS: options.warmupS,
      h2loadPath,
      gateCalls: options.gateCalls,
      workDir,
    };
    try {
      idleRssByTarget = await idleRss(targets);
      results = await runScenarios(scenarios, targets, settings);
    } finally {
      for (const target of targets) await target.stop();
    }
  } finally {
    await backends.stop();
    await Deno.remove(workDir, { recursive: true }).catch(() => {});
  }
  const { measurements, idleConnections } = results;
  const comparisons = compare(measurements, scenarios);
  const memory = memoryFigures(idleRssByTarget, measurements, idleConnections);
  const memoryComparisons = compareMemory(memory);
  const scaling = compareWorkers(measurements, scenarios, options.workers ?? []);
  console.log(formatTable(measurements, comparisons));
  if (memory.length > 0) console.log(`\n${formatMemoryTable(memory, memoryComparisons)}`);
  console.log(
    `\n${formatHeadline(measurements, comparisons, scenarios, memoryComparisons, scaling)}`,
  );
  const failures = [
    ...measurements.map((m) => ({ scenario: m.scenario, target: m.target, failure: m.failure })),
    ...[...idleConnections].map(([target, figure]) => ({
      scenario: "idle_connections",
      target,
      failure: figure.failure,
    })),
  ].filter((f) => f.failure !== undefined);
  for (const failed of failures) {
    console.log(`FAIL ${failed.scenario} ${failed.target}: ${failed.failure}`);
  }
  const finishedAt = new Date().toISOString();
  await Deno.mkdir(dirname(options.jsonOut), { recursive: true });
  await Deno.writeTextFile(
    options.jsonOut,
    JSON.stringify(
      {
        finishedAt,
        command,
        options,
        environment,
        scenarios: scenarios.map(({ shape: _shape, ...rest }) => rest),
        measurements,
        comparisons,
        memory,
        memoryComparisons,
        scaling,
      },
      null,
      2,
    ) + "\n",
  );
  console.log(`\nresults: ${options.jsonOut}`);
  if (options.charts !== undefined) {
    const { cpuModel, cpus, osRelease, deno } = environment;
    const chartRun: ChartRun = {
      finishedAt,
      command,
      machine: { cpuModel, cpus, osRelease },
      deno,
      scenarios,
      measurements,
    };
    const paths = await writeCharts(options.charts, chartRun);
    console.log(`charts: ${paths.join(", ")}`);
  }
  return failures.length > 0 ? 1 : 0;
}

async function main(args: string[]): Promise<number> {
  let options: BenchOptions;
  try {
    options = parseBenchArgs(args);
  } catch (error) {
    console.error(`bench: ${(error as Error).message}\n\n${BENCH_USAGE}`);
    return 2;
  }
  if (options.help) {
    console.log(BENCH_USAGE);
    return 0;
  }
  return await run(options, commandLine(args));
}

if (import.meta.main) Deno.exit(await main(Deno.args));
