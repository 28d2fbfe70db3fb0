/*
 * gen_state — the generation state machine (SPEC §4), and the one place
 * its rules live: which transitions are legal, whether a failure is retried
 * or ends the generation, when a retry may run, and when a pending
 * generation or a lost lease is dealt with. Every path that changes a
 * generation's status — the API, the workers, the sweep — calls a
 * gen_state_* function, which decides and then asks the store for one
 * guarded atomic verb (store.h). The store never decides.
 *
 *   pending ──start──▶ processing ──complete──▶ completed
 *      │                  │  ▲
 *      │                  │  └── transient failure, retry_count < max_retries
 *      │                  ├──fail──▶ failed        (refund)
 *      └──cancel/expiry───┴──▶ cancelled           (refund)
 *
 * errorCode (SPEC §4, §7) is decided here too, and handed to the store
 * with the change: every failed or cancelled record carries one of the
 * GEN_ERR_* codes below.
 *
 * All functions return STORE_OK or a STORE_E* code from the store
 * (STORE_ECONFLICT: the generation was not in a status the transition may
 * start from, or the lease was lost).
 */
#ifndef SS_GEN_STATE_H
#define SS_GEN_STATE_H

#include <stdbool.h>
#include <stdint.h>

#include "generation.h"
#include "store.h"

/* errorCode values (≤ 23 characters: gen_record.error_code). PROVIDER_TRANSIENT
 * and PROVIDER_ERROR: the retries ran out after transient errors (or a lost
 * worker) and after malformed answers respectively. */
#define GEN_ERR_CANCELLED "CANCELLED"                   /* a user's cancel */
#define GEN_ERR_EXPIRED "EXPIRED"                       /* pending, never started in time */
#define GEN_ERR_PROVIDER_REJECTED "PROVIDER_REJECTED"   /* refused; not retried */
#define GEN_ERR_PROVIDER_TRANSIENT "PROVIDER_TRANSIENT" /* out of retries: transient */
#define GEN_ERR_PROVIDER_ERROR "PROVIDER_ERROR"         /* out of retries: malformed */
#define GEN_ERR_INPUT_UNAVAILABLE "INPUT_UNAVAILABLE"   /* an input image cannot be read */

/* How an attempt failed, as far as the state machine cares. */
typedef enum gen_failure {
    GEN_FAILURE_TRANSIENT, /* retried; out of retries: PROVIDER_TRANSIENT */
    GEN_FAILURE_MALFORMED, /* retried; out of retries: PROVIDER_ERROR */
    GEN_FAILURE_REJECTED,  /* fails at once: PROVIDER_REJECTED */
    GEN_FAILURE_INPUT,     /* fails at once: INPUT_UNAVAILABLE */
    GEN_FAILURE_LOST,      /* the worker's lease ran out: retried at once; out of
                              retries: PROVIDER_TRANSIENT, "the worker stopped" */
} gen_failure;

/* The failure a provider result (provider.h PROVIDER_*, not PROVIDER_OK)
 * stands for. A PROVIDER_CANCELLED nobody asked for counts as transient. */
gen_failure gen_state_failure_of(int provider_result);

/* May a generation go from `from` to `to`? (processing → processing, a
 * retry going back to queued, is a stage change, not a transition.) */
bool gen_transition_allowed(gen_status from, gen_status to);
/* The GEN_MASK set of statuses from which `to` may be reached. */
unsigned gen_state_sources(gen_status to);
/* The statuses a generation may be deleted in (the terminal ones). */
unsigned gen_state_deletable(void);
/* Whether a retry (a new generation with the same settings) may be made
 * of one in status s: it failed or was cancelled. */
bool gen_state_retryable(gen_status s);

/* pending → processing (queued). */
int gen_state_start(store_t *s, const char *gen_id, int64_t now);
/* A user's cancel: pending or processing → cancelled, refunded, CANCELLED. */
int gen_state_cancel(store_t *s, const char *gen_id, const char *reason, int64_t now);
/* A worker's result: processing → completed. */
int gen_state_complete(store_t *s, const char *gen_id, const char *worker_id,
                       const json_t *result_images, int64_t now);
/* A permanent failure: processing → failed, refunded, errorCode
 * PROVIDER_REJECTED (gen_state_attempt_failed with GEN_FAILURE_REJECTED). */
int gen_state_fail(store_t *s, const char *gen_id, const char *worker_id, const char *error,
                   int64_t now);

/* The retry policy. */
typedef struct gen_retry_policy {
    int max_retries;                    /* transient failures retried this many times */
    int64_t base_ms;                    /* first delay; doubles per retry */
    uint32_t (*rand_below)(uint32_t n); /* jitter source: 0..n-1 (a test seam) */
} gen_retry_policy;

/* Delay before retry number retry_count + 1: base × 2^retry_count, ±25 %
 * jitter, capped at 5 minutes. */
int64_t gen_state_backoff_ms(const gen_retry_policy *p, int retry_count);
/* A provider's Retry-After is honoured up to this long. */
#define GEN_RETRY_AFTER_CAP_MS (60LL * 60 * 1000)

/* One failed attempt. */
typedef struct gen_attempt {
    gen_failure kind;
    const char *error;      /* for the user; never NULL */
    int64_t retry_after_ms; /* the provider's wish (provider_job.retry_after_ms), or 0 */
} gen_attempt;

/* A failed attempt of a generation (its id and the retry_count it was
 * claimed with) under `guard`. Transient, malformed and lost ones are
 * requeued while retries remain (*failed = false, *delay_ms set: the
 * backoff, at least retry_after_ms up to GEN_RETRY_AFTER_CAP_MS; 0 for a
 * lost lease); otherwise — or at once for rejected and input failures —
 * failed and refunded with the errorCode of its kind (*failed = true). */
int gen_state_attempt_failed(store_t *s, const char *gen_id, int retry_count,
                             const store_guard *guard, const gen_attempt *a,
                             const gen_retry_policy *p, int64_t now, bool *failed,
                             int64_t *delay_ms);

/* gen_state_attempt_failed with GEN_FAILURE_TRANSIENT. */
int gen_state_transient(store_t *s, const char *gen_id, int retry_count, const store_guard *guard,
                        const char *error, const gen_retry_policy *p, int64_t now, bool *failed,
                        int64_t *delay_ms);

/* Housekeeping, run periodically by queue.c:
 *  - leases expired before now: the worker is gone (GEN_FAILURE_LOST:
 *    "worker lost", retried at once, or failed PROVIDER_TRANSIENT);
 *  - pending generations created before now - pending_ttl_ms: cancelled,
 *    refunded, error "expired: not started within N seconds", EXPIRED;
 *  - idempotency keys older than 24 h and expired sessions: deleted.
 * *changed counts generations touched. */
int gen_state_sweep(store_t *s, int64_t now, int64_t pending_ttl_ms, const gen_retry_policy *p,
                    int *changed);

#endif
