/*
 * Unit tests: create-body validation (gen_request_parse) and cost (gen_cost).
 * Models come from the real provider table; limits are read from it.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "generation.h"
#include "ids.h"
#include "provider.h"
#include "util.h"

static void setup(void)
{
    cr_assert_eq(ids_init(), 0);
}

TestSuite(generation, .init = setup);

#define IMG "https://cdn.example.com/p/1.jpg"

/* A valid body with one field replaced (or removed when value is NULL).
 * `key` may be "parameters.x" to touch a parameter. */
static json_t *body_with(const char *key, json_t *value)
{
    json_t *b =
        json_pack("{s:[s], s:s, s:s, s:s, s:s}", "productImages", IMG, "model", "local-studio",
                  "style", "realistic", "quality", "auto", "aspectRatio", "1:1");
    if (!key) return b;
    if (strncmp(key, "parameters.", 11) == 0) {
        json_t *p = json_object();
        if (value) json_object_set_new(p, key + 11, value);
        json_object_set_new(b, "parameters", p);
    } else if (value) {
        json_object_set_new(b, key, value);
    } else {
        json_object_del(b, key);
    }
    return b;
}

typedef struct result {
    int rc;
    gen_request req;
    json_t *errors;
    char *message;
} result;

static result run(json_t *body, bool pro)
{
    result r;
    r.rc = gen_request_parse(body, pro, &r.req, &r.errors, &r.message);
    json_decref(body);
    return r;
}

static result run_str(const char *json, bool pro)
{
    json_error_t e;
    json_t *b = json_loads(json, JSON_DECODE_ANY, &e);
    cr_assert(b, "bad test JSON: %s", e.text);
    return run(b, pro);
}

static void done(result *r)
{
    gen_request_free(&r->req);
    json_decref(r->errors);
    free(r->message);
}

/* The message for `field`, or NULL. */
static const char *error_for(const result *r, const char *field)
{
    size_t i;
    json_t *e;
    json_array_foreach(r->errors, i, e)
    {
        if (str_eq(json_string_value(json_object_get(e, "field")), field))
            return json_string_value(json_object_get(e, "message"));
    }
    return NULL;
}

/* Exactly one error, on `field`, whose message contains `part`. */
static void expect_only_error(result *r, const char *field, const char *part)
{
    cr_assert_eq(r->rc, GEN_EINVALID, "rc %d for %s", r->rc, field);
    cr_assert_null(r->message);
    cr_assert_eq(json_array_size(r->errors), 1, "%zu errors: %s", json_array_size(r->errors),
                 json_dumps(r->errors, 0));
    const char *m = error_for(r, field);
    cr_assert(m, "no error for %s: %s", field, json_dumps(r->errors, 0));
    cr_assert(strstr(m, part), "message for %s is '%s', wanted '%s'", field, m, part);
    cr_assert_null(r->req.product_images, "out must stay empty on error");
}

static void expect_ok(result *r)
{
    cr_assert_eq(r->rc, 0, "rc %d errors %s message %s", r->rc,
                 r->errors ? json_dumps(r->errors, 0) : "-", r->message ? r->message : "-");
    cr_assert_null(r->errors);
    cr_assert_null(r->message);
}

static json_t *urls(int n)
{
    json_t *a = json_array();
    for (int i = 0; i < n; i++) {
        char u[64];
        snprintf(u, sizeof u, "https://cdn.example.com/p/%d.jpg", i);
        json_array_append_new(a, json_string(u));
    }
    return a;
}

/* ---- success and defaults ---- */

Test(generation, minimal_body_fills_defaults)
{
    result r = run(body_with(NULL, NULL), false);
    expect_ok(&r);
    cr_assert_str_eq(r.req.params.model, "local-studio");
    cr_assert_str_eq(r.req.params.style, "realistic");
    cr_assert_str_eq(r.req.params.quality, "auto");
    cr_assert_str_eq(r.req.params.aspect_ratio, "1:1");
    cr_assert_float_eq(r.req.params.guidance_scale, 7.5, 1e-9);
    cr_assert_eq(r.req.params.num_inference_steps, 50);
    cr_assert_float_eq(r.req.params.strength, 0.8, 1e-9);
    cr_assert(r.req.params.seed >= 0 && r.req.params.seed <= 2147483647);
    cr_assert_eq(r.req.priority, PRIORITY_NORMAL);
    cr_assert_null(r.req.custom_prompt);
    cr_assert_eq(json_array_size(r.req.product_images), 1);
    cr_assert_str_eq(json_string_value(json_array_get(r.req.product_images, 0)), IMG);
    cr_assert(json_is_array(r.req.model_images));
    cr_assert_eq(json_array_size(r.req.model_images), 0);
    done(&r);
}

