/*
 * media — images in and out (SPEC §5): upload validation, storage under
 * DATA/media, image URL rules, and result storage. Fetching remote URLs
 * is at the end of this file.
 *
 * Files:   DATA/media/u/<32 random base32>.<ext>          uploads
 *          DATA/media/r/<gen_id>-<index>-<32 random>.<ext> results
 * URLs:    PUBLIC_URL/media/u/<file>, PUBLIC_URL/media/r/<file>
 * All writes go through util_write_file_atomic (temp file, rename), so a
 * reader never sees half an image. An upload is on disk (file and name)
 * before it is answered; result files are made durable in rounds, many at
 * once, by media_sync_results, which the queue calls before it records
 * the completions that name them.
 *
 * Image URLs from outside are checked and fetched through net.c, which
 * owns the address rules (no loopback, private or link-local targets
 * unless allow-listed) and applies them to every connection.
 *
 * DESIGN (threads). media_init runs once at start-up, before any worker or
 * HTTP thread, and initialises libvips there (thread-safe once
 * initialised). After that the module's state (paths) is read-only, but
 * for the table of our own files' headers (own_headers, under its own
 * mutex, held only to copy an entry in or out), and every function may be
 * called from any thread at once.
 */
#include "media.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vips/vips.h>

#include "log.h"
#include "net.h"

/* ---- state (set by media_init, read-only afterwards) ---- */

static char *media_dir;    /* DATA/media */
static char *media_prefix; /* PUBLIC_URL/media/ */
static size_t public_len;  /* strlen(PUBLIC_URL) */

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

/* ---- init ---- */

static void free_state(void);

static void vips_quiet(const gchar *domain, GLogLevelFlags level, const gchar *message,
                       gpointer data)
{
    (void)domain, (void)level, (void)data;
    log_debug("libvips: %s", message);
}

int media_init(const char *data_dir, const char *public_url)
{
    if (sodium_init() < 0) return MEDIA_EINTERNAL;
    if (VIPS_INIT("stylestudio") != 0) {
        log_error("libvips init failed: %s", vips_error_buffer());
        return MEDIA_EINTERNAL;
    }
    vips_cache_set_max(0);
    /* Decoder warnings about bad uploads are expected: keep them off stderr. */
    g_log_set_handler("VIPS", G_LOG_LEVEL_WARNING | G_LOG_LEVEL_MESSAGE, vips_quiet, NULL);

    free_state();
    media_dir = xasprintf("%s/media", data_dir ? data_dir : ".");
    const char *pub = public_url ? public_url : "";
    public_len = strlen(pub);
    while (public_len > 0 && pub[public_len - 1] == '/')
        public_len--;
    media_prefix = xasprintf("%.*s/media/", (int)public_len, pub);
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
}

static void headers_clear(void);

void media_shutdown(void)
{
    free_state();
    headers_clear();
}

/* ---- probing and storing ---- */

/* The checks of media_probe; with decode false, the header only (format,
 * size, limits), for bytes that were fully decoded when they were stored. */
