/*
 * store_pg_gen — generations on PostgreSQL (store.h): create with the
 * conditional debit, start, end (cancel, fail, expiry) with the refund,
 * lists and counts; the worker side (claim with FOR UPDATE SKIP LOCKED,
 * progress, complete, requeue, release); the sweep queries.
 *
 * Each state change is one READ COMMITTED transaction: the generation row,
 * the ledger row (charge or refund) and the events — a "generation" event
 * with the record re-read after the change, and a "balance" event when the
 * balance moved (pg_commit writes them last). The guards (statuses a change
 * may start from, the lease holder, the retry count) are in the WHERE
 * clause of the UPDATE that makes the change; when it changes no row, a
 * second look tells STORE_ENOTFOUND from STORE_ECONFLICT.
 *
 * The queue is the generations table itself: status processing, stage
 * queued, no lease. Claim order is priority DESC, queued_at, id (queued_at
 * is the first time it was queued, so a retry keeps its place).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "store_pg.h"
#include "util.h"

#define GEN_COLS                                                                                   \
    "id, user_id, status, product_images, model_images, result_images, prompt, custom_prompt,"     \
    " model, style, quality, aspect_ratio, guidance_scale, num_inference_steps, strength, seed,"   \
    " priority, tokens_used, retry_count, progress, stage, created_at, started_at, completed_at,"  \
    " processing_time, error, batch_id, retry_of, queued_at, lease_owner, error_code,"             \
    " background, output_format"

#define SWEEP_BATCH 200

/* A queued generation: processing, stage queued, not leased. */
#define QUEUED_WHERE "status = 'processing' AND stage = 'queued' AND lease_owner IS NULL"

static json_t *json_array_col(const PGresult *r, int row, int col)
{
    return store_base_json_array(pg_col_null(r, row, col) ? NULL : PQgetvalue(r, row, col));
}

/* A GEN_MASK set as a PostgreSQL text[] literal, e.g. "{pending,processing}". */
static void status_array(unsigned mask, char *buf, size_t size)
{
    size_t len = 0;
    buf[len++] = '{';
    for (int i = 0; i < GEN_STATUS_COUNT; i++) {
        if (!(mask & GEN_MASK(i))) continue;
        len += (size_t)snprintf(buf + len, size - len, "%s%s", len > 1 ? "," : "",
                                gen_status_name((gen_status)i));
    }
    snprintf(buf + len, size - len, "}");
}

static void gen_from_row(const PGresult *r, int row, gen_record *g, int64_t *queued_at,
                         bool *leased)
{
    memset(g, 0, sizeof *g);
    pg_col_copy(r, row, 0, g->id, sizeof g->id);
    pg_col_copy(r, row, 1, g->user_id, sizeof g->user_id);
    gen_status status = GEN_PENDING;
    if (gen_status_parse(PQgetvalue(r, row, 2), &status) != 0)
        log_error("store: generation %s has unknown status", g->id);
    g->status = status;
    g->product_images = json_array_col(r, row, 3);
    g->model_images = json_array_col(r, row, 4);
    g->result_images = json_array_col(r, row, 5);
    g->prompt = pg_col_strdup(r, row, 6);
    if (!g->prompt) g->prompt = xstrdup("");
    g->custom_prompt = pg_col_strdup(r, row, 7);
    pg_col_copy(r, row, 8, g->params.model, sizeof g->params.model);
    pg_col_copy(r, row, 9, g->params.style, sizeof g->params.style);
    pg_col_copy(r, row, 10, g->params.quality, sizeof g->params.quality);
    pg_col_copy(r, row, 11, g->params.aspect_ratio, sizeof g->params.aspect_ratio);
    g->params.guidance_scale = pg_col_double(r, row, 12);
    g->params.num_inference_steps = (int)pg_col_int(r, row, 13);
    g->params.strength = pg_col_double(r, row, 14);
    g->params.seed = pg_col_int(r, row, 15);
    g->priority = (int)pg_col_int(r, row, 16);
    g->tokens_used = (int)pg_col_int(r, row, 17);
    g->retry_count = (int)pg_col_int(r, row, 18);
    g->progress = (int)pg_col_int(r, row, 19);
    pg_col_copy(r, row, 20, g->stage, sizeof g->stage);
    g->created_at = pg_col_int(r, row, 21);
    g->started_at = pg_col_int(r, row, 22);
    g->completed_at = pg_col_int(r, row, 23);
    g->processing_time = pg_col_int(r, row, 24);
    g->error = pg_col_strdup(r, row, 25);
    pg_col_copy(r, row, 26, g->batch_id, sizeof g->batch_id);
    pg_col_copy(r, row, 27, g->retry_of, sizeof g->retry_of);
    *queued_at = pg_col_int(r, row, 28);
    *leased = !pg_col_null(r, row, 29);
    pg_col_copy(r, row, 30, g->error_code, sizeof g->error_code);
    pg_col_copy(r, row, 31, g->params.background, sizeof g->params.background);
    pg_col_copy(r, row, 32, g->params.output_format, sizeof g->params.output_format);
}

/* Sets g->queue_position (1 + the queued generations ahead of it in claim
 * order) when g is queued. */
static int fill_queue_position(pg_tx *t, gen_record *g, int64_t queued_at, bool leased, int known)
{
    if (g->status != GEN_PROCESSING || !str_eq(g->stage, STAGE_QUEUED) || leased) return STORE_OK;
    if (known > 0) { /* the caller's figure (store_gen_get_at) */
        g->queue_position = known;
        return STORE_OK;
    }
    int64_t ahead = 0;
    int rc = pg_int(t, &ahead,
                    "SELECT COUNT(*) FROM generations WHERE " QUEUED_WHERE
                    " AND (priority > $1 OR (priority = $1 AND (queued_at < $2"
                    " OR (queued_at = $2 AND id < $3))))",
                    "iIs", g->priority, queued_at, g->id);
    if (rc != STORE_OK) return rc;
    g->queue_position = (int)ahead + 1;
    return STORE_OK;
}

