// The generation lifecycle on a healthy server: two-step and legacy flows to
// real result images, Prefer: wait, idempotency, cancel, retry, delete,
// listing, and isolation between users.
import { before, after } from 'node:test';
import {
  test, assert, startServer, api, assertOk, assertError, createUser, uploadFixture, imageSize,
  createBody, create, start, getGen, waitGen, balance, countGenerations, transactions, RATIOS, sse,
} from './harness.mjs';

let srv;
let seedUser;
let productUrl, product2Url, modelUrl;
before(async () => {
  srv = await startServer();
  seedUser = await createUser(srv.dataDir, { tokens: 0 });
  productUrl = await uploadFixture(srv, seedUser.key, 'product.jpg');
  product2Url = await uploadFixture(srv, seedUser.key, 'product2.png', { mode: 'multipart' });
  modelUrl = await uploadFixture(srv, seedUser.key, 'model.jpg');
});
after(() => srv?.stop());

const RECORD_FIELDS = ['_id', 'userId', 'status', 'productImages', 'modelImages', 'resultImages', 'prompt', 'parameters',
  'tokensUsed', 'retryCount', 'createdAt', 'progress', 'stage', 'priority'];

const ALLOWED_FIELDS = new Set([...RECORD_FIELDS, 'customPrompt', 'startedAt', 'completedAt', 'processingTime', 'error',
  'queuePosition', 'batchId', 'retryOf', 'errorCode']);

function assertRecordShape(g) {
  for (const f of RECORD_FIELDS) assert.ok(f in g, `record lacks ${f}: ${JSON.stringify(g).slice(0, 400)}`);
  for (const f of ['model', 'style', 'quality', 'aspectRatio', 'guidance_scale', 'num_inference_steps', 'strength', 'seed']) {
    assert.ok(f in g.parameters, `parameters lacks ${f}`);
  }
  assert.match(g._id, /^gen_[0-9A-HJKMNP-TV-Z]{26}$/, 'generation ids: gen_ + 26 Crockford base32 chars');
  const extra = Object.keys(g).filter((k) => !ALLOWED_FIELDS.has(k));
  assert.deepEqual(extra, [], `GET returns exactly the spec'd record shape; unexpected fields: ${extra.join(', ')}`);
  assert.deepEqual(Object.keys(g.parameters).sort(), ['aspectRatio', 'guidance_scale', 'model', 'num_inference_steps', 'quality', 'seed', 'strength', 'style']);
  assert.ok(g.progress >= 0 && g.progress <= 100);
}

// Fetches every result image; checks headers, format and pixel ratio.
async function checkResults(g, ratio) {
  assert.ok(g.resultImages.length >= 1, 'a completed generation has result images');
  const sizes = [];
  for (const url of g.resultImages) {
    assert.ok(url.startsWith(`${srv.baseUrl}/media/`), `result URL ${url} must be under ${srv.baseUrl}/media/`);
    const r = await fetch(url);
    assert.equal(r.status, 200, `GET ${url}`);
    const buf = Buffer.from(await r.arrayBuffer());
    const info = imageSize(buf);
    assert.ok(info && ['jpeg', 'png'].includes(info.format), `result ${url} must be JPEG or PNG`);
    assert.equal(r.headers.get('content-type'), `image/${info.format}`, `Content-Type of ${url} must match its bytes`);
    assert.equal(Number(r.headers.get('content-length') ?? buf.length), buf.length);
    const etag = r.headers.get('etag');
    assert.ok(etag, `result ${url} has no ETag`);
    assert.match(r.headers.get('cache-control') || '', /max-age=(\d{5,})|immutable/, `long-lived Cache-Control on ${url}`);
    const again = await fetch(url, { headers: { 'if-none-match': etag } });
    assert.equal(again.status, 304, 'If-None-Match with the ETag → 304 Not Modified');
    await again.arrayBuffer();
    const want = RATIOS[ratio];
    const got = info.width / info.height;
    assert.ok(Math.abs(got - want) / want < 0.02, `result ${info.width}×${info.height} (${got.toFixed(3)}) does not match aspect ratio ${ratio} (${want.toFixed(3)})`);
    assert.ok(info.width >= 256 && info.height >= 256, `result too small: ${info.width}×${info.height}`);
    sizes.push(info);
  }
  return sizes;
}

