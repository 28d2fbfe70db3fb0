/*
 * Unit tests for media.c: probing (JPEG/PNG/WebP accepted; text, truncated
 * and oversized refused), storage names and paths, the URL address rules
 * and allow list, own URLs, and fetching over HTTP from a small server on
 * 127.0.0.2 (allow-listed) with redirects, errors and a redirect to a
 * refused address.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vips/vips.h>

#include "media.h"
#include "net.h"
#include "util.h"

#include "image_fixture.h"

static char data_dir[256];

static void setup(void)
{
    snprintf(data_dir, sizeof data_dir, "/tmp/ss-media-test-XXXXXX");
    cr_assert_not_null(mkdtemp(data_dir));
    cr_assert_eq(net_start("127.0.0.2, allowed.example,10.9.0.0/16"), 0);
    cr_assert_eq(media_init(data_dir, "http://studio.test"), 0);
}

static void teardown(void)
{
    media_shutdown();
    net_stop();
    char *cmd = xasprintf("rm -rf '%s'", data_dir);
    if (system(cmd) != 0) cr_log_warn("could not remove %s", data_dir);
    free(cmd);
}

TestSuite(media, .init = setup, .fini = teardown);

static int probe(const void *d, size_t n, provider_image *info, char **err)
{
    memset(info, 0, sizeof *info);
    *err = NULL;
    return media_probe(d, n, info, err);
}

Test(media, probe_accepts_jpeg_png_webp)
{
    provider_image info;
    char *err;
    buf j = read_fixture("product.jpg");
    cr_assert_eq(probe(j.data, j.len, &info, &err), 0, "%s", err ? err : "");
    cr_assert_str_eq(info.format, "jpeg");
    cr_assert(info.width == 800 && info.height == 800);
    cr_assert_null(info.data);

    buf p = read_fixture("product2.png");
    cr_assert_eq(probe(p.data, p.len, &info, &err), 0, "%s", err ? err : "");
    cr_assert_str_eq(info.format, "png");
    cr_assert(info.width == 700 && info.height == 700);

    VipsImage *im = vips_image_new_from_buffer(j.data, j.len, "", NULL);
    cr_assert_not_null(im);
    void *wbuf;
    size_t wlen;
    cr_assert_eq(vips_webpsave_buffer(im, &wbuf, &wlen, "Q", 80, NULL), 0);
    g_object_unref(im);
    cr_assert_eq(probe(wbuf, wlen, &info, &err), 0, "%s", err ? err : "");
    cr_assert_str_eq(info.format, "webp");
    cr_assert(info.width == 800 && info.height == 800);
    g_free(wbuf);
    buf_free(&j);
    buf_free(&p);
}

Test(media, probe_rejects_text_truncated_empty)
{
    provider_image info;
    char *err;
    buf t = read_fixture("not-image.txt");
    cr_assert_eq(probe(t.data, t.len, &info, &err), MEDIA_EINVALID);
    cr_assert_not_null(err);
    cr_assert(strstr(err, "JPEG, PNG or WebP"), "%s", err);
    free(err);

    buf tr = read_fixture("truncated.jpg");
    cr_assert_eq(probe(tr.data, tr.len, &info, &err), MEDIA_EINVALID);
    cr_assert_not_null(err);
    free(err);

    /* A PNG cut short fails too. */
    buf p = read_fixture("product2.png");
    cr_assert_eq(probe(p.data, p.len * 2 / 3, &info, &err), MEDIA_EINVALID);
    free(err);

    cr_assert_eq(probe("", 0, &info, &err), MEDIA_EINVALID);
    free(err);

    /* GIF is an image, but not one we take. */
    static const unsigned char gif[] = "GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!"
                                       "\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01"
                                       "\x00\x00\x02\x02D\x01\x00;";
    cr_assert_eq(probe(gif, sizeof gif - 1, &info, &err), MEDIA_EINVALID);
    free(err);
    buf_free(&t);
    buf_free(&tr);
    buf_free(&p);
}

