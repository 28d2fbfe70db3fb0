/*
 * config — the option table. Adding a setting means one row here and one
 * field in struct config; --help and the README check follow from the row.
 */
#include "config.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

config cfg;

enum opt_kind { OPT_STR, OPT_INT, OPT_INT64, OPT_BOOL }; /* a bool flag needs no value */

typedef struct option_row {
    const char *flag; /* without the leading -- */
    const char *env;
    const char *def; /* NULL: derived at load time (see derive_defaults) */
    enum opt_kind kind;
    size_t offset;
    const char *help;
    long long min, max; /* integers: the accepted range (both 0: 0 to 10^9, or any int64) */
} option_row;

#define O(field) offsetof(config, field)

static const option_row options[] = {
    {"listen", "STYLESTUDIO_LISTEN", "127.0.0.1:8080", OPT_STR, O(listen),
     "HOST:PORT to listen on (port 0 = any free port, printed at start)", 0, 0},
    {"data", "STYLESTUDIO_DATA", "./data", OPT_STR, O(data_dir), "data directory (database, media)",
     0, 0},
    {"db", "STYLESTUDIO_DB", NULL, OPT_STR, O(db_url),
     "database URL (default sqlite:DATA/stylestudio.db; or postgres://...)", 0, 0},
    {"db-pool", "STYLESTUDIO_DB_POOL", "8", OPT_INT, O(db_pool),
     "database connections per process (PostgreSQL; SQLite uses its own pool)", 1, 1000},
    {"workers", "STYLESTUDIO_WORKERS", NULL, OPT_INT, O(workers),
     "generation worker threads (default: number of cores; 0: none, API only)", 0, 1024},
    {"public-url", "STYLESTUDIO_PUBLIC_URL", NULL, OPT_STR, O(public_url),
     "base of /media URLs (default http://LISTEN)", 0, 0},
    {"allow-hosts", "STYLESTUDIO_ALLOW_HOSTS", "", OPT_STR, O(allow_hosts),
     "hosts/CIDRs fetchable despite the private-address rule, comma-separated", 0, 0},
    {"signup-tokens", "STYLESTUDIO_SIGNUP_TOKENS", "10", OPT_INT, O(signup_tokens),
     "free tokens granted at sign-up", 0, 0},
    {"pending-ttl", "STYLESTUDIO_PENDING_TTL", "1800", OPT_INT, O(pending_ttl),
     "seconds before a never-started pending generation expires (refunded)", 1, 1000000000},
    {"max-retries", "STYLESTUDIO_MAX_RETRIES", "3", OPT_INT, O(max_retries),
     "retries of a transient failure before a generation fails", 0, 1000},
    {"rate-free", "STYLESTUDIO_RATE_FREE", "30/h,10", OPT_STR, O(rate_free),
     "generations a free user may create: N/s, N/m or N/h, optional ,burst (default 10); 0: no"
     " limit",
     0, 0},
    {"rate-pro", "STYLESTUDIO_RATE_PRO", "300/h,30", OPT_STR, O(rate_pro),
     "generations a pro user may create: N/s, N/m or N/h, optional ,burst (default 30); 0: no"
     " limit",
     0, 0},
    {"user-running-cap", "STYLESTUDIO_USER_RUNNING_CAP", "2", OPT_INT, O(user_running_cap),
     "generations one user may have running while others wait (0: no cap)", 0, 0},
    {"queue-max", "STYLESTUDIO_QUEUE_MAX", "10000", OPT_INT, O(queue_max),
     "queued generations past which anything that would queue more answers QUEUE_FULL", 0, 0},
    {"web-root", "STYLESTUDIO_WEB_ROOT", "./web", OPT_STR, O(web_root),
     "directory of the web studio served at /", 0, 0},
    {"log-level", "STYLESTUDIO_LOG_LEVEL", "info", OPT_STR, O(log_level),
     "debug | info | warn | error", 0, 0},
    {"max-body", "STYLESTUDIO_MAX_BODY", "1048576", OPT_INT64, O(max_body),
     "largest JSON request body in bytes (uploads: 10 MB)", 1, 64LL * 1024 * 1024},
    {"lease-seconds", "STYLESTUDIO_LEASE_SECONDS", "30", OPT_INT, O(lease_seconds),
     "worker lease on a processing generation; renewed while it runs", 1, 86400},
    {"retry-base-ms", "STYLESTUDIO_RETRY_BASE_MS", "2000", OPT_INT, O(retry_base_ms),
     "base delay of the exponential retry backoff, in ms", 1, 1000000000},
    {"webhook-retry-base-ms", "STYLESTUDIO_WEBHOOK_RETRY_BASE_MS", "5000", OPT_INT,
     O(webhook_retry_base_ms),
     "first webhook retry delay in ms; the schedule 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h"
     " scales with it",
     1, 1000000000},
    {"events-keep-hours", "STYLESTUDIO_EVENTS_KEEP_HOURS", "72", OPT_INT, O(events_keep_hours),
     "hours events are kept (SSE replay; 0: forever); none is deleted before every webhook has"
     " seen it",
     0, 0},
    {"hash-concurrency", "STYLESTUDIO_HASH_CONCURRENCY", NULL, OPT_INT, O(hash_concurrency),
     "password hashes (Argon2id, 64 MB each) computed at once, more wait in a bounded queue"
     " (default: half the cores, at least 1)",
     1, 64},
    {"login-failures-account", "STYLESTUDIO_LOGIN_FAILURES_ACCOUNT", "5", OPT_INT,
     O(login_failures_account),
     "failed sign-ins per email from one client address per --login-window before"
     " RATE_LIMIT_EXCEEDED (0: no limit)",
     0, 1000000},
    {"login-failures-email", "STYLESTUDIO_LOGIN_FAILURES_EMAIL", "100", OPT_INT,
     O(login_failures_email),
     "failed sign-ins per email from all addresses per --login-window before RATE_LIMIT_EXCEEDED"
     " (0: no limit)",
     0, 1000000},
    {"login-failures-address", "STYLESTUDIO_LOGIN_FAILURES_ADDRESS", "50", OPT_INT,
     O(login_failures_address),
     "failed sign-ins per client address per --login-window before RATE_LIMIT_EXCEEDED (0: no"
     " limit)",
     0, 1000000},
    {"login-window", "STYLESTUDIO_LOGIN_WINDOW", "900", OPT_INT, O(login_window),
     "seconds over which failed sign-ins are counted", 1, 86400},
    {"max-connections", "STYLESTUDIO_MAX_CONNECTIONS", "4000", OPT_INT, O(max_connections),
     "open HTTP connections in all; event streams may take at most 3/4 of them", 16, 1000000},
    {"max-connections-per-address", "STYLESTUDIO_MAX_CONNECTIONS_PER_ADDRESS", "256", OPT_INT,
     O(max_connections_per_address),
     "open HTTP connections from one client address (0: no limit; raise it behind a proxy)", 0,
     1000000},
    {"max-streams-per-user", "STYLESTUDIO_MAX_STREAMS_PER_USER", "32", OPT_INT,
     O(max_streams_per_user),
     "open event streams (SSE) per user; past it RATE_LIMIT_EXCEEDED (0: no limit)", 0, 1000000},
    {"header-timeout", "STYLESTUDIO_HEADER_TIMEOUT", "30", OPT_INT, O(header_timeout),
     "seconds a client has to send a request's headers (also the keep-alive idle time)", 1, 3600},
    {"body-timeout", "STYLESTUDIO_BODY_TIMEOUT", "120", OPT_INT, O(body_timeout),
     "seconds a client has to send a request's body once its headers are in", 1, 86400},
    {"http-threads", "STYLESTUDIO_HTTP_THREADS", "4", OPT_INT, O(http_threads),
     "HTTP event-loop threads", 1, 256},
    {"openai-base-url", "STYLESTUDIO_OPENAI_BASE_URL", "https://api.openai.com", OPT_STR,
     O(openai_base_url), "OpenAI API base URL (tests point it at a local fake)", 0, 0},
    {"replicate-base-url", "STYLESTUDIO_REPLICATE_BASE_URL", "https://api.replicate.com", OPT_STR,
     O(replicate_base_url), "Replicate API base URL (tests point it at a local fake)", 0, 0},
    {"provider-timeout", "STYLESTUDIO_PROVIDER_TIMEOUT", "300", OPT_INT, O(provider_timeout),
     "seconds one provider call may take before it counts as a transient failure", 1, 86400},
    {"models", "STYLESTUDIO_MODELS", "", OPT_STR, O(models_file),
     "model catalogue JSON replacing the built-in models.json (format: README)", 0, 0},
    {"enable-bench-model", "STYLESTUDIO_ENABLE_BENCH_MODEL", "0", OPT_BOOL, O(enable_bench_model),
     "benchmarks only: add the unlisted model bench-instant (returns a tiny image at once)", 0, 0},
    {"test-faults", "STYLESTUDIO_TEST_FAULTS", "", OPT_STR, O(test_faults),
     "testing only: inject provider faults, e.g. transient=2,delay_ms=500", 0, 0},
};

