/**
 * Policy name → balancer factory. Adding a policy is one new file plus one line here.
 * @module
 */
import { createLeastRequestBalancer } from "./least_request.ts";
import { createPickFirstBalancer } from "./pick_first.ts";
import { createRingHashBalancer } from "./ring_hash.ts";
import { createRoundRobinBalancer } from "./round_robin.ts";
import type { BalancerFactory } from "./types.ts";
import { createWeightedRoundRobinBalancer } from "./weighted_round_robin.ts";

const pickFirst: BalancerFactory = (host, config) =>
  createPickFirstBalancer(host, config.pickFirst);

const FACTORIES: ReadonlyMap<string, BalancerFactory> = new Map<string, BalancerFactory>([
  ["pick_first", pickFirst],
  ["round_robin", (host) => createRoundRobinBalancer(host)],
  ["ring_hash", (host, config) => createRingHashBalancer(host, config.ringHash)],
  ["least_request", (host, config) => createLeastRequestBalancer(host, config.leastRequest)],
  // A composite: one pick_first child per endpoint, built by the same factory.
  [
    "weighted_round_robin",
    (host, config) => createWeightedRoundRobinBalancer(host, config, pickFirst),
  ],
]);

/** The names of all registered policies. */
export function registeredPolicies(): string[] {
  return [...FACTORIES.keys()];
}

/** The factory for `name`, or `undefined` when no such policy is registered. */
export function balancerFactory(name: string): BalancerFactory | undefined {
  return FACTORIES.get(name);
}
