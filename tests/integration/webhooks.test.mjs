// Outbound webhooks (SPEC §8): registration and its rules, deliveries of
// generation transitions and balance changes with Standard Webhooks
// signatures (checked by the receiver's own implementation), retries with
// one webhook-id, the delivery log, redeliver, and delivery after a crash.
import {
  test, assert, serverFor, api, assertOk, assertError, errorFields, createUser, uploadFixture,
  createBody, create, start, waitGen, waitFor, getGen,
} from './harness.mjs';
import { startReceiver, verifySignature } from './fakes/webhook_receiver.mjs';

const ALL = ['generation.processing', 'generation.completed', 'generation.failed', 'generation.cancelled', 'balance.changed'];

async function register(srv, key, url, events, description) {
  const body = { url, events };
  if (description !== undefined) body.description = description;
  return assertOk(await api(srv, 'POST', '/api/webhooks', { key, body }), 201, 'register');
}

async function deliveries(srv, key, id) {
  return assertOk(await api(srv, 'GET', `/api/webhooks/${id}/deliveries`, { key }), 200, 'deliveries').items;
}

function receiverFor(t) {
  return startReceiver().then((r) => { t.after(() => r.close()); return r; });
}

// The messages the receiver accepted (2xx), every signature checked.
function accepted(rcv, secret) {
  for (const m of rcv.received) assert.ok(verifySignature(secret, m.headers, m.body), `bad signature on ${m.id}: ${m.signature}`);
  return rcv.received.filter((m) => m.status < 300);
}

test('register: the secret is shown once; list hides it; delete; foreign → UNAUTHORIZED, unknown → NOT_FOUND', async (t) => {
  const srv = await serverFor(t, { workers: 0 });
  const a = await createUser(srv.dataDir, { tokens: 1 });
  const b = await createUser(srv.dataDir, { tokens: 1 });
  const rcv = await receiverFor(t);
  const w = await register(srv, a.key, rcv.url, ['generation.completed', 'balance.changed'], 'my hook');
  assert.match(w.id, /^whk_[0-9A-Z]{26}$/);
  assert.equal(w.url, rcv.url);
  assert.deepEqual(w.events, ['generation.completed', 'balance.changed']);
  assert.equal(w.description, 'my hook');
  assert.equal(typeof w.createdAt, 'number');
  assert.match(w.secret, /^whsec_[A-Za-z0-9+/]{32}$/, 'whsec_ + base64 of 24 bytes');
  assert.equal(Buffer.from(w.secret.slice(6), 'base64').length, 24);

  const list = assertOk(await api(srv, 'GET', '/api/webhooks', { key: a.key }), 200);
  assert.equal(list.items.length, 1);
  assert.equal(list.items[0].id, w.id);
  assert.equal(list.items[0].secret, undefined, 'GET never shows the secret');
  assert.ok(!JSON.stringify(list).includes(w.secret.slice(6)));
  assert.equal(list.nextCursor, null);
  assert.equal(assertOk(await api(srv, 'GET', '/api/webhooks', { key: b.key }), 200).items.length, 0, 'per user');
  assert.ok(!srv.stderr.includes(w.secret.slice(6)), 'the secret is not logged');

  assertError(await api(srv, 'DELETE', `/api/webhooks/${w.id}`, { key: b.key }), 403, 'UNAUTHORIZED');
  assertError(await api(srv, 'GET', `/api/webhooks/${w.id}/deliveries`, { key: b.key }), 403, 'UNAUTHORIZED');
  assertError(await api(srv, 'POST', `/api/webhooks/${w.id}/deliveries/msg_01JD3V6Z8Q4W3T9X0M2N5P7R1S/redeliver`, { key: b.key }), 403, 'UNAUTHORIZED');
  assertError(await api(srv, 'POST', `/api/webhooks/${w.id}/deliveries/msg_01JD3V6Z8Q4W3T9X0M2N5P7R1S/redeliver`, { key: a.key }), 404, 'NOT_FOUND');
  assertError(await api(srv, 'DELETE', '/api/webhooks/whk_01JD3V6Z8Q4W3T9X0M2N5P7R1S', { key: a.key }), 404, 'NOT_FOUND');
  assertError(await api(srv, 'GET', '/api/webhooks/whk_01JD3V6Z8Q4W3T9X0M2N5P7R1S/deliveries', { key: a.key }), 404, 'NOT_FOUND');
  assertError(await api(srv, 'GET', '/api/webhooks', {}), 401, 'AUTHENTICATION_REQUIRED');

  assertOk(await api(srv, 'DELETE', `/api/webhooks/${w.id}`, { key: a.key }), 200);
  assertError(await api(srv, 'DELETE', `/api/webhooks/${w.id}`, { key: a.key }), 404, 'NOT_FOUND');
  assert.equal(assertOk(await api(srv, 'GET', '/api/webhooks', { key: a.key }), 200).items.length, 0);

  const spec = JSON.parse((await api(srv, 'GET', '/api/openapi.json')).text);
  for (const p of ['/api/webhooks', '/api/webhooks/{id}', '/api/webhooks/{id}/deliveries', '/api/webhooks/{id}/deliveries/{deliveryId}/redeliver'])
    assert.ok(spec.paths[p], `OpenAPI lists ${p}`);
  assert.deepEqual(spec.paths['/api/webhooks/{id}/deliveries/{deliveryId}/redeliver'].post.parameters.map((x) => x.name), ['id', 'deliveryId']);
});

