// Plans (SPEC §4): the admin route POST /api/admin/users/{id}/plan and the
// CLI `stylestudio user plan`; a pro user may create with priority high,
// which a free user is refused.
import { before, after } from 'node:test';
import {
  test, assert, startServer, api, assertOk, assertError, errorFields, createUser, runCli,
  uploadFixture, createBody,
} from './harness.mjs';

let srv;
before(async () => { srv = await startServer(); });
after(() => srv?.stop());

test('admin sets a plan: the user object as /api/me shows it; pro may ask for priority high', async () => {
  const admin = await createUser(srv.dataDir, { tokens: 0, admin: true });
  const user = await createUser(srv.dataDir, { tokens: 20 });
  const url = await uploadFixture(srv, user.key);

  const refused = await api(srv, 'POST', '/api/generation/create', { key: user.key, body: createBody(url, { priority: 'high' }) });
  assertError(refused, 400, 'VALIDATION_ERROR', 'free user asking for high priority');
  assert.deepEqual(errorFields(refused), ['priority']);

  const r = await api(srv, 'POST', `/api/admin/users/${user.userId}/plan`, { key: admin.key, body: { plan: 'pro' } });
  const u = assertOk(r, 200, 'admin plan');
  const me = assertOk(await api(srv, 'GET', '/api/me', { key: user.key }), 200);
  assert.deepEqual(u, me.user, 'the route answers the user object of /api/me');
  assert.equal(me.user.plan, 'pro');

  const made = assertOk(await api(srv, 'POST', '/api/generation/create', { key: user.key, body: createBody(url, { priority: 'high' }) }), 201, 'pro user, high priority');
  const g = assertOk(await api(srv, 'GET', `/api/generations/${made.generationId}`, { key: user.key }), 200);
  assert.equal(g.priority, 'high');

  // Back to free: refused again.
  assertOk(await api(srv, 'POST', `/api/admin/users/${user.userId}/plan`, { key: admin.key, body: { plan: 'free' } }), 200);
  assertError(await api(srv, 'POST', '/api/generation/create', { key: user.key, body: createBody(url, { priority: 'high' }) }), 400, 'VALIDATION_ERROR');
});

test('admin plan: bad plan → VALIDATION_ERROR on plan; unknown user → NOT_FOUND; non-admin → UNAUTHORIZED', async () => {
  const admin = await createUser(srv.dataDir, { tokens: 0, admin: true });
  const user = await createUser(srv.dataDir, { tokens: 0 });
  for (const body of [{ plan: 'gold' }, {}, { plan: 1 }, { plan: 'PRO' }]) {
    const r = await api(srv, 'POST', `/api/admin/users/${user.userId}/plan`, { key: admin.key, body });
    assertError(r, 400, 'VALIDATION_ERROR', JSON.stringify(body));
    assert.deepEqual(errorFields(r), ['plan']);
  }
  assertError(await api(srv, 'POST', '/api/admin/users/usr_00000000000000000000000000/plan', { key: admin.key, body: { plan: 'pro' } }), 404, 'NOT_FOUND');
  assertError(await api(srv, 'POST', `/api/admin/users/${user.userId}/plan`, { key: user.key, body: { plan: 'pro' } }), 403, 'UNAUTHORIZED', 'plain user');
  assertError(await api(srv, 'POST', `/api/admin/users/${user.userId}/plan`, { body: { plan: 'pro' } }), 401, 'AUTHENTICATION_REQUIRED');
  const me = assertOk(await api(srv, 'GET', '/api/me', { key: user.key }), 200);
  assert.equal(me.user.plan, 'free', 'nothing changed');
});

test('CLI: user plan --email E --plan pro; clear errors and exit codes', async () => {
  const user = await createUser(srv.dataDir, { tokens: 3 });
  const ok = await runCli(['user', 'plan', '--data', srv.dataDir, '--email', user.email, '--plan', 'pro']);
  assert.equal(ok.code, 0, `user plan failed: ${ok.stderr}`);
  assert.match(ok.stdout, new RegExp(`^user_id: ${user.userId}$`, 'm'));
  assert.match(ok.stdout, /^plan: pro$/m);
  const me = assertOk(await api(srv, 'GET', '/api/me', { key: user.key }), 200);
  assert.equal(me.user.plan, 'pro');
  const l = await runCli(['user', 'list', '--data', srv.dataDir]);
  assert.ok(l.stdout.split('\n').some((line) => line.includes(user.email) && line.includes('\tpro\t')), l.stdout);

  const bad = await runCli(['user', 'plan', '--data', srv.dataDir, '--email', user.email, '--plan', 'gold']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /unknown plan 'gold'/);
  const missing = await runCli(['user', 'plan', '--data', srv.dataDir, '--email', user.email]);
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /--plan/);
  const nobody = await runCli(['user', 'plan', '--data', srv.dataDir, '--email', 'nobody@example.com', '--plan', 'pro']);
  assert.equal(nobody.code, 1);
  assert.match(nobody.stderr, /no user nobody@example.com/);
  assert.equal(assertOk(await api(srv, 'GET', '/api/me', { key: user.key }), 200).user.plan, 'pro', 'failed calls change nothing');
});
