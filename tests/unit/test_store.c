/*
 * test_store — the store through its function table, on either backend:
 * users and credentials, the ledger invariant, idempotency, the queue
 * (claim order, leases, retries, sweep), events and concurrent creates,
 * with the state changes driven through gen_state as the service drives
 * them. SQLite by default (a temporary file); with
 * STYLESTUDIO_TEST_STORE=postgres, PostgreSQL (a fresh schema of the
 * database in STYLESTUDIO_TEST_PG_URL, pg_fixture.h). `make unit` runs it
 * both ways when STYLESTUDIO_TEST_PG_URL is set. The tests about the SQLite
 * file itself (URLs, migrating a file, WAL) run on SQLite only;
 * test_store_pg.c has the PostgreSQL-only ones.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sqlite3.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gen_state.h"
#include "ids.h"
#include "log.h"
#include "pg_fixture.h"
#include "store.h"
#include "store_sqlite.h"
#include "util.h"

#define T0 1700000000000LL
#define LEASE 30000

static char dir[64];
static char path[128];
static store_t *st;
static const store_options opts = {.codec = &gen_record_codec};

static bool on_pg; /* STYLESTUDIO_TEST_STORE=postgres */

static void setup(void)
{
    log_min_level = LOG_ERROR + 1; /* quiet: expected constraint errors */
    cr_assert_eq(ids_init(), 0);
    const char *backend = getenv("STYLESTUDIO_TEST_STORE");
    on_pg = backend && str_eq(backend, "postgres");
    if (on_pg) {
        cr_assert(getenv(PG_URL_ENV) && *getenv(PG_URL_ENV),
                  "STYLESTUDIO_TEST_STORE=postgres needs " PG_URL_ENV);
        pg_fixture_init();
        st = pg_store_open(8);
        return;
    }
    snprintf(dir, sizeof dir, "/tmp/ss-store-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/test.db", dir);
    char url[160], *err = NULL;
    snprintf(url, sizeof url, "sqlite:%s", path);
    int rc = store_open(url, &opts, &st, &err);
    cr_assert_eq(rc, STORE_OK, "store_open: %s", err ? err : "?");
}

static void teardown(void)
{
    store_close(st);
    st = NULL;
    if (on_pg) {
        pg_fixture_fini();
        return;
    }
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", dir);
}

TestSuite(store, .init = setup, .fini = teardown);

/* ---- helpers ---- */

/* Creates a user with the id already in id (id_given) or a new one. */
static void make_user_as(const char *email, int64_t grant, char id[ID_LEN], bool id_given)
{
    user_record u;
    memset(&u, 0, sizeof u);
    if (id_given)
        memcpy(u.id, id, ID_LEN);
    else
        ids_new("usr", u.id);
    snprintf(u.email, sizeof u.email, "%s", email);
    snprintf(u.name, sizeof u.name, "Test %s", email);
    u.created_at = T0;
    cr_assert_eq(store_user_create(st, &u, NULL, grant), STORE_OK);
    memcpy(id, u.id, ID_LEN);
}

static void make_user(const char *email, int64_t grant, char id[ID_LEN])
{
    make_user_as(email, grant, id, false);
}

static int64_t balance(const char *user_id)
{
    user_record u;
    cr_assert_eq(store_user_get(st, user_id, &u), STORE_OK);
    return u.token_balance;
}

/* Creates one generation; returns the store code and its id in id. */
static int create_gen(const char *user_id, int cost, int priority, int64_t at, bool start,
                      char id[ID_LEN])
{
    gen_record g;
    fixture_gen(&g, user_id, cost, priority, at);
    int rc = store_gen_create(st, &g, start, NULL, NULL, NULL);
    if (id) memcpy(id, g.id, ID_LEN);
    gen_record_free(&g);
    return rc;
}

static gen_record get_gen(const char *id)
{
    gen_record g;
    cr_assert_eq(store_gen_get(st, id, &g), STORE_OK);
    return g;
}

static int64_t sql_int(const char *sql)
{
    if (on_pg) return pg_sql_int(sql);
    sqlite3 *db;
    cr_assert_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *q;
    cr_assert_eq(sqlite3_prepare_v2(db, sql, -1, &q, NULL), SQLITE_OK, "%s", sqlite3_errmsg(db));
    int64_t v = sqlite3_step(q) == SQLITE_ROW ? sqlite3_column_int64(q, 0) : -1;
    sqlite3_finalize(q);
    sqlite3_close(db);
    return v;
}

static void check_ledger(void)
{
    fixture_check_ledger(sql_int);
}

static int sweep(int64_t now, int64_t pending_ttl_ms, int max_retries, int *changed)
{
    gen_retry_policy p = {.max_retries = max_retries};
    return gen_state_sweep(st, now, pending_ttl_ms, &p, changed);
}

static int64_t last_event(void)
{
    int64_t id = -1;
    cr_assert_eq(store_events_last_id(st, &id), STORE_OK);
    return id;
}

/* ---- users and credentials ---- */

Test(store, user_create_lookup_duplicate)
{
    char id[ID_LEN];
    make_user("Alice@Example.com", 10, id);
    user_record u;
    cr_assert_eq(store_user_get(st, id, &u), STORE_OK);
    cr_assert_str_eq(u.email, "Alice@Example.com");
    cr_assert_eq(u.token_balance, 10);
    cr_assert_eq(u.free_tokens_granted, 10);
    cr_assert_eq(u.total_tokens_purchased, 0);
    cr_assert_str_eq(u.plan, "free");
    cr_assert_str_eq(u.role, "user");
    cr_assert_eq(u.created_at, T0);

    char *hash = (char *)"x";
    cr_assert_eq(store_user_by_email(st, "alice@EXAMPLE.com", &u, &hash), STORE_OK);
    cr_assert_str_eq(u.id, id);
    cr_assert_null(hash);
    cr_assert_eq(store_user_by_email(st, "bob@example.com", &u, NULL), STORE_ENOTFOUND);
    cr_assert_eq(store_user_get(st, "usr_nope", &u), STORE_ENOTFOUND);

    user_record dup;
    memset(&dup, 0, sizeof dup);
    ids_new("usr", dup.id);
    snprintf(dup.email, sizeof dup.email, "ALICE@example.COM");
    dup.created_at = T0;
    cr_assert_eq(store_user_create(st, &dup, "h", 5), STORE_EDUPLICATE);
    check_ledger();

    user_record bob;
    memset(&bob, 0, sizeof bob);
    ids_new("usr", bob.id);
    snprintf(bob.email, sizeof bob.email, "bob@example.com");
    snprintf(bob.plan, sizeof bob.plan, "pro");
    snprintf(bob.role, sizeof bob.role, "admin");
    bob.created_at = T0 + 1;
    cr_assert_eq(store_user_create(st, &bob, "argon2-hash", 0), STORE_OK);
    cr_assert_eq(store_user_by_email(st, "bob@example.com", &u, &hash), STORE_OK);
    cr_assert_str_eq(hash, "argon2-hash");
    free(hash);
    cr_assert_str_eq(u.role, "admin");
    cr_assert_eq(u.token_balance, 0);

    user_record *all;
    size_t n;
    cr_assert_eq(store_user_list(st, &all, &n), STORE_OK);
    cr_assert_eq(n, 2);
    cr_assert_str_eq(all[0].id, id);
    cr_assert_str_eq(all[1].id, bob.id);
    free(all);
}

Test(store, user_credit)
{
    char id[ID_LEN];
    make_user("c@example.com", 10, id);
    int64_t bal = 0;
    cr_assert_eq(store_user_credit(st, id, 5, "grant", "admin gift", &bal), STORE_OK);
    cr_assert_eq(bal, 15);
    cr_assert_eq(store_user_credit(st, id, 3, "purchase", NULL, &bal), STORE_OK);
    cr_assert_eq(bal, 18);
    cr_assert_eq(store_user_credit(st, id, -20, "adjustment", "too much", &bal),
                 STORE_EINSUFFICIENT);
    cr_assert_eq(store_user_credit(st, id, -8, "adjustment", "fix", &bal), STORE_OK);
    cr_assert_eq(bal, 10);
    cr_assert_eq(store_user_credit(st, "usr_nope", 1, "grant", NULL, &bal), STORE_ENOTFOUND);
    cr_assert_eq(store_user_credit(st, id, 1, "charge", NULL, &bal), STORE_ERR);
    user_record u;
    cr_assert_eq(store_user_get(st, id, &u), STORE_OK);
    cr_assert_eq(u.total_tokens_purchased, 8);
    cr_assert_eq(u.free_tokens_granted, 10);

    store_ledger_row *rows;
    size_t n;
    char *next;
    cr_assert_eq(store_ledger_list(st, id, NULL, 2, &rows, &n, &next), STORE_OK);
    cr_assert_eq(n, 2);
    cr_assert_str_eq(rows[0].kind, "adjustment");
    cr_assert_eq(rows[0].amount, -8);
    cr_assert_eq(rows[0].balance_after, 10);
    cr_assert_str_eq(rows[0].generation_id, "");
    cr_assert_str_eq(rows[0].reason, "fix");
    cr_assert_not_null(next);
    store_ledger_rows_free(rows, n);
    char *next2;
    cr_assert_eq(store_ledger_list(st, id, next, 2, &rows, &n, &next2), STORE_OK);
    cr_assert_eq(n, 2);
    cr_assert_str_eq(rows[1].kind, "grant");
    cr_assert_null(next2);
    store_ledger_rows_free(rows, n);
    free(next);
    check_ledger();
}

/* ---- plans ---- */

Test(store, user_set_plan)
{
    char id[ID_LEN];
    make_user("plan@example.com", 7, id);
    user_record u;
    cr_assert_eq(store_user_get(st, id, &u), STORE_OK);
    cr_assert_str_eq(u.plan, "free");
    cr_assert_eq(store_user_set_plan(st, id, "pro", &u), STORE_OK);
    cr_assert_str_eq(u.plan, "pro");
    cr_assert_str_eq(u.id, id);
    cr_assert_eq(u.token_balance, 7);
    cr_assert_eq(store_user_get(st, id, &u), STORE_OK);
    cr_assert_str_eq(u.plan, "pro");
    cr_assert_eq(store_user_set_plan(st, id, "free", NULL), STORE_OK);
    cr_assert_eq(store_user_get(st, id, &u), STORE_OK);
    cr_assert_str_eq(u.plan, "free");
    cr_assert_eq(store_user_set_plan(st, "usr_nope", "pro", &u), STORE_ENOTFOUND);
    cr_assert_eq(store_user_set_plan(st, "usr_nope", "pro", NULL), STORE_ENOTFOUND);
    cr_assert_neq(store_user_set_plan(st, id, "gold", NULL), STORE_OK); /* CHECK constraint */
    cr_assert_eq(store_user_get(st, id, &u), STORE_OK);
    cr_assert_str_eq(u.plan, "free");
}

Test(store, keys_and_sessions)
{
    char id[ID_LEN], other[ID_LEN];
    make_user("k@example.com", 0, id);
    make_user("o@example.com", 0, other);
    char hash[SECRET_HASH_LEN];
    ids_hash_secret("sk_test_secret", hash);
    cr_assert_eq(store_key_create(st, "key_1", id, "laptop", hash, "sk_…cret", T0), STORE_OK);
    cr_assert_eq(store_key_create(st, "key_2", id, "dup", hash, "", T0), STORE_EDUPLICATE);
    cr_assert_eq(store_key_create(st, "key_3", "usr_nope", "x", "h3", "", T0), STORE_ENOTFOUND);

    user_record u;
    int64_t at = -1;
    cr_assert_eq(store_key_get(st, hash, &u, &at), STORE_OK);
    cr_assert_str_eq(u.id, id);
    cr_assert_eq(at, 0, "never used yet");
    cr_assert_eq(store_key_touch(st, hash, T0 + 5), STORE_OK);
    cr_assert_eq(store_key_get(st, hash, &u, &at), STORE_OK);
    cr_assert_eq(at, T0 + 5);
    cr_assert_eq(store_key_get(st, "nothash", &u, &at), STORE_ENOTFOUND);

    store_key_row *keys;
    size_t n;
    cr_assert_eq(store_key_list(st, id, &keys, &n), STORE_OK);
    cr_assert_eq(n, 1);
    cr_assert_str_eq(keys[0].id, "key_1");
    cr_assert_str_eq(keys[0].name, "laptop");
    cr_assert_str_eq(keys[0].hint, "sk_…cret");
    cr_assert_eq(keys[0].last_used_at, T0 + 5);
    free(keys);

    cr_assert_eq(store_key_delete(st, other, "key_1", T0), STORE_ENOTFOUND);
    cr_assert_eq(store_key_delete(st, id, "key_1", T0), STORE_OK);
    cr_assert_eq(store_key_delete(st, id, "key_1", T0), STORE_ENOTFOUND);
    cr_assert_eq(store_key_get(st, hash, &u, &at), STORE_ENOTFOUND);
    cr_assert_eq(store_key_list(st, id, &keys, &n), STORE_OK);
    cr_assert_eq(n, 0);
    free(keys);

    cr_assert_eq(store_session_create(st, "sesshash", id, T0, T0 + 1000), STORE_OK);
    cr_assert_eq(store_session_get(st, "sesshash", &u, &at), STORE_OK);
    cr_assert_str_eq(u.id, id);
    cr_assert_eq(at, T0 + 1000);
    cr_assert_eq(store_session_get(st, "other", &u, &at), STORE_ENOTFOUND);
    cr_assert_eq(store_session_delete(st, "sesshash"), STORE_OK);
    cr_assert_eq(store_session_get(st, "sesshash", &u, &at), STORE_ENOTFOUND);
    cr_assert_eq(store_session_delete(st, "sesshash"), STORE_OK);
}

/* ---- ledger around generations ---- */

