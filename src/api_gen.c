/*
 * api_gen — the generation routes: models, uploads, create (step 1),
 * generate (step 2, and the legacy one-step form), get, list, cancel,
 * retry, delete, and the live event streams.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api.h"
#include "events.h"
#include "gen_state.h"
#include "log.h"
#include "media.h"
#include "provider.h"
#include "queue.h"
#include "util.h"

#define MAX_WAIT_SECONDS 60
#define IDEM_KEY_MAX 255

/* ---- helpers ---- */

/* Loads a generation the caller owns; replies 404/403 otherwise. */
static bool load_owned(api_call *c, const char *id, gen_record *g)
{
    int rc = store_gen_get(api_store, id, g);
    if (rc != STORE_OK) {
        api_store_error(c, rc, "generation");
        return false;
    }
    if (strcmp(g->user_id, c->user.id) != 0) {
        gen_record_free(g);
        http_reply_error(c->req, 403, "UNAUTHORIZED", "this generation belongs to another user",
                         NULL);
        return false;
    }
    return true;
}

static void reply_status_error(api_call *c, const gen_record *g, const char *action,
                               const char *allowed)
{
    char *m = xasprintf("cannot %s a generation that is %s; only %s ones can be", action,
                        gen_status_name(g->status), allowed);
    http_reply_error(c->req, 400, "INVALID_GENERATION_STATUS", m, NULL);
    free(m);
}

/* Checks every image URL of a request: shape and address rules, and for
 * URLs outside this server a real fetch and decode, so a bad image fails
 * here and never in a worker. Replies IMAGE_VALIDATION_ERROR listing each
 * bad image and returns false. */
static bool images_ok(api_call *c, const gen_request *req)
{
    json_t *errs = json_array();
    const struct {
        const char *field;
        json_t *list;
    } groups[] = {
        {"productImages", req->product_images},
        {"modelImages", req->model_images},
    };
    for (size_t k = 0; k < ARRAY_LEN(groups); k++) {
        size_t i;
        json_t *v;
        json_array_foreach(groups[k].list, i, v)
        {
            const char *url = json_string_value(v);
            char *why = NULL;
            int rc = media_check_url(url, &why);
            if (rc == 0 && !media_is_own_url(url)) {
                provider_image img = {0};
                rc = media_fetch(url, NULL, &img, &why);
                provider_image_free(&img);
            }
            if (rc != 0) {
                char field[48];
                snprintf(field, sizeof field, "%s[%zu]", groups[k].field, i);
                json_array_append_new(errs, json_pack("{s:s, s:s}", "field", field, "message",
                                                      why ? why : "image cannot be used"));
            }
            free(why);
        }
    }
    if (json_array_size(errs) == 0) {
        json_decref(errs);
        return true;
    }
    const char *first = json_string_value(json_object_get(json_array_get(errs, 0), "message"));
    char *m = xasprintf("an input image cannot be used: %s", first);
    http_reply_error(c->req, 400, "IMAGE_VALIDATION_ERROR", m, errs);
    free(m);
    return false;
}

static bool has_remote_image(const gen_request *req)
{
    json_t *lists[] = {req->product_images, req->model_images}, *v;
    size_t i;
    for (size_t k = 0; k < ARRAY_LEN(lists); k++)
        json_array_foreach(lists[k], i, v) if (!media_is_own_url(json_string_value(v))) return true;
    return false;
}

