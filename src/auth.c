/*
 * auth — credentials and accounts. Secrets (API keys, session tokens) are
 * random, shown once and stored only as hashes (ids.c); passwords use
 * Argon2id. auth_user_create is where every account is made.
 *
 * DESIGN (password hashing). One Argon2id hash costs ~64 MB and a core for
 * ~0.2 s, so sign-in and sign-up are where a flood hurts everyone. Hashes
 * pass a gate: at most --hash-concurrency run at once, on handler threads;
 * the requests behind them are parked (http_park: no thread held) in a FIFO
 * of at most HASH_QUEUE_MAX, and past that answered 503 at once. A leaving
 * hash hands its slot straight to the first parked request. Failed
 * sign-ins are counted in the store over --login-window, per address and
 * email, per address and per email (see "failed sign-ins" below); past a
 * limit sign-in answers 429 before any hash is computed. An unknown email is verified against a
 * dummy hash, so it costs what a wrong password costs.
 *
 * DESIGN (the credential cache). A request's key or cookie is looked up in
 * a bounded, direct-mapped cache of secret hash → user record before the
 * store is asked, so an API call does not cost a store round trip. An entry
 * is good for AUTH_CACHE_TTL_MS (1 s) at most: that bounds how late a
 * revocation or an account change made by *another* process is seen. Changes
 * made by this process are seen at once: every commit the store reports for
 * a user (balance, refunds, grants — main.c's commit hook) and every
 * revocation, logout and plan change calls auth_forget, which bumps the
 * user's stamp (or, for "everyone", the epoch) so entries filled before it
 * no longer match. A refill reads the stamp *before* the store read, so a
 * change that lands during the read is never hidden behind a fresh-looking
 * entry. Only successful look-ups are cached.
 */
#include "auth.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config.h"
#include "log.h"
#include "util.h"

static bool write_method(const char *m)
{
    return strcmp(m, "GET") != 0 && strcmp(m, "HEAD") != 0;
}

/* "scheme://host[:port]" of a URL, into out. */
static void origin_of(const char *url, char *out, size_t n)
{
    const char *p = strstr(url, "://");
    const char *end = p ? strchr(p + 3, '/') : NULL;
    size_t len = end ? (size_t)(end - url) : strlen(url);
    snprintf(out, n, "%.*s", (int)len, url);
}

/* The origin's port, or the scheme's default when it names none. */
static const char *default_port(const char *origin)
{
    return str_has_prefix(origin, "https://") ? "443" : "80";
}

/* Whether two "scheme://host[:port]" origins are the same: scheme and host
 * case-insensitively, the port with the scheme's default filled in. */
static bool origin_eq(const char *a, const char *b)
{
    const char *sa = strstr(a, "://"), *sb = strstr(b, "://");
    if (!sa || !sb || sa - a != sb - b || strncasecmp(a, b, (size_t)(sa - a)) != 0) return false;
    const char *ha = sa + 3, *hb = sb + 3;
    const char *ca = strrchr(ha, ':'), *cb = strrchr(hb, ':');
    if (ca && strchr(ca, ']')) ca = NULL; /* a colon inside an IPv6 literal */
    if (cb && strchr(cb, ']')) cb = NULL;
    size_t la = ca ? (size_t)(ca - ha) : strlen(ha), lb = cb ? (size_t)(cb - hb) : strlen(hb);
    if (la != lb || strncasecmp(ha, hb, la) != 0) return false;
    return strcmp(ca ? ca + 1 : default_port(a), cb ? cb + 1 : default_port(b)) == 0;
}

