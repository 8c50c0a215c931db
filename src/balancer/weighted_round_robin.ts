/**
 * `weighted_round_robin`: round robin in proportion to the members' weights, built as a
 * composite policy. The parent creates one `pick_first` child balancer per endpoint (through
 * the registry's factory, as grpc-go's `endpointsharding` and the `custom_round_robin`
 * example build on `pick_first`), gives each child its own {@link BalancerHost} that records
 * the child's state and picker, aggregates the children's states the way endpointsharding
 * does (READY if any child is READY, else CONNECTING, else IDLE, else TRANSIENT_FAILURE), and
 * publishes a picker that chooses a READY child by weight and delegates the pick to that
 * child's own picker. So a policy builds on child policies through the same interfaces a
 * cluster uses.
 *
 * The schedule is earliest deadline first (EDF), as Envoy's weighted round robin
 * (`EdfScheduler`) and grpc-go's weighted round robin before its static stride scheduler:
 * each child has a deadline that advances by `1 / weight` whenever it is picked, and the
 * child with the earliest deadline is picked next. Over any run each child's share is its
 * weight's share within one pick, picks interleave smoothly (weights 1:2:3 give, e.g.,
 * c b c a c b rather than a b b c c c), and a pick costs O(log n) with a binary heap, against the O(n) scan of
 * NGINX's smooth weighted round robin — it matters for clusters of thousands of Redis members.
 * The heap lives in typed arrays, so a pick allocates nothing. Each picker starts every
 * child at a random phase of its period, so that data planes and proxies do not all begin
 * on the same backend (round_robin's random start, for weights).
 *
 * A member's weight is its snapshot's (config `weights` or its Redis weight key; 1 when
 * unset). A child's pick_first keeps its one endpoint connected, reconnecting it when it is
 * lost; a child that is not READY is simply left out of the schedule until it is again.
 * @module
 */
import {
  type Balancer,
  type BalancerFactory,
  type BalancerHost,
  type BalancerState,
  type ConnectivityState,
  failingPicker,
  type Picker,
  type PickInfo,
  type PickResult,
  type PolicyConfig,
  QUEUE_PICKER,
  type SubConn,
} from "./types.ts";

/** Deadlines are rebased before they lose precision (after about a billion picks). */
const REBASE_AT = 2 ** 30;

/** One endpoint's child balancer and what it last published. */
interface Child {
  readonly subConn: SubConn;
  balancer: Balancer | undefined;
  state: ConnectivityState;
  picker: Picker;
}

/** Earliest-deadline-first over READY children, delegating to each child's picker. */
class EdfPicker implements Picker {
  readonly #pickers: readonly Picker[];
  /** `1 / weight` of each child. */
  readonly #periods: Float64Array;
  readonly #deadlines: Float64Array;
  /** A binary min-heap of child indexes, by (deadline, index). */
  readonly #heap: Int32Array;

  constructor(children: readonly Child[]) {
    const count = children.length;
    this.#pickers = children.map((child) => child.picker);
    this.#periods = new Float64Array(count);
    this.#deadlines = new Float64Array(count);
    this.#heap = new Int32Array(count);
    for (let i = 0; i < count; i++) {
      this.#periods[i] = 1 / children[i].subConn.weight;
      this.#deadlines[i] = Math.random() * this.#periods[i];
      this.#heap[i] = i;
    }
    for (let i = (count >> 1) - 1; i >= 0; i--) this.#siftDown(i);
  }

  pick(info: PickInfo): PickResult {
    const chosen = this.#heap[0];
    const deadlines = this.#deadlines;
    deadlines[chosen] += this.#periods[chosen];
    if (deadlines[chosen] > REBASE_AT) {
      // Subtracting the same amount from every deadline keeps the heap's order.
      let base = Infinity;
      for (let i = 0; i < deadlines.length; i++) base = Math.min(base, deadlines[i]);
      for (let i = 0; i < deadlines.length; i++) deadlines[i] -= base;
    }
    this.#siftDown(0);
    return this.#pickers[chosen].pick(info);
  }

