/*
 * store — the one interface to persistent state. Two backends implement it
 * through a function table (struct store_ops, store_impl.h):
 * store_sqlite*.c (the embedded default) and store_pg*.c (PostgreSQL, for
 * many processes on many machines). store_open picks one from the URL;
 * store.c dispatches every call below to it. No other file writes SQL.
 *
 * The store offers atomic verbs and decides nothing: which transition is
 * legal, whether a failure is retried, and when things expire are
 * gen_state.c's and the callers' decisions, handed in as arguments (the
 * statuses a change may start from, a lease guard, cut-off times). The
 * store only guarantees that each verb is one transaction that also writes
 * the ledger row (token_transactions) and the event rows (events) it
 * implies, and that its guards hold at commit: a crash leaves all of it or
 * none of it. Event data is the JSON the codec handed to store_open makes
 * of a record; the store persists it and never builds API JSON itself.
 *
 * After each commit that wrote events the store calls the commit hook with
 * the newest event id, so events.c can wake streams and waiting requests.
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
    STORE_ECONFLICT = -3,      /* a guard did not hold: wrong status, lease lost */
    STORE_EINSUFFICIENT = -4,  /* balance too low */
    STORE_EDUPLICATE = -5,     /* unique value taken (e.g. email) */
    STORE_EIDEM_MISMATCH = -6, /* Idempotency-Key reused with another body */
    STORE_EREPLAY = -7,        /* Idempotency-Key replay: see *replay outputs */
    STORE_EUNAVAILABLE = -8,   /* the database cannot be reached now; nothing written */
};

typedef struct store store_t; /* opaque */

/* How records become event data. generation and balance return a new
 * JSON string (the store frees it); prepare, when set, may encode ahead
 * what generation will need of g, so a write can call it before it takes
 * the write lock. gen_record.c provides the one used by the service
 * (gen_record_codec). */
typedef struct store_codec {
    void (*prepare)(const gen_record *g);
    char *(*generation)(const gen_record *g);
    char *(*balance)(int64_t token_balance);
} store_codec;

/* What store_open is given besides the URL. */
typedef struct store_options {
    const store_codec *codec; /* must outlive the store */
    int pool_size;            /* connections; 0: the backend's default */
} store_options;

/* Opens "sqlite:/path/file.db" or "postgres://..." (any libpq URL) and runs
 * the migrations. 0, or STORE_ERR / STORE_EUNAVAILABLE with *err set
 * (caller frees; never echoes a password). */
int store_open(const char *url, const store_options *opt, store_t **out, char **err);
void store_close(store_t *s);
/* Runs pending migrations; open does this too. Prints nothing. */
int store_migrate(store_t *s);
/* Cheap liveness query for /readyz. */
int store_ping(store_t *s);
/* True when another process may have the store open right now, or opened
 * it since the caller last asked, so its commits can only be found by
 * asking the store (SQLite: a process-presence lock and visit mark beside
 * the database, two system calls; PostgreSQL: always true). Lets a lone
 * process skip its cross-process polls. *visits is the caller's own cursor
 * over the visits (start it at 0). */
bool store_shared(store_t *s, uint64_t *visits);
/* "sqlite" or "postgres". */
const char *store_backend(const store_t *s);

/* user_id: the one user whose events the transaction wrote, or NULL when
 * it wrote events of several users. queue: whether it may have changed what
 * workers can claim: false only when it is known not to have (its events
 * are balance changes and records created pending: a create); true for
 * everything else, and always on PostgreSQL and for other processes'
 * commits. */
typedef void (*store_commit_hook)(int64_t last_event_id, const char *user_id, bool queue,
                                  void *ctx);
void store_set_commit_hook(store_t *s, store_commit_hook fn, void *ctx);

