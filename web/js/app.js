// Style Studio web app: boot, app shell and a small hash router.
import { h, icon, clear, toast, tokens } from './dom.js';
import { onUnauthorized } from './api.js';
import { session, on, loadMe, signOut, forget, maybeSignedIn, returning } from './session.js';
import * as auth from './auth.js';
import * as welcome from './welcome.js';
import * as studio from './studio.js';
import * as dashboard from './dashboard.js';
import * as history from './history.js';
import * as detail from './detail.js';
import * as keys from './keys.js';

const ROUTES = [
  { re: /^\/welcome$/, view: welcome.render, title: 'Product shots without the studio', public: true },
  { re: /^\/signin$/, view: auth.signin, title: 'Sign in', public: true },
  { re: /^\/signup$/, view: auth.signup, title: 'Create account', public: true },
  { re: /^\/studio$/, view: studio.render, title: 'Studio', nav: 'studio' },
  { re: /^\/dashboard$/, view: dashboard.render, title: 'Dashboard', nav: 'dashboard' },
  { re: /^\/history$/, view: history.render, title: 'History', nav: 'history' },
  { re: /^\/history\/([A-Za-z0-9_-]+)$/, view: detail.render, title: 'Generation', nav: 'history' },
  { re: /^\/account$/, view: keys.render, title: 'Account', nav: 'account' },
  { re: /^\/keys$/, view: keys.render, title: 'Account', nav: 'account' },
];

const NAV = [
  { id: 'studio', href: '#/studio', label: 'Studio', icon: 'sparkles' },
  { id: 'dashboard', href: '#/dashboard', label: 'Dashboard', icon: 'grid' },
  { id: 'history', href: '#/history', label: 'History', icon: 'clock' },
  { id: 'account', href: '#/account', label: 'Account', icon: 'user' },
];

const app = document.getElementById('app');
let shell = null; // {root, main, navLinks}
let cleanup = null;
let renderSeq = 0;
let booted = false;

export function navigate(path) {
  if (location.hash === '#' + path) route();
  else location.hash = '#' + path;
}

function currentPath() {
  const hash = location.hash || '';
  return hash.startsWith('#/') ? hash.slice(1).split('?')[0] : '';
}

function logo(cls = '') {
  return h('span', { class: `logo ${cls}`, 'aria-hidden': 'true' },
    h('img', { src: '/favicon.svg', alt: '', width: 28, height: 28 }));
}

function planName(u) { return u && u.plan === 'pro' ? 'Pro' : 'Free'; }
function planBadge(u) {
  return h('span', { class: `plan-badge${u && u.plan === 'pro' ? ' is-pro' : ''}`, 'data-user-plan': '', title: 'Your plan', hidden: !(u && u.plan) }, planName(u));
}

function balanceChip(extra = '') {
  return h('a', { class: `balance-chip ${extra}`, href: '#/dashboard', title: 'Token balance' },
    icon('coin'), h('span', { 'data-balance': '' }, session.balance ?? '—'),
    h('span', { class: 'balance-unit', 'data-balance-unit': '' }, session.balance === 1 ? 'token' : 'tokens'),
    planBadge(session.user));
}

function initials(u) {
  const src = (u && (u.name || u.email)) || '?';
  return src.split(/[\s@.]+/).filter(Boolean).slice(0, 2).map((s) => s[0].toUpperCase()).join('');
}

function buildShell() {
  const main = h('main', { id: 'main', class: 'main', tabindex: '-1' });
  const navLinks = {};
  const closeNav = () => { root.classList.remove('nav-open'); menuBtn.setAttribute('aria-expanded', 'false'); };
  const nav = h('nav', { class: 'nav', 'aria-label': 'Main' },
    NAV.map((n) => (navLinks[n.id] = h('a', { href: n.href, class: 'nav-link', onclick: closeNav }, icon(n.icon), h('span', {}, n.label)))));
  const u = session.user || {};
  const userBox = h('div', { class: 'user-box' },
    h('span', { class: 'avatar', 'aria-hidden': 'true', 'data-initials': '' }, initials(u)),
    h('div', { class: 'user-meta' },
      h('strong', { 'data-user-name': '' }, u.name || 'Account'),
      h('span', { 'data-user-email': '' }, u.email || '')),
    h('button', { type: 'button', class: 'icon-btn', title: 'Sign out', 'aria-label': 'Sign out', 'data-signout': '', onclick: doSignOut }, icon('logout')));
  const sidebar = h('aside', { class: 'sidebar', id: 'sidebar' },
    h('a', { class: 'brand', href: '#/studio' }, logo(), h('span', {}, 'Style Studio')),
    nav,
    h('div', { class: 'sidebar-foot' },
      h('a', { class: 'side-balance', href: '#/dashboard', onclick: closeNav },
        h('span', { class: 'side-balance-icon' }, icon('coin')),
        h('span', { class: 'side-balance-text' },
          h('span', { class: 'side-balance-label' }, 'Token balance', planBadge(session.user)),
          h('strong', {}, h('span', { 'data-balance': '' }, session.balance ?? '—'), ' ', h('span', { 'data-balance-unit': '' }, session.balance === 1 ? 'token' : 'tokens')))),
      userBox));
  const menuBtn = h('button', {
    type: 'button', class: 'icon-btn menu-btn', 'aria-label': 'Open menu', 'aria-controls': 'sidebar', 'aria-expanded': 'false',
    onclick: () => {
      const open = !root.classList.contains('nav-open');
      root.classList.toggle('nav-open', open);
      menuBtn.setAttribute('aria-expanded', String(open));
      if (open) navLinks.studio.focus();
    },
  }, icon('menu'));
  const topbar = h('header', { class: 'topbar' },
    h('a', { class: 'brand', href: '#/studio' }, logo(), h('span', {}, 'Style Studio')),
    h('div', { class: 'topbar-right' }, balanceChip(), menuBtn));
  const scrim = h('div', { class: 'scrim', 'aria-hidden': 'true', onclick: closeNav });
  const root = h('div', { class: 'shell' }, topbar, sidebar, scrim, main);
  root.addEventListener('keydown', (e) => { if (e.key === 'Escape' && root.classList.contains('nav-open')) { closeNav(); menuBtn.focus(); } });
  return { root, main, navLinks };
}

