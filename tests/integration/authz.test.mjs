// The authorization matrix (issue 11, SPEC §1, §2): every route of the
// OpenAPI document, taken from the running server so a new route cannot
// be missed, called as anonymous, as another user, as an admin who is not
// the owner, and as the owner of the resource it names. Anonymous gets
// AUTHENTICATION_REQUIRED on every non-public route; another user (admin or
// not) gets UNAUTHORIZED on every route naming the owner's resource and
// changes nothing; lists never show another user's items; admin routes
// refuse non-admins; the owner is let through.
import { before, after } from 'node:test';
import {
  test, assert, startServer, api, assertOk, createUser, uploadFixture, createBody, create,
  getGen, waitFor, balance,
} from './harness.mjs';

let srv, owner, other, admin, res;

// Each path parameter, per route prefix, filled with the owner's resource.
function fill(path) {
  const byPrefix = [
    ['/api/generations/{id}/retry', () => res.cancelledGen],
    ['/api/generations/{id}', () => res.gen],
    ['/api/batches/{id}', () => res.batch],
    ['/api/templates/{id}', () => res.template],
    ['/api/webhooks/{id}', () => res.webhook],
    ['/api/keys/{id}', () => res.keyId],
    ['/api/admin/users/{id}', () => owner.userId],
  ];
  let out = path;
  for (const [prefix, value] of byPrefix) {
    if (path.startsWith(prefix)) { out = out.replace('{id}', value()); break; }
  }
  return out.replace('{deliveryId}', res.delivery);
}

// A body that passes validation, so a refusal is about who asks.
function bodyFor(method, path) {
  if (method === 'GET' || method === 'DELETE') return undefined;
  if (path === '/api/generation/create' || path === '/api/generate') return createBody(res.url);
  if (path === '/api/generation/batch') return { items: [createBody(res.url)] };
  if (path.startsWith('/api/templates')) return path.endsWith('/generate') ? {} : { name: 'x', body: createBody(res.url) };
  if (path === '/api/webhooks') return { url: 'http://127.0.0.1:9/hook', events: ['generation.completed'] };
  if (path.endsWith('/tokens')) return { amount: 1, reason: 'authz test' };
  if (path.endsWith('/plan')) return { plan: 'free' };
  if (path === '/api/keys') return { name: 'authz' };
  return {};
}

async function call(method, path, key) {
  if (path.endsWith('/events')) { // an SSE stream: the status, then hang up
    const ctl = new AbortController();
    const headers = key ? { authorization: `Bearer ${key}` } : {};
    const r = await fetch(srv.url(path), { headers, signal: ctl.signal });
    const status = r.status;
    const json = status === 200 ? null : await r.json();
    ctl.abort();
    return { status, json };
  }
  if (path === '/api/upload') {
    const headers = { 'content-type': 'image/png' };
    if (key) headers.authorization = `Bearer ${key}`;
    const r = await fetch(srv.url(path), { method, headers, body: Buffer.from('not an image') });
    return { status: r.status, json: await r.json() };
  }
  return api(srv, method, path, { key, body: bodyFor(method, path) });
}

async function routes() {
  const r = await fetch(srv.url('/api/openapi.json'));
  assert.equal(r.status, 200);
  const d = await r.json();
  const out = [];
  for (const [path, ops] of Object.entries(d.paths)) {
    for (const [m, op] of Object.entries(ops)) {
      out.push({ method: m.toUpperCase(), path, secured: Array.isArray(op.security) && op.security.length > 0 });
    }
  }
  return out;
}

before(async () => {
  srv = await startServer({ workers: 1 });
  owner = await createUser(srv.dataDir, { tokens: 50 });
  other = await createUser(srv.dataDir, { tokens: 50 });
  admin = await createUser(srv.dataDir, { tokens: 50, admin: true });
  res = {};
  res.url = await uploadFixture(srv, owner.key);
  res.gen = (await create(srv, owner.key, createBody(res.url))).generationId;
  res.cancelledGen = (await create(srv, owner.key, createBody(res.url))).generationId;
  await api(srv, 'POST', `/api/generations/${res.cancelledGen}/cancel`, { key: owner.key });
  res.batch = assertOk(await api(srv, 'POST', '/api/generation/batch', { key: owner.key, body: { items: [createBody(res.url)] } }), 201).batchId;
  res.template = assertOk(await api(srv, 'POST', '/api/templates', { key: owner.key, body: { name: 't', body: createBody(res.url) } }), 201)._id;
  res.keyId = assertOk(await api(srv, 'POST', '/api/keys', { key: owner.key, body: { name: 'spare' } }), 201).id;
  // A webhook with one delivery (the balance moves on a grant).
  res.webhook = assertOk(await api(srv, 'POST', '/api/webhooks', { key: owner.key, body: { url: 'http://127.0.0.1:9/hook', events: ['balance.changed'] } }), 201).id;
  await api(srv, 'POST', `/api/admin/users/${owner.userId}/tokens`, { key: admin.key, body: { amount: 1, reason: 'for a delivery' } });
  res.delivery = await waitFor(async () => {
    const d = assertOk(await api(srv, 'GET', `/api/webhooks/${res.webhook}/deliveries`, { key: owner.key }), 200);
    return d.items[0]?.id;
  }, { what: 'a webhook delivery' });
});
after(() => srv?.stop());

