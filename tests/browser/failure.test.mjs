// Failure paths in the browser: server-side form errors and a generation that
// fails for good (refunded, shown in words with the action its errorCode calls for).
// Run: node --test tests/browser/
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launchBrowser, openPage, shot, reportShots, fixture, DESKTOP, PHONE } from './harness.mjs';

let server;
let browser;

// errorCode → the one action the studio offers (the brief's table, restated
// here so the test checks the UI against it rather than against itself).
const EXPECTED_ACTION = {
  PROVIDER_TRANSIENT: 'Try again',
  PROVIDER_ERROR: 'Try again',
  PROVIDER_REJECTED: 'Change the prompt',
  INPUT_UNAVAILABLE: 'Replace the image',
  EXPIRED: 'Start again',
  CANCELLED: 'Start again',
};

before(async () => {
  server = await startServer({ faults: 'permanent' });
  browser = await launchBrowser();
});

after(async () => {
  if (browser) await browser.close();
  if (server) await server.stop();
  reportShots();
});

test('sign-up: a taken email is reported on the email field', async () => {
  const email = `taken-${Date.now()}@shop.example`;
  const res = await fetch(`${server.url}/api/auth/signup`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Origin: server.url },
    body: JSON.stringify({ name: 'First', email, password: 'first-password' }),
  });
  assert.equal(res.status, 201);
  const p = await openPage(browser, DESKTOP, 'desktop-fail');
  try {
    const { page } = p;
    await page.goto(`${server.url}/#/signup`);
    await page.fill('#name', 'Second');
    await page.fill('#email', email);
    await page.fill('#password', 'second-password');
    await p.expectErrors(/status of 400/, async () => {
      await page.getByRole('button', { name: 'Create account' }).click();
      await page.locator('#email-err').filter({ hasText: /already exists/ }).waitFor();
    });
    assert.equal(await page.locator('#email').getAttribute('aria-invalid'), 'true');
    assert.equal(await page.evaluate(() => document.activeElement.id), 'email', 'focus moves to the field to fix');
    await shot(page, 'desktop-20-signup-taken-email');
    assert.deepEqual(p.errors, []);
  } finally {
    await p.context.close();
  }
});

for (const [label, viewport] of [['desktop', DESKTOP], ['phone', PHONE]]) {
  test(`${label}: a failed generation explains itself, refunds, and offers the action its errorCode calls for`, async () => {
    const p = await openPage(browser, viewport, `${label}-fail`);
    try {
      const { page } = p;
      await page.goto(`${server.url}/#/signup`);
      await page.fill('#name', 'Atelier Nord');
      await page.fill('#email', `fail-${label}-${Date.now()}@shop.example`);
      await page.fill('#password', 'atelier-nord-1');
      await page.getByRole('button', { name: 'Create account' }).click();
      await page.getByRole('heading', { name: 'Studio', level: 1 }).waitFor();
      await page.setInputFiles('#file-product', fixture('product.jpg'));
      await page.locator('#up-product .thumb.is-done').waitFor();
      await page.locator('#generate-btn:not([disabled])').waitFor();
      await page.locator('#generate-btn').click();
      await page.waitForFunction(() => document.querySelector('[data-gen-panel]')?.dataset.status === 'failed', null, { timeout: 30000 });
      const panel = page.locator('[data-gen-panel]');
      // What the server recorded decides what the user is offered (SPEC §4, §7).
      const id = (await panel.locator('.panel-head .mono').textContent()).trim();
      const rec = await page.evaluate(async (gid) => (await (await fetch(`/api/generations/${gid}`)).json()).data, id);
      assert.equal(rec.status, 'failed');
      const want = EXPECTED_ACTION[rec.errorCode] || 'Contact support';
      const view = panel.locator('.failure-view');
      assert.match(await view.locator('.failure-title').textContent(), /\w+ \w+/, 'a readable title first');
      const shown = (await view.locator('.failure-error').textContent()).toLowerCase();
      assert.ok(shown.includes(rec.error.toLowerCase().slice(0, 30)), `the server's error is shown: ${shown}`);
      assert.equal((await view.locator('.alert-actions button').first().textContent()).trim(), want);
      if (rec.errorCode) assert.equal((await view.locator('.error-code').textContent()).trim(), rec.errorCode, 'the code after the text');
      assert.match(await panel.locator('[data-status-line]').textContent(), /refunded/);
      assert.equal(await panel.locator('[data-action="cancel"]').isVisible(), false);
      // Refund: the balance is whole again.
      await page.waitForFunction(() => document.querySelector('[data-summary-balance]')?.textContent === '10 tokens');
      await panel.scrollIntoViewIfNeeded();
      await shot(page, `${label}-21-generation-failed`);
      assert.deepEqual(p.errors, []);
    } finally {
      await p.context.close();
    }
  });
}
