// Per-user rate limits (SPEC §4): the burst passes, the next create answers
// 429 RATE_LIMIT_EXCEEDED with Retry-After and the RateLimit-* headers,
// nothing charged, and passes again after Retry-After; pro has its own
// rule; a unit is used only when a generation is created (validation
// errors, INSUFFICIENT_TOKENS and idempotent replays take none); the
// one-step generate and retry are limited, the two-step generate is not;
// 0 turns a limit off; the bucket outlives a restart; bad syntax refuses to
// start. The ledger is checked after every test (harness test()).
import { before, after } from 'node:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import {
  test, assert, startServer, api, assertOk, assertError, createUser, uploadFixture, createBody,
  balance, countGenerations, query, sleep, runCli, PG, dropDb,
} from './harness.mjs';

// Makes a user pro in the database (the harness's query() opens SQLite
// read-only, so SQLite goes through the sqlite3 CLI).
async function makePro(s, userId) {
  const sql = `UPDATE users SET plan = 'pro' WHERE id = '${userId}'`;
  if (PG) await query(s.dbPath, sql);
  else execFileSync('sqlite3', ['-cmd', '.timeout 5000', s.dbPath, sql]);
}

// One unit a second: the first two creates pass at once, the third waits
// about a second. Pro: bursts of 4.
const FAST = ['--rate-free', '1/s,2', '--rate-pro', '1/s,4'];
let srv, productUrl;
before(async () => {
  srv = await startServer({ args: FAST });
  const seed = await createUser(srv.dataDir, { tokens: 0 });
  productUrl = await uploadFixture(srv, seed.key, 'product.jpg');
});
after(() => srv?.stop());

function rate(r) {
  const n = (h) => (r.headers.get(h) === null ? null : Number(r.headers.get(h)));
  return { limit: n('ratelimit-limit'), remaining: n('ratelimit-remaining'), reset: n('ratelimit-reset'), retryAfter: n('retry-after') };
}

const createReq = (s, key, over, headers) => api(s, 'POST', '/api/generation/create', { key, body: createBody(productUrl, over), headers });

test('the burst passes, the next create is 429 with Retry-After and RateLimit-*, nothing charged, and passes after Retry-After', async () => {
  const u = await createUser(srv.dataDir, { tokens: 10 });
  const a = await createReq(srv, u.key);
  assertOk(a, 201, 'first create');
  assert.deepEqual(rate(a), { limit: 2, remaining: 1, reset: 1, retryAfter: null });
  const b = await createReq(srv, u.key);
  assertOk(b, 201, 'second create');
  assert.equal(rate(b).remaining, 0);
  assert.equal(rate(b).reset, 1, 'a unit a second: the next one within 1 s');
  const c = await createReq(srv, u.key);
  assertError(c, 429, 'RATE_LIMIT_EXCEEDED', 'third create within the second');
  const rc = rate(c);
  assert.equal(rc.retryAfter, 1, 'Retry-After: seconds until the next unit, rounded up');
  assert.equal(rc.limit, 2);
  assert.equal(rc.remaining, 0);
  assert.equal(rc.reset, 1);
  assert.equal(await balance(srv, u.key), 8, 'the refused create charged nothing');
  assert.equal(await countGenerations(srv, u.key), 2, 'the refused create wrote nothing');
  await sleep(rc.retryAfter * 1000);
  const d = await createReq(srv, u.key);
  assertOk(d, 201, 'after Retry-After');
  assert.equal(await balance(srv, u.key), 7);
});

test('pro users have their own rule', async () => {
  const u = await createUser(srv.dataDir, { tokens: 10 });
  await makePro(srv, u.userId);
  for (let i = 0; i < 4; i++) {
    const r = await createReq(srv, u.key);
    assertOk(r, 201, `pro create ${i + 1}`);
    assert.equal(rate(r).limit, 4);
    assert.equal(rate(r).remaining, 3 - i);
  }
  const r = await createReq(srv, u.key);
  assertError(r, 429, 'RATE_LIMIT_EXCEEDED', 'pro past its burst of 4');
  assert.equal(rate(r).limit, 4);
  assert.match(r.json.error, /pro plan/);
  assert.equal(await balance(srv, u.key), 6);
});

