/*
 * store_sqlite_user — users, API keys, sessions and the token ledger on
 * SQLite (store.h). Every balance change writes its ledger row and a
 * "balance" event in the same transaction (store_sqlite.c has the helpers).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "store_sqlite.h"
#include "util.h"

#define USER_COLS                                                                                  \
    "u.id, u.email, u.name, u.token_balance, u.total_tokens_purchased, u.total_tokens_used,"       \
    " u.free_tokens_granted, u.plan, u.role, u.created_at"

static void user_from_row(sqlite3_stmt *st, user_record *u)
{
    memset(u, 0, sizeof *u);
    sq_col_copy(st, 0, u->id, sizeof u->id);
    sq_col_copy(st, 1, u->email, sizeof u->email);
    sq_col_copy(st, 2, u->name, sizeof u->name);
    u->token_balance = sq_col_int(st, 3);
    u->total_tokens_purchased = sq_col_int(st, 4);
    u->total_tokens_used = sq_col_int(st, 5);
    u->free_tokens_granted = sq_col_int(st, 6);
    sq_col_copy(st, 7, u->plan, sizeof u->plan);
    sq_col_copy(st, 8, u->role, sizeof u->role);
    u->created_at = sq_col_int(st, 9);
}

/* Runs a query selecting USER_COLS (and optionally one more text column at
 * index 10, copied into *extra) and reads one user. */
static int user_query(sq_tx *t, sqlite3_stmt *st, user_record *out, char **extra)
{
    if (!st) return STORE_ERR;
    int rc = sq_step(st);
    if (rc == SQLITE_ROW) {
        user_from_row(st, out);
        if (extra) *extra = sq_col_strdup(st, 10);
        rc = STORE_OK;
    } else if (rc == SQLITE_DONE) {
        rc = STORE_ENOTFOUND;
    }
    sq_done(st);
    (void)t;
    return rc;
}

int sq_user_create(store_t *s, const user_record *u, const char *password_hash, int64_t grant)
{
    int64_t now = u->created_at ? u->created_at : now_ms();
    sq_tx t;
    if (sq_begin(s, &t, true) != STORE_OK) return STORE_ERR;
    int rc = sq_exec(&t,
                     "INSERT INTO users (id, email, name, password_hash, plan, role, created_at)"
                     " VALUES (?, ?, ?, ?, ?, ?, ?)",
                     "ssssssI", u->id, u->email, u->name, password_hash,
                     u->plan[0] ? u->plan : "free", u->role[0] ? u->role : "user", now);
    if (rc < 0) goto fail;
    if (grant > 0) {
        rc = sq_exec(&t,
                     "UPDATE users SET token_balance = token_balance + ?1,"
                     " free_tokens_granted = free_tokens_granted + ?1 WHERE id = ?2",
                     "Is", grant, u->id);
        if (rc < 0) goto fail;
        rc = sq_ledger_add(&t, u->id, "grant", grant, 0, NULL, "signup grant", now);
        if (rc < 0) goto fail;
        rc = sq_balance_event(&t, u->id, now);
        if (rc < 0) goto fail;
    }
    return sq_commit(&t);
fail:
    sq_rollback(&t);
    return rc;
}

int sq_user_get(store_t *s, const char *user_id, user_record *out)
{
    sq_tx t;
    if (sq_begin(s, &t, false) != STORE_OK) return STORE_ERR;
    int rc = user_query(
        &t, sq_query(&t, "SELECT " USER_COLS " FROM users u WHERE u.id = ?", "s", user_id), out,
        NULL);
    sq_rollback(&t);
    return rc;
}

int sq_user_by_email(store_t *s, const char *email, user_record *out, char **password_hash)
{
    sq_tx t;
    if (sq_begin(s, &t, false) != STORE_OK) return STORE_ERR;
    user_record u;
    char *hash = NULL;
    int rc = user_query(
        &t,
        sq_query(&t, "SELECT " USER_COLS ", u.password_hash FROM users u WHERE u.email = ?", "s",
                 email),
        &u, &hash);
    sq_rollback(&t);
    if (rc != STORE_OK) return rc;
    *out = u;
    if (password_hash)
        *password_hash = hash;
    else
        free(hash);
    return STORE_OK;
}

