// gridsim dashboard: plain JavaScript and hand-drawn SVG, no build step, no CDN (works offline).
// Data: the gateway's public API plus /events/live (Server-Sent Events: clock, watermark, rollups, events).
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const DAY_MS = 24 * 3600 * 1000;
const MAX_EVENTS = 100;
// The chart shows the last simulated day: older points are dropped as new ones arrive, so a page left open
// at 1440× holds about a day of points, not every reading since it was opened.
const CHART_WINDOW_MS = DAY_MS;
// Display bands of transformer loading (rollup loading_pct). The aggregator decides what is an overload
// event; these only colour the bars.
const WARNING_PCT = 80;
const CRITICAL_PCT = 100;

const state = {
  clock: null,
  stepping: false,         // a step request is in flight (the clock refuses other commands meanwhile)
  grid: null,
  paged: false,  // the grid is too big for one tree: every level is paged and the filter searches
  nodes: new Map(),        // "level:id" -> {level, id, code, name, node}
  meterByCode: new Map(),  // lower-case code -> meter tree node
  rollups: new Map(),      // transformer code -> latest Rollup
  selection: null,         // {kind: "meter"|"node", level, id, code, label}
  zone: "UTC",             // the world's time zone (GET /dashboard/config); times are shown in it
  points: [],              // {t, cons, prod, volt} of the selection, oldest first, at most a day
  lastFetched: null,       // ms of the newest point fetched for the selection
  fetching: false,
  refetch: false,
  events: [],
  transformers: null,      // feasibility's transformer list (positions)
  feasibility: null,       // last answer and request
};

// ------------------------------------------------------------------------------------------- helpers

const $ = (sel) => document.querySelector(sel);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) node.append(c);
  return node;
}

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== null && v !== undefined) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

// Small line icons drawn here (a glyph font may lack the symbols): 16×16 paths.
const ICONS = {
  utility: "M2 14h12M4 14V7l4-4 4 4v7M7 14v-3h2v3",
  feeder: "M8 1v5M8 6 3 10M8 6l5 4M3 10v5M13 10v5M8 6v9",
  transformer: "M3 5a3 3 0 1 0 6 0 3 3 0 1 0-6 0M7 11a3 3 0 1 0 6 0 3 3 0 1 0-6 0M6 8v0",
  meter: "M2 3h12v10H2zM5 9l2-3 2 2 2-3",
  parent: "M1 2h9v8H1zM6 6h9v8H6z",
  prosumer: "M8 5a3 3 0 1 0 0 6 3 3 0 1 0 0-6M8 1v2M8 13v2M1 8h2M13 8h2M3 3l1.5 1.5M11.5 11.5 13 13M3 13l1.5-1.5M11.5 4.5 13 3",
};

function icon(kind) {
  const root = svg("svg", { viewBox: "0 0 16 16", width: 15, height: 15, class: `icon ${kind}`, "aria-hidden": "true" });
  root.append(svg("path", { d: ICONS[kind] }));
  return root;
}

function fmt(value, digits = 2) {
  if (value === null || value === undefined || Number.isNaN(value)) return "—";
  return Number(value).toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

// Times in the world's zone ("2025-06-20 14:05 PDT"); the UTC instant goes in a title (shown on hover).
let zoneFormat = null;
function localParts(ms) {
  if (!zoneFormat) {
    zoneFormat = new Intl.DateTimeFormat("en-CA", {
      timeZone: state.zone, year: "numeric", month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit", hourCycle: "h23", timeZoneName: "short",
    });
  }
  const parts = Object.fromEntries(zoneFormat.formatToParts(new Date(ms)).map((p) => [p.type, p.value]));
  return { date: `${parts.year}-${parts.month}-${parts.day}`, time: `${parts.hour}:${parts.minute}`, zone: parts.timeZoneName };
}
function isoMinute(ms) { const p = localParts(ms); return `${p.date} ${p.time} ${p.zone}`; }
function hhmm(ms) { return localParts(ms).time; }
function utcTitle(ms) { return new Date(ms).toISOString().slice(0, 16).replace("T", " ") + " UTC"; }

function loadingClass(pct) {
  if (pct === null || pct === undefined) return "unknown";
  if (pct >= CRITICAL_PCT) return "critical";
  if (pct >= WARNING_PCT) return "warning";
  return "normal";
}

let toastTimer = null;
function toast(message, isError = false) {
  const box = $("#toast");
  box.textContent = message;
  box.className = "toast show" + (isError ? " error" : "");
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { box.className = "toast"; }, 3500);
}

class ApiError extends Error {
  constructor(status, body) {
    const err = (body && body.error) || {};
    super(err.message || `HTTP ${status}`);
    this.status = status;
    this.field = err.field;
  }
}

// Every call goes through here: JSON in and out, the project's error body turned into an ApiError, and an
// X-API-Key asked for once (and remembered) when the gateway protects mutating routes.
async function api(method, path, body) {
  for (let attempt = 0; attempt < 2; attempt++) {
    const headers = { Accept: "application/json" };
    const key = localStorage.getItem("gridsim-api-key");
    if (key) headers["X-API-Key"] = key;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await res.text();
    const data = text ? JSON.parse(text) : null;
    if (res.ok) return data;
    if (res.status === 401 && attempt === 0) {
      const entered = window.prompt("This gridsim needs an API key for changes (X-API-Key):");
      if (entered) { localStorage.setItem("gridsim-api-key", entered); continue; }
    }
    throw new ApiError(res.status, data);
  }
  throw new ApiError(401, null);
}

// ------------------------------------------------------------------------------------------- clock

function renderClock() {
  const c = state.clock;
  if (!c) return;
  const ms = Date.parse(c.current_datetime);
  const local = localParts(ms);
  $("#clock-date").textContent = local.date;
  $("#clock-time").textContent = local.time;
  $("#clock-zone").textContent = local.zone;
  $("#clock-date").parentElement.title = `${utcTitle(ms)} (${state.zone})`;
  const badge = $("#clock-state");
  badge.textContent = c.state;
  badge.className = "badge " + c.state;
  const lag = c.lag_s > 1 ? ` · ${fmt(c.lag_s, 1)} s behind` : "";
  $("#clock-detail").textContent = `${fmt(c.speed, 0)}× · ${c.interval_s} s interval · tick ${c.tick}${lag}`;
  // While a step runs the clock refuses other commands (409): the controls wait for it.
  const busy = state.stepping;
  $("#btn-pause").disabled = busy || c.state === "paused";
  $("#btn-resume").disabled = busy || c.state === "running";
  $("#btn-step").disabled = busy || c.state === "running";
  $("#step-size").disabled = busy || c.state === "running";
  $("#speed").disabled = busy;
  const speed = $("#speed");
  const value = String(Math.round(c.speed));
  if (![...speed.options].some((o) => o.value === value)) speed.append(el("option", { value, text: `${value}×` }));
  if (document.activeElement !== speed) speed.value = value;
  const month = $("#bill-month");
  if (!month.value) month.value = local.date.slice(0, 7);  // billing months are in the same zone
}