bool auth_same_origin(http_req *r)
{
    const char *origin = http_header(r, "Origin");
    const char *referer = http_header(r, "Referer");
    char got[512], own[512], pub[512];
    if (origin && strcmp(origin, "null") != 0)
        snprintf(got, sizeof got, "%s", origin);
    else if (referer)
        origin_of(referer, got, sizeof got);
    else
        return false;
    /* This server's scheme is the public URL's (https behind a TLS proxy,
     * http otherwise): an https origin on an http server is someone else. */
    origin_of(cfg.public_url, pub, sizeof pub);
    const char *host = http_header(r, "Host");
    snprintf(own, sizeof own, "%s://%s", str_has_prefix(pub, "https://") ? "https" : "http",
             host ? host : "");
    return origin_eq(got, own) || origin_eq(got, pub);
}

/* A key's last use is recorded at most once a minute, so API calls do not
 * each cost a durable write. */
#define KEY_TOUCH_MS 60000

/* A store result as an AUTH_E* code (0 for STORE_OK). */
static int auth_code(int store_rc)
{
    switch (store_rc) {
    case STORE_OK:
        return 0;
    case STORE_ENOTFOUND:
        return AUTH_ENONE;
    case STORE_EUNAVAILABLE:
        return AUTH_EUNAVAILABLE;
    default:
        return AUTH_EINTERNAL;
    }
}

/* ---- the credential cache (see DESIGN above) ---- */

#define AUTH_CACHE_TTL_MS 1000
#define AUTH_CACHE_SLOTS 1024 /* power of two */
#define AUTH_STAMP_SLOTS 1024 /* power of two */

typedef struct cache_entry {
    char hash[SECRET_HASH_LEN]; /* "" when empty */
    bool session;
    user_record user;
    int64_t filled_at; /* mono_ms */
    int64_t when;      /* key: last use recorded; session: expiry */
    uint64_t epoch, stamp;
} cache_entry;

static pthread_mutex_t cache_mu = PTHREAD_MUTEX_INITIALIZER;
static cache_entry *cache; /* AUTH_CACHE_SLOTS, allocated on first use */
static _Atomic uint64_t cache_epoch = 1;
static _Atomic uint64_t user_stamp[AUTH_STAMP_SLOTS];

static _Atomic uint64_t *stamp_of(const char *user_id)
{
    return &user_stamp[util_fnv1a(user_id) & (AUTH_STAMP_SLOTS - 1)];
}

void auth_forget(const char *user_id)
{
    if (user_id && *user_id)
        atomic_fetch_add(stamp_of(user_id), 1);
    else
        atomic_fetch_add(&cache_epoch, 1);
}

/* The entry's slot for a secret hash (hex: already uniform). Lock held. */
static cache_entry *slot_of(const char *hash)
{
    if (!cache) cache = xcalloc(AUTH_CACHE_SLOTS, sizeof *cache);
    return &cache[util_fnv1a(hash) & (AUTH_CACHE_SLOTS - 1)];
}

/* A fresh entry for the hash into *user and *when. */
static bool cache_get(const char *hash, bool session, int64_t now, user_record *user, int64_t *when)
{
    pthread_mutex_lock(&cache_mu);
    cache_entry *e = slot_of(hash);
    bool hit = e->session == session && strcmp(e->hash, hash) == 0 &&
               now - e->filled_at < AUTH_CACHE_TTL_MS && e->epoch == atomic_load(&cache_epoch) &&
               e->stamp == atomic_load(stamp_of(e->user.id));
    if (hit) {
        *user = e->user;
        *when = e->when;
    }
    pthread_mutex_unlock(&cache_mu);
    return hit;
}

/* What a refill must remember before it reads the store: the epoch and, when
 * the slot already knows whose secret this is, that user's stamp. */
typedef struct cache_ticket {
    uint64_t epoch, stamp;
    char user_id[ID_LEN];
} cache_ticket;

static void cache_ticket_take(const char *hash, bool session, cache_ticket *t)
{
    pthread_mutex_lock(&cache_mu);
    cache_entry *e = slot_of(hash);
    t->epoch = atomic_load(&cache_epoch);
    t->user_id[0] = '\0';
    if (e->session == session && strcmp(e->hash, hash) == 0) {
        snprintf(t->user_id, sizeof t->user_id, "%s", e->user.id);
        t->stamp = atomic_load(stamp_of(t->user_id));
    }
    pthread_mutex_unlock(&cache_mu);
}

