/*
 * queue — the generation workers. A worker claims a queued generation from
 * the store under a lease, fetches its input images (stage fetching_inputs),
 * runs the model's provider (stage generating), stores the result images
 * (stage storing) and records the outcome: completed; a transient failure
 * goes back to the queue after an exponential backoff with jitter, or fails
 * with a refund once the retries are used up; a permanent failure fails at
 * once with a refund. (Test faults are a provider of their own,
 * provider_faults.c, which provider_for() puts around the real one.)
 *
 * DESIGN. One mutex (q.mu) guards the in-flight table (a list of jobs), the
 * completion list, the syncer's list and the counters of busy slots; three
 * condition variables hang off it: work_cond wakes workers (queue_notify, a
 * completion from a provider thread, shutdown), idle_cond tells queue_stop
 * a slot was freed and sync_cond wakes the syncer. Completion is driven by
 * the provider's on_done: it only records the outcome in the job and
 * appends the job to the completion list; the store writes, result files
 * and freeing happen on a worker thread that pops the list (job_finish).
 * The local provider calls on_done inside start(), so its worker pops its
 * own job right after start returns; a remote provider calls on_done later
 * from its transfer thread (the net loop) while the worker goes on
 * claiming — the table, not the thread, holds the job, so a few threads
 * carry many remote jobs.
 *
 * Bounds: q.max_inflight claims at once = the worker threads (a local
 * render holds its thread) plus, per remote provider that can run, its
 * slot: the catalogue's maxInFlight. A claimed remote job over its
 * provider's bound is parked (leased, in the table, FIFO on its slot) and
 * started by the worker that finishes a job of that provider.
 *
 * Jobs are reference-counted: the table holds one reference; queue_cancel
 * and the housekeeping thread take a short one so they can act on a job
 * without holding q.mu. A per-job lock orders "the provider was started"
 * against provider_cancel, so cancel is never called before the job enters
 * the provider nor after its on_done; it is never held together with q.mu.
 * Progress is written under the job's progress_mu by the worker running
 * it; a provider reporting from its own thread only raises want_progress,
 * which the housekeeper writes every PROGRESS_FLUSH_MS (so the net loop
 * never waits on the store).
 *
 * The housekeeping thread renews every in-flight lease each lease/3
 * (a lost lease cancels the job) and once a second runs store_gen_sweep,
 * which returns expired leases of crashed processes to the queue and
 * expires stale pending records; with it, the heartbeat (queue_workers:
 * this process's worker threads) and a read of the live slots for the ETA.
 *
 * Fairness is the store's: store_gen_claim_fair takes cfg.user_running_cap
 * and decides inside the claim transaction (SPEC §4 Priority).
 *
 * A worker never waits for the disk: its claim and progress writes are
 * deferred (store_defer) — it goes on at once, and their events (what a
 * user sees) are announced only when the group commit holding them is
 * durable. A completion must not be recorded before its result files are
 * on disk, and one fsync per file per generation would cost more than the
 * generation: the worker writes the files without an fsync and pushes a
 * completion onto q.sync_head; the syncer thread takes all that have
 * gathered, puts them on disk with one syncfs, then records them
 * (deferred). A completion is counted and logged when its commit is
 * durable; its result files are deleted if the commit fails, and if the
 * syncfs fails nothing is recorded — the leases expire and the sweep
 * retries the generations.
 */
#include "queue.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "gen_state.h"
#include "ids.h"
#include "log.h"
#include "media.h"
#include "net.h"
#include "provider.h"
#include "util.h"

#define PROGRESS_FETCH_START 5
#define PROGRESS_FETCH_END 15
#define PROGRESS_GENERATE_END 90
#define PROGRESS_STORING 92
#define PROGRESS_THROTTLE_MS 150
#define PROGRESS_FLUSH_MS 250 /* remote providers' progress is written this often at most */
#define IDLE_WAIT_MAX_MS 1000 /* while another process may queue work */
#define WAIT_FOREVER INT64_MAX
#define SWEEP_EVERY_MS 1000
#define STORE_ERROR_PAUSE_MS 1000

enum job_phase { PHASE_PREP, PHASE_PROVIDER, PHASE_DONE };

/* Why a job was asked to stop: bits of job.stop_why. */
enum { STOP_USER = 1, STOP_LOST = 2, STOP_SHUTDOWN = 4 };

typedef struct job {
    struct job *next;      /* in-flight table, under q.mu */
    struct job *next_done; /* completion list, under q.mu */
    atomic_int refs;
    char worker_id[96]; /* the lease owner */
    gen_record gen;     /* owned */
    const model_info *model;
    const provider_ops *ops;
    provider_image *products; /* owned, n_products entries */
    size_t n_products;
    provider_image *models; /* owned, n_models entries */
    size_t n_models;
    struct input_fetch *fetches; /* remote inputs (old records only), n_fetches */
    size_t n_fetches;
    atomic_int fetch_pending;
    struct job *next_resume; /* resume list, under q.mu */
    provider_job pj;

    pthread_mutex_t lock; /* guards phase */
    int phase;            /* enum job_phase */
    atomic_int stop_why;

    /* A remote provider's slot: held from the call to the finish. */
    struct slot *slot;       /* NULL for local providers */
    bool holds_slot;         /* under q.mu */
    struct job *next_parked; /* waiting for a slot, under q.mu */
    bool parked;             /* under q.mu */

    /* Progress as last written, under progress_mu (the worker running the
     * job and the housekeeper's flush of remote progress both write). */
    pthread_mutex_t progress_mu;
    char stage[24];
    int progress;
    int64_t progress_at;      /* mono ms */
    atomic_int want_progress; /* reported from a provider's thread, not yet written */

    /* Outcome, written once by job_done before the job joins the list. */
    int result;
    provider_image *outputs; /* owned, n_outputs entries */
    size_t n_outputs;
    char *error;

    int64_t claimed_mono;
} job;

/* Remote calls in flight for one provider, bounded by the catalogue's
 * maxInFlight (SPEC §4): jobs over the bound wait, claimed and leased, in
 * FIFO order. */
typedef struct slot {
    const char *provider; /* the catalogue's string */
    int limit, used;
    struct job *parked_head, *parked_tail;
} slot;

#define MAX_SLOTS 8

typedef struct worker {
    pthread_t thread;
    bool created;
    int index;
    char id[96];
} worker;

