/*
 * intake — the listening socket and the sorting of new connections into
 * lanes. See intake.h for the design.
 *
 * A connection is here from accept until its first bytes tell its lane
 * (a few microseconds for a client that sends its request at once), in a
 * FIFO that is also its deadline order. One thread does all of it; only
 * the connection counts are shared, with the daemons' threads that report
 * closed connections.
 */
#include "intake.h"

#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

#define ACCEPTS_PER_WAKE 256 /* then look at the connections already waiting */
#define ACCEPT_PAUSE_MS 100  /* out of descriptors: try again after this */
#define ADDR_BUCKETS 1024

/* A connection not yet handed on. */
typedef struct pending {
    int fd;
    struct sockaddr_storage addr;
    socklen_t addr_len;
    int64_t accepted; /* mono_ms */
    struct pending *prev, *next;
} pending;

/* Open connections from one address. */
typedef struct addr_count {
    unsigned char key[17]; /* family tag, then the address */
    unsigned n;
    struct addr_count *next;
} addr_count;

static int listen_fd = -1, epoll_fd = -1, wake_fd = -1;
static pthread_t thread;
static bool running;
static atomic_bool quiescing, stopping;
static intake_handoff_fn handoff_fn;
static int header_timeout;
static pending *head, *tail;
static int64_t accept_paused_until;  /* 0: accepting */
static _Atomic int64_t *accepted_at; /* by descriptor */
static size_t n_accepted_at;

static pthread_mutex_t counts_mu = PTHREAD_MUTEX_INITIALIZER;
static addr_count *buckets[ADDR_BUCKETS];
static unsigned open_total, max_total, max_per_address;

/* ---- connection counts ---- */

static unsigned addr_key(const struct sockaddr *sa, unsigned char key[17])
{
    memset(key, 0, 17);
    if (sa->sa_family == AF_INET) {
        key[0] = 4;
        memcpy(key + 1, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        key[0] = 6;
        memcpy(key + 1, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, 16);
    }
    unsigned h = 2166136261u; /* FNV-1a */
    for (int i = 0; i < 17; i++)
        h = (h ^ key[i]) * 16777619u;
    return h % ADDR_BUCKETS;
}

/* Counts a new connection from sa in, unless a limit is reached. */
static bool count_in(const struct sockaddr *sa)
{
    bool ok = false;
    pthread_mutex_lock(&counts_mu);
    if (open_total >= max_total) goto done;
    if (max_per_address) {
        unsigned char key[17];
        addr_count **b = &buckets[addr_key(sa, key)], *c = *b;
        while (c && memcmp(c->key, key, sizeof key) != 0)
            c = c->next;
        if (c && c->n >= max_per_address) goto done;
        if (!c) {
            c = xcalloc(1, sizeof *c);
            memcpy(c->key, key, sizeof key);
            c->next = *b;
            *b = c;
        }
        c->n++;
    }
    open_total++;
    ok = true;
done:
    pthread_mutex_unlock(&counts_mu);
    return ok;
}

void intake_release(const struct sockaddr *sa)
{
    pthread_mutex_lock(&counts_mu);
    if (open_total) open_total--;
    if (max_per_address && sa) {
        unsigned char key[17];
        addr_count **p = &buckets[addr_key(sa, key)];
        while (*p && memcmp((*p)->key, key, sizeof key) != 0)
            p = &(*p)->next;
        addr_count *c = *p;
        if (c && --c->n == 0) {
            *p = c->next;
            free(c);
        }
    }
    pthread_mutex_unlock(&counts_mu);
}

unsigned intake_open(void)
{
    pthread_mutex_lock(&counts_mu);
    unsigned n = open_total;
    pthread_mutex_unlock(&counts_mu);
    return n;
}

int64_t intake_accepted_at(int fd)
{
    if (fd < 0 || (size_t)fd >= n_accepted_at) return -1;
    return atomic_load_explicit(&accepted_at[fd], memory_order_relaxed);
}

/* ---- sorting ---- */

/* True for the target of an event stream: /api/events or
 * /api/generations/{id}/events, with or without a query. */
static bool is_stream_target(const char *t, const char *eol)
{
    static const char user[] = "/api/events", gen[] = "/api/generations/", tail_[] = "/events";
    const char *end = t;
    while (end < eol && *end != ' ' && *end != '?')
        end++;
    size_t len = (size_t)(end - t);
    if (len == sizeof user - 1 && memcmp(t, user, len) == 0) return true;
    if (len <= sizeof gen - 1 + sizeof tail_ - 1 || memcmp(t, gen, sizeof gen - 1) != 0)
        return false;
    const char *id = t + sizeof gen - 1;
    const char *slash = memchr(id, '/', (size_t)(end - id));
    return slash && slash > id && (size_t)(end - slash) == sizeof tail_ - 1 &&
           memcmp(slash, tail_, sizeof tail_ - 1) == 0;
}

/* The lane of a connection whose first n bytes are head, or -1 while they
 * cannot tell yet. */
static int lane_of(const char *head_, size_t n)
{
    static const char get_api[] = "GET /api/";
    size_t k = n < sizeof get_api - 1 ? n : sizeof get_api - 1;
    if (memcmp(head_, get_api, k) != 0) return INTAKE_API;
    bool too_long = n > INTAKE_STREAM_HEAD; /* more than the stream lane takes */
    size_t seen = too_long ? INTAKE_STREAM_HEAD : n;
    const char *eol = memchr(head_, '\n', seen);
    if (!eol) return too_long ? INTAKE_API : -1;
    if (!is_stream_target(head_ + sizeof "GET " - 1, eol)) return INTAKE_API;
    if (memmem(head_, seen, "\n\r\n", 3) || memmem(head_, seen, "\n\n", 2)) return INTAKE_STREAM;
    return too_long ? INTAKE_API : -1;
}

static void unlink_pending(pending *p)
{
    if (p->prev)
        p->prev->next = p->next;
    else
        head = p->next;
    if (p->next)
        p->next->prev = p->prev;
    else
        tail = p->prev;
}

/* Closes a connection that never reached a daemon. */
static void drop(pending *p)
{
    unlink_pending(p);
    close(p->fd);
    intake_release((struct sockaddr *)&p->addr);
    free(p);
}

static void hand_on(pending *p, enum intake_lane lane)
{
    epoll_ctl(epoll_fd, EPOLL_CTL_DEL, p->fd, NULL);
    unlink_pending(p);
    if (!handoff_fn(p->fd, (struct sockaddr *)&p->addr, p->addr_len, lane))
        intake_release((struct sockaddr *)&p->addr);
    free(p);
}

/* Looks at what a connection has sent so far (leaving it unread). */
static void sort(pending *p, bool hung_up)
{
    char bytes[INTAKE_STREAM_HEAD + 1];
    ssize_t n = recv(p->fd, bytes, sizeof bytes, MSG_PEEK);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        if (hung_up) drop(p);
        return;
    }
    if (n <= 0) {
        drop(p);
        return;
    }
    int lane = lane_of(bytes, (size_t)n);
    if (lane < 0 && hung_up) lane = INTAKE_API; /* nothing more will come: MHD answers */
    if (lane >= 0) hand_on(p, (enum intake_lane)lane);
}

