/**
 * Hostile-input tests of the proxy's client listener: the floods and resource attacks of
 * RFC 9113 §10.5 ("Denial-of-Service Considerations") and the CVEs that made them famous, sent
 * by raw frame clients (`support/h2_wire.ts`) to the real proxy process on loopback.
 *
 * Under every attack three things must hold:
 * - the attacker gets the RFC's or the configured limit's answer (a GOAWAY with its code, a
 *   stream error, or the connection closed);
 * - the proxy keeps serving everyone else: a normal gRPC call through a fresh connection
 *   succeeds, and innocent calls in flight are not failed;
 * - the proxy's resident memory stays within {@link RSS_BOUND} of a warmed baseline (sampled
 *   all through the attack, so the peak counts, not just the end).
 *
 * Every flood is bounded in frames and in time, and every wait has a deadline. Measured
 * figures (RSS growth, KiB per idle connection) are printed as `hostile <case>: {...}` lines.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import * as grpc from "@grpc/grpc-js";
import {
  clusterConfig,
  GRPC_JS,
  type ProxyProcess,
  startProxy,
  waitFor,
} from "./support/harness.ts";
import {
  concatBytes,
  encodeFieldBlock,
  encodeFrame,
  ErrorCode,
  errorName,
  fieldValue,
  Flag,
  type Frame,
  type FrameSpec,
  FrameType,
  grpcRequestFields,
  H2Wire,
  hpackString,
  readUint32,
  Setting,
  settingsPayload,
  uint32,
} from "./support/h2_wire.ts";
import { grpcFrame } from "./support/raw_h2.ts";
import {
  collectStream,
  expectedStream,
  serverStream,
  startTestBackend,
  type TestBackend,
  TestClient,
  testClient,
  TestMethod,
  unaryCall,
} from "./support/test_backend.ts";

const KiB = 1024;
const MiB = 1024 * KiB;

/** How far the proxy's RSS may rise above its warmed baseline during any one attack. */
const RSS_BOUND = 64 * MiB;

/** `http2.maxPrematureResets` of the proxy under attack: small, so the flood trips it early. */
const MAX_PREMATURE_RESETS = 50;

/** `http2.sendTimeout` of the proxy under attack, in milliseconds. */
const SEND_TIMEOUT_MS = 2_000;

/** `http2.settingsTimeout` of the proxy under attack, in milliseconds. */
const SETTINGS_TIMEOUT_MS = 1_000;

/**
 * `http2.idleTimeout` of the idle-connection proxy, in milliseconds: long enough to open the
 * connections and let the proxy's RSS settle before the first one times out.
 */
const IDLE_TIMEOUT_MS = 5_000;

/** How many idle (and preface-less) connections to open, when the fd limit allows. */
const MANY_CONNECTIONS = 2_000;

/** Connections opened at once while opening many, so the listen backlog never overflows. */
const OPEN_BATCH = 200;

/** The ceiling of an idle connection's cost in the proxy (robust on noisy CI). */
const IDLE_CONNECTION_BOUND = 16 * KiB;

/** Innocent calls kept in flight through the rapid-reset flood. */
const INNOCENT_CALLS = 20;

/** The file-descriptor limit of the proxy in the fd-exhaustion test. */
const PROXY_FD_LIMIT = 256;

/** How long one write of a flood may take before the peer counts as no longer reading. */
const WRITE_STALL_MS = 5_000;

/** How long a flood may run in total, whatever its frame budget. */
const FLOOD_MS = 15_000;

const MESSAGE = Buffer.from("hostile");

/** The gRPC status the proxy answers an oversized request header list with. */
const RESOURCE_EXHAUSTED = 8;

/** Prints a measured figure, so a test run reports what it saw and not only pass/fail. */
function note(name: string, figures: Record<string, unknown>): void {
  console.log(`hostile ${name}: ${JSON.stringify(figures)}`);
}

/** Bytes as MiB with one decimal, for notes and messages. */
function mib(bytes: number): number {
  return Math.round(bytes / MiB * 10) / 10;
}

/**
 * The proxy's RSS once two reads 200 ms apart agree within 64 KiB (it may still be finishing
 * work it was handed, or collecting garbage), or the last read after 2 s without agreement.
 */
async function settledRss(proxy: ProxyProcess): Promise<number> {
  let current = await proxy.rssBytes();
  await waitFor(async () => {
    const previous = current;
    current = await proxy.rssBytes();
    return Math.abs(current - previous) <= 64 * KiB;
  }, { intervalMs: 200, timeoutMs: 2_000, what: "the proxy's RSS to settle" }).catch(() => {});
  return current;
}

/**
 * A normal gRPC call through a fresh grpc-js connection succeeds: the proxy still serves
 * clients other than the attacker, and its process is alive. The client gets its own
 * subchannel pool, since grpc-js would otherwise reuse a connection another client opened.
 */
async function assertFreshClientServed(proxy: ProxyProcess): Promise<void> {
  assert.ok(!proxy.hasExited(), `the proxy exited:\n${proxy.output().slice(-3000)}`);
  const client = new TestClient(proxy.address, grpc.credentials.createInsecure(), {
    "grpc.use_local_subchannel_pool": 1,
  });
  try {
    const { response } = await unaryCall(client, TestMethod.echo, MESSAGE, { timeoutMs: 5_000 });
    assert.deepEqual(response, MESSAGE);
  } finally {
    client.close();
  }
}

