/**
 * `least_request`: the power of `choiceCount` choices over READY members (gRFC A48, Envoy's
 * least request load balancer, whose default `choice_count` is 2). Each pick samples
 * `choiceCount` READY members at random (with replacement, as A48 and Envoy do) and takes the
 * one with the fewest streams in flight in this data plane; ties go to the first sampled.
 * Two choices already avoid the herd behaviour of a global "least loaded" pick (every data
 * plane piling onto the same idle backend) while sending far less to loaded backends than
 * random or round robin. Streams are counted while they are open, so for long-lived streams
 * this balances streams rather than calls ("least streams").
 *
 * Weights are not used: A48 has none, and Envoy's weighted variant is a different algorithm.
 * Every member is kept connected, as for `round_robin`.
 * @module
 */
import {
  type Balancer,
  type BalancerHost,
  type ConnectivityState,
  failingPicker,
  type LeastRequestConfig,
  type Picker,
  type PickResult,
  QUEUE_PICKER,
  type SubConn,
} from "./types.ts";

/** A48's and Envoy's default. */
const DEFAULT_CHOICE_COUNT = 2;

/** Samples `choiceCount` READY members per pick and takes the least loaded. */
class LeastRequestPicker implements Picker {
  readonly #ready: readonly SubConn[];
  readonly #results: readonly PickResult[];
  readonly #choiceCount: number;

  constructor(ready: readonly SubConn[], choiceCount: number) {
    this.#ready = ready;
    this.#results = ready.map((subConn) => ({ kind: "complete", subConn }));
    this.#choiceCount = choiceCount;
  }

  pick(): PickResult {
    const ready = this.#ready;
    const count = ready.length;
    let best = Math.floor(Math.random() * count);
    let bestLoad = ready[best].activeStreams;
    for (let choice = 1; choice < this.#choiceCount; choice++) {
      const candidate = Math.floor(Math.random() * count);
      const load = ready[candidate].activeStreams;
      if (load < bestLoad) {
        best = candidate;
        bestLoad = load;
      }
    }
    return this.#results[best];
  }
}

class LeastRequestBalancer implements Balancer {
  readonly #host: BalancerHost;
  readonly #choiceCount: number;
  #subConns: readonly SubConn[] = [];
  #members = new Set<SubConn>();

  constructor(host: BalancerHost, config: LeastRequestConfig) {
    this.#host = host;
    this.#choiceCount = Math.max(2, config.choiceCount ?? DEFAULT_CHOICE_COUNT);
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

  #publish(): void {
    const ready = this.#subConns.filter((subConn) => subConn.state === "READY");
    if (ready.length > 0) {
      const picker = new LeastRequestPicker(ready, this.#choiceCount);
      this.#host.updateState({ state: "READY", picker });
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

/** Builds a `least_request` balancer. */
export function createLeastRequestBalancer(
  host: BalancerHost,
  config: LeastRequestConfig = {},
): Balancer {
  return new LeastRequestBalancer(host, config);
}
