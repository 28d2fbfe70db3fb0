// End-to-end: a shop owner in a real browser against the real server.
// Run: node --test tests/browser/
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { startServer, launchBrowser, openPage, shot, reportShots, fixture, DESKTOP, PHONE, RESULTS } from './harness.mjs';

// local-studio costs 1 at auto and 2 at high quality (ceil(1 × 1.5)); 4 free
// tokens run out after: 1 (auto, completes) + 2 (high, cancelled, refunded) + 2 (high, completes).
const SIGNUP_TOKENS = 4;
const EMAIL = `owner-${Date.now()}@shop.example`;
const PASSWORD = 'linen-and-wool-42';

let server;
let browser;
let desk; // {page, errors, ...}

before(async () => {
  server = await startServer({ faults: 'delay_ms=3000', signupTokens: SIGNUP_TOKENS });
  browser = await launchBrowser();
  desk = await openPage(browser, DESKTOP, 'desktop');
});

after(async () => {
  if (browser) await browser.close();
  if (server) await server.stop();
  reportShots();
});

function noErrors(p) {
  assert.deepEqual(p.errors, [], `console/page errors:\n${p.errors.join('\n')}`);
}

async function balanceShown(page) {
  const t = await page.locator('.sidebar [data-balance]').first().textContent();
  return Number(t);
}

async function waitBalance(page, n) {
  await page.waitForFunction((want) => {
    const el = document.querySelector('.sidebar [data-balance]');
    return el && el.textContent.trim() === String(want);
  }, n, { timeout: 15000 });
}

// The account page: API keys, then webhooks (loaded alongside).
async function openAccount(p, url) {
  await p.page.goto(url);
  await p.page.getByRole('heading', { name: 'Account', level: 1 }).waitFor();
  await p.page.locator('.wh-list .skel').first().waitFor({ state: 'detached' });
}

async function panelStatus(page) {
  return page.locator('[data-gen-panel]').getAttribute('data-status');
}

test('sign up, with clear form errors', async () => {
  const { page } = desk;
  await page.goto(`${server.url}/#/signup`);
  await page.getByRole('heading', { name: 'Create your studio' }).waitFor();
  await shot(page, 'desktop-01-signup');
  // Empty submit: every field explains itself.
  await page.getByRole('button', { name: 'Create account' }).click();
  await page.locator('#name-err').filter({ hasText: /name/i }).waitFor();
  assert.match(await page.locator('#email-err').textContent(), /email/i);
  assert.match(await page.locator('#password-err').textContent(), /password/i);
  // Too-short password.
  await page.fill('#name', 'Juniper & Co.');
  await page.fill('#email', EMAIL);
  await page.fill('#password', 'short');
  await page.getByRole('button', { name: 'Create account' }).click();
  await page.locator('#password-err').filter({ hasText: /8 characters/ }).waitFor();
  assert.equal(await page.locator('#password').getAttribute('aria-invalid'), 'true');
  await shot(page, 'desktop-02-signup-errors');
  await page.fill('#password', PASSWORD);
  await page.getByRole('button', { name: 'Create account' }).click();
  await page.getByRole('heading', { name: 'Studio', level: 1 }).waitFor();
  await waitBalance(page, SIGNUP_TOKENS);
  noErrors(desk);
});

