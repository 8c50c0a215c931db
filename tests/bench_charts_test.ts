/**
 * The bench's SVG charts (`bench/charts.ts`), from synthetic results: well-formed XML, every
 * scenario and target named, bar heights proportional to the values on a shared axis, missing
 * and failed figures left out rather than drawn as zero, and the run described in the caption.
 */
import assert from "node:assert/strict";
import {
  CHART_FILES,
  type ChartFile,
  type ChartRun,
  CHARTS_INDEX,
  formatNumber,
  formatValue,
  niceScale,
  renderCharts,
  writeCharts,
} from "../bench/charts.ts";
import type { Measurement } from "../bench/measure.ts";
import type { ScenarioName } from "../bench/scenarios.ts";
import type { TargetName } from "../bench/targets/target.ts";

/** A passing measurement with the given figures. */
function measurement(
  scenario: ScenarioName,
  target: TargetName,
  figures: Partial<Measurement> & { p50Ms?: number; p99Ms?: number } = {},
): Measurement {
  const { p50Ms, p99Ms, ...rest } = figures;
  return {
    scenario,
    target,
    load: {
      generator: "h2load",
      calls: 1000,
      failures: 0,
      elapsedS: 1,
      responseBytes: 1e6,
      p50Ms,
      p99Ms,
    },
    callsPerS: 1000,
    mbPerS: 1,
    checkedCalls: 1000,
    checkedBy: "client",
    ...rest,
  };
}

const RUN: ChartRun = {
  finishedAt: "2026-03-04T05:06:07.000Z",
  command: "deno task bench --charts docs/bench/ --duration 3",
  machine: { cpuModel: "Test CPU 9000 <fast> & cheap", cpus: 2, osRelease: "6.1.0" },
  deno: "2.9.6",
  scenarios: [
    { name: "unary_c1", kind: "latency", description: "unary, 1 call in flight: latency" },
    { name: "unary_high", kind: "throughput", description: "unary, 8×32 in flight" },
    { name: "many_clients", kind: "throughput", description: "400 connections × 1" },
    { name: "stream_1k", kind: "streaming", description: "server streaming, 1 KiB" },
    { name: "stream_64k", kind: "streaming", description: "server streaming, 64 KiB" },
  ],
  measurements: [
    measurement("unary_c1", "direct", { callsPerS: 5000, p50Ms: 0.1, p99Ms: 0.3 }),
    measurement("unary_c1", "switchyard", {
      callsPerS: 4000,
      proxyCpuUsPerCall: 100,
      p50Ms: 0.2,
      p99Ms: 0.6,
    }),
    measurement("unary_c1", "nginx", {
      callsPerS: 4200,
      proxyCpuUsPerCall: 80,
      p50Ms: 0.19,
      p99Ms: 0.5,
    }),
    measurement("unary_high", "direct", { callsPerS: 40000, p50Ms: 5, p99Ms: 9 }),
    measurement("unary_high", "switchyard", {
      callsPerS: 30000,
      proxyCpuUsPerCall: 7,
      p50Ms: 7,
      p99Ms: 20,
    }),
    // A failed measurement: none of its figures may be drawn.
    measurement("unary_high", "nginx", {
      callsPerS: 0,
      proxyCpuUsPerCall: 44,
      failure: "nginx access log: 3 × grpc-status -",
    }),
    measurement("many_clients", "direct", { callsPerS: 25000 }),
    // No latency figures (e.g. h2load without a log): no latency bar, the rest drawn.
    measurement("many_clients", "switchyard", { callsPerS: 21000, proxyCpuUsPerCall: 25 }),
    measurement("many_clients", "nginx", { callsPerS: 10000, proxyCpuUsPerCall: 57 }),
    measurement("stream_1k", "direct", {}),
    measurement("stream_1k", "switchyard", { proxyCpuUsPerCall: 400, proxyCpuMsPerMB: 0.4 }),
    measurement("stream_1k", "nginx", { proxyCpuUsPerCall: 1300, proxyCpuMsPerMB: 1.3 }),
    // No proxy CPU figure on any target: the scenario has no group in the streaming chart.
    measurement("stream_64k", "direct", {}),
  ],
};

function file(files: readonly ChartFile[], name: string): string {
  const found = files.find((f) => f.name === name);
  assert.ok(found, `${name} written`);
  return found.text;
}

/**
 * Checks that `xml` is well-formed enough for any XML parser: one root, every tag closed in
 * order, attributes quoted, and `&` only in entities.
 */
