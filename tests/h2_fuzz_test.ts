/**
 * HTTP/2 fuzzing of the proxy's client listener: for a bounded time, many connections send a
 * valid preface and SETTINGS, then random and mutated frame sequences (random types, flags,
 * stream ids and lengths; bit-flipped valid frames; truncated frames; random HPACK bytes),
 * built by a seeded PRNG. The seed is printed; `FUZZ_SEED=<seed>` replays a run,
 * `FUZZ_CONNECTION=<n>` (with the seed) replays only connection n of it, and `FUZZ_MS`
 * changes the run's length.
 *
 * What must hold: the proxy process never exits; every connection ends in a GOAWAY, a reset
 * or a close, or keeps working (answers a PING) — none hangs past its deadline; normal calls
 * keep working during and after the fuzzing; and no error escaped the proxy's own handling
 * (`stop()` fails on one).
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { clusterConfig, GRPC_JS, type ProxyProcess, startProxy } from "./support/harness.ts";
import {
  concatBytes,
  encodeFieldBlock,
  encodeFrame,
  ErrorCode,
  errorName,
  expectCallThrough,
  Flag,
  FRAME_HEADER_LENGTH,
  FrameType,
  grpcRequestFields,
  H2Wire,
  hpackInteger,
  parseGoaway,
  priorityPayload,
  settingsPayload,
  uint32,
} from "./support/h2_wire.ts";
import { grpcFrame } from "./support/raw_h2.ts";
import { startTestBackend, testClient, TestMethod, unaryCall } from "./support/test_backend.ts";

/** Fuzzing time, after which no new connection starts. */
const FUZZ_MS = Number(Deno.env.get("FUZZ_MS") ?? 10_000);
/** Replays just this connection of the seed's run, when set. */
const ONLY_CONNECTION = Deno.env.get("FUZZ_CONNECTION");
/** Connections fuzzed at once. */
const WORKERS = 4;
/** How long one connection may take to answer, error out or close at each stage. */
const DEADLINE_MS = 3_000;
/** After every this many fuzzed connections, an ordinary call must still work. */
const CONTROL_EVERY = 50;

/** A small seeded PRNG (mulberry32), so every run replays from its printed seed. */
class Rng {
  #state: number;

  constructor(seed: number) {
    this.#state = seed >>> 0;
  }

  /** A float in [0, 1). */
  next(): number {
    this.#state = (this.#state + 0x6d2b_79f5) >>> 0;
    let t = this.#state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  }

  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** True with probability `p`. */
  chance(p: number): boolean {
    return this.next() < p;
  }

  /** One element of `items`. */
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)];
  }

  /** `n` random octets. */
  bytes(n: number): Uint8Array {
    return Uint8Array.from({ length: n }, () => this.int(256));
  }
}

/** One piece of a connection's script: octets to write, and what they are (for replay logs). */
interface Piece {
  readonly bytes: Uint8Array;
  readonly note: string;
}

const PATHS = [
  TestMethod.echo,
  TestMethod.hang,
  TestMethod.collect,
  TestMethod.chat,
  TestMethod.failImmediately,
  "/no.Such/Method",
];

/** Builds the frames of one fuzzed connection; every choice comes from `rng`. */
class ScriptBuilder {
  readonly pieces: Piece[] = [];
  readonly #rng: Rng;
  #nextStream = 1;

  constructor(rng: Rng) {
    this.#rng = rng;
  }

  /** A stream id: usually a fresh or recent client stream, sometimes anything at all. */
  streamId(): number {
    const rng = this.#rng;
    const roll = rng.int(10);
    if (roll < 4) return this.#fresh();
    if (roll < 6) return Math.max(1, this.#nextStream - 2);
    if (roll < 7) return 0;
    if (roll < 8) return rng.int(8);
    if (roll < 9) return rng.int(2 ** 31);
    return (rng.int(2 ** 31) | 0x8000_0000) >>> 0;
  }

  #fresh(): number {
    const id = this.#nextStream;
    this.#nextStream += 2;
    return id;
  }

