/**
 * A local OTLP/HTTP sink for `switchyard-traced`, in a process of its own so that receiving
 * spans is charged to neither the proxy nor the load generator: it answers every export
 * with success and counts, for `/v1/traces`, the requests, bytes and spans (read from the
 * protobuf by hand: `ExportTraceServiceRequest.resource_spans` (1) →
 * `ResourceSpans.scope_spans` (2) → `ScopeSpans.spans` (2)). `GET /stats` tells the counts.
 *
 * Run as a script: `deno run --allow-net bench/targets/otlp_sink.ts`; it prints
 * `otlp sink listening on http://127.0.0.1:PORT`.
 * @module
 */
import { type Child, spawnChild, waitForOutput } from "./child.ts";

/** What the sink received on `/v1/traces`. */
export interface SinkStats {
  /** Export requests. */
  readonly exports: number;
  /** Spans in them. */
  readonly spans: number;
  /** Request body bytes. */
  readonly bytes: number;
}

/** A running sink. */
export interface OtlpSink {
  /** Its base URL, for `OTEL_EXPORTER_OTLP_ENDPOINT`. */
  readonly endpoint: string;
  /** What it received so far. */
  stats(): Promise<SinkStats>;
  /** Stops it. */
  stop(): Promise<void>;
}

/** Reads a base-128 varint at `at`; returns the value and the offset after it. */
function varint(bytes: Uint8Array, at: number): [number, number] {
  let value = 0;
  let scale = 1;
  for (;;) {
    if (at >= bytes.length) throw new Error("truncated varint");
    const byte = bytes[at++];
    value += (byte & 0x7f) * scale;
    if (byte < 0x80) return [value, at];
    scale *= 128;
  }
}

/**
 * Calls `onField(number, from, to)` for each length-delimited field of the message in
 * `bytes[from, to)`, skipping the others (protobuf wire types 0, 1, 2 and 5).
 */
function lengthDelimited(
  bytes: Uint8Array,
  from: number,
  to: number,
  onField: (field: number, from: number, to: number) => void,
): void {
  let at = from;
  while (at < to) {
    const [key, next] = varint(bytes, at);
    at = next;
    const wireType = key & 7;
    if (wireType === 0) at = varint(bytes, at)[1];
    else if (wireType === 1) at += 8;
    else if (wireType === 5) at += 4;
    else if (wireType === 2) {
      const [length, start] = varint(bytes, at);
      at = start + length;
      onField(key >>> 3, start, at);
    } else throw new Error(`unexpected wire type ${wireType}`);
  }
}

/** The spans in an `ExportTraceServiceRequest`. */
export function countSpans(bytes: Uint8Array): number {
  let spans = 0;
  lengthDelimited(bytes, 0, bytes.length, (field, from, to) => {
    if (field !== 1) return; // resource_spans
    lengthDelimited(bytes, from, to, (field, from, to) => {
      if (field !== 2) return; // scope_spans
      lengthDelimited(bytes, from, to, (field) => {
        if (field === 2) spans++; // spans
      });
    });
  });
  return spans;
}

function serve(): void {
  let exports = 0;
  let spans = 0;
  let bytes = 0;
  Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    onListen: ({ port }) => console.log(`otlp sink listening on http://127.0.0.1:${port}`),
  }, async (request) => {
    const path = new URL(request.url).pathname;
    if (request.method === "GET" && path === "/stats") {
      return Response.json({ exports, spans, bytes } satisfies SinkStats);
    }
    const body = new Uint8Array(await request.arrayBuffer());
    if (path === "/v1/traces") {
      exports++;
      bytes += body.length;
      spans += countSpans(body);
    }
    // An empty Export*ServiceResponse: everything accepted.
    return new Response(new Uint8Array(0), {
      headers: { "content-type": "application/x-protobuf" },
    });
  });
}

/** Starts the sink in a child process. */
export async function startOtlpSink(): Promise<OtlpSink> {
  const child: Child = spawnChild(Deno.execPath(), [
    "run",
    "--allow-net",
    new URL(import.meta.url).pathname,
  ]);
  let endpoint: string;
  try {
    endpoint = (await waitForOutput(child, /otlp sink listening on (\S+)/))[1];
  } catch (error) {
    await child.stop();
    throw error;
  }
  return {
    endpoint,
    async stats(): Promise<SinkStats> {
      const response = await fetch(`${endpoint}/stats`);
      return await response.json();
    },
    async stop(): Promise<void> {
      await child.stop();
    },
  };
}

if (import.meta.main) serve();
