// The sweep view: every key metric against the learning rate (log axis) with the paired
// intervals as error bars, one chart per rule of the family's policy, the overlaid
// training-loss curves and the sweep table.

import {enc, get} from "./api.js";
import {labelColour, lossChart, sweepChart, verdictShape} from "./charts.js";
import {badge, fill, fmt, h, interval, link, signed, table} from "./dom.js";

const KEY_METRICS = [
  {id: "in_domain_lift", title: (r) => `in-domain lift (${r.lift_metric || "target metric"})`, y: "in_domain_lift",
    low: "lift_ci_low", high: "lift_ci_high", refs: [{y: 0, text: "no change"}]},
  {id: "ood_delta", title: () => "out-of-domain delta", y: "ood_delta", low: "ood_ci_low", high: "ood_ci_high",
    refs: [{y: 0, text: "no change"}]},
  {id: "hallucination_change", title: () => "hallucination change (share, + = more)", y: "hallucination_change",
    refs: [{y: 0, text: "no change"}], fromRule: hallucinationInterval},
  {id: "perplexity_ratio", title: () => "perplexity ratio (candidate / baseline)", y: "perplexity_ratio",
    refs: [{y: 1, text: "×1"}]},
];

/** The raw-change interval of hallucination from a whole-set rule (the rule's effect is
 * oriented, negative = more hallucination, so the raw interval is its negation). */
function hallucinationInterval(decision) {
  const rule = (decision?.rules || []).find((r) => r.metric === "hallucination" && r.domain === "all" && !r.cohort
    && typeof r.ci_low === "number");
  return rule ? [-rule.ci_high, -rule.ci_low] : [null, null];
}

/** The y value, interval and reference line a rule is judged by. */
function ruleSeries(rule) {
  if (rule.kind === "perplexity_ratio") {
    return {y: rule.ratio, low: null, high: null, refs: rule.tolerance ? [{y: rule.tolerance, text: `max ×${fmt(rule.tolerance)}`}] : []};
  }
  if (rule.kind === "threshold") {
    return {y: rule.candidate_value, low: rule.ci_low, high: rule.ci_high,
      refs: typeof rule.tolerance === "number" ? [{y: rule.tolerance, text: "threshold"}] : []};
  }
  const refs = [{y: 0, text: "no change"}];
  if (typeof rule.tolerance === "number" && rule.tolerance !== 0) {
    refs.push(rule.kind === "min_improvement" ? {y: rule.tolerance, text: "required lift"} : {y: -rule.tolerance, text: "tolerance"});
  }
  return {y: rule.effect, low: rule.ci_low, high: rule.ci_high, refs};
}

function tip(row, name, y, low, high) {
  return [
    `candidate ${row.candidate_id} · lr ${fmt(row.learning_rate)}`,
    `${name}: ${signed(y)} ${interval(low, high)}`,
    `label ${row.label ?? "—"} · verdict ${row.verdict ?? "—"}`,
    row.label_reason || "",
  ].filter(Boolean);
}

