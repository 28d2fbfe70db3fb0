/*
 * http — libmicrohttpd glue: request intake, the handler pool, replies,
 * held requests and SSE streams. See http.h for the design.
 *
 * A request moves through these states:
 *   RECEIVING  headers and body arrive on an event-loop thread
 *   RUNNING    the connection is suspended; a handler thread runs the handler
 *              (or, for an inline request, the event-loop thread, which
 *              suspends it only when the handler did not reply at once)
 *   WAITING    the handler asked to wait; an events.c waiter is armed
 *   READY      a reply is built; the connection is resumed to queue it
 */
#include "http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "events.h"
#include "hangup.h"
#include "ids.h"
#include "intake.h"
#include "log.h"
#include "metrics.h"

#define DISCARD_LIMIT (64 * 1024 * 1024) /* beyond this, answer 413 and close */
#define HEARTBEAT_MS 15000
#define MAX_EXTRA_HEADERS 8
#define SLOW_THREADS 16  /* mostly asleep on the network */
#define STREAM_THREADS 2 /* SSE fills: short reads, shared among a user's streams */
/* A body at least this large was decoded into many small allocations; once
 * it is freed, glibc is asked to hand the pages back (malloc_trim), or every
 * thread's arena would keep its high-water mark for good. */
#define TRIM_AFTER_BODY (128 * 1024)

enum req_state {
    REQ_RECEIVING,
    REQ_RUNNING,
    REQ_OFFLOADING,
    REQ_WAITING,
    REQ_PARKED,
    REQ_HELD,
    REQ_READY
};

/* A unit of work for a handler pool: a request's next step, or an SSE
 * stream that needs filling. Embedded in its owner. */
typedef struct pool_task {
    void (*run)(struct pool_task *t);
    struct pool_task *next;
} pool_task;

#define OWNER_OF(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

struct http_req {
    struct MHD_Connection *conn;
    bool stream_lane; /* came in on the stream lane's daemon */
    enum req_state state;
    char method[16];
    char *path;
    char request_id[ID_LEN];
    int64_t started;   /* mono_ms */
    const char *route; /* static label */

    buf body;
    size_t body_limit;
    bool too_large;
    bool malformed; /* multipart body that could not be parsed */
    struct MHD_PostProcessor *pp;
    char *part_type; /* Content-Type of the multipart `file` part */

    struct MHD_Response *response;
    int status;
    char *extra[MAX_EXTRA_HEADERS][2];
    int n_extra;

    void *state_ptr;
    void (*state_free)(void *);

    http_handler_fn next;  /* what a handler pool runs next */
    bool offloaded;        /* runs on the slow pool from now on */
    http_continue_fn cont; /* the offloaded rest of the handler, with its context */
    void *cont_ctx;
    void (*cont_free)(void *);
    void (*park_fn)(http_req *r, void *arg); /* http_park, http_hold: hands the request on */
    void *park_arg;
    int64_t wait_after, wait_deadline;
    char wait_topic[ID_LEN];
    events_waiter waiter;
    pool_task task;
};

/* One SSE stream; lives as long as its MHD response. Its fill callback
 * (which reads the store) runs on the stream pool, never on the event loop:
 *   SSE_FILL   the last fill found frames; once they are sent, fill again
 *              at once if it asked for more, else wait as SSE_EMPTY does
 *   SSE_BUSY   the connection is suspended: a fill is queued or running,
 *              or a waiter is armed for the next commit or ping
 *   SSE_EMPTY  the last fill found nothing: ping or wait
 * Waiting with the stamp read before the fill re-fills at once when a
 * commit came meanwhile, so nothing is missed without a fill per send. */
enum sse_state { SSE_FILL, SSE_BUSY, SSE_EMPTY };

typedef struct sse_stream {
    struct MHD_Connection *conn;
    http_sse_fill_fn fill;
    void (*free_fn)(void *);
    void *ctx;
    buf out;
    size_t off;
    bool finished;
    enum sse_state state;
    int64_t seen; /* the topic's (or the global) stamp before the last fill */
    int64_t next_ping;
    bool soon;          /* the last fill asked to be called again soon */
    bool more;          /* ... or at once (also before the first fill) */
    char topic[ID_LEN]; /* wake on commits of this user only */
    events_waiter waiter;
    pool_task task;
    hangup_watch *hangup; /* tells when the client has gone (hangup.h) */
    atomic_bool gone;     /* ... which it has: end the stream, free the slot */
} sse_stream;

/* Two daemons with one set of handlers; intake.c sorts connections into
 * them (the stream lane has a small pool: see STREAM_CONN_MEMORY). */
static struct MHD_Daemon *api_daemon, *stream_daemon;
static http_handler_fn dispatch_fn;
static http_inline_fn inline_fn;
static http_limit_fn limit_fn;
static char *csp_header;
static atomic_bool stopping;
static atomic_int sse_clients;
static atomic_int suspended; /* connections suspended right now */
static int max_streams;      /* open streams in all; the rest of the connections stay for the API */