Test(store, create_charges_and_cancel_refunds)
{
    char uid[ID_LEN], gid[ID_LEN];
    make_user("l@example.com", 10, uid);
    cr_assert_eq(create_gen(uid, 3, PRIORITY_NORMAL, T0 + 10, false, gid), STORE_OK);
    cr_assert_eq(balance(uid), 7);
    gen_record g = get_gen(gid);
    cr_assert_eq(g.status, GEN_PENDING);
    cr_assert_str_eq(g.stage, "pending");
    cr_assert_eq(g.tokens_used, 3);
    cr_assert_eq(g.created_at, T0 + 10);
    cr_assert_eq(g.started_at, 0);
    cr_assert_eq(g.params.seed, 42);
    cr_assert_float_eq(g.params.guidance_scale, 7.5, 1e-9);
    cr_assert_str_eq(json_string_value(json_array_get(g.product_images, 0)),
                     "https://example.com/p.jpg");
    gen_record_free(&g);
    user_record u;
    store_user_get(st, uid, &u);
    cr_assert_eq(u.total_tokens_used, 3);
    check_ledger();

    cr_assert_eq(gen_state_cancel(st, gid, "cancelled by user", T0 + 20), STORE_OK);
    g = get_gen(gid);
    cr_assert_eq(g.status, GEN_CANCELLED);
    cr_assert_str_eq(g.stage, "cancelled");
    cr_assert_eq(g.tokens_used, 0);
    cr_assert_str_eq(g.error, "cancelled by user");
    cr_assert_str_eq(g.error_code, "CANCELLED");
    gen_record_free(&g);
    cr_assert_eq(balance(uid), 10);
    store_user_get(st, uid, &u);
    cr_assert_eq(u.total_tokens_used, 0);
    cr_assert_eq(gen_state_cancel(st, gid, "again", T0 + 30), STORE_ECONFLICT);
    cr_assert_eq(store_gen_start(st, gid, T0 + 30), STORE_ECONFLICT);
    cr_assert_eq(gen_state_cancel(st, "gen_nope", "x", T0), STORE_ENOTFOUND);
    cr_assert_eq(balance(uid), 10);
    cr_assert_eq(sql_int("SELECT COUNT(*) FROM token_transactions WHERE kind = 'refund'"), 1);
    check_ledger();

    store_ledger_row *rows;
    size_t n;
    char *next;
    cr_assert_eq(store_ledger_list(st, uid, NULL, 20, &rows, &n, &next), STORE_OK);
    cr_assert_eq(n, 3); /* refund, charge, grant */
    cr_assert_str_eq(rows[0].kind, "refund");
    cr_assert_eq(rows[0].amount, 3);
    cr_assert_str_eq(rows[0].generation_id, gid);
    cr_assert_str_eq(rows[1].kind, "charge");
    cr_assert_eq(rows[1].amount, -3);
    cr_assert_eq(rows[1].balance_after, 7);
    cr_assert_null(next);
    store_ledger_rows_free(rows, n);
}

Test(store, insufficient_tokens_writes_nothing)
{
    char uid[ID_LEN], gid[ID_LEN];
    make_user("poor@example.com", 2, uid);
    int64_t ev = last_event();
    store_idem idem = {"key-1", "hash-1", "{\"generationId\":\"x\"}", 201,
                       T0 - GEN_IDEMPOTENCY_KEEP_MS};
    gen_record g;
    fixture_gen(&g, uid, 3, PRIORITY_NORMAL, T0);
    cr_assert_eq(store_gen_create(st, &g, true, &idem, NULL, NULL), STORE_EINSUFFICIENT);
    memcpy(gid, g.id, ID_LEN);
    gen_record_free(&g);
    cr_assert_eq(balance(uid), 2);
    cr_assert_eq(sql_int("SELECT COUNT(*) FROM generations"), 0);
    cr_assert_eq(sql_int("SELECT COUNT(*) FROM token_transactions"), 1);
    cr_assert_eq(sql_int("SELECT COUNT(*) FROM idempotency_keys"), 0);
    cr_assert_eq(last_event(), ev);
    gen_record out;
    cr_assert_eq(store_gen_get(st, gid, &out), STORE_ENOTFOUND);
    check_ledger();
}

/* A batch: n generations charged in one transaction, all or none, each
 * with its own charge row (running balance) and event; the batch row. */
Test(store, batch_create_all_or_none_and_counts)
{
    char uid[ID_LEN];
    make_user("batch@example.com", 10, uid);
    gen_record g[3];
    for (int i = 0; i < 3; i++) {
        fixture_gen(&g[i], uid, 2 + i, PRIORITY_NORMAL, T0);
        snprintf(g[i].batch_id, sizeof g[i].batch_id, "bat_TEST");
    }
    /* 2 + 3 + 4 = 9 of 10; with a fourth of 5 it does not fit: nothing. */
    gen_record extra;
    fixture_gen(&extra, uid, 5, PRIORITY_NORMAL, T0);
    snprintf(extra.batch_id, sizeof extra.batch_id, "bat_TEST");
    gen_record four[4] = {g[0], g[1], g[2], extra};
    int64_t ev = last_event();
    cr_assert_eq(store_gen_create_many(st, four, 4, false, NULL, NULL, NULL), STORE_EINSUFFICIENT);
    cr_assert_eq(balance(uid), 10);
    cr_assert_eq(sql_int("SELECT COUNT(*) FROM generations"), 0);
    cr_assert_eq(sql_int("SELECT COUNT(*) FROM batches"), 0);
    cr_assert_eq(last_event(), ev);
    store_batch b;
    cr_assert_eq(store_batch_get(st, "bat_TEST", &b), STORE_ENOTFOUND);

    cr_assert_eq(store_gen_create_many(st, g, 3, true, NULL, NULL, NULL), STORE_OK);
    cr_assert_eq(balance(uid), 1);
    cr_assert_eq(sql_int("SELECT COUNT(*) FROM token_transactions WHERE kind = 'charge'"), 3);
    /* Each charge row shows the balance after it: 8, 5, 1. */
    cr_assert_eq(sql_int("SELECT COUNT(*) FROM token_transactions WHERE kind = 'charge' AND"
                         " balance_after IN (8, 5, 1)"),
                 3);
    check_ledger();
    cr_assert_eq(store_batch_get(st, "bat_TEST", &b), STORE_OK);
    cr_assert_str_eq(b.user_id, uid);
    cr_assert_eq(b.total, 3);
    cr_assert_eq(b.created_at, T0);
    cr_assert_eq(b.tokens_used, 9);
    cr_assert_eq(b.counts[GEN_PROCESSING], 3);
    for (int i = 0; i < 3; i++)
        cr_assert_str_eq(json_string_value(json_array_get(b.generation_ids, i)), g[i].id);
    store_batch_free(&b);
    gen_record r = get_gen(g[1].id);
    cr_assert_str_eq(r.batch_id, "bat_TEST");
    cr_assert_str_eq(r.stage, "queued");
    gen_record_free(&r);

    cr_assert_eq(gen_state_cancel(st, g[1].id, "cancelled", T0 + 5), STORE_OK);
    cr_assert_eq(store_batch_get(st, "bat_TEST", &b), STORE_OK);
    cr_assert_eq(b.counts[GEN_PROCESSING], 2);
    cr_assert_eq(b.counts[GEN_CANCELLED], 1);
    cr_assert_eq(b.tokens_used, 6);
    store_batch_free(&b);
    check_ledger();
    for (int i = 0; i < 3; i++)
        gen_record_free(&g[i]);
    gen_record_free(&extra);
}

Test(store, idempotent_replay_and_mismatch)
{
    char uid[ID_LEN];
    make_user("idem@example.com", 10, uid);
    store_idem idem = {"key-1", "hash-1", "{\"generationId\":\"first\"}", 201,
                       T0 - GEN_IDEMPOTENCY_KEEP_MS};
    gen_record g;
    fixture_gen(&g, uid, 2, PRIORITY_NORMAL, T0);
    cr_assert_eq(store_gen_create(st, &g, false, &idem, NULL, NULL), STORE_OK);
    gen_record_free(&g);
    int64_t ev = last_event();

    char *resp = NULL;
    int status = 0;
    fixture_gen(&g, uid, 2, PRIORITY_NORMAL, T0 + 1000);
    cr_assert_eq(store_gen_create(st, &g, false, &idem, &resp, &status), STORE_EREPLAY);
    cr_assert_str_eq(resp, "{\"generationId\":\"first\"}");
    cr_assert_eq(status, 201);
    free(resp);
    gen_record_free(&g);

    store_idem other = {"key-1", "hash-2", "{}", 201, T0 - GEN_IDEMPOTENCY_KEEP_MS};
    fixture_gen(&g, uid, 2, PRIORITY_NORMAL, T0 + 2000);
    cr_assert_eq(store_gen_create(st, &g, false, &other, NULL, NULL), STORE_EIDEM_MISMATCH);
    gen_record_free(&g);
    cr_assert_eq(balance(uid), 8);
    cr_assert_eq(sql_int("SELECT COUNT(*) FROM generations"), 1);
    cr_assert_eq(last_event(), ev);

    /* Another user may use the same key. */
    char uid2[ID_LEN];
    make_user("idem2@example.com", 10, uid2);
    fixture_gen(&g, uid2, 2, PRIORITY_NORMAL, T0 + 3000);
    cr_assert_eq(store_gen_create(st, &g, false, &idem, NULL, NULL), STORE_OK);
    gen_record_free(&g);

    /* After 24 h the key is forgotten: a new create, charged again. */
    fixture_gen(&g, uid, 2, PRIORITY_NORMAL, T0 + 25LL * 3600 * 1000);
    other.not_before = g.created_at - GEN_IDEMPOTENCY_KEEP_MS;
    cr_assert_eq(store_gen_create(st, &g, false, &other, NULL, NULL), STORE_OK);
    gen_record_free(&g);
    cr_assert_eq(balance(uid), 6);
    cr_assert_eq(sql_int("SELECT COUNT(*) FROM idempotency_keys"), 2);
    cr_assert_eq(sql_int("SELECT COUNT(*) FROM idempotency_keys WHERE request_hash = 'hash-2'"), 1);
    check_ledger();
}

/* ---- the queue ---- */

Test(store, claim_order_and_queue_position)
{
    char uid[ID_LEN], a[ID_LEN], b[ID_LEN], c[ID_LEN], p[ID_LEN];
    make_user("q@example.com", 100, uid);
    cr_assert_eq(create_gen(uid, 1, PRIORITY_NORMAL, T0 + 1, true, a), STORE_OK);
    cr_assert_eq(create_gen(uid, 1, PRIORITY_NORMAL, T0 + 2, false, b), STORE_OK);
    cr_assert_eq(create_gen(uid, 1, PRIORITY_HIGH, T0 + 3, true, c), STORE_OK);
    cr_assert_eq(store_gen_start(st, b, T0 + 4), STORE_OK);
    cr_assert_eq(create_gen(uid, 1, PRIORITY_NORMAL, T0 + 5, false, p), STORE_OK);

    gen_record g = get_gen(b);
    cr_assert_eq(g.status, GEN_PROCESSING);
    cr_assert_str_eq(g.stage, "queued");
    cr_assert_eq(g.started_at, T0 + 4);
    cr_assert_eq(g.queue_position, 3);
    gen_record_free(&g);
    g = get_gen(c);
    cr_assert_eq(g.queue_position, 1);
    gen_record_free(&g);
    g = get_gen(a);
    cr_assert_eq(g.queue_position, 2);
    gen_record_free(&g);
    g = get_gen(p);
    cr_assert_eq(g.queue_position, 0);
    gen_record_free(&g);
    /* A position the caller already has is taken while queued, and only then. */
    cr_assert_eq(store_gen_get_at(st, b, 7, &g), STORE_OK);
    cr_assert_eq(g.queue_position, 7);
    gen_record_free(&g);
    cr_assert_eq(store_gen_get_at(st, b, 0, &g), STORE_OK);
    cr_assert_eq(g.queue_position, 3);
    gen_record_free(&g);
    cr_assert_eq(store_gen_get_at(st, p, 7, &g), STORE_OK);
    cr_assert_eq(g.queue_position, 0);
    gen_record_free(&g);

    int64_t counts[GEN_STATUS_COUNT], queued;
    cr_assert_eq(store_gen_counts(st, counts, &queued), STORE_OK);
    cr_assert_eq(queued, 3);
    cr_assert_eq(counts[GEN_PROCESSING], 3);
    cr_assert_eq(counts[GEN_PENDING], 1);

    const char *want[] = {c, a, b};
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(store_gen_claim(st, "w1", T0 + 10, LEASE, &g), STORE_OK);
        cr_assert_str_eq(g.id, want[i], "claim %d", i);
        cr_assert_str_eq(g.stage, "fetching_inputs");
        cr_assert_eq(g.queue_position, 0);
        gen_record_free(&g);
    }
    cr_assert_eq(store_gen_claim(st, "w1", T0 + 10, LEASE, &g), STORE_ENOTFOUND);
    cr_assert_eq(store_gen_counts(st, counts, &queued), STORE_OK);
    cr_assert_eq(queued, 0);
}

/* A change made behind the store's back, on either backend. */
static void sql_exec(const char *sql)
{
    if (on_pg) {
        PGconn *c = pg_raw();
        pg_raw_exec(c, sql);
        PQfinish(c);
        return;
    }
    sqlite3 *db;
    cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 10000);
    cr_assert_eq(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK, "%s", sqlite3_errmsg(db));
    sqlite3_close(db);
}

/* 1 + the queued rows ahead of gen_id in claim order, counted in SQL. */
static int position_by_count(const char *gen_id)
{
    char sql[1024];
    snprintf(sql, sizeof sql,
             "SELECT 1 + COUNT(*) FROM generations a, generations g WHERE g.id = '%.*s'"
             " AND a.status = 'processing' AND a.stage = 'queued' AND a.lease_owner IS NULL"
             " AND (a.priority > g.priority OR (a.priority = g.priority AND (a.queued_at <"
             " g.queued_at OR (a.queued_at = g.queued_at AND a.id < g.id))))",
             ID_LEN, gen_id);
    return (int)sql_int(sql);
}

/* Positions stay what a count says through everything that moves rows in
 * and out of the queue: starts, claims, requeues, cancels, releases, a
 * new priority and a deleted row, at both priorities, with ties on the queue time, and with
 * more than 256 rows behind the front (the store then counts ahead). */
