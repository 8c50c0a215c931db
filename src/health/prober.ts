/**
 * Probes one cluster member on a timer and feeds the verdicts to its cluster.
 * @module
 */
import type { Backend, HealthStatus } from "../cluster/backend.ts";
import type { Cluster } from "../cluster/cluster.ts";
import type { HealthCheckConfig } from "../config/schema.ts";
import type { BackendTls } from "../config/tls.ts";
import { componentLogger } from "../log/logger.ts";
import { type CheckResult, HealthCheckClient } from "./check_client.ts";
import { HealthVerdict, type ProbeOutcome } from "./verdict.ts";

const log = componentLogger("health");

/** The active health checks of one member: one in flight at a time, then `interval` + jitter. */
export class BackendProber {
  readonly #cluster: Cluster;
  readonly #backend: Backend;
  readonly #config: HealthCheckConfig;
  readonly #client: HealthCheckClient;
  readonly #verdict: HealthVerdict;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #warnedUnimplemented = false;
  #stopped = false;

  /** Prepares the probe channel (over `tls`, as calls go); nothing is sent until {@link start}. */
  constructor(
    cluster: Cluster,
    backend: Backend,
    config: HealthCheckConfig,
    tls: BackendTls | undefined,
  ) {
    this.#cluster = cluster;
    this.#backend = backend;
    this.#config = config;
    this.#verdict = new HealthVerdict(config);
    this.#client = new HealthCheckClient(backend.address, {
      service: config.service,
      authority: config.authority,
      timeoutMs: config.timeout,
      maxReconnectBackoffMs: config.interval,
      tls,
    });
  }

  /** Checks at once (a new member should not wait an interval for its first verdict). */
  start(): void {
    this.#probe();
  }

  /** Stops the timer, cancels a check in flight and closes the channel. */
  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#client.close();
  }

  async #probe(): Promise<void> {
    const result = await this.#client.check();
    if (this.#stopped) return;
    this.#apply(this.#outcomeOf(result));
    const delay = this.#config.interval + Math.random() * this.#config.jitter;
    this.#timer = setTimeout(() => this.#probe(), delay);
  }

  #outcomeOf(result: CheckResult): ProbeOutcome {
    switch (result.kind) {
      case "serving":
        return { kind: "pass" };
      case "rejected":
        return { kind: "fail", immediate: true, reason: `status ${result.reason}` };
      case "error":
        return { kind: "fail", immediate: false, reason: result.reason };
      case "unimplemented":
        if (this.#config.whenUnimplemented === "unhealthy") {
          return { kind: "fail", immediate: true, reason: "no health service (UNIMPLEMENTED)" };
        }
        this.#warnOnceUnimplemented();
        return { kind: "pass" };
    }
  }

  #warnOnceUnimplemented(): void {
    if (this.#warnedUnimplemented) return;
    this.#warnedUnimplemented = true;
    log.warn(
      "backend {address} of {cluster} has no health service (UNIMPLEMENTED); " +
        "treating it as healthy (whenUnimplemented)",
      { cluster: this.#cluster.name, address: this.#backend.address },
    );
  }

  #apply(outcome: ProbeOutcome): void {
    const detail = this.#backend.healthDetail;
    detail.lastCheckAt = Date.now();
    if (outcome.kind === "pass") {
      detail.checksPassed++;
      detail.lastError = undefined;
    } else {
      detail.checksFailed++;
      detail.lastError = outcome.reason;
    }
    const before = this.#verdict.health;
    const after = this.#verdict.record(outcome);
    const address = this.#backend.address;
    log.debug("check of {address} of {cluster}: {result}", {
      cluster: this.#cluster.name,
      address,
      result: outcome.kind === "pass" ? "passed" : outcome.reason,
    });
    if (after === before) return;
    const reason = this.#transitionReason(outcome, before);
    detail.lastTransitionReason = reason;
    const fields = { cluster: this.#cluster.name, address, reason };
    if (after === "healthy") {
      log.info("backend {address} of {cluster} is healthy: {reason}", fields);
    } else {
      log.warn("backend {address} of {cluster} is unhealthy: {reason}", fields);
    }
    this.#cluster.setHealth(address, after);
  }

  #transitionReason(outcome: ProbeOutcome, before: HealthStatus): string {
    if (outcome.kind === "pass") {
      return before === "unknown"
        ? "first check passed"
        : `${this.#config.healthyThreshold} consecutive checks passed`;
    }
    const failures = this.#verdict.consecutiveFailures;
    return failures > 1 ? `${outcome.reason} (${failures} consecutive failures)` : outcome.reason;
  }
}
