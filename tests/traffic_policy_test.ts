/**
 * Traffic policy end to end: real grpc-js clients → the real proxy process → real grpc-js
 * (or raw `node:http2`) backends. Retries (transparent and configured, gRFC A6) and their
 * budget, route timeouts and idle timeouts, the cluster's circuit breakers, and route
 * matching on `:authority` and headers with the request rewrites.
 *
 * Clients that count failures are made with `grpc.enable_retries: 0`: grpc-js retries a
 * REFUSED_STREAM from the proxy on its own, which would hide what the proxy did.
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import assert from "node:assert/strict";
import http2 from "node:http2";
import { adminRequest, startAdminProxy } from "./support/admin_client.ts";
import { clusterConfig, GRPC_JS, type ProxyProcess, waitFor } from "./support/harness.ts";
import { parsePrometheusText, sumSamples } from "./support/prometheus.ts";
import { resetStream, startRawBackend } from "./support/raw_h2.ts";
import { startTcpBackend } from "./support/tcp_backend.ts";
import {
  expectServiceError,
  rawBytes,
  startTestBackend,
  testClient,
  TestMethod,
  unaryCall,
} from "./support/test_backend.ts";

const { NGHTTP2_REFUSED_STREAM } = http2.constants;

/** Client options that leave every retry to the proxy. */
const NO_CLIENT_RETRIES: grpc.ChannelOptions = { "grpc.enable_retries": 0 };

/** A UUID as `crypto.randomUUID` writes it. */
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** A backend these tests start: grpc-js (`stop`), or raw `node:http2` or TCP (`close`). */
type Backend =
  & { readonly address: string }
  & ({ stop(): Promise<unknown> } | { close(): Promise<unknown> });

