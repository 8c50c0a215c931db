/**
 * The pickers that see the call (`ring_hash`, `least_request`, `weighted_round_robin`), the
 * hash behind them, and backend weights: in-process against a fake host and fake subconns
 * whose states and loads the test sets, as grpc-go's balancer tests drive a fake ClientConn.
 * Redis weight keys are read from a real `redis-server`.
 */
import assert from "node:assert/strict";
import { hashString, xxHash32 } from "../src/balancer/hash.ts";
import { parseHashKey, requestHash } from "../src/balancer/hash_policy.ts";
import { createLeastRequestBalancer } from "../src/balancer/least_request.ts";
import { createPickFirstBalancer } from "../src/balancer/pick_first.ts";
import { balancerFactory, registeredPolicies } from "../src/balancer/registry.ts";
import { buildRing, createRingHashBalancer } from "../src/balancer/ring_hash.ts";
import type {
  Balancer,
  BalancerFactory,
  BalancerHost,
  PickInfo,
  RingHashConfig,
  SubConn,
} from "../src/balancer/types.ts";
import { createWeightedRoundRobinBalancer } from "../src/balancer/weighted_round_robin.ts";
import { Cluster } from "../src/cluster/cluster.ts";
import type { ClusterSnapshot } from "../src/cluster/snapshot.ts";
import { configSchema } from "../src/config/schema.ts";
import { RedisDiscovery } from "../src/discovery/redis_discovery.ts";
import { weightKey } from "../src/discovery/keys.ts";
import { GRPC_JS, waitFor } from "./support/harness.ts";
import { startRedis } from "./support/redis.ts";
import { clusterProblems } from "./support/config_problems.ts";
import { FakeHost, FakeSubConn } from "./support/fake_balancer.ts";

// --- fakes ------------------------------------------------------------------------------------

/** A call with request hash `hash` (reused, as the relay's call object is). */
function keyed(hash: number | undefined): PickInfo {
  return { method: "/test.Test/Echo", headers: [], hash };
}

interface Setup {
  readonly host: FakeHost;
  readonly subConns: FakeSubConn[];
  readonly balancer: Balancer;
}

/** A balancer over `subConns` (bound to it), all made READY unless `ready` is false. */
function setup(
  factory: (host: BalancerHost) => Balancer,
  subConns: FakeSubConn[],
  ready = true,
): Setup {
  const host = new FakeHost();
  const balancer = factory(host);
  for (const subConn of subConns) subConn.bind(balancer);
  balancer.updateSubConns(subConns);
  if (ready) { for (const subConn of subConns) subConn.set("READY"); }
  return { host, subConns, balancer };
}

/** `count` members b1…bN at 10.0.0.i:50051 (fixed addresses: the ring is deterministic). */
function members(count: number, weights: readonly number[] = []): FakeSubConn[] {
  return Array.from(
    { length: count },
    (_, i) => new FakeSubConn(`10.0.0.${i + 1}:50051`, weights[i] ?? 1),
  );
}

function ringHash(subConns: FakeSubConn[], config: RingHashConfig = {}): Setup {
  return setup((host) => createRingHashBalancer(host, config), subConns);
}

/** The hashes of 10,000 client ids, as `hashKey: "header:x-client-id"` computes them. */
const KEYS: readonly number[] = Array.from(
  { length: 10_000 },
  (_, i) =>
    requestHash({ kind: "header", name: "x-client-id" }, ["x-client-id", `client-${i}`], "")!,
);

/** The address each key goes to. */
function owners(host: FakeHost, keys: readonly number[] = KEYS): string[] {
  return keys.map((hash) => host.pick(keyed(hash)));
}

function tally(picks: readonly string[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const pick of picks) counts.set(pick, (counts.get(pick) ?? 0) + 1);
  return counts;
}

function percent(part: number, whole: number): string {
  return `${(100 * part / whole).toFixed(2)}%`;
}

/** Replaces Math.random with `values` in turn for the length of `body`. */
function withRandom<T>(values: readonly number[], body: () => T): T {
  const original = Math.random;
  let next = 0;
  Math.random = () => values[next++ % values.length];
  try {
    return body();
  } finally {
    Math.random = original;
  }
}

