/*
 * webhook — outbound webhooks (webhook.h): event → type mapping, the body,
 * the Standard Webhooks signature, the retry schedule, and the dispatcher.
 *
 * DESIGN. One dispatcher thread per process (serve and worker alike); any
 * number of processes may run one on the same store. Each pass:
 *
 *  1. Events → deliveries. store_webhook_pending returns the events each
 *     endpoint has not processed yet: every webhook has its own cursor over
 *     its one user's events, where ids are handed out in commit order on
 *     both backends, so a crash loses nothing and PostgreSQL's sequence
 *     (commit-ordered only per user) cannot make a global cursor skip a
 *     lower id committed later. For each (webhook, event) the type is
 *     derived (webhook_event_type: a generation's status transitions and
 *     every balance change), and a delivery with its body fixed now is
 *     created when the endpoint subscribes to it; one transaction per
 *     webhook inserts them and moves its cursor. Another process doing the
 *     same at once is harmless (UNIQUE (webhook_id, event_id), ON CONFLICT
 *     DO NOTHING; the cursor only moves forward).
 *  2. Outcomes. Attempts that ended (collected from net's on_done, which
 *     runs on the net loop thread and only queues them here) are recorded:
 *     2xx = succeeded; anything else is retried on the schedule or, when it
 *     has run out, failed.
 *  3. Sends. Due deliveries are claimed under a lease (a fresh token per
 *     claim; FOR UPDATE SKIP LOCKED on PostgreSQL) and each is POSTed via
 *     net_submit with the same webhook-id and body on every attempt, a
 *     fresh webhook-timestamp and signature, and a 15 s limit. At most
 *     MAX_IN_FLIGHT are in flight per process. A process that dies holding
 *     a lease leaves the attempt to whoever claims it once the lease ends.
 *  4. Housekeeping, every HOUSEKEEPING_MS: the events retention deletes
 *     events older than --events-keep-hours (0: never) that every webhook
 *     of their user has processed, keeping each generation's newest event
 *     (the current record an SSE stream starts from). And the sign-in
 *     counters (auth.c) whose --login-window has long ended are deleted.
 *
 * Wake-ups: the store's commit hook (main.c's on_commit → webhook_notify,
 * which on PostgreSQL also relays other processes' commits; at most one
 * pass per PASS_SPACING_MS for them), an attempt ending, or a timer: the earliest due delivery
 * (store_delivery_next_due), the next housekeeping, and at most POLL_MS in any case while another
 * process has the store open (SQLite commits of other processes fire no
 * hook here; store_shared). All state that matters is in the
 * store, so a restart just carries on.
 */
#include "webhook.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "ids.h"
#include "log.h"
#include "net.h"
#include "util.h"

#define SECRET_PREFIX "whsec_"
#define SECRET_BYTES 24
#define ATTEMPT_TIMEOUT_MS 15000
#define LEASE_MS (ATTEMPT_TIMEOUT_MS + 5000)
#define ANSWER_MAX_BYTES (64 * 1024)
#define MAX_IN_FLIGHT 64
#define SCAN_BATCH 200
#define POLL_MS 1000
#define HOUSEKEEPING_MS 60000
#define PASS_SPACING_MS 20 /* commits start a pass at most this often */
#define PRUNE_BATCH 1000
#define PRUNE_ROUNDS 20
#define STOP_GRACE_MS 3000

/* ---- types, body, signature, schedule ---- */

const char *const webhook_types[] = {"generation.processing", "generation.completed",
                                     "generation.failed",     "generation.cancelled",
                                     "balance.changed",       NULL};

bool webhook_type_valid(const char *type)
{
    for (size_t i = 0; webhook_types[i]; i++)
        if (str_eq(type, webhook_types[i])) return true;
    return false;
}

void webhook_new_secret(char out[WEBHOOK_SECRET_LEN])
{
    unsigned char raw[SECRET_BYTES];
    randombytes_buf(raw, sizeof raw);
    memcpy(out, SECRET_PREFIX, sizeof SECRET_PREFIX - 1);
    sodium_bin2base64(out + sizeof SECRET_PREFIX - 1,
                      WEBHOOK_SECRET_LEN - (sizeof SECRET_PREFIX - 1), raw, sizeof raw,
                      sodium_base64_VARIANT_ORIGINAL);
    sodium_memzero(raw, sizeof raw);
}

