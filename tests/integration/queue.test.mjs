// The fair queue (SPEC §4 "Batches, templates, queue": Priority, QUEUE_FULL,
// GET /api/queue, queuePosition/eta). Jobs are kept running with the
// --test-faults delay_ms seam, so the order of claims is deterministic.
import { execFileSync } from 'node:child_process';
import {
  PG, test, assert, serverFor, uploadFixture, createBody, create, api, assertError, assertOk, balance,
  waitGen, waitFor, sse, query, countGenerations,
} from './harness.mjs';

async function generate(srv, key, body) {
  return assertOk(await api(srv, 'POST', '/api/generate', { key, body }), 202, 'one-step generate');
}

// The plan CLI/route is another branch's: set the plan in the database
// (harness query() on PostgreSQL; its SQLite form is read-only).
async function makePro(srv, userId) {
  const sql = `UPDATE users SET plan = 'pro' WHERE id = '${userId}'`;
  if (PG) await query(srv.dbPath, sql);
  else execFileSync('sqlite3', ['-cmd', '.timeout 5000', srv.dbPath, sql]);
}

test('high priority overtakes queued normal work', async (t) => {
  const srv = await serverFor(t, { workers: 1, args: ['--test-faults', 'delay_ms=400'] });
  const free = await srv.createUser({ tokens: 50 });
  const pro = await srv.createUser({ tokens: 50 });
  await makePro(srv, pro.userId);
  const url = await uploadFixture(srv, free.key);
  const purl = await uploadFixture(srv, pro.key);
  const normal = [];
  for (let i = 0; i < 3; i++) normal.push((await generate(srv, free.key, createBody(url))).generationId);
  const high = (await generate(srv, pro.key, createBody(purl, { priority: 'high' }))).generationId;
  const g = (await api(srv, 'GET', `/api/generations/${high}`, { key: pro.key })).json.data;
  if (g.stage === 'queued') assert.equal(g.queuePosition, 1, 'a high item is next in line');
  const done = {};
  for (const [k, id] of [[pro.key, high], ...normal.map((id) => [free.key, id])]) {
    done[id] = (await waitGen(srv, k, id)).completedAt;
  }
  // The first normal one may already run; the other two wait behind the high one.
  assert.ok(done[high] < done[normal[1]] && done[high] < done[normal[2]],
    `high ${done[high]} must complete before the queued normal ones ${done[normal[1]]}, ${done[normal[2]]}`);
});

test('a user with many queued items does not delay another user past the running cap', async (t) => {
  const srv = await serverFor(t, { workers: 2, args: ['--user-running-cap', '1', '--test-faults', 'delay_ms=500'] });
  const a = await srv.createUser({ tokens: 100 });
  const b = await srv.createUser({ tokens: 10 });
  const aurl = await uploadFixture(srv, a.key);
  const burl = await uploadFixture(srv, b.key);
  const as = [];
  for (let i = 0; i < 20; i++) as.push((await generate(srv, a.key, createBody(aurl))).generationId);
  const bid = (await generate(srv, b.key, createBody(burl))).generationId;
  const bg = await waitGen(srv, b.key, bid, { timeout: 30000 });
  assert.equal(bg.status, 'completed');
  // Alone, A had both slots; then A holds one (the cap) and B gets the next free one.
  const aDone = await countGenerations(srv, a.key, 'completed');
  assert.ok(aDone <= 4, `B's single item waited for ${aDone} of A's (cap 1 of 2 workers allows ~2)`);
  for (const id of as) await api(srv, 'POST', `/api/generations/${id}/cancel`, { key: a.key });
});

