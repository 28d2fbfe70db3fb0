/*
 * store_sqlite_rate — the rate-limit buckets on SQLite (store.h "rate
 * limits"): one write transaction (BEGIN IMMEDIATE under the writer
 * mutex) reads the row, lets the caller's function change it, and writes
 * it back, so concurrent takes — from this process or another one on the
 * same file — run one after another.
 */
#include <string.h>

#include "store_sqlite.h"

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
