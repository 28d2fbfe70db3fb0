/*
 * metrics — Prometheus text exposition for /metrics: request counts by route
 * and status, latency histograms by route, and gauges the API fills in at
 * scrape time (generations by status, queue depth, SSE clients, tokens).
 */
#ifndef SS_METRICS_H
#define SS_METRICS_H

#include <stdint.h>

#include "util.h"

/* Records one finished request. route is a label like "GET /api/me". */
void metrics_request(const char *route, int status, double seconds);
/* Appends the request counters and histograms to out. */
void metrics_render_requests(buf *out);
/* Appends one gauge/counter sample: "# TYPE name type" is written once per
 * name by the caller passing help != NULL on the first sample. */
void metrics_sample(buf *out, const char *name, const char *type, const char *help,
                    const char *labels, double value);

#endif