test('the user stream (/api/events) repeats queuePosition and eta of each queued item as they fall', async (t) => {
  const srv = await serverFor(t, { workers: 1, args: ['--test-faults', 'delay_ms=400'] });
  const u = await srv.createUser({ tokens: 50 });
  const other = await srv.createUser({ tokens: 50 });
  const url = await uploadFixture(srv, u.key);
  const ourl = await uploadFixture(srv, other.key);
  for (let i = 0; i < 3; i++) await generate(srv, other.key, createBody(ourl));
  const mine = [];
  for (let i = 0; i < 2; i++) mine.push((await generate(srv, u.key, createBody(url))).generationId);
  // Connected after the items were queued: the stream finds them itself.
  const stream = await sse(srv, '/api/events', { key: u.key, timeout: 40000 });
  try {
    for (const id of mine) await stream.until((f) => f.json?._id === id && f.json.status === 'completed', 30000);
    for (const id of mine) {
      const seen = stream.frames.filter((f) => f.json?._id === id && f.json.queuePosition)
        .map((f) => [f.json.queuePosition, f.json.eta]);
      assert.ok(new Set(seen.map((p) => p[0])).size >= 2, `${id}: positions seen ${JSON.stringify(seen)}`);
      for (let i = 1; i < seen.length; i++) assert.ok(seen[i][0] <= seen[i - 1][0], `positions fall: ${JSON.stringify(seen)}`);
      // The ETA follows the moving average of processing times, which the
      // finishing jobs move too: it falls overall, not at every step.
      assert.ok(seen.at(-1)[1] < seen[0][1], `etas fall: ${JSON.stringify(seen)}`);
    }
    // Position frames carry no id: Last-Event-ID resumes are unaffected.
    assert.ok(stream.frames.filter((f) => f.json?.queuePosition && f.id == null).length > 0);
  } finally {
    stream.close();
  }
});

test('QUEUE_FULL at --queue-max: 503 with Retry-After, nothing created or charged', async (t) => {
  const srv = await serverFor(t, { workers: 0, args: ['--queue-max', '2'] });
  const u = await srv.createUser({ tokens: 50 });
  const url = await uploadFixture(srv, u.key);
  await generate(srv, u.key, createBody(url));
  const pending = await create(srv, u.key, createBody(url));
  await generate(srv, u.key, createBody(url));
  const before = await balance(srv, u.key);
  const n = await countGenerations(srv, u.key);

  const r = await api(srv, 'POST', '/api/generate', { key: u.key, body: createBody(url) });
  assertError(r, 503, 'QUEUE_FULL', 'one-step generate past --queue-max');
  assert.ok(Number(r.headers.get('retry-after')) > 0, 'Retry-After is set');
  const s = await api(srv, 'POST', '/api/generate', { key: u.key, body: { generationId: pending.generationId } });
  assertError(s, 503, 'QUEUE_FULL', 'two-step generate past --queue-max');
  assert.ok(Number(s.headers.get('retry-after')) > 0, 'Retry-After is set');

  assert.equal(await balance(srv, u.key), before, 'nothing charged');
  assert.equal(await countGenerations(srv, u.key), n, 'nothing created');
  const p = (await api(srv, 'GET', `/api/generations/${pending.generationId}`, { key: u.key })).json.data;
  assert.equal(p.status, 'pending', 'the refused start leaves it pending');
  // Creating (step 1) does not queue, so it is not refused.
  await create(srv, u.key, createBody(url));

  const q = assertOk(await api(srv, 'GET', '/api/queue', { key: u.key }), 200, 'GET /api/queue');
  assert.equal(q.depth, 2);
  assert.equal(q.running, 0);
  assert.equal(q.workers, 0, 'an API-only serve has no worker slots');
  assert.deepEqual(q.items.map((i) => i.position), [1, 2]);
  for (const i of q.items) {
    assert.match(i.generationId, /^gen_/);
    assert.ok(Number.isInteger(i.eta) && i.eta > 0, `eta ${i.eta}`);
  }
  for (const i of q.items) await api(srv, 'POST', `/api/generations/${i.generationId}/cancel`, { key: u.key });
});