test('register: bad URL and bad events → VALIDATION_ERROR naming each field', async (t) => {
  const srv = await serverFor(t, { workers: 0 });
  const u = await createUser(srv.dataDir, { tokens: 1 });
  const bad = async (body, fields) => {
    const r = await api(srv, 'POST', '/api/webhooks', { key: u.key, body });
    assertError(r, 400, 'VALIDATION_ERROR', JSON.stringify(body));
    assert.deepEqual(errorFields(r).sort(), fields.sort(), JSON.stringify(body));
    for (const e of r.json.validationErrors) assert.ok(e.message.length > 5);
    return r;
  };
  // 127.0.0.1 is allow-listed by the harness; other loopback, private and
  // metadata addresses are not.
  const loop = await bad({ url: 'http://127.0.0.2:9/hook', events: ['balance.changed'] }, ['url']);
  assert.match(loop.json.validationErrors[0].message, /webhook URL/);
  await bad({ url: 'http://[::1]/hook', events: ['balance.changed'] }, ['url']);
  await bad({ url: 'http://169.254.169.254/latest', events: ['balance.changed'] }, ['url']);
  await bad({ url: 'http://10.1.2.3/hook', events: ['balance.changed'] }, ['url']);
  await bad({ url: 'ftp://example.com/hook', events: ['balance.changed'] }, ['url']);
  await bad({ url: 'not a url', events: ['balance.changed'] }, ['url']);
  await bad({ events: ['balance.changed'] }, ['url']);
  await bad({ url: 'http://127.0.0.1:9/hook', events: [] }, ['events']);
  await bad({ url: 'http://127.0.0.1:9/hook' }, ['events']);
  await bad({ url: 'http://127.0.0.1:9/hook', events: 'balance.changed' }, ['events']);
  await bad({ url: 'http://127.0.0.1:9/hook', events: ['balance.changed', 'generation.pending', 7] }, ['events[1]', 'events[2]']);
  await bad({ url: 'ftp://x/', events: ['nope'], description: 5 }, ['url', 'events[0]', 'description']);
  await bad({ url: 'http://127.0.0.1:9/hook', events: ['balance.changed'], description: 'x'.repeat(501) }, ['description']);
  assertError(await api(srv, 'POST', '/api/webhooks', { key: u.key, rawBody: '{', headers: { 'content-type': 'application/json' } }), 400, 'VALIDATION_ERROR');
  assert.equal(assertOk(await api(srv, 'GET', '/api/webhooks', { key: u.key }), 200).items.length, 0, 'nothing registered');
  const ok = await register(srv, u.key, 'http://127.0.0.1:9/hook', ['balance.changed', 'balance.changed']);
  assert.deepEqual(ok.events, ['balance.changed'], 'duplicates are folded');
});

