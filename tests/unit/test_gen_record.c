/*
 * Unit tests: the record's JSON shape (gen_record_to_json) and the event
 * data the codec writes (gen_record_codec), which joins the fixed fields
 * it encoded once to the changing ones: the two must be the same object
 * whichever way the event text was made.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "generation.h"
#include "store.h"
#include "util.h"

/* A processing record with every optional field set; id names it. */
static gen_record record(const char *id)
{
    gen_record g = {0};
    snprintf(g.id, sizeof g.id, "%s", id);
    snprintf(g.user_id, sizeof g.user_id, "usr_1");
    g.status = GEN_PROCESSING;
    g.product_images = json_pack("[s]", "https://cdn.example.com/p/\"1\".jpg");
    g.model_images = json_array();
    g.result_images = json_array();
    g.prompt = xstrdup("A prompt with \"quotes\", a \\ and é — escaped once");
    g.custom_prompt = xstrdup("linen");
    snprintf(g.params.model, sizeof g.params.model, "local-studio");
    snprintf(g.params.style, sizeof g.params.style, "minimal");
    snprintf(g.params.quality, sizeof g.params.quality, "auto");
    snprintf(g.params.aspect_ratio, sizeof g.params.aspect_ratio, "1:1");
    g.params.guidance_scale = 7.5;
    g.params.num_inference_steps = 50;
    g.params.strength = 0.8;
    g.params.seed = 42;
    g.tokens_used = 3;
    g.created_at = 1000;
    g.started_at = 1001;
    g.progress = 15;
    snprintf(g.stage, sizeof g.stage, "generating");
    snprintf(g.batch_id, sizeof g.batch_id, "bat_1");
    snprintf(g.retry_of, sizeof g.retry_of, "gen_0");
    return g;
}

/* The codec's event text for g, checked equal to gen_record_to_json(g). */
static void assert_event_is_record(const gen_record *g)
{
    char *text = gen_record_codec.generation(g);
    cr_assert_not_null(text);
    json_error_t err;
    json_t *got = json_loads(text, 0, &err);
    cr_assert_not_null(got, "event text is not JSON (%s): %s", err.text, text);
    json_t *want = gen_record_to_json(g);
    cr_assert(json_equal(got, want), "event %s differs from the record", text);
    cr_assert_eq(json_object_size(got), json_object_size(want));
    json_decref(got);
    json_decref(want);
    free(text);
}

Test(gen_record, event_equals_the_record_before_and_after_its_fixed_fields_are_kept)
{
    gen_record g = record("gen_event_1");
    assert_event_is_record(&g); /* the first: encodes the fixed fields */
    g.progress = 92;
    snprintf(g.stage, sizeof g.stage, "storing");
    assert_event_is_record(&g); /* later ones join them to the changing fields */
    g.status = GEN_COMPLETED;
    json_array_append_new(g.result_images, json_string("https://x.test/r/1.jpg"));
    g.completed_at = 1500;
    g.processing_time = 499;
    g.progress = 100;
    snprintf(g.stage, sizeof g.stage, "completed");
    assert_event_is_record(&g);
    gen_record_free(&g);
}

Test(gen_record, prepared_fields_serve_the_event)
{
    gen_record g = record("gen_event_2");
    gen_record_codec.prepare(&g);
    assert_event_is_record(&g);
    gen_record_free(&g);
}

Test(gen_record, minimal_record_without_optional_fields)
{
    gen_record g = {0};
    snprintf(g.id, sizeof g.id, "gen_event_3");
    snprintf(g.stage, sizeof g.stage, "pending");
    assert_event_is_record(&g);
    assert_event_is_record(&g);
    json_t *o = gen_record_to_json(&g);
    cr_assert_str_eq(json_string_value(json_object_get(o, "prompt")), "");
    cr_assert(json_is_array(json_object_get(o, "productImages")));
    cr_assert_null(json_object_get(o, "batchId"));
    json_decref(o);
}

Test(gen_record, many_generations_sharing_slots_each_get_their_own_fields)
{
    /* More records than slots, each event checked against its own record:
     * an evicted or colliding slot never lends another's fields. */
    for (int round = 0; round < 2; round++)
        for (int i = 0; i < 3000; i++) {
            char id[ID_LEN];
            snprintf(id, sizeof id, "gen_many_%d", i);
            gen_record g = record(id);
            free(g.prompt);
            g.prompt = xasprintf("prompt of %d", i);
            assert_event_is_record(&g);
            gen_record_free(&g);
        }
}
