// The studio's rough edges (issue 10, item 7), each checked as a user sees it,
// at desktop and phone widths, against the real binary: a password of spaces,
// an upload the server refuses, a reload during a generation, a generation
// that was created but never started, the Generate button while choosing
// settings, and the rest below.
// Run: node --test --test-concurrency=1 tests/browser/rough-edges.test.mjs
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import zlib from 'node:zlib';
import { startServer, launchBrowser, openPage, shot, reportShots, fixture, DESKTOP, PHONE } from './harness.mjs';

const VIEWPORTS = [['desktop', DESKTOP], ['phone', PHONE]];
const PASSWORD = 'linen-and-wool-42';

let server;
let browser;
const users = {}; // label → {p, email}

before(async () => {
  server = await startServer({ faults: 'delay_ms=5000', signupTokens: 30 });
  browser = await launchBrowser();
});

after(async () => {
  for (const u of Object.values(users)) await u.p.context.close().catch(() => {});
  if (browser) await browser.close();
  if (server) await server.stop();
  reportShots();
});

function noErrors(p) {
  assert.deepEqual(p.errors, [], `console/page errors:\n${p.errors.join('\n')}`);
}

async function signUp(page, email, password = PASSWORD) {
  await page.goto(`${server.url}/#/signup`);
  await page.fill('#name', 'Atelier Nord');
  await page.fill('#email', email);
  await page.fill('#password', password);
  await page.getByRole('button', { name: 'Create account' }).click();
}

/** A signed-in page per viewport, made once. */
async function user(label) {
  if (users[label]) return users[label];
  const p = await openPage(browser, label === 'phone' ? PHONE : DESKTOP, label);
  const email = `edges-${label}-${Date.now()}@shop.example`;
  await signUp(p.page, email);
  await p.page.getByRole('heading', { name: 'Studio', level: 1 }).waitFor();
  users[label] = { p, email };
  return users[label];
}

async function openStudio(page) {
  await page.goto(`${server.url}/#/studio`);
  await page.getByRole('heading', { name: 'Studio', level: 1 }).waitFor();
  await page.locator('.opts-model .opt-card[data-value="local-studio"] input:checked').waitFor({ state: 'attached' });
}

async function clearProducts(page) {
  while (await page.locator('#up-product [data-remove]').count()) await page.locator('#up-product [data-remove]').first().click();
}

async function addProduct(page, name = 'product.jpg') {
  await page.setInputFiles('#file-product', fixture(name));
  await page.locator('#up-product .thumb.is-done').last().waitFor();
}

const panelStatus = (page) => page.locator('[data-gen-panel]').getAttribute('data-status');

for (const [label, viewport] of VIEWPORTS) {
  test(`${label}: a password of only spaces is refused before it reaches the server`, async () => {
    const p = await openPage(browser, viewport, `${label}-spaces`);
    try {
      const { page } = p;
      await signUp(page, `spaces-${label}-${Date.now()}@shop.example`, '          ');
      const err = page.locator('#password-err');
      await err.filter({ hasText: /only spaces/ }).waitFor();
      assert.equal(await page.locator('#password').getAttribute('aria-invalid'), 'true');
      assert.match(page.url(), /#\/signup$/, 'still on the sign-up form');
      await shot(page, `${label}-60-password-spaces`);
      // The server refuses it as well (a client that skips the form).
      const r = await p.expectErrors(/status of 400/, () => page.evaluate(async () => {
        const res = await fetch('/api/auth/signup', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ name: 'X', email: `s${Date.now()}@x.example`, password: '         ' }) });
        return res.json();
      }));
      assert.equal(r.code, 'VALIDATION_ERROR');
      assert.deepEqual(r.validationErrors.map((v) => v.field), ['password']);
      noErrors(p);
    } finally {
      await p.context.close();
    }
  });
}

