/**
 * A task that never runs concurrently with itself and folds bursts of requests into one
 * extra run, so a flood of keyspace events costs at most two reads.
 * @module
 */

/** Runs `task` on request, serially; requests during a run trigger exactly one more run. */
export class SerialTask {
  readonly #task: () => Promise<void>;
  #running: Promise<void> | undefined;
  #again = false;

  /** Wraps `task`; it must not throw (report failures inside it). */
  constructor(task: () => Promise<void>) {
    this.#task = task;
  }

  /** Asks for a run; resolves once a run that started after this request has finished. */
  request(): Promise<void> {
    if (this.#running) {
      this.#again = true;
      return this.#running;
    }
    this.#running = this.#loop().finally(() => this.#running = undefined);
    return this.#running;
  }

  async #loop(): Promise<void> {
    do {
      this.#again = false;
      await this.#task();
    } while (this.#again);
  }
}
