/**
 * HTTP/2 frame-level conformance of the proxy's client listener, against RFC 9113 itself:
 * a raw frame client (`support/h2_wire.ts`) sends valid, invalid and malformed frames to the
 * real proxy process on loopback and checks the error class and code the RFC prescribes,
 * then that the proxy still serves. Each step names the section it checks.
 *
 * Conventions: a connection error is a GOAWAY with the code, then the TCP connection closing
 * (§5.4.1); a stream error is a RST_STREAM on the stream (§5.4.2), after which the same
 * connection must still carry a call. Where the RFC lets the endpoint pick either class, the
 * step accepts both.
 */
import assert from "node:assert/strict";
import { clusterConfig, GRPC_JS, type ProxyProcess, startProxy } from "./support/harness.ts";
import {
  concatBytes,
  describeFrame,
  encodeFieldBlock,
  ErrorCode,
  expectCallThrough,
  fieldValue,
  Flag,
  FrameType,
  grpcRequestFields,
  H2Wire,
  type HeaderField,
  hpackInteger,
  MAX_WINDOW_SIZE,
  type OpenOptions,
  paddedPayload,
  parseGoaway,
  Setting,
  uint32,
} from "./support/h2_wire.ts";
import { grpcFrame } from "./support/raw_h2.ts";
import { startTestBackend, TestMethod } from "./support/test_backend.ts";

/**
 * The proxy under test advertises this SETTINGS_MAX_CONCURRENT_STREAMS (config
 * `http2.maxConcurrentStreams`), small enough for the §5.1.2 step to reach.
 */
const MAX_CONCURRENT_STREAMS = 8;

const PAYLOAD = new TextEncoder().encode("conformance");
const AUTHORITY = "switchyard.test";

/**
 * Every error here answers the frames just sent, so each expectation sends a PING right away
 * and fails as soon as its ACK comes back first, instead of waiting out a deadline.
 */
const NOW = { immediate: true } as const;

/** A gRPC Echo of {@link PAYLOAD} on `wire` succeeds: the connection still carries calls. */
async function assertCallWorks(wire: H2Wire): Promise<void> {
  const response = await wire.callOk(TestMethod.echo, PAYLOAD);
  assert.deepEqual(response.body, new Uint8Array(grpcFrame(PAYLOAD)));
}

/** A fresh connection still gets a normal gRPC call through, and the process is alive. */
async function assertServing(proxy: ProxyProcess): Promise<void> {
  assert.ok(!proxy.hasExited(), `the proxy exited:\n${proxy.output().slice(-3000)}`);
  const response = await expectCallThrough(proxy.address, TestMethod.echo, PAYLOAD);
  assert.deepEqual(response.body, new Uint8Array(grpcFrame(PAYLOAD)));
}

/**
 * Opens stream `streamId` with a `Hang` request: HEADERS only, so the stream is "open" on the
 * proxy and stays so (the backend never answers). With `halfClose`, the request is finished
 * too (a message with END_STREAM), so the stream is "half-closed (remote)" (RFC 9113 §5.1).
 */
async function openHangStream(wire: H2Wire, streamId: number, halfClose = false): Promise<void> {
  await wire.sendHeaders(streamId, grpcRequestFields(TestMethod.hang, AUTHORITY));
  if (halfClose) await wire.sendData(streamId, grpcFrame(new Uint8Array()), { endStream: true });
}

/** Completes an Echo call on `streamId`, so both sides have sent END_STREAM ("closed"). */
async function completeCall(wire: H2Wire, streamId: number): Promise<void> {
  await wire.startCall(streamId, TestMethod.echo, PAYLOAD);
  const response = await wire.readResponse(streamId);
  assert.equal(response.grpcStatus, 0);
}

/** A field list with one `x-pad` field sized so the encoded block exceeds `minLength`. */
function blockLongerThan(minLength: number): Uint8Array {
  const base = request();
  let padding = minLength;
  let block = encodeFieldBlock([...base, ["x-pad", "a".repeat(padding)]]);
  // Shrink toward exactly minLength + 1; the integer prefix lengths make it converge in a step
  // or two, and any length above minLength serves.
  for (let i = 0; i < 4 && block.length !== minLength + 1; i++) {
    padding += minLength + 1 - block.length;
    block = encodeFieldBlock([...base, ["x-pad", "a".repeat(padding)]]);
  }
  assert.ok(block.length > minLength);
  return block;
}

/** A case: what to send on a fresh connection, and what must follow. */
interface WireCase {
  /** The step name, with its RFC 9113 section. */
  readonly name: string;
  /** How the connection is opened (default: preface, empty SETTINGS, handshake). */
  readonly open?: OpenOptions;
  /** Sends the frames and checks the outcome. */
  readonly run: (wire: H2Wire) => Promise<void>;
}

/** A case whose frames must draw a connection error (GOAWAY with `code`, then close). */
function connectionError(
  name: string,
  code: number | readonly number[],
  send: (wire: H2Wire) => Promise<unknown>,
  open?: OpenOptions,
): WireCase {
  return {
    name,
    open,
    run: async (wire) => {
      await send(wire);
      await wire.expectGoaway(code, NOW);
    },
  };
}

