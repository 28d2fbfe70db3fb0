/*
 * provider_catalog — the model catalogue (SPEC §7): models.json, embedded
 * in the binary at build time (the Makefile turns it into
 * provider_models_json[]), or the file given with --models. It is read and
 * validated once at start; a catalogue with any problem stops the process
 * with a message naming the model and the field.
 *
 * Format: {"models": [entry, ...]}, each entry an object with exactly
 * these keys (any other key is an error, to catch typos):
 *
 *   id                string, 1–47 of [A-Za-z0-9._-], unique      required
 *   name, description string                                       required
 *   provider          "local" | "openai" | "replicate" | "bench"   required
 *   providerModel     string: openai "gpt-image-1"; replicate "owner/name"
 *                     (openai: required; replicate: this or version)
 *   version           string, a pinned Replicate version id (hex)  replicate only
 *   baseCost          integer 0–1000                                required
 *   outputs           integer 1–10 (result images)                  required
 *   maxProductImages  integer 1–5                                   required
 *   minModelImages    integer 0–maxModelImages (default 0)          optional
 *   maxModelImages    integer 0–3                                   required
 *   maxInFlight       integer 1–10000: remote calls of this model's provider
 *                     in flight at once (SPEC §4; local ignores it) required
 *   typicalSeconds    integer 1–3600 (ETA before any history)       required
 *   parameters        array of distinct names among seed, guidance_scale,
 *                     num_inference_steps, strength, background,
 *                     output_format: the create parameters it honours
 *                     (GET /api/models reports them)                required
 *   input             the Replicate input template (provider.h, "input
 *                     templates"), checked here                     replicate: required
 *   hidden            boolean (default false): never listed         optional
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "provider.h"
#include "util.h"

#define CATALOG_MAX_BYTES (1024 * 1024)
#define ID_MAX 47 /* gen_params.model holds 48 bytes */

extern const char provider_models_json[]; /* build/gen/models_json.c */

typedef struct catalog {
    json_t *root; /* the parsed document; every string below points into it */
    model_info *models;
    size_t n;
} catalog;

static catalog *current;
static pthread_once_t builtin_once = PTHREAD_ONCE_INIT;

static const char *const known_keys[] = {
    "id",
    "name",
    "description",
    "provider",
    "providerModel",
    "version",
    "baseCost",
    "outputs",
    "maxProductImages",
    "minModelImages",
    "maxModelImages",
    "maxInFlight",
    "typicalSeconds",
    "parameters",
    "input",
    "hidden",
};
static const char *const providers[] = {"local", "openai", "replicate", "bench"};
static const char *const parameter_names[] = {"seed",     "guidance_scale", "num_inference_steps",
                                              "strength", "background",     "output_format"};

static bool in_list(const char *s, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (str_eq(s, list[i])) return true;
    return false;
}

static void catalog_free(catalog *c)
{
    if (!c) return;
    json_decref(c->root);
    free(c->models);
    free(c);
}

/* Field readers: 0, or -1 with *why (a new string) saying what is wrong. */
static int get_string(const json_t *e, const char *key, bool required, const char **out, char **why)
{
    const json_t *v = json_object_get(e, key);
    *out = NULL;
    if (!v) {
        if (required) *why = xasprintf("field \"%s\": missing", key);
        return required ? -1 : 0;
    }
    if (!json_is_string(v) || json_string_length(v) == 0) {
        *why = xasprintf("field \"%s\": must be a non-empty string", key);
        return -1;
    }
    *out = json_string_value(v);
    return 0;
}

static int get_int(const json_t *e, const char *key, bool required, int lo, int hi, int *out,
                   char **why)
{
    const json_t *v = json_object_get(e, key);
    if (!v) {
        if (required) *why = xasprintf("field \"%s\": missing", key);
        return required ? -1 : 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) {
        *why = xasprintf("field \"%s\": must be an integer from %d to %d", key, lo, hi);
        return -1;
    }
    *out = (int)json_integer_value(v);
    return 0;
}

static bool id_ok(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n > ID_MAX) return false;
    for (size_t i = 0; i < n; i++) {
        char c = id[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

static bool hex_ok(const char *s)
{
    size_t n = strlen(s);
    if (n < 8 || n > 128) return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return false;
    return true;
}

/* "owner/name": one slash with something on both sides. */
static bool owner_name_ok(const char *s)
{
    const char *slash = strchr(s, '/');
    return slash && slash != s && slash[1] && !strchr(slash + 1, '/');
}

/* Every key of e is a known field. 0, or -1 with *why. */
static int read_keys(const json_t *e, char **why)
{
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)e, key, v)
    {
        if (!in_list(key, known_keys, ARRAY_LEN(known_keys))) {
            *why = xasprintf("field \"%s\": unknown field", key);
            return -1;
        }
    }
    return 0;
}

