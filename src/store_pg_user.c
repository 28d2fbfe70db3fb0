/*
 * store_pg_user — users, API keys, sessions, the token ledger and the purge
 * of old idempotency keys and sessions on PostgreSQL (store.h). Every
 * balance change writes its ledger row and a "balance" event in the same
 * transaction (store_pg.c has the helpers). Emails are matched on
 * lower(email), which the unique index users_email_lower also covers.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "store_pg.h"
#include "util.h"

#define USER_COLS                                                                                  \
    "u.id, u.email, u.name, u.token_balance, u.total_tokens_purchased, u.total_tokens_used,"       \
    " u.free_tokens_granted, u.plan, u.role, u.created_at"

static void user_from_row(const PGresult *r, int row, user_record *u)
{
    memset(u, 0, sizeof *u);
    pg_col_copy(r, row, 0, u->id, sizeof u->id);
    pg_col_copy(r, row, 1, u->email, sizeof u->email);
    pg_col_copy(r, row, 2, u->name, sizeof u->name);
    u->token_balance = pg_col_int(r, row, 3);
    u->total_tokens_purchased = pg_col_int(r, row, 4);
    u->total_tokens_used = pg_col_int(r, row, 5);
    u->free_tokens_granted = pg_col_int(r, row, 6);
    pg_col_copy(r, row, 7, u->plan, sizeof u->plan);
    pg_col_copy(r, row, 8, u->role, sizeof u->role);
    u->created_at = pg_col_int(r, row, 9);
}

/* Reads the first row of r as a user and frees r (column 10, when present,
 * is the caller's: read it before through r). STORE_ENOTFOUND when r has no
 * row. */
static int user_result(PGresult *r, user_record *out)
{
    int rc = STORE_ENOTFOUND;
    if (PQntuples(r) >= 1) {
        user_from_row(r, 0, out);
        rc = STORE_OK;
    }
    PQclear(r);
    return rc;
}

int store_pg_user_create(store_t *s, const user_record *u, const char *password_hash, int64_t grant)
{
    int64_t now = u->created_at ? u->created_at : now_ms();
    pg_tx t;
    int rc = pg_begin(s, &t);
    if (rc != STORE_OK) return rc;
    rc = pg_exec(&t,
                 "INSERT INTO users (id, email, name, password_hash, plan, role, created_at)"
                 " VALUES ($1, $2, $3, $4, $5, $6, $7)",
                 "ssssssI", u->id, u->email, u->name, password_hash, u->plan[0] ? u->plan : "free",
                 u->role[0] ? u->role : "user", now);
    if (rc < 0) goto fail;
    if (grant > 0) {
        rc = pg_exec(&t,
                     "UPDATE users SET token_balance = token_balance + $1,"
                     " free_tokens_granted = free_tokens_granted + $1 WHERE id = $2",
                     "Is", grant, u->id);
        if (rc < 0) goto fail;
        rc = pg_ledger_add(&t, u->id, "grant", grant, NULL, "signup grant", now);
        if (rc < 0) goto fail;
        rc = pg_balance_event(&t, u->id, now);
        if (rc < 0) goto fail;
    }
    return pg_commit(&t);
fail:
    pg_rollback(&t);
    return rc;
}

int store_pg_user_get(store_t *s, const char *user_id, user_record *out)
{
    PGresult *r = NULL;
    int rc = pg_query1(s, &r, "SELECT " USER_COLS " FROM users u WHERE u.id = $1", "s", user_id);
    return rc == STORE_OK ? user_result(r, out) : rc;
}

int store_pg_user_by_email(store_t *s, const char *email, user_record *out, char **password_hash)
{
    PGresult *r = NULL;
    int rc = pg_query1(s, &r,
                       "SELECT " USER_COLS ", u.password_hash FROM users u"
                       " WHERE lower(u.email) = lower($1)",
                       "s", email);
    if (rc != STORE_OK) return rc;
    char *hash = PQntuples(r) >= 1 ? pg_col_strdup(r, 0, 10) : NULL;
    rc = user_result(r, out);
    if (rc == STORE_OK && password_hash)
        *password_hash = hash;
    else
        free(hash);
    return rc;
}