/* ---- the handler pools ----
 * Three pools with one queue each: `quick` runs every handler first; a
 * handler that must wait on the network (fetching a remote image) hands
 * the rest of its work to `slow` with http_offload, so a slow or hostile
 * remote host cannot tie up the threads every other request needs.
 * `streams` runs SSE fills only: short store reads that must not wait
 * behind handlers held by a durable commit (that queue was most of the
 * commit → frame delay), and that cannot take the API's threads when a
 * commit wakes thousands of streams. */

typedef struct pool {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    pool_task *head, *tail;
    bool closing;
    pthread_t *threads;
    int size;
} pool;

static pool quick = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
static pool slow = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
static pool streams = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

static void suspend_conn(struct MHD_Connection *c)
{
    atomic_fetch_add(&suspended, 1);
    MHD_suspend_connection(c);
}

static void resume_conn(struct MHD_Connection *c)
{
    MHD_resume_connection(c);
    atomic_fetch_sub(&suspended, 1);
}

static void pool_push(pool *p, pool_task *t)
{
    pthread_mutex_lock(&p->lock);
    t->next = NULL;
    if (p->tail)
        p->tail->next = t;
    else
        p->head = t;
    p->tail = t;
    pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->lock);
}

/* The pool a request's next step belongs to. */
static pool *pool_of(const http_req *r)
{
    return r->offloaded ? &slow : &quick;
}

static void push_request(http_req *r)
{
    pool_push(pool_of(r), &r->task);
}

static void wake_waiting(void *arg)
{
    push_request(arg);
}

/* After a step of a request ran, its connection suspended: resumes it with
 * its reply, arms the waiter the handler asked for, or hands the request to
 * the slow pool. */
static void after_step(http_req *r)
{
    if (r->state == REQ_OFFLOADING) {
        r->state = REQ_RUNNING;
        push_request(r); /* now on the slow pool */
        return;
    }
    if (r->state == REQ_PARKED || r->state == REQ_HELD) {
        r->park_fn(r, r->park_arg); /* from here on another thread may unpark or release it */
        return;
    }
    if (r->state == REQ_WAITING) {
        if (!events_wait(&r->waiter, r->wait_after, r->wait_topic, r->wait_deadline, wake_waiting,
                         r))
            push_request(r); /* a commit came meanwhile: look again now */
        return;
    }
    if (!r->response) {
        rlog_error(r->request_id, "handler for %s %s sent no reply", r->method, r->path);
        http_reply_error(r, 500, "INTERNAL_SERVER_ERROR", "the server sent no reply", NULL);
    }
    r->state = REQ_READY;
    resume_conn(r->conn);
}

/* Runs one step of a request on a handler thread. */
static void run_request(http_req *r)
{
    http_handler_fn fn = r->next;
    r->next = NULL;
    r->state = REQ_RUNNING;
    fn(r);
    after_step(r);
}

static void run_request_task(pool_task *t)
{
    run_request(OWNER_OF(t, http_req, task));
}

static void *pool_main(void *arg)
{
    pool *p = arg;
    for (;;) {
        pthread_mutex_lock(&p->lock);
        while (!p->head && !p->closing)
            pthread_cond_wait(&p->cond, &p->lock);
        pool_task *t = p->head;
        if (!t) {
            pthread_mutex_unlock(&p->lock);
            return NULL;
        }
        p->head = t->next;
        if (!p->head) p->tail = NULL;
        pthread_mutex_unlock(&p->lock);
        t->run(t);
    }
}

static void pool_start(pool *p, int size)
{
    p->size = size;
    p->threads = xcalloc((size_t)size, sizeof *p->threads);
    for (int i = 0; i < size; i++)
        pthread_create(&p->threads[i], NULL, pool_main, p);
}

static void pool_stop(pool *p)
{
    pthread_mutex_lock(&p->lock);
    p->closing = true;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
    for (int i = 0; i < p->size; i++)
        pthread_join(p->threads[i], NULL);
    free(p->threads);
}

static void release_continuation(http_req *r)
{
    if (r->cont_free) r->cont_free(r->cont_ctx);
    r->cont = NULL;
    r->cont_ctx = NULL;
    r->cont_free = NULL;
}

/* An offloaded request's first step on the slow pool. */
static void run_continuation(http_req *r)
{
    r->cont(r, r->cont_ctx);
    release_continuation(r);
}

void http_offload(http_req *r, http_continue_fn fn, void *ctx, void (*free_ctx)(void *))
{
    r->offloaded = true;
    r->state = REQ_OFFLOADING;
    r->next = run_continuation;
    r->cont = fn;
    r->cont_ctx = ctx;
    r->cont_free = free_ctx;
}

void http_park(http_req *r, http_handler_fn fn, void (*park)(http_req *r, void *arg), void *arg)
{
    r->state = REQ_PARKED;
    r->next = fn;
    r->park_fn = park;
    r->park_arg = arg;
}

void http_unpark(http_req *r)
{
    push_request(r);
}

void http_hold(http_req *r, void (*arm)(http_req *r, void *arg), void *arg)
{
    r->state = REQ_HELD;
    r->park_fn = arm;
    r->park_arg = arg;
}

