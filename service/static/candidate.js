// A candidate: its evaluations, its gate decision rule by rule, the per-cohort slice
// summary and the per-example diffs (worst first, filtered and paged by the server).

import {enc, get} from "./api.js";
import {badge, fill, fmt, h, interval, link, signed, table, when} from "./dom.js";

const PAGE = 20;
const PAIRED_KINDS = ["min_improvement", "no_regression", "out_of_domain_delta"];

function power(rule) {
  if (!String(rule.verdict).startsWith("inconclusive")) return "";
  const parts = [];
  if (rule.needed_n) parts.push(`need ≈ ${rule.needed_n} examples`);
  if (typeof rule.min_detectable_effect === "number") parts.push(`detectable effect ${fmt(rule.min_detectable_effect)}`);
  return parts.join(" · ");
}

function rulesTable(decision) {
  const rows = decision.rules.map((r) => ({...r, __attrs: {"data-rule": r.rule_id, "data-verdict": r.verdict}}));
  return table(rows, [
    ["rule", (r) => h("code", {}, r.rule_id)],
    ["scope", (r) => r.scope],
    ["baseline", (r) => fmt(r.baseline_value)],
    ["candidate", (r) => fmt(r.candidate_value)],
    ["effect", (r) => r.kind === "perplexity_ratio" ? `×${fmt(r.ratio)}` : signed(r.effect)],
    ["interval", (r) => interval(r.ci_low, r.ci_high) + (r.confidence ? ` (${Math.round(r.confidence * 100)} %)` : "")],
    ["n", (r) => r.n ?? "—"],
    ["verdict", (r) => badge(r.verdict, r.verdict.startsWith("inconclusive") ? "inconclusive" : r.verdict)],
    ["message", (r) => h("span", {class: "reason"}, r.message)],
    ["power", (r) => h("span", {class: "power"}, power(r))],
  ], {id: "rules"});
}

function textBlock(title, text, cls = "") {
  return h("div", {class: `text-block ${cls}`}, h("div", {class: "text-title"}, title),
    h("pre", {class: "text"}, text === null || text === undefined || text === "" ? "—" : text));
}

function diffCard(item) {
  return h("article", {class: "diff", "data-example": item.example_id, "data-delta": item.delta, "data-cohort": item.cohort ?? ""},
    h("header", {},
      h("b", {}, item.example_id), ` · ${item.metric} · ${item.domain}-domain · cohort ${item.cohort ?? "—"} · `,
      h("span", {class: item.delta < 0 ? "worse" : item.delta > 0 ? "better" : ""}, `change ${signed(item.delta)}`)),
    textBlock("prompt", item.input),
    h("div", {class: "side-by-side"},
      textBlock(`baseline · ${item.metric} ${fmt(item.baseline_score)}`, item.baseline_output, "baseline-output"),
      textBlock(`candidate · ${item.metric} ${fmt(item.candidate_score)}`, item.candidate_output, "candidate-output")),
    h("div", {class: "side-by-side"}, textBlock("reference", item.reference), textBlock("context", item.context)),
  );
}

function slicesView(summary) {
  const rows = summary.slices.map((sl) => ({...sl, __attrs: {"data-cohort": sl.cohort ?? ""}}));
  return h("div", {id: "slices"},
    h("h3", {}, `Slice summary · ${summary.metric}${summary.domain ? ` · ${summary.domain}-domain` : ""}`),
    h("p", {class: "muted"}, `per cohort, worst first: mean change (negative = worse) with its ${Math.round(summary.confidence * 100)} % interval`),
    table(rows, [
      ["cohort", (r) => r.cohort ?? "—"],
      ["n", (r) => r.n],
      ["mean change", (r) => h("td", {class: r.mean_change < 0 ? "worse" : ""}, `${signed(r.mean_change)} ${interval(r.ci_low, r.ci_high)}`)],
      ["regressed", (r) => `${r.n_regressed} of ${r.n} (${Math.round(r.regressed_share * 100)} %)`],
    ], {id: "slice-table"}));
}

/** The diff page and the slice summary of a decision under the current filters (side by side). */
function loadDiffs(decisionId, state) {
  const params = {metric: state.metric, domain: state.domain, cohort: state.cohort, offset: state.offset, limit: PAGE};
  return Promise.all([
    get(`/v1/decisions/${decisionId}/diff`, params),
    get(`/v1/decisions/${decisionId}/slices`, {metric: state.metric, domain: state.domain}),
  ]);
}

