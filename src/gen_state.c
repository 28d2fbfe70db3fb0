/*
 * gen_state — the state machine and its policies (gen_state.h). Each
 * function decides from the rules below, then calls one guarded store verb;
 * a guard that no longer holds (a concurrent cancel, a lost lease) comes
 * back as STORE_ECONFLICT and nothing is written.
 */
#include "gen_state.h"

#include <stdio.h>
#include <stdlib.h>

#include "log.h"

#define BACKOFF_CAP_MS (5 * 60 * 1000)
#define SWEEP_BATCH 200

bool gen_transition_allowed(gen_status from, gen_status to)
{
    switch (from) {
    case GEN_PENDING:
        return to == GEN_PROCESSING || to == GEN_CANCELLED;
    case GEN_PROCESSING:
        return to == GEN_COMPLETED || to == GEN_FAILED || to == GEN_CANCELLED;
    default:
        return false; /* terminal states are final */
    }
}

unsigned gen_state_sources(gen_status to)
{
    unsigned mask = 0;
    for (int from = 0; from < GEN_STATUS_COUNT; from++)
        if (gen_transition_allowed((gen_status)from, to)) mask |= GEN_MASK(from);
    return mask;
}

unsigned gen_state_deletable(void)
{
    unsigned mask = 0;
    for (int st = 0; st < GEN_STATUS_COUNT; st++)
        if (gen_status_terminal((gen_status)st)) mask |= GEN_MASK(st);
    return mask;
}

bool gen_state_retryable(gen_status s)
{
    return s == GEN_FAILED || s == GEN_CANCELLED;
}

int gen_state_start(store_t *s, const char *gen_id, int64_t now)
{
    return store_gen_start(s, gen_id, now); /* the verb is pending → processing only */
}

/* Ends a generation as `to` from any status the state machine allows. */
static int end(store_t *s, const char *gen_id, gen_status to, const char *error, store_guard guard,
               int64_t now)
{
    store_end e = {
        .gen_id = gen_id,
        .from = gen_state_sources(to),
        .to = to,
        .error = error,
        .guard = guard,
        .now = now,
    };
    return store_gen_end(s, &e);
}

int gen_state_cancel(store_t *s, const char *gen_id, const char *reason, int64_t now)
{
    return end(s, gen_id, GEN_CANCELLED, reason, (store_guard){0}, now);
}

int gen_state_complete(store_t *s, const char *gen_id, const char *worker_id,
                       const json_t *result_images, int64_t now)
{
    return store_gen_complete(s, gen_id, worker_id, result_images, now);
}

int gen_state_fail(store_t *s, const char *gen_id, const char *worker_id, const char *error,
                   int64_t now)
{
    return end(s, gen_id, GEN_FAILED, error, (store_guard){.worker_id = worker_id}, now);
}

int64_t gen_state_backoff_ms(const gen_retry_policy *p, int retry_count)
{
    int64_t base = p->base_ms > 0 ? p->base_ms : 0;
    int shift = retry_count < 0 ? 0 : retry_count > 20 ? 20 : retry_count;
    int64_t d = base << shift;
    if (d > BACKOFF_CAP_MS) d = BACKOFF_CAP_MS;
    int64_t jitter = d / 4;
    if (jitter > 0 && p->rand_below)
        d = d - jitter + (int64_t)p->rand_below((uint32_t)(2 * jitter + 1));
    return d > BACKOFF_CAP_MS ? BACKOFF_CAP_MS : d;
}

int gen_state_transient(store_t *s, const char *gen_id, int retry_count, const store_guard *guard,
                        const char *error, const gen_retry_policy *p, int64_t now, bool *failed,
                        int64_t *delay_ms)
{
    if (retry_count >= p->max_retries) {
        if (failed) *failed = true;
        return end(s, gen_id, GEN_FAILED, error, *guard, now);
    }
    int64_t delay = gen_state_backoff_ms(p, retry_count);
    if (failed) *failed = false;
    if (delay_ms) *delay_ms = delay;
    return store_gen_requeue(s, gen_id, guard, retry_count, error, now + delay, now);
}

/* Generations whose worker is gone: retried at once, or failed. */
static int rescue_leases(store_t *s, int64_t now, const gen_retry_policy *p, int *changed)
{
    store_gen_ref *refs = NULL;
    size_t n = 0;
    int rc = store_gen_expired_leases(s, now, SWEEP_BATCH, &refs, &n);
    gen_retry_policy at_once = *p;
    at_once.base_ms = 0;
    for (size_t i = 0; i < n && rc == STORE_OK; i++) {
        store_guard expired = {.lease_expired_before = now};
        rc = gen_state_transient(s, refs[i].id, refs[i].retry_count, &expired, "worker lost",
                                 &at_once, now, NULL, NULL);
        if (rc == STORE_OK) (*changed)++;
        if (rc == STORE_ECONFLICT || rc == STORE_ENOTFOUND)
            rc = STORE_OK; /* renewed, finished or deleted meanwhile */
    }
    free(refs);
    return rc;
}

/* Pending generations never started: cancelled and refunded. */
static int expire_pending(store_t *s, int64_t now, int64_t pending_ttl_ms, int *changed)
{
    store_gen_ref *refs = NULL;
    size_t n = 0;
    int rc = store_gen_pending_before(s, now - pending_ttl_ms, SWEEP_BATCH, &refs, &n);
    char error[96];
    snprintf(error, sizeof error, "expired: not started within %lld seconds",
             (long long)(pending_ttl_ms / 1000));
    store_end e = {.from = GEN_MASK(GEN_PENDING), .to = GEN_CANCELLED, .error = error, .now = now};
    for (size_t i = 0; i < n && rc == STORE_OK; i++) {
        e.gen_id = refs[i].id;
        rc = store_gen_end(s, &e);
        if (rc == STORE_OK) (*changed)++;
        if (rc == STORE_ECONFLICT || rc == STORE_ENOTFOUND) rc = STORE_OK; /* started meanwhile */
    }
    free(refs);
    return rc;
}

int gen_state_sweep(store_t *s, int64_t now, int64_t pending_ttl_ms, const gen_retry_policy *p,
                    int *changed)
{
    int count = 0;
    int rc = rescue_leases(s, now, p, &count);
    if (rc == STORE_OK) rc = expire_pending(s, now, pending_ttl_ms, &count);
    if (rc == STORE_OK) rc = store_purge(s, now - GEN_IDEMPOTENCY_KEEP_MS, now);
    if (changed) *changed = count;
    return rc;
}