void http_release(http_req *r, bool send, const char *message)
{
    if (!send || !r->response) {
        if (r->response) MHD_destroy_response(r->response);
        r->response = NULL;
        http_reply_error(r, 500, "INTERNAL_SERVER_ERROR", message, NULL);
    }
    r->state = REQ_READY;
    resume_conn(r->conn);
}

/* ---- request accessors ---- */

const char *http_method(const http_req *r)
{
    return r->method;
}

const char *http_path(const http_req *r)
{
    return r->path;
}

const char *http_request_id(const http_req *r)
{
    return r->request_id;
}

const char *http_header(http_req *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

void http_client_ip(http_req *r, char *out, size_t n)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    const struct sockaddr *sa = ci ? ci->client_addr : NULL;
    snprintf(out, n, "?");
    if (sa && sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, out,
                  (socklen_t)n);
    else if (sa && sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, out,
                  (socklen_t)n);
}

const char *http_query(http_req *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
}

const char *http_cookie(http_req *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_COOKIE_KIND, name);
}

const char *http_body(const http_req *r, size_t *len)
{
    if (len) *len = r->body.len;
    return r->body.data ? r->body.data : "";
}

const char *http_body_type(http_req *r)
{
    return r->part_type ? r->part_type : http_header(r, "Content-Type");
}

void http_set_route(http_req *r, const char *route)
{
    r->route = route;
}

void http_set_state(http_req *r, void *state, void (*free_fn)(void *))
{
    r->state_ptr = state;
    r->state_free = free_fn;
}

void *http_state(http_req *r)
{
    return r->state_ptr;
}

int http_sse_clients(void)
{
    return atomic_load(&sse_clients);
}

unsigned http_connections(void)
{
    return intake_open();
}

/* ---- replies ---- */

void http_add_header(http_req *r, const char *name, const char *value)
{
    if (r->n_extra == MAX_EXTRA_HEADERS) return;
    r->extra[r->n_extra][0] = xstrdup(name);
    r->extra[r->n_extra][1] = xstrdup(value);
    r->n_extra++;
}

/* Adopts a response built by a reply function: common headers, then the
 * handler's own. */
static pthread_once_t csp_once = PTHREAD_ONCE_INIT;

/* Built on first use: the public URL (an image source) is final by then. */
static void build_csp(void)
{
    csp_header = xasprintf("default-src 'self'; img-src 'self' data: blob: %s; style-src 'self'; "
                           "script-src 'self'; connect-src 'self'; font-src 'self'; "
                           "object-src 'none'; base-uri 'self'; form-action 'self'; "
                           "frame-ancestors 'none'",
                           cfg.public_url);
}

static void set_response(http_req *r, int status, struct MHD_Response *resp)
{
    pthread_once(&csp_once, build_csp);
    if (r->response) { /* a second reply is a bug; keep the first */
        rlog_error(r->request_id, "second reply ignored for %s %s", r->method, r->path);
        MHD_destroy_response(resp);
        return;
    }
    MHD_add_response_header(resp, "X-Request-Id", r->request_id);
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(resp, "Referrer-Policy", "same-origin");
    MHD_add_response_header(resp, "X-Frame-Options", "DENY");
    MHD_add_response_header(resp, "Content-Security-Policy", csp_header);
    for (int i = 0; i < r->n_extra; i++)
        MHD_add_response_header(resp, r->extra[i][0], r->extra[i][1]);
    /* The stream lane's pool holds one stream's headers, not any request's:
     * what comes after the stream goes on a new connection. */
    if (r->stream_lane) MHD_add_response_header(resp, "Connection", "close");
    r->response = resp;
    r->status = status;
}

static void reply_owned(http_req *r, int status, const char *ctype, char *data, size_t len)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, data, MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(resp, "Content-Type", ctype);
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    set_response(r, status, resp);
}

void http_reply_bytes(http_req *r, int status, const char *content_type, const void *data,
                      size_t len)
{
    char *copy = xmalloc(len);
    memcpy(copy, data, len);
    reply_owned(r, status, content_type, copy, len);
}

void http_reply_json_text(http_req *r, int status, const char *json_text)
{
    http_reply_bytes(r, status, "application/json", json_text, strlen(json_text));
}

static void reply_envelope(http_req *r, int status, json_t *envelope)
{
    char *text = json_dumps(envelope, UTIL_JSON_FLAGS);
    json_decref(envelope);
    if (!text) text = xstrdup("{\"success\":false,\"code\":\"INTERNAL_SERVER_ERROR\"}");
    reply_owned(r, status, "application/json", text, strlen(text));
}

void http_reply_json(http_req *r, int status, json_t *data)
{
    reply_envelope(r, status, json_pack("{s:b, s:o}", "success", 1, "data", data));
}

void http_reply_error(http_req *r, int status, const char *code, const char *message,
                      json_t *validation_errors)
{
    if (!validation_errors) validation_errors = json_array();
    reply_envelope(r, status,
                   json_pack("{s:b, s:s, s:s, s:o, s:s}", "success", 0, "code", code, "error",
                             message, "validationErrors", validation_errors, "requestId",
                             r->request_id));
}

