/*
 * test_store_pg — the PostgreSQL store against a fresh schema: users and
 * credentials, the ledger invariant, idempotency (also under concurrency),
 * the guarded state changes, the queue (claim order, leases, requeue,
 * sweep queries), events and the codec, migrations (concurrent opens, a
 * newer schema refused), concurrent creates, and an unreachable server.
 * Needs STYLESTUDIO_TEST_PG_URL (skips without it); event ordering across
 * transactions is test_store_pg_order.c.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "pg_fixture.h"

#define T0 1700000000000LL
#define LEASE 30000
#define DAY_MS (24LL * 3600 * 1000)

static store_t *st;

static void setup(void)
{
    pg_fixture_init();
    st = pg_url[0] ? pg_store_open(8) : NULL;
}

static void teardown(void)
{
    store_close(st);
    st = NULL;
    pg_fixture_fini();
}

TestSuite(store_pg, .init = setup, .fini = teardown, .timeout = 120);

/* ---- helpers ---- */

static int64_t balance(const char *user_id)
{
    user_record u;
    cr_assert_eq(store_user_get(st, user_id, &u), STORE_OK);
    return u.token_balance;
}

static void make_gen(gen_record *g, const char *user_id, int cost, int priority, int64_t at)
{
    memset(g, 0, sizeof *g);
    ids_new_at("gen", at, g->id);
    snprintf(g->user_id, sizeof g->user_id, "%s", user_id);
    g->product_images = json_pack("[s]", "https://example.com/p.jpg");
    g->model_images = json_array();
    g->prompt = xstrdup("a product photo");
    snprintf(g->params.model, sizeof g->params.model, "local-studio");
    snprintf(g->params.style, sizeof g->params.style, "realistic");
    snprintf(g->params.quality, sizeof g->params.quality, "auto");
    snprintf(g->params.aspect_ratio, sizeof g->params.aspect_ratio, "1:1");
    g->params.guidance_scale = 7.5;
    g->params.num_inference_steps = 50;
    g->params.strength = 0.8;
    g->params.seed = 42;
    g->priority = priority;
    g->tokens_used = cost;
    g->created_at = at;
}

