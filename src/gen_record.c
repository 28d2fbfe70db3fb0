/*
 * gen_record — the generation record: status names, the state machine
 * table, and the JSON shape every API response and event uses (SPEC §4).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "generation.h"
#include "queue.h"
#include "store.h"
#include "util.h"

static const char *status_names[GEN_STATUS_COUNT] = {
    "pending", "processing", "completed", "failed", "cancelled",
};

const char *gen_status_name(gen_status s)
{
    return (unsigned)s < GEN_STATUS_COUNT ? status_names[s] : "unknown";
}

int gen_status_parse(const char *name, gen_status *out)
{
    for (int i = 0; i < GEN_STATUS_COUNT; i++)
        if (str_eq(name, status_names[i])) {
            *out = (gen_status)i;
            return 0;
        }
    return -1;
}

bool gen_status_terminal(gen_status s)
{
    return s == GEN_COMPLETED || s == GEN_FAILED || s == GEN_CANCELLED;
}

void gen_record_free(gen_record *g)
{
    if (!g) return;
    json_decref(g->product_images);
    json_decref(g->model_images);
    json_decref(g->result_images);
    free(g->prompt);
    free(g->custom_prompt);
    free(g->error);
    memset(g, 0, sizeof *g);
}

json_t *gen_params_to_json(const gen_params *p)
{
    json_t *o =
        json_pack("{s:s, s:s, s:s, s:s, s:f, s:i, s:f, s:I}", "model", p->model, "style", p->style,
                  "quality", p->quality, "aspectRatio", p->aspect_ratio, "guidance_scale",
                  p->guidance_scale, "num_inference_steps", p->num_inference_steps, "strength",
                  p->strength, "seed", (json_int_t)p->seed);
    /* background and output_format only when the request gave them. */
    if (p->background[0]) json_object_set_new(o, "background", json_string(p->background));
    if (p->output_format[0]) json_object_set_new(o, "output_format", json_string(p->output_format));
    return o;
}

static json_t *array_or_empty(json_t *a)
{
    return a ? json_incref(a) : json_array();
}

static void set_time(json_t *o, const char *key, int64_t ms)
{
    if (ms > 0) json_object_set_new(o, key, json_integer(ms));
}

/* The fields no transition changes: the create sets them and nothing
 * updates them (ids are never reused). */
static void fixed_fields(json_t *o, const gen_record *g)
{
    json_object_set_new(o, "_id", json_string(g->id));
    json_object_set_new(o, "userId", json_string(g->user_id));
    json_object_set_new(o, "productImages", array_or_empty(g->product_images));
    json_object_set_new(o, "modelImages", array_or_empty(g->model_images));
    json_object_set_new(o, "prompt", json_string(g->prompt ? g->prompt : ""));
    if (g->custom_prompt) json_object_set_new(o, "customPrompt", json_string(g->custom_prompt));
    json_object_set_new(o, "parameters", gen_params_to_json(&g->params));
    json_object_set_new(o, "createdAt", json_integer(g->created_at));
    if (g->batch_id[0]) json_object_set_new(o, "batchId", json_string(g->batch_id));
    if (g->retry_of[0]) json_object_set_new(o, "retryOf", json_string(g->retry_of));
}

/* The fields transitions change. */
static void changing_fields(json_t *o, const gen_record *g)
{
    json_object_set_new(o, "status", json_string(gen_status_name(g->status)));
    json_object_set_new(o, "resultImages", array_or_empty(g->result_images));
    json_object_set_new(o, "tokensUsed", json_integer(g->tokens_used));
    json_object_set_new(o, "retryCount", json_integer(g->retry_count));
    set_time(o, "startedAt", g->started_at);
    set_time(o, "completedAt", g->completed_at);
    if (g->completed_at > 0 && g->started_at > 0)
        json_object_set_new(o, "processingTime", json_integer(g->processing_time));
    if (g->error) json_object_set_new(o, "error", json_string(g->error));
    if (g->error_code[0]) json_object_set_new(o, "errorCode", json_string(g->error_code));
    json_object_set_new(o, "progress", json_integer(g->progress));
    json_object_set_new(o, "stage", json_string(g->stage));
    if (g->queue_position > 0) {
        json_object_set_new(o, "queuePosition", json_integer(g->queue_position));
        json_object_set_new(o, "eta", json_integer(queue_eta(g->params.model, g->queue_position)));
    }
    json_object_set_new(o, "priority",
                        json_string(g->priority == PRIORITY_HIGH ? "high" : "normal"));
}

