/*
 * Unit tests: gen_service — the generation use cases without HTTP, against
 * a real SQLite store and media folder in a temp dir (no workers running,
 * so queue wake-ups are no-ops). Covers create (charge, insufficient
 * tokens charging nothing, validation, model and image errors), the
 * Idempotency-Key (replay returns the first answer, another body is
 * IDEMPOTENCY_KEY_REUSED, a bad key), start, the legacy create-and-start,
 * cancel (refunded once), retry, delete and ownership; and, in the same
 * setting, auth_user_create, the account creation sign-up and the CLI share.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "gen_service.h"
#include "ids.h"
#include "log.h"
#include "media.h"
#include "net.h"
#include "store.h"
#include "util.h"

#define PUBLIC_URL "http://127.0.0.1:9"
#define SCOPE "/api/generation/create"

static char tmpdir[128];
static store_t *S;
static user_record alice, bob;
static char *product_url;

static const char *fixtures_dir(void)
{
    const char *d = getenv("SS_FIXTURES");
    return d && *d ? d : "tests/fixtures";
}

static char *upload_fixture(const char *name)
{
    char *path = xasprintf("%s/%s", fixtures_dir(), name);
    buf b = {0};
    cr_assert_eq(util_read_file(path, MEDIA_MAX_BYTES, &b), 0, "cannot read %s", path);
    provider_image info = {0};
    char *url = NULL, *err = NULL;
    cr_assert_eq(media_save_upload(b.data, b.len, &info, &url, &err), 0, "upload: %s",
                 err ? err : "?");
    buf_free(&b);
    free(path);
    return url;
}

static void setup(void)
{
    cr_assert_eq(ids_init(), 0);
    if (!getenv("SS_TEST_LOG")) log_min_level = LOG_ERROR + 1;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/ss-gensvc-XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
    cr_assert_eq(net_start(""), 0);
    cr_assert_eq(media_init(tmpdir, PUBLIC_URL), 0);
    char *url = xasprintf("sqlite:%s/test.db", tmpdir), *err = NULL;
    cr_assert_eq(store_open(url, &(store_options){.codec = &gen_record_codec}, &S, &err), STORE_OK,
                 "store_open: %s", err ? err : "?");
    free(url);
    gen_service_init(S);
    cr_assert_eq(auth_user_create(S, "Alice@Example.com", "Alice", "user", NULL, 10, &alice),
                 STORE_OK);
    cr_assert_eq(auth_user_create(S, "bob@example.com", "Bob", "user", NULL, 10, &bob), STORE_OK);
    product_url = upload_fixture("product.jpg");
}

static void teardown(void)
{
    store_close(S);
    media_shutdown();
    net_stop();
    free(product_url);
    char *cmd = xasprintf("rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    free(cmd);
}

TestSuite(gen_service, .init = setup, .fini = teardown, .timeout = 60);

/* ---- helpers ---- */

static int64_t balance(const user_record *u)
{
    user_record now;
    cr_assert_eq(store_user_get(S, u->id, &now), STORE_OK);
    return now.token_balance;
}

/* The caller as authentication would load it now (fresh balance). */
static user_record caller(const user_record *u)
{
    user_record now;
    cr_assert_eq(store_user_get(S, u->id, &now), STORE_OK);
    return now;
}

static json_t *body_for(const char *image, const char *quality)
{
    return json_pack("{s:[s], s:s, s:s, s:s, s:s}", "productImages", image, "model", "local-studio",
                     "style", "minimal", "quality", quality, "aspectRatio", "1:1");
}

/* A create request for body (stolen), with an Idempotency-Key when key. */
static void create_req(gen_service_req *req, json_t *body, const char *key)
{
    memset(req, 0, sizeof *req);
    req->body = body;
    if (key) {
        req->idem_key = xstrdup(key);
        gen_service_request_hash(SCOPE, body, req->request_hash);
    }
}

static void id_req(gen_service_req *req, const char *gen_id)
{
    memset(req, 0, sizeof *req);
    req->gen_id = xstrdup(gen_id);
}

