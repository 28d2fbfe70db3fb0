/*
 * api_gen — the generation routes: models, uploads, create (step 1),
 * generate (step 2, and the legacy one-step form), get, list, cancel,
 * retry, delete, and the live event streams. The generation routes decode
 * the request into a gen_service_req, call gen_service.c, and encode its
 * result; `Prefer: wait` (holding the connection) stays here.
 *
 * DESIGN (event streams). Each stream's fill runs on http.c's stream pool
 * (2 threads; a fill waiting for another's read holds one). A commit wakes
 * every stream of its user at once, so the user streams (/api/events)
 * share their store read: one slot per user (hashed into SHARED_SLOTS,
 * under one mutex) holds the last read of that user's events, tagged with
 * events_topic_stamp() taken before it. A fill whose user's stamp has not
 * moved since takes the events past its own cursor from the slot; while
 * one fill reads, the others of that user wait for it on a condition
 * variable instead of reading too. A read larger than SHARED_MAX events,
 * or a stream whose cursor is behind the slot's, reads on its own, as
 * every stream did before.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api.h"
#include "events.h"
#include "gen_service.h"
#include "log.h"
#include "media.h"
#include "provider.h"
#include "ratelimit.h"
#include "store.h"
#include "util.h"

#define MAX_WAIT_SECONDS 60

/* ---- helpers ---- */

int api_prefer_wait(const char *prefer)
{
    if (!prefer) return -1;
    /* The preference "wait" (RFC 7240): at the start or after a separator,
     * so "nowait=5" is not it. */
    const char *w = prefer;
    for (;;) {
        w = strcasestr(w, "wait=");
        if (!w) return -1;
        if (w == prefer || strchr(",; \t", w[-1])) break;
        w += 5;
    }
    const char *d = w + 5;
    long n = 0;
    while (*d == ' ' || *d == '\t')
        d++;
    if (*d == '-') return 0;
    if (*d == '+') d++;
    for (; *d >= '0' && *d <= '9'; d++) /* saturates: no overflow */
        if ((n = n * 10 + (*d - '0')) > MAX_WAIT_SECONDS) return MAX_WAIT_SECONDS;
    return (int)n;
}

int api_last_event_id(const char *value, int64_t *out)
{
    int64_t v = 0;
    if (!value || !*value) return -1;
    for (const char *c = value; *c; c++) {
        if (*c < '0' || *c > '9') return -1;
        if (v > (INT64_MAX - (*c - '0')) / 10) return -1; /* out of range */
        v = v * 10 + (*c - '0');
    }
    *out = v;
    return 0;
}

/* "wait=N" from a Prefer header; -1 when absent. */
static int prefer_wait(http_req *r)
{
    return api_prefer_wait(http_header(r, "Prefer"));
}

typedef struct wait_state {
    char gen_id[ID_LEN];
    int64_t deadline;
    int seconds;
} wait_state;

/* One look at a held `Prefer: wait` request: answer when the generation is
 * terminal or time is up, else wait for the next committed change. */
static void wait_step(http_req *r)
{
    wait_state *st = http_state(r);
    int64_t seen = events_stamp();
    gen_record g;
    if (store_gen_get(api_store, st->gen_id, &g) != STORE_OK) {
        http_reply_error(r, 500, "INTERNAL_SERVER_ERROR", "could not load the generation", NULL);
        return;
    }
    bool done = gen_status_terminal(g.status);
    if (done || mono_ms() >= st->deadline || http_stopping()) {
        char pref[32];
        snprintf(pref, sizeof pref, "wait=%d", st->seconds);
        http_add_header(r, "Preference-Applied", pref);
        json_t *data = gen_record_to_json(&g);
        json_object_set_new(data, "generationId", json_string(g.id));
        http_reply_json(r, done ? 200 : 202, data);
    } else {
        http_wait(r, seen, g.user_id, st->deadline, wait_step);
    }
    gen_record_free(&g);
}

/* Replies with `data` (stolen) now, or holds the request when Prefer: wait
 * asks. */
static void reply_or_wait(http_req *r, int status, json_t *data, const char *gen_id)
{
    int secs = prefer_wait(r);
    if (secs < 0) {
        http_reply_json(r, status, data);
        return;
    }
    json_decref(data);
    wait_state *st = xcalloc(1, sizeof *st);
    snprintf(st->gen_id, sizeof st->gen_id, "%s", gen_id);
    st->seconds = secs;
    st->deadline = mono_ms() + (int64_t)secs * 1000;
    http_set_state(r, st, free);
    wait_step(r);
}