test('studio: reject a non-image, upload product and model images', async () => {
  const { page } = desk;
  // Models load from /api/models; local-studio is available and selected.
  await page.locator('.opts-model .opt-card[data-value="local-studio"] input:checked').waitFor({ state: 'attached' });
  await page.locator('#generate-btn').waitFor();
  assert.equal(await page.locator('#generate-btn').isDisabled(), true, 'no images yet → Generate disabled');
  assert.match(await page.locator('#gen-reason').textContent(), /product image/i);
  await shot(page, 'desktop-03-studio-empty', { fullPage: true });

  await page.setInputFiles('#file-product', fixture('not-image.txt'));
  const err = page.locator('#err-product');
  await err.filter({ hasText: /isn’t a JPEG, PNG or WebP/ }).waitFor();
  assert.equal(await page.locator('#up-product .thumb').count(), 0, 'rejected before uploading');

  // A slow connection, so the upload progress indicator is visible.
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('Network.enable');
  await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 20, downloadThroughput: -1, uploadThroughput: 48 * 1024 });
  await page.setInputFiles('#file-product', fixture('product.jpg'));
  const uploading = page.locator('#up-product .thumb.is-uploading [role="progressbar"]');
  await uploading.waitFor();
  await page.waitForFunction(() => {
    const pb = document.querySelector('#up-product .thumb.is-uploading [role="progressbar"]');
    return !pb || Number(pb.getAttribute('aria-valuenow')) > 0;
  });
  await shot(page, 'desktop-04a-uploading');
  await page.locator('#up-product .thumb.is-done').waitFor({ timeout: 20000 });
  await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });

  // A second product image: reorder it to the front, then remove it.
  await page.setInputFiles('#file-product', fixture('product2.png'));
  await page.waitForFunction(() => document.querySelectorAll('#up-product .thumb.is-done').length === 2);
  await page.getByRole('button', { name: 'Move product2.png earlier' }).click();
  assert.match(await page.locator('#up-product .thumb img').first().getAttribute('alt'), /product2\.png/);
  assert.match(await page.locator('#up-product .thumb-index').first().textContent(), /Main/);
  await page.getByRole('button', { name: 'Remove product2.png' }).click();
  assert.equal(await page.locator('#up-product .thumb').count(), 1);
  assert.match(await page.locator('#up-product .thumb img').first().getAttribute('alt'), /product\.jpg/);

  await page.setInputFiles('#file-model', fixture('model.jpg'));
  await page.locator('#up-product .thumb.is-done').waitFor();
  await page.locator('#up-model .thumb.is-done').waitFor();
  assert.equal(await err.textContent(), '', 'the error clears after a good upload');
  // Thumbnails are real, loaded images.
  const loaded = await page.locator('#up-product .thumb img').evaluate((img) => img.complete && img.naturalWidth > 0);
  assert.ok(loaded, 'product thumbnail rendered');
  assert.match(await page.locator('[data-count="product"]').textContent(), /1 \/ 5/);
  assert.match(await page.locator('[data-count="model"]').textContent(), /1 \/ 3/);

  // Style cards are a keyboard-operable radio group.
  await page.locator('input[name="style"][value="realistic"]').focus();
  await page.keyboard.press('ArrowRight');
  assert.equal(await page.locator('input[name="style"]:checked').getAttribute('value'), 'artistic');
  await page.keyboard.press('ArrowLeft');
  assert.equal(await page.locator('input[name="style"]:checked').getAttribute('value'), 'realistic');

  // Advanced: only what local-studio honours (the seed; models.test.mjs covers
  // the sliders), randomize, reset.
  await page.locator('#advanced > summary').click();
  for (const k of ['guidance_scale', 'num_inference_steps', 'strength']) {
    assert.equal(await page.locator(`[data-param="${k}"]`).isVisible(), false, `${k} hidden: local-studio does not use it`);
  }
  await page.getByRole('button', { name: 'Randomize seed' }).click();
  assert.match(await page.locator('#adv-seed').inputValue(), /^\d+$/);
  await page.locator('#advanced').scrollIntoViewIfNeeded();
  await shot(page, 'desktop-04b-advanced');
  await page.getByRole('button', { name: 'Reset to defaults' }).click();
  assert.equal(await page.locator('#adv-seed').inputValue(), '');

  // Custom prompt counter.
  await page.fill('#custom-prompt', 'Soft morning light, linen texture');
  assert.match(await page.locator('#prompt-count').textContent(), /^33 \/ 500$/);
  assert.equal(await page.locator('#generate-btn').isEnabled(), true);
  assert.match(await page.locator('[data-cost]').textContent(), /1 token/);
  await shot(page, 'desktop-04-studio-ready', { fullPage: true });
  noErrors(desk);
});

