// The generation detail page lists only the settings its model honours
// (GET /api/models `parameters`): a local-studio generation shows its seed
// and no guidance, steps or strength (the compositor ignores them), while a
// model that honours all of them (local-tuned of models-limits.json) shows
// them with their values. Desktop and phone, against the real binary.
// Run: node --test tests/browser/detail-params.test.mjs
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { startServer, launchBrowser, openPage, shot, reportShots, fixture, DESKTOP, PHONE, REPO } from './harness.mjs';

let server;
let browser;

before(async () => {
  server = await startServer({ signupTokens: 20, args: ['--models', path.join(REPO, 'tests/browser/models-limits.json')] });
  browser = await launchBrowser();
});

after(async () => {
  if (browser) await browser.close();
  if (server) await server.stop();
  reportShots();
});

async function signUp(page, who) {
  await page.goto(`${server.url}/#/signup`);
  await page.fill('#name', 'Atelier Test');
  await page.fill('#email', `${who}-${Date.now()}@shop.example`);
  await page.fill('#password', 'atelier-test-1');
  await page.getByRole('button', { name: 'Create account' }).click();
  await page.getByRole('heading', { name: 'Studio', exact: true, level: 1 }).waitFor();
}

/** Creates and runs one generation of `model` through the API (the page's session); its id. */
async function generate(page, model) {
  const b64 = fs.readFileSync(fixture('product.jpg')).toString('base64');
  return page.evaluate(async ({ b64: data, model: m }) => {
    const bin = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
    const up = await (await fetch('/api/upload', { method: 'POST', headers: { 'Content-Type': 'image/jpeg' }, body: bin })).json();
    if (!up.success) throw new Error(`upload: ${JSON.stringify(up)}`);
    const body = {
      productImages: [up.data.url], model: m, style: 'minimal', quality: 'low', aspectRatio: '1:1',
      parameters: { guidance_scale: 9, num_inference_steps: 30, strength: 0.6, seed: 4242 },
    };
    const r = await (await fetch('/api/generate', { method: 'POST', headers: { 'Content-Type': 'application/json', Prefer: 'wait=30' }, body: JSON.stringify(body) })).json();
    if (!r.success) throw new Error(JSON.stringify(r));
    return r.data._id || r.data.generationId;
  }, { b64, model });
}

/** The Settings card of a detail page as {label: value}. */
async function settings(page, id) {
  await page.goto(`${server.url}/#/history/${id}`);
  const card = page.locator('section[aria-labelledby="set-t"]');
  await card.locator('.kv').first().waitFor();
  return card.evaluate((el) => Object.fromEntries([...el.querySelectorAll('.kv')].map((kv) => [kv.querySelector('dt').textContent, kv.querySelector('dd').textContent])));
}

for (const [label, viewport] of [['desktop', DESKTOP], ['phone', PHONE]]) {
  test(`${label}: the detail page lists only the settings the generation's model honours`, async () => {
    const p = await openPage(browser, viewport, `${label}-detail-params`);
    try {
      const { page } = p;
      await signUp(page, `params-${label}`);
      const local = await generate(page, 'local-studio');
      const tuned = await generate(page, 'local-tuned');

      const s = await settings(page, local);
      assert.equal(s.Model, 'local-studio');
      assert.equal(s.Seed, '4242', 'local-studio honours the seed');
      for (const ignored of ['Guidance', 'Steps', 'Strength']) assert.equal(s[ignored], undefined, `${ignored} is not listed for local-studio`);
      const text = await page.locator('section[aria-labelledby="set-t"]').textContent();
      assert.doesNotMatch(text, /Guidance|Steps|Strength/);
      await page.locator('section[aria-labelledby="set-t"]').scrollIntoViewIfNeeded();
      await shot(page, `${label}-81-detail-local-settings`);

      const t = await settings(page, tuned);
      assert.equal(t.Model, 'local-tuned');
      assert.equal(t.Guidance, '9');
      assert.equal(t.Steps, '30');
      assert.equal(t.Strength, '0.6');
      assert.equal(t.Seed, '4242');
      await page.locator('section[aria-labelledby="set-t"]').scrollIntoViewIfNeeded();
      await shot(page, `${label}-82-detail-tuned-settings`);
      assert.deepEqual(p.errors, [], `console/page errors:\n${p.errors.join('\n')}`);
    } finally {
      await p.context.close();
    }
  });
}
