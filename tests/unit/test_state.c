/*
 * Unit tests: gen_record — status names and parsing, terminal statuses, the
 * state machine table, and the record's JSON shape (SPEC §4).
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gen_state.h"
#include "generation.h"
#include "provider.h"
#include "util.h"

static const gen_status all[GEN_STATUS_COUNT] = {GEN_PENDING, GEN_PROCESSING, GEN_COMPLETED,
                                                 GEN_FAILED, GEN_CANCELLED};

Test(state, names)
{
    cr_assert_str_eq(gen_status_name(GEN_PENDING), "pending");
    cr_assert_str_eq(gen_status_name(GEN_PROCESSING), "processing");
    cr_assert_str_eq(gen_status_name(GEN_COMPLETED), "completed");
    cr_assert_str_eq(gen_status_name(GEN_FAILED), "failed");
    cr_assert_str_eq(gen_status_name(GEN_CANCELLED), "cancelled");
    cr_assert_str_eq(gen_status_name((gen_status)GEN_STATUS_COUNT), "unknown");
    cr_assert_str_eq(gen_status_name((gen_status)-1), "unknown");
}

Test(state, parse_round_trip)
{
    for (int i = 0; i < GEN_STATUS_COUNT; i++) {
        gen_status s = (gen_status)-1;
        cr_assert_eq(gen_status_parse(gen_status_name(all[i]), &s), 0);
        cr_assert_eq(s, all[i]);
    }
}

Test(state, parse_rejects_unknown_names)
{
    const char *bad[] = {"", "Pending", "PENDING", "done", "canceled", "pending ", "unknown"};
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        gen_status s = GEN_FAILED;
        cr_assert_eq(gen_status_parse(bad[i], &s), -1, "accepted '%s'", bad[i]);
        cr_assert_eq(s, GEN_FAILED, "changed *out on failure");
    }
}

Test(state, terminal_statuses)
{
    cr_assert_not(gen_status_terminal(GEN_PENDING));
    cr_assert_not(gen_status_terminal(GEN_PROCESSING));
    cr_assert(gen_status_terminal(GEN_COMPLETED));
    cr_assert(gen_status_terminal(GEN_FAILED));
    cr_assert(gen_status_terminal(GEN_CANCELLED));
}

/* The whole table, row = from, column = to (SPEC §4 state machine). */
Test(state, transition_table)
{
    /*                       pend   proc   comp   fail   canc */
    static const bool want[GEN_STATUS_COUNT][GEN_STATUS_COUNT] = {
        /* pending    */ {false, true, false, false, true},
        /* processing */ {false, false, true, true, true},
        /* completed  */ {false, false, false, false, false},
        /* failed     */ {false, false, false, false, false},
        /* cancelled  */ {false, false, false, false, false},
    };
    for (int f = 0; f < GEN_STATUS_COUNT; f++)
        for (int t = 0; t < GEN_STATUS_COUNT; t++)
            cr_assert_eq(gen_transition_allowed(all[f], all[t]), want[f][t], "%s -> %s",
                         gen_status_name(all[f]), gen_status_name(all[t]));
}

Test(state, terminal_states_are_final)
{
    for (int f = 0; f < GEN_STATUS_COUNT; f++) {
        if (!gen_status_terminal(all[f])) continue;
        for (int t = 0; t < GEN_STATUS_COUNT; t++)
            cr_assert_not(gen_transition_allowed(all[f], all[t]));
    }
}

/* The guards the store is handed come from the same table. */
Test(state, sources_follow_the_table)
{
    cr_assert_eq(gen_state_sources(GEN_CANCELLED),
                 GEN_MASK(GEN_PENDING) | GEN_MASK(GEN_PROCESSING));
    cr_assert_eq(gen_state_sources(GEN_FAILED), GEN_MASK(GEN_PROCESSING));
    cr_assert_eq(gen_state_sources(GEN_COMPLETED), GEN_MASK(GEN_PROCESSING));
    cr_assert_eq(gen_state_sources(GEN_PROCESSING), GEN_MASK(GEN_PENDING));
    cr_assert_eq(gen_state_sources(GEN_PENDING), 0);
    cr_assert_eq(gen_state_deletable(),
                 GEN_MASK(GEN_COMPLETED) | GEN_MASK(GEN_FAILED) | GEN_MASK(GEN_CANCELLED));
    for (int i = 0; i < GEN_STATUS_COUNT; i++)
        cr_assert_eq(gen_state_retryable(all[i]), all[i] == GEN_FAILED || all[i] == GEN_CANCELLED,
                     "retry of %s", gen_status_name(all[i]));
}