/* Loads one record on t's connection (known: as fill_queue_position's).
 * STORE_ENOTFOUND when absent. */
static int gen_load_at(pg_tx *t, const char *gen_id, int known, gen_record *out)
{
    PGresult *r = NULL;
    int rc = pg_query(t, &r, "SELECT " GEN_COLS " FROM generations WHERE id = $1", "s", gen_id);
    if (rc != STORE_OK) return rc;
    int64_t queued_at = 0;
    bool leased = false;
    if (PQntuples(r) != 1) {
        PQclear(r);
        return STORE_ENOTFOUND;
    }
    gen_from_row(r, 0, out, &queued_at, &leased);
    PQclear(r);
    rc = fill_queue_position(t, out, queued_at, leased, known);
    if (rc != STORE_OK) gen_record_free(out);
    return rc;
}

static int gen_load(pg_tx *t, const char *gen_id, gen_record *out)
{
    return gen_load_at(t, gen_id, 0, out);
}

/* Queues a "generation" event carrying the record as it is now (re-read
 * inside t, turned into JSON by the codec). When out is not NULL and all
 * went well, the record is moved there (caller frees); otherwise it is
 * freed. */
static int gen_event(pg_tx *t, const char *gen_id, int64_t now, gen_record *out)
{
    gen_record g;
    int rc = gen_load(t, gen_id, &g);
    if (rc != STORE_OK) return rc;
    pg_gen_event(t, &g, store_base_gen_json(t->s, &g), now);
    if (out)
        *out = g;
    else
        gen_record_free(&g);
    return STORE_OK;
}

/* When a guarded change touched no row: STORE_ENOTFOUND or STORE_ECONFLICT. */
static int gen_missing_or_conflict(pg_tx *t, const char *gen_id)
{
    int64_t one;
    int rc = pg_int(t, &one, "SELECT 1 FROM generations WHERE id = $1", "s", gen_id);
    return rc == STORE_OK ? STORE_ECONFLICT : rc;
}

/* Gives back what the generation holds (tokens_used) with a refund row,
 * once; a balance event follows. Nothing to do when it holds nothing or was
 * already refunded. The caller's UPDATE has locked the row. */
static int gen_refund(pg_tx *t, const char *gen_id, const char *reason, int64_t now)
{
    PGresult *r = NULL;
    int rc =
        pg_query(t, &r, "SELECT user_id, tokens_used FROM generations WHERE id = $1", "s", gen_id);
    if (rc != STORE_OK) return rc;
    char user_id[ID_LEN] = "";
    int64_t tokens = 0;
    if (PQntuples(r) == 1) {
        pg_col_copy(r, 0, 0, user_id, sizeof user_id);
        tokens = pg_col_int(r, 0, 1);
    }
    int rows = PQntuples(r);
    PQclear(r);
    if (rows != 1) return STORE_ENOTFOUND;
    if (tokens <= 0) return STORE_OK;
    int64_t done = 0;
    rc = pg_int(t, &done,
                "SELECT COUNT(*) FROM token_transactions WHERE generation_id = $1"
                " AND kind = 'refund'",
                "s", gen_id);
    if (rc != STORE_OK) return rc;
    if (done) {
        log_warn("store: generation %s already refunded; not refunding again", gen_id);
        return STORE_OK;
    }
    rc = pg_exec(t,
                 "UPDATE users SET token_balance = token_balance + $1,"
                 " total_tokens_used = total_tokens_used - $1 WHERE id = $2",
                 "Is", tokens, user_id);
    if (rc >= 0)
        rc = pg_exec(t, "UPDATE generations SET tokens_used = 0 WHERE id = $1", "s", gen_id);
    if (rc >= 0) rc = pg_ledger_add(t, user_id, "refund", tokens, gen_id, reason, now);
    if (rc < 0) return rc;
    return pg_balance_event(t, user_id, now);
}

/* Which store_guard variant: 0 none, 1 this worker's lease, 2 an expired
 * lease. */
static int guard_kind(const store_guard *g)
{
    if (!g) return 0;
    if (g->worker_id) return 1;
    return g->lease_expired_before > 0 ? 2 : 0;
}

#define GUARD_WORKER(n) " AND lease_owner = $" #n
#define GUARD_EXPIRED(n) " AND lease_owner IS NOT NULL AND lease_expires < $" #n

/* ---- API side ---- */

/* The idempotency check, after the user row is locked (so a concurrent
 * create with the same key has either committed or not started): STORE_OK
 * to go on, or STORE_EREPLAY / STORE_EIDEM_MISMATCH. */
static int idem_check(pg_tx *t, const char *user_id, const store_idem *idem, char **replay_response,
                      int *replay_status)
{
    int64_t one;
    int rc = pg_int(t, &one, "SELECT 1 FROM users WHERE id = $1 FOR UPDATE", "s", user_id);
    if (rc != STORE_OK) return rc;
    PGresult *r = NULL;
    rc = pg_query(t, &r,
                  "SELECT request_hash, response, http_status FROM idempotency_keys"
                  " WHERE user_id = $1 AND key = $2 AND created_at >= $3",
                  "ssI", user_id, idem->key, idem->not_before);
    if (rc != STORE_OK) return rc;
    if (PQntuples(r) == 1) {
        if (str_eq(PQgetvalue(r, 0, 0), idem->request_hash)) {
            if (replay_response) *replay_response = pg_col_strdup(r, 0, 1);
            if (replay_status) *replay_status = (int)pg_col_int(r, 0, 2);
            rc = STORE_EREPLAY;
        } else {
            rc = STORE_EIDEM_MISMATCH;
        }
    }
    PQclear(r);
    return rc;
}

/* The conditional debit: concurrent creates can never overdraw. *balance
 * gets what is left. */
