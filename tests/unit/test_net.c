/*
 * Unit tests for net.c, the outbound HTTP loop: requests and answers
 * (status, body, headers, Retry-After), bodies and multipart parts sent,
 * redirects, limits (size, time), cancel, delayed requests, the address
 * rule on connect, and many transfers in flight on the one loop thread.
 * The peer is a libmicrohttpd server on 127.0.0.1 (thread per connection,
 * so a handler may sleep), allow-listed by address.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "net.h"
#include "util.h"

static struct MHD_Daemon *daemon_;
static unsigned port;

typedef struct upload {
    buf body;
} upload;

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *body,
                             const char *hname, const char *hvalue)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_MUST_COPY);
    if (hname) MHD_add_response_header(r, hname, hvalue);
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url,
                               const char *method, const char *version, const char *data,
                               size_t *data_size, void **state)
{
    (void)cls, (void)version;
    if (!*state) {
        *state = xcalloc(1, sizeof(upload));
        return MHD_YES;
    }
    upload *up = *state;
    if (*data_size) {
        buf_append(&up->body, data, *data_size);
        *data_size = 0;
        return MHD_YES;
    }
    if (strcmp(url, "/hello") == 0) return reply(c, 200, "hello", "X-Test", "yes");
    if (strcmp(url, "/slow") == 0) {
        const char *ms = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "ms");
        sleep_ms(ms ? atoi(ms) : 1000);
        return reply(c, 200, "slow", NULL, NULL);
    }
    if (strcmp(url, "/echo") == 0) {
        const char *ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Type");
        char *text = xasprintf("%s %s\n%.*s", method, ct ? ct : "-", (int)up->body.len,
                               up->body.data ? up->body.data : "");
        enum MHD_Result ret = reply(c, 200, text, NULL, NULL);
        free(text);
        return ret;
    }
    if (strcmp(url, "/busy") == 0) return reply(c, 429, "busy", "Retry-After", "7");
    if (strcmp(url, "/redirect") == 0) return reply(c, 302, "", "Location", "/hello");
    if (strcmp(url, "/big") == 0) {
        char *big = xmalloc(200001);
        memset(big, 'x', 200000);
        big[200000] = '\0';
        enum MHD_Result ret = reply(c, 200, big, NULL, NULL);
        free(big);
        return ret;
    }
    return reply(c, 404, "no", NULL, NULL);
}

static void completed(void *cls, struct MHD_Connection *c, void **state,
                      enum MHD_RequestTerminationCode toe)
{
    (void)cls, (void)c, (void)toe;
    upload *up = *state;
    if (!up) return;
    buf_free(&up->body);
    free(up);
}

static void setup(void)
{
    cr_assert_eq(net_start("127.0.0.1"), 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    daemon_ = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD, 0,
                               NULL, NULL, handler, NULL, MHD_OPTION_SOCK_ADDR, &sa,
                               MHD_OPTION_NOTIFY_COMPLETED, completed, NULL,
                               MHD_OPTION_CONNECTION_LIMIT, 1000, MHD_OPTION_END);
    cr_assert_not_null(daemon_);
    port = MHD_get_daemon_info(daemon_, MHD_DAEMON_INFO_BIND_PORT)->port;
}

static void teardown(void)
{
    net_stop();
    MHD_stop_daemon(daemon_);
}

TestSuite(net, .init = setup, .fini = teardown, .timeout = 60);

static char *url_for(const char *path)
{
    return xasprintf("http://127.0.0.1:%u%s", port, path);
}

/* One request, waited for; the caller frees the response. */
static void perform(net_request *r, net_response *resp)
{
    net_perform(r, resp);
}

static net_request *get(const char *path)
{
    char *u = url_for(path);
    net_request *r = net_request_new("GET", u);
    free(u);
    return r;
}

Test(net, answers_with_status_body_and_headers)
{
    net_response resp;
    perform(get("/hello"), &resp);
    cr_assert_eq(resp.error, NET_OK, "%s", resp.reason ? resp.reason : "");
    cr_assert_eq(resp.status, 200);
    cr_assert_eq(resp.body.len, 5);
    cr_assert(memcmp(resp.body.data, "hello", 5) == 0);
    cr_assert_str_eq(net_response_header(&resp, "x-test"), "yes");
    cr_assert_null(net_response_header(&resp, "x-none"));
    cr_assert_eq(net_retry_after_ms(&resp), -1);
    net_response_free(&resp);

    perform(get("/busy"), &resp);
    cr_assert_eq(resp.status, 429);
    cr_assert_eq(net_retry_after_ms(&resp), 7000);
    net_response_free(&resp);
}

