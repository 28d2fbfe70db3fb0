/*
 * queue — the in-process generation workers (SPEC §4 state machine, §9
 * SIGTERM). cfg.workers threads claim processing generations from the
 * store under a lease, fetch their input images, run the model's provider,
 * store the results and write the outcome (completed, retry with backoff,
 * failed with refund). One housekeeping thread renews the leases of the
 * jobs in flight and sweeps expired leases and stale pending records.
 *
 * Threading: every function here is thread-safe. queue_start and
 * queue_stop are called once each from the main thread (a stop may be
 * followed by another start, as unit tests do). queue_notify and
 * queue_cancel are cheap and may be called from any thread, e.g. the HTTP
 * threads right after a store commit; they never block on slow work.
 *
 * Test faults (cfg.test_faults) are not the queue's business: they are a
 * provider wrapping the real one (provider_faults.c), installed by
 * provider_for().
 */
#ifndef SS_QUEUE_H
#define SS_QUEUE_H

#include <stdint.h>

#include "store.h"

/* Starts cfg.workers worker threads and the housekeeping thread. The store
 * is borrowed and must outlive queue_stop. 0, or -1 when already running or
 * a thread could not be created (nothing is left running then). */
int queue_start(store_t *s);

/* New work may be ready (a generation was started or handed back): wakes
 * idle workers. A no-op while the queue is not running. */
void queue_notify(void);

/* If this process is running generation gen_id, aborts its provider call
 * now and drops its result. The caller has already committed the cancel
 * (and refund) in the store; nothing is written here. */
void queue_cancel(const char *gen_id);

/* Graceful shutdown: stops claiming; lets running jobs finish for up to
 * grace_ms; then cancels the rest and hands them back to the queue with
 * store_gen_release (stage queued, no retry counted); joins all threads.
 * Returns when every thread has exited. Safe to call when not running. */
void queue_stop(int grace_ms);

/* Jobs in flight in this process right now (claimed, not yet finished). */
int queue_running(void);

/* Counters since queue_start (for /metrics). */
struct queue_stats {
    int64_t claimed;     /* generations claimed from the store */
    int64_t completed;   /* → completed */
    int64_t failed;      /* → failed (permanent, or out of retries) */
    int64_t retried;     /* transient failures sent back to the queue */
    int64_t cancelled;   /* dropped because cancelled or the lease was lost */
    int64_t handed_back; /* cancelled by queue_stop, released to the queue */
    int running;         /* as queue_running() */
};

void queue_stats(struct queue_stats *out);

/* ---- ETA (queue_eta.c) ----
 * queue_eta: seconds until a generation of `model` at queue `position`
 * (1 = next) is done, from this process's moving average of that model's
 * claim-to-completion times (the catalogue's typicalSeconds before any),
 * shared by the live worker slots; 0 when position <= 0. */
int queue_eta(const char *model, int position);
/* A completion of `model` that took ms from claim to completion. */
void queue_eta_record(const char *model, int64_t ms);
/* The worker slots of the processes alive now (heartbeats). */
void queue_eta_set_slots(int slots);

#endif