int http_reply_file(http_req *r, const char *path, const char *content_type,
                    const char *cache_control, const char *etag)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return -1;
    }
    if (etag) {
        const char *inm = http_header(r, "If-None-Match");
        if (inm && strstr(inm, etag)) {
            close(fd);
            struct MHD_Response *resp =
                MHD_create_response_from_buffer(0, "", MHD_RESPMEM_PERSISTENT);
            MHD_add_response_header(resp, "ETag", etag);
            MHD_add_response_header(resp, "Cache-Control", cache_control);
            set_response(r, 304, resp);
            return 0;
        }
    }
    struct MHD_Response *resp = MHD_create_response_from_fd64((uint64_t)st.st_size, fd);
    MHD_add_response_header(resp, "Content-Type", content_type);
    MHD_add_response_header(resp, "Cache-Control", cache_control);
    if (etag) MHD_add_response_header(resp, "ETag", etag);
    set_response(r, 200, resp);
    return 0;
}

void http_wait(http_req *r, int64_t after_id, const char *topic, int64_t deadline,
               http_handler_fn fn)
{
    r->state = REQ_WAITING;
    r->next = fn;
    r->wait_after = after_id;
    snprintf(r->wait_topic, sizeof r->wait_topic, "%s", topic ? topic : "");
    r->wait_deadline = deadline;
}

/* ---- Server-Sent Events ---- */

/* On the stream pool: fills the stream's buffer from the store, then lets
 * the event loop send it. */
static void sse_fill_task(pool_task *t)
{
    sse_stream *s = OWNER_OF(t, sse_stream, task);
    /* read before looking, so no wake-up is lost; a stream of one user
     * goes by that user's stamp (other users' commits do not re-fill it) */
    s->seen = s->topic[0] ? events_topic_stamp(s->topic) : events_stamp();
    int rc = s->fill(s->ctx, &s->out);
    if (rc != 0 && rc != HTTP_SSE_SOON && rc != HTTP_SSE_MORE) s->finished = true;
    s->soon = rc == HTTP_SSE_SOON;
    s->more = rc == HTTP_SSE_MORE;
    s->state = s->out.len || s->finished ? SSE_FILL : SSE_EMPTY;
    resume_conn(s->conn);
}

/* Suspends the connection and queues a fill. */
static void sse_refill(sse_stream *s)
{
    s->state = SSE_BUSY;
    suspend_conn(s->conn);
    pool_push(&streams, &s->task);
}

static void sse_wake(void *arg)
{
    sse_stream *s = arg;
    pool_push(&streams, &s->task); /* still suspended: the fill resumes it */
}

/* MHD's content reader, on the event loop: sends what the buffer holds;
 * never reads the store itself. */
static ssize_t sse_read(void *cls, uint64_t pos, char *dst, size_t max)
{
    (void)pos;
    sse_stream *s = cls;
    if (atomic_load(&s->gone)) return MHD_CONTENT_READER_END_WITH_ERROR;
    for (;;) {
        if (s->off < s->out.len) {
            size_t n = s->out.len - s->off;
            if (n > max) n = max;
            memcpy(dst, s->out.data + s->off, n);
            s->off += n;
            return (ssize_t)n;
        }
        s->out.len = 0;
        s->off = 0;
        if (s->finished || atomic_load(&stopping)) return MHD_CONTENT_READER_END_OF_STREAM;
        if (s->state == SSE_FILL && s->more) {
            sse_refill(s);
            return 0;
        }
        int64_t now = mono_ms();
        if (now >= s->next_ping) {
            buf_append(&s->out, ": ping\n\n", 8);
            s->next_ping = now + HEARTBEAT_MS;
            continue;
        }
        s->state = SSE_BUSY;
        suspend_conn(s->conn);
        int64_t deadline = s->next_ping;
        if (s->soon && now + HTTP_SSE_SOON_MS < deadline) deadline = now + HTTP_SSE_SOON_MS;
        bool armed = s->topic[0]
                         ? events_wait_topic(&s->waiter, s->seen, s->topic, deadline, sse_wake, s)
                         : events_wait(&s->waiter, s->seen, NULL, deadline, sse_wake, s);
        if (!armed) pool_push(&streams, &s->task); /* a commit came since the last fill */
        /* a hangup seen between the check above and the arming fired nothing */
        if (armed && atomic_load(&s->gone)) events_fire(&s->waiter);
        return 0;
    }
}

static void topic_release(const char *topic);

/* On hangup's thread: the client has gone. A waiting stream is woken as
 * if its heartbeat were due; sse_read then ends it. */
static void sse_hangup(void *arg)
{
    sse_stream *s = arg;
    atomic_store(&s->gone, true);
    events_fire(&s->waiter);
}

static void sse_free(void *cls)
{
    sse_stream *s = cls;
    hangup_remove(s->hangup); /* first: sse_hangup fires the waiter */
    events_unwait(&s->waiter);
    if (s->free_fn) s->free_fn(s->ctx);
    buf_free(&s->out);
    topic_release(s->topic);
    free(s);
}

/* ---- open streams per user ----
 * A small table of (topic, count): checked and counted in one step when a
 * stream starts, released when it ends. */

typedef struct topic_count {
    char topic[ID_LEN];
    int n;
} topic_count;

static pthread_mutex_t topics_mu = PTHREAD_MUTEX_INITIALIZER;
static topic_count *topics;
static size_t n_topics, cap_topics;