static void cache_put(const char *hash, bool session, int64_t now, const user_record *user,
                      int64_t when, const cache_ticket *t)
{
    pthread_mutex_lock(&cache_mu);
    cache_entry *e = slot_of(hash);
    snprintf(e->hash, sizeof e->hash, "%s", hash);
    e->session = session;
    e->user = *user;
    e->filled_at = now;
    e->when = when;
    e->epoch = t->epoch;
    /* A first sight of this secret has no stamp from before the read: store
     * one that cannot match, so the next request refills with a ticket. */
    e->stamp = strcmp(t->user_id, user->id) == 0 ? t->stamp : atomic_load(stamp_of(user->id)) - 1;
    pthread_mutex_unlock(&cache_mu);
}

/* After a touch: the entry's last use is now, so the next touch waits. */
static void cache_touched(const char *hash, int64_t when)
{
    pthread_mutex_lock(&cache_mu);
    cache_entry *e = slot_of(hash);
    if (!e->session && strcmp(e->hash, hash) == 0) e->when = when;
    pthread_mutex_unlock(&cache_mu);
}

static int key_auth(store_t *s, const char *hash, int64_t now, user_record *user)
{
    int64_t last_used = 0, mono = mono_ms();
    int rc = STORE_OK;
    if (!cache_get(hash, false, mono, user, &last_used)) {
        cache_ticket t;
        cache_ticket_take(hash, false, &t);
        rc = store_key_get(s, hash, user, &last_used);
        if (rc == STORE_OK) cache_put(hash, false, mono, user, last_used, &t);
    }
    if (rc == STORE_OK && now - last_used >= KEY_TOUCH_MS) {
        /* The stamp of last use holds no request for the disk (a create
         * runs on an event-loop thread: see http_set_inline); one lost
         * with a failed commit is written again at the next touch. */
        store_pending *p = store_defer(s);
        rc = store_key_touch(s, hash, now);
        store_defer_stop(p);
        store_when_durable(p, store_durable_ignored, NULL);
        if (rc == STORE_OK) cache_touched(hash, now);
    }
    return auth_code(rc);
}

static int session_auth(store_t *s, const char *hash, user_record *user, int64_t *expires_at)
{
    int64_t mono = mono_ms();
    if (cache_get(hash, true, mono, user, expires_at)) return STORE_OK;
    cache_ticket t;
    cache_ticket_take(hash, true, &t);
    int rc = store_session_get(s, hash, user, expires_at);
    if (rc == STORE_OK) cache_put(hash, true, mono, user, *expires_at, &t);
    return rc;
}

const char *auth_bearer_token(const char *authorization)
{
    if (!authorization || strncasecmp(authorization, "Bearer ", 7) != 0) return NULL;
    const char *key = authorization + 7;
    while (*key == ' ')
        key++;
    return key;
}

int auth_request(store_t *s, http_req *r, user_record *user)
{
    const char *authz = http_header(r, "Authorization");
    char hash[SECRET_HASH_LEN];
    if (authz) {
        const char *key = auth_bearer_token(authz);
        if (!key) return AUTH_ENONE;
        ids_hash_secret(key, hash);
        return key_auth(s, hash, now_ms(), user);
    }
    const char *cookie = http_cookie(r, AUTH_COOKIE);
    if (!cookie || !*cookie) return AUTH_ENONE;
    ids_hash_secret(cookie, hash);
    int64_t expires_at = 0;
    int rc = session_auth(s, hash, user, &expires_at);
    if (rc == STORE_OK && expires_at <= now_ms()) rc = STORE_ENOTFOUND; /* expired */
    if (rc != STORE_OK) return auth_code(rc);
    if (write_method(http_method(r)) && !auth_same_origin(r)) return AUTH_ECSRF;
    return 0;
}

/* ---- the hash gate ---- */

#define HASH_QUEUE_MAX 64

