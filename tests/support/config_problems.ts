/**
 * What the config loader says about a config: its `path: message` lines, for tests of
 * validation that name the field.
 * @module
 */
import { registeredPolicies } from "../../src/balancer/registry.ts";
import { ConfigError, parseConfig } from "../../src/config/load.ts";

/** The `path: message` lines the loader reports for `raw`; none when it loads. */
export function configProblems(raw: Record<string, unknown>): readonly string[] {
  try {
    parseConfig(raw, "test", { pickers: registeredPolicies() });
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  return [];
}

/** The lines the loader reports for a config whose one cluster, `c`, has `cluster`. */
export function clusterProblems(cluster: Record<string, unknown>): readonly string[] {
  return configProblems({ clusters: { c: cluster }, routes: [{ cluster: "c" }] });
}
