/*
 * metrics — request counters and latency histograms, kept in a small table
 * keyed by (route, status) under one mutex; rendered as Prometheus text.
 */
#include "metrics.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const double bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                0.25,  0.5,    1,     2.5,  5,     10};
#define NBOUNDS (sizeof bounds / sizeof bounds[0])

typedef struct route_stats {
    char route[64];
    int status;
    uint64_t count;
    uint64_t buckets[NBOUNDS]; /* cumulative at render time */
    double sum;
    struct route_stats *next;
} route_stats;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static route_stats *table;

void metrics_request(const char *route, int status, double seconds)
{
    if (!route) route = "unmatched";
    pthread_mutex_lock(&lock);
    route_stats *s = table;
    while (s && !(s->status == status && strcmp(s->route, route) == 0))
        s = s->next;
    if (!s) {
        s = xcalloc(1, sizeof *s);
        snprintf(s->route, sizeof s->route, "%s", route);
        s->status = status;
        s->next = table;
        table = s;
    }
    s->count++;
    s->sum += seconds;
    for (size_t i = 0; i < NBOUNDS; i++)
        if (seconds <= bounds[i]) {
            s->buckets[i]++;
            break;
        }
    pthread_mutex_unlock(&lock);
}

void metrics_sample(buf *out, const char *name, const char *type, const char *help,
                    const char *labels, double value)
{
    if (help) buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
    if (labels && *labels)
        buf_printf(out, "%s{%s} %.17g\n", name, labels, value);
    else
        buf_printf(out, "%s %.17g\n", name, value);
}

void metrics_render_requests(buf *out)
{
    pthread_mutex_lock(&lock);
    buf_printf(out, "# HELP stylestudio_http_requests_total HTTP requests by route and status.\n"
                    "# TYPE stylestudio_http_requests_total counter\n");
    for (route_stats *s = table; s; s = s->next)
        buf_printf(out, "stylestudio_http_requests_total{route=\"%s\",status=\"%d\"} %llu\n",
                   s->route, s->status, (unsigned long long)s->count);
    buf_printf(out, "# HELP stylestudio_http_request_duration_seconds Request latency by route.\n"
                    "# TYPE stylestudio_http_request_duration_seconds histogram\n");
    /* Histograms are per route: merge the status rows of each route. */
    for (route_stats *s = table; s; s = s->next) {
        bool first = true;
        for (route_stats *p = table; p != s; p = p->next)
            if (strcmp(p->route, s->route) == 0) first = false;
        if (!first) continue;
        uint64_t b[NBOUNDS] = {0}, count = 0;
        double sum = 0;
        for (route_stats *p = s; p; p = p->next) {
            if (strcmp(p->route, s->route) != 0) continue;
            for (size_t i = 0; i < NBOUNDS; i++)
                b[i] += p->buckets[i];
            count += p->count;
            sum += p->sum;
        }
        uint64_t cum = 0;
        for (size_t i = 0; i < NBOUNDS; i++) {
            cum += b[i];
            buf_printf(out,
                       "stylestudio_http_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} "
                       "%llu\n",
                       s->route, bounds[i], (unsigned long long)cum);
        }
        buf_printf(out,
                   "stylestudio_http_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} "
                   "%llu\n"
                   "stylestudio_http_request_duration_seconds_sum{route=\"%s\"} %.6f\n"
                   "stylestudio_http_request_duration_seconds_count{route=\"%s\"} %llu\n",
                   s->route, (unsigned long long)count, s->route, sum, s->route,
                   (unsigned long long)count);
    }
    pthread_mutex_unlock(&lock);
}
