/**
 * `ring_hash`: consistent hashing on a ring, with the semantics of gRFC A42 and Envoy's ring
 * hash load balancer. A call's hash (from the cluster's `hashKey`, {@link PickInfo.hash})
 * picks the first ring entry at or after it; the same key reaches the same backend from every
 * data plane and every proxy, since the ring depends only on the members' addresses and
 * weights and the config.
 *
 * The ring: each member's entries are the xxHash32s of `"<address>_0"`, `"<address>_1"`, …
 * (A42 and Envoy hash `address_i` likewise), sorted. A member of weight `w` gets `w × P`
 * entries, P being the entries per unit of weight. Here Switchyard departs from A42 on
 * purpose. A42 sizes the whole ring to about `minRingSize` for the current members, so every
 * member's entry count shrinks when one joins (342 → 256 each when a fourth joins three), and
 * the keys on the entries that vanish move between the old members: about a third of all
 * keys move where a quarter should. Switchyard keeps P fixed, so a member's entries depend only
 * on its own address and weight, and a member that joins moves only the keys that fall on
 * its own arcs, about `w / total weight` of them (the minimal disruption consistent hashing
 * is for). P is what A42 gives each member of a three-member cluster, `⌈minRingSize / 3⌉`
 * (342 by default: each member's share is then within about ±5 % of its fair share, one
 * standard deviation). The ring holds `P × total weight` entries until that would exceed
 * `maxRingSize`; past it P shrinks as in A42 (`maxRingSize / total weight`, fractional, so
 * some members may get one entry fewer), and joins move some keys between old members again.
 *
 * Picking (A42's picker): the entry for the hash is found by binary search; if its member is
 * READY it is chosen, otherwise the walk goes on round the ring to the next READY member
 * (so an unusable owner's keys go to its successor and come back when it recovers). An IDLE
 * member passed on the way is asked to connect. The balancer queues calls while nothing is
 * READY but something is connecting, and fails them when every member is in
 * TRANSIENT_FAILURE. A call without a hash walks from a random point, as gRPC does: a random
 * READY member, in proportion to ring share (so to weight).
 *
 * Unlike gRPC's lazily connecting ring_hash, every member is kept connected, as Envoy keeps
 * a pool for every host: a proxy fronts a modest set of backends, and a key whose owner is
 * not yet connected would otherwise be served elsewhere first.
 * @module
 */
import { hashString } from "./hash.ts";
import {
  type Balancer,
  type BalancerHost,
  type ConnectivityState,
  failingPicker,
  type Picker,
  type PickInfo,
  type PickResult,
  QUEUE_PICKER,
  type RingHashConfig,
  type SubConn,
} from "./types.ts";

/** A42's default `minRingSize`. */
const DEFAULT_MIN_RING_SIZE = 1024;
/** A42's default `maxRingSize` (gRPC's cap; Envoy's default is 8M). */
const DEFAULT_MAX_RING_SIZE = 4096;
/** Entries per unit of weight are what A42 gives each member of a cluster this large. */
const REFERENCE_MEMBERS = 3;
/** 2^32: a random hash for calls without one. */
const HASH_SPACE = 4_294_967_296;
/** Packing a ring entry as `hash × 2^21 + member` keeps it exact in a double (32 + 21 bits). */
const MEMBER_BITS_SPACE = 2_097_152;

/** A built ring: entry hashes in ascending order, and the member index of each entry. */
export interface Ring {
  /** Entry hashes, ascending. */
  readonly hashes: Uint32Array;
  /** `members[owners[i]]` owns entry `i`. */
  readonly owners: Uint32Array;
}

/** What a ring is built from: a member's address and weight. */
export interface RingMember {
  /** `host:port`, hashed as `"<address>_<i>"`. */
  readonly address: string;
  /** A positive integer. */
  readonly weight: number;
}

/**
 * Builds the ring for `members` (see the module comment for the sizing); owners are indexes
 * into `members`. The ring does not depend on the members' order: they are laid out by
 * address, which also orders entries with equal hashes, so every proxy builds the same ring
 * however its membership arrived.
 */