async function clockAction(label, method, path, body) {
  const stepping = path === "/simulation/step";
  if (stepping) { state.stepping = true; renderClock(); }
  try {
    const answer = await api(method, path, body);
    // Clock routes answer the clock; a step answers what it did, with the clock inside.
    const clock = answer && (answer.clock || answer);
    if (clock && clock.current_datetime) { state.clock = { ...state.clock, ...clock }; }
    toast(label);
  } catch (err) {
    toast(`${label} failed: ${err.message}`, true);
  } finally {
    if (stepping) state.stepping = false;
    renderClock();
  }
}

function setupControls() {
  $("#btn-pause").addEventListener("click", () => clockAction("Paused", "POST", "/simulation/pause"));
  $("#btn-resume").addEventListener("click", () => clockAction("Resumed", "POST", "/simulation/resume"));
  $("#btn-step").addEventListener("click", () => {
    const intervals = Number($("#step-size").value);
    clockAction(`Stepped ${intervals} interval${intervals > 1 ? "s" : ""}`, "POST", "/simulation/step", { intervals });
  });
  $("#speed").addEventListener("change", (e) =>
    clockAction(`Speed ${e.target.value}×`, "PUT", "/simulation/speed", { speed: Number(e.target.value) }));
}

async function pollHealth() {
  const box = $("#health");
  try {
    // /health answers 503 with the same report when degraded: read the body either way.
    const res = await fetch("/health", { headers: { Accept: "application/json" } });
    const h = await res.json();
    box.className = "health " + h.status;
    const down = Object.entries(h.services).filter(([, s]) => s !== "online").map(([n]) => n);
    $("#health-text").textContent = h.status === "ok" ? "all services online" : `degraded: ${down.join(", ") || "broker/database"}`;
  } catch (err) {
    box.className = "health down";
    $("#health-text").textContent = "gateway unreachable";
  }
}

// ------------------------------------------------------------------------------------------- grid tree

function indexGrid(grid) {
  state.nodes.clear();
  state.meterByCode.clear();
  const walkMeters = (meters) => {
    for (const m of meters) {
      state.meterByCode.set(m.meter_id.toLowerCase(), m);
      walkMeters(m.children || []);
    }
  };
  const walk = (nodes) => {
    for (const n of nodes) {
      state.nodes.set(`${n.level}:${n.id}`, n);
      walkMeters(n.meters || []);
      walk(n.children || []);
    }
  };
  walk(grid.utilities);
}

function loadBar(code) {
  const r = state.rollups.get(code);
  const pct = r ? r.loading_pct : null;
  const cls = loadingClass(pct);
  const wrap = el("span", { class: `load ${cls}`, "data-transformer": code, "data-loading": cls });
  const bar = el("span", { class: "bar" }, el("span", { class: "fill", style: `width:${Math.min(pct || 0, 100)}%` }));
  const label = el("span", { class: "pct", text: pct === null ? "—" : `${fmt(pct, 0)} %` });
  wrap.title = r ? `${fmt(r.apparent_kVA, 1)} kVA of ${fmt(r.capacity_kVA, 0)} kVA at ${isoMinute(Date.parse(r.timestamp))}` : "no rollup yet";
  wrap.append(bar, label);
  // Insulation health (IEEE C57.91, docs/grid-health.md): the index, with hot spot and aging in its title.
  if (r && r.health_index !== null && r.health_index !== undefined) {
    const health = el("span", { class: "health", "data-health": code, text: `HI ${fmt(r.health_index, 0)}` });
    health.title = `health index ${fmt(r.health_index, 1)} · hot spot ${fmt(r.hot_spot_c, 1)} °C · aging ×${fmt(r.aging_factor, 3)}`
      + ` · loss of life ${fmt(r.loss_of_life_h, 2)} h · ${fmt(r.overload_h, 2)} h overloaded`;
    if (r.health_index < 50) health.classList.add("critical");
    else if (r.health_index < 80) health.classList.add("warning");
    wrap.append(health);
  }
  return wrap;
}

function meterItem(m) {
  const kids = m.children || [];
  const kind = kids.length || m.childCount ? "parent" : m.er_type === "prosumer" ? "prosumer" : "meter";
  const li = el("li", { role: "treeitem" },
    el("button", {
      class: "node", type: "button", "data-level": "meter", "data-id": m.id, "data-code": m.meter_id,
      onclick: () => select({ kind: "meter", id: m.id, code: m.meter_id, label: `Meter ${m.meter_id}` }),
    },
    el("span", { class: "twisty" }), icon(kind),
    el("span", { class: "name", text: m.meter_id }),
    el("span", { class: "meta", text: (kids.length || m.childCount) ? `parent · ${kids.length || m.childCount}` : (m.er_type || "unlinked") })));
  if (kids.length) li.append(el("ul", { role: "group" }, kids.map(meterItem)));
  return li;
}

// A big grid (GET /grid refuses its whole tree) is paged: the utilities first, then each node's children
// when it is unfolded, a page at a time (GET /grid/children), whatever the grid's size (five million meters
// are 51,000 nodes, 18 MB as one tree); the filter box searches (GET /grid/search).
function pagedMeter(item) {
  return { id: item.id, meter_id: item.code, er_type: item.er_type, children: [], childCount: item.children };
}

function pagedNode(item) {
  return { id: item.id, code: item.code, name: item.name, level: item.level, children: [], meters: [], childCount: item.children };
}

