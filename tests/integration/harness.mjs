// Integration-test harness: starts the real `stylestudio` binary on port 0,
// speaks HTTP and SSE to it, and checks the token ledger in its database.
//
// Every server started here is registered; the `test` wrapper below prints
// the stderr of the file's servers when a test fails and runs the ledger
// check on every live server after each test. A process-exit hook SIGKILLs
// anything still running, so nothing outlives the run.
//
// Store: the SQLite file DATA/stylestudio.db by default. With
// STYLESTUDIO_TEST_PG=DIR (the socket directory of a cluster started by
// scripts/pg.sh) every data directory gets its own PostgreSQL database,
// named after the directory (dbName), and every server, worker and CLI run
// on that data directory is given it with --db — so whatever shares a data
// directory shares a database, exactly as it shares the SQLite file.
import { spawn, execFile, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createServer as createHttpServer } from 'node:http';
import net from 'node:net';
import { mkdtempSync, rmSync, readFileSync, existsSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname, resolve, basename } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test as nodeTest } from 'node:test';
import assert from 'node:assert/strict';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const BIN = process.env.STYLESTUDIO_BIN || join(ROOT, 'build', 'stylestudio');
export const FIXTURES = join(ROOT, 'tests', 'fixtures');
// A sanitizer build (ASan keeps freed memory in its quarantine, TSan
// shadows every byte) or the valgrind wrapper (its allocator never hands
// memory back): figures of the process's memory mean nothing there.
export const SANITIZED = /build-(asan|tsan)\/|tests\/valgrind\//.test(BIN);
export const fixture = (name) => join(FIXTURES, name);

const servers = new Set();
let emailCounter = 0;

// ---------------------------------------------------------------- PostgreSQL mode

// The cluster's socket directory, or '' (SQLite).
export const PG = process.env.STYLESTUDIO_TEST_PG || '';
// Slow builds (TSan, valgrind: scripts/test.sh, tests/valgrind/) stretch
// the harness's waits by STYLESTUDIO_TEST_TIME_SCALE (default 1): a
// server's start, each test's limit, CLI calls, waitFor/waitGen and SSE
// waits.
const SCALE = Math.max(1, Number(process.env.STYLESTUDIO_TEST_TIME_SCALE || 1));
const START_MS = 15000 * SCALE;

const pgDatabases = new Map(); // name → promise of its creation, in this process

// The database of a data directory: its lowercased name, for reading logs,
// and a hash of its absolute path, which keeps apart the mkdtemp names that
// differ only in letter case. The same directory always gives the same name.
export function dbName(dataDir) {
  const abs = resolve(dataDir);
  const tag = basename(abs).toLowerCase().replace(/[^a-z0-9]+/g, '_').replace(/^ss_/, '').slice(0, 30);
  return `ss_${tag}_${createHash('sha256').update(abs).digest('hex').slice(0, 12)}`;
}

const pgHostParam = () => PG.replace(/[^A-Za-z0-9/._-]/g, (c) => encodeURIComponent(c));

// The libpq URL of a data directory's database (PostgreSQL mode only).
export function dbUrl(dataDir) {
  return `postgres:///${dbName(dataDir)}?host=${pgHostParam()}&user=postgres`;
}

// What query() and ledgerProblems() take for a data directory's store: the
// SQLite file, or the PostgreSQL URL.
export function dbFor(dataDir) {
  return PG ? dbUrl(dataDir) : join(dataDir, 'stylestudio.db');
}

// Extra flags naming the data directory's store: none on SQLite (the
// default is DATA/stylestudio.db), --db URL on PostgreSQL.
export function dbArgs(dataDir) {
  return PG ? ['--db', dbUrl(dataDir)] : [];
}

const isPgUrl = (db) => /^postgres(ql)?:\/\//.test(db);

function psql(url, commands, { timeout = 20000 } = {}) {
  const args = ['-X', '-A', '-t', '-q', '-v', 'ON_ERROR_STOP=1', '-d', url];
  for (const c of commands) args.push('-c', c);
  return new Promise((res, rej) => {
    execFile('psql', args, { timeout, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      if (err) return rej(new Error(`psql ${url}: ${stderr || err.message}`));
      res(stdout);
    });
  });
}

// The maintenance database on the same cluster as `url`.
function pgAdminUrl(url) {
  const u = new URL(url);
  u.pathname = '/postgres';
  return u.href;
}

const quoteIdent = (name) => `"${name.replace(/"/g, '""')}"`;

// Creates the data directory's database (once per process; a leftover of
// an earlier run under the same name is replaced, as a fresh data dir has
// a fresh SQLite file). Resolves to its URL. PostgreSQL mode only.
export function ensureDb(dataDir) {
  const name = dbName(dataDir);
  if (!pgDatabases.has(name)) {
    const url = dbUrl(dataDir);
    const p = psql(pgAdminUrl(url), [`DROP DATABASE IF EXISTS ${quoteIdent(name)} WITH (FORCE)`, `CREATE DATABASE ${quoteIdent(name)}`]);
    p.catch(() => pgDatabases.delete(name));
    pgDatabases.set(name, p.then(() => url));
  }
  return pgDatabases.get(name);
}