// --- the hash -------------------------------------------------------------------------------

Deno.test("xxHash32 matches the reference vectors, over UTF-8, without allocating", () => {
  // XXH32 with seed 0, from the reference implementation's test vectors.
  assert.equal(hashString(""), 0x02cc5d05);
  assert.equal(hashString("a"), 0x550d7456);
  assert.equal(hashString("abc"), 0x32d153ff);
  assert.equal(hashString("Nobody inspects the spammish repetition"), 0xe2293b2f);
  const encoder = new TextEncoder();
  for (const text of ["héllo wörld", "✓ 😀 ok", "a".repeat(1000), "lone \ud800 surrogate"]) {
    assert.equal(hashString(text), xxHash32(encoder.encode(text)), text);
  }
  assert.equal(hashString("xx-client-7-yy", 3, 11), hashString("client-7"), "a range hashes alone");
});

Deno.test("hashKey: the header's first value, or the client's IP in either spelling", () => {
  const header = parseHashKey("header:x-client-id")!;
  assert.deepEqual(header, { kind: "header", name: "x-client-id" });
  const headers = ["x-other", "1", "x-client-id", "alice", "x-client-id", "bob"];
  assert.equal(requestHash(header, headers, "127.0.0.1:1"), hashString("alice"));
  assert.equal(requestHash(header, ["x-other", "1"], "127.0.0.1:1"), undefined, "no key, no hash");
  const client = parseHashKey("client_address")!;
  const ip = hashString("2001:db8::1");
  assert.equal(requestHash(client, [], "[2001:db8::1]:5000"), ip, "HTTP/2 listener spelling");
  assert.equal(requestHash(client, [], "2001:db8::1:6000"), ip, "gRPC-Web spelling");
  assert.equal(requestHash(client, [], "10.1.2.3:4000"), hashString("10.1.2.3"), "port left out");
  assert.equal(parseHashKey(":authority"), undefined);
  assert.equal(parseHashKey("header:X-Upper"), undefined);
  assert.deepEqual(parseHashKey("header::authority"), { kind: "header", name: ":authority" });
});

// --- ring_hash ------------------------------------------------------------------------------

Deno.test("ring_hash spreads 10,000 keys within ±15 % of fair over 3 backends", () => {
  const { host } = ringHash(members(3));
  const counts = tally(owners(host));
  const fair = KEYS.length / 3;
  console.log(
    `ring_hash spread over 3: ${[...counts.values()].map((n) => percent(n, KEYS.length))}`,
  );
  assert.equal(counts.size, 3);
  for (const [address, count] of counts) {
    assert.ok(Math.abs(count - fair) <= 0.15 * fair, `${address}: ${count} of ${KEYS.length}`);
  }
});

for (const n of [3, 9]) {
  Deno.test(`ring_hash: adding a backend to ${n} moves at most 1.15/${n + 1} of 10,000 keys`, () => {
    const before = owners(ringHash(members(n)).host);
    const after = owners(ringHash(members(n + 1)).host);
    const added = `10.0.0.${n + 1}:50051`;
    let moved = 0;
    for (let i = 0; i < KEYS.length; i++) {
      if (before[i] === after[i]) continue;
      moved++;
      assert.equal(after[i], added, "a key that moves moves to the new backend");
    }
    const bound = 1.15 / (n + 1);
    console.log(
      `ring_hash ${n} → ${n + 1}: ${percent(moved, KEYS.length)} of keys moved ` +
        `(fair ${percent(1, n + 1)}, bound ${percent(bound, 1)})`,
    );
    assert.ok(moved / KEYS.length <= bound, `${moved} moved`);
  });
}

Deno.test("ring_hash: the ring does not depend on the members' order (every proxy agrees)", () => {
  const forward = members(5, [1, 2, 1, 3, 1]);
  const backward = [...forward].reverse().map((s) => new FakeSubConn(s.address, s.weight));
  assert.deepEqual(owners(ringHash(forward).host), owners(ringHash(backward).host));
});

