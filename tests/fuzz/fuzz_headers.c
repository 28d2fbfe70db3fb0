/*
 * fuzz_headers — libFuzzer target: the request headers the service parses
 * itself, as pure functions: Prefer (api_prefer_wait), Last-Event-ID
 * (api_last_event_id), Authorization (auth_bearer_token) and
 * Idempotency-Key (gen_service_idem_key_ok). The first byte picks the
 * header, the rest is its value (up to the first NUL, as libmicrohttpd
 * hands it over). Each answer is checked against the rule it implements.
 * Cookies are parsed by libmicrohttpd (MHD_COOKIE_KIND), not here; the
 * session token it yields is only hashed (ids_hash_secret), fuzzed too.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api.h"
#include "auth.h"
#include "gen_service.h"
#include "ids.h"

static void check_prefer(const char *v)
{
    int n = api_prefer_wait(v);
    if (n < -1 || n > 60) abort();
    if (n >= 0 && !strcasestr(v, "wait=")) abort(); /* found a wait that is not there */
}

static void check_last_event_id(const char *v)
{
    int64_t id = -1;
    int rc = api_last_event_id(v, &id);
    bool digits = *v != '\0';
    for (const char *c = v; *c; c++)
        if (*c < '0' || *c > '9') digits = false;
    if (rc == 0) {
        if (!digits || id < 0) abort();
        /* The value round-trips (leading zeros aside). */
        const char *d = v;
        while (*d == '0' && d[1])
            d++;
        char buf[32];
        snprintf(buf, sizeof buf, "%lld", (long long)id);
        if (strcmp(buf, d) != 0) abort();
    } else if (digits && strlen(v) < 19) {
        abort(); /* a short run of digits is always an id */
    }
}

static void check_bearer(const char *v)
{
    const char *key = auth_bearer_token(v);
    if (!key) {
        if (strncasecmp(v, "Bearer ", 7) == 0) abort();
        return;
    }
    if (key < v + 7 || key > v + strlen(v) || *key == ' ') abort();
    char hash[SECRET_HASH_LEN];
    ids_hash_secret(key, hash);
    if (strlen(hash) == 0 || strlen(hash) >= SECRET_HASH_LEN) abort();
}

static void check_idem(const char *v)
{
    bool ok = gen_service_idem_key_ok(v);
    size_t n = strlen(v);
    if (ok != (n >= 1 && n <= GEN_SERVICE_IDEM_KEY_MAX)) abort();
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    static int ready;
    if (!ready) ready = ids_init() == 0;
    if (size < 1) return 0;
    char *v = malloc(size);
    memcpy(v, data + 1, size - 1);
    v[size - 1] = '\0';
    switch (data[0] % 5) {
    case 0:
        check_prefer(v);
        break;
    case 1:
        check_last_event_id(v);
        break;
    case 2:
        check_bearer(v);
        break;
    case 3:
        check_idem(v);
        break;
    default: { /* a cookie value: the session token, hashed */
        char hash[SECRET_HASH_LEN];
        ids_hash_secret(v, hash);
        break;
    }
    }
    free(v);
    return 0;
}
