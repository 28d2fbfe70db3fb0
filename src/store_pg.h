/*
 * store_pg — private header shared by the PostgreSQL store's files:
 *   store_pg.c        open, connection pool, transactions, statement helpers,
 *                     migrations, the event log
 *   store_pg_listen.c the LISTEN thread
 *   store_pg_user.c   users, API keys, sessions, the ledger
 *   store_pg_gen.c    generations: API side, worker side, sweep queries
 *   store_pg_webhook.c outbound webhooks, deliveries, events retention
 *   store_pg_tpl.c    templates (saved create bodies)
 * Nothing outside these files includes it (and the PostgreSQL unit tests,
 * for the lock constants); everyone else uses store.h.
 */
#ifndef SS_STORE_PG_H
#define SS_STORE_PG_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>

#include "store_impl.h"

/* pg_advisory_xact_lock(STORE_PG_EVENT_LOCK_CLASS, hashtext(user_id)) is
 * taken by every transaction right before it writes its first event row of
 * that user, and held until it commits: one user's event ids are then handed
 * out in commit order (store_pg.c, DESIGN). */
#define STORE_PG_EVENT_LOCK_CLASS 1398079489 /* 0x53550001 */
/* pg_advisory_xact_lock(STORE_PG_MIGRATE_LOCK_CLASS, 0) serialises
 * migrations of processes starting together. */
#define STORE_PG_MIGRATE_LOCK_CLASS 1398079490
/* NOTIFY channel; the payload is "<last_event_id> <user_id>", or
 * "<last_event_id>" alone when the transaction wrote events of several
 * users. */
#define STORE_PG_CHANNEL "stylestudio_events"

/* One pooled connection (store_pg.c). */
typedef struct pg_conn pg_conn;

/* An event waiting to be written at commit (pg_event). */
typedef struct pg_pending_event {
    char user_id[ID_LEN];
    char gen_id[ID_LEN]; /* "" for balance events */
    const char *type;    /* a string literal: "generation" | "balance" */
    char *data;          /* owned */
    int queue_position;  /* generation: its record's, beside the row (010) */
    bool terminal;       /* generation: its record's status is terminal */
    int64_t now;
} pg_pending_event;

/* A borrowed connection, inside a transaction (pg_begin) or running
 * single statements in autocommit mode (pg_borrow). Finished by pg_commit
 * or pg_rollback, which give the connection back. */
typedef struct pg_tx {
    store_t *s;
    pg_conn *c;
    bool in_tx; /* BEGIN was sent */
    pg_pending_event *ev;
    size_t nev, cap;
} pg_tx;

/* BEGIN ISOLATION LEVEL READ COMMITTED on a pooled connection. STORE_OK,
 * or STORE_EUNAVAILABLE when no working connection could be had within a
 * few seconds. */
int pg_begin(store_t *s, pg_tx *t);
/* A pooled connection for single statements (each its own transaction):
 * reads, and writes that are one statement. Same codes as pg_begin. */
int pg_borrow(store_t *s, pg_tx *t);
/* Writes the pending events (per-user advisory locks, the rows, one
 * pg_notify), COMMITs, gives the connection back, then calls the commit
 * hook when events were written. On failure everything is rolled back and
 * the code returned (STORE_EUNAVAILABLE when the connection was lost; the
 * outcome of a COMMIT that lost its connection is unknown, but it is one
 * transaction either way). For a pg_borrow it only gives the connection
 * back. */
int pg_commit(pg_tx *t);
/* ROLLBACK (when in a transaction), drops pending events, gives the
 * connection back. Safe to call twice. */
void pg_rollback(pg_tx *t);

/* Runs sql with parameters from fmt, one letter each, sent as text:
 *   s  const char *  (NULL sends NULL)
 *   i  int
 *   I  int64_t
 *   Z  int64_t, 0 sends NULL (optional times)
 *   d  double
 * sql must be a string literal or static: its address keys the
 * per-connection prepared-statement cache. STORE_OK and *res (caller
 * PQclears) for a statement that succeeded, else a STORE_E* code (unique
 * violation STORE_EDUPLICATE, foreign key STORE_ENOTFOUND, lost connection
 * STORE_EUNAVAILABLE, anything else STORE_ERR, logged). */
int pg_query(pg_tx *t, PGresult **res, const char *sql, const char *fmt, ...);
/* Like pg_query for a statement without result rows (or whose rows are not
 * wanted): the number of rows it changed (>= 0) or a STORE_E* code. */
int pg_exec(pg_tx *t, const char *sql, const char *fmt, ...);
/* A query returning one integer: STORE_OK and *out set, STORE_ENOTFOUND
 * when there is no row, or an error code. A NULL value reads as 0. */
