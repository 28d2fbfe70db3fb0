/*
 * provider_template — the small template language of a catalogue entry's
 * `input` (provider.h, "input templates"): how our fields map onto a
 * provider's input object. provider_template_check runs when the
 * catalogue is loaded, so a placeholder naming no field stops the process
 * at start; provider_template_render runs per generation and cannot fail.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "provider.h"
#include "util.h"

typedef enum field {
    F_PROMPT,
    F_CUSTOM_PROMPT,
    F_MODEL,
    F_STYLE,
    F_QUALITY,
    F_ASPECT_RATIO,
    F_OUTPUTS,
    F_PRODUCT_IMAGE, /* productImages[N] */
    F_MODEL_IMAGE,   /* modelImages[N] */
    F_PRODUCT_IMAGES,
    F_MODEL_IMAGES,
    F_SEED,
    F_GUIDANCE_SCALE,
    F_STEPS,
    F_STRENGTH,
} field;

static const struct {
    const char *name;
    field f;
} names[] = {
    {"prompt", F_PROMPT},
    {"customPrompt", F_CUSTOM_PROMPT},
    {"model", F_MODEL},
    {"style", F_STYLE},
    {"quality", F_QUALITY},
    {"aspectRatio", F_ASPECT_RATIO},
    {"outputs", F_OUTPUTS},
    {"productImages", F_PRODUCT_IMAGES},
    {"modelImages", F_MODEL_IMAGES},
    {"parameters.seed", F_SEED},
    {"parameters.guidance_scale", F_GUIDANCE_SCALE},
    {"parameters.num_inference_steps", F_STEPS},
    {"parameters.strength", F_STRENGTH},
};

typedef struct placeholder {
    field f;
    long index; /* F_PRODUCT_IMAGE / F_MODEL_IMAGE */
} placeholder;

/* Parses the path between braces. 0, or -1 when it names no field. */
static int parse_path(const char *s, size_t len, placeholder *out)
{
    out->index = 0;
    const char *br = memchr(s, '[', len);
    size_t base = br ? (size_t)(br - s) : len;
    for (size_t i = 0; i < ARRAY_LEN(names); i++) {
        if (strlen(names[i].name) != base || strncmp(names[i].name, s, base) != 0) continue;
        out->f = names[i].f;
        if (!br) return 0;
        if (out->f != F_PRODUCT_IMAGES && out->f != F_MODEL_IMAGES) return -1;
        /* "[N]" and nothing after it */
        const char *p = br + 1, *end = s + len;
        if (p >= end || *p < '0' || *p > '9' || end[-1] != ']') return -1;
        long v = 0;
        for (; p < end - 1; p++) {
            if (*p < '0' || *p > '9' || v > 1000) return -1;
            v = v * 10 + (*p - '0');
        }
        out->index = v;
        out->f = out->f == F_PRODUCT_IMAGES ? F_PRODUCT_IMAGE : F_MODEL_IMAGE;
        return 0;
    }
    return -1;
}

static bool is_list(field f)
{
    return f == F_PRODUCT_IMAGES || f == F_MODEL_IMAGES;
}

/* The value of a placeholder for a record: a new reference, or NULL when
 * the record has none (no custom prompt, no such image). */
static json_t *resolve(const placeholder *ph, const gen_record *g, const model_info *m)
{
    const gen_params *p = &g->params;
    switch (ph->f) {
    case F_PROMPT:
        return json_string(g->prompt ? g->prompt : "");
    case F_CUSTOM_PROMPT:
        return g->custom_prompt && *g->custom_prompt ? json_string(g->custom_prompt) : NULL;
    case F_MODEL:
        return json_string(p->model);
    case F_STYLE:
        return json_string(p->style);
    case F_QUALITY:
        return json_string(p->quality);
    case F_ASPECT_RATIO:
        return json_string(p->aspect_ratio);
    case F_OUTPUTS:
        return json_integer(m && m->outputs > 0 ? m->outputs : 1);
    case F_PRODUCT_IMAGE:
        return json_incref(json_array_get(g->product_images, (size_t)ph->index));
    case F_MODEL_IMAGE:
        return json_incref(json_array_get(g->model_images, (size_t)ph->index));
    case F_PRODUCT_IMAGES:
        return g->product_images ? json_deep_copy(g->product_images) : json_array();
    case F_MODEL_IMAGES:
        return g->model_images ? json_deep_copy(g->model_images) : json_array();
    case F_SEED:
        return json_integer((json_int_t)p->seed);
    case F_GUIDANCE_SCALE:
        return json_real(p->guidance_scale);
    case F_STEPS:
        return json_integer(p->num_inference_steps);
    case F_STRENGTH:
        return json_real(p->strength);
    }
    return NULL;
}

/* One pass over a template string. With g == NULL it only checks (and
 * *err says what is wrong, caller frees); otherwise it appends the
 * rendering to *b. *whole is set when the string is exactly one
 * placeholder. */
