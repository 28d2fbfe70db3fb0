// The model picker against the real catalogue: every listed model with its
// name, description and cost; unavailable ones disabled with their reason
// (the hosted models, without provider credentials); settings a model does
// not honour hidden and not sent; image limits enforced before submit. The
// limits run on a second server with `--models models-limits.json`: local
// compositor models carrying flux-kontext-pro's and idm-vton's limits, so the
// whole flow is real. A third server has provider credentials and points at
// the fake OpenAI and Replicate of tests/integration/fakes: there the hosted
// models are available and run from the studio, refusals included.
// Run: node --test tests/browser/models.test.mjs
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { startServer, launchBrowser, openPage, shot, reportShots, fixture, DESKTOP, PHONE, REPO } from './harness.mjs';
import { realModels } from './stubs.mjs';
import { startFakeOpenAI } from '../integration/fakes/openai.mjs';
import { startFakeReplicate } from '../integration/fakes/replicate.mjs';

const MULT = { auto: 1, low: 1, medium: 1, high: 1.5 };
const cost = (m, q) => (m.costByQuality && typeof m.costByQuality[q] === 'number' ? m.costByQuality[q] : Math.ceil(m.baseCost * MULT[q]));
const tokens = (n) => `${n} token${n === 1 ? '' : 's'}`;

let server; // the shipped catalogue
let limited; // --models models-limits.json
let hosted; // credentials, providers faked
let oa;
let rep;
let browser;

before(async () => {
  oa = await startFakeOpenAI({ apiKey: 'sk-test-browser' });
  rep = await startFakeReplicate({ token: 'r8_test_browser', durationMs: 300 });
  [server, limited, hosted] = await Promise.all([
    startServer({}),
    startServer({ args: ['--models', path.join(REPO, 'tests/browser/models-limits.json')] }),
    startServer({
      signupTokens: 20,
      env: { OPENAI_API_KEY: 'sk-test-browser', REPLICATE_API_TOKEN: rep.token, REPLICATE_WEBHOOK_SECRET: rep.webhookSecret },
      args: ['--openai-base-url', oa.url, '--replicate-base-url', rep.url],
    }),
  ]);
  browser = await launchBrowser();
});

after(async () => {
  if (browser) await browser.close();
  await Promise.all([server, limited, hosted].filter(Boolean).map((x) => x.stop()));
  await Promise.all([oa, rep].filter(Boolean).map((x) => x.close()));
  reportShots();
});

async function signUp(page, who, srv) {
  await page.goto(`${srv.url}/#/signup`);
  await page.fill('#name', 'Maison Test');
  await page.fill('#email', `${who}-${Date.now()}-${Math.random().toString(36).slice(2, 7)}@shop.example`);
  await page.fill('#password', 'maison-test-1');
  await page.getByRole('button', { name: 'Create account' }).click();
  await page.getByRole('heading', { name: 'Studio', level: 1 }).waitFor();
  await page.locator('.opts-model .opt-card').first().waitFor();
}

/** A fresh, signed-up page on srv, recording the creates it sends. */
async function studioWith(srv, viewport, name) {
  const p = await openPage(browser, viewport, name);
  const creates = [];
  p.page.on('request', (r) => { if (r.method() === 'POST' && new URL(r.url()).pathname === '/api/generation/create') creates.push(r); });
  await signUp(p.page, name, srv);
  return { ...p, creates };
}

