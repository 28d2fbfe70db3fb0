// Batch mode in the studio (issue 8 item 9; SPEC §4 "Batches") against the
// real binary: one product in several styles and formats, or one generation
// per product image, with one combined cost before, one progress view during
// (it survives a reload), one ZIP after; the 20-item limit; cancelling the
// rest — at desktop and phone widths.
// Run: node --test --test-concurrency=1 tests/browser/batch.test.mjs
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { startServer, launchBrowser, openPage, shot, reportShots, fixture, DESKTOP, PHONE } from './harness.mjs';

let server;
let browser;

before(async () => {
  server = await startServer({ faults: 'delay_ms=1500', signupTokens: 40, args: ['--workers', '2'] });
  browser = await launchBrowser();
});
after(async () => {
  if (browser) await browser.close();
  if (server) await server.stop();
  reportShots();
});

const batchStatus = (page) => page.locator('[data-batch-panel]').getAttribute('data-status');
const waitBatch = (page, want, timeout = 60000) => page.waitForFunction((w) => document.querySelector('[data-batch-panel]')?.dataset.status === w, want, { timeout });

/** Number of entries of a ZIP (its end-of-central-directory record). */
function zipCount(buf) {
  const end = buf.length - 22;
  assert.equal(buf.readUInt32LE(end), 0x06054b50, 'a ZIP');
  return buf.readUInt16LE(end + 10);
}