Test(net, sends_a_body_and_multipart_parts)
{
    char *u = url_for("/echo");
    net_request *r = net_request_new("POST", u);
    net_request_body(r, "application/json", "{\"a\":1}", 7);
    net_response resp;
    perform(r, &resp);
    cr_assert_eq(resp.status, 200);
    buf_append(&resp.body, "", 1);
    cr_assert_str_eq(resp.body.data, "POST application/json\n{\"a\":1}");
    net_response_free(&resp);

    r = net_request_new("POST", u);
    net_request_part(r, "prompt", NULL, NULL, "a red dress", 11);
    net_request_part(r, "image[]", "product-1.png", "image/png", "\x89PNG", 4);
    perform(r, &resp);
    buf_append(&resp.body, "", 1);
    cr_assert(strstr(resp.body.data, "POST multipart/form-data; boundary="), "%s", resp.body.data);
    cr_assert(strstr(resp.body.data, "name=\"prompt\"\r\n\r\na red dress\r\n"), "%s",
              resp.body.data);
    cr_assert(strstr(resp.body.data, "name=\"image[]\"; filename=\"product-1.png\"\r\n"
                                     "Content-Type: image/png\r\n"),
              "%s", resp.body.data);
    net_response_free(&resp);

    r = net_request_new("DELETE", u);
    perform(r, &resp);
    buf_append(&resp.body, "", 1);
    cr_assert(str_has_prefix(resp.body.data, "DELETE "), "%s", resp.body.data);
    net_response_free(&resp);
    free(u);
}

Test(net, follows_redirects_only_when_asked)
{
    net_response resp;
    perform(get("/redirect"), &resp);
    cr_assert_eq(resp.error, NET_OK);
    cr_assert_eq(resp.status, 302);
    net_response_free(&resp);

    net_request *r = get("/redirect");
    net_request_redirects(r, 1);
    perform(r, &resp);
    cr_assert_eq(resp.status, 200);
    cr_assert(strstr(resp.effective_url, "/hello"), "%s", resp.effective_url);
    net_response_free(&resp);
}

Test(net, limits_size_and_time)
{
    net_request *r = get("/big");
    net_request_limits(r, 0, 1000);
    net_response resp;
    perform(r, &resp);
    cr_assert_eq(resp.error, NET_ETOOBIG);
    net_response_free(&resp);

    r = get("/slow?ms=3000");
    net_request_limits(r, 300, 0);
    int64_t t0 = mono_ms();
    perform(r, &resp);
    cr_assert_eq(resp.error, NET_ETIMEOUT, "%d %s", resp.error, resp.reason);
    cr_assert_lt(mono_ms() - t0, 2500);
    net_response_free(&resp);
}

typedef struct later {
    atomic_bool *flag;
    int ms;
} later;

static void *raise_later(void *arg)
{
    later *l = arg;
    sleep_ms(l->ms);
    atomic_store(l->flag, true);
    return NULL;
}

Test(net, a_raised_cancel_flag_ends_the_transfer)
{
    atomic_bool flag = false;
    later l = {&flag, 100};
    pthread_t th;
    pthread_create(&th, NULL, raise_later, &l);
    net_request *r = get("/slow?ms=5000");
    net_request_cancel_flag(r, &flag);
    int64_t t0 = mono_ms();
    net_response resp;
    perform(r, &resp);
    pthread_join(th, NULL);
    cr_assert_eq(resp.error, NET_ECANCELLED);
    cr_assert_lt(mono_ms() - t0, 3000, "the transfer ran on after the cancel");
    net_response_free(&resp);

    /* A delayed request is cancelled before it starts. */
    atomic_store(&flag, true);
    r = get("/hello");
    net_request_delay(r, 10000);
    net_request_cancel_flag(r, &flag);
    t0 = mono_ms();
    perform(r, &resp);
    cr_assert_eq(resp.error, NET_ECANCELLED);
    cr_assert_lt(mono_ms() - t0, 3000);
    net_response_free(&resp);
}

Test(net, a_delayed_request_waits)
{
    net_request *r = get("/hello");
    net_request_delay(r, 300);
    int64_t t0 = mono_ms();
    net_response resp;
    perform(r, &resp);
    cr_assert_eq(resp.status, 200);
    cr_assert_geq(mono_ms() - t0, 300);
    net_response_free(&resp);
}

