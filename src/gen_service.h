/*
 * gen_service — the generation use cases, between the API and the
 * store/queue: create (step 1), start (step 2), create-and-start (the
 * legacy one-step form), get, cancel, retry and delete (SPEC §4).
 *
 * It owns the rules: validation (gen_request_parse), the image checks
 * (media.c: shape, address rules, fetch and decode of remote images), cost,
 * prompt, idempotency (the Idempotency-Key, the request hash, the replay
 * envelope stored with the create), writing through the store, and waking
 * the queue or cancelling a running job. It knows nothing of HTTP: a
 * request comes in as a gen_service_req, the answer goes out as a
 * gen_service_result (status, HTTP status, reply data or error), and the
 * API encodes it.
 *
 * DESIGN (threads). Every function is thread-safe and may block on the
 * store. A create runs in two phases so the caller can move the second to
 * threads that may wait on remote hosts: gen_service_prepare checks the
 * Idempotency-Key and validates the body (quick); gen_service_finish checks
 * the images (fetching and decoding those not on this server), then
 * charges and writes the record and wakes the queue. gen_service_needs_fetch
 * says whether finish will fetch. gen_service_create and
 * gen_service_create_and_start run both phases in one call.
 */
#ifndef SS_GEN_SERVICE_H
#define SS_GEN_SERVICE_H

#include <jansson.h>
#include <stdbool.h>

#include "generation.h"
#include "ids.h"
#include "ratelimit.h"
#include "store.h"

#define GEN_SERVICE_IDEM_KEY_MAX 255
/* Whether an Idempotency-Key header value is acceptable (1 to 255 bytes). */
bool gen_service_idem_key_ok(const char *key);

/* Statuses: GEN_SVC_OK or a negative error, each one SPEC §1 code. */
typedef enum gen_service_status {
    GEN_SVC_OK = 0,
    GEN_SVC_EVALIDATION = -1,   /* 400 VALIDATION_ERROR */
    GEN_SVC_EIMAGE = -2,        /* 400 IMAGE_VALIDATION_ERROR */
    GEN_SVC_EMODEL = -3,        /* 400 MODEL_ERROR */
    GEN_SVC_EINSUFFICIENT = -4, /* 400 INSUFFICIENT_TOKENS: nothing charged */
    GEN_SVC_ESTATUS = -5,       /* 400 INVALID_GENERATION_STATUS */
    GEN_SVC_EFORBIDDEN = -6,    /* 403 UNAUTHORIZED: another user's generation */
    GEN_SVC_ENOTFOUND = -7,     /* 404 GENERATION_NOT_FOUND */
    GEN_SVC_ENOUSER = -8,       /* 404 NOT_FOUND: the caller's account is gone */
    GEN_SVC_EIDEM_REUSED = -9,  /* 409 IDEMPOTENCY_KEY_REUSED */
    GEN_SVC_EINTERNAL = -10,    /* 500 INTERNAL_SERVER_ERROR: nothing was changed */
    GEN_SVC_EUNAVAILABLE = -11, /* 503 SERVICE_UNAVAILABLE: the store is unreachable now */
    GEN_SVC_ERATE = -20,        /* 429 RATE_LIMIT_EXCEEDED: nothing charged, no unit used */
    GEN_SVC_EQUEUE_FULL = -12,  /* 503 QUEUE_FULL: --queue-max reached; nothing charged */
    GEN_SVC_ENOBATCH = -13,     /* 404 NOT_FOUND: no batch with that id */
} gen_service_status;

/* The SPEC §1 code of a status: NULL for GEN_SVC_OK,
 * "INTERNAL_SERVER_ERROR" for a status this module does not know. */
const char *gen_service_code(int status);

/* A decoded request. The caller fills the inputs its action needs; the
 * struct owns every pointer in it (release with gen_service_req_free).
 *   create / create-and-start: body, and idem_key + request_hash when the
 *     client sent an Idempotency-Key;
 *   start / get / cancel / retry / delete: gen_id. */
