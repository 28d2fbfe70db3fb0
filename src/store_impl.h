/*
 * store_impl — what a store backend implements: the function table behind
 * store.h (one entry per store.h call, same arguments and contract, after
 * the store_t), and the part of struct store every backend shares. A
 * backend embeds struct store as the first member of its own state, fills
 * it with store_base_init, and store.c dispatches through s->ops.
 * Included by store.c and the backends only (store_sqlite*.c, store_pg*.c).
 */
#ifndef SS_STORE_IMPL_H
#define SS_STORE_IMPL_H

#include <pthread.h>
#include <stdatomic.h>

#include "store.h"

typedef struct store_ops {
    const char *name; /* "sqlite" | "postgres" */
    void (*close)(store_t *s);
    int (*migrate)(store_t *s);
    int (*ping)(store_t *s);
    /* true when another process may have the store open now (NULL: always) */
    bool (*shared)(store_t *s, uint64_t *visits);

    int (*user_create)(store_t *s, const user_record *u, const char *password_hash, int64_t grant);
    int (*user_get)(store_t *s, const char *user_id, user_record *out);
    int (*user_by_email)(store_t *s, const char *email, user_record *out, char **password_hash);
    int (*user_list)(store_t *s, user_record **out, size_t *n);
    int (*user_credit)(store_t *s, const char *user_id, int64_t amount, const char *kind,
                       const char *reason, int64_t *balance_out);
    int (*user_stats)(store_t *s, const char *user_id, int64_t month_start, user_stats *out);

    int (*key_create)(store_t *s, const char *key_id, const char *user_id, const char *name,
                      const char *key_hash, const char *hint, int64_t now);
    int (*key_list)(store_t *s, const char *user_id, store_key_row **out, size_t *n);
    int (*key_delete)(store_t *s, const char *user_id, const char *key_id, int64_t now);
    int (*key_get)(store_t *s, const char *key_hash, user_record *out, int64_t *last_used_at);
    int (*key_touch)(store_t *s, const char *key_hash, int64_t now);
    int (*session_create)(store_t *s, const char *token_hash, const char *user_id, int64_t now,
                          int64_t expires_at);
    int (*session_get)(store_t *s, const char *token_hash, user_record *out, int64_t *expires_at);
    int (*session_delete)(store_t *s, const char *token_hash);

    int (*ledger_list)(store_t *s, const char *user_id, const char *cursor, int limit,
                       store_ledger_row **out, size_t *n, char **next_cursor);
    int (*ledger_totals)(store_t *s, int64_t *charged, int64_t *refunded);

    int (*gen_create)(store_t *s, const gen_record *gens, size_t n, bool start,
                      const store_idem *idem, char **replay_response, int *replay_status);
    int (*batch_get)(store_t *s, const char *batch_id, store_batch *out);
    /* position: queue_position when queued; 0 (or less) to count it */
    int (*gen_get)(store_t *s, const char *gen_id, int position, gen_record *out);
    int (*gen_list)(store_t *s, const char *user_id, int status_filter, const char *cursor,
                    int limit, gen_record **out, size_t *n, char **next_cursor);
    int (*gen_delete)(store_t *s, const char *gen_id, unsigned from, json_t **result_images);
    int (*gen_counts)(store_t *s, int64_t by_status[GEN_STATUS_COUNT], int64_t *queued);

    int (*gen_start)(store_t *s, const char *gen_id, int64_t now);
    int (*gen_end)(store_t *s, const store_end *e);
    int (*gen_complete)(store_t *s, const char *gen_id, const char *worker_id,
                        const json_t *result_images, int64_t now);
    int (*gen_requeue)(store_t *s, const char *gen_id, const store_guard *guard, int retry_count,
                       const char *error, int64_t not_before, int64_t now);
    int (*gen_claim)(store_t *s, const char *worker_id, int64_t now, int64_t lease_ms,
                     gen_record *out);
    int (*gen_progress)(store_t *s, const char *gen_id, const char *worker_id, const char *stage,
                        int progress, int64_t lease_until, int64_t now);
    int (*gen_renew)(store_t *s, const char *gen_id, const char *worker_id, int64_t lease_until);
    int (*gen_release)(store_t *s, const char *worker_id, int64_t now);
    int (*gen_expired_leases)(store_t *s, int64_t before, int limit, store_gen_ref **out,
                              size_t *n);
    int (*gen_pending_before)(store_t *s, int64_t before, int limit, store_gen_ref **out,
                              size_t *n);
    int (*gen_next_retry_at)(store_t *s, int64_t *at);
    int (*purge)(store_t *s, int64_t idem_before, int64_t sessions_before);

    int (*events_after)(store_t *s, const char *user_id, const char *generation_id,
                        int64_t after_id, int limit, store_event **out, size_t *n);
    int (*events_latest)(store_t *s, const char *generation_id, store_event *out);
    int (*events_last_id)(store_t *s, int64_t *id);

    int (*webhook_create)(store_t *s, const store_webhook *w);
    int (*webhook_list)(store_t *s, const char *user_id, store_webhook **out, size_t *n);
    int (*webhook_get)(store_t *s, const char *webhook_id, store_webhook *out);
    int (*webhook_delete)(store_t *s, const char *user_id, const char *webhook_id);
    int (*webhook_pending)(store_t *s, int limit, store_webhook_event **out, size_t *n);
    int (*webhook_advance)(store_t *s, const char *webhook_id, int64_t cursor,
                           const store_delivery_new *d, size_t n, int64_t now);
    int (*delivery_claim)(store_t *s, const char *lease, int64_t now, int64_t lease_ms, int limit,
                          store_delivery **out, size_t *n);
    int (*delivery_record)(store_t *s, const char *delivery_id, const char *lease,
                           const store_attempt *a);
    int (*delivery_list)(store_t *s, const char *webhook_id, const char *cursor, int limit,
                         store_delivery **out, size_t *n, char **next_cursor);
    int (*delivery_redeliver)(store_t *s, const char *webhook_id, const char *delivery_id,
                              int64_t now, store_delivery *out);
    int (*delivery_next_due)(store_t *s, int64_t *at);
    int (*events_prune)(store_t *s, int64_t before, int limit, int64_t *deleted);

    /* plans */
    int (*user_set_plan)(store_t *s, const char *user_id, const char *plan, user_record *out);

    /* templates */
    int (*template_create)(store_t *s, const store_template *t, int max_per_user);
    int (*template_get)(store_t *s, const char *template_id, store_template *out);
    int (*template_list)(store_t *s, const char *user_id, const char *cursor, int limit,
                         store_template **out, size_t *n, char **next_cursor);
    int (*template_update)(store_t *s, const char *user_id, const char *template_id,
                           const char *name, const char *body, int64_t now, store_template *out);
    int (*template_delete)(store_t *s, const char *user_id, const char *template_id);
    int (*bucket_update)(store_t *s, const char *key, store_bucket_fn fn, void *ctx);
    int (*buckets_prune)(store_t *s, const char *prefix, int64_t before, int limit,
                         int64_t *deleted);
    int (*idem_peek)(store_t *s, const char *user_id, const store_idem *idem,
                     char **replay_response, int *replay_status);
    /* the fair queue */
    int (*gen_claim_fair)(store_t *s, const char *worker_id, int64_t now, int64_t lease_ms,
                          int user_cap, gen_record *out);
    int (*queue_stats)(store_t *s, int64_t alive_after, store_queue_figures *out);
    int (*queue_heartbeat)(store_t *s, const char *process_id, int slots, int64_t now);
    int (*queue_items)(store_t *s, const char *user_id, int limit, store_queue_item **out,
                       size_t *n);
} store_ops;