/** Unary calls and a streamed response, so the baseline RSS includes what steady traffic needs. */
async function warmUp(proxy: ProxyProcess): Promise<void> {
  const client = testClient(proxy.address);
  try {
    for (let i = 0; i < 20; i++) await unaryCall(client, TestMethod.echo, MESSAGE);
    const { messages } = await collectStream(serverStream(client, 64, 64 * KiB));
    assert.equal(messages.length, 64);
  } finally {
    client.close();
  }
  await assertFreshClientServed(proxy);
}

/**
 * Samples the proxy's RSS (through the harness's `rssBytes()`) from a baseline until
 * {@link RssWatch.assertBounded}, keeping the peak: an attack's cost is its peak, which may be
 * gone by the time the attack ends.
 */
class RssWatch {
  /** RSS when the watch started. */
  readonly baseline: number;
  #peak: number;
  #stopped = false;
  readonly #sampling: Promise<unknown>;
  readonly #proxy: ProxyProcess;

  private constructor(proxy: ProxyProcess, baseline: number) {
    this.#proxy = proxy;
    this.baseline = baseline;
    this.#peak = baseline;
    this.#sampling = waitFor(async () => {
      if (!this.#stopped && !proxy.hasExited()) await this.#sample();
      return this.#stopped || proxy.hasExited();
    }, { timeoutMs: 120_000, intervalMs: 25, what: "the RSS watch to stop" }).catch(() => {});
  }

  /** Starts watching `proxy` from its current RSS. */
  static async start(proxy: ProxyProcess): Promise<RssWatch> {
    return new RssWatch(proxy, await proxy.rssBytes());
  }

  async #sample(): Promise<void> {
    try {
      this.#peak = Math.max(this.#peak, await this.#proxy.rssBytes());
    } catch {
      // The process is gone; the caller's liveness checks report that.
    }
  }

  /**
   * Stops sampling (with one last sample) and asserts the peak stayed within
   * {@link RSS_BOUND} of the baseline. Returns the figures for a note.
   */
  async assertBounded(what: string): Promise<Record<string, number>> {
    await this.#sample();
    this.#stopped = true;
    await this.#sampling;
    const growth = this.#peak - this.baseline;
    const figures = {
      baselineRssMiB: mib(this.baseline),
      peakRssMiB: mib(this.#peak),
      growthMiB: mib(growth),
    };
    assert.ok(
      growth <= RSS_BOUND,
      `${what}: proxy RSS grew by ${mib(growth)} MiB (bound ${mib(RSS_BOUND)} MiB): ${
        JSON.stringify(figures)
      }`,
    );
    return figures;
  }
}

/** Resolves as `promise` does, or rejects once `timeoutMs` passes first, naming `what`. */
async function within<T>(promise: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Deno.errors.TimedOut(`timed out after ${timeoutMs}ms waiting for ${what}`)),
      timeoutMs,
    );
  });
  try {
    return await Promise.race([promise, expired]);
  } finally {
    clearTimeout(timer);
  }
}

/** How a flood ended. */
type FloodEnd = "closed" | "stalled" | "budget";

/**
 * Writes batches from `nextBatch` until the peer closes the connection (a write fails, or the
 * reader saw the close), a write stalls for {@link WRITE_STALL_MS} (the peer stopped reading),
 * `maxBatches` are written, or {@link FLOOD_MS} passes. Returns the batches written and why it
 * stopped; a stalled write is abandoned and fails quietly once the connection closes.
 */
async function flood(
  wire: H2Wire,
  nextBatch: () => Uint8Array,
  maxBatches: number,
): Promise<{ batches: number; end: FloodEnd }> {
  const deadline = Date.now() + FLOOD_MS;
  let batches = 0;
  while (batches < maxBatches && Date.now() < deadline) {
    if (wire.closed) return { batches, end: "closed" };
    let written: boolean;
    try {
      written = await within(wire.write(nextBatch()), WRITE_STALL_MS, "a flood write");
    } catch (error) {
      if (error instanceof Deno.errors.TimedOut) return { batches, end: "stalled" };
      throw error;
    }
    if (!written) return { batches, end: "closed" };
    batches++;
  }
  return { batches, end: wire.closed ? "closed" : "budget" };
}

/** `count` copies of `frame`, back to back, as one write. */
function repeated(frame: Uint8Array, count: number): Uint8Array {
  const out = new Uint8Array(frame.length * count);
  for (let i = 0; i < count; i++) out.set(frame, i * frame.length);
  return out;
}

/** The peer's GOAWAY must name `limit` (the config key) in its debug data. */
function assertNamesLimit(debugData: string, limit: string): void {
  assert.ok(debugData.includes(limit), `the GOAWAY should name ${limit}, got "${debugData}"`);
}

/**
 * Opens `count` connections with `open`, {@link OPEN_BATCH} at a time. If one fails, the
 * ones already open are closed before the error propagates.
 */
async function openMany(count: number, open: () => Promise<H2Wire>): Promise<H2Wire[]> {
  const wires: H2Wire[] = [];
  try {
    while (wires.length < count) {
      const batch = Math.min(OPEN_BATCH, count - wires.length);
      const settled = await Promise.allSettled(Array.from({ length: batch }, open));
      for (const result of settled) if (result.status === "fulfilled") wires.push(result.value);
      const failed = settled.find((result) => result.status === "rejected");
      if (failed) throw (failed as PromiseRejectedResult).reason;
    }
    return wires;
  } catch (error) {
    await closeAll(wires);
    throw error;
  }
}