test('generate with local-studio: live progress, then results without reloading', async () => {
  const { page } = desk;
  const navs = [];
  page.on('framenavigated', (f) => { if (f === page.mainFrame()) navs.push(f.url()); });
  await page.locator('#generate-btn').click();
  const panel = page.locator('[data-gen-panel]');
  await panel.waitFor({ state: 'visible' });
  // Sample the progress bar the server drives over SSE.
  const seen = new Set();
  let midShot = false;
  const deadline = Date.now() + 30000;
  while (Date.now() < deadline) {
    const st = await panelStatus(page);
    const v = Number(await panel.locator('[role="progressbar"]').getAttribute('aria-valuenow'));
    seen.add(v);
    if (!midShot && st === 'processing' && v > 0 && v < 100) { await shot(page, 'desktop-05-generating'); midShot = true; }
    if (st === 'completed' || st === 'failed' || st === 'cancelled') break;
    await page.waitForTimeout(40);
  }
  assert.equal(await panelStatus(page), 'completed', `generation ended ${await panelStatus(page)}: ${await panel.textContent()}`);
  const values = [...seen].sort((a, b) => a - b);
  assert.ok(values.some((v) => v > 0 && v < 100), `progress advanced through intermediate values: ${values}`);
  assert.equal(values[values.length - 1], 100);
  await panel.locator('.gallery img').first().waitFor();
  await page.waitForFunction(() => [...document.querySelectorAll('[data-gen-panel] .gallery img')].every((i) => i.complete && i.naturalWidth > 0));
  assert.match(await panel.locator('[data-ptime]').textContent(), /\d/, 'processing time shown');
  assert.match(await panel.locator('[data-tokens]').textContent(), /1 token/);
  assert.equal(navs.length, 0, 'no page reload or navigation');
  await waitBalance(page, SIGNUP_TOKENS - 1);
  await shot(page, 'desktop-06-completed', { fullPage: true });
  noErrors(desk);
});

test('lightbox: open, keyboard, download', async () => {
  const { page } = desk;
  await page.locator('[data-gen-panel] .gallery-open').first().click();
  const lb = page.locator('dialog.lightbox');
  await lb.waitFor({ state: 'visible' });
  await page.waitForFunction(() => { const i = document.querySelector('dialog.lightbox .lb-img'); return i && i.complete && i.naturalWidth > 0; });
  const count = await page.locator('[data-gen-panel] .gallery-open').count();
  if (count > 1) {
    const first = await lb.locator('.lb-counter').textContent();
    await page.keyboard.press('ArrowRight');
    assert.notEqual(await lb.locator('.lb-counter').textContent(), first);
    await page.keyboard.press('ArrowLeft');
    assert.equal(await lb.locator('.lb-counter').textContent(), first);
  }
  await shot(page, 'desktop-07-lightbox');
  await desk.context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: server.url });
  await lb.getByRole('button', { name: 'Copy link' }).click();
  await page.locator('.toast', { hasText: 'Link copied' }).waitFor();
  const link = await page.evaluate(() => navigator.clipboard.readText());
  assert.match(link, /^https?:\/\/[^/]+\/media\//, `copied ${link}`);
  assert.equal((await fetch(link)).status, 200, 'the copied link serves the image');
  const [download] = await Promise.all([
    page.waitForEvent('download'),
    lb.locator('[data-lb-download]').click(),
  ]);
  assert.match(download.suggestedFilename(), /\.(jpe?g|png)$/);
  const saved = path.join(RESULTS, `download-${download.suggestedFilename()}`);
  await download.saveAs(saved);
  assert.ok(fs.statSync(saved).size > 1000, 'downloaded a real image');
  await page.keyboard.press('Escape');
  await lb.waitFor({ state: 'detached' });
  noErrors(desk);
});

