/*
 * http — the HTTP server on libmicrohttpd: reading requests (with body
 * limits and multipart uploads), running handlers, replying (JSON envelope,
 * files), holding requests open (`Prefer: wait`) and Server-Sent Events.
 *
 * DESIGN. libmicrohttpd's event-loop threads only move bytes. When a
 * request is complete its connection is suspended and the handler runs on a
 * small pool of handler threads, so a slow handler (an fsync, a password
 * hash) never stalls other connections; the reply is queued when the
 * connection resumes. The exception is a request that http_set_inline's
 * predicate names: its handler runs on the event-loop thread that read it,
 * saving two thread hand-offs, so it must not wait on anything slow (a
 * create on SQLite: it computes, joins the group commit and holds only its
 * reply for the disk). Work that waits on remote hosts moves to a second
 * pool as a continuation (http_offload: a function and its context), so
 * it cannot starve the first. A handler that must wait for a change calls
 * http_wait: the connection stays suspended, holding no thread, until
 * events.c wakes it. An SSE stream's data comes from its fill callback,
 * which runs on a third pool of its own (it reads the store: a short read,
 * so a fill never queues behind handlers waiting on a durable commit, and
 * thousands of woken streams never hold up API requests); the event loop
 * only sends the buffer it left. With nothing to send the connection stays
 * suspended under an events.c waiter, so idle streams hold no thread
 * either, and a commit queues the next fill.
 *
 * Connections arrive through intake.c, which owns the listening socket and
 * sorts each one into one of two daemons running the same handlers: event
 * streams with small headers into a lane whose connections have a few KiB
 * of memory (and close after their response), everything else into the API
 * lane, sized for any request.
 */
#ifndef SS_HTTP_H
#define SS_HTTP_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

typedef struct http_req http_req; /* one request; owned by http.c */
typedef void (*http_handler_fn)(http_req *req);

/* The largest body a route takes; *files set when it takes a multipart
 * `file` part (which then becomes the body). */
typedef size_t (*http_limit_fn)(const char *method, const char *path, bool *files);

/* Which complete requests run their handler on the event-loop thread
 * (DESIGN); the rest go to the handler pool. */
typedef bool (*http_inline_fn)(http_req *req);

/* Starts listening on "HOST:PORT" (PORT 0 = any) with io_threads event-loop
 * threads and handler_threads handler threads; every complete request goes
 * to dispatch, bodies limited by limit. *port gets the bound port. 0, or
 * -1 with *err (caller frees). */
int http_start(const char *listen, int io_threads, int handler_threads, http_handler_fn dispatch,
               http_limit_fn limit, uint16_t *port, char **err);
/* Before http_start: requests fn says yes to run inline (NULL: none). */
void http_set_inline(http_inline_fn fn);
/* Stops accepting connections; open streams end at their next wake-up. */
void http_quiesce(void);
/* Ends every stream and held request, then stops the server. */
void http_stop(void);
/* True once http_stop began: held requests must answer now. */
bool http_stopping(void);
/* Connections currently streaming SSE (for /metrics). */
int http_sse_clients(void);
/* HTTP connections open now, streams included (for /metrics). */
unsigned http_connections(void);

/* ---- the request (valid until the reply is sent) ---- */
const char *http_method(const http_req *r);
const char *http_path(const http_req *r);
const char *http_request_id(const http_req *r);
const char *http_header(http_req *r, const char *name); /* NULL when absent */
const char *http_query(http_req *r, const char *name);  /* NULL when absent */
const char *http_cookie(http_req *r, const char *name); /* NULL when absent */
/* The body (NUL-terminated; multipart uploads: the `file` part only). */
const char *http_body(const http_req *r, size_t *len);
/* Content-Type of the body (for multipart: of the `file` part). */
const char *http_body_type(http_req *r);
/* The route label for metrics and logs, e.g. "GET /api/generations/{id}". */
void http_set_route(http_req *r, const char *route);
/* Per-request state a handler keeps across http_wait (not freed by http.c
 * unless free_fn is given). */
void http_set_state(http_req *r, void *state, void (*free_fn)(void *));
void *http_state(http_req *r);