Test(generation, random_seed_varies)
{
    int64_t first = -1;
    bool differs = false;
    for (int i = 0; i < 8 && !differs; i++) {
        result r = run(body_with(NULL, NULL), false);
        expect_ok(&r);
        if (first < 0)
            first = r.req.params.seed;
        else if (r.req.params.seed != first)
            differs = true;
        done(&r);
    }
    cr_assert(differs, "eight random seeds were all %lld", (long long)first);
}

Test(generation, full_body_is_copied)
{
    result r =
        run_str("{\"productImages\":[\"https://a.example/1.jpg\",\"http://b.example/2.png\"],"
                "\"modelImages\":[\"https://m.example/m.webp\"],\"model\":\"local-studio\","
                "\"style\":\"minimal\",\"quality\":\"high\",\"aspectRatio\":\"4:5\","
                "\"customPrompt\":\"  red scarf  \",\"parameters\":{\"guidance_scale\":12,"
                "\"num_inference_steps\":30,\"strength\":0.5,\"seed\":42},"
                "\"priority\":\"normal\",\"somethingElse\":{\"x\":1}}",
                false);
    expect_ok(&r);
    cr_assert_eq(json_array_size(r.req.product_images), 2);
    cr_assert_eq(json_array_size(r.req.model_images), 1);
    cr_assert_str_eq(json_string_value(json_array_get(r.req.model_images, 0)),
                     "https://m.example/m.webp");
    cr_assert_str_eq(r.req.params.style, "minimal");
    cr_assert_str_eq(r.req.params.quality, "high");
    cr_assert_str_eq(r.req.params.aspect_ratio, "4:5");
    cr_assert_str_eq(r.req.custom_prompt, "red scarf");
    cr_assert_float_eq(r.req.params.guidance_scale, 12.0, 1e-9);
    cr_assert_eq(r.req.params.num_inference_steps, 30);
    cr_assert_float_eq(r.req.params.strength, 0.5, 1e-9);
    cr_assert_eq(r.req.params.seed, 42);
    done(&r);
}

Test(generation, output_does_not_share_the_body)
{
    json_t *b = body_with(NULL, NULL);
    gen_request req;
    json_t *errs;
    char *msg;
    cr_assert_eq(gen_request_parse(b, false, &req, &errs, &msg), 0);
    json_decref(b);
    cr_assert_str_eq(json_string_value(json_array_get(req.product_images, 0)), IMG);
    gen_request_free(&req);
    cr_assert_null(req.product_images);
}

Test(generation, null_optional_fields_are_absent)
{
    result r = run_str("{\"productImages\":[\"" IMG "\"],\"model\":\"local-studio\","
                       "\"style\":\"artistic\",\"quality\":\"low\",\"aspectRatio\":\"16:9\","
                       "\"modelImages\":null,\"customPrompt\":null,\"parameters\":null,"
                       "\"priority\":null}",
                       false);
    expect_ok(&r);
    cr_assert_eq(json_array_size(r.req.model_images), 0);
    cr_assert_null(r.req.custom_prompt);
    cr_assert_eq(r.req.priority, PRIORITY_NORMAL);
    done(&r);

    r = run_str("{\"productImages\":[\"" IMG "\"],\"model\":\"local-studio\","
                "\"style\":\"artistic\",\"quality\":\"low\",\"aspectRatio\":\"16:9\","
                "\"parameters\":{\"guidance_scale\":null,\"num_inference_steps\":null,"
                "\"strength\":null,\"seed\":null}}",
                false);
    expect_ok(&r);
    cr_assert_float_eq(r.req.params.guidance_scale, 7.5, 1e-9);
    cr_assert_eq(r.req.params.num_inference_steps, 50);
    done(&r);
}

/* ---- the body itself ---- */

