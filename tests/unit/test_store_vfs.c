/*
 * test_store_vfs — the VFS that gathers the WAL's writes
 * (store_sqlite_vfs.c). A connection through it writes; a second
 * connection through SQLite's own VFS reads what it committed at once and
 * finds the database intact: with synchronous NORMAL (no sync tells the VFS
 * a commit is done), with FULL, with commits of a single frame and
 * transactions far larger than one
 * gathered write, with pages spilled and written again inside one
 * transaction (SQLite then rewrites the frame headers' checksums in
 * place), and after the writer is killed mid-transaction.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "store_sqlite.h"

static char dir[] = "/tmp/ss-vfs-XXXXXX";
static char path[64];
static sqlite3 *writer, *reader;

static void exec(sqlite3 *db, const char *sql)
{
    char *err = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &err);
    cr_assert_eq(rc, SQLITE_OK, "%s: %s", sql, err ? err : sqlite3_errstr(rc));
}

static long long one(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st;
    cr_assert_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK, "%s", sqlite3_errmsg(db));
    cr_assert_eq(sqlite3_step(st), SQLITE_ROW, "%s: %s", sql, sqlite3_errmsg(db));
    long long v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

static void intact(sqlite3 *db)
{
    sqlite3_stmt *st;
    cr_assert_eq(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL), SQLITE_OK);
    cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
    cr_assert_str_eq((const char *)sqlite3_column_text(st, 0), "ok");
    sqlite3_finalize(st);
}

static sqlite3 *open_db(const char *vfs)
{
    sqlite3 *db = NULL;
    cr_assert_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, vfs),
                 SQLITE_OK);
    exec(db, "PRAGMA journal_mode = WAL");
    return db;
}

static void setup(void)
{
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/t.db", dir);
    writer = open_db(sq_vfs_name());
    exec(writer, "CREATE TABLE t (id INTEGER PRIMARY KEY, k INTEGER, v BLOB)");
    exec(writer, "CREATE INDEX t_k ON t (k)");
    reader = open_db(NULL);
}

static void teardown(void)
{
    sqlite3_close(reader);
    sqlite3_close(writer);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

TestSuite(store_vfs, .init = setup, .fini = teardown);

/* Many small commits, each read back at once by the other connection. */
static void small_commits(const char *sync)
{
    exec(writer, sync);
    for (int i = 1; i <= 200; i++) {
        char sql[160];
        snprintf(sql, sizeof sql, "BEGIN; INSERT INTO t (k, v) VALUES (%d, randomblob(%d)); COMMIT",
                 i % 7, 100 + i * 37);
        exec(writer, sql);
        cr_assert_eq(one(reader, "SELECT COUNT(*) FROM t"), i, "commit %d not visible", i);
    }
    cr_assert_eq(one(reader, "SELECT SUM(length(v)) FROM t"), 200 * 100 + 37 * 200 * 201 / 2);
    intact(reader);
}

/* Commits of one page each (a row updated in place, no index): the
 * commit frame is the transaction's only frame. */
static void one_page_commits(const char *sync)
{
    exec(writer, sync);
    exec(writer, "CREATE TABLE c (id INTEGER PRIMARY KEY, n INTEGER)");
    exec(writer, "INSERT INTO c VALUES (1, 0)");
    for (int i = 1; i <= 100; i++) {
        exec(writer, "UPDATE c SET n = n + 1 WHERE id = 1");
        cr_assert_eq(one(reader, "SELECT n FROM c WHERE id = 1"), i, "commit %d not visible", i);
    }
    intact(reader);
}

Test(store_vfs, one_page_commits_are_visible_at_once_with_synchronous_normal)
{
    one_page_commits("PRAGMA synchronous = NORMAL");
}

Test(store_vfs, one_page_commits_are_visible_at_once_with_synchronous_full)
{
    one_page_commits("PRAGMA synchronous = FULL");
}

Test(store_vfs, small_commits_are_visible_at_once_with_synchronous_normal)
{
    small_commits("PRAGMA synchronous = NORMAL");
}

Test(store_vfs, small_commits_are_visible_at_once_with_synchronous_full)
{
    small_commits("PRAGMA synchronous = FULL");
}

/* One transaction of ~6 MB through a 40-page cache: SQLite spills pages to
 * the WAL before the commit, writes some of them again (the UPDATE), and
 * then rewrites those frames' checksums in place at the commit. */