/** Closes every connection. */
async function closeAll(wires: readonly H2Wire[]): Promise<void> {
  await Promise.all(wires.map((wire) => wire.close()));
}

/**
 * How many connections this test process may hold open at once: its `ulimit -n` (which the
 * proxy inherits) less room for everything else, at most {@link MANY_CONNECTIONS}. Deno cannot
 * raise its own limit, so a low one means fewer connections, said in the output.
 */
async function connectionBudget(): Promise<number> {
  const { stdout } = await new Deno.Command("bash", { args: ["-c", "ulimit -n"] }).output();
  const text = new TextDecoder().decode(stdout).trim();
  const limit = text === "unlimited" ? Infinity : Number(text);
  const budget = Math.min(MANY_CONNECTIONS, Math.floor(limit - 256));
  if (budget < MANY_CONNECTIONS) {
    console.log(
      `hostile: ulimit -n is ${text}, so ${budget} connections instead of ${MANY_CONNECTIONS}` +
        " (raise it with `ulimit -n 65536` before running the tests)",
    );
  }
  assert.ok(budget >= 100, `ulimit -n ${text} is too low for the many-connection tests`);
  return budget;
}

/** A RST_STREAM frame's error code. */
function rstCode(frame: Frame): number {
  return readUint32(frame.payload, 0);
}

// --- the attacks, on one proxy with small limits ------------------------------------------

/**
 * Rapid reset (CVE-2023-44487): HEADERS then RST_STREAM, over and over, so every stream
 * costs the server (and its backend) a call set-up while the client's concurrency stays at 0.
 */
async function rapidReset(proxy: ProxyProcess, backend: TestBackend): Promise<void> {
  // Innocent calls from another client, in flight on the same backend connection: each
  // sends its first message, then the backend holds it until released.
  const innocentClient = testClient(proxy.address);
  const attacker = await H2Wire.open(proxy.address);
  try {
    const callsBefore = backend.calls();
    let innocentsStarted = 0;
    const innocents = Array.from({ length: INNOCENT_CALLS }, () => {
      const call = serverStream(innocentClient, 3, 1024, { "x-hold": "1" });
      call.once("data", () => innocentsStarted++);
      return collectStream(call);
    });
    await waitFor(() => innocentsStarted === INNOCENT_CALLS, { what: "the innocent calls" });
    assert.equal(backend.calls() - callsBefore, INNOCENT_CALLS);

    const watch = await RssWatch.start(proxy);
    const callsAtAttack = backend.calls();
    // Chat (bidi) calls reach the backend's handler with their headers alone, so the
    // backend's call count is the number of attacker streams that got through.
    const block = encodeFieldBlock(grpcRequestFields(TestMethod.chat, proxy.address));
    const pairsPerBatch = 100;
    let streamId = 1;
    const { batches, end } = await flood(attacker, () => {
      const frames: Uint8Array[] = [];
      for (let i = 0; i < pairsPerBatch; i++, streamId += 2) {
        frames.push(
          encodeFrame({
            type: FrameType.HEADERS,
            flags: Flag.END_HEADERS,
            streamId,
            payload: block,
          }),
          encodeFrame({ type: FrameType.RST_STREAM, streamId, payload: uint32(ErrorCode.CANCEL) }),
        );
      }
      return concatBytes(...frames);
    }, 100);
    const goaway = await attacker.expectGoaway(ErrorCode.ENHANCE_YOUR_CALM);
    assertNamesLimit(goaway.debugData, "http2.maxPrematureResets");
    // The stream whose reset went over the limit is the last one processed (RFC 9113 §6.8).
    const processedStreams = (goaway.lastStreamId + 1) / 2;
    assert.ok(
      processedStreams <= MAX_PREMATURE_RESETS + 1,
      `the proxy processed ${processedStreams} attacker streams`,
    );

    // An ordinary call behind the attacker's streams on the same backend connection: once it
    // is answered, the backend has seen everything the proxy sent before it.
    await assertFreshClientServed(proxy);
    const attackerCalls = backend.calls() - callsAtAttack - 1;
    assert.ok(
      attackerCalls <= MAX_PREMATURE_RESETS + 1,
      `the backend saw ${attackerCalls} attacker calls (http2.maxPrematureResets ${MAX_PREMATURE_RESETS})`,
    );

    backend.release();
    const results = await within(Promise.allSettled(innocents), 10_000, "the innocent calls");
    const failed = results.filter((result) => result.status === "rejected");
    assert.equal(
      failed.length,
      0,
      `innocent calls failed: ${failed.map((r) => String((r as PromiseRejectedResult).reason))}`,
    );
    for (const result of results) {
      const { messages } = (result as PromiseFulfilledResult<{ messages: Buffer[] }>).value;
      assert.deepEqual(messages, expectedStream(3, 1024));
    }
    note("rapid-reset", {
      pairsSent: batches * pairsPerBatch,
      floodEnd: end,
      goawayLastStreamId: goaway.lastStreamId,
      backendAttackerCalls: attackerCalls,
      ...await watch.assertBounded("rapid reset"),
    });
  } finally {
    backend.release();
    innocentClient.close();
    await attacker.close();
  }
}

