/**
 * Health-check, ejection and Redis metrics. The health checker and outlier detector keep
 * running totals on each backend (`Backend.healthDetail`); these metrics read them at scrape
 * time rather than hooking into the checkers. A backend that leaves takes its series with
 * it, which Prometheus treats as a counter reset.
 * @module
 */
import { Counter, Gauge, type Registry } from "prom-client";
import type { RedisDiscoveryStatus } from "../discovery/redis_discovery.ts";
import { backendCounter, backendsWithLabels, type ClusterSource } from "./state_metrics.ts";

/** Registers the health and Redis metrics on `registry`. */
export function registerHealthMetrics(
  registry: Registry,
  clusters: ClusterSource,
  redisStatus: () => RedisDiscoveryStatus | undefined,
): void {
  new Counter({
    name: "switchyard_health_checks_total",
    help: "Active health checks by result (passed or failed).",
    labelNames: ["cluster", "backend", "result"] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const [backend, labels] of backendsWithLabels(clusters)) {
        this.inc({ ...labels, result: "passed" }, backend.healthDetail.checksPassed);
        this.inc({ ...labels, result: "failed" }, backend.healthDetail.checksFailed);
      }
    },
  });
  backendCounter(registry, clusters, {
    name: "switchyard_ejections_total",
    help: "Times outlier detection ejected each backend.",
    value: (backend) => backend.healthDetail.ejections,
  });
  new Gauge({
    name: "switchyard_redis_connected",
    help: "1 while the Redis discovery connection can send commands (Sentinel: to the " +
      "master; Redis Cluster: to every master); 0 when it is down or unused.",
    registers: [registry],
    collect() {
      this.reset();
      const status = redisStatus();
      if (status) this.set(status.connected ? 1 : 0);
    },
  });
}
