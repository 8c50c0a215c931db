/**
 * The access log: every field of a line, `accessLog.fields`, SIGUSR1 reopening a rotated
 * file, and the bounded buffer with its drop counter. Unit tests drive {@link AccessLog} and
 * the formatter directly; end-to-end tests run the real proxy process with grpc-js and raw
 * `node:http2` backends on loopback.
 */
import * as grpc from "@grpc/grpc-js";
import assert from "node:assert/strict";
import type http2 from "node:http2";
import { AccessLog } from "../src/access_log/access_log.ts";
import {
  ACCESS_LOG_FIELDS,
  accessLogFormatter,
  GRPC_MESSAGE_MAX_CHARS,
  traceparentTraceId,
  truncateGrpcMessage,
  TRUNCATION_MARKER,
} from "../src/access_log/format.ts";
import type { CallRecord } from "../src/proxy/call_record.ts";
import { adminRequest, startAdminProxy } from "./support/admin_client.ts";
import {
  clusterConfig,
  GRPC_JS,
  type ProxyProcess,
  runSwitchyard,
  waitFor,
} from "./support/harness.ts";
import { parsePrometheusText } from "./support/prometheus.ts";
import { closeRaw, connectRaw, rawCall, resetStream, startRawBackend } from "./support/raw_h2.ts";
import {
  expectServiceError,
  FAIL_STATUS,
  startTestBackend,
  testClient,
  TestMethod,
  unaryCall,
} from "./support/test_backend.ts";

const TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736";
const TRACEPARENT = `00-${TRACE_ID}-00f067aa0ba902b7-01`;
/** RST_STREAM INTERNAL_ERROR (RFC 9113 §7). */
const INTERNAL_ERROR = 2;
const DROPPED_TOTAL = "switchyard_access_log_dropped_total";

/** A finished call as the relay reports it; `overrides` changes fields. */
function record(overrides: Partial<CallRecord> = {}): CallRecord {
  return {
    protocol: "grpc",
    startedAt: Date.UTC(2026, 0, 1, 12),
    durationMs: 2.3456789,
    upstreamDurationMs: 1.0004,
    method: "/helloworld.Greeter/SayHello",
    cluster: "echo",
    backend: "127.0.0.1:50051",
    grpcStatus: 0,
    grpcMessage: undefined,
    resetCode: undefined,
    origin: "backend",
    backendFailure: false,
    failedAttempts: undefined,
    retries: 0,
    bytesReceived: 17,
    bytesSent: 52,
    clientAddress: "127.0.0.1:40000",
    clientIdentity: undefined,
    requestHeaders: [
      ":method",
      "POST",
      ":path",
      "/helloworld.Greeter/SayHello",
      ":authority",
      "greeter.example",
      "user-agent",
      "grpc-go/1.70.0",
      "x-request-id",
      "req-7",
      "traceparent",
      TRACEPARENT,
    ],
    traceId: undefined,
    ...overrides,
  };
}

/** The JSON lines of `text`. */
function parseLines(text: string): Record<string, unknown>[] {
  return text.split("\n").filter((line) => line !== "").map((line) => JSON.parse(line));
}

/** The JSON lines of the file at `path`; none when it does not exist. */
async function fileLines(path: string): Promise<Record<string, unknown>[]> {
  try {
    return parseLines(await Deno.readTextFile(path));
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return [];
    throw error;
  }
}

// ---------------------------------------------------------------------------------------
// The line format

Deno.test("format: a line carries every field, in the documented order", () => {
  const line = accessLogFormatter()(record());
  assert.ok(line.endsWith("}\n"));
  const entry = JSON.parse(line);
  assert.deepEqual(Object.keys(entry), [...ACCESS_LOG_FIELDS]);
  assert.deepEqual(entry, {
    time: "2026-01-01T12:00:00.000Z",
    method: "/helloworld.Greeter/SayHello",
    protocol: "grpc",
    authority: "greeter.example",
    cluster: "echo",
    backend: "127.0.0.1:50051",
    grpcStatus: 0,
    grpcMessage: null,
    resetCode: null,
    origin: "backend",
    retries: 0,
    durationMs: 2.346,
    upstreamDurationMs: 1,
    bytesReceived: 17,
    bytesSent: 52,
    client: "127.0.0.1:40000",
    clientIdentity: null,
    userAgent: "grpc-go/1.70.0",
    requestId: "req-7",
    traceId: TRACE_ID,
  });
});

