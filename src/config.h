/*
 * config — every setting, from one option table (config.c): flag, then the
 * STYLESTUDIO_* environment variable, then the default. `--help` prints the
 * table; tests check that the README documents each option.
 */
#ifndef SS_CONFIG_H
#define SS_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define STYLESTUDIO_VERSION "0.1.0"

typedef struct config {
    char *listen; /* HOST:PORT */
    char *data_dir;
    char *db_url;
    int db_pool; /* connections per process (PostgreSQL) */
    int workers;
    char *public_url;        /* no trailing slash */
    bool public_url_derived; /* not set by the operator: follows the bound port */
    char *allow_hosts;
    int signup_tokens;
    int pending_ttl; /* seconds */
    int max_retries;
    char *rate_free; /* SPEC §4 rate limits, N/s|m|h[,burst] or 0 (ratelimit.c parses them) */
    char *rate_pro;
    int user_running_cap; /* SPEC §4 Priority: running per user while others wait */
    int queue_max;        /* queued generations before QUEUE_FULL */
    char *web_root;
    char *log_level;
    int64_t max_body; /* bytes, JSON bodies */
    int lease_seconds;
    int retry_base_ms;
    int webhook_retry_base_ms; /* first webhook retry delay; the others scale with it */
    int events_keep_hours;     /* events retention */
    int http_threads;
    int max_connections;             /* HTTP connections in all */
    int max_connections_per_address; /* 0: no limit */
    int max_streams_per_user;        /* open SSE streams per user; 0: no limit */
    int header_timeout;              /* seconds to send the headers (slow clients) */
    int body_timeout;                /* seconds to send the body */
    int hash_concurrency;            /* Argon2id hashes at once (auth.c) */
    int login_failures_account;      /* failed sign-ins per email and address per window; 0: off */
    int login_failures_address;      /* ... per client address, any email */
    int login_failures_email;        /* ... per email, any address */
    int login_window;                /* seconds */
    char *openai_base_url;           /* SPEC §7 */
    char *replicate_base_url;
    int provider_timeout;    /* seconds per provider call */
    char *models_file;       /* --models: "" for the built-in models.json */
    bool enable_bench_model; /* bench-instant exists (bench/ only) */
    char *test_faults;       /* failure seam for tests; see queue.c */
} config;

/* The settings in force; filled by config_load, read-only afterwards. */
extern config cfg;

/* Parses argv[first..argc) as --name value / --name=value pairs, then the
 * environment, then defaults, into cfg. sub_flags (NULL-terminated, "--x",
 * may be NULL) are the subcommand's own flags: they and their values are
 * left in *rest with the non-option words (argv order, NULL-terminated,
 * caller frees the array only). Any other unknown flag, a value out of its
 * range or a malformed --listen is an error naming the option (and the
 * nearest known one): *err set (caller frees), -1. Otherwise 0. */
int config_load(int argc, char **argv, int first, const char *const *sub_flags, char ***rest,
                char **err);
/* Prints every option with its env var, default and help. */
void config_print_help(FILE *out);

#endif
