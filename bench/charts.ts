/**
 * SVG charts of one bench run, for the README: proxy CPU per call, calls/s, latency p50/p99
 * and streaming CPU per MB, one group of bars per scenario and one bar per target, with the
 * run's date, machine and command in a caption. {@link renderCharts} is pure (results in,
 * file contents out); {@link writeCharts} writes them. The figures are the measurements the
 * results table prints, unchanged: nothing here recomputes them.
 *
 * Run as a script, it redraws the charts of a saved results file without rerunning the bench:
 * `deno run -A bench/charts.ts bench/results/latest.json docs/bench/`.
 * @module
 */
import { join } from "node:path";
import type { Measurement } from "./measure.ts";
import { cpuFigure } from "./report.ts";
import type { Scenario, ScenarioKind } from "./scenarios.ts";

/** The machine a run was measured on, as the caption and `charts.json` describe it. */
export interface Machine {
  /** CPU model (`/proc/cpuinfo`'s `model name`), when known. */
  readonly cpuModel?: string;
  /** Logical cores. */
  readonly cpus: number;
  /** Kernel release (`Deno.osRelease()`), when known. */
  readonly osRelease?: string;
}

/** What a chart needs of a scenario. */
export type ChartScenario = Pick<Scenario, "name" | "kind" | "description">;

/** One bench run, as the charts draw it. */
export interface ChartRun {
  /** When the run finished, ISO 8601. */
  readonly finishedAt: string;
  /** The command line that ran it, e.g. `deno task bench --charts docs/bench/`. */
  readonly command: string;
  /** Where it ran. */
  readonly machine: Machine;
  /** Deno's version, when known. */
  readonly deno?: string;
  /** The scenarios run, in run order (the order of the groups). */
  readonly scenarios: readonly ChartScenario[];
  /** Every measurement, in table order (the order of the bars). */
  readonly measurements: readonly Measurement[];
}

/** One file {@link renderCharts} produces. */
export interface ChartFile {
  /** File name, without directory. */
  readonly name: string;
  /** Its content. */
  readonly text: string;
}

/** The chart files, by the figure they show. */
export const CHART_FILES = {
  cpuPerCall: "cpu-per-call.svg",
  callsPerSecond: "calls-per-second.svg",
  latency: "latency.svg",
  streamCpuPerMB: "stream-cpu-per-mb.svg",
} as const;

/** The run's description (date, machine, command, which charts), beside the charts. */
export const CHARTS_INDEX = "charts.json";

/** One bar: a target's figure in one scenario. */
interface Bar {
  readonly target: string;
  readonly value: number;
  /** Which of the target's paired figures (`p50`, `p99`); undefined for a single figure. */
  readonly variant?: string;
}

/** The bars of one scenario. */
interface BarGroup {
  readonly scenario: ChartScenario;
  readonly bars: readonly Bar[];
}

/** What a chart shows, before layout. */
interface BarChart {
  readonly file: string;
  readonly title: string;
  /** Unit of the values, shown in the title and on the axis. */
  readonly unit: string;
  /** Most decimal places of the value labels: those of the results table. */
  readonly digits: number;
  /**
   * `shared`: one axis for every group. `per-scenario`: one axis per group, where figures
   * differ by orders of magnitude between scenarios (latency at 1 call in flight against
   * latency under queueing), so that the smaller groups' bars are still readable.
   */
  readonly scale: "shared" | "per-scenario";
  /** Variant names: the first is drawn solid, the others light; empty for single bars. */
  readonly variants: readonly string[];
  readonly groups: readonly BarGroup[];
  /** Lines for the caption, above the scenario descriptions. */
  readonly notes: readonly string[];
}

/** Unary scenarios: one call, one response message. */
const UNARY_KINDS: readonly ScenarioKind[] = ["latency", "throughput"];
const STREAMING_KINDS: readonly ScenarioKind[] = ["streaming"];

const CPU_NOTE = "Proxy CPU: utime + stime of the proxy process, all its threads, from " +
  "/proc/<pid>/stat; direct has no proxy, so no CPU figure.";

/**
 * Colors of the usual targets, fixed so that a target has the same color in every chart and
 * every run (Okabe–Ito palette, which color-blind readers can tell apart).
 */
