// Overview of discovered AI services, service detail, host and user drill-down.

import { api } from "./api.js";
import { h, fmtTime, fmtAgo, fmtNum, fmtBytes, verdictBadge, riskBadge, link, table, card, VERDICTS } from "./dom.js";
import { bucketRange, eventsPerBucket, growth, growthBadge, sparkline, trendChart } from "./charts.js";
import { findingRows, FINDING_HEADERS } from "./findings.js";
import { riskFor, riskBreakdown } from "./risk.js";
import { groupTable } from "./who.js";

function stat(label, value, cls, testid, title) {
  return h("div", { class: `stat ${cls || ""}`, "data-testid": testid, title }, h("div", { class: "value" }, value), h("div", { class: "label" }, label));
}

/** Growth of unapproved use is what the SOC worries about; growth of sanctioned use is not. */
const alarming = (verdict) => verdict === "unsanctioned" || verdict === "blocked";

/** First use ever (not only in the range), with the range's first use on hover. */
function firstSeen(r) {
  const ever = r.first_seen_ever_ms ?? r.first_seen_ms;
  return fmtTime(Math.min(ever, r.first_seen_ms));
}

function serviceRows(rows, trend, buckets, risk) {
  return rows.map((r) => {
    const points = trend.filter((p) => p.service_id === r.service_id && p.verdict === r.verdict);
    const series = buckets ? eventsPerBucket(points, buckets) : [];
    return [
      link(`#/service/${encodeURIComponent(r.service_id)}`, r.service_name, "service-link"),
      r.vendor,
      r.category,
      verdictBadge(r.verdict),
      riskBadge(r.risk_score, risk && risk.get(r.service_id)),
      fmtNum(r.hosts),
      fmtNum(r.users),
      fmtNum(r.processes),
      fmtNum(r.events),
      h("span", { title: `${fmtNum(r.blocked_events)} blocked, ${fmtNum(r.would_block_events)} would have been blocked (enforcement off)` },
        r.blocked_events ? `${fmtNum(r.blocked_events)} blocked` : r.would_block_events ? `${fmtNum(r.would_block_events)} would block` : "-"),
      h("span", { title: `${fmtBytes(r.bytes_in)} received` }, fmtBytes(r.bytes_out)),
      buckets
        ? h(
          "span",
          { class: "trendcell" },
          sparkline(series, `${r.service_name}: ${series.join(", ")} events per ${buckets.bucket}`, alarming(r.verdict)),
          growthBadge(growth(series), alarming(r.verdict)),
        )
        : null,
      firstSeen(r),
      fmtAgo(r.last_seen_ms),
    ].filter((c) => c !== null);
  });
}

const SERVICE_HEADERS = ["Service", "Vendor", "Category", "Sanction state", "Risk", "Hosts", "Users", "Processes", "Events", "Stopped", "Data sent", "Trend", "First seen", "Last seen"];
const SERVICE_HEADERS_NO_TREND = SERVICE_HEADERS.filter((x) => x !== "Trend");

