/*
 * media — images in and out (SPEC §5): upload validation, storage under
 * DATA/media, image URL rules, and result storage. Fetching remote URLs
 * is at the end of this file.
 *
 * Files:   DATA/media/u/<32 random base32>.<ext>          uploads
 *          DATA/media/r/<gen_id>-<index>-<32 random>.<ext> results
 * URLs:    PUBLIC_URL/media/u/<file>, PUBLIC_URL/media/r/<file>
 * All writes go through util_write_file_atomic (temp file, fsync, rename),
 * so a reader never sees half an image.
 *
 * Address rule: an image URL whose host resolves to a loopback, private,
 * link-local (cloud metadata included), CGNAT, unspecified, multicast or
 * reserved address is refused, unless the host name or the address is on
 * the operator's allow list (--allow-hosts: names, addresses or CIDRs).
 * media_check_url applies it to the resolved names; media_fetch applies
 * it again to every address curl actually connects to (media_fetch), so neither DNS
 * rebinding nor a redirect can slip past it.
 *
 * DESIGN (threads). media_init runs once at start-up, before any worker or
 * HTTP thread, and initialises libvips and libcurl there (both are
 * thread-safe once initialised). After that the module's state (paths, the
 * allow list) is read-only, and every function may be called from any
 * thread at once.
 */
#include "media.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <stdarg.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vips/vips.h>

#include "log.h"

/* ---- state (set by media_init, read-only afterwards) ---- */

static char *media_dir;    /* DATA/media */
static char *media_prefix; /* PUBLIC_URL/media/ */
static size_t public_len;  /* strlen(PUBLIC_URL) */

typedef struct allow_rule {
    char *host; /* a host name (lower case), or NULL for an address rule */
    int family; /* AF_INET | AF_INET6 */
    unsigned char addr[16];
    int prefix; /* bits */
} allow_rule;

static allow_rule *allow_rules;
static size_t n_allow;

/* ---- helpers ---- */

static int fail(char **error, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int fail(char **error, int code, const char *fmt, ...)
{
    if (error) {
        va_list ap;
        va_start(ap, fmt);
        char *s = NULL;
        if (vasprintf(&s, fmt, ap) < 0) s = NULL;
        va_end(ap);
        *error = s ? s : xstrdup("image error");
    }
    return code;
}

/* 32 random base32 characters (160 bits). out ≥ 33. */
static void random_name(char out[33])
{
    static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz234567";
    unsigned char rnd[20];
    randombytes_buf(rnd, sizeof rnd);
    for (int i = 0; i < 32; i++) {
        int bit = i * 5, byte = bit / 8, shift = bit % 8;
        unsigned v = (unsigned)rnd[byte] << 8 | (byte + 1 < 20 ? rnd[byte + 1] : 0);
        out[i] = alphabet[(v >> (11 - shift)) & 31];
    }
    out[32] = '\0';
}

static const char *ext_for_format(const char *format)
{
    if (str_eq(format, "jpeg")) return "jpg";
    if (str_eq(format, "png")) return "png";
    if (str_eq(format, "webp")) return "webp";
    return NULL;
}

/* ---- address rules ---- */

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
    for (size_t i = 0; i < n_allow; i++) {
        const allow_rule *r = &allow_rules[i];
        if (r->host) continue;
        if (r->family == family && prefix_match(a, r->addr, r->prefix)) return true;
        /* An IPv4 rule also covers the IPv4-mapped IPv6 form. */
        static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF};
        if (r->family == AF_INET && family == AF_INET6 && memcmp(a, mapped, 12) == 0 &&
            prefix_match(a + 12, r->addr, r->prefix))
            return true;
    }
    return false;
}

static bool addr_refused(const struct sockaddr *sa)
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

