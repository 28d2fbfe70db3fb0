/*
 * store_sqlite — private header shared by the SQLite store's files:
 *   store_sqlite.c       open, migrations, connection pool, transactions,
 *                        statement helpers, events
 *   store_sqlite_user.c  users, API keys, sessions, the ledger
 *   store_sqlite_gen.c   generations: API side, worker side, sweep
 * Nothing outside these files includes it; everyone else uses store.h.
 */
#ifndef SS_STORE_SQLITE_H
#define SS_STORE_SQLITE_H

#include <pthread.h>
#include <sqlite3.h>

#include "store.h"

/* Opens the database at path (the part after "sqlite:"), applies the
 * pragmas and runs the migrations. store.c dispatches here. */
int store_sqlite_open(const char *path, store_t **out, char **err);

/* One pooled connection with its prepared-statement cache. */
typedef struct sq_conn sq_conn;

/* A transaction on one pooled connection. Write transactions hold the
 * store's writer mutex and run under BEGIN IMMEDIATE; read transactions are
 * plain BEGIN (one consistent WAL snapshot). */
typedef struct sq_tx {
    store_t *s;
    sq_conn *c;
    bool write;
    int64_t last_event;      /* newest event id written, for the commit hook */
    char event_user[ID_LEN]; /* whose events; "" when none */
    bool event_users_many;   /* events of more than one user */
} sq_tx;

int sq_begin(store_t *s, sq_tx *t, bool write);
/* COMMIT, give the connection back, then call the commit hook when events
 * were written. On failure the transaction is rolled back. */
int sq_commit(sq_tx *t);
void sq_rollback(sq_tx *t);

/* Prepares (once per connection; sql must be a string literal, it is the
 * cache key) and binds parameters from fmt, one letter each:
 *   s  const char *  (NULL binds NULL)
 *   i  int
 *   I  int64_t
 *   Z  int64_t, 0 binds NULL (optional times)
 *   d  double
 * Returns NULL on error (logged). The statement must be given back with
 * sq_done (sqlite3_reset) before the connection is reused. */
sqlite3_stmt *sq_query(sq_tx *t, const char *sql, const char *fmt, ...);
/* sqlite3_step with logging: SQLITE_ROW, SQLITE_DONE, or a STORE_E* code
 * (constraint violations map to STORE_EDUPLICATE / STORE_ENOTFOUND). */
int sq_step(sqlite3_stmt *st);
void sq_done(sqlite3_stmt *st);
/* Runs one statement to completion: the number of rows changed (>= 0) or a
 * STORE_E* code. */
int sq_exec(sq_tx *t, const char *sql, const char *fmt, ...);
/* Runs a query returning one integer: 0 and *out set, STORE_ENOTFOUND when
 * there is no row, or STORE_ERR. A NULL value reads as 0. */
int sq_int(sq_tx *t, int64_t *out, const char *sql, const char *fmt, ...);

/* Column helpers: copies text into a fixed buffer ("" for NULL), or a new
 * string (NULL for NULL). */
void sq_col_copy(sqlite3_stmt *st, int col, char *dst, size_t size);
char *sq_col_strdup(sqlite3_stmt *st, int col);
int64_t sq_col_int(sqlite3_stmt *st, int col);

/* Appends an event row; remembers its id in t->last_event. data is JSON. */
int sq_event(sq_tx *t, const char *user_id, const char *gen_id, const char *type, const char *data,
             int64_t now);
/* A "balance" event with the user's current balance. */
int sq_balance_event(sq_tx *t, const char *user_id, int64_t now);
/* A ledger row; balance_after is read from users after the balance update
 * the caller has already made in the same transaction. */
int sq_ledger_add(sq_tx *t, const char *user_id, const char *kind, int64_t amount,
                  const char *gen_id, const char *reason, int64_t now);

/* Copies src into dst[size], truncating, always NUL-terminated. */
void sq_copy(char *dst, size_t size, const char *src);

#endif
