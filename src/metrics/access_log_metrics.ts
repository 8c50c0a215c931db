/**
 * The access log's metric. Data planes and the main thread (which writes the workers' lines
 * to stdout) each register it on their own registry; `/metrics` sums them.
 * @module
 */
import { Counter, type Registry } from "prom-client";

/** The name of the counter of dropped access-log lines. */
export const ACCESS_LOG_DROPPED_TOTAL = "switchyard_access_log_dropped_total";

/**
 * Registers `switchyard_access_log_dropped_total` on `registry`, read from `dropped` (a
 * running total that only grows) at each scrape, so that the data path only adds to a number.
 */
export function registerAccessLogMetrics(registry: Registry, dropped: () => number): void {
  new Counter({
    name: ACCESS_LOG_DROPPED_TOTAL,
    help: "Access-log lines dropped because the log's sink did not keep up " +
      "(past accessLog.maxBufferedBytes).",
    registers: [registry],
    collect() {
      this.reset();
      this.inc(dropped());
    },
  });
}
