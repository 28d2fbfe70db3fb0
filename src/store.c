/*
 * store — picks the store backend from the database URL and dispatches
 * every store.h call through its function table (store_impl.h):
 *   sqlite:PATH  (also sqlite://PATH)  → store_sqlite*.c
 *   postgres://… / postgresql://…      → store_pg*.c
 * It also holds what all backends share: the commit hook and the codec
 * that turns records into event data.
 */
#include "store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_impl.h"
#include "util.h"

int store_open(const char *url, const store_options *opt, store_t **out, char **err)
{
    *out = NULL;
    if (err) *err = NULL;
    if (!url || !*url) {
        if (err) *err = xstrdup("no database URL given (expected sqlite:PATH or postgres://...)");
        return STORE_ERR;
    }
    if (str_has_prefix(url, "sqlite:")) {
        const char *path = url + 7;
        if (str_has_prefix(path, "//")) path += 2; /* sqlite:///abs/file.db */
        return store_sqlite_open(path, opt, out, err);
    }
    if (str_has_prefix(url, "postgres://") || str_has_prefix(url, "postgresql://"))
        return store_pg_open(url, opt, out, err);
    if (err) *err = xstrdup("unsupported database URL: expected sqlite:PATH or postgres://...");
    return STORE_ERR;
}

/* ---- the shared head ---- */

void store_base_init(store_t *s, const store_ops *ops, const store_codec *codec)
{
    s->ops = ops;
    s->codec = codec;
    pthread_mutex_init(&s->hook_mu, NULL);
}

void store_base_destroy(store_t *s)
{
    pthread_mutex_destroy(&s->hook_mu);
}

void store_set_commit_hook(store_t *s, store_commit_hook fn, void *ctx)
{
    pthread_mutex_lock(&s->hook_mu);
    s->hook = fn;
    s->hook_ctx = ctx;
    pthread_mutex_unlock(&s->hook_mu);
}

void store_base_committed(store_t *s, int64_t last_event_id, const char *user_id, bool queue)
{
    if (last_event_id <= 0) return;
    pthread_mutex_lock(&s->hook_mu);
    store_commit_hook fn = s->hook;
    void *ctx = s->hook_ctx;
    pthread_mutex_unlock(&s->hook_mu);
    if (fn) fn(last_event_id, user_id, queue, ctx);
}

/* ---- deferred durability (store.h) ----
 * A pending write is finished by two parties in either order: the backend
 * (store_base_durable, when its batch ends) and the caller
 * (store_when_durable, which says what to call). Whichever comes second
 * fires it. */

enum {
    PENDING_CAUGHT = 1, /* a commit was deferred into it */
    PENDING_DONE = 2,   /* its batch ended: durable says how */
    PENDING_ARMED = 4,  /* fn and arg are set */
};

static _Thread_local store_pending *deferring; /* this thread's open bracket */

store_pending *store_defer(store_t *s)
{
    store_pending *p = xcalloc(1, sizeof *p);
    p->s = s;
    atomic_init(&p->state, 0);
    deferring = p;
    return p;
}

void store_defer_stop(store_pending *p)
{
    if (deferring == p) deferring = NULL;
}

store_pending *store_base_deferring(store_t *s)
{
    store_pending *p = deferring;
    return p && p->s == s && !(atomic_load(&p->state) & PENDING_CAUGHT) ? p : NULL;
}

void store_base_caught(store_pending *p, int64_t last_event_id, const char *user_id, bool queue)
{
    p->last_event = last_event_id;
    p->queue = queue;
    snprintf(p->event_user, sizeof p->event_user, "%s", user_id ? user_id : "");
    atomic_fetch_or(&p->state, PENDING_CAUGHT);
}

static void pending_fire(store_pending *p, bool durable)
{
    if (durable)
        store_base_committed(p->s, p->last_event, p->event_user[0] ? p->event_user : NULL,
                             p->queue);
    p->fn(p->arg, durable);
    free(p);
}

void store_base_durable(store_pending *p, bool durable)
{
    p->durable = durable;
    if (atomic_fetch_or(&p->state, PENDING_DONE) & PENDING_ARMED) pending_fire(p, durable);
}

