/*
 * fuzz_template — libFuzzer target: template bodies. The input is a JSON
 * object {name, body, overrides}: {name, body} is validated as
 * POST /api/templates does (api_template_validate: the name, then the
 * body as a create body, errors under "body."), and when valid, the saved
 * body merged with the overrides (api_template_merge, as
 * POST /api/templates/{id}/generate does) is validated again as a create
 * body. Valid or a list of field errors (or a model error), never a crash
 * or a leak; the merge never changes its inputs.
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "gen_service.h"
#include "ids.h"

static void check_errors(const json_t *errs)
{
    if (!json_is_array(errs) || json_array_size(errs) == 0) abort();
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    static int ready;
    if (!ready) ready = ids_init() == 0;
    json_t *in = json_loadb((const char *)data, size, 0, NULL);
    if (!in) return 0;
    user_record caller;
    memset(&caller, 0, sizeof caller);
    snprintf(caller.id, sizeof caller.id, "usr_fuzz");
    snprintf(caller.plan, sizeof caller.plan, "%s", size % 2 ? "pro" : "free");

    gen_service_req req;
    gen_service_result res;
    memset(&req, 0, sizeof req);
    json_t *errs = api_template_validate(in, &caller, &req, &res);
    if (errs) {
        check_errors(errs);
    } else if (res.status == GEN_SVC_OK) {
        json_t *saved = json_object_get(in, "body"), *over = json_object_get(in, "overrides");
        if (!json_is_object(over)) over = NULL;
        char *before = json_dumps(saved, JSON_COMPACT | JSON_SORT_KEYS);
        char *obefore = over ? json_dumps(over, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
        json_t *none = json_object();
        json_t *merged = api_template_merge(saved, over ? over : none);
        json_decref(none);
        char *after = json_dumps(saved, JSON_COMPACT | JSON_SORT_KEYS);
        if (strcmp(before, after) != 0) abort(); /* the saved body is not touched */
        if (over) {
            char *oafter = json_dumps(over, JSON_COMPACT | JSON_SORT_KEYS);
            if (strcmp(obefore, oafter) != 0) abort();
            free(oafter);
        } else {
            /* Without overrides the merge is the saved body. */
            char *m = json_dumps(merged, JSON_COMPACT | JSON_SORT_KEYS);
            if (strcmp(m, before) != 0) abort();
            free(m);
        }
        gen_service_req mreq;
        gen_service_result mres;
        memset(&mreq, 0, sizeof mreq);
        mreq.body = merged; /* stolen */
        if (gen_service_prepare(&mreq, &caller, &mres) == GEN_SVC_EVALIDATION)
            check_errors(mres.validation_errors);
        gen_service_result_free(&mres);
        gen_service_req_free(&mreq);
        free(before);
        free(after);
        free(obefore);
    } else if (!res.message) {
        abort(); /* a model error says why */
    }
    json_decref(errs);
    gen_service_result_free(&res);
    gen_service_req_free(&req);
    json_decref(in);
    return 0;
}
