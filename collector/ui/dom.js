// DOM helpers. Every value from the collector goes in as text (textContent / attributes),
// never as HTML: hostnames, process names and users come from monitored machines.

/** h("a", {href: "#/x", class: "k", onclick: fn}, "text", child, [more]) */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

const SVG_NS = "http://www.w3.org/2000/svg";
export function svg(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  for (const c of children) {
    if (c instanceof Node) el.appendChild(c);
    else if (c !== undefined && c !== null) el.appendChild(document.createTextNode(String(c)));
  }
  return el;
}

/** Unix ms → "2026-11-22 15:36 UTC". */
export function fmtTime(ms) {
  if (ms === null || ms === undefined) return "never";
  const d = new Date(ms);
  if (Number.isNaN(d.getTime())) return "-";
  return d.toISOString().slice(0, 16).replace("T", " ") + " UTC";
}

/** "5 min ago", "3 h ago", "2 d ago". */
export function fmtAgo(ms, now = Date.now()) {
  if (ms === null || ms === undefined) return "never";
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

export function fmtNum(n) {
  return Number(n || 0).toLocaleString("en-US");
}

const VERDICT_LABEL = {
  sanctioned: "Sanctioned",
  tolerated: "Tolerated",
  unsanctioned: "Unsanctioned",
  blocked: "Blocked",
};
export const VERDICTS = Object.keys(VERDICT_LABEL);

export function verdictBadge(v) {
  return h("span", { class: `badge verdict-${v}` }, VERDICT_LABEL[v] || v);
}

export function riskBadge(score) {
  const level = score >= 80 ? "high" : score >= 50 ? "medium" : "low";
  return h("span", { class: `risk risk-${level}`, title: `risk score ${score}/100` }, String(score));
}

/** A link to another view: #/host/<id>. */
export function link(route, text, cls) {
  return h("a", { href: route, class: cls }, text);
}

export function table(headers, rows, { empty = "Nothing to show.", testid } = {}) {
  if (!rows.length) return h("p", { class: "empty", "data-testid": testid && `${testid}-empty` }, empty);
  return h(
    "table",
    { class: "grid", "data-testid": testid },
    h("thead", {}, h("tr", {}, headers.map((x) => h("th", {}, x)))),
    h("tbody", {}, rows.map((r) => h("tr", {}, r.map((c) => h("td", {}, c))))),
  );
}

export function card(title, ...content) {
  return h("section", { class: "card" }, title ? h("h2", {}, title) : null, ...content);
}