static int gen_debit(pg_tx *t, const char *user_id, int64_t cost, int64_t *balance)
{
    int rc = pg_int(t, balance,
                    "UPDATE users SET token_balance = token_balance - $1,"
                    " total_tokens_used = total_tokens_used + $1"
                    " WHERE id = $2 AND token_balance >= $1 RETURNING token_balance",
                    "Is", cost, user_id);
    if (rc != STORE_ENOTFOUND) return rc;
    int64_t one;
    rc = pg_int(t, &one, "SELECT 1 FROM users WHERE id = $1", "s", user_id);
    return rc == STORE_OK ? STORE_EINSUFFICIENT : rc;
}

static int gen_insert(pg_tx *t, const gen_record *g, bool start, int64_t now)
{
    char *product = store_base_json_array_text(g->product_images);
    char *model = store_base_json_array_text(g->model_images);
    int rc = pg_exec(
        t,
        "INSERT INTO generations (id, user_id, status, product_images, model_images,"
        " result_images, prompt, custom_prompt, model, style, quality, aspect_ratio,"
        " guidance_scale, num_inference_steps, strength, seed, priority, tokens_used,"
        " retry_count, progress, stage, created_at, started_at, batch_id, retry_of, queued_at,"
        " background, output_format)"
        " VALUES ($1, $2, $3, $4, $5, '[]', $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,"
        " $17, 0, 0, $18, $19, $20, $21, $22, $23, $24, $25)",
        "sssssssssssdidIiIsIZssZss", g->id, g->user_id, start ? "processing" : "pending", product,
        model, g->prompt ? g->prompt : "", g->custom_prompt, g->params.model, g->params.style,
        g->params.quality, g->params.aspect_ratio, g->params.guidance_scale,
        g->params.num_inference_steps, g->params.strength, (int64_t)g->params.seed, g->priority,
        (int64_t)g->tokens_used, start ? STAGE_QUEUED : "pending", now, start ? now : (int64_t)0,
        g->batch_id[0] ? g->batch_id : NULL, g->retry_of[0] ? g->retry_of : NULL,
        start ? now : (int64_t)0, g->params.background, g->params.output_format);
    free(product);
    free(model);
    return rc < 0 ? rc : STORE_OK;
}

/* The batch row of the generations gens[0..n) (store_gen_create_many). */
static int batch_insert(pg_tx *t, const gen_record *gens, size_t n, int64_t now)
{
    char *text = store_base_gen_ids_json(gens, n);
    int rc = pg_exec(t,
                     "INSERT INTO batches (id, user_id, created_at, total, generation_ids)"
                     " VALUES ($1, $2, $3, $4, $5)",
                     "ssIis", gens[0].batch_id, gens[0].user_id, now, (int)n, text);
    free(text);
    return rc < 0 ? rc : STORE_OK;
}

/* The create's events are encoded before its transaction where they can
 * be (a pending record is known in full; a started one's queue position
 * is not), and its balance event takes the balance the debit returned. */
int store_pg_gen_create(store_t *s, const gen_record *gens, size_t n, bool start,
                        const store_idem *idem, char **replay_response, int *replay_status)
{
    const char *user_id = gens[0].user_id;
    int64_t now = gens[0].created_at ? gens[0].created_at : now_ms();
    char **data = xcalloc(n, sizeof *data);
    for (size_t i = 0; i < n; i++)
        if (!start)
            data[i] = store_base_pending_gen_json(s, &gens[i], now);
        else
            store_base_gen_prepare(s, &gens[i]);
    pg_tx t;
    int rc = pg_begin(s, &t);
    if (rc != STORE_OK) goto out;
    if (idem) rc = idem_check(&t, user_id, idem, replay_response, replay_status);
    /* Item by item, so each charge row's balance_after is the running
     * balance; one short item rolls the whole transaction back. */
    int64_t balance = 0;
    for (size_t i = 0; i < n && rc == STORE_OK; i++) {
        rc = gen_debit(&t, user_id, gens[i].tokens_used, &balance);
        if (rc == STORE_OK) rc = gen_insert(&t, &gens[i], start, now);
        if (rc == STORE_OK)
            rc = pg_ledger_add(&t, user_id, "charge", -(int64_t)gens[i].tokens_used, gens[i].id,
                               NULL, now);
    }
    if (rc == STORE_OK && gens[0].batch_id[0]) rc = batch_insert(&t, gens, n, now);
    if (rc == STORE_OK && idem) {
        rc = pg_exec(&t,
                     "INSERT INTO idempotency_keys (user_id, key, request_hash, response,"
                     " http_status, created_at) VALUES ($1, $2, $3, $4, $5, $6)"
                     " ON CONFLICT (user_id, key) DO UPDATE SET"
                     " request_hash = excluded.request_hash, response = excluded.response,"
                     " http_status = excluded.http_status, created_at = excluded.created_at",
                     "ssssiI", user_id, idem->key, idem->request_hash,
                     idem->response ? idem->response : "{}", idem->http_status, now);
        rc = rc < 0 ? rc : STORE_OK;
    }
    for (size_t i = 0; i < n && rc == STORE_OK; i++) {
        if (data[i]) {
            pg_gen_event(&t, &gens[i], data[i], now); /* takes data[i] */
            data[i] = NULL;
        } else {
            rc = gen_event(&t, gens[i].id, now, NULL);
        }
    }
    if (rc == STORE_OK)
        pg_event(&t, user_id, NULL, "balance", store_base_balance_json(s, balance), now);
    if (rc != STORE_OK) {
        pg_rollback(&t);
        goto out;
    }
    rc = pg_commit(&t);
out:
    for (size_t i = 0; i < n; i++)
        free(data[i]);
    free(data);
    return rc;
}

