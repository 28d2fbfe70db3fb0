/*
 * store_sqlite — private header shared by the SQLite store's files:
 *   store_sqlite.c       open, migrations, connection pool, transactions,
 *                        statement helpers, events
 *   store_sqlite_user.c  users, API keys, sessions, the ledger
 *   store_sqlite_gen.c   generations: API side, worker side, sweep
 *   store_sqlite_webhook.c  outbound webhooks, deliveries, events retention
 *   store_sqlite_tpl.c   templates (saved create bodies)
 *   store_sqlite_vfs.c   the VFS that gathers the WAL's writes
 * Nothing outside these files includes it; everyone else uses store.h.
 */
#ifndef SS_STORE_SQLITE_H
#define SS_STORE_SQLITE_H

#include <pthread.h>
#include <sqlite3.h>

#include "store_impl.h"

/* The VFS the store's connections open their files with
 * (store_sqlite_vfs.c: the WAL's writes gathered). */
const char *sq_vfs_name(void);

/* The backend's entries of store_ops (store_impl.h; contracts in store.h),
 * defined in store_sqlite_user.c and store_sqlite_gen.c. */
int sq_user_create(store_t *s, const user_record *u, const char *password_hash, int64_t grant);
int sq_user_get(store_t *s, const char *user_id, user_record *out);
int sq_user_by_email(store_t *s, const char *email, user_record *out, char **password_hash);
int sq_user_list(store_t *s, user_record **out, size_t *n);
int sq_user_credit(store_t *s, const char *user_id, int64_t amount, const char *kind,
                   const char *reason, int64_t *balance_out);
int sq_user_stats(store_t *s, const char *user_id, int64_t month_start, user_stats *out);
int sq_key_create(store_t *s, const char *key_id, const char *user_id, const char *name,
                  const char *key_hash, const char *hint, int64_t now);
int sq_key_list(store_t *s, const char *user_id, store_key_row **out, size_t *n);
int sq_key_delete(store_t *s, const char *user_id, const char *key_id, int64_t now);
int sq_key_get(store_t *s, const char *key_hash, user_record *out, int64_t *last_used_at);
int sq_key_touch(store_t *s, const char *key_hash, int64_t now);
int sq_session_create(store_t *s, const char *token_hash, const char *user_id, int64_t now,
                      int64_t expires_at);
int sq_session_get(store_t *s, const char *token_hash, user_record *out, int64_t *expires_at);
int sq_session_delete(store_t *s, const char *token_hash);
int sq_ledger_list(store_t *s, const char *user_id, const char *cursor, int limit,
                   store_ledger_row **out, size_t *n, char **next_cursor);
int sq_gen_create(store_t *s, const gen_record *gens, size_t n, bool start, const store_idem *idem,
                  char **replay_response, int *replay_status);
int sq_batch_get(store_t *s, const char *batch_id, store_batch *out);
int sq_gen_get(store_t *s, const char *gen_id, int position, gen_record *out);
int sq_gen_list(store_t *s, const char *user_id, int status_filter, const char *cursor, int limit,
                gen_record **out, size_t *n, char **next_cursor);
int sq_gen_delete(store_t *s, const char *gen_id, unsigned from, json_t **result_images);
int sq_gen_counts(store_t *s, int64_t by_status[GEN_STATUS_COUNT], int64_t *queued);
int sq_gen_start(store_t *s, const char *gen_id, int64_t now);
int sq_gen_end(store_t *s, const store_end *e);
int sq_gen_complete(store_t *s, const char *gen_id, const char *worker_id,
                    const json_t *result_images, int64_t now);
int sq_gen_requeue(store_t *s, const char *gen_id, const store_guard *guard, int retry_count,
                   const char *error, int64_t not_before, int64_t now);
int sq_gen_claim(store_t *s, const char *worker_id, int64_t now, int64_t lease_ms, gen_record *out);
int sq_gen_claim_fair(store_t *s, const char *worker_id, int64_t now, int64_t lease_ms, int cap,
                      gen_record *out);
int sq_queue_stats(store_t *s, int64_t alive_after, store_queue_figures *out);
int sq_queue_heartbeat(store_t *s, const char *process_id, int slots, int64_t now);
int sq_queue_items(store_t *s, const char *user_id, int limit, store_queue_item **out, size_t *n);
int sq_gen_progress(store_t *s, const char *gen_id, const char *worker_id, const char *stage,
                    int progress, int64_t lease_until, int64_t now);
int sq_gen_renew(store_t *s, const char *gen_id, const char *worker_id, int64_t lease_until);
int sq_gen_release(store_t *s, const char *worker_id, int64_t now);
int sq_gen_expired_leases(store_t *s, int64_t before, int limit, store_gen_ref **out, size_t *n);
int sq_gen_pending_before(store_t *s, int64_t before, int limit, store_gen_ref **out, size_t *n);
int sq_gen_next_retry_at(store_t *s, int64_t *at);
int sq_purge(store_t *s, int64_t idem_before, int64_t sessions_before);
/* store_sqlite_webhook.c */
int sq_webhook_create(store_t *s, const store_webhook *w);
int sq_webhook_list(store_t *s, const char *user_id, store_webhook **out, size_t *n);
int sq_webhook_get(store_t *s, const char *webhook_id, store_webhook *out);
int sq_webhook_delete(store_t *s, const char *user_id, const char *webhook_id);
int sq_webhook_pending(store_t *s, int limit, store_webhook_event **out, size_t *n);
int sq_webhook_advance(store_t *s, const char *webhook_id, int64_t cursor,
                       const store_delivery_new *d, size_t n, int64_t now);
int sq_delivery_claim(store_t *s, const char *lease, int64_t now, int64_t lease_ms, int limit,
                      store_delivery **out, size_t *n);