static uint32_t crc32_png(const unsigned char *p, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1)));
    }
    return c ^ 0xFFFFFFFFu;
}

static void put_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

Test(media, probe_rejects_oversized)
{
    provider_image info;
    char *err;
    /* Over 10 MB of bytes: refused before any decoding. */
    size_t big = MEDIA_MAX_BYTES + 1;
    unsigned char *junk = xcalloc(big, 1);
    cr_assert_eq(probe(junk, big, &info, &err), MEDIA_EINVALID);
    cr_assert(strstr(err, "larger than 10 MB"), "%s", err);
    free(err);
    free(junk);

    /* A PNG whose header claims 8000×6000 (48 MP): refused from the header. */
    buf p = read_fixture("product2.png");
    unsigned char *d = (unsigned char *)p.data;
    cr_assert_eq(memcmp(d + 12, "IHDR", 4), 0);
    put_be32(d + 16, 8000);
    put_be32(d + 20, 6000);
    put_be32(d + 29, crc32_png(d + 12, 17));
    cr_assert_eq(probe(p.data, p.len, &info, &err), MEDIA_EINVALID);
    cr_assert(strstr(err, "megapixel"), "%s", err);
    free(err);
    buf_free(&p);
}

Test(media, upload_store_and_paths)
{
    buf j = read_fixture("product.jpg");
    provider_image info;
    memset(&info, 0, sizeof info);
    char *url = NULL, *err = NULL;
    cr_assert_eq(media_save_upload(j.data, j.len, &info, &url, &err), 0, "%s", err ? err : "");
    cr_assert(str_has_prefix(url, "http://studio.test/media/u/"), "%s", url);
    const char *name = url + strlen("http://studio.test/media/u/");
    cr_assert_eq(strlen(name), 32 + 4, "%s", name);
    cr_assert_str_eq(name + 32, ".jpg");
    cr_assert_eq(info.width, 800);

    const char *ct = NULL;
    char *path = media_path_for_request(url + strlen("http://studio.test"), &ct);
    cr_assert_not_null(path);
    cr_assert_str_eq(ct, "image/jpeg");
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq((size_t)st.st_size, j.len);

    /* The own URL passes the URL check and fetches from disk. */
    cr_assert_eq(media_check_url(url, &err), 0, "%s", err ? err : "");
    provider_image got;
    cr_assert_eq(media_fetch(url, NULL, &got, &err), 0, "%s", err ? err : "");
    cr_assert_eq(got.len, j.len);
    cr_assert_eq(memcmp(got.data, j.data, j.len), 0);
    provider_image_free(&got);

    /* Delete removes it; the URL is then refused. */
    media_delete_url(url);
    cr_assert_neq(stat(path, &st), 0);
    cr_assert_eq(media_check_url(url, &err), MEDIA_EINVALID);
    free(err);
    free(path);
    free(url);

    /* Results. */
    provider_image res = {
        .data = (unsigned char *)j.data, .len = j.len, .width = 800, .height = 800};
    snprintf(res.format, sizeof res.format, "jpeg");
    cr_assert_eq(media_store_result("gen_01JD3V6Z8Q4W3T9X0M2N5P7R1S", 1, &res, &url), 0);
    cr_assert(str_has_prefix(url, "http://studio.test/media/r/gen_01JD3V6Z8Q4W3T9X0M2N5P7R1S-1-"),
              "%s", url);
    path = media_path_for_request(url + strlen("http://studio.test"), &ct);
    cr_assert_not_null(path);
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(st.st_size, (off_t)j.len);
    /* Stored without an fsync of its own: one sync puts all results on disk. */
    cr_assert_eq(media_sync_results(), 0);
    free(path);
    free(url);
    cr_assert_eq(media_store_result("gen_../../x", 0, &res, &url), MEDIA_EINVALID);
    snprintf(res.format, sizeof res.format, "gif");
    cr_assert_eq(media_store_result("gen_01JD3V6Z8Q4W3T9X0M2N5P7R1S", 0, &res, &url),
                 MEDIA_EINVALID);
    buf_free(&j);
}

