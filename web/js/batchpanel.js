// One progress view for a batch (SPEC §4 "Batches"): the combined progress and
// counts of its generations, a tile per item (live status, its first result),
// cancel the unfinished ones, download every result as one ZIP. Items update
// from the account's event stream (session 'generation' events carry batchId);
// GET /api/batches/{id} gives the counts and the tokens the batch holds now.
import { h, icon, clear, statusBadge, tokens, plural, toast, TERMINAL } from './dom.js';
import { get, post } from './api.js';
import { on } from './session.js';
import { downloadZip } from './zip.js';

const STYLE_NAME = { realistic: 'Realistic', artistic: 'Artistic', minimal: 'Minimal' };

/** createBatchPanel({onGone}) → {el, track(batchId, seed), stop()} */
export function createBatchPanel({ onGone } = {}) {
  let batchId = null;
  let batch = null;
  const recs = new Map(); // generation id → latest record
  let off = null;
  let timer = null;

  const title = h('h2', { class: 'card-title', id: 'batch-title' }, 'Batch');
  const idEl = h('span', { class: 'mono muted small', 'data-batch-id': '' });
  const badge = h('span', { class: 'panel-badge' });
  const summary = h('p', { class: 'panel-status', 'aria-live': 'polite', 'data-batch-summary': '' });
  const fill = h('div', { class: 'progress-fill' });
  const bar = h('div', { class: 'progress', role: 'progressbar', 'aria-label': 'Batch progress', 'aria-valuemin': '0', 'aria-valuemax': '100', 'aria-valuenow': '0' }, fill);
  const pct = h('span', { class: 'progress-pct', 'data-batch-progress': '' }, '0%');
  const tokensEl = h('dd', { 'data-batch-tokens': '' }, '—');
  const countEl = h('dd', { 'data-batch-counts': '' }, '—');
  const tiles = h('ul', { class: 'batch-tiles', role: 'list' });
  const cancelBtn = h('button', { type: 'button', class: 'btn btn-ghost btn-sm', 'data-batch-action': 'cancel', onclick: doCancel }, icon('stop'), 'Cancel the rest');
  const zipBtn = h('button', { type: 'button', class: 'btn btn-ghost btn-sm', 'data-batch-action': 'zip', onclick: doZip }, icon('download'), 'Download all (ZIP)');
  const err = h('div', { class: 'panel-error' });
  const el = h('section', { class: 'card panel batch-panel', 'aria-labelledby': 'batch-title', 'data-batch-panel': '', hidden: true },
    h('div', { class: 'panel-head' }, h('div', {}, title, idEl), badge),
    summary,
    h('div', { class: 'progress-row' }, bar, pct),
    h('dl', { class: 'stats' },
      h('div', { class: 'stat' }, h('dt', {}, 'Generations'), countEl),
      h('div', { class: 'stat' }, h('dt', {}, 'Tokens held'), tokensEl)),
    err,
    h('div', { class: 'panel-actions' }, cancelBtn, zipBtn),
    tiles);

  function status() {
    const c = batch ? batch.counts : null;
    if (!c) return 'processing';
    if (c.pending + c.processing > 0) return c.processing > 0 ? 'processing' : 'pending';
    return c.completed > 0 ? 'completed' : c.failed > 0 ? 'failed' : 'cancelled';
  }

  function counts() {
    // From the records when all are known (fresher than the last GET), else the batch.
    const c = { pending: 0, processing: 0, completed: 0, failed: 0, cancelled: 0 };
    const ids = batch ? batch.generationIds : [];
    if (ids.length && ids.every((id) => recs.has(id))) { for (const id of ids) c[recs.get(id).status] = (c[recs.get(id).status] || 0) + 1; return c; }
    return batch ? batch.counts : c;
  }

  function tile(id, i) {
    const r = recs.get(id);
    const p = (r && r.parameters) || {};
    const src = r ? ((r.resultImages && r.resultImages[0]) || (r.productImages && r.productImages[0])) : null;
    const prog = r ? (r.status === 'completed' ? 100 : Math.round(r.progress || 0)) : 0;
    return h('li', { class: `batch-tile is-${r ? r.status : 'loading'}`, 'data-batch-item': id, 'data-status': r ? r.status : '' },
      h('a', { href: `#/history/${id}`, class: 'batch-tile-link', 'aria-label': `Item ${i + 1}: ${STYLE_NAME[p.style] || p.style || ''} ${p.aspectRatio || ''}, ${r ? r.status : 'loading'}` },
        h('span', { class: 'batch-thumb' }, src ? h('img', { src, alt: '', loading: 'lazy' }) : icon('image')),
        h('span', { class: 'batch-tile-body' },
          h('span', { class: 'batch-tile-name' }, `${i + 1}. ${STYLE_NAME[p.style] || p.style || '…'}`, h('span', { class: 'batch-tile-ratio' }, ` ${p.aspectRatio || ''}`)),
          r ? statusBadge(r.status) : null,
          r && !TERMINAL.has(r.status) ? h('span', { class: 'mini-progress' }, h('span', { style: { width: `${Math.max(4, prog)}%` } })) : null)));
  }

  function render() {
    if (!batch) return;
    const c = counts();
    const ids = batch.generationIds;
    const st = status();
    el.dataset.status = st;
    title.textContent = `Batch · ${plural(ids.length, 'generation')}`;
    idEl.textContent = batchId;
    clear(badge).append(statusBadge(st));
    const done = c.completed + c.failed + c.cancelled;
    const sum = ids.reduce((n, id) => {
      const r = recs.get(id);
      return n + (!r ? 0 : TERMINAL.has(r.status) ? 100 : Math.max(0, Math.min(100, r.progress || 0)));
    }, 0);
    const progress = ids.length ? Math.round(sum / ids.length) : 0;
    fill.style.width = `${progress}%`;
    bar.setAttribute('aria-valuenow', String(progress));
    // Finished with nothing made (all cancelled or failed) is not a green bar.
    bar.classList.toggle('is-done', done === ids.length && c.completed > 0);
    bar.classList.toggle('is-failed', done === ids.length && c.completed === 0);
    pct.textContent = done === ids.length && c.completed === 0 ? '—' : `${progress}%`;
    summary.textContent = done === ids.length
      ? `Done — ${c.completed} of ${ids.length} completed${c.failed ? `, ${c.failed} failed` : ''}${c.cancelled ? `, ${c.cancelled} cancelled` : ''}`
      : `${done} of ${ids.length} done${c.processing ? ` · ${c.processing} running` : ''}${c.pending ? ` · ${c.pending} not started` : ''}`;
    countEl.textContent = [c.completed && `${c.completed} completed`, c.processing && `${c.processing} running`, c.pending && `${c.pending} pending`, c.failed && `${c.failed} failed`, c.cancelled && `${c.cancelled} cancelled`].filter(Boolean).join(' · ') || '—';
    tokensEl.textContent = tokens(batch.tokensUsed ?? 0);
    cancelBtn.hidden = done === ids.length;
    zipBtn.hidden = !ids.some((id) => { const r = recs.get(id); return r && r.status === 'completed' && (r.resultImages || []).length; });
    clear(tiles).append(...ids.map(tile));
  }

  async function refreshBatch() {
    try {
      batch = await get(`/api/batches/${encodeURIComponent(batchId)}`);
      render();
    } catch (e) {
      if (e.status === 404 || e.status === 403) { stop(); el.hidden = true; if (onGone) onGone(batchId); }
    }
  }
  const soon = () => { clearTimeout(timer); timer = setTimeout(refreshBatch, 250); };

  async function track(id, seed = null) {
    stop();
    batchId = id;
    recs.clear();
    clear(err);
    batch = seed ? { _id: id, total: seed.generationIds.length, tokensUsed: seed.estimatedCost, counts: { pending: 0, processing: seed.generationIds.length, completed: 0, failed: 0, cancelled: 0 }, generationIds: seed.generationIds } : null;
    el.hidden = false;
    render();
    off = on('generation', (g) => {
      if (!batch || g.batchId !== batchId) return;
      recs.set(g._id, g);
      render();
      soon();
    });
    await refreshBatch();
    if (!batch) return;
    await Promise.all(batch.generationIds.map(async (gid) => {
      try { const r = await get(`/api/generations/${encodeURIComponent(gid)}`); if (!recs.has(gid) || (recs.get(gid).progress || 0) <= (r.progress || 0) || TERMINAL.has(r.status)) recs.set(gid, r); } catch { /* a deleted item */ }
    }));
    render();
  }

  async function doCancel() {
    cancelBtn.disabled = true;
    try {
      batch = await post(`/api/batches/${encodeURIComponent(batchId)}/cancel`, {});
      await Promise.all(batch.generationIds.map(async (gid) => { try { recs.set(gid, await get(`/api/generations/${encodeURIComponent(gid)}`)); } catch { /* gone */ } }));
      render();
      toast('Cancelled the unfinished generations — their tokens were refunded', 'success');
    } catch (e) {
      toast(`Could not cancel: ${e.message}`, 'error');
    } finally { cancelBtn.disabled = false; }
  }

  async function doZip() {
    zipBtn.disabled = true;
    try {
      const groups = batch.generationIds.map((gid) => recs.get(gid)).filter((r) => r && r.status === 'completed' && (r.resultImages || []).length).map((r) => ({ id: r._id, images: r.resultImages }));
      const n = await downloadZip(groups, `${batchId}.zip`);
      toast(`Saved ${plural(n, 'image')} as ${batchId}.zip`, 'success');
    } catch (e) {
      toast(`Could not make the ZIP: ${e.message}`, 'error');
    } finally { zipBtn.disabled = false; }
  }

  function stop() { if (off) off(); off = null; clearTimeout(timer); }

  return { el, track, stop, get id() { return batchId; } };
}