int webhook_sign(const char *secret, const char *msg_id, int64_t timestamp, const char *body,
                 size_t len, char out[WEBHOOK_SIGNATURE_LEN])
{
    if (!secret || !str_has_prefix(secret, SECRET_PREFIX)) return -1;
    const char *b64 = secret + sizeof SECRET_PREFIX - 1;
    unsigned char key[128];
    size_t key_len = 0;
    if (sodium_base642bin(key, sizeof key, b64, strlen(b64), NULL, &key_len, NULL,
                          sodium_base64_VARIANT_ORIGINAL) != 0 ||
        key_len == 0)
        return -1;
    char ts[24];
    int tn = snprintf(ts, sizeof ts, ".%lld.", (long long)timestamp);
    crypto_auth_hmacsha256_state st;
    unsigned char mac[crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256_init(&st, key, key_len);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)msg_id, strlen(msg_id));
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)ts, (unsigned long long)tn);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)body, len);
    crypto_auth_hmacsha256_final(&st, mac);
    sodium_memzero(key, sizeof key);
    memcpy(out, "v1,", 3);
    sodium_bin2base64(out + 3, WEBHOOK_SIGNATURE_LEN - 3, mac, sizeof mac,
                      sodium_base64_VARIANT_ORIGINAL);
    return 0;
}

bool webhook_verify(const char *secret, const char *msg_id, int64_t timestamp, const char *body,
                    size_t len, const char *signatures)
{
    char want[WEBHOOK_SIGNATURE_LEN];
    if (!signatures || webhook_sign(secret, msg_id, timestamp, body, len, want) != 0) return false;
    size_t wl = strlen(want);
    for (const char *p = signatures; *p;) {
        while (*p == ' ')
            p++;
        size_t n = strcspn(p, " ");
        if (n == wl && sodium_memcmp(p, want, wl) == 0) return true;
        p += n;
    }
    return false;
}

/* The "status" of a record's JSON into out ("" when absent). */
static void record_status(const char *data, char *out, size_t size)
{
    out[0] = '\0';
    json_t *j = data ? json_loads(data, 0, NULL) : NULL;
    const char *s = json_string_value(json_object_get(j, "status"));
    if (s) snprintf(out, size, "%s", s);
    json_decref(j);
}

const char *webhook_event_type(const store_event *ev, const char *prev_data)
{
    if (str_eq(ev->type, "balance")) return "balance.changed";
    if (!str_eq(ev->type, "generation")) return NULL;
    static const struct {
        const char *status, *type;
    } map[] = {{"processing", "generation.processing"},
               {"completed", "generation.completed"},
               {"failed", "generation.failed"},
               {"cancelled", "generation.cancelled"}};
    char now[16], before[16];
    record_status(ev->data, now, sizeof now);
    for (size_t i = 0; i < ARRAY_LEN(map); i++) {
        if (!str_eq(now, map[i].status)) continue;
        if (prev_data) {
            record_status(prev_data, before, sizeof before);
            if (str_eq(before, now)) return NULL; /* progress, not a transition */
        }
        return map[i].type;
    }
    return NULL;
}

bool webhook_subscribed(const char *events, const char *type)
{
    size_t n = strlen(type);
    for (const char *p = events; p && *p;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len == n && strncmp(p, type, n) == 0) return true;
        p = comma ? comma + 1 : NULL;
    }
    return false;
}

char *webhook_payload(const char *type, int64_t at_ms, const char *data)
{
    time_t secs = (time_t)(at_ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    char when[40];
    size_t k = strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(when + k, sizeof when - k, ".%03dZ", (int)(at_ms % 1000));
    /* type and time need no escaping; data is the codec's JSON as is. */
    return xasprintf("{\"type\":\"%s\",\"timestamp\":\"%s\",\"data\":%s}", type, when,
                     data && *data ? data : "{}");
}

int64_t webhook_retry_delay_ms(int tries, int64_t base_ms)
{
    static const int64_t schedule[] = {5000,     300000,   1800000, 7200000,
                                       18000000, 36000000, 36000000};
    if (tries < 1 || tries > (int)ARRAY_LEN(schedule)) return -1;
    if (base_ms <= 0) base_ms = 1;
    return schedule[tries - 1] / 5000 * base_ms;
}

/* ---- the dispatcher ---- */

/* An attempt in flight, then ended (on the done list). */
typedef struct attempt {
    struct attempt *next;
    char id[ID_LEN];
    char lease[ID_LEN];
    int tries; /* before this attempt */
    int error; /* NET_OK or NET_E* */
    long status;
} attempt;

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv; /* CLOCK_MONOTONIC */
    pthread_t thread;
    bool running, stop;
    atomic_bool wake; /* a commit came since the last pass began; set without mu */
    int in_flight;
    attempt *done;
    store_t *store;
    int64_t next_housekeeping; /* wall ms */
    uint64_t visits;           /* store_shared's cursor */
} W = {.mu = PTHREAD_MUTEX_INITIALIZER};