Test(net, the_address_rule_refuses_what_is_not_allowed)
{
    /* 127.0.0.2 is loopback and not on the allow list (127.0.0.1 is). */
    char *u = xasprintf("http://127.0.0.2:%u/hello", port);
    net_response resp;
    perform(net_request_new("GET", u), &resp);
    cr_assert_eq(resp.error, NET_EREFUSED, "%d %s", resp.error, resp.reason);
    net_response_free(&resp);
    char *err = NULL;
    cr_assert_eq(net_check_url(u, "webhook URL", &err), NET_EREFUSED);
    cr_assert(strstr(err, "webhook URL host \"127.0.0.2\""), "%s", err);
    free(err);
    free(u);
    cr_assert_eq(net_check_url("ftp://example.com/a", "image URL", &err), NET_EINVALID);
    cr_assert_str_eq(err, "image URL must use http or https");
    free(err);
}

/* Found by fuzz_url (tests/fuzz/corpus/fuzz_url/regress-nat64-allowlisted):
 * an allow-listed IPv4 address was refused in its NAT64 form
 * (64:ff9b::a.b.c.d, what DNS64 resolves it to) while loopback inside
 * NAT64 is refused like loopback: every IPv6 form of an IPv4 address gets
 * that address's answer. */
static bool refused6(const char *text)
{
    struct sockaddr_in6 sa = {.sin6_family = AF_INET6};
    cr_assert_eq(inet_pton(AF_INET6, text, &sa.sin6_addr), 1, "%s", text);
    return net_addr_refused((struct sockaddr *)&sa);
}

Test(net, ipv6_forms_of_an_ipv4_address_get_its_answer)
{
    net_stop();
    cr_assert_eq(net_start("127.0.0.1,10.9.0.0/16"), 0);
    for (int i = 0; i < 3; i++) {
        const char *pre = (const char *[]){"::ffff:", "64:ff9b::", "::"}[i];
        char a[64];
        snprintf(a, sizeof a, "%s10.9.10.1", pre);
        cr_assert_not(refused6(a), "%s is allow-listed (10.9.0.0/16)", a);
        snprintf(a, sizeof a, "%s127.0.0.1", pre);
        cr_assert_not(refused6(a), "%s is allow-listed (127.0.0.1)", a);
        snprintf(a, sizeof a, "%s10.8.0.1", pre);
        cr_assert(refused6(a), "%s is private and not allow-listed", a);
        snprintf(a, sizeof a, "%s127.0.0.2", pre);
        cr_assert(refused6(a), "%s is loopback and not allow-listed", a);
    }
    cr_assert(refused6("::1"));
    cr_assert_not(refused6("2606:2800:220:1::1"));
}

static atomic_int n_done, n_ok;

static void count_done(net_request *r, net_response *resp, void *ctx)
{
    (void)r, (void)ctx;
    if (resp->error == NET_OK && resp->status == 200) atomic_fetch_add(&n_ok, 1);
    atomic_fetch_add(&n_done, 1);
}

Test(net, many_transfers_in_flight_on_one_thread)
{
    enum { N = 200 };
    atomic_store(&n_done, 0);
    atomic_store(&n_ok, 0);
    int64_t t0 = mono_ms();
    for (int i = 0; i < N; i++)
        net_submit(get("/slow?ms=1000"), count_done, NULL);
    while (atomic_load(&n_done) < N && mono_ms() - t0 < 30000)
        sleep_ms(20);
    cr_assert_eq(atomic_load(&n_ok), N);
    cr_log_info("%d transfers of 1 s each took %lld ms", N, (long long)(mono_ms() - t0));
}

Test(net, a_raised_wake_flag_starts_a_delayed_request_now)
{
    atomic_bool wake = false;
    later l = {&wake, 100};
    pthread_t th;
    pthread_create(&th, NULL, raise_later, &l);
    net_request *r = get("/hello");
    net_request_delay(r, 20000);
    net_request_wake_flag(r, &wake);
    int64_t t0 = mono_ms();
    net_response resp;
    perform(r, &resp);
    pthread_join(th, NULL);
    cr_assert_eq(resp.status, 200);
    cr_assert_lt(mono_ms() - t0, 5000, "the wake flag did not start the request");
    net_response_free(&resp);
}