Test(store, queue_positions_match_a_count_after_every_change)
{
    enum { FIRST = 400, STEPS = 150, MAX = FIRST + STEPS };
    static char ids[MAX][ID_LEN];
    int n = 0;
    char uid[ID_LEN];
    make_user("pos@example.com", 10 * MAX, uid);
    for (; n < FIRST; n++)
        cr_assert_eq(create_gen(uid, 1, n % 7 == 0, T0 + n / 2, true, ids[n]), STORE_OK);
    unsigned seed = 12345;
    int64_t now = T0 + FIRST;
    for (int step = 1; step <= STEPS; step++, now++) {
        seed = seed * 1103515245u + 12345u;
        int pick = (int)((seed >> 16) % (unsigned)n);
        const char *id = ids[pick];
        gen_record g;
        if (!id[0]) continue; /* deleted */
        switch ((seed >> 8) % 8) {
        case 0: /* a new one, queued or pending */
            cr_assert_eq(create_gen(uid, 1, (seed >> 4) % 2, now, (seed >> 3) % 2, ids[n++]),
                         STORE_OK);
            break;
        case 1:
            store_gen_start(st, id, now);
            break;
        case 2:
            if (store_gen_claim(st, "w1", now, LEASE, &g) == STORE_OK) gen_record_free(&g);
            break;
        case 3: {
            g = get_gen(id);
            store_guard w1 = {.worker_id = "w1"};
            store_gen_requeue(st, id, &w1, g.retry_count, "boom", now, now);
            gen_record_free(&g);
            break;
        }
        case 4: {
            store_end e = {.gen_id = id,
                           .from = GEN_MASK(GEN_PROCESSING) | GEN_MASK(GEN_PENDING),
                           .to = GEN_CANCELLED,
                           .error = "cancelled",
                           .now = now};
            store_gen_end(st, &e);
            break;
        }
        case 5:
            if (step % 4 == 0) cr_assert_eq(store_gen_release(st, "w1", now), STORE_OK);
            break;
        case 6: {
            char sql[256];
            snprintf(sql, sizeof sql,
                     "UPDATE generations SET priority = 1 - priority WHERE id = '%.*s'", ID_LEN,
                     id);
            sql_exec(sql);
            break;
        }
        case 7: { /* gone from under the queue */
            char sql[256];
            snprintf(sql, sizeof sql, "DELETE FROM generations WHERE id = '%.*s'", ID_LEN, id);
            sql_exec(sql);
            ids[pick][0] = '\0';
            break;
        }
        }
        if (step % 30 != 0) continue;
        int queued = 0;
        for (int i = 0; i < n; i++) {
            if (!ids[i][0]) continue;
            g = get_gen(ids[i]);
            if (g.queue_position > 0) {
                queued++;
                cr_assert_eq(g.queue_position, position_by_count(ids[i]), "step %d, %s", step,
                             ids[i]);
            }
            gen_record_free(&g);
        }
        int64_t counts[GEN_STATUS_COUNT], in_queue;
        cr_assert_eq(store_gen_counts(st, counts, &in_queue), STORE_OK);
        cr_assert_eq(in_queue, queued, "step %d", step);
        /* A user stream's list: the first 100, placed one after another. */
        store_queue_item *items = NULL;
        size_t n_items = 0;
        cr_assert_eq(store_queue_items(st, uid, 100, &items, &n_items), STORE_OK);
        cr_assert_eq(n_items, queued < 100 ? (size_t)queued : 100);
        for (size_t i = 0; i < n_items; i++)
            cr_assert_eq(items[i].position, position_by_count(items[i].id), "step %d, item %zu",
                         step, i);
        free(items);
    }
    check_ledger();
}

/* SPEC §4 Priority: A has 20 queued, B 1 (queued last); with a cap of 2
 * A gets two slots, then B's is claimed before A's third; alone, A may use
 * every slot. High priority still overtakes; positions follow claim order. */
Test(store, fair_claim_user_cap_and_positions)
{
    char ua[ID_LEN], ub[ID_LEN], ids[20][ID_LEN], b[ID_LEN], h[ID_LEN];
    make_user("fa@example.com", 100, ua);
    make_user("fb@example.com", 100, ub);
    for (int i = 0; i < 20; i++)
        cr_assert_eq(create_gen(ua, 1, PRIORITY_NORMAL, T0 + 1 + i, true, ids[i]), STORE_OK);
    cr_assert_eq(create_gen(ub, 1, PRIORITY_NORMAL, T0 + 100, true, b), STORE_OK);

    gen_record g = get_gen(b);
    cr_assert_eq(g.queue_position, 21);
    gen_record_free(&g);
    store_queue_item *items = NULL;
    size_t n = 0;
    cr_assert_eq(store_queue_items(st, ua, 50, &items, &n), STORE_OK);
    cr_assert_eq(n, 20);
    for (size_t i = 0; i < n; i++) {
        cr_assert_str_eq(items[i].id, ids[i]);
        cr_assert_eq(items[i].position, (int)i + 1);
    }
    free(items);

    const char *want[] = {ids[0], ids[1], b, ids[2]};
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(store_gen_claim_fair(st, "w1", T0 + 200, LEASE, 2, &g), STORE_OK);
        cr_assert_str_eq(g.id, want[i], "claim %d", i);
        gen_record_free(&g);
    }
    store_queue_figures f;
    cr_assert_eq(store_queue_stats(st, 0, &f), STORE_OK);
    cr_assert_eq(f.depth, 17);
    cr_assert_eq(f.running, 4);
    g = get_gen(ids[3]);
    cr_assert_eq(g.queue_position, 1);
    gen_record_free(&g);

    /* A is over the cap (3 running) only because nobody else waits. A high
     * priority item of B's overtakes A's queued normal work. */
    cr_assert_eq(create_gen(ub, 1, PRIORITY_HIGH, T0 + 300, true, h), STORE_OK);
    g = get_gen(h);
    cr_assert_eq(g.queue_position, 1);
    gen_record_free(&g);
    g = get_gen(ids[3]);
    cr_assert_eq(g.queue_position, 2);
    gen_record_free(&g);
    cr_assert_eq(store_gen_claim_fair(st, "w2", T0 + 301, LEASE, 2, &g), STORE_OK);
    cr_assert_str_eq(g.id, h);
    gen_record_free(&g);

    /* Heartbeats: only processes seen since alive_after count. */
    cr_assert_eq(store_queue_heartbeat(st, "p1", 4, T0), STORE_OK);
    cr_assert_eq(store_queue_heartbeat(st, "p2", 2, T0 + 50), STORE_OK);
    cr_assert_eq(store_queue_heartbeat(st, "p1", 3, T0 + 60), STORE_OK);
    cr_assert_eq(store_queue_stats(st, T0 + 10, &f), STORE_OK);
    cr_assert_eq(f.workers, 5);
    cr_assert_eq(store_queue_heartbeat(st, "p2", 0, T0 + 70), STORE_OK);
    cr_assert_eq(store_queue_stats(st, T0 + 10, &f), STORE_OK);
    cr_assert_eq(f.workers, 3);
    check_ledger();
}

/* Figures, printed, not asserted: the queue's reads at 10,000 queued. A
 * whale holds 9,999 (two of them running: at the cap), another user 1 at
 * the back; the fair claim walks past the whale's rows. */
/* n copies of a queued generation, queued 1..n ms after it, in one
 * statement (bypassing the store: no ledger rows, so no ledger check). */
#define COPY_COLS                                                                                  \
    "user_id, status, product_images, model_images, result_images, prompt, custom_prompt, model,"  \
    " style, quality, aspect_ratio, guidance_scale, num_inference_steps, strength, seed,"          \
    " priority, tokens_used, retry_count, progress, stage, created_at, started_at"
static void bulk_copies(const char *tmpl, int n)
{
    char sql[2048];
    if (on_pg)
        snprintf(sql, sizeof sql,
                 "INSERT INTO generations (id, " COPY_COLS ", queued_at)"
                 " SELECT 'gen_bulk' || lpad(i::text, 6, '0'), " COPY_COLS ", queued_at + i"
                 " FROM generations, generate_series(1, %d) i WHERE id = '%s'",
                 n, tmpl);
    else
        snprintf(sql, sizeof sql,
                 "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < %d)"
                 " INSERT INTO generations (id, " COPY_COLS ", queued_at)"
                 " SELECT printf('gen_bulk%%06d', i), " COPY_COLS ", queued_at + i"
                 " FROM generations, c WHERE id = '%s'",
                 n, tmpl);
    sql_exec(sql);
    if (on_pg) sql_exec("VACUUM ANALYZE generations"); /* as autovacuum would, after a bulk load */
}

static int64_t us_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static double timed_us(int64_t t0)
{
    return (double)(us_now() - t0);
}

Test(store, queue_figures_at_10000_queued, .timeout = 300)
{
    enum { N = 10000, REPS = 20 };
    char whale[ID_LEN], other[ID_LEN], last[ID_LEN];
    make_user("whale@example.com", N + 10, whale);
    make_user("other@example.com", 10, other);
    char tmpl[ID_LEN];
    cr_assert_eq(create_gen(whale, 1, PRIORITY_NORMAL, T0, true, tmpl), STORE_OK);
    int64_t t0 = us_now();
    bulk_copies(tmpl, N - 2);
    cr_assert_eq(create_gen(other, 1, PRIORITY_NORMAL, T0 + N, true, last), STORE_OK);
    fprintf(stderr, "[queue figures %s] made %d queued in %lld ms\n", store_backend(st), N,
            (long long)((us_now() - t0) / 1000));
    gen_record g;
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(store_gen_claim_fair(st, "w1", T0 + N + 1, LEASE, 2, &g), STORE_OK);
        gen_record_free(&g);
    }

    t0 = us_now();
    for (int i = 0; i < REPS; i++) {
        g = get_gen(last);
        cr_assert_eq(g.queue_position, N - 2);
        gen_record_free(&g);
    }
    double get_us = timed_us(t0) / REPS;
    store_queue_figures f;
    t0 = us_now();
    for (int i = 0; i < REPS; i++)
        cr_assert_eq(store_queue_stats(st, 0, &f), STORE_OK);
    double stats_us = timed_us(t0) / REPS;
    cr_assert_eq(f.depth, N - 2);
    store_queue_item *items = NULL;
    size_t n = 0;
    t0 = us_now();
    cr_assert_eq(store_queue_items(st, other, 100, &items, &n), STORE_OK);
    double items_us = timed_us(t0);
    cr_assert_eq(n, 1);
    free(items);
    /* A user stream's refresh: the whale's first 100, at the front. */
    t0 = us_now();
    cr_assert_eq(store_queue_items(st, whale, 100, &items, &n), STORE_OK);
    double front_us = timed_us(t0);
    cr_assert_eq(n, 100);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(items[i].position, (int)i + 1);
    free(items);
    /* The whale is at the cap: the claim skips its 9,997 queued rows. */
    t0 = us_now();
    cr_assert_eq(store_gen_claim_fair(st, "w1", T0 + N + 2, LEASE, 2, &g), STORE_OK);
    double skip_us = timed_us(t0);
    cr_assert_str_eq(g.id, last);
    gen_record_free(&g);
    /* Nobody else waits: the head, through the fallback. */
    t0 = us_now();
    cr_assert_eq(store_gen_claim_fair(st, "w1", T0 + N + 3, LEASE, 2, &g), STORE_OK);
    double head_us = timed_us(t0);
    gen_record_free(&g);
    fprintf(stderr,
            "[queue figures %s] at %d queued: record with position (last) %.0f us, depth/running/"
            "workers %.0f us, GET /api/queue items (1) %.0f us, the first 100 items of the "
            "front user %.0f us, fair claim past a capped whale %.0f us, claim when only the "
            "capped user waits %.0f us\n",
            store_backend(st), N, get_us, stats_us, items_us, front_us, skip_us, head_us);
}

Test(store, progress_and_complete)
{
    char uid[ID_LEN], gid[ID_LEN];
    make_user("p@example.com", 10, uid);
    cr_assert_eq(create_gen(uid, 1, PRIORITY_NORMAL, T0, true, gid), STORE_OK);
    gen_record g;
    cr_assert_eq(store_gen_claim(st, "w1", T0 + 100, LEASE, &g), STORE_OK);
    gen_record_free(&g);
    cr_assert_eq(store_gen_progress(st, gid, "w1", STAGE_GENERATING, 50, T0 + 60000, T0), STORE_OK);
    cr_assert_eq(store_gen_progress(st, gid, "w1", STAGE_STORING, 30, T0 + 60000, T0), STORE_OK);
    g = get_gen(gid);
    cr_assert_eq(g.progress, 50);
    cr_assert_str_eq(g.stage, "storing");
    gen_record_free(&g);
    cr_assert_eq(store_gen_progress(st, gid, "w2", STAGE_STORING, 60, T0 + 60000, T0),
                 STORE_ECONFLICT);
    /* Neither stage nor progress changes: only the lease, and only the holder's. */
    int64_t events = sql_int("SELECT COUNT(*) FROM events");
    cr_assert_eq(store_gen_progress(st, gid, "w2", STAGE_STORING, 50, T0 + 60000, T0),
                 STORE_ECONFLICT);
    cr_assert_eq(store_gen_progress(st, gid, "w1", STAGE_STORING, 50, T0 + 70000, T0), STORE_OK);
    char sql[160];
    snprintf(sql, sizeof sql, "SELECT lease_expires FROM generations WHERE id = '%s'", gid);
    cr_assert_eq(sql_int(sql), T0 + 70000);
    cr_assert_eq(sql_int("SELECT COUNT(*) FROM events"), events, "no event for no change");
    cr_assert_eq(store_gen_renew(st, gid, "w1", T0 + 90000), STORE_OK);
    cr_assert_eq(store_gen_renew(st, gid, "w2", T0 + 90000), STORE_ECONFLICT);

    json_t *results = json_pack("[s,s]", "/media/r1.png", "/media/r2.png");
    cr_assert_eq(store_gen_complete(st, gid, "w1", results, T0 + 5000), STORE_OK);
    g = get_gen(gid);
    cr_assert_eq(g.status, GEN_COMPLETED);
    cr_assert_str_eq(g.stage, "completed");
    cr_assert_eq(g.progress, 100);
    cr_assert_eq(g.completed_at, T0 + 5000);
    cr_assert_eq(g.processing_time, 5000);
    cr_assert_eq(g.tokens_used, 1);
    cr_assert(json_equal(g.result_images, results));
    gen_record_free(&g);
    cr_assert_eq(store_gen_complete(st, gid, "w1", results, T0 + 6000), STORE_ECONFLICT);
    cr_assert_eq(gen_state_cancel(st, gid, "late", T0 + 6000), STORE_ECONFLICT);
    cr_assert_eq(balance(uid), 9);

    json_t *deleted = NULL;
    cr_assert_eq(store_gen_delete(st, gid, gen_state_deletable(), &deleted), STORE_OK);
    cr_assert(json_equal(deleted, results));
    json_decref(deleted);
    json_decref(results);
    cr_assert_eq(store_gen_get(st, gid, &g), STORE_ENOTFOUND);
    cr_assert_eq(sql_int("SELECT COUNT(*) FROM token_transactions WHERE kind = 'charge'"), 1);

    user_stats stats;
    cr_assert_eq(store_user_stats(st, uid, T0, &stats), STORE_OK);
    cr_assert_eq(stats.total_generations, 0);
}

