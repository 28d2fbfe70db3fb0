// Provider faults, retries, expiry and mid-flight cancel, through the
// --test-faults seam (docs/api.md "Testing seams"). One server per scenario.
import {
  test, assert, serverFor, api, assertOk, assertError, createUser, uploadFixture, createBody,
  create, start, getGen, waitGen, balance, transactions, waitFor, sse, summarize,
} from './harness.mjs';

async function setup(t, args, tokens = 5, opts = {}) {
  const srv = await serverFor(t, { args, ...opts });
  const u = await createUser(srv.dataDir, { tokens });
  const url = await uploadFixture(srv, u.key);
  return { srv, u, url };
}

function refundRows(tx, id) {
  return tx.filter((t) => t.generationId === id).map((t) => [t.kind, t.amount]);
}

test('permanent provider failure → failed at once (no retries), clear error, refunded exactly once; retry → new charged generation', async (t) => {
  const { srv, u, url } = await setup(t, ['--test-faults', 'permanent']);
  const c = await create(srv, u.key, createBody(url, { quality: 'high' }));
  assert.equal(await balance(srv, u.key), 3);
  const stream = await sse(srv, `/api/generations/${c.generationId}/events`, { key: u.key });
  t.after(() => stream.close());
  await stream.until(() => true, 3000);
  await start(srv, u.key, c.generationId);
  const end = await stream.until((f) => ['completed', 'failed', 'cancelled'].includes(f.json?.status), 10000);
  assert.equal(end.json.status, 'failed', 'the stream delivers the failed record');
  assert.equal(end.json.tokensUsed, 0);
  await stream.waitEnd(3000);
  const g = await waitGen(srv, u.key, c.generationId);
  assert.equal(g.status, 'failed');
  assert.equal(g.stage, 'failed');
  assert.equal(g.retryCount, 0, 'a permanent error is not retried');
  assert.equal(g.errorCode, 'PROVIDER_REJECTED');
  assert.equal(end.json.errorCode, 'PROVIDER_REJECTED', 'the stream carries errorCode too');
  assert.equal(typeof g.error, 'string');
  assert.ok(g.error.length > 5, `failed generation needs a clear error, got ${JSON.stringify(g.error)}`);
  assert.equal(g.tokensUsed, 0);
  assert.deepEqual(g.resultImages, []);
  assert.ok(g.completedAt >= g.startedAt, 'completedAt is set when it ends failed');
  assert.equal(await balance(srv, u.key), 5, 'refunded');
  assert.deepEqual(refundRows(await transactions(srv, u.key), c.generationId), [['refund', 2], ['charge', -2]]);
  assertError(await api(srv, 'POST', `/api/generations/${c.generationId}/cancel`, { key: u.key }), 400, 'INVALID_GENERATION_STATUS', 'cancel failed');
  assertError(await api(srv, 'POST', '/api/generate', { key: u.key, body: { generationId: c.generationId } }), 400, 'INVALID_GENERATION_STATUS', 'generate failed');
  assert.equal(await balance(srv, u.key), 5);

  const r = assertOk(await api(srv, 'POST', `/api/generations/${c.generationId}/retry`, { key: u.key }), 201, 'retry failed');
  assert.notEqual(r.generationId, c.generationId);
  assert.equal(r.status, 'pending');
  assert.equal(r.estimatedCost, 2);
  assert.equal(await balance(srv, u.key), 3, 'the retry is charged');
  const n = await getGen(srv, u.key, r.generationId);
  assert.equal(n.retryOf, c.generationId);
  assert.equal(n.parameters.quality, 'high');
  assert.equal(n.retryCount, 0);
  const me = assertOk(await api(srv, 'GET', '/api/me', { key: u.key }), 200);
  assert.equal(me.stats.failed, 1);
  assert.equal(me.stats.successRate, 0);
});

