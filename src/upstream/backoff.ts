/**
 * Jittered exponential backoff, as in gRPC's connection-backoff spec.
 * @module
 */
import type { BackoffConfig } from "../config/schema.ts";

/** Tracks consecutive failures and yields the next delay. */
export class Backoff {
  #attempt = 0;
  readonly #config: BackoffConfig;

  /** Creates a backoff from validated settings (durations in ms). */
  constructor(config: BackoffConfig) {
    this.#config = config;
  }

  /** The delay before the next attempt; each call grows the base delay up to `max`. */
  nextDelayMs(): number {
    const { initial, max, multiplier, jitter } = this.#config;
    const base = Math.min(max, initial * multiplier ** this.#attempt);
    this.#attempt++;
    return Math.max(0, Math.round(base * (1 + jitter * (Math.random() * 2 - 1))));
  }

  /** Starts over after a success. */
  reset(): void {
    this.#attempt = 0;
  }
}