/* The RateLimit-* headers of a create's answer (SPEC §4), when a limit
 * applies; Retry-After too when it refused. */
static void rate_headers(http_req *r, const ratelimit_verdict *v)
{
    if (!v->applies) return;
    const struct {
        const char *name;
        int64_t value;
        bool on;
    } h[] = {
        {"RateLimit-Limit", v->limit, true},
        {"RateLimit-Remaining", v->remaining, true},
        {"RateLimit-Reset", v->reset_s, true},
        {"Retry-After", v->retry_after, !v->allowed},
    };
    for (size_t i = 0; i < ARRAY_LEN(h); i++) {
        char n[24];
        snprintf(n, sizeof n, "%lld", (long long)h[i].value);
        if (h[i].on) http_add_header(r, h[i].name, n);
    }
}

/* A rate-limited route's answer that never reached the limiter (a
 * validation error, a missing generation) shows the bucket as it is. */
static void rate_peek(api_call *c, gen_service_result *res)
{
    if (!res->rate.applies && ratelimit_peek(api_store, &c->user, &res->rate) != RATELIMIT_OK)
        memset(&res->rate, 0, sizeof res->rate);
}

/* Encodes a service result: the error envelope, an idempotent replay as it
 * was first sent, or the data. hold: a start, whose answer Prefer: wait
 * may hold. Takes what it sends out of *res. */
static void reply_result(http_req *r, gen_service_result *res, bool hold)
{
    rate_headers(r, &res->rate);
    if (res->status != GEN_SVC_OK) {
        if (res->status == GEN_SVC_EUNAVAILABLE) http_add_header(r, "Retry-After", "2");
        if (res->status == GEN_SVC_EQUEUE_FULL) http_add_header(r, "Retry-After", "5");
        http_reply_error(r, res->http_status, gen_service_code(res->status), res->message,
                         res->validation_errors);
        res->validation_errors = NULL;
    } else if (res->replay) {
        http_add_header(r, "Idempotent-Replayed", "true");
        http_reply_json_text(r, res->http_status, res->replay);
    } else if (hold) {
        reply_or_wait(r, res->http_status, res->data, res->gen.id);
        res->data = NULL;
    } else {
        http_reply_json(r, res->http_status, res->data);
        res->data = NULL;
    }
}

/* A request naming one generation (the caller's), for the service. */
static void decode_id(api_call *c, const char *gen_id, gen_service_req *req)
{
    memset(req, 0, sizeof *req);
    req->gen_id = xstrdup(gen_id);
    snprintf(req->request_id, sizeof req->request_id, "%s", http_request_id(c->req));
}

typedef int (*gen_action_fn)(const gen_service_req *req, const user_record *caller,
                             gen_service_result *out);

/* Decode → service → encode for the routes acting on one generation.
 * limited: a route that creates one (retry), whose every answer carries
 * the RateLimit-* headers. */
static void run_action(api_call *c, const char *gen_id, gen_action_fn fn, bool limited)
{
    gen_service_req req;
    gen_service_result res;
    decode_id(c, gen_id, &req);
    fn(&req, &c->user, &res);
    if (limited) rate_peek(c, &res);
    reply_result(c->req, &res, false);
    gen_service_result_free(&res);
    gen_service_req_free(&req);
}

/* A create body and its Idempotency-Key, for the service; steals body. */
static void decode_create(api_call *c, json_t *body, gen_service_req *req)
{
    memset(req, 0, sizeof *req);
    req->body = body;
    snprintf(req->request_id, sizeof req->request_id, "%s", http_request_id(c->req));
    const char *key = http_header(c->req, "Idempotency-Key");
    if (key) {
        req->idem_key = xstrdup(key);
        gen_service_request_hash(http_path(c->req), body, req->request_hash);
    }
}

/* A create's answer leaves once its write is on disk (reply_early): the
 * handler thread goes on meanwhile, and the group commit that makes it
 * durable releases it. If that commit fails, nothing of it was kept. */
static void release_when_durable(void *arg, bool durable)
{
    http_req *r = arg;
    if (!durable) rlog_error(http_request_id(r), "the create's commit failed: answered 500");
    http_release(r, durable, "the generation could not be saved; nothing was charged");
}

static void arm_durable(http_req *r, void *pending)
{
    store_when_durable(pending, release_when_durable, r);
}

/* reply_result, with the answer held until its write is durable when the
 * service deferred it (reply_early). */
