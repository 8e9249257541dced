// The inventory of AI agents at work (issue 12): agent sessions, MCP servers and local model
// runtimes, fleet-wide or per host, with first/last seen and risk flags. Every value comes
// from monitored machines and goes into the page as text only (see dom.js).

import { api } from "./api.js";
import { h, link, table, card, fmtTime, fmtAgo, fmtUtc } from "./dom.js";

const KINDS = [["", "everything"], ["session", "AI agent sessions"], ["mcp_server", "MCP servers"], ["runtime", "local runtimes"]];
const FLAGS = ["", "permission_bypass", "agent_as_root", "unpinned_mcp_server", "runtime_exposed", "off_catalogue_contact", "personal_tenant"];

function flagList(flags) {
  return (flags || []).map((f) => h("span", { class: "badge verdict-unsanctioned", "data-testid": `flag-${f}` }, f));
}

function what(it) {
  const d = it.detail || {};
  if (it.kind === "session") {
    return [h("strong", {}, d.name || it.name), " ", d.version || "", h("div", { class: "muted" },
      `pid ${d.root_pid} · ${d.processes} processes (${d.live_processes} live)${d.cwd ? ` · ${d.cwd}` : ""}`)];
  }
  if (it.kind === "mcp_server") {
    return [h("strong", {}, d.package || d.launcher), ` via ${d.launcher} (${d.transport}) `,
      h("span", { class: d.pinned ? "muted" : "" }, d.pinned ? "pinned" : "unpinned"),
      d.session_id ? h("div", { class: "muted" }, `session ${d.session_id}`) : ""];
  }
  const ls = (d.listeners || []).map((l) => `${l.addr.includes(":") ? `[${l.addr}]` : l.addr}:${l.port}${l.exposed ? " (exposed)" : ""}`);
  return [h("strong", {}, d.name || it.name), ` pid ${d.pid} `, h("div", { class: "muted" }, ls.length ? `listening ${ls.join(", ")}` : "no listener seen")];
}

function contacts(it) {
  const d = it.detail || {};
  const list = it.kind === "runtime" ? [...(d.pull_hosts || []), ...(d.clients || []).map((c) => `client ${c}`)] : d.destinations || [];
  return list.slice(0, 8).join(", ") + (list.length > 8 ? ` … (+${list.length - 8})` : "");
}

/** #/inventory?host=&kind=&flag= */
export async function inventoryView(ctx, params) {
  const q = { host: params.get("host") || "", kind: params.get("kind") || "", flag: params.get("flag") || "" };
  const items = await api.inventory({ ...q, limit: 1000 });
  const go = (patch) => {
    const next = { ...q, ...patch };
    const s = new URLSearchParams(Object.entries(next).filter(([, v]) => v)).toString();
    location.hash = `#/inventory${s ? `?${s}` : ""}`;
  };
  const filters = h("form", { class: "inline-form", onsubmit: (e) => e.preventDefault() },
    h("input", { type: "search", value: q.host, placeholder: "host", "data-testid": "inventory-host", onchange: (e) => go({ host: e.target.value.trim() }) }),
    h("select", { "data-testid": "inventory-kind", onchange: (e) => go({ kind: e.target.value }) },
      KINDS.map(([v, t]) => h("option", { value: v, selected: v === q.kind }, t))),
    h("select", { "data-testid": "inventory-flag", onchange: (e) => go({ flag: e.target.value }) },
      FLAGS.map((f) => h("option", { value: f, selected: f === q.flag }, f || "any flag"))));
  const rows = items.map((it) => [
    link(`#/inventory?host=${encodeURIComponent(it.host_id)}`, it.hostname || it.host_id),
    it.kind.replace("_", " "),
    what(it),
    (it.detail && it.detail.user) || "",
    flagList(it.flags),
    contacts(it),
    h("span", { "data-testid": "first-seen" }, fmtTime(it.first_seen_ms)),
    h("span", { "data-testid": "last-seen", title: fmtUtc(it.last_seen_ms) }, it.ended ? `ended ${fmtAgo(it.last_seen_ms)}` : fmtAgo(it.last_seen_ms)),
  ]);
  const exportQ = new URLSearchParams(Object.entries(q).filter(([, v]) => v)).toString();
  const download = (fmt) => async () => {
    try {
      const blob = await api.exportInventory(fmt, q);
      const a = h("a", { href: URL.createObjectURL(blob), download: `shadowai-inventory.${fmt === "csv" ? "csv" : "ocsf.json"}` });
      a.click();
      URL.revokeObjectURL(a.href);
    } catch (err) {
      ctx.showError(err);
    }
  };
  return [
    h("h1", {}, q.host ? `AI agents at work on ${q.host}` : "AI agents at work (fleet)"),
    card(`${items.length} item${items.length === 1 ? "" : "s"}`,
      h("p", { class: "muted" }, "What actually ran: coding-agent sessions and every process they started, the MCP servers among them, and local model runtimes with their bind address. Nothing is executed or read from tools' configuration."),
      filters,
      h("p", {}, h("button", { "data-testid": "inventory-csv", onclick: download("csv") }, "Export CSV"), " ",
        h("button", { "data-testid": "inventory-ocsf", onclick: download("ocsf") }, "Export OCSF"),
        exportQ ? h("span", { class: "muted" }, ` (filtered: ${exportQ})`) : ""),
      table(["Host", "Kind", "What", "User", "Flags", "Contacted", "First seen", "Last seen"], rows,
        { empty: "No AI agent, MCP server or local runtime reported yet.", testid: "inventory-table" })),
  ];
}
