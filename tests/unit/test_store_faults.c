/*
 * test_store_faults — disk full and write errors under the SQLite store
 * (issue 11 §2). The seam is SQLite's own: a VFS registered as the default
 * before the store opens its connections, whose file methods forward to the
 * real "unix" VFS except that, once armed, the n-th and every later write,
 * sync or truncate fails with SQLITE_FULL / SQLITE_IOERR_FSYNC — a disk
 * that fills up mid-commit. Nothing of it is in the shipped binary: the
 * test replaces function pointers (beanstalkd-style), the store is
 * unchanged.
 *
 * For each write verb (create with and without start and Idempotency-Key,
 * start, claim, progress, complete, permanent failure, cancel, credit) the
 * test sweeps the failure point n = 0, 1, 2, ... until the verb succeeds:
 * every failed attempt must return an error and leave every table exactly
 * as it was (compared row by row through a separate, unfaulted connection),
 * also after the store is closed and opened again; and the store must work
 * at once when the disk has room again. At the service level a create that
 * hits a full disk answers 500 INTERNAL_SERVER_ERROR with a message,
 * charges nothing and keeps no Idempotency-Key.
 */
#include <criterion/criterion.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "gen_service.h"
#include "gen_state.h"
#include "ids.h"
#include "log.h"
#include "media.h"
#include "net.h"
#include "store.h"
#include "util.h"

/* ---- the faulty VFS ---- */

static sqlite3_vfs *real_vfs;
static sqlite3_vfs faulty_vfs;
static atomic_int budget = -1; /* writes left before the disk is full; -1: unlimited */
static atomic_int failures;    /* writes refused since armed */

typedef struct faulty_file {
    sqlite3_file base;
    sqlite3_file *real; /* follows this struct in the same allocation */
} faulty_file;

static bool disk_full(void)
{
    if (atomic_load(&budget) < 0) return false;
    if (atomic_fetch_sub(&budget, 1) > 0) return false;
    atomic_store(&budget, 0); /* stays full */
    atomic_fetch_add(&failures, 1);
    return true;
}

static sqlite3_file *real_of(sqlite3_file *f)
{
    return ((faulty_file *)f)->real;
}

static int f_close(sqlite3_file *f)
{
    return real_of(f)->pMethods->xClose(real_of(f));
}
static int f_read(sqlite3_file *f, void *p, int n, sqlite3_int64 off)
{
    return real_of(f)->pMethods->xRead(real_of(f), p, n, off);
}
static int f_write(sqlite3_file *f, const void *p, int n, sqlite3_int64 off)
{
    if (disk_full()) return SQLITE_FULL;
    return real_of(f)->pMethods->xWrite(real_of(f), p, n, off);
}
static int f_truncate(sqlite3_file *f, sqlite3_int64 size)
{
    if (disk_full()) return SQLITE_IOERR_TRUNCATE;
    return real_of(f)->pMethods->xTruncate(real_of(f), size);
}
static int f_sync(sqlite3_file *f, int flags)
{
    if (disk_full()) return SQLITE_IOERR_FSYNC;
    return real_of(f)->pMethods->xSync(real_of(f), flags);
}
static int f_size(sqlite3_file *f, sqlite3_int64 *size)
{
    return real_of(f)->pMethods->xFileSize(real_of(f), size);
}
static int f_lock(sqlite3_file *f, int l)
{
    return real_of(f)->pMethods->xLock(real_of(f), l);
}
static int f_unlock(sqlite3_file *f, int l)
{
    return real_of(f)->pMethods->xUnlock(real_of(f), l);
}
static int f_reserved(sqlite3_file *f, int *out)
{
    return real_of(f)->pMethods->xCheckReservedLock(real_of(f), out);
}
static int f_control(sqlite3_file *f, int op, void *arg)
{
    return real_of(f)->pMethods->xFileControl(real_of(f), op, arg);
}
static int f_sector(sqlite3_file *f)
{
    return real_of(f)->pMethods->xSectorSize(real_of(f));
}
static int f_device(sqlite3_file *f)
{
    return real_of(f)->pMethods->xDeviceCharacteristics(real_of(f));
}
static int f_shm_map(sqlite3_file *f, int pg, int sz, int extend, void volatile **pp)
{
    return real_of(f)->pMethods->xShmMap(real_of(f), pg, sz, extend, pp);
}
static int f_shm_lock(sqlite3_file *f, int off, int n, int flags)
{
    return real_of(f)->pMethods->xShmLock(real_of(f), off, n, flags);
}
static void f_shm_barrier(sqlite3_file *f)
{
    real_of(f)->pMethods->xShmBarrier(real_of(f));
}
static int f_shm_unmap(sqlite3_file *f, int del)
{
    return real_of(f)->pMethods->xShmUnmap(real_of(f), del);
}

