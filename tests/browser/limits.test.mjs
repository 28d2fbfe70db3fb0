// Limits in the browser (SPEC §1, §4) against the real binary: the rate limit
// (429 RATE_LIMIT_EXCEEDED with a wait), a full queue (503 QUEUE_FULL), a queued
// generation's position and ETA in the live panel, and the user's plan (free/pro,
// with priority "high" offered to pro users only).
// Run: node --test --test-concurrency=1 tests/browser/limits.test.mjs
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { startServer, launchBrowser, openPage, shot, reportShots, fixture, REPO, DESKTOP, PHONE } from './harness.mjs';

let browser;

before(async () => { browser = await launchBrowser(); });
after(async () => {
  if (browser) await browser.close();
  reportShots();
});

async function signUp(page, url, email) {
  await page.goto(`${url}/#/signup`);
  await page.fill('#name', 'Atelier Nord');
  await page.fill('#email', email);
  await page.fill('#password', 'atelier-nord-1');
  await page.getByRole('button', { name: 'Create account' }).click();
  await page.getByRole('heading', { name: 'Studio', level: 1 }).waitFor();
}

async function addProduct(page) {
  await page.setInputFiles('#file-product', fixture('product.jpg'));
  await page.locator('#up-product .thumb.is-done').waitFor();
  await page.locator('#generate-btn:not([disabled])').waitFor();
}

const panelId = async (page) => (await page.locator('[data-gen-panel] .panel-head .mono').textContent()).trim();

function cli(args) {
  const bin = process.env.STYLESTUDIO_BIN || path.join(REPO, 'build/stylestudio');
  return new Promise((resolve, reject) => {
    const p = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d) => { out += d; });
    p.stderr.on('data', (d) => { out += d; });
    p.on('exit', (c) => (c === 0 ? resolve(out) : reject(new Error(`${args.join(' ')} exited ${c}: ${out}`))));
  });
}

