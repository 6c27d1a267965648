// Headless Chromium against the real server (started by tests/browser.rs in paper mode on a fresh
// database): sign in, coordinator state, pause and resume, a manual trade with its position and
// decision chain, a live event, and a viewer who gets no control buttons. Writes a screenshot.
//
// Env: BASE_URL, ADMIN_TOKEN, VIEWER_TOKEN, CHECK_TOKEN (for API checks from here, its own
// rate-limit bucket), SCREENSHOT (path), CHROMIUM (default /usr/bin/chromium).

import { chromium } from "playwright-core";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const BASE = process.env.BASE_URL;
const ADMIN = process.env.ADMIN_TOKEN;
const VIEWER = process.env.VIEWER_TOKEN;
const CHECK = process.env.CHECK_TOKEN;
const SHOT = process.env.SCREENSHOT;
const EXE = process.env.CHROMIUM || "/usr/bin/chromium";
for (const [k, v] of Object.entries({ BASE, ADMIN, VIEWER, CHECK })) {
  if (!v) throw new Error(`missing env ${k}`);
}

const ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

function step(msg) {
  console.log(`[panel test] ${msg}`);
}

async function apiGet(path) {
  const r = await fetch(`${BASE}/api/v1${path}`, { headers: { Authorization: `Bearer ${CHECK}` } });
  if (!r.ok) throw new Error(`GET ${path}: HTTP ${r.status}`);
  return r.json();
}

async function until(what, fn, timeoutMs = 30000) {
  const end = Date.now() + timeoutMs;
  let last;
  while (Date.now() < end) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${last.message}` : ""}`);
}

async function open(context, token) {
  const page = await context.newPage();
  const offsite = [];
  page.on("request", (req) => {
    if (!req.url().startsWith(BASE)) offsite.push(req.url());
  });
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  page.on("dialog", (d) => d.accept());
  await page.goto(`${BASE}/`);
  await page.fill("#token", token);
  await page.click("#signin-button");
  await page.waitForSelector("#panel:not([hidden])", { timeout: 15000 });
  return { page, offsite, errors };
}

async function text(page, sel) {
  return (await page.textContent(sel))?.trim() ?? "";
}

const userDataDir = mkdtempSync(join(tmpdir(), "tg-chromium-"));
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: EXE,
  headless: true,
  args: ARGS,
  viewport: { width: 1400, height: 1700 },
});
let failed = false;
try {
  // ---- admin: sign in, state, pause / resume, live event ---------------------------------------
  const { page, offsite, errors } = await open(context, ADMIN);
  step("signed in as admin");
  await until("coordinator state RUNNING", async () => (await text(page, "#coordinator-state")) === "RUNNING");
  if (!(await text(page, "#who")).includes("admin")) throw new Error("the header does not name the admin");
  await until("event stream connected", async () => (await text(page, "#events-status")) === "connected");

  await page.click("#btn-pause");
  await until("coordinator state PAUSED on the page", async () => (await text(page, "#coordinator-state")) === "PAUSED");
  await until("the API reports paused", async () => (await apiGet("/coordinator/status")).state === "paused");
  step("paused");
  // The pause arrives as a live event over SSE.
  await until("a live coordinator_paused event", async () =>
    (await page.locator("#events li[data-type=system_events]", { hasText: "coordinator_paused" }).count()) > 0);
  step("live event arrived");
  await page.click("#btn-resume");
  await until("coordinator state RUNNING again", async () => (await text(page, "#coordinator-state")) === "RUNNING");
  await until("the API reports running", async () => (await apiGet("/coordinator/status")).state === "running");
  step("resumed");

  // ---- manual trade: position and its decision chain -------------------------------------------
  await until("prices known to the panel", async () => {
    const a = await apiGet("/portfolio/allocation");
    return Number(a.current_allocation?.prices?.btc) > 0 && (await text(page, "#allocation-note")).includes("total");
  });
  await page.selectOption("#trade-symbol", "BTC/USDT");
  await page.selectOption("#trade-form select[name=side]", "buy");
  await page.fill("#trade-form input[name=size_usd]", "150");
  await page.selectOption("#trade-type", "market");
  await page.click("#trade-suggest");
  if (!(await page.inputValue("#trade-stop"))) throw new Error("suggest did not fill the stop-loss");
  // The rebalancer trades at start, and the risk engine's post-trade cooldown (5 business
  // minutes, seconds at the simulated market's speed) refuses entries until it ends: try again then.
  let result = "";
  for (let attempt = 0; attempt < 30; attempt++) {
    await page.evaluate(() => (document.querySelector("#trade-result").textContent = ""));
    await page.click("#trade-suggest");
    await page.click("#trade-submit");
    result = await until("trade result", async () => {
      const t = await text(page, "#trade-result");
      return t.includes("correlation id") || t.startsWith("refused") ? t : null;
    });
    if (!result.includes("cooldown_active")) break;
    step("risk engine cooldown active; trying again");
    await page.waitForTimeout(2000);
  }
  if (!result.includes("verdict: approved")) throw new Error(`trade not approved: ${result}`);
  const cid = /correlation id: ([0-9a-f-]{36})/.exec(result)[1];
  step(`trade placed, correlation id ${cid}`);
  const row = page.locator(`#positions tr[data-correlation-id="${cid}"]`);
  await until("the position of the trade in the positions table", async () => (await row.count()) > 0, 45000);
  step("position shown");
  await until("the decision chain with the fill", async () => {
    await row.first().locator("button[data-action=chain]").click();
    await page.waitForTimeout(500);
    const stages = await page.locator("#chain li[data-stage]").evaluateAll((ls) => ls.map((l) => l.dataset.stage));
    return stages.includes("order_filled") && stages.includes("order_placed");
  }, 45000);
  if ((await text(page, "#chain-id")) !== cid) throw new Error("the chain shown is not the trade's");
  step("decision chain shown");
  // The equity chart has points.
  await until("equity on the chart", async () => (await text(page, "#equity-now")).includes("USD"));
  if (SHOT) {
    await page.screenshot({ path: SHOT, fullPage: true });
    step(`screenshot ${SHOT}`);
  }
  if (offsite.length) throw new Error(`the panel loaded something from elsewhere: ${offsite.join(", ")}`);
  if (errors.length) throw new Error(`page errors: ${errors.join("; ")}`);

  // ---- viewer: reads, but no control buttons -----------------------------------------------------
  // A new tab has its own session storage: signed out until the viewer signs in.
  const v = await open(context, VIEWER);
  await until("viewer sees the coordinator state", async () => (await text(v.page, "#coordinator-state")) === "RUNNING");
  await until("viewer sees positions", async () => (await v.page.locator(`#positions tr[data-correlation-id="${cid}"]`).count()) > 0);
  for (const sel of [
    "#btn-pause", "#btn-resume", "#btn-halt", "#btn-admin-resume", "#btn-reset-cooldown",
    "#trade-form", "button[data-action=close]", "button[data-action=move-stop]", "button[data-action=cancel]",
  ]) {
    const n = await v.page.locator(sel).count();
    if (n !== 0) throw new Error(`the viewer sees ${sel} (${n})`);
  }
  if (!(await text(v.page, "#who")).includes("viewer")) throw new Error("the header does not name the viewer");
  step("viewer sees no control buttons");
  if (v.errors.length) throw new Error(`page errors: ${v.errors.join("; ")}`);
  console.log("[panel test] PASS");
} catch (e) {
  failed = true;
  console.error(`[panel test] FAIL: ${e.stack || e}`);
} finally {
  await context.close();
  rmSync(userDataDir, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