int pg_int(pg_tx *t, int64_t *out, const char *sql, const char *fmt, ...);

/* pg_query, pg_exec and pg_int on a connection borrowed for just that
 * statement (autocommit: the statement is its own transaction). */
int pg_query1(store_t *s, PGresult **res, const char *sql, const char *fmt, ...);
int pg_exec1(store_t *s, const char *sql, const char *fmt, ...);
int pg_int1(store_t *s, int64_t *out, const char *sql, const char *fmt, ...);

/* Column helpers. pg_col_copy copies text into a fixed buffer ("" for
 * NULL); pg_col_strdup returns a new string (NULL for NULL); the numbers
 * read 0 for NULL. */
void pg_col_copy(const PGresult *r, int row, int col, char *dst, size_t size);
char *pg_col_strdup(const PGresult *r, int row, int col);
int64_t pg_col_int(const PGresult *r, int row, int col);
double pg_col_double(const PGresult *r, int row, int col);
bool pg_col_null(const PGresult *r, int row, int col);

/* Queues an event row for the commit; takes ownership of data (JSON from
 * the codec). gen_id NULL for balance events. */
void pg_event(pg_tx *t, const char *user_id, const char *gen_id, const char *type, char *data,
              int64_t now);
/* A "generation" event for g (data: its record, owned): pg_event, with the
 * queue position and terminal status kept beside the row (010). */
void pg_gen_event(pg_tx *t, const gen_record *g, char *data, int64_t now);
/* A "balance" event with the user's current balance (read inside t). */
int pg_balance_event(pg_tx *t, const char *user_id, int64_t now);
/* A ledger row; balance_after is read from users after the balance update
 * the caller has already made in the same transaction. */
int pg_ledger_add(pg_tx *t, const char *user_id, const char *kind, int64_t amount,
                  const char *gen_id, const char *reason, int64_t now);

/* Copies src into dst[size], truncating, always NUL-terminated. */
void pg_copy(char *dst, size_t size, const char *src);

/* ---- shared with store_pg_listen.c ---- */

/* The LISTEN thread of a store (store_pg_listen.c). kw/val are
 * PQconnectdbParams arrays and where the log label; all three must outlive
 * it. NULL when the thread cannot start. */
typedef struct pg_listener pg_listener;
pg_listener *pg_listener_start(store_t *s, const char *const *kw, const char *const *val,
                               const char *where);
/* Wakes the thread, joins it, frees l (NULL is fine). */
void pg_listener_stop(pg_listener *l);
/* Whether the store's pool holds the backend with that pid (its own
 * notifications, already reported by pg_commit). */
bool pg_pool_owns_backend(store_t *s, int pid);
/* A libpq notice processor that logs at debug level. */
void pg_quiet_notice(void *arg, const char *msg);

/* ---- the store_ops entries of store_pg_user.c and store_pg_gen.c ---- */

int store_pg_user_create(store_t *s, const user_record *u, const char *password_hash,
                         int64_t grant);
int store_pg_user_get(store_t *s, const char *user_id, user_record *out);
int store_pg_user_by_email(store_t *s, const char *email, user_record *out, char **password_hash);
int store_pg_user_list(store_t *s, user_record **out, size_t *n);
int store_pg_user_credit(store_t *s, const char *user_id, int64_t amount, const char *kind,
                         const char *reason, int64_t *balance_out);
int store_pg_user_stats(store_t *s, const char *user_id, int64_t month_start, user_stats *out);
int store_pg_key_create(store_t *s, const char *key_id, const char *user_id, const char *name,
                        const char *key_hash, const char *hint, int64_t now);
int store_pg_key_list(store_t *s, const char *user_id, store_key_row **out, size_t *n);
int store_pg_key_delete(store_t *s, const char *user_id, const char *key_id, int64_t now);
int store_pg_key_get(store_t *s, const char *key_hash, user_record *out, int64_t *last_used_at);
int store_pg_key_touch(store_t *s, const char *key_hash, int64_t now);
int store_pg_session_create(store_t *s, const char *token_hash, const char *user_id, int64_t now,
                            int64_t expires_at);
int store_pg_session_get(store_t *s, const char *token_hash, user_record *out, int64_t *expires_at);
int store_pg_session_delete(store_t *s, const char *token_hash);
int store_pg_ledger_list(store_t *s, const char *user_id, const char *cursor, int limit,
                         store_ledger_row **out, size_t *n, char **next_cursor);
int store_pg_ledger_totals(store_t *s, int64_t *charged, int64_t *refunded);
int store_pg_purge(store_t *s, int64_t idem_before, int64_t sessions_before);

int store_pg_gen_create(store_t *s, const gen_record *gens, size_t n, bool start,
                        const store_idem *idem, char **replay_response, int *replay_status);
