/**
 * Unit tests of the shared timer heap (`src/timer/timer_queue.ts`) that carries every deadline of
 * the data plane: call deadlines, SETTINGS, idle, send and keepalive timeouts. Each test uses a
 * fresh queue with deadlines a few milliseconds out and waits for what it expects; none
 * sleeps for a fixed time. Deno's op sanitizer stays on: a queue that empties must leave no
 * host timer behind.
 */
import assert from "node:assert/strict";
import { type TimerEntry, TimerQueue } from "../src/timer/timer_queue.ts";
import { waitFor } from "./support/harness.ts";

/**
 * Registers a test with the op and resource sanitizers on. Deno 2.9.6 reports a pending host
 * timer only when a test asks for `sanitizeOps` explicitly (a plain `Deno.test` passes with a
 * timer left armed), and a leaked timer is exactly what these tests must catch.
 */
function test(name: string, fn: () => void | Promise<void>): void {
  Deno.test({ name, sanitizeOps: true, sanitizeResources: true, fn });
}

/** Polls often: the deadlines here are milliseconds apart. */
const POLL = { intervalMs: 1, timeoutMs: 5_000 };

/** A queue entry that records each run in a shared log, then runs an optional action. */
class Probe implements TimerEntry {
  timerAt = 0;
  timerIndex = -1;
  /** How many times {@link onTimer} ran. */
  runs = 0;

  constructor(
    readonly name: string,
    private readonly log: string[],
    private readonly action?: (now: number) => void,
  ) {}

  onTimer(now: number): void {
    this.runs++;
    this.log.push(this.name);
    this.action?.(now);
  }
}

/** Probes named `names`, all logging into `log`. */
function probes(log: string[], ...names: string[]): Probe[] {
  return names.map((name) => new Probe(name, log));
}

/**
 * Runs `body` while uncaught errors are recorded instead of failing the test: the queue
 * rethrows an entry's error in a microtask so that it is reported, not swallowed.
 */
async function withUncaughtErrors(body: (errors: unknown[]) => Promise<void>): Promise<void> {
  const errors: unknown[] = [];
  const onError = (event: ErrorEvent) => {
    event.preventDefault();
    errors.push(event.error);
  };
  globalThis.addEventListener("error", onError);
  try {
    await body(errors);
  } finally {
    globalThis.removeEventListener("error", onError);
  }
}

test("entries fire in deadline order, not in the order they were queued", async () => {
  const queue = new TimerQueue();
  const log: string[] = [];
  const now = Date.now();
  const offsets: Record<string, number> = { e: 12, a: 2, d: 9, b: 4, c: 6 };
  for (const probe of probes(log, ...Object.keys(offsets))) {
    queue.schedule(probe, now + offsets[probe.name]);
  }
  assert.equal(queue.size, 5);
  await waitFor(() => log.length === 5, { ...POLL, what: "all five entries" });
  assert.deepEqual(log, ["a", "b", "c", "d", "e"]);
  assert.equal(queue.size, 0);
});

test("entries due in the same pass run in deadline order", async () => {
  // All deadlines lie in the past, so one host timer pass takes every entry at once: the
  // order must still be the deadlines', which only the heap knows.
  const queue = new TimerQueue();
  const log: string[] = [];
  const past = Date.now() - 100;
  const [c, a, b] = probes(log, "c", "a", "b");
  queue.schedule(c, past + 3);
  queue.schedule(a, past + 1);
  queue.schedule(b, past + 2);
  await waitFor(() => log.length === 3, { ...POLL, what: "three entries" });
  assert.deepEqual(log, ["a", "b", "c"]);
});

test("cancel removes the earliest entry and one in the middle; the rest still fire", async () => {
  const queue = new TimerQueue();
  const log: string[] = [];
  const now = Date.now();
  const [a, b, c, d, e] = probes(log, "a", "b", "c", "d", "e");
  [a, b, c, d, e].forEach((probe, i) => queue.schedule(probe, now + 3 + 3 * i));
  queue.cancel(a); // the earliest: the host timer is armed for it
  queue.cancel(c); // one in the middle of the heap
  assert.equal(queue.size, 3);
  assert.equal(a.timerIndex, -1);
  assert.equal(c.timerIndex, -1);
  queue.cancel(c); // cancelling twice is harmless
  assert.equal(queue.size, 3);
  await waitFor(() => log.length === 3, { ...POLL, what: "the three entries left" });
  // e is due after a and c were: had either survived the cancel, it would be logged by now.
  assert.deepEqual(log, ["b", "d", "e"]);
  assert.equal(a.runs + c.runs, 0);
});