Test(generation, body_must_be_an_object)
{
    const char *bodies[] = {"[]", "\"x\"", "42", "null", "true"};
    for (size_t i = 0; i < ARRAY_LEN(bodies); i++) {
        result r = run_str(bodies[i], false);
        expect_only_error(&r, "body", "must be a JSON object");
        done(&r);
    }
    gen_request req;
    json_t *errs;
    char *msg;
    cr_assert_eq(gen_request_parse(NULL, false, &req, &errs, &msg), GEN_EINVALID);
    cr_assert_eq(json_array_size(errs), 1);
    json_decref(errs);
}

/* ---- productImages / modelImages ---- */

Test(generation, product_images_required)
{
    result r = run(body_with("productImages", NULL), false);
    expect_only_error(&r, "productImages", "is required");
    done(&r);
    r = run(body_with("productImages", json_null()), false);
    expect_only_error(&r, "productImages", "is required");
    done(&r);
}

Test(generation, product_images_must_be_array)
{
    result r = run(body_with("productImages", json_string(IMG)), false);
    expect_only_error(&r, "productImages", "must be an array of 1 to 5 image URLs");
    done(&r);
}

Test(generation, product_images_count)
{
    result r = run(body_with("productImages", json_array()), false);
    expect_only_error(&r, "productImages", "must contain 1 to 5 image URLs (got 0)");
    done(&r);
    r = run(body_with("productImages", urls(6)), false);
    expect_only_error(&r, "productImages", "must contain 1 to 5 image URLs (got 6)");
    done(&r);
    r = run(body_with("productImages", urls(5)), false);
    expect_ok(&r);
    cr_assert_eq(json_array_size(r.req.product_images), 5);
    done(&r);
}

Test(generation, model_images_count)
{
    result r = run(body_with("modelImages", urls(4)), false);
    expect_only_error(&r, "modelImages", "must contain at most 3 image URLs (got 4)");
    done(&r);
    r = run(body_with("modelImages", urls(3)), false);
    expect_ok(&r);
    done(&r);
    r = run(body_with("modelImages", json_array()), false);
    expect_ok(&r);
    done(&r);
    r = run(body_with("modelImages", json_object()), false);
    expect_only_error(&r, "modelImages", "must be an array of 0 to 3 image URLs");
    done(&r);
}

/* Every known model's own limits bound the counts. */
Test(generation, limits_follow_the_model)
{
    const model_info *list;
    size_t n = provider_models(&list);
    cr_assert(n > 0);
    for (size_t i = 0; i < n; i++) {
        const model_info *m = &list[i];
        char want[96];
        json_t *b = body_with("productImages", urls(m->max_product_images + 1));
        json_object_set_new(b, "model", json_string(m->id));
        if (m->min_model_images > 0)
            json_object_set_new(b, "modelImages", urls(m->min_model_images));
        result r = run(b, false);
        snprintf(want, sizeof want, "must contain 1 to %d image URLs (got %d)",
                 m->max_product_images, m->max_product_images + 1);
        expect_only_error(&r, "productImages", want);
        done(&r);

        b = body_with("modelImages", urls(m->max_model_images + 1));
        json_object_set_new(b, "model", json_string(m->id));
        r = run(b, false);
        if (m->max_model_images == 0)
            snprintf(want, sizeof want, "must be empty: this model takes no model images (got 1)");
        else if (m->min_model_images > 0)
            snprintf(want, sizeof want, "must contain %d to %d image URLs (got %d)",
                     m->min_model_images, m->max_model_images, m->max_model_images + 1);
        else
            snprintf(want, sizeof want, "must contain at most %d image URLs (got %d)",
                     m->max_model_images, m->max_model_images + 1);
        expect_only_error(&r, "modelImages", want);
        done(&r);
    }
}

/* A try-on needs the person: minModelImages in the catalogue. */
Test(generation, tryon_model_requires_a_model_image)
{
    const model_info *m = provider_model_find("idm-vton");
    cr_assert_not_null(m);
    cr_assert_eq(m->min_model_images, 1);
    json_t *b = body_with(NULL, NULL);
    json_object_set_new(b, "model", json_string("idm-vton"));
    result r = run(b, false);
    expect_only_error(&r, "modelImages",
                      "is required by this model: an array of 1 to 1 image URLs");
    done(&r);
    b = body_with("modelImages", json_array());
    json_object_set_new(b, "model", json_string("idm-vton"));
    r = run(b, false);
    expect_only_error(&r, "modelImages", "must contain 1 to 1 image URLs (got 0)");
    done(&r);
    /* With the person it passes validation; the model is unavailable here
     * (no credentials), which is MODEL_ERROR, not a validation error. */
    b = body_with("modelImages", urls(1));
    json_object_set_new(b, "model", json_string("idm-vton"));
    r = run(b, false);
    cr_assert_eq(r.rc, GEN_EMODEL);
    done(&r);
}

