/**
 * CPU time and memory of a process from `/proc`. `/proc/<pid>/stat` sums all threads of the
 * process, so worker threads (V8 GC, nginx has none with one worker) are included.
 * @module
 */
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
  // utime and stime are fields 14 and 15 of the whole line.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const cpuTicks = Number(fields[11]) + Number(fields[12]);
  return {
    cpuMicros: (cpuTicks * 1e6) / ticks,
    rssBytes: statusKilobytes(status, "VmRSS") * 1024,
    peakRssBytes: statusKilobytes(status, "VmHWM") * 1024,
  };
}
