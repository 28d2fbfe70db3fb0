/*
 * events — the waiter list behind live updates. See events.h for the design.
 */
#include "events.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "util.h"

enum { W_IDLE, W_ARMED, W_FIRING };

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t timer_cond; /* timer thread sleeps here */
static pthread_cond_t fired_cond; /* events_unwait waits for a firing callback */
/* Armed waiters, one list per topic slot (topic_slot) and one more, the
 * last, for waiters of every topic: a commit walks its user's slot and
 * that one, not every stream of every user. */
#define ANY_LIST EVENTS_TOPIC_SLOTS
static events_waiter *heads[EVENTS_TOPIC_SLOTS + 1];
static size_t n_armed;
static _Atomic int64_t stamp;                            /* commits noticed so far */
static _Atomic int64_t topic_stamps[EVENTS_TOPIC_SLOTS]; /* commits per slot of users */
static _Atomic int64_t any_stamp; /* commits naming no user (they touch every topic) */
static int64_t polled_id;         /* the store's newest id at the last poll */
static int64_t timer_at;          /* when the timer thread wakes next (mono_ms); 0 = running */
static bool stopping;
static pthread_t timer_thread;
static int (*poll_fn)(void *ctx, int64_t *id);
static void *poll_ctx;

static size_t topic_slot(const char *topic)
{
    return util_fnv1a(topic) % EVENTS_TOPIC_SLOTS;
}

static void unlink_waiter(events_waiter *w)
{
    n_armed--;
    if (w->prev)
        w->prev->next = w->next;
    else
        heads[w->list] = w->next;
    if (w->next) w->next->prev = w->prev;
    w->next = w->prev = NULL;
}

/* Runs the callbacks of the waiters in `batch` (already unlinked, marked
 * firing). Called without the lock. */
static void fire_batch(events_waiter *batch)
{
    while (batch) {
        events_waiter *next = batch->next;
        batch->next = NULL;
        batch->fn(batch->arg);
        pthread_mutex_lock(&lock);
        batch->state = W_IDLE;
        pthread_cond_broadcast(&fired_cond);
        pthread_mutex_unlock(&lock);
        batch = next;
    }
}

/* Moves every waiter that is due onto a batch: all of them, those with news
 * (a commit on their topic; topic NULL = any) when `news` is set, or those
 * whose deadline passed. Lock held. */
static events_waiter *collect_list(events_waiter *batch, size_t list, bool news_now,
                                   const char *topic, int64_t now, bool all)
{
    for (events_waiter *w = heads[list], *next; w; w = next) {
        next = w->next;
        bool news = news_now && (!topic || !w->topic[0] || strcmp(w->topic, topic) == 0);
        bool due = all || news || (w->deadline && w->deadline <= now);
        if (!due) continue;
        unlink_waiter(w);
        w->state = W_FIRING;
        w->next = batch;
        batch = w;
    }
    return batch;
}

static events_waiter *collect(bool news_now, const char *topic, int64_t now, bool all)
{
    events_waiter *batch = NULL;
    if (news_now && topic && !all) { /* only that user's slot and the any-topic list */
        batch = collect_list(batch, topic_slot(topic), true, topic, now, false);
        return collect_list(batch, ANY_LIST, true, topic, now, false);
    }
    for (size_t i = 0; i <= ANY_LIST; i++)
        batch = collect_list(batch, i, news_now, topic, now, all);
    return batch;
}

void events_committed(int64_t id, const char *user_id, void *ctx)
{
    (void)ctx, (void)id;
    pthread_mutex_lock(&lock);
    /* The topic's stamp first: a reader that sees the global stamp move
     * must also see its topic's. */
    if (user_id)
        atomic_fetch_add(&topic_stamps[topic_slot(user_id)], 1);
    else
        atomic_fetch_add(&any_stamp, 1);
    atomic_fetch_add(&stamp, 1);
    events_waiter *batch = collect(true, user_id, 0, false);
    pthread_mutex_unlock(&lock);
    fire_batch(batch);
}

int64_t events_stamp(void)
{
    return atomic_load(&stamp);
}

int64_t events_topic_stamp(const char *topic)
{
    return atomic_load(&any_stamp) + atomic_load(&topic_stamps[topic_slot(topic)]);
}

/* events_wait and events_wait_topic; by_topic: after_id is the topic's
 * stamp. */