static struct {
    pthread_mutex_t mu;
    pthread_cond_t work_cond;
    pthread_cond_t idle_cond;
    pthread_cond_t hk_cond;
    bool conds_ready;
    bool running;
    bool stopping; /* no more claims */
    bool aborting; /* grace is over: cancel whatever is still in flight */
    bool hk_stop;
    bool hk_created;
    uint64_t notify_seq;
    store_t *store;
    worker *workers;
    int n_workers;
    pthread_t hk_thread;
    job *inflight; /* the table */
    int n_inflight;
    int n_busy;     /* table entries + claims in progress, less n_fetching */
    int n_fetching; /* jobs waiting for remote inputs: in the table, holding no slot */
    int max_inflight;
    slot slots[MAX_SLOTS];
    int n_slots;
    job *done_head, *done_tail;
    job *resume_head, *resume_tail;           /* remote inputs in: continue on a worker */
    struct completion *sync_head, *sync_tail; /* results waiting for the syncer */
    pthread_cond_t sync_cond;
    bool sync_stop, sync_created;
    pthread_t sync_thread;
    char proc_id[96]; /* this process in the heartbeat table (queue_workers) */
    /* Another process may have the store open (store_shared, asked by
     * each sweep): only then do idle workers poll for its work. */
    atomic_bool shared;
    uint64_t visits; /* store_shared's cursor (the housekeeper's) */
} q = {.mu = PTHREAD_MUTEX_INITIALIZER, .shared = true};

static struct {
    _Atomic int64_t claimed, completed, failed, retried, cancelled, handed_back;
} st;

/* Set on worker threads, so on_done knows whether a worker will pop the
 * completion anyway or one has to be woken. */
static _Thread_local worker *tls_worker;

/* ---- small helpers ---- */

static int64_t lease_ms(void)
{
    return (int64_t)(cfg.lease_seconds > 0 ? cfg.lease_seconds : 30) * 1000;
}

/* Waits on c (q.mu held) for at most ms milliseconds (WAIT_FOREVER: until
 * signalled). */
static void cond_wait_ms(pthread_cond_t *c, int64_t ms)
{
    if (ms < 1) ms = 1;
    util_cond_wait_until(c, &q.mu, ms == WAIT_FOREVER ? WAIT_FOREVER : mono_ms() + ms);
}

static void images_free(provider_image *imgs, size_t n)
{
    if (!imgs) return;
    for (size_t i = 0; i < n; i++)
        provider_image_free(&imgs[i]);
    free(imgs);
}

static gen_retry_policy retry_policy(void)
{
    return (gen_retry_policy){
        .max_retries = cfg.max_retries,
        .base_ms = cfg.retry_base_ms,
        .rand_below = ids_random_below,
    };
}

/* Wakes the workers (q.mu held). */
static void wake_workers_locked(void)
{
    q.notify_seq++;
    pthread_cond_broadcast(&q.work_cond);
}

/* ---- jobs ---- */

static void job_unref(job *j)
{
    if (atomic_fetch_sub(&j->refs, 1) != 1) return;
    gen_record_free(&j->gen);
    images_free(j->products, j->n_products);
    images_free(j->models, j->n_models);
    images_free(j->outputs, j->n_outputs);
    free(j->fetches);
    free(j->error);
    pthread_mutex_destroy(&j->lock);
    pthread_mutex_destroy(&j->progress_mu);
    free(j);
}

/* Asks a job to stop for `why`: before the provider starts, the flag is
 * enough (the worker checks it); while it runs, provider_cancel. */
/* Takes a parked job off its slot's waiting list (q.mu held). */
static void unpark_locked(job *j)
{
    slot *sl = j->slot;
    job **pp = &sl->parked_head, *prev = NULL;
    while (*pp && *pp != j) {
        prev = *pp;
        pp = &(*pp)->next_parked;
    }
    if (!*pp) return;
    *pp = j->next_parked;
    if (sl->parked_tail == j) sl->parked_tail = prev;
    j->next_parked = NULL;
    j->parked = false;
}

static void job_done(job *j, int result, provider_image *outputs, size_t n_outputs,
                     const char *error);

static void job_cancel(job *j, int why)
{
    atomic_fetch_or(&j->stop_why, why);
    pthread_mutex_lock(&q.mu);
    bool was_parked = j->parked;
    if (was_parked) unpark_locked(j);
    pthread_mutex_unlock(&q.mu);
    if (was_parked) {
        /* It never reached its provider: it ends here. */
        atomic_store(&j->pj.cancel_requested, true);
        job_done(j, PROVIDER_CANCELLED, NULL, 0, "cancelled");
        return;
    }
    pthread_mutex_lock(&j->lock);
    if (j->phase == PHASE_PROVIDER)
        provider_cancel(j->ops, &j->pj);
    else
        atomic_store(&j->pj.cancel_requested, true);
    pthread_mutex_unlock(&j->lock);
}

static bool job_stopped(job *j)
{
    return atomic_load(&j->pj.cancel_requested) || atomic_load(&j->stop_why) != 0;
}

/* ---- writes that do not hold the worker until they are on disk ----
 * The claim, progress and the completion are deferred (store_defer): the
 * worker goes on at once, their events are announced once durable, and a
 * batch that fails loses them as a crash would — the lease then expires
 * and the sweep brings the generation back. */

static void durable_noted(void *arg, bool durable)
{
    (void)arg;
    if (!durable) log_warn("a worker's write was not kept (the disk failed); the sweep retries it");
}

static int claim_deferred(const char *worker_id, gen_record *g)
{
    store_pending *p = store_defer(q.store);
    int rc =
        store_gen_claim_fair(q.store, worker_id, now_ms(), lease_ms(), cfg.user_running_cap, g);
    store_defer_stop(p);
    store_when_durable(p, durable_noted, NULL);
    return rc;
}

static int progress_deferred(const job *j, const char *stage, int progress, int64_t now)
{
    store_pending *p = store_defer(q.store);
    int rc = store_gen_progress(q.store, j->gen.id, j->worker_id, stage, progress, now + lease_ms(),
                                now);
    store_defer_stop(p);
    store_when_durable(p, durable_noted, NULL);
    return rc;
}

/* ---- completions: result files made durable together ----
 * A finished job's result files are written without an fsync each and the
 * job is handed to the syncer thread as a completion; the worker goes on
 * at once. Each round, the syncer puts every file handed to it on disk with
 * one syncfs (media_sync_results), then records those completions
 * (deferred, as the worker's other writes), so a completed record never
 * names a file that is not on disk. A completion is counted and logged
 * once its commit is durable; its files are deleted when it is not kept.
 * When the files cannot be synced, nothing is recorded: the lease expires
 * and the sweep retries the generation, as after a crash. queue_stop
 * drains the syncer before it releases the workers' leases. */
typedef struct completion {
    struct completion *next; /* on the syncer's list, under q.mu */
    char gen_id[ID_LEN];
    char worker_id[96];
    char model[64];
    int64_t took_ms;
    size_t n_outputs;
    json_t *urls;
} completion;

static void completion_drop(completion *c)
{
    for (size_t k = 0; k < json_array_size(c->urls); k++)
        media_delete_url(json_string_value(json_array_get(c->urls, k)));
    json_decref(c->urls);
    free(c);
}

static void completion_durable(void *arg, bool durable)
{
    completion *c = arg;
    if (!durable) {
        log_error("generation %s: its completion was not kept (the disk failed); the sweep "
                  "retries it",
                  c->gen_id);
        completion_drop(c);
        return;
    }
    atomic_fetch_add(&st.completed, 1);
    queue_eta_record(c->model, c->took_ms);
    log_info("generation %s: completed in %lld ms (%zu image%s)", c->gen_id, (long long)c->took_ms,
             c->n_outputs, c->n_outputs == 1 ? "" : "s");
    json_decref(c->urls);
    free(c);
}