static void reply_when_durable(http_req *r, gen_service_result *res, bool hold)
{
    reply_result(r, res, hold);
    if (res->pending) {
        http_hold(r, arm_durable, res->pending);
        res->pending = NULL;
    }
}

/* Start (step 2), answered once the start is durable without holding the
 * thread meanwhile — unless Prefer: wait, which reads the record back
 * after a durable start. */
static void start_generation(api_call *c, const char *gen_id)
{
    gen_service_req req;
    gen_service_result res;
    decode_id(c, gen_id, &req);
    req.reply_early = prefer_wait(c->req) < 0;
    gen_service_start(&req, &c->user, &res);
    reply_when_durable(c->req, &res, true);
    gen_service_result_free(&res);
    gen_service_req_free(&req);
}

/* The second phase of a create (image checks, then the store write) and
 * its answer. */
static void finish_create(http_req *r, const gen_service_req *req, const user_record *caller,
                          bool start)
{
    gen_service_result res;
    gen_service_finish(req, caller, start, &res);
    reply_when_durable(r, &res, start);
    gen_service_result_free(&res);
}

/* A create whose images need a remote fetch, continued on the slow pool:
 * the validated request and the caller, owned by the continuation. */
typedef struct create_job {
    gen_service_req req;
    user_record caller;
    bool start;
} create_job;

static void create_job_run(http_req *r, void *ctx)
{
    create_job *j = ctx;
    finish_create(r, &j->req, &j->caller, j->start);
}

static void create_job_free(void *ctx)
{
    create_job *j = ctx;
    gen_service_req_free(&j->req);
    free(j);
}

/* Create (step 1), or create-and-start for the legacy one-step form;
 * steals body. Fetching remote images waits on other hosts, so that
 * phase moves to the slow pool with what is decoded and validated. */
static void create_generation(api_call *c, json_t *body, bool start)
{
    gen_service_req req;
    gen_service_result res;
    decode_create(c, body, &req);
    req.reply_early = !(start && prefer_wait(c->req) >= 0); /* a wait reads the record back */
    if (gen_service_prepare(&req, &c->user, &res) != GEN_SVC_OK) {
        rate_peek(c, &res); /* refused before a unit was taken: none is */
        reply_result(c->req, &res, false);
    } else if (gen_service_needs_fetch(&req)) {
        create_job *j = xcalloc(1, sizeof *j);
        j->req = req; /* moved: the job owns it now */
        memset(&req, 0, sizeof req);
        j->caller = c->user;
        j->start = start;
        http_offload(c->req, create_job_run, j, create_job_free);
    } else {
        finish_create(c->req, &req, &c->user, start);
    }
    gen_service_result_free(&res);
    gen_service_req_free(&req);
}

void api_gen_create(api_call *c, json_t *body, bool start)
{
    create_generation(c, body, start);
}

/* ---- batches ---- */

/* A batch whose images need a remote fetch, continued on the slow pool
 * like a create (create_job). */
typedef struct batch_job {
    gen_service_batch batch;
    user_record caller;
} batch_job;

static void finish_batch(http_req *r, const gen_service_batch *b, const user_record *caller)
{
    gen_service_result res;
    gen_service_batch_finish(b, caller, &res);
    reply_when_durable(r, &res, false);
    gen_service_result_free(&res);
}

static void batch_job_run(http_req *r, void *ctx)
{
    batch_job *j = ctx;
    finish_batch(r, &j->batch, &j->caller);
}

static void batch_job_free(void *ctx)
{
    batch_job *j = ctx;
    gen_service_batch_free(&j->batch);
    free(j);
}

void api_batch_create(api_call *c)
{
    json_t *body = api_json_body(c);
    if (!body) return;
    gen_service_batch b = {.body = body, .reply_early = true};
    gen_service_result res;
    snprintf(b.request_id, sizeof b.request_id, "%s", http_request_id(c->req));
    const char *key = http_header(c->req, "Idempotency-Key");
    if (key) {
        b.idem_key = xstrdup(key);
        gen_service_request_hash(http_path(c->req), body, b.request_hash);
    }
    if (gen_service_batch_prepare(&b, &c->user, &res) != GEN_SVC_OK) {
        rate_peek(c, &res); /* refused before a unit was taken: none is */
        reply_result(c->req, &res, false);
        gen_service_result_free(&res);
    } else if (gen_service_batch_needs_fetch(&b)) {
        batch_job *j = xcalloc(1, sizeof *j);
        j->batch = b; /* moved: the job owns it now */
        memset(&b, 0, sizeof b);
        j->caller = c->user;
        http_offload(c->req, batch_job_run, j, batch_job_free);
    } else {
        finish_batch(c->req, &b, &c->user);
    }
    gen_service_batch_free(&b);
}

