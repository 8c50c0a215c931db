/**
 * The arithmetic of passive ejection (Envoy's outlier detection).
 * @module
 */
import type { OutlierDetectionConfig } from "../config/schema.ts";

/**
 * Whether one more member may be ejected, given how many already are.
 *
 * As in Envoy, `maxEjectionPercent` caps the share of the cluster ejected at a time, but at
 * least one member may always be ejected, so that the default 10% still protects clusters
 * of fewer than ten members. `maxEjectionPercent: 0` is an explicit opt-out: it ejects nothing.
 */
export function mayEject(ejected: number, members: number, maxEjectionPercent: number): boolean {
  if (maxEjectionPercent === 0) return false;
  return ejected === 0 || (ejected + 1) * 100 <= members * maxEjectionPercent;
}

/**
 * How long the `ejections`-th ejection of a member lasts: `baseEjectionTime × ejections`,
 * capped at `maxEjectionTime` (but never below `baseEjectionTime`, as in Envoy).
 */
export function ejectionDurationMs(config: OutlierDetectionConfig, ejections: number): number {
  const cap = Math.max(config.baseEjectionTime, config.maxEjectionTime);
  return Math.min(config.baseEjectionTime * ejections, cap);
}
