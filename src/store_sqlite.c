/*
 * store_sqlite — the SQLite store: opening the file, migrations, the
 * connection pool, transactions, statement helpers and the event log. The
 * users/ledger and generation halves of store.h live in
 * store_sqlite_user.c and store_sqlite_gen.c.
 *
 * DESIGN. The database runs in WAL mode with synchronous=FULL (a commit is
 * on disk before the call returns), foreign keys on and a busy timeout for
 * other processes (e.g. the `user` CLI next to a running server). Temporary
 * files stay in memory (temp_store = MEMORY): a group commit's savepoints
 * keep their undo pages in a sub-journal, which otherwise spills to a file
 * past 64 KiB and costs a write per page. Threads
 * share a small pool of connections; each connection caches its prepared
 * statements, keyed by the address of the SQL string literal.
 *
 * Writers are serialised inside the process by one mutex (write_mu) and
 * write on one dedicated connection; readers use the pool (WAL readers never
 * block) and never turn into writers, so the two cannot deadlock. Reads
 * that need several statements to agree use a plain BEGIN (one snapshot).
 *
 * Group commit. Concurrent write transactions share one durable COMMIT:
 * the writing connection holds a batch open (BEGIN IMMEDIATE), and each
 * write transaction is a SAVEPOINT inside it — released when it commits,
 * rolled back to when it fails, so each keeps its own all-or-nothing effect
 * and sees the effects of those before it (the conditional debit stays
 * exact). A member that commits lets go of write_mu and waits until its
 * batch is on disk; only then does sq_commit return (and the commit hook
 * run), so a reply is never sent for data that is not durable. The member
 * that leaves write_mu when no other writer is queued for it commits the
 * batch (BATCH_MAX bounds a batch). If SQLite rolls the batch back (an I/O
 * error), or its COMMIT fails, every member of it fails: none of it is on
 * disk. Soft transactions (the heartbeat) that find no batch open commit
 * alone with synchronous=NORMAL.
 *
 * A savepoint is not free: the first change of each page inside one copies
 * the page aside, and a create touches a dozen pages (its rows and their
 * index entries), which cost about a third of the create's time in the
 * write lock. A plain member (sq_begin_plain) has none. It is for a
 * transaction whose only expected failure comes before its first change
 * (a create: the conditional debit that matches no row): a plain member
 * that rolls back after a change has nothing to undo it with, so it kills
 * the batch, and every member of that batch fails (nothing of it reaches
 * the disk). All-or-nothing holds for every member either way; only a
 * failure that should not happen (a broken constraint, an I/O error) costs
 * the batch's other members their answer.
 *
 * A member deferred by its caller (store_defer: the API holds only the
 * reply, not the thread) does not wait: it joins the batch's list of
 * deferred members and returns, and whoever commits the batch tells each
 * of them how it ended (tell_pending, after letting go of write_mu). So a
 * batch is no longer bounded by the handler threads: it takes every
 * create that arrives while the one before it is being committed.
 *
 * Migrations are the files in schema/sqlite/, compiled in by the Makefile
 * (store_sqlite_migrations[]); each runs in its own transaction that also
 * records its version in schema_migrations and PRAGMA user_version.
 */
#include "store_sqlite.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

/* From $(BUILD)/gen/schema_sqlite.c. */
struct store_sql_migration {
    int version;
    const char *name;
    const char *sql;
};
extern const struct store_sql_migration store_sqlite_migrations[];
extern const size_t store_sqlite_migrations_count;

#define POOL_SIZE 8
#define STMT_CACHE 256
#define BATCH_MAX 256   /* members of one group commit at most */
#define BATCH_RING 1024 /* outcomes kept for members still to wake */
#define BUSY_TIMEOUT_MS 10000

struct sq_conn {
    sqlite3 *db;
    bool in_use;
    int nstmt;
    struct {
        const char *sql;
        sqlite3_stmt *st;
    } stmt[STMT_CACHE];
};

typedef struct sq_store {
    store_t base; /* first: a store_t * is a sq_store * */
    char *path;
    pthread_mutex_t pool_mu;
    pthread_cond_t pool_cv;
    sq_conn conns[POOL_SIZE];
    pthread_mutex_t write_mu; /* one writer at a time inside the process */
    int presence_fd;          /* <path>-procs, read-locked while open; -1: none */
    uint64_t own_mark;        /* the visit mark this process wrote */
    /* group commit (DESIGN): the batch is write_mu's */
    sq_conn wconn;                /* the one writing connection */
    bool batch_open;              /* wconn is inside the batch's BEGIN IMMEDIATE */
    bool batch_soft;              /* opened by a soft transaction: commits alone, no fsync */
    bool batch_dead;              /* SQLite rolled it back: its members fail */
    int batch_members;            /* savepoints released into it */
    store_pending *batch_pending; /* its deferred members (store_defer), to tell at the end */
    uint64_t batch_no;            /* the open (or last) batch */
    atomic_int queued;            /* writers waiting for write_mu: they will join */
    pthread_mutex_t done_mu;
    pthread_cond_t done_cv;
    uint64_t done_no;         /* batches finished, in order (done_mu) */
    bool done_ok[BATCH_RING]; /* their outcome, by number */
} sq_store;

