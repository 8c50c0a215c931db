/**
 * In-process unit tests of the relay, {@link ProxiedCall} (`src/proxy/proxied_call.ts`),
 * driven through the fakes of `tests/support/fake_relay.ts`: the client's stream and every
 * backend stream are {@link FakeStream}s the test plays the peer of, the cluster is a fake
 * whose picks and pick waits the test controls, and the cluster's limits are the real
 * {@link CallLimits} in their own `SharedArrayBuffer`, read back raw to check that every call
 * released what it took. Covered: flow-control credit across a retry, limit balance on every
 * early ending, a request that outgrows `retryBufferBytes` between attempts, transparent
 * retries and the retry budget, stale events of abandoned attempts, `perTryTimeout` and the
 * stream idle timeout.
 *
 * Backoffs are 1 ms and the tests wait for conditions (the next upstream stream, the client's
 * stream closing), never for a fixed time; the two waits for the absence of an event wait
 * for a clock condition well past the time the event would need. The op sanitizer is on, so
 * a call left with its timer armed fails its test.
 */
import { headerValue } from "../src/transport/stream.ts";
import { concatBytes } from "../src/h2/bytes.ts";
import assert from "node:assert/strict";
import type { ProxiedCall } from "../src/proxy/proxied_call.ts";
import { MAX_TIMER_MS } from "../src/proxy/deadline.ts";
import { GrpcStatus } from "../src/proxy/grpc_status.ts";
import { CloseCause } from "../src/transport/stream.ts";
import {
  bytes,
  type FakeStream,
  type RelayEnv,
  relayEnv,
  type RelayEnvOptions,
  RESPONSE_HEADERS,
  trailers,
  trailersOnly,
} from "./support/fake_relay.ts";
import { waitFor } from "./support/harness.ts";

/**
 * Registers a test of the relay in a fresh {@link RelayEnv}, with the sanitizers on (Deno
 * 2.9.6 checks host timers only when asked). A test that passes must have ended every call
 * it started; one that fails has its calls cancelled, so that no call, timer or limit slot
 * of it spills into the next test.
 */
function relayTest(
  name: string,
  options: RelayEnvOptions,
  fn: (env: RelayEnv) => void | Promise<void>,
): void {
  Deno.test({
    name,
    sanitizeOps: true,
    sanitizeResources: true,
    fn: async () => {
      const env = relayEnv(options);
      let passed = false;
      try {
        await fn(env);
        passed = true;
      } finally {
        const open = env.cancelOpenCalls();
        if (passed) assert.equal(open, 0, "every call the test started has ended");
        if (passed) {
          const { trackedStreams, counters } = env.backend.streamList;
          assert.equal(trackedStreams, 0, "every attempt left its backend's stream list");
          assert.equal(counters.streamsEnded, counters.streamsOpened);
          assert.equal(counters.streamsOpened, env.upstreams.length, "one entry per attempt");
        }
      }
    },
  });
}

/** Polls often: the relay's timers here are milliseconds apart. */
const POLL = { intervalMs: 1, timeoutMs: 3_000 };

/** A configured retry on UNAVAILABLE with a backoff of at most 1 ms. */
const RETRY_ON_UNAVAILABLE = {
  retryOn: ["UNAVAILABLE" as const],
  initialBackoff: "1ms",
  maxBackoff: "1ms",
};

/** RST_STREAM codes (RFC 9113 §7). */
const REFUSED_STREAM = 0x7;
const CANCEL = 0x8;

const NO_LIMITS_HELD = [0, 0, 0];

/** Waits until the relay has opened `count` backend streams, and returns the last. */
async function upstreamNumber(env: RelayEnv, count: number): Promise<FakeStream> {
  await waitFor(() => env.upstreams.length >= count, { ...POLL, what: `upstream ${count}` });
  assert.equal(env.upstreams.length, count, "no more attempts than expected");
  return env.upstreams[count - 1];
}

