// Discovery: names the catalogue does not know, seen contacted by AI tools and SDK processes
// or looking like inference APIs, with the hosts and processes behind them. "Propose entry"
// promotes one into the catalogue through a catalogue proposal: validated like a catalogue
// file, its impact shown, approved by a different person, then part of the next bundle.

import { api } from "./api.js";
import { h, link, table, card, fmtTime, fmtNum } from "./dom.js";

const REASON = { ai_process: "used by an AI tool", name_pattern: "looks like an inference API" };
const CATEGORIES = ["model_api", "chat_assistant", "coding_assistant", "agent_platform", "mcp_endpoint", "llm_ops",
  "enterprise_tenant", "ai_search", "image_generation", "video_generation", "audio_generation", "model_hub",
  "writing_assistant", "productivity_ai", "self_hosted_runtime"];
const TRAINING = ["unknown", "yes", "opt_out", "opt_in", "no"];
const RETENTION = ["unknown", "none", "limited", "extended"];

const entryId = (name) => name.replace(/[^a-z0-9]+/g, "-").replace(/^-+|-+$/g, "").slice(0, 64);
const list = (text) => text.split(/[\s,]+/).map((x) => x.trim()).filter(Boolean);
const today = () => new Date().toISOString().slice(0, 10);

function field(label, input) {
  return h("label", { class: "field" }, h("span", {}, label), input);
}

function select(name, values) {
  return h("select", { name, "data-testid": `propose-${name}` }, ...values.map((v) => h("option", { value: v }, v)));
}

function input(name, value, attrs = {}) {
  return h("input", { name, value, "data-testid": `propose-${name}`, ...attrs });
}

function impactView(imp) {
  const l = (v) => (v.length ? v.join(", ") : "-");
  return h("div", { class: "impact", "data-testid": "catalogue-impact" },
    h("h3", {}, "If approved, the catalogue names"),
    table(["Candidates", "Hits", "Findings (7 days)", "Named today as", "Hosts", "Users", "Processes", "Verdict now"],
      [[l(imp.candidates), fmtNum(imp.candidate_hits), String(imp.findings), l(imp.services_now), l(imp.hosts), l(imp.users), l(imp.processes), imp.verdict || "-"]]));
}

/** The form promoting candidate `c`; the result (proposal + impact, or the errors by field) goes to `out`. */
function proposeForm(ctx, c, out) {
  const f = h("form", { class: "propose", "data-testid": "propose-form" },
    field("Id", input("id", entryId(c.name))),
    field("Name", input("name", "")),
    field("Vendor", input("vendor", "")),
    field("Category", select("category", CATEGORIES)),
    field("Hosts (exact)", input("hosts", c.name)),
    field("Domains (and below)", input("domains", "")),
    field("Trains on user data", select("trains", TRAINING)),
    field("Retention", select("retention", RETENTION)),
    field("Jurisdiction", input("jurisdiction", "", { placeholder: "US, EU, DE…" })),
    field("Source (https:// vendor page)", input("source", "")),
    field("Checked", input("checked", today(), { placeholder: "YYYY-MM-DD" })),
    field("Reason", input("reason", "")),
    h("button", { class: "primary", type: "submit", "data-testid": "propose-submit" }, "Propose"));
  f.addEventListener("submit", async (e) => {
    e.preventDefault();
    const v = (n) => f.elements[n].value.trim();
    const body = {
      candidate: c.name,
      reason: v("reason"),
      entry: {
        id: v("id"), name: v("name"), vendor: v("vendor"), category: v("category"), description: "",
        hosts: list(v("hosts")), domains: list(v("domains")),
        risk: { trains_on_user_data: v("trains"), retention: v("retention"), jurisdiction: v("jurisdiction") },
        source: v("source"), checked: v("checked"),
      },
    };
    try {
      const p = await api.proposeCatalogue(body);
      ctx.toast(`Catalogue proposal #${p.id} created: a different person must approve it.`);
      out.replaceChildren(h("p", { "data-testid": "propose-done" }, `Proposal #${p.id} (${p.entry.id}) waits for approval.`),
        p.impact ? impactView(p.impact) : null);
    } catch (err) {
      ctx.showError(err);
    }
  });
  return f;
}

