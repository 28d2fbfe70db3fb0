// Batches (SPEC §4 "Batches, templates, queue"): 1 to 20 create bodies,
// every item validated first (errors name the item), charged all or none
// in one transaction with a charge row per generation, optionally started;
// Idempotency-Key as on create; GET /api/batches/{id} with counts by
// status; batch cancel refunds exactly the unfinished items; records and
// SSE events carry batchId. Every test ends with the harness's ledger check.
import { before, after } from 'node:test';
import {
  test, assert, startServer, serverFor, api, assertOk, assertError, errorFields, createUser,
  uploadFixture, createBody, getGen, waitGen, balance, countGenerations, transactions,
  start, sse, query, startImageHost,
} from './harness.mjs';

let srv, u, productUrl, imageHost, imageBase;
before(async () => {
  srv = await startServer();
  u = await createUser(srv.dataDir, { tokens: 0 });
  productUrl = await uploadFixture(srv, u.key, 'product.jpg');
  imageHost = await startImageHost(); // /ok.jpg serves the fixture, anything else 404
  imageBase = imageHost.base;
});
after(() => { srv?.stop(); imageHost?.close(); });

const batch = (server, key, body, headers) =>
  api(server, 'POST', '/api/generation/batch', { key, body, headers });

// The cost of one default create body (local-studio, quality auto).
async function unitCost() {
  const models = assertOk(await api(srv, 'GET', '/api/models'), 200).items;
  return models.find((m) => m.id === 'local-studio').costByQuality.auto;
}

test('a batch of three: 201 {batchId, generationIds in item order, estimatedCost total, status pending}; each record carries batchId and its own charge row', async () => {
  const a = await createUser(srv.dataDir, { tokens: 50 });
  const cost = await unitCost();
  const styles = ['realistic', 'artistic', 'minimal'];
  const items = styles.map((style) => createBody(productUrl, { style }));
  const r = await batch(srv, a.key, { items });
  const d = assertOk(r, 201, 'batch');
  assert.match(d.batchId, /^bat_[0-9A-HJKMNP-TV-Z]{26}$/);
  assert.equal(d.generationIds.length, 3);
  assert.equal(d.estimatedCost, 3 * cost);
  assert.equal(d.status, 'pending');
  for (let i = 0; i < 3; i++) {
    const g = await getGen(srv, a.key, d.generationIds[i]);
    assert.equal(g.batchId, d.batchId);
    assert.equal(g.status, 'pending');
    assert.equal(g.parameters.style, styles[i], 'generationIds are in item order');
    assert.equal(g.tokensUsed, cost);
  }
  assert.equal(await balance(srv, a.key), 50 - 3 * cost);
  const charges = (await transactions(srv, a.key)).filter((t) => t.kind === 'charge');
  assert.deepEqual(charges.map((t) => t.generationId).sort(), [...d.generationIds].sort(),
    'one charge row per generation');
  const b = assertOk(await api(srv, 'GET', `/api/batches/${d.batchId}`, { key: a.key }), 200);
  assert.deepEqual(b, {
    _id: d.batchId, userId: a.userId, createdAt: b.createdAt, total: 3, tokensUsed: 3 * cost,
    counts: { pending: 3, processing: 0, completed: 0, failed: 0, cancelled: 0 },
    generationIds: d.generationIds,
  });
  assert.equal(typeof b.createdAt, 'number');
  // The items are ordinary generations: step 2 starts one.
  await start(srv, a.key, d.generationIds[0]);
  await waitGen(srv, a.key, d.generationIds[0]);
  const b2 = assertOk(await api(srv, 'GET', `/api/batches/${d.batchId}`, { key: a.key }), 200);
  assert.deepEqual(b2.counts, { pending: 2, processing: 0, completed: 1, failed: 0, cancelled: 0 });
  for (const id of d.generationIds.slice(1)) await api(srv, 'POST', `/api/generations/${id}/cancel`, { key: a.key });
});

