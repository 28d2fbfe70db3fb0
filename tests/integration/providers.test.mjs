// The hosted-model adapters (SPEC §7) against strict fakes of OpenAI and
// Replicate (fakes/*.mjs): generations through each adapter to completed,
// and through each fault to the end state SPEC §7 gives it, with its
// errorCode, retryCount and refund (the harness checks the ledger after
// every test). Every test also asserts the fake saw no protocol violation.
import { createHash, createHmac } from 'node:crypto';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  test, assert, serverFor, api, createBody, fixture, uploadFixture, waitGen, balance, imageSize,
  getGen, PG, query, sse, waitFor, ROOT,
} from './harness.mjs';
import { startFakeOpenAI } from './fakes/openai.mjs';
import { startFakeReplicate } from './fakes/replicate.mjs';

const OPENAI_KEY = 'sk-test-OPENAI-SECRET-1d9f';
const REPLICATE_TOKEN = 'r8_test_REPLICATE-SECRET-77ab';
const sha = (buf) => createHash('sha256').update(buf).digest('hex');

// A server pointed at both fakes; retries quick so faults end fast.
async function setup(t, { maxRetries = 2, webhookSecret, args = [] } = {}) {
  const oa = await startFakeOpenAI({ apiKey: OPENAI_KEY });
  const rep = await startFakeReplicate({ token: REPLICATE_TOKEN, durationMs: 800, steps: 8 });
  t.after(() => Promise.all([oa.close(), rep.close()]));
  const env = { OPENAI_API_KEY: OPENAI_KEY, REPLICATE_API_TOKEN: REPLICATE_TOKEN };
  if (webhookSecret) env.REPLICATE_WEBHOOK_SECRET = webhookSecret === true ? rep.webhookSecret : webhookSecret;
  const srv = await serverFor(t, {
    env,
    args: ['--openai-base-url', oa.url, '--replicate-base-url', rep.url, '--allow-hosts', '127.0.0.1',
      '--max-retries', String(maxRetries), '--retry-base-ms', '50', ...args],
  });
  const u = await srv.createUser({ tokens: 100 });
  return { oa, rep, srv, u };
}

async function run(srv, key, body, timeout = 30000) {
  const r = await api(srv, 'POST', '/api/generate', { key, body });
  assert.equal(r.status, 202, r.text);
  return waitGen(srv, key, r.data.generationId, { timeout });
}

async function resultSize(url) {
  const res = await fetch(url);
  assert.equal(res.status, 200, url);
  return imageSize(Buffer.from(await res.arrayBuffer()));
}

test('gpt-image-1: the images edit request is exactly what SPEC §7 says, and the result is fitted to the ratio', async (t) => {
  const { oa, srv, u } = await setup(t);
  const p1 = await uploadFixture(srv, u.key, 'product.jpg');
  const p2 = await uploadFixture(srv, u.key, 'product2.png');
  const m1 = await uploadFixture(srv, u.key, 'model.jpg');
  const before = await balance(srv, u.key);
  const g = await run(srv, u.key, createBody(p1, {
    model: 'gpt-image-1', productImages: [p1, p2], modelImages: [m1], aspectRatio: '4:5', quality: 'high',
    customPrompt: 'soft window light' }));
  assert.equal(g.status, 'completed', JSON.stringify(g));
  assert.deepEqual(oa.violations(), []);
  assert.equal(oa.requests.length, 1);
  const req = oa.requests[0];
  assert.equal(req.headers.authorization, `Bearer ${OPENAI_KEY}`);
  assert.equal(req.fields.model, 'gpt-image-1');
  assert.equal(req.fields.size, '1024x1536', 'portrait ratios ask for 1024x1536');
  assert.equal(req.fields.quality, 'high');
  assert.equal(req.fields.n, '1');
  assert.equal(req.fields.prompt, g.prompt);
  // One image[] per product image, then per model image, byte for byte.
  const want = ['product.jpg', 'product2.png', 'model.jpg'].map((f) => sha(readFileSync(fixture(f))));
  assert.deepEqual(req.images.map((i) => i.name), ['image[]', 'image[]', 'image[]']);
  assert.deepEqual(req.images.map((i) => i.sha256), want);
  assert.deepEqual(req.images.map((i) => i.contentType), ['image/jpeg', 'image/png', 'image/jpeg']);
  // 1024x1536 from the fake, cropped to 4:5 without scaling.
  assert.equal(g.resultImages.length, 1);
  assert.deepEqual(await resultSize(g.resultImages[0]), { format: 'png', width: 1024, height: 1280 });
  const models = (await api(srv, 'GET', '/api/models')).data.items;
  const cost = models.find((m) => m.id === 'gpt-image-1').costByQuality.high;
  assert.equal(g.tokensUsed, cost);
  assert.equal(await balance(srv, u.key), before - cost);
  assert.equal(g.retryCount, 0);
});

