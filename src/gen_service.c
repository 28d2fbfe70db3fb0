/*
 * gen_service — the generation use cases: validate, check images, cost,
 * prompt, idempotency, write through the store, wake or cancel the queue.
 * See gen_service.h for the phases of a create and the threading rules.
 *
 * Error messages and reply shapes are the API's contract (SPEC §1, §4):
 * they are built here, once, and the API only encodes them.
 */
#include "gen_service.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gen_state.h"
#include "log.h"
#include "media.h"
#include "provider.h"
#include "config.h"
#include "queue.h"
#include "util.h"

static store_t *store; /* set once by gen_service_init */

static const struct {
    int status;
    int http_status;
    const char *code;
} codes[] = {
    {GEN_SVC_EVALIDATION, 400, "VALIDATION_ERROR"},
    {GEN_SVC_EIMAGE, 400, "IMAGE_VALIDATION_ERROR"},
    {GEN_SVC_EMODEL, 400, "MODEL_ERROR"},
    {GEN_SVC_EINSUFFICIENT, 400, "INSUFFICIENT_TOKENS"},
    {GEN_SVC_ESTATUS, 400, "INVALID_GENERATION_STATUS"},
    {GEN_SVC_EFORBIDDEN, 403, "UNAUTHORIZED"},
    {GEN_SVC_ENOTFOUND, 404, "GENERATION_NOT_FOUND"},
    {GEN_SVC_ENOUSER, 404, "NOT_FOUND"},
    {GEN_SVC_EIDEM_REUSED, 409, "IDEMPOTENCY_KEY_REUSED"},
    {GEN_SVC_EINTERNAL, 500, "INTERNAL_SERVER_ERROR"},
    {GEN_SVC_EUNAVAILABLE, 503, "SERVICE_UNAVAILABLE"},
    {GEN_SVC_ERATE, 429, "RATE_LIMIT_EXCEEDED"},
    {GEN_SVC_EQUEUE_FULL, 503, "QUEUE_FULL"},
    {GEN_SVC_ENOBATCH, 404, "NOT_FOUND"},
};

void gen_service_init(store_t *s)
{
    store = s;
}

const char *gen_service_code(int status)
{
    if (status == GEN_SVC_OK) return NULL;
    for (size_t i = 0; i < ARRAY_LEN(codes); i++)
        if (codes[i].status == status) return codes[i].code;
    return "INTERNAL_SERVER_ERROR";
}

static int http_status_of(int status)
{
    for (size_t i = 0; i < ARRAY_LEN(codes); i++)
        if (codes[i].status == status) return codes[i].http_status;
    return 500;
}

void gen_service_req_free(gen_service_req *req)
{
    if (!req) return;
    json_decref(req->body);
    free(req->idem_key);
    free(req->gen_id);
    gen_request_free(&req->parsed);
    memset(req, 0, sizeof *req);
}

void gen_service_result_free(gen_service_result *res)
{
    if (!res) return;
    if (res->pending) store_when_durable(res->pending, store_durable_ignored, NULL);
    json_decref(res->data);
    free(res->replay);
    free(res->message);
    json_decref(res->validation_errors);
    gen_record_free(&res->gen);
    memset(res, 0, sizeof *res);
}

void gen_service_request_hash(const char *scope, const json_t *body, char out[SECRET_HASH_LEN])
{
    char *canon = json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS);
    char *keyed = xasprintf("%s %s", scope, canon);
    ids_hash_secret(keyed, out);
    free(canon);
    free(keyed);
}

/* ---- results ---- */

/* An error result: status, its HTTP status, a message, and validation
 * errors (stolen; may be NULL). Returns status. */
