// Races a demanding client will hit sooner or later: resuming a stream while
// events are being written, cancels racing completion, a crash in the middle
// of a burst of creates. The ledger check after each test does the rest.
import {
  test, assert, serverFor, api, assertOk, assertError, createUser, uploadFixture, createBody,
  create, start, getGen, waitGen, balance, transactions, sse, summarize, sleep, countGenerations,
} from './harness.mjs';

const terminal = (f) => f.event === 'generation' && ['completed', 'failed', 'cancelled'].includes(f.json?.status);

test('resuming with Last-Event-ID while a generation is running: replay + live, no gap, no repeat (5 clients at different moments)', async (t) => {
  const srv = await serverFor(t, { args: ['--test-faults', 'transient=2,delay_ms=300'] });
  const u = await createUser(srv.dataDir, { tokens: 5 });
  const url = await uploadFixture(srv, u.key);
  const c = await create(srv, u.key, createBody(url));
  const path = `/api/generations/${c.generationId}/events`;
  const a = await sse(srv, path, { key: u.key });
  t.after(() => a.close());
  await a.until(() => true, 3000);
  await start(srv, u.key, c.generationId);
  // Join at several moments, each resuming from the newest frame A has seen.
  const late = [];
  for (let i = 0; i < 5; i++) {
    await sleep(120);
    if (a.done) break;
    const from = a.frames[a.frames.length - 1];
    const b = await sse(srv, path, { key: u.key, lastEventId: from.id });
    t.after(() => b.close());
    late.push({ b, from });
  }
  const all = await a.collect(terminal, 20000);
  await a.waitEnd(3000);
  assert.equal(all[all.length - 1].json.status, 'completed', summarize(all));
  assert.ok(late.length >= 2, 'at least two clients joined mid-flight');
  t.diagnostic(`${late.length} late clients over ${all.length} frames`);
  for (const { b, from } of late) {
    await b.waitEnd(5000);
    const want = all.slice(all.indexOf(from) + 1);
    assert.deepEqual(b.frames.map((f) => f.id), want.map((f) => f.id), `resume after ${from.id}: got ${summarize(b.frames)} want ${summarize(want)}`);
    assert.deepEqual(b.frames.map((f) => f.data), want.map((f) => f.data));
  }
});

test('cancels racing completion: each cancel answer agrees with the final state; refunds only for cancelled ones', async (t) => {
  const srv = await serverFor(t, { workers: 2 });
  const u = await createUser(srv.dataDir, { tokens: 30 });
  const url = await uploadFixture(srv, u.key);
  const ids = [];
  for (let i = 0; i < 16; i++) ids.push((await create(srv, u.key, createBody(url, { parameters: { seed: i } }))).generationId);
  await Promise.all(ids.map((id) => start(srv, u.key, id)));
  // Cancel all at staggered moments while the workers run.
  const answers = await Promise.all(ids.map(async (id, i) => {
    await sleep(((i * 7) % 16) * 150); // scrambled moments over ~2 s
    return [id, await api(srv, 'POST', `/api/generations/${id}/cancel`, { key: u.key })];
  }));
  let cancelled = 0;
  for (const [id, r] of answers) {
    const g = await waitGen(srv, u.key, id);
    if (r.status === 200) {
      assert.equal(r.json.data.status, 'cancelled');
      assert.equal(g.status, 'cancelled', `cancel answered 200 but ${id} ended ${g.status}`);
      assert.deepEqual(g.resultImages, [], `cancelled ${id} must have no results`);
      cancelled++;
    } else {
      assertError(r, 400, 'INVALID_GENERATION_STATUS', `cancel of ${id}`);
      assert.equal(g.status, 'completed', `cancel refused but ${id} ended ${g.status}`);
    }
  }
  t.diagnostic(`${cancelled} of 16 cancelled, ${16 - cancelled} completed first`);
  assert.equal(await balance(srv, u.key), 30 - (16 - cancelled), `balance: ${cancelled} cancelled of 16`);
  const tx = await transactions(srv, u.key);
  assert.equal(tx.filter((x) => x.kind === 'refund').length, cancelled);
});

test('SIGKILL during a burst of creates: after restart every generation has its charge, balance matches, nothing half-written', async (t) => {
  const srv = await serverFor(t, {});
  const u = await createUser(srv.dataDir, { tokens: 400 });
  const url = await uploadFixture(srv, u.key);
  const outcomes = [];
  const burst = Array.from({ length: 300 }, (_, i) => api(srv, 'POST', '/api/generation/create', { key: u.key, body: createBody(url, { parameters: { seed: i } }), timeout: 10000 })
    .then((r) => outcomes.push(r.status), () => outcomes.push('dropped')));
  await sleep(150);
  await srv.kill();
  await Promise.all(burst);
  await srv.restart();
  const n = await countGenerations(srv, u.key);
  t.diagnostic(`${outcomes.filter((s) => s === 201).length} acknowledged, ${n} stored, ${outcomes.filter((s) => s === 'dropped').length} dropped`);
  assert.ok(outcomes.filter((s) => s === 201).length <= n, 'every acknowledged create survived the crash (durable commits)');
  assert.equal(await balance(srv, u.key), 400 - n, `balance must be 400 - ${n} generations`);
  // The ledger check after this test verifies one charge per generation.
});