/* Creates a pending local-studio generation for u (cost 1); id out. */
static void create_ok(const user_record *u, char id[ID_LEN])
{
    gen_service_req req;
    gen_service_result res;
    user_record who = caller(u);
    create_req(&req, body_for(product_url, "low"), NULL);
    cr_assert_eq(gen_service_create(&req, &who, &res), GEN_SVC_OK, "create: %s",
                 res.message ? res.message : "?");
    snprintf(id, ID_LEN, "%s", res.gen.id);
    gen_service_result_free(&res);
    gen_service_req_free(&req);
}

typedef int (*action_fn)(const gen_service_req *, const user_record *, gen_service_result *);

/* Runs an action on gen_id as u; returns its status, *res kept. */
static int act(action_fn fn, const user_record *u, const char *gen_id, gen_service_result *res)
{
    gen_service_req req;
    user_record who = caller(u);
    id_req(&req, gen_id);
    int rc = fn(&req, &who, res);
    cr_assert_eq(rc, res->status);
    gen_service_req_free(&req);
    return rc;
}

static size_t ledger_rows(const user_record *u, const char *kind)
{
    store_ledger_row *rows = NULL;
    size_t n_rows = 0, n = 0;
    char *next = NULL;
    cr_assert_eq(store_ledger_list(S, u->id, NULL, 100, &rows, &n_rows, &next), STORE_OK);
    for (size_t i = 0; i < n_rows; i++)
        if (str_eq(rows[i].kind, kind)) n++;
    store_ledger_rows_free(rows, n_rows);
    free(next);
    return n;
}

/* ---- create ---- */

Test(gen_service, create_charges_and_answers_201)
{
    gen_service_req req;
    gen_service_result res;
    user_record who = caller(&alice);
    create_req(&req, body_for(product_url, "low"), NULL);
    cr_assert_eq(gen_service_create(&req, &who, &res), GEN_SVC_OK);
    cr_assert_not(gen_service_needs_fetch(&req), "own /media URLs are read from disk");
    cr_assert_eq(res.http_status, 201);
    cr_assert_null(gen_service_code(res.status));
    cr_assert_str_eq(json_string_value(json_object_get(res.data, "generationId")), res.gen.id);
    cr_assert_eq(json_integer_value(json_object_get(res.data, "estimatedCost")), 1);
    cr_assert_str_eq(json_string_value(json_object_get(res.data, "status")), "pending");
    cr_assert_str_eq(json_string_value(json_object_get(res.data, "message")),
                     "Generation record created successfully");
    cr_assert_null(json_object_get(res.data, "resultImages"));
    cr_assert_eq(balance(&alice), 9);

    gen_record g;
    cr_assert_eq(store_gen_get(S, res.gen.id, &g), STORE_OK);
    cr_assert_eq(g.status, GEN_PENDING);
    cr_assert_str_eq(g.prompt, json_string_value(json_object_get(res.data, "prompt")));
    gen_record_free(&g);
    gen_service_result_free(&res);
    gen_service_req_free(&req);
}

Test(gen_service, insufficient_tokens_charge_nothing)
{
    user_record poor;
    cr_assert_eq(auth_user_create(S, "poor@example.com", "Poor", "user", NULL, 1, &poor), STORE_OK);
    gen_service_req req;
    gen_service_result res;
    user_record who = caller(&poor);
    create_req(&req, body_for(product_url, "high"), NULL); /* costs 2 */
    cr_assert_eq(gen_service_create(&req, &who, &res), GEN_SVC_EINSUFFICIENT);
    cr_assert_eq(res.http_status, 400);
    cr_assert_str_eq(gen_service_code(res.status), "INSUFFICIENT_TOKENS");
    cr_assert_str_eq(res.message, "this generation costs 2 tokens but the balance is 1");
    cr_assert_null(res.data);
    cr_assert_eq(balance(&poor), 1);
    cr_assert_eq(ledger_rows(&poor, "charge"), 0);

    gen_record *list = NULL;
    size_t n = 9;
    char *next = NULL;
    cr_assert_eq(store_gen_list(S, poor.id, -1, NULL, 10, &list, &n, &next), STORE_OK);
    cr_assert_eq(n, 0, "no generation is written");
    free(list);
    free(next);
    gen_service_result_free(&res);
    gen_service_req_free(&req);
}

