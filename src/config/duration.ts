/**
 * Human-readable durations ("250ms", "5s", "1m", "1h") as used throughout `config.json`.
 * @module
 */

const UNIT_MS: Readonly<Record<string, number>> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 };

/**
 * A duration as written in the config, surrounding whitespace allowed; also the `pattern` the
 * published JSON Schema gives every duration, so editors flag `"5 s"` as the loader does.
 */
export const DURATION_PATTERN: RegExp = /^\s*(\d+(?:\.\d+)?)(ms|s|m|h)\s*$/;

/** Parses a duration such as `"250ms"` or `"1.5s"` into milliseconds, or returns `undefined`. */
export function parseDuration(text: string): number | undefined {
  const match = DURATION_PATTERN.exec(text);
  if (!match) return undefined;
  return Math.round(Number(match[1]) * UNIT_MS[match[2]]);
}

/** Writes whole milliseconds back in the largest unit that divides them: `300000` → `"5m"`. */
export function formatDuration(ms: number): string {
  for (const unit of ["h", "m", "s"]) {
    if (ms !== 0 && ms % UNIT_MS[unit] === 0) return `${ms / UNIT_MS[unit]}${unit}`;
  }
  return `${ms}ms`;
}
