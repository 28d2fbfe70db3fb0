/*
 * loadgen — the benchmark suite's HTTP/1.1 load generator: one thread, epoll,
 * keep-alive connections, responses parsed with Debian's http-parser
 * (libhttp-parser-dev). Three modes:
 *
 *   loadgen req    --port P --keys FILE [--conns N] [--duration S] [--rate R]
 *                  [--method M] [--path P] [--body JSON]
 *       N connections send the same request back to back (or R requests/s in
 *       all, paced) for S seconds, key i%K on connection i; prints requests/s
 *       and latency percentiles (send → whole response).
 *   loadgen sse    --port P --keys FILE --streams N --pid SERVER_PID
 *                  [--path /api/create-path] [--body JSON]
 *       fan-out: opens N /api/events streams (round-robin over the keys),
 *       reads the server's RSS and threads before and after, then sends one
 *       create per user and times until every stream of that user has it.
 *   loadgen delay  --port P --keys FILE [--rate R] [--duration S] [--status S]
 *       commit → SSE: one stream per key, requests round-robin over the keys
 *       at R/s in all (0: back to back); per frame whose record has status S
 *       (pending), arrival minus the record's createdAt, and those frames/s.
 *
 * Every mode ends with lines "name value unit" that bench/run.sh tabulates.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <http_parser.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct conn {
    int fd;
    int user;
    http_parser parser;
    const char *req; /* request bytes to send */
    size_t req_len, sent;
    double t_send;
    bool busy, sse, connected, got_change;
    char *frame; /* SSE: bytes of the frame being read */
    size_t frame_len, frame_cap;
} conn;

static int epfd;
static int port = 0;
static const char *method = "POST", *path = "/api/generation/create";
static const char *body = "{}";
static char **keys;
static int nkeys;
static double *lat; /* latencies, ms */
static size_t nlat, cap_lat;
static double *dlat; /* delay mode: createdAt → frame arrival, ms */
static size_t ndlat, cap_dlat;
static long n_ok, n_fail;
static http_parser_settings settings;
/* sse/delay mode */
static int streams_connected;
static int *user_pending;  /* streams of the user still without the change */
static double *user_start; /* when the user's change was sent */
static double *user_done;
static int users_done;
static bool delay_mode;
static const char *want_status = "\"status\":\"pending\"";
static double t_last_frame;

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static double wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n);
    if (!p) die("realloc");
    return p;
}