test('every listed model: name, description, cost at the chosen quality; unavailable ones disabled with their reason', async () => {
  const p = await studioWith(server, DESKTOP, 'models');
  const { page } = p;
  try {
    const models = await realModels(page);
    assert.ok(models.length >= 2, 'the catalogue lists several models');
    assert.ok(models.some((m) => m.available), 'at least one model is available (local-studio)');
    const unavailable = models.filter((m) => !m.available);
    assert.ok(unavailable.length >= 1, 'without provider credentials the hosted models are listed but unavailable');
    for (const id of ['gpt-image-1', 'flux-kontext-pro', 'idm-vton']) {
      const m = models.find((x) => x.id === id);
      assert.ok(m, `${id} is listed`);
      assert.equal(m.available, false, `${id}: unavailable without credentials`);
    }
    assert.equal(await page.locator('.opts-model .opt-card').count(), models.length, 'every listed model has a card');
    for (const m of models) {
      const card = page.locator(`.opts-model .opt-card[data-value="${m.id}"]`);
      const text = await card.textContent();
      assert.ok(text.includes(m.name), `${m.id}: name shown`);
      assert.ok(text.includes(m.description), `${m.id}: description shown`);
      assert.equal((await card.locator('[data-model-cost]').textContent()).trim(), tokens(cost(m, 'auto')), `${m.id}: cost at Auto`);
      assert.equal(await card.locator('input').isDisabled(), !m.available, `${m.id}: disabled iff unavailable`);
      if (!m.available) {
        assert.ok(m.unavailableReason, `${m.id}: the server gives a reason`);
        assert.ok(text.includes(m.unavailableReason), `${m.id}: its reason is shown`);
        assert.match(text, /Unavailable/);
      }
    }
    // The cost follows the quality multiplier the studio shows.
    await page.locator('.opts-quality .opt-card[data-value="high"]').click();
    for (const m of models) {
      assert.equal((await page.locator(`[data-model-cost="${m.id}"]`).textContent()).trim(), tokens(cost(m, 'high')), `${m.id}: cost at High`);
    }
    const sel = models.find((m) => m.available);
    assert.match(await page.locator('[data-cost]').textContent(), new RegExp(tokens(cost(sel, 'high'))));
    await page.locator('.opts-quality .opt-card[data-value="auto"]').click();
    // An unavailable model cannot be picked.
    const u = unavailable[0];
    await page.locator(`.opts-model .opt-card[data-value="${u.id}"]`).click({ force: true });
    assert.equal(await page.locator('input[name="model"]:checked').getAttribute('value'), sel.id);
    await page.locator('#sec-model').scrollIntoViewIfNeeded();
    await shot(page, 'desktop-30-model-picker');
    assert.deepEqual(p.errors, []);
  } finally {
    await p.context.close();
  }
});

test('settings a model does not honour are hidden, and not sent', async () => {
  const p = await studioWith(limited, DESKTOP, 'params');
  const { page } = p;
  try {
    const models = await realModels(page);
    const ls = models.find((m) => m.id === 'local-studio');
    assert.deepEqual(ls.parameters, ['seed'], 'the compositor honours only the seed');
    await page.locator('#advanced > summary').click();
    for (const k of ['guidance_scale', 'num_inference_steps', 'strength', 'seed']) {
      assert.equal(await page.locator(`[data-param="${k}"]`).isVisible(), ls.parameters.includes(k), `local-studio: ${k} shown iff honoured`);
    }
    assert.match(await page.locator('#advanced summary').textContent(), /Seed/);
    await page.fill('#adv-seed', '4242');
    await page.setInputFiles('#file-product', fixture('product.jpg'));
    await page.locator('#up-product .thumb.is-done').waitFor();
    await page.locator('#advanced').scrollIntoViewIfNeeded();
    await shot(page, 'desktop-31-params-local');
    const [req] = await Promise.all([
      page.waitForRequest((r) => r.method() === 'POST' && new URL(r.url()).pathname === '/api/generation/create'),
      page.locator('#generate-btn').click(),
    ]);
    const sent = req.postDataJSON();
    assert.equal(sent.model, 'local-studio');
    assert.deepEqual(Object.keys(sent.parameters), ['seed'], 'only honoured parameters are sent');
    assert.equal(sent.parameters.seed, 4242);
    await page.waitForFunction(() => document.querySelector('[data-gen-panel]')?.dataset.status === 'completed', null, { timeout: 30000 });
    const rec = await page.evaluate(async () => { const id = document.querySelector('[data-gen-panel] .panel-head .mono').textContent.trim(); return (await (await fetch(`/api/generations/${id}`)).json()).data; });
    assert.equal(rec.parameters.seed, 4242, 'the server used the seed');

    // A model that honours them all: every slider, with its range, default and keyboard steps; all sent.
    await page.locator('.opts-model .opt-card[data-value="local-tuned"]').click();
    for (const k of ['guidance_scale', 'num_inference_steps', 'strength', 'seed']) assert.equal(await page.locator(`[data-param="${k}"]`).isVisible(), true, `local-tuned: ${k} shown`);
    assert.equal(await page.locator('#adv-guidance_scale').inputValue(), '7.5');
    assert.equal(await page.locator('#adv-strength').inputValue(), '0.8');
    assert.match(await page.locator('#adv-guidance_scale-help').textContent(), /Range 1–20, default 7\.5/);
    await page.locator('#adv-num_inference_steps').focus();
    await page.keyboard.press('ArrowRight');
    assert.equal(await page.locator('#adv-num_inference_steps').inputValue(), '51');
    const [req2] = await Promise.all([
      page.waitForRequest((r) => r.method() === 'POST' && new URL(r.url()).pathname === '/api/generation/create'),
      page.locator('#generate-btn').click(),
    ]);
    assert.deepEqual(req2.postDataJSON().parameters, { guidance_scale: 7.5, num_inference_steps: 51, strength: 0.8, seed: 4242 });
    await page.waitForFunction(() => document.querySelector('[data-gen-panel]')?.dataset.status === 'completed', null, { timeout: 30000 });

    // A model that honours none (like gpt-image-1): no controls, a sentence instead.
    const none = models.find((m) => Array.isArray(m.parameters) && m.parameters.length === 0 && m.available);
    await page.locator(`.opts-model .opt-card[data-value="${none.id}"]`).click();
    for (const k of ['guidance_scale', 'num_inference_steps', 'strength', 'seed']) assert.equal(await page.locator(`[data-param="${k}"]`).isVisible(), false, `${none.id}: ${k} hidden`);
    assert.equal((await page.locator('[data-adv-none]').textContent()).trim(), `${none.name} has no adjustable settings: it decides them itself.`);
    assert.match(await page.locator('#advanced summary').textContent(), /None for this model/);
    await page.locator('#advanced').scrollIntoViewIfNeeded();
    await shot(page, 'desktop-32-params-none');
    assert.deepEqual(p.errors, []);
  } finally {
    await p.context.close();
  }
});

