/*
 * store_sqlite_gen — generations on SQLite (store.h): create with the
 * conditional debit, start, cancel, lists; the worker side (claim under a
 * lease, progress, complete, retry or fail); the sweep.
 *
 * Each state change is one write transaction: the generation row, the
 * ledger row (charge or refund) and the events — a "generation" event with
 * the record re-read after the change, and a "balance" event when the
 * balance moved. Worker calls check the lease in the same UPDATE that
 * changes the row (WHERE status = 'processing' AND lease_owner = ?), so a
 * lost lease or a cancel shows up as STORE_ECONFLICT.
 *
 * The create, the start and the worker's changes (claim, progress, renew,
 * complete, requeue) are plain transactions (sq_begin_plain, no savepoint):
 * each finds out whether it may go on (the debit, a guarded UPDATE that
 * matched no row, a read) before it changes anything, and what follows
 * (the event, the ledger row) fails only with the disk. The rarer ends
 * with a refund keep their savepoint.
 *
 * The queue is the generations table itself: status processing, stage
 * queued, no lease. Claim order is priority DESC, queued_at, id (queued_at
 * is the first time it was queued, so a retry keeps its place).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "store_sqlite.h"
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
/* The queued rows through their partial index, in claim order. Without
 * statistics the planner preferred an index on status alone (dropped in
 * 013) and sorted every processing row (a temp B-tree per claim); INDEXED
 * BY keeps the claim an index walk and the counts a range of the queued
 * rows only, whatever indexes come and go. */
#define QUEUED_FROM "generations INDEXED BY generations_claim_fair"
/* How many are queued, from the per-priority counts (011). */
#define QUEUE_DEPTH_SUM "SELECT COALESCE(SUM(queued), 0) FROM queue_depth"

static json_t *json_array_col(sqlite3_stmt *st, int col)
{
    return store_base_json_array((const char *)sqlite3_column_text(st, col));
}

static void gen_from_row(sqlite3_stmt *st, gen_record *g, int64_t *queued_at, bool *leased)
{
    memset(g, 0, sizeof *g);
    sq_col_copy(st, 0, g->id, sizeof g->id);
    sq_col_copy(st, 1, g->user_id, sizeof g->user_id);
    gen_status status = GEN_PENDING;
    if (gen_status_parse((const char *)sqlite3_column_text(st, 2), &status) != 0)
        log_error("store: generation %s has unknown status", g->id);
    g->status = status;
    g->product_images = json_array_col(st, 3);
    g->model_images = json_array_col(st, 4);
    g->result_images = json_array_col(st, 5);
    g->prompt = sq_col_strdup(st, 6);
    if (!g->prompt) g->prompt = xstrdup("");
    g->custom_prompt = sq_col_strdup(st, 7);
    sq_col_copy(st, 8, g->params.model, sizeof g->params.model);
    sq_col_copy(st, 9, g->params.style, sizeof g->params.style);
    sq_col_copy(st, 10, g->params.quality, sizeof g->params.quality);
    sq_col_copy(st, 11, g->params.aspect_ratio, sizeof g->params.aspect_ratio);
    g->params.guidance_scale = sqlite3_column_double(st, 12);
    g->params.num_inference_steps = sqlite3_column_int(st, 13);
    g->params.strength = sqlite3_column_double(st, 14);
    g->params.seed = sq_col_int(st, 15);
    g->priority = sqlite3_column_int(st, 16);
    g->tokens_used = sqlite3_column_int(st, 17);
    g->retry_count = sqlite3_column_int(st, 18);
    g->progress = sqlite3_column_int(st, 19);
    sq_col_copy(st, 20, g->stage, sizeof g->stage);
    g->created_at = sq_col_int(st, 21);
    g->started_at = sq_col_int(st, 22);
    g->completed_at = sq_col_int(st, 23);
    g->processing_time = sq_col_int(st, 24);
    g->error = sq_col_strdup(st, 25);
    sq_col_copy(st, 26, g->batch_id, sizeof g->batch_id);
    sq_col_copy(st, 27, g->retry_of, sizeof g->retry_of);
    *queued_at = sq_col_int(st, 28);
    *leased = sqlite3_column_type(st, 29) != SQLITE_NULL;
    sq_col_copy(st, 30, g->error_code, sizeof g->error_code);
    sq_col_copy(st, 31, g->params.background, sizeof g->params.background);
    sq_col_copy(st, 32, g->params.output_format, sizeof g->params.output_format);
}

/* 1 + the queued generations ahead of g (queued) in claim order: those of
 * a higher priority plus those of its own before it. The counts per
 * priority are in queue_depth (kept by triggers); of its own priority,
 * the rows behind g are counted when there are few (a generation just
 * queued at the back, the usual case), else the rows ahead of it — a
 * range of generations_claim_fair either way (row values, so SQLite seeks to
 * g instead of scanning the priority). */
#define BEHIND_WINDOW 256
static int queue_position(sq_tx *t, const gen_record *g, int64_t queued_at, int *pos)
{
    int64_t queued = 0, behind = 0, higher = 0, ahead = 0;
    int rc = sq_int(t, &queued, QUEUE_DEPTH_SUM " WHERE priority >= ?", "i", g->priority);
    if (rc == STORE_OK)
        rc = sq_int(t, &behind,
                    "SELECT COUNT(*) FROM (SELECT 1 FROM " QUEUED_FROM " WHERE " QUEUED_WHERE
                    " AND priority = ?1 AND (queued_at, id) > (?2, ?3) LIMIT ?4)",
                    "iIsi", g->priority, queued_at, g->id, BEHIND_WINDOW + 1);
    if (rc != STORE_OK) return rc;
    if (behind <= BEHIND_WINDOW && queued - 1 - behind >= 0) {
        *pos = (int)(queued - behind);
        return STORE_OK;
    }
    rc = sq_int(t, &higher, QUEUE_DEPTH_SUM " WHERE priority > ?", "i", g->priority);
    if (rc == STORE_OK)
        rc = sq_int(t, &ahead,
                    "SELECT COUNT(*) FROM " QUEUED_FROM " WHERE " QUEUED_WHERE
                    " AND priority = ?1 AND (queued_at, id) < (?2, ?3)",
                    "iIs", g->priority, queued_at, g->id);
    if (rc != STORE_OK) return rc;
    *pos = (int)(higher + ahead) + 1;
    return STORE_OK;
}