for (const [label] of VIEWPORTS) {
  test(`${label}: an upload the server refuses shows a clean error: no preview, no Retry, no code`, async () => {
    const { p } = await user(label);
    const { page } = p;
    await openStudio(page);
    await clearProducts(page);
    await p.expectErrors(/status of 400/, async () => {
      await page.setInputFiles('#file-product', fixture('truncated.jpg'));
      await page.locator('#up-product .thumb.is-error').waitFor();
    });
    const thumb = page.locator('#up-product .thumb.is-error');
    assert.equal(await thumb.locator('img').count(), 0, 'no broken <img> (and its alt text) behind the error');
    assert.equal((await thumb.locator('.thumb-error-text').textContent()).trim(), 'Not a readable image');
    assert.equal(await thumb.getByRole('button', { name: 'Retry' }).count(), 0, 'a file that can never pass is not offered Retry');
    const msg = await page.locator('#err-product').textContent();
    assert.match(msg, /“truncated\.jpg” can’t be used/);
    assert.doesNotMatch(msg, /[A-Z]{3,}_[A-Z]{3,}/, `no raw error code: ${msg}`);
    assert.match(await page.locator('#gen-reason').textContent(), /Remove the image that can’t be used/);
    await thumb.scrollIntoViewIfNeeded();
    await shot(page, `${label}-61-upload-refused`);
    await thumb.locator('[data-remove]').click();
    assert.equal(await page.locator('#up-product .thumb').count(), 0);
    assert.equal(await page.locator('#err-product').textContent(), '');
    noErrors(p);
  });
}

for (const [label] of VIEWPORTS) {
  test(`${label}: reloading during a generation brings back the live panel and the inputs`, async () => {
    const { p } = await user(label);
    const { page } = p;
    await openStudio(page);
    await clearProducts(page);
    await addProduct(page);
    await page.locator('.opt-card[data-value="minimal"]').click();
    await page.locator('.opt-card[data-value="4:5"]').click();
    await page.fill('#custom-prompt', 'Soft morning light');
    await page.locator('#generate-btn').click();
    await page.waitForFunction(() => document.querySelector('[data-gen-panel]')?.dataset.status === 'processing');
    const id = (await page.locator('[data-gen-panel] .panel-head .mono').textContent()).trim();
    await page.reload();
    await page.getByRole('heading', { name: 'Studio', level: 1 }).waitFor();
    const panel = page.locator('[data-gen-panel]');
    await panel.waitFor({ state: 'visible' });
    assert.equal((await panel.locator('.panel-head .mono').textContent()).trim(), id, 'the same generation');
    // Still running unless the machine is slow enough that it finished meanwhile.
    await page.waitForFunction(() => ['processing', 'completed'].includes(document.querySelector('[data-gen-panel]')?.dataset.status));
    if (label === 'phone') await panel.scrollIntoViewIfNeeded();
    await shot(page, `${label}-62-reloaded-during-generation`);
    assert.equal(await page.locator('#up-product .thumb.is-done').count(), 1, 'the uploaded product is back');
    assert.equal(await page.locator('input[name="style"]:checked').getAttribute('value'), 'minimal');
    assert.equal(await page.locator('input[name="aspect"]:checked').getAttribute('value'), '4:5');
    assert.equal(await page.locator('#custom-prompt').inputValue(), 'Soft morning light');
    await page.waitForFunction(() => document.querySelector('[data-gen-panel]')?.dataset.status === 'completed', null, { timeout: 30000 });
    await panel.locator('.gallery img').first().waitFor();
    noErrors(p);
  });
}

for (const [label] of VIEWPORTS) {
  test(`${label}: a generation created but never started says so and offers Start`, async () => {
    const { p } = await user(label);
    const { page } = p;
    await openStudio(page);
    if (!(await page.locator('#up-product .thumb.is-done').count())) await addProduct(page);
    // The start request is lost (a dropped connection after create).
    await page.route('**/api/generate', (route) => route.abort('connectionreset'), { times: 1 });
    await p.expectErrors(/ERR_CONNECTION_RESET|Failed to load resource/, async () => {
      await page.locator('#generate-btn').click();
      await page.locator('[data-gen-panel] [data-action="start"]').waitFor({ state: 'visible' });
    });
    const panel = page.locator('[data-gen-panel]');
    assert.equal(await panelStatus(page), 'pending');
    assert.equal((await panel.locator('[data-status-line]').textContent()).trim(), 'Created, not started yet');
    assert.match(await panel.locator('[data-pending-note]').textContent(), /held until it starts/);
    const clock = await panel.locator('[data-elapsed]').textContent();
    assert.equal(clock, 'Not started', 'no running clock');
    await page.waitForTimeout(1200);
    assert.equal(await panel.locator('[data-elapsed]').textContent(), 'Not started');
    // After a reload it is still there, still not started.
    await page.reload();
    await panel.locator('[data-action="start"]').waitFor({ state: 'visible' });
    if (label === 'phone') await panel.scrollIntoViewIfNeeded();
    await shot(page, `${label}-63-not-started`);
    await panel.locator('[data-action="start"]').click();
    await page.waitForFunction(() => ['processing', 'completed'].includes(document.querySelector('[data-gen-panel]')?.dataset.status));
    assert.equal(await panel.locator('[data-action="start"]').isVisible(), false);
    await page.waitForFunction(() => document.querySelector('[data-gen-panel]')?.dataset.status === 'completed', null, { timeout: 30000 });
    noErrors(p);
  });
}