/* "wait=N" from a Prefer header; -1 when absent. */
static int prefer_wait(http_req *r)
{
    const char *p = http_header(r, "Prefer");
    const char *w = p ? strcasestr(p, "wait=") : NULL;
    if (!w) return -1;
    int n = atoi(w + 5);
    return n < 0 ? 0 : n > MAX_WAIT_SECONDS ? MAX_WAIT_SECONDS : n;
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

/* Replies with `data` now, or holds the request when Prefer: wait asks. */
static void reply_or_wait(api_call *c, int status, json_t *data, const char *gen_id)
{
    int secs = prefer_wait(c->req);
    if (secs < 0) {
        http_reply_json(c->req, status, data);
        return;
    }
    json_decref(data);
    wait_state *st = xcalloc(1, sizeof *st);
    snprintf(st->gen_id, sizeof st->gen_id, "%s", gen_id);
    st->seconds = secs;
    st->deadline = mono_ms() + (int64_t)secs * 1000;
    http_set_state(c->req, st, free);
    wait_step(c->req);
}

/* Fills the parts of a new record common to create and retry. */
static void fill_record(gen_record *g, const char *user_id, json_t *products, json_t *models,
                        const char *custom, const gen_params *p, int priority, int cost)
{
    ids_new("gen", g->id);
    snprintf(g->user_id, sizeof g->user_id, "%s", user_id);
    g->product_images = json_incref(products);
    g->model_images = json_incref(models);
    g->result_images = json_array();
    g->custom_prompt = xstrdup(custom);
    g->params = *p;
    g->priority = priority;
    g->tokens_used = cost;
    g->created_at = now_ms();
    g->prompt =
        prompt_build(p, (int)json_array_size(products), (int)json_array_size(models), custom);
}

static void reply_insufficient(api_call *c, int cost)
{
    char *m = xasprintf("this generation costs %d token%s but the balance is %lld", cost,
                        cost == 1 ? "" : "s", (long long)c->user.token_balance);
    http_reply_error(c->req, 400, "INSUFFICIENT_TOKENS", m, NULL);
    free(m);
}

/* Create (step 1), or create-and-start for the legacy one-step form. */
static void create_generation(api_call *c, json_t *body, bool start)
{
    gen_request req = {0};
    gen_record g = {0};
    json_t *errs = NULL, *resp = NULL;
    char *msg = NULL, *resp_text = NULL, *replay = NULL;
    bool is_pro = strcmp(c->user.plan, "pro") == 0;

    const char *key = http_header(c->req, "Idempotency-Key");
    if (key && (!*key || strlen(key) > IDEM_KEY_MAX)) {
        api_field_error(c, "Idempotency-Key", "Idempotency-Key must be 1 to 255 characters");
        goto cleanup;
    }
    int rc = gen_request_parse(body, is_pro, &req, &errs, &msg);
    if (rc == GEN_EINVALID) {
        http_reply_error(c->req, 400, "VALIDATION_ERROR", "some fields are invalid", errs);
        errs = NULL;
        goto cleanup;
    }
    if (rc == GEN_EMODEL) {
        http_reply_error(c->req, 400, "MODEL_ERROR", msg, NULL);
        goto cleanup;
    }
    if (has_remote_image(&req) && !http_offloaded(c->req)) {
        http_offload(c->req, api_dispatch); /* fetching waits on other hosts */
        goto cleanup;
    }
    if (!images_ok(c, &req)) goto cleanup;

    const model_info *m = provider_model_find(req.params.model);
    fill_record(&g, c->user.id, req.product_images, req.model_images, req.custom_prompt,
                &req.params, req.priority, gen_cost(m->base_cost, req.params.quality));
    resp =
        json_pack("{s:s, s:i, s:s, s:s, s:s}", "generationId", g.id, "estimatedCost", g.tokens_used,
                  "prompt", g.prompt, "status", start ? "processing" : "pending", "message",
                  start ? "Generation processing started successfully"
                        : "Generation record created successfully");
    if (start) json_object_set_new(resp, "resultImages", json_array());
    int status = start ? 202 : 201;
    json_t *envelope = json_pack("{s:b, s:O}", "success", 1, "data", resp);
    resp_text = json_dumps(envelope, JSON_COMPACT);
    json_decref(envelope);

    store_idem idem = {0}, *idem_p = NULL;
    char hash[SECRET_HASH_LEN];
    if (key) {
        char *canon = json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS);
        char *keyed = xasprintf("%s %s", http_path(c->req), canon);
        ids_hash_secret(keyed, hash);
        free(canon);
        free(keyed);
        idem = (store_idem){
            .key = key,
            .request_hash = hash,
            .response = resp_text,
            .http_status = status,
            .not_before = g.created_at - GEN_IDEMPOTENCY_KEEP_MS,
        };
        idem_p = &idem;
    }
    int replay_status = 0;
    rc = store_gen_create(api_store, &g, start, idem_p, &replay, &replay_status);
    switch (rc) {
    case STORE_OK:
        rlog_info(http_request_id(c->req), "created %s (%d tokens)%s", g.id, g.tokens_used,
                  start ? ", started" : "");
        if (start) {
            queue_notify();
            reply_or_wait(c, status, json_incref(resp), g.id);
        } else {
            http_reply_json(c->req, status, json_incref(resp));
        }
        break;
    case STORE_EREPLAY:
        http_add_header(c->req, "Idempotent-Replayed", "true");
        http_reply_json_text(c->req, replay_status, replay);
        break;
    case STORE_EIDEM_MISMATCH:
        http_reply_error(c->req, 409, "IDEMPOTENCY_KEY_REUSED",
                         "this Idempotency-Key was used with a different request body", NULL);
        break;
    case STORE_EINSUFFICIENT:
        reply_insufficient(c, g.tokens_used);
        break;
    default:
        api_store_error(c, rc, "user");
    }
cleanup:
    gen_request_free(&req);
    gen_record_free(&g);
    json_decref(errs);
    json_decref(resp);
    free(msg);
    free(resp_text);
    free(replay);
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
        json_array_append_new(items, o);
    }
    http_reply_json(c->req, 200, api_list(items, NULL));
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
    if (!body) return;
    create_generation(c, body, false);
    json_decref(body);
}