typedef struct parked {
    http_req *r;
    struct parked *next;
} parked;

static pthread_mutex_t gate_mu = PTHREAD_MUTEX_INITIALIZER;
static int gate_running, gate_waiting, gate_peak;
static parked *gate_head, *gate_tail;
static atomic_llong hashes_total;

/* park hook: queue r, or run it now if a slot came free meanwhile. */
static void gate_queue(http_req *r, void *arg)
{
    (void)arg;
    pthread_mutex_lock(&gate_mu);
    if (gate_running < cfg.hash_concurrency) {
        gate_waiting--;
        if (++gate_running > gate_peak) gate_peak = gate_running;
        pthread_mutex_unlock(&gate_mu);
        http_unpark(r);
        return;
    }
    parked *p = xcalloc(1, sizeof *p);
    p->r = r;
    if (gate_tail)
        gate_tail->next = p;
    else
        gate_head = p;
    gate_tail = p;
    pthread_mutex_unlock(&gate_mu);
}

int auth_hash_gate_enter(http_req *r, http_handler_fn then)
{
    pthread_mutex_lock(&gate_mu);
    if (gate_running < cfg.hash_concurrency) {
        if (++gate_running > gate_peak) gate_peak = gate_running;
        pthread_mutex_unlock(&gate_mu);
        return 0;
    }
    if (gate_waiting >= HASH_QUEUE_MAX) {
        pthread_mutex_unlock(&gate_mu);
        return -1;
    }
    gate_waiting++;
    pthread_mutex_unlock(&gate_mu);
    http_park(r, then, gate_queue, NULL);
    return 1;
}

void auth_hash_gate_leave(void)
{
    pthread_mutex_lock(&gate_mu);
    parked *p = gate_head;
    if (p) { /* the slot passes to the first in line */
        gate_head = p->next;
        if (!gate_head) gate_tail = NULL;
        gate_waiting--;
    } else {
        gate_running--;
    }
    pthread_mutex_unlock(&gate_mu);
    if (p) {
        http_unpark(p->r);
        free(p);
    }
}

void auth_hash_stats(long long *total, int *running, int *waiting, int *peak)
{
    *total = atomic_load(&hashes_total);
    pthread_mutex_lock(&gate_mu);
    *running = gate_running;
    *waiting = gate_waiting;
    *peak = gate_peak;
    pthread_mutex_unlock(&gate_mu);
}

/* ---- failed sign-ins ----
 * Each counter is a fixed window kept in a store bucket (store.h "rate
 * limits"): tokens = the failures, updated_at = when the window began. So
 * every process on one database counts together, and a restart forgets
 * nothing. Keys (fail_key):
 *   pair     one address's failures on one email   --login-failures-account
 *   address  one address's failures on any email   --login-failures-address
 *   email    every address's failures on one email --login-failures-email
 * The pair limit stops one guesser at five; the email limit, much higher,
 * is what stops a guesser with many addresses, and only it can lock the
 * owner out — one address alone never can. An IPv6 client counts by its
 * /64, which one subscriber typically holds whole. */

/* In the order they are looked at: an address over its limit is refused
 * before its attempt touches the other two (a flood writes no rows). */
enum fail_kind { FAIL_ADDRESS, FAIL_PAIR, FAIL_EMAIL, FAIL_KINDS };

static int fail_limit(enum fail_kind k)
{
    return k == FAIL_PAIR      ? cfg.login_failures_account
           : k == FAIL_ADDRESS ? cfg.login_failures_address
                               : cfg.login_failures_email;
}

void auth_throttle_address(const char *ip, char *out, size_t n)
{
    struct in6_addr a6;
    if (!strchr(ip, ':') || inet_pton(AF_INET6, ip, &a6) != 1) {
        snprintf(out, n, "%s", ip);
        return;
    }
    if (IN6_IS_ADDR_V4MAPPED(&a6)) { /* an IPv4 client of a dual-stack socket */
        inet_ntop(AF_INET, a6.s6_addr + 12, out, (socklen_t)n);
        return;
    }
    memset(a6.s6_addr + 8, 0, 8);
    char text[INET6_ADDRSTRLEN];
    inet_ntop(AF_INET6, &a6, text, sizeof text);
    snprintf(out, n, "%s/64", text);
}

