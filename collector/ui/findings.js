// The findings table with filters (time, service, category, verdict, host, user, process,
// container), paging by cursor, and CSV export.

import { api } from "./api.js";
import { h, fmtTime, fmtNum, verdictBadge, link, table, card, VERDICTS } from "./dom.js";

export const FILTER_FIELDS = ["service", "category", "verdict", "host", "user", "process", "container"];

// A service named only from another process's or the host's DNS answers (low confidence).
function namingTag(f) {
  if (!(f.flags || []).includes("low_confidence")) return null;
  const how = f.naming ? `${f.naming.source}, ${f.naming.confidence} confidence` : "low confidence";
  return h("span", { class: "tag", title: `named from ${how}`, "data-testid": "low-confidence" }, "low confidence");
}

/** Rows for a findings table; shared by the service, host and user views. */
export function findingRows(items, { sort = false } = {}) {
  const list = sort ? [...items].sort((a, b) => b.last_seen_ms - a.last_seen_ms) : items;
  return list.map((f) => [
    fmtTime(f.last_seen_ms),
    link(`#/host/${encodeURIComponent(f.host_id)}`, f.hostname),
    link(`#/user/${encodeURIComponent(f.user)}`, f.user),
    h(
      "span",
      { class: "proc", title: f.process.exe_sha256 ? `sha256 ${f.process.exe_sha256}` : f.process.exe },
      f.process.exe,
      f.process.container_id ? h("span", { class: "tag" }, `container ${f.process.container_id.slice(0, 12)}`) : null,
    ),
    h("span", {}, link(`#/service/${encodeURIComponent(f.service_id)}`, f.service_name), namingTag(f)),
    f.category,
    verdictBadge(f.verdict),
    f.action === "blocked" ? h("span", { class: "badge action-blocked" }, "blocked") : "allowed",
    fmtNum(f.count),
    (f.evidence.sni[0] || f.evidence.dns_names[0] || f.evidence.ips[0] || "-"),
  ]);
}

export const FINDING_HEADERS = ["Last seen", "Host", "User", "Process", "Service", "Category", "Verdict", "Action", "Count", "Evidence"];

function toMs(local) {
  if (!local) return undefined;
  const ms = Date.parse(local.length > 16 ? `${local}Z` : `${local}:00Z`);
  return Number.isNaN(ms) ? undefined : ms;
}

function toLocal(ms) {
  if (ms === undefined || ms === null || ms === "") return "";
  return new Date(Number(ms)).toISOString().slice(0, 16);
}

/** #/findings?service=…&verdict=…&from_ms=…  */
export async function findingsView(ctx, params) {
  const filters = {};
  for (const k of [...FILTER_FIELDS, "from_ms", "to_ms"]) if (params.get(k)) filters[k] = params.get(k);
  // Without an explicit From, the header's time range applies (to the table and the export).
  const range = ctx.range();
  const query = { ...filters };
  if (!filters.from_ms && !filters.to_ms && range.query.from_ms) query.from_ms = range.query.from_ms;
  const scope = filters.from_ms || filters.to_ms ? "in the chosen time window" : `in ${range.label}`;

  const form = h("form", { class: "filters", "data-testid": "findings-filters" });
  const input = (name, label, placeholder) =>
    h("label", {}, label, h("input", { name, value: filters[name] || "", placeholder, "data-testid": `filter-${name}` }));
  form.append(
    h("label", {}, "From (UTC)", h("input", { type: "datetime-local", name: "from", value: toLocal(filters.from_ms), "data-testid": "filter-from" })),
    h("label", {}, "To (UTC)", h("input", { type: "datetime-local", name: "to", value: toLocal(filters.to_ms), "data-testid": "filter-to" })),
    input("service", "Service", "openai-chatgpt"),
    input("category", "Category", "chat"),
    h(
      "label",
      {},
      "Verdict",
      h(
        "select",
        { name: "verdict", "data-testid": "filter-verdict" },
        h("option", { value: "" }, "any"),
        VERDICTS.map((v) => h("option", { value: v, selected: filters.verdict === v }, v)),
      ),
    ),
    input("host", "Host", "host id or name"),
    input("user", "User", "alice"),
    input("process", "Process", "exe path or name"),
    input("container", "Container", "container id"),
    h("div", { class: "actions" },
      h("button", { type: "submit", class: "primary", "data-testid": "apply-filters" }, "Apply"),
      h("button", { type: "button", onclick: () => (location.hash = "#/findings") }, "Clear"),
    ),
  );
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const fd = new FormData(form);
    const p = new URLSearchParams();
    for (const k of FILTER_FIELDS) if (fd.get(k)) p.set(k, String(fd.get(k)).trim());
    const from = toMs(fd.get("from"));
    const to = toMs(fd.get("to"));
    if (from !== undefined) p.set("from_ms", String(from));
    if (to !== undefined) p.set("to_ms", String(to));
    location.hash = `#/findings${p.toString() ? "?" + p.toString() : ""}`;
  });

  const status = h("p", { class: "muted", "data-testid": "findings-count" });
  const holder = h("div", {});
  const more = h("button", { type: "button", hidden: true, "data-testid": "load-more" }, "Load more");
  const exportBtn = h("button", { type: "button", "data-testid": "export-csv" }, "Export CSV");
  let items = [];
  let cursor = null;

  async function load() {
    const page = await api.findings({ ...query, limit: 100, cursor: cursor || undefined });
    items = items.concat(page.items);
    cursor = page.next_cursor;
    holder.replaceChildren(table(FINDING_HEADERS, findingRows(items), { empty: "No findings match these filters.", testid: "findings-table" }));
    status.textContent = `${items.length} finding${items.length === 1 ? "" : "s"} ${scope}${cursor ? " (more available)" : ""}`;
    more.hidden = !cursor;
  }
  more.addEventListener("click", () => load().catch(ctx.showError));
  exportBtn.addEventListener("click", async () => {
    try {
      const blob = await api.exportCsv(query);
      const url = URL.createObjectURL(blob);
      const a = h("a", { href: url, download: `shadowai-findings-${new Date().toISOString().slice(0, 10)}.csv` });
      document.body.appendChild(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
      ctx.toast(`Exported ${blob.size} bytes of CSV.`);
    } catch (e) {
      ctx.showError(e);
    }
  });
  if (!ctx.can("export")) {
    exportBtn.disabled = true;
    exportBtn.title = "Exports need the analyst, admin or approver role.";
  }
  await load();
  return [
    h("h1", {}, "Findings"),
    card(null, form),
    card(null, h("div", { class: "toolbar" }, status, exportBtn), holder, more),
  ];
}
