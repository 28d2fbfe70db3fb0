/*
 * api — the route table, the auth gate, shared reply helpers, and the
 * operational routes (/healthz, /readyz, /metrics, /api/openapi.json,
 * /media, the web studio's static files).
 */
#include "api.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "config.h"
#include "log.h"
#include "media.h"
#include "metrics.h"
#include "net.h"
#include "queue.h"
#include "util.h"

store_t *api_store;
static atomic_bool serving; /* set once every module is up */

enum { PUBLIC = 0, AUTHED = 1, ADMIN = 2 };

typedef struct route {
    const char *method;
    const char *pattern; /* "{id}" matches one path segment */
    api_handler_fn fn;
    int access;
    const char *summary; /* for the OpenAPI document */
    const char *body;    /* request body schema in openapi_schemas, or NULL */
    const char *reply;   /* `data` schema of the success reply, or NULL */
} route;

static void health(api_call *c);
static void ready(api_call *c);
static void metrics(api_call *c);
static void openapi(api_call *c);

static const route routes[] = {
    {"GET", "/healthz", health, PUBLIC, "Liveness", NULL, NULL},
    {"GET", "/readyz", ready, PUBLIC, "Readiness: the store answers", NULL, NULL},
    {"GET", "/metrics", metrics, PUBLIC, "Prometheus metrics", NULL, NULL},
    {"GET", "/api/openapi.json", openapi, PUBLIC, "This document", NULL, NULL},
    {"POST", "/api/auth/signup", api_signup, PUBLIC, "Create an account and sign in", NULL, NULL},
    {"POST", "/api/auth/login", api_login, PUBLIC, "Sign in with email and password", NULL, NULL},
    {"POST", "/api/auth/logout", api_logout, PUBLIC, "Sign out", NULL, NULL},
    {"GET", "/api/me", api_me, AUTHED, "The caller, balance and stats", NULL, NULL},
    {"POST", "/api/keys", api_keys_create, AUTHED, "Create an API key (shown once)", NULL, NULL},
    {"GET", "/api/keys", api_keys_list, AUTHED, "List API keys", NULL, NULL},
    {"DELETE", "/api/keys/{id}", api_keys_delete, AUTHED, "Revoke an API key", NULL, NULL},
    {"POST", "/api/admin/users/{id}/tokens", api_admin_tokens, ADMIN, "Grant tokens (admin)", NULL,
     NULL},
    {"POST", "/api/admin/users/{id}/plan", api_admin_plan, ADMIN,
     "Set a user's plan, free or pro (admin)", "PlanBody", NULL},
    {"GET", "/api/tokens/transactions", api_transactions, AUTHED, "The token ledger", NULL, NULL},
    {"GET", "/api/models", api_models, PUBLIC, "Models and their availability", NULL, NULL},
    {"POST", "/api/providers/replicate/webhook", api_replicate_webhook, PUBLIC,
     "Replicate's prediction webhook (signed)", NULL, NULL},
    {"POST", "/api/upload", api_upload, AUTHED, "Upload an image", NULL, NULL},
    {"POST", "/api/generation/create", api_create, AUTHED, "Step 1: create a generation",
     "CreateBody", "Created"},
    {"POST", "/api/generate", api_generate, AUTHED,
     "Step 2: start it ({generationId}), or the legacy one-step form (a CreateBody)",
     "GenerateBody", "Started"},
    {"POST", "/api/generation/batch", api_batch_create, AUTHED,
     "Create 1 to 20 generations at once, charged all or none (optionally started)", "BatchBody",
     "BatchCreated"},
    {"GET", "/api/batches/{id}", api_batch_get, AUTHED, "A batch and its counts by status", NULL,
     "Batch"},
    {"POST", "/api/batches/{id}/cancel", api_batch_cancel, AUTHED,
     "Cancel every unfinished item of a batch (each refunded once)", NULL, "Batch"},
    {"GET", "/api/generations", api_gen_list, AUTHED, "List generations", NULL, NULL},
    {"GET", "/api/generations/{id}", api_gen_get, AUTHED, "One generation", NULL, "Generation"},
    {"DELETE", "/api/generations/{id}", api_gen_delete, AUTHED, "Delete a finished generation",
     NULL, NULL},
    {"POST", "/api/generations/{id}/cancel", api_gen_cancel, AUTHED, "Cancel and refund", NULL,
     "Generation"},
    {"POST", "/api/generations/{id}/retry", api_gen_retry, AUTHED, "Retry with the same settings",
     NULL, "Created"},
    {"GET", "/api/generations/{id}/events", api_gen_events, AUTHED, "Live status (SSE)", NULL,
     NULL},
    {"GET", "/api/events", api_user_events, AUTHED, "All live updates of the caller (SSE)", NULL,
     NULL},
    {"GET", "/api/queue", api_queue, AUTHED,
     "Queue depth, running, live worker slots and the caller's queued items", NULL, NULL},
    {"POST", "/api/webhooks", api_webhook_create, AUTHED,
     "Register a webhook endpoint (the signing secret is shown only here)", "WebhookBody",
     "WebhookCreated"},
    {"GET", "/api/webhooks", api_webhook_list, AUTHED, "List webhook endpoints (no secrets)", NULL,
     NULL},
    {"DELETE", "/api/webhooks/{id}", api_webhook_delete, AUTHED,
     "Delete a webhook endpoint and its deliveries", NULL, NULL},
    {"GET", "/api/webhooks/{id}/deliveries", api_webhook_deliveries, AUTHED,
     "A webhook's deliveries, newest first", NULL, NULL},
    {"POST", "/api/webhooks/{id}/deliveries/{deliveryId}/redeliver", api_webhook_redeliver, AUTHED,
     "Send a delivery again (same webhook-id and body)", NULL, "Delivery"},
    /* templates */
    {"POST", "/api/templates", api_template_create, AUTHED,
     "Save a template (a create body, validated as a create)", "TemplateBody", "Template"},
    {"GET", "/api/templates", api_template_list, AUTHED, "List templates, newest first", NULL,
     NULL},
    {"GET", "/api/templates/{id}", api_template_get, AUTHED, "One template", NULL, "Template"},
    {"PUT", "/api/templates/{id}", api_template_update, AUTHED,
     "Replace a template's name and body", "TemplateBody", "Template"},
    {"DELETE", "/api/templates/{id}", api_template_delete, AUTHED, "Delete a template", NULL, NULL},
    {"POST", "/api/templates/{id}/generate", api_template_generate, AUTHED,
     "Create from a template with overrides (201 as create; 202 as the one-step form with "
     "start: true)",
     "TemplateGenerateBody", "Created"},
};