int sq_delivery_record(store_t *s, const char *delivery_id, const char *lease,
                       const store_attempt *a);
int sq_delivery_list(store_t *s, const char *webhook_id, const char *cursor, int limit,
                     store_delivery **out, size_t *n, char **next_cursor);
int sq_delivery_redeliver(store_t *s, const char *webhook_id, const char *delivery_id, int64_t now,
                          store_delivery *out);
int sq_delivery_next_due(store_t *s, int64_t *at);
int sq_events_prune(store_t *s, int64_t before, int limit, int64_t *deleted);
/* plans (store_sqlite_user.c) */
int sq_user_set_plan(store_t *s, const char *user_id, const char *plan, user_record *out);
/* templates (store_sqlite_tpl.c) */
int sq_template_create(store_t *s, const store_template *t, int max_per_user);
int sq_template_get(store_t *s, const char *template_id, store_template *out);
int sq_template_list(store_t *s, const char *user_id, const char *cursor, int limit,
                     store_template **out, size_t *n, char **next_cursor);
int sq_template_update(store_t *s, const char *user_id, const char *template_id, const char *name,
                       const char *body, int64_t now, store_template *out);
int sq_template_delete(store_t *s, const char *user_id, const char *template_id);
/* store_sqlite_rate.c */
int sq_bucket_update(store_t *s, const char *key, store_bucket_fn fn, void *ctx);
int sq_buckets_prune(store_t *s, const char *prefix, int64_t before, int limit, int64_t *deleted);
int sq_idem_peek(store_t *s, const char *user_id, const store_idem *idem, char **replay_response,
                 int *replay_status);

/* One pooled connection with its prepared-statement cache. */
typedef struct sq_conn sq_conn;

/* A transaction on one pooled connection. Write transactions hold the
 * store's writer mutex and run under BEGIN IMMEDIATE; read transactions are
 * plain BEGIN (one consistent WAL snapshot). */
typedef struct sq_tx {
    store_t *s;
    sq_conn *c;
    bool write;
    int64_t last_event;      /* newest event id written, for the commit hook */
    char event_user[ID_LEN]; /* whose events; "" when none */
    bool event_users_many;   /* events of more than one user */
    bool queue;              /* the commit hook's queue: a non-pending record's event */
    uint64_t batch;          /* write: the group commit it is part of */
    bool plain;              /* write: no savepoint of its own (sq_begin_plain) */
    int64_t changes_before;  /* plain: the connection's change count at the start */
} sq_tx;

int sq_begin(store_t *s, sq_tx *t, bool write);
/* COMMIT, give the connection back, then call the commit hook when events
 * were written. On failure the transaction is rolled back. */
int sq_commit(sq_tx *t);
void sq_rollback(sq_tx *t);
/* A write transaction whose commit does not wait for the disk (soft state
 * only: a crash may lose it; the next durable commit syncs it along). */
int sq_begin_soft(store_t *s, sq_tx *t);
/* A write transaction without a savepoint of its own (store_sqlite.c's
 * DESIGN): for one whose only expected failure comes before its first
 * change. Rolled back after a change, it fails its whole group commit. */
int sq_begin_plain(store_t *s, sq_tx *t);

/* Prepares (once per connection; sql must be a string literal, it is the
 * cache key) and binds parameters from fmt, one letter each:
 *   s  const char *  (NULL binds NULL)
 *   i  int
 *   I  int64_t
 *   Z  int64_t, 0 binds NULL (optional times)
 *   d  double
 * Returns NULL on error (logged). The statement must be given back with
 * sq_done (sqlite3_reset) before the connection is reused. */
sqlite3_stmt *sq_query(sq_tx *t, const char *sql, const char *fmt, ...);
/* sqlite3_step with logging: SQLITE_ROW, SQLITE_DONE, or a STORE_E* code
 * (constraint violations map to STORE_EDUPLICATE / STORE_ENOTFOUND). */
int sq_step(sqlite3_stmt *st);
void sq_done(sqlite3_stmt *st);
/* Runs one statement to completion: the number of rows changed (>= 0) or a
 * STORE_E* code. */
int sq_exec(sq_tx *t, const char *sql, const char *fmt, ...);
/* Runs a query returning one integer: 0 and *out set, STORE_ENOTFOUND when
 * there is no row, or STORE_ERR. A NULL value reads as 0. */
int sq_int(sq_tx *t, int64_t *out, const char *sql, const char *fmt, ...);

/* Column helpers: copies text into a fixed buffer ("" for NULL), or a new
 * string (NULL for NULL). */
void sq_col_copy(sqlite3_stmt *st, int col, char *dst, size_t size);
char *sq_col_strdup(sqlite3_stmt *st, int col);
int64_t sq_col_int(sqlite3_stmt *st, int col);

/* Appends an event row; remembers its id in t->last_event. data is JSON. */
int sq_event(sq_tx *t, const char *user_id, const char *gen_id, const char *type, const char *data,
             int64_t now);
/* A "generation" event for g, whose record data is: sq_event, with the
 * queue position and terminal status kept beside it (012). */
int sq_gen_event(sq_tx *t, const gen_record *g, const char *data, int64_t now);
/* A "balance" event with the user's current balance. */
int sq_balance_event(sq_tx *t, const char *user_id, int64_t now);
/* A ledger row; balance_after is read from users after the balance update
 * the caller has already made in the same transaction, plus later: what
 * that update also took for rows still to come (a batch's items). */
int sq_ledger_add(sq_tx *t, const char *user_id, const char *kind, int64_t amount, int64_t later,
                  const char *gen_id, const char *reason, int64_t now);

/* Copies src into dst[size], truncating, always NUL-terminated. */
void sq_copy(char *dst, size_t size, const char *src);

#endif
