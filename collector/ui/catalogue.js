// The catalogue browser: every AI service the collector knows (not only those already seen),
// with its facts, and "propose a verdict" for analysts and admins (an analyst's proposal
// always waits for a second person).

import { api } from "./api.js";
import { h, link, table, card, riskBadge } from "./dom.js";

const VERDICTS = ["sanctioned", "tolerated", "unsanctioned", "blocked"];

function proposeForm(ctx, svc) {
  const verdict = h("select", { name: "verdict", "data-testid": `cat-verdict-${svc.id}` }, VERDICTS.map((v) => h("option", { value: v }, v)));
  const group = h("input", { name: "group", placeholder: "agent group (empty: whole fleet)", "data-testid": `cat-group-${svc.id}` });
  const reason = h("input", { name: "reason", required: true, placeholder: "why (required)", "data-testid": `cat-reason-${svc.id}` });
  const submit = async (e) => {
    e.preventDefault();
    const g = group.value.trim();
    try {
      const p = await api.propose({
        service_id: svc.id,
        verdict: verdict.value,
        scope: g ? { kind: "group", group: g } : { kind: "fleet" },
        reason: reason.value,
      });
      ctx.toast(`Proposal #${p.id}: ${svc.id} -> ${p.verdict} is ${p.status}.`);
      location.hash = "#/rules";
    } catch (err) {
      ctx.showError(err);
    }
  };
  return h("form", { class: "inline-form", onsubmit: submit, "data-testid": `cat-propose-${svc.id}` },
    verdict, group, reason, h("button", { class: "primary", type: "submit" }, "Propose"));
}

/** #/catalogue */
export async function catalogueView(ctx, params) {
  const cat = await api.catalogue();
  const q = (params.get("q") || "").toLowerCase();
  const shown = cat.services.filter((s) =>
    !q || [s.id, s.name, s.vendor, s.category, s.risk.jurisdiction].some((x) => x.toLowerCase().includes(q)));
  const search = h("input", {
    type: "search", value: q, placeholder: "filter: name, vendor, category, jurisdiction", "data-testid": "catalogue-filter",
    onchange: (e) => { location.hash = `#/catalogue?q=${encodeURIComponent(e.target.value)}`; },
  });
  const rows = shown.map((s) => [
    link(`#/service/${encodeURIComponent(s.id)}`, s.name),
    h("code", {}, s.id),
    s.vendor,
    s.category,
    s.risk.jurisdiction,
    s.risk.trains_on_user_data,
    s.risk.retention,
    riskBadge(s.risk.score),
    ctx.can("propose") ? proposeForm(ctx, s) : "",
  ]);
  return [
    h("h1", {}, "AI service catalogue"),
    card(`${shown.length} of ${cat.services.length} services`,
      h("p", { class: "muted" }, "Every service the collector checks proposals and bundles against. A blocking verdict waits for a second person."),
      search,
      table(["Service", "Id", "Vendor", "Category", "Jurisdiction", "Trains on user data", "Retention", "Risk", ""], rows,
        { empty: "No service matches.", testid: "catalogue-table" })),
  ];
}
