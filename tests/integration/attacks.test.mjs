// Attacks through the real binary (issue 11, item 5): server-side request
// forgery by redirect and by name, session fixation, and a decompression
// bomb. Each refused request charges nothing; the harness checks the ledger
// after every test.
import { createServer } from 'node:http';
import { readFileSync } from 'node:fs';
import { deflateSync, crc32 } from 'node:zlib';
import {
  test, assert, serverFor, api, assertOk, assertError, errorFields, uploadFixture, createBody,
  balance, countGenerations, fixture,
} from './harness.mjs';

// A host on the allow-list (127.0.0.1) that answers every path with a
// redirect to ?to=URL.
async function redirector(t) {
  const s = createServer((req, res) => {
    const to = new URL(req.url, 'http://x').searchParams.get('to');
    res.writeHead(302, { location: to });
    res.end();
  });
  await new Promise((r) => s.listen(0, '127.0.0.1', r));
  t.after(() => s.close());
  return `http://127.0.0.1:${s.address().port}/img.jpg`;
}

test('SSRF: a redirect from an allowed host to loopback, private, link-local, metadata or IPv6-local addresses is refused, nothing charged', async (t) => {
  // Only 127.0.0.1 allowed: every target below is outside it.
  const srv = await serverFor(t, { args: ['--allow-hosts', '127.0.0.1'] });
  const u = await srv.createUser({ tokens: 10 });
  const base = await redirector(t);
  // Hosts that would really serve an image there, so only the address rule
  // can stop the fetch: one on every IPv4 address (127.0.0.2 included) and
  // one on ::1.
  const jpg = readFileSync(fixture('product.jpg'));
  const serve = (req, res) => { res.writeHead(200, { 'content-type': 'image/jpeg' }); res.end(jpg); };
  const any4 = createServer(serve), v6 = createServer(serve);
  await new Promise((r) => any4.listen(0, '0.0.0.0', r));
  await new Promise((r) => v6.listen(0, '::1', r));
  t.after(() => { any4.close(); v6.close(); });
  const port = any4.address().port;
  const reachable = [`http://127.0.0.2:${port}/x.jpg`, `http://[::1]:${v6.address().port}/x.jpg`];
  for (const url of reachable) assert.equal((await fetch(url)).status, 200, `${url} serves an image to anyone who may fetch it`);
  const targets = [
    ...reachable,
    'http://10.1.2.3/x.jpg',
    'http://192.168.0.1/x.jpg',
    'http://169.254.169.254/latest/meta-data/',
    'http://[fe80::1]/x.jpg',
    'http://[fd12::1]/x.jpg',
    'http://0.0.0.0/x.jpg',
  ];
  for (const to of targets) {
    const url = `${base}?to=${encodeURIComponent(to)}`;
    const r = await api(srv, 'POST', '/api/generation/create', { key: u.key, body: createBody(url) });
    assertError(r, 400, 'IMAGE_VALIDATION_ERROR', `redirect to ${to}`);
    assert.deepEqual(errorFields(r), ['productImages[0]'], to);
    if (reachable.includes(to)) assert.match(r.json.validationErrors[0].message, /address|allowed|private|loopback/i, `${to}: ${r.json.validationErrors[0].message}`);
  }
  assert.equal(await balance(srv, u.key), 10);
  assert.equal(await countGenerations(srv, u.key), 0);
});

test('SSRF: names that resolve to loopback are refused when the allow-list does not name them', async (t) => {
  const srv = await serverFor(t, { args: ['--allow-hosts', ''] });
  const u = await srv.createUser({ tokens: 10 });
  const own = await uploadFixture(srv, u.key);
  const path = new URL(own).pathname;
  // The server's own files, asked for through names and forms that are not
  // its public URL: each resolves to a loopback address.
  for (const url of [
    `http://localhost:${srv.port}${path}`,
    `http://127.1:${srv.port}${path}`,
    `http://0x7f000001:${srv.port}${path}`,
    `http://2130706433:${srv.port}${path}`,
    `http://[::ffff:127.0.0.1]:${srv.port}${path}`,
  ]) {
    const r = await api(srv, 'POST', '/api/generation/create', { key: u.key, body: createBody(url) });
    assertError(r, 400, 'IMAGE_VALIDATION_ERROR', url);
  }
  assertOk(await api(srv, 'POST', '/api/generation/create', { key: u.key, body: createBody(own) }), 201, 'its own public /media URL is accepted');
});