test('gpt-image-1: a 429 is retried after its Retry-After, then completes', async (t) => {
  const { oa, srv, u } = await setup(t);
  oa.script([{ rateLimit: { retryAfter: 1 } }, {}]);
  const url = await uploadFixture(srv, u.key);
  const g = await run(srv, u.key, createBody(url, { model: 'gpt-image-1', aspectRatio: '16:9' }));
  assert.equal(g.status, 'completed', JSON.stringify(g));
  assert.equal(g.retryCount, 1);
  assert.equal(oa.requests.length, 2);
  const gap = oa.requests[1].time - oa.requests[0].time;
  assert.ok(gap >= 900, `the retry came ${gap} ms after the 429 that said Retry-After: 1`);
  assert.equal(oa.requests[1].fields.size, '1536x1024');
  assert.deepEqual(await resultSize(g.resultImages[0]), { format: 'png', width: 1536, height: 864 });
  assert.deepEqual(oa.violations(), []);
});

test('gpt-image-1: each fault ends where SPEC §7 says, refunded once', async (t) => {
  const { oa, srv, u } = await setup(t, { maxRetries: 1 });
  const url = await uploadFixture(srv, u.key);
  const cases = [
    { script: { status: 500, body: { error: { message: 'boom', type: 'server_error', code: null } } },
      code: 'PROVIDER_TRANSIENT', calls: 2, error: /temporary failure/ },
    // libcurl itself re-sends once on a connection that died unanswered, so
    // two attempts may reach the fake three times.
    { script: { drop: true }, code: 'PROVIDER_TRANSIENT', calls: [2, 3], error: /could not be reached/ },
    { script: { contentPolicy: true }, code: 'PROVIDER_REJECTED', calls: 1, error: /safety system/ },
    { script: { status: 400, body: { error: { message: 'Invalid size', type: 'invalid_request_error', code: 'invalid_value' } } },
      code: 'PROVIDER_REJECTED', calls: 1, error: /Invalid size/ },
    { script: { garbage: true }, code: 'PROVIDER_ERROR', calls: 2, error: /not JSON/ },
    { script: { noImages: true }, code: 'PROVIDER_ERROR', calls: 2, error: /no image/ },
    { script: { badImage: true }, code: 'PROVIDER_ERROR', calls: 2, error: /cannot be read|cannot be used/ },
  ];
  for (const c of cases) {
    oa.reset();
    oa.script(c.script);
    const before = await balance(srv, u.key);
    const g = await run(srv, u.key, createBody(url, { model: 'gpt-image-1' }));
    const what = JSON.stringify(c.script);
    assert.equal(g.status, 'failed', `${what}: ${JSON.stringify(g)}`);
    assert.equal(g.errorCode, c.code, what);
    assert.match(g.error, c.error, what);
    const [lo, hi] = Array.isArray(c.calls) ? c.calls : [c.calls, c.calls];
    assert.equal(g.retryCount, lo - 1, what);
    assert.ok(oa.requests.length >= lo && oa.requests.length <= hi, `${what}: ${oa.requests.length} calls`);
    assert.equal(g.tokensUsed, 0, `${what}: refunded`);
    assert.equal(await balance(srv, u.key), before, `${what}: balance back`);
    assert.ok(!g.error.includes(OPENAI_KEY));
  }
  // Only well-formed requests were sent, whatever the answers were.
  oa.reset();
  oa.script(null);
});

