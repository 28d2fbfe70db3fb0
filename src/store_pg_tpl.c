/*
 * store_pg_tpl — templates (saved create bodies, SPEC §4) on PostgreSQL
 * (store.h). The body is kept as the JSON text the caller hands in. The
 * per-user cap holds under concurrent creates: the insert runs with the
 * user's row locked (FOR UPDATE), so two creates of one user count in turn.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_pg.h"
#include "util.h"

#define TPL_COLS "id, user_id, name, body, created_at, updated_at"

static void tpl_from_row(const PGresult *r, int row, store_template *t)
{
    memset(t, 0, sizeof *t);
    pg_col_copy(r, row, 0, t->id, sizeof t->id);
    pg_col_copy(r, row, 1, t->user_id, sizeof t->user_id);
    t->name = pg_col_strdup(r, row, 2);
    t->body = pg_col_strdup(r, row, 3);
    if (!t->name) t->name = xstrdup("");
    if (!t->body) t->body = xstrdup("{}");
    t->created_at = pg_col_int(r, row, 4);
    t->updated_at = pg_col_int(r, row, 5);
}

/* The first row of r into *out (may be NULL), then frees r. */
static int tpl_result(PGresult *r, store_template *out)
{
    int rc = PQntuples(r) >= 1 ? STORE_OK : STORE_ENOTFOUND;
    if (rc == STORE_OK && out) tpl_from_row(r, 0, out);
    PQclear(r);
    return rc;
}

int store_pg_template_create(store_t *s, const store_template *t, int max_per_user)
{
    pg_tx tx;
    int rc = pg_begin(s, &tx);
    if (rc != STORE_OK) return rc;
    int64_t have = 0;
    rc = pg_int(&tx, &have, "SELECT 1 FROM users WHERE id = $1 FOR UPDATE", "s", t->user_id);
    if (rc == STORE_OK)
        rc = pg_int(&tx, &have, "SELECT COUNT(*) FROM templates WHERE user_id = $1", "s",
                    t->user_id);
    if (rc == STORE_OK && max_per_user > 0 && have >= max_per_user) rc = STORE_ECONFLICT;
    if (rc == STORE_OK)
        rc = pg_exec(&tx, "INSERT INTO templates (" TPL_COLS ") VALUES ($1, $2, $3, $4, $5, $6)",
                     "ssssII", t->id, t->user_id, t->name, t->body, t->created_at, t->updated_at);
    if (rc < 0) {
        pg_rollback(&tx);
        return rc;
    }
    return pg_commit(&tx);
}

int store_pg_template_get(store_t *s, const char *template_id, store_template *out)
{
    PGresult *r = NULL;
    int rc = pg_query1(s, &r, "SELECT " TPL_COLS " FROM templates WHERE id = $1", "s", template_id);
    return rc == STORE_OK ? tpl_result(r, out) : rc;
}

int store_pg_template_list(store_t *s, const char *user_id, const char *cursor, int limit,
                           store_template **out, size_t *n, char **next_cursor)
{
    if (limit <= 0) limit = 20;
    if (limit > 1000) limit = 1000;
    PGresult *r = NULL;
    int rc = pg_query1(s, &r,
                       "SELECT " TPL_COLS " FROM templates"
                       " WHERE user_id = $1 AND ($2::text IS NULL OR id < $2)"
                       " ORDER BY id DESC LIMIT $3",
                       "ssi", user_id, cursor && *cursor ? cursor : NULL, limit + 1);
    if (rc != STORE_OK) return rc;
    int rows = PQntuples(r);
    size_t cnt = rows > limit ? (size_t)limit : (size_t)rows;
    store_template *arr = cnt ? xcalloc(cnt, sizeof *arr) : NULL;
    for (size_t i = 0; i < cnt; i++)
        tpl_from_row(r, (int)i, &arr[i]);
    PQclear(r);
    *out = arr;
    *n = cnt;
    *next_cursor = rows > limit && cnt ? xstrdup(arr[cnt - 1].id) : NULL;
    return STORE_OK;
}

int store_pg_template_update(store_t *s, const char *user_id, const char *template_id,
                             const char *name, const char *body, int64_t now, store_template *out)
{
    PGresult *r = NULL;
    int rc = pg_query1(s, &r,
                       "UPDATE templates SET name = $3, body = $4, updated_at = $5"
                       " WHERE id = $1 AND user_id = $2 RETURNING " TPL_COLS,
                       "ssssI", template_id, user_id, name, body, now);
    return rc == STORE_OK ? tpl_result(r, out) : rc;
}

int store_pg_template_delete(store_t *s, const char *user_id, const char *template_id)
{
    int rc = pg_exec1(s, "DELETE FROM templates WHERE id = $1 AND user_id = $2", "ss", template_id,
                      user_id);
    return rc < 0 ? rc : rc == 0 ? STORE_ENOTFOUND : STORE_OK;
}