/* provider, providerModel and version, and how they go together. */
static int read_provider(const json_t *e, model_info *m, char **why)
{
    if (get_string(e, "provider", true, &m->provider, why)) return -1;
    if (!in_list(m->provider, providers, ARRAY_LEN(providers))) {
        *why = xasprintf("field \"provider\": unknown provider \"%s\" (local, openai, replicate "
                         "or bench)",
                         m->provider);
        return -1;
    }
    if (get_string(e, "providerModel", false, &m->provider_model, why) ||
        get_string(e, "version", false, &m->version, why))
        return -1;
    bool remote = str_eq(m->provider, "openai") || str_eq(m->provider, "replicate");
    if (!remote && (m->provider_model || m->version)) {
        *why = xasprintf("field \"%s\": only openai and replicate models name a provider model",
                         m->provider_model ? "providerModel" : "version");
        return -1;
    }
    if (str_eq(m->provider, "openai")) {
        if (!m->provider_model) {
            *why = xstrdup("field \"providerModel\": missing (the OpenAI model, e.g. gpt-image-1)");
            return -1;
        }
        if (m->version) {
            *why = xstrdup("field \"version\": only replicate models pin a version");
            return -1;
        }
    }
    if (str_eq(m->provider, "replicate")) {
        if (!m->provider_model && !m->version) {
            *why = xstrdup("field \"providerModel\": missing (\"owner/name\", or give a "
                           "\"version\")");
            return -1;
        }
        if (m->provider_model && !owner_name_ok(m->provider_model)) {
            *why = xstrdup("field \"providerModel\": must be \"owner/name\"");
            return -1;
        }
        if (m->version && !hex_ok(m->version)) {
            *why = xstrdup("field \"version\": must be a Replicate version id (lowercase hex)");
            return -1;
        }
    }
    return 0;
}

/* The parameters the model honours: an array of known names, each once. */
static int read_parameters(const json_t *e, model_info *m, char **why)
{
    json_t *params = json_object_get(e, "parameters");
    if (!params) {
        *why = xstrdup("field \"parameters\": missing (an array, possibly empty)");
        return -1;
    }
    if (!json_is_array(params)) {
        *why = xstrdup("field \"parameters\": must be an array of parameter names");
        return -1;
    }
    size_t i;
    json_t *p;
    json_array_foreach(params, i, p)
    {
        const char *name = json_string_value(p);
        if (!name || !in_list(name, parameter_names, ARRAY_LEN(parameter_names))) {
            *why = xasprintf("field \"parameters[%zu]\": must be one of seed, guidance_scale, "
                             "num_inference_steps, strength, background, output_format",
                             i);
            return -1;
        }
        for (size_t k = 0; k < i; k++)
            if (str_eq(name, json_string_value(json_array_get(params, k)))) {
                *why = xasprintf("field \"parameters[%zu]\": \"%s\" listed twice", i, name);
                return -1;
            }
    }
    m->parameters = params;
    return 0;
}

/* A replicate model's input template (and no other model's). */
static int read_input(const json_t *e, model_info *m, char **why)
{
    json_t *input = json_object_get(e, "input");
    if (input && !str_eq(m->provider, "replicate")) {
        *why = xstrdup("field \"input\": only replicate models take an input template");
        return -1;
    }
    if (!input && str_eq(m->provider, "replicate")) {
        *why = xstrdup("field \"input\": missing (how our fields map to the model's input)");
        return -1;
    }
    if (!input) return 0;
    if (!json_is_object(input)) {
        *why = xstrdup("field \"input\": must be an object");
        return -1;
    }
    char *tw = NULL;
    if (provider_template_check(input, m, &tw) != 0) {
        /* tw is "input.key: what is wrong" */
        const char *colon = strstr(tw, ": ");
        *why = colon ? xasprintf("field \"%.*s\": %s", (int)(colon - tw), tw, colon + 2)
                     : xasprintf("field \"input\": %s", tw);
        free(tw);
        return -1;
    }
    m->input = input;
    return 0;
}

