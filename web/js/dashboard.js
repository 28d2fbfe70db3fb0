// Dashboard: balance, totals, this month, success rate, recent generations, token activity.
import { h, icon, clear, tokens, fmtAgo, statusBadge, emptyState, skeleton } from './dom.js';
import { get } from './api.js';
import { session, on } from './session.js';
import { buyTokensDialog } from './genpanel.js';

const STYLE_NAME = { realistic: 'Realistic', artistic: 'Artistic', minimal: 'Minimal' };

export function thumbOf(g) {
  return (g.resultImages && g.resultImages[0]) || (g.productImages && g.productImages[0]) || null;
}

export function genTitle(g) {
  const p = g.parameters || {};
  return `${STYLE_NAME[p.style] || p.style || 'Generation'} · ${p.aspectRatio || ''}`.replace(/ · $/, '');
}

export function genRow(g) {
  const src = thumbOf(g);
  const p = g.parameters || {};
  return h('li', {},
    h('a', { class: 'gen-row', href: `#/history/${g._id}`, 'data-gen-id': g._id },
      h('span', { class: 'gen-row-thumb' }, src ? h('img', { src, alt: '', loading: 'lazy' }) : icon('image')),
      h('span', { class: 'gen-row-text' },
        h('strong', {}, genTitle(g)),
        h('span', { class: 'muted small' }, `${p.model || ''} · ${fmtAgo(g.createdAt)}`)),
      statusBadge(g.status)));
}

function greeting() {
  const hr = new Date().getHours();
  return hr < 5 ? 'Good evening' : hr < 12 ? 'Good morning' : hr < 18 ? 'Good afternoon' : 'Good evening';
}

export async function render(container) {
  const unsubs = [];
  const firstName = ((session.user && session.user.name) || '').split(/\s+/)[0];
  const kpis = h('div', { class: 'kpis' }, skeleton(4, 'skel-kpi'));
  let recent = h('ul', { class: 'gen-list', role: 'list' }, skeleton(4, 'skel-row'));
  const ledger = h('ul', { class: 'ledger', role: 'list' }, skeleton(4, 'skel-row'));
  container.append(h('div', { class: 'page' },
    h('div', { class: 'page-head' },
      h('div', {}, h('h1', {}, `${greeting()}${firstName ? `, ${firstName}` : ''}`), h('p', { class: 'page-sub' }, 'Here’s how your studio is doing.')),
      h('a', { class: 'btn btn-primary', href: '#/studio' }, icon('sparkles'), 'New generation')),
    kpis,
    h('div', { class: 'dash-grid' },
      h('section', { class: 'card', 'aria-labelledby': 'recent-t' },
        h('div', { class: 'card-head' }, h('h2', { class: 'card-title', id: 'recent-t' }, 'Recent generations'), h('a', { class: 'link small', href: '#/history' }, 'View all')),
        recent),
      h('section', { class: 'card', 'aria-labelledby': 'ledger-t' },
        h('div', { class: 'card-head' }, h('h2', { class: 'card-title', id: 'ledger-t' }, 'Token activity')),
        ledger))));

  function kpi(label, value, sub, extra = {}) {
    return h('div', { class: `card kpi ${extra.cls || ''}` },
      h('div', { class: 'kpi-label' }, extra.icon ? icon(extra.icon) : null, label),
      h('div', { class: 'kpi-value', ...(extra.attrs || {}) }, value),
      sub ? h('div', { class: 'kpi-sub' }, sub) : null,
      extra.after || null);
  }

  async function loadStats() {
    const me = await get('/api/me');
    const st = me.stats || {};
    const u = me.user || {};
    const bal = typeof me.tokenBalance === 'number' ? me.tokenBalance : u.tokenBalance;
    const rate = typeof st.successRate === 'number' ? Math.round(st.successRate * 100) : null;
    const month = new Date().toLocaleString(undefined, { month: 'long' });
    const rateBar = h('div', { class: 'meter', 'aria-hidden': 'true' }, h('div', { class: 'meter-fill', style: { width: `${rate ?? 0}%` } }));
    clear(kpis).append(
      kpi('Token balance', h('span', { 'data-balance': '' }, String(bal ?? '—')), `${tokens(u.totalTokensUsed ?? 0)} used all time`, {
        cls: 'kpi-accent', icon: 'coin',
        after: h('button', { type: 'button', class: 'btn btn-light btn-sm kpi-btn', onclick: buyTokensDialog }, 'Get more tokens'),
      }),
      kpi('Generations', String(st.totalGenerations ?? 0), `${st.completed ?? 0} completed · ${st.failed ?? 0} failed`, { icon: 'image', attrs: { 'data-kpi': 'total' } }),
      kpi('This month', String(st.thisMonth ?? 0), `generations in ${month}`, { icon: 'clock', attrs: { 'data-kpi': 'month' } }),
      kpi('Success rate', rate == null || !st.totalGenerations ? '—' : `${rate}%`, 'of finished generations', { icon: 'check', attrs: { 'data-kpi': 'rate' }, after: rateBar }),
    );
  }

  async function loadRecent() {
    const data = await get('/api/generations?limit=6');
    clear(recent);
    if (!data.items.length) {
      recent.replaceWith(recent = h('div', {}, emptyState({ title: 'No generations yet', text: 'Your first styled shot is one upload away.', action: h('a', { class: 'btn btn-primary btn-sm', href: '#/studio' }, 'Open the studio') })));
      return;
    }
    if (recent.tagName !== 'UL') { const ul = h('ul', { class: 'gen-list', role: 'list' }); recent.replaceWith(ul); recent = ul; }
    data.items.forEach((g) => recent.append(genRow(g)));
  }

  const KIND = { grant: 'Free tokens', purchase: 'Purchase', charge: 'Generation', refund: 'Refund', adjustment: 'Adjustment' };
  async function loadLedger() {
    const data = await get('/api/tokens/transactions?limit=6');
    clear(ledger);
    if (!data.items.length) { ledger.append(h('li', { class: 'muted small' }, 'No token activity yet.')); return; }
    for (const t of data.items) {
      ledger.append(h('li', { class: 'ledger-row' },
        h('span', { class: `ledger-kind k-${t.kind}` }, KIND[t.kind] || t.kind),
        h('span', { class: 'muted small ledger-when' }, t.generationId ? h('a', { href: `#/history/${t.generationId}` }, fmtAgo(t.createdAt)) : fmtAgo(t.createdAt)),
        h('strong', { class: `ledger-amt ${t.amount < 0 ? 'neg' : 'pos'}` }, `${t.amount > 0 ? '+' : ''}${t.amount}`)));
    }
  }

  const fail = (el, what) => (err) => {
    clear(el).append(h('p', { class: 'alert alert-error small', role: 'alert' }, icon('alert'), `Could not load ${what}: ${err.message} (${err.code})`));
  };
  await Promise.all([
    loadStats().catch(fail(kpis, 'your stats')),
    loadRecent().catch(fail(recent, 'recent generations')),
    loadLedger().catch(fail(ledger, 'token activity')),
  ]);

  let timer = null;
  const refresh = () => {
    clearTimeout(timer);
    timer = setTimeout(() => { loadStats().catch(() => {}); loadRecent().catch(() => {}); loadLedger().catch(() => {}); }, 400);
  };
  unsubs.push(on('generation', (g) => { if (['completed', 'failed', 'cancelled', 'pending'].includes(g.status)) refresh(); }));
  unsubs.push(on('balance', () => refresh()));
  return () => { clearTimeout(timer); unsubs.forEach((u) => u()); };
}
