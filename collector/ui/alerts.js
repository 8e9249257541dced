// First-use alerts: the first unsanctioned or blocked use of a service in the fleet, on a host
// or by a user (raised once per pair by the collector, also POSTed to the alert webhook).
// #/alerts?before=ID

import { api } from "./api.js";
import { h, fmtTime, verdictBadge, actionBadge, riskBadge, link, table, card } from "./dom.js";
import { riskFor } from "./risk.js";

const REASON = { new_in_fleet: "first use in the fleet", new_host: "first use on this host", new_user: "first use by this user" };

/** Delivery to the webhook: totals by state, and the latest notices and failures. */
function deliveryCard(outbox) {
  if (outbox.error) return card("Delivery to the webhook", h("p", { class: "error" }, `Delivery state unavailable: ${outbox.error}`));
  const rows = outbox.items
    .filter((e) => e.kind === "notice" || e.state !== "delivered")
    .slice(0, 20)
    .map((e) => [
      fmtTime(e.created_ms),
      e.kind === "notice" ? e.item.kind.replace(/_/g, " ") : "first use",
      link(`#/host/${encodeURIComponent(e.host_id)}`, e.host_id),
      h("span", { class: `badge delivery-${e.state}`, "data-testid": "delivery-state" }, e.state.replace("_", " ")),
      String(e.attempts),
      e.kind === "notice" ? e.item.summary : `${e.item.verdict} ${e.item.service_name} by ${e.item.user}`,
      e.last_error || "",
    ]);
  return card("Delivery to the webhook",
    h("p", { "data-testid": "outbox-totals" }, `${outbox.pending} pending, ${outbox.delivered} delivered, ${outbox.failed} failed, ${outbox.not_sent} not sent (no webhook configured). Pending alerts survive a restart and are retried with back-off.`),
    table(["Raised", "Kind", "Host", "State", "Attempts", "What", "Last error"], rows, { testid: "outbox-table", empty: "No notices, nothing pending or failed." }));
}

export async function alertsView(ctx, params) {
  const before = params.get("before");
  const [page, outbox] = await Promise.all([
    api.alerts({ before: before || undefined, limit: 50 }),
    api.outbox({ limit: 100 }).catch((err) => ({ error: err.message || String(err) })),
  ]);
  // The score with its catalogue factors on hover, as everywhere a score is shown.
  const risk = await riskFor(page.items.map((a) => a.service_id));
  const rows = page.items.map((a) => [
    fmtTime(a.created_ms),
    h("span", { "data-testid": "alert-reasons" }, a.reasons.map((r) => REASON[r] || r).join(", ")),
    link(`#/service/${encodeURIComponent(a.service_id)}`, a.service_name),
    verdictBadge(a.verdict),
    actionBadge(a.action),
    riskBadge(a.risk_score, risk.get(a.service_id)),
    link(`#/host/${encodeURIComponent(a.host_id)}`, a.hostname),
    link(`#/user/${encodeURIComponent(a.user)}`, a.user),
    h("span", { class: "proc" }, a.exe),
    link(a.link, "findings →"),
  ]);
  return [
    h("h1", {}, "First-use alerts"),
    h("p", { class: "muted" }, "Raised once per service and fleet, host or user, the first time it is used with an unsanctioned or blocked verdict; forwarded to the configured alert webhook."),
    card(null, table(["Raised", "Why", "Service", "Verdict", "Action", "Risk", "Host", "User", "Process", ""], rows, { testid: "alerts-table", empty: "No alerts yet." }),
      h("div", { class: "pager" },
        before ? link("#/alerts", "← Newest") : null,
        page.next_before ? link(`#/alerts?before=${page.next_before}`, "Older →") : null)),
    deliveryCard(outbox),
  ];
}
