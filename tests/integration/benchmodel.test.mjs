// bench-instant (bench/ only): without --enable-bench-model it does not
// exist (MODEL_ERROR, nothing charged); with it, it completes at once with
// one small JPEG. It is never listed by GET /api/models.
import {
  test, assert, serverFor, uploadFixture, createBody, api, assertError, assertOk, balance, imageSize,
} from './harness.mjs';

const listed = async (srv, key) => assertOk(await api(srv, 'GET', '/api/models', { key }), 200).items.map((m) => m.id);

test('bench-instant is refused as MODEL_ERROR without --enable-bench-model, and never listed', async (t) => {
  const srv = await serverFor(t);
  const u = await srv.createUser({ tokens: 5 });
  const url = await uploadFixture(srv, u.key);
  const r = await api(srv, 'POST', '/api/generation/create', { key: u.key, body: createBody(url, { model: 'bench-instant' }) });
  assertError(r, 400, 'MODEL_ERROR');
  assert.equal(await balance(srv, u.key), 5, 'nothing charged');
  assert.ok(!(await listed(srv, u.key)).includes('bench-instant'));
});

test('with --enable-bench-model, bench-instant completes at once with one small JPEG; still unlisted', async (t) => {
  const srv = await serverFor(t, { args: ['--enable-bench-model'] });
  const u = await srv.createUser({ tokens: 5 });
  const url = await uploadFixture(srv, u.key);
  const r = await api(srv, 'POST', '/api/generate', {
    key: u.key, body: createBody(url, { model: 'bench-instant' }), headers: { prefer: 'wait=20' },
  });
  const g = assertOk(r, 200);
  assert.equal(g.status, 'completed');
  assert.equal(g.tokensUsed, 1);
  assert.equal(g.resultImages.length, 1);
  const img = Buffer.from(await (await fetch(g.resultImages[0])).arrayBuffer());
  assert.deepEqual(imageSize(img), { format: 'jpeg', width: 64, height: 64 });
  assert.equal(await balance(srv, u.key), 4);
  assert.ok(!(await listed(srv, u.key)).includes('bench-instant'));
});