Deno.test("format: absent values are null", () => {
  const entry = JSON.parse(
    accessLogFormatter()(record({
      requestHeaders: [":method", "POST", ":path", "/a.B/C"],
      cluster: undefined,
      backend: undefined,
      upstreamDurationMs: undefined,
      clientAddress: undefined,
    })),
  );
  for (const field of ["authority", "userAgent", "requestId", "traceId", "upstreamDurationMs"]) {
    assert.equal(entry[field], null, field);
  }
  assert.equal(entry.cluster, null);
  assert.equal(entry.backend, null);
  assert.equal(entry.client, null);
});

Deno.test("format: every string is escaped: each line is one valid JSON object", () => {
  const tricky = 'quote " backslash \\ newline \n tab \t nul \u0000 lone \ud800 é';
  const line = accessLogFormatter()(record({
    method: tricky,
    grpcMessage: tricky,
    clientIdentity: tricky,
    requestHeaders: [":authority", tricky, "user-agent", tricky, "x-request-id", tricky],
  }));
  assert.equal(line.indexOf("\n"), line.length - 1, "one line");
  const entry = JSON.parse(line);
  // A lone surrogate too: JSON.stringify writes it as \ud800, which parses back to it.
  const fields = ["method", "grpcMessage", "clientIdentity", "authority", "userAgent", "requestId"];
  for (const field of fields) assert.equal(entry[field], tricky, field);
});

Deno.test("format: failures carry grpcMessage and resetCode", () => {
  const failed = JSON.parse(
    accessLogFormatter()(record({
      grpcStatus: 9,
      grpcMessage: "custom failure: ünïcødé, 100% & more",
    })),
  );
  assert.equal(failed.grpcMessage, "custom failure: ünïcødé, 100% & more");
  const reset = JSON.parse(
    accessLogFormatter()(record({
      grpcStatus: 13,
      origin: "backend_reset",
      resetCode: INTERNAL_ERROR,
    })),
  );
  assert.equal(reset.resetCode, INTERNAL_ERROR);
  assert.equal(reset.origin, "backend_reset");
  const empty = JSON.parse(accessLogFormatter()(record({ grpcMessage: "" })));
  assert.equal(empty.grpcMessage, null, "an empty grpc-message is none");
});

Deno.test("format: a long grpcMessage is cut and marked, never inside a surrogate pair", () => {
  const exact = "m".repeat(GRPC_MESSAGE_MAX_CHARS);
  assert.equal(truncateGrpcMessage(exact), exact, "a message at the limit is kept whole");
  const long = "x".repeat(10_000);
  const entry = JSON.parse(accessLogFormatter()(record({ grpcMessage: long })));
  assert.equal(entry.grpcMessage, "x".repeat(GRPC_MESSAGE_MAX_CHARS) + TRUNCATION_MARKER);
  // An emoji (two UTF-16 units) across the cut is dropped whole.
  const emoji = "y".repeat(GRPC_MESSAGE_MAX_CHARS - 1) + "😀" + "tail";
  const cut = truncateGrpcMessage(emoji);
  assert.equal(cut, "y".repeat(GRPC_MESSAGE_MAX_CHARS - 1) + TRUNCATION_MARKER);
  assert.ok(cut.isWellFormed());
});

Deno.test("format: durations are rounded to the microsecond", () => {
  const entry = JSON.parse(
    accessLogFormatter()(record({
      durationMs: 12.3456789,
      upstreamDurationMs: 0.0004,
    })),
  );
  assert.equal(entry.durationMs, 12.346);
  assert.equal(entry.upstreamDurationMs, 0);
});

