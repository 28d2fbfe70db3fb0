// The studio's rough edges (issue 10, item 7), each checked as a user sees it,
// at desktop and phone widths, against the real binary: a password of spaces,
// an upload the server refuses, a reload during a generation, a generation
// that was created but never started, the Generate button while choosing
// settings, and the rest below.
// Run: node --test --test-concurrency=1 tests/browser/rough-edges.test.mjs
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launchBrowser, openPage, shot, reportShots, fixture, DESKTOP, PHONE } from './harness.mjs';

const VIEWPORTS = [['desktop', DESKTOP], ['phone', PHONE]];
const PASSWORD = 'linen-and-wool-42';

let server;
let browser;
const users = {}; // label → {p, email}

before(async () => {
  server = await startServer({ faults: 'delay_ms=3500', signupTokens: 30 });
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
