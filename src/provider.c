/*
 * provider — the registry that maps a model to the provider that runs it
 * (SPEC §7). The models themselves come from the catalogue
 * (provider_catalog.c): every model it lists, available or not
 * (bench-instant, for bench/ only, exists only with --enable-bench-model).
 * Availability is a function of configuration. `local-studio` is built in
 * and always available; `gpt-image-1` needs an OpenAI API key and the
 * Replicate models a Replicate token. This build has no configuration
 * fields for either credential yet, so both are listed but unavailable,
 * and provider_for() returns NULL for them (there is nothing to run them).
 */
#include "provider.h"

#include <stdlib.h>
#include <string.h>

#include "config.h"

bool provider_model_available(const model_info *m, const char **why)
{
    const char *reason = NULL;
    if (!m)
        reason = "unknown model";
    else if (strcmp(m->provider, "local") == 0)
        reason = NULL;
    else if (strcmp(m->provider, "bench") == 0)
        reason = cfg.enable_bench_model ? NULL : "unknown model";
    else if (strcmp(m->provider, "openai") == 0)
        reason = "no OpenAI API key configured on this server";
    else if (strcmp(m->provider, "replicate") == 0)
        reason = "no Replicate token configured on this server";
    else
        reason = "no provider for this model in this build";
    if (why) *why = reason;
    return reason == NULL;
}

const provider_ops *provider_for(const model_info *m)
{
    if (!m || !provider_model_available(m, NULL)) return NULL;
    if (strcmp(m->provider, "local") == 0) return &provider_local_ops;
    if (strcmp(m->provider, "bench") == 0) return &provider_bench_ops;
    return NULL;
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
