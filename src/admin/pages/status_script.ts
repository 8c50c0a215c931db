/**
 * The status page's browser script. It polls `/clusters` every second and redraws the
 * tables; rates (calls/s, error rate) come from the difference between two polls: a
 * cluster's error rate counts every non-OK status, a backend's only the failures it caused
 * (connection errors, resets, UNAVAILABLE). Each cluster's history comes from
 * `/clusters/NAME/series`, fetched again once per sampling interval (it changes no faster),
 * and is drawn as hand-built SVG: calls/s, error rate, p50/p99 latency, and per backend its
 * share of calls and a state timeline. No library, no build step. Data is
 * inserted with `textContent` and `setAttribute` only, so backend addresses and errors cannot
 * inject markup.
 * A token for a protected admin API is read from the URL fragment (`#token=…`), which the
 * browser never sends to the server.
 * @module
 */

/** The script's source, inlined into the page. */
export const STATUS_PAGE_SCRIPT = `
"use strict";
const REFRESH_MS = 1000;
const token = new URLSearchParams(location.hash.slice(1)).get("token");
const headers = token ? { authorization: "Bearer " + token } : {};
const root = document.getElementById("clusters");
const updated = document.getElementById("updated");
let previous = new Map();
// Cluster name -> { data, fetchedAt }: the last /series answer, kept for one interval.
let seriesCache = new Map();
const SVG_NS = "http://www.w3.org/2000/svg";
const CHART = { width: 340, height: 150, left: 50, right: 12, top: 10, bottom: 22 };
const STATE_COLORS = {
  READY: "#1f9d55",
  CONNECTING: "#d69e2e",
  IDLE: "#a0aec0",
  TRANSIENT_FAILURE: "#d64545",
  UNHEALTHY: "#9b2c2c",
  EJECTED: "#dd6b20",
  DRAINED: "#5a67d8",
};
const LINE_COLORS = { calls: "#2b6cb0", errorRate: "#d64545", p50: "#2b6cb0", p99: "#dd6b20" };
const SECOND = 1000;
const MINUTE = 60 * SECOND;
const TICK_STEPS = [1, 2, 5, 10, 15, 30].map((n) => n * SECOND)
  .concat([1, 2, 5, 10, 15, 30].map((n) => n * MINUTE), [1, 2, 3, 6].map((n) => n * 60 * MINUTE));

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function stateClass(state) {
  if (state === "READY" || state === "healthy") return "badge ok";
  if (state === "CONNECTING" || state === "IDLE" || state === "unknown") return "badge warn";
  if (state === "DRAINED") return "badge off";
  return "badge bad";
}

function displayedState(backend) {
  if (backend.drained) return "DRAINED";
  if (backend.ejected) return "EJECTED";
  return backend.state;
}

function rates(key, calls, failures, now) {
  const before = previous.get(key);
  previous.set(key, { calls, failures, at: now });
  if (!before || now <= before.at) return { perSecond: 0, errorRate: 0 };
  const deltaCalls = calls - before.calls;
  const deltaFailures = failures - before.failures;
  return {
    perSecond: (deltaCalls * 1000) / (now - before.at),
    errorRate: deltaCalls > 0 ? deltaFailures / deltaCalls : 0,
  };
}

function percent(value) {
  return (value * 100).toFixed(1) + "%";
}

function svg(tag, attributes, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attributes ?? {})) {
    node.setAttribute(name, String(value));
  }
  if (text !== undefined) node.textContent = String(text);
  return node;
}

function significant(value) {
  return String(Number(value.toPrecision(3)));
}

function formatRate(value) {
  if (value >= 1000) return significant(value / 1000) + "k";
  return significant(value);
}

function formatPercent(value) {
  return significant(value * 100) + "%";
}

function formatSeconds(value) {
  if (value === 0) return "0";
  if (value >= 1) return significant(value) + " s";
  if (value >= 0.001) return significant(value * 1000) + " ms";
  return significant(value * 1e6) + " µs";
}

function formatSpan(ms) {
  if (ms >= 60 * MINUTE && ms % (60 * MINUTE) === 0) return ms / (60 * MINUTE) + "h";
  if (ms >= MINUTE && ms % MINUTE === 0) return ms / MINUTE + "m";
  return significant(ms / SECOND) + "s";
}

function describeWindow(ms) {
  const span = formatSpan(ms);
  const units = { s: "seconds", m: "minutes", h: "hours" };
  const unit = span.slice(-1);
  return "last " + span.slice(0, -1) + " " + units[unit];
}

// A nice step (1, 2, 2.5 or 5 times a power of ten) for about four ticks up to max.
function yTicks(max) {
  const raw = max > 0 ? max / 4 : 1;
  const power = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * power).find((candidate) => candidate >= raw);
  const top = Math.max(step, step * Math.ceil(max / step - 1e-9));
  const ticks = [];
  for (let value = 0; value <= top + step / 2; value += step) ticks.push(value);
  return { top, ticks };
}

// The time axis every chart of a cluster shares: the whole window, ending at its last sample.
function timeAxis(series) {
  const windowMs = series.capacity * series.intervalMs;
  const points = series.points;
  const last = points.length > 0 ? Date.parse(points[points.length - 1].at) : 0;
  return { start: last - windowMs, end: last, windowMs };
}

function xOf(axis, time, left, width) {
  return left + ((time - axis.start) / axis.windowMs) * width;
}

function drawTimeTicks(chart, axis, plotWidth, bottom) {
  const step = TICK_STEPS.find((candidate) => axis.windowMs / candidate <= 4) ?? axis.windowMs;
  for (let ago = 0; ago <= axis.windowMs + 1; ago += step) {
    const x = xOf(axis, axis.end - ago, CHART.left, plotWidth);
    chart.append(svg("line", { x1: x, x2: x, y1: bottom, y2: bottom + 4, stroke: "#7a8496" }));
    chart.append(svg("text", {
      x,
      y: bottom + 15,
      "text-anchor": ago === 0 ? "end" : ago >= axis.windowMs ? "start" : "middle",
      class: "tick",
    }, ago === 0 ? "now" : "-" + formatSpan(ago)));
  }
}

// Runs of points with a value; a missing value or a missed sample breaks the line.
function segments(points, key, interval) {
  const runs = [];
  let run = [];
  let lastAt = -Infinity;
  for (const point of points) {
    const at = Date.parse(point.at);
    const value = point[key];
    if (value === null || at - lastAt > 2 * interval) {
      if (run.length > 0) runs.push(run);
      run = [];
    }
    if (value !== null) run.push([at, value]);
    lastAt = at;
  }
  if (run.length > 0) runs.push(run);
  return runs;
}

function latest(points, key) {
  for (let i = points.length - 1; i >= 0; i--) if (points[i][key] !== null) return points[i][key];
  return null;
}

// One line chart: lines is [{ key, label, color }], format labels the values.
function lineChart(name, title, series, lines, format, minTop) {
  const plotWidth = CHART.width - CHART.left - CHART.right;
  const bottom = CHART.height - CHART.bottom;
  const plotHeight = bottom - CHART.top;
  const axis = timeAxis(series);
  const points = series.points;
  const values = lines.flatMap((line) => points.map((p) => p[line.key]).filter((v) => v !== null));
  const { top, ticks } = yTicks(Math.max(minTop, ...values));
  const yOf = (value) => bottom - (value / top) * plotHeight;

  const figure = el("figure", undefined, "chart");
  const caption = el("figcaption");
  caption.append(el("strong", title));
  for (const line of lines) {
    const now = latest(points, line.key);
    const name = lines.length > 1 ? line.label + " " : "";
    const key = el("span", name + (now === null ? "–" : format(now)), "key");
    key.style.setProperty("--key", line.color);
    caption.append(" ", key);
  }
  const summary = title + ", " + describeWindow(axis.windowMs) + ": " + (points.length === 0
    ? "no samples yet"
    : lines.map((line) => {
      const own = points.map((p) => p[line.key]).filter((v) => v !== null);
      const now = latest(points, line.key);
      return (lines.length > 1 ? line.label + " " : "") +
        "latest " + (now === null ? "none" : format(now)) +
        ", peak " + (own.length === 0 ? "none" : format(Math.max(...own)));
    }).join("; "));
  const chart = svg("svg", {
    viewBox: "0 0 " + CHART.width + " " + CHART.height,
    role: "img",
    "aria-label": summary,
    "data-chart": name,
  });
  chart.append(svg("title", {}, summary));
  for (const tick of ticks) {
    const y = yOf(tick);
    chart.append(svg("line", {
      x1: CHART.left,
      x2: CHART.left + plotWidth,
      y1: y,
      y2: y,
      stroke: tick === 0 ? "#7a8496" : "#eceff3",
    }));
    chart.append(svg("text", {
      x: CHART.left - 5,
      y: y + 3.5,
      "text-anchor": "end",
      class: "tick",
    }, format(tick)));
  }
  drawTimeTicks(chart, axis, plotWidth, bottom);
  if (points.length === 0) {
    chart.append(svg("text", {
      x: CHART.left + plotWidth / 2,
      y: CHART.top + plotHeight / 2,
      "text-anchor": "middle",
      class: "tick",
    }, "waiting for the first samples…"));
  }
  for (const line of lines) {
    for (const run of segments(points, line.key, series.intervalMs)) {
      const coordinates = run.map(([at, value]) =>
        xOf(axis, at, CHART.left, plotWidth).toFixed(1) + "," + yOf(value).toFixed(1)
      );
      chart.append(svg("polyline", {
        points: coordinates.join(" "),
        fill: "none",
        stroke: line.color,
        "stroke-width": 1.8,
        "stroke-linejoin": "round",
        "data-series": line.key,
      }));
      // A lone point draws no line; the run's newest point gets a dot either way.
      const [at, value] = run[run.length - 1];
      chart.append(svg("circle", {
        cx: xOf(axis, at, CHART.left, plotWidth),
        cy: yOf(value),
        r: 2.5,
        fill: line.color,
      }));
    }
  }
  figure.append(caption, chart);
  return figure;
}

function renderCharts(series) {
  const charts = el("div", undefined, "charts");
  charts.append(
    lineChart("calls", "Calls/s", series, [
      { key: "callsPerSecond", label: "calls/s", color: LINE_COLORS.calls },
    ], formatRate, 1),
    lineChart("errors", "Error rate", series, [
      { key: "errorRate", label: "errors", color: LINE_COLORS.errorRate },
    ], formatPercent, 0.01),
    lineChart("latency", "Latency", series, [
      { key: "p50Seconds", label: "p50", color: LINE_COLORS.p50 },
      { key: "p99Seconds", label: "p99", color: LINE_COLORS.p99 },
    ], formatSeconds, 0.001),
  );
  return charts;
}

// Consecutive samples in one state become one colored segment.
function timeline(series, backend) {
  const width = 400;
  const height = 16;
  const axis = timeAxis(series);
  const runs = [];
  series.points.forEach((point, i) => {
    const state = backend.state[i];
    const end = Date.parse(point.at);
    const start = i > 0 ? Date.parse(series.points[i - 1].at) : end - series.intervalMs;
    const run = runs[runs.length - 1];
    if (state !== null && run && run.state === state && run.end === start) {
      run.end = end;
      run.samples++;
    } else if (state !== null) runs.push({ state, start, end, samples: 1 });
  });
  const label = backend.address + " state, " + describeWindow(axis.windowMs) + ": " +
    (runs.length === 0 ? "no samples yet" : runs.map((run) => run.state).join(", then "));
  const strip = svg("svg", {
    viewBox: "0 0 " + width + " " + height,
    preserveAspectRatio: "none",
    role: "img",
    "aria-label": label,
    class: "timeline",
    "data-timeline": backend.address,
  });
  strip.append(svg("title", {}, label));
  strip.append(svg("rect", { x: 0, y: 0, width, height, fill: "#eceff3" }));
  for (const run of runs) {
    const x = Math.max(0, xOf(axis, run.start, 0, width));
    const segment = svg("rect", {
      x,
      y: 0,
      width: Math.max(1, xOf(axis, run.end, 0, width) - x),
      height,
      fill: STATE_COLORS[run.state] ?? "#7a8496",
      "data-state": run.state,
      "data-samples": run.samples,
    });
    const from = new Date(run.start).toLocaleTimeString();
    const to = new Date(run.end).toLocaleTimeString();
    segment.append(svg("title", {}, run.state + " from " + from + " to " + to));
    strip.append(segment);
  }
  return strip;
}

function renderBackendHistory(series) {
  const table = el("table", undefined, "history");
  const head = el("tr");
  const span = describeWindow(series.capacity * series.intervalMs);
  for (const label of ["Backend", "Share of calls (" + span + ")", "State (" + span + ")"]) {
    head.append(el("th", label));
  }
  table.append(head);
  const totals = series.backends.map((backend) =>
    backend.calls.reduce((sum, n) => sum + (n ?? 0), 0)
  );
  const all = totals.reduce((sum, n) => sum + n, 0);
  series.backends.forEach((backend, i) => {
    const row = el("tr");
    row.dataset.seriesBackend = backend.address;
    const share = all > 0 ? totals[i] / all : null;
    row.dataset.share = share === null ? "" : String(share);
    const bar = el("div", undefined, "share");
    bar.setAttribute("role", "meter");
    bar.setAttribute("aria-label", backend.address + " share of calls");
    bar.setAttribute("aria-valuemin", "0");
    bar.setAttribute("aria-valuemax", "100");
    bar.setAttribute("aria-valuenow", share === null ? "0" : (share * 100).toFixed(1));
    const fill = el("span");
    fill.style.width = share === null ? "0" : (share * 100).toFixed(1) + "%";
    bar.append(fill);
    const cells = [
      el("code", backend.address),
      [bar, el("span", share === null ? "no calls" : percent(share), "muted")],
      timeline(series, backend),
    ];
    for (const cell of cells) {
      const td = el("td");
      td.append(...[].concat(cell));
      row.append(td);
    }
    table.append(row);
  });
  const legend = el("p", undefined, "legend muted");
  for (const [state, color] of Object.entries(STATE_COLORS)) {
    const key = el("span", state, "key");
    key.style.setProperty("--key", color);
    legend.append(key, " ");
  }
  return [table, legend];
}

function renderBackend(cluster, backend, now) {
  const row = el("tr");
  const state = displayedState(backend);
  row.dataset.backend = backend.address;
  row.dataset.state = state;
  const r = rates(cluster.name + "/" + backend.address, backend.calls, backend.failures, now);
  const cells = [
    el("code", backend.address),
    el("span", state, stateClass(state)),
    el("span", backend.health, stateClass(backend.health)),
    el("span", backend.connectivity),
    el("span", backend.sources.join(", ")),
    el("span", backend.activeStreams),
    el("span", r.perSecond.toFixed(1)),
    el("span", percent(r.errorRate)),
    el("span", backend.calls + " / " + backend.failures),
    el("span", backend.lastHealthError ?? backend.lastConnectionError ?? "", "muted"),
  ];
  for (const cell of cells) {
    const td = el("td");
    td.append(cell);
    row.append(td);
  }
  return row;
}

function renderCluster(cluster, now) {
  const section = el("section");
  section.dataset.cluster = cluster.name;
  const title = el("h2", cluster.name + " ");
  title.append(el("span", cluster.picker, "badge"), " ", el("span", cluster.state, stateClass(cluster.state)));
  if (cluster.panic) title.append(" ", el("span", "PANIC", "badge bad"));
  const r = rates(cluster.name, cluster.calls, cluster.errors, now);
  const summary = el("p", r.perSecond.toFixed(1) + " calls/s, error rate " + percent(r.errorRate), "muted");
  const table = el("table");
  const head = el("tr");
  for (const label of ["Backend", "State", "Health", "Connectivity", "Sources", "Active", "Calls/s", "Errors", "Calls / failures", "Last error"]) {
    head.append(el("th", label));
  }
  table.append(head);
  for (const backend of cluster.backends) table.append(renderBackend(cluster, backend, now));
  section.append(title, summary);
  const series = seriesCache.get(cluster.name)?.data;
  if (series) section.append(renderCharts(series), ...renderBackendHistory(series));
  section.append(table);
  return section;
}

// Fetches a cluster's series when the cached one is an interval old: it changes no faster.
async function loadSeries(clusters, now) {
  const next = new Map();
  await Promise.all(clusters.map(async (cluster) => {
    const cached = seriesCache.get(cluster.name);
    if (cached && now - cached.fetchedAt < cached.data.intervalMs) {
      next.set(cluster.name, cached);
      return;
    }
    const path = "clusters/" + encodeURIComponent(cluster.name) + "/series";
    const response = await fetch(path, { headers, cache: "no-store" });
    // A cluster removed since /clusters answered simply has no charts this time.
    if (response.status === 404) return;
    if (!response.ok) throw new Error("HTTP " + response.status);
    next.set(cluster.name, { data: await response.json(), fetchedAt: now });
  }));
  seriesCache = next;
}

async function refresh() {
  try {
    const response = await fetch("clusters", { headers, cache: "no-store" });
    if (!response.ok) throw new Error("HTTP " + response.status);
    const clusters = await response.json();
    const now = performance.now();
    await loadSeries(clusters, now);
    root.replaceChildren(...clusters.map((cluster) => renderCluster(cluster, now)));
    updated.textContent = "Updated " + new Date().toLocaleTimeString();
    updated.className = "muted";
  } catch (error) {
    updated.textContent = "Update failed: " + error.message;
    updated.className = "badge bad";
  } finally {
    setTimeout(refresh, REFRESH_MS);
  }
}

refresh();
`;
