/*
 * store — picks the store implementation from the database URL:
 *   sqlite:PATH  (also sqlite://PATH)  → store_sqlite.c
 *   postgres://… / postgresql://…      → not supported yet (store_pg.c)
 * Everything else in store.h is implemented by the chosen store.
 */
#include "store.h"

#include <stdlib.h>

#include "store_sqlite.h"
#include "util.h"

int store_open(const char *url, store_t **out, char **err)
{
    *out = NULL;
    if (err) *err = NULL;
    if (!url || !*url) {
        if (err) *err = xstrdup("no database URL given (expected sqlite:PATH)");
        return STORE_ERR;
    }
    if (str_has_prefix(url, "sqlite:")) {
        const char *path = url + 7;
        if (str_has_prefix(path, "//")) path += 2; /* sqlite:///abs/file.db */
        return store_sqlite_open(path, out, err);
    }
    if (str_has_prefix(url, "postgres://") || str_has_prefix(url, "postgresql://")) {
        /* The URL is not echoed: it may carry a password. */
        if (err)
            *err = xstrdup("the PostgreSQL store is not supported yet in this build;"
                           " use --db sqlite:PATH");
        return STORE_ERR;
    }
    if (err) *err = xstrdup("unsupported database URL: expected sqlite:PATH or postgres://...");
    return STORE_ERR;
}
