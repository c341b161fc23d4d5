// batten dashboard: the runs list and a run's page, drawn from the JSON API (/api) by short
// polling. No dependencies: everything the page needs ships in the batten package.
"use strict";
const $ = (sel, el = document) => el.querySelector(sel);
const esc = (v) => String(v ?? "").replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"})[c]);
const when = (t) => (t ? new Date(t * 1000).toISOString().replace("T", " ").slice(0, 19) : "");
const badge = (s) => `<span class="status s-${esc(s)}">${esc(s)}</span>`;
const json = (v) => esc(JSON.stringify(v, null, 2));
const POLL_MS = 1000;

async function api(path, body) {
  const opts = body === undefined ? {} : {method: "POST", headers: {"content-type": "application/json"}, body: JSON.stringify(body)};
  const r = await fetch(path, opts);
  const data = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(`${data.error || r.status}: ${data.message || ""}`);
  return data;
}

// -- runs list ---------------------------------------------------------------------------------
let cursor = null;
function runsPage(main) {
  const params = new URLSearchParams(location.search);
  main.innerHTML = `<form class="filters" id="filters">
    <select name="status"><option value="">any status</option>${["running", "completed", "failed", "waiting_approval", "paused", "cancelled", "compensated"].map((s) => `<option>${s}</option>`).join("")}</select>
    <input name="workflow" placeholder="workflow id"><input name="q" placeholder="run id contains">
    <input name="since" type="datetime-local" title="since"><input name="until" type="datetime-local" title="until">
    <button>filter</button></form>
    <table id="runs"><thead><tr><th>run</th><th>workflow</th><th>status</th><th>started</th><th>seconds</th><th>from</th></tr></thead><tbody></tbody></table>
    <p><button id="prev" disabled>newer</button><button id="next" disabled>older</button></p>`;
  const form = $("#filters");
  for (const [k, v] of params) if (form.elements[k]) form.elements[k].value = v;
  const stack = [];
  let current = params.get("cursor") || "";
  form.onsubmit = (e) => { e.preventDefault(); current = ""; stack.length = 0; load(); };
  $("#next").onclick = () => { stack.push(current); current = cursor; load(); };
  $("#prev").onclick = () => { current = stack.pop() || ""; load(); };
  async function load() {
    const q = new URLSearchParams();
    for (const el of form.elements) {
      if (!el.name || !el.value) continue;
      q.set(el.name, el.type === "datetime-local" ? String(new Date(el.value).getTime() / 1000) : el.value);
    }
    if (current) q.set("cursor", current);
    q.set("limit", "50");
    try {
      const data = await api(`/api/runs?${q}`);
      cursor = data.next_cursor;
      $("#next").disabled = !cursor;
      $("#prev").disabled = stack.length === 0;
      $("#runs tbody").innerHTML = data.runs.map((r) => `<tr data-run="${esc(r.run_id)}">
        <td><a href="/runs/${encodeURIComponent(r.run_id)}">${esc(r.run_id)}</a></td><td>${esc(r.workflow_id)}</td>
        <td>${badge(r.status)}</td><td>${when(r.created_at)}</td><td>${(r.updated_at - r.created_at).toFixed(1)}</td>
        <td>${r.forked_from ? `<a href="/runs/${encodeURIComponent(r.forked_from.run_id)}">${esc(r.forked_from.run_id.slice(0, 8))}</a> @ ${esc(r.forked_from.step)}` : ""}</td></tr>`).join("");
    } catch (err) { $("#runs tbody").innerHTML = `<tr><td class="error" colspan=6>${esc(err.message)}</td></tr>`; }
  }
  load();
  setInterval(load, POLL_MS * 2);
}

