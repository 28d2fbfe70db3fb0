/*
 * hangup — the watcher of long-lived responses' sockets. See hangup.h for
 * the design.
 */
#include "hangup.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

#define EVENTS_PER_WAIT 64

struct hangup_watch {
    int fd;
    void (*fn)(void *arg); /* NULL once called or removed (mu) */
    void *arg;
    hangup_watch *next; /* in the graveyard */
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static int epfd = -1, wakefd = -1;
static hangup_watch *graveyard;
static bool stopping;
static pthread_t thread;

/* Frees the removed watches: no event of a finished epoll_wait names them. mu held. */
static void bury(void)
{
    while (graveyard) {
        hangup_watch *w = graveyard;
        graveyard = w->next;
        free(w);
    }
}

static void *watch_main(void *unused)
{
    (void)unused;
    struct epoll_event evs[EVENTS_PER_WAIT];
    pthread_mutex_lock(&mu);
    while (!stopping) {
        bury();
        pthread_mutex_unlock(&mu);
        int n = epoll_wait(epfd, evs, EVENTS_PER_WAIT, -1);
        pthread_mutex_lock(&mu);
        for (int i = 0; i < n; i++) {
            hangup_watch *w = evs[i].data.ptr;
            if (!w) { /* the eventfd: a burial or the stop */
                eventfd_t v;
                (void)eventfd_read(wakefd, &v);
            } else if (w->fn) {
                void (*fn)(void *) = w->fn;
                w->fn = NULL;
                fn(w->arg);
            }
        }
    }
    bury();
    pthread_mutex_unlock(&mu);
    return NULL;
}

int hangup_start(void)
{
    epfd = epoll_create1(EPOLL_CLOEXEC);
    wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    if (epfd < 0 || wakefd < 0 || epoll_ctl(epfd, EPOLL_CTL_ADD, wakefd, &ev) != 0) goto fail;
    stopping = false;
    int rc = pthread_create(&thread, NULL, watch_main, NULL);
    if (rc == 0) return 0;
    errno = rc;
fail:;
    int e = errno;
    if (epfd >= 0) close(epfd);
    if (wakefd >= 0) close(wakefd);
    epfd = wakefd = -1;
    errno = e;
    return -1;
}

void hangup_stop(void)
{
    if (epfd < 0) return;
    pthread_mutex_lock(&mu);
    stopping = true;
    pthread_mutex_unlock(&mu);
    (void)eventfd_write(wakefd, 1);
    pthread_join(thread, NULL);
    close(epfd);
    close(wakefd);
    epfd = wakefd = -1;
}

hangup_watch *hangup_add(int fd, void (*fn)(void *arg), void *arg)
{
    if (epfd < 0 || fd < 0) return NULL;
    hangup_watch *w = xcalloc(1, sizeof *w);
    *w = (hangup_watch){.fd = fd, .fn = fn, .arg = arg};
    struct epoll_event ev = {.events = EPOLLRDHUP | EPOLLONESHOT, .data.ptr = w};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
        log_warn("hangup: cannot watch descriptor %d: %s", fd, strerror(errno));
        free(w);
        return NULL;
    }
    return w;
}

void hangup_remove(hangup_watch *w)
{
    if (!w) return;
    pthread_mutex_lock(&mu);
    epoll_ctl(epfd, EPOLL_CTL_DEL, w->fd, NULL);
    w->fn = NULL;
    bool wake = !graveyard;
    w->next = graveyard;
    graveyard = w;
    pthread_mutex_unlock(&mu);
    if (wake) (void)eventfd_write(wakefd, 1);
}