Deno.test("ring_hash: an unusable owner's keys go to the next on the ring, and come back", () => {
  const { host, subConns: [, b2] } = ringHash(members(3));
  const healthy = owners(host);
  // With b2 out, the next entry on the ring is where a two-member ring sends the key.
  const [m1, , m3] = members(3);
  const withoutB2 = owners(ringHash([m1, m3]).host);
  b2.set("TRANSIENT_FAILURE");
  const failedOver = owners(host);
  let movedKeys = 0;
  for (let i = 0; i < KEYS.length; i++) {
    if (healthy[i] === b2.address) {
      movedKeys++;
      assert.equal(failedOver[i], withoutB2[i], "the walk goes on to the next member");
    } else {
      assert.equal(failedOver[i], healthy[i], "keys of other members stay");
    }
  }
  assert.ok(movedKeys > 2_500, `b2 owned ${movedKeys} keys`);
  b2.set("CONNECTING");
  b2.set("READY");
  assert.deepEqual(owners(host), healthy, "the owner's keys come back when it recovers");
});

Deno.test("ring_hash: a call without a key goes to a random READY backend", () => {
  const { host, subConns: [b1, b2, b3] } = ringHash(members(3));
  b2.set("TRANSIENT_FAILURE");
  const counts = tally(Array.from({ length: 3_000 }, () => host.pick(keyed(undefined))));
  assert.deepEqual(new Set(counts.keys()), new Set([b1.address, b3.address]));
  for (const address of [b1.address, b3.address]) {
    assert.ok(counts.get(address)! > 900, `random spread ${[...counts.values()]}`);
  }
});

Deno.test("ring_hash: weights shift the share of keys", () => {
  const { host } = ringHash(members(3, [1, 2, 3]));
  const counts = tally(owners(host));
  const shares = members(3).map((s) => (counts.get(s.address) ?? 0) / KEYS.length);
  console.log(`ring_hash weights 1:2:3: ${shares.map((s) => percent(s, 1))}`);
  [1 / 6, 2 / 6, 3 / 6].forEach((expected, i) => {
    assert.ok(Math.abs(shares[i] - expected) <= 0.15 * expected, `share ${i}: ${shares[i]}`);
  });
});

Deno.test("ring_hash: queues while connecting, fails when every member failed, connects IDLE", () => {
  const { host, subConns: [b1, b2, b3] } = setup(
    (h) => createRingHashBalancer(h),
    members(3),
    false,
  );
  assert.deepEqual([b1.state, b2.state, b3.state], ["CONNECTING", "CONNECTING", "CONNECTING"]);
  assert.equal(host.pick(keyed(KEYS[0])), "queue");
  b1.set("TRANSIENT_FAILURE");
  b2.set("TRANSIENT_FAILURE");
  assert.equal(host.pick(keyed(KEYS[0])), "queue", "b3 still connecting");
  b3.set("TRANSIENT_FAILURE");
  assert.equal(host.last.state, "TRANSIENT_FAILURE");
  assert.equal(host.pick(keyed(KEYS[0])), "fail");
  b3.set("READY");
  for (const hash of KEYS.slice(0, 100)) assert.equal(host.pick(keyed(hash)), b3.address);
  // A member that lost its connection is reconnected at once.
  const before = b3.connects;
  b3.set("IDLE");
  assert.equal(b3.connects, before + 1);
  assert.equal(b3.state, "CONNECTING");
});

Deno.test("ring_hash: sizing keeps each member's entries fixed, and respects maxRingSize", () => {
  const three = buildRing(members(3));
  assert.equal(three.hashes.length, 3 * 342, "⌈1024 / 3⌉ entries per unit of weight");
  assert.equal(buildRing(members(4)).hashes.length, 4 * 342);
  const weighted = buildRing(members(2, [1, 3]));
  assert.equal(weighted.hashes.length, 4 * 342);
  assert.equal(weighted.owners.filter((owner) => owner === 1).length, 3 * 342);
  const capped = buildRing(members(20));
  assert.equal(capped.hashes.length, 4096, "capped at maxRingSize");
  const small = buildRing(members(3), { minRingSize: 30, maxRingSize: 60 });
  assert.equal(small.hashes.length, 30);
  for (let i = 1; i < three.hashes.length; i++) assert.ok(three.hashes[i - 1] <= three.hashes[i]);
});

