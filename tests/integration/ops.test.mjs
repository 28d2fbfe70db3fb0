// Operations: /healthz, /readyz, /metrics, /api/openapi.json, /api/models,
// --help vs README, the operator CLI, unknown routes and methods.
import { before, after } from 'node:test';
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import {
  test, assert, startServer, api, assertOk, assertError, runCli, createUser, uniqueEmail,
  BIN, ROOT, balance, uploadFixture, createBody, create, start, waitGen,
} from './harness.mjs';
// (startServer's extra args come after the defaults, so a later --allow-hosts overrides the harness's.)

let srv;
before(async () => { srv = await startServer(); });
after(() => srv?.stop());

test('GET /healthz and /readyz answer 200 with a request id', async () => {
  for (const p of ['/healthz', '/readyz']) {
    const r = await api(srv, 'GET', p);
    assert.equal(r.status, 200, `${p} → ${r.status} ${r.text}`);
  }
});

// Parses Prometheus text exposition into [{name, labels, value}], asserting
// that every line is well-formed.
function parseProm(text) {
  const samples = [];
  const types = {};
  for (const line of text.split('\n')) {
    if (line === '') continue;
    if (line.startsWith('#')) {
      const m = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) ?(.*)$/.exec(line);
      if (m && m[1] === 'TYPE') types[m[2]] = m[3];
      continue;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? ([-+0-9.eE]+|NaN|[+-]Inf)( \d+)?$/.exec(line);
    assert.ok(m, `malformed Prometheus sample line: ${JSON.stringify(line)}`);
    const labels = {};
    if (m[3]) for (const l of m[3].matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
    samples.push({ name: m[1], labels, value: Number(m[4]) });
  }
  return { samples, types };
}

test('GET /metrics is Prometheus text with request counters, latency histogram and generations by status', async (t) => {
  const u = await createUser(srv.dataDir, { tokens: 5 });
  // Generate some traffic and one completed generation first.
  const url = await uploadFixture(srv, u.key);
  const c = await create(srv, u.key, createBody(url));
  await start(srv, u.key, c.generationId);
  await waitGen(srv, u.key, c.generationId);

  const m1 = await api(srv, 'GET', '/metrics');
  assert.equal(m1.status, 200);
  assert.match(m1.headers.get('content-type') || '', /^text\/plain/, 'metrics Content-Type must be text/plain (Prometheus text format)');
  const p1 = parseProm(m1.text);
  const requestSamples = (p) => p.samples.filter((s) => /request/i.test(s.name) && !/_bucket$|_sum$|_count$/.test(s.name) && Object.values(s.labels).some((v) => /^[1-5]\d\d$/.test(v)));
  const req1 = requestSamples(p1);
  assert.ok(req1.length > 0, `no request counter with a status label in /metrics:\n${m1.text.slice(0, 3000)}`);
  assert.ok(p1.samples.some((s) => s.name.endsWith('_bucket') && 'le' in s.labels), 'no latency histogram (_bucket with le) in /metrics');
  const genByStatus = p1.samples.filter((s) => /generation/i.test(s.name) && s.labels.status === 'completed');
  assert.ok(genByStatus.length > 0, `no generations-by-status sample with status="completed" in /metrics:\n${m1.text.slice(0, 3000)}`);
  assert.ok(genByStatus.some((s) => s.value >= 1), 'generations{status="completed"} must count the completed generation');

  // The rest of the spec'd families: queue depth, SSE clients, tokens charged/refunded.
  const names = [...new Set(p1.samples.map((s) => s.name))];
  assert.ok(names.some((n) => /queue/i.test(n)), `no queue depth metric: ${names.join(' ')}`);
  assert.ok(names.some((n) => /sse|stream/i.test(n)), `no SSE clients metric: ${names.join(' ')}`);
  assert.ok(p1.samples.some((s) => /token/i.test(s.name) && (/charge/i.test(s.name) || Object.values(s.labels).some((v) => /charge/i.test(v))) && s.value >= 1),
    `no tokens-charged metric counting the charge: ${names.join(' ')}`);
  assert.ok(p1.samples.some((s) => /token/i.test(s.name) && (/refund/i.test(s.name) || Object.values(s.labels).some((v) => /refund/i.test(v)))),
    `no tokens-refunded metric: ${names.join(' ')}`);

  // Request counters move with traffic.
  const total = (p) => requestSamples(p).reduce((a, s) => a + s.value, 0);
  for (let i = 0; i < 5; i++) await api(srv, 'GET', '/api/models', { key: u.key });
  const p2 = parseProm((await api(srv, 'GET', '/metrics')).text);
  assert.ok(total(p2) >= total(p1) + 5, `request counters did not rise by ≥ 5 after 5 requests (${total(p1)} → ${total(p2)})`);
});

test('GET /api/openapi.json is an OpenAPI 3.1 document covering the generation routes', async () => {
  const r = await api(srv, 'GET', '/api/openapi.json');
  assert.equal(r.status, 200);
  assert.ok(r.json, 'openapi.json must parse as JSON');
  assert.match(String(r.json.openapi), /^3\.1\.\d+$/, `openapi must be "3.1.x", got ${r.json.openapi}`);
  const paths = Object.keys(r.json.paths || {});
  for (const p of ['/api/generation/create', '/api/generate', '/api/generations', '/api/upload', '/api/models', '/api/me']) {
    assert.ok(paths.includes(p), `openapi paths lack ${p} (has ${paths.join(', ')})`);
  }
  assert.ok(paths.some((p) => /^\/api\/generations\/\{[^}]+\}$/.test(p)), 'openapi paths lack /api/generations/{id}');
  // Every $ref resolves, and the create body's schema says what the server enforces.
  const refs = JSON.stringify(r.json).match(/"#\/components\/schemas\/[A-Za-z]+"/g) || [];
  assert.ok(refs.length > 0, 'the document references its schemas');
  for (const ref of refs) {
    const name = ref.slice(1, -1).split('/').pop();
    assert.ok(r.json.components?.schemas?.[name], `unresolved ${ref}`);
  }
  const create = r.json.components.schemas.CreateBody;
  assert.deepEqual(create.properties.aspectRatio.enum, ['1:1', '16:9', '9:16', '3:2', '2:3', '4:3', '3:4', '4:5']);
  assert.equal(create.properties.customPrompt.maxLength, 500);
  assert.equal(create.properties.parameters.properties.num_inference_steps.maximum, 100);
});

