/*
 * test_store_pg_order — one user's event ids follow commit order on
 * PostgreSQL (store.h, store_events_after), with deliberately overlapping
 * transactions: a raw libpq transaction A takes an event id for user U the
 * way the store does (the per-user advisory lock, then the row) and holds
 * it open while the store, from another thread, writes an event for U (B).
 * B must wait for A, so after both commit B's id is above A's, and a reader
 * that has seen B's id (after_id = B - 1 .. ) has A's already. A control
 * shows the anomaly the lock prevents, and another user's events must not
 * wait for U's open transaction. Needs STYLESTUDIO_TEST_PG_URL.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "pg_fixture.h"
#include "store_pg.h"

static store_t *st;

static void setup(void)
{
    pg_fixture_init();
    st = pg_url[0] ? pg_store_open(4) : NULL;
}

static void teardown(void)
{
    store_close(st);
    st = NULL;
    pg_fixture_fini();
}

TestSuite(store_pg_order, .init = setup, .fini = teardown, .timeout = 60);

/* ---- helpers ---- */

/* Transaction A on a raw connection: BEGIN, the store's event lock for
 * user (unless lock is false), one balance event row. Returns its id; the
 * transaction stays open. */
static int64_t raw_event_begin(PGconn *c, const char *user, bool lock)
{
    pg_raw_exec(c, "BEGIN");
    char sql[512];
    if (lock) {
        snprintf(sql, sizeof sql, "SELECT pg_advisory_xact_lock(%d, hashtext('%s'))",
                 STORE_PG_EVENT_LOCK_CLASS, user);
        pg_raw_exec(c, sql);
    }
    snprintf(sql, sizeof sql,
             "INSERT INTO events (user_id, type, data, created_at)"
             " VALUES ('%s', 'balance', '{\"tokenBalance\":0}', 0) RETURNING id",
             user);
    return pg_raw_int(c, sql);
}

/* B: a store call writing one balance event for a user, on its own thread. */
typedef struct writer {
    pthread_t thread;
    const char *user;
    _Atomic bool done;
    int rc;
    int64_t balance;
} writer;

static void *writer_main(void *arg)
{
    writer *w = arg;
    w->rc = store_user_credit(st, w->user, 1, "grant", "order test", &w->balance);
    atomic_store(&w->done, true);
    return NULL;
}

static void writer_start(writer *w, const char *user)
{
    memset(w, 0, sizeof *w);
    w->user = user;
    cr_assert_eq(pthread_create(&w->thread, NULL, writer_main, w), 0);
}

/* Waits up to ms for w to finish; whether it did. */
static bool writer_wait(writer *w, int ms)
{
    for (int i = 0; i < ms / 10 && !atomic_load(&w->done); i++)
        usleep(10 * 1000);
    return atomic_load(&w->done);
}

/* The ids of the user's events with id > after, oldest first, into ids
 * (at most cap); returns how many. */
static size_t read_ids(const char *user, int64_t after, int64_t *ids, size_t cap)
{
    store_event *ev = NULL;
    size_t n = 0;
    cr_assert_eq(store_events_after(st, user, NULL, after, 100, &ev, &n), STORE_OK);
    size_t k = 0;
    for (size_t i = 0; i < n && k < cap; i++)
        ids[k++] = ev[i].id;
    store_events_free(ev, n);
    return k;
}

static int64_t newest_id(const char *user)
{
    int64_t ids[64];
    size_t n = read_ids(user, 0, ids, 64);
    return n ? ids[n - 1] : 0;
}

/* ---- tests ---- */

Test(store_pg_order, same_user_waits_for_the_open_transaction)
{
    PG_REQUIRE();
    char u[ID_LEN];
    pg_make_user(st, "order-u@example.com", 5, u);
    int64_t before = newest_id(u);

    PGconn *a = pg_raw();
    int64_t a_id = raw_event_begin(a, u, true);
    cr_assert_gt(a_id, before);

    writer b;
    writer_start(&b, u);
    /* B has its balance update done and now waits for U's event lock. */
    cr_assert_not(writer_wait(&b, 700), "B committed while A still held U's event lock");
    /* Nothing of B is visible, and A's row is not visible either yet. */
    cr_assert_eq(newest_id(u), before);

    pg_raw_exec(a, "COMMIT");
    cr_assert(writer_wait(&b, 10000), "B did not finish after A committed");
    pthread_join(b.thread, NULL);
    cr_assert_eq(b.rc, STORE_OK);
    cr_assert_eq(b.balance, 6);

    int64_t ids[64];
    size_t n = read_ids(u, before, ids, 64);
    cr_assert_eq(n, 2, "expected A's and B's events, got %zu", n);
    cr_assert_eq(ids[0], a_id);
    int64_t b_id = ids[1];
    cr_assert_gt(b_id, a_id, "B's id %lld is not above A's %lld", (long long)b_id, (long long)a_id);
    /* A reader resuming anywhere below B's id gets A's event first. */
    for (int64_t after = before; after < b_id; after++) {
        int64_t got[64];
        size_t k = read_ids(u, after, got, 64);
        if (after < a_id) {
            cr_assert_eq(k, 2);
            cr_assert_eq(got[0], a_id);
        } else {
            cr_assert_eq(k, 1);
            cr_assert_eq(got[0], b_id);
        }
    }
    /* And a reader that has seen B's id has nothing left to miss. */
    cr_assert_eq(read_ids(u, b_id, ids, 64), 0);
    PQfinish(a);
}