/* known: the position when the caller has it (store_gen_get_at), else 0. */
static int fill_queue_position(sq_tx *t, gen_record *g, int64_t queued_at, bool leased, int known)
{
    if (g->status != GEN_PROCESSING || !str_eq(g->stage, STAGE_QUEUED) || leased) return STORE_OK;
    if (known > 0) {
        g->queue_position = known;
        return STORE_OK;
    }
    return queue_position(t, g, queued_at, &g->queue_position);
}

/* Loads one record inside t (known: as fill_queue_position's).
 * STORE_ENOTFOUND when absent. */
static int gen_load_at(sq_tx *t, const char *gen_id, int known, gen_record *out)
{
    sqlite3_stmt *st =
        sq_query(t, "SELECT " GEN_COLS " FROM generations WHERE id = ?", "s", gen_id);
    if (!st) return STORE_ERR;
    int rc = sq_step(st);
    int64_t queued_at = 0;
    bool leased = false;
    if (rc == SQLITE_ROW) gen_from_row(st, out, &queued_at, &leased);
    sq_done(st);
    if (rc == SQLITE_DONE) return STORE_ENOTFOUND;
    if (rc != SQLITE_ROW) return rc;
    rc = fill_queue_position(t, out, queued_at, leased, known);
    if (rc != STORE_OK) gen_record_free(out);
    return rc;
}

static int gen_load(sq_tx *t, const char *gen_id, gen_record *out)
{
    return gen_load_at(t, gen_id, 0, out);
}

/* A "generation" event carrying the record as it is now (re-read inside
 * t). When out is not NULL and all went well, the record is moved there
 * (caller frees); otherwise it is freed. */
static int gen_event(sq_tx *t, const char *gen_id, int64_t now, gen_record *out)
{
    gen_record g;
    int rc = gen_load(t, gen_id, &g);
    if (rc != STORE_OK) return rc;
    char *data = store_base_gen_json(t->s, &g);
    rc = sq_gen_event(t, &g, data, now);
    free(data);
    if (rc == STORE_OK && out)
        *out = g;
    else
        gen_record_free(&g);
    return rc;
}

/* When the row changed nothing, tells STORE_ENOTFOUND from STORE_ECONFLICT. */
static int gen_missing_or_conflict(sq_tx *t, const char *gen_id)
{
    int64_t one;
    int rc = sq_int(t, &one, "SELECT 1 FROM generations WHERE id = ?", "s", gen_id);
    return rc == STORE_OK ? STORE_ECONFLICT : rc;
}

/* Gives back what the generation holds (tokens_used) with a refund row,
 * once; a balance event follows. Nothing to do when it holds nothing or was
 * already refunded. */
static int gen_refund(sq_tx *t, const char *gen_id, const char *reason, int64_t now)
{
    sqlite3_stmt *st =
        sq_query(t, "SELECT user_id, tokens_used FROM generations WHERE id = ?", "s", gen_id);
    if (!st) return STORE_ERR;
    char user_id[ID_LEN] = "";
    int64_t tokens = 0;
    int rc = sq_step(st);
    if (rc == SQLITE_ROW) {
        sq_col_copy(st, 0, user_id, sizeof user_id);
        tokens = sq_col_int(st, 1);
    }
    sq_done(st);
    if (rc != SQLITE_ROW) return rc == SQLITE_DONE ? STORE_ENOTFOUND : rc;
    if (tokens <= 0) return STORE_OK;
    int64_t done = 0;
    rc = sq_int(t, &done,
                "SELECT COUNT(*) FROM token_transactions WHERE generation_id = ?"
                " AND kind = 'refund'",
                "s", gen_id);
    if (rc != STORE_OK) return rc;
    if (done) {
        log_warn("store: generation %s already refunded; not refunding again", gen_id);
        return STORE_OK;
    }
    rc = sq_exec(t,
                 "UPDATE users SET token_balance = token_balance + ?1,"
                 " total_tokens_used = total_tokens_used - ?1 WHERE id = ?2",
                 "Is", tokens, user_id);
    if (rc < 0) return rc;
    rc = sq_exec(t, "UPDATE generations SET tokens_used = 0 WHERE id = ?", "s", gen_id);
    if (rc < 0) return rc;
    rc = sq_ledger_add(t, user_id, "refund", tokens, 0, gen_id, reason, now);
    if (rc < 0) return rc;
    return sq_balance_event(t, user_id, now);
}

/* ---- API side ---- */

/* The idempotency check: STORE_OK to go on, or STORE_EREPLAY /
 * STORE_EIDEM_MISMATCH. */
static int idem_check(sq_tx *t, const char *user_id, const store_idem *idem, char **replay_response,
                      int *replay_status)
{
    sqlite3_stmt *st = sq_query(t,
                                "SELECT request_hash, response, http_status FROM idempotency_keys"
                                " WHERE user_id = ? AND key = ? AND created_at >= ?",
                                "ssI", user_id, idem->key, idem->not_before);
    if (!st) return STORE_ERR;
    int rc = sq_step(st);
    if (rc == SQLITE_ROW) {
        if (str_eq((const char *)sqlite3_column_text(st, 0), idem->request_hash)) {
            if (replay_response) *replay_response = sq_col_strdup(st, 1);
            if (replay_status) *replay_status = sqlite3_column_int(st, 2);
            rc = STORE_EREPLAY;
        } else {
            rc = STORE_EIDEM_MISMATCH;
        }
    } else if (rc == SQLITE_DONE) {
        rc = STORE_OK;
    }
    sq_done(st);
    return rc;
}

/* The conditional debit of a create's whole cost (concurrent creates can
 * never overdraw): a short balance fails here, before anything is written,
 * as a plain transaction needs (sq_begin_plain). */
