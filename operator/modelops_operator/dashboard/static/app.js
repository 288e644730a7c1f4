// The dashboard page: fetches the JSON API of this server and lays it out. What each view
// shows is decided server-side (dashboard/views.py, gates.py, predict.py); this file only
// draws it. Text always goes in as text nodes (never innerHTML): object names and messages
// come from the cluster and are not trusted.
"use strict";

const TOKEN = document.querySelector('meta[name="modelops-token"]').content;
const REFRESH_MS = 3000;
const SVG = "http://www.w3.org/2000/svg";
let refreshTimer = null;
let renderGeneration = 0;

// ---------------------------------------------------------------------------- helpers
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") el.className = value;
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs || {})) el.setAttribute(key, String(value));
  for (const child of children) el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return el;
}

function num(value) {
  if (value === null || value === undefined) return "–";
  const abs = Math.abs(value);
  return abs !== 0 && (abs < 0.001 || abs >= 1e5) ? value.toExponential(2) : String(+value.toPrecision(4));
}

function when(text) {
  if (!text) return "–";
  const date = new Date(text);
  return isNaN(date) ? text : date.toLocaleString();
}

// replaceChildren with lists flattened and empty parts left out.
function fill(el, ...children) {
  el.replaceChildren(...children.flat(2).filter((c) => c !== null && c !== undefined && c !== false));
}

function badge(text) { return h("span", { class: `badge ${text}` }, text || "–"); }

async function api(path, options) {
  const response = await fetch(path, { cache: "no-store", ...options });
  let body = null;
  try { body = await response.json(); } catch (e) { body = { error: `HTTP ${response.status}` }; }
  if (!response.ok) throw new Error(body && body.error ? body.error : `HTTP ${response.status}`);
  return body;
}

function showNotices(list) {
  const box = document.getElementById("notices");
  box.replaceChildren(...(list || []).map((text) => h("div", { class: "notice" }, text)));
}

function table(headers, rows) {
  return h("table", {}, h("thead", {}, h("tr", {}, headers.map((c) => h("th", {}, c)))),
    h("tbody", {}, rows));
}

// ---------------------------------------------------------------------------- gates
// The interval bar: positions are fractions of the axis, computed by gates.py.
function intervalSvg(gate) {
  const width = 260, height = 40, left = 8, right = 8, y = 20;
  const bar = gate.bar;
  const x = (f) => left + f * (width - left - right);
  const svg = s("svg", { class: "interval", width, height, viewBox: `0 0 ${width} ${height}`,
    role: "img", "aria-label": `${gate.name} interval` });
  svg.append(s("title", {}, bar
    ? `estimate ${num(gate.estimate)}, interval ${intervalText(gate)} (${gate.unit}; ${gate.better} is better)`
    : "not evaluated yet"));
  svg.append(s("line", { class: "axis", x1: x(0), x2: x(1), y1: y, y2: y }));
  if (!bar) {
    svg.append(s("text", { x: left, y: y + 14 }, "no evidence yet"));
    return svg;
  }
  for (const line of bar.lines) {
    // "no difference" is labelled above the axis, margins below, so close lines stay legible.
    const above = line.kind === "neutral";
    const anchor = line.at < 0.15 ? "start" : line.at > 0.85 ? "end" : "middle";
    svg.append(s("line", { class: line.kind, x1: x(line.at), x2: x(line.at), y1: above ? 10 : y - 6, y2: above ? y + 6 : height - 10 }));
    svg.append(s("text", { x: x(line.at), y: above ? 8 : height - 1, "text-anchor": anchor }, line.label));
  }
  svg.append(s("line", { class: `bar ${gate.verdict}`, x1: x(bar.lower), x2: x(bar.upper), y1: y, y2: y }));
  if (bar.openLower) svg.append(s("path", { class: `open ${gate.verdict}`, d: `M${x(0) - 6} ${y} l7 -5 v10 z` }));
  if (bar.openUpper) svg.append(s("path", { class: `open ${gate.verdict}`, d: `M${x(1) + 6} ${y} l-7 -5 v10 z` }));
  if (bar.estimate !== null) svg.append(s("circle", { class: "estimate", cx: x(bar.estimate), cy: y, r: 3.5 }));
  return svg;
}

// An open end (not bounded yet) shows as "…".
function intervalText(g) {
  return `${g.lower === null ? "(…" : "[" + num(g.lower)}, ${g.upper === null ? "…)" : num(g.upper) + "]"}`;
}