void store_durable_ignored(void *arg, bool durable)
{
    (void)arg;
    (void)durable;
}

void store_when_durable(store_pending *p, store_durable_fn fn, void *arg)
{
    store_defer_stop(p);
    p->fn = fn;
    p->arg = arg;
    int was = atomic_fetch_or(&p->state, PENDING_ARMED);
    if (!(was & PENDING_CAUGHT))
        pending_fire(p, true); /* nothing was deferred: what was written is durable */
    else if (was & PENDING_DONE)
        pending_fire(p, p->durable);
}

char *store_base_gen_json(store_t *s, const gen_record *g)
{
    char *j = s->codec && s->codec->generation ? s->codec->generation(g) : NULL;
    return j ? j : xstrdup("{}");
}

char *store_base_pending_gen_json(store_t *s, const gen_record *g, int64_t now)
{
    gen_record r = *g; /* shallow: borrows g's arrays and strings */
    json_t *empty = json_array();
    r.status = GEN_PENDING;
    if (!r.product_images) r.product_images = empty;
    if (!r.model_images) r.model_images = empty;
    r.result_images = empty;
    if (!r.prompt) r.prompt = "";
    r.retry_count = 0;
    r.progress = 0;
    snprintf(r.stage, sizeof r.stage, "%s", "pending");
    r.created_at = now;
    r.started_at = r.completed_at = r.processing_time = 0;
    r.error = NULL;
    r.error_code[0] = '\0';
    r.queue_position = 0;
    char *data = store_base_gen_json(s, &r);
    json_decref(empty);
    return data;
}

void store_base_gen_prepare(store_t *s, const gen_record *g)
{
    if (s->codec && s->codec->prepare) s->codec->prepare(g);
}

char *store_base_balance_json(store_t *s, int64_t token_balance)
{
    char *j = s->codec && s->codec->balance ? s->codec->balance(token_balance) : NULL;
    return j ? j : xstrdup("{}");
}

json_t *store_base_json_array(const char *text)
{
    json_t *a = text ? json_loads(text, 0, NULL) : NULL;
    if (!json_is_array(a)) {
        json_decref(a);
        a = json_array();
    }
    return a;
}

char *store_base_json_array_text(const json_t *a)
{
    char *text = a ? json_dumps(a, JSON_COMPACT) : NULL;
    char *out = xstrdup(text ? text : "[]");
    free(text);
    return out;
}

char *store_base_gen_ids_json(const gen_record *gens, size_t n)
{
    json_t *ids = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(ids, json_string(gens[i].id));
    char *text = store_base_json_array_text(ids);
    json_decref(ids);
    return text;
}

/* ---- dispatch ---- */

void store_close(store_t *s)
{
    if (s) s->ops->close(s);
}

int store_migrate(store_t *s)
{
    return s->ops->migrate(s);
}

int store_ping(store_t *s)
{
    return s->ops->ping(s);
}

bool store_shared(store_t *s, uint64_t *visits)
{
    return !s->ops->shared || s->ops->shared(s, visits);
}

const char *store_backend(const store_t *s)
{
    return s->ops->name;
}

int store_user_create(store_t *s, const user_record *u, const char *password_hash, int64_t grant)
{
    return s->ops->user_create(s, u, password_hash, grant);
}

int store_user_get(store_t *s, const char *user_id, user_record *out)
{
    return s->ops->user_get(s, user_id, out);
}

int store_user_by_email(store_t *s, const char *email, user_record *out, char **password_hash)
{
    return s->ops->user_by_email(s, email, out, password_hash);
}

int store_user_list(store_t *s, user_record **out, size_t *n)
{
    return s->ops->user_list(s, out, n);
}

int store_user_credit(store_t *s, const char *user_id, int64_t amount, const char *kind,
                      const char *reason, int64_t *balance_out)
{
    return s->ops->user_credit(s, user_id, amount, kind, reason, balance_out);
}

int store_user_stats(store_t *s, const char *user_id, int64_t month_start, user_stats *out)
{
    return s->ops->user_stats(s, user_id, month_start, out);
}

int store_key_create(store_t *s, const char *key_id, const char *user_id, const char *name,
                     const char *key_hash, const char *hint, int64_t now)
{
    return s->ops->key_create(s, key_id, user_id, name, key_hash, hint, now);
}

