/**
 * Load from h2load (nghttp2), which is much cheaper per call than any JavaScript client.
 * h2load cannot read gRPC trailers: it counts a call as succeeded on HTTP 200 alone, so the
 * bench wraps every h2load run in the built-in correctness gate. Per-call latencies come
 * from its `--log-file`.
 * @module
 */
import type { LoadPlan } from "./builtin_load.ts";
import { type LoadResult, quantile } from "./load_result.ts";

/** Parses h2load's summary; exported for its own sake (the format is h2load's, not ours). */
export function parseH2loadSummary(output: string): {
  elapsedS: number;
  succeeded: number;
  failed: number;
  dataBytes: number;
} {
  const finished = /finished in ([\d.]+)(m?s),/.exec(output);
  const requests =
    /requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/
      .exec(output);
  const traffic = /traffic: .*?\((\d+)\) data/.exec(output);
  if (!finished || !requests || !traffic) throw new Error(`unexpected h2load output:\n${output}`);
  const elapsed = Number(finished[1]);
  return {
    elapsedS: finished[2] === "ms" ? elapsed / 1000 : elapsed,
    succeeded: Number(requests[1]),
    failed: Number(requests[2]) + Number(requests[3]) + Number(requests[4]),
    dataBytes: Number(traffic[1]),
  };
}

/** Per-call latencies (ms, ascending) from an h2load `--log-file` (3rd column: µs). */
async function readLatencies(logFile: string): Promise<Float64Array> {
  const lines = (await Deno.readTextFile(logFile)).split("\n");
  const latencies = new Float64Array(lines.length);
  let count = 0;
  for (const line of lines) {
    const micros = Number(line.split("\t")[2]);
    if (Number.isFinite(micros)) latencies[count++] = micros / 1000;
  }
  return latencies.subarray(0, count).sort();
}

/** Runs h2load (at `h2loadPath`) against `plan`; `workDir` holds its body and log files. */
export async function runH2load(
  h2loadPath: string,
  plan: LoadPlan,
  workDir: string,
): Promise<LoadResult> {
  const bodyFile = `${workDir}/request.bin`;
  const logFile = `${workDir}/h2load.log`;
  await Deno.writeFile(bodyFile, plan.shape.body);
  await Deno.remove(logFile).catch(() => {}); // h2load appends to an existing log
  const headerArgs = Object.entries({
    "content-type": "application/grpc",
    te: "trailers",
    ...plan.shape.headers,
  }).flatMap(([name, value]) => ["-H", `${name}: ${value}`]);
  const { stdout, stderr, success } = await new Deno.Command(h2loadPath, {
    args: [
      "-c",
      String(plan.connections),
      "-m",
      String(plan.streamsPerConnection),
      "-t",
      "1",
      "-D",
      `${Math.round(plan.durationS * 1000)}ms`,
      "-d",
      bodyFile,
      ...headerArgs,
      `--log-file=${logFile}`,
      `http://${plan.address}${plan.shape.path}`,
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  const output = decoder.decode(stdout) + decoder.decode(stderr);
  if (!success) throw new Error(`h2load failed:\n${output}`);
  const summary = parseH2loadSummary(output);
  const latencies = await readLatencies(logFile);
  return {
    generator: "h2load",
    calls: summary.succeeded + summary.failed,
    failures: summary.failed,
    firstError: summary.failed > 0 ? `h2load: ${summary.failed} failed/errored calls` : undefined,
    elapsedS: summary.elapsedS,
    responseBytes: summary.dataBytes,
    p50Ms: quantile(latencies, 0.5),
    p99Ms: quantile(latencies, 0.99),
  };
}
