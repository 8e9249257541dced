// "Who": every user, host, process or host group across services, with counts, data sent and
// first/last seen, paged by the collector (offset), sortable by events or by uploads to
// unsanctioned services. #/who?by=user|host|process|group&sort=events|uploads&offset=N

import { api } from "./api.js";
import { h, fmtTime, fmtAgo, fmtNum, fmtBytes, riskBadge, link, table, card } from "./dom.js";

const BY = { user: "Users", host: "Hosts", process: "Processes", group: "Host groups" };
const PAGE = 50;

/** The drill-down of a group key: its own page, or the findings filtered by it. */
function drill(by, row) {
  const label = row.label || (by === "group" ? "(no group)" : row.key);
  switch (by) {
    case "user": return link(`#/user/${encodeURIComponent(row.key)}`, label);
    case "host": return link(`#/host/${encodeURIComponent(row.key)}`, label);
    case "process": return link(`#/findings?process=${encodeURIComponent(row.key)}`, h("span", { class: "proc" }, label));
    default: return link(`#/findings?group=${encodeURIComponent(row.key || "(none)")}`, label);
  }
}

export function groupTable(by, items, { testid, empty }) {
  const headers = [BY[by].replace(/s$/, ""), "Services", "Unsanctioned / blocked", "Hosts", "Users", "Events", "Stopped", "Data sent", "Highest risk", "First seen (ever)", "Last seen"];
  return table(headers, items.map((r) => [
    drill(by, r),
    fmtNum(r.services),
    r.risky_services ? h("span", { class: "warn" }, fmtNum(r.risky_services)) : "0",
    fmtNum(r.hosts),
    fmtNum(r.users),
    fmtNum(r.events),
    r.blocked_events || r.would_block_events ? `${fmtNum(r.blocked_events)} blocked, ${fmtNum(r.would_block_events)} would` : "-",
    h("span", { title: `${fmtBytes(r.bytes_in)} received; ${fmtNum(r.bytes_known)} of ${fmtNum(r.findings)} findings carry byte counts` }, fmtBytes(r.bytes_out)),
    riskBadge(r.max_risk),
    fmtTime(r.first_seen_ms),
    fmtAgo(r.last_seen_ms),
  ]), { testid, empty });
}

/** #/who */
export async function whoView(ctx, params) {
  const by = BY[params.get("by")] ? params.get("by") : "user";
  const sort = params.get("sort") === "uploads" ? "uploads" : "events";
  const offset = Math.max(0, Number(params.get("offset")) || 0);
  const range = ctx.range();
  const q = { ...range.query, by, limit: PAGE, offset: offset || undefined };
  const page = await (sort === "uploads" ? api.uploaders(q) : api.groups(q));
  const url = (o) => {
    const p = new URLSearchParams({ by, sort });
    if (o.offset) p.set("offset", String(o.offset));
    for (const [k, v] of Object.entries(o)) if (k !== "offset") p.set(k, v);
    return `#/who?${p.toString()}`;
  };
  const tabs = h("div", { class: "tabs", "data-testid": "who-tabs" },
    Object.entries(BY).map(([k, label]) => h("a", { href: `#/who?by=${k}&sort=${sort}`, class: k === by ? "active" : "", "data-testid": `who-by-${k}` }, label)));
  const sorts = h("div", { class: "tabs" },
    h("a", { href: `#/who?by=${by}&sort=events`, class: sort === "events" ? "active" : "", "data-testid": "who-sort-events" }, "Most events (all services)"),
    h("a", { href: `#/who?by=${by}&sort=uploads`, class: sort === "uploads" ? "active" : "", "data-testid": "who-sort-uploads" }, "Most data sent to unsanctioned or blocked services"));
  const from = offset + 1;
  const to = offset + page.items.length;
  const pager = h("div", { class: "pager", "data-testid": "who-pager" },
    offset > 0 ? h("a", { href: url({ offset: Math.max(0, offset - PAGE) }), "data-testid": "who-prev" }, "← Previous") : null,
    h("span", { class: "muted", "data-testid": "who-range" }, page.items.length ? `${from}–${to}` : "none"),
    page.next_offset ? h("a", { href: url({ offset: page.next_offset }), "data-testid": "who-next" }, "Next →") : null);
  return [
    h("h1", { "data-testid": "who-title" }, `${BY[by]} using AI services`, " ", h("span", { class: "muted" }, `(${range.label})`)),
    tabs,
    sorts,
    card(null, groupTable(by, page.items, { testid: "who-table", empty: sort === "uploads" ? "No data sent to unsanctioned or blocked services in this period." : "No AI use in this period." }), pager),
  ];
}
