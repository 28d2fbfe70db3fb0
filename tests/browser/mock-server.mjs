// Development-only stand-in for `stylestudio serve`, used to work on the web UI
// when the real binary is not built. The browser tests never use it: they run
// against the real server (see harness.mjs).
//   node tests/browser/mock-server.mjs [port]
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../web');
const CSP = "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'";
const TYPES = { '.html': 'text/html; charset=utf-8', '.css': 'text/css', '.js': 'text/javascript', '.svg': 'image/svg+xml', '.jpg': 'image/jpeg', '.png': 'image/png', '.webp': 'image/webp' };
const id = (p) => `${p}_${Date.now().toString(36)}${crypto.randomBytes(6).toString('hex')}`;

const users = new Map(); // email -> user
const sessions = new Map(); // sid -> email
const media = new Map(); // name -> {type, buf}
const gens = new Map();
const keys = [];
const ledger = [];
const listeners = new Set(); // {email, genId?, res}
const MODELS = [
  { id: 'local-studio', name: 'Local Studio', description: 'Built-in offline compositor: cuts out the product and stages it on a styled backdrop.', provider: 'local', baseCost: 1, maxProductImages: 5, maxModelImages: 3, outputs: 1, available: true, costByQuality: { auto: 1, low: 1, medium: 1, high: 2 } },
  { id: 'gpt-image-1', name: 'GPT Image 1', description: 'OpenAI image editing — photoreal scenes from your product photos.', provider: 'openai', baseCost: 3, maxProductImages: 5, maxModelImages: 3, outputs: 1, available: false, unavailableReason: 'OPENAI_API_KEY is not set on this server', costByQuality: { auto: 3, low: 3, medium: 3, high: 5 } },
];

function send(res, status, body, headers = {}) {
  res.writeHead(status, { 'Content-Type': 'application/json', 'X-Request-Id': id('req'), ...headers });
  res.end(JSON.stringify(body));
}
const ok = (res, data, status = 200) => send(res, status, { success: true, data });
const fail = (res, status, code, error, validationErrors = []) => send(res, status, { success: false, code, error, validationErrors, requestId: id('req') });

function userOf(req) {
  const b = /^Bearer (\S+)$/.exec(req.headers.authorization || '');
  if (b) { const k = keys.find((x) => x.secret === b[1]); return k ? users.get(k.email) : null; }
  const m = /ss_session=([^;]+)/.exec(req.headers.cookie || '');
  return m && sessions.has(m[1]) ? users.get(sessions.get(m[1])) : null;
}
function emit(email, kind, data, genId) {
  for (const l of listeners) {
    if (l.email !== email) continue;
    if (l.genId && (kind !== 'generation' || l.genId !== genId)) continue;
    l.res.write(`event: ${kind}\nid: ${Date.now()}\ndata: ${JSON.stringify(data)}\n\n`);
    if (l.genId && ['completed', 'failed', 'cancelled'].includes(data.status)) { l.res.end(); listeners.delete(l); }
  }
}
function tx(u, kind, amount, generationId) {
  u.tokenBalance += amount;
  ledger.push({ id: id('tx'), email: u.email, kind, amount, balanceAfter: u.tokenBalance, generationId, createdAt: Date.now() });
  emit(u.email, 'balance', { tokenBalance: u.tokenBalance });
}
function pub(g) { const { email, timer, ...rest } = g; return rest; }
function change(g, patch) { Object.assign(g, patch); emit(g.email, 'generation', pub(g), g._id); }

function run(g) {
  const stages = [['queued', 5], ['fetching_inputs', 15], ['generating', 30], ['generating', 55], ['generating', 80], ['storing', 92]];
  let i = 0;
  change(g, { status: 'processing', stage: 'queued', progress: 0, startedAt: Date.now(), queuePosition: 1 });
  const step = () => {
    if (g.status !== 'processing') return;
    if (i < stages.length) { const [stage, progress] = stages[i++]; change(g, { stage, progress, queuePosition: stage === 'queued' ? 1 : undefined }); g.timer = setTimeout(step, 500); return; }
    change(g, { status: 'completed', stage: 'done', progress: 100, completedAt: Date.now(), processingTime: Date.now() - g.startedAt, resultImages: [g.productImages[0], (g.modelImages[0] || g.productImages[0])] });
  };
  g.timer = setTimeout(step, 300);
}

