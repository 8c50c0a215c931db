/**
 * One timer for many deadlines. Call deadlines, idle, SETTINGS, keepalive and send timeouts
 * all sit in one binary heap of intrusive entries, and a single `setTimeout` is armed for the
 * earliest, so arming or cancelling a deadline allocates nothing and a call costs no timer
 * of its own.
 * @module
 */

/** Something with a deadline; the queue keeps its bookkeeping in the entry itself. */
export interface TimerEntry {
  /** Epoch ms when {@link TimerEntry.onTimer} is due; written by the queue. */
  timerAt: number;
  /** Position in the heap, -1 when not queued, -2 while due; written by the queue. */
  timerIndex: number;
  /** Runs once when due. The entry is out of the queue by then and may re-arm itself. */
  onTimer(now: number): void;
}

/** `timerIndex` of an entry taken out of the heap to run in the current pass. */
const DUE = -2;

/** Node-style timers fire at once past 2^31-1 ms; longer delays are re-armed in steps. */
const MAX_DELAY_MS = 2 ** 31 - 1;

/** A min-heap of {@link TimerEntry} keyed by `timerAt`, driven by one host timer. */
export class TimerQueue {
  readonly #heap: TimerEntry[] = [];
  #timer: ReturnType<typeof setTimeout> | undefined;
  #armedAt = Infinity;

  /** How many entries are queued. */
  get size(): number {
    return this.#heap.length;
  }

  /** Queues `entry` at `at` (epoch ms), moving it if it was queued already. */
  schedule(entry: TimerEntry, at: number): void {
    if (entry.timerIndex >= 0) {
      const before = entry.timerAt;
      entry.timerAt = at;
      if (at < before) this.#up(entry.timerIndex);
      else this.#down(entry.timerIndex);
    } else {
      entry.timerAt = at;
      entry.timerIndex = this.#heap.length;
      this.#heap.push(entry);
      this.#up(entry.timerIndex);
    }
    if (at < this.#armedAt) this.#arm();
  }

  /**
   * Makes `entry` run no later than `at`: queued at `at` unless it is already due sooner,
   * or due in the pass now running (then it runs in this pass, as planned).
   */
  scheduleNoLaterThan(entry: TimerEntry, at: number): void {
    if (entry.timerIndex === DUE || (entry.timerIndex >= 0 && entry.timerAt <= at)) return;
    this.schedule(entry, at);
  }

  /** Removes `entry` if queued. The host timer is left as is; an early wake-up finds nothing. */
  cancel(entry: TimerEntry): void {
    const index = entry.timerIndex;
    if (index < 0) {
      entry.timerIndex = -1; // a due entry cancelled before its turn does not run
      return;
    }
    entry.timerIndex = -1;
    const last = this.#heap.pop()!;
    if (index < this.#heap.length) {
      this.#heap[index] = last;
      last.timerIndex = index;
      this.#up(index);
      this.#down(last.timerIndex);
    }
    if (this.#heap.length === 0) this.#disarm();
  }

  #arm(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    const at = this.#heap[0].timerAt;
    this.#armedAt = at;
    const delay = Math.min(Math.max(0, at - Date.now()), MAX_DELAY_MS);
    this.#timer = setTimeout(TimerQueue.#fire, delay, this);
  }

  #disarm(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#armedAt = Infinity;
  }

  static #fire(queue: TimerQueue): void {
    queue.#timer = undefined;
    queue.#armedAt = Infinity;
    const heap = queue.#heap;
    const now = Date.now();
    // Take every entry due now before running any: an entry that re-arms itself at or before
    // `now` runs on the next pass, never in a loop within this one.
    const due: TimerEntry[] = [];
    while (heap.length > 0 && heap[0].timerAt <= now) {
      const entry = heap[0];
      queue.cancel(entry);
      entry.timerIndex = DUE;
      due.push(entry);
    }
    try {
      for (const entry of due) {
        // Another entry of this pass may have cancelled or moved it.
        if (entry.timerIndex !== DUE) continue;
        entry.timerIndex = -1;
        try {
          entry.onTimer(now);
        } catch (error) {
          // One entry's failure must not stall every other deadline in the process.
          queueMicrotask(() => {
            throw error;
          });
        }
      }
    } finally {
      if (heap.length > 0 && queue.#timer === undefined) queue.#arm();
    }
  }

  #up(index: number): void {
    const heap = this.#heap;
    const entry = heap[index];
    while (index > 0) {
      const parentIndex = (index - 1) >> 1;
      const parent = heap[parentIndex];
      if (parent.timerAt <= entry.timerAt) break;
      heap[index] = parent;
      parent.timerIndex = index;
      index = parentIndex;
    }
    heap[index] = entry;
    entry.timerIndex = index;
  }

  #down(index: number): void {
    const heap = this.#heap;
    const entry = heap[index];
    const count = heap.length;
    for (;;) {
      let child = 2 * index + 1;
      if (child >= count) break;
      if (child + 1 < count && heap[child + 1].timerAt < heap[child].timerAt) child++;
      if (heap[child].timerAt >= entry.timerAt) break;
      heap[index] = heap[child];
      heap[index].timerIndex = index;
      index = child;
    }
    heap[index] = entry;
    entry.timerIndex = index;
  }
}

/** The queue of this thread's data plane (each worker thread has its own). */
export const timers: TimerQueue = new TimerQueue();