/* ---- connections ---- */

static int conn_open(const char *path, sq_conn *c, char **err)
{
    int rc = sqlite3_open_v2(path, &c->db,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                             sq_vfs_name());
    if (rc != SQLITE_OK) {
        const char *msg = c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc);
        log_error("store: cannot open %s: %s", path, msg);
        if (err) *err = xasprintf("cannot open database %s: %s", path, msg);
        goto fail;
    }
    sqlite3_busy_timeout(c->db, BUSY_TIMEOUT_MS);
    sqlite3_extended_result_codes(c->db, 1);
    char *emsg = NULL;
    rc = sqlite3_exec(c->db,
                      "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;"
                      " PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY;",
                      NULL, NULL, &emsg);
    if (rc != SQLITE_OK) {
        log_error("store: pragmas on %s: %s", path, emsg ? emsg : sqlite3_errstr(rc));
        if (err)
            *err = xasprintf("cannot configure database %s: %s", path,
                             emsg ? emsg : sqlite3_errstr(rc));
        sqlite3_free(emsg);
        goto fail;
    }
    return STORE_OK;
fail:
    sqlite3_close_v2(c->db);
    c->db = NULL;
    return STORE_ERR;
}

static void conn_close(sq_conn *c)
{
    for (int i = 0; i < c->nstmt; i++)
        sqlite3_finalize(c->stmt[i].st);
    c->nstmt = 0;
    if (c->db) sqlite3_close_v2(c->db);
    c->db = NULL;
}

/* Borrows a connection, opening the slot's database on first use. */
static sq_conn *pool_get(sq_store *s)
{
    pthread_mutex_lock(&s->pool_mu);
    sq_conn *c = NULL;
    for (;;) {
        for (int i = 0; i < POOL_SIZE && !c; i++)
            if (!s->conns[i].in_use && s->conns[i].db) c = &s->conns[i];
        for (int i = 0; i < POOL_SIZE && !c; i++)
            if (!s->conns[i].in_use) c = &s->conns[i];
        if (c) break;
        pthread_cond_wait(&s->pool_cv, &s->pool_mu);
    }
    c->in_use = true;
    pthread_mutex_unlock(&s->pool_mu);
    if (!c->db && conn_open(s->path, c, NULL) != STORE_OK) {
        pthread_mutex_lock(&s->pool_mu);
        c->in_use = false;
        pthread_cond_signal(&s->pool_cv);
        pthread_mutex_unlock(&s->pool_mu);
        return NULL;
    }
    return c;
}

static void pool_put(sq_store *s, sq_conn *c)
{
    /* Safety net: a statement left mid-step would pin an old snapshot. */
    for (int i = 0; i < c->nstmt; i++)
        if (sqlite3_stmt_busy(c->stmt[i].st)) sqlite3_reset(c->stmt[i].st);
    pthread_mutex_lock(&s->pool_mu);
    c->in_use = false;
    pthread_cond_signal(&s->pool_cv);
    pthread_mutex_unlock(&s->pool_mu);
}

/* ---- statements ---- */

static sqlite3_stmt *stmt_get(sq_conn *c, const char *sql)
{
    for (int i = 0; i < c->nstmt; i++)
        if (c->stmt[i].sql == sql) {
            sqlite3_reset(c->stmt[i].st);
            sqlite3_clear_bindings(c->stmt[i].st);
            return c->stmt[i].st;
        }
    if (c->nstmt == STMT_CACHE) {
        log_error("store: statement cache full (%d)", STMT_CACHE);
        return NULL;
    }
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v3(c->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL) != SQLITE_OK) {
        log_error("store: prepare failed: %s (sql: %.120s)", sqlite3_errmsg(c->db), sql);
        return NULL;
    }
    c->stmt[c->nstmt].sql = sql;
    c->stmt[c->nstmt].st = st;
    c->nstmt++;
    return st;
}