/* A second read of one of our files gives what the first found (its
 * header is remembered); bytes of another length under the name are
 * looked at again. */
Test(media, own_files_read_again_give_the_same_header)
{
    buf j = read_fixture("product.jpg"), p = read_fixture("product2.png");
    provider_image info = {0}, first = {0}, again = {0}, other = {0};
    char *url = NULL, *err = NULL;
    cr_assert_eq(media_save_upload(j.data, j.len, &info, &url, &err), 0, "%s", err ? err : "");
    cr_assert_eq(media_fetch(url, NULL, &first, &err), 0, "%s", err ? err : "");
    cr_assert_eq(media_fetch(url, NULL, &again, &err), 0, "%s", err ? err : "");
    cr_assert_str_eq(again.format, "jpeg");
    cr_assert_str_eq(again.format, first.format);
    cr_assert_eq(again.width, first.width);
    cr_assert_eq(again.height, first.height);
    cr_assert_eq(again.len, j.len);

    char *path = media_path_for_request(url + strlen("http://studio.test"), NULL);
    cr_assert_not_null(path);
    cr_assert_neq(p.len, j.len);
    cr_assert_eq(util_write_file_atomic(path, p.data, p.len, false), 0);
    cr_assert_eq(media_fetch(url, NULL, &other, &err), 0, "%s", err ? err : "");
    cr_assert_str_eq(other.format, "png");
    provider_image png = {0};
    cr_assert_eq(media_probe(p.data, p.len, &png, &err), 0);
    cr_assert_eq(other.width, png.width);
    cr_assert_eq(other.height, png.height);

    provider_image_free(&first);
    provider_image_free(&again);
    provider_image_free(&other);
    free(path);
    free(url);
    buf_free(&j);
    buf_free(&p);
}

/* Where nothing can be written or synced, the caller hears so and
 * nothing is left behind. */
Test(media, atomic_writes_fail_cleanly)
{
    char *dir = xasprintf("%s/missing", data_dir);
    char *file = xasprintf("%s/x.bin", dir);
    cr_assert_eq(util_write_file_atomic(file, "abc", 3, true), -1);
    cr_assert_eq(util_write_file_atomic(file, "abc", 3, false), -1);
    errno = 0;
    cr_assert_eq(util_sync_fs(dir), -1);
    cr_assert_eq(errno, ENOENT);
    cr_assert_eq(util_mkdirs(dir), 0);
    cr_assert_eq(util_write_file_atomic(file, "abc", 3, true), 0);
    struct stat st;
    cr_assert_eq(stat(file, &st), 0);
    cr_assert_eq(st.st_size, 3);
    cr_assert_eq(util_sync_fs(dir), 0);
    free(file);
    free(dir);
}

Test(media, path_for_request_is_strict)
{
    const char *ct;
    char *p = media_path_for_request("/media/u/abc.png", &ct);
    cr_assert_not_null(p);
    cr_assert_str_eq(ct, "image/png");
    free(p);
    p = media_path_for_request("/media/r/gen_X-0-abc.webp", &ct);
    cr_assert_not_null(p);
    cr_assert_str_eq(ct, "image/webp");
    free(p);
    static const char *bad[] = {
        "/media/u/../../etc/passwd",
        "/media/u/..",
        "/media/x/abc.jpg",
        "/media/u/abc.gif",
        "/media/u/a.b.jpg",
        "/media/u/",
        "/media/u/.jpg",
        "/media/u/a%2e.jpg",
        "/media/u/sub/abc.jpg",
        "/media/uabc.jpg",
        "/etc/passwd",
        "/media/u/abc.jpg?x=1",
        "/media/u/abc.JPG",
        "",
    };
    for (size_t i = 0; i < ARRAY_LEN(bad); i++)
        cr_expect_null(media_path_for_request(bad[i], &ct), "accepted %s", bad[i]);
    cr_expect_null(media_path_for_request(NULL, &ct));
}