static void fail_key(enum fail_kind k, const char *email, const char *ip, char *out, size_t n)
{
    char addr[INET6_ADDRSTRLEN + 4];
    auth_throttle_address(ip, addr, sizeof addr);
    if (k == FAIL_PAIR)
        snprintf(out, n, "login:p:%s|%s", addr, email);
    else if (k == FAIL_ADDRESS)
        snprintf(out, n, "login:a:%s", addr);
    else
        snprintf(out, n, "login:e:%s", email);
}

typedef struct fail_step {
    int64_t now, window; /* ms */
    int limit;
    enum { FAIL_LOOK, FAIL_COUNT, FAIL_CLEAR } op;
    int wait; /* FAIL_LOOK: seconds until the window ends when over the limit */
} fail_step;

/* store_bucket_fn: one look at, or change of, one counter. */
static bool fail_apply(store_bucket *b, void *ctx)
{
    fail_step *f = ctx;
    if (b->updated_at <= 0 || f->now - b->updated_at >= f->window) { /* a new window */
        b->tokens = 0;
        b->updated_at = f->now;
    }
    switch (f->op) {
    case FAIL_LOOK:
        if (b->tokens >= f->limit) {
            int64_t left = b->updated_at + f->window - f->now;
            f->wait = left < 1000 ? 1 : (int)((left + 999) / 1000);
        }
        return false;
    case FAIL_COUNT:
        b->tokens += 1;
        return true;
    case FAIL_CLEAR:
        if (b->tokens == 0) return false;
        b->tokens = 0;
        return true;
    }
    return false;
}

static int fail_run(store_t *s, enum fail_kind k, const char *email, const char *ip, fail_step *f)
{
    char key[400];
    fail_key(k, email, ip, key, sizeof key);
    f->now = now_ms();
    f->window = (int64_t)cfg.login_window * 1000;
    f->limit = fail_limit(k);
    return store_bucket_update(s, key, fail_apply, f);
}

int auth_login_throttled(store_t *s, const char *email, const char *ip, int *wait)
{
    *wait = 0;
    for (enum fail_kind k = 0; k < FAIL_KINDS && *wait == 0; k++) {
        if (fail_limit(k) <= 0) continue;
        fail_step f = {.op = FAIL_LOOK};
        int rc = fail_run(s, k, email, ip, &f);
        if (rc != STORE_OK) return rc;
        *wait = f.wait;
    }
    return STORE_OK;
}

int auth_login_result(store_t *s, const char *email, const char *ip, bool ok)
{
    if (ok) { /* the owner, from here: this address's count on it starts again */
        fail_step f = {.op = FAIL_CLEAR};
        return fail_limit(FAIL_PAIR) > 0 ? fail_run(s, FAIL_PAIR, email, ip, &f) : STORE_OK;
    }
    for (enum fail_kind k = 0; k < FAIL_KINDS; k++) {
        if (fail_limit(k) <= 0) continue;
        fail_step f = {.op = FAIL_COUNT};
        int rc = fail_run(s, k, email, ip, &f);
        if (rc != STORE_OK) return rc;
    }
    return STORE_OK;
}

/* ---- passwords ---- */

int auth_hash_password(const char *password, char out[128])
{
    _Static_assert(crypto_pwhash_STRBYTES <= 128, "hash buffer");
    return crypto_pwhash_str(out, password, strlen(password), crypto_pwhash_OPSLIMIT_INTERACTIVE,
                             crypto_pwhash_MEMLIMIT_INTERACTIVE) == 0
               ? 0
               : -1;
}

static char dummy_hash[128];
static pthread_once_t dummy_once = PTHREAD_ONCE_INIT;

