/**
 * CPU time and memory of a process from `/proc`. `/proc/<pid>/stat` sums all threads of the
 * process, so worker threads (Switchyard's `workers`, V8's GC; nginx has none with one worker)
 * are included; child processes are not.
 * @module
 */
import { settled } from "./settle.ts";
import { captureOutput } from "./tools.ts";

/** One reading of a process's counters. */
export interface ProcSample {
  /** utime + stime, in microseconds. */
  readonly cpuMicros: number;
  /** Resident set size (VmRSS), bytes. */
  readonly rssBytes: number;
  /** Peak resident set size (VmHWM), bytes. */
  readonly peakRssBytes: number;
}

let ticksPerSecond: number | undefined;

async function clockTicksPerSecond(): Promise<number> {
  if (ticksPerSecond === undefined) {
    const reported = Number((await captureOutput("getconf", ["CLK_TCK"]).catch(() => "")).trim());
    ticksPerSecond = reported > 0 ? reported : 100;
  }
  return ticksPerSecond;
}

function statusKilobytes(status: string, field: string): number {
  const match = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status);
  return match ? Number(match[1]) : 0;
}

/** Reads CPU time and RSS of `pid`. */
export async function sampleProcess(pid: number): Promise<ProcSample> {
  const [stat, status, ticks] = await Promise.all([
    Deno.readTextFile(`/proc/${pid}/stat`),
    Deno.readTextFile(`/proc/${pid}/status`),
    clockTicksPerSecond(),
  ]);
  // Fields after the parenthesised command name, which may itself contain spaces;
  // utime and stime are fields 14 and 15 of the whole line. In `/proc/<pid>/stat` (not
  // `/proc/<pid>/task/<tid>/stat`) they are the sums over all the process's threads.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const cpuTicks = Number(fields[11]) + Number(fields[12]);
  return {
    cpuMicros: (cpuTicks * 1e6) / ticks,
    rssBytes: statusKilobytes(status, "VmRSS") * 1024,
    peakRssBytes: statusKilobytes(status, "VmHWM") * 1024,
  };
}

/**
 * Resets the peak RSS (`VmHWM`) of `pid` to its current RSS (`5` to `/proc/<pid>/clear_refs`),
 * so that the next sample's peak is the peak since now. False when the kernel refused.
 */
export async function resetPeakRss(pid: number): Promise<boolean> {
  try {
    await Deno.writeTextFile(`/proc/${pid}/clear_refs`, "5");
    return true;
  } catch {
    return false;
  }
}

/** RSS counts as settled once two reads 200 ms apart differ by at most this much. */
const RSS_SETTLED_BYTES = 64 * 1024;
/** Reads of a settling RSS: 200 ms apart, at most 5 s. */
const RSS_SETTLE = { intervalMs: 200, maxReads: 25 };

/**
 * The RSS of `pid` once it has stopped growing or shrinking (the process may still be
 * finishing work it was handed, or collecting garbage), bytes.
 */
export function settledRss(pid: number): Promise<number> {
  return settled(
    async () => (await sampleProcess(pid)).rssBytes,
    (previous, current) => Math.abs(current - previous) <= RSS_SETTLED_BYTES,
    RSS_SETTLE,
  );
}
