/*
 * generation — the generation record and the rules around it: statuses and
 * the state machine, request validation, cost, and the record's JSON shape
 * (SPEC §4). The record type and its JSON live in gen_record.c; validation
 * and cost in generation.c; the prompt in prompt.c.
 */
#ifndef SS_GENERATION_H
#define SS_GENERATION_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "ids.h"

typedef enum gen_status {
    GEN_PENDING,
    GEN_PROCESSING,
    GEN_COMPLETED,
    GEN_FAILED,
    GEN_CANCELLED,
} gen_status;

#define GEN_STATUS_COUNT 5

const char *gen_status_name(gen_status s);
/* 0 and *out set, or -1 if the name is unknown. */
int gen_status_parse(const char *name, gen_status *out);
bool gen_status_terminal(gen_status s);

/* Stages. Inside processing: queued → fetching_inputs → generating → storing.
 * Outside it the stage repeats the status ("pending", "completed", ...). */
#define STAGE_QUEUED "queued"
#define STAGE_FETCHING "fetching_inputs"
#define STAGE_GENERATING "generating"
#define STAGE_STORING "storing"

enum gen_priority { PRIORITY_NORMAL = 0, PRIORITY_HIGH = 1 };

typedef struct gen_params {
    char model[48];
    char style[16];       /* realistic | artistic | minimal */
    char quality[8];      /* auto | high | medium | low */
    char aspect_ratio[8]; /* 1:1 16:9 9:16 3:2 2:3 4:3 3:4 4:5 */
    double guidance_scale;
    int num_inference_steps;
    double strength;
    int64_t seed;
    char background[12];   /* auto | transparent | opaque ("" = auto) */
    char output_format[8]; /* jpeg | png | webp ("" = the default: jpeg, png when transparent) */
} gen_params;

/* One generation. String and JSON members are owned by the record and freed
 * by gen_record_free. Times are ms since the epoch, 0 when unset. */
typedef struct gen_record {
    char id[ID_LEN];
    char user_id[ID_LEN];
    gen_status status;
    json_t *product_images; /* array of URL strings, never NULL once loaded */
    json_t *model_images;   /* array, possibly empty */
    json_t *result_images;  /* array, possibly empty */
    char *prompt;
    char *custom_prompt; /* NULL when none */
    gen_params params;
    int priority; /* enum gen_priority */
    int tokens_used;
    int retry_count;
    int progress; /* 0..100, never decreases */
    char stage[24];
    int64_t created_at, started_at, completed_at, processing_time;
    char *error;           /* NULL when none */
    char error_code[24];   /* errorCode (gen_state.h GEN_ERR_*), "" when none */
    char batch_id[ID_LEN]; /* "" when none */
    char retry_of[ID_LEN]; /* "" when none */
    int queue_position;    /* 1-based while stage is queued, else 0 */
} gen_record;

void gen_record_free(gen_record *g);
/* The SPEC §4 JSON shape. Caller owns the result. */
json_t *gen_record_to_json(const gen_record *g);
/* How the store writes event data (store.h): the record's JSON shape, and
 * {"tokenBalance": N}. */
struct store_codec;
extern const struct store_codec gen_record_codec;
/* The shape of parameters{} alone. Caller owns the result. */
json_t *gen_params_to_json(const gen_params *p);

/* ---- validation and cost (generation.c) ---- */

/* What a validated create body becomes; owned members freed by
 * gen_request_free. */
typedef struct gen_request {
    json_t *product_images; /* array of strings */
    json_t *model_images;   /* array of strings (maybe empty) */
    char *custom_prompt;    /* NULL when absent or empty */
    gen_params params;      /* defaults filled in; seed drawn when absent */
    int priority;
} gen_request;

void gen_request_free(gen_request *r);

/* Error codes of gen_request_parse. */
enum {
    GEN_EINVALID = -1, /* VALIDATION_ERROR: *errors lists every broken field */
    GEN_EMODEL = -2,   /* MODEL_ERROR: unknown or unavailable model; *message says which */
};

/* Validates a create body (SPEC §4) and fills *out. `user_is_pro` gates
 * priority "high". On GEN_EINVALID, *errors is a new JSON array of
 * {field, message}; on GEN_EMODEL, *message is a new string. Image URLs are
 * checked for shape here (http/https, ≤ 2048 chars); reachability and
 * address rules are media.c's job. Caller owns *errors / *message. */
int gen_request_parse(const json_t *body, bool user_is_pro, gen_request *out, json_t **errors,
                      char **message);

/* An Idempotency-Key is remembered this long (SPEC §4). */
#define GEN_IDEMPOTENCY_KEEP_MS (24LL * 3600 * 1000)

/* estimatedCost = ceil(baseCost × qualityMultiplier). */
int gen_cost(int base_cost, const char *quality);

/* ---- prompt (prompt.c) ---- */

/* The optimized prompt for a request (SPEC §4, the original product's
 * templates). Caller frees. */
char *prompt_build(const gen_params *p, int n_product_images, int n_model_images,
                   const char *custom_prompt);

#endif