const TARGET_COLORS: Readonly<Record<string, string>> = {
  direct: "#999999",
  switchyard: "#0072B2",
  "switchyard-baseline": "#56B4E9",
  "switchyard-traced": "#CC79A7",
  nginx: "#009E73",
};
/** Colors for other targets (`switchyard-w<N>`, ...), in order of appearance in the run. */
const SPARE_COLORS = ["#E69F00", "#D55E00", "#0072B2", "#56B4E9", "#CC79A7", "#000000"];

/** Every target of the run, in table order, with its color. */
function targetColors(measurements: readonly Measurement[]): Map<string, string> {
  const targets = [...new Set(measurements.map((m) => m.target as string))];
  const used = new Set(targets.map((t) => TARGET_COLORS[t]).filter((c) => c !== undefined));
  const spare = SPARE_COLORS.filter((c) => !used.has(c));
  let next = 0;
  return new Map(targets.map((t) => [t, TARGET_COLORS[t] ?? spare[next++ % spare.length]]));
}

/**
 * The groups of a chart: one per scenario of `kinds` with at least one figure, one bar per
 * target and variant whose figure `figures` gives. Failed measurements, and figures that are
 * missing or not finite, get no bar (a zero would read as a measured zero).
 */
function groupsOf(
  run: ChartRun,
  kinds: readonly ScenarioKind[],
  figures: (m: Measurement, scenario: ChartScenario) => ReadonlyArray<[string?, number?]>,
): BarGroup[] {
  const groups: BarGroup[] = [];
  for (const scenario of run.scenarios.filter((s) => kinds.includes(s.kind))) {
    const bars: Bar[] = [];
    for (const m of run.measurements) {
      if (m.scenario !== scenario.name || m.failure !== undefined) continue;
      for (const [variant, value] of figures(m, scenario)) {
        if (value !== undefined && Number.isFinite(value)) {
          bars.push({ target: m.target, value, variant });
        }
      }
    }
    if (bars.length > 0) groups.push({ scenario, bars });
  }
  return groups;
}

/** A caption line per failed measurement of `kinds`' scenarios: they are left out. */
function failureNotes(run: ChartRun, kinds: readonly ScenarioKind[]): string[] {
  const names = new Set(run.scenarios.filter((s) => kinds.includes(s.kind)).map((s) => s.name));
  return run.measurements
    .filter((m) => names.has(m.scenario) && m.failure !== undefined)
    .map((m) => `Not shown: ${m.scenario} ${m.target} failed (${m.failure}).`);
}

/** The four charts' contents; a chart with no figure at all has no groups. */
function buildCharts(run: ChartRun): BarChart[] {
  // The CPU figure the report compares for each scenario kind: per call for unary
  // scenarios, per MB for streaming ones.
  const cpu = (m: Measurement, s: ChartScenario): Array<[string?, number?]> => [
    [undefined, cpuFigure(m, s.kind)],
  ];
  return [
    {
      file: CHART_FILES.cpuPerCall,
      title: "Proxy CPU per call (µs, lower is better)",
      unit: "µs",
      digits: 1,
      // unary_c1's calls cost many times what a batched call does: one axis would flatten the rest.
      scale: "per-scenario",
      variants: [],
      groups: groupsOf(run, UNARY_KINDS, cpu),
      notes: [...failureNotes(run, UNARY_KINDS), CPU_NOTE],
    },
    {
      file: CHART_FILES.callsPerSecond,
      title: "Calls per second (higher is better)",
      unit: "calls/s",
      digits: 0,
      scale: "shared",
      variants: [],
      groups: groupsOf(run, UNARY_KINDS, (m) => [[undefined, m.callsPerS]]),
      notes: failureNotes(run, UNARY_KINDS),
    },
    {
      file: CHART_FILES.latency,
      title: "Latency p50 and p99 (ms, lower is better)",
      unit: "ms",
      digits: 3,
      scale: "per-scenario",
      variants: ["p50", "p99"],
      groups: groupsOf(run, UNARY_KINDS, (m) => [["p50", m.load.p50Ms], ["p99", m.load.p99Ms]]),
      notes: [
        ...failureNotes(run, UNARY_KINDS),
        "Above 1 call in flight, latency is mostly queueing at the load generator's concurrency.",
      ],
    },
    {
      file: CHART_FILES.streamCpuPerMB,
      title: "Streaming: proxy CPU per MB relayed (ms, lower is better)",
      unit: "ms/MB",
      digits: 2,
      scale: "shared",
      variants: [],
      groups: groupsOf(run, STREAMING_KINDS, cpu),
      notes: [
        ...failureNotes(run, STREAMING_KINDS),
        "MB: 10^6 bytes of response, gRPC frames included. " + CPU_NOTE,
      ],
    },
  ];
}