async function loadChildPage(code, group, after) {
  const params = new URLSearchParams({ limit: "200" });
  if (code) params.set("node", code);
  if (after) params.set("after", after);
  const page = await api("GET", `/grid/children?${params}`);
  for (const item of page.items) {
    if (item.kind === "meter") {
      const m = pagedMeter(item);
      state.meterByCode.set(m.meter_id.toLowerCase(), m);
      group.append(meterItem(m));
    } else {
      const n = pagedNode(item);
      state.nodes.set(`${n.level}:${n.id}`, n);
      group.append(nodeItem(n));
    }
  }
  if (page.next_after) {
    const more = el("li", { role: "treeitem" }, el("button", {
      class: "node more", type: "button", text: "more…",
      onclick: () => { more.remove(); loadChildPage(code, group, page.next_after); },
    }));
    group.append(more);
  }
}

function nodeItem(n) {
  const isTx = n.level === "transformer";
  const lazy = state.paged && n.childCount > 0;
  const kids = isTx ? (n.meters || []) : (n.children || []);
  const open = !isTx && !state.paged;  // transformers start folded: a demo world has many meters
  const group = el("ul", { role: "group", class: open ? "" : "hidden" },
    isTx ? kids.map(meterItem) : kids.map(nodeItem));
  const twisty = el("span", { class: "twisty", text: kids.length || lazy ? (open ? "▾" : "▸") : "" });
  let loaded = !lazy;
  const toggle = () => {
    if (!loaded) { loaded = true; loadChildPage(n.code, group, null); }
    group.classList.toggle("hidden");
    twisty.textContent = group.classList.contains("hidden") ? "▸" : "▾";
  };
  const button = el("button", {
    class: "node", type: "button", "data-level": n.level, "data-id": n.id, "data-code": n.code,
    "aria-expanded": String(open),
    onclick: (e) => {
      // The arrow folds; the row selects the node for the chart (and unfolds a folded transformer).
      if (e.target === twisty || ((isTx || lazy) && group.classList.contains("hidden"))) toggle();
      if (e.target === twisty) return;
      const title = { utility: "Utility", feeder: "Feeder", transformer: "Transformer" }[n.level];
      select({ kind: "node", level: n.level, id: n.id, code: n.code, label: `${title} ${n.name}` });
    },
  }, twisty, icon(n.level), el("span", { class: "name", text: n.name }));
  if (isTx) button.append(loadBar(n.code));
  else button.append(el("span", { class: "meta", text: state.paged ? `${n.childCount} ${n.level === "utility" ? "feeders" : "transformers"}` : metaOf(n) }));
  return el("li", { role: "treeitem" }, button, group);
}

function metaOf(n) {
  let tx = 0, meters = 0;
  const count = (node) => {
    if (node.level === "transformer") { tx++; meters += countMeters(node.meters || []); }
    for (const c of node.children || []) count(c);
  };
  count(n);
  return `${tx} tx · ${meters} meters`;
}

function countMeters(list) { return list.reduce((s, m) => s + 1 + countMeters(m.children || []), 0); }

async function loadGrid() {
  try {
    let grid;
    try {
      grid = await api("GET", "/grid");
      state.paged = false;
    } catch (err) {
      // Too big for one tree (422 naming `meters`): every level paged on demand.
      if (!(err instanceof ApiError) || err.status !== 422) throw err;
      state.paged = true;
    }
    const tree = $("#tree");
    if (state.paged) {
      state.grid = null;
      state.nodes.clear();
      state.meterByCode.clear();
      const top = el("ul", { role: "group" });
      tree.replaceChildren(top);
      $("#tree-summary").textContent = "a large grid: unfold to browse, type a code or a name to search";
      await loadChildPage(null, top, null);
      applyFilter();
      return;
    }
    state.grid = grid;
    indexGrid(grid);
    tree.replaceChildren(grid.utilities.length
      ? el("ul", { role: "group" }, grid.utilities.map(nodeItem))
      : el("p", { class: "muted", text: "The grid is empty: create nodes and meters through the API (see /docs)." }));
    $("#tree-summary").textContent = `${grid.transformers} transformers · ${grid.meters} meters`;
    if (!state.selection) autoSelect(grid);
    applyFilter();
  } catch (err) {
    $("#tree").replaceChildren(el("p", { class: "error", text: `Could not load the grid: ${err.message}` }));
  }
}

// Start on the first prosumer meter (both consumption and production have something to show).
function autoSelect(grid) {
  const meters = [...state.meterByCode.values()];
  const pick = meters.find((m) => m.er_type === "prosumer" && !(m.children || []).length) || meters[0];
  if (pick) select({ kind: "meter", id: pick.id, code: pick.meter_id, label: `Meter ${pick.meter_id}` });
}

let searchSeq = 0;

// Paged grid: the filter asks the gateway (GET /grid/search) and lists what it found above the tree.
async function searchGrid(q) {
  const seq = ++searchSeq;
  const old = $("#tree-results");
  if (old) old.remove();
  if (q.length < 2) return;
  const found = await api("GET", `/grid/search?${new URLSearchParams({ q, limit: "30" })}`);
  if (seq !== searchSeq) return;  // a newer query was typed meanwhile
  const title = { utility: "Utility", feeder: "Feeder", transformer: "Transformer" };
  const items = found.items.map((i) => el("li", { role: "treeitem" }, el("button", {
    class: "node", type: "button", "data-level": i.level, "data-id": i.id, "data-code": i.code,
    onclick: () => select(i.kind === "meter"
      ? { kind: "meter", id: i.id, code: i.code, label: `Meter ${i.code}` }
      : { kind: "node", level: i.level, id: i.id, code: i.code, label: `${title[i.level]} ${i.name}` }),
  }, icon(i.kind === "meter" ? (i.er_type === "prosumer" ? "prosumer" : "meter") : i.level),
  el("span", { class: "name", text: i.name }),
  el("span", { class: "meta", text: i.path.join(" › ") }))));
  if (found.truncated) items.push(el("li", { class: "muted", text: "more match: type more of the code" }));
  $("#tree").prepend(el("ul", { id: "tree-results", role: "group" },
    items.length ? items : [el("li", { class: "muted", text: "nothing found" })]));
}

function applyFilter() {
  const q = $("#tree-filter").value.trim().toLowerCase();
  if (state.paged) { searchGrid(q).catch(() => {}); return; }
  for (const li of document.querySelectorAll("#tree li")) li.classList.remove("hidden");
  if (!q) return;
  const visit = (li) => {
    const own = li.querySelector(":scope > .node").textContent.toLowerCase().includes(q);
    const group = li.querySelector(":scope > ul");
    let child = false;
    if (group) for (const c of group.children) child = visit(c) || child;
    if (child && group) group.classList.remove("hidden");
    li.classList.toggle("hidden", !(own || child));
    return own || child;
  };
  for (const li of document.querySelectorAll("#tree > ul > li")) visit(li);
}

