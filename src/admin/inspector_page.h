// The inspector, GET / on the admin listener: one page of plain HTML and JavaScript over the
// admin API (no build step, nothing fetched from elsewhere). Namespaces, their objects (paged),
// an object's alarm, sockets and keys and values (paged), its alarm run and deleteAll, and live
// charts of the request rate, the mean request latency and the mean commit batch, drawn from
// GET /metrics once a second. With a token set on the listener, the page asks for it in a form
// (the page itself is served without it: it holds no data) and keeps it in the tab's
// sessionStorage.
#pragma once

namespace durable::detail {

inline constexpr const char* kInspectorPage = R"HTML(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>durable inspector</title>
<style>
  [hidden] { display: none !important; }
  body { font: 14px/1.4 system-ui, sans-serif; margin: 0; color: #1d2330; background: #f5f6f8; }
  header { background: #1d2330; color: #fff; padding: 10px 18px; display: flex; gap: 16px; align-items: baseline; }
  header h1 { font-size: 17px; margin: 0; }
  header span { color: #aab2c5; font-size: 12px; }
  main { padding: 14px 18px; display: grid; gap: 14px; }
  section { background: #fff; border: 1px solid #dde1e8; border-radius: 6px; padding: 10px 14px; }
  h2 { font-size: 14px; margin: 0 0 8px; color: #44506a; }
  .charts { display: grid; grid-template-columns: repeat(3, 1fr); gap: 12px; }
  .chart { border: 1px solid #eef0f4; border-radius: 4px; padding: 6px; }
  .chart b { font-size: 12px; color: #44506a; }
  .chart .now { float: right; font-variant-numeric: tabular-nums; }
  canvas { width: 100%; height: 90px; display: block; }
  table { border-collapse: collapse; width: 100%; font-size: 13px; }
  th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid #eef0f4; vertical-align: top; }
  th { color: #6b7690; font-weight: 600; }
  td.mono, .mono { font-family: ui-monospace, monospace; font-size: 12px; word-break: break-all; }
  tr.pick { cursor: pointer; }
  tr.pick:hover { background: #f0f4ff; }
  tr.chosen { background: #e3ebff; }
  button { font: inherit; padding: 3px 10px; border: 1px solid #b9c2d6; background: #fff; border-radius: 4px; cursor: pointer; }
  button.danger { border-color: #d9a3a3; color: #a12b2b; }
  .row { display: flex; gap: 8px; align-items: center; margin: 6px 0; flex-wrap: wrap; }
  .muted { color: #8a93a8; }
  #error { color: #a12b2b; white-space: pre-wrap; }
  .two { display: grid; grid-template-columns: minmax(260px, 1fr) 2fr; gap: 14px; }
</style>
</head>
<body>
<header><h1>durable inspector</h1><span id="where"></span></header>
<main>
  <form id="login" class="row" hidden>
    <span>This admin listener needs its token:</span>
    <input id="token" type="password" autocomplete="off" size="40"><button>use it</button>
  </form>
  <div id="error"></div>
  <section>
    <h2>Live</h2>
    <div class="charts">
      <div class="chart"><b>requests / s</b><b class="now" id="now-rate"></b><canvas id="chart-rate"></canvas></div>
      <div class="chart"><b>mean latency, ms</b><b class="now" id="now-latency"></b><canvas id="chart-latency"></canvas></div>
      <div class="chart"><b>objects per commit</b><b class="now" id="now-batch"></b><canvas id="chart-batch"></canvas></div>
    </div>
  </section>
  <section>
    <h2>Namespaces <button id="refresh-namespaces">refresh</button></h2>
    <table id="namespaces"><thead><tr><th>binding</th><th>class</th><th>backend</th><th>objects</th></tr></thead><tbody></tbody></table>
  </section>
  <div class="two">
    <section>
      <h2 id="objects-title">Objects</h2>
      <table id="objects"><thead><tr><th>object</th><th>keys</th><th>bytes</th><th>live</th></tr></thead><tbody></tbody></table>
      <div class="row"><button id="more-objects" hidden>more</button></div>
    </section>
    <section>
      <h2 id="object-title">Object</h2>
      <div id="object-none" class="muted">Pick an object.</div>
      <div id="object" hidden>
        <table><tbody>
          <tr><th>id</th><td class="mono" id="object-id"></td></tr>
          <tr><th>name</th><td id="object-name"></td></tr>
          <tr><th>live</th><td id="object-live"></td></tr>
          <tr><th>size</th><td id="object-size"></td></tr>
          <tr><th>alarm</th><td id="object-alarm"></td></tr>
          <tr><th>sockets</th><td id="object-sockets"></td></tr>
        </tbody></table>
        <div class="row">
          <button id="run-alarm">run alarm now</button>
          <button id="delete-storage" class="danger">delete all storage</button>
          <button id="refresh-object">refresh</button>
        </div>
        <div class="row"><input id="prefix" placeholder="key prefix"><button id="filter">list</button></div>
        <table id="storage"><thead><tr><th>key</th><th>type</th><th>value</th></tr></thead><tbody></tbody></table>
        <div class="row"><button id="more-storage" hidden>more</button></div>
        <div id="sql-box" hidden>
          <h2>SQL</h2>
          <div class="row"><textarea id="sql-query" rows="3" cols="60" spellcheck="false">SELECT name, type FROM sqlite_schema</textarea><button id="sql-run">run (read-only)</button></div>
          <table id="sql-result"><thead><tr></tr></thead><tbody></tbody></table>
        </div>
      </div>
    </section>
  </div>
</main>
<script>
"use strict";
const state = { backends: {}, ns: null, objectsCursor: null, object: null, storageCursor: null, token: sessionStorage.getItem("durable-admin-token") };
const $ = (id) => document.getElementById(id);
document.getElementById("where").textContent = location.host;

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (state.token) headers.authorization = "Bearer " + state.token;
  const r = await fetch(path, Object.assign({}, options, { headers }));
  if (r.status === 401) {
    $("login").hidden = false;
    throw new Error(state.token ? "the token was refused" : "enter the admin token");
  }
  $("login").hidden = true;
  const text = await r.text();
  const body = text && (r.headers.get("content-type") || "").includes("json") ? JSON.parse(text) : text;
  if (!r.ok) throw new Error((body && body.error) || r.status + " " + r.statusText);
  return body;
}

function showError(e) { $("error").textContent = e ? String(e.message || e) : ""; }
function cell(tr, text, cls) { const td = document.createElement("td"); td.textContent = text; if (cls) td.className = cls; tr.appendChild(td); return td; }
function when(ms) { return ms == null ? "none" : new Date(ms).toISOString() + " (" + Math.round((ms - Date.now()) / 1000) + " s from now)"; }

async function loadNamespaces() {
  const list = await api("/admin/namespaces");
  const body = $("namespaces").tBodies[0];
  body.replaceChildren();
  for (const ns of list) {
    state.backends[ns.binding] = ns.backend;
    const tr = document.createElement("tr");
    tr.className = "pick" + (ns.binding === state.ns ? " chosen" : "");
    tr.dataset.binding = ns.binding;
    cell(tr, ns.binding); cell(tr, ns.class); cell(tr, ns.backend); cell(tr, String(ns.objects));
    tr.onclick = () => pickNamespace(ns.binding).catch(showError);
    body.appendChild(tr);
  }
}

async function pickNamespace(binding) {
  state.ns = binding; state.objectsCursor = null;
  for (const tr of $("namespaces").tBodies[0].rows) tr.classList.toggle("chosen", tr.dataset.binding === binding);
  $("objects-title").textContent = "Objects of " + binding;
  $("objects").tBodies[0].replaceChildren();
  await moreObjects();
}

async function moreObjects() {
  let path = "/admin/namespaces/" + encodeURIComponent(state.ns) + "/objects?limit=50";
  if (state.objectsCursor) path += "&cursor=" + state.objectsCursor;
  const page = await api(path);
  const body = $("objects").tBodies[0];
  for (const o of page.objects) {
    const tr = document.createElement("tr");
    tr.className = "pick";
    tr.dataset.id = o.id;
    cell(tr, o.name != null ? o.name : o.id.slice(0, 16) + "…", o.name != null ? "" : "mono");
    cell(tr, String(o.keys)); cell(tr, String(o.bytes)); cell(tr, o.live ? "yes" : "no");
    tr.onclick = () => pickObject(o.id).catch(showError);
    body.appendChild(tr);
  }
  state.objectsCursor = page.cursor;
  $("more-objects").hidden = !page.cursor;
}

async function pickObject(id) {
  state.object = id;
  for (const tr of $("objects").tBodies[0].rows) tr.classList.toggle("chosen", tr.dataset.id === id);
  await showObject();
}

function objectPath() { return "/admin/namespaces/" + encodeURIComponent(state.ns) + "/objects/" + state.object; }

async function showObject() {
  const o = await api(objectPath());
  $("object-none").hidden = true; $("object").hidden = false;
  $("object-title").textContent = "Object " + (o.name != null ? o.name : o.id.slice(0, 16) + "…");
  $("object-id").textContent = o.id;
  $("object-name").textContent = o.name != null ? o.name : "(not known: made by newUniqueId or idFromString)";
  $("object-live").textContent = o.live ? "in memory" : "not in memory";
  $("object-size").textContent = o.keys + " keys, " + o.bytes + " bytes";
  $("object-alarm").textContent = when(o.alarm);
  $("object-sockets").textContent = o.sockets.length ? o.sockets.map((s) => s.state + (s.tags.length ? " [" + s.tags.join(", ") + "]" : "")).join("; ") : "none";
  $("run-alarm").disabled = o.alarm == null;
  $("sql-box").hidden = state.backends[state.ns] !== "sqlite";
  $("sql-result").tHead.rows[0].replaceChildren();
  $("sql-result").tBodies[0].replaceChildren();
  state.storageCursor = null;
  $("storage").tBodies[0].replaceChildren();
  await moreStorage();
}

async function moreStorage() {
  let path = objectPath() + "/storage?limit=100";
  const prefix = $("prefix").value;
  if (prefix) path += "&prefix=" + encodeURIComponent(prefix);
  if (state.storageCursor) path += "&cursor=" + state.storageCursor;
  const page = await api(path);
  const body = $("storage").tBodies[0];
  for (const e of page.entries) {
    const tr = document.createElement("tr");
    tr.dataset.key = e.key != null ? e.key : e.keyBase64;
    cell(tr, e.key != null ? e.key : "base64:" + e.keyBase64, "mono");
    cell(tr, e.type);
    cell(tr, "base64" in e ? "base64:" + e.base64 : JSON.stringify(e.value), "mono");
    body.appendChild(tr);
  }
  state.storageCursor = page.cursor;
  $("more-storage").hidden = !page.cursor;
}

$("refresh-namespaces").onclick = () => loadNamespaces().catch(showError);
$("more-objects").onclick = () => moreObjects().catch(showError);
$("more-storage").onclick = () => moreStorage().catch(showError);

async function runSql() {
  showError(null);
  const r = await api(objectPath() + "/sql?query=" + encodeURIComponent($("sql-query").value));
  const head = $("sql-result").tHead.rows[0], body = $("sql-result").tBodies[0];
  head.replaceChildren(); body.replaceChildren();
  for (const c of r.columns) { const th = document.createElement("th"); th.textContent = c; head.appendChild(th); }
  for (const row of r.rows) {
    const tr = document.createElement("tr");
    for (const v of row) cell(tr, v !== null && typeof v === "object" ? "base64:" + v.base64 : String(v), "mono");
    body.appendChild(tr);
  }
  if (r.truncated) { const tr = document.createElement("tr"); cell(tr, "(the first 1,000 rows)", "muted"); body.appendChild(tr); }
}
$("sql-run").onclick = () => runSql().catch(showError);
$("refresh-object").onclick = () => showObject().catch(showError);
$("filter").onclick = () => { state.storageCursor = null; $("storage").tBodies[0].replaceChildren(); moreStorage().catch(showError); };
$("run-alarm").onclick = () => api(objectPath() + "/alarm/run", { method: "POST" }).then(() => setTimeout(() => showObject().catch(showError), 300)).catch(showError);
$("delete-storage").onclick = () => {
  if (!confirm("Delete every key and the alarm of this object?")) return;
  api(objectPath() + "/storage", { method: "DELETE" }).then(showObject).then(loadNamespaces).catch(showError);
};

// ---- charts from /metrics ----
const series = { rate: [], latency: [], batch: [] };
let last = null;

function parseMetrics(text) {
  const sums = {};
  for (const line of text.split("\n")) {
    if (!line || line[0] === "#") continue;
    const space = line.lastIndexOf(" ");
    const series = line.slice(0, space);
    const name = series.replace(/\{.*$/, "");
    sums[name] = (sums[name] || 0) + Number(line.slice(space + 1));
  }
  return sums;
}

function draw(id, points, format) {
  const canvas = $("chart-" + id);
  const w = canvas.width = canvas.clientWidth * devicePixelRatio;
  const h = canvas.height = canvas.clientHeight * devicePixelRatio;
  const g = canvas.getContext("2d");
  g.clearRect(0, 0, w, h);
  canvas.dataset.points = String(points.length);
  if (!points.length) return;
  canvas.dataset.max = String(Math.max(...points));
  const max = Math.max(1e-9, ...points) * 1.15;
  g.strokeStyle = "#3b6fe0"; g.lineWidth = 2 * devicePixelRatio; g.beginPath();
  points.forEach((v, i) => {
    const x = points.length === 1 ? w : (i / (points.length - 1)) * w;
    const y = h - (v / max) * h;
    if (i === 0) g.moveTo(x, y); else g.lineTo(x, y);
  });
  g.stroke();
  $("now-" + id).textContent = format(points[points.length - 1]);
}

async function tick() {
  try {
    const m = parseMetrics(await api("/metrics"));
    const now = performance.now();
    if (last) {
      const dt = (now - last.at) / 1000;
      const requests = (m.durable_http_request_duration_seconds_count || 0) - (last.m.durable_http_request_duration_seconds_count || 0);
      const seconds = (m.durable_http_request_duration_seconds_sum || 0) - (last.m.durable_http_request_duration_seconds_sum || 0);
      const commits = (m.durable_storage_commit_batch_size_count || 0) - (last.m.durable_storage_commit_batch_size_count || 0);
      const objects = (m.durable_storage_commit_batch_size_sum || 0) - (last.m.durable_storage_commit_batch_size_sum || 0);
      for (const [k, v] of [["rate", requests / dt], ["latency", requests ? (seconds / requests) * 1000 : 0], ["batch", commits ? objects / commits : 0]]) {
        series[k].push(v);
        if (series[k].length > 120) series[k].shift();
      }
      draw("rate", series.rate, (v) => v.toFixed(0));
      draw("latency", series.latency, (v) => v.toFixed(2));
      draw("batch", series.batch, (v) => v.toFixed(1));
    }
    last = { at: now, m };
    showError(null);
  } catch (e) {
    showError(e);
  }
}

$("login").onsubmit = (event) => {
  event.preventDefault();
  state.token = $("token").value;
  sessionStorage.setItem("durable-admin-token", state.token);
  $("login").hidden = true;
  showError(null);
  loadNamespaces().catch(showError);
};

loadNamespaces().catch(showError);
tick();
setInterval(tick, 1000);
</script>
</body>
</html>
)HTML";

}  // namespace durable::detail