test('GET /api/models lists local-studio (available, cost 1) and gpt-image-1 (unavailable here)', async () => {
  const u = await createUser(srv.dataDir, { tokens: 0 });
  // Public or authenticated are both fine readings of the spec; with a key it must work.
  const d = assertOk(await api(srv, 'GET', '/api/models', { key: u.key }), 200);
  assert.ok(Array.isArray(d.items));
  const local = d.items.find((m) => m.id === 'local-studio');
  assert.ok(local, 'local-studio missing');
  for (const f of ['id', 'name', 'description', 'provider', 'baseCost', 'maxProductImages', 'maxModelImages', 'outputs', 'available']) {
    assert.ok(f in local, `model lacks field ${f}`);
  }
  assert.equal(local.provider, 'local');
  assert.equal(local.baseCost, 1);
  assert.equal(local.available, true);
  assert.deepEqual(local.costByQuality, { auto: 1, low: 1, medium: 1, high: 2 }, 'costByQuality = ceil(1 × multiplier)');
  const gpt = d.items.find((m) => m.id === 'gpt-image-1');
  assert.ok(gpt, 'gpt-image-1 missing');
  assert.equal(gpt.provider, 'openai');
  assert.equal(gpt.baseCost, 3);
  assert.equal(gpt.available, false, 'gpt-image-1 must be unavailable without an API key');
  assert.deepEqual(gpt.costByQuality, { auto: 3, low: 3, medium: 3, high: 5 });
});

test('unknown route → 404 NOT_FOUND; wrong method → 405 METHOD_NOT_ALLOWED with Allow', async () => {
  const u = await createUser(srv.dataDir, { tokens: 0 });
  const r = await api(srv, 'GET', '/api/no-such-route', { key: u.key });
  assertError(r, 404, 'NOT_FOUND');
  const m = await api(srv, 'DELETE', '/api/models', { key: u.key });
  assertError(m, 405, 'METHOD_NOT_ALLOWED');
  assert.match(m.headers.get('allow') || '', /GET/, 'Allow must list GET');
});