int store_pg_batch_get(store_t *s, const char *batch_id, store_batch *out)
{
    pg_tx t;
    int rc = pg_borrow(s, &t);
    if (rc != STORE_OK) return rc;
    PGresult *r = NULL;
    rc = pg_query(&t, &r,
                  "SELECT id, user_id, created_at, total, generation_ids FROM batches"
                  " WHERE id = $1",
                  "s", batch_id);
    if (rc == STORE_OK && PQntuples(r) != 1) rc = STORE_ENOTFOUND;
    if (rc == STORE_OK) {
        pg_col_copy(r, 0, 0, out->id, sizeof out->id);
        pg_col_copy(r, 0, 1, out->user_id, sizeof out->user_id);
        out->created_at = pg_col_int(r, 0, 2);
        out->total = (int)pg_col_int(r, 0, 3);
        out->generation_ids = json_array_col(r, 0, 4);
    }
    PQclear(r);
    r = NULL;
    if (rc == STORE_OK)
        rc = pg_query(&t, &r,
                      "SELECT status, COUNT(*), COALESCE(SUM(tokens_used), 0) FROM generations"
                      " WHERE batch_id = $1 GROUP BY status",
                      "s", batch_id);
    for (int i = 0; rc == STORE_OK && i < PQntuples(r); i++) {
        gen_status status;
        if (gen_status_parse(PQgetvalue(r, i, 0), &status) == 0)
            out->counts[status] = pg_col_int(r, i, 1);
        out->tokens_used += pg_col_int(r, i, 2);
    }
    PQclear(r);
    pg_rollback(&t);
    if (rc != STORE_OK) store_batch_free(out);
    return rc;
}

int store_pg_gen_get(store_t *s, const char *gen_id, int position, gen_record *out)
{
    pg_tx t;
    int rc = pg_borrow(s, &t);
    if (rc != STORE_OK) return rc;
    rc = gen_load_at(&t, gen_id, position, out);
    pg_rollback(&t);
    return rc;
}

/* Cursor: the id of the last record of the previous page (ids sort by
 * creation time, COLLATE "C"). "~" sorts after every id, so it stands for
 * "no cursor". */
int store_pg_gen_list(store_t *s, const char *user_id, int status_filter, const char *cursor,
                      int limit, gen_record **out, size_t *n, char **next_cursor)
{
    static const char q_all[] = "SELECT " GEN_COLS " FROM generations"
                                " WHERE user_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3";
    static const char q_status[] = "SELECT " GEN_COLS " FROM generations"
                                   " WHERE user_id = $1 AND status = $2 AND id < $3"
                                   " ORDER BY id DESC LIMIT $4";
    const char *before = cursor && *cursor ? cursor : "~";
    if (limit <= 0) limit = 20;
    if (limit > 1000) limit = 1000; /* callers validate 1..100; bound the allocation anyway */
    pg_tx t;
    PGresult *r = NULL;
    int rc = pg_borrow(s, &t);
    if (rc != STORE_OK) return rc;
    rc = status_filter < 0
             ? pg_query(&t, &r, q_all, "ssi", user_id, before, limit + 1)
             : pg_query(&t, &r, q_status, "sssi", user_id,
                        gen_status_name((gen_status)status_filter), before, limit + 1);
    if (rc != STORE_OK) {
        pg_rollback(&t);
        return rc;
    }
    int rows = PQntuples(r);
    bool more = rows > limit;
    size_t cnt = (size_t)(more ? limit : rows);
    gen_record *arr = xcalloc(cnt ? cnt : 1, sizeof *arr);
    for (size_t i = 0; i < cnt && rc == STORE_OK; i++) {
        int64_t queued_at = 0;
        bool leased = false;
        gen_from_row(r, (int)i, &arr[i], &queued_at, &leased);
        rc = fill_queue_position(&t, &arr[i], queued_at, leased, 0);
    }
    PQclear(r);
    pg_rollback(&t);
    if (rc != STORE_OK) {
        for (size_t i = 0; i < cnt; i++)
            gen_record_free(&arr[i]);
        free(arr);
        return rc;
    }
    *out = arr;
    *n = cnt;
    *next_cursor = more && cnt ? xstrdup(arr[cnt - 1].id) : NULL;
    return STORE_OK;
}

int store_pg_gen_delete(store_t *s, const char *gen_id, unsigned from, json_t **result_images)
{
    char statuses[96];
    status_array(from, statuses, sizeof statuses);
    pg_tx t;
    PGresult *r = NULL;
    int rc = pg_borrow(s, &t);
    if (rc != STORE_OK) return rc;
    rc = pg_query(&t, &r,
                  "DELETE FROM generations WHERE id = $1 AND status = ANY($2::text[])"
                  " RETURNING result_images",
                  "ss", gen_id, statuses);
    if (rc == STORE_OK && PQntuples(r) != 1) rc = gen_missing_or_conflict(&t, gen_id);
    pg_rollback(&t);
    if (rc == STORE_OK && result_images) *result_images = json_array_col(r, 0, 0);
    PQclear(r);
    return rc;
}

int store_pg_gen_counts(store_t *s, int64_t by_status[GEN_STATUS_COUNT], int64_t *queued)
{
    PGresult *r = NULL;
    int rc = pg_query1(s, &r,
                       "SELECT status, COUNT(*),"
                       " COUNT(*) FILTER (WHERE stage = 'queued' AND lease_owner IS NULL)"
                       " FROM generations GROUP BY status",
                       NULL);
    if (rc != STORE_OK) return rc;
    int64_t q = 0;
    for (int i = 0; i < GEN_STATUS_COUNT; i++)
        by_status[i] = 0;
    for (int i = 0; i < PQntuples(r); i++) {
        gen_status gs;
        if (gen_status_parse(PQgetvalue(r, i, 0), &gs) != 0) continue;
        by_status[gs] = pg_col_int(r, i, 1);
        if (gs == GEN_PROCESSING) q = pg_col_int(r, i, 2);
    }
    PQclear(r);
    if (queued) *queued = q;
    return STORE_OK;
}

/* ---- state changes ---- */

int store_pg_gen_start(store_t *s, const char *gen_id, int64_t now)
{
    pg_tx t;
    int rc = pg_begin(s, &t);
    if (rc != STORE_OK) return rc;
    rc = pg_exec(&t,
                 "UPDATE generations SET status = 'processing', stage = 'queued',"
                 " started_at = $1, queued_at = $1 WHERE id = $2 AND status = 'pending'",
                 "Is", now, gen_id);
    if (rc == 0) rc = gen_missing_or_conflict(&t, gen_id);
    if (rc >= 0) rc = gen_event(&t, gen_id, now, NULL);
    if (rc < 0) {
        pg_rollback(&t);
        return rc;
    }
    return pg_commit(&t);
}