test('two-step flow: create (pending, charged) → generate (processing) → completed with real images at the right aspect ratio', async () => {
  const u = await createUser(srv.dataDir, { tokens: 5 });
  const t0 = Date.now();
  const c = await create(srv, u.key, createBody(productUrl, {
    modelImages: [modelUrl], aspectRatio: '16:9', style: 'minimal', customPrompt: '  on a marble table  ',
    parameters: { guidance_scale: 9, num_inference_steps: 30, strength: 0.5, seed: 1234 },
  }));
  assert.match(c.generationId, /^gen_/);
  assert.equal(c.estimatedCost, 1);
  assert.equal(c.status, 'pending');
  assert.equal(c.message, 'Generation record created successfully');
  assert.equal(typeof c.prompt, 'string');
  assert.ok(c.prompt.length > 20, 'the optimized prompt is a real sentence');
  assert.match(c.prompt, /marble table/, 'the custom prompt is part of the prompt');
  assert.equal(await balance(srv, u.key), 4, 'charged at create');

  const p = await getGen(srv, u.key, c.generationId);
  assertRecordShape(p);
  assert.equal(p.status, 'pending');
  assert.equal(p.userId, u.userId);
  assert.equal(p.tokensUsed, 1);
  assert.equal(p.retryCount, 0);
  assert.equal(p.prompt, c.prompt);
  assert.equal(p.customPrompt, 'on a marble table', 'customPrompt is trimmed');
  assert.deepEqual(p.productImages, [productUrl]);
  assert.deepEqual(p.modelImages, [modelUrl]);
  assert.deepEqual(p.resultImages, []);
  assert.deepEqual(p.parameters, { model: 'local-studio', style: 'minimal', quality: 'auto', aspectRatio: '16:9', guidance_scale: 9, num_inference_steps: 30, strength: 0.5, seed: 1234 });
  assert.ok(p.createdAt >= t0 - 1000 && p.createdAt <= Date.now() + 1000, 'createdAt in ms');
  assert.ok(!('completedAt' in p) || p.completedAt == null);

  const s = await start(srv, u.key, c.generationId);
  assert.deepEqual(s, { generationId: c.generationId, resultImages: [], status: 'processing', message: 'Generation processing started successfully' });
  const again = await api(srv, 'POST', '/api/generate', { key: u.key, body: { generationId: c.generationId } });
  assertError(again, 400, 'INVALID_GENERATION_STATUS', 'generate twice');

  const g = await waitGen(srv, u.key, c.generationId);
  assert.equal(g.status, 'completed', `ended ${g.status}: ${g.error}`);
  assertRecordShape(g);
  assert.equal(g.progress, 100);
  assert.equal(g.stage, 'completed');
  assert.equal(g.tokensUsed, 1);
  assert.ok(!g.error, `completed generation carries no error (got ${g.error})`);
  assert.ok(g.startedAt >= g.createdAt);
  assert.ok(g.completedAt >= g.startedAt);
  assert.equal(g.processingTime, g.completedAt - g.startedAt, 'processingTime = completedAt - startedAt');
  assert.ok(!('queuePosition' in g) || g.queuePosition == null);
  await checkResults(g, '16:9');
  assert.equal(await balance(srv, u.key), 4, 'a completed generation keeps its charge, no refund');

  const me = assertOk(await api(srv, 'GET', '/api/me', { key: u.key }), 200);
  assert.equal(me.stats.totalGenerations, 1);
  assert.equal(me.stats.thisMonth, 1);
  assert.equal(me.stats.completed, 1);
  assert.equal(me.stats.successRate, 1);
  const tx = await transactions(srv, u.key);
  const charges = tx.filter((t) => t.generationId === c.generationId);
  assert.deepEqual(charges.map((t) => [t.kind, t.amount]), [['charge', -1]]);
});

