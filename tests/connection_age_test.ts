/**
 * `http2.maxConnectionAge` and `http2.maxConnectionAgeGrace` (gRPC's MAX_CONNECTION_AGE and
 * MAX_CONNECTION_AGE_GRACE) on the gRPC listener: a client connection gets a graceful GOAWAY
 * at its jittered age (RFC 9113 §6.8: 2^31-1, PING, then the real last stream id), its calls
 * in flight go on for the grace, and the ones still open after it end UNAVAILABLE. Raw-frame
 * clients and backends see the wire; a grpc-js client shows that real clients reconnect on
 * their own and no call fails.
 * @module
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { adminRequest } from "./support/admin_client.ts";
import {
  clusterConfig,
  GRPC_JS,
  type ProxyProcess,
  startProxy,
  waitFor,
} from "./support/harness.ts";
import {
  concatBytes,
  ErrorCode,
  fieldValue,
  type Frame,
  FrameType,
  H2Wire,
  parseGoaway,
} from "./support/h2_wire.ts";
import {
  dataFrame,
  GRPC_RESPONSE_HEADERS,
  headersFrame,
  startH2RawBackend,
} from "./support/h2_raw_backend.ts";
import { grpcFrame } from "./support/raw_h2.ts";
import { parsePrometheusText, sumSamples } from "./support/prometheus.ts";
import { startTestBackend, testClient, TestMethod, unaryCall } from "./support/test_backend.ts";
import { parseConfig } from "../src/config/load.ts";
import { registeredPolicies } from "../src/balancer/registry.ts";
import { connectionOptions } from "../src/h2/options.ts";
import { MAX_CONNECTION_AGE_MESSAGE } from "../src/proxy/listener.ts";

const MAX_STREAM_ID = 2 ** 31 - 1;
const GRPC_UNAVAILABLE = 14;

/** A frame of `type` (PING: without ACK) on the connection. */
const isFrame = (type: number) => (frame: Frame) =>
  frame.type === type && (type !== FrameType.PING || (frame.flags & 0x1) === 0);

/**
 * Reads the age drain of `wire` (RFC 9113 §6.8): GOAWAY NO_ERROR with 2^31-1 and a PING,
 * which it acknowledges; then the final GOAWAY. Returns the final GOAWAY's last stream id
 * and when the first one arrived.
 */
async function readAgeDrain(
  wire: H2Wire,
  timeoutMs = 5_000,
): Promise<{ lastStreamId: number; announcedAt: number }> {
  const first = await wire.readUntil(isFrame(FrameType.GOAWAY), timeoutMs);
  const announcedAt = Date.now();
  assert.ok(first, "the connection closed without a GOAWAY");
  const announce = parseGoaway(first);
  assert.equal(announce.errorCode, ErrorCode.NO_ERROR);
  assert.equal(announce.lastStreamId, MAX_STREAM_ID, "the first GOAWAY announces 2^31-1");
  assert.match(announce.debugData, /^(max connection age|draining)$/);
  const ping = await wire.readUntil(isFrame(FrameType.PING), timeoutMs);
  assert.ok(ping, "no PING after the first GOAWAY");
  await wire.sendPing(ping.payload, true);
  const final = await wire.readUntil(isFrame(FrameType.GOAWAY), timeoutMs);
  assert.ok(final, "no final GOAWAY after the PING ACK");
  assert.equal(parseGoaway(final).errorCode, ErrorCode.NO_ERROR);
  return { lastStreamId: parseGoaway(final).lastStreamId, announcedAt };
}

/** A sample of the proxy's `/metrics`. */
async function metric(proxy: ProxyProcess, name: string): Promise<number> {
  const response = await adminRequest(proxy, "/metrics");
  return sumSamples(parsePrometheusText(String(response.body)), name);
}

/** The access-log lines (JSON on stdout) the proxy wrote so far. */
function accessLog(proxy: ProxyProcess): Record<string, unknown>[] {
  return proxy.stdout().split("\n").filter((line) => line.startsWith("{")).map((line) =>
    JSON.parse(line)
  );
}