Test(store, delete_needs_terminal)
{
    char uid[ID_LEN], gid[ID_LEN];
    make_user("d@example.com", 10, uid);
    cr_assert_eq(create_gen(uid, 1, PRIORITY_NORMAL, T0, false, gid), STORE_OK);
    json_t *r = NULL;
    cr_assert_eq(store_gen_delete(st, gid, gen_state_deletable(), &r), STORE_ECONFLICT);
    cr_assert_eq(store_gen_delete(st, "gen_nope", gen_state_deletable(), &r), STORE_ENOTFOUND);
    cr_assert_eq(gen_state_cancel(st, gid, "no", T0 + 1), STORE_OK);
    cr_assert_eq(store_gen_delete(st, gid, gen_state_deletable(), &r), STORE_OK);
    cr_assert_eq(json_array_size(r), 0);
    json_decref(r);
}

Test(store, lease_loss_is_conflict)
{
    char uid[ID_LEN], gid[ID_LEN];
    make_user("lease@example.com", 10, uid);
    cr_assert_eq(create_gen(uid, 2, PRIORITY_NORMAL, T0, true, gid), STORE_OK);
    gen_record g;
    cr_assert_eq(store_gen_claim(st, "w1", T0, 1000, &g), STORE_OK);
    gen_record_free(&g);

    int changed = -1;
    cr_assert_eq(sweep(T0 + 500, 1800000, 3, &changed), STORE_OK);
    cr_assert_eq(changed, 0); /* lease still holds */
    cr_assert_eq(sweep(T0 + 2000, 1800000, 3, &changed), STORE_OK);
    cr_assert_eq(changed, 1);
    g = get_gen(gid);
    cr_assert_eq(g.status, GEN_PROCESSING);
    cr_assert_str_eq(g.stage, "queued");
    cr_assert_eq(g.retry_count, 1);
    cr_assert_str_eq(g.error, "worker lost");
    cr_assert_str_eq(g.error_code, "", "no errorCode while it is still processing");
    cr_assert_eq(g.queue_position, 1);
    gen_record_free(&g);

    cr_assert_eq(store_gen_progress(st, gid, "w1", STAGE_GENERATING, 10, T0 + 9000, T0),
                 STORE_ECONFLICT);
    cr_assert_eq(store_gen_complete(st, gid, "w1", NULL, T0 + 9000), STORE_ECONFLICT);

    cr_assert_eq(store_gen_claim(st, "w2", T0 + 2000, LEASE, &g), STORE_OK);
    cr_assert_str_eq(g.id, gid);
    gen_record_free(&g);
    /* Cancel while leased: allowed; the worker learns on its next call. */
    cr_assert_eq(gen_state_cancel(st, gid, "user cancelled", T0 + 3000), STORE_OK);
    cr_assert_eq(store_gen_renew(st, gid, "w2", T0 + 9000), STORE_ECONFLICT);
    cr_assert_eq(store_gen_complete(st, gid, "w2", NULL, T0 + 9000), STORE_ECONFLICT);
    bool failed;
    gen_retry_policy three = {.max_retries = 3};
    cr_assert_eq(gen_state_transient(st, gid, 1, &(store_guard){.worker_id = "w2"}, "x", &three,
                                     T0 + 9000, &failed, NULL),
                 STORE_ECONFLICT);
    cr_assert_eq(gen_state_fail(st, gid, "w2", "x", T0 + 9000), STORE_ECONFLICT);
    cr_assert_eq(balance(uid), 10);
    check_ledger();
}

Test(store, retry_or_fail_both_branches)
{
    char uid[ID_LEN], gid[ID_LEN];
    make_user("r@example.com", 10, uid);
    cr_assert_eq(create_gen(uid, 3, PRIORITY_NORMAL, T0, true, gid), STORE_OK);
    gen_record g;
    cr_assert_eq(store_gen_claim(st, "w1", T0, LEASE, &g), STORE_OK);
    gen_record_free(&g);
    cr_assert_eq(store_gen_progress(st, gid, "w1", STAGE_GENERATING, 40, T0 + LEASE, T0), STORE_OK);

    bool failed = true;
    int64_t delay = 0;
    store_guard w1 = {.worker_id = "w1"};
    gen_retry_policy once = {.max_retries = 1, .base_ms = 4900}; /* no jitter source */
    cr_assert_eq(
        gen_state_transient(st, gid, 0, &w1, "provider 503", &once, T0 + 100, &failed, &delay),
        STORE_OK);
    cr_assert(!failed);
    cr_assert_eq(delay, 4900);
    g = get_gen(gid);
    cr_assert_eq(g.retry_count, 1);
    cr_assert_str_eq(g.stage, "queued");
    cr_assert_eq(g.progress, 40); /* never decreases */
    cr_assert_str_eq(g.error, "provider 503");
    gen_record_free(&g);

    int64_t at = 0;
    cr_assert_eq(store_gen_next_retry_at(st, &at), STORE_OK);
    cr_assert_eq(at, T0 + 5000);
    cr_assert_eq(store_gen_claim(st, "w1", T0 + 4999, LEASE, &g), STORE_ENOTFOUND);
    cr_assert_eq(store_gen_claim(st, "w1", T0 + 5000, LEASE, &g), STORE_OK);
    gen_record_free(&g);
    cr_assert_eq(store_gen_next_retry_at(st, &at), STORE_OK);
    cr_assert_eq(at, 0);

    cr_assert_eq(
        gen_state_transient(st, gid, 1, &w1, "provider 503 again", &once, T0 + 6000, &failed, NULL),
        STORE_OK);
    cr_assert(failed);
    g = get_gen(gid);
    cr_assert_eq(g.status, GEN_FAILED);
    cr_assert_str_eq(g.stage, "failed");
    cr_assert_eq(g.tokens_used, 0);
    cr_assert_str_eq(g.error, "provider 503 again");
    cr_assert_str_eq(g.error_code, "PROVIDER_TRANSIENT");
    cr_assert_eq(g.completed_at, T0 + 6000);
    gen_record_free(&g);
    cr_assert_eq(balance(uid), 10);
    check_ledger();

    user_stats stats;
    cr_assert_eq(store_user_stats(st, uid, T0, &stats), STORE_OK);
    cr_assert_eq(stats.total_generations, 1);
    cr_assert_eq(stats.this_month, 1);
    cr_assert_eq(stats.failed, 1);
    cr_assert_float_eq(stats.success_rate, 0.0, 1e-9);
}

static const gen_retry_policy TWO_RETRIES = {.max_retries = 2, .base_ms = 1000};
static const store_guard W1 = {.worker_id = "w1"};

/* Claims and fails gid with kind until it ends (at *t, moved past each
 * backoff): requeued `retries` times with a doubling delay, then failed
 * with code; its last event carries the code too. */
static void fail_until_ended(const char *gid, gen_failure kind, int retries, const char *code,
                             int64_t *t)
{
    for (int attempt = 0;; attempt++) {
        gen_record g;
        *t += 400000; /* past any backoff */
        cr_assert_eq(store_gen_claim(st, "w1", *t, LEASE, &g), STORE_OK);
        cr_assert_str_eq(g.id, gid);
        gen_record_free(&g);
        gen_attempt a = {.kind = kind, .error = "it went wrong"};
        bool failed = false;
        int64_t delay = -1;
        cr_assert_eq(
            gen_state_attempt_failed(st, gid, attempt, &W1, &a, &TWO_RETRIES, *t, &failed, &delay),
            STORE_OK);
        g = get_gen(gid);
        if (attempt < retries) {
            cr_assert(!failed, "%s attempt %d", code, attempt);
            cr_assert_eq(delay, 1000LL << attempt);
            cr_assert_eq(g.status, GEN_PROCESSING);
            cr_assert_str_eq(g.error_code, "");
            gen_record_free(&g);
            continue;
        }
        cr_assert(failed, "%s attempt %d", code, attempt);
        cr_assert_eq(g.status, GEN_FAILED);
        cr_assert_eq(g.retry_count, retries);
        cr_assert_str_eq(g.error, "it went wrong");
        cr_assert_str_eq(g.error_code, code);
        gen_record_free(&g);
        break;
    }
    store_event ev;
    cr_assert_eq(store_events_latest(st, gid, &ev), STORE_OK);
    json_t *j = json_loads(ev.data, 0, NULL);
    cr_assert_str_eq(json_string_value(json_object_get(j, "errorCode")), code);
    json_decref(j);
    free(ev.data);
}

/* gen_state's failure table: which kinds retry, which end at once, and the
 * errorCode each ends with. Every read (get, list, the event data) returns
 * the code. */
Test(store, failure_kinds_and_error_codes)
{
    char uid[ID_LEN];
    make_user("codes@example.com", 20, uid);
    struct {
        gen_failure kind;
        int retries; /* requeues before it fails */
        const char *code;
    } rows[] = {
        {GEN_FAILURE_REJECTED, 0, "PROVIDER_REJECTED"},
        {GEN_FAILURE_INPUT, 0, "INPUT_UNAVAILABLE"},
        {GEN_FAILURE_TRANSIENT, 2, "PROVIDER_TRANSIENT"},
        {GEN_FAILURE_MALFORMED, 2, "PROVIDER_ERROR"},
    };
    int64_t t = T0;
    for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
        char gid[ID_LEN];
        cr_assert_eq(create_gen(uid, 1, PRIORITY_NORMAL, t, true, gid), STORE_OK);
        fail_until_ended(gid, rows[i].kind, rows[i].retries, rows[i].code, &t);
    }
    gen_record *out = NULL;
    size_t n = 0;
    char *next = NULL;
    cr_assert_eq(store_gen_list(st, uid, GEN_FAILED, NULL, 10, &out, &n, &next), STORE_OK);
    cr_assert_eq(n, ARRAY_LEN(rows));
    for (size_t i = 0; i < n; i++) {
        cr_assert_neq(out[i].error_code[0], '\0', "listed without its errorCode");
        gen_record_free(&out[i]);
    }
    free(out);
    free(next);
    check_ledger();
}

/* A provider's Retry-After stretches the backoff: at least that long,
 * capped; a complete after such retries clears nothing it should keep. */
Test(store, retry_after_stretches_the_backoff)
{
    char uid[ID_LEN], gid[ID_LEN];
    make_user("later@example.com", 20, uid);
    int64_t t = T0;
    cr_assert_eq(create_gen(uid, 1, PRIORITY_NORMAL, t, true, gid), STORE_OK);
    gen_record g;
    t += 400000;
    cr_assert_eq(store_gen_claim(st, "w1", t, LEASE, &g), STORE_OK);
    gen_record_free(&g);
    gen_attempt slow = {.kind = GEN_FAILURE_TRANSIENT, .error = "429", .retry_after_ms = 30000};
    bool failed = true;
    int64_t delay = 0;
    cr_assert_eq(gen_state_attempt_failed(st, gid, 0, &W1, &slow, &TWO_RETRIES, t, &failed, &delay),
                 STORE_OK);
    cr_assert(!failed);
    cr_assert_eq(delay, 30000);
    int64_t at = 0;
    cr_assert_eq(store_gen_next_retry_at(st, &at), STORE_OK);
    cr_assert_eq(at, t + 30000);
    t += 30000;
    cr_assert_eq(store_gen_claim(st, "w1", t, LEASE, &g), STORE_OK);
    gen_record_free(&g);
    slow.retry_after_ms = 10LL * GEN_RETRY_AFTER_CAP_MS;
    cr_assert_eq(gen_state_attempt_failed(st, gid, 1, &W1, &slow, &TWO_RETRIES, t, &failed, &delay),
                 STORE_OK);
    cr_assert_eq(delay, GEN_RETRY_AFTER_CAP_MS);
    t += GEN_RETRY_AFTER_CAP_MS;
    cr_assert_eq(store_gen_claim(st, "w1", t, LEASE, &g), STORE_OK);
    gen_record_free(&g);
    cr_assert_eq(gen_state_complete(st, gid, "w1", NULL, t + 1), STORE_OK);
    g = get_gen(gid);
    cr_assert_eq(g.status, GEN_COMPLETED);
    cr_assert_str_eq(g.error_code, "");
    cr_assert_null(g.error);
    gen_record_free(&g);
    check_ledger();
}

Test(store, fail_refunds_once)
{
    char uid[ID_LEN], gid[ID_LEN];
    make_user("f@example.com", 10, uid);
    cr_assert_eq(create_gen(uid, 4, PRIORITY_NORMAL, T0, true, gid), STORE_OK);
    gen_record g;
    cr_assert_eq(store_gen_claim(st, "w1", T0, LEASE, &g), STORE_OK);
    gen_record_free(&g);
    cr_assert_eq(gen_state_fail(st, gid, "w2", "bad", T0 + 10), STORE_ECONFLICT);
    cr_assert_eq(gen_state_fail(st, gid, "w1", "content policy", T0 + 10), STORE_OK);
    cr_assert_eq(gen_state_fail(st, gid, "w1", "again", T0 + 20), STORE_ECONFLICT);
    cr_assert_eq(gen_state_cancel(st, gid, "again", T0 + 20), STORE_ECONFLICT);
    g = get_gen(gid);
    cr_assert_eq(g.status, GEN_FAILED);
    cr_assert_str_eq(g.error_code, "PROVIDER_REJECTED");
    cr_assert_eq(g.processing_time, 10);
    gen_record_free(&g);
    cr_assert_eq(balance(uid), 10);
    check_ledger();
}