int store_key_list(store_t *s, const char *user_id, store_key_row **out, size_t *n)
{
    return s->ops->key_list(s, user_id, out, n);
}

int store_key_delete(store_t *s, const char *user_id, const char *key_id, int64_t now)
{
    return s->ops->key_delete(s, user_id, key_id, now);
}

int store_key_get(store_t *s, const char *key_hash, user_record *out, int64_t *last_used_at)
{
    return s->ops->key_get(s, key_hash, out, last_used_at);
}

int store_key_touch(store_t *s, const char *key_hash, int64_t now)
{
    return s->ops->key_touch(s, key_hash, now);
}

int store_session_create(store_t *s, const char *token_hash, const char *user_id, int64_t now,
                         int64_t expires_at)
{
    return s->ops->session_create(s, token_hash, user_id, now, expires_at);
}

int store_session_get(store_t *s, const char *token_hash, user_record *out, int64_t *expires_at)
{
    return s->ops->session_get(s, token_hash, out, expires_at);
}

int store_session_delete(store_t *s, const char *token_hash)
{
    return s->ops->session_delete(s, token_hash);
}

void store_ledger_rows_free(store_ledger_row *rows, size_t n)
{
    if (!rows) return;
    for (size_t i = 0; i < n; i++)
        free(rows[i].reason);
    free(rows);
}

int store_ledger_list(store_t *s, const char *user_id, const char *cursor, int limit,
                      store_ledger_row **out, size_t *n, char **next_cursor)
{
    return s->ops->ledger_list(s, user_id, cursor, limit, out, n, next_cursor);
}

int store_ledger_totals(store_t *s, int64_t *charged, int64_t *refunded)
{
    return s->ops->ledger_totals(s, charged, refunded);
}

int store_gen_create(store_t *s, const gen_record *g, bool start, const store_idem *idem,
                     char **replay_response, int *replay_status)
{
    return s->ops->gen_create(s, g, 1, start, idem, replay_response, replay_status);
}

int store_gen_create_many(store_t *s, const gen_record *gens, size_t n, bool start,
                          const store_idem *idem, char **replay_response, int *replay_status)
{
    if (n == 0) return STORE_ERR;
    return s->ops->gen_create(s, gens, n, start, idem, replay_response, replay_status);
}

void store_batch_free(store_batch *b)
{
    if (!b) return;
    json_decref(b->generation_ids);
    memset(b, 0, sizeof *b);
}

int store_batch_get(store_t *s, const char *batch_id, store_batch *out)
{
    memset(out, 0, sizeof *out);
    return s->ops->batch_get(s, batch_id, out);
}

int store_gen_get(store_t *s, const char *gen_id, gen_record *out)
{
    return s->ops->gen_get(s, gen_id, 0, out);
}

int store_gen_get_at(store_t *s, const char *gen_id, int position, gen_record *out)
{
    return s->ops->gen_get(s, gen_id, position, out);
}

int store_gen_list(store_t *s, const char *user_id, int status_filter, const char *cursor,
                   int limit, gen_record **out, size_t *n, char **next_cursor)
{
    return s->ops->gen_list(s, user_id, status_filter, cursor, limit, out, n, next_cursor);
}

int store_gen_delete(store_t *s, const char *gen_id, unsigned from, json_t **result_images)
{
    return s->ops->gen_delete(s, gen_id, from, result_images);
}

int store_gen_counts(store_t *s, int64_t by_status[GEN_STATUS_COUNT], int64_t *queued)
{
    return s->ops->gen_counts(s, by_status, queued);
}

int store_gen_start(store_t *s, const char *gen_id, int64_t now)
{
    return s->ops->gen_start(s, gen_id, now);
}

int store_gen_end(store_t *s, const store_end *e)
{
    return s->ops->gen_end(s, e);
}

int store_gen_complete(store_t *s, const char *gen_id, const char *worker_id,
                       const json_t *result_images, int64_t now)
{
    return s->ops->gen_complete(s, gen_id, worker_id, result_images, now);
}