static sqlite3_stmt *vquery(sq_tx *t, const char *sql, const char *fmt, va_list ap)
{
    sqlite3_stmt *st = stmt_get(t->c, sql);
    if (!st) return NULL;
    int rc = SQLITE_OK;
    for (int i = 0; fmt && fmt[i] && rc == SQLITE_OK; i++) {
        int col = i + 1;
        switch (fmt[i]) {
        case 's': {
            const char *v = va_arg(ap, const char *);
            rc = v ? sqlite3_bind_text(st, col, v, -1, SQLITE_TRANSIENT)
                   : sqlite3_bind_null(st, col);
            break;
        }
        case 'i':
            rc = sqlite3_bind_int(st, col, va_arg(ap, int));
            break;
        case 'I':
            rc = sqlite3_bind_int64(st, col, va_arg(ap, int64_t));
            break;
        case 'Z': {
            int64_t v = va_arg(ap, int64_t);
            rc = v ? sqlite3_bind_int64(st, col, v) : sqlite3_bind_null(st, col);
            break;
        }
        case 'd':
            rc = sqlite3_bind_double(st, col, va_arg(ap, double));
            break;
        default:
            log_error("store: bad bind format '%c'", fmt[i]);
            rc = SQLITE_MISUSE;
        }
    }
    if (rc != SQLITE_OK) {
        log_error("store: bind failed: %s (sql: %.120s)", sqlite3_errmsg(t->c->db), sql);
        sqlite3_clear_bindings(st);
        return NULL;
    }
    return st;
}

sqlite3_stmt *sq_query(sq_tx *t, const char *sql, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sqlite3_stmt *st = vquery(t, sql, fmt, ap);
    va_end(ap);
    return st;
}

int sq_step(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW || rc == SQLITE_DONE) return rc;
    sqlite3 *db = sqlite3_db_handle(st);
    int ext = sqlite3_extended_errcode(db);
    if (ext == SQLITE_CONSTRAINT_UNIQUE || ext == SQLITE_CONSTRAINT_PRIMARYKEY) {
        log_debug("store: %s", sqlite3_errmsg(db));
        return STORE_EDUPLICATE;
    }
    if (ext == SQLITE_CONSTRAINT_FOREIGNKEY) {
        log_debug("store: %s", sqlite3_errmsg(db));
        return STORE_ENOTFOUND;
    }
    log_error("store: %s (sql: %.120s)", sqlite3_errmsg(db), sqlite3_sql(st));
    return STORE_ERR;
}

void sq_done(sqlite3_stmt *st)
{
    if (st) sqlite3_reset(st);
}

int sq_exec(sq_tx *t, const char *sql, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sqlite3_stmt *st = vquery(t, sql, fmt, ap);
    va_end(ap);
    if (!st) return STORE_ERR;
    int rc;
    while ((rc = sq_step(st)) == SQLITE_ROW)
        ;
    sq_done(st);
    return rc == SQLITE_DONE ? sqlite3_changes(t->c->db) : rc;
}

int sq_int(sq_tx *t, int64_t *out, const char *sql, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sqlite3_stmt *st = vquery(t, sql, fmt, ap);
    va_end(ap);
    if (!st) return STORE_ERR;
    int rc = sq_step(st);
    if (rc == SQLITE_ROW) {
        *out = sqlite3_column_int64(st, 0);
        rc = STORE_OK;
    } else if (rc == SQLITE_DONE) {
        rc = STORE_ENOTFOUND;
    }
    sq_done(st);
    return rc;
}

void sq_copy(char *dst, size_t size, const char *src)
{
    if (!size) return;
    size_t n = src ? strlen(src) : 0;
    if (n >= size) n = size - 1;
    if (n) memcpy(dst, src, n);
    dst[n] = '\0';
}

void sq_col_copy(sqlite3_stmt *st, int col, char *dst, size_t size)
{
    sq_copy(dst, size, (const char *)sqlite3_column_text(st, col));
}

char *sq_col_strdup(sqlite3_stmt *st, int col)
{
    return xstrdup((const char *)sqlite3_column_text(st, col));
}

int64_t sq_col_int(sqlite3_stmt *st, int col)
{
    return sqlite3_column_int64(st, col);
}

/* ---- transactions ---- */

static int exec_simple(sq_conn *c, const char *sql)
{
    sqlite3_stmt *st = stmt_get(c, sql);
    if (!st) return STORE_ERR;
    int rc = sq_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? STORE_OK : STORE_ERR;
}

static const char SQL_BEGIN_IMMEDIATE[] = "BEGIN IMMEDIATE";
static const char SQL_BEGIN[] = "BEGIN";
static const char SQL_COMMIT[] = "COMMIT";
static const char SQL_ROLLBACK[] = "ROLLBACK";

/* ---- group commit ----
 * See DESIGN (top of file). Lock order: write_mu → done_mu. */

/* Tells a finished batch's deferred members how it ended. */
static void tell_pending(store_pending *p, bool ok)
{
    while (p) {
        store_pending *next = p->next;
        store_base_durable(p, ok); /* may free p */
        p = next;
    }
}

/* Ends the open batch: COMMIT (the one fsync its members share), or nothing
 * when SQLite already rolled it back; records the outcome and wakes the
 * members waiting for it. Returns its deferred members and their outcome,
 * for the caller to tell (tell_pending) once it has let go of write_mu.
 * write_mu held. */