function assertWellFormed(xml: string): void {
  const stack: string[] = [];
  let roots = 0;
  const token =
    /<(\/?)([A-Za-z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>|<!--[\s\S]*?-->|<[^>]*>/g;
  let last = 0;
  for (const match of xml.matchAll(token)) {
    assert.ok(match[2] !== undefined, `malformed tag ${match[0]}`);
    const between = xml.slice(last, match.index);
    assert.doesNotMatch(between, /[<>]/, `stray markup before ${match[0]}`);
    assert.doesNotMatch(between, /&(?!(?:#\d+|#x[0-9a-f]+|amp|lt|gt|quot|apos);)/i);
    last = match.index + match[0].length;
    const [, closing, name, attributes, selfClosing] = match;
    assert.doesNotMatch(attributes, /&(?!(?:#\d+|amp|lt|gt|quot|apos);)/);
    if (closing) {
      assert.equal(stack.pop(), name, `</${name}> closes the open element`);
    } else if (!selfClosing) {
      if (stack.length === 0) roots++;
      stack.push(name);
    } else if (stack.length === 0) roots++;
  }
  assert.deepEqual(stack, [], "every element closed");
  assert.equal(roots, 1, "one root element");
  assert.match(xml.trim(), /^<svg [^>]*xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
  assert.match(xml.trim(), /<\/svg>$/);
}

interface ParsedBar {
  readonly target: string;
  readonly scenario: string;
  readonly variant?: string;
  readonly value: number;
  readonly height: number;
  readonly bottom: number;
}

/** The chart's bars, from their `data-*` attributes and geometry. */
function bars(svg: string): ParsedBar[] {
  return [...svg.matchAll(/<rect class="bar"([^>]*)>/g)].map(([, attributes]) => {
    const attribute = (name: string): string | undefined =>
      new RegExp(`\\s${name}="([^"]*)"`).exec(attributes)?.[1];
    const y = Number(attribute("y"));
    const height = Number(attribute("height"));
    return {
      target: attribute("data-target")!,
      scenario: attribute("data-scenario")!,
      variant: attribute("data-variant"),
      value: Number(attribute("data-value")),
      height,
      bottom: y + height,
    };
  });
}

/** Asserts that every bar's height is the same multiple of its value. */
function assertProportional(list: readonly ParsedBar[]): void {
  assert.ok(list.length >= 2);
  const perUnit = list[0].height / list[0].value;
  for (const bar of list) {
    // Coordinates are rounded to 0.01 px.
    assert.ok(
      Math.abs(bar.height - bar.value * perUnit) < 0.02,
      `${bar.target} ${bar.scenario}: height ${bar.height} for ${bar.value}`,
    );
    assert.equal(bar.bottom, list[0].bottom, "bars stand on the same baseline");
  }
}

const FILES = renderCharts(RUN);

Deno.test("bench charts: four SVG charts and charts.json, every SVG well-formed", () => {
  assert.deepEqual(
    FILES.map((f) => f.name).sort(),
    [
      ...Object.values(CHART_FILES),
      CHARTS_INDEX,
    ].sort(),
  );
  for (const name of Object.values(CHART_FILES)) assertWellFormed(file(FILES, name));
});

Deno.test("bench charts: every target and scenario with a figure is named", () => {
  const callsPerS = file(FILES, CHART_FILES.callsPerSecond);
  for (const name of ["direct", "switchyard", "nginx", "unary_c1", "unary_high", "many_clients"]) {
    assert.match(callsPerS, new RegExp(`>${name}<`), name);
  }
  const stream = file(FILES, CHART_FILES.streamCpuPerMB);
  for (const name of ["switchyard", "nginx", "stream_1k"]) {
    assert.match(stream, new RegExp(`>${name}<`), name);
  }
  const latency = file(FILES, CHART_FILES.latency);
  assert.match(latency, />p50</);
  assert.match(latency, />p99</);
});

Deno.test("bench charts: bar heights are proportional to the values on a shared axis", () => {
  const callsPerS = bars(file(FILES, CHART_FILES.callsPerSecond));
  assertProportional(callsPerS);
  assert.equal(callsPerS.find((b) => b.value === 40000)?.target, "direct");
  const stream = bars(file(FILES, CHART_FILES.streamCpuPerMB));
  assert.deepEqual(stream.map((b) => [b.target, b.value]), [["switchyard", 0.4], ["nginx", 1.3]]);
  assertProportional(stream);
  // Per-scenario axes: proportional within each scenario.
  const latency = bars(file(FILES, CHART_FILES.latency));
  for (const scenario of ["unary_c1", "unary_high"]) {
    assertProportional(latency.filter((b) => b.scenario === scenario));
  }
});

Deno.test("bench charts: missing and failed figures are left out, not drawn as zero", () => {
  for (const name of Object.values(CHART_FILES)) {
    const list = bars(file(FILES, name));
    assert.ok(list.every((b) => b.value > 0 && b.height > 0), `${name}: no zero bar`);
    assert.ok(!list.some((b) => b.scenario === "unary_high" && b.target === "nginx"), name);
  }
  const cpu = bars(file(FILES, CHART_FILES.cpuPerCall));
  // direct has no proxy, so no CPU figure; streaming scenarios are in the per-MB chart.
  assert.ok(!cpu.some((b) => b.target === "direct"));
  assert.deepEqual([...new Set(cpu.map((b) => b.scenario))], [
    "unary_c1",
    "unary_high",
    "many_clients",
  ]);
  assert.match(file(FILES, CHART_FILES.cpuPerCall), /Not shown: unary_high nginx failed/);
  const latency = bars(file(FILES, CHART_FILES.latency));
  assert.ok(!latency.some((b) => b.scenario === "many_clients"), "no latency figures there");
  assert.deepEqual(
    latency.filter((b) => b.scenario === "unary_c1").map((b) => `${b.target} ${b.variant}`),
    ["direct p50", "direct p99", "switchyard p50", "switchyard p99", "nginx p50", "nginx p99"],
  );
  const stream = file(FILES, CHART_FILES.streamCpuPerMB);
  assert.doesNotMatch(stream, /stream_64k/, "a scenario without any figure has no group");
  assert.doesNotMatch(stream, />direct</, "a target without any figure has no legend entry");
});

Deno.test("bench charts: a target keeps its color in every chart", () => {
  const colors = new Map<string, string>();
  for (const name of Object.values(CHART_FILES)) {
    for (const [, attributes] of file(FILES, name).matchAll(/<rect class="bar"([^>]*)>/g)) {
      const target = /data-target="([^"]*)"/.exec(attributes)![1];
      const fill = /fill="([^"]*)"/.exec(attributes)![1];
      assert.equal(colors.get(target) ?? fill, fill, `${target} in ${name}`);
      colors.set(target, fill);
    }
  }
  assert.equal(new Set(colors.values()).size, colors.size, "targets have distinct colors");
});

Deno.test("bench charts: the caption and charts.json give the run's date, machine and command", () => {
  for (const name of Object.values(CHART_FILES)) {
    const svg = file(FILES, name);
    assert.match(svg, /2026-03-04 05:06 UTC/);
    assert.match(svg, /Test CPU 9000 &#60;fast&#62; &#38; cheap, 2 cores, Linux 6\.1\.0/);
    assert.match(svg, /deno task bench --charts docs\/bench\/ --duration 3/);
  }
  const index = JSON.parse(file(FILES, CHARTS_INDEX));
  assert.equal(index.finishedAt, RUN.finishedAt);
  assert.equal(index.command, RUN.command);
  assert.equal(index.machine.cpus, 2);
  assert.deepEqual(index.failed.map((f: { target: string }) => f.target), ["nginx"]);
  assert.deepEqual(index.charts.map((c: { file: string }) => c.file), Object.values(CHART_FILES));
});

Deno.test("bench charts: nice axis scales and number formats", () => {
  assert.deepEqual(niceScale(7.9), { top: 8, step: 2 });
  assert.deepEqual(niceScale(10), { top: 10, step: 2 });
  assert.deepEqual(niceScale(38_000), { top: 40_000, step: 10_000 });
  assert.deepEqual(niceScale(0.11), { top: 0.125, step: 0.025 });
  assert.deepEqual(niceScale(0), { top: 1, step: 0.2 });
  assert.equal(formatNumber(35034.4, 0), "35,034");
  assert.equal(formatNumber(1234567.891, 2), "1,234,567.89");
  assert.equal(formatValue(734.957, 3), "735");
  assert.equal(formatValue(46.326, 3), "46.3");
  assert.equal(formatValue(0.079, 3), "0.079");
  assert.equal(formatValue(7.14, 1), "7.1");
});

Deno.test("bench charts: writeCharts replaces a chart this run has no figure for", async () => {
  const dir = await Deno.makeTempDir({ prefix: "bench-charts-" });
  try {
    await writeCharts(dir, RUN);
    const unaryOnly: ChartRun = {
      ...RUN,
      scenarios: RUN.scenarios.filter((s) => s.kind !== "streaming"),
    };
    const written = await writeCharts(`${dir}/`, unaryOnly);
    assert.equal(written.length, 4);
    const names = [...Deno.readDirSync(dir)].map((entry) => entry.name).sort();
    assert.deepEqual(
      names,
      [
        CHART_FILES.callsPerSecond,
        CHARTS_INDEX,
        CHART_FILES.cpuPerCall,
        CHART_FILES.latency,
      ].sort(),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