Test(gen_service, validation_errors_list_every_field_and_charge_nothing)
{
    gen_service_req req;
    gen_service_result res;
    user_record who = caller(&alice);
    create_req(&req, json_pack("{s:s, s:s}", "model", "local-studio", "style", "baroque"), NULL);
    cr_assert_eq(gen_service_create(&req, &who, &res), GEN_SVC_EVALIDATION);
    cr_assert_eq(res.http_status, 400);
    cr_assert_str_eq(gen_service_code(res.status), "VALIDATION_ERROR");
    cr_assert_str_eq(res.message, "some fields are invalid");
    cr_assert_geq(json_array_size(res.validation_errors), 4); /* images, style, quality, ratio */
    cr_assert_not(req.prepared);
    cr_assert_eq(balance(&alice), 10);
    gen_service_result_free(&res);
    gen_service_req_free(&req);
}

Test(gen_service, unknown_model_is_model_error)
{
    gen_service_req req;
    gen_service_result res;
    user_record who = caller(&alice);
    json_t *body = body_for(product_url, "low");
    json_object_set_new(body, "model", json_string("no-such-model"));
    create_req(&req, body, NULL);
    cr_assert_eq(gen_service_create(&req, &who, &res), GEN_SVC_EMODEL);
    cr_assert_str_eq(gen_service_code(res.status), "MODEL_ERROR");
    cr_assert_str_eq(res.message, "unknown model 'no-such-model'");
    gen_service_result_free(&res);
    gen_service_req_free(&req);
}

Test(gen_service, refused_image_address_is_image_error_before_any_charge)
{
    gen_service_req req;
    gen_service_result res;
    user_record who = caller(&alice);
    create_req(&req, body_for("http://127.0.0.1:9/p.jpg", "low"), NULL);
    cr_assert_eq(gen_service_prepare(&req, &who, &res), GEN_SVC_OK);
    cr_assert(gen_service_needs_fetch(&req), "a URL on another host must be fetched");
    cr_assert_eq(gen_service_finish(&req, &who, false, &res), GEN_SVC_EIMAGE);
    cr_assert_eq(res.http_status, 400);
    cr_assert_str_eq(gen_service_code(res.status), "IMAGE_VALIDATION_ERROR");
    json_t *first = json_array_get(res.validation_errors, 0);
    cr_assert_str_eq(json_string_value(json_object_get(first, "field")), "productImages[0]");
    cr_assert(str_has_prefix(res.message, "an input image cannot be used: "));
    cr_assert_eq(balance(&alice), 10);
    gen_service_result_free(&res);
    gen_service_req_free(&req);
}

Test(gen_service, finish_refuses_a_request_that_was_not_prepared)
{
    gen_service_req req;
    gen_service_result res;
    user_record who = caller(&alice);
    create_req(&req, body_for(product_url, "low"), NULL);
    cr_assert_eq(gen_service_finish(&req, &who, false, &res), GEN_SVC_EINTERNAL);
    cr_assert_eq(res.http_status, 500);
    cr_assert_eq(balance(&alice), 10);
    gen_service_result_free(&res);
    gen_service_req_free(&req);
}

/* The image checks alone (templates): same answers as finish, nothing
 * charged, written or kept. */