/* ---- answering before the disk: deferred durability ----
 * A durable write returns once its commit is on disk, holding the calling
 * thread meanwhile. A caller that needs to hold only its answer, not its
 * thread, brackets one store call with store_defer / store_defer_stop:
 * the first durable write commit inside returns as soon as its changes
 * are in the store's open group commit (SQLite), visible to later writes
 * but not yet to reads nor on disk. store_when_durable(p, fn, arg) then
 * calls fn(arg, durable) exactly once: durable when that commit reached the
 * disk, false when it failed (none of it was kept). The commit hook of the
 * deferred write runs first, so nothing is announced before it is durable.
 * fn runs at once on the calling thread when nothing was deferred (a
 * PostgreSQL store, a read-only call, a failed write) or the disk was
 * quicker, else on the thread that commits the batch: it must be quick.
 * Later write commits inside the bracket wait for the disk as usual. */
typedef struct store_pending store_pending;
typedef void (*store_durable_fn)(void *arg, bool durable);
store_pending *store_defer(store_t *s);
void store_defer_stop(store_pending *p);
/* Consumes p (frees it after fn has run). */
void store_when_durable(store_pending *p, store_durable_fn fn, void *arg);
/* A store_durable_fn for a write nobody waits to hear of. */
void store_durable_ignored(void *arg, bool durable);

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
 * balances ignored) and, when grant > 0, a ledger row of kind "grant" with
 * that amount, counted in freeTokensGranted, and a balance event.
 * password_hash may be NULL (CLI users). STORE_EDUPLICATE if the email
 * exists (case-insensitive). */
int store_user_create(store_t *s, const user_record *u, const char *password_hash, int64_t grant);
int store_user_get(store_t *s, const char *user_id, user_record *out);
/* *password_hash (may be NULL if not wanted) is set to a new string or NULL
 * when the user has no password. Email match is case-insensitive. */
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

typedef struct store_key_row {
    char id[ID_LEN];
    char name[128];
    char hint[32];
    int64_t created_at;
    int64_t last_used_at; /* 0 when never used */
} store_key_row;

int store_key_create(store_t *s, const char *key_id, const char *user_id, const char *name,
                     const char *key_hash, const char *hint, int64_t now);
/* The user's active keys, newest first. *out is a new array (caller frees). */
int store_key_list(store_t *s, const char *user_id, store_key_row **out, size_t *n);
/* Revokes one of the user's keys. STORE_ENOTFOUND if not theirs/absent. */
int store_key_delete(store_t *s, const char *user_id, const char *key_id, int64_t now);
/* Looks up an active key by hash: the user and when the key was last used
 * (0: never). STORE_ENOTFOUND. */
int store_key_get(store_t *s, const char *key_hash, user_record *out, int64_t *last_used_at);
/* Records a use of the key (the caller decides how often). */
int store_key_touch(store_t *s, const char *key_hash, int64_t now);

int store_session_create(store_t *s, const char *token_hash, const char *user_id, int64_t now,
                         int64_t expires_at);
/* The session's user and expiry time; STORE_ENOTFOUND when absent. The
 * caller decides whether it has expired. */
int store_session_get(store_t *s, const char *token_hash, user_record *out, int64_t *expires_at);
/* Idempotent: deleting an absent session is not an error. */
int store_session_delete(store_t *s, const char *token_hash);

/* ---- ledger ---- */

typedef struct store_ledger_row {
    int64_t id;
    char kind[16]; /* grant | purchase | charge | refund | adjustment */
    int64_t amount;
    int64_t balance_after;
    char generation_id[ID_LEN]; /* "" when none */
    char *reason;               /* NULL when none; owned by the row */
    int64_t created_at;
} store_ledger_row;

void store_ledger_rows_free(store_ledger_row *rows, size_t n);
/* The user's ledger rows newest first. cursor: NULL or a previous
 * *next_cursor. *next_cursor is NULL on the last page. Caller owns *out
 * (store_ledger_rows_free) and *next_cursor. */
int store_ledger_list(store_t *s, const char *user_id, const char *cursor, int limit,
                      store_ledger_row **out, size_t *n, char **next_cursor);

/* Tokens charged and refunded over all time (for /metrics). */
int store_ledger_totals(store_t *s, int64_t *charged, int64_t *refunded);

