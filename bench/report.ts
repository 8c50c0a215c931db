/**
 * Ratios between targets (Switchyard's worker counts among them) and between gRPC-Web and
 * native gRPC on the same target, and the results table.
 * @module
 */
import type { Measurement } from "./measure.ts";
import type { MemoryFigures } from "./memory.ts";
import type { Scenario } from "./scenarios.ts";
import { isSwitchyard, switchyardWorkersName, type TargetName } from "./targets/target.ts";

/** A measurement compared with `direct` and `nginx` in the same scenario and run. */
export interface Comparison {
  /** Scenario name. */
  readonly scenario: Measurement["scenario"];
  /** Target name. */
  readonly target: Measurement["target"];
  /** Calls/s relative to direct. */
  readonly callsPerSVsDirect?: number;
  /** Proxy CPU relative to NGINX: per call for unary, per MB for streaming. */
  readonly cpuVsNginx?: number;
  /** p50 minus direct's p50, ms. */
  readonly addedP50Ms?: number;
  /** Added p50 relative to what NGINX adds: (p50 − p50_direct) / (p50_nginx − p50_direct). */
  readonly addedP50VsNginx?: number;
  /**
   * A gRPC-Web scenario's proxy CPU per call relative to that of its native scenario
   * ({@link Scenario.nativeScenario}) on the same target.
   */
  readonly cpuVsNative?: number;
}

function ratio(numerator: number | undefined, denominator: number | undefined): number | undefined {
  if (numerator === undefined || denominator === undefined || denominator === 0) return undefined;
  return numerator / denominator;
}

/**
 * The proxy CPU figure that matters for a scenario kind: ms per MB for streaming, µs per call
 * otherwise. The charts draw the same figure the ratios compare.
 */
export function cpuFigure(measurement: Measurement, kind: Scenario["kind"]): number | undefined {
  return kind === "streaming" ? measurement.proxyCpuMsPerMB : measurement.proxyCpuUsPerCall;
}

/**
 * The measurement of `scenario`'s native scenario on `target`; undefined when `scenario` has
 * none or it did not run there.
 */
function nativeMeasurement(
  measurements: readonly Measurement[],
  scenario: Scenario,
  target: TargetName,
): Measurement | undefined {
  return scenario.nativeScenario === undefined
    ? undefined
    : measurements.find((m) => m.scenario === scenario.nativeScenario && m.target === target);
}

/**
 * Compares every measurement with its scenario's direct and NGINX measurements, and a
 * gRPC-Web one with its native scenario's on the same target.
 */
export function compare(
  measurements: readonly Measurement[],
  scenarios: readonly Scenario[],
): Comparison[] {
  const comparisons: Comparison[] = [];
  for (const scenario of scenarios) {
    const inScenario = measurements.filter((m) => m.scenario === scenario.name);
    const direct = inScenario.find((m) => m.target === "direct");
    const nginx = inScenario.find((m) => m.target === "nginx");
    const nginxAdded = nginx?.load.p50Ms !== undefined && direct?.load.p50Ms !== undefined
      ? nginx.load.p50Ms - direct.load.p50Ms
      : undefined;
    for (const measurement of inScenario) {
      const added = measurement.load.p50Ms !== undefined && direct?.load.p50Ms !== undefined
        ? measurement.load.p50Ms - direct.load.p50Ms
        : undefined;
      comparisons.push({
        scenario: scenario.name,
        target: measurement.target,
        callsPerSVsDirect: ratio(measurement.callsPerS, direct?.callsPerS),
        cpuVsNginx: ratio(
          cpuFigure(measurement, scenario.kind),
          nginx && cpuFigure(nginx, scenario.kind),
        ),
        addedP50Ms: added,
        // Only at concurrency 1 is p50 the proxy's own latency rather than queueing.
        addedP50VsNginx: scenario.kind === "latency" && measurement.target !== "direct"
          ? ratio(added, nginxAdded)
          : undefined,
        cpuVsNative: ratio(
          measurement.proxyCpuUsPerCall,
          nativeMeasurement(measurements, scenario, measurement.target)?.proxyCpuUsPerCall,
        ),
      });
    }
  }
  return comparisons;
}

/** A proxy's memory compared with NGINX's in the same run. */
export interface MemoryComparison {
  /** Target name. */
  readonly target: TargetName;
  /** RSS idle relative to NGINX's. */
  readonly idleRssVsNginx?: number;
  /** Peak RSS under load relative to NGINX's. */
  readonly loadPeakRssVsNginx?: number;
  /** RSS per idle client connection relative to NGINX's. */
  readonly perIdleConnectionVsNginx?: number;
}