test('aspect ratios: 1:1, 9:16 and 4:5 results have matching pixel sizes; high quality renders larger', async () => {
  const u = await createUser(srv.dataDir, { tokens: 10 });
  const ids = [];
  for (const [ratio, quality] of [['1:1', 'auto'], ['9:16', 'low'], ['4:5', 'auto'], ['4:5', 'high']]) {
    const c = await create(srv, u.key, createBody(product2Url, { aspectRatio: ratio, quality, parameters: { seed: 7 } }));
    await start(srv, u.key, c.generationId);
    ids.push([c.generationId, ratio]);
  }
  const sizes = [];
  for (const [id, ratio] of ids) {
    const g = await waitGen(srv, u.key, id);
    assert.equal(g.status, 'completed', `${ratio}: ${g.error}`);
    sizes.push((await checkResults(g, ratio))[0]);
  }
  assert.ok(sizes[3].width * sizes[3].height > sizes[2].width * sizes[2].height,
    `high quality must render larger than auto (${sizes[3].width}×${sizes[3].height} vs ${sizes[2].width}×${sizes[2].height})`);
});

test('transparent cut-out: background "transparent" gives PNG/WebP with alpha; output_format is honoured', async () => {
  const u = await createUser(srv.dataDir, { tokens: 10 });
  const cases = [
    [{ background: 'transparent' }, 'png', true],
    [{ background: 'transparent', output_format: 'webp' }, 'webp', true],
    [{ output_format: 'png' }, 'png', false],
  ];
  for (const [parameters, format, alpha] of cases) {
    const c = await create(srv, u.key, createBody(productUrl, { aspectRatio: '4:5', quality: 'low', parameters }));
    await start(srv, u.key, c.generationId);
    const g = await waitGen(srv, u.key, c.generationId);
    assert.equal(g.status, 'completed', `${JSON.stringify(parameters)}: ${g.error}`);
    for (const [k, v] of Object.entries(parameters)) assert.equal(g.parameters[k], v, `the record keeps parameters.${k}`);
    for (const url of g.resultImages) {
      const r = await fetch(url);
      const buf = Buffer.from(await r.arrayBuffer());
      const info = imageSize(buf);
      assert.equal(info?.format, format, `${JSON.stringify(parameters)} → ${format}`);
      assert.equal(r.headers.get('content-type'), `image/${format}`);
      assert.ok(Math.abs(info.width / info.height - 0.8) < 0.01, `4:5 (${info.width}×${info.height})`);
      // PNG: IHDR colour type 6 is RGBA, 2 RGB. WebP: the VP8X flags' alpha bit.
      const hasAlpha = format === 'png' ? buf[25] === 6 : buf.toString('latin1', 12, 16) === 'VP8X' && (buf[20] & 0x10) !== 0;
      assert.equal(hasAlpha, alpha, `${JSON.stringify(parameters)}: alpha ${hasAlpha}`);
    }
  }
  const bad = await api(srv, 'POST', '/api/generation/create', {
    key: u.key, body: createBody(productUrl, { parameters: { background: 'transparent', output_format: 'jpeg' } }),
  });
  assertError(bad, 400, 'VALIDATION_ERROR');
});

test('deterministic: same inputs and seed give the same image; another seed gives a different one', async () => {
  const u = await createUser(srv.dataDir, { tokens: 10 });
  const run = async (seed) => {
    const c = await create(srv, u.key, createBody(productUrl, { parameters: { seed }, style: 'artistic' }));
    await start(srv, u.key, c.generationId);
    const g = await waitGen(srv, u.key, c.generationId);
    assert.equal(g.status, 'completed');
    return Buffer.from(await (await fetch(g.resultImages[0])).arrayBuffer());
  };
  const a = await run(42), b = await run(42), c = await run(43);
  assert.ok(a.equals(b), 'same input and seed must give identical bytes');
  assert.ok(!a.equals(c), 'a different seed must change the image');
});

