/*
 * api_queue — GET /api/queue (SPEC §4): {depth, running, workers, items:
 * [{generationId, position, eta}]}. depth (queued) and running (leased)
 * count the whole service, on the claim and lease partial indexes;
 * workers is the worker slots of the processes whose heartbeat
 * (queue_workers, renewed once a second by each process's housekeeper) is
 * at most five seconds old; items are the caller's queued generations in
 * claim order, each with its position (a count on the claim index) and
 * ETA (queue_eta.c).
 */
#include "api.h"
#include "queue.h"
#include "util.h"

#define QUEUE_ITEMS_MAX 100 /* the caller's first queued items listed */
#define ALIVE_MS 5000       /* as the housekeeper's HEARTBEAT_ALIVE_MS */

void api_queue(api_call *c)
{
    store_queue_figures f;
    store_queue_item *items = NULL;
    size_t n = 0;
    int rc = store_queue_stats(api_store, now_ms() - ALIVE_MS, &f);
    if (rc == STORE_OK) rc = store_queue_items(api_store, c->user.id, QUEUE_ITEMS_MAX, &items, &n);
    if (rc != STORE_OK) {
        api_store_error(c, rc, "queue");
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, json_pack("{s:s, s:i, s:i}", "generationId", items[i].id,
                                             "position", items[i].position, "eta",
                                             queue_eta(items[i].model, items[i].position)));
    free(items);
    http_reply_json(c->req, 200,
                    json_pack("{s:I, s:I, s:I, s:o}", "depth", (json_int_t)f.depth, "running",
                              (json_int_t)f.running, "workers", (json_int_t)f.workers, "items",
                              arr));
}
