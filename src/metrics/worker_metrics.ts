/**
 * The data-plane workers' liveness, read from the control plane at scrape time.
 * @module
 */
import { Counter, Gauge, type Registry } from "prom-client";
import type { WorkerState } from "../dataplane/data_planes.ts";

/** Registers the worker metrics on `registry`; `workers` is read at each scrape. */
export function registerWorkerMetrics(registry: Registry, workers: () => WorkerState[]): void {
  new Gauge({
    name: "switchyard_worker_listening",
    help: "1 while a data-plane worker listens and answers; 0 while it restarts.",
    labelNames: ["worker"] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const { worker, listening } of workers()) this.set({ worker }, listening ? 1 : 0);
    },
  });
  new Counter({
    name: "switchyard_worker_restarts_total",
    help: "Times a data-plane worker died (or stopped answering) and was restarted.",
    labelNames: ["worker"] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const { worker, restarts } of workers()) this.inc({ worker }, restarts);
    },
  });
}