static void large_transaction(const char *sync)
{
    exec(writer, sync);
    exec(writer, "PRAGMA cache_size = 40");
    exec(writer, "BEGIN");
    exec(writer, "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000)"
                 " INSERT INTO t (k, v) SELECT i % 13, randomblob(2000) FROM n");
    exec(writer, "UPDATE t SET k = k + 100 WHERE id % 5 = 0");
    exec(writer, "COMMIT");
    cr_assert_eq(one(reader, "SELECT COUNT(*) FROM t"), 3000);
    cr_assert_eq(one(reader, "SELECT COUNT(*) FROM t WHERE k >= 100"), 600);
    cr_assert_eq(one(reader, "SELECT SUM(length(v)) FROM t"), 3000 * 2000);
    intact(reader);
    /* and a small commit after it, in the same WAL */
    exec(writer, "INSERT INTO t (k, v) VALUES (-1, x'00')");
    cr_assert_eq(one(reader, "SELECT COUNT(*) FROM t WHERE k = -1"), 1);
    intact(reader);
}

Test(store_vfs, a_large_spilled_transaction_commits_whole_with_synchronous_normal)
{
    large_transaction("PRAGMA synchronous = NORMAL");
}

Test(store_vfs, a_large_spilled_transaction_commits_whole_with_synchronous_full)
{
    large_transaction("PRAGMA synchronous = FULL");
}

/* A writer killed inside a transaction whose frames are partly gathered,
 * partly written: what it committed before is all there, nothing of the
 * open transaction is, and the database is intact. */
Test(store_vfs, a_writer_killed_mid_transaction_keeps_what_it_committed)
{
    sqlite3_close(writer);
    writer = NULL;
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        sqlite3 *db = open_db(sq_vfs_name());
        sqlite3_exec(db, "PRAGMA synchronous = NORMAL; PRAGMA cache_size = 40", 0, 0, 0);
        for (int i = 0; i < 50; i++)
            sqlite3_exec(db, "INSERT INTO t (k, v) VALUES (1, randomblob(3000))", 0, 0, 0);
        sqlite3_exec(db,
                     "BEGIN; WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n"
                     " WHERE i < 2000) INSERT INTO t (k, v) SELECT 2, randomblob(1500) FROM n",
                     0, 0, 0);
        kill(getpid(), SIGKILL); /* before the COMMIT */
        _exit(1);
    }
    int status = 0;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    cr_assert_eq(one(reader, "SELECT COUNT(*) FROM t WHERE k = 1"), 50);
    cr_assert_eq(one(reader, "SELECT COUNT(*) FROM t WHERE k = 2"), 0);
    intact(reader);
    writer = open_db(sq_vfs_name());
    exec(writer, "INSERT INTO t (k, v) VALUES (3, x'01')");
    cr_assert_eq(one(reader, "SELECT COUNT(*) FROM t"), 51);
}

/* The same large transaction, committed with synchronous NORMAL, and then
 * the writer is killed and the machine "restarts" (the -shm file, memory
 * in effect, is gone): recovery rebuilds the WAL's index from the frames'
 * checksums, so every frame header rewritten at the commit must be in the
 * file when the commit returns (no checkpoint after it, which would read
 * the WAL and so write out what is gathered). */
Test(store_vfs, a_commit_survives_recovery_after_the_writer_is_killed)
{
    sqlite3_close(writer);
    sqlite3_close(reader);
    writer = reader = NULL;
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        sqlite3 *db = open_db(sq_vfs_name());
        int rc = sqlite3_exec(db,
                              "PRAGMA synchronous = NORMAL; PRAGMA cache_size = 40;"
                              " PRAGMA wal_autocheckpoint = 0; BEGIN;"
                              " WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n"
                              " WHERE i < 3000) INSERT INTO t (k, v) SELECT i % 13,"
                              " randomblob(2000) FROM n;"
                              " UPDATE t SET k = k + 100 WHERE id % 5 = 0; COMMIT",
                              0, 0, 0);
        if (rc != SQLITE_OK) _exit(2);
        kill(getpid(), SIGKILL);
        _exit(1);
    }
    int status = 0;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "the writer failed: %d", status);
    char shm[80];
    snprintf(shm, sizeof shm, "%s-shm", path);
    cr_assert_eq(unlink(shm), 0);
    reader = open_db(NULL);
    cr_assert_eq(one(reader, "SELECT COUNT(*) FROM t"), 3000, "the commit was lost in recovery");
    cr_assert_eq(one(reader, "SELECT COUNT(*) FROM t WHERE k >= 100"), 600);
    intact(reader);
}
