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

/** Unix ms → "2026-11-22 15:36 UTC" (text, for titles and CSV-like places). */
export function fmtUtc(ms) {
  const d = new Date(ms);
  if (Number.isNaN(d.getTime())) return "-";
  return d.toISOString().slice(0, 16).replace("T", " ") + " UTC";
}

const LOCAL = new Intl.DateTimeFormat("sv-SE", { year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", hour12: false });
const ZONE = new Intl.DateTimeFormat("en-US", { timeZoneName: "short" });

/** The viewer's time zone name ("GMT+5:30", "CET"), shown next to local times. */
export function zoneName(ms = Date.now()) {
  const part = ZONE.formatToParts(new Date(ms)).find((p) => p.type === "timeZoneName");
  return part ? part.value : "local";
}

/** Unix ms → "2026-11-22 16:36" in the viewer's time zone (ISO order, 24 h). */
export function fmtLocal(ms) {
  const d = new Date(ms);
  if (Number.isNaN(d.getTime())) return "-";
  return LOCAL.format(d).replace(",", "");
}

/** A <time> in the viewer's time zone, with UTC on hover. */
export function fmtTime(ms) {
  if (ms === null || ms === undefined) return "never";
  const d = new Date(ms);
  if (Number.isNaN(d.getTime())) return "-";
  return h("time", { datetime: d.toISOString(), title: fmtUtc(ms), class: "ts" }, `${fmtLocal(ms)} ${zoneName(ms)}`);
}

/**
 * "2026-11-22 16:36" / "2026-11-22T16:36" / "2026-11-22" in the viewer's time zone → Unix ms;
 * null when empty, NaN when not such a date.
 */
export function parseLocal(text) {
  const t = String(text || "").trim();
  if (!t) return null;
  const m = /^(\d{4})-(\d{2})-(\d{2})(?:[ T](\d{2}):(\d{2})(?::(\d{2}))?)?$/.exec(t);
  if (!m) return NaN;
  const [y, mo, d, hh = "0", mi = "0", ss = "0"] = m.slice(1);
  const date = new Date(Number(y), Number(mo) - 1, Number(d), Number(hh), Number(mi), Number(ss));
  if (date.getFullYear() !== Number(y) || date.getMonth() !== Number(mo) - 1 || date.getDate() !== Number(d)) return NaN;
  return date.getTime();
}

/** 1536 → "1.5 KiB"; null/undefined → "-" (no byte counts for that use). */
export function fmtBytes(n) {
  if (n === null || n === undefined) return "-";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = Number(n), i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return i === 0 ? `${v} B` : `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
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

/** Risk bands of the catalogue: low < 25 ≤ moderate < 50 ≤ high < 75 ≤ severe. */
export function riskBand(score) {
  return score >= 75 ? "severe" : score >= 50 ? "high" : score >= 25 ? "moderate" : "low";
}

/**
 * A risk score with its band; `breakdown` (from /api/v1/risk) adds the factors on hover.
 * The colour is the band's, never "all clear": a low-risk unsanctioned service is still
 * unsanctioned (the verdict badge says so).
 */
export function riskBadge(score, breakdown) {
  const band = riskBand(score);
  const plan = breakdown && breakdown.plans && breakdown.plans[0];
  const factors = plan ? plan.factors.map((f) => `${f.factor} ${f.value}: +${f.points}/${f.max}`).join("\n") : "";
  const title = `risk ${score}/100 (${band})${plan && plan.plan ? `, ${plan.plan} plan` : ""}${factors ? "\n" + factors : ""}`;
  return h("span", { class: `risk risk-${band}`, title, "data-testid": "risk-badge" }, `${score} ${band}`);
}

/** What happened to the traffic, apart from the verdict. */
export function actionBadge(a) {
  if (a === "blocked") return h("span", { class: "badge action-blocked" }, "blocked");
  if (a === "would_block") return h("span", { class: "badge action-would" }, "would block");
  return h("span", { class: "action-allowed" }, "allowed");
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
