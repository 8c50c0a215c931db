/**
 * What the control plane tells the data plane about a cluster: an immutable snapshot of its
 * members and their verdicts. It is plain data, so it crosses to worker threads by
 * structured clone, and every data plane that applies the same snapshot has the same members
 * in the same order, the same verdicts and the same policy. (Pickers that randomize on
 * purpose, `round_robin`'s start and `pick_first`'s shuffle, still do so per data plane, as
 * separate gRPC channels do.)
 * @module
 */
import type { ConnectivityState } from "../balancer/types.ts";

/** Active health: `unknown` until the first check answers (or forever, with no checks). */
export type HealthStatus = "unknown" | "healthy" | "unhealthy";

/** One member's verdicts, as every data plane applies them. */
export interface BackendSnapshot {
  /** `host:port`. */
  readonly address: string;
  /** Drained by an operator: no new calls, in-flight calls finish. */
  readonly drained: boolean;
  /** The latest active-health verdict. */
  readonly health: HealthStatus;
  /** Held out by passive outlier detection. */
  readonly ejected: boolean;
  /** Why the latest health or ejection change happened, for UNAVAILABLE messages. */
  readonly reason: string | undefined;
}

/** One cluster's membership and policy at one moment. */
export interface ClusterSnapshot {
  /** The cluster's name in `config.json`. */
  readonly cluster: string;
  /** The load-balancing policy. */
  readonly policy: string;
  /** The panic threshold overrides health: route over every connected member. */
  readonly panic: boolean;
  /** The members, in membership order (pickers depend on it). */
  readonly backends: readonly BackendSnapshot[];
}

/**
 * A member's effective state, which is all a balancer sees: its connectivity folded with
 * its verdicts. In panic (Envoy's panic threshold) verdicts are ignored.
 */
export function effectiveState(
  connectivity: ConnectivityState,
  backend: BackendSnapshot,
  panic: boolean,
): ConnectivityState {
  if (connectivity !== "READY" || panic) return connectivity;
  if (backend.ejected || backend.health === "unhealthy") return "TRANSIENT_FAILURE";
  return backend.health === "unknown" ? "CONNECTING" : "READY";
}
