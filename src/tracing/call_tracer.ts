/**
 * The proxy's span of every call, through Deno's built-in OpenTelemetry and
 * `@opentelemetry/api`: a SERVER span named after the gRPC method, child of the client's span
 * when the client sent a valid W3C `traceparent`, and the parent of the backend's span.
 *
 * Propagation follows W3C Trace Context Level 1:
 * - a valid `traceparent` (§3.2) whose span Deno's sampler records: the proxy's span becomes
 *   the backend's parent: `parent-id` is rewritten to the span's id and `sampled` to the
 *   span's decision (§3.4, "Update parent-id", "Update sampled"); `tracestate` is passed on
 *   unchanged (§3.5: the proxy adds no entry of its own);
 * - a valid `traceparent` whose span is not recorded (the client's is unsampled and a
 *   `parentbased_*` sampler follows it, or `always_off`): nothing is recorded and both headers
 *   go on untouched, as a pass-through service sends them (§3.4);
 * - no `traceparent`, a malformed one, or several (combined, as RFC 9110 §5.3 reads repeated
 *   fields, they are no valid value): the trace is restarted (§3.4, "Restart trace"): a root
 *   span and a fresh `traceparent`, and `tracestate`, which belonged to the trace that was
 *   dropped, is removed (§3.4: vendors SHOULD clean it up on a restart; §3.3: it is not even
 *   parsed when `traceparent` is not).
 *
 * Sampling is Deno's: `OTEL_TRACES_SAMPLER` (`always_on` by default, so an unsampled client
 * trace is recorded all the same unless a `parentbased_*` sampler is chosen).
 *
 * Data-plane workers create their spans in their own isolates: Deno's span processor and
 * exporter are process-wide, so every worker's spans leave through the one OTLP exporter.
 * @module
 */
import {
  type Attributes,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  trace,
  type Tracer,
} from "@opentelemetry/api";
import type { CallRecord, CallSpan, CallTracer } from "../proxy/call_record.ts";
import { removeHeader, setHeader } from "../transport/stream.ts";
import { isServerError, type RpcName, rpcName } from "./rpc_names.ts";
import { formatTraceparent, parseTraceparent, SAMPLED_FLAG } from "./traceparent.ts";

/** The instrumentation scope of the proxy's spans. */
const TRACER_NAME = "switchyard";

const TRACEPARENT = "traceparent";
const TRACESTATE = "tracestate";

/**
 * An integer attribute. Deno's exporter writes a JS number as a double and a bigint as an
 * integer (OTLP `intValue`), and the semantic conventions type `rpc.grpc.status_code` as
 * an int; `@opentelemetry/api`'s types know no bigint, hence the cast.
 */
function int(value: number): number {
  return BigInt(value) as unknown as number;
}

/** One recorded call's span. */
class ProxySpan implements CallSpan {
  readonly traceId: string;
  readonly #span: Span;
  readonly #name: RpcName;

  constructor(span: Span, name: RpcName, traceId: string) {
    this.#span = span;
    this.#name = name;
    this.traceId = traceId;
  }

  end(record: CallRecord): void {
    const span = this.#span;
    const attributes: Attributes = {
      "rpc.system": "grpc",
      "rpc.grpc.status_code": int(record.grpcStatus),
      "switchyard.protocol": record.protocol,
      "switchyard.retries": int(record.retries),
    };
    const { service, method } = this.#name;
    if (service !== undefined) attributes["rpc.service"] = service;
    if (method !== undefined) attributes["rpc.method"] = method;
    if (record.cluster !== undefined) attributes["switchyard.cluster"] = record.cluster;
    if (record.backend !== undefined) attributes["switchyard.backend"] = record.backend;
    try {
      span.setAttributes(attributes);
      if (isServerError(record.grpcStatus)) {
        span.setStatus({ code: SpanStatusCode.ERROR, message: record.grpcMessage });
      }
      span.end();
    } catch {
      // A span that cannot be recorded is lost; the call's other observers still run.
    }
  }
}

/** A {@link CallTracer} on `@opentelemetry/api`'s global tracer provider (Deno's). */
export class OtelCallTracer implements CallTracer {
  readonly #tracer: Tracer;

  constructor(tracer: Tracer = trace.getTracer(TRACER_NAME)) {
    this.#tracer = tracer;
  }

  start(headers: string[], method: string): CallSpan | undefined {
    let at = -1;
    let fields = 0;
    let hasState = false;
    for (let i = 0; i < headers.length; i += 2) {
      const name = headers[i];
      if (name === TRACEPARENT) {
        if (at < 0) at = i + 1;
        fields++;
      } else if (name === TRACESTATE) hasState = true;
    }
    const parent = fields === 1 ? parseTraceparent(headers[at]) : undefined;
    const name = rpcName(method);
    let span: Span;
    try {
      span = parent === undefined
        ? this.#tracer.startSpan(name.spanName, { kind: SpanKind.SERVER, root: true })
        : this.#tracer.startSpan(
          name.spanName,
          { kind: SpanKind.SERVER },
          trace.setSpanContext(ROOT_CONTEXT, {
            traceId: parent.traceId,
            spanId: parent.parentId,
            traceFlags: parent.flags & SAMPLED_FLAG,
            isRemote: true,
          }),
        );
    } catch {
      return undefined; // tracing must never cost a call
    }
    const { traceId, spanId, traceFlags } = span.spanContext();
    const sampled = (traceFlags & SAMPLED_FLAG) !== 0;
    if (parent !== undefined) {
      // Not recorded (Deno's sampler said no): pass both headers on untouched.
      if (!sampled) return undefined;
    } else if (hasState) {
      removeHeader(headers, TRACESTATE);
    }
    setHeader(headers, TRACEPARENT, formatTraceparent(traceId, spanId, sampled));
    // An unsampled span is never exported: it has nothing to end.
    return sampled ? new ProxySpan(span, name, traceId) : undefined;
  }
}

/**
 * The proxy's tracer when Deno's OpenTelemetry is on (`OTEL_DENO=true`): then Deno has
 * registered its tracer provider as `@opentelemetry/api`'s global one. `undefined` otherwise
 * (say, `OTEL_DENO` set to a value Deno does not take): `@opentelemetry/api` would hand out
 * no-op spans, whose all-zero ids must not reach a `traceparent`.
 */
export function denoCallTracer(): CallTracer | undefined {
  if (trace.getTracerProvider() !== Deno.telemetry.tracerProvider) return undefined;
  return new OtelCallTracer();
}