const PUBLIC = new Set(['/healthz', '/readyz', '/metrics', '/api/openapi.json', '/api/auth/signup',
  '/api/auth/login', '/api/auth/logout', '/api/models', '/api/providers/replicate/webhook']);

test('the document lists every route we check, and only the public ones are open', async () => {
  const all = await routes();
  assert.ok(all.length >= 35, `${all.length} routes`);
  for (const r of all) assert.equal(!r.secured, PUBLIC.has(r.path), `${r.method} ${r.path}: secured ${r.secured}`);
});

test('anonymous: every secured route answers 401 AUTHENTICATION_REQUIRED', async () => {
  for (const r of (await routes()).filter((x) => x.secured)) {
    const got = await call(r.method, fill(r.path));
    assert.equal(got.status, 401, `${r.method} ${r.path}: ${JSON.stringify(got.json)}`);
    assert.equal(got.json.code, 'AUTHENTICATION_REQUIRED', `${r.method} ${r.path}`);
  }
});

test('another user, and an admin who is not the owner: every route naming the owner\'s resource is UNAUTHORIZED and changes nothing', async () => {
  const before = {
    balance: await balance(srv, owner.key),
    gen: (await getGen(srv, owner.key, res.gen)).status,
    cancelled: (await getGen(srv, owner.key, res.cancelledGen)).status,
  };
  const named = (await routes()).filter((r) => r.path.includes('{id}') && !r.path.startsWith('/api/admin/'));
  assert.ok(named.length >= 15, `${named.length} routes with an {id}`);
  for (const who of [other, admin]) {
    for (const r of named) {
      const got = await call(r.method, fill(r.path), who.key);
      // API keys are looked up within the caller's own: another's is not found.
      const want = r.path === '/api/keys/{id}' ? [404, 'NOT_FOUND'] : [403, 'UNAUTHORIZED'];
      assert.equal(got.status, want[0], `${who === admin ? 'admin' : 'other'} ${r.method} ${r.path}: ${JSON.stringify(got.json)}`);
      assert.equal(got.json.code, want[1], `${r.method} ${r.path}`);
    }
  }
  assert.equal(await balance(srv, owner.key), before.balance);
  assert.equal((await getGen(srv, owner.key, res.gen)).status, before.gen);
  assert.equal((await getGen(srv, owner.key, res.cancelledGen)).status, before.cancelled);
  assertOk(await api(srv, 'GET', `/api/templates/${res.template}`, { key: owner.key }), 200, 'the template is still there');
  assertOk(await api(srv, 'GET', `/api/batches/${res.batch}`, { key: owner.key }), 200, 'the batch is still there');
  const hooks = assertOk(await api(srv, 'GET', '/api/webhooks', { key: owner.key }), 200);
  assert.ok(hooks.items.some((h) => h.id === res.webhook), 'the webhook is still there');
  const keys = assertOk(await api(srv, 'GET', '/api/keys', { key: owner.key }), 200);
  assert.ok(keys.items.some((k) => k.id === res.keyId), 'the spare key is still there');
});

test('lists show only the caller\'s own items', async () => {
  const lists = [
    ['/api/generations', (i) => i._id, [res.gen, res.cancelledGen]],
    ['/api/templates', (i) => i._id, [res.template]],
    ['/api/webhooks', (i) => i.id, [res.webhook]],
    ['/api/keys', (i) => i.id, [res.keyId]],
    ['/api/tokens/transactions', (i) => i.generationId, [res.gen, res.cancelledGen]],
  ];
  for (const [path, id, mine] of lists) {
    const theirs = assertOk(await api(srv, 'GET', path, { key: other.key }), 200, path).items.map(id);
    for (const m of mine) assert.ok(!theirs.includes(m), `${path} shows another user's ${m}`);
    const own = assertOk(await api(srv, 'GET', path, { key: owner.key }), 200, path).items.map(id);
    for (const m of mine) assert.ok(own.includes(m), `${path} misses the owner's ${m}`);
  }
  const q = assertOk(await api(srv, 'GET', '/api/queue', { key: other.key }), 200);
  assert.deepEqual(q.items, []);
});

test('admin routes: refused to users (the owner included), allowed to an admin', async () => {
  const adminRoutes = (await routes()).filter((r) => r.path.startsWith('/api/admin/'));
  assert.ok(adminRoutes.length >= 2);
  for (const r of adminRoutes) {
    for (const who of [owner, other]) {
      const got = await call(r.method, fill(r.path), who.key);
      assert.equal(got.status, 403, `${r.method} ${r.path}: ${JSON.stringify(got.json)}`);
      assert.equal(got.json.code, 'UNAUTHORIZED');
    }
    const ok = await call(r.method, fill(r.path), admin.key);
    assert.equal(ok.status, 200, `admin ${r.method} ${r.path}: ${JSON.stringify(ok.json)}`);
  }
});

test('the owner is let through on every secured route', async () => {
  for (const r of (await routes()).filter((x) => x.secured && !x.path.startsWith('/api/admin/'))) {
    if (r.method === 'DELETE') continue; // deletes are checked by their own suites; keep the fixtures
    const got = await call(r.method, fill(r.path), owner.key);
    assert.ok(![401, 403].includes(got.status), `owner ${r.method} ${r.path}: ${got.status} ${JSON.stringify(got.json)}`);
  }
});
