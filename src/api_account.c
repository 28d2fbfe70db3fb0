/*
 * api_account — sign-up, sign-in, the caller's profile and stats, API keys,
 * admin grants and the token ledger.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "api.h"
#include "auth.h"
#include "config.h"
#include "log.h"
#include "util.h"

/* A new array of one {field, message}, appended to *errs. */
static void add_error(json_t **errs, const char *field, const char *message)
{
    if (!*errs) *errs = json_array();
    json_array_append_new(*errs, json_pack("{s:s, s:s}", "field", field, "message", message));
}

/* The string at key, or NULL with an error added when it is missing or
 * not a string. */
static const char *string_field(json_t *body, const char *key, json_t **errs)
{
    json_t *v = json_object_get(body, key);
    if (!json_is_string(v)) {
        char *m = xasprintf("%s is required and must be a string", key);
        add_error(errs, key, m);
        free(m);
        return NULL;
    }
    return json_string_value(v);
}

static bool email_ok(const char *e)
{
    const char *at = strchr(e, '@');
    size_t n = strlen(e);
    return n >= 3 && n <= 254 && at && at != e && strchr(at + 1, '.') && !strchr(at + 1, '@') &&
           !strpbrk(e, " \t\r\n<>\"") && e[n - 1] != '.';
}

static void reply_signed_in(api_call *c, int status, const char *user_id)
{
    user_record u;
    if (store_user_get(api_store, user_id, &u) != STORE_OK ||
        auth_session_start(api_store, c->req, user_id) != 0) {
        http_reply_error(c->req, 500, "INTERNAL_SERVER_ERROR", "could not start a session", NULL);
        return;
    }
    http_reply_json(c->req, status,
                    json_pack("{s:o, s:I}", "user", api_user_json(&u), "tokenBalance",
                              (json_int_t)u.token_balance));
}

/* Signup and login are cookie-setting writes: refuse a foreign Origin. */
static bool origin_allowed(api_call *c)
{
    if (!http_header(c->req, "Origin") && !http_header(c->req, "Referer")) return true;
    if (auth_same_origin(c->req)) return true;
    http_reply_error(c->req, 403, "UNAUTHORIZED",
                     "cross-site request refused: Origin does not match this site", NULL);
    return false;
}

/* What a sign-in or sign-up keeps while it waits for the hash gate. */
typedef struct pw_job {
    char email[256];
    char name[128];
    char ip[64];
    char *password;
} pw_job;

static void pw_job_free(void *p)
{
    pw_job *j = p;
    if (j->password) {
        sodium_memzero(j->password, strlen(j->password));
        free(j->password);
    }
    free(j);
}

/* Takes a slot of the hash gate for j, then runs fn (now or once parked);
 * a full queue answers 503 at once. */
static void through_gate(api_call *c, pw_job *j, http_handler_fn fn)
{
    http_set_state(c->req, j, pw_job_free);
    int rc = auth_hash_gate_enter(c->req, fn);
    if (rc == 0) {
        fn(c->req);
    } else if (rc < 0) {
        http_add_header(c->req, "Retry-After", "1");
        http_reply_error(c->req, 503, "SERVICE_UNAVAILABLE",
                         "too many sign-ins at once; try again shortly", NULL);
    }
}

/* Holding a gate slot: hash, create the account, sign in. */
static void signup_hashed(http_req *r)
{
    pw_job *j = http_state(r);
    api_call c = {.req = r};
    char hash[128];
    int hrc = auth_hash_password(j->password, hash);
    auth_hash_gate_leave();
    if (hrc != 0) {
        http_reply_error(r, 500, "INTERNAL_SERVER_ERROR", "could not hash the password", NULL);
        return;
    }
    user_record u;
    int rc = auth_user_create(api_store, j->email, j->name, "user", hash, cfg.signup_tokens, &u);
    if (rc == STORE_EDUPLICATE) {
        api_field_error(&c, "email", "an account with this email already exists");
    } else if (rc != STORE_OK) {
        api_store_error(&c, rc, "user");
    } else {
        rlog_info(http_request_id(r), "signed up %s", u.id);
        reply_signed_in(&c, 201, u.id);
    }
}