static void allow_add(const char *item)
{
    allow_rule r;
    memset(&r, 0, sizeof r);
    char tmp[256];
    snprintf(tmp, sizeof tmp, "%s", item);
    char *slash = strchr(tmp, '/');
    int bits = -1;
    if (slash) {
        *slash = '\0';
        char *end;
        long v = strtol(slash + 1, &end, 10);
        if (*end || end == slash + 1 || v < 0) {
            log_warn("allow-hosts: ignoring malformed entry \"%s\"", item);
            return;
        }
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
    } else if (bits < 0) {
        r.host = xstrdup(h);
        for (char *c = r.host; *c; c++)
            *c = (char)tolower((unsigned char)*c);
        size_t n = strlen(r.host);
        while (n > 0 && r.host[n - 1] == '.')
            r.host[--n] = '\0';
    } else {
        goto bad;
    }
    allow_rules = xrealloc(allow_rules, (n_allow + 1) * sizeof *allow_rules);
    allow_rules[n_allow++] = r;
    return;
bad:
    log_warn("allow-hosts: ignoring malformed entry \"%s\"", item);
}

/* ---- init ---- */

static void free_state(void);

static void vips_quiet(const gchar *domain, GLogLevelFlags level, const gchar *message,
                       gpointer data)
{
    (void)domain, (void)level, (void)data;
    log_debug("libvips: %s", message);
}

int media_init(const char *data_dir, const char *public_url, const char *allow_hosts)
{
    if (sodium_init() < 0) return MEDIA_EINTERNAL;
    if (VIPS_INIT("stylestudio") != 0) {
        log_error("libvips init failed: %s", vips_error_buffer());
        return MEDIA_EINTERNAL;
    }
    vips_cache_set_max(0);
    /* Decoder warnings about bad uploads are expected: keep them off stderr. */
    g_log_set_handler("VIPS", G_LOG_LEVEL_WARNING | G_LOG_LEVEL_MESSAGE, vips_quiet, NULL);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) return MEDIA_EINTERNAL;

    free_state();
    media_dir = xasprintf("%s/media", data_dir ? data_dir : ".");
    const char *pub = public_url ? public_url : "";
    public_len = strlen(pub);
    while (public_len > 0 && pub[public_len - 1] == '/')
        public_len--;
    media_prefix = xasprintf("%.*s/media/", (int)public_len, pub);
    if (allow_hosts) {
        char *list = xstrdup(allow_hosts), *save = NULL;
        for (char *tok = strtok_r(list, ", \t", &save); tok; tok = strtok_r(NULL, ", \t", &save))
            allow_add(tok);
        free(list);
    }
    char *u = xasprintf("%s/u", media_dir), *r = xasprintf("%s/r", media_dir);
    int rc = (util_mkdirs(u) || util_mkdirs(r)) ? MEDIA_EINTERNAL : 0;
    if (rc) log_error("cannot create %s: %s", media_dir, strerror(errno));
    free(u);
    free(r);
    return rc;
}

static void free_state(void)
{
    free(media_dir);
    free(media_prefix);
    media_dir = media_prefix = NULL;
    for (size_t i = 0; i < n_allow; i++)
        free(allow_rules[i].host);
    free(allow_rules);
    allow_rules = NULL;
    n_allow = 0;
}

void media_shutdown(void)
{
    free_state();
    curl_global_cleanup();
}

/* ---- probing and storing ---- */

