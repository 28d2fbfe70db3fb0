/*
 * fuzz_create — libFuzzer target: arbitrary bytes as a create body. Whatever
 * comes in, parsing and validation answer with a request or precise errors,
 * and never crash, leak or read out of bounds (ASan+UBSan).
 */
#include <jansson.h>
#include <stdlib.h>

#include "generation.h"
#include "ids.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    static int ready;
    if (!ready) ready = ids_init() == 0;
    json_t *body = json_loadb((const char *)data, size, 0, NULL);
    if (!body) return 0;
    gen_request req;
    json_t *errors = NULL;
    char *message = NULL;
    for (int pro = 0; pro <= 1; pro++) {
        if (gen_request_parse(body, pro, &req, &errors, &message) == 0) {
            char *prompt = prompt_build(&req.params, (int)json_array_size(req.product_images),
                                        (int)json_array_size(req.model_images), req.custom_prompt);
            if (!prompt) abort();
            free(prompt);
            int cost = gen_cost(1, req.params.quality);
            if (cost < 1 || cost > 2) abort();
        } else if (!errors && !message) {
            abort(); /* a refusal must say why */
        }
        gen_request_free(&req);
        json_decref(errors);
        free(message);
        errors = NULL;
        message = NULL;
    }
    json_decref(body);
    return 0;
}