/** An axis from 0 to `top` with a tick every `step`. */
export interface AxisScale {
  /** The axis' top value: a multiple of `step`, at least the largest value. */
  readonly top: number;
  /** Distance between ticks: 1, 2, 2.5 or 5 × a power of ten. */
  readonly step: number;
}

/** A readable axis for values up to `max`: about `ticks` round steps from 0. */
export function niceScale(max: number, ticks = 5): AxisScale {
  if (!(max > 0) || !Number.isFinite(max)) return { top: 1, step: 0.2 };
  const rough = max / ticks;
  const magnitude = 10 ** Math.floor(Math.log10(rough));
  const step = [1, 2, 2.5, 5, 10].map((f) => f * magnitude).find((s) => s >= rough * (1 - 1e-9))!;
  // The tolerance keeps a max that is already a multiple of step (within rounding) the top.
  return { top: Math.ceil(max / step - 1e-9) * step, step };
}

/** Decimal places that show every multiple of `step` exactly (2.5 × 10^k needs one more). */
function tickDigits(step: number): number {
  const exponent = Math.floor(Math.log10(step) + 1e-9);
  const mantissa = step / 10 ** exponent;
  return Math.max(0, -exponent + (Math.abs(mantissa - 2.5) < 1e-6 ? 1 : 0));
}

/** `value` with `digits` decimals and thousands separators (`35,034`), locale-independent. */
export function formatNumber(value: number, digits: number): string {
  const [whole, fraction] = value.toFixed(digits).split(".");
  const grouped = whole.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  return fraction === undefined ? grouped : `${grouped}.${fraction}`;
}

/**
 * A bar's label: at most `maxDigits` decimals (the results table's), and no more than three
 * significant digits need (`735`, `46.3`, `5.88`, `0.470`), so that large values stay short.
 */
export function formatValue(value: number, maxDigits: number): string {
  const magnitude = value === 0 ? 0 : Math.floor(Math.log10(Math.abs(value)));
  return formatNumber(value, Math.min(maxDigits, Math.max(0, 2 - magnitude)));
}

/** `text` safe in SVG text and attribute values. */
function escapeXml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/**
 * Rough rendered width of `text` in a sans-serif font: layout has no font metrics, so it
 * reserves 0.6 em per character, which covers digits and most lower-case text, where text must
 * not overlap (labels, legend). Captions, long mixed text that only sets the chart's width,
 * average nearer 0.5 em, and 0.6 would leave a wide empty margin.
 */
function textWidth(text: string, fontSize: number, emPerChar = 0.6): number {
  return text.length * fontSize * emPerChar;
}

/** `YYYY-MM-DD HH:MM UTC` of an ISO timestamp. */
function runDate(iso: string): string {
  const date = new Date(iso);
  return Number.isNaN(date.getTime())
    ? iso
    : `${date.toISOString().slice(0, 10)} ${date.toISOString().slice(11, 16)} UTC`;
}

/** `AMD EPYC, 2 cores, Linux 6.1.0` (what is known of it). */
export function describeMachine(machine: Machine): string {
  return [
    machine.cpuModel ?? "unknown CPU",
    `${machine.cpus} ${machine.cpus === 1 ? "core" : "cores"}`,
    ...(machine.osRelease ? [`Linux ${machine.osRelease}`] : []),
  ].join(", ");
}

/** The caption's last line: when, where and how the run was made. */
function runLine(run: ChartRun): string {
  const deno = run.deno ? `, Deno ${run.deno}` : "";
  return `Run ${runDate(run.finishedAt)} on ${describeMachine(run.machine)}${deno}: ${run.command}`;
}

