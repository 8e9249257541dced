// Clicks through the shadowai web UI in Debian's Chromium (playwright-core, no downloaded
// browser) against a real collector started by tests/tests/ui_browser.rs.
//
// Environment:
//   SHADOWAI_URL        collector base URL (loopback)
//   SHADOWAI_FIXTURE    JSON: tokens and what the seeded data must look like (see ui_browser.rs)
//   SCREENSHOT_DIR      where PNG screenshots go
//   CHROMIUM            browser binary (default /usr/bin/chromium)
//
// Prints one "ok - …" line per step and ends with "N passed, N failed"; exit code 1 on failure.

import { chromium } from "playwright-core";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const base = process.env.SHADOWAI_URL;
const fx = JSON.parse(process.env.SHADOWAI_FIXTURE || "{}");
const shots = process.env.SCREENSHOT_DIR || mkdtempSync(join(tmpdir(), "shadowai-shots-"));
if (!base || !fx.admin_token || !fx.approver_token) {
  console.error("SHADOWAI_URL and SHADOWAI_FIXTURE (admin_token, approver_token, …) must be set");
  process.exit(2);
}

let passed = 0;
let failed = 0;
function check(cond, what) {
  if (!cond) throw new Error(`assertion failed: ${what}`);
}
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
// A fresh profile directory (the persistent-context form is how playwright takes
// --user-data-dir); the flags keep Chromium from calling out to Google's services.
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  timeout: 60000,
  acceptDownloads: true,
  viewport: { width: 1440, height: 900 },
  // Not UTC: times must show in the viewer's zone, with UTC on hover.
  timezoneId: fx.timezone || "Asia/Kolkata",
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
const page = context.pages()[0] || (await context.newPage());
page.setDefaultTimeout(15000);
const consoleErrors = [];
page.on("console", (m) => {
  if (m.type() === "error" && !/favicon\.ico|status of (400|401|403|500)/.test(m.text() + (m.location().url || ""))) consoleErrors.push(m.text());
});
page.on("pageerror", (e) => consoleErrors.push(`page error: ${e.message}`));
// Every request the page makes must stay on the collector (no CDN, no fonts, no telemetry).
const foreign = [];
page.on("request", (r) => {
  const u = r.url();
  if (!u.startsWith(base) && !u.startsWith("blob:") && !u.startsWith("data:")) foreign.push(u);
});

const shot = (name) => page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
const rowsOf = (testid) => page.locator(`[data-testid="${testid}"] tbody tr`);
const textOf = (sel) => page.locator(sel).innerText();

async function login(token) {
  await page.goto(`${base}/#/login`);
  await page.getByTestId("token-input").fill(token);
  await page.getByTestId("login-submit").click();
  await page.getByTestId("whoami").waitFor();
}

