// The create endpoint as a team would write it in Node.js instead: node:http
// behind node:cluster (one process per core), pg's connection pool, and
// PostgreSQL doing the durable work, for bench/run.sh's side-by-side row.
// It does what the service's POST /api/generation/create does (SPEC §4):
// a bearer API key (SHA-256 in the database; remembered for a second, as
// the service's key cache), the body checked field by field, the cost,
// the optimized prompt, then one transaction — the conditional debit, the
// pending generation, its ledger row and the generation and balance events
// — before 201 with the same envelope. Nothing is sent before COMMIT
// returns (synchronous_commit stays on).
//
//   node bench/compare/server.mjs --db postgres://... [--processes N]
//   node bench/compare/server.mjs --db ... --schema   create the tables, then exit
// Prints "listening on http://127.0.0.1:PORT" once every process listens.
import cluster from 'node:cluster';
import { createHash, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { availableParallelism } from 'node:os';
import pg from 'pg';

const arg = (name, def) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : def;
};
const DB = arg('db');
const PROCESSES = Number(arg('processes', availableParallelism()));
const POOL = Number(arg('pool', 16));
if (!DB) {
  console.error('usage: server.mjs --db postgres://... [--processes N] [--pool N] [--schema]');
  process.exit(2);
}

if (process.argv.includes('--schema')) {
  const c = new pg.Client({ connectionString: DB });
  await c.connect();
  await c.query(readFileSync(new URL('schema.sql', import.meta.url), 'utf8'));
  await c.end();
  process.exit(0);
}