static uint32_t rand_max(uint32_t n)
{
    return n - 1;
}

static uint32_t rand_zero(uint32_t n)
{
    (void)n;
    return 0;
}

/* base × 2^retry, ±25 % jitter, capped at 5 minutes. */
Test(state, backoff)
{
    gen_retry_policy p = {.max_retries = 3, .base_ms = 2000};
    cr_assert_eq(gen_state_backoff_ms(&p, 0), 2000);
    cr_assert_eq(gen_state_backoff_ms(&p, 1), 4000);
    cr_assert_eq(gen_state_backoff_ms(&p, 3), 16000);
    cr_assert_eq(gen_state_backoff_ms(&p, 30), 5 * 60 * 1000);
    p.rand_below = rand_zero;
    cr_assert_eq(gen_state_backoff_ms(&p, 1), 3000);
    p.rand_below = rand_max;
    cr_assert_eq(gen_state_backoff_ms(&p, 1), 5000);
    cr_assert_eq(gen_state_backoff_ms(&p, 30), 5 * 60 * 1000, "jitter never passes the cap");
    p.base_ms = 0;
    cr_assert_eq(gen_state_backoff_ms(&p, 2), 0);
}

/* Provider results → what the state machine does with them. */
Test(state, failure_of_provider_results)
{
    cr_assert_eq(gen_state_failure_of(PROVIDER_TRANSIENT), GEN_FAILURE_TRANSIENT);
    cr_assert_eq(gen_state_failure_of(PROVIDER_REJECTED), GEN_FAILURE_REJECTED);
    cr_assert_eq(gen_state_failure_of(PROVIDER_MALFORMED), GEN_FAILURE_MALFORMED);
    cr_assert_eq(gen_state_failure_of(PROVIDER_INPUT), GEN_FAILURE_INPUT);
    /* A cancel nobody asked for (the queue drops asked-for ones itself). */
    cr_assert_eq(gen_state_failure_of(PROVIDER_CANCELLED), GEN_FAILURE_TRANSIENT);
    cr_assert_eq(gen_state_failure_of(-99), GEN_FAILURE_TRANSIENT);
}

Test(state, error_codes_fit_the_record)
{
    const char *codes[] = {GEN_ERR_CANCELLED,         GEN_ERR_EXPIRED,
                           GEN_ERR_PROVIDER_REJECTED, GEN_ERR_PROVIDER_TRANSIENT,
                           GEN_ERR_PROVIDER_ERROR,    GEN_ERR_INPUT_UNAVAILABLE};
    gen_record g;
    for (size_t i = 0; i < ARRAY_LEN(codes); i++)
        cr_assert_lt(strlen(codes[i]), sizeof g.error_code, "%s", codes[i]);
}

/* ---- JSON shape ---- */

static void fill_params(gen_params *p)
{
    snprintf(p->model, sizeof p->model, "local-studio");
    snprintf(p->style, sizeof p->style, "realistic");
    snprintf(p->quality, sizeof p->quality, "high");
    snprintf(p->aspect_ratio, sizeof p->aspect_ratio, "4:5");
    p->guidance_scale = 7.5;
    p->num_inference_steps = 50;
    p->strength = 0.8;
    p->seed = 2147483647;
}

static gen_record minimal_record(void)
{
    gen_record g = {0};
    snprintf(g.id, sizeof g.id, "gen_01JD3V6Z8Q4W3T9X0M2N5P7R1S");
    snprintf(g.user_id, sizeof g.user_id, "usr_01JD3V6Z8Q4W3T9X0M2N5P7R1S");
    g.status = GEN_PENDING;
    g.product_images = json_pack("[s]", "https://cdn.example.com/1.jpg");
    g.model_images = json_array();
    g.result_images = json_array();
    g.prompt = xstrdup("A prompt.");
    fill_params(&g.params);
    g.tokens_used = 2;
    g.created_at = 1700000000000LL;
    snprintf(g.stage, sizeof g.stage, "pending");
    return g;
}

static void assert_keys(json_t *o, const char *const *keys, size_t n)
{
    char *dump = json_dumps(o, JSON_SORT_KEYS);
    cr_assert_eq(json_object_size(o), n, "want %zu keys, got %s", n, dump);
    for (size_t i = 0; i < n; i++)
        cr_assert(json_object_get(o, keys[i]), "missing %s in %s", keys[i], dump);
    free(dump);
}

static const char *const base_keys[] = {
    "_id",          "userId",   "status",     "productImages", "modelImages",
    "resultImages", "prompt",   "parameters", "tokensUsed",    "retryCount",
    "createdAt",    "progress", "stage",      "priority",
};