for (const [label, viewport] of [['desktop', DESKTOP], ['phone', PHONE]]) {
  test(`${label}: the second generate past --rate-free 1/h,1 says so, with the wait, and holds the button`, async () => {
    const server = await startServer({ signupTokens: 20, args: ['--rate-free', '1/h,1'] });
    const p = await openPage(browser, viewport, `${label}-rate`);
    try {
      const { page } = p;
      await signUp(page, server.url, `rate-${label}-${Date.now()}@shop.example`);
      await addProduct(page);
      await page.locator('#generate-btn').click();
      await page.waitForFunction(() => document.querySelector('[data-gen-panel]')?.dataset.status === 'completed', null, { timeout: 30000 });
      await page.locator('#generate-btn:not([disabled])').waitFor();
      await p.expectErrors(/status of 429/, async () => {
        await page.locator('#generate-btn').click();
        await page.locator('.summary-error .alert-message').filter({ hasText: /generation limit/ }).waitFor();
      });
      const msg = await page.locator('.summary-error .alert-message').textContent();
      assert.match(msg, /^You've hit your generation limit — try again in \d+ (s|min|h)\.$/, msg);
      assert.ok(!/^RATE_LIMIT_EXCEEDED/.test(msg), 'the message is words, not the code');
      assert.equal(await page.locator('#generate-btn').isDisabled(), true, 'Generate waits out the limit');
      assert.match(await page.locator('#gen-reason').textContent(), /generate again in \d+ (s|min|h)/);
      await page.locator('.summary-error').scrollIntoViewIfNeeded();
      await shot(page, `${label}-40-rate-limited`);
      assert.deepEqual(p.errors, []);
    } finally {
      await p.context.close();
      await server.stop();
    }
  });
}

test('desktop: the Generate button comes back when a short rate-limit wait is over', async () => {
  // 6/m with a burst of 1: a unit back every 10 s.
  const server = await startServer({ signupTokens: 20, args: ['--rate-free', '6/m,1'] });
  const p = await openPage(browser, DESKTOP, 'desktop-rate-short');
  try {
    const { page } = p;
    await signUp(page, server.url, `rate-short-${Date.now()}@shop.example`);
    await addProduct(page);
    await page.locator('#generate-btn').click();
    await page.locator('[data-gen-panel]:not([hidden])').waitFor();
    await page.locator('#generate-btn:not([disabled])').waitFor();
    await p.expectErrors(/status of 429/, async () => {
      await page.locator('#generate-btn').click();
      await page.locator('.summary-error .alert-message').filter({ hasText: /generation limit/ }).waitFor();
    });
    assert.equal(await page.locator('#generate-btn').isDisabled(), true);
    await page.locator('#generate-btn:not([disabled])').waitFor({ timeout: 15000 });
    assert.equal(await page.locator('.summary-error .alert-message').count(), 0, 'the limit message goes once the wait is over');
    assert.deepEqual(p.errors, []);
  } finally {
    await p.context.close();
    await server.stop();
  }
});

for (const [label, viewport] of [['desktop', DESKTOP], ['phone', PHONE]]) {
  test(`${label}: a queued generation shows its position and ETA; past --queue-max the queue-full message`, async () => {
    const server = await startServer({ signupTokens: 40, faults: 'delay_ms=6000', args: ['--workers', '1', '--queue-max', '1'] });
    const p = await openPage(browser, viewport, `${label}-queue`);
    try {
      const { page } = p;
      await signUp(page, server.url, `queue-${label}-${Date.now()}@shop.example`);
      await addProduct(page);
      // First: claimed by the only worker.
      await page.locator('#generate-btn').click();
      await page.waitForFunction(() => {
        const el = document.querySelector('[data-gen-panel]');
        return el && el.dataset.status === 'processing' && !el.querySelector('[data-step="queued"].current');
      }, null, { timeout: 15000 });
      const first = await panelId(page);
      assert.equal(await page.locator('[data-queue-info]').isHidden(), true, 'no queue line once it runs');
      // Second: waits behind it, with its position and ETA.
      await page.locator('#generate-btn:not([disabled])').waitFor();
      await page.locator('#generate-btn').click();
      await page.waitForFunction((f) => document.querySelector('[data-gen-panel] .panel-head .mono')?.textContent.trim() !== f, first);
      const info = page.locator('[data-queue-info]');
      await info.waitFor({ state: 'visible' });
      const text = (await info.textContent()).trim();
      assert.match(text, /^Position 1 · about \d+ (s|min|h)$/, text);
      const second = await panelId(page);
      const rec = await page.evaluate(async (id) => (await (await fetch(`/api/generations/${id}`)).json()).data, second);
      assert.equal(rec.queuePosition, 1);
      await page.locator('[data-gen-panel]').scrollIntoViewIfNeeded();
      await shot(page, `${label}-41-queued-position-eta`);
      // Third: the queue (at most 1 waiting) is full.
      await page.locator('#generate-btn:not([disabled])').waitFor();
      await p.expectErrors(/status of 503/, async () => {
        await page.locator('#generate-btn').click();
        await page.locator('.summary-error .alert-message').filter({ hasText: /queue is full/ }).waitFor();
      });
      const msg = await page.locator('.summary-error .alert-message').textContent();
      assert.match(msg, /^The queue is full right now — try again in \d+ (s|min|h)\./, msg);
      await page.locator('.summary-error').scrollIntoViewIfNeeded();
      await shot(page, `${label}-42-queue-full`);
      // The second one leaves the queue: its queue line goes away.
      await page.evaluate(() => { location.hash = '#/history'; });
      await page.goto(`${server.url}/#/history/${second}`);
      await page.waitForFunction(() => ['processing', 'completed'].includes(document.querySelector('[data-gen-panel]')?.dataset.status)
        && !document.querySelector('[data-gen-panel] [data-step="queued"].current'), null, { timeout: 30000 });
      assert.equal(await page.locator('[data-gen-panel] [data-queue-info]').isHidden(), true);
      assert.deepEqual(p.errors, []);
    } finally {
      await p.context.close();
      await server.stop();
    }
  });
}

for (const [label, viewport] of [['desktop', DESKTOP], ['phone', PHONE]]) {
  test(`${label}: the plan is shown with the balance; only pro users are offered high priority`, async () => {
    const server = await startServer({ signupTokens: 20 });
    const p = await openPage(browser, viewport, `${label}-plan`);
    try {
      const { page } = p;
      const email = `plan-${label}-${Date.now()}@shop.example`;
      await signUp(page, server.url, email);
      const chipPlan = page.locator('.balance-chip [data-user-plan], .side-balance [data-user-plan]').locator('visible=true').first();
      await chipPlan.waitFor();
      assert.equal((await chipPlan.textContent()).trim(), 'Free');
      assert.equal(await page.locator('[data-priority-opt]').isHidden(), true, 'free users are not offered high priority');
      // Make them pro with the CLI, sign in again.
      await cli(['user', 'plan', '--data', server.dataDir, '--email', email, '--plan', 'pro']);
      await page.reload();
      await page.getByRole('heading', { name: 'Studio', level: 1 }).waitFor();
      await page.locator('[data-user-plan].is-pro').locator('visible=true').first().waitFor();
      const me = await page.evaluate(async () => (await (await fetch('/api/me')).json()).data);
      assert.equal(me.user.plan, 'pro');
      await page.locator('[data-priority-opt]').waitFor({ state: 'visible' });
      await addProduct(page);
      await page.locator('#priority-high').check();
      await page.locator('.summary').scrollIntoViewIfNeeded();
      await shot(page, `${label}-43-pro-plan-priority`);
      await page.locator('#generate-btn').click();
      await page.waitForFunction(() => document.querySelector('[data-gen-panel]')?.dataset.status === 'completed', null, { timeout: 30000 });
      const rec = await page.evaluate(async (id) => (await (await fetch(`/api/generations/${id}`)).json()).data, await panelId(page));
      assert.equal(rec.priority, 'high');
      assert.deepEqual(p.errors, []);
    } finally {
      await p.context.close();
      await server.stop();
    }
  });
}