static int create_gen(const char *user_id, int cost, int priority, int64_t at, bool start,
                      char id[ID_LEN])
{
    gen_record g;
    make_gen(&g, user_id, cost, priority, at);
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

/* SPEC §3: balance == SUM(amount), never negative, balance_after is the
 * running sum, one charge and at most one refund per generation, and
 * tokens_used == what its rows took. */
static void check_ledger(void)
{
    cr_assert_eq(pg_sql_int("SELECT COUNT(*) FROM users u WHERE token_balance <>"
                            " (SELECT COALESCE(SUM(amount), 0) FROM token_transactions t"
                            "  WHERE t.user_id = u.id)"),
                 0, "balance != SUM(amount)");
    cr_assert_eq(pg_sql_int("SELECT COUNT(*) FROM users WHERE token_balance < 0"), 0);
    cr_assert_eq(pg_sql_int("SELECT COUNT(*) FROM (SELECT balance_after, SUM(amount) OVER"
                            " (PARTITION BY user_id ORDER BY id) AS run FROM token_transactions)"
                            " x WHERE balance_after <> run"),
                 0, "balance_after != running sum");
    cr_assert_eq(pg_sql_int("SELECT COUNT(*) FROM (SELECT 1 FROM token_transactions"
                            " WHERE generation_id IS NOT NULL GROUP BY generation_id, kind"
                            " HAVING COUNT(*) > 1) x"),
                 0);
    cr_assert_eq(pg_sql_int("SELECT COUNT(*) FROM generations g WHERE tokens_used <>"
                            " -(SELECT COALESCE(SUM(amount), 0) FROM token_transactions t"
                            "   WHERE t.generation_id = g.id)"),
                 0, "tokens_used != charge - refund");
    cr_assert_eq(pg_sql_int("SELECT COUNT(*) FROM users u WHERE total_tokens_used <>"
                            " -(SELECT COALESCE(SUM(amount), 0) FROM token_transactions t"
                            "   WHERE t.user_id = u.id AND kind IN ('charge', 'refund'))"),
                 0, "totalTokensUsed != charges - refunds");
}

static int64_t last_event(void)
{
    int64_t id = -1;
    cr_assert_eq(store_events_last_id(st, &id), STORE_OK);
    return id;
}

static store_end end_of(const char *gen_id, unsigned from, gen_status to, const char *error,
                        int64_t now)
{
    store_end e = {.gen_id = gen_id, .from = from, .to = to, .error = error, .now = now};
    return e;
}

#define LIVE (GEN_MASK(GEN_PENDING) | GEN_MASK(GEN_PROCESSING))
#define TERMINAL (GEN_MASK(GEN_COMPLETED) | GEN_MASK(GEN_FAILED) | GEN_MASK(GEN_CANCELLED))

/* ---- users and credentials ---- */

Test(store_pg, users_emails_and_credit)
{
    PG_REQUIRE();
    cr_assert_str_eq(store_backend(st), "postgres");
    cr_assert_eq(store_ping(st), STORE_OK);
    char id[ID_LEN];
    pg_make_user(st, "Alice@Example.com", 10, id);
    user_record u;
    char *hash = (char *)"x";
    cr_assert_eq(store_user_by_email(st, "alice@EXAMPLE.com", &u, &hash), STORE_OK);
    cr_assert_str_eq(u.id, id);
    cr_assert_str_eq(u.email, "Alice@Example.com");
    cr_assert_null(hash);
    cr_assert_eq(u.token_balance, 10);
    cr_assert_eq(u.free_tokens_granted, 10);
    cr_assert_str_eq(u.plan, "free");
    cr_assert_eq(store_user_by_email(st, "bob@example.com", &u, NULL), STORE_ENOTFOUND);
    cr_assert_eq(store_user_get(st, "usr_nope", &u), STORE_ENOTFOUND);

    user_record dup;
    memset(&dup, 0, sizeof dup);
    ids_new("usr", dup.id);
    snprintf(dup.email, sizeof dup.email, "ALICE@example.COM");
    dup.created_at = T0;
    cr_assert_eq(store_user_create(st, &dup, "h", 5), STORE_EDUPLICATE);

    int64_t bal = 0;
    cr_assert_eq(store_user_credit(st, id, 5, "purchase", "card", &bal), STORE_OK);
    cr_assert_eq(bal, 15);
    cr_assert_eq(store_user_credit(st, id, -20, "adjustment", NULL, &bal), STORE_EINSUFFICIENT);
    cr_assert_eq(store_user_credit(st, id, -15, "adjustment", "zero", &bal), STORE_OK);
    cr_assert_eq(bal, 0);
    cr_assert_eq(store_user_credit(st, "usr_nope", 1, "grant", NULL, &bal), STORE_ENOTFOUND);
    cr_assert_eq(store_user_credit(st, id, 1, "charge", NULL, &bal), STORE_ERR);
    cr_assert_eq(store_user_get(st, id, &u), STORE_OK);
    cr_assert_eq(u.total_tokens_purchased, 5);

    store_ledger_row *rows = NULL;
    size_t n = 0;
    char *next = NULL;
    cr_assert_eq(store_ledger_list(st, id, NULL, 2, &rows, &n, &next), STORE_OK);
    cr_assert_eq(n, 2);
    cr_assert_str_eq(rows[0].kind, "adjustment");
    cr_assert_eq(rows[0].amount, -15);
    cr_assert_str_eq(rows[0].reason, "zero");
    cr_assert_eq(rows[0].balance_after, 0);
    cr_assert_str_eq(rows[1].kind, "purchase");
    cr_assert_not_null(next);
    store_ledger_rows_free(rows, n);
    char *cursor = next;
    cr_assert_eq(store_ledger_list(st, id, cursor, 2, &rows, &n, &next), STORE_OK);
    free(cursor);
    cr_assert_eq(n, 1);
    cr_assert_str_eq(rows[0].kind, "grant");
    cr_assert_str_eq(rows[0].generation_id, "");
    cr_assert_null(next);
    store_ledger_rows_free(rows, n);

    user_record *all = NULL;
    cr_assert_eq(store_user_list(st, &all, &n), STORE_OK);
    cr_assert_eq(n, 1);
    free(all);
    check_ledger();
}

Test(store_pg, keys_and_sessions)
{
    PG_REQUIRE();
    char uid[ID_LEN];
    pg_make_user(st, "keys@example.com", 0, uid);
    cr_assert_eq(store_key_create(st, "key_1", uid, "ci", "hash1", "sk_...abcd", T0), STORE_OK);
    cr_assert_eq(store_key_create(st, "key_2", uid, "dev", "hash2", "sk_...efgh", T0 + 1),
                 STORE_OK);
    cr_assert_eq(store_key_create(st, "key_3", uid, "dup", "hash1", "", T0 + 2), STORE_EDUPLICATE);
    cr_assert_eq(store_key_create(st, "key_4", "usr_nope", "x", "hash4", "", T0), STORE_ENOTFOUND);
    store_key_row *keys = NULL;
    size_t n = 0;
    cr_assert_eq(store_key_list(st, uid, &keys, &n), STORE_OK);
    cr_assert_eq(n, 2);
    cr_assert_str_eq(keys[0].id, "key_2");
    cr_assert_str_eq(keys[1].hint, "sk_...abcd");
    cr_assert_eq(keys[1].last_used_at, 0);
    free(keys);

    user_record u;
    int64_t last = -1;
    cr_assert_eq(store_key_get(st, "hash1", &u, &last), STORE_OK);
    cr_assert_str_eq(u.id, uid);
    cr_assert_eq(last, 0);
    cr_assert_eq(store_key_touch(st, "hash1", T0 + 500), STORE_OK);
    cr_assert_eq(store_key_get(st, "hash1", &u, &last), STORE_OK);
    cr_assert_eq(last, T0 + 500);
    cr_assert_eq(store_key_delete(st, uid, "key_1", T0 + 600), STORE_OK);
    cr_assert_eq(store_key_delete(st, uid, "key_1", T0 + 600), STORE_ENOTFOUND);
    cr_assert_eq(store_key_get(st, "hash1", &u, &last), STORE_ENOTFOUND);

    cr_assert_eq(store_session_create(st, "tok1", uid, T0, T0 + 1000), STORE_OK);
    int64_t exp = 0;
    cr_assert_eq(store_session_get(st, "tok1", &u, &exp), STORE_OK);
    cr_assert_eq(exp, T0 + 1000);
    cr_assert_eq(store_session_get(st, "tok2", &u, &exp), STORE_ENOTFOUND);
    cr_assert_eq(store_purge(st, T0, T0 + 999), STORE_OK);
    cr_assert_eq(store_session_get(st, "tok1", &u, &exp), STORE_OK);
    cr_assert_eq(store_purge(st, T0, T0 + 1001), STORE_OK);
    cr_assert_eq(store_session_get(st, "tok1", &u, &exp), STORE_ENOTFOUND);
    cr_assert_eq(store_session_delete(st, "tok1"), STORE_OK);
}

/* ---- generations ---- */

Test(store_pg, create_charges_end_refunds_once)
{
    PG_REQUIRE();
    char uid[ID_LEN], gid[ID_LEN];
    pg_make_user(st, "l@example.com", 10, uid);
    cr_assert_eq(create_gen(uid, 3, PRIORITY_NORMAL, T0 + 10, false, gid), STORE_OK);
    cr_assert_eq(balance(uid), 7);
    gen_record g = get_gen(gid);
    cr_assert_eq(g.status, GEN_PENDING);
    cr_assert_str_eq(g.stage, "pending");
    cr_assert_eq(g.tokens_used, 3);
    cr_assert_eq(g.params.seed, 42);
    cr_assert_float_eq(g.params.guidance_scale, 7.5, 1e-9);
    cr_assert_float_eq(g.params.strength, 0.8, 1e-12);
    cr_assert_str_eq(json_string_value(json_array_get(g.product_images, 0)),
                     "https://example.com/p.jpg");
    gen_record_free(&g);

    store_end e = end_of(gid, LIVE, GEN_CANCELLED, "cancelled by user", T0 + 20);
    cr_assert_eq(store_gen_end(st, &e), STORE_OK);
    g = get_gen(gid);
    cr_assert_eq(g.status, GEN_CANCELLED);
    cr_assert_str_eq(g.stage, "cancelled");
    cr_assert_eq(g.tokens_used, 0);
    cr_assert_str_eq(g.error, "cancelled by user");
    cr_assert_eq(g.completed_at, T0 + 20);
    gen_record_free(&g);
    cr_assert_eq(balance(uid), 10);
    cr_assert_eq(store_gen_end(st, &e), STORE_ECONFLICT);
    cr_assert_eq(store_gen_start(st, gid, T0 + 30), STORE_ECONFLICT);
    e.gen_id = "gen_nope";
    cr_assert_eq(store_gen_end(st, &e), STORE_ENOTFOUND);
    e = end_of(gid, TERMINAL, GEN_COMPLETED, NULL, T0);
    cr_assert_eq(store_gen_end(st, &e), STORE_ERR);
    cr_assert_eq(pg_sql_int("SELECT COUNT(*) FROM token_transactions WHERE kind = 'refund'"), 1);

    json_t *results = NULL;
    cr_assert_eq(store_gen_delete(st, gid, GEN_MASK(GEN_COMPLETED), &results), STORE_ECONFLICT);
    cr_assert_eq(store_gen_delete(st, gid, TERMINAL, &results), STORE_OK);
    cr_assert(json_is_array(results));
    json_decref(results);
    cr_assert_eq(store_gen_delete(st, gid, TERMINAL, NULL), STORE_ENOTFOUND);
    check_ledger(); /* ledger rows stay */
    cr_assert_eq(pg_sql_int("SELECT COUNT(*) FROM token_transactions"), 3);
}

Test(store_pg, insufficient_and_idempotency)
{
    PG_REQUIRE();
    char uid[ID_LEN];
    pg_make_user(st, "idem@example.com", 5, uid);
    int64_t ev = last_event();
    store_idem idem = {"key-1", "hash-1", "{\"generationId\":\"first\"}", 201, T0 - DAY_MS};
    gen_record g;
    make_gen(&g, uid, 6, PRIORITY_NORMAL, T0);
    cr_assert_eq(store_gen_create(st, &g, true, &idem, NULL, NULL), STORE_EINSUFFICIENT);
    gen_record_free(&g);
    cr_assert_eq(pg_sql_int("SELECT COUNT(*) FROM generations"), 0);
    cr_assert_eq(pg_sql_int("SELECT COUNT(*) FROM idempotency_keys"), 0);
    cr_assert_eq(last_event(), ev);

    make_gen(&g, uid, 2, PRIORITY_NORMAL, T0);
    cr_assert_eq(store_gen_create(st, &g, false, &idem, NULL, NULL), STORE_OK);
    gen_record_free(&g);
    ev = last_event();
    char *resp = NULL;
    int status = 0;
    make_gen(&g, uid, 2, PRIORITY_NORMAL, T0 + 1000);
    idem.not_before = T0 + 1000 - DAY_MS;
    cr_assert_eq(store_gen_create(st, &g, false, &idem, &resp, &status), STORE_EREPLAY);
    cr_assert_str_eq(resp, "{\"generationId\":\"first\"}");
    cr_assert_eq(status, 201);
    free(resp);
    gen_record_free(&g);
    store_idem other = {"key-1", "hash-2", "{}", 201, T0 - DAY_MS};
    make_gen(&g, uid, 2, PRIORITY_NORMAL, T0 + 2000);
    cr_assert_eq(store_gen_create(st, &g, false, &other, NULL, NULL), STORE_EIDEM_MISMATCH);
    gen_record_free(&g);
    cr_assert_eq(last_event(), ev);
    cr_assert_eq(balance(uid), 3);

    /* Once not_before passes the stored key, it is forgotten and replaced. */
    other.not_before = T0 + 1;
    make_gen(&g, uid, 2, PRIORITY_NORMAL, T0 + DAY_MS);
    cr_assert_eq(store_gen_create(st, &g, false, &other, NULL, NULL), STORE_OK);
    gen_record_free(&g);
    cr_assert_eq(balance(uid), 1);
    cr_assert_eq(pg_sql_int("SELECT COUNT(*) FROM idempotency_keys WHERE request_hash = 'hash-2'"),
                 1);
    cr_assert_eq(store_purge(st, T0 + DAY_MS + 1, 0), STORE_OK);
    cr_assert_eq(pg_sql_int("SELECT COUNT(*) FROM idempotency_keys"), 0);
    check_ledger();
}

/* ---- the queue ---- */

Test(store_pg, claim_order_positions_progress_complete)
{
    PG_REQUIRE();
    char uid[ID_LEN], a[ID_LEN], b[ID_LEN], c[ID_LEN], p[ID_LEN];
    pg_make_user(st, "q@example.com", 100, uid);
    cr_assert_eq(create_gen(uid, 1, PRIORITY_NORMAL, T0 + 1, true, a), STORE_OK);
    cr_assert_eq(create_gen(uid, 1, PRIORITY_NORMAL, T0 + 2, true, b), STORE_OK);
    cr_assert_eq(create_gen(uid, 1, PRIORITY_HIGH, T0 + 3, true, c), STORE_OK);
    cr_assert_eq(create_gen(uid, 1, PRIORITY_NORMAL, T0 + 4, false, p), STORE_OK);
    gen_record g = get_gen(a);
    cr_assert_eq(g.queue_position, 2);
    cr_assert_eq(g.started_at, T0 + 1);
    gen_record_free(&g);
    int64_t by[GEN_STATUS_COUNT], queued = 0;
    cr_assert_eq(store_gen_counts(st, by, &queued), STORE_OK);
    cr_assert_eq(by[GEN_PROCESSING], 3);
    cr_assert_eq(by[GEN_PENDING], 1);
    cr_assert_eq(queued, 3);

    cr_assert_eq(store_gen_start(st, p, T0 + 5), STORE_OK);
    cr_assert_eq(store_gen_claim(st, "w1", T0 + 10, LEASE, &g), STORE_OK);
    cr_assert_str_eq(g.id, c);
    cr_assert_str_eq(g.stage, STAGE_FETCHING);
    gen_record_free(&g);
    const char *order[] = {a, b, p};
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(store_gen_claim(st, "w1", T0 + 10, LEASE, &g), STORE_OK);
        cr_assert_str_eq(g.id, order[i]);
        gen_record_free(&g);
    }
    cr_assert_eq(store_gen_claim(st, "w1", T0 + 10, LEASE, &g), STORE_ENOTFOUND);

    int64_t ev = last_event();
    cr_assert_eq(store_gen_progress(st, c, "w1", STAGE_GENERATING, 40, T0 + 50000, T0 + 11),
                 STORE_OK);
    cr_assert_gt(last_event(), ev);
    ev = last_event();
    cr_assert_eq(store_gen_progress(st, c, "w1", NULL, 30, T0 + 60000, T0 + 12), STORE_OK);
    cr_assert_eq(last_event(), ev, "no change, no event");
    cr_assert_eq(store_gen_progress(st, c, "w2", NULL, 50, T0 + 60000, T0 + 12), STORE_ECONFLICT);
    cr_assert_eq(store_gen_progress(st, "gen_nope", "w1", NULL, 50, 0, T0), STORE_ENOTFOUND);
    g = get_gen(c);
    cr_assert_eq(g.progress, 40);
    cr_assert_str_eq(g.stage, STAGE_GENERATING);
    gen_record_free(&g);
    cr_assert_eq(store_gen_renew(st, c, "w1", T0 + 70000), STORE_OK);
    cr_assert_eq(store_gen_renew(st, c, "w2", T0 + 70000), STORE_ECONFLICT);

    json_t *res = json_pack("[s]", "http://x/media/r.jpg");
    cr_assert_eq(store_gen_complete(st, c, "w2", res, T0 + 100), STORE_ECONFLICT);
    cr_assert_eq(store_gen_complete(st, c, "w1", res, T0 + 100), STORE_OK);
    json_decref(res);
    g = get_gen(c);
    cr_assert_eq(g.status, GEN_COMPLETED);
    cr_assert_eq(g.progress, 100);
    cr_assert_eq(g.processing_time, 97);
    cr_assert_eq(json_array_size(g.result_images), 1);
    gen_record_free(&g);
    store_end e = end_of(c, LIVE, GEN_CANCELLED, "late", T0 + 200);
    cr_assert_eq(store_gen_end(st, &e), STORE_ECONFLICT);
    check_ledger();
}

