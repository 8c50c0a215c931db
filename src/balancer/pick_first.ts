/**
 * `pick_first`: sends every call to the first backend, in list order, that connects, and
 * stays on it while it is usable (gRPC semantics, as in grpc-go's `pickfirst`).
 *
 * When the selected backend stops being READY the balancer walks the list again from the
 * start. Members already in TRANSIENT_FAILURE are skipped; they keep reconnecting with
 * backoff on their own, and the first of them to become READY is selected. Only when every
 * member has failed does the cluster report TRANSIENT_FAILURE and fail calls fast.
 * @module
 */
import {
  type Balancer,
  type BalancerHost,
  failingPicker,
  type Picker,
  QUEUE_PICKER,
  type SubConn,
} from "./types.ts";

function stickyPicker(subConn: SubConn): Picker {
  const result = { kind: "complete", subConn } as const;
  return { pick: () => result };
}

class PickFirstBalancer implements Balancer {
  readonly #host: BalancerHost;
  #subConns: readonly SubConn[] = [];
  #selected: SubConn | undefined;

  constructor(host: BalancerHost) {
    this.#host = host;
  }

  updateSubConns(subConns: readonly SubConn[]): void {
    this.#subConns = subConns;
    if (this.#selected && !subConns.includes(this.#selected)) this.#selected = undefined;
    this.#reconcile();
  }

  updateSubConnState(subConn: SubConn): void {
    if (this.#subConns.includes(subConn)) this.#reconcile();
  }

  close(): void {
    this.#subConns = [];
    this.#selected = undefined;
  }

  #reconcile(): void {
    if (this.#selected?.state === "READY") {
      this.#host.updateState({ state: "READY", picker: stickyPicker(this.#selected) });
      return;
    }
    this.#selected = undefined;
    for (const subConn of this.#subConns) {
      if (subConn.state === "READY") {
        this.#selected = subConn;
        this.#host.updateState({ state: "READY", picker: stickyPicker(subConn) });
        return;
      }
      if (subConn.state === "TRANSIENT_FAILURE") continue;
      subConn.connect();
      this.#host.updateState({ state: "CONNECTING", picker: QUEUE_PICKER });
      return;
    }
    const message = this.#subConns.length === 0
      ? "no backends"
      : `all ${this.#subConns.length} backends failed`;
    this.#host.updateState({ state: "TRANSIENT_FAILURE", picker: failingPicker(message) });
  }
}

/** Builds a `pick_first` balancer. */
export function createPickFirstBalancer(host: BalancerHost): Balancer {
  return new PickFirstBalancer(host);
}