static const option_row *find_option(const char *flag, size_t len)
{
    for (size_t i = 0; i < ARRAY_LEN(options); i++)
        if (strlen(options[i].flag) == len && strncmp(options[i].flag, flag, len) == 0)
            return &options[i];
    return NULL;
}

/* Edit distance of two short strings (for "did you mean"). */
static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), row[64];
    if (la >= 63 || lb >= 63) return 64;
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j], best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best) best = up + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            diag = up;
            row[j] = best;
        }
    }
    return row[lb];
}

/* The known flag nearest to name (options, then the subcommand's), or NULL
 * when none is close. */
static const char *nearest_flag(const char *name, const char *const *sub_flags)
{
    const char *best = NULL;
    size_t best_d = (size_t)-1, n = strlen(name);
    size_t limit = n / 3 > 2 ? n / 3 : 2;
    for (size_t i = 0; i < ARRAY_LEN(options) + 32; i++) {
        const char *cand = i < ARRAY_LEN(options) ? options[i].flag
                           : sub_flags            ? sub_flags[i - ARRAY_LEN(options)]
                                                  : NULL;
        if (!cand) break;
        if (str_has_prefix(cand, "--")) cand += 2;
        size_t d = edit_distance(name, cand);
        if (d < best_d) {
            best_d = d;
            best = cand;
        }
    }
    return best_d <= limit ? best : NULL;
}