Deno.test("format: the tracer's trace id comes before the traceparent header's", () => {
  const traced = "0af7651916cd43dd8448eb211c80319c";
  const entry = JSON.parse(accessLogFormatter()(record({ traceId: traced })));
  assert.equal(entry.traceId, traced);
});

Deno.test("format: only a well-formed traceparent gives a trace id", () => {
  const parent = "00f067aa0ba902b7";
  assert.equal(traceparentTraceId(TRACEPARENT), TRACE_ID);
  assert.equal(traceparentTraceId(`00-${TRACE_ID}-${parent}-00`), TRACE_ID);
  // A later version may carry more fields after its own (W3C Trace Context §3.2.4).
  assert.equal(traceparentTraceId(`01-${TRACE_ID}-${parent}-01-extra`), TRACE_ID);
  const bad = [
    undefined,
    "",
    `00-${TRACE_ID}-${parent}`, // no flags
    `00-${TRACE_ID}-${parent}-01-extra`, // version 00 is exactly 55 characters
    `01-${TRACE_ID}-${parent}-01extra`, // more, but not after a dash
    `ff-${TRACE_ID}-${parent}-01`, // version ff is invalid
    `0g-${TRACE_ID}-${parent}-01`,
    `00-${TRACE_ID.toUpperCase()}-${parent}-01`, // upper case
    `00-${"0".repeat(32)}-${parent}-01`, // all-zero trace id
    `00-${TRACE_ID}-${"0".repeat(16)}-01`, // all-zero parent id
    `00-${TRACE_ID}-${parent}-0x`,
    `00_${TRACE_ID}-${parent}-01`,
    `00-${TRACE_ID.slice(1)}x-${parent}-01`,
    ` 00-${TRACE_ID}-${parent}-0`,
  ];
  for (const value of bad) assert.equal(traceparentTraceId(value), null, String(value));
});

Deno.test("format: accessLog.fields picks exactly its fields, in its order", () => {
  const fields = ["requestId", "method", "grpcStatus", "durationMs"] as const;
  const entry = JSON.parse(accessLogFormatter(fields)(record()));
  assert.deepEqual(Object.keys(entry), fields);
  assert.deepEqual(entry, {
    requestId: "req-7",
    method: "/helloworld.Greeter/SayHello",
    grpcStatus: 0,
    durationMs: 2.346,
  });
});

// ---------------------------------------------------------------------------------------
// The buffer: bounded, counted drops, reopen

Deno.test("a stalled sink: the buffer stays within its limit, every drop counted", async () => {
  const maxBufferedBytes = 65_536;
  const received: Uint8Array[] = [];
  // The sink takes the first batch and never finishes writing it until released.
  let release!: () => void;
  const stalled = new Promise<void>((resolve) => release = resolve);
  const log = AccessLog.forwarding((batch) => {
    received.push(batch.slice());
    return stalled;
  }, maxBufferedBytes);
  const records = 100_000;
  let peak = 0;
  for (let i = 0; i < records; i++) {
    log.observe(record({ requestHeaders: ["x-request-id", String(i)] }));
    peak = Math.max(peak, log.bufferedBytes);
  }
  assert.ok(peak <= maxBufferedBytes, `peak ${peak} bytes`);
  assert.ok(peak > maxBufferedBytes / 2, `the buffer is used (peak ${peak} bytes)`);
  assert.ok(log.dropped > records / 2, `${log.dropped} lines dropped`);
  release();
  await log.flush();
  const taken = received.flatMap((batch) => parseLines(new TextDecoder().decode(batch)));
  assert.equal(log.dropped, records - taken.length, "every line is taken or counted dropped");
  assert.equal(log.bufferedBytes, 0);
  // What was taken came in order, from the first call on.
  assert.deepEqual(
    taken.map((line) => Number(line.requestId)),
    taken.map((_, i) => i),
  );
  // Once the sink keeps up again, lines are taken again, and the drops stay counted.
  const dropped = log.dropped;
  log.observe(record({ requestHeaders: ["x-request-id", "later"] }));
  await log.flush();
  assert.equal(log.dropped, dropped);
  assert.equal(parseLines(new TextDecoder().decode(received.at(-1)!))[0].requestId, "later");
  await log.close();
});