int media_probe(const void *data, size_t len, provider_image *info, char **error)
{
    if (error) *error = NULL;
    if (!data || len == 0) return fail(error, MEDIA_EINVALID, "image is empty");
    if (len > MEDIA_MAX_BYTES)
        return fail(error, MEDIA_EINVALID, "image is larger than %d MB",
                    MEDIA_MAX_BYTES / (1024 * 1024));
    const char *loader = vips_foreign_find_load_buffer(data, len);
    const char *format = NULL;
    if (str_eq(loader, "VipsForeignLoadJpegBuffer"))
        format = "jpeg";
    else if (str_eq(loader, "VipsForeignLoadPngBuffer"))
        format = "png";
    else if (str_eq(loader, "VipsForeignLoadWebpBuffer"))
        format = "webp";
    vips_error_clear();
    if (!format) return fail(error, MEDIA_EINVALID, "image is not a JPEG, PNG or WebP file");

    int rc = MEDIA_EINVALID;
    VipsImage *img = vips_image_new_from_buffer(data, len, "", "access", VIPS_ACCESS_SEQUENTIAL,
                                                "fail_on", VIPS_FAIL_ON_ERROR, NULL);
    if (!img) {
        fail(error, MEDIA_EINVALID, "image could not be decoded");
        goto cleanup;
    }
    /* The loader must be the one the sniffing picked (no format switch). */
    const char *used = NULL;
    if (vips_image_get_typeof(img, "vips-loader") &&
        vips_image_get_string(img, "vips-loader", &used) == 0 && used &&
        strncmp(used, format, strlen(format)) != 0) {
        fail(error, MEDIA_EINVALID, "image is not a JPEG, PNG or WebP file");
        goto cleanup;
    }
    int64_t w = img->Xsize, h = img->Ysize;
    if (w <= 0 || h <= 0) {
        fail(error, MEDIA_EINVALID, "image has no pixels");
        goto cleanup;
    }
    if (w * h > MEDIA_MAX_PIXELS) {
        fail(error, MEDIA_EINVALID, "image is %lldx%lld, over the %d megapixel limit", (long long)w,
             (long long)h, MEDIA_MAX_PIXELS / 1000000);
        goto cleanup;
    }
    /* Decode every pixel: truncated or corrupt data fails here. */
    double avg;
    if (vips_avg(img, &avg, NULL)) {
        fail(error, MEDIA_EINVALID, "image could not be decoded (truncated or corrupt)");
        goto cleanup;
    }
    if ((int64_t)img->Xsize * img->Ysize > MEDIA_MAX_PIXELS) {
        fail(error, MEDIA_EINVALID, "image is over the %d megapixel limit",
             MEDIA_MAX_PIXELS / 1000000);
        goto cleanup;
    }
    snprintf(info->format, sizeof info->format, "%s", format);
    info->width = img->Xsize;
    info->height = img->Ysize;
    rc = 0;
cleanup:
    vips_error_clear();
    if (img) g_object_unref(img);
    return rc;
}

int media_save_upload(const void *data, size_t len, provider_image *info, char **url_out,
                      char **error)
{
    *url_out = NULL;
    int rc = media_probe(data, len, info, error);
    if (rc) return rc;
    if (!media_dir) return fail(error, MEDIA_EINTERNAL, "media storage is not initialised");
    char name[33];
    random_name(name);
    const char *ext = ext_for_format(info->format);
    char *path = xasprintf("%s/u/%s.%s", media_dir, name, ext);
    if (util_write_file_atomic(path, data, len)) {
        log_error("cannot write upload %s: %s", path, strerror(errno));
        free(path);
        return fail(error, MEDIA_EINTERNAL, "could not store the image");
    }
    free(path);
    info->len = len;
    *url_out = xasprintf("%su/%s.%s", media_prefix, name, ext);
    return 0;
}

int media_store_result(const char *gen_id, int index, const provider_image *img, char **url_out)
{
    *url_out = NULL;
    const char *ext = img ? ext_for_format(img->format) : NULL;
    if (!media_dir || !gen_id || !*gen_id || strlen(gen_id) >= ID_LEN || index < 0 || !ext ||
        !img->data || !img->len)
        return MEDIA_EINVALID;
    for (const char *c = gen_id; *c; c++)
        if (!isalnum((unsigned char)*c) && *c != '_') return MEDIA_EINVALID;
    char name[33];
    random_name(name);
    char *file = xasprintf("%s-%d-%s.%s", gen_id, index, name, ext);
    char *path = xasprintf("%s/r/%s", media_dir, file);
    int rc = 0;
    if (util_write_file_atomic(path, img->data, img->len)) {
        log_error("cannot write result %s: %s", path, strerror(errno));
        rc = MEDIA_EINTERNAL;
    } else {
        *url_out = xasprintf("%sr/%s", media_prefix, file);
    }
    free(file);
    free(path);
    return rc;
}

