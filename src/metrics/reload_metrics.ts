/**
 * Config reloads, read from the control plane at scrape time.
 * @module
 */
import { Counter, Gauge, type Registry } from "prom-client";
import type { ReloadStatus } from "../config/reload.ts";

/** Registers the reload metrics on `registry`; `status` is read at each scrape. */
export function registerReloadMetrics(registry: Registry, status: () => ReloadStatus): void {
  new Counter({
    name: "switchyard_config_reloads_total",
    help: "Config reloads (SIGHUP, POST /reload, watch) by result: success applied the new " +
      "config; failure kept the running one.",
    labelNames: ["result"] as const,
    registers: [registry],
    collect() {
      this.reset();
      const { successes, failures } = status();
      this.inc({ result: "success" }, successes);
      this.inc({ result: "failure" }, failures);
    },
  });
  new Gauge({
    name: "switchyard_config_last_reload_success_timestamp_seconds",
    help: "When the running config was applied: the last successful reload, or the start.",
    registers: [registry],
    collect() {
      this.set(status().lastSuccessAt / 1000);
    },
  });
}