// Drops the data directory's database (best effort: connections still open
// are ended). PostgreSQL mode only.
export async function dropDb(dataDir) {
  const name = dbName(dataDir);
  pgDatabases.delete(name);
  try {
    await psql(pgAdminUrl(dbUrl(dataDir)), [`DROP DATABASE IF EXISTS ${quoteIdent(name)} WITH (FORCE)`]);
  } catch {}
}

async function pgDatabaseExists(url) {
  const name = decodeURIComponent(new URL(url).pathname.slice(1));
  const out = await psql(pgAdminUrl(url), [`SELECT count(*) FROM pg_database WHERE datname = '${name.replace(/'/g, "''")}'`]);
  return out.trim() === '1';
}

// Row-returning statements come back as json_agg of the rows; the values
// are made to look like sqlite3 -json's: booleans as 1/0, json/jsonb
// columns as their text.
const ROWS_SQL = /^\s*(SELECT|WITH|VALUES|TABLE)\b/i;
async function pgQuery(url, sql) {
  if (!ROWS_SQL.test(sql)) {
    await psql(url, [sql]);
    return [];
  }
  const body = sql.replace(/[\s;]+$/, '');
  const out = await psql(url, [`SELECT COALESCE(json_agg(t), '[]') FROM (${body}) t`]);
  return JSON.parse(out).map((row) => {
    for (const [k, v] of Object.entries(row)) {
      if (typeof v === 'boolean') row[k] = v ? 1 : 0;
      else if (v !== null && typeof v === 'object') row[k] = JSON.stringify(v);
    }
    return row;
  });
}

// Environment for children: nothing from the caller's STYLESTUDIO_* or
// provider credentials may leak in (tests rely on defaults, e.g. that
// gpt-image-1 is unavailable).
function childEnv(extra = {}) {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (/^(STYLESTUDIO_|OPENAI|REPLICATE)/i.test(k)) continue;
    env[k] = v;
  }
  return { ...env, ...extra };
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Races `promise` against a timer that is always cleared (so no stray timer
// keeps the test process alive). On timeout: resolves `onTimeout()` if given,
// else rejects with `message`.
export function withTimeout(promise, ms, message, onTimeout) {
  let timer;
  const t = new Promise((res, rej) => {
    timer = setTimeout(() => {
      if (!onTimeout) return rej(new Error(message));
      try { res(onTimeout()); } catch (e) { rej(e); }
    }, ms);
  });
  return Promise.race([promise, t]).finally(() => clearTimeout(timer));
}

// Polls `fn` (sync or async) until it returns a truthy value; returns it.
// A test utility only — the server's own behaviour is asserted to be push-based
// where the spec says so (SSE tests never poll).
export async function waitFor(fn, { timeout = 10000, interval = 40, what = 'condition' } = {}) {
  const end = Date.now() + timeout * SCALE;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) {
      const detail = last instanceof Error ? `: ${last.message}` : last !== undefined ? `: last value ${JSON.stringify(last)}` : '';
      throw new Error(`timed out after ${timeout} ms waiting for ${what}${detail}`);
    }
    await sleep(interval);
  }
}

// ---------------------------------------------------------------- server

// Rate limits (SPEC §4) are off in tests unless a test sets its own
// (--rate-free / --rate-pro in args, or STYLESTUDIO_RATE_* in env): the
// defaults (bursts of 10) would stop the many suites that create more.
function rateDefaults(args = [], env = {}) {
  const out = [];
  for (const plan of ['free', 'pro']) {
    const flag = `--rate-${plan}`;
    const given = args.some((a) => a === flag || String(a).startsWith(`${flag}=`)) ||
      (env && `STYLESTUDIO_RATE_${plan.toUpperCase()}` in env);
    if (!given) out.push(flag, '0');
  }
  return out;
}

class Server {
  constructor(opts) {
    this.opts = opts;
    this.dataDir = opts.dataDir;
    this.stdout = '';
    this.stderr = '';
    this.proc = null;
    this.exit = null; // promise of {code, signal}
    this.baseUrl = null;
    this.dead = true;
  }

  args() {
    return [
      'serve',
      '--listen', `127.0.0.1:${this.port || 0}`,
      '--data', this.dataDir,
      ...(this.opts.db ? ['--db', this.opts.db] : dbArgs(this.dataDir)),
      '--workers', String(this.opts.workers ?? 2),
      '--allow-hosts', '127.0.0.1,localhost',
      '--retry-base-ms', '20',
      ...rateDefaults(this.opts.args, this.opts.env),
      ...(this.opts.args || []),
    ];
  }

