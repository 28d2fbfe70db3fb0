// Templates in the studio (issue 8 item 9; SPEC §4 "Templates") against the
// real binary: save the current settings under a name, change the form, start
// from the template (Use fills the form back; Generate runs it as saved),
// replace it under the same name, delete it — at desktop and phone widths.
// Run: node --test --test-concurrency=1 tests/browser/templates.test.mjs
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launchBrowser, openPage, shot, reportShots, fixture, DESKTOP, PHONE } from './harness.mjs';

let server;
let browser;

before(async () => {
  server = await startServer({ faults: 'delay_ms=800', signupTokens: 20 });
  browser = await launchBrowser();
});
after(async () => {
  if (browser) await browser.close();
  if (server) await server.stop();
  reportShots();
});

const checked = (page, name) => page.locator(`input[name="${name}"]:checked`).getAttribute('value');

for (const [label, viewport] of [['desktop', DESKTOP], ['phone', PHONE]]) {
  test(`${label}: save the settings as a template, start from it (Use, Generate), replace it, delete it`, async () => {
    const p = await openPage(browser, viewport, label);
    try {
      const { page } = p;
      await page.goto(`${server.url}/#/signup`);
      await page.fill('#name', 'Maison Tpl');
      await page.fill('#email', `tpl-${label}-${Date.now()}@shop.example`);
      await page.fill('#password', 'maison-tpl-123');
      await page.getByRole('button', { name: 'Create account' }).click();
      await page.getByRole('heading', { name: 'Studio', level: 1 }).waitFor();
      await page.locator('.opts-model .opt-card[data-value="local-studio"] input:checked').waitFor({ state: 'attached' });
      const bar = page.locator('[data-templates]');
      await bar.waitFor();
      assert.match(await bar.locator('[data-tpl-note]').textContent(), /Save the settings you use often/);
      assert.equal(await bar.locator('[data-tpl-select]').isVisible(), false, 'nothing to pick yet');

      // Without an image there is nothing to save yet.
      await bar.locator('[data-tpl="save"]').click();
      await page.locator('.toast', { hasText: 'Add a product image first' }).first().waitFor();

      await page.setInputFiles('#file-product', fixture('product.jpg'));
      await page.locator('#up-product .thumb.is-done').waitFor();
      await page.locator('.opt-card[data-value="artistic"]').click();
      await page.locator('.opt-card[data-value="9:16"]').click();
      await page.fill('#custom-prompt', 'neon glow, night city');
      await bar.locator('[data-tpl="save"]').click();
      const dlg = page.locator('dialog.modal');
      await dlg.waitFor({ state: 'visible' });
      assert.equal(await dlg.locator('#tpl-name').inputValue(), 'Artistic · 9:16', 'a name is suggested');
      await dlg.locator('#tpl-name').fill('Story, neon');
      await shot(page, `${label}-80-template-save`);
      await dlg.locator('[data-confirm]').click();
      await page.locator('.toast', { hasText: 'Saved template “Story, neon”' }).first().waitFor();
      await bar.locator('[data-tpl-select]').waitFor();
      assert.deepEqual(await bar.locator('[data-tpl-select] option').allTextContents(), ['Story, neon']);

      // Change everything, then start from the template.
      await page.locator('.opt-card[data-value="minimal"]').click();
      await page.locator('.opt-card[data-value="1:1"]').click();
      await page.fill('#custom-prompt', '');
      await page.locator('#up-product [data-remove]').click();
      await bar.locator('[data-tpl="apply"]').click();
      await page.locator('.toast', { hasText: 'Settings from “Story, neon” loaded' }).first().waitFor();
      assert.equal(await checked(page, 'style'), 'artistic');
      assert.equal(await checked(page, 'aspect'), '9:16');
      assert.equal(await page.locator('#custom-prompt').inputValue(), 'neon glow, night city');
      assert.equal(await page.locator('#up-product .thumb.is-done').count(), 1, 'the saved image is back');
      await bar.scrollIntoViewIfNeeded();
      await shot(page, `${label}-81-template-applied`);

      // Generate straight from it: the record has the saved settings.
      await page.locator('.opt-card[data-value="realistic"]').click();
      await bar.locator('[data-tpl="generate"]').click();
      const panel = page.locator('[data-gen-panel]');
      await page.waitForFunction(() => document.querySelector('[data-gen-panel]')?.dataset.status === 'completed', null, { timeout: 30000 });
      const id = (await panel.locator('.panel-head .mono').textContent()).trim();
      const rec = await page.evaluate(async (gid) => (await (await fetch(`/api/generations/${gid}`)).json()).data, id);
      assert.equal(rec.parameters.style, 'artistic', 'generated as saved, not as the form is now');
      assert.equal(rec.parameters.aspectRatio, '9:16');
      assert.equal(rec.customPrompt, 'neon glow, night city');
      await panel.locator('.gallery img').first().waitFor();
      if (label === 'phone') await panel.scrollIntoViewIfNeeded();
      await shot(page, `${label}-82-template-generated`);

      // Saving under the same name replaces it.
      await bar.scrollIntoViewIfNeeded();
      await bar.locator('[data-tpl="save"]').click();
      await dlg.waitFor({ state: 'visible' });
      await dlg.locator('#tpl-name').fill('story, NEON');
      await dlg.locator('[data-confirm]').filter({ hasText: 'Replace template' }).waitFor();
      assert.match(await dlg.locator('#tpl-name-hint').textContent(), /exists: saving replaces it/);
      await dlg.locator('[data-confirm]').click();
      // A regex: a string hasText matches case-insensitively, so it would
      // also find the first save's toast, still on screen.
      await page.locator('.toast', { hasText: /Saved template “story, NEON”/ }).first().waitFor();
      assert.deepEqual(await bar.locator('[data-tpl-select] option').allTextContents(), ['story, NEON']);
      const list = await page.evaluate(async () => (await (await fetch('/api/templates')).json()).data.items);
      assert.equal(list.length, 1);
      assert.equal(list[0].body.style, 'realistic', 'the replacement keeps the form as it is now');

      // Delete it.
      await bar.locator('[data-tpl="delete"]').click();
      await page.locator('dialog.modal [data-confirm]').click();
      await page.locator('.toast', { hasText: 'Deleted template' }).first().waitFor();
      await bar.locator('[data-tpl-select]').waitFor({ state: 'hidden' });
      assert.deepEqual(p.errors, []);
    } finally {
      await p.context.close();
    }
  });
}
