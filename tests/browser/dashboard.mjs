// The dashboard in a real browser: Debian's Chromium, headless, driven by playwright-core, at
// 375 px wide, against the server the Rust test (tests/e2e/browser.rs) prepared. It prints one
// JSON object with what it saw; the Rust side checks the server's state over the API.
//
// env: BASE, SLUG, STAGED_SLUG, OWNER, VIEWER, PASSWORD, UPDATE_IDS (comma-separated), ARTIFACTS, CHROMIUM
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`missing env ${k}`);
  return v;
};
const [BASE, SLUG, OWNER, VIEWER, PASSWORD, ARTIFACTS] = ["BASE", "SLUG", "OWNER", "VIEWER", "PASSWORD", "ARTIFACTS"].map(env);
const UPDATE_IDS = env("UPDATE_IDS").split(",");
const STAGED_SLUG = env("STAGED_SLUG");
const out = {};
const check = (cond, what) => {
  if (!cond) throw new Error(`browser check failed: ${what}`);
};

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox"],
});
const timeout = 20_000;

async function signedIn(login) {
  const context = await browser.newContext({ viewport: { width: 375, height: 812 } });
  const page = await context.newPage();
  page.setDefaultTimeout(timeout);
  const problems = [];
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  // HTTP errors the page handles (401 before sign-in, 404 of panels this server lacks, the 403s
  // this test provokes) are logged by Chromium as "Failed to load resource"; anything else
  // (a CSP violation, an exception) is a problem.
  page.on("console", (m) => {
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) problems.push(`console: ${m.text()}`);
  });
  await page.goto(`${BASE}/`);
  await page.getByTestId("login").fill(login);
  await page.getByTestId("password").fill(PASSWORD);
  await page.getByTestId("sign-in").click();
  await page.getByTestId("signed-in-as").waitFor();
  return { context, page, problems };
}

/** A fetch from inside the page, as a script on this origin would send it. */
async function inPage(page, method, path, headers = {}) {
  return page.evaluate(
    async ([method, path, headers]) => {
      const r = await fetch(path, { method, headers: { "content-type": "application/json", ...headers }, body: method === "GET" ? undefined : "{}" });
      return { status: r.status, body: await r.text() };
    },
    [method, path, headers],
  );
}

