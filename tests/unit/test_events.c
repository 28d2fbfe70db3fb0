/*
 * events — waiters fire on news for their topic, on their deadline, or at
 * stop; never twice per arming, and never after events_unwait. A topic's
 * stamp moves with every commit that may concern it.
 */
#include <criterion/criterion.h>
#include <stdatomic.h>
#include <unistd.h>

#include "events.h"
#include "util.h"

static atomic_int fired;
static void on_fire(void *arg)
{
    (void)arg;
    atomic_fetch_add(&fired, 1);
}

static void setup(void)
{
    atomic_store(&fired, 0);
    cr_assert_eq(events_start(100, NULL, NULL), 0);
}

static void teardown(void)
{
    events_stop();
}

TestSuite(events, .init = setup, .fini = teardown);

Test(events, fires_only_for_its_topic)
{
    events_waiter w = {0};
    cr_assert(events_wait(&w, events_stamp(), "usr_A", 0, on_fire, NULL));
    events_committed(101, "usr_B", NULL);
    cr_assert_eq(atomic_load(&fired), 0, "another user's commit must not wake the waiter");
    events_committed(102, "usr_A", NULL);
    cr_assert_eq(atomic_load(&fired), 1);
    events_committed(103, "usr_A", NULL);
    cr_assert_eq(atomic_load(&fired), 1, "a waiter fires once per arming");
}

Test(events, unknown_committer_wakes_everyone)
{
    events_waiter a = {0}, b = {0};
    int64_t seen = events_stamp();
    cr_assert(events_wait(&a, seen, "usr_A", 0, on_fire, NULL));
    cr_assert(events_wait(&b, seen, NULL, 0, on_fire, NULL));
    events_committed(101, NULL, NULL);
    cr_assert_eq(atomic_load(&fired), 2);
}

Test(events, refuses_to_arm_when_news_is_known)
{
    events_waiter w = {0};
    int64_t seen = events_stamp();
    events_committed(105, "usr_B", NULL);
    cr_assert_eq(events_stamp(), seen + 1);
    cr_assert_not(events_wait(&w, seen, "usr_A", 0, on_fire, NULL),
                  "look again: a commit came after the stamp was read");
    cr_assert(events_wait(&w, events_stamp(), "usr_A", 0, on_fire, NULL));
    events_unwait(&w);
    events_committed(106, "usr_A", NULL);
    cr_assert_eq(atomic_load(&fired), 0, "an unwaited waiter never fires");
}

/* Ids from several processes need not arrive in order (PostgreSQL): a
 * commit whose event id is lower than any seen before still wakes. */
Test(events, out_of_order_ids_still_wake)
{
    events_waiter w = {0};
    events_committed(500, "usr_B", NULL);
    cr_assert(events_wait(&w, events_stamp(), "usr_A", 0, on_fire, NULL));
    events_committed(490, "usr_A", NULL);
    cr_assert_eq(atomic_load(&fired), 1);
}

static int64_t store_newest;
static int poll_newest(void *ctx, int64_t *id)
{
    (void)ctx;
    *id = store_newest;
    return 0;
}

/* Commits by another process on SQLite: found by the poll, which wakes
 * everyone when the newest id moved. */
Test(events, poll_wakes_when_the_store_moved)
{
    events_stop();
    store_newest = 100;
    cr_assert_eq(events_start(100, poll_newest, NULL), 0);
    events_waiter w = {0};
    cr_assert(events_wait(&w, events_stamp(), "usr_A", 0, on_fire, NULL));
    usleep(2 * EVENTS_POLL_MS * 1000);
    cr_assert_eq(atomic_load(&fired), 0, "nothing moved");
    store_newest = 101;
    for (int i = 0; i < 200 && atomic_load(&fired) == 0; i++)
        usleep(10 * 1000);
    cr_assert_eq(atomic_load(&fired), 1);
}

Test(events, deadline_fires_without_news)
{
    events_waiter w = {0};
    cr_assert(events_wait(&w, events_stamp(), "usr_A", mono_ms() + 30, on_fire, NULL));
    for (int i = 0; i < 200 && atomic_load(&fired) == 0; i++)
        usleep(10 * 1000);
    cr_assert_eq(atomic_load(&fired), 1);
}

Test(events, stop_fires_every_waiter)
{
    static events_waiter w[3];
    for (int i = 0; i < 3; i++)
        cr_assert(events_wait(&w[i], events_stamp(), "usr_A", 0, on_fire, NULL));
    events_stop();
    cr_assert_eq(atomic_load(&fired), 3);
    cr_assert_eq(events_start(100, NULL, NULL), 0); /* for teardown */
}

Test(events, topic_stamp_moves_for_its_user_and_for_everyone)
{
    int64_t a = events_topic_stamp("usr_A"), b = events_topic_stamp("usr_B");
    events_committed(110, "usr_A", NULL);
    cr_assert_gt(events_topic_stamp("usr_A"), a, "a commit of the user moves its stamp");
    int64_t a1 = events_topic_stamp("usr_A");
    events_committed(111, NULL, NULL);
    cr_assert_gt(events_topic_stamp("usr_A"), a1, "a commit naming no user moves every stamp");
    cr_assert_gt(events_topic_stamp("usr_B"), b);
    /* Another user's commit leaves it alone unless the two share a slot. */
    int64_t b1 = events_topic_stamp("usr_B");
    events_committed(112, "usr_A", NULL);
    cr_assert_geq(events_topic_stamp("usr_B"), b1);
}

Test(events, any_topic_waiter_wakes_on_every_user)
{
    events_waiter any = {0}, a = {0};
    int64_t seen = events_stamp();
    cr_assert(events_wait(&any, seen, NULL, 0, on_fire, NULL));
    cr_assert(events_wait(&a, seen, "usr_A", 0, on_fire, NULL));
    events_committed(120, "usr_B", NULL);
    cr_assert_eq(atomic_load(&fired), 1, "only the waiter of every topic");
    events_unwait(&a);
    events_committed(121, "usr_A", NULL);
    cr_assert_eq(atomic_load(&fired), 1, "an unarmed waiter never fires");
}

Test(events, wait_topic_ignores_other_users_commits)
{
    events_waiter w = {0};
    int64_t seen = events_topic_stamp("usr_A");
    events_committed(130, "usr_B", NULL);
    /* usr_B's commit refuses a global arming, not one by usr_A's stamp
     * (unless the two share a slot, which these names do not) */
    cr_assert_not(events_wait(&w, events_stamp() - 1, "usr_A", 0, on_fire, NULL));
    cr_assert(events_wait_topic(&w, seen, "usr_A", 0, on_fire, NULL));
    events_committed(131, "usr_A", NULL);
    cr_assert_eq(atomic_load(&fired), 1);
    cr_assert_not(events_wait_topic(&w, seen, "usr_A", 0, on_fire, NULL),
                  "usr_A's commit since the stamp refuses the arming");
}

Test(events, fire_wakes_an_armed_waiter_once_and_an_idle_one_never)
{
    events_waiter w = {0};
    events_fire(&w); /* idle: nothing to fire */
    cr_assert_eq(atomic_load(&fired), 0);
    cr_assert(events_wait(&w, events_stamp(), "usr_A", 0, on_fire, NULL));
    events_fire(&w);
    cr_assert_eq(atomic_load(&fired), 1, "armed: fired at once, as at its deadline");
    events_fire(&w);
    events_committed(101, "usr_A", NULL);
    cr_assert_eq(atomic_load(&fired), 1, "one firing per arming");
}