test('queuePosition and eta in events fall as the queue drains; GET /api/queue shape', async (t) => {
  const srv = await serverFor(t, { workers: 1, args: ['--test-faults', 'delay_ms=400'] });
  const u = await srv.createUser({ tokens: 50 });
  const other = await srv.createUser({ tokens: 50 });
  const url = await uploadFixture(srv, u.key);
  const ourl = await uploadFixture(srv, other.key);
  // Another user's work ahead: their claims and completions move ours up.
  for (let i = 0; i < 3; i++) await generate(srv, other.key, createBody(ourl));
  const id = (await generate(srv, u.key, createBody(url))).generationId;

  const q = assertOk(await api(srv, 'GET', '/api/queue', { key: u.key }), 200, 'GET /api/queue');
  assert.deepEqual(Object.keys(q).sort(), ['depth', 'items', 'running', 'workers']);
  assert.ok(q.depth >= 1 && q.running <= 1, JSON.stringify(q));
  await waitFor(async () => (await api(srv, 'GET', '/api/queue', { key: u.key })).json.data.workers === 1,
    { what: 'the worker heartbeat' });
  assert.equal(q.items.length, 1);
  assert.equal(q.items[0].generationId, id);
  assert.ok(q.items[0].position >= 2, `position ${q.items[0].position}`);
  assert.ok(q.items[0].eta > 0);

  const stream = await sse(srv, `/api/generations/${id}/events`, { key: u.key, timeout: 30000 });
  await stream.until((f) => f.json?.status === 'completed', 30000);
  const seen = stream.frames.filter((f) => f.json?.queuePosition).map((f) => [f.json.queuePosition, f.json.eta]);
  const positions = seen.map((p) => p[0]);
  assert.ok(new Set(positions).size >= 2, `positions seen: ${JSON.stringify(seen)}`);
  for (let i = 1; i < seen.length; i++) assert.ok(seen[i][0] <= seen[i - 1][0], `positions fall: ${JSON.stringify(seen)}`);
  assert.ok(positions.at(-1) < positions[0]);
  // The ETA also follows the moving average that finishing jobs move.
  assert.ok(seen.at(-1)[1] < seen[0][1], `etas fall: ${JSON.stringify(seen)}`);
  const after = assertOk(await api(srv, 'GET', '/api/queue', { key: u.key }), 200);
  assert.deepEqual(after.items, []);
});

// The stream's server (A, API only) learns of B's commits by its
// cross-process poll or notification, later than its own queue reads see
// them: the widest window for a position frame to run ahead of the events.
test('a user stream never shows a generation before its own events: no status goes back while another process queues fast', async (t) => {
  const a = await serverFor(t, { workers: 0 });
  const b = await serverFor(t, { dataDir: a.dataDir, keepData: true, workers: 2, args: ['--test-faults', 'delay_ms=30'] });
  const u = await a.createUser({ tokens: 200 });
  const url = await uploadFixture(b, u.key);
  const stream = await sse(a, '/api/events', { key: u.key, timeout: 60000 });
  // Its first frame (the balance) sets its cursor: everything after is news.
  await stream.until((f) => f.event === 'balance', 10000);
  const twoStep = async () => {
    const { generationId } = await create(b, u.key, createBody(url));
    await generate(b, u.key, { generationId });
    return generationId;
  };
  try {
    const ids = [];
    // The stream re-reads positions from the first queued item on; the
    // later items are created and queued meanwhile.
    for (let round = 0; round < 5; round++) ids.push(...await Promise.all(Array.from({ length: 6 }, twoStep)));
    for (const id of ids) await stream.until((f) => f.json?._id === id && f.json.status === 'completed', 30000);
    for (const id of ids) {
      const statuses = [];
      for (const f of stream.frames) {
        if (f.event === 'generation' && f.json?._id === id && statuses.at(-1) !== f.json.status) statuses.push(f.json.status);
      }
      assert.deepEqual(statuses, ['pending', 'processing', 'completed'], `${id}: every state once, in order`);
    }
  } finally {
    stream.close();
  }
});
