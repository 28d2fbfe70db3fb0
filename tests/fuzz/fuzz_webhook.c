/*
 * fuzz_webhook — libFuzzer target: a webhook registration body
 * (POST /api/webhooks) through api_webhook_decode and then, as the route
 * does, the URL through net_check_url (the resolver replaced:
 * fake_resolver.h). Valid means: a URL, an events list of known types each
 * listed once, a description of at most 500 bytes; anything else is a list
 * of field errors. Never a crash, a leak or an unexplained refusal.
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "fake_resolver.h"
#include "net.h"
#include "webhook.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    static int ready;
    if (!ready) ready = net_start("allowed.test") == 0;
    json_t *body = json_loadb((const char *)data, size, 0, NULL);
    if (!body) return 0;
    char *url, *events, *description;
    json_t *errs = api_webhook_decode(body, &url, &events, &description);
    if (!description) abort();
    if (errs) {
        if (!json_is_array(errs) || json_array_size(errs) == 0) abort();
        size_t i;
        json_t *e;
        json_array_foreach(errs, i, e) if (!json_string_value(json_object_get(e, "field")) ||
                                           !json_string_value(json_object_get(e, "message")))
            abort();
    } else {
        if (!url || !events || strlen(description) > 500) abort();
        /* Each listed type is known and listed once. */
        char *list = strdup(events), *save = NULL;
        int n = 0;
        for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save), n++) {
            if (!webhook_type_valid(t)) abort();
            char *rest = save ? strstr(save, t) : NULL;
            size_t tl = strlen(t);
            if (rest && (rest == save || rest[-1] == ',') && (rest[tl] == ',' || !rest[tl]))
                abort();
        }
        free(list);
        if (n == 0) abort();
        char *why = NULL;
        int rc = net_check_url(url, "webhook URL", &why);
        if ((rc == 0) != (why == NULL)) abort();
        free(why);
    }
    json_decref(errs);
    free(url);
    free(events);
    free(description);
    json_decref(body);
    return 0;
}
