/**
 * Regression tests for defects an independent review found in the HTTP/2 engine, the relay
 * and the backend pool (the numbers are the review's). Each test drives the real proxy
 * process on loopback with raw frame clients (`support/h2_wire.ts`) and, where the backend
 * has to misbehave on the wire, the raw-frame backend of `support/h2_raw_backend.ts`; each
 * failed on the engine before its fix.
 */
import assert from "node:assert/strict";
import { MAX_STREAM_ID } from "../src/h2/frame.ts";
import { GrpcStatus } from "../src/proxy/grpc_status.ts";
import { adminRequest, adminUrl, startAdminProxy } from "./support/admin_client.ts";
import {
  clusterConfig,
  GRPC_JS,
  type ProxyProcess,
  startProxy,
  waitFor,
} from "./support/harness.ts";
import {
  dataFrame,
  GRPC_RESPONSE_HEADERS,
  type H2RawBackend,
  headersFrame,
  startH2RawBackend,
} from "./support/h2_raw_backend.ts";
import { grpcFrame } from "./support/raw_h2.ts";
import {
  concatBytes,
  DEFAULT_WINDOW_SIZE,
  describeFrame,
  encodeFieldBlock,
  ErrorCode,
  expectCallThrough,
  fieldValue,
  Flag,
  type Frame,
  FrameType,
  grpcRequestFields,
  H2Wire,
  type OpenOptions,
  paddedPayload,
  parseGoaway,
  readUint32,
  Setting,
  uint32,
} from "./support/h2_wire.ts";
import { startTestBackend, type TestBackend, TestMethod } from "./support/test_backend.ts";

const PAYLOAD = new TextEncoder().encode("regression");

/** How long a stopping proxy gets before it is killed (a frozen one never exits itself). */
const STOP_TIMEOUT_MS = 8_000;

/**
 * Stops `proxy` gracefully, failing on errors it logged; kills it when it does not exit in
 * time, so a test of a frozen proxy fails instead of hanging.
 */
async function stopProxy(proxy: ProxyProcess): Promise<void> {
  const timer = setTimeout(() => {
    try {
      proxy.child.kill("SIGKILL");
    } catch { /* exited already */ }
  }, STOP_TIMEOUT_MS);
  try {
    await proxy.stop();
  } finally {
    clearTimeout(timer);
  }
}

/** A backend of either kind the tests use: the grpc-js test backend or the raw-frame one. */
type Backend = TestBackend | H2RawBackend;

/** What {@link withProxy} starts in front of a test's backend. */
interface ProxyFixture {
  /** A proxy of `clusterConfig` for the backend, with the test's `http2` settings. */
  readonly proxy: ProxyProcess;
  /** A raw frame client connected to the proxy. */
  readonly wire: H2Wire;
  /** Opens another raw frame client to the proxy; it is closed after `wire`. */
  connect(options?: OpenOptions): Promise<H2Wire>;
}

/** Options for {@link withProxy}. */
interface ProxyFixtureOptions {
  /** The backend the proxy serves; stopped (or closed) once the test is done. */
  readonly backend: Backend;
  /** The proxy's `http2` config section, when the test sets one. */
  readonly http2?: Record<string, unknown>;
  /** How the first client, `wire`, connects. */
  readonly wire?: OpenOptions;
  /** Starts the proxy: {@link startProxy} by default. */
  readonly start?: (config: Record<string, unknown>) => Promise<ProxyProcess>;
}

/**
 * Starts a proxy in front of `backend` and connects a raw frame client, runs `body`, then
 * closes the clients, stops the proxy ({@link stopProxy}) and stops the backend, in that
 * order, whether `body` passed or failed.
 */
async function withProxy(
  { backend, http2, wire: wireOptions, start = startProxy }: ProxyFixtureOptions,
  body: (fixture: ProxyFixture) => Promise<void>,
): Promise<void> {
  try {
    const proxy = await start({ ...clusterConfig([backend.address]), ...(http2 && { http2 }) });
    try {
      const wires: H2Wire[] = [];
      const connect = async (options?: OpenOptions) => {
        const wire = await H2Wire.open(proxy.address, options);
        wires.push(wire);
        return wire;
      };
      try {
        await body({ proxy, wire: await connect(wireOptions), connect });
      } finally {
        for (const wire of wires) await wire.close();
      }
    } finally {
      await stopProxy(proxy);
    }
  } finally {
    await ("stop" in backend ? backend.stop() : backend.close());
  }
}

