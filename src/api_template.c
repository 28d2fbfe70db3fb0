/*
 * api_template — the template routes (SPEC §4 "Templates"): saved create
 * bodies per user. Create and replace validate the body exactly as a create
 * does (gen_service_prepare, then gen_service_check_images, which fetches
 * remote images: that part runs on the slow pool), with the fields named
 * under `body.` (body.style, body.productImages[0]). Generate merges the
 * overrides into the saved body (`parameters` key by key; a null override
 * removes the field) and hands the result to the create path of
 * api_gen.c, so it answers exactly as create (201) or as the legacy
 * one-step generate (202, `start: true`), Idempotency-Key included. A
 * template of another user answers UNAUTHORIZED, an unknown one NOT_FOUND.
 * A user keeps at most TEMPLATES_MAX templates.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "gen_service.h"
#include "log.h"
#include "util.h"

#define TEMPLATES_MAX 100     /* per user */
#define TEMPLATE_NAME_MAX 100 /* characters */

/* {_id, name, body, createdAt, updatedAt} */
static json_t *template_json(const store_template *t)
{
    json_t *body = json_loads(t->body ? t->body : "{}", 0, NULL);
    return json_pack("{s:s, s:s, s:o, s:I, s:I}", "_id", t->id, "name", t->name ? t->name : "",
                     "body", body ? body : json_object(), "createdAt", (json_int_t)t->created_at,
                     "updatedAt", (json_int_t)t->updated_at);
}

static void add_error(json_t **errs, const char *field, const char *message)
{
    if (!*errs) *errs = json_array();
    json_array_append_new(*errs, json_pack("{s:s, s:s}", "field", field, "message", message));
}

/* Appends a service's validation errors to *errs with "body." before
 * each field. */
static void add_body_errors(json_t **errs, const json_t *from)
{
    size_t i;
    json_t *e;
    json_array_foreach(from, i, e)
    {
        char *field = xasprintf("body.%s", json_string_value(json_object_get(e, "field")));
        add_error(errs, field, json_string_value(json_object_get(e, "message")));
        free(field);
    }
}

/* Unicode code points of valid UTF-8 (jansson guarantees validity). */
static size_t utf8_len(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xC0) != 0x80) n++;
    return n;
}

static void reply_service_error(http_req *r, gen_service_result *res)
{
    if (res->status == GEN_SVC_EUNAVAILABLE) http_add_header(r, "Retry-After", "2");
    http_reply_error(r, res->http_status, gen_service_code(res->status), res->message,
                     res->validation_errors);
    res->validation_errors = NULL;
}

/* Loads a template the caller owns into *t (caller clears); replies and
 * returns false otherwise. */
static bool load_owned(api_call *c, store_template *t)
{
    int rc = store_template_get(api_store, c->param, t);
    if (rc != STORE_OK) {
        api_store_error(c, rc, "template");
        return false;
    }
    if (strcmp(t->user_id, c->user.id) != 0) {
        store_template_clear(t);
        http_reply_error(c->req, 403, "UNAUTHORIZED", "this template belongs to another user",
                         NULL);
        return false;
    }
    return true;
}

/* ---- create and replace ---- */

/* A validated template write, continued (on the slow pool when an image
 * is remote) with the image checks and the store write. Owned by the
 * continuation. */
typedef struct save_job {
    user_record caller;
    char tpl_id[ID_LEN]; /* "" for a create */
    char *name;
    char *body; /* the create body as JSON text */
    gen_service_req req;
} save_job;

static void save_job_free(void *ctx)
{
    save_job *j = ctx;
    free(j->name);
    free(j->body);
    gen_service_req_free(&j->req);
    free(j);
}

static void save_job_run(http_req *r, void *ctx)
{
    save_job *j = ctx;
    api_call c = {.req = r};
    gen_service_result res;
    if (gen_service_check_images(&j->req, &res) != GEN_SVC_OK) {
        json_t *errs = NULL;
        add_body_errors(&errs, res.validation_errors);
        json_decref(res.validation_errors);
        res.validation_errors = errs;
        reply_service_error(r, &res);
        gen_service_result_free(&res);
        return;
    }
    gen_service_result_free(&res);
    int64_t now = now_ms();
    store_template t = {.name = j->name, .body = j->body, .created_at = now, .updated_at = now};
    snprintf(t.user_id, sizeof t.user_id, "%s", j->caller.id);
    int rc;
    if (j->tpl_id[0]) {
        store_template out;
        rc = store_template_update(api_store, j->caller.id, j->tpl_id, j->name, j->body, now, &out);
        if (rc == STORE_OK) {
            http_reply_json(r, 200, template_json(&out));
            store_template_clear(&out);
            return;
        }
    } else {
        ids_new("tpl", t.id);
        rc = store_template_create(api_store, &t, TEMPLATES_MAX);
        if (rc == STORE_OK) {
            rlog_info(http_request_id(r), "template %s saved by %s", t.id, t.user_id);
            http_reply_json(r, 201, template_json(&t));
            return;
        }
    }
    if (rc == STORE_ECONFLICT)
        http_reply_error(r, 400, "VALIDATION_ERROR",
                         "a user keeps at most 100 templates; delete one first", NULL);
    else
        api_store_error(&c, rc, j->tpl_id[0] ? "template" : "user");
}

