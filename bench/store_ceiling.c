/*
 * store_ceiling — what the disk allows: the rows of one create (conditional
 * debit, generation, ledger row, generation and balance events) written
 * straight to SQLite with the service's schema, pragmas (WAL,
 * synchronous=FULL) and VFS (store_sqlite_vfs.c: the WAL's writes
 * gathered), one durable commit per create and then BATCH creates
 * per commit. The service's create figure is printed as a ratio of these.
 *
 *   store_ceiling [--seconds S] [--batch N] DIR
 *
 * Prints "ceiling_single N creates/s" and "ceiling_batched N creates/s".
 */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store.h"
#include "store_sqlite.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void check(int rc, sqlite3 *db, const char *what)
{
    if (rc == SQLITE_OK || rc == SQLITE_DONE || rc == SQLITE_ROW) return;
    fprintf(stderr, "store_ceiling: %s: %s\n", what, sqlite3_errmsg(db));
    exit(1);
}

static const char *SQL[] = {
    "UPDATE users SET token_balance = token_balance - 1, total_tokens_used = total_tokens_used"
    " + 1 WHERE id = 'usr_bench' AND token_balance >= 1",
    "INSERT INTO generations (id, user_id, status, product_images, model_images, prompt,"
    " model, style, quality, aspect_ratio, guidance_scale, num_inference_steps, strength, seed,"
    " priority, tokens_used, stage, created_at) VALUES (?1, 'usr_bench', 'pending',"
    " '[\"http://x/media/upl_1.jpg\"]', '[]', 'a product photo, minimal studio', 'local-studio',"
    " 'minimal', 'auto', '1:1', 7.5, 30, 0.8, 42, 0, 1, 'pending', ?2)",
    "INSERT INTO token_transactions (user_id, kind, amount, balance_after, generation_id,"
    " created_at) VALUES ('usr_bench', 'charge', -1, (SELECT token_balance FROM users WHERE id"
    " = 'usr_bench'), ?1, ?2)",
    "INSERT INTO events (user_id, generation_id, type, data, created_at) VALUES ('usr_bench',"
    " ?1, 'generation', '{\"_id\":\"gen\",\"status\":\"pending\",\"prompt\":\"a product photo,"
    " minimal studio\",\"parameters\":{\"model\":\"local-studio\",\"style\":\"minimal\"}}', ?2)",
    "INSERT INTO events (user_id, generation_id, type, data, created_at) VALUES ('usr_bench',"
    " NULL, 'balance', '{\"tokenBalance\":1}', ?2)",
};
enum { NSQL = sizeof SQL / sizeof SQL[0] };

static long seq;

/* Runs creates in commits of `batch` for `secs`; returns creates/s. */
static double run(sqlite3 *db, sqlite3_stmt **st, int batch, double secs)
{
    double t0 = now_s(), t;
    long n = 0;
    do {
        check(sqlite3_exec(db, "BEGIN IMMEDIATE", 0, 0, 0), db, "begin");
        for (int b = 0; b < batch; b++, n++) {
            char id[32];
            snprintf(id, sizeof id, "gen_%012ld", ++seq);
            for (int i = 0; i < NSQL; i++) {
                sqlite3_bind_text(st[i], 1, id, -1, SQLITE_TRANSIENT);
                if (sqlite3_bind_parameter_count(st[i]) >= 2)
                    sqlite3_bind_int64(st[i], 2, (sqlite3_int64)(now_s() * 1000));
                check(sqlite3_step(st[i]), db, SQL[i]);
                sqlite3_reset(st[i]);
            }
        }
        check(sqlite3_exec(db, "COMMIT", 0, 0, 0), db, "commit");
        t = now_s();
    } while (t - t0 < secs);
    return n / (t - t0);
}

static int usage(void)
{
    fputs("usage: store_ceiling [--seconds S] [--batch N] DIR\n", stderr);
    return 2;
}

int main(int argc, char **argv)
{
    double secs = 3;
    int batch = 64;
    const char *dir = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
            secs = atof(argv[++i]);
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc)
            batch = atoi(argv[++i]);
        else if (argv[i][0] == '-' || dir)
            return usage(); /* not a directory named "--help" */
        else
            dir = argv[i];
    }
    if (!dir) return usage();

    char path[4096], url[4200];
    snprintf(path, sizeof path, "%s/ceiling.db", dir);
    snprintf(url, sizeof url, "sqlite:%s", path);
    /* The service's own schema: open through the store once (migrations). */
    store_t *s;
    char *err = NULL;
    store_options opt = {0};
    if (store_open(url, &opt, &s, &err) != 0) {
        fprintf(stderr, "store_ceiling: %s\n", err ? err : "cannot open");
        return 1;
    }
    store_close(s);
    sqlite3 *db;
    check(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, sq_vfs_name()), db, "open");
    check(sqlite3_exec(db,
                       "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;"
                       " PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY;"
                       " INSERT INTO users (id, email, token_balance, created_at)"
                       " VALUES ('usr_bench', 'bench@example.com', 1000000000, 0)",
                       0, 0, 0),
          db, "setup");
    sqlite3_stmt *st[NSQL];
    for (int i = 0; i < NSQL; i++)
        check(sqlite3_prepare_v2(db, SQL[i], -1, &st[i], 0), db, SQL[i]);
    double single = run(db, st, 1, secs);
    double batched = run(db, st, batch, secs);
    printf("ceiling_single %.0f creates/s\n", single);
    printf("ceiling_batched %.0f creates/s\n", batched);
    for (int i = 0; i < NSQL; i++)
        sqlite3_finalize(st[i]);
    sqlite3_close(db);
    return 0;
}