static int check(const char *url)
{
    char *err = NULL;
    int rc = media_check_url(url, &err);
    if (rc) cr_assert_not_null(err);
    free(err);
    return rc;
}

Test(media, address_rules)
{
    static const char *refused[] = {
        "http://127.0.0.1/a.jpg",
        "http://127.1.2.3:8080/a.jpg",
        "http://localhost/a.jpg",
        "http://10.0.0.1/a.jpg",
        "http://172.16.5.4/a.jpg",
        "http://172.31.255.255/a.jpg",
        "http://192.168.1.10/a.jpg",
        "http://169.254.169.254/latest/meta-data/",
        "http://169.254.1.1/a.jpg",
        "http://0.0.0.0/a.jpg",
        "http://100.64.0.1/a.jpg",
        "http://[::1]/a.jpg",
        "http://[fe80::1]/a.jpg",
        "http://[fd12:3456::1]/a.jpg",
        "http://[fc00::1]/a.jpg",
        "http://[::ffff:127.0.0.1]/a.jpg",
        "http://[::ffff:169.254.169.254]/a.jpg",
        "http://224.0.0.1/a.jpg",
        "http://2130706433/a.jpg", /* 127.0.0.1 as a number */
        "http://0x7f.1/a.jpg",
    };
    for (size_t i = 0; i < ARRAY_LEN(refused); i++)
        cr_expect_eq(check(refused[i]), MEDIA_EINVALID, "accepted %s", refused[i]);

    static const char *bad_shape[] = {
        "ftp://example.com/a.jpg",
        "file:///etc/passwd",
        "gopher://x/",
        "javascript:alert(1)",
        "http://",
        "http:///a.jpg",
        "not a url",
        "",
        "http://exa mple.com/a.jpg",
    };
    for (size_t i = 0; i < ARRAY_LEN(bad_shape); i++)
        cr_expect_eq(check(bad_shape[i]), MEDIA_EINVALID, "accepted %s", bad_shape[i]);
    char *longurl = xmalloc(MEDIA_MAX_URL + 2);
    memset(longurl, 'a', MEDIA_MAX_URL + 1);
    memcpy(longurl, "http://93.184.216.34/", 21);
    longurl[MEDIA_MAX_URL + 1] = '\0';
    cr_expect_eq(check(longurl), MEDIA_EINVALID);
    free(longurl);

    /* Public addresses (literal, so no DNS is needed) are fine. */
    cr_expect_eq(check("http://93.184.216.34/a.jpg"), 0);
    cr_expect_eq(check("https://8.8.8.8:8443/x/y.png?size=large"), 0);
    cr_expect_eq(check("http://[2606:4700::1111]/a.jpg"), 0);

    /* The allow list: an address, a CIDR, a host name (not resolved). */
    cr_expect_eq(check("http://127.0.0.2:9000/a.jpg"), 0);
    cr_expect_eq(check("http://10.9.200.1/a.jpg"), 0);
    cr_expect_eq(check("http://10.10.0.1/a.jpg"), MEDIA_EINVALID);
    cr_expect_eq(check("http://allowed.example/a.jpg"), 0);
    cr_expect_eq(check("http://ALLOWED.example./a.jpg"), 0);

    /* Own URLs must name an existing file. */
    cr_expect_eq(check("http://studio.test/media/u/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.jpg"),
                 MEDIA_EINVALID);
    cr_expect_eq(check("http://studio.test/media/u/../../secret.jpg"), MEDIA_EINVALID);
}

/* ---- a tiny HTTP server on 127.0.0.2 for fetch tests ---- */

typedef struct server {
    int fd;
    int port;
    buf image;
    pthread_t thread;
} server;

