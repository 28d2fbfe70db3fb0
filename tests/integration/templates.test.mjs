// Templates (SPEC §4): saved create bodies per user — create (validated as
// a create, images included, fields under body.), list with cursors, get,
// replace, delete; generate from one with overrides (parameters merged key
// by key), answering exactly as create (201) or the one-step form (202).
import { before, after } from 'node:test';
import {
  test, assert, startServer, api, assertOk, assertError, errorFields, createUser, uploadFixture,
  fixture, createBody, getGen, waitGen, balance, countGenerations,
  startImageHost,
} from './harness.mjs';

let srv, productUrl, imageHost, imageBase;
before(async () => {
  srv = await startServer();
  const u = await createUser(srv.dataDir, { tokens: 0 });
  productUrl = await uploadFixture(srv, u.key, 'product.jpg');
  imageHost = await startImageHost(); // /ok.jpg serves the fixture, anything else 404
  imageBase = imageHost.base;
});
after(() => { srv?.stop(); imageHost?.close(); });

const save = (key, body) => api(srv, 'POST', '/api/templates', { key, body });

function assertTemplate(t, name, body) {
  assert.match(t._id, /^tpl_[0-9A-HJKMNP-TV-Z]{26}$/, 'template ids: tpl_ + 26 Crockford base32 chars');
  assert.equal(t.name, name);
  assert.deepEqual(t.body, body);
  assert.equal(typeof t.createdAt, 'number');
  assert.equal(typeof t.updatedAt, 'number');
}

test('round trip: create → 201 {_id, name, body, createdAt, updatedAt}; get; list; PUT replaces name and body', async () => {
  const u = await createUser(srv.dataDir, { tokens: 0 });
  const body = createBody(productUrl, { style: 'minimal', parameters: { seed: 42 } });
  const t = assertOk(await save(u.key, { name: 'Studio white', body }), 201, 'create template');
  assertTemplate(t, 'Studio white', body);
  assert.equal(t.createdAt, t.updatedAt);
  assert.deepEqual(assertOk(await api(srv, 'GET', `/api/templates/${t._id}`, { key: u.key }), 200), t);
  const list = assertOk(await api(srv, 'GET', '/api/templates', { key: u.key }), 200);
  assert.deepEqual(list, { items: [t], nextCursor: null });

  const body2 = createBody(productUrl, { style: 'artistic', aspectRatio: '4:5' });
  const p = assertOk(await api(srv, 'PUT', `/api/templates/${t._id}`, { key: u.key, body: { name: 'Beach', body: body2 } }), 200, 'PUT');
  assert.equal(p._id, t._id);
  assertTemplate(p, 'Beach', body2);
  assert.equal(p.createdAt, t.createdAt);
  assert.ok(p.updatedAt >= t.updatedAt);
  assert.deepEqual(assertOk(await api(srv, 'GET', `/api/templates/${t._id}`, { key: u.key }), 200), p);
  // PUT validates as create does, and a refused PUT changes nothing.
  const bad = await api(srv, 'PUT', `/api/templates/${t._id}`, { key: u.key, body: { name: 'x', body: { ...body2, style: 'grunge' } } });
  assertError(bad, 400, 'VALIDATION_ERROR');
  assert.deepEqual(errorFields(bad), ['body.style']);
  assert.deepEqual(assertOk(await api(srv, 'GET', `/api/templates/${t._id}`, { key: u.key }), 200), p);
  // Saving a template charges nothing.
  assert.equal(await balance(srv, u.key), 0);
});