Test(generation, image_url_element_errors)
{
    char long_url[2100];
    strcpy(long_url, "https://cdn.example.com/");
    size_t l = strlen(long_url);
    memset(long_url + l, 'a', 2049 - l);
    long_url[2049] = '\0';

    struct {
        json_t *value;
        const char *part;
    } cases[] = {
        {json_integer(3), "must be a string"},
        {json_true(), "must be a string"},
        {json_null(), "must be a string"},
        {json_string(""), "must not be empty"},
        {json_string("ftp://cdn.example.com/a.jpg"), "must be an http:// or https:// URL"},
        {json_string("cdn.example.com/a.jpg"), "must be an http:// or https:// URL"},
        {json_string("javascript:alert(1)"), "must be an http:// or https:// URL"},
        {json_string("data:image/png;base64,AAAA"), "must be an http:// or https:// URL"},
        {json_string("http:///a.jpg"), "must include a host"},
        {json_string("https://"), "must include a host"},
        {json_string("https://user@/a.jpg"), "must include a host"},
        {json_string("https://:8080/a.jpg"), "must include a host"},
        {json_string("https://[]/a.jpg"), "must include a host"},
        {json_string("https://cdn.example.com/a b.jpg"), "must not contain spaces"},
        {json_string("https://cdn.example.com/a\n.jpg"), "control characters"},
        {json_string(long_url), "must be at most 2048 characters"},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        json_t *a = urls(2);
        json_array_append_new(a, cases[i].value);
        result r = run(body_with("productImages", a), false);
        expect_only_error(&r, "productImages[2]", cases[i].part);
        done(&r);
    }

    json_t *m = json_array();
    json_array_append_new(m, json_string("file:///etc/passwd"));
    result r = run(body_with("modelImages", m), false);
    expect_only_error(&r, "modelImages[0]", "must be an http:// or https:// URL");
    done(&r);
}

Test(generation, image_url_shapes_accepted)
{
    char max_url[2100];
    strcpy(max_url, "https://cdn.example.com/");
    size_t l = strlen(max_url);
    memset(max_url + l, 'a', 2048 - l);
    max_url[2048] = '\0';
    const char *ok[] = {
        "HTTPS://CDN.Example.com/A.jpg",
        "http://cdn.example.com:8080/a.jpg?x=1#y",
        "https://user:pw@cdn.example.com/a.jpg",
        "http://[::1]:8080/a.png",
        "http://127.0.0.1/a.png", /* shape only; address rules are media.c's */
        "https://cdn.example.com",
        max_url,
    };
    for (size_t i = 0; i < ARRAY_LEN(ok); i++) {
        json_t *a = json_array();
        json_array_append_new(a, json_string(ok[i]));
        result r = run(body_with("productImages", a), false);
        expect_ok(&r);
        cr_assert_str_eq(json_string_value(json_array_get(r.req.product_images, 0)), ok[i]);
        done(&r);
    }
}

Test(generation, every_bad_element_is_listed)
{
    json_t *a = json_pack("[s, i, s, s]", IMG, 5, "ftp://x/y", IMG);
    result r = run(body_with("productImages", a), false);
    cr_assert_eq(r.rc, GEN_EINVALID);
    cr_assert_eq(json_array_size(r.errors), 2);
    cr_assert(error_for(&r, "productImages[1]"));
    cr_assert(error_for(&r, "productImages[2]"));
    done(&r);
}

/* ---- model ---- */

Test(generation, model_required_is_a_validation_error)
{
    result r = run(body_with("model", NULL), false);
    expect_only_error(&r, "model", "is required");
    done(&r);
    r = run(body_with("model", json_integer(1)), false);
    expect_only_error(&r, "model", "must be a string");
    done(&r);
    r = run(body_with("model", json_string("")), false);
    expect_only_error(&r, "model", "must not be empty");
    done(&r);
}

