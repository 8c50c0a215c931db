/**
 * The process and runtime metrics. The control plane registers prom-client's default
 * metrics, which work on Deno (process CPU, RSS, open and max FDs, start time, the main
 * isolate's heap and event-loop lag), and `switchyard_build_info`. Data-plane workers are
 * isolates of their own, which prom-client's defaults cannot see: each counts its own heap and
 * event-loop lag by hand, and the control plane sums the heap and takes the worst lag.
 * @module
 */
import { monitorEventLoopDelay } from "node:perf_hooks";
import { getHeapStatistics } from "node:v8";
import { collectDefaultMetrics, Gauge, type Registry } from "prom-client";

/**
 * How often the event-loop delay monitors sample, in ms. A coarser clock than prom-client's
 * default 10 ms: a worker blocked for longer than this still shows, for a fifth of the wakeups.
 */
const LAG_RESOLUTION_MS = 50;

/** Registers the process metrics and `switchyard_build_info` on the control plane's registry. */
export function registerProcessMetrics(registry: Registry, version: string): void {
  collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: LAG_RESOLUTION_MS });
  // prom-client omits the start time when it aggregates, as it would across a Node cluster's
  // processes; the control plane aggregates threads of one process, which share it.
  const startTime = registry.getSingleMetric("process_start_time_seconds");
  if (startTime) Object.assign(startTime, { aggregator: "first" });
  new Gauge({
    name: "switchyard_build_info",
    help: "Always 1; the labels say which Switchyard and which Deno run.",
    labelNames: ["version", "deno"] as const,
    registers: [registry],
  }).set({ version, deno: Deno.version.deno }, 1);
}

/**
 * Registers a data plane's heap and event-loop lag gauges on its registry. Returns what
 * stops the lag monitor's timer when the data plane closes.
 */
export function registerDataPlaneRuntimeMetrics(registry: Registry): () => void {
  const delay = monitorEventLoopDelay({ resolution: LAG_RESOLUTION_MS });
  delay.enable();
  new Gauge({
    name: "switchyard_dataplane_heap_used_bytes",
    help: "V8 heap in use by the data planes' isolates (summed over workers).",
    registers: [registry],
    collect() {
      this.set(getHeapStatistics().used_heap_size);
    },
  });
  new Gauge({
    name: "switchyard_dataplane_event_loop_lag_seconds",
    help: "The longest event-loop delay a data plane saw since the previous scrape (the " +
      "worst worker's).",
    registers: [registry],
    aggregator: "max",
    collect() {
      // Deno's monitor records each tick's lateness (not the interval), in ns.
      this.set(delay.count === 0 ? 0 : delay.max / 1e9);
      delay.reset();
    },
  });
  return () => delay.disable();
}
