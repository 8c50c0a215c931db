/**
 * Health for the whole proxy, in the control plane: active checks for clusters with
 * `healthCheck`, passive ejection for clusters with `outlierDetection`.
 * @module
 */
import type { Cluster } from "../cluster/cluster.ts";
import { ActiveHealthChecker } from "./active_checker.ts";
import type { BackendOutcome } from "./outcomes.ts";
import { OutlierDetector } from "./outlier_detector.ts";

/** Owns every cluster's health checker and outlier detector. */
export class HealthSupervisor {
  readonly #checkers: ActiveHealthChecker[] = [];
  readonly #detectors = new Map<string, OutlierDetector>();

  private constructor() {}

  /** Starts health for `clusters` as their configs ask. */
  static start(clusters: Iterable<Cluster>): HealthSupervisor {
    const supervisor = new HealthSupervisor();
    for (const cluster of clusters) {
      const { healthCheck, outlierDetection } = cluster.config;
      if (healthCheck) supervisor.#checkers.push(new ActiveHealthChecker(cluster, healthCheck));
      if (outlierDetection) {
        supervisor.#detectors.set(cluster.name, new OutlierDetector(cluster, outlierDetection));
      }
    }
    return supervisor;
  }

  /** Feeds a data plane's batch of passive signals to the clusters' outlier detectors. */
  observeOutcomes(batch: readonly BackendOutcome[]): void {
    for (const outcome of batch) this.#detectors.get(outcome.cluster)?.observe(outcome);
  }

  /** Stops probing and ejecting. */
  stop(): void {
    for (const checker of this.#checkers) checker.stop();
    for (const detector of this.#detectors.values()) detector.stop();
  }
}
