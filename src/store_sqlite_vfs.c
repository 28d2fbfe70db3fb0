/*
 * store_sqlite_vfs — a SQLite VFS over the default one that gathers the
 * WAL's writes: the store's connections open their files through it
 * (sq_vfs_name).
 *
 * DESIGN. SQLite appends each WAL frame with two writes (its 24-byte
 * header, then the page), and a group commit of a few dozen creates
 * writes a few hundred frames, all while the writer holds the store's
 * write lock: two system calls per frame cost ~4 µs here against ~0.35 µs
 * per frame for one write of many. So for a WAL file, writes that continue
 * the previous one gather in a buffer (up to GATHER_MAX bytes, 15 frames)
 * and go to the file as one write.
 *
 * Nothing may stay gathered once other connections can see it, nor once
 * the COMMIT has returned (recovery after a crash trusts only what is in
 * the file). So the buffer goes out right after the page of a commit frame
 * (a frame header whose "database size" field is not zero) — the write
 * that reports a full disk while the commit can still fail — and a commit
 * frame's header that does not continue the buffer goes out at once (it
 * may be one SQLite rewrites in place, with new checksums, after the
 * commit frame was written: no page follows it). With synchronous=FULL the
 * sync that precedes the commit's publication writes it out as well. As a
 * second line, a commit becomes visible only when SQLite writes the
 * wal-index header in the database file's shared memory, always behind a
 * memory barrier (xShmBarrier), and the writer lets go of its locks there
 * (xShmLock): every shared-memory call on a database file first writes out
 * what its WAL gathered. (A connection's WAL finds its database file
 * through the database's name, which SQLite hands to both opens as the
 * same pointer; a WAL that finds none is not gathered.) The buffer also
 * goes out before every read, size, truncate and file control on the WAL,
 * when it is full, when a write does not continue it, and at close. A
 * crash loses only gathered frames of a transaction that had not
 * committed. A failed write is reported by the call that wrote the buffer
 * out.
 *
 * Every other file (the database, its journals, temporary files) and
 * every other method passes straight to the default VFS — looked up when
 * a file is opened, so a test's VFS registered as the default (see
 * tests/unit/test_store_faults.c) sits underneath. Files are used by one
 * connection, one thread at a time: no locks.
 */
#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "store_sqlite.h"

/* SQLite's unix VFS writes at most 128 KiB - 1 per call (seekAndWriteFd
 * masks the length with 0x1ffff), so a buffer stays under that. */
#define GATHER_MAX (64 * 1024)
#define FRAME_HEADER 24 /* SQLite's WAL frame header */

typedef struct gather_file {
    sqlite3_file base;
    sqlite3_file *real; /* the default VFS's file (sqlite3_malloc) */
    bool wal;
    bool commit_next;   /* the last write was a commit frame's header */
    unsigned char *buf; /* gathered WAL bytes for [at, at + len) */
    size_t len;
    sqlite3_int64 at;
    /* A connection's database file and its WAL find each other through
     * the database's name, the same pointer for both (registry_mu). */
    const char *name;           /* a database file's */
    struct gather_file *next;   /* in the list of open database files */
    struct gather_file *wal_of; /* a database file's WAL */
    struct gather_file *db_of;  /* a WAL's database file */
} gather_file;

static pthread_mutex_t registry_mu = PTHREAD_MUTEX_INITIALIZER;
static gather_file *databases;

static sqlite3_vfs *below(void)
{
    return sqlite3_vfs_find(NULL);
}

static sqlite3_file *real_of(sqlite3_file *f)
{
    return ((gather_file *)f)->real;
}

/* Writes the gathered bytes to the file. */
static int flush(gather_file *g)
{
    if (!g->len) return SQLITE_OK;
    int rc = g->real->pMethods->xWrite(g->real, g->buf, (int)g->len, g->at);
    g->len = 0;
    return rc;
}

static int g_write(sqlite3_file *f, const void *p, int n, sqlite3_int64 off)
{
    gather_file *g = (gather_file *)f;
    sqlite3_file *r = g->real;
    if (!g->wal) return r->pMethods->xWrite(r, p, n, off);
    const unsigned char *h = p;
    /* A frame header; its bytes 4–7 hold the database size after a commit,
     * else 0. */
    bool commit_header = n == FRAME_HEADER && (h[4] | h[5] | h[6] | h[7]);
    bool commit_page = g->commit_next;
    g->commit_next = commit_header;
    bool follows =
        g->len && off == g->at + (sqlite3_int64)g->len && g->len + (size_t)n <= GATHER_MAX;
    int rc = follows ? SQLITE_OK : flush(g);
    if (rc != SQLITE_OK) return rc;
    if ((commit_header && !follows) || (size_t)n > GATHER_MAX ||
        (!g->buf && !(g->buf = malloc(GATHER_MAX))))
        return r->pMethods->xWrite(r, p, n, off); /* at once (DESIGN) */
    if (!g->len) g->at = off;
    memcpy(g->buf + g->len, p, (size_t)n);
    g->len += (size_t)n;
    return commit_page ? flush(g) : SQLITE_OK;
}