/**
 * CONTINUATION flood (CVE-2024-27316 class): a header block that never ends, in many small
 * frames (against `maxContinuationFrames`) or in few large ones (against `maxHeaderBlockSize`),
 * so a server that buffers the block until END_HEADERS would buffer without end.
 */
async function continuationFlood(
  proxy: ProxyProcess,
  frameSize: number,
  limit: string,
): Promise<void> {
  const watch = await RssWatch.start(proxy);
  const wire = await H2Wire.open(proxy.address);
  try {
    // A valid start of a request, then fragments that are never decoded (no END_HEADERS).
    await wire.sendHeaders(1, grpcRequestFields(TestMethod.echo, proxy.address), {
      endHeaders: false,
    });
    const fragment = encodeFrame({
      type: FrameType.CONTINUATION,
      streamId: 1,
      payload: new Uint8Array(frameSize).fill(0x41),
    });
    const framesPerBatch = Math.max(1, Math.floor(64 * KiB / fragment.length));
    const batch = repeated(fragment, framesPerBatch);
    // At most 64 MiB of fragments, far past either limit.
    const { batches, end } = await flood(wire, () => batch, 1024);
    const goaway = await wire.expectGoaway(ErrorCode.ENHANCE_YOUR_CALM);
    assertNamesLimit(goaway.debugData, limit);
    note(`continuation-flood ${limit}`, {
      frameSize,
      framesSent: batches * framesPerBatch,
      floodEnd: end,
      ...await watch.assertBounded(`CONTINUATION flood (${limit})`),
    });
  } finally {
    await wire.close();
  }
  await assertFreshClientServed(proxy);
}

/**
 * HPACK bomb (CVE-2016-6581 class): one field inserted into the dynamic table (RFC 7541 §6.2.1) at nearly the
 * table's size, then referenced with one-octet indexed fields (§6.1) until the block is as
 * large as `maxHeaderBlockSize` allows: a ~120 KiB block that decodes to ~480 MB of headers.
 * The stream must be refused (RESOURCE_EXHAUSTED naming the limit, or RST_STREAM), the
 * connection must go on (the table stays in sync, RFC 9113 §4.3), and nothing reaches the
 * backend.
 */
async function hpackBomb(proxy: ProxyProcess, backend: TestBackend): Promise<void> {
  const watch = await RssWatch.start(proxy);
  const wire = await H2Wire.open(proxy.address);
  const rounds = 10;
  const blockSize = 120_000;
  const valueSize = 4_000; // the entry is 6 + 4000 + 32 octets: just within 4096 (§4.1)
  const newestEntry = 0x80 | 62; // indexed field, index 62: the newest dynamic entry (§2.3.3)
  const head = concatBytes(
    encodeFieldBlock(grpcRequestFields(TestMethod.echo, proxy.address)),
    Uint8Array.of(0x40), // literal with incremental indexing, new name (RFC 7541 §6.2.1)
    hpackString("x-bomb"),
    hpackString("b".repeat(valueSize)),
  );
  const references = blockSize - head.length;
  const block = concatBytes(head, new Uint8Array(references).fill(newestEntry));
  const answers = new Map<string, number>();
  try {
    const callsBefore = backend.calls();
    for (let round = 0; round < rounds; round++) {
      const streamId = wire.nextStreamId();
      const maxFrame = wire.peerMaxFrameSize;
      const frames: FrameSpec[] = [];
      for (let at = 0; at < block.length; at += maxFrame) {
        const last = at + maxFrame >= block.length;
        frames.push({
          type: at === 0 ? FrameType.HEADERS : FrameType.CONTINUATION,
          flags: (at === 0 ? Flag.END_STREAM : 0) | (last ? Flag.END_HEADERS : 0),
          streamId,
          payload: block.subarray(at, Math.min(at + maxFrame, block.length)),
        });
      }
      await wire.sendFrames(frames);
      const response = await wire.readResponse(streamId);
      // A trailers-only response carries the status in its only field block.
      const message = decodeURIComponent(
        fieldValue(response.trailers ?? response.headers, "grpc-message") ?? "",
      );
      const answer = response.rstCode !== undefined
        ? `RST_STREAM ${errorName(response.rstCode)}`
        : `grpc-status ${response.grpcStatus}`;
      answers.set(answer, (answers.get(answer) ?? 0) + 1);
      const refused = response.rstCode !== undefined ||
        (response.grpcStatus === RESOURCE_EXHAUSTED && message.includes("http2.maxHeaderListSize"));
      assert.ok(
        refused,
        `round ${round}: expected RESOURCE_EXHAUSTED naming http2.maxHeaderListSize or ` +
          `RST_STREAM, got ${answer} "${message}"`,
      );
      // The same connection still carries a valid call.
      const call = await wire.call(TestMethod.echo, MESSAGE);
      assert.equal(call.grpcStatus, 0, `round ${round}: the call after the bomb`);
      assert.deepEqual(call.body, new Uint8Array(grpcFrame(MESSAGE)));
    }
    assert.equal(backend.calls() - callsBefore, rounds, "no bomb may reach the backend");
    note("hpack-bomb", {
      rounds,
      blockBytes: blockSize,
      decodedMBPerBlock: Math.round(references * (6 + valueSize + 32) / 1e6),
      answers: Object.fromEntries(answers),
      ...await watch.assertBounded("HPACK bomb"),
    });
  } finally {
    await wire.close();
  }
  await assertFreshClientServed(proxy);
}