/* Records one completion whose files are on disk. */
static void completion_record(completion *c)
{
    store_pending *p = store_defer(q.store);
    int rc = gen_state_complete(q.store, c->gen_id, c->worker_id, c->urls, now_ms());
    store_defer_stop(p);
    if (rc == STORE_OK) {
        store_when_durable(p, completion_durable, c);
        return;
    }
    store_when_durable(p, durable_noted, NULL); /* nothing was written */
    if (rc == STORE_ECONFLICT) {
        atomic_fetch_add(&st.cancelled, 1);
        log_info("generation %s: cancelled or lease lost before completion; result dropped",
                 c->gen_id);
    } else {
        log_error("generation %s: could not record completion (store error %d)", c->gen_id, rc);
    }
    completion_drop(c);
}

static void completion_push(completion *c)
{
    pthread_mutex_lock(&q.mu);
    if (q.sync_tail)
        q.sync_tail->next = c;
    else
        q.sync_head = c;
    q.sync_tail = c;
    pthread_cond_signal(&q.sync_cond);
    pthread_mutex_unlock(&q.mu);
}

static void *syncer_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&q.mu);
    for (;;) {
        while (!q.sync_head && !q.sync_stop)
            pthread_cond_wait(&q.sync_cond, &q.mu);
        completion *round = q.sync_head;
        q.sync_head = q.sync_tail = NULL;
        if (!round) break; /* stopping, and drained */
        pthread_mutex_unlock(&q.mu);
        bool synced = media_sync_results() == 0;
        if (!synced)
            log_error("queue: result files could not be put on disk (%s); their generations are "
                      "retried when their leases expire",
                      strerror(errno));
        while (round) {
            completion *c = round;
            round = c->next;
            if (synced)
                completion_record(c);
            else
                completion_drop(c);
        }
        pthread_mutex_lock(&q.mu);
    }
    pthread_mutex_unlock(&q.mu);
    return NULL;
}

/* Writes stage/progress (which also renews the lease). Throttled to one
 * write per PROGRESS_THROTTLE_MS unless the stage changes or force. A
 * conflict means the generation was cancelled or the lease lost: the job
 * is then stopped and its result will be dropped. */
static void job_progress(job *j, const char *stage, int progress, bool force)
{
    if (atomic_load(&j->stop_why) & (STOP_LOST | STOP_USER)) return;
    pthread_mutex_lock(&j->progress_mu);
    if (progress < j->progress) progress = j->progress;
    if (progress > 100) progress = 100;
    bool stage_changed = strcmp(stage, j->stage) != 0;
    int64_t t = mono_ms();
    if (!force && !stage_changed &&
        (progress == j->progress || t - j->progress_at < PROGRESS_THROTTLE_MS))
        goto cleanup;
    int rc = progress_deferred(j, stage, progress, now_ms());
    if (rc == STORE_OK) {
        snprintf(j->stage, sizeof j->stage, "%s", stage);
        j->progress = progress;
        j->progress_at = t;
    } else if (rc == STORE_ECONFLICT) {
        log_info("generation %s: cancelled or lease lost; stopping its job", j->gen.id);
        atomic_fetch_or(&j->stop_why, STOP_LOST);
        /* We may be inside the provider's own callback: the flag stops it
         * without re-entering the provider. */
        atomic_store(&j->pj.cancel_requested, true);
    } else {
        log_warn("generation %s: could not write progress (store error %d)", j->gen.id, rc);
    }
cleanup:
    pthread_mutex_unlock(&j->progress_mu);
}

/* The housekeeper's half of remote progress: writes what a provider
 * reported from its own thread, while the job is still generating. */
static void job_flush_progress(job *j)
{
    int want = atomic_load(&j->want_progress);
    pthread_mutex_lock(&j->progress_mu);
    bool due = want > j->progress && strcmp(j->stage, STAGE_GENERATING) == 0;
    pthread_mutex_unlock(&j->progress_mu);
    if (due) job_progress(j, STAGE_GENERATING, want, true);
}

/* The outcome of a job, from the provider (on_done) or from the queue
 * itself (input errors, cancel before start). Takes ownership of
 * outputs; error is copied. Hands the job to the completion list. */
static void job_done(job *j, int result, provider_image *outputs, size_t n_outputs,
                     const char *error)
{
    pthread_mutex_lock(&j->lock);
    bool twice = j->phase == PHASE_DONE;
    j->phase = PHASE_DONE;
    pthread_mutex_unlock(&j->lock);
    if (twice) {
        log_error("generation %s: provider reported done twice; ignored", j->gen.id);
        images_free(outputs, n_outputs);
        return;
    }
    if (result == PROVIDER_OK && (!outputs || n_outputs == 0)) {
        images_free(outputs, n_outputs);
        outputs = NULL;
        n_outputs = 0;
        result = PROVIDER_MALFORMED;
        error = "the provider returned no image";
    }
    j->result = result;
    j->outputs = outputs;
    j->n_outputs = n_outputs;
    j->error = xstrdup(error && *error ? error : result == PROVIDER_OK ? NULL : "provider error");

    pthread_mutex_lock(&q.mu);
    j->next_done = NULL;
    if (q.done_tail)
        q.done_tail->next_done = j;
    else
        q.done_head = j;
    q.done_tail = j;
    /* On a worker thread the loop pops it next; from a provider thread
     * somebody has to be woken. */
    if (!tls_worker) pthread_cond_broadcast(&q.work_cond);
    pthread_mutex_unlock(&q.mu);
}

/* Hands a job whose remote inputs are in back to the workers (any thread). */
static void resume_push(job *j)
{
    pthread_mutex_lock(&q.mu);
    j->next_resume = NULL;
    if (q.resume_tail)
        q.resume_tail->next_resume = j;
    else
        q.resume_head = j;
    q.resume_tail = j;
    pthread_cond_broadcast(&q.work_cond);
    pthread_mutex_unlock(&q.mu);
}

static void pj_on_progress(provider_job *pj, int pct)
{
    job *j = pj->owner;
    if (pct < 0) pct = 0;
    if (pct > 100) pct = 100;
    int p = PROGRESS_FETCH_END + pct * (PROGRESS_GENERATE_END - PROGRESS_FETCH_END) / 100;
    if (tls_worker) {
        job_progress(j, STAGE_GENERATING, p, false);
        return;
    }
    /* A provider's own thread (the net loop) never writes the store: the
     * housekeeper writes it, a few times a second at most. */
    int cur = atomic_load(&j->want_progress);
    while (p > cur && !atomic_compare_exchange_weak(&j->want_progress, &cur, p)) {
    }
}

