// Small SVG charts drawn in the browser: a metric against the learning rate on a log
// axis with error bars, overlaid training-loss curves, a decision timeline strip.
// Hand-written instead of a vendored library: three chart kinds, a log axis, error
// bars and per-point shapes fit in this file, nothing is fetched from a CDN, and every
// label goes through textContent.

import {fmt, h, s} from "./dom.js";

const KNOWN_LABEL_COLOURS = {good: "#1a7f37", underfit: "#8c959f", forgetting: "#d4760a", collapse: "#cf222e"};
const PALETTE = ["#0969da", "#8250df", "#bf3989", "#1b7c83", "#953800", "#4d2d00", "#6639ba", "#116329"];
const SHAPES = {pass: "circle", fail: "cross"};
const EXTRA_SHAPES = ["square", "diamond", "triangle"];

/** A stable colour per label: the four known labels fixed, any new label from a palette. */
export function labelColour(label, seen) {
  if (label === null || label === undefined) return "#afb8c1";
  if (KNOWN_LABEL_COLOURS[label]) return KNOWN_LABEL_COLOURS[label];
  if (!seen.has(label)) seen.set(label, PALETTE[seen.size % PALETTE.length]);
  return seen.get(label);
}

/** A shape per verdict: pass a circle, fail a cross, anything else from a list. */
export function verdictShape(verdict, seen) {
  if (SHAPES[verdict]) return SHAPES[verdict];
  const key = String(verdict ?? "none");
  if (!seen.has(key)) seen.set(key, EXTRA_SHAPES[seen.size % EXTRA_SHAPES.length]);
  return seen.get(key);
}

export function marker(shape, x, y, colour, size = 6) {
  switch (shape) {
    case "cross":
      return s("path", {d: `M${x - size},${y - size}L${x + size},${y + size}M${x - size},${y + size}L${x + size},${y - size}`,
        stroke: colour, "stroke-width": 3, fill: "none"});
    case "square":
      return s("rect", {x: x - size, y: y - size, width: 2 * size, height: 2 * size, fill: colour});
    case "diamond":
      return s("path", {d: `M${x},${y - size - 1}L${x + size + 1},${y}L${x},${y + size + 1}L${x - size - 1},${y}Z`, fill: colour});
    case "triangle":
      return s("path", {d: `M${x},${y - size - 1}L${x + size + 1},${y + size}L${x - size - 1},${y + size}Z`, fill: colour});
    default:
      return s("circle", {cx: x, cy: y, r: size, fill: colour, stroke: "#fff", "stroke-width": 1});
  }
}

function niceTicks(lo, hi, count = 5) {
  if (!(hi > lo)) return [lo];
  const step0 = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(step0));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((st) => st >= step0) || step0;
  const ticks = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) ticks.push(Math.abs(t) < step * 1e-9 ? 0 : t);
  return ticks;
}

function logTicks(lo, hi) {
  const ticks = [];
  const decades = Math.log10(hi) - Math.log10(lo);
  const mantissas = decades > 2.2 ? [1] : decades > 1.2 ? [1, 3] : [1, 2, 5];
  for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) {
    for (const m of mantissas) {
      const t = m * 10 ** e;
      if (t >= lo * 0.999 && t <= hi * 1.001) ticks.push(t);
    }
  }
  return ticks.length >= 2 ? ticks : [lo, hi];
}

function extent(values, pad = 0.08) {
  const finite = values.filter((v) => typeof v === "number" && Number.isFinite(v));
  if (!finite.length) return [0, 1];
  let lo = Math.min(...finite), hi = Math.max(...finite);
  if (lo === hi) { const d = Math.abs(lo) * 0.1 || 1; lo -= d; hi += d; }
  const p = (hi - lo) * pad;
  return [lo - p, hi + p];
}

const W = 430, H = 250, M = {left: 58, right: 14, top: 26, bottom: 40};

function frame(title, testid) {
  const svg = s("svg", {viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "data-chart": testid});
  svg.append(s("text", {x: M.left, y: 16, class: "chart-title"}, title));
  return svg;
}