test('stylestudio --help lists every option with its default; each option is documented in README.md', async () => {
  const r = await runCli(['--help']);
  assert.equal(r.code, 0, `--help exit code ${r.code}: ${r.stderr}`);
  const help = r.stdout + r.stderr;
  const opts = [...new Set([...help.matchAll(/(?:^|\s)--([a-z][a-z0-9-]+)/g)].map((m) => m[1]))].filter((o) => o !== 'help' && o !== 'version');
  for (const o of ['listen', 'data', 'db', 'workers', 'public-url', 'allow-hosts', 'signup-tokens', 'pending-ttl', 'max-retries']) {
    assert.ok(opts.includes(o), `--help does not list --${o}`);
  }
  for (const [o, env] of [['listen', 'STYLESTUDIO_LISTEN'], ['pending-ttl', 'STYLESTUDIO_PENDING_TTL'], ['max-retries', 'STYLESTUDIO_MAX_RETRIES']]) {
    assert.ok(help.includes(env), `--help does not name ${env} for --${o}`);
  }
  assert.match(help, /127\.0\.0\.1:8080/, '--help must show the --listen default');
  assert.match(help, /1800/, '--help must show the --pending-ttl default');
  const readme = join(ROOT, 'README.md');
  assert.ok(existsSync(readme), 'README.md is missing (its flags table must document every --help option)');
  const text = readFileSync(readme, 'utf8');
  const missing = opts.filter((o) => !text.includes(`--${o}`));
  assert.deepEqual(missing, [], `options listed by --help but absent from README.md's flags table: ${missing.map((o) => '--' + o).join(', ')}`);
});

test('stylestudio --version prints a version', async () => {
  const r = await runCli(['--version']);
  assert.equal(r.code, 0);
  assert.match(r.stdout, /\d+\.\d+/);
});

test('CLI: user create / grant / list on the live data dir; the API sees the result', async () => {
  const email = uniqueEmail('cli');
  const u = await createUser(srv.dataDir, { email, tokens: 7, name: 'Cli Person' });
  assert.match(u.userId, /^usr_[0-9A-HJKMNP-TV-Z]{26}$/, 'user ids: usr_ + 26 Crockford base32 chars');
  assert.equal(await balance(srv, u.key), 7);
  const g = await runCli(['user', 'grant', '--data', srv.dataDir, '--email', email, '--amount', '5']);
  assert.equal(g.code, 0, `user grant failed: ${g.stderr}`);
  assert.equal(await balance(srv, u.key), 12);
  const l = await runCli(['user', 'list', '--data', srv.dataDir]);
  assert.equal(l.code, 0, `user list failed: ${l.stderr}`);
  assert.ok(l.stdout.includes(email), 'user list must show the new user');
  const dup = await runCli(['user', 'create', '--data', srv.dataDir, '--email', email, '--tokens', '1']);
  assert.notEqual(dup.code, 0, 'creating a second user with the same email must fail');
  const me = assertOk(await api(srv, 'GET', '/api/me', { key: u.key }), 200);
  assert.equal(me.user.email, email);
  assert.equal(me.user.name, 'Cli Person');
  assert.equal(me.user.role, 'user');
});

test('every response carries X-Request-Id, also errors and media misses', async () => {
  // api() asserts the header on every call; make a few unusual ones.
  for (const [m, p] of [['GET', '/'], ['GET', '/media/u/nothing.png'], ['POST', '/api/generate'], ['GET', '/api/generations/gen_x']]) {
    const r = await api(srv, m, p);
    assert.ok(r.status >= 200);
  }
  // Two requests get two different ids.
  const a = await api(srv, 'GET', '/healthz');
  const b = await api(srv, 'GET', '/healthz');
  assert.notEqual(a.headers.get('x-request-id'), b.headers.get('x-request-id'));
});

test('logs: one JSON object per line on stderr; request lines carry the request id', async () => {
  const r = await api(srv, 'GET', '/api/no-such-route-for-logs');
  const rid = r.headers.get('x-request-id');
  let lines = [];
  const { waitFor } = await import('./harness.mjs');
  await waitFor(() => {
    lines = srv.stderr.split('\n').filter((l) => l.trim() && !l.startsWith('=== '));
    return lines.some((l) => l.includes(rid));
  }, { timeout: 3000, what: `a log line with request id ${rid}` });
  for (const l of lines) {
    let o;
    try { o = JSON.parse(l); } catch { assert.fail(`stderr line is not JSON: ${l.slice(0, 200)}`); }
    assert.equal(typeof o, 'object');
  }
  const line = JSON.parse(lines.find((l) => l.includes(rid)));
  assert.ok(Object.values(line).includes(rid), `the request id must be a field of the log object: ${JSON.stringify(line)}`);
});