/** Compares every proxy's memory figures with NGINX's. */
export function compareMemory(memory: readonly MemoryFigures[]): MemoryComparison[] {
  const nginx = memory.find((m) => m.target === "nginx");
  return memory.map((m) => ({
    target: m.target,
    idleRssVsNginx: ratio(m.idleRssBytes, nginx?.idleRssBytes),
    loadPeakRssVsNginx: ratio(m.loadPeakRssBytes, nginx?.loadPeakRssBytes),
    perIdleConnectionVsNginx: ratio(
      m.idleConnections?.kibPerConnection,
      nginx?.idleConnections?.kibPerConnection,
    ),
  }));
}

/** One Switchyard worker count compared with the fewest run, in one load scenario. */
export interface Scaling {
  /** Scenario name. */
  readonly scenario: Measurement["scenario"];
  /** Worker count. */
  readonly workers: number;
  /** The fewest workers run, compared with: 1 whenever `--workers` lists it. */
  readonly baseWorkers: number;
  /** Calls/s relative to `baseWorkers`'. */
  readonly callsPerSVsBase?: number;
  /** Proxy CPU per call relative to `baseWorkers`'. */
  readonly cpuPerCallVsBase?: number;
}

/**
 * Compares the `switchyard-w<N>` measurement of every count in `workers` (ascending) with
 * that of the first, scenario by scenario; empty with fewer than two counts.
 */
export function compareWorkers(
  measurements: readonly Measurement[],
  scenarios: readonly Scenario[],
  workers: readonly number[],
): Scaling[] {
  const [baseWorkers, ...more] = workers;
  const scaling: Scaling[] = [];
  for (const scenario of scenarios) {
    const find = (count: number): Measurement | undefined =>
      measurements.find((m) =>
        m.scenario === scenario.name && m.target === switchyardWorkersName(count)
      );
    const base = find(baseWorkers);
    if (!base) continue;
    for (const count of more) {
      const measurement = find(count);
      if (!measurement) continue;
      scaling.push({
        scenario: scenario.name,
        workers: count,
        baseWorkers,
        callsPerSVsBase: ratio(measurement.callsPerS, base.callsPerS),
        cpuPerCallVsBase: ratio(measurement.proxyCpuUsPerCall, base.proxyCpuUsPerCall),
      });
    }
  }
  return scaling;
}

function fixed(value: number | undefined, digits: number, suffix = ""): string {
  return value === undefined || !Number.isFinite(value) ? "-" : `${value.toFixed(digits)}${suffix}`;
}

function megabytes(bytes: number | undefined, digits: number): string {
  return fixed(bytes === undefined ? undefined : bytes / 2 ** 20, digits);
}

/** An aligned plain-text table: the first `leftAligned` columns padded right, the rest left. */
function renderTable(columns: readonly string[], rows: string[][], leftAligned: number): string {
  const widths = columns.map((title, index) =>
    Math.max(title.length, ...rows.map((row) => row[index].length))
  );
  const line = (cells: readonly string[]): string =>
    cells.map((cell, index) =>
      index < leftAligned ? cell.padEnd(widths[index]) : cell.padStart(widths[index])
    ).join("  ");
  return [line(columns), line(widths.map((w) => "-".repeat(w))), ...rows.map(line)].join("\n");
}

const COLUMNS = [
  "scenario",
  "target",
  "load",
  "calls/s",
  "MB/s",
  "p50 ms",
  "p99 ms",
  "CPU µs/call",
  "CPU ms/MB",
  "cores",
  "peak RSS MB",
  "calls/s ×direct",
  "CPU ×nginx",
  "+p50 ms",
  "+p50 ×nginx",
  "status",
];

/** Renders the results as an aligned plain-text table. */
export function formatTable(
  measurements: readonly Measurement[],
  comparisons: readonly Comparison[],
): string {
  const rows = measurements.map((m) => {
    const c = comparisons.find((x) => x.scenario === m.scenario && x.target === m.target);
    return [
      m.scenario,
      m.target,
      m.load.generator,
      fixed(m.callsPerS, 0),
      fixed(m.mbPerS, 1),
      fixed(m.load.p50Ms, 3),
      fixed(m.load.p99Ms, 3),
      fixed(m.proxyCpuUsPerCall, 1),
      fixed(m.proxyCpuMsPerMB, 2),
      fixed(m.proxyCpuCores, 2),
      megabytes(m.proxyPeakRssBytes, 0),
      fixed(c?.callsPerSVsDirect, 2, "×"),
      fixed(c?.cpuVsNginx, 2, "×"),
      fixed(c?.addedP50Ms, 3),
      fixed(c?.addedP50VsNginx, 2, "×"),
      `${m.failure === undefined ? "ok" : "FAIL"} (${m.checkedCalls}/${m.load.calls} checked)`,
    ];
  });
  return renderTable(COLUMNS, rows, 3);
}

