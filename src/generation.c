/*
 * generation — validation of a create body and the cost of a generation
 * (SPEC §4, §3). The record type, its JSON and the state machine table live
 * in gen_record.c; the prompt in prompt.c.
 *
 * Rules of gen_request_parse, decided once here:
 *
 *  - Precedence. Every field is checked and every broken one is listed
 *    (GEN_EINVALID, VALIDATION_ERROR), a missing or non-string model
 *    included. Only a body with no broken field can get GEN_EMODEL
 *    (MODEL_ERROR): an unknown model, or a known one this server cannot run.
 *    A known model's max_product_images / max_model_images bound the image
 *    counts (even when it is unavailable); otherwise the SPEC defaults 5 / 3.
 *  - JSON null for an optional field (modelImages, customPrompt, parameters,
 *    parameters.*, priority) means absent. Unknown fields are ignored.
 *  - Numbers. Booleans are never numbers. guidance_scale and strength take
 *    any JSON number. num_inference_steps and seed take integer literals
 *    only (50, not 50.0, 5e1 or 7.5): a real is refused even when integral,
 *    because one that underflows (1e-400) decodes as 0.0 and would be
 *    stored as a value the client never sent.
 *  - customPrompt is trimmed of surrounding whitespace; empty after trimming
 *    means absent; the limit (500) counts Unicode code points of the trimmed
 *    text, not bytes.
 *  - Image URLs: shape only — http:// or https:// (scheme case-insensitive),
 *    ≤ 2048 bytes (URLs are ASCII; longer multibyte text fails either way),
 *    no whitespace or control characters, a non-empty host. Reachability and
 *    address rules are media.c's.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "generation.h"
#include "provider.h"
#include "util.h"

#define DEFAULT_MAX_PRODUCT_IMAGES 5
#define DEFAULT_MAX_MODEL_IMAGES 3
#define MAX_URL_LEN 2048
#define MAX_CUSTOM_PROMPT 500
#define SEED_MAX 2147483647LL

static const char *const styles[] = {"realistic", "artistic", "minimal"};
static const char *const qualities[] = {"auto", "high", "medium", "low"};
static const char *const backgrounds[] = {"auto", "transparent", "opaque"};
static const char *const output_formats[] = {"jpeg", "png", "webp"};
static const char *const ratios[] = {"1:1", "16:9", "9:16", "3:2", "2:3", "4:3", "3:4", "4:5"};
static const char *const priorities[] = {"normal", "high"};

/* ---- helpers ---- */

/* Bounds on the list, so a small body cannot buy a huge answer: at most
 * ELEMENT_ERRORS_MAX entries for the elements of one array (then one entry
 * that counts the rest) and ERRORS_MAX in all. */
#define ELEMENT_ERRORS_MAX 5
#define ERRORS_MAX 50

static void add_error(json_t *errors, const char *field, const char *message)
{
    if (json_array_size(errors) >= ERRORS_MAX) return;
    json_array_append_new(errors, json_pack("{s:s, s:s}", "field", field, "message", message));
}

static void add_errorf(json_t *errors, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void add_errorf(json_t *errors, const char *field, const char *fmt, ...)
{
    va_list ap;
    char *msg = NULL;
    va_start(ap, fmt);
    int n = vasprintf(&msg, fmt, ap);
    va_end(ap);
    if (n < 0) abort();
    add_error(errors, field, msg);
    free(msg);
}

/* "a, b, c" of a word list. Caller frees. */
static char *join_words(const char *const *words, size_t n)
{
    buf b = {0};
    for (size_t i = 0; i < n; i++) {
        if (i) buf_append(&b, ", ", 2);
        buf_append(&b, words[i], strlen(words[i]));
    }
    return b.data ? b.data : xstrdup("");
}

static int word_index(const char *s, const char *const *words, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(s, words[i]) == 0) return (int)i;
    return -1;
}

/* Unicode code points in valid UTF-8 (jansson guarantees validity). */
static size_t utf8_len(const char *s, size_t bytes)
{
    size_t n = 0;
    for (size_t i = 0; i < bytes; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80) n++;
    return n;
}

