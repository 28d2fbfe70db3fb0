// Real-time status over Server-Sent Events: per-generation streams, resume
// with Last-Event-ID (header and query), and the per-user /api/events stream
// with balance events. No polling: every wait here is on pushed frames.
import { before, after } from 'node:test';
import {
  test, assert, startServer, api, assertOk, assertError, createUser, uploadFixture, createBody,
  create, start, sse, summarize, uniqueEmail,
} from './harness.mjs';

let srv;
before(async () => { srv = await startServer(); });
after(() => srv?.stop());

const STAGES = ['queued', 'fetching_inputs', 'generating', 'storing'];
const terminal = (f) => f.event === 'generation' && ['completed', 'failed', 'cancelled'].includes(f.json?.status);

function assertIncreasingIds(frames, what) {
  let prev = -Infinity;
  for (const f of frames) {
    assert.ok(f.id !== undefined && /^\d+$/.test(f.id), `${what}: every frame needs a numeric id: ${summarize(frames)}`);
    assert.ok(Number(f.id) > prev, `${what}: ids must strictly increase: ${summarize(frames)}`);
    prev = Number(f.id);
  }
}

test('generation stream: snapshot, then pending → processing (queued → fetching_inputs → generating → storing, progress rising) → completed, then closed', async (t) => {
  const u = await createUser(srv.dataDir, { tokens: 5 });
  const url = await uploadFixture(srv, u.key);
  const c = await create(srv, u.key, createBody(url));
  const a = await sse(srv, `/api/generations/${c.generationId}/events`, { key: u.key });
  t.after(() => a.close());
  assert.equal(a.status, 200);
  assert.match(a.headers.get('content-type'), /^text\/event-stream/);
  assert.match(a.headers.get('cache-control') || '', /no-cache|no-store/, 'SSE must not be cached');
  const first = await a.until(() => true, 3000);
  assert.equal(first.event, 'generation');
  assert.equal(first.json._id, c.generationId);
  assert.equal(first.json.status, 'pending', 'the snapshot is the current record');
  assert.equal(a.retry, 2000, 'the stream starts with retry: 2000');

  await start(srv, u.key, c.generationId);
  const frames = await a.collect(terminal, 20000);
  await a.waitEnd(3000);
  assert.equal(a.frames.length, frames.length, 'nothing after the terminal record');
  assert.ok(frames.every((f) => f.event === 'generation' && f.json?._id === c.generationId), `only this generation's records: ${summarize(frames)}`);
  assertIncreasingIds(frames, 'generation stream');

  const statuses = frames.map((f) => f.json.status);
  const last = frames[frames.length - 1].json;
  assert.equal(last.status, 'completed', `ended ${last.status}: ${last.error}`);
  assert.equal(last.progress, 100);
  assert.ok(last.resultImages.length >= 1, 'the terminal record carries the result images');
  // Status order: pending* processing+ completed.
  const order = ['pending', 'processing', 'completed'];
  for (let i = 1; i < statuses.length; i++) {
    assert.ok(order.indexOf(statuses[i]) >= order.indexOf(statuses[i - 1]), `status went backwards: ${statuses.join(' → ')}`);
  }
  assert.ok(statuses.includes('processing'), `no processing frame: ${summarize(frames)}`);
  // Stages inside processing, in order, each seen.
  const stages = frames.filter((f) => f.json.status === 'processing').map((f) => f.json.stage);
  for (let i = 1; i < stages.length; i++) {
    assert.ok(STAGES.indexOf(stages[i]) >= STAGES.indexOf(stages[i - 1]), `stages out of order: ${stages.join(' → ')}`);
  }
  for (const s of STAGES) assert.ok(stages.includes(s), `stage ${s} never streamed: ${stages.join(' → ')}`);
  const queued = frames.find((f) => f.json.stage === 'queued');
  assert.ok(queued.json.queuePosition >= 1, 'queuePosition is set while queued');
  // Progress never decreases.
  for (let i = 1; i < frames.length; i++) {
    assert.ok(frames[i].json.progress >= frames[i - 1].json.progress, `progress decreased: ${summarize(frames)}`);
  }
  // Consecutive frames differ (one event per change, no duplicates).
  for (let i = 1; i < frames.length; i++) {
    assert.notDeepEqual(frames[i].json, frames[i - 1].json, `duplicate frame ${frames[i].id}`);
  }

  // Resume from the first change: exactly the later events, no gaps, no repeats; then closed.
  const from = frames[1];
  const b = await sse(srv, `/api/generations/${c.generationId}/events`, { key: u.key, lastEventId: from.id });
  t.after(() => b.close());
  await b.waitEnd(5000);
  assert.deepEqual(b.frames.map((f) => [f.id, f.data]), frames.slice(2).map((f) => [f.id, f.data]),
    `resume after ${from.id}: got ${summarize(b.frames)}, want ${summarize(frames.slice(2))}`);
  // Same with ?lastEventId= (for clients that cannot set headers).
  const q = await sse(srv, `/api/generations/${c.generationId}/events?lastEventId=${from.id}`, { key: u.key });
  t.after(() => q.close());
  await q.waitEnd(5000);
  assert.deepEqual(q.frames.map((f) => f.id), frames.slice(2).map((f) => f.id), 'resume with ?lastEventId=');
  // Resume from the snapshot's id: everything after it.
  const s = await sse(srv, `/api/generations/${c.generationId}/events`, { key: u.key, lastEventId: frames[0].id });
  t.after(() => s.close());
  await s.waitEnd(5000);
  assert.deepEqual(s.frames.map((f) => f.id), frames.slice(1).map((f) => f.id), 'resume after the snapshot id');
  // Resume from the terminal event: nothing more to send; closed at once.
  const e = await sse(srv, `/api/generations/${c.generationId}/events`, { key: u.key, lastEventId: frames[frames.length - 1].id });
  t.after(() => e.close());
  await e.waitEnd(5000);
  assert.equal(e.frames.length, 0, `nothing after the terminal event: ${summarize(e.frames)}`);
  // A fresh client after the end: the terminal snapshot, then closed.
  const d = await sse(srv, `/api/generations/${c.generationId}/events`, { key: u.key });
  t.after(() => d.close());
  await d.waitEnd(5000);
  assert.equal(d.frames.length, 1);
  assert.equal(d.frames[0].json.status, 'completed');
  assert.deepEqual(d.frames[0].json, last);
});

