/*
 * main — the `stylestudio` command: serve, worker, migrate, user ...,
 * --help, --version. Start-up wires the modules together in dependency
 * order; SIGTERM/SIGINT shut them down in reverse.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "api.h"
#include "auth.h"
#include "config.h"
#include "events.h"
#include "gen_service.h"
#include "http.h"
#include "ids.h"
#include "log.h"
#include "media.h"
#include "net.h"
#include "provider.h"
#include "ratelimit.h"
#include "queue.h"
#include "store.h"
#include "util.h"
#include "webhook.h"

#define DRAIN_GRACE_MS 20000
/* Handler threads. On SQLite most write requests hold their thread until
 * the group commit they joined is durable (store_sqlite.c), so their number
 * bounds how many such requests share one fsync; creates do not (their
 * reply waits, not the thread: store_defer), and for them 8, 16 and 32
 * threads measured the same (within noise, alternated in one run). 32 cost
 * nothing idle (a waiting thread holds a few pages of stack). PostgreSQL
 * commits each transaction itself over a pool of 8 connections
 * (store_pg.c), which more threads would only queue for. */
#define HANDLER_THREADS_SQLITE 32
#define HANDLER_THREADS_PG 8

static void usage(FILE *out)
{
    fputs("stylestudio " STYLESTUDIO_VERSION " — styled fashion images from product photos\n\n"
          "Usage:\n"
          "  stylestudio serve [options]      API, web studio and workers\n"
          "  stylestudio worker [options]     workers only (shared database)\n"
          "  stylestudio migrate [options]    create or upgrade the database\n"
          "  stylestudio user create --email E [--name N] [--tokens N] [--admin] [options]\n"
          "  stylestudio user grant --email E --amount N [options]\n"
          "  stylestudio user list [options]\n"
          "  stylestudio user plan --email E --plan free|pro [options]\n"
          "  stylestudio --help | --version\n\n",
          out);
    config_print_help(out);
}

/* Values of subcommand flags left over by config_load ("--email x"). */
static const char *word_flag(char **words, const char *flag)
{
    for (size_t i = 0; words[i]; i++)
        if (strcmp(words[i], flag) == 0) return words[i + 1];
    return NULL;
}

static bool word_present(char **words, const char *flag)
{
    for (size_t i = 0; words[i]; i++)
        if (strcmp(words[i], flag) == 0) return true;
    return false;
}

static int open_store(store_t **s)
{
    if (util_mkdirs(cfg.data_dir) != 0) {
        fprintf(stderr, "stylestudio: cannot create data directory %s: %s\n", cfg.data_dir,
                strerror(errno));
        return -1;
    }
    char *err = NULL;
    store_options opt = {.codec = &gen_record_codec, .pool_size = cfg.db_pool};
    if (store_open(cfg.db_url, &opt, s, &err) != STORE_OK) {
        fprintf(stderr, "stylestudio: cannot open the database: %s\n", err ? err : "unknown error");
        free(err);
        return -1;
    }
    return 0;
}

/* user create: one account with an API key, printed for the operator. */
static int user_create(store_t *s, char **words)
{
    const char *email = word_flag(words, "--email"), *name = word_flag(words, "--name");
    const char *tokens = word_flag(words, "--tokens");
    if (!email || !strchr(email, '@')) {
        fputs("stylestudio user create: --email EMAIL is required\n", stderr);
        return 2;
    }
    long long grant = tokens ? atoll(tokens) : 0;
    const char *role = word_present(words, "--admin") ? "admin" : "user";
    user_record u;
    char key_id[ID_LEN], *key = NULL;
    int rc = 1;
    int r = auth_user_create(s, email, name ? name : email, role, NULL, grant > 0 ? grant : 0, &u);
    if (r == STORE_EDUPLICATE) {
        fprintf(stderr, "stylestudio user create: %s already has an account\n", email);
    } else if (r != STORE_OK || auth_key_create(s, u.id, "CLI key", key_id, &key) != STORE_OK) {
        fputs("stylestudio user create: the database refused the user\n", stderr);
    } else {
        printf("user_id: %s\napi_key: %s\n", u.id, key);
        rc = 0;
    }
    free(key);
    return rc;
}