test('legacy one-step POST /api/generate with a create body → 202 processing, then completed', async () => {
  const u = await createUser(srv.dataDir, { tokens: 3 });
  const r = await api(srv, 'POST', '/api/generate', { key: u.key, body: createBody(productUrl, { aspectRatio: '3:2' }) });
  const d = assertOk(r, 202, 'legacy generate');
  assert.match(d.generationId, /^gen_/);
  assert.equal(d.estimatedCost, 1);
  assert.equal(d.status, 'processing');
  assert.deepEqual(d.resultImages, []);
  assert.equal(typeof d.prompt, 'string');
  assert.equal(await balance(srv, u.key), 2);
  const g = await waitGen(srv, u.key, d.generationId);
  assert.equal(g.status, 'completed', g.error);
  await checkResults(g, '3:2');
});

test('Prefer: wait=N holds the answer until terminal: 200 with the full record; Preference-Applied set', async () => {
  const u = await createUser(srv.dataDir, { tokens: 3 });
  // Legacy form.
  const r = await api(srv, 'POST', '/api/generate', { key: u.key, body: createBody(productUrl), headers: { prefer: 'wait=30' } });
  const d = assertOk(r, 200, 'legacy generate with Prefer: wait=30');
  assert.equal(d.status, 'completed', `Prefer: wait must return the terminal record, got ${d.status}`);
  assert.equal(d.generationId, d._id);
  const { generationId: _gid, ...record } = d; // the full record plus generationId
  assertRecordShape(record);
  assert.ok(d.resultImages.length >= 1);
  assert.match(r.headers.get('preference-applied') || '', /wait=30/);
  // Two-step form.
  const c = await create(srv, u.key, createBody(productUrl));
  const r2 = await api(srv, 'POST', '/api/generate', { key: u.key, body: { generationId: c.generationId }, headers: { prefer: 'wait=30' } });
  const d2 = assertOk(r2, 200, 'two-step generate with Prefer: wait=30');
  assert.equal(d2.status, 'completed');
  assert.equal(d2.generationId, c.generationId);
  assert.deepEqual(d2.resultImages, (await getGen(srv, u.key, c.generationId)).resultImages);
  // wait over the 60 s cap is not an error (RFC 7240: preferences may be ignored or capped).
  const c3 = await create(srv, u.key, createBody(productUrl));
  const r3 = await api(srv, 'POST', '/api/generate', { key: u.key, body: { generationId: c3.generationId }, headers: { prefer: 'wait=600' } });
  assert.ok([200, 202].includes(r3.status), `Prefer: wait=600 → ${r3.status} ${r3.text.slice(0, 300)}`);
});

test('Idempotency-Key: a replay returns the same body and charges once; another body with the key → 409', async () => {
  const u = await createUser(srv.dataDir, { tokens: 5 });
  const key = `idem-${Date.now()}`;
  const body = createBody(productUrl, { parameters: { seed: 99 } });
  const r1 = await api(srv, 'POST', '/api/generation/create', { key: u.key, body, headers: { 'idempotency-key': key } });
  const d1 = assertOk(r1, 201, 'first create');
  const r2 = await api(srv, 'POST', '/api/generation/create', { key: u.key, body, headers: { 'idempotency-key': key } });
  assert.equal(r2.status, 201, 'a replay answers like the first response');
  assert.deepEqual(r2.json, r1.json, 'a replay returns the first body');
  // Same JSON, different key order and whitespace: still the same request.
  const reordered = JSON.stringify(Object.fromEntries(Object.entries(body).reverse()), null, 2);
  const r3 = await api(srv, 'POST', '/api/generation/create', { key: u.key, rawBody: reordered, headers: { 'idempotency-key': key, 'content-type': 'application/json' } });
  assert.equal(r3.status, 201);
  assert.equal(r3.json?.data?.generationId, d1.generationId, 'same JSON with another key order is a replay');
  assert.equal(await balance(srv, u.key), 4, 'charged exactly once');
  assert.equal(await countGenerations(srv, u.key), 1);

  const r4 = await api(srv, 'POST', '/api/generation/create', { key: u.key, body: { ...body, style: 'artistic' }, headers: { 'idempotency-key': key } });
  assertError(r4, 409, 'IDEMPOTENCY_KEY_REUSED', 'same key, different body');
  assert.equal(await balance(srv, u.key), 4);

  // Keys are at most 255 characters.
  const long = await api(srv, 'POST', '/api/generation/create', { key: u.key, body, headers: { 'idempotency-key': 'k'.repeat(256) } });
  assertError(long, 400, 'VALIDATION_ERROR', 'Idempotency-Key of 256 characters');
  assert.equal(await balance(srv, u.key), 4);

  // Keys are per user: another user may use the same key.
  const other = await createUser(srv.dataDir, { tokens: 2 });
  const o = await api(srv, 'POST', '/api/generation/create', { key: other.key, body, headers: { 'idempotency-key': key } });
  const od = assertOk(o, 201, 'same key, other user');
  assert.notEqual(od.generationId, d1.generationId);
  assert.equal(await balance(srv, other.key), 1);

  // Concurrent replays of a fresh key: one generation, one charge.
  const k2 = `idem-race-${Date.now()}`;
  const rs = await Promise.all(Array.from({ length: 8 }, () => api(srv, 'POST', '/api/generation/create', { key: u.key, body, headers: { 'idempotency-key': k2 } })));
  const ids = new Set(rs.map((r) => r.json?.data?.generationId));
  assert.deepEqual(rs.map((r) => r.status), Array(8).fill(201), `concurrent replays: ${rs.map((r) => r.status + ' ' + (r.json?.code || ''))}`);
  assert.equal(ids.size, 1, 'concurrent requests with one key create one generation');
  assert.equal(await balance(srv, u.key), 3);
  assert.equal(await countGenerations(srv, u.key), 2);
});

