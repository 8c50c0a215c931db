/**
 * `/metrics` and the access log, end to end: real grpc-js calls through the proxy process,
 * then the exposition text parsed strictly and compared with the calls made.
 */
import * as grpc from "@grpc/grpc-js";
import assert from "node:assert/strict";
import { adminRequest, startAdminProxy } from "./support/admin_client.ts";
import { clusterConfig, GRPC_JS, type ProxyProcess, waitFor } from "./support/harness.ts";
import { parsePrometheusText, type Sample, sumSamples } from "./support/prometheus.ts";
import { closeRaw, connectRaw, rawCall, startRawBackend } from "./support/raw_h2.ts";
import {
  expectServiceError,
  FAIL_STATUS,
  startTestBackend,
  testClient,
  TestMethod,
  unaryCall,
} from "./support/test_backend.ts";

const OK_CALLS = 5;
const FAILED_CALLS = 3;

/** Makes the calls every test here counts on: some that succeed and some that fail. */
async function makeCalls(address: string): Promise<void> {
  const client = testClient(address);
  try {
    for (let i = 0; i < OK_CALLS; i++) {
      await unaryCall(client, TestMethod.echo, Buffer.from("hello"));
    }
    for (let i = 0; i < FAILED_CALLS; i++) {
      const error = await expectServiceError(unaryCall(client, TestMethod.fail));
      assert.equal(error.code, FAIL_STATUS.code);
    }
  } finally {
    client.close();
  }
}

Deno.test("/metrics is valid exposition text and counts the calls made", GRPC_JS, async () => {
  const backend = await startTestBackend("b1");
  try {
    const proxy = await startAdminProxy(clusterConfig([backend.address], {
      healthCheck: { interval: "100ms", timeout: "1s" },
    }));
    try {
      await makeCalls(proxy.address);
      const echo = { cluster: "echo", backend: backend.address, method: TestMethod.echo };
      const fail = { cluster: "echo", backend: backend.address, method: TestMethod.fail };
      const scrape = async (): Promise<Sample[]> => {
        const response = await adminRequest(proxy, "/metrics");
        assert.equal(response.status, 200);
        assert.match(response.contentType, /^text\/plain; version=0\.0\.4/);
        return parsePrometheusText(response.body);
      };
      // Calls are counted when the proxy finishes them, a moment after the client sees them.
      const samples = await waitFor(async () => {
        const samples = await scrape();
        const done = sumSamples(samples, "switchyard_calls_total") === OK_CALLS + FAILED_CALLS;
        const checked = sumSamples(samples, "switchyard_health_checks_total") > 0;
        return done && checked ? samples : undefined;
      }, { what: "every call and a health check to be counted" });

      const calls = (labels: Record<string, string>) =>
        sumSamples(samples, "switchyard_calls_total", labels);
      assert.equal(calls({ ...echo, grpc_status: "OK" }), OK_CALLS);
      assert.equal(
        calls({ ...fail, grpc_status: "FAILED_PRECONDITION" }),
        FAILED_CALLS,
      );
      assert.equal(
        sumSamples(samples, "switchyard_call_duration_seconds_count", { cluster: "echo" }),
        OK_CALLS + FAILED_CALLS,
      );
      assert.equal(
        sumSamples(samples, "switchyard_call_duration_seconds_bucket", {
          cluster: "echo",
          method: TestMethod.echo,
          le: "+Inf",
        }),
        OK_CALLS,
      );

      // Bytes, from the client's side: every request is one gRPC frame (5-byte prefix) with
      // "hello" for Echo and nothing for Fail; Echo answers with the same frame, Fail with none.
      const { body: cluster } = await adminRequest(proxy, "/clusters/echo");
      assert.deepEqual(
        [cluster.calls, cluster.errors],
        [OK_CALLS + FAILED_CALLS, FAILED_CALLS],
        "the cluster counts every call and every non-OK status",
      );
      const [view] = cluster.backends;
      const requestBytes = OK_CALLS * (5 + "hello".length) + FAILED_CALLS * 5;
      const responseBytes = OK_CALLS * (5 + "hello".length);
      const perBackendBytes = { backend: backend.address };
      assert.equal(
        sumSamples(samples, "switchyard_bytes_received_total", perBackendBytes),
        requestBytes,
      );
      assert.equal(
        sumSamples(samples, "switchyard_bytes_sent_total", perBackendBytes),
        responseBytes,
      );
      assert.equal(view.bytesReceived, requestBytes);
      assert.equal(view.bytesSent, responseBytes);

      const perBackend = { cluster: "echo", backend: backend.address };
      assert.equal(sumSamples(samples, "switchyard_active_streams", perBackend), 0);
      assert.equal(
        sumSamples(samples, "switchyard_backend_connectivity", { ...perBackend, state: "READY" }),
        1,
      );
      assert.equal(sumSamples(samples, "switchyard_backend_connectivity", perBackend), 1);
      assert.equal(sumSamples(samples, "switchyard_backend_health", perBackend), 1);
      assert.equal(
        sumSamples(samples, "switchyard_backend_health", { ...perBackend, status: view.health }),
        1,
      );
      assert.equal(
        sumSamples(samples, "switchyard_cluster_members", { cluster: "echo", source: "static" }),
        1,
      );
      assert.equal(
        sumSamples(samples, "switchyard_cluster_members", { cluster: "echo", source: "admin" }),
        0,
      );
      assert.equal(sumSamples(samples, "switchyard_ejections_total", perBackend), 0);
      assert.ok(samples.some((s) => s.name === "switchyard_ejections_total"));
      assert.equal(sumSamples(samples, "switchyard_redis_connected"), 0, "no Redis configured");
    } finally {
      await proxy.stop();
    }
  } finally {
    await backend.stop();
  }
});