/**
 * A flood of frames that each oblige an answer (PING → PING ACK, SETTINGS → SETTINGS ACK;
 * RFC 9113 §6.7, §6.5.3) from a client that never reads: the answers pile up in the proxy
 * unless it caps them (`maxOutboundControlFrames`, as nghttp2 does since CVE-2019-9512 and
 * CVE-2019-9515). Expect the connection closed, after a GOAWAY ENHANCE_YOUR_CALM when the
 * client gets to read it.
 */
async function unreadControlFlood(
  proxy: ProxyProcess,
  name: string,
  frame: Uint8Array,
): Promise<void> {
  const watch = await RssWatch.start(proxy);
  const wire = await H2Wire.open(proxy.address);
  try {
    wire.pauseReading();
    // Small writes, as a client pacing its frames would send them. The proxy may still read
    // several at once; either way the answers to a client that does not read must not pile up.
    const framesPerBatch = 200;
    const batch = repeated(frame, framesPerBatch);
    const started = Date.now();
    // At most 64 MiB: far more than the kernel's socket buffers can hold unread.
    const { batches, end } = await flood(wire, () => batch, Math.ceil(64 * MiB / batch.length));
    wire.resumeReading();
    await wire.expectClosed(SETTINGS_TIMEOUT_MS + 5_000);
    const goaway = wire.goaway;
    if (goaway !== undefined) {
      assert.equal(
        goaway.errorCode,
        ErrorCode.ENHANCE_YOUR_CALM,
        `GOAWAY ${errorName(goaway.errorCode)} "${goaway.debugData}"`,
      );
      assertNamesLimit(goaway.debugData, "http2.maxOutboundControlFrames");
    }
    note(`${name}-flood-unread`, {
      framesSent: batches * framesPerBatch,
      floodEnd: end,
      closedAfterMs: Date.now() - started,
      answer: goaway ? `GOAWAY ${errorName(goaway.errorCode)}` : wire.closeReason,
      ...await watch.assertBounded(`${name} flood from a client that does not read`),
    });
    assert.notEqual(end, "budget", "the proxy must cut the flood off, not take all of it");
  } finally {
    await wire.close();
  }
  await assertFreshClientServed(proxy);
}

/** PINGs from a client that reads every answer: all are answered, far past the unread cap. */
async function readPingFlood(proxy: ProxyProcess): Promise<void> {
  const watch = await RssWatch.start(proxy);
  const wire = await H2Wire.open(proxy.address);
  const bursts = 100;
  const perBurst = 200;
  const pingsBefore = wire.receivedCounts.get(FrameType.PING) ?? 0;
  try {
    const isAck = (burst: number, index: number) => (f: Frame) =>
      f.type === FrameType.PING && (f.flags & Flag.ACK) !== 0 &&
      readUint32(f.payload, 0) === burst && readUint32(f.payload, 4) === index;
    for (let burst = 0; burst < bursts; burst++) {
      const frames = Array.from(
        { length: perBurst },
        (_, i) =>
          encodeFrame({ type: FrameType.PING, payload: concatBytes(uint32(burst), uint32(i)) }),
      );
      assert.ok(await wire.write(concatBytes(...frames)), `burst ${burst}: write failed`);
      // This burst's last ACK: the proxy answers PINGs in order (RFC 9113 §6.7).
      assert.ok(await wire.readUntil(isAck(burst, perBurst - 1)), `burst ${burst}: no ACK`);
    }
    const acks = (wire.receivedCounts.get(FrameType.PING) ?? 0) - pingsBefore;
    assert.equal(acks, bursts * perBurst, "every PING is answered");
    await wire.expectAlive();
    note("ping-flood-reading", {
      pings: bursts * perBurst,
      acks,
      ...await watch.assertBounded("PINGs from a reading client"),
    });
  } finally {
    await wire.close();
  }
}

/**
 * Empty DATA frames (CVE-2019-9518): each costs the server work and moves nothing, so more
 * than `maxConsecutiveEmptyFrames` in a row is a connection error ENHANCE_YOUR_CALM.
 */
async function emptyDataFlood(proxy: ProxyProcess): Promise<void> {
  const watch = await RssWatch.start(proxy);
  const wire = await H2Wire.open(proxy.address);
  try {
    await wire.sendHeaders(1, grpcRequestFields(TestMethod.chat, proxy.address));
    const batch = repeated(encodeFrame({ type: FrameType.DATA, streamId: 1 }), 4096);
    const { batches, end } = await flood(wire, () => batch, 256);
    const goaway = await wire.expectGoaway(ErrorCode.ENHANCE_YOUR_CALM);
    assertNamesLimit(goaway.debugData, "http2.maxConsecutiveEmptyFrames");
    note("empty-data-flood", {
      framesSent: batches * 4096,
      floodEnd: end,
      ...await watch.assertBounded("empty DATA flood"),
    });
  } finally {
    await wire.close();
  }
  await assertFreshClientServed(proxy);
}