static void respond(int c, const char *status, const char *headers, const void *body, size_t len)
{
    char *h = xasprintf("HTTP/1.1 %s\r\nContent-Length: %zu\r\nConnection: close\r\n%s\r\n", status,
                        len, headers);
    if (write(c, h, strlen(h)) < 0 || (len && write(c, body, len) < 0)) {
        /* the client went away */
    }
    free(h);
}

static void *serve(void *arg)
{
    server *s = arg;
    for (;;) {
        int c = accept(s->fd, NULL, NULL);
        if (c < 0) return NULL;
        char req[4096];
        ssize_t n = read(c, req, sizeof req - 1);
        if (n <= 0) {
            close(c);
            continue;
        }
        req[n] = '\0';
        char path[512] = "";
        sscanf(req, "GET %511s", path);
        char *loc = NULL;
        if (strcmp(path, "/img.jpg") == 0) {
            respond(c, "200 OK", "Content-Type: image/jpeg\r\n", s->image.data, s->image.len);
        } else if (strcmp(path, "/text") == 0) {
            respond(c, "200 OK", "Content-Type: text/plain\r\n", "hello", 5);
        } else if (strcmp(path, "/redirect-ok") == 0) {
            loc = xasprintf("Location: http://127.0.0.2:%d/img.jpg\r\n", s->port);
            respond(c, "302 Found", loc, "", 0);
        } else if (strcmp(path, "/redirect-private") == 0) {
            loc = xasprintf("Location: http://127.0.0.1:%d/img.jpg\r\n", s->port);
            respond(c, "302 Found", loc, "", 0);
        } else if (strcmp(path, "/redirect-metadata") == 0) {
            respond(c, "301 Moved", "Location: http://169.254.169.254/latest/meta-data/\r\n", "",
                    0);
        } else if (strcmp(path, "/loop") == 0) {
            respond(c, "302 Found", "Location: /loop\r\n", "", 0);
        } else if (strcmp(path, "/huge") == 0) {
            /* Claims nothing, streams more than the limit. */
            const char *h =
                "HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nConnection: close\r\n\r\n";
            ssize_t w = write(c, h, strlen(h));
            static char chunk[65536];
            for (size_t sent = 0; w >= 0 && sent < (size_t)MEDIA_MAX_BYTES + 200000;
                 sent += sizeof chunk)
                w = write(c, chunk, sizeof chunk);
        } else {
            respond(c, "404 Not Found", "", "nope", 4);
        }
        free(loc);
        close(c);
    }
}

