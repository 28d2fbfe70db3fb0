/*
 * api_webhook — the outbound webhook routes (SPEC §8): register, list and
 * delete endpoints, list a webhook's deliveries, redeliver one. Sending is
 * webhook.c's. A webhook of another user answers UNAUTHORIZED, an unknown
 * one NOT_FOUND (SPEC §1). The signing secret leaves the server once, in
 * the answer to the create; it is never logged.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "log.h"
#include "net.h"
#include "util.h"
#include "webhook.h"

#define DESCRIPTION_MAX 500
#define EVENT_ERRORS_MAX 5 /* events[i] entries listed; one more entry counts the rest */

static void add_error(json_t **errs, const char *field, const char *message)
{
    if (!*errs) *errs = json_array();
    json_array_append_new(*errs, json_pack("{s:s, s:s}", "field", field, "message", message));
}

/* "a,b" → ["a", "b"] (a new array). */
static json_t *events_json(const char *events)
{
    json_t *a = json_array();
    for (const char *p = events; p && *p;) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        if (n) json_array_append_new(a, json_stringn(p, n));
        p = comma ? comma + 1 : NULL;
    }
    return a;
}

/* {id, url, events, description, createdAt} (never the secret). */
static json_t *webhook_json(const store_webhook *w)
{
    return json_pack("{s:s, s:s, s:o, s:s, s:I}", "id", w->id, "url", w->url ? w->url : "",
                     "events", events_json(w->events), "description",
                     w->description ? w->description : "", "createdAt", (json_int_t)w->created_at);
}

/* {id, type, status, attempts, lastStatusCode|null, nextAttemptAt|null,
 * createdAt, updatedAt} */
static json_t *delivery_json(const store_delivery *d)
{
    return json_pack(
        "{s:s, s:s, s:s, s:i, s:o, s:o, s:I, s:I}", "id", d->id, "type", d->type, "status",
        d->status, "attempts", d->attempts, "lastStatusCode",
        d->last_status_code ? json_integer(d->last_status_code) : json_null(), "nextAttemptAt",
        d->next_attempt_at ? json_integer(d->next_attempt_at) : json_null(), "createdAt",
        (json_int_t)d->created_at, "updatedAt", (json_int_t)d->updated_at);
}

/* ---- create ---- */

/* A validated-as-far-as-possible create, continued on the slow pool (the
 * URL check resolves the host). Owned by the continuation. */
typedef struct create_job {
    char user_id[ID_LEN];
    char *url;         /* NULL when missing or not a string (error already in errs) */
    char *events;      /* "a,b", NULL when invalid */
    char *description; /* "" when none */
    json_t *errs;      /* validation errors so far, or NULL */
} create_job;

static void create_job_free(void *ctx)
{
    create_job *j = ctx;
    free(j->url);
    free(j->events);
    free(j->description);
    json_decref(j->errs);
    free(j);
}

static void create_job_run(http_req *r, void *ctx)
{
    create_job *j = ctx;
    if (j->url) {
        char *why = NULL;
        if (net_check_url(j->url, "webhook URL", &why) != 0)
            add_error(&j->errs, "url", why ? why : "webhook URL is not allowed");
        free(why);
    }
    if (j->errs) {
        http_reply_error(r, 400, "VALIDATION_ERROR", "some fields are invalid", j->errs);
        j->errs = NULL; /* stolen */
        return;
    }
    char secret[WEBHOOK_SECRET_LEN];
    webhook_new_secret(secret);
    store_webhook w = {.url = j->url,
                       .events = j->events,
                       .description = j->description,
                       .secret = secret,
                       .created_at = now_ms()};
    ids_new("whk", w.id);
    snprintf(w.user_id, sizeof w.user_id, "%s", j->user_id);
    int rc = store_webhook_create(api_store, &w);
    if (rc != STORE_OK) {
        api_call c = {.req = r};
        api_store_error(&c, rc, "user");
    } else {
        rlog_info(http_request_id(r), "webhook %s registered by %s", w.id, w.user_id);
        json_t *out = webhook_json(&w);
        json_object_set_new(out, "secret", json_string(secret));
        http_reply_json(r, 201, out);
    }
    memset(secret, 0, sizeof secret);
}

