// Many remote calls in flight (SPEC §7, issue 7): N generations of
// gpt-image-1 against the fake OpenAI (tests/integration/fakes/openai.mjs)
// that holds every answer DELAY ms, on one `serve` with a few worker
// threads. The catalogue given with --models lets N calls be in flight
// (maxInFlight = N). Prints, for the server process:
//   - time from the first create to the last completion (expected: a little
//     over DELAY, since every call waits at the fake at the same time);
//   - peak calls in flight at the fake;
//   - threads (peak of /proc/PID/status Threads), peak RSS (VmHWM), CPU
//     seconds (utime + stime).
//
//   node bench/inflight.mjs [--n 1000] [--delay 10000] [--workers 2]
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startFakeOpenAI } from '../tests/integration/fakes/openai.mjs';

const argOf = (name, def) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : def;
};
const N = Number(argOf('n', 1000));
const DELAY = Number(argOf('delay', 10000));
const WORKERS = Number(argOf('workers', 2));
const ROOT = new URL('..', import.meta.url).pathname;
const BIN = process.env.STYLESTUDIO_BIN || join(ROOT, 'build/stylestudio');
const CONCURRENCY = 64;

let inFlight = 0;
let peakInFlight = 0;
const fake = await startFakeOpenAI({
  apiKey: 'sk-bench', crossCheck: false,
  script: () => {
    inFlight++;
    peakInFlight = Math.max(peakInFlight, inFlight);
    setTimeout(() => inFlight--, DELAY);
    return { delayMs: DELAY };
  },
});

const data = mkdtempSync(join(tmpdir(), 'ss-inflight-'));
const catalogue = JSON.parse(readFileSync(join(ROOT, 'models.json'), 'utf8'));
for (const m of catalogue.models) if (m.id === 'gpt-image-1') m.maxInFlight = N;
const modelsFile = join(data, 'models.json');
writeFileSync(modelsFile, JSON.stringify(catalogue));

const common = ['--data', data, '--models', modelsFile];
const out = execFileSync(BIN, ['user', 'create', ...common, '--email', 'bench@example.com',
  '--tokens', String(N * 10)], { encoding: 'utf8' });
const key = /^api_key: (sk_\S+)$/m.exec(out)[1];

const srv = spawn(BIN, ['serve', '--listen', '127.0.0.1:0', '--workers', String(WORKERS),
  '--openai-base-url', fake.url, '--allow-hosts', '127.0.0.1', '--log-level', 'warn', '--rate-free', '0', ...common],
{ stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, OPENAI_API_KEY: 'sk-bench' } });
const base = await new Promise((res, rej) => {
  srv.stdout.once('data', (d) => res(String(d).trim().replace('listening on ', '')));
  srv.once('exit', () => rej(new Error('serve exited')));
});

// /proc sampling of the server.
const ticks = 100; // USER_HZ on Linux
let peakThreads = 0;
let hwmKb = 0;
let cpu = 0;
const sample = () => {
  try {
    const status = readFileSync(`/proc/${srv.pid}/status`, 'utf8');
    peakThreads = Math.max(peakThreads, Number(/^Threads:\s+(\d+)/m.exec(status)[1]));
    hwmKb = Number(/^VmHWM:\s+(\d+)/m.exec(status)[1]);
    const f = readFileSync(`/proc/${srv.pid}/stat`, 'utf8').split(') ')[1].split(' ');
    cpu = (Number(f[11]) + Number(f[12])) / ticks;
  } catch {}
};
const sampler = setInterval(sample, 100);

// The server's own view, every 2 s: jobs running (claimed, in flight) and
// generations still queued.
const timeline = [];
const gauge = (text, name) => Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\d+)`, 'm').exec(text)?.[1] ?? NaN);
let tStart = 0;
const watcher = setInterval(async () => {
  if (!tStart) return;
  try {
    const m = await (await fetch(`${base}/metrics`)).text();
    timeline.push(`${((Date.now() - tStart) / 1000).toFixed(0)}s:${gauge(m, 'stylestudio_generations_running')}/${gauge(m, 'stylestudio_queue_depth')}`);
  } catch {}
}, 2000);

const auth = { authorization: `Bearer ${key}` };
const png = readFileSync(join(ROOT, 'tests/fixtures/product2.png'));
const up = await (await fetch(`${base}/api/upload`, {
  method: 'POST', headers: { ...auth, 'content-type': 'image/png' }, body: png })).json();
const body = JSON.stringify({ productImages: [up.data.url], model: 'gpt-image-1', style: 'realistic',
  quality: 'medium', aspectRatio: '1:1' });

// Count completions on the caller's event stream.
const done = new Map();
const ctl = new AbortController();
const stream = await fetch(`${base}/api/events`, { headers: auth, signal: ctl.signal });
let allDone;
const finished = new Promise((r) => { allDone = r; });
(async () => {
  const dec = new TextDecoder();
  let buf = '';
  try {
    for await (const chunk of stream.body) {
      buf += dec.decode(chunk, { stream: true });
      let end;
      while ((end = buf.indexOf('\n\n')) >= 0) {
        const frame = buf.slice(0, end);
        buf = buf.slice(end + 2);
        const line = frame.split('\n').find((l) => l.startsWith('data: '));
        if (!frame.includes('event: generation') || !line) continue;
        const g = JSON.parse(line.slice(6));
        if (['completed', 'failed', 'cancelled'].includes(g.status) && !done.has(g._id)) {
          done.set(g._id, g.status);
          if (done.size === N) allDone();
        }
      }
    }
  } catch {}
})();

sample();
const cpu0 = cpu;
const t0 = Date.now();
tStart = t0;
let next = 0;
let createdAt = 0;
await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
  while (next < N) {
    next++;
    const r = await fetch(`${base}/api/generate`, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body });
    if (r.status !== 202) throw new Error(`generate: ${r.status} ${await r.text()}`);
    await r.arrayBuffer();
  }
}));
createdAt = Date.now() - t0;
await finished;
const total = Date.now() - t0;
sample();
clearInterval(sampler);
clearInterval(watcher);
ctl.abort();

const failed = [...done.values()].filter((s) => s !== 'completed').length;
console.log(`inflight: ${N} generations of gpt-image-1 against a fake that takes ${DELAY} ms each, serve --workers ${WORKERS}`);
console.log(`  all created in ${(createdAt / 1000).toFixed(1)} s; all ended in ${(total / 1000).toFixed(1)} s (${failed} not completed)`);
console.log(`  peak calls in flight at the fake: ${peakInFlight}`);
console.log(`  running/queued at the server: ${timeline.join(' ')}`);
console.log(`  server: peak threads ${peakThreads}, peak RSS ${(hwmKb / 1024).toFixed(0)} MiB, CPU ${(cpu - cpu0).toFixed(1)} s`);

srv.kill('SIGTERM');
await new Promise((r) => srv.once('exit', r));
await fake.close();
rmSync(data, { recursive: true, force: true });