int store_pg_user_list(store_t *s, user_record **out, size_t *n)
{
    PGresult *r = NULL;
    int rc =
        pg_query1(s, &r, "SELECT " USER_COLS " FROM users u ORDER BY u.created_at, u.id", NULL);
    if (rc != STORE_OK) return rc;
    int rows = PQntuples(r);
    user_record *arr = xcalloc(rows ? (size_t)rows : 1, sizeof *arr);
    for (int i = 0; i < rows; i++)
        user_from_row(r, i, &arr[i]);
    PQclear(r);
    *out = arr;
    *n = (size_t)rows;
    return STORE_OK;
}

int store_pg_user_credit(store_t *s, const char *user_id, int64_t amount, const char *kind,
                         const char *reason, int64_t *balance_out)
{
    if (!str_eq(kind, "grant") && !str_eq(kind, "purchase") && !str_eq(kind, "adjustment")) {
        log_error("store: store_user_credit: bad ledger kind %s", kind ? kind : "(null)");
        return STORE_ERR;
    }
    int64_t now = now_ms();
    /* grant and purchase count as tokens bought (user_record comment). */
    int64_t purchased = str_eq(kind, "adjustment") ? 0 : amount;
    int64_t bal = 0;
    pg_tx t;
    int rc = pg_begin(s, &t);
    if (rc != STORE_OK) return rc;
    rc = pg_int(&t, &bal,
                "UPDATE users SET token_balance = token_balance + $1,"
                " total_tokens_purchased = total_tokens_purchased + $2"
                " WHERE id = $3 AND token_balance + $1 >= 0 RETURNING token_balance",
                "IIs", amount, purchased, user_id);
    if (rc == STORE_ENOTFOUND) {
        int64_t one;
        rc = pg_int(&t, &one, "SELECT 1 FROM users WHERE id = $1", "s", user_id);
        if (rc == STORE_OK) rc = STORE_EINSUFFICIENT;
    }
    if (rc < 0) goto fail;
    rc = pg_ledger_add(&t, user_id, kind, amount, NULL, reason, now);
    if (rc < 0) goto fail;
    pg_event(&t, user_id, NULL, "balance", store_base_balance_json(s, bal), now);
    rc = pg_commit(&t);
    if (rc == STORE_OK && balance_out) *balance_out = bal;
    return rc;
fail:
    pg_rollback(&t);
    return rc;
}

int store_pg_user_stats(store_t *s, const char *user_id, int64_t month_start, user_stats *out)
{
    PGresult *r = NULL;
    int rc = pg_query1(s, &r,
                       "SELECT COUNT(*), COUNT(*) FILTER (WHERE created_at >= $1),"
                       " COUNT(*) FILTER (WHERE status = 'completed'),"
                       " COUNT(*) FILTER (WHERE status = 'failed')"
                       " FROM generations WHERE user_id = $2",
                       "Is", month_start, user_id);
    if (rc != STORE_OK) return rc;
    if (PQntuples(r) != 1) {
        PQclear(r);
        return STORE_ERR;
    }
    memset(out, 0, sizeof *out);
    out->total_generations = pg_col_int(r, 0, 0);
    out->this_month = pg_col_int(r, 0, 1);
    out->completed = pg_col_int(r, 0, 2);
    out->failed = pg_col_int(r, 0, 3);
    int64_t ended = out->completed + out->failed;
    out->success_rate = ended ? (double)out->completed / (double)ended : 0.0;
    PQclear(r);
    return STORE_OK;
}

/* ---- API keys ---- */

int store_pg_key_create(store_t *s, const char *key_id, const char *user_id, const char *name,
                        const char *key_hash, const char *hint, int64_t now)
{
    int rc = pg_exec1(s,
                      "INSERT INTO api_keys (id, user_id, name, key_hash, hint, created_at)"
                      " VALUES ($1, $2, $3, $4, $5, $6)",
                      "sssssI", key_id, user_id, name ? name : "", key_hash, hint ? hint : "", now);
    return rc < 0 ? rc : STORE_OK;
}

