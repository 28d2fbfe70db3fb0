/*
 * store_sqlite_rate — the rate-limit buckets on SQLite (store.h "rate
 * limits"): one write transaction (BEGIN IMMEDIATE under the writer
 * mutex) reads the row, lets the caller's function change it, and writes
 * it back, so concurrent takes — from this process or another one on the
 * same file — run one after another. Also the read-only idempotency
 * check a request refused by its limit makes (it may be a replay).
 */
#include <string.h>

#include "store_sqlite.h"
#include "util.h"

int sq_bucket_update(store_t *s, const char *key, store_bucket_fn fn, void *ctx)
{
    sq_tx t;
    int rc = sq_begin(s, &t, true);
    if (rc != STORE_OK) return rc;
    store_bucket b = {0};
    sqlite3_stmt *st =
        sq_query(&t, "SELECT tokens, updated_at FROM rate_limits WHERE bucket = ?1", "s", key);
    if (!st) {
        rc = STORE_ERR;
        goto fail;
    }
    rc = sq_step(st);
    if (rc == SQLITE_ROW) {
        b.tokens = sqlite3_column_double(st, 0);
        b.updated_at = sq_col_int(st, 1);
    }
    sq_done(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) goto fail;
    if (fn(&b, ctx)) {
        rc = sq_exec(&t,
                     "INSERT INTO rate_limits (bucket, tokens, updated_at) VALUES (?1, ?2, ?3)"
                     " ON CONFLICT (bucket) DO UPDATE SET tokens = excluded.tokens,"
                     " updated_at = excluded.updated_at",
                     "sdI", key, b.tokens, b.updated_at);
        if (rc < 0) goto fail;
    }
    return sq_commit(&t);
fail:
    sq_rollback(&t);
    return rc;
}

int sq_buckets_prune(store_t *s, const char *prefix, int64_t before, int limit, int64_t *deleted)
{
    sq_tx t;
    int rc = sq_begin(s, &t, true);
    if (rc != STORE_OK) return rc;
    rc = sq_exec(&t,
                 "DELETE FROM rate_limits WHERE bucket IN (SELECT bucket FROM rate_limits"
                 " WHERE substr(bucket, 1, length(?1)) = ?1 AND updated_at < ?2 LIMIT ?3)",
                 "sIi", prefix, before, limit);
    if (rc < 0) {
        sq_rollback(&t);
        return rc;
    }
    *deleted = rc;
    return sq_commit(&t);
}

int sq_idem_peek(store_t *s, const char *user_id, const store_idem *idem, char **replay_response,
                 int *replay_status)
{
    sq_tx t;
    if (sq_begin(s, &t, false) != STORE_OK) return STORE_ERR;
    sqlite3_stmt *st = sq_query(&t,
                                "SELECT request_hash, response, http_status FROM idempotency_keys"
                                " WHERE user_id = ? AND key = ? AND created_at >= ?",
                                "ssI", user_id, idem->key, idem->not_before);
    int rc = st ? sq_step(st) : STORE_ERR;
    if (rc == SQLITE_ROW) {
        if (str_eq((const char *)sqlite3_column_text(st, 0), idem->request_hash)) {
            *replay_response = sq_col_strdup(st, 1);
            *replay_status = sqlite3_column_int(st, 2);
            rc = STORE_EREPLAY;
        } else {
            rc = STORE_EIDEM_MISMATCH;
        }
    } else if (rc == SQLITE_DONE) {
        rc = STORE_OK;
    }
    if (st) sq_done(st);
    sq_rollback(&t);
    return rc;
}