function gateRows(gates, withSamples) {
  return gates.map((g) => h("tr", { "data-gate": g.name },
    h("td", {}, h("b", {}, g.name), h("div", { class: "muted small" }, `${g.type}, ${g.test}`)),
    h("td", {}, badge(g.verdict)),
    h("td", { class: "num" }, num(g.estimate)),
    h("td", { class: "num mono" }, g.bar ? intervalText(g) : "–"),
    h("td", {}, intervalSvg(g)),
    withSamples ? h("td", { class: "num" }, `${g.samples.champion} / ${g.samples.challenger}`) : null,
    withSamples ? h("td", { class: "small muted" }, g.message) : null));
}

function gatesTable(gates, withSamples = true) {
  const headers = ["gate", "verdict", "estimate", "interval", "against no difference and margin"];
  if (withSamples) headers.push("samples (champion / challenger)", "detail");
  return table(headers, gateRows(gates, withSamples));
}

function trafficBar(percent) {
  return s("svg", { class: "traffic", viewBox: "0 0 100 10", preserveAspectRatio: "none" },
    s("rect", { x: 0, y: 0, width: Math.max(0, Math.min(100, percent)), height: 10 }));
}

function challengeCard(c) {
  const fact = (label, ...value) => h("div", {}, h("span", {}, label), ...value);
  return h("section", { class: `card ${c.live ? "live" : ""}`, "data-testid": "challenge",
      "data-name": `${c.namespace}/${c.name}`, "data-phase": c.phase },
    h("header", {},
      h("h3", {}, `${c.namespace}/${c.name}`),
      h("span", { class: "muted" }, "gates ", h("a", { href: `#/d/${c.namespace}/${c.target}` }, c.target)),
      h("span", { class: "phase" }, badge(c.phase)),
      c.paused ? badge("Paused") : null),
    h("div", { class: "facts" },
      fact("champion", h("b", {}, c.champion || "–")),
      fact("challenger", h("b", {}, c.challenger || "–")),
      fact("strategy", c.strategy),
      fact("challenger traffic", trafficBar(c.trafficPercent), ` ${c.trafficPercent}%`),
      fact("decision", c.decision || "–"),
      fact("α / interval / min samples", `${c.alpha} / ${c.interval} / ${c.minSamples}`),
      fact("last evaluation", when(c.lastEvaluationTime)),
      c.approvalRequired ? fact("approval", c.approval ? `by ${c.approval.approvedBy}` : "required") : null),
    c.message ? h("p", { class: "small" }, c.message) : null,
    gatesTable(c.gates));
}

// ---------------------------------------------------------------------------- views
function deploymentRows(items) {
  return items.map((d) => h("tr", { "data-deployment": `${d.namespace}/${d.name}` },
    h("td", {}, h("a", { href: `#/d/${d.namespace}/${d.name}` }, `${d.namespace}/${d.name}`)),
    h("td", {}, d.model, h("div", { class: "muted small" }, d.format)),
    h("td", {}, h("b", {}, d.champion.version || "–"),
      d.specVersion && d.specVersion !== d.champion.version ? h("div", { class: "muted small" }, `spec: ${d.specVersion}`) : null),
    h("td", {}, d.challenger || "–"),
    h("td", { class: "num" }, `${d.readyReplicas} / ${d.replicas}`),
    h("td", {}, badge(d.ready), h("div", { class: "muted small" }, d.readyReason)),
    h("td", { class: "mono small" }, d.endpoint || "–"),
    h("td", {}, d.challenges.map((c) => h("div", {}, `${c.name} `, badge(c.phase)))),
    h("td", {}, h("a", { href: `#/predict/${d.namespace}/${d.name}` }, "predict"), " · ",
      h("a", { href: `/cards/${d.namespace}/${d.name}`, target: "_blank", rel: "noopener" }, "card"))));
}

async function overview(view) {
  const [deployments, challenges] = await Promise.all([api("/api/deployments"), api("/api/challenges")]);
  showNotices([...deployments.notices, ...challenges.notices]);
  const live = challenges.items.filter((c) => c.live);
  fill(view,
    h("h1", {}, "Challenges live"),
    live.length ? live.map(challengeCard) : h("p", { class: "muted" }, "No challenge is running."),
    h("h1", {}, "Deployments"),
    deployments.items.length
      ? table(["deployment", "model", "champion", "challenger", "ready pods", "Ready", "endpoint", "gated by", ""],
        deploymentRows(deployments.items))
      : h("p", { class: "muted" }, "No ModelDeployment here."));
}

async function challengesView(view) {
  const challenges = await api("/api/challenges");
  showNotices(challenges.notices);
  fill(view, h("h1", {}, "ChampionChallengers"),
    challenges.items.length ? challenges.items.map(challengeCard) : h("p", { class: "muted" }, "None."));
}