void api_batch_get(api_call *c)
{
    gen_service_result res;
    gen_service_batch_get(c->param, &c->user, &res);
    reply_result(c->req, &res, false);
    gen_service_result_free(&res);
}

void api_batch_cancel(api_call *c)
{
    gen_service_result res;
    gen_service_batch_cancel(c->param, &c->user, &res);
    reply_result(c->req, &res, false);
    gen_service_result_free(&res);
}

/* ---- routes ---- */

void api_models(api_call *c)
{
    const model_info *list;
    size_t n = provider_models(&list);
    json_t *items = json_array();
    static const char *qualities[] = {"auto", "low", "medium", "high"};
    for (size_t i = 0; i < n; i++) {
        const model_info *m = &list[i];
        if (m->hidden) continue;
        const char *why = NULL;
        bool ok = provider_model_available(m, &why);
        json_t *costs = json_object();
        for (size_t q = 0; q < ARRAY_LEN(qualities); q++)
            json_object_set_new(costs, qualities[q],
                                json_integer(gen_cost(m->base_cost, qualities[q])));
        json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:i, s:i, s:i, s:i, s:b, s:o}", "id", m->id,
                              "name", m->name, "description", m->description, "provider",
                              m->provider, "baseCost", m->base_cost, "maxProductImages",
                              m->max_product_images, "maxModelImages", m->max_model_images,
                              "outputs", m->outputs, "available", ok, "costByQuality", costs);
        if (!ok && why) json_object_set_new(o, "unavailableReason", json_string(why));
        json_object_set_new(o, "minModelImages", json_integer(m->min_model_images));
        json_object_set_new(o, "typicalSeconds", json_integer(m->typical_seconds));
        json_object_set_new(o, "parameters",
                            m->parameters ? json_deep_copy(m->parameters) : json_array());
        json_array_append_new(items, o);
    }
    http_reply_json(c->req, 200, api_list(items, NULL));
}

/* Replicate tells us a prediction is done (SPEC §7). Signed with
 * REPLICATE_WEBHOOK_SECRET; the adapter checks it and wakes the job
 * waiting on that prediction, which then reads the outcome itself: the
 * body is never trusted for the result. */
void api_replicate_webhook(api_call *c)
{
    size_t len = 0;
    const char *body = http_body(c->req, &len);
    int rc = provider_replicate_webhook(
        http_header(c->req, "webhook-id"), http_header(c->req, "webhook-timestamp"),
        http_header(c->req, "webhook-signature"), body ? body : "", len);
    if (rc == PROVIDER_WEBHOOK_EBADSIG)
        http_reply_error(c->req, 401, "AUTHENTICATION_REQUIRED",
                         "the webhook signature is missing, stale or wrong", NULL);
    else if (rc == PROVIDER_WEBHOOK_EUNCONFIGURED)
        http_reply_error(c->req, 404, "NOT_FOUND", "Replicate webhooks are not configured here",
                         NULL);
    else /* 0, or a prediction another process (or nobody) waits on: accepted either way */
        http_reply_json(c->req, 200, json_pack("{s:b}", "received", rc == 0));
}

void api_upload(api_call *c)
{
    size_t len;
    const char *data = http_body(c->req, &len);
    const char *type = http_body_type(c->req);
    bool typed =
        type && (str_has_prefix(type, "image/") || str_has_prefix(type, "multipart/form-data"));
    if (len > MEDIA_MAX_BYTES) {
        http_reply_error(c->req, 413, "PAYLOAD_TOO_LARGE", "images must be at most 10 MB", NULL);
        return;
    }
    if (!typed || len == 0) {
        json_t *errs = json_pack("[{s:s, s:s}]", "field", "file", "message",
                                 "send the image as multipart field 'file', or as the raw body "
                                 "with Content-Type image/jpeg, image/png or image/webp");
        http_reply_error(c->req, 400, "IMAGE_VALIDATION_ERROR", "no image in the request", errs);
        return;
    }
    provider_image info = {0};
    char *url = NULL, *why = NULL;
    int rc = media_save_upload(data, len, &info, &url, &why);
    if (rc == MEDIA_EINVALID) {
        json_t *errs = json_pack("[{s:s, s:s}]", "field", "file", "message", why);
        http_reply_error(c->req, 400, "IMAGE_VALIDATION_ERROR", why, errs);
    } else if (rc != 0) {
        http_reply_error(c->req, 500, "INTERNAL_SERVER_ERROR", "could not store the image", NULL);
    } else {
        http_reply_json(c->req, 201,
                        json_pack("{s:s, s:i, s:i, s:s, s:I}", "url", url, "width", info.width,
                                  "height", info.height, "format", info.format, "bytes",
                                  (json_int_t)len));
    }
    free(url);
    free(why);
}

