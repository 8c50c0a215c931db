/**
 * Policy name → balancer factory. Adding a policy is one new file plus one line here.
 * @module
 */
import { createPickFirstBalancer } from "./pick_first.ts";
import { createRoundRobinBalancer } from "./round_robin.ts";
import type { BalancerFactory } from "./types.ts";

const FACTORIES: ReadonlyMap<string, BalancerFactory> = new Map<string, BalancerFactory>([
  ["pick_first", (host, config) => createPickFirstBalancer(host, config.pickFirst)],
  ["round_robin", (host) => createRoundRobinBalancer(host)],
]);

/** The names of all registered policies. */
export function registeredPolicies(): string[] {
  return [...FACTORIES.keys()];
}

/** The factory for `name`, or `undefined` when no such policy is registered. */
export function balancerFactory(name: string): BalancerFactory | undefined {
  return FACTORIES.get(name);
}