Deno.test(
  "the access log writes one JSON line per call to a file, flushed on shutdown",
  GRPC_JS,
  async () => {
    const backend = await startTestBackend("b1");
    const path = await Deno.makeTempFile({ prefix: "switchyard-access-", suffix: ".log" });
    try {
      const proxy = await startAdminProxy({
        ...clusterConfig([backend.address]),
        accessLog: { enabled: true, path },
      });
      let code: number;
      try {
        await makeCalls(proxy.address);
      } finally {
        code = await proxy.stop();
      }
      assert.equal(code, 0);
      const lines = (await Deno.readTextFile(path)).trim().split("\n").map((line) =>
        JSON.parse(line)
      );
      assert.equal(lines.length, OK_CALLS + FAILED_CALLS);
      const [first] = lines;
      assert.equal(first.method, TestMethod.echo);
      assert.equal(first.cluster, "echo");
      assert.equal(first.backend, backend.address);
      assert.equal(first.grpcStatus, 0);
      assert.equal(typeof first.durationMs, "number");
      assert.equal(first.bytesReceived, 5 + "hello".length);
      assert.equal(first.bytesSent, 5 + "hello".length);
      assert.match(first.client, /127\.0\.0\.1/);
      assert.ok(!Number.isNaN(Date.parse(first.time)));
      assert.equal(
        lines.filter((line) => line.grpcStatus === grpc.status.FAILED_PRECONDITION).length,
        FAILED_CALLS,
      );
    } finally {
      await backend.stop();
      await Deno.remove(path);
    }
  },
);

Deno.test(
  "the access log goes to stdout by default and is off unless enabled",
  GRPC_JS,
  async () => {
    const backend = await startTestBackend("b1");
    try {
      for (const enabled of [true, false]) {
        const proxy = await startAdminProxy({
          ...clusterConfig([backend.address]),
          accessLog: { enabled },
        });
        try {
          await makeCalls(proxy.address);
        } finally {
          await proxy.stop();
        }
        const accessLines = proxy.output().split("\n").filter((line) =>
          line.includes('"grpcStatus"')
        );
        assert.equal(
          accessLines.length,
          enabled ? OK_CALLS + FAILED_CALLS : 0,
          `enabled: ${enabled}`,
        );
      }
    } finally {
      await backend.stop();
    }
  },
);

