/*
 * provider_openai — gpt-image-1 through OpenAI's Images edit endpoint
 * (SPEC §7): one multipart POST {base}/v1/images/edits with the model,
 * one image[] part per product image then per model image, the prompt,
 * the size nearest the aspect ratio, the quality and n; the answer's
 * data[].b64_json are the results (the worker then fits them to the exact
 * aspect ratio asked).
 *
 * DESIGN. start() builds the request on the worker thread and hands it to
 * the net loop; nothing here blocks. The answer is read on the net thread
 * (openai_done): parse the JSON, decode the base64 — quick work — and call
 * on_done, which only queues the job for a worker. Progress is by phase
 * (sent; answered). A cancel raises job->cancel_requested, which is the
 * request's cancel flag: the loop drops the transfer and on_done reports
 * PROVIDER_CANCELLED.
 */
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "log.h"
#include "provider.h"
#include "provider_remote.h"
#include "util.h"

#define PROGRESS_SENT 10

/* gpt-image-1's sizes: square, landscape or portrait. */
static const char *size_for(const char *aspect_ratio)
{
    int w = 1, h = 1;
    if (!aspect_ratio || sscanf(aspect_ratio, "%d:%d", &w, &h) != 2 || w == h) return "1024x1024";
    return w > h ? "1536x1024" : "1024x1536";
}

static void add_images(net_request *r, const char *kind, const provider_image *imgs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const char *fmt = imgs[i].format[0] ? imgs[i].format : "png";
        char filename[48], type[24];
        snprintf(filename, sizeof filename, "%s-%zu.%s", kind, i + 1,
                 str_eq(fmt, "jpeg") ? "jpg" : fmt);
        snprintf(type, sizeof type, "image/%s", fmt);
        net_request_part(r, "image[]", filename, type, imgs[i].data, imgs[i].len);
    }
}

/* The results of a 200 answer. PROVIDER_OK with *outs (caller frees), or
 * PROVIDER_MALFORMED with *error. */
static int read_images(json_t *answer, provider_image **outs, size_t *n, char **error)
{
    json_t *data = json_object_get(answer, "data");
    size_t count = json_array_size(data);
    if (!json_is_array(data) || count == 0) {
        *error = xstrdup("OpenAI returned no image");
        return PROVIDER_MALFORMED;
    }
    provider_image *v = xcalloc(count, sizeof *v);
    for (size_t i = 0; i < count; i++) {
        const char *b64 = json_string_value(json_object_get(json_array_get(data, i), "b64_json"));
        size_t b64_len = b64 ? strlen(b64) : 0, len = 0;
        unsigned char *bytes = xmalloc(b64_len / 4 * 3 + 3);
        const char *fmt = NULL;
        if (b64_len > 0 && sodium_base642bin(bytes, b64_len / 4 * 3 + 3, b64, b64_len, "\r\n", &len,
                                             NULL, sodium_base64_VARIANT_ORIGINAL) == 0)
            fmt = provider_remote_sniff(bytes, len);
        if (!fmt) {
            free(bytes);
            for (size_t k = 0; k < i; k++)
                provider_image_free(&v[k]);
            free(v);
            *error = xasprintf("OpenAI returned image %zu in a form that cannot be read", i + 1);
            return PROVIDER_MALFORMED;
        }
        v[i].data = bytes;
        v[i].len = len;
        snprintf(v[i].format, sizeof v[i].format, "%s", fmt);
    }
    *outs = v;
    *n = count;
    return PROVIDER_OK;
}

/* The net loop's callback: the answer, or why there is none. */
static void openai_done(net_request *r, net_response *resp, void *ctx)
{
    (void)r;
    provider_job *job = ctx;
    json_t *answer = resp->body.len ? json_loadb(resp->body.data, resp->body.len, 0, NULL) : NULL;
    json_t *err_obj = json_object_get(answer, "error");
    const char *message = json_string_value(json_object_get(err_obj, "message"));
    const char *code = json_string_value(json_object_get(err_obj, "code"));
    char *error = NULL;
    int result = provider_remote_outcome(job, resp, "OpenAI", message, &error);
    provider_image *outs = NULL;
    size_t n = 0;
    if (result == PROVIDER_REJECTED && str_eq(code, "moderation_blocked")) {
        free(error);
        error = xasprintf("OpenAI's safety system refused this request%s%s", message ? ": " : "",
                          message ? message : "");
    } else if (result == PROVIDER_OK && !json_is_object(answer)) {
        error = xstrdup("OpenAI sent an answer that is not JSON");
        result = PROVIDER_MALFORMED;
    } else if (result == PROVIDER_OK) {
        job->on_progress(job, 100);
        result = read_images(answer, &outs, &n, &error);
    }
    json_decref(answer);
    if (result != PROVIDER_OK && result != PROVIDER_CANCELLED)
        log_warn("generation %s: OpenAI call failed: %s", job->gen->id, error);
    job->on_done(job, result, outs, n, error);
    free(error);
}

static int openai_start(provider_job *job)
{
    const char *key = provider_secret(PROVIDER_SECRET_OPENAI);
    if (!key) return -1;
    char *url = provider_remote_url(cfg.openai_base_url, "/v1/images/edits");
    net_request *r = net_request_new("POST", url);
    free(url);
    provider_remote_auth(r, key);
    net_request_header(r, "Accept: application/json");

    const char *model = job->model->provider_model[0] ? job->model->provider_model : "gpt-image-1";
    char n[16];
    snprintf(n, sizeof n, "%d", job->model->outputs > 0 ? job->model->outputs : 1);
    const gen_params *p = &job->gen->params;
    net_request_part(r, "model", NULL, NULL, model, strlen(model));
    add_images(r, "product", job->products, job->n_products);
    add_images(r, "model", job->models, job->n_models);
    const char *prompt = job->gen->prompt ? job->gen->prompt : "";
    net_request_part(r, "prompt", NULL, NULL, prompt, strlen(prompt));
    const char *size = size_for(p->aspect_ratio);
    net_request_part(r, "size", NULL, NULL, size, strlen(size));
    const char *quality = p->quality[0] ? p->quality : "auto";
    net_request_part(r, "quality", NULL, NULL, quality, strlen(quality));
    net_request_part(r, "n", NULL, NULL, n, strlen(n));

    net_request_limits(r, provider_remote_timeout_ms(), PROVIDER_REMOTE_MAX_BYTES);
    net_request_cancel_flag(r, &job->cancel_requested);
    job->on_progress(job, PROGRESS_SENT);
    net_submit(r, openai_done, job);
    return 0;
}

static void openai_cancel(provider_job *job)
{
    (void)job; /* cancel_requested is the request's cancel flag */
}

const provider_ops provider_openai_ops = {
    .name = "openai",
    .start = openai_start,
    .cancel = openai_cancel,
};