static void pj_on_done(provider_job *pj, int result, provider_image *outputs, size_t n_outputs,
                       const char *error)
{
    job_done(pj->owner, result, outputs, n_outputs, error);
}

/* A remote input being fetched: which job, which image. */
typedef struct input_fetch {
    job *j;
    const char *url; /* borrowed from the job's record */
    provider_image *dst;
    char label[32]; /* "product image 2" */
    int error;      /* NET_*, or NET_OK with status */
    long status;
    const char *reason;
} input_fetch;

static void resume_push(job *j);

/* The net loop's callback for one remote input: keeps the bytes (the
 * worker probes them on resume), and when it was the last one hands the
 * job back to the workers. */
static void on_input_fetched(net_request *r, net_response *resp, void *ctx)
{
    (void)r;
    input_fetch *f = ctx;
    f->error = resp->error;
    f->status = resp->status;
    f->reason = resp->reason;
    if (resp->error == NET_OK && resp->status >= 200 && resp->status < 300) {
        f->dst->data = (unsigned char *)resp->body.data;
        f->dst->len = resp->body.len;
        memset(&resp->body, 0, sizeof resp->body);
    }
    if (atomic_fetch_sub(&f->j->fetch_pending, 1) == 1) resume_push(f->j);
}

/* Ends the job for an input that cannot be used. Returns -1. */
static int input_failed(job *j, int result, const char *label, const char *reason)
{
    char *msg = xasprintf("%s: %s", label, reason);
    log_warn("generation %s: %s", j->gen.id, msg);
    job_done(j, result, NULL, 0, msg);
    free(msg);
    return -1;
}

/* Loads every product and model image: our own /media files from disk at
 * once; any other URL (only records from before inputs were imported at
 * create hold one) through the net loop, without holding this thread.
 * 0 when all are loaded; 1 when remote ones are on their way (the job
 * comes back through job_resume); -1 after job_done. */
static int job_fetch_inputs(job *j)
{
    size_t np = json_array_size(j->gen.product_images);
    size_t nm = json_array_size(j->gen.model_images);
    size_t total = np + nm;
    j->products = xcalloc(np ? np : 1, sizeof *j->products);
    j->models = xcalloc(nm ? nm : 1, sizeof *j->models);
    j->n_products = np;
    j->n_models = nm;
    j->fetches = xcalloc(total ? total : 1, sizeof *j->fetches);
    for (size_t k = 0; k < total; k++) {
        if (job_stopped(j)) {
            job_done(j, PROVIDER_CANCELLED, NULL, 0, "cancelled");
            return -1;
        }
        bool is_product = k < np;
        size_t idx = is_product ? k : k - np;
        json_t *arr = is_product ? j->gen.product_images : j->gen.model_images;
        const char *url = json_string_value(json_array_get(arr, idx));
        provider_image *dst = is_product ? &j->products[idx] : &j->models[idx];
        char label[32];
        snprintf(label, sizeof label, "%s image %zu", is_product ? "product" : "model", idx + 1);
        if (url && !media_is_own_url(url)) {
            input_fetch *f = &j->fetches[j->n_fetches++];
            *f = (input_fetch){.j = j, .url = url, .dst = dst};
            snprintf(f->label, sizeof f->label, "%s", label);
            continue;
        }
        char *why = NULL;
        int rc = url ? media_fetch(url, &j->pj.cancel_requested, dst, &why) : MEDIA_EINVALID;
        if (rc != 0) {
            provider_image_free(dst);
            /* A file that breaks a rule will not get better; our own disk
             * or library trouble might. */
            input_failed(j, rc == MEDIA_EINVALID ? PROVIDER_INPUT : PROVIDER_TRANSIENT, label,
                         why   ? why
                         : url ? "could not be loaded"
                               : "not a URL");
            free(why);
            return -1;
        }
        free(why);
    }
    if (j->n_fetches == 0) return 0;
    /* One count per fetch plus one held here, so the last callback cannot
     * resume the job before every request is submitted. */
    atomic_store(&j->fetch_pending, (int)j->n_fetches + 1);
    for (size_t i = 0; i < j->n_fetches; i++) {
        input_fetch *f = &j->fetches[i];
        net_request *r = net_request_new("GET", f->url);
        net_request_header(r, "Accept: image/jpeg, image/png, image/webp");
        net_request_limits(r, 20000, MEDIA_MAX_BYTES);
        net_request_redirects(r, 3);
        net_request_cancel_flag(r, &j->pj.cancel_requested);
        net_submit(r, on_input_fetched, f);
    }
    /* While it waits the job holds no thread and no claim slot (a local
     * render's slot is a worker thread): other work is claimed. */
    pthread_mutex_lock(&q.mu);
    q.n_busy--;
    q.n_fetching++;
    pthread_cond_broadcast(&q.work_cond);
    pthread_mutex_unlock(&q.mu);
    if (atomic_fetch_sub(&j->fetch_pending, 1) == 1) resume_push(j);
    return 1;
}

/* The remote inputs have arrived (or failed): each is probed in full here,
 * on a worker. 0, or -1 after job_done. */
static int job_check_fetched(job *j)
{
    if (job_stopped(j)) {
        job_done(j, PROVIDER_CANCELLED, NULL, 0, "cancelled");
        return -1;
    }
    for (size_t i = 0; i < j->n_fetches; i++) {
        input_fetch *f = &j->fetches[i];
        if (f->error == NET_ECANCELLED) {
            job_done(j, PROVIDER_CANCELLED, NULL, 0, "cancelled");
            return -1;
        }
        if (f->error != NET_OK) {
            char *why = xasprintf("could not be fetched: %s", f->reason ? f->reason : "error");
            input_failed(j, PROVIDER_INPUT, f->label, why);
            free(why);
            return -1;
        }
        if (f->status < 200 || f->status >= 300) {
            char why[48];
            snprintf(why, sizeof why, "the image URL returned HTTP %ld", f->status);
            return input_failed(j, PROVIDER_INPUT, f->label, why);
        }
        char *why = NULL;
        provider_image info = {0};
        if (media_probe(f->dst->data, f->dst->len, &info, &why) != 0) {
            input_failed(j, PROVIDER_INPUT, f->label, why ? why : "not an image");
            free(why);
            return -1;
        }
        snprintf(f->dst->format, sizeof f->dst->format, "%s", info.format);
        f->dst->width = info.width;
        f->dst->height = info.height;
    }
    return 0;
}

/* The provider call. Ends in job_done, from here or from the provider. */
static void job_call_provider(job *j)
{
    pthread_mutex_lock(&j->lock);
    bool stopped = job_stopped(j);
    if (!stopped) j->phase = PHASE_PROVIDER;
    pthread_mutex_unlock(&j->lock);
    if (stopped) {
        job_done(j, PROVIDER_CANCELLED, NULL, 0, "cancelled");
        return;
    }
    if (j->ops->start(&j->pj) < 0) {
        /* on_done will not come. */
        job_done(j, PROVIDER_TRANSIENT, NULL, 0, "the image provider could not start the job");
    }
}