test('validation: name 1–100 chars, body required, bad body fields named body.*, MODEL_ERROR, image checks', async () => {
  const u = await createUser(srv.dataDir, { tokens: 0 });
  const good = createBody(productUrl);
  const cases = [
    [{ body: good }, ['name']],
    [{ name: '', body: good }, ['name']],
    [{ name: 'x'.repeat(101), body: good }, ['name']],
    [{ name: 7, body: good }, ['name']],
    [{ name: 'ok' }, ['body']],
    [{ name: 'ok', body: 'style=minimal' }, ['body']],
    [{ name: 'ok', body: { ...good, style: 'grunge' } }, ['body.style']],
    [{ name: 'ok', body: { ...good, quality: 'ultra', aspectRatio: '5:1' } }, ['body.quality', 'body.aspectRatio']],
    [{ name: 'ok', body: { ...good, productImages: [] } }, ['body.productImages']],
    [{ name: 'ok', body: { ...good, parameters: { seed: -1 } } }, ['body.parameters.seed']],
    [{ name: 'ok', body: { ...good, priority: 'high' } }, ['body.priority']], // a free user
    [{ body: { ...good, style: 'grunge' } }, ['name', 'body.style']],
  ];
  for (const [b, fields] of cases) {
    const r = await save(u.key, b);
    assertError(r, 400, 'VALIDATION_ERROR', JSON.stringify(b).slice(0, 120));
    assert.deepEqual(errorFields(r).sort(), [...fields].sort(), JSON.stringify(b).slice(0, 120));
  }
  assert.ok(assertOk(await save(u.key, { name: 'é'.repeat(100), body: good }), 201, '100 characters (200 bytes) is fine'));
  assertError(await save(u.key, { name: 'ok', body: { ...good, model: 'no-such-model' } }), 400, 'MODEL_ERROR');
  // Image URLs are checked as a create checks them.
  const priv = await save(u.key, { name: 'ok', body: createBody('http://10.0.0.1/a.jpg') });
  assertError(priv, 400, 'IMAGE_VALIDATION_ERROR', 'private address');
  const own = await save(u.key, { name: 'ok', body: createBody(`${srv.baseUrl}/media/u/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA.jpg`) });
  assertError(own, 400, 'IMAGE_VALIDATION_ERROR', 'missing own file');
  // A remote image is fetched and validated (on the slow pool).
  const missing = await save(u.key, { name: 'ok', body: createBody(`${imageBase}/missing.jpg`) });
  assertError(missing, 400, 'IMAGE_VALIDATION_ERROR', 'remote 404');
  assert.deepEqual(errorFields(missing), ['body.productImages[0]']);
  const remote = createBody(`${imageBase}/ok.jpg`);
  const t = assertOk(await save(u.key, { name: 'remote', body: remote }), 201, 'remote image');
  assert.deepEqual(t.body, remote, 'the body is kept as sent');
  assertError(await api(srv, 'POST', '/api/templates', { key: u.key, rawBody: '{nope', headers: { 'content-type': 'application/json' } }), 400, 'VALIDATION_ERROR');
  assertError(await api(srv, 'POST', '/api/templates', { body: { name: 'x', body: good } }), 401, 'AUTHENTICATION_REQUIRED');
});

