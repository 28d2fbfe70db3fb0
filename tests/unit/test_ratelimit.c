/*
 * test_ratelimit — the rate limits of SPEC §4: the rule syntax, the bucket
 * arithmetic (pure, on given times), and take/give/peek through the store
 * on SQLite and, with STYLESTUDIO_TEST_PG_URL set, on PostgreSQL: the
 * burst, refill on the clock seam, give-back, plans, state kept across a
 * reopen, and concurrent takes from two store handles (two processes'
 * worth) never passing more than the bucket holds.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pg_fixture.h"
#include "ratelimit.h"

/* ---- the syntax ---- */

static ratelimit_rule parse_ok(const char *text, int64_t def_burst)
{
    ratelimit_rule r;
    char *err = NULL;
    cr_assert_eq(ratelimit_parse("rate-free", text, def_burst, &r, &err), 0, "%s: %s", text,
                 err ? err : "");
    return r;
}

Test(ratelimit, parse_forms)
{
    ratelimit_rule r = parse_ok("30/h", 10);
    cr_assert_eq(r.units, 30);
    cr_assert_eq(r.period_ms, 3600000);
    cr_assert_eq(r.burst, 10);
    r = parse_ok("300/h,30", 10);
    cr_assert_eq(r.units, 300);
    cr_assert_eq(r.burst, 30);
    r = parse_ok("5/s,2", 10);
    cr_assert_eq(r.period_ms, 1000);
    cr_assert_eq(r.burst, 2);
    r = parse_ok("7/m", 3);
    cr_assert_eq(r.period_ms, 60000);
    cr_assert_eq(r.burst, 3);
    r = parse_ok("0", 10);
    cr_assert_eq(r.units, 0, "0 turns the limit off");
}

Test(ratelimit, parse_refuses_bad_syntax)
{
    const char *bad[] = {"",      "x",         "30",    "30/",    "30/d",         "30/hh",
                         "-1/h",  "0/h",       "30/h,", "30/h,0", "30/h,x",       "/h",
                         " 30/h", "30/h,10,2", "1.5/s", "30 /h",  "99999999999/s"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ratelimit_rule r;
        char *err = NULL;
        cr_assert_eq(ratelimit_parse("rate-pro", bad[i], 10, &r, &err), -1, "accepted \"%s\"",
                     bad[i]);
        cr_assert(err && strstr(err, "--rate-pro") && strstr(err, "N/s"), "message: %s",
                  err ? err : "(none)");
        free(err);
    }
}

Test(ratelimit, configure_picks_rule_by_plan)
{
    char *err = NULL;
    cr_assert_eq(ratelimit_configure("30/h", "300/h", &err), 0);
    cr_assert_eq(ratelimit_rule_for("free")->burst, 10, "SPEC default burst of free");
    cr_assert_eq(ratelimit_rule_for("pro")->burst, 30, "SPEC default burst of pro");
    cr_assert_eq(ratelimit_rule_for("pro")->units, 300);
    cr_assert_eq(ratelimit_configure("30/h", "nope", &err), -1);
    cr_assert(strstr(err, "--rate-pro"));
    free(err);
    cr_assert_eq(ratelimit_rule_for("free")->units, 0, "a refused configuration sets no limit");
}

/* ---- the arithmetic ---- */

#define T0 1700000000000LL