/* user plan: sets a user's plan (free | pro). */
static int user_plan(store_t *s, char **words)
{
    const char *email = word_flag(words, "--email"), *plan = word_flag(words, "--plan");
    user_record u;
    if (!email || !plan) {
        fputs("stylestudio user plan: --email EMAIL --plan free|pro are required\n", stderr);
        return 2;
    }
    if (strcmp(plan, "free") != 0 && strcmp(plan, "pro") != 0) {
        fprintf(stderr, "stylestudio user plan: unknown plan '%s' (expected free or pro)\n", plan);
        return 2;
    }
    if (store_user_by_email(s, email, &u, NULL) != STORE_OK) {
        fprintf(stderr, "stylestudio user plan: no user %s\n", email);
        return 1;
    }
    if (store_user_set_plan(s, u.id, plan, &u) != STORE_OK) {
        fputs("stylestudio user plan: the database refused the change\n", stderr);
        return 1;
    }
    printf("user_id: %s\nplan: %s\n", u.id, u.plan);
    return 0;
}

static int cmd_user(char **words)
{
    const char *sub = words[1];
    store_t *s;
    if (!sub) {
        fputs("stylestudio user: expected create, grant, list or plan\n", stderr);
        return 2;
    }
    if (open_store(&s) != 0) return 1;
    int rc = 1;
    if (strcmp(sub, "create") == 0) {
        rc = user_create(s, words);
    } else if (strcmp(sub, "grant") == 0) {
        const char *email = word_flag(words, "--email"), *amount = word_flag(words, "--amount");
        user_record u;
        int64_t balance;
        if (!email || !amount || atoll(amount) == 0) {
            fputs("stylestudio user grant: --email EMAIL --amount N are required\n", stderr);
            rc = 2;
        } else if (store_user_by_email(s, email, &u, NULL) != STORE_OK) {
            fprintf(stderr, "stylestudio user grant: no user %s\n", email);
        } else if (store_user_credit(s, u.id, atoll(amount),
                                     atoll(amount) > 0 ? "grant" : "adjustment", "operator grant",
                                     &balance) != STORE_OK) {
            fputs("stylestudio user grant: refused (would the balance go negative?)\n", stderr);
        } else {
            printf("user_id: %s\ntoken_balance: %lld\n", u.id, (long long)balance);
            rc = 0;
        }
    } else if (strcmp(sub, "plan") == 0) {
        rc = user_plan(s, words);
    } else if (strcmp(sub, "list") == 0) {
        user_record *list;
        size_t n;
        if (store_user_list(s, &list, &n) == STORE_OK) {
            for (size_t i = 0; i < n; i++)
                printf("%s\t%s\t%s\t%s\t%lld\n", list[i].id, list[i].email, list[i].role,
                       list[i].plan, (long long)list[i].token_balance);
            free(list);
            rc = 0;
        }
    } else {
        fprintf(stderr, "stylestudio user: unknown subcommand '%s'\n", sub);
        rc = 2;
    }
    store_close(s);
    return rc;
}

/* Blocks SIGTERM/SIGINT in every thread (threads inherit the mask), so the
 * main thread alone receives them with sigwait. */
static void block_signals(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGINT);
    pthread_sigmask(SIG_BLOCK, set, NULL);
    signal(SIGPIPE, SIG_IGN);
}