Test(store_pg, requeue_guards_and_sweep_queries)
{
    PG_REQUIRE();
    char uid[ID_LEN], a[ID_LEN], b[ID_LEN];
    pg_make_user(st, "r@example.com", 10, uid);
    cr_assert_eq(create_gen(uid, 2, PRIORITY_NORMAL, T0, true, a), STORE_OK);
    cr_assert_eq(create_gen(uid, 2, PRIORITY_NORMAL, T0 - DAY_MS, false, b), STORE_OK);
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
    store_end e = end_of(a, GEN_MASK(GEN_PROCESSING), GEN_FAILED, "worker lost", T0 + 90000);
    e.guard = expired;
    cr_assert_eq(store_gen_end(st, &e), STORE_OK);
    g = get_gen(a);
    cr_assert_eq(g.status, GEN_FAILED);
    cr_assert_eq(g.processing_time, 90000);
    gen_record_free(&g);

    cr_assert_eq(store_gen_pending_before(st, T0 - DAY_MS, 10, &refs, &n), STORE_OK);
    cr_assert_eq(n, 0);
    free(refs);
    cr_assert_eq(store_gen_pending_before(st, T0, 10, &refs, &n), STORE_OK);
    cr_assert_eq(n, 1);
    cr_assert_str_eq(refs[0].id, b);
    free(refs);
    e = end_of(b, GEN_MASK(GEN_PENDING), GEN_CANCELLED, "expired", T0);
    cr_assert_eq(store_gen_end(st, &e), STORE_OK);
    cr_assert_eq(balance(uid), 10);
    check_ledger();
}