  async start() {
    if (!existsSync(BIN)) throw new Error(`${BIN} does not exist: run make first`);
    if (PG && !this.opts.db) await ensureDb(this.dataDir);
    const args = this.args();
    this.stderr += `\n=== start: ${basename(BIN)} ${args.join(' ')}\n`;
    const proc = spawn(BIN, args, { cwd: ROOT, env: childEnv(this.opts.env), stdio: ['ignore', 'pipe', 'pipe'] });
    this.proc = proc;
    this.dead = false;
    this.exit = new Promise((res) => {
      proc.on('exit', (code, signal) => { this.dead = true; res({ code, signal }); });
      proc.on('error', (err) => { this.dead = true; res({ code: null, signal: null, error: err }); });
    });
    proc.stderr.setEncoding('utf8');
    proc.stderr.on('data', (d) => { this.stderr += d; });
    proc.stdout.setEncoding('utf8');
    let firstLine;
    const gotLine = new Promise((res) => {
      let buf = '';
      proc.stdout.on('data', (d) => {
        this.stdout += d;
        if (firstLine !== undefined) return;
        buf += d;
        const nl = buf.indexOf('\n');
        if (nl >= 0) { firstLine = buf.slice(0, nl).replace(/\r$/, ''); res(firstLine); }
      });
    });
    const failed = this.exit.then(({ code, signal, error }) => { throw new Error(`server exited before listening (code ${code}, signal ${signal}${error ? ', ' + error.message : ''})\n${this.stderr.slice(-4000)}`); });
    failed.catch(() => {}); // only meaningful inside the race below
    let line;
    try {
      line = await withTimeout(Promise.race([gotLine, failed]), START_MS, `server printed no listening line within ${START_MS} ms\n${this.stderr.slice(-4000)}`);
    } catch (e) {
      this.kill();
      throw e;
    }
    const m = /^listening on (http:\/\/127\.0\.0\.1:(\d+))\/?$/.exec(line);
    if (!m) {
      this.kill();
      throw new Error(`first stdout line must be "listening on http://127.0.0.1:PORT", got ${JSON.stringify(line)}`);
    }
    assert.notEqual(Number(m[2]), 0, 'the real port must be printed when port 0 was asked');
    this.baseUrl = m[1];
    this.port = Number(m[2]);
    return this;
  }

  // SIGKILL; resolves when the process is gone.
  async kill() {
    if (this.proc && !this.dead) this.proc.kill('SIGKILL');
    return this.exit;
  }

  // SIGTERM; resolves with {code, signal} (SIGKILLs after `timeout`).
  async sigterm(timeout = 20000) {
    if (!this.proc || this.dead) return this.exit;
    this.proc.kill('SIGTERM');
    const r = await withTimeout(this.exit, timeout, '', () => null);
    if (r) return r;
    this.stderr += `\n=== harness: no exit ${timeout} ms after SIGTERM; SIGKILL\n`;
    this.proc.kill('SIGKILL');
    const k = await this.exit;
    return { ...k, timedOut: true };
  }

  // Starts again on the same data directory and the same port (so the
  // /media URLs stored in generations stay the server's own URLs); `args`
  // replaces the extra flags.
  async restart(args) {
    if (!this.dead) await this.kill();
    if (args) this.opts.args = args;
    let lastErr;
    for (let i = 0; i < 10; i++) {
      try { return await this.start(); } catch (e) { lastErr = e; await sleep(300); }
    }
    throw lastErr;
  }

  async stop() {
    await this.kill();
    servers.delete(this);
    if (!this.opts.keepData) rmSync(this.dataDir, { recursive: true, force: true });
    if (PG && !this.opts.keepData && !this.opts.db) await dropDb(this.dataDir);
  }

  // The SQLite file, or on PostgreSQL the database URL (for query()).
  get dbPath() { return dbFor(this.dataDir); }

  url(path) { return this.baseUrl + path; }

  api(method, path, opts) { return api(this, method, path, opts); }

  // Creates a user with the CLI on this server's data dir.
  createUser(opts) { return createUser(this.dataDir, opts); }
}

// Starts a server on a fresh data dir. opts: {args: [...extra flags], workers,
// env, dataDir, keepData, db (a database URL instead of the data dir's)}.
export async function startServer(opts = {}) {
  const dataDir = opts.dataDir || mkdtempSync(join(tmpdir(), 'ss-it-'));
  const s = new Server({ ...opts, dataDir });
  servers.add(s);
  await s.start();
  return s;
}

// For use inside a test: starts a server stopped by t.after.
export async function serverFor(t, opts) {
  const s = await startServer(opts);
  t.after(() => s.stop());
  return s;
}

process.on('exit', () => {
  for (const s of servers) {
    try { if (s.proc && !s.dead) s.proc.kill('SIGKILL'); } catch {}
    try { if (!s.opts.keepData) rmSync(s.dataDir, { recursive: true, force: true }); } catch {}
  }
  // Every database this process made and did not drop yet, also those of
  // keepData dirs (on SQLite the database goes with the dir its owner removes).
  if (PG && pgDatabases.size) {
    const drops = [...pgDatabases.keys()].map((n) => ['-c', `DROP DATABASE IF EXISTS ${quoteIdent(n)} WITH (FORCE)`]).flat();
    try { execFileSync('psql', ['-X', '-q', '-h', PG, '-U', 'postgres', '-d', 'postgres', ...drops], { stdio: 'ignore', timeout: 20000 }); } catch {}
  }
});
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => process.exit(130));
}

// ---------------------------------------------------------------- CLI

// Runs the binary. On PostgreSQL, a command with --data DIR also gets
// --db for DIR's database (created if new), as serve does.
export async function runCli(args, { timeout = 20000 } = {}) {
  if (PG && !args.includes('--db')) {
    const i = args.indexOf('--data');
    if (i >= 0 && i + 1 < args.length) {
      await ensureDb(args[i + 1]);
      args = [...args, ...dbArgs(args[i + 1])];
    }
  }
  return new Promise((res) => {
    execFile(BIN, args, { cwd: ROOT, env: childEnv(), timeout: timeout * SCALE }, (err, stdout, stderr) => {
      res({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr });
    });
  });
}