/* ---- URLs ---- */

char *media_path_for_request(const char *request_path, const char **content_type)
{
    if (content_type) *content_type = NULL;
    if (!media_dir || !request_path || !str_has_prefix(request_path, "/media/")) return NULL;
    const char *p = request_path + 7;
    char kind = p[0];
    if ((kind != 'u' && kind != 'r') || p[1] != '/') return NULL;
    const char *name = p + 2;
    const char *dot = NULL;
    size_t n = 0;
    for (const char *c = name; *c; c++, n++) {
        if (*c == '.') {
            if (dot) return NULL;
            dot = c;
        } else if (!isalnum((unsigned char)*c) && *c != '_' && *c != '-') {
            return NULL;
        }
    }
    if (!dot || dot == name || n > 160) return NULL;
    const char *ct;
    if (strcmp(dot + 1, "jpg") == 0)
        ct = "image/jpeg";
    else if (strcmp(dot + 1, "png") == 0)
        ct = "image/png";
    else if (strcmp(dot + 1, "webp") == 0)
        ct = "image/webp";
    else
        return NULL;
    if (content_type) *content_type = ct;
    return xasprintf("%s/%c/%s", media_dir, kind, name);
}

static char *own_path(const char *url)
{
    if (!media_prefix || !url || !str_has_prefix(url, media_prefix)) return NULL;
    return media_path_for_request(url + public_len, NULL);
}

bool media_is_own_url(const char *url)
{
    return media_prefix && url && str_has_prefix(url, media_prefix);
}

void media_delete_url(const char *url)
{
    char *path = own_path(url);
    if (!path) return;
    if (unlink(path) != 0 && errno != ENOENT)
        log_warn("cannot remove %s: %s", path, strerror(errno));
    free(path);
}

static int url_host(const char *url, char **host, char **error)
{
    *host = NULL;
    if (!url || !*url) return fail(error, MEDIA_EINVALID, "image URL is empty");
    if (strlen(url) > MEDIA_MAX_URL)
        return fail(error, MEDIA_EINVALID, "image URL is longer than %d characters", MEDIA_MAX_URL);
    for (const char *c = url; *c; c++)
        if ((unsigned char)*c <= 0x20 || *c == 0x7F)
            return fail(error, MEDIA_EINVALID, "image URL contains spaces or control characters");
    if (strncasecmp(url, "http://", 7) != 0 && strncasecmp(url, "https://", 8) != 0)
        return fail(error, MEDIA_EINVALID, "image URL must use http or https");
    CURLU *u = curl_url();
    if (!u) return fail(error, MEDIA_EINTERNAL, "out of memory");
    int rc = 0;
    char *h = NULL;
    if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &h, 0) != CURLUE_OK || !h || !*h) {
        rc = fail(error, MEDIA_EINVALID, "image URL is not a valid URL");
        goto cleanup;
    }
    size_t hl = strlen(h);
    if (hl > 1 && h[0] == '[' && h[hl - 1] == ']')
        *host = xstrndup(h + 1, hl - 2);
    else
        *host = xstrdup(h);
    /* An IPv6 zone id ("fe80::1%eth0") never names a public host. */
    char *pct = strchr(*host, '%');
    if (pct) *pct = '\0';
cleanup:
    curl_free(h);
    curl_url_cleanup(u);
    return rc;
}

static int check_host(const char *host, char **error)
{
    if (host_allowlisted(host)) return 0;
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int gai = getaddrinfo(host, NULL, &hints, &res);
    if (gai != 0 || !res)
        return fail(error, MEDIA_EINVALID, "image URL host \"%s\" could not be resolved", host);
    int rc = 0;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next)
        if (addr_refused(ai->ai_addr)) {
            rc = fail(error, MEDIA_EINVALID,
                      "image URL host \"%s\" is a loopback, private or link-local address; "
                      "the server does not fetch from those unless allowed (--allow-hosts)",
                      host);
            break;
        }
    freeaddrinfo(res);
    return rc;
}