for (const [label, viewport] of [['desktop', DESKTOP], ['phone', PHONE]]) {
  test(`${label}: a model's image limits are enforced with a clear message before anything is sent`, async () => {
    const p = await studioWith(limited, viewport, `limits-${label}`);
    const { page } = p;
    try {
      const models = await realModels(page);
      const single = models.find((m) => m.id === 'local-single');
      const tryon = models.find((m) => m.id === 'local-tryon');
      assert.deepEqual([single.maxProductImages, single.maxModelImages], [1, 0], 'flux-kontext-pro-like limits from the server');
      assert.deepEqual([tryon.maxProductImages, tryon.minModelImages, tryon.maxModelImages], [1, 1, 1], 'idm-vton-like limits from the server');

      await page.setInputFiles('#file-product', [fixture('product.jpg'), fixture('product2.png')]);
      await page.setInputFiles('#file-model', fixture('model.jpg'));
      await page.waitForFunction(() => document.querySelectorAll('#up-product .thumb.is-done').length === 2 && document.querySelectorAll('#up-model .thumb.is-done').length === 1);
      assert.equal(await page.locator('#generate-btn').isEnabled(), true, 'local-studio takes them all');

      // One product image, no model photos.
      const singleCard = page.locator('.opts-model .opt-card[data-value="local-single"]');
      assert.match(await singleCard.textContent(), /1 product image · no model photos/);
      await singleCard.click();
      assert.equal((await page.locator('#limit-product').textContent()).trim(), 'Single Shot takes one product image — remove 1.');
      assert.equal((await page.locator('#limit-model').textContent()).trim(), 'Single Shot doesn’t use model photos — remove it, or pick another model.');
      assert.match(await page.locator('[data-count="product"]').textContent(), /2 \/ 1/);
      assert.equal(await page.locator('#generate-btn').isDisabled(), true);
      assert.match(await page.locator('#gen-reason').textContent(), /Single Shot takes one product image — remove 1/);
      await page.locator('#sec-images').scrollIntoViewIfNeeded();
      await shot(page, `${label}-33-limits-single`);
      await page.getByRole('button', { name: 'Remove product2.png' }).click();
      await page.getByRole('button', { name: 'Remove model.jpg' }).click();
      assert.equal(await page.locator('#limit-product').textContent(), '');
      assert.equal(await page.locator('#limit-model').textContent(), '');
      assert.equal(await page.locator('#generate-btn').isEnabled(), true, 'within the limits, Generate is enabled');
      assert.match(await page.locator('[data-desc="model"]').textContent(), /Single Shot doesn’t use model photos/);

      // Exactly one model photo, required.
      const tryCard = page.locator('.opts-model .opt-card[data-value="local-tryon"]');
      assert.match(await tryCard.textContent(), /1 product image · needs 1 model photo/);
      await tryCard.click();
      assert.equal((await page.locator('#up-model .uploader-title .req').textContent()).trim(), 'Required');
      assert.equal((await page.locator('#limit-model').textContent()).trim(), 'Try-On Test needs exactly 1 model photo (a person to dress) — add one.');
      assert.equal(await page.locator('#generate-btn').isDisabled(), true);
      assert.match(await page.locator('#gen-reason').textContent(), /needs exactly 1 model photo/);
      await page.locator('#sec-images').scrollIntoViewIfNeeded();
      await shot(page, `${label}-34-limits-tryon`);
      assert.equal(p.creates.length, 0, 'nothing was submitted while the limits were broken');

      // Within the limits the real server takes it and renders it.
      await page.setInputFiles('#file-model', fixture('model.jpg'));
      await page.locator('#up-model .thumb.is-done').waitFor();
      assert.equal(await page.locator('#limit-model').textContent(), '');
      assert.equal(await page.locator('#generate-btn').isEnabled(), true);
      await page.locator('#generate-btn').click();
      await page.waitForFunction(() => document.querySelector('[data-gen-panel]')?.dataset.status === 'completed', null, { timeout: 30000 });
      assert.equal(p.creates.length, 1);
      const sent = p.creates[0].postDataJSON();
      assert.equal(sent.model, 'local-tryon');
      assert.equal(sent.productImages.length, 1);
      assert.equal(sent.modelImages.length, 1);
      assert.deepEqual(p.errors, []);
    } finally {
      await p.context.close();
    }
  });
}

