// Account → Webhooks (SPEC §8): add one (secret shown once, with Copy), the
// API's field errors next to their fields, the list, a delivery that failed
// (type, status, attempts, last status code, next attempt, created) and
// Redeliver, delete with a confirm; and the page on a phone.
// All real: a receiver in this process answers 500 until told otherwise and
// checks each delivery's Standard Webhooks signature against the secret the
// page showed; a real generation makes the event.
// Run: node --test tests/browser/webhooks.test.mjs
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { startServer, launchBrowser, openPage, shot, reportShots, fixture, DESKTOP, PHONE } from './harness.mjs';
import { verifySignature } from '../integration/fakes/webhook_receiver.mjs';

let server;
let browser;
let receiver; // {url, hits, status, close}

before(async () => {
  server = await startServer({ signupTokens: 20 });
  browser = await launchBrowser();
  receiver = await startReceiver();
});

after(async () => {
  if (browser) await browser.close();
  if (server) await server.stop();
  if (receiver) await receiver.close();
  reportShots();
});

function startReceiver() {
  return new Promise((resolve) => {
    const state = { hits: [], status: 500 };
    const srv = http.createServer((req, res) => {
      let body = '';
      req.on('data', (d) => { body += d; });
      req.on('end', () => {
        state.hits.push({ headers: req.headers, body });
        res.writeHead(state.status, { 'Content-Type': 'text/plain' });
        res.end(state.status === 200 ? 'ok' : 'not today');
      });
    });
    srv.listen(0, '127.0.0.1', () => resolve(Object.assign(state, {
      url: `http://127.0.0.1:${srv.address().port}/hooks/style-studio`,
      close: () => new Promise((r) => { srv.closeAllConnections(); srv.close(r); }),
    })));
  });
}

function noErrors(x) { assert.deepEqual(x.errors, [], `console/page errors:\n${x.errors.join('\n')}`); }

async function signUp(page, who) {
  await page.goto(`${server.url}/#/signup`);
  await page.fill('#name', 'Hook Shop');
  await page.fill('#email', `${who}-${Date.now()}@shop.example`);
  await page.fill('#password', 'hook-shop-123');
  await page.getByRole('button', { name: 'Create account' }).click();
  await page.getByRole('heading', { name: 'Studio', level: 1 }).waitFor();
}

/** A new account's page, on Account → Webhooks. */
async function accountPage(viewport, name) {
  const x = await openPage(browser, viewport, name);
  await signUp(x.page, name);
  if (viewport === DESKTOP) await x.page.getByRole('link', { name: 'Account' }).first().click();
  else await x.page.goto(`${server.url}/#/account`);
  await x.page.getByRole('heading', { name: 'Account', level: 1 }).waitFor();
  await x.page.getByRole('heading', { name: 'Webhooks', exact: true }).waitFor();
  await x.page.locator('.wh-list .skel').first().waitFor({ state: 'detached' });
  return x;
}

const isPost = (p) => (r) => r.method() === 'POST' && new URL(r.url()).pathname === p;

/** Make one delivery happen and be refused by the receiver; returns the delivery. */
async function oneFailedDelivery(x, webhookId) {
  // A generation that completes → generation.completed → our receiver answers 500.
  const { page } = x;
  await page.goto(`${server.url}/#/studio`);
  await page.setInputFiles('#file-product', fixture('product.jpg'));
  await page.locator('#up-product .thumb.is-done').waitFor();
  await page.locator('#generate-btn').click();
  await page.waitForFunction(() => document.querySelector('[data-gen-panel]')?.dataset.status === 'completed', null, { timeout: 30000 });
  let d;
  for (let i = 0; i < 100 && !d; i++) {
    const list = await page.evaluate(async (id) => (await (await fetch(`/api/webhooks/${id}/deliveries`)).json()).data.items, webhookId);
    d = list.find((v) => v.type === 'generation.completed' && v.attempts >= 1);
    if (!d) await page.waitForTimeout(100);
  }
  assert.ok(d, 'the dispatcher attempted the delivery');
  await page.goto(`${server.url}/#/account`);
  await page.locator('.wh-item').first().waitFor();
  return d;
}

