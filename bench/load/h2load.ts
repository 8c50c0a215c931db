/**
 * Load from h2load (nghttp2), which is much cheaper per call than any JavaScript client.
 * h2load cannot read gRPC trailers: it counts a call as succeeded on HTTP 200 alone, so the
 * bench checks every h2load call against the target's ledger (see `../ledger.ts`). A run of
 * a fixed number of calls (`-n`) ends when all of them have completed, which that check
 * needs: a timed run (`-D`) abandons the calls in flight at its deadline, and the target
 * finishes some of those anyway. Per-call latencies come from its `--log-file`. gRPC-Web
 * calls go over HTTP/1.1 (`--h1`), where h2load's `-m` means pipelined requests: the gRPC-Web
 * scenario keeps it at 1, as browsers do not pipeline.
 * @module
 */
import { callHeaders } from "../scenarios.ts";
import { withFdLimitRaised } from "../tools.ts";
import type { LoadPlan } from "./builtin_load.ts";
import { type LoadResult, quantile } from "./load_result.ts";

/** h2load's summary of a run. */
export interface H2loadSummary {
  /** Wall time, seconds. */
  readonly elapsedS: number;
  /** Requests h2load counts in its totals (`-n`, or the completed ones of a timed run). */
  readonly total: number;
  /** Requests that completed. */
  readonly done: number;
  /** Completed with a 2xx status (h2load's notion of success; trailers unread). */
  readonly succeeded: number;
  /** Failed, HTTP-level failures included. */
  readonly failed: number;
  /** Failed for other reasons than the HTTP status (a subset of `failed`). */
  readonly errored: number;
  /** Timed out. */
  readonly timedOut: number;
  /** Response body bytes. */
  readonly dataBytes: number;
}

/** Parses h2load's summary; exported for its own sake (the format is h2load's, not ours). */
export function parseH2loadSummary(output: string): H2loadSummary {
  const finished = /finished in ([\d.]+)(m?s),/.exec(output);
  const requests =
    /requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/
      .exec(output);
  const traffic = /traffic: .*?\((\d+)\) data/.exec(output);
  if (!finished || !requests || !traffic) throw new Error(`unexpected h2load output:\n${output}`);
  const elapsed = Number(finished[1]);
  const [total, done, succeeded, failed, errored, timedOut] = requests.slice(1).map(Number);
  return {
    elapsedS: finished[2] === "ms" ? elapsed / 1000 : elapsed,
    total,
    done,
    succeeded,
    failed,
    errored,
    timedOut,
    dataBytes: Number(traffic[1]),
  };
}

/** Why h2load's own counts fail the run; undefined when every request succeeded. */
function summaryError(summary: H2loadSummary): string | undefined {
  if (summary.succeeded === summary.total) return undefined;
  return `h2load: ${summary.succeeded} of ${summary.total} requests succeeded ` +
    `(${summary.done} done, ${summary.failed} failed, ${summary.errored} errored, ` +
    `${summary.timedOut} timed out)`;
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

/**
 * Runs h2load (at `h2loadPath`) against `plan`: `calls` calls when given, otherwise for
 * `plan.durationS`. `workDir` holds its body and log files.
 */
export async function runH2load(
  h2loadPath: string,
  plan: LoadPlan,
  workDir: string,
  calls?: number,
): Promise<LoadResult> {
  const bodyFile = `${workDir}/request.bin`;
  const logFile = `${workDir}/h2load.log`;
  await Deno.writeFile(bodyFile, plan.shape.body);
  await Deno.remove(logFile).catch(() => {}); // h2load appends to an existing log
  const headerArgs = Object.entries(callHeaders(plan.shape))
    .flatMap(([name, value]) => ["-H", `${name}: ${value}`]);
  // One socket per connection: many_clients may need more than a soft limit of 1024.
  const { command, args } = withFdLimitRaised(h2loadPath, [
    ...(plan.shape.protocol === "grpc-web" ? ["--h1"] : []),
    "-c",
    String(plan.connections),
    "-m",
    String(plan.streamsPerConnection),
    "-t",
    "1",
    ...(calls === undefined
      ? ["-D", `${Math.round(plan.durationS * 1000)}ms`]
      : ["-n", String(calls)]),
    "-d",
    bodyFile,
    ...headerArgs,
    `--log-file=${logFile}`,
    `http://${plan.address}${plan.shape.path}`,
  ]);
  const { stdout, stderr, success } = await new Deno.Command(command, {
    args,
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
    calls: summary.done,
    failures: summary.total - summary.succeeded,
    firstError: summaryError(summary),
    elapsedS: summary.elapsedS,
    responseBytes: summary.dataBytes,
    p50Ms: quantile(latencies, 0.5),
    p99Ms: quantile(latencies, 0.99),
  };
}