Test(store_pg, release_hands_back_without_retry)
{
    PG_REQUIRE();
    char uid[ID_LEN], a[ID_LEN];
    pg_make_user(st, "rel@example.com", 10, uid);
    cr_assert_eq(create_gen(uid, 1, PRIORITY_NORMAL, T0, true, a), STORE_OK);
    gen_record g;
    cr_assert_eq(store_gen_claim(st, "w1", T0 + 1, LEASE, &g), STORE_OK);
    gen_record_free(&g);
    cr_assert_eq(store_gen_release(st, "w1", T0 + 2), STORE_OK);
    g = get_gen(a);
    cr_assert_str_eq(g.stage, STAGE_QUEUED);
    cr_assert_eq(g.retry_count, 0);
    cr_assert_eq(g.queue_position, 1);
    gen_record_free(&g);
}

Test(store_pg, list_pagination_filter_and_stats)
{
    PG_REQUIRE();
    char uid[ID_LEN], ids[5][ID_LEN];
    pg_make_user(st, "list@example.com", 10, uid);
    for (int i = 0; i < 5; i++)
        cr_assert_eq(create_gen(uid, 1, PRIORITY_NORMAL, T0 + i * 1000, i % 2 == 0, ids[i]),
                     STORE_OK);
    gen_record *arr = NULL;
    size_t n = 0;
    char *next = NULL;
    cr_assert_eq(store_gen_list(st, uid, -1, NULL, 2, &arr, &n, &next), STORE_OK);
    cr_assert_eq(n, 2);
    cr_assert_str_eq(arr[0].id, ids[4]);
    cr_assert_str_eq(arr[1].id, ids[3]);
    cr_assert_eq(arr[0].queue_position, 3);
    for (size_t i = 0; i < n; i++)
        gen_record_free(&arr[i]);
    free(arr);
    cr_assert_not_null(next);
    char *cur = next;
    cr_assert_eq(store_gen_list(st, uid, -1, cur, 10, &arr, &n, &next), STORE_OK);
    free(cur);
    cr_assert_eq(n, 3);
    cr_assert_str_eq(arr[2].id, ids[0]);
    cr_assert_null(next);
    for (size_t i = 0; i < n; i++)
        gen_record_free(&arr[i]);
    free(arr);
    cr_assert_eq(store_gen_list(st, uid, GEN_PENDING, NULL, 10, &arr, &n, &next), STORE_OK);
    cr_assert_eq(n, 2);
    for (size_t i = 0; i < n; i++)
        gen_record_free(&arr[i]);
    free(arr);
    user_stats stats;
    cr_assert_eq(store_user_stats(st, uid, T0 + 2000, &stats), STORE_OK);
    cr_assert_eq(stats.total_generations, 5);
    cr_assert_eq(stats.this_month, 3);
    cr_assert_eq(stats.completed, 0);
}

