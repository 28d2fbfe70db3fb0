/*
 * store — the one interface to persistent state. store_sqlite.c implements
 * it on SQLite (default); store_pg.c will implement it on PostgreSQL. No
 * other file writes SQL.
 *
 * Every state change is one transaction that also writes the ledger row
 * (token_transactions) and the event rows (events) it implies: a crash
 * leaves all of it or none of it. After each commit that wrote events the
 * store calls the commit hook with the newest event id, so events.c can
 * wake streams and waiting requests.
 *
 * All functions are thread-safe. They return STORE_OK (0) or a negative
 * STORE_E* code. Output structs are filled only on STORE_OK.
 */
#ifndef SS_STORE_H
#define SS_STORE_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "generation.h"
#include "ids.h"

enum {
    STORE_OK = 0,
    STORE_ERR = -1,            /* the database failed; logged by the store */
    STORE_ENOTFOUND = -2,      /* no such row (or not the caller's) */
    STORE_ECONFLICT = -3,      /* wrong status for this action, or lease lost */
    STORE_EINSUFFICIENT = -4,  /* balance too low */
    STORE_EDUPLICATE = -5,     /* unique value taken (e.g. email) */
    STORE_EIDEM_MISMATCH = -6, /* Idempotency-Key reused with another body */
    STORE_EREPLAY = -7,        /* Idempotency-Key replay: see *replay outputs */
};

typedef struct store store_t; /* opaque */

/* Opens "sqlite:/path/file.db" (or "postgres://..." later) and runs the
 * migrations. 0 or STORE_ERR with *err set (caller frees). */
int store_open(const char *url, store_t **out, char **err);
void store_close(store_t *s);
/* Runs pending migrations; open does this too. Prints nothing. */
int store_migrate(store_t *s);
/* Cheap liveness query for /readyz. */
int store_ping(store_t *s);

/* user_id: the one user whose events the transaction wrote, or NULL when
 * it wrote events of several users. */
typedef void (*store_commit_hook)(int64_t last_event_id, const char *user_id, void *ctx);
void store_set_commit_hook(store_t *s, store_commit_hook fn, void *ctx);

/* ---- users and credentials ---- */

typedef struct user_record {
    char id[ID_LEN];
    char email[256];
    char name[128];
    int64_t token_balance;
    int64_t total_tokens_purchased; /* purchase + admin grant rows */
    int64_t total_tokens_used;      /* charges minus refunds */
    int64_t free_tokens_granted;    /* signup grant */
    char plan[8];                   /* free | pro */
    char role[8];                   /* user | admin */
    int64_t created_at;
} user_record;

/* Inserts the user (id, email, name, plan, role, created_at taken from *u;
 * balances ignored) and, when grant > 0, a ledger row of kind `grant_kind`
 * ("grant") with that amount, counted in freeTokensGranted. password_hash
 * may be NULL (CLI users). STORE_EDUPLICATE if the email exists
 * (case-insensitive). */
int store_user_create(store_t *s, const user_record *u, const char *password_hash, int64_t grant);
int store_user_get(store_t *s, const char *user_id, user_record *out);
/* *password_hash (may be NULL if not wanted) is set to a new string or NULL
 * when the user has no password. */
int store_user_by_email(store_t *s, const char *email, user_record *out, char **password_hash);
/* All users, oldest first. *out is a new array (caller frees). */
int store_user_list(store_t *s, user_record **out, size_t *n);
/* Adds amount (may be negative) to the balance with a ledger row of `kind`
 * (grant | purchase | adjustment) and an optional reason; writes a balance
 * event. STORE_EINSUFFICIENT if the balance would go below 0. */
int store_user_credit(store_t *s, const char *user_id, int64_t amount, const char *kind,
                      const char *reason, int64_t *balance_out);

