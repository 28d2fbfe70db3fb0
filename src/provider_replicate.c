/*
 * provider_replicate — models hosted on Replicate (SPEC §7): create a
 * prediction (POST {base}/v1/models/{owner}/{name}/predictions, or
 * {base}/v1/predictions with a pinned version) with the input the
 * catalogue's template makes of the record and `Prefer: wait=5`; follow it
 * by polling urls.get with backoff — or, when REPLICATE_WEBHOOK_SECRET is
 * set, let Replicate's webhook (POST /api/providers/replicate/webhook,
 * provider_replicate_webhook) cut the wait short; forward a user's cancel
 * to urls.cancel; download the outputs under the address rules.
 *
 * DESIGN. A job is a small state machine driven entirely by net callbacks
 * on the net thread: CREATE → POLL (a delayed GET, re-armed after each
 * answer) → DOWNLOAD (one GET per output, all at once) → on_done. Nothing
 * blocks and no thread is held while Replicate works. Progress comes from
 * the percentages the model prints in its logs. A cancel raises
 * job->cancel_requested, the cancel flag of whatever request is in flight;
 * that request ends NET_ECANCELLED and, once a prediction exists, its
 * urls.cancel is posted before on_done reports PROVIDER_CANCELLED. The
 * table of running predictions (by id, under `calls.mu`) lets a webhook,
 * which arrives on an HTTP thread, raise a call's wake flag.
 */
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "log.h"
#include "provider.h"
#include "provider_remote.h"
#include "util.h"
#include "webhook.h"

#define PROGRESS_CREATED 5
#define PROGRESS_DOWNLOADING 95
#define POLL_FIRST_MS 500
#define POLL_MAX_MS 5000
#define POLL_MAX_MS_WITH_WEBHOOK 15000
#define POLL_ERRORS_MAX 5 /* consecutive failed polls before the job fails transiently */
#define OUTPUT_MAX_BYTES (32 * 1024 * 1024)
#define WEBHOOK_TOLERANCE_S 300

typedef struct call call;

/* One output download: which call, which slot. */
typedef struct slot {
    call *c;
    size_t idx;
} slot;

struct call {
    call *next; /* in calls.list while a prediction exists */
    provider_job *job;
    char id[128];
    char *get_url, *cancel_url;
    int polls, poll_errors;
    int64_t deadline; /* mono ms */
    atomic_bool wake;
    /* Ending through urls.cancel: what to report once it is sent. */
    int end_result;
    const char *end_error; /* static text */
    /* DOWNLOAD */
    provider_image *outs;
    slot *slots;
    size_t n_out, n_pending;
    int dl_result;
    char *dl_error;
};

static struct {
    pthread_mutex_t mu;
    call *list;
} calls = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void on_prediction(net_request *r, net_response *resp, void *ctx);

/* ---- helpers ---- */

static void add_auth(net_request *r)
{
    provider_remote_auth(r, provider_secret(PROVIDER_SECRET_REPLICATE));
}

static void table_add(call *c)
{
    pthread_mutex_lock(&calls.mu);
    c->next = calls.list;
    calls.list = c;
    pthread_mutex_unlock(&calls.mu);
}

