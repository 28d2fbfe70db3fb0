/*
 * store_pg — the PostgreSQL store: opening, the connection pool,
 * transactions, statement helpers, migrations, the event log and the
 * LISTEN thread. The users/ledger and generation halves of store.h live in
 * store_pg_user.c and store_pg_gen.c; the store_ops table is at the end.
 *
 * DESIGN. Threads. Any thread may call the store. Each call borrows one
 * connection from a pool of opt->pool_size (default 8), opened lazily, and
 * gives it back when its transaction ends; a caller that finds every
 * connection busy waits at most POOL_WAIT_MS and then gets
 * STORE_EUNAVAILABLE. A borrowed connection is checked before use: if it is
 * gone (PQstatus), or its socket is readable while it should be idle (the
 * server said goodbye, e.g. a restart), it is reopened first; connecting is
 * bounded by connect_timeout=3 (added to the URL unless it sets one) and TCP
 * keepalives bound a dead peer mid-query. A statement that fails because the
 * connection was lost (SQLSTATE class 08, 57P01/57P02/57P03, or the
 * connection going bad) marks it broken, the transaction is abandoned (the
 * server rolls it back) and the call returns STORE_EUNAVAILABLE; the
 * connection is reopened on its next borrow. Each connection caches its
 * prepared statements, keyed by the address of the SQL string literal.
 *
 * Transactions are READ COMMITTED; every guard (status, lease holder,
 * retry count, balance) is part of the WHERE clause of the UPDATE that makes
 * the change, and row counts tell whether it held. Reads and one-statement
 * writes run in autocommit mode (pg_borrow) to save the BEGIN/COMMIT trips.
 *
 * Event order. A sequence hands out ids in insert order, not commit order:
 * if transaction A takes id 10 and B takes 11 but B commits first, a reader
 * that has seen 11 would never look below it and lose 10. So event rows are
 * queued in the transaction (pg_event) and written by pg_commit as its last
 * writes, after taking pg_advisory_xact_lock(STORE_PG_EVENT_LOCK_CLASS,
 * hashtext(user_id)) for each user concerned (in sorted order, so two
 * transactions never deadlock on them; nothing waits for a row lock while
 * holding one). The lock is held to commit, so two transactions writing
 * events of one user take their ids one after the other, in commit order;
 * different users do not serialise. The same transaction sends one
 * pg_notify(STORE_PG_CHANNEL, "<last id> <user>").
 *
 * The listener (store_pg_listen.c). One thread per store holds its own
 * connection (not from the pool) that LISTENs on STORE_PG_CHANNEL and
 * turns each notification into store_base_committed, so this process
 * learns of commits made by other processes at once (the rows stay the
 * truth; a notification is a hint). Notifications sent by this store's own
 * pooled connections are skipped: pg_commit already called the hook for
 * them. After every (re)connect it calls the hook once with the newest
 * event id, since notifications sent while it was away are lost. It
 * reconnects with backoff (100 ms doubling to 5 s) and wakes from a pipe
 * when the store closes.
 *
 * Migrations are the files in schema/postgres/, compiled in by the Makefile
 * (store_pg_migrations[]); each runs in its own transaction under
 * pg_advisory_xact_lock(STORE_PG_MIGRATE_LOCK_CLASS, 0) that also records
 * its version in schema_migrations. A database newer than the binary is
 * refused. The URL's password is never logged: logs name host, port,
 * database and user only.
 */
#include "store_pg.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

/* From $(BUILD)/gen/schema_pg.c. */
struct store_sql_migration {
    int version;
    const char *name;
    const char *sql;
};
extern const struct store_sql_migration store_pg_migrations[];
extern const size_t store_pg_migrations_count;

#define POOL_DEFAULT 8
#define POOL_WAIT_MS 5000
#define DOWN_PROBE_MS 500
#define IDLE_TX_TIMEOUT_MS 30000
#define STMT_CACHE 128
#define MAX_PARAMS 32

#define STR_(x) #x
#define STR(x) STR_(x)

struct pg_conn {
    PGconn *pq;
    bool in_use;
    bool broken; /* lost or in an unknown state: reopen before reuse */
    int pid;     /* backend pid, 0 when closed (the listener skips ours) */
    int nstmt;
    const char *stmt[STMT_CACHE]; /* prepared as "s<index>" */
};

typedef struct pg_store {
    store_t base;                 /* first: a store_t * is a pg_store * */
    const char *kw[10], *val[10]; /* PQconnectdbParams arrays (the last value is url) */
    char *url;                    /* owned; never logged */
    char *where;                  /* "host=... port=... db=... user=..." for logs */
    _Atomic bool down;            /* the last connect failed (log once) */
    _Atomic int64_t next_probe;   /* while down: mono ms of the next connect try */
    pthread_mutex_t pool_mu;
    pthread_cond_t pool_cv; /* CLOCK_MONOTONIC */
    int pool_size;
    pg_conn *conns;
    pg_listener *listener; /* store_pg_listen.c */
} pg_store;

static pg_store *pgs(store_t *s)
{
    return (pg_store *)s;
}

/* ---- connections ---- */

