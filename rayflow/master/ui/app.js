// The rayflow web UI, drawn from the REST API: the topology list; per topology its graph, charts
// of its components over time, a timeline and its errors; a page per component with charts per
// task, its errors and each task's live log; a checkpoint tab under exactly-once.
// Charts are uPlot's (vendored next to this file); every page refreshes every 2 s in place.
"use strict";

const main = document.getElementById("main");
const tokenInput = document.getElementById("token");
const rangeInput = document.getElementById("range");
tokenInput.value = localStorage.getItem("rayflow-token") || "";
tokenInput.addEventListener("change", () => localStorage.setItem("rayflow-token", tokenInput.value));
rangeInput.value = localStorage.getItem("rayflow-range") || "600";
rangeInput.addEventListener("change", () => { localStorage.setItem("rayflow-range", rangeInput.value); render(); });

const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
const num = (n) => Number(n || 0).toLocaleString("en-US", {maximumFractionDigits: 1});
const pct = (n) => `${Math.round(100 * (n || 0))}%`;
const ago = (s) => s < 120 ? `${Math.round(s)}s` : s < 7200 ? `${Math.round(s / 60)}m` : `${(s / 3600).toFixed(1)}h`;
const clock = (t) => new Date(t * 1000).toLocaleTimeString();
// An axis tick or legend value: 1.2M, 350K, 12.5, 0.042
const compact = (v) => {
  const a = Math.abs(v);
  if (a >= 1e6) return `${+(v / 1e6).toFixed(1)}M`;
  if (a >= 1e4) return `${+(v / 1e3).toFixed(0)}K`;
  if (a >= 1e3) return `${+(v / 1e3).toFixed(1)}K`;
  return a >= 10 || a === 0 ? `${+v.toFixed(1)}` : `${+v.toPrecision(2)}`;
};
const enc = encodeURIComponent;
const PALETTE = ["#0969da", "#cf222e", "#1a7f37", "#9a6700", "#8250df", "#bf3989", "#0a7ea4",
  "#57606a", "#fb8500", "#2da44e", "#6639ba", "#e16f24"];