// --- least_request --------------------------------------------------------------------------

function leastRequest(subConns: FakeSubConn[], choiceCount?: number): Setup {
  return setup((host) => createLeastRequestBalancer(host, { choiceCount }), subConns);
}

Deno.test("least_request takes the less loaded of the two it samples", () => {
  const { host, subConns: [b1, b2, b3] } = leastRequest(members(3));
  b1.activeStreams = 5;
  b2.activeStreams = 0;
  b3.activeStreams = 3;
  // Math.random() × 3 → indexes: 0.1 → b1, 0.5 → b2, 0.9 → b3.
  assert.equal(withRandom([0.1, 0.5], () => host.pick()), b2.address);
  assert.equal(withRandom([0.1, 0.9], () => host.pick()), b3.address);
  assert.equal(withRandom([0.9, 0.1], () => host.pick()), b3.address);
  assert.equal(withRandom([0.1, 0.1], () => host.pick()), b1.address, "the same one twice");
  b3.activeStreams = 5;
  assert.equal(withRandom([0.9, 0.1], () => host.pick()), b3.address, "a tie keeps the first");
  // choiceCount 3 samples three.
  const three = leastRequest(members(3), 3);
  three.subConns[0].activeStreams = 2;
  three.subConns[1].activeStreams = 1;
  assert.equal(withRandom([0.1, 0.1, 0.9], () => three.host.pick()), three.subConns[2].address);
});

Deno.test("least_request: shares follow the power of two choices, and streams even out", () => {
  const { host, subConns: [b1, b2, b3] } = leastRequest(members(3));
  b1.activeStreams = 0;
  b2.activeStreams = 5;
  b3.activeStreams = 10;
  const counts = tally(Array.from({ length: 9_000 }, () => host.pick()));
  // Two samples with replacement: b1 unless both miss it (1 − (2/3)²), b3 only if both hit it.
  const expected = [5 / 9, 3 / 9, 1 / 9];
  [b1, b2, b3].forEach((subConn, i) => {
    const share = (counts.get(subConn.address) ?? 0) / 9_000;
    assert.ok(Math.abs(share - expected[i]) <= 0.03, `${subConn.address}: ${share}`);
  });

  // Long-lived streams that never finish: each pick opens one more on the chosen backend.
  const streams = members(3);
  const balanced = leastRequest(streams);
  for (let i = 0; i < 300; i++) {
    const address = balanced.host.pick();
    streams.find((s) => s.address === address)!.activeStreams++;
  }
  const loads = streams.map((s) => s.activeStreams);
  console.log(`least_request: 300 long streams over 3 backends → ${loads.join("/")}`);
  assert.ok(Math.max(...loads) - Math.min(...loads) <= 6, `streams ${loads.join("/")}`);
});

Deno.test("least_request picks among READY members only; queues and fails like round_robin", () => {
  const { host, subConns: [b1, b2] } = setup(
    (h) => createLeastRequestBalancer(h),
    members(2),
    false,
  );
  assert.equal(host.pick(), "queue");
  b1.set("READY");
  b2.set("TRANSIENT_FAILURE");
  b1.activeStreams = 100;
  for (let i = 0; i < 20; i++) assert.equal(host.pick(), b1.address);
  b1.set("TRANSIENT_FAILURE");
  assert.equal(host.last.state, "TRANSIENT_FAILURE");
  assert.equal(host.pick(), "fail");
});

// --- weighted_round_robin -------------------------------------------------------------------

/** The registry's `pick_first`, counting the children it builds and what each was given. */
function countingPickFirst(): { factory: BalancerFactory; children: SubConn[][] } {
  const children: SubConn[][] = [];
  const factory: BalancerFactory = (host, config) => {
    const child = createPickFirstBalancer(host, config.pickFirst);
    const given: SubConn[] = [];
    children.push(given);
    return {
      updateSubConns: (subConns) => {
        given.push(...subConns);
        child.updateSubConns(subConns);
      },
      updateSubConnState: (subConn, state) => child.updateSubConnState(subConn, state),
      close: () => child.close(),
    };
  };
  return { factory, children };
}