Test(ratelimit, burst_then_refused_then_refills)
{
    ratelimit_rule r = {.units = 5, .period_ms = 1000, .burst = 2}; /* one unit per 200 ms */
    store_bucket b = {0};
    ratelimit_verdict v;
    cr_assert(ratelimit_step(&r, &b, 1, T0, &v));
    cr_assert(v.applies && v.allowed);
    cr_assert_eq(v.limit, 2);
    cr_assert_eq(v.remaining, 1);
    cr_assert_eq(v.reset_s, 1, "200 ms to the next unit rounds up to 1 s");
    cr_assert(ratelimit_step(&r, &b, 1, T0, &v));
    cr_assert_eq(v.remaining, 0);
    cr_assert_not(ratelimit_step(&r, &b, 1, T0 + 100, &v), "refused: nothing written");
    cr_assert_not(v.allowed);
    cr_assert_eq(v.retry_after, 1);
    cr_assert_eq(v.remaining, 0);
    cr_assert(ratelimit_step(&r, &b, 1, T0 + 200, &v), "one unit back after 200 ms");
    cr_assert_eq(v.remaining, 0);
    /* A long pause refills to the burst, never past it. */
    cr_assert_not(ratelimit_step(&r, &b, 0, T0 + 3600000, &v));
    cr_assert_eq(v.remaining, 2);
    cr_assert_eq(v.reset_s, 0, "a full bucket has nothing to wait for");
}

Test(ratelimit, hourly_retry_after_and_reset)
{
    ratelimit_rule r = {.units = 30, .period_ms = 3600000, .burst = 10}; /* a unit per 120 s */
    store_bucket b = {0};
    ratelimit_verdict v;
    for (int i = 0; i < 10; i++)
        cr_assert(ratelimit_step(&r, &b, 1, T0, &v));
    cr_assert_eq(v.remaining, 0);
    cr_assert_eq(v.reset_s, 120);
    cr_assert_not(ratelimit_step(&r, &b, 1, T0 + 30000, &v));
    cr_assert_eq(v.retry_after, 90, "120 s per unit, 30 s already passed");
    cr_assert_eq(v.reset_s, 90);
    cr_assert_not(ratelimit_step(&r, &b, 3, T0 + 30000, &v));
    cr_assert_eq(v.retry_after, 330, "three units: 360 s minus the 30 s gone");
    cr_assert(ratelimit_step(&r, &b, 1, T0 + 120000, &v));
}

Test(ratelimit, give_back_is_exact_and_capped)
{
    ratelimit_rule r = {.units = 30, .period_ms = 3600000, .burst = 10};
    store_bucket b = {0}, same;
    ratelimit_verdict v;
    for (int i = 0; i < 5; i++)
        ratelimit_step(&r, &b, 1, T0, &v);
    same = b;
    ratelimit_step(&r, &same, 0, T0 + 1000, &v);
    int64_t before = v.remaining;
    cr_assert(ratelimit_step(&r, &b, 1, T0 + 500, &v));
    cr_assert(ratelimit_step(&r, &b, -1, T0 + 1000, &v));
    cr_assert_eq(v.remaining, before, "take then give leaves the bucket as it was");
    /* On a full bucket a give-back invents nothing. */
    store_bucket full = {0};
    cr_assert(ratelimit_step(&r, &full, -3, T0, &v));
    cr_assert_eq(v.remaining, 10);
    cr_assert(full.tokens <= 10.0);
}

Test(ratelimit, off_and_clock_behind)
{
    ratelimit_rule off = {0};
    store_bucket b = {0};
    ratelimit_verdict v;
    cr_assert_not(ratelimit_step(&off, &b, 1, T0, &v));
    cr_assert(v.allowed);
    cr_assert_not(v.applies, "no headers without a limit");
    ratelimit_rule r = {.units = 1, .period_ms = 1000, .burst = 1};
    cr_assert(ratelimit_step(&r, &b, 1, T0, &v));
    /* Another process whose clock is behind refills nothing and keeps the
     * newer time, so no interval is counted twice. */
    cr_assert_not(ratelimit_step(&r, &b, 1, T0 - 5000, &v));
    cr_assert(ratelimit_step(&r, &b, 1, T0 + 1000, &v));
    cr_assert_eq(b.updated_at, T0 + 1000);
}