export function uniqueEmail(tag = 'u') {
  return `${tag}-${process.pid}-${Date.now().toString(36)}-${++emailCounter}@example.com`;
}

// `stylestudio user create`; returns {userId, key, email}.
export async function createUser(dataDir, { email = uniqueEmail(), tokens = 10, admin = false, name, db } = {}) {
  const args = ['user', 'create', '--data', dataDir, '--email', email, '--tokens', String(tokens)];
  if (db) args.push('--db', db);
  if (name) args.push('--name', name);
  if (admin) args.push('--admin');
  const r = await runCli(args);
  assert.equal(r.code, 0, `user create failed (exit ${r.code}): ${r.stderr}`);
  const userId = /^user_id: (usr_\S+)$/m.exec(r.stdout)?.[1];
  const key = /^api_key: (sk_\S+)$/m.exec(r.stdout)?.[1];
  assert.ok(userId, `user create printed no "user_id: usr_..." line: ${JSON.stringify(r.stdout)}`);
  assert.ok(key, `user create printed no "api_key: sk_..." line: ${JSON.stringify(r.stdout)}`);
  return { userId, key, email };
}

// ---------------------------------------------------------------- HTTP

// A raw TCP connection to the server, optionally from another loopback
// address (127.0.0.2 is another client as far as the server can tell):
// {sock, data (all received, latin1), closed, opened, ended}.
export function rawConn(server, { localAddress } = {}) {
  const sock = net.connect({ host: '127.0.0.1', port: server.port, localAddress });
  const c = { sock, data: '', closed: false };
  c.opened = new Promise((res, rej) => { sock.once('connect', res); sock.once('error', rej); });
  c.ended = new Promise((res) => sock.once('close', () => { c.closed = true; res(); }));
  sock.on('data', (d) => { c.data += d.toString('latin1'); });
  sock.on('error', () => {});
  return c;
}

// api(server, method, path, {key, cookie, body, rawBody, headers, origin})
// → {status, headers, json, text}. `body` is JSON-encoded; `rawBody` is
// sent as is. Every response must carry X-Request-Id (asserted here, so
// every test checks it on every call).
export async function api(server, method, path, opts = {}) {
  const headers = { ...(opts.headers || {}) };
  if (opts.key) headers.authorization = `Bearer ${opts.key}`;
  if (opts.cookie) headers.cookie = opts.cookie;
  if (opts.origin) headers.origin = opts.origin;
  let body;
  if (opts.rawBody !== undefined) body = opts.rawBody;
  else if (opts.body !== undefined) {
    body = JSON.stringify(opts.body);
    if (!Object.keys(headers).some((h) => h.toLowerCase() === 'content-type')) headers['content-type'] = 'application/json';
  }
  const init = { method, headers, body, redirect: 'manual', signal: AbortSignal.timeout(opts.timeout ?? 70000) };
  if (body instanceof ReadableStream) init.duplex = 'half'; // sent chunked
  const res = await fetch(server.url(path), init);
  const text = await res.text();
  let json;
  try { json = text ? JSON.parse(text) : undefined; } catch { json = undefined; }
  const rid = res.headers.get('x-request-id');
  assert.ok(rid && rid.length > 0, `${method} ${path} → ${res.status}: response has no X-Request-Id header`);
  if (json && json.success === false && json.requestId !== undefined) {
    assert.equal(json.requestId, rid, `${method} ${path}: error body requestId must equal X-Request-Id`);
  }
  return { status: res.status, headers: res.headers, json, text, data: json?.data };
}

// Asserts a spec error envelope: HTTP status, code, message, validationErrors array.
export function assertError(r, status, code, ctx = '') {
  const where = ctx ? `${ctx}: ` : '';
  assert.equal(r.json?.code, code, `${where}expected code ${code}, got HTTP ${r.status} ${r.text.slice(0, 500)}`);
  assert.equal(r.status, status, `${where}expected HTTP ${status} for ${code}, got ${r.status}`);
  assert.equal(r.json.success, false, `${where}error body must have success:false`);
  assert.equal(typeof r.json.error, 'string', `${where}error body must have a string "error"`);
  assert.ok(r.json.error.length > 0, `${where}error message must not be empty`);
  assert.ok(Array.isArray(r.json.validationErrors ?? []), `${where}validationErrors must be an array`);
  assert.equal(typeof r.json.requestId, 'string', `${where}error body must carry requestId`);
  return r.json;
}

export function assertOk(r, status, ctx = '') {
  const where = ctx ? `${ctx}: ` : '';
  assert.equal(r.status, status, `${where}expected HTTP ${status}, got ${r.status} ${r.text.slice(0, 600)}`);
  assert.equal(r.json?.success, true, `${where}expected success:true, got ${r.text.slice(0, 600)}`);
  return r.json.data;
}

export function errorFields(r) {
  return (r.json?.validationErrors || []).map((e) => e.field);
}

// ---------------------------------------------------------------- uploads and images

const CT = { jpg: 'image/jpeg', jpeg: 'image/jpeg', png: 'image/png', webp: 'image/webp', txt: 'text/plain' };