for (const [label, viewport] of [['desktop', DESKTOP], ['phone', PHONE]]) {
  test(`${label}: a batch of styles × formats: one cost, one progress view, one ZIP; per product image; the 20 limit; cancel the rest`, async () => {
    const p = await openPage(browser, viewport, label);
    try {
      const { page } = p;
      await page.goto(`${server.url}/#/signup`);
      await page.fill('#name', 'Batch Boutique');
      await page.fill('#email', `batch-${label}-${Date.now()}@shop.example`);
      await page.fill('#password', 'batch-boutique-1');
      await page.getByRole('button', { name: 'Create account' }).click();
      await page.getByRole('heading', { name: 'Studio', level: 1 }).waitFor();
      await page.locator('.opts-model .opt-card[data-value="local-studio"] input:checked').waitFor({ state: 'attached' });
      await page.setInputFiles('#file-product', [fixture('product.jpg'), fixture('product2.png')]);
      await page.waitForFunction(() => document.querySelectorAll('#up-product .thumb.is-done').length === 2);

      await page.locator('[data-mode="batch"]').click();
      assert.equal(await page.locator('[data-mode="batch"]').getAttribute('aria-pressed'), 'true');
      assert.equal(await page.locator('input[name="style"]').first().getAttribute('type'), 'checkbox', 'styles are one-or-more');
      await page.locator('.opts-style .opt-card[data-value="minimal"]').click();
      await page.locator('.opts-ratio .opt-card[data-value="4:5"]').click();
      assert.deepEqual(await page.locator('input[name="style"]:checked').evaluateAll((e) => e.map((x) => x.value)), ['realistic', 'minimal']);
      assert.deepEqual(await page.locator('input[name="aspect"]:checked').evaluateAll((e) => e.map((x) => x.value)), ['1:1', '4:5']);
      assert.equal((await page.locator('[data-cost-label]').textContent()).trim(), 'This batch');
      assert.match(await page.locator('[data-cost]').textContent(), /^4 tokens$/);
      assert.match(await page.locator('#generate-btn').textContent(), /Generate 4 · 4 tokens/);
      // One generation per product image doubles it.
      await page.locator('[data-batch-per-product]').check();
      assert.match(await page.locator('#generate-btn').textContent(), /Generate 8 · 8 tokens/);
      if (label === 'desktop') assert.match(await page.locator('[data-cost-note]').textContent(), /^8 generations · /);
      await page.locator('.summary').scrollIntoViewIfNeeded();
      await shot(page, `${label}-90-batch-setup`, { fullPage: label === 'desktop' });
      await page.locator('[data-batch-per-product]').uncheck();

      // A template keeps one generation's settings: the batch's first style and format.
      await page.locator('[data-tpl="save"]').click();
      await page.locator('dialog.modal #tpl-name').waitFor();
      assert.equal(await page.locator('dialog.modal #tpl-name').inputValue(), 'Realistic · 1:1');
      await page.locator('dialog.modal').getByRole('button', { name: 'Cancel' }).click();
      await page.locator('dialog.modal').waitFor({ state: 'detached' });

      // Over the limit: 3 styles × 8 formats = 24.
      for (const s of ['artistic']) await page.locator(`.opts-style .opt-card[data-value="${s}"]`).click();
      for (const r of ['3:4', '2:3', '9:16', '4:3', '3:2', '16:9']) await page.locator(`.opts-ratio .opt-card[data-value="${r}"]`).click();
      assert.equal(await page.locator('#generate-btn').isDisabled(), true);
      assert.match(await page.locator('#gen-reason').textContent(), /A batch holds up to 20 generations — this one would make 24/);
      await page.locator('.summary').scrollIntoViewIfNeeded();
      await shot(page, `${label}-91-batch-over-limit`);
      await page.locator('.opts-style .opt-card[data-value="artistic"]').click();
      for (const r of ['3:4', '2:3', '9:16', '4:3', '3:2', '16:9']) await page.locator(`.opts-ratio .opt-card[data-value="${r}"]`).click();
      assert.match(await page.locator('#generate-btn').textContent(), /Generate 4 · 4 tokens/);

      // Run it: one view of the four.
      await page.locator('#generate-btn').click();
      const bp = page.locator('[data-batch-panel]');
      await bp.waitFor({ state: 'visible' });
      assert.match(await bp.locator('#batch-title').textContent(), /Batch · 4 generations/);
      await page.waitForFunction(() => document.querySelectorAll('[data-batch-panel] [data-batch-item]').length === 4);
      if (label === 'desktop') {
        // A reload brings the batch view back.
        await page.reload();
        await bp.waitFor({ state: 'visible' });
        await page.waitForFunction(() => document.querySelectorAll('[data-batch-panel] [data-batch-item][data-status]:not([data-status=""])').length === 4);
      }
      await page.waitForFunction(() => Number(document.querySelector('[data-batch-progress]')?.textContent.replace('%', '')) > 0 || document.querySelector('[data-batch-panel]')?.dataset.status === 'completed');
      if (label === 'phone') await bp.scrollIntoViewIfNeeded();
      await shot(page, `${label}-92-batch-running`);
      await waitBatch(page, 'completed');
      assert.match(await bp.locator('[data-batch-summary]').textContent(), /^Done — 4 of 4 completed$/);
      assert.equal(await bp.locator('[data-batch-item][data-status="completed"]').count(), 4);
      assert.equal((await bp.locator('[data-batch-progress]').textContent()).trim(), '100%');
      await page.waitForFunction(() => document.querySelector('.sidebar [data-balance], .topbar [data-balance]')?.textContent.trim() === '36');
      const bid = (await bp.locator('[data-batch-id]').textContent()).trim();
      const b = await page.evaluate(async (id) => (await (await fetch(`/api/batches/${id}`)).json()).data, bid);
      assert.deepEqual(b.counts, { pending: 0, processing: 0, completed: 4, failed: 0, cancelled: 0 });
      const recs = await page.evaluate(async (ids) => Promise.all(ids.map(async (id) => (await (await fetch(`/api/generations/${id}`)).json()).data)), b.generationIds);
      assert.deepEqual(recs.map((r) => `${r.parameters.style} ${r.parameters.aspectRatio} ${r.productImages.length}`),
        ['realistic 1:1 2', 'realistic 4:5 2', 'minimal 1:1 2', 'minimal 4:5 2']);
      assert.ok(recs.every((r) => r.batchId === bid));
      await page.waitForFunction(() => [...document.querySelectorAll('[data-batch-panel] .batch-thumb img')].every((i) => i.complete && i.naturalWidth > 0));
      if (label === 'phone') await bp.scrollIntoViewIfNeeded();
      await shot(page, `${label}-93-batch-done`);
      const [dl] = await Promise.all([page.waitForEvent('download'), bp.locator('[data-batch-action="zip"]').click()]);
      assert.equal(dl.suggestedFilename(), `${bid}.zip`);
      assert.equal(zipCount(fs.readFileSync(await dl.path())), recs.reduce((n, r) => n + r.resultImages.length, 0));

      // Cancel the rest: a batch of 4 per product image × 2 styles = 4, cancelled at once.
      await page.locator('[data-batch-per-product]').check();
      await page.locator('.opts-ratio .opt-card[data-value="4:5"]').click();
      assert.match(await page.locator('#generate-btn').textContent(), /Generate 4 · 4 tokens/);
      await page.locator('#generate-btn').click();
      await page.waitForFunction((old) => { const t = document.querySelector('[data-batch-id]')?.textContent.trim(); return t && t !== old; }, bid);
      await bp.locator('[data-batch-action="cancel"]').click();
      await page.locator('.toast', { hasText: 'Cancelled the unfinished generations' }).first().waitFor();
      await page.waitForFunction(() => !['processing', 'pending'].includes(document.querySelector('[data-batch-panel]')?.dataset.status));
      const bid2 = (await bp.locator('[data-batch-id]').textContent()).trim();
      const b2 = await page.evaluate(async (id) => (await (await fetch(`/api/batches/${id}`)).json()).data, bid2);
      assert.ok(b2.counts.cancelled >= 1, `some were cancelled: ${JSON.stringify(b2.counts)}`);
      assert.equal(b2.counts.cancelled + b2.counts.completed, 4);
      assert.match(await bp.locator('[data-batch-summary]').textContent(), new RegExp(`${b2.counts.cancelled} cancelled`));
      assert.equal(await bp.locator('[data-batch-action="cancel"]').isVisible(), false);
      const me = await page.evaluate(async () => (await (await fetch('/api/me')).json()).data.tokenBalance);
      assert.equal(me, 36 - b2.counts.completed, 'only the completed ones are paid for');
      if (label === 'phone') await bp.scrollIntoViewIfNeeded();
      await shot(page, `${label}-94-batch-cancelled`);
      assert.deepEqual(p.errors, []);
    } finally {
      await p.context.close();
    }
  });
}
