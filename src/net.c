/*
 * net — the one outbound HTTP loop and the address rules (net.h).
 *
 * Address rule: a destination whose address is loopback, private,
 * link-local (cloud metadata included), CGNAT, unspecified, multicast or
 * reserved is refused, unless the host name or the address is on the
 * operator's allow list (--allow-hosts: names, addresses or CIDRs).
 * net_check_url applies it to the names a URL resolves to, before anything
 * is sent; the loop applies it again to every address curl actually
 * connects to (CURLOPT_OPENSOCKETFUNCTION), on every redirect hop, so
 * neither DNS rebinding nor a redirect can slip past it.
 *
 * DESIGN (threads). net_start only takes the allow list; the loop thread,
 * the multi handle and curl itself (and with it the TLS library, about 2 MB
 * of a process's memory) start with the first request (loop_ensure), so a
 * server that never calls out never pays for them. The allow list is
 * written by net_start before the loop thread exists and is read-only
 * afterwards. `loop.mu` guards the start, the hand-off list
 * (`loop.incoming`) and the enabled/running/stopping flags; everything
 * else — the multi handle, the delayed and active lists, the requests
 * inside them — belongs
 * to the loop thread alone. A request is the caller's until net_submit and
 * the loop's afterwards, until on_done has returned and it is freed.
 * curl_multi_wakeup is the only call another thread makes on the multi
 * handle (it is documented as thread-safe for exactly that).
 */
#include "net.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "log.h"

#define NET_MAX_URL 2048

struct net_request {
    net_request *next; /* in loop.incoming, the delayed list or the active list */
    CURL *easy;
    char *method;
    char *url;
    struct curl_slist *headers;
    curl_mime *mime;
    buf body;
    bool has_body;
    int timeout_ms;
    size_t max_bytes;
    bool follow; /* net_request_redirects asked for redirects */
    int redirects_left;
    int64_t delay_ms;
    const atomic_bool *cancel;
    const atomic_bool *wake;
    net_done_fn on_done;
    void *ctx;

    /* Loop-thread state. */
    int64_t due;       /* mono ms: when a delayed request starts */
    int64_t deadline;  /* mono ms: when the whole request times out */
    bool host_allowed; /* this hop's host name is allow-listed */
    bool refused;      /* a connect target broke the address rule */
    bool too_big;
    net_response resp;
};

static struct {
    pthread_mutex_t mu;
    bool enabled; /* between net_start and net_stop */
    bool running; /* the loop thread exists */
    bool stopping;
    pthread_t thread;
    CURLM *multi;
    net_request *incoming; /* under mu; newest first */
    net_request *delayed;  /* loop thread; unordered */
    net_request *active;   /* loop thread; in the multi handle */
    int64_t next_due;      /* loop thread; the earliest delayed request's due time */
    atomic_int in_flight;  /* submitted, not yet ended */
} loop = {.mu = PTHREAD_MUTEX_INITIALIZER};

/* ---- the allow list and the address rules ---- */

typedef struct allow_rule {
    char *host; /* a host name (lower case), or NULL for an address rule */
    int family; /* AF_INET | AF_INET6 */
    unsigned char addr[16];
    int prefix; /* bits */
} allow_rule;

static allow_rule *allow_rules;
static size_t n_allow;

static bool prefix_match(const unsigned char *a, const unsigned char *b, int bits)
{
    int full = bits / 8, rest = bits % 8;
    if (memcmp(a, b, (size_t)full) != 0) return false;
    if (!rest) return true;
    unsigned char mask = (unsigned char)(0xFF << (8 - rest));
    return (a[full] & mask) == (b[full] & mask);
}