function updateLoadBars() {
  for (const wrap of document.querySelectorAll(".load[data-transformer]")) {
    wrap.replaceWith(loadBar(wrap.dataset.transformer));
  }
}

// ------------------------------------------------------------------------------------------- selection and chart

function select(sel) {
  state.selection = sel;
  state.points = [];
  state.lastFetched = null;
  for (const b of document.querySelectorAll(".node.selected")) b.classList.remove("selected");
  const level = sel.kind === "meter" ? "meter" : sel.level;
  const b = document.querySelector(`.node[data-level="${level}"][data-id="${sel.id}"]`);
  if (b) b.classList.add("selected");
  $("#chart-title").textContent = sel.label;
  if (sel.kind === "meter") $("#bill-meter").value = sel.code;
  drawChart();
  fetchSeries();
  if (sel.kind === "node") refreshUtility();
}

function readingPoint(r) {
  const t = Date.parse(r.timestamp);
  const hours = (r.interval_s || (state.clock ? state.clock.interval_s : 60)) / 3600;
  return {
    t,
    cons: r.consumption_kWh === null || r.consumption_kWh === undefined ? null : r.consumption_kWh / hours,
    prod: r.production_kWh === null || r.production_kWh === undefined ? null : r.production_kWh / hours,
    volt: r.avg_voltage ?? null,
  };
}

// A grid node's interval rollup (GET /rollups/{code}): energies as mean kW, peak loading on the right axis.
function rollupPoint(r) {
  const hours = (r.interval_s || 60) / 3600;
  return { t: Date.parse(r.timestamp), cons: r.consumption_kWh / hours, prod: r.production_kWh / hours, volt: null, load: r.peak_loading_pct };
}

// The selection's points of the last simulated day, then only what is new since the last fetch. Called on
// selection and on every watermark (the aggregator has committed readings and rollups up to it).
async function fetchSeries() {
  const sel = state.selection;
  if (!sel) return;
  if (state.fetching) { state.refetch = true; return; }
  const now = state.clock ? Date.parse(state.clock.current_datetime) : Date.now();
  const from = state.lastFetched !== null ? state.lastFetched + 1000 : now - DAY_MS;
  const range = { from: new Date(from).toISOString(), to: new Date(now).toISOString() };
  const url = sel.kind === "meter"
    ? `/meter/stream?${new URLSearchParams({ meter_id: sel.code, ...range })}`
    : `/rollups/${encodeURIComponent(sel.code)}?${new URLSearchParams({ resolution: "raw", ...range })}`;
  const toPoint = sel.kind === "meter" ? readingPoint : rollupPoint;
  state.fetching = true;
  try {
    const body = await api("GET", url);
    if (state.selection !== sel) return;
    // Answers are oldest first and start after the last point fetched: appending keeps the list sorted.
    for (const r of body) {
      const p = toPoint(r);
      if (state.lastFetched !== null && p.t <= state.lastFetched) continue;
      state.points.push(p);
      state.lastFetched = p.t;
    }
    const keepFrom = (state.lastFetched ?? 0) - CHART_WINDOW_MS;
    let drop = 0;
    while (drop < state.points.length && state.points[drop].t < keepFrom) drop++;
    if (drop) state.points.splice(0, drop);
    drawChart();
  } catch (err) {
    if (state.selection === sel) showChartMessage(`No readings: ${err.message}`);
  } finally {
    state.fetching = false;
    if (state.refetch) { state.refetch = false; fetchSeries(); }
  }
}

function showChartMessage(text) {
  $("#chart").replaceChildren(el("div", { class: "empty", text }));
  $("#chart").dataset.points = "0";
}

