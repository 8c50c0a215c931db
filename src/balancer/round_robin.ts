/**
 * `round_robin`: cycles over READY backends, starting at a random index (gRPC semantics).
 * Every member is kept connected so that it can join the rotation as soon as it is READY.
 * @module
 */
import {
  type Balancer,
  type BalancerHost,
  type ConnectivityState,
  failingPicker,
  type Picker,
  type PickResult,
  QUEUE_PICKER,
  type SubConn,
} from "./types.ts";

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

class RoundRobinBalancer implements Balancer {
  readonly #host: BalancerHost;
  #subConns: readonly SubConn[] = [];

  constructor(host: BalancerHost) {
    this.#host = host;
  }

  updateSubConns(subConns: readonly SubConn[]): void {
    this.#subConns = subConns;
    for (const subConn of subConns) if (subConn.state === "IDLE") subConn.connect();
    this.#publish();
  }

  updateSubConnState(subConn: SubConn, state: ConnectivityState): void {
    if (!this.#subConns.includes(subConn)) return;
    if (state === "IDLE") subConn.connect();
    this.#publish();
  }

  close(): void {
    this.#subConns = [];
  }

  #publish(): void {
    const ready = this.#subConns.filter((subConn) => subConn.state === "READY");
    if (ready.length > 0) {
      this.#host.updateState({ state: "READY", picker: new RoundRobinPicker(ready) });
    } else if (this.#subConns.some((s) => s.state === "CONNECTING" || s.state === "IDLE")) {
      this.#host.updateState({ state: "CONNECTING", picker: QUEUE_PICKER });
    } else {
      const message = this.#subConns.length === 0
        ? "no backends"
        : `all ${this.#subConns.length} backends unavailable`;
      this.#host.updateState({ state: "TRANSIENT_FAILURE", picker: failingPicker(message) });
    }
  }
}

/** Builds a `round_robin` balancer. */
export function createRoundRobinBalancer(host: BalancerHost): Balancer {
  return new RoundRobinBalancer(host);
}