void api_signup(api_call *c)
{
    if (!origin_allowed(c)) return;
    json_t *body = api_json_body(c);
    if (!body) return;
    json_t *errs = NULL;
    const char *name = string_field(body, "name", &errs);
    const char *email = string_field(body, "email", &errs);
    const char *password = string_field(body, "password", &errs);
    if (name && (strlen(name) < 1 || strlen(name) > 100))
        add_error(&errs, "name", "name must be 1 to 100 characters");
    if (email && !email_ok(email)) add_error(&errs, "email", "email must be a valid email address");
    const char *weak = password ? auth_password_problem(password) : NULL;
    if (weak) add_error(&errs, "password", weak);
    if (errs) {
        http_reply_error(c->req, 400, "VALIDATION_ERROR", "some fields are invalid", errs);
        goto cleanup;
    }
    pw_job *j = xcalloc(1, sizeof *j);
    snprintf(j->email, sizeof j->email, "%s", email);
    snprintf(j->name, sizeof j->name, "%s", name);
    j->password = xstrdup(password);
    through_gate(c, j, signup_hashed);
cleanup:
    json_decref(body);
}

/* Holding a gate slot: verify (an unknown email against a dummy hash, at
 * the same cost), count the outcome, answer. */
static void login_hashed(http_req *r)
{
    pw_job *j = http_state(r);
    api_call c = {.req = r};
    user_record u;
    char *hash = NULL;
    int rc = store_user_by_email(api_store, j->email, &u, &hash);
    bool ok = (rc == STORE_OK || rc == STORE_ENOTFOUND) &&
              auth_check_password(rc == STORE_OK ? hash : NULL, j->password) && rc == STORE_OK;
    auth_hash_gate_leave();
    free(hash);
    if (rc != STORE_OK && rc != STORE_ENOTFOUND) {
        api_store_error(&c, rc, "user");
        return;
    }
    rc = auth_login_result(api_store, j->email, j->ip, ok);
    if (rc != STORE_OK && !ok) { /* an uncounted failure would be a free guess */
        api_store_error(&c, rc, "sign-in");
        return;
    }
    if (rc != STORE_OK) log_warn("could not clear the sign-in failures of a signed-in user");
    if (ok)
        reply_signed_in(&c, 200, u.id);
    else
        http_reply_error(r, 401, "AUTHENTICATION_REQUIRED", "invalid email or password", NULL);
}

void api_login(api_call *c)
{
    if (!origin_allowed(c)) return;
    json_t *body = api_json_body(c);
    if (!body) return;
    json_t *errs = NULL;
    const char *email = string_field(body, "email", &errs);
    const char *password = string_field(body, "password", &errs);
    if (errs) {
        http_reply_error(c->req, 400, "VALIDATION_ERROR", "email and password are required", errs);
        json_decref(body);
        return;
    }
    pw_job *j = xcalloc(1, sizeof *j);
    snprintf(j->email, sizeof j->email, "%s", email);
    auth_email_fold(j->email);
    http_client_ip(c->req, j->ip, sizeof j->ip);
    j->password = xstrdup(password);
    json_decref(body);
    int wait = 0;
    int rc = auth_login_throttled(api_store, j->email, j->ip, &wait);
    if (rc != STORE_OK) {
        api_store_error(c, rc, "sign-in");
        pw_job_free(j);
        return;
    }
    if (wait > 0) {
        char secs[16];
        snprintf(secs, sizeof secs, "%d", wait);
        http_add_header(c->req, "Retry-After", secs);
        http_reply_error(c->req, 429, "RATE_LIMIT_EXCEEDED",
                         "too many failed sign-ins; try again later", NULL);
        pw_job_free(j);
        return;
    }
    through_gate(c, j, login_hashed);
}