function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  // Maxima whose quarters are round numbers (the axis has four divisions).
  for (const m of [1, 1.2, 1.6, 2, 2.4, 3, 4, 6, 8, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

// The fewest decimals that write a tick step exactly (0.75 → 2, 1.5 → 1, 2 → 0).
function decimalsOf(step) {
  for (let d = 0; d < 4; d++) if (Math.abs(Math.round(step * 10 ** d) - step * 10 ** d) < 1e-6) return d;
  return 3;
}

function drawChart() {
  const box = $("#chart");
  const sel = state.selection;
  const legend = $("#chart-legend");
  if (!sel) { showChartMessage("Select a meter or a transformer in the grid."); return; }
  const isTx = sel.kind === "node";
  legend.replaceChildren(
    el("span", {}, el("i", { style: "background:var(--consumption)" }), "consumption kW"),
    el("span", {}, el("i", { style: "background:var(--production)" }), "production kW"),
    el("span", {}, el("i", { style: "background:var(--voltage)" }), isTx ? "loading %" : "voltage V"));
  const all = state.points;  // sorted and bounded by fetchSeries
  const latest = all.length ? all[all.length - 1].t : null;
  const end = Math.max(latest ?? 0, state.clock ? Date.parse(state.clock.current_datetime) : 0) || Date.now();
  // The last simulated day; while there is less than a day of data, its span (at least two hours).
  const first = all.length ? all[0].t : end;
  const start = Math.max(end - DAY_MS, Math.min(first, end - 3600 * 1000));
  const span = end - start;
  const pts = all.filter((p) => p.t >= start);
  box.dataset.points = String(pts.length);
  if (!pts.length) {
    showChartMessage("Waiting for readings… (step or resume the clock)");
    box.dataset.points = "0";
    return;
  }
  const W = box.clientWidth || 800, H = box.clientHeight || 300;
  const m = { l: 52, r: 52, t: 22, b: 26 };
  const iw = W - m.l - m.r, ih = H - m.t - m.b;
  const x = (t) => m.l + ((t - start) / span) * iw;
  const kwMax = niceMax(Math.max(...pts.map((p) => Math.max(p.cons || 0, p.prod || 0))) * 1.1);
  const y = (v) => m.t + ih - (v / kwMax) * ih;
  const right = pts.map((p) => (isTx ? p.load : p.volt)).filter((v) => v !== null && v !== undefined);
  let rMin = 0, rMax = 100;
  if (right.length) {
    if (isTx) { rMax = niceMax(Math.max(100, ...right) * 1.05); }
    else {
      const lo = Math.min(...right), hi = Math.max(...right), pad = Math.max(2, (hi - lo) * 0.15);
      rMin = Math.floor((lo - pad) / 2) * 2; rMax = Math.ceil((hi + pad) / 2) * 2;
    }
  }
  const yr = (v) => m.t + ih - ((v - rMin) / (rMax - rMin)) * ih;

  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": `${sel.label} chart` });
  const axis = svg("g", { class: "axis" });
  for (let i = 0; i <= 4; i++) {
    const v = (kwMax * i) / 4, yy = y(v);
    axis.append(svg("line", { x1: m.l, x2: W - m.r, y1: yy, y2: yy, class: "grid-line" }));
    axis.append(svg("text", { x: m.l - 6, y: yy + 4, "text-anchor": "end" }, fmt(v, decimalsOf(kwMax / 4))));
    const rv = rMin + ((rMax - rMin) * i) / 4;
    axis.append(svg("text", { x: W - m.r + 6, y: yy + 4 }, fmt(rv, 0)));
  }
  const hourMs = 3600 * 1000;
  const stepH = [1, 2, 3, 6].find((h) => (span / (h * hourMs)) * 60 <= iw / 2) || 6;
  for (let t = Math.ceil(start / (stepH * hourMs)) * stepH * hourMs; t <= end; t += stepH * hourMs) {
    axis.append(svg("line", { x1: x(t), x2: x(t), y1: m.t, y2: m.t + ih, class: "grid-line" }));
    axis.append(svg("text", { x: x(t), y: H - 8, "text-anchor": "middle" }, hhmm(t)));
  }
  axis.append(svg("text", { x: m.l - 6, y: 10, "text-anchor": "end" }, "kW"));
  axis.append(svg("text", { x: W - m.r + 6, y: 10 }, isTx ? "%" : "V"));
  root.append(axis);

  const line = (key, scale) => {
    let d = "", gap = true;
    for (const p of pts) {
      const v = p[key];
      if (v === null || v === undefined) { gap = true; continue; }
      d += `${gap ? "M" : "L"}${x(p.t).toFixed(1)},${scale(v).toFixed(1)}`;
      gap = false;
    }
    return d;
  };
  const area = (key) => {
    const seg = pts.filter((p) => p[key] !== null && p[key] !== undefined);
    if (seg.length < 2) return "";
    return `M${x(seg[0].t)},${y(0)}` + seg.map((p) => `L${x(p.t).toFixed(1)},${y(p[key]).toFixed(1)}`).join("") + `L${x(seg[seg.length - 1].t)},${y(0)}Z`;
  };
  root.append(svg("path", { d: area("cons"), class: "area consumption" }));
  root.append(svg("path", { d: area("prod"), class: "area production" }));
  root.append(svg("path", { d: line(isTx ? "load" : "volt", yr), class: "series voltage", "data-series": isTx ? "loading" : "voltage" }));
  root.append(svg("path", { d: line("cons", y), class: "series consumption", "data-series": "consumption" }));
  root.append(svg("path", { d: line("prod", y), class: "series production", "data-series": "production" }));

  // Events about the selection (spikes, overloads, voltage, tamper) as labelled markers.
  const subject = (sel.code || "").toLowerCase();
  const marks = svg("g", { class: "markers" });
  for (const ev of state.events) {
    const t = Date.parse(ev.timestamp);
    if (t < start || t > end || !eventConcerns(ev, subject, sel)) continue;
    const g = svg("g", { class: "marker", "data-type": ev.type });
    g.append(svg("line", { x1: x(t), x2: x(t), y1: m.t, y2: m.t + ih }));
    const nearRight = x(t) > W - m.r - 70;
    g.append(svg("text", { x: x(t) + (nearRight ? -4 : 4), y: m.t - 6, "text-anchor": nearRight ? "end" : "start" }, ev.type));
    marks.append(g);
  }
  root.append(marks);
  // The highest consumption shown, for tests and for anyone scripting the page.
  box.dataset.maxConsumptionKw = String(Math.max(0, ...pts.map((p) => p.cons || 0)));
  if (latest !== null) root.append(svg("line", { x1: x(latest), x2: x(latest), y1: m.t, y2: m.t + ih, class: "now-line" }));
  box.replaceChildren(root);
  box.dataset.points = String(pts.length);
}

function eventConcerns(ev, subject, sel) {
  if ((ev.subject || "").toLowerCase() === subject) return true;
  const d = ev.data || {};
  const codes = [].concat(d.meter_code || [], d.meter_codes || [], d.transformer || [], d.transformer_code || []);
  if (codes.some((c) => String(c).toLowerCase() === subject)) return true;
  const ids = [].concat(d.meter_id || [], d.meter_ids || []);
  return sel.kind === "meter" && ids.some((i) => Number(i) === Number(sel.id));
}

// ------------------------------------------------------------------------------------------- events

function addEvents(list) {
  if (!list.length) return;
  state.events.push(...list);
  state.events.sort((a, b) => Date.parse(a.timestamp) - Date.parse(b.timestamp));
  if (state.events.length > MAX_EVENTS) state.events.splice(0, state.events.length - MAX_EVENTS);
  renderEvents();
  if (state.selection) drawChart();
}

function renderEvents() {
  const ol = $("#events");
  if (!state.events.length) { ol.replaceChildren(el("li", { class: "muted empty", text: "No events yet." })); return; }
  ol.replaceChildren(...state.events.slice().reverse().map((ev) =>
    el("li", { "data-type": ev.type, "data-severity": ev.severity },
      el("span", { class: `sev ${ev.severity}`, text: ev.severity }),
      el("span", { class: "what" }, `${ev.type} · ${ev.subject}`, el("span", { class: "when", text: isoMinute(Date.parse(ev.timestamp)), title: utcTitle(Date.parse(ev.timestamp)) })),
      el("span", { class: "msg", text: ev.message }))));
  $("#events-count").textContent = `${state.events.length} shown`;
}

// ------------------------------------------------------------------------------------------- live feed

function onRollups(list) {
  for (const r of list) state.rollups.set(r.node_code, r);
  updateLoadBars();
  if (state.transformers) drawPlot();
}

function connectLive() {
  const source = new EventSource("/events/live");
  const pendingEvents = [];
  let flush = null;
  source.addEventListener("clock", (e) => {
    const before = state.clock;
    state.clock = JSON.parse(e.data);
    renderClock();
    if (before && before.world_version !== state.clock.world_version) loadGrid();
  });
  source.addEventListener("watermark", () => fetchSeries());
  source.addEventListener("rollups", (e) => onRollups(JSON.parse(e.data)));
  source.addEventListener("event", (e) => {
    pendingEvents.push(JSON.parse(e.data));
    if (!flush) flush = setTimeout(() => { flush = null; addEvents(pendingEvents.splice(0)); }, 50);
  });
  source.addEventListener("ready", () => { document.body.dataset.live = "ready"; });
  source.onerror = () => { document.body.dataset.live = "reconnecting"; };
}

// ------------------------------------------------------------------------------------------- bill

function setupBill() {
  $("#bill-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const out = $("#bill");
    const params = new URLSearchParams({ meter_id: $("#bill-meter").value.trim(), month: $("#bill-month").value });
    out.replaceChildren(el("span", { class: "muted", text: "Computing…" }));
    try {
      const b = await api("GET", `/bill?${params}`);
      const cur = b.currency;
      const row = (label, value, cls) => el("tr", { class: cls }, el("td", { text: label }), el("td", { text: value }));
      out.replaceChildren(
        el("div", {}, el("strong", { text: `${b.meter_code} · ${b.month} ` }), el("span", { class: "pill", text: `${b.status} · ${b.type} · ${b.tariff}` })),
        el("table", { "data-testid": "bill-table" },
          row("Consumed", `${fmt(b.total_consumed_kWh, 3)} kWh`),
          row("Produced", `${fmt(b.total_produced_kWh, 3)} kWh`),
          row("From the grid", `${fmt(b.grid_units_used_kWh, 3)} kWh @ ${fmt(b.grid_rate)}`),
          row("Exported to the grid", `${fmt(b.grid_units_exported_kWh, 3)} kWh @ ${fmt(b.grid_credit_rate)}`),
          row("P2P bought / sold", `${fmt(b.p2p_bought_kWh, 3)} / ${fmt(b.p2p_sold_kWh, 3)} kWh`),
          row("Grid bill", `${cur} ${fmt(b.grid_bill)}`),
          row("Grid earning", `${cur} ${fmt(b.grid_earning)}`),
          row("P2P cost / earning", `${cur} ${fmt(b.p2p_cost)} / ${fmt(b.p2p_earning)}`),
          row(b.amount_due < 0 ? "Refund" : "Amount due", `${cur} ${fmt(Math.abs(b.amount_due))}`, "total")));
    } catch (err) {
      out.replaceChildren(el("span", { class: "error", text: err.message }));
    }
  });
}

// ------------------------------------------------------------------------------------------- reliability

// SAIFI, SAIDI, CAIDI and MAIFI per feeder for the bill card's month (GET /reliability; docs/grid-health.md).
function setupReliability() {
  $("#reliability-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const out = $("#reliability");
    const month = $("#bill-month").value;
    out.replaceChildren(el("span", { class: "muted", text: "Computing…" }));
    try {
      const rows = await api("GET", `/reliability?${new URLSearchParams({ month })}`);
      const cell = (text) => el("td", { text });
      out.replaceChildren(
        el("div", {}, el("strong", { text: `${month} · sustained > 5 min, momentary ≤ 5 min` })),
        el("table", { "data-testid": "reliability-table" },
          el("tr", {}, ...["feeder", "customers", "SAIFI", "SAIDI min", "CAIDI min", "MAIFI"].map((h) => el("th", { text: h }))),
          ...rows.map((r) => el("tr", {}, cell(r.feeder_code), cell(String(r.customers_served)), cell(fmt(r.SAIFI, 3)),
            cell(fmt(r.SAIDI, 1)), cell(fmt(r.CAIDI, 1)), cell(fmt(r.MAIFI, 3))))));
    } catch (err) {
      out.replaceChildren(el("span", { class: "error", text: err.message }));
    }
  });
}

