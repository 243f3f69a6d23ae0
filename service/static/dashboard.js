// The dashboard: navigation (families → sweeps → candidates, the production alias
// marked), search, evaluations in flight, a family's history, and the routes to the
// sweep and candidate views. Routes live in the URL hash, so every view has a link.

import {Unauthorized, enc, get, setToken, token} from "./api.js";
import {makeTooltip, timelineChart} from "./charts.js";
import {renderCandidate} from "./candidate.js";
import {badge, fill, fmt, h, link, table, when} from "./dom.js";
import {renderSweep} from "./sweep.js";

const $ = (id) => document.getElementById(id);
const POLL_MS = 2000;
const ctx = {tooltip: null, fail: showError, families: [], navReady: Promise.resolve()};
let pollTimer = null;

function showError(err) {
  if (err instanceof Unauthorized) return askToken(err.message);
  fill($("error"), err.message || String(err));
}

function askToken(message) {
  setToken(null);
  $("token-error").textContent = message || "";
  $("token-dialog").hidden = false;
  $("token-input").focus();
}

function productionOf(family) {
  return family.aliases?.production ?? null;
}

async function loadNavigation() {
  const families = await get("/v1/families");
  ctx.families = await Promise.all(families.map(async (family) => {
    const [sweeps, candidates] = await Promise.all([
      get(`/v1/sweeps/${enc(family.name)}`),
      get("/v1/candidates", {family: family.name, limit: 500}),
    ]);
    return {...family, sweeps, candidates};
  }));
  renderNavigation();
}

function candidateItem(family, c) {
  const prod = productionOf(family) === c.id;
  return h("li", {"data-candidate": c.id},
    link(`#/candidate/${c.id}`, `#${c.id} `, c.kind === "base" ? "base" : `lr ${fmt(c.learning_rate)}`, c.name ? ` · ${c.name}` : ""),
    prod ? [" ", badge("production", "alias")] : "");
}

function renderNavigation() {
  const needle = $("search").value.trim().toLowerCase();
  const matches = (c) => !needle || String(c.id) === needle || (c.name || "").toLowerCase().includes(needle)
    || Object.entries(c.tags || {}).some(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`.toLowerCase().includes(needle));
  fill($("nav-tree"), ctx.families.map((family) => {
    const bySweep = new Map();
    for (const c of family.candidates.filter(matches)) {
      const key = c.sweep ?? "";
      if (!bySweep.has(key)) bySweep.set(key, []);
      bySweep.get(key).push(c);
    }
    if (needle && !bySweep.size) return null;
    return h("div", {class: "nav-family", "data-family": family.name},
      h("div", {}, link(`#/family/${enc(family.name)}`, h("b", {}, family.name))),
      h("ul", {}, [...bySweep.entries()].map(([sweep, cands]) => h("li", {class: "nav-sweep"},
        sweep ? link(`#/family/${enc(family.name)}/sweep/${enc(sweep)}`, `sweep ${sweep}`) : h("span", {class: "muted"}, "no sweep"),
        h("ul", {}, cands.map((c) => candidateItem(family, c)))))));
  }));
}

async function renderInFlight(box) {
  const [running, queued, failed] = await Promise.all(
    ["running", "queued", "failed"].map((status) => get("/v1/evaluations", {status, limit: 20})));
  const active = [...running.items, ...queued.items];
  const progress = (e) => {
    const share = e.progress.total ? e.progress.done / e.progress.total : 0;
    return h("td", {}, h("progress", {max: 1, value: share}), ` ${e.progress.done}/${e.progress.total}`);
  };
  const cand = (e) => link(`#/candidate/${e.candidate.id}`, `#${e.candidate.id} ${e.candidate.family}`, e.candidate.learning_rate ? ` lr ${fmt(e.candidate.learning_rate)}` : "");
  fill(box,
    h("h3", {}, `Evaluations in flight (${running.total} running, ${queued.total} queued)`),
    table(active.map((e) => ({...e, __attrs: {"data-evaluation": e.id, "data-status": e.status}})), [
      ["id", (e) => e.id], ["candidate", cand], ["status", (e) => badge(e.status, e.status)], ["progress", progress],
      ["started", (e) => when(e.started_at)],
    ], {id: "in-flight"}),
    h("h3", {}, `Failed evaluations (${failed.total})`),
    table(failed.items.map((e) => ({...e, __attrs: {"data-evaluation": e.id}})), [
      ["id", (e) => e.id], ["candidate", cand], ["error", (e) => h("pre", {class: "error-text"}, e.error || "")],
      ["finished", (e) => when(e.finished_at)],
    ], {id: "failed"}));
  return active.length > 0;
}

function poll(box) {
  clearTimeout(pollTimer);
  const route = location.hash;
  renderInFlight(box).then((active) => {
    if (active && location.hash === route) pollTimer = setTimeout(() => poll(box), POLL_MS);
  }).catch(showError);
}