int sq_user_list(store_t *s, user_record **out, size_t *n)
{
    sq_tx t;
    if (sq_begin(s, &t, false) != STORE_OK) return STORE_ERR;
    sqlite3_stmt *st =
        sq_query(&t, "SELECT " USER_COLS " FROM users u ORDER BY u.created_at, u.id", NULL);
    if (!st) {
        sq_rollback(&t);
        return STORE_ERR;
    }
    user_record *arr = NULL;
    size_t cnt = 0, cap = 0;
    int rc;
    while ((rc = sq_step(st)) == SQLITE_ROW) {
        if (cnt == cap) {
            cap = cap ? cap * 2 : 16;
            arr = xrealloc(arr, cap * sizeof *arr);
        }
        user_from_row(st, &arr[cnt++]);
    }
    sq_done(st);
    sq_rollback(&t);
    if (rc != SQLITE_DONE) {
        free(arr);
        return STORE_ERR;
    }
    *out = arr;
    *n = cnt;
    return STORE_OK;
}

int sq_user_credit(store_t *s, const char *user_id, int64_t amount, const char *kind,
                   const char *reason, int64_t *balance_out)
{
    if (!str_eq(kind, "grant") && !str_eq(kind, "purchase") && !str_eq(kind, "adjustment")) {
        log_error("store: store_user_credit: bad ledger kind %s", kind ? kind : "(null)");
        return STORE_ERR;
    }
    int64_t now = now_ms();
    /* grant and purchase count as tokens bought (user_record comment). */
    int64_t purchased = str_eq(kind, "adjustment") ? 0 : amount;
    sq_tx t;
    if (sq_begin(s, &t, true) != STORE_OK) return STORE_ERR;
    int rc = sq_exec(&t,
                     "UPDATE users SET token_balance = token_balance + ?1,"
                     " total_tokens_purchased = total_tokens_purchased + ?2"
                     " WHERE id = ?3 AND token_balance + ?1 >= 0",
                     "IIs", amount, purchased, user_id);
    if (rc < 0) goto fail;
    if (rc == 0) {
        int64_t one;
        rc = sq_int(&t, &one, "SELECT 1 FROM users WHERE id = ?", "s", user_id);
        if (rc == STORE_OK) rc = STORE_EINSUFFICIENT;
        goto fail;
    }
    rc = sq_ledger_add(&t, user_id, kind, amount, 0, NULL, reason, now);
    if (rc < 0) goto fail;
    rc = sq_balance_event(&t, user_id, now);
    if (rc < 0) goto fail;
    int64_t bal = 0;
    rc = sq_int(&t, &bal, "SELECT token_balance FROM users WHERE id = ?", "s", user_id);
    if (rc < 0) goto fail;
    rc = sq_commit(&t);
    if (rc == STORE_OK && balance_out) *balance_out = bal;
    return rc;
fail:
    sq_rollback(&t);
    return rc;
}

int sq_user_stats(store_t *s, const char *user_id, int64_t month_start, user_stats *out)
{
    sq_tx t;
    if (sq_begin(s, &t, false) != STORE_OK) return STORE_ERR;
    sqlite3_stmt *st = sq_query(&t,
                                "SELECT COUNT(*), COALESCE(SUM(created_at >= ?1), 0),"
                                " COALESCE(SUM(status = 'completed'), 0),"
                                " COALESCE(SUM(status = 'failed'), 0)"
                                " FROM generations WHERE user_id = ?2",
                                "Is", month_start, user_id);
    int rc = st ? sq_step(st) : STORE_ERR;
    if (rc == SQLITE_ROW) {
        memset(out, 0, sizeof *out);
        out->total_generations = sq_col_int(st, 0);
        out->this_month = sq_col_int(st, 1);
        out->completed = sq_col_int(st, 2);
        out->failed = sq_col_int(st, 3);
        int64_t ended = out->completed + out->failed;
        out->success_rate = ended ? (double)out->completed / (double)ended : 0.0;
        rc = STORE_OK;
    } else if (rc == SQLITE_DONE) {
        rc = STORE_ERR;
    }
    sq_done(st);
    sq_rollback(&t);
    return rc;
}

/* ---- API keys ---- */

