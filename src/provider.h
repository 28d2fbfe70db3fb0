/*
 * provider — the models a user can pick and the image providers behind them.
 *
 * DESIGN. A provider job is asynchronous in shape: start() returns at once
 * or after doing the work, and the provider reports through the job's
 * callbacks, from any thread, exactly one on_done per started job. The
 * built-in `local` provider renders on the calling worker thread (it is
 * CPU-bound); remote providers (later: OpenAI, Replicate) will start an
 * HTTP transfer on a shared curl-multi thread and return, so a few threads
 * can keep many remote calls in flight. cancel() asks a running job to stop;
 * its on_done then reports PROVIDER_CANCELLED (or its real result if it
 * had already finished).
 *
 * Rules for provider authors (queue.c relies on them):
 *  - outputs passed to on_done is a malloc'd array: the receiver frees each
 *    image with provider_image_free, then the array with free.
 *  - cancel() may run on another thread while start() is still running; it
 *    must not call on_done itself, and no lock cancel() takes may be held
 *    while calling on_done.
 *  - when the generation is cancelled or its lease lost, the queue only sets
 *    cancel_requested (from on_progress or the lease keeper): long transfers
 *    must check it.
 */
#ifndef SS_PROVIDER_H
#define SS_PROVIDER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "generation.h"

/* One catalogue entry (models.json; provider_catalog.c validates it). The
 * strings and JSON belong to the catalogue and live as long as it does
 * (until the next provider_catalog_load). */
typedef struct model_info {
    const char *id;
    const char *name;
    const char *description;
    const char *provider;       /* "local" | "openai" | "replicate" | "bench" */
    const char *provider_model; /* openai: "gpt-image-1"; replicate: "owner/name"; else NULL */
    const char *version;        /* replicate: a pinned version id, or NULL */
    int base_cost;
    int max_product_images;
    int min_model_images; /* a create must give at least this many (a try-on needs a person) */
    int max_model_images;
    int outputs;         /* result images per generation */
    int max_in_flight;   /* remote calls of its provider in flight at once; local ignores it */
    int typical_seconds; /* typical processing time (the ETA before there is any history) */
    json_t *parameters;  /* array of the create parameter names it honours ("seed", ...) */
    json_t *input;       /* replicate: the input template (provider_template_render); else NULL */
    bool hidden;         /* never listed; exists only when enabled (bench-instant) */
} model_info;

/* ---- the catalogue (provider_catalog.c) ---- */

/* Loads the model catalogue from `path` (--models), or from the
 * models.json embedded at build time when path is NULL or "". Every entry
 * is validated (SPEC §7; the format is described in provider_catalog.c):
 * on any problem returns -1 with *err (caller frees) naming the model and
 * the field, and the catalogue in force stays as it was. 0 on success.
 * Call at start, before other threads read the catalogue (model_info
 * pointers from an earlier catalogue die with it). Without a call, the
 * first reader loads the embedded one. */
int provider_catalog_load(const char *path, char **err);
/* The same from JSON text; source names it in messages. */
int provider_catalog_load_text(const char *text, const char *source, char **err);

/* Every model of the catalogue, available or not (hidden ones included:
 * skip m->hidden when listing). */
size_t provider_models(const model_info **list);
/* NULL for an unknown id, and for bench-instant unless it is enabled. */
const model_info *provider_model_find(const char *id);
/* Whether the model runs at a hosted provider (its calls are bounded by
 * the catalogue's maxInFlight and its results fitted to the aspect ratio)
 * rather than on a worker thread. */
bool provider_is_remote(const model_info *m);
/* Whether the model can run on this server: its provider's credentials
 * are set and its adapter is built in. *why (static text, never a secret)
 * says why not. */
bool provider_model_available(const model_info *m, const char **why);

/* ---- input templates (provider_template.c) ----
 * A template is any JSON value. Strings may hold placeholders {path}:
 *   prompt  customPrompt  model  style  quality  aspectRatio  outputs
 *   productImages[N]  modelImages[N]  productImages  modelImages (arrays)
 *   parameters.seed  parameters.guidance_scale
 *   parameters.num_inference_steps  parameters.strength
 * A string that is exactly one placeholder becomes that value with its
 * type (a number stays a number, an image list an array); when the value
 * is absent (no custom prompt, fewer images) the object key or array
 * element is left out. Placeholders inside longer text are interpolated
 * (absent → empty); "{{" and "}}" are literal braces. Every other value
 * passes through as it is. */

/* Checks a template against a model: every placeholder names a field, an
 * image index is below the model's maximum, lists stand alone. -1 with
 * *err (caller frees; says where, e.g. "input.seed: ..."), or 0. */
int provider_template_check(const json_t *tmpl, const model_info *m, char **err);
/* Renders a checked template for a record into a new JSON value (caller
 * owns it). Image placeholders give the record's URLs. */
json_t *provider_template_render(const json_t *tmpl, const gen_record *g, const model_info *m);

/* An encoded image in memory. data is owned by whoever holds the struct
 * (free with provider_image_free). format: "jpeg" | "png" | "webp". */
typedef struct provider_image {
    unsigned char *data;
    size_t len;
    char format[8];
    int width, height;
} provider_image;

void provider_image_free(provider_image *img);

/* What a provider job ended with (on_done's result). gen_state.c decides
 * what each means for the generation (retry or fail, and its errorCode). */
