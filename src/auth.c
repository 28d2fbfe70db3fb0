/*
 * auth — credentials and accounts. Secrets (API keys, session tokens) are
 * random, shown once and stored only as hashes (ids.c); passwords use
 * Argon2id. auth_user_create is where every account is made.
 */
#include "auth.h"

#include <sodium.h>
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

static int key_auth(store_t *s, const char *hash, int64_t now, user_record *user)
{
    int64_t last_used = 0;
    int rc = store_key_get(s, hash, user, &last_used);
    if (rc == STORE_OK && now - last_used >= KEY_TOUCH_MS) rc = store_key_touch(s, hash, now);
    return auth_code(rc);
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
    int rc = store_session_get(s, hash, user, &expires_at);
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