/**
 * A request whose header section is malformed (RFC 9113 §8.1.1): a stream error
 * PROTOCOL_ERROR, and a following call on the same connection works.
 */
function malformedRequest(name: string, fields: readonly HeaderField[]): WireCase {
  return {
    name,
    run: async (wire) => {
      const id = wire.nextStreamId();
      await wire.sendHeaders(id, fields, { endStream: true });
      await wire.expectRst(id, ErrorCode.PROTOCOL_ERROR, NOW);
      await assertCallWorks(wire);
    },
  };
}

/** The header section of a valid gRPC Echo request. */
function request(): HeaderField[] {
  return grpcRequestFields(TestMethod.echo, AUTHORITY);
}

/** {@link request} with `edit` applied. */
function requestWith(edit: (fields: HeaderField[]) => HeaderField[]): HeaderField[] {
  return edit(request());
}

const without = (name: string) => (fields: HeaderField[]) => fields.filter(([n]) => n !== name);
const plus = (...extra: HeaderField[]) => (fields: HeaderField[]) => [...fields, ...extra];

const CASES: readonly WireCase[] = [
  // ---- §8.1: the wire client itself -------------------------------------------------------
  {
    name: "§8.1 a unary gRPC call made of raw frames gets headers, a message and grpc-status 0",
    run: async (wire) => {
      await wire.startCall(1, TestMethod.echo, PAYLOAD);
      const response = await wire.readResponse(1);
      assert.equal(fieldValue(response.headers, ":status"), "200");
      assert.match(fieldValue(response.headers, "content-type") ?? "", /^application\/grpc/);
      assert.equal(fieldValue(response.headers, "x-backend"), "b1");
      assert.deepEqual(response.body, new Uint8Array(grpcFrame(PAYLOAD)));
      assert.equal(fieldValue(response.trailers, "grpc-status"), "0");
      assert.ok(response.ended);
    },
  },

  // ---- §3.4 connection preface --------------------------------------------------------------
  {
    name: "§3.4 an invalid client preface closes the connection (GOAWAY PROTOCOL_ERROR at most)",
    open: {
      preface: new TextEncoder().encode("PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n"),
      handshake: false,
    },
    run: async (wire) => {
      await wire.expectClosed();
      // §3.4: the GOAWAY MAY be omitted, and the server may have sent its own preface
      // (SETTINGS, a WINDOW_UPDATE) before it read ours; a GOAWAY must say PROTOCOL_ERROR.
      for (const frame of wire.received) {
        assert.ok(frame.streamId === 0, `no stream may see a frame: ${describeFrame(frame)}`);
        if (frame.type !== FrameType.GOAWAY) continue;
        assert.equal(parseGoaway(frame).errorCode, ErrorCode.PROTOCOL_ERROR, describeFrame(frame));
      }
    },
  },
  {
    name: "§3.4 an HTTP/1.1 request instead of the preface closes the connection",
    open: {
      preface: new TextEncoder().encode("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"),
      settings: null,
    },
    run: (wire) => wire.expectClosed(),
  },
  connectionError(
    "§3.4 a first frame other than SETTINGS is a PROTOCOL_ERROR",
    ErrorCode.PROTOCOL_ERROR,
    (wire) => wire.sendPing(new Uint8Array(8)),
    { settings: null },
  ),
  {
    name: "§3.4 the server's first frame is SETTINGS, and it acknowledges ours (§6.5.3)",
    run: (wire) => {
      // The handshake in H2Wire.open already waited for both; check the order.
      const first = wire.received[0];
      assert.equal(first.type, FrameType.SETTINGS);
      assert.equal(first.flags & Flag.ACK, 0);
      assert.ok(wire.received.some((f) => f.type === FrameType.SETTINGS && f.flags & Flag.ACK));
      return Promise.resolve();
    },
  },

  // ---- §4.1 frame format ----------------------------------------------------------------------
  {
    name: "§4.1/§5.5 frames of an unknown type are ignored, on stream 0 and on a stream",
    run: async (wire) => {
      await wire.sendFrame({ type: 0xfa, payload: new Uint8Array(8) });
      await wire.sendFrame({ type: 0xfb, flags: 0xff, streamId: 1, payload: new Uint8Array(3) });
      await wire.expectAlive();
      await assertCallWorks(wire);
    },
  },
  {
    name: "§4.1 undefined flags are ignored (PING with every unused flag set)",
    run: async (wire) => {
      const payload = Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8);
      await wire.sendFrame({ type: FrameType.PING, flags: 0xfe, payload });
      const ack = await wire.readUntil((f) =>
        f.type === FrameType.PING || f.type === FrameType.GOAWAY
      );
      assert.equal(ack?.type, FrameType.PING);
      assert.equal(ack.flags & Flag.ACK, Flag.ACK);
      assert.deepEqual(ack.payload, payload);
    },
  },
  {
    name: "§4.1 the reserved bit of the stream identifier is ignored",
    run: async (wire) => {
      const reserved = 0x8000_0000 + 1;
      await wire.sendHeaders(reserved, request());
      await wire.sendData(reserved, grpcFrame(PAYLOAD), { endStream: true });
      const response = await wire.readResponse(1);
      assert.equal(response.grpcStatus, 0);
    },
  },

  // ---- §4.2 frame size -------------------------------------------------------------------------
  {
    name: "§4.2 a DATA frame of 2^14 octets is accepted",
    run: async (wire) => {
      const message = new Uint8Array(16_384 - 5).fill(7);
      const response = await wire.call(TestMethod.echo, message);
      assert.equal(response.grpcStatus, 0);
      assert.equal(response.body.length, 16_384);
    },
  },
  {
    name: "§4.2 a DATA frame over SETTINGS_MAX_FRAME_SIZE is a FRAME_SIZE_ERROR",
    run: async (wire) => {
      await openHangStream(wire, 1);
      await wire.sendData(1, new Uint8Array(wire.peerMaxFrameSize + 1));
      // §4.2: a stream error is enough for a frame that alters only its stream.
      await wire.expectStreamOrConnectionError(1, ErrorCode.FRAME_SIZE_ERROR, NOW);
    },
  },
  connectionError(
    "§4.2 a HEADERS frame over SETTINGS_MAX_FRAME_SIZE is a connection FRAME_SIZE_ERROR",
    ErrorCode.FRAME_SIZE_ERROR,
    (wire) => wire.sendHeaderBlock(1, blockLongerThan(wire.peerMaxFrameSize), { endStream: true }),
  ),

  // ---- §4.3 field section compression ---------------------------------------------------------
  connectionError(
    "§4.3 HPACK: indexed field with index 0 is a COMPRESSION_ERROR",
    ErrorCode.COMPRESSION_ERROR,
    (wire) => wire.sendHeaderBlock(1, Uint8Array.of(0x80), { endStream: true }),
  ),
  connectionError(
    "§4.3 HPACK: index past the static and (empty) dynamic table is a COMPRESSION_ERROR",
    ErrorCode.COMPRESSION_ERROR,
    (wire) => wire.sendHeaderBlock(1, hpackInteger(70, 7, 0x80), { endStream: true }),
  ),
  connectionError(
    "§4.3 HPACK: a literal longer than the block is a COMPRESSION_ERROR",
    ErrorCode.COMPRESSION_ERROR,
    (wire) => wire.sendHeaderBlock(1, Uint8Array.of(0x00, 0x0a, 0x61, 0x62), { endStream: true }),
  ),
  connectionError(
    "§4.3 HPACK: a table size update above SETTINGS_HEADER_TABLE_SIZE is a COMPRESSION_ERROR",
    ErrorCode.COMPRESSION_ERROR,
    (wire) =>
      wire.sendHeaderBlock(
        1,
        concatBytes(hpackInteger(4097, 5, 0x20), encodeFieldBlock(request())),
        { endStream: true },
      ),
  ),
  connectionError(
    "§4.3 HPACK: a Huffman string holding EOS is a COMPRESSION_ERROR",
    ErrorCode.COMPRESSION_ERROR,
    (wire) =>
      wire.sendHeaderBlock(1, Uint8Array.of(0x00, 0x84, 0xff, 0xff, 0xff, 0xff, 0x00), {
        endStream: true,
      }),
  ),

  // ---- §5.1 stream states -----------------------------------------------------------------------
  connectionError(
    "§5.1 idle: DATA is a PROTOCOL_ERROR",
    ErrorCode.PROTOCOL_ERROR,
    (wire) => wire.sendData(1, PAYLOAD, { endStream: true }),
  ),
  connectionError(
    "§5.1/§6.4 idle: RST_STREAM is a PROTOCOL_ERROR",
    ErrorCode.PROTOCOL_ERROR,
    (wire) => wire.sendRst(1, ErrorCode.CANCEL),
  ),
  connectionError(
    "§5.1 idle: WINDOW_UPDATE is a PROTOCOL_ERROR",
    ErrorCode.PROTOCOL_ERROR,
    (wire) => wire.sendWindowUpdate(1, 100),
  ),
  connectionError(
    "§5.1/§6.10 idle: CONTINUATION without HEADERS is a PROTOCOL_ERROR",
    ErrorCode.PROTOCOL_ERROR,
    (wire) => wire.sendContinuation(1, encodeFieldBlock(request()), true),
  ),
  {
    name: "§5.1 half-closed (remote): DATA is STREAM_CLOSED",
    run: async (wire) => {
      await openHangStream(wire, 1, true);
      await wire.sendData(1, PAYLOAD);
      if (await wire.expectStreamOrConnectionError(1, ErrorCode.STREAM_CLOSED, NOW) === "stream") {
        await assertCallWorks(wire);
      }
    },
  },
  {
    name: "§5.1 half-closed (remote): HEADERS is STREAM_CLOSED",
    run: async (wire) => {
      await openHangStream(wire, 1, true);
      await wire.sendHeaders(1, [["x-late", "1"]], { endStream: true });
      if (await wire.expectStreamOrConnectionError(1, ErrorCode.STREAM_CLOSED, NOW) === "stream") {
        await assertCallWorks(wire);
      }
    },
  },
  {
    name: "§5.1 half-closed (remote): WINDOW_UPDATE and PRIORITY are accepted",
    run: async (wire) => {
      await openHangStream(wire, 1, true);
      await wire.sendWindowUpdate(1, 1000);
      await wire.sendPriority(1, { dependency: 0, weight: 15 });
      await wire.expectAlive([1]);
    },
  },
  {
    name: "§5.1 closed (END_STREAM both ways): DATA is STREAM_CLOSED",
    run: async (wire) => {
      await completeCall(wire, 1);
      await wire.sendData(1, PAYLOAD, { endStream: true });
      await wire.expectStreamOrConnectionError(1, ErrorCode.STREAM_CLOSED, NOW);
    },
  },
  {
    name: "§5.1 closed (END_STREAM both ways): WINDOW_UPDATE and RST_STREAM are ignored",
    run: async (wire) => {
      await completeCall(wire, 1);
      await wire.sendWindowUpdate(1, 1000);
      await wire.sendRst(1, ErrorCode.CANCEL);
      await wire.sendPriority(1, { dependency: 0, weight: 15 });
      await wire.expectAlive([1]);
      await assertCallWorks(wire);
    },
  },
  {
    name: "§5.1 closed (client RST_STREAM): DATA is STREAM_CLOSED",
    run: async (wire) => {
      await openHangStream(wire, 1);
      await wire.sendRst(1, ErrorCode.CANCEL);
      await wire.sendData(1, PAYLOAD);
      await wire.expectStreamOrConnectionError(1, ErrorCode.STREAM_CLOSED, NOW);
    },
  },
  {
    name: "§5.1/§5.4.2 closed (client RST_STREAM): RST_STREAM, PRIORITY and WINDOW_UPDATE " +
      "end nothing",
    run: async (wire) => {
      await openHangStream(wire, 1);
      await wire.sendRst(1, ErrorCode.CANCEL);
      // §5.4.2: never a RST_STREAM in answer to a RST_STREAM; PRIORITY is allowed in any state.
      await wire.sendRst(1, ErrorCode.CANCEL);
      await wire.sendPriority(1, { dependency: 0, weight: 15 });
      await wire.expectAlive([1]);
      // §5.1 lets the proxy answer this one with RST_STREAM(STREAM_CLOSED), never with GOAWAY.
      await wire.sendWindowUpdate(1, 1000);
      await wire.expectAlive();
      await assertCallWorks(wire);
    },
  },

  // ---- §5.1.1 stream identifiers ----------------------------------------------------------------
  connectionError(
    "§5.1.1 HEADERS on an even (server-initiated) stream is a PROTOCOL_ERROR",
    ErrorCode.PROTOCOL_ERROR,
    (wire) => wire.sendHeaders(2, request(), { endStream: true }),
  ),
  connectionError(
    "§5.1.1 HEADERS on a stream id lower than one already opened is a PROTOCOL_ERROR",
    ErrorCode.PROTOCOL_ERROR,
    async (wire) => {
      await completeCall(wire, 5);
      await wire.sendHeaders(3, request(), { endStream: true });
    },
  ),
  connectionError(
    "§5.1.1/§5.1 HEADERS reusing a finished stream's id is a connection error",
    // §5.1.1 names PROTOCOL_ERROR; §5.1 names STREAM_CLOSED for frames after END_STREAM.
    [ErrorCode.PROTOCOL_ERROR, ErrorCode.STREAM_CLOSED],
    async (wire) => {
      await completeCall(wire, 1);
      await wire.sendHeaders(1, request(), { endStream: true });
    },
  ),

  // ---- §5.1.2 stream concurrency -----------------------------------------------------------------
  {
    name: "§5.1.2 a stream over SETTINGS_MAX_CONCURRENT_STREAMS is refused " +
      "(http2.maxConcurrentStreams)",
    run: async (wire) => {
      const limit = wire.peerSettings.get(Setting.MAX_CONCURRENT_STREAMS);
      assert.equal(
        limit,
        MAX_CONCURRENT_STREAMS,
        "the proxy must advertise http2.maxConcurrentStreams as SETTINGS_MAX_CONCURRENT_STREAMS",
      );
      for (let i = 0; i < limit; i++) await openHangStream(wire, wire.nextStreamId(), true);
      await wire.expectAlive();
      const over = wire.nextStreamId();
      await openHangStream(wire, over, true);
      await wire.expectRst(over, [ErrorCode.REFUSED_STREAM, ErrorCode.PROTOCOL_ERROR], NOW);
    },
  },

  // ---- §5.5 extensions ----------------------------------------------------------------------------
  connectionError(
    "§5.5 an unknown frame type inside a header block is a PROTOCOL_ERROR",
    ErrorCode.PROTOCOL_ERROR,
    async (wire) => {
      const block = encodeFieldBlock(request());
      await wire.sendHeaderBlock(1, block.subarray(0, 10), { endStream: true, endHeaders: false });
      await wire.sendFrame({ type: 0xfa, payload: new Uint8Array(4) });
      await wire.sendContinuation(1, block.subarray(10), true);
    },
  ),

  // ---- §6.1 DATA ---------------------------------------------------------------------------------
  connectionError(
    "§6.1 DATA on stream 0 is a PROTOCOL_ERROR",
    ErrorCode.PROTOCOL_ERROR,
    (wire) => wire.sendData(0, PAYLOAD),
  ),
  {
    name: "§6.1 padded DATA is accepted and the padding stripped",
    run: async (wire) => {
      await wire.sendHeaders(1, request());
      await wire.sendData(1, grpcFrame(PAYLOAD), { endStream: true, padLength: 32 });
      const response = await wire.readResponse(1);
      assert.equal(response.grpcStatus, 0);
      assert.deepEqual(response.body, new Uint8Array(grpcFrame(PAYLOAD)));
    },
  },
  connectionError(
    "§6.1 DATA whose Pad Length is not below the payload length is a PROTOCOL_ERROR",
    ErrorCode.PROTOCOL_ERROR,
    async (wire) => {
      await openHangStream(wire, 1);
      // Payload: Pad Length (5) + 4 octets; 5 octets of padding cannot fit in 5.
      await wire.sendFrame({
        type: FrameType.DATA,
        flags: Flag.PADDED | Flag.END_STREAM,
        streamId: 1,
        payload: paddedPayload(Uint8Array.of(1, 2, 3, 4), 0, 5),
      });
    },
  ),

  // ---- §6.2 HEADERS ------------------------------------------------------------------------------
  connectionError(
    "§6.2 HEADERS on stream 0 is a PROTOCOL_ERROR",
    ErrorCode.PROTOCOL_ERROR,
    (wire) => wire.sendHeaders(0, request(), { endStream: true }),
  ),
  {
    name: "§6.2 padded HEADERS with priority fields are accepted",
    run: async (wire) => {
      await wire.sendHeaders(1, request(), {
        padLength: 17,
        priority: { dependency: 0, weight: 200, exclusive: true },
      });
      await wire.sendData(1, grpcFrame(PAYLOAD), { endStream: true });
      assert.equal((await wire.readResponse(1)).grpcStatus, 0);
    },
  },
  connectionError(
    "§6.2 HEADERS whose Pad Length is not below the payload length is a PROTOCOL_ERROR",
    ErrorCode.PROTOCOL_ERROR,
    (wire) => {
      const block = encodeFieldBlock(request());
      return wire.sendFrame({
        type: FrameType.HEADERS,
        flags: Flag.PADDED | Flag.END_HEADERS | Flag.END_STREAM,
        streamId: 1,
        payload: paddedPayload(block, 0, block.length + 1),
      });
    },
  ),

  // ---- §6.3 PRIORITY -----------------------------------------------------------------------------
  connectionError(
    "§6.3 PRIORITY on stream 0 is a PROTOCOL_ERROR",
    ErrorCode.PROTOCOL_ERROR,
    (wire) => wire.sendPriority(0, { dependency: 1, weight: 15 }),
  ),
  {
    name: "§6.3 PRIORITY on an idle stream is ignored and opens nothing (a lower id still works)",
    run: async (wire) => {
      await wire.sendPriority(9, { dependency: 0, weight: 15 });
      await wire.sendPriority(11, { dependency: 9, weight: 255, exclusive: true });
      await wire.expectAlive([9, 11]);
      await assertCallWorks(wire);
    },
  },
  {
    name: "§6.3 PRIORITY with a length other than 5 is a stream FRAME_SIZE_ERROR",
    run: async (wire) => {
      await openHangStream(wire, 1);
      await wire.sendFrame({ type: FrameType.PRIORITY, streamId: 1, payload: new Uint8Array(4) });
      await wire.expectRst(1, ErrorCode.FRAME_SIZE_ERROR, NOW);
      await assertCallWorks(wire);
    },
  },

  // ---- §6.4 RST_STREAM ---------------------------------------------------------------------------
  connectionError(
    "§6.4 RST_STREAM on stream 0 is a PROTOCOL_ERROR",
    ErrorCode.PROTOCOL_ERROR,
    (wire) => wire.sendRst(0, ErrorCode.CANCEL),
  ),
  connectionError(
    "§6.4 RST_STREAM with a length other than 4 is a FRAME_SIZE_ERROR",
    ErrorCode.FRAME_SIZE_ERROR,
    async (wire) => {
      await openHangStream(wire, 1);
      await wire.sendFrame({ type: FrameType.RST_STREAM, streamId: 1, payload: new Uint8Array(3) });
    },
  ),

  // ---- §6.5 SETTINGS -----------------------------------------------------------------------------
  {
    name: "§6.5.2 an unknown setting is ignored and the SETTINGS acknowledged",
    run: async (wire) => {
      await wire.sendSettings([[0x00ff, 1], [Setting.MAX_CONCURRENT_STREAMS, 50]]);
      const ack = await wire.readUntil(
        (f) =>
          (f.type === FrameType.SETTINGS && (f.flags & Flag.ACK) !== 0) ||
          f.type === FrameType.GOAWAY,
      );
      assert.equal(ack?.type, FrameType.SETTINGS);
      assert.equal(ack.payload.length, 0);
      await assertCallWorks(wire);
    },
  },
  connectionError(
    "§6.5 SETTINGS on a stream other than 0 is a PROTOCOL_ERROR",
    ErrorCode.PROTOCOL_ERROR,
    (wire) => wire.sendFrame({ type: FrameType.SETTINGS, streamId: 1 }),
  ),
  connectionError(
    "§6.5 a SETTINGS ACK with a payload is a FRAME_SIZE_ERROR",
    ErrorCode.FRAME_SIZE_ERROR,
    (wire) =>
      wire.sendFrame({ type: FrameType.SETTINGS, flags: Flag.ACK, payload: new Uint8Array(6) }),
  ),
  connectionError(
    "§6.5 a SETTINGS length that is not a multiple of 6 is a FRAME_SIZE_ERROR",
    ErrorCode.FRAME_SIZE_ERROR,
    (wire) => wire.sendFrame({ type: FrameType.SETTINGS, payload: new Uint8Array(3) }),
  ),
  connectionError(
    "§6.5.2 SETTINGS_ENABLE_PUSH=2 is a PROTOCOL_ERROR",
    ErrorCode.PROTOCOL_ERROR,
    (wire) => wire.sendSettings([[Setting.ENABLE_PUSH, 2]]),
  ),
  connectionError(
    "§6.5.2 SETTINGS_INITIAL_WINDOW_SIZE above 2^31-1 is a FLOW_CONTROL_ERROR",
    ErrorCode.FLOW_CONTROL_ERROR,
    (wire) => wire.sendSettings([[Setting.INITIAL_WINDOW_SIZE, 2 ** 31]]),
  ),
  connectionError(
    "§6.5.2 SETTINGS_MAX_FRAME_SIZE below 2^14 is a PROTOCOL_ERROR",
    ErrorCode.PROTOCOL_ERROR,
    (wire) => wire.sendSettings([[Setting.MAX_FRAME_SIZE, 16_383]]),
  ),
  connectionError(
    "§6.5.2 SETTINGS_MAX_FRAME_SIZE above 2^24-1 is a PROTOCOL_ERROR",
    ErrorCode.PROTOCOL_ERROR,
    (wire) => wire.sendSettings([[Setting.MAX_FRAME_SIZE, 2 ** 24]]),
  ),

  // ---- §6.6 / §8.4 PUSH_PROMISE ------------------------------------------------------------------
  connectionError(
    "§8.4 a PUSH_PROMISE from the client is a PROTOCOL_ERROR",
    ErrorCode.PROTOCOL_ERROR,
    async (wire) => {
      await completeCall(wire, 1);
      await wire.sendFrame({
        type: FrameType.PUSH_PROMISE,
        flags: Flag.END_HEADERS,
        streamId: 1,
        payload: concatBytes(uint32(2), encodeFieldBlock(request())),
      });
    },
  ),

  // ---- §6.7 PING ---------------------------------------------------------------------------------
  {
    name: "§6.7 PING is answered with an ACK carrying the same payload",
    run: async (wire) => {
      const payload = Uint8Array.of(0xde, 0xad, 0xbe, 0xef, 0, 1, 2, 3);
      await wire.sendPing(payload);
      const ack = await wire.readUntil((f) =>
        f.type === FrameType.PING || f.type === FrameType.GOAWAY
      );
      assert.equal(ack?.type, FrameType.PING);
      assert.equal(ack.flags & Flag.ACK, Flag.ACK);
      assert.equal(ack.streamId, 0);
      assert.deepEqual(ack.payload, payload);
    },
  },
  {
    name: "§6.7 a PING ACK from the client is not answered",
    run: async (wire) => {
      await wire.sendPing(new Uint8Array(8).fill(0xaa), true);
      const payload = new Uint8Array(8).fill(0xbb);
      await wire.sendPing(payload);
      const first = await wire.readUntil((f) => f.type === FrameType.PING);
      assert.deepEqual(first?.payload, payload, "only the second PING may be answered");
      assert.ok(!wire.received.some((f) => f.type === FrameType.PING && f.payload[0] === 0xaa));
    },
  },
  connectionError(
    "§6.7 PING on a stream other than 0 is a PROTOCOL_ERROR",
    ErrorCode.PROTOCOL_ERROR,
    (wire) => wire.sendFrame({ type: FrameType.PING, streamId: 1, payload: new Uint8Array(8) }),
  ),
  connectionError(
    "§6.7 PING with a length other than 8 is a FRAME_SIZE_ERROR",
    ErrorCode.FRAME_SIZE_ERROR,
    (wire) => wire.sendFrame({ type: FrameType.PING, payload: new Uint8Array(6) }),
  ),

  // ---- §6.8 GOAWAY -------------------------------------------------------------------------------
  connectionError(
    "§6.8 GOAWAY on a stream other than 0 is a PROTOCOL_ERROR",
    ErrorCode.PROTOCOL_ERROR,
    (wire) =>
      wire.sendFrame({
        type: FrameType.GOAWAY,
        streamId: 1,
        payload: concatBytes(uint32(0), uint32(ErrorCode.NO_ERROR)),
      }),
  ),

  // ---- §6.9 WINDOW_UPDATE ------------------------------------------------------------------------
  connectionError(
    "§6.9 WINDOW_UPDATE with increment 0 on stream 0 is a PROTOCOL_ERROR",
    ErrorCode.PROTOCOL_ERROR,
    (wire) => wire.sendWindowUpdate(0, 0),
  ),
  {
    name: "§6.9 WINDOW_UPDATE with increment 0 on a stream is a stream PROTOCOL_ERROR",
    run: async (wire) => {
      await openHangStream(wire, 1);
      await wire.sendWindowUpdate(1, 0);
      await wire.expectRst(1, ErrorCode.PROTOCOL_ERROR, NOW);
      await assertCallWorks(wire);
    },
  },
  connectionError(
    "§6.9 WINDOW_UPDATE with a length other than 4 is a FRAME_SIZE_ERROR",
    ErrorCode.FRAME_SIZE_ERROR,
    (wire) => wire.sendFrame({ type: FrameType.WINDOW_UPDATE, payload: new Uint8Array(3) }),
  ),
  connectionError(
    "§6.9.1 a connection window past 2^31-1 is a FLOW_CONTROL_ERROR",
    ErrorCode.FLOW_CONTROL_ERROR,
    (wire) => wire.sendWindowUpdate(0, MAX_WINDOW_SIZE),
  ),
  {
    name: "§6.9.1 a stream window past 2^31-1 is a stream FLOW_CONTROL_ERROR",
    run: async (wire) => {
      await openHangStream(wire, 1);
      await wire.sendWindowUpdate(1, MAX_WINDOW_SIZE);
      await wire.expectRst(1, ErrorCode.FLOW_CONTROL_ERROR, NOW);
      await assertCallWorks(wire);
    },
  },
  connectionError(
    "§6.9.2 SETTINGS_INITIAL_WINDOW_SIZE pushing a stream window past 2^31-1 is a " +
      "FLOW_CONTROL_ERROR",
    ErrorCode.FLOW_CONTROL_ERROR,
    async (wire) => {
      await openHangStream(wire, 1);
      // The stream's send window goes to exactly 2^31-1, then the new initial size adds 1.
      await wire.sendWindowUpdate(1, MAX_WINDOW_SIZE - 65_535);
      await wire.sendSettings([[Setting.INITIAL_WINDOW_SIZE, 65_536]]);
    },
  ),

  // ---- §6.10 CONTINUATION ------------------------------------------------------------------------
  {
    name: "§6.10 a header block split over HEADERS and two CONTINUATION frames is accepted",
    run: async (wire) => {
      const block = encodeFieldBlock(request());
      const third = Math.ceil(block.length / 3);
      await wire.sendHeaderBlock(1, block.subarray(0, third), { endHeaders: false });
      await wire.sendContinuation(1, block.subarray(third, 2 * third), false);
      await wire.sendContinuation(1, block.subarray(2 * third), true);
      await wire.sendData(1, grpcFrame(PAYLOAD), { endStream: true });
      assert.equal((await wire.readResponse(1)).grpcStatus, 0);
    },
  },
  connectionError(
    "§6.10 HEADERS without END_HEADERS followed by DATA is a PROTOCOL_ERROR",
    ErrorCode.PROTOCOL_ERROR,
    async (wire) => {
      await wire.sendHeaders(1, request(), { endHeaders: false });
      await wire.sendData(1, grpcFrame(PAYLOAD), { endStream: true });
    },
  ),
  connectionError(
    "§6.10 HEADERS without END_HEADERS followed by PING is a PROTOCOL_ERROR",
    ErrorCode.PROTOCOL_ERROR,
    async (wire) => {
      await wire.sendHeaders(1, request(), { endHeaders: false, endStream: true });
      await wire.sendPing(new Uint8Array(8));
    },
  ),
  connectionError(
    "§6.10 a CONTINUATION on another stream than its HEADERS is a PROTOCOL_ERROR",
    ErrorCode.PROTOCOL_ERROR,
    async (wire) => {
      const block = encodeFieldBlock(request());
      await wire.sendHeaderBlock(1, block.subarray(0, 10), { endHeaders: false, endStream: true });
      await wire.sendContinuation(3, block.subarray(10), true);
    },
  ),
  connectionError(
    "§6.10 CONTINUATION on stream 0 is a PROTOCOL_ERROR",
    ErrorCode.PROTOCOL_ERROR,
    async (wire) => {
      const block = encodeFieldBlock(request());
      await wire.sendHeaderBlock(1, block.subarray(0, 10), { endHeaders: false, endStream: true });
      await wire.sendContinuation(0, block.subarray(10), true);
    },
  ),
  connectionError(
    "§6.10 CONTINUATION after a HEADERS that had END_HEADERS is a PROTOCOL_ERROR",
    ErrorCode.PROTOCOL_ERROR,
    async (wire) => {
      await openHangStream(wire, 1);
      await wire.sendContinuation(1, encodeFieldBlock([["x-more", "1"]]), true);
    },
  ),

  // ---- §8.1 message framing ----------------------------------------------------------------------
  {
    name: "§8.1 a second HEADERS without END_STREAM makes the request malformed",
    run: async (wire) => {
      await wire.sendHeaders(1, request());
      await wire.sendHeaders(1, [["x-trailer", "1"]]);
      await wire.expectRst(1, ErrorCode.PROTOCOL_ERROR, NOW);
      await assertCallWorks(wire);
    },
  },
  {
    name: "§8.1 trailers carrying a pseudo-header make the request malformed",
    run: async (wire) => {
      await wire.sendHeaders(1, request());
      await wire.sendData(1, grpcFrame(PAYLOAD));
      await wire.sendHeaders(1, [[":path", "/test.Test/Echo"], ["x-trailer", "1"]], {
        endStream: true,
      });
      await wire.expectRst(1, ErrorCode.PROTOCOL_ERROR, NOW);
      await assertCallWorks(wire);
    },
  },
  {
    name: "§8.1.1 content-length that differs from the DATA received makes it malformed",
    run: async (wire) => {
      await wire.sendHeaders(1, requestWith(plus(["content-length", "100"])));
      await wire.sendData(1, grpcFrame(PAYLOAD), { endStream: true });
      await wire.expectRst(1, ErrorCode.PROTOCOL_ERROR, NOW);
      await assertCallWorks(wire);
    },
  },

  // ---- §8.2 fields -------------------------------------------------------------------------------
  malformedRequest(
    "§8.2 an uppercase field name makes the request malformed",
    requestWith(plus(["X-Upper", "1"])),
  ),
  malformedRequest(
    "§8.2.1 a field name with a space makes the request malformed",
    requestWith(plus(["x bad", "1"])),
  ),
  malformedRequest(
    "§8.2.1 a field value with NUL makes the request malformed",
    requestWith(plus(["x-nul", "a\x00b"])),
  ),
  malformedRequest(
    "§8.2.1 a field value with CR LF makes the request malformed",
    requestWith(plus(["x-crlf", "a\r\nx-injected: 1"])),
  ),
  malformedRequest(
    "§8.2.1 a field value starting with whitespace makes the request malformed",
    requestWith(plus(["x-space", " leading"])),
  ),
  ...(["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"] as const)
    .map((name) =>
      malformedRequest(
        `§8.2.2 the connection-specific field "${name}" makes the request malformed`,
        requestWith(plus([name, name === "transfer-encoding" ? "chunked" : "keep-alive"])),
      )
    ),
  malformedRequest(
    '§8.2.2 "te" with a value other than "trailers" makes the request malformed',
    requestWith((f) => [...without("te")(f), ["te", "gzip"]]),
  ),

  // ---- §8.3 pseudo-header fields ----------------------------------------------------------------
  ...([":method", ":scheme", ":path"] as const).map((name) =>
    malformedRequest(
      `§8.3.1 a request without ${name} is malformed`,
      requestWith(without(name)),
    )
  ),
  malformedRequest(
    "§8.3.1 an empty :path is malformed",
    requestWith((f) => f.map(([n, v]) => [n, n === ":path" ? "" : v] as const)),
  ),
  malformedRequest(
    "§8.3 an unknown pseudo-header is malformed",
    requestWith((f) => [[":foo", "bar"], ...f]),
  ),
  malformedRequest(
    "§8.3 a response pseudo-header (:status) in a request is malformed",
    requestWith((f) => [[":status", "200"], ...f]),
  ),
  malformedRequest(
    "§8.3 a pseudo-header after a regular field is malformed",
    requestWith((f) => [...without(":authority")(f), [":authority", AUTHORITY]]),
  ),
  malformedRequest(
    "§8.3 a repeated pseudo-header is malformed",
    requestWith((f) => [f[0], f[1], f[2], [":path", "/test.Test/Echo"], ...f.slice(3)]),
  ),
];

