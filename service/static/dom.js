// DOM helpers for the dashboard. Every string becomes a text node (textContent):
// model outputs and dataset texts are data, never markup; nothing here parses HTML.

const SVG_NS = "http://www.w3.org/2000/svg";

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function setAttrs(el, attrs) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (key === "dataset") {
      Object.assign(el.dataset, value);
    } else if (key === "style" && typeof value === "object") {
      Object.assign(el.style, value);
    } else {
      el.setAttribute(key, value === true ? "" : String(value));
    }
  }
  return el;
}

/** An HTML element: h("td", {class: "num"}, "0.12"). */
export function h(tag, attrs, ...children) {
  return append(setAttrs(document.createElement(tag), attrs), children);
}

/** An SVG element: s("circle", {cx: 3, cy: 4, r: 2}). */
export function s(tag, attrs, ...children) {
  return append(setAttrs(document.createElementNS(SVG_NS, tag), attrs), children);
}

/** Replace an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

export function fmt(value, digits = 3) {
  if (value === null || value === undefined || Number.isNaN(value)) return "—";
  if (typeof value !== "number") return String(value);
  if (value === 0) return "0";
  const abs = Math.abs(value);
  if (abs >= 1e4 || abs < 1e-3) return Number(value.toPrecision(digits)).toExponential();
  return Number(value.toPrecision(digits)).toString();
}

export function signed(value, digits = 3) {
  const text = fmt(value, digits);
  return typeof value === "number" && value > 0 ? "+" + text : text;
}

export function interval(low, high) {
  if (low === null || low === undefined || high === null || high === undefined) return "";
  return `[${fmt(low)}, ${fmt(high)}]`;
}

export function when(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : d.toISOString().replace("T", " ").slice(0, 19) + "Z";
}

/** A table from rows and [header, cell(row)] columns; cells may return nodes or text. */
export function table(rows, columns, attrs = {}) {
  if (!rows.length) return h("p", {class: "muted"}, "none yet");
  return h("table", attrs,
    h("thead", {}, h("tr", {}, columns.map(([name]) => h("th", {}, name)))),
    h("tbody", {}, rows.map((row) => h("tr", row.__attrs || {}, columns.map(([, cell]) => {
      const value = cell(row);
      return value instanceof Node && value.tagName === "TD" ? value : h("td", {}, value);
    })))),
  );
}

export function link(hash, ...children) {
  return h("a", {href: hash}, ...children);
}

export function badge(text, kind) {
  return h("span", {class: `badge ${kind || ""}`, "data-badge": text}, text);
}
