// Rules and pending approvals, fleet health, the audit log.

import { api } from "./api.js";
import { h, fmtTime, fmtAgo, fmtNum, verdictBadge, link, table, card } from "./dom.js";
import { verifyChain } from "./auditchain.js";
import { publishCard, advanceControl, stagesButton, rollbackForm } from "./publish.js";
import { catalogueProposalsCard } from "./discovery.js";

const scopeText = (s) => (s.kind === "group" ? `group ${s.group}` : "whole fleet");

/** #/rules */
export async function rulesView(ctx) {
  const [proposals, policy, rollouts, bundles, catalogueProposals] = await Promise.all([api.proposals(), api.policy(), api.rollouts(), api.bundles(), api.catalogueProposals()]);
  const me = ctx.me();
  const pending = proposals.filter((p) => p.status === "pending");

  const decide = (p, approve) => async (e) => {
    const btn = e.currentTarget;
    btn.disabled = true;
    try {
      const done = approve ? await api.approve(p.id, "approved in the web UI") : await api.reject(p.id, "rejected in the web UI");
      ctx.toast(`Proposal #${done.id} ${done.status} by ${done.decided_by}.`);
      ctx.rerender();
    } catch (err) {
      btn.disabled = false;
      ctx.showError(err);
    }
  };
  const impactBox = h("div", { class: "impact", "data-testid": "impact" });
  const showImpact = (p) => async () => {
    try {
      const imp = await api.impact(p.id);
      const v = (x) => x || "absent";
      impactBox.replaceChildren(
        h("h3", {}, `If proposal #${p.id} is approved`),
        table(["Service", "For", "Verdict"], imp.changes.map((c) => [c.service_id, c.who, `${v(c.old)} → ${v(c.new)}`]),
          { empty: "No verdict changes.", testid: "impact-changes" }),
        table(["Service", "Findings (7 days)", "Hosts", "Users", "Processes"],
          imp.affected.map((a) => [a.service_id, String(a.findings), a.hosts.join(", "), a.users.join(", "), a.processes.join(", ")]),
          { empty: "Nobody used these services in the last 7 days.", testid: "impact-affected" }),
      );
    } catch (err) {
      ctx.showError(err);
    }
  };
  const pendingRows = pending.map((p) => {
    const own = p.proposed_by === me.name;
    const canApprove = ctx.can("approve") && !own;
    const why = own ? "You proposed this: a different person must approve it." : "Approving needs the approver role.";
    return [
      `#${p.id}`,
      link(`#/service/${encodeURIComponent(p.service_id)}`, p.service_id),
      verdictBadge(p.verdict),
      scopeText(p.scope),
      p.reason,
      p.proposed_by,
      fmtTime(p.proposed_ms),
      h("span", { class: "buttons" },
        h("button", { class: "primary", disabled: !canApprove, title: canApprove ? "" : why, onclick: decide(p, true), "data-testid": `approve-${p.id}` }, "Approve"),
        h("button", { disabled: !canApprove, title: canApprove ? "" : why, onclick: decide(p, false), "data-testid": `reject-${p.id}` }, "Reject"),
        h("button", { onclick: showImpact(p), "data-testid": `impact-${p.id}` }, "Impact"),
      ),
    ];
  });
  const history = proposals.filter((p) => p.status !== "pending").map((p) => [
    `#${p.id}`, p.service_id, verdictBadge(p.verdict), scopeText(p.scope), h("span", { class: `status status-${p.status}` }, p.status),
    p.proposed_by, p.decided_by || "-", fmtTime(p.decided_ms ?? p.proposed_ms), p.decision_note || "",
  ]);

  const stagesBox = h("div", { class: "stages-box", "data-testid": "stages-box" });
  const rolloutRows = rollouts.map((r) => [
    `#${r.id}`, r.bundle_version, r.previous_version || "-", h("span", { class: `status stage-${r.stage}` }, r.stage + (r.stage === "percent" ? ` ${r.percent}%` : "")),
    r.canary_group, r.created_by, fmtTime(r.updated_ms),
    h("span", { class: "buttons" },
      stagesButton(ctx, r, stagesBox),
      ctx.can("admin") && (r.stage === "canary" || r.stage === "percent") ? advanceControl(ctx, r) : null,
      ctx.can("admin") && (r.stage === "canary" || r.stage === "percent" || r.stage === "all")
        ? h("button", { class: "danger", "data-testid": `rollback-${r.id}`, onclick: () => rollbackForm(ctx, r, stagesBox) }, "Roll back") : null),
  ]);

  return [
    h("h1", {}, "Rules and approvals"),
    card(`Pending approvals (${pending.length})`,
      h("p", { class: "muted" }, "A change that blocks a service takes effect only when a different person with the approver role approves it."),
      table(["ID", "Service", "Verdict", "Scope", "Reason", "Proposed by", "Proposed", ""], pendingRows, { empty: "Nothing waits for approval.", testid: "pending-table" }),
      impactBox),
    catalogueProposalsCard(ctx, catalogueProposals),
    card("Effective policy", table(["Service", "Verdict", "Scope", "Proposal", "Approved by", "Since"],
      policy.map((e) => [link(`#/service/${encodeURIComponent(e.service_id)}`, e.service_id), verdictBadge(e.verdict), scopeText(e.scope), `#${e.proposal_id}`, e.decided_by || "-", fmtTime(e.effective_ms)]),
      { empty: "No organisation policy yet: catalogue defaults apply.", testid: "policy-table" })),
    ctx.can("admin") ? publishCard(ctx) : null,
    card("Rollouts", table(["ID", "Bundle", "Previous", "Stage", "Canary group", "By", "Updated", ""], rolloutRows, { empty: "No rollouts yet.", testid: "rollouts-table" }), stagesBox),
    card("Bundles", table(["Version", "Size", "SHA-256", "Uploaded by", "Uploaded", "Note"],
      bundles.map((b) => [b.version, fmtNum(b.size), h("code", {}, b.sha256.slice(0, 16) + "…"), b.uploaded_by, fmtTime(b.uploaded_ms), b.note || ""]),
      { empty: "No bundles uploaded." })),
    card("Decided proposals", table(["ID", "Service", "Verdict", "Scope", "Status", "Proposed by", "Decided by", "When", "Note"], history, { empty: "No decisions yet.", testid: "decided-table" })),
  ];
}

