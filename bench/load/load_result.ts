/**
 * What a load run reports, whichever generator produced it.
 * @module
 */

/** The outcome of one timed load run. */
export interface LoadResult {
  /** Which generator ran. */
  readonly generator: "h2load" | "builtin";
  /** Calls that completed (successfully or not). */
  readonly calls: number;
  /** Calls that failed: a bad grpc-status, a missing trailer, wrong messages, a reset. */
  readonly failures: number;
  /** The first failure, for the report. */
  readonly firstError?: string;
  /** Wall time of the measured period, seconds. */
  readonly elapsedS: number;
  /** Response body bytes (gRPC frames included). */
  readonly responseBytes: number;
  /** Per-call latency percentiles, ms (undefined when the generator gives none). */
  readonly p50Ms?: number;
  /** See {@link p50Ms}. */
  readonly p99Ms?: number;
}

/** The `q`-quantile (0..1) of ascending `sorted` values, nearest rank. */
export function quantile(sorted: ArrayLike<number>, q: number): number | undefined {
  if (sorted.length === 0) return undefined;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[rank];
}