test('two live clients on one generation see the same events; cancel ends both streams with the cancelled record', async (t) => {
  const u = await createUser(srv.dataDir, { tokens: 5 });
  const url = await uploadFixture(srv, u.key);
  const c = await create(srv, u.key, createBody(url));
  const a = await sse(srv, `/api/generations/${c.generationId}/events`, { key: u.key });
  const b = await sse(srv, `/api/generations/${c.generationId}/events`, { key: u.key });
  t.after(() => { a.close(); b.close(); });
  await a.until(() => true, 3000);
  await b.until(() => true, 3000);
  assertOk(await api(srv, 'POST', `/api/generations/${c.generationId}/cancel`, { key: u.key }), 200);
  const fa = await a.collect(terminal, 5000);
  const fb = await b.collect(terminal, 5000);
  await a.waitEnd(3000);
  await b.waitEnd(3000);
  assert.equal(fa[fa.length - 1].json.status, 'cancelled');
  assert.equal(fa[fa.length - 1].json.tokensUsed, 0);
  assert.deepEqual(fa.map((f) => f.data), fb.map((f) => f.data));
});

test('/api/events: balance snapshot, then balance and generation events live; resume with Last-Event-ID; other users\' events never leak', async (t) => {
  const u = await createUser(srv.dataDir, { tokens: 5 });
  const other = await createUser(srv.dataDir, { tokens: 5 });
  const admin = await createUser(srv.dataDir, { tokens: 0, admin: true });
  const url = await uploadFixture(srv, u.key);
  const ev = await sse(srv, '/api/events', { key: u.key });
  t.after(() => ev.close());
  assert.equal(ev.status, 200);
  const snap = await ev.until(() => true, 3000);
  assert.equal(snap.event, 'balance');
  assert.deepEqual(snap.json, { tokenBalance: 5 });

  const c = await create(srv, u.key, createBody(url));
  await ev.until((f) => f.event === 'balance' && f.json.tokenBalance === 4, 5000);
  await ev.until((f) => f.event === 'generation' && f.json._id === c.generationId && f.json.status === 'pending', 5000);
  // Another user's activity must not show up.
  const oc = await create(srv, other.key, createBody(await uploadFixture(srv, other.key)));
  await start(srv, u.key, c.generationId);
  await ev.until((f) => f.event === 'generation' && f.json._id === c.generationId && f.json.status === 'completed', 20000);
  assertOk(await api(srv, 'POST', `/api/admin/users/${u.userId}/tokens`, { key: admin.key, body: { amount: 10, reason: 'bonus' } }), 200);
  const last = await ev.until((f) => f.event === 'balance' && f.json.tokenBalance === 14, 5000);
  assert.ok(!ev.frames.some((f) => f.json?._id === oc.generationId || f.json?.userId === other.userId), 'another user\'s events leaked');
  const upTo = ev.frames.slice(0, ev.frames.indexOf(last) + 1);
  assertIncreasingIds(upTo, '/api/events');
  const balances = upTo.filter((f) => f.event === 'balance').map((f) => f.json.tokenBalance);
  assert.deepEqual(balances, [5, 4, 14], 'a balance event on every balance change, none for unchanged balances');

  // Resume after the first event past the snapshot: exactly the rest.
  const r = await sse(srv, '/api/events', { key: u.key, lastEventId: upTo[1].id });
  t.after(() => r.close());
  await r.until((f) => f.id === last.id, 5000);
  const got = r.frames.slice(0, r.frames.findIndex((f) => f.id === last.id) + 1);
  assert.deepEqual(got.map((f) => [f.event, f.id, f.data]), upTo.slice(2).map((f) => [f.event, f.id, f.data]), `resume: got ${summarize(got)}`);
  // The stream stays open and keeps going live.
  const c2 = await create(srv, u.key, createBody(url));
  await r.until((f) => f.event === 'generation' && f.json._id === c2.generationId, 5000);
  await ev.until((f) => f.event === 'generation' && f.json._id === c2.generationId, 5000);
  assert.ok(!r.done && !ev.done, '/api/events never ends by itself');
});

