/**
 * Validating the members that a Redis set lists.
 * @module
 */
import { parseHostPort } from "../config/address.ts";

/** Set members split into usable addresses and everything else. */
export interface PartitionedMembers {
  /** Members that are valid `host:port`, sorted. */
  readonly valid: string[];
  /** Members that are not, sorted. */
  readonly invalid: string[];
}

/** Splits raw set members into valid `host:port` addresses and invalid entries. */
export function partitionMembers(members: readonly string[]): PartitionedMembers {
  const valid: string[] = [];
  const invalid: string[] = [];
  for (const member of members) (parseHostPort(member) ? valid : invalid).push(member);
  return { valid: valid.sort(), invalid: invalid.sort() };
}

/**
 * Remembers which items were already reported, so a condition that persists across polls
 * (an invalid member, a missing heartbeat) is logged once rather than every few seconds.
 */
export class NewArrivals {
  #seen = new Set<string>();

  /** Replaces the current items and returns those that were not present last time. */
  update(current: readonly string[]): string[] {
    const fresh = current.filter((item) => !this.#seen.has(item));
    this.#seen = new Set(current);
    return fresh;
  }
}