static bool v4_blocked(const unsigned char *a)
{
    static const struct {
        unsigned char net[4];
        int bits;
    } nets[] = {
        {{0, 0, 0, 0}, 8},      /* "this" network */
        {{10, 0, 0, 0}, 8},     /* private */
        {{100, 64, 0, 0}, 10},  /* CGNAT */
        {{127, 0, 0, 0}, 8},    /* loopback */
        {{169, 254, 0, 0}, 16}, /* link-local, cloud metadata */
        {{172, 16, 0, 0}, 12},  /* private */
        {{192, 0, 0, 0}, 24},   /* IETF protocol assignments */
        {{192, 168, 0, 0}, 16}, /* private */
        {{198, 18, 0, 0}, 15},  /* benchmarking */
        {{224, 0, 0, 0}, 4},    /* multicast */
        {{240, 0, 0, 0}, 4},    /* reserved, broadcast */
    };
    for (size_t i = 0; i < ARRAY_LEN(nets); i++)
        if (prefix_match(a, nets[i].net, nets[i].bits)) return true;
    return false;
}

static bool v6_blocked(const unsigned char *a)
{
    static const unsigned char zero[16] = {0};
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF};
    static const unsigned char nat64[12] = {0, 0x64, 0xFF, 0x9B, 0, 0, 0, 0, 0, 0, 0, 0};
    if (memcmp(a, zero, 15) == 0 && (a[15] == 0 || a[15] == 1)) return true; /* :: and ::1 */
    if (memcmp(a, mapped, 12) == 0 || memcmp(a, nat64, 12) == 0 || memcmp(a, zero, 12) == 0)
        return v4_blocked(a + 12);                          /* IPv4 inside IPv6 */
    if ((a[0] & 0xFE) == 0xFC) return true;                 /* fc00::/7 unique local */
    if (a[0] == 0xFE && (a[1] & 0xC0) == 0x80) return true; /* fe80::/10 link-local */
    if (a[0] == 0xFE && (a[1] & 0xC0) == 0xC0) return true; /* fec0::/10 site-local */
    if (a[0] == 0xFF) return true;                          /* multicast */
    return false;
}

