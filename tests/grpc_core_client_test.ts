/**
 * A second client stack: gRPC C-core (Debian's python3-grpcio, run with `/usr/bin/python3`)
 * makes calls of all four kinds through the real proxy to the grpc-js test backend, on one
 * channel whose connection also carries C-core's BDP and keepalive pings. The client is
 * tests/support/grpc_core_client.py; it reports one JSON line per case, asserted here.
 */
import * as grpc from "@grpc/grpc-js";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import {
  clusterConfig,
  GRPC_JS,
  type ProxyProcess,
  startProxy,
  waitFor,
} from "./support/harness.ts";
import {
  expectedStream,
  FAIL_IMMEDIATELY_STATUS,
  FAIL_STATUS,
  MAX_MESSAGE_BYTES,
  startTestBackend,
  type TestBackend,
  TestMethod,
} from "./support/test_backend.ts";

/** Debian's interpreter: python3-grpcio installs there, not for a pyenv python on PATH. */
const PYTHON = "/usr/bin/python3";
const SCRIPT = new URL("./support/grpc_core_client.py", import.meta.url).pathname;

/** C-core's keepalive interval: short, so the idle phases see several pings in a few seconds. */
const KEEPALIVE_MS = 1000;
/** Keepalive pings C-core must finish (send, and get the ACK) in each idle phase. */
const IDLE_PINGS = 2;
/** The deadline of the call to the slow method. */
const DEADLINE_MS = 800;
/**
 * C-core rounds the `grpc-timeout` it sends up, past the caller's deadline: by a millisecond
 * under 1 s (0.5 s goes out as `501m`), to 10 ms steps above (1 s as `1010m`).
 */
const CORE_TIMEOUT_ROUNDING_MS = 10;
/** Unary calls in flight at once on the one channel. */
const CONCURRENT_CALLS = 200;
/**
 * Whether the proxy forwards a repeated metadata key as separate header fields. Today's
 * node:http2 relay joins a backend's repeated fields into one `a, b` field, and C-core cannot
 * decode two base64 `-bin` values joined that way: it drops the whole connection. Until the
 * new engine keeps the fields, the script skips that case and its step is ignored.
 */
const RELAY_KEEPS_REPEATED_FIELDS = true;
/** The longest the script may take for one case; its own calls time out after 20 s. */
const CASE_TIMEOUT_MS = 25_000;

/** A method the proxy has no route for. */
const NO_ROUTE = "/other.Service/Method";

/**
 * C-core's log lines for a connection ending: any GOAWAY it got ("Got goaway"), the
 * ENHANCE_YOUR_CALM `too_many_pings` one by name, and a keepalive ping left unanswered.
 */
const CONNECTION_ALARMS = /GOAWAY|too_many_pings|ENHANCE_YOUR_CALM|keepalive watchdog/i;
/** Proxy log messages that mean it closed or lost a client connection. */
const CONNECTION_CLOSED = /goaway|enhance.your.calm|too.many.pings|flood|client connection/i;

function coreGrpcPresent(): boolean {
  try {
    return new Deno.Command(PYTHON, { args: ["-c", "import grpc"], stdout: "null", stderr: "null" })
      .outputSync().success;
  } catch {
    return false; // no /usr/bin/python3 at all
  }
}

const hasCoreGrpc = coreGrpcPresent();
if (!hasCoreGrpc) {
  console.warn(
    `skipping gRPC C-core client tests: ${PYTHON} cannot import grpc ` +
      "(apt-get install python3-grpcio)",
  );
}

/** One metadata entry as C-core reported it; `-bin` values come as hex. */
interface MetadataEntry {
  readonly key: string;
  readonly value?: string;
  readonly hex?: string;
}

/** Digests and sizes of what the script sent and what came back. */
interface Payload {
  readonly sentBytes: number;
  readonly receivedBytes: number;
  readonly sent: string;
  readonly received: string;
}