function axes(svg, xTicks, xPos, xLabel, yTicks, yPos, yLabel) {
  const g = s("g", {class: "axes"});
  g.append(s("line", {x1: M.left, y1: H - M.bottom, x2: W - M.right, y2: H - M.bottom}));
  g.append(s("line", {x1: M.left, y1: M.top, x2: M.left, y2: H - M.bottom}));
  for (const t of xTicks) {
    const x = xPos(t);
    g.append(s("line", {x1: x, y1: H - M.bottom, x2: x, y2: H - M.bottom + 4}));
    g.append(s("text", {x, y: H - M.bottom + 15, "text-anchor": "middle"}, fmt(t, 2)));
  }
  for (const t of yTicks) {
    const y = yPos(t);
    g.append(s("line", {x1: M.left - 4, y1: y, x2: W - M.right, y2: y, class: "grid"}));
    g.append(s("text", {x: M.left - 6, y: y + 4, "text-anchor": "end"}, fmt(t, 3)));
  }
  g.append(s("text", {x: (M.left + W - M.right) / 2, y: H - 6, "text-anchor": "middle", class: "axis-label"}, xLabel));
  g.append(s("text", {x: 12, y: (M.top + H - M.bottom) / 2, "text-anchor": "middle", class: "axis-label",
    transform: `rotate(-90 12 ${(M.top + H - M.bottom) / 2})`}, yLabel));
  svg.append(g);
}

/**
 * A metric against the learning rate (log x axis) with error bars.
 * points: [{lr, y, low, high, colour, shape, id, tip: [lines], onclick}]
 * refs: [{y, text}] horizontal reference lines; mark: x of the recommended rate.
 */
export function sweepChart({title, id, yLabel, points, refs = [], mark = null, tooltip}) {
  const svg = frame(title, id);
  const usable = points.filter((p) => p.lr > 0 && typeof p.y === "number" && Number.isFinite(p.y));
  const lrs = usable.map((p) => p.lr).concat(mark ? [mark] : []);
  let [xlo, xhi] = lrs.length ? [Math.min(...lrs), Math.max(...lrs)] : [1e-5, 1e-2];
  xlo /= 1.6; xhi *= 1.6;
  const ys = usable.flatMap((p) => [p.y, p.low, p.high]).concat(refs.map((r) => r.y));
  const [ylo, yhi] = extent(ys);
  const xPos = (v) => M.left + (Math.log10(v) - Math.log10(xlo)) / (Math.log10(xhi) - Math.log10(xlo)) * (W - M.left - M.right);
  const yPos = (v) => H - M.bottom - (v - ylo) / (yhi - ylo) * (H - M.top - M.bottom);
  axes(svg, logTicks(xlo, xhi), xPos, "learning rate (log)", niceTicks(ylo, yhi), yPos, yLabel);
  for (const ref of refs) {
    svg.append(s("line", {x1: M.left, x2: W - M.right, y1: yPos(ref.y), y2: yPos(ref.y), class: "ref"}));
    svg.append(s("text", {x: W - M.right - 2, y: yPos(ref.y) - 3, "text-anchor": "end", class: "ref-text"}, ref.text));
  }
  if (mark) {
    const x = xPos(mark);
    svg.append(s("line", {x1: x, x2: x, y1: M.top, y2: H - M.bottom, class: "recommended", "data-recommended": mark}));
    svg.append(s("text", {x: x + 3, y: M.top + 9, class: "recommended-text"}, "recommended"));
  }
  for (const p of usable) {
    const x = xPos(p.lr), y = yPos(p.y);
    const g = s("g", {class: "point", "data-candidate": p.id, "data-lr": p.lr, "data-label": p.label ?? "", "data-verdict": p.verdict ?? "", tabindex: 0});
    if (typeof p.low === "number" && typeof p.high === "number") {
      const y1 = yPos(p.low), y2 = yPos(p.high);
      g.append(s("path", {d: `M${x},${y1}L${x},${y2}M${x - 4},${y1}L${x + 4},${y1}M${x - 4},${y2}L${x + 4},${y2}`,
        stroke: p.colour, "stroke-width": 1.5, fill: "none", class: "errorbar"}));
    }
    g.append(marker(p.shape, x, y, p.colour));
    g.append(s("circle", {cx: x, cy: y, r: 11, fill: "transparent", class: "hit"}));
    g.append(s("title", {}, p.tip.join("\n")));
    g.addEventListener("mouseenter", (e) => tooltip.show(e, p.tip));
    g.addEventListener("mousemove", (e) => tooltip.move(e));
    g.addEventListener("mouseleave", () => tooltip.hide());
    if (p.onclick) g.addEventListener("click", p.onclick);
    svg.append(g);
  }
  if (!usable.length) svg.append(s("text", {x: W / 2, y: H / 2, "text-anchor": "middle", class: "muted"}, "no values yet"));
  return svg;
}