Test(store_pg_order, gen_create_waits_too)
{
    PG_REQUIRE();
    char u[ID_LEN];
    pg_make_user(st, "order-gen@example.com", 5, u);
    int64_t before = newest_id(u);
    PGconn *a = pg_raw();
    int64_t a_id = raw_event_begin(a, u, true);

    /* Two store transactions at once for the same user: both wait. */
    writer b1, b2;
    writer_start(&b1, u);
    writer_start(&b2, u);
    cr_assert_not(writer_wait(&b1, 500));
    cr_assert_not(writer_wait(&b2, 10));
    pg_raw_exec(a, "COMMIT");
    cr_assert(writer_wait(&b1, 10000) && writer_wait(&b2, 10000));
    pthread_join(b1.thread, NULL);
    pthread_join(b2.thread, NULL);
    cr_assert_eq(b1.rc, STORE_OK);
    cr_assert_eq(b2.rc, STORE_OK);
    int64_t ids[64];
    size_t n = read_ids(u, before, ids, 64);
    cr_assert_eq(n, 3);
    cr_assert_eq(ids[0], a_id);
    cr_assert(ids[0] < ids[1] && ids[1] < ids[2]);
    PQfinish(a);
}

Test(store_pg_order, other_users_do_not_wait)
{
    PG_REQUIRE();
    char u[ID_LEN], v[ID_LEN];
    pg_make_user(st, "order-u2@example.com", 5, u);
    pg_make_user(st, "order-v2@example.com", 5, v);
    int64_t v_before = newest_id(v);

    PGconn *a = pg_raw();
    raw_event_begin(a, u, true);
    writer b;
    writer_start(&b, v);
    cr_assert(writer_wait(&b, 5000), "V's event waited for U's open transaction");
    pthread_join(b.thread, NULL);
    cr_assert_eq(b.rc, STORE_OK);
    int64_t ids[8];
    cr_assert_eq(read_ids(v, v_before, ids, 8), 1);
    pg_raw_exec(a, "ROLLBACK");
    PQfinish(a);
}

/* The control: without the lock (two raw transactions that do not take
 * it), the later id commits first and a reader past it loses the earlier
 * one. This is the anomaly the store's lock rules out. */
Test(store_pg_order, without_the_lock_ids_commit_out_of_order)
{
    PG_REQUIRE();
    char u[ID_LEN];
    pg_make_user(st, "order-ctl@example.com", 0, u);
    PGconn *a = pg_raw(), *b = pg_raw();
    int64_t a_id = raw_event_begin(a, u, false);
    int64_t b_id = raw_event_begin(b, u, false);
    cr_assert_gt(b_id, a_id);
    pg_raw_exec(b, "COMMIT");
    int64_t seen = newest_id(u);
    cr_assert_eq(seen, b_id);
    pg_raw_exec(a, "COMMIT");
    int64_t ids[8];
    cr_assert_eq(read_ids(u, seen, ids, 8), 0, "resuming after B finds nothing: A is lost");
    PQfinish(a);
    PQfinish(b);
}

/* The commit hook sees other stores' (processes') commits through
 * LISTEN/NOTIFY, with the user, and not its own twice. Tests running in
 * parallel share the channel (it is per database), so the hook counts only
 * the calls for the user under test. */
static pthread_mutex_t hook_mu = PTHREAD_MUTEX_INITIALIZER;
static char hook_user[ID_LEN];
static int64_t hook_last;
static int hook_calls;

static void hook(int64_t id, const char *user, bool queue, void *ctx)
{
    (void)ctx;
    (void)queue;
    pthread_mutex_lock(&hook_mu);
    if (user && strcmp(user, hook_user) == 0) {
        if (id > hook_last) hook_last = id;
        hook_calls++;
    }
    pthread_mutex_unlock(&hook_mu);
}

Test(store_pg_order, listener_reports_other_processes_commits)
{
    PG_REQUIRE();
    store_t *other = pg_store_open(2);
    char u[ID_LEN];
    ids_new("usr", u);
    pthread_mutex_lock(&hook_mu);
    snprintf(hook_user, sizeof hook_user, "%s", u);
    hook_last = 0;
    hook_calls = 0;
    pthread_mutex_unlock(&hook_mu);
    usleep(300 * 1000); /* let st's listener subscribe */
    store_set_commit_hook(st, hook, NULL);
    user_record rec;
    memset(&rec, 0, sizeof rec);
    memcpy(rec.id, u, ID_LEN);
    snprintf(rec.email, sizeof rec.email, "order-listen@example.com");
    rec.created_at = now_ms();
    cr_assert_eq(store_user_create(other, &rec, NULL, 3), STORE_OK);
    int64_t id = newest_id(u);
    cr_assert_gt(id, 0);
    bool seen = false;
    for (int i = 0; i < 500 && !seen; i++) {
        pthread_mutex_lock(&hook_mu);
        seen = hook_last >= id;
        pthread_mutex_unlock(&hook_mu);
        if (!seen) usleep(10 * 1000);
    }
    cr_assert(seen, "st's hook never heard of the other store's commit %lld", (long long)id);
    pthread_mutex_lock(&hook_mu);
    cr_assert_eq(hook_calls, 1);
    hook_calls = 0;
    pthread_mutex_unlock(&hook_mu);

    /* st's own commit: the hook once (from pg_commit, not again from NOTIFY). */
    int64_t bal = 0;
    cr_assert_eq(store_user_credit(st, u, 1, "grant", NULL, &bal), STORE_OK);
    usleep(300 * 1000);
    pthread_mutex_lock(&hook_mu);
    cr_assert_eq(hook_calls, 1);
    cr_assert_eq(hook_last, newest_id(u));
    pthread_mutex_unlock(&hook_mu);
    store_set_commit_hook(st, NULL, NULL);
    store_close(other);
}