Test(state, json_minimal_record_has_exactly_the_required_keys)
{
    gen_record g = minimal_record();
    json_t *o = gen_record_to_json(&g);
    assert_keys(o, base_keys, ARRAY_LEN(base_keys));
    const char *absent[] = {"customPrompt",  "startedAt", "completedAt", "processingTime", "error",
                            "queuePosition", "batchId",   "retryOf",     "errorCode",      "eta"};
    for (size_t i = 0; i < ARRAY_LEN(absent); i++)
        cr_assert_null(json_object_get(o, absent[i]), "%s present", absent[i]);

    cr_assert_str_eq(json_string_value(json_object_get(o, "_id")), g.id);
    cr_assert_str_eq(json_string_value(json_object_get(o, "userId")), g.user_id);
    cr_assert_str_eq(json_string_value(json_object_get(o, "status")), "pending");
    cr_assert_str_eq(json_string_value(json_object_get(o, "prompt")), "A prompt.");
    cr_assert_str_eq(json_string_value(json_object_get(o, "stage")), "pending");
    cr_assert_str_eq(json_string_value(json_object_get(o, "priority")), "normal");
    cr_assert_eq(json_integer_value(json_object_get(o, "tokensUsed")), 2);
    cr_assert_eq(json_integer_value(json_object_get(o, "retryCount")), 0);
    cr_assert_eq(json_integer_value(json_object_get(o, "progress")), 0);
    cr_assert_eq(json_integer_value(json_object_get(o, "createdAt")), 1700000000000LL);
    cr_assert(json_is_integer(json_object_get(o, "createdAt")));
    cr_assert_eq(json_array_size(json_object_get(o, "productImages")), 1);
    cr_assert(json_is_array(json_object_get(o, "modelImages")));
    cr_assert(json_is_array(json_object_get(o, "resultImages")));
    json_decref(o);
    gen_record_free(&g);
}

Test(state, json_parameters_shape)
{
    gen_record g = minimal_record();
    json_t *o = gen_record_to_json(&g);
    json_t *p = json_object_get(o, "parameters");
    const char *keys[] = {
        "model",    "style", "quality", "aspectRatio", "guidance_scale", "num_inference_steps",
        "strength", "seed"};
    assert_keys(p, keys, ARRAY_LEN(keys));
    cr_assert_str_eq(json_string_value(json_object_get(p, "model")), "local-studio");
    cr_assert_str_eq(json_string_value(json_object_get(p, "style")), "realistic");
    cr_assert_str_eq(json_string_value(json_object_get(p, "quality")), "high");
    cr_assert_str_eq(json_string_value(json_object_get(p, "aspectRatio")), "4:5");
    cr_assert(json_is_number(json_object_get(p, "guidance_scale")));
    cr_assert_float_eq(json_number_value(json_object_get(p, "guidance_scale")), 7.5, 1e-9);
    cr_assert(json_is_integer(json_object_get(p, "num_inference_steps")));
    cr_assert_eq(json_integer_value(json_object_get(p, "num_inference_steps")), 50);
    cr_assert_float_eq(json_number_value(json_object_get(p, "strength")), 0.8, 1e-9);
    cr_assert(json_is_integer(json_object_get(p, "seed")));
    cr_assert_eq(json_integer_value(json_object_get(p, "seed")), 2147483647);

    json_t *alone = gen_params_to_json(&g.params);
    cr_assert(json_equal(alone, p));
    json_decref(alone);
    json_decref(o);
    gen_record_free(&g);
}

Test(state, json_null_arrays_become_empty)
{
    gen_record g = minimal_record();
    json_decref(g.model_images);
    json_decref(g.result_images);
    g.model_images = g.result_images = NULL;
    free(g.prompt);
    g.prompt = NULL;
    json_t *o = gen_record_to_json(&g);
    cr_assert(json_is_array(json_object_get(o, "modelImages")));
    cr_assert_eq(json_array_size(json_object_get(o, "modelImages")), 0);
    cr_assert(json_is_array(json_object_get(o, "resultImages")));
    cr_assert_str_eq(json_string_value(json_object_get(o, "prompt")), "");
    json_decref(o);
    gen_record_free(&g);
}