static store_pending *batch_finish(sq_store *s, bool *ok_out)
{
    bool ok = !s->batch_dead && exec_simple(&s->wconn, SQL_COMMIT) == STORE_OK;
    if (!ok && !sqlite3_get_autocommit(s->wconn.db)) exec_simple(&s->wconn, SQL_ROLLBACK);
    if (s->batch_soft) exec_simple(&s->wconn, "PRAGMA synchronous = FULL");
    s->batch_open = false;
    store_pending *told = s->batch_pending;
    s->batch_pending = NULL;
    pthread_mutex_lock(&s->done_mu);
    s->done_ok[s->batch_no % BATCH_RING] = ok;
    s->done_no = s->batch_no;
    pthread_cond_broadcast(&s->done_cv);
    pthread_mutex_unlock(&s->done_mu);
    *ok_out = ok;
    return told;
}

/* Before write_mu is let go: the last member out commits the batch — when
 * no writer is queued to join it, when it is full, or at once for a soft
 * batch or one SQLite rolled back. write_mu held; released on return. */
static void writer_leave(sq_store *s)
{
    store_pending *told = NULL;
    bool ok = false;
    if (s->batch_open && (s->batch_soft || s->batch_dead || s->batch_members >= BATCH_MAX ||
                          atomic_load(&s->queued) == 0))
        told = batch_finish(s, &ok);
    pthread_mutex_unlock(&s->write_mu);
    tell_pending(told, ok);
}

static int begin_write(sq_store *s, sq_tx *t, bool soft, bool plain)
{
    atomic_fetch_add(&s->queued, 1);
    pthread_mutex_lock(&s->write_mu);
    atomic_fetch_sub(&s->queued, 1);
    if (!s->wconn.db && conn_open(s->path, &s->wconn, NULL) != STORE_OK) goto fail;
    if (s->batch_open && sqlite3_get_autocommit(s->wconn.db)) {
        s->batch_dead = true; /* rolled back under an earlier member */
        bool ok;
        tell_pending(batch_finish(s, &ok), ok);
    }
    if (!s->batch_open) {
        /* The safety level cannot change inside a transaction: set it first. */
        if (soft && exec_simple(&s->wconn, "PRAGMA synchronous = NORMAL") != STORE_OK) soft = false;
        if (exec_simple(&s->wconn, SQL_BEGIN_IMMEDIATE) != STORE_OK) {
            if (soft) exec_simple(&s->wconn, "PRAGMA synchronous = FULL");
            goto fail;
        }
        s->batch_open = true;
        s->batch_soft = soft;
        s->batch_dead = false;
        s->batch_members = 0;
        s->batch_no++;
    }
    if (plain)
        t->changes_before = sqlite3_total_changes64(s->wconn.db);
    else if (exec_simple(&s->wconn, "SAVEPOINT tx") != STORE_OK)
        goto fail;
    t->plain = plain;
    t->c = &s->wconn;
    t->batch = s->batch_no;
    return STORE_OK;
fail:
    writer_leave(s);
    return STORE_ERR;
}

/* Closes the member's savepoint: kept (RELEASE) or undone (ROLLBACK TO).
 * A plain member has none: kept as it is, or undone with the whole batch
 * when it changed anything (DESIGN). Returns true when its changes are in
 * the batch. write_mu held. */
static bool member_close(sq_store *s, sq_tx *t, bool keep)
{
    sq_conn *c = t->c;
    for (int i = 0; i < c->nstmt; i++)
        if (sqlite3_stmt_busy(c->stmt[i].st)) sqlite3_reset(c->stmt[i].st);
    if (sqlite3_get_autocommit(c->db)) {
        s->batch_dead = true; /* SQLite rolled the whole batch back (I/O error...) */
        return false;
    }
    if (t->plain) {
        if (keep) {
            s->batch_members++;
            return true;
        }
        if (sqlite3_total_changes64(c->db) != t->changes_before) {
            log_warn("store: a plain write failed after a change; its batch of %d fails with it",
                     s->batch_members + 1);
            s->batch_dead = true;
        }
        return false;
    }
    if (keep && exec_simple(c, "RELEASE tx") == STORE_OK) {
        s->batch_members++;
        return true;
    }
    exec_simple(c, "ROLLBACK TO tx");
    exec_simple(c, "RELEASE tx");
    if (sqlite3_get_autocommit(c->db)) s->batch_dead = true;
    return false;
}

static int begin(store_t *base, sq_tx *t, bool write, bool soft, bool plain)
{
    sq_store *s = (sq_store *)base;
    memset(t, 0, sizeof *t);
    t->s = base;
    t->write = write;
    if (write) return begin_write(s, t, soft, plain);
    t->c = pool_get(s);
    if (!t->c) return STORE_ERR;
    if (exec_simple(t->c, SQL_BEGIN) != STORE_OK) {
        pool_put(s, t->c);
        t->c = NULL;
        return STORE_ERR;
    }
    return STORE_OK;
}

int sq_begin(store_t *base, sq_tx *t, bool write)
{
    return begin(base, t, write, false, false);
}

int sq_begin_soft(store_t *base, sq_tx *t)
{
    return begin(base, t, true, true, false);
}

