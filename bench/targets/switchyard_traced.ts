/**
 * `switchyard-traced`: this checkout's Switchyard (1 worker, as `switchyard`) with Deno's
 * OpenTelemetry on (`OTEL_DENO=true`), exporting every call's span over OTLP/HTTP (protobuf,
 * Deno's default) to a local sink that the target starts beside it. Run next to `switchyard`,
 * it measures what tracing costs, exporting included: the exporter runs in the proxy's
 * process (Deno's own thread), so its CPU is counted; the sink's is not.
 *
 * Deno's batch span processor keeps its defaults (`OTEL_BSP_*`: a batch of 512 spans, or
 * every 5 s), as a deployment would; when the target stops, it prints how many spans reached
 * the sink against the calls the proxy finished, since a full span queue drops spans.
 * @module
 */
import { startOtlpSink } from "./otlp_sink.ts";
import { startSwitchyard } from "./switchyard.ts";
import type { BackendAddresses, Target } from "./target.ts";

/** Starts the sink, then the proxy exporting to it; resolves once the proxy listens. */
export async function startTracedSwitchyard(
  backends: BackendAddresses,
  workDir: string,
): Promise<Target> {
  const sink = await startOtlpSink();
  let target: Target;
  try {
    target = await startSwitchyard(backends, workDir, {
      name: "switchyard-traced",
      workers: 1,
      env: {
        OTEL_DENO: "true",
        OTEL_EXPORTER_OTLP_ENDPOINT: sink.endpoint,
        OTEL_EXPORTER_OTLP_PROTOCOL: "http/protobuf",
        OTEL_SERVICE_NAME: "switchyard-bench",
      },
    });
  } catch (error) {
    await sink.stop();
    throw error;
  }
  const ledger = target.ledger("fast");
  return {
    ...target,
    async stop(): Promise<void> {
      const counts = await ledger?.read().catch(() => undefined);
      const calls = counts && [...counts.values()].reduce((sum, count) => sum + count, 0);
      try {
        // Deno flushes its span queue when the proxy exits.
        await target.stop();
      } finally {
        const stats = await sink.stats().catch(() => undefined);
        await sink.stop();
        console.error(
          `switchyard-traced: the OTLP sink received ${stats?.spans ?? "?"} spans ` +
            `(${stats?.exports ?? "?"} exports, ${stats?.bytes ?? "?"} bytes) ` +
            `for ${calls ?? "?"} calls`,
        );
      }
    },
  };
}