static void add_lat(double ms)
{
    if (nlat == cap_lat) {
        cap_lat = cap_lat ? cap_lat * 2 : 4096;
        lat = xrealloc(lat, cap_lat * sizeof *lat);
    }
    lat[nlat++] = ms;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(double *xs, size_t n, double p)
{
    if (!n) return 0;
    size_t i = (size_t)(p * n);
    return xs[i >= n ? n - 1 : i];
}

static char *build_req(const char *m, const char *p, const char *key, const char *b)
{
    char *out;
    if (strcmp(m, "GET") == 0) {
        if (asprintf(&out,
                     "GET %s HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer %s\r\n"
                     "Accept: text/event-stream\r\n\r\n",
                     p, key) < 0)
            die("asprintf");
    } else if (asprintf(&out,
                        "%s %s HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer %s\r\n"
                        "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                        m, p, key, strlen(b), b) < 0)
        die("asprintf");
    return out;
}

static int open_conn(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) die("socket");
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) die("connect");
    fcntl(fd, F_SETFL, O_NONBLOCK);
    return fd;
}

static void conn_send(conn *c)
{
    while (c->sent < c->req_len) {
        ssize_t n = write(c->fd, c->req + c->sent, c->req_len - c->sent);
        if (n < 0 && errno == EAGAIN) break;
        if (n <= 0) die("write");
        c->sent += (size_t)n;
    }
    struct epoll_event ev = {.events = EPOLLIN | (c->sent < c->req_len ? EPOLLOUT : 0),
                             .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

static void conn_start(conn *c)
{
    c->sent = 0;
    c->busy = true;
    c->t_send = now_ms();
    conn_send(c);
}

static conn *conn_new(int user, const char *req)
{
    conn *c = calloc(1, sizeof *c);
    if (!c) die("calloc");
    c->fd = open_conn();
    c->user = user;
    c->req = req;
    c->req_len = strlen(req);
    http_parser_init(&c->parser, HTTP_RESPONSE);
    c->parser.data = c;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev) != 0) die("epoll_ctl");
    return c;
}

/* --- response callbacks --- */

static int on_headers(http_parser *p)
{
    conn *c = p->data;
    if (c->sse) {
        if (p->status_code != 200) {
            fprintf(stderr, "loadgen: stream refused: HTTP %d\n", p->status_code);
            exit(1);
        }
        c->connected = true;
        streams_connected++;
    }
    return 0;
}

static void on_frame(conn *c, const char *f, size_t n)
{
    if (n < 17 || memcmp(f, "event: generation", 17) != 0) return;
    if (delay_mode) {
        const char *ca = memmem(f, n, "\"createdAt\":", 12);
        const char *st = memmem(f, n, want_status, strlen(want_status));
        if (ca && st) {
            t_last_frame = now_ms();
            if (ndlat == cap_dlat) {
                cap_dlat = cap_dlat ? cap_dlat * 2 : 4096;
                dlat = xrealloc(dlat, cap_dlat * sizeof *dlat);
            }
            dlat[ndlat++] = wall_ms() - strtod(ca + 12, NULL);
        }
        return;
    }
    if (c->got_change) return;
    c->got_change = true;
    if (--user_pending[c->user] == 0) {
        user_done[c->user] = now_ms();
        users_done++;
    }
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    conn *c = p->data;
    if (!c->sse) return 0;
    if (c->frame_len + len > c->frame_cap) {
        c->frame_cap = (c->frame_len + len) * 2;
        c->frame = xrealloc(c->frame, c->frame_cap);
    }
    memcpy(c->frame + c->frame_len, at, len);
    c->frame_len += len;
    size_t start = 0;
    for (size_t i = 1; i < c->frame_len; i++) {
        if (c->frame[i] == '\n' && c->frame[i - 1] == '\n') {
            on_frame(c, c->frame + start, i - start);
            start = i + 1;
        }
    }
    memmove(c->frame, c->frame + start, c->frame_len - start);
    c->frame_len -= start;
    return 0;
}

static int on_complete(http_parser *p)
{
    conn *c = p->data;
    if (c->sse) return 0;
    add_lat(now_ms() - c->t_send);
    if (p->status_code >= 200 && p->status_code < 300)
        n_ok++;
    else {
        if (n_fail < 3) fprintf(stderr, "loadgen: HTTP %d\n", p->status_code);
        n_fail++;
    }
    c->busy = false;
    return 0;
}

static void conn_read(conn *c)
{
    char buf[65536];
    for (;;) {
        ssize_t n = read(c->fd, buf, sizeof buf);
        if (n < 0 && errno == EAGAIN) return;
        if (n <= 0) {
            fprintf(stderr, "loadgen: connection closed by the server\n");
            exit(1);
        }
        size_t used = http_parser_execute(&c->parser, &settings, buf, (size_t)n);
        if (used != (size_t)n) {
            fprintf(stderr, "loadgen: bad response: %s\n",
                    http_errno_description(HTTP_PARSER_ERRNO(&c->parser)));
            exit(1);
        }
    }
}

/* Runs the loop for up to `timeout_ms` (to the microsecond: a paced run
 * must sleep until its next send, not spin on a zero timeout and take a
 * core from the server); returns the ready connections via callback. */
static void loop_once(double timeout_ms, void (*idle)(conn *))
{
    struct epoll_event evs[256];
    if (timeout_ms < 0) timeout_ms = 0;
    long long ns = (long long)(timeout_ms * 1e6);
    struct timespec ts = {.tv_sec = ns / 1000000000, .tv_nsec = ns % 1000000000};
    int n = epoll_pwait2(epfd, evs, 256, &ts, NULL);
    for (int i = 0; i < n; i++) {
        conn *c = evs[i].data.ptr;
        if (evs[i].events & EPOLLOUT) conn_send(c);
        if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
            conn_read(c);
            if (!c->busy && !c->sse && idle) idle(c);
        }
    }
}

static void read_keys(const char *file)
{
    FILE *f = fopen(file, "r");
    if (!f) die(file);
    char line[512];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n ")] = '\0';
        if (!line[0]) continue;
        keys = xrealloc(keys, (size_t)(nkeys + 1) * sizeof *keys);
        keys[nkeys++] = strdup(line);
    }
    fclose(f);
    if (!nkeys) {
        fprintf(stderr, "loadgen: no keys in %s\n", file);
        exit(1);
    }
}

static void proc_status(int pid, long *rss_kib, long *threads)
{
    char p[64], line[256];
    snprintf(p, sizeof p, "/proc/%d/status", pid);
    FILE *f = fopen(p, "r");
    *rss_kib = *threads = -1;
    if (!f) return;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "VmRSS:", 6) == 0) *rss_kib = atol(line + 6);
        if (strncmp(line, "Threads:", 8) == 0) *threads = atol(line + 8);
    }
    fclose(f);
}

/* --- req mode --- */