/* Runs a freshly claimed job up to the provider call. */
/* The slot of a model's provider; NULL when its calls are bounded by the
 * worker threads themselves (local renders). Slots are fixed from
 * queue_start to queue_stop. */
static slot *slot_for(const model_info *m)
{
    if (!m || !provider_is_remote(m)) return NULL;
    for (int i = 0; i < q.n_slots; i++)
        if (str_eq(q.slots[i].provider, m->provider)) return &q.slots[i];
    return NULL;
}

/* Takes a slot for j, or parks j until one frees. True when taken. */
static bool slot_acquire(job *j)
{
    slot *sl = j->slot;
    pthread_mutex_lock(&q.mu);
    bool taken = sl->used < sl->limit;
    if (taken) {
        sl->used++;
        j->holds_slot = true;
    } else {
        j->parked = true;
        j->next_parked = NULL;
        if (sl->parked_tail)
            sl->parked_tail->next_parked = j;
        else
            sl->parked_head = j;
        sl->parked_tail = j;
    }
    pthread_mutex_unlock(&q.mu);
    if (!taken)
        log_debug("generation %s: %d %s calls in flight; waiting for a slot", j->gen.id, sl->limit,
                  sl->provider);
    return taken;
}

/* Gives j's slot back (q.mu held) and, when a job is waiting for it,
 * hands the slot on: that job is returned, to be started by the caller. */
static job *slot_release_locked(job *j)
{
    if (!j->holds_slot) return NULL;
    j->holds_slot = false;
    slot *sl = j->slot;
    sl->used--;
    job *next = sl->parked_head;
    if (!next) return NULL;
    unpark_locked(next);
    next->holds_slot = true;
    sl->used++;
    return next;
}

static void job_start_provider(job *j)
{
    job_progress(j, STAGE_GENERATING, PROGRESS_FETCH_END, true);
    job_call_provider(j);
}

static void job_prepare_call(job *j);

static void job_run(job *j)
{
    j->model = provider_model_find(j->gen.params.model);
    const char *why = NULL;
    if (!j->model || !provider_model_available(j->model, &why) ||
        !(j->ops = provider_for(j->model))) {
        char *msg = xasprintf("model %s is not available on this server%s%s", j->gen.params.model,
                              why ? ": " : "", why ? why : "");
        job_done(j, PROVIDER_REJECTED, NULL, 0, msg);
        free(msg);
        return;
    }
    int rc = job_fetch_inputs(j);
    if (rc == 0) job_prepare_call(j);
    /* 1: job_resume continues once the remote inputs are in */
}

/* A job whose remote inputs arrived, on a worker. */
static void job_resume(job *j)
{
    if (job_check_fetched(j) == 0) job_prepare_call(j);
}

/* Inputs loaded: to the provider, through its slot when it has one. */
static void job_prepare_call(job *j)
{
    j->pj.gen = &j->gen;
    j->pj.model = j->model;
    j->pj.products = j->products;
    j->pj.n_products = j->n_products;
    j->pj.models = j->models;
    j->pj.n_models = j->n_models;
    j->slot = slot_for(j->model);
    if (j->slot && !slot_acquire(j)) return; /* started when a slot frees (job_finish) */
    job_start_provider(j);
}

/* ---- outcomes (on a worker thread, after job_done) ---- */

/* A failed attempt: gen_state decides retry or failure, and the errorCode. */
static void finish_failed(job *j, gen_failure kind, const char *error)
{
    gen_retry_policy policy = retry_policy();
    store_guard held = {.worker_id = j->worker_id};
    gen_attempt a = {.kind = kind, .error = error, .retry_after_ms = j->pj.retry_after_ms};
    int64_t delay = 0;
    bool failed = false;
    int rc = gen_state_attempt_failed(q.store, j->gen.id, j->gen.retry_count, &held, &a, &policy,
                                      now_ms(), &failed, &delay);
    if (rc == STORE_OK && failed) {
        atomic_fetch_add(&st.failed, 1);
        log_warn("generation %s: failed after %d retries: %s", j->gen.id, j->gen.retry_count,
                 error);
    } else if (rc == STORE_OK) {
        atomic_fetch_add(&st.retried, 1);
        log_info("generation %s: retrying in %lld ms (retry %d of %d): %s", j->gen.id,
                 (long long)delay, j->gen.retry_count + 1, cfg.max_retries, error);
        pthread_mutex_lock(&q.mu);
        wake_workers_locked(); /* so idle workers re-read the next retry time */
        pthread_mutex_unlock(&q.mu);
    } else if (rc == STORE_ECONFLICT) {
        atomic_fetch_add(&st.cancelled, 1);
        log_info("generation %s: cancelled while failing (%s); nothing written", j->gen.id, error);
    } else {
        log_error("generation %s: could not record a failure (store error %d); the lease will "
                  "expire and the sweep retries it",
                  j->gen.id, rc);
    }
}

static void finish_ok(job *j)
{
    job_progress(j, STAGE_STORING, PROGRESS_STORING, true);
    if (atomic_load(&j->stop_why) & (STOP_LOST | STOP_USER)) {
        atomic_fetch_add(&st.cancelled, 1);
        log_info("generation %s: cancelled before its results were stored; dropped", j->gen.id);
        return;
    }
    if (provider_is_remote(j->model)) {
        /* A hosted model's results: probed, then fitted to the exact
         * aspect ratio asked (local renders are made to it). */
        for (size_t i = 0; i < j->n_outputs; i++) {
            char *why = NULL;
            int rc = media_fit_aspect(&j->outputs[i], j->gen.params.aspect_ratio, &why);
            if (rc != 0) {
                char *msg = xasprintf("the provider's image %zu cannot be used: %s", i + 1,
                                      why ? why : "unreadable");
                finish_failed(
                    j, rc == MEDIA_EINVALID ? GEN_FAILURE_MALFORMED : GEN_FAILURE_TRANSIENT, msg);
                free(msg);
                free(why);
                return;
            }
        }
    }
    /* parameters.output_format, for every provider's results (a local
     * render is already in it: a no-op). */
    for (size_t i = 0; i < j->n_outputs; i++) {
        char *why = NULL;
        if (media_convert(&j->outputs[i], j->gen.params.output_format, &why) != 0) {
            char *msg = xasprintf("image %zu cannot be used: %s", i + 1, why ? why : "unreadable");
            finish_failed(j, GEN_FAILURE_MALFORMED, msg);
            free(msg);
            free(why);
            return;
        }
    }
    json_t *urls = json_array();
    for (size_t i = 0; i < j->n_outputs; i++) {
        char *url = NULL;
        if (media_store_result(j->gen.id, (int)i, &j->outputs[i], &url) != 0 || !url) {
            free(url);
            for (size_t k = 0; k < json_array_size(urls); k++)
                media_delete_url(json_string_value(json_array_get(urls, k)));
            json_decref(urls);
            log_warn("generation %s: could not store result image %zu", j->gen.id, i + 1);
            finish_failed(j, GEN_FAILURE_TRANSIENT, "could not store the result image");
            return;
        }
        json_array_append_new(urls, json_string(url));
        free(url);
    }
    completion *c = xcalloc(1, sizeof *c);
    snprintf(c->gen_id, sizeof c->gen_id, "%s", j->gen.id);
    snprintf(c->worker_id, sizeof c->worker_id, "%s", j->worker_id);
    snprintf(c->model, sizeof c->model, "%s", j->gen.params.model);
    c->took_ms = mono_ms() - j->claimed_mono;
    c->n_outputs = j->n_outputs;
    c->urls = urls;
    completion_push(c);
}