int sq_begin_plain(store_t *base, sq_tx *t)
{
    return begin(base, t, true, false, true);
}

int sq_commit(sq_tx *t)
{
    sq_store *s = (sq_store *)t->s;
    if (!t->write) {
        int rc = exec_simple(t->c, SQL_COMMIT);
        if (rc != STORE_OK) exec_simple(t->c, SQL_ROLLBACK);
        pool_put(s, t->c);
        t->c = NULL;
        return rc;
    }
    bool kept = member_close(s, t, true);
    uint64_t b = t->batch;
    t->c = NULL;
    /* Deferred (store_defer): the caller hears of the disk later. */
    store_pending *p = kept ? store_base_deferring(t->s) : NULL;
    if (p) {
        store_base_caught(p, t->last_event, t->event_users_many ? NULL : t->event_user, t->queue);
        p->next = s->batch_pending;
        s->batch_pending = p;
    }
    writer_leave(s);
    if (!kept) return STORE_ERR;
    if (p) return STORE_OK;
    /* Durable once the batch is: wait for its COMMIT (ours or a later member's). */
    pthread_mutex_lock(&s->done_mu);
    while (s->done_no < b)
        pthread_cond_wait(&s->done_cv, &s->done_mu);
    bool ok = s->done_ok[b % BATCH_RING];
    pthread_mutex_unlock(&s->done_mu);
    if (!ok) return STORE_ERR;
    store_base_committed(t->s, t->last_event, t->event_users_many ? NULL : t->event_user, t->queue);
    return STORE_OK;
}

void sq_rollback(sq_tx *t)
{
    if (!t->c) return;
    sq_store *s = (sq_store *)t->s;
    if (!t->write) {
        if (sqlite3_get_autocommit(t->c->db) == 0) exec_simple(t->c, SQL_ROLLBACK);
        pool_put(s, t->c);
        t->c = NULL;
        return;
    }
    member_close(s, t, false);
    t->c = NULL;
    writer_leave(s);
}

/* ---- migrations ---- */

/* Applies one migration unless schema_migrations already lists it. */
static int migrate_one(store_t *s, const struct store_sql_migration *m, int64_t latest, char **err)
{
    sq_tx t;
    if (sq_begin(s, &t, true) != STORE_OK) return STORE_ERR;
    int64_t have = 0, done = 0;
    char *emsg = NULL;
    int rc = sq_exec(&t,
                     "CREATE TABLE IF NOT EXISTS schema_migrations ("
                     " version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
                     " applied_at INTEGER NOT NULL)",
                     NULL);
    if (rc >= 0) rc = sq_int(&t, &have, "SELECT MAX(version) FROM schema_migrations", NULL);
    if (rc < 0) goto fail;
    if (have > latest) {
        emsg = sqlite3_mprintf("database schema version %lld is newer than this binary (%lld)",
                               (long long)have, (long long)latest);
        rc = STORE_ERR;
        goto fail;
    }
    rc = sq_int(&t, &done, "SELECT COUNT(*) FROM schema_migrations WHERE version = ?", "i",
                m->version);
    if (rc < 0) goto fail;
    if (done) {
        sq_rollback(&t);
        return STORE_OK;
    }
    rc = STORE_ERR;
    if (sqlite3_exec(t.c->db, m->sql, NULL, NULL, &emsg) != SQLITE_OK) goto fail;
    char pragma[64];
    snprintf(pragma, sizeof pragma, "PRAGMA user_version = %d", m->version);
    if (sqlite3_exec(t.c->db, pragma, NULL, NULL, &emsg) != SQLITE_OK) goto fail;
    rc = sq_exec(&t, "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                 "isI", m->version, m->name, now_ms());
    if (rc < 0) goto fail;
    if (sq_commit(&t) != STORE_OK) {
        rc = STORE_ERR;
        goto fail;
    }
    log_info("store: applied migration %s", m->name);
    return STORE_OK;
fail:
    log_error("store: migration %s failed: %s", m->name, emsg ? emsg : "see previous error");
    if (err && !*err)
        *err = xasprintf("migration %s failed: %s", m->name, emsg ? emsg : "database error");
    sqlite3_free(emsg);
    sq_rollback(&t);
    return rc < 0 ? rc : STORE_ERR;
}

static int migrate(store_t *s, char **err)
{
    int64_t latest = 0;
    for (size_t i = 0; i < store_sqlite_migrations_count; i++)
        if (store_sqlite_migrations[i].version > latest)
            latest = store_sqlite_migrations[i].version;
    for (size_t i = 0; i < store_sqlite_migrations_count; i++) {
        int rc = migrate_one(s, &store_sqlite_migrations[i], latest, err);
        if (rc != STORE_OK) return rc;
    }
    return STORE_OK;
}

static int sq_migrate(store_t *s)
{
    return migrate(s, NULL);
}

/* ---- open / close ---- */

static void presence_mark(sq_store *s);

static void sq_close(store_t *base)
{
    sq_store *s = (sq_store *)base;
    for (int i = 0; i < POOL_SIZE; i++) {
        if (i == 0 && s->conns[i].db) sqlite3_exec(s->conns[i].db, "PRAGMA optimize", 0, 0, 0);
        conn_close(&s->conns[i]);
    }
    pthread_mutex_destroy(&s->pool_mu);
    pthread_cond_destroy(&s->pool_cv);
    pthread_mutex_destroy(&s->write_mu);
    conn_close(&s->wconn);
    pthread_mutex_destroy(&s->done_mu);
    pthread_cond_destroy(&s->done_cv);
    if (s->presence_fd >= 0) {
        presence_mark(s); /* a visit since the others last looked */
        close(s->presence_fd);
    }
    store_base_destroy(base);
    free(s->path);
    free(s);
}

/* ---- process presence ----
 * Every process that opens the database holds a POSIX read lock on byte 0
 * of <path>-procs for as long as it has it open. POSIX locks belong to the
 * process, so F_GETLK for a write lock reports a lock of *another* process
 * only: one system call tells a lone process from a split deployment (serve
 * + worker, or a CLI command running now). The kernel drops the lock when a
 * process dies, crash included.
 *
 * A short visit (a `user grant` takes milliseconds) can begin and end
 * between two looks at the lock, so each process also writes a visit mark
 * (8 bytes at offset 8, unique to it and the moment) when it opens and
 * when it closes the database: a mark the caller has not seen means
 * someone was here. */
static void presence_mark(sq_store *s)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    s->own_mark = ((uint64_t)getpid() << 40) ^ ((uint64_t)ts.tv_sec << 30) ^ (uint64_t)ts.tv_nsec;
    if (pwrite(s->presence_fd, &s->own_mark, sizeof s->own_mark, 8) != sizeof s->own_mark)
        log_warn("store: cannot write the visit mark: %s", strerror(errno));
}

