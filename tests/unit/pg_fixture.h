/*
 * pg_fixture — shared by the store tests: a generation record to create,
 * the ledger invariant check (either backend), and the PostgreSQL setup:
 * each test gets
 * a fresh schema in the database named by STYLESTUDIO_TEST_PG_URL (the
 * store's URL gets options=-csearch_path=<schema>, so its migrations and
 * queries land there) and a raw libpq connection on the same schema. The
 * tests skip, saying so, when the variable is unset; CI sets it.
 * Header-only: each test binary includes it once.
 */
#ifndef SS_PG_FIXTURE_H
#define SS_PG_FIXTURE_H

#include <criterion/criterion.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "generation.h"
#include "ids.h"
#include "log.h"
#include "store.h"
#include "util.h"

#define PG_URL_ENV "STYLESTUDIO_TEST_PG_URL"

static char pg_url[2048]; /* the test's store URL (search_path = pg_schema) */
static char pg_schema[64];

#define PG_REQUIRE()                                                                               \
    do {                                                                                           \
        if (!getenv(PG_URL_ENV) || !*getenv(PG_URL_ENV))                                           \
            cr_skip_test(PG_URL_ENV " is not set: skipping the PostgreSQL store test"              \
                                    " (point it at a database, e.g."                               \
                                    " postgres:///postgres?host=/tmp/pg&user=postgres)");          \
    } while (0)

/* A raw connection on the test's schema; caller PQfinishes. */
static inline PGconn *pg_raw(void)
{
    PGconn *c = PQconnectdb(pg_url);
    cr_assert_eq(PQstatus(c), CONNECTION_OK, "connect: %s", PQerrorMessage(c));
    return c;
}

/* Runs sql on c; asserts it worked. */
static inline void pg_raw_exec(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    cr_assert(st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK, "%s: %s", sql,
              PQresultErrorMessage(r));
    PQclear(r);
}

/* The first column of the first row of sql as an integer (-1 when no row). */
static inline int64_t pg_raw_int(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s: %s", sql, PQresultErrorMessage(r));
    int64_t v = PQntuples(r) ? strtoll(PQgetvalue(r, 0, 0), NULL, 10) : -1;
    PQclear(r);
    return v;
}

static inline int64_t pg_sql_int(const char *sql)
{
    PGconn *c = pg_raw();
    int64_t v = pg_raw_int(c, sql);
    PQfinish(c);
    return v;
}

/* A generation record ready for store_gen_create (caller frees). */
static inline void fixture_gen(gen_record *g, const char *user_id, int cost, int priority,
                               int64_t at)
{
    memset(g, 0, sizeof *g);
    ids_new_at("gen", at, g->id);
    snprintf(g->user_id, sizeof g->user_id, "%s", user_id);
    g->product_images = json_pack("[s]", "https://example.com/p.jpg");
    g->model_images = json_array();
    g->prompt = xstrdup("a product photo");
    snprintf(g->params.model, sizeof g->params.model, "local-studio");
    snprintf(g->params.style, sizeof g->params.style, "realistic");
    snprintf(g->params.quality, sizeof g->params.quality, "auto");
    snprintf(g->params.aspect_ratio, sizeof g->params.aspect_ratio, "1:1");
    g->params.guidance_scale = 7.5;
    g->params.num_inference_steps = 50;
    g->params.strength = 0.8;
    g->params.seed = 42;
    g->priority = priority;
    g->tokens_used = cost;
    g->created_at = at;
}

/* SPEC §3 through sql (one integer per query, either backend): balance ==
 * SUM(amount), never negative, balance_after is the running sum, one
 * charge and at most one refund per generation, tokens_used == what its
 * rows took, totalTokensUsed == charges - refunds. */
