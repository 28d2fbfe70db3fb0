// Tests of the fake providers themselves (tests/integration/fakes/): that a
// request made the documented way succeeds with real images, that each kind
// of mistake is refused the way the provider refuses it and is recorded as a
// violation, that scripted faults look like the real ones, and that slow
// answers do not hold each other up. Uses only Node's fetch and FormData; no
// stylestudio binary is needed.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { createHmac, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startFakeOpenAI } from './fakes/openai.mjs';
import { startFakeReplicate } from './fakes/replicate.mjs';
import { decodePng, encodePng, colorFor } from './fakes/images.mjs';

const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures');
const productJpg = readFileSync(join(FIXTURES, 'product.jpg'));
const productPng = readFileSync(join(FIXTURES, 'product2.png'));
const notImage = readFileSync(join(FIXTURES, 'not-image.txt'));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------- helpers

// A loopback server for the images the fake Replicate fetches and the
// webhooks it posts. GET /img/*.png → a PNG, /img/*.txt → text, else 404.
let aux, auxUrl;
const hooks = [];
before(async () => {
  aux = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      if (req.method === 'POST' && req.url.startsWith('/hook')) {
        hooks.push({ headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
        res.writeHead(204).end();
      } else if (req.url.endsWith('.png')) res.writeHead(200, { 'content-type': 'image/png' }).end(productPng);
      else if (req.url.endsWith('.jpg')) res.writeHead(200, { 'content-type': 'image/jpeg' }).end(productJpg);
      else if (req.url.endsWith('.txt')) res.writeHead(200, { 'content-type': 'image/png' }).end(notImage);
      else res.writeHead(404).end('nope');
    });
  });
  await new Promise((r) => aux.listen(0, '127.0.0.1', r));
  auxUrl = `http://127.0.0.1:${aux.address().port}`;
});
after(() => { aux.closeAllConnections(); aux.close(); });

// The receiver's side of Standard Webhooks, written from the spec and not
// from the fake: HMAC-SHA256 over "{id}.{timestamp}.{body}" with the
// base64-decoded secret after "whsec_"; any of the space-separated v1 entries.
function verifySignature(secret, headers, body) {
  const key = Buffer.from(secret.slice('whsec_'.length), 'base64');
  const mac = createHmac('sha256', key).update(`${headers['webhook-id']}.${headers['webhook-timestamp']}.${body}`).digest();
  return (headers['webhook-signature'] || '').split(' ').some((entry) => {
    const [version, sig] = entry.split(',', 2);
    const got = Buffer.from(sig || '', 'base64');
    return version === 'v1' && got.length === mac.length && timingSafeEqual(got, mac);
  });
}