static bool sub_flag_known(const char *name, size_t len, const char *const *sub_flags)
{
    for (size_t i = 0; sub_flags && sub_flags[i]; i++)
        if (strlen(sub_flags[i]) == len + 2 && strncmp(sub_flags[i] + 2, name, len) == 0)
            return true;
    return false;
}

/* HOST:PORT with a port from 0 to 65535. */
static int check_listen(const char *v, char **err)
{
    const char *colon = strrchr(v, ':');
    char *end;
    long port = colon && colon[1] ? strtol(colon + 1, &end, 10) : -1;
    if (!colon || colon == v || port < 0 || *end || port > 65535 ||
        (colon[1] < '0' || colon[1] > '9')) {
        *err = xasprintf("--listen: expected HOST:PORT with a port from 0 to 65535, got \"%s\"", v);
        return -1;
    }
    return 0;
}

static int set_option(const option_row *o, const char *value, char **err)
{
    char *field = (char *)&cfg + o->offset;
    if (o->kind == OPT_STR) {
        if (o->offset == O(listen) && check_listen(value, err) != 0) return -1;
        free(*(char **)field);
        *(char **)field = xstrdup(value);
        return 0;
    }
    if (o->kind == OPT_BOOL) {
        bool on = str_eq(value, "1") || str_eq(value, "true") || str_eq(value, "yes");
        if (!on && !str_eq(value, "0") && !str_eq(value, "false") && !str_eq(value, "no")) {
            *err = xasprintf("--%s: expected 1 or 0, got \"%s\"", o->flag, value);
            return -1;
        }
        *(bool *)field = on;
        return 0;
    }
    char *end;
    long long v = strtoll(value, &end, 10);
    if (*value == '\0' || *end != '\0' || v < 0) {
        *err = xasprintf("--%s: expected a non-negative integer, got \"%s\"", o->flag, value);
        return -1;
    }
    long long lo = o->min, hi = o->max;
    if (!lo && !hi) hi = o->kind == OPT_INT ? 1000000000 : INT64_MAX;
    if (v < lo || v > hi) {
        *err = xasprintf("--%s: %s is out of range (%lld to %lld)", o->flag, value, lo, hi);
        return -1;
    }
    if (o->kind == OPT_INT) {
        *(int *)field = (int)v;
    } else {
        *(int64_t *)field = v;
    }
    return 0;
}