static int gen_debit(sq_tx *t, const char *user_id, int64_t cost)
{
    int rc = sq_exec(t,
                     "UPDATE users SET token_balance = token_balance - ?1,"
                     " total_tokens_used = total_tokens_used + ?1"
                     " WHERE id = ?2 AND token_balance >= ?1",
                     "Is", cost, user_id);
    if (rc < 0) return rc;
    if (rc > 0) return STORE_OK;
    int64_t one;
    rc = sq_int(t, &one, "SELECT 1 FROM users WHERE id = ?", "s", user_id);
    return rc == STORE_OK ? STORE_EINSUFFICIENT : rc;
}

/* One new generation inside t, already paid for (gen_debit): the row, and
 * its charge row, whose balance_after is the running balance (later: the
 * cost of the items after it, debited with it). product and model are its
 * image lists as JSON text. */
static int gen_insert(sq_tx *t, const gen_record *g, const char *product, const char *model,
                      bool start, int64_t later, int64_t now)
{
    int rc = sq_exec(
        t,
        "INSERT INTO generations (id, user_id, status, product_images, model_images,"
        " result_images, prompt, custom_prompt, model, style, quality, aspect_ratio,"
        " guidance_scale, num_inference_steps, strength, seed, priority, tokens_used,"
        " retry_count, progress, stage, created_at, started_at, batch_id, retry_of,"
        " queued_at, background, output_format)"
        " VALUES (?, ?, ?, ?, ?, '[]', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 0, ?, ?,"
        " ?, ?, ?, ?, ?, ?)",
        "sssssssssssdidIiIsIZssZss", g->id, g->user_id, start ? "processing" : "pending", product,
        model, g->prompt ? g->prompt : "", g->custom_prompt, g->params.model, g->params.style,
        g->params.quality, g->params.aspect_ratio, g->params.guidance_scale,
        g->params.num_inference_steps, g->params.strength, (int64_t)g->params.seed, g->priority,
        (int64_t)g->tokens_used, start ? STAGE_QUEUED : "pending", now, start ? now : (int64_t)0,
        g->batch_id[0] ? g->batch_id : NULL, g->retry_of[0] ? g->retry_of : NULL,
        start ? now : (int64_t)0, g->params.background, g->params.output_format);
    if (rc < 0) return rc;
    return sq_ledger_add(t, g->user_id, "charge", -(int64_t)g->tokens_used, later, g->id, NULL,
                         now);
}

/* The batch row of the generations gens[0..n) (store_gen_create_many). */
static int batch_insert(sq_tx *t, const gen_record *gens, size_t n, int64_t now)
{
    char *text = store_base_gen_ids_json(gens, n);
    int rc = sq_exec(t,
                     "INSERT INTO batches (id, user_id, created_at, total, generation_ids)"
                     " VALUES (?, ?, ?, ?, ?)",
                     "ssIis", gens[0].batch_id, gens[0].user_id, now, (int)n, text);
    free(text);
    return rc < 0 ? rc : STORE_OK;
}

/* A create is a plain transaction (sq_begin_plain): the idempotency check
 * and the debit of the whole cost come first and write nothing when they
 * fail; what follows are inserts that cannot fail short of a broken
 * constraint or the disk. Everything that can be encoded is encoded before
 * the write lock is taken. */
int sq_gen_create(store_t *s, const gen_record *gens, size_t n, bool start, const store_idem *idem,
                  char **replay_response, int *replay_status)
{
    const char *user_id = gens[0].user_id;
    int64_t now = gens[0].created_at ? gens[0].created_at : now_ms();
    char **data = start ? NULL : xcalloc(n, sizeof *data);
    char **images = xcalloc(2 * n, sizeof *images); /* product, model per item */
    int64_t cost = 0;
    for (size_t i = 0; i < n; i++) {
        if (data)
            data[i] = store_base_pending_gen_json(s, &gens[i], now);
        else
            store_base_gen_prepare(s, &gens[i]); /* the started event is encoded in the lock */
        images[2 * i] = store_base_json_array_text(gens[i].product_images);
        images[2 * i + 1] = store_base_json_array_text(gens[i].model_images);
        cost += gens[i].tokens_used;
    }
    sq_tx t;
    int rc = sq_begin_plain(s, &t);
    if (rc != STORE_OK) goto out;
    if (idem) {
        rc = idem_check(&t, user_id, idem, replay_response, replay_status);
        if (rc != STORE_OK) goto fail;
    }
    rc = gen_debit(&t, user_id, cost);
    for (size_t i = 0; i < n && rc >= 0; i++) {
        cost -= gens[i].tokens_used; /* now what the items after this one cost */
        rc = gen_insert(&t, &gens[i], images[2 * i], images[2 * i + 1], start, cost, now);
    }
    if (rc >= 0 && gens[0].batch_id[0]) rc = batch_insert(&t, gens, n, now);
    if (rc < 0) goto fail;
    if (idem) {
        rc = sq_exec(
            &t,
            "INSERT INTO idempotency_keys (user_id, key, request_hash, response,"
            " http_status, created_at) VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (user_id, key) DO UPDATE SET request_hash = excluded.request_hash,"
            " response = excluded.response, http_status = excluded.http_status,"
            " created_at = excluded.created_at",
            "ssssiI", user_id, idem->key, idem->request_hash,
            idem->response ? idem->response : "{}", idem->http_status, now);
        if (rc < 0) goto fail;
    }
    for (size_t i = 0; i < n && rc >= 0; i++)
        rc = data ? sq_gen_event(&t, &gens[i], data[i], now) : gen_event(&t, gens[i].id, now, NULL);
    if (rc < 0) goto fail;
    rc = sq_balance_event(&t, user_id, now);
    if (rc < 0) goto fail;
    rc = sq_commit(&t);
    goto out;
fail:
    sq_rollback(&t);
out:
    for (size_t i = 0; i < n; i++) {
        if (data) free(data[i]);
        free(images[2 * i]);
        free(images[2 * i + 1]);
    }
    free(data);
    free(images);
    return rc;
}