void pg_quiet_notice(void *arg, const char *msg)
{
    (void)arg;
    log_debug("store: postgres: %.*s", (int)strcspn(msg, "\n"), msg);
}

/* A libpq message on one line, into buf. */
static const char *one_line(const char *msg, char *buf, size_t size)
{
    pg_copy(buf, size, msg && *msg ? msg : "unknown error");
    for (char *p = buf; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
    size_t n = strlen(buf);
    while (n && buf[n - 1] == ' ')
        buf[--n] = '\0';
    return buf;
}

static void conn_close(pg_store *s, pg_conn *c)
{
    if (c->pq) PQfinish(c->pq);
    pthread_mutex_lock(&s->pool_mu);
    c->pq = NULL;
    c->pid = 0;
    pthread_mutex_unlock(&s->pool_mu);
    c->broken = false;
    c->nstmt = 0;
}

/* (Re)opens c. STORE_OK, or STORE_EUNAVAILABLE with *err set when err is
 * not NULL (caller frees). */
static int conn_open(pg_store *s, pg_conn *c, char **err)
{
    conn_close(s, c);
    PGconn *pq = PQconnectdbParams(s->kw, s->val, 1);
    if (!pq || PQstatus(pq) != CONNECTION_OK) {
        char msg[512];
        one_line(pq ? PQerrorMessage(pq) : "out of memory", msg, sizeof msg);
        atomic_store(&s->next_probe, mono_ms() + DOWN_PROBE_MS);
        if (!atomic_exchange(&s->down, true))
            log_warn("store: cannot connect to PostgreSQL (%s): %s", s->where, msg);
        if (err) *err = xasprintf("cannot connect to PostgreSQL (%s): %s", s->where, msg);
        PQfinish(pq);
        return STORE_EUNAVAILABLE;
    }
    if (atomic_exchange(&s->down, false))
        log_info("store: PostgreSQL reachable again (%s)", s->where);
    PQsetNoticeProcessor(pq, pg_quiet_notice, NULL);
    /* Our transactions are a few statements long. Should this process
     * stall inside one (or its network vanish), the server ends the session
     * and frees its locks instead of holding up every other process. */
    PQclear(PQexec(pq, "SET idle_in_transaction_session_timeout = '" STR(IDLE_TX_TIMEOUT_MS) "'"));
    pthread_mutex_lock(&s->pool_mu);
    c->pq = pq;
    c->pid = PQbackendPID(pq);
    pthread_mutex_unlock(&s->pool_mu);
    return STORE_OK;
}

/* Whether an idle connection still looks usable: open, and nothing to read
 * (an idle session receives nothing unless the server is closing it). */
static bool conn_usable(pg_conn *c)
{
    if (!c->pq || c->broken || PQstatus(c->pq) != CONNECTION_OK) return false;
    if (PQtransactionStatus(c->pq) != PQTRANS_IDLE) return false;
    struct pollfd p = {.fd = PQsocket(c->pq), .events = POLLIN};
    if (p.fd < 0) return false;
    return poll(&p, 1, 0) == 0;
}

/* ---- the pool ---- */

/* Whether this caller may try to (re)connect now: always while the server
 * is up; while it is down, one caller every DOWN_PROBE_MS, so during an
 * outage the others get STORE_EUNAVAILABLE at once instead of each waiting
 * out connect_timeout. */
static bool may_connect(pg_store *s)
{
    if (!atomic_load(&s->down)) return true;
    int64_t now = mono_ms(), next = atomic_load(&s->next_probe);
    return now >= next &&
           atomic_compare_exchange_strong(&s->next_probe, &next, now + DOWN_PROBE_MS);
}

/* Borrows a connection, waiting at most POOL_WAIT_MS for a free one, and
 * makes sure it works. STORE_OK or STORE_EUNAVAILABLE. */
static int pool_get(pg_store *s, pg_conn **out)
{
    int64_t until = mono_ms() + POOL_WAIT_MS;
    pthread_mutex_lock(&s->pool_mu);
    pg_conn *c = NULL;
    for (;;) {
        for (int i = 0; i < s->pool_size && !c; i++)
            if (!s->conns[i].in_use && s->conns[i].pq) c = &s->conns[i];
        for (int i = 0; i < s->pool_size && !c; i++)
            if (!s->conns[i].in_use) c = &s->conns[i];
        if (c) break;
        if (util_cond_wait_until(&s->pool_cv, &s->pool_mu, until) == ETIMEDOUT) {
            pthread_mutex_unlock(&s->pool_mu);
            log_warn("store: no free PostgreSQL connection within %d ms (pool of %d)", POOL_WAIT_MS,
                     s->pool_size);
            return STORE_EUNAVAILABLE;
        }
    }
    c->in_use = true;
    pthread_mutex_unlock(&s->pool_mu);
    if (!conn_usable(c) && (!may_connect(s) || conn_open(s, c, NULL) != STORE_OK)) {
        if (c->pq) conn_close(s, c);
        pthread_mutex_lock(&s->pool_mu);
        c->in_use = false;
        pthread_cond_signal(&s->pool_cv);
        pthread_mutex_unlock(&s->pool_mu);
        return STORE_EUNAVAILABLE;
    }
    *out = c;
    return STORE_OK;
}

static void pool_put(pg_store *s, pg_conn *c)
{
    /* A connection left inside a transaction (or lost) is not reused as is. */
    if (c->broken || !c->pq || PQtransactionStatus(c->pq) != PQTRANS_IDLE) conn_close(s, c);
    pthread_mutex_lock(&s->pool_mu);
    c->in_use = false;
    pthread_cond_signal(&s->pool_cv);
    pthread_mutex_unlock(&s->pool_mu);
}

bool pg_pool_owns_backend(store_t *base, int pid)
{
    pg_store *s = pgs(base);
    bool own = false;
    pthread_mutex_lock(&s->pool_mu);
    for (int i = 0; i < s->pool_size && !own; i++)
        own = s->conns[i].pid == pid;
    pthread_mutex_unlock(&s->pool_mu);
    return own;
}

/* ---- results ---- */

static bool state_lost(const char *state)
{
    if (!state) return false;
    return strncmp(state, "08", 2) == 0 || strcmp(state, "57P01") == 0 ||
           strcmp(state, "57P02") == 0 || strcmp(state, "57P03") == 0;
}

/* STORE_OK for a result that succeeded, else the STORE_E* code (logged). */
static int result_code(pg_conn *c, const PGresult *r, const char *sql)
{
    ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) return STORE_OK;
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    char msg[512];
    one_line(r ? PQresultErrorMessage(r) : PQerrorMessage(c->pq), msg, sizeof msg);
    if (PQstatus(c->pq) != CONNECTION_OK || state_lost(state)) {
        c->broken = true;
        log_warn("store: PostgreSQL connection lost: %s", msg);
        return STORE_EUNAVAILABLE;
    }
    if (state && strcmp(state, "23505") == 0) {
        log_debug("store: %s", msg);
        return STORE_EDUPLICATE;
    }
    if (state && strcmp(state, "23503") == 0) {
        log_debug("store: %s", msg);
        return STORE_ENOTFOUND;
    }
    log_error("store: %s [%s] (sql: %.120s)", msg, state ? state : "-", sql);
    return STORE_ERR;
}