/** An agent not seen for this long is shown as stale. */
const STALE_MS = 10 * 60 * 1000;

/** What an agent's heartbeat says its spool lost or set aside ("-" for agents that do not report it). */
function pipelineCell(p) {
  if (!p) return "-";
  const parts = [];
  if (p.spool_dropped_batches) parts.push(`${fmtNum(p.spool_dropped_batches)} batches (${fmtNum(p.spool_dropped_bytes)} B) dropped`);
  if (p.spool_lost_findings) parts.push(`${fmtNum(p.spool_lost_findings)} findings lost`);
  if (p.quarantined_batches) parts.push(`${fmtNum(p.quarantined_batches)} quarantined`);
  return h("span", { class: parts.length ? "warn" : "", "data-testid": "agent-spool" }, parts.length ? parts.join(", ") : "none");
}

/** #/fleet */
export async function fleetView(ctx) {
  const agents = await api.agents();
  const now = Date.now();
  const live = agents.filter((a) => !a.revoked);
  const stale = live.filter((a) => !a.last_seen_ms || now - a.last_seen_ms > STALE_MS);
  const lost = agents.reduce((s, a) => s + a.lost_events, 0);
  const versions = new Map();
  for (const a of live) versions.set(a.agent_version || "unknown", (versions.get(a.agent_version || "unknown") || 0) + 1);
  const revoke = (a) => async () => {
    const reason = prompt(`Revoke agent ${a.agent_id} on ${a.hostname}? Its token stops working at once. Reason:`);
    if (reason === null) return;
    try {
      await api.revokeAgent(a.agent_id, reason);
      ctx.rerender();
    } catch (err) {
      ctx.showError(err);
    }
  };
  const rows = agents.map((a) => {
    const isStale = !a.revoked && (!a.last_seen_ms || now - a.last_seen_ms > STALE_MS);
    // Sensor hooks that did not attach on the host: the agent runs, but is blind there.
    const missing = (a.pipeline && a.pipeline.hooks_missing) || [];
    return [
      link(`#/host/${encodeURIComponent(a.host_id)}`, a.hostname),
      a.group || "-",
      h("span", { class: isStale ? "warn" : "" }, fmtAgo(a.last_seen_ms, now)),
      a.agent_version || "-",
      a.bundle_version || "-",
      a.mode || "-",
      h("span", { class: a.lost_events ? "warn" : "" }, fmtNum(a.lost_events)),
      pipelineCell(a.pipeline),
      h("span", {},
        a.revoked ? h("span", { class: "badge verdict-blocked" }, "revoked") : isStale ? h("span", { class: "badge verdict-tolerated" }, "stale") : missing.length ? h("span", { class: "badge verdict-tolerated", "data-testid": "agent-degraded" }, "degraded") : h("span", { class: "badge verdict-sanctioned" }, "healthy"),
        missing.length ? h("span", { class: "badge verdict-blocked", "data-testid": "agent-hooks-missing", title: "sensor hooks that did not attach: this host's agent cannot see or enforce what they cover" }, `hooks missing: ${missing.join(", ")}`) : "",
        // Enrollments of this host id with another host key were refused: a cloned machine or a takeover attempt.
        a.pipeline && a.pipeline.identity && a.pipeline.identity !== "ok" ? h("span", { class: "badge verdict-tolerated", "data-testid": "agent-identity" }, a.pipeline.identity.replaceAll("_", " ")) : "",
        a.identity_conflicts ? h("span", { class: "badge verdict-blocked", "data-testid": "host-seen-twice", title: `last ${fmtAgo(a.last_identity_conflict_ms, now)}` }, `host seen twice (${fmtNum(a.identity_conflicts)})`) : ""),
      ctx.can("admin") && !a.revoked ? h("button", { class: "danger", onclick: revoke(a) }, "Revoke") : "",
    ];
  });
  return [
    h("h1", {}, "Fleet health"),
    h("div", { class: "stats" },
      h("div", { class: "stat", "data-testid": "fleet-agents" }, h("div", { class: "value" }, fmtNum(live.length)), h("div", { class: "label" }, "active agents")),
      h("div", { class: `stat ${stale.length ? "bad" : ""}` }, h("div", { class: "value" }, fmtNum(stale.length)), h("div", { class: "label" }, "not seen for 10 min")),
      h("div", { class: `stat ${lost ? "bad" : ""}`, "data-testid": "fleet-lost" }, h("div", { class: "value" }, fmtNum(lost)), h("div", { class: "label" }, "lost events")),
      h("div", { class: "stat" }, h("div", { class: "value" }, fmtNum(agents.length - live.length)), h("div", { class: "label" }, "revoked")),
    ),
    card("Agent versions", h("p", {}, [...versions.entries()].map(([v, n]) => h("span", { class: "tag" }, `${v}: ${n}`)))),
    card("Agents", table(["Host", "Group", "Last seen", "Version", "Bundle", "Mode", "Lost events", "Spool losses", "State", ""], rows, { empty: "No agents enrolled yet.", testid: "agents-table" })),
  ];
}

