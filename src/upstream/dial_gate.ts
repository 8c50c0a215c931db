/**
 * A data plane's cap on upstream dials in flight (its share of the process-wide one). Without it, a membership change that adds
 * tens of thousands of backends opens as many sockets at once: file descriptors run out and
 * the event loop spends all its time on connect attempts, so nothing else (admin, data plane,
 * signals) gets a turn. Dials past the cap wait in FIFO order for a slot.
 * @module
 */

/**
 * Starts a dial that holds a slot. Returns false when the dial was abandoned while it
 * waited (its connection was closed), so the slot passes to the next dial at once.
 */
export type DialStart = () => boolean;

/** Queued dials are compacted out of the array only past this many, to keep dequeue O(1). */
const COMPACT_AFTER = 1_024;

/** At most `limit` dials in flight; the rest start, in order, as slots free. */
export class DialGate {
  readonly #limit: number;
  #inFlight = 0;
  #queue: (DialStart | undefined)[] = [];
  #head = 0;

  /** Allows `limit` (at least 1) dials in flight at once. */
  constructor(limit: number) {
    this.#limit = Math.max(1, limit);
  }

  /** Dials holding a slot now. */
  get inFlight(): number {
    return this.#inFlight;
  }

  /** Dials waiting for a slot (including abandoned ones not yet skipped). */
  get queued(): number {
    return this.#queue.length - this.#head;
  }

  /**
   * Runs `start` now when a slot is free, else once one is. Each started dial must call
   * {@link DialGate.release} exactly once when it settles (connected or failed).
   */
  enter(start: DialStart): void {
    if (this.#inFlight < this.#limit && this.queued === 0) {
      this.#inFlight++;
      if (!start()) this.release();
    } else {
      this.#queue.push(start);
    }
  }

  /** Frees a started dial's slot, handing it to the oldest queued dial that still wants it. */
  release(): void {
    this.#inFlight--;
    while (this.#inFlight < this.#limit && this.queued > 0) {
      const next = this.#queue[this.#head]!;
      this.#queue[this.#head++] = undefined;
      this.#compact();
      this.#inFlight++;
      if (!next()) this.#inFlight--;
    }
  }

  #compact(): void {
    if (this.#head === this.#queue.length) {
      this.#queue = [];
      this.#head = 0;
    } else if (this.#head > COMPACT_AFTER && this.#head * 2 > this.#queue.length) {
      this.#queue = this.#queue.slice(this.#head);
      this.#head = 0;
    }
  }
}