test('with provider credentials the hosted models are available and run from the studio (fake OpenAI and Replicate)', async () => {
  const p = await studioWith(hosted, DESKTOP, 'hosted');
  const { page } = p;
  const done = (st) => page.waitForFunction((want) => document.querySelector('[data-gen-panel]')?.dataset.status === want, st, { timeout: 60000 });
  try {
    const models = await realModels(page);
    for (const id of ['gpt-image-1', 'flux-kontext-pro', 'idm-vton']) {
      const m = models.find((x) => x.id === id);
      assert.equal(m.available, true, `${id} available with credentials`);
      const card = page.locator(`.opts-model .opt-card[data-value="${id}"]`);
      assert.equal(await card.locator('input').isDisabled(), false, `${id}: can be picked`);
      assert.doesNotMatch(await card.textContent(), /Unavailable/);
      assert.equal((await card.locator('[data-model-cost]').textContent()).trim(), tokens(cost(m, 'auto')));
    }
    await page.setInputFiles('#file-product', fixture('product.jpg'));
    await page.locator('#up-product .thumb.is-done').waitFor();

    // gpt-image-1: 3 tokens, no adjustable settings, nothing of them sent.
    await page.locator('.opts-model .opt-card[data-value="gpt-image-1"]').click();
    assert.match(await page.locator('[data-cost]').textContent(), /3 tokens/);
    await page.locator('#advanced > summary').click();
    assert.match(await page.locator('[data-adv-none]').textContent(), /GPT Image 1 has no adjustable settings/);
    await page.locator('#generate-btn').click();
    await done('completed');
    assert.deepEqual(p.creates.at(-1).postDataJSON().parameters, {});
    await page.locator('[data-gen-panel] .gallery img').first().waitFor();
    assert.equal(oa.requests.length, 1, 'one call to OpenAI');
    assert.deepEqual(oa.violations(), []);
    await page.locator('[data-gen-panel]').scrollIntoViewIfNeeded();
    await shot(page, 'desktop-35-hosted-gpt-image-1');

    // A content-policy refusal: the provider's words and "Change the prompt".
    oa.script({ contentPolicy: true });
    await page.fill('#custom-prompt', 'Something the safety system refuses');
    await page.locator('#generate-btn').click();
    await done('failed');
    const panel = page.locator('[data-gen-panel]');
    assert.match(await panel.locator('.failure-title').textContent(), /refused/i);
    assert.match(await panel.locator('.failure-error').textContent(), /safety system/i, "OpenAI's reason, passed on");
    assert.equal((await panel.locator('.error-code').textContent()).trim(), 'PROVIDER_REJECTED');
    await panel.scrollIntoViewIfNeeded();
    await shot(page, 'desktop-36-hosted-refused');
    await panel.getByRole('button', { name: 'Change the prompt' }).click();
    await page.waitForFunction(() => document.activeElement && document.activeElement.id === 'custom-prompt');
    oa.script(null);

    // idm-vton: the try-on needs exactly one model photo; then it runs on Replicate.
    await page.locator('.opts-model .opt-card[data-value="idm-vton"]').click();
    assert.equal(await page.locator('#generate-btn').isDisabled(), true);
    assert.match(await page.locator('#limit-model').textContent(), /IDM-VTON Virtual Try-On needs exactly 1 model photo/);
    await page.setInputFiles('#file-model', fixture('model.jpg'));
    await page.locator('#up-model .thumb.is-done').waitFor();
    await page.locator('#generate-btn').click();
    await done('completed');
    const sent = p.creates.at(-1).postDataJSON();
    assert.equal(sent.model, 'idm-vton');
    assert.equal(sent.modelImages.length, 1);
    assert.equal(rep.predictions.size, 1, 'one prediction on Replicate');
    assert.deepEqual(rep.violations(), []);
    assert.deepEqual(p.errors, []);
  } finally {
    await p.context.close();
  }
});