int media_check_url(const char *url, char **error)
{
    if (error) *error = NULL;
    char *host = NULL;
    int rc = url_host(url, &host, error);
    if (rc) return rc;
    if (media_is_own_url(url)) {
        char *path = own_path(url);
        struct stat st;
        if (!path || stat(path, &st) != 0 || !S_ISREG(st.st_mode))
            rc = fail(error, MEDIA_EINVALID, "image URL names no uploaded image on this server");
        free(path);
    } else {
        rc = check_host(host, error);
    }
    free(host);
    return rc;
}

/* ---- fetching ---- */

#define FETCH_TIMEOUT_MS 20000
#define FETCH_CONNECT_TIMEOUT_MS 5000
#define FETCH_MAX_REDIRECTS 3

typedef struct fetch_ctx {
    buf body;
    bool too_big;
    bool refused;      /* the connect target broke the address rule */
    bool host_allowed; /* this hop's host name is allow-listed */
    const atomic_bool *cancel;
} fetch_ctx;

/* curl's progress callback: a non-zero answer aborts the transfer. */
static int fetch_progress(void *user, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                          curl_off_t ulnow)
{
    (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
    const fetch_ctx *fc = user;
    return fc->cancel && atomic_load(fc->cancel);
}

static size_t fetch_write(char *ptr, size_t size, size_t nmemb, void *user)
{
    fetch_ctx *fc = user;
    size_t n = size * nmemb;
    if (fc->body.len + n > MEDIA_MAX_BYTES) {
        fc->too_big = true;
        return 0; /* aborts the transfer */
    }
    buf_append(&fc->body, ptr, n);
    return n;
}

/* Every socket curl opens goes through here, with the address it is about
 * to connect to: the address rule is enforced on that, after DNS, for
 * every hop, whatever the name resolved to a moment earlier. */
static curl_socket_t fetch_open_socket(void *user, curlsocktype purpose, struct curl_sockaddr *addr)
{
    fetch_ctx *fc = user;
    if (purpose != CURLSOCKTYPE_IPCXN) return CURL_SOCKET_BAD;
    if (!fc->host_allowed && addr_refused(&addr->addr)) {
        fc->refused = true;
        return CURL_SOCKET_BAD;
    }
    return socket(addr->family, addr->socktype | SOCK_CLOEXEC, addr->protocol);
}

static int read_own(const char *url, provider_image *out, char **error)
{
    char *path = own_path(url);
    buf b = {0};
    if (!path || util_read_file(path, MEDIA_MAX_BYTES, &b) != 0) {
        free(path);
        return fail(error, MEDIA_EINVALID, "image URL names no uploaded image on this server");
    }
    free(path);
    int rc = media_probe(b.data, b.len, out, error);
    if (rc) {
        buf_free(&b);
        return rc;
    }
    out->data = (unsigned char *)b.data;
    out->len = b.len;
    return 0;
}

int media_fetch(const char *url, const atomic_bool *cancel, provider_image *out, char **error)
{
    if (error) *error = NULL;
    memset(out, 0, sizeof *out);
    char *cur = xstrdup(url);
    CURL *c = NULL;
    fetch_ctx fc;
    memset(&fc, 0, sizeof fc);
    fc.cancel = cancel;
    int rc = MEDIA_EINVALID;
    int64_t deadline = mono_ms() + FETCH_TIMEOUT_MS;

    for (int hop = 0;; hop++) {
        char *host = NULL;
        rc = url_host(cur, &host, error);
        if (rc) goto cleanup;
        if (media_is_own_url(cur)) {
            free(host);
            rc = read_own(cur, out, error);
            goto cleanup;
        }
        rc = check_host(host, error);
        fc.host_allowed = host_allowlisted(host);
        free(host);
        if (rc) goto cleanup;

        int64_t left = deadline - mono_ms();
        if (left <= 0) {
            rc = fail(error, MEDIA_EINVALID, "image URL timed out");
            goto cleanup;
        }
        if (!c)
            c = curl_easy_init();
        else
            curl_easy_reset(c);
        if (!c) {
            rc = fail(error, MEDIA_EINTERNAL, "could not start an HTTP request");
            goto cleanup;
        }
        buf_free(&fc.body);
        fc.too_big = fc.refused = false;
        curl_easy_setopt(c, CURLOPT_URL, cur);
        curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L); /* redirects below, each checked */
        curl_easy_setopt(c, CURLOPT_PROXY, "");          /* never via an environment proxy */
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)left);
        curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)FETCH_CONNECT_TIMEOUT_MS);
        curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)MEDIA_MAX_BYTES);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, fetch_write);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &fc);
        curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, fetch_open_socket);
        curl_easy_setopt(c, CURLOPT_OPENSOCKETDATA, &fc);
        curl_easy_setopt(c, CURLOPT_USERAGENT, "StyleStudio/1.0 (image fetch)");
        curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, "identity");
        curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, fetch_progress);
        curl_easy_setopt(c, CURLOPT_XFERINFODATA, &fc);
        curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
        CURLcode cc = curl_easy_perform(c);
        if (cc == CURLE_ABORTED_BY_CALLBACK) {
            rc = fail(error, MEDIA_ECANCELLED, "cancelled while fetching the image");
            goto cleanup;
        }
        if (fc.refused) {
            rc = fail(error, MEDIA_EINVALID,
                      "image URL leads to a loopback, private or link-local address; the server "
                      "does not fetch from those unless allowed (--allow-hosts)");
            goto cleanup;
        }
        if (fc.too_big || cc == CURLE_FILESIZE_EXCEEDED) {
            rc = fail(error, MEDIA_EINVALID, "image is larger than %d MB",
                      MEDIA_MAX_BYTES / (1024 * 1024));
            goto cleanup;
        }
        if (cc == CURLE_OPERATION_TIMEDOUT) {
            rc = fail(error, MEDIA_EINVALID, "image URL timed out");
            goto cleanup;
        }
        if (cc != CURLE_OK) {
            rc = fail(error, MEDIA_EINVALID, "image URL could not be fetched: %s",
                      curl_easy_strerror(cc));
            goto cleanup;
        }
        long status = 0;
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        if (status >= 300 && status < 400) {
            char *loc = NULL;
            curl_easy_getinfo(c, CURLINFO_REDIRECT_URL, &loc);
            if (!loc || !*loc) {
                rc = fail(error, MEDIA_EINVALID, "image URL returned HTTP %ld without a location",
                          status);
                goto cleanup;
            }
            if (hop >= FETCH_MAX_REDIRECTS) {
                rc = fail(error, MEDIA_EINVALID, "image URL redirected more than %d times",
                          FETCH_MAX_REDIRECTS);
                goto cleanup;
            }
            free(cur);
            cur = xstrdup(loc);
            continue;
        }
        if (status >= 400) {
            rc = fail(error, MEDIA_EINVALID, "image URL returned HTTP %ld", status);
            goto cleanup;
        }
        if (status < 200 || status >= 300) {
            rc = fail(error, MEDIA_EINVALID, "image URL returned HTTP %ld", status);
            goto cleanup;
        }
        break;
    }

    rc = media_probe(fc.body.data, fc.body.len, out, error);
    if (rc == 0) {
        out->data = (unsigned char *)fc.body.data;
        out->len = fc.body.len;
        fc.body.data = NULL;
    }
cleanup:
    if (c) curl_easy_cleanup(c);
    buf_free(&fc.body);
    free(cur);
    return rc;
}