// ------------------------------------------------------------------------------------------- feasibility

async function loadTransformers() {
  try {
    const page = await api("GET", "/admin/transformers?limit=10000");
    state.transformers = page.transformers.filter((t) => t.latitude !== null && t.longitude !== null);
  } catch (err) {
    state.transformers = [];
    $("#feas-plot").replaceChildren(el("div", { class: "empty", text: `Transformers unavailable: ${err.message}` }));
    return;
  }
  if (state.transformers.length && !$("#feas-lat").value) {
    const avg = (k) => state.transformers.reduce((s, t) => s + t[k], 0) / state.transformers.length;
    $("#feas-lat").value = avg("latitude").toFixed(5);
    $("#feas-lon").value = avg("longitude").toFixed(5);
  }
  drawPlot();
}

// An equirectangular projection around the transformers' centre: metres east/north, equal scale.
function projection(points, W, H, pad) {
  const lat0 = points.reduce((s, p) => s + p.lat, 0) / points.length;
  const kx = 111320 * Math.cos((lat0 * Math.PI) / 180), ky = 110540;
  const xs = points.map((p) => p.lon * kx), ys = points.map((p) => p.lat * ky);
  let minX = Math.min(...xs), maxX = Math.max(...xs), minY = Math.min(...ys), maxY = Math.max(...ys);
  const cx = (minX + maxX) / 2, cy = (minY + maxY) / 2;
  const scale = Math.min((W - 2 * pad) / Math.max(maxX - minX, 400), (H - 2 * pad) / Math.max(maxY - minY, 400));
  return {
    x: (lon) => W / 2 + (lon * kx - cx) * scale,
    y: (lat) => H / 2 - (lat * ky - cy) * scale,
    lon: (px) => (cx + (px - W / 2) / scale) / kx,
    lat: (py) => (cy - (py - H / 2) / scale) / ky,
    metres: (m) => m * scale,
  };
}