static double rate;
static double t_start, t_end;
static long scheduled;
static conn **idle_q;
static int n_idle;

static void req_idle(conn *c)
{
    if (now_ms() >= t_end) return;
    if (rate <= 0) {
        conn_start(c);
        return;
    }
    idle_q[n_idle++] = c;
}

static void pace(void)
{
    double now = now_ms();
    while (n_idle && now < t_end && t_start + scheduled * 1000.0 / rate <= now) {
        scheduled++;
        conn_start(idle_q[--n_idle]);
    }
}

/* How long the loop may sleep before pace() has a request to send: until
 * the next one is due when one is waiting for its time, else `cap`. */
static double pace_timeout(double cap)
{
    if (rate <= 0 || !n_idle) return cap;
    double next = t_start + scheduled * 1000.0 / rate - now_ms();
    return next < cap ? next : cap;
}

static void print_lat(const char *name)
{
    qsort(lat, nlat, sizeof *lat, cmp_d);
    printf("%s_p50 %.2f ms\n%s_p99 %.2f ms\n%s_p999 %.2f ms\n", name, pct(lat, nlat, 0.5), name,
           pct(lat, nlat, 0.99), name, pct(lat, nlat, 0.999));
}

static int mode_req(int conns, double duration)
{
    conn **cs = calloc((size_t)conns, sizeof *cs);
    idle_q = calloc((size_t)conns, sizeof *idle_q);
    for (int i = 0; i < conns; i++)
        cs[i] = conn_new(i % nkeys, build_req(method, path, keys[i % nkeys], body));
    t_start = now_ms();
    t_end = t_start + duration * 1000;
    for (int i = 0; i < conns; i++)
        req_idle(cs[i]);
    for (;;) {
        pace();
        bool any = false;
        for (int i = 0; i < conns && !any; i++)
            any = cs[i]->busy;
        if (!any && now_ms() >= t_end) break;
        loop_once(pace_timeout(100), req_idle);
    }
    double secs = (now_ms() - t_start) / 1000;
    printf("requests %ld\nok %ld\nfailed %ld\n", n_ok + n_fail, n_ok, n_fail);
    printf("throughput %.0f requests/s\n", (n_ok + n_fail) / secs);
    print_lat("latency");
    return n_fail ? 2 : 0;
}

/* --- sse (fan-out) mode --- */

static int mode_sse(int nstreams, int pid)
{
    long rss0, th0, rss1, th1;
    proc_status(pid, &rss0, &th0);
    conn **ss = calloc((size_t)nstreams, sizeof *ss);
    user_pending = calloc((size_t)nkeys, sizeof *user_pending);
    user_start = calloc((size_t)nkeys, sizeof *user_start);
    user_done = calloc((size_t)nkeys, sizeof *user_done);
    double t0 = now_ms();
    for (int i = 0; i < nstreams; i++) {
        int u = i % nkeys;
        ss[i] = conn_new(u, build_req("GET", "/api/events", keys[u], NULL));
        ss[i]->sse = true;
        user_pending[u]++;
        conn_start(ss[i]);
        if (i % 256 == 255) loop_once(0, NULL); /* keep up with the replies */
    }
    while (streams_connected < nstreams) {
        if (now_ms() - t0 > 120000) {
            fprintf(stderr, "loadgen: only %d/%d streams connected\n", streams_connected, nstreams);
            return 1;
        }
        loop_once(100, NULL);
    }
    double t_conn = now_ms() - t0;
    /* let the server settle, then read its footprint */
    for (double t = now_ms(); now_ms() - t < 1000;)
        loop_once(100, NULL);
    proc_status(pid, &rss1, &th1);
    /* An API request while every stream is open. */
    conn *api = conn_new(0, build_req("GET", "/api/me", keys[0], NULL));
    conn_start(api);
    while (api->busy)
        loop_once(100, NULL);
    double api_ms = lat[nlat - 1];
    /* One change per user: a create; its event reaches every stream of the user. */
    conn **trig = calloc((size_t)nkeys, sizeof *trig);
    double t_trig = now_ms();
    for (int u = 0; u < nkeys; u++) {
        trig[u] = conn_new(u, build_req(method, path, keys[u], body));
        user_start[u] = now_ms();
        conn_start(trig[u]);
    }
    while (users_done < nkeys) {
        if (now_ms() - t_trig > 60000) {
            fprintf(stderr, "loadgen: only %d/%d users' streams all got their change\n", users_done,
                    nkeys);
            return 1;
        }
        loop_once(100, NULL);
    }
    nlat = 0;
    double worst = 0;
    for (int u = 0; u < nkeys; u++) {
        double d = user_done[u] - user_start[u];
        add_lat(d);
        if (d > worst) worst = d;
    }
    double all = now_ms() - t_trig;
    printf("streams %d\nusers %d\n", nstreams, nkeys);
    printf("connect_all %.0f ms\n", t_conn);
    printf("rss_per_stream %.1f KiB\n", (double)(rss1 - rss0) / nstreams);
    printf("rss_with_streams %.1f MiB\n", rss1 / 1024.0);
    printf("threads_with_streams %ld threads\n", th1);
    printf("api_request_while_open %.1f ms\n", api_ms);
    qsort(lat, nlat, sizeof *lat, cmp_d);
    printf("change_to_all_streams_p50 %.1f ms\n", pct(lat, nlat, 0.5));
    printf("change_to_all_streams_max %.1f ms\n", worst);
    printf("all_users_changed %.1f ms\n", all);
    return 0;
}