function conditionsTable(conditions) {
  return table(["condition", "status", "reason", "message", "since"], conditions.map((c) => h("tr", {},
    h("td", {}, c.type), h("td", {}, badge(c.status)), h("td", {}, c.reason),
    h("td", { class: "small" }, c.message), h("td", { class: "small muted" }, when(c.since)))));
}

function monitoringSection(m) {
  const recording = m.recording;
  return [
    h("h2", {}, "Monitoring"),
    h("p", { class: "small muted" }, `recording: feedback ${recording.feedback ? "on" : "off"}, sample rate ${recording.sampleRate}`,
      recording.predictionBuckets.length ? `, prediction buckets ${recording.predictionBuckets.join(", ")}` : "",
      recording.profile ? `, training profile ${recording.profile}` : ""),
    m.conditions.length ? conditionsTable(m.conditions) : null,
    m.reported.length
      ? table(["field", "value"], m.reported.map((r) => h("tr", {}, h("td", { class: "mono" }, r.field), h("td", { class: "mono small" }, r.value))))
      : h("p", { class: "muted" }, "No monitor reports yet (status.monitoring is empty)."),
  ];
}

function historySection(history) {
  const parts = [h("h2", {}, "History")];
  parts.push(history.changes.length
    ? table(["time", "change", "from", "to", "why"], history.changes.map((c) => h("tr", {},
      h("td", { class: "small" }, when(c.time)), h("td", {}, badge(c.action)), h("td", {}, c.from || "–"),
      h("td", {}, c.to), h("td", { class: "small" }, c.message || c.reason))))
    : h("p", { class: "muted" }, "The live model has not changed yet."));
  for (const o of history.challenges) {
    parts.push(h("section", { class: "card" },
      h("header", {}, h("h3", {}, `${o.version} (champion was ${o.previous || "–"})`), badge(o.action),
        h("span", { class: "muted small" }, `${o.challenge}, ${when(o.time)}`)),
      h("p", { class: "small" }, o.reason),
      o.evidence.length ? gatesTable(o.evidence, false) : null));
  }
  parts.push(h("h3", {}, "Lineage records"));
  if (history.records === null) parts.push(h("p", { class: "muted" }, "Not available (see the notice above)."));
  else if (!history.records.length) parts.push(h("p", { class: "muted" }, "No lineage record yet."));
  else parts.push(table(["decided", "event", "version", "previous", "live after", "decided by", "approved by", "source", "why"],
    history.records.map((r) => h("tr", {}, h("td", { class: "small" }, when(r.decidedAt)), h("td", {}, badge(r.event)),
      h("td", {}, r.version), h("td", {}, r.previous || "–"), h("td", {}, r.outcome || "–"), h("td", {}, r.decidedBy || "–"),
      h("td", {}, r.approvedBy || "–"), h("td", { class: "small" }, r.source || "–"), h("td", { class: "small" }, r.reason)))));
  return parts;
}

async function deploymentView(view, namespace, name) {
  const detail = await api(`/api/deployments/${namespace}/${name}`);
  showNotices(detail.notices);
  const d = detail.deployment;
  fill(view,
    h("h1", {}, `${d.namespace}/${d.name} `, badge(d.ready)),
    h("p", {}, h("a", { href: `#/predict/${d.namespace}/${d.name}` }, "Send a prediction"), " · ",
      h("a", { href: `/cards/${d.namespace}/${d.name}`, target: "_blank", rel: "noopener" }, "Model card")),
    table(["model", "champion", "since", "digest", "challenger", "ready pods", "endpoint"], [deploymentSummaryRow(d)]),
    h("h2", {}, "Conditions"), conditionsTable(d.conditions),
    h("h2", {}, "Challenges"),
    detail.challenges.length ? detail.challenges.map(challengeCard) : h("p", { class: "muted" }, "No ChampionChallenger gates this deployment."),
    ...monitoringSection(detail.monitoring),
    ...historySection(detail.history));
}

function deploymentSummaryRow(d) {
  return h("tr", {}, h("td", {}, d.model), h("td", {}, h("b", {}, d.champion.version || "–")),
    h("td", { class: "small" }, when(d.champion.since)), h("td", { class: "mono small" }, d.champion.digest || "–"),
    h("td", {}, d.challenger || "–"), h("td", { class: "num" }, `${d.readyReplicas} / ${d.replicas}`),
    h("td", { class: "mono small" }, d.endpoint || "–"));
}

