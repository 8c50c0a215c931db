/**
 * A benchmark target: where calls are sent for each backend, and which process (if any)
 * is the proxy whose CPU and memory are measured.
 * @module
 */
import type { CallLedger } from "../ledger.ts";
import type { BackendKind } from "../scenarios.ts";

/** Every target name, in table order. */
export const TARGET_NAMES = ["direct", "switchyard-baseline", "switchyard", "nginx"] as const;

/** A target name. */
export type TargetName = typeof TARGET_NAMES[number];

/** Backend addresses by kind. */
export type BackendAddresses = Readonly<Record<BackendKind, string>>;

/** A running target. */
export interface Target {
  /** Its name. */
  readonly name: TargetName;
  /** `host:port` that reaches `backend` through this target. */
  address(backend: BackendKind): string;
  /** Where this target records every call to `backend`; undefined when nothing does. */
  ledger(backend: BackendKind): CallLedger | undefined;
  /** The proxy process to sample; undefined for `direct`. */
  readonly proxyPid?: number;
  /** Stops the proxy (and so writes a CPU profile, when one was asked for). */
  stop(): Promise<void>;
}

/**
 * The baseline: calls go straight to the backends. With no proxy to lose trailers, its ledger
 * is the fast backend's count of the calls it finished with trailers (`fastLedger`).
 */
export function directTarget(backends: BackendAddresses, fastLedger: CallLedger): Target {
  return {
    name: "direct",
    address: (backend) => backends[backend],
    ledger: (backend) => backend === "fast" ? fastLedger : undefined,
    stop: () => Promise.resolve(),
  };
}