/* ---- statements ---- */

typedef struct params {
    int n;
    const char *v[MAX_PARAMS];
    char num[MAX_PARAMS][32];
} params;

static int params_bind(params *p, const char *fmt, va_list ap)
{
    p->n = 0;
    for (; fmt && *fmt; fmt++, p->n++) {
        int i = p->n;
        if (i == MAX_PARAMS) {
            log_error("store: more than %d parameters", MAX_PARAMS);
            return STORE_ERR;
        }
        p->v[i] = p->num[i];
        switch (*fmt) {
        case 's':
            p->v[i] = va_arg(ap, const char *);
            break;
        case 'i':
            snprintf(p->num[i], sizeof p->num[i], "%d", va_arg(ap, int));
            break;
        case 'I':
            snprintf(p->num[i], sizeof p->num[i], "%lld", (long long)va_arg(ap, int64_t));
            break;
        case 'Z': {
            int64_t v = va_arg(ap, int64_t);
            if (v)
                snprintf(p->num[i], sizeof p->num[i], "%lld", (long long)v);
            else
                p->v[i] = NULL;
            break;
        }
        case 'd':
            snprintf(p->num[i], sizeof p->num[i], "%.17g", va_arg(ap, double));
            break;
        default:
            log_error("store: bad parameter format '%c'", *fmt);
            return STORE_ERR;
        }
    }
    return STORE_OK;
}

/* The cache slot of sql on c, preparing it on first use: >= 0, or -1 when
 * the cache is full (run it unprepared). *rc gets the code of a failed
 * PQprepare (then the slot is meaningless). */
static int stmt_slot(pg_conn *c, const char *sql, int nparams, int *rc)
{
    *rc = STORE_OK;
    for (int i = 0; i < c->nstmt; i++)
        if (c->stmt[i] == sql) return i;
    if (c->nstmt == STMT_CACHE) return -1;
    char name[16];
    snprintf(name, sizeof name, "s%d", c->nstmt);
    PGresult *r = PQprepare(c->pq, name, sql, nparams, NULL);
    *rc = result_code(c, r, sql);
    PQclear(r);
    if (*rc != STORE_OK) return -1;
    c->stmt[c->nstmt] = sql;
    return c->nstmt++;
}

static int vquery(pg_tx *t, PGresult **res, const char *sql, const char *fmt, va_list ap)
{
    params p;
    if (!t->c) return STORE_ERR;
    if (params_bind(&p, fmt, ap) != STORE_OK) return STORE_ERR;
    int rc;
    int slot = stmt_slot(t->c, sql, p.n, &rc);
    if (rc != STORE_OK) return rc;
    PGresult *r;
    if (slot >= 0) {
        char name[16];
        snprintf(name, sizeof name, "s%d", slot);
        r = PQexecPrepared(t->c->pq, name, p.n, p.v, NULL, NULL, 0);
    } else {
        r = PQexecParams(t->c->pq, sql, p.n, NULL, p.v, NULL, NULL, 0);
    }
    rc = result_code(t->c, r, sql);
    if (rc != STORE_OK) {
        PQclear(r);
        return rc;
    }
    *res = r;
    return STORE_OK;
}