static int probe(const void *data, size_t len, provider_image *info, bool decode, char **error)
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
    if (decode && vips_avg(img, &avg, NULL)) {
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

int media_probe(const void *data, size_t len, provider_image *info, char **error)
{
    return probe(data, len, info, true, error);
}

/* The crop of a w×h image to the ratio aw:ah, centred: *cw×*ch at
 * (*cx, *cy). */
static void fit_box(int w, int h, int aw, int ah, int *cx, int *cy, int *cw, int *ch)
{
    *cw = w;
    *ch = h;
    if ((int64_t)w * ah > (int64_t)h * aw)
        *cw = (int)(((int64_t)h * aw + ah / 2) / ah);
    else
        *ch = (int)(((int64_t)w * ah + aw / 2) / aw);
    if (*cw < 1) *cw = 1;
    if (*ch < 1) *ch = 1;
    *cx = (w - *cw) / 2;
    *cy = (h - *ch) / 2;
}

int media_fit_aspect(provider_image *img, const char *aspect_ratio, char **error)
{
    provider_image info = {0};
    int rc = probe(img->data, img->len, &info, false, error);
    if (rc) return rc;
    snprintf(img->format, sizeof img->format, "%s", info.format);
    img->width = info.width;
    img->height = info.height;
    int aw = 1, ah = 1, cx = 0, cy = 0, cw = info.width, ch = info.height;
    if (aspect_ratio && sscanf(aspect_ratio, "%d:%d", &aw, &ah) == 2 && aw > 0 && ah > 0)
        fit_box(info.width, info.height, aw, ah, &cx, &cy, &cw, &ch);
    /* Kept as it is: decoded in full here, so an undecodable one fails. */
    if (cw == info.width && ch == info.height)
        return probe(img->data, img->len, &info, true, error);

    /* Cropped: the crop decodes what is kept, and any decode error fails it. */
    VipsImage *in = vips_image_new_from_buffer(img->data, img->len, "", "fail_on",
                                               VIPS_FAIL_ON_ERROR, NULL),
              *crop = NULL;
    void *out = NULL;
    size_t out_len = 0;
    rc = MEDIA_EINVALID;
    if (!in || vips_crop(in, &crop, cx, cy, cw, ch, NULL)) goto cleanup;
    int bad = str_eq(info.format, "png") ? vips_pngsave_buffer(crop, &out, &out_len, NULL)
              : str_eq(info.format, "webp")
                  ? vips_webpsave_buffer(crop, &out, &out_len, "Q", 90, NULL)
                  : vips_jpegsave_buffer(crop, &out, &out_len, "Q", 90, NULL);
    if (bad) goto cleanup;
    free(img->data);
    img->data = xmalloc(out_len);
    memcpy(img->data, out, out_len);
    img->len = out_len;
    img->width = cw;
    img->height = ch;
    rc = 0;
cleanup:
    if (rc) {
        log_warn("crop to %s failed: %s", aspect_ratio, vips_error_buffer());
        fail(error, rc, "the image could not be decoded");
    }
    vips_error_clear();
    g_free(out);
    if (crop) g_object_unref(crop);
    if (in) g_object_unref(in);
    return rc;
}

/* Writes probed image bytes as a new upload; *url_out (caller frees). */
static int save_probed(const void *data, size_t len, const char *format, char **url_out,
                       char **error)
{
    if (!media_dir) return fail(error, MEDIA_EINTERNAL, "media storage is not initialised");
    char name[33];
    random_name(name);
    const char *ext = ext_for_format(format);
    char *path = xasprintf("%s/u/%s.%s", media_dir, name, ext);
    if (util_write_file_atomic(path, data, len, true)) {
        log_error("cannot write upload %s: %s", path, strerror(errno));
        free(path);
        return fail(error, MEDIA_EINTERNAL, "could not store the image");
    }
    free(path);
    *url_out = xasprintf("%su/%s.%s", media_prefix, name, ext);
    return 0;
}

int media_save_upload(const void *data, size_t len, provider_image *info, char **url_out,
                      char **error)
{
    *url_out = NULL;
    int rc = media_probe(data, len, info, error);
    if (rc) return rc;
    rc = save_probed(data, len, info->format, url_out, error);
    if (rc == 0) info->len = len;
    return rc;
}

int media_import(const char *url, char **own_url, char **error)
{
    *own_url = NULL;
    if (error) *error = NULL;
    if (media_is_own_url(url)) {
        int rc = media_check_url(url, error);
        if (rc == 0) *own_url = xstrdup(url);
        return rc;
    }
    provider_image img = {0};
    int rc = media_fetch(url, NULL, &img, error);
    if (rc == 0) rc = save_probed(img.data, img.len, img.format, own_url, error);
    provider_image_free(&img);
    return rc;
}

/* Contract in media.h. */
int media_convert(provider_image *img, const char *format, char **error)
{
    *error = NULL;
    if (!format || !*format || str_eq(img->format, format)) return 0;
    VipsImage *ctx = vips_image_new();
    VipsImage **t = (VipsImage **)vips_object_local_array(VIPS_OBJECT(ctx), 3);
    void *out = NULL;
    size_t out_len = 0;
    int rc = MEDIA_EINVALID;
    t[0] = vips_image_new_from_buffer(img->data, img->len, "", "fail_on", VIPS_FAIL_ON_ERROR, NULL);
    if (!t[0]) goto cleanup;
    VipsImage *in = t[0];
    int bad;
    if (str_eq(format, "jpeg")) {
        if (vips_image_hasalpha(in)) {
            if (vips_flatten(in, &t[1], "background", vips_array_double_newv(1, 255.0), NULL))
                goto cleanup;
            in = t[1];
        }
        bad = vips_jpegsave_buffer(in, &out, &out_len, "Q", 90, "strip", TRUE, NULL);
    } else if (str_eq(format, "png")) {
        bad = vips_pngsave_buffer(in, &out, &out_len, "strip", TRUE, NULL);
    } else {
        bad = vips_webpsave_buffer(in, &out, &out_len, "Q", 90, "strip", TRUE, NULL);
    }
    if (bad) goto cleanup;
    free(img->data);
    img->data = xmalloc(out_len);
    memcpy(img->data, out, out_len);
    img->len = out_len;
    snprintf(img->format, sizeof img->format, "%s", format);
    rc = 0;
cleanup:
    if (rc) {
        log_warn("re-encode to %s failed: %s", format, vips_error_buffer());
        vips_error_clear();
        *error = xasprintf("the image could not be converted to %s", format);
    }
    g_free(out);
    g_object_unref(ctx);
    return rc;
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
    if (util_write_file_atomic(path, img->data, img->len, false)) {
        log_error("cannot write result %s: %s", path, strerror(errno));
        rc = MEDIA_EINTERNAL;
    } else {
        *url_out = xasprintf("%sr/%s", media_prefix, file);
    }
    free(file);
    free(path);
    return rc;
}

int media_sync_results(void)
{
    if (!media_dir) return -1;
    char *dir = xasprintf("%s/r", media_dir);
    int rc = util_sync_fs(dir);
    free(dir);
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

int media_check_url(const char *url, char **error)
{
    if (error) *error = NULL;
    if (!media_is_own_url(url)) return net_check_url(url, "image URL", error) ? MEDIA_EINVALID : 0;
    char *path = own_path(url);
    struct stat st;
    int rc = 0;
    if (!path || stat(path, &st) != 0 || !S_ISREG(st.st_mode))
        rc = fail(error, MEDIA_EINVALID, "image URL names no uploaded image on this server");
    free(path);
    return rc;
}

/* ---- fetching ---- */

#define FETCH_TIMEOUT_MS 20000
#define FETCH_MAX_REDIRECTS 3

/* ---- our own files' headers, remembered ----
 * Every name under DATA/media is written once (it carries 32 random
 * characters and is never reused) with bytes that were decoded in full
 * before they were stored (upload, import, result). So what a read learns
 * from a file's header — format and size; libvips's loader sniffing and
 * header read cost more than reading the file — stays true while the file
 * exists. A small direct-mapped table keeps it, by path, checked against
 * the file's length: a generation reading the same product photo as the
 * one before (a batch, a retry) does not ask libvips again. */
#define OWN_HEADER_SLOTS 256
typedef struct own_header {
    char *path; /* NULL: empty */
    size_t len;
    char format[8];
    int width, height;
} own_header;
static own_header own_headers[OWN_HEADER_SLOTS];
static pthread_mutex_t own_headers_mu = PTHREAD_MUTEX_INITIALIZER;

static own_header *header_slot(const char *path)
{
    return &own_headers[util_fnv1a(path) % OWN_HEADER_SLOTS];
}

/* Fills info's format and size from the table; false when it has none. */
static bool header_known(const char *path, size_t len, provider_image *info)
{
    pthread_mutex_lock(&own_headers_mu);
    own_header *e = header_slot(path);
    bool hit = e->path && e->len == len && str_eq(e->path, path);
    if (hit) {
        memcpy(info->format, e->format, sizeof info->format);
        info->width = e->width;
        info->height = e->height;
    }
    pthread_mutex_unlock(&own_headers_mu);
    return hit;
}

static void header_remember(const char *path, size_t len, const provider_image *info)
{
    char *copy = xstrdup(path), *old;
    pthread_mutex_lock(&own_headers_mu);
    own_header *e = header_slot(path);
    old = e->path;
    e->path = copy;
    e->len = len;
    memcpy(e->format, info->format, sizeof e->format);
    e->width = info->width;
    e->height = info->height;
    pthread_mutex_unlock(&own_headers_mu);
    free(old);
}

static void headers_clear(void)
{
    pthread_mutex_lock(&own_headers_mu);
    for (size_t i = 0; i < OWN_HEADER_SLOTS; i++) {
        free(own_headers[i].path);
        own_headers[i].path = NULL;
    }
    pthread_mutex_unlock(&own_headers_mu);
}

static int read_own(const char *url, provider_image *out, char **error)
{
    char *path = own_path(url);
    buf b = {0};
    if (!path || util_read_file(path, MEDIA_MAX_BYTES, &b) != 0) {
        free(path);
        return fail(error, MEDIA_EINVALID, "image URL names no uploaded image on this server");
    }
    /* The header is checked (or known, above); the pixels were decoded
     * when the file was stored and are not decoded again on every read. */
    int rc = 0;
    if (!header_known(path, b.len, out)) {
        rc = probe(b.data, b.len, out, false, error);
        if (rc == 0) header_remember(path, b.len, out);
    }
    free(path);
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
    if (media_is_own_url(url)) return read_own(url, out, error);
    if (net_check_url(url, "image URL", error) != 0) return MEDIA_EINVALID;

    net_request *r = net_request_new("GET", url);
    net_request_header(r, "Accept: image/jpeg, image/png, image/webp");
    net_request_limits(r, FETCH_TIMEOUT_MS, MEDIA_MAX_BYTES);
    net_request_redirects(r, FETCH_MAX_REDIRECTS);
    net_request_cancel_flag(r, cancel);
    net_response resp;
    net_perform(r, &resp);
    int rc;
    switch (resp.error) {
    case NET_OK:
        if (resp.status < 200 || resp.status >= 300)
            rc = fail(error, MEDIA_EINVALID, "image URL returned HTTP %ld", resp.status);
        else
            rc = media_probe(resp.body.data, resp.body.len, out, error);
        break;
    case NET_ECANCELLED:
        rc = fail(error, MEDIA_ECANCELLED, "cancelled while fetching the image");
        break;
    case NET_EREFUSED:
        rc = fail(error, MEDIA_EINVALID,
                  "image URL leads to a loopback, private or link-local address; the server "
                  "does not fetch from those unless allowed (--allow-hosts)");
        break;
    case NET_ETOOBIG:
        rc = fail(error, MEDIA_EINVALID, "image is larger than %d MB",
                  MEDIA_MAX_BYTES / (1024 * 1024));
        break;
    case NET_ETIMEOUT:
        rc = fail(error, MEDIA_EINVALID, "image URL timed out");
        break;
    case NET_EREDIRECTS:
        rc = fail(error, MEDIA_EINVALID, "image URL redirected more than %d times",
                  FETCH_MAX_REDIRECTS);
        break;
    case NET_EINTERNAL:
        rc = fail(error, MEDIA_EINTERNAL, "image URL could not be fetched: %s", resp.reason);
        break;
    default:
        rc = fail(error, MEDIA_EINVALID, "image URL could not be fetched: %s", resp.reason);
        break;
    }
    if (rc == 0) {
        out->data = (unsigned char *)resp.body.data;
        out->len = resp.body.len;
        resp.body.data = NULL;
    }
    net_response_free(&resp);
    return rc;
}