test('gpt-image-1: a cancel aborts the call in flight and refunds once', async (t) => {
  const { oa, srv, u } = await setup(t);
  oa.script({ delayMs: 20000 });
  const url = await uploadFixture(srv, u.key);
  const before = await balance(srv, u.key);
  const r = await api(srv, 'POST', '/api/generate', { key: u.key, body: createBody(url, { model: 'gpt-image-1' }) });
  const id = r.data.generationId;
  await waitGen(srv, u.key, id, { pred: () => oa.requests.length === 1, what: 'the call reaching the fake' });
  const outbound = async () => Number(/^stylestudio_outbound_requests (\d+)/m.exec((await api(srv, 'GET', '/metrics')).text)?.[1]);
  assert.equal(await outbound(), 1, 'the call is in flight');
  const c = await api(srv, 'POST', `/api/generations/${id}/cancel`, { key: u.key });
  assert.equal(c.status, 200, c.text);
  assert.equal(c.data.errorCode, 'CANCELLED');
  assert.equal(await balance(srv, u.key), before);
  // The transfer is dropped at once, not left to run out its 20 s.
  await waitFor(async () => (await outbound()) === 0, { timeout: 5000, what: 'the call to be dropped' });
  // The job lets go of the call: the generation stays cancelled, nothing is retried.
  await new Promise((res) => setTimeout(res, 500));
  const g = await getGen(srv, u.key, id);
  assert.equal(g.status, 'cancelled');
  assert.equal(oa.requests.length, 1);
});

test('flux-kontext-pro: the prediction is created from the catalogue template, polled to the end, its output fetched and fitted', async (t) => {
  const { rep, srv, u } = await setup(t);
  rep.script({ durationMs: 6500 }); // past the create's Prefer: wait=5, so it is polled
  const url = await uploadFixture(srv, u.key);
  const ev = await sse(srv, '/api/events', { key: u.key });
  t.after(() => ev.close());
  const g = await run(srv, u.key, createBody(url, {
    model: 'flux-kontext-pro', aspectRatio: '16:9', parameters: { seed: 1234 } }));
  assert.equal(g.status, 'completed', JSON.stringify(g));
  assert.deepEqual(rep.violations(), []);
  const [pred] = [...rep.predictions.values()];
  assert.equal(pred.model, 'black-forest-labs/flux-kontext-pro');
  assert.equal(pred.input.prompt, g.prompt);
  assert.equal(pred.input.input_image, g.productImages[0], 'the input is our stored copy');
  assert.equal(pred.input.aspect_ratio, '16:9');
  assert.equal(pred.input.seed, 1234);
  assert.ok(pred.polls >= 1, 'followed by polling urls.get');
  const create = rep.requests.find((q) => q.method === 'POST');
  assert.equal(create.headers.authorization, `Bearer ${REPLICATE_TOKEN}`);
  assert.equal(create.headers.prefer, 'wait=5');
  assert.deepEqual(await resultSize(g.resultImages[0]), { format: 'png', width: 1024, height: 576 });
  // Progress from the model's logs reached the client between the phases.
  await ev.until((f) => f.event === 'generation' && f.json?.status === 'completed', 10000);
  const progress = ev.frames.filter((f) => f.event === 'generation').map((f) => f.json)
    .filter((r) => r._id === g._id && r.stage === 'generating').map((r) => r.progress);
  assert.ok(progress.some((p) => p > 20 && p < 90), `progress while generating: ${progress}`);
});

test('idm-vton: a pinned version gets the garment and the person', async (t) => {
  const { rep, srv, u } = await setup(t);
  const garment = await uploadFixture(srv, u.key, 'product.jpg');
  const person = await uploadFixture(srv, u.key, 'model.jpg');
  const g = await run(srv, u.key, createBody(garment, {
    model: 'idm-vton', modelImages: [person], customPrompt: 'a linen shirt', aspectRatio: '3:4' }));
  assert.equal(g.status, 'completed', JSON.stringify(g));
  assert.deepEqual(rep.violations(), []);
  const [pred] = [...rep.predictions.values()];
  assert.match(pred.version, /^0513734a/);
  assert.equal(pred.input.garm_img, g.productImages[0]);
  assert.equal(pred.input.human_img, g.modelImages[0]);
  assert.equal(pred.input.garment_des, 'a linen shirt');
  assert.ok(rep.requests.some((q) => q.method === 'POST' && q.path === '/v1/predictions'));
  assert.deepEqual(await resultSize(g.resultImages[0]), { format: 'png', width: 768, height: 1024 });
});