export function buildRing(members: readonly RingMember[], config: RingHashConfig = {}): Ring {
  const minRingSize = config.minRingSize ?? DEFAULT_MIN_RING_SIZE;
  const maxRingSize = Math.max(minRingSize, config.maxRingSize ?? DEFAULT_MAX_RING_SIZE);
  let totalWeight = 0;
  for (const member of members) totalWeight += member.weight;
  if (totalWeight === 0) return { hashes: new Uint32Array(0), owners: new Uint32Array(0) };
  const perWeight = Math.min(Math.ceil(minRingSize / REFERENCE_MEMBERS), maxRingSize / totalWeight);
  // As A42: a running target, so that fractional shares round consistently.
  const size = Math.ceil(perWeight * totalWeight);
  const byAddress = [...members.keys()].sort((a, b) =>
    compareStrings(members[a].address, members[b].address) || a - b
  );
  const hashes = new Uint32Array(size);
  const owners = new Uint32Array(size);
  let count = 0;
  let target = 0;
  for (let rank = 0; rank < byAddress.length; rank++) {
    const { address, weight } = members[byAddress[rank]];
    target += perWeight * weight;
    for (let i = 0; count < target && count < size; i++, count++) {
      hashes[count] = hashString(`${address}_${i}`);
      owners[count] = rank;
    }
  }
  const ring = { hashes: hashes.subarray(0, count), owners: owners.subarray(0, count) };
  sortRing(ring.hashes, ring.owners, members.length);
  for (let i = 0; i < count; i++) ring.owners[i] = byAddress[ring.owners[i]];
  return ring;
}

/** Code-unit order, the same everywhere (unlike `localeCompare`). */
function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Sorts entries by (hash, member) in place. */
function sortRing(hashes: Uint32Array, owners: Uint32Array, memberCount: number): void {
  if (memberCount <= MEMBER_BITS_SPACE) {
    // One native numeric sort of packed doubles: fast even for 8M entries.
    const packed = new Float64Array(hashes.length);
    for (let i = 0; i < packed.length; i++) packed[i] = hashes[i] * MEMBER_BITS_SPACE + owners[i];
    packed.sort();
    for (let i = 0; i < packed.length; i++) {
      const hash = Math.floor(packed[i] / MEMBER_BITS_SPACE);
      hashes[i] = hash;
      owners[i] = packed[i] - hash * MEMBER_BITS_SPACE;
    }
    return;
  }
  const order = Array.from(hashes.keys()).sort((a, b) =>
    hashes[a] - hashes[b] || owners[a] - owners[b]
  );
  const sortedHashes = order.map((i) => hashes[i]);
  const sortedOwners = order.map((i) => owners[i]);
  hashes.set(sortedHashes);
  owners.set(sortedOwners);
}

/** The index of the first entry whose hash is at least `hash`, wrapping past the end to 0. */
function ringIndex(hashes: Uint32Array, hash: number): number {
  let low = 0;
  let high = hashes.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (hashes[middle] < hash) low = middle + 1;
    else high = middle;
  }
  return low === hashes.length ? 0 : low;
}

const READY = 0;
const CONNECTING = 1;
const IDLE = 2;
const FAILED = 3;

function stateCode(state: ConnectivityState): number {
  if (state === "READY") return READY;
  if (state === "CONNECTING") return CONNECTING;
  return state === "IDLE" ? IDLE : FAILED;
}

/** Walks the ring from the call's hash to the first READY member. */
class RingHashPicker implements Picker {
  readonly #hashes: Uint32Array;
  readonly #owners: Uint32Array;
  readonly #members: readonly SubConn[];
  readonly #results: readonly PickResult[];
  /** The members' states when the picker was published ({@link stateCode}). */
  readonly #states: Uint8Array;
  /** Members this picker has already asked to connect. */
  readonly #connectAsked: Uint8Array;
  readonly #noneReady: PickResult;