static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* Every commit the store reports (this process's own, and on PostgreSQL
 * other processes' too, relayed from NOTIFY): wake that user's streams and
 * held requests, idle workers, which may now have work, and the webhook
 * dispatcher. */
static void on_commit(int64_t last_event_id, const char *user_id, bool queue, void *ctx)
{
    auth_forget(user_id); /* NULL: a commit for many users */
    events_committed(last_event_id, user_id, ctx);
    if (queue) queue_notify(); /* a create (pending) gives the workers nothing to claim */
    webhook_notify();
}

/* events.c's view of commits by other processes on the same store. */
static int poll_last_event(void *store, int64_t *id)
{
    static uint64_t visits;                                 /* only events.c's timer thread polls */
    if (!store_shared(store, &visits)) return EVENTS_ALONE; /* nobody else commits */
    return store_events_last_id(store, id);
}

/* The web studio ships beside the binary (build/../web): use that copy
 * when the configured web root has no index.html, so `serve` works from
 * any directory. */
static void find_web_root(void)
{
    char *index = xasprintf("%s/index.html", cfg.web_root);
    bool found = access(index, R_OK) == 0;
    free(index);
    if (found) return;
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) *slash = '\0';
        char *candidate = xasprintf("%s/../web", exe),
             *cindex = xasprintf("%s/index.html", candidate);
        if (access(cindex, R_OK) == 0) {
            free(cfg.web_root);
            cfg.web_root = candidate;
            candidate = NULL;
        }
        free(candidate);
        free(cindex);
    }
    if (!found && strstr(cfg.web_root, "/../web") == NULL)
        log_warn("no web studio at %s (index.html missing): only the API is served", cfg.web_root);
}

/* serve (with_http) or worker. */
static int cmd_run(bool with_http)
{
    sigset_t set;
    block_signals(&set);
    raise_fd_limit();
    store_t *s;
    if (open_store(&s) != 0) return 1;
    int64_t last_event = 0;
    store_events_last_id(s, &last_event);
    store_set_commit_hook(s, on_commit, NULL);
    /* SQLite: other processes' commits are found by polling. PostgreSQL's
     * listener relays them through the commit hook instead. */
    bool on_sqlite = str_eq(store_backend(s), "sqlite");
    events_start(last_event, on_sqlite ? poll_last_event : NULL, s);

    uint16_t port = 0;
    char listening[300] = "";
    if (with_http) {
        find_web_root();
        char *err = NULL;
        int handlers = on_sqlite ? HANDLER_THREADS_SQLITE : HANDLER_THREADS_PG;
        /* A create on SQLite skips the hand-off to a handler thread and
         * back; on PostgreSQL its write is a network round trip. */
        if (on_sqlite) http_set_inline(api_runs_inline);
        if (http_start(cfg.listen, cfg.http_threads, handlers, api_dispatch, api_body_limit, &port,
                       &err) != 0) {
            fprintf(stderr, "stylestudio: %s\n", err);
            free(err);
            return 1;
        }
        const char *colon = strrchr(cfg.listen, ':');
        snprintf(listening, sizeof listening, "http://%.*s:%u", (int)(colon - cfg.listen),
                 cfg.listen, port);
    }
    if (net_start(cfg.allow_hosts) != 0) {
        fputs("stylestudio: cannot start outbound HTTP\n", stderr);
        return 1;
    }
    if (media_init(cfg.data_dir, cfg.public_url) != 0) {
        fprintf(stderr, "stylestudio: cannot prepare %s/media\n", cfg.data_dir);
        return 1;
    }
    gen_service_init(s);
    if (queue_start(s) != 0) {
        fputs("stylestudio: cannot start the workers\n", stderr);
        return 1;
    }
    if (webhook_start(s) != 0) {
        fputs("stylestudio: cannot start the webhook dispatcher\n", stderr);
        return 1;
    }
    int hold = provider_faults_start_delay_ms(); /* tests: widen the start-up window */
    if (hold > 0) usleep((useconds_t)hold * 1000);
    /* Until here requests are answered 503 SERVICE_UNAVAILABLE with
     * Retry-After (api.c); "listening on" is printed only once they are
     * served. */
    api_init(s);
    if (with_http) {
        printf("listening on %s\n", listening);
        fflush(stdout);
    }
    log_info("started: %s, %d workers, data %s", with_http ? "serve" : "worker", cfg.workers,
             cfg.data_dir);

    int sig = 0;
    sigwait(&set, &sig);
    log_info("signal %d: draining", sig);
    if (with_http) http_quiesce();
    queue_stop(DRAIN_GRACE_MS);
    if (with_http)
        http_stop();
    else
        events_stop();
    webhook_stop();
    net_stop();
    media_shutdown();
    store_close(s);
    log_info("stopped cleanly");
    return 0;
}