// -- a run -------------------------------------------------------------------------------------
let selected = null;
function runPage(main, runId) {
  main.innerHTML = `<div class="panel" id="summary"></div>
    <div class="panel"><h3>Graph</h3><div id="graph"></div><div id="children"></div></div>
    <div class="panel" id="actions"></div>
    <div class="panel"><h3>Step</h3><div id="step">click a step in the graph</div></div>
    <div class="panel"><h3>Timeline</h3><div id="timeline"></div></div>
    <div class="panel"><h3>Input</h3><pre id="input"></pre></div>
    <p id="message" class="error"></p>`;
  let last = null;
  const say = (text) => { $("#message").textContent = text; };
  async function act(what, body) {
    try { const out = await api(`/api/runs/${encodeURIComponent(runId)}/${what}`, body || {}); say(""); refresh(); return out; }
    catch (err) { say(err.message); return null; }
  }
  function drawActions(run) {
    const live = !["completed", "failed", "cancelled", "compensated"].includes(run.status);
    let html = "";
    for (const step of run.waiting) {
      html += `<div class="approval" data-step="${esc(step)}"><b>${esc(step)}</b> waits for approval
        <input class="comment" placeholder="comment"><button class="approve">approve</button><button class="reject">reject</button></div>`;
    }
    html += `<p>${live ? '<button id="pause">pause</button><button id="cancel">cancel</button>' : ""}
      ${run.status !== "completed" && run.status !== "cancelled" ? '<button id="resume">resume</button>' : ""}
      fork from <select id="fork-step">${run.order.map((s) => `<option>${esc(s)}</option>`).join("")}</select><button id="fork">fork</button></p>`;
    const box = $("#actions");
    if (box.dataset.key === html) return;  // keep a comment being typed
    box.dataset.key = html;
    box.innerHTML = html;
    for (const div of box.querySelectorAll(".approval")) {
      const step = div.dataset.step;
      $(".approve", div).onclick = () => act("approve", {step, comment: $(".comment", div).value});
      $(".reject", div).onclick = () => act("reject", {step, comment: $(".comment", div).value});
    }
    if ($("#pause")) $("#pause").onclick = () => act("pause");
    if ($("#cancel")) $("#cancel").onclick = () => act("cancel");
    if ($("#resume")) $("#resume").onclick = () => act("resume");
    const failed = run.steps.find((s) => s.status === "failed" && !s.step_id.includes("/"));
    if (failed) $("#fork-step").value = failed.step_id;
    $("#fork").onclick = async () => {
      const out = await act("fork", {from_step: $("#fork-step").value});
      if (out) location.href = `/runs/${encodeURIComponent(out.run_id)}`;
    };
  }
  function drawStep(run) {
    const s = run.steps.find((x) => x.step_id === selected);
    if (!s) return;
    const kids = run.steps.filter((x) => x.step_id.startsWith(selected + "/"));
    $("#step").innerHTML = `<h4>${esc(s.step_id)} ${badge(s.status)}</h4><table>
      <tr><th>attempts</th><td>${s.attempts}</td></tr>
      <tr><th>duration</th><td>${s.duration_ms == null ? "" : s.duration_ms.toFixed(1) + " ms"}</td></tr>
      <tr><th>idempotency key</th><td><code>${esc(s.idempotency_key)}</code></td></tr>
      <tr><th>input (outputs of its dependencies)</th><td><pre>${json(s.inputs)}</pre></td></tr>
      <tr><th>output</th><td><pre class="output">${json(s.output)}</pre></td></tr>
      ${s.error_type ? `<tr><th>error</th><td class="error"><b class="error-type">${esc(s.error_type)}</b><pre class="traceback">${esc(s.error)}</pre>${s.traceback ? `<details class="traceback-text" open><summary>traceback</summary><pre class="traceback">${esc(s.traceback)}</pre></details>` : ""}</td></tr>` : ""}
      ${s.approval ? `<tr><th>approval</th><td><pre>${json(s.approval)}</pre></td></tr>` : ""}
      ${kids.length ? `<tr><th>children</th><td>${kids.map((k) => `${esc(k.step_id)} ${badge(k.status)}`).join("<br>")}</td></tr>` : ""}
      </table>`;
  }
  function drawTimeline(run) {
    const t0 = run.created_at;
    const t1 = Math.max(run.updated_at, ...run.history.map((h) => h.at)) || t0 + 1;
    const scale = 600 / Math.max(t1 - t0, 0.001);
    const rows = [];
    for (const s of run.steps) {
      for (const t of s.timeline) {
        let bar = "", text = "";
        if (t.kind === "attempt") {
          const end = t.end || t1;
          bar = `<span class="bar ${t.outcome === "failed" ? "failed" : ""}" style="margin-left:${(t.start - t0) * scale}px;width:${(end - t.start) * scale}px"></span>`;
          text = `attempt ${t.attempt}: ${when(t.start)} → ${t.end ? when(t.end) : "…"} ${esc(t.outcome || "running")}`;
        } else if (t.kind === "retry") {
          text = `retry after attempt ${t.attempt} in ${t.delay_s ?? "?"} s (${esc(t.error)})`;
        } else if (t.kind === "wait") {
          bar = `<span class="bar wait" style="margin-left:${(t.at - t0) * scale}px;width:4px"></span>`;
          text = `waiting for approval since ${when(t.at)}`;
        } else if (t.kind === "decision") {
          text = `${t.approved ? "approved" : "rejected"} by ${esc(t.by)} at ${when(t.at)}${t.comment ? ": " + esc(t.comment) : ""}`;
        }
        rows.push(`<tr><td>${esc(s.step_id)}</td><td>${text}</td><td style="width:620px">${bar}</td></tr>`);
      }
    }
    $("#timeline").innerHTML = `<table>${rows.join("")}</table>`;
  }
  async function refresh() {
    let run;
    try { run = await api(`/api/runs/${encodeURIComponent(runId)}`); } catch (err) { say(err.message); return; }
    const key = JSON.stringify([run.status, run.updated_at, run.history.length, run.owner, run.heartbeat_at]);
    const owner = run.owner ? `${esc(run.owner)}, heartbeat ${when(run.heartbeat_at)}${run.lease_expires_at && run.lease_expires_at < Date.now() / 1000 ? " (interrupted: lease expired)" : " (live)"}` : "—";
    $("#summary").innerHTML = `<h2>${esc(run.name)} <small>${esc(run.workflow_id)} ${esc(run.version)}</small> <span id="run-status">${badge(run.status)}</span></h2>
      <p>run <code>${esc(run.run_id)}</code> · started ${when(run.created_at)} · updated ${when(run.updated_at)} · owner: ${owner}
      ${run.forked_from ? ` · forked from <a href="/runs/${encodeURIComponent(run.forked_from.run_id)}">${esc(run.forked_from.run_id)}</a> at step ${esc(run.forked_from.step)}` : ""}
      ${run.trace_url ? ` · <a href="${esc(run.trace_url)}" target="_blank" rel="noopener">trace ${esc(run.trace_id)}</a>` : run.trace_id ? ` · trace ${esc(run.trace_id)}` : ""}</p>
      ${run.error ? `<p class="error">${esc(run.error)}</p>` : ""}${run.background_error ? `<p class="error">continuing it failed: ${esc(run.background_error)}</p>` : ""}
      ${run.status === "completed" ? `<details><summary>result</summary><pre>${json(run.result)}</pre></details>` : ""}`;
    drawActions(run);
    if (key !== last) {
      last = key;
      $("#graph").innerHTML = run.graph_svg;
      for (const g of document.querySelectorAll("#graph .node")) {
        if (g.dataset.step === selected) g.classList.add("selected");
        g.onclick = () => { selected = g.dataset.step; refreshStep(run); };
      }
      drawTimeline(run);
      $("#input").textContent = JSON.stringify(run.input, null, 2);
    }
    drawStep(run);
  }
  function refreshStep(run) {
    for (const g of document.querySelectorAll("#graph .node")) g.classList.toggle("selected", g.dataset.step === selected);
    drawStep(run);
  }
  refresh();
  setInterval(refresh, POLL_MS);
}

const main = document.getElementById("main");
if (document.body.dataset.page === "run") runPage(main, document.body.dataset.runId);
else runsPage(main);