/* Counts a stream of topic in, unless the user or the server is at its cap. */
static int topic_admit(const char *topic)
{
    int rc = 0;
    pthread_mutex_lock(&topics_mu);
    size_t i = 0;
    while (i < n_topics && strcmp(topics[i].topic, topic) != 0)
        i++;
    if (atomic_load(&sse_clients) >= max_streams) {
        rc = HTTP_SSE_EFULL;
    } else if (cfg.max_streams_per_user > 0 && i < n_topics &&
               topics[i].n >= cfg.max_streams_per_user) {
        rc = HTTP_SSE_EUSER;
    } else {
        if (i == n_topics) {
            if (n_topics == cap_topics) {
                cap_topics = cap_topics ? cap_topics * 2 : 64;
                topics = xrealloc(topics, cap_topics * sizeof *topics);
            }
            snprintf(topics[n_topics].topic, sizeof topics[n_topics].topic, "%s", topic);
            topics[n_topics++].n = 0;
        }
        topics[i].n++;
        atomic_fetch_add(&sse_clients, 1);
    }
    pthread_mutex_unlock(&topics_mu);
    return rc;
}

static void topic_release(const char *topic)
{
    pthread_mutex_lock(&topics_mu);
    for (size_t i = 0; i < n_topics; i++) {
        if (strcmp(topics[i].topic, topic) != 0) continue;
        if (--topics[i].n == 0) topics[i] = topics[--n_topics];
        break;
    }
    atomic_fetch_sub(&sse_clients, 1);
    pthread_mutex_unlock(&topics_mu);
}

int http_reply_sse(http_req *r, const char *topic, http_sse_fill_fn fill, void (*free_fn)(void *),
                   void *ctx)
{
    int admitted = topic_admit(topic ? topic : "");
    if (admitted != 0) return admitted;
    sse_stream *s = xcalloc(1, sizeof *s);
    snprintf(s->topic, sizeof s->topic, "%s", topic ? topic : "");
    s->conn = r->conn;
    s->fill = fill;
    s->free_fn = free_fn;
    s->ctx = ctx;
    s->next_ping = mono_ms() + HEARTBEAT_MS;
    s->state = SSE_FILL;
    s->more = true; /* the first fill */
    s->task.run = sse_fill_task;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (ci) s->hangup = hangup_add(ci->connect_fd, sse_hangup, s);
    buf_append(&s->out, "retry: 2000\n\n", 13);
    struct MHD_Response *resp =
        /* block size: small, the frames go straight into the pool's buffer */
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 1024, sse_read, s, sse_free);
    MHD_add_response_header(resp, "Content-Type", "text/event-stream; charset=utf-8");
    MHD_add_response_header(resp, "Cache-Control", "no-cache, no-store");
    MHD_add_response_header(resp, "X-Accel-Buffering", "no");
    set_response(r, 200, resp);
    return 0;
}

/* ---- slow clients ----
 * MHD's connection timeout counts idle time only: a client that trickles a
 * byte now and then is never idle. Every connection is tracked from accept:
 * it has --header-timeout to send its headers (again after each request,
 * which also bounds keep-alive idling) and --body-timeout for the body.
 * Once dispatched it is exempt (handlers, held requests and streams end by
 * their own rules). A reaper thread shuts down the socket of one that is
 * late; MHD then sees the end of the stream and closes it. The list lock is
 * held across shutdown(), and MHD reports a connection closed before it
 * closes its socket, so a reused descriptor is never hit. */

enum conn_phase { CONN_HEADERS, CONN_BODY, CONN_ACTIVE, CONN_SHUT };

typedef struct conn_track {
    int fd;
    struct sockaddr_in6 addr; /* the peer (an IPv4 one fits too), for intake_release */
    enum conn_phase phase;
    int64_t since; /* mono_ms the phase began */
    struct conn_track *prev, *next;
} conn_track;

static pthread_mutex_t conns_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t reaper_cv; /* monotonic */
static conn_track *conns;
static pthread_t reaper;
static bool reaper_running, reaper_stop;
static int64_t reaper_at = INT64_MAX; /* when the reaper wakes next (mono_ms) */

/* When t is late (mono_ms), or INT64_MAX: it is exempt. conns_mu held. */
static int64_t conn_deadline(const conn_track *t)
{
    if (t->fd < 0) return INT64_MAX;
    if (t->phase == CONN_HEADERS) return t->since + (int64_t)cfg.header_timeout * 1000;
    if (t->phase == CONN_BODY) return t->since + (int64_t)cfg.body_timeout * 1000;
    return INT64_MAX;
}