#define MULTIPART_SLACK (256 * 1024) /* part headers and boundaries */

size_t api_body_limit(const char *method, const char *path, bool *files)
{
    (void)method;
    *files = strcmp(path, "/api/upload") == 0;
    return *files ? MEDIA_MAX_BYTES + MULTIPART_SLACK : (size_t)cfg.max_body;
}

bool api_runs_inline(http_req *r)
{
    if (!str_eq(http_method(r), "POST")) return false;
    const char *path = http_path(r);
    /* A start, or a one-step create, with Prefer: wait reads the record
     * back after a durable write: that waits, on the handler pool. */
    return str_eq(path, "/api/generation/create") ||
           (str_eq(path, "/api/generate") && !http_header(r, "Prefer"));
}

void api_init(store_t *s)
{
    api_store = s;
    atomic_store(&serving, true);
}

/* ---- shared helpers ---- */

void api_field_error(api_call *c, const char *field, const char *message)
{
    json_t *errs = json_pack("[{s:s, s:s}]", "field", field, "message", message);
    http_reply_error(c->req, 400, "VALIDATION_ERROR", message, errs);
}

json_t *api_json_body(api_call *c)
{
    size_t len;
    const char *body = http_body(c->req, &len);
    json_error_t e;
    json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, &e);
    if (!j) {
        char msg[300];
        snprintf(msg, sizeof msg, "body is not valid JSON: %s (line %d, column %d)", e.text, e.line,
                 e.column);
        api_field_error(c, "body", msg);
        return NULL;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        api_field_error(c, "body", "body must be a JSON object");
        return NULL;
    }
    return j;
}