int sq_batch_get(store_t *s, const char *batch_id, store_batch *out)
{
    sq_tx t;
    if (sq_begin(s, &t, false) != STORE_OK) return STORE_ERR;
    sqlite3_stmt *st = sq_query(&t,
                                "SELECT id, user_id, created_at, total, generation_ids FROM batches"
                                " WHERE id = ?",
                                "s", batch_id);
    int rc = st ? sq_step(st) : STORE_ERR;
    if (rc == SQLITE_ROW) {
        sq_col_copy(st, 0, out->id, sizeof out->id);
        sq_col_copy(st, 1, out->user_id, sizeof out->user_id);
        out->created_at = sqlite3_column_int64(st, 2);
        out->total = sqlite3_column_int(st, 3);
        out->generation_ids = json_array_col(st, 4);
        rc = STORE_OK;
    } else if (rc == SQLITE_DONE) {
        rc = STORE_ENOTFOUND;
    }
    if (st) sq_done(st);
    if (rc == STORE_OK) {
        st = sq_query(&t,
                      "SELECT status, COUNT(*), SUM(tokens_used) FROM generations"
                      " WHERE batch_id = ? GROUP BY status",
                      "s", batch_id);
        while (st && (rc = sq_step(st)) == SQLITE_ROW) {
            gen_status status;
            if (gen_status_parse((const char *)sqlite3_column_text(st, 0), &status) == 0)
                out->counts[status] = sqlite3_column_int64(st, 1);
            out->tokens_used += sqlite3_column_int64(st, 2);
        }
        rc = st && rc == SQLITE_DONE ? STORE_OK : STORE_ERR;
        if (st) sq_done(st);
    }
    sq_rollback(&t);
    if (rc != STORE_OK) store_batch_free(out);
    return rc;
}

int sq_gen_start(store_t *s, const char *gen_id, int64_t now)
{
    sq_tx t;
    if (sq_begin_plain(s, &t) != STORE_OK) return STORE_ERR;
    int rc = sq_exec(&t,
                     "UPDATE generations SET status = 'processing', stage = 'queued',"
                     " started_at = ?1, queued_at = ?1 WHERE id = ?2 AND status = 'pending'",
                     "Is", now, gen_id);
    if (rc == 0) rc = gen_missing_or_conflict(&t, gen_id);
    if (rc < 0) goto fail;
    rc = gen_event(&t, gen_id, now, NULL);
    if (rc < 0) goto fail;
    return sq_commit(&t);
fail:
    sq_rollback(&t);
    return rc;
}

/* SQL that is true when the row's status is in the GEN_MASK set bound at
 * parameter N (the bit numbers are enum gen_status's). */
#define STATUS_IN(n)                                                                               \
    "((?" #n " >> (CASE status WHEN 'pending' THEN 0 WHEN 'processing' THEN 1"                     \
    " WHEN 'completed' THEN 2 WHEN 'failed' THEN 3 ELSE 4 END)) & 1) = 1"
/* SQL for a store_guard bound at parameters W (worker id or NULL) and X
 * (lease_expired_before or 0). */
#define LEASE_GUARD(w, x)                                                                          \
    "(?" #w " IS NULL OR lease_owner = ?" #w ") AND (?" #x " = 0 OR (lease_owner IS NOT NULL"      \
    " AND lease_expires < ?" #x "))"

/* Ends a generation inside t (store_end): status and stage, error, end
 * time, lease cleared — if its status is in e->from and the guard holds;
 * then the refund and the events. */
static int gen_end(sq_tx *t, const store_end *e)
{
    const char *status = gen_status_name(e->to);
    int rc = sq_exec(
        t,
        "UPDATE generations SET status = ?1, stage = ?1, error = ?2, completed_at = ?3,"
        " processing_time = CASE WHEN started_at IS NULL THEN NULL ELSE ?3 - started_at END,"
        " lease_owner = NULL, lease_expires = NULL, retry_at = NULL, error_code = ?8"
        " WHERE id = ?4 AND " STATUS_IN(5) " AND " LEASE_GUARD(6, 7),
        "ssIsisIs", status, e->error, e->now, e->gen_id, (int)e->from, e->guard.worker_id,
        e->guard.worker_id ? (int64_t)0 : e->guard.lease_expired_before,
        e->error_code && *e->error_code ? e->error_code : NULL);
    if (rc == 0) rc = gen_missing_or_conflict(t, e->gen_id);
    if (rc < 0) return rc;
    char reason[64];
    snprintf(reason, sizeof reason, "generation %s", status);
    rc = gen_refund(t, e->gen_id, reason, e->now);
    if (rc < 0) return rc;
    return gen_event(t, e->gen_id, e->now, NULL);
}

int sq_gen_end(store_t *s, const store_end *e)
{
    if (e->to != GEN_FAILED && e->to != GEN_CANCELLED) return STORE_ERR;
    sq_tx t;
    if (sq_begin(s, &t, true) != STORE_OK) return STORE_ERR;
    int rc = gen_end(&t, e);
    if (rc < 0) {
        sq_rollback(&t);
        return rc;
    }
    return sq_commit(&t);
}

int sq_gen_get(store_t *s, const char *gen_id, int position, gen_record *out)
{
    sq_tx t;
    if (sq_begin(s, &t, false) != STORE_OK) return STORE_ERR;
    int rc = gen_load_at(&t, gen_id, position, out);
    sq_rollback(&t);
    return rc;
}

/* Cursor: the id of the last record of the previous page (ids sort by
 * creation time). "~" sorts after every id, so it stands for "no cursor". */