// Uploads a fixture. mode 'raw' (body = bytes, Content-Type from the
// extension unless given) or 'multipart' (field `file`). Returns the api() result.
export async function upload(server, key, path, { mode = 'raw', contentType } = {}) {
  const bytes = readFileSync(path);
  const ext = path.split('.').pop().toLowerCase();
  const ct = contentType || CT[ext] || 'application/octet-stream';
  if (mode === 'raw') {
    return api(server, 'POST', '/api/upload', { key, rawBody: bytes, headers: { 'content-type': ct } });
  }
  const form = new FormData();
  form.append('file', new Blob([bytes], { type: ct }), basename(path));
  return api(server, 'POST', '/api/upload', { key, rawBody: form });
}

// Uploads a fixture and returns its URL (asserting success).
export async function uploadFixture(server, key, name = 'product.jpg', opts) {
  const r = await upload(server, key, fixture(name), opts);
  const d = assertOk(r, 201, `upload ${name}`);
  assert.match(d.url, /^http:\/\/.+\/media\//, 'upload url must be a /media URL');
  return d.url;
}

// Width/height from PNG IHDR, JPEG SOFn, or WebP VP8/VP8L/VP8X headers.
export function imageSize(buf) {
  buf = Buffer.from(buf);
  if (buf.length >= 24 && buf.readUInt32BE(0) === 0x89504e47 && buf.toString('latin1', 12, 16) === 'IHDR') {
    return { format: 'png', width: buf.readUInt32BE(16), height: buf.readUInt32BE(20) };
  }
  if (buf.length >= 4 && buf[0] === 0xff && buf[1] === 0xd8) {
    let i = 2;
    while (i + 9 < buf.length) {
      if (buf[i] !== 0xff) { i++; continue; }
      const marker = buf[i + 1];
      if (marker === 0xff) { i++; continue; }
      if (marker === 0xd8 || marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) { i += 2; continue; }
      const len = buf.readUInt16BE(i + 2);
      const isSOF = marker >= 0xc0 && marker <= 0xcf && ![0xc4, 0xc8, 0xcc].includes(marker);
      if (isSOF) return { format: 'jpeg', height: buf.readUInt16BE(i + 5), width: buf.readUInt16BE(i + 7) };
      i += 2 + len;
    }
    return null;
  }
  if (buf.length >= 30 && buf.toString('latin1', 0, 4) === 'RIFF' && buf.toString('latin1', 8, 12) === 'WEBP') {
    const chunk = buf.toString('latin1', 12, 16);
    if (chunk === 'VP8 ') return { format: 'webp', width: buf.readUInt16LE(26) & 0x3fff, height: buf.readUInt16LE(28) & 0x3fff };
    if (chunk === 'VP8L') {
      const b = buf.readUInt32LE(21);
      return { format: 'webp', width: (b & 0x3fff) + 1, height: ((b >> 14) & 0x3fff) + 1 };
    }
    if (chunk === 'VP8X') return { format: 'webp', width: buf.readUIntLE(24, 3) + 1, height: buf.readUIntLE(27, 3) + 1 };
  }
  return null;
}

// ---------------------------------------------------------------- generations

export const RATIOS = { '1:1': 1, '16:9': 16 / 9, '9:16': 9 / 16, '3:2': 1.5, '2:3': 2 / 3, '4:3': 4 / 3, '3:4': 0.75, '4:5': 0.8 };

export function createBody(productUrl, over = {}) {
  return {
    productImages: [productUrl],
    model: 'local-studio',
    style: 'realistic',
    quality: 'auto',
    aspectRatio: '1:1',
    ...over,
  };
}

export async function getGen(server, key, id) {
  const r = await api(server, 'GET', `/api/generations/${id}`, { key });
  return assertOk(r, 200, `GET /api/generations/${id}`);
}

export const TERMINAL = new Set(['completed', 'failed', 'cancelled']);

// Polls a generation until `pred(record)` holds (default: terminal).
export async function waitGen(server, key, id, { pred = (g) => TERMINAL.has(g.status), timeout = 20000, what } = {}) {
  let last;
  try {
    return await waitFor(async () => { last = await getGen(server, key, id); return pred(last) ? last : null; },
      { timeout, interval: 50, what: what || `generation ${id}` });
  } catch (e) {
    e.message += `\nlast record: ${JSON.stringify(last)}`;
    throw e;
  }
}

export async function balance(server, key) {
  const d = assertOk(await api(server, 'GET', '/api/me', { key }), 200, 'GET /api/me');
  assert.equal(d.tokenBalance, d.user?.tokenBalance, '/api/me tokenBalance must equal user.tokenBalance');
  return d.tokenBalance;
}

// Counts the user's generations through the list endpoint (all pages).
export async function countGenerations(server, key, status) {
  let n = 0, cursor = null, pages = 0;
  do {
    const q = new URLSearchParams({ limit: '100' });
    if (cursor) q.set('cursor', cursor);
    if (status) q.set('status', status);
    const d = assertOk(await api(server, 'GET', `/api/generations?${q}`, { key }), 200, 'list generations');
    n += d.items.length;
    cursor = d.nextCursor;
    assert.ok(++pages < 100, 'pagination does not end');
  } while (cursor);
  return n;
}

// Create (two-step, step 1) and return data; asserts 201.
export async function create(server, key, body, headers) {
  const r = await api(server, 'POST', '/api/generation/create', { key, body, headers });
  return assertOk(r, 201, 'POST /api/generation/create');
}

export async function start(server, key, generationId, headers) {
  const r = await api(server, 'POST', '/api/generate', { key, body: { generationId }, headers });
  return assertOk(r, 202, 'POST /api/generate');
}

// Ledger rows of a user through the API (all pages, newest first).
export async function transactions(server, key) {
  const out = [];
  let cursor = null;
  do {
    const q = new URLSearchParams({ limit: '100' });
    if (cursor) q.set('cursor', cursor);
    const d = assertOk(await api(server, 'GET', `/api/tokens/transactions?${q}`, { key }), 200, 'transactions');
    out.push(...d.items);
    cursor = d.nextCursor;
  } while (cursor);
  return out;
}

// A remote image host on 127.0.0.1 (on the tests' fetch allow-list):
// /ok.jpg serves the product fixture, anything else 404. Resolves to
// {base, close}.
export async function startImageHost() {
  const jpg = readFileSync(fixture('product.jpg'));
  const host = createHttpServer((req, res) => {
    if (req.url === '/ok.jpg') { res.writeHead(200, { 'content-type': 'image/jpeg' }); res.end(jpg); return; }
    res.writeHead(404); res.end('no');
  });
  await new Promise((r) => host.listen(0, '127.0.0.1', r));
  return { base: `http://127.0.0.1:${host.address().port}`, close: () => host.close() };
}

// ---------------------------------------------------------------- SSE

// Opens an SSE stream. Returns a client with:
//   frames: [{event, id, data, json, raw}] (comments in `comments`)
//   until(pred, timeout) → the first frame (so far or future) matching pred
//   collect(pred, timeout) → all frames up to and including the first match
//   ended: promise resolved when the server closes the stream
//   close()
export async function sse(server, path, { key, cookie, lastEventId, headers = {}, timeout = 5000 } = {}) {
  const h = { accept: 'text/event-stream', ...headers };
  if (key) h.authorization = `Bearer ${key}`;
  if (cookie) h.cookie = cookie;
  if (lastEventId !== undefined) h['last-event-id'] = String(lastEventId);
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(new Error('SSE connect timeout')), timeout);
  let res;
  try {
    res = await fetch(server.url(path), { headers: h, signal: ac.signal });
  } finally {
    clearTimeout(timer);
  }
  assert.ok(res.headers.get('x-request-id'), `GET ${path} → ${res.status}: SSE response has no X-Request-Id header`);
  const client = {
    status: res.status,
    headers: res.headers,
    frames: [],
    comments: [],
    retry: null,
    done: false,
    error: null,
    waiters: new Set(),
    close() { ac.abort(); },
  };
  if (!(res.headers.get('content-type') || '').startsWith('text/event-stream')) {
    client.text = await res.text();
    try { client.json = JSON.parse(client.text); } catch {}
    client.done = true;
    client.ended = Promise.resolve();
    return client;
  }
  const notify = () => { for (const w of client.waiters) w(); };
  client.ended = (async () => {
    const dec = new TextDecoder();
    let buf = '';
    let cur = { data: [] };
    try {
      for await (const chunk of res.body) {
        buf += dec.decode(chunk, { stream: true });
        let nl;
        while ((nl = buf.search(/\r\n|\r|\n/)) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + (buf[nl] === '\r' && buf[nl + 1] === '\n' ? 2 : 1));
          if (line === '') {
            if (cur.data.length || cur.event || cur.id !== undefined) {
              const data = cur.data.join('\n');
              let json;
              try { json = JSON.parse(data); } catch {}
              client.frames.push({ event: cur.event || 'message', id: cur.id, data, json });
              notify();
            }
            cur = { data: [] };
            continue;
          }
          if (line.startsWith(':')) { client.comments.push(line); continue; }
          const c = line.indexOf(':');
          const field = c < 0 ? line : line.slice(0, c);
          let value = c < 0 ? '' : line.slice(c + 1);
          if (value.startsWith(' ')) value = value.slice(1);
          if (field === 'data') cur.data.push(value);
          else if (field === 'event') cur.event = value;
          else if (field === 'id') cur.id = value;
          else if (field === 'retry') client.retry = Number(value);
        }
      }
    } catch (e) {
      if (!ac.signal.aborted) client.error = e;
    } finally {
      client.done = true;
      notify();
    }
  })();
  client.until = (pred, ms = 10000) => new Promise((resolveP, rejectP) => {
    const check = () => {
      const f = client.frames.find(pred);
      if (f) { cleanup(); resolveP(f); return; }
      if (client.done) { cleanup(); rejectP(new Error(`SSE ${path} ended without a matching frame; frames: ${summarize(client.frames)}`)); }
    };
    const t = setTimeout(() => { cleanup(); rejectP(new Error(`SSE ${path}: no matching frame within ${ms} ms; frames: ${summarize(client.frames)}`)); }, ms * SCALE);
    const cleanup = () => { clearTimeout(t); client.waiters.delete(check); };
    client.waiters.add(check);
    check();
  });
  client.collect = async (pred, ms) => {
    const f = await client.until(pred, ms);
    return client.frames.slice(0, client.frames.indexOf(f) + 1);
  };
  // Waits for the server to close the stream (rejects after ms).
  client.waitEnd = (ms = 10000) => withTimeout(client.ended, ms * SCALE, '', () => { throw new Error(`SSE ${path} not closed by the server within ${ms} ms; frames: ${summarize(client.frames)}`); });
  return client;
}

