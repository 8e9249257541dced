// Overview of discovered AI services, service detail, host and user drill-down.

import { api } from "./api.js";
import { h, fmtTime, fmtAgo, fmtNum, verdictBadge, riskBadge, link, table, card, VERDICTS } from "./dom.js";
import { dayRange, eventsPerDay, growth, growthBadge, sparkline, trendChart } from "./charts.js";
import { findingRows, FINDING_HEADERS } from "./findings.js";

function stat(label, value, cls, testid) {
  return h("div", { class: `stat ${cls || ""}`, "data-testid": testid }, h("div", { class: "value" }, value), h("div", { class: "label" }, label));
}

/** Growth of unapproved use is what the SOC worries about; growth of sanctioned use is not. */
const alarming = (verdict) => verdict === "unsanctioned" || verdict === "blocked";

function serviceRows(rows, trend, days) {
  return rows.map((r) => {
    const points = trend.filter((p) => p.service_id === r.service_id && p.verdict === r.verdict);
    const series = eventsPerDay(points, days);
    return [
      link(`#/service/${encodeURIComponent(r.service_id)}`, r.service_name, "service-link"),
      r.vendor,
      r.category,
      verdictBadge(r.verdict),
      riskBadge(r.risk_score),
      fmtNum(r.hosts),
      fmtNum(r.users),
      fmtNum(r.processes),
      fmtNum(r.events),
      h(
        "span",
        { class: "trendcell" },
        sparkline(series, `${r.service_name}: ${series.join(", ")} events per day`, alarming(r.verdict)),
        growthBadge(growth(series), alarming(r.verdict)),
      ),
      fmtTime(r.first_seen_ms),
      fmtAgo(r.last_seen_ms),
    ];
  });
}

const SERVICE_HEADERS = ["Service", "Vendor", "Category", "Sanction state", "Risk", "Hosts", "Users", "Processes", "Events", "Trend", "First seen", "Last seen"];

/** #/overview */
export async function overviewView(ctx) {
  const range = ctx.range();
  const days = dayRange(range.days);
  const [rows, trend] = await Promise.all([api.services(range.query), api.trend(range.query)]);
  rows.sort((a, b) => VERDICTS.indexOf(b.verdict) - VERDICTS.indexOf(a.verdict) || b.risk_score - a.risk_score || b.events - a.events);
  const unsanctioned = rows.filter((r) => r.verdict === "unsanctioned");
  const services = new Set(rows.map((r) => r.service_id));
  const events = rows.reduce((s, r) => s + r.events, 0);
  const blocked = rows.filter((r) => r.verdict === "blocked").reduce((s, r) => s + r.events, 0);
  return [
    h("h1", {}, "Discovered AI services"),
    h("div", { class: "stats" },
      stat("AI services seen", fmtNum(services.size), "", "stat-services"),
      stat("unsanctioned services", fmtNum(new Set(unsanctioned.map((r) => r.service_id)).size), unsanctioned.length ? "bad" : "", "stat-unsanctioned"),
      stat("events", fmtNum(events), "", "stat-events"),
      stat("blocked events", fmtNum(blocked), "", "stat-blocked"),
    ),
    card(`Events per day (${range.label})`, trendChart(trend, days)),
    card("Services", table(SERVICE_HEADERS, serviceRows(rows, trend, days), { empty: "No AI service use seen in this period.", testid: "services-table" })),
  ];
}

function topCounts(items, key, n = 8) {
  const m = new Map();
  for (const f of items) {
    const k = key(f);
    const cur = m.get(k) || { count: 0, findings: 0 };
    cur.count += f.count;
    cur.findings += 1;
    m.set(k, cur);
  }
  return [...m.entries()].sort((a, b) => b[1].count - a[1].count).slice(0, n);
}

function proposeForm(ctx, serviceId) {
  const form = h("form", { class: "inline-form", "data-testid": "propose-form" },
    h("label", {}, "Verdict", h("select", { name: "verdict", "data-testid": "propose-verdict" }, VERDICTS.map((v) => h("option", { value: v, selected: v === "blocked" }, v)))),
    h("label", {}, "Scope", h("select", { name: "scope" }, h("option", { value: "fleet" }, "whole fleet"), h("option", { value: "group" }, "one group"))),
    h("label", {}, "Group", h("input", { name: "group", placeholder: "finance" })),
    h("label", { class: "wide" }, "Reason", h("input", { name: "reason", required: true, placeholder: "why", "data-testid": "propose-reason" })),
    h("button", { type: "submit", class: "primary", "data-testid": "propose-submit" }, "Propose"),
  );
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const fd = new FormData(form);
    const scope = fd.get("scope") === "group" ? { kind: "group", group: String(fd.get("group") || "").trim() } : { kind: "fleet" };
    try {
      const p = await api.propose({ service_id: serviceId, verdict: fd.get("verdict"), scope, reason: String(fd.get("reason")) });
      ctx.toast(p.status === "pending"
        ? `Proposal #${p.id} is pending: a different person with the approver role must approve it.`
        : `Proposal #${p.id} applied.`);
      form.reset();
    } catch (err) {
      ctx.showError(err);
    }
  });
  return form;
}