void api_generate(api_call *c)
{
    json_t *body = api_json_body(c);
    if (!body) return;
    json_t *jid = json_object_get(body, "generationId");
    if (!jid) {
        create_generation(c, body, true); /* the legacy one-step form */
        json_decref(body);
        return;
    }
    gen_record g = {0};
    if (!json_is_string(jid)) {
        api_field_error(c, "generationId", "generationId must be a string");
    } else if (load_owned(c, json_string_value(jid), &g)) {
        int rc = gen_state_start(api_store, g.id, now_ms());
        if (rc == STORE_ECONFLICT) {
            reply_status_error(c, &g, "start", "pending");
        } else if (rc != STORE_OK) {
            api_store_error(c, rc, "generation");
        } else {
            queue_notify();
            json_t *data =
                json_pack("{s:s, s:[], s:s, s:s}", "generationId", g.id, "resultImages", "status",
                          "processing", "message", "Generation processing started successfully");
            reply_or_wait(c, 202, data, g.id);
        }
    }
    gen_record_free(&g);
    json_decref(body);
}

void api_gen_get(api_call *c)
{
    gen_record g;
    if (!load_owned(c, c->param, &g)) return;
    http_reply_json(c->req, 200, gen_record_to_json(&g));
    gen_record_free(&g);
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
    gen_record g;
    if (!load_owned(c, c->param, &g)) return;
    int rc = gen_state_cancel(api_store, g.id, "cancelled by the user", now_ms());
    if (rc == STORE_ECONFLICT) {
        reply_status_error(c, &g, "cancel", "pending or processing");
    } else if (rc != STORE_OK) {
        api_store_error(c, rc, "generation");
    } else {
        queue_cancel(g.id);
        gen_record_free(&g);
        if (!load_owned(c, c->param, &g)) return;
        http_reply_json(c->req, 200, gen_record_to_json(&g));
    }
    gen_record_free(&g);
}

void api_gen_retry(api_call *c)
{
    gen_record old, g = {0};
    if (!load_owned(c, c->param, &old)) return;
    const model_info *m = provider_model_find(old.params.model);
    const char *why = NULL;
    if (old.status != GEN_FAILED && old.status != GEN_CANCELLED) {
        reply_status_error(c, &old, "retry", "failed or cancelled");
    } else if (!m || !provider_model_available(m, &why)) {
        char *msg = xasprintf("model '%s' is not available: %s", old.params.model,
                              why ? why : "unknown model");
        http_reply_error(c->req, 400, "MODEL_ERROR", msg, NULL);
        free(msg);
    } else {
        fill_record(&g, c->user.id, old.product_images, old.model_images, old.custom_prompt,
                    &old.params, old.priority, gen_cost(m->base_cost, old.params.quality));
        snprintf(g.retry_of, sizeof g.retry_of, "%s", old.id);
        int rc = store_gen_create(api_store, &g, false, NULL, NULL, NULL);
        if (rc == STORE_EINSUFFICIENT)
            reply_insufficient(c, g.tokens_used);
        else if (rc != STORE_OK)
            api_store_error(c, rc, "user");
        else
            http_reply_json(c->req, 201,
                            json_pack("{s:s, s:i, s:s, s:s, s:s, s:s}", "generationId", g.id,
                                      "estimatedCost", g.tokens_used, "prompt", g.prompt, "status",
                                      "pending", "message",
                                      "Generation record created successfully", "retryOf", old.id));
    }
    gen_record_free(&old);
    gen_record_free(&g);
}