Test(generation, unknown_model_is_a_model_error)
{
    result r = run(body_with("model", json_string("dall-e-9")), false);
    cr_assert_eq(r.rc, GEN_EMODEL);
    cr_assert_null(r.errors);
    cr_assert_str_eq(r.message, "unknown model 'dall-e-9'");
    cr_assert_null(r.req.product_images);
    done(&r);
}

Test(generation, long_unknown_model_is_shortened_in_the_message)
{
    char id[300];
    memset(id, 'x', 299);
    id[299] = '\0';
    result r = run(body_with("model", json_string(id)), false);
    cr_assert_eq(r.rc, GEN_EMODEL);
    cr_assert(strlen(r.message) < 100, "%s", r.message);
    cr_assert(strstr(r.message, "...'"));
    done(&r);
}

Test(generation, validation_errors_win_over_model_errors)
{
    json_t *b = body_with("model", json_string("dall-e-9"));
    json_object_set_new(b, "style", json_string("baroque"));
    result r = run(b, false);
    expect_only_error(&r, "style", "must be one of realistic, artistic, minimal");
    done(&r);
}

Test(generation, unavailable_model_is_a_model_error_with_the_reason)
{
    const model_info *list;
    size_t n = provider_models(&list);
    const model_info *off = NULL;
    const char *why = NULL;
    for (size_t i = 0; i < n && !off; i++)
        if (!provider_model_available(&list[i], &why)) off = &list[i];
    if (!off) cr_skip_test("every model is available in this build");
    result r = run(body_with("model", json_string(off->id)), false);
    cr_assert_eq(r.rc, GEN_EMODEL);
    cr_assert_null(r.errors);
    if (why && *why)
        cr_assert_str_eq(r.message, why);
    else
        cr_assert(strstr(r.message, off->id));
    done(&r);
}

/* ---- style, quality, aspectRatio ---- */

Test(generation, enums_accept_every_allowed_value)
{
    const char *styles[] = {"realistic", "artistic", "minimal"};
    const char *qualities[] = {"auto", "high", "medium", "low"};
    const char *ratios[] = {"1:1", "16:9", "9:16", "3:2", "2:3", "4:3", "3:4", "4:5"};
    for (size_t i = 0; i < ARRAY_LEN(styles); i++) {
        result r = run(body_with("style", json_string(styles[i])), false);
        expect_ok(&r);
        cr_assert_str_eq(r.req.params.style, styles[i]);
        done(&r);
    }
    for (size_t i = 0; i < ARRAY_LEN(qualities); i++) {
        result r = run(body_with("quality", json_string(qualities[i])), false);
        expect_ok(&r);
        cr_assert_str_eq(r.req.params.quality, qualities[i]);
        done(&r);
    }
    for (size_t i = 0; i < ARRAY_LEN(ratios); i++) {
        result r = run(body_with("aspectRatio", json_string(ratios[i])), false);
        expect_ok(&r);
        cr_assert_str_eq(r.req.params.aspect_ratio, ratios[i]);
        done(&r);
    }
}

Test(generation, enum_errors_name_the_allowed_values)
{
    struct {
        const char *field, *list;
    } f[] = {
        {"style", "realistic, artistic, minimal"},
        {"quality", "auto, high, medium, low"},
        {"aspectRatio", "1:1, 16:9, 9:16, 3:2, 2:3, 4:3, 3:4, 4:5"},
    };
    for (size_t i = 0; i < ARRAY_LEN(f); i++) {
        char want[128];
        result r = run(body_with(f[i].field, NULL), false);
        snprintf(want, sizeof want, "is required: one of %s", f[i].list);
        expect_only_error(&r, f[i].field, want);
        done(&r);

        r = run(body_with(f[i].field, json_integer(1)), false);
        snprintf(want, sizeof want, "must be a string: one of %s", f[i].list);
        expect_only_error(&r, f[i].field, want);
        done(&r);

        r = run(body_with(f[i].field, json_string("Realistic")), false);
        snprintf(want, sizeof want, "must be one of %s", f[i].list);
        expect_only_error(&r, f[i].field, want);
        done(&r);

        r = run(body_with(f[i].field, json_null()), false);
        snprintf(want, sizeof want, "must be a string: one of %s", f[i].list);
        expect_only_error(&r, f[i].field, want);
        done(&r);
    }
    result r = run(body_with("aspectRatio", json_string("21:9")), false);
    expect_only_error(&r, "aspectRatio", "must be one of 1:1, 16:9");
    done(&r);
}