function drawDiffs(box, decision, cohorts, state, [page, summary]) {
  for (const sl of summary.slices) if (sl.cohort && !cohorts.includes(sl.cohort)) cohorts.push(sl.cohort);
  const rerun = (change) => {
    Object.assign(state, change);
    loadDiffs(decision.id, state).then((loaded) => drawDiffs(box, decision, cohorts, state, loaded)).catch(state.fail);
  };
  const select = (id, value, options, key) => {
    const el = h("select", {id}, options.map(([v, text]) => h("option", {value: v, selected: v === (value ?? "")}, text)));
    el.addEventListener("change", () => rerun({[key]: el.value || null, offset: 0}));
    return el;
  };
  const metrics = [...new Set(decision.rules.filter((r) => PAIRED_KINDS.includes(r.kind) || r.kind === "threshold").map((r) => r.metric))];
  const last = Math.min(page.offset + page.items.length, page.total);
  const prev = h("button", {id: "prev-page", disabled: page.offset === 0}, "◀ previous");
  const next = h("button", {id: "next-page", disabled: last >= page.total}, "next ▶");
  prev.addEventListener("click", () => rerun({offset: Math.max(0, page.offset - PAGE)}));
  next.addEventListener("click", () => rerun({offset: page.offset + PAGE}));
  fill(box,
    h("div", {class: "filters"},
      h("label", {}, "metric ", select("filter-metric", state.metric, [["", "all metrics"], ...metrics.map((m) => [m, m])], "metric")),
      h("label", {}, " domain ", select("filter-domain", state.domain, [["", "all"], ["in", "in-domain"], ["out", "out-of-domain"]], "domain")),
      h("label", {}, " cohort ", select("filter-cohort", state.cohort, [["", "all cohorts"], ...cohorts.map((c) => [c, c])], "cohort"))),
    slicesView(summary),
    h("h3", {}, "Examples, most regressed first"),
    h("div", {class: "pager"}, prev, h("span", {id: "page-info"}, page.total ? ` ${page.offset + 1}–${last} of ${page.total} ` : " no examples "), next),
    h("div", {id: "diffs"}, page.items.map(diffCard)),
  );
  document.body.dataset.diffs = `${page.offset}:${page.total}:${state.cohort ?? ""}:${state.metric ?? ""}`;
}

export async function renderCandidate(root, ctx, id) {
  fill(root, h("p", {class: "muted"}, "loading candidate…"));
  // two round trips: the candidate beside its evaluations (each names its gate decision),
  // then its family beside the decision, the first diff page and the slice summary
  const asked = get(`/v1/candidates/${enc(id)}`);
  const listed = get("/v1/evaluations", {candidate_id: id, limit: 20});
  listed.catch(() => {});  // a bad id: the candidate's error is the one shown
  const candidate = await asked;
  const evals = await listed;
  const latest = evals.items[0];
  const decisionId = latest?.gate_decision_id;
  const state = {metric: null, domain: null, cohort: null, offset: 0, fail: ctx.fail};
  const [family, decision, diffs] = await Promise.all([
    get(`/v1/families/${enc(candidate.family)}`),
    decisionId ? get(`/v1/decisions/${decisionId}`) : null,
    decisionId ? loadDiffs(decisionId, state) : null,
  ]);
  const aliases = Object.entries(family.aliases || {}).filter(([, cid]) => cid === candidate.id).map(([name]) => name);
  const tags = Object.entries(candidate.tags || {}).map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`);
  const diffBox = h("div", {id: "diff-view"});
  fill(root,
    h("h2", {}, `candidate #${candidate.id}${candidate.name ? ` · ${candidate.name}` : ""} `, aliases.map((a) => badge(a, "alias"))),
    h("p", {},
      link(`#/family/${enc(candidate.family)}`, candidate.family),
      candidate.sweep ? [" / ", link(`#/family/${enc(candidate.family)}/sweep/${enc(candidate.sweep)}`, candidate.sweep)] : "",
      ` · ${candidate.kind} · lr ${fmt(candidate.learning_rate)} · registered ${when(candidate.created_at)}`,
      tags.length ? ` · tags ${tags.join(", ")}` : ""),
    h("h3", {}, "Evaluations"),
    table(evals.items, [
      ["id", (e) => e.id], ["dataset", (e) => `${e.dataset.name}@${e.dataset.version}`],
      ["status", (e) => badge(e.status, e.status)], ["progress", (e) => `${e.progress.done}/${e.progress.total}`],
      ["error", (e) => h("span", {class: "error-text"}, e.error || "")], ["created", (e) => when(e.created_at)],
    ], {id: "candidate-evaluations"}),
    decision
      ? h("section", {id: "decision", "data-verdict": decision.verdict},
        h("h3", {}, "Gate decision ", badge(decision.verdict, decision.verdict), ` · policy v${decision.policy_version} · decision #${decision.id}`),
        h("p", {class: "reason"}, decision.summary),
        rulesTable(decision), h("h3", {}, "Per-example diffs"), diffBox)
      : h("p", {class: "muted", id: "decision"}, latest ? `no gate decision yet (evaluation ${latest.status})` : "not evaluated"),
  );
  if (decision) drawDiffs(diffBox, decision, [], state, diffs);
}