int store_gen_requeue(store_t *s, const char *gen_id, const store_guard *guard, int retry_count,
                      const char *error, int64_t not_before, int64_t now)
{
    return s->ops->gen_requeue(s, gen_id, guard, retry_count, error, not_before, now);
}

int store_gen_claim(store_t *s, const char *worker_id, int64_t now, int64_t lease_ms,
                    gen_record *out)
{
    return s->ops->gen_claim(s, worker_id, now, lease_ms, out);
}

int store_gen_progress(store_t *s, const char *gen_id, const char *worker_id, const char *stage,
                       int progress, int64_t lease_until, int64_t now)
{
    return s->ops->gen_progress(s, gen_id, worker_id, stage, progress, lease_until, now);
}

int store_gen_renew(store_t *s, const char *gen_id, const char *worker_id, int64_t lease_until)
{
    return s->ops->gen_renew(s, gen_id, worker_id, lease_until);
}

int store_gen_release(store_t *s, const char *worker_id, int64_t now)
{
    return s->ops->gen_release(s, worker_id, now);
}

int store_gen_expired_leases(store_t *s, int64_t before, int limit, store_gen_ref **out, size_t *n)
{
    return s->ops->gen_expired_leases(s, before, limit, out, n);
}

int store_gen_pending_before(store_t *s, int64_t before, int limit, store_gen_ref **out, size_t *n)
{
    return s->ops->gen_pending_before(s, before, limit, out, n);
}

int store_gen_next_retry_at(store_t *s, int64_t *at)
{
    return s->ops->gen_next_retry_at(s, at);
}

int store_purge(store_t *s, int64_t idem_before, int64_t sessions_before)
{
    return s->ops->purge(s, idem_before, sessions_before);
}

void store_events_free(store_event *ev, size_t n)
{
    if (!ev) return;
    for (size_t i = 0; i < n; i++)
        free(ev[i].data);
    free(ev);
}

int store_events_after(store_t *s, const char *user_id, const char *generation_id, int64_t after_id,
                       int limit, store_event **out, size_t *n)
{
    return s->ops->events_after(s, user_id, generation_id, after_id, limit, out, n);
}

int store_events_latest(store_t *s, const char *generation_id, store_event *out)
{
    return s->ops->events_latest(s, generation_id, out);
}

int store_events_last_id(store_t *s, int64_t *id)
{
    return s->ops->events_last_id(s, id);
}

/* ---- outbound webhooks ---- */

void store_webhook_clear(store_webhook *w)
{
    if (!w) return;
    free(w->url);
    free(w->events);
    free(w->description);
    free(w->secret);
    w->url = w->events = w->description = w->secret = NULL;
}

void store_webhooks_free(store_webhook *w, size_t n)
{
    if (!w) return;
    for (size_t i = 0; i < n; i++)
        store_webhook_clear(&w[i]);
    free(w);
}

void store_webhook_events_free(store_webhook_event *e, size_t n)
{
    if (!e) return;
    for (size_t i = 0; i < n; i++) {
        free(e[i].events);
        free(e[i].ev.data);
        free(e[i].prev_data);
    }
    free(e);
}

void store_deliveries_free(store_delivery *d, size_t n)
{
    if (!d) return;
    for (size_t i = 0; i < n; i++) {
        free(d[i].payload);
        free(d[i].url);
        free(d[i].secret);
    }
    free(d);
}

int store_webhook_create(store_t *s, const store_webhook *w)
{
    return s->ops->webhook_create(s, w);
}

int store_webhook_list(store_t *s, const char *user_id, store_webhook **out, size_t *n)
{
    return s->ops->webhook_list(s, user_id, out, n);
}

int store_webhook_get(store_t *s, const char *webhook_id, store_webhook *out)
{
    return s->ops->webhook_get(s, webhook_id, out);
}

int store_webhook_delete(store_t *s, const char *user_id, const char *webhook_id)
{
    return s->ops->webhook_delete(s, user_id, webhook_id);
}

int store_webhook_pending(store_t *s, int limit, store_webhook_event **out, size_t *n)
{
    return s->ops->webhook_pending(s, limit, out, n);
}