void api_create(api_call *c)
{
    json_t *body = api_json_body(c);
    if (body) create_generation(c, body, false);
}

void api_generate(api_call *c)
{
    json_t *body = api_json_body(c);
    if (!body) return;
    json_t *jid = json_object_get(body, "generationId");
    if (!jid) {
        create_generation(c, body, true); /* the legacy one-step form */
        return;
    }
    if (!json_is_string(jid))
        api_field_error(c, "generationId", "generationId must be a string");
    else
        start_generation(c, json_string_value(jid));
    json_decref(body);
}

void api_gen_get(api_call *c)
{
    run_action(c, c->param, gen_service_get, false);
}

void api_gen_list(api_call *c)
{
    int limit, status = -1;
    const char *cursor, *s = http_query(c->req, "status");
    if (!api_page_args(c, "gen", &limit, &cursor)) return;
    if (s && *s) {
        gen_status st;
        if (gen_status_parse(s, &st) != 0) {
            api_field_error(c, "status",
                            "status must be pending, processing, completed, failed or cancelled");
            return;
        }
        status = (int)st;
    }
    gen_record *list = NULL;
    size_t n = 0;
    char *next = NULL;
    int rc = store_gen_list(api_store, c->user.id, status, cursor, limit, &list, &n, &next);
    if (rc != STORE_OK) {
        api_store_error(c, rc, "generation page");
        return;
    }
    json_t *items = json_array();
    for (size_t i = 0; i < n; i++) {
        json_array_append_new(items, gen_record_to_json(&list[i]));
        gen_record_free(&list[i]);
    }
    free(list);
    http_reply_json(c->req, 200, api_list(items, next));
    free(next);
}

void api_gen_cancel(api_call *c)
{
    run_action(c, c->param, gen_service_cancel, false);
}

void api_gen_retry(api_call *c)
{
    run_action(c, c->param, gen_service_retry, true);
}

void api_gen_delete(api_call *c)
{
    run_action(c, c->param, gen_service_delete, false);
}

/* ---- event streams ---- */

#define STREAM_QUEUED_MAX 100 /* the user's queued items a user stream follows */
#define POSITION_EVERY_MS 250 /* a stream re-reads queue positions this often at most */

/* A queued generation's position as a user stream last sent it. */
typedef struct stream_pos {
    char id[ID_LEN];
    int position;
} stream_pos;

typedef struct stream {
    char user_id[ID_LEN];
    char gen_id[ID_LEN]; /* "" for the user's stream */
    int64_t last_id;
    bool started;
    int last_position; /* queuePosition last sent (per-generation streams) */
    /* The user's stream: the queued items it follows, each with the
     * position last sent (0: none yet), while it has any (watching). */
    bool watching;
    stream_pos *queued;
    size_t n_queued;
    int64_t next_positions; /* mono ms: no position re-read before (see below) */
} stream;

static void stream_free(void *ctx)
{
    stream *s = ctx;
    free(s->queued);
    free(s);
}

static void frame(buf *out, const char *type, int64_t id, const char *data)
{
    buf_printf(out, "event: %s\nid: %lld\ndata: %s\n\n", type, (long long)id, data);
}

/* The first frame of a stream that is not resuming: the current record
 * (its newest event, so the id and the state agree) or the balance. */
static int stream_snapshot(stream *s, buf *out)
{
    if (s->gen_id[0]) {
        store_event ev;
        if (store_events_latest(api_store, s->gen_id, &ev) != STORE_OK) return 1;
        frame(out, "generation", ev.id, ev.data);
        s->last_id = ev.id;
        s->last_position = ev.queue_position;
        bool done = ev.terminal;
        free(ev.data);
        return done ? 1 : 0;
    }
    int64_t last = 0;
    user_record u;
    if (store_events_last_id(api_store, &last) != STORE_OK ||
        store_user_get(api_store, s->user_id, &u) != STORE_OK)
        return 1;
    char *data = gen_record_codec.balance(u.token_balance); /* as the balance events */
    frame(out, "balance", last, data);
    free(data);
    s->last_id = last;
    return 0;
}