/* Splits a sockaddr into family and raw address bytes. */
static bool sockaddr_bytes(const struct sockaddr *sa, int *family, unsigned char out[16])
{
    if (sa->sa_family == AF_INET) {
        memcpy(out, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        *family = AF_INET;
        return true;
    }
    if (sa->sa_family == AF_INET6) {
        memcpy(out, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
        *family = AF_INET6;
        return true;
    }
    return false;
}

static bool addr_allowlisted(int family, const unsigned char *a)
{
    static const unsigned char zero[12] = {0};
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF};
    static const unsigned char nat64[12] = {0, 0x64, 0xFF, 0x9B, 0, 0, 0, 0, 0, 0, 0, 0};
    /* An IPv4 rule also covers the IPv6 forms v6_blocked judges as that
     * IPv4 (mapped, NAT64, compatible): the same address, the same answer. */
    bool v4_inside = family == AF_INET6 && (memcmp(a, mapped, 12) == 0 ||
                                            memcmp(a, nat64, 12) == 0 || memcmp(a, zero, 12) == 0);
    for (size_t i = 0; i < n_allow; i++) {
        const allow_rule *r = &allow_rules[i];
        if (r->host) continue;
        if (r->family == family && prefix_match(a, r->addr, r->prefix)) return true;
        if (r->family == AF_INET && v4_inside && prefix_match(a + 12, r->addr, r->prefix))
            return true;
    }
    return false;
}

bool net_addr_refused(const struct sockaddr *sa)
{
    int family;
    unsigned char a[16];
    if (!sockaddr_bytes(sa, &family, a)) return true;
    bool blocked = family == AF_INET ? v4_blocked(a) : v6_blocked(a);
    return blocked && !addr_allowlisted(family, a);
}

static bool host_allowlisted(const char *host)
{
    if (!host) return false;
    size_t n = strlen(host);
    while (n > 0 && host[n - 1] == '.')
        n--;
    for (size_t i = 0; i < n_allow; i++)
        if (allow_rules[i].host && strlen(allow_rules[i].host) == n &&
            strncasecmp(allow_rules[i].host, host, n) == 0)
            return true;
    return false;
}

/* Host-name characters (letters, digits, '-', '.', '_'). */
static bool host_chars_ok(const char *h)
{
    if (!*h) return false;
    for (; *h; h++)
        if (!isalnum((unsigned char)*h) && *h != '-' && *h != '.' && *h != '_') return false;
    return true;
}

/* Parses one allow-list entry into *out (out->host owned by the caller).
 * 0, or -1 when the entry is malformed. */
static int allow_parse(const char *item, allow_rule *out)
{
    allow_rule r;
    memset(&r, 0, sizeof r);
    if (strlen(item) >= 256) return -1;
    char tmp[256];
    snprintf(tmp, sizeof tmp, "%s", item);
    char *slash = strchr(tmp, '/');
    int bits = -1;
    if (slash) {
        *slash = '\0';
        char *end;
        long v = strtol(slash + 1, &end, 10);
        if (*end || end == slash + 1 || v < 0) goto bad;
        bits = (int)v;
    }
    char *h = tmp;
    size_t hl = strlen(h);
    if (hl > 1 && h[0] == '[' && h[hl - 1] == ']') {
        h[hl - 1] = '\0';
        h++;
    }
    if (inet_pton(AF_INET, h, r.addr) == 1) {
        r.family = AF_INET;
        r.prefix = bits < 0 ? 32 : bits;
        if (r.prefix > 32) goto bad;
    } else if (inet_pton(AF_INET6, h, r.addr) == 1) {
        r.family = AF_INET6;
        r.prefix = bits < 0 ? 128 : bits;
        if (r.prefix > 128) goto bad;
    } else if (bits < 0 && host_chars_ok(h)) {
        r.host = xstrdup(h);
        for (char *c = r.host; *c; c++)
            *c = (char)tolower((unsigned char)*c);
        size_t n = strlen(r.host);
        while (n > 0 && r.host[n - 1] == '.')
            r.host[--n] = '\0';
    } else {
        goto bad;
    }
    *out = r;
    return 0;
bad:
    return -1;
}

static void allow_add(const char *item)
{
    allow_rule r;
    if (allow_parse(item, &r) != 0) {
        log_warn("allow-hosts: ignoring malformed entry \"%s\"", item);
        return;
    }
    allow_rules = xrealloc(allow_rules, (n_allow + 1) * sizeof *allow_rules);
    allow_rules[n_allow++] = r;
}

int net_check_allow_hosts(const char *allow_hosts, char **err)
{
    char *list = xstrdup(allow_hosts ? allow_hosts : ""), *save = NULL;
    int rc = 0;
    for (char *tok = strtok_r(list, ", \t", &save); tok; tok = strtok_r(NULL, ", \t", &save)) {
        allow_rule r;
        if (allow_parse(tok, &r) != 0) {
            *err = xasprintf("--allow-hosts: malformed entry \"%s\" (expected a host name, an "
                             "address or a CIDR such as 10.0.0.0/8)",
                             tok);
            rc = -1;
            break;
        }
        free(r.host);
    }
    free(list);
    return rc;
}

static void allow_clear(void)
{
    for (size_t i = 0; i < n_allow; i++)
        free(allow_rules[i].host);
    free(allow_rules);
    allow_rules = NULL;
    n_allow = 0;
}

static int fail(char **error, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int fail(char **error, int code, const char *fmt, ...)
{
    if (error) {
        va_list ap;
        va_start(ap, fmt);
        *error = xvasprintf(fmt, ap);
        va_end(ap);
    }
    return code;
}

/* The host of an http(s) URL (brackets and IPv6 zone removed), or NULL
 * with *error. */
static char *url_host(const char *url, const char *what, char **error)
{
    if (!url || !*url) return fail(error, 0, "%s is empty", what), NULL;
    if (strlen(url) > NET_MAX_URL)
        return fail(error, 0, "%s is longer than %d characters", what, NET_MAX_URL), NULL;
    for (const char *c = url; *c; c++)
        if ((unsigned char)*c <= 0x20 || *c == 0x7F)
            return fail(error, 0, "%s contains spaces or control characters", what), NULL;
    if (strncasecmp(url, "http://", 7) != 0 && strncasecmp(url, "https://", 8) != 0)
        return fail(error, 0, "%s must use http or https", what), NULL;
    CURLU *u = curl_url();
    char *h = NULL, *host = NULL;
    if (!u || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &h, 0) != CURLUE_OK || !h || !*h) {
        fail(error, 0, "%s is not a valid URL", what);
        goto cleanup;
    }
    size_t hl = strlen(h);
    if (hl > 1 && h[0] == '[' && h[hl - 1] == ']')
        host = xstrndup(h + 1, hl - 2);
    else
        host = xstrdup(h);
    /* An IPv6 zone id ("fe80::1%eth0") never names a public host. */
    char *pct = strchr(host, '%');
    if (pct) *pct = '\0';
cleanup:
    curl_free(h);
    curl_url_cleanup(u);
    return host;
}

int net_check_url(const char *url, const char *what, char **error)
{
    if (error) *error = NULL;
    char *host = url_host(url, what, error);
    if (!host) return NET_EINVALID;
    int rc = 0;
    if (host_allowlisted(host)) goto cleanup;
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host, NULL, &hints, &res) != 0 || !res) {
        rc = fail(error, NET_EINVALID, "%s host \"%s\" could not be resolved", what, host);
        goto cleanup;
    }
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next)
        if (net_addr_refused(ai->ai_addr)) {
            rc = fail(error, NET_EREFUSED,
                      "%s host \"%s\" is a loopback, private or link-local address; the server "
                      "does not connect to those unless allowed (--allow-hosts)",
                      what, host);
            break;
        }
    freeaddrinfo(res);