/* ---- events ---- */

/* Parallel tests share the notification channel: count only our user. */
static pthread_mutex_t hook_mu = PTHREAD_MUTEX_INITIALIZER;
static char hook_user[ID_LEN];
static int64_t hook_last;

static void hook(int64_t id, const char *user, void *ctx)
{
    (void)ctx;
    pthread_mutex_lock(&hook_mu);
    if (user && strcmp(user, hook_user) == 0 && id > hook_last) hook_last = id;
    pthread_mutex_unlock(&hook_mu);
}

Test(store_pg, events_carry_codec_data_and_call_the_hook)
{
    PG_REQUIRE();
    char uid[ID_LEN], gid[ID_LEN];
    pg_make_user(st, "ev@example.com", 5, uid);
    pthread_mutex_lock(&hook_mu);
    snprintf(hook_user, sizeof hook_user, "%s", uid);
    pthread_mutex_unlock(&hook_mu);
    store_set_commit_hook(st, hook, NULL);
    int64_t before = last_event();
    cr_assert_eq(create_gen(uid, 2, PRIORITY_NORMAL, T0, false, gid), STORE_OK);
    store_event *ev = NULL;
    size_t n = 0;
    cr_assert_eq(store_events_after(st, uid, NULL, before, 10, &ev, &n), STORE_OK);
    cr_assert_eq(n, 2);
    cr_assert_str_eq(ev[0].type, "generation");
    cr_assert_str_eq(ev[0].generation_id, gid);
    json_t *j = json_loads(ev[0].data, 0, NULL);
    cr_assert_str_eq(json_string_value(json_object_get(j, "status")), "pending");
    json_decref(j);
    cr_assert_str_eq(ev[1].type, "balance");
    cr_assert_str_eq(ev[1].data, "{\"tokenBalance\":3}");
    pthread_mutex_lock(&hook_mu);
    cr_assert_eq(hook_last, ev[1].id, "the hook is called after the commit, with the user");
    pthread_mutex_unlock(&hook_mu);
    store_events_free(ev, n);

    cr_assert_eq(store_gen_start(st, gid, T0 + 1), STORE_OK);
    cr_assert_eq(store_events_after(st, uid, gid, before, 10, &ev, &n), STORE_OK);
    cr_assert_eq(n, 2, "balance events are skipped for one generation");
    store_events_free(ev, n);
    store_event latest;
    cr_assert_eq(store_events_latest(st, gid, &latest), STORE_OK);
    j = json_loads(latest.data, 0, NULL);
    cr_assert_str_eq(json_string_value(json_object_get(j, "status")), "processing");
    json_decref(j);
    free(latest.data);
    cr_assert_eq(store_events_latest(st, "gen_nope", &latest), STORE_ENOTFOUND);
    store_set_commit_hook(st, NULL, NULL);
}

