// The findings table with filters people can use: pickers filled from the data (services by
// name, categories, verdicts, actions, host groups, risk range), case-insensitive partial
// matches for users / hosts / processes, ISO dates in the viewer's time zone, paging by
// cursor, CSV export. Every filter lives in the URL (shareable); a parameter the collector
// refuses is explained above the table and the form stays as it was.

import { api } from "./api.js";
import { h, fmtTime, fmtNum, fmtBytes, fmtLocal, parseLocal, zoneName, verdictBadge, actionBadge, riskBadge, link, table, card } from "./dom.js";
import { riskFor } from "./risk.js";

/** Filters a person types or picks (URL parameter names = collector query names). */
export const FILTER_FIELDS = ["service", "category", "verdict", "action", "group", "risk_min", "risk_max", "host_contains", "user_contains", "process_contains", "container"];
/** Exact filters set by drill-down links (shown as removable chips). */
const EXACT_FIELDS = ["host", "user", "process"];

function why(f, risk) {
  const row = (k, v) => (v === undefined || v === null || v === "" ? null : [h("dt", {}, k), h("dd", {}, v)]);
  const r = risk && risk.get(f.service_id);
  const plan = r && r.plans[0];
  return h("details", { class: "why", "data-testid": "finding-why" },
    h("summary", {}, f.rule),
    h("dl", {},
      row("deciding rule", f.rule),
      row("policy version", f.policy_version || "built-in catalogue only"),
      row("verdict", f.verdict),
      row("action", f.action.replace("_", " ")),
      row("enforcement layer", f.layer),
      row("risk", `${f.risk_score}/100`),
      plan ? row("risk factors", plan.factors.map((x) => `${x.factor.replace(/_/g, " ")} ${x.value}: +${x.points}`).join("; ")) : null,
      row("data sent / received", f.bytes_out === undefined && f.bytes_in === undefined ? "not counted" : `${fmtBytes(f.bytes_out)} / ${fmtBytes(f.bytes_in)}`),
      row("name from", f.naming ? `${f.naming.source.replace("_", " ")} (${f.naming.confidence} confidence)` : null),
      row("agent session", f.session ? `${f.session.kind}${f.session.version ? " " + f.session.version : ""} (pid ${f.session.root_pid}, ${f.session.id})` : null),
      row("flags", f.flags && f.flags.length ? f.flags.join(", ").replace(/_/g, " ") : null),
      row("window", h("span", {}, fmtTime(f.window_start_ms), " – ", fmtTime(f.window_end_ms))),
      row("first seen", fmtTime(f.first_seen_ms)),
      row("exe sha256", f.process.exe_sha256),
      row("systemd unit", f.process.systemd_unit),
      row("evidence", [...f.evidence.sni, ...f.evidence.dns_names, ...f.evidence.ips].filter((x, i, a) => a.indexOf(x) === i).join(", ")),
      row("note", f.truncated ? "the agent cut some values to fit the collector's limits" : null),
    ));
}

// A service named only from another process's or the host's DNS answers (low confidence).
function namingTag(f) {
  if (!(f.flags || []).includes("low_confidence")) return null;
  const how = f.naming ? `${f.naming.source}, ${f.naming.confidence} confidence` : "low confidence";
  return h("span", { class: "tag", title: `named from ${how}`, "data-testid": "low-confidence" }, "low confidence");
}

/** Rows for a findings table; shared by the service, host and user views. */
export function findingRows(items, { sort = false, risk = null } = {}) {
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
    actionBadge(f.action),
    riskBadge(f.risk_score, risk && risk.get(f.service_id)),
    fmtNum(f.count),
    fmtBytes(f.bytes_out),
    (f.evidence.sni[0] || f.evidence.dns_names[0] || f.evidence.ips[0] || "-"),
    why(f, risk),
  ]);
}

export const FINDING_HEADERS = ["Last seen", "Host", "User", "Process", "Service", "Category", "Verdict", "Action", "Risk", "Count", "Data sent", "Evidence", "Why"];

function select(name, label, values, current, anyLabel = "any") {
  const opts = values.map((v) => h("option", { value: v.value, selected: current === v.value }, v.label));
  if (current && !values.some((v) => v.value === current)) opts.push(h("option", { value: current, selected: true }, current));
  return h("label", {}, label, h("select", { name, "data-testid": `filter-${name}` }, h("option", { value: "" }, anyLabel), opts));
}