Test(gen_service, check_images_alone_charges_and_keeps_nothing)
{
    gen_service_req req;
    gen_service_result res;
    user_record who = caller(&alice);
    create_req(&req, body_for(product_url, "low"), NULL);
    cr_assert_eq(gen_service_check_images(&req, &res), GEN_SVC_EINTERNAL); /* not prepared */
    gen_service_result_free(&res);
    cr_assert_eq(gen_service_prepare(&req, &who, &res), GEN_SVC_OK);
    cr_assert_eq(gen_service_check_images(&req, &res), GEN_SVC_OK);
    gen_service_result_free(&res);
    gen_service_req_free(&req);
    create_req(&req, body_for("http://127.0.0.1:9/p.jpg", "low"), NULL);
    cr_assert_eq(gen_service_prepare(&req, &who, &res), GEN_SVC_OK);
    cr_assert_eq(gen_service_check_images(&req, &res), GEN_SVC_EIMAGE);
    json_t *first = json_array_get(res.validation_errors, 0);
    cr_assert_str_eq(json_string_value(json_object_get(first, "field")), "productImages[0]");
    gen_service_result_free(&res);
    gen_service_req_free(&req);
    cr_assert_eq(balance(&alice), 10);
    gen_record *list = NULL;
    size_t n = 0;
    char *next = NULL;
    cr_assert_eq(store_gen_list(S, alice.id, -1, NULL, 20, &list, &n, &next), STORE_OK);
    cr_assert_eq(n, 0);
    free(list);
}

/* ---- idempotency ---- */

Test(gen_service, idempotent_replay_returns_the_first_answer_and_charges_once)
{
    gen_service_req req;
    gen_service_result first, again;
    user_record who = caller(&alice);
    create_req(&req, body_for(product_url, "low"), "key-1");
    cr_assert_eq(gen_service_create(&req, &who, &first), GEN_SVC_OK);
    cr_assert_null(first.replay);
    gen_service_req_free(&req);

    who = caller(&alice);
    create_req(&req, body_for(product_url, "low"), "key-1");
    cr_assert_eq(gen_service_create(&req, &who, &again), GEN_SVC_OK);
    cr_assert_not_null(again.replay);
    cr_assert_null(again.data);
    cr_assert_eq(again.http_status, 201);
    json_t *env = json_loads(again.replay, 0, NULL);
    cr_assert_not_null(env);
    cr_assert(json_is_true(json_object_get(env, "success")));
    cr_assert(json_equal(json_object_get(env, "data"), first.data),
              "the replay is the first answer");
    json_decref(env);
    cr_assert_eq(balance(&alice), 9);
    cr_assert_eq(ledger_rows(&alice, "charge"), 1);
    gen_service_result_free(&first);
    gen_service_result_free(&again);
    gen_service_req_free(&req);
}

Test(gen_service, same_key_with_another_body_is_idempotency_key_reused)
{
    gen_service_req req;
    gen_service_result res;
    user_record who = caller(&alice);
    create_req(&req, body_for(product_url, "low"), "key-2");
    cr_assert_eq(gen_service_create(&req, &who, &res), GEN_SVC_OK);
    gen_service_result_free(&res);
    gen_service_req_free(&req);

    who = caller(&alice);
    create_req(&req, body_for(product_url, "medium"), "key-2");
    cr_assert_eq(gen_service_create(&req, &who, &res), GEN_SVC_EIDEM_REUSED);
    cr_assert_eq(res.http_status, 409);
    cr_assert_str_eq(gen_service_code(res.status), "IDEMPOTENCY_KEY_REUSED");
    cr_assert_str_eq(res.message, "this Idempotency-Key was used with a different request body");
    cr_assert_eq(balance(&alice), 9);
    gen_service_result_free(&res);
    gen_service_req_free(&req);
}

Test(gen_service, idempotency_key_must_be_1_to_255_characters)
{
    char long_key[257];
    memset(long_key, 'k', 256);
    long_key[256] = '\0';
    const char *keys[] = {"", long_key};
    for (size_t i = 0; i < ARRAY_LEN(keys); i++) {
        gen_service_req req;
        gen_service_result res;
        user_record who = caller(&alice);
        create_req(&req, body_for(product_url, "low"), keys[i]);
        cr_assert_eq(gen_service_create(&req, &who, &res), GEN_SVC_EVALIDATION);
        json_t *e = json_array_get(res.validation_errors, 0);
        cr_assert_str_eq(json_string_value(json_object_get(e, "field")), "Idempotency-Key");
        cr_assert_str_eq(res.message, "Idempotency-Key must be 1 to 255 characters");
        gen_service_result_free(&res);
        gen_service_req_free(&req);
    }
    cr_assert_eq(balance(&alice), 10);
}