/**
 * Zero-window readers (RFC 9113 §10.5: flow control as an attack): a client that advertises
 * SETTINGS_INITIAL_WINDOW_SIZE 0, never sends WINDOW_UPDATE and opens as many large
 * server-streaming calls as the proxy allows. The relay credits the backend only for what it
 * wrote on, so the proxy holds about one upstream stream window per stream; `sendTimeout`
 * then resets the stuck streams (RST_STREAM CANCEL) and the backend sees the cancels. Other
 * clients must be served while the streams are stuck, not only after they are reset.
 */
async function zeroWindowReaders(proxy: ProxyProcess, backend: TestBackend): Promise<void> {
  const innocentClient = testClient(proxy.address);
  // Connected beforehand, so what the check below measures is the call, not a handshake.
  await unaryCall(innocentClient, TestMethod.echo, MESSAGE);
  const watch = await RssWatch.start(proxy);
  const wire = await H2Wire.open(proxy.address, { settings: [[Setting.INITIAL_WINDOW_SIZE, 0]] });
  try {
    const maxStreams = wire.peerSettings.get(Setting.MAX_CONCURRENT_STREAMS) ?? 100;
    const callsBefore = backend.calls();
    const cancelsBefore = backend.streamCancellations();
    const count = 64;
    const size = 64 * KiB; // 4 MiB per call
    // Every call in one write, so all of them start well within one sendTimeout.
    const fields = grpcRequestFields(TestMethod.stream, proxy.address, [
      ["x-count", String(count)],
      ["x-size", String(size)],
    ]);
    const request = grpcFrame(new Uint8Array());
    const streamIds = Array.from({ length: maxStreams }, () => wire.nextStreamId());
    const started = Date.now();
    await wire.sendFrames(streamIds.flatMap((streamId) => [
      {
        type: FrameType.HEADERS,
        flags: Flag.END_HEADERS,
        streamId,
        payload: encodeFieldBlock(fields),
      },
      { type: FrameType.DATA, flags: Flag.END_STREAM, streamId, payload: request },
    ]));
    await waitFor(() => backend.calls() - callsBefore >= maxStreams, {
      what: "every zero-window call to reach the backend",
    });
    const setupMs = Date.now() - started;
    const resets = () => wire.receivedCounts.get(FrameType.RST_STREAM) ?? 0;
    assert.equal(resets(), 0, `setting up took ${setupMs} ms, past http2.sendTimeout`);

    // Meanwhile: an innocent 2 MiB stream on another connection, through the same backend.
    const innocentStarted = Date.now();
    const { messages } = await within(
      collectStream(serverStream(innocentClient, 32, size)),
      SEND_TIMEOUT_MS + 10_000,
      "the innocent call",
    );
    const innocentMs = Date.now() - innocentStarted;
    const resetsBeforeInnocentDone = resets();
    assert.equal(messages.length, 32);

    // sendTimeout: every stuck stream is reset with CANCEL, and the backend sees the cancel.
    for (const streamId of streamIds) {
      const frame = await wire.readUntil(
        (f) => f.type === FrameType.RST_STREAM && f.streamId === streamId,
        SEND_TIMEOUT_MS + 10_000,
      );
      assert.ok(frame, `stream ${streamId}: the connection closed instead of a RST_STREAM`);
      assert.equal(
        rstCode(frame),
        ErrorCode.CANCEL,
        `stream ${streamId}: ${errorName(rstCode(frame))}`,
      );
    }
    await waitFor(() => backend.streamCancellations() - cancelsBefore >= maxStreams, {
      what: "the backend to see every zero-window call cancelled",
    });
    const dataFrames = wire.receivedCounts.get(FrameType.DATA) ?? 0;
    assert.equal(dataFrames, 0, "nothing may be sent beyond a zero window (§6.9.1)");
    await wire.expectAlive();
    note("zero-window-readers", {
      streams: maxStreams,
      requestedMiBPerStream: mib(count * size),
      setupMs,
      innocentCallMs: innocentMs,
      resetsBeforeInnocentDone,
      ...await watch.assertBounded("zero-window readers"),
    });
    // Checked last, so the properties above are checked (and reported) either way.
    assert.equal(
      resetsBeforeInnocentDone,
      0,
      `the innocent call finished only after ${resetsBeforeInnocentDone} zero-window streams ` +
        `were reset by http2.sendTimeout (${innocentMs} ms after it started): it was starved ` +
        `while they held the backend connection's window, not served meanwhile`,
    );
  } finally {
    innocentClient.close();
    await wire.close();
  }
  await assertFreshClientServed(proxy);
}

/**
 * Connections that never send the client preface (a slowloris on the HTTP/2 handshake):
 * `settingsTimeout` must close every one of them, and the proxy keeps serving meanwhile.
 */
async function silentConnections(proxy: ProxyProcess): Promise<void> {
  const count = await connectionBudget();
  const watch = await RssWatch.start(proxy);
  const started = Date.now();
  const wires = await openMany(
    count,
    // Not even a SETTINGS ACK: any octet would be taken as a bad preface.
    () => H2Wire.open(proxy.address, { preface: null, settings: null, ackSettings: false }),
  );
  try {
    const openedMs = Date.now() - started;
    await assertFreshClientServed(proxy);
    await Promise.all(wires.map((wire) => wire.expectClosed(SETTINGS_TIMEOUT_MS + 10_000)));
    const codes = new Map<string, number>();
    for (const wire of wires) {
      const answer = wire.goaway ? `GOAWAY ${errorName(wire.goaway.errorCode)}` : "no GOAWAY";
      codes.set(answer, (codes.get(answer) ?? 0) + 1);
    }
    note("no-preface", {
      connections: count,
      openedMs,
      allClosedAfterMs: Date.now() - started,
      answers: Object.fromEntries(codes),
      ...await watch.assertBounded("connections without a preface"),
    });
  } finally {
    await closeAll(wires);
  }
  await assertFreshClientServed(proxy);
}