test('Replicate faults: failed prediction, throttled create, failing polls, broken output', async (t) => {
  const { rep, srv, u } = await setup(t, { maxRetries: 1 });
  const url = await uploadFixture(srv, u.key);
  const body = createBody(url, { model: 'flux-kontext-pro' });

  rep.script({ finalStatus: 'failed', error: 'NSFW content detected' });
  let g = await run(srv, u.key, body);
  assert.equal(g.status, 'failed');
  assert.equal(g.errorCode, 'PROVIDER_REJECTED');
  assert.match(g.error, /NSFW content detected/);
  assert.equal(g.retryCount, 0);
  assert.equal(g.tokensUsed, 0);

  let creates = 0;
  rep.script(() => (creates++ === 0 ? { createStatus: 429, retryAfter: 1 } : {}));
  g = await run(srv, u.key, body);
  assert.equal(g.status, 'completed', JSON.stringify(g));
  assert.equal(g.retryCount, 1);

  // Polls that fail a few times are just polled again.
  rep.script({ getStatus: [500, 500] });
  g = await run(srv, u.key, body);
  assert.equal(g.status, 'completed', JSON.stringify(g));
  assert.equal(g.retryCount, 0);

  rep.script({ outputBroken: 'bytes' });
  g = await run(srv, u.key, body);
  assert.equal(g.status, 'failed');
  assert.equal(g.errorCode, 'PROVIDER_ERROR');
  assert.equal(g.retryCount, 1);
  assert.equal(g.tokensUsed, 0);
  assert.deepEqual(rep.violations(), []);
});

test('Replicate: a cancel reaches the prediction\'s cancel URL and refunds once', async (t) => {
  const { rep, srv, u } = await setup(t);
  rep.script({ durationMs: 30000 });
  const url = await uploadFixture(srv, u.key);
  const before = await balance(srv, u.key);
  const r = await api(srv, 'POST', '/api/generate', { key: u.key, body: createBody(url, { model: 'flux-kontext-pro' }) });
  const id = r.data.generationId;
  await waitGen(srv, u.key, id, { pred: () => rep.predictions.size === 1, what: 'the prediction' });
  const c = await api(srv, 'POST', `/api/generations/${id}/cancel`, { key: u.key });
  assert.equal(c.status, 200, c.text);
  const [pred] = [...rep.predictions.values()];
  await waitGen(srv, u.key, id, { pred: () => pred.cancelledAt, what: 'the cancel reaching Replicate', timeout: 10000 });
  assert.equal(pred.status, 'canceled');
  assert.equal(await balance(srv, u.key), before);
  assert.equal((await getGen(srv, u.key, id)).status, 'cancelled');
});

test('Replicate webhook: a signed completion wakes the waiting job; a bad signature is refused', async (t) => {
  const { rep, srv, u } = await setup(t, { webhookSecret: true });
  // The create waits 5 s (Prefer: wait=5), then polls back off 0.5, 1, 2,
  // 4 s: at 5.5, 6.5, 8.5 and 12.5 s. A prediction done at 9 s is polled
  // 3.5 s later, so a completion within 3 s of it was the webhook's.
  rep.script({ durationMs: 9000 });
  const url = await uploadFixture(srv, u.key);
  const g = await run(srv, u.key, createBody(url, { model: 'flux-kontext-pro' }));
  assert.equal(g.status, 'completed', JSON.stringify(g));
  const [pred] = [...rep.predictions.values()];
  const create = rep.requests.find((q) => q.method === 'POST');
  assert.equal(create.body.webhook, `${srv.baseUrl}/api/providers/replicate/webhook`);
  assert.deepEqual(create.body.webhook_events_filter, ['completed']);
  assert.ok(pred.deliveries.some((d) => d.delivered), JSON.stringify(pred.deliveries));
  // Woken by the webhook: no poll after the long backoff was needed.
  const lag = g.completedAt - Date.parse(pred.completed_at);
  assert.ok(lag < 3000, `completed ${lag} ms after the prediction did`);
  assert.deepEqual(rep.violations(), []);

  const body = JSON.stringify({ id: pred.id, status: 'succeeded' });
  const ts = String(Math.floor(Date.now() / 1000));
  const bad = await fetch(srv.url('/api/providers/replicate/webhook'), {
    method: 'POST', body, headers: { 'content-type': 'application/json', 'webhook-id': 'msg_x', 'webhook-timestamp': ts,
      'webhook-signature': `v1,${createHmac('sha256', 'wrong').update(`msg_x.${ts}.${body}`).digest('base64')}` } });
  assert.equal(bad.status, 401);
  const stale = await fetch(srv.url('/api/providers/replicate/webhook'), { method: 'POST', body, headers: { 'content-type': 'application/json' } });
  assert.equal(stale.status, 401);
});