export function summarize(frames) {
  return JSON.stringify(frames.map((f) => ({ e: f.event, id: f.id, s: f.json?.status, st: f.json?.stage, p: f.json?.progress, b: f.json?.tokenBalance })));
}

// ---------------------------------------------------------------- ledger check

// Column names from schema/sqlite/001_init.sql (detected at run time, so a
// rename shows up as a clear failure rather than a silent pass).
function sqlite(db, sql, { write = false } = {}) {
  const args = write ? ['-bail', '-json', '-cmd', '.timeout 5000', db, sql] : ['-readonly', '-bail', '-json', db, sql];
  return new Promise((res, rej) => {
    execFile('sqlite3', args, { timeout: 20000 }, (err, stdout, stderr) => {
      if (err) return rej(new Error(`sqlite3 ${db}: ${stderr || err.message}`));
      res(stdout);
    });
  });
}

function parseJsonOutputs(out) {
  // sqlite3 -json prints one array per statement that returned rows.
  const rows = [];
  for (const part of out.trim().split(/\n(?=\[)/)) {
    if (part.trim()) rows.push(...JSON.parse(part));
  }
  return rows;
}

// Rows of `sql` as [{column: value}], from a SQLite file (any statements;
// sqlite3 -json) or a PostgreSQL URL (one SELECT/WITH/VALUES/TABLE
// statement whose rows are returned, or statements returning no rows).
export async function query(db, sql) {
  if (isPgUrl(db)) return pgQuery(db, sql);
  return parseJsonOutputs(await sqlite(db, sql));
}

// Writes to a live server's store (a test arranging a state the API cannot
// make, e.g. a record from an older version). SQLite waits out the
// server's write lock.
export async function execute(db, sql) {
  if (isPgUrl(db)) return pgQuery(db, sql);
  return parseJsonOutputs(await sqlite(db, sql, { write: true }));
}

const schemaCache = {}; // per dialect
async function ledgerSchema(db) {
  const pg = isPgUrl(db);
  const dialect = pg ? 'postgres' : 'sqlite';
  if (schemaCache[dialect]) return schemaCache[dialect];
  const cols = {};
  for (const t of ['users', 'token_transactions', 'generations']) {
    const rows = await query(db, pg
      ? `SELECT column_name AS name FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = '${t}'`
      : `SELECT name FROM pragma_table_info('${t}')`);
    cols[t] = new Set(rows.map((r) => r.name));
    assert.ok(cols[t].size > 0, `ledger check: table ${t} not found in ${db}`);
  }
  const pick = (t, ...names) => {
    const n = names.find((x) => cols[t].has(x));
    assert.ok(n, `ledger check: table ${t} has none of the columns ${names.join(', ')} (has ${[...cols[t]].join(', ')})`);
    return n;
  };
  schemaCache[dialect] = {
    uid: pick('users', 'id', '_id'),
    bal: pick('users', 'token_balance', 'tokenBalance', 'balance'),
    tuser: pick('token_transactions', 'user_id', 'userId'),
    tkind: pick('token_transactions', 'kind'),
    tamount: pick('token_transactions', 'amount'),
    tgen: pick('token_transactions', 'generation_id', 'generationId'),
    gid: pick('generations', 'id', '_id'),
    gstatus: cols.generations.has('status') ? 'status' : null,
    gtokens: ['tokens_used', 'tokensUsed'].find((c) => cols.generations.has(c)) || null,
    tafter: ['balance_after', 'balanceAfter'].find((c) => cols.token_transactions.has(c)) || null,
    tid: cols.token_transactions.has('id') ? 'id' : 'rowid',
  };
  return schemaCache[dialect];
}

// Verifies the ledger invariants (SPEC §3) in one read snapshot. Returns
// the list of problems (empty when all hold). `db` is a SQLite file or a
// PostgreSQL URL (see dbFor); the SQL is the same on both, except that on
// PostgreSQL the reported values are cast to text (UNION ALL needs one type
// per column there) and the one statement is its own snapshot.
export async function ledgerProblems(db) {
  const pg = isPgUrl(db);
  if (pg ? !(await pgDatabaseExists(db)) : !existsSync(db)) return [];
  const s = await ledgerSchema(db);
  const v = pg ? (x) => `CAST(${x} AS TEXT)` : (x) => x; // a reported value
  const sum = (uidExpr) => `(SELECT COALESCE(SUM(t.${s.tamount}),0) FROM token_transactions t WHERE t.${s.tuser} = ${uidExpr})`;
  const cnt = (kind) => `(SELECT COUNT(*) FROM token_transactions t WHERE t.${s.tgen} = g.${s.gid} AND t.${s.tkind} = '${kind}')`;
  const amt = (kind) => `(SELECT COALESCE(SUM(t.${s.tamount}),0) FROM token_transactions t WHERE t.${s.tgen} = g.${s.gid} AND t.${s.tkind} = '${kind}')`;
  const parts = [
    `SELECT 'balance != SUM(ledger)' AS problem, ${v(`u.${s.uid}`)} AS subject, ${v(`u.${s.bal}`)} AS a, ${v(sum(`u.${s.uid}`))} AS b FROM users u WHERE u.${s.bal} != ${sum(`u.${s.uid}`)}`,
    `SELECT 'negative balance', ${v(`u.${s.uid}`)}, ${v(`u.${s.bal}`)}, NULL FROM users u WHERE u.${s.bal} < 0`,
    `SELECT 'more than one ' || t.${s.tkind} || ' row for a generation', ${v(`t.${s.tgen}`)}, ${v('COUNT(*)')}, NULL FROM token_transactions t WHERE t.${s.tgen} IS NOT NULL AND t.${s.tkind} IN ('charge','refund') GROUP BY t.${s.tgen}, t.${s.tkind} HAVING COUNT(*) > 1`,
    `SELECT 'generation without exactly one charge', ${v(`g.${s.gid}`)}, ${v(cnt('charge'))}, NULL FROM generations g WHERE ${cnt('charge')} != 1`,
    `SELECT 'charge amount not negative', ${v(`g.${s.gid}`)}, ${v(amt('charge'))}, NULL FROM generations g WHERE ${cnt('charge')} = 1 AND ${amt('charge')} >= 0`,
    `SELECT 'refund != -charge', ${v(`g.${s.gid}`)}, ${v(amt('refund'))}, ${v(amt('charge'))} FROM generations g WHERE ${cnt('refund')} = 1 AND ${amt('refund')} != -${amt('charge')}`,
    `SELECT 'refund row without generation charge', ${v(`t.${s.tgen}`)}, ${v(`t.${s.tamount}`)}, NULL FROM token_transactions t WHERE t.${s.tkind} = 'refund' AND NOT EXISTS (SELECT 1 FROM token_transactions c WHERE c.${s.tgen} = t.${s.tgen} AND c.${s.tkind} = 'charge')`,
  ];
  if (s.gstatus) {
    parts.push(
      `SELECT 'failed/cancelled generation not refunded', ${v(`g.${s.gid}`)}, ${v(`g.${s.gstatus}`)}, NULL FROM generations g WHERE g.${s.gstatus} IN ('failed','cancelled') AND ${cnt('refund')} != 1`,
      `SELECT 'refund on a generation that is not failed/cancelled', ${v(`g.${s.gid}`)}, ${v(`g.${s.gstatus}`)}, NULL FROM generations g WHERE g.${s.gstatus} NOT IN ('failed','cancelled') AND ${cnt('refund')} != 0`,
    );
  }
  if (s.gtokens) {
    parts.push(`SELECT 'tokens_used != charge - refund', ${v(`g.${s.gid}`)}, ${v(`g.${s.gtokens}`)}, ${v(`-(${amt('charge')} + ${amt('refund')})`)} FROM generations g WHERE g.${s.gtokens} != -(${amt('charge')} + ${amt('refund')})`);
  }
  if (s.tafter) {
    parts.push(`SELECT 'balance_after != running sum', ${v(`t.${s.tid}`)}, ${v(`t.${s.tafter}`)}, ${v(`(SELECT SUM(r.${s.tamount}) FROM token_transactions r WHERE r.${s.tuser} = t.${s.tuser} AND r.${s.tid} <= t.${s.tid})`)} FROM token_transactions t WHERE t.${s.tafter} != (SELECT SUM(r.${s.tamount}) FROM token_transactions r WHERE r.${s.tuser} = t.${s.tuser} AND r.${s.tid} <= t.${s.tid})`);
  }
  const union = parts.join('\nUNION ALL\n');
  return query(db, pg ? union : `BEGIN; ${union}; COMMIT;`);
}

export async function checkLedger(server) {
  if (server.dead) return;
  const problems = await ledgerProblems(server.dbPath);
  assert.deepEqual(problems, [], `ledger invariants broken in ${server.dbPath}:\n${JSON.stringify(problems, null, 1)}`);
}

// ---------------------------------------------------------------- test wrapper

// test(name, [opts], fn): node:test's test, plus: on failure the stderr tail
// of every server of this file is printed; after the test the ledger of
// every live server is checked (a broken invariant fails the test).
export function test(name, opts, fn) {
  if (typeof opts === 'function') { fn = opts; opts = {}; }
  return nodeTest(name, { ...opts, timeout: (opts.timeout ?? 60000) * SCALE }, async (t) => {
    const before = new Map([...servers].map((s) => [s, s.stderr.length]));
    try {
      await fn(t);
      for (const s of servers) await checkLedger(s);
    } catch (e) {
      for (const s of servers) {
        const from = Math.max(0, Math.min(before.get(s) ?? 0, s.stderr.length - 6000));
        const tail = s.stderr.slice(Math.max(from, s.stderr.length - 6000));
        console.error(`\n----- stderr of server ${s.baseUrl} (data ${s.dataDir}) during "${name}" -----\n${tail}\n----- end -----`);
      }
      throw e;
    }
  });
}

export function fileSize(p) { return statSync(p).size; }
export { assert };