static int g_close(sqlite3_file *f)
{
    gather_file *g = (gather_file *)f;
    int rc = flush(g);
    pthread_mutex_lock(&registry_mu);
    if (g->db_of) g->db_of->wal_of = NULL;
    if (g->wal_of) g->wal_of->db_of = NULL;
    for (gather_file **p = &databases; *p; p = &(*p)->next)
        if (*p == g) {
            *p = g->next;
            break;
        }
    pthread_mutex_unlock(&registry_mu);
    int rc2 = g->real->pMethods->xClose(g->real);
    sqlite3_free(g->real);
    free(g->buf);
    g->real = NULL;
    g->buf = NULL;
    return rc != SQLITE_OK ? rc : rc2;
}

static int g_read(sqlite3_file *f, void *p, int n, sqlite3_int64 off)
{
    int rc = flush((gather_file *)f);
    return rc != SQLITE_OK ? rc : real_of(f)->pMethods->xRead(real_of(f), p, n, off);
}

static int g_truncate(sqlite3_file *f, sqlite3_int64 size)
{
    int rc = flush((gather_file *)f);
    return rc != SQLITE_OK ? rc : real_of(f)->pMethods->xTruncate(real_of(f), size);
}

static int g_sync(sqlite3_file *f, int flags)
{
    int rc = flush((gather_file *)f);
    return rc != SQLITE_OK ? rc : real_of(f)->pMethods->xSync(real_of(f), flags);
}

static int g_size(sqlite3_file *f, sqlite3_int64 *size)
{
    int rc = flush((gather_file *)f);
    return rc != SQLITE_OK ? rc : real_of(f)->pMethods->xFileSize(real_of(f), size);
}

static int g_control(sqlite3_file *f, int op, void *arg)
{
    int rc = flush((gather_file *)f);
    return rc != SQLITE_OK ? rc : real_of(f)->pMethods->xFileControl(real_of(f), op, arg);
}

static int g_lock(sqlite3_file *f, int l)
{
    return real_of(f)->pMethods->xLock(real_of(f), l);
}

static int g_unlock(sqlite3_file *f, int l)
{
    return real_of(f)->pMethods->xUnlock(real_of(f), l);
}

static int g_reserved(sqlite3_file *f, int *out)
{
    return real_of(f)->pMethods->xCheckReservedLock(real_of(f), out);
}

static int g_sector(sqlite3_file *f)
{
    return real_of(f)->pMethods->xSectorSize(real_of(f));
}

static int g_device(sqlite3_file *f)
{
    return real_of(f)->pMethods->xDeviceCharacteristics(real_of(f));
}

/* Version 2 and 3 methods, offered only when the file below has them. */
static int g_shm_map(sqlite3_file *f, int pg, int sz, int extend, void volatile **pp)
{
    return real_of(f)->pMethods->xShmMap(real_of(f), pg, sz, extend, pp);
}

/* The wal-index (shared memory of the database file) is where a commit
 * is published: its WAL's frames go out first (DESIGN). */
static int g_shm_lock(sqlite3_file *f, int off, int n, int flags)
{
    gather_file *w = ((gather_file *)f)->wal_of;
    int rc = w ? flush(w) : SQLITE_OK;
    return rc != SQLITE_OK ? rc : real_of(f)->pMethods->xShmLock(real_of(f), off, n, flags);
}

static void g_shm_barrier(sqlite3_file *f)
{
    gather_file *w = ((gather_file *)f)->wal_of;
    if (w) flush(w); /* a no-op after a commit (DESIGN) */
    real_of(f)->pMethods->xShmBarrier(real_of(f));
}

static int g_shm_unmap(sqlite3_file *f, int del)
{
    return real_of(f)->pMethods->xShmUnmap(real_of(f), del);
}

static int g_fetch(sqlite3_file *f, sqlite3_int64 off, int n, void **pp)
{
    return real_of(f)->pMethods->xFetch(real_of(f), off, n, pp);
}

static int g_unfetch(sqlite3_file *f, sqlite3_int64 off, void *p)
{
    return real_of(f)->pMethods->xUnfetch(real_of(f), off, p);
}