/* ---- generations: the API side ---- */

/* Idempotency data for a create, or NULL when no Idempotency-Key. */
typedef struct store_idem {
    const char *key;          /* ≤ 255 chars */
    const char *request_hash; /* hash of the canonical request body */
    const char *response;     /* JSON text to replay */
    int http_status;          /* status to replay */
    int64_t not_before;       /* a key stored before this is forgotten */
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
 * STORE_EIDEM_MISMATCH: key seen with another hash. */
int store_gen_create(store_t *s, const gen_record *g, bool start, const store_idem *idem,
                     char **replay_response, int *replay_status);
/* The same for n generations of one user at once, all or none, in one
 * transaction: one conditional debit of the sum of their tokens_used, then
 * each generation with its own charge row and event, one idempotency row
 * and one balance event. When gens[0].batch_id is set (every item then
 * carries it) the batch row is written too: that id, the user, created_at
 * of gens[0], total n and the ids in array order. store_gen_create is this
 * with n = 1. STORE_EINSUFFICIENT when the balance is below the sum. */
int store_gen_create_many(store_t *s, const gen_record *gens, size_t n, bool start,
                          const store_idem *idem, char **replay_response, int *replay_status);

/* A batch (SPEC §4): what it was made of, and its items as they are now. */
typedef struct store_batch {
    char id[ID_LEN];
    char user_id[ID_LEN];
    int64_t created_at;
    int total;                        /* items created */
    json_t *generation_ids;           /* array of strings, in item order (owned) */
    int64_t counts[GEN_STATUS_COUNT]; /* the items that still exist, by status */
    int64_t tokens_used;              /* what those items hold now */
} store_batch;

void store_batch_free(store_batch *b);
/* Loads a batch. STORE_ENOTFOUND when there is none. Caller frees *out. */
int store_batch_get(store_t *s, const char *batch_id, store_batch *out);
/* Loads one record (queue_position computed when queued). */
int store_gen_get(store_t *s, const char *gen_id, gen_record *out);
/* The same, taking position (a store_queue_items figure read just before)
 * as the queue_position when the record is still queued instead of
 * counting the queue ahead of it again. */
int store_gen_get_at(store_t *s, const char *gen_id, int position, gen_record *out);
/* The user's generations newest first; status_filter < 0 means all.
 * *out is a new array of n records (free each, then the array);
 * *next_cursor NULL on the last page. */
int store_gen_list(store_t *s, const char *user_id, int status_filter, const char *cursor,
                   int limit, gen_record **out, size_t *n, char **next_cursor);
/* Deletes a generation whose status is in `from` (a GEN_MASK set; ledger
 * rows stay). *result_images gets its result URLs (caller owns) so files
 * can be removed. STORE_ECONFLICT when its status is not in `from`. */
int store_gen_delete(store_t *s, const char *gen_id, unsigned from, json_t **result_images);
/* Counts by status, and the number in stage queued (metrics, QUEUE_FULL). */
int store_gen_counts(store_t *s, int64_t by_status[GEN_STATUS_COUNT], int64_t *queued);

/* ---- generations: state changes ----
 * A set of statuses, for the `from` guards: GEN_MASK(GEN_PENDING) | ... */
#define GEN_MASK(status) (1u << (status))

/* Which lease a change requires of a processing generation:
 *  worker_id set         the lease must be held by this worker;
 *  lease_expired_before  (worker_id NULL) a lease must exist and have
 *                        expired before this time (the sweep's rescue);
 *  neither               no lease condition (a user's cancel, expiry).
 * A change that does not hold STORE_ECONFLICTs and writes nothing. */
typedef struct store_guard {
    const char *worker_id;
    int64_t lease_expired_before;
} store_guard;

/* pending → processing, stage queued, started_at = queued_at = now.
 * STORE_ENOTFOUND, STORE_ECONFLICT if not pending. */
int store_gen_start(store_t *s, const char *gen_id, int64_t now);

/* Ends a generation: status and stage `to` (GEN_FAILED or GEN_CANCELLED),
 * error and error_code (as given: gen_state decides them), completed_at = now, processing_time from
 * started_at, lease and retry time cleared, then the refund of what it holds (tokens_used → 0, one
 * refund row — the unique key makes a second one impossible) and the events. The status must be in
 * `from` and the guard must hold. */
typedef struct store_end {
    const char *gen_id;
    unsigned from;
    gen_status to;
    const char *error;
    const char *error_code; /* NULL or "": none */
    store_guard guard;
    int64_t now;
} store_end;
int store_gen_end(store_t *s, const store_end *e);

/* processing (leased by worker_id) → completed, result_images set,
 * error and error_code cleared, progress 100, completed_at = now, processing_time = now -
 * started_at. */
int store_gen_complete(store_t *s, const char *gen_id, const char *worker_id,
                       const json_t *result_images, int64_t now);

/* Back to the queue after a transient failure: retry_count goes from
 * `retry_count` (which must be the stored value) to retry_count + 1, stage
 * queued, lease cleared, error kept, not claimable before not_before.
 * Requires status processing and the guard. */
int store_gen_requeue(store_t *s, const char *gen_id, const store_guard *guard, int retry_count,
                      const char *error, int64_t not_before, int64_t now);

/* Claims the next queued generation whose retry time has come (not_before
 * <= now): high priority first, then FIFO by the time it was first queued.
 * Sets the lease to worker_id until now + lease_ms, stage fetching_inputs.
 * STORE_ENOTFOUND when nothing is ready. */
int store_gen_claim(store_t *s, const char *worker_id, int64_t now, int64_t lease_ms,
                    gen_record *out);
/* Writes stage (NULL: unchanged) and progress (progress = max(old, new)),
 * renews the lease; an event only when stage or progress changed. */
int store_gen_progress(store_t *s, const char *gen_id, const char *worker_id, const char *stage,
                       int progress, int64_t lease_until, int64_t now);
/* Renews the lease only (no event). */
int store_gen_renew(store_t *s, const char *gen_id, const char *worker_id, int64_t lease_until);
/* Graceful shutdown: hands the worker's leased generations back to the
 * queue (stage queued, no retry counted), one transaction each. */
int store_gen_release(store_t *s, const char *worker_id, int64_t now);

/* A generation found by a sweep query. */
typedef struct store_gen_ref {
    char id[ID_LEN];
    int retry_count;
} store_gen_ref;

/* Processing generations whose lease expired before `before`, at most
 * limit. *out new array (caller frees). */
int store_gen_expired_leases(store_t *s, int64_t before, int limit, store_gen_ref **out, size_t *n);
/* Pending generations created before `before`, at most limit. */
int store_gen_pending_before(store_t *s, int64_t before, int limit, store_gen_ref **out, size_t *n);
/* The earliest retry time among queued generations, or 0 when none waits
 * for a retry (lets workers sleep exactly). */
int store_gen_next_retry_at(store_t *s, int64_t *at);

/* Deletes idempotency keys stored before idem_before and sessions that
 * expired before sessions_before. Cheap when there is nothing to delete. */
int store_purge(store_t *s, int64_t idem_before, int64_t sessions_before);

/* ---- events ---- */

typedef struct store_event {
    int64_t id;
    char type[16];              /* "generation" | "balance" */
    char generation_id[ID_LEN]; /* "" for balance events */
    char *data;                 /* JSON text from the codec */
    int queue_position;         /* generation: the queuePosition in data, 0 when none */
    bool terminal;              /* generation: data's status is terminal */
} store_event;

void store_events_free(store_event *ev, size_t n);
/* The user's events with id > after_id, oldest first, at most limit;
 * only those of one generation when generation_id is not NULL (balance
 * events are then skipped). *out new array. Ids of one user's events are
 * handed out in commit order, so a reader that has seen id N never misses
 * a later-committed event of that user with an id below N. */
int store_events_after(store_t *s, const char *user_id, const char *generation_id, int64_t after_id,
                       int limit, store_event **out, size_t *n);
/* The newest event of one generation (its data is the current record).
 * The caller frees out->data. */
int store_events_latest(store_t *s, const char *generation_id, store_event *out);
/* The newest event id overall (0 when none). */
int store_events_last_id(store_t *s, int64_t *id);

/* ---- outbound webhooks (SPEC §8) ----
 * The store keeps endpoints, each with a cursor into events (the newest
 * event id it has processed), and deliveries with the exact body to send.
 * Which events become deliveries, the body, the retry schedule and the
 * signature are webhook.c's; the store only makes each step atomic. */

typedef struct store_webhook {
    char id[ID_LEN];
    char user_id[ID_LEN];
    char *url;         /* owned */
    char *events;      /* owned: the subscribed types, comma-separated */
    char *description; /* owned; "" when none */
    char *secret;      /* owned; set only by store_webhook_pending (for signing) */
    int64_t created_at;
} store_webhook;

/* Frees the strings of n records, then the array (NULL is fine). */
void store_webhooks_free(store_webhook *w, size_t n);
/* Inserts *w (id, user_id, url, events, description, secret, created_at)
 * with its cursor at the user's newest event: it receives only events
 * committed after it. STORE_ENOTFOUND when the user does not exist. */
int store_webhook_create(store_t *s, const store_webhook *w);
/* The user's webhooks, newest first, without secrets. *out new array
 * (store_webhooks_free). */
int store_webhook_list(store_t *s, const char *user_id, store_webhook **out, size_t *n);
/* One webhook of any user (the caller checks user_id), without its
 * secret; free its strings with store_webhook_clear. STORE_ENOTFOUND. */
int store_webhook_get(store_t *s, const char *webhook_id, store_webhook *out);
/* Frees the strings of one record filled by store_webhook_get. */
void store_webhook_clear(store_webhook *w);
/* Deletes one of the user's webhooks and its deliveries. STORE_ENOTFOUND
 * when absent or not theirs. */
int store_webhook_delete(store_t *s, const char *user_id, const char *webhook_id);

/* An event a webhook has not processed yet. */
typedef struct store_webhook_event {
    char webhook_id[ID_LEN];
    char *events;       /* owned: the webhook's subscribed types */
    store_event ev;     /* the event (ev.data owned) */
    int64_t created_at; /* the event's time */
    char *prev_data;    /* owned: data of the same generation's previous
                         * event, NULL when none (or for balance events) */
} store_webhook_event;

void store_webhook_events_free(store_webhook_event *e, size_t n);
/* Events past each webhook's cursor, of that webhook's user, in event id
 * order, at most limit (webhook, event) pairs. For every webhook the pairs
 * returned are a prefix of what it has still to process: ids of one user
 * are handed out in commit order (store_events_after), so moving its cursor
 * to the last id returned for it never skips an event, on either backend.
 * *out new array (store_webhook_events_free). */
int store_webhook_pending(store_t *s, int limit, store_webhook_event **out, size_t *n);

/* A delivery to create. */
typedef struct store_delivery_new {
    const char *id; /* msg_... */
    int64_t event_id;
    const char *type;    /* e.g. "generation.completed" */
    const char *payload; /* the exact body to send */
} store_delivery_new;

/* One transaction: inserts the webhook's deliveries, pending and due at
 * now (a (webhook, event) pair that exists already is skipped), and moves
 * its cursor to cursor (never backwards). STORE_ENOTFOUND when the webhook
 * is gone (nothing written). */
int store_webhook_advance(store_t *s, const char *webhook_id, int64_t cursor,
                          const store_delivery_new *d, size_t n, int64_t now);

typedef struct store_delivery {
    char id[ID_LEN]; /* msg_... (the webhook-id header) */
    char webhook_id[ID_LEN];
    int64_t event_id;
    char type[40];
    char status[12];         /* pending | succeeded | failed */
    int attempts;            /* all attempts made */
    int tries;               /* attempts since created or last redelivered */
    int last_status_code;    /* 0 when none (or no HTTP answer) */
    int64_t next_attempt_at; /* 0 when none (succeeded, failed) */
    int64_t created_at;
    int64_t updated_at;
    /* Set by store_delivery_claim only (owned; NULL otherwise): */
    char *payload;
    char *url;
    char *secret;
} store_delivery;

void store_deliveries_free(store_delivery *d, size_t n);
/* Claims up to limit pending deliveries due at now (next_attempt_at <=
 * now) that nobody holds (no lease, or one that ran out), oldest due
 * first, leasing them to `lease` until now + lease_ms. On PostgreSQL rows
 * locked by another claimer are skipped (FOR UPDATE SKIP LOCKED), so two
 * processes never claim one attempt. *out new array with payload, url and
 * secret (store_deliveries_free). */
int store_delivery_claim(store_t *s, const char *lease, int64_t now, int64_t lease_ms, int limit,
                         store_delivery **out, size_t *n);

/* The outcome of one attempt, decided by the caller. */
typedef struct store_attempt {
    const char *status;      /* pending (retry at next_attempt_at) | succeeded | failed */
    int status_code;         /* HTTP status, 0 when none */
    int64_t next_attempt_at; /* for pending */
    int64_t now;
} store_attempt;

/* Records an attempt of a delivery still leased to `lease`: attempts and
 * tries + 1, the outcome, lease cleared. STORE_ECONFLICT when the lease
 * was lost (a redeliver, or it ran out and another claimed it);
 * STORE_ENOTFOUND when the delivery is gone. */
int store_delivery_record(store_t *s, const char *delivery_id, const char *lease,
                          const store_attempt *a);
/* A webhook's deliveries newest first (cursor: NULL or a previous
 * *next_cursor, a delivery id). Without payload/url/secret. */
int store_delivery_list(store_t *s, const char *webhook_id, const char *cursor, int limit,
                        store_delivery **out, size_t *n, char **next_cursor);
/* Makes a delivery of that webhook pending and due now, tries 0, lease
 * cleared; same id and payload. *out (may be NULL) gets it afterwards.
 * STORE_ENOTFOUND. */
int store_delivery_redeliver(store_t *s, const char *webhook_id, const char *delivery_id,
                             int64_t now, store_delivery *out);
/* The earliest time a pending delivery becomes claimable (its
 * next_attempt_at, or its lease's end when leased), 0 when none. */
int store_delivery_next_due(store_t *s, int64_t *at);

/* Events retention: deletes up to limit events created before `before`
 * that every webhook of their user has processed, keeping each
 * generation's newest event (its current record, for streams). *deleted
 * gets the count. */
int store_events_prune(store_t *s, int64_t before, int limit, int64_t *deleted);

/* ---- plans (SPEC §4) ----
 * Sets the user's plan ("free" | "pro"; the caller validates it) and, when
 * out is not NULL, reads the user back in the same transaction.
 * STORE_ENOTFOUND when there is no such user. */
int store_user_set_plan(store_t *s, const char *user_id, const char *plan, user_record *out);

/* ---- templates (SPEC §4) ----
 * Saved create bodies per user. The store keeps the body as JSON text and
 * never looks inside; validation is the caller's. */

typedef struct store_template {
    char id[ID_LEN]; /* tpl_... */
    char user_id[ID_LEN];
    char *name; /* owned */
    char *body; /* owned: JSON text */
    int64_t created_at;
    int64_t updated_at;
} store_template;

/* Frees the strings of one record / of n records and the array (NULL ok). */
void store_template_clear(store_template *t);
void store_templates_free(store_template *t, size_t n);
/* Inserts *t (all fields) unless the user has max_per_user templates
 * already (STORE_ECONFLICT, nothing written). STORE_ENOTFOUND when the
 * user does not exist. */
int store_template_create(store_t *s, const store_template *t, int max_per_user);
/* One template of any user (the caller checks user_id). STORE_ENOTFOUND. */
int store_template_get(store_t *s, const char *template_id, store_template *out);
/* The user's templates newest first (cursor: NULL or a previous
 * *next_cursor, a template id). *out new array (store_templates_free);
 * *next_cursor (caller frees) NULL on the last page. */
int store_template_list(store_t *s, const char *user_id, const char *cursor, int limit,
                        store_template **out, size_t *n, char **next_cursor);
/* Replaces name and body of one of the user's templates, updated_at = now;
 * *out (may be NULL) gets it afterwards. STORE_ENOTFOUND when absent or
 * not theirs. */
int store_template_update(store_t *s, const char *user_id, const char *template_id,
                          const char *name, const char *body, int64_t now, store_template *out);
/* Deletes one of the user's templates. STORE_ENOTFOUND when absent or not
 * theirs. */
int store_template_delete(store_t *s, const char *user_id, const char *template_id);

/* ---- rate limits (ratelimit.c; SPEC §4) ----
 * A token bucket per key; ratelimit.c does the arithmetic, the store makes
 * each read-modify-write atomic across threads and processes. */

typedef struct store_bucket {
    double tokens;      /* units left at updated_at */
    int64_t updated_at; /* ms; 0: no row yet (ratelimit.c reads it as full) */
} store_bucket;

/* Changes *b in place (pure, quick: it runs inside the transaction);
 * returns true to write it back, false to leave the row as it is. */
typedef bool (*store_bucket_fn)(store_bucket *b, void *ctx);
/* One transaction holding the bucket's row (SQLite: the write
 * transaction; PostgreSQL: the row lock): reads bucket `key` (zeroed when
 * absent), runs fn on it, and stores what fn leaves when it says so.
 * Concurrent updates of one key, from any process, run one after another. */
int store_bucket_update(store_t *s, const char *key, store_bucket_fn fn, void *ctx);
/* Deletes at most limit buckets whose key starts with prefix (no LIKE
 * wildcards in it) and that were last written before `before` (ms);
 * *deleted gets how many. */
int store_buckets_prune(store_t *s, const char *prefix, int64_t before, int limit,
                        int64_t *deleted);
/* The idempotency check of store_gen_create alone, writing nothing (a
 * request refused by its rate limit may still be a replay): STORE_OK when
 * the key is unknown (or older than idem->not_before), STORE_EREPLAY with
 * *replay_response (caller frees) and *replay_status, or
 * STORE_EIDEM_MISMATCH. */
int store_idem_peek(store_t *s, const char *user_id, const store_idem *idem, char **replay_response,
                    int *replay_status);
/* ---- the fair queue (SPEC §4 "Priority", GET /api/queue) ---- */

/* store_gen_claim under the per-user running cap: the first ready queued
 * generation in claim order whose user has fewer than user_cap leased
 * (running) generations; only when no such user has ready work, the first
 * of anyone (a lone user may use every free slot). user_cap <= 0: no cap. */
int store_gen_claim_fair(store_t *s, const char *worker_id, int64_t now, int64_t lease_ms,
                         int user_cap, gen_record *out);

typedef struct store_queue_stats {
    int64_t depth;   /* queued: processing, stage queued, not leased */
    int64_t running; /* leased */
    int64_t workers; /* slots of the processes whose heartbeat is recent */
} store_queue_figures;
/* Counted on the partial indexes (no table scan). Processes whose
 * heartbeat is older than alive_after are not counted. */
int store_queue_stats(store_t *s, int64_t alive_after, store_queue_figures *out);
/* Records this process's worker slots at now; slots <= 0 removes its row. */
int store_queue_heartbeat(store_t *s, const char *process_id, int slots, int64_t now);

typedef struct store_queue_item {
    char id[ID_LEN];
    char model[48];
    int position; /* 1 = next, in priority/FIFO order */
} store_queue_item;
/* The user's queued generations in claim order, at most limit. *out new
 * array (caller frees). */
int store_queue_items(store_t *s, const char *user_id, int limit, store_queue_item **out,
                      size_t *n);

#endif
