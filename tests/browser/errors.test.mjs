// Failed and cancelled generations, by errorCode: the words the user reads and
// the one action offered (detail page, history list, live panel), and what
// each action does. The records are real (a server whose provider always
// fails, `--test-faults permanent`, and real cancels); where this server does
// not set the errorCode under test, stubs.mjs lays it over the real record.
// Run: node --test tests/browser/errors.test.mjs
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { startServer, launchBrowser, openPage, shot, reportShots, fixture, DESKTOP, PHONE } from './harness.mjs';
import { forceErrorCode, forceStreamErrorCode } from './stubs.mjs';

// What the user must see for each code (the brief's table).
const EXPECT = {
  PROVIDER_TRANSIENT: { title: /busy/i, action: 'Try again', data: 'retry' },
  PROVIDER_ERROR: { title: /unusable/i, action: 'Try again', data: 'retry' },
  PROVIDER_REJECTED: { title: /refused/i, action: 'Change the prompt', data: 'change-prompt' },
  INPUT_UNAVAILABLE: { title: /could not be read/i, action: 'Replace the image', data: 'replace-image' },
  EXPIRED: { title: /expired/i, action: 'Start again', data: 'start-again' },
  CANCELLED: { title: /cancelled/i, action: 'Start again', data: 'start-again' },
  NONE: { title: /went wrong/i, action: 'Contact support', data: 'support' },
  SOMETHING_NEW: { title: /went wrong/i, action: 'Contact support', data: 'support' },
};

let server;
let browser;
let p; // the signed-in desktop page
let key; // an API key of the same user, for setting up records
let failed; // a real failed record
let cancelled; // a real cancelled record
let productUrl;

async function call(method, path, body, headers = {}) {
  const res = await fetch(`${server.url}${path}`, {
    method, headers: { Authorization: `Bearer ${key}`, ...(body ? { 'Content-Type': 'application/json' } : {}), ...headers },
    body: body ? JSON.stringify(body) : undefined,
  });
  const j = await res.json();
  if (!j.success) throw new Error(`${method} ${path}: ${res.status} ${j.code} ${j.error}`);
  return j.data;
}

const CREATE = () => ({
  productImages: [productUrl], model: 'local-studio', style: 'minimal', quality: 'auto', aspectRatio: '4:5',
  customPrompt: 'Soft morning light on linen',
});