test('validation errors and INSUFFICIENT_TOKENS use no unit but carry the headers', async () => {
  const u = await createUser(srv.dataDir, { tokens: 1 });
  const bad = await createReq(srv, u.key, { style: 'cubist' });
  assertError(bad, 400, 'VALIDATION_ERROR');
  assert.deepEqual(rate(bad), { limit: 2, remaining: 2, reset: 0, retryAfter: null });
  const poor = await createReq(srv, u.key, { quality: 'high' }); // local-studio high: 2 tokens
  assertError(poor, 400, 'INSUFFICIENT_TOKENS');
  assert.equal(rate(poor).remaining, 2, 'the unit taken for the create was given back');
  assertOk(await createReq(srv, u.key), 201);
  const broke = await createReq(srv, u.key);
  assertError(broke, 400, 'INSUFFICIENT_TOKENS');
  assert.equal(rate(broke).remaining, 1);
});

test('an idempotent replay takes no unit, charges nothing, and still answers at the limit', async () => {
  const u = await createUser(srv.dataDir, { tokens: 10 });
  const headers = { 'Idempotency-Key': `rl-${Date.now()}` };
  const first = await createReq(srv, u.key, {}, headers);
  const d = assertOk(first, 201, 'keyed create');
  assert.equal(rate(first).remaining, 1);
  const again = await createReq(srv, u.key, {}, headers);
  assert.equal(again.status, 201);
  assert.equal(again.json.data.generationId, d.generationId, 'the replay is the first answer');
  assert.equal(again.headers.get('idempotent-replayed'), 'true');
  assert.equal(rate(again).remaining, 1, 'the replay used no unit');
  assertOk(await createReq(srv, u.key), 201, 'the unit the replay did not use');
  // At the limit a replay still gets its first answer; a new body with the
  // key is still IDEMPOTENCY_KEY_REUSED; a new key is refused.
  const atLimit = await createReq(srv, u.key, {}, headers);
  assert.equal(atLimit.status, 201, `a replay at the limit: ${atLimit.text.slice(0, 300)}`);
  assert.equal(atLimit.json.data.generationId, d.generationId);
  assert.equal(atLimit.headers.get('idempotent-replayed'), 'true');
  assert.equal(rate(atLimit).remaining, 0);
  assert.equal(rate(atLimit).retryAfter, null, 'no Retry-After on a replay');
  assertError(await createReq(srv, u.key, { style: 'minimal' }, headers), 409, 'IDEMPOTENCY_KEY_REUSED');
  assertError(await createReq(srv, u.key, {}, { 'Idempotency-Key': `rl2-${Date.now()}` }), 429, 'RATE_LIMIT_EXCEEDED');
  assert.equal(await balance(srv, u.key), 8);
  assert.equal(await countGenerations(srv, u.key), 2);
});

test('the one-step generate and retry are limited; the two-step generate is not', async () => {
  const u = await createUser(srv.dataDir, { tokens: 10 });
  const pending = assertOk(await createReq(srv, u.key), 201, 'create (unit 1)');
  const one = await api(srv, 'POST', '/api/generate', { key: u.key, body: createBody(productUrl) });
  assertOk(one, 202, 'one-step generate (unit 2)');
  assert.equal(rate(one).remaining, 0);
  const refused = await api(srv, 'POST', '/api/generate', { key: u.key, body: createBody(productUrl) });
  assertError(refused, 429, 'RATE_LIMIT_EXCEEDED', 'one-step generate past the burst');
  assert.ok(rate(refused).retryAfter >= 1);
  const two = await api(srv, 'POST', '/api/generate', { key: u.key, body: { generationId: pending.generationId } });
  assertOk(two, 202, 'the two-step generate creates nothing and is not limited');
  assert.equal(two.headers.get('ratelimit-limit'), null, 'no RateLimit-* on the two-step generate');
  const cancel = await api(srv, 'POST', `/api/generations/${pending.generationId}/cancel`, { key: u.key });
  assertOk(cancel, 200);
  const retry = await api(srv, 'POST', `/api/generations/${pending.generationId}/retry`, { key: u.key });
  assertError(retry, 429, 'RATE_LIMIT_EXCEEDED', 'a retry creates a generation: limited');
  await sleep(rate(retry).retryAfter * 1000);
  const ok = await api(srv, 'POST', `/api/generations/${pending.generationId}/retry`, { key: u.key });
  assertOk(ok, 201, 'retry after Retry-After');
  assert.equal(rate(ok).limit, 2);
  assert.equal(await countGenerations(srv, u.key), 3);
});

