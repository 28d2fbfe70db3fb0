/*
 * log — JSON-lines logging on stderr, one object per line:
 *   {"ts":1700000000000,"level":"info","msg":"...","requestId":"..."}
 * The level check happens in the macro, so a disabled level costs one compare.
 */
#ifndef SS_LOG_H
#define SS_LOG_H

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

extern int log_min_level;

/* request_id may be NULL. */
void log_write(int level, const char *request_id, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int log_parse_level(const char *name); /* -1 when unknown */

#define LOG_AT(lvl, rid, ...)                                                                      \
    do {                                                                                           \
        if ((lvl) >= log_min_level) log_write((lvl), (rid), __VA_ARGS__);                          \
    } while (0)
#define log_debug(...) LOG_AT(LOG_DEBUG, NULL, __VA_ARGS__)
#define log_info(...) LOG_AT(LOG_INFO, NULL, __VA_ARGS__)
#define log_warn(...) LOG_AT(LOG_WARN, NULL, __VA_ARGS__)
#define log_error(...) LOG_AT(LOG_ERROR, NULL, __VA_ARGS__)
/* Request-scoped variants carry the request id. */
#define rlog_info(rid, ...) LOG_AT(LOG_INFO, rid, __VA_ARGS__)
#define rlog_warn(rid, ...) LOG_AT(LOG_WARN, rid, __VA_ARGS__)
#define rlog_error(rid, ...) LOG_AT(LOG_ERROR, rid, __VA_ARGS__)

#endif