Test(state, json_full_record_has_every_optional_key)
{
    gen_record g = minimal_record();
    g.status = GEN_COMPLETED;
    g.custom_prompt = xstrdup("red scarf");
    g.started_at = 1700000001000LL;
    g.completed_at = 1700000004500LL;
    g.processing_time = 3500;
    g.error = xstrdup("an earlier attempt timed out");
    snprintf(g.error_code, sizeof g.error_code, "PROVIDER_TRANSIENT");
    g.queue_position = 3;
    g.priority = PRIORITY_HIGH;
    g.progress = 100;
    g.retry_count = 1;
    snprintf(g.stage, sizeof g.stage, "completed");
    snprintf(g.batch_id, sizeof g.batch_id, "bat_01JD3V6Z8Q4W3T9X0M2N5P7R1S");
    snprintf(g.retry_of, sizeof g.retry_of, "gen_01JD3V6Z8Q4W3T9X0M2N5P7R1T");
    json_array_append_new(g.result_images, json_string("/media/results/a.jpg"));

    json_t *o = gen_record_to_json(&g);
    const char *keys[ARRAY_LEN(base_keys) + 10];
    size_t n = 0;
    for (size_t i = 0; i < ARRAY_LEN(base_keys); i++)
        keys[n++] = base_keys[i];
    const char *extra[] = {"customPrompt",  "startedAt", "completedAt", "processingTime", "error",
                           "queuePosition", "batchId",   "retryOf",     "errorCode",      "eta"};
    for (size_t i = 0; i < ARRAY_LEN(extra); i++)
        keys[n++] = extra[i];
    assert_keys(o, keys, n);

    cr_assert_str_eq(json_string_value(json_object_get(o, "status")), "completed");
    cr_assert_str_eq(json_string_value(json_object_get(o, "customPrompt")), "red scarf");
    cr_assert_eq(json_integer_value(json_object_get(o, "startedAt")), 1700000001000LL);
    cr_assert_eq(json_integer_value(json_object_get(o, "completedAt")), 1700000004500LL);
    cr_assert_eq(json_integer_value(json_object_get(o, "processingTime")), 3500);
    cr_assert_str_eq(json_string_value(json_object_get(o, "error")),
                     "an earlier attempt timed out");
    cr_assert_str_eq(json_string_value(json_object_get(o, "errorCode")), "PROVIDER_TRANSIENT");
    cr_assert_eq(json_integer_value(json_object_get(o, "queuePosition")), 3);
    cr_assert_str_eq(json_string_value(json_object_get(o, "priority")), "high");
    cr_assert_str_eq(json_string_value(json_object_get(o, "batchId")), g.batch_id);
    cr_assert_str_eq(json_string_value(json_object_get(o, "retryOf")), g.retry_of);
    cr_assert_eq(json_integer_value(json_object_get(o, "progress")), 100);
    cr_assert_eq(json_integer_value(json_object_get(o, "retryCount")), 1);
    cr_assert_eq(json_array_size(json_object_get(o, "resultImages")), 1);
    json_decref(o);
    gen_record_free(&g);
}

Test(state, json_processing_time_needs_start_and_end)
{
    gen_record g = minimal_record();
    g.status = GEN_PROCESSING;
    g.started_at = 1700000001000LL;
    json_t *o = gen_record_to_json(&g);
    cr_assert(json_object_get(o, "startedAt"));
    cr_assert_null(json_object_get(o, "completedAt"));
    cr_assert_null(json_object_get(o, "processingTime"));
    json_decref(o);

    /* Cancelled while pending: an end time but no start, so no duration. */
    g.status = GEN_CANCELLED;
    g.started_at = 0;
    g.completed_at = 1700000002000LL;
    o = gen_record_to_json(&g);
    cr_assert_null(json_object_get(o, "startedAt"));
    cr_assert(json_object_get(o, "completedAt"));
    cr_assert_null(json_object_get(o, "processingTime"));
    json_decref(o);
    gen_record_free(&g);
}

Test(state, json_every_status_name)
{
    for (int i = 0; i < GEN_STATUS_COUNT; i++) {
        gen_record g = minimal_record();
        g.status = all[i];
        json_t *o = gen_record_to_json(&g);
        cr_assert_str_eq(json_string_value(json_object_get(o, "status")), gen_status_name(all[i]));
        json_decref(o);
        gen_record_free(&g);
    }
}

Test(state, record_free_clears)
{
    gen_record g = minimal_record();
    g.custom_prompt = xstrdup("x");
    g.error = xstrdup("y");
    gen_record_free(&g);
    cr_assert_null(g.product_images);
    cr_assert_null(g.prompt);
    cr_assert_null(g.custom_prompt);
    cr_assert_null(g.error);
    gen_record_free(&g); /* twice is harmless */
    gen_record_free(NULL);
}