int store_pg_key_list(store_t *s, const char *user_id, store_key_row **out, size_t *n)
{
    PGresult *r = NULL;
    int rc = pg_query1(s, &r,
                       "SELECT id, name, hint, created_at, last_used_at FROM api_keys"
                       " WHERE user_id = $1 AND revoked_at IS NULL"
                       " ORDER BY created_at DESC, id DESC",
                       "s", user_id);
    if (rc != STORE_OK) return rc;
    int rows = PQntuples(r);
    store_key_row *arr = xcalloc(rows ? (size_t)rows : 1, sizeof *arr);
    for (int i = 0; i < rows; i++) {
        pg_col_copy(r, i, 0, arr[i].id, sizeof arr[i].id);
        pg_col_copy(r, i, 1, arr[i].name, sizeof arr[i].name);
        pg_col_copy(r, i, 2, arr[i].hint, sizeof arr[i].hint);
        arr[i].created_at = pg_col_int(r, i, 3);
        arr[i].last_used_at = pg_col_int(r, i, 4);
    }
    PQclear(r);
    *out = arr;
    *n = (size_t)rows;
    return STORE_OK;
}

int store_pg_key_delete(store_t *s, const char *user_id, const char *key_id, int64_t now)
{
    int rc = pg_exec1(s,
                      "UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND user_id = $3"
                      " AND revoked_at IS NULL",
                      "Iss", now, key_id, user_id);
    return rc == 0 ? STORE_ENOTFOUND : rc < 0 ? rc : STORE_OK;
}

/* Runs sql (USER_COLS then one time column, one text parameter) and reads
 * the user and that time (0 when NULL) into *time_out. */
static int user_and_time(store_t *s, const char *sql, const char *arg, user_record *out,
                         int64_t *time_out)
{
    PGresult *r = NULL;
    int rc = pg_query1(s, &r, sql, "s", arg);
    if (rc != STORE_OK) return rc;
    int64_t t = PQntuples(r) >= 1 ? pg_col_int(r, 0, 10) : 0;
    rc = user_result(r, out);
    if (rc == STORE_OK && time_out) *time_out = t;
    return rc;
}

int store_pg_key_get(store_t *s, const char *key_hash, user_record *out, int64_t *last_used_at)
{
    return user_and_time(s,
                         "SELECT " USER_COLS ", k.last_used_at"
                         " FROM api_keys k JOIN users u ON u.id = k.user_id"
                         " WHERE k.key_hash = $1 AND k.revoked_at IS NULL",
                         key_hash, out, last_used_at);
}

int store_pg_key_touch(store_t *s, const char *key_hash, int64_t now)
{
    /* Like SQLite: touching a key that is gone (revoked meanwhile) is not
     * an error. */
    int rc = pg_exec1(s, "UPDATE api_keys SET last_used_at = $1 WHERE key_hash = $2", "Is", now,
                      key_hash);
    return rc < 0 ? rc : STORE_OK;
}

/* ---- sessions ---- */

int store_pg_session_create(store_t *s, const char *token_hash, const char *user_id, int64_t now,
                            int64_t expires_at)
{
    int rc = pg_exec1(s,
                      "INSERT INTO sessions (token_hash, user_id, created_at, expires_at)"
                      " VALUES ($1, $2, $3, $4)",
                      "ssII", token_hash, user_id, now, expires_at);
    return rc < 0 ? rc : STORE_OK;
}

int store_pg_session_get(store_t *s, const char *token_hash, user_record *out, int64_t *expires_at)
{
    return user_and_time(s,
                         "SELECT " USER_COLS ", x.expires_at"
                         " FROM sessions x JOIN users u ON u.id = x.user_id"
                         " WHERE x.token_hash = $1",
                         token_hash, out, expires_at);
}