/* Version 2: no memory-mapped I/O (xFetch), so every write goes through
 * f_write. */
static const sqlite3_io_methods faulty_methods = {
    .iVersion = 2,
    .xClose = f_close,
    .xRead = f_read,
    .xWrite = f_write,
    .xTruncate = f_truncate,
    .xSync = f_sync,
    .xFileSize = f_size,
    .xLock = f_lock,
    .xUnlock = f_unlock,
    .xCheckReservedLock = f_reserved,
    .xFileControl = f_control,
    .xSectorSize = f_sector,
    .xDeviceCharacteristics = f_device,
    .xShmMap = f_shm_map,
    .xShmLock = f_shm_lock,
    .xShmBarrier = f_shm_barrier,
    .xShmUnmap = f_shm_unmap,
};

static int v_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *f, int flags, int *out_flags)
{
    (void)vfs;
    faulty_file *ff = (faulty_file *)f;
    ff->real = (sqlite3_file *)(ff + 1);
    int rc = real_vfs->xOpen(real_vfs, name, ff->real, flags, out_flags);
    ff->base.pMethods = ff->real->pMethods ? &faulty_methods : NULL;
    return rc;
}
static int v_delete(sqlite3_vfs *vfs, const char *name, int sync)
{
    (void)vfs;
    return real_vfs->xDelete(real_vfs, name, sync);
}
static int v_access(sqlite3_vfs *vfs, const char *name, int flags, int *out)
{
    (void)vfs;
    return real_vfs->xAccess(real_vfs, name, flags, out);
}
static int v_full(sqlite3_vfs *vfs, const char *name, int n, char *out)
{
    (void)vfs;
    return real_vfs->xFullPathname(real_vfs, name, n, out);
}
static int v_random(sqlite3_vfs *vfs, int n, char *out)
{
    (void)vfs;
    return real_vfs->xRandomness(real_vfs, n, out);
}
static int v_sleep(sqlite3_vfs *vfs, int us)
{
    (void)vfs;
    return real_vfs->xSleep(real_vfs, us);
}
static int v_time(sqlite3_vfs *vfs, double *out)
{
    (void)vfs;
    return real_vfs->xCurrentTime(real_vfs, out);
}
static int v_error(sqlite3_vfs *vfs, int n, char *out)
{
    (void)vfs;
    return real_vfs->xGetLastError(real_vfs, n, out);
}
static int v_time64(sqlite3_vfs *vfs, sqlite3_int64 *out)
{
    (void)vfs;
    return real_vfs->xCurrentTimeInt64(real_vfs, out);
}

static void faulty_register(void)
{
    real_vfs = sqlite3_vfs_find("unix");
    cr_assert_not_null(real_vfs);
    faulty_vfs = (sqlite3_vfs){
        .iVersion = 2,
        .szOsFile = (int)sizeof(faulty_file) + real_vfs->szOsFile,
        .mxPathname = real_vfs->mxPathname,
        .zName = "faulty",
        .xOpen = v_open,
        .xDelete = v_delete,
        .xAccess = v_access,
        .xFullPathname = v_full,
        .xDlOpen = NULL,
        .xRandomness = v_random,
        .xSleep = v_sleep,
        .xCurrentTime = v_time,
        .xGetLastError = v_error,
        .xCurrentTimeInt64 = v_time64,
    };
    cr_assert_eq(sqlite3_vfs_register(&faulty_vfs, 1), SQLITE_OK);
}

/* The disk fills up after n more writes (0: the next write fails). */
static void arm(int n)
{
    atomic_store(&failures, 0);
    atomic_store(&budget, n);
}
static int disarm(void)
{
    atomic_store(&budget, -1);
    return atomic_load(&failures);
}

/* ---- fixture ---- */

#define PUBLIC_URL "http://127.0.0.1:9"

static char tmpdir[128], dbfile[160];
static store_t *S;
static user_record alice;
static char *product_url;