/* Wakes the reaper when t falls due before it would wake. conns_mu held. */
static void reaper_watch(const conn_track *t)
{
    if (conn_deadline(t) < reaper_at) pthread_cond_signal(&reaper_cv);
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    (void)cls;
    pthread_mutex_lock(&conns_mu);
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        const union MHD_ConnectionInfo *ai =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        conn_track *t = xcalloc(1, sizeof *t);
        t->fd = ci ? ci->connect_fd : -1;
        if (ai && ai->client_addr)
            memcpy(&t->addr, ai->client_addr,
                   ai->client_addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                          : sizeof(struct sockaddr_in));
        t->phase = CONN_HEADERS;
        int64_t accepted = intake_accepted_at(t->fd); /* the header deadline runs from accept */
        t->since = accepted >= 0 ? accepted : mono_ms();
        t->next = conns;
        if (conns) conns->prev = t;
        conns = t;
        *socket_context = t;
        reaper_watch(t);
    } else if (*socket_context) {
        conn_track *t = *socket_context;
        if (t->prev)
            t->prev->next = t->next;
        else
            conns = t->next;
        if (t->next) t->next->prev = t->prev;
        intake_release((struct sockaddr *)&t->addr);
        free(t);
        *socket_context = NULL;
    }
    pthread_mutex_unlock(&conns_mu);
}

static void conn_phase(struct MHD_Connection *conn, enum conn_phase phase)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    conn_track *t = ci ? ci->socket_context : NULL;
    if (!t) return;
    pthread_mutex_lock(&conns_mu);
    if (t->phase != CONN_SHUT) {
        t->phase = phase;
        t->since = mono_ms();
        reaper_watch(t);
    }
    pthread_mutex_unlock(&conns_mu);
}

static void *reaper_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&conns_mu);
    while (!reaper_stop) {
        int64_t now = mono_ms(), next = INT64_MAX;
        for (conn_track *t = conns; t; t = t->next) {
            int64_t due = conn_deadline(t);
            if (due > now) {
                if (due < next) next = due;
                continue;
            }
            shutdown(t->fd, SHUT_RDWR);
            t->phase = CONN_SHUT;
        }
        reaper_at = next; /* idle: no deadline, no wake-up */
        util_cond_wait_until(&reaper_cv, &conns_mu, next);
    }
    pthread_mutex_unlock(&conns_mu);
    return NULL;
}

/* ---- intake ---- */

static enum MHD_Result post_iter(void *cls, enum MHD_ValueKind kind, const char *key,
                                 const char *filename, const char *content_type,
                                 const char *transfer_encoding, const char *data, uint64_t off,
                                 size_t size)
{
    (void)kind, (void)filename, (void)transfer_encoding, (void)off;
    http_req *r = cls;
    if (strcmp(key, "file") != 0) return MHD_YES;
    if (!r->part_type && content_type) r->part_type = xstrdup(content_type);
    if (r->body.len + size > r->body_limit)
        r->too_large = true;
    else if (size)
        buf_append(&r->body, data, size);
    return MHD_YES;
}

static http_req *new_request(struct MHD_Connection *conn, const char *url, const char *method,
                             bool stream_lane)
{
    http_req *r = xcalloc(1, sizeof *r);
    r->conn = conn;
    r->stream_lane = stream_lane;
    r->task.run = run_request_task;
    r->started = mono_ms();
    snprintf(r->method, sizeof r->method, "%s", method);
    r->path = xstrdup(url);
    ids_new("req", r->request_id);
    bool files = false;
    r->body_limit = limit_fn(method, url, &files);
    const char *ctype = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Type");
    if (files && ctype && strncasecmp(ctype, "multipart/form-data", 19) == 0)
        r->pp = MHD_create_post_processor(conn, 64 * 1024, post_iter, r);
    return r;
}

/* ---- request framing (RFC 9112 §6) ---- */

typedef struct framing {
    int n_length, n_encoding;
    const char *encoding;
} framing;

static enum MHD_Result count_framing(void *cls, enum MHD_ValueKind kind, const char *key,
                                     const char *value)
{
    (void)kind;
    framing *f = cls;
    if (strcasecmp(key, "Content-Length") == 0) f->n_length++;
    if (strcasecmp(key, "Transfer-Encoding") == 0) {
        f->n_encoding++;
        f->encoding = value;
    }
    return MHD_YES;
}

/* NULL when the body's framing is unambiguous, else what is wrong. Both
 * Content-Length and Transfer-Encoding, several Content-Lengths, or a
 * coding other than chunked leave the end of the body to guesswork, and a
 * request smuggled behind it could be read as another one. */