Deno.test({
  name: "hostile input: floods, bombs, stuck readers and silent connections (small limits)",
  ...GRPC_JS,
  async fn(t) {
    const backend = await startTestBackend("hostile");
    const proxy = await startProxy({
      ...clusterConfig([backend.address]),
      http2: {
        maxPrematureResets: MAX_PREMATURE_RESETS,
        prematureResetWindow: "10s",
        sendTimeout: `${SEND_TIMEOUT_MS}ms`,
        settingsTimeout: `${SETTINGS_TIMEOUT_MS}ms`,
      },
    });
    try {
      await warmUp(proxy);
      await t.step(
        "rapid reset (CVE-2023-44487): GOAWAY ENHANCE_YOUR_CALM, innocents served",
        () => rapidReset(proxy, backend),
      );
      await t.step(
        "CONTINUATION flood, small frames: ENHANCE_YOUR_CALM",
        () => continuationFlood(proxy, 100, "http2.maxContinuationFrames"),
      );
      await t.step(
        "CONTINUATION flood, large frames: ENHANCE_YOUR_CALM",
        () => continuationFlood(proxy, 16_000, "http2.maxHeaderBlockSize"),
      );
      await t.step(
        "HPACK bomb: the stream is refused, the connection goes on",
        () => hpackBomb(proxy, backend),
      );
      await t.step("PING flood from a client that does not read: cut off", () =>
        unreadControlFlood(
          proxy,
          "ping",
          encodeFrame({ type: FrameType.PING, payload: new Uint8Array(8) }),
        ));
      await t.step(
        "SETTINGS flood from a client that does not read: cut off",
        () =>
          unreadControlFlood(
            proxy,
            "settings",
            encodeFrame({
              type: FrameType.SETTINGS,
              payload: settingsPayload([[Setting.ENABLE_PUSH, 0]]),
            }),
          ),
      );
      await t.step("PINGs from a client that reads: all answered", () => readPingFlood(proxy));
      await t.step("empty DATA frames flood: ENHANCE_YOUR_CALM", () => emptyDataFlood(proxy));
      await t.step(
        "zero-window readers: memory bounded, reset after sendTimeout",
        () => zeroWindowReaders(proxy, backend),
      );
      await t.step(
        "connections that never send the preface: closed by settingsTimeout",
        () => silentConnections(proxy),
      );
    } finally {
      await proxy.stop();
      await backend.stop();
    }
  },
});

Deno.test({
  name: "hostile input: idle connections cost little and are closed by idleTimeout",
  ...GRPC_JS,
  async fn() {
    const count = await connectionBudget();
    const backend = await startTestBackend("idle");
    const proxy = await startProxy({
      ...clusterConfig([backend.address]),
      http2: { idleTimeout: `${IDLE_TIMEOUT_MS}ms` },
    });
    let wires: H2Wire[] = [];
    try {
      await warmUp(proxy);
      // Warm the accept path and the allocator with a first round of connections.
      await closeAll(await openMany(OPEN_BATCH, () => H2Wire.open(proxy.address)));
      const baseline = await settledRss(proxy);
      const started = Date.now();
      // Preface and SETTINGS (acknowledged both ways), then nothing.
      wires = await openMany(count, () => H2Wire.open(proxy.address));
      const openedMs = Date.now() - started;
      const open = await settledRss(proxy);
      const stillOpen = wires.filter((wire) => !wire.closed).length;
      assert.equal(
        stillOpen,
        count,
        `opening and measuring took ${Date.now() - started} ms, past the idle timeout: ` +
          "the measurement is void",
      );
      const perConnection = (open - baseline) / count;
      await assertFreshClientServed(proxy);
      // Every one gets a graceful GOAWAY (NO_ERROR) and is closed.
      await Promise.all(
        wires.map((wire) => wire.expectGoaway(ErrorCode.NO_ERROR, { timeoutMs: 20_000 })),
      );
      note("idle-connections", {
        connections: count,
        openedMs,
        baselineRssMiB: mib(baseline),
        openRssMiB: mib(open),
        kibPerConnection: Math.round(perConnection / KiB * 10) / 10,
        allClosedAfterMs: Date.now() - started,
      });
      assert.ok(
        perConnection <= IDLE_CONNECTION_BOUND,
        `an idle connection costs ${(perConnection / KiB).toFixed(1)} KiB of proxy RSS`,
      );
      await assertFreshClientServed(proxy);
    } finally {
      await closeAll(wires);
      await proxy.stop();
      await backend.stop();
    }
  },
});