Test(store, sweep_expired_pending_and_exhausted_leases)
{
    char uid[ID_LEN], old[ID_LEN], young[ID_LEN], leased[ID_LEN];
    make_user("s@example.com", 10, uid);
    cr_assert_eq(create_gen(uid, 2, PRIORITY_NORMAL, T0, false, old), STORE_OK);
    cr_assert_eq(create_gen(uid, 2, PRIORITY_NORMAL, T0 + 1000000, false, young), STORE_OK);
    cr_assert_eq(create_gen(uid, 3, PRIORITY_NORMAL, T0, true, leased), STORE_OK);
    gen_record g;
    cr_assert_eq(store_gen_claim(st, "w1", T0, 1000, &g), STORE_OK);
    gen_record_free(&g);
    cr_assert_eq(balance(uid), 3);

    int changed = 0;
    /* max_retries 0: the lost lease fails at once. */
    cr_assert_eq(sweep(T0 + 1800001, 1800000, 0, &changed), STORE_OK);
    cr_assert_eq(changed, 2);
    g = get_gen(old);
    cr_assert_eq(g.status, GEN_CANCELLED);
    cr_assert_str_eq(g.error, "expired: not started within 1800 seconds");
    cr_assert_str_eq(g.error_code, "EXPIRED");
    cr_assert_eq(g.tokens_used, 0);
    gen_record_free(&g);
    g = get_gen(young);
    cr_assert_eq(g.status, GEN_PENDING);
    gen_record_free(&g);
    g = get_gen(leased);
    cr_assert_eq(g.status, GEN_FAILED);
    cr_assert(strstr(g.error, "worker running it stopped"), "error %s", g.error);
    cr_assert_str_eq(g.error_code, "PROVIDER_TRANSIENT");
    cr_assert_eq(g.tokens_used, 0);
    gen_record_free(&g);
    cr_assert_eq(balance(uid), 8);
    cr_assert_eq(sweep(T0 + 1800002, 1800000, 0, &changed), STORE_OK);
    cr_assert_eq(changed, 0);
    check_ledger();

    /* Housekeeping: idempotency keys older than 24 h and expired sessions go. */
    store_idem idem = {"k", "h", "{}", 201, T0 - GEN_IDEMPOTENCY_KEEP_MS};
    gen_record ng;
    fixture_gen(&ng, uid, 1, PRIORITY_NORMAL, T0);
    cr_assert_eq(store_gen_create(st, &ng, false, &idem, NULL, NULL), STORE_OK);
    gen_record_free(&ng);
    cr_assert_eq(store_session_create(st, "s1", uid, T0, T0 + 1000), STORE_OK);
    cr_assert_eq(store_session_create(st, "s2", uid, T0, T0 + 48LL * 3600 * 1000), STORE_OK);
    cr_assert_eq(sweep(T0 + 2000, 1LL << 40, 0, &changed), STORE_OK);
    cr_assert_eq(sql_int("SELECT COUNT(*) FROM idempotency_keys"), 1);
    cr_assert_eq(sql_int("SELECT COUNT(*) FROM sessions"), 1);
    cr_assert_eq(sweep(T0 + 25LL * 3600 * 1000, 1LL << 40, 0, &changed), STORE_OK);
    cr_assert_eq(sql_int("SELECT COUNT(*) FROM idempotency_keys"), 0);
    cr_assert_eq(sql_int("SELECT COUNT(*) FROM sessions"), 1);
}

/* The guarded verbs themselves: requeue checks the lease and the retry count
 * it expects; the sweep queries find what gen_state then rescues. */
Test(store, requeue_guards_and_sweep_queries)
{
    char uid[ID_LEN], a[ID_LEN], b[ID_LEN];
    make_user("rq@example.com", 10, uid);
    cr_assert_eq(create_gen(uid, 2, PRIORITY_NORMAL, T0, true, a), STORE_OK);
    cr_assert_eq(create_gen(uid, 2, PRIORITY_NORMAL, T0 - (24LL * 3600 * 1000), false, b),
                 STORE_OK);
    gen_record g;
    cr_assert_eq(store_gen_claim(st, "w1", T0 + 1, LEASE, &g), STORE_OK);
    gen_record_free(&g);

    store_guard mine = {.worker_id = "w1"}, theirs = {.worker_id = "w2"};
    cr_assert_eq(store_gen_requeue(st, a, &theirs, 0, "boom", T0 + 5000, T0 + 2), STORE_ECONFLICT);
    cr_assert_eq(store_gen_requeue(st, a, &mine, 1, "boom", T0 + 5000, T0 + 2), STORE_ECONFLICT);
    cr_assert_eq(store_gen_requeue(st, a, &mine, 0, "boom", T0 + 5000, T0 + 2), STORE_OK);
    g = get_gen(a);
    cr_assert_eq(g.retry_count, 1);
    cr_assert_str_eq(g.stage, STAGE_QUEUED);
    cr_assert_str_eq(g.error, "boom");
    cr_assert_eq(g.queue_position, 1);
    gen_record_free(&g);
    int64_t at = 0;
    cr_assert_eq(store_gen_next_retry_at(st, &at), STORE_OK);
    cr_assert_eq(at, T0 + 5000);
    cr_assert_eq(store_gen_claim(st, "w1", T0 + 4999, LEASE, &g), STORE_ENOTFOUND);
    cr_assert_eq(store_gen_claim(st, "w1", T0 + 5000, LEASE, &g), STORE_OK);
    gen_record_free(&g);
    cr_assert_eq(store_gen_next_retry_at(st, &at), STORE_OK);
    cr_assert_eq(at, 0);

    /* The lease runs out: the sweep finds it and rescues it by the guard. */
    store_gen_ref *refs = NULL;
    size_t n = 0;
    cr_assert_eq(store_gen_expired_leases(st, T0 + 5000 + LEASE, 10, &refs, &n), STORE_OK);
    cr_assert_eq(n, 0);
    free(refs);
    cr_assert_eq(store_gen_expired_leases(st, T0 + 5001 + LEASE, 10, &refs, &n), STORE_OK);
    cr_assert_eq(n, 1);
    cr_assert_str_eq(refs[0].id, a);
    cr_assert_eq(refs[0].retry_count, 1);
    free(refs);
    store_guard expired = {.lease_expired_before = T0 + 5000 + LEASE};
    cr_assert_eq(store_gen_requeue(st, a, &expired, 1, "worker lost", 0, T0), STORE_ECONFLICT);
    expired.lease_expired_before++;
    store_end e = {.gen_id = a,
                   .from = GEN_MASK(GEN_PROCESSING),
                   .to = GEN_FAILED,
                   .error = "worker lost",
                   .guard = expired,
                   .now = T0 + 90000};
    cr_assert_eq(store_gen_end(st, &e), STORE_OK);
    g = get_gen(a);
    cr_assert_eq(g.status, GEN_FAILED);
    cr_assert_eq(g.processing_time, 90000);
    gen_record_free(&g);

    cr_assert_eq(store_gen_pending_before(st, T0 - (24LL * 3600 * 1000), 10, &refs, &n), STORE_OK);
    cr_assert_eq(n, 0);
    free(refs);
    cr_assert_eq(store_gen_pending_before(st, T0, 10, &refs, &n), STORE_OK);
    cr_assert_eq(n, 1);
    cr_assert_str_eq(refs[0].id, b);
    free(refs);
    e = (store_end){.gen_id = b,
                    .from = GEN_MASK(GEN_PENDING),
                    .to = GEN_CANCELLED,
                    .error = "expired",
                    .now = T0};
    cr_assert_eq(store_gen_end(st, &e), STORE_OK);
    cr_assert_eq(balance(uid), 10);
    check_ledger();
}

Test(store, release_hands_back_without_retry)
{
    char uid[ID_LEN], gid[ID_LEN];
    make_user("rel@example.com", 10, uid);
    cr_assert_eq(create_gen(uid, 1, PRIORITY_NORMAL, T0, true, gid), STORE_OK);
    gen_record g;
    cr_assert_eq(store_gen_claim(st, "w1", T0, LEASE, &g), STORE_OK);
    gen_record_free(&g);
    cr_assert_eq(store_gen_release(st, "w1", T0 + 10), STORE_OK);
    g = get_gen(gid);
    cr_assert_str_eq(g.stage, "queued");
    cr_assert_eq(g.retry_count, 0);
    cr_assert_eq(g.queue_position, 1);
    gen_record_free(&g);
    cr_assert_eq(store_gen_claim(st, "w2", T0 + 10, LEASE, &g), STORE_OK);
    cr_assert_str_eq(g.id, gid);
    gen_record_free(&g);
}

Test(store, list_pagination_and_filter)
{
    char uid[ID_LEN], other[ID_LEN], ids[5][ID_LEN];
    make_user("list@example.com", 100, uid);
    make_user("list2@example.com", 100, other);
    for (int i = 0; i < 5; i++)
        cr_assert_eq(create_gen(uid, 1, PRIORITY_NORMAL, T0 + i * 1000, false, ids[i]), STORE_OK);
    cr_assert_eq(create_gen(other, 1, PRIORITY_NORMAL, T0, false, NULL), STORE_OK);
    cr_assert_eq(gen_state_cancel(st, ids[1], "x", T0 + 9000), STORE_OK);

    gen_record *out;
    size_t n;
    char *cursor = NULL, *next;
    int seen = 0;
    for (int page = 0; page < 3; page++) {
        cr_assert_eq(store_gen_list(st, uid, -1, cursor, 2, &out, &n, &next), STORE_OK);
        for (size_t i = 0; i < n; i++) {
            cr_assert_str_eq(out[i].id, ids[4 - seen], "item %d", seen);
            seen++;
            gen_record_free(&out[i]);
        }
        free(out);
        free(cursor);
        cursor = next;
        if (page < 2)
            cr_assert_not_null(next);
        else
            cr_assert_null(next);
    }
    cr_assert_eq(seen, 5);
    cr_assert_eq(store_gen_list(st, uid, GEN_CANCELLED, NULL, 10, &out, &n, &next), STORE_OK);
    cr_assert_eq(n, 1);
    cr_assert_str_eq(out[0].id, ids[1]);
    cr_assert_null(next);
    gen_record_free(&out[0]);
    free(out);
}

/* ---- events ---- */

static int64_t hook_last;
static bool hook_queue;
static int hook_calls;
static char hook_user[ID_LEN];
static char hook_mine[2][ID_LEN]; /* this test's users */
/* On PostgreSQL the listener also relays commits of tests running beside
 * this one (other schemas, one notification channel): count ours only. */
static void hook(int64_t id, const char *user_id, bool queue, void *ctx)
{
    (void)ctx;
    if (!user_id || (strcmp(user_id, hook_mine[0]) != 0 && strcmp(user_id, hook_mine[1]) != 0))
        return;
    hook_last = id;
    hook_queue = queue;
    snprintf(hook_user, sizeof hook_user, "%s", user_id ? user_id : "");
    hook_calls++;
}

/* A create's event carries exactly the record as it is read back, for a
 * pending one (whose event data is made before the transaction) as for a
 * started one; with and without the optional parts. */
static void check_create_event(const char *uid, gen_record *g, bool start)
{
    int64_t before = last_event();
    cr_assert_eq(store_gen_create(st, g, start, NULL, NULL, NULL), STORE_OK);
    store_event *ev;
    size_t n;
    cr_assert_eq(store_events_after(st, uid, NULL, before, 10, &ev, &n), STORE_OK);
    cr_assert_eq(n, 2, "the generation and the balance");
    gen_record back;
    cr_assert_eq(store_gen_get(st, g->id, &back), STORE_OK);
    char *want = gen_record_codec.generation(&back);
    cr_assert_str_eq(ev[0].data, want);
    free(want);
    gen_record_free(&back);
    store_events_free(ev, n);
}

Test(store, a_create_event_is_the_record_as_read_back)
{
    char uid[ID_LEN];
    ids_new("usr", uid);
    make_user_as("evr@example.com", 10, uid, true);
    for (int variant = 0; variant < 4; variant++) {
        gen_record g;
        fixture_gen(&g, uid, 1, variant % 2 ? PRIORITY_HIGH : PRIORITY_NORMAL, T0 + variant);
        if (variant >= 2) {
            json_array_append_new(g.model_images, json_string("https://example.com/m.jpg"));
            g.custom_prompt = xstrdup("on a wooden table");
            snprintf(g.params.background, sizeof g.params.background, "transparent");
            snprintf(g.params.output_format, sizeof g.params.output_format, "png");
        } else {
            free(g.prompt);
            g.prompt = NULL; /* stored as "" */
        }
        check_create_event(uid, &g, variant % 2 == 1);
        gen_record_free(&g);
    }
}

/* The events of events_written_with_data's generation, in order: each of
 * the right type, with the record (or balance) it should carry. */
static void check_lifecycle_events(const store_event *ev, size_t n, const char *gid)
{
    /* create: gen + balance; start; claim; progress (once: the repeat
     * changed nothing); fail: balance (refund) + gen */
    const char *types[] = {"generation", "balance", "generation", "generation",
                           "generation", "balance", "generation"};
    const char *statuses[] = {"pending",    NULL, "processing", "processing",
                              "processing", NULL, "failed"};
    const char *stages[] = {"pending",    NULL, "queued", "fetching_inputs",
                            "generating", NULL, "failed"};
    cr_assert_eq(n, 7);
    for (size_t i = 0; i < n; i++) {
        if (i) cr_assert_gt(ev[i].id, ev[i - 1].id);
        cr_assert_str_eq(ev[i].type, types[i], "event %zu", i);
        json_t *d = json_loads(ev[i].data, 0, NULL);
        cr_assert_not_null(d);
        /* What streams read beside the data agrees with it. */
        cr_assert_eq(ev[i].queue_position,
                     (int)json_integer_value(json_object_get(d, "queuePosition")), "event %zu", i);
        cr_assert_eq(ev[i].terminal, i == 6, "event %zu", i);
        if (statuses[i]) {
            cr_assert_str_eq(ev[i].generation_id, gid);
            cr_assert_str_eq(json_string_value(json_object_get(d, "_id")), gid);
            cr_assert_str_eq(json_string_value(json_object_get(d, "status")), statuses[i]);
            cr_assert_str_eq(json_string_value(json_object_get(d, "stage")), stages[i]);
        } else {
            cr_assert_str_eq(ev[i].generation_id, "");
            cr_assert(json_is_integer(json_object_get(d, "tokenBalance")));
        }
        json_decref(d);
    }
}

