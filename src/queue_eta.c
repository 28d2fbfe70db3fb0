/*
 * queue_eta — the ETA of a queued generation (SPEC §4: `eta` in seconds,
 * from a moving average of recent processing times per model; before any
 * history, the catalogue's typicalSeconds).
 *
 * DESIGN. The averages live in memory, per process: queue.c reports the
 * time from claim to completion of every generation this process
 * completes (queue_eta_record), folded into an exponential moving average
 * per model (weight 1/4 for the newest). A process that completes nothing
 * (an API-only serve) keeps the catalogue's figure. The number of worker
 * slots the queue is shared by comes from the heartbeat table (the
 * housekeeper reads it once a second: queue_eta_set_slots). The estimate
 * for position p is average × ceil(p / slots): the p - 1 items ahead and
 * this one, run slots at a time. One mutex guards the table; callers are
 * the codec (inside store transactions), the API and the workers.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "provider.h"
#include "queue.h"
#include "util.h"

#define ETA_MODELS 64
#define ETA_WEIGHT 0.25

static pthread_mutex_t eta_mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
    char model[48];
    double avg_s;
} eta_tab[ETA_MODELS];
static int eta_n;
static int eta_slots; /* live worker slots, 0: not known yet */

void queue_eta_record(const char *model, int64_t ms)
{
    if (!model || ms < 0) return;
    double s = (double)ms / 1000.0;
    pthread_mutex_lock(&eta_mu);
    int i = 0;
    while (i < eta_n && !str_eq(eta_tab[i].model, model))
        i++;
    if (i < eta_n) {
        eta_tab[i].avg_s += ETA_WEIGHT * (s - eta_tab[i].avg_s);
    } else if (eta_n < ETA_MODELS) {
        snprintf(eta_tab[i].model, sizeof eta_tab[i].model, "%s", model);
        eta_tab[i].avg_s = s;
        eta_n++;
    }
    pthread_mutex_unlock(&eta_mu);
}

void queue_eta_set_slots(int slots)
{
    pthread_mutex_lock(&eta_mu);
    eta_slots = slots > 0 ? slots : 0;
    pthread_mutex_unlock(&eta_mu);
}

int queue_eta(const char *model, int position)
{
    if (position <= 0) return 0;
    const model_info *m = model ? provider_model_find(model) : NULL;
    double avg = m && m->typical_seconds > 0 ? m->typical_seconds : 30;
    pthread_mutex_lock(&eta_mu);
    for (int i = 0; model && i < eta_n; i++)
        if (str_eq(eta_tab[i].model, model)) avg = eta_tab[i].avg_s;
    int slots = eta_slots > 0 ? eta_slots : 1;
    pthread_mutex_unlock(&eta_mu);
    double eta = avg * (double)((position + slots - 1) / slots);
    return eta < 1 ? 1 : (int)ceil(eta);
}