const MEMORY_COLUMNS = [
  "target",
  "RSS idle MB",
  "peak RSS MB",
  "peak in",
  "KiB/idle conn",
  "RSS idle ×nginx",
  "peak RSS ×nginx",
  "KiB/conn ×nginx",
  "idle conns",
];

/** Renders every proxy's memory figures and their ratios to NGINX's as a table. */
export function formatMemoryTable(
  memory: readonly MemoryFigures[],
  comparisons: readonly MemoryComparison[],
): string {
  const rows = memory.map((m) => {
    const c = comparisons.find((x) => x.target === m.target);
    const idle = m.idleConnections;
    return [
      m.target,
      megabytes(m.idleRssBytes, 1),
      megabytes(m.loadPeakRssBytes, 1),
      m.loadPeakScenario ?? "-",
      fixed(idle?.kibPerConnection, 1),
      fixed(c?.idleRssVsNginx, 2, "×"),
      fixed(c?.loadPeakRssVsNginx, 2, "×"),
      fixed(c?.perIdleConnectionVsNginx, 2, "×"),
      idle === undefined
        ? "-"
        : `${idle.failure === undefined ? "ok" : "FAIL"} (${idle.connections})`,
    ];
  });
  return renderTable(MEMORY_COLUMNS, rows, 1);
}

/**
 * A gRPC-Web scenario's headline on one target: its proxy CPU per call, and that of its
 * native scenario beside it when that ran too.
 */
function versusNative(
  measurements: readonly Measurement[],
  scenario: Scenario,
  comparison: Comparison,
): string {
  const target = comparison.target;
  const web = measurements.find((m) => m.scenario === scenario.name && m.target === target);
  const line = `${scenario.name} ${target}: CPU/call ${fixed(web?.proxyCpuUsPerCall, 1, " µs")}`;
  const native = nativeMeasurement(measurements, scenario, target);
  if (!native) return line;
  return `${line} vs ${native.scenario} ${fixed(native.proxyCpuUsPerCall, 1, " µs")} native ` +
    `(${fixed(comparison.cpuVsNative, 2, "×")})`;
}

/**
 * One line per headline ratio of each Switchyard target (every worker count, and the
 * baseline, when run) against NGINX, or for a gRPC-Web scenario against native gRPC, and one
 * per scenario of `scaling`.
 */
export function formatHeadline(
  measurements: readonly Measurement[],
  comparisons: readonly Comparison[],
  scenarios: readonly Scenario[],
  memory: readonly MemoryComparison[],
  scaling: readonly Scaling[],
): string {
  const lines: string[] = [];
  for (const scenario of scenarios) {
    const switchyards = comparisons.filter((c) =>
      c.scenario === scenario.name && isSwitchyard(c.target)
    );
    for (const switchyard of switchyards) {
      if (scenario.nativeScenario !== undefined) {
        lines.push(`  ${versusNative(measurements, scenario, switchyard)}`);
        continue;
      }
      const target = switchyard.target;
      const cpu = scenario.kind === "streaming" ? "CPU/MB" : "CPU/call";
      const parts = [
        `${scenario.name} ${target}: ${cpu} ${fixed(switchyard.cpuVsNginx, 2, "× nginx")}`,
      ];
      if (scenario.kind === "latency") {
        parts.push(
          `added p50 ${fixed(switchyard.addedP50Ms, 3, " ms")} = ${
            fixed(switchyard.addedP50VsNginx, 2, "× what nginx adds")
          }`,
        );
      }
      parts.push(`calls/s ${fixed(switchyard.callsPerSVsDirect, 2, "× direct")}`);
      lines.push(`  ${parts.join(", ")}`);
    }
  }
  for (const switchyard of memory.filter((m) => isSwitchyard(m.target))) {
    const target = switchyard.target;
    lines.push(
      `  memory ${target}: RSS idle ${fixed(switchyard.idleRssVsNginx, 2, "× nginx")}, ` +
        `peak RSS under load ${fixed(switchyard.loadPeakRssVsNginx, 2, "× nginx")}, ` +
        `RSS per idle connection ${fixed(switchyard.perIdleConnectionVsNginx, 2, "× nginx")}`,
    );
  }
  for (const scenario of scenarios) {
    const counts = scaling.filter((s) => s.scenario === scenario.name).map((s) => {
      const base = `× w${s.baseWorkers}`;
      return `w${s.workers} calls/s ${fixed(s.callsPerSVsBase, 2, base)}, ` +
        `CPU/call ${fixed(s.cpuPerCallVsBase, 2, base)}`;
    });
    if (counts.length > 0) lines.push(`  scaling ${scenario.name}: ${counts.join("; ")}`);
  }
  return lines.length > 0 ? `Switchyard vs NGINX and direct:\n${lines.join("\n")}` : "";
}
