// One generation: live status, results, settings, prompt, inputs; retry, cancel, delete.
import { h, icon, clear, toast, fmtDate, fmtDuration, tokens, statusBadge, confirmDialog, TERMINAL, emptyState } from './dom.js';
import { get, post, del } from './api.js';
import { createPanel, errorView, actionsFor, describeError } from './genpanel.js';
import { gallery } from './lightbox.js';
import { genTitle } from './dashboard.js';
import { loadSettings, editSettings } from './studio.js';
import { failureView, retryGeneration } from './failure.js';

const QUALITY_NAME = { auto: 'Auto', low: 'Draft', medium: 'Standard', high: 'High' };

// The tunable create parameters a model may honour, in the order shown.
const TUNABLES = [
  ['guidance_scale', 'Guidance', (v) => v ?? '—'],
  ['num_inference_steps', 'Steps', (v) => v ?? '—'],
  ['strength', 'Strength', (v) => v ?? '—'],
  ['seed', 'Seed', (v) => v ?? 'random'],
];

let modelsCache = null;
/** GET /api/models once per page load; null when it cannot be read. */
async function loadModels() {
  if (!modelsCache) {
    modelsCache = get('/api/models').then((d) => d.items || d || []).catch(() => { modelsCache = null; return null; });
  }
  return modelsCache;
}

/**
 * The tunables a record's model honours (GET /api/models `parameters`):
 * only those are listed; a model the catalogue does not describe (or no
 * catalogue) shows them all, as before.
 */
function honouredTunables(models, modelId) {
  const m = Array.isArray(models) ? models.find((x) => x.id === modelId) : null;
  if (!m || !Array.isArray(m.parameters)) return TUNABLES;
  return TUNABLES.filter(([key]) => m.parameters.includes(key));
}