Deno.test("maxConnectionAge: GOAWAY 2^31-1 and PING at the jittered age, then the real last stream id", async () => {
  const AGE_MS = 300;
  const backend = startH2RawBackend({ onStream: (connection, id) => connection.respond(id) });
  const proxy = await startProxy({
    ...clusterConfig([backend.address]),
    log: { level: "debug" },
    http2: { maxConnectionAge: `${AGE_MS}ms` },
  });
  const wires: H2Wire[] = [];
  try {
    // Several connections at once: each draws its own jitter.
    const elapsed = await Promise.all(Array.from({ length: 4 }, async () => {
      const openedAt = Date.now(); // before the connect: the proxy's clock starts later
      const wire = await H2Wire.open(proxy.address);
      wires.push(wire);
      await wire.callOk(TestMethod.echo);
      const goaway = await wire.readUntil(isFrame(FrameType.GOAWAY), 5_000);
      const ms = Date.now() - openedAt;
      assert.ok(goaway);
      assert.deepEqual(
        [parseGoaway(goaway).lastStreamId, parseGoaway(goaway).debugData],
        [MAX_STREAM_ID, "max connection age"],
      );
      const ping = await wire.readUntil(isFrame(FrameType.PING), 5_000);
      assert.ok(ping, "no PING after the first GOAWAY");
      await wire.sendPing(ping.payload, true);
      const final = await wire.readUntil(isFrame(FrameType.GOAWAY), 5_000);
      assert.ok(final);
      assert.deepEqual(
        [parseGoaway(final).lastStreamId, parseGoaway(final).errorCode],
        [1, ErrorCode.NO_ERROR],
        "the final GOAWAY names the last stream the client opened",
      );
      await wire.expectClosed();
      return ms;
    }));
    console.log(`maxConnectionAge ${AGE_MS}ms: GOAWAY after ${elapsed.join(", ")} ms`);
    for (const ms of elapsed) {
      // ±10 % jitter around the age; late by at most the slack of a busy 2-core machine.
      assert.ok(ms >= AGE_MS * 0.9 - 5, `GOAWAY after ${ms}ms, before 0.9 × ${AGE_MS}ms`);
      assert.ok(ms <= AGE_MS * 1.1 + 150, `GOAWAY after ${ms}ms, well after 1.1 × ${AGE_MS}ms`);
    }
    assert.ok(await metric(proxy, "switchyard_client_connections_aged_total") >= 4);
    await waitFor(
      () =>
        proxy.logs().filter((line) =>
          String(line.message).includes("reached http2.maxConnectionAge")
        ).length >= 4,
      { what: "a debug line per aged connection" },
    );
    // The client opens a new connection for new calls, and it is served.
    const next = await H2Wire.open(proxy.address);
    wires.push(next);
    await next.callOk(TestMethod.echo);
  } finally {
    for (const wire of wires) await wire.close();
    await proxy.stop();
    await backend.close();
  }
});

Deno.test("maxConnectionAge: a stream open across the age finishes normally within the grace", async () => {
  const backend = startH2RawBackend({
    // The response starts at once; the rest waits for the test.
    onStream: (connection, id) => connection.write(startedResponse(id)),
  });
  const proxy = await startProxy({
    ...clusterConfig([backend.address]),
    http2: { maxConnectionAge: "300ms", maxConnectionAgeGrace: "10s" },
  });
  const wire = await H2Wire.open(proxy.address);
  try {
    await wire.startCall(1, TestMethod.stream);
    const first = await wire.readUntil((f) => f.type === FrameType.DATA && f.streamId === 1);
    assert.ok(first, "the first message");
    const { lastStreamId } = await readAgeDrain(wire);
    assert.equal(lastStreamId, 1, "the stream in flight is covered by the final GOAWAY");
    await wire.expectAlive([1]);
    const upstream = await backend.streamsOn(1);
    const backendStream = upstream.streams[0];
    await upstream.sendData(backendStream, grpcFrame(Buffer.from("second")));
    await upstream.sendHeaders(backendStream, [["grpc-status", "0"]], true);
    const rest = await wire.readResponse(1);
    assert.equal(rest.grpcStatus, 0, "the stream ends with the backend's OK");
    assert.deepEqual(Buffer.from(rest.body), grpcFrame(Buffer.from("second")));
    // Its last stream done, the drained connection closes.
    await wire.expectClosed();
  } finally {
    await wire.close();
    await proxy.stop();
    await backend.close();
  }
});