/** A frame matcher: `type` on `streamId`. */
function on(streamId: number, type: number): (frame: Frame) => boolean {
  return (frame) => frame.streamId === streamId && frame.type === type;
}

Deno.test({
  name: "#1 a flow-blocked stream closed by the client does not freeze the process " +
    "one sendTimeout later",
  ...GRPC_JS,
  fn: async () => {
    const sendTimeoutMs = 500;
    await withProxy({
      backend: await startTestBackend("b1"),
      http2: { sendTimeout: `${sendTimeoutMs}ms` },
      // A 10-octet stream window (RFC 9113 §6.9.2): the proxy queues almost all of every
      // response, so each stream waits on flow control with the send timeout running.
      wire: { settings: [[Setting.INITIAL_WINDOW_SIZE, 10]] },
    }, async ({ proxy, wire }) => {
      const blockedStream = async () => {
        const id = wire.nextStreamId();
        await wire.startCall(id, TestMethod.stream, new Uint8Array(), [
          ["x-count", "3"],
          ["x-size", "1000"],
        ]);
        assert.ok(await wire.readUntil(on(id, FrameType.DATA)), "the first 10 octets must arrive");
        return id;
      };
      // The client gives up on a blocked stream (RFC 9113 §6.4): its send deadline must go.
      const cancelled = await blockedStream();
      await wire.sendRst(cancelled, ErrorCode.CANCEL);
      // A second blocked stream is reset by the proxy's send timeout, one sendTimeout after
      // the cancelled stream's stale deadline: the timers still run.
      const timedOut = await blockedStream();
      const rst = await wire.readUntil(on(timedOut, FrameType.RST_STREAM), 4 * sendTimeoutMs)
        .catch(() => null);
      assert.ok(
        rst,
        `no RST_STREAM within ${4 * sendTimeoutMs}ms for the stream whose send timeout ` +
          "expired: the proxy's timers (or the whole process) stopped",
      );
      // The process still serves, promptly: a call and the admin API.
      await expectCallThrough(proxy.address, TestMethod.echo, PAYLOAD, 2_000);
      const live = await fetch(adminUrl(proxy, "/live"), { signal: AbortSignal.timeout(2_000) });
      assert.equal(live.status, 200);
      await live.body?.cancel();
    });
  },
});

Deno.test({
  name: "#2 calls queued for a slot on a retired backend connection do not hang there",
  fn: async () => {
    const maxPrematureResets = 5;
    // One stream at a time (SETTINGS_MAX_CONCURRENT_STREAMS 1, RFC 9113 §5.1.2), each answered
    // with response HEADERS and then held open.
    const backend = startH2RawBackend({
      settings: [[Setting.MAX_CONCURRENT_STREAMS, 1]],
      onStream: (connection, id) => connection.sendHeaders(id, GRPC_RESPONSE_HEADERS),
    });
    await withProxy({
      backend,
      http2: { maxPrematureResets, upstream: { maxConnectionsPerBackend: 1 } },
    }, async ({ wire }) => {
      const ids = Array.from({ length: maxPrematureResets + 3 }, () => wire.nextStreamId());
      for (const id of ids) await wire.startCall(id, TestMethod.echo, PAYLOAD);
      // Queued behind them, with no deadline: only the proxy can end this call.
      const queued = wire.nextStreamId();
      await wire.startCall(queued, TestMethod.echo, PAYLOAD);
      // The client cancels calls one by one, each once it has its response headers (so the
      // listener counts no premature resets): the next queued call then takes the backend's
      // slot, and each cancel costs the backend connection one RST_STREAM. One over
      // maxPrematureResets retires the connection, with calls still queued on it.
      for (const id of ids.slice(0, maxPrematureResets + 1)) {
        assert.ok(await wire.readUntil(on(id, FrameType.HEADERS)), `stream ${id} must start`);
        await wire.sendRst(id, ErrorCode.CANCEL);
      }
      await waitFor(() => backend.connections[0].resets.size > maxPrematureResets, {
        what: "the backend to see the cancels",
      });
      // The calls queued on the retired connection must not stay stuck there: the backend
      // never saw them, so they are replayed on a fresh connection (or refused retryably,
      // RFC 9113 §8.7). The fresh connection takes one at a time, like the old one.
      const reached = (id: number) =>
        wire.readUntil(
          (frame) =>
            frame.streamId === id &&
            (frame.type === FrameType.HEADERS || frame.type === FrameType.RST_STREAM),
          3_000,
        );
      // Each still-waiting call reaches the backend in turn once the one before it goes.
      for (const id of [...ids.slice(maxPrematureResets + 1), queued]) {
        assert.ok(await reached(id), `call ${id}, queued on the retired connection, hung`);
        await wire.sendRst(id, ErrorCode.CANCEL);
      }
    });
  },
});

