// Crash test (issue 11 §2): mixed load — creates (with Idempotency-Key),
// generates, one-step generates, cancels, retries, uploads, idempotent
// replays, SSE clients — from several users while the server is SIGKILLed
// at random moments and restarted on the same data. On PostgreSQL
// (STYLESTUDIO_TEST_PG set) the API server runs with one worker thread
// beside a separate `worker` process, the kills hit either process, and
// the database server itself is restarted once mid-run (a private cluster).
//
// After the load stops and the queue drains, every acknowledged create
// (and upload) exists, every generation is terminal, the ledger invariants
// hold (harness ledgerProblems: balance = sum of rows, >= 0, one charge per
// generation, at most one refund, refunds only for failed/cancelled), every
// idempotent replay answered the first generation, and no event stream —
// per user (/api/events) or per generation — skipped or repeated an event
// across its Last-Event-ID resumes (checked against the events table).
//
//   CHAOS_KILLS  number of kills (default 6; the long form uses 100)
//   CHAOS_SEED   seed of the random schedule (default: time; printed)
import { spawn, execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import {
  test, assert, startServer, createUser, uploadFixture, createBody, api, sse, sleep,
  ledgerProblems, query, fixture, upload, BIN, ROOT, PG, TERMINAL,
} from '../integration/harness.mjs';

const KILLS = Number(process.env.CHAOS_KILLS || 6);
const SEED = Number(process.env.CHAOS_SEED || Date.now() % 1000000);
const USERS = 4;
const ACTORS_PER_USER = 1;
const REQUEST_MS = 10000;

// A small deterministic PRNG (mulberry32), so a failing schedule can be replayed.
let rs = SEED >>> 0;
function rand() {
  rs = (rs + 0x6d2b79f5) >>> 0;
  let t = rs;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const pick = (a) => a[Math.floor(rand() * a.length)];
const between = (lo, hi) => lo + Math.floor(rand() * (hi - lo));

const run = promisify(execFile);
async function privateCluster(t) {
  const { stdout } = await run('bash', [join(ROOT, 'scripts/pg.sh'), 'start'], { timeout: 60000 });
  const dir = /host=(\S+)/.exec(stdout)[1];
  t.after(() => run('bash', [join(ROOT, 'scripts/pg.sh'), 'stop', dir]).catch(() => {}));
  process.on('exit', () => { try { execFileSync('bash', [join(ROOT, 'scripts/pg.sh'), 'stop', dir], { stdio: 'ignore' }); } catch {} });
  await run('psql', ['-X', '-q', '-h', dir, '-U', 'postgres', '-d', 'postgres', '-c', 'CREATE DATABASE ss_chaos']);
  return { dir, url: `postgres:///ss_chaos?host=${dir}&user=postgres` };
}
async function restartCluster(dir) {
  const pgctl = ['pg_ctl', '-D', join(dir, 'data'), '-m', 'immediate', '-w', 'restart'];
  if (process.getuid() === 0) await run('runuser', ['-u', 'postgres', '--', ...pgctl], { cwd: '/', timeout: 60000 });
  else await run(pgctl[0], pgctl.slice(1), { cwd: '/', timeout: 60000 });
}

function workerProcess(dataDir, db, publicUrl) {
  const args = ['worker', '--data', dataDir, '--db', db, '--workers', '2', '--public-url', publicUrl,
    '--lease-seconds', '2', '--retry-base-ms', '20', '--test-faults', 'delay_ms=150', '--enable-bench-model'];
  const w = { stderr: '', kills: 0 };
  w.start = () => {
    w.proc = spawn(BIN, args, { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
    w.proc.stderr.on('data', (d) => { w.stderr = (w.stderr + d).slice(-20000); });
    w.exit = new Promise((res) => w.proc.on('exit', (code, signal) => res({ code, signal })));
  };
  w.kill = async () => { w.proc.kill('SIGKILL'); await w.exit; w.kills++; };
  w.start();
  process.on('exit', () => { try { w.proc.kill('SIGKILL'); } catch {} });
  return w;
}

// One request; null when the outcome is unknown (refused, reset, timed out,
// 503 while the server or the database restarts). While our server is down
// its port is free, and on a shared machine another process may get it and
// answer (another Style Studio answers 401 to our keys): an answer is ours
// only when our server was up, the same process, from before the request
// until after the answer (srv.proc identifies the process).
async function attempt(srv, stats, method, path, opts) {
  const proc = srv.dead ? null : srv.proc;
  try {
    const r = await api(srv, method, path, { ...opts, timeout: REQUEST_MS });
    if (!proc || srv.dead || srv.proc !== proc) { stats.notOurs++; return null; }
    if (r.status === 503 || r.status === 500) { stats[`http${r.status}`]++; return null; }
    return r;
  } catch {
    stats.lost++;
    return null;
  }
}

// A live view that reconnects with Last-Event-ID whenever the stream ends
// (a kill) until stopped, or — per generation — until the terminal record.
function follow(srv, path, key, { untilTerminal = false } = {}) {
  const v = { path, ids: [], first: null, resumes: 0, done: false, stopped: false };
  v.loop = (async () => {
    let last;
    while (!v.stopped && !v.done) {
      let s;
      try {
        s = await sse(srv, path, { key, lastEventId: last, timeout: REQUEST_MS });
      } catch { await sleep(100); continue; }
      if (s.status !== 200) { await sleep(100); continue; }
      if (last !== undefined) v.resumes++;
      const drain = () => {
        for (const f of s.frames.splice(0)) {
          if (f.id === undefined) continue; // queue-position refresh: not an event
          if (v.first === null) { v.first = Number(f.id); last = f.id; continue; } // the snapshot: a cursor
          v.ids.push(Number(f.id));
          last = f.id;
          if (untilTerminal && TERMINAL.has(f.json?.status)) v.done = true;
        }
      };
      s.waiters.add(drain);
      const stop = setInterval(() => { if (v.stopped) s.close(); }, 100);
      await s.ended;
      clearInterval(stop);
      drain();
      if (untilTerminal && !v.done && !s.error && v.first !== null) {
        // Ended by the server after a terminal snapshot (nothing left to stream).
        const [row] = await query(srv.dbPath, `SELECT status FROM generations WHERE id = '${path.split('/')[3]}'`).catch(() => []);
        if (row && TERMINAL.has(row.status) && v.ids.length === 0) v.done = true;
      }
    }
  })();
  v.stop = () => { v.stopped = true; return v.loop; };
  return v;
}

test(`chaos: ${KILLS} SIGKILLs under mixed load${PG ? ' on PostgreSQL (serve + worker kills, a database restart)' : ''}`, { timeout: 300000 + KILLS * 15000 }, async (t) => {
  t.diagnostic(`CHAOS_SEED=${SEED} CHAOS_KILLS=${KILLS}`);
  const dataDir = mkdtempSync(join(tmpdir(), 'ss-chaos-'));
  t.after(() => rmSync(dataDir, { recursive: true, force: true }));
  const cluster = PG ? await privateCluster(t) : null;
  const db = cluster?.url;
  const args = ['--test-faults', 'delay_ms=150', '--lease-seconds', '2', '--max-retries', '3', '--enable-bench-model'];
  const srv = await startServer({ dataDir, db, keepData: true, workers: cluster ? 1 : 2, args });
  t.after(() => srv.stop());
  const worker = cluster ? workerProcess(dataDir, db, srv.baseUrl) : null;
  t.after(() => { if (worker && worker.proc.exitCode === null) worker.proc.kill('SIGKILL'); });
  const store = db || srv.dbPath;

  const stats = { http500: 0, http503: 0, lost: 0, notOurs: 0, creates: 0, replays: 0, generates: 0, oneStep: 0, cancels: 0, retries: 0, uploads: 0, serveKills: 0, workerKills: 0, dbRestarts: 0 };
  const users = [];
  for (let i = 0; i < USERS; i++) {
    const u = await createUser(dataDir, { tokens: 100000, db });
    u.product = await uploadFixture(srv, u.key);
    u.acked = new Map();   // idempotency key → generation id (a 201/202 was seen)
    u.unknown = new Map(); // idempotency key → body, outcome not seen
    u.gens = new Set();    // every generation id this user was told about
    u.uploads = [];
    u.view = follow(srv, '/api/events', u.key);
    u.genViews = [];
    users.push(u);
  }
  await sleep(300);
  let loading = true, keyN = 0;
  // On a failure too: stop the load and the reconnecting streams, so the
  // process can end (the harness then stops the server).
  t.after(() => {
    loading = false;
    for (const u of users) { u.view.stopped = true; for (const v of u.genViews) v.stopped = true; }
  });

  // Mostly bench-instant (no image work: the store, queue and events are
  // what is under test), one in ten rendered by the local compositor.
  const body = (u) => createBody(u.product, { model: rand() < 0.9 ? 'bench-instant' : 'local-studio', style: pick(['realistic', 'artistic', 'minimal']), aspectRatio: pick(['1:1', '4:5', '16:9']), quality: 'low' });
  const actions = {
    async create(u) {
      const k = `k-${u.userId}-${++keyN}`, b = body(u);
      const r = await attempt(srv, stats, 'POST', '/api/generation/create', { key: u.key, body: b, headers: { 'idempotency-key': k } });
      if (!r) { u.unknown.set(k, { path: '/api/generation/create', b }); return; }
      assert.equal(r.status, 201, `create: ${r.text}`);
      u.acked.set(k, { id: r.data.generationId, b, path: '/api/generation/create' });
      u.gens.add(r.data.generationId);
      stats.creates++;
      if (u.genViews.length < 6 && rand() < 0.2) u.genViews.push(follow(srv, `/api/generations/${r.data.generationId}/events`, u.key, { untilTerminal: true }));
    },
    async oneStep(u) {
      const k = `k-${u.userId}-${++keyN}`, b = body(u);
      const r = await attempt(srv, stats, 'POST', '/api/generate', { key: u.key, body: b, headers: { 'idempotency-key': k } });
      if (!r) { u.unknown.set(k, { path: '/api/generate', b }); return; }
      assert.equal(r.status, 202, `one-step generate: ${r.text}`);
      u.acked.set(k, { id: r.data.generationId, b, path: '/api/generate' });
      u.gens.add(r.data.generationId);
      stats.oneStep++;
    },
    async replay(u) {
      const known = [...u.acked.entries()];
      if (!known.length) return;
      const [k, a] = pick(known);
      const r = await attempt(srv, stats, 'POST', a.path, { key: u.key, body: a.b, headers: { 'idempotency-key': k } });
      if (!r) return;
      assert.ok(r.status === 201 || r.status === 202, `replay: ${r.text}`);
      assert.equal(r.data.generationId, a.id, 'an idempotent replay answers the first generation');
      stats.replays++;
    },
    async generate(u) {
      const id = pick([...u.gens]);
      if (!id) return;
      const r = await attempt(srv, stats, 'POST', '/api/generate', { key: u.key, body: { generationId: id } });
      if (!r) return;
      assert.ok(r.status === 202 || r.json?.code === 'INVALID_GENERATION_STATUS', `generate: ${r.text}`);
      if (r.status === 202) stats.generates++;
    },
    async cancel(u) {
      const id = pick([...u.gens]);
      if (!id) return;
      const r = await attempt(srv, stats, 'POST', `/api/generations/${id}/cancel`, { key: u.key });
      if (!r) return;
      assert.ok(r.status === 200 || r.json?.code === 'INVALID_GENERATION_STATUS', `cancel: ${r.text}`);
      if (r.status === 200) stats.cancels++;
    },
    async retry(u) {
      const id = pick([...u.gens]);
      if (!id) return;
      const r = await attempt(srv, stats, 'POST', `/api/generations/${id}/retry`, { key: u.key });
      if (!r) return;
      assert.ok(r.status === 201 || r.json?.code === 'INVALID_GENERATION_STATUS', `retry: ${r.text}`);
      if (r.status === 201) { u.gens.add(r.data.generationId); stats.retries++; }
    },
    async upload(u) {
      let r;
      const proc = srv.dead ? null : srv.proc;
      try { r = await upload(srv, u.key, fixture(pick(['product.jpg', 'product2.png']))); } catch { stats.lost++; return; }
      if (!proc || srv.dead || srv.proc !== proc) { stats.notOurs++; return; }
      if (r.status === 503 || r.status === 500) { stats[`http${r.status}`]++; return; }
      assert.equal(r.status, 201, `upload: ${r.text}`);
      u.uploads.push(r.data.url);
      stats.uploads++;
    },
  };
  const weighted = ['create', 'create', 'create', 'oneStep', 'replay', 'generate', 'generate', 'generate', 'cancel', 'retry', 'upload'];
  const actors = users.flatMap((u) => Array.from({ length: ACTORS_PER_USER }, async () => {
    while (loading) {
      await actions[pick(weighted)](u);
      await sleep(between(40, 200));
    }
  }));

  // The killer: random uptimes, SIGKILL, restart on the same data and port.
  const dbRestartAt = cluster ? Math.floor(KILLS / 2) : -1;
  for (let k = 0; k < KILLS; k++) {
    await sleep(between(300, 1800));
    if (k === dbRestartAt) { await restartCluster(cluster.dir); stats.dbRestarts++; }
    if (worker && rand() < 0.5) {
      await worker.kill();
      stats.workerKills++;
      await sleep(between(0, 300));
      worker.start();
    } else {
      const e = await srv.kill();
      assert.equal(e.signal, 'SIGKILL');
      stats.serveKills++;
      await sleep(between(0, 300));
      await srv.restart();
    }
  }
  await sleep(1000);
  loading = false;
  await Promise.all(actors);

  // Settle every create whose answer was lost: the same key again.
  for (const u of users) {
    for (const [k, a] of u.unknown) {
      let r;
      for (let i = 0; i < 50 && !(r = await attempt(srv, stats, 'POST', a.path, { key: u.key, body: a.b, headers: { 'idempotency-key': k } })); i++) await sleep(200);
      assert.ok(r && (r.status === 201 || r.status === 202), `settling ${k}: ${r?.text}`);
      u.acked.set(k, { id: r.data.generationId, b: a.b, path: a.path });
      u.gens.add(r.data.generationId);
    }
  }
  // Drain: start or cancel whatever is still pending, then wait for the queue.
  for (const u of users) {
    const rows = await query(store, `SELECT id FROM generations WHERE user_id = '${u.userId}' AND status = 'pending'`);
    for (const { id } of rows) {
      const r = rand() < 0.5
        ? await attempt(srv, stats, 'POST', '/api/generate', { key: u.key, body: { generationId: id } })
        : await attempt(srv, stats, 'POST', `/api/generations/${id}/cancel`, { key: u.key });
      assert.ok(r, `drain ${id}: no answer`);
    }
  }
  // The backlog of a long run takes a while: what fails is a queue that
  // stops moving (60 s without one more generation ending), not a slow one.
  let left = Infinity, moved = Date.now();
  for (;;) {
    const [row] = await query(store, "SELECT COUNT(*) AS n FROM generations WHERE status NOT IN ('completed','failed','cancelled')");
    const n = Number(row.n);
    if (n === 0) break;
    if (n < left) { left = n; moved = Date.now(); }
    assert.ok(Date.now() - moved < 60000, `${n} generations not terminal, none ended in 60 s\n${srv.stderr.slice(-3000)}`);
    await sleep(250);
  }
  await sleep(500); // the last events reach the streams

  // 1. Every acknowledged create and upload exists.
  let checkedGens = 0;
  for (const u of users) {
    for (const id of new Set([...u.acked.values()].map((a) => a.id))) {
      const r = await api(srv, 'GET', `/api/generations/${id}`, { key: u.key });
      assert.equal(r.status, 200, `acknowledged generation ${id} lost: ${r.text}`);
      assert.ok(TERMINAL.has(r.data.status), `${id} ends terminal, got ${r.data.status}`);
      checkedGens++;
    }
    for (const url of u.uploads) assert.equal((await fetch(url)).status, 200, `acknowledged upload ${url} lost`);
  }
  // 2. One generation per idempotency key (a settled key never made a second).
  const [{ n: total }] = await query(store, 'SELECT COUNT(*) AS n FROM generations');
  const [{ n: fromRetry }] = await query(store, 'SELECT COUNT(*) AS n FROM generations WHERE retry_of IS NOT NULL');
  const acked = users.reduce((n, u) => n + new Set([...u.acked.values()].map((a) => a.id)).size, 0);
  assert.ok(Number(total) - Number(fromRetry) === acked, `generations not from /retry (${Number(total) - Number(fromRetry)}) = acknowledged creates (${acked})`);
  // 3. Ledger invariants.
  assert.deepEqual(await ledgerProblems(store), [], 'ledger invariants');
  // 4. No stream skipped or repeated an event.
  let streamsChecked = 0, eventsChecked = 0, resumes = 0;
  const checkView = async (v, where, what) => {
    assert.ok(v.first !== null, `${what}: the stream never connected`);
    for (let i = 1; i < v.ids.length; i++) assert.ok(v.ids[i] > v.ids[i - 1], `${what}: ids ${v.ids[i - 1]} then ${v.ids[i]}`);
    const last = v.ids.length ? v.ids[v.ids.length - 1] : v.first;
    const rows = await query(store, `SELECT id FROM events WHERE ${where} AND id > ${v.first} AND id <= ${last} ORDER BY id`);
    assert.deepEqual(v.ids, rows.map((r) => Number(r.id)), `${what}: streamed events = the events table (resumed ${v.resumes}×)`);
    streamsChecked++; eventsChecked += v.ids.length; resumes += v.resumes;
  };
  for (const u of users) {
    await u.view.stop();
    await checkView(u.view, `user_id = '${u.userId}'`, `/api/events of ${u.userId}`);
    for (const v of u.genViews) {
      await Promise.race([v.loop, sleep(5000)]);
      await v.stop();
      const gid = /generations\/([^/]+)\//.exec(v.path || '')?.[1];
      if (gid) await checkView(v, `generation_id = '${gid}'`, `stream of ${gid}`);
    }
  }
  const [{ n: finalN }] = await query(store, "SELECT COUNT(*) AS n FROM generations WHERE status = 'completed'");
  t.diagnostic(`kills survived: ${stats.serveKills} serve${worker ? `, ${stats.workerKills} worker, ${stats.dbRestarts} database restart` : ''}; ` +
    `generations ${total} (completed ${finalN}, acknowledged creates checked ${checkedGens}); requests: ${JSON.stringify(stats)}; ` +
    `streams checked ${streamsChecked} (${eventsChecked} events, ${resumes} resumes); ledger invariants: 0 problems`);
  assert.ok(stats.serveKills + stats.workerKills >= KILLS);
});