void api_logout(api_call *c)
{
    if (!origin_allowed(c)) return;
    auth_session_end(api_store, c->req);
    http_reply_json(c->req, 200, json_pack("{s:b}", "signedOut", 1));
}

static int64_t month_start_ms(void)
{
    time_t now = (time_t)(now_ms() / 1000);
    struct tm tm;
    gmtime_r(&now, &tm);
    tm.tm_mday = 1;
    tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
    return (int64_t)timegm(&tm) * 1000;
}

void api_me(api_call *c)
{
    user_stats st;
    /* The caller's record as stored now: the credential cache may be up to
     * a second behind a change made by another process (a CLI grant or
     * plan). When the plan or role it holds is behind, it is dropped, so
     * the next request is held to what this answer shows. */
    user_record cached = c->user;
    int rc = store_user_get(api_store, c->user.id, &c->user);
    if (rc == STORE_OK &&
        (!str_eq(cached.plan, c->user.plan) || !str_eq(cached.role, c->user.role)))
        auth_forget(c->user.id);
    if (rc == STORE_OK) rc = store_user_stats(api_store, c->user.id, month_start_ms(), &st);
    if (rc != STORE_OK) {
        api_store_error(c, rc, "user");
        return;
    }
    json_t *stats =
        json_pack("{s:I, s:I, s:I, s:I, s:f}", "totalGenerations", (json_int_t)st.total_generations,
                  "thisMonth", (json_int_t)st.this_month, "completed", (json_int_t)st.completed,
                  "failed", (json_int_t)st.failed, "successRate", st.success_rate);
    http_reply_json(c->req, 200,
                    json_pack("{s:o, s:I, s:o}", "user", api_user_json(&c->user), "tokenBalance",
                              (json_int_t)c->user.token_balance, "stats", stats));
}

/* {id, name, hint, createdAt, lastUsedAt|null} */
static json_t *key_json(const store_key_row *k)
{
    return json_pack("{s:s, s:s, s:s, s:I, s:o}", "id", k->id, "name", k->name, "hint", k->hint,
                     "createdAt", (json_int_t)k->created_at, "lastUsedAt",
                     k->last_used_at ? json_integer(k->last_used_at) : json_null());
}

/* {id, kind, amount, balanceAfter, generationId|null, reason|null, createdAt} */
static json_t *ledger_json(const store_ledger_row *r)
{
    return json_pack(
        "{s:I, s:s, s:I, s:I, s:o, s:o, s:I}", "id", (json_int_t)r->id, "kind", r->kind, "amount",
        (json_int_t)r->amount, "balanceAfter", (json_int_t)r->balance_after, "generationId",
        r->generation_id[0] ? json_string(r->generation_id) : json_null(), "reason",
        r->reason ? json_string(r->reason) : json_null(), "createdAt", (json_int_t)r->created_at);
}

void api_keys_create(api_call *c)
{
    json_t *body = api_json_body(c);
    if (!body) return;
    json_t *jn = json_object_get(body, "name");
    const char *name = json_is_string(jn) ? json_string_value(jn) : NULL;
    if (jn && !name) {
        api_field_error(c, "name", "name must be a string");
    } else if (name && strlen(name) > 100) {
        api_field_error(c, "name", "name must be at most 100 characters");
    } else {
        char key_id[ID_LEN], *key = NULL;
        int rc =
            auth_key_create(api_store, c->user.id, name && *name ? name : "API key", key_id, &key);
        store_key_row *rows = NULL;
        size_t n = 0;
        if (rc == STORE_OK) rc = store_key_list(api_store, c->user.id, &rows, &n);
        if (rc != STORE_OK) {
            api_store_error(c, rc, "key");
        } else {
            json_t *out = NULL;
            for (size_t i = 0; i < n && !out; i++)
                if (str_eq(rows[i].id, key_id)) out = key_json(&rows[i]);
            if (!out) out = json_object();
            json_object_set_new(out, "key", json_string(key));
            http_reply_json(c->req, 201, out);
        }
        free(rows);
        free(key);
    }
    json_decref(body);
}

