/*
 * hangup — a watch fires once when the peer closes its end, never for data
 * the peer sends, and never after hangup_remove has returned.
 */
#include <criterion/criterion.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <unistd.h>

#include "hangup.h"

static atomic_int fired;
static void on_hangup(void *arg)
{
    atomic_fetch_add(&fired, 1);
    atomic_store((atomic_int *)arg, 1);
}

static int fds[2];

static void setup(void)
{
    atomic_store(&fired, 0);
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
    cr_assert_eq(hangup_start(), 0);
}

static void teardown(void)
{
    hangup_stop();
    close(fds[0]);
    if (fds[1] >= 0) close(fds[1]);
}

TestSuite(hangup, .init = setup, .fini = teardown);

/* Waits up to 5 s for the watch's flag. */
static bool flagged(atomic_int *flag)
{
    for (int i = 0; i < 500 && !atomic_load(flag); i++)
        usleep(10 * 1000);
    return atomic_load(flag);
}

Test(hangup, fires_once_when_the_peer_closes_not_when_it_writes)
{
    atomic_int flag = 0;
    hangup_watch *w = hangup_add(fds[0], on_hangup, &flag);
    cr_assert_not_null(w);
    cr_assert_eq(write(fds[1], "x", 1), 1);
    usleep(100 * 1000);
    cr_assert_eq(atomic_load(&fired), 0, "data from the peer is not a hangup");
    close(fds[1]);
    fds[1] = -1;
    cr_assert(flagged(&flag), "the peer's close was not seen");
    usleep(100 * 1000);
    cr_assert_eq(atomic_load(&fired), 1, "one call per watch");
    hangup_remove(w);
}

Test(hangup, a_removed_watch_never_fires)
{
    atomic_int flag = 0;
    hangup_watch *w = hangup_add(fds[0], on_hangup, &flag);
    cr_assert_not_null(w);
    hangup_remove(w);
    close(fds[1]);
    fds[1] = -1;
    usleep(200 * 1000);
    cr_assert_eq(atomic_load(&fired), 0);
}

Test(hangup, a_peer_already_gone_fires_at_once)
{
    close(fds[1]);
    fds[1] = -1;
    atomic_int flag = 0;
    hangup_watch *w = hangup_add(fds[0], on_hangup, &flag);
    cr_assert_not_null(w);
    cr_assert(flagged(&flag));
    hangup_remove(w);
}

Test(hangup, refuses_what_it_cannot_watch)
{
    cr_assert_null(hangup_add(-1, on_hangup, NULL));
    hangup_stop();
    cr_assert_null(hangup_add(fds[0], on_hangup, NULL), "not started");
    cr_assert_eq(hangup_start(), 0); /* for the teardown */
}
