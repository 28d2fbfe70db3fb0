/*
 * store_sqlite_tpl — templates (saved create bodies, SPEC §4) on SQLite
 * (store.h). The body is kept as the JSON text the caller hands in.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_sqlite.h"
#include "util.h"

#define TPL_COLS "id, user_id, name, body, created_at, updated_at"

static void tpl_from_row(sqlite3_stmt *st, store_template *t)
{
    memset(t, 0, sizeof *t);
    sq_col_copy(st, 0, t->id, sizeof t->id);
    sq_col_copy(st, 1, t->user_id, sizeof t->user_id);
    t->name = sq_col_strdup(st, 2);
    t->body = sq_col_strdup(st, 3);
    if (!t->name) t->name = xstrdup("");
    if (!t->body) t->body = xstrdup("{}");
    t->created_at = sq_col_int(st, 4);
    t->updated_at = sq_col_int(st, 5);
}

/* Reads one row of a query selecting TPL_COLS into *out (may be NULL). */
static int tpl_one(sqlite3_stmt *st, store_template *out)
{
    int rc = st ? sq_step(st) : STORE_ERR;
    if (rc == SQLITE_ROW && out) tpl_from_row(st, out);
    sq_done(st);
    return rc == SQLITE_ROW ? STORE_OK : rc == SQLITE_DONE ? STORE_ENOTFOUND : STORE_ERR;
}

int sq_template_create(store_t *s, const store_template *t, int max_per_user)
{
    sq_tx tx;
    if (sq_begin(s, &tx, true) != STORE_OK) return STORE_ERR;
    int64_t have = 0;
    int rc =
        sq_int(&tx, &have, "SELECT COUNT(*) FROM templates WHERE user_id = ?", "s", t->user_id);
    if (rc == STORE_OK && max_per_user > 0 && have >= max_per_user) rc = STORE_ECONFLICT;
    if (rc == STORE_OK)
        rc = sq_exec(&tx, "INSERT INTO templates (" TPL_COLS ") VALUES (?, ?, ?, ?, ?, ?)",
                     "ssssII", t->id, t->user_id, t->name, t->body, t->created_at, t->updated_at);
    if (rc < 0) {
        sq_rollback(&tx);
        return rc;
    }
    return sq_commit(&tx);
}

int sq_template_get(store_t *s, const char *template_id, store_template *out)
{
    sq_tx tx;
    if (sq_begin(s, &tx, false) != STORE_OK) return STORE_ERR;
    int rc = tpl_one(
        sq_query(&tx, "SELECT " TPL_COLS " FROM templates WHERE id = ?", "s", template_id), out);
    sq_rollback(&tx);
    return rc;
}

int sq_template_list(store_t *s, const char *user_id, const char *cursor, int limit,
                     store_template **out, size_t *n, char **next_cursor)
{
    if (limit <= 0) limit = 20;
    if (limit > 1000) limit = 1000;
    sq_tx tx;
    if (sq_begin(s, &tx, false) != STORE_OK) return STORE_ERR;
    sqlite3_stmt *st = sq_query(&tx,
                                "SELECT " TPL_COLS " FROM templates WHERE user_id = ? AND id < ?"
                                " ORDER BY id DESC LIMIT ?",
                                "ssi", user_id, cursor && *cursor ? cursor : "~", limit + 1);
    if (!st) {
        sq_rollback(&tx);
        return STORE_ERR;
    }
    store_template *rows = xcalloc((size_t)limit, sizeof *rows);
    size_t cnt = 0;
    bool more = false;
    int rc;
    while ((rc = sq_step(st)) == SQLITE_ROW) {
        if (cnt == (size_t)limit) {
            more = true;
            continue;
        }
        tpl_from_row(st, &rows[cnt++]);
    }
    sq_done(st);
    sq_rollback(&tx);
    if (rc != SQLITE_DONE) {
        store_templates_free(rows, cnt);
        return STORE_ERR;
    }
    *out = rows;
    *n = cnt;
    *next_cursor = more && cnt ? xstrdup(rows[cnt - 1].id) : NULL;
    return STORE_OK;
}

int sq_template_update(store_t *s, const char *user_id, const char *template_id, const char *name,
                       const char *body, int64_t now, store_template *out)
{
    sq_tx tx;
    if (sq_begin(s, &tx, true) != STORE_OK) return STORE_ERR;
    int rc = sq_exec(&tx,
                     "UPDATE templates SET name = ?, body = ?, updated_at = ?"
                     " WHERE id = ? AND user_id = ?",
                     "ssIss", name, body, now, template_id, user_id);
    if (rc == 0) rc = STORE_ENOTFOUND;
    if (rc > 0 && out)
        rc = tpl_one(
            sq_query(&tx, "SELECT " TPL_COLS " FROM templates WHERE id = ?", "s", template_id),
            out);
    if (rc < 0) {
        sq_rollback(&tx);
        return rc;
    }
    rc = sq_commit(&tx);
    if (rc != STORE_OK && out) store_template_clear(out);
    return rc;
}

int sq_template_delete(store_t *s, const char *user_id, const char *template_id)
{
    sq_tx tx;
    if (sq_begin(s, &tx, true) != STORE_OK) return STORE_ERR;
    int rc = sq_exec(&tx, "DELETE FROM templates WHERE id = ? AND user_id = ?", "ss", template_id,
                     user_id);
    if (rc <= 0) {
        sq_rollback(&tx);
        return rc == 0 ? STORE_ENOTFOUND : rc;
    }
    return sq_commit(&tx);
}