test('cancel a second generation and see the refund', async () => {
  const { page } = desk;
  await page.locator('.opts-quality .opt-card[data-value="high"]').click();
  assert.match(await page.locator('[data-cost]').textContent(), /2 tokens/);
  const before = await balanceShown(page);
  await page.locator('#generate-btn').click();
  const panel = page.locator('[data-gen-panel]');
  await page.waitForFunction(() => {
    const p = document.querySelector('[data-gen-panel]');
    return p && p.dataset.status === 'processing';
  });
  await waitBalance(page, before - 2);
  const cancel = panel.locator('[data-action="cancel"]');
  await cancel.waitFor({ state: 'visible' });
  await cancel.click();
  await page.waitForFunction(() => document.querySelector('[data-gen-panel]').dataset.status === 'cancelled');
  await waitBalance(page, before);
  assert.match(await panel.locator('[data-status-line]').textContent(), /refunded/i);
  const again = panel.locator('[data-action="start-again"]');
  assert.equal(await again.isVisible(), true, 'start again offered after cancel');
  assert.equal((await again.textContent()).trim(), 'Start again');
  assert.match(await panel.locator('.failure-title').textContent(), /cancelled/i, 'readable text, not a bare code');
  await shot(page, 'desktop-08-cancelled');
  noErrors(desk);
});

test('running out of tokens: Generate disabled with a reason, INSUFFICIENT_TOKENS handled', async () => {
  const { page } = desk;
  // Spend down to 1 token with a high-quality generation (2 tokens).
  await page.locator('#generate-btn').click();
  await page.waitForFunction(() => document.querySelector('[data-gen-panel]').dataset.status === 'completed', null, { timeout: 30000 });
  await waitBalance(page, 1);
  assert.equal(await page.locator('#generate-btn').isDisabled(), true);
  assert.match(await page.locator('#gen-reason').textContent(), /Not enough tokens: this needs 2 tokens, you have 1/);
  await shot(page, 'desktop-09-low-balance', { fullPage: false });

  // Retrying the cancelled high-quality generation needs 2 tokens: the server says no.
  await page.goto(`${server.url}/#/history`);
  await page.locator('.chip[data-filter="cancelled"]').click();
  await page.locator('.hcard[data-status="cancelled"]').first().waitFor();
  await page.locator('.hcard[data-status="cancelled"] a').first().click();
  await page.locator('[data-action="start-again"]').waitFor();
  await desk.expectErrors(/status of 400/, async () => {
    await page.locator('[data-action="start-again"]').click();
    await page.locator('.error-code', { hasText: 'INSUFFICIENT_TOKENS' }).waitFor();
  });
  const buy = page.getByRole('button', { name: 'Get more tokens' }).first();
  await buy.waitFor();
  await shot(page, 'desktop-10-insufficient-tokens');
  await buy.click();
  await page.locator('dialog.modal').waitFor({ state: 'visible' });
  await page.keyboard.press('Escape');
  await page.locator('dialog.modal').waitFor({ state: 'detached' });
  noErrors(desk);
});

test('history shows both, with filter, details and delete', async () => {
  const { page } = desk;
  await page.goto(`${server.url}/#/history`);
  await page.locator('.chip[data-filter="all"]').click();
  await page.waitForFunction(() => document.querySelectorAll('.hcard').length === 3);
  assert.equal(await page.locator('.hcard[data-status="completed"]').count(), 2);
  assert.equal(await page.locator('.hcard[data-status="cancelled"]').count(), 1);
  await page.waitForFunction(() => [...document.querySelectorAll('.hcard img')].every((i) => i.complete && i.naturalWidth > 0));
  assert.equal(await page.locator('.hcard img').first().getAttribute('loading'), 'lazy');
  await shot(page, 'desktop-11-history');

  await page.locator('.chip[data-filter="completed"]').click();
  await page.waitForFunction(() => document.querySelectorAll('.hcard').length === 2 && !document.querySelector('.hcard[data-status="cancelled"]'));
  await page.locator('.chip[data-filter="all"]').click();
  await page.waitForFunction(() => document.querySelectorAll('.hcard').length === 3);

  // Open the first (oldest) completed generation: settings, prompt, results.
  await page.locator('.hcard[data-status="completed"] a').last().click();
  await page.getByRole('heading', { name: 'Settings' }).waitFor();
  const settings = await page.locator('.detail-side').textContent();
  assert.match(settings, /local-studio/);
  assert.match(settings, /realistic/);
  assert.match(await page.locator('.prompt-text').first().textContent(), /Soft morning light/);
  await page.locator('.detail-main .gallery img').first().waitFor();
  await shot(page, 'desktop-12-detail', { fullPage: true });

  // Delete the cancelled one.
  await page.goto(`${server.url}/#/history`);
  await page.locator('.hcard[data-status="cancelled"] a').click();
  await page.locator('[data-action="delete"]').click();
  await page.locator('dialog.modal').waitFor({ state: 'visible' });
  await page.locator('dialog.modal [data-confirm]').click();
  await page.getByRole('heading', { name: 'History', level: 1 }).waitFor();
  await page.waitForFunction(() => document.querySelectorAll('.hcard').length === 2);
  noErrors(desk);
});