function updateBalance(n) {
  document.querySelectorAll('[data-balance-unit]').forEach((el) => { el.textContent = n === 1 ? 'token' : 'tokens'; });
  document.querySelectorAll('[data-balance]').forEach((el) => {
    if (el.textContent === String(n)) return;
    el.textContent = n ?? '—';
    const chip = el.closest('.balance-chip, .side-balance');
    if (chip) { chip.classList.remove('bump'); void chip.offsetWidth; chip.classList.add('bump'); }
  });
}

async function doSignOut() {
  try { await signOut(); } catch { /* the session is gone locally either way */ }
  toast('Signed out. See you soon!', 'success');
  navigate('/signin');
}

async function route() {
  const seq = ++renderSeq;
  const path = currentPath();
  const signedOutHome = returning() ? '/signin' : '/welcome';
  if (!path) { navigate(session.user ? '/studio' : signedOutHome); return; }
  let match = null;
  let r = null;
  for (const cand of ROUTES) { match = path.match(cand.re); if (match) { r = cand; break; } }
  if (!r) { navigate(session.user ? '/studio' : signedOutHome); return; }
  if (!r.public && !session.user) { sessionStorage.setItem('ss.after', path); navigate(signedOutHome); return; }
  if (r.public && session.user) { navigate('/studio'); return; }

  if (cleanup) { try { cleanup(); } catch (e) { console.warn(e); } cleanup = null; }
  document.title = `${r.title} · Style Studio`;
  let container;
  if (r.public) {
    shell = null;
    clear(app);
    app.className = 'public';
    container = h('main', { id: 'main', class: 'auth-main', tabindex: '-1' });
    app.append(container);
  } else {
    if (!shell) { clear(app); app.className = ''; shell = buildShell(); app.append(shell.root); }
    container = shell.main;
    clear(container);
    for (const [id, a] of Object.entries(shell.navLinks)) {
      if (id === r.nav) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
    }
  }
  window.scrollTo(0, 0);
  try {
    const c = await r.view(container, match.slice(1), { navigate, afterSignIn });
    if (seq !== renderSeq) { if (typeof c === 'function') c(); return; }
    cleanup = typeof c === 'function' ? c : null;
  } catch (e) {
    if (seq !== renderSeq) return;
    console.warn(e);
    clear(container).append(h('div', { class: 'page' }, h('div', { class: 'alert alert-error', role: 'alert' },
      icon('alert'), h('div', {}, h('strong', {}, 'Something went wrong. '), e.message || String(e)))));
  }
  // Move focus to the new page's heading (not on first load, not on auth pages,
  // which focus their first field) so keyboard and screen-reader users land on it.
  const heading = container.querySelector('h1');
  if (heading && !r.public && booted) {
    heading.setAttribute('tabindex', '-1');
    const a = document.activeElement;
    if (!a || a === document.body || !container.contains(a)) heading.focus({ preventScroll: true });
  }
  booted = true;
}

function skipLink() {
  const a = h('a', { class: 'skip-link', href: '#/main' }, 'Skip to content');
  a.addEventListener('click', (e) => {
    e.preventDefault();
    const m = document.getElementById('main');
    if (m) m.focus();
  });
  return a;
}

async function boot() {
  document.body.prepend(skipLink());
  on('balance', updateBalance);
  on('user', (u) => {
    if (!u) return;
    document.querySelectorAll('[data-user-name]').forEach((el) => { el.textContent = u.name || 'Account'; });
    document.querySelectorAll('[data-user-email]').forEach((el) => { el.textContent = u.email || ''; });
    document.querySelectorAll('[data-initials]').forEach((el) => { el.textContent = initials(u); });
    document.querySelectorAll('[data-user-plan]').forEach((el) => {
      el.textContent = planName(u);
      el.hidden = !u.plan;
      el.classList.toggle('is-pro', u.plan === 'pro');
    });
  });
  onUnauthorized(() => {
    if (!session.user) return;
    forget();
    shell = null;
    toast('Your session ended. Please sign in again.', 'error');
    navigate('/signin');
  });
  if (maybeSignedIn()) {
    try { await loadMe(); } catch (e) { if (e.status === 401) forget(); else console.warn(e); }
  }
  window.addEventListener('hashchange', route);
  app.removeAttribute('aria-busy');
  await route();
}

export function afterSignIn() {
  shell = null;
  const to = sessionStorage.getItem('ss.after');
  sessionStorage.removeItem('ss.after');
  navigate(to && to !== '/signin' && to !== '/signup' && to !== '/welcome' ? to : '/studio');
}

export function balanceText() { return session.balance == null ? '—' : tokens(session.balance); }

boot();
