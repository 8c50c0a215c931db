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
  /**
   * The load-balancing weight, from the config's `weights` or the member's Redis weight key;
   * absent means 1 (as Envoy's `load_balancing_weight`), which keeps snapshots of unweighted
   * clusters as small as before.
   */
  readonly weight?: number;
}

/** The largest backend weight accepted, from config or Redis. */
export const MAX_WEIGHT = 1_000_000;

/**
 * A weight as Redis stores it (`<set>:w:<host:port>`): a whole number from 1 to
 * {@link MAX_WEIGHT} in decimal, surrounding spaces allowed; `undefined` for anything else.
 */
export function parseWeight(text: string): number | undefined {
  const trimmed = text.trim();
  if (!/^[1-9][0-9]{0,6}$/.test(trimmed)) return undefined;
  const weight = Number(trimmed);
  return weight <= MAX_WEIGHT ? weight : undefined;
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
