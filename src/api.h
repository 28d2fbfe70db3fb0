/*
 * api — one handler per route: decode the request, call the rules and the
 * store (for generations: gen_service.c), encode the answer. api.c holds
 * the route table, the auth gate and the operational routes;
 * api_account.c the account routes; api_gen.c the generation, upload and
 * streaming routes; api_webhook.c the outbound webhook routes.
 */
#ifndef SS_API_H
#define SS_API_H

#include <jansson.h>
#include <stdbool.h>

#include "gen_service.h"
#include "http.h"
#include "store.h"

/* Call once before http_start. */
void api_init(store_t *s);
/* The http dispatch function. */
void api_dispatch(http_req *r);
/* The http body limit: uploads take an image, everything else --max-body. */
size_t api_body_limit(const char *method, const char *path, bool *files);
/* For http_set_inline on SQLite: a create (step 1), and a start or a
 * one-step create without Prefer: wait, compute, join the group commit and
 * hold only their reply for the disk, so they run on the event-loop
 * thread. Everything else may wait on the disk or the network. */
bool api_runs_inline(http_req *r);

/* ---- shared by the api_*.c files ---- */

/* What a handler receives: the request, the caller (when the route needs
 * authentication), and the path parameters, if any. */
typedef struct api_call {
    http_req *req;
    user_record user;
    bool authed;
    char param[128];  /* the first path parameter ({id}) */
    char param2[128]; /* a second one ({deliveryId}), "" when none */
} api_call;

typedef void (*api_handler_fn)(api_call *c);

extern store_t *api_store;

/* Parses the body as a JSON object. On failure replies VALIDATION_ERROR and
 * returns NULL. Caller owns the result. */
json_t *api_json_body(api_call *c);
/* Replies for a store failure (not-found, conflict, internal) with the
 * given wording; returns nothing. */
void api_store_error(api_call *c, int rc, const char *what);
/* Parses ?limit (1..100, default 20) and ?cursor (an id with id_prefix,
 * or a number when id_prefix is NULL); replies and returns false when
 * malformed. */
bool api_page_args(api_call *c, const char *id_prefix, int *limit, const char **cursor);
/* A single validation error {field, message} reply. */
void api_field_error(api_call *c, const char *field, const char *message);
/* {"items": items, "nextCursor": next|null}; steals items, copies next. */
json_t *api_list(json_t *items, const char *next_cursor);
json_t *api_user_json(const user_record *u);

/* Handlers (api_account.c) */
void api_signup(api_call *c);
void api_login(api_call *c);
void api_logout(api_call *c);
void api_me(api_call *c);
void api_keys_create(api_call *c);
void api_keys_list(api_call *c);
void api_keys_delete(api_call *c);
void api_admin_tokens(api_call *c);
void api_admin_plan(api_call *c);
void api_transactions(api_call *c);

/* Handlers (api_gen.c) */
void api_models(api_call *c);
void api_replicate_webhook(api_call *c);
void api_upload(api_call *c);
void api_create(api_call *c);
void api_generate(api_call *c);
void api_gen_get(api_call *c);
void api_gen_list(api_call *c);
void api_gen_cancel(api_call *c);
void api_gen_retry(api_call *c);
void api_gen_delete(api_call *c);
/* A create (start false) or the legacy one-step create-and-start from a
 * create body (stolen), answered exactly as those routes answer; the
 * Idempotency-Key is the request's, scoped to its path. */
void api_gen_create(api_call *c, json_t *body, bool start);
void api_batch_create(api_call *c);
void api_batch_get(api_call *c);
void api_batch_cancel(api_call *c);
/* The headers parsed here (pure, for tests and fuzzing): the seconds of a
 * Prefer header's "wait=N" clamped to 0..60, -1 when absent; and a
 * Last-Event-ID (decimal digits only, within int64): 0 and *out, or -1. */
int api_prefer_wait(const char *prefer);
int api_last_event_id(const char *value, int64_t *out);
void api_gen_events(api_call *c);
void api_user_events(api_call *c);
/* Handler (api_queue.c) */
void api_queue(api_call *c);

/* Handlers (api_webhook.c) */
void api_webhook_create(api_call *c);
/* Decodes a webhook registration body {url, events, description?}: the
 * VALIDATION_ERROR list (new), or NULL when every field is valid; *url
 * (NULL when missing), *events (comma-separated, each once; NULL when any
 * is invalid) and *description ("" when absent) are new strings, set
 * either way. The URL's address rules (net_check_url) are the caller's. */
json_t *api_webhook_decode(const json_t *body, char **url, char **events, char **description);
void api_webhook_list(api_call *c);
void api_webhook_delete(api_call *c);
void api_webhook_deliveries(api_call *c);
void api_webhook_redeliver(api_call *c);

/* Handlers (api_template.c) */
void api_template_create(api_call *c);
void api_template_list(api_call *c);
void api_template_get(api_call *c);
void api_template_update(api_call *c);
void api_template_delete(api_call *c);
void api_template_generate(api_call *c);
/* A template body {name, body} validated as POST /api/templates does:
 * the VALIDATION_ERROR list (new; body errors under "body."), or NULL
 * when valid, with req prepared (req->body is a new reference to the
 * body's "body"; the caller frees req). res: the service's answer for the
 * body (a MODEL_ERROR there when errs is NULL and res->status != 0);
 * the caller frees it. */
json_t *api_template_validate(const json_t *body, const user_record *caller, gen_service_req *req,
                              gen_service_result *res);
/* The saved body with the overrides applied: each field replaced (null
 * removes it), `parameters` merged key by key. A new object. */
json_t *api_template_merge(const json_t *saved, const json_t *overrides);

#endif