void api_store_error(api_call *c, int rc, const char *what)
{
    if (rc == STORE_ENOTFOUND) {
        char *m = xasprintf("%s not found", what);
        bool gen = str_has_prefix(what, "generation");
        http_reply_error(c->req, 404, gen ? "GENERATION_NOT_FOUND" : "NOT_FOUND", m, NULL);
        free(m);
    } else if (rc == STORE_EUNAVAILABLE) {
        http_add_header(c->req, "Retry-After", "2");
        http_reply_error(c->req, 503, "SERVICE_UNAVAILABLE",
                         "the database cannot be reached right now; nothing was changed", NULL);
    } else {
        http_reply_error(c->req, 500, "INTERNAL_SERVER_ERROR",
                         "the store failed; nothing was changed", NULL);
    }
}

static bool all_digits(const char *s)
{
    for (; *s; s++)
        if (*s < '0' || *s > '9') return false;
    return true;
}

bool api_page_args(api_call *c, const char *id_prefix, int *limit, const char **cursor)
{
    const char *l = http_query(c->req, "limit");
    *limit = 20;
    if (l) {
        char *end;
        long v = strtol(l, &end, 10);
        if (!*l || *end || v < 1 || v > 100) {
            api_field_error(c, "limit", "limit must be an integer from 1 to 100");
            return false;
        }
        *limit = (int)v;
    }
    *cursor = http_query(c->req, "cursor");
    bool valid = !*cursor || (id_prefix ? ids_valid(*cursor, id_prefix)
                                        : **cursor && strlen(*cursor) < 20 && all_digits(*cursor));
    if (!valid) {
        api_field_error(c, "cursor", "cursor is not one this server handed out");
        return false;
    }
    return true;
}

json_t *api_list(json_t *items, const char *next_cursor)
{
    return json_pack("{s:o, s:o}", "items", items, "nextCursor",
                     next_cursor ? json_string(next_cursor) : json_null());
}

json_t *api_user_json(const user_record *u)
{
    return json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:s, s:s, s:I}", "_id", u->id, "email",
                     u->email, "name", u->name, "tokenBalance", (json_int_t)u->token_balance,
                     "totalTokensPurchased", (json_int_t)u->total_tokens_purchased,
                     "totalTokensUsed", (json_int_t)u->total_tokens_used, "freeTokensGranted",
                     (json_int_t)u->free_tokens_granted, "plan", u->plan, "role", u->role,
                     "createdAt", (json_int_t)u->created_at);
}

/* ---- operational routes ---- */

static void health(api_call *c)
{
    http_reply_json(c->req, 200, json_pack("{s:s}", "status", "ok"));
}

static void ready(api_call *c)
{
    if (store_ping(api_store) == STORE_OK)
        http_reply_json(c->req, 200, json_pack("{s:s}", "status", "ready"));
    else
        api_store_error(c, STORE_EUNAVAILABLE, "store");
}

