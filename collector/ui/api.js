// Talking to the collector: bearer token from sessionStorage, JSON errors turned into
// ApiError with the server's code and message, 401 ends the session.

const TOKEN_KEY = "shadowai.token";

export class ApiError extends Error {
  constructor(status, code, message, route) {
    super(message);
    this.status = status;
    this.code = code;
    this.route = route;
  }
  describe() {
    if (this.status === 0) return `Cannot reach the collector (${this.route}): ${this.message}`;
    return `${this.route}: HTTP ${this.status} ${this.code}: ${this.message}`;
  }
}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(t) {
  if (t) sessionStorage.setItem(TOKEN_KEY, t);
  else sessionStorage.removeItem(TOKEN_KEY);
}

let onUnauthenticated = () => {};
export function setUnauthenticatedHandler(fn) {
  onUnauthenticated = fn;
}

/** Builds a query string from an object, skipping empty values. */
export function qs(params) {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== undefined && v !== null && v !== "") u.set(k, String(v));
  }
  const s = u.toString();
  return s ? `?${s}` : "";
}

async function request(method, route, { body, bytes, accept = "json", tokenOverride } = {}) {
  const headers = {};
  const t = tokenOverride ?? token();
  if (t) headers["Authorization"] = `Bearer ${t}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (bytes !== undefined) headers["Content-Type"] = "application/octet-stream";
  let resp;
  try {
    resp = await fetch(route, {
      method,
      headers,
      body: bytes !== undefined ? bytes : body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
  } catch (e) {
    throw new ApiError(0, "network", e.message || String(e), `${method} ${route}`);
  }
  if (!resp.ok) {
    let code = "http";
    let message = resp.statusText || "request failed";
    try {
      const j = await resp.json();
      if (j && j.error) {
        code = j.error.code;
        message = j.error.message;
      }
    } catch (_) {
      /* not JSON: keep the status text */
    }
    const err = new ApiError(resp.status, code, message, `${method} ${route.split("?")[0]}`);
    if (resp.status === 401 && tokenOverride === undefined) onUnauthenticated(err);
    throw err;
  }
  if (accept === "blob") return resp.blob();
  if (accept === "text") return resp.text();
  return resp.json();
}

export const api = {
  whoami: (tok) => request("GET", "/api/v1/whoami", { tokenOverride: tok }),
  findings: (q) => request("GET", `/api/v1/findings${qs(q)}`),
  services: (q) => request("GET", `/api/v1/reports/services${qs(q)}`),
  trend: (q) => request("GET", `/api/v1/reports/trend${qs(q)}`),
  groups: (q) => request("GET", `/api/v1/reports/groups${qs(q)}`),
  uploaders: (q) => request("GET", `/api/v1/reports/uploaders${qs(q)}`),
  facets: (q) => request("GET", `/api/v1/reports/facets${qs(q)}`),
  risk: (ids) => (ids.length ? request("GET", `/api/v1/risk${qs({ services: ids.join(",") })}`) : Promise.resolve([])),
  alerts: (q) => request("GET", `/api/v1/alerts${qs(q)}`),
  outbox: (q) => request("GET", `/api/v1/alerts/outbox${qs(q)}`),
  exportCsv: (q) => request("GET", `/api/v1/exports/findings.csv${qs(q)}`, { accept: "blob" }),
  agents: () => request("GET", "/api/v1/agents"),
  revokeAgent: (id, reason) =>
    request("POST", `/api/v1/agents/${encodeURIComponent(id)}/revoke`, { body: { reason } }),
  proposals: (status) => request("GET", `/api/v1/proposals${qs({ status })}`),
  propose: (p) => request("POST", "/api/v1/proposals", { body: p }),
  approve: (id, note) => request("POST", `/api/v1/proposals/${id}/approve`, { body: { note } }),
  reject: (id, note) => request("POST", `/api/v1/proposals/${id}/reject`, { body: { note } }),
  policy: () => request("GET", "/api/v1/policy"),
  bundles: () => request("GET", "/api/v1/bundles"),
  rollouts: () => request("GET", "/api/v1/rollouts"),
  advanceRollout: (id, percent) =>
    request("POST", `/api/v1/rollouts/${id}/advance`, { body: { percent } }),
  rolloutAgents: (id) => request("GET", `/api/v1/rollouts/${id}/agents`),
  compose: (req) => request("POST", "/api/v1/policy/compose", { body: req }),
  uploadBundle: (version, note, bytes) =>
    request("POST", `/api/v1/bundles${qs({ version, note })}`, { bytes }),
  startRollout: (bundleVersion, canaryGroup) =>
    request("POST", "/api/v1/rollouts", { body: { bundle_version: bundleVersion, canary_group: canaryGroup } }),
  catalogue: () => request("GET", "/api/v1/catalogue"),
  discovery: () => request("GET", "/api/v1/discovery"),
  discoveryDraft: (name) => request("GET", `/api/v1/discovery/draft${qs({ name })}`, { accept: "text" }),
  catalogueProposals: () => request("GET", "/api/v1/discovery/proposals"),
  proposeCatalogue: (body) => request("POST", "/api/v1/discovery/proposals", { body }),
  catalogueImpact: (id) => request("GET", `/api/v1/discovery/proposals/${id}/impact`),
  decideCatalogue: (id, approve, note) => request("POST", `/api/v1/discovery/proposals/${id}/${approve ? "approve" : "reject"}`, { body: { note } }),
  impact: (id) => request("GET", `/api/v1/proposals/${id}/impact`),
  rollbackRollout: (id, reason) =>
    request("POST", `/api/v1/rollouts/${id}/rollback`, { body: { reason } }),
  composeRollback: (id, req) => request("POST", `/api/v1/rollouts/${id}/rollback/compose`, { body: req }),
  inventory: (q) => request("GET", `/api/v1/inventory${qs(q)}`),
  exportInventory: (fmt, q) =>
    request("GET", `/api/v1/exports/inventory.${fmt === "csv" ? "csv" : "ocsf.json"}${qs(q)}`, { accept: "blob" }),
  audit: (afterSeq, limit) => request("GET", `/api/v1/audit${qs({ after_seq: afterSeq, limit })}`),
};