Deno.test("weighted_round_robin 1:2:3 gives shares within ±3 points over 6,000 picks", () => {
  const wrr = balancerFactory("weighted_round_robin")!;
  const { host, subConns } = setup((h) => wrr(h, {}), members(3, [1, 2, 3]));
  assert.equal(host.last.state, "READY");
  const counts = tally(Array.from({ length: 6_000 }, () => host.pick()));
  const shares = subConns.map((s) => (counts.get(s.address) ?? 0) / 6_000);
  console.log(`weighted_round_robin 1:2:3 over 6,000 picks: ${shares.map((s) => percent(s, 1))}`);
  [1 / 6, 2 / 6, 3 / 6].forEach((expected, i) => {
    assert.ok(Math.abs(shares[i] - expected) <= 0.03, `share ${i}: ${shares[i]}`);
  });
  // EDF interleaves: in any 6 consecutive picks the weight-3 member gets 2 to 4.
  const window = Array.from({ length: 600 }, () => host.pick());
  for (let i = 0; i + 6 <= window.length; i += 6) {
    const heavy = window.slice(i, i + 6).filter((a) => a === subConns[2].address).length;
    assert.ok(heavy >= 2 && heavy <= 4, `window ${window.slice(i, i + 6)}`);
  }
});

Deno.test("weighted_round_robin: its children are real pick_first balancers, one per endpoint", () => {
  const { factory, children } = countingPickFirst();
  const { host, subConns, balancer } = setup(
    (h) => createWeightedRoundRobinBalancer(h, {}, factory),
    members(3, [1, 1, 2]),
    false,
  );
  assert.deepEqual(children, subConns.map((s) => [s]), "one child per endpoint, given only it");
  assert.deepEqual(subConns.map((s) => s.state), ["CONNECTING", "CONNECTING", "CONNECTING"]);
  assert.equal(host.last.state, "CONNECTING", "no child READY yet");
  assert.equal(host.pick(), "queue");
  subConns[2].set("READY");
  assert.equal(host.last.state, "READY", "READY as soon as one child is");
  assert.equal(host.pick(), subConns[2].address);
  // A membership change keeps the existing children and builds one for the newcomer.
  const b4 = new FakeSubConn("10.0.0.4:50051");
  b4.bind(balancer);
  balancer.updateSubConns([...subConns, b4]);
  assert.equal(children.length, 4);
  assert.deepEqual(children[3], [b4]);
  assert.equal(b4.state, "CONNECTING", "the new child's pick_first connects its endpoint");
});

Deno.test("weighted_round_robin: a child in TRANSIENT_FAILURE drops out, and rejoins", () => {
  const wrr = balancerFactory("weighted_round_robin")!;
  const { host, subConns: [b1, b2, b3] } = setup((h) => wrr(h, {}), members(3, [1, 2, 3]));
  b2.set("TRANSIENT_FAILURE");
  const counts = tally(Array.from({ length: 400 }, () => host.pick()));
  assert.equal(counts.get(b2.address), undefined, "no pick goes to the failed child");
  assert.ok(Math.abs(counts.get(b1.address)! - 100) <= 2, `1:3 over 400: ${[...counts]}`);
  assert.ok(Math.abs(counts.get(b3.address)! - 300) <= 2, `1:3 over 400: ${[...counts]}`);
  b1.set("TRANSIENT_FAILURE");
  b3.set("TRANSIENT_FAILURE");
  assert.equal(host.last.state, "TRANSIENT_FAILURE");
  assert.equal(host.pick(), "fail");
  // The child's pick_first keeps trying; once its endpoint is back it is in the schedule.
  b2.set("READY");
  assert.equal(host.last.state, "READY");
  assert.equal(host.pick(), b2.address);
});