Deno.test({
  name: "#3/#5 a backend gets flow-control credit once for the data it sent",
  fn: async () => {
    // One gRPC message of 64,000 octets, in four DATA frames, then the trailers: all sent at
    // once, so the backend stream ends while most of the data still waits in the proxy for
    // the client's window.
    const body = grpcFrame(new Uint8Array(64_000 - 5));
    const frameSize = body.length / 4;
    const backend = startH2RawBackend({
      onStream: (connection, id) =>
        connection.write(concatBytes(
          headersFrame(id, GRPC_RESPONSE_HEADERS, false),
          ...[0, 1, 2, 3].map((i) =>
            dataFrame(id, body.subarray(i * frameSize, (i + 1) * frameSize), false)
          ),
          headersFrame(id, [["grpc-status", "0"]], true),
        )),
    });
    await withProxy({
      backend,
      // The default window of 65,535 (RFC 9113 §6.9.2): no initial WINDOW_UPDATE, and credit
      // is returned in WINDOW_UPDATEs of half a window, so double credit shows in the total.
      http2: { upstream: { initialConnectionWindowSize: 65_535 } },
      wire: { settings: [[Setting.INITIAL_WINDOW_SIZE, 100]] },
    }, async ({ wire }) => {
      const id = wire.nextStreamId();
      await wire.startCall(id, TestMethod.echo, PAYLOAD);
      const received = () =>
        wire.received.filter(on(id, FrameType.DATA)).reduce((sum, f) => sum + f.payload.length, 0);
      await waitFor(() => received() === 100, { what: "the first 100 octets" });
      // The client opens its stream window in steps of 10,000 octets (§6.9.1).
      for (let granted = 100; granted < body.length;) {
        granted += 10_000;
        await wire.sendWindowUpdate(id, 10_000);
        const expected = Math.min(granted, body.length);
        await waitFor(() => received() === expected, { what: `${expected} octets relayed` });
      }
      const response = await wire.readResponse(id);
      assert.equal(response.grpcStatus, 0);
      assert.equal(response.body.length, body.length);
      // Every WINDOW_UPDATE the proxy sent before this PING's ACK has reached the backend.
      const connection = backend.connections[0];
      await connection.ping();
      assert.ok(
        connection.connectionCredit <= body.length,
        `the backend sent ${body.length} octets of DATA and got ${connection.connectionCredit} ` +
          "octets of connection-level WINDOW_UPDATE credit back",
      );
    });
  },
});

/** Calls one client cancels in the ring-buffer tests: more than the engine's 64 remembered. */
const MANY_CANCELS = 100;