Test(store, events_written_with_data)
{
    char uid[ID_LEN], gid[ID_LEN], other[ID_LEN];
    ids_new("usr", uid);
    ids_new("usr", other);
    memcpy(hook_mine[0], uid, ID_LEN);
    memcpy(hook_mine[1], other, ID_LEN);
    store_set_commit_hook(st, hook, NULL);
    make_user_as("ev@example.com", 10, uid, true);
    cr_assert_eq(hook_calls, 1); /* the grant's balance event */
    cr_assert_str_eq(hook_user, uid, "the hook names the user whose events were written");
    make_user_as("ev2@example.com", 0, other, true);
    cr_assert_eq(hook_calls, 1); /* no grant, no event */
    int64_t before = last_event();
    cr_assert_eq(hook_last, before);
    cr_assert_eq(create_gen(uid, 3, PRIORITY_NORMAL, T0, false, gid), STORE_OK);
    cr_assert_eq(hook_last, last_event());
    cr_assert_str_eq(hook_user, uid);
    /* A pending record gives the workers nothing to claim (PostgreSQL
     * always says it may have). */
    cr_assert_eq(hook_queue, on_pg, "a create of a pending record: queue %d", hook_queue);
    cr_assert_eq(store_gen_start(st, gid, T0 + 1), STORE_OK);
    cr_assert(hook_queue, "a start queues it");
    gen_record g;
    cr_assert_eq(store_gen_claim(st, "w1", T0 + 2, LEASE, &g), STORE_OK);
    gen_record_free(&g);
    cr_assert_eq(store_gen_progress(st, gid, "w1", STAGE_GENERATING, 50, T0 + LEASE, T0), STORE_OK);
    cr_assert_eq(store_gen_progress(st, gid, "w1", STAGE_GENERATING, 50, T0 + LEASE, T0), STORE_OK);
    cr_assert_eq(gen_state_fail(st, gid, "w1", "boom", T0 + 3), STORE_OK);
    cr_assert_eq(hook_last, last_event());

    store_event *ev;
    size_t n;
    cr_assert_eq(store_events_after(st, uid, NULL, before, 100, &ev, &n), STORE_OK);
    check_lifecycle_events(ev, n, gid);
    json_t *d = json_loads(ev[1].data, 0, NULL);
    cr_assert_eq(json_integer_value(json_object_get(d, "tokenBalance")), 7);
    json_decref(d);
    d = json_loads(ev[5].data, 0, NULL);
    cr_assert_eq(json_integer_value(json_object_get(d, "tokenBalance")), 10);
    json_decref(d);
    d = json_loads(ev[2].data, 0, NULL);
    cr_assert_eq(json_integer_value(json_object_get(d, "queuePosition")), 1);
    json_decref(d);
    d = json_loads(ev[6].data, 0, NULL);
    cr_assert_eq(json_integer_value(json_object_get(d, "tokensUsed")), 0);
    cr_assert_eq(json_integer_value(json_object_get(d, "progress")), 50);
    cr_assert_str_eq(json_string_value(json_object_get(d, "error")), "boom");
    json_decref(d);
    int64_t mid = ev[2].id, newest = ev[6].id;
    store_events_free(ev, n);

    store_event *one = xcalloc(1, sizeof *one);
    cr_assert_eq(store_events_latest(st, gid, one), STORE_OK);
    cr_assert_eq(one->id, newest);
    cr_assert_str_eq(one->type, "generation");
    cr_assert_not_null(strstr(one->data, "\"failed\""));
    store_events_free(one, 1);
    store_event none;
    cr_assert_eq(store_events_latest(st, "gen_nope", &none), STORE_ENOTFOUND);
    int64_t charged = -1, refunded = -1;
    cr_assert_eq(store_ledger_totals(st, &charged, &refunded), STORE_OK);
    cr_assert_eq(charged, 3);
    cr_assert_eq(refunded, 3);

    cr_assert_eq(store_events_after(st, uid, gid, mid, 100, &ev, &n), STORE_OK);
    cr_assert_eq(n, 3); /* balance events are skipped */
    for (size_t i = 0; i < n; i++)
        cr_assert_str_eq(ev[i].type, "generation");
    store_events_free(ev, n);
    cr_assert_eq(store_events_after(st, uid, NULL, before, 2, &ev, &n), STORE_OK);
    cr_assert_eq(n, 2);
    store_events_free(ev, n);
    cr_assert_eq(store_events_after(st, other, NULL, 0, 100, &ev, &n), STORE_OK);
    cr_assert_eq(n, 0);
    store_events_free(ev, n);
    cr_assert_eq(store_events_after(st, other, gid, 0, 100, &ev, &n), STORE_OK);
    cr_assert_eq(n, 0); /* not theirs */
    store_events_free(ev, n);
}

/* ---- concurrency ---- */

#define THREADS 8
#define PER_THREAD 50

static char conc_user[ID_LEN];

static void *create_many(void *arg)
{
    long ok = 0;
    (void)arg;
    for (int i = 0; i < PER_THREAD; i++) {
        gen_record g;
        fixture_gen(&g, conc_user, 1, PRIORITY_NORMAL, now_ms());
        int rc = store_gen_create(st, &g, (i & 1) != 0, NULL, NULL, NULL);
        gen_record_free(&g);
        if (rc == STORE_OK)
            ok++;
        else if (rc != STORE_EINSUFFICIENT)
            return (void *)-1L;
    }
    return (void *)ok;
}

Test(store, concurrent_creates_never_overdraw, .timeout = 120)
{
    make_user("conc@example.com", 50, conc_user);
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, create_many, NULL), 0);
    long total = 0;
    for (int i = 0; i < THREADS; i++) {
        void *r;
        pthread_join(th[i], &r);
        cr_assert_neq((long)r, -1L, "a create failed with an unexpected error");
        total += (long)r;
    }
    cr_assert_eq(total, 50);
    cr_assert_eq(balance(conc_user), 0);
    cr_assert_eq(sql_int("SELECT COUNT(*) FROM generations"), 50);
    cr_assert_eq(sql_int("SELECT COUNT(*) FROM token_transactions WHERE kind = 'charge'"), 50);
    check_ledger();
}

/* 200 request threads at once, one create each, balance for 150. */
static void *create_one(void *arg)
{
    (void)arg;
    gen_record g;
    fixture_gen(&g, conc_user, 1, PRIORITY_NORMAL, now_ms());
    long rc = store_gen_create(st, &g, true, NULL, NULL, NULL);
    gen_record_free(&g);
    return (void *)rc;
}

Test(store, two_hundred_concurrent_creates, .timeout = 120)
{
    make_user("burst@example.com", 150, conc_user);
    pthread_t th[200];
    for (int i = 0; i < 200; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, create_one, NULL), 0);
    int ok = 0, poor = 0;
    for (int i = 0; i < 200; i++) {
        void *r;
        pthread_join(th[i], &r);
        if ((long)r == STORE_OK)
            ok++;
        else if ((long)r == STORE_EINSUFFICIENT)
            poor++;
    }
    cr_assert_eq(ok, 150);
    cr_assert_eq(poor, 50);
    cr_assert_eq(balance(conc_user), 0);
    int64_t counts[GEN_STATUS_COUNT], queued;
    cr_assert_eq(store_gen_counts(st, counts, &queued), STORE_OK);
    cr_assert_eq(queued, 150);
    check_ledger();
}

/* ---- deferred durability (store_defer) ---- */

typedef struct told {
    atomic_int calls;
    bool durable;
    bool visible; /* the generation could be read when the caller was told */
    char id[ID_LEN];
} told;

static void on_durable(void *arg, bool durable)
{
    told *t = arg;
    t->durable = durable;
    gen_record g;
    t->visible = store_gen_get(st, t->id, &g) == STORE_OK;
    if (t->visible) gen_record_free(&g);
    atomic_fetch_add(&t->calls, 1);
}

static void *create_deferred(void *arg)
{
    told *t = arg;
    gen_record g;
    fixture_gen(&g, conc_user, 1, PRIORITY_NORMAL, now_ms());
    memcpy(t->id, g.id, ID_LEN);
    store_pending *p = store_defer(st);
    long rc = store_gen_create(st, &g, false, NULL, NULL, NULL);
    store_defer_stop(p);
    store_when_durable(p, on_durable, t);
    gen_record_free(&g);
    return (void *)rc;
}

/* 64 threads create at once without waiting for the disk, balance for 50:
 * each caller is told exactly once, and a create it is told of as durable
 * can be read by then; the refused ones are told at once (nothing was
 * deferred) and left nothing. */
Test(store, deferred_creates_are_told_once_durable, .timeout = 120)
{
    enum { N = 64 };
    make_user("defer@example.com", 50, conc_user);
    static told t[N];
    pthread_t th[N];
    for (int i = 0; i < N; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, create_deferred, &t[i]), 0);
    long rc[N];
    for (int i = 0; i < N; i++) {
        void *r;
        pthread_join(th[i], &r);
        rc[i] = (long)r;
    }
    /* Every batch ends before its last member's call returns. */
    int ok = 0, poor = 0;
    for (int i = 0; i < N; i++) {
        cr_assert_eq(atomic_load(&t[i].calls), 1, "told %d times", atomic_load(&t[i].calls));
        cr_assert(t[i].durable);
        if (rc[i] == STORE_OK) {
            ok++;
            cr_assert(t[i].visible, "told of %s before it could be read", t[i].id);
        } else {
            cr_assert_eq(rc[i], STORE_EINSUFFICIENT);
            poor++;
            cr_assert_not(t[i].visible);
        }
    }
    cr_assert_eq(ok, 50);
    cr_assert_eq(poor, N - 50);
    cr_assert_eq(balance(conc_user), 0);
    cr_assert_eq(sql_int("SELECT COUNT(*) FROM generations"), 50);
    check_ledger();
}

/* ---- open and migrations (the SQLite file) ---- */

/* ---- outbound webhooks ---- */

static void make_webhook(const char *user_id, const char *events, char id[ID_LEN])
{
    static int64_t seq; /* distinct id times: lists sort by id */
    store_webhook w = {0};
    ids_new_at("whk", T0 + ++seq, w.id);
    snprintf(w.user_id, sizeof w.user_id, "%s", user_id);
    w.url = "https://hooks.example.com/in";
    w.events = (char *)events;
    w.description = "test hook";
    w.secret = "whsec_c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0";
    w.created_at = T0;
    cr_assert_eq(store_webhook_create(st, &w), STORE_OK);
    memcpy(id, w.id, ID_LEN);
}

/* Turns every pending (webhook, event) pair into a delivery, as the
 * dispatcher does; returns how many pairs there were. */
static size_t drain_pending(int64_t now)
{
    store_webhook_event *ev;
    size_t n;
    cr_assert_eq(store_webhook_pending(st, 100, &ev, &n), STORE_OK);
    for (size_t i = 0; i < n; i++) {
        char id[ID_LEN];
        ids_new("msg", id);
        store_delivery_new d = {id, ev[i].ev.id, "generation.processing", ev[i].ev.data};
        cr_assert_eq(store_webhook_advance(st, ev[i].webhook_id, ev[i].ev.id, &d, 1, now),
                     STORE_OK);
    }
    store_webhook_events_free(ev, n);
    return n;
}

Test(store, webhook_create_list_get_delete)
{
    char uid[ID_LEN], other[ID_LEN], w1[ID_LEN], w2[ID_LEN];
    make_user("wh@example.com", 5, uid);
    make_user("wh2@example.com", 0, other);
    make_webhook(uid, "generation.completed", w1);
    make_webhook(uid, "balance.changed,generation.failed", w2);
    store_webhook *list;
    size_t n;
    cr_assert_eq(store_webhook_list(st, uid, &list, &n), STORE_OK);
    cr_assert_eq(n, 2);
    cr_assert_str_eq(list[0].id, w2, "newest first");
    cr_assert_str_eq(list[0].events, "balance.changed,generation.failed");
    cr_assert_str_eq(list[0].url, "https://hooks.example.com/in");
    cr_assert_str_eq(list[0].description, "test hook");
    cr_assert_null(list[0].secret, "lists never carry the secret");
    store_webhooks_free(list, n);
    cr_assert_eq(store_webhook_list(st, other, &list, &n), STORE_OK);
    cr_assert_eq(n, 0);
    store_webhooks_free(list, n);

    store_webhook w;
    cr_assert_eq(store_webhook_get(st, w1, &w), STORE_OK);
    cr_assert_str_eq(w.user_id, uid);
    cr_assert_null(w.secret);
    store_webhook_clear(&w);
    cr_assert_eq(store_webhook_get(st, "whk_nope", &w), STORE_ENOTFOUND);
    cr_assert_eq(store_webhook_delete(st, other, w1), STORE_ENOTFOUND, "not theirs");
    cr_assert_eq(store_webhook_delete(st, uid, w1), STORE_OK);
    cr_assert_eq(store_webhook_delete(st, uid, w1), STORE_ENOTFOUND);
    cr_assert_eq(store_webhook_get(st, w1, &w), STORE_ENOTFOUND);

    store_webhook bad = {.url = "https://x", .events = "balance.changed", .secret = "whsec_x"};
    ids_new("whk", bad.id);
    snprintf(bad.user_id, sizeof bad.user_id, "usr_nobody");
    cr_assert_eq(store_webhook_create(st, &bad), STORE_ENOTFOUND);
}

/* The webhook scenario's phases (one webhook wid of user uid). */

/* A create and a start: three events pending for wid, the start's with its
 * previous record. Returns the start's event id. */
static int64_t webhook_events_pending(const char *uid, const char *wid, char *gid)
{
    store_webhook_event *ev;
    size_t n;
    cr_assert_eq(create_gen(uid, 3, PRIORITY_NORMAL, T0 + 1, false, gid), STORE_OK);
    cr_assert_eq(store_gen_start(st, gid, T0 + 2), STORE_OK);
    cr_assert_eq(store_webhook_pending(st, 100, &ev, &n), STORE_OK);
    cr_assert_eq(n, 3); /* create: generation + balance; start: generation */
    cr_assert_str_eq(ev[0].webhook_id, wid);
    cr_assert_str_eq(ev[0].ev.type, "generation");
    cr_assert_str_eq(ev[0].ev.generation_id, gid);
    cr_assert_null(ev[0].prev_data, "the generation's first event has no previous one");
    cr_assert_str_eq(ev[0].events, "generation.processing");
    cr_assert_str_eq(ev[1].ev.type, "balance");
    cr_assert_null(ev[1].prev_data);
    cr_assert_not_null(strstr(ev[2].ev.data, "\"processing\""));
    cr_assert_not_null(strstr(ev[2].prev_data, "\"pending\""), "the previous record");
    cr_assert_eq(ev[2].created_at, T0 + 2);
    int64_t start_event = ev[2].ev.id;
    store_webhook_events_free(ev, n);
    return start_event;
}

