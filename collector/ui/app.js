// shadowai web UI: hash router, token login (sessionStorage), layout, errors.

import { api, ApiError, setToken, token, setUnauthenticatedHandler } from "./api.js";
import { h } from "./dom.js";
import { overviewView, serviceView, hostView, userView } from "./overview.js";
import { findingsView } from "./findings.js";
import { rulesView, fleetView, auditView } from "./admin.js";
import { catalogueView } from "./catalogue.js";
import { discoveryView } from "./discovery.js";
import { inventoryView } from "./inventory.js";
import { whoView } from "./who.js";
import { alertsView } from "./alerts.js";

/** What each role may do (mirrors the collector's capability table). */
const CAPS = {
  viewer: ["read"],
  analyst: ["read", "export", "propose"],
  admin: ["read", "export", "audit", "admin", "propose"],
  approver: ["read", "export", "audit", "approve"],
};

// Hour buckets up to 7 days, day buckets beyond (the collector's default too).
const RANGES = {
  "24h": { label: "the last 24 hours", days: 2, ms: 86400000, bucket: "hour" },
  "7d": { label: "the last 7 days", days: 7, ms: 7 * 86400000, bucket: "hour" },
  "30d": { label: "the last 30 days", days: 30, ms: 30 * 86400000, bucket: "day" },
  all: { label: "all time (chart: last 90 days)", days: 90, ms: null, bucket: "day" },
};

let me = null;
const main = document.getElementById("main");
const banner = document.getElementById("error");
const toasts = document.getElementById("toasts");

const ctx = {
  me: () => me,
  can: (cap) => !!me && (CAPS[me.role] || []).includes(cap),
  range() {
    const key = sessionStorage.getItem("shadowai.range") || "7d";
    const r = RANGES[key] || RANGES["7d"];
    return { ...r, key, query: r.ms ? { from_ms: Date.now() - r.ms } : {} };
  },
  /** The range's query for the trend report (explicit bucket: "all" has no from_ms). */
  trendQuery(extra = {}) {
    const r = this.range();
    return { ...r.query, ...extra, bucket: r.bucket };
  },
  showError(err) {
    const text = err instanceof ApiError ? err.describe() : err && err.message ? err.message : String(err);
    banner.replaceChildren(h("strong", {}, "Error: "), text, h("button", { class: "close", "aria-label": "dismiss", onclick: () => (banner.hidden = true) }, "×"));
    banner.hidden = false;
  },
  toast(text) {
    const t = h("div", { class: "toast", role: "status" }, text);
    toasts.appendChild(t);
    setTimeout(() => t.remove(), 6000);
  },
  rerender: () => render(),
};

setUnauthenticatedHandler((err) => {
  setToken(null);
  me = null;
  sessionStorage.setItem("shadowai.loginMessage", `Signed out: ${err.message}`);
  location.hash = "#/login";
});

function loginView() {
  const msg = sessionStorage.getItem("shadowai.loginMessage");
  sessionStorage.removeItem("shadowai.loginMessage");
  const input = h("textarea", { name: "token", rows: 2, required: true, autocomplete: "off", spellcheck: "false", placeholder: "sau_…", "data-testid": "token-input" });
  const status = h("p", { class: "error-text", "data-testid": "login-error", hidden: !msg }, msg || "");
  const form = h("form", { class: "login", "data-testid": "login-form" },
    h("h1", {}, "Sign in to shadowai"),
    h("p", { class: "muted" }, "Paste your API token. It is kept only in this browser tab (sessionStorage) and sent as a bearer token."),
    input, status,
    h("button", { type: "submit", class: "primary", "data-testid": "login-submit" }, "Sign in"),
  );
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const t = input.value.trim();
    try {
      me = await api.whoami(t);
      setToken(t);
      location.hash = "#/overview";
    } catch (err) {
      status.textContent = err instanceof ApiError && err.status === 401
        ? "This token is not valid (unknown, revoked or mistyped)."
        : err instanceof ApiError ? err.describe() : String(err);
      status.hidden = false;
    }
  });
  return [form];
}

function signOut() {
  setToken(null);
  me = null;
  toasts.replaceChildren();
  location.hash = "#/login";
}

function nav(route) {
  const item = (href, text, cap) =>
    cap && !ctx.can(cap) ? null : h("a", { href, class: route.startsWith(href) ? "active" : "", "data-testid": `nav-${text.toLowerCase().replace(/\s+/g, "-")}` }, text);
  const range = h("select", { "aria-label": "time range", "data-testid": "range" },
    Object.entries(RANGES).map(([k, r]) => h("option", { value: k, selected: ctx.range().key === k }, r.label)));
  range.addEventListener("change", () => {
    sessionStorage.setItem("shadowai.range", range.value);
    render();
  });
  return h("header", { class: "top" },
    h("a", { class: "brand", href: "#/overview" }, "shadowai"),
    h("nav", {}, item("#/overview", "Overview"), item("#/findings", "Findings"), item("#/who", "Who"), item("#/alerts", "Alerts"), item("#/inventory", "Inventory"), item("#/catalogue", "Catalogue"), item("#/discovery", "Discovery"), item("#/rules", "Rules"), item("#/fleet", "Fleet"), item("#/audit", "Audit log", "audit")),
    h("div", { class: "who" }, range,
      h("span", { "data-testid": "whoami" }, `${me.name} (${me.role})`),
      h("button", { "data-testid": "logout", onclick: signOut }, "Sign out")),
  );
}

async function route(path, params) {
  const [, view, ...rest] = path.split("/");
  const arg = decodeURIComponent(rest.join("/"));
  switch (view) {
    case "overview": case "": case undefined: return overviewView(ctx);
    case "service": return serviceView(ctx, arg);
    case "host": return hostView(ctx, arg);
    case "user": return userView(ctx, arg);
    case "findings": return findingsView(ctx, params);
    case "who": return whoView(ctx, params);
    case "alerts": return alertsView(ctx, params);
    case "catalogue": return catalogueView(ctx, params);
    case "discovery": return discoveryView(ctx);
    case "inventory": return inventoryView(ctx, params);
    case "rules": return rulesView(ctx);
    case "fleet": return fleetView(ctx);
    case "audit": return auditView(ctx);
    default: return [h("h1", {}, "Not found"), h("p", {}, `No page ${path}.`)];
  }
}

let generation = 0;
async function render() {
  const gen = ++generation;
  const hash = location.hash.replace(/^#/, "") || "/overview";
  const [path, query] = hash.split("?");
  banner.hidden = true;
  if (path === "/login" || !token()) {
    document.body.classList.add("logged-out");
    document.getElementById("top").replaceChildren();
    main.replaceChildren(...loginView());
    if (path !== "/login") location.hash = "#/login";
    return;
  }
  document.body.classList.remove("logged-out");
  try {
    if (!me) me = await api.whoami();
  } catch (err) {
    if (gen === generation) ctx.showError(err);
    return;
  }
  document.getElementById("top").replaceChildren(nav(path));
  main.replaceChildren(h("p", { class: "muted loading", "data-testid": "loading" }, "Loading…"));
  try {
    const nodes = await route(path, new URLSearchParams(query || ""));
    document.title = `shadowai · ${path.split("/")[1] || "overview"}`;
    if (gen !== generation) return; // a newer navigation won
    main.replaceChildren(...nodes.filter(Boolean));
    main.dataset.view = path.split("/")[1] || "overview";
  } catch (err) {
    if (gen !== generation) return;
    main.replaceChildren(h("p", { class: "empty" }, "This page could not be loaded."));
    ctx.showError(err);
  }
}

window.addEventListener("hashchange", render);
render();