function drawPlot() {
  const box = $("#feas-plot");
  const txs = state.transformers || [];
  if (!txs.length) {
    if (state.transformers) box.replaceChildren(el("div", { class: "empty", text: "No transformers with a position yet." }));
    return;
  }
  const W = box.clientWidth || 600, H = box.clientHeight || 360;
  const f = state.feasibility;
  const pts = txs.map((t) => ({ lat: t.latitude, lon: t.longitude }));
  if (f) pts.push({ lat: f.request.latitude, lon: f.request.longitude });
  const proj = projection(pts, W, H, 40);
  state.plotProjection = proj;
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "transformer positions" });
  const nearest = f && f.answer.status === "feasible" ? f.answer.nearest_transformer : null;
  if (f && f.answer.radius_m) {
    root.append(svg("circle", { cx: proj.x(f.request.longitude), cy: proj.y(f.request.latitude), r: proj.metres(f.answer.radius_m), class: "radius" }));
  }
  if (nearest) {
    const t = txs.find((tx) => tx.id === nearest.id);
    if (t) root.append(svg("line", { x1: proj.x(f.request.longitude), y1: proj.y(f.request.latitude), x2: proj.x(t.longitude), y2: proj.y(t.latitude), class: "link" }));
  }
  for (const t of txs) {
    const r = state.rollups.get(t.code);
    const cls = loadingClass(r ? r.loading_pct : null);
    const isNearest = nearest && nearest.id === t.id;
    const size = 5 + Math.min(6, Math.sqrt(t.capacity_kVA || 100) / 5);
    const g = svg("g", { "data-transformer": t.code });
    const c = svg("circle", { cx: proj.x(t.longitude), cy: proj.y(t.latitude), r: size, class: `tx ${cls}${isNearest ? " nearest" : ""}` });
    c.append(svg("title", {}, `${t.name}: ${fmt(t.capacity_kVA, 0)} kVA, spare ${fmt(t.spare_consumption_capacity, 1)} kW consumption / ${fmt(t.spare_production_capacity, 1)} kW production`));
    g.append(c, svg("text", { x: proj.x(t.longitude) + size + 3, y: proj.y(t.latitude) + 4, class: `label${isNearest ? " strong" : ""}` }, t.name));
    root.append(g);
  }
  if (f) {
    const rx = proj.x(f.request.longitude), ry = proj.y(f.request.latitude);
    root.append(svg("path", { d: star(rx, ry, 10, 4.5), class: "req", "data-testid": "feas-request" }));
    const t = nearest && txs.find((tx) => tx.id === nearest.id);
    if (t) {
      const mx = (rx + proj.x(t.longitude)) / 2, my = (ry + proj.y(t.latitude)) / 2;
      root.append(svg("text", { x: mx, y: my - 6, class: "label strong", "text-anchor": "middle" }, `${fmt(nearest.distance_meters, 0)} m`));
    }
  }
  // A 1 km scale bar.
  const km = proj.metres(1000);
  if (km > 20 && km < W / 2) {
    root.append(svg("line", { x1: 14, x2: 14 + km, y1: H - 14, y2: H - 14, stroke: "#42515f", "stroke-width": 2 }));
    root.append(svg("text", { x: 14, y: H - 20, class: "label" }, "1 km"));
  }
  box.replaceChildren(root);
}

function star(cx, cy, R, r) {
  let d = "";
  for (let i = 0; i < 10; i++) {
    const a = (Math.PI / 5) * i - Math.PI / 2, rad = i % 2 ? r : R;
    d += `${i ? "L" : "M"}${(cx + rad * Math.cos(a)).toFixed(1)},${(cy + rad * Math.sin(a)).toFixed(1)}`;
  }
  return d + "Z";
}

function setupFeasibility() {
  const form = $("#feas-form");
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const data = new FormData(form);
    const request = {
      type: data.get("type"),
      requested_consumption_kW: Number(data.get("requested_consumption_kW")),
      requested_production_kW: Number(data.get("requested_production_kW")),
      latitude: Number(data.get("latitude")),
      longitude: Number(data.get("longitude")),
    };
    const out = $("#feas-result");
    out.replaceChildren(el("span", { class: "muted", text: "Checking…" }));
    try {
      const answer = await api("POST", "/feasibility-check", request);
      state.feasibility = { request, answer };
      if (answer.status === "feasible") {
        const n = answer.nearest_transformer;
        out.replaceChildren(
          el("div", { class: "verdict ok", "data-status": "feasible", text: "Feasible" }),
          el("div", { text: `${n.name} at ${fmt(n.distance_meters, 0)} m` }),
          el("div", { class: "muted", text: `spare ${fmt(n.spare_consumption_capacity, 1)} kW consumption · ${fmt(n.spare_production_capacity, 1)} kW production (${n.decided_on})` }));
      } else {
        out.replaceChildren(
          el("div", { class: "verdict no", "data-status": "not_feasible", text: "Not feasible" }),
          el("div", { text: answer.reason }),
          el("div", { class: "muted", text: `${answer.transformers_in_radius} transformers within ${fmt(answer.radius_m / 1000, 1)} km` }));
      }
      drawPlot();
    } catch (err) {
      out.replaceChildren(el("span", { class: "error", text: err.message }));
    }
  });
  $("#feas-type").addEventListener("change", (e) => {
    const prod = form.elements.requested_production_kW;
    if (e.target.value === "consumer") prod.value = "0";
    prod.disabled = e.target.value === "consumer";
  });
  form.elements.requested_production_kW.disabled = true;
  $("#feas-plot").addEventListener("click", (e) => {
    const proj = state.plotProjection;
    if (!proj) return;
    const rect = e.currentTarget.getBoundingClientRect();
    const W = e.currentTarget.clientWidth, H = e.currentTarget.clientHeight;
    const px = ((e.clientX - rect.left) / rect.width) * W, py = ((e.clientY - rect.top) / rect.height) * H;
    $("#feas-lat").value = proj.lat(py).toFixed(5);
    $("#feas-lon").value = proj.lon(px).toFixed(5);
    form.requestSubmit();
  });
}

// ------------------------------------------------------------------------------------------- start

// ------------------------------------------------------------------------------------------- utility

// The grid node the utility card shows: the selected utility, feeder or transformer, else the utility.
function utilityNode() {
  const sel = state.selection;
  return sel && sel.kind === "node" ? sel.code : null;
}

async function refreshUtility() {
  const node = utilityNode();
  const q = node ? `?node=${encodeURIComponent(node)}` : "";
  try {
    const [forecast, events] = await Promise.all([
      api("GET", `/forecast${q ? q + "&" : "?"}horizon=day-ahead&hours=48`),
      api("GET", "/dr/events?limit=5"),
    ]);
    drawUtilityChart(forecast);
    renderDrEvents(events);
    // Prices are set per utility and per feeder: a transformer shows its utility's.
    const priceNode = forecast.level === "transformer" ? "" : `?node=${encodeURIComponent(forecast.node_code)}`;
    renderPrice(await api("GET", `/price${priceNode}`));
    renderScores(await api("GET", `/forecast/scores?node=${encodeURIComponent(forecast.node_code)}`));
  } catch (err) {
    $("#util-price").replaceChildren(el("span", { class: "muted", text: `Utility: ${err.message}` }));
  }
}