  /** Adds a valid frame of some kind (it may still be illegal where it lands). */
  valid(): Uint8Array {
    const rng = this.#rng;
    switch (rng.int(9)) {
      case 0:
      case 1: {
        const fields = grpcRequestFields(rng.pick(PATHS), "fuzz.test", [[
          "x-fuzz",
          String(rng.int(1e6)),
        ]]);
        const id = rng.chance(0.8) ? this.#fresh() : this.streamId();
        return encodeFrame({
          type: FrameType.HEADERS,
          flags: Flag.END_HEADERS | (rng.chance(0.4) ? Flag.END_STREAM : 0),
          streamId: id,
          payload: encodeFieldBlock(fields),
        });
      }
      case 2:
        return encodeFrame({
          type: FrameType.DATA,
          flags: rng.chance(0.5) ? Flag.END_STREAM : 0,
          streamId: this.streamId(),
          payload: grpcFrame(rng.bytes(rng.int(200))),
        });
      case 3:
        return encodeFrame({
          type: FrameType.WINDOW_UPDATE,
          streamId: this.streamId(),
          payload: uint32(1 + rng.int(1 << 20)),
        });
      case 4:
        return encodeFrame({ type: FrameType.PING, payload: rng.bytes(8) });
      case 5:
        return encodeFrame({
          type: FrameType.SETTINGS,
          payload: settingsPayload(
            Array.from({ length: rng.int(4) }, () => [1 + rng.int(8), rng.int(2 ** 24)] as const),
          ),
        });
      case 6:
        return encodeFrame({
          type: FrameType.PRIORITY,
          streamId: this.streamId(),
          payload: priorityPayload({ dependency: this.streamId(), weight: rng.int(256) }),
        });
      case 7:
        return encodeFrame({
          type: FrameType.RST_STREAM,
          streamId: this.streamId(),
          payload: uint32(rng.int(14)),
        });
      default: {
        // A request whose field block is split over HEADERS and CONTINUATION frames.
        const block = encodeFieldBlock(grpcRequestFields(rng.pick(PATHS), "fuzz.test"));
        const cut = 1 + rng.int(block.length - 1);
        const id = this.#fresh();
        return concatBytes(
          encodeFrame({
            type: FrameType.HEADERS,
            flags: Flag.END_STREAM,
            streamId: id,
            payload: block.subarray(0, cut),
          }),
          encodeFrame({
            type: FrameType.CONTINUATION,
            flags: Flag.END_HEADERS,
            streamId: rng.chance(0.9) ? id : this.streamId(),
            payload: block.subarray(cut),
          }),
        );
      }
    }
  }

  /** Adds a whole valid gRPC call on a fresh stream: request HEADERS, then a message. */
  call(): void {
    const rng = this.#rng;
    const id = this.#fresh();
    const path = rng.pick(PATHS);
    this.#add(
      concatBytes(
        encodeFrame({
          type: FrameType.HEADERS,
          flags: Flag.END_HEADERS,
          streamId: id,
          payload: encodeFieldBlock(grpcRequestFields(path, "fuzz.test")),
        }),
        encodeFrame({
          type: FrameType.DATA,
          flags: Flag.END_STREAM,
          streamId: id,
          payload: grpcFrame(rng.bytes(rng.int(64))),
        }),
      ),
      `call ${path} on stream ${id}`,
    );
  }

  /**
   * Adds one piece: with probability `mutationRate` a mutation, otherwise valid traffic, so
   * some connections reach deeper states (streams in flight) before they go wrong.
   */
  addPiece(mutationRate: number): void {
    const rng = this.#rng;
    if (!rng.chance(mutationRate)) {
      if (rng.chance(0.6)) this.call();
      else this.#add(this.valid(), "valid frame");
      return;
    }
    const roll = rng.int(100);
    if (roll < 25) {
      this.#add(this.valid(), "valid frame");
    } else if (roll < 55) {
      // Any type (known types weighted up), any flags, any stream, a payload of any size.
      const type = rng.chance(0.7) ? rng.int(10) : rng.int(256);
      const length = rng.chance(0.9) ? rng.int(48) : rng.int(400);
      this.#add(
        encodeFrame({
          type,
          flags: rng.int(256),
          streamId: this.streamId(),
          payload: rng.bytes(length),
        }),
        `random frame type ${type}`,
      );
    } else if (roll < 75) {
      const frame = this.valid();
      const flips = 1 + rng.int(4);
      for (let i = 0; i < flips; i++) frame[rng.int(frame.length)] ^= 1 << rng.int(8);
      this.#add(frame, `valid frame with ${flips} bit flips`);
    } else if (roll < 88) {
      // Random octets as a field block: HPACK garbage (RFC 9113 §4.3).
      const block = rng.chance(0.5)
        ? rng.bytes(1 + rng.int(40))
        : concatBytes(hpackInteger(rng.int(300), 7, 0x80), rng.bytes(rng.int(10)));
      this.#add(
        encodeFrame({
          type: FrameType.HEADERS,
          flags: Flag.END_HEADERS | (rng.chance(0.5) ? Flag.END_STREAM : 0),
          streamId: this.#fresh(),
          payload: block,
        }),
        "HEADERS with random HPACK octets",
      );
    } else if (roll < 95) {
      const frame = this.valid();
      this.#add(frame.subarray(0, rng.int(frame.length)), "truncated valid frame");
    } else {
      // A Length field that lies, up to 2^24-1 (RFC 9113 §4.2).
      const payload = rng.bytes(rng.int(32));
      this.#add(
        encodeFrame({
          type: rng.int(10),
          streamId: this.streamId(),
          payload,
          length: rng.chance(0.5) ? rng.int(1 << 24) : payload.length + rng.int(64),
        }),
        "frame with a lying Length",
      );
    }
  }

  #add(bytes: Uint8Array, note: string): void {
    this.pieces.push({ bytes, note });
  }
}