Deno.test("a stalled sink: worker batches are dropped whole, counted by line", async () => {
  const maxBufferedBytes = 65_536;
  let release!: () => void;
  const stalled = new Promise<void>((resolve) => release = resolve);
  const log = AccessLog.forwarding(() => stalled, maxBufferedBytes);
  const line = JSON.stringify({ method: "/a.B/C", pad: "p".repeat(80) }) + "\n";
  const batch = new TextEncoder().encode(line.repeat(100));
  let written = 0;
  for (let i = 0; i < 50; i++) {
    log.writeBatch(batch.slice());
    assert.ok(log.bufferedBytes <= maxBufferedBytes);
    if (log.dropped === 0) written++;
  }
  assert.equal(log.dropped, (50 - written) * 100);
  release();
  await log.close();
});

Deno.test("a forwarding log that transfers its batches frees their bytes", async () => {
  // A worker transfers each batch's buffer to the main thread, which leaves the batch empty:
  // the log must still count its bytes as written, or it fills up and drops every line.
  let lines = 0;
  const log = AccessLog.forwarding((batch) => {
    const moved = structuredClone(batch, { transfer: [batch.buffer as ArrayBuffer] });
    lines += parseLines(new TextDecoder().decode(moved)).length;
  }, 262_144);
  // Rounds of about 50 KB, written before the next: ten times the limit in all.
  for (let round = 0; round < 50; round++) {
    for (let i = 0; i < 100; i++) log.observe(record());
    await log.flush();
  }
  assert.equal(log.dropped, 0);
  assert.equal(log.bufferedBytes, 0);
  assert.equal(lines, 50 * 100);
  await log.close();
});

