/*
 * provider — the registry that maps a model to the provider that runs it
 * (SPEC §7), the providers' credentials, and availability. The models
 * themselves come from the catalogue (provider_catalog.c).
 *
 * Registration is one table: provider name → its ops (NULL while the
 * adapter is not built yet) and the credential it needs. A model is
 * available when its provider's credential is set AND an adapter is
 * registered — so a server with OPENAI_API_KEY set but no OpenAI adapter
 * does not offer a model nothing can run. An adapter author fills its
 * entry in `registry` below; nothing else changes.
 *
 * Credentials come from the environment only and are read once, by
 * provider_secrets_load at start, into private copies here; adapters read
 * them with provider_secret. They are never logged, never put in an error
 * text, a record or the database: the reasons this file hands out name the
 * variable, never its value.
 */
#include "provider.h"

#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "util.h"

static const struct {
    const char *env;
    const char *missing; /* unavailableReason when unset */
} secret_env[PROVIDER_SECRET_COUNT] = {
    [PROVIDER_SECRET_OPENAI] = {"OPENAI_API_KEY", "OPENAI_API_KEY is not set on this server"},
    [PROVIDER_SECRET_REPLICATE] = {"REPLICATE_API_TOKEN",
                                   "REPLICATE_API_TOKEN is not set on this server"},
    [PROVIDER_SECRET_REPLICATE_WEBHOOK] = {"REPLICATE_WEBHOOK_SECRET",
                                           "REPLICATE_WEBHOOK_SECRET is not set on this server"},
};

static char *secrets[PROVIDER_SECRET_COUNT]; /* NULL when unset or empty */
static bool secrets_loaded;

#define NO_SECRET (-1)

/* The registry. ops NULL: the adapter is not built into this server yet. */
static const struct {
    const char *name;
    const provider_ops *ops;
    int secret; /* provider_secret_id it needs, or NO_SECRET */
    const char *not_built;
} registry[] = {
    {"local", &provider_local_ops, NO_SECRET, NULL},
    {"bench", &provider_bench_ops, NO_SECRET, NULL},
    {"openai", &provider_openai_ops, PROVIDER_SECRET_OPENAI, NULL},
    {"replicate", &provider_replicate_ops, PROVIDER_SECRET_REPLICATE, NULL},
};

void provider_secrets_load(void)
{
    for (int i = 0; i < PROVIDER_SECRET_COUNT; i++) {
        free(secrets[i]);
        const char *v = getenv(secret_env[i].env);
        secrets[i] = v && *v ? xstrdup(v) : NULL;
    }
    secrets_loaded = true;
}

const char *provider_secret(provider_secret_id id)
{
    if ((unsigned)id >= PROVIDER_SECRET_COUNT) return NULL;
    if (!secrets_loaded) provider_secrets_load(); /* unit tests; main loads at start */
    return secrets[id];
}

static int registry_find(const char *name)
{
    for (size_t i = 0; i < ARRAY_LEN(registry); i++)
        if (name && strcmp(registry[i].name, name) == 0) return (int)i;
    return -1;
}

bool provider_model_available(const model_info *m, const char **why)
{
    const char *reason = NULL;
    int r = m ? registry_find(m->provider) : -1;
    if (!m)
        reason = "unknown model";
    else if (r < 0)
        reason = "no provider for this model in this build";
    else if (strcmp(m->provider, "bench") == 0 && !cfg.enable_bench_model)
        reason = "unknown model";
    else if (registry[r].secret != NO_SECRET && !provider_secret(registry[r].secret))
        reason = secret_env[registry[r].secret].missing;
    else if (!registry[r].ops)
        reason = registry[r].not_built;
    if (why) *why = reason;
    return reason == NULL;
}

const provider_ops *provider_unwrapped_for(const model_info *m)
{
    if (!m || !provider_model_available(m, NULL)) return NULL;
    return registry[registry_find(m->provider)].ops;
}

const provider_ops *provider_for(const model_info *m)
{
    const provider_ops *ops = provider_unwrapped_for(m);
    return ops && provider_faults_enabled() ? &provider_faults_ops : ops;
}

void provider_cancel(const provider_ops *ops, provider_job *job)
{
    if (!job) return;
    atomic_store(&job->cancel_requested, true);
    if (ops && ops->cancel) ops->cancel(job);
}

void provider_image_free(provider_image *img)
{
    if (!img) return;
    free(img->data);
    img->data = NULL;
    img->len = 0;
    img->width = img->height = 0;
    img->format[0] = '\0';
}

bool provider_is_remote(const model_info *m)
{
    return m && (str_eq(m->provider, "openai") || str_eq(m->provider, "replicate"));
}
