/*
 * hangup — tells when the client of a long-lived response has gone.
 *
 * An SSE stream spends most of its life suspended (http.c), and
 * libmicrohttpd does not poll a suspended connection: a client that closes
 * its end was noticed only when a later write failed — the second
 * heartbeat, up to 30 s — and until then it held its slot under
 * --max-streams-per-user and the server's stream cap, so a user who
 * reloaded the studio a few times was refused a stream. hangup watches
 * such sockets in an epoll set of its own for the peer's FIN or an error
 * (EPOLLRDHUP, EPOLLHUP, EPOLLERR; one-shot, never reading them) and calls
 * the watch's function once. A client that half-closes its side on
 * purpose and goes on reading counts as gone too; HTTP clients do not do
 * that, and an EventSource reconnects.
 *
 * DESIGN (threads). One thread, started by hangup_start, blocks in
 * epoll_wait. `mu` guards every watch's fn and the graveyard. A function
 * runs on that thread with `mu` held, so hangup_remove (which takes `mu`)
 * returns only when it is not running and never will; it must be quick and
 * must not call back into hangup. A removed watch is not freed at once —
 * events the thread already took out of epoll may name it — but goes to
 * the graveyard with its fn cleared; the thread frees the graveyard before
 * its next epoll_wait, when no event can name it any more. An eventfd in
 * the set wakes it for that and for hangup_stop.
 *
 * The descriptor must stay open until hangup_remove has returned (http.c
 * removes a stream's watch when its response is freed, which
 * libmicrohttpd does before it closes the socket), so a reused descriptor
 * number is never watched by mistake.
 */
#ifndef SS_HANGUP_H
#define SS_HANGUP_H

typedef struct hangup_watch hangup_watch;

int hangup_start(void); /* 0, or -1 (errno) when the thread or the epoll set cannot start */
void hangup_stop(void); /* after every watch is removed */

/* Calls fn(arg) once, on hangup's thread, when fd's peer closes its end or
 * the socket fails. NULL when it cannot watch (not started, or epoll
 * refused the descriptor): the caller goes on without, as before. */
hangup_watch *hangup_add(int fd, void (*fn)(void *arg), void *arg);
/* Stops watching; on return fn is not running and will not run. NULL: no-op. */
void hangup_remove(hangup_watch *w);

#endif