try {
  await step("unauthenticated visit lands on the token login", async () => {
    await page.goto(`${base}/`);
    await page.getByTestId("login-form").waitFor();
    check(page.url().endsWith("#/login"), `url ${page.url()}`);
    await shot("01-login");
  });

  await step("a wrong token is refused with a clear message", async () => {
    await page.getByTestId("token-input").fill("sau_0000000000000000000000000000000000000000000000000000000000000000");
    await page.getByTestId("login-submit").click();
    const err = page.getByTestId("login-error");
    await err.waitFor({ state: "visible" });
    check((await err.innerText()).includes("not valid"), await err.innerText());
  });

  await step("admin logs in and sees the overview of discovered AI services", async () => {
    await login(fx.admin_token);
    check((await textOf('[data-testid="whoami"]')) === `${fx.admin_name} (admin)`, "whoami shows the admin");
    await rowsOf("services-table").first().waitFor();
    const rows = await rowsOf("services-table").allInnerTexts();
    check(rows.length === fx.services.length, `${rows.length} service rows, expected ${fx.services.length}: ${rows.join(" | ")}`);
    for (const s of fx.services) {
      const row = rows.find((r) => r.startsWith(s.name));
      check(row, `a row for ${s.name}`);
      check(row.toLowerCase().includes(s.verdict), `${s.name} is ${s.verdict}: ${row}`);
      check(row.includes(`\t${s.hosts}\t${s.users}\t`), `${s.name} hosts/users ${s.hosts}/${s.users}: ${row}`);
      // Seeded use is in the last 4 days of the 7-day view and heavier on recent days: growing
      // ("▲ new", or "▲ +N%" when the run straddles UTC midnight).
      check(row.includes("▲"), `${s.name} is marked as growing: ${row}`);
    }
    check((await textOf('[data-testid="stat-services"] .value')) === String(fx.services.length), "services stat");
    check((await page.locator("svg.trend rect").count()) > 0, "the trend chart has bars");
    check((await page.locator("svg.spark").count()) === fx.services.length, "one sparkline per service");
    await shot("02-overview");
  });

  await step("the overview keeps verdict and action apart, buckets by hour and leads with uploads", async () => {
    // Nothing was stopped by an agent; DeepSeek's use would have been (enforcement off).
    check((await textOf('[data-testid="stat-blocked"] .value')) === "0", "no event was blocked by an agent");
    const would = (await textOf('[data-testid="stat-would-block"] .value')).replace(/,/g, "");
    check(would === String(fx.would_block), `would-block events ${would}, expected ${fx.would_block}`);
    const chart = page.locator("svg.trend");
    check((await chart.getAttribute("data-bucket")) === "hour", "7 days are drawn in hours");
    check((await chart.getAttribute("data-buckets")) === "168", `168 hour buckets, got ${await chart.getAttribute("data-buckets")}`);
    const starts = new Set(await page.locator("svg.trend rect").evaluateAll((rs) => rs.map((r) => r.getAttribute("data-start"))));
    check(starts.size >= 4, `today's use falls into several hours: ${[...starts].join(",")}`);
    const up = await rowsOf("uploaders-table").allInnerTexts();
    check(up.length >= 1 && up[0].startsWith(fx.top_uploader), `top uploader first: ${up.join(" | ")}`);
    check(up[0].includes("MiB"), `data sent shown in bytes: ${up[0]}`);
    // The viewer's time zone, UTC on hover.
    const t = page.locator('[data-testid="services-table"] time').first();
    const title = await t.getAttribute("title");
    check(title.endsWith(" UTC"), `title ${title}`);
    check((await t.innerText()).includes("GMT+5:30"), `local time in the viewer's zone: ${await t.innerText()}`);
    await page.getByTestId("range").selectOption("24h");
    await page.waitForFunction(() => document.querySelector("svg.trend")?.getAttribute("data-buckets") === "24");
    await page.getByTestId("range").selectOption("30d");
    await page.waitForFunction(() => document.querySelector("svg.trend")?.getAttribute("data-bucket") === "day");
    await page.getByTestId("range").selectOption("7d");
    await page.waitForFunction(() => document.querySelector("svg.trend")?.getAttribute("data-buckets") === "168");
  });

  await step("who uses AI, fleet-wide: by user, host, process and host group", async () => {
    await page.getByTestId("nav-who").click();
    await rowsOf("who-table").first().waitFor();
    const users = await rowsOf("who-table").allInnerTexts();
    check(users.length === 2, `2 users: ${users.join(" | ")}`);
    check(users.every((r) => /\d/.test(r) && r.includes("B")), `counts and data per user: ${users.join(" | ")}`);
    await shot("11-who-users");
    await page.getByTestId("who-by-host").click();
    await page.waitForFunction(() => document.querySelector('[data-testid="who-tabs"] .active')?.textContent === "Hosts");
    const hosts = await rowsOf("who-table").allInnerTexts();
    check(hosts.length === 2 && hosts.some((r) => r.startsWith(fx.host.name)), `hosts: ${hosts.join(" | ")}`);
    await page.getByTestId("who-by-group").click();
    await page.waitForFunction(() => document.querySelector('[data-testid="who-tabs"] .active')?.textContent === "Host groups");
    const groups = await rowsOf("who-table").allInnerTexts();
    for (const g of fx.groups) check(groups.some((r) => r.startsWith(g)), `group ${g}: ${groups.join(" | ")}`);
    await page.getByTestId("who-by-process").click();
    await page.waitForFunction(() => document.querySelector('[data-testid="who-tabs"] .active')?.textContent === "Processes");
    check((await rowsOf("who-table").count()) === 2, "two processes");
    await page.getByTestId("who-by-user").click();
    await page.getByTestId("who-sort-uploads").click();
    await page.waitForURL(/sort=uploads/);
    await page.waitForFunction(() => document.querySelector('[data-testid="who-tabs"] .active')?.textContent === "Users");
    const top = await rowsOf("who-table").first().innerText();
    check(top.startsWith(fx.top_uploader), `top uploader ${top}`);
    // Drill down from the group-by to the user's page.
    await rowsOf("who-table").first().getByRole("link", { name: fx.top_uploader, exact: true }).click();
    await page.getByTestId("user-title").waitFor();
  });

  await step("service detail shows the service, its trend and top hosts/users/processes", async () => {
    await page.getByRole("link", { name: fx.detail.name, exact: true }).first().click();
    await page.getByTestId("service-title").waitFor();
    check((await textOf('[data-testid="service-title"]')).startsWith(fx.detail.name), "title");
    check(page.url().includes(`#/service/${fx.detail.id}`), page.url());
    const findingsRows = await rowsOf("service-findings").count();
    check(findingsRows === fx.detail.findings, `${findingsRows} findings, expected ${fx.detail.findings}`);
    for (const host of fx.detail.hosts) check(await page.getByRole("link", { name: host, exact: true }).first().isVisible(), `top host ${host}`);
    // Why this risk score: the catalogue's factors, adding up to the plan's score.
    await page.getByTestId("risk-breakdown").waitFor();
    const factors = await rowsOf("risk-factors").allInnerTexts();
    check(factors.some((r) => r.startsWith("jurisdiction")), `factors: ${factors.join(" | ")}`);
    const badge = await page.getByTestId("service-risk").getByTestId("risk-badge").getAttribute("title");
    check(badge.includes("jurisdiction") && badge.includes("+"), `risk badge explains the score: ${badge}`);
    // Why each finding got its verdict: the deciding rule and the policy version.
    const why = page.locator('[data-testid="service-findings"] [data-testid="finding-why"]').first();
    await why.locator("summary").click();
    const whyText = await why.innerText();
    check(whyText.includes(`catalogue:${fx.detail.id}`) && whyText.includes("1.4.0") && whyText.includes("would block"), whyText);
    await shot("03-service-detail");
  });

  await step("admin proposes a fleet-wide block from the service page", async () => {
    await page.getByTestId("propose-verdict").selectOption("blocked");
    await page.getByTestId("propose-reason").fill(fx.block_reason);
    await page.getByTestId("propose-submit").click();
    await page.locator(".toast", { hasText: "pending" }).waitFor();
  });

  await step("the catalogue lists every service with its facts, and an admin proposes from it", async () => {
    await page.getByTestId("nav-catalogue").click();
    await rowsOf("catalogue-table").first().waitFor();
    const all = await rowsOf("catalogue-table").count();
    check(all >= 400, `${all} catalogue services (every one, not only those seen)`);
    await page.getByTestId("catalogue-filter").fill("moonshot");
    await page.getByTestId("catalogue-filter").press("Enter");
    await page.waitForURL(/#\/catalogue\?q=moonshot/);
    await rowsOf("catalogue-table").filter({ hasText: "Moonshot AI" }).first().waitFor();
    const filtered = await rowsOf("catalogue-table").count();
    check(filtered < 5, `the filter narrows the list: ${filtered} rows`);
    const rows = await rowsOf("catalogue-table").allInnerTexts();
    const kimi = rows.find((r) => r.startsWith("Kimi"));
    check(kimi && kimi.includes("Moonshot AI") && kimi.includes("CN"), `kimi row with vendor and jurisdiction: ${rows.join(" | ")}`);
    await page.getByTestId("cat-verdict-kimi").selectOption("tolerated");
    await page.getByTestId("cat-reason-kimi").fill("pilot with legal's consent");
    await page.getByTestId("cat-propose-kimi").getByRole("button", { name: "Propose" }).click();
    await page.locator(".toast", { hasText: "kimi -> tolerated is applied" }).waitFor();
    await shot("05b-catalogue");
  });

  await step("host drill-down shows the agent and only that host's findings", async () => {
    await page.goto(`${base}/#/service/${encodeURIComponent(fx.detail.id)}`);
    await page.getByTestId("service-title").waitFor();
    await page.locator(".cols").getByRole("link", { name: fx.host.id, exact: true }).click();
    await page.getByTestId("host-title").waitFor();
    check((await textOf('[data-testid="host-title"]')) === `Host ${fx.host.name}`, "host title");
    const rows = await rowsOf("host-findings").allInnerTexts();
    check(rows.length === fx.host.findings, `${rows.length} host findings, expected ${fx.host.findings}`);
    check(rows.every((r) => r.includes(fx.host.name)), "every row is on this host");
    check((await page.locator(".card", { hasText: "Agent" }).innerText()).includes(fx.host.agent_version), "agent version shown");
    await shot("04-host");
  });

  await step("findings filters narrow the table", async () => {
    await page.getByTestId("nav-findings").click();
    await rowsOf("findings-table").first().waitFor();
    const all = await rowsOf("findings-table").count();
    check(all === Math.min(100, fx.total_findings), `${all} unfiltered rows`);
    await page.getByTestId("filter-verdict").selectOption(fx.filter.verdict);
    await page.getByTestId("filter-user").fill(fx.filter.user);
    await page.getByTestId("filter-container").fill(fx.filter.container);
    await page.getByTestId("apply-filters").click();
    await page.waitForURL(/verdict=/);
    await page.waitForFunction(
      (n) => document.querySelectorAll('[data-testid="findings-table"] tbody tr').length === n,
      fx.filter.expected,
    );
    const rows = await rowsOf("findings-table").allInnerTexts();
    check(rows.every((r) => r.toLowerCase().includes(fx.filter.verdict) && r.includes(fx.filter.user)), "rows match the filters");
    check((await textOf('[data-testid="findings-count"]')).startsWith(`${fx.filter.expected} finding`), "count line");
    await shot("05-findings-filtered");
  });

  await step("CSV export downloads the filtered findings", async () => {
    const [download] = await Promise.all([page.waitForEvent("download"), page.getByTestId("export-csv").click()]);
    const path = await download.path();
    const csv = readFileSync(path, "utf8").trim().split("\n");
    check(csv[0].startsWith("id,host_id,hostname,"), `header ${csv[0]}`);
    check(csv.length - 1 === fx.filter.expected, `${csv.length - 1} CSV rows, expected ${fx.filter.expected}`);
    check(csv.slice(1).every((l) => l.includes(`,${fx.filter.verdict},`)), "CSV rows have the verdict");
    check(download.suggestedFilename().endsWith(".csv"), download.suggestedFilename());
  });

  await step("user drill-down from a findings row", async () => {
    await page.locator('[data-testid="findings-table"] tbody tr').first().getByRole("link", { name: fx.user.name, exact: true }).click();
    await page.getByTestId("user-title").waitFor();
    check((await textOf('[data-testid="user-title"]')) === `User ${fx.user.name}`, "user title");
    const rows = await rowsOf("user-findings").allInnerTexts();
    check(rows.length === fx.user.findings, `${rows.length} findings of ${fx.user.name}, expected ${fx.user.findings}`);
    check((await rowsOf("user-services").count()) === fx.user.services, "services of the user");
    await shot("05b-user");
  });

  await step("the time filter keeps only findings whose window reaches into the range", async () => {
    await page.goto(`${base}/#/findings`);
    await rowsOf("findings-table").first().waitFor();
    // ISO date and time in the viewer's zone (Asia/Kolkata, UTC+5:30).
    const local = new Date(fx.time.from_ms + 330 * 60000).toISOString().slice(0, 16).replace("T", " ");
    await page.getByTestId("filter-from").fill(local);
    await page.getByTestId("apply-filters").click();
    await page.waitForURL(/from_ms=/);
    check(page.url().includes(`from_ms=${fx.time.from_ms}`), page.url());
    await page.waitForFunction(
      (n) => document.querySelectorAll('[data-testid="findings-table"] tbody tr').length === n,
      fx.time.expected,
    );
  });

  await step("partial, case-insensitive filters and pickers from the data", async () => {
    await page.goto(`${base}/#/findings`);
    await rowsOf("findings-table").first().waitFor();
    const services = await page.getByTestId("filter-service").locator("option").allInnerTexts();
    for (const s of fx.services) check(services.some((o) => o.startsWith(s.name)), `service picker lists ${s.name} by name: ${services.join(" | ")}`);
    const cats = await page.getByTestId("filter-category").locator("option").allInnerTexts();
    check(cats.includes("chat") && cats.includes("coding"), `categories from the data: ${cats.join(" | ")}`);
    await page.getByTestId("filter-user").fill(fx.partial.typed);
    await page.getByTestId("apply-filters").click();
    await page.waitForURL(/user_contains=LIC/);
    await page.waitForFunction(
      (n) => document.querySelectorAll('[data-testid="findings-table"] tbody tr').length === n,
      fx.partial.expected,
    );
    const rows = await rowsOf("findings-table").allInnerTexts();
    check(rows.every((r) => r.includes(fx.partial.user)), "every row is the matching user");
  });

  await step("a bad parameter is explained and the form keeps what was typed", async () => {
    await page.goto(`${base}/#/findings?user_contains=bob&risk_min=200`);
    const err = page.getByTestId("filter-error");
    await err.waitFor({ state: "visible" });
    const text = await err.innerText();
    check(text.includes("risk_min") && text.includes("0..=100"), text);
    check((await page.getByTestId("filter-user").inputValue()) === "bob", "the form keeps the user filter");
    check((await page.getByTestId("filter-risk-min").inputValue()) === "200", "the form keeps the bad value to fix");
    await page.getByTestId("filter-from").fill("22/11/2026");
    await page.getByTestId("apply-filters").click();
    await page.locator('[data-testid="filter-error"]', { hasText: "YYYY-MM-DD" }).waitFor();
    check(page.url().includes("risk_min=200"), "nothing submitted with a bad date");
  });

  await step("first-use alerts are listed with their drill-down", async () => {
    await page.getByTestId("nav-alerts").click();
    await rowsOf("alerts-table").first().waitFor();
    const rows = await rowsOf("alerts-table").allInnerTexts();
    check(rows.length === fx.alerts, `${rows.length} alerts, expected ${fx.alerts}`);
    check(rows.some((r) => r.includes("first use in the fleet")), rows.join(" | "));
    await shot("12-alerts");
    await rowsOf("alerts-table").first().getByRole("link", { name: "findings →" }).click();
    await page.waitForURL(/#\/findings\?service=/);
    await rowsOf("findings-table").first().waitFor();
    await page.getByTestId("exact-filters").locator(".chip").first().waitFor();
  });

  await step("the admin cannot approve: the pending proposal waits for an approver", async () => {
    await page.getByTestId("nav-rules").click();
    await rowsOf("pending-table").first().waitFor();
    const row = await rowsOf("pending-table").first().innerText();
    check(row.includes(fx.detail.id) && row.includes(fx.admin_name), row);
    check(await page.locator('[data-testid^="approve-"]').first().isDisabled(), "approve is disabled for the admin");
    await shot("06-rules-pending");
  });

  await step("a second person (approver) approves the block", async () => {
    await page.getByTestId("logout").click();
    await page.getByTestId("login-form").waitFor();
    await login(fx.approver_token);
    check((await textOf('[data-testid="whoami"]')) === `${fx.approver_name} (approver)`, "whoami shows the approver");
    await page.getByTestId("nav-rules").click();
    const approve = page.locator('[data-testid^="approve-"]').first();
    await approve.waitFor();
    check(await approve.isEnabled(), "approve is enabled for a different approver");
    // Before approving: what it would change, and who uses the service today.
    await page.locator('[data-testid^="impact-"]').first().click();
    await rowsOf("impact-changes").first().waitFor();
    const changes = await rowsOf("impact-changes").allInnerTexts();
    check(changes.some((r) => r.includes(fx.detail.id) && r.includes("blocked")), `impact: ${changes}`);
    const users = await rowsOf("impact-affected").allInnerTexts();
    check(users.some((r) => r.includes(fx.detail.id)), `affected: ${users}`);
    await approve.click();
    await page.locator(".toast", { hasText: `approved by ${fx.approver_name}` }).waitFor();
    await page.getByTestId("pending-table-empty").waitFor();
    const decided = await rowsOf("decided-table").filter({ hasText: fx.detail.id }).first().innerText();
    check(decided.includes("approved") && decided.includes(fx.admin_name) && decided.includes(fx.approver_name), decided);
    const policy = await rowsOf("policy-table").allInnerTexts();
    check(policy.some((r) => r.includes(fx.detail.id) && r.toLowerCase().includes("blocked")), `policy ${policy}`);
    await shot("07-approved");
  });

  await step("the audit log records who proposed and who approved", async () => {
    await page.getByTestId("nav-audit-log").click();
    await rowsOf("audit-table").first().waitFor();
    const rows = await rowsOf("audit-table").allInnerTexts();
    check(rows.some((r) => r.includes(fx.admin_name) && r.includes("proposal.create")), "proposal.create by the admin");
    check(rows.some((r) => r.includes(fx.approver_name) && r.includes("proposal.approve")), "proposal.approve by the approver");
    const chain = await textOf('[data-testid="chain-status"]');
    check(chain.includes("verified in this browser") && chain.includes(`${rows.length} entries`), chain);
    await shot("08-audit");
  });

  await step("an audit entry altered in transit fails the in-browser chain check at that entry", async () => {
    let tamperedSeq = null;
    await page.route("**/api/v1/audit?*", async (route) => {
      const response = await route.fetch();
      const entries = await response.json();
      const e = entries.find((x) => x.action === "proposal.approve");
      e.actor = fx.admin_name; // "the admin approved it herself"
      tamperedSeq = e.seq;
      await route.fulfill({ response, json: entries });
    });
    await page.reload();
    const status = page.getByTestId("chain-status");
    await page.waitForFunction(() => document.querySelector('[data-testid="chain-status"]')?.textContent.includes("breaks"));
    const text = await status.innerText();
    check(text.includes(`breaks at seq ${tamperedSeq}`) && text.includes("hash does not match"), text);
    await shot("08b-audit-tampered");
    await page.unroute("**/api/v1/audit?*");
  });

  await step("fleet health lists the agents, versions and lost events", async () => {
    await page.getByTestId("nav-fleet").click();
    await rowsOf("agents-table").first().waitFor();
    const rows = await rowsOf("agents-table").allInnerTexts();
    check(rows.length === fx.agents, `${rows.length} agents`);
    check((await textOf('[data-testid="fleet-lost"] .value')) === String(fx.lost_events), "lost events total");
    // A host whose sensor hooks did not attach is degraded, with the hooks named; the others are healthy.
    const blind = rows.filter((r) => r.includes(fx.blind.host));
    check(blind.length === 1 && blind[0].includes(`hooks missing: ${fx.blind.hooks.join(", ")}`) && blind[0].includes("degraded"), `blind host row: ${blind.join(" | ")}`);
    const others = rows.filter((r) => !r.includes(fx.blind.host));
    check(others.length > 0 && others.every((r) => r.includes("healthy") && !r.includes("hooks missing")), `other rows: ${others.join(" | ")}`);
    check((await page.getByTestId("agent-hooks-missing").count()) === 1, "one hooks-missing badge");
    await shot("09-fleet");
  });

  await step("a viewer reads reports but gets no export, audit or admin controls", async () => {
    await page.getByTestId("logout").click();
    await login(fx.viewer_token);
    check((await textOf('[data-testid="whoami"]')).endsWith("(viewer)"), "whoami shows the viewer");
    check((await page.getByTestId("nav-audit-log").count()) === 0, "no audit log link for a viewer");
    await page.goto(`${base}/#/service/${encodeURIComponent(fx.detail.id)}`);
    await page.getByTestId("service-title").waitFor();
    check((await page.getByTestId("propose-form").count()) === 0, "no propose form for a viewer");
    await page.getByTestId("nav-findings").click();
    await rowsOf("findings-table").first().waitFor();
    check(await page.getByTestId("export-csv").isDisabled(), "export is disabled for a viewer");
  });

  await step("an API failure is shown as a clear error", async () => {
    await page.route("**/api/v1/reports/services*", (route) =>
      route.fulfill({ status: 500, contentType: "application/json", body: '{"error":{"code":"internal","message":"store unavailable"}}' }));
    await page.getByTestId("nav-overview").click();
    const banner = page.getByTestId("error-banner");
    await banner.waitFor({ state: "visible" });
    const text = await banner.innerText();
    check(text.includes("HTTP 500") && text.includes("internal") && text.includes("store unavailable"), text);
    await shot("10-error");
    await page.unroute("**/api/v1/reports/services*");
  });

  await step("a revoked or bogus session is sent back to login with the reason", async () => {
    await page.evaluate(() => sessionStorage.setItem("shadowai.token", "sau_bogus"));
    await page.reload();
    await page.getByTestId("login-form").waitFor();
    await page.getByTestId("login-error").waitFor({ state: "visible" });
  });

  await step("no JavaScript errors and no request left the collector", async () => {
    check(consoleErrors.length === 0, `console errors: ${consoleErrors.join(" | ")}`);
    check(foreign.length === 0, `foreign requests: ${foreign.join(" ")}`);
  });
} catch (_) {
  // reported by step()
} finally {
  await context.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
}
console.log(`screenshots: ${shots}`);
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
