/**
 * Health for the whole proxy, in the control plane: active checks for clusters with
 * `healthCheck`, passive ejection for clusters with `outlierDetection`.
 * @module
 */
import type { Cluster } from "../cluster/cluster.ts";
import { backendTls, type TlsMaterial } from "../config/tls.ts";
import { ActiveHealthChecker } from "./active_checker.ts";
import type { BackendOutcome } from "./outcomes.ts";
import { OutlierDetector } from "./outlier_detector.ts";

/** One cluster's health machinery, with the settings it was built from. */
interface ClusterHealth {
  checker: ActiveHealthChecker | undefined;
  detector: OutlierDetector | undefined;
  /**
   * `healthCheck` (with the cluster's TLS, which probes use) and `outlierDetection` as JSON,
   * to tell whether a reload changed them.
   */
  checkerSettings: string;
  detectorSettings: string;
}

/** Owns every cluster's health checker and outlier detector. */
export class HealthSupervisor {
  readonly #clusters = new Map<string, ClusterHealth>();

  private constructor() {}

  /** Starts health for `clusters` as their configs ask, with the PEM of `tls`. */
  static start(clusters: Iterable<Cluster>, tls: TlsMaterial): HealthSupervisor {
    const supervisor = new HealthSupervisor();
    supervisor.sync(clusters, tls);
    return supervisor;
  }

  /**
   * Matches `clusters` after a reload: health of removed clusters stops, and a cluster
   * whose `healthCheck` or `outlierDetection` changed gets a new checker or detector (the
   * old detector readmits what it ejected). Unchanged ones go on undisturbed.
   */
  sync(clusters: Iterable<Cluster>, tls: TlsMaterial): void {
    const wanted = new Map([...clusters].map((cluster) => [cluster.name, cluster]));
    for (const [name, health] of this.#clusters) {
      if (wanted.has(name)) continue;
      health.checker?.stop();
      health.detector?.stop();
      this.#clusters.delete(name);
    }
    for (const cluster of wanted.values()) {
      const { healthCheck, outlierDetection } = cluster.config;
      const probeTls = backendTls(cluster.config.tls, tls.clusters[cluster.name]);
      const health = this.#clusters.get(cluster.name) ??
        { checker: undefined, detector: undefined, checkerSettings: "", detectorSettings: "" };
      this.#clusters.set(cluster.name, health);
      const checkerSettings = JSON.stringify(healthCheck ? [healthCheck, probeTls] : null);
      if (checkerSettings !== health.checkerSettings) {
        health.checker?.stop();
        health.checker = healthCheck && new ActiveHealthChecker(cluster, healthCheck, probeTls);
        health.checkerSettings = checkerSettings;
      }
      const detectorSettings = JSON.stringify(outlierDetection ?? null);
      if (detectorSettings !== health.detectorSettings) {
        health.detector?.stop(true);
        health.detector = outlierDetection && new OutlierDetector(cluster, outlierDetection);
        health.detectorSettings = detectorSettings;
      }
    }
  }

  /** Feeds a data plane's batch of passive signals to the clusters' outlier detectors. */
  observeOutcomes(batch: readonly BackendOutcome[]): void {
    for (const outcome of batch) this.#clusters.get(outcome.cluster)?.detector?.observe(outcome);
  }

  /** Stops probing and ejecting. */
  stop(): void {
    for (const health of this.#clusters.values()) {
      health.checker?.stop();
      health.detector?.stop();
    }
  }
}
