// Narrow stand-ins, laid over the real binary with Playwright's page.route(),
// for states the real server cannot produce: a record without an errorCode or
// with one this studio does not know yet (forceErrorCode), and the webhooks
// routes until they land on main (stubWebhooks; a test uses the real routes as
// soon as the server has them). Everything else — the studio's files, sign-up,
// uploads, generations, SSE — comes from the real `stylestudio serve`.
//
// Why not tests/browser/mock-server.mjs: it replaces the whole server (a Node
// re-implementation for UI work without a build), so a test against it would
// check the studio against the mock, not against stylestudio.
import crypto from 'node:crypto';

/** GET /api/models from the real server, as the signed-in page sees it. */
export async function realModels(page) {
  return page.evaluate(async () => (await (await fetch('/api/models')).json()).data.items);
}

/**
 * Make GET /api/generations/{id} (and the list) carry errorCode `code` for that
 * generation when the real record does not already have it. Returns
 * {patched} — false when the real server produced the code itself.
 */
export async function forceErrorCode(page, id, code) {
  const state = { patched: false };
  const fix = (rec) => {
    if (!rec || rec._id !== id) return rec;
    if (code === undefined) {
      if ('errorCode' in rec) { delete rec.errorCode; state.patched = true; }
    } else if (rec.errorCode !== code) { rec.errorCode = code; state.patched = true; }
    return rec;
  };
  await page.route((u) => u.pathname === `/api/generations/${id}` || u.pathname === '/api/generations', async (route) => {
    if (route.request().method() !== 'GET') return route.continue();
    const res = await route.fetch();
    const body = await res.json();
    if (body.success && body.data) {
      if (Array.isArray(body.data.items)) body.data.items = body.data.items.map(fix);
      else fix(body.data);
    }
    await route.fulfill({ response: res, json: body });
  });
  return state;
}

/**
 * The webhooks routes of SPEC §8, in memory, for a page whose real server does
 * not have them yet. Validation follows the spec (url http(s) and not a
 * private/link-local/metadata address, events ⊆ the five types, description ≤
 * 500) and answers VALIDATION_ERROR with validationErrors per field, like the
 * real API. `deliver(webhookId, type)` records a delivery as the dispatcher
 * would after a failed first attempt.
 */
export const EVENT_TYPES = ['generation.processing', 'generation.completed', 'generation.failed', 'generation.cancelled', 'balance.changed'];

export async function stubWebhooks(page) {
  const hooks = [];
  const deliveries = new Map(); // webhook id → [delivery]
  const requests = [];
  const id = (p) => `${p}_${crypto.randomBytes(10).toString('hex')}`;
  const reply = (route, status, data) => route.fulfill({ status, json: { success: true, data }, headers: { 'X-Request-Id': id('req') } });
  const fail = (route, status, code, error, validationErrors = []) => route.fulfill({
    status, json: { success: false, code, error, validationErrors, requestId: id('req') },
  });
  const pub = ({ secret, ...w }) => w;
  await page.route((u) => u.pathname.startsWith('/api/webhooks'), async (route) => {
    const req = route.request();
    const path = new URL(req.url()).pathname;
    const method = req.method();
    let body = null;
    try { body = req.postDataJSON(); } catch { body = null; }
    requests.push({ method, path, body });
    if (path === '/api/webhooks' && method === 'POST') {
      const errs = [];
      const url = body && body.url;
      if (typeof url !== 'string' || !url) errs.push({ field: 'url', message: 'url is required and must be a string' });
      else {
        let u = null;
        try { u = new URL(url); } catch { u = null; }
        if (!u || !/^https?:$/.test(u.protocol)) errs.push({ field: 'url', message: 'must be an http(s) URL' });
        else if (/^(169\.254\.|10\.|192\.168\.|0\.)/.test(u.hostname)) errs.push({ field: 'url', message: `${u.hostname} is a private, link-local or metadata address` });
      }
      const ev = body && body.events;
      if (!Array.isArray(ev) || !ev.length) errs.push({ field: 'events', message: 'events is required: a non-empty array of event types' });
      else ev.forEach((t, i) => { if (!EVENT_TYPES.includes(t)) errs.push({ field: `events[${i}]`, message: 'not an event type' }); });
      if (body && body.description != null && (typeof body.description !== 'string' || body.description.length > 500)) errs.push({ field: 'description', message: 'description must be at most 500 characters' });
      if (errs.length) return fail(route, 400, 'VALIDATION_ERROR', 'invalid request', errs);
      const w = { id: id('whk'), url, events: [...new Set(ev)], description: body.description || '', secret: `whsec_${crypto.randomBytes(24).toString('base64')}`, createdAt: Date.now() };
      hooks.unshift(w);
      deliveries.set(w.id, []);
      return reply(route, 201, w);
    }
    if (path === '/api/webhooks' && method === 'GET') return reply(route, 200, { items: hooks.map(pub), nextCursor: null });
    let m = /^\/api\/webhooks\/([^/]+)$/.exec(path);
    if (m && method === 'DELETE') {
      const i = hooks.findIndex((w) => w.id === m[1]);
      if (i < 0) return fail(route, 404, 'NOT_FOUND', 'no such webhook');
      hooks.splice(i, 1);
      return reply(route, 200, { id: m[1], deleted: true });
    }
    m = /^\/api\/webhooks\/([^/]+)\/deliveries$/.exec(path);
    if (m && method === 'GET') {
      if (!deliveries.has(m[1])) return fail(route, 404, 'NOT_FOUND', 'no such webhook');
      return reply(route, 200, { items: deliveries.get(m[1]), nextCursor: null });
    }
    m = /^\/api\/webhooks\/([^/]+)\/deliveries\/([^/]+)\/redeliver$/.exec(path);
    if (m && method === 'POST') {
      const d = (deliveries.get(m[1]) || []).find((x) => x.id === m[2]);
      if (!d) return fail(route, 404, 'NOT_FOUND', 'no such delivery');
      // Sent again at once; the receiver now answers 200.
      Object.assign(d, { status: 'succeeded', attempts: d.attempts + 1, lastStatusCode: 200, nextAttemptAt: null, updatedAt: Date.now() });
      return reply(route, 202, d);
    }
    return fail(route, 404, 'NOT_FOUND', 'no such route');
  });
  return {
    requests,
    deliver(webhookId, type, patch = {}) {
      const d = { id: id('msg'), type, status: 'pending', attempts: 1, lastStatusCode: 500, nextAttemptAt: Date.now() + 5 * 60000, createdAt: Date.now(), updatedAt: Date.now(), ...patch };
      deliveries.get(webhookId).unshift(d);
      return d;
    },
  };
}