void api_keys_list(api_call *c)
{
    store_key_row *rows = NULL;
    size_t n = 0;
    int rc = store_key_list(api_store, c->user.id, &rows, &n);
    if (rc != STORE_OK) {
        api_store_error(c, rc, "key");
        return;
    }
    json_t *items = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(items, key_json(&rows[i]));
    free(rows);
    http_reply_json(c->req, 200, api_list(items, NULL));
}

void api_keys_delete(api_call *c)
{
    int rc = store_key_delete(api_store, c->user.id, c->param, now_ms());
    auth_forget(c->user.id); /* the credential cache drops the user's keys */
    if (rc != STORE_OK)
        api_store_error(c, rc, "API key");
    else
        http_reply_json(c->req, 200, json_pack("{s:s, s:b}", "id", c->param, "revoked", 1));
}

void api_admin_tokens(api_call *c)
{
    json_t *body = api_json_body(c);
    if (!body) return;
    json_t *ja = json_object_get(body, "amount"), *jr = json_object_get(body, "reason");
    json_t *errs = NULL;
    if (!json_is_integer(ja) || json_integer_value(ja) == 0 ||
        llabs(json_integer_value(ja)) > 1000000000)
        add_error(&errs, "amount", "amount must be a non-zero integer (at most 1e9 either way)");
    if (jr && !json_is_string(jr)) add_error(&errs, "reason", "reason must be a string");
    if (errs) {
        http_reply_error(c->req, 400, "VALIDATION_ERROR", "some fields are invalid", errs);
        json_decref(body);
        return;
    }
    int64_t amount = json_integer_value(ja), balance = 0;
    const char *reason = jr ? json_string_value(jr) : "admin grant";
    int rc = store_user_credit(api_store, c->param, amount, amount > 0 ? "grant" : "adjustment",
                               reason, &balance);
    auth_forget(c->param);
    if (rc == STORE_EINSUFFICIENT)
        http_reply_error(c->req, 400, "INSUFFICIENT_TOKENS",
                         "the adjustment would make the balance negative", NULL);
    else if (rc != STORE_OK)
        api_store_error(c, rc, "user");
    else
        http_reply_json(
            c->req, 200,
            json_pack("{s:s, s:I}", "userId", c->param, "tokenBalance", (json_int_t)balance));
    json_decref(body);
}

/* POST /api/admin/users/{id}/plan {plan}: the user as /api/me shows it. */
void api_admin_plan(api_call *c)
{
    json_t *body = api_json_body(c);
    if (!body) return;
    const char *plan = json_string_value(json_object_get(body, "plan"));
    user_record u;
    if (!plan || (!str_eq(plan, "free") && !str_eq(plan, "pro"))) {
        api_field_error(c, "plan", "plan must be \"free\" or \"pro\"");
        json_decref(body);
        return;
    }
    int rc = store_user_set_plan(api_store, c->param, plan, &u);
    auth_forget(c->param); /* the credential cache holds the plan */
    if (rc != STORE_OK)
        api_store_error(c, rc, "user");
    else
        http_reply_json(c->req, 200, api_user_json(&u));
    json_decref(body);
}

void api_transactions(api_call *c)
{
    int limit;
    const char *cursor;
    if (!api_page_args(c, NULL, &limit, &cursor)) return;
    store_ledger_row *rows = NULL;
    size_t n = 0;
    char *next = NULL;
    int rc = store_ledger_list(api_store, c->user.id, cursor, limit, &rows, &n, &next);
    if (rc != STORE_OK) {
        api_store_error(c, rc, "ledger page");
        return;
    }
    json_t *items = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(items, ledger_json(&rows[i]));
    store_ledger_rows_free(rows, n);
    http_reply_json(c->req, 200, api_list(items, next));
    free(next);
}