test('desktop: the Generate button stays in view while choosing settings', async () => {
  const { p } = await user('desktop');
  const { page } = p;
  await openStudio(page);
  const inView = async () => page.locator('#generate-btn').evaluate((b) => {
    const r = b.getBoundingClientRect();
    return r.top >= 0 && r.bottom <= innerHeight && r.height > 0;
  });
  for (const sec of ['#sec-style', '#sec-model', '#sec-format', '#sec-prompt']) {
    await page.locator(sec).scrollIntoViewIfNeeded();
    assert.ok(await inView(), `Generate is visible with ${sec} in view`);
  }
  if (!(await page.locator('#advanced').evaluate((d) => d.open))) await page.locator('#advanced > summary').click();
  await page.evaluate(() => window.scrollTo(0, document.body.scrollHeight));
  assert.ok(await inView(), 'Generate is visible at the bottom of the page');
  // With the last generation's results below it, on a laptop-height window,
  // scrolling the side column (the results) keeps Generate on top.
  if (!(await page.locator('[data-gen-panel] .gallery img').count())) {
    if (!(await page.locator('#up-product .thumb.is-done').count())) await addProduct(page);
    await page.locator('#generate-btn').click();
    await page.waitForFunction(() => document.querySelector('[data-gen-panel]')?.dataset.status === 'completed', null, { timeout: 30000 });
  }
  await page.setViewportSize({ width: 1280, height: 680 });
  await page.locator('[data-gen-panel] .gallery img').first().waitFor();
  await page.locator('.studio-side').evaluate((el) => { el.scrollTop = el.scrollHeight; });
  await page.waitForTimeout(100);
  assert.ok(await page.locator('.studio-side').evaluate((el) => el.scrollTop > 0), 'the side column did scroll');
  assert.ok(await inView(), 'Generate is visible with the side column scrolled to the results');
  await shot(page, 'desktop-64-generate-in-view');
  await page.setViewportSize(DESKTOP);
  noErrors(p);
});