static inline void fixture_check_ledger(int64_t (*sql)(const char *q))
{
    cr_assert_eq(sql("SELECT COUNT(*) FROM users u WHERE token_balance <>"
                     " (SELECT COALESCE(SUM(amount), 0) FROM token_transactions t"
                     "  WHERE t.user_id = u.id)"),
                 0, "balance != SUM(amount)");
    cr_assert_eq(sql("SELECT COUNT(*) FROM users WHERE token_balance < 0"), 0);
    cr_assert_eq(sql("SELECT COUNT(*) FROM (SELECT balance_after, SUM(amount) OVER"
                     " (PARTITION BY user_id ORDER BY id) AS run FROM token_transactions)"
                     " x WHERE balance_after <> run"),
                 0, "balance_after != running sum");
    cr_assert_eq(sql("SELECT COUNT(*) FROM (SELECT 1 FROM token_transactions"
                     " WHERE generation_id IS NOT NULL GROUP BY generation_id, kind"
                     " HAVING COUNT(*) > 1) dup"),
                 0, "a generation charged or refunded twice");
    cr_assert_eq(sql("SELECT COUNT(*) FROM generations g WHERE tokens_used <>"
                     " -(SELECT COALESCE(SUM(amount), 0) FROM token_transactions t"
                     "   WHERE t.generation_id = g.id)"),
                 0, "tokens_used != charge - refund");
    cr_assert_eq(sql("SELECT COUNT(*) FROM users u WHERE total_tokens_used <>"
                     " -(SELECT COALESCE(SUM(amount), 0) FROM token_transactions t"
                     "   WHERE t.user_id = u.id AND kind IN ('charge', 'refund'))"),
                 0, "totalTokensUsed != charges - refunds");
}

/* Creates the schema and sets pg_url; does nothing without the variable. */
static inline void pg_fixture_init(void)
{
    log_min_level = LOG_ERROR + 1; /* quiet: expected constraint errors */
    pg_url[0] = '\0';
    const char *base = getenv(PG_URL_ENV);
    if (!base || !*base) return;
    cr_assert_eq(ids_init(), 0);
    char id[ID_LEN];
    ids_new("t", id);
    snprintf(pg_schema, sizeof pg_schema, "ss_test_%s", id + 2);
    for (char *p = pg_schema; *p; p++)
        if (*p >= 'A' && *p <= 'Z') *p = (char)(*p - 'A' + 'a');
    PGconn *c = PQconnectdb(base);
    cr_assert_eq(PQstatus(c), CONNECTION_OK, "connect: %s", PQerrorMessage(c));
    char sql[128];
    snprintf(sql, sizeof sql, "CREATE SCHEMA %s", pg_schema);
    pg_raw_exec(c, sql);
    PQfinish(c);
    snprintf(pg_url, sizeof pg_url, "%s%coptions=-csearch_path%%3D%s", base,
             strchr(base, '?') ? '&' : '?', pg_schema);
}

static inline void pg_fixture_fini(void)
{
    const char *base = getenv(PG_URL_ENV);
    if (!base || !*base || !pg_schema[0]) return;
    PGconn *c = PQconnectdb(base);
    if (PQstatus(c) == CONNECTION_OK) {
        PQclear(PQexec(c, "SET client_min_messages = warning"));
        char sql[128];
        snprintf(sql, sizeof sql, "DROP SCHEMA IF EXISTS %s CASCADE", pg_schema);
        PQclear(PQexec(c, sql));
    }
    PQfinish(c);
    pg_schema[0] = '\0';
}

/* Opens the store on the test's schema. */
static inline store_t *pg_store_open(int pool_size)
{
    store_options opt = {.codec = &gen_record_codec, .pool_size = pool_size};
    store_t *s = NULL;
    char *err = NULL;
    int rc = store_open(pg_url, &opt, &s, &err);
    cr_assert_eq(rc, STORE_OK, "store_open: %s", err ? err : "?");
    free(err);
    return s;
}

static inline void pg_make_user(store_t *s, const char *email, int64_t grant, char id[ID_LEN])
{
    user_record u;
    memset(&u, 0, sizeof u);
    ids_new("usr", u.id);
    snprintf(u.email, sizeof u.email, "%s", email);
    snprintf(u.name, sizeof u.name, "Test %s", email);
    u.created_at = now_ms();
    cr_assert_eq(store_user_create(s, &u, NULL, grant), STORE_OK);
    memcpy(id, u.id, ID_LEN);
}

#endif