cleanup:
    free(host);
    return rc;
}

/* ---- requests ---- */

static bool loop_ensure(void);

net_request *net_request_new(const char *method, const char *url)
{
    net_request *r = xcalloc(1, sizeof *r);
    /* Without the loop, easy stays NULL and the request ends as
     * NET_EINTERNAL when submitted. */
    if (loop_ensure()) r->easy = curl_easy_init();
    r->method = xstrdup(method ? method : "GET");
    r->url = xstrdup(url ? url : "");
    r->timeout_ms = NET_DEFAULT_TIMEOUT_MS;
    r->max_bytes = NET_DEFAULT_MAX_BYTES;
    /* curl would otherwise send "Expect: 100-continue" for large bodies
     * and wait for the answer to it; our peers do not need the dance. */
    r->headers = curl_slist_append(NULL, "Expect:");
    return r;
}

void net_request_header(net_request *r, const char *line)
{
    r->headers = curl_slist_append(r->headers, line);
}

void net_request_body(net_request *r, const char *content_type, const void *data, size_t len)
{
    buf_free(&r->body);
    buf_append(&r->body, data, len);
    r->has_body = true;
    if (content_type) {
        char *h = xasprintf("Content-Type: %s", content_type);
        net_request_header(r, h);
        free(h);
    }
}

void net_request_part(net_request *r, const char *name, const char *filename,
                      const char *content_type, const void *data, size_t len)
{
    if (!r->easy) return;
    if (!r->mime) r->mime = curl_mime_init(r->easy);
    curl_mimepart *p = curl_mime_addpart(r->mime);
    curl_mime_name(p, name);
    curl_mime_data(p, data, len);
    if (filename) curl_mime_filename(p, filename);
    if (content_type) curl_mime_type(p, content_type);
}

void net_request_limits(net_request *r, int timeout_ms, size_t max_bytes)
{
    if (timeout_ms > 0) r->timeout_ms = timeout_ms;
    if (max_bytes > 0) r->max_bytes = max_bytes;
}

void net_request_redirects(net_request *r, int n)
{
    r->follow = n > 0;
    r->redirects_left = n > 0 ? n : 0;
}

void net_request_delay(net_request *r, int64_t delay_ms)
{
    r->delay_ms = delay_ms > 0 ? delay_ms : 0;
}

void net_request_cancel_flag(net_request *r, const atomic_bool *flag)
{
    r->cancel = flag;
}

void net_request_wake_flag(net_request *r, const atomic_bool *flag)
{
    r->wake = flag;
}

void net_request_free(net_request *r)
{
    if (!r) return;
    if (r->easy) curl_easy_cleanup(r->easy);
    curl_mime_free(r->mime);
    curl_slist_free_all(r->headers);
    buf_free(&r->body);
    buf_free(&r->resp.body);
    buf_free(&r->resp.headers);
    free(r->method);
    free(r->url);
    free(r);
}