Deno.test({
  name: "#4 a backend's late response to a long-cancelled call does not close the shared " +
    "backend connection",
  fn: async () => {
    const backend = startH2RawBackend();
    await withProxy({
      backend,
      http2: { maxConcurrentStreams: 1_000, maxPrematureResets: 1_000 },
    }, async ({ wire: bystander, connect }) => {
      const canceller = await connect();
      const bystanderId = bystander.nextStreamId();
      await bystander.startCall(bystanderId, TestMethod.echo, PAYLOAD);
      // On the backend first, so its stream is known: the first one.
      await backend.streamsOn(1);
      const ids = Array.from({ length: MANY_CANCELS }, () => canceller.nextStreamId());
      for (const id of ids) await canceller.startCall(id, TestMethod.echo, PAYLOAD);
      const upstream = await backend.streamsOn(MANY_CANCELS + 1);
      await canceller.sendFrames(ids.map((id) => ({
        type: FrameType.RST_STREAM,
        streamId: id,
        payload: uint32(ErrorCode.CANCEL),
      })));
      await waitFor(() => upstream.resets.size === MANY_CANCELS, {
        what: "the backend to see every cancel",
      });
      // The backend's answers were already on their way (RFC 9113 §5.1, "closed": frames
      // after our RST_STREAM are ignored), the earliest cancelled first.
      const [bystanderUpstream, ...cancelledUpstream] = upstream.streams;
      await upstream.write(concatBytes(
        ...cancelledUpstream.flatMap((id) => [
          headersFrame(id, GRPC_RESPONSE_HEADERS, false),
          dataFrame(id, grpcFrame(PAYLOAD), false),
        ]),
      ));
      await upstream.ping();
      assert.deepEqual(upstream.goaways(), [], "the proxy must not close the backend connection");
      await upstream.respond(bystanderUpstream, PAYLOAD);
      const response = await bystander.readResponse(bystanderId);
      assert.equal(response.grpcStatus, 0, "the other client's call must succeed");
    });
  },
});

Deno.test({
  name: "#4 DATA from a client on many streams the proxy answered early is no connection error",
  ...GRPC_JS,
  fn: async () => {
    await withProxy({ backend: await startTestBackend("b1") }, async ({ wire }) => {
      // Requests to an unrouted method, all HEADERS first: the proxy answers each at once and
      // ends the stream with RST_STREAM(NO_ERROR) (RFC 9113 §8.1).
      const ids = Array.from({ length: MANY_CANCELS }, () => wire.nextStreamId());
      await wire.sendFrames(ids.map((id) => ({
        type: FrameType.HEADERS,
        flags: Flag.END_HEADERS,
        streamId: id,
        payload: encodeFieldBlock(grpcRequestFields("/other.Svc/Method", "switchyard.test")),
      })));
      for (const id of ids) assert.ok(await wire.readUntil(on(id, FrameType.RST_STREAM)));
      // The request bodies the client had already sent: ignored or answered with
      // RST_STREAM(STREAM_CLOSED) per stream (§5.1), never a GOAWAY.
      await wire.sendFrames(ids.map((id) => ({
        type: FrameType.DATA,
        flags: Flag.END_STREAM,
        streamId: id,
        payload: grpcFrame(PAYLOAD),
      })));
      await wire.expectAlive();
      await wire.callOk(TestMethod.echo, PAYLOAD);
    });
  },
});

/**
 * A raw backend for the drain tests: it holds the first call it gets (the long call the
 * drain must protect) and answers every later one at once.
 */
function holdFirstCallBackend(): H2RawBackend {
  return startH2RawBackend({
    onStream: (connection, id) => {
      if (connection.index > 0 || connection.streams.length > 1) connection.respond(id, PAYLOAD);
    },
  });
}

/**
 * Reads the first phase of a graceful drain (RFC 9113 §6.8): a GOAWAY NO_ERROR with the
 * largest stream id, then a PING whose ACK the proxy waits for. Returns the PING's payload.
 */
async function readDrainStart(wire: H2Wire): Promise<Uint8Array> {
  const goaway = await wire.readUntil((f) => f.type === FrameType.GOAWAY);
  assert.ok(goaway, "the drain must start with a GOAWAY");
  assert.equal(parseGoaway(goaway).errorCode, ErrorCode.NO_ERROR);
  assert.equal(parseGoaway(goaway).lastStreamId, MAX_STREAM_ID);
  const ping = await wire.readUntil((f) => f.type === FrameType.PING && !(f.flags & Flag.ACK));
  assert.ok(ping, "the drain GOAWAY must be followed by a PING");
  return ping.payload;
}

/** Every GOAWAY on `wire` so far carried NO_ERROR: no connection error (RFC 9113 §5.4.1). */
function assertOnlyGracefulGoaways(wire: H2Wire): void {
  const errors = wire.received.filter((f) =>
    f.type === FrameType.GOAWAY && parseGoaway(f).errorCode !== ErrorCode.NO_ERROR
  );
  assert.deepEqual(errors.map(describeFrame), [], "the proxy must not end the connection");
}

