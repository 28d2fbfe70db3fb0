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
/* A user's cancel: pending or processing → cancelled, refunded. */
int gen_state_cancel(store_t *s, const char *gen_id, const char *reason, int64_t now);
/* A worker's result: processing → completed. */
int gen_state_complete(store_t *s, const char *gen_id, const char *worker_id,
                       const json_t *result_images, int64_t now);
/* A permanent failure: processing → failed, refunded. */
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

/* A transient failure of a generation (its id and the retry_count it was
 * claimed with) under `guard`: requeued after the backoff while retries
 * remain (*failed = false, *delay_ms set), otherwise failed and refunded
 * (*failed = true). */
int gen_state_transient(store_t *s, const char *gen_id, int retry_count, const store_guard *guard,
                        const char *error, const gen_retry_policy *p, int64_t now, bool *failed,
                        int64_t *delay_ms);

/* Housekeeping, run periodically by queue.c:
 *  - leases expired before now: the worker is gone; a transient failure
 *    ("worker lost", retried at once);
 *  - pending generations created before now - pending_ttl_ms: cancelled,
 *    refunded, error "expired: not started within N seconds";
 *  - idempotency keys older than 24 h and expired sessions: deleted.
 * *changed counts generations touched. */
int gen_state_sweep(store_t *s, int64_t now, int64_t pending_ttl_ms, const gen_retry_policy *p,
                    int *changed);

#endif
