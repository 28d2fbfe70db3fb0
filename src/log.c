/*
 * log — JSON-lines logging. jansson does the string escaping; one fputs per
 * line so lines from different threads never interleave.
 */
#include "log.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

int log_min_level = LOG_INFO;

static const char *level_names[] = {"debug", "info", "warn", "error"};

int log_parse_level(const char *name)
{
    for (int i = 0; i < (int)ARRAY_LEN(level_names); i++)
        if (str_eq(name, level_names[i])) return i;
    return -1;
}

void log_write(int level, const char *request_id, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);

    json_t *o = json_object();
    json_object_set_new(o, "ts", json_integer(now_ms()));
    json_object_set_new(o, "level", json_string(level_names[level]));
    json_object_set_new(o, "msg", json_string(msg));
    if (request_id) json_object_set_new(o, "requestId", json_string(request_id));
    char *line = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII);
    if (line) {
        size_t n = strlen(line);
        line = realloc(line, n + 2);
        if (line) {
            line[n] = '\n';
            line[n + 1] = '\0';
            fputs(line, stderr);
        }
        free(line);
    }
    json_decref(o);
}