/* ---- the loop ---- */

static void pause_accepting(int64_t now)
{
    epoll_ctl(epoll_fd, EPOLL_CTL_DEL, listen_fd, NULL);
    accept_paused_until = now + ACCEPT_PAUSE_MS;
}

static void watch(int fd, void *ptr, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = ptr};
    epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &ev);
}

static void accept_some(void)
{
    for (int i = 0; i < ACCEPTS_PER_WAKE; i++) {
        pending *p = xcalloc(1, sizeof *p);
        p->addr_len = sizeof p->addr;
        p->fd = accept4(listen_fd, (struct sockaddr *)&p->addr, &p->addr_len,
                        SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (p->fd < 0) {
            int e = errno;
            free(p);
            if (e == EINTR || e == ECONNABORTED) continue;
            if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) {
                log_warn("intake: accept: %s; pausing for %d ms", strerror(e), ACCEPT_PAUSE_MS);
                pause_accepting(mono_ms());
            }
            return;
        }
        if (!count_in((struct sockaddr *)&p->addr)) { /* over a limit: closed at once */
            close(p->fd);
            free(p);
            continue;
        }
        p->accepted = mono_ms();
        if ((size_t)p->fd < n_accepted_at)
            atomic_store_explicit(&accepted_at[p->fd], p->accepted, memory_order_relaxed);
        p->prev = tail;
        if (tail)
            tail->next = p;
        else
            head = p;
        tail = p;
        watch(p->fd, p, EPOLLIN | EPOLLRDHUP | EPOLLET);
    }
}

/* Closes the connections past their header deadline; resumes accepting
 * after a pause. Returns the epoll timeout until the next of these. */
