/*
 * provider_remote — the outcome rules the hosted-model adapters share
 * (provider_remote.h).
 */
#include "provider_remote.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "util.h"

int provider_remote_timeout_ms(void)
{
    long s = cfg.provider_timeout > 0 ? cfg.provider_timeout : 300;
    return (int)(s > 86400 ? 86400000 : s * 1000);
}

int provider_remote_outcome(provider_job *job, const net_response *resp, const char *who,
                            const char *provider_message, char **error)
{
    *error = NULL;
    switch (resp->error) {
    case NET_OK:
        break;
    case NET_ECANCELLED:
        *error = xstrdup("cancelled");
        return PROVIDER_CANCELLED;
    case NET_ETIMEOUT:
        *error = xasprintf("%s did not answer in time", who);
        return PROVIDER_TRANSIENT;
    case NET_ETOOBIG:
        *error = xasprintf("%s sent an answer larger than allowed", who);
        return PROVIDER_MALFORMED;
    case NET_EREFUSED:
    case NET_EINVALID:
        *error = xasprintf("%s cannot be reached from this server (check its base URL and "
                           "--allow-hosts)",
                           who);
        return PROVIDER_TRANSIENT;
    default:
        *error = xasprintf("%s could not be reached: %s", who, resp->reason ? resp->reason : "");
        return PROVIDER_TRANSIENT;
    }
    long st = resp->status;
    if (st >= 200 && st < 300) return PROVIDER_OK;
    const char *m = provider_message && *provider_message ? provider_message : NULL;
    if (st == 429) {
        int64_t ra = net_retry_after_ms(resp);
        if (ra > 0) job->retry_after_ms = ra;
        *error = xasprintf("%s is rate limiting this server (HTTP 429)%s%s", who, m ? ": " : "",
                           m ? m : "");
        return PROVIDER_TRANSIENT;
    }
    if (st >= 500 || st == 408) {
        *error = xasprintf("%s had a temporary failure (HTTP %ld)", who, st);
        return PROVIDER_TRANSIENT;
    }
    if (st == 401 || st == 403) {
        *error = xasprintf("%s refused this server's credentials (HTTP %ld)", who, st);
        return PROVIDER_REJECTED;
    }
    if (st >= 400) {
        *error =
            xasprintf("%s refused the request (HTTP %ld)%s%s", who, st, m ? ": " : "", m ? m : "");
        return PROVIDER_REJECTED;
    }
    *error = xasprintf("%s answered with an unexpected HTTP %ld", who, st);
    return PROVIDER_MALFORMED;
}

const char *provider_remote_sniff(const unsigned char *d, size_t n)
{
    if (n >= 8 && memcmp(d, "\x89PNG\r\n\x1a\n", 8) == 0) return "png";
    if (n >= 3 && d[0] == 0xFF && d[1] == 0xD8 && d[2] == 0xFF) return "jpeg";
    if (n >= 12 && memcmp(d, "RIFF", 4) == 0 && memcmp(d + 8, "WEBP", 4) == 0) return "webp";
    return NULL;
}

char *provider_remote_url(const char *base, const char *path)
{
    size_t n = base ? strlen(base) : 0;
    while (n > 0 && base[n - 1] == '/')
        n--;
    return xasprintf("%.*s%s", (int)n, base ? base : "", path);
}

void provider_remote_auth(net_request *r, const char *secret)
{
    char *auth = xasprintf("Authorization: Bearer %s", secret ? secret : "");
    net_request_header(r, auth);
    sodium_memzero(auth, strlen(auth));
    free(auth);
}
