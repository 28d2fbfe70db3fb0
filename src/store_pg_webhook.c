/*
 * store_pg_webhook — outbound webhooks on PostgreSQL (store.h): endpoints
 * with their event cursors, deliveries, the lease claim, and the events
 * retention.
 *
 * Event ids come from a sequence and are commit-ordered only per user
 * (store_pg.c, "Event order"): a global `id > cursor` scan could skip a
 * lower id that another user's transaction commits later. So each webhook
 * keeps its own cursor over its one user's events, where id order is
 * commit order, and moving it to the last id seen is exact. Several
 * processes may run the dispatcher at once: creating a delivery is
 * idempotent (UNIQUE (webhook_id, event_id), ON CONFLICT DO NOTHING), the
 * cursor only moves forward (GREATEST), and the claim takes rows with
 * FOR UPDATE SKIP LOCKED, so no attempt is claimed twice.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "store_pg.h"
#include "util.h"

/* ---- endpoints ---- */

int store_pg_webhook_create(store_t *s, const store_webhook *w)
{
    int rc = pg_exec1(s,
                      "INSERT INTO webhooks (id, user_id, url, events, description, secret, cursor,"
                      " created_at) VALUES ($1, $2, $3, $4, $5, $6,"
                      " (SELECT COALESCE(MAX(id), 0) FROM events WHERE user_id = $2), $7)",
                      "ssssssI", w->id, w->user_id, w->url, w->events,
                      w->description ? w->description : "", w->secret, w->created_at);
    return rc < 0 ? rc : STORE_OK;
}

/* Row i of "SELECT id, user_id, url, events, description, created_at". */
static void webhook_from_row(const PGresult *r, int i, store_webhook *w)
{
    memset(w, 0, sizeof *w);
    pg_col_copy(r, i, 0, w->id, sizeof w->id);
    pg_col_copy(r, i, 1, w->user_id, sizeof w->user_id);
    w->url = pg_col_strdup(r, i, 2);
    w->events = pg_col_strdup(r, i, 3);
    w->description = pg_col_strdup(r, i, 4);
    if (!w->description) w->description = xstrdup("");
    w->created_at = pg_col_int(r, i, 5);
}

int store_pg_webhook_list(store_t *s, const char *user_id, store_webhook **out, size_t *n)
{
    PGresult *r = NULL;
    int rc = pg_query1(s, &r,
                       "SELECT id, user_id, url, events, description, created_at"
                       " FROM webhooks WHERE user_id = $1 ORDER BY id DESC",
                       "s", user_id);
    if (rc != STORE_OK) return rc;
    int rows = PQntuples(r);
    store_webhook *w = rows ? xcalloc((size_t)rows, sizeof *w) : NULL;
    for (int i = 0; i < rows; i++)
        webhook_from_row(r, i, &w[i]);
    PQclear(r);
    *out = w;
    *n = (size_t)rows;
    return STORE_OK;
}

int store_pg_webhook_get(store_t *s, const char *webhook_id, store_webhook *out)
{
    PGresult *r = NULL;
    int rc = pg_query1(s, &r,
                       "SELECT id, user_id, url, events, description, created_at"
                       " FROM webhooks WHERE id = $1",
                       "s", webhook_id);
    if (rc != STORE_OK) return rc;
    if (PQntuples(r) == 1)
        webhook_from_row(r, 0, out);
    else
        rc = STORE_ENOTFOUND;
    PQclear(r);
    return rc;
}

int store_pg_webhook_delete(store_t *s, const char *user_id, const char *webhook_id)
{
    /* Deliveries go with it (ON DELETE CASCADE). */
    int rc = pg_exec1(s, "DELETE FROM webhooks WHERE id = $1 AND user_id = $2", "ss", webhook_id,
                      user_id);
    return rc < 0 ? rc : rc == 0 ? STORE_ENOTFOUND : STORE_OK;
}

/* ---- from events to deliveries ---- */