static void derive_defaults(void)
{
    if (!cfg.db_url) cfg.db_url = xasprintf("sqlite:%s/stylestudio.db", cfg.data_dir);
    if (cfg.workers < 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        cfg.workers = n > 0 ? (int)n : 2;
    }
    cfg.public_url_derived = !cfg.public_url;
    if (!cfg.public_url) cfg.public_url = xasprintf("http://%s", cfg.listen);
    size_t n = strlen(cfg.public_url);
    while (n > 0 && cfg.public_url[n - 1] == '/')
        cfg.public_url[--n] = '\0';
    if (cfg.http_threads <= 0) cfg.http_threads = 1;
    if (cfg.hash_concurrency <= 0) { /* not set: leave cores for everything else */
        long n = sysconf(_SC_NPROCESSORS_ONLN) / 2;
        cfg.hash_concurrency = n < 1 ? 1 : n > 8 ? 8 : (int)n;
    }
}

int config_load(int argc, char **argv, int first, const char *const *sub_flags, char ***rest,
                char **err)
{
    bool seen[ARRAY_LEN(options)] = {0};
    cfg.workers = -1; /* "not set": derived from the core count; 0 is a real choice */
    char **words = xcalloc((size_t)argc + 1, sizeof *words);
    size_t nwords = 0;

    for (int i = first; i < argc; i++) {
        const char *a = argv[i];
        if (!str_has_prefix(a, "--")) {
            words[nwords++] = argv[i];
            continue;
        }
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        const option_row *o = find_option(name, len);
        if (!o && !sub_flag_known(name, len, sub_flags)) {
            char *bare = xstrndup(name, len);
            const char *near = nearest_flag(bare, sub_flags);
            *err = near ? xasprintf("unknown option --%s (did you mean --%s?)", bare, near)
                        : xasprintf("unknown option --%s", bare);
            free(bare);
            goto fail;
        }
        if (!o) {
            /* Leave subcommand flags (e.g. --email) to the subcommand. */
            words[nwords++] = argv[i];
            if (!eq && i + 1 < argc && !str_has_prefix(argv[i + 1], "--"))
                words[nwords++] = argv[++i];
            continue;
        }
        const char *value = eq                    ? eq + 1
                            : o->kind == OPT_BOOL ? "1"
                            : i + 1 < argc        ? argv[++i]
                                                  : NULL;
        if (!value) {
            *err = xasprintf("--%s needs a value", o->flag);
            goto fail;
        }
        if (set_option(o, value, err) != 0) goto fail;
        seen[o - options] = true;
    }
    for (size_t i = 0; i < ARRAY_LEN(options); i++) {
        if (seen[i]) continue;
        const char *v = getenv(options[i].env);
        if (!v) v = options[i].def;
        if (v && set_option(&options[i], v, err) != 0) goto fail;
    }
    derive_defaults();
    *rest = words;
    return 0;
fail:
    free(words);
    return -1;
}

void config_print_help(FILE *out)
{
    fputs("Options (flag, then environment variable, then default):\n", out);
    for (size_t i = 0; i < ARRAY_LEN(options); i++) {
        const option_row *o = &options[i];
        fprintf(out, "  --%-15s %-27s %s\n", o->flag, o->env, o->help);
        if (o->def) fprintf(out, "  %46s default: %s\n", "", *o->def ? o->def : "(empty)");
    }
}
