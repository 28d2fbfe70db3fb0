// `stylestudio worker`: an API-only serve (--workers 0) and a separate worker
// process on the same database (the data dir's SQLite file, or on
// PostgreSQL the data dir's database: dbArgs). The worker renders; the serve's
// streams and held requests learn of the worker's commits by themselves.
import { spawn } from 'node:child_process';
import {
  test, assert, serverFor, uploadFixture, createBody, create, start, sse, waitGen, BIN, ROOT, withTimeout, dbArgs,
} from './harness.mjs';

function startWorker(t, server) {
  const proc = spawn(BIN, ['worker', '--data', server.dataDir, ...dbArgs(server.dataDir), '--workers', '1',
    '--public-url', server.baseUrl, '--retry-base-ms', '20'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  proc.stderr.on('data', (d) => { stderr += d; });
  const exit = new Promise((res) => proc.on('exit', (code, signal) => res({ code, signal })));
  t.after(() => { if (proc.exitCode === null) proc.kill('SIGKILL'); });
  return { proc, exit, stderr: () => stderr };
}

test('an API-only serve and a separate worker process complete a generation; SSE sees it live', async (t) => {
  const srv = await serverFor(t, { workers: 0 });
  const u = await srv.createUser({ tokens: 5 });
  const url = await uploadFixture(srv, u.key);
  const id = (await create(srv, u.key, createBody(url, { style: 'minimal', aspectRatio: '3:2' }))).generationId;
  const stream = await sse(srv, `/api/generations/${id}/events`, { key: u.key });
  assert.equal((await start(srv, u.key, id)).status, 'processing');

  // Nobody renders yet: the serve has no workers.
  await new Promise((r) => setTimeout(r, 700));
  const waiting = (await srv.api('GET', `/api/generations/${id}`, { key: u.key })).json.data;
  assert.equal(waiting.status, 'processing');
  assert.equal(waiting.stage, 'queued');

  const worker = startWorker(t, srv);
  const done = await stream.until((f) => f.json?.status === 'completed', 20000);
  assert.equal(done.json.resultImages.length, 2);
  for (const url of done.json.resultImages) {
    assert.ok(url.startsWith(srv.baseUrl + '/media/r/'), url);
    assert.equal((await fetch(url)).status, 200);
  }
  const stages = stream.frames.map((f) => f.json?.stage).filter(Boolean);
  assert.ok(stages.includes('generating'), `stages seen: ${stages}`);
  const g = await waitGen(srv, u.key, id);
  assert.equal(g.status, 'completed');

  worker.proc.kill('SIGTERM');
  const ex = await withTimeout(worker.exit, 20000, 'worker did not exit after SIGTERM');
  assert.equal(ex.code, 0, `worker exit ${JSON.stringify(ex)}\n${worker.stderr()}`);
});