int store_pg_webhook_pending(store_t *s, int limit, store_webhook_event **out, size_t *n)
{
    if (limit <= 0) limit = 100;
    PGresult *r = NULL;
    /* One statement, one snapshot: for each webhook, the events of its user
     * visible now past its cursor are a prefix of what it will ever see
     * there (per-user commit order), and so is any id-ordered cut of them. */
    int rc = pg_query1(
        s, &r,
        "SELECT w.id, w.events, e.id, e.type, e.generation_id, e.data, e.created_at,"
        " (SELECT p.data FROM events p WHERE e.generation_id IS NOT NULL"
        "   AND p.generation_id = e.generation_id AND p.id < e.id ORDER BY p.id DESC LIMIT 1)"
        /* Per webhook, its user's next events from events_user (LATERAL),
         * whatever the planner thinks of a small webhooks table. */
        " FROM webhooks w CROSS JOIN LATERAL (SELECT id, type, generation_id, data, created_at"
        "   FROM events WHERE user_id = w.user_id AND id > w.cursor ORDER BY id LIMIT $1) e"
        " ORDER BY e.id, w.id LIMIT $1",
        "i", limit);
    if (rc != STORE_OK) return rc;
    int rows = PQntuples(r);
    store_webhook_event *ev = rows ? xcalloc((size_t)rows, sizeof *ev) : NULL;
    for (int i = 0; i < rows; i++) {
        store_webhook_event *e = &ev[i];
        pg_col_copy(r, i, 0, e->webhook_id, sizeof e->webhook_id);
        e->events = pg_col_strdup(r, i, 1);
        if (!e->events) e->events = xstrdup("");
        e->ev.id = pg_col_int(r, i, 2);
        pg_col_copy(r, i, 3, e->ev.type, sizeof e->ev.type);
        pg_col_copy(r, i, 4, e->ev.generation_id, sizeof e->ev.generation_id);
        e->ev.data = pg_col_strdup(r, i, 5);
        if (!e->ev.data) e->ev.data = xstrdup("{}");
        e->created_at = pg_col_int(r, i, 6);
        e->prev_data = pg_col_strdup(r, i, 7);
    }
    PQclear(r);
    *out = ev;
    *n = (size_t)rows;
    return STORE_OK;
}

int store_pg_webhook_advance(store_t *s, const char *webhook_id, int64_t cursor,
                             const store_delivery_new *d, size_t n, int64_t now)
{
    pg_tx t;
    int rc = pg_begin(s, &t);
    if (rc != STORE_OK) return rc;
    rc = pg_exec(&t, "UPDATE webhooks SET cursor = GREATEST(cursor, $1) WHERE id = $2", "Is",
                 cursor, webhook_id);
    if (rc == 0) rc = STORE_ENOTFOUND;
    for (size_t i = 0; i < n && rc >= 0; i++)
        rc = pg_exec(&t,
                     "INSERT INTO webhook_deliveries (id, webhook_id, event_id, type, payload,"
                     " next_attempt_at, created_at, updated_at)"
                     " VALUES ($1, $2, $3, $4, $5, $6, $6, $6)"
                     " ON CONFLICT (webhook_id, event_id) DO NOTHING",
                     "ssIssI", d[i].id, webhook_id, d[i].event_id, d[i].type, d[i].payload, now);
    if (rc < 0) {
        pg_rollback(&t);
        return rc;
    }
    return pg_commit(&t);
}

/* ---- deliveries ---- */

#define DELIVERY_COLS                                                                              \
    "d.id, d.webhook_id, d.event_id, d.type, d.status, d.attempts, d.tries,"                       \
    " d.last_status_code, d.next_attempt_at, d.created_at, d.updated_at"

static void delivery_from_row(const PGresult *r, int i, store_delivery *d, bool full)
{
    memset(d, 0, sizeof *d);
    pg_col_copy(r, i, 0, d->id, sizeof d->id);
    pg_col_copy(r, i, 1, d->webhook_id, sizeof d->webhook_id);
    d->event_id = pg_col_int(r, i, 2);
    pg_col_copy(r, i, 3, d->type, sizeof d->type);
    pg_col_copy(r, i, 4, d->status, sizeof d->status);
    d->attempts = (int)pg_col_int(r, i, 5);
    d->tries = (int)pg_col_int(r, i, 6);
    d->last_status_code = (int)pg_col_int(r, i, 7);
    d->next_attempt_at = pg_col_int(r, i, 8);
    d->created_at = pg_col_int(r, i, 9);
    d->updated_at = pg_col_int(r, i, 10);
    if (full) {
        d->payload = pg_col_strdup(r, i, 11);
        d->url = pg_col_strdup(r, i, 12);
        d->secret = pg_col_strdup(r, i, 13);
    }
}

static void read_deliveries(PGresult *r, bool full, store_delivery **out, size_t *n)
{
    int rows = PQntuples(r);
    store_delivery *d = rows ? xcalloc((size_t)rows, sizeof *d) : NULL;
    for (int i = 0; i < rows; i++)
        delivery_from_row(r, i, &d[i], full);
    *out = d;
    *n = (size_t)rows;
}

