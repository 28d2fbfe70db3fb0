// Failed and cancelled generations, by errorCode: the words the user reads and
// the one action offered (detail page, history list, live panel), and what
// each action does. Every code comes from the real server: `--test-faults
// permanent` (PROVIDER_REJECTED), an upload spoiled on disk before its
// generation starts (INPUT_UNAVAILABLE), a cancel (CANCELLED), `--pending-ttl`
// (EXPIRED), and two more servers with `transient=N` (PROVIDER_TRANSIENT) and
// `malformed=N` (PROVIDER_ERROR). Only "no code" and "a code this studio does
// not know" are laid over a real record (stubs.mjs): the server never sends those.
// Run: node --test tests/browser/errors.test.mjs
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { startServer, launchBrowser, openPage, shot, reportShots, fixture, DESKTOP, PHONE } from './harness.mjs';
import { forceErrorCode } from './stubs.mjs';

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

let main; // permanent faults, short pending TTL
let busy; // transient faults
let garbled; // malformed answers
let browser;
let a1, a2, a3; // accounts on main, busy, garbled
let p; // a1's desktop page
const recs = {}; // errorCode → {acct, rec}

const CREATE = (url) => ({
  productImages: [url], model: 'local-studio', style: 'minimal', quality: 'auto', aspectRatio: '4:5',
  customPrompt: 'Soft morning light on linen',
});

/** Sign up on srv from Node; calls carry the session cookie (and Origin, for CSRF). */
async function account(srv) {
  const email = `errors-${Date.now()}-${Math.random().toString(36).slice(2, 7)}@shop.example`;
  const res = await fetch(`${srv.url}/api/auth/signup`, {
    method: 'POST', headers: { 'Content-Type': 'application/json', Origin: srv.url },
    body: JSON.stringify({ name: 'Atelier Sud', email, password: 'atelier-sud-1' }),
  });
  assert.equal(res.status, 201);
  const cookie = res.headers.get('set-cookie').split(';')[0];
  const call = async (method, p2, body, headers = {}) => {
    const r = await fetch(`${srv.url}${p2}`, {
      method, headers: { Cookie: cookie, Origin: srv.url, ...(body ? { 'Content-Type': 'application/json' } : {}), ...headers },
      body: body ? JSON.stringify(body) : undefined,
    });
    const j = await r.json();
    if (!j.success) throw new Error(`${method} ${p2}: ${r.status} ${j.code} ${j.error}`);
    return j.data;
  };
  const upload = async (name, type) => {
    const r = await fetch(`${srv.url}/api/upload`, { method: 'POST', headers: { Cookie: cookie, Origin: srv.url, 'Content-Type': type }, body: fs.readFileSync(fixture(name)) });
    return (await r.json()).data.url;
  };
  return { srv, cookie, call, upload };
}

/** A page signed in as acct. */
async function pageFor(acct, viewport, name) {
  const x = await openPage(browser, viewport, name);
  const eq = acct.cookie.indexOf('=');
  await x.context.addCookies([{ name: acct.cookie.slice(0, eq), value: acct.cookie.slice(eq + 1), url: acct.srv.url, httpOnly: true, sameSite: 'Lax' }]);
  await x.page.addInitScript(() => { if (location.protocol === 'http:') localStorage.setItem('ss.signedIn', '1'); });
  return x;
}

async function failedOn(acct, url) {
  const g = await acct.call('POST', '/api/generation/create', CREATE(url));
  await acct.call('POST', '/api/generate', { generationId: g.generationId }, { Prefer: 'wait=30' });
  return acct.call('GET', `/api/generations/${g.generationId}`);
}

