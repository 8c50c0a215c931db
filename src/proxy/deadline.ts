/**
 * The `grpc-timeout` header: `1*8DIGIT` followed by a unit (H, M, S, m, u, n).
 * @module
 */

const UNIT_MS: Readonly<Record<string, number>> = {
  H: 3_600_000,
  M: 60_000,
  S: 1_000,
  m: 1,
  u: 1e-3,
  n: 1e-6,
};
const TIMEOUT_PATTERN = /^(\d{1,8})([HMSmun])$/;
const MAX_DIGITS_VALUE = 99_999_999;

/** The longest delay a timer can wait; longer ones fire at once (2^31-1 ms, ~24.8 days). */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** Parses `grpc-timeout` into milliseconds; `undefined` when the header is malformed. */
export function parseGrpcTimeout(value: string): number | undefined {
  const match = TIMEOUT_PATTERN.exec(value);
  return match ? Number(match[1]) * UNIT_MS[match[2]] : undefined;
}

/** Formats a remaining time for the upstream `grpc-timeout` (millisecond precision). */
export function formatGrpcTimeout(ms: number): string {
  const whole = Math.max(0, Math.ceil(ms));
  if (whole <= MAX_DIGITS_VALUE) return `${whole}m`;
  return `${Math.min(MAX_DIGITS_VALUE, Math.ceil(whole / 1000))}S`;
}
