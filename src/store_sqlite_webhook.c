/*
 * store_sqlite_webhook — outbound webhooks on SQLite (store.h): endpoints
 * with their event cursors, deliveries, the lease claim, and the events
 * retention. Writers are serialised by the store's writer mutex (and
 * BEGIN IMMEDIATE across processes), so event ids are commit-ordered and a
 * claim is exclusive without row locks.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "store_sqlite.h"
#include "util.h"

/* ---- endpoints ---- */

int sq_webhook_create(store_t *s, const store_webhook *w)
{
    sq_tx t;
    if (sq_begin(s, &t, true) != STORE_OK) return STORE_ERR;
    int rc = sq_exec(&t,
                     "INSERT INTO webhooks (id, user_id, url, events, description, secret, cursor,"
                     " created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6,"
                     " (SELECT COALESCE(MAX(id), 0) FROM events WHERE user_id = ?2), ?7)",
                     "ssssssI", w->id, w->user_id, w->url, w->events,
                     w->description ? w->description : "", w->secret, w->created_at);
    if (rc < 0) {
        sq_rollback(&t);
        return rc;
    }
    return sq_commit(&t);
}

/* One row of "SELECT id, user_id, url, events, description, created_at". */
static void webhook_from_row(sqlite3_stmt *st, store_webhook *w)
{
    memset(w, 0, sizeof *w);
    sq_col_copy(st, 0, w->id, sizeof w->id);
    sq_col_copy(st, 1, w->user_id, sizeof w->user_id);
    w->url = sq_col_strdup(st, 2);
    w->events = sq_col_strdup(st, 3);
    w->description = sq_col_strdup(st, 4);
    if (!w->description) w->description = xstrdup("");
    w->created_at = sq_col_int(st, 5);
}

int sq_webhook_list(store_t *s, const char *user_id, store_webhook **out, size_t *n)
{
    sq_tx t;
    if (sq_begin(s, &t, false) != STORE_OK) return STORE_ERR;
    sqlite3_stmt *st = sq_query(&t,
                                "SELECT id, user_id, url, events, description, created_at"
                                " FROM webhooks WHERE user_id = ? ORDER BY id DESC",
                                "s", user_id);
    if (!st) {
        sq_rollback(&t);
        return STORE_ERR;
    }
    store_webhook *rows = NULL;
    size_t cnt = 0, cap = 0;
    int rc;
    while ((rc = sq_step(st)) == SQLITE_ROW) {
        if (cnt == cap) {
            cap = cap ? cap * 2 : 8;
            rows = xrealloc(rows, cap * sizeof *rows);
        }
        webhook_from_row(st, &rows[cnt++]);
    }
    sq_done(st);
    sq_rollback(&t);
    if (rc != SQLITE_DONE) {
        store_webhooks_free(rows, cnt);
        return STORE_ERR;
    }
    *out = rows;
    *n = cnt;
    return STORE_OK;
}

int sq_webhook_get(store_t *s, const char *webhook_id, store_webhook *out)
{
    sq_tx t;
    if (sq_begin(s, &t, false) != STORE_OK) return STORE_ERR;
    sqlite3_stmt *st = sq_query(&t,
                                "SELECT id, user_id, url, events, description, created_at"
                                " FROM webhooks WHERE id = ?",
                                "s", webhook_id);
    int rc = st ? sq_step(st) : STORE_ERR;
    if (rc == SQLITE_ROW) webhook_from_row(st, out);
    sq_done(st);
    sq_rollback(&t);
    return rc == SQLITE_ROW ? STORE_OK : rc == SQLITE_DONE ? STORE_ENOTFOUND : STORE_ERR;
}

int sq_webhook_delete(store_t *s, const char *user_id, const char *webhook_id)
{
    sq_tx t;
    if (sq_begin(s, &t, true) != STORE_OK) return STORE_ERR;
    /* Deliveries go with it (ON DELETE CASCADE). */
    int rc =
        sq_exec(&t, "DELETE FROM webhooks WHERE id = ? AND user_id = ?", "ss", webhook_id, user_id);
    if (rc <= 0) {
        sq_rollback(&t);
        return rc == 0 ? STORE_ENOTFOUND : rc;
    }
    return sq_commit(&t);
}