/** True when `bytes` is a whole number of frames: the peer's framing is still in step. */
function framingIntact(bytes: Uint8Array): boolean {
  let offset = 0;
  while (offset + FRAME_HEADER_LENGTH <= bytes.length) {
    const length = (bytes[offset] << 16) | (bytes[offset + 1] << 8) | bytes[offset + 2];
    offset += FRAME_HEADER_LENGTH + length;
  }
  return offset === bytes.length;
}

/** How one fuzzed connection ended. */
type Outcome =
  | { readonly kind: "alive" }
  | { readonly kind: "goaway"; readonly code: number }
  | { readonly kind: "closed" }
  | { readonly kind: "hang"; readonly detail: string };

/** The pieces of connection `index` in the run with seed `seed`: a pure function of both. */
function buildScript(seed: number, index: number): Piece[] {
  const rng = new Rng((seed ^ Math.imul(index + 1, 0x9e37_79b9)) >>> 0);
  const builder = new ScriptBuilder(rng);
  const mutationRate = rng.pick([0.05, 0.2, 0.5, 1]);
  const count = 1 + rng.int(24);
  for (let i = 0; i < count; i++) builder.addPiece(mutationRate);
  return builder.pieces;
}

/**
 * Runs one script on a fresh connection: the handshake, the pieces, then the check. With
 * framing in step, a PING must be answered, or the connection must end; with framing out of
 * step (truncated or lying frames) the proxy cannot parse further, so the client half-closes
 * and the proxy must close. Returns the outcome and how many RST_STREAM frames arrived.
 */
async function runScript(
  address: string,
  script: readonly Piece[],
): Promise<{ outcome: Outcome; rsts: number }> {
  const wire = await H2Wire.open(address, { timeoutMs: DEADLINE_MS });
  try {
    for (const piece of script) {
      if (!await wire.write(piece.bytes)) break;
    }
    const outcome = framingIntact(concatBytes(...script.map((p) => p.bytes)))
      ? await settleByPing(wire)
      : await settleByHalfClose(wire);
    const rsts = wire.receivedCounts.get(FrameType.RST_STREAM) ?? 0;
    return { outcome, rsts };
  } finally {
    await wire.close();
  }
}

/** Classifies the end of a connection that saw a GOAWAY or closed. */
function ended(wire: H2Wire): Outcome {
  const goaway = wire.goaway;
  return goaway ? { kind: "goaway", code: goaway.errorCode } : { kind: "closed" };
}

async function settleByPing(wire: H2Wire): Promise<Outcome> {
  const payload = Uint8Array.of(0xf0, 0x22, 1, 2, 3, 4, 5, 6);
  await wire.sendPing(payload);
  try {
    const frame = await wire.readUntil(
      (f) =>
        f.type === FrameType.GOAWAY ||
        (f.type === FrameType.PING && (f.flags & Flag.ACK) !== 0 && f.payload[0] === 0xf0 &&
          f.payload[1] === 0x22),
      DEADLINE_MS,
    );
    if (!frame) return ended(wire);
    if (frame.type === FrameType.PING) return { kind: "alive" };
    // §5.4.1: after a GOAWAY for an error the connection must close. A graceful GOAWAY
    // (NO_ERROR) may keep it open for streams in flight; the client then hangs up.
    if (parseGoaway(frame).errorCode !== ErrorCode.NO_ERROR) await wire.expectClosed(DEADLINE_MS);
    return ended(wire);
  } catch (error) {
    return { kind: "hang", detail: String(error) };
  }
}

async function settleByHalfClose(wire: H2Wire): Promise<Outcome> {
  await wire.closeWrite();
  try {
    await wire.expectClosed(DEADLINE_MS);
    return ended(wire);
  } catch (error) {
    return { kind: "hang", detail: `still open ${DEADLINE_MS}ms after the client's FIN: ${error}` };
  }
}

/**
 * A call the proxy failed because its backend closed the connection under it, or sent
 * GOAWAY with an error: hyper's h2, under Deno's node:http2, does so past 20 streams reset
 * before it accepted them (`max_pending_accept_reset_streams`).
 */