/* ---- responses ---- */

const char *net_response_header(const net_response *resp, const char *name)
{
    static _Thread_local char value[512];
    size_t nl = strlen(name);
    const char *p = resp->headers.data, *end = p ? p + resp->headers.len : NULL;
    while (p && p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol) eol = end;
        if ((size_t)(eol - p) > nl && p[nl] == ':' && strncasecmp(p, name, nl) == 0) {
            const char *v = p + nl + 1, *ve = eol;
            while (v < ve && (*v == ' ' || *v == '\t'))
                v++;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t'))
                ve--;
            snprintf(value, sizeof value, "%.*s", (int)(ve - v), v);
            return value;
        }
        p = eol + 1;
    }
    return NULL;
}

int64_t net_retry_after_ms(const net_response *resp)
{
    const char *v = net_response_header(resp, "retry-after");
    if (!v || !*v) return -1;
    char *end;
    long long secs = strtoll(v, &end, 10);
    if (*end == '\0' && end != v) return secs < 0 ? 0 : secs * 1000;
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    const char *rest = strptime(v, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    if (!rest || *rest) return -1;
    int64_t at = (int64_t)timegm(&tm) * 1000, d = at - now_ms();
    return d < 0 ? 0 : d;
}

void net_response_free(net_response *resp)
{
    buf_free(&resp->body);
    buf_free(&resp->headers);
    free((char *)resp->effective_url);
    resp->effective_url = NULL;
}

/* ---- curl callbacks (loop thread) ---- */

static size_t on_write(char *ptr, size_t size, size_t nmemb, void *user)
{
    net_request *r = user;
    size_t n = size * nmemb;
    if (r->resp.body.len + n > r->max_bytes) {
        r->too_big = true;
        return 0; /* aborts the transfer */
    }
    buf_append(&r->resp.body, ptr, n);
    return n;
}

/* Keeps the header block of the last response only (a redirect or an
 * interim 1xx starts a new one with its status line). */
static size_t on_header(char *ptr, size_t size, size_t nmemb, void *user)
{
    net_request *r = user;
    size_t n = size * nmemb;
    if (n >= 5 && strncmp(ptr, "HTTP/", 5) == 0) r->resp.headers.len = 0;
    if (r->resp.headers.len + n <= 64 * 1024) buf_append(&r->resp.headers, ptr, n);
    return n;
}

/* Every socket curl opens goes through here, with the address it is about
 * to connect to: the address rule is enforced on that, after DNS. */
static curl_socket_t on_open_socket(void *user, curlsocktype purpose, struct curl_sockaddr *addr)
{
    net_request *r = user;
    if (purpose != CURLSOCKTYPE_IPCXN) return CURL_SOCKET_BAD;
    if (!r->host_allowed && net_addr_refused(&addr->addr)) {
        r->refused = true;
        return CURL_SOCKET_BAD;
    }
    return socket(addr->family, addr->socktype | SOCK_CLOEXEC, addr->protocol);
}

/* ---- the loop ---- */

/* Points the easy handle at r->url for one hop. 0, or a NET_E* code. */
static int hop_setup(net_request *r)
{
    char *err = NULL;
    char *host = url_host(r->url, "URL", &err);
    free(err);
    if (!host) return NET_EINVALID;
    r->host_allowed = host_allowlisted(host);
    free(host);
    int64_t left = r->deadline - mono_ms();
    if (left <= 0) return NET_ETIMEOUT;

    CURL *c = r->easy;
    curl_easy_setopt(c, CURLOPT_URL, r->url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L); /* hop by hop, each checked */
    curl_easy_setopt(c, CURLOPT_PROXY, "");          /* never via an environment proxy */
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)left);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)NET_CONNECT_TIMEOUT_MS);
    curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)r->max_bytes);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, on_open_socket);
    curl_easy_setopt(c, CURLOPT_OPENSOCKETDATA, r);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "StyleStudio/1.0");
    curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, r->headers);
    curl_easy_setopt(c, CURLOPT_PRIVATE, r);
    if (r->mime) {
        curl_easy_setopt(c, CURLOPT_MIMEPOST, r->mime);
    } else if (r->has_body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body.len);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, r->body.data ? r->body.data : "");
    }
    if (strcmp(r->method, "GET") == 0)
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    else if (strcmp(r->method, "POST") != 0 || (!r->mime && !r->has_body))
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, r->method);
    if (strcmp(r->method, "POST") == 0 && !r->mime && !r->has_body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
    }
    r->refused = r->too_big = false;
    r->resp.body.len = 0;
    r->resp.headers.len = 0;
    return 0;
}