async function api(path, options = {}) {
  const headers = {"Content-Type": "application/json"};
  if (tokenInput.value) headers.Authorization = `Bearer ${tokenInput.value}`;
  const response = await fetch(`/api/v1${path}`, {...options, headers});
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

// ------------------------------------------------------------------ charts

// Every chart on the page by its id (tests read their data: window.rayflowCharts[id].data).
const charts = window.rayflowCharts = {};

// What changed the flow, drawn as a dashed line across every time chart: the page's topology's
// timeline events of these kinds (set on each refresh, read when a chart draws).
const MARKED = {restart: "#cf222e", failed: "#cf222e", recovery: "#9a6700", rebalance: "#9a6700",
  takeover: "#8250df", deactivate: "#57606a", activate: "#57606a"};
let markers = [];

function setMarkers(t) {
  markers = (t.timeline || []).filter((e) => e.kind in MARKED);
}

// A uPlot plugin: the markers inside the chart's time range, each a dashed line and its kind;
// the chart keeps what it drew in `rayflowMarkers` (the tests read it).
const markerPlugin = {hooks: {draw: [(u) => {
  const [lo, hi] = [u.scales.x.min, u.scales.x.max];
  const shown = markers.filter((m) => m.time >= lo && m.time <= hi);
  const {ctx, bbox} = u;
  ctx.save();
  ctx.setLineDash([4, 3]);
  ctx.lineWidth = 1;
  ctx.font = "10px system-ui, sans-serif";
  for (const m of shown) {
    const x = Math.round(u.valToPos(m.time, "x", true));
    ctx.strokeStyle = ctx.fillStyle = MARKED[m.kind];
    ctx.beginPath();
    ctx.moveTo(x, bbox.top);
    ctx.lineTo(x, bbox.top + bbox.height);
    ctx.stroke();
    ctx.fillText(m.kind, x + 3, bbox.top + 10);
  }
  ctx.restore();
  u.rayflowMarkers = shown.map((m) => ({time: m.time, kind: m.kind}));
}]}};

function dropCharts() {
  for (const id of Object.keys(charts)) { charts[id].destroy(); delete charts[id]; }
  for (const query of Object.keys(held)) delete held[query];
}

// Draw or update the chart `id` in its `.chart[data-chart=id]` box: x = times, one line per label.
function drawChart(id, title, unit, times, lines) {
  const box = main.querySelector(`.chart[data-chart="${id}"]`);
  if (!box) return;
  // a chart with nothing to show (no event time, no acking) stays hidden until it has
  box.hidden = !lines.some((l) => l.values.some((v) => v != null));
  const labels = lines.map((l) => l.label);
  const data = [times, ...lines.map((l) => l.values)];
  const old = charts[id];
  if (old && old.rayflowLabels === labels.join("\n")) { old.setData(data); return; }
  if (old) old.destroy();
  const format = unit === "%" ? (v) => v == null ? "-" : `${(100 * v).toFixed(1)}%` :
    (v) => v == null ? "-" : `${compact(v)}${unit ? " " + unit : ""}`;
  const chart = new uPlot({
    title,
    width: Math.max(280, box.clientWidth || 420),
    height: 190,
    series: [{}, ...lines.map((l, i) => ({label: l.label, stroke: PALETTE[i % PALETTE.length],
      width: 1.5, value: (u, v) => format(v), spanGaps: false}))],
    axes: [{}, {size: 56, values: (u, ticks) => ticks.map((v) => unit === "%" ? `${Math.round(100 * v)}%` : compact(v))}],
    scales: unit === "%" ? {y: {range: [0, 1]}} : {},
    legend: {live: true},
    cursor: {drag: {x: true, y: false}},
    plugins: [markerPlugin],
  }, data, box);
  chart.rayflowLabels = labels.join("\n");
  charts[id] = chart;
}

// The history behind a page's charts: `owners` is "" (every component) or a query part. The
// page keeps what it was served and asks only for the slots after its last (a served slot never
// changes), so a refresh of hundreds of tasks' charts carries a few values per series, not all.
const held = {};  // query -> the answer so far

async function history(name, owners, metrics) {
  const range = Number(rangeInput.value), now = Date.now() / 1000;
  const query = `/topologies/${enc(name)}/history?${owners}metrics=${metrics.join(",")}`;
  const old = held[query];
  if (old && old.range === range && old.times.length) {
    const newer = await api(`${query}&since=${old.times[old.times.length - 1] + 0.001}&step=${old.step}`);
    const same = newer.step === old.step && newer.series.length === old.series.length &&
      newer.series.every((s, i) => s.component === old.series[i].component &&
        s.task === old.series[i].task && s.metric === old.series[i].metric);
    if (same) {
      old.times.push(...newer.times);
      old.series.forEach((s, i) => s.values.push(...newer.series[i].values));
      const kept = old.times.findIndex((t) => t >= now - range);  // the first still in range
      const gone = kept < 0 ? old.times.length : kept;
      if (gone > 0) {
        old.times.splice(0, gone);
        old.series.forEach((s) => s.values.splice(0, gone));
      }
      return {...old, series: [...old.series]};  // callers filter series: not the held list
    }
  }
  const answer = held[query] = {...await api(`${query}&since=${now - range}`), range};
  return {...answer, series: [...answer.series]};
}

// One chart per metric, one line per component or task, from a history answer.
function drawHistory(answer, specs, labelOf) {
  for (const [metric, title, unit] of specs) {
    const lines = answer.series.filter((s) => s.metric === metric)
      .map((s) => ({label: labelOf(s), values: s.values}));
    drawChart(metric, title, unit, answer.times, lines);
  }
}

const chartBoxes = (specs) => `<div class="charts">${specs.map(([metric]) =>
  `<div class="chart" data-chart="${metric}"></div>`).join("")}</div>`;

// ------------------------------------------------------------------ the list

function listPage(data) {
  const rows = data.topologies.map((t) => `
    <tr><td><a href="#/topology/${enc(t.name)}">${esc(t.name)}</a></td>
    <td class="status-${esc(t.status)}">${esc(t.status)}</td><td>${ago(t.uptime)}</td>
    <td>${t.tasks}</td><td>${t.workers}</td><td>${num(t.emitted)}</td><td>${t.restarts}</td></tr>`);
  return `<h2>Topologies</h2>
    <table id="topologies"><tr><th>name</th><th>status</th><th>uptime</th><th>tasks</th>
    <th>workers</th><th>emitted</th><th>restarts</th></tr>${rows.join("") ||
    '<tr><td colspan="7">none running: rayflow submit topology.yaml</td></tr>'}</table>`;
}

// ------------------------------------------------------------------ a topology

const TOPOLOGY_CHARTS = [
  ["executed", "Throughput in (tuples/s)", "/s"],
  ["emitted", "Throughput out (tuples/s)", "/s"],
  ["execute_latency_p99_ms", "Execute latency p99 (ms)", "ms"],
  ["complete_latency_p99_ms", "Complete latency p99 (ms)", "ms"],
  ["backpressure", "Back pressure (share of time blocked)", "%"],
  ["capacity", "Capacity (share of time busy)", "%"],
];

function tabs(name, t, current) {
  const tab = (href, label, id) => `<a id="${id}" href="${href}" class="${current === id ? "current" : ""}">${label}</a>`;
  return `<nav class="tabs">${tab(`#/topology/${enc(name)}`, "Overview", "tab-overview")}
    ${t.checkpoints ? tab(`#/topology/${enc(name)}/checkpoints`, "Checkpoints", "tab-checkpoints") : ""}
    ${tab(`#/topology/${enc(name)}/timeline`, "Timeline", "tab-timeline")}</nav>`;
}

function summaryLine(t) {
  return `up ${ago(t.uptime)} · ${t.tasks} tasks on ${t.workers} node(s) · reliability ${esc(t.reliability)}
    · ${t.restarts} restart(s)${t.restart && t.restart.failures ? ` · restart strategy ${esc(t.restart.strategy)}:
    ${t.restart.failures} failure(s) counted, ${t.restart.next_delay === null ? "the next one fails the job"
    : `next restart in ${t.restart.next_delay}s`} <span class="why">(${esc(t.restart.reason)})</span>` : ""}`;
}

function header(t) {
  return `<h2><a href="#/topology/${enc(t.name)}">${esc(t.name)}</a> <span class="status-${esc(t.status)}" id="status">${esc(t.status)}</span></h2>
    <p id="summary">${summaryLine(t)}</p>`;
}

function buttons(t) {
  return `<p><button id="activate">Activate</button><button id="deactivate">Deactivate</button>
    ${t.checkpoints ? '<button id="savepoint">Savepoint</button>' : ""}
    <button id="kill" class="danger">Kill</button></p><div id="message"></div>`;
}

function componentsTable(t) {
  const rows = t.components.map((c) => `
    <tr data-component="${esc(c.id)}"><td><a href="#/topology/${enc(t.name)}/component/${enc(c.id)}">${esc(c.id)}</a></td>
    <td>${c.kind}</td><td>${c.parallelism}</td>
    <td class="emitted">${num(c.emitted)}</td><td class="executed">${num(c.executed)}</td>
    <td>${num(c.acked)}</td><td>${num(c.failed)}</td>
    <td>${(c.execute_latency_ms || 0).toFixed(3)}</td><td>${(c.complete_latency_ms || 0).toFixed(1)}</td>
    <td>${pct(c.capacity)}</td><td>${pct(c.backpressure)}</td><td>${pct(c.inbox_fill)}</td></tr>`);
  return `<table id="components"><tr><th>component</th><th>kind</th><th>tasks</th><th>emitted</th>
    <th>executed</th><th>acked</th><th>failed</th><th>execute ms</th><th>complete ms</th>
    <th>capacity</th><th>backpressure</th><th>inbox</th></tr>${rows.join("")}</table>`;
}

function errorList(t, component) {
  const all = [...t.failures.map((f) => ({...f, where: `restart ${f.restart}`})), ...t.errors]
    .filter((e) => !component || e.component === component).slice(0, 20);
  return all.map((e) => `
    <details><summary class="error-line">${clock(e.time)}
    ${esc(e.component)}[${e.task}] ${esc(e.where || "")}: ${esc(e.error)}</summary>
    <pre class="traceback">${esc(e.traceback || "")}</pre></details>`).join("") || "<p>none</p>";
}

function timelineTable(t, limit) {
  const rows = (t.timeline || []).slice(0, limit).map((e) => `
    <tr class="event" data-kind="${esc(e.kind)}"><td>${new Date(e.time * 1000).toLocaleString()}</td>
    <td class="kind-${esc(e.kind)}">${esc(e.kind)}</td><td class="what">${esc(e.what)}</td></tr>`);
  return `<table id="timeline"><tr><th>when</th><th>what</th><th>details</th></tr>${rows.join("") ||
    '<tr><td colspan="3">nothing yet</td></tr>'}</table>`;
}

function overviewPage(t) {
  return `${header(t)}${buttons(t)}${tabs(t.name, t, "tab-overview")}
    <div id="graph">${rayflowGraph.svg(t.name, t.components, t.streams)}</div>
    ${chartBoxes(TOPOLOGY_CHARTS)}
    <h3>Components</h3><div id="components-part">${componentsTable(t)}</div>
    <h3>Latest events <a href="#/topology/${enc(t.name)}/timeline" class="more">all</a></h3>
    <div id="timeline-part">${timelineTable(t, 8)}</div>
    <h3>Recent errors</h3><div id="errors-part">${errorList(t)}</div>
    ${t.error ? `<pre class="traceback">${esc(t.error)}</pre>` : ""}`;
}

async function refreshOverview(t) {
  setPart("graph", rayflowGraph.svg(t.name, t.components, t.streams));
  setPart("components-part", componentsTable(t));
  setPart("timeline-part", timelineTable(t, 8));
  setPart("errors-part", errorList(t));
  const metrics = TOPOLOGY_CHARTS.map(([m]) => m);
  const answer = await history(t.name, "", metrics);
  // spouts execute nothing and sinks emit nothing: their flat lines would only crowd the charts
  const kind = Object.fromEntries(t.components.map((c) => [c.id, c.kind]));
  const emits = new Set(t.streams.map((s) => s.from));
  answer.series = answer.series.filter((s) => !(s.metric === "executed" && kind[s.component] === "spout") &&
    !(s.metric === "emitted" && !emits.has(s.component)));
  drawHistory(answer, TOPOLOGY_CHARTS, (s) => s.component);
}

// ------------------------------------------------------------------ a component

const COMPONENT_CHARTS = [
  ["executed", "Executed per task (tuples/s)", "/s"],
  ["emitted", "Emitted per task (tuples/s)", "/s"],
  ["execute_latency_p99_ms", "Execute latency p99 per task (ms)", "ms"],
  ["capacity", "Capacity per task", "%"],
  ["backpressure", "Back pressure per task", "%"],
  ["inbox_fill", "Inbox fill per task", "%"],
  ["watermark_lag_s", "Watermark lag per task (s)", "s"],
];

function componentPage(t, c) {
  return `${header(t)}${tabs(t.name, t, "")}
    <h3 id="component-title">${esc(c.id)} <span class="kind">${c.kind} × ${c.parallelism}
    ${c.chain && c.chain !== c.id ? `· chained after ${esc(c.chain)}` : ""}</span></h3>
    ${c.operators ? `<p class="operators">operators: ${esc(c.operators.join(" → "))}</p>` : ""}
    ${chartBoxes(COMPONENT_CHARTS)}
    <h3>Tasks</h3><div id="tasks-part"></div>
    <h3>Recent errors</h3><div id="errors-part"></div>
    <h3>Logs <span class="hint">(following live the tasks ticked above)</span></h3><div id="logs"></div>`;
}

// Whose logs the component page follows: the first LOGS_FOLLOWED tasks unless the user ticks
// others (each followed log is a request every refresh: hundreds would swamp the master).
const LOGS_FOLLOWED = 4;
let followed = null;  // task indexes; null: the default

function followedTasks(c) {
  return followed ?? new Set(c.task_stats.slice(0, LOGS_FOLLOWED).map((s) => s.task));
}

function tasksTable(c) {
  const follow = followedTasks(c);
  const rows = c.task_stats.map((s) => `
    <tr data-task="${s.task}"><td>${s.task}</td><td>${esc(s.state || "")}</td>
    <td class="executed">${num(s.counters?.executed)}</td><td class="emitted">${num(s.counters?.emitted)}</td>
    <td>${num(s.counters?.failed)}</td><td>${(s.execute_latency_ms || 0).toFixed(3)}</td>
    <td>${s.inbox ?? ""}/${s.inbox_capacity ?? ""}</td>
    <td>${s.watermark == null ? "-" : new Date(s.watermark).toISOString()}</td><td>${s.pid ?? ""}</td>
    <td><input type="checkbox" class="follow" data-task="${s.task}"${follow.has(s.task) ? " checked" : ""}></td></tr>`);
  return `<table id="tasks"><tr><th>task</th><th>state</th><th>executed</th><th>emitted</th>
    <th>failed</th><th>execute ms</th><th>inbox</th><th>watermark</th><th>pid</th><th>log</th></tr>${rows.join("")}</table>`;
}

function wireFollow(c) {
  const part = document.getElementById("tasks-part");
  part.onchange = (event) => {
    if (!event.target.classList.contains("follow")) return;
    const task = Number(event.target.dataset.task);
    followed = new Set(followedTasks(c));
    if (event.target.checked) followed.add(task); else followed.delete(task);
    const box = document.querySelector(`#logs [data-log="${task}"]`);
    if (box) box.hidden = !event.target.checked;
  };
}

