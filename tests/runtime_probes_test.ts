/**
 * Runtime probes: release gates for the pinned Deno version (see `docs/deno-http2.md`).
 * Each one drives the real proxy process through something that has crashed or bloated
 * Deno's `node:http2` before, then checks that the process is alive and still serving.
 * Measured numbers are printed as `probe …` lines.
 */
import assert from "node:assert/strict";
import type http2 from "node:http2";
import {
  clusterConfig,
  GRPC_JS,
  type ProxyProcess,
  startProxy,
  waitFor,
} from "./support/harness.ts";
import {
  closeRaw,
  connectRaw,
  grpcFrame,
  rawCall,
  type RawCallResult,
  respondOk,
  startRawBackend,
} from "./support/raw_h2.ts";
import { servedBy, startTestBackend, testClient } from "./support/test_backend.ts";

const CRASH_SIGNS = /Assertion .* failed|panicked|Segmentation fault|free\(\): invalid|Aborted/;
const PATH = "/test.Test/Echo";
const MiB = 1 << 20;

/** Fails with the proxy's output when it has exited or printed a native crash. */
async function assertServing(proxy: ProxyProcess): Promise<void> {
  assert.ok(!proxy.hasExited(), `the proxy exited:\n${proxy.output().slice(-3000)}`);
  assert.doesNotMatch(proxy.output(), CRASH_SIGNS);
  const session = await connectRaw(proxy.address);
  try {
    assert.equal((await rawCall(session, PATH)).grpcStatus, 0, "a new call must succeed");
  } finally {
    await closeRaw(session);
  }
}

/**
 * Makes `count` calls on one session, one at a time by default: sequential calls (like
 * `h2load -m1`) are what made unpatched Deno crash most often.
 */
async function callMany(
  session: http2.ClientHttp2Session,
  count: number,
  lanes = 1,
): Promise<RawCallResult[]> {
  const results: RawCallResult[] = [];
  let started = 0;
  await Promise.all(Array.from({ length: lanes }, async () => {
    while (started < count) {
      started++;
      results.push(await rawCall(session, PATH));
    }
  }));
  return results;
}

