// Lifecycle across processes: one API-only `serve` (--workers 0) and 1, 2
// or 4 `worker` processes on one database, with the instant bench model
// (--enable-bench-model), so what is measured is the store, the queue and
// the events, not image work. For each worker count it prints
//   - lifecycle throughput: generations created (one-step generate) and
//     completed per second, N generations from USERS users at CONCURRENCY;
//   - create → completed latency (client send → completion seen on SSE);
//   - commit → SSE latency across processes: a worker process commits the
//     completion (completedAt), the serve process streams it to the client
//     (arrival time on the same clock), p50/p99.
//
//   node bench/lifecycle.mjs [--db postgres|sqlite] [--requests 2000]
//        [--concurrency 32] [--users 8] [--workers 1,2,4]
// PostgreSQL: a throwaway cluster from scripts/pg.sh (root: run as postgres).
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const argOf = (name, def) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : def;
};
const DB = argOf('db', 'postgres');
const REQUESTS = Number(argOf('requests', 2000));
const CONCURRENCY = Number(argOf('concurrency', 32));
const USERS = Number(argOf('users', 8));
const WORKERS = argOf('workers', DB === 'postgres' ? '1,2,4' : '1').split(',').map(Number);
const ROOT = new URL('..', import.meta.url).pathname;
const BIN = join(ROOT, 'build/stylestudio');

const pct = (xs, p) => xs[Math.min(xs.length - 1, Math.floor(p * xs.length))];