int pg_query(pg_tx *t, PGresult **res, const char *sql, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = vquery(t, res, sql, fmt, ap);
    va_end(ap);
    return rc;
}

int pg_exec(pg_tx *t, const char *sql, const char *fmt, ...)
{
    PGresult *r = NULL;
    va_list ap;
    va_start(ap, fmt);
    int rc = vquery(t, &r, sql, fmt, ap);
    va_end(ap);
    if (rc != STORE_OK) return rc;
    rc = atoi(PQcmdTuples(r));
    PQclear(r);
    return rc;
}

int pg_int(pg_tx *t, int64_t *out, const char *sql, const char *fmt, ...)
{
    PGresult *r = NULL;
    va_list ap;
    va_start(ap, fmt);
    int rc = vquery(t, &r, sql, fmt, ap);
    va_end(ap);
    if (rc != STORE_OK) return rc;
    if (PQntuples(r) < 1 || PQnfields(r) < 1) {
        rc = STORE_ENOTFOUND;
    } else {
        *out = pg_col_int(r, 0, 0);
    }
    PQclear(r);
    return rc;
}

/* pg_query, pg_exec and pg_int on a connection borrowed for the one
 * statement (autocommit). */
int pg_query1(store_t *s, PGresult **res, const char *sql, const char *fmt, ...)
{
    pg_tx t;
    int rc = pg_borrow(s, &t);
    if (rc != STORE_OK) return rc;
    va_list ap;
    va_start(ap, fmt);
    rc = vquery(&t, res, sql, fmt, ap);
    va_end(ap);
    pg_rollback(&t);
    return rc;
}

int pg_exec1(store_t *s, const char *sql, const char *fmt, ...)
{
    pg_tx t;
    PGresult *r = NULL;
    int rc = pg_borrow(s, &t);
    if (rc != STORE_OK) return rc;
    va_list ap;
    va_start(ap, fmt);
    rc = vquery(&t, &r, sql, fmt, ap);
    va_end(ap);
    pg_rollback(&t);
    if (rc != STORE_OK) return rc;
    rc = atoi(PQcmdTuples(r));
    PQclear(r);
    return rc;
}

int pg_int1(store_t *s, int64_t *out, const char *sql, const char *fmt, ...)
{
    pg_tx t;
    PGresult *r = NULL;
    int rc = pg_borrow(s, &t);
    if (rc != STORE_OK) return rc;
    va_list ap;
    va_start(ap, fmt);
    rc = vquery(&t, &r, sql, fmt, ap);
    va_end(ap);
    pg_rollback(&t);
    if (rc != STORE_OK) return rc;
    if (PQntuples(r) < 1 || PQnfields(r) < 1)
        rc = STORE_ENOTFOUND;
    else
        *out = pg_col_int(r, 0, 0);
    PQclear(r);
    return rc;
}

/* A statement without parameters through the simple protocol (BEGIN,
 * COMMIT, migration scripts of several statements). */
static int exec_simple(pg_conn *c, const char *sql)
{
    PGresult *r = PQexec(c->pq, sql);
    int rc = result_code(c, r, sql);
    if (rc == STORE_OK && strcmp(sql, "COMMIT") == 0 && strcmp(PQcmdStatus(r), "COMMIT") != 0) {
        log_error("store: COMMIT answered %s", PQcmdStatus(r));
        rc = STORE_ERR;
    }
    PQclear(r);
    return rc;
}

/* ---- columns ---- */

void pg_copy(char *dst, size_t size, const char *src)
{
    if (!size) return;
    size_t n = src ? strlen(src) : 0;
    if (n >= size) n = size - 1;
    if (n) memcpy(dst, src, n);
    dst[n] = '\0';
}

bool pg_col_null(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col);
}

void pg_col_copy(const PGresult *r, int row, int col, char *dst, size_t size)
{
    pg_copy(dst, size, pg_col_null(r, row, col) ? NULL : PQgetvalue(r, row, col));
}

char *pg_col_strdup(const PGresult *r, int row, int col)
{
    return pg_col_null(r, row, col) ? NULL : xstrdup(PQgetvalue(r, row, col));
}

int64_t pg_col_int(const PGresult *r, int row, int col)
{
    if (pg_col_null(r, row, col)) return 0;
    const char *v = PQgetvalue(r, row, col);
    if (v[0] == 't' && v[1] == '\0') return 1; /* booleans */
    return strtoll(v, NULL, 10);
}

double pg_col_double(const PGresult *r, int row, int col)
{
    return pg_col_null(r, row, col) ? 0.0 : strtod(PQgetvalue(r, row, col), NULL);
}

/* ---- transactions ---- */

static void tx_init(store_t *s, pg_tx *t)
{
    memset(t, 0, sizeof *t);
    t->s = s;
}

int pg_borrow(store_t *s, pg_tx *t)
{
    tx_init(s, t);
    return pool_get(pgs(s), &t->c);
}