int sq_key_create(store_t *s, const char *key_id, const char *user_id, const char *name,
                  const char *key_hash, const char *hint, int64_t now)
{
    sq_tx t;
    if (sq_begin(s, &t, true) != STORE_OK) return STORE_ERR;
    int rc = sq_exec(&t,
                     "INSERT INTO api_keys (id, user_id, name, key_hash, hint, created_at)"
                     " VALUES (?, ?, ?, ?, ?, ?)",
                     "sssssI", key_id, user_id, name ? name : "", key_hash, hint ? hint : "", now);
    if (rc < 0) {
        sq_rollback(&t);
        return rc;
    }
    return sq_commit(&t);
}

int sq_key_list(store_t *s, const char *user_id, store_key_row **out, size_t *n)
{
    sq_tx t;
    if (sq_begin(s, &t, false) != STORE_OK) return STORE_ERR;
    sqlite3_stmt *st = sq_query(&t,
                                "SELECT id, name, hint, created_at, last_used_at FROM api_keys"
                                " WHERE user_id = ? AND revoked_at IS NULL"
                                " ORDER BY created_at DESC, id DESC",
                                "s", user_id);
    if (!st) {
        sq_rollback(&t);
        return STORE_ERR;
    }
    store_key_row *arr = NULL;
    size_t cnt = 0, cap = 0;
    int rc;
    while ((rc = sq_step(st)) == SQLITE_ROW) {
        if (cnt == cap) {
            cap = cap ? cap * 2 : 8;
            arr = xrealloc(arr, cap * sizeof *arr);
        }
        store_key_row *k = &arr[cnt++];
        memset(k, 0, sizeof *k);
        sq_col_copy(st, 0, k->id, sizeof k->id);
        sq_col_copy(st, 1, k->name, sizeof k->name);
        sq_col_copy(st, 2, k->hint, sizeof k->hint);
        k->created_at = sq_col_int(st, 3);
        k->last_used_at = sq_col_int(st, 4); /* NULL reads as 0 */
    }
    sq_done(st);
    sq_rollback(&t);
    if (rc != SQLITE_DONE) {
        free(arr);
        return STORE_ERR;
    }
    *out = arr;
    *n = cnt;
    return STORE_OK;
}

int sq_key_delete(store_t *s, const char *user_id, const char *key_id, int64_t now)
{
    sq_tx t;
    if (sq_begin(s, &t, true) != STORE_OK) return STORE_ERR;
    int rc = sq_exec(&t,
                     "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND user_id = ?"
                     " AND revoked_at IS NULL",
                     "Iss", now, key_id, user_id);
    if (rc <= 0) {
        sq_rollback(&t);
        return rc == 0 ? STORE_ENOTFOUND : rc;
    }
    return sq_commit(&t);
}

int sq_key_get(store_t *s, const char *key_hash, user_record *out, int64_t *last_used_at)
{
    sq_tx t;
    if (sq_begin(s, &t, false) != STORE_OK) return STORE_ERR;
    user_record u;
    char *last = NULL;
    int rc = user_query(&t,
                        sq_query(&t,
                                 "SELECT " USER_COLS ", CAST(k.last_used_at AS TEXT)"
                                 " FROM api_keys k JOIN users u ON u.id = k.user_id"
                                 " WHERE k.key_hash = ? AND k.revoked_at IS NULL",
                                 "s", key_hash),
                        &u, &last);
    sq_rollback(&t);
    if (rc != STORE_OK) return rc;
    *out = u;
    if (last_used_at) *last_used_at = last ? strtoll(last, NULL, 10) : 0;
    free(last);
    return STORE_OK;
}

int sq_key_touch(store_t *s, const char *key_hash, int64_t now)
{
    sq_tx t;
    if (sq_begin(s, &t, true) != STORE_OK) return STORE_ERR;
    int rc =
        sq_exec(&t, "UPDATE api_keys SET last_used_at = ? WHERE key_hash = ?", "Is", now, key_hash);
    if (rc < 0) {
        sq_rollback(&t);
        return rc;
    }
    return sq_commit(&t);
}

/* ---- sessions ---- */

