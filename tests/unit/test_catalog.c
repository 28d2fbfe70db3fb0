/*
 * Unit tests: the model catalogue (provider_catalog.c) — the built-in
 * models.json, validation messages naming model and field — and the input
 * template language (provider_template.c).
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "provider.h"
#include "util.h"

static void builtin(void)
{
    char *err = NULL;
    cr_assert_eq(provider_catalog_load(NULL, &err), 0, "%s", err ? err : "");
}

TestSuite(catalog, .init = builtin);

Test(catalog, builtin_has_the_shipped_models)
{
    const char *want[] = {"local-studio", "gpt-image-1", "flux-kontext-pro", "idm-vton",
                          "bench-instant"};
    const model_info *list;
    size_t n = provider_models(&list);
    cr_assert_eq(n, ARRAY_LEN(want));
    for (size_t i = 0; i < n; i++)
        cr_assert_str_eq(list[i].id, want[i]);

    const model_info *m = provider_model_find("local-studio");
    cr_assert_not_null(m);
    cr_assert_str_eq(m->provider, "local");
    cr_assert_eq(m->base_cost, 1);
    cr_assert_eq(m->outputs, 2);
    cr_assert_null(m->input);

    m = provider_model_find("gpt-image-1");
    cr_assert_str_eq(m->provider, "openai");
    cr_assert_str_eq(m->provider_model, "gpt-image-1");
    cr_assert_eq(m->base_cost, 3);

    m = provider_model_find("flux-kontext-pro");
    cr_assert_str_eq(m->provider_model, "black-forest-labs/flux-kontext-pro");
    cr_assert_null(m->version);
    cr_assert_not_null(m->input);
    cr_assert_eq(m->max_model_images, 0);

    m = provider_model_find("idm-vton");
    cr_assert_str_eq(m->provider, "replicate");
    cr_assert_eq(strlen(m->version), 64);
    cr_assert_eq(m->min_model_images, 1);
    cr_assert_eq(m->max_model_images, 1);
    cr_assert_gt(m->max_in_flight, 1);
    cr_assert_gt(m->typical_seconds, 0);

    cfg.enable_bench_model = false;
    cr_assert_null(provider_model_find("bench-instant"));
    cfg.enable_bench_model = true;
    cr_assert_not_null(provider_model_find("bench-instant"));
    cr_assert(provider_model_find("bench-instant")->hidden);
    cfg.enable_bench_model = false;
    cr_assert_null(provider_model_find("nope"));
    cr_assert_null(provider_model_find(NULL));
}

/* ---- validation ---- */

/* A one-model catalogue whose entry is `fields` (JSON members, no braces). */
static int load_one(const char *fields, char **err)
{
    char *text = xasprintf("{\"models\": [{%s}]}", fields);
    int rc = provider_catalog_load_text(text, "test.json", err);
    free(text);
    return rc;
}

#define BASE_LOCAL                                                                                 \
    "\"id\": \"m1\", \"name\": \"M\", \"description\": \"d\", \"provider\": \"local\","            \
    " \"baseCost\": 1, \"outputs\": 1, \"maxProductImages\": 1, \"maxModelImages\": 0,"            \
    " \"maxInFlight\": 1, \"typicalSeconds\": 2, \"parameters\": []"
#define BASE_REPLICATE                                                                             \
    "\"id\": \"r1\", \"name\": \"R\", \"description\": \"d\", \"provider\": \"replicate\","        \
    " \"providerModel\": \"o/n\", \"baseCost\": 1, \"outputs\": 1, \"maxProductImages\": 1,"       \
    " \"maxModelImages\": 1, \"maxInFlight\": 4, \"typicalSeconds\": 2, \"parameters\": "          \
    "[\"seed\"]"