/* ---- concurrency ---- */

typedef struct creator {
    const char *user;
    const store_idem *idem;
    _Atomic int *ok;
    _Atomic int *poor;
    _Atomic int *replay;
} creator;

static void *creator_main(void *arg)
{
    creator *c = arg;
    for (int i = 0; i < 10; i++) {
        gen_record g;
        make_gen(&g, c->user, 1, PRIORITY_NORMAL, now_ms());
        char *resp = NULL;
        int rc = store_gen_create(st, &g, false, c->idem, &resp, NULL);
        free(resp);
        gen_record_free(&g);
        if (rc == STORE_OK) atomic_fetch_add(c->ok, 1);
        if (rc == STORE_EINSUFFICIENT) atomic_fetch_add(c->poor, 1);
        if (rc == STORE_EREPLAY) atomic_fetch_add(c->replay, 1);
    }
    return NULL;
}

static void run_creators(const char *user, const store_idem *idem, int *ok, int *poor, int *replay)
{
    _Atomic int a = 0, b = 0, c = 0;
    creator cr = {user, idem, &a, &b, &c};
    pthread_t th[16];
    for (int i = 0; i < 16; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, creator_main, &cr), 0);
    for (int i = 0; i < 16; i++)
        pthread_join(th[i], NULL);
    *ok = a;
    *poor = b;
    *replay = c;
}