static bool arm(events_waiter *w, int64_t after_id, const char *topic, int64_t deadline,
                void (*fn)(void *), void *arg, bool by_topic)
{
    pthread_mutex_lock(&lock);
    while (w->state == W_FIRING)
        pthread_cond_wait(&fired_cond, &lock);
    if (w->state == W_ARMED) unlink_waiter(w);
    int64_t now_stamp = by_topic ? events_topic_stamp(topic) : atomic_load(&stamp);
    if (now_stamp > after_id || stopping) {
        w->state = W_IDLE;
        pthread_mutex_unlock(&lock);
        return false;
    }
    w->fn = fn;
    w->arg = arg;
    w->after_id = after_id;
    snprintf(w->topic, sizeof w->topic, "%s", topic ? topic : "");
    w->deadline = deadline;
    w->state = W_ARMED;
    w->list = w->topic[0] ? topic_slot(w->topic) : ANY_LIST;
    w->prev = NULL;
    w->next = heads[w->list];
    if (w->next) w->next->prev = w;
    heads[w->list] = w;
    n_armed++;
    /* Wake the timer thread only when it would sleep past this deadline,
     * or polling must start: with thousands of streams re-arming after a
     * commit, waking it for each (it walks the list) cost O(streams²). */
    if ((deadline && deadline + EVENTS_SLACK_MS < timer_at) || (poll_fn && n_armed == 1))
        pthread_cond_signal(&timer_cond);
    pthread_mutex_unlock(&lock);
    return true;
}

bool events_wait(events_waiter *w, int64_t after_id, const char *topic, int64_t deadline,
                 void (*fn)(void *), void *arg)
{
    return arm(w, after_id, topic, deadline, fn, arg, false);
}

bool events_wait_topic(events_waiter *w, int64_t after_id, const char *topic, int64_t deadline,
                       void (*fn)(void *), void *arg)
{
    return arm(w, after_id, topic, deadline, fn, arg, true);
}

void events_fire(events_waiter *w)
{
    pthread_mutex_lock(&lock);
    bool armed = w->state == W_ARMED;
    if (armed) {
        unlink_waiter(w);
        w->state = W_FIRING;
    }
    pthread_mutex_unlock(&lock);
    if (armed) fire_batch(w);
}

void events_unwait(events_waiter *w)
{
    pthread_mutex_lock(&lock);
    if (w->state == W_ARMED) {
        unlink_waiter(w);
        w->state = W_IDLE;
    }
    while (w->state == W_FIRING)
        pthread_cond_wait(&fired_cond, &lock);
    pthread_mutex_unlock(&lock);
}

/* Asks the store for its newest event id; fires every waiter when it
 * moved. Called with the lock held; drops it around the query. */
static int64_t poll_store(void)
{
    int64_t id = 0;
    pthread_mutex_unlock(&lock);
    int rc = poll_fn(poll_ctx, &id);
    bool moved = rc == 0 && id != polled_id;
    if (moved) polled_id = id; /* only the timer thread touches it */
    if (moved) events_committed(id, NULL, NULL);
    pthread_mutex_lock(&lock);
    return rc == EVENTS_ALONE ? EVENTS_ALONE_MS : EVENTS_POLL_MS;
}

static void *timer_main(void *unused)
{
    (void)unused;
    int64_t next_poll = 0;
    pthread_mutex_lock(&lock);
    while (!stopping) {
        timer_at = 0; /* awake: arming need not signal */
        int64_t now = mono_ms();
        if (poll_fn && n_armed && now >= next_poll) {
            next_poll = now + poll_store();
            continue;
        }
        int64_t next = 0;
        bool expired = false;
        for (size_t i = 0; i <= ANY_LIST && n_armed; i++)
            for (events_waiter *w = heads[i]; w; w = w->next) {
                if (!w->deadline) continue;
                if (w->deadline <= now)
                    expired = true;
                else if (!next || w->deadline < next)
                    next = w->deadline;
            }
        if (expired) {
            events_waiter *batch = collect(false, NULL, now, false);
            pthread_mutex_unlock(&lock);
            fire_batch(batch);
            pthread_mutex_lock(&lock);
            continue;
        }
        if (poll_fn && n_armed && (!next || next_poll < next)) next = next_poll;
        /* Deadlines a little apart fire together (late by at most the
         * slack): thousands of streams' heartbeats then cost a few walks of
         * the list, not one each. */
        int64_t wait = next ? next - now + EVENTS_SLACK_MS : 60000;
        timer_at = now + wait;
        util_cond_wait_until(&timer_cond, &lock, timer_at);
    }
    pthread_mutex_unlock(&lock);
    return NULL;
}

int events_start(int64_t last_event_id, int (*poll)(void *ctx, int64_t *id), void *ctx)
{
    polled_id = last_event_id;
    poll_fn = poll;
    poll_ctx = ctx;
    util_cond_init_mono(&timer_cond);
    pthread_cond_init(&fired_cond, NULL);
    stopping = false;
    return pthread_create(&timer_thread, NULL, timer_main, NULL) == 0 ? 0 : -1;
}

void events_stop(void)
{
    pthread_mutex_lock(&lock);
    stopping = true;
    events_waiter *batch = collect(false, NULL, 0, true);
    pthread_cond_signal(&timer_cond);
    pthread_mutex_unlock(&lock);
    fire_batch(batch);
    pthread_join(timer_thread, NULL);
}
