/**
 * Fakes for testing balancers in-process, as grpc-go's balancer tests drive a fake
 * ClientConn: subconns whose state, load and weight the test sets, and a host that records
 * every published state.
 * @module
 */
import {
  type Balancer,
  type BalancerHost,
  type BalancerState,
  type ConnectivityState,
  NO_PICK_INFO,
  type PickInfo,
  type SubConn,
} from "../../src/balancer/types.ts";

/** A backend whose state, load and weight the test sets; it records what was asked of it. */
export class FakeSubConn implements SubConn {
  readonly address: string;
  state: ConnectivityState = "IDLE";
  activeStreams = 0;
  weight: number;
  connects = 0;
  disconnects = 0;
  #balancer: Balancer | undefined;

  constructor(address: string, weight = 1) {
    this.address = address;
    this.weight = weight;
  }

  /** Reports state changes to `balancer` from now on. */
  bind(balancer: Balancer): void {
    this.#balancer = balancer;
  }

  /** Like a real pool: IDLE → CONNECTING on connect, reported to the balancer at once. */
  connect(): void {
    this.connects++;
    if (this.state === "IDLE") this.set("CONNECTING");
  }

  /** Like a real pool: stops wanting a connection and goes IDLE. */
  disconnect(): void {
    this.disconnects++;
    this.set("IDLE");
  }

  /** Moves to `state` and tells the bound balancer. */
  set(state: ConnectivityState): void {
    if (state === this.state) return;
    this.state = state;
    this.#balancer?.updateSubConnState(this, state);
  }
}

/** Records every published state. */
export class FakeHost implements BalancerHost {
  readonly states: BalancerState[] = [];

  updateState(state: BalancerState): void {
    this.states.push(state);
  }

  /** The latest published state. */
  get last(): BalancerState {
    return this.states[this.states.length - 1];
  }

  /** Where a call with `info` goes now: an address, "queue", or "fail". */
  pick(info: PickInfo = NO_PICK_INFO): string {
    const result = this.last.picker.pick(info);
    return result.kind === "complete" ? result.subConn.address : result.kind;
  }
}
