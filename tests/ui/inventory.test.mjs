// The Inventory page (issue 12) in Debian's Chromium (playwright-core, no downloaded browser)
// against a real collector seeded by tests/tests/sessions_ui.rs.
//
// Environment: SHADOWAI_URL, SHADOWAI_FIXTURE (JSON: admin token and what the seeded
// inventory must look like), SCREENSHOT_DIR, CHROMIUM.
// Prints one "ok - …" line per step and ends with "N passed, N failed"; exit code 1 on failure.

import { chromium } from "playwright-core";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const base = process.env.SHADOWAI_URL;
const fx = JSON.parse(process.env.SHADOWAI_FIXTURE || "{}");
const shots = process.env.SCREENSHOT_DIR || mkdtempSync(join(tmpdir(), "shadowai-shots-"));
if (!base || !fx.admin_token) {
  console.error("SHADOWAI_URL and SHADOWAI_FIXTURE (admin_token, …) must be set");
  process.exit(2);
}

let passed = 0;
let failed = 0;
const check = (cond, what) => {
  if (!cond) throw new Error(`assertion failed: ${what}`);
};
async function step(name, fn) {
  try {
    await fn();
    passed++;
    console.log(`ok - ${name}`);
  } catch (e) {
    failed++;
    console.log(`not ok - ${name}\n  ${String(e && e.stack ? e.stack : e).split("\n").join("\n  ")}`);
    await page.screenshot({ path: join(shots, `FAILED-${name.replace(/\W+/g, "_")}.png`), fullPage: true }).catch(() => {});
    throw e;
  }
}