/* Writes a finished job's outcome, then removes it from the table. */
static void job_finish(job *j)
{
    int why = atomic_load(&j->stop_why);
    const char *error = j->error ? j->error : "provider error";
    if (why & (STOP_USER | STOP_LOST)) {
        /* The store already says cancelled (or someone else owns it). */
        atomic_fetch_add(&st.cancelled, 1);
        log_info("generation %s: stopped (%s) after %lld ms; result dropped", j->gen.id,
                 why & STOP_USER ? "cancelled" : "lease lost",
                 (long long)(mono_ms() - j->claimed_mono));
    } else if (j->result == PROVIDER_OK) {
        finish_ok(j);
    } else if (why & STOP_SHUTDOWN) {
        /* queue_stop releases it to the queue once the workers are gone. */
        atomic_fetch_add(&st.handed_back, 1);
        log_info("generation %s: interrupted by shutdown; handing it back", j->gen.id);
    } else {
        /* A CANCELLED nobody asked for counts as transient (gen_state). */
        finish_failed(j, gen_state_failure_of(j->result),
                      j->result == PROVIDER_CANCELLED ? "the provider call was interrupted"
                                                      : error);
    }

    pthread_mutex_lock(&q.mu);
    job *next = slot_release_locked(j);
    for (job **pp = &q.inflight; *pp; pp = &(*pp)->next) {
        if (*pp == j) {
            *pp = j->next;
            q.n_inflight--;
            break;
        }
    }
    q.n_busy--;
    pthread_cond_broadcast(&q.idle_cond);
    if (q.stopping) pthread_cond_broadcast(&q.work_cond);
    pthread_mutex_unlock(&q.mu);
    job_unref(j);
    if (next) job_start_provider(next); /* the slot j held passes to it */
}

/* ---- workers ---- */

/* Claims one generation. Returns the new job (in the table), or NULL with
 * *rc the store's answer. */
static job *claim_one(worker *w, int *rc)
{
    gen_record g;
    memset(&g, 0, sizeof g);
    *rc = claim_deferred(w->id, &g);
    if (*rc != STORE_OK) return NULL;

    job *j = xcalloc(1, sizeof *j);
    atomic_init(&j->refs, 1);
    atomic_init(&j->stop_why, 0);
    pthread_mutex_init(&j->lock, NULL);
    pthread_mutex_init(&j->progress_mu, NULL);
    atomic_init(&j->want_progress, 0);
    j->phase = PHASE_PREP;
    snprintf(j->worker_id, sizeof j->worker_id, "%s", w->id);
    j->gen = g; /* ownership moves */
    snprintf(j->stage, sizeof j->stage, "%s", g.stage);
    j->progress = g.progress;
    j->claimed_mono = mono_ms();
    /* The claim wrote stage fetching_inputs: the throttle counts it as a
     * progress write, so inputs read from our own disk at once add none. */
    j->progress_at = j->claimed_mono;
    atomic_init(&j->pj.cancel_requested, false);
    j->pj.on_progress = pj_on_progress;
    j->pj.on_done = pj_on_done;
    j->pj.owner = j;

    pthread_mutex_lock(&q.mu);
    j->next = q.inflight;
    q.inflight = j;
    q.n_inflight++;
    bool abort_now = q.aborting;
    pthread_mutex_unlock(&q.mu);
    if (abort_now) job_cancel(j, STOP_SHUTDOWN);

    atomic_fetch_add(&st.claimed, 1);
    log_info("generation %s: claimed by %s (retry %d, priority %d)", j->gen.id, w->id,
             j->gen.retry_count, j->gen.priority);
    return j;
}

/* How long an idle worker may sleep: until the next retry is due, and at
 * most IDLE_WAIT_MAX_MS while another process may queue work (found only
 * by polling); alone, this process's own changes wake it (queue_notify). */
static int64_t idle_wait_ms(void)
{
    int64_t at = 0, wait = atomic_load(&q.shared) ? IDLE_WAIT_MAX_MS : WAIT_FOREVER;
    if (store_gen_next_retry_at(q.store, &at) == STORE_OK && at > 0) {
        int64_t d = at - now_ms();
        if (d <= 0) d = 50; /* due, yet not claimable (e.g. a per-user cap): poll gently */
        if (d < wait) wait = d;
    }
    return wait;
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    tls_worker = w;
    /* Finishing a job takes far longer than claiming one, so after each
     * finish a worker claims once before it finishes the next: a burst of
     * completions (many remote calls ending together) does not stall the
     * queue. The claim turn is skipped while the queue was found empty and
     * nothing was started since. */
    bool claim_turn = false, found_empty = false;
    uint64_t empty_seq = 0;
    pthread_mutex_lock(&q.mu);
    for (;;) {
        job *rj = q.resume_head;
        if (rj) {
            q.resume_head = rj->next_resume;
            if (!q.resume_head) q.resume_tail = NULL;
            q.n_fetching--;
            q.n_busy++;
            pthread_mutex_unlock(&q.mu);
            job_resume(rj);
            pthread_mutex_lock(&q.mu);
            continue;
        }
        job *d = q.done_head;
        bool may_claim =
            !q.stopping && q.n_busy < q.max_inflight && !(found_empty && empty_seq == q.notify_seq);
        if (d && !(claim_turn && may_claim)) {
            q.done_head = d->next_done;
            if (!q.done_head) q.done_tail = NULL;
            pthread_mutex_unlock(&q.mu);
            job_finish(d);
            pthread_mutex_lock(&q.mu);
            claim_turn = true;
            continue;
        }
        claim_turn = false;
        if (q.stopping) {
            if (q.n_busy == 0 && q.n_fetching == 0) break;
            cond_wait_ms(&q.work_cond, IDLE_WAIT_MAX_MS);
            continue;
        }
        if (q.n_busy >= q.max_inflight) {
            cond_wait_ms(&q.work_cond, IDLE_WAIT_MAX_MS);
            continue;
        }
        q.n_busy++;
        uint64_t seq = q.notify_seq;
        pthread_mutex_unlock(&q.mu);

        int rc;
        job *j = claim_one(w, &rc);
        found_empty = rc == STORE_ENOTFOUND;
        empty_seq = seq;
        if (j) {
            job_run(j);
            pthread_mutex_lock(&q.mu);
            continue;
        }
        int64_t wait = STORE_ERROR_PAUSE_MS;
        if (rc == STORE_ENOTFOUND)
            wait = idle_wait_ms();
        else
            log_error("worker %s: claim failed (store error %d)", w->id, rc);

        pthread_mutex_lock(&q.mu);
        q.n_busy--;
        pthread_cond_broadcast(&q.idle_cond);
        if (q.notify_seq == seq && !q.done_head && !q.resume_head && !q.stopping)
            cond_wait_ms(&q.work_cond, wait);
    }
    pthread_mutex_unlock(&q.mu);
    return NULL;
}