const logOffsets = {};  // "topology/component/task" -> offsets of the next read
const LOG_KEPT = 200_000;  // characters of a task's log kept on the page

async function followLogs(name, c) {
  const box = document.getElementById("logs");
  if (!box) return;
  const follow = followedTasks(c);
  await Promise.all(c.task_stats.filter((s) => follow.has(s.task)).map(async (s) => {
    const key = `${name}/${c.id}/${s.task}`;
    let pre = box.querySelector(`pre.log[data-task="${s.task}"]`);
    if (!pre) {
      box.insertAdjacentHTML("beforeend", `<div data-log="${s.task}"><h4>${esc(c.id)}[${s.task}]</h4>
        <pre class="log" data-task="${s.task}"></pre></div>`);
      pre = box.querySelector(`pre.log[data-task="${s.task}"]`);
    }
    const at = logOffsets[key];
    const query = at ? `?${Object.entries(at).map(([k, v]) => `${k}=${v}`).join("&")}` : "";
    try {
      const read = await api(`/topologies/${enc(name)}/components/${enc(c.id)}/tasks/${s.task}/log${query}`);
      logOffsets[key] = read.offsets;
      if (read.text) {
        const follow = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
        pre.textContent = (pre.textContent + read.text).slice(-LOG_KEPT);
        if (follow) pre.scrollTop = pre.scrollHeight;
      }
    } catch (err) {
      pre.dataset.error = err.message;
    }
  }));
}