/* A "generation" frame without an id: the current record of a queued
 * generation whose position moved (nothing persisted, see below). */
static void send_position_frame(buf *out, const gen_record *g)
{
    json_t *j = gen_record_to_json(g);
    char *data = json_dumps(j, UTIL_JSON_FLAGS);
    buf_printf(out, "event: generation\ndata: %s\n\n", data);
    free(data);
    json_decref(j);
}

/* Whether a stream may re-read positions now; if so, the next re-read is
 * not before POSITION_EVERY_MS from now. */
static bool positions_due(stream *s)
{
    int64_t now = mono_ms();
    if (now < s->next_positions) return false;
    s->next_positions = now + POSITION_EVERY_MS;
    return true;
}

/* Queue positions (and ETAs) move when other generations are claimed or
 * finish, which writes no event of this one: writing an event per queued
 * record per claim would cost O(queue) rows per claim. Instead a
 * per-generation stream re-reads its record while it is queued (its last
 * frame had a position), on a wake and at least every HTTP_SSE_SOON_MS
 * (one position count each) but not more often than POSITION_EVERY_MS
 * (positions_due: a busy queue wakes a stream on every commit, and each
 * re-read counts the queue ahead), and
 * when the position changed sends the current record as a "generation"
 * frame without an id: nothing is persisted, so Last-Event-ID and replay
 * are unaffected and a resumed stream gets the current figure from its
 * next refresh. The per-user stream (/api/events) does not do this; GET
 * /api/queue and GET of a record always compute them at read time. */
static int stream_refresh(stream *s, buf *out)
{
    if (!positions_due(s)) return HTTP_SSE_SOON;
    gen_record g;
    if (store_gen_get(api_store, s->gen_id, &g) != STORE_OK) return 0;
    int pos = g.queue_position, rc = pos > 0 ? HTTP_SSE_SOON : 0;
    if (pos > 0 && pos != s->last_position) send_position_frame(out, &g);
    s->last_position = pos;
    gen_record_free(&g);
    return rc;
}

/* The stream's entry for gen_id, NULL when it does not follow it. */
static stream_pos *known_item(const stream *s, const char *gen_id)
{
    for (size_t i = 0; i < s->n_queued; i++)
        if (str_eq(s->queued[i].id, gen_id)) return &s->queued[i];
    return NULL;
}

/* The user's stream (/api/events) does the same for the user's queued
 * items it has sent a queued frame of (at most STREAM_QUEUED_MAX, in
 * claim order), from the moment a frame shows one queued until the user
 * has none: one store_queue_items per refresh, and a record read only for
 * an item whose position moved (store_gen_get_at: with that position, not
 * counted again). The stream follows only items it knows: those queued
 * before its cursor was set (adopt_queued), whose earlier events it will
 * never send, and those it sent a queued frame of (note_user_frame). An
 * item queued since is left out until its events bring it in: a position
 * frame of it could arrive before its pending and processing events.
 * A stream whose user has nothing queued costs nothing. */
static int stream_refresh_user(stream *s, buf *out)
{
    if (!positions_due(s)) return HTTP_SSE_SOON;
    store_queue_item *items = NULL;
    size_t n = 0;
    if (store_queue_items(api_store, s->user_id, STREAM_QUEUED_MAX, &items, &n) != STORE_OK)
        return HTTP_SSE_SOON; /* try again on the next round */
    stream_pos *now = n ? xcalloc(n, sizeof *now) : NULL;
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) {
        const stream_pos *known = known_item(s, items[i].id);
        if (!known) continue;
        stream_pos *p = &now[kept++];
        memcpy(p->id, items[i].id, ID_LEN);
        p->position = items[i].position;
        gen_record g;
        if (items[i].position == known->position ||
            store_gen_get_at(api_store, items[i].id, items[i].position, &g) != STORE_OK)
            continue;
        p->position = g.queue_position;
        if (g.queue_position > 0) send_position_frame(out, &g);
        gen_record_free(&g);
    }
    free(items);
    free(s->queued);
    s->queued = now;
    s->n_queued = kept;
    s->watching = kept > 0;
    return s->watching ? HTTP_SSE_SOON : 0;
}

/* A user stream, before its cursor is set (the snapshot's last id, or
 * the first read past Last-Event-ID), takes the user's queued items as
 * known with no position sent, so its first refresh sends them. */