int sq_session_create(store_t *s, const char *token_hash, const char *user_id, int64_t now,
                      int64_t expires_at)
{
    sq_tx t;
    if (sq_begin(s, &t, true) != STORE_OK) return STORE_ERR;
    int rc = sq_exec(&t,
                     "INSERT INTO sessions (token_hash, user_id, created_at, expires_at)"
                     " VALUES (?, ?, ?, ?)",
                     "ssII", token_hash, user_id, now, expires_at);
    if (rc < 0) {
        sq_rollback(&t);
        return rc;
    }
    return sq_commit(&t);
}

int sq_session_get(store_t *s, const char *token_hash, user_record *out, int64_t *expires_at)
{
    sq_tx t;
    if (sq_begin(s, &t, false) != STORE_OK) return STORE_ERR;
    user_record u;
    char *expires = NULL;
    int rc = user_query(&t,
                        sq_query(&t,
                                 "SELECT " USER_COLS ", CAST(x.expires_at AS TEXT)"
                                 " FROM sessions x JOIN users u ON u.id = x.user_id"
                                 " WHERE x.token_hash = ?",
                                 "s", token_hash),
                        &u, &expires);
    sq_rollback(&t);
    if (rc != STORE_OK) return rc;
    *out = u;
    if (expires_at) *expires_at = expires ? strtoll(expires, NULL, 10) : 0;
    free(expires);
    return STORE_OK;
}

/* Idempotent: deleting an absent session is not an error (logout twice). */
int sq_session_delete(store_t *s, const char *token_hash)
{
    sq_tx t;
    if (sq_begin(s, &t, true) != STORE_OK) return STORE_ERR;
    int rc = sq_exec(&t, "DELETE FROM sessions WHERE token_hash = ?", "s", token_hash);
    if (rc < 0) {
        sq_rollback(&t);
        return rc;
    }
    return sq_commit(&t);
}

/* ---- ledger ---- */

/* Cursor: the decimal id of the last row of the previous page. */
int sq_ledger_list(store_t *s, const char *user_id, const char *cursor, int limit,
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
    sq_tx t;
    if (sq_begin(s, &t, false) != STORE_OK) return STORE_ERR;
    sqlite3_stmt *st = sq_query(&t,
                                "SELECT id, kind, amount, balance_after, generation_id, reason,"
                                " created_at FROM token_transactions"
                                " WHERE user_id = ? AND id < ? ORDER BY id DESC LIMIT ?",
                                "sIi", user_id, before, limit + 1);
    if (!st) {
        sq_rollback(&t);
        return STORE_ERR;
    }
    store_ledger_row *rows = xcalloc((size_t)limit, sizeof *rows);
    size_t cnt = 0;
    bool more = false;
    int rc;
    while ((rc = sq_step(st)) == SQLITE_ROW) {
        if (cnt == (size_t)limit) {
            more = true;
            continue;
        }
        store_ledger_row *r = &rows[cnt++];
        r->id = sq_col_int(st, 0);
        sq_col_copy(st, 1, r->kind, sizeof r->kind);
        r->amount = sq_col_int(st, 2);
        r->balance_after = sq_col_int(st, 3);
        sq_col_copy(st, 4, r->generation_id, sizeof r->generation_id);
        r->reason = sq_col_strdup(st, 5);
        r->created_at = sq_col_int(st, 6);
    }
    sq_done(st);
    sq_rollback(&t);
    if (rc != SQLITE_DONE) {
        store_ledger_rows_free(rows, cnt);
        return STORE_ERR;
    }
    *out = rows;
    *n = cnt;
    *next_cursor = more && cnt ? xasprintf("%lld", (long long)rows[cnt - 1].id) : NULL;
    return STORE_OK;
}

/* ---- plans ---- */

int sq_user_set_plan(store_t *s, const char *user_id, const char *plan, user_record *out)
{
    sq_tx t;
    if (sq_begin(s, &t, true) != STORE_OK) return STORE_ERR;
    int rc = sq_exec(&t, "UPDATE users SET plan = ? WHERE id = ?", "ss", plan, user_id);
    if (rc == 0) rc = STORE_ENOTFOUND;
    if (rc > 0 && out)
        rc = user_query(
            &t, sq_query(&t, "SELECT " USER_COLS " FROM users u WHERE u.id = ?", "s", user_id), out,
            NULL);
    if (rc < 0) {
        sq_rollback(&t);
        return rc;
    }
    return sq_commit(&t);
}