static void list_remove(net_request **head, net_request *r)
{
    for (net_request **pp = head; *pp; pp = &(*pp)->next)
        if (*pp == r) {
            *pp = r->next;
            r->next = NULL;
            return;
        }
}

/* Ends a request: calls on_done and frees it. */
static void finish(net_request *r, int error, const char *reason)
{
    r->resp.error = error;
    r->resp.reason = reason;
    if (error == NET_OK) {
        long status = 0;
        char *eff = NULL;
        curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
        curl_easy_getinfo(r->easy, CURLINFO_EFFECTIVE_URL, &eff);
        r->resp.status = status;
        r->resp.effective_url = eff ? eff : r->url;
    } else {
        r->resp.status = 0;
        r->resp.effective_url = r->url;
    }
    r->on_done(r, &r->resp, r->ctx);
    r->resp.effective_url = NULL; /* borrowed from curl or the request */
    net_request_free(r);
    atomic_fetch_sub(&loop.in_flight, 1);
}

int net_in_flight(void)
{
    return atomic_load(&loop.in_flight);
}

/* Adds r to the multi handle for a hop, or ends it. */
static void activate(net_request *r)
{
    int rc = r->easy ? hop_setup(r) : NET_EINTERNAL;
    if (rc == 0 && curl_multi_add_handle(loop.multi, r->easy) != CURLM_OK) rc = NET_EINTERNAL;
    if (rc != 0) {
        finish(r, rc,
               rc == NET_EINVALID   ? "the URL is not a valid http(s) URL"
               : rc == NET_ETIMEOUT ? "the request timed out"
                                    : "the request could not be started");
        return;
    }
    r->next = loop.active;
    loop.active = r;
}

/* A redirect to follow: true once r is re-armed for the next hop (or ended
 * for too many redirects). */
static bool follow_redirect(net_request *r)
{
    long status = 0;
    char *loc = NULL;
    curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
    if (!r->follow || status < 300 || status >= 400 || strcmp(r->method, "GET") != 0) return false;
    curl_easy_getinfo(r->easy, CURLINFO_REDIRECT_URL, &loc);
    if (!loc || !*loc) return false;
    if (r->redirects_left <= 0) {
        finish(r, NET_EREDIRECTS, "too many redirects");
        return true;
    }
    r->redirects_left--;
    free(r->url);
    r->url = xstrdup(loc);
    activate(r);
    return true;
}

/* A transfer of the multi handle ended with cc. */
static void transfer_done(net_request *r, CURLcode cc)
{
    curl_multi_remove_handle(loop.multi, r->easy);
    list_remove(&loop.active, r);
    if (r->refused) {
        finish(r, NET_EREFUSED,
               "the destination is a loopback, private or link-local address; the server does "
               "not connect to those unless allowed (--allow-hosts)");
    } else if (r->too_big || cc == CURLE_FILESIZE_EXCEEDED) {
        finish(r, NET_ETOOBIG, "the response is larger than allowed");
    } else if (cc == CURLE_OPERATION_TIMEDOUT) {
        finish(r, NET_ETIMEOUT, "the request timed out");
    } else if (cc == CURLE_URL_MALFORMAT || cc == CURLE_UNSUPPORTED_PROTOCOL) {
        finish(r, NET_EINVALID, "the URL is not a valid http(s) URL");
    } else if (cc != CURLE_OK) {
        finish(r, NET_ECONNECT, curl_easy_strerror(cc));
    } else if (!follow_redirect(r)) {
        finish(r, NET_OK, NULL);
    }
}