static void presence_open(sq_store *s)
{
    char *p = xasprintf("%s-procs", s->path);
    s->presence_fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    free(p);
    if (s->presence_fd < 0) return; /* then shared() says "maybe": polls stay on */
    struct flock fl = {.l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1};
    if (fcntl(s->presence_fd, F_SETLK, &fl) != 0) {
        close(s->presence_fd);
        s->presence_fd = -1;
        return;
    }
    presence_mark(s);
}

static bool sq_shared(store_t *base, uint64_t *visits)
{
    sq_store *s = (sq_store *)base;
    if (s->presence_fd < 0) return true;
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1};
    if (fcntl(s->presence_fd, F_GETLK, &fl) != 0 || fl.l_type != F_UNLCK) return true;
    uint64_t mark = 0;
    if (pread(s->presence_fd, &mark, sizeof mark, 8) != sizeof mark) return true;
    if (!*visits) *visits = s->own_mark; /* the caller's first look */
    if (mark == *visits) return false;
    *visits = mark;
    return true;
}

static int sq_ping(store_t *s)
{
    sq_tx t;
    if (sq_begin(s, &t, false) != STORE_OK) return STORE_ERR;
    int64_t one = 0;
    int rc = sq_int(&t, &one, "SELECT 1", NULL);
    sq_rollback(&t);
    return rc == STORE_OK && one == 1 ? STORE_OK : STORE_ERR;
}

/* ---- events ---- */

static int event_insert(sq_tx *t, const char *user_id, const char *gen_id, const char *type,
                        const char *data, int queue_position, bool terminal, int64_t now)
{
    int rc = sq_exec(t,
                     "INSERT INTO events (user_id, generation_id, type, data, created_at,"
                     " queue_position, terminal) VALUES (?, ?, ?, ?, ?, ?, ?)",
                     "ssssIii", user_id, gen_id, type, data, now, queue_position, (int)terminal);
    if (rc < 0) return rc;
    t->last_event = sqlite3_last_insert_rowid(t->c->db);
    if (!t->event_user[0])
        snprintf(t->event_user, sizeof t->event_user, "%s", user_id);
    else if (strcmp(t->event_user, user_id) != 0)
        t->event_users_many = true;
    return STORE_OK;
}

int sq_event(sq_tx *t, const char *user_id, const char *gen_id, const char *type, const char *data,
             int64_t now)
{
    if (gen_id) t->queue = true; /* a generation's, state unknown here */
    return event_insert(t, user_id, gen_id, type, data, 0, false, now);
}

int sq_gen_event(sq_tx *t, const gen_record *g, const char *data, int64_t now)
{
    if (g->status != GEN_PENDING) t->queue = true; /* only a pending one is never claimable */
    return event_insert(t, g->user_id, g->id, "generation", data, g->queue_position,
                        gen_status_terminal(g->status), now);
}