static void table_remove(call *c)
{
    pthread_mutex_lock(&calls.mu);
    for (call **pp = &calls.list; *pp; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    pthread_mutex_unlock(&calls.mu);
}

/* Ends the job: the call leaves the table and is freed; on_done last. */
static void finish(call *c, int result, provider_image *outs, size_t n, const char *error)
{
    provider_job *job = c->job;
    table_remove(c);
    if (result != PROVIDER_OK && result != PROVIDER_CANCELLED)
        log_warn("generation %s: Replicate prediction %s: %s", job->gen->id,
                 c->id[0] ? c->id : "(not created)", error ? error : "failed");
    free(c->get_url);
    free(c->cancel_url);
    free(c->dl_error);
    free(c->slots);
    free(c);
    job->on_done(job, result, outs, n, error);
}

/* The highest "NN%" a progress bar printed in the logs, or -1. */
static int logs_percent(const char *logs)
{
    int best = -1;
    for (const char *p = logs ? strchr(logs, '%') : NULL; p; p = strchr(p + 1, '%')) {
        const char *s = p;
        while (s > logs && s[-1] >= '0' && s[-1] <= '9' && p - s < 3)
            s--;
        if (s == p) continue;
        int v = atoi(s);
        if (v >= 0 && v <= 100 && v > best) best = v;
    }
    return best;
}

/* ---- cancel ---- */

static void on_cancel_sent(net_request *r, net_response *resp, void *ctx)
{
    (void)r;
    call *c = ctx;
    if (resp->error != NET_OK || resp->status >= 300)
        log_warn("generation %s: Replicate did not confirm the cancel of %s (%s, HTTP %ld)",
                 c->job->gen->id, c->id, resp->reason ? resp->reason : "answered", resp->status);
    finish(c, c->end_result, NULL, 0, c->end_error);
}

/* Stops the prediction at Replicate (when there is one), then ends the job
 * with result and error (static text). */
static void stop_prediction(call *c, int result, const char *error)
{
    c->end_result = result;
    c->end_error = error;
    if (!c->cancel_url) {
        finish(c, result, NULL, 0, error);
        return;
    }
    net_request *r = net_request_new("POST", c->cancel_url);
    add_auth(r);
    net_request_limits(r, 15000, 0);
    net_submit(r, on_cancel_sent, c);
}

/* ---- download ---- */

static void on_output(net_request *r, net_response *resp, void *ctx);

static void download_outputs(call *c, json_t *output)
{
    json_t *urls = json_is_string(output) ? json_pack("[O]", output) : json_incref(output);
    size_t n = json_array_size(urls);
    for (size_t i = 0; i < n; i++)
        if (!json_is_string(json_array_get(urls, i))) n = 0;
    if (n == 0) {
        json_decref(urls);
        finish(c, PROVIDER_MALFORMED, NULL, 0, "Replicate returned no image");
        return;
    }
    c->job->on_progress(c->job, PROGRESS_DOWNLOADING);
    c->outs = xcalloc(n, sizeof *c->outs);
    c->slots = xcalloc(n, sizeof *c->slots);
    c->n_out = c->n_pending = n;
    c->dl_result = PROVIDER_OK;
    for (size_t i = 0; i < n; i++) {
        c->slots[i] = (slot){.c = c, .idx = i};
        net_request *r = net_request_new("GET", json_string_value(json_array_get(urls, i)));
        net_request_header(r, "Accept: image/png, image/jpeg, image/webp");
        net_request_limits(r, provider_remote_timeout_ms(), OUTPUT_MAX_BYTES);
        net_request_redirects(r, 3);
        net_request_cancel_flag(r, &c->job->cancel_requested);
        net_submit(r, on_output, &c->slots[i]);
    }
    json_decref(urls);
}

static void on_output(net_request *r, net_response *resp, void *ctx)
{
    (void)r;
    slot *sl = ctx;
    call *c = sl->c;
    provider_image *img = &c->outs[sl->idx];
    const char *fmt =
        resp->error == NET_OK && resp->status >= 200 && resp->status < 300
            ? provider_remote_sniff((const unsigned char *)resp->body.data, resp->body.len)
            : NULL;
    if (fmt) {
        img->data = (unsigned char *)resp->body.data;
        img->len = resp->body.len;
        snprintf(img->format, sizeof img->format, "%s", fmt);
        memset(&resp->body, 0, sizeof resp->body);
    } else if (c->dl_result == PROVIDER_OK) {
        bool cancelled = resp->error == NET_ECANCELLED;
        c->dl_result = cancelled ? PROVIDER_CANCELLED : PROVIDER_MALFORMED;
        c->dl_error = cancelled ? xstrdup("cancelled")
                                : xasprintf("Replicate's output %zu could not be downloaded (%s)",
                                            sl->idx + 1,
                                            resp->error == NET_OK ? "not an image" : resp->reason);
    }
    if (--c->n_pending > 0) return;
    provider_image *outs = c->outs;
    size_t n = c->n_out;
    c->outs = NULL;
    if (c->dl_result == PROVIDER_OK) {
        finish(c, PROVIDER_OK, outs, n, NULL);
        return;
    }
    for (size_t i = 0; i < n; i++)
        provider_image_free(&outs[i]);
    free(outs);
    char *error = c->dl_error;
    c->dl_error = NULL;
    finish(c, c->dl_result, NULL, 0, error);
    free(error);
}

/* ---- create and poll ---- */

static void poll_later(call *c)
{
    int64_t cap =
        provider_secret(PROVIDER_SECRET_REPLICATE_WEBHOOK) ? POLL_MAX_MS_WITH_WEBHOOK : POLL_MAX_MS;
    int64_t delay = POLL_FIRST_MS << (c->polls < 5 ? c->polls : 5);
    if (delay > cap) delay = cap;
    c->polls++;
    net_request *r = net_request_new("GET", c->get_url);
    add_auth(r);
    net_request_limits(r, 30000, PROVIDER_REMOTE_MAX_BYTES);
    net_request_delay(r, delay);
    net_request_cancel_flag(r, &c->job->cancel_requested);
    net_request_wake_flag(r, &c->wake);
    net_submit(r, on_prediction, c);
}

/* Reads id and urls from a prediction the first time they appear. */
static void learn_urls(call *c, json_t *pred)
{
    json_t *urls = json_object_get(pred, "urls");
    const char *get = json_string_value(json_object_get(urls, "get"));
    const char *cancel = json_string_value(json_object_get(urls, "cancel"));
    const char *id = json_string_value(json_object_get(pred, "id"));
    if (!c->id[0] && id) {
        snprintf(c->id, sizeof c->id, "%s", id);
        table_add(c);
    }
    if (!c->get_url && get) c->get_url = xstrdup(get);
    if (!c->cancel_url && cancel) c->cancel_url = xstrdup(cancel);
}

/* The answer to the create or to a poll. */
static void on_prediction(net_request *r, net_response *resp, void *ctx)
{
    (void)r;
    call *c = ctx;
    bool creating = c->get_url == NULL;
    /* A webhook from now on cuts the next wait short. */
    atomic_store(&c->wake, false);
    json_t *pred = resp->body.len ? json_loadb(resp->body.data, resp->body.len, 0, NULL) : NULL;
    const char *detail = json_string_value(json_object_get(pred, "detail"));
    char *error = NULL;
    int result = provider_remote_outcome(c->job, resp, "Replicate", detail, &error);

    if (result == PROVIDER_CANCELLED || atomic_load(&c->job->cancel_requested)) {
        if (json_is_object(pred)) learn_urls(c, pred);
        stop_prediction(c, PROVIDER_CANCELLED, "cancelled");
        goto cleanup;
    }
    if (result == PROVIDER_TRANSIENT && !creating && ++c->poll_errors < POLL_ERRORS_MAX) {
        poll_later(c); /* a poll that failed is just tried again */
        goto cleanup;
    }
    if (result == PROVIDER_OK && !json_is_object(pred)) {
        result = PROVIDER_MALFORMED;
        free(error);
        error = xstrdup("Replicate sent an answer that is not JSON");
    }
    if (result != PROVIDER_OK) {
        finish(c, result, NULL, 0, error);
        goto cleanup;
    }
    c->poll_errors = 0;
    learn_urls(c, pred);
    const char *status = json_string_value(json_object_get(pred, "status"));
    if (str_eq(status, "succeeded")) {
        download_outputs(c, json_object_get(pred, "output"));
    } else if (str_eq(status, "failed")) {
        const char *why = json_string_value(json_object_get(pred, "error"));
        char *msg =
            xasprintf("the Replicate prediction failed%s%s", why ? ": " : "", why ? why : "");
        finish(c, PROVIDER_REJECTED, NULL, 0, msg);
        free(msg);
    } else if (str_eq(status, "canceled")) {
        finish(c, PROVIDER_REJECTED, NULL, 0, "the prediction was cancelled at Replicate");
    } else if ((str_eq(status, "starting") || str_eq(status, "processing")) && c->get_url) {
        if (mono_ms() > c->deadline) {
            /* Too long: stop it at Replicate, then count a transient failure. */
            stop_prediction(c, PROVIDER_TRANSIENT, "Replicate did not finish in time");
            goto cleanup;
        }
        int pct = logs_percent(json_string_value(json_object_get(pred, "logs")));
        if (pct >= 0)
            c->job->on_progress(c->job, PROGRESS_CREATED +
                                            pct * (PROGRESS_DOWNLOADING - PROGRESS_CREATED) / 100);
        poll_later(c);
    } else {
        finish(c, PROVIDER_MALFORMED, NULL, 0, "Replicate sent a prediction in an unknown state");
    }
cleanup:
    json_decref(pred);
    free(error);
}

static int replicate_start(provider_job *job)
{
    const model_info *m = job->model;
    bool pinned = m->version && *m->version;
    if (!provider_secret(PROVIDER_SECRET_REPLICATE) || (!pinned && !m->provider_model)) return -1;
    json_t *input = provider_template_render(m->input, job->gen, m);
    if (!json_is_object(input)) {
        json_decref(input);
        return -1;
    }
    char *url;
    json_t *body = json_pack("{s:o}", "input", input);
    if (pinned) {
        url = provider_remote_url(cfg.replicate_base_url, "/v1/predictions");
        json_object_set_new(body, "version", json_string(m->version));
    } else {
        char *path = xasprintf("/v1/models/%s/predictions", m->provider_model);
        url = provider_remote_url(cfg.replicate_base_url, path);
        free(path);
    }
    if (provider_secret(PROVIDER_SECRET_REPLICATE_WEBHOOK) && cfg.public_url) {
        char *hook = xasprintf("%s/api/providers/replicate/webhook", cfg.public_url);
        json_object_set_new(body, "webhook", json_string(hook));
        json_object_set_new(body, "webhook_events_filter", json_pack("[s]", "completed"));
        free(hook);
    }
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);

    call *c = xcalloc(1, sizeof *c);
    c->job = job;
    c->deadline = mono_ms() + provider_remote_timeout_ms();
    atomic_init(&c->wake, false);
    net_request *r = net_request_new("POST", url);
    free(url);
    add_auth(r);
    net_request_header(r, "Prefer: wait=5");
    net_request_body(r, "application/json", text, strlen(text));
    free(text);
    net_request_limits(r, 60000, PROVIDER_REMOTE_MAX_BYTES);
    /* No cancel flag on the create: a prediction may exist once it is
     * sent, and only its answer says which one to cancel (on_prediction
     * sees the cancel and posts urls.cancel). */
    job->on_progress(job, PROGRESS_CREATED);
    net_submit(r, on_prediction, c);
    return 0;
}

