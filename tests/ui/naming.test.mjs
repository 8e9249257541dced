// The discovery page's promotion flow in Debian's Chromium (playwright-core) against a real
// collector started by tests/tests/naming_ui.rs.
//
// Environment: SHADOWAI_URL, SHADOWAI_FIXTURE (JSON: analyst_token, approver_token,
// candidate, host), SCREENSHOT_DIR, CHROMIUM.
//
// Prints one "ok - …" line per step and ends with "N passed, N failed"; exit code 1 on failure.

import { chromium } from "playwright-core";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const base = process.env.SHADOWAI_URL;
const fx = JSON.parse(process.env.SHADOWAI_FIXTURE || "{}");
const shots = process.env.SCREENSHOT_DIR || mkdtempSync(join(tmpdir(), "shadowai-shots-"));
if (!base || !fx.analyst_token || !fx.approver_token || !fx.candidate) {
  console.error("SHADOWAI_URL and SHADOWAI_FIXTURE (analyst_token, approver_token, candidate) must be set");
  process.exit(2);
}

let passed = 0;
let failed = 0;
function check(cond, what) {
  if (!cond) throw new Error(`assertion failed: ${what}`);
}

const profile = mkdtempSync(join(tmpdir(), "shadowai-chromium-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  timeout: 60000,
  ignoreHTTPSErrors: true, // the collector's own self-signed certificate
  viewport: { width: 1440, height: 900 },
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
const page = context.pages()[0] || (await context.newPage());
page.setDefaultTimeout(15000);
const pageErrors = [];
page.on("pageerror", (e) => pageErrors.push(e.message));

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

async function login(token) {
  await page.goto(`${base}/#/login`);
  await page.evaluate(() => sessionStorage.clear());
  await page.goto(`${base}/#/login`);
  await page.getByTestId("token-input").fill(token);
  await page.getByTestId("login-submit").click();
  await page.getByTestId("whoami").waitFor();
}

const cand = fx.candidate;
const fill = async (name, value) => page.getByTestId(`propose-${name}`).fill(value);

try {
  await step("the analyst sees the candidate on Discovery with a Propose button", async () => {
    await login(fx.analyst_token);
    await page.goto(`${base}/#/discovery`);
    await page.getByTestId("discovery-table").waitFor();
    const row = page.locator(`[data-testid="discovery-table"] tbody tr`, { hasText: cand });
    check((await row.count()) === 1, "one row for the candidate");
    check((await row.innerText()).includes(fx.host), "its host is shown");
    await page.getByTestId(`discovery-propose-${cand}`).click();
    await page.getByTestId("propose-form").waitFor();
    check((await page.getByTestId("propose-hosts").inputValue()) === cand, "hosts prefilled with the name");
  });

  await step("an entry without a vendor source is refused, naming the field", async () => {
    check((await page.getByTestId("propose-id").inputValue()) === "api-newrelay-example", "id prefilled from the name");
    await fill("id", "newrelay-api");
    await fill("name", "NewRelay API");
    await fill("vendor", "NewRelay");
    await fill("jurisdiction", "US");
    await fill("reason", "inference relay used by SDK processes");
    await page.getByTestId("propose-submit").click();
    const banner = page.getByTestId("error-banner");
    await banner.waitFor();
    const text = await banner.innerText();
    check(text.includes("entry.source"), `the error names entry.source: ${text}`);
  });

  await step("a complete entry becomes a pending proposal with its impact", async () => {
    await fill("source", "https://newrelay.example/legal/privacy");
    await page.getByTestId("propose-retention").selectOption("extended");
    await page.getByTestId("propose-submit").click();
    await page.getByTestId("propose-done").waitFor();
    const impact = await page.getByTestId("catalogue-impact").innerText();
    check(impact.includes(cand) && impact.includes(fx.host), `impact names the candidate and host: ${impact}`);
    await page.screenshot({ path: join(shots, "21-discovery-proposed.png"), fullPage: true });
  });

  await step("the proposer cannot approve it on the Rules page", async () => {
    await page.goto(`${base}/#/rules`);
    await page.getByRole("heading", { name: "Rules and approvals" }).waitFor(); // not Discovery
    await page.locator('[data-testid="catalogue-proposals-table"]', { hasText: "newrelay-api" }).waitFor();
    const approve = page.locator('[data-testid^="catalogue-approve-"]');
    check(await approve.first().isDisabled(), "approve is disabled for the proposer");
  });

  await step("a second person approves it and the candidate shows promoted", async () => {
    await login(fx.approver_token);
    await page.goto(`${base}/#/rules`);
    await page.getByRole("heading", { name: "Rules and approvals" }).waitFor();
    await page.locator('[data-testid="catalogue-proposals-table"]', { hasText: "newrelay-api" }).waitFor();
    await page.locator('[data-testid^="catalogue-approve-"]').first().click();
    await page.locator('[data-testid="catalogue-proposals-table"] .status-approved').first().waitFor();
    await page.goto(`${base}/#/discovery`);
    await page.getByTestId("discovery-table").waitFor();
    const state = page.getByTestId(`discovery-state-${cand}`);
    await state.waitFor();
    check((await state.innerText()).includes("promoted (newrelay-api)"), "marked promoted");
    await page.screenshot({ path: join(shots, "22-discovery-promoted.png"), fullPage: true });
  });

  await step("the catalogue page lists the new service", async () => {
    await page.goto(`${base}/#/catalogue?q=newrelay`);
    await page.getByText("NewRelay API").first().waitFor();
  });

  await step("no page errors", async () => {
    check(pageErrors.length === 0, `page errors: ${pageErrors.join("; ")}`);
  });
} catch {
  // reported by step()
}
await context.close();
rmSync(profile, { recursive: true, force: true });
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