static bool is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* NULL when the URL has the right shape, else what is wrong with it. */
static const char *url_problem(const char *u, size_t len)
{
    if (len == 0) return "must not be empty; give an http:// or https:// image URL";
    if (len > MAX_URL_LEN) return "must be at most 2048 characters";
    size_t scheme;
    if (strncasecmp(u, "http://", 7) == 0)
        scheme = 7;
    else if (strncasecmp(u, "https://", 8) == 0)
        scheme = 8;
    else
        return "must be an http:// or https:// URL";
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)u[i];
        if (c <= 0x20 || c == 0x7F) return "must not contain spaces or control characters";
    }
    /* authority = up to the first '/', '?' or '#'; host = after userinfo,
     * before the port. */
    const char *auth = u + scheme;
    size_t alen = strcspn(auth, "/?#");
    const char *at = memrchr(auth, '@', alen);
    const char *host = at ? at + 1 : auth;
    size_t hlen = alen - (size_t)(host - auth);
    if (hlen > 0 && host[0] == '[') {
        const char *close = memchr(host, ']', hlen);
        if (!close || close == host + 1) return "must include a host";
        return NULL;
    }
    const char *colon = memchr(host, ':', hlen);
    if (colon) hlen = (size_t)(colon - host);
    if (hlen == 0) return "must include a host";
    return NULL;
}

/* Checks an image URL array; returns a new array of copies of its strings,
 * or NULL when the field is absent (and not required) or broken. */
static json_t *check_images(const json_t *body, const char *field, bool required, int min, int max,
                            json_t *errors)
{
    const json_t *v = json_object_get(body, field);
    if (!v || json_is_null(v)) {
        if (required)
            add_errorf(errors, field, "is required%s: an array of %d to %d image URLs",
                       strcmp(field, "modelImages") == 0 ? " by this model" : "", min, max);
        return required ? NULL : json_array();
    }
    if (!json_is_array(v)) {
        add_errorf(errors, field, "must be an array of %d to %d image URLs", min, max);
        return NULL;
    }
    size_t n = json_array_size(v);
    bool ok = true;
    if (n < (size_t)min || n > (size_t)max) {
        if (max == 0)
            add_errorf(errors, field, "must be empty: this model takes no %s (got %zu)",
                       strcmp(field, "modelImages") == 0 ? "model images" : "images", n);
        else if (min == 0)
            add_errorf(errors, field, "must contain at most %d image URLs (got %zu)", max, n);
        else
            add_errorf(errors, field, "must contain %d to %d image URLs (got %zu)", min, max, n);
        ok = false;
    }
    json_t *copy = json_array();
    size_t broken = 0;
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_array_get(v, i);
        const char *why = !json_is_string(e)
                              ? "must be a string (an http:// or https:// image URL)"
                              : url_problem(json_string_value(e), json_string_length(e));
        if (why) {
            ok = false;
            if (++broken <= ELEMENT_ERRORS_MAX) {
                char path[64];
                snprintf(path, sizeof path, "%s[%zu]", field, i);
                add_error(errors, path, why);
            }
            continue;
        }
        if (ok)
            json_array_append_new(copy, json_stringn(json_string_value(e), json_string_length(e)));
    }
    if (broken > ELEMENT_ERRORS_MAX)
        add_errorf(errors, field,
                   "%zu more elements are not valid image URLs (only the first %d are listed)",
                   broken - ELEMENT_ERRORS_MAX, ELEMENT_ERRORS_MAX);
    if (!ok) {
        json_decref(copy);
        return NULL;
    }
    return copy;
}

/* A required member that must be one of `words`; copies it into out. */
static void check_enum(const json_t *obj, const char *field, const char *const *words, size_t n,
                       bool required, char *out, size_t outlen, json_t *errors)
{
    const json_t *v = json_object_get(obj, field);
    char *list = join_words(words, n);
    if (!v || (!required && json_is_null(v))) {
        if (required) add_errorf(errors, field, "is required: one of %s", list);
    } else if (!json_is_string(v)) {
        add_errorf(errors, field, "must be a string: one of %s", list);
    } else if (word_index(json_string_value(v), words, n) < 0) {
        add_errorf(errors, field, "must be one of %s", list);
    } else {
        snprintf(out, outlen, "%s", json_string_value(v));
    }
    free(list);
}

/* parameters.<name>, one of words; out keeps its default when absent. */
static void check_param_enum(const json_t *params, const char *name, const char *const *words,
                             size_t n, char *out, size_t outlen, json_t *errors)
{
    const json_t *v = json_object_get(params, name);
    if (!v || json_is_null(v)) return;
    char path[48];
    snprintf(path, sizeof path, "parameters.%s", name);
    char *list = join_words(words, n);
    if (!json_is_string(v))
        add_errorf(errors, path, "must be a string: one of %s", list);
    else if (word_index(json_string_value(v), words, n) < 0)
        add_errorf(errors, path, "must be one of %s", list);
    else
        snprintf(out, outlen, "%s", json_string_value(v));
    free(list);
}

/* A real number in [lo, hi]; *out keeps its default when absent. */
static void check_number(const json_t *params, const char *name, double lo, double hi,
                         const char *range, double *out, json_t *errors)
{
    const json_t *v = json_object_get(params, name);
    if (!v || json_is_null(v)) return;
    char path[48];
    snprintf(path, sizeof path, "parameters.%s", name);
    if (!json_is_number(v)) {
        add_errorf(errors, path, "must be a number from %s", range);
        return;
    }
    double d = json_number_value(v);
    if (!(d >= lo && d <= hi)) {
        add_errorf(errors, path, "must be a number from %s", range);
        return;
    }
    *out = d;
}