test('dashboard shows real numbers', async () => {
  const { page } = desk;
  await page.goto(`${server.url}/#/dashboard`);
  await page.locator('.kpi').first().waitFor();
  await page.locator('.gen-row').first().waitFor();
  assert.equal((await page.locator('.kpi-accent [data-balance]').textContent()).trim(), '1');
  assert.equal((await page.locator('[data-kpi="total"]').textContent()).trim(), '2');
  assert.equal((await page.locator('[data-kpi="rate"]').textContent()).trim(), '100%');
  assert.equal(await page.locator('.gen-row').count(), 2);
  await page.locator('.ledger-row').first().waitFor();
  await shot(page, 'desktop-13-dashboard');
  noErrors(desk);
});

test('API keys: create (shown once), use it, revoke', async () => {
  const { page } = desk;
  await openAccount(desk, `${server.url}/#/account`);
  await page.getByRole('button', { name: 'Create key' }).click();
  await page.locator('#key-name-err').filter({ hasText: /name/ }).waitFor();
  await page.fill('#key-name', 'Catalogue sync');
  await page.getByRole('button', { name: 'Create key' }).click();
  const key = (await page.locator('[data-new-key]').textContent()).trim();
  assert.match(key, /^sk_/);
  await page.locator('tr[data-key-id]').first().waitFor();
  await shot(page, 'desktop-14-keys');
  // The key works for scripting.
  const me = await fetch(`${server.url}/api/me`, { headers: { Authorization: `Bearer ${key}` } });
  assert.equal(me.status, 200);
  // Shown once: gone from the page after dismissing, and the list has only the hint.
  await page.getByRole('button', { name: 'I’ve saved it' }).click();
  assert.equal(await page.locator('[data-new-key]').count(), 0);
  assert.ok(!(await page.locator('.keys-list').textContent()).includes(key));
  await page.getByRole('button', { name: 'Revoke Catalogue sync' }).click();
  await page.locator('dialog.modal [data-confirm]').click();
  await page.getByText('No API keys yet').waitFor();
  const after = await fetch(`${server.url}/api/me`, { headers: { Authorization: `Bearer ${key}` } });
  assert.equal(after.status, 401, 'revoked key refused');
  noErrors(desk);
});

test('sign out, wrong password, sign in', async () => {
  const { page } = desk;
  await page.locator('[data-signout]').click();
  await page.getByRole('heading', { name: 'Welcome back' }).waitFor();
  await page.fill('#email', EMAIL);
  await page.fill('#password', 'not-my-password');
  await desk.expectErrors(/status of 401/, async () => {
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('alert').filter({ hasText: /Invalid email or password/ }).waitFor();
  });
  await shot(page, 'desktop-15-signin-error');
  await page.fill('#password', PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: 'Studio', level: 1 }).waitFor();
  await waitBalance(page, 1);
  noErrors(desk);
});