/* ---- housekeeping ---- */

/* Takes a reference to every job in the table (q.mu held). *n set. */
static job **snapshot_locked(size_t *n, const char *gen_id)
{
    job **v = xcalloc((size_t)q.n_inflight + 1, sizeof *v);
    size_t k = 0;
    for (job *j = q.inflight; j; j = j->next) {
        if (gen_id && strcmp(j->gen.id, gen_id) != 0) continue;
        atomic_fetch_add(&j->refs, 1);
        v[k++] = j;
    }
    *n = k;
    return v;
}

static void renew_all(void)
{
    size_t n;
    pthread_mutex_lock(&q.mu);
    job **v = snapshot_locked(&n, NULL);
    pthread_mutex_unlock(&q.mu);
    for (size_t i = 0; i < n; i++) {
        job *j = v[i];
        if (!(atomic_load(&j->stop_why) & (STOP_LOST | STOP_USER))) {
            int rc = store_gen_renew(q.store, j->gen.id, j->worker_id, now_ms() + lease_ms());
            if (rc == STORE_ECONFLICT) {
                /* Once the provider is done this may just be our own
                 * outcome write racing the renewal: flag it quietly. */
                pthread_mutex_lock(&j->lock);
                bool done = j->phase == PHASE_DONE;
                pthread_mutex_unlock(&j->lock);
                if (!done)
                    log_info("generation %s: lease lost or cancelled; stopping its job", j->gen.id);
                job_cancel(j, STOP_LOST);
            } else if (rc != STORE_OK) {
                log_warn("generation %s: lease renewal failed (store error %d)", j->gen.id, rc);
            }
        }
        job_unref(j);
    }
    free(v);
}

/* Writes the progress remote providers reported since the last flush. */
static void flush_progress(void)
{
    size_t n;
    pthread_mutex_lock(&q.mu);
    job **v = snapshot_locked(&n, NULL);
    pthread_mutex_unlock(&q.mu);
    for (size_t i = 0; i < n; i++) {
        job_flush_progress(v[i]);
        job_unref(v[i]);
    }
    free(v);
}

/* The heartbeat (GET /api/queue's `workers`): this process's worker
 * threads, then the slots of every process seen within HEARTBEAT_ALIVE_MS,
 * which the ETA is shared by. Once a second, with the sweep. */
#define HEARTBEAT_ALIVE_MS 5000
static void heartbeat(void)
{
    int64_t now = now_ms();
    store_queue_figures f;
    if (store_queue_heartbeat(q.store, q.proc_id, q.n_workers, now) != STORE_OK ||
        store_queue_stats(q.store, now - HEARTBEAT_ALIVE_MS, &f) != STORE_OK) {
        log_warn("queue: heartbeat failed");
        return;
    }
    queue_eta_set_slots((int)f.workers);
}

static void sweep(void)
{
    heartbeat();
    bool shared = store_shared(q.store, &q.visits);
    if (atomic_exchange(&q.shared, shared) != shared && shared) queue_notify(); /* poll now */
    int changed = 0;
    int64_t ttl = (int64_t)(cfg.pending_ttl > 0 ? cfg.pending_ttl : 1800) * 1000;
    gen_retry_policy policy = retry_policy();
    int rc = gen_state_sweep(q.store, now_ms(), ttl, &policy, &changed);
    if (rc != STORE_OK) {
        log_warn("queue: sweep failed (store error %d)", rc);
    } else if (changed > 0) {
        log_info("queue: sweep returned or expired %d generation%s", changed,
                 changed == 1 ? "" : "s");
        queue_notify();
    }
}

static void *housekeeper_main(void *arg)
{
    (void)arg;
    int64_t renew_every = lease_ms() / 3;
    if (renew_every < 50) renew_every = 50;
    int64_t next_sweep = mono_ms(), next_renew = mono_ms() + renew_every;
    int64_t next_flush = mono_ms() + PROGRESS_FLUSH_MS;
    pthread_mutex_lock(&q.mu);
    while (!q.hk_stop) {
        int64_t t = mono_ms();
        bool busy = q.inflight != NULL; /* no jobs: nothing to flush or renew */
        if (busy && t >= next_flush) {
            pthread_mutex_unlock(&q.mu);
            flush_progress();
            pthread_mutex_lock(&q.mu);
            next_flush = mono_ms() + PROGRESS_FLUSH_MS;
        } else if (t >= next_sweep) {
            pthread_mutex_unlock(&q.mu);
            sweep();
            pthread_mutex_lock(&q.mu);
            next_sweep = mono_ms() + SWEEP_EVERY_MS;
        } else if (busy && t >= next_renew) {
            pthread_mutex_unlock(&q.mu);
            renew_all();
            pthread_mutex_lock(&q.mu);
            next_renew = mono_ms() + renew_every;
        } else {
            int64_t next = next_sweep;
            if (busy && next_renew < next) next = next_renew;
            if (busy && next_flush < next) next = next_flush;
            cond_wait_ms(&q.hk_cond, next - t);
        }
    }
    pthread_mutex_unlock(&q.mu);
    return NULL;
}

/* One slot per remote provider, its limit the largest maxInFlight of its
 * models; q.max_inflight (claims at once) is the worker threads (local
 * renders, one each) plus the slots of providers that can run (q.mu held). */
static void build_slots(void)
{
    const model_info *models;
    size_t n = provider_models(&models);
    bool runnable[MAX_SLOTS] = {false};
    q.n_slots = 0;
    for (size_t i = 0; i < n; i++) {
        const model_info *m = &models[i];
        if (!provider_is_remote(m)) continue;
        int k = 0;
        while (k < q.n_slots && !str_eq(q.slots[k].provider, m->provider))
            k++;
        if (k == MAX_SLOTS) continue;
        if (k == q.n_slots) q.slots[q.n_slots++] = (slot){.provider = m->provider};
        int limit = m->max_in_flight > 0 ? m->max_in_flight : 1;
        if (limit > q.slots[k].limit) q.slots[k].limit = limit;
        if (provider_model_available(m, NULL)) runnable[k] = true;
    }
    q.max_inflight = q.n_workers;
    for (int k = 0; k < q.n_slots; k++)
        if (runnable[k] && q.n_workers > 0) q.max_inflight += q.slots[k].limit;
}

/* ---- the API ---- */