/** #/service/<id> */
export async function serviceView(ctx, id) {
  const range = ctx.range();
  const days = dayRange(range.days);
  const q = { ...range.query, service: id };
  const [rows, trend, page] = await Promise.all([api.services(q), api.trend(q), api.findings({ ...q, limit: 1000 })]);
  if (!rows.length) {
    return [h("h1", {}, id), card(null, h("p", { class: "empty" }, `No use of ${id} seen in ${range.label}.`))];
  }
  const r0 = rows[0];
  const items = page.items;
  const hostnames = new Map(items.map((f) => [f.host_id, f.hostname]));
  const list = (pairs, route, label = (k) => k) =>
    table(["", "Connections", "Findings"], pairs.map(([k, v]) => [route ? link(route(k), label(k)) : label(k), fmtNum(v.count), fmtNum(v.findings)]));
  return [
    h("p", { class: "crumbs" }, link("#/overview", "Overview"), " / ", r0.service_name),
    h("h1", { "data-testid": "service-title" }, r0.service_name, " ", h("span", { class: "muted" }, `${r0.vendor} · ${r0.category}`)),
    h("div", { class: "stats" },
      rows.map((r) => stat(`${r.verdict}: hosts ${r.hosts}, users ${r.users}`, fmtNum(r.events), r.verdict === "unsanctioned" ? "bad" : "", `verdict-${r.verdict}`)),
      stat("risk score", String(r0.risk_score), r0.risk_score >= 80 ? "bad" : ""),
      stat("first seen", fmtTime(Math.min(...rows.map((r) => r.first_seen_ms)))),
    ),
    h("div", { class: "row" }, rows.map((r) => verdictBadge(r.verdict))),
    card(`Events per day (${range.label})`, trendChart(trend, days)),
    h("div", { class: "cols" },
      card("Top hosts", list(topCounts(items, (f) => f.host_id), (k) => `#/host/${encodeURIComponent(k)}`, (k) => hostnames.get(k) || k)),
      card("Top users", list(topCounts(items, (f) => f.user), (k) => `#/user/${encodeURIComponent(k)}`)),
      card("Top processes", list(topCounts(items, (f) => f.process.exe))),
    ),
    ctx.can("admin") ? card("Change the verdict for this service", proposeForm(ctx, id)) : null,
    card("Recent findings", table(FINDING_HEADERS, findingRows([...items].sort((a, b) => b.last_seen_ms - a.last_seen_ms).slice(0, 50)), { testid: "service-findings" }),
      h("p", {}, link(`#/findings?service=${encodeURIComponent(id)}`, "All findings for this service →"))),
  ];
}

/** #/host/<host_id or hostname> */
export async function hostView(ctx, host) {
  const range = ctx.range();
  const q = { ...range.query, host };
  const [rows, page, agents] = await Promise.all([api.services(q), api.findings({ ...q, limit: 200 }), api.agents().catch(() => [])]);
  const agent = agents.find((a) => a.host_id === host || a.hostname === host);
  const name = agent ? agent.hostname : page.items[0] ? page.items[0].hostname : host;
  const agentCard = agent
    ? card("Agent", table(["Agent", "Group", "Last seen", "Version", "Bundle", "Mode", "Lost events", "State"], [[
        agent.agent_id, agent.group || "-", fmtAgo(agent.last_seen_ms), agent.agent_version || "-", agent.bundle_version || "-",
        agent.mode || "-", fmtNum(agent.lost_events), agent.revoked ? h("span", { class: "badge verdict-blocked" }, "revoked") : "active",
      ]]))
    : null;
  return [
    h("p", { class: "crumbs" }, link("#/overview", "Overview"), " / host"),
    h("h1", { "data-testid": "host-title" }, `Host ${name}`),
    agentCard,
    card("AI services used on this host", table(SERVICE_HEADERS.filter((x) => x !== "Trend"), rows.map((r) => serviceRows([r], [], [])[0].filter((_, i) => i !== 9)), { testid: "host-services" })),
    card("Findings on this host", table(FINDING_HEADERS, findingRows(page.items, { sort: true }), { testid: "host-findings" })),
  ];
}

/** #/user/<name> */
export async function userView(ctx, user) {
  const range = ctx.range();
  const q = { ...range.query, user };
  const [rows, page] = await Promise.all([api.services(q), api.findings({ ...q, limit: 200 })]);
  const hosts = new Set(page.items.map((f) => f.hostname));
  return [
    h("p", { class: "crumbs" }, link("#/overview", "Overview"), " / user"),
    h("h1", { "data-testid": "user-title" }, `User ${user}`),
    h("p", { class: "muted" }, `Seen on ${hosts.size} host${hosts.size === 1 ? "" : "s"}: ${[...hosts].slice(0, 10).join(", ")}`),
    card("AI services used by this user", table(SERVICE_HEADERS.filter((x) => x !== "Trend"), rows.map((r) => serviceRows([r], [], [])[0].filter((_, i) => i !== 9)), { testid: "user-services" })),
    card("Findings of this user", table(FINDING_HEADERS, findingRows(page.items, { sort: true }), { testid: "user-findings" })),
  ];
}