Deno.test({
  name: "#6 during a drain, a request above the final GOAWAY's last stream id is ignored, " +
    "not a connection error",
  fn: async () => {
    const backend = holdFirstCallBackend();
    await withProxy({ backend }, async ({ proxy, wire }) => {
      const long = wire.nextStreamId();
      await wire.startCall(long, TestMethod.echo, PAYLOAD);
      const upstream = await backend.streamsOn(1);
      proxy.child.kill("SIGTERM");
      await wire.sendPing(await readDrainStart(wire), true);
      const final = await wire.readUntil((f) => f.type === FrameType.GOAWAY);
      assert.ok(final, "the drain must end with a final GOAWAY");
      assert.equal(parseGoaway(final).lastStreamId, long);
      // A request the client sent before it saw the final GOAWAY: the proxy ignores it
      // (RFC 9113 §6.8), HEADERS and DATA alike.
      await wire.startCall(wire.nextStreamId(), TestMethod.echo, PAYLOAD);
      await wire.expectAlive([long]);
      // The call the drain protects still completes.
      await upstream.respond(upstream.streams[0], PAYLOAD);
      const response = await wire.readResponse(long);
      assert.equal(response.grpcStatus, 0, "the long call must complete");
      assertOnlyGracefulGoaways(wire);
    });
  },
});

Deno.test({
  name: "#7 the relay's own cancels do not count as control frames the backend provoked",
  fn: async () => {
    const maxOutboundControlFrames = 50;
    const calls = maxOutboundControlFrames + 10;
    const backend = startH2RawBackend();
    await withProxy({
      backend,
      http2: { maxOutboundControlFrames },
    }, async ({ wire: bystander, connect }) => {
      const leaver = await connect();
      const bystanderId = bystander.nextStreamId();
      await bystander.startCall(bystanderId, TestMethod.echo, PAYLOAD);
      // On the backend first, so its stream is known: the first one.
      await backend.streamsOn(1);
      for (let i = 0; i < calls; i++) {
        await leaver.startCall(leaver.nextStreamId(), TestMethod.echo, PAYLOAD);
      }
      const upstream = await backend.streamsOn(calls + 1);
      // The client disconnects with every call in flight: the proxy cancels them all on the
      // shared backend connection at once, one RST_STREAM each (RFC 9113 §6.4).
      await leaver.close();
      await waitFor(() => upstream.resets.size === calls || upstream.closed, {
        what: "the backend to see the cancels",
      });
      await upstream.ping();
      assert.deepEqual(upstream.goaways(), [], "the proxy must not close the backend connection");
      await upstream.respond(upstream.streams[0], PAYLOAD);
      const response = await bystander.readResponse(bystanderId);
      assert.equal(response.grpcStatus, 0, "the other client's call must succeed");
    });
  },
});

/**
 * Makes one Echo call through a proxy to a raw backend that answers every stream with
 * `answer`, and checks that the client got UNAVAILABLE naming the backend, and no message.
 */
async function assertBackendProtocolError(
  answer: (streamId: number) => Uint8Array,
): Promise<void> {
  const backend = startH2RawBackend({
    onStream: (connection, id) => connection.write(answer(id)),
  });
  await withProxy({ backend }, async ({ wire }) => {
    const response = await wire.call(TestMethod.echo, PAYLOAD);
    const message = decodeURIComponent(
      fieldValue(response.trailers ?? response.headers, "grpc-message") ?? "",
    );
    assert.equal(
      response.grpcStatus,
      GrpcStatus.UNAVAILABLE,
      `the client got grpc-status ${response.grpcStatus} ("${message}") and ` +
        `${response.body.length} octets of response body`,
    );
    assert.ok(message.includes(`backend ${backend.address}`), `"${message}" names the backend`);
    assert.equal(response.body.length, 0, "nothing of the malformed response is forwarded");
  });
}

Deno.test({
  name: "#8 a backend's DATA before its response HEADERS is a protocol error, not forwarded",
  fn: () =>
    // RFC 9113 §8.1: a response starts with a header section; DATA first is malformed.
    assertBackendProtocolError((id) =>
      concatBytes(
        dataFrame(id, grpcFrame(PAYLOAD), false),
        headersFrame(id, [...GRPC_RESPONSE_HEADERS, ["grpc-status", "0"]], true),
      )
    ),
});