  constructor(
    ring: Ring,
    members: readonly SubConn[],
    results: readonly PickResult[],
    states: Uint8Array,
  ) {
    this.#hashes = ring.hashes;
    this.#owners = ring.owners;
    this.#members = members;
    this.#results = results;
    this.#states = states;
    this.#connectAsked = new Uint8Array(members.length);
    this.#noneReady = states.some((state) => state === CONNECTING || state === IDLE)
      ? { kind: "queue" }
      : { kind: "fail", message: "no ready backend on the hash ring" };
  }

  pick(info: PickInfo): PickResult {
    const hashes = this.#hashes;
    const length = hashes.length;
    const hash = info.hash ?? Math.floor(Math.random() * HASH_SPACE);
    let at = ringIndex(hashes, hash);
    for (let step = 0; step < length; step++) {
      const owner = this.#owners[at];
      const state = this.#states[owner];
      if (state === READY) return this.#results[owner];
      if (state === IDLE) this.#askToConnect(owner);
      if (++at === length) at = 0;
    }
    return this.#noneReady;
  }

  /** A42: an IDLE member on the walk is asked to connect; after the pick, not inside it. */
  #askToConnect(owner: number): void {
    if (this.#connectAsked[owner] === 1) return;
    this.#connectAsked[owner] = 1;
    const member = this.#members[owner];
    queueMicrotask(() => member.connect());
  }
}

class RingHashBalancer implements Balancer {
  readonly #host: BalancerHost;
  readonly #config: RingHashConfig;
  #members: readonly SubConn[] = [];
  #indexes = new Map<SubConn, number>();
  #results: readonly PickResult[] = [];
  #ring: Ring = { hashes: new Uint32Array(0), owners: new Uint32Array(0) };
  /** The addresses and weights the ring was built from. */
  #ringKey = "";
  /** Connecting members reports states back synchronously; publish once, after. */
  #quiet = false;
  #closed = false;

  constructor(host: BalancerHost, config: RingHashConfig) {
    this.#host = host;
    this.#config = config;
  }

  updateSubConns(subConns: readonly SubConn[]): void {
    if (this.#closed) return;
    this.#members = subConns;
    this.#indexes = new Map(subConns.map((subConn, index) => [subConn, index]));
    this.#results = subConns.map((subConn) => ({ kind: "complete", subConn }));
    // The ring changes only with the addresses or weights, not with states.
    const key = subConns.map((subConn) => `${subConn.address}*${subConn.weight}`).join(" ");
    if (key !== this.#ringKey) {
      this.#ring = buildRing(subConns, this.#config);
      this.#ringKey = key;
    }
    this.#quiet = true;
    try {
      for (const subConn of subConns) if (subConn.state === "IDLE") subConn.connect();
    } finally {
      this.#quiet = false;
    }
    this.#publish();
  }

  updateSubConnState(subConn: SubConn, state: ConnectivityState): void {
    if (this.#closed || !this.#indexes.has(subConn)) return;
    if (state === "IDLE" && !this.#quiet) {
      this.#quiet = true;
      try {
        subConn.connect();
      } finally {
        this.#quiet = false;
      }
    }
    if (!this.#quiet) this.#publish();
  }

  close(): void {
    this.#closed = true;
    this.#members = [];
    this.#indexes.clear();
  }

  #publish(): void {
    const members = this.#members;
    const states = new Uint8Array(members.length);
    let ready = 0;
    let connecting = 0;
    for (let i = 0; i < members.length; i++) {
      const code = stateCode(members[i].state);
      states[i] = code;
      if (code === READY) ready++;
      else if (code !== FAILED) connecting++;
    }
    if (ready > 0) {
      const picker = new RingHashPicker(this.#ring, members, this.#results, states);
      this.#host.updateState({ state: "READY", picker });
    } else if (connecting > 0) {
      this.#host.updateState({ state: "CONNECTING", picker: QUEUE_PICKER });
    } else {
      const message = members.length === 0
        ? "no backends"
        : `all ${members.length} backends unavailable`;
      this.#host.updateState({ state: "TRANSIENT_FAILURE", picker: failingPicker(message) });
    }
  }
}

/** Builds a `ring_hash` balancer. */
export function createRingHashBalancer(host: BalancerHost, config: RingHashConfig = {}): Balancer {
  return new RingHashBalancer(host, config);
}
