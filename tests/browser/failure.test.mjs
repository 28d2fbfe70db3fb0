// Failure paths in the browser: server-side form errors and a generation that
// fails for good (refunded, shown with its code and a Retry action).
// Run: node --test tests/browser/
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launchBrowser, openPage, shot, reportShots, fixture, DESKTOP, PHONE } from './harness.mjs';

let server;
let browser;

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
  test(`${label}: a failed generation shows its code, refunds, and offers Retry`, async () => {
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
      assert.match(await panel.locator('.error-code').textContent(), /[A-Z_]+/);
      assert.match(await panel.locator('[data-status-line]').textContent(), /refunded/);
      assert.ok(await panel.locator('[data-action="retry"]').isVisible());
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