const BACKEND_DROPPED =
  /"grpc-status","14"\],\["grpc-message","cluster echo: (connection to )?backend [^ ]+ (unavailable|lost): [^"]*(closed by peer|backend sent GOAWAY)/;

/** The proxy is alive and an ordinary call on a fresh connection succeeds. */
async function assertServing(proxy: ProxyProcess, what: string): Promise<void> {
  assert.ok(!proxy.hasExited(), `the proxy exited ${what}:\n${proxy.output().slice(-3000)}`);
  // The test backend is itself `node:http2` and sends the proxy GOAWAY under this load; the
  // calls caught by it come back REFUSED_STREAM, which expectCallThrough retries.
  await expectCallThrough(proxy.address, TestMethod.echo, Uint8Array.of(1, 2, 3), DEADLINE_MS);
}

Deno.test({
  name: "h2 fuzz: random and mutated frames never crash, hang or break the proxy",
  ...GRPC_JS,
  fn: async () => {
    const given = Deno.env.get("FUZZ_SEED");
    const seed = given ? Number(given) >>> 0 : crypto.getRandomValues(new Uint32Array(1))[0];
    console.log(
      `h2 fuzz seed ${seed} (replay: FUZZ_SEED=${seed} deno test -A tests/h2_fuzz_test.ts)`,
    );
    const backend = await startTestBackend("b1");
    const proxy = await startProxy(clusterConfig([backend.address]));
    const outcomes = new Map<string, number>();
    const failures: string[] = [];
    const inFlight = new Map<number, Piece[]>();
    let connections = 0;
    let rsts = 0;
    try {
      const stopAt = Date.now() + FUZZ_MS;
      let next = ONLY_CONNECTION === undefined ? 0 : Number(ONLY_CONNECTION);
      const last = ONLY_CONNECTION === undefined ? Infinity : next;
      const worker = async () => {
        while (
          Date.now() < stopAt && next <= last && failures.length === 0 && !proxy.hasExited()
        ) {
          const index = next++;
          const script = buildScript(seed, index);
          inFlight.set(index, script);
          try {
            const result = await runScript(proxy.address, script);
            connections++;
            rsts += result.rsts;
            const { outcome } = result;
            const key = outcome.kind === "goaway"
              ? `goaway ${errorName(outcome.code)}`
              : outcome.kind;
            outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
            if (outcome.kind === "hang") {
              failures.push(`connection ${index} hung: ${outcome.detail}\n  ${describe(script)}`);
            }
            if (connections % CONTROL_EVERY === 0) {
              await assertServing(proxy, "during the fuzzing");
            }
          } catch (error) {
            if (BACKEND_DROPPED.test(String(error))) {
              // The backend, node:http2 itself, drops a connection when the resets forwarded
              // for the fuzzed clients outrun its own guard, and calls in flight on it are lost;
              // the proxy answered UNAVAILABLE naming the backend, which is its job. Counted.
              outcomes.set(
                "backend dropped a call",
                (outcomes.get("backend dropped a call") ?? 0) + 1,
              );
            } else if (!proxy.hasExited()) {
              failures.push(`connection ${index}: ${error}\n  ${describe(script)}`);
            }
          }
          if (!proxy.hasExited()) inFlight.delete(index);
        }
      };
      await Promise.all(Array.from({ length: WORKERS }, worker));
      console.log(
        `h2 fuzz: ${connections} connections, ${rsts} RST_STREAM seen, outcomes ${
          JSON.stringify(Object.fromEntries(outcomes))
        }`,
      );
      if (proxy.hasExited()) {
        const { code, signal } = await proxy.exited;
        const scripts = [...inFlight].map(([index, script]) => `#${index}: ${describe(script)}`);
        assert.fail(
          `the proxy exited (code ${code}, signal ${signal}) with seed ${seed}; connections in ` +
            `flight:\n${scripts.join("\n")}\nproxy output:\n${proxy.output().slice(-3000)}`,
        );
      }
      assert.deepEqual(failures, [], `seed ${seed}`);
      await assertServing(proxy, "after the fuzzing");
      const client = testClient(proxy.address);
      try {
        const { response } = await unaryCall(client, TestMethod.echo, Buffer.from("after fuzz"));
        assert.equal(response.toString(), "after fuzz");
      } finally {
        client.close();
      }
      assert.equal(await proxy.stop(), 0, "the proxy must shut down cleanly");
    } finally {
      if (!proxy.hasExited()) await proxy.stop().catch(() => {});
      await backend.stop();
    }
  },
});

/** A script's pieces, for a failure message. */
function describe(script: readonly Piece[]): string {
  return script.map((piece) => piece.note).join("; ");
}