static void expect_error(const char *fields, const char *model, const char *field)
{
    char *err = NULL;
    cr_assert_eq(load_one(fields, &err), -1, "accepted: %s", fields);
    cr_assert_not_null(err);
    cr_assert(strstr(err, "test.json"), "%s", err);
    if (model) {
        char *want = xasprintf("model \"%s\"", model);
        cr_assert(strstr(err, want), "no %s in: %s", want, err);
        free(want);
    }
    char *want = xasprintf("\"%s\"", field);
    cr_assert(strstr(err, want), "no %s in: %s", want, err);
    free(want);
    free(err);
    /* The catalogue in force is unchanged. */
    cr_assert_not_null(provider_model_find("local-studio"));
}

Test(catalog, a_valid_replacement_takes_effect)
{
    char *err = NULL;
    cr_assert_eq(load_one(BASE_REPLICATE ", \"input\": {\"prompt\": \"{prompt}\"}", &err), 0, "%s",
                 err ? err : "");
    cr_assert_null(provider_model_find("local-studio"));
    const model_info *m = provider_model_find("r1");
    cr_assert_not_null(m);
    cr_assert_eq(m->max_in_flight, 4);
    cr_assert_eq(json_array_size(m->parameters), 1);
}

Test(catalog, errors_name_the_model_and_the_field)
{
    expect_error(BASE_LOCAL ", \"provider\": \"azure\"", NULL, "provider"); /* duplicate key */
    expect_error("\"id\": \"m1\", \"name\": \"M\", \"description\": \"d\", \"provider\": \"azure\","
                 " \"baseCost\": 1, \"outputs\": 1, \"maxProductImages\": 1, \"maxModelImages\": 0,"
                 " \"maxInFlight\": 1, \"typicalSeconds\": 2, \"parameters\": []",
                 "m1", "provider");
    expect_error("\"id\": \"m1\", \"name\": \"M\", \"description\": \"d\", \"provider\": \"local\","
                 " \"outputs\": 1, \"maxProductImages\": 1, \"maxModelImages\": 0,"
                 " \"maxInFlight\": 1, \"typicalSeconds\": 2, \"parameters\": []",
                 "m1", "baseCost");
    expect_error("\"id\": \"m1\", \"name\": \"M\", \"description\": \"d\", \"provider\": \"local\","
                 " \"baseCost\": \"1\", \"outputs\": 1, \"maxProductImages\": 1,"
                 " \"maxModelImages\": 0, \"maxInFlight\": 1, \"typicalSeconds\": 2,"
                 " \"parameters\": []",
                 "m1", "baseCost");
    expect_error(BASE_LOCAL ", \"maxInflight\": 3", "m1", "maxInflight"); /* unknown field */
    expect_error(BASE_LOCAL ", \"input\": {}", "m1", "input");
    expect_error(BASE_REPLICATE, "r1", "input");
    expect_error(BASE_REPLICATE ", \"input\": {\"seed\": \"{parameters.sed}\"}", "r1",
                 "input.seed");
    expect_error(BASE_REPLICATE ", \"input\": {\"img\": \"{modelImages[1]}\"}", "r1", "input.img");
    expect_error(BASE_REPLICATE ", \"input\": {\"p\": \"a {prompt\"}", "r1", "input.p");
    expect_error(BASE_REPLICATE ", \"input\": {\"p\": \"x {productImages}\"}", "r1", "input.p");
    char *err = NULL;
    cr_assert_eq(provider_catalog_load_text("{\"models\": [{" BASE_LOCAL "}, {" BASE_LOCAL "}]}",
                                            "test.json", &err),
                 -1);
    cr_assert(strstr(err, "model \"m1\"") && strstr(err, "duplicate"), "%s", err);
    free(err);
    cr_assert_eq(provider_catalog_load_text("[1, 2", "test.json", &err), -1);
    cr_assert(strstr(err, "not valid JSON"), "%s", err);
    free(err);
}

/* ---- templates ---- */