/* ---- customPrompt ---- */

static json_t *repeat(const char *unit, int n)
{
    buf b = {0};
    for (int i = 0; i < n; i++)
        buf_append(&b, unit, strlen(unit));
    json_t *s = json_string(b.data);
    buf_free(&b);
    return s;
}

Test(generation, custom_prompt_counts_code_points)
{
    result r = run(body_with("customPrompt", repeat("a", 500)), false);
    expect_ok(&r);
    cr_assert_eq(strlen(r.req.custom_prompt), 500);
    done(&r);

    r = run(body_with("customPrompt", repeat("a", 501)), false);
    expect_only_error(&r, "customPrompt", "must be at most 500 characters (got 501)");
    done(&r);

    /* 500 × "é" is 1000 bytes but 500 characters. */
    r = run(body_with("customPrompt", repeat("\xc3\xa9", 500)), false);
    expect_ok(&r);
    cr_assert_eq(strlen(r.req.custom_prompt), 1000);
    done(&r);

    r = run(body_with("customPrompt", repeat("\xc3\xa9", 501)), false);
    expect_only_error(&r, "customPrompt", "at most 500 characters (got 501)");
    done(&r);

    /* 4-byte code points (emoji). */
    r = run(body_with("customPrompt", repeat("\xf0\x9f\x91\x97", 500)), false);
    expect_ok(&r);
    done(&r);
    r = run(body_with("customPrompt", repeat("\xf0\x9f\x91\x97", 501)), false);
    expect_only_error(&r, "customPrompt", "(got 501)");
    done(&r);
}

Test(generation, custom_prompt_blank_is_absent_and_trimmed)
{
    const char *blank[] = {"", "   ", "\n\t  \r\n"};
    for (size_t i = 0; i < ARRAY_LEN(blank); i++) {
        result r = run(body_with("customPrompt", json_string(blank[i])), false);
        expect_ok(&r);
        cr_assert_null(r.req.custom_prompt);
        done(&r);
    }
    result r = run(body_with("customPrompt", json_string("\n  silk scarf, outdoors \t")), false);
    expect_ok(&r);
    cr_assert_str_eq(r.req.custom_prompt, "silk scarf, outdoors");
    done(&r);

    /* Surrounding whitespace does not count toward the limit. */
    json_t *s = repeat("a", 500);
    char *padded = xasprintf("   %s   ", json_string_value(s));
    json_decref(s);
    r = run(body_with("customPrompt", json_string(padded)), false);
    free(padded);
    expect_ok(&r);
    done(&r);
}

Test(generation, custom_prompt_must_be_a_string)
{
    result r = run(body_with("customPrompt", json_integer(5)), false);
    expect_only_error(&r, "customPrompt", "must be a string");
    done(&r);
    r = run(body_with("customPrompt", json_pack("[s]", "x")), false);
    expect_only_error(&r, "customPrompt", "must be a string");
    done(&r);
}

/* ---- parameters ---- */

Test(generation, parameters_must_be_an_object)
{
    result r = run(body_with("parameters", json_array()), false);
    expect_only_error(&r, "parameters", "must be an object");
    done(&r);
    r = run(body_with("parameters", json_string("x")), false);
    expect_only_error(&r, "parameters", "must be an object");
    done(&r);
}

Test(generation, guidance_scale)
{
    double ok[] = {1, 7.5, 20, 13.25};
    for (size_t i = 0; i < ARRAY_LEN(ok); i++) {
        result r = run(body_with("parameters.guidance_scale", json_real(ok[i])), false);
        expect_ok(&r);
        cr_assert_float_eq(r.req.params.guidance_scale, ok[i], 1e-9);
        done(&r);
    }
    result r = run(body_with("parameters.guidance_scale", json_integer(12)), false);
    expect_ok(&r);
    cr_assert_float_eq(r.req.params.guidance_scale, 12.0, 1e-9);
    done(&r);

    json_t *bad[] = {json_real(0.99), json_real(20.01), json_integer(0),    json_integer(-3),
                     json_true(),     json_false(),     json_string("7.5"), json_array()};
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        r = run(body_with("parameters.guidance_scale", bad[i]), false);
        expect_only_error(&r, "parameters.guidance_scale", "must be a number from 1 to 20");
        done(&r);
    }
}

