/**
 * A benchmark target: where calls are sent for each backend, and which process (if any)
 * is the proxy whose CPU and memory are measured.
 * @module
 */
import type { CallLedger } from "../ledger.ts";
import type { BackendKind } from "../scenarios.ts";

/**
 * Every target `--targets` selects, in table order; `switchyard` also selects every
 * `switchyard-w<N>` that `--workers` runs in its place. `switchyard-traced` (Switchyard with
 * Deno's OpenTelemetry on, see `switchyard_traced.ts`) runs only when `--targets` names it.
 */
export const TARGET_NAMES = [
  "direct",
  "switchyard-baseline",
  "switchyard",
  "switchyard-traced",
  "nginx",
] as const;

/** A target `--targets` selects. */
export type TargetKind = typeof TARGET_NAMES[number];

/** A target name: a {@link TargetKind}, or `switchyard-w<N>` for Switchyard with N workers. */
export type TargetName = TargetKind | `switchyard-w${number}`;

/** The name of the Switchyard target with `workers` workers, one of those `--workers` runs. */
export function switchyardWorkersName(workers: number): TargetName {
  return `switchyard-w${workers}`;
}

/** Whether `name` is a Switchyard target: this checkout (any worker count) or the baseline. */
export function isSwitchyard(name: TargetName): boolean {
  return name.startsWith("switchyard");
}

/** Backend addresses by kind. */
export type BackendAddresses = Readonly<Record<BackendKind, string>>;

/** Where a target takes calls, and its record of them. */
export interface Endpoint {
  /** `host:port`. */
  readonly address: string;
  /** What records every call it finishes; undefined when nothing does. */
  readonly ledger?: CallLedger;
}

/** A running target. */
export interface Target {
  /** Its name. */
  readonly name: TargetName;
  /** `host:port` that reaches `backend` through this target. */
  address(backend: BackendKind): string;
  /** Where this target records every call to `backend`; undefined when nothing does. */
  ledger(backend: BackendKind): CallLedger | undefined;
  /**
   * Its gRPC-Web listener (routed like {@link address}), whose ledger counts gRPC-Web calls
   * only; undefined when it has none (only this checkout's Switchyard has one).
   */
  readonly grpcWeb?: Endpoint;
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