/** A final status as C-core reported it. */
interface CoreStatus {
  readonly code: number;
  readonly name: string;
  readonly details: string;
}

/** A failed call: its status and both metadata blocks. */
interface CoreError {
  readonly status: CoreStatus;
  readonly headers: MetadataEntry[];
  readonly trailers: MetadataEntry[];
}

/** A server-streaming read of `count` messages of `size` bytes. */
interface StreamRead {
  readonly count: number;
  readonly size: number;
  readonly messages: number;
  readonly sizes: number[];
  readonly received: string;
  readonly headers: MetadataEntry[];
}

/** A bidi call's echoes compared with what was sent. */
interface ChatRead {
  readonly messages: number;
  readonly echoes: number;
  readonly payload: Payload;
  readonly inOrder: boolean;
}

/** The values of `key`, in order: strings, or bytes for `-bin` keys. */
function values(entries: readonly MetadataEntry[], key: string): (string | Buffer)[] {
  return entries.filter((entry) => entry.key === key).map((entry) =>
    entry.hex === undefined ? entry.value! : Buffer.from(entry.hex, "hex")
  );
}

function sha256(data: Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

function assertPayload(payload: Payload, what: string): void {
  assert.equal(payload.receivedBytes, payload.sentBytes, `${what}: size`);
  assert.equal(payload.received, payload.sent, `${what}: bytes differ`);
}

function assertServedByB1(headers: readonly MetadataEntry[], what: string): void {
  assert.deepEqual(values(headers, "x-backend"), ["b1"], `${what}: x-backend header`);
}

function assertStream(read: StreamRead): void {
  const what = `Stream ${read.count}×${read.size}`;
  assert.equal(read.messages, read.count, `${what}: message count`);
  assert.deepEqual(read.sizes, [read.size], `${what}: message sizes`);
  const expected = sha256(Buffer.concat(expectedStream(read.count, read.size)));
  assert.equal(read.received, expected, `${what}: bytes differ`);
  assertServedByB1(read.headers, what);
}

function assertChat(read: ChatRead, what: string): void {
  assert.equal(read.echoes, read.messages, `${what}: echo count`);
  assertPayload(read.payload, what);
  assert.ok(read.inOrder, `${what}: every echo must equal its message, in order`);
}

/** Random bytes that surely include 0x00 and 0xff, the values base64 and text paths break. */
function binaryValue(length: number): Buffer {
  const value = randomBytes(length);
  value[0] = 0x00;
  value[1] = 0xff;
  return value;
}

/** Counts C-core's ping log lines on the script's stderr and keeps a tail for messages. */
class CoreLog {
  /** Keepalive pings C-core sent and got the ACK for. */
  keepalivePings = 0;
  /** BDP pings C-core sent and got the ACK for. */
  bdpPings = 0;
  /** Lines matching {@link CONNECTION_ALARMS}. */
  readonly alarms: string[] = [];
  readonly #marks = new Map<string, number>();
  #tail: string[] = [];
  #partial = "";

  /** Feeds decoded stderr text. */
  add(text: string): void {
    const lines = (this.#partial + text).split("\n");
    this.#partial = lines.pop()!;
    for (const line of lines) this.#line(line);
  }

  /** Keepalive pings finished since the script wrote `MARK name`. */
  pingsSince(name: string): number {
    const at = this.#marks.get(name);
    return at === undefined ? 0 : this.keepalivePings - at;
  }

  /** The last lines, without the per-read keepalive timer resets. */
  tail(): string {
    return this.#tail.join("\n");
  }

  #line(line: string): void {
    const mark = /^MARK (\S+)/.exec(line);
    if (mark) this.#marks.set(mark[1], this.keepalivePings);
    // C-core's http_keepalive and bdp_estimator tracers log these when a PING's ACK arrives.
    if (line.includes("Finish keepalive ping")) this.keepalivePings++;
    if (/bdp\[.*\]:complete/.test(line)) this.bdpPings++;
    if (CONNECTION_ALARMS.test(line)) this.alarms.push(line);
    if (line.includes("Keepalive ping cancelled")) return;
    this.#tail.push(line);
    if (this.#tail.length > 60) this.#tail = this.#tail.slice(-40);
  }
}

/**
 * The running python script: the test writes it the config line and "go" lines, and reads its
 * JSON result lines and (through {@link CoreLog}) C-core's log.
 */
class CoreClient {
  readonly log = new CoreLog();
  readonly #child: Deno.ChildProcess;
  readonly #stdin: WritableStreamDefaultWriter<Uint8Array>;
  readonly #lines: string[] = [];
  readonly #done: Promise<unknown>;
  #exited = false;

  constructor(config: Record<string, unknown>) {
    this.#child = new Deno.Command(PYTHON, {
      args: [SCRIPT],
      // A clean environment: no user site-packages shadowing Debian's grpc, no http_proxy.
      clearEnv: true,
      env: {
        GRPC_VERBOSITY: "debug",
        GRPC_TRACE: "http_keepalive,bdp_estimator",
        PYTHONNOUSERSITE: "1",
        PYTHONDONTWRITEBYTECODE: "1",
        PYTHONUNBUFFERED: "1",
      },
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#stdin = this.#child.stdin.getWriter();
    const decoder = new TextDecoder();
    const pumpStdout = async () => {
      let partial = "";
      for await (const chunk of this.#child.stdout) {
        const lines = (partial + decoder.decode(chunk, { stream: true })).split("\n");
        partial = lines.pop()!;
        this.#lines.push(...lines.filter((line) => line.trim() !== ""));
      }
    };
    const pumpStderr = async () => {
      const stderrDecoder = new TextDecoder();
      for await (const chunk of this.#child.stderr) {
        this.log.add(stderrDecoder.decode(chunk, { stream: true }));
      }
    };
    this.#done = Promise.all([pumpStdout(), pumpStderr(), this.#child.status]).finally(() => {
      this.#exited = true;
    });
    this.#write(JSON.stringify(config));
  }

  /** The next JSON line; throws with C-core's log when the script exits or stalls. */
  async next(): Promise<Record<string, unknown>> {
    await waitFor(() => this.#lines.length > 0 || this.#exited, {
      timeoutMs: CASE_TIMEOUT_MS,
      what: `a line from ${SCRIPT}\n${this.log.tail()}`,
    });
    const line = this.#lines.shift();
    if (line === undefined) throw new Error(`the C-core client exited early:\n${this.log.tail()}`);
    return JSON.parse(line);
  }

  /** The next line, which must be the result of case `name` without an error. */
  async result<T>(name: string): Promise<T> {
    const record = await this.next();
    this.#expectCase(record, name);
    return record as T;
  }

  /** The next line, which must be the script waiting at `name`. */
  async awaiting(name: string): Promise<void> {
    const record = await this.next();
    if (record.await === name) return;
    this.#expectCase(record, name);
    throw new Error(`expected the script to wait at ${name}, got ${JSON.stringify(record)}`);
  }

  /** Lets the waiting script go on. */
  go(): void {
    this.#write("go");
  }

  /** Ends the script (if it still runs) and waits for it; returns its exit code. */
  async close(): Promise<number> {
    await this.#stdin.close().catch(() => {});
    try {
      await waitFor(() => this.#exited, { timeoutMs: 5000, what: "the C-core client to exit" });
    } catch {
      this.#child.kill("SIGKILL");
    }
    await this.#done;
    return (await this.#child.status).code;
  }

  #expectCase(record: Record<string, unknown>, name: string): void {
    if (record.error) throw new Error(`case ${record.case} raised in python:\n${record.error}`);
    assert.equal(record.case, name, `expected the result of ${name}`);
  }

  #write(line: string): void {
    this.#stdin.write(new TextEncoder().encode(line + "\n")).catch(() => {});
  }
}