static int expire(int64_t now)
{
    while (head && now - head->accepted >= header_timeout)
        drop(head);
    if (accept_paused_until && now >= accept_paused_until && listen_fd >= 0) {
        accept_paused_until = 0;
        watch(listen_fd, &listen_fd, EPOLLIN);
    }
    int64_t next = head ? head->accepted + header_timeout : -1;
    if (accept_paused_until && (next < 0 || accept_paused_until < next)) next = accept_paused_until;
    return next < 0 ? -1 : (int)(next > now ? next - now : 0);
}

static void *intake_main(void *arg)
{
    (void)arg;
    struct epoll_event evs[64];
    int timeout = -1;
    while (!atomic_load(&stopping)) {
        int n = epoll_wait(epoll_fd, evs, 64, timeout);
        if (n < 0 && errno != EINTR) {
            log_error("intake: epoll_wait: %s", strerror(errno));
            break;
        }
        for (int i = 0; i < n; i++) {
            void *ptr = evs[i].data.ptr;
            if (ptr == &listen_fd) {
                accept_some();
            } else if (ptr == &wake_fd) {
                uint64_t v;
                if (read(wake_fd, &v, sizeof v) < 0) { /* nothing to do: woken anyway */
                }
            } else {
                sort(ptr, evs[i].events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR));
            }
        }
        if (atomic_load(&quiescing) && listen_fd >= 0) {
            close(listen_fd); /* also leaves the epoll set */
            listen_fd = -1;
            accept_paused_until = 0;
        }
        timeout = expire(mono_ms());
    }
    while (head)
        drop(head);
    return NULL;
}

/* ---- start and stop ---- */

static int open_listener(const struct sockaddr *addr, socklen_t addr_len, uint16_t *port)
{
    int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    int on = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    if (addr->sa_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof on);
    struct sockaddr_storage bound;
    socklen_t len = sizeof bound;
    if (bind(fd, addr, addr_len) != 0 || listen(fd, SOMAXCONN) != 0 ||
        getsockname(fd, (struct sockaddr *)&bound, &len) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    *port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                              : ((struct sockaddr_in *)&bound)->sin_port);
    return fd;
}

int intake_listen(const struct sockaddr *addr, socklen_t addr_len, uint16_t *port, char **err)
{
    listen_fd = open_listener(addr, addr_len, port);
    if (listen_fd >= 0) return 0;
    *err = xasprintf("%s", strerror(errno));
    return -1;
}

int intake_start(unsigned total, unsigned per_address, int header_timeout_ms,
                 intake_handoff_fn handoff, char **err)
{
    max_total = total;
    max_per_address = per_address;
    header_timeout = header_timeout_ms;
    handoff_fn = handoff;
    atomic_store(&quiescing, false);
    atomic_store(&stopping, false);
    struct rlimit rl;
    n_accepted_at = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY
                        ? (size_t)rl.rlim_cur
                        : 65536;
    free(accepted_at);
    accepted_at = xcalloc(n_accepted_at, sizeof *accepted_at); /* untouched pages cost nothing */
    epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (listen_fd < 0 || epoll_fd < 0 || wake_fd < 0) {
        *err = xasprintf("%s", listen_fd < 0 ? "not listening" : strerror(errno));
        goto fail;
    }
    watch(listen_fd, &listen_fd, EPOLLIN);
    watch(wake_fd, &wake_fd, EPOLLIN);
    if (pthread_create(&thread, NULL, intake_main, NULL) != 0) {
        *err = xasprintf("cannot start the intake thread");
        goto fail;
    }
    running = true;
    return 0;
fail:
    if (listen_fd >= 0) close(listen_fd);
    if (epoll_fd >= 0) close(epoll_fd);
    if (wake_fd >= 0) close(wake_fd);
    listen_fd = epoll_fd = wake_fd = -1;
    free(accepted_at);
    accepted_at = NULL;
    n_accepted_at = 0;
    return -1;
}

static void wake(void)
{
    uint64_t one = 1;
    if (write(wake_fd, &one, sizeof one) < 0) { /* the counter is already set */
    }
}

void intake_quiesce(void)
{
    if (!running) return;
    atomic_store(&quiescing, true);
    wake();
}

void intake_stop(void)
{
    if (!running) { /* listening only */
        if (listen_fd >= 0) close(listen_fd);
        listen_fd = -1;
        return;
    }
    atomic_store(&stopping, true);
    wake();
    pthread_join(thread, NULL);
    running = false;
    if (listen_fd >= 0) close(listen_fd);
    close(epoll_fd);
    close(wake_fd);
    listen_fd = epoll_fd = wake_fd = -1;
}