typedef struct gen_service_req {
    json_t *body;                       /* the create body (a reference owned here) */
    char *idem_key;                     /* the Idempotency-Key as sent, or NULL */
    char request_hash[SECRET_HASH_LEN]; /* gen_service_request_hash, when idem_key */
    char *gen_id;                       /* the generation acted on */
    char request_id[ID_LEN];            /* for log lines; "" when none */
    bool reply_early;                   /* a create or a start: the caller holds its
                                         * answer, not its thread, until the write is
                                         * durable (pending) */
    gen_request parsed;                 /* set by gen_service_prepare */
    bool prepared;                      /* parsed is valid */
} gen_service_req;

void gen_service_req_free(gen_service_req *req);

/* What to answer. Every pointer in it is owned by the result (release with
 * gen_service_result_free); a caller that takes one sets it to NULL. */
typedef struct gen_service_result {
    int status;                /* GEN_SVC_OK or a GEN_SVC_E*; also each call's return value */
    int http_status;           /* the HTTP status to answer with */
    json_t *data;              /* OK: the reply's `data` (NULL on a replay) */
    char *replay;              /* OK, Idempotency-Key replay: the first answer's body as is */
    char *message;             /* error: the human message */
    json_t *validation_errors; /* error: [{field, message}], or NULL */
    gen_record gen;            /* OK: the generation concerned (zeroed when none) */
    ratelimit_verdict rate;    /* a create's rate limit as it stands after the call
                                * (rate.applies: send the RateLimit-* headers) */
    store_pending *pending;    /* a create asked with reply_early: hold the answer until
                                * store_when_durable says (freeing the result without
                                * taking it waits for nothing) */
} gen_service_result;

void gen_service_result_free(gen_service_result *res);

/* Call once before any other function; the store is borrowed and must
 * outlive every call. */
void gen_service_init(store_t *s);

/* The idempotency hash of a create: scope (which kind of create, e.g. the
 * route's path) and the body's canonical JSON (compact, sorted keys). The
 * same key with another hash is IDEMPOTENCY_KEY_REUSED. */
void gen_service_request_hash(const char *scope, const json_t *body, char out[SECRET_HASH_LEN]);

/* QUEUE_FULL (SPEC §4): GEN_SVC_OK when n more generations may be queued
 * (queued ones, not running, plus n stay within --queue-max), else
 * GEN_SVC_EQUEUE_FULL in *out. For every route that queues (generate in
 * either form, and a batch or template start), checked before anything is
 * created or charged. The count is read on the claim index (queued rows
 * only) just before the write, not inside it: concurrent requests can
 * overshoot the bound by at most their number. */
int gen_service_queue_room(int n, gen_service_result *out);

/* ---- create, in phases (see DESIGN above) ----
 * caller: the authenticated user, borrowed (its plan gates priority high;
 * its token_balance, as loaded then, words INSUFFICIENT_TOKENS). On an
 * error *out says what to answer; every call starts by zeroing *out. */

/* Phase 1: the Idempotency-Key and the body. GEN_SVC_OK sets req->parsed. */
int gen_service_prepare(gen_service_req *req, const user_record *caller, gen_service_result *out);
/* True when phase 2 must fetch an image from another host. */
bool gen_service_needs_fetch(const gen_service_req *req);
/* Phase 2 of a prepared request: image checks, cost, prompt, the charged
 * store write (pending, or processing when start) with its idempotency
 * row, the queue wake-up. One rate-limit unit is taken before the image
 * checks (RATE_LIMIT_EXCEEDED when there is none: nothing fetched, nothing
 * charged) and given back unless a generation was created — an error or
 * an idempotent replay uses none; out->rate says where the bucket stands. OK: 201 {generationId,
 * estimatedCost, prompt, status, message} (202 with resultImages when start) and out->gen; or the
 * first answer in out->replay (no charge). */
int gen_service_finish(const gen_service_req *req, const user_record *caller, bool start,
                       gen_service_result *out);
