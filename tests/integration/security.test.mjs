// Regression tests for the holes found by attacking the service (issue 11):
// configuration typos, CSRF scheme, strict integers, the start-up window,
// validation amplification, password-hashing DoS and login throttling,
// connection exhaustion, and request framing. Each one failed on the code
// before its fix. No timed assertions: every check is on a status, a code,
// a count or a closed socket.
import { before, after } from 'node:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';
import {
  test, assert, startServer, api, assertOk, assertError, errorFields, createUser, uniqueEmail,
  uploadFixture, createBody, runCli, sse,
} from './harness.mjs';

let srv;
let user;
let productUrl;
before(async () => {
  srv = await startServer();
  user = await createUser(srv.dataDir, { tokens: 100 });
  productUrl = await uploadFixture(srv, user.key, 'product.jpg');
});
after(() => srv?.stop());

// ---------------------------------------------------------------- configuration

// `serve` with bad options must exit 2 at once (never print "listening on").
async function serveRefuses(args) {
  const data = mkdtempSync(join(tmpdir(), 'ss-sec-'));
  try {
    const r = await runCli(['serve', '--data', data, '--listen', '127.0.0.1:0', ...args], { timeout: 8000 });
    assert.doesNotMatch(r.stdout, /listening on/, `serve ${args.join(' ')} must not start`);
    assert.equal(r.code, 2, `serve ${args.join(' ')} must exit 2, got ${r.code}: ${r.stderr}`);
    return r.stderr;
  } finally {
    rmSync(data, { recursive: true, force: true });
  }
}

test('configuration: an unknown option refuses to start, naming it and the nearest known one', async () => {
  let err = await serveRefuses(['--no-such-flag', '7']);
  assert.match(err, /--no-such-flag/);
  err = await serveRefuses(['--allow-host', '127.0.0.5']);
  assert.match(err, /unknown option --allow-host\b.*--allow-hosts/);
  err = await serveRefuses(['--max-bodi', '10']);
  assert.match(err, /--max-bodi.*did you mean --max-body/);
  err = await serveRefuses(['stray-word']);
  assert.match(err, /stray-word/);
  const r = await runCli(['user', 'create', '--data', mkdtempSync(join(tmpdir(), 'ss-sec-')), '--email', 'x@example.com', '--tokenz', '3']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /--tokenz.*did you mean --tokens/);
});

test('configuration: out-of-range values and a malformed --allow-hosts entry refuse to start, naming the option', async () => {
  assert.match(await serveRefuses(['--listen', '127.0.0.1:99999']), /--listen/);
  assert.match(await serveRefuses(['--http-threads', '0']), /--http-threads/);
  assert.match(await serveRefuses(['--max-body', '0']), /--max-body/);
  assert.match(await serveRefuses(['--allow-hosts', '10.0.0.0/99']), /--allow-hosts.*10\.0\.0\.0\/99/);
  assert.match(await serveRefuses(['--allow-hosts', 'exa mple.com/x']), /--allow-hosts/);
});

// ---------------------------------------------------------------- CSRF

async function signup(server = srv) {
  const email = uniqueEmail('sec');
  const body = { name: 'Sec', email, password: 'correct horse battery' };
  const r = await api(server, 'POST', '/api/auth/signup', { body, origin: server.baseUrl });
  assertOk(r, 201, 'signup');
  const c = r.headers.getSetCookie().find((x) => x.startsWith('ss_session='));
  return { email, password: body.password, cookie: c.split(';')[0] };
}

test('CSRF: the origin check compares the scheme too: https://HOST:PORT on an http server is refused', async () => {
  const s = await signup();
  const tls = srv.baseUrl.replace(/^http:/, 'https:');
  const r = await api(srv, 'POST', '/api/generation/create', { cookie: s.cookie, origin: tls, body: createBody(productUrl) });
  assertError(r, 403, 'UNAUTHORIZED', 'cookie create with an https Origin on an http server');
  const ref = await api(srv, 'POST', '/api/keys', { cookie: s.cookie, headers: { referer: `${tls}/studio` }, body: { name: 'k' } });
  assertError(ref, 403, 'UNAUTHORIZED', 'cookie write with an https Referer on an http server');
  const li = await api(srv, 'POST', '/api/auth/login', { origin: tls, body: { email: s.email, password: s.password } });
  assertError(li, 403, 'UNAUTHORIZED', 'login with an https Origin on an http server');
  assertOk(await api(srv, 'POST', '/api/keys', { cookie: s.cookie, origin: srv.baseUrl, body: { name: 'k' } }), 201, 'same scheme, host and port');
});

// ---------------------------------------------------------------- numbers

test('numbers: integer fields take integer literals only: seed 1e-400 (underflows to 0) and 5.0 are refused, 5 is stored as 5', async () => {
  const base = JSON.stringify(createBody(productUrl)).replace(/}$/, '');
  for (const lit of ['1e-400', '0.0', '5.0', '0.5', '1e2']) {
    const r = await api(srv, 'POST', '/api/generation/create', {
      key: user.key, rawBody: `${base},"parameters":{"seed":${lit}}}`, headers: { 'content-type': 'application/json' },
    });
    assertError(r, 400, 'VALIDATION_ERROR', `seed ${lit}`);
    assert.deepEqual(errorFields(r), ['parameters.seed'], `seed ${lit}`);
  }
  const steps = await api(srv, 'POST', '/api/generation/create', {
    key: user.key, rawBody: `${base},"parameters":{"num_inference_steps":3e1}}`, headers: { 'content-type': 'application/json' },
  });
  assertError(steps, 400, 'VALIDATION_ERROR', 'num_inference_steps 3e1');
  const ok = await api(srv, 'POST', '/api/generation/create', { key: user.key, body: createBody(productUrl, { parameters: { seed: 5 } }) });
  const id = assertOk(ok, 201, 'seed 5').generationId;
  const g = assertOk(await api(srv, 'GET', `/api/generations/${id}`, { key: user.key }), 200);
  assert.equal(g.parameters.seed, 5);
});

// ---------------------------------------------------------------- start-up window

function freePort() {
  return new Promise((res, rej) => {
    const s = net.createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => res(port)); });
  });
}

test('start-up: before "listening on" a request gets 503 SERVICE_UNAVAILABLE with Retry-After; after it, it is served', async (t) => {
  const port = await freePort();
  let stop = false;
  // Knocks until the port answers; the first answer is taken during the
  // start-up window that start_delay_ms holds open.
  const first = (async () => {
    while (!stop) {
      try {
        return await fetch(`http://127.0.0.1:${port}/api/models`, { signal: AbortSignal.timeout(5000) });
      } catch { await new Promise((r) => setTimeout(r, 10)); }
    }
    return null;
  })();
  const s = await startServer({ args: ['--listen', `127.0.0.1:${port}`, '--test-faults', 'start_delay_ms=1500'] });
  t.after(() => s.stop());
  stop = true;
  const r = await first;
  assert.ok(r, 'the port answered');
  const body = await r.json();
  assert.equal(r.status, 503, `first answer ${r.status} ${JSON.stringify(body)}`);
  assert.equal(body.code, 'SERVICE_UNAVAILABLE');
  assert.ok(Number(r.headers.get('retry-after')) >= 1, 'Retry-After set');
  assertOk(await api(s, 'GET', '/api/models'), 200, 'served once "listening on" is printed');
  assertOk(await api(s, 'GET', '/readyz'), 200, 'ready');
});