for (const [label] of VIEWPORTS) {
  test(`${label}: the History filter starts at All when you come back`, async () => {
    const { p } = await user(label);
    const { page } = p;
    await page.goto(`${server.url}/#/history`);
    await page.locator('.hgrid[aria-busy="false"]').waitFor();
    await page.locator('.chip[data-filter="failed"]').click();
    await page.locator('.hgrid-empty').filter({ hasText: /No failed generations/ }).waitFor();
    await page.goto(`${server.url}/#/studio`);
    await page.getByRole('heading', { name: 'Studio', level: 1 }).waitFor();
    await page.goto(`${server.url}/#/history`);
    await page.locator('.hgrid[aria-busy="false"]').waitFor();
    assert.equal(await page.locator('.chip[data-filter="all"]').getAttribute('aria-pressed'), 'true');
    assert.equal(await page.locator('.chip[data-filter="failed"]').getAttribute('aria-pressed'), 'false');
    await shot(page, `${label}-65-history-filter-reset`);
    noErrors(p);
  });

  test(`${label}: a toast does not cover the page's content`, async () => {
    const { p } = await user(label);
    const { page } = p;
    await openStudio(page);
    // Advanced settings stay open or closed as the user left them (kept over visits).
    if (!(await page.locator('#advanced').evaluate((d) => d.open))) await page.locator('#advanced > summary').click();
    await page.getByRole('button', { name: 'Reset to defaults' }).click();
    const t = page.locator('.toast', { hasText: 'Advanced settings reset to defaults' });
    await t.waitFor();
    await page.waitForTimeout(300); // the entry animation
    const box = await t.boundingBox();
    if (label === 'desktop') {
      const main = await page.locator('#main').boundingBox();
      assert.ok(box.x + box.width <= main.x, `toast ${JSON.stringify(box)} stays left of the content ${JSON.stringify(main)}`);
    } else {
      const bar = await page.locator('.topbar').boundingBox();
      assert.ok(box.y >= 0 && box.y + box.height <= bar.y + bar.height + 2, `toast ${JSON.stringify(box)} sits over the top bar ${JSON.stringify(bar)}`);
    }
    await shot(page, `${label}-66-toast`);
    await t.click(); // tap to dismiss
    await t.waitFor({ state: 'detached' });
    noErrors(p);
  });

  test(`${label}: a revoked key's secret disappears; the quick start begins with the upload`, async () => {
    const { p } = await user(label);
    const { page } = p;
    await page.goto(`${server.url}/#/account`);
    await page.getByRole('heading', { name: 'Account', level: 1 }).waitFor();
    const qs = await page.locator('.code-card pre').textContent();
    assert.match(qs, /Step 1 — upload[\s\S]*\/api\/upload[\s\S]*-F file=@shirt\.jpg[\s\S]*Step 2 — create[\s\S]*\/api\/generation\/create[\s\S]*Step 3 — start/);
    await page.fill('#key-name', 'Catalogue sync');
    await page.getByRole('button', { name: 'Create key' }).click();
    await page.locator('[data-new-key]').waitFor();
    assert.match(await page.locator('[data-new-key]').textContent(), /^sk_/);
    await page.getByRole('button', { name: 'Revoke Catalogue sync' }).click();
    await page.locator('dialog.modal [data-confirm]').click();
    await page.locator('.toast', { hasText: 'Revoked “Catalogue sync”' }).first().waitFor();
    assert.equal(await page.locator('[data-new-key]').count(), 0, 'the revoked secret is gone from the page');
    assert.equal(await page.locator('.key-reveal').count(), 0);
    await shot(page, `${label}-67-key-revoked`);
    noErrors(p);
  });

  test(`${label}: "Get more tokens" says how tokens are added, the command fits, and Copy copies it`, async () => {
    const { p, email } = await user(label);
    const { page } = p;
    await p.context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: server.url });
    await page.goto(`${server.url}/#/dashboard`);
    await page.getByRole('button', { name: 'Get more tokens' }).click();
    const dlg = page.locator('dialog.modal');
    await dlg.waitFor({ state: 'visible' });
    assert.equal((await dlg.locator('.modal-title').textContent()).trim(), 'Get more tokens');
    assert.match(await dlg.textContent(), /can’t pay for tokens in the studio/);
    const cmd = dlg.locator('[data-grant-cmd]');
    assert.equal((await cmd.textContent()).trim(), `stylestudio user grant --email ${email} --amount 50`);
    const fits = await cmd.evaluate((el) => el.scrollWidth <= el.clientWidth + 1 && el.getBoundingClientRect().right <= el.closest('dialog').getBoundingClientRect().right);
    assert.ok(fits, 'the command wraps inside the dialog (no sideways scrolling)');
    await dlg.locator('[data-copy-cmd]').click();
    await page.locator('.toast', { hasText: 'Command copied' }).first().waitFor();
    assert.equal(await page.evaluate(() => navigator.clipboard.readText()), `stylestudio user grant --email ${email} --amount 50`);
    await shot(page, `${label}-68-get-tokens`);
    await dlg.getByRole('button', { name: 'Close' }).click();
    await dlg.waitFor({ state: 'detached' });
    noErrors(p);
  });
}