/* Called for every commit: only the first since the last pass began takes
 * the lock and signals; the pass that follows sees the others' changes too.
 * The dispatcher clears wake under mu before it reads, so a commit after
 * that read finds it clear and signals again. */
void webhook_notify(void)
{
    if (atomic_exchange(&W.wake, true)) return;
    pthread_mutex_lock(&W.mu);
    if (W.running) pthread_cond_signal(&W.cv);
    pthread_mutex_unlock(&W.mu);
}

/* net's on_done, on the loop thread: queue the outcome, wake the thread. */
static void on_done(net_request *r, net_response *resp, void *ctx)
{
    (void)r;
    attempt *a = ctx;
    a->error = resp->error;
    a->status = resp->status;
    if (resp->error != NET_OK)
        log_debug("webhook: %s attempt ended: %s", a->id, resp->reason ? resp->reason : "error");
    pthread_mutex_lock(&W.mu);
    a->next = W.done;
    W.done = a;
    pthread_cond_signal(&W.cv);
    pthread_mutex_unlock(&W.mu);
}

/* A delivery id whose time part never repeats or goes back in this
 * process, so deliveries made in one pass list (by id) in event order. */
static void new_delivery_id(char out[ID_LEN])
{
    static int64_t last; /* the dispatcher thread's alone */
    int64_t t = now_ms();
    last = t > last ? t : last + 1;
    ids_new_at("msg", last, out);
}

/* One webhook's run of pending events → its deliveries and cursor. */
static void advance_one(store_webhook_event *ev, size_t n, int64_t now)
{
    store_delivery_new *d = xcalloc(n, sizeof *d);
    char(*ids)[ID_LEN] = xcalloc(n, sizeof *ids);
    char **bodies = xcalloc(n, sizeof *bodies);
    size_t nd = 0;
    for (size_t i = 0; i < n; i++) {
        const char *type = webhook_event_type(&ev[i].ev, ev[i].prev_data);
        if (!type || !webhook_subscribed(ev[i].events, type)) continue;
        new_delivery_id(ids[nd]);
        bodies[nd] = webhook_payload(type, ev[i].created_at, ev[i].ev.data);
        d[nd] = (store_delivery_new){ids[nd], ev[i].ev.id, type, bodies[nd]};
        nd++;
    }
    int rc = store_webhook_advance(W.store, ev[0].webhook_id, ev[n - 1].ev.id, d, nd, now);
    if (rc != STORE_OK && rc != STORE_ENOTFOUND) /* gone: deleted meanwhile */
        log_warn("webhook: cannot record deliveries of %s (%d)", ev[0].webhook_id, rc);
    for (size_t i = 0; i < nd; i++)
        free(bodies[i]);
    free(bodies);
    free(ids);
    free(d);
}

/* Step 1: every pending event of every webhook, in batches. */
static void scan_events(void)
{
    for (int round = 0; round < 50; round++) {
        store_webhook_event *ev = NULL;
        size_t n = 0;
        if (store_webhook_pending(W.store, SCAN_BATCH, &ev, &n) != STORE_OK) return;
        /* Group by webhook (stable: event order kept within each). */
        bool *taken = xcalloc(n ? n : 1, sizeof *taken);
        store_webhook_event *run = xcalloc(n ? n : 1, sizeof *run);
        int64_t now = now_ms();
        for (size_t i = 0; i < n; i++) {
            if (taken[i]) continue;
            size_t k = 0;
            for (size_t j = i; j < n; j++)
                if (!taken[j] && str_eq(ev[j].webhook_id, ev[i].webhook_id)) {
                    run[k++] = ev[j];
                    taken[j] = true;
                }
            advance_one(run, k, now);
        }
        free(run);
        free(taken);
        store_webhook_events_free(ev, n);
        if (n < SCAN_BATCH) return;
    }
}

