/*
 * gen_record — the generation record: status names, the state machine
 * table, and the JSON shape every API response and event uses (SPEC §4).
 */
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

json_t *gen_record_to_json(const gen_record *g)
{
    json_t *o = json_object();
    json_object_set_new(o, "_id", json_string(g->id));
    json_object_set_new(o, "userId", json_string(g->user_id));
    json_object_set_new(o, "status", json_string(gen_status_name(g->status)));
    json_object_set_new(o, "productImages", array_or_empty(g->product_images));
    json_object_set_new(o, "modelImages", array_or_empty(g->model_images));
    json_object_set_new(o, "resultImages", array_or_empty(g->result_images));
    json_object_set_new(o, "prompt", json_string(g->prompt ? g->prompt : ""));
    if (g->custom_prompt) json_object_set_new(o, "customPrompt", json_string(g->custom_prompt));
    json_object_set_new(o, "parameters", gen_params_to_json(&g->params));
    json_object_set_new(o, "tokensUsed", json_integer(g->tokens_used));
    json_object_set_new(o, "retryCount", json_integer(g->retry_count));
    json_object_set_new(o, "createdAt", json_integer(g->created_at));
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
    if (g->batch_id[0]) json_object_set_new(o, "batchId", json_string(g->batch_id));
    if (g->retry_of[0]) json_object_set_new(o, "retryOf", json_string(g->retry_of));
    return o;
}

static char *event_json(json_t *j)
{
    char *text = json_dumps(j, UTIL_JSON_FLAGS);
    json_decref(j);
    return text;
}

static char *generation_event(const gen_record *g)
{
    return event_json(gen_record_to_json(g));
}

static char *balance_event(int64_t token_balance)
{
    return event_json(json_pack("{s:I}", "tokenBalance", (json_int_t)token_balance));
}

const store_codec gen_record_codec = {
    .generation = generation_event,
    .balance = balance_event,
};
