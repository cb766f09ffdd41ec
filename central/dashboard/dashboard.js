// geo-central dashboard: fetches the API, draws inline SVG and HTML bars, refreshes by itself.
// Every rendered number is also in a data-* attribute so headless tests can read them.
"use strict";
(function () {
  const params = new URLSearchParams(location.search);
  const minutes = Math.max(1, Math.min(1440, parseInt(params.get("minutes") || "60", 10) || 60));
  const refreshMs = Math.max(1000, parseInt(params.get("refresh") || "5000", 10) || 5000);
  const colors = ["#4a7bd0", "#d0634a", "#3fa45b", "#a24ad0", "#d0a84a", "#4ac0d0"];
  const SVG = "http://www.w3.org/2000/svg";

  function el(tag, attrs, text) {
    const node = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  async function get(path) {
    const response = await fetch(path, { cache: "no-store" });
    if (!response.ok) throw new Error(path + ": HTTP " + response.status);
    return response.json();
  }

  function drawRate(rows, from, to) {
    const svg = document.getElementById("rate");
    const legend = document.getElementById("rate-legend");
    svg.replaceChildren();
    legend.replaceChildren();
    const W = 1200, H = 220, pad = 24;
    const series = new Map();
    for (const r of rows) {
      if (!series.has(r.key)) series.set(r.key, new Map());
      series.get(r.key).set(r.t, r.count);
    }
    const first = Math.floor(from / 60000) * 60000;
    const buckets = [];
    for (let t = first; t < to; t += 60000) buckets.push(t);
    let max = 1;
    for (const s of series.values()) for (const v of s.values()) max = Math.max(max, v);
    svg.appendChild(el("svg:text", { x: 2, y: 12, "font-size": 11, fill: "#667" }, max + "/min"));
    svg.appendChild(el("svg:line", { x1: pad, y1: H - pad, x2: W, y2: H - pad, stroke: "#ccd" }));
    let i = 0;
    for (const [region, points] of [...series.entries()].sort()) {
      const color = colors[i++ % colors.length];
      const xy = buckets.map((t, j) => {
        const x = pad + (j * (W - pad)) / Math.max(1, buckets.length - 1);
        const y = H - pad - ((points.get(t) || 0) * (H - 2 * pad)) / max;
        return x.toFixed(1) + "," + y.toFixed(1);
      });
      let total = 0;
      for (const v of points.values()) total += v;
      svg.appendChild(el("svg:polyline", { points: xy.join(" "), fill: "none", stroke: color, "stroke-width": 2,
        "data-region": region, "data-total": total }));
      const item = el("span", { "data-region": region, "data-total": total });
      item.appendChild(el("b", { style: "color:" + color }, "● " + region));
      item.appendChild(document.createTextNode(" " + total));
      legend.appendChild(item);
    }
  }

  function drawBars(id, rows) {
    const list = document.getElementById(id);
    list.replaceChildren();
    const max = Math.max(1, ...rows.map((r) => r.count));
    for (const r of rows) {
      const li = el("li", { "data-key": r.key, "data-count": r.count });
      li.appendChild(el("span", {}, r.key || "(none)"));
      const track = el("span");
      track.appendChild(el("div", { class: "bar", style: "width:" + ((100 * r.count) / max).toFixed(1) + "%" }));
      li.appendChild(track);
      li.appendChild(el("span", { class: "n" }, String(r.count)));
      list.appendChild(li);
    }
  }

  function drawTable(id, rows, columns) {
    const body = document.querySelector("#" + id + " tbody");
    body.replaceChildren();
    for (const r of rows) {
      const tr = el("tr", { "data-region": r.region });
      for (const [key, fmt] of columns) {
        tr.setAttribute("data-" + key.replace(/_/g, "-"), r[key]);
        tr.appendChild(el("td", {}, fmt ? fmt(r[key]) : String(r[key])));
      }
      body.appendChild(tr);
    }
  }

  const seconds = (ms) => (ms / 1000).toFixed(1) + " s";
  const clock = (ms) => new Date(ms).toISOString().slice(11, 19) + "Z";

  async function refresh() {
    const to = Date.now(), from = to - minutes * 60000;
    const range = "from=" + from + "&to=" + to;
    try {
      const [counts, ev, os, br, lat, fresh] = await Promise.all([
        get("/api/counts?by=region&bucket=60&" + range),
        get("/api/top?by=event&limit=10&" + range),
        get("/api/top?by=os&limit=10&" + range),
        get("/api/top?by=browser&limit=10&" + range),
        get("/api/latency?" + range),
        get("/api/freshness"),
      ]);
      drawRate(counts.rows, from, to);
      drawBars("top-event", ev.rows);
      drawBars("top-os", os.rows);
      drawBars("top-browser", br.rows);
      drawTable("latency", lat.rows, [["region"], ["count"], ["p50_ms"], ["p90_ms"], ["p99_ms"], ["max_ms"]]);
      drawTable("freshness", fresh.rows, [["region"], ["behind_ms", seconds], ["last_heartbeat_ms", clock]]);
      const total = counts.rows.reduce((sum, r) => sum + r.count, 0);
      const totalNode = document.getElementById("total");
      totalNode.textContent = String(total);
      totalNode.dataset.total = String(total);
      document.getElementById("window").textContent = String(minutes);
      document.getElementById("updated").textContent = clock(Date.now());
      document.getElementById("error").textContent = "";
      document.body.dataset.from = String(from);
      document.body.dataset.to = String(to);
      document.body.dataset.state = "ready";
    } catch (err) {
      document.getElementById("error").textContent = String(err.message || err);
      document.body.dataset.state = document.body.dataset.state === "ready" ? "ready" : "error";
    }
    setTimeout(refresh, refreshMs);
  }

  refresh();
})();