test('configuration: env STYLESTUDIO_* applies, a flag beats its env var; --public-url is the base of /media URLs and such URLs count as own', async (t) => {
  const pub = 'http://studio.example.test';
  const s = await startServer({ args: ['--public-url', pub, '--signup-tokens', '4'], env: { STYLESTUDIO_SIGNUP_TOKENS: '9', STYLESTUDIO_PENDING_TTL: '1' } });
  t.after(() => s.stop());
  const su = await api(s, 'POST', '/api/auth/signup', { body: { name: 'Cfg', email: uniqueEmail('cfg'), password: 'long enough pw' }, origin: s.baseUrl });
  assert.equal(assertOk(su, 201).tokenBalance, 4, '--signup-tokens 4 must beat STYLESTUDIO_SIGNUP_TOKENS=9');
  const u = await createUser(s.dataDir, { tokens: 3 });
  const url = await uploadFixture(s, u.key).catch((e) => { throw e; });
  assert.ok(url.startsWith(`${pub}/media/`), `upload URL ${url} must start with the public URL ${pub}`);
  // The public URL's host does not resolve; the server must read its own file.
  const c = await create(s, u.key, createBody(url));
  await start(s, u.key, c.generationId);
  const g = await waitGen(s, u.key, c.generationId);
  assert.equal(g.status, 'completed', `own URL under --public-url: ${g.status} ${g.error || ''}`);
  assert.ok(g.resultImages.every((r) => r.startsWith(`${pub}/media/`)));
  // The file is served at the same path on the real listener.
  const path = new URL(g.resultImages[0]).pathname;
  assert.equal((await fetch(s.url(path))).status, 200);
  // STYLESTUDIO_PENDING_TTL=1 applies (no flag given): a pending one expires.
  const p = await create(s, u.key, createBody(url));
  const e = await waitGen(s, u.key, p.generationId, { timeout: 15000, what: 'expiry from STYLESTUDIO_PENDING_TTL' });
  assert.equal(e.status, 'cancelled');
  assert.equal(e.errorCode, 'EXPIRED');
});

test('--allow-hosts: without it, URLs on 127.0.0.1 that are not the server\'s own are refused', async (t) => {
  const s = await startServer({ args: [] });
  t.after(() => s.stop());
  // startServer always passes --allow-hosts 127.0.0.1,localhost; start one without by overriding.
  const bare = await startServer({ args: ['--allow-hosts', ''] });
  t.after(() => bare.stop());
  const u = await createUser(bare.dataDir, { tokens: 3 });
  const own = await uploadFixture(bare, u.key);
  const foreignLoopback = own.replace(`:${bare.port}/`, `:${s.port}/`); // the other server: loopback, not own
  const r = await api(bare, 'POST', '/api/generation/create', { key: u.key, body: createBody(foreignLoopback) });
  assertError(r, 400, 'IMAGE_VALIDATION_ERROR', 'loopback URL of another server without --allow-hosts');
  assertOk(await api(bare, 'POST', '/api/generation/create', { key: u.key, body: createBody(own) }), 201, 'own /media URL is always accepted');
});

test('stylestudio migrate: creates the schema on an empty data dir, is idempotent, and serve starts on the result', async (t) => {
  const { mkdtempSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const dir = mkdtempSync(join(tmpdir(), 'ss-it-mig-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const a = await runCli(['migrate', '--data', dir]);
  assert.equal(a.code, 0, `migrate: ${a.stderr}`);
  const { query, dbFor, PG } = await import('./harness.mjs');
  const tables = (await query(dbFor(dir), PG
    ? "SELECT table_name AS name FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'"
    : "SELECT name FROM sqlite_master WHERE type = 'table'")).map((r) => r.name);
  for (const tname of ['users', 'token_transactions', 'generations', 'events']) assert.ok(tables.includes(tname), `migrate did not create ${tname}`);
  const b = await runCli(['migrate', '--data', dir]);
  assert.equal(b.code, 0, 'a second migrate is a no-op');
  const u = await createUser(dir, { tokens: 2 });
  const s = await startServer({ dataDir: dir, keepData: true });
  t.after(() => s.stop());
  assert.equal(await balance(s, u.key), 2);
});

void BIN;
