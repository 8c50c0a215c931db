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
import { createReadySetBalancer } from "./ready_set.ts";
import type {
  Balancer,
  BalancerHost,
  LeastRequestConfig,
  Picker,
  PickResult,
  SubConn,
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

/** Builds a `least_request` balancer. */
export function createLeastRequestBalancer(
  host: BalancerHost,
  config: LeastRequestConfig = {},
): Balancer {
  const choiceCount = Math.max(2, config.choiceCount ?? DEFAULT_CHOICE_COUNT);
  return createReadySetBalancer(host, (ready) => new LeastRequestPicker(ready, choiceCount));
}