void api_gen_delete(api_call *c)
{
    gen_record g;
    if (!load_owned(c, c->param, &g)) return;
    json_t *results = NULL;
    int rc = store_gen_delete(api_store, g.id, gen_state_deletable(), &results);
    if (rc == STORE_ECONFLICT) {
        reply_status_error(c, &g, "delete", "completed, failed or cancelled");
    } else if (rc != STORE_OK) {
        api_store_error(c, rc, "generation");
    } else {
        size_t i;
        json_t *v;
        json_array_foreach(results, i, v) media_delete_url(json_string_value(v));
        http_reply_json(c->req, 200, json_pack("{s:s, s:b}", "id", g.id, "deleted", 1));
    }
    json_decref(results);
    gen_record_free(&g);
}

/* ---- event streams ---- */

typedef struct stream {
    char user_id[ID_LEN];
    char gen_id[ID_LEN]; /* "" for the user's stream */
    int64_t last_id;
    bool started;
} stream;

static void frame(buf *out, const char *type, int64_t id, const char *data)
{
    buf_printf(out, "event: %s\nid: %lld\ndata: %s\n\n", type, (long long)id, data);
}

static bool data_is_terminal(const char *data)
{
    json_t *j = json_loads(data, 0, NULL);
    gen_status st;
    bool t = j && gen_status_parse(json_string_value(json_object_get(j, "status")), &st) == 0 &&
             gen_status_terminal(st);
    json_decref(j);
    return t;
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
        bool done = data_is_terminal(ev.data);
        free(ev.data);
        return done ? 1 : 0;
    }
    int64_t last = 0;
    user_record u;
    if (store_events_last_id(api_store, &last) != STORE_OK ||
        store_user_get(api_store, s->user_id, &u) != STORE_OK)
        return 1;
    char data[64];
    snprintf(data, sizeof data, "{\"tokenBalance\":%lld}", (long long)u.token_balance);
    frame(out, "balance", last, data);
    s->last_id = last;
    return 0;
}

static int stream_fill(void *ctx, buf *out)
{
    stream *s = ctx;
    if (!s->started) {
        s->started = true;
        if (s->last_id < 0) return stream_snapshot(s, out);
    }
    store_event *ev = NULL;
    size_t n = 0;
    if (store_events_after(api_store, s->user_id, s->gen_id[0] ? s->gen_id : NULL, s->last_id, 100,
                           &ev, &n) != STORE_OK)
        return 1;
    int done = 0;
    for (size_t i = 0; i < n; i++) {
        frame(out, ev[i].type, ev[i].id, ev[i].data);
        s->last_id = ev[i].id;
        if (s->gen_id[0] && data_is_terminal(ev[i].data)) done = 1;
    }
    store_events_free(ev, n);
    if (!done && n == 0 && s->gen_id[0]) {
        /* Resuming after the end: nothing newer will come. */
        store_event last;
        if (store_events_latest(api_store, s->gen_id, &last) == STORE_OK) {
            done = last.id <= s->last_id && data_is_terminal(last.data);
            free(last.data);
        }
    }
    return done;
}

/* Starts a stream; Last-Event-ID (header or ?lastEventId) resumes. */
static void start_stream(api_call *c, const char *gen_id)
{
    const char *resume = http_header(c->req, "Last-Event-ID");
    if (!resume) resume = http_query(c->req, "lastEventId");
    int64_t last = -1;
    if (resume && *resume) {
        char *end;
        last = strtoll(resume, &end, 10);
        if (*end || last < 0) {
            api_field_error(c, "Last-Event-ID", "Last-Event-ID must be an event id");
            return;
        }
    }
    stream *s = xcalloc(1, sizeof *s);
    snprintf(s->user_id, sizeof s->user_id, "%s", c->user.id);
    snprintf(s->gen_id, sizeof s->gen_id, "%s", gen_id ? gen_id : "");
    s->last_id = last;
    http_reply_sse(c->req, s->user_id, stream_fill, free, s);
}

void api_gen_events(api_call *c)
{
    gen_record g;
    if (!load_owned(c, c->param, &g)) return;
    gen_record_free(&g);
    start_stream(c, c->param);
}

void api_user_events(api_call *c)
{
    start_stream(c, NULL);
}