export async function render(container, [id], ctx) {
  let rec;
  let models = null;
  try {
    [rec, models] = await Promise.all([get(`/api/generations/${encodeURIComponent(id)}`), loadModels()]);
  } catch (err) {
    container.append(h('div', { class: 'page' },
      h('a', { class: 'back-link', href: '#/history' }, icon('left'), 'History'),
      err.code === 'GENERATION_NOT_FOUND' || err.status === 404 || err.status === 403
        ? emptyState({ iconName: 'image', title: 'Generation not found', text: 'It may have been deleted, or it belongs to another account.', action: h('a', { class: 'btn btn-primary btn-sm', href: '#/history' }, 'Back to history') })
        : errorView(err.code, err.message, [h('button', { type: 'button', class: 'btn btn-primary btn-sm', onclick: () => ctx.navigate(`/history/${id}`) }, 'Retry')])));
    return undefined;
  }

  const head = h('div', { class: 'page-head' });
  const actionsErr = h('div', {});
  const body = h('div', { class: 'detail' });
  container.append(h('div', { class: 'page' }, h('a', { class: 'back-link', href: '#/history' }, icon('left'), 'History'), head, actionsErr, body));

  let panel = null;

  function kv(k, v) { return h('div', { class: 'kv' }, h('dt', {}, k), h('dd', {}, v)); }

  function renderAll(r) {
    rec = r;
    const p = r.parameters || {};
    clear(head).append(
      h('div', {},
        h('div', { class: 'title-row' }, h('h1', {}, genTitle(r)), statusBadge(r.status)),
        h('p', { class: 'page-sub mono' }, r._id)),
      h('div', { class: 'head-actions' },
        h('button', { type: 'button', class: 'btn btn-ghost', onclick: () => { loadSettings(r); ctx.navigate('/studio'); toast('Settings loaded into the studio', 'info'); } }, icon('sliders'), 'Use these settings'),
        r.status === 'pending' && !panel ? h('button', { type: 'button', class: 'btn btn-primary', 'data-action': 'start', onclick: start }, icon('sparkles'), 'Start') : null,
        !TERMINAL.has(r.status) && !panel ? h('button', { type: 'button', class: 'btn btn-ghost', 'data-action': 'cancel', onclick: cancel }, icon('stop'), 'Cancel') : null,
        TERMINAL.has(r.status) ? h('button', { type: 'button', class: 'btn btn-danger-ghost', 'data-action': 'delete', onclick: remove }, icon('trash'), 'Delete') : null));

    const results = r.resultImages && r.resultImages.length
      ? gallery(r.resultImages, { name: r._id, ratio: p.aspectRatio, zipId: r._id })
      : r.status === 'completed' ? h('p', { class: 'muted' }, 'This generation produced no images.')
        : !TERMINAL.has(r.status) ? h('p', { class: 'muted' }, 'Results appear here as soon as they are ready.')
          : emptyState({ iconName: 'image', title: r.status === 'failed' ? 'No results — it failed' : 'No results — it was cancelled', text: 'Its tokens were refunded.' });

    const inputs = (label, list) => (list && list.length ? [h('h3', { class: 'section-label' }, label), gallery(list, { name: `${r._id}-${label.toLowerCase().replace(/\s+/g, '-')}`, label, small: true })] : []);

    clear(body).append(
      h('div', { class: 'detail-main' },
        !TERMINAL.has(r.status) && panel ? panel.el : null,
        (r.status === 'failed' || r.status === 'cancelled') ? failureView(r, { onAction }) : null,
        h('section', { class: 'card', 'aria-labelledby': 'res-t' }, h('h2', { class: 'card-title', id: 'res-t' }, 'Results'), results),
        h('section', { class: 'card', 'aria-labelledby': 'in-t' }, h('h2', { class: 'card-title', id: 'in-t' }, 'Inputs'),
          inputs('Product images', r.productImages), inputs('Model images', r.modelImages))),
      h('aside', { class: 'detail-side' },
        h('section', { class: 'card', 'aria-labelledby': 'set-t' },
          h('h2', { class: 'card-title', id: 'set-t' }, 'Settings'),
          h('dl', { class: 'kvs' },
            kv('Model', p.model || '—'), kv('Style', p.style || '—'), kv('Quality', QUALITY_NAME[p.quality] || p.quality || '—'),
            kv('Aspect ratio', p.aspectRatio || '—'),
            ...honouredTunables(models, p.model).map(([key, label, fmt]) => kv(label, fmt(p[key]))),
            kv('Priority', r.priority || 'normal'))),
        h('section', { class: 'card', 'aria-labelledby': 'run-t' },
          h('h2', { class: 'card-title', id: 'run-t' }, 'Run'),
          h('dl', { class: 'kvs' },
            kv('Tokens used', tokens(r.tokensUsed ?? 0)), kv('Created', fmtDate(r.createdAt)), kv('Started', fmtDate(r.startedAt)),
            kv('Finished', fmtDate(r.completedAt)), kv('Processing time', fmtDuration(r.processingTime)), kv('Retries', String(r.retryCount ?? 0)),
            r.retryOf ? kv('Retry of', h('a', { href: `#/history/${r.retryOf}`, class: 'mono' }, r.retryOf)) : null)),
        h('section', { class: 'card', 'aria-labelledby': 'pr-t' },
          h('h2', { class: 'card-title', id: 'pr-t' }, 'Prompt'),
          r.customPrompt ? [h('h3', { class: 'section-label' }, 'Your words'), h('p', { class: 'prompt-text' }, r.customPrompt)] : null,
          h('h3', { class: 'section-label' }, 'Full prompt'),
          h('p', { class: 'prompt-text muted' }, r.prompt || '—'))));
  }

  if (!TERMINAL.has(rec.status)) {
    panel = createPanel({
      showResults: false, linkDetails: false,
      onRecord: (r) => { if (r.status !== rec.status && (r._id || r.generationId) === rec._id) renderAll({ ...rec, ...r }); },
      onNewGeneration: (nid) => ctx.navigate(`/history/${nid}`),
      onEdit: (r, focus) => editSettings({ ...rec, ...r }, focus),
    });
    panel.track(rec._id, rec);
  }
  renderAll(rec);

  function showErr(err) {
    clear(actionsErr).append(errorView(err.code, describeError(err), actionsFor(err, { onRetry: () => retry() })));
    actionsErr.scrollIntoView({ block: 'nearest' });
  }

  async function onAction(kind) {
    if (kind === 'prompt' || kind === 'image') { editSettings(rec, kind); return; }
    await retry(kind === 'again' ? 'Started again with the same settings' : 'Trying again with the same settings');
  }

  async function retry(message = 'Trying again with the same settings') {
    clear(actionsErr);
    try {
      const { id: nid } = await retryGeneration(rec._id);
      toast(message, 'info');
      ctx.navigate(`/history/${nid}`);
    } catch (err) { showErr(err); }
  }

  async function start(e) {
    const btn = e && e.currentTarget;
    if (btn) btn.disabled = true;
    clear(actionsErr);
    try {
      await post('/api/generate', { generationId: rec._id });
      toast('Generation started', 'success');
      if (btn) btn.remove();
    } catch (err) {
      if (btn) btn.disabled = false;
      showErr(err);
    }
  }

  async function cancel() {
    try {
      const r = await post(`/api/generations/${encodeURIComponent(rec._id)}/cancel`, {});
      toast('Generation cancelled — tokens refunded', 'success');
      if (panel) panel.render(r);
      renderAll(r);
    } catch (err) { showErr(err); }
  }

  async function remove() {
    const ok = await confirmDialog({
      title: 'Delete this generation?',
      body: h('p', {}, 'Its result images will be removed for good. Your token history is kept.'),
      confirm: 'Delete', danger: true,
    });
    if (!ok) return;
    try {
      await del(`/api/generations/${encodeURIComponent(rec._id)}`);
      toast('Generation deleted', 'success');
      ctx.navigate('/history');
    } catch (err) { showErr(err); }
  }

  return () => { if (panel) panel.stop(); };
}