Deno.test({
  name: "#10 padding in a client's DATA is credited back to the stream window",
  ...GRPC_JS,
  fn: async () => {
    await withProxy({ backend: await startTestBackend("b1") }, async ({ wire }) => {
      const id = wire.nextStreamId();
      await wire.sendHeaders(id, grpcRequestFields(TestMethod.collect, "switchyard.test"));
      // A 4,005-octet request sent one octet per DATA frame with 254 octets of padding: each
      // frame costs 256 octets of window (RFC 9113 §6.1, §6.9.1), about four times the
      // proxy's default stream window in all, which only the padding's return can refill.
      const request = grpcFrame(new Uint8Array(4_000));
      const frameCost = 1 + 1 + 254;
      const credit = (streamId: number) =>
        wire.received
          .filter(on(streamId, FrameType.WINDOW_UPDATE))
          .reduce((sum, f) => sum + (readUint32(f.payload, 0) & 0x7fff_ffff), 0);
      const streamWindow = () =>
        (wire.peerSettings.get(Setting.INITIAL_WINDOW_SIZE) ?? DEFAULT_WINDOW_SIZE) + credit(id) -
        spent;
      const connectionWindow = () => DEFAULT_WINDOW_SIZE + credit(0) - spent;
      let spent = 0;
      for (let sent = 0; sent < request.length;) {
        const window = () => Math.min(streamWindow(), connectionWindow());
        await waitFor(() => window() >= frameCost, {
          timeoutMs: 2_000,
          what: `window for more padded DATA after ${sent} of ${request.length} octets ` +
            `(stream window ${streamWindow()}, connection window ${connectionWindow()})`,
        });
        const count = Math.min(Math.floor(window() / frameCost), request.length - sent);
        await wire.sendFrames(Array.from({ length: count }, (_, i) => ({
          type: FrameType.DATA,
          flags: Flag.PADDED | (sent + i === request.length - 1 ? Flag.END_STREAM : 0),
          streamId: id,
          payload: paddedPayload(request.subarray(sent + i, sent + i + 1), 254),
        })));
        sent += count;
        spent += count * frameCost;
      }
      const response = await wire.readResponse(id);
      assert.equal(response.grpcStatus, 0);
      assert.deepEqual(response.body, new Uint8Array(request), "the backend got every octet");
    });
  },
});

Deno.test({
  name: "#11 calls arriving while a backend connection is replaced do not dial a connection each",
  fn: async () => {
    const maxConnectionsPerBackend = 2;
    const calls = 40;
    // One stream per connection (RFC 9113 §5.1.2), and a slow handshake on every connection
    // after the first, so replacements are still dialling when the calls arrive. The first
    // connection's second call is held; every other call is answered at once.
    const backend = startH2RawBackend({
      settings: [[Setting.MAX_CONCURRENT_STREAMS, 1]],
      settingsDelayMs: (index) => index === 0 ? 0 : 500,
      onStream: (connection, id) => {
        if (connection.index > 0 || connection.streams.length !== 2) {
          connection.respond(id, PAYLOAD);
        }
      },
    });
    await withProxy({
      backend,
      http2: { upstream: { maxConnectionsPerBackend } },
    }, async ({ wire }) => {
      // A call that finishes proves the first connection; a second one stays on it.
      await wire.callOk(TestMethod.echo, PAYLOAD);
      const long = wire.nextStreamId();
      await wire.startCall(long, TestMethod.echo, PAYLOAD);
      const first = await backend.streamsOn(2);
      // The backend rotates the connection gracefully (RFC 9113 §6.8): the long call goes on,
      // new calls need another connection.
      await first.sendGoaway(MAX_STREAM_ID, ErrorCode.NO_ERROR);
      await first.ping();
      const ids = Array.from({ length: calls }, () => wire.nextStreamId());
      for (const id of ids) await wire.startCall(id, TestMethod.echo, PAYLOAD);
      for (const id of ids) {
        assert.equal((await wire.readResponse(id, 10_000)).grpcStatus, 0, `call on stream ${id}`);
      }
      assert.ok(
        backend.connections.length <= maxConnectionsPerBackend + 1,
        `${calls} calls made the proxy open ${backend.connections.length} backend connections; ` +
          `at most the one going away and ${maxConnectionsPerBackend} (maxConnectionsPerBackend)`,
      );
      await first.respond(first.streams[1], PAYLOAD);
      assert.equal((await wire.readResponse(long)).grpcStatus, 0, "the long call must complete");
    });
  },
});

