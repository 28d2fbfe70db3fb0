/*
 * events — wakes whoever waits for a committed change: SSE streams and
 * requests held by `Prefer: wait`. The durable events table (store.h) is
 * the truth; this module only says "something newer than id N was
 * committed, look again" or "your deadline passed".
 *
 * DESIGN. Waiters are caller-owned structs on lists under one mutex: one
 * list per slot of users (EVENTS_TOPIC_SLOTS, hashed) and one for waiters
 * of every topic, so a commit walks only its user's slot and that one.
 * Every commit the process hears of (events_committed: the store's commit
 * hook, which on PostgreSQL also relays other processes' commits from
 * LISTEN/NOTIFY) bumps a stamp and fires the waiters whose topic (a user
 * id) is the committing user's, so a change wakes only that user's streams.
 * Waiters compare stamps, not event ids: ids need not arrive in order
 * across users and processes, a stamp taken before looking at the store
 * always does. A timer thread fires waiters whose deadline passed (up to
 * EVENTS_SLACK_MS late, so nearby deadlines share one walk of the list),
 * and is signalled only when a new deadline comes before its wake-up. A
 * waiter fires once per events_wait; its callback runs outside the lock and
 * must be quick (it resumes a suspended connection). events_unwait
 * guarantees the callback is neither running nor will run. Commits by
 * other processes on SQLite (a `stylestudio worker` on the same file) fire
 * no hook here, so while anyone waits the timer thread also polls the
 * store's newest event id every EVENTS_POLL_MS and wakes everyone when it
 * moved — only while another process has the store open: a lone process
 * (the poll answers EVENTS_ALONE) asks again every EVENTS_ALONE_MS, which
 * costs a system call, not a query.
 */
#ifndef SS_EVENTS_H
#define SS_EVENTS_H

#include <stdbool.h>
#include <stdint.h>

#include "ids.h"

typedef struct events_waiter {
    void (*fn)(void *arg);
    void *arg;
    int64_t after_id;   /* the stamp seen before looking */
    char topic[ID_LEN]; /* a user id; "" = woken by every commit */
    int64_t deadline;   /* mono_ms(); 0 = none */
    int state;          /* private to events.c */
    size_t list;        /* private: the list it is armed on */
    struct events_waiter *next, *prev;
} events_waiter;

#define EVENTS_SLACK_MS 20 /* a deadline fires up to this late, batched with others */
#define EVENTS_POLL_MS 250
#define EVENTS_ALONE_MS 1000
#define EVENTS_ALONE 1 /* poll's answer: no other process has the store open */

/* poll returns the store's newest event id (0, or a negative error), or
 * EVENTS_ALONE without asking the store; may be NULL when no other process
 * writes to the store. last_event_id: its value
 * now. */
int events_start(int64_t last_event_id, int (*poll)(void *ctx, int64_t *id), void *poll_ctx);
void events_stop(void); /* fires every waiter, stops the timer thread */

/* The store's commit hook. user_id NULL (several or unknown users) wakes
 * every waiter. */
void events_committed(int64_t last_event_id, const char *user_id, void *ctx);
/* The number of commits this process has heard of: read it before looking
 * at the store, then wait with it. */
int64_t events_stamp(void);

/* The commits heard of for one user (topic): those naming it, plus those
 * naming no user. Read it before looking at the store; while it has not
 * moved, what was read then is still current for that user, so the reads
 * of the user's many streams can be shared (api_gen.c). Counters are
 * hashed into EVENTS_TOPIC_SLOTS slots: two users that share a slot bump
 * each other's stamp (a needless re-read), never hide a commit. */
#define EVENTS_TOPIC_SLOTS 1024
int64_t events_topic_stamp(const char *topic);

/* Arms w: fn(arg) runs once when a commit for topic (NULL: any) is heard
 * of after stamp `after_id` was read, or the deadline passes. Returns false
 * without arming when a commit came since (look again). */
bool events_wait(events_waiter *w, int64_t after_id, const char *topic, int64_t deadline,
                 void (*fn)(void *), void *arg);
/* The same with after_id = events_topic_stamp(topic) read before looking
 * (topic not NULL): only a commit that may concern topic refuses the
 * arming, so a stream is not re-filled for every other user's commit. */
bool events_wait_topic(events_waiter *w, int64_t after_id, const char *topic, int64_t deadline,
                       void (*fn)(void *), void *arg);
/* Fires w now, as if its deadline had passed, when it is armed (else
 * nothing: whoever has it idle looks again before arming it). */
void events_fire(events_waiter *w);
/* Disarms w; on return fn is not running and will not run. */
void events_unwait(events_waiter *w);

#endif