test('start: true queues every item; they complete, and the SSE events carry batchId', async () => {
  const a = await createUser(srv.dataDir, { tokens: 20 });
  const events = await sse(srv, '/api/events', { key: a.key, timeout: 30000 });
  try {
    const items = [createBody(productUrl, { aspectRatio: '1:1' }), createBody(productUrl, { aspectRatio: '16:9' })];
    const d = assertOk(await batch(srv, a.key, { items, start: true }), 201);
    assert.equal(d.status, 'processing');
    for (const id of d.generationIds) assert.equal((await waitGen(srv, a.key, id)).status, 'completed');
    const b = assertOk(await api(srv, 'GET', `/api/batches/${d.batchId}`, { key: a.key }), 200);
    assert.deepEqual(b.counts, { pending: 0, processing: 0, completed: 2, failed: 0, cancelled: 0 });
    for (const id of d.generationIds) {
      const done = await events.until((f) => f.event === 'generation' && f.json?._id === id && f.json.status === 'completed', 20000);
      assert.equal(done.json.batchId, d.batchId);
    }
    const gens = events.frames.filter((f) => f.event === 'generation');
    assert.ok(gens.length >= 4, 'processing and completed frames of both');
    assert.ok(gens.every((f) => f.json.batchId === d.batchId), 'every generation event carries batchId');
  } finally {
    events.close();
  }
});

test('validation: items 1–20 objects, start boolean; every item checked, fields named items[i].field; nothing charged', async () => {
  const a = await createUser(srv.dataDir, { tokens: 100 });
  const good = createBody(productUrl);
  const cases = [
    [{}, ['items']],
    [{ items: [] }, ['items']],
    [{ items: good }, ['items']],
    [{ items: Array(21).fill(good) }, ['items']],
    [{ items: [good], start: 'yes' }, ['start']],
    [{ items: [good, 7] }, ['items[1]']],
    [{ items: [good, { ...good, style: 'grunge' }, good, { ...good, quality: 'ultra', parameters: { seed: -1 } }] },
      ['items[1].style', 'items[3].quality', 'items[3].parameters.seed']],
    [{ items: [{ ...good, productImages: [] }, { ...good, aspectRatio: '5:1' }] }, ['items[0].productImages', 'items[1].aspectRatio']],
    [{ items: [good, { ...good, priority: 'high' }] }, ['items[1].priority']], // a free user
  ];
  for (const [body, fields] of cases) {
    const r = await batch(srv, a.key, body);
    assertError(r, 400, 'VALIDATION_ERROR', JSON.stringify(body).slice(0, 120));
    assert.deepEqual(errorFields(r).sort(), [...fields].sort(), JSON.stringify(body).slice(0, 120));
  }
  // An unknown model is MODEL_ERROR, naming the item.
  const m = await batch(srv, a.key, { items: [good, { ...good, model: 'no-such-model' }] });
  assertError(m, 400, 'MODEL_ERROR');
  assert.deepEqual(errorFields(m), ['items[1].model']);
  assert.match(m.json.error, /items\[1\]/);
  assert.equal(await balance(srv, a.key), 100);
  assert.equal(await countGenerations(srv, a.key), 0);
});

test('a batch that cannot be fully paid charges nothing: INSUFFICIENT_TOKENS with the total', async () => {
  const cost = await unitCost();
  const a = await createUser(srv.dataDir, { tokens: 3 * cost - 1 });
  const items = [1, 2, 3].map(() => createBody(productUrl));
  const r = await batch(srv, a.key, { items, start: true });
  assertError(r, 400, 'INSUFFICIENT_TOKENS');
  assert.match(r.json.error, new RegExp(`costs ${3 * cost} tokens`));
  assert.equal(await balance(srv, a.key), 3 * cost - 1);
  assert.equal(await countGenerations(srv, a.key), 0);
  assert.equal((await transactions(srv, a.key)).filter((t) => t.kind === 'charge').length, 0);
  // Two of them fit.
  const ok = assertOk(await batch(srv, a.key, { items: items.slice(0, 2) }), 201);
  assert.equal(ok.estimatedCost, 2 * cost);
  for (const id of ok.generationIds) await api(srv, 'POST', `/api/generations/${id}/cancel`, { key: a.key });
});