/** The catalogue proposals with approve / reject for a different person (also on #/rules). */
export function catalogueProposalsCard(ctx, proposals) {
  const me = ctx.me();
  const box = h("div", {});
  const decide = (p, approve) => async (e) => {
    const btn = e.currentTarget;
    btn.disabled = true;
    try {
      const done = await api.decideCatalogue(p.id, approve, approve ? "approved in the web UI" : "rejected in the web UI");
      ctx.toast(`Catalogue proposal #${done.id} ${done.status} by ${done.decided_by}.`);
      ctx.rerender();
    } catch (err) {
      btn.disabled = false;
      ctx.showError(err);
    }
  };
  const impact = (p) => async () => {
    try {
      box.replaceChildren(impactView(await api.catalogueImpact(p.id)));
    } catch (err) {
      ctx.showError(err);
    }
  };
  const rows = proposals.map((p) => {
    const own = p.proposed_by === me.name;
    const can = p.status === "pending" && ctx.can("approve") && !own;
    const why = own ? "You proposed this: a different person must approve it." : "Approving needs the approver role.";
    return [
      `#${p.id}`,
      h("code", {}, p.entry.id),
      [...p.entry.hosts, ...p.entry.domains].join(", "),
      p.entry.category,
      p.candidate || "-",
      h("span", { class: `status status-${p.status}` }, p.status),
      p.proposed_by,
      p.decided_by || "-",
      p.entry.source,
      h("span", { class: "buttons" },
        p.status === "pending" ? h("button", { class: "primary", disabled: !can, title: can ? "" : why, onclick: decide(p, true), "data-testid": `catalogue-approve-${p.id}` }, "Approve") : null,
        p.status === "pending" ? h("button", { disabled: !can, title: can ? "" : why, onclick: decide(p, false), "data-testid": `catalogue-reject-${p.id}` }, "Reject") : null,
        h("button", { onclick: impact(p), "data-testid": `catalogue-impact-${p.id}` }, "Impact")),
    ];
  });
  return card(`Catalogue proposals (${proposals.filter((p) => p.status === "pending").length} pending)`,
    h("p", { class: "muted" }, "New catalogue entries join the collector's catalogue when a different person approves them, and reach agents with the next published bundle."),
    table(["ID", "Entry", "Names", "Category", "Candidate", "Status", "Proposed by", "Decided by", "Source", ""], rows,
      { empty: "No catalogue proposals.", testid: "catalogue-proposals-table" }),
    box);
}

/** #/discovery */
export async function discoveryView(ctx) {
  const [cands, proposals] = await Promise.all([api.discovery(), api.catalogueProposals()]);
  const out = h("div", {});
  const canPropose = ctx.me() && ["analyst", "admin"].includes(ctx.me().role);
  const rows = cands.map((c) => [
    h("code", {}, c.name),
    c.reasons.map((r) => REASON[r] || r).join(", "),
    c.alongside.join(", "),
    h("span", {}, ...c.hosts.map((x) => link(`#/host/${encodeURIComponent(x)}`, x, "chip"))),
    c.processes.join(", "),
    fmtNum(c.hits),
    fmtTime(c.last_seen_ms),
    c.proposal
      ? h("span", { class: `status status-${c.proposal.status}`, "data-testid": `discovery-state-${c.name}` },
          c.proposal.status === "approved" ? `promoted (${c.proposal.entry_id})` : `proposal #${c.proposal.id} ${c.proposal.status}`)
      : h("button", {
          disabled: !canPropose, title: canPropose ? "" : "Proposing needs the analyst or admin role.",
          onclick: () => out.replaceChildren(h("h3", {}, `Propose ${c.name} as a catalogue entry`), proposeForm(ctx, c, out)),
          "data-testid": `discovery-propose-${c.name}`,
        }, "Propose entry"),
  ]);
  return [
    h("h1", {}, "Discovery"),
    card(`${cands.length} unknown names`,
      h("p", { class: "muted" }, "Reported by agents at low volume: names their AI tool and SDK processes contacted, and names that look like inference APIs, which no catalogue entry covers."),
      table(["Name", "Why", "Alongside", "Hosts", "Processes", "Hits", "Last seen", ""], rows,
        { empty: "No unknown names reported.", testid: "discovery-table" }),
      out),
    catalogueProposalsCard(ctx, proposals),
  ];
}