static void metrics(api_call *c)
{
    buf out = {0};
    metrics_render_requests(&out);
    int64_t by_status[GEN_STATUS_COUNT] = {0}, queued = 0;
    if (store_gen_counts(api_store, by_status, &queued) == STORE_OK) {
        for (int i = 0; i < GEN_STATUS_COUNT; i++) {
            char labels[64];
            snprintf(labels, sizeof labels, "status=\"%s\"", gen_status_name((gen_status)i));
            metrics_sample(&out, "stylestudio_generations", "gauge",
                           i == 0 ? "Generations by status." : NULL, labels, (double)by_status[i]);
        }
        metrics_sample(&out, "stylestudio_queue_depth", "gauge",
                       "Generations waiting in the queue.", NULL, (double)queued);
    }
    int64_t charged = 0, refunded = 0;
    if (store_ledger_totals(api_store, &charged, &refunded) == STORE_OK) {
        metrics_sample(&out, "stylestudio_tokens_charged_total", "counter",
                       "Tokens charged for generations.", NULL, (double)charged);
        metrics_sample(&out, "stylestudio_tokens_refunded_total", "counter",
                       "Tokens refunded for failed, cancelled or expired generations.", NULL,
                       (double)refunded);
    }
    metrics_sample(&out, "stylestudio_generations_running", "gauge",
                   "Generations running in this process.", NULL, (double)queue_running());
    metrics_sample(&out, "stylestudio_sse_clients", "gauge", "Open event streams.", NULL,
                   (double)http_sse_clients());
    metrics_sample(&out, "stylestudio_connections_open", "gauge",
                   "Open HTTP connections, event streams and those not yet read included.", NULL,
                   (double)http_connections());
    long long hashes;
    int hrun, hwait, hpeak;
    auth_hash_stats(&hashes, &hrun, &hwait, &hpeak);
    metrics_sample(&out, "stylestudio_password_checks_total", "counter",
                   "Sign-in password verifications (an unknown email included, on a dummy hash).",
                   NULL, (double)hashes);
    metrics_sample(&out, "stylestudio_password_hashes_running", "gauge",
                   "Password hashes computing now (at most --hash-concurrency).", NULL,
                   (double)hrun);
    metrics_sample(&out, "stylestudio_password_hashes_waiting", "gauge",
                   "Sign-ins and sign-ups parked for a hash slot.", NULL, (double)hwait);
    metrics_sample(&out, "stylestudio_password_hashes_peak", "gauge",
                   "Most password hashes ever computing at once.", NULL, (double)hpeak);
    metrics_sample(&out, "stylestudio_outbound_requests", "gauge",
                   "Outbound HTTP requests in flight (providers, downloads, webhooks).", NULL,
                   (double)net_in_flight());
    http_reply_bytes(c->req, 200, "text/plain; version=0.0.4; charset=utf-8", out.data, out.len);
    buf_free(&out);
}