test('cancel a pending generation: cancelled, refunded once; cancel again → INVALID_GENERATION_STATUS; generate → INVALID_GENERATION_STATUS', async () => {
  const u = await createUser(srv.dataDir, { tokens: 3 });
  const c = await create(srv, u.key, createBody(productUrl, { quality: 'high' }));
  assert.equal(await balance(srv, u.key), 1);
  const r = await api(srv, 'POST', `/api/generations/${c.generationId}/cancel`, { key: u.key });
  const g = assertOk(r, 200, 'cancel');
  assertRecordShape(g);
  assert.equal(g.status, 'cancelled');
  assert.equal(g.errorCode, 'CANCELLED');
  assert.equal(g.tokensUsed, 0);
  assert.equal(g.stage, 'cancelled');
  assert.equal(await balance(srv, u.key), 3, 'refunded');
  assertError(await api(srv, 'POST', `/api/generations/${c.generationId}/cancel`, { key: u.key }), 400, 'INVALID_GENERATION_STATUS', 'cancel twice');
  assertError(await api(srv, 'POST', '/api/generate', { key: u.key, body: { generationId: c.generationId } }), 400, 'INVALID_GENERATION_STATUS', 'generate a cancelled one');
  assert.equal(await balance(srv, u.key), 3, 'refunded exactly once');
  const me = assertOk(await api(srv, 'GET', '/api/me', { key: u.key }), 200);
  assert.equal(me.user.totalTokensUsed, 0, 'totalTokensUsed counts charges minus refunds');
  const tx = (await transactions(srv, u.key)).filter((t) => t.generationId === c.generationId);
  assert.deepEqual(tx.map((t) => [t.kind, t.amount]), [['refund', 2], ['charge', -2]]);
  // Concurrent cancels: one wins.
  const c2 = await create(srv, u.key, createBody(productUrl));
  const rs = await Promise.all(Array.from({ length: 6 }, () => api(srv, 'POST', `/api/generations/${c2.generationId}/cancel`, { key: u.key })));
  assert.equal(rs.filter((x) => x.status === 200).length, 1, `exactly one concurrent cancel succeeds: ${rs.map((x) => x.status)}`);
  for (const x of rs.filter((y) => y.status !== 200)) assertError(x, 400, 'INVALID_GENERATION_STATUS');
  assert.equal(await balance(srv, u.key), 3);
});

