/**
 * Summarises a V8 `.cpuprofile` (as written by `deno run --cpu-prof`): the top functions by
 * self time and by total time, aggregated by function and script, and self time by script.
 *
 * Usage: `deno run -A bench/profile_summary.ts PROFILE_OR_DIR [--top N]`
 * (a directory means its newest `.cpuprofile`).
 * @module
 */
import { parseArgs } from "node:util";

/** The parts of V8's CPU profile format this summary reads. */
export interface CpuProfile {
  /** The call tree. */
  readonly nodes: readonly CpuProfileNode[];
  /** The node id on top of the stack at each sample. */
  readonly samples: readonly number[];
  /** µs between consecutive samples (the first is relative to `startTime`). */
  readonly timeDeltas: readonly number[];
}

/** One call-tree node. */
export interface CpuProfileNode {
  /** Node id. */
  readonly id: number;
  /** The function. */
  readonly callFrame: {
    readonly functionName: string;
    readonly url: string;
    readonly lineNumber: number;
  };
  /** Child node ids. */
  readonly children?: readonly number[];
}

/** Self and total time of one function. */
export interface FunctionCost {
  /** `name url:line`. */
  readonly key: string;
  /** Time with the function on top of the stack, µs. */
  selfMicros: number;
  /** Time with the function anywhere on the stack (counted once per sample), µs. */
  totalMicros: number;
}

/** A profile's aggregated costs. */
export interface ProfileSummary {
  /** All sampled time, µs. */
  readonly sampledMicros: number;
  /** Time in V8's `(idle)` node, µs. */
  readonly idleMicros: number;
  /** Costs by function. */
  readonly functions: readonly FunctionCost[];
  /** Self time by script URL (or pseudo-node such as `(garbage collector)`), µs. */
  readonly selfByScript: ReadonlyMap<string, number>;
}

function functionKey(node: CpuProfileNode): string {
  const { functionName, url, lineNumber } = node.callFrame;
  const name = functionName || "(anonymous)";
  return url ? `${name} ${url}:${lineNumber + 1}` : name;
}

/** Aggregates `profile` by function (self and total time) and by script (self time). */
export function summarizeProfile(profile: CpuProfile): ProfileSummary {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const parentOf = new Map<number, number>();
  for (const node of profile.nodes) {
    for (const child of node.children ?? []) parentOf.set(child, node.id);
  }
  // Each sample's stack, as distinct function keys, is shared by every sample of that node.
  const stackKeys = new Map<number, readonly string[]>();
  const keysOnStack = (id: number): readonly string[] => {
    let keys = stackKeys.get(id);
    if (keys) return keys;
    const parent = parentOf.get(id);
    const own = functionKey(byId.get(id)!);
    const above = parent === undefined ? [] : keysOnStack(parent);
    keys = above.includes(own) ? above : [...above, own];
    stackKeys.set(id, keys);
    return keys;
  };
  const costs = new Map<string, FunctionCost>();
  const cost = (key: string): FunctionCost => {
    let entry = costs.get(key);
    if (!entry) costs.set(key, entry = { key, selfMicros: 0, totalMicros: 0 });
    return entry;
  };
  const selfByScript = new Map<string, number>();
  let sampledMicros = 0;
  let idleMicros = 0;
  profile.samples.forEach((id, index) => {
    // A sample lasts until the next one; the last sample gets no time.
    const micros = profile.timeDeltas[index + 1] ?? 0;
    const node = byId.get(id)!;
    sampledMicros += micros;
    if (node.callFrame.functionName === "(idle)") idleMicros += micros;
    cost(functionKey(node)).selfMicros += micros;
    const script = node.callFrame.url || node.callFrame.functionName;
    selfByScript.set(script, (selfByScript.get(script) ?? 0) + micros);
    for (const key of keysOnStack(id)) cost(key).totalMicros += micros;
  });
  return { sampledMicros, idleMicros, functions: [...costs.values()], selfByScript };
}

function percent(part: number, whole: number): string {
  if (whole <= 0) return "    -";
  return `${((100 * part) / whole).toFixed(1).padStart(5)}%`;
}

function milliseconds(micros: number): string {
  return (micros / 1000).toFixed(0).padStart(7);
}

/** Renders the top `top` entries of each view as text; percentages are of busy (non-idle) time. */
export function formatSummary(summary: ProfileSummary, top: number): string {
  const busy = summary.sampledMicros - summary.idleMicros;
  const lines = [
    `sampled ${milliseconds(summary.sampledMicros).trim()} ms, idle ${
      percent(summary.idleMicros, summary.sampledMicros).trim()
    }; percentages below are of busy time (${milliseconds(busy).trim()} ms)`,
  ];
  const section = (title: string, rows: readonly FunctionCost[]): void => {
    lines.push("", `${title}`, "   self ms   self%  total ms  total%  function");
    for (const row of rows.slice(0, top)) {
      lines.push(
        `${milliseconds(row.selfMicros)}  ${percent(row.selfMicros, busy)}  ${
          milliseconds(row.totalMicros)
        }  ${percent(row.totalMicros, busy)}  ${row.key}`,
      );
    }
  };
  const active = summary.functions.filter((f) => f.key !== "(idle)" && f.key !== "(root)");
  section("top by self time", [...active].sort((a, b) => b.selfMicros - a.selfMicros));
  section("top by total time", [...active].sort((a, b) => b.totalMicros - a.totalMicros));
  lines.push("", "self time by script", "   self ms   self%  script");
  const scripts = [...summary.selfByScript].filter(([script]) => script !== "(idle)")
    .sort((a, b) => b[1] - a[1]);
  for (const [script, micros] of scripts.slice(0, top)) {
    lines.push(`${milliseconds(micros)}  ${percent(micros, busy)}  ${script}`);
  }
  return lines.join("\n");
}

/** `path` itself, or the newest `.cpuprofile` in it when it is a directory. */
async function resolveProfilePath(path: string): Promise<string> {
  if (!(await Deno.stat(path)).isDirectory) return path;
  let newest: { path: string; mtime: number } | undefined;
  for await (const entry of Deno.readDir(path)) {
    if (!entry.isFile || !entry.name.endsWith(".cpuprofile")) continue;
    const file = `${path}/${entry.name}`;
    const mtime = (await Deno.stat(file)).mtime?.getTime() ?? 0;
    if (!newest || mtime > newest.mtime) newest = { path: file, mtime };
  }
  if (!newest) throw new Error(`no .cpuprofile in ${path}`);
  return newest.path;
}

if (import.meta.main) {
  const { values, positionals } = parseArgs({
    args: Deno.args,
    allowPositionals: true,
    options: { top: { type: "string", default: "25" } },
  });
  if (positionals.length !== 1) {
    console.error("usage: deno run -A bench/profile_summary.ts PROFILE_OR_DIR [--top N]");
    Deno.exit(2);
  }
  const path = await resolveProfilePath(positionals[0]);
  const profile = JSON.parse(await Deno.readTextFile(path)) as CpuProfile;
  console.log(`${path}\n${formatSummary(summarizeProfile(profile), Number(values.top))}`);
}
