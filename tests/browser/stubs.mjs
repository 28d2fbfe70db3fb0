// The one state the real server never produces — a failed record without an
// errorCode, or with a code this studio does not know yet — laid over a real
// record with Playwright's page.route() (forceErrorCode). Everything else the
// browser tests see comes from the real `stylestudio serve`.
//
// Why not tests/browser/mock-server.mjs: it replaces the whole server (a Node
// re-implementation for UI work without a build), so a test against it would
// check the studio against the mock, not against stylestudio.

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
