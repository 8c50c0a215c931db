/**
 * `round_robin`: cycles over READY backends, starting at a random index (gRPC semantics).
 * Every member is kept connected so that it can join the rotation as soon as it is READY.
 * @module
 */
import { createReadySetBalancer } from "./ready_set.ts";
import type { Balancer, BalancerHost, Picker, PickResult, SubConn } from "./types.ts";

/** Picks READY backends in turn; the list is fixed for the picker's lifetime. */
class RoundRobinPicker implements Picker {
  readonly #results: readonly PickResult[];
  #next: number;

  constructor(ready: readonly SubConn[]) {
    this.#results = ready.map((subConn) => ({ kind: "complete", subConn }));
    this.#next = Math.floor(Math.random() * ready.length);
  }

  pick(): PickResult {
    const result = this.#results[this.#next];
    this.#next = (this.#next + 1) % this.#results.length;
    return result;
  }
}

/** Builds a `round_robin` balancer. */
export function createRoundRobinBalancer(host: BalancerHost): Balancer {
  return createReadySetBalancer(host, (ready) => new RoundRobinPicker(ready));
}
