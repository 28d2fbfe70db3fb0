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
#include "provider.h"

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

gen_failure gen_state_failure_of(int provider_result)
{
    switch (provider_result) {
    case PROVIDER_REJECTED:
        return GEN_FAILURE_REJECTED;
    case PROVIDER_INPUT:
        return GEN_FAILURE_INPUT;
    case PROVIDER_MALFORMED:
        return GEN_FAILURE_MALFORMED;
    default: /* TRANSIENT, an unasked-for CANCELLED, anything unknown */
        return GEN_FAILURE_TRANSIENT;
    }
}

/* The errorCode a generation ends with after a failure of this kind. */
static const char *failure_code(gen_failure kind)
{
    switch (kind) {
    case GEN_FAILURE_REJECTED:
        return GEN_ERR_PROVIDER_REJECTED;
    case GEN_FAILURE_INPUT:
        return GEN_ERR_INPUT_UNAVAILABLE;
    case GEN_FAILURE_MALFORMED:
        return GEN_ERR_PROVIDER_ERROR;
    default:
        return GEN_ERR_PROVIDER_TRANSIENT;
    }
}

/* Ends a generation as `to` from any status the state machine allows. */
static int end(store_t *s, const char *gen_id, gen_status to, const char *error,
               const char *error_code, store_guard guard, int64_t now)
{
    store_end e = {
        .gen_id = gen_id,
        .from = gen_state_sources(to),
        .to = to,
        .error = error,
        .error_code = error_code,
        .guard = guard,
        .now = now,
    };
    return store_gen_end(s, &e);
}

int gen_state_cancel(store_t *s, const char *gen_id, const char *reason, int64_t now)
{
    return end(s, gen_id, GEN_CANCELLED, reason, GEN_ERR_CANCELLED, (store_guard){0}, now);
}

int gen_state_complete(store_t *s, const char *gen_id, const char *worker_id,
                       const json_t *result_images, int64_t now)
{
    return store_gen_complete(s, gen_id, worker_id, result_images, now);
}

int gen_state_fail(store_t *s, const char *gen_id, const char *worker_id, const char *error,
                   int64_t now)
{
    return end(s, gen_id, GEN_FAILED, error, GEN_ERR_PROVIDER_REJECTED,
               (store_guard){.worker_id = worker_id}, now);
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

int gen_state_attempt_failed(store_t *s, const char *gen_id, int retry_count,
                             const store_guard *guard, const gen_attempt *a,
                             const gen_retry_policy *p, int64_t now, bool *failed,
                             int64_t *delay_ms)
{
    bool retryable = a->kind == GEN_FAILURE_TRANSIENT || a->kind == GEN_FAILURE_MALFORMED ||
                     a->kind == GEN_FAILURE_LOST;
    if (!retryable || retry_count >= p->max_retries) {
        const char *error = a->error;
        char lost[160];
        if (a->kind == GEN_FAILURE_LOST) {
            snprintf(lost, sizeof lost,
                     "the worker running it stopped before finishing (lease expired) and no "
                     "retries are left (%d used)",
                     retry_count);
            error = lost;
        }
        if (failed) *failed = true;
        return end(s, gen_id, GEN_FAILED, error, failure_code(a->kind), *guard, now);
    }
    int64_t delay = a->kind == GEN_FAILURE_LOST ? 0 : gen_state_backoff_ms(p, retry_count);
    int64_t wish =
        a->retry_after_ms > GEN_RETRY_AFTER_CAP_MS ? GEN_RETRY_AFTER_CAP_MS : a->retry_after_ms;
    if (wish > delay) delay = wish;
    if (failed) *failed = false;
    if (delay_ms) *delay_ms = delay;
    return store_gen_requeue(s, gen_id, guard, retry_count, a->error, now + delay, now);
}

int gen_state_transient(store_t *s, const char *gen_id, int retry_count, const store_guard *guard,
                        const char *error, const gen_retry_policy *p, int64_t now, bool *failed,
                        int64_t *delay_ms)
{
    gen_attempt a = {.kind = GEN_FAILURE_TRANSIENT, .error = error};
    return gen_state_attempt_failed(s, gen_id, retry_count, guard, &a, p, now, failed, delay_ms);
}

/* Generations whose worker is gone: retried at once, or failed. */
static int rescue_leases(store_t *s, int64_t now, const gen_retry_policy *p, int *changed)
{
    store_gen_ref *refs = NULL;
    size_t n = 0;
    int rc = store_gen_expired_leases(s, now, SWEEP_BATCH, &refs, &n);
    gen_attempt lost = {.kind = GEN_FAILURE_LOST, .error = "worker lost"};
    for (size_t i = 0; i < n && rc == STORE_OK; i++) {
        store_guard expired = {.lease_expired_before = now};
        rc = gen_state_attempt_failed(s, refs[i].id, refs[i].retry_count, &expired, &lost, p, now,
                                      NULL, NULL);
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
    store_end e = {.from = GEN_MASK(GEN_PENDING),
                   .to = GEN_CANCELLED,
                   .error = error,
                   .error_code = GEN_ERR_EXPIRED,
                   .now = now};
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