/** A proxy in front of backends, and a client of it; disposing it stops them all. */
interface Setup {
  readonly proxy: ProxyProcess;
  /** A client of the proxy made with {@link NO_CLIENT_RETRIES}. */
  readonly client: grpc.Client;
  /** Another client of the proxy: {@link NO_CLIENT_RETRIES} and `options`. */
  connect(options: grpc.ChannelOptions): grpc.Client;
  /** Hands `backend`, started during the test, to the setup to stop with the others. */
  adopt<B extends Backend>(backend: B): B;
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * Starts the proxy in front of `backends`, which the setup then owns: one cluster "echo" of
 * them all with the settings `cluster` ({@link clusterConfig}), its top-level keys replaced
 * by `config`. Disposing it closes the clients, stops the proxy, then the backends.
 */
async function setUp(
  backends: readonly Backend[],
  options: { cluster?: Record<string, unknown>; config?: Record<string, unknown> } = {},
): Promise<Setup> {
  const owned = [...backends];
  const stopBackends = () => Promise.all(owned.map((b) => "stop" in b ? b.stop() : b.close()));
  let proxy: ProxyProcess;
  try {
    proxy = await startAdminProxy({
      ...clusterConfig(backends.map((backend) => backend.address), options.cluster),
      ...options.config,
    });
  } catch (error) {
    await stopBackends();
    throw error;
  }
  const clients: grpc.Client[] = [];
  const connect = (options: grpc.ChannelOptions = {}) => {
    const client = testClient(proxy.address, { ...NO_CLIENT_RETRIES, ...options });
    clients.push(client);
    return client;
  };
  return {
    proxy,
    client: connect(),
    connect,
    adopt: (backend) => {
      owned.push(backend);
      return backend;
    },
    async [Symbol.asyncDispose]() {
      for (const client of clients) client.close();
      try {
        await proxy.stop();
      } finally {
        await stopBackends();
      }
    },
  };
}

/** {@link setUp} in front of one grpc-js backend, "b". */
async function setUpBackend(options: Parameters<typeof setUp>[1] = {}) {
  const backend = await startTestBackend("b");
  return { ...await setUp([backend], options), backend };
}

/** Retry and overflow counters of `/metrics`, for `cluster`. */
async function counters(
  proxy: ProxyProcess,
  cluster = "echo",
): Promise<{ transparent: number; configured: number; overflow: Record<string, number> }> {
  const samples = parsePrometheusText((await adminRequest(proxy, "/metrics")).body);
  const overflow: Record<string, number> = {};
  for (const limit of ["maxConcurrentCalls", "maxPendingCalls", "retryBudget"]) {
    overflow[limit] = sumSamples(samples, "switchyard_overflow_total", { cluster, limit });
  }
  return {
    transparent: sumSamples(samples, "switchyard_retries_total", { cluster, kind: "transparent" }),
    configured: sumSamples(samples, "switchyard_retries_total", { cluster, kind: "configured" }),
    overflow,
  };
}

/** `GET /clusters/NAME`: its `retries` and `overflow` objects, and its backends. */
async function clusterView(proxy: ProxyProcess, cluster = "echo"): Promise<{
  retries: Record<string, number>;
  overflow: Record<string, number>;
  backends: { address: string; state: string; activeStreams: number }[];
}> {
  const { status, body } = await adminRequest(proxy, `/clusters/${cluster}`);
  assert.equal(status, 200, JSON.stringify(body));
  return body;
}

/** Metadata from plain `key: value` pairs. */
function metadataOf(entries: Record<string, string>): grpc.Metadata {
  const metadata = new grpc.Metadata();
  for (const [key, value] of Object.entries(entries)) metadata.set(key, value);
  return metadata;
}

/** How a call ended: its status code and details. */
interface Outcome {
  readonly code: number;
  readonly details: string;
}

/** Waits for a call either way and returns how it ended. */
function settle(promise: Promise<unknown>): Promise<Outcome> {
  return promise.then(
    () => ({ code: grpc.status.OK, details: "" }),
    (error: grpc.ServiceError) => {
      if (typeof error.code !== "number") throw error;
      return { code: error.code, details: error.details };
    },
  );
}

/** Unary calls started together; disposing the batch cancels them. */
interface Batch {
  /** How the calls that have ended ended, in the order they did. */
  readonly settled: readonly Outcome[];
  /** How every call ended, in the order they started. */
  readonly outcomes: Promise<Outcome[]>;
  /** Cancels every call; one that has ended ignores it. */
  cancel(): void;
  [Symbol.dispose](): void;
}

/** Starts `count` calls of `method` on `client` at once, each with `timeoutMs` if given. */
function startCalls(
  client: grpc.Client,
  count: number,
  method: string,
  options: { timeoutMs?: number } = {},
): Batch {
  const calls: grpc.ClientUnaryCall[] = [];
  const settled: Outcome[] = [];
  const outcomes = Promise.all(Array.from(
    { length: count },
    () =>
      settle(unaryCall(client, method, undefined, {
        ...options,
        onCall: (call) => calls.push(call),
      })).then((outcome) => {
        settled.push(outcome);
        return outcome;
      }),
  ));
  const cancel = () => {
    for (const call of calls) call.cancel();
  };
  return { settled, outcomes, cancel, [Symbol.dispose]: cancel };
}

// --- 1. a backend restart under load ---------------------------------------------------------

/** Concurrent call loops during the restart. */
const LOOPS = 6;
/** How long each Echo stays in the backend before it answers (uncommitted all along). */
const ECHO_DELAY_MS = 20;

const BACKEND_PROCESS = new URL("./support/backend_process.ts", import.meta.url).pathname;

/** How the restarted backend goes down. */
type Kill =
  /** grpc-js `forceShutdown` in this process: GOAWAY, then RST_STREAM(CANCEL) on every stream. */
  | "forceShutdown"
  /** SIGKILL of a backend process: its connections just drop, no frame at all. */
  | "SIGKILL";

/** The backend a restart test kills. */
interface KilledBackend {
  readonly address: string;
  readonly port: number;
  /** Calls waiting inside its Echo handler; `undefined` when the test cannot see in. */
  held(): number | undefined;
  /** Makes the delayed Echo calls inside it wait until it dies (see `freezeEchoes`). */
  freeze(): Promise<void>;
  /** Kills it the chosen way and waits until it is gone. */
  kill(): Promise<void>;
  /** The same as {@link kill}: how the setup stops it at the end. */
  stop(): Promise<void>;
}

/** Starts backend "a", in this process or (for SIGKILL) in a process of its own. */
async function startKilledBackend(how: Kill): Promise<KilledBackend> {
  if (how === "forceShutdown") {
    const backend = await startTestBackend("a");
    return {
      ...backend,
      held: () => backend.delayedEchoes(),
      freeze: () => Promise.resolve(backend.freezeEchoes()),
      kill: () => backend.stop(),
    };
  }
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", BACKEND_PROCESS, "a"],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const output = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const address = /listening (\S+)/.exec((await output.read()).value ?? "")?.[1];
  output.cancel().catch(() => {});
  if (address === undefined) {
    child.kill("SIGKILL");
    await child.status;
    throw new Error("the backend process did not print its address");
  }
  let killed: Promise<unknown> | undefined;
  const kill = () => {
    killed ??= (async () => {
      try {
        child.kill("SIGKILL");
      } catch { /* exited already */ }
      await child.status;
    })();
    return killed.then(() => {});
  };
  return {
    address,
    port: Number(address.split(":")[1]),
    held: () => undefined,
    freeze: async () => {
      const direct = testClient(address);
      try {
        await unaryCall(direct, TestMethod.echo, undefined, {
          metadata: metadataOf({ "x-freeze-echoes": "1" }),
        });
      } finally {
        direct.close();
      }
    },
    kill,
    stop: kill,
  };
}

/** {@link LOOPS} loops of delayed Echo calls; disposing it stops them as {@link stop} does. */
interface Load {
  /** Calls made so far. */
  readonly calls: number;
  /** Calls backend "a" answered so far. */
  readonly servedByA: number;
  /** Every failed call's status code and details. */
  readonly failures: string[];
  /** Starts no more calls and waits for those under way. */
  stop(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/** Starts {@link LOOPS} loops, each making one Echo call on `client` after the other. */
function startLoad(client: grpc.Client): Load {
  const metadata = metadataOf({ "x-delay-ms": String(ECHO_DELAY_MS) });
  let loading = true;
  let calls = 0;
  let servedByA = 0;
  const failures: string[] = [];
  const loops = Promise.all(Array.from({ length: LOOPS }, async () => {
    while (loading) {
      calls++;
      try {
        const { headers } = await unaryCall(client, TestMethod.echo, Buffer.from("ping"), {
          metadata,
          timeoutMs: 10_000,
        });
        if (headers.get("x-backend")[0] === "a") servedByA++;
      } catch (error) {
        const { code, details } = error as grpc.ServiceError;
        failures.push(`${code} ${details}`);
      }
    }
  }));
  const stop = async () => {
    loading = false;
    await loops;
  };
  return {
    get calls() {
      return calls;
    },
    get servedByA() {
      return servedByA;
    },
    failures,
    stop,
    [Symbol.asyncDispose]: stop,
  };
}

interface RestartRun {
  readonly calls: number;
  readonly failures: string[];
  /**
   * Calls inside the killed backend when it was killed: counted in its handler when it runs
   * in this process, else the proxy's `activeStreams` to it just before (a lower bound).
   */
  readonly inFlightAtKill: number;
  readonly transparent: number;
  readonly configured: number;
}

/**
 * Two backends under {@link LOOPS} loops of Echo calls; one is killed while calls are inside
 * it, and a new backend starts on its port. Returns what the clients saw once the new one
 * serves.
 */
async function restartUnderLoad(how: Kill, cluster: Record<string, unknown>): Promise<RestartRun> {
  const killed = await startKilledBackend(how);
  const steady = await startTestBackend("b");
  await using setup = await setUp([killed, steady], {
    cluster: { reconnectBackoff: { initial: "50ms", max: "200ms" }, ...cluster },
  });
  await using load = startLoad(setup.client);
  /** The proxy's calls in flight to the killed backend. */
  const activeStreams = async () =>
    (await clusterView(setup.proxy)).backends.find((b) => b.address === killed.address)!
      .activeStreams;
  await waitFor(() => load.servedByA >= 50 && steady.calls() >= 50, {
    what: "traffic on both backends",
  });
  // Frozen, the backend answers no more calls: those inside it when it dies have sent
  // nothing, rather than maybe half a response, and more pile up until the kill.
  await killed.freeze();
  const inFlightAtKill = await waitFor(async () => {
    const held = killed.held() ?? await activeStreams();
    return held >= 3 ? held : 0;
  }, { what: "calls held inside the backend" });
  await killed.kill();
  const restarted = setup.adopt(
    await waitFor(() => startTestBackend("a-restarted", killed.port), {
      what: "the port to be free again",
    }),
  );
  await waitFor(() => restarted.calls() >= 100, {
    what: "the restarted backend to take calls",
  });
  await load.stop();
  const { transparent, configured } = await counters(setup.proxy);
  return { calls: load.calls, failures: load.failures, inFlightAtKill, transparent, configured };
}

const RETRIES_OFF = { transparentRetry: { maxAttempts: 1 } };
const RETRIES_ON = {
  retry: { retryOn: ["UNAVAILABLE"] },
  // Every call may hold a retry: the budget is not what this test is about.
  retryBudget: { percent: 100, minRetryConcurrency: LOOPS },
};

function report(how: Kill, without: RestartRun, withRetries: RestartRun): void {
  for (const [label, run] of [["retries off", without], ["retries on", withRetries]] as const) {
    console.log(
      `restart by ${how}, ${label}: ${run.calls} calls, ${run.failures.length} failed ` +
        `(${run.inFlightAtKill} in flight at the kill); retries: ` +
        `${run.transparent} transparent, ${run.configured} configured` +
        (run.failures.length > 0 ? `; failures: ${JSON.stringify(run.failures)}` : ""),
    );
  }
}

/** Restarts by `how` with retries off, then on, and prints both runs. */
async function restartBothWays(
  how: Kill,
): Promise<{ without: RestartRun; withRetries: RestartRun }> {
  const without = await restartUnderLoad(how, RETRIES_OFF);
  const withRetries = await restartUnderLoad(how, RETRIES_ON);
  report(how, without, withRetries);
  return { without, withRetries };
}

/** Retries on: no call fails, and each call in flight at the kill is retried (`message`). */
function assertAllRetried(withRetries: RestartRun, message: string): void {
  assert.deepEqual(withRetries.failures, [], "no call fails with retries on");
  assert.ok(withRetries.configured >= withRetries.inFlightAtKill, message);
}

/**
 * Retries off: no retry, and at least the calls `inFlight` ("in flight", "held") at the kill
 * fail, each with a status that matches `failure`.
 */
function assertLostWithoutRetries(without: RestartRun, failure: RegExp, inFlight: string): void {
  assert.ok(
    without.failures.length >= without.inFlightAtKill,
    `${without.failures.length} failures, ${without.inFlightAtKill} calls ${inFlight} at the kill`,
  );
  for (const outcome of without.failures) assert.match(outcome, failure);
  assert.equal(without.transparent + without.configured, 0, "retries off means none");
}

Deno.test({
  name: "a backend process killed under load: no call fails with retries on, some without",
  ...GRPC_JS,
  fn: async () => {
    const { without, withRetries } = await restartBothWays("SIGKILL");
    assertAllRetried(
      withRetries,
      `switchyard_retries_total counts a retry per call in flight at the kill ` +
        `(${withRetries.inFlightAtKill} in flight, ${withRetries.configured} retries)`,
    );
    // The calls in flight when the connection dropped are lost, as UNAVAILABLE.
    assertLostWithoutRetries(without, /^14 /, "in flight");
  },
});

Deno.test({
  name: "a backend shut down by force under load: no call fails with retries on, some without",
  ...GRPC_JS,
  fn: async () => {
    const { without, withRetries } = await restartBothWays("forceShutdown");
    // Without retries, at least the calls the backend held when it died are lost: CANCELLED,
    // as the backend reset them, or UNAVAILABLE.
    assertLostWithoutRetries(without, /^(14|1) /, "held");
    // The calls inside the backend end with its RST_STREAM(CANCEL), before any response
    // headers. A backend reset counts as UNAVAILABLE for retryOn, so they must be retried.
    assertAllRetried(
      withRetries,
      `each call the killed backend held is retried (${withRetries.inFlightAtKill} held, ` +
        `${withRetries.configured} configured retries)`,
    );
  },
});

// --- 2–3. transparent retry of refused streams, and its budget -------------------------------

/** A `node:http2` backend that refuses every stream with REFUSED_STREAM, after `delayMs`. */
async function startRefusingBackend(delayMs = 0) {
  let refused = 0;
  const backend = await startRawBackend((stream) => {
    const refuse = () => {
      refused++;
      resetStream(stream, NGHTTP2_REFUSED_STREAM);
    };
    if (delayMs > 0) setTimeout(refuse, delayMs);
    else refuse();
  });
  return { ...backend, refused: () => refused };
}

Deno.test({
  name: "a backend that refuses every stream: calls succeed on another backend",
  ...GRPC_JS,
  fn: async () => {
    const refusing = await startRefusingBackend();
    const good = await startTestBackend("good");
    await using setup = await setUp([refusing, good]);
    const CALLS = 20;
    for (let i = 0; i < CALLS; i++) {
      const { headers, response } = await unaryCall(
        setup.client,
        TestMethod.echo,
        Buffer.from(`${i}`),
      );
      assert.equal(response.toString(), `${i}`);
      assert.deepEqual(headers.get("x-backend"), ["good"]);
    }
    assert.equal(good.calls(), CALLS, "each call reached the good backend once");
    assert.ok(refusing.refused() > 0, "round robin sent some calls to the refusing backend");
    const metrics = await counters(setup.proxy);
    assert.equal(metrics.transparent, refusing.refused(), "one transparent retry per refusal");
    assert.equal(metrics.configured, 0);
    const view = await clusterView(setup.proxy);
    assert.equal(view.retries.transparent, refusing.refused());
    console.log(`refused stream: ${refusing.refused()} of ${CALLS} calls retried transparently`);
  },
});

Deno.test({
  name: "when every backend refuses, the retry budget bounds the retries and counts the rest",
  ...GRPC_JS,
  fn: async () => {
    // The refusals come a little later, so that all the calls are in flight together.
    const refusing = [await startRefusingBackend(30), await startRefusingBackend(30)];
    await using setup = await setUp(refusing, {
      cluster: { retryBudget: { percent: 20, minRetryConcurrency: 1 } },
    });
    await waitFor(async () => {
      const { backends } = await clusterView(setup.proxy);
      return backends.every((backend) => backend.state === "READY");
    }, { what: "both backends to be ready" });
    const CALLS = 40;
    const MAX_ATTEMPTS = 3; // transparentRetry's default
    const outcomes = await startCalls(setup.client, CALLS, TestMethod.echo).outcomes;
    for (const outcome of outcomes) assert.equal(outcome.code, grpc.status.UNAVAILABLE);
    const { transparent, configured, overflow } = await counters(setup.proxy);
    const refused = refusing[0].refused() + refusing[1].refused();
    console.log(
      `retry budget: ${CALLS} calls, ${transparent} transparent retries ` +
        `(at most ${CALLS * (MAX_ATTEMPTS - 1)} without a budget), ` +
        `${overflow.retryBudget} refused by the budget, ${refused} streams refused`,
    );
    assert.ok(overflow.retryBudget > 0, "the budget refused retries");
    assert.ok(transparent < CALLS * (MAX_ATTEMPTS - 1), `${transparent} retries`);
    assert.equal(configured, 0);
    // A call the budget admits retries until its attempts run out (2 retries); a call it
    // refuses fails there. Every call is one or the other.
    assert.equal(transparent / (MAX_ATTEMPTS - 1) + overflow.retryBudget, CALLS);
    assert.equal(refused, CALLS + transparent, "every attempt reached a backend");
    const view = await clusterView(setup.proxy);
    assert.equal(view.overflow.retryBudget, overflow.retryBudget);
    assert.equal(view.retries.transparent, transparent);
  },
});

// --- 4–5. configured retries -------------------------------------------------------------------

Deno.test({
  name: "retryOn UNAVAILABLE: a call whose first attempt fails succeeds on the retry, " +
    "which carries grpc-previous-rpc-attempts",
  ...GRPC_JS,
  fn: async () => {
    await using setup = await setUpBackend({
      cluster: { retry: { retryOn: ["UNAVAILABLE"] } },
    });
    const { backend } = setup;
    const { headers, response } = await unaryCall(
      setup.client,
      TestMethod.failFirst,
      Buffer.from("again"),
    );
    assert.equal(response.toString(), "again");
    assert.deepEqual(backend.previousAttempts, [undefined, "1"]);
    assert.deepEqual(headers.get("x-previous-rpc-attempts"), ["1"]);
    const metrics = await counters(setup.proxy);
    assert.equal(metrics.configured, 1);
    assert.equal(metrics.transparent, 0);
  },
});

/** Runs a Collect call sending `messages`, which the backend fails with UNAVAILABLE. */
function failingCollect(client: grpc.Client, messages: readonly Buffer[]): Promise<Outcome> {
  return new Promise((resolve) => {
    const call = client.makeClientStreamRequest<Buffer, Buffer>(
      TestMethod.collect,
      rawBytes,
      rawBytes,
      metadataOf({ "x-fail-code": String(grpc.status.UNAVAILABLE) }),
      {},
      (error) => resolve({ code: error?.code ?? grpc.status.OK, details: error?.details ?? "" }),
    );
    for (const message of messages) call.write(message);
    call.end();
  });
}

Deno.test({
  name: "a 1 MiB client stream is not retried; a small one is",
  ...GRPC_JS,
  fn: async () => {
    await using setup = await setUpBackend({
      cluster: { retry: { retryOn: ["UNAVAILABLE"], maxAttempts: 3 } },
    });
    const { backend } = setup;
    // 1 MiB in 16 messages: far past retryBufferBytes (64 KiB), so the proxy keeps no copy.
    const large = await failingCollect(
      setup.client,
      Array.from({ length: 16 }, (_, i) => Buffer.alloc(64 * 1024, i)),
    );
    assert.equal(large.code, grpc.status.UNAVAILABLE);
    assert.match(large.details, /failed after 16 messages/, "the backend's own status");
    assert.equal(backend.calls(), 1, "the backend saw exactly one attempt");
    assert.equal((await counters(setup.proxy)).configured, 0);

    // The control: 1 KiB fits the buffer, so each of the 3 attempts reaches the backend.
    backend.resetCalls();
    const small = await failingCollect(setup.client, [Buffer.alloc(1024, 1)]);
    assert.equal(small.code, grpc.status.UNAVAILABLE);
    assert.equal(backend.calls(), 3, "a request that fits the buffer is retried");
    assert.equal((await counters(setup.proxy)).configured, 2);
  },
});

// --- 6–7. timeouts -----------------------------------------------------------------------------

Deno.test({
  name: "a route timeout ends a call without a deadline; maxTimeout caps a client's deadline",
  ...GRPC_JS,
  fn: async () => {
    await using setup = await setUpBackend({
      config: {
        routes: [
          {
            method: TestMethod.hang,
            headers: [{ name: "x-policy", exact: "timeout" }],
            cluster: "echo",
            timeout: "400ms",
          },
          { method: TestMethod.hang, cluster: "echo", maxTimeout: "2s" },
        ],
      },
    });
    const { backend } = setup;
    const startedAt = Date.now();
    const timedOut = await expectServiceError(
      unaryCall(setup.client, TestMethod.hang, undefined, {
        metadata: metadataOf({ "x-policy": "timeout" }),
      }),
    );
    const elapsed = Date.now() - startedAt;
    assert.equal(timedOut.code, grpc.status.DEADLINE_EXCEEDED, timedOut.details);
    assert.ok(elapsed >= 350, `ended after ${elapsed}ms, the route timeout is 400ms`);
    assert.ok(elapsed < 3_000, `ended after ${elapsed}ms, the route timeout is 400ms`);
    const first = backend.hangs[0];
    assert.ok(first.remainingMs !== undefined, "the backend got a grpc-timeout");
    assert.ok(first.remainingMs > 0 && first.remainingMs <= 400, `${first.remainingMs}ms`);
    await waitFor(() => first.cancelled, { what: "the backend to see the cancel" });

    // The client asks for 60 s; the backend must see at most the route's 2 s.
    let call: grpc.ClientUnaryCall | undefined;
    const capped = unaryCall(setup.client, TestMethod.hang, undefined, {
      timeoutMs: 60_000,
      onCall: (c) => call = c,
    });
    await waitFor(() => backend.hangs.length === 2, { what: "the second Hang call" });
    const second = backend.hangs[1];
    assert.ok(second.remainingMs !== undefined, "the backend got a grpc-timeout");
    assert.ok(second.remainingMs <= 2_000, `the backend's deadline is ${second.remainingMs}ms`);
    assert.ok(second.remainingMs > 1_000, `the backend's deadline is ${second.remainingMs}ms`);
    call!.cancel();
    assert.equal((await expectServiceError(capped)).code, grpc.status.CANCELLED);
  },
});

Deno.test({
  name: "streamIdleTimeout ends a silent call with UNAVAILABLE, not one that keeps sending",
  ...GRPC_JS,
  fn: async () => {
    await using setup = await setUpBackend({ cluster: { streamIdleTimeout: "300ms" } });
    const { backend } = setup;
    const startedAt = Date.now();
    const idle = await expectServiceError(unaryCall(setup.client, TestMethod.hang));
    const elapsed = Date.now() - startedAt;
    assert.equal(idle.code, grpc.status.UNAVAILABLE);
    assert.match(idle.details, /stream idle timeout/);
    assert.ok(elapsed >= 250 && elapsed < 3_000, `ended after ${elapsed}ms`);
    assert.equal(backend.hangs[0].remainingMs, undefined, "idle is not a deadline");
    await waitFor(() => backend.hangs[0].cancelled, { what: "the backend to see the cancel" });

    // A chat that sends a message every 50 ms, for well past 300 ms of life: the gaps stay
    // far below the idle timeout even on a busy machine.
    const chat = setup.client.makeBidiStreamRequest<Buffer, Buffer>(
      TestMethod.chat,
      rawBytes,
      rawBytes,
      new grpc.Metadata(),
      {},
    );
    const echoed: Buffer[] = [];
    const status = new Promise<grpc.StatusObject>((resolve) => chat.on("status", resolve));
    chat.on("data", (message: Buffer) => echoed.push(message));
    chat.on("error", () => {});
    const chatStart = Date.now();
    const MESSAGES = 20;
    for (let i = 0; i < MESSAGES; i++) {
      chat.write(Buffer.from([i]));
      // Paced by the echo of each message, plus 50 ms of the client's own think time.
      await waitFor(() => echoed.length > i, { what: `echo ${i}` });
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    chat.end();
    const final = await status;
    assert.equal(final.code, grpc.status.OK, final.details);
    assert.equal(echoed.length, MESSAGES);
    assert.ok(Date.now() - chatStart > 900, "the chat outlived the idle timeout");
  },
});

// --- 8–9. circuit breakers ---------------------------------------------------------------------

Deno.test({
  name: "maxConcurrentCalls 10: of 50 slow calls 10 run and 40 fail at once",
  ...GRPC_JS,
  fn: async () => {
    await using setup = await setUpBackend({ cluster: { limits: { maxConcurrentCalls: 10 } } });
    const { backend, proxy, client } = setup;
    await unaryCall(client, TestMethod.echo); // the backend connection is up
    const startedAt = Date.now();
    using batch = startCalls(client, 50, TestMethod.hang, { timeoutMs: 30_000 });
    await waitFor(() => batch.settled.length >= 40, { what: "40 calls to fail" });
    const failedAfter = Date.now() - startedAt;
    assert.equal(batch.settled.length, 40, "the 10 admitted calls still run");
    for (const outcome of batch.settled) {
      assert.equal(outcome.code, grpc.status.UNAVAILABLE);
      assert.equal(outcome.details, "cluster echo: maxConcurrentCalls (10) reached");
    }
    await waitFor(() => backend.hangs.length === 10, { what: "10 calls at the backend" });
    assert.equal(backend.hangs.length, 10);
    console.log(`maxConcurrentCalls: 40 calls refused within ${failedAfter}ms`);
    assert.ok(failedAfter < 5_000, `the refused calls took ${failedAfter}ms`);

    const metrics = await counters(proxy);
    assert.equal(metrics.overflow.maxConcurrentCalls, 40);
    assert.equal((await clusterView(proxy)).overflow.maxConcurrentCalls, 40);

    batch.cancel();
    const results = await batch.outcomes;
    assert.equal(results.filter((o) => o.code === grpc.status.CANCELLED).length, 10);
    // The slots are given back: a new call is admitted.
    await waitFor(() => backend.hangs.every((hang) => hang.cancelled), {
      what: "the backend to see every cancel",
    });
    const { response } = await unaryCall(client, TestMethod.echo, Buffer.from("after"));
    assert.equal(response.toString(), "after");
  },
});

Deno.test({
  name: "maxPendingCalls 2: with no ready backend 2 calls wait and the rest fail at once",
  ...GRPC_JS,
  fn: async () => {
    // Accepts TCP and never speaks HTTP/2: the backend never becomes ready.
    const silent = startTcpBackend(() => {});
    await using setup = await setUp([silent], {
      cluster: {
        connectTimeout: "30s",
        waitForReadyTimeout: "30s",
        limits: { maxPendingCalls: 2 },
      },
    });
    using batch = startCalls(setup.client, 6, TestMethod.echo);
    await waitFor(() => batch.settled.length >= 4, { what: "4 calls to fail" });
    for (const outcome of batch.settled) {
      assert.equal(outcome.code, grpc.status.UNAVAILABLE);
      assert.equal(outcome.details, "cluster echo: maxPendingCalls (2) reached");
    }
    assert.equal((await counters(setup.proxy)).overflow.maxPendingCalls, 4);
    assert.equal(batch.settled.length, 4, "2 calls still wait for a backend");

    batch.cancel();
    const results = await batch.outcomes;
    assert.equal(results.filter((o) => o.code === grpc.status.CANCELLED).length, 2);
    // Cancelled waiters leave the queue: two new calls may wait again (here up to their
    // deadline), and are not refused.
    const again = await startCalls(setup.client, 2, TestMethod.echo, { timeoutMs: 300 }).outcomes;
    for (const outcome of again) {
      assert.equal(outcome.code, grpc.status.DEADLINE_EXCEEDED, outcome.details);
    }
    assert.equal((await clusterView(setup.proxy)).overflow.maxPendingCalls, 4);
  },
});

// --- 10. route matching and request rewrites -------------------------------------------------

Deno.test({
  name: "routes match on :authority and headers, most specific first, and rewrite the request",
  ...GRPC_JS,
  fn: async () => {
    const names = ["main", "blue", "green", "canary"] as const;
    const backends = await Promise.all(names.map((name) => startTestBackend(name)));
    const [main, , green] = backends;
    await using setup = await setUp(backends, {
      config: {
        clusters: Object.fromEntries(
          names.map((name, i) => [name, { backends: [backends[i].address] }]),
        ),
        routes: [
          // No condition: the fallback, though it comes first.
          { service: "test.Test", cluster: "main", authorityRewrite: { backendAddress: true } },
          {
            service: "test.Test",
            headers: [{ name: "x-tenant", exact: "blue" }],
            cluster: "blue",
            requestHeaders: {
              remove: ["x-secret"],
              set: { "x-env": "prod", "x-added": "by-route" },
              append: { "x-via": "switchyard" },
            },
            xForwardedFor: true,
            requestId: true,
          },
          {
            service: "test.Test",
            authority: { suffix: ".green.example" },
            cluster: "green",
            authorityRewrite: { literal: "green.internal" },
          },
          // Two conditions: beats both one-condition routes.
          {
            service: "test.Test",
            authority: { suffix: ".green.example" },
            headers: [
              { name: "x-tenant", exact: "blue" },
              { name: "x-no-canary", present: false },
            ],
            cluster: "canary",
          },
        ],
      },
    });
    const plain = setup.client;
    const greenClient = setup.connect({ "grpc.default_authority": "api.green.example" });
    /** An EchoMetadata call: the serving backend, and the metadata it saw (its trailers). */
    const echo = async (client: grpc.Client, metadata: Record<string, string> = {}) => {
      const { headers, status } = await unaryCall(client, TestMethod.echoMetadata, undefined, {
        metadata: metadataOf(metadata),
      });
      return { backend: String(headers.get("x-backend")[0]), headers, seen: status.metadata };
    };
    const fallback = await echo(plain, { "x-tenant": "red" });
    assert.equal(fallback.backend, "main");
    assert.deepEqual(fallback.seen.get("x-authority"), [main.address], "backendAddress");
    assert.deepEqual(fallback.seen.get("x-request-id"), [], "only routes asking add one");

    const blue = await echo(plain, {
      "x-tenant": "blue",
      "x-secret": "s3cret",
      "x-env": "dev",
      "x-via": "client",
      "x-forwarded-for": "10.1.2.3",
    });
    assert.equal(blue.backend, "blue");
    assert.deepEqual(blue.seen.get("x-secret"), [], "removed");
    assert.deepEqual(blue.seen.get("x-env"), ["prod"], "set replaces");
    assert.deepEqual(blue.seen.get("x-added"), ["by-route"], "set adds");
    assert.equal(blue.seen.get("x-via").join(", "), "client, switchyard", "appended");
    assert.deepEqual(blue.seen.get("x-forwarded-for"), ["10.1.2.3, 127.0.0.1"]);
    assert.deepEqual(blue.seen.get("x-authority"), [
      `127.0.0.1:${setup.proxy.address.split(":")[1]}`,
    ]);
    const seenId = String(blue.seen.get("x-request-id")[0]);
    assert.match(seenId, UUID, "a generated x-request-id");
    const greenCall = await echo(greenClient);
    assert.equal(greenCall.backend, "green");
    assert.deepEqual(greenCall.seen.get("x-authority"), ["green.internal"], "literal rewrite");

    const canary = await echo(greenClient, { "x-tenant": "blue" });
    assert.equal(canary.backend, "canary", "two conditions beat one");
    assert.deepEqual(canary.seen.get("x-authority"), ["api.green.example"], "no rewrite");
    assert.equal(
      (await echo(greenClient, { "x-tenant": "blue", "x-no-canary": "1" })).backend,
      "blue",
      "present: false fails on a present header; the header route is next in config order",
    );
    assert.equal(green.calls(), 1);
  },
});

Deno.test({
  name: "requestId: the client gets the call's x-request-id back once, in every kind of answer",
  ...GRPC_JS,
  fn: async () => {
    await using setup = await setUpBackend({
      config: { routes: [{ service: "test.Test", cluster: "echo", requestId: true }] },
    });
    const { client } = setup;
    const ids = (metadata: grpc.Metadata) => metadata.get("x-request-id").map(String);
    // Echo returns no metadata of its own: the id in its headers is the proxy's.
    const first = ids((await unaryCall(client, TestMethod.echo)).headers);
    const second = ids((await unaryCall(client, TestMethod.echo)).headers);
    assert.equal(first.length, 1, JSON.stringify(first));
    assert.match(first[0], UUID);
    assert.notEqual(first[0], second[0], "a new id per call");

    // A client's own id is kept and returned.
    const own = await unaryCall(client, TestMethod.echo, undefined, {
      metadata: metadataOf({ "x-request-id": "client-id-1" }),
    });
    assert.deepEqual(ids(own.headers), ["client-id-1"]);

    // A trailers-only answer (the backend's) carries it too.
    const failed = await expectServiceError(unaryCall(client, TestMethod.failImmediately));
    assert.equal(ids(failed.metadata).length, 1, JSON.stringify(ids(failed.metadata)));
    assert.match(ids(failed.metadata)[0], UUID);

    // A backend that returns the id itself (EchoMetadata echoes x-* request metadata): the
    // client still gets one id, the one the backend saw, not the header twice.
    const echoed = await unaryCall(client, TestMethod.echoMetadata);
    const seen = ids(echoed.status.metadata);
    assert.equal(seen.length, 1);
    assert.match(seen[0], UUID, "the backend saw a generated id");
    assert.deepEqual(ids(echoed.headers), seen, "x-request-id once in the response headers");
  },
});
