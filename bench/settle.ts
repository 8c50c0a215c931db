/**
 * Waiting for a reading to stop changing: a ledger that still records the calls a previous run
 * cut off, or a proxy's RSS while it finishes serving new connections.
 * @module
 */

/** How to wait in {@link settled}. */
export interface SettleOptions {
  /** Pause between reads, ms. */
  readonly intervalMs: number;
  /** Give up after this many reads and return the last. */
  readonly maxReads: number;
}

/** Reads `read` every `intervalMs` until two consecutive reads `agree`; returns the last read. */
export async function settled<T>(
  read: () => Promise<T>,
  agree: (previous: T, current: T) => boolean,
  { intervalMs, maxReads }: SettleOptions,
): Promise<T> {
  let previous = await read();
  for (let reads = 1; reads < maxReads; reads++) {
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
    const current = await read();
    if (agree(previous, current)) return current;
    previous = current;
  }
  return previous;
}
