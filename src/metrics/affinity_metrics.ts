/**
 * Affinity tables in `/metrics`: the control plane's entries and claims, and each data
 * plane's lookups by result. Every family is registered whether or not a cluster keeps a
 * table, so dashboards and `docs/metrics.md` see the same families on every proxy.
 * @module
 */
import { Counter, Gauge, type Registry } from "prom-client";
import type { AffinityStatus } from "../affinity/table.ts";
import type { UpstreamCluster } from "../upstream/upstream_cluster.ts";

/** Registers the control plane's affinity series: each table's entries and claims. */
export function registerAffinityMetrics(
  registry: Registry,
  tables: () => Iterable<AffinityStatus>,
): void {
  new Gauge({
    name: "switchyard_affinity_entries",
    help: "Ids the control plane holds in each cluster's affinity table (with store redis: " +
      "this proxy's cache of the table).",
    labelNames: ["cluster"] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const table of tables()) this.set({ cluster: table.cluster }, table.entries);
    },
  });
  new Counter({
    name: "switchyard_affinity_claims_total",
    help: "Ids this proxy moved from an unusable owner (removed, drained, ejected, unhealthy, " +
      "unreachable) to another backend.",
    labelNames: ["cluster"] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const table of tables()) this.inc({ cluster: table.cluster }, table.claims);
    },
  });
}

/** Registers a data plane's affinity lookups, by `result`: `hit` or `miss`. */
export function registerAffinityLookupMetrics(
  registry: Registry,
  clusters: ReadonlyMap<string, UpstreamCluster>,
): void {
  new Counter({
    name: "switchyard_affinity_lookups_total",
    help: "Calls with an affinity id, by result: hit (went to the cached, usable owner at " +
      "once) or miss (an unknown id, or an owner not usable in this worker).",
    labelNames: ["cluster", "result"] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const cluster of clusters.values()) {
        const counters = cluster.affinity?.counters;
        if (counters === undefined) continue;
        this.inc({ cluster: cluster.name, result: "hit" }, counters.hit);
        this.inc({ cluster: cluster.name, result: "miss" }, counters.miss);
      }
    },
  });
}