static int fail(gen_service_result *out, int status, json_t *errors, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(gen_service_result *out, int status, json_t *errors, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    out->message = xvasprintf(fmt, ap);
    va_end(ap);
    out->status = status;
    out->http_status = http_status_of(status);
    out->validation_errors = errors;
    return status;
}

/* A success result answering http_status with data (stolen). */
static int succeed(gen_service_result *out, int http_status, json_t *data)
{
    out->status = GEN_SVC_OK;
    out->http_status = http_status;
    out->data = data;
    return GEN_SVC_OK;
}

/* A success answering with data (stolen) about the record *g, which moves
 * into the result (*g is left empty). */
static int succeed_with(gen_service_result *out, int http_status, json_t *data, gen_record *g)
{
    succeed(out, http_status, data);
    out->gen = *g;
    memset(g, 0, sizeof *g);
    return GEN_SVC_OK;
}

/* A store failure no caller interprets: a missing row (the generation, or
 * the caller's own account) or a failed database. */
static int store_failure(gen_service_result *out, int rc, bool about_generation)
{
    if (rc == STORE_ENOTFOUND && about_generation)
        return fail(out, GEN_SVC_ENOTFOUND, NULL, "generation not found");
    if (rc == STORE_ENOTFOUND) return fail(out, GEN_SVC_ENOUSER, NULL, "user not found");
    if (rc == STORE_EUNAVAILABLE)
        return fail(out, GEN_SVC_EUNAVAILABLE, NULL,
                    "the database cannot be reached right now; nothing was changed");
    return fail(out, GEN_SVC_EINTERNAL, NULL, "the store failed; nothing was changed");
}

static int status_error(gen_service_result *out, const gen_record *g, const char *action,
                        const char *allowed)
{
    return fail(out, GEN_SVC_ESTATUS, NULL,
                "cannot %s a generation that is %s; only %s ones can be", action,
                gen_status_name(g->status), allowed);
}

/* INSUFFICIENT_TOKENS for `what` ("generation" or "batch") costing cost. */
static int insufficient(gen_service_result *out, const char *what, int64_t cost,
                        const user_record *caller)
{
    return fail(out, GEN_SVC_EINSUFFICIENT, NULL,
                "this %s costs %lld token%s but the balance is %lld", what, (long long)cost,
                cost == 1 ? "" : "s", (long long)caller->token_balance);
}

/* ---- rate limits (ratelimit.c): a unit per generation created ---- */

/* Takes the units of `units` creates into out->rate. GEN_SVC_OK, or the
 * failure (RATE_LIMIT_EXCEEDED, the store's) filled in *out. */
/* early: the caller answers once its create is durable (reply_early), so
 * the unit's write need not hold this thread either: it is in the same
 * group commit as the create or an earlier one (and a unit lost with a
 * failed commit is one the user gets back). */
static int rate_take(const user_record *caller, int units, bool early, gen_service_result *out)
{
    store_pending *pending = early ? store_defer(store) : NULL;
    int rc = ratelimit_take(store, caller, units, &out->rate);
    if (pending) {
        store_defer_stop(pending);
        store_when_durable(pending, store_durable_ignored, NULL);
    }
    if (rc == RATELIMIT_OK) return GEN_SVC_OK;
    if (rc != RATELIMIT_EEXCEEDED) return store_failure(out, rc, false);
    const ratelimit_rule *r = ratelimit_rule_for(caller->plan);
    const char *per = r->period_ms == 1000 ? "second" : r->period_ms == 60000 ? "minute" : "hour";
    return fail(out, GEN_SVC_ERATE, NULL,
                "rate limit exceeded: the %s plan allows %lld generation%s per %s (bursts of"
                " %lld); try again in %lld s",
                str_eq(caller->plan, "pro") ? "pro" : "free", (long long)r->units,
                r->units == 1 ? "" : "s", per, (long long)r->burst,
                (long long)out->rate.retry_after);
}

/* Gives back the units of creates that created nothing (an error, a
 * replay); out->rate then shows the bucket with them. */
static void rate_give_back(const user_record *caller, int units, gen_service_result *out)
{
    if (!out->rate.applies) return;
    ratelimit_verdict v;
    if (ratelimit_give(store, caller, units, &v) == RATELIMIT_OK)
        out->rate = v;
    else
        log_warn("rate limit: could not give back the unit of %s", caller->id);
}

/* A keyed create refused by its limit may be a replay of one that was
 * created, which answers as always and uses no unit: true when *out now
 * says so (the replay, or IDEMPOTENCY_KEY_REUSED), false to keep the 429. */
static bool replay_at_limit(const gen_service_req *req, const user_record *caller,
                            gen_service_result *out)
{
    if (!req->idem_key) return false;
    store_idem idem = {.key = req->idem_key,
                       .request_hash = req->request_hash,
                       .not_before = now_ms() - GEN_IDEMPOTENCY_KEEP_MS};
    char *replay = NULL;
    int status = 0;
    int rc = store_idem_peek(store, caller->id, &idem, &replay, &status);
    if (rc != STORE_EREPLAY && rc != STORE_EIDEM_MISMATCH) return false;
    free(out->message);
    out->message = NULL;
    out->rate.allowed = true;
    out->rate.retry_after = 0;
    if (rc == STORE_EIDEM_MISMATCH) {
        fail(out, GEN_SVC_EIDEM_REUSED, NULL,
             "this Idempotency-Key was used with a different request body");
        return true;
    }
    succeed(out, status, NULL);
    out->replay = replay;
    return true;
}

static const char *log_id(const gen_service_req *req)
{
    return req->request_id[0] ? req->request_id : NULL;
}

/* ---- helpers ---- */

/* Loads a generation the caller owns into *g (caller frees). */
static int load_owned(const char *gen_id, const user_record *caller, gen_record *g,
                      gen_service_result *out)
{
    int rc = gen_id ? store_gen_get(store, gen_id, g) : STORE_ENOTFOUND;
    if (rc != STORE_OK) return store_failure(out, rc, true);
    if (strcmp(g->user_id, caller->id) != 0) {
        gen_record_free(g);
        return fail(out, GEN_SVC_EFORBIDDEN, NULL, "this generation belongs to another user");
    }
    return GEN_SVC_OK;
}

/* Removes the files behind a list of own /media URLs (NULL: nothing). */
static void delete_urls(json_t *urls)
{
    size_t i;
    json_t *v;
    json_array_foreach(urls, i, v) media_delete_url(json_string_value(v));
}

/* The images of a request made our own (media_import): every remote image
 * is fetched and validated once, here, and stored as our own media, so the
 * worker later uses exactly the bytes that were validated. On GEN_SVC_OK
 * *products and *models are new arrays of own URLs and *copies the URLs of
 * the copies made (the caller deletes them if the create does not go
 * through); otherwise IMAGE_VALIDATION_ERROR lists each bad image and no
 * copy is left behind. */
static int import_images(const gen_request *req, json_t **products, json_t **models,
                         json_t **copies, gen_service_result *out)
{
    const struct {
        const char *field;
        json_t *list;
        json_t **own;
    } groups[] = {
        {"productImages", req->product_images, products},
        {"modelImages", req->model_images, models},
    };
    json_t *errs = json_array();
    *copies = json_array();
    for (size_t k = 0; k < ARRAY_LEN(groups); k++) {
        *groups[k].own = json_array();
        size_t i;
        json_t *v;
        json_array_foreach(groups[k].list, i, v)
        {
            const char *url = json_string_value(v);
            char *own = NULL, *why = NULL;
            if (media_import(url, &own, &why) == 0) {
                if (!media_is_own_url(url)) json_array_append_new(*copies, json_string(own));
                json_array_append_new(*groups[k].own, json_string(own));
                free(own);
                continue;
            }
            char field[48];
            snprintf(field, sizeof field, "%s[%zu]", groups[k].field, i);
            json_array_append_new(errs, json_pack("{s:s, s:s}", "field", field, "message",
                                                  why ? why : "image cannot be used"));
            free(why);
        }
    }
    if (json_array_size(errs) == 0) {
        json_decref(errs);
        return GEN_SVC_OK;
    }
    delete_urls(*copies);
    json_decref(*copies);
    json_decref(*products);
    json_decref(*models);
    *copies = *products = *models = NULL;
    const char *first = json_string_value(json_object_get(json_array_get(errs, 0), "message"));
    return fail(out, GEN_SVC_EIMAGE, errs, "an input image cannot be used: %s", first);
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

/* The `data` of a create's answer. Caller owns it. */
static json_t *created_data(const gen_record *g, bool start)
{
    json_t *d = json_pack("{s:s, s:i, s:s, s:s, s:s}", "generationId", g->id, "estimatedCost",
                          g->tokens_used, "prompt", g->prompt, "status",
                          start ? "processing" : "pending", "message",
                          start ? "Generation processing started successfully"
                                : "Generation record created successfully");
    if (start) json_object_set_new(d, "resultImages", json_array());
    return d;
}

/* The whole answer as an idempotent replay gives it back. Caller frees. */
static char *replay_envelope(json_t *data)
{
    json_t *envelope = json_pack("{s:b, s:O}", "success", 1, "data", data);
    char *text = json_dumps(envelope, UTIL_JSON_FLAGS);
    json_decref(envelope);
    return text;
}

/* ---- the queue bound ---- */

int gen_service_queue_room(int n, gen_service_result *out)
{
    if (cfg.queue_max <= 0) return GEN_SVC_OK;
    store_queue_figures f;
    int rc = store_queue_stats(store, 0, &f);
    if (rc != STORE_OK) return store_failure(out, rc, false);
    if (f.depth + n <= cfg.queue_max) return GEN_SVC_OK;
    return fail(out, GEN_SVC_EQUEUE_FULL, NULL,
                "the queue is full (%lld queued, at most %d); nothing was charged, try again later",
                (long long)f.depth, cfg.queue_max);
}

/* ---- create ---- */

bool gen_service_idem_key_ok(const char *key)
{
    return key && *key && strlen(key) <= GEN_SERVICE_IDEM_KEY_MAX;
}

int gen_service_prepare(gen_service_req *req, const user_record *caller, gen_service_result *out)
{
    memset(out, 0, sizeof *out);
    const char *key = req->idem_key;
    if (key && !gen_service_idem_key_ok(key)) {
        const char *m = "Idempotency-Key must be 1 to 255 characters";
        return fail(out, GEN_SVC_EVALIDATION,
                    json_pack("[{s:s, s:s}]", "field", "Idempotency-Key", "message", m), "%s", m);
    }
    gen_request_free(&req->parsed);
    req->prepared = false;
    json_t *errs = NULL;
    char *msg = NULL;
    int rc = gen_request_parse(req->body, str_eq(caller->plan, "pro"), &req->parsed, &errs, &msg);
    if (rc == GEN_EINVALID) {
        rc = fail(out, GEN_SVC_EVALIDATION, errs, "some fields are invalid");
    } else if (rc != 0) {
        rc = fail(out, GEN_SVC_EMODEL, NULL, "%s", msg ? msg : "unknown model");
    } else {
        req->prepared = true;
        rc = GEN_SVC_OK;
    }
    free(msg);
    return rc;
}

bool gen_service_needs_fetch(const gen_service_req *req)
{
    json_t *lists[] = {req->parsed.product_images, req->parsed.model_images}, *v;
    size_t i;
    for (size_t k = 0; k < ARRAY_LEN(lists); k++)
        json_array_foreach(lists[k], i, v) if (!media_is_own_url(json_string_value(v))) return true;
    return false;
}

/* The keyed part of a charged write: the Idempotency-Key and the hash of
 * the request it came with (key NULL: none). */
typedef struct idem_key {
    const char *key;
    const char *request_hash;
} idem_key;

/* The charged write of n filled records (a create: one; a batch: its
 * items, batch_id set) with the idempotency row when keyed, answering
 * status with data (stolen) on success; a single create's record then
 * moves into out->gen. Or the first answer (a replay), or the error. */
static int write_charged(idem_key k, const user_record *caller, gen_record *gens, size_t n,
                         bool start, bool reply_early, int status, json_t *data,
                         gen_service_result *out)
{
    int replay_status = 0;
    char *text = k.key ? replay_envelope(data) : NULL, *replay = NULL;
    store_idem idem = {.key = k.key,
                       .request_hash = k.request_hash,
                       .response = text,
                       .http_status = status,
                       .not_before = gens[0].created_at - GEN_IDEMPOTENCY_KEEP_MS};
    store_pending *pending = reply_early ? store_defer(store) : NULL;
    int rc =
        store_gen_create_many(store, gens, n, start, k.key ? &idem : NULL, &replay, &replay_status);
    if (pending) store_defer_stop(pending);
    bool batch = gens[0].batch_id[0] != '\0';
    if (rc == STORE_OK) { /* the commit hook wakes the workers once it is durable */
        if (batch)
            succeed(out, status, json_incref(data));
        else
            succeed_with(out, status, json_incref(data), &gens[0]);
    } else if (rc == STORE_EREPLAY) {
        succeed(out, replay_status, NULL);
        out->replay = replay;
        replay = NULL;
    } else if (rc == STORE_EIDEM_MISMATCH) {
        fail(out, GEN_SVC_EIDEM_REUSED, NULL,
             "this Idempotency-Key was used with a different request body");
    } else if (rc == STORE_EINSUFFICIENT) {
        int64_t cost = 0;
        for (size_t i = 0; i < n; i++)
            cost += gens[i].tokens_used;
        insufficient(out, batch ? "batch" : "generation", cost, caller);
    } else {
        store_failure(out, rc, false);
    }
    out->pending = pending;
    json_decref(data);
    free(text);
    free(replay);
    return out->status;
}

/* A create's charged write (write_charged of its one record). */
static int write_create(const gen_service_req *req, const user_record *caller, gen_record *g,
                        bool start, json_t *data, gen_service_result *out)
{
    idem_key k = {req->idem_key, req->request_hash};
    int tokens = g->tokens_used;
    char id[ID_LEN];
    memcpy(id, g->id, ID_LEN);
    int rc = write_charged(k, caller, g, 1, start, req->reply_early, start ? 202 : 201, data, out);
    if (rc == GEN_SVC_OK && !out->replay)
        rlog_info(log_id(req), "created %s (%d tokens)%s", id, tokens, start ? ", started" : "");
    return rc;
}

int gen_service_finish(const gen_service_req *req, const user_record *caller, bool start,
                       gen_service_result *out)
{
    memset(out, 0, sizeof *out);
    const gen_request *r = &req->parsed;
    const model_info *m = req->prepared ? provider_model_find(r->params.model) : NULL;
    if (!m) return fail(out, GEN_SVC_EINTERNAL, NULL, "the request was not validated");
    if (start && gen_service_queue_room(1, out) != GEN_SVC_OK) return out->status;
    /* The unit first: past the limit nothing is fetched or charged (but a
     * replay still gets its first answer). */
    if (rate_take(caller, 1, req->reply_early, out) != GEN_SVC_OK) {
        if (out->status == GEN_SVC_ERATE) replay_at_limit(req, caller, out);
        return out->status;
    }
    json_t *products, *models, *copies;
    if (import_images(r, &products, &models, &copies, out) != GEN_SVC_OK) {
        rate_give_back(caller, 1, out);
        return out->status;
    }
    gen_record g = {0};
    fill_record(&g, caller->id, products, models, r->custom_prompt, &r->params, r->priority,
                gen_cost(m->base_cost, r->params.quality));
    int rc = write_create(req, caller, &g, start, created_data(&g, start), out);
    /* Not created (or an idempotent replay of an earlier create): the
     * copies belong to nothing, and the unit goes back. */
    if (rc != GEN_SVC_OK || out->replay) {
        delete_urls(copies);
        rate_give_back(caller, 1, out);
    }
    json_decref(products);
    json_decref(models);
    json_decref(copies);
    gen_record_free(&g);
    return rc;
}

int gen_service_check_images(const gen_service_req *req, gen_service_result *out)
{
    memset(out, 0, sizeof *out);
    if (!req->prepared) return fail(out, GEN_SVC_EINTERNAL, NULL, "the request was not validated");
    json_t *products, *models, *copies;
    if (import_images(&req->parsed, &products, &models, &copies, out) != GEN_SVC_OK)
        return out->status;
    delete_urls(copies); /* checked, not kept */
    json_decref(products);
    json_decref(models);
    json_decref(copies);
    return succeed(out, 200, NULL);
}

static int create(gen_service_req *req, const user_record *caller, bool start,
                  gen_service_result *out)
{
    int rc = gen_service_prepare(req, caller, out);
    return rc == GEN_SVC_OK ? gen_service_finish(req, caller, start, out) : rc;
}

int gen_service_create(gen_service_req *req, const user_record *caller, gen_service_result *out)
{
    return create(req, caller, false, out);
}

int gen_service_create_and_start(gen_service_req *req, const user_record *caller,
                                 gen_service_result *out)
{
    return create(req, caller, true, out);
}

/* ---- actions on an existing generation ---- */

int gen_service_get(const gen_service_req *req, const user_record *caller, gen_service_result *out)
{
    memset(out, 0, sizeof *out);
    if (load_owned(req->gen_id, caller, &out->gen, out) != GEN_SVC_OK) return out->status;
    return succeed(out, 200, gen_record_to_json(&out->gen));
}

int gen_service_start(const gen_service_req *req, const user_record *caller,
                      gen_service_result *out)
{
    memset(out, 0, sizeof *out);
    gen_record g;
    if (load_owned(req->gen_id, caller, &g, out) != GEN_SVC_OK) return out->status;
    /* A generation that is not pending answers its status error, as before. */
    if (g.status == GEN_PENDING && gen_service_queue_room(1, out) != GEN_SVC_OK) {
        gen_record_free(&g);
        return out->status;
    }
    store_pending *pending = req->reply_early ? store_defer(store) : NULL;
    int rc = gen_state_start(store, g.id, now_ms());
    if (pending) store_defer_stop(pending);
    out->pending = pending; /* set before anything below fills *out */
    if (rc == STORE_ECONFLICT) {
        status_error(out, &g, "start", "pending");
    } else if (rc != STORE_OK) {
        store_failure(out, rc, true);
    } else { /* the commit hook wakes the workers once it is durable */
        succeed_with(out, 202,
                     json_pack("{s:s, s:[], s:s, s:s}", "generationId", g.id, "resultImages",
                               "status", "processing", "message",
                               "Generation processing started successfully"),
                     &g);
    }
    gen_record_free(&g);
    return out->status;
}

int gen_service_cancel(const gen_service_req *req, const user_record *caller,
                       gen_service_result *out)
{
    memset(out, 0, sizeof *out);
    gen_record g;
    if (load_owned(req->gen_id, caller, &g, out) != GEN_SVC_OK) return out->status;
    int rc = gen_state_cancel(store, g.id, "cancelled by the user", now_ms());
    if (rc == STORE_ECONFLICT) {
        status_error(out, &g, "cancel", "pending or processing");
    } else if (rc != STORE_OK) {
        store_failure(out, rc, true);
    } else {
        queue_cancel(g.id);
        gen_record_free(&g);
        if (load_owned(req->gen_id, caller, &g, out) == GEN_SVC_OK)
            succeed_with(out, 200, gen_record_to_json(&g), &g);
    }
    gen_record_free(&g);
    return out->status;
}

/* The new record of a retry, written and charged; fills *out. */
static int write_retry(const gen_record *old, const model_info *m, const user_record *caller,
                       gen_service_result *out)
{
    gen_record g = {0};
    fill_record(&g, caller->id, old->product_images, old->model_images, old->custom_prompt,
                &old->params, old->priority, gen_cost(m->base_cost, old->params.quality));
    snprintf(g.retry_of, sizeof g.retry_of, "%s", old->id);
    if (rate_take(caller, 1, false, out) != GEN_SVC_OK) {
        gen_record_free(&g);
        return out->status;
    }
    int rc = store_gen_create(store, &g, false, NULL, NULL, NULL);
    if (rc != STORE_OK) rate_give_back(caller, 1, out);
    if (rc == STORE_EINSUFFICIENT) {
        insufficient(out, "generation", g.tokens_used, caller);
    } else if (rc != STORE_OK) {
        store_failure(out, rc, false);
    } else {
        json_t *data = created_data(&g, false);
        json_object_set_new(data, "retryOf", json_string(old->id));
        succeed_with(out, 201, data, &g);
    }
    gen_record_free(&g);
    return out->status;
}

int gen_service_retry(const gen_service_req *req, const user_record *caller,
                      gen_service_result *out)
{
    memset(out, 0, sizeof *out);
    gen_record old;
    if (load_owned(req->gen_id, caller, &old, out) != GEN_SVC_OK) return out->status;
    const model_info *m = provider_model_find(old.params.model);
    const char *why = NULL;
    if (!gen_state_retryable(old.status))
        status_error(out, &old, "retry", "failed or cancelled");
    else if (!m || !provider_model_available(m, &why))
        fail(out, GEN_SVC_EMODEL, NULL, "model '%s' is not available: %s", old.params.model,
             why ? why : "unknown model");
    else
        write_retry(&old, m, caller, out);
    gen_record_free(&old);
    return out->status;
}

int gen_service_delete(const gen_service_req *req, const user_record *caller,
                       gen_service_result *out)
{
    memset(out, 0, sizeof *out);
    gen_record g;
    if (load_owned(req->gen_id, caller, &g, out) != GEN_SVC_OK) return out->status;
    json_t *results = NULL;
    int rc = store_gen_delete(store, g.id, gen_state_deletable(), &results);
    if (rc == STORE_ECONFLICT) {
        status_error(out, &g, "delete", "completed, failed or cancelled");
    } else if (rc != STORE_OK) {
        store_failure(out, rc, true);
    } else {
        delete_urls(results);
        succeed(out, 200, json_pack("{s:s, s:b}", "id", g.id, "deleted", 1));
    }
    json_decref(results);
    gen_record_free(&g);
    return out->status;
}

/* ---- batches ---- */

void gen_service_batch_free(gen_service_batch *b)
{
    if (!b) return;
    for (size_t i = 0; i < b->n; i++)
        gen_service_req_free(&b->items[i]);
    free(b->items);
    json_decref(b->body);
    free(b->idem_key);
    memset(b, 0, sizeof *b);
}

/* Appends to `into` each {field, message} of `errs` with "items[i]."
 * before its field. */
static void add_item_errors(json_t *into, size_t i, const json_t *errs)
{
    size_t k;
    json_t *e;
    json_array_foreach(errs, k, e)
    {
        char *field = xasprintf("items[%zu].%s", i, json_string_value(json_object_get(e, "field")));
        json_array_append_new(into, json_pack("{s:s, s:O}", "field", field, "message",
                                              json_object_get(e, "message")));
        free(field);
    }
}

static int batch_shape_error(gen_service_result *out, const char *field, const char *message)
{
    return fail(out, GEN_SVC_EVALIDATION,
                json_pack("[{s:s, s:s}]", "field", field, "message", message), "%s", message);
}

int gen_service_batch_prepare(gen_service_batch *b, const user_record *caller,
                              gen_service_result *out)
{
    memset(out, 0, sizeof *out);
    const char *key = b->idem_key;
    if (key && (!*key || strlen(key) > GEN_SERVICE_IDEM_KEY_MAX))
        return batch_shape_error(out, "Idempotency-Key",
                                 "Idempotency-Key must be 1 to 255 characters");
    json_t *items = json_object_get(b->body, "items"), *js = json_object_get(b->body, "start");
    size_t n = json_array_size(items);
    if (!json_is_array(items) || n < 1 || n > GEN_SERVICE_BATCH_MAX)
        return batch_shape_error(out, "items", "items must be an array of 1 to 20 create bodies");
    if (js && !json_is_boolean(js) && !json_is_null(js))
        return batch_shape_error(out, "start", "start must be true or false");
    b->start = json_is_true(js);
    b->items = xcalloc(n, sizeof *b->items);
    b->n = n;
    json_t *errs = json_array();
    char *model_error = NULL; /* the first item's MODEL_ERROR message */
    for (size_t i = 0; i < n; i++) {
        gen_service_req *it = &b->items[i];
        json_t *body = json_array_get(items, i);
        snprintf(it->request_id, sizeof it->request_id, "%s", b->request_id);
        if (!json_is_object(body)) {
            char field[24];
            snprintf(field, sizeof field, "items[%zu]", i);
            json_array_append_new(errs, json_pack("{s:s, s:s}", "field", field, "message",
                                                  "each item must be a create body (an object)"));
            continue;
        }
        it->body = json_incref(body);
        gen_service_result sub;
        int rc = gen_service_prepare(it, caller, &sub);
        if (rc == GEN_SVC_EVALIDATION) {
            add_item_errors(errs, i, sub.validation_errors);
        } else if (rc == GEN_SVC_EMODEL) {
            char field[32];
            snprintf(field, sizeof field, "items[%zu].model", i);
            json_array_append_new(errs,
                                  json_pack("{s:s, s:s}", "field", field, "message", sub.message));
            if (!model_error) model_error = xasprintf("items[%zu]: %s", i, sub.message);
        }
        gen_service_result_free(&sub);
    }
    int rc = GEN_SVC_OK;
    if (json_array_size(errs) > 0 && (!model_error || json_array_size(errs) > 1))
        rc = fail(out, GEN_SVC_EVALIDATION, json_incref(errs), "some items are invalid");
    else if (model_error)
        rc = fail(out, GEN_SVC_EMODEL, json_incref(errs), "%s", model_error);
    json_decref(errs);
    free(model_error);
    return rc;
}

bool gen_service_batch_needs_fetch(const gen_service_batch *b)
{
    for (size_t i = 0; i < b->n; i++)
        if (gen_service_needs_fetch(&b->items[i])) return true;
    return false;
}

/* Every item's images made our own, as a create does (import_images):
 * gens[i] gets its own URLs, and *copies every copy made. On an error no
 * copy is left and IMAGE_VALIDATION_ERROR names each bad image by item. */
static int batch_import(const gen_service_batch *b, json_t **products, json_t **models,
                        json_t *copies, gen_service_result *out)
{
    json_t *errs = json_array();
    for (size_t i = 0; i < b->n; i++) {
        json_t *own_copies = NULL;
        gen_service_result sub = {0};
        if (import_images(&b->items[i].parsed, &products[i], &models[i], &own_copies, &sub) ==
            GEN_SVC_OK)
            json_array_extend(copies, own_copies);
        else
            add_item_errors(errs, i, sub.validation_errors);
        json_decref(own_copies);
        gen_service_result_free(&sub);
    }
    if (json_array_size(errs) == 0) {
        json_decref(errs);
        return GEN_SVC_OK;
    }
    delete_urls(copies);
    const json_t *first = json_array_get(errs, 0);
    return fail(out, GEN_SVC_EIMAGE, errs, "an input image cannot be used: %s: %s",
                json_string_value(json_object_get(first, "field")),
                json_string_value(json_object_get(first, "message")));
}

/* The `data` of a batch create's answer. Caller owns it. */
static json_t *batch_created_data(const gen_record *gens, size_t n, bool start)
{
    json_t *ids = json_array();
    int64_t cost = 0;
    for (size_t i = 0; i < n; i++) {
        json_array_append_new(ids, json_string(gens[i].id));
        cost += gens[i].tokens_used;
    }
    return json_pack("{s:s, s:o, s:I, s:s}", "batchId", gens[0].batch_id, "generationIds", ids,
                     "estimatedCost", (json_int_t)cost, "status", start ? "processing" : "pending");
}

/* A batch's charged write (write_charged of its items). */
static int batch_write(const gen_service_batch *b, const user_record *caller, gen_record *gens,
                       json_t *data, gen_service_result *out)
{
    idem_key k = {b->idem_key, b->request_hash};
    json_int_t cost = json_integer_value(json_object_get(data, "estimatedCost"));
    int rc = write_charged(k, caller, gens, b->n, b->start, b->reply_early, 201, data, out);
    if (rc == GEN_SVC_OK && !out->replay)
        rlog_info(b->request_id[0] ? b->request_id : NULL,
                  "created batch %s: %zu items (%lld tokens)%s", gens[0].batch_id, b->n,
                  (long long)cost, b->start ? ", started" : "");
    return rc;
}

int gen_service_batch_finish(const gen_service_batch *b, const user_record *caller,
                             gen_service_result *out)
{
    memset(out, 0, sizeof *out);
    if (b->n == 0) return fail(out, GEN_SVC_EINTERNAL, NULL, "the batch was not validated");
    const model_info *models_of[GEN_SERVICE_BATCH_MAX];
    for (size_t i = 0; i < b->n; i++) {
        models_of[i] =
            b->items[i].prepared ? provider_model_find(b->items[i].parsed.params.model) : NULL;
        if (!models_of[i]) return fail(out, GEN_SVC_EINTERNAL, NULL, "the batch was not validated");
    }
    if (b->start && gen_service_queue_room((int)b->n, out) != GEN_SVC_OK) return out->status;
    /* One unit per item, all at once: past the limit nothing is fetched or
     * charged (a keyed replay still gets its first answer). */
    gen_service_req keyed = {.idem_key = b->idem_key};
    memcpy(keyed.request_hash, b->request_hash, sizeof keyed.request_hash);
    if (rate_take(caller, (int)b->n, b->reply_early, out) != GEN_SVC_OK) {
        if (out->status == GEN_SVC_ERATE) replay_at_limit(&keyed, caller, out);
        return out->status;
    }
    json_t *products[GEN_SERVICE_BATCH_MAX] = {0}, *models[GEN_SERVICE_BATCH_MAX] = {0};
    json_t *copies = json_array();
    gen_record gens[GEN_SERVICE_BATCH_MAX];
    memset(gens, 0, sizeof gens);
    int rc = batch_import(b, products, models, copies, out);
    if (rc == GEN_SVC_OK) {
        char batch_id[ID_LEN], ids[GEN_SERVICE_BATCH_MAX][ID_LEN];
        ids_new("bat", batch_id);
        /* Ids made in one millisecond are not ordered among themselves; the
         * queue is FIFO by id within a time, so sorted ids in item order
         * make the items run in the order they were given. */
        for (size_t i = 0; i < b->n; i++)
            ids_new("gen", ids[i]);
        qsort(ids, b->n, sizeof ids[0], (int (*)(const void *, const void *))strcmp);
        for (size_t i = 0; i < b->n; i++) {
            const gen_request *r = &b->items[i].parsed;
            fill_record(&gens[i], caller->id, products[i], models[i], r->custom_prompt, &r->params,
                        r->priority, gen_cost(models_of[i]->base_cost, r->params.quality));
            memcpy(gens[i].id, ids[i], ID_LEN);
            snprintf(gens[i].batch_id, sizeof gens[i].batch_id, "%s", batch_id);
        }
        rc = batch_write(b, caller, gens, batch_created_data(gens, b->n, b->start), out);
    }
    /* Not created (or a replay of an earlier batch): the copies belong to
     * nothing, and the units go back. */
    if (rc != GEN_SVC_OK || out->replay) {
        delete_urls(copies);
        rate_give_back(caller, (int)b->n, out);
    }
    for (size_t i = 0; i < b->n; i++) {
        json_decref(products[i]);
        json_decref(models[i]);
        gen_record_free(&gens[i]);
    }
    json_decref(copies);
    return rc;
}

/* Loads a batch the caller owns into *b (caller frees). */
static int load_batch(const char *batch_id, const user_record *caller, store_batch *b,
                      gen_service_result *out)
{
    int rc = batch_id ? store_batch_get(store, batch_id, b) : STORE_ENOTFOUND;
    if (rc == STORE_ENOTFOUND) return fail(out, GEN_SVC_ENOBATCH, NULL, "batch not found");
    if (rc != STORE_OK) return store_failure(out, rc, false);
    if (strcmp(b->user_id, caller->id) != 0) {
        store_batch_free(b);
        return fail(out, GEN_SVC_EFORBIDDEN, NULL, "this batch belongs to another user");
    }
    return GEN_SVC_OK;
}

static json_t *batch_json(const store_batch *b)
{
    json_t *counts = json_object();
    for (int st = 0; st < GEN_STATUS_COUNT; st++)
        json_object_set_new(counts, gen_status_name((gen_status)st), json_integer(b->counts[st]));
    return json_pack("{s:s, s:s, s:I, s:i, s:I, s:o, s:O}", "_id", b->id, "userId", b->user_id,
                     "createdAt", (json_int_t)b->created_at, "total", b->total, "tokensUsed",
                     (json_int_t)b->tokens_used, "counts", counts, "generationIds",
                     b->generation_ids);
}

int gen_service_batch_get(const char *batch_id, const user_record *caller, gen_service_result *out)
{
    memset(out, 0, sizeof *out);
    store_batch b;
    if (load_batch(batch_id, caller, &b, out) != GEN_SVC_OK) return out->status;
    succeed(out, 200, batch_json(&b));
    store_batch_free(&b);
    return GEN_SVC_OK;
}

int gen_service_batch_cancel(const char *batch_id, const user_record *caller,
                             gen_service_result *out)
{
    memset(out, 0, sizeof *out);
    store_batch b;
    if (load_batch(batch_id, caller, &b, out) != GEN_SVC_OK) return out->status;
    size_t i, cancelled = 0;
    json_t *v;
    int rc = STORE_OK;
    json_array_foreach(b.generation_ids, i, v)
    {
        const char *id = json_string_value(v);
        rc = gen_state_cancel(store, id, "cancelled by the user", now_ms());
        if (rc == STORE_OK) {
            queue_cancel(id);
            cancelled++;
        } else if (rc == STORE_ECONFLICT || rc == STORE_ENOTFOUND) {
            rc = STORE_OK; /* already terminal, or deleted: nothing to cancel */
        } else {
            break;
        }
    }
    store_batch_free(&b);
    if (rc != STORE_OK) return store_failure(out, rc, false);
    log_info("batch %s: %zu item%s cancelled", batch_id, cancelled, cancelled == 1 ? "" : "s");
    return gen_service_batch_get(batch_id, caller, out);
}