test('add a webhook: field errors, the secret once, the list, a failed delivery, Redeliver, delete', async () => {
  const x = await accountPage(DESKTOP, 'hooks');
  const { page } = x;
  try {
    await page.getByText('No webhooks yet').waitFor();
    await shot(page, 'desktop-50-webhooks-empty', { fullPage: true });

    // The studio's own checks, before anything is sent.
    let posts = 0;
    page.on('request', (r) => { if (isPost('/api/webhooks')(r)) posts++; });
    await page.getByRole('button', { name: 'Add webhook' }).click();
    assert.match(await page.locator('#wh-url-err').textContent(), /Enter the URL/);
    assert.equal(await page.locator('#wh-url').getAttribute('aria-invalid'), 'true');
    assert.equal(await page.evaluate(() => document.activeElement.id), 'wh-url');
    await page.fill('#wh-url', 'ftp://shop.example/hook');
    for (const box of await page.locator('input[name="events"]').all()) await box.uncheck();
    await page.getByRole('button', { name: 'Add webhook' }).click();
    assert.match(await page.locator('#wh-url-err').textContent(), /http:\/\/ or https:\/\//);
    assert.match(await page.locator('#wh-events-err').textContent(), /at least one event/);
    assert.equal(posts, 0, 'nothing sent while the form is incomplete');

    // The API's own validation: a metadata address, refused by the address rules.
    await page.fill('#wh-url', 'http://169.254.169.254/latest/hook');
    await page.getByLabel('Generation completed').check();
    await page.getByLabel('Generation failed').check();
    const [res] = await x.expectErrors(/status of 400/, () => Promise.all([
      page.waitForResponse((r) => isPost('/api/webhooks')(r.request())),
      page.getByRole('button', { name: 'Add webhook' }).click(),
    ]));
    const refused = await res.json();
    assert.equal(res.status(), 400);
    assert.equal(refused.code, 'VALIDATION_ERROR');
    const urlMsg = refused.validationErrors.find((v) => v.field === 'url');
    assert.ok(urlMsg, 'the API names the url field');
    await page.locator('#wh-url-err').filter({ hasText: urlMsg.message }).waitFor();
    assert.equal(await page.locator('#wh-url').getAttribute('aria-invalid'), 'true');
    assert.equal(await page.locator('#wh-events-err').textContent(), '', 'the events were fine');
    await page.locator('.wh-form').scrollIntoViewIfNeeded();
    await shot(page, 'desktop-51-webhook-field-error');

    // A good one.
    await page.fill('#wh-url', receiver.url);
    await page.fill('#wh-desc', 'Shopify sync');
    const [req] = await Promise.all([
      page.waitForRequest(isPost('/api/webhooks')),
      page.getByRole('button', { name: 'Add webhook' }).click(),
    ]);
    assert.deepEqual(req.postDataJSON(), { url: receiver.url, events: ['generation.completed', 'generation.failed'], description: 'Shopify sync' });
    const secretEl = page.locator('[data-new-secret]');
    await secretEl.waitFor();
    const secret = (await secretEl.textContent()).trim();
    assert.match(secret, /^whsec_[A-Za-z0-9+/]{32}$/, 'whsec_ + base64 of 24 bytes');
    assert.match(await page.locator('.key-reveal').textContent(), /you will not see it again/);
    await x.context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: server.url });
    await page.getByRole('button', { name: 'Copy secret' }).click();
    await page.locator('.toast', { hasText: 'Secret copied' }).waitFor();
    assert.equal(await page.evaluate(() => navigator.clipboard.readText()), secret);
    const item = page.locator('.wh-item').first();
    await item.waitFor();
    assert.equal(await page.locator('#wh-url-err').textContent(), '', 'the old error is gone');
    await shot(page, 'desktop-52-webhook-secret');
    await page.getByRole('button', { name: 'I’ve saved it' }).click();
    assert.equal(await page.locator('[data-new-secret]').count(), 0, 'shown once');
    assert.ok(!(await page.locator('main').textContent()).includes(secret), 'not in the list');

    // The list: url, events, description, created.
    const text = await item.textContent();
    assert.ok(text.includes(receiver.url));
    assert.match(text, /Shopify sync/);
    assert.deepEqual(await item.locator('.wh-chip').allTextContents(), ['Generation completed', 'Generation failed']);
    assert.match(text, /Added just now/);
    const webhookId = await item.getAttribute('data-webhook-id');

    // A delivery the receiver refused.
    const d = await oneFailedDelivery(x, webhookId);
    const first = receiver.hits.find((h) => h.headers['webhook-id'] === d.id);
    assert.ok(first, 'delivered to the receiver, webhook-id = delivery id');
    assert.ok(verifySignature(secret, first.headers, first.body), 'signed with the secret the page showed');
    assert.equal(JSON.parse(first.body).type, 'generation.completed');
    const it2 = page.locator(`.wh-item[data-webhook-id="${webhookId}"]`);
    await it2.getByRole('button', { name: 'Deliveries' }).click();
    assert.equal(await it2.getByRole('button', { name: 'Deliveries' }).getAttribute('aria-expanded'), 'true');
    const row = it2.locator(`tr[data-delivery-id="${d.id}"]`);
    await row.waitFor();
    assert.match(await row.locator('[data-label="Event"]').textContent(), /Generation completed/);
    assert.match(await row.locator('[data-label="Status"]').textContent(), d.status === 'failed' ? /Failed/ : /Pending/);
    assert.equal((await row.locator('[data-label="Attempts"]').textContent()).trim(), String(d.attempts));
    assert.equal((await row.locator('[data-label="Last response"]').textContent()).trim(), 'HTTP 500');
    if (d.status === 'pending') assert.match(await row.locator('[data-label="Next attempt"]').textContent(), /in \d+ (s|seconds?|minutes?)|just now/);
    assert.match(await row.locator('[data-label="Created"]').textContent(), /just now|ago/);
    await it2.scrollIntoViewIfNeeded();
    await shot(page, 'desktop-53-webhook-deliveries');

    // Redeliver: the receiver now says yes.
    receiver.status = 200;
    const [rd] = await Promise.all([
      page.waitForRequest(isPost(`/api/webhooks/${webhookId}/deliveries/${d.id}/redeliver`)),
      row.getByRole('button', { name: /Redeliver/ }).click(),
    ]);
    assert.ok(rd);
    await page.locator('.toast', { hasText: 'Sending it again' }).waitFor();
    // Refresh until it went through (the dispatcher sends it at once).
    for (let i = 0; i < 50; i++) {
      const st = await it2.locator(`tr[data-delivery-id="${d.id}"] [data-delivery-status]`).getAttribute('data-delivery-status');
      if (st === 'succeeded') break;
      await page.waitForTimeout(200);
      await it2.getByRole('button', { name: 'Refresh' }).click();
      await it2.locator(`tr[data-delivery-id="${d.id}"]`).waitFor();
    }
    const done = it2.locator(`tr[data-delivery-id="${d.id}"]`);
    assert.match(await done.locator('[data-label="Status"]').textContent(), /Delivered/);
    assert.equal((await done.locator('[data-label="Last response"]').textContent()).trim(), 'HTTP 200');
    assert.ok(receiver.hits.filter((h) => h.headers['webhook-id'] === d.id).length >= 2, 'sent again with the same webhook-id');
    await shot(page, 'desktop-54-webhook-redelivered');

    // Delete, with a confirm: Cancel keeps it, Delete removes it.
    await it2.getByRole('button', { name: `Delete webhook ${receiver.url}` }).click();
    await page.locator('dialog.modal').waitFor({ state: 'visible' });
    assert.match(await page.locator('dialog.modal').textContent(), new RegExp(receiver.url.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')));
    await page.locator('dialog.modal').getByRole('button', { name: 'Cancel' }).click();
    await page.locator('dialog.modal').waitFor({ state: 'detached' });
    assert.equal(await page.locator('.wh-item').count(), 1, 'cancel keeps it');
    await it2.getByRole('button', { name: `Delete webhook ${receiver.url}` }).click();
    const [del] = await Promise.all([
      page.waitForRequest((r) => r.method() === 'DELETE' && new URL(r.url()).pathname === `/api/webhooks/${webhookId}`),
      page.locator('dialog.modal [data-confirm]').click(),
    ]);
    assert.ok(del);
    await page.getByText('No webhooks yet').waitFor();
    noErrors(x);
  } finally {
    await x.context.close();
  }
});

test('phone: the account page with a webhook and its deliveries fits the screen', async () => {
  const x = await accountPage(PHONE, 'hooks-phone');
  const { page } = x;
  try {
    receiver.status = 500;
    await page.fill('#wh-url', receiver.url);
    await page.fill('#wh-desc', 'Phone test');
    await page.getByRole('button', { name: 'Add webhook' }).click();
    await page.locator('[data-new-secret]').waitFor();
    await page.getByRole('button', { name: 'I’ve saved it' }).click();
    const item = page.locator('.wh-item').first();
    await item.waitFor();
    const id = await item.getAttribute('data-webhook-id');
    const d = await oneFailedDelivery(x, id);
    const it2 = page.locator(`.wh-item[data-webhook-id="${id}"]`);
    await it2.getByRole('button', { name: 'Deliveries' }).click();
    await it2.locator(`tr[data-delivery-id="${d.id}"]`).waitFor();
    assert.ok(await it2.getByRole('button', { name: /Redeliver/ }).first().isVisible());
    const [sw, iw] = await page.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
    assert.ok(sw <= iw, `account page is ${sw}px wide on a ${iw}px screen`);
    await it2.scrollIntoViewIfNeeded();
    await shot(page, 'phone-50-webhooks');
    await shot(page, 'phone-51-account-full', { fullPage: true });
    noErrors(x);
  } finally {
    await x.context.close();
  }
});