/** #/findings?service=…&verdict=…&user_contains=…&from_ms=…  */
export async function findingsView(ctx, params) {
  const filters = {};
  for (const k of [...FILTER_FIELDS, ...EXACT_FIELDS, "from_ms", "to_ms"]) if (params.get(k)) filters[k] = params.get(k);
  // Without an explicit From, the header's time range applies (to the table and the export).
  const range = ctx.range();
  const query = { ...filters };
  if (!filters.from_ms && !filters.to_ms && range.query.from_ms) query.from_ms = range.query.from_ms;
  const scope = filters.from_ms || filters.to_ms ? "in the chosen time window" : `in ${range.label}`;
  const facets = await api.facets(range.query).catch((err) => {
    ctx.showError(err);
    return { services: [], categories: [], verdicts: [], actions: [], groups: [], risk_min: null, risk_max: null };
  });

  const zone = zoneName();
  const form = h("form", { class: "filters", "data-testid": "findings-filters", novalidate: true });
  const input = (name, label, placeholder, attrs = {}) =>
    h("label", {}, label, h("input", { name, value: filters[name] || "", placeholder, "data-testid": `filter-${name.replace("_contains", "")}`, ...attrs }));
  const timeInput = (name, label, ms) =>
    h("label", { title: "ISO date and time in your time zone, e.g. 2026-11-22 14:30" }, `${label} (${zone})`,
      h("input", { name, value: ms ? fmtLocal(Number(ms)) : "", placeholder: "YYYY-MM-DD HH:MM", "data-testid": `filter-${name}`, autocomplete: "off" }));
  const riskHint = facets.risk_min !== null ? `stored: ${facets.risk_min}–${facets.risk_max}` : "0–100";
  form.append(
    timeInput("from", "From", filters.from_ms),
    timeInput("to", "To", filters.to_ms),
    select("service", "Service", facets.services.map((v) => ({ value: v.value, label: `${v.label} (${fmtNum(v.findings)})` })), filters.service),
    select("category", "Category", facets.categories.map((v) => ({ value: v.value, label: v.label.replace(/_/g, " ") })), filters.category),
    select("verdict", "Verdict", facets.verdicts.map((v) => ({ value: v.value, label: v.label })), filters.verdict),
    select("action", "Action", facets.actions.map((v) => ({ value: v.value, label: v.label.replace("_", " ") })), filters.action),
    select("group", "Host group", facets.groups.map((v) => ({ value: v.value || "(none)", label: v.value || "(no group)" })), filters.group),
    input("risk_min", "Risk from", riskHint, { type: "number", min: 0, max: 100, "data-testid": "filter-risk-min" }),
    input("risk_max", "Risk to", riskHint, { type: "number", min: 0, max: 100, "data-testid": "filter-risk-max" }),
    input("host_contains", "Host contains", "web-"),
    input("user_contains", "User contains", "ali"),
    input("process_contains", "Process contains", "python"),
    input("container", "Container", "container id"),
    h("div", { class: "actions" },
      h("button", { type: "submit", class: "primary", "data-testid": "apply-filters" }, "Apply"),
      h("button", { type: "button", onclick: () => (location.hash = "#/findings") }, "Clear"),
    ),
  );
  const chips = h("div", { class: "chips", "data-testid": "exact-filters" },
    EXACT_FIELDS.filter((k) => filters[k]).map((k) => {
      const p = new URLSearchParams(params);
      p.delete(k);
      return h("span", { class: "chip" }, `${k} is exactly ${filters[k]} `, link(`#/findings?${p.toString()}`, "×"));
    }));
  const formError = h("p", { class: "form-error", role: "alert", "data-testid": "filter-error", hidden: true });
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const fd = new FormData(form);
    const p = new URLSearchParams();
    for (const k of FILTER_FIELDS) if (fd.get(k)) p.set(k, String(fd.get(k)).trim());
    for (const k of EXACT_FIELDS) if (filters[k]) p.set(k, filters[k]);
    for (const [field, key] of [["from", "from_ms"], ["to", "to_ms"]]) {
      const ms = parseLocal(fd.get(field));
      if (Number.isNaN(ms)) {
        formError.textContent = `${field === "from" ? "From" : "To"}: "${fd.get(field)}" is not a date; write it as YYYY-MM-DD or YYYY-MM-DD HH:MM (${zone}).`;
        formError.hidden = false;
        return;
      }
      if (ms !== null) p.set(key, String(ms));
    }
    location.hash = `#/findings${p.toString() ? "?" + p.toString() : ""}`;
  });

  const status = h("p", { class: "muted", "data-testid": "findings-count" });
  const holder = h("div", {});
  const more = h("button", { type: "button", hidden: true, "data-testid": "load-more" }, "Load more");
  const exportBtn = h("button", { type: "button", "data-testid": "export-csv" }, "Export CSV");
  let items = [];
  let cursor = null;
  let risk = new Map();

  async function load() {
    const page = await api.findings({ ...query, limit: 100, cursor: cursor || undefined });
    items = items.concat(page.items);
    cursor = page.next_cursor;
    risk = await riskFor(items.map((f) => f.service_id));
    holder.replaceChildren(table(FINDING_HEADERS, findingRows(items, { risk }), { empty: "No findings match these filters.", testid: "findings-table" }));
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
  try {
    await load();
  } catch (err) {
    // A refused parameter: say which and why, keep the form as the URL had it.
    formError.textContent = err.status === 400 ? `The collector refused these filters: ${err.message}` : err.describe ? err.describe() : String(err);
    formError.hidden = false;
    status.textContent = "No results: fix the filters above.";
  }
  return [
    h("h1", {}, "Findings"),
    card(null, form, chips, formError),
    card(null, h("div", { class: "toolbar" }, status, exportBtn), holder, more),
  ];
}
