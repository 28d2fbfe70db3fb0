/*
 * events — waiters fire on news for their topic, on their deadline, or at
 * stop; never twice per arming, and never after events_unwait.
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
    cr_assert(events_wait(&w, 100, "usr_A", 0, on_fire, NULL));
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
    cr_assert(events_wait(&a, 100, "usr_A", 0, on_fire, NULL));
    cr_assert(events_wait(&b, 100, NULL, 0, on_fire, NULL));
    events_committed(101, NULL, NULL);
    cr_assert_eq(atomic_load(&fired), 2);
}

Test(events, refuses_to_arm_when_news_is_known)
{
    events_waiter w = {0};
    events_committed(105, "usr_B", NULL);
    cr_assert_eq(events_last_id(), 105);
    cr_assert_not(events_wait(&w, 100, "usr_A", 0, on_fire, NULL), "look again: 105 > 100");
    cr_assert(events_wait(&w, 105, "usr_A", 0, on_fire, NULL));
    events_unwait(&w);
    events_committed(106, "usr_A", NULL);
    cr_assert_eq(atomic_load(&fired), 0, "an unwaited waiter never fires");
}

Test(events, deadline_fires_without_news)
{
    events_waiter w = {0};
    cr_assert(events_wait(&w, 100, "usr_A", mono_ms() + 30, on_fire, NULL));
    for (int i = 0; i < 200 && atomic_load(&fired) == 0; i++)
        usleep(10 * 1000);
    cr_assert_eq(atomic_load(&fired), 1);
}

Test(events, stop_fires_every_waiter)
{
    static events_waiter w[3];
    for (int i = 0; i < 3; i++)
        cr_assert(events_wait(&w[i], 100, "usr_A", 0, on_fire, NULL));
    events_stop();
    cr_assert_eq(atomic_load(&fired), 3);
    cr_assert_eq(events_start(100, NULL, NULL), 0); /* for teardown */
}