#define END_SET                                                                                    \
    "UPDATE generations SET status = $1, stage = $1, error = $2, completed_at = $3,"               \
    " processing_time = CASE WHEN started_at IS NULL THEN NULL ELSE $3 - started_at END,"          \
    " lease_owner = NULL, lease_expires = NULL, retry_at = NULL, error_code = $6"                  \
    " WHERE id = $4 AND status = ANY($5::text[])"

static const char *const SQL_END[3] = {END_SET, END_SET GUARD_WORKER(7), END_SET GUARD_EXPIRED(7)};

/* The guarded UPDATE of store_gen_end: rows changed or a code. */
static int gen_end_update(pg_tx *t, const store_end *e, const char *status)
{
    char from[96];
    status_array(e->from, from, sizeof from);
    const char *code = e->error_code && *e->error_code ? e->error_code : NULL;
    switch (guard_kind(&e->guard)) {
    case 1:
        return pg_exec(t, SQL_END[1], "ssIssss", status, e->error, e->now, e->gen_id, from, code,
                       e->guard.worker_id);
    case 2:
        return pg_exec(t, SQL_END[2], "ssIsssI", status, e->error, e->now, e->gen_id, from, code,
                       e->guard.lease_expired_before);
    default:
        return pg_exec(t, SQL_END[0], "ssIsss", status, e->error, e->now, e->gen_id, from, code);
    }
}

int store_pg_gen_end(store_t *s, const store_end *e)
{
    if (e->to != GEN_FAILED && e->to != GEN_CANCELLED) {
        log_error("store: store_gen_end to %s", gen_status_name(e->to));
        return STORE_ERR;
    }
    const char *status = gen_status_name(e->to);
    char reason[64];
    snprintf(reason, sizeof reason, "generation %s", status);
    pg_tx t;
    int rc = pg_begin(s, &t);
    if (rc != STORE_OK) return rc;
    rc = gen_end_update(&t, e, status);
    if (rc == 0) rc = gen_missing_or_conflict(&t, e->gen_id);
    if (rc >= 0) rc = gen_refund(&t, e->gen_id, reason, e->now);
    if (rc >= 0) rc = gen_event(&t, e->gen_id, e->now, NULL);
    if (rc < 0) {
        pg_rollback(&t);
        return rc;
    }
    return pg_commit(&t);
}

int store_pg_gen_complete(store_t *s, const char *gen_id, const char *worker_id,
                          const json_t *result_images, int64_t now)
{
    char *results = store_base_json_array_text(result_images);
    pg_tx t;
    int rc = pg_begin(s, &t);
    if (rc != STORE_OK) goto cleanup;
    rc =
        pg_exec(&t,
                "UPDATE generations SET status = 'completed', stage = 'completed',"
                " progress = 100, result_images = $1, completed_at = $2,"
                " processing_time = $2 - COALESCE(started_at, $2), error = NULL, error_code = NULL,"
                " lease_owner = NULL, lease_expires = NULL, retry_at = NULL"
                " WHERE id = $3 AND status = 'processing' AND lease_owner = $4",
                "sIss", results, now, gen_id, worker_id);
    if (rc == 0) rc = gen_missing_or_conflict(&t, gen_id);
    if (rc >= 0) rc = gen_event(&t, gen_id, now, NULL);
    if (rc < 0) {
        pg_rollback(&t);
        goto cleanup;
    }
    rc = pg_commit(&t);
cleanup:
    free(results);
    return rc;
}

#define REQUEUE_SET                                                                                \
    "UPDATE generations SET retry_count = retry_count + 1, stage = 'queued', error = $1,"          \
    " retry_at = $2, lease_owner = NULL, lease_expires = NULL"                                     \
    " WHERE id = $3 AND status = 'processing' AND retry_count = $4"

static const char *const SQL_REQUEUE[3] = {REQUEUE_SET, REQUEUE_SET GUARD_WORKER(5),
                                           REQUEUE_SET GUARD_EXPIRED(5)};

int store_pg_gen_requeue(store_t *s, const char *gen_id, const store_guard *guard, int retry_count,
                         const char *error, int64_t not_before, int64_t now)
{
    pg_tx t;
    int rc = pg_begin(s, &t);
    if (rc != STORE_OK) return rc;
    switch (guard_kind(guard)) {
    case 1:
        rc = pg_exec(&t, SQL_REQUEUE[1], "sZsis", error, not_before, gen_id, retry_count,
                     guard->worker_id);
        break;
    case 2:
        rc = pg_exec(&t, SQL_REQUEUE[2], "sZsiI", error, not_before, gen_id, retry_count,
                     guard->lease_expired_before);
        break;
    default:
        rc = pg_exec(&t, SQL_REQUEUE[0], "sZsi", error, not_before, gen_id, retry_count);
    }
    if (rc == 0) rc = gen_missing_or_conflict(&t, gen_id);
    if (rc >= 0) rc = gen_event(&t, gen_id, now, NULL);
    if (rc < 0) {
        pg_rollback(&t);
        return rc;
    }
    return pg_commit(&t);
}

/* ---- worker side ---- */

#define NEXT_QUEUED                                                                                \
    "SELECT id FROM generations WHERE " QUEUED_WHERE " AND (retry_at IS NULL OR retry_at <= $1)"   \
    " ORDER BY priority DESC, queued_at, id LIMIT 1"

/* Reads the id of the next claimable generation into id ("" when none);
 * with lock, row-locks it, skipping rows other claims hold. */
static int next_queued(pg_tx *t, int64_t now, bool lock, char id[ID_LEN])
{
    static const char q_peek[] = NEXT_QUEUED;
    static const char q_lock[] = NEXT_QUEUED " FOR UPDATE SKIP LOCKED";
    id[0] = '\0';
    PGresult *r = NULL;
    int rc = pg_query(t, &r, lock ? q_lock : q_peek, "I", now);
    if (rc != STORE_OK) return rc;
    if (PQntuples(r) == 1) pg_col_copy(r, 0, 0, id, ID_LEN);
    PQclear(r);
    return STORE_OK;
}