Deno.test(
  "a backend grpc-status outside 0-16 or not a number is counted and logged as UNKNOWN",
  GRPC_JS,
  async () => {
    // gRPC clients map a status they do not know to UNKNOWN (PROTOCOL-HTTP2, "Status"); the
    // record says what the client saw. The values cover out of range, non-numeric, empty
    // (Number("") is 0) and forms Number() accepts but the grammar (1*DIGIT) does not.
    const statuses = ["99", "17", "-1", "abc", "", "0x1", "1e1", "+3"];
    const backend = await startRawBackend((stream, headers) => {
      stream.respond({
        ":status": 200,
        "content-type": "application/grpc",
        "grpc-status": String(headers["x-status"]),
      }, { endStream: true });
    });
    const path = await Deno.makeTempFile({ prefix: "switchyard-access-", suffix: ".log" });
    try {
      const proxy = await startAdminProxy({
        ...clusterConfig([backend.address]),
        accessLog: { enabled: true, path },
      });
      try {
        const session = await connectRaw(proxy.address);
        try {
          for (const status of statuses) {
            await rawCall(session, TestMethod.echo, undefined, { "x-status": status });
          }
        } finally {
          await closeRaw(session);
        }
        const samples = await waitFor(async () => {
          const samples = parsePrometheusText((await adminRequest(proxy, "/metrics")).body);
          const counted = sumSamples(samples, "switchyard_calls_total") === statuses.length;
          return counted ? samples : undefined;
        }, { what: "every call to be counted" });
        const labels = samples
          .filter((sample) => sample.name === "switchyard_calls_total")
          .map((sample) => sample.labels.grpc_status);
        assert.deepEqual(labels, ["UNKNOWN"]);
      } finally {
        await proxy.stop();
      }
      const logged = (await Deno.readTextFile(path)).trim().split("\n").map((line) =>
        JSON.parse(line).grpcStatus
      );
      assert.deepEqual(logged, statuses.map(() => grpc.status.UNKNOWN));
    } finally {
      await backend.close();
      await Deno.remove(path);
    }
  },
);

