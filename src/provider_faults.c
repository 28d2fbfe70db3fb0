/*
 * provider_faults — the test-fault provider (DESIGN §1, §4.12): a
 * provider_ops that wraps the real provider of a model and injects
 * failures before calling it. provider_for() installs it when
 * cfg.test_faults (--test-faults) is set; the queue and the providers know
 * nothing of it. The spec, comma-separated:
 *
 *   transient=N       attempts with retryCount < N fail PROVIDER_TRANSIENT
 *   malformed=N       attempts with retryCount < N (after the transient
 *                     ones) fail PROVIDER_MALFORMED ("unusable answer")
 *   permanent         every attempt fails PROVIDER_REJECTED
 *   delay_ms=N        each call first spends N ms (in 50 ms slices,
 *                     reporting progress up to 60 % and honouring cancel)
 *   retry_after_ms=N  injected transient failures ask for this Retry-After
 *                     (provider_job.retry_after_ms)
 *   start_delay_ms=N  `serve` holds its start-up N ms after binding the
 *                     port and before it serves (the start-up window)
 *
 * Unknown items are logged and ignored. The wrapper shares the job with
 * the real provider and keeps no per-job state (job->state stays the real
 * provider's): cancel is passed on as it is, and the real provider is
 * started only when no fault ended the attempt and no cancel came first.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "log.h"
#include "provider.h"
#include "util.h"

#define SLICE_MS 50
#define DELAY_PROGRESS 60 /* provider-scale progress reached by delay_ms */

typedef struct faults {
    int transient;
    int malformed;
    bool permanent;
    int delay_ms;
    int start_delay_ms;
    int retry_after_ms;
} faults;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static char *parsed_spec; /* the cfg.test_faults that `active` was parsed from */
static faults active;

/* "name=N" with N a non-negative integer ≤ max: true and *out set. */
static bool fault_int(const char *tok, const char *name, long max, int *out)
{
    size_t n = strlen(name);
    if (strncmp(tok, name, n) != 0 || tok[n] != '=' || !tok[n + 1]) return false;
    char *end;
    long v = strtol(tok + n + 1, &end, 10);
    if (*end || v < 0) return false;
    *out = (int)(v > max ? max : v);
    return true;
}

static faults parse(const char *spec)
{
    faults f = {0};
    if (!spec || !*spec) return f;
    char *copy = xstrdup(spec), *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ' || *tok == '\t')
            tok++;
        size_t n = strlen(tok);
        while (n > 0 && (tok[n - 1] == ' ' || tok[n - 1] == '\t'))
            tok[--n] = '\0';
        if (n == 0) continue;
        if (strcmp(tok, "permanent") == 0)
            f.permanent = true;
        else if (!fault_int(tok, "transient", 1000000, &f.transient) &&
                 !fault_int(tok, "malformed", 1000000, &f.malformed) &&
                 !fault_int(tok, "delay_ms", 3600000, &f.delay_ms) &&
                 !fault_int(tok, "retry_after_ms", 3600000, &f.retry_after_ms) &&
                 !fault_int(tok, "start_delay_ms", 60000, &f.start_delay_ms))
            log_warn("test-faults: ignoring unknown item \"%s\"", tok);
    }
    free(copy);
    if (f.permanent || f.transient || f.malformed || f.delay_ms)
        log_warn("test faults active: transient=%d malformed=%d permanent=%s delay_ms=%d "
                 "retry_after_ms=%d",
                 f.transient, f.malformed, f.permanent ? "yes" : "no", f.delay_ms,
                 f.retry_after_ms);
    return f;
}

/* The faults of cfg.test_faults, parsed again whenever it changed (unit
 * tests set it between runs). */
static faults current(void)
{
    const char *spec = cfg.test_faults ? cfg.test_faults : "";
    pthread_mutex_lock(&mu);
    if (!parsed_spec || strcmp(parsed_spec, spec) != 0) {
        free(parsed_spec);
        parsed_spec = xstrdup(spec);
        active = parse(spec);
    }
    faults f = active;
    pthread_mutex_unlock(&mu);
    return f;
}

bool provider_faults_enabled(void)
{
    faults f = current();
    return f.permanent || f.transient > 0 || f.malformed > 0 || f.delay_ms > 0;
}

int provider_faults_start_delay_ms(void)
{
    return current().start_delay_ms;
}

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

static bool cancelled(provider_job *job)
{
    return atomic_load(&job->cancel_requested);
}

static int faults_start(provider_job *job)
{
    faults f = current();
    const provider_ops *inner = provider_unwrapped_for(job->model);
    if (f.delay_ms > 0) {
        int64_t t0 = mono_ms(), delay = f.delay_ms;
        for (;;) {
            if (cancelled(job)) {
                job->on_done(job, PROVIDER_CANCELLED, NULL, 0, "cancelled");
                return 0;
            }
            int64_t el = mono_ms() - t0;
            if (el >= delay) break;
            if (job->on_progress) job->on_progress(job, (int)(el * DELAY_PROGRESS / delay));
            sleep_ms(delay - el < SLICE_MS ? delay - el : SLICE_MS);
        }
    }
    int attempt = job->gen ? job->gen->retry_count : 0;
    if (f.permanent) {
        job->on_done(job, PROVIDER_REJECTED, NULL, 0,
                     "provider rejected the request (injected fault)");
        return 0;
    }
    if (attempt < f.transient) {
        job->retry_after_ms = f.retry_after_ms;
        job->on_done(job, PROVIDER_TRANSIENT, NULL, 0, "provider unavailable (injected fault)");
        return 0;
    }
    if (attempt < f.malformed) {
        job->on_done(job, PROVIDER_MALFORMED, NULL, 0,
                     "the provider returned an unusable answer (injected fault)");
        return 0;
    }
    if (cancelled(job)) {
        job->on_done(job, PROVIDER_CANCELLED, NULL, 0, "cancelled");
        return 0;
    }
    if (!inner || !inner->start) return -1;
    return inner->start(job);
}

static void faults_cancel(provider_job *job)
{
    const provider_ops *inner = provider_unwrapped_for(job->model);
    if (inner && inner->cancel) inner->cancel(job);
}

const provider_ops provider_faults_ops = {
    .name = "test-faults",
    .start = faults_start,
    .cancel = faults_cancel,
};