test('one transient fault → retried after backoff → completed with retryCount 1', async (t) => {
  const { srv, u, url } = await setup(t, ['--test-faults', 'transient=1']);
  const c = await create(srv, u.key, createBody(url));
  const stream = await sse(srv, `/api/generations/${c.generationId}/events`, { key: u.key });
  t.after(() => stream.close());
  await stream.until(() => true, 3000);
  await start(srv, u.key, c.generationId);
  const frames = await stream.collect((f) => ['completed', 'failed', 'cancelled'].includes(f.json?.status), 10000);
  // The retry goes back to stage queued with retryCount 1, and progress still never decreases.
  const back = frames.findIndex((f, i) => i > 0 && f.json.stage === 'queued' && f.json.retryCount === 1);
  assert.ok(back > 0, `no return to stage queued with retryCount 1: ${summarize(frames)}`);
  for (let i = 1; i < frames.length; i++) {
    assert.ok(frames[i].json.progress >= frames[i - 1].json.progress, `progress decreased across the retry: ${summarize(frames)}`);
    assert.ok(frames[i].json.status !== 'failed', 'a transient fault within the retry budget is not a failure');
  }
  const g = await waitGen(srv, u.key, c.generationId);
  assert.equal(g.status, 'completed', `ended ${g.status}: ${g.error}`);
  assert.equal(g.retryCount, 1);
  assert.ok(!('errorCode' in g), 'no errorCode on a completed record');
  assert.ok(g.resultImages.length >= 1);
  assert.equal(g.tokensUsed, 1);
  assert.equal(await balance(srv, u.key), 4, 'completed after a retry: charged once, not refunded');
  assert.deepEqual(refundRows(await transactions(srv, u.key), c.generationId), [['charge', -1]]);
});

test('transient faults beyond --max-retries → failed, refunded once, retryCount = max', async (t) => {
  const { srv, u, url } = await setup(t, ['--max-retries', '1', '--test-faults', 'transient=5']);
  const c = await create(srv, u.key, createBody(url));
  await start(srv, u.key, c.generationId);
  const g = await waitGen(srv, u.key, c.generationId);
  assert.equal(g.status, 'failed');
  assert.equal(g.retryCount, 1, 'one retry allowed, then failed');
  assert.equal(g.errorCode, 'PROVIDER_TRANSIENT');
  assert.ok(g.error && g.error.length > 5, `clear error, got ${JSON.stringify(g.error)}`);
  assert.equal(g.tokensUsed, 0);
  assert.equal(await balance(srv, u.key), 5);
  assert.deepEqual(refundRows(await transactions(srv, u.key), c.generationId), [['refund', 1], ['charge', -1]]);
});

test('pending generation never started expires (--pending-ttl 1): cancelled, refunded, error says it expired', async (t) => {
  const { srv, u, url } = await setup(t, ['--pending-ttl', '1']);
  const c = await create(srv, u.key, createBody(url, { quality: 'high' }));
  const started = await create(srv, u.key, createBody(url));
  await start(srv, u.key, started.generationId);
  assert.equal(await balance(srv, u.key), 2);
  const g = await waitGen(srv, u.key, c.generationId, { timeout: 15000, what: 'pending expiry' });
  assert.equal(g.status, 'cancelled');
  assert.match(g.error || '', /expir/i, `error must mention expiry, got ${JSON.stringify(g.error)}`);
  assert.equal(g.errorCode, 'EXPIRED');
  assert.equal(g.tokensUsed, 0);
  const s = await waitGen(srv, u.key, started.generationId);
  assert.equal(s.status, 'completed', 'a started generation does not expire');
  assert.equal(await balance(srv, u.key), 4, 'the expired one is refunded; the completed one keeps its charge');
  assert.deepEqual(refundRows(await transactions(srv, u.key), c.generationId), [['refund', 2], ['charge', -2]]);
});

test('cancel while processing (slow provider): cancelled and refunded at once; the aborted call never completes it', async (t) => {
  const { srv, u, url } = await setup(t, ['--test-faults', 'delay_ms=3000'], 5, { workers: 1 });
  const a = await create(srv, u.key, createBody(url));
  await start(srv, u.key, a.generationId);
  await waitGen(srv, u.key, a.generationId, { pred: (g) => g.stage === 'generating', timeout: 10000, what: 'stage generating' });
  const r = await api(srv, 'POST', `/api/generations/${a.generationId}/cancel`, { key: u.key });
  const g = assertOk(r, 200, 'cancel processing');
  assert.equal(g.status, 'cancelled');
  assert.equal(g.errorCode, 'CANCELLED');
  assert.equal(g.tokensUsed, 0);
  assert.equal(await balance(srv, u.key), 5);
  // The single worker must get free and run the next one; by the time it is
  // done, the cancelled call has long had the chance to (wrongly) finish.
  const b = await create(srv, u.key, createBody(url));
  await start(srv, u.key, b.generationId);
  const gb = await waitGen(srv, u.key, b.generationId, { timeout: 20000 });
  assert.equal(gb.status, 'completed');
  const ga = await getGen(srv, u.key, a.generationId);
  assert.equal(ga.status, 'cancelled', 'a cancelled generation stays cancelled');
  assert.deepEqual(ga.resultImages, [], 'no results stored for a cancelled generation');
  assert.equal(await balance(srv, u.key), 4);
  assert.deepEqual(refundRows(await transactions(srv, u.key), a.generationId), [['refund', 1], ['charge', -1]]);
});