/* --- delay (commit → SSE) mode --- */

static int mode_delay(double duration, int conns)
{
    delay_mode = true;
    for (int u = 0; u < nkeys; u++) {
        conn *s = conn_new(u, build_req("GET", "/api/events", keys[u], NULL));
        s->sse = true;
        conn_start(s);
    }
    while (streams_connected < nkeys)
        loop_once(100, NULL);
    conn **cs = calloc((size_t)conns, sizeof *cs);
    idle_q = calloc((size_t)conns, sizeof *idle_q);
    for (int i = 0; i < conns; i++)
        cs[i] = conn_new(i % nkeys, build_req(method, path, keys[i % nkeys], body));
    t_start = now_ms();
    t_end = t_start + duration * 1000;
    for (int i = 0; i < conns; i++)
        req_idle(cs[i]);
    double t_drain = 0;
    for (;;) {
        pace();
        bool any = false;
        for (int i = 0; i < conns && !any; i++)
            any = cs[i]->busy;
        double now = now_ms();
        if (!any && now >= t_end) {
            if (!t_drain) t_drain = now;
            /* the last frames: until all arrived, or 2 s without news */
            if ((long)ndlat >= n_ok ||
                now - (t_last_frame > t_drain ? t_last_frame : t_drain) > 2000)
                break;
        }
        loop_once(pace_timeout(50), req_idle);
    }
    long reqs = n_ok + n_fail;
    printf("creates %ld\nframes %zu\n", reqs, ndlat);
    printf("completed_rate %.0f per_s\n",
           t_last_frame > t_start ? ndlat * 1000.0 / (t_last_frame - t_start) : 0.0);
    qsort(dlat, ndlat, sizeof *dlat, cmp_d);
    printf("commit_to_sse_p50 %.2f ms\ncommit_to_sse_p99 %.2f ms\n", pct(dlat, ndlat, 0.5),
           pct(dlat, ndlat, 0.99));
    print_lat("create_latency");
    return n_fail ? 2 : 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs("usage: see the comment at the top of bench/loadgen.c\n", stderr);
        return 2;
    }
    const char *mode = argv[1], *keyfile = NULL;
    int conns = 16, streams = 1000, pid = 0;
    double duration = 5;
    for (int i = 2; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "--port"))
            port = atoi(v);
        else if (!strcmp(k, "--keys"))
            keyfile = v;
        else if (!strcmp(k, "--conns"))
            conns = atoi(v);
        else if (!strcmp(k, "--duration"))
            duration = atof(v);
        else if (!strcmp(k, "--rate"))
            rate = atof(v);
        else if (!strcmp(k, "--method"))
            method = v;
        else if (!strcmp(k, "--path"))
            path = v;
        else if (!strcmp(k, "--body"))
            body = v;
        else if (!strcmp(k, "--streams"))
            streams = atoi(v);
        else if (!strcmp(k, "--pid"))
            pid = atoi(v);
        else if (!strcmp(k, "--status")) {
            char *st;
            if (asprintf(&st, "\"status\":\"%s\"", v) < 0) die("asprintf");
            want_status = st;
        } else {
            fprintf(stderr, "loadgen: unknown option %s\n", k);
            return 2;
        }
    }
    if (!port || !keyfile) {
        fputs("loadgen: --port and --keys are required\n", stderr);
        return 2;
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    read_keys(keyfile);
    epfd = epoll_create1(0);
    http_parser_settings_init(&settings);
    settings.on_headers_complete = on_headers;
    settings.on_body = on_body;
    settings.on_message_complete = on_complete;
    if (!strcmp(mode, "req")) return mode_req(conns, duration);
    if (!strcmp(mode, "sse")) return mode_sse(streams, pid);
    if (!strcmp(mode, "delay")) {
        return mode_delay(duration, conns);
    }
    fprintf(stderr, "loadgen: unknown mode %s\n", mode);
    return 2;
}