static void make_dummy_hash(void)
{
    char pw[32];
    randombytes_buf(pw, sizeof pw - 1);
    for (size_t i = 0; i < sizeof pw - 1; i++)
        pw[i] = (char)('a' + (unsigned char)pw[i] % 26);
    pw[sizeof pw - 1] = '\0';
    if (auth_hash_password(pw, dummy_hash) != 0) dummy_hash[0] = '\0';
}

bool auth_check_password(const char *hash, const char *password)
{
    atomic_fetch_add(&hashes_total, 1);
    if (!hash || !*hash) { /* no such account: spend what a wrong password costs */
        pthread_once(&dummy_once, make_dummy_hash);
        volatile int spent = crypto_pwhash_str_verify(dummy_hash, password, strlen(password));
        (void)spent;
        return false;
    }
    return crypto_pwhash_str_verify(hash, password, strlen(password)) == 0;
}

const char *auth_password_problem(const char *password)
{
    size_t n = strlen(password);
    if (n < 8 || n > 256) return "password must be 8 to 256 characters";
    for (const char *p = password; *p; p++)
        if (!isspace((unsigned char)*p)) return NULL;
    return "password must not be only spaces";
}

static void set_cookie(http_req *r, const char *value, int max_age)
{
    bool tls = str_has_prefix(cfg.public_url, "https://");
    char *c = xasprintf("%s=%s; Path=/; HttpOnly; SameSite=Lax; Max-Age=%d%s", AUTH_COOKIE, value,
                        max_age, tls ? "; Secure" : "");
    http_add_header(r, "Set-Cookie", c);
    free(c);
}

int auth_session_start(store_t *s, http_req *r, const char *user_id)
{
    char token[96], hash[SECRET_HASH_LEN];
    ids_new_secret("ses", token, sizeof token);
    ids_hash_secret(token, hash);
    int64_t ttl = (int64_t)AUTH_SESSION_DAYS * 24 * 3600;
    int64_t now = now_ms();
    if (store_session_create(s, hash, user_id, now, now + ttl * 1000) != STORE_OK) return -1;
    set_cookie(r, token, (int)ttl);
    return 0;
}

void auth_session_end(store_t *s, http_req *r)
{
    const char *cookie = http_cookie(r, AUTH_COOKIE);
    if (cookie && *cookie) {
        char hash[SECRET_HASH_LEN];
        ids_hash_secret(cookie, hash);
        store_session_delete(s, hash);
        auth_forget(NULL); /* whose session it was is not known here */
    }
    set_cookie(r, "", 0);
}

int auth_key_create(store_t *s, const char *user_id, const char *name, char key_id[ID_LEN],
                    char **key_out)
{
    char key[96], hash[SECRET_HASH_LEN], hint[16];
    ids_new_secret("sk", key, sizeof key);
    ids_hash_secret(key, hash);
    snprintf(hint, sizeof hint, "sk_…%s", key + strlen(key) - 4);
    ids_new("key", key_id);
    int rc = store_key_create(s, key_id, user_id, name, hash, hint, now_ms());
    if (rc == STORE_OK) *key_out = xstrdup(key);
    return rc;
}

void auth_email_fold(char *email)
{
    for (char *p = email; *p; p++)
        if (*p >= 'A' && *p <= 'Z') *p = (char)(*p + 32);
}

int auth_user_create(store_t *s, const char *email, const char *name, const char *role,
                     const char *password_hash, int64_t grant, user_record *out)
{
    user_record u = {0};
    ids_new("usr", u.id);
    snprintf(u.email, sizeof u.email, "%s", email);
    auth_email_fold(u.email);
    snprintf(u.name, sizeof u.name, "%s", name);
    snprintf(u.plan, sizeof u.plan, "free");
    snprintf(u.role, sizeof u.role, "%s", role);
    u.created_at = now_ms();
    int rc = store_user_create(s, &u, password_hash, grant);
    if (rc == STORE_OK) *out = u;
    return rc;
}
