// The rayflow web UI: the topology list and one page per topology, drawn from the REST API.
"use strict";

const main = document.getElementById("main");
const tokenInput = document.getElementById("token");
tokenInput.value = localStorage.getItem("rayflow-token") || "";
tokenInput.addEventListener("change", () => localStorage.setItem("rayflow-token", tokenInput.value));

const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
const num = (n) => Number(n || 0).toLocaleString("en-US", {maximumFractionDigits: 1});
const pct = (n) => `${Math.round(100 * (n || 0))}%`;
const ago = (s) => s < 120 ? `${Math.round(s)}s` : s < 7200 ? `${Math.round(s / 60)}m` : `${(s / 3600).toFixed(1)}h`;

async function api(path, options = {}) {
  const headers = {"Content-Type": "application/json"};
  if (tokenInput.value) headers.Authorization = `Bearer ${tokenInput.value}`;
  const response = await fetch(`/api/v1${path}`, {...options, headers});
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function listPage(data) {
  const rows = data.topologies.map((t) => `
    <tr><td><a href="#/topology/${encodeURIComponent(t.name)}">${esc(t.name)}</a></td>
    <td class="status-${esc(t.status)}">${esc(t.status)}</td><td>${ago(t.uptime)}</td>
    <td>${t.tasks}</td><td>${t.workers}</td><td>${num(t.emitted)}</td><td>${t.restarts}</td></tr>`);
  return `<h2>Topologies</h2>
    <table id="topologies"><tr><th>name</th><th>status</th><th>uptime</th><th>tasks</th>
    <th>workers</th><th>emitted</th><th>restarts</th></tr>${rows.join("") ||
    '<tr><td colspan="7">none running: rayflow submit topology.yaml</td></tr>'}</table>`;
}

function layout(components, streams) {
  // Columns by the longest path from a spout; rows in declaration order.
  const depth = {};
  components.forEach((c) => { depth[c.id] = 0; });
  for (let i = 0; i < components.length; i++) {
    streams.forEach((s) => { depth[s.to] = Math.max(depth[s.to], depth[s.from] + 1); });
  }
  const rows = {}, pos = {};
  components.forEach((c) => {
    const col = depth[c.id];
    rows[col] = (rows[col] || 0) + 1;
    pos[c.id] = {x: 90 + col * 190, y: 50 + (rows[col] - 1) * 80};
  });
  return pos;
}

function heat(c) {
  const load = Math.max(c.capacity || 0, c.backpressure || 0);
  return load > 0.8 ? "#ff8182" : load > 0.5 ? "#f5d96b" : "#aceebb";
}

function graph(components, streams) {
  const pos = layout(components, streams);
  const width = Math.max(...Object.values(pos).map((p) => p.x)) + 100;
  const height = Math.max(...Object.values(pos).map((p) => p.y)) + 50;
  const edges = streams.map((s) => {
    const a = pos[s.from], b = pos[s.to];
    const label = s.grouping.toLowerCase() + (s.fields.length ? `(${s.fields.join(",")})` : "") +
      (s.stream !== "default" ? ` [${s.stream}]` : "");
    return `<g class="edge${s.chained ? " chained" : ""}" data-from="${esc(s.from)}" data-to="${esc(s.to)}">
      <line x1="${a.x + 70}" y1="${a.y}" x2="${b.x - 72}" y2="${b.y}"></line>
      <text class="edge" x="${(a.x + b.x) / 2}" y="${(a.y + b.y) / 2 - 8}">${esc(label)}${s.chained ? " · chained" : ""}</text></g>`;
  });
  // A chain (tasks sharing one actor per index) is drawn as a box around its members.
  const chains = {};
  components.forEach((c) => { (chains[c.chain || c.id] ||= []).push(pos[c.id]); });
  const boxes = Object.entries(chains).filter(([, ps]) => ps.length > 1).map(([head, ps]) => {
    const x0 = Math.min(...ps.map((p) => p.x)) - 82, x1 = Math.max(...ps.map((p) => p.x)) + 82;
    const y0 = Math.min(...ps.map((p) => p.y)) - 40, y1 = Math.max(...ps.map((p) => p.y)) + 34;
    return `<g class="chain" data-head="${esc(head)}"><rect x="${x0}" y="${y0}" width="${x1 - x0}"
      height="${y1 - y0}"></rect><text x="${x0 + 8}" y="${y0 + 9}">chain</text></g>`;
  });
  const nodes = components.map((c) => {
    const p = pos[c.id];
    // A flow's fused component lists its operators (hover for them in order).
    const fused = (c.operators || []).length > 1 ? ` · ${c.operators.length} fused` : "";
    const title = c.operators ? `<title>${esc(c.operators.join(" → "))}</title>` : "";
    return `<g class="node" data-id="${esc(c.id)}" data-kind="${c.kind}">${title}
      <rect x="${p.x - 70}" y="${p.y - 24}" width="140" height="48" fill="${heat(c)}"></rect>
      <text x="${p.x}" y="${p.y - 8}">${esc(c.id)} ×${c.parallelism}</text>
      <text x="${p.x}" y="${p.y + 10}">${num(c.kind === "spout" ? c.rates?.emitted : c.rates?.executed)}/s${fused}</text></g>`;
  });
  return `<svg class="graph" width="${width}" height="${height}">
    <defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7"
    orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#8c959f"/></marker></defs>
    ${boxes.join("")}${edges.join("")}${nodes.join("")}</svg>`;
}

function checkpointsPart(c) {
  if (!c) return "";
  const rows = c.history.map((h) => `
    <tr class="checkpoint" data-status="${esc(h.status)}"><td>${h.id}</td>
    <td class="status-${esc(h.status)}">${esc(h.status)}${h.savepoint ? " (savepoint)" : ""}</td>
    <td>${new Date(h.time * 1000).toLocaleTimeString()}</td><td>${num(h.duration_ms || 0)}</td>
    <td>${num(h.bytes || 0)}</td><td>${(h.align_ms || 0).toFixed(1)}</td><td>${(h.sync_ms || 0).toFixed(1)}</td>
    <td class="path">${esc(h.reason || h.path || "")}</td></tr>`);
  const latest = c.latest ? `latest ${c.latest.id} at <code>${esc(c.latest.path)}</code>` : "none complete yet";
  return `<h3>Checkpoints</h3>
    <p id="checkpoint-summary">${c.completed} completed · ${c.failed} failed · every ${c.interval_s}s
    · ${latest}${c.restored_from ? ` · restored from <code>${esc(c.restored_from)}</code>` : ""}</p>
    <table id="checkpoints"><tr><th>id</th><th>status</th><th>started</th><th>duration ms</th>
    <th>bytes</th><th>align ms</th><th>sync ms</th><th>path / reason</th></tr>${rows.join("")}</table>`;
}

function topologyPage(t) {
  const rows = t.components.map((c) => `
    <tr data-component="${esc(c.id)}"><td>${esc(c.id)}</td><td>${c.kind}</td><td>${c.parallelism}</td>
    <td class="emitted">${num(c.emitted)}</td><td class="executed">${num(c.executed)}</td>
    <td>${num(c.acked)}</td><td>${num(c.failed)}</td>
    <td>${(c.execute_latency_ms || 0).toFixed(3)}</td><td>${(c.complete_latency_ms || 0).toFixed(1)}</td>
    <td>${pct(c.capacity)}</td><td>${pct(c.backpressure)}</td><td>${pct(c.inbox_fill)}</td></tr>`);
  const errors = [...t.failures.map((f) => ({...f, where: `restart ${f.restart}`})), ...t.errors]
    .slice(0, 20).map((e) => `
    <details><summary class="error-line">${new Date(e.time * 1000).toLocaleTimeString()}
    ${esc(e.component)}[${e.task}] ${esc(e.where || "")}: ${esc(e.error)}</summary>
    <pre class="traceback">${esc(e.traceback || "")}</pre></details>`);
  return `<h2>${esc(t.name)} <span class="status-${esc(t.status)}" id="status">${esc(t.status)}</span></h2>
    <p>up ${ago(t.uptime)} · ${t.tasks} tasks on ${t.workers} node(s) · reliability ${esc(t.reliability)}
    · ${t.restarts} restart(s)${t.restart && t.restart.failures ? ` · restart strategy ${esc(t.restart.strategy)}:
    ${t.restart.failures} failure(s) counted, ${t.restart.next_delay === null ? "the next one fails the job"
    : `next restart in ${t.restart.next_delay}s`} <span class="why">(${esc(t.restart.reason)})</span>` : ""}</p>
    <p><button id="activate">Activate</button><button id="deactivate">Deactivate</button>
    ${t.checkpoints ? '<button id="savepoint">Savepoint</button>' : ""}
    <button id="kill" class="danger">Kill</button></p><div id="message"></div>
    ${graph(t.components, t.streams)}
    <h3>Components</h3>
    <table id="components"><tr><th>component</th><th>kind</th><th>tasks</th><th>emitted</th>
    <th>executed</th><th>acked</th><th>failed</th><th>execute ms</th><th>complete ms</th>
    <th>capacity</th><th>backpressure</th><th>inbox</th></tr>${rows.join("")}</table>
    ${checkpointsPart(t.checkpoints)}
    <h3>Recent errors</h3>${errors.join("") || "<p>none</p>"}
    ${t.error ? `<pre class="traceback">${esc(t.error)}</pre>` : ""}`;
}

let notice = "";  // survives the re-render every 2 s

async function command(name, verb) {
  if (verb === "kill" && !confirm(`Kill topology ${name}?`)) return;
  try {
    const answer = await api(`/topologies/${encodeURIComponent(name)}/${verb}`, {method: "POST", body: "{}"});
    if (answer.savepoint) notice = `savepoint written to ${answer.savepoint}`;
    render();
  } catch (err) {
    document.getElementById("message").textContent = err.message;
  }
}

async function render() {
  const route = location.hash.match(/^#\/topology\/(.+)$/);
  try {
    if (route) {
      const name = decodeURIComponent(route[1]);
      const open = [...main.querySelectorAll("details[open]")].map((d) => d.textContent);
      main.innerHTML = topologyPage(await api(`/topologies/${encodeURIComponent(name)}`));
      main.querySelectorAll("details").forEach((d) => { if (open.includes(d.textContent)) d.open = true; });
      for (const verb of ["activate", "deactivate", "kill", "savepoint"]) {
        const button = document.getElementById(verb);
        if (button) button.onclick = () => command(name, verb);
      }
      if (notice) document.getElementById("message").innerHTML = `<span class="notice">${esc(notice)}</span>`;
    } else {
      main.innerHTML = listPage(await api("/topologies"));
    }
  } catch (err) {
    main.innerHTML = `<p class="error-line">${esc(err.message)}</p><p><a href="#/">all topologies</a></p>`;
  }
  document.getElementById("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
}

window.addEventListener("hashchange", render);
render();
setInterval(render, 2000);