test('0 turns the limit off: no headers, no refusals', async (t) => {
  const s = await startServer(); // the harness passes --rate-free 0 --rate-pro 0
  t.after(() => s.stop());
  const u = await createUser(s.dataDir, { tokens: 20 });
  const url = await uploadFixture(s, u.key, 'product.jpg');
  for (let i = 0; i < 12; i++) {
    const r = await api(s, 'POST', '/api/generation/create', { key: u.key, body: createBody(url) });
    assertOk(r, 201, `create ${i + 1} without a limit`);
    assert.equal(r.headers.get('ratelimit-limit'), null);
  }
});

test('the default burst (30/h: 10) holds across a restart', async (t) => {
  const s = await startServer({ args: ['--rate-free', '30/h'] });
  t.after(() => s.stop());
  const u = await createUser(s.dataDir, { tokens: 20 });
  const url = await uploadFixture(s, u.key, 'product.jpg');
  const make = () => api(s, 'POST', '/api/generation/create', { key: u.key, body: createBody(url) });
  for (let i = 0; i < 10; i++) assertOk(await make(), 201, `create ${i + 1} of the burst`);
  const r = await make();
  assertError(r, 429, 'RATE_LIMIT_EXCEEDED', 'the 11th create');
  assert.equal(rate(r).limit, 10);
  assert.ok(rate(r).retryAfter > 100 && rate(r).retryAfter <= 120, `30/h: a unit per 120 s; Retry-After ${rate(r).retryAfter}`);
  await s.restart();
  const after = await make();
  assertError(after, 429, 'RATE_LIMIT_EXCEEDED', 'still limited after a restart');
  assert.equal(rate(after).remaining, 0);
  assert.equal(await balance(s, u.key), 10);
});

test('two processes on one database share the bucket: concurrent creates pass exactly the burst', async (t) => {
  const dataDir = mkdtempSync(join(tmpdir(), 'ss-rl-multi-'));
  const args = ['--rate-free', '1/h,4'];
  const a = await startServer({ dataDir, keepData: true, workers: 0, args });
  const b = await startServer({ dataDir, keepData: true, workers: 0, args: [...args, '--public-url', a.baseUrl] });
  t.after(async () => {
    await a.stop();
    await b.stop();
    if (PG) await dropDb(dataDir);
    rmSync(dataDir, { recursive: true, force: true });
  });
  const u = await createUser(dataDir, { tokens: 20 });
  const url = await uploadFixture(a, u.key, 'product.jpg');
  const answers = await Promise.all(Array.from({ length: 12 }, (_, i) =>
    api(i % 2 ? b : a, 'POST', '/api/generation/create', { key: u.key, body: createBody(url) })));
  const passed = answers.filter((r) => r.status === 201).length;
  const refused = answers.filter((r) => r.status === 429 && r.json?.code === 'RATE_LIMIT_EXCEEDED').length;
  assert.equal(passed, 4, `a burst of 4 across both processes; statuses ${answers.map((r) => r.status).join(',')}`);
  assert.equal(refused, 8);
  assert.equal(await balance(a, u.key), 16, 'only the created ones were charged');
  assert.equal(await countGenerations(b, u.key), 4);
});

test('a rate limit that does not parse refuses to start', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ss-rl-'));
  try {
    for (const [flag, value] of [['--rate-free', '10/d'], ['--rate-pro', '30/h,0'], ['--rate-free', 'lots']]) {
      const r = await runCli(['serve', '--listen', '127.0.0.1:0', '--data', dir, flag, value]);
      assert.equal(r.code, 2, `${flag} ${value}: exit code ${r.code}`);
      assert.match(r.stderr, new RegExp(`${flag}: expected N/s, N/m or N/h`), r.stderr);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