int store_pg_batch_get(store_t *s, const char *batch_id, store_batch *out);
int store_pg_gen_get(store_t *s, const char *gen_id, int position, gen_record *out);
int store_pg_gen_list(store_t *s, const char *user_id, int status_filter, const char *cursor,
                      int limit, gen_record **out, size_t *n, char **next_cursor);
int store_pg_gen_delete(store_t *s, const char *gen_id, unsigned from, json_t **result_images);
int store_pg_gen_counts(store_t *s, int64_t by_status[GEN_STATUS_COUNT], int64_t *queued);
int store_pg_gen_start(store_t *s, const char *gen_id, int64_t now);
int store_pg_gen_end(store_t *s, const store_end *e);
int store_pg_gen_complete(store_t *s, const char *gen_id, const char *worker_id,
                          const json_t *result_images, int64_t now);
int store_pg_gen_requeue(store_t *s, const char *gen_id, const store_guard *guard, int retry_count,
                         const char *error, int64_t not_before, int64_t now);
int store_pg_gen_claim(store_t *s, const char *worker_id, int64_t now, int64_t lease_ms,
                       gen_record *out);
int store_pg_gen_progress(store_t *s, const char *gen_id, const char *worker_id, const char *stage,
                          int progress, int64_t lease_until, int64_t now);
int store_pg_gen_renew(store_t *s, const char *gen_id, const char *worker_id, int64_t lease_until);
int store_pg_gen_release(store_t *s, const char *worker_id, int64_t now);
int store_pg_gen_expired_leases(store_t *s, int64_t before, int limit, store_gen_ref **out,
                                size_t *n);
int store_pg_gen_pending_before(store_t *s, int64_t before, int limit, store_gen_ref **out,
                                size_t *n);
int store_pg_gen_next_retry_at(store_t *s, int64_t *at);

/* store_pg_webhook.c */
int store_pg_webhook_create(store_t *s, const store_webhook *w);
int store_pg_webhook_list(store_t *s, const char *user_id, store_webhook **out, size_t *n);
int store_pg_webhook_get(store_t *s, const char *webhook_id, store_webhook *out);
int store_pg_webhook_delete(store_t *s, const char *user_id, const char *webhook_id);
int store_pg_webhook_pending(store_t *s, int limit, store_webhook_event **out, size_t *n);
int store_pg_webhook_advance(store_t *s, const char *webhook_id, int64_t cursor,
                             const store_delivery_new *d, size_t n, int64_t now);
int store_pg_delivery_claim(store_t *s, const char *lease, int64_t now, int64_t lease_ms, int limit,
                            store_delivery **out, size_t *n);
int store_pg_delivery_record(store_t *s, const char *delivery_id, const char *lease,
                             const store_attempt *a);
int store_pg_delivery_list(store_t *s, const char *webhook_id, const char *cursor, int limit,
                           store_delivery **out, size_t *n, char **next_cursor);
int store_pg_delivery_redeliver(store_t *s, const char *webhook_id, const char *delivery_id,
                                int64_t now, store_delivery *out);
int store_pg_delivery_next_due(store_t *s, int64_t *at);
int store_pg_events_prune(store_t *s, int64_t before, int limit, int64_t *deleted);
/* plans (store_pg_user.c) */
int store_pg_user_set_plan(store_t *s, const char *user_id, const char *plan, user_record *out);
/* templates (store_pg_tpl.c) */
int store_pg_template_create(store_t *s, const store_template *t, int max_per_user);
int store_pg_template_get(store_t *s, const char *template_id, store_template *out);
int store_pg_template_list(store_t *s, const char *user_id, const char *cursor, int limit,
                           store_template **out, size_t *n, char **next_cursor);
int store_pg_template_update(store_t *s, const char *user_id, const char *template_id,
                             const char *name, const char *body, int64_t now, store_template *out);
int store_pg_template_delete(store_t *s, const char *user_id, const char *template_id);
/* store_pg_rate.c */
int store_pg_bucket_update(store_t *s, const char *key, store_bucket_fn fn, void *ctx);
int store_pg_buckets_prune(store_t *s, const char *prefix, int64_t before, int limit,
                           int64_t *deleted);
int store_pg_idem_peek(store_t *s, const char *user_id, const store_idem *idem,
                       char **replay_response, int *replay_status);
int store_pg_gen_claim_fair(store_t *s, const char *worker_id, int64_t now, int64_t lease_ms,
                            int cap, gen_record *out);
int store_pg_queue_stats(store_t *s, int64_t alive_after, store_queue_figures *out);
int store_pg_queue_heartbeat(store_t *s, const char *process_id, int slots, int64_t now);
int store_pg_queue_items(store_t *s, const char *user_id, int limit, store_queue_item **out,
                         size_t *n);

#endif
