// Concurrent creates can never overdraw: 200 at once against a balance of 50.
import { before, after } from 'node:test';
import {
  test, assert, startServer, api, assertOk, assertError, createUser, uploadFixture, createBody,
  balance, countGenerations, transactions, query,
} from './harness.mjs';

let srv;
before(async () => { srv = await startServer(); });
after(() => srv?.stop());

test('200 concurrent creates with a balance of 50 → exactly 50 × 201, 150 × INSUFFICIENT_TOKENS, balance 0', async () => {
  const u = await createUser(srv.dataDir, { tokens: 50 });
  const url = await uploadFixture(srv, u.key);
  const results = await Promise.all(Array.from({ length: 200 }, (_, i) =>
    api(srv, 'POST', '/api/generation/create', { key: u.key, body: createBody(url, { parameters: { seed: i } }) })));
  const by = {};
  for (const r of results) {
    const k = `${r.status} ${r.json?.code || ''}`.trim();
    by[k] = (by[k] || 0) + 1;
  }
  assert.deepEqual(by, { 201: 50, '400 INSUFFICIENT_TOKENS': 150 }, `status counts: ${JSON.stringify(by)}`);
  for (const r of results.filter((x) => x.status === 400)) assertError(r, 400, 'INSUFFICIENT_TOKENS');
  const ids = new Set(results.filter((r) => r.status === 201).map((r) => r.json.data.generationId));
  assert.equal(ids.size, 50, 'every success has its own generation id');
  assert.equal(await balance(srv, u.key), 0);
  assert.equal(await countGenerations(srv, u.key), 50);
  assert.equal(await countGenerations(srv, u.key, 'pending'), 50);
  const tx = await transactions(srv, u.key);
  assert.equal(tx.filter((t) => t.kind === 'charge').length, 50);
  assert.deepEqual(new Set(tx.filter((t) => t.kind === 'charge').map((t) => t.generationId)), ids);
  const me = assertOk(await api(srv, 'GET', '/api/me', { key: u.key }), 200);
  assert.equal(me.user.totalTokensUsed, 50);
  // The database agrees (read-only).
  const [row] = await query(srv.dbPath, `SELECT token_balance AS b FROM users WHERE id = '${u.userId}'`);
  assert.equal(row.b, 0);
});

test('concurrent one-step creates from two users with small balances: neither overdraws, all succeed', async () => {
  const a = await createUser(srv.dataDir, { tokens: 5 });
  const b = await createUser(srv.dataDir, { tokens: 7 });
  const url = await uploadFixture(srv, a.key);
  const reqs = [];
  for (let i = 0; i < 20; i++) {
    for (const u of [a, b]) reqs.push(api(srv, 'POST', '/api/generate', { key: u.key, body: createBody(url) }).then((r) => [u, r]));
  }
  const res = await Promise.all(reqs);
  const ok = (u) => res.filter(([x, r]) => x === u && r.status === 202).length;
  assert.equal(ok(a), 5);
  assert.equal(ok(b), 7);
  for (const [, r] of res.filter(([, r]) => r.status !== 202)) assertError(r, 400, 'INSUFFICIENT_TOKENS');
  assert.equal(await balance(srv, a.key), 0);
  assert.equal(await balance(srv, b.key), 0);
});