/* The shared head of every backend's state. */
struct store {
    const store_ops *ops;
    const store_codec *codec;
    pthread_mutex_t hook_mu;
    store_commit_hook hook;
    void *hook_ctx;
};

void store_base_init(store_t *s, const store_ops *ops, const store_codec *codec);
void store_base_destroy(store_t *s);
/* Calls the commit hook (if any) after a commit that wrote events. */
void store_base_committed(store_t *s, int64_t last_event_id, const char *user_id, bool queue);

/* Deferred durability (store.h), for a backend with group commit. */
struct store_pending {
    store_t *s;
    atomic_int state; /* PENDING_* bits (store.c) */
    bool durable;     /* the outcome, set before PENDING_DONE */
    int64_t last_event;
    char event_user[ID_LEN]; /* "" with last_event > 0: several users */
    bool queue;              /* the commit hook's queue */
    store_durable_fn fn;
    void *arg;
    struct store_pending *next; /* the backend's list of a batch's deferred members */
};
/* The write this thread may still defer in s, or NULL. */
store_pending *store_base_deferring(store_t *s);
/* A commit was deferred into p: its hook's arguments (user_id NULL:
 * several users). */
void store_base_caught(store_pending *p, int64_t last_event_id, const char *user_id, bool queue);
/* Its batch has ended (any thread; may run the caller's fn). */
void store_base_durable(store_pending *p, bool durable);
/* Event data through the codec: new strings, never NULL. */
char *store_base_gen_json(store_t *s, const gen_record *g);
/* The event data of the pending record a create of g writes at now: the
 * record as the store would read it back, encoded before the transaction
 * so it does not wait for it. (A started one carries its queue position,
 * which only the transaction knows.) */
char *store_base_pending_gen_json(store_t *s, const gen_record *g, int64_t now);
/* The codec's prepare for g, when it has one (before a write lock). */
void store_base_gen_prepare(store_t *s, const gen_record *g);
char *store_base_balance_json(store_t *s, int64_t token_balance);
/* A stored JSON array column: text → a new array (an empty one for NULL
 * or anything but an array), and an array (NULL: empty) → new compact
 * text. */
json_t *store_base_json_array(const char *text);
char *store_base_json_array_text(const json_t *a);
/* The batches row's generation_ids: the JSON array of gens' ids, a new
 * string. */
char *store_base_gen_ids_json(const gen_record *gens, size_t n);

/* Backends' open functions, called by store_open. `target` is the URL
 * with the scheme handled: a path for SQLite, the libpq URL for
 * PostgreSQL. */
int store_sqlite_open(const char *path, const store_options *opt, store_t **out, char **err);
int store_pg_open(const char *url, const store_options *opt, store_t **out, char **err);

#endif