static void replicate_cancel(provider_job *job)
{
    (void)job; /* cancel_requested is the in-flight request's cancel flag */
}

const provider_ops provider_replicate_ops = {
    .name = "replicate",
    .start = replicate_start,
    .cancel = replicate_cancel,
};

/* ---- the webhook ---- */

int provider_replicate_webhook(const char *id, const char *timestamp, const char *signature,
                               const char *body, size_t body_len)
{
    const char *secret = provider_secret(PROVIDER_SECRET_REPLICATE_WEBHOOK);
    if (!secret) return PROVIDER_WEBHOOK_EUNCONFIGURED;
    if (!id || !timestamp || !signature) return PROVIDER_WEBHOOK_EBADSIG;
    char *end;
    long long ts = strtoll(timestamp, &end, 10);
    long long now = (long long)(now_ms() / 1000);
    if (*end || end == timestamp || ts < now - WEBHOOK_TOLERANCE_S ||
        ts > now + WEBHOOK_TOLERANCE_S)
        return PROVIDER_WEBHOOK_EBADSIG;
    if (!webhook_verify(secret, id, ts, body, body_len, signature)) return PROVIDER_WEBHOOK_EBADSIG;
    json_t *pred = json_loadb(body, body_len, 0, NULL);
    const char *pid = json_string_value(json_object_get(pred, "id"));
    bool found = false;
    pthread_mutex_lock(&calls.mu);
    for (call *c = calls.list; c && pid; c = c->next)
        if (strcmp(c->id, pid) == 0) {
            atomic_store(&c->wake, true); /* its delayed poll starts now */
            found = true;
        }
    pthread_mutex_unlock(&calls.mu);
    json_decref(pred);
    return found ? 0 : PROVIDER_WEBHOOK_EUNKNOWN;
}