test('SSE auth: no credentials → 401; cookie sessions may stream; a foreign generation → 403', async (t) => {
  assertError(await api(srv, 'GET', '/api/events', { timeout: 5000 }), 401, 'AUTHENTICATION_REQUIRED', '/api/events without credentials');
  const su = await api(srv, 'POST', '/api/auth/signup', { body: { name: 'Streamer', email: uniqueEmail('sse'), password: 'long enough pw' }, origin: srv.baseUrl });
  assertOk(su, 201, 'signup');
  const cookie = su.headers.getSetCookie().find((c) => c.startsWith('ss_session=')).split(';')[0];
  const s = await sse(srv, '/api/events', { cookie });
  t.after(() => s.close());
  assert.equal(s.status, 200);
  const f = await s.until(() => true, 3000);
  assert.deepEqual(f.json, { tokenBalance: 10 });
  const owner = await createUser(srv.dataDir, { tokens: 1 });
  const c = await create(srv, owner.key, createBody(await uploadFixture(srv, owner.key)));
  const x = await sse(srv, `/api/generations/${c.generationId}/events`, { cookie });
  t.after(() => x.close());
  assert.equal(x.status, 403);
  assert.equal(x.json?.code, 'UNAUTHORIZED');
  const nf = await sse(srv, '/api/generations/gen_01HZZZZZZZZZZZZZZZZZZZZZZZ/events', { cookie });
  assert.equal(nf.status, 404);
  assert.equal(nf.json?.code, 'GENERATION_NOT_FOUND');
});

test('an idle stream gets a ": ping" comment heartbeat within ~15 s', { timeout: 30000 }, async (t) => {
  const u = await createUser(srv.dataDir, { tokens: 0 });
  const s = await sse(srv, '/api/events', { key: u.key });
  t.after(() => s.close());
  await s.until(() => true, 3000);
  const { waitFor } = await import('./harness.mjs');
  await waitFor(() => s.comments.some((c) => /^:\s*ping/.test(c)) || s.done, { timeout: 18000, interval: 200, what: 'a ": ping" heartbeat' });
  assert.ok(!s.done, 'the stream must stay open while idle');
  assert.ok(s.comments.some((c) => /^:\s*ping/.test(c)));
});

test('/api/events with Last-Event-ID: 0 replays the user\'s whole history in order (grant, charge, generation changes, refund)', async (t) => {
  const u = await createUser(srv.dataDir, { tokens: 3 });
  const url = await uploadFixture(srv, u.key);
  const c = await create(srv, u.key, createBody(url));
  assertOk(await api(srv, 'POST', `/api/generations/${c.generationId}/cancel`, { key: u.key }), 200);
  const s = await sse(srv, '/api/events', { key: u.key, lastEventId: 0 });
  t.after(() => s.close());
  await s.until((f) => f.event === 'generation' && f.json?.status === 'cancelled', 5000);
  await s.until((f) => f.event === 'balance' && f.json?.tokenBalance === 3 && s.frames.indexOf(f) > 0, 5000);
  const bal = s.frames.filter((f) => f.event === 'balance').map((f) => f.json.tokenBalance);
  assert.deepEqual(bal, [3, 2, 3], `balance history: grant 3, charge → 2, refund → 3; got ${summarize(s.frames)}`);
  const gens = s.frames.filter((f) => f.event === 'generation').map((f) => f.json.status);
  assert.deepEqual([gens[0], gens[gens.length - 1]], ['pending', 'cancelled']);
  assertIncreasingIds(s.frames, 'replay');
});
