// History: every generation, status filter, cursor pagination, live updates.
import { h, icon, clear, toast, fmtAgo, statusBadge, emptyState, skeleton, STATUS_LABEL } from './dom.js';
import { get } from './api.js';
import { failureView, retryGeneration } from './failure.js';
import { editSettings } from './studio.js';
import { errorView, describeError, actionsFor } from './genpanel.js';
import { on } from './session.js';
import { thumbOf, genTitle } from './dashboard.js';

const FILTERS = ['', 'completed', 'processing', 'pending', 'failed', 'cancelled'];

function card(g, onAction) {
  const src = thumbOf(g);
  const p = g.parameters || {};
  const n = (g.resultImages || []).length;
  return h('li', { class: 'hcard', 'data-gen-id': g._id, 'data-status': g.status },
    h('a', { href: `#/history/${g._id}`, class: 'hcard-link', 'aria-label': `${genTitle(g)}, ${STATUS_LABEL[g.status] || g.status}, ${fmtAgo(g.createdAt)}` },
      h('span', { class: 'hcard-thumb' },
        src ? h('img', { src, alt: '', loading: 'lazy', decoding: 'async' }) : h('span', { class: 'hcard-ph' }, icon('image')),
        n > 1 ? h('span', { class: 'hcard-count' }, `${n} images`) : null),
      h('span', { class: 'hcard-body' },
        h('span', { class: 'hcard-top' }, h('strong', {}, genTitle(g)), statusBadge(g.status)),
        h('span', { class: 'muted small' }, `${p.model || '—'} · ${p.quality || 'auto'} · ${fmtAgo(g.createdAt)}`),
        g.status === 'processing' ? h('span', { class: 'mini-progress' }, h('span', { style: { width: `${Math.max(4, g.progress || 0)}%` } })) : null)),
    g.status === 'failed' || g.status === 'cancelled' ? h('div', { class: 'hcard-failure' }, failureView(g, { compact: true, onAction: (kind) => onAction(g, kind) })) : null);
}

export async function render(container, _params, ctx) {
  let filter = ''; // every visit starts from All
  let cursor = null;
  const actionErr = h('div', { class: 'history-error' });
  async function onAction(g, kind) {
    if (kind === 'prompt' || kind === 'image') { editSettings(g, kind); return; }
    clear(actionErr);
    try {
      const { id } = await retryGeneration(g._id);
      toast(kind === 'again' ? 'Started again with the same settings' : 'Trying again with the same settings', 'info');
      ctx.navigate(`/history/${id}`);
    } catch (err) {
      const li = grid.querySelector(`[data-gen-id="${CSS.escape(g._id)}"] .hcard-failure`);
      (li || actionErr).append(errorView(err.code, describeError(err), actionsFor(err, {})));
    }
  }
  const cardOf = (g) => card(g, onAction);
  let loading = false;
  const grid = h('ul', { class: 'hgrid', role: 'list', 'aria-live': 'polite', 'aria-busy': 'true' });
  const more = h('button', { type: 'button', class: 'btn btn-ghost', hidden: true, onclick: () => load(false) }, 'Load more');
  const status = h('p', { class: 'muted small center', 'aria-live': 'polite' });
  const chips = h('div', { class: 'chips', role: 'group', 'aria-label': 'Filter by status' },
    FILTERS.map((f) => h('button', {
      type: 'button', class: 'chip', 'aria-pressed': String(f === filter), 'data-filter': f || 'all',
      onclick: (e) => {
        filter = f;
        chips.querySelectorAll('.chip').forEach((c) => c.setAttribute('aria-pressed', String(c === e.currentTarget)));
        load(true);
      },
    }, f ? STATUS_LABEL[f] : 'All')));

  container.append(h('div', { class: 'page' },
    h('div', { class: 'page-head' },
      h('div', {}, h('h1', {}, 'History'), h('p', { class: 'page-sub' }, 'Every generation you’ve made, newest first.')),
      h('a', { class: 'btn btn-primary', href: '#/studio' }, icon('sparkles'), 'New generation')),
    chips, actionErr, grid, h('div', { class: 'more-row' }, more, status)));

  async function load(reset) {
    if (loading) return;
    loading = true;
    more.disabled = true;
    more.classList.add('loading');
    if (reset) { cursor = null; clear(grid).append(skeleton(6, 'skel-hcard')); grid.setAttribute('aria-busy', 'true'); }
    try {
      const q = new URLSearchParams({ limit: '12' });
      if (filter) q.set('status', filter);
      if (cursor) q.set('cursor', cursor);
      const data = await get(`/api/generations?${q}`);
      if (reset) clear(grid);
      data.items.forEach((g) => grid.append(cardOf(g)));
      cursor = data.nextCursor || null;
      more.hidden = !cursor;
      const count = grid.querySelectorAll('.hcard').length;
      if (!count) {
        grid.append(h('li', { class: 'hgrid-empty' }, emptyState({
          iconName: 'clock',
          title: filter ? `No ${STATUS_LABEL[filter].toLowerCase()} generations` : 'No generations yet',
          text: filter ? 'Try another filter.' : 'Head to the studio to create your first styled shot.',
          action: filter ? null : h('a', { class: 'btn btn-primary btn-sm', href: '#/studio' }, 'Open the studio'),
        })));
      }
      status.textContent = count ? `Showing ${count} generation${count === 1 ? '' : 's'}${cursor ? '' : ' — that’s all'}` : '';
    } catch (err) {
      if (reset) clear(grid);
      status.textContent = '';
      grid.append(h('li', { class: 'hgrid-empty' }, h('div', { class: 'alert alert-error', role: 'alert' }, icon('alert'),
        h('span', {}, `Could not load your history: ${err.message} (${err.code}) `),
        h('button', { type: 'button', class: 'btn btn-ghost btn-sm', onclick: () => load(true) }, 'Retry'))));
    } finally {
      loading = false;
      more.disabled = false;
      more.classList.remove('loading');
      grid.setAttribute('aria-busy', 'false');
    }
  }

  await load(true);

  const off = on('generation', (g) => {
    const existing = grid.querySelector(`[data-gen-id="${CSS.escape(g._id)}"]`);
    const matches = !filter || g.status === filter;
    if (existing) {
      if (matches) existing.replaceWith(cardOf(g)); else existing.remove();
    } else if (matches && (g.status === 'pending' || g.createdAt > Date.now() - 60000)) {
      const empty = grid.querySelector('.hgrid-empty');
      if (empty) empty.remove();
      grid.prepend(cardOf(g));
    }
  });
  return off;
}