/* Requests whose caller raised the cancel flag end now; delayed ones
 * whose wake flag is up become due. */
static void reap_cancelled(void)
{
    for (net_request **pp = &loop.active; *pp;) {
        net_request *r = *pp;
        if (r->cancel && atomic_load(r->cancel)) {
            *pp = r->next;
            curl_multi_remove_handle(loop.multi, r->easy);
            finish(r, NET_ECANCELLED, "cancelled");
        } else {
            pp = &r->next;
        }
    }
    for (net_request **pp = &loop.delayed; *pp;) {
        net_request *r = *pp;
        if (r->cancel && atomic_load(r->cancel)) {
            *pp = r->next;
            finish(r, NET_ECANCELLED, "cancelled");
        } else {
            if (r->wake && atomic_load(r->wake)) {
                r->due = mono_ms(); /* start_due takes it next */
                loop.next_due = r->due;
            }
            pp = &r->next;
        }
    }
}

/* Moves due delayed requests into the multi handle; returns when the
 * next one is due (mono ms; INT64_MAX when none is waiting). */
static int64_t start_due(void)
{
    int64_t t = mono_ms(), next = INT64_MAX;
    for (net_request **pp = &loop.delayed; *pp;) {
        net_request *r = *pp;
        if (r->due <= t) {
            *pp = r->next;
            activate(r);
        } else {
            if (r->due < next) next = r->due;
            pp = &r->next;
        }
    }
    return next;
}

static void take_incoming(void)
{
    pthread_mutex_lock(&loop.mu);
    net_request *r = loop.incoming;
    loop.incoming = NULL;
    pthread_mutex_unlock(&loop.mu);
    while (r) {
        net_request *next = r->next;
        int64_t t = mono_ms();
        r->deadline = t + r->delay_ms + r->timeout_ms;
        if (r->delay_ms > 0) {
            r->due = t + r->delay_ms;
            r->next = loop.delayed;
            loop.delayed = r;
            if (r->due < loop.next_due) loop.next_due = r->due;
        } else {
            activate(r);
        }
        r = next;
    }
}

static void *loop_main(void *arg)
{
    (void)arg;
    int64_t next_reap = 0;
    for (;;) {
        pthread_mutex_lock(&loop.mu);
        bool stop = loop.stopping;
        pthread_mutex_unlock(&loop.mu);
        take_incoming();
        if (stop) break;
        int64_t t = mono_ms();
        if (t >= next_reap) {
            reap_cancelled();
            next_reap = t + NET_CANCEL_POLL_MS;
        }
        if (t >= loop.next_due) loop.next_due = start_due();

        int running = 0;
        curl_multi_perform(loop.multi, &running);
        CURLMsg *m;
        int left;
        while ((m = curl_multi_info_read(loop.multi, &left)))
            if (m->msg == CURLMSG_DONE) {
                net_request *r = NULL;
                curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&r);
                if (r) transfer_done(r, m->data.result);
            }
        t = mono_ms();
        int64_t wait = (next_reap < loop.next_due ? next_reap : loop.next_due) - t;
        /* Nothing in flight: nothing to reap; net_submit and net_stop wake us. */
        if (!loop.active && !loop.delayed) wait = 60000;
        long ct = -1;
        curl_multi_timeout(loop.multi, &ct);
        if (ct >= 0 && ct < wait) wait = ct;
        if (wait < 0) wait = 0;
        curl_multi_poll(loop.multi, NULL, 0, (int)wait, NULL);
    }
    /* Stopping: whatever is left ends as cancelled. */
    while (loop.active) {
        net_request *r = loop.active;
        loop.active = r->next;
        curl_multi_remove_handle(loop.multi, r->easy);
        finish(r, NET_ECANCELLED, "the server is shutting down");
    }
    while (loop.delayed) {
        net_request *r = loop.delayed;
        loop.delayed = r->next;
        finish(r, NET_ECANCELLED, "the server is shutting down");
    }
    return NULL;
}