test('the webhook verifier passes the Standard Webhooks example vector', () => {
  const headers = { 'webhook-id': 'msg_p5jXN8AQM9LWM0D4loKWxJek', 'webhook-timestamp': '1614265330',
    'webhook-signature': 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=' };
  assert.ok(verifySignature('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', headers, '{"test": 2432232314}'));
  assert.ok(!verifySignature('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', headers, '{"test": 2432232315}'));
});

test('encodePng writes images decodePng reads back, of any size', () => {
  for (const [w, h] of [[1, 1], [3, 7], [1536, 1024]]) {
    const img = decodePng(encodePng(w, h, [1, 2, 3]));
    assert.deepEqual([img.width, img.height], [w, h]);
    assert.deepEqual(img.pixel(w - 1, h - 1), [1, 2, 3]);
  }
});

// ---------------------------------------------------------------- OpenAI

let oa;
const KEY = 'sk-test-0123456789abcdef';
before(async () => { oa = await startFakeOpenAI({ apiKey: KEY }); });
after(() => oa.close());

// The form SPEC §7 sends; `over` replaces fields (undefined drops one).
function editForm(over = {}, images = [['product.jpg', 'image/jpeg', productJpg], ['product2.png', 'image/png', productPng]]) {
  const fd = new FormData();
  const fields = { model: 'gpt-image-1', prompt: 'studio shot of the product', size: '1536x1024', quality: 'low', n: '2', ...over };
  if (fields.model !== undefined) fd.append('model', fields.model);
  for (const [name, type, bytes] of images) fd.append('image[]', new Blob([bytes], { type }), name);
  for (const k of Object.keys(fields)) if (k !== 'model' && fields[k] !== undefined) fd.append(k, fields[k]);
  return fd;
}
const edit = (body, headers = { authorization: `Bearer ${KEY}` }) =>
  fetch(`${oa.url}/v1/images/edits`, { method: 'POST', headers, body });
const last = () => oa.requests[oa.requests.length - 1];

test('openai: a correct edit succeeds with n PNGs of exactly the requested size', async () => {
  oa.script(null);
  const r = await edit(editForm());
  assert.equal(r.status, 200);
  const j = await r.json();
  assert.ok(Number.isInteger(j.created));
  assert.equal(j.data.length, 2);
  j.data.forEach((d, i) => {
    const img = decodePng(Buffer.from(d.b64_json, 'base64'));
    assert.deepEqual([img.width, img.height], [1536, 1024]);
    assert.deepEqual(img.pixel(0, 0), colorFor(i), 'output i is coloured colorFor(i)');
  });
  const rec = last();
  assert.deepEqual(rec.violations, []);
  assert.deepEqual(rec.fields, { model: 'gpt-image-1', prompt: 'studio shot of the product', size: '1536x1024', quality: 'low', n: '2' });
  assert.deepEqual(rec.images.map((i) => [i.filename, i.contentType, i.format, i.bytes]),
    [['product.jpg', 'image/jpeg', 'jpeg', productJpg.length], ['product2.png', 'image/png', 'png', productPng.length]]);
});

test('openai: each kind of malformed request is refused as OpenAI does and recorded', async () => {
  oa.script(null);
  const cases = [
    ['missing prompt', editForm({ prompt: undefined }), 400, 'missing_required_parameter', /no prompt/],
    ['empty prompt', editForm({ prompt: '' }), 400, 'empty_string', /prompt is empty/],
    ['wrong size', editForm({ size: '512x512' }), 400, 'invalid_value', /size "512x512"/],
    ['wrong quality', editForm({ quality: 'ultra' }), 400, 'invalid_value', /quality "ultra"/],
    ['n out of range', editForm({ n: '11' }), 400, 'integer_above_max_value', /outside 1–10/],
    ['n not an integer', editForm({ n: '1.5' }), 400, 'invalid_type', /not an integer/],
    ['wrong model', editForm({ model: 'dall-e-2' }), 400, 'invalid_value', /not gpt-image-1/],
    ['unknown field', editForm({ style: 'vivid' }), 400, 'unknown_parameter', /unknown field "style"/],
    ['no image', editForm({}, []), 400, 'missing_required_parameter', /no image\[\] part/],
    ['non-image bytes', editForm({}, [['x.png', 'image/png', notImage]]), 400, 'invalid_image_file', /its bytes are not an image/],
    ['JPEG declared as PNG', editForm({}, [['x.png', 'image/png', productJpg]]), 400, 'invalid_image_file', /bytes are image\/jpeg/],
    ['text/plain image', editForm({}, [['x.txt', 'text/plain', productPng]]), 400, 'unsupported_file_mimetype', /not image\/png/],
  ];
  for (const [what, body, status, code, violation] of cases) {
    const r = await edit(body);
    assert.equal(r.status, status, what);
    const j = await r.json();
    assert.equal(j.error.code, code, `${what}: ${JSON.stringify(j)}`);
    assert.equal(typeof j.error.message, 'string');
    assert.ok('type' in j.error && 'param' in j.error, what);
    assert.ok(last().violations.some((v) => violation.test(v)), `${what}: ${last().violations.join(' | ')}`);
  }
  const dup = editForm();
  dup.append('prompt', 'a second prompt');
  const r = await edit(dup);
  assert.equal(r.status, 400);
  assert.equal((await r.json()).error.code, 'duplicate_parameter');
  assert.ok(last().violations.some((v) => /"prompt" sent more than once/.test(v)));
});

test('openai: bad auth is a 401 with invalid_api_key; none is a 401 too', async () => {
  oa.script(null);
  let r = await edit(editForm(), { authorization: 'Bearer sk-wrong-key-000000' });
  assert.equal(r.status, 401);
  let j = await r.json();
  assert.equal(j.error.code, 'invalid_api_key');
  assert.ok(!j.error.message.includes('sk-wrong-key-000000'), 'the key is masked in the message');
  assert.ok(last().violations.some((v) => /wrong API key/.test(v)));
  r = await edit(editForm(), {});
  assert.equal(r.status, 401);
  j = await r.json();
  assert.match(j.error.message, /didn't provide an API key/);
  assert.ok(last().violations.includes('no Authorization header'));
});

test('openai: raw multipart framing faults are caught even where parsers are lenient', async () => {
  oa.script(null);
  const b = 'XyZb0undary';
  const part = (name, value, extra = '') => `--${b}\r\nContent-Disposition: form-data; name="${name}"${extra}\r\n\r\n${value}\r\n`;
  const img = Buffer.concat([
    Buffer.from(`--${b}\r\nContent-Disposition: form-data; name="image[]"; filename="p.png"\r\nContent-Type: image/png\r\n\r\n`),
    productPng, Buffer.from('\r\n')]);
  const good = Buffer.concat([Buffer.from(part('model', 'gpt-image-1')), img,
    Buffer.from(part('prompt', 'hi') + part('size', '1024x1024') + part('quality', 'auto') + part('n', '1') + `--${b}--\r\n`)]);
  const send = (body, ct = `multipart/form-data; boundary=${b}`) =>
    edit(body, { authorization: `Bearer ${KEY}`, 'content-type': ct });

  let r = await send(good);
  assert.equal(r.status, 200, JSON.stringify(last().violations));
  assert.deepEqual(last().violations, []);

  // Bare LF line endings in one text part's headers and before its boundary.
  const bareLf = Buffer.concat([Buffer.from(part('model', 'gpt-image-1')), img,
    Buffer.from(`--${b}\nContent-Disposition: form-data; name="prompt"\n\nhi\n` + part('size', '1024x1024') + part('quality', 'auto') + part('n', '1') + `--${b}--\r\n`)]);
  await send(bareLf);
  assert.ok(last().violations.some((v) => /bare LF/.test(v)), last().violations.join(' | '));

  // No closing delimiter.
  r = await send(good.subarray(0, good.length - `--${b}--\r\n`.length));
  assert.equal(r.status, 400);
  assert.ok(last().violations.some((v) => /closing delimiter|not closed/.test(v)), last().violations.join(' | '));

  // A part without Content-Disposition; a boundary the body does not use.
  await send(Buffer.concat([Buffer.from(`--${b}\r\nContent-Type: text/plain\r\n\r\nx\r\n`), good]));
  assert.ok(last().violations.some((v) => /no Content-Disposition/.test(v)));
  r = await send(good, 'multipart/form-data; boundary=other');
  assert.equal(r.status, 400);
  assert.ok(last().violations.some((v) => /does not occur in the body/.test(v)));
  r = await send(good, 'application/json');
  assert.equal(r.status, 400);
  assert.ok(last().violations.some((v) => /not multipart\/form-data/.test(v)));

  // OpenAI would take these, but SPEC §7 does not send them: 200 plus a violation.
  r = await edit(editForm({ size: 'auto', quality: undefined }));
  assert.equal(r.status, 200);
  assert.ok(last().violations.some((v) => /size "auto"/.test(v)) && last().violations.some((v) => /no quality/.test(v)));
});

test('openai: scripted faults look like OpenAI faults', async (t) => {
  t.after(() => oa.script(null));
  oa.script({ rateLimit: { retryAfter: 7 } });
  let r = await edit(editForm());
  assert.equal(r.status, 429);
  assert.equal(r.headers.get('retry-after'), '7');
  assert.equal((await r.json()).error.code, 'rate_limit_exceeded');

  oa.script({ contentPolicy: true });
  r = await edit(editForm());
  assert.equal(r.status, 400);
  const j = await r.json();
  assert.equal(j.error.code, 'moderation_blocked');
  assert.equal(j.error.type, 'image_generation_user_error');

  oa.script({ garbage: true });
  r = await edit(editForm());
  assert.equal(r.status, 200);
  await assert.rejects(r.clone().json());

  oa.script({ noImages: true });
  assert.deepEqual((await (await edit(editForm())).json()).data, []);

  oa.script({ badImage: true });
  const bad = await (await edit(editForm())).json();
  assert.throws(() => decodePng(Buffer.from(bad.data[0].b64_json, 'base64')));

  oa.script({ status: 503 });
  r = await edit(editForm());
  assert.equal(r.status, 503);
  assert.equal((await r.json()).error.type, 'server_error');

  oa.script({ status: 500, body: 'plain text', headers: { 'x-extra': '1' } });
  r = await edit(editForm());
  assert.equal(await r.text(), 'plain text');
  assert.equal(r.headers.get('x-extra'), '1');

  oa.script({ drop: true });
  await assert.rejects(edit(editForm()));

  // An array scripts requests by index; a function sees the record.
  const base = oa.requests.length;
  oa.script((rec, i) => (i === base ? { rateLimit: { retryAfter: 1 } } : { imageSize: [64, 32], images: 1 }));
  assert.equal((await edit(editForm())).status, 429);
  const ok = await (await edit(editForm())).json();
  const img = decodePng(Buffer.from(ok.data[0].b64_json, 'base64'));
  assert.deepEqual([ok.data.length, img.width, img.height], [1, 64, 32]);
});

test('openai: 200 concurrent requests delayed 1 s each are held at the same time, not one after another', async (t) => {
  t.after(() => oa.script(null));
  oa.script({ delayMs: 1000 });
  const first = oa.requests.length;
  const t0 = Date.now();
  const rs = await Promise.all(Array.from({ length: 200 }, () => edit(editForm({ n: '1', size: '1024x1024' }), { authorization: `Bearer ${KEY}` })
    .then((r) => r.json().then((j) => [r.status, j]))));
  console.log(`# 200 concurrent OpenAI edits delayed 1000 ms each: ${Date.now() - t0} ms in all`);
  assert.ok(rs.every(([s, j]) => s === 200 && j.data.length === 1));
  // The most requests held at one moment (arrival → answer intervals): a
  // fake that served them one at a time would show 1. No clock bound.
  const recs = oa.requests.slice(first);
  const edges = recs.flatMap((r) => [[r.time, 1], [r.repliedAt, -1]]).sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let now = 0, peak = 0;
  for (const [, d] of edges) { now += d; peak = Math.max(peak, now); }
  assert.ok(peak >= 20, `at most ${peak} of 200 requests were held at once: delays must not queue behind each other`);
});

// ---------------------------------------------------------------- Replicate

let rep;
const TOKEN = 'r8_test_token_0123456789';
before(async () => { rep = await startFakeReplicate({ token: TOKEN, durationMs: 500, steps: 10 }); });
after(() => rep.close());

const H = { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' };
const post = (path, body, headers = H) => fetch(`${rep.url}${path}`, { method: 'POST', headers, body: JSON.stringify(body) });
const kontext = (input = {}, extra = {}) => post('/v1/models/black-forest-labs/flux-kontext-pro/predictions',
  { input: { prompt: 'restyle as a studio shot', input_image: `${auxUrl}/img/p.png`, aspect_ratio: '4:5', seed: 7, ...input }, ...extra });
const getP = (url) => fetch(url, { headers: { authorization: `Bearer ${TOKEN}` } }).then((r) => r.json());

test('replicate: a prediction runs starting → processing → succeeded with growing logs and PNG outputs', async (t) => {
  t.after(() => rep.script(null));
  rep.script({ outputs: 2, outputShape: 'array', outputSize: [640, 800], durationMs: 600, steps: 6 });
  const r = await kontext();
  assert.equal(r.status, 201);
  let p = await r.json();
  assert.equal(p.status, 'starting');
  assert.equal(r.headers.get('location'), p.urls.get);
  assert.equal(p.urls.get, `${rep.url}/v1/predictions/${p.id}`);
  assert.equal(p.urls.cancel, `${rep.url}/v1/predictions/${p.id}/cancel`);
  assert.equal(p.model, 'black-forest-labs/flux-kontext-pro');
  for (const k of ['id', 'version', 'input', 'logs', 'output', 'error', 'created_at', 'started_at', 'completed_at', 'metrics']) assert.ok(k in p, k);
  const statuses = [p.status];
  const logLengths = [];
  while (!['succeeded', 'failed', 'canceled'].includes(p.status)) {
    await sleep(60);
    p = await getP(p.urls.get);
    if (statuses.at(-1) !== p.status) statuses.push(p.status);
    logLengths.push((p.logs || '').length);
  }
  assert.deepEqual(statuses, ['starting', 'processing', 'succeeded']);
  assert.ok(logLengths.some((n, i) => i > 0 && n > logLengths[i - 1]), 'logs grow while it runs');
  assert.match(p.logs, /100%\|██████████\| 6\/6 \[/);
  assert.match(p.logs, / 50%\|█████     \| 3\/6 \[\d\d:\d\d<\d\d:\d\d, +[\d.]+it\/s\]/);
  assert.ok(p.completed_at && p.started_at && p.metrics.predict_time > 0);
  assert.equal(p.output.length, 2);
  for (const [i, u] of p.output.entries()) {
    assert.ok(u.startsWith(`${rep.url}/files/`));
    const f = await fetch(u);
    assert.equal(f.headers.get('content-type'), 'image/png');
    const img = decodePng(Buffer.from(await f.arrayBuffer()));
    assert.deepEqual([img.width, img.height, ...img.pixel(0, 0)], [640, 800, ...colorFor(i)]);
  }
  const pr = rep.predictions.get(p.id);
  assert.deepEqual(pr.violations, []);
  assert.equal(pr.inputFetches.length, 1);
  assert.equal(pr.inputFetches[0].format, 'png');
  assert.ok(pr.polls > 0);
});

test('replicate: Prefer: wait holds the answer until done; the default output is one URL string', async () => {
  rep.script(null);
  const t0 = Date.now();
  const r = await kontext({}, {});
  const p0 = await r.json();
  assert.equal(p0.status, 'starting', 'without Prefer the answer is immediate');
  const r2 = await fetch(`${rep.url}/v1/models/black-forest-labs/flux-kontext-pro/predictions`, {
    method: 'POST', headers: { ...H, prefer: 'wait=5' }, body: JSON.stringify({ input: { prompt: 'x', input_image: `${auxUrl}/img/p.jpg` } }) });
  const p = await r2.json();
  assert.equal(p.status, 'succeeded');
  assert.equal(typeof p.output, 'string');
  assert.ok(Date.now() - t0 < 4000);
  await post('/v1/models/black-forest-labs/flux-kontext-pro/predictions', { input: { prompt: 'x', input_image: `${auxUrl}/img/p.png` } }, { ...H, prefer: 'wait=99' });
  assert.ok(rep.requests.at(-1).violations.some((v) => /outside 1–60/.test(v)));
});

test('replicate: the try-on model runs by pinned version; the official route refuses it', async () => {
  rep.script(null);
  const { version } = rep.models['cuuupid/idm-vton'];
  const input = { garm_img: `${auxUrl}/img/g.png`, human_img: `${auxUrl}/img/h.jpg`, garment_des: 'red shirt', category: 'upper_body', seed: 1, steps: 30, crop: false };
  let r = await post('/v1/predictions', { version, input }, { ...H, prefer: 'wait=5' });
  assert.equal(r.status, 201);
  const p = await r.json();
  assert.equal(p.status, 'succeeded', JSON.stringify(p));
  assert.equal(p.version, version);
  assert.deepEqual(rep.predictions.get(p.id).violations, []);
  r = await post('/v1/predictions', { version: `cuuupid/idm-vton:${version}`, input });
  assert.equal(r.status, 201, 'owner/name:version is accepted too');
  r = await post('/v1/models/cuuupid/idm-vton/predictions', { input });
  assert.equal(r.status, 404);
  assert.ok(rep.requests.at(-1).violations.some((v) => /community model/.test(v)));
  r = await post('/v1/predictions', { version: 'f'.repeat(64), input });
  assert.equal(r.status, 422);
  assert.equal((await r.json()).title, 'Invalid version or not permitted');
  r = await post('/v1/models/acme/nothing/predictions', { input });
  assert.equal(r.status, 404);
});

test('replicate: a missing required input or a wrong type is a 422 with invalid_fields and a violation', async () => {
  rep.script(null);
  let r = await kontext({ input_image: undefined, seed: 'seven', aspect_ratio: '5:7' });
  assert.equal(r.status, 422);
  const j = await r.json();
  assert.equal(j.title, 'Input validation failed');
  assert.equal(j.status, 422);
  assert.deepEqual(j.invalid_fields.map((f) => f.field).sort(), ['input', 'input.aspect_ratio', 'input.seed']);
  assert.match(j.detail, /input_image is required/);
  const v = rep.requests.at(-1).violations;
  assert.ok(v.some((x) => /input_image is required/.test(x)) && v.some((x) => /input\.seed: Invalid type/.test(x)), v.join(' | '));
  r = await post('/v1/models/black-forest-labs/flux-kontext-pro/predictions', { inptu: {} });
  assert.equal(r.status, 422);
  assert.deepEqual((await r.json()).invalid_fields.map((f) => f.type).sort(), ['additional_property_not_allowed', 'required']);
  r = await kontext({ guidance: 3 });
  assert.equal(r.status, 201, 'inputs outside the schema are ignored, as Replicate does ...');
  assert.ok(rep.requests.at(-1).violations.some((x) => /"guidance" is not in the schema/.test(x)), '... but recorded');
});

test('replicate: auth is Bearer (legacy Token accepted); otherwise 401', async () => {
  rep.script(null);
  let r = await kontext({}, {});
  assert.equal(rep.requests.at(-1).authScheme, 'Bearer');
  r = await post('/v1/models/black-forest-labs/flux-kontext-pro/predictions', { input: { prompt: 'x', input_image: `${auxUrl}/img/p.png` } },
    { ...H, authorization: `Token ${TOKEN}` });
  assert.equal(r.status, 201);
  assert.equal(rep.requests.at(-1).authScheme, 'Token');
  r = await post('/v1/predictions', { version: 'x', input: {} }, { ...H, authorization: 'Bearer nope' });
  assert.equal(r.status, 401);
  assert.deepEqual(await r.json(), { title: 'Unauthenticated', detail: 'You did not pass a valid authentication token', status: 401 });
  r = await post('/v1/predictions', { version: 'x', input: {} }, { 'content-type': 'application/json' });
  assert.equal(r.status, 401);
  assert.ok(rep.requests.at(-1).violations.includes('no Authorization header'));
});

test('replicate: cancel reaches the fake and cancels at once; the completed webhook is signed', async (t) => {
  t.after(() => rep.script(null));
  rep.script({ durationMs: 5000 });
  hooks.length = 0;
  const r = await kontext({}, { webhook: `${auxUrl}/hook/1`, webhook_events_filter: ['completed'] });
  const p = await r.json();
  await sleep(150);
  const c = await fetch(p.urls.cancel, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } });
  assert.equal(c.status, 200);
  assert.equal((await c.json()).status, 'canceled');
  const pr = rep.predictions.get(p.id);
  assert.ok(pr.cancelledAt > 0);
  assert.equal(pr.cancelCalls, 1);
  assert.equal((await getP(p.urls.get)).status, 'canceled');
  for (let i = 0; i < 50 && !hooks.length; i++) await sleep(20);
  assert.equal(hooks.length, 1, 'only the completed event, as filtered');
  const h = hooks[0];
  assert.equal(JSON.parse(h.body).status, 'canceled');
  assert.match(h.headers['webhook-id'], /^msg_/);
  assert.ok(Math.abs(+h.headers['webhook-timestamp'] - Date.now() / 1000) < 5);
  assert.ok(verifySignature(rep.webhookSecret, h.headers, h.body), 'the signature verifies with the secret');
  assert.ok(!verifySignature(`whsec_${Buffer.alloc(24, 1).toString('base64')}`, h.headers, h.body));
});

test('replicate: a successful prediction posts its final state to the webhook; no filter also sends output', async () => {
  rep.script(null);
  hooks.length = 0;
  const p = await (await kontext({}, { webhook: `${auxUrl}/hook/2` })).json();
  await rep.settled(p.id);
  for (let i = 0; i < 50 && hooks.length < 2; i++) await sleep(20);
  assert.deepEqual(rep.predictions.get(p.id).deliveries.map((d) => [d.event, d.delivered]), [['output', true], ['completed', true]]);
  const final = JSON.parse(hooks.at(-1).body);
  assert.equal(final.status, 'succeeded');
  assert.equal(typeof final.output, 'string');
  assert.ok(hooks.every((h) => verifySignature(rep.webhookSecret, h.headers, h.body)));
});

test('replicate: scripted create errors, failing polls, failures and broken outputs', async (t) => {
  t.after(() => rep.script(null));
  rep.script({ createStatus: 429, retryAfter: 3 });
  let r = await kontext();
  assert.equal(r.status, 429);
  assert.equal(r.headers.get('retry-after'), '3');
  assert.match((await r.json()).detail, /throttled/);

  rep.script({ getStatus: [500, 500] });
  const p = await (await kontext()).json();
  const polls = [];
  for (let i = 0; i < 3; i++) polls.push((await fetch(p.urls.get, { headers: { authorization: `Bearer ${TOKEN}` } })).status);
  assert.deepEqual(polls, [500, 500, 200]);

  rep.script({ finalStatus: 'failed', error: 'NSFW content detected', durationMs: 200 });
  let q = await (await kontext({}, {})).json();
  await rep.settled(q.id);
  q = await getP(q.urls.get);
  assert.deepEqual([q.status, q.error, q.output], ['failed', 'NSFW content detected', null]);

  rep.script({ outputBroken: 'bytes', durationMs: 100 });
  q = await (await kontext()).json();
  await rep.settled(q.id);
  q = await getP(q.urls.get);
  const bytes = Buffer.from(await (await fetch(q.output)).arrayBuffer());
  assert.throws(() => decodePng(bytes));
  rep.script({ outputBroken: true, durationMs: 100 });
  q = await (await kontext()).json();
  await rep.settled(q.id);
  assert.equal((await fetch((await getP(q.urls.get)).output)).status, 404);

  rep.script({ drop: true });
  await assert.rejects(kontext());
  rep.script({ garbage: true });
  await assert.rejects((await kontext()).json());

  // By index: the first create of this batch is refused, the next succeeds.
  rep.script((input, i) => (i % 2 === 0 ? { createStatus: 500 } : { durationMs: 50 }));
  const s1 = (await kontext()).status, s2 = (await kontext()).status;
  assert.deepEqual([s1, s2].sort(), [201, 500]);
});

test('replicate: an input URL that cannot be fetched or is not an image fails the prediction and is a violation', async () => {
  rep.script(null);
  for (const path of ['/img/missing', '/img/text.txt']) {
    let p = await (await kontext({ input_image: `${auxUrl}${path}` })).json();
    await rep.settled(p.id);
    p = await getP(p.urls.get);
    assert.equal(p.status, 'failed');
    assert.match(p.error, /input_image/);
    assert.ok(rep.predictions.get(p.id).violations.some((v) => /could not be fetched/.test(v)), path);
  }
  const data = `data:image/png;base64,${productPng.toString('base64')}`;
  let p = await (await kontext({ input_image: data })).json();
  await rep.settled(p.id);
  assert.equal(rep.predictions.get(p.id).status, 'succeeded', 'data: URLs are read too');
});