// Layout, in px.
const MARGIN = 20;
const TITLE_Y = 30;
const LEGEND_Y = 56;
const PLOT_TOP = 92;
const PLOT_HEIGHT = 240;
const PLOT_BOTTOM = PLOT_TOP + PLOT_HEIGHT;
const AXIS_WIDTH = 58;
const GROUP_GAP = 28;
const PANEL_GAP = 24;
const BAR_GAP = 4;
const MIN_BAR_SLOT = 30;
const LABEL_FONT = 10;
const GROUP_FONT = 12;
const CAPTION_FONT = 11;
const CAPTION_LINE = 16;
/** Room above the tallest bar for its value label. */
const HEADROOM = 1.1;

/** A panel: groups over one axis. */
interface Panel {
  readonly groups: readonly BarGroup[];
  readonly scale: AxisScale;
}

/** The light fill of a paired chart's second and later variants. */
const LIGHT_OPACITY = 0.4;

/** Renders `chart` as a standalone SVG document. */
function renderSvg(chart: BarChart, run: ChartRun, colors: ReadonlyMap<string, string>): string {
  const label = (value: number): string => formatValue(value, chart.digits);
  const allBars = chart.groups.flatMap((g) => g.bars);
  const slot = Math.max(
    MIN_BAR_SLOT,
    ...allBars.map((b) => textWidth(label(b.value), LABEL_FONT) + BAR_GAP + 2),
  );
  const groupWidth = (g: BarGroup): number =>
    Math.max(g.bars.length * slot, textWidth(g.scenario.name, GROUP_FONT) + 8);
  const scaleOf = (groups: readonly BarGroup[]): AxisScale =>
    niceScale(Math.max(...groups.flatMap((g) => g.bars.map((b) => b.value))) * HEADROOM);
  const panels: Panel[] = chart.scale === "shared"
    ? [{ groups: chart.groups, scale: scaleOf(chart.groups) }]
    : chart.groups.map((g) => ({ groups: [g], scale: scaleOf([g]) }));

  const body: string[] = [];
  let x = MARGIN;
  for (const panel of panels) {
    const width = panel.groups.reduce((sum, g) => sum + groupWidth(g), 0) +
      GROUP_GAP * panel.groups.length;
    body.push(...renderAxis(panel.scale, x, x + AXIS_WIDTH + width, chart.unit));
    let gx = x + AXIS_WIDTH + GROUP_GAP / 2;
    for (const group of panel.groups) {
      body.push(...renderGroup(group, gx, groupWidth(group), slot, panel.scale, chart, colors));
      gx += groupWidth(group) + GROUP_GAP;
    }
    x += AXIS_WIDTH + width + PANEL_GAP;
  }
  const plotRight = x - PANEL_GAP;

  const targets = [...colors.keys()].filter((t) => allBars.some((b) => b.target === t));
  const legend = renderLegend(targets, colors, chart.variants);
  const caption = [
    ...chart.groups.map((g) => `${g.scenario.name}: ${g.scenario.description}`),
    ...chart.notes,
    runLine(run),
  ];
  const captionTop = PLOT_BOTTOM + 48;
  const width = Math.ceil(Math.max(
    plotRight + MARGIN,
    legend.width + 2 * MARGIN,
    textWidth(chart.title, 17) + 2 * MARGIN,
    ...caption.map((line) => textWidth(line, CAPTION_FONT, 0.54) + 2 * MARGIN),
  ));
  const height = captionTop + caption.length * CAPTION_LINE;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" ` +
    `viewBox="0 0 ${width} ${height}" role="img" ` +
    `font-family="-apple-system, 'Segoe UI', Helvetica, Arial, sans-serif">`,
    `<title>${escapeXml(chart.title)}</title>`,
    // An opaque background: the README is also read in dark mode, where dark text on a
    // transparent chart would vanish.
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
    text(MARGIN, TITLE_Y, chart.title, { size: 17, weight: "bold" }),
    ...legend.elements,
    ...body,
    ...caption.map((line, i) =>
      text(MARGIN, captionTop + i * CAPTION_LINE, line, {
        size: CAPTION_FONT,
        fill: i === caption.length - 1 ? "#333333" : "#666666",
      })
    ),
    "</svg>",
    "",
  ].join("\n");
}