Deno.test({
  name: "#19 a malformed PRIORITY on an idle stream leaves the connection usable",
  ...GRPC_JS,
  fn: async () => {
    await withProxy({ backend: await startTestBackend("b1") }, async ({ wire }) => {
      const idle = 5;
      // RFC 9113 §6.3: a PRIORITY whose length is not 5 is a stream error FRAME_SIZE_ERROR,
      // never a connection error; but §6.4 forbids RST_STREAM on an idle stream.
      await wire.sendFrame({
        type: FrameType.PRIORITY,
        streamId: idle,
        payload: new Uint8Array(4),
      });
      await wire.expectAlive();
      if (wire.received.some(on(idle, FrameType.RST_STREAM))) {
        // The proxy chose the stream error, so for it the stream is closed now (§5.1: a
        // stream reaches "closed" by sending RST_STREAM) and frames on it are ignored: a
        // WINDOW_UPDATE on a closed stream is no error at all (§6.9), PRIORITY is allowed in
        // every state (§5.1).
        await wire.sendWindowUpdate(idle, 1_000);
        await wire.sendPriority(idle, { dependency: 0, weight: 15 });
        await wire.expectAlive();
      } else {
        // The stream is still idle: the client may open it (§5.1).
        await wire.startCall(idle, TestMethod.echo, PAYLOAD);
        assert.equal((await wire.readResponse(idle)).grpcStatus, 0);
      }
      await wire.callOk(TestMethod.echo, PAYLOAD);
    });
  },
});

Deno.test({
  name: "#20 a backend's informational (1xx) response with END_STREAM is a protocol error",
  fn: () =>
    // RFC 9113 §8.1: a 1xx header section never ends the stream; one with END_STREAM is
    // malformed (and is no final response).
    assertBackendProtocolError((id) => headersFrame(id, [[":status", "103"]], true)),
});

Deno.test({
  name: "#21 an unsolicited PING ACK that resembles the drain PING does not end the drain's " +
    "first phase",
  fn: async () => {
    const backend = holdFirstCallBackend();
    await withProxy({ backend, start: startAdminProxy }, async ({ proxy, wire }) => {
      const long = wire.nextStreamId();
      await wire.startCall(long, TestMethod.echo, PAYLOAD);
      await backend.streamsOn(1);
      assert.equal((await adminRequest(proxy, "/drain", { method: "POST" })).status, 202);
      const drainPing = await readDrainStart(wire);
      // An ACK of a PING the proxy never sent, sharing the drain PING's first octets.
      const fake = concatBytes(drainPing.subarray(0, 2), new TextEncoder().encode("XXXXXX"));
      assert.notDeepEqual(fake, drainPing);
      await wire.sendPing(fake, true);
      // A request sent in the first phase, before the client saw any final GOAWAY: the final
      // GOAWAY's last stream id must cover it (§6.8), and it must be served.
      const late = wire.nextStreamId();
      await wire.startCall(late, TestMethod.echo, PAYLOAD);
      await wire.sendPing(drainPing, true);
      const final = await wire.readUntil((f) => f.type === FrameType.GOAWAY);
      assert.ok(final, "the drain must end with a final GOAWAY");
      assert.equal(parseGoaway(final).errorCode, ErrorCode.NO_ERROR);
      assert.ok(
        parseGoaway(final).lastStreamId >= late,
        `the final GOAWAY's last stream id ${parseGoaway(final).lastStreamId} must cover ` +
          `stream ${late}, opened before the real PING ACK`,
      );
      const response = await wire.readResponse(late);
      assert.equal(response.grpcStatus, 0, "the request sent during the first phase is served");
      assertOnlyGracefulGoaways(wire);
    });
  },
});