static void open_store(void)
{
    char *url = xasprintf("sqlite:%s", dbfile), *err = NULL;
    cr_assert_eq(store_open(url, &(store_options){.codec = &gen_record_codec}, &S, &err), STORE_OK,
                 "store_open: %s", err ? err : "?");
    free(url);
    gen_service_init(S);
}

static void setup(void)
{
    cr_assert_eq(ids_init(), 0);
    if (!getenv("SS_TEST_LOG")) log_min_level = LOG_ERROR + 1; /* the refused writes log errors */
    faulty_register();
    snprintf(tmpdir, sizeof tmpdir, "/tmp/ss-faults-XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
    snprintf(dbfile, sizeof dbfile, "%s/test.db", tmpdir);
    cr_assert_eq(net_start(""), 0);
    cr_assert_eq(media_init(tmpdir, PUBLIC_URL), 0);
    open_store();
    cr_assert_eq(auth_user_create(S, "alice@example.com", "Alice", "user", NULL, 100, &alice),
                 STORE_OK);
    const char *fx = getenv("SS_FIXTURES");
    char *path = xasprintf("%s/product.jpg", fx && *fx ? fx : "tests/fixtures");
    buf b = {0};
    cr_assert_eq(util_read_file(path, MEDIA_MAX_BYTES, &b), 0, "cannot read %s", path);
    provider_image info = {0};
    char *err = NULL;
    cr_assert_eq(media_save_upload(b.data, b.len, &info, &product_url, &err), 0);
    buf_free(&b);
    free(path);
}

static void teardown(void)
{
    disarm();
    store_close(S);
    media_shutdown();
    net_stop();
    free(product_url);
    char *cmd = xasprintf("rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    free(cmd);
}

TestSuite(store_faults, .init = setup, .fini = teardown, .timeout = 120);

/* ---- helpers ---- */

static int row_cb(void *ctx, int n, char **vals, char **cols)
{
    buf *b = ctx;
    for (int i = 0; i < n; i++)
        buf_printf(b, "%s=%s|", cols[i], vals[i] ? vals[i] : "NULL");
    buf_printf(b, "\n");
    return 0;
}

/* Every row of every table, as text, read through the real VFS (a reader
 * that is not subject to the full disk). Caller frees. */
static char *snapshot(void)
{
    sqlite3 *db;
    cr_assert_eq(sqlite3_open_v2(dbfile, &db, SQLITE_OPEN_READONLY, "unix"), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    buf tables = {0}, out = {0};
    cr_assert_eq(sqlite3_exec(db,
                              "SELECT name FROM sqlite_master WHERE type = 'table'"
                              " AND name NOT LIKE 'sqlite_%' ORDER BY name",
                              row_cb, &tables, NULL),
                 SQLITE_OK);
    buf_printf(&tables, "%c", '\0');
    for (char *save = NULL, *line = strtok_r(tables.data, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        const char *name = line + strlen("name=");
        char *end = strchr(line, '|');
        if (end) *end = '\0';
        char *sql = xasprintf("SELECT * FROM \"%s\" ORDER BY rowid", name);
        buf_printf(&out, "== %s\n", name);
        cr_assert_eq(sqlite3_exec(db, sql, row_cb, &out, NULL), SQLITE_OK, "%s", sql);
        free(sql);
    }
    sqlite3_close(db);
    buf_free(&tables);
    buf_printf(&out, "%c", '\0');
    return out.data;
}

static int64_t sql_int(const char *sql)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    cr_assert_eq(sqlite3_open_v2(dbfile, &db, SQLITE_OPEN_READONLY, "unix"), SQLITE_OK);
    cr_assert_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK, "%s", sql);
    cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

static void check_ledger(void)
{
    cr_assert_eq(sql_int("SELECT COUNT(*) FROM users u WHERE u.token_balance != (SELECT "
                         "COALESCE(SUM(amount), 0) FROM token_transactions t WHERE t.user_id = "
                         "u.id) OR u.token_balance < 0"),
                 0, "balance = sum of the ledger rows, >= 0");
    cr_assert_eq(sql_int("SELECT COUNT(*) FROM generations g WHERE (SELECT COUNT(*) FROM "
                         "token_transactions t WHERE t.generation_id = g.id AND kind = 'charge')"
                         " != 1"),
                 0, "one charge per generation");
}

typedef int (*verb_fn)(void *ctx);

/* Runs verb with the disk filling up after n = 0, 1, 2, ... writes until
 * it succeeds; every failure must change nothing, also across a reopen.
 * Returns the number of failure points tried. */
static int sweep(const char *what, verb_fn verb, void *ctx)
{
    for (int n = 0; n < 200; n++) {
        char *before = snapshot();
        arm(n);
        int rc = verb(ctx);
        int refused = disarm();
        if (rc == STORE_OK) {
            free(before);
            check_ledger();
            cr_assert_gt(n, 0, "%s: the first write was refused, yet it succeeded", what);
            return n;
        }
        cr_assert_gt(refused, 0, "%s failed (%d) without a refused write", what, rc);
        char *after = snapshot();
        cr_assert_str_eq(after, before, "%s: a write failing at %d left a change behind", what, n);
        free(after);
        /* What a restart finds: the same. */
        store_close(S);
        open_store();
        after = snapshot();
        cr_assert_str_eq(after, before, "%s: after reopening (failure at %d)", what, n);
        free(after);
        free(before);
        check_ledger();
    }
    cr_assert_fail("%s never succeeded", what);
    return 0;
}

static void fixture_gen(gen_record *g, const char *gen_id)
{
    memset(g, 0, sizeof *g);
    snprintf(g->id, sizeof g->id, "%s", gen_id);
    snprintf(g->user_id, sizeof g->user_id, "%s", alice.id);
    g->status = GEN_PENDING;
    snprintf(g->stage, sizeof g->stage, "pending");
    g->product_images = json_pack("[s]", product_url);
    g->model_images = json_array();
    g->result_images = json_array();
    g->prompt = xstrdup("a prompt");
    snprintf(g->params.model, sizeof g->params.model, "local-studio");
    snprintf(g->params.style, sizeof g->params.style, "minimal");
    snprintf(g->params.quality, sizeof g->params.quality, "low");
    snprintf(g->params.aspect_ratio, sizeof g->params.aspect_ratio, "1:1");
    g->params.guidance_scale = 7.5;
    g->params.num_inference_steps = 50;
    g->params.strength = 0.8;
    g->params.seed = 42;
    g->tokens_used = 2;
    g->priority = PRIORITY_NORMAL;
    g->created_at = now_ms();
}

typedef struct create_ctx {
    bool start;
    bool idem;
    char id[ID_LEN];
} create_ctx;

static int do_create(void *p)
{
    create_ctx *c = p;
    ids_new("gen", c->id);
    gen_record g;
    fixture_gen(&g, c->id);
    store_idem idem = {"key-1", "hash-1", "{\"generationId\":\"x\"}", 201, 0};
    int rc = store_gen_create(S, &g, c->start, c->idem ? &idem : NULL, NULL, NULL);
    gen_record_free(&g);
    return rc;
}

static int do_start(void *p)
{
    return gen_state_start(S, p, now_ms());
}
static int do_cancel(void *p)
{
    return gen_state_cancel(S, p, "cancelled by user", now_ms());
}
static int do_claim(void *p)
{
    gen_record g;
    int rc = store_gen_claim(S, "w1", now_ms(), 30000, &g);
    if (rc == STORE_OK) {
        cr_assert_str_eq(g.id, p);
        gen_record_free(&g);
    }
    return rc;
}
static int do_progress(void *p)
{
    int64_t now = now_ms();
    return store_gen_progress(S, p, "w1", "generating", 50, now + 30000, now);
}
static int do_complete(void *p)
{
    json_t *r = json_pack("[s]", "http://127.0.0.1:9/media/r.jpg");
    int rc = gen_state_complete(S, p, "w1", r, now_ms());
    json_decref(r);
    return rc;
}
static int do_fail(void *p)
{
    return gen_state_fail(S, p, "w1", "rejected", now_ms());
}
static int do_credit(void *p)
{
    (void)p;
    int64_t bal;
    return store_user_credit(S, alice.id, 5, "purchase", "top-up", &bal);
}

/* ---- tests ---- */

Test(store_faults, every_write_verb_leaves_nothing_half_done_on_a_full_disk)
{
    create_ctx c1 = {.start = false, .idem = true};
    int points = sweep("create with Idempotency-Key", do_create, &c1);
    cr_assert_eq(sql_int("SELECT COUNT(*) FROM idempotency_keys"), 1);
    points += sweep("start", do_start, c1.id);
    points += sweep("claim", do_claim, c1.id);
    points += sweep("progress", do_progress, c1.id);
    points += sweep("complete", do_complete, c1.id);

    create_ctx c2 = {.start = true};
    points += sweep("create and start", do_create, &c2);
    points += sweep("claim", do_claim, c2.id);
    points += sweep("permanent failure (refund)", do_fail, c2.id);

    create_ctx c3 = {.start = false};
    points += sweep("create", do_create, &c3);
    points += sweep("cancel (refund)", do_cancel, c3.id);
    points += sweep("credit", do_credit, NULL);

    cr_assert_eq(sql_int("SELECT COUNT(*) FROM generations"), 3);
    cr_assert_eq(sql_int("SELECT COUNT(*) FROM token_transactions WHERE kind = 'refund'"), 2);
    cr_assert_eq(sql_int("SELECT token_balance FROM users"), 100 - 2 + 5);
    cr_assert_gt(points, 11, "each verb was refused at least once (%d failure points)", points);
}

/* A create of the product fixture by alice, and alice as she is now. */
static void create_request(gen_service_req *req, user_record *who)
{
    cr_assert_eq(store_user_get(S, alice.id, who), STORE_OK);
    memset(req, 0, sizeof *req);
    req->body =
        json_pack("{s:[s], s:s, s:s, s:s, s:s}", "productImages", product_url, "model",
                  "local-studio", "style", "minimal", "quality", "low", "aspectRatio", "1:1");
}

Test(store_faults, a_create_on_a_full_disk_is_a_clean_500_charging_nothing)
{
    char *before = snapshot();
    gen_service_req req;
    gen_service_result res;
    user_record who;
    create_request(&req, &who);
    req.idem_key = xstrdup("full-disk-key");
    gen_service_request_hash("/api/generation/create", req.body, req.request_hash);

    arm(0);
    int rc = gen_service_create(&req, &who, &res);
    cr_assert_gt(disarm(), 0, "the create wrote nothing?");
    cr_assert_eq(rc, GEN_SVC_EINTERNAL);
    cr_assert_eq(res.http_status, 500);
    cr_assert_str_eq(gen_service_code(res.status), "INTERNAL_SERVER_ERROR");
    cr_assert(res.message && *res.message, "a clean error says what failed");
    cr_assert_null(res.data);
    gen_service_result_free(&res);
    char *after = snapshot();
    cr_assert_str_eq(after, before, "a failed create leaves nothing behind");
    free(after);
    free(before);

    /* Room again: the same request with the same key now creates (the key
     * was not kept by the failed attempt, so this is no replay). */
    cr_assert_eq(gen_service_create(&req, &who, &res), GEN_SVC_OK, "%s",
                 res.message ? res.message : "?");
    cr_assert_eq(res.http_status, 201);
    gen_service_result_free(&res);
    gen_service_req_free(&req);
    cr_assert_eq(sql_int("SELECT token_balance FROM users"), 99);
    cr_assert_eq(sql_int("SELECT COUNT(*) FROM idempotency_keys"), 1);
    check_ledger();
}

/* The same create answered early (reply_early, as the API asks): the
 * service says OK at once, and the durability callback then says the
 * commit failed — the API turns that into the same clean 500. */
static void record_durable(void *arg, bool durable)
{
    *(int *)arg = durable ? 1 : 0;
}

Test(store_faults, a_create_answered_early_on_a_full_disk_is_told_it_failed)
{
    char *before = snapshot();
    gen_service_req req;
    gen_service_result res;
    user_record who;
    create_request(&req, &who);
    req.reply_early = true;

    arm(0);
    int rc = gen_service_create(&req, &who, &res);
    cr_assert_gt(disarm(), 0, "the create wrote nothing?");
    cr_assert_eq(rc, GEN_SVC_OK, "the write itself is answered before the disk");
    cr_assert_not_null(res.pending);
    int told = -1;
    store_when_durable(res.pending, record_durable, &told);
    res.pending = NULL;
    cr_assert_eq(told, 0, "told the commit failed (%d)", told);
    gen_service_result_free(&res);
    char *after = snapshot();
    cr_assert_str_eq(after, before, "a failed create leaves nothing behind");
    free(after);
    free(before);

    /* Room again: told it is durable, and charged. */
    cr_assert_eq(gen_service_create(&req, &who, &res), GEN_SVC_OK);
    told = -1;
    store_when_durable(res.pending, record_durable, &told);
    res.pending = NULL;
    cr_assert_eq(told, 1);
    gen_service_result_free(&res);
    gen_service_req_free(&req);
    cr_assert_eq(sql_int("SELECT token_balance FROM users"), 99);
    check_ledger();
}