function drawUtilityChart(f) {
  const box = $("#util-chart");
  $("#util-legend").replaceChildren(
    el("span", {}, el("i", { style: "background:var(--consumption)" }), "metered kWh"),
    el("span", {}, el("i", { style: "background:var(--production)" }), "regression"),
    el("span", {}, el("i", { style: "background:#9aa5b1" }), "seasonal-naive"));
  $("#util-subtitle").textContent = `${f.level} ${f.node_code}: day-ahead forecasts against what was metered` +
    (f.issued_at ? `, issued ${isoMinute(Date.parse(f.issued_at))}` : "");
  const pts = f.points.map((p) => ({ t: Date.parse(p.timestamp), a: p.actual_kWh, r: p.regression_kWh, n: p.seasonal_naive_kWh }));
  box.dataset.points = String(pts.length);
  if (!pts.length) { box.replaceChildren(el("p", { class: "muted", text: "No forecast yet: it needs a simulated week of history." })); return; }
  const W = Math.max(box.clientWidth, 320), H = 220, pad = { l: 46, r: 10, t: 10, b: 24 };
  const t0 = pts[0].t, t1 = Math.max(pts[pts.length - 1].t, t0 + 3600e3);
  const vmax = niceMax(Math.max(...pts.flatMap((p) => [p.a, p.r, p.n]).filter((v) => v != null)));
  const x = (t) => pad.l + (t - t0) / (t1 - t0) * (W - pad.l - pad.r);
  const y = (v) => H - pad.b - v / vmax * (H - pad.t - pad.b);
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": `${f.node_code} forecast chart` });
  const axis = svg("g", { class: "axis" });
  for (let i = 0; i <= 4; i++) {
    const v = vmax * i / 4;
    axis.append(svg("line", { x1: pad.l, x2: W - pad.r, y1: y(v), y2: y(v), class: "grid-line" }));
    axis.append(svg("text", { x: pad.l - 6, y: y(v) + 4, "text-anchor": "end" }, fmt(v, decimalsOf(vmax / 4))));
  }
  axis.append(svg("text", { x: pad.l - 6, y: 10, "text-anchor": "end" }, "kWh"));
  axis.append(svg("text", { x: pad.l, y: H - 6 }, isoMinute(t0)));
  axis.append(svg("text", { x: W - pad.r, y: H - 6, "text-anchor": "end" }, isoMinute(t1)));
  root.append(axis);
  const line = (key, color, dash) => {
    const d = pts.filter((p) => p[key] != null).map((p, i) => `${i ? "L" : "M"}${x(p.t).toFixed(1)},${y(p[key]).toFixed(1)}`).join("");
    if (d) root.append(svg("path", { d, fill: "none", stroke: color, "stroke-width": 2, "stroke-dasharray": dash || "" }));
  };
  line("n", "#9aa5b1", "4 3");
  line("r", "var(--production)");
  line("a", "var(--consumption)");
  box.replaceChildren(root);
}

function renderPrice(p) {
  const c = p.current;
  const next = p.schedule.slice(1).reduce((m, q) => (q.price > m.price ? q : m), p.schedule[0]);
  $("#util-price").replaceChildren(
    el("div", {}, el("strong", { text: `${p.currency} ${fmt(c.price, 2)} / kWh` }), " ",
      el("span", { class: "pill", text: `${c.period} · ${p.level} ${p.node_code}` })),
    el("div", { class: "muted", text: `time-of-use ${fmt(c.tou_rate, 2)}; highest in the next 24 h ${fmt(next.price, 2)} at ${hhmm(Date.parse(next.timestamp))} ${localParts(Date.parse(next.timestamp)).zone}` }));
}

function renderScores(rows) {
  const pick = (q, m) => rows.find((r) => r.quantity === q && r.horizon === "day-ahead" && r.model === m);
  const reg = pick("load", "regression"), naive = pick("load", "seasonal-naive");
  $("#util-scores").replaceChildren(reg && naive && reg.mape_pct != null
    ? el("div", { class: "muted", text: `day-ahead load MAPE over ${reg.hours} h: regression ${fmt(reg.mape_pct, 1)} %, seasonal-naive ${fmt(naive.mape_pct, 1)} % (bias ${fmt(reg.bias_pct, 1)} %)` })
    : el("span", { class: "muted", text: "No scores yet." }));
}

function renderDrEvents(events) {
  const list = $("#util-events");
  if (!events.length) { list.replaceChildren(el("li", { class: "muted empty", text: "No DR events." })); return; }
  list.replaceChildren(...events.map((e) => el("li", { class: e.status === "active" ? "critical" : "info" },
    el("span", { class: "muted", text: hhmm(Date.parse(e.start)) }),
    el("span", {}, el("strong", { text: `#${e.id} ${e.program_kind.toUpperCase()} L${e.level} ${e.status}` }),
      ` · ${e.participants.filter((p) => p.complied).length}/${e.participants.length} responding` +
      (e.shed_kWh != null ? ` · shed ${fmt(e.shed_kWh, 1)} kWh` : "") +
      (e.rebound_kWh != null ? ` · rebound ${fmt(e.rebound_kWh, 1)} kWh` : "")))));
}

async function loadZone() {
  try {
    const config = await api("GET", "/dashboard/config");
    if (config && config.timezone) { state.zone = config.timezone; zoneFormat = null; }
  } catch (err) {
    console.warn("no /dashboard/config; showing UTC", err);
  }
  renderClock();
}

function start() {
  loadZone();
  setupControls();
  setupBill();
  setupReliability();
  setupFeasibility();
  $("#tree-filter").addEventListener("input", applyFilter);
  window.addEventListener("resize", () => { drawChart(); drawPlot(); });
  connectLive();
  loadGrid();
  loadTransformers();
  pollHealth();
  setInterval(pollHealth, 10000);
  refreshUtility();
  setInterval(refreshUtility, 5000);
}

document.addEventListener("DOMContentLoaded", start);