/* ---- from events to deliveries ---- */

int sq_webhook_pending(store_t *s, int limit, store_webhook_event **out, size_t *n)
{
    if (limit <= 0) limit = 100;
    sq_tx t;
    if (sq_begin(s, &t, false) != STORE_OK) return STORE_ERR;
    sqlite3_stmt *st = sq_query(
        &t,
        "SELECT w.id, w.events, e.id, e.type, e.generation_id, e.data, e.created_at,"
        " (SELECT p.data FROM events p WHERE e.generation_id IS NOT NULL"
        "   AND p.generation_id = e.generation_id AND p.id < e.id ORDER BY p.id DESC LIMIT 1)"
        /* CROSS JOIN keeps webhooks the outer loop, so each one reads its
         * user's events past its cursor from events_user; a plain JOIN
         * lets the planner scan all of events instead. */
        " FROM webhooks w CROSS JOIN events e ON e.user_id = w.user_id AND e.id > w.cursor"
        " ORDER BY e.id, w.id LIMIT ?",
        "i", limit);
    if (!st) {
        sq_rollback(&t);
        return STORE_ERR;
    }
    store_webhook_event *rows = NULL;
    size_t cnt = 0, cap = 0;
    int rc;
    while ((rc = sq_step(st)) == SQLITE_ROW) {
        if (cnt == cap) {
            cap = cap ? cap * 2 : 16;
            rows = xrealloc(rows, cap * sizeof *rows);
        }
        store_webhook_event *e = &rows[cnt++];
        memset(e, 0, sizeof *e);
        sq_col_copy(st, 0, e->webhook_id, sizeof e->webhook_id);
        e->events = sq_col_strdup(st, 1);
        e->ev.id = sq_col_int(st, 2);
        sq_col_copy(st, 3, e->ev.type, sizeof e->ev.type);
        sq_col_copy(st, 4, e->ev.generation_id, sizeof e->ev.generation_id);
        e->ev.data = sq_col_strdup(st, 5);
        if (!e->ev.data) e->ev.data = xstrdup("{}");
        e->created_at = sq_col_int(st, 6);
        e->prev_data = sq_col_strdup(st, 7);
        if (!e->events) e->events = xstrdup("");
    }
    sq_done(st);
    sq_rollback(&t);
    if (rc != SQLITE_DONE) {
        store_webhook_events_free(rows, cnt);
        return STORE_ERR;
    }
    *out = rows;
    *n = cnt;
    return STORE_OK;
}

int sq_webhook_advance(store_t *s, const char *webhook_id, int64_t cursor,
                       const store_delivery_new *d, size_t n, int64_t now)
{
    sq_tx t;
    if (sq_begin(s, &t, true) != STORE_OK) return STORE_ERR;
    int rc = sq_exec(&t, "UPDATE webhooks SET cursor = MAX(cursor, ?) WHERE id = ?", "Is", cursor,
                     webhook_id);
    if (rc == 0) rc = STORE_ENOTFOUND;
    for (size_t i = 0; i < n && rc >= 0; i++)
        rc = sq_exec(&t,
                     "INSERT INTO webhook_deliveries (id, webhook_id, event_id, type, payload,"
                     " next_attempt_at, created_at, updated_at)"
                     " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?6)"
                     " ON CONFLICT (webhook_id, event_id) DO NOTHING",
                     "ssIssI", d[i].id, webhook_id, d[i].event_id, d[i].type, d[i].payload, now);
    if (rc < 0) {
        sq_rollback(&t);
        return rc;
    }
    return sq_commit(&t);
}

/* ---- deliveries ---- */

#define DELIVERY_COLS                                                                              \
    "d.id, d.webhook_id, d.event_id, d.type, d.status, d.attempts, d.tries,"                       \
    " d.last_status_code, d.next_attempt_at, d.created_at, d.updated_at"