int queue_start(store_t *s)
{
    pthread_mutex_lock(&q.mu);
    if (q.running) {
        pthread_mutex_unlock(&q.mu);
        log_error("queue_start: already running");
        return -1;
    }
    if (!q.conds_ready) {
        util_cond_init_mono(&q.work_cond);
        util_cond_init_mono(&q.idle_cond);
        util_cond_init_mono(&q.hk_cond);
        util_cond_init_mono(&q.sync_cond);
        q.conds_ready = true;
    }
    q.store = s;
    q.stopping = q.aborting = q.hk_stop = q.hk_created = false;
    atomic_store(&q.shared, true); /* until the first sweep asks */
    q.visits = 0;
    q.sync_stop = q.sync_created = false;
    q.inflight = q.done_head = q.done_tail = q.resume_head = q.resume_tail = NULL;
    q.sync_head = q.sync_tail = NULL;
    q.n_inflight = q.n_busy = q.n_fetching = 0;
    q.n_workers = cfg.workers > 0 ? cfg.workers : 0; /* 0: sweeps only (API-only serve) */
    build_slots();
    q.workers = xcalloc((size_t)q.n_workers, sizeof *q.workers);
    atomic_store(&st.claimed, 0);
    atomic_store(&st.completed, 0);
    atomic_store(&st.failed, 0);
    atomic_store(&st.retried, 0);
    atomic_store(&st.cancelled, 0);
    atomic_store(&st.handed_back, 0);
    q.running = true;
    pthread_mutex_unlock(&q.mu);

    char host[64] = "localhost";
    if (gethostname(host, sizeof host) != 0) snprintf(host, sizeof host, "localhost");
    host[sizeof host - 1] = '\0';
    unsigned tag = ids_random_below(1u << 20);
    snprintf(q.proc_id, sizeof q.proc_id, "%s:%ld:%05x", host, (long)getpid(), tag);
    if (q.n_workers > 0) {
        if (pthread_create(&q.sync_thread, NULL, syncer_main, NULL) != 0) goto fail;
        q.sync_created = true;
    }
    for (int i = 0; i < q.n_workers; i++) {
        worker *w = &q.workers[i];
        w->index = i;
        snprintf(w->id, sizeof w->id, "%s:%ld:%05x:w%d", host, (long)getpid(), tag, i);
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0) goto fail;
        w->created = true;
    }
    if (pthread_create(&q.hk_thread, NULL, housekeeper_main, NULL) != 0) goto fail;
    q.hk_created = true;
    log_info("queue: %d worker%s, lease %d s, retry base %d ms, max retries %d", q.n_workers,
             q.n_workers == 1 ? "" : "s", (int)(lease_ms() / 1000), cfg.retry_base_ms,
             cfg.max_retries);
    return 0;

fail:
    log_error("queue_start: could not create a thread");
    queue_stop(0);
    return -1;
}

void queue_notify(void)
{
    pthread_mutex_lock(&q.mu);
    if (q.running) wake_workers_locked();
    pthread_mutex_unlock(&q.mu);
}

void queue_cancel(const char *gen_id)
{
    if (!gen_id) return;
    size_t n;
    pthread_mutex_lock(&q.mu);
    job **v = snapshot_locked(&n, gen_id);
    pthread_mutex_unlock(&q.mu);
    for (size_t i = 0; i < n; i++) {
        log_info("generation %s: cancel requested; aborting its job", gen_id);
        job_cancel(v[i], STOP_USER);
        job_unref(v[i]);
    }
    free(v);
}

void queue_stop(int grace_ms)
{
    pthread_mutex_lock(&q.mu);
    if (!q.running || q.stopping) {
        pthread_mutex_unlock(&q.mu);
        return;
    }
    q.stopping = true;
    wake_workers_locked();
    int64_t deadline = mono_ms() + (grace_ms > 0 ? grace_ms : 0);
    while (q.n_busy > 0 || q.n_fetching > 0) {
        int64_t left = deadline - mono_ms();
        if (left <= 0) break;
        cond_wait_ms(&q.idle_cond, left);
    }
    if (q.n_busy > 0 || q.n_fetching > 0) {
        q.aborting = true;
        size_t n;
        job **v = snapshot_locked(&n, NULL);
        pthread_mutex_unlock(&q.mu);
        log_info("queue: %zu job%s still running after %d ms; cancelling and handing back", n,
                 n == 1 ? "" : "s", grace_ms);
        for (size_t i = 0; i < n; i++) {
            job_cancel(v[i], STOP_SHUTDOWN);
            job_unref(v[i]);
        }
        free(v);
        pthread_mutex_lock(&q.mu);
    }
    pthread_mutex_unlock(&q.mu);

    for (int i = 0; i < q.n_workers; i++)
        if (q.workers[i].created) pthread_join(q.workers[i].thread, NULL);
    /* The completions handed over are recorded before any lease is let go. */
    pthread_mutex_lock(&q.mu);
    q.sync_stop = true;
    pthread_cond_signal(&q.sync_cond);
    pthread_mutex_unlock(&q.mu);
    if (q.sync_created) pthread_join(q.sync_thread, NULL);
    q.sync_created = false;
    /* Every job is finished now; whatever was interrupted still holds a
     * lease under its worker's id. */
    for (int i = 0; i < q.n_workers; i++) {
        if (!q.workers[i].created) continue;
        int rc = store_gen_release(q.store, q.workers[i].id, now_ms());
        if (rc != STORE_OK)
            log_error("queue: could not release the leases of %s (store error %d); they "
                      "return to the queue when the lease expires",
                      q.workers[i].id, rc);
    }

    pthread_mutex_lock(&q.mu);
    q.hk_stop = true;
    pthread_cond_broadcast(&q.hk_cond);
    pthread_mutex_unlock(&q.mu);
    if (q.hk_created) pthread_join(q.hk_thread, NULL);
    if (q.store && q.proc_id[0]) store_queue_heartbeat(q.store, q.proc_id, 0, now_ms());

    pthread_mutex_lock(&q.mu);
    free(q.workers);
    q.workers = NULL;
    q.n_workers = 0;
    q.hk_created = false;
    q.running = false;
    q.stopping = q.aborting = false;
    q.store = NULL;
    pthread_mutex_unlock(&q.mu);
    log_info("queue: stopped (%lld completed, %lld failed, %lld retried, %lld handed back)",
             (long long)atomic_load(&st.completed), (long long)atomic_load(&st.failed),
             (long long)atomic_load(&st.retried), (long long)atomic_load(&st.handed_back));
}

int queue_running(void)
{
    pthread_mutex_lock(&q.mu);
    int n = q.n_inflight;
    pthread_mutex_unlock(&q.mu);
    return n;
}

void queue_stats(struct queue_stats *out)
{
    out->claimed = atomic_load(&st.claimed);
    out->completed = atomic_load(&st.completed);
    out->failed = atomic_load(&st.failed);
    out->retried = atomic_load(&st.retried);
    out->cancelled = atomic_load(&st.cancelled);
    out->handed_back = atomic_load(&st.handed_back);
    out->running = queue_running();
}