/* Step 2: record the attempts that ended. */
static void record_done(void)
{
    pthread_mutex_lock(&W.mu);
    attempt *list = W.done;
    W.done = NULL;
    pthread_mutex_unlock(&W.mu);
    while (list) {
        attempt *a = list;
        list = a->next;
        int64_t now = now_ms();
        bool ok = a->error == NET_OK && a->status >= 200 && a->status < 300;
        int64_t delay = ok ? -1 : webhook_retry_delay_ms(a->tries + 1, cfg.webhook_retry_base_ms);
        store_attempt out = {
            .status = ok          ? "succeeded"
                      : delay < 0 ? "failed"
                                  : "pending",
            .status_code = (int)a->status,
            .next_attempt_at = delay < 0 ? 0 : now + delay,
            .now = now,
        };
        int rc = store_delivery_record(W.store, a->id, a->lease, &out);
        if (rc != STORE_OK && rc != STORE_ECONFLICT && rc != STORE_ENOTFOUND)
            log_warn("webhook: cannot record the attempt of %s (%d)", a->id, rc);
        else if (rc == STORE_OK)
            log_debug("webhook: %s attempt %d: %s (HTTP %ld)", a->id, a->tries + 1, out.status,
                      a->status);
        pthread_mutex_lock(&W.mu);
        W.in_flight--;
        pthread_mutex_unlock(&W.mu);
        free(a);
    }
}

/* Submits one claimed delivery. */
static void send_one(const store_delivery *d, const char *lease)
{
    int64_t ts = now_ms() / 1000;
    char sig[WEBHOOK_SIGNATURE_LEN];
    attempt *a = xcalloc(1, sizeof *a);
    snprintf(a->id, sizeof a->id, "%s", d->id);
    snprintf(a->lease, sizeof a->lease, "%s", lease);
    a->tries = d->tries;
    pthread_mutex_lock(&W.mu);
    W.in_flight++;
    pthread_mutex_unlock(&W.mu);
    size_t len = d->payload ? strlen(d->payload) : 0;
    if (webhook_sign(d->secret, d->id, ts, d->payload ? d->payload : "", len, sig) != 0) {
        log_error("webhook: %s: the endpoint's secret is malformed", d->id);
        net_response none = {.error = NET_EINTERNAL, .reason = "bad secret"};
        on_done(NULL, &none, a);
        return;
    }
    net_request *r = net_request_new("POST", d->url);
    char line[160];
    snprintf(line, sizeof line, "webhook-id: %s", d->id);
    net_request_header(r, line);
    snprintf(line, sizeof line, "webhook-timestamp: %lld", (long long)ts);
    net_request_header(r, line);
    snprintf(line, sizeof line, "webhook-signature: %s", sig);
    net_request_header(r, line);
    net_request_header(r, "User-Agent: stylestudio-webhooks/" STYLESTUDIO_VERSION);
    net_request_body(r, "application/json", d->payload ? d->payload : "", len);
    net_request_limits(r, ATTEMPT_TIMEOUT_MS, ANSWER_MAX_BYTES);
    net_submit(r, on_done, a);
}

/* Step 3: claim what is due, up to the in-flight bound. */
static void send_due(void)
{
    pthread_mutex_lock(&W.mu);
    int room = MAX_IN_FLIGHT - W.in_flight;
    pthread_mutex_unlock(&W.mu);
    if (room <= 0) return;
    /* A cheap read first: the claim is a write (on SQLite it takes the
     * writer lock), and most passes (a progress commit) have nothing due. */
    int64_t due = 0, now = now_ms();
    if (store_delivery_next_due(W.store, &due) != STORE_OK || due == 0 || due > now) return;
    char lease[ID_LEN];
    ids_new("lse", lease);
    store_delivery *d = NULL;
    size_t n = 0;
    if (store_delivery_claim(W.store, lease, now, LEASE_MS, room, &d, &n) != STORE_OK) return;
    for (size_t i = 0; i < n; i++)
        send_one(&d[i], lease);
    store_deliveries_free(d, n);
}

/* Step 4: the retention of events and of ended sign-in counters. */

typedef int (*prune_fn)(store_t *s, int64_t before, int limit, int64_t *deleted);

static int prune_login_buckets(store_t *s, int64_t before, int limit, int64_t *deleted)
{
    return store_buckets_prune(s, "login:", before, limit, deleted);
}

