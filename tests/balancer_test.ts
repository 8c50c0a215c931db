/**
 * The balancers in-process, against a fake host and fake subconns whose states the test
 * drives (as grpc-go's balancer tests drive a fake ClientConn). No proxy, no sockets, no
 * timers: the connection-delay timer is injected and fired by hand.
 */
import assert from "node:assert/strict";
import { createPickFirstBalancer, type PickFirstOptions } from "../src/balancer/pick_first.ts";
import { createRoundRobinBalancer } from "../src/balancer/round_robin.ts";
import { configSchema } from "../src/config/schema.ts";
import type { Balancer, BalancerHost } from "../src/balancer/types.ts";
import { FakeHost, FakeSubConn } from "./support/fake_balancer.ts";

/** Connection-delay timers the test fires by hand. */
class ManualTimers {
  readonly pending: { callback: () => void; delayMs: number; cancelled: boolean }[] = [];

  readonly schedule = (callback: () => void, delayMs: number): () => void => {
    const timer = { callback, delayMs, cancelled: false };
    this.pending.push(timer);
    return () => timer.cancelled = true;
  };

  get live(): number {
    return this.pending.filter((timer) => !timer.cancelled).length;
  }

  /** Fires the one live timer. */
  fire(): void {
    const live = this.pending.filter((timer) => !timer.cancelled);
    assert.equal(live.length, 1, "exactly one connection-delay timer is armed");
    live[0].cancelled = true;
    live[0].callback();
  }
}

interface Setup {
  readonly host: FakeHost;
  readonly subConns: FakeSubConn[];
  readonly balancer: Balancer;
  readonly timers: ManualTimers;
}

function setup(
  factory: (host: BalancerHost, timers: ManualTimers) => Balancer,
  count: number,
): Setup {
  const host = new FakeHost();
  const timers = new ManualTimers();
  const balancer = factory(host, timers);
  const subConns = Array.from({ length: count }, (_, i) => new FakeSubConn(`b${i + 1}`));
  for (const subConn of subConns) subConn.bind(balancer);
  balancer.updateSubConns(subConns);
  return { host, subConns, balancer, timers };
}

function pickFirst(count: number, options: PickFirstOptions = {}): Setup {
  return setup(
    (host, timers) => createPickFirstBalancer(host, { schedule: timers.schedule, ...options }),
    count,
  );
}

Deno.test("pick_first connects to the first member only and sends every call to it", () => {
  const { host, subConns: [b1, b2, b3] } = pickFirst(3);
  assert.deepEqual([b1.state, b2.state, b3.state], ["CONNECTING", "IDLE", "IDLE"]);
  assert.equal(host.pick(), "queue");
  b1.set("READY");
  assert.equal(host.last.state, "READY");
  for (let i = 0; i < 5; i++) assert.equal(host.pick(), "b1");
  assert.equal(b2.connects + b3.connects, 0);
});

Deno.test("pick_first fails over in list order and fails fast once every member failed", () => {
  const { host, subConns: [b1, b2, b3] } = pickFirst(3);
  b1.set("TRANSIENT_FAILURE");
  assert.deepEqual([b2.state, b3.state], ["CONNECTING", "IDLE"]);
  b2.set("TRANSIENT_FAILURE");
  assert.equal(b3.state, "CONNECTING");
  assert.equal(host.pick(), "queue");
  b3.set("TRANSIENT_FAILURE");
  assert.equal(host.last.state, "TRANSIENT_FAILURE");
  assert.equal(host.pick(), "fail");
  // The failed members keep retrying on their own; the first to come back is chosen.
  b2.set("READY");
  assert.equal(host.pick(), "b2");
});

Deno.test("pick_first walks the list again from the start when the chosen member is lost", () => {
  const { host, subConns: [b1, b2] } = pickFirst(2);
  b1.set("TRANSIENT_FAILURE");
  b2.set("READY");
  assert.equal(host.pick(), "b2");
  b1.set("READY"); // b1 recovers; pick_first stays where it is
  assert.equal(host.pick(), "b2");
  b2.set("IDLE");
  assert.equal(host.pick(), "b1");
});

Deno.test("pick_first moves on after the connection delay, and the first to be READY wins", () => {
  const { host, subConns: [b1, b2, b3], timers } = pickFirst(3, { connectionDelayMs: 250 });
  assert.equal(timers.live, 1);
  assert.equal(timers.pending[0].delayMs, 250);
  // b1 accepted TCP but never speaks HTTP/2: after the delay b2 is tried, b1 keeps trying.
  timers.fire();
  assert.deepEqual([b1.state, b2.state, b3.state], ["CONNECTING", "CONNECTING", "IDLE"]);
  assert.equal(host.pick(), "queue");
  b2.set("READY");
  assert.equal(host.pick(), "b2");
  assert.equal(timers.live, 0, "the delay timer is cancelled once a member is READY");
  assert.equal(b3.connects, 0, "b3 was never needed");
});

Deno.test("pick_first tries the next member at once when the current one fails", () => {
  const { subConns: [b1, b2, b3], timers } = pickFirst(3);
  b1.set("TRANSIENT_FAILURE");
  assert.equal(b2.state, "CONNECTING");
  assert.equal(timers.live, 1, "one timer, for b2");
  timers.fire();
  assert.equal(b3.state, "CONNECTING");
  assert.equal(timers.live, 0, "no timer after the last member");
});