/** Overlaid curves: series [{name, colour, points: [{x, y}]}]; logY for a log-scaled axis. */
export function lossChart({title, series, logY, tooltip}) {
  const svg = frame(title, "training-loss");
  const ok = (v) => typeof v === "number" && Number.isFinite(v) && (!logY || v > 0);
  const all = series.flatMap((sr) => sr.points.filter((p) => ok(p.y)));
  if (!all.length) {
    svg.append(s("text", {x: W / 2, y: H / 2, "text-anchor": "middle", class: "muted"}, "no training logs"));
    return svg;
  }
  const [xlo, xhi] = extent(all.map((p) => p.x), 0.02);
  const tr = (v) => (logY ? Math.log10(v) : v);
  const [ylo, yhi] = extent(all.map((p) => tr(p.y)));
  const xPos = (v) => M.left + (v - xlo) / (xhi - xlo) * (W - M.left - M.right);
  const yPos = (v) => H - M.bottom - (tr(v) - ylo) / (yhi - ylo) * (H - M.top - M.bottom);
  const yTicks = logY ? logTicks(10 ** ylo, 10 ** yhi) : niceTicks(ylo, yhi);
  axes(svg, niceTicks(xlo, xhi), xPos, "step", yTicks, yPos, logY ? "loss (log)" : "loss");
  for (const sr of series) {
    let d = "", pen = "M";
    for (const p of sr.points) {
      if (!ok(p.y)) { pen = "M"; continue; }  // a NaN loss breaks the line: the run diverged there
      d += `${pen}${xPos(p.x).toFixed(1)},${yPos(p.y).toFixed(1)}`;
      pen = "L";
    }
    const path = s("path", {d, stroke: sr.colour, fill: "none", "stroke-width": 2, class: "curve", "data-series": sr.name});
    const tip = [sr.name, `${sr.points.length} logged steps`, `last loss ${fmt(sr.points.at(-1)?.y)}`];
    path.addEventListener("mouseenter", (e) => tooltip.show(e, tip));
    path.addEventListener("mousemove", (e) => tooltip.move(e));
    path.addEventListener("mouseleave", () => tooltip.hide());
    svg.append(path);
  }
  return svg;
}

/** Decisions over time: one dot per decision, coloured by verdict. */
export function timelineChart({entries, tooltip, onclick}) {
  const svg = frame("decision timeline", "timeline");
  svg.setAttribute("viewBox", `0 0 ${W * 2} 110`);
  const times = entries.map((e) => new Date(e.created_at).getTime());
  const [lo, hi] = times.length ? extent(times, 0.04) : [0, 1];
  const xPos = (t) => M.left + (t - lo) / (hi - lo) * (W * 2 - M.left - M.right);
  svg.append(s("line", {x1: M.left, x2: W * 2 - M.right, y1: 60, y2: 60, class: "axis-line"}));
  for (const t of niceTicks(lo, hi, 6)) {
    svg.append(s("text", {x: xPos(t), y: 95, "text-anchor": "middle", class: "tick"}, new Date(t).toISOString().slice(0, 16).replace("T", " ")));
  }
  entries.forEach((e, i) => {
    const colour = e.verdict === "pass" ? "#1a7f37" : e.verdict === "fail" ? "#cf222e" : "#8c959f";
    const g = s("g", {class: "point", "data-decision": e.decision_id});
    g.append(marker(verdictShape(e.verdict, new Map()), xPos(times[i]), 60 - (i % 3) * 12, colour, 5));
    const tip = [`decision ${e.decision_id}: ${e.verdict}`, `candidate ${e.candidate_id}${e.candidate_name ? " " + e.candidate_name : ""}`,
      `lr ${fmt(e.learning_rate)} · sweep ${e.sweep ?? "—"}`, `policy v${e.policy_version}`, e.created_at];
    g.append(s("title", {}, tip.join("\n")));
    g.addEventListener("mouseenter", (ev) => tooltip.show(ev, tip));
    g.addEventListener("mouseleave", () => tooltip.hide());
    g.addEventListener("click", () => onclick(e));
    svg.append(g);
  });
  return svg;
}

/** One floating tooltip for the page; its lines are text nodes. */
export function makeTooltip() {
  const el = h("div", {class: "tooltip", role: "tooltip", hidden: true});
  document.body.append(el);
  return {
    el,
    show(event, lines) {
      el.replaceChildren(...lines.map((line) => h("div", {}, line)));
      el.hidden = false;
      this.move(event);
    },
    move(event) {
      el.style.left = `${event.clientX + 14}px`;
      el.style.top = `${event.clientY + 10}px`;
    },
    hide() { el.hidden = true; },
  };
}
