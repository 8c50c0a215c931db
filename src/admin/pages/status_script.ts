/**
 * The status page's browser script. It polls `/clusters` every second and redraws the
 * tables; rates (calls/s, error rate) come from the difference between two polls: a
 * cluster's error rate counts every non-OK status, a backend's only the failures it caused
 * (connection errors, resets, UNAVAILABLE). Data is
 * inserted with `textContent` only, so backend addresses and errors cannot inject markup.
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
  section.append(title, summary, table);
  return section;
}

async function refresh() {
  try {
    const response = await fetch("clusters", { headers, cache: "no-store" });
    if (!response.ok) throw new Error("HTTP " + response.status);
    const clusters = await response.json();
    const now = performance.now();
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