/* The fair claim (SPEC §4 "Priority"). The candidate is the first ready
 * queued row, skipping rows other claimers hold (SKIP LOCKED), users this
 * claim has ruled out ($2) and users at the cap in this statement's
 * snapshot (from the leased rows only: generations_user_leased). Under
 * READ COMMITTED two processes could both see a user at cap - 1 and both
 * claim, so the count is retaken under a per-user advisory transaction
 * lock, held until commit: a later claimer for that user waits for nothing
 * (pg_try_advisory_xact_lock; a miss rules the user out for this claim, so
 * claims never wait on each other and cannot deadlock) and its recount,
 * a new statement after the holder committed, sees the holder's claim.
 * Claims for different users never contend. */
#define CLAIM_LOCK_SPACE 0x51c1 /* pg_advisory key1: claims; key2: hashtext(user) */
#define FAIR_TRIES 8

/* The candidate of one try: the first ready row in claim order of a user
 * not capped and not excluded, row-locked (SKIP LOCKED). First the front
 * of the queue (FAIR_WINDOW rows); when all of them are capped users',
 * users instead of rows: a loose index scan over generations_user_queued
 * (each user with queued work in one probe, the head of each one allowed
 * in another), so a user's 10,000 rows ahead of everyone else's cost two
 * probes, not 10,000 heap visits. cand and user are "" when none. */
#define FAIR_WINDOW_S "64" /* rows */
#define FAIR_ALLOWED(col)                                                                          \
    col " <> ALL (string_to_array($2, ',')) AND " col " NOT IN (SELECT user_id FROM generations"   \
        "  WHERE lease_owner IS NOT NULL GROUP BY user_id HAVING COUNT(*) >= $3)"
#define FAIR_READY "(retry_at IS NULL OR retry_at <= $1)"

static int fair_candidate(pg_tx *t, int64_t now, int cap, const char *excluded, char cand[ID_LEN],
                          char user[ID_LEN])
{
    static const char *const sql[] = {
        "SELECT f.id FROM (SELECT id, user_id, retry_at, priority, queued_at FROM generations"
        " WHERE " QUEUED_WHERE " ORDER BY priority DESC, queued_at, id LIMIT " FAIR_WINDOW_S ") f"
        " WHERE " FAIR_ALLOWED("f.user_id") " AND " FAIR_READY
                                            " ORDER BY f.priority DESC, f.queued_at, f.id",
        "WITH RECURSIVE users(uid) AS ("
        "  (SELECT user_id FROM generations WHERE " QUEUED_WHERE " ORDER BY user_id LIMIT 1)"
        "  UNION ALL"
        "  SELECT (SELECT user_id FROM generations WHERE " QUEUED_WHERE " AND user_id > users.uid"
        "   ORDER BY user_id LIMIT 1) FROM users WHERE users.uid IS NOT NULL)"
        " SELECT h.id FROM users CROSS JOIN LATERAL (SELECT id, priority, queued_at FROM "
        "generations"
        "  WHERE " QUEUED_WHERE " AND user_id = users.uid AND " FAIR_READY
        "  ORDER BY priority DESC, queued_at, id LIMIT 1) h"
        " WHERE users.uid IS NOT NULL AND " FAIR_ALLOWED(
            "users.uid") " ORDER BY h.priority DESC, h.queued_at, h.id",
    };
    cand[0] = user[0] = '\0';
    for (size_t k = 0; k < ARRAY_LEN(sql) && !cand[0]; k++) {
        PGresult *r = NULL;
        int rc = pg_query(t, &r, sql[k], "Isi", now, excluded, cap);
        if (rc != STORE_OK) return rc;
        /* The first of them that no other claim holds. */
        for (int i = 0; i < PQntuples(r) && !cand[0]; i++) {
            PGresult *l = NULL;
            rc = pg_query(t, &l,
                          "SELECT id, user_id FROM generations WHERE id = $1 AND " QUEUED_WHERE
                          " FOR UPDATE SKIP LOCKED",
                          "s", PQgetvalue(r, i, 0));
            if (rc == STORE_OK && PQntuples(l) == 1) {
                pg_col_copy(l, 0, 0, cand, ID_LEN);
                pg_col_copy(l, 0, 1, user, ID_LEN);
            }
            PQclear(l);
            if (rc != STORE_OK) break;
        }
        PQclear(r);
        if (rc != STORE_OK) return rc;
    }
    return STORE_OK;
}

static int next_fair(pg_tx *t, int64_t now, int cap, char id[ID_LEN])
{
    char excluded[FAIR_TRIES * ID_LEN + 1] = "";
    id[0] = '\0';
    for (int i = 0; i < FAIR_TRIES; i++) {
        char cand[ID_LEN], user[ID_LEN];
        int rc = fair_candidate(t, now, cap, excluded, cand, user);
        if (rc != STORE_OK || !cand[0]) return rc;
        int64_t got = 0, running = 0;
        rc = pg_int(t, &got, "SELECT pg_try_advisory_xact_lock($1, hashtext($2))::int", "is",
                    CLAIM_LOCK_SPACE, user);
        if (rc == STORE_OK && got)
            rc = pg_int(t, &running,
                        "SELECT COUNT(*) FROM generations WHERE user_id = $1"
                        " AND lease_owner IS NOT NULL",
                        "s", user);
        if (rc != STORE_OK) return rc;
        if (got && running < cap) {
            memcpy(id, cand, ID_LEN);
            return STORE_OK;
        }
        if (excluded[0]) strcat(excluded, ",");
        strcat(excluded, user);
    }
    return STORE_OK;
}

int store_pg_gen_claim(store_t *s, const char *worker_id, int64_t now, int64_t lease_ms,
                       gen_record *out)
{
    return store_pg_gen_claim_fair(s, worker_id, now, lease_ms, 0, out);
}

