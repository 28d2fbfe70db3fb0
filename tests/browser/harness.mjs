// Browser-test harness: starts the real `stylestudio serve` on a free port with a
// temp data dir, launches Debian's Chromium through playwright-core, records
// console/page errors, and saves screenshots under tests/results/browser/.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const RESULTS = path.join(REPO, 'tests/results/browser');
export const FIXTURES = path.join(REPO, 'tests/fixtures');
export const DESKTOP = { width: 1280, height: 800 };
export const PHONE = { width: 390, height: 844 };

fs.mkdirSync(RESULTS, { recursive: true });

/**
 * Start the server. opts: {faults: 'delay_ms=3000', signupTokens: 4, args: [],
 * env: {OPENAI_API_KEY: ...}} (env is added to this process's environment).
 * Returns {url, dataDir, stop(), logs()}.
 */
export async function startServer(opts = {}) {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ss-browser-'));
  let cmd;
  let args;
  const env = { ...process.env, ...(opts.env || {}) };
  if (process.env.SS_DEV_MOCK === '1') {
    // Development only: the Node stand-in in mock-server.mjs (never used by CI).
    console.warn('# SS_DEV_MOCK=1 — running against the mock server, not the real binary');
    cmd = process.execPath;
    args = [path.join(REPO, 'tests/browser/mock-server.mjs'), '0'];
    env.MOCK_SIGNUP_TOKENS = String(opts.signupTokens ?? 10);
  } else {
    cmd = process.env.STYLESTUDIO_BIN || path.join(REPO, 'build/stylestudio');
    if (!fs.existsSync(cmd)) throw new Error(`${cmd} not found — build it first with \`make\``);
    args = ['serve', '--listen', '127.0.0.1:0', '--data', dataDir,
      '--allow-hosts', '127.0.0.1,localhost', '--retry-base-ms', '20'];
    if (opts.signupTokens != null) args.push('--signup-tokens', String(opts.signupTokens));
    if (opts.faults) args.push('--test-faults', opts.faults);
    // Rate limits (SPEC §4) are off unless the test sets its own.
    for (const plan of ['free', 'pro']) {
      const flag = `--rate-${plan}`;
      if (!(opts.args || []).some((a) => a === flag || String(a).startsWith(`${flag}=`))) args.push(flag, '0');
    }
    if (opts.args) args.push(...opts.args);
  }
  const proc = spawn(cmd, args, { cwd: REPO, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const stderr = [];
  proc.stderr.on('data', (d) => { stderr.push(d.toString()); if (stderr.length > 4000) stderr.splice(0, 2000); });
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not print "listening on" within 20 s\n${stderr.join('').slice(-2000)}`)), 20000);
    const rl = readline.createInterface({ input: proc.stdout });
    rl.once('line', (line) => {
      clearTimeout(timer);
      const m = /listening on (http:\/\/\S+)/.exec(line);
      if (m) resolve(m[1].replace(/\/$/, ''));
      else reject(new Error(`unexpected first stdout line: ${line}`));
    });
    proc.once('exit', (code) => { clearTimeout(timer); reject(new Error(`server exited with ${code}\n${stderr.join('').slice(-2000)}`)); });
  });
  proc.stdout.resume();
  return {
    url,
    dataDir,
    logs: () => stderr.join(''),
    async stop() {
      if (proc.exitCode == null) {
        const exited = new Promise((r) => proc.once('exit', r));
        proc.kill('SIGTERM');
        const t = setTimeout(() => proc.kill('SIGKILL'), 8000);
        await exited;
        clearTimeout(t);
      }
      fs.rmSync(dataDir, { recursive: true, force: true });
      const all = stderr.join('');
      if (process.env.SS_SERVER_LOG) fs.appendFileSync(process.env.SS_SERVER_LOG, all);
      const san = /(AddressSanitizer|LeakSanitizer|ThreadSanitizer|runtime error:)/.exec(all);
      if (san) console.log(`server sanitizer report:\n${all.slice(Math.max(0, san.index - 200), san.index + 4000)}`);
      return all;
    },
  };
}

/** Create a user with the CLI (real binary only). Returns {userId, apiKey}. */
export async function cliCreateUser(dataDir, email, tokensN) {
  const bin = process.env.STYLESTUDIO_BIN || path.join(REPO, 'build/stylestudio');
  const out = await new Promise((resolve, reject) => {
    const p = spawn(bin, ['user', 'create', '--data', dataDir, '--email', email, '--tokens', String(tokensN)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let s = '';
    p.stdout.on('data', (d) => { s += d; });
    p.on('exit', (c) => (c === 0 ? resolve(s) : reject(new Error(`user create exited ${c}`))));
  });
  return { userId: /user_id: (\S+)/.exec(out)?.[1], apiKey: /api_key: (\S+)/.exec(out)?.[1] };
}

export async function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
      '--disable-sync', '--no-first-run', '--disable-quic'],
  });
}

/**
 * A browser context + page whose console errors and page errors are recorded.
 * `expectErrors(pattern, fn)` allows console errors matching pattern while fn runs
 * (e.g. Chromium's own "Failed to load resource: … status of 400" for an API
 * error the test provokes on purpose).
 */
export async function openPage(browser, viewport, name) {
  const context = await browser.newContext({
    viewport, deviceScaleFactor: 1, acceptDownloads: true,
    isMobile: viewport.width < 600, hasTouch: viewport.width < 600,
  });
  const page = await context.newPage();
  const errors = [];
  const allowed = [];
  page.on('console', (msg) => {
    if (msg.type() !== 'error') return;
    const text = msg.text();
    const loc = msg.location();
    const full = `${text}${loc && loc.url ? ` (${loc.url})` : ''}`;
    if (allowed.some((re) => re.test(full))) return;
    errors.push(`[${name}] console.error: ${full}`);
  });
  page.on('pageerror', (err) => errors.push(`[${name}] pageerror: ${err.stack || err.message}`));
  page.setDefaultTimeout(15000);
  return {
    context,
    page,
    errors,
    async expectErrors(re, fn) {
      allowed.push(re);
      try { return await fn(); } finally {
        await page.waitForTimeout(150);
        allowed.splice(allowed.indexOf(re), 1);
      }
    },
  };
}

const shots = [];
export async function shot(page, name, { fullPage = false } = {}) {
  const file = path.join(RESULTS, `${name}.png`);
  if (fullPage) {
    // Grow the viewport to the document so sticky/fixed parts render where a
    // person would see them, then restore it.
    const vp = page.viewportSize();
    const height = await page.evaluate(() => Math.max(document.documentElement.scrollHeight, document.body.scrollHeight));
    await page.setViewportSize({ width: vp.width, height: Math.min(Math.max(height, vp.height), 6000) });
    await page.waitForTimeout(120);
    await page.screenshot({ path: file, animations: 'disabled', caret: 'hide' });
    await page.setViewportSize(vp);
  } else {
    await page.screenshot({ path: file, animations: 'disabled', caret: 'hide' });
  }
  shots.push(file);
  return file;
}

export function reportShots() {
  console.log(`browser screenshots (${shots.length} from this file): ${RESULTS}`);
}

export function fixture(name) { return path.join(FIXTURES, name); }