test('batch cancel refunds exactly the unfinished items, once; a completed item keeps its charge', async () => {
  const cost = await unitCost();
  const a = await createUser(srv.dataDir, { tokens: 30 });
  const items = [1, 2, 3, 4].map(() => createBody(productUrl));
  const d = assertOk(await batch(srv, a.key, { items }), 201);
  await start(srv, a.key, d.generationIds[0]);
  assert.equal((await waitGen(srv, a.key, d.generationIds[0])).status, 'completed');
  await api(srv, 'POST', `/api/generations/${d.generationIds[1]}/cancel`, { key: a.key }); // one cancelled on its own
  const before = await balance(srv, a.key);
  const c = assertOk(await api(srv, 'POST', `/api/batches/${d.batchId}/cancel`, { key: a.key }), 200, 'batch cancel');
  assert.deepEqual(c.counts, { pending: 0, processing: 0, completed: 1, failed: 0, cancelled: 3 });
  assert.equal(c.tokensUsed, cost, 'only the completed item holds its cost');
  assert.equal(await balance(srv, a.key), before + 2 * cost, 'the two still pending are refunded');
  for (const id of d.generationIds.slice(2)) {
    const g = await getGen(srv, a.key, id);
    assert.equal(g.status, 'cancelled');
    assert.equal(g.errorCode, 'CANCELLED');
    assert.equal(g.tokensUsed, 0);
  }
  // Again: nothing left to cancel, nothing refunded twice.
  const again = assertOk(await api(srv, 'POST', `/api/batches/${d.batchId}/cancel`, { key: a.key }), 200);
  assert.deepEqual(again.counts, c.counts);
  assert.equal(await balance(srv, a.key), before + 2 * cost);
  const refunds = (await transactions(srv, a.key)).filter((t) => t.kind === 'refund');
  assert.equal(refunds.length, 3, 'one refund per cancelled item');
});

test('batch cancel aborts running items', async (t) => {
  const s = await serverFor(t, { workers: 2, args: ['--test-faults', 'delay_ms=60000'] });
  const a = await s.createUser({ tokens: 20 });
  const url = await uploadFixture(s, a.key);
  const d = assertOk(await batch(s, a.key, { items: [createBody(url), createBody(url), createBody(url)], start: true }), 201);
  // Items run in item order: two workers take the first two, the third waits next in line.
  await waitGen(s, a.key, d.generationIds[0], { pred: (g) => g.stage !== 'queued', what: 'the first item running' });
  await waitGen(s, a.key, d.generationIds[1], { pred: (g) => g.stage !== 'queued', what: 'the second item running' });
  const third = await getGen(s, a.key, d.generationIds[2]);
  assert.equal(third.stage, 'queued');
  assert.equal(third.queuePosition, 1);
  const c = assertOk(await api(s, 'POST', `/api/batches/${d.batchId}/cancel`, { key: a.key }), 200);
  assert.deepEqual(c.counts, { pending: 0, processing: 0, completed: 0, failed: 0, cancelled: 3 });
  assert.equal(c.tokensUsed, 0);
  assert.equal(await balance(s, a.key), 20);
});

test('Idempotency-Key: a replay answers the first response and charges once; another body is IDEMPOTENCY_KEY_REUSED', async () => {
  const cost = await unitCost();
  const a = await createUser(srv.dataDir, { tokens: 20 });
  const body = { items: [createBody(productUrl), createBody(productUrl, { style: 'minimal' })] };
  const headers = { 'idempotency-key': 'batch-1' };
  const r1 = await batch(srv, a.key, body, headers);
  const d1 = assertOk(r1, 201);
  const r2 = await batch(srv, a.key, body, headers);
  assert.equal(r2.status, 201);
  assert.deepEqual(r2.json, r1.json, 'the first answer, as it was');
  assert.equal(r2.headers.get('idempotent-replayed'), 'true');
  assert.equal(await balance(srv, a.key), 20 - 2 * cost);
  assert.equal(await countGenerations(srv, a.key), 2);
  const r3 = await batch(srv, a.key, { items: [createBody(productUrl)] }, headers);
  assertError(r3, 409, 'IDEMPOTENCY_KEY_REUSED');
  assert.equal(await balance(srv, a.key), 20 - 2 * cost);
  for (const id of d1.generationIds) await api(srv, 'POST', `/api/generations/${id}/cancel`, { key: a.key });
});