int store_pg_gen_claim_fair(store_t *s, const char *worker_id, int64_t now, int64_t lease_ms,
                            int cap, gen_record *out)
{
    char id[ID_LEN];
    pg_tx t;
    /* A cheap autocommit read first: idle workers poll without a transaction. */
    int rc = pg_borrow(s, &t);
    if (rc != STORE_OK) return rc;
    rc = next_queued(&t, now, false, id);
    pg_rollback(&t);
    if (rc != STORE_OK) return rc;
    if (!id[0]) return STORE_ENOTFOUND;

    rc = pg_begin(s, &t);
    if (rc != STORE_OK) return rc;
    id[0] = '\0';
    if (cap > 0) rc = next_fair(&t, now, cap, id);
    /* Nobody under the cap has ready work: anyone's, every free slot. */
    if (rc == STORE_OK && !id[0]) rc = next_queued(&t, now, true, id);
    if (rc == STORE_OK && !id[0]) rc = STORE_ENOTFOUND;
    if (rc == STORE_OK)
        rc = pg_exec(&t,
                     "UPDATE generations SET stage = 'fetching_inputs', lease_owner = $1,"
                     " lease_expires = $2, retry_at = NULL WHERE id = $3 AND " QUEUED_WHERE,
                     "sIs", worker_id, now + lease_ms, id);
    if (rc == 0) rc = STORE_ERR; /* the row is locked by us: cannot happen */
    gen_record g;
    if (rc > 0) rc = gen_event(&t, id, now, &g);
    if (rc != STORE_OK) {
        pg_rollback(&t);
        return rc;
    }
    rc = pg_commit(&t);
    if (rc == STORE_OK)
        *out = g;
    else
        gen_record_free(&g);
    return rc;
}

int store_pg_gen_progress(store_t *s, const char *gen_id, const char *worker_id, const char *stage,
                          int progress, int64_t lease_until, int64_t now)
{
    if (progress < 0) progress = 0;
    if (progress > 100) progress = 100;
    pg_tx t;
    PGresult *r = NULL;
    int rc = pg_begin(s, &t);
    if (rc != STORE_OK) return rc;
    /* Lock the row under the guard and see whether stage or progress will
     * change (an event only then). */
    rc = pg_query(&t, &r,
                  "SELECT stage, progress FROM generations"
                  " WHERE id = $1 AND status = 'processing' AND lease_owner = $2 FOR UPDATE",
                  "ss", gen_id, worker_id);
    bool changed = false;
    if (rc == STORE_OK) {
        if (PQntuples(r) == 1)
            changed =
                (stage && !str_eq(stage, PQgetvalue(r, 0, 0))) || progress > pg_col_int(r, 0, 1);
        else
            rc = gen_missing_or_conflict(&t, gen_id);
        PQclear(r);
    }
    if (rc == STORE_OK)
        rc = pg_exec(&t,
                     "UPDATE generations SET stage = COALESCE($1, stage),"
                     " progress = GREATEST(progress, $2), lease_expires = $3"
                     " WHERE id = $4 AND status = 'processing' AND lease_owner = $5",
                     "siIss", stage, progress, lease_until, gen_id, worker_id);
    if (rc == 0) rc = STORE_ECONFLICT; /* locked above: cannot happen */
    if (rc > 0) rc = changed ? gen_event(&t, gen_id, now, NULL) : STORE_OK;
    if (rc != STORE_OK) {
        pg_rollback(&t);
        return rc;
    }
    return pg_commit(&t);
}

int store_pg_gen_renew(store_t *s, const char *gen_id, const char *worker_id, int64_t lease_until)
{
    pg_tx t;
    int rc = pg_borrow(s, &t);
    if (rc != STORE_OK) return rc;
    rc = pg_exec(&t,
                 "UPDATE generations SET lease_expires = $1"
                 " WHERE id = $2 AND status = 'processing' AND lease_owner = $3",
                 "Iss", lease_until, gen_id, worker_id);
    if (rc == 0) rc = gen_missing_or_conflict(&t, gen_id);
    pg_rollback(&t);
    return rc < 0 ? rc : STORE_OK;
}

/* Reads up to limit ids (and retry counts) from a sweep query taking one
 * value and the limit. *out new array (caller frees). */
static int collect_refs(store_t *s, const char *sql, const char *sarg, int64_t iarg, int limit,
                        store_gen_ref **out, size_t *n)
{
    if (limit <= 0) limit = SWEEP_BATCH;
    PGresult *r = NULL;
    int rc =
        sarg ? pg_query1(s, &r, sql, "si", sarg, limit) : pg_query1(s, &r, sql, "Ii", iarg, limit);
    if (rc != STORE_OK) return rc;
    int rows = PQntuples(r);
    store_gen_ref *refs = xcalloc(rows ? (size_t)rows : 1, sizeof *refs);
    for (int i = 0; i < rows; i++) {
        pg_col_copy(r, i, 0, refs[i].id, sizeof refs[i].id);
        refs[i].retry_count = (int)pg_col_int(r, i, 1);
    }
    PQclear(r);
    *out = refs;
    *n = (size_t)rows;
    return STORE_OK;
}

int store_pg_gen_release(store_t *s, const char *worker_id, int64_t now)
{
    store_gen_ref *refs = NULL;
    size_t n = 0;
    int rc = collect_refs(s,
                          "SELECT id, retry_count FROM generations WHERE lease_owner = $1"
                          " AND status = 'processing' LIMIT $2",
                          worker_id, 0, SWEEP_BATCH, &refs, &n);
    for (size_t i = 0; i < n && rc == STORE_OK; i++) {
        pg_tx t;
        rc = pg_begin(s, &t);
        if (rc != STORE_OK) break;
        rc = pg_exec(&t,
                     "UPDATE generations SET stage = 'queued', lease_owner = NULL,"
                     " lease_expires = NULL, retry_at = NULL"
                     " WHERE id = $1 AND status = 'processing' AND lease_owner = $2",
                     "ss", refs[i].id, worker_id);
        if (rc > 0) rc = gen_event(&t, refs[i].id, now, NULL);
        if (rc < 0) {
            pg_rollback(&t);
            break;
        }
        rc = pg_commit(&t);
    }
    free(refs);
    return rc < 0 ? rc : STORE_OK;
}