/* Validates one entry into *m (strings borrowed from e). 0, or -1 with *why. */
static int read_entry(const json_t *e, model_info *m, char **why)
{
    memset(m, 0, sizeof *m);
    if (read_keys(e, why) || get_string(e, "name", true, &m->name, why) ||
        get_string(e, "description", true, &m->description, why) || read_provider(e, m, why))
        return -1;
    if (get_int(e, "baseCost", true, 0, 1000, &m->base_cost, why) ||
        get_int(e, "outputs", true, 1, 10, &m->outputs, why) ||
        get_int(e, "maxProductImages", true, 1, 5, &m->max_product_images, why) ||
        get_int(e, "maxModelImages", true, 0, 3, &m->max_model_images, why) ||
        get_int(e, "minModelImages", false, 0, m->max_model_images, &m->min_model_images, why) ||
        get_int(e, "maxInFlight", true, 1, 10000, &m->max_in_flight, why) ||
        get_int(e, "typicalSeconds", true, 1, 3600, &m->typical_seconds, why))
        return -1;
    if (read_parameters(e, m, why)) return -1;
    const json_t *hidden = json_object_get(e, "hidden");
    if (hidden && !json_is_boolean(hidden)) {
        *why = xstrdup("field \"hidden\": must be true or false");
        return -1;
    }
    m->hidden = hidden && json_is_true(hidden);
    return read_input(e, m, why);
}

/* Parses and validates a whole catalogue. 0 and *out (caller frees with
 * catalog_free), or -1 and *err. */
static int catalog_parse(const char *text, const char *source, catalog **out, char **err)
{
    json_error_t jerr;
    json_t *root = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        *err = xasprintf("%s: not valid JSON (line %d: %s)", source, jerr.line, jerr.text);
        return -1;
    }
    json_t *list = json_object_get(root, "models");
    if (!json_is_array(list) || json_array_size(list) == 0) {
        *err =
            xasprintf("%s: must be an object {\"models\": [...]} with at least one model", source);
        json_decref(root);
        return -1;
    }
    catalog *c = xcalloc(1, sizeof *c);
    c->root = root;
    c->models = xcalloc(json_array_size(list), sizeof *c->models);
    size_t i;
    json_t *e;
    json_array_foreach(list, i, e)
    {
        char *why = NULL;
        const char *id = json_string_value(json_object_get(e, "id"));
        if (!json_is_object(e)) {
            *err = xasprintf("%s: models[%zu]: must be an object", source, i);
            goto fail;
        }
        if (!json_object_get(e, "id")) {
            *err = xasprintf("%s: models[%zu]: field \"id\": missing", source, i);
            goto fail;
        }
        if (!id || !id_ok(id)) {
            *err = xasprintf("%s: models[%zu]: field \"id\": must be 1 to %d of A-Z a-z 0-9 . _ -",
                             source, i, ID_MAX);
            goto fail;
        }
        for (size_t k = 0; k < c->n; k++)
            if (str_eq(c->models[k].id, id)) {
                *err = xasprintf("%s: model \"%s\": field \"id\": duplicate id (also models[%zu])",
                                 source, id, k);
                goto fail;
            }
        if (read_entry(e, &c->models[c->n], &why) != 0) {
            *err = xasprintf("%s: model \"%s\": %s", source, id, why);
            free(why);
            goto fail;
        }
        c->models[c->n++].id = id;
    }
    *out = c;
    return 0;
fail:
    catalog_free(c);
    return -1;
}

int provider_catalog_load_text(const char *text, const char *source, char **err)
{
    catalog *c = NULL;
    *err = NULL;
    if (catalog_parse(text, source, &c, err) != 0) return -1;
    catalog *old = current;
    current = c;
    catalog_free(old);
    return 0;
}

int provider_catalog_load(const char *path, char **err)
{
    *err = NULL;
    if (!path || !*path)
        return provider_catalog_load_text(provider_models_json, "models.json (built in)", err);
    buf b = {0};
    if (util_read_file(path, CATALOG_MAX_BYTES, &b) != 0) {
        *err =
            xasprintf("--models %s: cannot read the file (missing, unreadable or over 1 MB)", path);
        return -1;
    }
    buf_append(&b, "", 1); /* NUL */
    int rc = provider_catalog_load_text(b.data, path, err);
    buf_free(&b);
    return rc;
}

static void load_builtin(void)
{
    if (current) return; /* provider_catalog_load ran first */
    char *err = NULL;
    if (provider_catalog_load(NULL, &err) != 0) {
        /* A build whose own models.json is broken: nothing sensible to run. */
        fprintf(stderr, "stylestudio: %s\n", err);
        abort();
    }
}

size_t provider_models(const model_info **list)
{
    pthread_once(&builtin_once, load_builtin);
    *list = current->models;
    return current->n;
}

const model_info *provider_model_find(const char *id)
{
    if (!id) return NULL;
    const model_info *list;
    size_t n = provider_models(&list);
    for (size_t i = 0; i < n; i++)
        if (str_eq(list[i].id, id))
            return list[i].hidden && !cfg.enable_bench_model ? NULL : &list[i];
    return NULL;
}
