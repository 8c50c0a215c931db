/**
 * Every affinity cache of one data plane: built and dropped as the config's clusters gain or
 * lose `affinity`, fed by the control plane's answers and updates, and read by stats and
 * metrics. Clusters without `affinity` get nothing, and their calls pay nothing.
 * @module
 */
import type { UpstreamCluster } from "../upstream/upstream_cluster.ts";
import { type AffinityCounters, ClusterAffinity } from "./cluster_affinity.ts";
import { AffinityLink } from "./link.ts";
import type { AffinityFromDataPlane, AffinityToDataPlane } from "./messages.ts";

/** One cluster's affinity counts in one data plane, as stats report them. */
export interface AffinityStats {
  /** Ids this data plane caches. */
  readonly entries: number;
  /** Calls that went to their cached, usable owner. */
  readonly hits: number;
  /** Calls that did not: an unknown id, or an owner not usable here. */
  readonly misses: number;
}

/** A data plane's affinity caches. */
export class DataPlaneAffinity {
  readonly #link: AffinityLink;
  readonly #tables = new Map<string, ClusterAffinity>();
  /** Per cluster name, so that a reload that rebuilds a cache does not reset a counter. */
  readonly #counters = new Map<string, AffinityCounters>();

  /**
   * Talks to the control plane through `send`; without one (a data plane built alone, in
   * tests), every call for an unknown id goes by the policy.
   */
  constructor(send: ((message: AffinityFromDataPlane) => void) | undefined) {
    this.#link = new AffinityLink(
      send ?? (() => {
        throw new Error("no control plane");
      }),
    );
  }

  /**
   * Gives each cluster of `clusters` the cache its config asks for: kept while its settings
   * stay the same, rebuilt (empty) when they change, dropped with `affinity` or the cluster.
   */
  sync(clusters: ReadonlyMap<string, UpstreamCluster>): void {
    for (const [name, table] of this.#tables) {
      const cluster = clusters.get(name);
      const config = cluster?.config.affinity;
      if (config !== undefined && JSON.stringify(config) === JSON.stringify(table.config)) continue;
      table.close();
      this.#tables.delete(name);
      if (cluster === undefined) this.#counters.delete(name);
    }
    for (const [name, cluster] of clusters) {
      const config = cluster.config.affinity;
      if (config === undefined) {
        cluster.affinity = undefined;
        continue;
      }
      let table = this.#tables.get(name);
      if (table === undefined) {
        let counters = this.#counters.get(name);
        if (counters === undefined) this.#counters.set(name, counters = { hit: 0, miss: 0 });
        table = new ClusterAffinity(name, config, this.#link, counters);
        this.#tables.set(name, table);
      }
      cluster.affinity = table;
    }
  }

  /** Takes a message of the control plane's. */
  receive(message: AffinityToDataPlane): void {
    if (message.kind === "answer") {
      // Cached first, so that the calls the answer wakes find it there.
      this.#tables.get(message.cluster)?.learn(message.id, message.owner);
      this.#link.answered(message.seq, message.owner);
      return;
    }
    for (const [cluster, id, owner] of message.updates) {
      this.#tables.get(cluster)?.update(id, owner);
    }
  }

  /** A cluster's counts, or `undefined` when it keeps no affinity table. */
  stats(cluster: string): AffinityStats | undefined {
    const table = this.#tables.get(cluster);
    if (table === undefined) return undefined;
    return { entries: table.entries, hits: table.counters.hit, misses: table.counters.miss };
  }

  /** Stops every keep tick; waiting calls go by the policy. */
  close(): void {
    for (const table of this.#tables.values()) table.close();
    this.#tables.clear();
    this.#link.close();
  }
}