int sq_balance_event(sq_tx *t, const char *user_id, int64_t now)
{
    int64_t bal = 0;
    int rc = sq_int(t, &bal, "SELECT token_balance FROM users WHERE id = ?", "s", user_id);
    if (rc != STORE_OK) return rc;
    char *data = store_base_balance_json(t->s, bal);
    rc = sq_event(t, user_id, NULL, "balance", data, now);
    free(data);
    return rc;
}

int sq_ledger_add(sq_tx *t, const char *user_id, const char *kind, int64_t amount, int64_t later,
                  const char *gen_id, const char *reason, int64_t now)
{
    int rc = sq_exec(t,
                     "INSERT INTO token_transactions"
                     " (user_id, kind, amount, balance_after, generation_id, reason, created_at)"
                     " VALUES (?1, ?2, ?3, (SELECT token_balance FROM users WHERE id = ?1) + ?4,"
                     " ?5, ?6, ?7)",
                     "ssIIssI", user_id, kind, amount, later, gen_id, reason, now);
    return rc < 0 ? rc : STORE_OK;
}

/* One row of "SELECT " EVENT_COLS " FROM events". */
#define EVENT_COLS "id, type, generation_id, data, queue_position, terminal"
static void read_event(sqlite3_stmt *st, store_event *e)
{
    memset(e, 0, sizeof *e);
    e->id = sq_col_int(st, 0);
    sq_col_copy(st, 1, e->type, sizeof e->type);
    sq_col_copy(st, 2, e->generation_id, sizeof e->generation_id);
    e->data = sq_col_strdup(st, 3);
    if (!e->data) e->data = xstrdup("{}");
    e->queue_position = sqlite3_column_int(st, 4);
    e->terminal = sqlite3_column_int(st, 5) != 0;
}

static int sq_events_after(store_t *s, const char *user_id, const char *generation_id,
                           int64_t after_id, int limit, store_event **out, size_t *n)
{
    static const char q_user[] = "SELECT " EVENT_COLS " FROM events"
                                 " WHERE user_id = ? AND id > ? ORDER BY id LIMIT ?";
    static const char q_gen[] = "SELECT " EVENT_COLS " FROM events"
                                " WHERE generation_id = ? AND user_id = ? AND id > ?"
                                " ORDER BY id LIMIT ?";
    if (limit <= 0) limit = 100;
    sq_tx t;
    if (sq_begin(s, &t, false) != STORE_OK) return STORE_ERR;
    sqlite3_stmt *st = generation_id
                           ? sq_query(&t, q_gen, "ssIi", generation_id, user_id, after_id, limit)
                           : sq_query(&t, q_user, "sIi", user_id, after_id, limit);
    if (!st) {
        sq_rollback(&t);
        return STORE_ERR;
    }
    store_event *ev = NULL;
    size_t cnt = 0, cap = 0;
    int rc;
    while ((rc = sq_step(st)) == SQLITE_ROW) {
        if (cnt == cap) {
            cap = cap ? cap * 2 : 16;
            ev = xrealloc(ev, cap * sizeof *ev);
        }
        read_event(st, &ev[cnt++]);
    }
    sq_done(st);
    sq_rollback(&t);
    if (rc != SQLITE_DONE) {
        store_events_free(ev, cnt);
        return STORE_ERR;
    }
    *out = ev;
    *n = cnt;
    return STORE_OK;
}

static int sq_events_last_id(store_t *s, int64_t *id)
{
    sq_tx t;
    if (sq_begin(s, &t, false) != STORE_OK) return STORE_ERR;
    int64_t v = 0;
    int rc = sq_int(&t, &v, "SELECT COALESCE(MAX(id), 0) FROM events", NULL);
    sq_rollback(&t);
    if (rc != STORE_OK) return STORE_ERR;
    *id = v;
    return STORE_OK;
}

static int sq_events_latest(store_t *s, const char *generation_id, store_event *out)
{
    sq_tx t;
    if (sq_begin(s, &t, false) != STORE_OK) return STORE_ERR;
    sqlite3_stmt *st = sq_query(&t,
                                "SELECT " EVENT_COLS " FROM events"
                                " WHERE generation_id = ? ORDER BY id DESC LIMIT 1",
                                "s", generation_id);
    int rc = st ? sq_step(st) : STORE_ERR;
    if (rc == SQLITE_ROW) read_event(st, out);
    if (st) sq_done(st);
    sq_rollback(&t);
    return rc == SQLITE_ROW ? STORE_OK : rc == SQLITE_DONE ? STORE_ENOTFOUND : STORE_ERR;
}

static int sq_ledger_totals(store_t *s, int64_t *charged, int64_t *refunded)
{
    sq_tx t;
    if (sq_begin(s, &t, false) != STORE_OK) return STORE_ERR;
    int rc = sq_int(
        &t, charged,
        "SELECT COALESCE(-SUM(amount), 0) FROM token_transactions WHERE kind = 'charge'", NULL);
    if (rc == STORE_OK)
        rc = sq_int(&t, refunded,
                    "SELECT COALESCE(SUM(amount), 0) FROM token_transactions WHERE kind = 'refund'",
                    NULL);
    sq_rollback(&t);
    return rc == STORE_OK ? STORE_OK : STORE_ERR;
}