if (cluster.isPrimary) {
  let listening = 0;
  for (let i = 0; i < PROCESSES; i++) cluster.fork();
  cluster.on('listening', (w, addr) => {
    if (++listening === PROCESSES) console.log(`listening on http://127.0.0.1:${addr.port}`);
  });
  cluster.on('exit', (w, code) => {
    console.error(`worker ${w.process.pid} exited (${code})`);
    process.exit(1);
  });
  const stop = () => {
    for (const w of Object.values(cluster.workers)) w.kill();
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
} else {
  serve();
}

function serve() {
  const pool = new pg.Pool({ connectionString: DB, max: POOL });
  const keys = new Map(); // sha256 → { userId, at }

  const MODELS = { 'local-studio': 1, 'gpt-image-1': 4, 'flux-kontext': 3 };
  const STYLES = ['realistic', 'editorial', 'minimal', 'lifestyle', 'luxury', 'streetwear'];
  const QUALITIES = ['low', 'auto', 'high'];
  const RATIOS = { '1:1': 'square, centred', '3:4': 'portrait', '4:3': 'landscape', '9:16': 'tall portrait', '16:9': 'wide' };
  const STYLE_TEXT = {
    realistic: 'photorealistic, natural light, true-to-life textures',
    editorial: 'magazine editorial, dramatic light, bold composition',
    minimal: 'minimalist composition, clean lines, simple background, elegant',
    lifestyle: 'lifestyle scene, candid, warm natural setting',
    luxury: 'luxury campaign, rich tones, refined lighting',
    streetwear: 'urban streetwear, gritty textures, city backdrop',
  };

  const send = (res, status, body) => {
    const text = JSON.stringify(body);
    res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
    res.end(text);
  };
  const error = (res, status, code, message, details) =>
    send(res, status, { success: false, error: { code, message, ...(details ? { details } : {}) } });

  async function userOf(req) {
    const m = /^Bearer (.+)$/.exec(req.headers.authorization || '');
    if (!m) return null;
    const hash = createHash('sha256').update(m[1]).digest('hex');
    const hit = keys.get(hash);
    if (hit && Date.now() - hit.at < 1000) return hit.userId;
    const r = await pool.query('SELECT user_id FROM cmp_api_keys WHERE key_hash = $1 AND revoked_at IS NULL', [hash]);
    if (!r.rows.length) return null;
    keys.set(hash, { userId: r.rows[0].user_id, at: Date.now() });
    return r.rows[0].user_id;
  }

  function validate(b) {
    const errs = [];
    if (typeof b !== 'object' || b === null || Array.isArray(b)) return [{ field: 'body', message: 'must be a JSON object' }];
    const urls = b.productImages;
    if (!Array.isArray(urls) || urls.length < 1 || urls.length > 4) errs.push({ field: 'productImages', message: 'must hold 1 to 4 image URLs' });
    else urls.forEach((u, i) => {
      if (typeof u !== 'string' || !/^https?:\/\/[^\s]+$/.test(u) || u.length > 2048)
        errs.push({ field: `productImages[${i}]`, message: 'must be an http(s) URL' });
    });
    if (!(b.model in MODELS)) errs.push({ field: 'model', message: 'unknown model' });
    if (!STYLES.includes(b.style)) errs.push({ field: 'style', message: `must be one of ${STYLES.join(', ')}` });
    if (!QUALITIES.includes(b.quality)) errs.push({ field: 'quality', message: `must be one of ${QUALITIES.join(', ')}` });
    if (!(b.aspectRatio in RATIOS)) errs.push({ field: 'aspectRatio', message: 'unsupported aspect ratio' });
    return errs;
  }

  const prompt = (b) =>
    'Professional fashion product photography of the product from the product photo, presented on a ' +
    "mannequin, as a flat lay or as a ghost-mannequin shot, reproducing the product's colours, fabric, " +
    `patterns and details exactly. Style: ${STYLE_TEXT[b.style]}. Setting: pure white background, minimal ` +
    `shadows. Composition: ${RATIOS[b.aspectRatio]} composition.`;

  async function create(req, res, raw) {
    const userId = await userOf(req);
    if (!userId) return error(res, 401, 'UNAUTHORIZED', 'missing or invalid API key');
    let body;
    try {
      body = JSON.parse(raw);
    } catch {
      return error(res, 400, 'INVALID_JSON', 'the body is not valid JSON');
    }
    const errs = validate(body);
    if (errs.length) return error(res, 400, 'VALIDATION_ERROR', 'invalid request', errs);
    const cost = MODELS[body.model];
    const id = `gen_${randomUUID().replaceAll('-', '')}`;
    const now = Date.now();
    const text = prompt(body);
    const record = {
      _id: id, userId, status: 'pending', productImages: body.productImages, modelImages: [],
      resultImages: [], prompt: text,
      parameters: { model: body.model, style: body.style, quality: body.quality, aspectRatio: body.aspectRatio },
      tokensUsed: cost, retryCount: 0, createdAt: now, progress: 0, stage: 'pending', priority: 'normal',
    };
    const c = await pool.connect();
    try {
      await c.query('BEGIN');
      const debit = await c.query(
        'UPDATE cmp_users SET token_balance = token_balance - $2, total_tokens_used = total_tokens_used + $2' +
          ' WHERE id = $1 AND token_balance >= $2 RETURNING token_balance', [userId, cost]);
      if (!debit.rows.length) {
        await c.query('ROLLBACK');
        return error(res, 402, 'INSUFFICIENT_TOKENS', 'not enough tokens');
      }
      const balance = debit.rows[0].token_balance;
      await c.query(
        'INSERT INTO cmp_generations (id, user_id, status, product_images, prompt, model, style, quality,' +
          ' aspect_ratio, tokens_used, stage, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $3, $11)',
        [id, userId, 'pending', JSON.stringify(body.productImages), text, body.model, body.style, body.quality,
          body.aspectRatio, cost, now]);
      await c.query(
        'INSERT INTO cmp_token_transactions (user_id, kind, amount, balance_after, generation_id, created_at)' +
          " VALUES ($1, 'charge', $2, $3, $4, $5)", [userId, -cost, balance, id, now]);
      await c.query(
        'INSERT INTO cmp_events (user_id, generation_id, type, data, created_at) VALUES' +
          " ($1, $2, 'generation', $3, $5), ($1, NULL, 'balance', $4, $5)",
        [userId, id, JSON.stringify(record), JSON.stringify({ tokenBalance: balance }), now]);
      await c.query('COMMIT');
    } catch (e) {
      await c.query('ROLLBACK').catch(() => {});
      throw e;
    } finally {
      c.release();
    }
    send(res, 201, {
      success: true,
      data: { generationId: id, estimatedCost: cost, prompt: text, status: 'pending', message: 'Generation created successfully' },
    });
  }

  http
    .createServer((req, res) => {
      const chunks = [];
      req.on('data', (d) => chunks.push(d));
      req.on('end', () => {
        if (req.method !== 'POST' || req.url !== '/api/generation/create')
          return error(res, 404, 'NOT_FOUND', 'no such route');
        create(req, res, Buffer.concat(chunks).toString('utf8')).catch((e) => {
          console.error(e);
          error(res, 500, 'INTERNAL_ERROR', 'internal error');
        });
      });
    })
    .listen(0, '127.0.0.1');
}