export async function renderSweep(root, ctx, family, sweep) {
  fill(root, h("p", {class: "muted"}, "loading sweep…"));
  const view = await get(`/v1/sweeps/${enc(family)}/${enc(sweep)}`);
  const decided = view.rows.filter((r) => r.decision_id);
  // each row carries its decision's rules: one request draws the whole sweep
  const decisions = new Map(decided.map((r) => [r.candidate_id, {rules: r.rules || []}]));
  const labels = new Map(), shapes = new Map();
  const style = (row) => ({colour: labelColour(row.label, labels), shape: verdictShape(row.verdict, shapes)});
  const open = (row) => () => { location.hash = `#/candidate/${row.candidate_id}`; };

  const charts = h("div", {class: "charts", id: "sweep-charts"});
  for (const metric of KEY_METRICS) {
    const points = decided.map((row) => {
      let [low, high] = [row[metric.low], row[metric.high]];
      if (metric.fromRule) [low, high] = metric.fromRule(decisions.get(row.candidate_id));
      const y = row[metric.y];
      return {lr: row.learning_rate, y, low, high, id: row.candidate_id, label: row.label, verdict: row.verdict,
        ...style(row), tip: tip(row, metric.id, y, low, high), onclick: open(row)};
    });
    if (!points.some((p) => typeof p.y === "number")) continue;
    charts.append(sweepChart({title: metric.title(decided[0] || {}), id: metric.id, yLabel: metric.id, points,
      refs: metric.refs, mark: view.recommended_rate, tooltip: ctx.tooltip}));
  }
  const ruleIds = [], unmeasured = [];
  for (const decision of decisions.values()) for (const r of decision.rules) if (!ruleIds.includes(r.rule_id)) ruleIds.push(r.rule_id);
  for (const ruleId of ruleIds) {
    let refs = [];
    const points = decided.map((row) => {
      const rule = decisions.get(row.candidate_id).rules.find((r) => r.rule_id === ruleId);
      if (!rule) return {lr: row.learning_rate, y: null};
      const series = ruleSeries(rule);
      refs = series.refs;
      const lines = tip(row, ruleId, series.y, series.low, series.high);
      lines.splice(2, 0, `rule ${rule.verdict} · n ${rule.n ?? "—"}`);
      return {lr: row.learning_rate, ...series, id: row.candidate_id, label: row.label, verdict: row.verdict,
        ...style(row), tip: lines, onclick: open(row)};
    });
    if (!points.some((p) => typeof p.y === "number")) {  // e.g. a rule skipped for want of data
      unmeasured.push(ruleId);
      continue;
    }
    charts.append(sweepChart({title: `rule ${ruleId}`, id: `rule:${ruleId}`, yLabel: "effect", points, refs,
      mark: view.recommended_rate, tooltip: ctx.tooltip}));
  }
  if (unmeasured.length) charts.append(h("p", {class: "muted", id: "unmeasured"}, `no values for rule(s): ${unmeasured.join(", ")}`));

  const legend = h("div", {class: "legend", id: "legend"},
    [...new Set(decided.map((r) => r.label))].map((label) => h("span", {class: "key"},
      h("span", {class: "swatch", style: {background: labelColour(label, labels)}}), label ?? "—")),
    " · shape: ", [...new Set(decided.map((r) => r.verdict))].map((v) => h("span", {class: "key"}, `${verdictShape(v, shapes) === "circle" ? "●" : verdictShape(v, shapes) === "cross" ? "✕" : "◆"} ${v}`)),
  );

  const logToggle = h("input", {type: "checkbox", id: "log-loss"});
  const lossBox = h("div", {id: "loss-chart"});
  const rankColour = (i, n) => `hsl(${220 - 200 * (n > 1 ? i / (n - 1) : 0)} 70% 42%)`;
  const withLogs = view.rows.filter((r) => (r.training_log || []).length);
  const drawLoss = () => fill(lossBox, lossChart({
    title: "training loss of the sweep", logY: logToggle.checked, tooltip: ctx.tooltip,
    series: withLogs.map((r, i) => ({name: `lr ${fmt(r.learning_rate)} (candidate ${r.candidate_id})`, colour: rankColour(i, withLogs.length),
      points: r.training_log.map((p) => ({x: p.step, y: p.loss === null ? NaN : p.loss}))})),
  }), h("div", {class: "legend"}, withLogs.map((r, i) => h("span", {class: "key"},
    h("span", {class: "swatch", style: {background: rankColour(i, withLogs.length)}}), `lr ${fmt(r.learning_rate)}`))));
  logToggle.addEventListener("change", drawLoss);
  drawLoss();

  const rows = view.rows.map((r) => ({...r, __attrs: {"data-candidate": r.candidate_id}}));
  fill(root,
    h("h2", {}, `${family} / ${sweep}`),
    h("p", {id: "recommendation"}, "recommended rate: ", h("b", {}, view.recommended_rate === null ? "none" : fmt(view.recommended_rate)),
      " — ", view.recommendation_reason),
    legend, charts,
    h("h3", {}, "Training loss"), h("label", {}, logToggle, " log-scaled loss"), lossBox,
    h("h3", {}, "Sweep table"),
    table(rows, [
      ["lr", (r) => fmt(r.learning_rate)],
      ["candidate", (r) => link(`#/candidate/${r.candidate_id}`, `#${r.candidate_id}`)],
      ["status", (r) => r.progress && r.status !== "succeeded" ? `${r.status} ${r.progress.done}/${r.progress.total}` : r.status],
      ["verdict", (r) => r.verdict ? badge(r.verdict, r.verdict) : "—"],
      ["label", (r) => r.label ? h("span", {title: r.label_reason || ""}, badge(r.label, "label")) : "—"],
      ["in-domain lift", (r) => `${signed(r.in_domain_lift)} ${interval(r.lift_ci_low, r.lift_ci_high)}`],
      ["OOD delta", (r) => `${signed(r.ood_delta)} ${interval(r.ood_ci_low, r.ood_ci_high)}`],
      ["hallucination", (r) => signed(r.hallucination_change)],
      ["ppl ratio", (r) => fmt(r.perplexity_ratio)],
      ["training log", (r) => r.diagnosis?.label ?? r.training_diagnosis ?? "—"],
      ["why", (r) => h("span", {class: "reason"}, r.label_reason || "")],
    ], {id: "sweep-table"}),
  );
  return view;
}