Test(store_pg, concurrent_creates_never_overdraw)
{
    PG_REQUIRE();
    char uid[ID_LEN];
    pg_make_user(st, "race@example.com", 50, uid);
    int ok, poor, replay;
    run_creators(uid, NULL, &ok, &poor, &replay);
    cr_assert_eq(ok, 50);
    cr_assert_eq(poor, 110);
    cr_assert_eq(balance(uid), 0);
    check_ledger();
}

Test(store_pg, concurrent_creates_with_one_key_charge_once)
{
    PG_REQUIRE();
    char uid[ID_LEN];
    pg_make_user(st, "race-idem@example.com", 50, uid);
    store_idem idem = {"same-key", "same-hash", "{\"first\":true}", 201, 0};
    int ok, poor, replay;
    run_creators(uid, &idem, &ok, &poor, &replay);
    cr_assert_eq(ok, 1);
    cr_assert_eq(replay, 159);
    cr_assert_eq(balance(uid), 49);
    check_ledger();
}

/* ---- migrations and connections ---- */

static void *open_close(void *arg)
{
    (void)arg;
    store_t *s = pg_store_open(1);
    store_close(s);
    return NULL;
}

Test(store_pg, migrations_concurrent_idempotent_and_newer_refused)
{
    PG_REQUIRE();
    /* st created the schema; a fresh one for the concurrent first opens. */
    store_close(st);
    st = NULL;
    pg_fixture_fini();
    pg_fixture_init();
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, open_close, NULL), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    cr_assert_eq(pg_sql_int("SELECT COUNT(*) FROM schema_migrations"), 1);
    st = pg_store_open(2);
    cr_assert_eq(store_migrate(st), STORE_OK);

    PGconn *c = pg_raw();
    pg_raw_exec(c, "INSERT INTO schema_migrations VALUES (999, '999_future', 0)");
    PQfinish(c);
    store_options opt = {.codec = &fixture_codec};
    store_t *s = NULL;
    char *err = NULL;
    cr_assert_eq(store_open(pg_url, &opt, &s, &err), STORE_ERR);
    cr_assert_null(s);
    cr_assert_not_null(strstr(err, "newer"), "%s", err);
    free(err);
}

