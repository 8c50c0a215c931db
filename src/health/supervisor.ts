/**
 * Health for the whole proxy: active checks for clusters with `healthCheck`, passive
 * ejection for clusters with `outlierDetection`.
 * @module
 */
import type { Cluster } from "../cluster/cluster.ts";
import type { CallObserver, CallRecord } from "../proxy/call_record.ts";
import { ActiveHealthChecker } from "./active_checker.ts";
import { OutlierDetector } from "./outlier_detector.ts";

/** Owns every cluster's health checker and outlier detector. */
export class HealthSupervisor {
  readonly #checkers: ActiveHealthChecker[] = [];
  readonly #detectors = new Map<string, OutlierDetector>();
  readonly #observers: CallObserver[];

  private constructor(observers: CallObserver[]) {
    this.#observers = observers;
  }

  /**
   * Starts health for `clusters` as their configs ask, registering one call observer in
   * `observers` (the proxy's list) when any cluster uses outlier detection.
   */
  static start(clusters: Iterable<Cluster>, observers: CallObserver[]): HealthSupervisor {
    const supervisor = new HealthSupervisor(observers);
    for (const cluster of clusters) {
      const { healthCheck, outlierDetection } = cluster.config;
      if (healthCheck) supervisor.#checkers.push(new ActiveHealthChecker(cluster, healthCheck));
      if (outlierDetection) {
        supervisor.#detectors.set(cluster.name, new OutlierDetector(cluster, outlierDetection));
      }
    }
    if (supervisor.#detectors.size > 0) observers.push(supervisor.#observe);
    return supervisor;
  }

  /** Stops probing and ejecting, and unregisters the call observer. */
  stop(): void {
    for (const checker of this.#checkers) checker.stop();
    for (const detector of this.#detectors.values()) detector.stop();
    const index = this.#observers.indexOf(this.#observe);
    if (index >= 0) this.#observers.splice(index, 1);
  }

  #observe = (record: CallRecord): void => {
    if (record.cluster !== undefined) this.#detectors.get(record.cluster)?.observe(record);
  };
}