async function refreshComponent(t, c) {
  setPart("tasks-part", tasksTable(c));
  setPart("errors-part", errorList(t, c.id));
  const metrics = COMPONENT_CHARTS.map(([m]) => m);
  const answer = await history(t.name, `component=${enc(c.id)}&task=*&`, metrics);
  drawHistory(answer, COMPONENT_CHARTS, (s) => `${c.id}[${s.task}]`);
  await followLogs(t.name, c);
}

// ------------------------------------------------------------------ checkpoints

function checkpointsPage(t) {
  return `${header(t)}${buttons(t)}${tabs(t.name, t, "tab-checkpoints")}
    <div id="checkpoints-part"></div>
    <div class="charts"><div class="chart" data-chart="checkpoint-duration"></div>
    <div class="chart" data-chart="checkpoint-size"></div></div>
    <h3>History</h3><div id="checkpoint-history"></div>
    <h3>Restores</h3><div id="restores"></div>`;
}

function refreshCheckpoints(t) {
  const c = t.checkpoints;
  if (!c) return;
  const latest = c.latest ? `latest ${c.latest.id} at <code>${esc(c.latest.path)}</code>` : "none complete yet";
  const savepoints = c.history.filter((h) => h.savepoint && h.status === "COMPLETED");
  setPart("checkpoints-part", `<p id="checkpoint-summary">${c.completed} completed · ${c.failed} failed ·
    every ${c.interval_s}s · ${latest}${c.restored_from ? ` · restored from <code>${esc(c.restored_from)}</code>` : ""}</p>
    <p id="latest-savepoint">latest savepoint: ${savepoints.length ? `<code>${esc(savepoints[0].path)}</code>
    (${new Date(savepoints[0].time * 1000).toLocaleString()})` : "none taken (the Savepoint button writes one)"}</p>`);
  const rows = c.history.map((h) => `
    <tr class="checkpoint" data-status="${esc(h.status)}"><td>${h.id}</td>
    <td class="status-${esc(h.status)}">${esc(h.status)}${h.savepoint ? " (savepoint)" : ""}</td>
    <td>${clock(h.time)}</td><td>${num(h.duration_ms || 0)}</td>
    <td>${num(h.bytes || 0)}</td><td>${(h.align_ms || 0).toFixed(1)}</td><td>${(h.sync_ms || 0).toFixed(1)}</td>
    <td class="path">${esc(h.reason || h.path || "")}</td></tr>`);
  setPart("checkpoint-history", `<table id="checkpoints"><tr><th>id</th><th>status</th><th>started</th>
    <th>duration ms</th><th>bytes</th><th>align ms</th><th>sync ms</th><th>path / reason</th></tr>${rows.join("")}</table>`);
  const restores = (t.timeline || []).filter((e) => e.kind === "recovery" || e.kind === "restart");
  setPart("restores", restores.length ? `<table id="restore-list"><tr><th>when</th><th>what</th></tr>${restores.map((e) =>
    `<tr data-kind="${esc(e.kind)}"><td>${new Date(e.time * 1000).toLocaleString()}</td><td class="what">${esc(e.what)}</td></tr>`).join("")}</table>`
    : "<p>no failure since the start</p>");
  const done = [...c.history].reverse().filter((h) => h.status === "COMPLETED");
  const times = done.map((h) => h.time);
  drawChart("checkpoint-duration", "Checkpoint duration and alignment (ms)", "ms", times, [
    {label: "duration", values: done.map((h) => h.duration_ms ?? null)},
    {label: "alignment", values: done.map((h) => h.align_ms ?? null)},
    {label: "synchronous part", values: done.map((h) => h.sync_ms ?? null)},
  ]);
  drawChart("checkpoint-size", "Checkpoint size (bytes)", "B", times, [
    {label: "size", values: done.map((h) => h.bytes ?? null)},
  ]);
}

