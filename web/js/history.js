// History: every generation, status filter, cursor pagination, live updates;
// Select mode: several at once, downloaded as one ZIP or deleted together.
import { h, icon, clear, toast, fmtAgo, statusBadge, emptyState, skeleton, confirmDialog, plural, STATUS_LABEL, TERMINAL } from './dom.js';
import { get, del } from './api.js';
import { downloadZip } from './zip.js';
import { failureView, retryGeneration } from './failure.js';
import { editSettings } from './studio.js';
import { errorView, describeError, actionsFor } from './genpanel.js';
import { on } from './session.js';
import { thumbOf, genTitle } from './dashboard.js';

const FILTERS = ['', 'completed', 'processing', 'pending', 'failed', 'cancelled'];

function card(g, onAction, sel) {
  const src = thumbOf(g);
  const p = g.parameters || {};
  const n = (g.resultImages || []).length;
  const check = sel && sel.on ? h('label', { class: 'hcard-check', title: 'Select' },
    h('input', { type: 'checkbox', 'data-select': g._id, 'aria-label': `Select ${genTitle(g)}, ${fmtAgo(g.createdAt)}`, checked: sel.has(g._id), onchange: (e) => sel.toggle(g, e.currentTarget.checked) })) : null;
  return h('li', { class: `hcard${sel && sel.has(g._id) ? ' is-selected' : ''}`, 'data-gen-id': g._id, 'data-status': g.status },
    check,
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
  const shown = new Map(); // id → record of the cards on the page
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
  // Selection (Select mode): id → record.
  const selected = new Map();
  const sel = {
    on: false,
    has: (id) => selected.has(id),
    toggle: (g, v) => {
      if (v) selected.set(g._id, g); else selected.delete(g._id);
      const li = grid.querySelector(`[data-gen-id="${CSS.escape(g._id)}"]`);
      if (li) li.classList.toggle('is-selected', v);
      renderBar();
    },
  };
  const cardOf = (g) => card(g, onAction, sel);
  const selCount = h('strong', { 'data-selected-count': '' });
  const zipBtn = h('button', { type: 'button', class: 'btn btn-ghost btn-sm', 'data-bulk': 'zip', onclick: bulkZip }, icon('download'), 'Download ZIP');
  const delBtn = h('button', { type: 'button', class: 'btn btn-danger-ghost btn-sm', 'data-bulk': 'delete', onclick: bulkDelete }, icon('trash'), 'Delete');
  const allBtn = h('button', { type: 'button', class: 'btn btn-ghost btn-sm', 'data-bulk': 'all', onclick: selectAllShown }, 'Select all shown');
  const bar = h('div', { class: 'select-bar', role: 'region', 'aria-label': 'Selected generations', hidden: true },
    h('span', { class: 'select-count' }, selCount),
    h('div', { class: 'select-actions' }, allBtn, zipBtn, delBtn,
      h('button', { type: 'button', class: 'btn btn-primary btn-sm', 'data-bulk': 'done', onclick: () => setSelecting(false) }, 'Done')));
  const selectBtn = h('button', { type: 'button', class: 'btn btn-ghost', 'data-select-mode': '', 'aria-pressed': 'false', onclick: () => setSelecting(!sel.on) }, icon('check'), 'Select');

  function renderBar() {
    const list = [...selected.values()];
    const images = list.reduce((n, g) => n + (g.resultImages || []).length, 0);
    selCount.textContent = list.length ? `${plural(list.length, 'generation')} selected` : 'Select generations to download or delete';
    zipBtn.disabled = images === 0;
    zipBtn.title = images ? `${plural(images, 'image')}` : 'None of the selected has results';
    delBtn.disabled = list.length === 0;
  }
  function setSelecting(on) {
    sel.on = on;
    if (!on) selected.clear();
    selectBtn.setAttribute('aria-pressed', String(on));
    bar.hidden = !on;
    container.querySelector('.page').classList.toggle('is-selecting', on);
    grid.querySelectorAll('.hcard').forEach((li) => {
      const g = shown.get(li.dataset.genId);
      if (g) li.replaceWith(cardOf(g));
    });
    renderBar();
  }
  function selectAllShown() {
    for (const g of shown.values()) selected.set(g._id, g);
    grid.querySelectorAll('[data-select]').forEach((c) => { c.checked = true; c.closest('.hcard').classList.add('is-selected'); });
    renderBar();
  }
  async function bulkZip() {
    const groups = [...selected.values()].filter((g) => (g.resultImages || []).length).map((g) => ({ id: g._id, images: g.resultImages }));
    zipBtn.disabled = true;
    try {
      const name = `style-studio-${new Date().toISOString().slice(0, 10)}.zip`;
      const n = await downloadZip(groups, name);
      toast(`Saved ${plural(n, 'image')} as ${name}`, 'success');
    } catch (e) {
      toast(`Could not make the ZIP: ${e.message}`, 'error');
    } finally { renderBar(); }
  }
  async function bulkDelete() {
    const list = [...selected.values()];
    const done = list.filter((g) => TERMINAL.has(g.status));
    const running = list.length - done.length;
    if (!done.length) { toast('Only finished generations can be deleted — cancel the others first.', 'info'); return; }
    const ok = await confirmDialog({
      title: `Delete ${plural(done.length, 'generation')}?`,
      body: h('p', {}, `Their result images will be removed for good. Your token history is kept.${running ? ` ${plural(running, 'generation')} still running or pending will be left alone.` : ''}`),
      confirm: 'Delete', danger: true,
    });
    if (!ok) return;
    delBtn.disabled = true;
    let gone = 0;
    const failed = [];
    for (const g of done) {
      try {
        await del(`/api/generations/${encodeURIComponent(g._id)}`);
        gone++;
        selected.delete(g._id);
        shown.delete(g._id);
        const li = grid.querySelector(`[data-gen-id="${CSS.escape(g._id)}"]`);
        if (li) li.remove();
      } catch (err) { failed.push(err); }
    }
    if (gone) toast(`Deleted ${plural(gone, 'generation')}`, 'success');
    if (failed.length) toast(`${plural(failed.length, 'generation')} could not be deleted: ${failed[0].message}`, 'error');
    renderBar();
  }
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
      h('div', { class: 'head-actions' }, selectBtn, h('a', { class: 'btn btn-primary', href: '#/studio' }, icon('sparkles'), 'New generation'))),
    chips, actionErr, grid, h('div', { class: 'more-row' }, more, status), bar));

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
      if (reset) { clear(grid); shown.clear(); }
      data.items.forEach((g) => { shown.set(g._id, g); grid.append(cardOf(g)); });
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
    if (selected.has(g._id)) selected.set(g._id, g);
    if (existing) {
      if (matches) { shown.set(g._id, g); existing.replaceWith(cardOf(g)); } else { shown.delete(g._id); selected.delete(g._id); existing.remove(); }
    } else if (matches && (g.status === 'pending' || g.createdAt > Date.now() - 60000)) {
      const empty = grid.querySelector('.hgrid-empty');
      if (empty) empty.remove();
      shown.set(g._id, g);
      grid.prepend(cardOf(g));
    }
    if (sel.on) renderBar();
  });
  return off;
}