int store_pg_gen_expired_leases(store_t *s, int64_t before, int limit, store_gen_ref **out,
                                size_t *n)
{
    return collect_refs(s,
                        "SELECT id, retry_count FROM generations WHERE lease_owner IS NOT NULL"
                        " AND lease_expires < $1 AND status = 'processing'"
                        " ORDER BY lease_expires, id LIMIT $2",
                        NULL, before, limit, out, n);
}

int store_pg_gen_pending_before(store_t *s, int64_t before, int limit, store_gen_ref **out,
                                size_t *n)
{
    return collect_refs(s,
                        "SELECT id, retry_count FROM generations WHERE status = 'pending'"
                        " AND created_at < $1 ORDER BY created_at, id LIMIT $2",
                        NULL, before, limit, out, n);
}

int store_pg_gen_next_retry_at(store_t *s, int64_t *at)
{
    return pg_int1(s, at,
                   "SELECT COALESCE(MIN(retry_at), 0) FROM generations WHERE " QUEUED_WHERE
                   " AND retry_at IS NOT NULL",
                   NULL);
}

/* ---- the queue's figures (GET /api/queue) ---- */

int store_pg_queue_stats(store_t *s, int64_t alive_after, store_queue_figures *out)
{
    PGresult *r = NULL;
    int rc = pg_query1(s, &r,
                       "SELECT (SELECT COUNT(*) FROM generations WHERE " QUEUED_WHERE "),"
                       " (SELECT COUNT(*) FROM generations WHERE lease_owner IS NOT NULL),"
                       " (SELECT COALESCE(SUM(slots), 0) FROM queue_workers WHERE seen_at >= $1)",
                       "I", alive_after);
    if (rc != STORE_OK) return rc;
    out->depth = pg_col_int(r, 0, 0);
    out->running = pg_col_int(r, 0, 1);
    out->workers = pg_col_int(r, 0, 2);
    PQclear(r);
    return STORE_OK;
}

int store_pg_queue_heartbeat(store_t *s, const char *process_id, int slots, int64_t now)
{
    int rc = slots > 0
                 ? pg_exec1(s,
                            "INSERT INTO queue_workers (process_id, slots, seen_at)"
                            " VALUES ($1, $2, $3) ON CONFLICT (process_id)"
                            " DO UPDATE SET slots = $2, seen_at = $3",
                            "siI", process_id, slots, now)
                 : pg_exec1(s, "DELETE FROM queue_workers WHERE process_id = $1", "s", process_id);
    /* Processes gone for an hour (crashed without removing their row). */
    if (rc >= 0)
        rc = pg_exec1(s, "DELETE FROM queue_workers WHERE seen_at < $1", "I", now - 3600000);
    return rc < 0 ? rc : STORE_OK;
}

int store_pg_queue_items(store_t *s, const char *user_id, int limit, store_queue_item **out,
                         size_t *n)
{
    /* One statement: the user's first `limit` queued rows in claim order.
     * The rows ahead of the first are counted once (MATERIALIZED: when
     * inlined, the planner ran the count once per output row), and the
     * queue from the first to the last is numbered once. A count for each
     * row walked the rows ahead of every one: the front user's first 100
     * of 10,000 queued took 121 ms, now about 5 ms; one row at the back
     * went from 2.4 to 5.5 ms (test_store's queue figures). */
    static const char sql[] =
        "WITH mine AS (SELECT id, model, priority, queued_at FROM generations"
        "  WHERE user_id = $1 AND " QUEUED_WHERE
        "  ORDER BY priority DESC, queued_at, id LIMIT $2),"
        " first AS (SELECT * FROM mine ORDER BY priority DESC, queued_at, id LIMIT 1),"
        " last AS (SELECT * FROM mine ORDER BY priority, queued_at DESC, id DESC LIMIT 1),"
        " before AS MATERIALIZED (SELECT (SELECT COUNT(*) FROM generations a"
        "  WHERE a.status = 'processing' AND a.stage = 'queued' AND a.lease_owner IS NULL"
        "  AND (a.priority > f.priority OR (a.priority = f.priority"
        "  AND (a.queued_at, a.id) < (f.queued_at, f.id)))) AS n FROM first f),"
        " span AS (SELECT a.id,"
        "  ROW_NUMBER() OVER (ORDER BY a.priority DESC, a.queued_at, a.id) AS pos"
        "  FROM generations a, first f, last l"
        "  WHERE a.status = 'processing' AND a.stage = 'queued' AND a.lease_owner IS NULL"
        "  AND (a.priority < f.priority OR (a.priority = f.priority"
        "  AND (a.queued_at, a.id) >= (f.queued_at, f.id)))"
        "  AND (a.priority > l.priority OR (a.priority = l.priority"
        "  AND (a.queued_at, a.id) <= (l.queued_at, l.id))))"
        " SELECT m.id, m.model, before.n + span.pos"
        " FROM mine m JOIN span ON span.id = m.id, before ORDER BY span.pos";
    PGresult *r = NULL;
    int rc = pg_query1(s, &r, sql, "si", user_id, limit);
    if (rc != STORE_OK) return rc;
    size_t cnt = (size_t)PQntuples(r);
    store_queue_item *arr = xcalloc(cnt ? cnt : 1, sizeof *arr);
    for (size_t i = 0; i < cnt; i++) {
        pg_col_copy(r, (int)i, 0, arr[i].id, sizeof arr[i].id);
        pg_col_copy(r, (int)i, 1, arr[i].model, sizeof arr[i].model);
        arr[i].position = (int)pg_col_int(r, (int)i, 2);
    }
    PQclear(r);
    *out = arr;
    *n = cnt;
    return STORE_OK;
}
