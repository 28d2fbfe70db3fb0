// Create throughput: POST /api/generation/create as fast as CONCURRENCY
// clients can, against a fresh server on SQLite (synchronous=FULL) or on a
// throwaway PostgreSQL cluster (scripts/pg.sh, fsync on), and print
// requests per second. Each create is a real charged, durable transaction
// (debit + generation + ledger row + events).
//
//   node bench/create.mjs [--requests 2000] [--concurrency 16] [--db sqlite|postgres]
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const arg = (name, def) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
};
const REQUESTS = arg('requests', 2000);
const DB = process.argv[process.argv.indexOf('--db') + 1] === 'postgres' ? 'postgres' : 'sqlite';
const CONCURRENCY = arg('concurrency', 16);
const BIN = new URL('../build/stylestudio', import.meta.url).pathname;

const data = mkdtempSync(join(tmpdir(), 'ss-bench-'));
const PG_SH = new URL('../scripts/pg.sh', import.meta.url).pathname;
let cluster = null, dbArgs = [];
if (DB === 'postgres') {
  cluster = /host=(\S+)/.exec(execFileSync('bash', [PG_SH, 'start']).toString())[1];
  dbArgs = ['--db', `postgres:///postgres?host=${cluster}&user=postgres`];
}
const server = spawn(BIN, ['serve', '--listen', '127.0.0.1:0', '--data', data, ...dbArgs, '--workers', '1',
  '--log-level', 'warn', '--rate-free', '0'], { stdio: ['ignore', 'pipe', 'inherit'] });
const base = await new Promise((resolve, reject) => {
  server.stdout.once('data', (d) => resolve(String(d).trim().replace('listening on ', '')));
  server.once('exit', () => reject(new Error('server exited')));
});
try {
  const out = execFileSync(BIN, ['user', 'create', '--data', data, ...dbArgs, '--email', 'bench@example.com',
    '--tokens', String(REQUESTS + 10)]).toString();
  const key = out.match(/api_key: (\S+)/)[1];
  const auth = { Authorization: `Bearer ${key}` };
  const up = await fetch(`${base}/api/upload`, {
    method: 'POST', headers: { ...auth, 'Content-Type': 'image/jpeg' },
    body: readFileSync(new URL('../tests/fixtures/product.jpg', import.meta.url)),
  }).then((r) => r.json());
  const body = JSON.stringify({ productImages: [up.data.url], model: 'local-studio',
    style: 'minimal', quality: 'auto', aspectRatio: '1:1' });
  const headers = { ...auth, 'Content-Type': 'application/json' };

  let next = 0, ok = 0;
  const latencies = [];
  const client = async () => {
    while (next < REQUESTS) {
      next++;
      const t = performance.now();
      const r = await fetch(`${base}/api/generation/create`, { method: 'POST', headers, body });
      await r.arrayBuffer();
      latencies.push(performance.now() - t);
      if (r.status === 201) ok++;
    }
  };
  const t0 = performance.now();
  await Promise.all(Array.from({ length: CONCURRENCY }, client));
  const secs = (performance.now() - t0) / 1000;
  latencies.sort((a, b) => a - b);
  const pct = (p) => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))].toFixed(1);
  console.log(`create (${DB}): ${REQUESTS} requests, concurrency ${CONCURRENCY}, ${ok} created`);
  console.log(`create: ${(REQUESTS / secs).toFixed(0)} requests/s, p50 ${pct(0.5)} ms, p99 ${pct(0.99)} ms`);
} finally {
  server.kill('SIGTERM');
  await new Promise((r) => server.once('exit', r));
  rmSync(data, { recursive: true, force: true });
  if (cluster) execFileSync('bash', [PG_SH, 'stop', cluster]);
}
