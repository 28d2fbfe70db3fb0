// Many processes on one database (SPEC §9): two API-only `serve` processes
// (--workers 0, one shared --public-url as behind a load balancer) and two
// `worker` processes share one store and one --data folder. Generations are
// created and started through both servers; each user's SSE stream (one on
// each server, reconnecting with Last-Event-ID to the other server when it
// ends) must see every generation of that user reach its end, whichever
// process made the change. Mid-run one worker is SIGKILLed and restarted,
// and on PostgreSQL the database server itself is restarted (a private
// cluster, so other test files are not disturbed). At the end every
// generation is terminal, the ledger invariant holds, and no request hung:
// during the outage requests get 503 SERVICE_UNAVAILABLE and are retried
// with the same Idempotency-Key.
import { spawn, execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import {
  test, assert, startServer, createUser, uploadFixture, createBody, api, sse, sleep, withTimeout,
  ledgerProblems, query, runCli, BIN, ROOT, PG, TERMINAL,
} from './harness.mjs';

const run = promisify(execFile);
const PER_USER = PG ? 150 : 40; // about 300 generations on PostgreSQL
const REQUEST_MS = 10000;       // no request may take longer than this

// A private PostgreSQL cluster (scripts/pg.sh), restarted by the test.
async function privateCluster(t) {
  const { stdout } = await run('bash', [join(ROOT, 'scripts/pg.sh'), 'start'], { timeout: 60000 });
  const dir = /host=(\S+)/.exec(stdout)[1];
  t.after(() => run('bash', [join(ROOT, 'scripts/pg.sh'), 'stop', dir]).catch(() => {}));
  await run('psql', ['-X', '-q', '-h', dir, '-U', 'postgres', '-d', 'postgres', '-c', 'CREATE DATABASE ss_multi']);
  return { dir, url: `postgres:///ss_multi?host=${dir}&user=postgres` };
}

async function restartCluster(dir) {
  await run('runuser', ['-u', 'postgres', '--', 'pg_ctl', '-D', join(dir, 'data'), '-m', 'fast', '-w', 'restart'],
    { cwd: '/', timeout: 60000 });
}

function startWorker(t, dataDir, dbArgs, publicUrl) {
  const args = ['worker', '--data', dataDir, ...dbArgs, '--workers', '2', '--public-url', publicUrl,
    '--lease-seconds', '2', '--retry-base-ms', '20', '--max-retries', '10'];
  const w = { stderr: '' };
  w.start = () => {
    w.proc = spawn(BIN, args, { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
    w.proc.stderr.on('data', (d) => { w.stderr = (w.stderr + d).slice(-20000); });
    w.exit = new Promise((res) => w.proc.on('exit', (code, signal) => res({ code, signal })));
  };
  w.start();
  t.after(() => { if (w.proc.exitCode === null) w.proc.kill('SIGKILL'); });
  return w;
}

// One request that must answer within REQUEST_MS: the result, or null after
// a 503 SERVICE_UNAVAILABLE (or a refused connection while a server restarts).
async function attempt(server, method, path, opts, stats) {
  const t0 = Date.now();
  let r;
  try {
    r = await api(server, method, path, { ...opts, timeout: REQUEST_MS });
  } catch (e) {
    assert.ok(Date.now() - t0 < REQUEST_MS, `${method} ${path} hung for ${Date.now() - t0} ms: ${e.message}`);
    stats.errors++;
    return null;
  }
  if (r.status === 503) {
    assert.equal(r.json?.code, 'SERVICE_UNAVAILABLE', `503 must be SERVICE_UNAVAILABLE: ${r.text}`);
    assert.ok(r.headers.get('retry-after'), '503 carries Retry-After');
    stats.unavailable++;
    return null;
  }
  return r;
}

// Retries until the request goes through (same Idempotency-Key each time).
async function insist(server, method, path, opts, stats) {
  for (let i = 0; i < 200; i++) {
    const r = await attempt(server, method, path, opts, stats);
    if (r) return r;
    await sleep(100);
  }
  throw new Error(`${method} ${path}: still failing after 200 attempts`);
}

// A user's live view: /api/events on one server; when the stream ends
// (a restart), it reconnects with Last-Event-ID, alternating servers.
function follow(servers, first, key) {
  const seen = new Map(); // generation id → statuses in order
  const ids = [];
  let stopped = false;
  const loop = (async () => {
    let last;
    for (let n = first; !stopped; n++) {
      let s;
      try {
        s = await sse(servers[n % 2], '/api/events', { key, lastEventId: last, timeout: REQUEST_MS });
      } catch { await sleep(200); continue; }
      if (s.status !== 200) { await sleep(200); continue; }
      const drain = () => {
        for (const f of s.frames.splice(0)) {
          if (f.id !== undefined) { ids.push(Number(f.id)); last = f.id; }
          if (f.event !== 'generation' || !f.json) continue;
          const list = seen.get(f.json._id) || [];
          if (list[list.length - 1] !== f.json.status) list.push(f.json.status);
          seen.set(f.json._id, list);
        }
      };
      s.waiters.add(drain);
      const stop = setInterval(() => { if (stopped) s.close(); }, 100);
      await s.ended;
      clearInterval(stop);
      drain();
    }
  })();
  return { seen, ids, stop: () => { stopped = true; return loop; } };
}

test(`2 serve + 2 worker processes on one ${PG ? 'PostgreSQL database' : 'SQLite file'}: ${2 * PER_USER} generations, a worker SIGKILLed${PG ? ', the database restarted' : ''}`, { timeout: 600000 }, async (t) => {
  const dataDir = mkdtempSync(join(tmpdir(), 'ss-multi-'));
  t.after(() => rmSync(dataDir, { recursive: true, force: true }));
  const cluster = PG ? await privateCluster(t) : null;
  const dbArgs = cluster ? ['--db', cluster.url] : [];
  const db = cluster?.url;

  const a = await startServer({ dataDir, db, workers: 0, keepData: true });
  t.after(() => a.stop());
  const b = await startServer({ dataDir, db, workers: 0, keepData: true, args: ['--public-url', a.baseUrl] });
  t.after(() => b.stop());
  const servers = [a, b];
  const workers = [startWorker(t, dataDir, dbArgs, a.baseUrl), startWorker(t, dataDir, dbArgs, a.baseUrl)];

  const users = [];
  for (let i = 0; i < 2; i++) {
    const u = await createUser(dataDir, { tokens: PER_USER + 5, db });
    u.product = await uploadFixture(servers[i], u.key);
    u.view = follow(servers, i, u.key);
    u.gens = [];
    users.push(u);
  }
  await sleep(300); // streams connected

  const stats = { unavailable: 0, errors: 0 };
  let started = 0, killed = false, restarted = false;
  const chaos = async () => {
    if (!killed && started >= (2 * PER_USER) / 3) {
      killed = true;
      workers[0].proc.kill('SIGKILL');
      await workers[0].exit;
      await sleep(500);
      workers[0].start();
    }
    if (cluster && !restarted && started >= (4 * PER_USER) / 3) {
      restarted = true;
      await restartCluster(cluster.dir);
    }
  };
  // Each user creates and starts generations through both servers in turn.
  await Promise.all(users.map(async (u, ui) => {
    for (let i = 0; i < PER_USER; i++) {
      const srv = servers[(i + ui) % 2];
      const body = createBody(u.product, { style: ['realistic', 'artistic', 'minimal'][i % 3], aspectRatio: '1:1', quality: 'low' });
      const c = await insist(srv, 'POST', '/api/generation/create', { key: u.key, body, headers: { 'idempotency-key': `c-${ui}-${i}` } }, stats);
      assert.equal(c.status, 201, c.text);
      const id = c.data.generationId;
      u.gens.push(id);
      const other = servers[(i + ui + 1) % 2];
      const s = await insist(other, 'POST', '/api/generate', { key: u.key, body: { generationId: id } }, stats);
      // A start retried after a lost answer may find it already started.
      assert.ok(s.status === 202 || (s.status === 400 && s.json.code === 'INVALID_GENERATION_STATUS'), s.text);
      started++;
      await chaos();
    }
  }));

  // Every generation ends; the streams see each end.
  const end = Date.now() + 240000;
  for (const u of users) {
    for (const id of u.gens) {
      for (;;) {
        const r = await attempt(a, 'GET', `/api/generations/${id}`, { key: u.key }, stats);
        if (r && TERMINAL.has(r.data.status)) break;
        assert.ok(Date.now() < end, `generation ${id} not terminal in time (${r?.data?.status}/${r?.data?.stage})\n${workers.map((w) => w.stderr.slice(-2000)).join('\n')}`);
        await sleep(200);
      }
    }
  }
  for (const u of users) {
    await withTimeout((async () => {
      while (!u.gens.every((id) => TERMINAL.has((u.view.seen.get(id) || []).at(-1)))) await sleep(100);
    })(), 30000, '', () => {
      const missing = u.gens.filter((id) => !TERMINAL.has((u.view.seen.get(id) || []).at(-1)));
      assert.fail(`the stream missed the end of ${missing.length} generations, e.g. ${missing[0]}: ${JSON.stringify(u.view.seen.get(missing[0]))}`);
    });
    await u.view.stop();
    // Every transition, in order, whichever process made it: the stream
    // was open before the create, and resumes without gaps.
    for (const id of u.gens) {
      const statuses = u.view.seen.get(id);
      assert.equal(statuses.length, 3, `${id}: every transition seen once, in order: ${statuses}`);
      assert.deepEqual(statuses.slice(0, 2), ['pending', 'processing'], `${id}: ${statuses}`);
      assert.ok(TERMINAL.has(statuses[2]), `${id}: ${statuses}`);
    }
    const ids = u.view.ids;
    for (let i = 1; i < ids.length; i++) assert.ok(ids[i] > ids[i - 1], `event ids go up on a resumed stream: ${ids[i - 1]} then ${ids[i]}`);
  }

  const store = db || join(dataDir, 'stylestudio.db');
  assert.deepEqual(await ledgerProblems(store), [], 'ledger invariants');
  const [counts] = await query(store, "SELECT COUNT(*) AS n, SUM(CASE WHEN status = 'completed' THEN 1 ELSE 0 END) AS done FROM generations");
  assert.equal(Number(counts.n), 2 * PER_USER, 'one generation per create, retries included (idempotency)');
  assert.ok(Number(counts.done) >= PER_USER, `most complete: ${counts.done} of ${counts.n}`);
  t.diagnostic(`completed ${counts.done}/${counts.n}; 503 answers ${stats.unavailable}; refused connections ${stats.errors}`);
  if (cluster) assert.ok(restarted, 'the database was restarted mid-run');
  assert.ok(killed, 'a worker was killed mid-run');
});

// The credential cache (auth.c) keeps a looked-up key for at most a second,
// so a revocation made through another process is honoured that late at
// most. The bound checked is loose (the machines are shared); what fails
// without the cache's expiry is a key that is never refused.
test('a key revoked through one process is refused by another within about a second', { timeout: 60000 }, async (t) => {
  const dataDir = mkdtempSync(join(tmpdir(), 'ss-revoke-'));
  t.after(() => rmSync(dataDir, { recursive: true, force: true }));
  const a = await startServer({ dataDir, workers: 0, keepData: true });
  t.after(() => a.stop());
  const b = await startServer({ dataDir, workers: 0, keepData: true });
  t.after(() => b.stop());
  const u = await createUser(dataDir, { tokens: 1 });
  const made = await api(a, 'POST', '/api/keys', { key: u.key, body: { name: 'to revoke' } });
  assert.equal(made.status, 201, made.text);
  const { id, key } = made.data;
  for (let i = 0; i < 3; i++) assert.equal((await api(b, 'GET', '/api/me', { key })).status, 200, 'b knows the key (and caches it)');
  const revoked = await api(a, 'DELETE', `/api/keys/${id}`, { key: u.key });
  assert.equal(revoked.status, 200, revoked.text);
  assert.equal((await api(a, 'GET', '/api/me', { key })).status, 401, 'the revoking process refuses it at once');
  const t0 = Date.now();
  let status = 200;
  while (status === 200 && Date.now() - t0 < 10000) {
    status = (await api(b, 'GET', '/api/me', { key })).status;
    if (status === 200) await sleep(50);
  }
  const ms = Date.now() - t0;
  assert.equal(status, 401, 'the other process refuses the revoked key');
  assert.ok(ms < 5000, `refused by the other process after ${ms} ms (the cache holds a key 1 s at most)`);
  t.diagnostic(`revocation seen by the other process after ${ms} ms`);
  assert.equal((await api(b, 'GET', '/api/me', { key: u.key })).status, 200, 'the owner\'s other key still works');
});

// A CLI command opens the database for milliseconds, between two of the
// server's looks at who else has it open: its commit must still reach the
// user's open stream (SQLite: the visit mark beside the database;
// PostgreSQL: NOTIFY).
test('a `user grant` run beside the server reaches the user\'s open event stream', { timeout: 60000 }, async (t) => {
  const s = await startServer();
  t.after(() => s.stop());
  const u = await createUser(s.dataDir, { tokens: 5 });
  const stream = await sse(s, '/api/events', { key: u.key });
  t.after(() => stream.close());
  await stream.until((f) => f.event === 'balance' && f.json?.tokenBalance === 5, 10000);
  for (const [amount, balance] of [[3, 8], [2, 10]]) {
    const r = await runCli(['user', 'grant', '--data', s.dataDir, '--email', u.email, '--amount', String(amount)]);
    assert.equal(r.code, 0, r.stderr);
    await stream.until((f) => f.event === 'balance' && f.json?.tokenBalance === balance, 10000);
  }
});