Test(generation, num_inference_steps)
{
    result r = run(body_with("parameters.num_inference_steps", json_integer(20)), false);
    expect_ok(&r);
    cr_assert_eq(r.req.params.num_inference_steps, 20);
    done(&r);
    r = run(body_with("parameters.num_inference_steps", json_integer(100)), false);
    expect_ok(&r);
    cr_assert_eq(r.req.params.num_inference_steps, 100);
    done(&r);
    /* Integer literals only: an integral real (30.0, 3e1) is refused, and so
     * is one that underflows to 0.0 (1e-400) — it must not be stored as 0. */
    const char *reals[] = {"{\"num_inference_steps\":30.0}", "{\"num_inference_steps\":3e1}",
                           "{\"seed\":1e-400}", "{\"seed\":0.0}"};
    for (size_t i = 0; i < ARRAY_LEN(reals); i++) {
        char *text = xasprintf("{\"productImages\":[\"" IMG
                               "\"],\"model\":\"local-studio\",\"style\":\"realistic\","
                               "\"quality\":\"auto\",\"aspectRatio\":\"1:1\",\"parameters\":%s}",
                               reals[i]);
        r = run_str(text, false);
        free(text);
        cr_assert_eq(r.rc, GEN_EINVALID, "%s must be refused", reals[i]);
        done(&r);
    }

    json_t *bad[] = {json_integer(19), json_integer(101), json_real(50.5),   json_real(19.0),
                     json_true(),      json_string("50"), json_integer(-50), json_real(1e300)};
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        r = run(body_with("parameters.num_inference_steps", bad[i]), false);
        expect_only_error(&r, "parameters.num_inference_steps",
                          "must be an integer from 20 to 100");
        done(&r);
    }
}

Test(generation, strength)
{
    double ok[] = {0.1, 0.8, 1.0, 0.55};
    for (size_t i = 0; i < ARRAY_LEN(ok); i++) {
        result r = run(body_with("parameters.strength", json_real(ok[i])), false);
        expect_ok(&r);
        cr_assert_float_eq(r.req.params.strength, ok[i], 1e-9);
        done(&r);
    }
    result r = run(body_with("parameters.strength", json_integer(1)), false);
    expect_ok(&r);
    done(&r);
    json_t *bad[] = {json_real(0.09), json_real(1.01), json_integer(0),
                     json_integer(2), json_false(),    json_string("0.5")};
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        r = run(body_with("parameters.strength", bad[i]), false);
        expect_only_error(&r, "parameters.strength", "must be a number from 0.1 to 1");
        done(&r);
    }
}

Test(generation, seed)
{
    json_int_t ok[] = {0, 1, 42, 2147483647};
    for (size_t i = 0; i < ARRAY_LEN(ok); i++) {
        result r = run(body_with("parameters.seed", json_integer(ok[i])), false);
        expect_ok(&r);
        cr_assert_eq(r.req.params.seed, (int64_t)ok[i]);
        done(&r);
    }
    result r;
    json_t *bad[] = {json_integer(-1),  json_integer(2147483648LL),
                     json_real(1.5),    json_real(-0.5),
                     json_real(1234.0), json_real(0.0),
                     json_real(3e9),    json_true(),
                     json_string("42")};
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        r = run(body_with("parameters.seed", bad[i]), false);
        expect_only_error(&r, "parameters.seed", "must be an integer from 0 to 2147483647");
        done(&r);
    }
}

Test(generation, unknown_parameters_are_ignored)
{
    result r = run(body_with("parameters.negative_prompt", json_string("blurry")), false);
    expect_ok(&r);
    done(&r);
}

/* ---- priority ---- */