Deno.test("the exposition parser rejects malformed lines", () => {
  assert.throws(() => parsePrometheusText("no_type_line 1\n"), /no # TYPE/);
  assert.throws(() => parsePrometheusText("# TYPE x counter\nx{a=b} 1\n"), /not a valid sample/);
  assert.throws(() => parsePrometheusText("# TYPE x counter\nx one\n"), /not a valid sample/);
  const [sample] = parsePrometheusText('# TYPE x gauge\nx{a="q\\"uote"} +Inf\n');
  assert.deepEqual(sample, { name: "x", labels: { a: 'q"uote' }, value: Infinity });
});

/** The samples of `/metrics` that name `backend`. */
async function seriesOf(proxy: ProxyProcess, backend: string): Promise<Sample[]> {
  const response = await adminRequest(proxy, "/metrics");
  return parsePrometheusText(response.body).filter((sample) => sample.labels.backend === backend);
}

Deno.test(
  "a cluster a reload removes leaves /metrics with all of its series",
  GRPC_JS,
  async () => {
    const backend = await startTestBackend("b1");
    try {
      // Two clusters over one backend; the Echo method routes to "gone".
      const both = {
        drain: { timeout: "5s" },
        clusters: { gone: { backends: [backend.address] }, kept: { backends: [backend.address] } },
        routes: [
          { method: TestMethod.echo, cluster: "gone" },
          { service: "test.Test", cluster: "kept" },
        ],
      };
      const proxy = await startAdminProxy(both);
      try {
        const clusterSeries = async (name: string) =>
          parsePrometheusText((await adminRequest(proxy, "/metrics")).body).filter((sample) =>
            sample.labels.cluster === name
          );
        await makeCalls(proxy.address);
        await waitFor(
          async () =>
            (await clusterSeries("gone")).some((sample) =>
              sample.name === "switchyard_calls_total"
            ),
          { what: "calls counted for cluster gone" },
        );
        const { gone: _gone, ...kept } = both.clusters;
        await proxy.writeConfig({
          ...both,
          clusters: kept,
          routes: [{ service: "test.Test", cluster: "kept" }],
        });
        const reloaded = await adminRequest(proxy, "/reload", { method: "POST" });
        assert.equal(reloaded.status, 200, JSON.stringify(reloaded.body));
        await waitFor(async () => (await clusterSeries("gone")).length === 0, {
          what: "every series of the removed cluster to go",
        });
        assert.ok((await clusterSeries("kept")).length > 0, "the other cluster's stay");
      } finally {
        await proxy.stop();
      }
    } finally {
      await backend.stop();
    }
  },
);

Deno.test(
  "a backend that leaves its cluster leaves the per-call metrics too",
  GRPC_JS,
  async () => {
    const staying = await startTestBackend("b1");
    const leaving = await startTestBackend("b2");
    try {
      const proxy = await startAdminProxy(clusterConfig([staying.address]));
      try {
        const added = await adminRequest(proxy, "/clusters/echo/backends", {
          method: "POST",
          json: { address: leaving.address },
        });
        assert.equal(added.status, 201, JSON.stringify(added.body));
        // round_robin spreads calls once the new member is READY.
        await waitFor(async () => {
          await makeCalls(proxy.address);
          return (await seriesOf(proxy, leaving.address)).some((sample) =>
            sample.name === "switchyard_calls_total"
          );
        }, { what: "calls counted for the added backend" });
        const removed = await adminRequest(proxy, `/clusters/echo/backends/${leaving.address}`, {
          method: "DELETE",
        });
        assert.equal(removed.status, 200, JSON.stringify(removed.body));
        await waitFor(async () => (await seriesOf(proxy, leaving.address)).length === 0, {
          what: "the removed backend's series to go",
        });
        assert.ok((await seriesOf(proxy, staying.address)).length > 0, "the others stay");
      } finally {
        await proxy.stop();
      }
    } finally {
      await staying.stop();
      await leaving.stop();
    }
  },
);

Deno.test(
  "an access log sink that stops reading costs bounded memory and never blocks calls or shutdown",
  GRPC_JS,
  async () => {
    const backend = await startTestBackend("b1");
    const dir = await Deno.makeTempDir({ prefix: "switchyard-fifo-" });
    const fifo = `${dir}/access.log`;
    await new Deno.Command("mkfifo", { args: [fifo] }).output();
    // A reader that opens the pipe and never reads: once the pipe's buffer is full, every
    // write to it blocks.
    const reader = new Deno.Command("bash", { args: ["-c", `exec sleep 60 < ${fifo}`] }).spawn();
    try {
      const proxy = await startAdminProxy({
        ...clusterConfig([backend.address]),
        accessLog: { enabled: true, path: fifo, maxBufferedBytes: 65_536 },
      });
      let code: number | undefined;
      try {
        const session = await connectRaw(proxy.address);
        try {
          // About 250 bytes a line: enough lines to fill the pipe and the buffer twice over.
          await waitFor(async () => {
            const results = await Promise.all(
              Array.from({ length: 200 }, () => rawCall(session, TestMethod.echo)),
            );
            assert.ok(results.every((result) => result.grpcStatus === 0), "calls keep working");
            return proxy.output().includes("dropping lines past 65536 bytes");
          }, { what: "the access log to drop lines", timeoutMs: 20_000 });
        } finally {
          await closeRaw(session);
        }
      } finally {
        code = await proxy.stop();
      }
      assert.equal(code, 0, "shutdown does not wait for the stalled sink");
    } finally {
      reader.kill("SIGKILL");
      await reader.status;
      await backend.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
);

Deno.test(
  "HTTP/2 RST_STREAM and GOAWAY frames are counted by peer, direction and code",
  GRPC_JS,
  async () => {
    const backend = await startTestBackend("b1");
    try {
      const proxy = await startAdminProxy(clusterConfig([backend.address]));
      try {
        // A cancelled call: the client resets it, and the proxy resets the backend's stream.
        const client = testClient(proxy.address);
        try {
          let call: grpc.ClientUnaryCall | undefined;
          const cancelled = expectServiceError(
            unaryCall(client, TestMethod.hang, undefined, { onCall: (c) => call = c }),
          );
          await waitFor(() => backend.hangs.length === 1, {
            what: "the call to reach the backend",
          });
          call!.cancel();
          assert.equal((await cancelled).code, grpc.status.CANCELLED);
          await waitFor(() => backend.hangs[0].cancelled, {
            what: "the backend to see the cancel",
          });
        } finally {
          client.close();
        }
        const resets = (labels: Record<string, string>) => async () =>
          sumSamples(
            parsePrometheusText(String((await adminRequest(proxy, "/metrics")).body)),
            "switchyard_http2_resets_total",
            labels,
          ) > 0;
        await waitFor(resets({ peer: "client", direction: "received", code: "CANCEL" }), {
          what: "the client's RST_STREAM to be counted",
        });
        await waitFor(resets({ peer: "upstream", direction: "sent", code: "CANCEL" }), {
          what: "the proxy's RST_STREAM to the backend to be counted",
        });
      } finally {
        await proxy.stop();
      }
    } finally {
      await backend.stop();
    }
  },
);