/* ---- start and the one-step form ---- */

Test(gen_service, start_moves_pending_to_processing_once)
{
    char id[ID_LEN];
    create_ok(&alice, id);
    gen_service_result res;
    cr_assert_eq(act(gen_service_start, &alice, id, &res), GEN_SVC_OK);
    cr_assert_eq(res.http_status, 202);
    cr_assert_str_eq(json_string_value(json_object_get(res.data, "status")), "processing");
    cr_assert_str_eq(res.gen.id, id);
    gen_service_result_free(&res);

    gen_record g;
    cr_assert_eq(store_gen_get(S, id, &g), STORE_OK);
    cr_assert_eq(g.status, GEN_PROCESSING);
    gen_record_free(&g);

    cr_assert_eq(act(gen_service_start, &alice, id, &res), GEN_SVC_ESTATUS);
    cr_assert_eq(res.http_status, 400);
    cr_assert_str_eq(gen_service_code(res.status), "INVALID_GENERATION_STATUS");
    cr_assert_str_eq(res.message,
                     "cannot start a generation that is processing; only pending ones can be");
    gen_service_result_free(&res);
}

Test(gen_service, another_users_generation_is_forbidden_and_unknown_ids_not_found)
{
    char id[ID_LEN];
    create_ok(&alice, id);
    gen_service_result res;
    action_fn fns[] = {gen_service_get, gen_service_start, gen_service_cancel, gen_service_retry,
                       gen_service_delete};
    for (size_t i = 0; i < ARRAY_LEN(fns); i++) {
        cr_assert_eq(act(fns[i], &bob, id, &res), GEN_SVC_EFORBIDDEN);
        cr_assert_eq(res.http_status, 403);
        cr_assert_str_eq(gen_service_code(res.status), "UNAUTHORIZED");
        gen_service_result_free(&res);
        cr_assert_eq(act(fns[i], &alice, "gen_nope", &res), GEN_SVC_ENOTFOUND);
        cr_assert_eq(res.http_status, 404);
        cr_assert_str_eq(gen_service_code(res.status), "GENERATION_NOT_FOUND");
        gen_service_result_free(&res);
    }
    cr_assert_eq(balance(&alice), 9);
    cr_assert_eq(balance(&bob), 10);
}

Test(gen_service, create_and_start_answers_202_processing)
{
    gen_service_req req;
    gen_service_result res;
    user_record who = caller(&alice);
    create_req(&req, body_for(product_url, "low"), NULL);
    cr_assert_eq(gen_service_create_and_start(&req, &who, &res), GEN_SVC_OK);
    cr_assert_eq(res.http_status, 202);
    cr_assert_str_eq(json_string_value(json_object_get(res.data, "status")), "processing");
    cr_assert(json_is_array(json_object_get(res.data, "resultImages")));
    gen_record g;
    cr_assert_eq(store_gen_get(S, res.gen.id, &g), STORE_OK);
    cr_assert_eq(g.status, GEN_PROCESSING);
    cr_assert_str_eq(g.stage, STAGE_QUEUED);
    gen_record_free(&g);
    cr_assert_eq(balance(&alice), 9);
    gen_service_result_free(&res);
    gen_service_req_free(&req);
}

/* ---- cancel, retry, delete ---- */

Test(gen_service, cancel_refunds_once)
{
    char id[ID_LEN];
    create_ok(&alice, id);
    cr_assert_eq(balance(&alice), 9);
    gen_service_result res;
    cr_assert_eq(act(gen_service_cancel, &alice, id, &res), GEN_SVC_OK);
    cr_assert_eq(res.http_status, 200);
    cr_assert_eq(res.gen.status, GEN_CANCELLED);
    cr_assert_str_eq(json_string_value(json_object_get(res.data, "status")), "cancelled");
    cr_assert_eq(json_integer_value(json_object_get(res.data, "tokensUsed")), 0);
    gen_service_result_free(&res);
    cr_assert_eq(balance(&alice), 10);

    cr_assert_eq(act(gen_service_cancel, &alice, id, &res), GEN_SVC_ESTATUS);
    cr_assert_str_eq(
        res.message,
        "cannot cancel a generation that is cancelled; only pending or processing ones can be");
    gen_service_result_free(&res);
    cr_assert_eq(balance(&alice), 10);
    cr_assert_eq(ledger_rows(&alice, "refund"), 1);
}