static int scan(const char *s, const model_info *m, const gen_record *g, buf *b, placeholder *whole,
                bool *is_whole, char **err)
{
    size_t len = strlen(s);
    *is_whole = false;
    for (size_t i = 0; i < len;) {
        if (s[i] == '{' && i + 1 < len && s[i + 1] == '{') {
            if (b) buf_append(b, "{", 1);
            i += 2;
            continue;
        }
        if (s[i] == '}') {
            if (i + 1 < len && s[i + 1] == '}') {
                if (b) buf_append(b, "}", 1);
                i += 2;
                continue;
            }
            if (err) *err = xstrdup("a lone '}' (write '}}' for a literal brace)");
            return -1;
        }
        if (s[i] != '{') {
            size_t j = i;
            while (j < len && s[j] != '{' && s[j] != '}')
                j++;
            if (b) buf_append(b, s + i, j - i);
            i = j;
            continue;
        }
        const char *close = memchr(s + i + 1, '}', len - i - 1);
        if (!close) {
            if (err) *err = xstrdup("an unclosed '{' (write '{{' for a literal brace)");
            return -1;
        }
        size_t plen = (size_t)(close - (s + i + 1));
        placeholder ph;
        if (parse_path(s + i + 1, plen, &ph) != 0) {
            if (err) *err = xasprintf("placeholder {%.*s} names no field", (int)plen, s + i + 1);
            return -1;
        }
        bool alone = i == 0 && (size_t)(close - s) == len - 1;
        if (m && ph.f == F_PRODUCT_IMAGE && ph.index >= m->max_product_images) {
            if (err)
                *err = xasprintf("placeholder {%.*s}: the model takes at most %d product image%s",
                                 (int)plen, s + i + 1, m->max_product_images,
                                 m->max_product_images == 1 ? "" : "s");
            return -1;
        }
        if (m && ph.f == F_MODEL_IMAGE && ph.index >= m->max_model_images) {
            if (err)
                *err = xasprintf("placeholder {%.*s}: the model takes at most %d model image%s",
                                 (int)plen, s + i + 1, m->max_model_images,
                                 m->max_model_images == 1 ? "" : "s");
            return -1;
        }
        if (is_list(ph.f) && !alone) {
            if (err)
                *err = xasprintf("placeholder {%.*s} is a list: it must be the whole value",
                                 (int)plen, s + i + 1);
            return -1;
        }
        if (alone) {
            *whole = ph;
            *is_whole = true;
            return 0;
        }
        if (b && g) {
            json_t *v = resolve(&ph, g, m);
            if (json_is_string(v)) {
                buf_append(b, json_string_value(v), json_string_length(v));
            } else if (v) {
                char *text = json_dumps(v, JSON_ENCODE_ANY);
                if (text) buf_append(b, text, strlen(text));
                free(text);
            }
            json_decref(v);
        }
        i = (size_t)(close - s) + 1;
    }
    return 0;
}

/* Walks a template; `where` is the path so far (for messages). */
static int check_value(const json_t *v, const model_info *m, const char *where, char **err)
{
    if (json_is_string(v)) {
        placeholder ph;
        bool whole;
        char *why = NULL;
        if (scan(json_string_value(v), m, NULL, NULL, &ph, &whole, &why) == 0) return 0;
        *err = xasprintf("%s: %s", where, why);
        free(why);
        return -1;
    }
    if (json_is_object(v)) {
        const char *key;
        const json_t *e;
        json_object_foreach((json_t *)v, key, e)
        {
            char *sub = xasprintf("%s.%s", where, key);
            int rc = check_value(e, m, sub, err);
            free(sub);
            if (rc != 0) return rc;
        }
    } else if (json_is_array(v)) {
        size_t i;
        const json_t *e;
        json_array_foreach(v, i, e)
        {
            char *sub = xasprintf("%s[%zu]", where, i);
            int rc = check_value(e, m, sub, err);
            free(sub);
            if (rc != 0) return rc;
        }
    }
    return 0;
}

int provider_template_check(const json_t *tmpl, const model_info *m, char **err)
{
    *err = NULL;
    return check_value(tmpl, m, "input", err);
}

/* The rendering of one value: a new reference, or NULL for "leave it out". */
static json_t *render_value(const json_t *v, const gen_record *g, const model_info *m)
{
    if (json_is_string(v)) {
        placeholder ph;
        bool whole;
        buf b = {0};
        if (scan(json_string_value(v), m, g, &b, &ph, &whole, NULL) != 0) {
            buf_free(&b); /* unchecked template: keep the text as it is */
            return json_incref((json_t *)v);
        }
        if (whole) {
            buf_free(&b);
            return resolve(&ph, g, m);
        }
        json_t *out = json_stringn(b.data ? b.data : "", b.len);
        buf_free(&b);
        return out;
    }
    if (json_is_object(v)) {
        json_t *out = json_object();
        const char *key;
        const json_t *e;
        json_object_foreach((json_t *)v, key, e)
        {
            json_t *r = render_value(e, g, m);
            if (r) json_object_set_new(out, key, r);
        }
        return out;
    }
    if (json_is_array(v)) {
        json_t *out = json_array();
        size_t i;
        const json_t *e;
        json_array_foreach(v, i, e)
        {
            json_t *r = render_value(e, g, m);
            if (r) json_array_append_new(out, r);
        }
        return out;
    }
    return json_deep_copy(v);
}

json_t *provider_template_render(const json_t *tmpl, const gen_record *g, const model_info *m)
{
    json_t *out = tmpl ? render_value(tmpl, g, m) : NULL;
    return out ? out : json_object();
}
