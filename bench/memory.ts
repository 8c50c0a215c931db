/**
 * The proxies' memory, three figures per proxy target: RSS idle (after start, before any
 * load), the highest peak RSS of a measured load run, and the RSS one more idle client
 * connection costs (the `idle_connections` scenario).
 * @module
 */
import { openIdleConnections } from "./load/idle_connections.ts";
import { gate, type Measurement, type MeasureSettings } from "./measure.ts";
import { settledRss } from "./proc_stats.ts";
import type { Scenario, ScenarioName } from "./scenarios.ts";
import type { Target, TargetName } from "./targets/target.ts";

/**
 * Idle connections opened, and kept open, before the measured ones, so that what the first
 * connections cost once (code compiled, buffers allocated on first use) is not charged to them.
 */
const WARM_CONNECTIONS = 16;
/** Opening all the idle connections of one measurement must take no longer. */
const OPEN_TIMEOUT_MS = 30_000;

/** The `idle_connections` scenario's outcome on one proxy. */
export interface IdleConnectionsFigure {
  /** Idle connections measured. */
  readonly connections: number;
  /** Proxy RSS before they were opened, bytes. */
  readonly rssBeforeBytes?: number;
  /** Proxy RSS with them open, bytes. */
  readonly rssAfterBytes?: number;
  /** (after − before) / connections, KiB. */
  readonly kibPerConnection?: number;
  /** Why this measurement fails the bench; undefined when it passes. */
  readonly failure?: string;
}

/** One proxy target's memory over the run. */
export interface MemoryFigures {
  /** Target name. */
  readonly target: TargetName;
  /** RSS once settled after start, before any scenario ran, bytes. */
  readonly idleRssBytes: number;
  /** The highest peak RSS of the measured load runs, bytes. */
  readonly loadPeakRssBytes?: number;
  /** The scenario that peak was reached in. */
  readonly loadPeakScenario?: ScenarioName;
  /** The `idle_connections` scenario's outcome, when it ran. */
  readonly idleConnections?: IdleConnectionsFigure;
}

/** The settled RSS of every proxy target (those with a process), by target. */
export async function idleRss(targets: readonly Target[]): Promise<Map<TargetName, number>> {
  const rss = new Map<TargetName, number>();
  for (const target of targets) {
    if (target.proxyPid !== undefined) rss.set(target.name, await settledRss(target.proxyPid));
  }
  return rss;
}

/**
 * Runs the `idle` scenario against a proxy (process `pid`): the RSS it settles at before and
 * after `scenario.connections` idle client connections are opened, fenced by the gate. The
 * connections are closed before the gate after.
 */
export async function measureIdleConnections(
  scenario: Scenario,
  target: Target,
  pid: number,
  settings: MeasureSettings,
): Promise<IdleConnectionsFigure> {
  const address = target.address(scenario.backend);
  const connections = scenario.connections;
  const before = await gate("before", address, scenario.shape, settings.gateCalls);
  let figure: IdleConnectionsFigure;
  {
    using warm = await openIdleConnections(address, WARM_CONNECTIONS, OPEN_TIMEOUT_MS);
    const rssBeforeBytes = await settledRss(pid);
    using idle = await openIdleConnections(address, connections, OPEN_TIMEOUT_MS);
    const rssAfterBytes = await settledRss(pid);
    const ended = warm.ended() + idle.ended();
    figure = {
      connections,
      rssBeforeBytes,
      rssAfterBytes,
      kibPerConnection: (rssAfterBytes - rssBeforeBytes) / 1024 / connections,
      failure: ended > 0 ? `the target ended ${ended} idle connections` : undefined,
    };
  }
  const after = await gate("after", address, scenario.shape, settings.gateCalls);
  return { ...figure, failure: before ?? figure.failure ?? after };
}

/** Each proxy target's memory figures, from its idle RSS and the scenarios' measurements. */
export function memoryFigures(
  idleRssByTarget: ReadonlyMap<TargetName, number>,
  measurements: readonly Measurement[],
  idleConnections: ReadonlyMap<TargetName, IdleConnectionsFigure>,
): MemoryFigures[] {
  return [...idleRssByTarget].map(([target, idleRssBytes]) => {
    let peak: Measurement | undefined;
    for (const measurement of measurements) {
      if (measurement.target !== target || measurement.proxyPeakRssBytes === undefined) continue;
      if (measurement.proxyPeakRssBytes > (peak?.proxyPeakRssBytes ?? 0)) peak = measurement;
    }
    return {
      target,
      idleRssBytes,
      loadPeakRssBytes: peak?.proxyPeakRssBytes,
      loadPeakScenario: peak?.scenario,
      idleConnections: idleConnections.get(target),
    };
  });
}