Deno.test({
  name: "hostile input: http2.maxConnections closes the excess at once, then recovers",
  ...GRPC_JS,
  async fn() {
    const maxConnections = 50;
    const backend = await startTestBackend("limit");
    const proxy = await startProxy({
      ...clusterConfig([backend.address]),
      http2: { maxConnections },
    });
    let wires: H2Wire[] = [];
    try {
      // No warm-up: a client connection left over from it would take one of the slots.
      const watch = await RssWatch.start(proxy);
      const started = Date.now();
      // No handshake wait: the excess connections are closed before any SETTINGS.
      wires = await openMany(
        2 * maxConnections,
        () => H2Wire.open(proxy.address, { handshake: false }),
      );
      const served = (wire: H2Wire) => wire.peerSettings.size > 0 && !wire.closed;
      await waitFor(() => wires.every((wire) => served(wire) || wire.closed), {
        what: "every connection to be served or closed",
      });
      const sortedMs = Date.now() - started;
      const refused = wires.filter((wire) => wire.closed);
      assert.equal(wires.filter(served).length, maxConnections, "served connections");
      assert.equal(refused.length, maxConnections, "connections closed at once");
      for (const wire of refused) {
        assert.equal(wire.received.length, 0, "a refused connection gets no frame at all");
      }
      const servedCalls = await Promise.all(
        wires.filter(served).map((wire) => wire.call(TestMethod.echo, MESSAGE)),
      );
      assert.ok(
        servedCalls.every((call) => call.grpcStatus === 0),
        "served connections carry calls",
      );
      assert.ok(
        proxy.output().includes("http2.maxConnections"),
        "the proxy logs that it reached the limit",
      );
      await closeAll(wires);

      // Once they are gone, new connections are served again, up to the limit. The proxy
      // frees a slot when it sees the close, so each open is retried until it is served.
      wires = [];
      for (let i = 0; i < maxConnections; i++) {
        wires.push(
          await waitFor(() => H2Wire.open(proxy.address, { timeoutMs: 2_000 }), {
            what: `connection ${i} to be served after the others closed`,
          }),
        );
      }
      const calls = await Promise.all(wires.map((wire) => wire.call(TestMethod.echo, MESSAGE)));
      assert.ok(calls.every((call) => call.grpcStatus === 0), "new connections carry calls");
      note("max-connections", {
        maxConnections,
        opened: 2 * maxConnections,
        servedOrClosedWithinMs: sortedMs,
        ...await watch.assertBounded("connections past http2.maxConnections"),
      });
    } finally {
      await closeAll(wires);
      await proxy.stop();
      await backend.stop();
    }
  },
});

Deno.test({
  name: "hostile input: file descriptors exhausted, the listener recovers",
  ...GRPC_JS,
  async fn() {
    const backend = await startTestBackend("fds");
    const proxy = await startProxy(clusterConfig([backend.address]), {
      fdLimit: PROXY_FD_LIMIT,
    });
    let wires: H2Wire[] = [];
    // A client connected before the exhaustion, with a call in flight across it.
    const innocentClient = testClient(proxy.address);
    try {
      await warmUp(proxy);
      const watch = await RssWatch.start(proxy);
      let innocentStarted = false;
      const innocent = serverStream(innocentClient, 3, 1024, { "x-hold": "1" });
      innocent.once("data", () => innocentStarted = true);
      const innocentResult = collectStream(innocent);
      await waitFor(() => innocentStarted, { what: "the innocent call's first message" });
      // More connections than the proxy has descriptors: accept fails with EMFILE and the
      // rest wait in the listen backlog.
      wires = await openMany(
        PROXY_FD_LIMIT + 64,
        () => H2Wire.open(proxy.address, { handshake: false }),
      );
      await waitFor(() => proxy.output().includes("accept failed"), {
        what: "the proxy to log the accept error",
      });
      // Connections it already has are still served while it cannot accept.
      const { response } = await unaryCall(innocentClient, TestMethod.echo, MESSAGE, {
        timeoutMs: 5_000,
      });
      assert.deepEqual(response, MESSAGE);
      await closeAll(wires);
      wires = [];
      const started = Date.now();
      await waitFor(async () => {
        await assertFreshClientServed(proxy);
        return true;
      }, { timeoutMs: 10_000, what: "a call to succeed after the descriptors were freed" });
      const recoveredMs = Date.now() - started;
      await waitFor(() => proxy.output().includes("accepting connections again"), {
        what: "the proxy to log its recovery",
      });
      backend.release();
      const { messages } = await within(innocentResult, 10_000, "the call in flight");
      assert.deepEqual(messages, expectedStream(3, 1024), "the call in flight went through");
      const lines = proxy.output().split("\n");
      const acceptErrors = lines.filter((line) => line.includes("accept failed"));
      const recoveries = lines.filter((line) => line.includes("accepting connections again"));
      note("fd-exhaustion", {
        fdLimit: PROXY_FD_LIMIT,
        connections: PROXY_FD_LIMIT + 64,
        recoveredMs,
        acceptErrorLines: acceptErrors.length,
        recoveryLines: recoveries.length,
        acceptError: (JSON.parse(acceptErrors[0] ?? "{}") as { message?: string }).message,
        ...await watch.assertBounded("file descriptors exhausted"),
      });
      assert.equal(acceptErrors.length, 1, "the accept error is logged once, not per retry");
      assert.equal(recoveries.length, 1, "and the recovery once");
    } finally {
      backend.release();
      innocentClient.close();
      await closeAll(wires);
      await proxy.stop();
      await backend.stop();
    }
  },
});
