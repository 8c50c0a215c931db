/**
 * What data planes and the control plane say to each other about affinity tables. The table
 * lives in the control plane (it owns the Redis connections); each data plane keeps a cache
 * and asks only on a miss or a claim. Everything is plain data (structured clone).
 * @module
 */

/**
 * A data plane asks who owns `id`: on a miss (no `expected`), `proposed` (its policy's pick)
 * is recorded unless the id has an owner; on a claim (`expected`: the owner it found
 * unusable, for `reason`), `proposed` replaces `expected` unless another owner was recorded
 * meanwhile. The answer repeats `seq`.
 */
export interface AffinityResolve {
  /** Tag. */
  readonly kind: "resolve";
  /** Repeated in the answer. */
  readonly seq: number;
  /** The cluster's name. */
  readonly cluster: string;
  /** The call's affinity id. */
  readonly id: string;
  /** The data plane's pick, `host:port`. */
  readonly proposed: string;
  /** A claim: the owner the data plane found unusable. */
  readonly expected?: string;
  /** A claim: why the owner is unusable (for the log). */
  readonly reason?: string;
}

/** Ids that had calls since the previous report: their keys' TTL is extended. */
export interface AffinityKeep {
  /** Tag. */
  readonly kind: "keep";
  /** The cluster's name. */
  readonly cluster: string;
  /** The ids. */
  readonly ids: readonly string[];
}

/** Messages from a data plane to the control plane. */
export type AffinityFromDataPlane = AffinityResolve | AffinityKeep;

/** The control plane's answer to an {@link AffinityResolve}. */
export interface AffinityAnswer {
  /** Tag. */
  readonly kind: "answer";
  /** The request's `seq`. */
  readonly seq: number;
  /** The cluster's name. */
  readonly cluster: string;
  /** The id asked about. */
  readonly id: string;
  /** Its owner, `host:port`. */
  readonly owner: string;
}

/**
 * Owners that changed (a claim, another proxy's record through pub/sub, a key found to name
 * another owner): data planes update the ids they cache and ignore the others.
 */
export interface AffinityUpdates {
  /** Tag. */
  readonly kind: "updates";
  /** `[cluster, id, owner]` triples, in the order they happened. */
  readonly updates: readonly (readonly [cluster: string, id: string, owner: string])[];
}

/** Messages from the control plane to a data plane. */
export type AffinityToDataPlane = AffinityAnswer | AffinityUpdates;