Test(gen_service, retry_makes_a_new_charged_generation_of_a_cancelled_one)
{
    char id[ID_LEN];
    create_ok(&alice, id);
    gen_service_result res;
    cr_assert_eq(act(gen_service_retry, &alice, id, &res), GEN_SVC_ESTATUS, "pending");
    gen_service_result_free(&res);
    cr_assert_eq(act(gen_service_cancel, &alice, id, &res), GEN_SVC_OK);
    gen_service_result_free(&res);

    cr_assert_eq(act(gen_service_retry, &alice, id, &res), GEN_SVC_OK);
    cr_assert_eq(res.http_status, 201);
    cr_assert_str_eq(json_string_value(json_object_get(res.data, "retryOf")), id);
    cr_assert_str_eq(json_string_value(json_object_get(res.data, "status")), "pending");
    cr_assert_str_eq(res.gen.retry_of, id);
    cr_assert_str_neq(res.gen.id, id);
    gen_service_result_free(&res);
    cr_assert_eq(balance(&alice), 9);
}

Test(gen_service, retry_with_an_empty_balance_is_insufficient)
{
    user_record one;
    cr_assert_eq(auth_user_create(S, "one@example.com", "One", "user", NULL, 1, &one), STORE_OK);
    char id[ID_LEN];
    create_ok(&one, id);
    gen_service_result res;
    cr_assert_eq(act(gen_service_cancel, &one, id, &res), GEN_SVC_OK);
    gen_service_result_free(&res);
    int64_t amount = 0;
    cr_assert_eq(store_user_credit(S, one.id, -1, "adjustment", "drain", &amount), STORE_OK);
    cr_assert_eq(act(gen_service_retry, &one, id, &res), GEN_SVC_EINSUFFICIENT);
    cr_assert_str_eq(res.message, "this generation costs 1 token but the balance is 0");
    gen_service_result_free(&res);
}

Test(gen_service, delete_only_terminal_generations)
{
    char id[ID_LEN];
    create_ok(&alice, id);
    gen_service_result res;
    cr_assert_eq(act(gen_service_delete, &alice, id, &res), GEN_SVC_ESTATUS);
    cr_assert_str_eq(res.message, "cannot delete a generation that is pending; only completed, "
                                  "failed or cancelled ones can be");
    gen_service_result_free(&res);
    cr_assert_eq(act(gen_service_cancel, &alice, id, &res), GEN_SVC_OK);
    gen_service_result_free(&res);

    cr_assert_eq(act(gen_service_delete, &alice, id, &res), GEN_SVC_OK);
    cr_assert_str_eq(json_string_value(json_object_get(res.data, "id")), id);
    cr_assert(json_is_true(json_object_get(res.data, "deleted")));
    gen_service_result_free(&res);
    cr_assert_eq(act(gen_service_get, &alice, id, &res), GEN_SVC_ENOTFOUND);
    gen_service_result_free(&res);
    cr_assert_eq(ledger_rows(&alice, "charge"), 1, "ledger rows stay");
}

/* ---- the shared account creation (auth.c) ---- */

TestSuite(accounts, .init = setup, .fini = teardown);

Test(accounts, auth_user_create_folds_the_email_and_refuses_duplicates)
{
    cr_assert_str_eq(alice.email, "alice@example.com");
    cr_assert_str_eq(alice.plan, "free");
    cr_assert_str_eq(alice.role, "user");
    cr_assert(ids_valid(alice.id, "usr"));
    cr_assert_eq(balance(&alice), 10);
    cr_assert_eq(ledger_rows(&alice, "grant"), 1);
    user_record dup;
    cr_assert_eq(auth_user_create(S, "ALICE@example.com", "Again", "admin", NULL, 5, &dup),
                 STORE_EDUPLICATE);
}