static void adopt_queued(stream *s)
{
    store_queue_item *items = NULL;
    size_t n = 0;
    if (store_queue_items(api_store, s->user_id, STREAM_QUEUED_MAX, &items, &n) != STORE_OK)
        return; /* none adopted: the stream finds them from their next events */
    s->queued = n ? xcalloc(n, sizeof *s->queued) : NULL;
    for (size_t i = 0; i < n; i++)
        memcpy(s->queued[i].id, items[i].id, ID_LEN);
    s->n_queued = n;
    s->watching = n > 0;
    free(items);
}

/* A user stream notes the position each generation frame it sends shows
 * (the event's queue_position) so the refresh sends only changes, and
 * starts watching on a queued one. */
static void note_user_frame(stream *s, const store_event *ev)
{
    if (!str_eq(ev->type, "generation")) return;
    int pos = ev->queue_position;
    stream_pos *known = known_item(s, ev->generation_id);
    if (known) {
        known->position = pos;
        pos = -1;
    }
    if (pos > 0 && s->n_queued < STREAM_QUEUED_MAX) {
        s->queued = xrealloc(s->queued, (s->n_queued + 1) * sizeof *s->queued);
        memcpy(s->queued[s->n_queued].id, ev->generation_id, ID_LEN);
        s->queued[s->n_queued++].position = pos;
    }
    if (pos != 0) s->watching = true;
}

/* ---- one store read for all of a user's streams (see the DESIGN above) ---- */

#define SHARED_SLOTS 1024
#define SHARED_MAX 8 /* events a shared read may hold: at most ~12 MB in all */
#define STREAM_READ_MAX 100

typedef struct shared_read {
    char user_id[ID_LEN]; /* "" when the slot is empty */
    int64_t stamp;        /* events_topic_stamp(user_id) before the read */
    int64_t after_id;     /* the read's cursor */
    bool reading;         /* a fill is reading; fills with this stamp wait */
    store_event *ev;      /* every event of the user past after_id, as of stamp */
    size_t n;
} shared_read;

static pthread_mutex_t shared_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t shared_cv = PTHREAD_COND_INITIALIZER;
static shared_read shared[SHARED_SLOTS];

static shared_read *shared_slot(const char *user_id)
{
    return &shared[util_fnv1a(user_id) % SHARED_SLOTS];
}

static void shared_clear(shared_read *r)
{
    store_events_free(r->ev, r->n);
    r->ev = NULL;
    r->n = 0;
    r->user_id[0] = '\0';
}

/* Sends the events of ev[0..n) past the stream's cursor. */
static void send_user_events(stream *s, buf *out, const store_event *ev, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (ev[i].id <= s->last_id) continue;
        frame(out, ev[i].type, ev[i].id, ev[i].data);
        s->last_id = ev[i].id;
        note_user_frame(s, &ev[i]);
    }
}

/* Under shared_mu: true when r answers a fill of s at stamp (waiting out
 * a read in progress for that stamp), with the events sent. */
static bool shared_answer(shared_read *r, stream *s, int64_t stamp, buf *out)
{
    while (r->reading && r->stamp == stamp && str_eq(r->user_id, s->user_id))
        pthread_cond_wait(&shared_cv, &shared_mu);
    if (r->reading || r->stamp != stamp || !str_eq(r->user_id, s->user_id) ||
        r->after_id > s->last_id)
        return false;
    send_user_events(s, out, r->ev, r->n);
    return true;
}

/* Publishes a read claimed with r->reading (takes ev when it keeps it:
 * returns true), or empties the slot. Under shared_mu. */
static bool shared_publish(shared_read *r, store_event *ev, size_t n, bool ok)
{
    r->reading = false;
    pthread_cond_broadcast(&shared_cv);
    if (!ok || n > SHARED_MAX) {
        r->user_id[0] = '\0';
        return false;
    }
    r->ev = ev;
    r->n = n;
    return true;
}

/* The user stream's new events: from the user's shared read when it is
 * current, else from the store (shared with the user's other streams when
 * the slot is free). 0 ok, 1 when the store failed; *more when the read
 * stopped at its limit. */