/* JSON Schemas of the main bodies, referenced from the route table. */
static const char openapi_schemas[] =
    "{\"CreateBody\": {\"type\": \"object\", "
    "\"required\": [\"productImages\", \"model\", \"style\", \"quality\", \"aspectRatio\"], "
    "\"properties\": {"
    "\"productImages\": {\"type\": \"array\", \"minItems\": 1, \"maxItems\": 5, "
    "\"items\": {\"type\": \"string\", \"format\": \"uri\", \"maxLength\": 2048}}, "
    "\"modelImages\": {\"type\": \"array\", \"maxItems\": 3, "
    "\"items\": {\"type\": \"string\", \"format\": \"uri\", \"maxLength\": 2048}}, "
    "\"model\": {\"type\": \"string\", \"description\": \"an id from GET /api/models\"}, "
    "\"style\": {\"enum\": [\"realistic\", \"artistic\", \"minimal\"]}, "
    "\"quality\": {\"enum\": [\"auto\", \"high\", \"medium\", \"low\"]}, "
    "\"aspectRatio\": {\"enum\": [\"1:1\", \"16:9\", \"9:16\", \"3:2\", \"2:3\", \"4:3\", "
    "\"3:4\", \"4:5\"]}, "
    "\"customPrompt\": {\"type\": \"string\", \"maxLength\": 500}, "
    "\"priority\": {\"enum\": [\"normal\", \"high\"]}, "
    "\"parameters\": {\"type\": \"object\", \"properties\": {"
    "\"guidance_scale\": {\"type\": \"number\", \"minimum\": 1, \"maximum\": 20, \"default\": "
    "7.5}, "
    "\"num_inference_steps\": {\"type\": \"integer\", \"minimum\": 20, \"maximum\": 100, "
    "\"default\": 50}, "
    "\"strength\": {\"type\": \"number\", \"minimum\": 0.1, \"maximum\": 1, \"default\": 0.8}, "
    "\"seed\": {\"type\": \"integer\", \"minimum\": 0, \"maximum\": 2147483647}, "
    "\"background\": {\"enum\": [\"auto\", \"transparent\", \"opaque\"], \"default\": \"auto\"}, "
    "\"output_format\": {\"enum\": [\"jpeg\", \"png\", \"webp\"], \"description\": \"jpeg; "
    "png or webp when background is transparent\"}}}}}, "
    "\"GenerateBody\": {\"oneOf\": [{\"type\": \"object\", \"required\": [\"generationId\"], "
    "\"properties\": {\"generationId\": {\"type\": \"string\"}}}, "
    "{\"$ref\": \"#/components/schemas/CreateBody\"}]}, "
    "\"Created\": {\"type\": \"object\", \"properties\": {\"generationId\": {\"type\": "
    "\"string\"}, "
    "\"estimatedCost\": {\"type\": \"integer\"}, \"prompt\": {\"type\": \"string\"}, "
    "\"status\": {\"const\": \"pending\"}, \"message\": {\"type\": \"string\"}}}, "
    "\"Started\": {\"type\": \"object\", \"properties\": {\"generationId\": {\"type\": "
    "\"string\"}, "
    "\"status\": {\"const\": \"processing\"}, \"resultImages\": {\"type\": \"array\"}, "
    "\"estimatedCost\": {\"type\": \"integer\"}, \"prompt\": {\"type\": \"string\"}}}, "
    "\"Generation\": {\"type\": \"object\", \"required\": [\"_id\", \"userId\", \"status\", "
    "\"productImages\", \"modelImages\", \"resultImages\", \"prompt\", \"parameters\", "
    "\"tokensUsed\", \"retryCount\", \"createdAt\", \"progress\", \"stage\", \"priority\"], "
    "\"properties\": {\"status\": {\"enum\": [\"pending\", \"processing\", \"completed\", "
    "\"failed\", \"cancelled\"]}, \"stage\": {\"type\": \"string\"}, "
    "\"progress\": {\"type\": \"integer\", \"minimum\": 0, \"maximum\": 100}}}, "
    "\"WebhookBody\": {\"type\": \"object\", \"required\": [\"url\", \"events\"], "
    "\"properties\": {\"url\": {\"type\": \"string\", \"format\": \"uri\", \"maxLength\": 2048}, "
    "\"events\": {\"type\": \"array\", \"minItems\": 1, \"uniqueItems\": true, "
    "\"items\": {\"enum\": [\"generation.processing\", \"generation.completed\", "
    "\"generation.failed\", \"generation.cancelled\", \"balance.changed\"]}}, "
    "\"description\": {\"type\": \"string\", \"maxLength\": 500}}}, "
    "\"WebhookCreated\": {\"type\": \"object\", \"properties\": {\"id\": {\"type\": \"string\"}, "
    "\"url\": {\"type\": \"string\"}, \"events\": {\"type\": \"array\"}, "
    "\"description\": {\"type\": \"string\"}, \"createdAt\": {\"type\": \"integer\"}, "
    "\"secret\": {\"type\": \"string\", \"description\": \"whsec_ + base64 of 24 bytes; shown "
    "once\"}}}, "
    "\"Delivery\": {\"type\": \"object\", \"properties\": {\"id\": {\"type\": \"string\", "
    "\"description\": \"msg_..., the webhook-id header\"}, \"type\": {\"type\": \"string\"}, "
    "\"status\": {\"enum\": [\"pending\", \"succeeded\", \"failed\"]}, "
    "\"attempts\": {\"type\": \"integer\"}, \"lastStatusCode\": {\"type\": [\"integer\", "
    "\"null\"]}, \"nextAttemptAt\": {\"type\": [\"integer\", \"null\"]}, "
    "\"createdAt\": {\"type\": \"integer\"}}}, "
    "\"PlanBody\": {\"type\": \"object\", \"required\": [\"plan\"], "
    "\"properties\": {\"plan\": {\"enum\": [\"free\", \"pro\"]}}}, "
    "\"TemplateBody\": {\"type\": \"object\", \"required\": [\"name\", \"body\"], "
    "\"properties\": {\"name\": {\"type\": \"string\", \"minLength\": 1, \"maxLength\": 100}, "
    "\"body\": {\"$ref\": \"#/components/schemas/CreateBody\"}}}, "
    "\"Template\": {\"type\": \"object\", \"properties\": {\"_id\": {\"type\": \"string\"}, "
    "\"name\": {\"type\": \"string\"}, \"body\": {\"type\": \"object\"}, "
    "\"createdAt\": {\"type\": \"integer\"}, \"updatedAt\": {\"type\": \"integer\"}}}, "
    "\"BatchBody\": {\"type\": \"object\", \"required\": [\"items\"], "
    "\"properties\": {\"items\": {\"type\": \"array\", \"minItems\": 1, \"maxItems\": 20, "
    "\"items\": {\"$ref\": \"#/components/schemas/CreateBody\"}}, "
    "\"start\": {\"type\": \"boolean\", \"default\": false}}}, "
    "\"BatchCreated\": {\"type\": \"object\", \"properties\": {\"batchId\": {\"type\": "
    "\"string\"}, \"generationIds\": {\"type\": \"array\", \"items\": {\"type\": "
    "\"string\"}}, \"estimatedCost\": {\"type\": \"integer\"}, "
    "\"status\": {\"enum\": [\"pending\", \"processing\"]}}}, "
    "\"Batch\": {\"type\": \"object\", \"properties\": {\"_id\": {\"type\": \"string\"}, "
    "\"userId\": {\"type\": \"string\"}, \"createdAt\": {\"type\": \"integer\"}, "
    "\"total\": {\"type\": \"integer\"}, \"tokensUsed\": {\"type\": \"integer\"}, "
    "\"counts\": {\"type\": \"object\"}, \"generationIds\": {\"type\": \"array\"}}}, "
    "\"TemplateGenerateBody\": {\"type\": \"object\", \"properties\": {"
    "\"overrides\": {\"type\": \"object\", \"description\": \"create fields; parameters "
    "merged key by key; null removes a field\"}, \"start\": {\"type\": \"boolean\", "
    "\"default\": false}}}}";