test('a generation to completed delivers processing then completed, a charge delivers balance.changed', async (t) => {
  const srv = await serverFor(t, { args: ['--webhook-retry-base-ms', '100'] });
  const u = await createUser(srv.dataDir, { tokens: 10 });
  const other = await createUser(srv.dataDir, { tokens: 10 });
  const rg = await receiverFor(t);
  const rb = await receiverFor(t);
  const wg = await register(srv, u.key, rg.url, ['generation.processing', 'generation.completed', 'generation.failed']);
  const wb = await register(srv, u.key, rb.url, ['balance.changed']);
  const url = await uploadFixture(srv, u.key);
  const c = await create(srv, u.key, createBody(url));
  await start(srv, u.key, c.generationId);
  const g = await waitGen(srv, u.key, c.generationId);
  assert.equal(g.status, 'completed');
  // Another user's activity reaches neither endpoint.
  const ourl = await uploadFixture(srv, other.key);
  await create(srv, other.key, createBody(ourl));

  await waitFor(() => accepted(rg, wg.secret).length >= 2, { timeout: 15000, what: 'two generation deliveries' });
  await waitFor(() => accepted(rb, wb.secret).length >= 1, { timeout: 15000, what: 'a balance delivery' });
  const msgs = accepted(rg, wg.secret);
  // Sorted: deliveries due together are sent side by side (SPEC §8 promises no order).
  assert.deepEqual(msgs.map((m) => m.json.type).sort(), ['generation.completed', 'generation.processing'], 'one per status transition, not per progress event');
  for (const m of msgs) {
    assert.equal(m.method, 'POST');
    assert.match(m.id, /^msg_[0-9A-Z]{26}$/);
    assert.match(m.timestamp, /^\d+$/);
    assert.match(m.signature, /^v1,[A-Za-z0-9+/]+=*$/);
    assert.match(m.json.timestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/, 'ISO 8601');
    assert.equal(m.json.data._id, c.generationId);
    assert.match(m.headers['content-type'], /application\/json/);
  }
  assert.equal(msgs[0].json.data.status, 'processing');
  assert.equal(msgs[1].json.data.status, 'completed');
  assert.deepEqual(msgs[1].json.data.resultImages, g.resultImages, 'the record as of that event');
  assert.equal(msgs[1].json.data.progress, 100);

  const bal = accepted(rb, wb.secret);
  assert.equal(bal.length, 1, 'the charge (the signup grant came before the webhook)');
  assert.equal(bal[0].json.type, 'balance.changed');
  assert.deepEqual(bal[0].json.data, { tokenBalance: 9 });

  const log = await deliveries(srv, u.key, wg.id);
  assert.equal(log.length, 2);
  assert.deepEqual(log.map((d) => d.id).sort(), msgs.map((m) => m.id).sort(), 'a delivery id is its webhook-id');
  for (const d of log) {
    assert.equal(d.status, 'succeeded');
    assert.equal(d.attempts, 1);
    assert.equal(d.lastStatusCode, 204);
    assert.equal(d.nextAttemptAt, null);
    assert.equal(typeof d.createdAt, 'number');
  }
  assert.deepEqual(log.map((d) => d.type), ['generation.completed', 'generation.processing'], 'newest first');
  const page = assertOk(await api(srv, 'GET', `/api/webhooks/${wg.id}/deliveries?limit=1`, { key: u.key }), 200);
  assert.equal(page.items.length, 1);
  const page2 = assertOk(await api(srv, 'GET', `/api/webhooks/${wg.id}/deliveries?limit=1&cursor=${page.nextCursor}`, { key: u.key }), 200);
  assert.equal(page2.items.length, 1);
  assert.notEqual(page2.items[0].id, page.items[0].id);
  assert.equal(page2.nextCursor, null);
  assertError(await api(srv, 'GET', `/api/webhooks/${wg.id}/deliveries?cursor=bogus`, { key: u.key }), 400, 'VALIDATION_ERROR');
});

test('failed and cancelled generations deliver their transitions', async (t) => {
  const srv = await serverFor(t, { args: ['--test-faults', 'permanent'] });
  const u = await createUser(srv.dataDir, { tokens: 10 });
  const rcv = await receiverFor(t);
  const w = await register(srv, u.key, rcv.url, ALL.filter((e) => e !== 'balance.changed'));
  const url = await uploadFixture(srv, u.key);
  const f = await create(srv, u.key, createBody(url));
  await start(srv, u.key, f.generationId);
  assert.equal((await waitGen(srv, u.key, f.generationId)).status, 'failed');
  const c = await create(srv, u.key, createBody(url));
  assertOk(await api(srv, 'POST', `/api/generations/${c.generationId}/cancel`, { key: u.key }), 200);
  await waitFor(() => accepted(rcv, w.secret).length >= 3, { timeout: 15000, what: 'three deliveries' });
  const byGen = (id) => accepted(rcv, w.secret).filter((m) => m.json.data._id === id).map((m) => m.json.type);
  // Both were due in one pass and are sent side by side: SPEC §8 promises
  // no arrival order, only that each transition is delivered.
  assert.deepEqual(byGen(f.generationId).sort(), ['generation.failed', 'generation.processing']);
  assert.deepEqual(byGen(c.generationId), ['generation.cancelled'], 'a pending cancel never was processing');
  const failed = accepted(rcv, w.secret).find((m) => m.json.type === 'generation.failed');
  assert.equal(failed.json.data.errorCode, (await getGen(srv, u.key, f.generationId)).errorCode);
  assert.equal(failed.json.data.tokensUsed, 0, 'refunded, as recorded');
});