/** Bounds one idle phase: IDLE_PINGS keepalive intervals, plus ample margin for a slow host. */
const IDLE_TIMEOUT_MS = KEEPALIVE_MS * (IDLE_PINGS + 1) + 5000;

/** Waits at the script's `name` until C-core finished IDLE_PINGS keepalive pings after it. */
async function idlePhase(client: CoreClient, name: string): Promise<void> {
  await client.awaiting(name);
  try {
    await waitFor(() => client.log.pingsSince(name) >= IDLE_PINGS, {
      timeoutMs: IDLE_TIMEOUT_MS,
      what: `${IDLE_PINGS} keepalive pings answered during ${name}`,
    });
  } finally {
    client.go();
  }
}

/** Proxy log lines that say it closed a client connection, or anything at warning or above. */
function connectionTrouble(proxy: ProxyProcess): Record<string, unknown>[] {
  return proxy.logs().filter((line) =>
    line.level === "WARN" || line.level === "ERROR" || line.level === "FATAL" ||
    CONNECTION_CLOSED.test(String(line.message))
  );
}

async function runSteps(
  t: Deno.TestContext,
  { backend, proxy, client }: { backend: TestBackend; proxy: ProxyProcess; client: CoreClient },
  metadata: { text: string; blob: Buffer; second: Buffer; error: Buffer },
): Promise<void> {
  await t.step("unary: 0 B to 4 MiB, bytes exact", async () => {
    const { payloads, headers } = await client.result<
      { payloads: Payload[]; headers: MetadataEntry[][] }
    >("unary");
    assert.deepEqual(payloads.map((p) => p.sentBytes), [0, 1, 1000, 65_536, 4 << 20]);
    payloads.forEach((payload) => assertPayload(payload, `Echo of ${payload.sentBytes} B`));
    headers.forEach((block) => assertServedByB1(block, "Echo"));
  });

  await t.step("client streaming: 1003 messages, empty ones and 1 MiB", async () => {
    const result = await client.result<
      { messages: number; payload: Payload; headers: MetadataEntry[] }
    >("client_streaming");
    assert.equal(result.messages, 1003);
    assertPayload(result.payload, "Collect");
    assertServedByB1(result.headers, "Collect");
  });

  await t.step("server streaming: 2000 small messages, then 4 × 2 MiB", async () => {
    const { streams } = await client.result<{ streams: StreamRead[] }>("server_streaming");
    assert.equal(streams.length, 2);
    streams.forEach(assertStream);
  });

  await t.step("bidi streaming: lock-step with a 2 MiB message, and pipelined", async () => {
    const result = await client.result<
      { lockStep: ChatRead; pipelined: ChatRead; headers: MetadataEntry[] }
    >("bidi_streaming");
    assert.equal(result.lockStep.messages, 101);
    assertChat(result.lockStep, "Chat lock-step");
    assert.equal(result.pipelined.messages, 1000);
    assertChat(result.pipelined, "Chat pipelined");
    assertServedByB1(result.headers, "Chat");
  });

  await t.step(
    "custom and -bin metadata round-trip byte-exact in headers and trailers",
    async () => {
      const { headers, trailers } = await client.result<
        { headers: MetadataEntry[]; trailers: MetadataEntry[] }
      >("metadata");
      for (const [block, received] of [["headers", headers], ["trailers", trailers]] as const) {
        assert.deepEqual(values(received, "x-text"), [metadata.text], block);
        assert.deepEqual(values(received, "x-blob-bin"), [metadata.blob], block);
        assert.deepEqual(values(received, "x-second-bin"), [metadata.second], block);
      }
      assertServedByB1(headers, "EchoMetadata");
    },
  );

  await t.step({
    name: "a repeated -bin key stays separate values",
    ignore: !RELAY_KEEPS_REPEATED_FIELDS,
    fn: async () => {
      const { headers, trailers } = await client.result<
        { headers: MetadataEntry[]; trailers: MetadataEntry[] }
      >("repeated_metadata");
      for (const [block, received] of [["headers", headers], ["trailers", trailers]] as const) {
        assert.deepEqual(values(received, "x-blob-bin"), [metadata.blob, metadata.second], block);
        // The grpc-js backend's node:http2 joins repeated text fields itself, so only the
        // combined value is defined for them (RFC 9110 §5.3).
        assert.equal(values(received, "x-text").join(", "), "first, second", block);
      }
    },
  });

  await t.step("errors: status, details and trailers; trailers-only errors", async () => {
    const errors = await client.result<Record<string, CoreError>>("errors");
    const { fail, failImmediately, noRoute, noRouteStream } = errors;
    assert.equal(fail.status.code, FAIL_STATUS.code);
    assert.equal(fail.status.details, FAIL_STATUS.details);
    assertServedByB1(fail.headers, "Fail");
    assert.deepEqual(values(fail.trailers, "x-error-detail"), [metadata.text]);
    assert.deepEqual(values(fail.trailers, "x-error-detail-bin"), [metadata.error]);

    assert.equal(failImmediately.status.code, FAIL_IMMEDIATELY_STATUS.code);
    assert.equal(failImmediately.status.details, FAIL_IMMEDIATELY_STATUS.details);
    assert.deepEqual(failImmediately.headers, [], "a trailers-only response has no headers");
    assertServedByB1(failImmediately.trailers, "FailImmediately trailers");

    for (const [what, error] of [["unary", noRoute], ["server stream", noRouteStream]] as const) {
      assert.equal(error.status.code, grpc.status.UNIMPLEMENTED, `no route (${what})`);
      assert.ok(error.status.details.includes(`no route for ${NO_ROUTE}`), error.status.details);
      assert.deepEqual(error.headers, [], `a trailers-only response has no headers (${what})`);
    }
  });

  // Hang calls come only from the deadline case and then the cancel case, in that order; the
  // script may already have started the second when this step runs.
  await t.step(
    "deadline: a slow call ends with DEADLINE_EXCEEDED, the backend cancelled",
    async () => {
      const { status } = await client.result<{ status: CoreStatus }>("deadline");
      assert.equal(status.name, "DEADLINE_EXCEEDED", status.details);
      assert.ok(backend.hangs.length >= 1, "the Hang call must reach the backend");
      const hang = backend.hangs[0];
      assert.ok(hang.remainingMs !== undefined, "the proxy must forward grpc-timeout");
      assert.ok(
        hang.remainingMs > 0 && hang.remainingMs <= DEADLINE_MS + CORE_TIMEOUT_ROUNDING_MS,
        `the backend's deadline was ${hang.remainingMs}ms away, the client's ${DEADLINE_MS}ms`,
      );
      await waitFor(() => hang.cancelled, { what: "the backend to see the deadline's cancel" });
    },
  );

  await t.step("cancel: a C-core cancel reaches the backend (unary)", async () => {
    await client.awaiting("cancel_unary");
    try {
      await waitFor(() => backend.hangs.length === 2, { what: "the call to reach the backend" });
    } finally {
      client.go();
    }
    const result = await client.result<{ cancelled: boolean; code: string }>("cancel_unary");
    assert.ok(result.cancelled, "C-core must accept the cancel of a pending call");
    assert.equal(result.code, "CANCELLED");
    await waitFor(() => backend.hangs[1].cancelled, { what: "the backend to see the cancel" });
  });

  await t.step("cancel: a C-core cancel reaches the backend (server stream)", async () => {
    const result = await client.result<{ first: number; cancelled: boolean; code: string }>(
      "cancel_stream",
    );
    assert.equal(result.first, 100, "the first message arrives before the cancel");
    assert.ok(result.cancelled);
    assert.equal(result.code, "CANCELLED");
    await waitFor(() => backend.streamCancellations() > 0, {
      what: "the backend to see the stream cancelled",
    });
  });

  await t.step(`${CONCURRENT_CALLS} unary calls in flight on one channel`, async () => {
    const result = await client.result<{ calls: number; ok: number; failures: string[] }>(
      "concurrent",
    );
    assert.deepEqual(result.failures, []);
    assert.equal(result.ok, CONCURRENT_CALLS);
  });

  await t.step(
    "BDP and keepalive pings are tolerated: bulk, then idle with and without calls",
    async () => {
      await idlePhase(client, "idle_with_stream");
      await idlePhase(client, "idle_without_calls");
      const result = await client.result<
        {
          bulk: StreamRead;
          upload: Payload;
          chat: { echoed: boolean; code: string };
          afterIdle: Payload;
        }
      >("keepalive");
      assertStream(result.bulk);
      assertPayload(result.upload, "6 MiB Collect");
      assert.ok(result.chat.echoed, "the stream open across keepalive pings must still echo");
      assert.equal(result.chat.code, "OK");
      assertPayload(result.afterIdle, "Echo after the idle phase");
      assert.ok(client.log.bdpPings > 0, "C-core's BDP pings must be answered");
      assert.ok(client.log.keepalivePings >= 2 * IDLE_PINGS, `${client.log.keepalivePings} pings`);
      assert.deepEqual(client.log.alarms, [], "C-core must get no GOAWAY over its pings");
    },
  );

  await t.step("the one connection stayed open throughout", async () => {
    const { states } = await client.result<{ states: string[] }>("connection");
    // While the channel is still open: once it closes, the proxy may log the connection's end.
    await client.awaiting("close");
    let trouble: Record<string, unknown>[];
    try {
      trouble = connectionTrouble(proxy);
    } finally {
      client.go();
    }
    assert.deepEqual(await client.next(), { case: "done" });
    const ready = states.indexOf("READY");
    assert.ok(ready >= 0, `the channel never became READY: ${states}`);
    assert.deepEqual(
      states.slice(ready + 1),
      [],
      `the channel left READY, so its connection closed: ${states}`,
    );
    assert.deepEqual(client.log.alarms, [], "C-core logged the connection ending");
    assert.deepEqual(trouble, [], "the proxy logged connection trouble");
  });
}