int net_start(const char *allow_hosts)
{
    pthread_mutex_lock(&loop.mu);
    bool enabled = loop.enabled;
    pthread_mutex_unlock(&loop.mu);
    if (enabled) {
        log_error("net_start: already running");
        return -1;
    }
    allow_clear();
    if (allow_hosts) {
        char *list = xstrdup(allow_hosts), *save = NULL;
        for (char *tok = strtok_r(list, ", \t", &save); tok; tok = strtok_r(NULL, ", \t", &save))
            allow_add(tok);
        free(list);
    }
    pthread_mutex_lock(&loop.mu);
    loop.enabled = true;
    loop.stopping = false;
    pthread_mutex_unlock(&loop.mu);
    return 0;
}

/* Starts curl and the loop thread on first use (see DESIGN). True when the
 * loop runs; false before net_start, after net_stop, or when it cannot
 * start (logged; a later request tries again). */
static bool loop_ensure(void)
{
    pthread_mutex_lock(&loop.mu);
    bool ok = loop.running;
    if (!ok && loop.enabled && !loop.stopping) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) goto out;
        loop.multi = curl_multi_init();
        loop.incoming = loop.delayed = loop.active = NULL;
        loop.next_due = INT64_MAX;
        if (loop.multi && pthread_create(&loop.thread, NULL, loop_main, NULL) == 0) {
            loop.running = ok = true;
            goto out;
        }
        log_error("net: could not start the HTTP loop");
        if (loop.multi) curl_multi_cleanup(loop.multi);
        loop.multi = NULL;
        curl_global_cleanup();
    }
out:
    pthread_mutex_unlock(&loop.mu);
    return ok;
}

void net_stop(void)
{
    pthread_mutex_lock(&loop.mu);
    loop.enabled = false;
    if (!loop.running) {
        pthread_mutex_unlock(&loop.mu);
        allow_clear();
        return;
    }
    loop.stopping = true;
    pthread_mutex_unlock(&loop.mu);
    curl_multi_wakeup(loop.multi);
    pthread_join(loop.thread, NULL);
    pthread_mutex_lock(&loop.mu);
    loop.running = false;
    pthread_mutex_unlock(&loop.mu);
    curl_multi_cleanup(loop.multi);
    loop.multi = NULL;
    allow_clear();
    curl_global_cleanup();
}

void net_submit(net_request *r, net_done_fn on_done, void *ctx)
{
    r->on_done = on_done;
    r->ctx = ctx;
    r->next = NULL;
    pthread_mutex_lock(&loop.mu);
    bool ok = loop.running && !loop.stopping;
    if (ok) {
        r->next = loop.incoming;
        loop.incoming = r;
        atomic_fetch_add(&loop.in_flight, 1);
    }
    pthread_mutex_unlock(&loop.mu);
    if (ok) {
        curl_multi_wakeup(loop.multi);
        return;
    }
    r->resp.effective_url = r->url;
    r->resp.error = NET_EINTERNAL;
    r->resp.reason = "outbound HTTP is not running";
    on_done(r, &r->resp, ctx);
    net_request_free(r);
}

/* ---- blocking use ---- */

typedef struct waiter {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    bool done;
    net_response *out;
} waiter;

static void perform_done(net_request *r, net_response *resp, void *ctx)
{
    (void)r;
    waiter *w = ctx;
    net_response *out = w->out;
    *out = *resp;
    out->effective_url = xstrdup(resp->effective_url);
    memset(&resp->body, 0, sizeof resp->body); /* moved */
    memset(&resp->headers, 0, sizeof resp->headers);
    pthread_mutex_lock(&w->mu);
    w->done = true;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->mu);
}

void net_perform(net_request *r, net_response *out)
{
    memset(out, 0, sizeof *out);
    waiter w = {.mu = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER, .out = out};
    net_submit(r, perform_done, &w);
    pthread_mutex_lock(&w.mu);
    while (!w.done)
        pthread_cond_wait(&w.cond, &w.mu);
    pthread_mutex_unlock(&w.mu);
    pthread_mutex_destroy(&w.mu);
    pthread_cond_destroy(&w.cond);
}