static json_t *schema_ref(const char *name)
{
    char *ref = xasprintf("#/components/schemas/%s", name);
    json_t *j = json_pack("{s:s}", "$ref", ref);
    free(ref);
    return j;
}

/* The OpenAPI 3.1 document, derived from the route table so no route can
 * be missing from it. */
static void openapi(api_call *c)
{
    json_t *paths = json_object();
    for (size_t i = 0; i < ARRAY_LEN(routes); i++) {
        const route *rt = &routes[i];
        json_t *item = json_object_get(paths, rt->pattern);
        if (!item) {
            item = json_object();
            json_object_set_new(paths, rt->pattern, item);
        }
        char method[8];
        size_t n = strlen(rt->method);
        for (size_t k = 0; k <= n; k++)
            method[k] = (char)(rt->method[k] >= 'A' && rt->method[k] <= 'Z' ? rt->method[k] + 32
                                                                            : rt->method[k]);
        json_t *op =
            json_pack("{s:s, s:{s:{s:s}, s:{s:s}}}", "summary", rt->summary, "responses", "200",
                      "description", "success envelope {success, data}", "default", "description",
                      "error envelope {success:false, code, error, validationErrors, requestId}");
        json_t *params = json_array();
        for (const char *p = strchr(rt->pattern, '{'); p; p = strchr(p + 1, '{')) {
            char name[32];
            size_t n = strcspn(p + 1, "}");
            snprintf(name, sizeof name, "%.*s", (int)n, p + 1);
            json_array_append_new(params,
                                  json_pack("{s:s, s:s, s:b, s:{s:s}}", "name", name, "in", "path",
                                            "required", 1, "schema", "type", "string"));
        }
        if (json_array_size(params))
            json_object_set_new(op, "parameters", params);
        else
            json_decref(params);
        if (rt->body)
            json_object_set_new(op, "requestBody",
                                json_pack("{s:b, s:{s:{s:o}}}", "required", 1, "content",
                                          "application/json", "schema", schema_ref(rt->body)));
        if (rt->reply)
            json_object_set_new(json_object_get(json_object_get(op, "responses"), "200"), "content",
                                json_pack("{s:{s:{s:s, s:{s:{s:b}, s:o}}}}", "application/json",
                                          "schema", "type", "object", "properties", "success",
                                          "const", 1, "data", schema_ref(rt->reply)));
        if (rt->access != PUBLIC)
            json_object_set_new(op, "security",
                                json_pack("[{s:[]}, {s:[]}]", "bearerKey", "sessionCookie"));
        json_object_set_new(item, method, op);
    }
    json_t *schemas = json_loads(openapi_schemas, 0, NULL);
    json_t *doc = json_pack(
        "{s:s, s:{s:s, s:s, s:s}, s:o, s:{s:o, s:{s:{s:s, s:s}, s:{s:s, s:s, s:s}}}}", "openapi",
        "3.1.0", "info", "title", "Style Studio API", "version", STYLESTUDIO_VERSION, "description",
        "Two-step fashion image generation. See SPEC.md for the contract.", "paths", paths,
        "components", "schemas", schemas ? schemas : json_object(), "securitySchemes", "bearerKey",
        "type", "http", "scheme", "bearer", "sessionCookie", "type", "apiKey", "in", "cookie",
        "name", AUTH_COOKIE);
    char *text = json_dumps(doc, JSON_INDENT(2));
    json_decref(doc);
    http_reply_bytes(c->req, 200, "application/json", text, strlen(text));
    free(text);
}