Deno.test("maxConnectionAgeGrace: calls still open end UNAVAILABLE, their backend streams are cancelled, and the access log says so", async () => {
  const GRACE_MS = 200;
  // Stream 1 gets response headers and a message; stream 3 gets nothing.
  const backend = startH2RawBackend({
    onStream: (connection, id) => {
      if (connection.streams.length === 1) {
        connection.write(startedResponse(id));
      }
    },
  });
  const proxy = await startProxy({
    ...clusterConfig([backend.address]),
    accessLog: { enabled: true },
    http2: { maxConnectionAge: "300ms", maxConnectionAgeGrace: `${GRACE_MS}ms` },
  });
  const wire = await H2Wire.open(proxy.address);
  try {
    await wire.startCall(1, TestMethod.stream);
    assert.ok(await wire.readUntil((f) => f.type === FrameType.DATA && f.streamId === 1));
    await wire.startCall(3, TestMethod.hang);
    const upstream = await backend.streamsOn(2);
    const { lastStreamId, announcedAt } = await readAgeDrain(wire);
    assert.equal(lastStreamId, 3);
    const [committed, uncommitted] = await Promise.all([
      wire.readResponse(1),
      wire.readResponse(3),
    ]);
    const graceMs = Date.now() - announcedAt;
    console.log(
      `maxConnectionAgeGrace ${GRACE_MS}ms: calls ended ${graceMs}ms after the first GOAWAY`,
    );
    // The calls ran for the grace, and not much longer.
    assert.ok(graceMs >= GRACE_MS - 5, `the calls ended ${graceMs}ms after the first GOAWAY`);
    assert.ok(graceMs <= GRACE_MS + 150, `the calls ended ${graceMs}ms after the first GOAWAY`);
    // Response headers were out: trailers carry the status.
    assert.equal(fieldValue(committed.headers, ":status"), "200");
    assert.ok(committed.trailers, "trailers after the response headers");
    assert.equal(committed.grpcStatus, GRPC_UNAVAILABLE);
    assert.equal(
      decodeURIComponent(fieldValue(committed.trailers, "grpc-message") ?? ""),
      MAX_CONNECTION_AGE_MESSAGE,
    );
    assert.equal(committed.rstCode, undefined, "ended with END_STREAM, not a reset");
    // None were: a trailers-only response.
    assert.equal(uncommitted.trailers, undefined);
    assert.equal(fieldValue(uncommitted.headers, ":status"), "200");
    assert.equal(uncommitted.grpcStatus, GRPC_UNAVAILABLE);
    assert.match(
      decodeURIComponent(fieldValue(uncommitted.headers, "grpc-message") ?? ""),
      /maxConnectionAge/,
    );
    await wire.expectClosed();
    // The backend streams are cancelled.
    await waitFor(
      () => upstream.streams.every((id) => upstream.resets.get(id) === ErrorCode.CANCEL),
      { what: "CANCEL on both backend streams" },
    );
    // Both calls are the proxy's UNAVAILABLE in the access log.
    const lines = await waitFor(() => {
      const lines = accessLog(proxy);
      return lines.length >= 2 ? lines : undefined;
    }, { what: "two access-log lines" });
    for (const method of [TestMethod.stream, TestMethod.hang]) {
      const line = lines.find((entry) => entry.method === method);
      assert.ok(line, `an access-log line for ${method}`);
      assert.equal(line.grpcStatus, GRPC_UNAVAILABLE);
      assert.equal(line.origin, "proxy");
      assert.equal(line.grpcMessage, MAX_CONNECTION_AGE_MESSAGE);
    }
    const samples = parsePrometheusText(String((await adminRequest(proxy, "/metrics")).body));
    assert.equal(
      sumSamples(samples, "switchyard_calls_total", { grpc_status: "UNAVAILABLE" }),
      2,
      "both calls count as UNAVAILABLE",
    );
  } finally {
    await wire.close();
    await proxy.stop();
    await backend.close();
  }
});

Deno.test("maxConnectionAge set by a reload applies to the connections accepted after it", async () => {
  const backend = startH2RawBackend({ onStream: (connection, id) => connection.respond(id) });
  const config = clusterConfig([backend.address]);
  const proxy = await startProxy(config);
  const wires: H2Wire[] = [];
  try {
    const before = await H2Wire.open(proxy.address);
    wires.push(before);
    await before.callOk(TestMethod.echo);
    await proxy.writeConfig({ ...config, http2: { maxConnectionAge: "300ms" } });
    const reload = await adminRequest(proxy, "/reload", { method: "POST" });
    assert.equal(reload.status, 200, JSON.stringify(reload.body));
    // The listener is replaced: the old one drains its connections, as on any listener change.
    await readAgeDrain(before);
    const openedAt = Date.now();
    const after = await H2Wire.open(proxy.address);
    wires.push(after);
    await after.callOk(TestMethod.echo);
    const { lastStreamId, announcedAt } = await readAgeDrain(after);
    assert.equal(lastStreamId, 1);
    const ageMs = announcedAt - openedAt;
    assert.ok(ageMs >= 265 && ageMs <= 480, `the new connection aged after ${ageMs}ms`);
    assert.equal(await metric(proxy, "switchyard_client_connections_aged_total"), 1);
  } finally {
    for (const wire of wires) await wire.close();
    await proxy.stop();
    await backend.close();
  }
});

