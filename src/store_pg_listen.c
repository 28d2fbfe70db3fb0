/*
 * store_pg_listen — the PostgreSQL store's listener thread: one connection
 * of its own (not from the pool) that LISTENs on STORE_PG_CHANNEL and turns
 * each notification of another process's commit into store_base_committed,
 * so this process wakes its streams at once (store_pg.c, DESIGN). The rows
 * stay the truth; a notification is only a hint, so after every
 * (re)connect the hook is called once with the newest event id for the
 * notifications missed meanwhile. Reconnects with backoff; a pipe wakes it
 * when the store closes.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "store_pg.h"
#include "util.h"

#define RECONNECT_MIN_MS 100
#define RECONNECT_MAX_MS 5000
#define LISTEN_CONNECT_MS 3000

struct pg_listener {
    store_t *s;
    const char *const *kw, *const *val; /* connection parameters, the store's */
    const char *where;                  /* log label, the store's */
    pthread_t thread;
    int stop_pipe[2];
};

/* Sleeps ms or until the store closes; true when it closes. */
static bool listen_sleep(pg_listener *l, int ms)
{
    struct pollfd p = {.fd = l->stop_pipe[0], .events = POLLIN};
    return poll(&p, 1, ms) > 0;
}

/* Connects without blocking past LISTEN_CONNECT_MS or the store closing.
 * A new connection or NULL. */
static PGconn *listen_connect(pg_listener *l)
{
    PGconn *pq = PQconnectStartParams(l->kw, l->val, 1);
    if (!pq || PQstatus(pq) == CONNECTION_BAD) goto fail;
    int64_t deadline = mono_ms() + LISTEN_CONNECT_MS;
    PostgresPollingStatusType st = PGRES_POLLING_WRITING;
    while (st != PGRES_POLLING_OK) {
        if (st == PGRES_POLLING_FAILED) goto fail;
        int64_t left = deadline - mono_ms();
        if (left <= 0) goto fail;
        struct pollfd p[2] = {
            {.fd = PQsocket(pq), .events = st == PGRES_POLLING_READING ? POLLIN : POLLOUT},
            {.fd = l->stop_pipe[0], .events = POLLIN},
        };
        if (poll(p, 2, (int)left) < 0 && errno != EINTR) goto fail;
        if (p[1].revents) goto fail;
        if (p[0].revents) st = PQconnectPoll(pq);
    }
    PQsetNoticeProcessor(pq, pg_quiet_notice, NULL);
    return pq;
fail:
    PQfinish(pq);
    return NULL;
}

/* LISTEN, then wake everyone once with the newest event id: commits made
 * while this connection was away sent notifications nobody heard. */
static bool listen_subscribe(pg_listener *l, PGconn *pq)
{
    PGresult *r = PQexec(pq, "LISTEN " STORE_PG_CHANNEL);
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    if (!ok) return false;
    r = PQexec(pq, "SELECT COALESCE(MAX(id), 0) FROM events");
    ok = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1;
    int64_t last = ok ? strtoll(PQgetvalue(r, 0, 0), NULL, 10) : 0;
    PQclear(r);
    if (ok) store_base_committed(l->s, last, NULL, true);
    return ok;
}

static void listen_dispatch(pg_listener *l, const PGnotify *n)
{
    if (strcmp(n->relname, STORE_PG_CHANNEL) != 0 || pg_pool_owns_backend(l->s, n->be_pid)) return;
    char *end = NULL;
    long long id = strtoll(n->extra, &end, 10);
    if (end == n->extra || id <= 0) {
        log_warn("store: ignoring malformed notification on " STORE_PG_CHANNEL);
        return;
    }
    while (*end == ' ')
        end++;
    char user[ID_LEN];
    pg_copy(user, sizeof user, end);
    store_base_committed(l->s, id, user[0] ? user : NULL, true);
}

/* Waits for notifications until the connection drops (false) or the store
 * closes (true). */
static bool listen_loop(pg_listener *l, PGconn *pq)
{
    for (;;) {
        struct pollfd p[2] = {
            {.fd = PQsocket(pq), .events = POLLIN},
            {.fd = l->stop_pipe[0], .events = POLLIN},
        };
        if (poll(p, 2, -1) < 0 && errno != EINTR) return false;
        if (p[1].revents) return true;
        if (!p[0].revents) continue;
        if (!PQconsumeInput(pq)) return false;
        PGnotify *n;
        while ((n = PQnotifies(pq))) {
            listen_dispatch(l, n);
            PQfreemem(n);
        }
        if (PQstatus(pq) != CONNECTION_OK) return false;
    }
}

static void *listen_main(void *arg)
{
    pg_listener *l = arg;
    int backoff = RECONNECT_MIN_MS;
    bool was_up = true;
    for (;;) {
        PGconn *pq = listen_connect(l);
        if (pq && listen_subscribe(l, pq)) {
            if (!was_up) log_info("store: listening on " STORE_PG_CHANNEL " again");
            was_up = true;
            backoff = RECONNECT_MIN_MS;
            bool stop = listen_loop(l, pq);
            PQfinish(pq);
            if (stop) return NULL;
            log_warn("store: lost the " STORE_PG_CHANNEL " listener connection (%s); reconnecting",
                     l->where);
            continue; /* first retry at once */
        }
        PQfinish(pq);
        if (listen_sleep(l, 0)) return NULL; /* closing: not a failure */
        if (was_up) log_warn("store: cannot listen on " STORE_PG_CHANNEL " (%s)", l->where);
        was_up = false;
        if (listen_sleep(l, backoff)) return NULL;
        backoff = backoff * 2 > RECONNECT_MAX_MS ? RECONNECT_MAX_MS : backoff * 2;
    }
}

pg_listener *pg_listener_start(store_t *s, const char *const *kw, const char *const *val,
                               const char *where)
{
    pg_listener *l = xcalloc(1, sizeof *l);
    l->s = s;
    l->kw = kw;
    l->val = val;
    l->where = where;
    if (pipe2(l->stop_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
        log_error("store: pipe: %s", strerror(errno));
        free(l);
        return NULL;
    }
    if (pthread_create(&l->thread, NULL, listen_main, l) != 0) {
        log_error("store: cannot start the PostgreSQL listener thread");
        close(l->stop_pipe[0]);
        close(l->stop_pipe[1]);
        free(l);
        return NULL;
    }
    return l;
}

void pg_listener_stop(pg_listener *l)
{
    if (!l) return;
    if (write(l->stop_pipe[1], "x", 1) != 1) log_error("store: cannot wake the listener");
    pthread_join(l->thread, NULL);
    close(l->stop_pipe[0]);
    close(l->stop_pipe[1]);
    free(l);
}