json_t *api_webhook_decode(const json_t *body, char **url, char **events, char **description)
{
    json_t *errs = NULL;
    *url = *events = *description = NULL;
    json_t *ju = json_object_get(body, "url"), *je = json_object_get(body, "events"),
           *jd = json_object_get(body, "description");
    if (!json_is_string(ju))
        add_error(&errs, "url", "url is required and must be a string");
    else
        *url = xstrdup(json_string_value(ju));

    if (!json_is_array(je) || json_array_size(je) == 0) {
        add_error(&errs, "events",
                  "events is required: a non-empty array of generation.processing, "
                  "generation.completed, generation.failed, generation.cancelled, "
                  "balance.changed");
    } else {
        buf list = {0};
        size_t i, broken = 0;
        json_t *v;
        json_array_foreach(je, i, v)
        {
            const char *t = json_string_value(v);
            if (!t || !webhook_type_valid(t)) {
                char field[32];
                snprintf(field, sizeof field, "events[%zu]", i);
                if (++broken <= EVENT_ERRORS_MAX) /* a bounded answer to any body */
                    add_error(&errs, field,
                              "not an event type: expected generation.processing, "
                              "generation.completed, generation.failed, generation.cancelled or "
                              "balance.changed");
                continue;
            }
            if (list.len && webhook_subscribed(list.data, t)) continue; /* listed twice */
            buf_printf(&list, "%s%s", list.len ? "," : "", t);
        }
        if (broken > EVENT_ERRORS_MAX) {
            char *m = xasprintf("%zu more elements are not event types (only the first %d are "
                                "listed)",
                                broken - EVENT_ERRORS_MAX, EVENT_ERRORS_MAX);
            add_error(&errs, "events", m);
            free(m);
        }
        if (list.len && !errs) *events = xstrndup(list.data, list.len);
        buf_free(&list);
    }
    if (jd && !json_is_null(jd) && !json_is_string(jd))
        add_error(&errs, "description", "description must be a string");
    else if (json_is_string(jd) && strlen(json_string_value(jd)) > DESCRIPTION_MAX)
        add_error(&errs, "description", "description must be at most 500 characters");
    *description = xstrdup(json_is_string(jd) ? json_string_value(jd) : "");
    return errs;
}

void api_webhook_create(api_call *c)
{
    json_t *body = api_json_body(c);
    if (!body) return;
    create_job *j = xcalloc(1, sizeof *j);
    snprintf(j->user_id, sizeof j->user_id, "%s", c->user.id);
    j->errs = api_webhook_decode(body, &j->url, &j->events, &j->description);
    json_decref(body);
    http_offload(c->req, create_job_run, j, create_job_free);
}

/* ---- list, delete ---- */

void api_webhook_list(api_call *c)
{
    store_webhook *w = NULL;
    size_t n = 0;
    int rc = store_webhook_list(api_store, c->user.id, &w, &n);
    if (rc != STORE_OK) {
        api_store_error(c, rc, "webhook");
        return;
    }
    json_t *items = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(items, webhook_json(&w[i]));
    store_webhooks_free(w, n);
    http_reply_json(c->req, 200, api_list(items, NULL));
}

/* Whether c->param names one of the caller's webhooks; replies
 * NOT_FOUND, UNAUTHORIZED or the store's error when not. */
static bool own_webhook(api_call *c)
{
    store_webhook w;
    int rc = store_webhook_get(api_store, c->param, &w);
    if (rc != STORE_OK) {
        api_store_error(c, rc, "webhook");
        return false;
    }
    bool mine = str_eq(w.user_id, c->user.id);
    store_webhook_clear(&w);
    if (!mine)
        http_reply_error(c->req, 403, "UNAUTHORIZED", "this webhook belongs to another user", NULL);
    return mine;
}

void api_webhook_delete(api_call *c)
{
    if (!own_webhook(c)) return;
    int rc = store_webhook_delete(api_store, c->user.id, c->param);
    if (rc != STORE_OK)
        api_store_error(c, rc, "webhook");
    else
        http_reply_json(c->req, 200, json_pack("{s:s, s:b}", "id", c->param, "deleted", 1));
}

/* ---- deliveries ---- */

void api_webhook_deliveries(api_call *c)
{
    int limit;
    const char *cursor;
    if (!api_page_args(c, "msg", &limit, &cursor)) return;
    if (!own_webhook(c)) return;
    store_delivery *d = NULL;
    size_t n = 0;
    char *next = NULL;
    int rc = store_delivery_list(api_store, c->param, cursor, limit, &d, &n, &next);
    if (rc != STORE_OK) {
        api_store_error(c, rc, "webhook");
        return;
    }
    json_t *items = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(items, delivery_json(&d[i]));
    store_deliveries_free(d, n);
    http_reply_json(c->req, 200, api_list(items, next));
    free(next);
}

void api_webhook_redeliver(api_call *c)
{
    if (!own_webhook(c)) return;
    store_delivery d;
    int rc = store_delivery_redeliver(api_store, c->param, c->param2, now_ms(), &d);
    if (rc != STORE_OK) {
        api_store_error(c, rc, "delivery");
        return;
    }
    webhook_notify();
    http_reply_json(c->req, 202, delivery_json(&d));
}