interface TextStyle {
  readonly size: number;
  readonly anchor?: "start" | "middle" | "end";
  readonly weight?: "bold";
  readonly fill?: string;
}

function text(x: number, y: number, content: string, style: TextStyle): string {
  const attributes = [
    `x="${round(x)}"`,
    `y="${round(y)}"`,
    `font-size="${style.size}"`,
    ...(style.anchor && style.anchor !== "start" ? [`text-anchor="${style.anchor}"`] : []),
    ...(style.weight ? [`font-weight="${style.weight}"`] : []),
    `fill="${style.fill ?? "#222222"}"`,
  ];
  return `<text ${attributes.join(" ")}>${escapeXml(content)}</text>`;
}

/** Coordinates to 0.01 px: enough for any screen, and stable output. */
function round(value: number): number {
  return Math.round(value * 100) / 100;
}

/** The y of `value` on `scale`. */
function yOf(value: number, scale: AxisScale): number {
  return PLOT_BOTTOM - (value / scale.top) * PLOT_HEIGHT;
}

/** Tick labels and grid lines from `left` (the axis' labels) to `right`, and the unit. */
function renderAxis(scale: AxisScale, left: number, right: number, unit: string): string[] {
  const elements: string[] = [];
  const digits = tickDigits(scale.step);
  const ticks = Math.round(scale.top / scale.step);
  for (let i = 0; i <= ticks; i++) {
    const value = i * scale.step;
    const y = yOf(value, scale);
    const stroke = i === 0 ? "#555555" : "#e3e3e3";
    elements.push(
      `<line x1="${round(left + AXIS_WIDTH)}" x2="${round(right)}" y1="${round(y)}" ` +
        `y2="${round(y)}" stroke="${stroke}" stroke-width="1"/>`,
      text(left + AXIS_WIDTH - 6, y + 4, formatNumber(value, digits), {
        size: LABEL_FONT,
        anchor: "end",
        fill: "#555555",
      }),
    );
  }
  elements.push(text(left + AXIS_WIDTH - 6, PLOT_TOP - 14, unit, {
    size: LABEL_FONT,
    anchor: "end",
    fill: "#555555",
  }));
  return elements;
}

/** One scenario's bars, each with its value above it, and the scenario's name below. */
function renderGroup(
  group: BarGroup,
  left: number,
  width: number,
  slot: number,
  scale: AxisScale,
  chart: BarChart,
  colors: ReadonlyMap<string, string>,
): string[] {
  const elements: string[] = [];
  let x = left + (width - group.bars.length * slot) / 2;
  for (const bar of group.bars) {
    const top = yOf(bar.value, scale);
    const color = colors.get(bar.target) ?? "#000000";
    const light = bar.variant !== undefined && bar.variant !== chart.variants[0];
    const value = formatValue(bar.value, chart.digits);
    const what = [bar.target, group.scenario.name, bar.variant].filter(Boolean).join(" ");
    const variant = bar.variant === undefined ? "" : ` data-variant="${escapeXml(bar.variant)}"`;
    elements.push(
      `<rect class="bar" x="${round(x + BAR_GAP / 2)}" y="${round(top)}" ` +
        `width="${round(slot - BAR_GAP)}" height="${round(PLOT_BOTTOM - top)}" ` +
        `fill="${color}"${light ? ` fill-opacity="${LIGHT_OPACITY}" stroke="${color}"` : ""} ` +
        `data-target="${escapeXml(bar.target)}" data-scenario="${
          escapeXml(group.scenario.name)
        }"${variant} data-value="${bar.value}">` +
        `<title>${escapeXml(`${what}: ${value} ${chart.unit}`)}</title></rect>`,
      text(x + slot / 2, top - 4, value, { size: LABEL_FONT, anchor: "middle" }),
    );
    x += slot;
  }
  elements.push(
    text(left + width / 2, PLOT_BOTTOM + 20, group.scenario.name, {
      size: GROUP_FONT,
      anchor: "middle",
      weight: "bold",
    }),
  );
  return elements;
}