int pg_begin(store_t *s, pg_tx *t)
{
    tx_init(s, t);
    int rc = STORE_EUNAVAILABLE;
    /* A connection that died idle in the pool fails its BEGIN: reopen it
     * once (BEGIN has written nothing) before giving up. */
    for (int attempt = 0; attempt < 2; attempt++) {
        rc = pool_get(pgs(s), &t->c);
        if (rc != STORE_OK) break;
        rc = exec_simple(t->c, "BEGIN ISOLATION LEVEL READ COMMITTED");
        if (rc == STORE_OK) {
            t->in_tx = true;
            return STORE_OK;
        }
        pool_put(pgs(s), t->c);
        t->c = NULL;
        if (rc != STORE_EUNAVAILABLE) break;
    }
    return rc;
}

static void events_drop(pg_tx *t)
{
    for (size_t i = 0; i < t->nev; i++)
        free(t->ev[i].data);
    free(t->ev);
    t->ev = NULL;
    t->nev = t->cap = 0;
}

void pg_rollback(pg_tx *t)
{
    events_drop(t);
    if (!t->c) return;
    if (t->in_tx && !t->c->broken && exec_simple(t->c, "ROLLBACK") != STORE_OK) t->c->broken = true;
    pool_put(pgs(t->s), t->c);
    t->c = NULL;
    t->in_tx = false;
}