/* ---- replies: exactly one per request ---- */
void http_add_header(http_req *r, const char *name, const char *value);
/* {"success":true,"data":data}; steals data. */
void http_reply_json(http_req *r, int status, json_t *data);
/* A body of JSON text as is (idempotent replays). */
void http_reply_json_text(http_req *r, int status, const char *json_text);
/* The SPEC §1 error envelope; steals validation_errors (may be NULL). */
void http_reply_error(http_req *r, int status, const char *code, const char *message,
                      json_t *validation_errors);
void http_reply_bytes(http_req *r, int status, const char *content_type, const void *data,
                      size_t len);
/* Serves a file; 0, or -1 when it cannot be opened (nothing replied).
 * Honours If-None-Match when etag is given. */
int http_reply_file(http_req *r, const char *path, const char *content_type,
                    const char *cache_control, const char *etag);

/* The rest of a request, handed to the pool for slow work. */
typedef void (*http_continue_fn)(http_req *req, void *ctx);
/* Moves the rest of the request to the pool for slow work (waiting on a
 * remote host): once the current handler returns, fn(r, ctx) runs there
 * and replies (or waits) as a handler does. Nothing is dispatched again;
 * ctx carries what the handler already decoded. http.c owns ctx from
 * here on and releases it with free_ctx (may be NULL) after fn has run,
 * or when the request ends first. At most once per request, and not from
 * fn itself. */
void http_offload(http_req *r, http_continue_fn fn, void *ctx, void (*free_ctx)(void *));

/* Parks the request without holding a thread: once the current handler
 * returns, park(r, arg) runs (it queues r somewhere); whoever dequeues it
 * calls http_unpark(r), and fn(r) then runs on a handler thread and
 * replies as a handler does. For work that waits its turn (auth.c's
 * password-hash gate). */
void http_park(http_req *r, http_handler_fn fn, void (*park)(http_req *r, void *arg), void *arg);
void http_unpark(http_req *r);
/* Holds the reply the handler made, without holding a thread: once the
 * handler returns, arm(r, arg) runs (it hands r to whoever decides, e.g.
 * a store_when_durable callback), and http_release(r, true) then sends the
 * reply, or http_release(r, false) replaces it with a 500 saying message.
 * From any thread, exactly once. For answers that may only leave once
 * their write is on disk (group commit). */
void http_hold(http_req *r, void (*arm)(http_req *r, void *arg), void *arg);
void http_release(http_req *r, bool send, const char *message);
/* The client's address as text ("?" when unknown), into out. */
void http_client_ip(http_req *r, char *out, size_t n);

/* Holds the request: fn runs again (on a handler thread) once an event
 * newer than after_id is committed for topic (a user id; NULL: any user)
 * or when deadline (mono_ms) passes. */
void http_wait(http_req *r, int64_t after_id, const char *topic, int64_t deadline,
               http_handler_fn fn);

/* An SSE stream. fill appends whole frames to out; it returns 0 to go on
 * (it is called again after the next commit of the topic, or at once when
 * one came during the fill), 1 when the stream is finished (closed after
 * out is sent). It runs on the stream pool, one call at a time per stream,
 * and may block on the store. free_fn releases ctx when the connection
 * ends. */
typedef int (*http_sse_fill_fn)(void *ctx, buf *out);
/* A fill's third answer: go on, and fill again within HTTP_SSE_SOON_MS
 * even when no commit wakes the stream (state that moves without events
 * of this user, e.g. a queue position). */
#define HTTP_SSE_SOON 2
#define HTTP_SSE_SOON_MS 1000
/* A fill's fourth answer: go on, and fill again as soon as out is sent
 * (it stopped at a limit: more is there now). */
#define HTTP_SSE_MORE 3
/* topic: the user whose commits wake the stream (NULL: every commit).
 * 0 when the stream is the reply (ctx is then owned by it); otherwise
 * nothing is replied and ctx stays the caller's: HTTP_SSE_EUSER when the
 * topic already has --max-streams-per-user streams open, HTTP_SSE_EFULL
 * when the server has as many as it keeps for streams (3/4 of
 * --max-connections, so the API always has connections left). */
#define HTTP_SSE_EUSER (-1)
#define HTTP_SSE_EFULL (-2)
int http_reply_sse(http_req *r, const char *topic, http_sse_fill_fn fill, void (*free_fn)(void *),
                   void *ctx);

#endif