test('another user\'s batch is UNAUTHORIZED, an unknown one NOT_FOUND', async () => {
  const a = await createUser(srv.dataDir, { tokens: 10 });
  const b = await createUser(srv.dataDir, { tokens: 10 });
  const d = assertOk(await batch(srv, a.key, { items: [createBody(productUrl)] }), 201);
  assertError(await api(srv, 'GET', `/api/batches/${d.batchId}`, { key: b.key }), 403, 'UNAUTHORIZED');
  assertError(await api(srv, 'POST', `/api/batches/${d.batchId}/cancel`, { key: b.key }), 403, 'UNAUTHORIZED');
  assert.equal((await getGen(srv, a.key, d.generationIds[0])).status, 'pending', 'a refused cancel changes nothing');
  assertError(await api(srv, 'GET', '/api/batches/bat_01M8TBDB71ASN2BTSG7N8M2PWH', { key: a.key }), 404, 'NOT_FOUND');
  assertError(await api(srv, 'POST', '/api/batches/nope/cancel', { key: a.key }), 404, 'NOT_FOUND');
  assertError(await api(srv, 'GET', `/api/batches/${d.batchId}`), 401, 'AUTHENTICATION_REQUIRED');
  await api(srv, 'POST', `/api/batches/${d.batchId}/cancel`, { key: a.key });
});

test('remote images are fetched for every item; one bad image refuses the whole batch, naming it, with nothing charged or kept', async () => {
  const cost = await unitCost();
  const a = await createUser(srv.dataDir, { tokens: 20 });
  const bad = await batch(srv, a.key, {
    items: [createBody(`${imageBase}/ok.jpg`), createBody(productUrl), createBody(`${imageBase}/missing.jpg`)],
  });
  assertError(bad, 400, 'IMAGE_VALIDATION_ERROR');
  assert.deepEqual(errorFields(bad), ['items[2].productImages[0]']);
  assert.equal(await balance(srv, a.key), 20);
  assert.equal(await countGenerations(srv, a.key), 0);
  const ok = assertOk(await batch(srv, a.key, { items: [createBody(`${imageBase}/ok.jpg`), createBody(productUrl)], start: true }), 201);
  const g = await waitGen(srv, a.key, ok.generationIds[0]);
  assert.equal(g.status, 'completed');
  assert.ok(g.productImages[0].startsWith(srv.baseUrl + '/media/'), 'the remote image was made our own');
  assert.equal(await balance(srv, a.key), 20 - 2 * cost);
});

test('rate limits: a batch takes one unit per item, all or none (429 charges nothing); QUEUE_FULL counts every started item', async (t) => {
  const s = await serverFor(t, { args: ['--rate-free', '1/h,3', '--queue-max', '2', '--test-faults', 'delay_ms=60000'], workers: 1 });
  const a = await s.createUser({ tokens: 50 });
  const url = await uploadFixture(s, a.key);
  const items = (n) => Array.from({ length: n }, () => createBody(url));
  const over = await batch(s, a.key, { items: items(4) });
  assertError(over, 429, 'RATE_LIMIT_EXCEEDED');
  assert.ok(Number(over.headers.get('retry-after')) > 0);
  assert.equal(over.headers.get('ratelimit-limit'), '3');
  assert.equal(over.headers.get('ratelimit-remaining'), '3', 'a refused batch uses no unit');
  assert.equal(await countGenerations(s, a.key), 0);
  // Queue-max 2: three started items do not fit (one worker, nothing running yet).
  const full = await batch(s, a.key, { items: items(3), start: true });
  assertError(full, 503, 'QUEUE_FULL');
  assert.ok(Number(full.headers.get('retry-after')) > 0);
  assert.equal(await balance(s, a.key), 50);
  const ok = await batch(s, a.key, { items: items(3) });
  assertOk(ok, 201);
  assert.equal(ok.headers.get('ratelimit-remaining'), '0');
  assertError(await batch(s, a.key, { items: items(1) }), 429, 'RATE_LIMIT_EXCEEDED');
  await api(s, 'POST', `/api/batches/${ok.json.data.batchId}/cancel`, { key: a.key });
});

test('the batch row survives a restart and agrees with the records in the store', async (t) => {
  const s = await serverFor(t, {});
  const a = await s.createUser({ tokens: 10 });
  const url = await uploadFixture(s, a.key);
  const d = assertOk(await batch(s, a.key, { items: [createBody(url), createBody(url)] }), 201);
  await s.restart();
  const b = assertOk(await api(s, 'GET', `/api/batches/${d.batchId}`, { key: a.key }), 200);
  assert.deepEqual(b.generationIds, d.generationIds);
  assert.equal(b.counts.pending, 2);
  const rows = await query(s.dbPath, `SELECT id FROM generations WHERE batch_id = '${d.batchId}' ORDER BY id`);
  assert.deepEqual(rows.map((r) => r.id), [...d.generationIds].sort());
  await api(s, 'POST', `/api/batches/${d.batchId}/cancel`, { key: a.key });
});