async function body(req) {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  return Buffer.concat(chunks);
}

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, 'http://x');
  const p = url.pathname;
  const u = userOf(req);
  try {
    if (p.startsWith('/media/')) {
      const m = media.get(p.slice(7));
      if (!m) return fail(res, 404, 'NOT_FOUND', 'no such media');
      res.writeHead(200, { 'Content-Type': m.type, 'Cache-Control': 'public, max-age=31536000, immutable' });
      return res.end(m.buf);
    }
    if (!p.startsWith('/api/')) {
      let f = path.join(ROOT, path.normalize(p));
      if (!f.startsWith(ROOT) || !fs.existsSync(f) || fs.statSync(f).isDirectory()) {
        if (path.extname(p)) { res.writeHead(404); return res.end('not found'); }
        f = path.join(ROOT, 'index.html');
      }
      res.writeHead(200, { 'Content-Type': TYPES[path.extname(f)] || 'application/octet-stream', 'Content-Security-Policy': CSP, 'X-Content-Type-Options': 'nosniff' });
      return res.end(fs.readFileSync(f));
    }
    const json = async () => { const b = await body(req); try { return JSON.parse(b.toString() || '{}'); } catch { return null; } };
    if (p === '/api/auth/signup' && req.method === 'POST') {
      const b = await json();
      const errs = [];
      if (!b.name) errs.push({ field: 'name', message: 'required' });
      if (!/^\S+@\S+\.\S+$/.test(b.email || '')) errs.push({ field: 'email', message: 'must be an email address' });
      else if (users.has(b.email)) errs.push({ field: 'email', message: 'an account with this email already exists' });
      if (!b.password || b.password.length < 8) errs.push({ field: 'password', message: 'must be at least 8 characters' });
      if (errs.length) return fail(res, 400, 'VALIDATION_ERROR', 'invalid request', errs);
      const user = { _id: id('usr'), email: b.email, name: b.name, pw: b.password, tokenBalance: 0, totalTokensPurchased: 0, totalTokensUsed: 0, freeTokensGranted: 10, plan: 'free', role: 'user', createdAt: Date.now() };
      users.set(b.email, user);
      tx(user, 'grant', Number(process.env.MOCK_SIGNUP_TOKENS || 10));
      const sid = id('s'); sessions.set(sid, b.email);
      const { pw, ...pu } = user;
      return send(res, 201, { success: true, data: { user: pu, tokenBalance: user.tokenBalance } }, { 'Set-Cookie': `ss_session=${sid}; HttpOnly; SameSite=Lax; Path=/` });
    }
    if (p === '/api/auth/login' && req.method === 'POST') {
      const b = await json();
      const user = users.get(b.email);
      if (!user || user.pw !== b.password) return fail(res, 401, 'AUTHENTICATION_REQUIRED', 'invalid email or password');
      const sid = id('s'); sessions.set(sid, b.email);
      const { pw, ...pu } = user;
      return send(res, 200, { success: true, data: { user: pu, tokenBalance: user.tokenBalance } }, { 'Set-Cookie': `ss_session=${sid}; HttpOnly; SameSite=Lax; Path=/` });
    }
    if (p === '/api/auth/logout') return send(res, 200, { success: true, data: { signedOut: true } }, { 'Set-Cookie': 'ss_session=; Path=/; Max-Age=0' });
    if (!u) return fail(res, 401, 'AUTHENTICATION_REQUIRED', 'sign in required');
    const mine = [...gens.values()].filter((g) => g.email === u.email).sort((a, b) => b.createdAt - a.createdAt);
    if (p === '/api/me') {
      const { pw, ...pu } = u;
      const done = mine.filter((g) => g.status === 'completed').length;
      const failed = mine.filter((g) => g.status === 'failed').length;
      return ok(res, { user: pu, tokenBalance: u.tokenBalance, stats: { totalGenerations: mine.length, thisMonth: mine.length, completed: done, failed, successRate: done + failed ? done / (done + failed) : 0 } });
    }
    if (p === '/api/models') return ok(res, { items: MODELS, nextCursor: null });
    if (p === '/api/upload') {
      const b = await body(req);
      const ct = req.headers['content-type'] || '';
      let buf = b; let type = ct;
      const bm = /boundary=(.+)$/.exec(ct);
      if (bm) {
        const s = b.toString('latin1');
        const start = s.indexOf('\r\n\r\n') + 4;
        const end = s.lastIndexOf(`\r\n--${bm[1]}`);
        buf = b.subarray(start, end);
        type = (/Content-Type: (\S+)/i.exec(s) || [])[1] || '';
      }
      if (!/^image\/(jpeg|png|webp)$/.test(type)) return fail(res, 400, 'IMAGE_VALIDATION_ERROR', 'not a JPEG, PNG or WebP image');
      const name = `${crypto.randomBytes(12).toString('hex')}.${type.split('/')[1].replace('jpeg', 'jpg')}`;
      media.set(name, { type, buf });
      return ok(res, { url: `http://${req.headers.host}/media/${name}`, width: 800, height: 1000, format: type.split('/')[1], bytes: buf.length }, 201);
    }
    if (p === '/api/events' || /^\/api\/generations\/[^/]+\/events$/.test(p)) {
      res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache' });
      res.write('retry: 2000\n\n');
      const genId = p === '/api/events' ? null : p.split('/')[3];
      const l = { email: u.email, genId, res };
      if (genId) {
        const g = gens.get(genId);
        if (!g) { res.end(); return undefined; }
        res.write(`event: generation\nid: ${Date.now()}\ndata: ${JSON.stringify(pub(g))}\n\n`);
        if (['completed', 'failed', 'cancelled'].includes(g.status)) { res.end(); return undefined; }
      } else res.write(`event: balance\ndata: ${JSON.stringify({ tokenBalance: u.tokenBalance })}\n\n`);
      listeners.add(l);
      req.on('close', () => listeners.delete(l));
      return undefined;
    }
    const create = (b) => {
      const m = MODELS.find((x) => x.id === b.model);
      if (!m || !m.available) return [400, 'MODEL_ERROR', 'unknown or unavailable model'];
      if (!Array.isArray(b.productImages) || !b.productImages.length) return [400, 'VALIDATION_ERROR', 'invalid request', [{ field: 'productImages', message: 'at least one image is required' }]];
      const cost = m.costByQuality[b.quality || 'auto'];
      if (u.tokenBalance < cost) return [400, 'INSUFFICIENT_TOKENS', `this generation costs ${cost} tokens; your balance is ${u.tokenBalance}`];
      const g = { _id: id('gen'), email: u.email, userId: u._id, status: 'pending', productImages: b.productImages, modelImages: b.modelImages || [], resultImages: [], prompt: `A ${b.style} studio photograph of the product, ${b.aspectRatio} framing. ${b.customPrompt || ''}`.trim(), customPrompt: b.customPrompt, parameters: { model: b.model, style: b.style, quality: b.quality, aspectRatio: b.aspectRatio, guidance_scale: 7.5, num_inference_steps: 50, strength: 0.8, seed: 1234, ...(b.parameters || {}) }, tokensUsed: cost, retryCount: 0, createdAt: Date.now(), progress: 0, stage: 'queued', priority: 'normal', retryOf: b.retryOf };
      gens.set(g._id, g);
      u.totalTokensUsed += cost;
      tx(u, 'charge', -cost, g._id);
      emit(u.email, 'generation', pub(g), g._id);
      return g;
    };
    if (p === '/api/generation/create') {
      const g = create(await json());
      if (Array.isArray(g)) return fail(res, g[0], g[1], g[2], g[3]);
      return ok(res, { generationId: g._id, estimatedCost: g.tokensUsed, prompt: g.prompt, status: 'pending', message: 'Generation record created successfully' }, 201);
    }
    if (p === '/api/generate') {
      const b = await json();
      const g = gens.get(b.generationId);
      if (!g) return fail(res, 404, 'GENERATION_NOT_FOUND', 'no generation with that id');
      if (g.status !== 'pending') return fail(res, 400, 'INVALID_GENERATION_STATUS', 'not pending');
      run(g);
      return ok(res, { generationId: g._id, resultImages: [], status: 'processing', message: 'Generation processing started successfully' }, 202);
    }
    if (p === '/api/generations') {
      const st = url.searchParams.get('status');
      const limit = Number(url.searchParams.get('limit') || 20);
      const cur = Number(url.searchParams.get('cursor') || 0);
      const list = mine.filter((g) => !st || g.status === st);
      const items = list.slice(cur, cur + limit).map(pub);
      return ok(res, { items, nextCursor: cur + limit < list.length ? String(cur + limit) : null });
    }
    let m = /^\/api\/generations\/([^/]+)(?:\/(cancel|retry))?$/.exec(p);
    if (m) {
      const g = gens.get(m[1]);
      if (!g || g.email !== u.email) return fail(res, 404, 'GENERATION_NOT_FOUND', 'no generation with that id');
      if (m[2] === 'cancel') {
        if (!['pending', 'processing'].includes(g.status)) return fail(res, 400, 'INVALID_GENERATION_STATUS', 'not active');
        clearTimeout(g.timer);
        const cost = g.tokensUsed;
        change(g, { status: 'cancelled', completedAt: Date.now(), tokensUsed: 0 });
        tx(u, 'refund', cost, g._id);
        return ok(res, pub(g));
      }
      if (m[2] === 'retry') {
        if (!['failed', 'cancelled'].includes(g.status)) return fail(res, 400, 'INVALID_GENERATION_STATUS', 'not retryable');
        const n = create({ ...g.parameters, productImages: g.productImages, modelImages: g.modelImages, customPrompt: g.customPrompt, retryOf: g._id });
        if (Array.isArray(n)) return fail(res, n[0], n[1], n[2], n[3]);
        return ok(res, { generationId: n._id, estimatedCost: n.tokensUsed, prompt: n.prompt, status: 'pending' }, 201);
      }
      if (req.method === 'DELETE') { gens.delete(g._id); return ok(res, { id: g._id, deleted: true }); }
      return ok(res, pub(g));
    }
    if (p === '/api/keys' && req.method === 'POST') {
      const b = await json();
      const key = `sk_${crypto.randomBytes(24).toString('hex')}`;
      const k = { id: id('key'), secret: key, email: u.email, name: b.name, hint: key.slice(-4), createdAt: Date.now(), lastUsedAt: null };
      keys.push(k);
      return ok(res, { id: k.id, key, name: k.name, hint: k.hint, createdAt: k.createdAt }, 201);
    }
    if (p === '/api/keys') return ok(res, { items: keys.filter((k) => k.email === u.email).map(({ email, secret, ...k }) => k), nextCursor: null });
    m = /^\/api\/keys\/([^/]+)$/.exec(p);
    if (m) { const i = keys.findIndex((k) => k.id === m[1]); if (i >= 0) keys.splice(i, 1); return ok(res, { id: m[1], revoked: true }); }
    if (p === '/api/tokens/transactions') {
      const items = ledger.filter((t) => t.email === u.email).reverse().slice(0, Number(url.searchParams.get('limit') || 20)).map(({ email, ...t }) => t);
      return ok(res, { items, nextCursor: null });
    }
    return fail(res, 404, 'NOT_FOUND', 'no such route');
  } catch (e) {
    console.error(e);
    return fail(res, 500, 'INTERNAL_SERVER_ERROR', String(e));
  }
});

server.listen(Number(process.argv[2] || 0), '127.0.0.1', () => {
  console.log(`listening on http://127.0.0.1:${server.address().port}`);
});