Deno.test("reopen: buffered lines go to the moved file, later ones to the path", async () => {
  const dir = await Deno.makeTempDir({ prefix: "switchyard-access-" });
  const path = `${dir}/access.log`;
  try {
    const log = await AccessLog.open(path, 65_536);
    log.observe(record({ requestHeaders: ["x-request-id", "flushed"] }));
    await log.flush();
    await Deno.rename(path, `${path}.1`);
    log.observe(record({ requestHeaders: ["x-request-id", "buffered"] }));
    await log.reopen();
    log.observe(record({ requestHeaders: ["x-request-id", "after"] }));
    await log.close();
    const ids = async (file: string) => (await fileLines(file)).map((line) => line.requestId);
    assert.deepEqual(await ids(`${path}.1`), ["flushed", "buffered"]);
    assert.deepEqual(await ids(path), ["after"]);
    const stdout = await AccessLog.open("stdout", 65_536);
    await stdout.reopen(); // nothing to reopen
    await stdout.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("reopen: a path that cannot be opened keeps the old file", async () => {
  const dir = await Deno.makeTempDir({ prefix: "switchyard-access-" });
  const path = `${dir}/logs/access.log`;
  try {
    await Deno.mkdir(`${dir}/logs`);
    const log = await AccessLog.open(path, 65_536);
    await Deno.rename(`${dir}/logs`, `${dir}/moved`);
    await assert.rejects(log.reopen(), Deno.errors.NotFound);
    log.observe(record({ requestHeaders: ["x-request-id", "kept"] }));
    await log.close();
    assert.deepEqual((await fileLines(`${dir}/moved/access.log`)).map((l) => l.requestId), [
      "kept",
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

// ---------------------------------------------------------------------------------------
// The config

Deno.test("config error: an unknown access-log field is refused, naming it", async () => {
  const file = await Deno.makeTempFile({ prefix: "switchyard-bad-", suffix: ".json" });
  try {
    await Deno.writeTextFile(
      file,
      JSON.stringify({
        ...clusterConfig(["127.0.0.1:50051"]),
        accessLog: { enabled: true, fields: ["time", "method", "status"] },
      }),
    );
    const run = await runSwitchyard(["--config", file]);
    assert.equal(run.code, 2, run.stderr);
    assert.ok(
      run.stderr.includes('accessLog.fields[2]: "status" is not an access-log field'),
      run.stderr,
    );
  } finally {
    await Deno.remove(file);
  }
});

// ---------------------------------------------------------------------------------------
// End to end

/** A raw backend for `test.Reset`: it answers with headers, then resets with INTERNAL_ERROR. */
function startResettingBackend() {
  return startRawBackend((stream: http2.ServerHttp2Stream) => {
    stream.respond({ ":status": 200, "content-type": "application/grpc" });
    // resetStream: a plain close() after headers would send END_STREAM instead.
    setImmediate(() => resetStream(stream, INTERNAL_ERROR));
  });
}

Deno.test(
  "end to end: a line carries every field; failures carry grpcMessage and resetCode",
  GRPC_JS,
  async () => {
    const backend = await startTestBackend("b1");
    const resetting = await startResettingBackend();
    const dir = await Deno.makeTempDir({ prefix: "switchyard-access-" });
    const path = `${dir}/access.log`;
    try {
      const proxy = await startAdminProxy({
        ...clusterConfig([backend.address]),
        clusters: {
          echo: { backends: [backend.address] },
          resetting: { backends: [resetting.address] },
        },
        routes: [
          { service: "test.Reset", cluster: "resetting" },
          { service: "test.Test", cluster: "echo" },
        ],
        accessLog: { enabled: true, path },
      });
      const client = testClient(proxy.address, {
        "grpc.default_authority": "greeter.example:8443",
        "grpc.primary_user_agent": "access-log-test/1.0",
      });
      const started = Date.now();
      try {
        const metadata = new grpc.Metadata();
        metadata.set("x-request-id", "req-ok");
        metadata.set("traceparent", TRACEPARENT);
        await unaryCall(client, TestMethod.echo, Buffer.from("hello"), { metadata });
        const failing = new grpc.Metadata();
        failing.set("x-request-id", "req-fail");
        const error = await expectServiceError(
          unaryCall(client, TestMethod.fail, undefined, { metadata: failing }),
        );
        assert.equal(error.details, FAIL_STATUS.details);
        const session = await connectRaw(proxy.address);
        try {
          const reset = await rawCall(session, "/test.Reset/Call", undefined, {
            "x-request-id": "req-reset",
          });
          assert.equal(reset.rstCode, INTERNAL_ERROR);
        } finally {
          await closeRaw(session);
        }
        await waitFor(async () => (await fileLines(path)).length === 3, {
          what: "three access-log lines",
        });
      } finally {
        client.close();
        await proxy.stop();
      }
      const lines = await fileLines(path);
      const byId = new Map(lines.map((line) => [line.requestId, line]));
      const ok = byId.get("req-ok")!;
      assert.deepEqual(Object.keys(ok), [...ACCESS_LOG_FIELDS]);
      const { time, durationMs, upstreamDurationMs, client: address, userAgent, ...rest } = ok;
      assert.deepEqual(rest, {
        method: TestMethod.echo,
        protocol: "grpc",
        authority: "greeter.example:8443",
        cluster: "echo",
        backend: backend.address,
        grpcStatus: 0,
        grpcMessage: "OK", // grpc-js sends it with every status 0
        resetCode: null,
        origin: "backend",
        retries: 0,
        bytesReceived: 5 + "hello".length,
        bytesSent: 5 + "hello".length,
        clientIdentity: null,
        requestId: "req-ok",
        traceId: TRACE_ID,
      });
      const at = Date.parse(time as string);
      assert.ok(at >= started - 1_000 && at <= Date.now(), `time ${time}`);
      assert.match(address as string, /^127\.0\.0\.1/);
      assert.match(userAgent as string, /^access-log-test\/1\.0 grpc-node-js\//);
      for (const ms of [durationMs, upstreamDurationMs]) {
        assert.equal(typeof ms, "number");
        assert.equal(Math.round((ms as number) * 1000) / 1000, ms, `${ms} has at most 3 decimals`);
      }
      assert.ok((upstreamDurationMs as number) <= (durationMs as number));

      const failed = byId.get("req-fail")!;
      assert.equal(failed.grpcStatus, FAIL_STATUS.code);
      assert.equal(failed.grpcMessage, FAIL_STATUS.details, "percent-decoded");
      assert.equal(failed.resetCode, null);
      assert.equal(failed.traceId, null, "no traceparent, no tracing");

      const reset = byId.get("req-reset")!;
      assert.equal(reset.method, "/test.Reset/Call");
      assert.equal(reset.cluster, "resetting");
      assert.equal(reset.backend, resetting.address);
      assert.equal(reset.origin, "backend_reset");
      assert.equal(reset.resetCode, INTERNAL_ERROR);
      assert.equal(reset.grpcStatus, grpc.status.INTERNAL);
      assert.equal(reset.userAgent, null, "the raw client sends no user-agent");
    } finally {
      await backend.stop();
      await resetting.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
);

Deno.test("end to end: accessLog.fields chooses the fields of every line", GRPC_JS, async () => {
  const backend = await startTestBackend("b1");
  const dir = await Deno.makeTempDir({ prefix: "switchyard-access-" });
  const path = `${dir}/access.log`;
  const fields = ["requestId", "grpcStatus", "method", "upstreamDurationMs"];
  try {
    const proxy = await startAdminProxy({
      ...clusterConfig([backend.address]),
      accessLog: { enabled: true, path, fields },
    });
    const client = testClient(proxy.address);
    try {
      for (const id of ["one", "two"]) {
        const metadata = new grpc.Metadata();
        metadata.set("x-request-id", id);
        await unaryCall(client, TestMethod.echo, Buffer.from("hi"), { metadata });
      }
      await waitFor(async () => (await fileLines(path)).length === 2, { what: "two lines" });
    } finally {
      client.close();
      await proxy.stop();
    }
    const lines = await fileLines(path);
    for (const line of lines) assert.deepEqual(Object.keys(line), fields);
    assert.deepEqual(lines.map((line) => [line.requestId, line.grpcStatus, line.method]), [
      ["one", 0, TestMethod.echo],
      ["two", 0, TestMethod.echo],
    ]);
  } finally {
    await backend.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

/** `switchyard_calls_total` by worker (needs `metrics.workerLabel`). */
async function callsByWorker(proxy: ProxyProcess): Promise<Map<string, number>> {
  const samples = parsePrometheusText((await adminRequest(proxy, "/metrics")).body);
  const calls = new Map<string, number>();
  for (const sample of samples) {
    if (sample.name !== "switchyard_calls_total") continue;
    const worker = sample.labels.worker;
    calls.set(worker, (calls.get(worker) ?? 0) + sample.value);
  }
  return calls;
}

/** One echo call on a connection of its own (the kernel spreads connections over workers). */
async function callOnNewConnection(proxy: ProxyProcess, requestId: string): Promise<void> {
  const session = await connectRaw(proxy.address);
  try {
    const result = await rawCall(session, TestMethod.echo, undefined, {
      "x-request-id": requestId,
    });
    assert.equal(result.grpcStatus, 0);
  } finally {
    await closeRaw(session);
  }
}

for (const workers of [2, 1]) {
  Deno.test(
    `end to end: SIGUSR1 has every data plane reopen a moved access-log file (workers: ${workers})`,
    GRPC_JS,
    async () => {
      const backend = await startTestBackend("b1");
      const dir = await Deno.makeTempDir({ prefix: "switchyard-access-" });
      const path = `${dir}/access.log`;
      const rotated = `${path}.1`;
      const ids = async (file: string) =>
        (await fileLines(file)).map((line) => String(line.requestId)).sort();
      try {
        const proxy = await startAdminProxy({
          ...clusterConfig([backend.address]),
          workers,
          metrics: { workerLabel: true },
          accessLog: { enabled: true, path },
        });
        try {
          const before = ["before-0", "before-1", "before-2", "before-3"];
          for (const id of before) await callOnNewConnection(proxy, id);
          await waitFor(async () => (await fileLines(path)).length === before.length, {
            what: "the first lines in the file",
          });
          // logrotate's `create` rotation: move the file, then signal.
          await Deno.rename(path, rotated);
          // Calls between the move and the signal still go to the moved file.
          const moved = ["moved-0", "moved-1", "moved-2", "moved-3"];
          for (const id of moved) await callOnNewConnection(proxy, id);
          proxy.child.kill("SIGUSR1");
          await waitFor(() => proxy.output().includes(`reopened by ${workers} data planes`), {
            what: "the reopen to be logged",
          });
          assert.deepEqual(await ids(rotated), [...before, ...moved].sort());

          // Calls on new connections until each data plane has served some since the reopen.
          const served = await callsByWorker(proxy);
          assert.deepEqual([...served.keys()].sort(), workers === 1 ? ["1"] : ["1", "2"]);
          const after: string[] = [];
          await waitFor(async () => {
            for (let i = 0; i < 4; i++) {
              const id = `after-${after.length}`;
              await callOnNewConnection(proxy, id);
              after.push(id);
            }
            const now = await callsByWorker(proxy);
            return [...served].every(([worker, calls]) => now.get(worker)! > calls);
          }, { what: "both workers to serve calls after the reopen" });

          await waitFor(async () => (await fileLines(path)).length === after.length, {
            what: "every later line in the new file",
          });
          assert.deepEqual(await ids(path), [...after].sort());
          assert.deepEqual(await ids(rotated), [...before, ...moved].sort(), "nothing new");
          assert.equal(
            proxy.logs().filter((line) => String(line.message).includes("reopened")).length,
            1,
            "one info line per reopen",
          );
        } finally {
          await proxy.stop();
        }
      } finally {
        await backend.stop();
        await Deno.remove(dir, { recursive: true });
      }
    },
  );
}

for (const workers of [1, 2]) {
  Deno.test(
    `end to end: an unread stdout drops lines, counted in ${DROPPED_TOTAL} (workers: ${workers})`,
    GRPC_JS,
    async () => {
      const backend = await startTestBackend("b1");
      try {
        const proxy = await startAdminProxy({
          ...clusterConfig([backend.address]),
          workers,
          // The main thread's series has no worker label: it tells who dropped.
          metrics: { workerLabel: true },
          accessLog: { enabled: true, path: "stdout", maxBufferedBytes: 65_536 },
        }, { unreadStdout: true });
        let code: number | undefined;
        try {
          // With one worker the data plane writes stdout itself; with more, the main thread
          // writes every worker's batches, and drops them.
          const dropped = async () => {
            const samples = parsePrometheusText((await adminRequest(proxy, "/metrics")).body)
              .filter((sample) => sample.name === DROPPED_TOTAL);
            assert.ok(samples.length > 0, `${DROPPED_TOTAL} is exposed before any drop`);
            return samples
              .filter((sample) => (sample.labels.worker === undefined) === (workers > 1))
              .reduce((sum, sample) => sum + sample.value, 0);
          };
          assert.equal(await dropped(), 0);
          const session = await connectRaw(proxy.address);
          try {
            // About 500 bytes a line: the pipe (64 KiB) and the buffer fill within a few rounds.
            const count = await waitFor(async () => {
              const results = await Promise.all(
                Array.from({ length: 200 }, () => rawCall(session, TestMethod.echo)),
              );
              assert.ok(results.every((result) => result.grpcStatus === 0), "calls keep working");
              const count = await dropped();
              return count > 0 ? count : undefined;
            }, { what: "dropped lines to be counted", timeoutMs: 20_000 });
            // A counter: later scrapes never go down.
            assert.ok(await dropped() >= count);
            // Stdout has nothing to reopen, and SIGUSR1 must not end the process.
            proxy.child.kill("SIGUSR1");
            await waitFor(() => proxy.output().includes("nothing to reopen"), {
              what: "SIGUSR1 to be logged",
            });
          } finally {
            await closeRaw(session);
          }
        } finally {
          code = await proxy.stop();
        }
        assert.equal(code, 0, "shutdown does not wait for the stalled stdout");
      } finally {
        await backend.stop();
      }
    },
  );
}