// ---------------------------------------------------------------------------- prediction
async function predictView(view, namespace, name) {
  const { model, form } = await api(`/api/metadata/${namespace}/${name}`);
  const heading = h("h1", {}, `Predict with ${namespace}/${name}`);
  const about = h("p", { class: "muted small" }, `model ${model}`, form.platform ? ` (${form.platform})` : "",
    form.versions.length ? `, versions ${form.versions.join(", ")}` : "",
    `; outputs ${form.outputs.join(", ") || "–"}. One row is sent through the API server's service proxy, as you.`);
  if (!form.supported) {
    fill(view, heading, about, h("p", { class: "error" }, `No form for this model: ${form.reason}.`));
    return;
  }
  const fields = form.inputs.flatMap((input) => input.fields.map((label, index) => h("label", {}, label,
    h("input", { name: `${input.name}#${index}`, "data-input": input.name, "data-index": index, required: true,
      inputmode: input.kind === "text" ? "text" : "decimal", autocomplete: "off",
      placeholder: input.kind === "list" ? "1.0, 2.5, …" : input.datatype }))));
  const result = h("div", { id: "prediction-result", hidden: true });
  const button = h("button", { type: "submit" }, "Predict");
  const formEl = h("form", { class: "predict", id: "predict-form" }, fields, h("div", { class: "actions" }, button));
  formEl.addEventListener("submit", async (event) => {
    event.preventDefault();
    const values = {};
    for (const input of form.inputs) values[input.name] = input.fields.map(() => "");
    for (const el of formEl.querySelectorAll("input[data-input]")) values[el.dataset.input][+el.dataset.index] = el.value;
    button.disabled = true;
    result.hidden = false;
    result.replaceChildren(h("p", { class: "muted" }, "Asking the model…"));
    try {
      const answer = await api(`/api/predict/${namespace}/${name}`, {
        method: "POST", headers: { "Content-Type": "application/json", "X-Modelops-Token": TOKEN },
        body: JSON.stringify({ values }) });
      result.replaceChildren(...predictionAnswer(answer));
    } catch (error) {
      result.replaceChildren(h("p", { class: "error" }, String(error.message || error)));
    } finally {
      button.disabled = false;
    }
  });
  fill(view, heading, about, formEl, result);
}

function predictionAnswer(answer) {
  return [
    h("p", {}, "Answered by version ", h("b", { class: "model-version" }, answer.modelVersion || "(not reported)"),
      ` of ${answer.modelName || "the model"} in `, h("b", { class: "latency" }, `${answer.latencyMs} ms`),
      h("span", { class: "muted small" }, ` (round trip through the API server; request ${answer.id})`)),
    table(["output", "datatype", "shape", "values"], answer.outputs.map((o) => h("tr", { "data-output": o.name },
      h("td", {}, o.name), h("td", {}, o.datatype), h("td", { class: "mono" }, JSON.stringify(o.shape)),
      h("td", { class: "mono" }, JSON.stringify(o.data) + (o.more ? ` … and ${o.more} more` : ""))))),
  ];
}

// ---------------------------------------------------------------------------- routing
const ROUTES = [
  [/^#?\/?$/, overview, "overview", true],
  [/^#\/challenges$/, challengesView, "challenges", true],
  [/^#\/d\/([a-z0-9.-]+)\/([a-z0-9.-]+)$/, deploymentView, "", true],
  [/^#\/predict\/([a-z0-9.-]+)\/([a-z0-9.-]+)$/, predictView, "", false],
];

async function render(isRefresh) {
  const generation = ++renderGeneration;
  clearTimeout(refreshTimer);
  const hash = location.hash || "#/";
  const [pattern, draw, nav, refreshes] = ROUTES.find(([p]) => p.test(hash)) || ROUTES[0];
  for (const link of document.querySelectorAll("header nav a")) link.classList.toggle("current", link.dataset.nav === nav);
  const view = document.getElementById("view");
  // Drawn aside and shown only if no newer render started meanwhile (a slow answer must not
  // overwrite the page the user moved to).
  const drawn = h("div");
  try {
    await draw(drawn, ...(hash.match(pattern) || []).slice(1));
    if (generation !== renderGeneration) return;
    fill(view, ...drawn.childNodes);
    document.getElementById("refreshed").textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (error) {
    if (generation !== renderGeneration) return;
    if (!isRefresh) fill(view, h("p", { class: "error" }, String(error.message || error)));
    else showNotices([`refresh failed: ${error.message || error}`]);
  }
  if (refreshes && generation === renderGeneration) refreshTimer = setTimeout(() => render(true), REFRESH_MS);
}

async function identity() {
  try {
    const me = await api("/api/whoami");
    document.getElementById("identity").textContent =
      `as ${me.user || "unknown user"} · ${me.context ? me.context + " · " : ""}${me.server} · ${me.namespace || "all namespaces"}`;
  } catch (error) { /* the views say what failed */ }
}

window.addEventListener("hashchange", () => render(false));
identity();
render(false);