Test(ratelimit, more_units_than_the_burst_never_pass)
{
    ratelimit_rule r = {.units = 1, .period_ms = 1000, .burst = 3};
    store_bucket b = {0};
    ratelimit_verdict v;
    cr_assert_not(ratelimit_step(&r, &b, 4, T0, &v));
    cr_assert_not(v.allowed);
    cr_assert_eq(v.remaining, 3);
    cr_assert(ratelimit_step(&r, &b, 3, T0, &v));
}

/* ---- through the store, on both backends ---- */

static char dir[64];
static char url[2048];
static store_t *st;
static bool pg_run;
static const store_options opts = {.codec = &gen_record_codec};

static store_t *open_store(void)
{
    store_t *s = NULL;
    char *err = NULL;
    cr_assert_eq(store_open(url, &opts, &s, &err), STORE_OK, "store_open: %s", err ? err : "?");
    return s;
}

static void sqlite_setup(void)
{
    log_min_level = LOG_ERROR + 1;
    cr_assert_eq(ids_init(), 0);
    pg_run = false;
    snprintf(dir, sizeof dir, "/tmp/ss-rate-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(url, sizeof url, "sqlite:%s/test.db", dir);
    st = open_store();
}

static void pg_setup(void)
{
    pg_run = true;
    pg_fixture_init();
    if (!pg_url[0]) return;
    snprintf(url, sizeof url, "%s", pg_url);
    st = open_store();
}

static void teardown(void)
{
    store_close(st);
    st = NULL;
    if (pg_run) {
        pg_fixture_fini();
        return;
    }
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", dir);
}

TestSuite(ratelimit_sqlite, .init = sqlite_setup, .fini = teardown, .timeout = 120);
TestSuite(ratelimit_pg, .init = pg_setup, .fini = teardown, .timeout = 120);

static user_record user(const char *id, const char *plan)
{
    user_record u;
    memset(&u, 0, sizeof u);
    snprintf(u.id, sizeof u.id, "%s", id);
    snprintf(u.plan, sizeof u.plan, "%s", plan);
    return u;
}

static void burst_refill_give_restart(void)
{
    char *err = NULL;
    /* Free refills slowly (1/s): a reopen that takes a few hundred ms
     * (PostgreSQL under ASan) must not refill it on the real clock. */
    cr_assert_eq(ratelimit_configure("1/s,2", "5/s,4", &err), 0);
    user_record f = user("usr_free", "free"), p = user("usr_pro", "pro");
    ratelimit_verdict v;
    cr_assert_eq(ratelimit_take(st, &f, 1, &v), RATELIMIT_OK);
    cr_assert_eq(v.remaining, 1);
    cr_assert_eq(ratelimit_take(st, &f, 1, &v), RATELIMIT_OK);
    cr_assert_eq(ratelimit_take(st, &f, 1, &v), RATELIMIT_EEXCEEDED);
    cr_assert_eq(v.retry_after, 1);
    cr_assert_eq(v.limit, 2);
    /* Pro has its own bucket and burst. */
    for (int i = 0; i < 4; i++)
        cr_assert_eq(ratelimit_take(st, &p, 1, &v), RATELIMIT_OK);
    cr_assert_eq(ratelimit_take(st, &p, 1, &v), RATELIMIT_EEXCEEDED);
    cr_assert_eq(v.limit, 4);
    /* Given back: usable again at once. */
    cr_assert_eq(ratelimit_give(st, &f, 1, &v), RATELIMIT_OK);
    cr_assert_eq(v.remaining, 1);
    cr_assert_eq(ratelimit_take(st, &f, 1, &v), RATELIMIT_OK);
    /* The state outlives the store handle (a restart). */
    store_close(st);
    st = open_store();
    cr_assert_eq(ratelimit_peek(st, &f, &v), RATELIMIT_OK);
    cr_assert_lt(v.remaining, 2, "a reopened store remembers the bucket");
    cr_assert_eq(ratelimit_take(st, &f, 2, &v), RATELIMIT_EEXCEEDED);
    /* The clock seam refills it. */
    util_clock_shift_ms(2000);
    cr_assert_eq(ratelimit_peek(st, &f, &v), RATELIMIT_OK);
    cr_assert_eq(v.remaining, 2);
    cr_assert_eq(v.reset_s, 0);
    cr_assert_eq(ratelimit_take(st, &f, 2, &v), RATELIMIT_OK);
    /* Off: always allowed, no headers, nothing stored. */
    cr_assert_eq(ratelimit_configure("0", "0", &err), 0);
    for (int i = 0; i < 5; i++)
        cr_assert_eq(ratelimit_take(st, &f, 1, &v), RATELIMIT_OK);
    cr_assert_not(v.applies);
}

Test(ratelimit_sqlite, burst_refill_give_restart)
{
    burst_refill_give_restart();
}

Test(ratelimit_pg, burst_refill_give_restart)
{
    PG_REQUIRE();
    burst_refill_give_restart();
}

/* Two store handles (as two processes would have) and 8 threads each race
 * for one bucket of 10 units that refills one unit an hour: exactly 10
 * takes pass, whatever the interleaving. */
#define RACERS 16
#define TRIES 6
static store_t *handles[2];
static atomic_int passed;

static void *racer(void *arg)
{
    store_t *s = handles[(intptr_t)arg % 2];
    user_record u = user("usr_race", "free");
    for (int i = 0; i < TRIES; i++) {
        ratelimit_verdict v;
        int rc = ratelimit_take(s, &u, 1, &v);
        if (rc == RATELIMIT_OK)
            atomic_fetch_add(&passed, 1);
        else if (rc != RATELIMIT_EEXCEEDED)
            return (void *)-1L;
    }
    return NULL;
}

static void concurrent_takes(void)
{
    char *err = NULL;
    cr_assert_eq(ratelimit_configure("1/h,10", "0", &err), 0);
    handles[0] = st;
    handles[1] = open_store();
    atomic_store(&passed, 0);
    pthread_t th[RACERS];
    for (intptr_t i = 0; i < RACERS; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, racer, (void *)i), 0);
    for (int i = 0; i < RACERS; i++) {
        void *r;
        pthread_join(th[i], &r);
        cr_assert_null(r, "a take failed with a store error");
    }
    store_close(handles[1]);
    cr_assert_eq(atomic_load(&passed), 10, "passed %d of a burst of 10", atomic_load(&passed));
}

