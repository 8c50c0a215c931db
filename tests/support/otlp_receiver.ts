/**
 * A small OTLP/HTTP receiver on loopback, for tests of the proxy's tracing: it takes the JSON
 * encoding (`OTEL_EXPORTER_OTLP_PROTOCOL=http/json`) on `/v1/traces` and keeps every span;
 * `/v1/metrics` and `/v1/logs`, which Deno exports too, are acknowledged and dropped.
 * @module
 */

/** An attribute value as OTLP/JSON writes it (64-bit integers as strings). */
interface AnyValue {
  readonly stringValue?: string;
  readonly intValue?: string | number;
  readonly doubleValue?: number;
  readonly boolValue?: boolean;
}

/** One span as the receiver got it. */
export interface ReceivedSpan {
  /** The instrumentation scope's name (the proxy's spans: `switchyard`). */
  readonly scope: string;
  /** 32 lowercase hex digits. */
  readonly traceId: string;
  /** 16 lowercase hex digits. */
  readonly spanId: string;
  /** 16 lowercase hex digits; empty for a root span. */
  readonly parentSpanId: string;
  readonly name: string;
  /** OTLP's `SpanKind`: 2 is SERVER. */
  readonly kind: number;
  /** Attribute values: integers as numbers (`intValue`), which also tells them from doubles. */
  readonly attributes: Readonly<Record<string, string | number | boolean>>;
  /** Which attributes came as `intValue`. */
  readonly intAttributes: ReadonlySet<string>;
  /** OTLP's status: code 2 is ERROR, 0 UNSET. */
  readonly status: { readonly code: number; readonly message: string };
  /** The service's `service.name` resource attribute. */
  readonly serviceName: string | undefined;
}

/** A running receiver. */
export interface OtlpReceiver {
  /** The base URL, for `OTEL_EXPORTER_OTLP_ENDPOINT`. */
  readonly endpoint: string;
  /** Every span received so far, in arrival order. */
  spans(): readonly ReceivedSpan[];
  /** Requests on paths other than the three OTLP signals, or in another encoding. */
  rejected(): number;
  /** Stops listening. */
  close(): Promise<void>;
}

interface KeyValue {
  readonly key: string;
  readonly value: AnyValue;
}

interface ExportTraceRequest {
  readonly resourceSpans?: readonly {
    readonly resource?: { readonly attributes?: readonly KeyValue[] };
    readonly scopeSpans?: readonly {
      readonly scope?: { readonly name?: string };
      readonly spans?: readonly {
        readonly traceId: string;
        readonly spanId: string;
        readonly parentSpanId?: string;
        readonly name: string;
        readonly kind: number;
        readonly attributes?: readonly KeyValue[];
        readonly status?: { readonly code?: number; readonly message?: string };
      }[];
    }[];
  }[];
}

function attributeValue(value: AnyValue): string | number | boolean | undefined {
  if (value.stringValue !== undefined) return value.stringValue;
  if (value.intValue !== undefined) return Number(value.intValue);
  if (value.doubleValue !== undefined) return value.doubleValue;
  return value.boolValue;
}

function spansOf(request: ExportTraceRequest): ReceivedSpan[] {
  const spans: ReceivedSpan[] = [];
  for (const resourceSpans of request.resourceSpans ?? []) {
    const serviceName = resourceSpans.resource?.attributes
      ?.find((attribute) => attribute.key === "service.name")?.value.stringValue;
    for (const scopeSpans of resourceSpans.scopeSpans ?? []) {
      for (const span of scopeSpans.spans ?? []) {
        const attributes: Record<string, string | number | boolean> = {};
        const intAttributes = new Set<string>();
        for (const { key, value } of span.attributes ?? []) {
          const decoded = attributeValue(value);
          if (decoded !== undefined) attributes[key] = decoded;
          if (value.intValue !== undefined) intAttributes.add(key);
        }
        spans.push({
          scope: scopeSpans.scope?.name ?? "",
          traceId: span.traceId,
          spanId: span.spanId,
          parentSpanId: span.parentSpanId ?? "",
          name: span.name,
          kind: span.kind,
          attributes,
          intAttributes,
          status: { code: span.status?.code ?? 0, message: span.status?.message ?? "" },
          serviceName,
        });
      }
    }
  }
  return spans;
}

const SIGNALS = new Set(["/v1/traces", "/v1/metrics", "/v1/logs"]);

/** Starts a receiver on a free port of 127.0.0.1. */
export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const spans: ReceivedSpan[] = [];
  let rejected = 0;
  const listening = Promise.withResolvers<Deno.NetAddr>();
  const server = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    onListen: (address) => listening.resolve(address),
  }, async (request) => {
    const path = new URL(request.url).pathname;
    const json = request.headers.get("content-type")?.startsWith("application/json") ?? false;
    const body = await request.text();
    if (request.method !== "POST" || !SIGNALS.has(path) || !json) {
      rejected++;
      return new Response("unsupported", { status: 415 });
    }
    if (path === "/v1/traces") spans.push(...spansOf(JSON.parse(body)));
    // An empty ExportTraceServiceResponse: everything accepted.
    return Response.json({});
  });
  const { port } = await listening.promise;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    spans: () => spans,
    rejected: () => rejected,
    close: () => server.shutdown(),
  };
}