test('cancel/retry of a completed generation → INVALID_GENERATION_STATUS; retry of a cancelled one → new charged generation with retryOf', async () => {
  const u = await createUser(srv.dataDir, { tokens: 5 });
  const done = assertOk(await api(srv, 'POST', '/api/generate', { key: u.key, body: createBody(productUrl), headers: { prefer: 'wait=30' } }), 200);
  assert.equal(done.status, 'completed');
  assertError(await api(srv, 'POST', `/api/generations/${done._id}/cancel`, { key: u.key }), 400, 'INVALID_GENERATION_STATUS', 'cancel completed');
  assertError(await api(srv, 'POST', `/api/generations/${done._id}/retry`, { key: u.key }), 400, 'INVALID_GENERATION_STATUS', 'retry completed');
  const pend = await create(srv, u.key, createBody(product2Url, { aspectRatio: '4:3', customPrompt: 'keep me', parameters: { seed: 5 } }));
  assertError(await api(srv, 'POST', `/api/generations/${pend.generationId}/retry`, { key: u.key }), 400, 'INVALID_GENERATION_STATUS', 'retry pending');
  assertOk(await api(srv, 'POST', `/api/generations/${pend.generationId}/cancel`, { key: u.key }), 200);
  assert.equal(await balance(srv, u.key), 4);

  const r = await api(srv, 'POST', `/api/generations/${pend.generationId}/retry`, { key: u.key });
  const d = assertOk(r, 201, 'retry cancelled');
  assert.notEqual(d.generationId, pend.generationId);
  assert.equal(d.status, 'pending');
  assert.equal(d.estimatedCost, 1);
  assert.equal(d.message, 'Generation record created successfully');
  assert.equal(await balance(srv, u.key), 3, 'the retry is charged');
  const n = await getGen(srv, u.key, d.generationId);
  assert.equal(n.retryOf, pend.generationId);
  const old = await getGen(srv, u.key, pend.generationId);
  for (const f of ['productImages', 'modelImages', 'customPrompt', 'parameters', 'prompt']) assert.deepEqual(n[f], old[f], `retry keeps ${f}`);
  assert.equal(old.status, 'cancelled', 'the original stays cancelled');
});

test('delete: terminal generation and its result files go (404 after); ledger rows stay; non-terminal refused', async () => {
  const u = await createUser(srv.dataDir, { tokens: 5 });
  const done = assertOk(await api(srv, 'POST', '/api/generate', { key: u.key, body: createBody(productUrl), headers: { prefer: 'wait=30' } }), 200);
  assert.equal(done.status, 'completed');
  const files = done.resultImages;
  assert.ok(files.length > 0);
  for (const f of files) assert.equal((await fetch(f)).status, 200);

  const pend = await create(srv, u.key, createBody(productUrl));
  assertError(await api(srv, 'DELETE', `/api/generations/${pend.generationId}`, { key: u.key }), 400, 'INVALID_GENERATION_STATUS', 'delete pending');
  assert.equal((await getGen(srv, u.key, pend.generationId)).status, 'pending');

  const del = await api(srv, 'DELETE', `/api/generations/${done._id}`, { key: u.key });
  assert.equal(del.status, 200, `DELETE → ${del.status} ${del.text}`);
  assert.equal(del.json.success, true);
  assertError(await api(srv, 'GET', `/api/generations/${done._id}`, { key: u.key }), 404, 'GENERATION_NOT_FOUND', 'GET after delete');
  assertError(await api(srv, 'DELETE', `/api/generations/${done._id}`, { key: u.key }), 404, 'GENERATION_NOT_FOUND', 'DELETE twice');
  for (const f of files) {
    const r = await fetch(f);
    await r.arrayBuffer();
    assert.equal(r.status, 404, `result file ${f} must be gone after delete`);
  }
  const ids = [];
  let cursor = null;
  do {
    const d = assertOk(await api(srv, 'GET', `/api/generations?limit=100${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`, { key: u.key }), 200);
    ids.push(...d.items.map((i) => i._id));
    cursor = d.nextCursor;
  } while (cursor);
  assert.ok(!ids.includes(done._id), 'deleted generation must leave the list');
  const tx = await transactions(srv, u.key);
  assert.ok(tx.some((t) => t.generationId === done._id && t.kind === 'charge'), 'ledger rows stay after delete');
  assert.equal(await balance(srv, u.key), 3, 'delete refunds nothing');
  // Upload inputs are not the generation's files: still there.
  assert.equal((await fetch(productUrl)).status, 200, 'deleting a generation must not delete its input uploads');
});