function startProc(args, { printsUrl } = {}) {
  const p = spawn(BIN, [...args, '--log-level', 'warn'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const ready = printsUrl
    ? new Promise((res, rej) => {
      p.stdout.once('data', (d) => res(String(d).trim().replace('listening on ', '')));
      p.once('exit', () => rej(new Error(`${args[0]} exited`)));
    })
    : Promise.resolve();
  return { p, ready };
}

async function stop(procs) {
  await Promise.all(procs.map(({ p }) => new Promise((res) => {
    if (p.exitCode !== null) return res();
    p.once('exit', res);
    p.kill('SIGTERM');
  })));
}

// One user's /api/events stream: calls onFrame(json, arrivalMs) per generation event.
async function follow(base, key, onFrame, signal) {
  const res = await fetch(`${base}/api/events`, { headers: { authorization: `Bearer ${key}` }, signal });
  const dec = new TextDecoder();
  let buf = '';
  (async () => {
    try {
      for await (const chunk of res.body) {
        const now = Date.now();
        buf += dec.decode(chunk, { stream: true });
        let end;
        while ((end = buf.indexOf('\n\n')) >= 0) {
          const frame = buf.slice(0, end);
          buf = buf.slice(end + 2);
          if (!frame.includes('event: generation')) continue;
          const data = frame.split('\n').find((l) => l.startsWith('data: '));
          if (data) onFrame(JSON.parse(data.slice(6)), now);
        }
      }
    } catch {}
  })();
}

async function runOnce(dbUrl, data, workers) {
  const common = ['--data', data, '--db', dbUrl, '--enable-bench-model'];
  const serve = startProc(['serve', '--listen', '127.0.0.1:0', '--workers', '0', '--rate-free', '0', ...common], { printsUrl: true });
  const base = await serve.ready;
  const procs = [serve];
  for (let i = 0; i < workers; i++) {
    procs.push(startProc(['worker', ...common, '--workers', '2', '--public-url', base]));
  }
  const ac = new AbortController();
  try {
    const users = [];
    for (let i = 0; i < USERS; i++) {
      const out = execFileSync(BIN, ['user', 'create', ...common.slice(0, 4), '--email',
        `bench-${workers}-${i}@example.com`, '--tokens', String(REQUESTS + 10)]).toString();
      users.push({ key: out.match(/api_key: (\S+)/)[1] });
    }
    const sent = new Map(), latency = [], commitToSse = [];
    let completed = 0, resolveAll;
    const all = new Promise((r) => { resolveAll = r; });
    for (const u of users) {
      await follow(base, u.key, (g, at) => {
        if (g.status !== 'completed' || !sent.has(g._id)) return;
        latency.push(at - sent.get(g._id));
        commitToSse.push(at - g.completedAt);
        sent.delete(g._id);
        if (++completed === REQUESTS) resolveAll();
      }, ac.signal);
    }
    const up = await fetch(`${base}/api/upload`, {
      method: 'POST', headers: { authorization: `Bearer ${users[0].key}`, 'content-type': 'image/jpeg' },
      body: readFileSync(join(ROOT, 'tests/fixtures/product.jpg')),
    }).then((r) => r.json());
    const body = JSON.stringify({ productImages: [up.data.url], model: 'bench-instant', style: 'minimal',
      quality: 'auto', aspectRatio: '1:1' });
    await new Promise((r) => setTimeout(r, 300)); // streams attached

    let next = 0;
    const client = async () => {
      while (next < REQUESTS) {
        const u = users[next++ % USERS];
        const t = Date.now();
        const r = await fetch(`${base}/api/generate`, { method: 'POST', body,
          headers: { authorization: `Bearer ${u.key}`, 'content-type': 'application/json' } });
        const j = await r.json();
        if (r.status !== 202) throw new Error(`generate: ${r.status} ${JSON.stringify(j)}`);
        if (!sent.has(j.data.generationId)) sent.set(j.data.generationId, t);
      }
    };
    const t0 = Date.now();
    await Promise.all(Array.from({ length: CONCURRENCY }, client));
    const timeout = new Promise((_, rej) => setTimeout(() => rej(new Error(`only ${completed}/${REQUESTS} completed`)), 300000));
    await Promise.race([all, timeout]);
    const secs = (Date.now() - t0) / 1000;
    latency.sort((a, b) => a - b);
    commitToSse.sort((a, b) => a - b);
    return { rate: REQUESTS / secs, latency, commitToSse };
  } finally {
    ac.abort();
    await stop(procs);
  }
}

let cluster = null;
const results = [];
try {
  if (DB === 'postgres') {
    const line = execFileSync('bash', [join(ROOT, 'scripts/pg.sh'), 'start']).toString();
    cluster = /host=(\S+)/.exec(line)[1];
  }
  for (const w of WORKERS) {
    const data = mkdtempSync(join(tmpdir(), 'ss-bench-'));
    let url = `sqlite:${data}/stylestudio.db`;
    if (cluster) {
      execFileSync('psql', ['-X', '-q', '-h', cluster, '-U', 'postgres', '-d', 'postgres', '-c', `CREATE DATABASE bench_${w}`]);
      url = `postgres:///bench_${w}?host=${cluster}&user=postgres`;
    }
    try {
      const r = await runOnce(url, data, w);
      results.push({ w, ...r });
      console.log(`lifecycle (${DB}, ${w} worker process${w > 1 ? 'es' : ''} × 2 threads): ` +
        `${r.rate.toFixed(0)} generations/s created→completed; create→completed p50 ${pct(r.latency, 0.5)} ms, ` +
        `p99 ${pct(r.latency, 0.99)} ms; commit→SSE across processes p50 ${pct(r.commitToSse, 0.5)} ms, ` +
        `p99 ${pct(r.commitToSse, 0.99)} ms`);
    } finally {
      rmSync(data, { recursive: true, force: true });
    }
  }
  if (results.length > 1) {
    const base = results[0].rate;
    console.log(`ratios to ${results[0].w} worker process: ${results.map((r) => `${r.w}: ${(r.rate / base).toFixed(2)}×`).join(', ')}`);
  }
} finally {
  if (cluster) execFileSync('bash', [join(ROOT, 'scripts/pg.sh'), 'stop', cluster]);
}
console.log(`machine: ${execFileSync('nproc').toString().trim()} cores; ${REQUESTS} generations, ` +
  `${USERS} users, ${CONCURRENCY} clients; load generator on the same machine`);