/* The cursor passes the three events; only the start becomes delivery mid. */
static void webhook_cursor_advances(const char *wid, int64_t start_event, char *mid)
{
    store_webhook_event *ev;
    size_t n;
    /* Only the start becomes a delivery; the cursor passes all three. */
    ids_new("msg", mid);
    store_delivery_new d = {mid, start_event, "generation.processing", "{\"type\":\"x\"}"};
    cr_assert_eq(store_webhook_advance(st, wid, start_event, &d, 1, T0 + 10), STORE_OK);
    cr_assert_eq(store_webhook_advance(st, wid, start_event - 1, &d, 1, T0 + 11), STORE_OK,
                 "a repeat (another dispatcher) is harmless");
    cr_assert_eq(sql_int("SELECT COUNT(*) FROM webhook_deliveries"), 1, "UNIQUE(webhook, event)");
    cr_assert_eq(store_webhook_pending(st, 100, &ev, &n), STORE_OK);
    cr_assert_eq(n, 0, "the cursor never moves back");
    store_webhook_events_free(ev, n);
    cr_assert_eq(store_webhook_advance(st, "whk_gone", 1, NULL, 0, T0), STORE_ENOTFOUND);
}

/* Claims, leases, a retry after a lost lease, and success. */
static void delivery_claims_and_leases(const char *wid, const char *mid)
{
    size_t n;
    int64_t due = -1;
    cr_assert_eq(store_delivery_next_due(st, &due), STORE_OK);
    cr_assert_eq(due, T0 + 10);
    store_delivery *got;
    cr_assert_eq(store_delivery_claim(st, "lease-a", T0 + 9, 20000, 10, &got, &n), STORE_OK);
    cr_assert_eq(n, 0, "not due yet");
    store_deliveries_free(got, n);
    cr_assert_eq(store_delivery_claim(st, "lease-a", T0 + 10, 20000, 10, &got, &n), STORE_OK);
    cr_assert_eq(n, 1);
    cr_assert_str_eq(got[0].id, mid);
    cr_assert_str_eq(got[0].webhook_id, wid);
    cr_assert_str_eq(got[0].payload, "{\"type\":\"x\"}");
    cr_assert_str_eq(got[0].url, "https://hooks.example.com/in");
    cr_assert_str_eq(got[0].secret, "whsec_c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0");
    cr_assert_eq(got[0].attempts, 0);
    store_deliveries_free(got, n);
    cr_assert_eq(store_delivery_claim(st, "lease-b", T0 + 11, 20000, 10, &got, &n), STORE_OK);
    cr_assert_eq(n, 0, "leased to a");
    store_deliveries_free(got, n);
    cr_assert_eq(store_delivery_next_due(st, &due), STORE_OK);
    cr_assert_eq(due, T0 + 10 + 20000, "a leased delivery is due when its lease ends");

    store_attempt retry = {"pending", 500, T0 + 5000, T0 + 12};
    cr_assert_eq(store_delivery_record(st, mid, "lease-b", &retry), STORE_ECONFLICT);
    cr_assert_eq(store_delivery_record(st, "msg_nope", "lease-a", &retry), STORE_ENOTFOUND);
    cr_assert_eq(store_delivery_record(st, mid, "lease-a", &retry), STORE_OK);
    cr_assert_eq(store_delivery_record(st, mid, "lease-a", &retry), STORE_ECONFLICT,
                 "the lease ends with the attempt");
    cr_assert_eq(store_delivery_claim(st, "lease-c", T0 + 4999, 20000, 10, &got, &n), STORE_OK);
    cr_assert_eq(n, 0);
    store_deliveries_free(got, n);
    /* A lease that ran out (a crashed sender) is claimable again. */
    cr_assert_eq(store_delivery_claim(st, "lease-c", T0 + 5000, 100, 10, &got, &n), STORE_OK);
    cr_assert_eq(n, 1);
    cr_assert_eq(got[0].attempts, 1);
    cr_assert_eq(got[0].tries, 1);
    cr_assert_eq(got[0].last_status_code, 500);
    store_deliveries_free(got, n);
    cr_assert_eq(store_delivery_claim(st, "lease-d", T0 + 5100, 20000, 10, &got, &n), STORE_OK);
    cr_assert_eq(n, 1);
    store_deliveries_free(got, n);
    store_attempt ok = {"succeeded", 204, 0, T0 + 5200};
    cr_assert_eq(store_delivery_record(st, mid, "lease-c", &ok), STORE_ECONFLICT, "lease lost");
    cr_assert_eq(store_delivery_record(st, mid, "lease-d", &ok), STORE_OK);
    cr_assert_eq(store_delivery_next_due(st, &due), STORE_OK);
    cr_assert_eq(due, 0, "nothing pending");
}

/* The log of wid, a redelivery with the same id and body, and a failure. */
static void delivery_log_and_redelivery(const char *wid, const char *mid)
{
    size_t n;
    store_delivery *got;
    store_delivery *list;
    char *next = NULL;
    cr_assert_eq(store_delivery_list(st, wid, NULL, 20, &list, &n, &next), STORE_OK);
    cr_assert_eq(n, 1);
    cr_assert_null(next);
    cr_assert_str_eq(list[0].status, "succeeded");
    cr_assert_eq(list[0].attempts, 2);
    cr_assert_eq(list[0].last_status_code, 204);
    cr_assert_eq(list[0].next_attempt_at, 0);
    cr_assert_str_eq(list[0].type, "generation.processing");
    cr_assert_null(list[0].payload);
    store_deliveries_free(list, n);

    store_delivery again;
    cr_assert_eq(store_delivery_redeliver(st, "whk_other", mid, T0 + 6000, &again),
                 STORE_ENOTFOUND);
    cr_assert_eq(store_delivery_redeliver(st, wid, mid, T0 + 6000, &again), STORE_OK);
    cr_assert_str_eq(again.status, "pending");
    cr_assert_eq(again.tries, 0);
    cr_assert_eq(again.attempts, 2);
    cr_assert_eq(again.next_attempt_at, T0 + 6000);
    cr_assert_eq(store_delivery_claim(st, "lease-e", T0 + 6000, 20000, 10, &got, &n), STORE_OK);
    cr_assert_eq(n, 1);
    cr_assert_str_eq(got[0].id, mid, "same id");
    cr_assert_str_eq(got[0].payload, "{\"type\":\"x\"}", "same body");
    store_deliveries_free(got, n);
    store_attempt fail = {"failed", 0, 0, T0 + 6100};
    cr_assert_eq(store_delivery_record(st, mid, "lease-e", &fail), STORE_OK);
    cr_assert_eq(sql_int("SELECT COUNT(*) FROM webhook_deliveries WHERE status = 'failed'"
                         " AND last_status_code IS NULL AND next_attempt_at IS NULL"),
                 1);
}

Test(store, webhook_cursor_deliveries_claim_and_record)
{
    char uid[ID_LEN], gid[ID_LEN], wid[ID_LEN], mid[ID_LEN];
    make_user("whd@example.com", 10, uid);
    cr_assert_eq(create_gen(uid, 2, PRIORITY_NORMAL, T0, false, NULL), STORE_OK);
    make_webhook(uid, "generation.processing", wid);
    store_webhook_event *ev;
    size_t n;
    cr_assert_eq(store_webhook_pending(st, 100, &ev, &n), STORE_OK);
    cr_assert_eq(n, 0, "a new webhook starts after the events already committed");
    store_webhook_events_free(ev, n);

    int64_t start_event = webhook_events_pending(uid, wid, gid);
    webhook_cursor_advances(wid, start_event, mid);
    delivery_claims_and_leases(wid, mid);
    delivery_log_and_redelivery(wid, mid);
    cr_assert_eq(store_webhook_delete(st, uid, wid), STORE_OK);
    cr_assert_eq(sql_int("SELECT COUNT(*) FROM webhook_deliveries"), 0, "deleted with it");
}

Test(store, webhook_delivery_pages)
{
    char uid[ID_LEN], wid[ID_LEN];
    make_user("whp@example.com", 0, uid);
    make_webhook(uid, "balance.changed", wid);
    for (int i = 0; i < 5; i++)
        cr_assert_eq(store_user_credit(st, uid, 1, "grant", NULL, NULL), STORE_OK);
    cr_assert_eq(drain_pending(T0), 5);
    cr_assert_eq(drain_pending(T0), 0);
    store_delivery *page;
    size_t n;
    char *next = NULL, *prev_last = NULL;
    int seen = 0;
    do {
        char *cursor = next;
        cr_assert_eq(store_delivery_list(st, wid, cursor, 2, &page, &n, &next), STORE_OK);
        for (size_t i = 0; i < n; i++) {
            if (prev_last) cr_assert_lt(strcmp(page[i].id, prev_last), 0, "newest first");
            free(prev_last);
            prev_last = xstrdup(page[i].id);
            seen++;
        }
        store_deliveries_free(page, n);
        free(cursor);
    } while (next);
    free(prev_last);
    cr_assert_eq(seen, 5);
    cr_assert_eq(store_delivery_list(st, "whk_none", NULL, 2, &page, &n, &next), STORE_OK);
    cr_assert_eq(n, 0);
    store_deliveries_free(page, n);
}

/* Two webhooks of different users: each gets only its user's events, and
 * on PostgreSQL an event id committed after a higher one of another user
 * is still found (per-webhook cursors over per-user commit order). */
Test(store, webhook_cursor_per_user_out_of_order_commit)
{
    char a[ID_LEN], b[ID_LEN], wa[ID_LEN], wb[ID_LEN];
    make_user("wha@example.com", 0, a);
    make_user("whb@example.com", 0, b);
    make_webhook(a, "balance.changed", wa);
    make_webhook(b, "balance.changed", wb);
    PGconn *held = NULL;
    if (on_pg) {
        /* A's transaction takes an event id and stays open... */
        held = pg_raw();
        pg_raw_exec(held, "BEGIN");
        char sql[256];
        snprintf(sql, sizeof sql,
                 "INSERT INTO events (user_id, type, data, created_at)"
                 " VALUES ('%s', 'balance', '{\"tokenBalance\":0}', 1)",
                 a);
        pg_raw_exec(held, sql);
    }
    /* ...while B commits a higher one, which the dispatcher processes. */
    cr_assert_eq(store_user_credit(st, b, 1, "grant", NULL, NULL), STORE_OK);
    store_webhook_event *ev;
    size_t n;
    cr_assert_eq(store_webhook_pending(st, 100, &ev, &n), STORE_OK);
    cr_assert_eq(n, 1);
    cr_assert_str_eq(ev[0].webhook_id, wb);
    store_webhook_events_free(ev, n);
    cr_assert_eq(drain_pending(T0), 1);
    if (held) {
        pg_raw_exec(held, "COMMIT");
        PQfinish(held);
    } else {
        cr_assert_eq(store_user_credit(st, a, 1, "grant", NULL, NULL), STORE_OK);
    }
    cr_assert_eq(store_webhook_pending(st, 100, &ev, &n), STORE_OK);
    cr_assert_eq(n, 1, "the lower id committed later is not skipped");
    cr_assert_str_eq(ev[0].webhook_id, wa);
    store_webhook_events_free(ev, n);
    cr_assert_eq(drain_pending(T0), 1);
    cr_assert_eq(sql_int("SELECT COUNT(*) FROM webhook_deliveries"), 2);
}

Test(store, events_prune_keeps_unprocessed_and_latest)
{
    char uid[ID_LEN], other[ID_LEN], gid[ID_LEN], wid[ID_LEN];
    make_user("prune@example.com", 10, uid);
    make_user("prune2@example.com", 10, other);
    make_webhook(uid, "balance.changed", wid);
    cr_assert_eq(create_gen(other, 1, PRIORITY_NORMAL, T0, false, gid), STORE_OK);
    cr_assert_eq(store_gen_start(st, gid, T0 + 1), STORE_OK);
    cr_assert_eq(store_user_credit(st, uid, 1, "grant", NULL, NULL), STORE_OK);
    int64_t total = sql_int("SELECT COUNT(*) FROM events");
    /* other: grant, create (gen + balance), start; uid: grant (before the
     * webhook), credit (after: not processed yet). */
    cr_assert_eq(total, 6);
    int64_t deleted = -1;
    cr_assert_eq(store_events_prune(st, T0 - 1, 100, &deleted), STORE_OK);
    cr_assert_eq(deleted, 0, "nothing is old enough");
    cr_assert_eq(store_events_prune(st, INT64_MAX, 100, &deleted), STORE_OK);
    /* kept: the generation's newest event, and uid's unprocessed credit */
    cr_assert_eq(deleted, 4);
    cr_assert_eq(sql_int("SELECT COUNT(*) FROM events"), 2);
    store_event latest;
    cr_assert_eq(store_events_latest(st, gid, &latest), STORE_OK);
    free(latest.data);
    cr_assert_eq(drain_pending(T0), 1);
    cr_assert_eq(store_events_prune(st, INT64_MAX, 100, &deleted), STORE_OK);
    cr_assert_eq(deleted, 1, "processed now");
}

#define SQLITE_ONLY()                                                                              \
    do {                                                                                           \
        if (on_pg) cr_skip_test("about the SQLite file; test_store_pg.c covers PostgreSQL");       \
    } while (0)

/* ---- plain write transactions (store_sqlite.c's DESIGN) ---- */

static char plain_uid[ID_LEN];
static atomic_int plain_changed;

/* Joins the batch the test holds open, changes a row, then fails. */
static void *plain_fail(void *arg)
{
    (void)arg;
    sq_tx t;
    if (sq_begin_plain(st, &t) != STORE_OK) return NULL;
    atomic_store(&plain_changed, sq_exec(&t,
                                         "UPDATE users SET token_balance = token_balance - 1"
                                         " WHERE id = ?",
                                         "s", plain_uid));
    sq_rollback(&t);
    return NULL;
}

