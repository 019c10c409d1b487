// The topology graph of the web UI, as SVG: window.rayflowGraph.svg(name, components, streams).
//
// A layered layout (Sugiyama's, simplified): columns by the longest path from a spout; an edge
// that spans several columns passes through a reserved slot in each column it crosses, so it
// never runs over a box; rows ordered by the mean row of each node's neighbours, a few sweeps
// each way, which untangles most crossings; a column is as wide as its widest box and the gap
// after it as wide as the longest label of the edges leaving it; labels that would overlap in a
// gap are pushed apart and slid along their edge. Pure: nothing here reads the page.
//
//   const html = rayflowGraph.svg("wordcount",
//     [{id: "spout", kind: "spout", parallelism: 1}, {id: "count", kind: "bolt", parallelism: 2}],
//     [{from: "spout", to: "count", grouping: "FIELDS", fields: ["word"], stream: "default"}]);
"use strict";

window.rayflowGraph = (() => {
  const TEXT_PX = 6.2;  // the width of a character of the 10 px edge labels, about
  const BOX_TEXT_PX = 7.2;  // of the 12 px box titles
  const ROW = 80, SLOT = 30, BOX_H = 48, LABEL_H = 13, TOP = 50, LEFT = 20;
  const SWEEPS = 4;
  const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
  const num = (n) => Number(n || 0).toLocaleString("en-US", {maximumFractionDigits: 1});

  const edgeLabel = (s) => s.grouping.toLowerCase() + (s.fields.length ? `(${s.fields.join(",")})` : "") +
    (s.stream !== "default" ? ` [${s.stream}]` : "") + (s.chained ? " · chained" : "");

  function depths(components, streams) {
    const depth = Object.fromEntries(components.map((c) => [c.id, 0]));
    // longest path; a cycle (never in a valid topology) stops after one pass per component
    for (let i = 0; i < components.length; i++) {
      let moved = false;
      streams.forEach((s) => {
        if (depth[s.to] < depth[s.from] + 1) { depth[s.to] = depth[s.from] + 1; moved = true; }
      });
      if (!moved) break;
    }
    return depth;
  }

  // Order each column's nodes by the mean position of their neighbours in the column before
  // (sweeping right) or after (sweeping left); nodes without neighbours there keep their place.
  function order(columns, neighbours) {
    const index = new Map();
    const reindex = (col) => col.forEach((n, i) => index.set(n, i));
    columns.forEach(reindex);
    const sweep = (from, to, step, side) => {
      for (let c = from; c !== to; c += step) {
        const keyed = columns[c].map((n, i) => {
          const near = neighbours[side].get(n) || [];
          return [near.length ? near.reduce((a, m) => a + index.get(m), 0) / near.length : i, i, n];
        });
        keyed.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
        columns[c] = keyed.map((k) => k[2]);
        reindex(columns[c]);
      }
    };
    for (let i = 0; i < SWEEPS; i++) {
      sweep(1, columns.length, 1, "before");
      sweep(columns.length - 2, -1, -1, "after");
    }
  }

  function layout(components, streams) {
    const depth = depths(components, streams);
    const count = Math.max(0, ...Object.values(depth)) + 1;
    const columns = Array.from({length: count}, () => []);
    const nodes = {};  // id (or virtual id) -> {w, col, real}
    components.forEach((c) => {
      const w = Math.max(140, 24 + BOX_TEXT_PX * `${c.id} ×${c.parallelism}`.length);
      nodes[c.id] = {w, col: depth[c.id], real: true};
      columns[depth[c.id]].push(c.id);
    });
    // each edge as the nodes it passes: its ends and a virtual node per column crossed
    const neighbours = {before: new Map(), after: new Map()};
    const link = (a, b) => {
      if (!neighbours.after.has(a)) neighbours.after.set(a, []);
      if (!neighbours.before.has(b)) neighbours.before.set(b, []);
      neighbours.after.get(a).push(b);
      neighbours.before.get(b).push(a);
    };
    const paths = streams.map((s, e) => {
      const path = [s.from];
      for (let col = depth[s.from] + 1; col < depth[s.to]; col++) {
        const v = `\u0000${e}:${col}`;
        nodes[v] = {w: 0, col, real: false};
        columns[col].push(v);
        path.push(v);
      }
      path.push(s.to);
      path.slice(1).forEach((n, i) => { if (depth[s.to] > depth[s.from]) link(path[i], n); });
      return path;
    });
    order(columns, neighbours);
    // x: columns as wide as their widest box, gaps as wide as the longest label leaving them
    const colWidth = columns.map((col) => Math.max(140, ...col.map((n) => nodes[n].w)));
    const gap = columns.map(() => 60);
    streams.forEach((s) => {
      const col = depth[s.from];
      gap[col] = Math.max(gap[col], TEXT_PX * edgeLabel(s).length + 24);
    });
    const left = [LEFT];
    for (let i = 1; i < count; i++) left.push(left[i - 1] + colWidth[i - 1] + gap[i - 1]);
    // y: boxes a row apart, virtual slots closer; each column centred on the tallest
    const heights = columns.map((col) => col.reduce((h, n) => h + (nodes[n].real ? ROW : SLOT), 0));
    const tallest = Math.max(...heights);
    columns.forEach((col, c) => {
      let top = TOP - ROW / 2 + (tallest - heights[c]) / 2;  // of the band a node is centred in
      col.forEach((n) => {
        const band = nodes[n].real ? ROW : SLOT;
        Object.assign(nodes[n], {x: left[c] + colWidth[c] / 2, y: top + band / 2});
        top += band;
      });
    });
    const colLeft = (c) => left[c], colRight = (c) => left[c] + colWidth[c];
    // an edge: out of its box to the column's edge, across each gap, through each slot
    const points = paths.map((path, e) => {
      const s = streams[e];
      const a = nodes[s.from], b = nodes[s.to];
      if (!(b.col > a.col)) return [[a.x + a.w / 2, a.y], [b.x - b.w / 2 - 2, b.y]];  // a cycle
      const p = [[a.x + a.w / 2, a.y], [colRight(a.col), a.y]];
      path.slice(1, -1).forEach((v) => { p.push([colLeft(nodes[v].col), nodes[v].y], [colRight(nodes[v].col), nodes[v].y]); });
      // the last few pixels level, so that the arrowhead points into the box
      p.push([Math.min(colLeft(b.col), b.x - b.w / 2) - 8, b.y], [b.x - b.w / 2 - 2, b.y]);
      return p;
    });
    const labels = placeLabels(streams, points, depth, colRight, gap);
    const width = Math.max(...components.map((c) => nodes[c.id].x + nodes[c.id].w / 2)) + 30;
    const height = Math.max(...Object.values(nodes).map((n) => n.y)) + BOX_H / 2 + 26;
    return {nodes, points, labels, width, height};
  }

  // Each label centred on the gap its edge first crosses; in a gap, labels sorted by height and
  // pushed apart where they would overlap, each then slid along its edge to the new height.
  function placeLabels(streams, points, depth, colRight, gap) {
    const labels = streams.map((s, e) => {
      const [[x1, y1], [x2, y2]] = [points[e][1], points[e][2] || points[e][1]];
      return {e, text: edgeLabel(s), col: depth[s.from], seg: [x1, y1, x2, y2], y: (y1 + y2) / 2 - 8};
    });
    const byGap = new Map();
    labels.forEach((l) => { if (!byGap.has(l.col)) byGap.set(l.col, []); byGap.get(l.col).push(l); });
    for (const group of byGap.values()) {
      group.sort((a, b) => a.y - b.y);
      for (let i = 1; i < group.length; i++) group[i].y = Math.max(group[i].y, group[i - 1].y + LABEL_H);
      for (const l of group) {
        const [x1, y1, x2, y2] = l.seg, w = TEXT_PX * l.text.length;
        const lo = colRight(l.col) + w / 2 + 6, hi = colRight(l.col) + gap[l.col] - w / 2 - 6;
        const t = y2 === y1 ? 0.5 : Math.min(1, Math.max(0, (l.y + 8 - y1) / (y2 - y1)));
        l.x = Math.min(hi, Math.max(lo, x1 + t * (x2 - x1)));
      }
    }
    return labels;
  }

  function heat(c) {
    const load = Math.max(c.capacity || 0, c.backpressure || 0);
    return load > 0.8 ? "#ff8182" : load > 0.5 ? "#f5d96b" : "#aceebb";
  }

  function svg(name, components, streams) {
    const {nodes, points, labels, width, height} = layout(components, streams);
    const edges = streams.map((s, e) => `<g class="edge${s.chained ? " chained" : ""}" data-from="${esc(s.from)}" data-to="${esc(s.to)}">
      <polyline points="${points[e].map(([x, y]) => `${x},${y}`).join(" ")}"></polyline>
      <text class="edge" x="${labels[e].x}" y="${labels[e].y}">${esc(labels[e].text)}</text></g>`);
    // A chain (tasks sharing one actor per index) is drawn as a box around its members.
    const chains = {};
    components.forEach((c) => { (chains[c.chain || c.id] ||= []).push(nodes[c.id]); });
    const boxes = Object.entries(chains).filter(([, ps]) => ps.length > 1).map(([head, ps]) => {
      const x0 = Math.min(...ps.map((p) => p.x - p.w / 2)) - 12, x1 = Math.max(...ps.map((p) => p.x + p.w / 2)) + 12;
      const y0 = Math.min(...ps.map((p) => p.y)) - 40, y1 = Math.max(...ps.map((p) => p.y)) + 34;
      return `<g class="chain" data-head="${esc(head)}"><rect x="${x0}" y="${y0}" width="${x1 - x0}"
        height="${y1 - y0}"></rect><text x="${x0 + 8}" y="${y0 + 9}">chain</text></g>`;
    });
    const boxesOf = components.map((c) => {
      const p = nodes[c.id];
      // A flow's fused component lists its operators (hover for them in order).
      const fused = (c.operators || []).length > 1 ? ` · ${c.operators.length} fused` : "";
      const title = c.operators ? `<title>${esc(c.operators.join(" → "))}</title>` : "";
      return `<a href="#/topology/${encodeURIComponent(name)}/component/${encodeURIComponent(c.id)}"><g class="node" data-id="${esc(c.id)}" data-kind="${c.kind}">${title}
        <rect x="${p.x - p.w / 2}" y="${p.y - BOX_H / 2}" width="${p.w}" height="${BOX_H}" fill="${heat(c)}"></rect>
        <text x="${p.x}" y="${p.y - 8}">${esc(c.id)} ×${c.parallelism}</text>
        <text x="${p.x}" y="${p.y + 10}">${num(c.kind === "spout" ? c.rates?.emitted : c.rates?.executed)}/s${fused}</text></g></a>`;
    });
    return `<svg class="graph" width="${width}" height="${height}">
      <defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7"
      orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#8c959f"/></marker></defs>
      ${boxes.join("")}${edges.join("")}${boxesOf.join("")}</svg>`;
  }

  return {svg, layout, edgeLabel};
})();