static void server_start(server *s, const char *addr)
{
    s->image = read_fixture("product.jpg");
    s->fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(s->fd, 0);
    int one = 1;
    setsockopt(s->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    inet_pton(AF_INET, addr, &sa.sin_addr);
    cr_assert_eq(bind(s->fd, (struct sockaddr *)&sa, sizeof sa), 0);
    cr_assert_eq(listen(s->fd, 16), 0);
    socklen_t sl = sizeof sa;
    getsockname(s->fd, (struct sockaddr *)&sa, &sl);
    s->port = ntohs(sa.sin_port);
    pthread_create(&s->thread, NULL, serve, s);
}

static int fetch(server *s, const char *path, provider_image *out, char **err)
{
    char *url = xasprintf("http://127.0.0.2:%d%s", s->port, path);
    *err = NULL;
    int rc = media_fetch(url, NULL, out, err);
    free(url);
    return rc;
}

Test(media, fetch_over_http, .timeout = 60)
{
    server s;
    server_start(&s, "0.0.0.0");
    provider_image out;
    char *err;

    cr_assert_eq(fetch(&s, "/img.jpg", &out, &err), 0, "%s", err ? err : "");
    cr_assert_str_eq(out.format, "jpeg");
    cr_assert_eq(out.len, s.image.len);
    cr_assert_eq(memcmp(out.data, s.image.data, out.len), 0);
    provider_image_free(&out);

    cr_assert_eq(fetch(&s, "/redirect-ok", &out, &err), 0, "%s", err ? err : "");
    provider_image_free(&out);

    cr_assert_eq(fetch(&s, "/missing", &out, &err), MEDIA_EINVALID);
    cr_assert_str_eq(err, "image URL returned HTTP 404");
    free(err);

    cr_assert_eq(fetch(&s, "/text", &out, &err), MEDIA_EINVALID);
    cr_assert(strstr(err, "JPEG, PNG or WebP"), "%s", err);
    free(err);

    /* Redirects are checked hop by hop. */
    cr_assert_eq(fetch(&s, "/redirect-private", &out, &err), MEDIA_EINVALID);
    cr_assert(strstr(err, "loopback"), "%s", err);
    free(err);
    cr_assert_eq(fetch(&s, "/redirect-metadata", &out, &err), MEDIA_EINVALID);
    cr_assert(strstr(err, "link-local"), "%s", err);
    free(err);
    cr_assert_eq(fetch(&s, "/loop", &out, &err), MEDIA_EINVALID);
    cr_assert(strstr(err, "redirected"), "%s", err);
    free(err);

    cr_assert_eq(fetch(&s, "/huge", &out, &err), MEDIA_EINVALID);
    cr_assert(strstr(err, "larger than 10 MB"), "%s", err);
    free(err);

    /* The same server on a refused address is never contacted. */
    char *url = xasprintf("http://127.0.0.1:%d/img.jpg", s.port);
    cr_assert_eq(media_fetch(url, NULL, &out, &err), MEDIA_EINVALID);
    cr_assert(strstr(err, "loopback"), "%s", err);
    free(err);
    free(url);

    shutdown(s.fd, SHUT_RDWR);
    close(s.fd);
    pthread_join(s.thread, NULL);
    buf_free(&s.image);
}

Test(media, fit_aspect_crops_to_the_exact_ratio_and_never_scales)
{
    buf j = read_fixture("product.jpg"); /* 800×800 */
    static const struct {
        const char *ratio;
        int w, h;
    } cases[] = {{"1:1", 800, 800}, {"16:9", 800, 450}, {"3:4", 600, 800}, {"4:5", 640, 800}};
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        provider_image img = {.data = xmalloc(j.len), .len = j.len};
        memcpy(img.data, j.data, j.len);
        char *err = NULL;
        cr_assert_eq(media_fit_aspect(&img, cases[i].ratio, &err), 0, "%s", err ? err : "");
        cr_expect(img.width == cases[i].w && img.height == cases[i].h, "%s: %dx%d", cases[i].ratio,
                  img.width, img.height);
        cr_expect_str_eq(img.format, "jpeg");
        if (cases[i].w == 800 && cases[i].h == 800)
            cr_expect(img.len == j.len && memcmp(img.data, j.data, j.len) == 0,
                      "an image already at the ratio is kept byte for byte");
        provider_image check = {0};
        cr_assert_eq(probe(img.data, img.len, &check, &err), 0, "%s", err ? err : "");
        cr_expect(check.width == cases[i].w && check.height == cases[i].h);
        provider_image_free(&img);
    }
    /* Cut short: fails whether it is kept as it is or cropped. */
    buf t = read_fixture("truncated.jpg");
    for (int k = 0; k < 2; k++) {
        provider_image img = {.data = xmalloc(t.len), .len = t.len};
        memcpy(img.data, t.data, t.len);
        char *why = NULL;
        cr_expect_eq(media_fit_aspect(&img, k ? "16:9" : "1:1", &why), MEDIA_EINVALID,
                     "truncated.jpg fitted to %s", k ? "16:9" : "1:1");
        free(why);
        provider_image_free(&img);
    }
    buf_free(&t);
    provider_image junk = {.data = (unsigned char *)xstrdup("not an image"), .len = 12};
    char *err = NULL;
    cr_assert_eq(media_fit_aspect(&junk, "1:1", &err), MEDIA_EINVALID);
    cr_assert_not_null(err);
    free(err);
    provider_image_free(&junk);
    buf_free(&j);
}