enum {
    PROVIDER_OK = 0,
    PROVIDER_TRANSIENT = -1, /* worth retrying: 429, 5xx, timeouts, connection errors */
    PROVIDER_REJECTED = -2,  /* retrying will not help: content policy, a validation 4xx,
                                a failed prediction */
    PROVIDER_CANCELLED = -3, /* stopped because cancel_requested was set */
    PROVIDER_MALFORMED = -4, /* an answer we cannot use: bad JSON, no images, an
                                undecodable image; retried like TRANSIENT */
    PROVIDER_INPUT = -5,     /* an input image cannot be read: fails at once */
};

typedef struct provider_job provider_job;
struct provider_job {
    /* Inputs, owned by the caller and valid until on_done returns. */
    const gen_record *gen;
    const model_info *model;
    const provider_image *products;
    size_t n_products;
    const provider_image *models;
    size_t n_models;

    /* progress: 0..100 within the generating stage. Must be quick. */
    void (*on_progress)(provider_job *job, int progress);
    /* Exactly once per started job. On PROVIDER_OK, outputs (n ≥ 1) pass to
     * the callee, which frees them; otherwise outputs is NULL and error a
     * message for the user (borrowed for the call). */
    void (*on_done)(provider_job *job, int result, provider_image *outputs, size_t n_outputs,
                    const char *error);

    /* A provider may set this before on_done (e.g. a 429's Retry-After):
     * the next attempt then waits at least this long. 0: no opinion. */
    int64_t retry_after_ms;

    atomic_bool cancel_requested; /* set by provider_cancel */
    void *owner;                  /* the caller's own pointer */
    void *state;                  /* the provider's own pointer */
};

typedef struct provider_ops {
    const char *name;
    /* 0 when started (on_done will follow, possibly before start returns);
     * negative when it could not start (on_done is then not called). */
    int (*start)(provider_job *job);
    void (*cancel)(provider_job *job);
} provider_ops;

/* The ops that run a model: NULL when it is not available (no credential,
 * or no adapter registered in provider.c's table). With --test-faults set,
 * the test-fault wrapper around them (provider_faults.c). */
const provider_ops *provider_for(const model_info *m);
/* The registered ops themselves, never wrapped (what the wrapper calls). */
const provider_ops *provider_unwrapped_for(const model_info *m);
/* Sets job->cancel_requested and calls the provider's cancel. */
void provider_cancel(const provider_ops *ops, provider_job *job);

/* ---- credentials (provider.c) ----
 * From the environment only, read once at start. Never log them, never
 * put them in an error, a record or the database. */
typedef enum provider_secret_id {
    PROVIDER_SECRET_OPENAI,            /* OPENAI_API_KEY */
    PROVIDER_SECRET_REPLICATE,         /* REPLICATE_API_TOKEN */
    PROVIDER_SECRET_REPLICATE_WEBHOOK, /* REPLICATE_WEBHOOK_SECRET */
    PROVIDER_SECRET_COUNT,
} provider_secret_id;

/* Reads the variables above (again: tests). main calls it once at start. */
void provider_secrets_load(void);
/* The secret, or NULL when unset or empty. Borrowed: valid until the next
 * provider_secrets_load. For the adapters only. */
const char *provider_secret(provider_secret_id id);

/* ---- test faults (provider_faults.c): tests only ---- */

/* Wraps the registered provider of job->model, injecting the faults of
 * cfg.test_faults (the item list is in provider_faults.c and docs/api.md). */
extern const provider_ops provider_faults_ops;
/* Whether cfg.test_faults asks for any fault (re-read when it changes). */
bool provider_faults_enabled(void);
/* start_delay_ms of --test-faults (0 when unset): serve's start-up window. */
int provider_faults_start_delay_ms(void);

/* ---- hosted models (provider_openai.c, provider_replicate.c) ---- */

extern const provider_ops provider_openai_ops;
extern const provider_ops provider_replicate_ops;

enum {
    PROVIDER_WEBHOOK_EBADSIG = -1,       /* signature, id or timestamp missing or wrong */
    PROVIDER_WEBHOOK_EUNCONFIGURED = -2, /* REPLICATE_WEBHOOK_SECRET is not set */
    PROVIDER_WEBHOOK_EUNKNOWN = -3,      /* signed, but no prediction of ours is waiting */
};

/* Replicate's webhook for a prediction (POST /api/providers/replicate/
 * webhook): verifies the Standard Webhooks signature (webhook-id,
 * webhook-timestamp within 5 minutes, webhook-signature) with
 * REPLICATE_WEBHOOK_SECRET, then wakes the job waiting on that prediction
 * so it reads the outcome now instead of at its next poll. 0 or
 * PROVIDER_WEBHOOK_E*. Any thread; quick. */
int provider_replicate_webhook(const char *id, const char *timestamp, const char *signature,
                               const char *body, size_t body_len);

/* ---- bench-instant (provider_bench.c): benchmarks only ---- */

extern const provider_ops provider_bench_ops;

/* ---- local-studio (provider_local.c) ---- */

extern const provider_ops provider_local_ops;

/* Output size in pixels for an aspect ratio and quality: the long side is
 * 1024 (1536 for high). */
void provider_local_size(const char *aspect_ratio, const char *quality, int *width, int *height);

/* Renders one image synchronously (what the local provider's start does for
 * each output; also used by bench/). variant picks the composition among
 * the outputs of one generation. Returns PROVIDER_OK with *out filled
 * (caller frees), or PROVIDER_INPUT (an input cannot be decoded) or
 * PROVIDER_REJECTED with *error (caller frees). */
int provider_local_render(const gen_params *p, const provider_image *products, size_t n_products,
                          const provider_image *models, size_t n_models, int variant,
                          const atomic_bool *cancel, void (*progress)(void *ctx, int pct),
                          void *progress_ctx, provider_image *out, char **error);

#endif