/** Runs `h2load` for `calls` sequential calls on one connection, which it then closes. */
async function h2loadCalls(address: string, calls: number): Promise<number> {
  const body = await Deno.makeTempFile({ prefix: "switchyard-h2load-" });
  try {
    await Deno.writeFile(body, grpcFrame(new Uint8Array()));
    const { stdout } = await new Deno.Command("h2load", {
      args: [
        "-c1",
        "-m1",
        `-n${calls}`,
        "-H",
        "content-type: application/grpc",
        "-H",
        "te: trailers",
        "-d",
        body,
        `http://${address}${PATH}`,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const summary = /requests: .* (\d+) succeeded/.exec(new TextDecoder().decode(stdout));
    return Number(summary?.[1] ?? 0);
  } finally {
    await Deno.remove(body);
  }
}

function ms(since: number): number {
  return Math.round(performance.now() - since);
}

function log(probe: string, numbers: Record<string, unknown>): void {
  console.log(`probe ${probe}: ${JSON.stringify(numbers)}`);
}

Deno.test({
  name: "probe: clients that close after 2000 calls on one connection",
  ...GRPC_JS,
  fn: async () => {
    const backend = await startRawBackend(respondOk);
    try {
      const proxy = await startProxy(clusterConfig([backend.address]));
      try {
        // Two clients: node:http2 (Deno's own) and h2load (nghttp2), which reproduced the
        // crash on the first connection in every unpatched run here.
        for (let round = 0; round < 3; round++) {
          const session = await connectRaw(proxy.address);
          const started = performance.now();
          const results = await callMany(session, 2000);
          await closeRaw(session); // GOAWAY after 2000 streams, the crash trigger
          const ok = results.filter((r) => r.grpcStatus === 0).length;
          log("client-close-after-2000", { client: "node:http2", round, ok, ms: ms(started) });
          assert.equal(ok, 2000);
          await assertServing(proxy);
        }
        for (let round = 0; round < 3; round++) {
          const started = performance.now();
          const ok = await h2loadCalls(proxy.address, 2000);
          log("client-close-after-2000", { client: "h2load", round, ok, ms: ms(started) });
          assert.equal(ok, 2000);
          await assertServing(proxy);
        }
      } finally {
        await proxy.stop();
      }
    } finally {
      await backend.close();
    }
  },
});

Deno.test({
  name: "probe: a backend that sends GOAWAY after 1000 calls",
  ...GRPC_JS,
  fn: async () => {
    const callsPerConnection = 1000;
    const served = new Map<http2.ServerHttp2Session, number>();
    let goaways = 0;
    const backend = await startRawBackend((stream) => {
      const session = stream.session as http2.ServerHttp2Session;
      const count = (served.get(session) ?? 0) + 1;
      served.set(session, count);
      respondOk(stream);
      if (count === callsPerConnection) {
        goaways++;
        stream.once("close", () => {
          session.goaway(0);
          session.close();
        });
      }
    });
    try {
      const proxy = await startProxy(clusterConfig([backend.address]));
      const session = await connectRaw(proxy.address);
      try {
        const total = 3 * callsPerConnection + 100;
        const results = await callMany(session, total);
        const ok = results.filter((r) => r.grpcStatus === 0).length;
        // A call racing the GOAWAY may be refused (retryable); it must never hang or crash.
        const refused = results.filter((r) => r.grpcStatus !== 0);
        log("backend-goaway-after-1000", { calls: total, ok, refused: refused.length, goaways });
        assert.ok(goaways >= 2, `backend sent ${goaways} GOAWAYs`);
        assert.ok(ok >= total - 10 * goaways, `${ok} of ${total} calls succeeded`);
        await assertServing(proxy);
      } finally {
        session.destroy();
        await proxy.stop();
      }
    } finally {
      await backend.close();
    }
  },
});

Deno.test({
  name: "probe: a restarted backend is served again within 2 s",
  ...GRPC_JS,
  fn: async () => {
    let backend = await startTestBackend("first");
    const proxy = await startProxy(clusterConfig([backend.address]));
    const client = testClient(proxy.address);
    try {
      assert.equal(await servedBy(client), "first");
      await backend.stop();
      await waitFor(() => servedBy(client).then(() => false, () => true), {
        what: "calls to fail while the backend is down",
      });
      backend = await startTestBackend("second", backend.port);
      const restartedAt = performance.now();
      await waitFor(() => servedBy(client).then((name) => name === "second"), {
        timeoutMs: 5_000,
        what: "the restarted backend to serve",
      });
      const recoveryMs = Math.round(performance.now() - restartedAt);
      log("backend-restart", { recoveryMs });
      assert.ok(recoveryMs < 2_000, `served again after ${recoveryMs}ms`);
      await assertServing(proxy);
    } finally {
      client.close();
      await proxy.stop();
      await backend.stop();
    }
  },
});

Deno.test({
  name: "probe: a 256 MiB stream to a slow reader keeps proxy memory bounded",
  ...GRPC_JS,
  fn: async () => {
    const message = grpcFrame(new Uint8Array(64 * 1024 - 5));
    const producer = { written: 0, closed: false };
    // Streams `x-bytes` bytes as fast as flow control allows (write until told to wait,
    // continue on drain), then the OK trailers.
    const backend = await startRawBackend((stream, headers) => {
      if (headers[":path"] === PATH) return respondOk(stream);
      const total = Number(headers["x-bytes"]);
      stream.respond({ ":status": 200, "content-type": "application/grpc" }, {
        waitForTrailers: true,
      });
      stream.once("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
      stream.once("close", () => producer.closed = true);
      stream.resume();
      const produce = () => {
        while (!stream.closed && producer.written < total) {
          producer.written += message.length;
          if (!stream.write(message)) return void stream.once("drain", produce);
        }
        if (!stream.closed) stream.end();
      };
      produce();
    });
    try {
      const proxy = await startProxy(clusterConfig([backend.address]));
      const session = await connectRaw(proxy.address);
      try {
        await assertServing(proxy);
        const cold = await proxy.rssBytes();
        // Streaming at all raises RSS by a fixed ~75-95 MiB, with a fast reader as with a slow
        // one, for 64 MiB as for 1 GiB, and the same with V8's young generation capped: it is
        // the allocator and GC thresholds for the per-frame buffers that Deno's node:http2
        // allocates, not data held for a reader. A fast 64 MiB stream first reaches that
        // plateau, so the probe measures what a slow reader adds on top.
        const warmup = await rawCall(session, "/test.Test/Stream", undefined, {
          "x-bytes": String(64 * MiB),
        });
        assert.equal(warmup.body.length, 64 * MiB);
        producer.written = 0;
        producer.closed = false;
        const baseline = await proxy.rssBytes();
        let peak = baseline;
        let maxInFlight = 0;
        const streamBytes = 256 * MiB;
        // The slow reader: about 32 MiB/s, in bursts with 100 ms pauses, against a backend
        // that could send gigabytes per second.
        const burstBytes = 3.2 * MiB;
        let sinceLastPause = 0;
        let received = 0;
        const result = rawCall(
          session,
          "/test.Test/Stream",
          undefined,
          { "x-bytes": String(streamBytes) },
          (stream) =>
            stream.on("data", (chunk: Buffer) => {
              received += chunk.length;
              sinceLastPause += chunk.length;
              if (sinceLastPause < burstBytes) return;
              sinceLastPause = 0;
              stream.pause();
              setTimeout(() => stream.resume(), 100);
            }),
        );
        let finished = false;
        result.then(() => finished = true);
        const started = performance.now();
        while (!finished) {
          peak = Math.max(peak, await proxy.rssBytes());
          maxInFlight = Math.max(maxInFlight, producer.written - received);
          assert.ok(ms(started) < 60_000, "the slow stream must finish within 60 s");
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
        const { body, grpcStatus } = await result;
        await assertServing(proxy);
        const growth = peak - baseline;
        const mib = (bytes: number) => +(bytes / MiB).toFixed(1);
        log("slow-reader-256MiB", {
          durationMs: ms(started),
          deliveredMiB: mib(body.length),
          coldRssMiB: mib(cold),
          baselineRssMiB: mib(baseline),
          peakRssMiB: mib(peak),
          growthMiB: mib(growth),
          growthFromColdMiB: mib(peak - cold),
          maxBackendAheadMiB: mib(maxInFlight),
        });
        assert.equal(body.length, streamBytes, "every byte arrives");
        assert.equal(grpcStatus, 0, "and the trailers after them");
        // Backpressure: the backend may only run ahead of the reader by the flow-control
        // windows on the way (the 1 MiB upstream stream window plus write buffers).
        assert.ok(maxInFlight < 8 * MiB, `backend ran ${mib(maxInFlight)} MiB ahead`);
        assert.ok(growth < 64 * MiB, `proxy RSS grew by ${mib(growth)} MiB`);
      } finally {
        session.destroy();
        await proxy.stop();
      }
    } finally {
      await backend.close();
    }
  },
});