test("many cancels at random positions keep the heap ordered", async () => {
  // A deterministic shuffle: a heap that loses its invariant after a removal from the middle
  // shows up as entries out of order, or as an entry that never fires.
  let seed = 42;
  const random = () => (seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31;
  const queue = new TimerQueue();
  const log: string[] = [];
  const now = Date.now();
  const all = Array.from({ length: 60 }, (_, i) => new Probe(String(i), log));
  const deadlines = new Map<Probe, number>();
  for (const probe of all) {
    const at = now + 2 + Math.floor(random() * 30);
    deadlines.set(probe, at);
    queue.schedule(probe, at);
  }
  const cancelled = new Set(all.filter(() => random() < 0.4));
  for (const probe of cancelled) queue.cancel(probe);
  const kept = all.filter((probe) => !cancelled.has(probe));
  assert.equal(queue.size, kept.length);
  await waitFor(() => log.length === kept.length && queue.size === 0, {
    ...POLL,
    what: `${kept.length} entries to fire`,
  });
  const fired = log.map((name) => all[Number(name)]);
  assert.deepEqual(new Set(fired), new Set(kept), "exactly the entries not cancelled fired");
  for (let i = 1; i < fired.length; i++) {
    assert.ok(
      deadlines.get(fired[i - 1])! <= deadlines.get(fired[i])!,
      `entry ${fired[i - 1].name} (at ${deadlines.get(fired[i - 1])}) fired before ` +
        `${fired[i].name} (at ${deadlines.get(fired[i])})`,
    );
  }
});

test("rescheduling moves an entry earlier or later", async () => {
  const queue = new TimerQueue();
  const log: string[] = [];
  const now = Date.now();
  const [a, b, c] = probes(log, "a", "b", "c");
  queue.schedule(a, now + 30);
  queue.schedule(b, now + 10);
  queue.schedule(c, now + 20);
  queue.schedule(a, now + 3); // earlier: now the first
  queue.schedule(b, now + 40); // later: the host timer armed for b must not fire b
  assert.equal(queue.size, 3, "rescheduling does not add entries");
  await waitFor(() => log.length === 3, { ...POLL, what: "three entries" });
  assert.deepEqual(log, ["a", "c", "b"]);
  assert.equal(a.runs + b.runs + c.runs, 3, "each ran once");
});

test("an entry rescheduled after it was cancelled fires once, at its new deadline", async () => {
  const queue = new TimerQueue();
  const log: string[] = [];
  const now = Date.now();
  const [a, b] = probes(log, "a", "b");
  queue.schedule(a, now + 3);
  queue.schedule(b, now + 10);
  queue.cancel(a);
  queue.schedule(a, now + 20);
  await waitFor(() => log.length === 2, { ...POLL, what: "two entries" });
  assert.deepEqual(log, ["b", "a"]);
});

for (const [label, offset] of [["at now", 0], ["before now", -50]] as const) {
  test(`an entry re-arming itself ${label} runs again on a later pass, not in a loop`, async () => {
    const queue = new TimerQueue();
    const log: string[] = [];
    const limit = 20;
    let sameTurn = 0;
    let inTurn = false;
    const spinner = new Probe("spin", log, (now) => {
      // A run while the previous run's microtask is still pending happened in the same
      // synchronous pass: the queue looped instead of yielding.
      if (inTurn) sameTurn++;
      inTurn = true;
      queueMicrotask(() => inTurn = false);
      if (spinner.runs < limit) queue.schedule(spinner, now + offset);
    });
    const [bystander] = probes(log, "bystander");
    const now = Date.now();
    queue.schedule(spinner, now + 2);
    queue.schedule(bystander, now + 4);
    await waitFor(() => spinner.runs === limit && bystander.runs === 1, {
      ...POLL,
      what: `${limit} runs of the re-arming entry and the other entry`,
    });
    assert.equal(sameTurn, 0, "the re-armed entry ran again within the same pass");
    assert.equal(spinner.runs, limit);
    assert.equal(queue.size, 0);
  });
}

test("a throwing entry stops neither the entries of its pass nor later ones", async () => {
  await withUncaughtErrors(async (errors) => {
    const queue = new TimerQueue();
    const log: string[] = [];
    const boom = new Error("boom");
    const thrower = new Probe("thrower", log, () => {
      throw boom;
    });
    const [sameDeadline, later] = probes(log, "same", "later");
    const at = Date.now() + 3;
    // Equal deadlines land in one pass; which runs first among equals is not promised.
    queue.schedule(thrower, at);
    queue.schedule(sameDeadline, at);
    queue.schedule(later, at + 10);
    await waitFor(() => log.length === 3 && errors.length === 1, {
      ...POLL,
      what: "every entry to run and the error to surface",
    });
    assert.deepEqual(new Set(log), new Set(["thrower", "same", "later"]));
    assert.equal(log.at(-1), "later");
    assert.equal(errors[0], boom, "the error is rethrown, not swallowed");
    assert.equal(queue.size, 0);
  });
});

test("a throwing entry that is the last of its pass still leaves the next one armed", async () => {
  await withUncaughtErrors(async (errors) => {
    const queue = new TimerQueue();
    const log: string[] = [];
    const thrower = new Probe("thrower", log, () => {
      throw new Error("boom");
    });
    const [later] = probes(log, "later");
    const now = Date.now();
    queue.schedule(thrower, now + 2);
    queue.schedule(later, now + 15);
    await waitFor(() => later.runs === 1 && errors.length === 1, {
      ...POLL,
      what: "the entry after the throwing one",
    });
    assert.deepEqual(log, ["thrower", "later"]);
  });
});

test("an entry cancelled by another entry of the same pass does not run", async () => {
  // Cancelling a deadline must stop it even when it is already due, e.g. a connection's
  // timeout that closes streams whose own deadlines fall in the same pass.
  const queue = new TimerQueue();
  const log: string[] = [];
  const [victim, witness] = probes(log, "victim", "witness");
  const killer = new Probe("killer", log, () => queue.cancel(victim));
  const past = Date.now() - 100;
  queue.schedule(killer, past + 1);
  queue.schedule(victim, past + 2);
  queue.schedule(witness, past + 3);
  await waitFor(() => witness.runs === 1, { ...POLL, what: "the entry after the cancelled one" });
  assert.deepEqual(log, ["killer", "witness"], "the cancelled entry ran after its cancel");
  assert.equal(queue.size, 0);
});

test("an entry moved later by another entry of the same pass runs only at its new deadline", async () => {
  const queue = new TimerQueue();
  const log: string[] = [];
  const [moved, witness] = probes(log, "moved", "witness");
  const now = Date.now();
  const mover = new Probe("mover", log, () => queue.schedule(moved, now + 20));
  queue.schedule(mover, now - 100);
  queue.schedule(moved, now - 99);
  queue.schedule(witness, now + 10);
  await waitFor(() => moved.runs >= 1 && witness.runs === 1 && queue.size === 0, {
    ...POLL,
    what: "the moved entry at its new deadline",
  });
  assert.deepEqual(log, ["mover", "witness", "moved"]);
  assert.equal(moved.runs, 1, "the moved entry ran at its old deadline too");
});

test("size counts queued entries through schedule, reschedule, cancel and firing", async () => {
  const queue = new TimerQueue();
  const log: string[] = [];
  const [a, b, c] = probes(log, "a", "b", "c");
  const now = Date.now();
  assert.equal(queue.size, 0);
  queue.schedule(a, now + 5);
  queue.schedule(b, now + 60_000);
  queue.schedule(c, now + 60_000);
  assert.equal(queue.size, 3);
  queue.schedule(a, now + 3);
  assert.equal(queue.size, 3);
  queue.cancel(b);
  queue.cancel(b);
  assert.equal(queue.size, 2);
  await waitFor(() => a.runs === 1, { ...POLL, what: "the first entry" });
  assert.equal(queue.size, 1);
  assert.equal(a.timerIndex, -1, "a fired entry is out of the queue");
  queue.cancel(c);
  assert.equal(queue.size, 0);
  // The op sanitizer fails the test if the host timer armed for c outlived its cancel.
});

test("a queue emptied by cancels, with far deadlines, leaves no host timer", () => {
  const queue = new TimerQueue();
  const log: string[] = [];
  const entries = probes(log, "a", "b", "c", "d");
  const now = Date.now();
  entries.forEach((entry, i) => queue.schedule(entry, now + 60_000 * (i + 1)));
  // Beyond what a host timer can hold: the queue re-arms in steps instead.
  const far = new Probe("far", log);
  queue.schedule(far, now + 2 ** 40);
  for (const entry of [entries[2], far, entries[0], entries[3], entries[1]]) queue.cancel(entry);
  assert.equal(queue.size, 0);
  assert.deepEqual(log, []);
  // Nothing to wait for: had a host timer survived, the op sanitizer would fail this test.
});

test("scheduleNoLaterThan moves an entry earlier, never later, and keeps a due entry due", async () => {
  const queue = new TimerQueue();
  const log: string[] = [];
  const now = Date.now();
  const [early, late] = probes(log, "early", "late");
  queue.schedule(early, now + 2);
  queue.scheduleNoLaterThan(early, now + 10_000); // later: no change
  queue.schedule(late, now + 10_000);
  queue.scheduleNoLaterThan(late, now + 4); // earlier: moved
  await waitFor(() => log.length === 2, { ...POLL, what: "both entries" });
  assert.deepEqual(log, ["early", "late"]);

  // Two entries due in the same pass: the first asks the second to run "no later than" far
  // away, as a connection arming its idle timer does; the second still runs in this pass.
  const pass: string[] = [];
  const second = new Probe("second", pass);
  const first = new Probe(
    "first",
    pass,
    () => queue.scheduleNoLaterThan(second, Date.now() + 60_000),
  );
  const at = Date.now() + 2;
  queue.schedule(first, at);
  queue.schedule(second, at);
  await waitFor(() => pass.length === 2, { ...POLL, what: "both entries of the pass" });
  assert.deepEqual(pass, ["first", "second"]);
  assert.equal(queue.size, 0, "nothing left queued, so no host timer is left behind");
});