test('generate: start false → 201 as create; start true → 202 as the one-step form; overrides and parameters merged key by key', async () => {
  const u = await createUser(srv.dataDir, { tokens: 20 });
  const body = createBody(productUrl, { style: 'minimal', customPrompt: 'soft light', parameters: { seed: 5, guidance_scale: 9 } });
  const t = assertOk(await save(u.key, { name: 'base', body }), 201);

  const c = assertOk(await api(srv, 'POST', `/api/templates/${t._id}/generate`, { key: u.key }), 201, 'generate, no body');
  assert.deepEqual(Object.keys(c).sort(), ['estimatedCost', 'generationId', 'message', 'prompt', 'status']);
  assert.equal(c.status, 'pending');
  let g = await getGen(srv, u.key, c.generationId);
  assert.equal(g.status, 'pending');
  assert.equal(g.parameters.style, 'minimal');
  assert.equal(g.parameters.seed, 5);
  assert.equal(g.parameters.guidance_scale, 9);
  assert.equal(await balance(srv, u.key), 20 - c.estimatedCost);

  const o = assertOk(await api(srv, 'POST', `/api/templates/${t._id}/generate`, {
    key: u.key, body: { overrides: { style: 'artistic', aspectRatio: '4:5', customPrompt: null, parameters: { seed: 7, strength: 0.5 } }, start: false },
  }), 201, 'generate with overrides');
  g = await getGen(srv, u.key, o.generationId);
  assert.equal(g.parameters.style, 'artistic');
  assert.equal(g.parameters.aspect_ratio ?? g.parameters.aspectRatio, '4:5');
  assert.equal(g.parameters.seed, 7, 'overridden');
  assert.equal(g.parameters.guidance_scale, 9, 'kept from the template');
  assert.equal(g.parameters.strength, 0.5, 'added');
  assert.ok(!/soft light/.test(g.prompt), 'a null override removes the field');

  const s = assertOk(await api(srv, 'POST', `/api/templates/${t._id}/generate`, { key: u.key, body: { start: true } }), 202, 'generate with start');
  assert.equal(s.status, 'processing');
  assert.deepEqual(s.resultImages, []);
  const done = await waitGen(srv, u.key, s.generationId);
  assert.equal(done.status, 'completed');
  // The template itself is unchanged by generating.
  assert.deepEqual(assertOk(await api(srv, 'GET', `/api/templates/${t._id}`, { key: u.key }), 200).body, body);

  // Overrides are validated as a create body is (create's field names).
  const bad = await api(srv, 'POST', `/api/templates/${t._id}/generate`, { key: u.key, body: { overrides: { style: 'grunge', parameters: { seed: -3 } } } });
  assertError(bad, 400, 'VALIDATION_ERROR');
  assert.deepEqual(errorFields(bad).sort(), ['parameters.seed', 'style']);
  const shape = await api(srv, 'POST', `/api/templates/${t._id}/generate`, { key: u.key, body: { overrides: 'x', start: 'yes' } });
  assertError(shape, 400, 'VALIDATION_ERROR');
  assert.deepEqual(errorFields(shape).sort(), ['overrides', 'start']);
  const poor = await createUser(srv.dataDir, { tokens: 0 });
  const pt = assertOk(await save(poor.key, { name: 'p', body }), 201);
  assertError(await api(srv, 'POST', `/api/templates/${pt._id}/generate`, { key: poor.key }), 400, 'INSUFFICIENT_TOKENS');
  assert.equal(await countGenerations(srv, poor.key), 0);
});

test('generate: Idempotency-Key behaves as on create (one charge, replayed answer)', async () => {
  const u = await createUser(srv.dataDir, { tokens: 10 });
  const t = assertOk(await save(u.key, { name: 'idem', body: createBody(productUrl) }), 201);
  const headers = { 'Idempotency-Key': `tpl-${Date.now()}` };
  const a = await api(srv, 'POST', `/api/templates/${t._id}/generate`, { key: u.key, body: { overrides: { style: 'minimal' } }, headers });
  const first = assertOk(a, 201);
  const b = await api(srv, 'POST', `/api/templates/${t._id}/generate`, { key: u.key, body: { overrides: { style: 'minimal' } }, headers });
  assert.equal(b.status, 201);
  assert.equal(b.headers.get('idempotent-replayed'), 'true');
  assert.equal(b.text, a.text, 'the replay is the first answer byte for byte');
  assert.equal(await countGenerations(srv, u.key), 1);
  assert.equal(await balance(srv, u.key), 10 - first.estimatedCost);
  const c = await api(srv, 'POST', `/api/templates/${t._id}/generate`, { key: u.key, body: { overrides: { style: 'artistic' } }, headers });
  assertError(c, 409, 'IDEMPOTENCY_KEY_REUSED');
});