test('list: newest first, cursor pagination without gaps or repeats, status filter, bad parameters → VALIDATION_ERROR', async () => {
  const u = await createUser(srv.dataDir, { tokens: 10 });
  const ids = [];
  for (let i = 0; i < 7; i++) ids.push((await create(srv, u.key, createBody(productUrl))).generationId);
  for (const id of [ids[1], ids[4]]) assertOk(await api(srv, 'POST', `/api/generations/${id}/cancel`, { key: u.key }), 200);

  const seen = [];
  let cursor = null, pages = 0;
  do {
    const d = assertOk(await api(srv, 'GET', `/api/generations?limit=3${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`, { key: u.key }), 200);
    assert.ok(d.items.length <= 3);
    for (const g of d.items) assertRecordShape(g);
    seen.push(...d.items.map((g) => g._id));
    cursor = d.nextCursor;
    pages++;
  } while (cursor && pages < 10);
  assert.equal(pages, 3, '7 items at limit 3 are 3 pages');
  assert.deepEqual(seen, [...ids].reverse(), 'newest first, every item once');
  assert.deepEqual([...ids].sort(), ids, 'ids are time-sortable: later creates sort after earlier ones');

  const def = assertOk(await api(srv, 'GET', '/api/generations', { key: u.key }), 200);
  assert.equal(def.items.length, 7);
  assert.equal(def.nextCursor, null);

  const cancelled = assertOk(await api(srv, 'GET', '/api/generations?status=cancelled', { key: u.key }), 200);
  assert.deepEqual(cancelled.items.map((g) => g._id), [ids[4], ids[1]]);
  assert.ok(cancelled.items.every((g) => g.status === 'cancelled'));
  const pending = assertOk(await api(srv, 'GET', '/api/generations?status=pending&limit=2', { key: u.key }), 200);
  assert.deepEqual(pending.items.map((g) => g._id), [ids[6], ids[5]]);
  const pending2 = assertOk(await api(srv, 'GET', `/api/generations?status=pending&limit=2&cursor=${encodeURIComponent(pending.nextCursor)}`, { key: u.key }), 200);
  assert.deepEqual(pending2.items.map((g) => g._id), [ids[3], ids[2]]);
  assert.equal(assertOk(await api(srv, 'GET', '/api/generations?status=completed', { key: u.key }), 200).items.length, 0);

  for (const q of ['limit=0', 'limit=101', 'limit=-1', 'limit=ten', 'status=done', 'cursor=%7Bbogus%7D']) {
    assertError(await api(srv, 'GET', `/api/generations?${q}`, { key: u.key }), 400, 'VALIDATION_ERROR', `GET /api/generations?${q}`);
  }
  // Other users' generations never show up.
  const other = await createUser(srv.dataDir, { tokens: 0 });
  assert.equal(assertOk(await api(srv, 'GET', '/api/generations', { key: other.key }), 200).items.length, 0);
});

test("a foreign user gets UNAUTHORIZED on get/generate/cancel/retry/delete/events of someone else's generation; nothing changes", async () => {
  const owner = await createUser(srv.dataDir, { tokens: 5 });
  const intruder = await createUser(srv.dataDir, { tokens: 5 });
  const pend = await create(srv, owner.key, createBody(productUrl));
  const cancelled = await create(srv, owner.key, createBody(productUrl));
  assertOk(await api(srv, 'POST', `/api/generations/${cancelled.generationId}/cancel`, { key: owner.key }), 200);
  const calls = [
    ['GET', `/api/generations/${pend.generationId}`],
    ['POST', `/api/generations/${pend.generationId}/cancel`],
    ['POST', `/api/generations/${cancelled.generationId}/retry`],
    ['DELETE', `/api/generations/${cancelled.generationId}`],
    ['GET', `/api/generations/${pend.generationId}/events`],
  ];
  for (const [m, p] of calls) assertError(await api(srv, m, p, { key: intruder.key, timeout: 5000 }), 403, 'UNAUTHORIZED', `${m} ${p} as another user`);
  assertError(await api(srv, 'POST', '/api/generate', { key: intruder.key, body: { generationId: pend.generationId } }), 403, 'UNAUTHORIZED', 'generate as another user');
  assert.equal((await getGen(srv, owner.key, pend.generationId)).status, 'pending');
  assert.equal((await getGen(srv, owner.key, cancelled.generationId)).status, 'cancelled');
  assert.equal(await balance(srv, owner.key), 4);
  assert.equal(await balance(srv, intruder.key), 5);
  assert.equal(await countGenerations(srv, intruder.key), 0);
});