Deno.test({
  name: "gRPC C-core client: all call kinds, metadata, errors, deadlines, cancels, pings",
  ignore: !hasCoreGrpc,
  ...GRPC_JS,
  fn: async (t) => {
    const backend = await startTestBackend("b1");
    try {
      // Debug level: the proxy then logs client connection errors and closes, if any.
      const proxy = await startProxy(clusterConfig([backend.address]), {
        args: ["--log-level", "debug"],
      });
      try {
        const metadata = {
          text: "quota of tenant 42",
          blob: binaryValue(300),
          second: binaryValue(2),
          error: binaryValue(64),
        };
        const client = new CoreClient({
          target: proxy.address,
          methods: { ...TestMethod, noRoute: NO_ROUTE },
          maxMessageBytes: MAX_MESSAGE_BYTES,
          keepaliveMs: KEEPALIVE_MS,
          deadlineMs: DEADLINE_MS,
          concurrentCalls: CONCURRENT_CALLS,
          text: metadata.text,
          blobHex: metadata.blob.toString("hex"),
          secondHex: metadata.second.toString("hex"),
          errorHex: metadata.error.toString("hex"),
          skip: RELAY_KEEPS_REPEATED_FIELDS ? [] : ["repeated_metadata"],
        });
        try {
          await runSteps(t, { backend, proxy, client }, metadata);
        } finally {
          const code = await client.close();
          assert.equal(code, 0, `the C-core client exited with ${code}:\n${client.log.tail()}`);
        }
      } finally {
        await proxy.stop();
      }
    } finally {
      await backend.stop();
    }
  },
});
