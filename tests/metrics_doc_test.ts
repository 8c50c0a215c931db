/**
 * docs/metrics.md is the metrics' contract: a running proxy's `/metrics` is checked against
 * it, metric by metric (names, types, label names, histogram buckets), both ways.
 * @module
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { VERSION } from "../src/version.ts";
import { adminRequest, startAdminProxy } from "./support/admin_client.ts";
import { clusterConfig, freePort, GRPC_JS, waitFor } from "./support/harness.ts";
import { parsePrometheusText, type Sample, sumSamples } from "./support/prometheus.ts";
import {
  expectServiceError,
  startTestBackend,
  testClient,
  TestMethod,
  unaryCall,
} from "./support/test_backend.ts";

const DOC = new URL("../docs/metrics.md", import.meta.url);

/** One metric as docs/metrics.md lists it. */
interface DocumentedMetric {
  readonly type: string;
  /** Label names; `undefined` for the process metrics, whose tables list none. */
  readonly labels: readonly string[] | undefined;
}

/** Reads every metric row and every "Buckets of" sentence of docs/metrics.md. */
async function readDoc(): Promise<{
  metrics: Map<string, DocumentedMetric>;
  buckets: Map<string, number[]>;
}> {
  const text = await Deno.readTextFile(DOC);
  const metrics = new Map<string, DocumentedMetric>();
  for (const line of text.split("\n")) {
    const cells = line.split("|").slice(1, -1).map((cell) => cell.trim());
    const name = /^`([a-z0-9_]+)`$/.exec(cells[0] ?? "")?.[1];
    if (name === undefined || !/^(counter|gauge|histogram)$/.test(cells[1])) continue;
    const labels = name.startsWith("switchyard_")
      ? cells[2] === "—" ? [] : cells[2].split(",").map((label) => label.trim().replaceAll("`", ""))
      : undefined;
    assert.ok(!metrics.has(name), `${name} is documented twice`);
    metrics.set(name, { type: cells[1], labels });
  }
  const buckets = new Map<string, number[]>();
  const prose = text.replace(/\s+/g, " ");
  for (const [, name, list] of prose.matchAll(/Buckets of `(\w+)`, in seconds: ([\d., ]+)\./g)) {
    buckets.set(name, list.split(",").map(Number));
  }
  return { metrics, buckets };
}

/** `# TYPE` lines: every family `/metrics` declares, with its type. */
function familiesOf(text: string): Map<string, string> {
  const families = new Map<string, string>();
  for (const [, name, type] of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) families.set(name, type);
  return families;
}

/** The family a sample belongs to (a histogram's series carry suffixes). */
function familyOf(sample: Sample, families: ReadonlyMap<string, string>): string {
  if (families.has(sample.name)) return sample.name;
  return sample.name.replace(/_(bucket|sum|count)$/, "");
}

Deno.test(
  "every metric in /metrics is in docs/metrics.md with its type, labels and buckets, and back",
  GRPC_JS,
  async () => {
    const { metrics: documented, buckets } = await readDoc();
    assert.ok(documented.size > 30, `docs/metrics.md lists ${documented.size} metrics`);
    const backend = await startTestBackend("b1");
    // Nothing listens here: its dials fail, so the connect-failure series exist.
    const dead = `127.0.0.1:${await freePort()}`;
    const proxy = await startAdminProxy(clusterConfig([backend.address, dead]));
    try {
      const client = testClient(proxy.address);
      try {
        await waitFor(async () => {
          const { served } = await unaryCall(client, TestMethod.echo, Buffer.from("hi"))
            .then(() => ({ served: true }), () => ({ served: false }));
          return served;
        }, { what: "a call to succeed" });
        await expectServiceError(unaryCall(client, TestMethod.fail));
      } finally {
        client.close();
      }
      const text = await waitFor(async () => {
        const text = String((await adminRequest(proxy, "/metrics")).body);
        const samples = parsePrometheusText(text);
        const failed = sumSamples(samples, "switchyard_upstream_connect_failures_total", {
          backend: dead,
          reason: "refused",
        });
        const goaway = sumSamples(samples, "switchyard_http2_goaway_total", {
          peer: "client",
          direction: "received",
        });
        return failed > 0 && goaway > 0 ? text : undefined;
      }, { what: "the dead backend's connect failures and the client's GOAWAY to be counted" });

      const families = familiesOf(text);
      for (const [name, { type }] of documented) {
        assert.equal(families.get(name), type, `${name} is in /metrics as a ${type}`);
      }
      for (const [name] of families) {
        if (name.startsWith("switchyard_")) {
          assert.ok(documented.has(name), `${name} is documented`);
        }
      }

      const samples = parsePrometheusText(text);
      const seen = new Set<string>();
      for (const sample of samples) {
        const family = familyOf(sample, families);
        const labels = documented.get(family)?.labels;
        if (labels === undefined) continue;
        seen.add(family);
        const names = Object.keys(sample.labels).filter((label) => label !== "le");
        assert.deepEqual(names.sort(), [...labels].sort(), `labels of ${sample.name}`);
      }
      // The label checks above must not pass for lack of samples.
      for (
        const family of [
          "switchyard_calls_started_total",
          "switchyard_calls_total",
          "switchyard_call_duration_seconds",
          "switchyard_client_connections_total",
          "switchyard_upstream_connections_active",
          "switchyard_upstream_connect_failures_total",
          "switchyard_upstream_connect_duration_seconds",
          "switchyard_http2_goaway_total",
          "switchyard_build_info",
          "switchyard_dataplane_heap_used_bytes",
        ]
      ) assert.ok(seen.has(family), `${family} has samples`);

      assert.deepEqual([...buckets.keys()].sort(), [
        "switchyard_call_duration_seconds",
        "switchyard_upstream_connect_duration_seconds",
      ]);
      for (const [family, bounds] of buckets) {
        const le = new Set(
          samples.filter((sample) => sample.name === `${family}_bucket`).map((sample) =>
            sample.labels.le
          ),
        );
        assert.deepEqual([...le], [...bounds.map(String), "+Inf"], `buckets of ${family}`);
      }

      const calls = (labels: Record<string, string>) =>
        sumSamples(samples, "switchyard_calls_total", labels);
      assert.equal(calls({ grpc_status: "FAILED_PRECONDITION" }), 1, "status names as labels");
      assert.ok(calls({ grpc_status: "OK" }) >= 1);
      const buildInfo = samples.find((sample) => sample.name === "switchyard_build_info");
      assert.deepEqual(buildInfo?.labels, { version: VERSION, deno: Deno.version.deno });
      assert.ok(sumSamples(samples, "process_cpu_seconds_total") > 0, "process CPU is read");
      assert.ok(sumSamples(samples, "process_resident_memory_bytes") > 0, "RSS is read");
      assert.ok(sumSamples(samples, "process_open_fds") > 0, "open FDs are read");
    } finally {
      await proxy.stop();
      await backend.stop();
    }
  },
);