  #before(a: number, b: number): boolean {
    const da = this.#deadlines[a];
    const db = this.#deadlines[b];
    return da < db || (da === db && a < b);
  }

  #siftDown(from: number): void {
    const heap = this.#heap;
    const count = heap.length;
    let at = from;
    for (;;) {
      const left = 2 * at + 1;
      if (left >= count) return;
      const right = left + 1;
      const child = right < count && this.#before(heap[right], heap[left]) ? right : left;
      if (!this.#before(heap[child], heap[at])) return;
      const swap = heap[at];
      heap[at] = heap[child];
      heap[child] = swap;
      at = child;
    }
  }
}

class WeightedRoundRobinBalancer implements Balancer {
  readonly #host: BalancerHost;
  readonly #config: PolicyConfig;
  readonly #childFactory: BalancerFactory;
  /** Children by endpoint, in membership order. */
  #children = new Map<SubConn, Child>();
  /** Child updates during a membership change are published once, at its end. */
  #inhibit = false;
  #closed = false;

  constructor(host: BalancerHost, config: PolicyConfig, childFactory: BalancerFactory) {
    this.#host = host;
    this.#config = config;
    this.#childFactory = childFactory;
  }

  updateSubConns(subConns: readonly SubConn[]): void {
    if (this.#closed) return;
    const before = this.#children;
    const children = new Map<SubConn, Child>();
    this.#inhibit = true;
    try {
      for (const subConn of subConns) {
        const kept = before.get(subConn);
        if (kept) {
          children.set(subConn, kept);
          continue;
        }
        const child: Child = { subConn, balancer: undefined, state: "IDLE", picker: QUEUE_PICKER };
        children.set(subConn, child);
        // The child's pick_first connects its endpoint at once, whose state change comes
        // straight back through updateSubConnState: the child must already be found.
        this.#children = children;
        child.balancer = this.#childFactory(this.#childHost(child), this.#config);
        child.balancer.updateSubConns([subConn]);
      }
      for (const [subConn, child] of before) {
        if (!children.has(subConn)) child.balancer?.close();
      }
      this.#children = children;
    } finally {
      this.#inhibit = false;
    }
    // Also when only weights changed: the schedule is rebuilt from them.
    this.#publish();
  }

  updateSubConnState(subConn: SubConn, state: ConnectivityState): void {
    if (this.#closed) return;
    this.#children.get(subConn)?.balancer?.updateSubConnState(subConn, state);
  }

  close(): void {
    this.#closed = true;
    for (const child of this.#children.values()) child.balancer?.close();
    this.#children.clear();
  }

  /** The host a child publishes through: it records the child's state and tells the parent. */
  #childHost(child: Child): BalancerHost {
    return {
      updateState: (state: BalancerState) => {
        child.state = state.state;
        child.picker = state.picker;
        if (!this.#inhibit && !this.#closed && this.#children.get(child.subConn) === child) {
          this.#publish();
        }
      },
    };
  }

  #publish(): void {
    const ready: Child[] = [];
    let connecting = 0;
    let idle = 0;
    for (const child of this.#children.values()) {
      if (child.state === "READY") ready.push(child);
      else if (child.state === "CONNECTING") connecting++;
      else if (child.state === "IDLE") idle++;
    }
    if (ready.length > 0) {
      this.#host.updateState({ state: "READY", picker: new EdfPicker(ready) });
    } else if (connecting > 0 || idle > 0) {
      this.#host.updateState({
        state: connecting > 0 ? "CONNECTING" : "IDLE",
        picker: QUEUE_PICKER,
      });
    } else {
      const count = this.#children.size;
      const message = count === 0 ? "no backends" : `all ${count} backends unavailable`;
      this.#host.updateState({ state: "TRANSIENT_FAILURE", picker: failingPicker(message) });
    }
  }
}

/**
 * Builds a `weighted_round_robin` balancer whose per-endpoint children come from
 * `childFactory` (the registry passes `pick_first`'s) with the same `config`.
 */
export function createWeightedRoundRobinBalancer(
  host: BalancerHost,
  config: PolicyConfig,
  childFactory: BalancerFactory,
): Balancer {
  return new WeightedRoundRobinBalancer(host, config, childFactory);
}