int store_webhook_advance(store_t *s, const char *webhook_id, int64_t cursor,
                          const store_delivery_new *d, size_t n, int64_t now)
{
    return s->ops->webhook_advance(s, webhook_id, cursor, d, n, now);
}

int store_delivery_claim(store_t *s, const char *lease, int64_t now, int64_t lease_ms, int limit,
                         store_delivery **out, size_t *n)
{
    return s->ops->delivery_claim(s, lease, now, lease_ms, limit, out, n);
}

int store_delivery_record(store_t *s, const char *delivery_id, const char *lease,
                          const store_attempt *a)
{
    return s->ops->delivery_record(s, delivery_id, lease, a);
}

int store_delivery_list(store_t *s, const char *webhook_id, const char *cursor, int limit,
                        store_delivery **out, size_t *n, char **next_cursor)
{
    return s->ops->delivery_list(s, webhook_id, cursor, limit, out, n, next_cursor);
}

int store_delivery_redeliver(store_t *s, const char *webhook_id, const char *delivery_id,
                             int64_t now, store_delivery *out)
{
    return s->ops->delivery_redeliver(s, webhook_id, delivery_id, now, out);
}

int store_delivery_next_due(store_t *s, int64_t *at)
{
    return s->ops->delivery_next_due(s, at);
}

int store_events_prune(store_t *s, int64_t before, int limit, int64_t *deleted)
{
    return s->ops->events_prune(s, before, limit, deleted);
}

/* ---- plans ---- */

int store_user_set_plan(store_t *s, const char *user_id, const char *plan, user_record *out)
{
    return s->ops->user_set_plan(s, user_id, plan, out);
}

/* ---- templates ---- */

void store_template_clear(store_template *t)
{
    if (!t) return;
    free(t->name);
    free(t->body);
    t->name = t->body = NULL;
}

void store_templates_free(store_template *t, size_t n)
{
    for (size_t i = 0; t && i < n; i++)
        store_template_clear(&t[i]);
    free(t);
}

int store_template_create(store_t *s, const store_template *t, int max_per_user)
{
    return s->ops->template_create(s, t, max_per_user);
}

int store_template_get(store_t *s, const char *template_id, store_template *out)
{
    return s->ops->template_get(s, template_id, out);
}

int store_template_list(store_t *s, const char *user_id, const char *cursor, int limit,
                        store_template **out, size_t *n, char **next_cursor)
{
    return s->ops->template_list(s, user_id, cursor, limit, out, n, next_cursor);
}

int store_template_update(store_t *s, const char *user_id, const char *template_id,
                          const char *name, const char *body, int64_t now, store_template *out)
{
    return s->ops->template_update(s, user_id, template_id, name, body, now, out);
}

int store_template_delete(store_t *s, const char *user_id, const char *template_id)
{
    return s->ops->template_delete(s, user_id, template_id);
}

/* ---- rate limits ---- */

int store_bucket_update(store_t *s, const char *key, store_bucket_fn fn, void *ctx)
{
    return s->ops->bucket_update(s, key, fn, ctx);
}

int store_buckets_prune(store_t *s, const char *prefix, int64_t before, int limit, int64_t *deleted)
{
    *deleted = 0;
    return s->ops->buckets_prune(s, prefix, before, limit, deleted);
}

int store_idem_peek(store_t *s, const char *user_id, const store_idem *idem, char **replay_response,
                    int *replay_status)
{
    return s->ops->idem_peek(s, user_id, idem, replay_response, replay_status);
}

/* ---- the fair queue ---- */

int store_gen_claim_fair(store_t *s, const char *worker_id, int64_t now, int64_t lease_ms,
                         int user_cap, gen_record *out)
{
    return s->ops->gen_claim_fair(s, worker_id, now, lease_ms, user_cap, out);
}

int store_queue_stats(store_t *s, int64_t alive_after, store_queue_figures *out)
{
    return s->ops->queue_stats(s, alive_after, out);
}

int store_queue_heartbeat(store_t *s, const char *process_id, int slots, int64_t now)
{
    return s->ops->queue_heartbeat(s, process_id, slots, now);
}

int store_queue_items(store_t *s, const char *user_id, int limit, store_queue_item **out, size_t *n)
{
    return s->ops->queue_items(s, user_id, limit, out, n);
}