test('a failing receiver: retries keep the webhook-id and body; the log shows attempts; redeliver sends the same message', async (t) => {
  const srv = await serverFor(t, { workers: 0, args: ['--webhook-retry-base-ms', '100'] });
  const admin = await createUser(srv.dataDir, { tokens: 0, admin: true });
  const u = await createUser(srv.dataDir, { tokens: 1 });
  const rcv = await receiverFor(t);
  rcv.failNext = 2;
  const w = await register(srv, u.key, rcv.url, ['balance.changed']);
  assertOk(await api(srv, 'POST', `/api/admin/users/${u.userId}/tokens`, { key: admin.key, body: { amount: 5 } }), 200);
  await waitFor(() => rcv.received.length >= 3, { timeout: 20000, what: 'three attempts (100 ms, then 6 s)' });
  const [a1, a2, a3] = rcv.received;
  assert.deepEqual([a1.status, a2.status, a3.status], [500, 500, 204]);
  assert.equal(a2.id, a1.id, 'the same webhook-id on every attempt');
  assert.equal(a3.id, a1.id);
  assert.equal(a2.body, a1.body, 'the same bytes');
  assert.equal(a3.body, a1.body);
  for (const m of rcv.received) assert.ok(verifySignature(w.secret, m.headers, m.body), 'each attempt signed');
  assert.deepEqual(a1.json.data, { tokenBalance: 6 });
  let log;
  await waitFor(async () => { log = await deliveries(srv, u.key, w.id); return log[0]?.status === 'succeeded'; }, { what: 'succeeded in the log' });
  assert.equal(log.length, 1);
  assert.equal(log[0].id, a1.id);
  assert.equal(log[0].attempts, 3);
  assert.equal(log[0].lastStatusCode, 204);

  const rd = assertOk(await api(srv, 'POST', `/api/webhooks/${w.id}/deliveries/${a1.id}/redeliver`, { key: u.key }), 202);
  assert.equal(rd.id, a1.id);
  assert.equal(rd.status, 'pending');
  await waitFor(() => rcv.received.length >= 4, { timeout: 10000, what: 'the redelivery' });
  assert.equal(rcv.received[3].id, a1.id, 'redeliver keeps the webhook-id');
  assert.equal(rcv.received[3].body, a1.body, 'and the body');
  await waitFor(async () => (await deliveries(srv, u.key, w.id))[0].attempts === 4, { what: 'four attempts logged' });
  assert.equal(rcv.received.length, 4, 'nothing sent twice');
});

test('SIGKILL with a delivery pending (receiver failing) → delivered after restart', async (t) => {
  const srv = await serverFor(t, { workers: 0, args: ['--webhook-retry-base-ms', '1000'] });
  const admin = await createUser(srv.dataDir, { tokens: 0, admin: true });
  const u = await createUser(srv.dataDir, { tokens: 1 });
  const rcv = await receiverFor(t);
  rcv.failing = true;
  const w = await register(srv, u.key, rcv.url, ['balance.changed']);
  assertOk(await api(srv, 'POST', `/api/admin/users/${u.userId}/tokens`, { key: admin.key, body: { amount: 2 } }), 200);
  await waitFor(async () => (await deliveries(srv, u.key, w.id))[0]?.attempts >= 1, { timeout: 10000, interval: 20, what: 'a failed first attempt' });
  const k = await srv.kill();
  assert.equal(k.signal, 'SIGKILL');
  const id = rcv.received[0].id;
  rcv.failing = false;
  await srv.restart();
  await waitFor(() => rcv.received.some((m) => m.status === 204), { timeout: 40000, what: 'delivery after the restart' });
  const ok = rcv.received.filter((m) => m.status === 204);
  assert.equal(ok.length, 1);
  assert.equal(ok[0].id, id, 'the same message');
  assert.equal(ok[0].body, rcv.received[0].body);
  assert.ok(verifySignature(w.secret, ok[0].headers, ok[0].body));
  await waitFor(async () => (await deliveries(srv, u.key, w.id))[0].status === 'succeeded', { what: 'succeeded after restart' });
});
