/**
 * The balancer `round_robin` and `least_request` share, as grpc-go's `balancer/base`: every
 * member is kept connected, and each change publishes the aggregate state with a picker over
 * the READY members. A policy of this kind is only its picker (a {@link PickerBuilder}).
 * @module
 */
import {
  type Balancer,
  type BalancerHost,
  type ConnectivityState,
  failingPicker,
  type Picker,
  QUEUE_PICKER,
  type SubConn,
} from "./types.ts";

/** Builds the picker over the READY members, which are never empty (grpc-go's PickerBuilder). */
export type PickerBuilder = (ready: readonly SubConn[]) => Picker;

/** Keeps every member connected and publishes a picker over the READY ones. */
class ReadySetBalancer implements Balancer {
  readonly #host: BalancerHost;
  readonly #build: PickerBuilder;
  #subConns: readonly SubConn[] = [];
  #members = new Set<SubConn>();

  constructor(host: BalancerHost, build: PickerBuilder) {
    this.#host = host;
    this.#build = build;
  }

  updateSubConns(subConns: readonly SubConn[]): void {
    this.#subConns = subConns;
    this.#members = new Set(subConns);
    for (const subConn of subConns) if (subConn.state === "IDLE") subConn.connect();
    this.#publish();
  }

  updateSubConnState(subConn: SubConn, state: ConnectivityState): void {
    if (!this.#members.has(subConn)) return;
    if (state === "IDLE") subConn.connect();
    this.#publish();
  }

  close(): void {
    this.#subConns = [];
    this.#members.clear();
  }

  /** READY when any member is; CONNECTING while one may still be; else TRANSIENT_FAILURE. */
  #publish(): void {
    const ready = this.#subConns.filter((subConn) => subConn.state === "READY");
    if (ready.length > 0) {
      this.#host.updateState({ state: "READY", picker: this.#build(ready) });
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

/** A balancer that publishes `build`'s pickers over the READY members. */
export function createReadySetBalancer(host: BalancerHost, build: PickerBuilder): Balancer {
  return new ReadySetBalancer(host, build);
}