/* ---- the function table ---- */

static const store_ops sq_ops = {
    .name = "sqlite",
    .close = sq_close,
    .migrate = sq_migrate,
    .ping = sq_ping,
    .shared = sq_shared,
    .user_create = sq_user_create,
    .user_get = sq_user_get,
    .user_by_email = sq_user_by_email,
    .user_list = sq_user_list,
    .user_credit = sq_user_credit,
    .user_stats = sq_user_stats,
    .key_create = sq_key_create,
    .key_list = sq_key_list,
    .key_delete = sq_key_delete,
    .key_get = sq_key_get,
    .key_touch = sq_key_touch,
    .session_create = sq_session_create,
    .session_get = sq_session_get,
    .session_delete = sq_session_delete,
    .ledger_list = sq_ledger_list,
    .ledger_totals = sq_ledger_totals,
    .gen_create = sq_gen_create,
    .batch_get = sq_batch_get,
    .gen_get = sq_gen_get,
    .gen_list = sq_gen_list,
    .gen_delete = sq_gen_delete,
    .gen_counts = sq_gen_counts,
    .gen_start = sq_gen_start,
    .gen_end = sq_gen_end,
    .gen_complete = sq_gen_complete,
    .gen_requeue = sq_gen_requeue,
    .gen_claim = sq_gen_claim,
    .gen_progress = sq_gen_progress,
    .gen_renew = sq_gen_renew,
    .gen_release = sq_gen_release,
    .gen_expired_leases = sq_gen_expired_leases,
    .gen_pending_before = sq_gen_pending_before,
    .gen_next_retry_at = sq_gen_next_retry_at,
    .purge = sq_purge,
    .events_after = sq_events_after,
    .events_latest = sq_events_latest,
    .events_last_id = sq_events_last_id,
    .webhook_create = sq_webhook_create,
    .webhook_list = sq_webhook_list,
    .webhook_get = sq_webhook_get,
    .webhook_delete = sq_webhook_delete,
    .webhook_pending = sq_webhook_pending,
    .webhook_advance = sq_webhook_advance,
    .delivery_claim = sq_delivery_claim,
    .delivery_record = sq_delivery_record,
    .delivery_list = sq_delivery_list,
    .delivery_redeliver = sq_delivery_redeliver,
    .delivery_next_due = sq_delivery_next_due,
    .events_prune = sq_events_prune,
    /* plans */
    .user_set_plan = sq_user_set_plan,
    /* templates */
    .template_create = sq_template_create,
    .template_get = sq_template_get,
    .template_list = sq_template_list,
    .template_update = sq_template_update,
    .template_delete = sq_template_delete,
    .bucket_update = sq_bucket_update,
    .buckets_prune = sq_buckets_prune,
    .idem_peek = sq_idem_peek,
    .gen_claim_fair = sq_gen_claim_fair,
    .queue_stats = sq_queue_stats,
    .queue_heartbeat = sq_queue_heartbeat,
    .queue_items = sq_queue_items,
};

/* SQLite keeps allocation statistics under one process-wide mutex, taken on
 * every allocation by every connection; we never read them. Must run before
 * the library initialises (the first sqlite3_open). */
static void library_setup(void)
{
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

int store_sqlite_open(const char *path, const store_options *opt, store_t **out, char **err)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, library_setup);
    *out = NULL;
    if (err) *err = NULL;
    if (!path || !*path) {
        if (err) *err = xstrdup("sqlite: empty database path");
        return STORE_ERR;
    }
    /* Create the directory the file lives in (e.g. ./data on first run). */
    char *dir = xstrdup(path);
    char *d = dirname(dir);
    if (strcmp(d, ".") != 0 && util_mkdirs(d) != 0)
        log_warn("store: cannot create directory %s: %s", d, strerror(errno));
    free(dir);

    sq_store *s = xcalloc(1, sizeof *s);
    store_base_init(&s->base, &sq_ops, opt ? opt->codec : NULL);
    s->path = xstrdup(path);
    pthread_mutex_init(&s->pool_mu, NULL);
    pthread_cond_init(&s->pool_cv, NULL);
    pthread_mutex_init(&s->write_mu, NULL);
    pthread_mutex_init(&s->done_mu, NULL);
    pthread_cond_init(&s->done_cv, NULL);
    s->presence_fd = -1;
    /* Open the first connection eagerly so a bad path fails here. */
    if (conn_open(s->path, &s->conns[0], err) != STORE_OK) goto fail;
    if (migrate(&s->base, err) != STORE_OK) goto fail;
    presence_open(s);
    *out = &s->base;
    return STORE_OK;
fail:
    if (err && !*err) *err = xasprintf("cannot open database %s", path);
    sq_close(&s->base);
    return STORE_ERR;
}