static gen_record record(bool with_model_image)
{
    gen_record g = {0};
    snprintf(g.id, sizeof g.id, "gen_1");
    g.product_images = json_pack("[s,s]", "https://x/p1.jpg", "https://x/p2.jpg");
    g.model_images = with_model_image ? json_pack("[s]", "https://x/m1.jpg") : json_array();
    g.result_images = json_array();
    g.prompt = xstrdup("A studio shot.");
    snprintf(g.params.model, sizeof g.params.model, "flux-kontext-pro");
    snprintf(g.params.style, sizeof g.params.style, "minimal");
    snprintf(g.params.quality, sizeof g.params.quality, "high");
    snprintf(g.params.aspect_ratio, sizeof g.params.aspect_ratio, "4:5");
    g.params.guidance_scale = 7.5;
    g.params.num_inference_steps = 40;
    g.params.strength = 0.8;
    g.params.seed = 12345;
    return g;
}

static json_t *render(const char *tmpl_text, const gen_record *g, const model_info *m)
{
    json_t *tmpl = json_loads(tmpl_text, 0, NULL);
    cr_assert_not_null(tmpl, "bad test template %s", tmpl_text);
    char *err = NULL;
    cr_assert_eq(provider_template_check(tmpl, m, &err), 0, "%s", err ? err : "");
    json_t *out = provider_template_render(tmpl, g, m);
    json_decref(tmpl);
    return out;
}

static void assert_json(json_t *got, const char *want_text)
{
    json_t *want = json_loads(want_text, 0, NULL);
    cr_assert_not_null(want);
    char *g = json_dumps(got, JSON_SORT_KEYS), *w = json_dumps(want, JSON_SORT_KEYS);
    cr_assert(json_equal(got, want), "got %s, want %s", g, w);
    free(g);
    free(w);
    json_decref(want);
    json_decref(got);
}

Test(catalog, flux_input_keeps_types_and_literals)
{
    const model_info *m = provider_model_find("flux-kontext-pro");
    gen_record g = record(false);
    assert_json(provider_template_render(m->input, &g, m),
                "{\"prompt\": \"A studio shot.\", \"input_image\": \"https://x/p1.jpg\","
                " \"aspect_ratio\": \"4:5\", \"seed\": 12345, \"output_format\": \"png\","
                " \"safety_tolerance\": 2}");
    gen_record_free(&g);
}

Test(catalog, tryon_input_maps_garment_and_person)
{
    const model_info *m = provider_model_find("idm-vton");
    gen_record g = record(true);
    g.custom_prompt = xstrdup("red wool jumper");
    json_t *out = provider_template_render(m->input, &g, m);
    cr_assert_str_eq(json_string_value(json_object_get(out, "garm_img")), "https://x/p1.jpg");
    cr_assert_str_eq(json_string_value(json_object_get(out, "human_img")), "https://x/m1.jpg");
    cr_assert_str_eq(json_string_value(json_object_get(out, "garment_des")), "red wool jumper");
    cr_assert_str_eq(json_string_value(json_object_get(out, "category")), "upper_body");
    cr_assert(json_is_integer(json_object_get(out, "seed")));
    json_decref(out);
    free(g.custom_prompt);
    g.custom_prompt = NULL;
    out = provider_template_render(m->input, &g, m);
    cr_assert_null(json_object_get(out, "garment_des"), "no custom prompt: the key is left out");
    json_decref(out);
    gen_record_free(&g);
}

Test(catalog, interpolation_escapes_absent_values_and_nesting)
{
    const model_info *m = provider_model_find("local-studio"); /* 5 product, 3 model images */
    gen_record g = record(false);
    assert_json(render("{\"t\": \"{style} look, {quality} quality, seed {parameters.seed}\","
                       " \"g\": \"{parameters.guidance_scale}\", \"s\": \"{parameters.strength}\","
                       " \"n\": \"{parameters.num_inference_steps}\", \"o\": \"{outputs}\","
                       " \"lit\": \"{{not a placeholder}}\", \"m\": \"{modelImages[0]}\","
                       " \"mtext\": \"model: {modelImages[0]}.\", \"c\": \"{customPrompt}\","
                       " \"all\": \"{productImages}\", \"none\": \"{modelImages}\","
                       " \"list\": [\"{productImages[1]}\", \"{modelImages[2]}\", 3, null],"
                       " \"deep\": {\"r\": \"{aspectRatio}\", \"b\": true, \"x\": 1.25}}",
                       &g, m),
                "{\"t\": \"minimal look, high quality, seed 12345\", \"g\": 7.5, \"s\": 0.8,"
                " \"n\": 40, \"o\": 2, \"lit\": \"{not a placeholder}\", \"mtext\": \"model: .\","
                " \"all\": [\"https://x/p1.jpg\", \"https://x/p2.jpg\"], \"none\": [],"
                " \"list\": [\"https://x/p2.jpg\", 3, null],"
                " \"deep\": {\"r\": \"4:5\", \"b\": true, \"x\": 1.25}}");
    gen_record_free(&g);
}

