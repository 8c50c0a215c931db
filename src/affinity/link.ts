/**
 * A data plane's line to the control plane's affinity tables: requests go out as messages,
 * answers come back matched by sequence number. A request nobody answers in time resolves to
 * `undefined`, and the call goes by its policy's pick: a slow or unreachable Redis delays a
 * call by that bound at most, and fails none.
 * @module
 */
import type { AffinityFromDataPlane } from "./messages.ts";

interface Pending {
  readonly resolve: (owner: string | undefined) => void;
  readonly timer: ReturnType<typeof setTimeout>;
}

/** One data plane's requests to the control plane. */
export class AffinityLink {
  readonly #send: (message: AffinityFromDataPlane) => void;
  readonly #pending = new Map<number, Pending>();
  #nextSeq = 1;

  /** Sends through `send` (a worker's `postMessage`, or a direct call in the main thread). */
  constructor(send: (message: AffinityFromDataPlane) => void) {
    this.#send = send;
  }

  /** Requests waiting for their answer. */
  get pending(): number {
    return this.#pending.size;
  }

  /**
   * Asks who owns `id` of `cluster` (see {@link AffinityResolve}); resolves to the owner, or
   * to `undefined` when no answer came within `timeoutMs`.
   */
  resolve(
    cluster: string,
    id: string,
    proposed: string,
    timeoutMs: number,
    expected?: string,
    reason?: string,
  ): Promise<string | undefined> {
    const seq = this.#nextSeq++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => this.answered(seq, undefined), Math.max(0, timeoutMs));
      this.#pending.set(seq, { resolve, timer });
      try {
        this.#send(
          expected === undefined
            ? { kind: "resolve", seq, cluster, id, proposed }
            : { kind: "resolve", seq, cluster, id, proposed, expected, reason },
        );
      } catch {
        // The channel is gone (a closing worker): the policy's pick it is.
        this.answered(seq, undefined);
      }
    });
  }

  /** Reports ids with calls since the last report, so their keys live on. */
  keep(cluster: string, ids: readonly string[]): void {
    try {
      this.#send({ kind: "keep", cluster, ids });
    } catch {
      // Nothing to do: the keys count down, and the next report tries again.
    }
  }

  /** Settles request `seq` with `owner` (an answer), or `undefined` (its timeout). */
  answered(seq: number, owner: string | undefined): void {
    const pending = this.#pending.get(seq);
    if (pending === undefined) return;
    this.#pending.delete(seq);
    clearTimeout(pending.timer);
    pending.resolve(owner);
  }

  /** Settles every request with `undefined` (the data plane closes). */
  close(): void {
    for (const seq of [...this.#pending.keys()]) this.answered(seq, undefined);
  }
}