try {
  // Owner: the app, its published update ids, a screenshot.
  const owner = await signedIn(OWNER);
  const { page } = owner;
  await page.getByTestId("app-link").filter({ hasText: SLUG }).click();
  await page.getByTestId("current-id").first().waitFor();
  const shownIds = await page.getByTestId("update-id").allTextContents();
  for (const id of UPDATE_IDS) check(shownIds.includes(id), `update ${id} is listed (saw ${shownIds})`);
  out.servedBefore = (await page.getByTestId("current-id").first().textContent()).trim();
  // Health: a row for the served update with the counts the Rust side sent as device checks.
  const healthRow = page.locator(`[data-testid="health-row"][data-update-id="${UPDATE_IDS[1]}"]`);
  await healthRow.waitFor();
  out.healthLaunched = (await healthRow.getByTestId("health-launched").textContent()).trim();
  out.healthFailed = (await healthRow.getByTestId("health-failed").textContent()).trim();
  out.healthRate = (await healthRow.getByTestId("health-rate").textContent()).trim();
  out.healthFatal = (await page.getByTestId("health-fatal").allTextContents()).join(" | ");
  // Rollout: the channel's state as explain tells it.
  await page.getByTestId("rollout-state").first().waitFor();
  out.rolloutRows = await page.locator('[data-testid="rollout-row"][data-channel="production"]').count();
  out.rolloutState = (await page.getByTestId("rollout-state").first().textContent()).trim();
  // Capacitor: the bundle the Rust side published under this app id, current on production.
  await page.getByTestId("capacitor-version").first().waitFor();
  out.capacitorCurrent = (await page.locator('[data-testid="capacitor-channel"][data-channel="production"] + p [data-testid="capacitor-current"]').textContent()).trim();
  out.capacitorVersions = (await page.getByTestId("capacitor-version").allTextContents()).map((t) => t.trim());
  // The page fits a phone: nothing wider than the viewport.
  out.scrollWidth = await page.evaluate(() => document.documentElement.scrollWidth);
  mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: `${ARTIFACTS}/dashboard-app-page.png`, fullPage: true });

  // CSRF: a change from this very page without the token is refused.
  out.csrfMissing = (await inPage(page, "POST", `/api/updates/${SLUG}/ios/1.0.3/rollback`)).status;

  // Roll back from the page, confirming the dialog.
  page.once("dialog", (d) => d.accept());
  await page.getByTestId("rollback").first().click();
  await page.getByText("Rolled back.").waitFor();
  await page.waitForFunction((before) => {
    const el = document.querySelector('[data-testid="current-id"]');
    return el && el.textContent.trim() !== before;
  }, out.servedBefore);
  out.servedAfter = (await page.getByTestId("current-id").first().textContent()).trim();

  // Halt what the channel serves now, from the rollout panel, with a reason.
  await page.locator('[data-testid="rollout-row"][data-channel="production"]').getByTestId("halt-reason").fill("halted from the browser test");
  page.once("dialog", (d) => d.accept());
  await page.getByTestId("rollout-halt").first().click();
  await page.getByText("Halted.", { exact: true }).waitFor();
  const halted = page.getByTestId("rollout-halted").first();
  await halted.waitFor();
  out.haltedShown = await halted.getAttribute("data-update-id");
  out.resumeOffered = await page.getByTestId("rollout-resume").count();
  await page.waitForFunction((before) => {
    const el = document.querySelector('[data-testid="current-id"]');
    return el && el.textContent.trim() !== before;
  }, out.servedAfter);
  out.servedAfterHalt = (await page.getByTestId("current-id").first().textContent()).trim();
  await page.screenshot({ path: `${ARTIFACTS}/dashboard-app-page-halted.png`, fullPage: true });

  // A staged rollout: refuse to shrink it in the page, then grow it from 10 % to 50 %.
  await page.goto(`${BASE}/#/apps/${STAGED_SLUG}`);
  const staged = page.locator('[data-testid="rollout-row"][data-channel="production"]');
  await staged.getByTestId("rollout-percentage-shown").waitFor();
  out.stagedBefore = (await staged.getByTestId("rollout-state").textContent()).trim();
  // No Capacitor bundle for this app: that panel hides itself; no health data: the empty state.
  await page.waitForFunction(() => document.querySelector('section[data-panel="capacitor"]')?.hidden === true);
  out.stagedHealthEmpty = (await page.locator('section[data-panel="health"] .empty').textContent()).trim();
  await staged.getByTestId("rollout-percentage").fill("5");
  await staged.getByTestId("rollout-set").click();
  out.shrinkRefusedAt10 = (await staged.getByRole("alert").textContent()).trim();
  await staged.getByTestId("rollout-percentage").fill("50");
  page.once("dialog", (d) => d.accept());
  await staged.getByTestId("rollout-set").click();
  await page.getByText("Rollout at 50 %.", { exact: true }).waitFor();
  await page.locator('[data-testid="rollout-percentage-shown"]', { hasText: "rollout 50 %" }).waitFor();
  out.stagedAfter = (await page.locator('[data-testid="rollout-row"][data-channel="production"]').getByTestId("rollout-state").textContent()).trim();
  out.stagedExplainAfterGrow = (await inPage(page, "GET", `/api/explain?slug=${STAGED_SLUG}&platform=ios&runtimeVersion=1.0.3&channel=production`)).body;
  await page.locator('[data-testid="rollout-row"][data-channel="production"]').getByTestId("rollout-percentage").fill("20");
  await page.locator('[data-testid="rollout-row"][data-channel="production"]').getByTestId("rollout-set").click();
  out.shrinkRefused = (await page.locator('[data-testid="rollout-row"][data-channel="production"]').getByRole("alert").textContent()).trim();
  await page.screenshot({ path: `${ARTIFACTS}/dashboard-staged-rollout.png`, fullPage: true });
  // Halt the staged update, then resume it (an unsigned app: the page can).
  const stagedRow = () => page.locator('[data-testid="rollout-row"][data-channel="production"]');
  await stagedRow().getByTestId("halt-reason").fill("staged halt");
  page.once("dialog", (d) => d.accept());
  await stagedRow().getByTestId("rollout-halt").click();
  await page.getByText("Halted.", { exact: true }).waitFor();
  out.stagedHalted = await stagedRow().getByTestId("rollout-halted").getAttribute("data-update-id");
  page.once("dialog", (d) => d.accept());
  await stagedRow().getByTestId("rollout-resume").click();
  await page.getByText("Resumed.", { exact: true }).waitFor();
  await stagedRow().getByTestId("rollout-halt").waitFor();
  out.stagedResumedHaltShown = await stagedRow().getByTestId("rollout-halted").count();
  out.stagedHaltOffered = await stagedRow().getByTestId("rollout-halt").count();

  // API keys: create (secret shown once), then revoke.
  await page.goto(`${BASE}/#/apps/${SLUG}/keys`);
  await page.getByTestId("key-name").fill("browser-ci");
  await page.getByTestId("create-key").click();
  out.createdKey = (await page.getByTestId("new-key").textContent()).trim();
  const row = page.getByTestId("key-row").first();
  out.keyId = await row.getAttribute("data-key-id");
  page.once("dialog", (d) => d.accept());
  await row.getByTestId("revoke-key").click();
  await page.getByTestId("key-row").filter({ hasText: "revoked" }).first().waitFor();

  // The session ends (signed out elsewhere): the next action brings the sign-in form back.
  const me = JSON.parse((await inPage(page, "GET", "/api/auth/me")).body);
  out.logout = (await inPage(page, "POST", "/api/auth/logout", { "x-csrf-token": me.csrf })).status;
  await page.goto(`${BASE}/#/apps/${SLUG}`);
  await page.reload();
  await page.getByTestId("sign-in").waitFor();
  out.ownerProblems = owner.problems;
  await owner.context.close();

  // Viewer: sees the app, no action buttons; the API refuses the action anyway.
  const viewer = await signedIn(VIEWER);
  await viewer.page.getByTestId("app-link").filter({ hasText: SLUG }).click();
  await viewer.page.getByTestId("current-id").first().waitFor();
  out.viewerRole = (await viewer.page.getByTestId("role").textContent()).trim();
  await viewer.page.getByTestId("rollout-state").first().waitFor();
  await viewer.page.locator('[data-testid="health-row"]').first().waitFor();
  out.viewerRolloutRows = await viewer.page.getByTestId("rollout-row").count();
  out.viewerHaltedShown = await viewer.page.getByTestId("rollout-halted").first().getAttribute("data-update-id");
  out.viewerButtons = await viewer.page.locator('[data-testid="rollback"], [data-testid="promote"], [data-testid="delete"]').count();
  out.viewerRolloutButtons = await viewer.page
    .locator('[data-testid="rollout-actions"], [data-testid="rollout-halt"], [data-testid="rollout-resume"], [data-testid="rollout-set"], [data-testid="rollout-complete"], [data-testid="rollout-revert"]')
    .count();
  const vme = JSON.parse((await inPage(viewer.page, "GET", "/api/auth/me")).body);
  out.viewerRollback = (await inPage(viewer.page, "POST", `/api/updates/${SLUG}/ios/1.0.3/rollback`, { "x-csrf-token": vme.csrf })).status;
  out.viewerProblems = viewer.problems;
  await viewer.context.close();
  console.log(JSON.stringify(out));
} finally {
  await browser.close();
}