before(async () => {
  [main, busy, garbled] = await Promise.all([
    startServer({ faults: 'permanent', signupTokens: 40, args: ['--pending-ttl', '2'] }),
    startServer({ faults: 'transient=99', args: ['--max-retries', '1'] }),
    startServer({ faults: 'malformed=99', args: ['--max-retries', '1'] }),
  ]);
  browser = await launchBrowser();
  [a1, a2, a3] = await Promise.all([account(main), account(busy), account(garbled)]);
  const url = await a1.upload('product.jpg', 'image/jpeg');
  recs.PROVIDER_REJECTED = { acct: a1, rec: await failedOn(a1, url) };
  // An input that cannot be read: the upload is spoiled on disk after create.
  const url2 = await a1.upload('product2.png', 'image/png');
  const g2 = await a1.call('POST', '/api/generation/create', CREATE(url2));
  fs.writeFileSync(path.join(main.dataDir, 'media/u', path.basename(new URL(url2).pathname)), 'not an image any more');
  await a1.call('POST', '/api/generate', { generationId: g2.generationId }, { Prefer: 'wait=30' });
  recs.INPUT_UNAVAILABLE = { acct: a1, rec: await a1.call('GET', `/api/generations/${g2.generationId}`) };
  const c = await a1.call('POST', '/api/generation/create', CREATE(url));
  recs.CANCELLED = { acct: a1, rec: await a1.call('POST', `/api/generations/${c.generationId}/cancel`) };
  const e = await a1.call('POST', '/api/generation/create', CREATE(url));
  let er;
  for (let i = 0; i < 100; i++) {
    er = await a1.call('GET', `/api/generations/${e.generationId}`);
    if (er.status !== 'pending') break;
    await new Promise((r) => setTimeout(r, 100));
  }
  recs.EXPIRED = { acct: a1, rec: er };
  recs.PROVIDER_TRANSIENT = { acct: a2, rec: await failedOn(a2, await a2.upload('product.jpg', 'image/jpeg')) };
  recs.PROVIDER_ERROR = { acct: a3, rec: await failedOn(a3, await a3.upload('product.jpg', 'image/jpeg')) };
  for (const [code, { rec }] of Object.entries(recs)) assert.equal(rec.errorCode, code, `the real server sets ${code}: ${JSON.stringify({ status: rec.status, errorCode: rec.errorCode, error: rec.error })}`);
  p = await pageFor(a1, DESKTOP, 'errors');
});

after(async () => {
  if (browser) await browser.close();
  await Promise.all([main, busy, garbled].filter(Boolean).map((s2) => s2.stop()));
  reportShots();
});

function noErrors(x) { assert.deepEqual(x.errors, [], `console/page errors:\n${x.errors.join('\n')}`); }

const pages = new Map(); // account → its desktop page
async function pageOf(acct) {
  if (acct === a1) return p;
  if (!pages.has(acct)) pages.set(acct, await pageFor(acct, DESKTOP, `errors-${acct === a2 ? 'busy' : 'garbled'}`));
  return pages.get(acct);
}

/** Open a record's detail page; `laid` (stubs.mjs) replaces its errorCode (null: none). */
async function openDetail(x, rec, laid) {
  const { page } = x;
  await page.unrouteAll({ behavior: 'wait' });
  if (laid !== undefined) await forceErrorCode(page, rec._id, laid === null ? undefined : laid);
  await page.goto('about:blank'); // a fresh load: the same URL again would not re-render
  await page.goto(`${urlOf(x)}/#/history/${rec._id}`);
  await page.getByRole('heading', { name: 'Settings' }).waitFor();
  const view = page.locator('.detail-main .failure-view');
  await view.waitFor();
  return view;
}
function urlOf(x) { for (const [acct, y] of [[a1, p], ...pages]) if (y === x) return acct.srv.url; throw new Error('unknown page'); }

const CASES = [
  'PROVIDER_TRANSIENT', 'PROVIDER_ERROR', 'PROVIDER_REJECTED', 'INPUT_UNAVAILABLE', 'EXPIRED', 'CANCELLED', 'NONE', 'SOMETHING_NEW',
];

test('detail: every errorCode reads in words first, with its error and one action', async (t) => {
  for (const code of CASES) {
    const real = recs[code];
    const { acct, rec } = real || recs.PROVIDER_REJECTED;
    const x = await pageOf(acct);
    const view = await openDetail(x, rec, real ? undefined : code === 'NONE' ? null : code);
    if (!real) t.diagnostic(`${code}: laid over a real failed record (the server never sends it)`);
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
    await shot(x.page, `desktop-40-detail-${code.toLowerCase()}`);
    noErrors(x);
  }
});

