// Accounts and credentials: signup/login/logout/me, API keys, CSRF on
// cookie writes, admin grants, the ledger listing, AUTHENTICATION_REQUIRED.
import { before, after } from 'node:test';
import {
  test, assert, startServer, api, assertOk, assertError, errorFields, createUser, uniqueEmail,
  balance, transactions, query,
} from './harness.mjs';

let srv;
before(async () => { srv = await startServer({ args: ['--signup-tokens', '12'] }); });
after(() => srv?.stop());

function sessionCookie(r) {
  const all = r.headers.getSetCookie();
  const c = all.find((x) => x.startsWith('ss_session='));
  return c;
}

async function signup(extra = {}) {
  const email = uniqueEmail('web');
  const body = { name: 'Web User', email, password: 'correct horse battery', ...extra };
  const r = await api(srv, 'POST', '/api/auth/signup', { body, origin: srv.baseUrl });
  const d = assertOk(r, 201, 'signup');
  const set = sessionCookie(r);
  assert.ok(set, `signup must set ss_session, got ${JSON.stringify(r.headers.getSetCookie())}`);
  return { email, password: body.password, cookie: set.split(';')[0], setCookie: set, data: d };
}

test('signup → 201, session cookie (HttpOnly, SameSite=Lax, Path=/), free grant (--signup-tokens 12) in the ledger', async () => {
  const s = await signup();
  assert.match(s.setCookie, /;\s*HttpOnly/i);
  assert.match(s.setCookie, /;\s*SameSite=Lax/i);
  assert.match(s.setCookie, /;\s*Path=\//i);
  assert.match(s.setCookie, /;\s*Max-Age=2592000/i, 'session cookie lives 30 days (docs/api.md)');
  assert.doesNotMatch(s.setCookie, /;\s*Secure/i, 'no Secure flag on a plain-http public URL');
  assert.equal(s.data.tokenBalance, 12);
  const u = s.data.user;
  assert.equal(u.email, s.email);
  assert.equal(u.name, 'Web User');
  assert.match(u._id, /^usr_/);
  assert.equal(u.tokenBalance, 12);
  assert.equal(u.freeTokensGranted, 12);
  assert.equal(u.plan, 'free');
  assert.equal(u.role, 'user');
  assert.equal(typeof u.createdAt, 'number');
  assert.ok(Math.abs(u.createdAt - Date.now()) < 60000, 'createdAt is ms since the epoch');
  assert.ok(!('password' in u) && !('passwordHash' in u) && !('password_hash' in u), 'user object must not expose the password');

  const me = assertOk(await api(srv, 'GET', '/api/me', { cookie: s.cookie }), 200, 'GET /api/me with cookie');
  assert.equal(me.user.email, s.email);
  assert.equal(me.tokenBalance, 12);
  assert.deepEqual(
    Object.keys(me.stats).sort(),
    ['completed', 'failed', 'successRate', 'thisMonth', 'totalGenerations'].sort(),
  );
  assert.equal(me.stats.totalGenerations, 0);

  const tx = assertOk(await api(srv, 'GET', '/api/tokens/transactions', { cookie: s.cookie }), 200);
  assert.equal(tx.items.length, 1);
  assert.equal(tx.items[0].kind, 'grant');
  assert.equal(tx.items[0].amount, 12);
  assert.equal(tx.items[0].balanceAfter, 12);
  assert.equal(tx.nextCursor, null);
});

test('signup validation lists every broken field; a taken email is refused on field email', async () => {
  const r = await api(srv, 'POST', '/api/auth/signup', { body: { name: '', email: 'not-an-email', password: 'short' }, origin: srv.baseUrl });
  assertError(r, 400, 'VALIDATION_ERROR');
  const f = errorFields(r);
  for (const want of ['name', 'email', 'password']) assert.ok(f.includes(want), `validationErrors lacks ${want}: ${JSON.stringify(r.json.validationErrors)}`);
  assert.equal(r.headers.getSetCookie().filter((c) => c.startsWith('ss_session=') && !/Max-Age=0/i.test(c)).length, 0, 'no session on failed signup');

  const long = await api(srv, 'POST', '/api/auth/signup', { body: { name: 'n'.repeat(101), email: uniqueEmail('long'), password: 'p'.repeat(257) }, origin: srv.baseUrl });
  assertError(long, 400, 'VALIDATION_ERROR', 'name 101 chars, password 257 chars');
  assert.deepEqual(errorFields(long).sort(), ['name', 'password']);
  const typed = await api(srv, 'POST', '/api/auth/signup', { body: { name: 5, email: ['x@y.z'], password: true }, origin: srv.baseUrl });
  assertError(typed, 400, 'VALIDATION_ERROR', 'wrong types');
  assert.deepEqual(errorFields(typed).sort(), ['email', 'name', 'password']);
  const bad = await api(srv, 'POST', '/api/auth/signup', { rawBody: '{"name":', headers: { 'content-type': 'application/json' }, origin: srv.baseUrl });
  assertError(bad, 400, 'VALIDATION_ERROR', 'malformed JSON signup');

  for (const blank of [' '.repeat(8), ' '.repeat(12), ' \t \n    ']) {
    const spaces = await api(srv, 'POST', '/api/auth/signup', { body: { name: 'Blank', email: uniqueEmail('blank'), password: blank }, origin: srv.baseUrl });
    assertError(spaces, 400, 'VALIDATION_ERROR', `password ${JSON.stringify(blank)}`);
    assert.deepEqual(errorFields(spaces), ['password']);
    assert.match(spaces.json.validationErrors[0].message, /spaces/);
  }
  const spaced = await api(srv, 'POST', '/api/auth/signup', { body: { name: 'Spaced', email: uniqueEmail('spaced'), password: '   linen   ' }, origin: srv.baseUrl });
  assertOk(spaced, 201, 'a password with spaces around words is fine');

  const s = await signup();
  const again = await api(srv, 'POST', '/api/auth/signup', { body: { name: 'X', email: s.email.toUpperCase(), password: 'another password' }, origin: srv.baseUrl });
  assertError(again, 400, 'VALIDATION_ERROR', 'duplicate email (different case)');
  assert.deepEqual(errorFields(again), ['email']);
});

test('login / logout lifecycle; wrong password → 401; old cookie dead after logout', async () => {
  const s = await signup();
  const bad = await api(srv, 'POST', '/api/auth/login', { body: { email: s.email, password: 'wrong password!' }, origin: srv.baseUrl });
  assertError(bad, 401, 'AUTHENTICATION_REQUIRED');
  const nouser = await api(srv, 'POST', '/api/auth/login', { body: { email: uniqueEmail('nobody'), password: 'whatever123' }, origin: srv.baseUrl });
  assertError(nouser, 401, 'AUTHENTICATION_REQUIRED');
  assert.equal(nouser.json.error, bad.json.error, 'unknown email and wrong password must look the same');

  const li = await api(srv, 'POST', '/api/auth/login', { body: { email: s.email.toUpperCase(), password: s.password }, origin: srv.baseUrl });
  const d = assertOk(li, 200, 'login (email case does not matter, as for uniqueness)');
  assert.equal(d.user.email, s.email);
  assert.equal(d.tokenBalance, 12);
  const cookie = sessionCookie(li)?.split(';')[0];
  assert.ok(cookie, 'login must set ss_session');
  assertOk(await api(srv, 'GET', '/api/me', { cookie }), 200);

  const lo = await api(srv, 'POST', '/api/auth/logout', { cookie, origin: srv.baseUrl });
  assert.deepEqual(assertOk(lo, 200, 'logout'), { signedOut: true });
  const cleared = sessionCookie(lo);
  assert.ok(cleared && (/Max-Age=0/i.test(cleared) || /Expires=Thu, 01 Jan 1970/i.test(cleared)), `logout must clear the cookie, got ${cleared}`);
  assertError(await api(srv, 'GET', '/api/me', { cookie }), 401, 'AUTHENTICATION_REQUIRED', 'cookie after logout');
  // The signup session is a different session and still works.
  assertOk(await api(srv, 'GET', '/api/me', { cookie: s.cookie }), 200);
});

test('CSRF: cookie POST with a foreign Origin, or with no Origin/Referer, is refused; the right Origin or Referer is accepted', async () => {
  const s = await signup();
  const foreign = await api(srv, 'POST', '/api/keys', { cookie: s.cookie, body: { name: 'k' }, origin: 'http://evil.example' });
  assertError(foreign, 403, 'UNAUTHORIZED', 'cookie POST with foreign Origin');
  const none = await api(srv, 'POST', '/api/keys', { cookie: s.cookie, body: { name: 'k' } });
  assertError(none, 403, 'UNAUTHORIZED', 'cookie POST without Origin or Referer');
  const badRef = await api(srv, 'POST', '/api/keys', { cookie: s.cookie, body: { name: 'k' }, headers: { referer: 'http://evil.example/page' } });
  assertError(badRef, 403, 'UNAUTHORIZED', 'cookie POST with foreign Referer');
  // Lookalike origin: same host, other port.
  const otherPort = await api(srv, 'POST', '/api/keys', { cookie: s.cookie, body: { name: 'k' }, origin: `http://127.0.0.1:${srv.port === 1 ? 2 : srv.port - 1}` });
  assertError(otherPort, 403, 'UNAUTHORIZED', 'cookie POST with an Origin on another port');
  // Nothing was created by the refused requests.
  assert.equal(assertOk(await api(srv, 'GET', '/api/keys', { cookie: s.cookie }), 200).items.length, 0, 'refused requests must create no key');

  const ok = await api(srv, 'POST', '/api/keys', { cookie: s.cookie, body: { name: 'by origin' }, origin: srv.baseUrl });
  assertOk(ok, 201, 'cookie POST with the right Origin');
  const okRef = await api(srv, 'POST', '/api/keys', { cookie: s.cookie, body: { name: 'by referer' }, headers: { referer: `${srv.baseUrl}/studio` } });
  assertOk(okRef, 201, 'cookie POST with a same-origin Referer and no Origin');
  // GET with a foreign Origin is not a write: allowed.
  assertOk(await api(srv, 'GET', '/api/me', { cookie: s.cookie, origin: 'http://evil.example' }), 200);
  // Other write methods are checked too.
  const kid = ok.json.data.id;
  assertError(await api(srv, 'DELETE', `/api/keys/${kid}`, { cookie: s.cookie, origin: 'http://evil.example' }), 403, 'UNAUTHORIZED', 'cookie DELETE with foreign Origin');
  assert.equal(assertOk(await api(srv, 'GET', '/api/keys', { cookie: s.cookie }), 200).items.length, 2, 'the refused DELETE revoked nothing');
  assertError(await api(srv, 'POST', '/api/auth/logout', { cookie: s.cookie, origin: 'http://evil.example' }), 403, 'UNAUTHORIZED', 'cookie logout with foreign Origin');
  assertOk(await api(srv, 'GET', '/api/me', { cookie: s.cookie }), 200, 'session survives a refused cross-site logout');
  // Signup and login with a foreign Origin are refused too.
  const su = await api(srv, 'POST', '/api/auth/signup', { body: { name: 'Evil', email: uniqueEmail('evil'), password: 'long enough pw' }, origin: 'http://evil.example' });
  assertError(su, 403, 'UNAUTHORIZED', 'signup with a foreign Origin');
  const li = await api(srv, 'POST', '/api/auth/login', { body: { email: s.email, password: s.password }, origin: 'http://evil.example' });
  assertError(li, 403, 'UNAUTHORIZED', 'login with a foreign Origin');
});

test('API keys: create (shown once), list (hint, no secret), use as Bearer without CSRF, revoke → 401', async () => {
  const s = await signup();
  const c = await api(srv, 'POST', '/api/keys', { cookie: s.cookie, body: { name: 'ci key' }, origin: srv.baseUrl });
  const k = assertOk(c, 201, 'POST /api/keys');
  assert.match(k.id, /^key_/);
  assert.match(k.key, /^sk_/);
  assert.equal(k.name, 'ci key');
  assert.equal(typeof k.hint, 'string');
  assert.ok(!k.key.includes(k.hint) || k.hint.length < k.key.length / 2, 'hint must not reveal the whole key');

  const me = assertOk(await api(srv, 'GET', '/api/me', { key: k.key }), 200, 'Bearer with the new key');
  assert.equal(me.user.email, s.email);
  // Bearer writes are not CSRF-checked, even with a foreign Origin.
  const k2 = assertOk(await api(srv, 'POST', '/api/keys', { key: k.key, body: { name: 'second' }, origin: 'http://evil.example' }), 201, 'Bearer POST with foreign Origin');

  const list = assertOk(await api(srv, 'GET', '/api/keys', { key: k.key }), 200);
  const used = list.items.find((i) => i.id === k.id);
  assert.ok(typeof used.lastUsedAt === 'number' && used.lastUsedAt >= used.createdAt, `lastUsedAt must record the key's use, got ${used.lastUsedAt}`);
  assert.equal(list.items.length, 2);
  assert.equal(list.nextCursor, null);
  for (const it of list.items) {
    assert.ok(!('key' in it), 'GET /api/keys must never return the key itself');
    assert.ok(!JSON.stringify(it).includes(k.key) && !JSON.stringify(it).includes(k2.key), 'no secret in the listing');
    for (const f of ['id', 'name', 'hint', 'createdAt']) assert.ok(f in it, `key item lacks ${f}`);
  }
  assert.deepEqual(list.items.map((i) => i.id).sort(), [k.id, k2.id].sort());

  // Another user cannot revoke my key.
  const other = await createUser(srv.dataDir, { tokens: 0 });
  const foreign = await api(srv, 'DELETE', `/api/keys/${k2.id}`, { key: other.key });
  assert.ok([403, 404].includes(foreign.status), `deleting a foreign key must be refused, got ${foreign.status}`);
  assertOk(await api(srv, 'GET', '/api/me', { key: k2.key }), 200, 'key survives a foreign delete');

  const del = await api(srv, 'DELETE', `/api/keys/${k2.id}`, { key: k.key });
  assert.deepEqual(assertOk(del, 200, 'DELETE /api/keys/{id}'), { id: k2.id, revoked: true });
  assertError(await api(srv, 'GET', '/api/me', { key: k2.key }), 401, 'AUTHENTICATION_REQUIRED', 'revoked key');
  assertOk(await api(srv, 'GET', '/api/me', { key: k.key }), 200, 'the other key still works');
  assert.equal(assertOk(await api(srv, 'GET', '/api/keys', { key: k.key }), 200).items.length, 1);
});

test('AUTHENTICATION_REQUIRED: no credentials, a bad key, a bad cookie, a malformed Authorization header', async () => {
  const cases = [
    {},
    { key: 'sk_definitely_not_a_key' },
    { cookie: 'ss_session=forged' },
    { headers: { authorization: 'Basic dXNlcjpwYXNz' } },
    { headers: { authorization: 'Bearer' } },
  ];
  for (const c of cases) {
    for (const [m, p, body] of [['GET', '/api/me'], ['GET', '/api/generations'], ['POST', '/api/generation/create', {}], ['GET', '/api/tokens/transactions'], ['GET', '/api/keys']]) {
      const r = await api(srv, m, p, { ...c, body, origin: srv.baseUrl });
      assertError(r, 401, 'AUTHENTICATION_REQUIRED', `${m} ${p} with ${JSON.stringify(c)}`);
    }
  }
});

test('admin grant: an admin adds tokens (ledger row with reason, balance event); a user gets UNAUTHORIZED', async () => {
  const admin = await createUser(srv.dataDir, { tokens: 0, admin: true });
  const user = await createUser(srv.dataDir, { tokens: 3 });
  const r = await api(srv, 'POST', `/api/admin/users/${user.userId}/tokens`, { key: admin.key, body: { amount: 25, reason: 'support ticket 42' } });
  assert.deepEqual(assertOk(r, 200, 'admin grant'), { userId: user.userId, tokenBalance: 28 });
  assert.equal(await balance(srv, user.key), 28);
  const tx = await transactions(srv, user.key);
  assert.equal(tx.length, 2);
  assert.equal(tx[0].amount, 25, 'newest first: the grant');
  assert.equal(tx[0].reason, 'support ticket 42');
  assert.equal(tx[0].balanceAfter, 28);
  assert.ok(['grant', 'purchase', 'adjustment'].includes(tx[0].kind), `kind ${tx[0].kind}`);
  assert.equal(tx[1].amount, 3);
  const me = assertOk(await api(srv, 'GET', '/api/me', { key: user.key }), 200);
  assert.equal(me.user.tokenBalance, 28);

  // Not an admin: refused, nothing changes.
  const denied = await api(srv, 'POST', `/api/admin/users/${admin.userId}/tokens`, { key: user.key, body: { amount: 1000, reason: 'self-service' } });
  assertError(denied, 403, 'UNAUTHORIZED', 'admin route as a plain user');
  const selfDenied = await api(srv, 'POST', `/api/admin/users/${user.userId}/tokens`, { key: user.key, body: { amount: 1000, reason: 'self-service' } });
  assertError(selfDenied, 403, 'UNAUTHORIZED', 'admin route on oneself as a plain user');
  assert.equal(await balance(srv, user.key), 28);
  assert.equal(await balance(srv, admin.key), 0);

  // Broken bodies.
  const bad = await api(srv, 'POST', `/api/admin/users/${user.userId}/tokens`, { key: admin.key, body: { amount: 'lots' } });
  assertError(bad, 400, 'VALIDATION_ERROR');
  assert.ok(errorFields(bad).includes('amount'), `validationErrors lacks amount: ${JSON.stringify(bad.json.validationErrors)}`);
  // Unknown user: refused, nothing written.
  const ghost = await api(srv, 'POST', '/api/admin/users/usr_01HZZZZZZZZZZZZZZZZZZZZZZZ/tokens', { key: admin.key, body: { amount: 5, reason: 'ghost' } });
  assert.ok(ghost.status === 404 || ghost.status === 400, `grant to an unknown user → ${ghost.status}`);
  // A debit below zero would break balance >= 0.
  const over = await api(srv, 'POST', `/api/admin/users/${user.userId}/tokens`, { key: admin.key, body: { amount: -1000, reason: 'oops' } });
  assert.ok(over.status >= 400 && over.status < 500, `debit below zero must be refused, got ${over.status}`);
  assert.equal(await balance(srv, user.key), 28);
});

test('GET /api/tokens/transactions pages newest first with a cursor; limit out of range → VALIDATION_ERROR', async () => {
  const admin = await createUser(srv.dataDir, { tokens: 0, admin: true });
  const user = await createUser(srv.dataDir, { tokens: 1 });
  for (let i = 1; i <= 4; i++) {
    assertOk(await api(srv, 'POST', `/api/admin/users/${user.userId}/tokens`, { key: admin.key, body: { amount: i, reason: `r${i}` } }), 200);
  }
  const p1 = assertOk(await api(srv, 'GET', '/api/tokens/transactions?limit=2', { key: user.key }), 200);
  assert.equal(p1.items.length, 2);
  assert.ok(p1.nextCursor, 'a first page of 2 of 5 rows must have nextCursor');
  const p2 = assertOk(await api(srv, 'GET', `/api/tokens/transactions?limit=2&cursor=${encodeURIComponent(p1.nextCursor)}`, { key: user.key }), 200);
  const p3 = assertOk(await api(srv, 'GET', `/api/tokens/transactions?limit=2&cursor=${encodeURIComponent(p2.nextCursor)}`, { key: user.key }), 200);
  assert.equal(p3.nextCursor, null);
  const all = [...p1.items, ...p2.items, ...p3.items];
  assert.deepEqual(all.map((t) => t.amount), [4, 3, 2, 1, 1], 'newest first, no repeats or gaps');
  assert.deepEqual(all.map((t) => t.balanceAfter), [11, 7, 4, 2, 1]);
  assert.equal(new Set(all.map((t) => t.id)).size, 5);
  for (const q of ['limit=0', 'limit=101', 'limit=abc', 'cursor=not-a-real-cursor!']) {
    assertError(await api(srv, 'GET', `/api/tokens/transactions?${q}`, { key: user.key }), 400, 'VALIDATION_ERROR', q);
  }
});

test('secrets at rest: passwords hashed with Argon2id, API keys and sessions stored only as hashes', async () => {
  const email = uniqueEmail('hash');
  const password = 'a very secret password';
  const r = await api(srv, 'POST', '/api/auth/signup', { body: { name: 'H', email, password }, origin: srv.baseUrl });
  assertOk(r, 201);
  const cookie = r.headers.getSetCookie().find((c) => c.startsWith('ss_session=')).split(';')[0];
  const token = cookie.slice('ss_session='.length);
  const k = assertOk(await api(srv, 'POST', '/api/keys', { cookie, body: { name: 'h' }, origin: srv.baseUrl }), 201);
  const [u] = await query(srv.dbPath, `SELECT password_hash FROM users WHERE email = '${email}'`);
  assert.match(u.password_hash || '', /^\$argon2id\$/, 'password_hash must be an Argon2id PHC string');
  assert.ok(!u.password_hash.includes(password));
  const dump = JSON.stringify(await query(srv.dbPath, 'SELECT * FROM api_keys')) + JSON.stringify(await query(srv.dbPath, 'SELECT * FROM sessions'));
  assert.ok(!dump.includes(k.key) && !dump.includes(k.key.slice(3)), 'the API key must not be stored in clear');
  assert.ok(!dump.includes(token), 'the session token must not be stored in clear');
});
