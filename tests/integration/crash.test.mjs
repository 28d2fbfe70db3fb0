// Crashes and shutdown: a SIGKILLed worker's generation is recovered through
// its lease after restart; SIGTERM exits 0, closes streams and loses nothing.
import {
  test, assert, serverFor, api, assertOk, createUser, uploadFixture, createBody, create, start,
  getGen, waitGen, balance, transactions, query, sse,
} from './harness.mjs';

test('SIGKILL while processing, restart on the same data dir → the generation ends completed or failed-and-refunded, never stuck', async (t) => {
  const args = ['--test-faults', 'delay_ms=4000', '--lease-seconds', '2'];
  const srv = await serverFor(t, { args });
  const u = await createUser(srv.dataDir, { tokens: 5 });
  const url = await uploadFixture(srv, u.key);
  const c = await create(srv, u.key, createBody(url));
  await start(srv, u.key, c.generationId);
  await waitGen(srv, u.key, c.generationId, { pred: (g) => g.stage === 'generating', timeout: 10000, what: 'stage generating' });
  const k = await srv.kill();
  assert.equal(k.signal, 'SIGKILL');

  // The crash left the generation claimed by a dead worker.
  const [row] = await query(srv.dbPath, `SELECT status, lease_owner FROM generations WHERE id = '${c.generationId}'`);
  assert.equal(row.status, 'processing', 'a crash mid-flight leaves it processing');

  await srv.restart();
  const g = await waitGen(srv, u.key, c.generationId, { timeout: 30000, what: 'recovery after SIGKILL' });
  if (g.status === 'completed') {
    assert.ok(g.retryCount >= 1, 'a lease that ran out counts a retry');
    assert.ok(g.resultImages.length >= 1);
    for (const r of g.resultImages) assert.equal((await fetch(r)).status, 200, `result ${r}`);
    assert.equal(await balance(srv, u.key), 4);
  } else {
    assert.equal(g.status, 'failed', `after a crash it must complete or fail, got ${g.status}`);
    assert.equal(g.tokensUsed, 0);
    assert.equal(await balance(srv, u.key), 5, 'failed after a crash → refunded');
  }
  const rows = (await transactions(srv, u.key)).filter((x) => x.generationId === c.generationId);
  assert.equal(rows.filter((x) => x.kind === 'charge').length, 1);
  assert.ok(rows.filter((x) => x.kind === 'refund').length <= 1);
  // The restarted server works normally.
  const c2 = await create(srv, u.key, createBody(url));
  const d = assertOk(await api(srv, 'POST', '/api/generate', { key: u.key, body: { generationId: c2.generationId }, headers: { prefer: 'wait=30' } }), 200);
  assert.equal(d.status, 'completed');
});

test('SIGTERM: exit code 0, open SSE streams closed, a processing generation is not lost (queued or done, completed after restart)', async (t) => {
  const args = ['--test-faults', 'delay_ms=2500'];
  const srv = await serverFor(t, { args });
  const u = await createUser(srv.dataDir, { tokens: 5 });
  const url = await uploadFixture(srv, u.key);
  const c = await create(srv, u.key, createBody(url));
  await start(srv, u.key, c.generationId);
  await waitGen(srv, u.key, c.generationId, { pred: (g) => g.stage === 'generating', timeout: 10000, what: 'stage generating' });
  const pend = await create(srv, u.key, createBody(url));
  const stream = await sse(srv, '/api/events', { key: u.key });
  assert.equal(stream.status, 200);
  await stream.until((f) => f.event === 'balance');

  const exit = await srv.sigterm(20000);
  assert.ok(!exit.timedOut, 'the server must exit by itself after SIGTERM');
  assert.equal(exit.signal, null, `exit by signal ${exit.signal}`);
  assert.equal(exit.code, 0, 'SIGTERM → exit code 0');
  await stream.waitEnd(2000);

  const [row] = await query(srv.dbPath, `SELECT status, stage, lease_owner, tokens_used FROM generations WHERE id = '${c.generationId}'`);
  assert.ok(row.status === 'completed' || (row.status === 'processing' && row.stage === 'queued' && row.lease_owner == null),
    `after SIGTERM the generation must be done or back in the queue, got ${JSON.stringify(row)}`);
  const [prow] = await query(srv.dbPath, `SELECT status FROM generations WHERE id = '${pend.generationId}'`);
  assert.equal(prow.status, 'pending', 'a pending generation stays pending across a restart');

  await srv.restart();
  const g = await waitGen(srv, u.key, c.generationId, { timeout: 30000 });
  assert.equal(g.status, 'completed', `nothing lost: ${g.status} ${g.error || ''}`);
  assert.ok(g.resultImages.length >= 1);
  assert.equal(await balance(srv, u.key), 3);
  assert.equal((await getGen(srv, u.key, pend.generationId)).status, 'pending');
});

test('SIGTERM on an idle server exits 0 promptly', async (t) => {
  const srv = await serverFor(t, {});
  const exit = await srv.sigterm(10000);
  assert.ok(!exit.timedOut, 'no exit within 10 s of SIGTERM');
  assert.equal(exit.code, 0);
});