test('Try again (PROVIDER_TRANSIENT, PROVIDER_ERROR) retries with the same settings', async () => {
  for (const code of ['PROVIDER_TRANSIENT', 'PROVIDER_ERROR']) {
    const { acct, rec } = recs[code];
    const x = await pageOf(acct);
    const view = await openDetail(x, rec);
    const [req] = await Promise.all([
      x.page.waitForRequest((r) => r.method() === 'POST' && new URL(r.url()).pathname === `/api/generations/${rec._id}/retry`),
      view.getByRole('button', { name: 'Try again' }).click(),
    ]);
    assert.ok(req, `${code}: POST /api/generations/{id}/retry`);
    await x.page.waitForFunction((old) => /^#\/history\/gen_/.test(location.hash) && !location.hash.endsWith(old), rec._id);
    await x.page.locator('.toast', { hasText: 'Trying again' }).first().waitFor();
    const newId = (await x.page.evaluate(() => location.hash)).split('/').pop();
    const nrec = await acct.call('GET', `/api/generations/${newId}`);
    assert.equal(nrec.retryOf, rec._id, `${code}: the new generation is a retry of the failed one`);
    assert.equal(nrec.customPrompt, rec.customPrompt);
    noErrors(x);
  }
});

test('Change the prompt (PROVIDER_REJECTED): the studio, prefilled, prompt focused', async () => {
  const { rec } = recs.PROVIDER_REJECTED;
  const { page } = p;
  const view = await openDetail(p, rec);
  await view.getByRole('button', { name: 'Change the prompt' }).click();
  await page.getByRole('heading', { name: 'Studio', level: 1 }).waitFor();
  await page.waitForFunction(() => document.activeElement && document.activeElement.id === 'custom-prompt');
  assert.equal(await page.locator('#custom-prompt').inputValue(), rec.customPrompt);
  assert.equal(await page.locator('input[name="style"]:checked').getAttribute('value'), 'minimal');
  assert.equal(await page.locator('input[name="aspect"]:checked').getAttribute('value'), '4:5');
  assert.equal(await page.locator('#up-product .thumb.is-done').count(), 1, 'the same product image');
  await shot(page, 'desktop-41-change-prompt');
  // The changed prompt is what gets sent.
  await page.fill('#custom-prompt', 'Evening light, plain backdrop');
  const [req] = await Promise.all([
    page.waitForRequest((r) => r.method() === 'POST' && new URL(r.url()).pathname === '/api/generation/create'),
    page.locator('#generate-btn').click(),
  ]);
  const body = req.postDataJSON();
  assert.equal(body.customPrompt, 'Evening light, plain backdrop');
  assert.deepEqual(body.productImages, rec.productImages);
  assert.equal(body.style, 'minimal');
  await page.waitForFunction(() => document.querySelector('[data-gen-panel]')?.dataset.status === 'failed', null, { timeout: 30000 });
  noErrors(p);
});

test('Replace the image (INPUT_UNAVAILABLE): the studio, prefilled, image picker focused; the new image is sent', async () => {
  const { rec } = recs.INPUT_UNAVAILABLE;
  const { page } = p;
  const view = await openDetail(p, rec);
  assert.match(await view.locator('.failure-error').textContent(), /product image 1/i, 'says which image');
  await view.getByRole('button', { name: 'Replace the image' }).click();
  await page.getByRole('heading', { name: 'Studio', level: 1 }).waitFor();
  await page.waitForFunction(() => document.activeElement && document.activeElement.id === 'file-product');
  assert.match(await page.locator('#err-product').textContent(), /Remove the image that could not be read/);
  assert.equal(await page.locator('#custom-prompt').inputValue(), rec.customPrompt, 'the other settings are kept');
  await shot(page, 'desktop-42-replace-image');
  await page.locator('#up-product .thumb-remove').first().click();
  await page.setInputFiles('#file-product', fixture('product.jpg'));
  await page.locator('#up-product .thumb.is-done').waitFor();
  const [req] = await Promise.all([
    page.waitForRequest((r) => r.method() === 'POST' && new URL(r.url()).pathname === '/api/generation/create'),
    page.locator('#generate-btn').click(),
  ]);
  const body = req.postDataJSON();
  assert.equal(body.productImages.length, 1);
  assert.notEqual(body.productImages[0], rec.productImages[0], 'the replacement, not the unreadable one');
  await page.waitForFunction(() => ['failed', 'completed'].includes(document.querySelector('[data-gen-panel]')?.dataset.status), null, { timeout: 30000 });
  noErrors(p);
});

test('Contact support (no or unknown code): the ids to quote, with Copy', async (t) => {
  await p.context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: main.url });
  const { rec } = recs.PROVIDER_REJECTED;
  for (const code of [null, 'SOMETHING_NEW']) {
    const view = await openDetail(p, rec, code);
    t.diagnostic(`${code || 'no code'}: laid over a real failed record`);
    await view.getByRole('button', { name: 'Contact support' }).click();
    const box = view.locator('[data-support]');
    await box.waitFor();
    assert.match(await box.textContent(), new RegExp(`Generation ID: ${rec._id}`));
    await box.getByRole('button', { name: 'Copy' }).click();
    await p.page.locator('.toast', { hasText: 'Copied' }).first().waitFor();
    assert.match(await p.page.evaluate(() => navigator.clipboard.readText()), new RegExp(rec._id));
  }
  await shot(p.page, 'desktop-43-contact-support');
  await p.page.unrouteAll({ behavior: 'wait' });
  noErrors(p);
});