/** #/overview */
export async function overviewView(ctx) {
  const range = ctx.range();
  const buckets = bucketRange(range);
  const [rows, trend, uploaders] = await Promise.all([
    api.services(range.query),
    api.trend(ctx.trendQuery()),
    api.uploaders({ ...range.query, by: "user", limit: 5 }),
  ]);
  const risk = await riskFor(rows.map((r) => r.service_id));
  rows.sort((a, b) => VERDICTS.indexOf(b.verdict) - VERDICTS.indexOf(a.verdict) || b.risk_score - a.risk_score || b.events - a.events);
  const unsanctioned = rows.filter((r) => r.verdict === "unsanctioned");
  const services = new Set(rows.map((r) => r.service_id));
  const sum = (xs, k) => xs.reduce((s, r) => s + r[k], 0);
  // Verdict and action are different things: "blocked events" counts what the agents stopped.
  const blocked = sum(rows, "blocked_events");
  const wouldBlock = sum(rows, "would_block_events");
  const risky = rows.filter((r) => alarming(r.verdict));
  return [
    h("h1", {}, "Discovered AI services"),
    h("div", { class: "stats" },
      stat("AI services seen", fmtNum(services.size), "", "stat-services"),
      stat("unsanctioned services", fmtNum(new Set(unsanctioned.map((r) => r.service_id)).size), unsanctioned.length ? "bad" : "", "stat-unsanctioned"),
      stat("events", fmtNum(sum(rows, "events")), "", "stat-events"),
      stat("events blocked by agents", fmtNum(blocked), "", "stat-blocked", `${fmtNum(sum(rows.filter((r) => r.verdict === "blocked"), "events"))} events had the verdict "blocked"; ${fmtNum(wouldBlock)} would have been blocked with enforcement on`),
      stat("would have been blocked", fmtNum(wouldBlock), wouldBlock ? "bad" : "", "stat-would-block"),
      stat("data sent to unsanctioned or blocked services", fmtBytes(sum(risky, "bytes_out")), risky.length ? "bad" : "", "stat-risky-bytes"),
    ),
    card(`Events per ${buckets.bucket} (${range.label})`, trendChart(trend, buckets)),
    card("Services", table(SERVICE_HEADERS, serviceRows(rows, trend, buckets, risk), { empty: "No AI service use seen in this period.", testid: "services-table" })),
    card("Top uploaders to unsanctioned or blocked services",
      groupTable("user", uploaders.items, { testid: "uploaders-table", empty: "Nobody sent data to an unsanctioned or blocked service in this period." }),
      h("p", {}, link("#/who?by=user", "Everyone, by user, host, process or host group →"))),
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
  const buckets = bucketRange(range);
  const q = { ...range.query, service: id };
  const [rows, trend, page] = await Promise.all([api.services(q), api.trend(ctx.trendQuery({ service: id })), api.findings({ ...q, limit: 1000 })]);
  if (!rows.length) {
    return [h("h1", {}, id), card(null, h("p", { class: "empty" }, `No use of ${id} seen in ${range.label}.`))];
  }
  const risk = await riskFor([id]);
  const r0 = rows[0];
  const items = page.items;
  const hostnames = new Map(items.map((f) => [f.host_id, f.hostname]));
  const list = (pairs, route, label = (k) => k) =>
    table(["", "Connections", "Findings"], pairs.map(([k, v]) => [route ? link(route(k), label(k)) : label(k), fmtNum(v.count), fmtNum(v.findings)]));
  const ever = Math.min(...rows.map((r) => Math.min(r.first_seen_ever_ms ?? r.first_seen_ms, r.first_seen_ms)));
  return [
    h("p", { class: "crumbs" }, link("#/overview", "Overview"), " / ", r0.service_name),
    h("h1", { "data-testid": "service-title" }, r0.service_name, " ", h("span", { class: "muted" }, `${r0.vendor} · ${r0.category}`)),
    h("div", { class: "stats" },
      rows.map((r) => stat(`${r.verdict}: hosts ${r.hosts}, users ${r.users}`, fmtNum(r.events), r.verdict === "unsanctioned" ? "bad" : "", `verdict-${r.verdict}`)),
      stat("risk score", riskBadge(r0.risk_score, risk.get(id)), r0.risk_score >= 75 ? "bad" : "", "service-risk"),
      stat("data sent", fmtBytes(rows.reduce((s, r) => s + r.bytes_out, 0)), "", "service-bytes"),
      stat("first seen (ever)", fmtTime(ever), "", "service-first-seen"),
    ),
    h("div", { class: "row" }, rows.map((r) => verdictBadge(r.verdict))),
    card(`Events per ${buckets.bucket} (${range.label})`, trendChart(trend, buckets)),
    card("Why this risk score", riskBreakdown(r0.risk_score, risk.get(id))),
    h("div", { class: "cols" },
      card("Top hosts", list(topCounts(items, (f) => f.host_id), (k) => `#/host/${encodeURIComponent(k)}`, (k) => hostnames.get(k) || k)),
      card("Top users", list(topCounts(items, (f) => f.user), (k) => `#/user/${encodeURIComponent(k)}`)),
      card("Top processes", list(topCounts(items, (f) => f.process.exe))),
    ),
    ctx.can("admin") ? card("Change the verdict for this service", proposeForm(ctx, id)) : null,
    card("Recent findings", table(FINDING_HEADERS, findingRows([...items].sort((a, b) => b.last_seen_ms - a.last_seen_ms).slice(0, 50), { risk }), { testid: "service-findings" }),
      h("p", {}, link(`#/findings?service=${encodeURIComponent(id)}`, "All findings for this service →"))),
  ];
}

/** A findings table that pages with the collector's cursor ("Load more"). */
async function pagedFindings(ctx, q, testid, risk) {
  const holder = h("div", {});
  const status = h("p", { class: "muted", "data-testid": `${testid}-count` });
  const more = h("button", { type: "button", hidden: true, "data-testid": `${testid}-more` }, "Load more");
  let items = [];
  let cursor = null;
  async function load() {
    const page = await api.findings({ ...q, limit: 100, cursor: cursor || undefined });
    items = items.concat(page.items);
    cursor = page.next_cursor;
    holder.replaceChildren(table(FINDING_HEADERS, findingRows(items, { risk }), { testid, empty: "No findings in this period." }));
    status.textContent = `${items.length} finding${items.length === 1 ? "" : "s"}${cursor ? " shown; more available" : ""}`;
    more.hidden = !cursor;
  }
  more.addEventListener("click", () => load().catch(ctx.showError));
  await load();
  return [status, holder, more];
}

/** #/host/<host_id or hostname> */
export async function hostView(ctx, host) {
  const range = ctx.range();
  const q = { ...range.query, host };
  const [rows, agents] = await Promise.all([api.services(q), api.agents().catch(() => [])]);
  const risk = await riskFor(rows.map((r) => r.service_id));
  const agent = agents.find((a) => a.host_id === host || a.hostname === host);
  const findings = await pagedFindings(ctx, q, "host-findings", risk);
  const name = agent ? agent.hostname : host;
  const agentCard = agent
    ? card("Agent", table(["Agent", "Group", "Last seen", "Version", "Bundle", "Mode", "Lost events", "State"], [[
        agent.agent_id, agent.group || "-", fmtAgo(agent.last_seen_ms), agent.agent_version || "-", agent.bundle_version || "-",
        agent.mode || "-", fmtNum(agent.lost_events), agent.revoked ? h("span", { class: "badge verdict-blocked" }, "revoked") : "active",
      ]]))
    : null;
  return [
    h("p", { class: "crumbs" }, link("#/overview", "Overview"), " / ", link("#/who?by=host", "hosts"), " / host"),
    h("h1", { "data-testid": "host-title" }, `Host ${name}`),
    agentCard,
    card("AI services used on this host", table(SERVICE_HEADERS_NO_TREND, serviceRows(rows, [], null, risk), { testid: "host-services" })),
    card("Findings on this host", ...findings),
  ];
}

/** #/user/<name> */
export async function userView(ctx, user) {
  const range = ctx.range();
  const q = { ...range.query, user };
  const [rows, hosts] = await Promise.all([api.services(q), api.groups({ ...q, by: "host", limit: 20 })]);
  const risk = await riskFor(rows.map((r) => r.service_id));
  const findings = await pagedFindings(ctx, q, "user-findings", risk);
  const n = hosts.items.length;
  return [
    h("p", { class: "crumbs" }, link("#/overview", "Overview"), " / ", link("#/who?by=user", "users"), " / user"),
    h("h1", { "data-testid": "user-title" }, `User ${user}`),
    h("p", { class: "muted" }, `Seen on ${n}${hosts.next_offset ? "+" : ""} host${n === 1 ? "" : "s"}: `,
      hosts.items.map((x, i) => [i ? ", " : "", link(`#/host/${encodeURIComponent(x.key)}`, x.label)])),
    card("AI services used by this user", table(SERVICE_HEADERS_NO_TREND, serviceRows(rows, [], null, risk), { testid: "user-services" })),
    card("Findings of this user", ...findings),
  ];
}