const profile = mkdtempSync(join(tmpdir(), "shadowai-chromium-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  timeout: 60000,
  viewport: { width: 1440, height: 900 },
  timezoneId: fx.timezone || "Asia/Kolkata",
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
const page = context.pages()[0] || (await context.newPage());
page.setDefaultTimeout(15000);
const errors = [];
page.on("pageerror", (e) => errors.push(`page error: ${e.message}`));
page.on("console", (m) => {
  if (m.type() === "error" && !/favicon\.ico/.test(m.text() + (m.location().url || ""))) errors.push(m.text());
});
const foreign = [];
page.on("request", (r) => {
  const u = r.url();
  if (!u.startsWith(base) && !u.startsWith("blob:") && !u.startsWith("data:")) foreign.push(u);
});

const shot = (name) => page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
const rows = () => page.locator('[data-testid="inventory-table"] tbody tr');
// The table re-renders on every route change: wait for the heading and row count wanted.
async function settle(heading, n) {
  await page.locator("h1", { hasText: heading }).waitFor();
  await page.waitForFunction(
    (n) => document.querySelectorAll('[data-testid="inventory-table"] tbody tr').length === n,
    n,
  );
}
// "2026-11-26 13:02 GMT+5:30" in the page's zone, as dom.js renders it.
const local = (ms) =>
  page.evaluate((ms) => {
    const f = new Intl.DateTimeFormat("sv-SE", { year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", hour12: false });
    return f.format(new Date(ms));
  }, ms);
const utc = (ms) => new Date(ms).toISOString().slice(0, 16).replace("T", " ") + " UTC";

try {
  await step("the admin logs in and opens the fleet-wide inventory", async () => {
    await page.goto(`${base}/#/login`);
    await page.getByTestId("token-input").fill(fx.admin_token);
    await page.getByTestId("login-submit").click();
    await page.getByTestId("whoami").waitFor();
    await page.locator("nav a", { hasText: "Inventory" }).click();
    await settle("AI agents at work (fleet)", fx.total);
    const text = (await rows().allInnerTexts()).join("\n");
    for (const want of ["dev-01", "dev-02", "Gemini CLI", "Claude Code", "@modelcontextprotocol/server-filesystem", "Ollama", "0.0.0.0:11434 (exposed)", "unpinned"]) {
      check(text.includes(want), `the fleet view shows ${want}: ${text}`);
    }
    await shot("inventory-fleet");
  });

  await step("flags are shown on the item that raised them, and only there", async () => {
    const gemini = rows().filter({ hasText: "Gemini CLI" });
    check((await gemini.count()) === 1, "one Gemini CLI row");
    check((await gemini.getByTestId("flag-permission_bypass").count()) === 1, "permission_bypass on the Gemini session");
    check((await gemini.getByTestId("flag-agent_as_root").count()) === 1, "agent_as_root on the Gemini session");
    const claude = rows().filter({ hasText: "Claude Code" });
    check((await claude.locator("[data-testid^=flag-]").count()) === 0, "no flag on the Claude Code session");
    const ollama = rows().filter({ hasText: "Ollama" });
    check((await ollama.getByTestId("flag-runtime_exposed").count()) === 1, "runtime_exposed on Ollama");
    const mcp = rows().filter({ hasText: "server-filesystem" });
    check((await mcp.getByTestId("flag-unpinned_mcp_server").count()) === 1, "unpinned_mcp_server on the MCP server");
  });

  await step("a host's inventory: first seen from the first report, last seen from the latest", async () => {
    await page.locator('[data-testid="inventory-table"] a', { hasText: "dev-01" }).first().click();
    await settle("AI agents at work on dev-01", fx.dev01.items);
    check(page.url().includes("host=dev-01"), `url ${page.url()}`);
    const text = (await rows().allInnerTexts()).join("\n");
    check(!text.includes("dev-02") && !text.includes("Ollama"), `only dev-01's items: ${text}`);
    const gemini = rows().filter({ hasText: "Gemini CLI" });
    const first = gemini.getByTestId("first-seen").locator("time");
    check((await first.getAttribute("title")) === utc(fx.dev01.first_seen_ms), `first seen in UTC on hover: ${await first.getAttribute("title")}`);
    const shown = await first.innerText();
    check(shown.startsWith(await local(fx.dev01.first_seen_ms)) && shown.includes("GMT+5:30"), `first seen in the viewer's zone: ${shown}`);
    const last = gemini.getByTestId("last-seen");
    check((await last.getAttribute("title")) === utc(fx.dev01.last_seen_ms), `last seen in UTC on hover: ${await last.getAttribute("title")}`);
    check(/^\d+ min ago$/.test(await last.innerText()), `last seen minutes ago: ${await last.innerText()}`);
    await shot("inventory-host");
  });

  await step("filtering by a flag, per host and then fleet-wide", async () => {
    await page.getByTestId("inventory-flag").selectOption("permission_bypass");
    await page.waitForFunction(() => location.hash.includes("flag=permission_bypass"));
    await settle("AI agents at work on dev-01", 1);
    check((await rows().first().innerText()).includes("Gemini CLI"), "the bypassing session");
    await page.getByTestId("inventory-host").fill("");
    await page.getByTestId("inventory-host").dispatchEvent("change");
    await settle("AI agents at work (fleet)", 1);
    await page.getByTestId("inventory-flag").selectOption("runtime_exposed");
    await settle("AI agents at work (fleet)", 1);
    const only = await rows().first().innerText();
    check(only.includes("dev-02") && only.includes("Ollama"), `the exposed runtime: ${only}`);
    await page.getByTestId("inventory-flag").selectOption("off_catalogue_contact");
    await page.waitForFunction(() => location.hash.includes("flag=off_catalogue_contact"));
    const empty = page.getByTestId("inventory-table-empty");
    await empty.waitFor();
    check((await empty.innerText()).includes("No AI agent"), await empty.innerText());
    await page.getByTestId("inventory-flag").selectOption("runtime_exposed");
    await settle("AI agents at work (fleet)", 1);
    await shot("inventory-flag");
  });

  await step("the page made no request off the collector and logged no error", async () => {
    check(foreign.length === 0, `foreign requests: ${foreign.join(", ")}`);
    check(errors.length === 0, `console errors: ${errors.join(" | ")}`);
  });
} catch {
  // the failing step printed itself
} finally {
  console.log(`${passed} passed, ${failed} failed`);
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
process.exit(failed === 0 ? 0 : 1);