/* libvips loads its optional modules (HEIF, JPEG XL, ImageMagick,
 * OpenSlide, PDF through poppler) from $VIPSHOME/lib at start-up: 26 more
 * shared libraries, 5.3 MB of an idle server's 35 MB RSS. Inputs are JPEG,
 * PNG or WebP only (SPEC §5; media.c refuses every other loader), which
 * libvips decodes without any module, so unless the operator set VIPSHOME
 * it points where there are none. The formats that are refused anyway are
 * then not even loaded into the process. */
static void vips_without_modules(void)
{
    setenv("VIPSHOME", "/nonexistent/stylestudio-no-vips-modules", 0);
}

int main(int argc, char **argv)
{
    vips_without_modules(); /* before anything starts libvips */
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        puts("stylestudio " STYLESTUDIO_VERSION);
        return 0;
    }
    if (ids_init() != 0) {
        fputs("stylestudio: libsodium failed to initialise\n", stderr);
        return 1;
    }
    /* The flags each subcommand reads itself (word_flag / word_present). */
    static const char *const user_flags[] = {"--email",  "--name", "--tokens", "--admin",
                                             "--amount", "--plan", "--help",   NULL};
    static const char *const other_flags[] = {"--help", NULL};
    char **words = NULL, *err = NULL;
    const char *const *sub_flags = strcmp(argv[1], "user") == 0 ? user_flags : other_flags;
    if (config_load(argc, argv, 1, sub_flags, &words, &err) != 0) {
        fprintf(stderr, "stylestudio: %s (see --help)\n", err);
        free(err);
        return 2;
    }
    int level = log_parse_level(cfg.log_level);
    if (level < 0) {
        fprintf(stderr, "stylestudio: --log-level must be debug, info, warn or error\n");
        return 2;
    }
    log_min_level = level;
    if (word_present(words, "--help")) {
        usage(stdout);
        return 0;
    }

    const char *cmd = words[0] ? words[0] : "";
    bool runs = strcmp(cmd, "serve") == 0 || strcmp(cmd, "worker") == 0;
    if ((runs || strcmp(cmd, "migrate") == 0) && words[1]) {
        fprintf(stderr, "stylestudio %s: unexpected argument '%s' (see --help)\n", cmd, words[1]);
        free(words);
        return 2;
    }
    if (runs && net_check_allow_hosts(cfg.allow_hosts, &err) != 0) {
        fprintf(stderr, "stylestudio: %s\n", err);
        free(err);
        free(words);
        return 2;
    }
    if (runs) {
        provider_secrets_load(); /* OPENAI_API_KEY, REPLICATE_*: once, never logged */
        /* A catalogue with any problem stops the process here. */
        if (provider_catalog_load(cfg.models_file, &err) != 0) {
            fprintf(stderr, "stylestudio: %s\n", err);
            free(err);
            free(words);
            return 2;
        }
        /* So does a rate limit that does not parse (SPEC §4). */
        if (ratelimit_configure(cfg.rate_free, cfg.rate_pro, &err) != 0) {
            fprintf(stderr, "stylestudio: %s\n", err);
            free(err);
            free(words);
            return 2;
        }
    }
    int rc;
    if (strcmp(cmd, "serve") == 0) {
        rc = cmd_run(true);
    } else if (strcmp(cmd, "worker") == 0) {
        rc = cmd_run(false);
    } else if (strcmp(cmd, "migrate") == 0) {
        store_t *s;
        rc = open_store(&s) == 0 ? 0 : 1;
        if (rc == 0) {
            rc = store_migrate(s) == STORE_OK ? 0 : 1;
            store_close(s);
            if (rc == 0) puts("database is up to date");
        }
    } else if (strcmp(cmd, "user") == 0) {
        rc = cmd_user(words);
    } else {
        fprintf(stderr, "stylestudio: unknown command '%s' (see --help)\n", cmd);
        rc = 2;
    }
    free(words);
    return rc;
}