Test(store_pg, unreachable_server_is_unavailable_quickly)
{
    PG_REQUIRE();
    store_options opt = {.codec = &fixture_codec};
    store_t *s = NULL;
    char *err = NULL;
    int64_t t0 = mono_ms();
    int rc = store_open("postgres://stylestudio:s3cret-pw@127.0.0.1:1/nodb", &opt, &s, &err);
    cr_assert_eq(rc, STORE_EUNAVAILABLE);
    cr_assert_lt(mono_ms() - t0, 5000);
    cr_assert_not_null(err);
    cr_assert_null(strstr(err, "s3cret-pw"), "the password leaked: %s", err);
    cr_assert_not_null(strstr(err, "127.0.0.1"), "%s", err);
    free(err);
    cr_assert_eq(store_open("postgres://[bad", &opt, &s, &err), STORE_ERR);
    free(err);
}

/* A connection the server kills while idle in the pool is replaced; one
 * killed mid-transaction gives STORE_EUNAVAILABLE and writes nothing. The
 * store gets its own application_name so only its backends are killed. */
typedef struct killer {
    const char *sql;
    int delay_ms;
} killer;

static void *killer_main(void *arg)
{
    killer *k = arg;
    usleep((useconds_t)k->delay_ms * 1000);
    PGconn *c = PQconnectdb(pg_url);
    PQclear(PQexec(c, k->sql));
    PQfinish(c);
    return NULL;
}

Test(store_pg, killed_connections_reconnect_and_roll_back)
{
    PG_REQUIRE();
    char url[sizeof pg_url + 128], app[96], sql[512];
    snprintf(app, sizeof app, "kill_%s", pg_schema);
    snprintf(url, sizeof url, "%s&application_name=%s", pg_url, app);
    store_options opt = {.codec = &fixture_codec, .pool_size = 2};
    store_t *s = NULL;
    char *err = NULL;
    cr_assert_eq(store_open(url, &opt, &s, &err), STORE_OK, "%s", err ? err : "?");
    char uid[ID_LEN];
    pg_make_user(s, "kill@example.com", 5, uid);

    /* Idle in the pool (and the listener): terminated, then used again. */
    snprintf(sql, sizeof sql,
             "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity"
             " WHERE application_name = '%s'",
             app);
    cr_assert_geq(pg_sql_int(sql), 2);
    usleep(100 * 1000);
    user_record u;
    cr_assert_eq(store_user_get(s, uid, &u), STORE_OK, "not reconnected");
    int64_t bal = 0;
    cr_assert_eq(store_user_credit(s, uid, 1, "grant", NULL, &bal), STORE_OK);
    cr_assert_eq(bal, 6);

    /* Mid-transaction: hold the user's event lock so the credit waits
     * inside its transaction (its balance already updated), then kill it. */
    PGconn *c = pg_raw();
    pg_raw_exec(c, "BEGIN");
    snprintf(sql, sizeof sql, "SELECT pg_advisory_xact_lock(%d, hashtext('%s'))",
             1398079489 /* STORE_PG_EVENT_LOCK_CLASS */, uid);
    pg_raw_exec(c, sql);
    char kill[512];
    snprintf(kill, sizeof kill,
             "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
             " WHERE application_name = '%s' AND wait_event = 'advisory'",
             app);
    killer k = {kill, 500};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, killer_main, &k), 0);
    int64_t t0 = mono_ms();
    cr_assert_eq(store_user_credit(s, uid, 3, "grant", NULL, &bal), STORE_EUNAVAILABLE);
    cr_assert_lt(mono_ms() - t0, 5000);
    pthread_join(th, NULL);
    pg_raw_exec(c, "ROLLBACK");
    PQfinish(c);
    cr_assert_eq(store_user_get(s, uid, &u), STORE_OK);
    cr_assert_eq(u.token_balance, 6, "the killed transaction left a write behind");
    cr_assert_eq(store_user_credit(s, uid, 1, "grant", NULL, &bal), STORE_OK);
    cr_assert_eq(bal, 7);
    store_close(s);
    check_ledger();
}
