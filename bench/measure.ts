/**
 * One measurement: a scenario against a target, fenced by the correctness gate, with every
 * call of the measured load checked, and the proxy's CPU and memory read from `/proc` just
 * before and just after it.
 * @module
 */
import { checkLedger, type LedgerCheck, settledCounts } from "./ledger.ts";
import { checkCalls, type LoadPlan, runBuiltinLoad } from "./load/builtin_load.ts";
import { runH2load } from "./load/h2load.ts";
import type { LoadResult } from "./load/load_result.ts";
import { type ProcSample, resetPeakRss, sampleProcess } from "./proc_stats.ts";
import type { CallShape, Scenario } from "./scenarios.ts";
import type { Endpoint, Target, TargetName } from "./targets/target.ts";

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
  /** Proxy peak RSS during the measured run, bytes (undefined when it could not be reset). */
  readonly proxyPeakRssBytes?: number;
  /** Calls of the measured load that were checked and found correct. */
  readonly checkedCalls: number;
  /**
   * Who checked them: `client` (the built-in generator checks every call itself) or the
   * target's ledger (h2load reads no trailers).
   */
  readonly checkedBy: string;
  /** Why this measurement fails the bench; undefined when it passes. */
  readonly failure?: string;
}

/** A sample of the proxy as a measured run starts. */
interface StartSample extends ProcSample {
  /** Whether its peak RSS was reset to its current RSS first. */
  readonly peakReset: boolean;
}

/** The measured load, the proxy sampled around it, and the check of its every call. */
interface CheckedRun {
  readonly load: LoadResult;
  readonly start?: StartSample;
  readonly end?: ProcSample;
  readonly check: LedgerCheck;
  /** See {@link Measurement.checkedBy}. */
  readonly checkedBy: string;
}

/** h2load's unmeasured run, which also sizes the measured one, lasts at least this long. */
const MIN_SIZING_S = 1;

/** h2load calls that should take about `plan.durationS` at the rate `sizing` achieved. */
function sizedCalls(sizing: LoadResult, plan: LoadPlan): number {
  const inFlight = plan.connections * plan.streamsPerConnection;
  const rate = sizing.elapsedS > 0 ? sizing.calls / sizing.elapsedS : 0;
  return Math.max(inFlight, Math.round(rate * plan.durationS));
}

/**
 * The h2load run, checked call by call against the endpoint's ledger. It runs a fixed number
 * of calls, sized by the warm-up, so that no call is in flight when it ends.
 */
async function runCheckedH2load(
  h2loadPath: string,
  plan: LoadPlan,
  endpoint: Endpoint,
  target: Target,
  settings: MeasureSettings,
): Promise<CheckedRun> {
  const ledger = endpoint.ledger;
  if (!ledger) throw new Error(`${target.name} keeps no ledger of the calls to ${plan.address}`);
  const sizing = await runH2load(
    h2loadPath,
    { ...plan, durationS: Math.max(settings.warmupS, MIN_SIZING_S) },
    settings.workDir,
  );
  const before = await settledCounts(ledger);
  const start = await sampleProxyAtStart(target);
  const load = await runH2load(h2loadPath, plan, settings.workDir, sizedCalls(sizing, plan));
  const end = await sampleProxy(target);
  const after = await settledCounts(ledger);
  const check = checkLedger(ledger.source, before, after, load.calls);
  return { load, start, end, check, checkedBy: ledger.source };
}

/** The built-in load, which checks every call itself. */
async function runCheckedBuiltin(
  plan: LoadPlan,
  target: Target,
  settings: MeasureSettings,
): Promise<CheckedRun> {
  if (settings.warmupS > 0) await runBuiltinLoad({ ...plan, durationS: settings.warmupS });
  const start = await sampleProxyAtStart(target);
  const load = await runBuiltinLoad(plan);
  const end = await sampleProxy(target);
  return { load, start, end, check: { okCalls: load.calls - load.failures }, checkedBy: "client" };
}

function sampleProxy(target: Target): Promise<ProcSample | undefined> {
  return target.proxyPid === undefined
    ? Promise.resolve(undefined)
    : sampleProcess(target.proxyPid);
}

/**
 * Samples the proxy as a measured run starts, after resetting its peak RSS, so that the peak
 * the end sample reads is the run's own.
 */
async function sampleProxyAtStart(target: Target): Promise<StartSample | undefined> {
  if (target.proxyPid === undefined) return undefined;
  const peakReset = await resetPeakRss(target.proxyPid);
  return { ...await sampleProcess(target.proxyPid), peakReset };
}

/**
 * The correctness gate around every run: `calls` checked calls of `shape` to `address`.
 * Returns why it failed, or undefined.
 */
export async function gate(
  when: "before" | "after",
  address: string,
  shape: CallShape,
  calls: number,
): Promise<string | undefined> {
  const error = await checkCalls(address, shape, calls);
  return error === undefined ? undefined : `gate ${when} the load: ${error}`;
}

/**
 * Where `scenario`'s calls go on `target`, and its record of them; undefined when `target`
 * cannot take them (a gRPC-Web scenario, and no gRPC-Web listener).
 */
export function endpointFor(scenario: Scenario, target: Target): Endpoint | undefined {
  return scenario.shape.protocol === "grpc-web"
    ? target.grpcWeb
    : { address: target.address(scenario.backend), ledger: target.ledger(scenario.backend) };
}

/** Runs `scenario` against `target`, which must take its calls (see {@link endpointFor}). */
export async function measure(
  scenario: Scenario,
  target: Target,
  settings: MeasureSettings,
): Promise<Measurement> {
  const endpoint = endpointFor(scenario, target);
  if (!endpoint) throw new Error(`${target.name} takes no ${scenario.shape.protocol} calls`);
  const address = endpoint.address;
  const plan: LoadPlan = {
    address,
    shape: scenario.shape,
    connections: scenario.connections,
    streamsPerConnection: scenario.streamsPerConnection,
    durationS: settings.durationS,
  };
  const before = await gate("before", address, scenario.shape, settings.gateCalls);
  const { load, start, end, check, checkedBy } = settings.h2loadPath && !scenario.builtinOnly
    ? await runCheckedH2load(settings.h2loadPath, plan, endpoint, target, settings)
    : await runCheckedBuiltin(plan, target, settings);
  const after = await gate("after", address, scenario.shape, settings.gateCalls);

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
    proxyPeakRssBytes: start?.peakReset ? end?.peakRssBytes : undefined,
    checkedCalls: check.okCalls,
    checkedBy,
    failure: before ?? loadFailure ?? check.failure ?? after,
  };
}

/** Why a measurement that threw `error` fails the bench. */
export function couldNotMeasure(error: unknown): string {
  return `could not measure: ${(error as Error)?.message ?? error}`;
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
    checkedCalls: 0,
    checkedBy: "none",
    failure: couldNotMeasure(error),
  };
}