/* Deletes in rounds of PRUNE_BATCH (at most PRUNE_ROUNDS) what prune finds
 * older than before, until a round finds fewer; returns how many. */
static int64_t prune_rounds(prune_fn prune, int64_t before)
{
    int64_t total = 0;
    for (int i = 0; i < PRUNE_ROUNDS; i++) {
        int64_t n = 0;
        if (prune(W.store, before, PRUNE_BATCH, &n) != STORE_OK) break;
        total += n;
        if (n < PRUNE_BATCH) break;
    }
    return total;
}

static void housekeeping(void)
{
    int64_t now = now_ms();
    if (now < W.next_housekeeping) return;
    W.next_housekeeping = now + HOUSEKEEPING_MS;
    prune_rounds(prune_login_buckets, now - 2 * (int64_t)cfg.login_window * 1000);
    if (cfg.events_keep_hours <= 0) return; /* 0: keep them forever */
    int64_t total =
        prune_rounds(store_events_prune, now - (int64_t)cfg.events_keep_hours * 3600 * 1000);
    if (total) log_info("webhook: events retention deleted %lld events", (long long)total);
}

/* How long to sleep (ms) before the next pass with nothing else waking us. */
static int64_t idle_ms(void)
{
    /* Alone on the store, every commit fires our hook: no poll needed. */
    int64_t now = now_ms(), wait = store_shared(W.store, &W.visits) ? POLL_MS : HOUSEKEEPING_MS,
            due = 0;
    if (store_delivery_next_due(W.store, &due) == STORE_OK && due > 0 && due - now < wait)
        wait = due - now;
    if (W.next_housekeeping - now < wait) wait = W.next_housekeeping - now;
    return wait < 0 ? 0 : wait;
}

static void *dispatcher(void *arg)
{
    (void)arg;
    for (;;) {
        int64_t began = mono_ms();
        scan_events();
        record_done();
        send_due();
        housekeeping();
        int64_t wait = idle_ms();
        pthread_mutex_lock(&W.mu);
        int64_t until = mono_ms() + wait;
        while (!W.stop && !atomic_load(&W.wake) && !W.done && wait > 0 &&
               util_cond_wait_until(&W.cv, &W.mu, until) != ETIMEDOUT)
            ;
        /* Thousands of commits a second are taken in one pass each
         * PASS_SPACING_MS, not one pass (three store reads) per commit. */
        while (atomic_load(&W.wake) && !W.stop && !W.done &&
               util_cond_wait_until(&W.cv, &W.mu, began + PASS_SPACING_MS) != ETIMEDOUT)
            ;
        atomic_store(&W.wake, false);
        bool stop = W.stop;
        pthread_mutex_unlock(&W.mu);
        if (stop) break;
    }
    /* Let the attempts in flight end and record them, for a short while. */
    int64_t until = mono_ms() + STOP_GRACE_MS;
    for (;;) {
        record_done();
        pthread_mutex_lock(&W.mu);
        int left = W.in_flight;
        pthread_mutex_unlock(&W.mu);
        if (left == 0 || mono_ms() >= until) break;
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

int webhook_start(store_t *s)
{
    pthread_mutex_lock(&W.mu);
    if (W.running) {
        pthread_mutex_unlock(&W.mu);
        return 0;
    }
    util_cond_init_mono(&W.cv);
    W.store = s;
    W.stop = false;
    atomic_store(&W.wake, false);
    W.next_housekeeping = now_ms();
    W.running = true;
    pthread_mutex_unlock(&W.mu);
    if (pthread_create(&W.thread, NULL, dispatcher, NULL) != 0) {
        pthread_mutex_lock(&W.mu);
        W.running = false;
        pthread_mutex_unlock(&W.mu);
        pthread_cond_destroy(&W.cv);
        return -1;
    }
    return 0;
}

void webhook_stop(void)
{
    pthread_mutex_lock(&W.mu);
    if (!W.running) {
        pthread_mutex_unlock(&W.mu);
        return;
    }
    W.stop = true;
    pthread_cond_signal(&W.cv);
    pthread_mutex_unlock(&W.mu);
    pthread_join(W.thread, NULL);
    pthread_mutex_lock(&W.mu);
    W.running = false;
    pthread_mutex_unlock(&W.mu);
    /* Attempts that end later (net_stop cancels them) queue on W.done and
     * are simply never recorded: their leases run out in the store. The
     * condition variable stays initialised for those late signals. */
}