json_t *api_template_validate(const json_t *body, const user_record *caller, gen_service_req *req,
                              gen_service_result *res)
{
    json_t *errs = NULL, *jn = json_object_get(body, "name"), *jb = json_object_get(body, "body");
    const char *name = json_string_value(jn);
    memset(res, 0, sizeof *res);
    if (!name || !*name || utf8_len(name) > TEMPLATE_NAME_MAX)
        add_error(&errs, "name", "name is required: a string of 1 to 100 characters");
    if (!json_is_object(jb)) {
        add_error(&errs, "body", "body is required: a create body (an object)");
    } else {
        req->body = json_incref(jb);
        if (gen_service_prepare(req, caller, res) == GEN_SVC_EVALIDATION)
            add_body_errors(&errs, res->validation_errors);
    }
    return errs;
}

/* Validates {name, body} like a create (the body under "body.") and goes
 * on with save_job_run; tpl_id NULL for a create. Steals body. */
static void save_template(api_call *c, json_t *body, const char *tpl_id)
{
    json_t *jb = json_object_get(body, "body");
    const char *name = json_string_value(json_object_get(body, "name"));
    save_job *j = xcalloc(1, sizeof *j);
    j->caller = c->user;
    if (tpl_id) snprintf(j->tpl_id, sizeof j->tpl_id, "%s", tpl_id);
    snprintf(j->req.request_id, sizeof j->req.request_id, "%s", http_request_id(c->req));
    gen_service_result res;
    json_t *errs = api_template_validate(body, &c->user, &j->req, &res);
    if (!errs && res.status != GEN_SVC_OK) {
        reply_service_error(c->req, &res); /* MODEL_ERROR, as create answers */
        goto done;
    }
    if (errs) {
        http_reply_error(c->req, 400, "VALIDATION_ERROR", "some fields are invalid", errs);
        goto done;
    }
    j->name = xstrdup(name);
    j->body = json_dumps(jb, JSON_COMPACT);
    if (gen_service_needs_fetch(&j->req)) {
        http_offload(c->req, save_job_run, j, save_job_free);
        j = NULL; /* the continuation owns it */
    } else {
        save_job_run(c->req, j);
    }
done:
    gen_service_result_free(&res);
    if (j) save_job_free(j);
    json_decref(body);
}

void api_template_create(api_call *c)
{
    json_t *body = api_json_body(c);
    if (body) save_template(c, body, NULL);
}

void api_template_update(api_call *c)
{
    store_template t;
    if (!load_owned(c, &t)) return;
    store_template_clear(&t);
    json_t *body = api_json_body(c);
    if (body) save_template(c, body, c->param);
}

/* ---- read and delete ---- */

void api_template_list(api_call *c)
{
    int limit;
    const char *cursor;
    if (!api_page_args(c, "tpl", &limit, &cursor)) return;
    store_template *rows = NULL;
    size_t n = 0;
    char *next = NULL;
    int rc = store_template_list(api_store, c->user.id, cursor, limit, &rows, &n, &next);
    if (rc != STORE_OK) {
        api_store_error(c, rc, "template page");
        return;
    }
    json_t *items = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(items, template_json(&rows[i]));
    store_templates_free(rows, n);
    http_reply_json(c->req, 200, api_list(items, next));
    free(next);
}

void api_template_get(api_call *c)
{
    store_template t;
    if (!load_owned(c, &t)) return;
    http_reply_json(c->req, 200, template_json(&t));
    store_template_clear(&t);
}

void api_template_delete(api_call *c)
{
    store_template t;
    if (!load_owned(c, &t)) return;
    store_template_clear(&t);
    int rc = store_template_delete(api_store, c->user.id, c->param);
    if (rc != STORE_OK)
        api_store_error(c, rc, "template");
    else
        http_reply_json(c->req, 200, json_pack("{s:s, s:b}", "id", c->param, "deleted", 1));
}

/* ---- generate ---- */

json_t *api_template_merge(const json_t *saved, const json_t *overrides_in)
{
    json_t *out = json_deep_copy(saved), *v, *overrides = (json_t *)overrides_in; /* read only */
    const char *k;
    json_object_foreach(overrides, k, v)
    {
        json_t *have = json_object_get(out, k);
        if (json_is_null(v)) {
            json_object_del(out, k);
        } else if (strcmp(k, "parameters") == 0 && json_is_object(v) && json_is_object(have)) {
            json_t *p = json_deep_copy(have), *pv;
            const char *pk;
            json_object_foreach(v, pk, pv)
            {
                if (json_is_null(pv))
                    json_object_del(p, pk);
                else
                    json_object_set(p, pk, pv);
            }
            json_object_set_new(out, k, p);
        } else {
            json_object_set(out, k, v);
        }
    }
    return out;
}

void api_template_generate(api_call *c)
{
    store_template t;
    if (!load_owned(c, &t)) return;
    json_t *saved = json_loads(t.body, 0, NULL);
    store_template_clear(&t);
    if (!json_is_object(saved)) {
        json_decref(saved);
        saved = json_object();
    }
    size_t len = 0;
    http_body(c->req, &len);
    json_t *body = len ? api_json_body(c) : json_object(); /* the body is optional */
    if (!body) {
        json_decref(saved);
        return;
    }
    json_t *errs = NULL, *jo = json_object_get(body, "overrides"),
           *js = json_object_get(body, "start");
    if (jo && !json_is_object(jo) && !json_is_null(jo))
        add_error(&errs, "overrides", "overrides must be an object of create fields");
    if (js && !json_is_boolean(js) && !json_is_null(js))
        add_error(&errs, "start", "start must be true or false");
    if (errs) {
        http_reply_error(c->req, 400, "VALIDATION_ERROR", "some fields are invalid", errs);
    } else {
        json_t *merged = json_is_object(jo) ? api_template_merge(saved, jo) : json_incref(saved);
        api_gen_create(c, merged, json_is_true(js)); /* the create path, answers and all */
    }
    json_decref(saved);
    json_decref(body);
}