/* An integer literal in [lo, hi]; *out keeps its default and *given stays
 * false when absent. */
static void check_integer(const json_t *params, const char *name, long long lo, long long hi,
                          int64_t *out, bool *given, json_t *errors)
{
    const json_t *v = json_object_get(params, name);
    if (!v || json_is_null(v)) return;
    char path[48];
    snprintf(path, sizeof path, "parameters.%s", name);
    long long x = json_is_integer(v) ? (long long)json_integer_value(v) : 0;
    if (!json_is_integer(v) || x < lo || x > hi) {
        add_errorf(errors, path, "must be an integer from %lld to %lld", lo, hi);
        return;
    }
    *out = x;
    if (given) *given = true;
}

/* Copy of s without surrounding whitespace, or NULL if nothing is left. */
static char *trim_dup(const char *s, size_t len)
{
    size_t a = 0, b = len;
    while (a < b && is_space((unsigned char)s[a]))
        a++;
    while (b > a && is_space((unsigned char)s[b - 1]))
        b--;
    return a == b ? NULL : xstrndup(s + a, b - a);
}

/* The model id for a message: at most 64 bytes, cut on a UTF-8 boundary. */
static char *model_for_message(const char *id)
{
    size_t len = strlen(id);
    if (len <= 64) return xstrdup(id);
    size_t cut = 64;
    while (cut > 0 && ((unsigned char)id[cut] & 0xC0) == 0x80)
        cut--;
    char *head = xstrndup(id, cut);
    char *s = xasprintf("%s...", head);
    free(head);
    return s;
}

/* ---- the API ---- */

void gen_request_free(gen_request *r)
{
    if (!r) return;
    json_decref(r->product_images);
    json_decref(r->model_images);
    free(r->custom_prompt);
    memset(r, 0, sizeof *r);
}

/* The model field; a known model sets the image limits. *model_id is the
 * id as given (NULL when missing or not a string), *model its catalogue
 * entry (NULL when unknown). */
static void parse_model(const json_t *body, const model_info **model, const char **model_id,
                        json_t *errs)
{
    *model = NULL;
    *model_id = NULL;
    const json_t *mv = json_object_get(body, "model");
    if (!mv)
        add_error(errs, "model", "is required: a model id from GET /api/models");
    else if (!json_is_string(mv))
        add_error(errs, "model", "must be a string: a model id from GET /api/models");
    else if (json_string_length(mv) == 0)
        add_error(errs, "model", "must not be empty: a model id from GET /api/models");
    else {
        *model_id = json_string_value(mv);
        *model = provider_model_find(*model_id);
    }
}

/* productImages and modelImages within the model's limits (the defaults
 * for an unknown model, whose own error comes later). */
static void parse_images(const json_t *body, const model_info *model, gen_request *r, json_t *errs)
{
    int max_products = model && model->max_product_images > 0 ? model->max_product_images
                                                              : DEFAULT_MAX_PRODUCT_IMAGES;
    int max_models =
        model && model->max_model_images >= 0 ? model->max_model_images : DEFAULT_MAX_MODEL_IMAGES;
    r->product_images = check_images(body, "productImages", true, 1, max_products, errs);
    int min_models = model && model->min_model_images > 0 ? model->min_model_images : 0;
    if (min_models > max_models) min_models = max_models;
    r->model_images =
        check_images(body, "modelImages", min_models > 0, min_models, max_models, errs);
}

static void parse_custom_prompt(const json_t *body, gen_request *r, json_t *errs)
{
    const json_t *cp = json_object_get(body, "customPrompt");
    if (!cp || json_is_null(cp)) return;
    if (!json_is_string(cp)) {
        add_error(errs, "customPrompt", "must be a string of at most 500 characters");
        return;
    }
    char *t = trim_dup(json_string_value(cp), json_string_length(cp));
    if (t && utf8_len(t, strlen(t)) > MAX_CUSTOM_PROMPT) {
        add_errorf(errs, "customPrompt", "must be at most 500 characters (got %zu)",
                   utf8_len(t, strlen(t)));
        free(t);
        return;
    }
    r->custom_prompt = t;
}