json_t *gen_record_to_json(const gen_record *g)
{
    json_t *o = json_object();
    fixed_fields(o, g);
    changing_fields(o, g);
    return o;
}

static char *event_json(json_t *j)
{
    char *text = json_dumps(j, UTIL_JSON_FLAGS);
    json_decref(j);
    return text;
}

/* ---- event data: the fixed fields encoded once ----
 * Every change of a generation writes an event carrying the whole record
 * (SPEC §6), five or so in a lifecycle, and most of that text — the
 * prompt, the inputs, the parameters — is in the fields no transition
 * changes; escaping them was the largest part of writing an event. Their
 * encoding is kept for the last FIXED_SLOTS generations seen, in a
 * direct-mapped table every thread shares (one mutex, held for a lookup
 * and a copy), and an event is that text joined to the changing fields,
 * encoded each time: {fixed...} + {changing...} → {fixed...,changing...},
 * the same object gen_record_to_json builds, key for key. An entry can
 * never be stale: those fields never change and ids are never reused. */
#define FIXED_SLOTS 1024
static struct {
    pthread_mutex_t mu;
    struct fixed_slot {
        char id[ID_LEN];
        char *text;
        size_t len;
    } slot[FIXED_SLOTS];
} fixed = {.mu = PTHREAD_MUTEX_INITIALIZER};

static struct fixed_slot *fixed_slot_for(const char *id)
{
    return &fixed.slot[util_fnv1a(id) % FIXED_SLOTS];
}

/* Encodes g's fixed fields and keeps them in their slot. */
static void fixed_prepare(const gen_record *g)
{
    json_t *o = json_object();
    fixed_fields(o, g);
    char *text = event_json(o);
    struct fixed_slot *sl = fixed_slot_for(g->id);
    pthread_mutex_lock(&fixed.mu);
    free(sl->text);
    snprintf(sl->id, sizeof sl->id, "%s", g->id);
    sl->text = text;
    sl->len = strlen(text);
    pthread_mutex_unlock(&fixed.mu);
}

/* The fixed text joined to changing (an encoded object), or NULL when g's
 * fixed fields are not in their slot. */
static char *fixed_join(const gen_record *g, const char *changing)
{
    size_t clen = strlen(changing);
    struct fixed_slot *sl = fixed_slot_for(g->id);
    char *out = NULL;
    pthread_mutex_lock(&fixed.mu);
    if (sl->text && str_eq(sl->id, g->id)) {
        out = xmalloc(sl->len + clen);
        memcpy(out, sl->text, sl->len - 1); /* without its '}' */
        out[sl->len - 1] = ',';
        memcpy(out + sl->len, changing + 1, clen); /* without its '{', with the NUL */
    }
    pthread_mutex_unlock(&fixed.mu);
    return out;
}

static char *generation_event(const gen_record *g)
{
    json_t *o = json_object();
    changing_fields(o, g);
    char *changing = event_json(o);
    char *text = fixed_join(g, changing);
    if (!text) {
        fixed_prepare(g);
        text = fixed_join(g, changing);
    }
    free(changing);
    /* Another generation took the slot between the two: encode it all. */
    if (!text) text = event_json(gen_record_to_json(g));
    return text;
}

static char *balance_event(int64_t token_balance)
{
    return event_json(json_pack("{s:I}", "tokenBalance", (json_int_t)token_balance));
}

const store_codec gen_record_codec = {
    .prepare = fixed_prepare,
    .generation = generation_event,
    .balance = balance_event,
};