#define METHODS(version)                                                                           \
    {                                                                                              \
        .iVersion = version, .xClose = g_close, .xRead = g_read, .xWrite = g_write,                \
        .xTruncate = g_truncate, .xSync = g_sync, .xFileSize = g_size, .xLock = g_lock,            \
        .xUnlock = g_unlock, .xCheckReservedLock = g_reserved, .xFileControl = g_control,          \
        .xSectorSize = g_sector, .xDeviceCharacteristics = g_device,                               \
        .xShmMap = version >= 2 ? g_shm_map : NULL, .xShmLock = version >= 2 ? g_shm_lock : NULL,  \
        .xShmBarrier = version >= 2 ? g_shm_barrier : NULL,                                        \
        .xShmUnmap = version >= 2 ? g_shm_unmap : NULL, .xFetch = version >= 3 ? g_fetch : NULL,   \
        .xUnfetch = version >= 3 ? g_unfetch : NULL,                                               \
    }
static const sqlite3_io_methods methods_by_version[3] = {METHODS(1), METHODS(2), METHODS(3)};

static int v_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *f, int flags, int *out_flags)
{
    (void)vfs;
    gather_file *g = (gather_file *)f;
    memset(g, 0, sizeof *g);
    sqlite3_vfs *real_vfs = below();
    g->real = sqlite3_malloc(real_vfs->szOsFile);
    if (!g->real) return SQLITE_NOMEM;
    memset(g->real, 0, (size_t)real_vfs->szOsFile);
    int rc = real_vfs->xOpen(real_vfs, name, g->real, flags, out_flags);
    if (!g->real->pMethods) { /* nothing to close */
        sqlite3_free(g->real);
        g->real = NULL;
        return rc != SQLITE_OK ? rc : SQLITE_CANTOPEN;
    }
    int v = g->real->pMethods->iVersion;
    g->base.pMethods = &methods_by_version[v < 1 ? 0 : v > 3 ? 2 : v - 1];
    g->wal = (flags & SQLITE_OPEN_WAL) != 0;
    pthread_mutex_lock(&registry_mu);
    if (flags & SQLITE_OPEN_MAIN_DB) {
        g->name = name;
        g->next = databases;
        databases = g;
    } else if (g->wal) {
        const char *db = sqlite3_filename_database(name);
        for (gather_file *d = databases; d && !g->db_of; d = d->next)
            if (d->name == db) {
                d->wal_of = g;
                g->db_of = d;
            }
        g->wal = g->db_of != NULL; /* else nothing would write it out in time */
    }
    pthread_mutex_unlock(&registry_mu);
    return rc;
}

static int v_delete(sqlite3_vfs *vfs, const char *name, int sync)
{
    (void)vfs;
    sqlite3_vfs *b = below();
    return b->xDelete(b, name, sync);
}

static int v_access(sqlite3_vfs *vfs, const char *name, int flags, int *out)
{
    (void)vfs;
    sqlite3_vfs *b = below();
    return b->xAccess(b, name, flags, out);
}

static int v_full(sqlite3_vfs *vfs, const char *name, int n, char *out)
{
    (void)vfs;
    sqlite3_vfs *b = below();
    return b->xFullPathname(b, name, n, out);
}

static int v_random(sqlite3_vfs *vfs, int n, char *out)
{
    (void)vfs;
    sqlite3_vfs *b = below();
    return b->xRandomness(b, n, out);
}

static int v_sleep(sqlite3_vfs *vfs, int us)
{
    (void)vfs;
    sqlite3_vfs *b = below();
    return b->xSleep(b, us);
}

static int v_time(sqlite3_vfs *vfs, double *out)
{
    (void)vfs;
    sqlite3_vfs *b = below();
    return b->xCurrentTime(b, out);
}

static int v_error(sqlite3_vfs *vfs, int n, char *out)
{
    (void)vfs;
    sqlite3_vfs *b = below();
    return b->xGetLastError(b, n, out);
}

static int v_time64(sqlite3_vfs *vfs, sqlite3_int64 *out)
{
    (void)vfs;
    sqlite3_vfs *b = below();
    if (b->iVersion >= 2 && b->xCurrentTimeInt64) return b->xCurrentTimeInt64(b, out);
    double d = 0;
    int rc = b->xCurrentTime(b, &d);
    *out = (sqlite3_int64)(d * 86400000.0);
    return rc;
}

static sqlite3_vfs gather_vfs = {
    .iVersion = 2,
    .szOsFile = sizeof(gather_file),
    .mxPathname = 512,
    .zName = "stylestudio-gather",
    .xOpen = v_open,
    .xDelete = v_delete,
    .xAccess = v_access,
    .xFullPathname = v_full,
    .xRandomness = v_random,
    .xSleep = v_sleep,
    .xCurrentTime = v_time,
    .xGetLastError = v_error,
    .xCurrentTimeInt64 = v_time64,
};

static void register_vfs(void)
{
    sqlite3_vfs *b = below();
    if (b && b->mxPathname > gather_vfs.mxPathname) gather_vfs.mxPathname = b->mxPathname;
    sqlite3_vfs_register(&gather_vfs, 0);
}

const char *sq_vfs_name(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, register_vfs);
    return gather_vfs.zName;
}