Deno.test("weighted_round_robin: new weights rebuild the schedule", () => {
  const wrr = balancerFactory("weighted_round_robin")!;
  const { host, balancer, subConns } = setup((h) => wrr(h, {}), members(2, [1, 1]));
  assert.deepEqual(
    [...tally(Array.from({ length: 200 }, () => host.pick())).values()].sort(),
    [100, 100],
  );
  subConns[1].weight = 3;
  balancer.updateSubConns(subConns);
  const counts = tally(Array.from({ length: 400 }, () => host.pick()));
  assert.ok(Math.abs(counts.get(subConns[1].address)! - 300) <= 2, `${[...counts]}`);
});

Deno.test("the registry lists the new policies (the JSON Schema's picker enum)", () => {
  assert.deepEqual(registeredPolicies(), [
    "pick_first",
    "round_robin",
    "ring_hash",
    "least_request",
    "weighted_round_robin",
  ]);
});

// --- weights: config, snapshots, Redis ------------------------------------------------------

/** Parses one cluster `c` with `cluster` settings; returns the result of `safeParse`. */
function parseCluster(cluster: Record<string, unknown>) {
  return configSchema.safeParse({ clusters: { c: cluster }, routes: [{ cluster: "c" }] });
}

Deno.test("config: ring_hash, least_request and weights settings, defaults and refusals", () => {
  const plain = parseCluster({ backends: ["127.0.0.1:1"] });
  assert.ok(plain.success);
  assert.deepEqual(plain.data.clusters.c.ringHash, { minRingSize: 1024, maxRingSize: 4096 });
  assert.deepEqual(plain.data.clusters.c.leastRequest, { choiceCount: 2 });
  assert.equal(plain.data.clusters.c.weights, undefined);

  const full = parseCluster({
    picker: "ring_hash",
    hashKey: "header:x-client-id",
    ringHash: { minRingSize: 64, maxRingSize: 8 * 1024 * 1024 },
    backends: ["127.0.0.1:1", "127.0.0.1:2"],
    weights: { "127.0.0.1:2": 3 },
  });
  assert.ok(full.success, String(full.error));
  assert.deepEqual(full.data.clusters.c.weights, { "127.0.0.1:2": 3 });
  assert.deepEqual(full.data.clusters.c.backends, ["127.0.0.1:1", "127.0.0.1:2"]);

  const backends = ["127.0.0.1:1"];
  assert.deepEqual(clusterProblems({ backends, weights: { "127.0.0.1:1": 0 } }), [
    "clusters.c.weights.127.0.0.1:1: must be a whole number from 1 to 1000000",
  ]);
  assert.deepEqual(clusterProblems({ backends, weights: { "127.0.0.1:1": 1.5 } }), [
    "clusters.c.weights.127.0.0.1:1: must be a whole number from 1 to 1000000",
  ]);
  assert.deepEqual(clusterProblems({ backends, weights: { "127.0.0.1:9": 2 } }), [
    "clusters.c.weights.127.0.0.1:9: is not in backends (Redis members take their weight from Redis)",
  ]);
  assert.match(clusterProblems({ backends, weights: { "nohost": 2 } })[0], /not host:port/);
  assert.deepEqual(clusterProblems({ backends, picker: "ring_hash" }), [
    'clusters.c.hashKey: is required by ring_hash (e.g. "header:x-client-id" or "client_address")',
  ]);
  assert.match(clusterProblems({ backends, hashKey: "x-client-id" })[0], /^clusters\.c\.hashKey: /);
  assert.deepEqual(
    clusterProblems({ backends, ringHash: { minRingSize: 4096, maxRingSize: 1024 } }),
    [
      "clusters.c.ringHash.maxRingSize: must be at least minRingSize",
    ],
  );
  assert.match(
    clusterProblems({ backends, ringHash: { maxRingSize: 8 * 1024 * 1024 + 1 } })[0],
    /ringHash/,
  );
  assert.match(clusterProblems({ backends, leastRequest: { choiceCount: 1 } })[0], /choiceCount/);
});