/* Phase 2's image checks alone, for a body saved to create from later (a
 * template): every image fetched and validated exactly as finish does, and
 * nothing kept. GEN_SVC_OK, or IMAGE_VALIDATION_ERROR listing each bad one
 * (fields as in create: productImages[i], modelImages[i]). Blocks on remote
 * hosts when gen_service_needs_fetch. */
int gen_service_check_images(const gen_service_req *req, gen_service_result *out);
/* Both phases: step 1 (create) and the legacy one-step form. */
int gen_service_create(gen_service_req *req, const user_record *caller, gen_service_result *out);
int gen_service_create_and_start(gen_service_req *req, const user_record *caller,
                                 gen_service_result *out);

/* ---- actions on an existing generation (req->gen_id; the caller's own) ---- */

/* The record: 200 with its JSON, out->gen set. */
int gen_service_get(const gen_service_req *req, const user_record *caller, gen_service_result *out);
/* Step 2: pending → processing, queue woken. 202 {generationId,
 * resultImages, status, message}; out->gen is the record as it was. */
int gen_service_start(const gen_service_req *req, const user_record *caller,
                      gen_service_result *out);
/* pending | processing → cancelled and refunded; a running job is aborted.
 * 200 with the record as it is now. */
int gen_service_cancel(const gen_service_req *req, const user_record *caller,
                       gen_service_result *out);
/* failed | cancelled → a new charged generation with the same settings
 * (retryOf set), rate-limited like a create. 201 as create, plus retryOf; out->gen the new one. */
int gen_service_retry(const gen_service_req *req, const user_record *caller,
                      gen_service_result *out);
/* A terminal generation and its result files; ledger rows stay.
 * 200 {id, deleted}. */
int gen_service_delete(const gen_service_req *req, const user_record *caller,
                       gen_service_result *out);

/* ---- batches (SPEC §4): up to GEN_SERVICE_BATCH_MAX creates, all or none ---- */

#define GEN_SERVICE_BATCH_MAX 20

/* A decoded batch create. The caller fills body ({items, start}), and
 * idem_key + request_hash as for a create; gen_service_batch_prepare sets
 * start and items (one prepared gen_service_req per item, in item order).
 * The struct owns every pointer in it (gen_service_batch_free). */
typedef struct gen_service_batch {
    json_t *body;
    char *idem_key;
    char request_hash[SECRET_HASH_LEN];
    char request_id[ID_LEN];
    bool start;
    bool reply_early; /* as gen_service_req's: the answer waits for out->pending */
    gen_service_req *items;
    size_t n;
} gen_service_batch;

void gen_service_batch_free(gen_service_batch *b);
/* Phase 1: the Idempotency-Key, the batch's shape and every item validated
 * as a create body; the errors of all items at once, each field named by
 * its item (items[3].style). */
int gen_service_batch_prepare(gen_service_batch *b, const user_record *caller,
                              gen_service_result *out);
/* True when phase 2 must fetch an image from another host. */
bool gen_service_batch_needs_fetch(const gen_service_batch *b);
/* Phase 2: QUEUE_FULL when it starts and n more do not fit; n rate-limit
 * units taken at once (none used unless the batch is created); every
 * item's images checked; then one store transaction charges the total,
 * writes the generations (pending, or processing when start) each with
 * its charge row, the batch row and the idempotency row, or nothing
 * (INSUFFICIENT_TOKENS). OK: 201 {batchId, generationIds, estimatedCost,
 * status}, or the first answer in out->replay. */
int gen_service_batch_finish(const gen_service_batch *b, const user_record *caller,
                             gen_service_result *out);
/* The batch: 200 {_id, userId, createdAt, total, tokensUsed, counts,
 * generationIds}. NOT_FOUND, or UNAUTHORIZED for another user's. */
int gen_service_batch_get(const char *batch_id, const user_record *caller, gen_service_result *out);
/* Cancels every item not yet terminal (each in its own transaction,
 * refunded once; running jobs aborted) and answers the batch as get. */
int gen_service_batch_cancel(const char *batch_id, const user_record *caller,
                             gen_service_result *out);

#endif