/* Idempotent: deleting an absent session is not an error (logout twice). */
int store_pg_session_delete(store_t *s, const char *token_hash)
{
    int rc = pg_exec1(s, "DELETE FROM sessions WHERE token_hash = $1", "s", token_hash);
    return rc < 0 ? rc : STORE_OK;
}

/* Deletes in autocommit mode, one statement each: both are idempotent, and
 * the indexes on created_at / expires_at make an empty delete cheap. */
int store_pg_purge(store_t *s, int64_t idem_before, int64_t sessions_before)
{
    int rc = pg_exec1(s, "DELETE FROM idempotency_keys WHERE created_at < $1", "I", idem_before);
    if (rc >= 0)
        rc = pg_exec1(s, "DELETE FROM sessions WHERE expires_at < $1", "I", sessions_before);
    return rc < 0 ? rc : STORE_OK;
}

/* ---- ledger ---- */

/* Cursor: the decimal id of the last row of the previous page. */
int store_pg_ledger_list(store_t *s, const char *user_id, const char *cursor, int limit,
                         store_ledger_row **out, size_t *n, char **next_cursor)
{
    int64_t before = INT64_MAX;
    if (cursor && *cursor) {
        char *end = NULL;
        long long v = strtoll(cursor, &end, 10);
        before = (end && *end == '\0' && v > 0) ? v : 0; /* a bad cursor: empty page */
    }
    if (limit <= 0) limit = 20;
    if (limit > 1000) limit = 1000; /* callers validate 1..100; bound the allocation anyway */
    PGresult *r = NULL;
    int rc = pg_query1(s, &r,
                       "SELECT id, kind, amount, balance_after, generation_id, reason,"
                       " created_at FROM token_transactions"
                       " WHERE user_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3",
                       "sIi", user_id, before, limit + 1);
    if (rc != STORE_OK) return rc;
    int rows = PQntuples(r);
    bool more = rows > limit;
    if (more) rows = limit;
    store_ledger_row *arr = xcalloc(rows ? (size_t)rows : 1, sizeof *arr);
    for (int i = 0; i < rows; i++) {
        store_ledger_row *l = &arr[i];
        l->id = pg_col_int(r, i, 0);
        pg_col_copy(r, i, 1, l->kind, sizeof l->kind);
        l->amount = pg_col_int(r, i, 2);
        l->balance_after = pg_col_int(r, i, 3);
        pg_col_copy(r, i, 4, l->generation_id, sizeof l->generation_id);
        l->reason = pg_col_strdup(r, i, 5);
        l->created_at = pg_col_int(r, i, 6);
    }
    PQclear(r);
    *out = arr;
    *n = (size_t)rows;
    *next_cursor = more && rows ? xasprintf("%lld", (long long)arr[rows - 1].id) : NULL;
    return STORE_OK;
}

int store_pg_ledger_totals(store_t *s, int64_t *charged, int64_t *refunded)
{
    PGresult *r = NULL;
    int rc = pg_query1(s, &r,
                       "SELECT COALESCE(-SUM(amount) FILTER (WHERE kind = 'charge'), 0)::bigint,"
                       " COALESCE(SUM(amount) FILTER (WHERE kind = 'refund'), 0)::bigint"
                       " FROM token_transactions WHERE kind IN ('charge', 'refund')",
                       NULL);
    if (rc != STORE_OK) return rc;
    if (PQntuples(r) == 1) {
        *charged = pg_col_int(r, 0, 0);
        *refunded = pg_col_int(r, 0, 1);
    } else {
        rc = STORE_ERR;
    }
    PQclear(r);
    return rc;
}

/* ---- plans ---- */

int store_pg_user_set_plan(store_t *s, const char *user_id, const char *plan, user_record *out)
{
    PGresult *r = NULL;
    int rc = pg_query1(s, &r, "UPDATE users u SET plan = $2 WHERE u.id = $1 RETURNING " USER_COLS,
                       "ss", user_id, plan);
    if (rc != STORE_OK) return rc;
    if (out) return user_result(r, out);
    rc = PQntuples(r) >= 1 ? STORE_OK : STORE_ENOTFOUND;
    PQclear(r);
    return rc;
}