Deno.test("pick_first stops wanting every other member once one is READY", () => {
  const { host, subConns: [b1, b2, b3], timers } = pickFirst(3);
  timers.fire();
  timers.fire();
  assert.deepEqual([b1.state, b2.state, b3.state], ["CONNECTING", "CONNECTING", "CONNECTING"]);
  b3.set("READY");
  assert.equal(host.pick(), "b3");
  assert.deepEqual([b1.disconnects, b2.disconnects, b3.disconnects], [1, 1, 0]);
  assert.deepEqual([b1.state, b2.state], ["IDLE", "IDLE"]);
  // Members left behind going IDLE is no reason to connect them again.
  assert.deepEqual([b1.connects, b2.connects], [1, 1]);
});

Deno.test("pick_first disconnects members that were READY under another policy", () => {
  const host = new FakeHost();
  const balancer = createPickFirstBalancer(host, { schedule: new ManualTimers().schedule });
  const subConns = ["b1", "b2", "b3"].map((address) => new FakeSubConn(address));
  for (const subConn of subConns) {
    subConn.state = "READY";
    subConn.bind(balancer);
  }
  balancer.updateSubConns(subConns);
  assert.equal(host.pick(), "b1");
  assert.deepEqual(subConns.map((s) => s.state), ["READY", "IDLE", "IDLE"]);
});

Deno.test("pick_first shuffleAddressList reorders the members with the injected random", () => {
  // With random() always 0, Fisher-Yates moves each element to the front in turn:
  // [b1 b2 b3 b4] → [b2 b3 b4 b1].
  const { host, subConns } = pickFirst(4, { shuffleAddressList: true, random: () => 0 });
  assert.deepEqual(subConns.map((s) => s.state), ["IDLE", "CONNECTING", "IDLE", "IDLE"]);
  subConns[1].set("READY");
  assert.equal(host.pick(), "b2");

  const unshuffled = pickFirst(4, { shuffleAddressList: false, random: () => 0 });
  assert.equal(unshuffled.subConns[0].state, "CONNECTING");
});

Deno.test("pick_first shuffleAddressList spreads a fleet over the members", () => {
  const firsts = new Set<string>();
  let seed = 1;
  // A small deterministic generator (Park-Miller) stands in for a fleet of proxies.
  const random = () => (seed = (seed * 48_271) % 2_147_483_647) / 2_147_483_647;
  for (let proxy = 0; proxy < 20; proxy++) {
    const { subConns } = pickFirst(4, { shuffleAddressList: true, random });
    firsts.add(subConns.find((s) => s.state === "CONNECTING")!.address);
  }
  assert.equal(firsts.size, 4, `every member is somebody's first: ${[...firsts]}`);
});

Deno.test("pick_first with no members fails calls and close cancels its timer", () => {
  const empty = pickFirst(0);
  assert.equal(empty.host.last.state, "TRANSIENT_FAILURE");
  assert.equal(empty.host.pick(), "fail");
  const { balancer, timers } = pickFirst(2);
  assert.equal(timers.live, 1);
  balancer.close();
  assert.equal(timers.live, 0);
});

Deno.test("clusters.NAME.pickFirst: defaults, and a zero delay is refused", () => {
  const config = (pickFirst?: unknown) =>
    configSchema.safeParse({
      clusters: { a: { backends: ["127.0.0.1:1"], ...(pickFirst ? { pickFirst } : {}) } },
      routes: [{ cluster: "a" }],
    });
  const defaults = config();
  assert.ok(defaults.success, String(defaults.error));
  assert.deepEqual(defaults.data.clusters.a.pickFirst, {
    shuffleAddressList: false,
    connectionDelay: 250,
  });
  const set = config({ shuffleAddressList: true, connectionDelay: "1s" });
  assert.deepEqual(set.data?.clusters.a.pickFirst, {
    shuffleAddressList: true,
    connectionDelay: 1000,
  });
  assert.equal(config({ connectionDelay: "0ms" }).success, false);
  assert.equal(config({ shuffle: true }).success, false, "unknown keys are refused");
});

Deno.test("round_robin connects every member and rotates over READY ones only", () => {
  const { host, subConns: [b1, b2, b3] } = setup((host) => createRoundRobinBalancer(host), 3);
  assert.deepEqual([b1.state, b2.state, b3.state], ["CONNECTING", "CONNECTING", "CONNECTING"]);
  assert.equal(host.pick(), "queue");
  b1.set("READY");
  b3.set("READY");
  b2.set("TRANSIENT_FAILURE");
  const picks = Array.from({ length: 6 }, () => host.pick());
  assert.deepEqual(new Set(picks), new Set(["b1", "b3"]));
  assert.equal(picks.filter((p) => p === "b1").length, 3, "an even rotation");
  b1.set("TRANSIENT_FAILURE");
  b3.set("TRANSIENT_FAILURE");
  assert.equal(host.last.state, "TRANSIENT_FAILURE");
  assert.equal(host.pick(), "fail");
  // A member that lost its connection is reconnected so it can rejoin.
  b1.set("IDLE");
  assert.equal(b1.state, "CONNECTING");
});