static const char *framing_problem(struct MHD_Connection *conn)
{
    framing f = {0};
    MHD_get_connection_values(conn, MHD_HEADER_KIND, count_framing, &f);
    if (f.n_length && f.n_encoding) return "both Content-Length and Transfer-Encoding";
    if (f.n_length > 1) return "more than one Content-Length";
    if (f.n_encoding > 1 || (f.n_encoding && strcasecmp(f.encoding, "chunked") != 0))
        return "a Transfer-Encoding other than chunked";
    return NULL;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_size, void **con_cls)
{
    (void)version;
    http_req *r = *con_cls;
    if (!r) {
        conn_phase(conn, CONN_BODY);
        r = *con_cls = new_request(conn, url, method, cls == &stream_daemon);
        const char *bad = framing_problem(conn);
        if (bad) { /* answer now, unread body and all, and close (RFC 9112 §6.3) */
            char *m = xasprintf("malformed request framing: %s", bad);
            http_add_header(r, "Connection", "close");
            http_reply_error(r, 400, "VALIDATION_ERROR", m, NULL);
            free(m);
            r->too_large = true; /* drop whatever body arrives */
            return MHD_queue_response(conn, 400, r->response);
        }
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
        if (cl && strtoull(cl, NULL, 10) > DISCARD_LIMIT) {
            r->too_large = true;
            http_reply_error(r, 413, "PAYLOAD_TOO_LARGE", "request body is too large", NULL);
            return MHD_queue_response(conn, 413, r->response);
        }
        return MHD_YES;
    }
    if (r->state == REQ_RECEIVING && *upload_size) {
        if (r->pp) {
            if (MHD_post_process(r->pp, upload_data, *upload_size) != MHD_YES) r->malformed = true;
        } else if (r->body.len + *upload_size > r->body_limit) {
            r->too_large = true; /* keep reading, drop the bytes, answer 413 at the end */
        } else {
            buf_append(&r->body, upload_data, *upload_size);
        }
        *upload_size = 0;
        return MHD_YES;
    }
    if (r->state == REQ_RECEIVING) {
        conn_phase(conn, CONN_ACTIVE);
        if (r->too_large || r->body.len > r->body_limit) {
            http_reply_error(r, 413, "PAYLOAD_TOO_LARGE", "request body is too large", NULL);
            return MHD_queue_response(conn, 413, r->response);
        }
        if (r->malformed) {
            http_reply_error(r, 400, "VALIDATION_ERROR", "malformed multipart body", NULL);
            return MHD_queue_response(conn, 400, r->response);
        }
        r->state = REQ_RUNNING;
        if (inline_fn && inline_fn(r)) {
            dispatch_fn(r);
            if (r->state == REQ_RUNNING && r->response) { /* answered at once */
                r->state = REQ_READY;
                return MHD_queue_response(conn, (unsigned)r->status, r->response);
            }
            suspend_conn(conn); /* before anything armed can resume it */
            after_step(r);
            return MHD_YES;
        }
        r->next = dispatch_fn;
        suspend_conn(conn);
        push_request(r);
        return MHD_YES;
    }
    if (r->state == REQ_READY && r->response)
        return MHD_queue_response(conn, (unsigned)r->status, r->response);
    return MHD_YES;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls, (void)toe;
    conn_phase(conn, CONN_HEADERS); /* the next request's headers, on keep-alive */
    http_req *r = *con_cls;
    if (!r) return;
    double secs = (double)(mono_ms() - r->started) / 1000.0;
    int status = r->response ? r->status : 0;
    metrics_request(r->route, status, secs);
    if (!str_has_prefix(r->path, "/media/") || status >= 400)
        LOG_AT(status >= 500 ? LOG_ERROR : LOG_INFO, r->request_id, "%s %s %d %.1fms", r->method,
               r->path, status, secs * 1000);
    events_unwait(&r->waiter); /* a waiter that just fired may still be returning */
    release_continuation(r);
    if (r->response) MHD_destroy_response(r->response);
    if (r->pp) MHD_destroy_post_processor(r->pp);
    if (r->state_free) r->state_free(r->state_ptr);
    for (int i = 0; i < r->n_extra; i++) {
        free(r->extra[i][0]);
        free(r->extra[i][1]);
    }
    bool trim = r->body.cap >= TRIM_AFTER_BODY;
    buf_free(&r->body);
    free(r->part_type);
    free(r->path);
    free(r);
    *con_cls = NULL;
    if (trim) malloc_trim(0);
}

/* ---- start and stop ---- */

static int parse_listen(const char *listen, struct sockaddr_storage *ss, char **err)
{
    char host[256];
    const char *colon = strrchr(listen, ':');
    if (!colon || colon == listen || !colon[1]) {
        *err = xasprintf("--listen: expected HOST:PORT, got \"%s\"", listen);
        return -1;
    }
    size_t hl = (size_t)(colon - listen);
    if (listen[0] == '[' && hl >= 2 && listen[hl - 1] == ']') {
        listen++;
        hl -= 2;
    }
    if (hl >= sizeof host) hl = sizeof host - 1;
    memcpy(host, listen, hl);
    host[hl] = '\0';
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV},
                    *res;
    int rc = getaddrinfo(host, colon + 1, &hints, &res);
    if (rc != 0) {
        *err = xasprintf("--listen %s: %s", listen, gai_strerror(rc));
        return -1;
    }
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    return 0;
}

/* Each connection's libmicrohttpd memory pool (request headers, read and
 * write buffers; bodies stream through it to the handlers). 16 KiB takes an
 * 8 KB header line (8 KiB refuses an 8 KB bearer key with MHD's own 431).
 * It is most of what an open SSE stream costs (about 1 KiB of RSS per KiB
 * of pool), so the stream lane's is much smaller: enough for a header block
 * of INTAKE_STREAM_HEAD and the stream's response headers; its frames are
 * written through it in pieces (bench/README.md, fan-out). */
#define CONN_MEMORY (16 * 1024)
#define STREAM_CONN_MEMORY (3 * 1024)

/* Connections at once: what the descriptor limit allows (main.c raises the
 * soft limit to the hard one), less a reserve for the store, media files and
 * outbound transfers. */