test('Prefer: wait=1 on a slow generation → 202 with the current (processing) record and Preference-Applied', async (t) => {
  const { srv, u, url } = await setup(t, ['--test-faults', 'delay_ms=4000']);
  const c = await create(srv, u.key, createBody(url));
  const t0 = Date.now();
  const r = await api(srv, 'POST', '/api/generate', { key: u.key, body: { generationId: c.generationId }, headers: { prefer: 'wait=1' } });
  const elapsed = Date.now() - t0;
  const d = assertOk(r, 202, 'Prefer: wait=1 on a 4 s generation');
  assert.equal(d.status, 'processing');
  assert.equal(d.generationId, c.generationId);
  assert.equal(d._id, c.generationId, 'the data is the full record plus generationId');
  assert.ok('stage' in d && 'progress' in d);
  assert.ok(elapsed >= 900, `the answer must be held about 1 s (got ${elapsed} ms)`);
  assert.match(r.headers.get('preference-applied') || '', /wait=1/);
  // wait=0: answer at once.
  const c2 = await create(srv, u.key, createBody(url));
  const r2 = await api(srv, 'POST', '/api/generate', { key: u.key, body: { generationId: c2.generationId }, headers: { prefer: 'wait=0' } });
  assert.equal(r2.status, 202);
  assert.equal(r2.json.data.status, 'processing');
  // Cancel both so the file ends quickly.
  for (const id of [c.generationId, c2.generationId]) await api(srv, 'POST', `/api/generations/${id}/cancel`, { key: u.key });
  await waitFor(async () => (await balance(srv, u.key)) === 5, { what: 'refunds' });
});

test('queue on a busy single worker: queued generations report queuePosition in FIFO order; cancel a queued one; delete refuses processing', async (t) => {
  const { srv, u, url } = await setup(t, ['--test-faults', 'delay_ms=2000'], 5, { workers: 1 });
  const ids = [];
  for (let i = 0; i < 3; i++) {
    const c = await create(srv, u.key, createBody(url));
    await start(srv, u.key, c.generationId);
    ids.push(c.generationId);
  }
  await waitGen(srv, u.key, ids[0], { pred: (g) => g.stage === 'generating', timeout: 10000, what: 'first one running' });
  const [b, c] = [await getGen(srv, u.key, ids[1]), await getGen(srv, u.key, ids[2])];
  assert.deepEqual([b.status, b.stage, b.queuePosition], ['processing', 'queued', 1], `second: ${JSON.stringify([b.status, b.stage, b.queuePosition])}`);
  assert.deepEqual([c.status, c.stage, c.queuePosition], ['processing', 'queued', 2], `third: ${JSON.stringify([c.status, c.stage, c.queuePosition])}`);
  assertError(await api(srv, 'DELETE', `/api/generations/${ids[0]}`, { key: u.key }), 400, 'INVALID_GENERATION_STATUS', 'delete processing');
  const cb = assertOk(await api(srv, 'POST', `/api/generations/${ids[1]}/cancel`, { key: u.key }), 200, 'cancel queued');
  assert.equal(cb.status, 'cancelled');
  assert.equal(cb.errorCode, 'CANCELLED');
  assert.ok(!('queuePosition' in cb) || cb.queuePosition == null, 'no queuePosition once cancelled');
  const c2 = await getGen(srv, u.key, ids[2]);
  assert.equal(c2.queuePosition, 1, 'the queue moves up after a cancel');
  assert.equal(await balance(srv, u.key), 3);
  // Cancel the rest so the file ends fast; the running one is aborted.
  for (const id of [ids[0], ids[2]]) assertOk(await api(srv, 'POST', `/api/generations/${id}/cancel`, { key: u.key }), 200);
  assert.equal(await balance(srv, u.key), 5);
  // A cancelled generation can be deleted; it has no files.
  assertOk(await api(srv, 'DELETE', `/api/generations/${ids[1]}`, { key: u.key }), 200, 'delete cancelled');
  assertError(await api(srv, 'GET', `/api/generations/${ids[1]}`, { key: u.key }), 404, 'GENERATION_NOT_FOUND');
});