async function renderOverview(root) {
  await ctx.navReady;
  const inflight = h("section", {id: "inflight"});
  fill(root, h("h2", {}, "Families"),
    table(ctx.families, [
      ["family", (f) => link(`#/family/${enc(f.name)}`, f.name)], ["base model", (f) => f.base_model],
      ["policy", (f) => `v${f.policy_version}`], ["sweeps", (f) => f.sweeps.map((sw) => [link(`#/family/${enc(f.name)}/sweep/${enc(sw.sweep)}`, sw.sweep), " "])],
      ["candidates", (f) => f.candidates.length], ["production", (f) => productionOf(f) ? link(`#/candidate/${productionOf(f)}`, `#${productionOf(f)}`) : "—"],
    ]), inflight);
  poll(inflight);
}

async function renderFamily(root, name) {
  const [family, promotions, timeline, sweeps] = await Promise.all([
    get(`/v1/families/${enc(name)}`), get("/v1/promotions", {family: name, limit: 100}),
    get(`/v1/families/${enc(name)}/decisions`, {limit: 200}), get(`/v1/sweeps/${enc(name)}`),
  ]);
  const cand = (id) => id === null || id === undefined ? "—" : link(`#/candidate/${id}`, `#${id}`);
  const inflight = h("section", {id: "inflight"});
  fill(root,
    h("h2", {}, family.name), h("p", {class: "muted"}, `base ${family.base_model} · policy v${family.policy_version} · aliases `,
      Object.entries(family.aliases).map(([a, id]) => [badge(a, "alias"), " → ", cand(id), " "])),
    h("h3", {}, "Sweeps"),
    table(sweeps, [["sweep", (sw) => link(`#/family/${enc(name)}/sweep/${enc(sw.sweep)}`, sw.sweep)],
      ["candidates", (sw) => sw.n_candidates], ["rates", (sw) => sw.learning_rates.map((lr) => fmt(lr)).join(", ")]]),
    h("h3", {}, "History: promotions"),
    table(promotions.items.map((p) => ({...p, __attrs: {"data-promotion": p.id}})), [
      ["when", (p) => when(p.created_at)], ["who", (p) => p.actor], ["alias", (p) => p.alias],
      ["from", (p) => cand(p.from_candidate_id)], ["to", (p) => cand(p.to_candidate_id)],
      ["decision", (p) => p.decision_id ?? "—"], ["override", (p) => p.override ? badge("override", "fail") : "no"],
      ["reason", (p) => p.reason ?? "—"],
    ], {id: "promotions"}),
    h("h3", {}, `History: decisions (${timeline.total})`),
    timelineChart({entries: timeline.items, tooltip: ctx.tooltip, onclick: (e) => { location.hash = `#/candidate/${e.candidate_id}`; }}),
    table(timeline.items.map((e) => ({...e, __attrs: {"data-decision": e.decision_id}})), [
      ["when", (e) => when(e.created_at)], ["decision", (e) => e.decision_id], ["verdict", (e) => badge(e.verdict, e.verdict)],
      ["candidate", (e) => cand(e.candidate_id)], ["lr", (e) => fmt(e.learning_rate)], ["sweep", (e) => e.sweep ?? "—"],
      ["policy", (e) => `v${e.policy_version}`], ["summary", (e) => h("span", {class: "reason"}, e.summary)],
    ], {id: "timeline"}),
    inflight);
  poll(inflight);
}

async function route() {
  clearTimeout(pollTimer);
  fill($("error"));
  const root = $("view");
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  document.body.dataset.view = "loading";
  try {
    if (parts[0] === "family" && parts[2] === "sweep") {
      await renderSweep(root, ctx, parts[1], parts[3]);
      document.body.dataset.view = "sweep";
      window.__tunegatePaint = performance.now();
    } else if (parts[0] === "family" && parts[1]) {
      await renderFamily(root, parts[1]);
      document.body.dataset.view = "family";
    } else if (parts[0] === "candidate" && parts[1]) {
      await renderCandidate(root, ctx, parts[1]);
      document.body.dataset.view = "candidate";
      window.__tunegatePaint = performance.now();
    } else {
      await renderOverview(root);
      document.body.dataset.view = "overview";
    }
  } catch (err) {
    document.body.dataset.view = "error";
    showError(err);
  }
}

async function start() {
  // the navigation and the routed view load side by side; only the overview waits for both
  ctx.navReady = loadNavigation();
  ctx.navReady.catch(showError);
  await route();
}

function init() {
  ctx.tooltip = makeTooltip();
  $("token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    setToken($("token-input").value.trim());
    $("token-input").value = "";
    $("token-dialog").hidden = true;
    start();
  });
  $("forget-token").addEventListener("click", () => askToken("token forgotten"));
  $("search").addEventListener("input", renderNavigation);
  $("search").addEventListener("keydown", (e) => {
    const text = $("search").value.trim();
    if (e.key === "Enter" && /^\d+$/.test(text)) location.hash = `#/candidate/${text}`;
  });
  window.addEventListener("hashchange", route);
  if (token()) start();
  else askToken("");
}

init();