Deno.test({
  name: "maxConnectionAge: a grpc-js client reconnects on its own and no call fails",
  ...GRPC_JS,
  fn: async () => {
    const backends = [await startTestBackend("b1"), await startTestBackend("b2")];
    const proxy = await startProxy({
      ...clusterConfig(backends.map((backend) => backend.address), { picker: "round_robin" }),
      http2: { maxConnectionAge: "200ms" },
    });
    const client = testClient(proxy.address);
    const failures: string[] = [];
    let calls = 0;
    try {
      const until = Date.now() + 2_000;
      // Four lanes of sequential calls, so calls are in flight whenever a GOAWAY arrives.
      await Promise.all(Array.from({ length: 4 }, async () => {
        while (Date.now() < until) {
          try {
            const { response } = await unaryCall(client, TestMethod.echo, Buffer.from("age"), {
              timeoutMs: 5_000,
            });
            assert.equal(response.toString(), "age");
            calls++;
          } catch (error) {
            failures.push(String(error));
          }
        }
      }));
    } finally {
      client.close();
    }
    try {
      const opened = await metric(proxy, "switchyard_client_connections_total");
      const aged = await metric(proxy, "switchyard_client_connections_aged_total");
      console.log(
        `maxConnectionAge 200ms, 2s of grpc-js calls: ${calls} calls, ${failures.length} ` +
          `failed, ${opened} client connections, ${aged} aged; backends served ` +
          backends.map((backend) => backend.calls()).join(" and "),
      );
      assert.deepEqual(failures.slice(0, 3), [], `${failures.length} calls failed`);
      assert.ok(calls > 100, `${calls} calls`);
      assert.ok(opened >= 4, `the client reconnected: ${opened} connections`);
      assert.ok(aged >= 3, `${aged} connections aged`);
      for (const backend of backends) assert.ok(backend.calls() > 0, `${backend.name} served`);
    } finally {
      await proxy.stop();
      for (const backend of backends) await backend.stop();
    }
  },
});

Deno.test("maxConnectionAge and maxConnectionAgeGrace: validated, in ms, for client connections only", () => {
  const PICKERS = { pickers: registeredPolicies() };
  const base = { clusters: { echo: { backends: ["127.0.0.1:1"] } }, routes: [{ cluster: "echo" }] };
  const problems = (http2: Record<string, unknown>): string => {
    try {
      parseConfig({ ...base, http2 }, "test", PICKERS);
    } catch (error) {
      return String((error as Error).message);
    }
    return "";
  };
  assert.match(problems({ maxConnectionAge: "0s" }), /http2\.maxConnectionAge: must be greater/);
  assert.match(problems({ maxConnectionAge: "soon" }), /http2\.maxConnectionAge: "soon" is not/);
  assert.match(
    problems({ maxConnectionAge: "1m", maxConnectionAgeGrace: "0ms" }),
    /http2\.maxConnectionAgeGrace: must be greater/,
  );
  assert.match(
    problems({ maxConnectionAgeGrace: "30s" }),
    /http2\.maxConnectionAgeGrace: needs http2\.maxConnectionAge/,
  );
  assert.match(problems({ maxConnectionAge: "600h" }), /http2\.maxConnectionAge: must be at most/);

  const config = parseConfig(
    { ...base, http2: { maxConnectionAge: "5m", maxConnectionAgeGrace: "30s" } },
    "test",
    PICKERS,
  );
  const server = connectionOptions(config.http2, "server");
  assert.deepEqual([server.maxConnectionAgeMs, server.maxConnectionAgeGraceMs], [300_000, 30_000]);
  const client = connectionOptions(config.http2, "client");
  assert.deepEqual([client.maxConnectionAgeMs, client.maxConnectionAgeGraceMs], [0, 0]);
  const unset = connectionOptions(parseConfig(base, "test", PICKERS).http2, "server");
  assert.deepEqual([unset.maxConnectionAgeMs, unset.maxConnectionAgeGraceMs], [0, 0], "off");
});

/** Response HEADERS and a first message on `streamId`: a response that has started. */
function startedResponse(streamId: number): Uint8Array {
  return concatBytes(
    headersFrame(streamId, GRPC_RESPONSE_HEADERS, false),
    dataFrame(streamId, grpcFrame(Buffer.from("first")), false),
  );
}