test('session fixation: login ignores a session id the client brings and issues a new one each time', async (t) => {
  const srv = await serverFor(t, {});
  const email = `fix-${Date.now()}@example.com`;
  const password = 'correct horse battery';
  const su = await fetch(srv.url('/api/auth/signup'), {
    method: 'POST', headers: { 'content-type': 'application/json', origin: srv.baseUrl },
    body: JSON.stringify({ name: 'Fix', email, password }),
  });
  assert.equal(su.status, 201);
  const sessionOf = (r) => /ss_session=([^;]*)/.exec(r.headers.get('set-cookie') || '')?.[1];
  const planted = 'attacker-chosen-session-value';
  const login = () => fetch(srv.url('/api/auth/login'), {
    method: 'POST',
    headers: { 'content-type': 'application/json', origin: srv.baseUrl, cookie: `ss_session=${planted}` },
    body: JSON.stringify({ email, password }),
  });
  const a = await login();
  const b = await login();
  assert.equal(a.status, 200);
  const sa = sessionOf(a), sb = sessionOf(b);
  assert.ok(sa && sb, 'a session cookie on every login');
  assert.notEqual(sa, planted);
  assert.notEqual(sa, sb, 'a new session id on every login');
  const me = (cookie) => fetch(srv.url('/api/me'), { headers: { cookie: `ss_session=${cookie}` } });
  assert.equal((await me(planted)).status, 401, 'the planted id never becomes a session');
  assert.equal((await me(sa)).status, 200);
  assert.equal((await me(sb)).status, 200);
  assert.equal(sessionOf(su) === sa, false, 'the sign-up session is not reused by login either');
});

// A PNG that declares width × height but holds almost nothing.
function bombPng(width, height) {
  const chunk = (type, data) => {
    const len = Buffer.alloc(4); len.writeUInt32BE(data.length);
    const td = Buffer.concat([Buffer.from(type, 'ascii'), data]);
    const crc = Buffer.alloc(4); crc.writeUInt32BE(crc32(td) >>> 0);
    return Buffer.concat([len, td, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0); ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; ihdr[9] = 2; // 8-bit RGB
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(Buffer.alloc(1 << 20))), chunk('IEND', Buffer.alloc(0))]);
}

test('a decompression bomb (a 1 KB PNG declaring 30000 × 30000) is refused from its header, by upload and by URL', async (t) => {
  const bomb = bombPng(30000, 30000);
  assert.ok(bomb.length < 4096, `${bomb.length} bytes`);
  const host = createServer((req, res) => { res.writeHead(200, { 'content-type': 'image/png' }); res.end(bomb); });
  await new Promise((r) => host.listen(0, '127.0.0.1', r));
  t.after(() => host.close());
  const srv = await serverFor(t, {});
  const u = await srv.createUser({ tokens: 10 });
  const up = await fetch(srv.url('/api/upload'), {
    method: 'POST', headers: { authorization: `Bearer ${u.key}`, 'content-type': 'image/png' }, body: bomb,
  });
  const uj = await up.json();
  assert.equal(up.status, 400, JSON.stringify(uj));
  assert.equal(uj.code, 'IMAGE_VALIDATION_ERROR');
  assert.match(uj.error, /pixel|large|megapixel|dimension/i);
  const r = await api(srv, 'POST', '/api/generation/create', { key: u.key, body: createBody(`http://127.0.0.1:${host.address().port}/b.png`) });
  assertError(r, 400, 'IMAGE_VALIDATION_ERROR');
  assert.equal(await balance(srv, u.key), 10);
  // The server is still well: a normal upload and create go through.
  const ok = await uploadFixture(srv, u.key);
  assertOk(await api(srv, 'POST', '/api/generation/create', { key: u.key, body: createBody(ok) }), 201);
});