test('phone-sized screens: every page fits and works', async () => {
  const phone = await openPage(browser, PHONE, 'phone');
  const { page } = phone;
  try {
    const noOverflow = async (what) => {
      const [sw, iw] = await page.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
      assert.ok(sw <= iw, `${what}: page is ${sw}px wide on a ${iw}px screen`);
    };
    await page.goto(`${server.url}/#/signin`);
    await page.getByRole('heading', { name: 'Welcome back' }).waitFor();
    await noOverflow('sign in');
    await shot(page, 'phone-01-signin');
    await page.fill('#email', EMAIL);
    await page.fill('#password', PASSWORD);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { name: 'Studio', level: 1 }).waitFor();
    await page.locator('.opts-model .opt-card').first().waitFor();
    // Balance and cost stay visible on a phone.
    assert.ok(await page.locator('.topbar .balance-chip').isVisible());
    assert.ok(await page.locator('.summary [data-cost]').isVisible());
    await noOverflow('studio');
    await shot(page, 'phone-02-studio');
    await page.setInputFiles('#file-product', fixture('product.jpg'));
    await page.locator('#up-product .thumb.is-done').waitFor();
    await shot(page, 'phone-03-studio-uploaded');
    await shot(page, 'phone-04-studio-full', { fullPage: true });
    // Menu drawer.
    await page.getByRole('button', { name: 'Open menu' }).click();
    await page.locator('.nav-open .sidebar').waitFor();
    await page.waitForTimeout(300);
    await shot(page, 'phone-05-menu');
    await page.getByRole('link', { name: 'Dashboard' }).click();
    await page.locator('.kpi').first().waitFor();
    await page.locator('.gen-row').first().waitFor();
    await noOverflow('dashboard');
    await shot(page, 'phone-06-dashboard', { fullPage: true });
    await page.goto(`${server.url}/#/history`);
    await page.locator('.hcard img').first().waitFor();
    await page.waitForFunction(() => [...document.querySelectorAll('.hcard img')].every((i) => i.complete && i.naturalWidth > 0));
    await noOverflow('history');
    await shot(page, 'phone-07-history', { fullPage: true });
    await page.locator('.hcard a').first().click();
    await page.getByRole('heading', { name: 'Settings' }).waitFor();
    await page.locator('.detail-main .gallery img').first().waitFor();
    await noOverflow('detail');
    await shot(page, 'phone-08-detail', { fullPage: true });
    await page.locator('.detail-main .gallery-open').first().click();
    await page.locator('dialog.lightbox').waitFor({ state: 'visible' });
    await page.waitForFunction(() => { const i = document.querySelector('dialog.lightbox .lb-img'); return i && i.complete && i.naturalWidth > 0; });
    await shot(page, 'phone-09-lightbox');
    await page.keyboard.press('Escape');
    await openAccount(phone, `${server.url}/#/keys`);
    await page.fill('#key-name', 'Phone key');
    await page.getByRole('button', { name: 'Create key' }).click();
    await page.locator('[data-new-key]').waitFor();
    await page.locator('tr[data-key-id]').first().waitFor();
    await noOverflow('keys');
    await shot(page, 'phone-10-keys', { fullPage: true });
    noErrors(phone);
  } finally {
    await phone.context.close();
  }
});

test('keyboard: skip link and visible focus', async () => {
  const { page } = desk;
  await page.goto(`${server.url}/#/studio`);
  await page.reload();
  await page.getByRole('heading', { name: 'Studio', level: 1 }).waitFor();
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement.className), 'skip-link');
  await page.keyboard.press('Enter');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'main');
  // Every interactive control in the studio has an accessible name.
  const unnamed = await page.evaluate(() => [...document.querySelectorAll('main button, main input, main textarea, main a')]
    .filter((el) => el.type !== 'hidden')
    .filter((el) => !(el.getAttribute('aria-label') || el.labels?.length || el.textContent.trim() || el.getAttribute('title')))
    .map((el) => el.outerHTML.slice(0, 80)));
  assert.deepEqual(unnamed, []);
  noErrors(desk);
});
