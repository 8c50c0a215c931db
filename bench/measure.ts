/**
 * One measurement: a scenario against a target, fenced by the correctness gate, with the
 * proxy's CPU and memory read from `/proc` just before and just after the measured load.
 * @module
 */
import { checkCalls, type LoadPlan, runBuiltinLoad } from "./load/builtin_load.ts";
import { runH2load } from "./load/h2load.ts";
import type { LoadResult } from "./load/load_result.ts";
import { type ProcSample, sampleProcess } from "./proc_stats.ts";
import type { Scenario } from "./scenarios.ts";
import type { Target, TargetName } from "./targets/target.ts";

/** How to run measurements. */
export interface MeasureSettings {
  /** Measured seconds. */
  readonly durationS: number;
  /** Unmeasured seconds of the same load first. */
  readonly warmupS: number;
  /** h2load's path when it should drive the scenarios that allow it. */
  readonly h2loadPath?: string;
  /** Checked calls before and after the load. */
  readonly gateCalls: number;
  /** Scratch directory for h2load's files. */
  readonly workDir: string;
}

/** Everything measured for one scenario on one target. */
export interface Measurement {
  /** Scenario name. */
  readonly scenario: Scenario["name"];
  /** Target name. */
  readonly target: TargetName;
  /** The load run's own figures. */
  readonly load: LoadResult;
  /** Calls per second. */
  readonly callsPerS: number;
  /** Response megabytes (10^6 bytes, frames included) per second. */
  readonly mbPerS: number;
  /** Proxy CPU per call, µs (undefined for `direct`). */
  readonly proxyCpuUsPerCall?: number;
  /** Proxy CPU per response megabyte, ms (streaming only; undefined for `direct`). */
  readonly proxyCpuMsPerMB?: number;
  /** Proxy CPU as a share of one core during the run. */
  readonly proxyCpuCores?: number;
  /** Proxy RSS after the run, bytes. */
  readonly proxyRssBytes?: number;
  /** Proxy peak RSS so far, bytes. */
  readonly proxyPeakRssBytes?: number;
  /** Why this measurement fails the bench; undefined when it passes. */
  readonly failure?: string;
}

function runLoad(
  plan: LoadPlan,
  scenario: Scenario,
  settings: MeasureSettings,
): Promise<LoadResult> {
  return settings.h2loadPath && !scenario.builtinOnly
    ? runH2load(settings.h2loadPath, plan, settings.workDir)
    : runBuiltinLoad(plan);
}

function gateFailure(when: string, error: string | undefined): string | undefined {
  return error === undefined ? undefined : `gate ${when} the load: ${error}`;
}

/** Runs `scenario` against `target`. */
export async function measure(
  scenario: Scenario,
  target: Target,
  settings: MeasureSettings,
): Promise<Measurement> {
  const address = target.address(scenario.backend);
  const plan: LoadPlan = {
    address,
    shape: scenario.shape,
    connections: scenario.connections,
    streamsPerConnection: scenario.streamsPerConnection,
    durationS: settings.durationS,
  };
  const before = gateFailure(
    "before",
    await checkCalls(address, scenario.shape, settings.gateCalls),
  );
  if (settings.warmupS > 0) {
    await runLoad({ ...plan, durationS: settings.warmupS }, scenario, settings);
  }
  const pid = target.proxyPid;
  const start: ProcSample | undefined = pid ? await sampleProcess(pid) : undefined;
  const load = await runLoad(plan, scenario, settings);
  const end: ProcSample | undefined = pid ? await sampleProcess(pid) : undefined;
  const after = gateFailure("after", await checkCalls(address, scenario.shape, settings.gateCalls));

  const megabytes = load.responseBytes / 1e6;
  const cpuMicros = start && end ? end.cpuMicros - start.cpuMicros : undefined;
  const loadFailure = load.failures > 0
    ? `${load.failures} of ${load.calls} calls failed: ${load.firstError}`
    : load.calls === 0
    ? "no call completed"
    : undefined;
  return {
    scenario: scenario.name,
    target: target.name,
    load,
    callsPerS: load.calls / load.elapsedS,
    mbPerS: megabytes / load.elapsedS,
    proxyCpuUsPerCall: cpuMicros === undefined ? undefined : cpuMicros / load.calls,
    proxyCpuMsPerMB: cpuMicros === undefined || scenario.kind !== "streaming"
      ? undefined
      : cpuMicros / 1000 / megabytes,
    proxyCpuCores: cpuMicros === undefined ? undefined : cpuMicros / 1e6 / load.elapsedS,
    proxyRssBytes: end?.rssBytes,
    proxyPeakRssBytes: end?.peakRssBytes,
    failure: before ?? loadFailure ?? after,
  };
}

/** A measurement that could not run at all (a generator or target error); it fails the bench. */
export function failedMeasurement(
  scenario: Scenario,
  target: Target,
  error: unknown,
): Measurement {
  return {
    scenario: scenario.name,
    target: target.name,
    load: { generator: "builtin", calls: 0, failures: 0, elapsedS: 0, responseBytes: 0 },
    callsPerS: 0,
    mbPerS: 0,
    failure: `could not measure: ${(error as Error)?.message ?? error}`,
  };
}