test('the provider secrets appear in no log, answer or database file', async (t) => {
  const whsec = `whsec_${Buffer.from('replicate-webhook-SECRET-key!').toString('base64')}`;
  const { oa, rep, srv, u } = await setup(t, { webhookSecret: whsec, args: ['--log-level', 'debug'] });
  const answers = [];
  const call = async (method, path, opts) => { const r = await api(srv, method, path, opts); answers.push(r.text); return r; };
  const url = await uploadFixture(srv, u.key);
  oa.script([{ status: 401, body: { error: { message: 'Incorrect API key provided: sk-test-***', type: 'invalid_request_error', code: 'invalid_api_key' } } }, {}]);
  for (const model of ['gpt-image-1', 'gpt-image-1', 'flux-kontext-pro']) {
    const r = await call('POST', '/api/generate', { key: u.key, body: createBody(url, { model }) });
    const g = await waitGen(srv, u.key, r.data.generationId);
    answers.push(JSON.stringify(g));
  }
  await call('GET', '/api/models');
  await call('GET', '/api/generations', { key: u.key });
  await call('GET', '/metrics');
  let stored = '';
  if (PG) {
    for (const table of ['generations', 'events', 'token_transactions', 'users', 'webhooks']) {
      stored += JSON.stringify(await query(srv.dbPath, `SELECT row_to_json(t)::text AS r FROM ${table} t`));
    }
  } else {
    for (const f of readdirSync(srv.dataDir).filter((n) => n.startsWith('stylestudio.db'))) {
      stored += readFileSync(join(srv.dataDir, f), 'latin1');
    }
  }
  await srv.stop();
  const everything = answers.join('\n') + srv.stdout + srv.stderr + stored;
  for (const s of [OPENAI_KEY, REPLICATE_TOKEN, whsec, whsec.slice(6)]) {
    assert.ok(!everything.includes(s), `a secret leaked: ${s.slice(0, 12)}…`);
  }
  assert.ok(rep.requests.length > 0 && oa.requests.length > 0, 'both providers were called');
});

test('maxInFlight bounds the calls at a provider: the rest wait their turn and all complete', async (t) => {
  const catalogue = JSON.parse(readFileSync(join(ROOT, 'models.json'), 'utf8'));
  for (const m of catalogue.models) if (m.id === 'gpt-image-1') m.maxInFlight = 2;
  const dir = mkdtempSync(join(tmpdir(), 'ss-models-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'models.json'), JSON.stringify(catalogue));
  const { oa, srv, u } = await setup(t, { args: ['--models', join(dir, 'models.json'), '--workers', '4'] });
  oa.script({ delayMs: 600 });
  // Our own count of calls in flight (net.c), sampled while they run.
  let peak = 0, sampling = true;
  const sampler = (async () => {
    while (sampling) {
      const m = (await api(srv, 'GET', '/metrics')).text;
      peak = Math.max(peak, Number(/^stylestudio_outbound_requests (\d+)/m.exec(m)?.[1] ?? 0));
      await new Promise((r) => setTimeout(r, 30));
    }
  })();
  const url = await uploadFixture(srv, u.key);
  const ids = [];
  for (let i = 0; i < 6; i++) {
    const r = await api(srv, 'POST', '/api/generate', { key: u.key, body: createBody(url, { model: 'gpt-image-1' }) });
    assert.equal(r.status, 202, r.text);
    ids.push(r.data.generationId);
  }
  for (const id of ids) assert.equal((await waitGen(srv, u.key, id, { timeout: 30000 })).status, 'completed');
  sampling = false;
  await sampler;
  assert.equal(oa.requests.length, 6);
  assert.ok(peak >= 1 && peak <= 2, `${peak} calls in flight at once; maxInFlight is 2`);
  assert.deepEqual(oa.violations(), []);
});