static int user_stream_events(stream *s, buf *out, bool *more)
{
    *more = false;
    int64_t stamp = events_topic_stamp(s->user_id);
    shared_read *r = shared_slot(s->user_id);
    pthread_mutex_lock(&shared_mu);
    if (shared_answer(r, s, stamp, out)) {
        pthread_mutex_unlock(&shared_mu);
        return 0;
    }
    bool claimed = !r->reading;
    if (claimed) {
        shared_clear(r);
        snprintf(r->user_id, sizeof r->user_id, "%s", s->user_id);
        r->stamp = stamp;
        r->after_id = s->last_id;
        r->reading = true;
    }
    pthread_mutex_unlock(&shared_mu);

    store_event *ev = NULL;
    size_t n = 0;
    bool ok = store_events_after(api_store, s->user_id, NULL, s->last_id, STREAM_READ_MAX, &ev,
                                 &n) == STORE_OK;
    if (ok) send_user_events(s, out, ev, n);
    *more = ok && n == STREAM_READ_MAX;
    bool kept = false;
    if (claimed) {
        pthread_mutex_lock(&shared_mu);
        kept = shared_publish(r, ev, n, ok);
        pthread_mutex_unlock(&shared_mu);
    }
    if (!kept) store_events_free(ev, n);
    return ok ? 0 : 1;
}

/* A per-generation stream's new events, read on its own. 0 go on, 1 the
 * generation ended (or the store failed), or a refresh's answer. */
static int gen_stream_events(stream *s, buf *out)
{
    store_event *ev = NULL;
    size_t n = 0;
    if (store_events_after(api_store, s->user_id, s->gen_id, s->last_id, STREAM_READ_MAX, &ev,
                           &n) != STORE_OK)
        return 1;
    int done = 0;
    for (size_t i = 0; i < n; i++) {
        frame(out, ev[i].type, ev[i].id, ev[i].data);
        s->last_id = ev[i].id;
        if (ev[i].terminal) done = 1;
        s->last_position = ev[i].queue_position;
    }
    store_events_free(ev, n);
    if (!done && n == STREAM_READ_MAX) return HTTP_SSE_MORE;
    if (!done && n == 0) {
        /* Resuming after the end: nothing newer will come. */
        store_event last;
        if (store_events_latest(api_store, s->gen_id, &last) == STORE_OK) {
            done = last.id <= s->last_id && last.terminal;
            free(last.data);
        }
    }
    if (!done && s->last_position > 0) return stream_refresh(s, out);
    return done;
}

static int stream_fill(void *ctx, buf *out)
{
    stream *s = ctx;
    if (!s->started) {
        s->started = true;
        if (!s->gen_id[0]) adopt_queued(s);
        if (s->last_id < 0) {
            int rc = stream_snapshot(s, out);
            if (rc != 0) return rc;
            if (s->gen_id[0]) return s->last_position > 0 ? HTTP_SSE_SOON : 0;
            return s->watching ? stream_refresh_user(s, out) : 0;
        }
    }
    if (s->gen_id[0]) return gen_stream_events(s, out);
    bool more;
    if (user_stream_events(s, out, &more) != 0) return 1;
    if (more) return HTTP_SSE_MORE;
    return s->watching ? stream_refresh_user(s, out) : 0;
}

/* Starts a stream; Last-Event-ID (header or ?lastEventId) resumes. */
static void start_stream(api_call *c, const char *gen_id)
{
    const char *resume = http_header(c->req, "Last-Event-ID");
    if (!resume) resume = http_query(c->req, "lastEventId");
    int64_t last = -1;
    if (resume && *resume) {
        if (api_last_event_id(resume, &last) != 0) {
            api_field_error(c, "Last-Event-ID", "Last-Event-ID must be an event id");
            return;
        }
    }
    stream *s = xcalloc(1, sizeof *s);
    snprintf(s->user_id, sizeof s->user_id, "%s", c->user.id);
    snprintf(s->gen_id, sizeof s->gen_id, "%s", gen_id ? gen_id : "");
    s->last_id = last;
    int rc = http_reply_sse(c->req, s->user_id, stream_fill, stream_free, s);
    if (rc == 0) return;
    stream_free(s);
    if (rc == HTTP_SSE_EUSER) {
        http_add_header(c->req, "Retry-After", "5");
        http_reply_error(c->req, 429, "RATE_LIMIT_EXCEEDED",
                         "too many open event streams for this user (--max-streams-per-user); "
                         "close one first",
                         NULL);
    } else {
        http_add_header(c->req, "Retry-After", "5");
        http_reply_error(c->req, 503, "SERVICE_UNAVAILABLE",
                         "the server has as many event streams open as it can take", NULL);
    }
}

void api_gen_events(api_call *c)
{
    gen_service_req req;
    gen_service_result res;
    decode_id(c, c->param, &req);
    if (gen_service_get(&req, &c->user, &res) == GEN_SVC_OK)
        start_stream(c, c->param);
    else
        reply_result(c->req, &res, false);
    gen_service_result_free(&res);
    gen_service_req_free(&req);
}

void api_user_events(api_call *c)
{
    start_stream(c, NULL);
}