/* ---- static files and media ---- */

static const char *static_type(const char *path)
{
    static const struct {
        const char *ext, *type;
    } types[] = {
        {".html", "text/html; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},
        {".svg", "image/svg+xml"},
        {".png", "image/png"},
        {".jpg", "image/jpeg"},
        {".webp", "image/webp"},
        {".json", "application/json"},
        {".ico", "image/x-icon"},
        {".txt", "text/plain; charset=utf-8"},
    };
    const char *dot = strrchr(path, '.');
    for (size_t i = 0; dot && i < ARRAY_LEN(types); i++)
        if (strcmp(dot, types[i].ext) == 0) return types[i].type;
    return "application/octet-stream";
}

static void serve_media(http_req *r)
{
    const char *ctype;
    char *path = media_path_for_request(http_path(r), &ctype);
    if (path) {
        const char *name = strrchr(path, '/') + 1;
        char *etag = xasprintf("\"%s\"", name);
        int rc = http_reply_file(r, path, ctype, "public, max-age=31536000, immutable", etag);
        free(etag);
        free(path);
        if (rc == 0) return;
    }
    http_reply_error(r, 404, "NOT_FOUND", "no such media file", NULL);
}

/* Files under the web root; paths without an extension get index.html so
 * the studio's client-side routes survive a reload. */
static void serve_static(http_req *r)
{
    const char *p = http_path(r);
    if (strstr(p, "..") || strchr(p, '\\')) {
        http_reply_error(r, 404, "NOT_FOUND", "no such page", NULL);
        return;
    }
    const char *last = strrchr(p, '/');
    bool page = !strchr(last ? last : p, '.');
    char *file =
        page ? xasprintf("%s/index.html", cfg.web_root) : xasprintf("%s%s", cfg.web_root, p);
    if (http_reply_file(r, file, static_type(file), "no-cache", NULL) != 0)
        http_reply_error(r, 404, "NOT_FOUND", "no such page", NULL);
    free(file);
}

/* ---- dispatch ---- */

/* Matches path against pattern; each "{name}" takes one segment: the
 * first into param, a second into param2 (both param_len long). */
static bool match(const char *pattern, const char *path, char *param, char *param2,
                  size_t param_len)
{
    int nparam = 0;
    while (*pattern && *path) {
        if (*pattern == '{') {
            size_t n = strcspn(path, "/");
            char *dst = nparam++ == 0 ? param : param2;
            if (n == 0 || n >= param_len || nparam > 2) return false;
            memcpy(dst, path, n);
            dst[n] = '\0';
            pattern += strcspn(pattern, "}") + 1;
            path += n;
            continue;
        }
        if (*pattern++ != *path++) return false;
    }
    return *pattern == '\0' && *path == '\0';
}

static void run_route(const route *rt, api_call *c)
{
    http_req *r = c->req;
    if (rt->access != PUBLIC || str_has_prefix(rt->pattern, "/api/auth/")) {
        int rc = auth_request(api_store, r, &c->user);
        if (rc == 0) {
            c->authed = true;
        } else if (rc == AUTH_ECSRF) {
            http_reply_error(r, 403, "UNAUTHORIZED",
                             "cross-site request refused: Origin does not match this site", NULL);
            return;
        } else if (rc == AUTH_EUNAVAILABLE) {
            api_store_error(c, STORE_EUNAVAILABLE, "credentials");
            return;
        } else if (rc == AUTH_EINTERNAL) {
            http_reply_error(r, 500, "INTERNAL_SERVER_ERROR", "could not check credentials", NULL);
            return;
        } else if (rt->access != PUBLIC) {
            http_reply_error(r, 401, "AUTHENTICATION_REQUIRED",
                             "sign in, or send an API key as 'Authorization: Bearer sk_...'", NULL);
            return;
        }
    }
    if (rt->access == ADMIN && strcmp(c->user.role, "admin") != 0) {
        http_reply_error(r, 403, "UNAUTHORIZED", "this route is for administrators", NULL);
        return;
    }
    rt->fn(c);
}

void api_dispatch(http_req *r)
{
    const char *path = http_path(r), *method = http_method(r);
    api_call c = {.req = r};
    if (!atomic_load(&serving)) {
        http_add_header(r, "Retry-After", "1");
        http_reply_error(r, 503, "SERVICE_UNAVAILABLE", "the server is starting; try again shortly",
                         NULL);
        return;
    }
    char allow[64] = "";
    for (size_t i = 0; i < ARRAY_LEN(routes); i++) {
        char param[128] = "", param2[128] = "";
        if (!match(routes[i].pattern, path, param, param2, sizeof param)) continue;
        bool head_as_get = strcmp(method, "HEAD") == 0 && strcmp(routes[i].method, "GET") == 0;
        if (strcmp(routes[i].method, method) != 0 && !head_as_get) {
            if (*allow) strcat(allow, ", ");
            strncat(allow, routes[i].method, sizeof allow - strlen(allow) - 1);
            continue;
        }
        http_set_route(r, routes[i].pattern);
        snprintf(c.param, sizeof c.param, "%s", param);
        snprintf(c.param2, sizeof c.param2, "%s", param2);
        run_route(&routes[i], &c);
        return;
    }
    if (*allow) {
        http_set_route(r, "method_not_allowed");
        http_add_header(r, "Allow", allow);
        http_reply_error(r, 405, "METHOD_NOT_ALLOWED", "this method is not allowed here", NULL);
        return;
    }
    bool get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
    if (get && str_has_prefix(path, "/media/")) {
        http_set_route(r, "/media");
        serve_media(r);
    } else if (get && !str_has_prefix(path, "/api/")) {
        http_set_route(r, "static");
        serve_static(r);
    } else {
        http_set_route(r, "not_found");
        http_reply_error(r, 404, "NOT_FOUND", "no such route", NULL);
    }
}