test('several product images and a model image: completed at the requested ratio; retry with an empty balance → INSUFFICIENT_TOKENS', async () => {
  const u = await createUser(srv.dataDir, { tokens: 1 });
  const c = await create(srv, u.key, createBody(productUrl, { productImages: [productUrl, product2Url, productUrl], modelImages: [modelUrl], aspectRatio: '2:3' }));
  const d = assertOk(await api(srv, 'POST', '/api/generate', { key: u.key, body: { generationId: c.generationId }, headers: { prefer: 'wait=30' } }), 200);
  assert.equal(d.status, 'completed', d.error);
  await checkResults(d, '2:3');
  // Fail-safe: a cancelled generation of a user with no tokens left cannot be retried.
  const admin = await createUser(srv.dataDir, { tokens: 0, admin: true });
  assertOk(await api(srv, 'POST', `/api/admin/users/${u.userId}/tokens`, { key: admin.key, body: { amount: 1, reason: 't' } }), 200);
  const x = await create(srv, u.key, createBody(productUrl));
  assertOk(await api(srv, 'POST', `/api/generations/${x.generationId}/cancel`, { key: u.key }), 200);
  assertOk(await api(srv, 'POST', '/api/generate', { key: u.key, body: createBody(productUrl) }), 202); // spends the refunded token
  const r = await api(srv, 'POST', `/api/generations/${x.generationId}/retry`, { key: u.key });
  assertError(r, 400, 'INSUFFICIENT_TOKENS', 'retry with balance 0');
  assert.equal(await balance(srv, u.key), 0);
});

test('JSON with "application/json; charset=utf-8" is accepted', async () => {
  const u = await createUser(srv.dataDir, { tokens: 1 });
  const r = await api(srv, 'POST', '/api/generation/create', { key: u.key, rawBody: JSON.stringify(createBody(productUrl)), headers: { 'content-type': 'application/json; charset=utf-8' } });
  assertOk(r, 201);
});

test('numbers come back as written: strength 0.8, guidance 7.3 (record, list, SSE event, idempotent replay)', async () => {
  const u = await createUser(srv.dataDir, { tokens: 2 });
  const body = createBody(productUrl, { parameters: { strength: 0.8, guidance_scale: 7.3, seed: 7 } });
  const headers = { 'idempotency-key': `real-${Date.now()}` };
  const first = await api(srv, 'POST', '/api/generation/create', { key: u.key, body, headers });
  const { generationId: id } = assertOk(first, 201);
  const replay = await api(srv, 'POST', '/api/generation/create', { key: u.key, body, headers });
  assert.equal(replay.text, first.text, 'an idempotent replay is the first answer, byte for byte');
  const one = await api(srv, 'GET', `/api/generations/${id}`, { key: u.key });
  const list = await api(srv, 'GET', '/api/generations?limit=1', { key: u.key });
  const stream = await sse(srv, `/api/generations/${id}/events`, { key: u.key });
  const frame = await stream.until((f) => f.event === 'generation');
  stream.close();
  for (const [what, text] of [['GET record', one.text], ['list', list.text], ['SSE event', frame.data]]) {
    assert.match(text, /"strength":0\.8[,}]/, `${what}: ${text.slice(0, 600)}`);
    assert.match(text, /"guidance_scale":7\.3[,}]/, `${what}: ${text.slice(0, 600)}`);
    assert.doesNotMatch(text, /0\.8000000|7\.29999/, `${what} prints doubles with 17 digits`);
  }
  assert.equal(one.json.data.parameters.strength, 0.8);
});