static void delivery_from_row(sqlite3_stmt *st, store_delivery *d, bool full)
{
    memset(d, 0, sizeof *d);
    sq_col_copy(st, 0, d->id, sizeof d->id);
    sq_col_copy(st, 1, d->webhook_id, sizeof d->webhook_id);
    d->event_id = sq_col_int(st, 2);
    sq_col_copy(st, 3, d->type, sizeof d->type);
    sq_col_copy(st, 4, d->status, sizeof d->status);
    d->attempts = (int)sq_col_int(st, 5);
    d->tries = (int)sq_col_int(st, 6);
    d->last_status_code = (int)sq_col_int(st, 7);
    d->next_attempt_at = sq_col_int(st, 8);
    d->created_at = sq_col_int(st, 9);
    d->updated_at = sq_col_int(st, 10);
    if (full) {
        d->payload = sq_col_strdup(st, 11);
        d->url = sq_col_strdup(st, 12);
        d->secret = sq_col_strdup(st, 13);
    }
}

/* Reads every row of st into a new array. */
static int read_deliveries(sqlite3_stmt *st, bool full, store_delivery **out, size_t *n)
{
    store_delivery *rows = NULL;
    size_t cnt = 0, cap = 0;
    int rc;
    while ((rc = sq_step(st)) == SQLITE_ROW) {
        if (cnt == cap) {
            cap = cap ? cap * 2 : 16;
            rows = xrealloc(rows, cap * sizeof *rows);
        }
        delivery_from_row(st, &rows[cnt++], full);
    }
    sq_done(st);
    if (rc != SQLITE_DONE) {
        store_deliveries_free(rows, cnt);
        return STORE_ERR;
    }
    *out = rows;
    *n = cnt;
    return STORE_OK;
}

int sq_delivery_claim(store_t *s, const char *lease, int64_t now, int64_t lease_ms, int limit,
                      store_delivery **out, size_t *n)
{
    if (limit <= 0) limit = 1;
    sq_tx t;
    if (sq_begin(s, &t, true) != STORE_OK) return STORE_ERR;
    int rc = sq_exec(&t,
                     "UPDATE webhook_deliveries SET lease_owner = ?1, lease_until = ?2 + ?3"
                     " WHERE id IN (SELECT id FROM webhook_deliveries WHERE status = 'pending'"
                     "  AND next_attempt_at <= ?2 AND (lease_until IS NULL OR lease_until <= ?2)"
                     "  ORDER BY next_attempt_at, id LIMIT ?4)",
                     "sIIi", lease, now, lease_ms, limit);
    if (rc < 0) goto fail;
    *out = NULL;
    *n = 0;
    if (rc == 0) {
        sq_rollback(&t);
        return STORE_OK;
    }
    sqlite3_stmt *st = sq_query(&t,
                                "SELECT " DELIVERY_COLS ", d.payload, w.url, w.secret"
                                " FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id"
                                " WHERE d.lease_owner = ? ORDER BY d.next_attempt_at, d.id",
                                "s", lease);
    rc = st ? read_deliveries(st, true, out, n) : STORE_ERR;
    if (rc != STORE_OK) goto fail;
    rc = sq_commit(&t);
    if (rc != STORE_OK) {
        store_deliveries_free(*out, *n);
        *out = NULL;
        *n = 0;
    }
    return rc;
fail:
    sq_rollback(&t);
    return rc;
}

int sq_delivery_record(store_t *s, const char *delivery_id, const char *lease,
                       const store_attempt *a)
{
    sq_tx t;
    if (sq_begin(s, &t, true) != STORE_OK) return STORE_ERR;
    int rc = sq_exec(&t,
                     "UPDATE webhook_deliveries SET status = ?, last_status_code = ?,"
                     " next_attempt_at = ?, attempts = attempts + 1, tries = tries + 1,"
                     " lease_owner = NULL, lease_until = NULL, updated_at = ?"
                     " WHERE id = ? AND lease_owner = ?",
                     "sZZIss", a->status, (int64_t)a->status_code,
                     str_eq(a->status, "pending") ? a->next_attempt_at : (int64_t)0, a->now,
                     delivery_id, lease);
    if (rc == 0) {
        int64_t exists = 0;
        rc = sq_int(&t, &exists, "SELECT COUNT(*) FROM webhook_deliveries WHERE id = ?", "s",
                    delivery_id);
        if (rc == STORE_OK) rc = exists ? STORE_ECONFLICT : STORE_ENOTFOUND;
    }
    if (rc < 0) {
        sq_rollback(&t);
        return rc;
    }
    return sq_commit(&t);
}