Test(ratelimit_sqlite, concurrent_takes_pass_exactly_the_burst)
{
    concurrent_takes();
}

Test(ratelimit_pg, concurrent_takes_pass_exactly_the_burst)
{
    PG_REQUIRE();
    concurrent_takes();
}

/* 005_rate_limits from the version before it: the table appears and the
 * rest is untouched. */
Test(ratelimit_sqlite, migrates_from_version_4)
{
    char *err = NULL;
    cr_assert_eq(ratelimit_configure("1/h,1", "0", &err), 0);
    user_record u = user("usr_mig", "free");
    ratelimit_verdict v;
    cr_assert_eq(ratelimit_take(st, &u, 1, &v), RATELIMIT_OK);
    store_close(st);
    st = NULL;
    char db[128];
    snprintf(db, sizeof db, "%s/test.db", dir);
    sqlite3 *h;
    cr_assert_eq(sqlite3_open(db, &h), SQLITE_OK);
    cr_assert_eq(
        sqlite3_exec(
            h,
            "DROP TABLE rate_limits; DROP TABLE templates;"
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
            " DELETE FROM schema_migrations WHERE"
            " version > 4; PRAGMA user_version = 4;",
            NULL, NULL, NULL),
        SQLITE_OK);
    sqlite3_close(h);
    st = open_store();
    cr_assert_eq(ratelimit_take(st, &u, 1, &v), RATELIMIT_OK, "a fresh table: a full bucket");
    cr_assert_eq(ratelimit_take(st, &u, 1, &v), RATELIMIT_EEXCEEDED);
}

