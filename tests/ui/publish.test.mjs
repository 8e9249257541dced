// The policy loop in Debian's Chromium (playwright-core) against a real collector and a real
// agent started by tests/tests/ui_publish.rs.
//
// PHASE=publish: an analyst proposes blocking a service, the admin switching agents to enforce; the
// admin cannot approve their own proposals; a second person (approver) approves both; the
// admin signs the policy in the browser with the key file they pick (WebCrypto Ed25519: the
// key never leaves the page) and starts a canary rollout, which shows its agents per stage
// and, once advanced by an explicit percentage (never a default), warns about the stage that
// reaches nobody.
// PHASE=verify: the finding the agent reported after it blocked shows `blocked`.
// PHASE=rollback: the admin rolls the bad rollout back (reason and key file required; the
// stages show as they happen), the rollout table shows the re-signed earlier content going to
// every agent, the audit log shows the rollback with its reason, and the key stays in the page.
//
// Environment: SHADOWAI_URL, SHADOWAI_FIXTURE (JSON: analyst_token, admin_token, approver_token, key_file,
// service, canary_group), PHASE, SCREENSHOT_DIR, CHROMIUM.
// Prints one "ok - …" line per step and ends with "N passed, N failed"; exit 1 on failure.

import { chromium } from "playwright-core";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const base = process.env.SHADOWAI_URL;
const fx = JSON.parse(process.env.SHADOWAI_FIXTURE || "{}");
const phase = process.env.PHASE;
const shots = process.env.SCREENSHOT_DIR || mkdtempSync(join(tmpdir(), "shadowai-shots-"));
if (!base || !fx.admin_token || !fx.analyst_token || !fx.approver_token || !["publish", "verify", "rollback"].includes(phase)) {
  console.error("SHADOWAI_URL, SHADOWAI_FIXTURE and PHASE=publish|verify|rollback must be set");
  process.exit(2);
}

let passed = 0;
let failed = 0;
const check = (cond, what) => {
  if (!cond) throw new Error(`assertion failed: ${what}`);
};