test('Start again (CANCELLED, EXPIRED) makes a new generation with the same settings', async () => {
  for (const code of ['CANCELLED', 'EXPIRED']) {
    const { rec } = recs[code];
    const view = await openDetail(p, rec);
    const [req] = await Promise.all([
      p.page.waitForRequest((r) => r.method() === 'POST' && new URL(r.url()).pathname === `/api/generations/${rec._id}/retry`),
      view.getByRole('button', { name: 'Start again' }).click(),
    ]);
    assert.ok(req, code);
    await p.page.waitForFunction((old) => /^#\/history\/gen_/.test(location.hash) && !location.hash.endsWith(old), rec._id);
    await p.page.locator('.toast', { hasText: 'Started again' }).first().waitFor();
  }
  noErrors(p);
});

test('history: failed and cancelled cards say why and offer their action', async () => {
  const { page } = p;
  await page.goto(`${main.url}/#/history`);
  for (const [code, want] of [['PROVIDER_REJECTED', 'Change the prompt'], ['INPUT_UNAVAILABLE', 'Replace the image'], ['CANCELLED', 'Start again'], ['EXPIRED', 'Start again']]) {
    const card = page.locator(`.hcard[data-gen-id="${recs[code].rec._id}"]`);
    await card.locator('.failure-view').waitFor();
    assert.match(await card.locator('.failure-title').textContent(), EXPECT[code].title, code);
    assert.equal((await card.locator('.failure-view button').textContent()).trim(), want, code);
  }
  await shot(page, 'desktop-44-history-failures');
  // The action works from the list.
  const c = recs.CANCELLED.rec;
  const [req] = await Promise.all([
    page.waitForRequest((r) => r.method() === 'POST' && new URL(r.url()).pathname === `/api/generations/${c._id}/retry`),
    page.locator(`.hcard[data-gen-id="${c._id}"]`).getByRole('button', { name: 'Start again' }).click(),
  ]);
  assert.ok(req);
  await page.waitForFunction((old) => /^#\/history\/gen_/.test(location.hash) && !location.hash.endsWith(old), c._id);
  noErrors(p);
});

test('phone: history and the detail page show the failure and its action', async () => {
  const ph = await pageFor(a1, PHONE, 'errors-phone');
  try {
    const { page } = ph;
    await page.goto(`${main.url}/#/history/${recs.PROVIDER_REJECTED.rec._id}`);
    const view = page.locator('.detail-main .failure-view');
    await view.waitFor();
    assert.ok(await view.getByRole('button', { name: 'Change the prompt' }).isVisible());
    const [sw, iw] = await page.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
    assert.ok(sw <= iw, `detail fits: ${sw}px on ${iw}px`);
    await shot(page, 'phone-40-detail-rejected');
    await page.goto(`${main.url}/#/history`);
    await page.locator('.hcard .failure-view').first().waitFor();
    const [sw2, iw2] = await page.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
    assert.ok(sw2 <= iw2, `history fits: ${sw2}px on ${iw2}px`);
    await shot(page, 'phone-41-history-failures', { fullPage: true });
    noErrors(ph);
  } finally {
    await ph.context.close();
  }
});

test('live panel: a refused generation offers "Change the prompt", which reopens the form with the prompt focused', async () => {
  const { page } = p;
  await page.goto(`${main.url}/#/studio`);
  await page.getByRole('heading', { name: 'Studio', level: 1 }).waitFor();
  if (!(await page.locator('#up-product .thumb.is-done').count())) {
    await page.setInputFiles('#file-product', fixture('product.jpg'));
    await page.locator('#up-product .thumb.is-done').waitFor();
  }
  await page.fill('#custom-prompt', 'A prompt the provider refuses');
  await page.locator('#generate-btn').click();
  await page.waitForFunction(() => document.querySelector('[data-gen-panel]')?.dataset.status === 'failed', null, { timeout: 30000 });
  const panel = page.locator('[data-gen-panel]');
  assert.match(await panel.locator('.failure-title').textContent(), /refused/i);
  assert.equal((await panel.locator('.error-code').textContent()).trim(), 'PROVIDER_REJECTED');
  assert.match(await panel.locator('[data-status-line]').textContent(), /refunded/);
  await panel.scrollIntoViewIfNeeded();
  await shot(page, 'desktop-45-panel-rejected');
  await panel.getByRole('button', { name: 'Change the prompt' }).click();
  await page.waitForFunction(() => document.activeElement && document.activeElement.id === 'custom-prompt');
  assert.equal(await page.locator('#custom-prompt').inputValue(), 'A prompt the provider refuses');
  assert.equal(await page.locator('[data-gen-panel]').isVisible(), false, 'a fresh form, not the old panel');
  noErrors(p);
});