test('another user is refused (UNAUTHORIZED); unknown → NOT_FOUND; delete', async () => {
  const owner = await createUser(srv.dataDir, { tokens: 10 });
  const other = await createUser(srv.dataDir, { tokens: 10 });
  const t = assertOk(await save(owner.key, { name: 'mine', body: createBody(productUrl) }), 201);
  const path = `/api/templates/${t._id}`;
  assertError(await api(srv, 'GET', path, { key: other.key }), 403, 'UNAUTHORIZED');
  assertError(await api(srv, 'PUT', path, { key: other.key, body: { name: 'theirs', body: createBody(productUrl) } }), 403, 'UNAUTHORIZED');
  assertError(await api(srv, 'DELETE', path, { key: other.key }), 403, 'UNAUTHORIZED');
  assertError(await api(srv, 'POST', `${path}/generate`, { key: other.key }), 403, 'UNAUTHORIZED');
  assert.deepEqual(assertOk(await api(srv, 'GET', '/api/templates', { key: other.key }), 200).items, []);
  assert.equal(await countGenerations(srv, other.key), 0);
  assert.equal(await balance(srv, other.key), 10);
  assert.equal(assertOk(await api(srv, 'GET', path, { key: owner.key }), 200).name, 'mine');

  const unknown = '/api/templates/tpl_00000000000000000000000000';
  assertError(await api(srv, 'GET', unknown, { key: owner.key }), 404, 'NOT_FOUND');
  assertError(await api(srv, 'PUT', unknown, { key: owner.key, body: { name: 'x', body: createBody(productUrl) } }), 404, 'NOT_FOUND');
  assertError(await api(srv, 'DELETE', unknown, { key: owner.key }), 404, 'NOT_FOUND');
  assertError(await api(srv, 'POST', `${unknown}/generate`, { key: owner.key }), 404, 'NOT_FOUND');

  assert.deepEqual(assertOk(await api(srv, 'DELETE', path, { key: owner.key }), 200), { id: t._id, deleted: true });
  assertError(await api(srv, 'GET', path, { key: owner.key }), 404, 'NOT_FOUND');
  assertError(await api(srv, 'DELETE', path, { key: owner.key }), 404, 'NOT_FOUND');
  assertError(await api(srv, 'POST', `${path}/generate`, { key: owner.key }), 404, 'NOT_FOUND');
  assert.deepEqual(assertOk(await api(srv, 'GET', '/api/templates', { key: owner.key }), 200).items, []);
});

test('list: newest first, cursor pagination, limit 1–100, malformed cursor refused', async () => {
  const u = await createUser(srv.dataDir, { tokens: 0 });
  const ids = [];
  for (let i = 0; i < 5; i++) ids.push(assertOk(await save(u.key, { name: `t${i}`, body: createBody(productUrl) }), 201)._id);
  const seen = [];
  let cursor = null, pages = 0;
  do {
    const q = new URLSearchParams({ limit: '2' });
    if (cursor) q.set('cursor', cursor);
    const d = assertOk(await api(srv, 'GET', `/api/templates?${q}`, { key: u.key }), 200);
    assert.ok(d.items.length <= 2);
    seen.push(...d.items.map((t) => t._id));
    cursor = d.nextCursor;
    pages++;
  } while (cursor && pages < 10);
  assert.equal(pages, 3);
  assert.deepEqual(seen, [...ids].reverse(), 'newest first, each once');
  const all = assertOk(await api(srv, 'GET', '/api/templates', { key: u.key }), 200);
  assert.equal(all.items.length, 5);
  assert.equal(all.nextCursor, null);
  for (const q of ['limit=0', 'limit=101', 'limit=x', 'cursor=gen_01ABC', 'cursor=%20']) {
    assertError(await api(srv, 'GET', `/api/templates?${q}`, { key: u.key }), 400, 'VALIDATION_ERROR', q);
  }
});

test('a user keeps at most 100 templates; deleting one makes room', async () => {
  const u = await createUser(srv.dataDir, { tokens: 0 });
  const body = createBody(productUrl);
  let last;
  for (let i = 0; i < 100; i++) last = assertOk(await save(u.key, { name: `n${i}`, body }), 201, `template ${i}`);
  const over = await save(u.key, { name: 'one too many', body });
  assertError(over, 400, 'VALIDATION_ERROR', 'the 101st template');
  assert.match(over.json.error, /100 templates/);
  assertOk(await api(srv, 'DELETE', `/api/templates/${last._id}`, { key: u.key }), 200);
  assertOk(await save(u.key, { name: 'fits again', body }), 201);
});