/* The parameters object; *seed_given says whether it named a seed. */
static void parse_parameters(const json_t *body, gen_request *r, bool *seed_given, json_t *errs)
{
    *seed_given = false;
    const json_t *pv = json_object_get(body, "parameters");
    if (!pv || json_is_null(pv)) return;
    if (!json_is_object(pv)) {
        add_error(errs, "parameters",
                  "must be an object with guidance_scale, num_inference_steps, strength, seed, "
                  "background, output_format");
        return;
    }
    int64_t steps = r->params.num_inference_steps;
    check_number(pv, "guidance_scale", 1, 20, "1 to 20", &r->params.guidance_scale, errs);
    check_integer(pv, "num_inference_steps", 20, 100, &steps, NULL, errs);
    check_number(pv, "strength", 0.1, 1, "0.1 to 1", &r->params.strength, errs);
    check_integer(pv, "seed", 0, SEED_MAX, &r->params.seed, seed_given, errs);
    check_param_enum(pv, "background", backgrounds, ARRAY_LEN(backgrounds), r->params.background,
                     sizeof r->params.background, errs);
    check_param_enum(pv, "output_format", output_formats, ARRAY_LEN(output_formats),
                     r->params.output_format, sizeof r->params.output_format, errs);
    if (str_eq(r->params.background, "transparent") && str_eq(r->params.output_format, "jpeg"))
        add_error(errs, "parameters.output_format",
                  "jpeg has no transparency: use png or webp with background \"transparent\"");
    r->params.num_inference_steps = (int)steps;
}

static void parse_priority(const json_t *body, bool user_is_pro, gen_request *r, json_t *errs)
{
    char prio[8] = "";
    check_enum(body, "priority", priorities, ARRAY_LEN(priorities), false, prio, sizeof prio, errs);
    if (!str_eq(prio, "high")) return;
    if (user_is_pro)
        r->priority = PRIORITY_HIGH;
    else
        add_error(errs, "priority", "high priority requires the pro plan; use \"normal\"");
}

/* A well-formed request's model must exist and be available here: 0, or
 * GEN_EMODEL with *message (caller frees). */
static int check_model(const model_info *model, const char *model_id, char **message)
{
    const char *why = NULL;
    if (!model) {
        char *shown = model_for_message(model_id);
        *message = xasprintf("unknown model '%s'", shown);
        free(shown);
        return GEN_EMODEL;
    }
    if (!provider_model_available(model, &why)) {
        *message = why && *why ? xstrdup(why)
                               : xasprintf("model '%s' is not available on this server", model->id);
        return GEN_EMODEL;
    }
    return 0;
}

int gen_request_parse(const json_t *body, bool user_is_pro, gen_request *out, json_t **errors,
                      char **message)
{
    memset(out, 0, sizeof *out);
    *errors = NULL;
    *message = NULL;
    json_t *errs = json_array();
    if (!json_is_object(body)) {
        add_error(errs, "body", "must be a JSON object");
        *errors = errs;
        return GEN_EINVALID;
    }

    gen_request r = {0};
    r.params.guidance_scale = 7.5;
    r.params.num_inference_steps = 50;
    r.params.strength = 0.8;
    r.priority = PRIORITY_NORMAL;
    const model_info *model;
    const char *model_id;
    bool seed_given;
    parse_model(body, &model, &model_id, errs);
    parse_images(body, model, &r, errs);
    check_enum(body, "style", styles, ARRAY_LEN(styles), true, r.params.style,
               sizeof r.params.style, errs);
    check_enum(body, "quality", qualities, ARRAY_LEN(qualities), true, r.params.quality,
               sizeof r.params.quality, errs);
    check_enum(body, "aspectRatio", ratios, ARRAY_LEN(ratios), true, r.params.aspect_ratio,
               sizeof r.params.aspect_ratio, errs);
    parse_custom_prompt(body, &r, errs);
    parse_parameters(body, &r, &seed_given, errs);
    parse_priority(body, user_is_pro, &r, errs);
    if (json_array_size(errs) > 0) {
        gen_request_free(&r);
        *errors = errs;
        return GEN_EINVALID;
    }
    json_decref(errs);

    int rc = check_model(model, model_id, message);
    if (rc != 0) {
        gen_request_free(&r);
        return rc;
    }
    snprintf(r.params.model, sizeof r.params.model, "%s", model->id);
    if (!seed_given) r.params.seed = ids_random_below((uint32_t)SEED_MAX + 1u);
    *out = r;
    return 0;
}

/* ceil(base × multiplier) with multipliers auto 1, low 1, medium 1, high 1.5,
 * in integers: high is ceil(3·base / 2). An unknown quality costs as 1×; a
 * negative base counts as 0. */
int gen_cost(int base_cost, const char *quality)
{
    if (base_cost < 0) base_cost = 0;
    if (str_eq(quality, "high")) {
        long long c = ((long long)base_cost * 3 + 1) / 2;
        return c > 2147483647LL ? 2147483647 : (int)c;
    }
    return base_cost;
}