/* store_idem_peek: what a create with that key would find, nothing written. */
static void idem_peek(void)
{
    char uid[ID_LEN];
    pg_make_user(st, "idem@example.com", 5, uid);
    gen_record g;
    fixture_gen(&g, uid, 1, PRIORITY_NORMAL, now_ms());
    store_idem idem = {.key = "k1",
                       .request_hash = "h1",
                       .response = "{\"success\":true}",
                       .http_status = 201,
                       .not_before = 0};
    char *resp = NULL;
    int status = 0;
    cr_assert_eq(store_idem_peek(st, uid, &idem, &resp, &status), STORE_OK, "unknown key");
    cr_assert_eq(store_gen_create(st, &g, false, &idem, NULL, NULL), STORE_OK);
    gen_record_free(&g);
    cr_assert_eq(store_idem_peek(st, uid, &idem, &resp, &status), STORE_EREPLAY);
    cr_assert_str_eq(resp, "{\"success\":true}");
    cr_assert_eq(status, 201);
    free(resp);
    store_idem other = idem;
    other.request_hash = "h2";
    cr_assert_eq(store_idem_peek(st, uid, &other, &resp, &status), STORE_EIDEM_MISMATCH);
    other = idem;
    other.not_before = now_ms() + 60000;
    cr_assert_eq(store_idem_peek(st, uid, &other, &resp, &status), STORE_OK, "an expired key");
    char other_user[ID_LEN];
    pg_make_user(st, "idem2@example.com", 5, other_user);
    cr_assert_eq(store_idem_peek(st, other_user, &idem, &resp, &status), STORE_OK,
                 "keys are per user");
}

Test(ratelimit_sqlite, idem_peek)
{
    idem_peek();
}

Test(ratelimit_pg, idem_peek)
{
    PG_REQUIRE();
    idem_peek();
}

/* ---- pruning (the sign-in counters' retention) ---- */

static bool set_now(store_bucket *b, void *ctx)
{
    b->tokens = 1;
    b->updated_at = *(int64_t *)ctx;
    return true;
}

static bool look(store_bucket *b, void *ctx)
{
    *(store_bucket *)ctx = *b;
    return false;
}

/* When key was last written; 0 when it has no row (after a PostgreSQL look
 * it has one, written at 0). */
static int64_t bucket_written_at(const char *key)
{
    store_bucket seen = {0};
    cr_assert_eq(store_bucket_update(st, key, look, &seen), STORE_OK);
    return seen.updated_at;
}

static void prune_by_prefix_and_age(void)
{
    int64_t old = 1000, fresh = 5000, n = -1;
    cr_assert_eq(store_bucket_update(st, "login:e:a@example.com", set_now, &old), STORE_OK);
    cr_assert_eq(store_bucket_update(st, "login:a:127.0.0.1", set_now, &fresh), STORE_OK);
    cr_assert_eq(store_bucket_update(st, "gen:usr_old", set_now, &old), STORE_OK);
    cr_assert_eq(store_buckets_prune(st, "login:", 2000, 100, &n), STORE_OK);
    cr_assert_eq(n, 1, "only the old login: bucket goes");
    cr_assert_eq(bucket_written_at("login:e:a@example.com"), 0, "pruned");
    cr_assert_eq(bucket_written_at("login:a:127.0.0.1"), fresh, "a fresh one stays");
    cr_assert_eq(bucket_written_at("gen:usr_old"), old, "another prefix stays");
    cr_assert_eq(store_buckets_prune(st, "login:", 9000, 100, &n), STORE_OK);
    cr_assert_geq(n, 1, "the fresh one is old by 9000");
    cr_assert_eq(bucket_written_at("login:a:127.0.0.1"), 0, "pruned");
}

Test(ratelimit_sqlite, prune_by_prefix_and_age)
{
    prune_by_prefix_and_age();
}

Test(ratelimit_pg, prune_by_prefix_and_age)
{
    PG_REQUIRE();
    prune_by_prefix_and_age();
}
