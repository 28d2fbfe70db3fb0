// Signed-in user, live balance and the account-wide event stream.
import { get, post, parseEvent } from './api.js';

const HINT = 'ss.signedIn';
const RETURNING = 'ss.returning';
const state = { user: null, balance: null, stats: null };
const subs = { balance: new Set(), generation: new Set(), user: new Set() };
let es = null;

export function on(kind, fn) { subs[kind].add(fn); return () => subs[kind].delete(fn); }
function emit(kind, v) { subs[kind].forEach((fn) => { try { fn(v); } catch (e) { console.warn(e); } }); }

export const session = state;

/** True when this browser signed in before (the cookie itself is HttpOnly). */
export function maybeSignedIn() {
  try { return localStorage.getItem(HINT) === '1'; } catch { return false; }
}
function setHint(on) {
  try {
    if (on) { localStorage.setItem(HINT, '1'); localStorage.setItem(RETURNING, '1'); } else localStorage.removeItem(HINT);
  } catch { /* private mode */ }
}

/** True when someone has signed in on this browser before (kept after sign-out):
 * they get the sign-in page; a first-time visitor gets the welcome page. */
export function returning() {
  try { return localStorage.getItem(RETURNING) === '1' || localStorage.getItem(HINT) === '1'; } catch { return false; }
}

export function setBalance(n) {
  if (typeof n !== 'number' || n === state.balance) return;
  state.balance = n;
  if (state.user) state.user.tokenBalance = n;
  emit('balance', n);
}

function adopt(data) {
  state.user = data.user || state.user;
  if (data.stats) state.stats = data.stats;
  const bal = typeof data.tokenBalance === 'number' ? data.tokenBalance : state.user && state.user.tokenBalance;
  state.balance = null;
  setHint(true);
  emit('user', state.user);
  setBalance(bal);
  connect();
}

export async function loadMe() {
  const data = await get('/api/me');
  adopt(data);
  return data;
}

export async function signIn(email, password) {
  const data = await post('/api/auth/login', { email, password });
  adopt(data);
  return data;
}

export async function signUp(name, email, password) {
  const data = await post('/api/auth/signup', { name, email, password });
  adopt(data);
  return data;
}

export async function signOut() {
  try { await post('/api/auth/logout', {}); } finally { forget(); }
}

/** Drop local state (after sign-out or an expired session). */
export function forget() {
  disconnect();
  setHint(false);
  state.user = null;
  state.balance = null;
  state.stats = null;
  emit('user', null);
}

function connect() {
  if (es) return;
  es = new EventSource('/api/events');
  es.addEventListener('balance', (e) => {
    const d = parseEvent(e);
    if (d && typeof d.tokenBalance === 'number') setBalance(d.tokenBalance);
  });
  es.addEventListener('generation', (e) => {
    const d = parseEvent(e);
    if (d && d._id) emit('generation', d);
  });
}

function disconnect() {
  if (es) { es.close(); es = null; }
}
