/*
 * util — small helpers every module uses: allocation that aborts on
 * out-of-memory, a growable byte buffer, and the clock.
 *
 * Return convention for the whole project: functions that can fail return
 * int, 0 for success and a negative value for an error (each module names
 * its own negative codes). Nothing returns a positive error.
 */
#ifndef SS_UTIL_H
#define SS_UTIL_H

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* json_dumps flags for every JSON the service sends (API answers, event
 * and SSE payloads, webhook bodies). jansson's default writes reals with 17
 * significant digits, which round-trips every double but prints a strength
 * of 0.8 as 0.80000000000000004; 15 (DBL_DIG) prints every number a client
 * wrote with up to 15 digits as it was written. Expands where jansson.h is
 * included. */
#define UTIL_JSON_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(15))

/* Allocation wrappers: never return NULL; abort the process on OOM. */
void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s); /* NULL in, NULL out */
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
char *xvasprintf(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));

/* Growable byte buffer. The caller owns `data` (free with buf_free). */
typedef struct buf {
    char *data;
    size_t len;
    size_t cap;
} buf;

void buf_append(buf *b, const void *data, size_t len);
void buf_printf(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_free(buf *b);

/* Wall clock in milliseconds since the Unix epoch. Tests may shift it with
 * util_clock_shift_ms (a failure seam: expiry without sleeping). */
int64_t now_ms(void);
void util_clock_shift_ms(int64_t delta);
/* Monotonic milliseconds, for timeouts and durations inside one process. */
int64_t mono_ms(void);
/* A condition variable whose timed waits count on the monotonic clock, and
 * a wait on one (m held) until mono_ms() reaches deadline, or until it is
 * signalled (ETIMEDOUT when the deadline passed, else 0); INT64_MAX
 * waits for the signal alone. */
void util_cond_init_mono(pthread_cond_t *c);
int util_cond_wait_until(pthread_cond_t *c, pthread_mutex_t *m, int64_t deadline);

/* Reads a whole file; returns 0 and sets *out (caller frees) or -1. */
int util_read_file(const char *path, size_t max, buf *out);
/* Writes data to path atomically: a temp file renamed over path, so a
 * reader never sees half of it. durable: on disk when this returns (the
 * file and then its directory fsynced); else the caller makes it so later,
 * many files at once, with util_sync_fs. 0 or -1. */
int util_write_file_atomic(const char *path, const void *data, size_t len, bool durable);
/* Puts everything written on the file system holding path on disk (syncfs:
 * file data, names and renames). 0 or -1 with errno. */
int util_sync_fs(const char *path);
/* mkdir -p. 0 or -1. */
int util_mkdirs(const char *path);

bool str_eq(const char *a, const char *b); /* NULL-safe */
/* FNV-1a of a string: spreads ids, paths and topics over a table's slots. */
uint32_t util_fnv1a(const char *s);
bool str_has_prefix(const char *s, const char *prefix);

#endif