Test(store, plain_write_failing_after_a_change_fails_its_batch)
{
    SQLITE_ONLY();
    make_user("plain@example.com", 10, plain_uid);
    /* Alone: rolled back after its change, nothing of it stays. */
    sq_tx t;
    cr_assert_eq(sq_begin_plain(st, &t), STORE_OK);
    cr_assert_eq(sq_exec(&t, "UPDATE users SET token_balance = 3 WHERE id = ?", "s", plain_uid), 1);
    sq_rollback(&t);
    cr_assert_eq(balance(plain_uid), 10);

    /* A member before it in the same batch fails with it: neither is on disk. */
    cr_assert_eq(sq_begin(st, &t, true), STORE_OK);
    cr_assert_eq(sq_exec(&t, "UPDATE users SET token_balance = token_balance + 5 WHERE id = ?", "s",
                         plain_uid),
                 1);
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, plain_fail, NULL), 0);
    usleep(500 * 1000); /* it waits for the write lock: the batch stays open for it */
    cr_assert_eq(sq_commit(&t), STORE_ERR, "the batch failed with its plain member");
    pthread_join(th, NULL);
    cr_assert_eq(atomic_load(&plain_changed), 1, "the plain member changed a row");
    cr_assert_eq(balance(plain_uid), 10);

    /* A plain member that fails before any change costs nobody anything,
     * and the store goes on. */
    cr_assert_eq(sq_begin_plain(st, &t), STORE_OK);
    cr_assert_eq(sq_exec(&t, "UPDATE users SET token_balance = 0 WHERE id = 'usr_none'", NULL), 0);
    sq_rollback(&t);
    cr_assert_eq(sq_begin_plain(st, &t), STORE_OK);
    cr_assert_eq(sq_exec(&t, "UPDATE users SET token_balance = token_balance + 1 WHERE id = ?", "s",
                         plain_uid),
                 1);
    cr_assert_eq(sq_commit(&t), STORE_OK);
    cr_assert_eq(balance(plain_uid), 11);
}

/* ---- templates ---- */

static void make_tpl(const char *user_id, const char *name, const char *body, int64_t at,
                     char id[ID_LEN])
{
    store_template t = {
        .name = (char *)name, .body = (char *)body, .created_at = at, .updated_at = at};
    ids_new("tpl", t.id);
    snprintf(t.user_id, sizeof t.user_id, "%s", user_id);
    cr_assert_eq(store_template_create(st, &t, 100), STORE_OK);
    if (id) memcpy(id, t.id, ID_LEN);
}

Test(store, template_crud_pages_and_cap)
{
    char alice[ID_LEN], bob[ID_LEN], id[ID_LEN];
    make_user("tpl-a@example.com", 0, alice);
    make_user("tpl-b@example.com", 0, bob);
    make_tpl(alice, "Studio white", "{\"style\":\"minimal\"}", T0, id);
    store_template t;
    cr_assert_eq(store_template_get(st, id, &t), STORE_OK);
    cr_assert_str_eq(t.id, id);
    cr_assert_str_eq(t.user_id, alice);
    cr_assert_str_eq(t.name, "Studio white");
    cr_assert_str_eq(t.body, "{\"style\":\"minimal\"}");
    cr_assert_eq(t.created_at, T0);
    cr_assert_eq(t.updated_at, T0);
    store_template_clear(&t);
    cr_assert_eq(store_template_get(st, "tpl_nope", &t), STORE_ENOTFOUND);

    /* Update: only the owner's; name and body replaced, updated_at moves. */
    cr_assert_eq(store_template_update(st, bob, id, "x", "{}", T0 + 5, &t), STORE_ENOTFOUND);
    cr_assert_eq(store_template_update(st, alice, "tpl_nope", "x", "{}", T0 + 5, &t),
                 STORE_ENOTFOUND);
    cr_assert_eq(
        store_template_update(st, alice, id, "Beach", "{\"style\":\"artistic\"}", T0 + 5, &t),
        STORE_OK);
    cr_assert_str_eq(t.name, "Beach");
    cr_assert_str_eq(t.body, "{\"style\":\"artistic\"}");
    cr_assert_eq(t.created_at, T0);
    cr_assert_eq(t.updated_at, T0 + 5);
    store_template_clear(&t);
    cr_assert_eq(store_template_update(st, alice, id, "Beach 2", "{}", T0 + 6, NULL), STORE_OK);
    cr_assert_eq(store_template_get(st, id, &t), STORE_OK);
    cr_assert_str_eq(t.name, "Beach 2");
    store_template_clear(&t);

    /* Pages: newest first, per user. */
    char ids[4][ID_LEN];
    memcpy(ids[0], id, ID_LEN);
    for (int i = 1; i < 4; i++) {
        usleep(2000); /* distinct id times */
        make_tpl(alice, "more", "{}", T0 + i, ids[i]);
    }
    make_tpl(bob, "bob's", "{}", T0, NULL);
    store_template *rows;
    size_t n;
    char *next = NULL, *next2 = NULL;
    cr_assert_eq(store_template_list(st, alice, NULL, 3, &rows, &n, &next), STORE_OK);
    cr_assert_eq(n, 3);
    cr_assert_str_eq(rows[0].id, ids[3]);
    cr_assert_str_eq(rows[2].id, ids[1]);
    cr_assert_not_null(next);
    store_templates_free(rows, n);
    cr_assert_eq(store_template_list(st, alice, next, 3, &rows, &n, &next2), STORE_OK);
    cr_assert_eq(n, 1);
    cr_assert_str_eq(rows[0].id, ids[0]);
    cr_assert_null(next2);
    store_templates_free(rows, n);
    free(next);

    /* Delete: only the owner's. */
    cr_assert_eq(store_template_delete(st, bob, ids[0]), STORE_ENOTFOUND);
    cr_assert_eq(store_template_delete(st, alice, ids[0]), STORE_OK);
    cr_assert_eq(store_template_delete(st, alice, ids[0]), STORE_ENOTFOUND);
    cr_assert_eq(store_template_get(st, ids[0], &t), STORE_ENOTFOUND);

    /* The cap counts the user's own templates; a missing user is refused. */
    store_template extra = {.name = "extra", .body = "{}", .created_at = T0, .updated_at = T0};
    ids_new("tpl", extra.id);
    snprintf(extra.user_id, sizeof extra.user_id, "%s", alice);
    cr_assert_eq(store_template_create(st, &extra, 3), STORE_ECONFLICT); /* alice has 3 */
    cr_assert_eq(store_template_get(st, extra.id, &t), STORE_ENOTFOUND);
    cr_assert_eq(store_template_create(st, &extra, 4), STORE_OK);
    ids_new("tpl", extra.id);
    snprintf(extra.user_id, sizeof extra.user_id, "usr_nope");
    cr_assert_eq(store_template_create(st, &extra, 100), STORE_ENOTFOUND);
    cr_assert_eq(store_template_list(st, bob, NULL, 20, &rows, &n, &next), STORE_OK);
    cr_assert_eq(n, 1);
    cr_assert_null(next);
    store_templates_free(rows, n);
}

Test(store, reopen_and_urls)
{
    SQLITE_ONLY();
    cr_assert_eq(store_ping(st), STORE_OK);
    cr_assert_eq(store_migrate(st), STORE_OK);
    char uid[ID_LEN];
    make_user("m@example.com", 5, uid);
    store_close(st);
    st = NULL;
    char url[160], *err = NULL;
    snprintf(url, sizeof url, "sqlite://%s", path); /* "sqlite://" + absolute path */
    cr_assert_eq(store_open(url, &opts, &st, &err), STORE_OK, "%s", err ? err : "");
    cr_assert_eq(balance(uid), 5);
    cr_assert_eq(sql_int("PRAGMA user_version"), 14); /* the newest migration */
    cr_assert_eq(sql_int("SELECT COUNT(*) FROM schema_migrations"), 14);
    char wal[160];
    snprintf(wal, sizeof wal, "%s-wal", path);
    cr_assert_eq(access(wal, F_OK), 0, "WAL mode");

    store_t *other = NULL;
    err = NULL;
    /* Dispatched to the PostgreSQL store, which cannot reach host "h". */
    cr_assert_eq(store_open("postgres://u:secret@h/db", &opts, &other, &err), STORE_EUNAVAILABLE);
    cr_assert_not_null(err);
    cr_assert_null(strstr(err, "secret"));
    free(err);
    err = NULL;
    cr_assert_eq(store_open("mysql://x", &opts, &other, &err), STORE_ERR);
    cr_assert_not_null(err);
    free(err);
    err = NULL;
    cr_assert_eq(store_open("sqlite:/proc/nope/x.db", &opts, &other, &err), STORE_ERR);
    cr_assert_not_null(err);
    free(err);
    cr_assert_null(other);
}

/* A database at version 1 (as 001 left it) is brought up to date. */
Test(store, migrates_from_previous_version)
{
    SQLITE_ONLY();
    char uid[ID_LEN];
    make_user("v1@example.com", 7, uid);
    store_close(st);
    st = NULL;
    sqlite3 *db;
    cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
    cr_assert_eq(
        sqlite3_exec(
            db,
            "DROP INDEX token_transactions_kind;"
            " ALTER TABLE generations DROP COLUMN error_code;"
            " DROP TABLE webhook_deliveries; DROP TABLE webhooks;"
            " DROP TABLE templates;"
            " DROP TABLE rate_limits;"
            " DROP INDEX generations_user_leased; DROP INDEX generations_claim_fair;"
            " DROP TABLE queue_workers;"
            " DROP TABLE batches; DROP INDEX generations_batch; DROP INDEX generations_user_queued;"
            " ALTER TABLE generations DROP COLUMN background;"
            " ALTER TABLE generations DROP COLUMN output_format;"
            " DROP TABLE queue_depth; DROP TRIGGER queue_depth_insert;"
            " DROP TRIGGER queue_depth_delete; DROP TRIGGER queue_depth_leave;"
            " DROP TRIGGER queue_depth_enter;"
            " ALTER TABLE events DROP COLUMN queue_position;"
            " ALTER TABLE events DROP COLUMN terminal;"
            " CREATE INDEX generations_user_created ON generations (user_id, created_at);"
            " CREATE INDEX generations_status ON generations (status);"
            " CREATE INDEX generations_claim ON generations (priority DESC, queued_at, id)"
            "  WHERE status = 'processing' AND stage = 'queued' AND lease_owner IS NULL;"
            " DELETE FROM schema_migrations WHERE version > 1;"
            " PRAGMA user_version = 1;",
            NULL, NULL, NULL),
        SQLITE_OK);
    sqlite3_close(db);
    char url[160], *err = NULL;
    snprintf(url, sizeof url, "sqlite:%s", path);
    cr_assert_eq(store_open(url, &opts, &st, &err), STORE_OK, "%s", err ? err : "");
    cr_assert_eq(sql_int("PRAGMA user_version"), 14); /* the newest migration */
    cr_assert_eq(
        sql_int("SELECT COUNT(*) FROM sqlite_master WHERE name = 'token_transactions_kind'"), 1);
    cr_assert_eq(sql_int("SELECT COUNT(*) FROM sqlite_master WHERE name = 'generations_claim'"), 0);
    cr_assert_eq(balance(uid), 7);
}

/* A database at version 2 gets error_code; records from before read "". */
Test(store, migrates_error_code_from_version_2)
{
    SQLITE_ONLY();
    char uid[ID_LEN], gid[ID_LEN];
    make_user("v2@example.com", 7, uid);
    cr_assert_eq(create_gen(uid, 2, PRIORITY_NORMAL, T0, false, gid), STORE_OK);
    cr_assert_eq(create_gen(uid, 2, PRIORITY_NORMAL, T0, true, NULL), STORE_OK);
    store_close(st);
    st = NULL;
    sqlite3 *db;
    cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
    cr_assert_eq(
        sqlite3_exec(
            db,
            "ALTER TABLE generations DROP COLUMN error_code;"
            " DROP TABLE webhook_deliveries; DROP TABLE webhooks;"
            " DROP TABLE templates;"
            " DROP TABLE rate_limits;"
            " DROP INDEX generations_user_leased; DROP INDEX generations_claim_fair;"
            " DROP TABLE queue_workers;"
            " DROP TABLE batches; DROP INDEX generations_batch; DROP INDEX generations_user_queued;"
            " ALTER TABLE generations DROP COLUMN background;"
            " ALTER TABLE generations DROP COLUMN output_format;"
            " DROP TABLE queue_depth; DROP TRIGGER queue_depth_insert;"
            " DROP TRIGGER queue_depth_delete; DROP TRIGGER queue_depth_leave;"
            " DROP TRIGGER queue_depth_enter;"
            " ALTER TABLE events DROP COLUMN queue_position;"
            " ALTER TABLE events DROP COLUMN terminal;"
            " CREATE INDEX generations_user_created ON generations (user_id, created_at);"
            " CREATE INDEX generations_status ON generations (status);"
            " CREATE INDEX generations_claim ON generations (priority DESC, queued_at, id)"
            "  WHERE status = 'processing' AND stage = 'queued' AND lease_owner IS NULL;"
            " DELETE FROM schema_migrations WHERE version > 2;"
            " PRAGMA user_version = 2;",
            NULL, NULL, NULL),
        SQLITE_OK);
    sqlite3_close(db);
    char url[160], *err = NULL;
    snprintf(url, sizeof url, "sqlite:%s", path);
    cr_assert_eq(store_open(url, &opts, &st, &err), STORE_OK, "%s", err ? err : "");
    cr_assert_eq(sql_int("PRAGMA user_version"), 14);
    /* 011 counts what was already queued; 012 reads the queued one's
     * position out of its event. */
    cr_assert_eq(sql_int("SELECT SUM(queued) FROM queue_depth"), 1);
    cr_assert_eq(sql_int("SELECT COUNT(*) FROM events WHERE queue_position = 1"), 1);
    cr_assert_eq(sql_int("SELECT COUNT(*) FROM events WHERE terminal"), 0);
    gen_record g = get_gen(gid);
    cr_assert_str_eq(g.error_code, "");
    gen_record_free(&g);
    cr_assert_eq(gen_state_cancel(st, gid, "cancelled by user", T0 + 1), STORE_OK);
    g = get_gen(gid);
    cr_assert_str_eq(g.error_code, "CANCELLED");
    gen_record_free(&g);
    store_event last;
    cr_assert_eq(store_events_latest(st, gid, &last), STORE_OK);
    cr_assert(last.terminal, "a cancel's event is terminal");
    cr_assert_eq(last.queue_position, 0);
    free(last.data);
}

Test(store, newer_schema_is_refused)
{
    SQLITE_ONLY();
    store_close(st);
    st = NULL;
    sqlite3 *db;
    cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(db,
                              "INSERT INTO schema_migrations (version, name, applied_at)"
                              " VALUES (999, '999_future', 0)",
                              NULL, NULL, NULL),
                 SQLITE_OK);
    sqlite3_close(db);
    char url[160], *err = NULL;
    snprintf(url, sizeof url, "sqlite:%s", path);
    cr_assert_eq(store_open(url, &opts, &st, &err), STORE_ERR);
    cr_assert_not_null(strstr(err, "newer"), "%s", err);
    free(err);
}