int sq_delivery_list(store_t *s, const char *webhook_id, const char *cursor, int limit,
                     store_delivery **out, size_t *n, char **next_cursor)
{
    if (limit <= 0) limit = 20;
    if (limit > 1000) limit = 1000;
    sq_tx t;
    if (sq_begin(s, &t, false) != STORE_OK) return STORE_ERR;
    sqlite3_stmt *st = sq_query(&t,
                                "SELECT " DELIVERY_COLS " FROM webhook_deliveries d"
                                " WHERE d.webhook_id = ?1 AND (?2 IS NULL OR d.id < ?2)"
                                " ORDER BY d.id DESC LIMIT ?3",
                                "ssi", webhook_id, cursor && *cursor ? cursor : NULL, limit + 1);
    store_delivery *rows = NULL;
    size_t cnt = 0;
    int rc = st ? read_deliveries(st, false, &rows, &cnt) : STORE_ERR;
    sq_rollback(&t);
    if (rc != STORE_OK) return rc;
    bool more = cnt > (size_t)limit;
    if (more) cnt = (size_t)limit;
    *out = rows;
    *n = cnt;
    *next_cursor = more ? xstrdup(rows[cnt - 1].id) : NULL;
    return STORE_OK;
}

int sq_delivery_redeliver(store_t *s, const char *webhook_id, const char *delivery_id, int64_t now,
                          store_delivery *out)
{
    sq_tx t;
    if (sq_begin(s, &t, true) != STORE_OK) return STORE_ERR;
    int rc = sq_exec(&t,
                     "UPDATE webhook_deliveries SET status = 'pending', tries = 0,"
                     " next_attempt_at = ?3, lease_owner = NULL, lease_until = NULL,"
                     " updated_at = ?3 WHERE id = ?1 AND webhook_id = ?2",
                     "ssI", delivery_id, webhook_id, now);
    if (rc == 0) rc = STORE_ENOTFOUND;
    if (rc > 0 && out) {
        sqlite3_stmt *st =
            sq_query(&t, "SELECT " DELIVERY_COLS " FROM webhook_deliveries d WHERE d.id = ?", "s",
                     delivery_id);
        rc = st ? sq_step(st) : STORE_ERR;
        if (rc == SQLITE_ROW) delivery_from_row(st, out, false);
        sq_done(st);
        rc = rc == SQLITE_ROW ? STORE_OK : STORE_ERR;
    }
    if (rc < 0) {
        sq_rollback(&t);
        return rc;
    }
    return sq_commit(&t);
}

int sq_delivery_next_due(store_t *s, int64_t *at)
{
    sq_tx t;
    if (sq_begin(s, &t, false) != STORE_OK) return STORE_ERR;
    int64_t v = 0;
    int rc = sq_int(&t, &v,
                    "SELECT MIN(CASE WHEN lease_until > next_attempt_at THEN lease_until"
                    " ELSE next_attempt_at END) FROM webhook_deliveries WHERE status = 'pending'",
                    NULL);
    sq_rollback(&t);
    if (rc != STORE_OK) return STORE_ERR;
    *at = v;
    return STORE_OK;
}

/* ---- events retention ---- */

int sq_events_prune(store_t *s, int64_t before, int limit, int64_t *deleted)
{
    if (limit <= 0) limit = 1000;
    sq_tx t;
    if (sq_begin(s, &t, true) != STORE_OK) return STORE_ERR;
    int rc =
        sq_exec(&t,
                "DELETE FROM events WHERE id IN (SELECT e.id FROM events e WHERE e.created_at < ?1"
                " AND NOT EXISTS (SELECT 1 FROM webhooks w WHERE w.user_id = e.user_id"
                "  AND w.cursor < e.id)"
                " AND (e.generation_id IS NULL OR e.id < (SELECT MAX(g.id) FROM events g"
                "  WHERE g.generation_id = e.generation_id))"
                " ORDER BY e.id LIMIT ?2)",
                "Ii", before, limit);
    if (rc < 0) {
        sq_rollback(&t);
        return rc;
    }
    *deleted = rc;
    return sq_commit(&t);
}