Test(generation, priority_high_needs_pro)
{
    result r = run(body_with("priority", json_string("high")), false);
    expect_only_error(&r, "priority", "high priority requires the pro plan");
    done(&r);

    r = run(body_with("priority", json_string("high")), true);
    expect_ok(&r);
    cr_assert_eq(r.req.priority, PRIORITY_HIGH);
    done(&r);

    r = run(body_with("priority", json_string("normal")), false);
    expect_ok(&r);
    cr_assert_eq(r.req.priority, PRIORITY_NORMAL);
    done(&r);

    r = run(body_with(NULL, NULL), true);
    expect_ok(&r);
    cr_assert_eq(r.req.priority, PRIORITY_NORMAL);
    done(&r);
}

Test(generation, priority_values)
{
    result r = run(body_with("priority", json_string("urgent")), true);
    expect_only_error(&r, "priority", "must be one of normal, high");
    done(&r);
    r = run(body_with("priority", json_integer(1)), true);
    expect_only_error(&r, "priority", "must be a string: one of normal, high");
    done(&r);
}

/* ---- everything at once ---- */

Test(generation, all_broken_fields_are_listed_together)
{
    result r = run_str("{\"productImages\":[\"ftp://x/1.jpg\", 7],"
                       "\"modelImages\":\"nope\",\"style\":\"baroque\",\"quality\":\"ultra\","
                       "\"aspectRatio\":5,\"customPrompt\":false,"
                       "\"parameters\":{\"guidance_scale\":0,\"num_inference_steps\":7.5,"
                       "\"strength\":true,\"seed\":-4},\"priority\":\"high\"}",
                       false);
    cr_assert_eq(r.rc, GEN_EINVALID);
    cr_assert_null(r.message);
    const char *fields[] = {"model",
                            "productImages[0]",
                            "productImages[1]",
                            "modelImages",
                            "style",
                            "quality",
                            "aspectRatio",
                            "customPrompt",
                            "parameters.guidance_scale",
                            "parameters.num_inference_steps",
                            "parameters.strength",
                            "parameters.seed",
                            "priority"};
    cr_assert_eq(json_array_size(r.errors), ARRAY_LEN(fields), "%s", json_dumps(r.errors, 0));
    for (size_t i = 0; i < ARRAY_LEN(fields); i++)
        cr_assert(error_for(&r, fields[i]), "no error for %s", fields[i]);
    /* Every entry has exactly field and message, both non-empty strings. */
    size_t i;
    json_t *e;
    json_array_foreach(r.errors, i, e)
    {
        cr_assert_eq(json_object_size(e), 2);
        cr_assert(json_string_length(json_object_get(e, "field")) > 0);
        cr_assert(json_string_length(json_object_get(e, "message")) > 0);
    }
    done(&r);
}

Test(generation, empty_object_lists_every_required_field)
{
    result r = run_str("{}", false);
    cr_assert_eq(r.rc, GEN_EINVALID);
    const char *fields[] = {"productImages", "model", "style", "quality", "aspectRatio"};
    cr_assert_eq(json_array_size(r.errors), ARRAY_LEN(fields), "%s", json_dumps(r.errors, 0));
    for (size_t i = 0; i < ARRAY_LEN(fields); i++)
        cr_assert(error_for(&r, fields[i]), "no error for %s", fields[i]);
    done(&r);
}

/* ---- cost ---- */

Test(generation, cost_table)
{
    cr_assert_eq(gen_cost(1, "auto"), 1);
    cr_assert_eq(gen_cost(1, "low"), 1);
    cr_assert_eq(gen_cost(1, "medium"), 1);
    cr_assert_eq(gen_cost(1, "high"), 2); /* ceil(1.5) */
    cr_assert_eq(gen_cost(2, "high"), 3);
    cr_assert_eq(gen_cost(3, "auto"), 3);
    cr_assert_eq(gen_cost(3, "low"), 3);
    cr_assert_eq(gen_cost(3, "medium"), 3);
    cr_assert_eq(gen_cost(3, "high"), 5); /* ceil(4.5) */
    cr_assert_eq(gen_cost(4, "high"), 6);
    cr_assert_eq(gen_cost(0, "high"), 0);
}

Test(generation, cost_of_each_model)
{
    const model_info *list;
    size_t n = provider_models(&list);
    for (size_t i = 0; i < n; i++) {
        int b = list[i].base_cost;
        cr_assert_eq(gen_cost(b, "auto"), b);
        cr_assert_eq(gen_cost(b, "high"), (b * 3 + 1) / 2);
    }
}