int store_pg_delivery_claim(store_t *s, const char *lease, int64_t now, int64_t lease_ms, int limit,
                            store_delivery **out, size_t *n)
{
    if (limit <= 0) limit = 1;
    PGresult *r = NULL;
    /* One statement: the rows are locked by the subquery (skipping any that
     * another claimer holds right now) and leased before it commits. */
    int rc = pg_query1(
        s, &r,
        "UPDATE webhook_deliveries d SET lease_owner = $1, lease_until = $2::bigint + $3::bigint"
        " FROM webhooks w WHERE w.id = d.webhook_id AND d.id IN (SELECT id FROM"
        "  webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= $2"
        "  AND (lease_until IS NULL OR lease_until <= $2)"
        "  ORDER BY next_attempt_at, id LIMIT $4 FOR UPDATE SKIP LOCKED)"
        " RETURNING " DELIVERY_COLS ", d.payload, w.url, w.secret",
        "sIIi", lease, now, lease_ms, limit);
    if (rc != STORE_OK) return rc;
    read_deliveries(r, true, out, n);
    PQclear(r);
    return STORE_OK;
}

int store_pg_delivery_record(store_t *s, const char *delivery_id, const char *lease,
                             const store_attempt *a)
{
    int rc = pg_exec1(s,
                      "UPDATE webhook_deliveries SET status = $1, last_status_code = $2,"
                      " next_attempt_at = $3, attempts = attempts + 1, tries = tries + 1,"
                      " lease_owner = NULL, lease_until = NULL, updated_at = $4"
                      " WHERE id = $5 AND lease_owner = $6",
                      "sZZIss", a->status, (int64_t)a->status_code,
                      str_eq(a->status, "pending") ? a->next_attempt_at : (int64_t)0, a->now,
                      delivery_id, lease);
    if (rc < 0) return rc;
    if (rc > 0) return STORE_OK;
    int64_t exists = 0;
    rc = pg_int1(s, &exists, "SELECT COUNT(*) FROM webhook_deliveries WHERE id = $1", "s",
                 delivery_id);
    if (rc != STORE_OK) return rc;
    return exists ? STORE_ECONFLICT : STORE_ENOTFOUND;
}

int store_pg_delivery_list(store_t *s, const char *webhook_id, const char *cursor, int limit,
                           store_delivery **out, size_t *n, char **next_cursor)
{
    if (limit <= 0) limit = 20;
    if (limit > 1000) limit = 1000;
    PGresult *r = NULL;
    int rc = pg_query1(s, &r,
                       "SELECT " DELIVERY_COLS " FROM webhook_deliveries d"
                       " WHERE d.webhook_id = $1 AND ($2::text IS NULL OR d.id < $2)"
                       " ORDER BY d.id DESC LIMIT $3",
                       "ssi", webhook_id, cursor && *cursor ? cursor : NULL, limit + 1);
    if (rc != STORE_OK) return rc;
    store_delivery *rows;
    size_t cnt;
    read_deliveries(r, false, &rows, &cnt);
    PQclear(r);
    bool more = cnt > (size_t)limit;
    if (more) cnt = (size_t)limit;
    *out = rows;
    *n = cnt;
    *next_cursor = more ? xstrdup(rows[cnt - 1].id) : NULL;
    return STORE_OK;
}

int store_pg_delivery_redeliver(store_t *s, const char *webhook_id, const char *delivery_id,
                                int64_t now, store_delivery *out)
{
    PGresult *r = NULL;
    int rc = pg_query1(s, &r,
                       "UPDATE webhook_deliveries d SET status = 'pending', tries = 0,"
                       " next_attempt_at = $3, lease_owner = NULL, lease_until = NULL,"
                       " updated_at = $3 WHERE d.id = $1 AND d.webhook_id = $2"
                       " RETURNING " DELIVERY_COLS,
                       "ssI", delivery_id, webhook_id, now);
    if (rc != STORE_OK) return rc;
    if (PQntuples(r) != 1)
        rc = STORE_ENOTFOUND;
    else if (out)
        delivery_from_row(r, 0, out, false);
    PQclear(r);
    return rc;
}

int store_pg_delivery_next_due(store_t *s, int64_t *at)
{
    return pg_int1(s, at,
                   "SELECT COALESCE(MIN(CASE WHEN lease_until > next_attempt_at THEN lease_until"
                   " ELSE next_attempt_at END), 0) FROM webhook_deliveries"
                   " WHERE status = 'pending'",
                   NULL);
}

/* ---- events retention ---- */

int store_pg_events_prune(store_t *s, int64_t before, int limit, int64_t *deleted)
{
    if (limit <= 0) limit = 1000;
    int rc =
        pg_exec1(s,
                 "DELETE FROM events WHERE id IN (SELECT e.id FROM events e WHERE e.created_at < $1"
                 " AND NOT EXISTS (SELECT 1 FROM webhooks w WHERE w.user_id = e.user_id"
                 "  AND w.cursor < e.id)"
                 " AND (e.generation_id IS NULL OR e.id < (SELECT MAX(g.id) FROM events g"
                 "  WHERE g.generation_id = e.generation_id))"
                 " ORDER BY e.id LIMIT $2)",
                 "Ii", before, limit);
    if (rc < 0) return rc;
    *deleted = rc;
    return STORE_OK;
}