function timelinePage(t) {
  return `${header(t)}${tabs(t.name, t, "tab-timeline")}<div id="timeline-part"></div>`;
}

// ------------------------------------------------------------------ routing

function setPart(id, html) {
  const el = document.getElementById(id);
  if (!el || el.dataset.html === html) return;  // unchanged: keep what the user opened
  const open = [...el.querySelectorAll("details[open]")].map((d) => d.querySelector("summary").textContent);
  el.innerHTML = html;
  el.dataset.html = html;
  el.querySelectorAll("details").forEach((d) => { if (open.includes(d.querySelector("summary").textContent)) d.open = true; });
}

function route() {
  const m = location.hash.match(/^#\/topology\/([^/]+)(?:\/(checkpoints|timeline)|\/component\/([^/]+))?$/);
  if (!m) return {page: "list"};
  return {page: m[3] ? "component" : m[2] || "overview", name: decodeURIComponent(m[1]),
    component: m[3] && decodeURIComponent(m[3])};
}

let shown = "";  // the route the page's skeleton was drawn for
let notice = "";  // a command's answer, shown until the route changes

async function command(name, verb) {
  if (verb === "kill" && !confirm(`Kill topology ${name}?`)) return;
  try {
    const answer = await api(`/topologies/${enc(name)}/${verb}`, {method: "POST", body: "{}"});
    if (answer.savepoint) notice = `savepoint written to ${answer.savepoint}`;
    render();
  } catch (err) {
    document.getElementById("message").textContent = err.message;
  }
}

function wireButtons(name) {
  for (const verb of ["activate", "deactivate", "kill", "savepoint"]) {
    const button = document.getElementById(verb);
    if (button) button.onclick = () => command(name, verb);
  }
}

let rendering = false;

async function render() {
  if (rendering) return;  // a slow answer: the next tick tries again
  rendering = true;
  const r = route();
  const key = JSON.stringify(r);
  try {
    if (r.page === "list") {
      if (shown !== key) dropCharts();
      shown = key;
      main.innerHTML = listPage(await api("/topologies"));
    } else {
      const t = await api(`/topologies/${enc(r.name)}`);
      const c = r.page === "component" ? await api(`/topologies/${enc(r.name)}/components/${enc(r.component)}`) : null;
      if (shown !== key) {  // a new page: draw its skeleton once, then fill its parts in place
        dropCharts();
        notice = "";
        const pages = {overview: overviewPage, checkpoints: checkpointsPage, timeline: timelinePage};
        main.innerHTML = c ? componentPage(t, c) : pages[r.page](t);
        shown = key;
        followed = null;
        wireButtons(r.name);
        if (c) wireFollow(c);
      }
      const status = document.getElementById("status");
      status.textContent = t.status;
      status.className = `status-${t.status}`;
      setPart("summary", summaryLine(t));
      setMarkers(t);
      if (r.page === "overview") await refreshOverview(t);
      if (r.page === "checkpoints") refreshCheckpoints(t);
      if (r.page === "timeline") setPart("timeline-part", timelineTable(t, 200));
      if (c) await refreshComponent(t, c);
      const message = document.getElementById("message");
      if (notice && message) message.innerHTML = `<span class="notice">${esc(notice)}</span>`;
    }
  } catch (err) {
    dropCharts();
    shown = "";
    main.innerHTML = `<p class="error-line">${esc(err.message)}</p><p><a href="#/">all topologies</a></p>`;
  } finally {
    rendering = false;
  }
  document.getElementById("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
}

window.addEventListener("hashchange", render);
render();
setInterval(render, 2000);