/** #/audit */
export async function auditView(ctx) {
  const holder = h("div", {});
  const chain = h("p", { class: "chain", "data-testid": "chain-status" });
  const more = h("button", { type: "button", hidden: true }, "Load more");
  let entries = [];
  async function load() {
    const after = entries.length ? entries[entries.length - 1].seq : 0;
    const page = await api.audit(after, 200);
    entries = entries.concat(page);
    more.hidden = page.length < 200;
    const v = await verifyChain(entries);
    chain.className = `chain chain-${v.status}`;
    chain.textContent =
      v.status === "verified"
        ? `✓ Hash chain verified in this browser: ${v.count} entries (seq 1–${v.count}), head ${v.head.slice(0, 16)}…`
        : v.status === "broken"
          ? `✗ The hash chain breaks at seq ${v.seq}: ${v.reason}. Export the log and run shadowai audit verify.`
          : `The chain could not be checked in the browser at seq ${v.seq ?? "-"}: ${v.reason}. Use shadowai audit verify.`;
    holder.replaceChildren(table(["Seq", "Time", "Actor", "Action", "Target", "Details", "Hash"], entries.map((e) => [
      String(e.seq), fmtTime(e.ts_ms), e.actor, h("code", {}, e.action), e.target,
      h("code", { class: "details" }, JSON.stringify(e.details)), h("code", { title: `prev ${e.prev_hash}\nhash ${e.hash}` }, e.hash.slice(0, 12) + "…"),
    ]), { empty: "The audit log is empty.", testid: "audit-table" }));
  }
  more.addEventListener("click", () => load().catch(ctx.showError));
  await load();
  return [
    h("h1", {}, "Audit log"),
    h("p", { class: "muted" }, "Append-only and hash-chained. Check an export offline: ", h("code", {}, "shadowai audit export -o audit.json && shadowai audit verify audit.json")),
    card(null, chain, holder, more),
  ];
}