before(async () => {
  server = await startServer({ faults: 'permanent', signupTokens: 40 });
  browser = await launchBrowser();
  p = await openPage(browser, DESKTOP, 'errors');
  const { page } = p;
  await page.goto(`${server.url}/#/signup`);
  await page.fill('#name', 'Atelier Sud');
  await page.fill('#email', `errors-${Date.now()}@shop.example`);
  await page.fill('#password', 'atelier-sud-1');
  await page.getByRole('button', { name: 'Create account' }).click();
  await page.getByRole('heading', { name: 'Studio', level: 1 }).waitFor();
  // The session cookie can land a moment after the studio shows.
  await p.expectErrors(/status of 401/, async () => {
    for (let i = 0; i < 50 && (await page.evaluate(async () => (await fetch('/api/me')).status)) !== 200; i++) await page.waitForTimeout(100);
  });
  const made = await page.evaluate(async () => (await fetch('/api/keys', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{"name":"test setup"}' })).json());
  assert.ok(made.success, `POST /api/keys: ${JSON.stringify(made)}`);
  key = made.data.key;
  const up = await fetch(`${server.url}/api/upload`, { method: 'POST', headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'image/jpeg' }, body: fs.readFileSync(fixture('product.jpg')) });
  productUrl = (await up.json()).data.url;
  const g = await call('POST', '/api/generation/create', CREATE());
  failed = await call('POST', '/api/generate', { generationId: g.generationId }, { 'Prefer': 'wait=30' });
  assert.equal(failed.status, 'failed', 'the provider fault fails it');
  failed = await call('GET', `/api/generations/${g.generationId}`);
  const c = await call('POST', '/api/generation/create', CREATE());
  cancelled = await call('POST', `/api/generations/${c.generationId}/cancel`);
  assert.equal(cancelled.status, 'cancelled');
});

after(async () => {
  if (browser) await browser.close();
  if (server) await server.stop();
  reportShots();
});

function noErrors(x) { assert.deepEqual(x.errors, [], `console/page errors:\n${x.errors.join('\n')}`); }

/** Open rec's detail page with errorCode `code` (undefined: none) on it. */
async function openDetail(t, rec, code) {
  const { page } = p;
  await page.unrouteAll({ behavior: 'wait' });
  const st = await forceErrorCode(page, rec._id, code === 'NONE' ? undefined : code);
  await page.goto('about:blank'); // a fresh load: the same URL again would not re-render
  await page.goto(`${server.url}/#/history/${rec._id}`);
  await page.getByRole('heading', { name: 'Settings' }).waitFor();
  if (st.patched) t.diagnostic(`${code}: laid over the real ${rec.status} record (errorCode ${rec.errorCode ?? 'absent'} from this server)`);
  return page.locator('.detail-main .failure-view');
}

test('detail: every errorCode reads in words first, with its error and one action', async (t) => {
  for (const code of Object.keys(EXPECT)) {
    const rec = code === 'EXPIRED' || code === 'CANCELLED' ? cancelled : failed;
    const view = await openDetail(t, rec, code);
    await view.waitFor();
    const want = EXPECT[code];
    const title = (await view.locator('.failure-title').textContent()).trim();
    assert.match(title, want.title, `${code}: title "${title}"`);
    assert.doesNotMatch(title, /^[A-Z_]+$/, `${code}: not a bare code`);
    const err = (await view.locator('.failure-error').textContent()).toLowerCase();
    assert.ok(err.includes(rec.error.toLowerCase().replace(/\.$/, '')), `${code}: the record's error "${rec.error}" is shown (got "${err}")`);
    const buttons = view.locator('.alert-actions button');
    assert.equal(await buttons.count(), 1, `${code}: one action`);
    assert.equal((await buttons.first().textContent()).trim(), want.action, `${code}: action`);
    assert.equal(await buttons.first().getAttribute('data-action'), want.data);
    if (code !== 'NONE') assert.equal((await view.locator('.error-code').textContent()).trim(), code, `${code}: the code, after the words`);
    else assert.equal(await view.locator('.error-code').count(), 0, 'no code, none shown');
    assert.match(await view.textContent(), /refunded/, `${code}: says the tokens came back`);
    if (code === 'PROVIDER_REJECTED' || code === 'CANCELLED') await shot(page(), `desktop-40-detail-${code.toLowerCase()}`);
  }
  noErrors(p);
});

function page() { return p.page; }

test('Try again (PROVIDER_TRANSIENT, PROVIDER_ERROR) retries with the same settings', async (t) => {
  for (const code of ['PROVIDER_TRANSIENT', 'PROVIDER_ERROR']) {
    const view = await openDetail(t, failed, code);
    const [req] = await Promise.all([
      page().waitForRequest((r) => r.method() === 'POST' && new URL(r.url()).pathname === `/api/generations/${failed._id}/retry`),
      view.getByRole('button', { name: 'Try again' }).click(),
    ]);
    assert.ok(req, `${code}: POST /api/generations/{id}/retry`);
    await page().waitForFunction((old) => /^#\/history\/gen_/.test(location.hash) && !location.hash.endsWith(old), failed._id);
    const newId = (await page().evaluate(() => location.hash)).split('/').pop();
    const rec = await call('GET', `/api/generations/${newId}`);
    assert.equal(rec.retryOf, failed._id, `${code}: the new generation is a retry of the failed one`);
    assert.equal(rec.customPrompt, failed.customPrompt);
    await page().locator('.toast', { hasText: 'Trying again' }).first().waitFor();
  }
  noErrors(p);
});

test('Change the prompt (PROVIDER_REJECTED): the studio, prefilled, prompt focused', async (t) => {
  const view = await openDetail(t, failed, 'PROVIDER_REJECTED');
  await view.getByRole('button', { name: 'Change the prompt' }).click();
  await page().getByRole('heading', { name: 'Studio', level: 1 }).waitFor();
  await page().waitForFunction(() => document.activeElement && document.activeElement.id === 'custom-prompt');
  assert.equal(await page().locator('#custom-prompt').inputValue(), failed.customPrompt);
  assert.equal(await page().locator('input[name="style"]:checked').getAttribute('value'), 'minimal');
  assert.equal(await page().locator('input[name="aspect"]:checked').getAttribute('value'), '4:5');
  assert.equal(await page().locator('#up-product .thumb.is-done').count(), 1, 'the same product image');
  await shot(page(), 'desktop-41-change-prompt');
  // The changed prompt is what gets sent.
  await page().fill('#custom-prompt', 'Evening light, plain backdrop');
  const [req] = await Promise.all([
    page().waitForRequest((r) => r.method() === 'POST' && new URL(r.url()).pathname === '/api/generation/create'),
    page().locator('#generate-btn').click(),
  ]);
  const body = req.postDataJSON();
  assert.equal(body.customPrompt, 'Evening light, plain backdrop');
  assert.deepEqual(body.productImages, failed.productImages);
  assert.equal(body.style, 'minimal');
  await page().waitForFunction(() => document.querySelector('[data-gen-panel]')?.dataset.status === 'failed', null, { timeout: 30000 });
  noErrors(p);
});

test('Replace the image (INPUT_UNAVAILABLE): the studio, prefilled, image picker focused', async (t) => {
  const view = await openDetail(t, failed, 'INPUT_UNAVAILABLE');
  await view.getByRole('button', { name: 'Replace the image' }).click();
  await page().getByRole('heading', { name: 'Studio', level: 1 }).waitFor();
  await page().waitForFunction(() => document.activeElement && document.activeElement.id === 'file-product');
  assert.match(await page().locator('#err-product').textContent(), /Remove the image that could not be read/);
  assert.equal(await page().locator('#custom-prompt').inputValue(), failed.customPrompt, 'the other settings are kept');
  await shot(page(), 'desktop-42-replace-image');
  noErrors(p);
});

test('Contact support (no or unknown code): the ids to quote, with Copy', async (t) => {
  await p.context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: server.url });
  for (const code of ['NONE', 'SOMETHING_NEW']) {
    const view = await openDetail(t, failed, code);
    await view.getByRole('button', { name: 'Contact support' }).click();
    const box = view.locator('[data-support]');
    await box.waitFor();
    assert.match(await box.textContent(), new RegExp(`Generation ID: ${failed._id}`));
    await box.getByRole('button', { name: 'Copy' }).click();
    await page().locator('.toast', { hasText: 'Copied' }).first().waitFor();
    assert.match(await page().evaluate(() => navigator.clipboard.readText()), new RegExp(failed._id));
  }
  await shot(page(), 'desktop-43-contact-support');
  noErrors(p);
});

test('Start again (CANCELLED, EXPIRED) makes a new generation with the same settings', async (t) => {
  for (const code of ['CANCELLED', 'EXPIRED']) {
    const view = await openDetail(t, cancelled, code);
    const [req] = await Promise.all([
      page().waitForRequest((r) => r.method() === 'POST' && new URL(r.url()).pathname === `/api/generations/${cancelled._id}/retry`),
      view.getByRole('button', { name: 'Start again' }).click(),
    ]);
    assert.ok(req);
    await page().waitForFunction((old) => /^#\/history\/gen_/.test(location.hash) && !location.hash.endsWith(old), cancelled._id);
    await page().locator('.toast', { hasText: 'Started again' }).first().waitFor();
  }
  noErrors(p);
});

test('history: failed and cancelled cards say why and offer their action', async (t) => {
  const { page: pg } = p;
  await pg.unrouteAll({ behavior: 'wait' });
  const st = await forceErrorCode(pg, failed._id, 'PROVIDER_TRANSIENT');
  await pg.goto(`${server.url}/#/history`);
  await pg.locator(`.hcard[data-gen-id="${failed._id}"] .failure-view`).waitFor();
  if (st.patched) t.diagnostic('PROVIDER_TRANSIENT laid over the real failed record');
  const f = pg.locator(`.hcard[data-gen-id="${failed._id}"]`);
  assert.match(await f.locator('.failure-title').textContent(), /busy/i);
  assert.equal((await f.locator('.failure-view button').textContent()).trim(), 'Try again');
  const c = pg.locator(`.hcard[data-gen-id="${cancelled._id}"]`);
  assert.match(await c.locator('.failure-title').textContent(), /cancelled/i);
  assert.equal((await c.locator('.failure-view button').textContent()).trim(), 'Start again');
  await shot(pg, 'desktop-44-history-failures');
  // The action works from the list.
  const [req] = await Promise.all([
    pg.waitForRequest((r) => r.method() === 'POST' && new URL(r.url()).pathname === `/api/generations/${failed._id}/retry`),
    f.getByRole('button', { name: 'Try again' }).click(),
  ]);
  assert.ok(req);
  await pg.waitForFunction(() => /^#\/history\/gen_/.test(location.hash));
  noErrors(p);
});

test('phone: history and the detail page show the failure and its action', async (t) => {
  const ph = await openPage(browser, PHONE, 'errors-phone');
  try {
    const { page: pg } = ph;
    // Same account: copy the session cookie.
    await ph.context.addCookies(await p.context.cookies());
    await pg.addInitScript(() => localStorage.setItem('ss.signedIn', '1'));
    const st = await forceErrorCode(pg, failed._id, 'PROVIDER_REJECTED');
    await pg.goto(`${server.url}/#/history/${failed._id}`);
    const view = pg.locator('.detail-main .failure-view');
    await view.waitFor();
    if (st.patched) t.diagnostic('PROVIDER_REJECTED laid over the real failed record');
    assert.ok(await view.getByRole('button', { name: 'Change the prompt' }).isVisible());
    const [sw, iw] = await pg.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
    assert.ok(sw <= iw, `detail fits: ${sw}px on ${iw}px`);
    await shot(pg, 'phone-40-detail-rejected');
    await pg.goto(`${server.url}/#/history`);
    await pg.locator('.hcard .failure-view').first().waitFor();
    const [sw2, iw2] = await pg.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
    assert.ok(sw2 <= iw2, `history fits: ${sw2}px on ${iw2}px`);
    await shot(pg, 'phone-41-history-failures', { fullPage: true });
    noErrors(ph);
  } finally {
    await ph.context.close();
  }
});

test('live panel: a refused generation offers "Change the prompt", which reopens the form with the prompt focused', async (t) => {
  const { page: pg } = p;
  await pg.unrouteAll({ behavior: 'wait' });
  const st = await forceStreamErrorCode(pg, 'PROVIDER_REJECTED');
  await pg.goto(`${server.url}/#/studio`);
  await pg.getByRole('heading', { name: 'Studio', level: 1 }).waitFor();
  if (!(await pg.locator('#up-product .thumb.is-done').count())) {
    await pg.setInputFiles('#file-product', fixture('product.jpg'));
    await pg.locator('#up-product .thumb.is-done').waitFor();
  }
  await pg.fill('#custom-prompt', 'A prompt the provider refuses');
  await pg.locator('#generate-btn').click();
  await pg.waitForFunction(() => document.querySelector('[data-gen-panel]')?.dataset.status === 'failed', null, { timeout: 30000 });
  if (st.patched) t.diagnostic('PROVIDER_REJECTED laid over the real stream (this server sets no errorCode yet)');
  const panel = pg.locator('[data-gen-panel]');
  assert.match(await panel.locator('.failure-title').textContent(), /refused/i);
  assert.match(await panel.locator('[data-status-line]').textContent(), /refunded/);
  await panel.scrollIntoViewIfNeeded();
  await shot(pg, 'desktop-45-panel-rejected');
  await panel.getByRole('button', { name: 'Change the prompt' }).click();
  await pg.waitForFunction(() => document.activeElement && document.activeElement.id === 'custom-prompt');
  assert.equal(await pg.locator('#custom-prompt').inputValue(), 'A prompt the provider refuses');
  assert.equal(await pg.locator('[data-gen-panel]').isVisible(), false, 'a fresh form, not the old panel');
  noErrors(p);
});