static unsigned conn_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) return 4000;
    return rl.rlim_cur > 1280 ? (unsigned)(rl.rlim_cur - 256) : 1024;
}

/* intake.c's hand-off: the connection joins its lane's daemon. */
static bool join_lane(int fd, const struct sockaddr *addr, socklen_t addr_len,
                      enum intake_lane lane)
{
    struct MHD_Daemon *d = lane == INTAKE_STREAM ? stream_daemon : api_daemon;
    return MHD_add_connection(d, fd, addr, addr_len) == MHD_YES;
}

/* Starts one lane's daemon; tag (&api_daemon or &stream_daemon) tells its
 * requests which lane they came in on. */
static struct MHD_Daemon *start_lane(void *tag, unsigned flags, int threads, unsigned conns,
                                     size_t memory)
{
    return MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, tag, MHD_OPTION_THREAD_POOL_SIZE, (unsigned)threads,
        MHD_OPTION_CONNECTION_LIMIT, conns, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)120,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, memory, MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, NULL, MHD_OPTION_END);
}

void http_set_inline(http_inline_fn fn)
{
    inline_fn = fn;
}

int http_start(const char *listen, int io_threads, int handler_threads, http_handler_fn dispatch,
               http_limit_fn limit, uint16_t *port, char **err)
{
    struct sockaddr_storage ss;
    if (parse_listen(listen, &ss, err) != 0) return -1;
    socklen_t len =
        ss.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    char *why = NULL;
    if (intake_listen((struct sockaddr *)&ss, len, port, &why) != 0) {
        *err = xasprintf("cannot listen on %s: %s", listen, why);
        free(why);
        return -1;
    }
    /* Settled before anything is accepted: a derived public URL (the CSP,
     * the stream lane's memory) names the bound port from the first request. */
    if (cfg.public_url_derived) {
        const char *colon = strrchr(listen, ':');
        free(cfg.public_url);
        cfg.public_url = xasprintf("http://%.*s:%u", (int)(colon - listen), listen, *port);
    }
    dispatch_fn = dispatch;
    limit_fn = limit;
    pool_start(&quick, handler_threads);
    pool_start(&slow, SLOW_THREADS);
    pool_start(&streams, STREAM_THREADS);
    if (hangup_start() != 0) /* streams then end at a failed write, as before */
        log_warn("cannot watch streams for hangups: %s", strerror(errno));

    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_NO_LISTEN_SOCKET | MHD_USE_ITC | MHD_USE_ERROR_LOG;
    if (ss.ss_family == AF_INET6) flags |= MHD_USE_IPv6;
    /* --max-connections, within what the descriptor limit allows. */
    unsigned conns = conn_limit();
    if ((unsigned)cfg.max_connections < conns) conns = (unsigned)cfg.max_connections;
    max_streams = (int)(conns / 4 * 3);
    reaper_stop = false;
    reaper_at = INT64_MAX;
    util_cond_init_mono(&reaper_cv);
    reaper_running = pthread_create(&reaper, NULL, reaper_main, NULL) == 0;
    api_daemon = start_lane(&api_daemon, flags, io_threads, conns, CONN_MEMORY);
    /* the stream's response headers carry the public URL (in the CSP) */
    size_t stream_memory = STREAM_CONN_MEMORY + strlen(cfg.public_url);
    stream_daemon = start_lane(&stream_daemon, flags, io_threads, conns, stream_memory);
    if (!api_daemon || !stream_daemon) {
        *err = xasprintf("cannot start the HTTP server: %s", strerror(errno));
        goto fail;
    }
    if (intake_start(conns, (unsigned)cfg.max_connections_per_address, cfg.header_timeout * 1000,
                     join_lane, &why) != 0) {
        *err = xasprintf("cannot accept on %s: %s", listen, why);
        free(why);
        goto fail;
    }
    return 0;
fail:              /* the caller exits: only the daemons' threads are stopped here */
    intake_stop(); /* the listening socket */
    if (api_daemon) MHD_stop_daemon(api_daemon);
    if (stream_daemon) MHD_stop_daemon(stream_daemon);
    api_daemon = stream_daemon = NULL;
    return -1;
}

void http_quiesce(void)
{
    intake_quiesce();
}

void http_stop(void)
{
    if (!api_daemon) return;
    atomic_store(&stopping, true);
    intake_stop();
    events_stop(); /* wakes every stream and held request */
    for (int i = 0; i < 500 && atomic_load(&suspended) > 0; i++)
        usleep(10 * 1000);
    pool_stop(&quick);
    pool_stop(&slow);
    pool_stop(&streams);
    MHD_stop_daemon(api_daemon);
    MHD_stop_daemon(stream_daemon);
    api_daemon = stream_daemon = NULL;
    hangup_stop(); /* the daemons have freed every stream */
    if (reaper_running) {
        pthread_mutex_lock(&conns_mu);
        reaper_stop = true;
        pthread_cond_signal(&reaper_cv);
        pthread_mutex_unlock(&conns_mu);
        pthread_join(reaper, NULL);
        pthread_cond_destroy(&reaper_cv);
        reaper_running = false;
    }
    free(csp_header);
}

bool http_stopping(void)
{
    return atomic_load(&stopping);
}
