/*
 * test_store_pg — what only the PostgreSQL store has: many connections
 * racing one Idempotency-Key, migrations run by processes that start
 * together, a newer schema refused, an unreachable server, and connections
 * killed while idle or mid-transaction, webhook deliveries claimed by many
 * stores at once (FOR UPDATE SKIP LOCKED). The store's behaviour on both
 * backends is test_store.c (run on PostgreSQL with
 * STYLESTUDIO_TEST_STORE=postgres); event ordering across transactions is
 * test_store_pg_order.c. Needs STYLESTUDIO_TEST_PG_URL (skips without it).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "pg_fixture.h"

#define T0 1700000000000LL
#define LEASE 30000

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

static void check_ledger(void)
{
    fixture_check_ledger(pg_sql_int);
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
        fixture_gen(&g, c->user, 1, PRIORITY_NORMAL, now_ms());
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
    cr_assert_eq(pg_sql_int("SELECT COUNT(*) FROM schema_migrations"), 10);
    st = pg_store_open(2);
    cr_assert_eq(store_migrate(st), STORE_OK);

    PGconn *c = pg_raw();
    pg_raw_exec(c, "INSERT INTO schema_migrations VALUES (999, '999_future', 0)");
    PQfinish(c);
    store_options opt = {.codec = &gen_record_codec};
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
    store_options opt = {.codec = &gen_record_codec};
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
    store_options opt = {.codec = &gen_record_codec, .pool_size = 2};
    store_t *s = NULL;
    char *err = NULL;
    cr_assert_eq(store_open(url, &opt, &s, &err), STORE_OK, "%s", err ? err : "?");
    char uid[ID_LEN];
    pg_make_user(s, "kill@example.com", 5, uid);

    /* Idle in the pool (and the listener): terminated, then used again.
     * The listener connects from its own thread, so it may not be in
     * pg_stat_activity yet: wait for both backends before killing them. */
    snprintf(sql, sizeof sql, "SELECT COUNT(*) FROM pg_stat_activity WHERE application_name = '%s'",
             app);
    for (int64_t until = mono_ms() + 5000; pg_sql_int(sql) < 2 && mono_ms() < until;)
        usleep(20 * 1000);
    snprintf(sql, sizeof sql,
             "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity"
             " WHERE application_name = '%s'",
             app);
    cr_assert_geq(pg_sql_int(sql), 2, "the pool connection and the listener were not both open");
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

/* ---- webhook deliveries: claims by many processes ---- */

#define DELIVERIES 60
#define CLAIMERS 6

static char claimed[DELIVERIES * 2][ID_LEN];
static _Atomic int nclaimed;

static void *claimer_main(void *arg)
{
    store_t *s = arg; /* its own store: its own connections, as another process */
    for (;;) {
        char lease[ID_LEN];
        ids_new("lse", lease);
        store_delivery *d = NULL;
        size_t n = 0;
        cr_assert_eq(store_delivery_claim(s, lease, T0 + 100, LEASE, 4, &d, &n), STORE_OK);
        for (size_t i = 0; i < n; i++) {
            int k = atomic_fetch_add(&nclaimed, 1);
            if (k < DELIVERIES * 2) memcpy(claimed[k], d[i].id, ID_LEN);
        }
        store_deliveries_free(d, n);
        if (n == 0) return NULL;
    }
}

Test(store_pg, concurrent_delivery_claims_never_claim_one_twice)
{
    PG_REQUIRE();
    char uid[ID_LEN];
    pg_make_user(st, "claims@example.com", 0, uid);
    store_webhook w = {.url = "https://hooks.example.com/in",
                       .events = "balance.changed",
                       .secret = "whsec_c2VjcmV0",
                       .created_at = T0};
    ids_new("whk", w.id);
    snprintf(w.user_id, sizeof w.user_id, "%s", uid);
    cr_assert_eq(store_webhook_create(st, &w), STORE_OK);
    store_delivery_new d[DELIVERIES];
    char ids[DELIVERIES][ID_LEN];
    for (int i = 0; i < DELIVERIES; i++) {
        ids_new("msg", ids[i]);
        d[i] = (store_delivery_new){ids[i], i + 1, "balance.changed", "{}"};
    }
    cr_assert_eq(store_webhook_advance(st, w.id, DELIVERIES, d, DELIVERIES, T0), STORE_OK);
    store_t *s[CLAIMERS];
    pthread_t th[CLAIMERS];
    for (int i = 0; i < CLAIMERS; i++)
        s[i] = pg_store_open(2);
    for (int i = 0; i < CLAIMERS; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, claimer_main, s[i]), 0);
    for (int i = 0; i < CLAIMERS; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < CLAIMERS; i++)
        store_close(s[i]);
    cr_assert_eq(atomic_load(&nclaimed), DELIVERIES, "each delivery claimed exactly once");
    for (int i = 0; i < DELIVERIES; i++)
        for (int j = i + 1; j < DELIVERIES; j++)
            cr_assert_str_neq(claimed[i], claimed[j]);
}