typedef struct user_stats {
    int64_t total_generations;
    int64_t this_month; /* created at or after month_start */
    int64_t completed;
    int64_t failed;      /* failed (not cancelled) */
    double success_rate; /* completed / (completed + failed), 0..1; 0 when none */
} user_stats;
int store_user_stats(store_t *s, const char *user_id, int64_t month_start, user_stats *out);

int store_key_create(store_t *s, const char *key_id, const char *user_id, const char *name,
                     const char *key_hash, const char *hint, int64_t now);
/* [{id, name, hint, createdAt, lastUsedAt|null}], newest first, active keys
 * only. Caller owns *items. */
int store_key_list(store_t *s, const char *user_id, json_t **items);
/* Revokes one of the user's keys. STORE_ENOTFOUND if not theirs/absent. */
int store_key_delete(store_t *s, const char *user_id, const char *key_id);
/* Looks up an active key by hash, records last use; STORE_ENOTFOUND. */
int store_key_auth(store_t *s, const char *key_hash, int64_t now, user_record *out);

int store_session_create(store_t *s, const char *token_hash, const char *user_id,
                         int64_t expires_at);
/* STORE_ENOTFOUND when absent or expired. */
int store_session_auth(store_t *s, const char *token_hash, int64_t now, user_record *out);
int store_session_delete(store_t *s, const char *token_hash);

/* ---- ledger ---- */

/* The user's ledger rows newest first: [{id, kind, amount, balanceAfter,
 * generationId|null, reason|null, createdAt}]. cursor: NULL or a previous
 * *next_cursor. *next_cursor is NULL on the last page. Caller owns both. */
int store_ledger_list(store_t *s, const char *user_id, const char *cursor, int limit,
                      json_t **items, char **next_cursor);

/* Tokens charged and refunded over all time (for /metrics). */
int store_ledger_totals(store_t *s, int64_t *charged, int64_t *refunded);

/* ---- generations: the API side ---- */

/* Idempotency data for a create, or NULL when no Idempotency-Key. */
typedef struct store_idem {
    const char *key;          /* ≤ 255 chars */
    const char *request_hash; /* hash of the canonical request body */
    const char *response;     /* JSON text to replay */
    int http_status;          /* status to replay */
} store_idem;

/* One transaction: (idempotency check) → conditional debit of
 * g->tokens_used (balance >= cost) → insert g (status pending, or
 * processing/stage queued with started_at when start) → charge row →
 * idempotency row → generation and balance events.
 * The caller fills id, user_id, images, prompt, params, priority,
 * tokens_used, created_at, batch_id/retry_of.
 * STORE_EINSUFFICIENT: nothing written.
 * STORE_EREPLAY: the key was seen with the same hash; *replay_response
 *   (caller frees) and *replay_status are the first answer.
 * STORE_EIDEM_MISMATCH: key seen with another hash. Keys older than 24 h
 *   are forgotten. */
int store_gen_create(store_t *s, const gen_record *g, bool start, const store_idem *idem,
                     char **replay_response, int *replay_status);
/* pending → processing (stage queued, started_at = now).
 * STORE_ENOTFOUND, STORE_ECONFLICT if not pending. */
int store_gen_start(store_t *s, const char *gen_id, int64_t now);
/* pending|processing → cancelled with `reason` as error, refund row,
 * tokens_used 0. STORE_ECONFLICT otherwise. */
int store_gen_cancel(store_t *s, const char *gen_id, const char *reason, int64_t now);
/* Loads one record (queue_position computed when queued). */
int store_gen_get(store_t *s, const char *gen_id, gen_record *out);
/* The user's generations newest first; status_filter < 0 means all.
 * *out is a new array of n records (free each, then the array);
 * *next_cursor NULL on the last page. */
int store_gen_list(store_t *s, const char *user_id, int status_filter, const char *cursor,
                   int limit, gen_record **out, size_t *n, char **next_cursor);