/** A swatch and name per target, then one swatch per variant (solid, light). */
function renderLegend(
  targets: readonly string[],
  colors: ReadonlyMap<string, string>,
  variants: readonly string[],
): { elements: string[]; width: number } {
  const elements: string[] = [];
  let x = MARGIN;
  const item = (name: string, color: string, light: boolean): void => {
    const fill = light
      ? `fill="${color}" fill-opacity="${LIGHT_OPACITY}" stroke="${color}"`
      : `fill="${color}"`;
    elements.push(
      `<rect x="${round(x)}" y="${LEGEND_Y - 10}" width="12" height="12" ${fill}/>`,
      text(x + 17, LEGEND_Y, name, { size: GROUP_FONT }),
    );
    x += 17 + textWidth(name, GROUP_FONT) + 12;
  };
  for (const target of targets) item(target, colors.get(target) ?? "#000000", false);
  if (variants.length > 0) x += 12;
  variants.forEach((variant, i) => item(variant, "#777777", i > 0));
  return { elements, width: x - MARGIN };
}

/** Every chart with at least one figure, and {@link CHARTS_INDEX}, which describes the run. */
export function renderCharts(run: ChartRun): ChartFile[] {
  const colors = targetColors(run.measurements);
  const charts = buildCharts(run).filter((chart) => chart.groups.length > 0);
  const index = {
    finishedAt: run.finishedAt,
    machine: { ...run.machine, description: describeMachine(run.machine) },
    deno: run.deno,
    command: run.command,
    charts: charts.map((chart) => ({
      file: chart.file,
      title: chart.title,
      scenarios: chart.groups.map((g) => g.scenario.name),
      targets: [...new Set(chart.groups.flatMap((g) => g.bars.map((b) => b.target)))],
    })),
    failed: run.measurements
      .filter((m) => m.failure !== undefined)
      .map((m) => ({ scenario: m.scenario, target: m.target, failure: m.failure })),
  };
  return [
    ...charts.map((chart) => ({ name: chart.file, text: renderSvg(chart, run, colors) })),
    { name: CHARTS_INDEX, text: JSON.stringify(index, null, 2) + "\n" },
  ];
}

/**
 * Writes {@link renderCharts}' files into `dir` (created if need be) and returns their paths.
 * A chart this run has no figure for is deleted from `dir`, so that no chart of an older run
 * is left beside this run's `charts.json` as if it were this run's.
 */
export async function writeCharts(dir: string, run: ChartRun): Promise<string[]> {
  await Deno.mkdir(dir, { recursive: true });
  const files = renderCharts(run);
  const paths: string[] = [];
  for (const file of files) {
    const path = join(dir, file.name);
    await Deno.writeTextFile(path, file.text);
    paths.push(path);
  }
  for (const name of Object.values(CHART_FILES)) {
    if (files.some((file) => file.name === name)) continue;
    await Deno.remove(join(dir, name)).catch((error) => {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    });
  }
  return paths;
}

/** The parts of a results file (`--json-out`) the charts need. */
interface ResultsFile {
  readonly finishedAt: string;
  readonly command?: string;
  readonly environment: Machine & { readonly deno?: string };
  readonly scenarios: readonly ChartScenario[];
  readonly measurements: readonly Measurement[];
}

/** A {@link ChartRun} from a results file that `deno task bench` wrote. */
export function chartRunFromResults(results: ResultsFile): ChartRun {
  const { cpus, cpuModel, osRelease, deno } = results.environment;
  return {
    finishedAt: results.finishedAt,
    // Files from before the command was recorded: say so rather than guess it.
    command: results.command ?? "deno task bench (options: see the results file)",
    machine: { cpus, cpuModel, osRelease },
    deno,
    scenarios: results.scenarios,
    measurements: results.measurements,
  };
}

if (import.meta.main) {
  const [resultsPath, dir] = Deno.args;
  if (!resultsPath || !dir) {
    console.error("usage: deno run -A bench/charts.ts RESULTS.json DIR");
    Deno.exit(2);
  }
  const results = JSON.parse(await Deno.readTextFile(resultsPath)) as ResultsFile;
  for (const path of await writeCharts(dir, chartRunFromResults(results))) console.log(path);
}