const context = await chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), "shadowai-chromium-")), {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  timeout: 60000,
  ignoreHTTPSErrors: true,
  viewport: { width: 1440, height: 900 },
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const page = context.pages()[0] || (await context.newPage());
page.setDefaultTimeout(20000);
const pageErrors = [];
page.on("pageerror", (e) => pageErrors.push(e.message));
// The key file is read by the page; nothing it holds may go over the network.
const sent = [];
page.on("request", (r) => sent.push(`${r.method()} ${r.url()}\n${r.postData() || ""}`));

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
const shot = (name) => page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
const banner = () => page.getByTestId("error-banner");

async function login(token) {
  await page.goto(`${base}/#/login`);
  await page.getByTestId("token-input").fill(token);
  await page.getByTestId("login-submit").click();
  await page.getByTestId("whoami").waitFor();
}

/** A fresh render of the Rules page (going through another page: a goto to the same hash
 *  would not re-render). */
async function rules() {
  await page.goto(`${base}/#/overview`);
  await page.locator('main[data-view="overview"]').waitFor();
  await page.goto(`${base}/#/rules`);
  await page.locator('main[data-view="rules"]').waitFor();
}

try {
  if (phase === "publish") {
    await step("an analyst proposes blocking the service fleet-wide from the catalogue", async () => {
      await login(fx.analyst_token);
      await page.goto(`${base}/#/catalogue?q=${encodeURIComponent(fx.service)}`);
      await page.getByTestId(`cat-verdict-${fx.service}`).selectOption("blocked");
      await page.getByTestId(`cat-reason-${fx.service}`).fill("data residency");
      await page.getByTestId(`cat-propose-${fx.service}`).getByRole("button", { name: "Propose" }).click();
      await page.locator(".toast", { hasText: `${fx.service} -> blocked is pending` }).waitFor();
    });

    await step("the admin proposes switching agents to enforce", async () => {
      await login(fx.admin_token);
      await rules();
      await page.getByTestId("mode-proposal").selectOption("enforce");
      await page.getByTestId("mode-reason").fill("go live");
      await page.getByTestId("mode-submit").click();
      await page.locator('[data-testid="pending-table"] tbody tr').nth(1).waitFor();
      const rows = await page.locator('[data-testid="pending-table"] tbody tr').allInnerTexts();
      check(rows.length === 2, `two pending proposals: ${rows.join(" | ")}`);
      check(rows.some((r) => r.includes("mode:enforce")), "the mode proposal is pending");
      for (const b of await page.locator('[data-testid^="approve-"]').all()) check(await b.isDisabled(), "the proposer cannot approve");
      await shot("p1-pending");
    });

    await step("publishing before approval is refused by the two-person rule", async () => {
      await page.getByTestId("publish-key").setInputFiles(fx.key_file);
      await page.getByTestId("publish-mode").selectOption("enforce");
      await page.getByTestId("publish-group").fill(fx.canary_group);
      await page.getByTestId("publish-go").click();
      await banner().waitFor({ state: "visible" });
      const text = await banner().innerText();
      check(/second person|approv/i.test(text), `refusal names the missing approval: ${text}`);
    });

    await step("a second person approves both proposals", async () => {
      await login(fx.approver_token);
      await rules();
      for (let i = 0; i < 2; i++) {
        await page.locator('[data-testid^="approve-"]').first().click();
        await page.locator(".toast", { hasText: "approved by" }).nth(i).waitFor();
        await rules();
      }
      await page.getByTestId("pending-table-empty").waitFor();
      const decided = await page.locator('[data-testid="decided-table"] tbody tr').allInnerTexts();
      check(decided.filter((r) => r.includes("approved")).length === 2, decided.join(" | "));
      await shot("p2-approved");
    });

    await step("the admin signs in the browser, uploads and starts the canary rollout", async () => {
      await login(fx.admin_token);
      await rules();
      await page.getByTestId("publish-go").click();
      await banner().waitFor({ state: "visible" });
      check((await banner().innerText()).includes("pick the signing key file"), "a key file is required");
      await page.getByTestId("publish-key").setInputFiles(fx.key_file);
      await page.getByTestId("publish-group").fill(fx.canary_group);
      await page.getByTestId("publish-go").click();
      check((await banner().innerText()).includes("choose monitor or enforce"), "the mode is never defaulted");
      await page.getByTestId("publish-key").setInputFiles(fx.key_file);
      await page.getByTestId("publish-mode").selectOption("enforce");
      await page.getByTestId("publish-go").click();
      await page.getByTestId("published").waitFor();
      const text = await page.getByTestId("published").innerText();
      check(/Published 1\.\d+\.0/.test(text), text);
      const stages = await page.locator('[data-testid^="stages-table-"] tbody tr').allInnerTexts();
      check(stages[0].startsWith("canary\t1\t"), `one canary agent: ${stages.join(" | ")}`);
      check(stages[1].startsWith("percent\t0\t"), `no agent in the percent stage yet: ${stages.join(" | ")}`);
      check((await page.locator('[data-testid^="stage-warnings-"]').count()) === 0, "the canary stage reaches its agent: no warning");
      await shot("p3-published");
    });

    await step("the rollout lists its stages and needs an explicit percentage to advance", async () => {
      await rules();
      const row = page.locator('[data-testid="rollouts-table"] tbody tr').first();
      check((await row.innerText()).includes("canary"), await row.innerText());
      await row.locator('[data-testid^="show-stages-"]').click();
      await page.locator('[data-testid="stages-box"] table').waitFor();
      const advance = row.locator('[data-testid^="advance-"]:not([data-testid^="advance-pct"])');
      await advance.click();
      await banner().waitFor({ state: "visible" });
      check((await banner().innerText()).includes("is not a percentage"), "an empty percentage is refused");
      await row.locator('[data-testid^="advance-pct-"]').fill("10");
      await advance.click();
      await page.waitForFunction(() => (document.querySelector('[data-testid="rollouts-table"] tbody tr') || {}).innerText?.includes("percent 10%"));
      await page.locator('[data-testid="rollouts-table"] tbody tr').first().locator('[data-testid^="show-stages-"]').click();
      const warnings = page.locator('[data-testid="stages-box"] [data-testid^="stage-warnings-"] li');
      await warnings.first().waitFor();
      const text = (await warnings.allInnerTexts()).join(" | ");
      check(text.includes("reaches no agent"), `the empty stage is warned about: ${text}`);
      await shot("p3b-stages");
    });

    await step("the signing key never left the browser", async () => {
      const seed = fx.key_seed;
      check(seed && seed.length === 64, "fixture has the seed");
      check(!sent.some((s) => s.includes(seed)), "the key's seed appears in no request");
      check(sent.some((s) => s.startsWith("POST") && s.includes("/api/v1/bundles?")), "the signed bundle was uploaded");
      check(pageErrors.length === 0, `page errors: ${pageErrors.join("; ")}`);
    });
  } else if (phase === "rollback") {
    await step("the admin rolls the bad rollout back: reason and key required, stages shown", async () => {
      await login(fx.admin_token);
      await rules();
      const row = page.locator('[data-testid="rollouts-table"] tbody tr').first();
      const rowText = await row.innerText();
      check(rowText.includes(fx.bad_version) && rowText.includes(fx.previous_version), `the newest rollout replaced ${fx.previous_version}: ${rowText}`);
      const id = (await row.locator('[data-testid^="rollback-"]').getAttribute("data-testid")).replace("rollback-", "");
      await page.getByTestId(`rollback-${id}`).click();
      await page.getByTestId(`rollback-go-${id}`).click();
      await banner().waitFor({ state: "visible" });
      const refusal = await banner().innerText();
      check(refusal.includes("give a reason") && refusal.includes("pick the signing key file"), `nothing happens without a reason and a key: ${refusal}`);
      await rules();
      check((await page.locator('[data-testid="rollouts-table"] tbody tr').first().innerText()).includes("percent"), "the refused attempt left the rollout running");
      await page.getByTestId(`rollback-${id}`).click();
      await page.getByTestId(`rollback-reason-${id}`).fill("breaks the build tools");
      await page.getByTestId(`rollback-key-${id}`).setInputFiles(fx.key_file);
      await page.getByTestId(`rollback-go-${id}`).click();
      await page.getByTestId("rolled-back").waitFor();
      const stages = await page.locator(`[data-testid="rollback-stages-${id}"] li`).allInnerTexts();
      check(stages.length === 5, `five stages: ${stages.join(" | ")}`);
      check(stages[0].includes(`${fx.bad_version} stopped`), stages[0]);
      check(stages[1].includes(`content of ${fx.previous_version} composed as`), stages[1]);
      check(stages[2].startsWith("Signed in this browser"), stages[2]);
      check(stages[3].includes("two-person rule checked"), stages[3]);
      check(stages[4].includes("every agent"), stages[4]);
      const done = await page.getByTestId("rolled-back").innerText();
      check(done.includes(`content of ${fx.previous_version}`), done);
      await page.locator('[data-testid="rolled-back"] ~ .stages table').waitFor();
      await shot("p5-rolled-back");
    });

    await step("the rollout table shows the bad rollout stopped and the earlier content going to all", async () => {
      await rules();
      const rows = await page.locator('[data-testid="rollouts-table"] tbody tr').allInnerTexts();
      check(rows[0].includes(fx.previous_version) && /\ball\b/.test(rows[0]), `newest: re-signed ${fx.previous_version} content to all: ${rows[0]}`);
      check(rows[1].includes(fx.bad_version) && rows[1].includes("rolled_back"), `the bad rollout is rolled back: ${rows[1]}`);
    });

    await step("the audit log shows the rollback, its reason and the re-signed upload", async () => {
      await page.goto(`${base}/#/audit`);
      const table = page.getByTestId("audit-table");
      await table.waitFor();
      const text = await table.innerText();
      check(text.includes("rollout.rollback") && text.includes("breaks the build tools"), "the rollback and its reason are audited");
      check(text.includes("bundle.upload") && text.includes(`rollback of rollout`), "the re-signed upload is audited");
      check((await page.getByTestId("chain-status").innerText()).includes("verified"), "the chain verifies");
      await shot("p6-audit");
    });

    await step("the signing key never left the browser during the rollback", async () => {
      check(!sent.some((s) => s.includes(fx.key_seed)), "the key's seed appears in no request");
      check(sent.some((s) => s.startsWith("POST") && s.includes("/rollback/compose")), "the rollback was composed by the collector");
      check(pageErrors.length === 0, `page errors: ${pageErrors.join("; ")}`);
    });
  } else {
    await step("the finding of the blocked use shows action blocked", async () => {
      await login(fx.admin_token);
      await page.goto(`${base}/#/findings?service=${encodeURIComponent(fx.service)}`);
      const rows = page.locator('[data-testid="findings-table"] tbody tr');
      await rows.first().waitFor();
      const texts = await rows.allInnerTexts();
      check(texts.some((r) => /\bblocked\b/.test(r)), `a blocked row: ${texts.join(" | ")}`);
      check((await page.locator('[data-testid="findings-table"] .action-blocked').count()) > 0, "the blocked badge");
      await shot("p4-blocked-finding");
    });
  }
} catch (_) {
  /* reported by step() */
} finally {
  console.log(`${passed} passed, ${failed} failed`);
  await context.close();
  process.exit(failed ? 1 : 0);
}
