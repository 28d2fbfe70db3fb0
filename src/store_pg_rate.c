/*
 * store_pg_rate — the rate-limit buckets on PostgreSQL (store.h "rate
 * limits"): one transaction makes sure the row exists, locks it (SELECT
 * ... FOR UPDATE), lets the caller's function change it and writes it
 * back, so concurrent takes from any number of processes run one after
 * another on that row and none is lost. Also the read-only idempotency
 * check a request refused by its limit makes (it may be a replay).
 */
#include <string.h>

#include "store_pg.h"
#include "util.h"

int store_pg_bucket_update(store_t *s, const char *key, store_bucket_fn fn, void *ctx)
{
    pg_tx t;
    int rc = pg_begin(s, &t);
    if (rc != STORE_OK) return rc;
    /* updated_at 0 marks a row nobody has written yet (a full bucket). */
    rc = pg_exec(&t,
                 "INSERT INTO rate_limits (bucket, tokens, updated_at) VALUES ($1, 0, 0)"
                 " ON CONFLICT (bucket) DO NOTHING",
                 "s", key);
    if (rc < 0) goto fail;
    PGresult *r = NULL;
    rc = pg_query(&t, &r, "SELECT tokens, updated_at FROM rate_limits WHERE bucket = $1 FOR UPDATE",
                  "s", key);
    if (rc != STORE_OK) goto fail;
    store_bucket b = {0};
    if (PQntuples(r) == 1) {
        b.tokens = pg_col_double(r, 0, 0);
        b.updated_at = pg_col_int(r, 0, 1);
    }
    PQclear(r);
    if (fn(&b, ctx)) {
        rc = pg_exec(&t, "UPDATE rate_limits SET tokens = $2, updated_at = $3 WHERE bucket = $1",
                     "sdI", key, b.tokens, b.updated_at);
        if (rc < 0) goto fail;
    }
    return pg_commit(&t);
fail:
    pg_rollback(&t);
    return rc;
}

int store_pg_buckets_prune(store_t *s, const char *prefix, int64_t before, int limit,
                           int64_t *deleted)
{
    int rc = pg_exec1(s,
                      "DELETE FROM rate_limits WHERE bucket IN (SELECT bucket FROM rate_limits"
                      " WHERE starts_with(bucket, $1) AND updated_at < $2 LIMIT $3)",
                      "sIi", prefix, before, limit);
    if (rc < 0) return rc;
    *deleted = rc;
    return STORE_OK;
}

int store_pg_idem_peek(store_t *s, const char *user_id, const store_idem *idem,
                       char **replay_response, int *replay_status)
{
    PGresult *r = NULL;
    int rc = pg_query1(s, &r,
                       "SELECT request_hash, response, http_status FROM idempotency_keys"
                       " WHERE user_id = $1 AND key = $2 AND created_at >= $3",
                       "ssI", user_id, idem->key, idem->not_before);
    if (rc != STORE_OK) return rc;
    if (PQntuples(r) == 1 && str_eq(PQgetvalue(r, 0, 0), idem->request_hash)) {
        *replay_response = pg_col_strdup(r, 0, 1);
        *replay_status = (int)pg_col_int(r, 0, 2);
        rc = STORE_EREPLAY;
    } else if (PQntuples(r) == 1) {
        rc = STORE_EIDEM_MISMATCH;
    }
    PQclear(r);
    return rc;
}