Deno.test({
  name: "h2 conformance: the proxy's listener against RFC 9113",
  ...GRPC_JS,
  fn: async (t) => {
    const backend = await startTestBackend("b1");
    const proxy = await startProxy({
      ...clusterConfig([backend.address]),
      http2: { maxConcurrentStreams: MAX_CONCURRENT_STREAMS },
    });
    try {
      for (const wireCase of CASES) {
        await t.step(wireCase.name, async () => {
          const wire = await H2Wire.open(proxy.address, wireCase.open);
          try {
            await wireCase.run(wire);
          } finally {
            await wire.close();
          }
          await assertServing(proxy);
        });
      }

      await t.step("§6.8 after a client GOAWAY the proxy finishes the call in flight", async () => {
        const wire = await H2Wire.open(proxy.address);
        try {
          // Stream: the backend sends one message, then holds the rest until released.
          await wire.startCall(1, TestMethod.stream, new Uint8Array(), [
            ["x-count", "3"],
            ["x-size", "16"],
            ["x-hold", "1"],
          ]);
          const first = await wire.readUntil((f) => f.streamId === 1 && f.type === FrameType.DATA);
          assert.ok(first, "the first message must arrive before the GOAWAY");
          await wire.sendGoaway(0, ErrorCode.NO_ERROR);
          // The proxy may answer with its own graceful GOAWAY (§6.8); the stream must go on.
          backend.release();
          const rest = await wire.readResponse(1);
          assert.equal(rest.grpcStatus, 0, "the call in flight must finish normally");
          assert.equal(first.payload.length + rest.body.length, 3 * (5 + 16));
        } finally {
          await wire.close();
        }
        await assertServing(proxy);
      });
    } finally {
      await proxy.stop();
      await backend.stop();
    }
  },
});