int sq_gen_list(store_t *s, const char *user_id, int status_filter, const char *cursor, int limit,
                gen_record **out, size_t *n, char **next_cursor)
{
    static const char q_all[] = "SELECT " GEN_COLS " FROM generations"
                                " WHERE user_id = ? AND id < ? ORDER BY id DESC LIMIT ?";
    static const char q_status[] = "SELECT " GEN_COLS " FROM generations"
                                   " WHERE user_id = ? AND status = ? AND id < ?"
                                   " ORDER BY id DESC LIMIT ?";
    const char *before = cursor && *cursor ? cursor : "~";
    if (limit <= 0) limit = 20;
    if (limit > 1000) limit = 1000; /* callers validate 1..100; bound the allocation anyway */
    sq_tx t;
    if (sq_begin(s, &t, false) != STORE_OK) return STORE_ERR;
    sqlite3_stmt *st =
        status_filter < 0 ? sq_query(&t, q_all, "ssi", user_id, before, limit + 1)
                          : sq_query(&t, q_status, "sssi", user_id,
                                     gen_status_name((gen_status)status_filter), before, limit + 1);
    if (!st) {
        sq_rollback(&t);
        return STORE_ERR;
    }
    gen_record *arr = xcalloc((size_t)limit, sizeof *arr);
    int64_t *queued_at = xcalloc((size_t)limit, sizeof *queued_at);
    bool *leased = xcalloc((size_t)limit, sizeof *leased);
    size_t cnt = 0;
    bool more = false;
    int rc;
    while ((rc = sq_step(st)) == SQLITE_ROW) {
        if (cnt == (size_t)limit) {
            more = true;
            continue;
        }
        gen_from_row(st, &arr[cnt], &queued_at[cnt], &leased[cnt]);
        cnt++;
    }
    sq_done(st);
    rc = rc == SQLITE_DONE ? STORE_OK : STORE_ERR;
    for (size_t i = 0; i < cnt && rc == STORE_OK; i++)
        rc = fill_queue_position(&t, &arr[i], queued_at[i], leased[i], 0);
    sq_rollback(&t);
    free(queued_at);
    free(leased);
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

int sq_gen_delete(store_t *s, const char *gen_id, unsigned from, json_t **result_images)
{
    sq_tx t;
    if (sq_begin(s, &t, true) != STORE_OK) return STORE_ERR;
    gen_record g;
    int rc = gen_load(&t, gen_id, &g);
    if (rc != STORE_OK) goto fail;
    if (!(from & GEN_MASK(g.status))) {
        gen_record_free(&g);
        rc = STORE_ECONFLICT;
        goto fail;
    }
    rc = sq_exec(&t, "DELETE FROM generations WHERE id = ?", "s", gen_id);
    if (rc < 0) {
        gen_record_free(&g);
        goto fail;
    }
    rc = sq_commit(&t);
    if (rc == STORE_OK && result_images) *result_images = json_incref(g.result_images);
    gen_record_free(&g);
    return rc;
fail:
    sq_rollback(&t);
    return rc;
}

int sq_gen_counts(store_t *s, int64_t by_status[GEN_STATUS_COUNT], int64_t *queued)
{
    sq_tx t;
    if (sq_begin(s, &t, false) != STORE_OK) return STORE_ERR;
    for (int i = 0; i < GEN_STATUS_COUNT; i++)
        by_status[i] = 0;
    sqlite3_stmt *st =
        sq_query(&t, "SELECT status, COUNT(*) FROM generations GROUP BY status", NULL);
    int rc = st ? SQLITE_ROW : STORE_ERR;
    while (st && (rc = sq_step(st)) == SQLITE_ROW) {
        gen_status gs;
        if (gen_status_parse((const char *)sqlite3_column_text(st, 0), &gs) == 0)
            by_status[gs] = sq_col_int(st, 1);
    }
    sq_done(st);
    rc = rc == SQLITE_DONE ? STORE_OK : STORE_ERR;
    int64_t q = 0;
    if (rc == STORE_OK) rc = sq_int(&t, &q, QUEUE_DEPTH_SUM, NULL);
    sq_rollback(&t);
    if (rc == STORE_OK && queued) *queued = q;
    return rc;
}

/* ---- worker side ---- */

static const char SQL_NEXT_QUEUED[] =
    "SELECT id FROM " QUEUED_FROM " WHERE " QUEUED_WHERE " AND (retry_at IS NULL OR retry_at <= ?)"
    " ORDER BY priority DESC, queued_at, id LIMIT 1";

/* Reads the id of the next claimable generation into id ("" when none). */
static int next_queued(sq_tx *t, int64_t now, char id[ID_LEN])
{
    id[0] = '\0';
    sqlite3_stmt *st = sq_query(t, SQL_NEXT_QUEUED, "I", now);
    if (!st) return STORE_ERR;
    int rc = sq_step(st);
    if (rc == SQLITE_ROW) sq_col_copy(st, 0, id, ID_LEN);
    sq_done(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? STORE_OK : rc;
}

/* The fair claim (SPEC §4 "Priority"): the first ready queued row, in
 * claim order, whose user has fewer than cap leased rows. The capped users
 * come from the leased rows only (generations_user_leased: at most the
 * worker slots of all processes). The write transaction holds the
 * database's one write lock, so the counts cannot change under it.
 *
 * Two steps keep it cheap whatever the queue holds. First the front of the
 * queue: the first FAIR_WINDOW rows in claim order, index only. When all of
 * them belong to capped users (one user's 10,000 rows ahead of everyone
 * else's), the second step visits users instead of rows: a loose index
 * scan over generations_user_queued yields each user with queued work in a
 * probe or two, the head of each one under the cap is one more probe, and
 * the earliest head in claim order wins: O(users × log n), not O(rows).
 * (CROSS JOIN keeps the heads the outer loop: with a plain JOIN SQLite's
 * planner re-evaluates them per row, 5 ms instead of 20 µs at 10,000.) */
#define FAIR_WINDOW 64
#define CAPPED_USERS                                                                               \
    "SELECT user_id FROM generations WHERE lease_owner IS NOT NULL"                                \
    " GROUP BY user_id HAVING COUNT(*) >= ?2"
#define READY " AND (retry_at IS NULL OR retry_at <= ?1)"
static const char SQL_NEXT_FAIR_FRONT[] =
    "SELECT id FROM (SELECT id, user_id, retry_at, priority, queued_at"
    " FROM generations INDEXED BY generations_claim_fair WHERE " QUEUED_WHERE
    " ORDER BY priority DESC, queued_at, id LIMIT ?3)"
    " WHERE user_id NOT IN (" CAPPED_USERS ")" READY
    " ORDER BY priority DESC, queued_at, id LIMIT 1";
static const char SQL_NEXT_FAIR_USERS[] =
    "WITH RECURSIVE users(uid) AS ("
    "  SELECT (SELECT user_id FROM generations INDEXED BY generations_user_queued"
    "   WHERE " QUEUED_WHERE " ORDER BY user_id LIMIT 1)"
    "  UNION ALL"
    "  SELECT (SELECT user_id FROM generations INDEXED BY generations_user_queued"
    "   WHERE " QUEUED_WHERE " AND user_id > users.uid ORDER BY user_id LIMIT 1)"
    "  FROM users WHERE users.uid IS NOT NULL),"
    " heads(hid) AS ("
    "  SELECT (SELECT id FROM generations INDEXED BY generations_user_queued"
    "   WHERE " QUEUED_WHERE " AND user_id = users.uid" READY
    "   ORDER BY priority DESC, queued_at, id LIMIT 1)"
    "  FROM users WHERE users.uid IS NOT NULL AND users.uid NOT IN (" CAPPED_USERS "))"
    " SELECT g.id FROM heads CROSS JOIN generations g ON g.id = heads.hid"
    " ORDER BY g.priority DESC, g.queued_at, g.id LIMIT 1";

/* One id from a fair query (bound: now, cap and, for the front, the
 * window), "" when none. */
static int fair_query(sq_tx *t, const char *sql, int64_t now, int cap, char id[ID_LEN])
{
    sqlite3_stmt *st = sql == SQL_NEXT_FAIR_FRONT ? sq_query(t, sql, "Iii", now, cap, FAIR_WINDOW)
                                                  : sq_query(t, sql, "Ii", now, cap);
    if (!st) return STORE_ERR;
    int rc = sq_step(st);
    if (rc == SQLITE_ROW) sq_col_copy(st, 0, id, ID_LEN);
    sq_done(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? STORE_OK : rc;
}

/* next_queued under the cap; falls back to anyone's when no user under
 * the cap has ready work (every free slot may then be used). */
static int next_fair(sq_tx *t, int64_t now, int cap, char id[ID_LEN])
{
    if (cap <= 0) return next_queued(t, now, id);
    id[0] = '\0';
    int rc = fair_query(t, SQL_NEXT_FAIR_FRONT, now, cap, id);
    if (rc == STORE_OK && !id[0]) rc = fair_query(t, SQL_NEXT_FAIR_USERS, now, cap, id);
    if (rc != STORE_OK) return rc;
    return id[0] ? STORE_OK : next_queued(t, now, id);
}

int sq_gen_claim(store_t *s, const char *worker_id, int64_t now, int64_t lease_ms, gen_record *out)
{
    return sq_gen_claim_fair(s, worker_id, now, lease_ms, 0, out);
}

int sq_gen_claim_fair(store_t *s, const char *worker_id, int64_t now, int64_t lease_ms, int cap,
                      gen_record *out)
{
    char id[ID_LEN];
    sq_tx t;
    /* A cheap read first: idle workers poll without taking the write lock. */
    if (sq_begin(s, &t, false) != STORE_OK) return STORE_ERR;
    int rc = next_queued(&t, now, id);
    sq_rollback(&t);
    if (rc != STORE_OK) return rc;
    if (!id[0]) return STORE_ENOTFOUND;

    if (sq_begin_plain(s, &t) != STORE_OK) return STORE_ERR;
    rc = next_fair(&t, now, cap, id);
    if (rc != STORE_OK) goto fail;
    if (!id[0]) {
        rc = STORE_ENOTFOUND;
        goto fail;
    }
    rc = sq_exec(&t,
                 "UPDATE generations SET stage = 'fetching_inputs', lease_owner = ?,"
                 " lease_expires = ?, retry_at = NULL WHERE id = ?",
                 "sIs", worker_id, now + lease_ms, id);
    if (rc < 0) goto fail;
    gen_record g;
    rc = gen_event(&t, id, now, &g);
    if (rc < 0) goto fail;
    rc = sq_commit(&t);
    if (rc == STORE_OK)
        *out = g;
    else
        gen_record_free(&g);
    return rc;
fail:
    sq_rollback(&t);
    return rc;
}

/* Renews gen_id's lease while worker_id holds it: 1 when it did, else
 * STORE_ENOTFOUND or STORE_ECONFLICT (changes nothing then). */
static int lease_renew(sq_tx *t, const char *gen_id, const char *worker_id, int64_t lease_until)
{
    int rc = sq_exec(t,
                     "UPDATE generations SET lease_expires = ?"
                     " WHERE id = ? AND status = 'processing' AND lease_owner = ?",
                     "Iss", lease_until, gen_id, worker_id);
    return rc == 0 ? gen_missing_or_conflict(t, gen_id) : rc;
}

int sq_gen_progress(store_t *s, const char *gen_id, const char *worker_id, const char *stage,
                    int progress, int64_t lease_until, int64_t now)
{
    if (progress < 0) progress = 0;
    if (progress > 100) progress = 100;
    sq_tx t;
    if (sq_begin_plain(s, &t) != STORE_OK) return STORE_ERR;
    /* The usual write changes the stage or the progress, and writes its
     * event; one that changes neither only renews the lease. */
    int rc = sq_exec(&t,
                     "UPDATE generations SET stage = COALESCE(?1, stage),"
                     " progress = MAX(progress, ?2), lease_expires = ?3"
                     " WHERE id = ?4 AND status = 'processing' AND lease_owner = ?5"
                     " AND (COALESCE(?1, stage) <> stage OR progress < ?2)",
                     "siIss", stage, progress, lease_until, gen_id, worker_id);
    if (rc > 0)
        rc = gen_event(&t, gen_id, now, NULL);
    else if (rc == 0)
        rc = lease_renew(&t, gen_id, worker_id, lease_until);
    if (rc < 0) {
        sq_rollback(&t);
        return rc;
    }
    return sq_commit(&t);
}

int sq_gen_renew(store_t *s, const char *gen_id, const char *worker_id, int64_t lease_until)
{
    sq_tx t;
    if (sq_begin_plain(s, &t) != STORE_OK) return STORE_ERR;
    int rc = lease_renew(&t, gen_id, worker_id, lease_until);
    if (rc < 0) {
        sq_rollback(&t);
        return rc;
    }
    return sq_commit(&t);
}

int sq_gen_complete(store_t *s, const char *gen_id, const char *worker_id,
                    const json_t *result_images, int64_t now)
{
    char *results = store_base_json_array_text(result_images);
    sq_tx t;
    int rc = sq_begin_plain(s, &t);
    if (rc != STORE_OK) goto cleanup;
    rc =
        sq_exec(&t,
                "UPDATE generations SET status = 'completed', stage = 'completed',"
                " progress = 100, result_images = ?1, completed_at = ?2,"
                " processing_time = ?2 - COALESCE(started_at, ?2), error = NULL, error_code = NULL,"
                " lease_owner = NULL, lease_expires = NULL, retry_at = NULL"
                " WHERE id = ?3 AND status = 'processing' AND lease_owner = ?4",
                "sIss", results, now, gen_id, worker_id);
    if (rc == 0) rc = gen_missing_or_conflict(&t, gen_id);
    if (rc < 0) goto fail;
    rc = gen_event(&t, gen_id, now, NULL);
    if (rc < 0) goto fail;
    rc = sq_commit(&t);
    goto cleanup;
fail:
    sq_rollback(&t);
cleanup:
    free(results);
    return rc;
}

int sq_gen_requeue(store_t *s, const char *gen_id, const store_guard *guard, int retry_count,
                   const char *error, int64_t not_before, int64_t now)
{
    sq_tx t;
    if (sq_begin_plain(s, &t) != STORE_OK) return STORE_ERR;
    int rc = sq_exec(&t,
                     "UPDATE generations SET retry_count = retry_count + 1, stage = 'queued',"
                     " error = ?1, retry_at = ?2, lease_owner = NULL, lease_expires = NULL"
                     " WHERE id = ?3 AND status = 'processing' AND retry_count = ?4"
                     " AND " LEASE_GUARD(5, 6),
                     "sIsisI", error, not_before, gen_id, retry_count, guard->worker_id,
                     guard->worker_id ? (int64_t)0 : guard->lease_expired_before);
    if (rc == 0) rc = gen_missing_or_conflict(&t, gen_id);
    if (rc >= 0) rc = gen_event(&t, gen_id, now, NULL);
    if (rc < 0) {
        sq_rollback(&t);
        return rc;
    }
    return sq_commit(&t);
}

/* Reads the (id, retry_count) rows of a query whose parameters are one
 * value (text `sarg` when not NULL, else the integer `iarg`) and the limit. */
static int collect_refs(store_t *s, const char *sql, const char *sarg, int64_t iarg, int limit,
                        store_gen_ref **out, size_t *n)
{
    if (limit <= 0) limit = SWEEP_BATCH;
    sq_tx t;
    if (sq_begin(s, &t, false) != STORE_OK) return STORE_ERR;
    sqlite3_stmt *st =
        sarg ? sq_query(&t, sql, "si", sarg, limit) : sq_query(&t, sql, "Ii", iarg, limit);
    store_gen_ref *refs = xcalloc((size_t)limit, sizeof *refs);
    size_t cnt = 0;
    int rc = st ? SQLITE_ROW : STORE_ERR;
    while (st && cnt < (size_t)limit && (rc = sq_step(st)) == SQLITE_ROW) {
        sq_col_copy(st, 0, refs[cnt].id, ID_LEN);
        refs[cnt++].retry_count = (int)sq_col_int(st, 1);
    }
    sq_done(st);
    sq_rollback(&t);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        free(refs);
        return STORE_ERR;
    }
    *out = refs;
    *n = cnt;
    return STORE_OK;
}

int sq_gen_release(store_t *s, const char *worker_id, int64_t now)
{
    store_gen_ref *refs = NULL;
    size_t n = 0;
    int rc = collect_refs(s,
                          "SELECT id, retry_count FROM generations WHERE lease_owner = ?"
                          " AND status = 'processing' LIMIT ?",
                          worker_id, 0, SWEEP_BATCH, &refs, &n);
    for (size_t i = 0; i < n && rc == STORE_OK; i++) {
        sq_tx t;
        if (sq_begin(s, &t, true) != STORE_OK) {
            rc = STORE_ERR;
            break;
        }
        rc = sq_exec(&t,
                     "UPDATE generations SET stage = 'queued', lease_owner = NULL,"
                     " lease_expires = NULL, retry_at = NULL"
                     " WHERE id = ? AND status = 'processing' AND lease_owner = ?",
                     "ss", refs[i].id, worker_id);
        if (rc > 0) rc = gen_event(&t, refs[i].id, now, NULL);
        if (rc < 0) {
            sq_rollback(&t);
            break;
        }
        rc = sq_commit(&t);
    }
    free(refs);
    return rc < 0 ? rc : STORE_OK;
}

int sq_gen_expired_leases(store_t *s, int64_t before, int limit, store_gen_ref **out, size_t *n)
{
    return collect_refs(s,
                        "SELECT id, retry_count FROM generations WHERE lease_owner IS NOT NULL"
                        " AND lease_expires < ? AND status = 'processing' LIMIT ?",
                        NULL, before, limit, out, n);
}

int sq_gen_pending_before(store_t *s, int64_t before, int limit, store_gen_ref **out, size_t *n)
{
    return collect_refs(s,
                        "SELECT id, retry_count FROM generations WHERE status = 'pending'"
                        " AND created_at < ? LIMIT ?",
                        NULL, before, limit, out, n);
}

/* Runs often: looks first and takes the write lock only when there is
 * something to delete. */
int sq_purge(store_t *s, int64_t idem_before, int64_t sessions_before)
{
    sq_tx t;
    int64_t stale = 0;
    if (sq_begin(s, &t, false) != STORE_OK) return STORE_ERR;
    int rc = sq_int(&t, &stale,
                    "SELECT EXISTS (SELECT 1 FROM idempotency_keys WHERE created_at < ?1)"
                    " OR EXISTS (SELECT 1 FROM sessions WHERE expires_at < ?2)",
                    "II", idem_before, sessions_before);
    sq_rollback(&t);
    if (rc != STORE_OK || !stale) return rc;
    if (sq_begin(s, &t, true) != STORE_OK) return STORE_ERR;
    rc = sq_exec(&t, "DELETE FROM idempotency_keys WHERE created_at < ?", "I", idem_before);
    if (rc >= 0)
        rc = sq_exec(&t, "DELETE FROM sessions WHERE expires_at < ?", "I", sessions_before);
    if (rc < 0) {
        sq_rollback(&t);
        return rc;
    }
    return sq_commit(&t);
}

int sq_gen_next_retry_at(store_t *s, int64_t *at)
{
    sq_tx t;
    if (sq_begin(s, &t, false) != STORE_OK) return STORE_ERR;
    int64_t v = 0;
    int rc = sq_int(&t, &v,
                    "SELECT COALESCE(MIN(retry_at), 0) FROM generations WHERE " QUEUED_WHERE
                    " AND retry_at IS NOT NULL",
                    NULL);
    sq_rollback(&t);
    if (rc == STORE_OK) *at = v;
    return rc;
}

/* ---- the queue's figures (GET /api/queue) ---- */

int sq_queue_stats(store_t *s, int64_t alive_after, store_queue_figures *out)
{
    sq_tx t;
    if (sq_begin(s, &t, false) != STORE_OK) return STORE_ERR;
    store_queue_figures q = {0};
    int rc = sq_int(&t, &q.depth, QUEUE_DEPTH_SUM, NULL);
    if (rc == STORE_OK)
        rc = sq_int(&t, &q.running,
                    "SELECT COUNT(*) FROM generations WHERE lease_owner IS NOT NULL", NULL);
    if (rc == STORE_OK)
        rc = sq_int(&t, &q.workers,
                    "SELECT COALESCE(SUM(slots), 0) FROM queue_workers WHERE seen_at >= ?", "I",
                    alive_after);
    sq_rollback(&t);
    if (rc == STORE_OK) *out = q;
    return rc;
}

int sq_queue_heartbeat(store_t *s, const char *process_id, int slots, int64_t now)
{
    sq_tx t;
    /* Soft state renewed every second: its commit need not wait for the
     * disk (WAL, synchronous=NORMAL for this one; the next durable commit
     * syncs it along). An idle server then does no fsync at all. */
    if (sq_begin_soft(s, &t) != STORE_OK) return STORE_ERR;
    int rc = slots > 0
                 ? sq_exec(&t,
                           "INSERT INTO queue_workers (process_id, slots, seen_at)"
                           " VALUES (?1, ?2, ?3) ON CONFLICT (process_id)"
                           " DO UPDATE SET slots = ?2, seen_at = ?3",
                           "siI", process_id, slots, now)
                 : sq_exec(&t, "DELETE FROM queue_workers WHERE process_id = ?", "s", process_id);
    /* Processes gone for an hour (crashed without removing their row). */
    if (rc >= 0)
        rc = sq_exec(&t, "DELETE FROM queue_workers WHERE seen_at < ?", "I", now - 3600000);
    if (rc < 0) {
        sq_rollback(&t);
        return rc;
    }
    return sq_commit(&t);
}

int sq_queue_items(store_t *s, const char *user_id, int limit, store_queue_item **out, size_t *n)
{
    sq_tx t;
    if (sq_begin(s, &t, false) != STORE_OK) return STORE_ERR;
    sqlite3_stmt *st = sq_query(&t,
                                "SELECT id, model, priority, queued_at FROM generations"
                                " INDEXED BY generations_user_queued"
                                " WHERE user_id = ? AND " QUEUED_WHERE
                                " ORDER BY priority DESC, queued_at, id LIMIT ?",
                                "si", user_id, limit);
    store_queue_item *arr = xcalloc((size_t)(limit > 0 ? limit : 1), sizeof *arr);
    int *prio = xcalloc((size_t)(limit > 0 ? limit : 1), sizeof *prio);
    int64_t *qat = xcalloc((size_t)(limit > 0 ? limit : 1), sizeof *qat);
    size_t cnt = 0;
    int rc = st ? SQLITE_ROW : STORE_ERR;
    while (st && (int)cnt < limit && (rc = sq_step(st)) == SQLITE_ROW) {
        sq_col_copy(st, 0, arr[cnt].id, sizeof arr[cnt].id);
        sq_col_copy(st, 1, arr[cnt].model, sizeof arr[cnt].model);
        prio[cnt] = sqlite3_column_int(st, 2);
        qat[cnt] = sq_col_int(st, 3);
        cnt++;
    }
    sq_done(st);
    rc = rc == SQLITE_DONE || rc == SQLITE_ROW ? STORE_OK : STORE_ERR;
    /* In claim order: each after the first of its priority is placed by
     * the rows between it and the one before, a range of generations_claim_fair
     * (the user's first 100 at the front of 10,000: one short scan). */
    for (size_t i = 0; rc == STORE_OK && i < cnt; i++) {
        if (i > 0 && prio[i] == prio[i - 1]) {
            int64_t between = 0;
            rc = sq_int(&t, &between,
                        "SELECT COUNT(*) FROM " QUEUED_FROM " WHERE " QUEUED_WHERE
                        " AND priority = ?1 AND (queued_at, id) > (?2, ?3)"
                        " AND (queued_at, id) < (?4, ?5)",
                        "iIsIs", prio[i], qat[i - 1], arr[i - 1].id, qat[i], arr[i].id);
            arr[i].position = arr[i - 1].position + 1 + (int)between;
            continue;
        }
        gen_record g = {.priority = prio[i]};
        memcpy(g.id, arr[i].id, sizeof g.id);
        rc = queue_position(&t, &g, qat[i], &arr[i].position);
    }
    sq_rollback(&t);
    free(prio);
    free(qat);
    if (rc != STORE_OK) {
        free(arr);
        return rc;
    }
    *out = arr;
    *n = cnt;
    return STORE_OK;
}