for (const [label, viewport] of VIEWPORTS) {
  test(`${label}: the first visit shows what Style Studio does — real examples, the three steps — then sign-up`, async () => {
    const p = await openPage(browser, viewport, `${label}-welcome`);
    try {
      const { page } = p;
      await page.goto(`${server.url}/`);
      await page.getByRole('heading', { name: 'Studio-quality product shots, without the studio.', level: 1 }).waitFor();
      assert.match(page.url(), /#\/welcome$/);
      await page.waitForFunction(() => {
        const imgs = [...document.querySelectorAll('.welcome img[src^="/examples/"]')];
        return imgs.length === 5 && imgs.every((i) => i.complete && i.naturalWidth > 0);
      });
      assert.deepEqual(await page.locator('[data-example]').evaluateAll((els) => els.map((e) => e.dataset.example)), ['Realistic', 'Artistic', 'Minimal', 'On your model']);
      assert.deepEqual((await page.locator('.steps-list h3').allTextContents()), ['Upload your product photo', 'Pick a look', 'Generate and download']);
      const [sw, iw] = await page.evaluate(() => [document.documentElement.scrollWidth, innerWidth]);
      assert.ok(sw <= iw, `the page fits: ${sw}px on ${iw}px`);
      await shot(page, `${label}-69-welcome`, { fullPage: true });
      await page.locator('[data-cta="signup"]').first().click();
      await page.getByRole('heading', { name: 'Create your studio' }).waitFor();
      await page.fill('#name', 'First Visit');
      await page.fill('#email', `first-${label}-${Date.now()}@shop.example`);
      await page.fill('#password', PASSWORD);
      await page.getByRole('button', { name: 'Create account' }).click();
      await page.getByRole('heading', { name: 'Studio', level: 1 }).waitFor();
      // After signing out, this browser is a returning one: sign-in comes first,
      // with the real examples beside it on a wide screen.
      if (label === 'phone') { await page.locator('.menu-btn').click(); }
      await page.locator('[data-signout]').click();
      await page.getByRole('heading', { name: 'Welcome back' }).waitFor();
      await page.goto(`${server.url}/`);
      await page.getByRole('heading', { name: 'Welcome back' }).waitFor();
      assert.equal(await page.getByRole('link', { name: 'What Style Studio does, with examples' }).count(), 1);
      if (label === 'desktop') {
        await page.waitForFunction(() => [...document.querySelectorAll('.auth-collage img')].every((i) => i.complete && i.naturalWidth > 0));
        await shot(page, 'desktop-70-signin-examples');
      }
      noErrors(p);
    } finally {
      await p.context.close();
    }
  });
}

/** Entries of a stored ZIP, each CRC-checked: [{name, data}]. */
function readZip(buf) {
  const end = buf.length - 22;
  assert.equal(buf.readUInt32LE(end), 0x06054b50, 'end of central directory record');
  const count = buf.readUInt16LE(end + 10);
  let at = buf.readUInt32LE(end + 16);
  const out = [];
  for (let i = 0; i < count; i++) {
    assert.equal(buf.readUInt32LE(at), 0x02014b50, 'central directory entry');
    const crc = buf.readUInt32LE(at + 16);
    const size = buf.readUInt32LE(at + 24);
    const nameLen = buf.readUInt16LE(at + 28);
    const extra = buf.readUInt16LE(at + 30);
    const comment = buf.readUInt16LE(at + 32);
    const local = buf.readUInt32LE(at + 42);
    const name = buf.subarray(at + 46, at + 46 + nameLen).toString('utf8');
    assert.equal(buf.readUInt32LE(local), 0x04034b50, `local header of ${name}`);
    const start = local + 30 + buf.readUInt16LE(local + 26) + buf.readUInt16LE(local + 28);
    const data = buf.subarray(start, start + size);
    assert.equal(zlib.crc32(data), crc, `CRC of ${name}`);
    out.push({ name, data });
    at += 46 + nameLen + extra + comment;
  }
  return out;
}

/** n completed generations of this page's user, made through the API. */
async function completedGenerations(page, n) {
  const bytes = fs.readFileSync(fixture('product.jpg')).toString('base64');
  return page.evaluate(async ({ b64, n: count }) => {
    const bin = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const up = await (await fetch('/api/upload', { method: 'POST', headers: { 'Content-Type': 'image/jpeg' }, body: bin })).json();
    const ids = [];
    for (let i = 0; i < count; i++) {
      const body = { productImages: [up.data.url], model: 'local-studio', style: ['realistic', 'minimal', 'artistic'][i % 3], quality: 'auto', aspectRatio: '1:1' };
      const r = await (await fetch('/api/generate', { method: 'POST', headers: { 'Content-Type': 'application/json', Prefer: 'wait=30' }, body: JSON.stringify(body) })).json();
      ids.push(r.data._id || r.data.generationId);
    }
    return ids;
  }, { b64: bytes, n });
}

for (const [label] of VIEWPORTS) {
  test(`${label}: one generation's results as one ZIP; History: select several, download them as a ZIP, delete them`, async () => {
    const { p } = await user(label);
    const { page } = p;
    await page.goto(`${server.url}/#/history`);
    await page.locator('.hgrid[aria-busy="false"]').waitFor();
    const ids = await completedGenerations(page, 2);
    // The detail page: "Download all (ZIP)" of its results.
    await page.goto(`${server.url}/#/history/${ids[0]}`);
    const zipBtn = page.locator('[data-zip]');
    await zipBtn.waitFor();
    const nResults = await page.locator('section[aria-labelledby="res-t"] .gallery-open').count();
    const [dl] = await Promise.all([page.waitForEvent('download'), zipBtn.click()]);
    assert.equal(dl.suggestedFilename(), `${ids[0]}.zip`);
    const entries = readZip(fs.readFileSync(await dl.path()));
    assert.deepEqual(entries.map((e) => e.name), Array.from({ length: nResults }, (_, i) => `${ids[0]}-${i + 1}.jpg`));
    for (const e of entries) assert.equal(e.data.readUInt16BE(0), 0xffd8, `${e.name} is a JPEG`);
    await page.locator('.toast', { hasText: `Saved ${nResults} images` }).first().waitFor();
    await zipBtn.scrollIntoViewIfNeeded();
    await shot(page, `${label}-71-detail-zip`);

    // History: select both, ZIP them, delete them.
    await page.goto(`${server.url}/#/history`);
    await page.locator(`.hcard[data-gen-id="${ids[1]}"]`).waitFor();
    await page.locator('[data-select-mode]').click();
    for (const id of ids) await page.locator(`[data-select="${id}"]`).check();
    assert.match(await page.locator('[data-selected-count]').textContent(), /^2 generations selected$/);
    const [bulk] = await Promise.all([page.waitForEvent('download'), page.locator('[data-bulk="zip"]').click()]);
    const all = readZip(fs.readFileSync(await bulk.path()));
    for (const id of ids) assert.ok(all.some((e) => e.name.startsWith(`${id}-`)), `the ZIP holds ${id}'s images`);
    assert.equal(all.length, 2 * nResults);
    await shot(page, `${label}-72-history-selected`);
    const before = await page.locator('.hcard').count();
    await page.locator('[data-bulk="delete"]').click();
    const dlg = page.locator('dialog.modal');
    assert.match(await dlg.locator('.modal-title').textContent(), /Delete 2 generations\?/);
    await dlg.locator('[data-confirm]').click();
    await page.locator('.toast', { hasText: 'Deleted 2 generations' }).first().waitFor();
    for (const id of ids) assert.equal(await page.locator(`.hcard[data-gen-id="${id}"]`).count(), 0);
    assert.equal(await page.locator('.hcard').count(), before - 2);
    for (const id of ids) {
      const status = await p.expectErrors(/status of 404/, () => page.evaluate(async (gid) => (await fetch(`/api/generations/${gid}`)).status, id));
      assert.equal(status, 404, `${id} is gone on the server`);
    }
    await page.locator('[data-bulk="done"]').click();
    assert.equal(await page.locator('.select-bar').isVisible(), false);
    noErrors(p);
  });
}

test('desktop: after a reload, "Use these settings" of a past generation wins over the form a reload kept', async () => {
  const { p } = await user('desktop');
  const { page } = p;
  const [id] = await completedGenerations(page, 1); // realistic · 1:1
  await openStudio(page);
  await page.locator('.opt-card[data-value="artistic"]').click();
  await page.locator('.opt-card[data-value="16:9"]').click();
  await page.goto(`${server.url}/#/history/${id}`);
  await page.reload();
  await page.getByRole('button', { name: 'Use these settings' }).click();
  await page.getByRole('heading', { name: 'Studio', level: 1 }).waitFor();
  assert.equal(await page.locator('input[name="style"]:checked').getAttribute('value'), 'realistic');
  assert.equal(await page.locator('input[name="aspect"]:checked').getAttribute('value'), '1:1');
  noErrors(p);
});