/* Deletes a terminal generation (ledger rows stay). *result_images gets
 * its result URLs (caller owns) so files can be removed. STORE_ECONFLICT
 * when not terminal. */
int store_gen_delete(store_t *s, const char *gen_id, json_t **result_images);
/* Number of generations in stage queued (for metrics and QUEUE_FULL). */
int store_gen_counts(store_t *s, int64_t by_status[GEN_STATUS_COUNT], int64_t *queued);

/* ---- generations: the worker side ----
 * A worker owns a processing generation while its lease (lease_owner,
 * lease_expires) holds. Every call below takes the worker id and fails
 * with STORE_ECONFLICT when the lease was lost or the generation left
 * processing (e.g. cancelled) — the worker must then drop the job. */

/* Claims the next queued generation whose retry time has come: high
 * priority first, then FIFO by the time it was first queued. Sets lease,
 * stage fetching_inputs. STORE_ENOTFOUND when nothing is ready. */
int store_gen_claim(store_t *s, const char *worker_id, int64_t now, int64_t lease_ms,
                    gen_record *out);
/* Writes stage and progress (progress = max(old, new)), renews the lease. */
int store_gen_progress(store_t *s, const char *gen_id, const char *worker_id, const char *stage,
                       int progress, int64_t lease_until);
/* Renews the lease only (no event). */
int store_gen_renew(store_t *s, const char *gen_id, const char *worker_id, int64_t lease_until);
/* processing → completed, result_images set, progress 100,
 * completed_at = now, processing_time = now - started_at. */
int store_gen_complete(store_t *s, const char *gen_id, const char *worker_id,
                       const json_t *result_images, int64_t now);
/* A transient failure: when retry_count < max_retries, retry_count + 1,
 * back to stage queued with the lease cleared and not before
 * retry_at (*failed = false); otherwise → failed with refund (*failed =
 * true). error is kept in the record either way. */
int store_gen_retry_or_fail(store_t *s, const char *gen_id, const char *worker_id,
                            const char *error, int64_t retry_at, int max_retries, int64_t now,
                            bool *failed);
/* processing → failed with refund at once (permanent errors). */
int store_gen_fail(store_t *s, const char *gen_id, const char *worker_id, const char *error,
                   int64_t now);
/* Graceful shutdown: hands the worker's leased generations back to the
 * queue (stage queued, no retry counted). */
int store_gen_release(store_t *s, const char *worker_id, int64_t now);
/* Housekeeping, run periodically by queue.c:
 *  - leases expired before now → as store_gen_retry_or_fail with error
 *    "worker lost" (retry now);
 *  - pending created before now - pending_ttl_ms → cancelled, refunded,
 *    error "expired: not started within N seconds".
 * *changed counts generations touched. */
int store_gen_sweep(store_t *s, int64_t now, int64_t pending_ttl_ms, int max_retries, int *changed);
/* The earliest retry time among queued generations, or 0 when there are
 * none waiting for a retry (lets workers sleep exactly). */
int store_gen_next_retry_at(store_t *s, int64_t *at);

/* ---- events ---- */

typedef struct store_event {
    int64_t id;
    char type[16];              /* "generation" | "balance" */
    char generation_id[ID_LEN]; /* "" for balance events */
    char *data;                 /* JSON text: the full record, or {"tokenBalance":N} */
} store_event;

void store_events_free(store_event *ev, size_t n);
/* The user's events with id > after_id, oldest first, at most limit;
 * only those of one generation when generation_id is not NULL (balance
 * events are then skipped). *out new array. */
int store_events_after(store_t *s, const char *user_id, const char *generation_id, int64_t after_id,
                       int limit, store_event **out, size_t *n);
/* The newest event of one generation (its data is the current record).
 * The caller frees out->data. */
int store_events_latest(store_t *s, const char *generation_id, store_event *out);
/* The newest event id overall (0 when none). */
int store_events_last_id(store_t *s, int64_t *id);

#endif