/** A control-plane cluster whose snapshots are collected. */
function controlPlane(
  cluster: Record<string, unknown>,
): { cluster: Cluster; last(): ClusterSnapshot } {
  const result = parseCluster(cluster);
  assert.ok(result.success, String(result.error));
  const published: ClusterSnapshot[] = [];
  const control = new Cluster("c", result.data.clusters.c, { publish: (s) => published.push(s) });
  return {
    cluster: control,
    last: () => {
      control.flush();
      return published[published.length - 1];
    },
  };
}

/** Weights by address in a snapshot (absent means 1). */
function snapshotWeights(snapshot: ClusterSnapshot): Record<string, number> {
  return Object.fromEntries(snapshot.backends.map((b) => [b.address, b.weight ?? 1]));
}

Deno.test("weights reach the snapshot: config first, then Redis, else 1", () => {
  const { cluster, last } = controlPlane({
    backends: ["127.0.0.1:1", "127.0.0.1:2"],
    weights: { "127.0.0.1:2": 3 },
  });
  try {
    assert.deepEqual(snapshotWeights(last()), { "127.0.0.1:1": 1, "127.0.0.1:2": 3 });
    assert.equal("weight" in last().backends[0], false, "weight 1 is left out of the snapshot");
    cluster.setMembers("redis", ["127.0.0.1:2", "127.0.0.1:3"]);
    cluster.setWeights(
      "redis",
      new Map([["127.0.0.1:2", 7], ["127.0.0.1:3", 5]]),
    );
    assert.deepEqual(snapshotWeights(last()), {
      "127.0.0.1:1": 1,
      "127.0.0.1:2": 3,
      "127.0.0.1:3": 5,
    });
    cluster.setWeights("redis", new Map());
    assert.deepEqual(snapshotWeights(last())["127.0.0.1:3"], 1);
    // A reload takes the config's new weights; a member the config no longer weighs takes
    // its Redis weight.
    cluster.setWeights("redis", new Map([["127.0.0.1:2", 7]]));
    const reloaded = parseCluster({
      backends: ["127.0.0.1:1", "127.0.0.1:2"],
      weights: { "127.0.0.1:1": 2 },
    });
    assert.ok(reloaded.success);
    cluster.reconfigure(reloaded.data.clusters.c);
    assert.deepEqual(snapshotWeights(last()), {
      "127.0.0.1:1": 2,
      "127.0.0.1:2": 7,
      "127.0.0.1:3": 1,
    });
  } finally {
    cluster.close();
  }
});

Deno.test({
  name: "Redis weight keys: read with the set, updated by keyspace events, invalid means 1",
  ...GRPC_JS,
  fn: async () => {
    const redis = await startRedis();
    const set = "switchyard:test:weighted";
    const [a, b] = ["127.0.0.1:7001", "127.0.0.1:7002"];
    const parsed = configSchema.parse({
      redis: { url: redis.url, pollInterval: "1m", connectTimeout: "500ms" },
      clusters: { c: { picker: "weighted_round_robin", discovery: { redisSet: set } } },
      routes: [{ cluster: "c" }],
    });
    const cluster = new Cluster("c", parsed.clusters.c, { publish: () => {} });
    let discovery: RedisDiscovery | undefined;
    try {
      await redis.client.sAdd(set, [a, b]);
      await redis.client.set(weightKey(set, a), "4");
      await redis.client.set(weightKey(set, b), "heavy");
      discovery = await RedisDiscovery.start(parsed, new Map([["c", cluster]]));
      await waitFor(() => cluster.backend(a)?.weight === 4, { what: "a's weight from Redis" });
      assert.equal(cluster.backend(b)!.weight, 1, "an invalid weight counts as 1");
      // The poll is a minute away: only a keyspace event can bring these in time.
      await redis.client.set(weightKey(set, b), "2");
      await waitFor(() => cluster.backend(b)!.weight === 2, { what: "b's new weight" });
      await redis.client.del(weightKey(set, a));
      await waitFor(() => cluster.backend(a)!.weight === 1, { what: "a's weight key removed" });
    } finally {
      discovery?.stop();
      cluster.close();
      await redis.stop();
    }
  },
});
