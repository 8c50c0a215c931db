/**
 * Passive ejection of one cluster's members whose calls keep failing. It learns of calls
 * through the data planes' folded {@link BackendOutcome}s; only failures the backend caused
 * count, and any call the backend itself answered otherwise resets the streak. Ejection is
 * decided here, once, for every data plane.
 * @module
 */
import type { Backend } from "../cluster/backend.ts";
import type { Cluster } from "../cluster/cluster.ts";
import type { OutlierDetectionConfig } from "../config/schema.ts";
import { componentLogger } from "../log/logger.ts";
import { ejectionDurationMs, mayEject } from "./ejection_policy.ts";
import type { BackendOutcome } from "./outcomes.ts";

const log = componentLogger("health");

/** Counts consecutive backend failures per member and ejects the outliers for a while. */
export class OutlierDetector {
  readonly #cluster: Cluster;
  readonly #config: OutlierDetectionConfig;
  readonly #streaks = new Map<Backend, number>();
  readonly #readmitTimers = new Map<Backend, ReturnType<typeof setTimeout>>();
  #stopped = false;

  /** Follows the cluster's membership so that departed members are forgotten. */
  constructor(cluster: Cluster, config: OutlierDetectionConfig) {
    this.#cluster = cluster;
    this.#config = config;
    cluster.addListener({ onBackendRemoved: (backend) => this.#forget(backend) });
  }

  /**
   * Accounts one backend's calls, folded by a data plane: it decides as it would have call
   * by call, since only the runs of failures between resets matter.
   */
  observe(outcome: BackendOutcome): void {
    if (this.#stopped) return;
    const backend = this.#cluster.backend(outcome.backend);
    // Calls that were already in flight when the member was ejected prove nothing new.
    if (!backend || backend.ejected) return;
    const continued = (this.#streaks.get(backend) ?? 0) + outcome.leading;
    if (!outcome.reset) return this.#account(backend, continued);
    const worst = Math.max(continued, outcome.longest);
    // A run that reached the threshold before a reset ejects; the rest then proves nothing.
    if (worst >= this.#config.consecutiveFailures && this.#eject(backend, worst)) return;
    this.#account(backend, outcome.trailing);
  }

  /**
   * Cancels readmission timers. Ejected members stay out until the cluster closes, unless
   * `readmit` (a reload replaced the detector): then they are readmitted now, since no timer
   * would ever readmit them.
   */
  stop(readmit = false): void {
    this.#stopped = true;
    for (const timer of this.#readmitTimers.values()) clearTimeout(timer);
    this.#readmitTimers.clear();
    this.#streaks.clear();
    if (!readmit) return;
    for (const backend of this.#cluster.backends()) {
      if (backend.ejected) this.#cluster.setEjectedUntil(backend.address, 0);
    }
  }

  /** Records a member's current streak, ejecting it at the threshold. */
  #account(backend: Backend, streak: number): void {
    if (streak >= this.#config.consecutiveFailures && this.#eject(backend, streak)) return;
    // Refused at the ejection limit, the streak stands: the next failure tries again.
    if (streak === 0) this.#streaks.delete(backend);
    else this.#streaks.set(backend, streak);
  }

  /** Ejects a member unless too many are out already; true when it was ejected. */
  #eject(backend: Backend, streak: number): boolean {
    const members = this.#cluster.backends();
    const ejected = members.filter((member) => member.ejected).length;
    const fields = { cluster: this.#cluster.name, address: backend.address, streak };
    if (!mayEject(ejected, members.length, this.#config.maxEjectionPercent)) {
      log.debug("not ejecting {address} of {cluster} after {streak} failures: at the limit", {
        ...fields,
        maxEjectionPercent: this.#config.maxEjectionPercent,
      });
      return false;
    }
    const detail = backend.healthDetail;
    detail.ejections++;
    const durationMs = ejectionDurationMs(this.#config, detail.ejections);
    detail.lastTransitionReason =
      `ejected for ${durationMs}ms after ${streak} consecutive failures`;
    log.warn("backend {address} of {cluster} ejected: {reason}", {
      ...fields,
      reason: detail.lastTransitionReason,
      ejections: detail.ejections,
    });
    this.#streaks.delete(backend);
    this.#cluster.setEjectedUntil(backend.address, Date.now() + durationMs);
    this.#readmitTimers.set(backend, setTimeout(() => this.#readmit(backend), durationMs));
    return true;
  }

  #readmit(backend: Backend): void {
    this.#readmitTimers.delete(backend);
    backend.healthDetail.lastTransitionReason = "ejection time over";
    log.info("backend {address} of {cluster} readmitted: {reason}", {
      cluster: this.#cluster.name,
      address: backend.address,
      reason: backend.healthDetail.lastTransitionReason,
    });
    this.#cluster.setEjectedUntil(backend.address, 0);
  }

  #forget(backend: Backend): void {
    clearTimeout(this.#readmitTimers.get(backend));
    this.#readmitTimers.delete(backend);
    this.#streaks.delete(backend);
  }
}
