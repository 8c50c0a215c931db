/**
 * Config reloads as the admin API and metrics report them, and the parts of a config that a
 * reload cannot change in a running process.
 * @module
 */
import type { Config } from "./schema.ts";
import type { TlsMaterial } from "./tls.ts";

/** A config read afresh for a reload, with the PEM files it names. */
export interface LoadedConfig {
  /** The validated config. */
  readonly config: Config;
  /** Every PEM it names, read and checked. */
  readonly tls: TlsMaterial;
  /** Deprecations that still work. */
  readonly warnings: readonly string[];
}

/** The outcome of one reload. */
export type ReloadResult =
  | {
    readonly ok: true;
    /** What changed, by top-level section or cluster (`clusters.orders`, `routes`, …). */
    readonly changed: readonly string[];
    /** Settings that only a restart applies, kept at their running values. */
    readonly warnings: readonly string[];
  }
  | {
    readonly ok: false;
    /** Why nothing changed: one `path: reason` line per problem. */
    readonly errors: readonly string[];
  };

/** Every reload so far. */
export interface ReloadStatus {
  /** Reloads that applied, and that changed nothing because they failed. */
  readonly successes: number;
  readonly failures: number;
  /** Epoch ms of the last reload that applied; the start time before any. */
  readonly lastSuccessAt: number;
  /** The errors of the last reload, when it failed. */
  readonly lastErrors: readonly string[] | undefined;
}

/** Top-level settings a running process keeps until it restarts. */
const RESTART_ONLY = ["workers", "admin", "metrics", "log"] as const;

/**
 * `next` with the settings only a restart applies kept as in `running`; `warnings` gets a
 * line for each one that differed.
 */
export function keepRestartOnly(running: Config, next: Config, warnings: string[]): Config {
  const kept: Record<string, unknown> = { ...next };
  for (const field of RESTART_ONLY) {
    if (JSON.stringify(running[field]) === JSON.stringify(next[field])) continue;
    warnings.push(`${field}: changes apply at the next restart; the running value is kept`);
    kept[field] = running[field];
  }
  return kept as Config;
}

/** The top-level sections, and the clusters, that differ between two configs. */
export function changedSections(before: Config, after: Config): string[] {
  const changed: string[] = [];
  const keys = new Set([...Object.keys(before), ...Object.keys(after)]) as Set<keyof Config>;
  for (const key of keys) {
    if (key === "clusters") continue;
    if (JSON.stringify(before[key]) !== JSON.stringify(after[key])) changed.push(key);
  }
  const names = new Set([...Object.keys(before.clusters), ...Object.keys(after.clusters)]);
  for (const name of names) {
    if (JSON.stringify(before.clusters[name]) !== JSON.stringify(after.clusters[name])) {
      changed.push(`clusters.${name}`);
    }
  }
  return changed;
}