/** Waits until the clock has moved `ms` past `since`: only for proving an event did not come. */
async function clockPast(since: number, ms: number): Promise<void> {
  await waitFor(() => Date.now() - since >= ms, { ...POLL, what: `${ms}ms to pass` });
}

/** Lets pending promise callbacks and timers that are already due run. */
function nextTurn(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

/** The single response header block a call ended with (trailers-only), checked for `status`. */
function trailersOnlyResponse(downstream: FakeStream, status: number): string {
  assert.equal(downstream.sent.length, 1, "one HEADERS frame and nothing else");
  const [frame] = downstream.sent;
  assert.equal(frame.kind, "headers");
  assert.ok(frame.kind === "headers" && frame.endStream, "the response ends with its headers");
  assert.equal(headerValue(frame.headers, "grpc-status"), String(status));
  return headerValue(frame.headers, "grpc-message") ?? "";
}

/** The backend answers `upstream` with `status` in trailers after response headers. */
function answer(upstream: FakeStream, status: number = GrpcStatus.OK): void {
  upstream.receiveHeaders([...RESPONSE_HEADERS], false);
  upstream.receiveHeaders(trailers(status), true);
}

/** `call` is the relay of `downstream` (the test drives stale events through it directly). */
function relayOf(call: ProxiedCall, downstream: FakeStream): ProxiedCall {
  assert.equal(downstream.handler, call);
  return call;
}

relayTest("credit across a retry: each request byte is credited to the client exactly once", {
  cluster: { retry: RETRY_ON_UNAVAILABLE },
}, async (env) => {
  const { downstream } = env.startCall();
  const first = await upstreamNumber(env, 1);
  first.holdFlushes = true;

  // Attempt 1 takes 10 bytes but flushes only 4 of them: the client is credited 4.
  downstream.receiveData(bytes(0, 10), false);
  first.flush(4);
  assert.equal(downstream.consumed, 4);
  assert.equal(first.queuedBytes, 6);

  // A trailers-only UNAVAILABLE: retried after the backoff; the held bytes die with the
  // attempt (it is cancelled: its request side is still open) and are never credited by it.
  first.receiveHeaders(trailersOnly(GrpcStatus.UNAVAILABLE), true);
  assert.deepEqual(first.resetsSent(), [CANCEL]);
  assert.equal(downstream.sent.length, 0, "the client sees nothing of attempt 1");

  // More data during the backoff waits for attempt 2, uncredited.
  downstream.receiveData(bytes(10, 3), false);
  assert.equal(downstream.consumed, 4);

  const second = await upstreamNumber(env, 2);
  assert.equal(headerValue(second.headers, "grpc-previous-rpc-attempts"), "1");
  assert.equal(headerValue(first.headers, "grpc-previous-rpc-attempts"), undefined);
  // The replay credits only what attempt 1 had not: 10 + 3 - 4.
  assert.equal(downstream.consumed, 13);

  downstream.receiveData(bytes(13, 2), true);
  assert.equal(downstream.consumed, 15, "credited once per byte the client sent");
  assert.equal(downstream.received, 15);

  const frames = second.dataSent();
  assert.deepEqual(second.bytesSent(), bytes(0, 15), "attempt 2 gets every byte, in order");
  assert.deepEqual(
    frames.map((frame) => frame.endStream),
    frames.map((_, i) => i === frames.length - 1),
    "END_STREAM on the last DATA frame only",
  );
  assert.equal(second.ignored.length, 0);

  answer(second);
  assert.ok(downstream.closed && second.closed);
  assert.equal(downstream.consumed, 15);
  assert.equal(env.records.length, 1);
  assert.equal(env.records[0].grpcStatus, GrpcStatus.OK);
  assert.equal(env.records[0].retries, 1);
  assert.equal(env.records[0].bytesReceived, 15);
  assert.equal(env.cluster.counters.retries.configured, 1);
  assert.deepEqual(env.limitSlots(), NO_LIMITS_HELD);
});

relayTest("limits balance: a client cancel during the retry backoff", {
  cluster: { retry: RETRY_ON_UNAVAILABLE },
}, async (env) => {
  const { downstream } = env.startCall({ endStream: true });
  const first = await upstreamNumber(env, 1);
  first.receiveHeaders(trailersOnly(GrpcStatus.UNAVAILABLE), true);
  // Synchronously after the status, so still within the backoff.
  assert.deepEqual(env.limitsInUse(), { calls: 1, pending: 0, retries: 1 });
  assert.equal(env.cluster.counters.retries.configured, 1);

  const cancelledAt = Date.now();
  downstream.peerReset(CANCEL);
  assert.deepEqual(env.limitSlots(), NO_LIMITS_HELD);
  assert.equal(env.records.length, 1);
  assert.equal(env.records[0].grpcStatus, GrpcStatus.CANCELLED);
  assert.equal(env.records[0].origin, "client");
  assert.equal(env.records[0].resetCode, CANCEL);

  // Well past the 1 ms backoff, the retry never started.
  await clockPast(cancelledAt, 20);
  assert.equal(env.upstreams.length, 1);
  assert.deepEqual(env.cluster.pickLog, ["pick"]);
  assert.deepEqual(env.limitSlots(), NO_LIMITS_HELD);
});

relayTest("limits balance: a client cancel while a retry waits for a backend", {
  cluster: { retry: RETRY_ON_UNAVAILABLE },
}, async (env) => {
  const { downstream } = env.startCall({ endStream: true });
  const first = await upstreamNumber(env, 1);
  env.cluster.queuePick({ kind: "queue" });
  first.receiveHeaders(trailersOnly(GrpcStatus.UNAVAILABLE), true);

  await waitFor(() => env.cluster.waiters.length === 1, { ...POLL, what: "the retry's pick wait" });
  assert.deepEqual(env.cluster.pickLog, ["pick", `pickAnother ${env.backend.address}`]);
  assert.deepEqual(env.limitsInUse(), { calls: 1, pending: 1, retries: 1 });

  downstream.peerReset(CANCEL);
  assert.ok(env.cluster.waiters[0].signal.aborted, "the pick wait is withdrawn");
  assert.deepEqual(env.limitSlots(), NO_LIMITS_HELD);
  await nextTurn(); // the wait's settlement runs: it must neither release again nor pick
  assert.deepEqual(env.limitSlots(), NO_LIMITS_HELD);
  assert.equal(env.upstreams.length, 1);
  assert.equal(env.records.length, 1);
  assert.equal(env.records[0].grpcStatus, GrpcStatus.CANCELLED);
});

relayTest(
  "limits balance: the deadline passes while the call waits for a backend",
  {},
  async (env) => {
    env.cluster.queuePick({ kind: "queue" });
    const { downstream } = env.startCall({
      endStream: true,
      extraHeaders: ["grpc-timeout", "30m"],
    });
    assert.equal(env.cluster.waiters.length, 1);
    // With a deadline the wait is bounded by the call's own timer, not waitForReadyTimeout.
    assert.equal(env.cluster.waiters[0].timeoutMs, MAX_TIMER_MS);
    assert.deepEqual(env.limitsInUse(), { calls: 1, pending: 1, retries: 0 });

    await waitFor(() => downstream.closed, { ...POLL, what: "the deadline" });
    const message = trailersOnlyResponse(downstream, GrpcStatus.DEADLINE_EXCEEDED);
    assert.match(message, /deadline exceeded/);
    assert.ok(env.cluster.waiters[0].signal.aborted);
    assert.equal(env.upstreams.length, 0);
    assert.equal(env.records.length, 1);
    assert.equal(env.records[0].grpcStatus, GrpcStatus.DEADLINE_EXCEEDED);
    assert.equal(env.records[0].origin, "proxy");
    assert.ok(env.records[0].durationMs >= 30, `ended after ${env.records[0].durationMs}ms`);
    assert.deepEqual(env.limitSlots(), NO_LIMITS_HELD);
  },
);

relayTest("limits balance: a call refused by maxConcurrentCalls", {
  cluster: { limits: { maxConcurrentCalls: 1 } },
}, (env) => {
  const admitted = env.startCall({ endStream: true });
  const upstream = env.upstreams[0];
  assert.deepEqual(env.limitsInUse(), { calls: 1, pending: 0, retries: 0 });

  const refused = env.startCall({ endStream: true });
  const message = trailersOnlyResponse(refused.downstream, GrpcStatus.UNAVAILABLE);
  assert.equal(message, "cluster a: maxConcurrentCalls (1) reached");
  assert.equal(env.cluster.counters.overflow.maxConcurrentCalls, 1);
  assert.equal(env.upstreams.length, 1, "the refused call reaches no backend");
  assert.equal(env.records.length, 1);
  assert.equal(env.records[0].grpcStatus, GrpcStatus.UNAVAILABLE);
  // The refused call releases nothing it did not take: the admitted call still holds its slot.
  assert.deepEqual(env.limitsInUse(), { calls: 1, pending: 0, retries: 0 });

  answer(upstream);
  assert.ok(admitted.downstream.closed);
  assert.equal(env.records.length, 2);
  assert.equal(env.records[1].grpcStatus, GrpcStatus.OK);
  assert.deepEqual(env.limitSlots(), NO_LIMITS_HELD);
});

relayTest("a request that outgrows retryBufferBytes while a retry waits ends the call at once", {
  cluster: { retryBufferBytes: 10, retry: RETRY_ON_UNAVAILABLE },
}, async (env) => {
  const { downstream } = env.startCall();
  const first = await upstreamNumber(env, 1);
  downstream.receiveData(bytes(0, 5), false);
  assert.equal(downstream.consumed, 5);

  env.cluster.queuePick({ kind: "queue" });
  first.receiveHeaders(trailersOnly(GrpcStatus.UNAVAILABLE), true);
  await waitFor(() => env.cluster.waiters.length === 1, { ...POLL, what: "the retry's pick wait" });
  assert.deepEqual(env.limitsInUse(), { calls: 1, pending: 1, retries: 1 });

  // 5 + 10 > 10: the request can no longer be replayed whole.
  downstream.receiveData(bytes(5, 10), false);
  assert.ok(downstream.closed, "the call ends at once, not when a backend turns up");
  const message = trailersOnlyResponse(downstream, GrpcStatus.UNAVAILABLE);
  assert.match(message, /retry abandoned/);
  assert.ok(env.cluster.waiters[0].signal.aborted);
  assert.deepEqual(env.limitSlots(), NO_LIMITS_HELD);

  // A backend that turns up now gets nothing, least of all the first 5 bytes alone.
  env.cluster.waiters[0].resolve(env.cluster.complete());
  await nextTurn();
  assert.equal(env.upstreams.length, 1, "no second attempt with a truncated request");
  assert.equal(env.records.length, 1);
  assert.equal(env.records[0].grpcStatus, GrpcStatus.UNAVAILABLE);
  assert.deepEqual(env.limitSlots(), NO_LIMITS_HELD);
});

/** A retry budget of nothing: a retry that draws on it is refused. */
const NO_RETRY_BUDGET = { percent: 0, minRetryConcurrency: 0 };

relayTest(
  "transparent retry: a stream never sent is retried at once, outside the budget",
  { cluster: { retryBudget: NO_RETRY_BUDGET } },
  (env) => {
    const { downstream } = env.startCall({ endStream: true });
    const first = env.upstreams[0];
    first.fail(CloseCause.NOT_SENT, "connection closed");

    // Synchronously: no backoff.
    assert.equal(env.upstreams.length, 2);
    const second = env.upstreams[1];
    assert.equal(env.cluster.counters.retries.transparent, 1);
    assert.equal(env.cluster.counters.retries.configured, 0);
    assert.equal(env.cluster.counters.overflow.retryBudget, 0);
    assert.deepEqual(env.limitsInUse(), { calls: 1, pending: 0, retries: 0 });
    assert.equal(headerValue(second.headers, "grpc-previous-rpc-attempts"), undefined);
    assert.deepEqual(
      second.dataSent().map((frame) => [frame.data.length, frame.endStream]),
      [[0, true]],
      "the (empty) request is sent whole again",
    );

    answer(second);
    assert.ok(downstream.closed);
    assert.equal(env.records[0].grpcStatus, GrpcStatus.OK);
    assert.equal(env.records[0].retries, 1);
    assert.deepEqual(env.limitSlots(), NO_LIMITS_HELD);
  },
);

relayTest(
  "transparent retry: REFUSED_STREAM is retried at once and draws on the budget",
  {},
  (env) => {
    const { downstream } = env.startCall({ endStream: true });
    env.upstreams[0].peerReset(REFUSED_STREAM);

    assert.equal(env.upstreams.length, 2);
    assert.equal(env.cluster.counters.retries.transparent, 1);
    assert.deepEqual(env.limitsInUse(), { calls: 1, pending: 0, retries: 1 });

    answer(env.upstreams[1]);
    assert.ok(downstream.closed);
    assert.equal(env.records[0].grpcStatus, GrpcStatus.OK);
    assert.deepEqual(env.limitSlots(), NO_LIMITS_HELD);
  },
);

// retryOn UNAVAILABLE as well: the budget refuses the call once and is not asked again.
relayTest(
  "transparent retry: REFUSED_STREAM without budget reaches the client as REFUSED_STREAM",
  { cluster: { retry: RETRY_ON_UNAVAILABLE, retryBudget: NO_RETRY_BUDGET } },
  (env) => {
    const { downstream } = env.startCall({ endStream: true });
    env.upstreams[0].peerReset(REFUSED_STREAM);

    assert.equal(env.upstreams.length, 1, "not retried");
    assert.deepEqual(downstream.resetsSent(), [REFUSED_STREAM]);
    assert.equal(downstream.headersSent().length, 0);
    assert.equal(env.cluster.counters.overflow.retryBudget, 1);
    assert.equal(env.cluster.counters.retries.transparent, 0);
    assert.equal(env.cluster.counters.retries.configured, 0);
    assert.equal(env.records.length, 1);
    assert.equal(env.records[0].grpcStatus, GrpcStatus.UNAVAILABLE);
    assert.equal(env.records[0].resetCode, REFUSED_STREAM);
    assert.equal(env.records[0].origin, "backend_reset");
    assert.deepEqual(env.limitSlots(), NO_LIMITS_HELD);
  },
);

relayTest("stale events of an abandoned attempt change nothing", {
  cluster: { retry: RETRY_ON_UNAVAILABLE },
}, async (env) => {
  const started = env.startCall();
  const { downstream } = started;
  const call = relayOf(started.call, downstream);
  const first = await upstreamNumber(env, 1);
  downstream.receiveData(bytes(0, 4), true);
  assert.equal(downstream.consumed, 4);
  first.receiveHeaders(trailersOnly(GrpcStatus.UNAVAILABLE), true);

  const stale = () => {
    call.onHeaders(first, [...RESPONSE_HEADERS, "x-attempt", "1"], false);
    call.onData(first, bytes(100, 7), false);
    call.onFlushed(first, 4);
    call.onHeaders(first, trailers(GrpcStatus.OK), true);
    call.onClose(first, CloseCause.PEER_RESET);
    call.onClose(first, CloseCause.CONNECTION_LOST);
  };
  stale(); // during the backoff
  const second = await upstreamNumber(env, 2);
  stale(); // while attempt 2 runs

  assert.deepEqual(downstream.sent, [], "the client has seen nothing yet");
  assert.equal(downstream.consumed, 4, "stale flushes credit nothing");
  assert.equal(first.consumed, 14, "stale response data goes back to its stream's window");
  assert.ok(!downstream.closed);
  assert.ok(!second.closed);
  assert.deepEqual(second.resetsSent(), []);
  assert.equal(env.records.length, 0);

  second.receiveHeaders([...RESPONSE_HEADERS, "x-attempt", "2"], false);
  second.receiveData(bytes(200, 3), false);
  second.receiveHeaders(trailers(GrpcStatus.OK), true);

  assert.ok(downstream.closed);
  assert.deepEqual(downstream.sent, [
    { kind: "headers", headers: [...RESPONSE_HEADERS, "x-attempt", "2"], endStream: false },
    { kind: "data", data: bytes(200, 3), endStream: false },
    { kind: "trailers", trailers: trailers(GrpcStatus.OK) },
  ]);
  assert.deepEqual(downstream.ignored, []);
  assert.equal(env.records.length, 1);
  assert.equal(env.records[0].grpcStatus, GrpcStatus.OK);
  assert.equal(env.records[0].bytesSent, 3);
  assert.equal(env.records[0].retries, 1);
  assert.deepEqual(env.limitSlots(), NO_LIMITS_HELD);
});

relayTest("perTryTimeout starts only once the request is complete", {
  cluster: { retry: { ...RETRY_ON_UNAVAILABLE, perTryTimeout: "20ms" } },
}, async (env) => {
  const { downstream } = env.startCall();
  const first = await upstreamNumber(env, 1);
  downstream.receiveData(bytes(0, 3), false);

  // Five per-try timeouts pass with the request still open: the attempt is left alone.
  const openedAt = Date.now();
  await clockPast(openedAt, 100);
  assert.equal(env.upstreams.length, 1);
  assert.ok(!first.closed);
  assert.ok(!downstream.closed);
  assert.equal(env.cluster.counters.retries.configured, 0);

  // The retry is answered at once, so its own per-try timeout cannot fire.
  env.backend.onOpen = (stream) => stream.receiveHeaders([...RESPONSE_HEADERS], false);
  const endedAt = Date.now();
  downstream.receiveData(bytes(3, 2), true);
  const second = await upstreamNumber(env, 2);

  assert.deepEqual(first.resetsSent(), [CANCEL]);
  assert.ok(first.closedAt - endedAt >= 20, `cancelled ${first.closedAt - endedAt}ms after`);
  assert.equal(env.cluster.counters.retries.configured, 1);
  assert.equal(headerValue(second.headers, "grpc-previous-rpc-attempts"), "1");
  assert.deepEqual(second.bytesSent(), bytes(0, 5));
  assert.equal(second.dataSent().at(-1)?.endStream, true);

  await waitFor(() => downstream.headersSent().length === 1, { ...POLL, what: "response" });
  second.receiveHeaders(trailers(GrpcStatus.OK), true);
  assert.ok(downstream.closed);
  assert.equal(env.upstreams.length, 2);
  assert.equal(env.records[0].grpcStatus, GrpcStatus.OK);
  assert.deepEqual(env.records[0].failedAttempts, [env.backend.address]);
  assert.deepEqual(env.limitSlots(), NO_LIMITS_HELD);
});

relayTest("stream idle timeout: a silent call ends UNAVAILABLE and its upstream is cancelled", {
  cluster: { streamIdleTimeout: "40ms" },
}, async (env) => {
  const { downstream } = env.startCall({ endStream: true });
  const upstream = env.upstreams[0];

  await waitFor(() => downstream.closed, { ...POLL, what: "the idle timeout" });
  const message = trailersOnlyResponse(downstream, GrpcStatus.UNAVAILABLE);
  assert.match(message, /stream idle timeout/);
  assert.deepEqual(upstream.resetsSent(), [CANCEL]);
  assert.equal(env.records[0].grpcStatus, GrpcStatus.UNAVAILABLE);
  assert.ok(env.records[0].durationMs >= 40, `ended after ${env.records[0].durationMs}ms`);
  assert.deepEqual(env.limitSlots(), NO_LIMITS_HELD);
});

relayTest("stream idle timeout: a call with a frame every 10ms lives on", {
  cluster: { streamIdleTimeout: "40ms" },
}, async (env) => {
  const { downstream } = env.startCall();
  const upstream = env.upstreams[0];
  upstream.receiveHeaders([...RESPONSE_HEADERS], false);

  const startedAt = Date.now();
  const requestChunks: Uint8Array[] = [];
  const responseChunks: Uint8Array[] = [];
  for (let i = 1; Date.now() - startedAt < 150; i++) {
    await clockPast(startedAt, i * 10);
    assert.ok(!downstream.closed, `still open after ${Date.now() - startedAt}ms`);
    // Alternating sides: a frame either way counts.
    const chunk = bytes(i, 1);
    if (i % 2 === 0) {
      requestChunks.push(chunk);
      downstream.receiveData(chunk, false);
    } else {
      responseChunks.push(chunk);
      upstream.receiveData(chunk, false);
    }
  }
  assert.ok(!downstream.closed);
  assert.deepEqual(upstream.resetsSent(), []);
  assert.equal(env.records.length, 0);

  downstream.receiveData(new Uint8Array(0), true);
  upstream.receiveHeaders(trailers(GrpcStatus.OK), true);
  assert.ok(downstream.closed && upstream.closed);
  assert.deepEqual(upstream.bytesSent(), concatBytes(...requestChunks));
  assert.deepEqual(
    concatBytes(...downstream.dataSent().map((frame) => frame.data)),
    concatBytes(...responseChunks),
  );
  assert.equal(env.records[0].grpcStatus, GrpcStatus.OK);
  assert.deepEqual(env.limitSlots(), NO_LIMITS_HELD);
});

relayTest("a shed stream ends UNAVAILABLE with its message; its upstream is cancelled", {
  cluster: { retry: RETRY_ON_UNAVAILABLE },
}, async (env) => {
  const { call, downstream } = env.startCall({ endStream: true });
  const upstream = env.upstreams[0];
  const list = env.backend.streamList;
  assert.equal(list.trackedStreams, 1);
  assert.equal(list.oldestStream, call, "the call is its own list entry");
  upstream.receiveHeaders([...RESPONSE_HEADERS], false);
  upstream.receiveData(bytes(0, 5), false);

  call.shed("cluster a: stream shed by rebalance from backend 10.0.0.1:50051");
  assert.equal(list.trackedStreams, 0, "out of the list at once");
  assert.deepEqual(upstream.resetsSent(), [CANCEL]);
  await waitFor(() => downstream.closed, { ...POLL, what: "the client stream to close" });
  assert.deepEqual(downstream.sent.map((frame) => frame.kind), ["headers", "data", "trailers"]);
  const last = downstream.sent[2];
  assert.ok(last.kind === "trailers");
  assert.equal(headerValue(last.trailers, "grpc-status"), String(GrpcStatus.UNAVAILABLE));
  assert.match(headerValue(last.trailers, "grpc-message")!, /stream shed by rebalance/);
  // Committed: neither the relay's retry policy nor a second shed changes anything.
  call.shed("again");
  assert.equal(env.upstreams.length, 1, "no retry of a committed call");
  const [record] = env.records;
  assert.equal(record.grpcStatus, GrpcStatus.UNAVAILABLE);
  assert.equal(record.origin, "proxy");
  assert.equal(record.backendFailure, false, "not the backend's fault");
  assert.match(record.grpcMessage!, /stream shed by rebalance/);
  assert.deepEqual(env.limitSlots(), NO_LIMITS_HELD);
});

relayTest("a retried call moves from one attempt's list entry to the next", {
  cluster: { retry: RETRY_ON_UNAVAILABLE },
}, async (env) => {
  const { downstream } = env.startCall({ endStream: true });
  const first = await upstreamNumber(env, 1);
  assert.equal(env.backend.streamList.trackedStreams, 1);
  first.receiveHeaders(trailersOnly(GrpcStatus.UNAVAILABLE), true);
  assert.equal(env.backend.streamList.trackedStreams, 0, "the failed attempt left the list");
  const second = await upstreamNumber(env, 2);
  assert.equal(env.backend.streamList.trackedStreams, 1);
  answer(second);
  await waitFor(() => downstream.closed, { ...POLL, what: "the call to end" });
  assert.equal(env.records[0].grpcStatus, GrpcStatus.OK);
});