static int cmp_user(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static const char SQL_EVENT_LOCK[] =
    "SELECT pg_advisory_xact_lock(" STR(STORE_PG_EVENT_LOCK_CLASS) ", hashtext($1))";
#define EVENT_INSERT                                                                               \
    "INSERT INTO events (user_id, generation_id, type, data, created_at, queue_position, "         \
    "terminal)"
#define EVENT_ROW(a, b, c, d, e, f, g)                                                             \
    "($" a ", $" b ", $" c ", $" d ", $" e ", $" f ", $" g "::integer <> 0)"
#define EVENT_NOTIFY(p)                                                                            \
    " SELECT max(id), pg_notify('" STORE_PG_CHANNEL "', max(id)::text || $" p ") FROM ins"
static const char SQL_EVENT_INSERT[] =
    EVENT_INSERT " VALUES " EVENT_ROW("1", "2", "3", "4", "5", "6", "7") " RETURNING id";
/* The last one or two rows, and the notify that names the newest id. */
static const char SQL_EVENT_INSERT_NOTIFY[] =
    "WITH ins AS (" EVENT_INSERT
    " VALUES " EVENT_ROW("1", "2", "3", "4", "5", "6", "7") " RETURNING id)" EVENT_NOTIFY("8");
static const char SQL_EVENT_INSERT2_NOTIFY[] = "WITH ins AS (" EVENT_INSERT " VALUES " EVENT_ROW(
    "1", "2", "3", "4", "5", "6", "7") ", " EVENT_ROW("8", "9", "10", "11", "12", "13",
                                                      "14") " RETURNING id)" EVENT_NOTIFY("15");

/* Takes the users' event locks (sorted, each once); *many when more than
 * one user. */
static int events_lock(pg_tx *t, bool *many)
{
    const char **users = xcalloc(t->nev, sizeof *users);
    for (size_t i = 0; i < t->nev; i++)
        users[i] = t->ev[i].user_id;
    qsort(users, t->nev, sizeof *users, cmp_user);
    int rc = STORE_OK;
    *many = false;
    for (size_t i = 0; i < t->nev && rc == STORE_OK; i++) {
        if (i > 0 && strcmp(users[i], users[i - 1]) == 0) continue;
        if (i > 0) *many = true;
        int n = pg_exec(t, SQL_EVENT_LOCK, "s", users[i]);
        rc = n < 0 ? n : STORE_OK;
    }
    free(users);
    return rc;
}

/* The transaction's last writes: event locks, event rows, one notify (in
 * the statement of the last one or two rows: a create's two events cost
 * one round trip). *last gets the newest id, user the one user ("" when
 * several). */
static int events_flush(pg_tx *t, int64_t *last, char user[ID_LEN])
{
    *last = 0;
    user[0] = '\0';
    if (!t->nev) return STORE_OK;
    bool many = false;
    int rc = events_lock(t, &many);
    if (!many) pg_copy(user, ID_LEN, t->ev[0].user_id);
    char suffix[1 + ID_LEN]; /* the notify payload after the id: " user", or "" */
    snprintf(suffix, sizeof suffix, "%s%s", many ? "" : " ", user);
    size_t tail = t->nev >= 2 ? 2 : 1;
    for (size_t i = 0; i + tail < t->nev && rc == STORE_OK; i++) {
        pg_pending_event *e = &t->ev[i];
        rc = pg_int(t, last, SQL_EVENT_INSERT, "ssssIii", e->user_id,
                    e->gen_id[0] ? e->gen_id : NULL, e->type, e->data, e->now, e->queue_position,
                    (int)e->terminal);
    }
    if (rc != STORE_OK) return rc;
    pg_pending_event *a = &t->ev[t->nev - tail], *b = &t->ev[t->nev - 1];
    if (tail == 1)
        return pg_int(t, last, SQL_EVENT_INSERT_NOTIFY, "ssssIiis", a->user_id,
                      a->gen_id[0] ? a->gen_id : NULL, a->type, a->data, a->now, a->queue_position,
                      (int)a->terminal, suffix);
    return pg_int(t, last, SQL_EVENT_INSERT2_NOTIFY, "ssssIiissssIiis", a->user_id,
                  a->gen_id[0] ? a->gen_id : NULL, a->type, a->data, a->now, a->queue_position,
                  (int)a->terminal, b->user_id, b->gen_id[0] ? b->gen_id : NULL, b->type, b->data,
                  b->now, b->queue_position, (int)b->terminal, suffix);
}

int pg_commit(pg_tx *t)
{
    if (!t->c) return STORE_ERR;
    if (!t->in_tx) {
        if (t->nev) log_error("store: events queued outside a transaction were dropped");
        pg_rollback(t);
        return STORE_OK;
    }
    int64_t last = 0;
    char user[ID_LEN];
    int rc = events_flush(t, &last, user);
    if (rc == STORE_OK) rc = exec_simple(t->c, "COMMIT");
    if (rc != STORE_OK) {
        pg_rollback(t);
        return rc;
    }
    t->in_tx = false;
    store_t *s = t->s;
    pg_rollback(t); /* gives the connection back; nothing left to roll back */
    store_base_committed(s, last, user[0] ? user : NULL, true);
    return STORE_OK;
}

/* ---- events and ledger rows ---- */

void pg_event(pg_tx *t, const char *user_id, const char *gen_id, const char *type, char *data,
              int64_t now)
{
    if (t->nev == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 4;
        t->ev = xrealloc(t->ev, t->cap * sizeof *t->ev);
    }
    pg_pending_event *e = &t->ev[t->nev++];
    pg_copy(e->user_id, sizeof e->user_id, user_id);
    pg_copy(e->gen_id, sizeof e->gen_id, gen_id);
    e->type = type;
    e->data = data;
    e->queue_position = 0;
    e->terminal = false;
    e->now = now;
}

void pg_gen_event(pg_tx *t, const gen_record *g, char *data, int64_t now)
{
    pg_event(t, g->user_id, g->id, "generation", data, now);
    t->ev[t->nev - 1].queue_position = g->queue_position;
    t->ev[t->nev - 1].terminal = gen_status_terminal(g->status);
}

int pg_balance_event(pg_tx *t, const char *user_id, int64_t now)
{
    int64_t bal = 0;
    int rc = pg_int(t, &bal, "SELECT token_balance FROM users WHERE id = $1", "s", user_id);
    if (rc != STORE_OK) return rc;
    pg_event(t, user_id, NULL, "balance", store_base_balance_json(t->s, bal), now);
    return STORE_OK;
}

int pg_ledger_add(pg_tx *t, const char *user_id, const char *kind, int64_t amount,
                  const char *gen_id, const char *reason, int64_t now)
{
    int rc = pg_exec(t,
                     "INSERT INTO token_transactions"
                     " (user_id, kind, amount, balance_after, generation_id, reason, created_at)"
                     " VALUES ($1, $2, $3, (SELECT token_balance FROM users WHERE id = $1),"
                     " $4, $5, $6)",
                     "ssIssI", user_id, kind, amount, gen_id, reason, now);
    return rc < 0 ? rc : STORE_OK;
}

/* One row of "SELECT " EVENT_COLS " FROM events". */
#define EVENT_COLS "id, type, generation_id, data, queue_position, terminal::integer"
static void event_from_row(const PGresult *r, int row, store_event *e)
{
    memset(e, 0, sizeof *e);
    e->id = pg_col_int(r, row, 0);
    pg_col_copy(r, row, 1, e->type, sizeof e->type);
    pg_col_copy(r, row, 2, e->generation_id, sizeof e->generation_id);
    e->data = pg_col_strdup(r, row, 3);
    if (!e->data) e->data = xstrdup("{}");
    e->queue_position = (int)pg_col_int(r, row, 4);
    e->terminal = pg_col_int(r, row, 5) != 0;
}

static int pg_events_after(store_t *s, const char *user_id, const char *generation_id,
                           int64_t after_id, int limit, store_event **out, size_t *n)
{
    static const char q_user[] = "SELECT " EVENT_COLS " FROM events"
                                 " WHERE user_id = $1 AND id > $2 ORDER BY id LIMIT $3";
    static const char q_gen[] = "SELECT " EVENT_COLS " FROM events"
                                " WHERE generation_id = $1 AND user_id = $2 AND id > $3"
                                " ORDER BY id LIMIT $4";
    if (limit <= 0) limit = 100;
    PGresult *r = NULL;
    int rc = generation_id
                 ? pg_query1(s, &r, q_gen, "ssIi", generation_id, user_id, after_id, limit)
                 : pg_query1(s, &r, q_user, "sIi", user_id, after_id, limit);
    if (rc != STORE_OK) return rc;
    int rows = PQntuples(r);
    store_event *ev = rows ? xcalloc((size_t)rows, sizeof *ev) : NULL;
    for (int i = 0; i < rows; i++)
        event_from_row(r, i, &ev[i]);
    PQclear(r);
    *out = ev;
    *n = (size_t)rows;
    return STORE_OK;
}

static int pg_events_latest(store_t *s, const char *generation_id, store_event *out)
{
    PGresult *r = NULL;
    int rc = pg_query1(s, &r,
                       "SELECT " EVENT_COLS " FROM events"
                       " WHERE generation_id = $1 ORDER BY id DESC LIMIT 1",
                       "s", generation_id);
    if (rc != STORE_OK) return rc;
    if (PQntuples(r) == 1)
        event_from_row(r, 0, out);
    else
        rc = STORE_ENOTFOUND;
    PQclear(r);
    return rc;
}

static int pg_events_last_id(store_t *s, int64_t *id)
{
    return pg_int1(s, id, "SELECT COALESCE(MAX(id), 0) FROM events", NULL);
}

/* ---- migrations ---- */

/* Applies one migration unless schema_migrations already lists it; the
 * advisory lock makes concurrent starts take turns. */
static int migrate_one(pg_store *s, const struct store_sql_migration *m, int latest, char **err)
{
    pg_tx t;
    int rc = pg_begin(&s->base, &t);
    if (rc != STORE_OK) goto fail;
    int64_t have = 0, done = 0;
    rc = pg_exec(&t, "SELECT pg_advisory_xact_lock(" STR(STORE_PG_MIGRATE_LOCK_CLASS) ", 0)", NULL);
    if (rc >= 0)
        rc = exec_simple(t.c, "CREATE TABLE IF NOT EXISTS schema_migrations ("
                              " version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
                              " applied_at BIGINT NOT NULL)");
    if (rc >= 0)
        rc = pg_int(&t, &have, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations", NULL);
    if (rc < 0) goto fail;
    if (have > latest) {
        log_error("store: database schema version %lld is newer than this binary (%d)",
                  (long long)have, latest);
        if (err)
            *err = xasprintf("database schema version %lld is newer than this binary (%d)",
                             (long long)have, latest);
        rc = STORE_ERR;
        goto fail;
    }
    rc = pg_int(&t, &done, "SELECT COUNT(*) FROM schema_migrations WHERE version = $1", "i",
                m->version);
    if (rc < 0) goto fail;
    if (done) {
        pg_rollback(&t);
        return STORE_OK;
    }
    rc = exec_simple(t.c, m->sql);
    if (rc >= 0)
        rc = pg_exec(&t,
                     "INSERT INTO schema_migrations (version, name, applied_at)"
                     " VALUES ($1, $2, $3)",
                     "isI", m->version, m->name, now_ms());
    if (rc >= 0) rc = pg_commit(&t);
    if (rc < 0) goto fail;
    log_info("store: applied migration %s", m->name);
    return STORE_OK;
fail:
    log_error("store: migration %s failed (%s)", m->name, s->where);
    if (err && !*err) *err = xasprintf("migration %s failed on %s", m->name, s->where);
    pg_rollback(&t);
    return rc;
}

static int migrate(pg_store *s, char **err)
{
    int latest = 0;
    for (size_t i = 0; i < store_pg_migrations_count; i++)
        if (store_pg_migrations[i].version > latest) latest = store_pg_migrations[i].version;
    for (size_t i = 0; i < store_pg_migrations_count; i++) {
        int rc = migrate_one(s, &store_pg_migrations[i], latest, err);
        if (rc != STORE_OK) return rc;
    }
    return STORE_OK;
}

static int pg_migrate(store_t *s)
{
    return migrate(pgs(s), NULL);
}

/* ---- open / close ---- */

/* Parses the URL for the log label and fills the connection parameters:
 * ours first, then the URL (expand_dbname), whose settings win. */
static int conn_params(pg_store *s, const char *url, char **err)
{
    char *perr = NULL;
    PQconninfoOption *opts = PQconninfoParse(url, &perr);
    if (!opts) {
        /* libpq may quote the URL back, password and all: say less. */
        bool safe = perr && !strchr(perr, '@') && !strstr(perr, "password");
        if (err) *err = xasprintf("invalid PostgreSQL URL%s%s", safe ? ": " : "", safe ? perr : "");
        PQfreemem(perr);
        return STORE_ERR;
    }
    const char *host = NULL, *port = NULL, *db = NULL, *user = NULL;
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        if (!o->val) continue;
        if (str_eq(o->keyword, "host") || (str_eq(o->keyword, "hostaddr") && !host)) host = o->val;
        if (str_eq(o->keyword, "port")) port = o->val;
        if (str_eq(o->keyword, "dbname")) db = o->val;
        if (str_eq(o->keyword, "user")) user = o->val;
    }
    s->where =
        xasprintf("host=%s port=%s db=%s user=%s", host ? host : "(default)",
                  port ? port : "(default)", db ? db : "(default)", user ? user : "(default)");
    PQconninfoFree(opts);
    s->url = xstrdup(url);
    static const char *const kw[] = {"connect_timeout",
                                     "fallback_application_name",
                                     "keepalives",
                                     "keepalives_idle",
                                     "keepalives_interval",
                                     "keepalives_count",
                                     "tcp_user_timeout",
                                     "dbname",
                                     NULL};
    static const char *const val[] = {"3", "stylestudio", "1", "5", "2", "3", "5000", NULL};
    for (int i = 0; kw[i]; i++) {
        s->kw[i] = kw[i];
        s->val[i] = val[i] ? val[i] : s->url;
    }
    return STORE_OK;
}

static void pg_close(store_t *base)
{
    pg_store *s = pgs(base);
    pg_listener_stop(s->listener);
    for (int i = 0; i < s->pool_size; i++)
        conn_close(s, &s->conns[i]);
    free(s->conns);
    pthread_mutex_destroy(&s->pool_mu);
    pthread_cond_destroy(&s->pool_cv);
    store_base_destroy(&s->base);
    free(s->url);
    free(s->where);
    free(s);
}

static const store_ops pg_ops;

int store_pg_open(const char *url, const store_options *opt, store_t **out, char **err)
{
    *out = NULL;
    if (err) *err = NULL;
    pg_store *s = xcalloc(1, sizeof *s);
    store_base_init(&s->base, &pg_ops, opt ? opt->codec : NULL);
    s->pool_size = opt && opt->pool_size > 0 ? opt->pool_size : POOL_DEFAULT;
    s->conns = xcalloc((size_t)s->pool_size, sizeof *s->conns);
    pthread_mutex_init(&s->pool_mu, NULL);
    util_cond_init_mono(&s->pool_cv);
    int rc = conn_params(s, url, err);
    /* The first connection eagerly, so an unreachable database fails here
     * with its reason; the others open on first use. */
    if (rc == STORE_OK) rc = conn_open(s, &s->conns[0], err);
    if (rc == STORE_OK) rc = migrate(s, err);
    if (rc == STORE_OK) {
        s->listener = pg_listener_start(&s->base, s->kw, s->val, s->where);
        if (!s->listener) rc = STORE_ERR;
    }
    if (rc != STORE_OK) {
        if (err && !*err) *err = xstrdup("cannot open the PostgreSQL store");
        pg_close(&s->base);
        return rc;
    }
    log_debug("store: PostgreSQL %s, pool of %d", s->where, s->pool_size);
    *out = &s->base;
    return STORE_OK;
}

static int pg_ping(store_t *s)
{
    int64_t one = 0;
    int rc = pg_int1(s, &one, "SELECT 1", NULL);
    return rc == STORE_OK && one != 1 ? STORE_ERR : rc;
}

static const store_ops pg_ops = {
    .name = "postgres",
    .close = pg_close,
    .migrate = pg_migrate,
    .ping = pg_ping,
    .user_create = store_pg_user_create,
    .user_get = store_pg_user_get,
    .user_by_email = store_pg_user_by_email,
    .user_list = store_pg_user_list,
    .user_credit = store_pg_user_credit,
    .user_stats = store_pg_user_stats,
    .key_create = store_pg_key_create,
    .key_list = store_pg_key_list,
    .key_delete = store_pg_key_delete,
    .key_get = store_pg_key_get,
    .key_touch = store_pg_key_touch,
    .session_create = store_pg_session_create,
    .session_get = store_pg_session_get,
    .session_delete = store_pg_session_delete,
    .ledger_list = store_pg_ledger_list,
    .ledger_totals = store_pg_ledger_totals,
    .gen_create = store_pg_gen_create,
    .batch_get = store_pg_batch_get,
    .gen_get = store_pg_gen_get,
    .gen_list = store_pg_gen_list,
    .gen_delete = store_pg_gen_delete,
    .gen_counts = store_pg_gen_counts,
    .gen_start = store_pg_gen_start,
    .gen_end = store_pg_gen_end,
    .gen_complete = store_pg_gen_complete,
    .gen_requeue = store_pg_gen_requeue,
    .gen_claim = store_pg_gen_claim,
    .gen_progress = store_pg_gen_progress,
    .gen_renew = store_pg_gen_renew,
    .gen_release = store_pg_gen_release,
    .gen_expired_leases = store_pg_gen_expired_leases,
    .gen_pending_before = store_pg_gen_pending_before,
    .gen_next_retry_at = store_pg_gen_next_retry_at,
    .purge = store_pg_purge,
    .events_after = pg_events_after,
    .events_latest = pg_events_latest,
    .events_last_id = pg_events_last_id,
    .webhook_create = store_pg_webhook_create,
    .webhook_list = store_pg_webhook_list,
    .webhook_get = store_pg_webhook_get,
    .webhook_delete = store_pg_webhook_delete,
    .webhook_pending = store_pg_webhook_pending,
    .webhook_advance = store_pg_webhook_advance,
    .delivery_claim = store_pg_delivery_claim,
    .delivery_record = store_pg_delivery_record,
    .delivery_list = store_pg_delivery_list,
    .delivery_redeliver = store_pg_delivery_redeliver,
    .delivery_next_due = store_pg_delivery_next_due,
    .events_prune = store_pg_events_prune,
    /* plans */
    .user_set_plan = store_pg_user_set_plan,
    /* templates */
    .template_create = store_pg_template_create,
    .template_get = store_pg_template_get,
    .template_list = store_pg_template_list,
    .template_update = store_pg_template_update,
    .template_delete = store_pg_template_delete,
    .bucket_update = store_pg_bucket_update,
    .buckets_prune = store_pg_buckets_prune,
    .idem_peek = store_pg_idem_peek,
    .gen_claim_fair = store_pg_gen_claim_fair,
    .queue_stats = store_pg_queue_stats,
    .queue_heartbeat = store_pg_queue_heartbeat,
    .queue_items = store_pg_queue_items,
};