Test(catalog, check_rejects_what_render_could_not_honour)
{
    const model_info *m = provider_model_find("flux-kontext-pro"); /* 1 product, 0 model images */
    const char *bad[] = {
        "{\"a\": \"{nope}\"}",
        "{\"a\": \"{parameters}\"}",
        "{\"a\": \"{productImages[1]}\"}",
        "{\"a\": \"{modelImages[0]}\"}",
        "{\"a\": \"{productImages[x]}\"}",
        "{\"a\": \"{prompt[0]}\"}",
        "{\"a\": \"{prompt\"}",
        "{\"a\": \"prompt}\"}",
        "{\"a\": [\"ok\", {\"b\": \"{productImages} and more\"}]}",
    };
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        json_t *t = json_loads(bad[i], 0, NULL);
        cr_assert_not_null(t, "%s", bad[i]);
        char *err = NULL;
        cr_assert_eq(provider_template_check(t, m, &err), -1, "accepted %s", bad[i]);
        cr_assert(str_has_prefix(err, "input."), "%s: %s", bad[i], err);
        free(err);
        json_decref(t);
    }
}

/* ---- credentials and availability ---- */

Test(catalog, availability_follows_the_credentials)
{
    const char *secret = "sk-test-DO-NOT-LEAK-123";
    unsetenv("OPENAI_API_KEY");
    unsetenv("REPLICATE_API_TOKEN");
    setenv("REPLICATE_WEBHOOK_SECRET", "", 1); /* empty counts as unset */
    provider_secrets_load();
    cr_assert_null(provider_secret(PROVIDER_SECRET_OPENAI));
    cr_assert_null(provider_secret(PROVIDER_SECRET_REPLICATE_WEBHOOK));

    const char *why = NULL;
    const model_info *local = provider_model_find("local-studio");
    cr_assert(provider_model_available(local, &why));
    cr_assert_null(why);
    cr_assert_eq(provider_for(local), &provider_local_ops);

    const model_info *gpt = provider_model_find("gpt-image-1");
    cr_assert_not(provider_model_available(gpt, &why));
    cr_assert_str_eq(why, "OPENAI_API_KEY is not set on this server");
    const model_info *flux = provider_model_find("flux-kontext-pro");
    cr_assert_not(provider_model_available(flux, &why));
    cr_assert_str_eq(why, "REPLICATE_API_TOKEN is not set on this server");

    /* With the credentials: available, run by their adapters. */
    setenv("OPENAI_API_KEY", secret, 1);
    setenv("REPLICATE_API_TOKEN", secret, 1);
    provider_secrets_load();
    cr_assert_str_eq(provider_secret(PROVIDER_SECRET_OPENAI), secret);
    unsetenv("OPENAI_API_KEY"); /* read once: the copy stays */
    cr_assert_str_eq(provider_secret(PROVIDER_SECRET_OPENAI), secret);
    cr_assert(provider_model_available(gpt, &why));
    cr_assert_eq(provider_for(gpt), &provider_openai_ops);
    cr_assert(provider_model_available(flux, &why));
    cr_assert_eq(provider_for(flux), &provider_replicate_ops);
    unsetenv("REPLICATE_API_TOKEN");
    provider_secrets_load();

    cr_assert_not(provider_model_available(NULL, &why));
    cr_assert_str_eq(why, "unknown model");
}
