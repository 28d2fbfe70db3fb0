/*
 * auth — credentials and accounts. Secrets (API keys, session tokens) are
 * random, shown once and stored only as hashes (ids.c); passwords use
 * Argon2id. auth_user_create is where every account is made.
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

#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
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
    const char *host = http_header(r, "Host");
    snprintf(own, sizeof own, "http://%s", host ? host : "");
    origin_of(cfg.public_url, pub, sizeof pub);
    char own_tls[512];
    snprintf(own_tls, sizeof own_tls, "https://%s", host ? host : "");
    return strcasecmp(got, own) == 0 || strcasecmp(got, own_tls) == 0 || strcasecmp(got, pub) == 0;
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

static uint32_t fnv1a(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

static _Atomic uint64_t *stamp_of(const char *user_id)
{
    return &user_stamp[fnv1a(user_id) & (AUTH_STAMP_SLOTS - 1)];
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
    return &cache[fnv1a(hash) & (AUTH_CACHE_SLOTS - 1)];
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
        rc = store_key_touch(s, hash, now);
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

int auth_request(store_t *s, http_req *r, user_record *user)
{
    const char *authz = http_header(r, "Authorization");
    char hash[SECRET_HASH_LEN];
    if (authz) {
        if (strncasecmp(authz, "Bearer ", 7) != 0) return AUTH_ENONE;
        const char *key = authz + 7;
        while (*key == ' ')
            key++;
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

int auth_hash_password(const char *password, char out[128])
{
    _Static_assert(crypto_pwhash_STRBYTES <= 128, "hash buffer");
    return crypto_pwhash_str(out, password, strlen(password), crypto_pwhash_OPSLIMIT_INTERACTIVE,
                             crypto_pwhash_MEMLIMIT_INTERACTIVE) == 0
               ? 0
               : -1;
}

bool auth_check_password(const char *hash, const char *password)
{
    return hash && crypto_pwhash_str_verify(hash, password, strlen(password)) == 0;
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
