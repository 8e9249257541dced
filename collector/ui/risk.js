// Risk scores with their factors, from the collector's catalogue (GET /api/v1/risk), cached
// for the session of the page.

import { api } from "./api.js";
import { h, table, riskBand } from "./dom.js";

const cache = new Map();
let unavailable = null;

/** Breakdowns of `ids` (Map id → ServiceRisk); ids the catalogue does not know are absent. */
export async function riskFor(ids) {
  const missing = [...new Set(ids)].filter((id) => !cache.has(id));
  if (missing.length && !unavailable) {
    try {
      for (let i = 0; i < missing.length; i += 200) {
        const part = missing.slice(i, i + 200);
        for (const id of part) cache.set(id, null);
        for (const r of await api.risk(part)) cache.set(r.service_id, r);
      }
    } catch (err) {
      // The catalogue may be missing on this collector: scores still show, without factors.
      unavailable = err.message || String(err);
      console.warn(`risk factors unavailable: ${unavailable}`);
    }
  }
  return new Map(ids.map((id) => [id, cache.get(id) || null]));
}

/** Why there are no factors for a service (for titles). */
export function noFactorsReason() {
  return unavailable ? `factors unavailable: ${unavailable}` : "not in the collector's catalogue";
}

/** A card body: each plan's score and the points every factor adds. */
export function riskBreakdown(score, risk) {
  if (!risk) return h("p", { class: "muted", "data-testid": "risk-breakdown-missing" }, `Risk ${score}/100 (${riskBand(score)}); ${noFactorsReason()}.`);
  return h("div", { "data-testid": "risk-breakdown" },
    h("p", {}, `Score on the finding: ${score}/100 (${riskBand(score)}). The catalogue's factors:`),
    risk.plans.map((p) => h("div", {},
      h("h3", { class: "plan" }, `${p.plan ? `${p.plan} plan` : "all plans"}: ${p.score}/100 (${p.band})`),
      table(["Factor", "Value", "Points"], p.factors.map((f) => [f.factor.replace(/_/g, " "), f.value || "-", `+${f.points} of ${f.max}`]), { testid: "risk-factors" }),
    )),
    risk.evidence.length ? h("p", { class: "muted" }, "Sources: ", risk.evidence.map((u, i) => [i ? ", " : "", h("code", {}, u)])) : null,
  );
}
