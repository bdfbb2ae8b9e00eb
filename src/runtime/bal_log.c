/*
 * bal_log.c -- the JSON line logger of bal_log.h.
 */
#include "bal_log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LOG_LINE_MAX 4096

static _Atomic int log_level = BAL_LOG_INFO;
static const char *const level_names[] = {"debug", "info", "warn", "error"};

void bal_log_set_level(bal_log_level level) { atomic_store(&log_level, (int)level); }

int bal_log_level_parse(const char *text, bal_log_level *level_out) {
    for (int i = 0; i < 4; i++) {
        if (strcmp(text, level_names[i]) == 0) {
            *level_out = (bal_log_level)i;
            return 1;
        }
    }
    return 0;
}

void bal_log(bal_log_level level, const char *event, const char *fields, ...) {
    if ((int)level < atomic_load(&log_level)) return;
    char line[LOG_LINE_MAX];
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    struct tm utc;
    gmtime_r(&now.tv_sec, &utc);
    int n = snprintf(line, sizeof(line), "{\"ts\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ\",\"level\":\"%s\",\"event\":\"%s\"",
                     utc.tm_year + 1900, utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec,
                     now.tv_nsec / 1000000, level_names[level], event);
    if (fields != NULL && fields[0] != '\0' && n > 0 && (size_t)n < sizeof(line) - 2) {
        line[n++] = ',';
        va_list args;
        va_start(args, fields);
        int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 2, fields, args);
        va_end(args);
        if (m > 0) n += m < (int)(sizeof(line) - (size_t)n - 2) ? m : (int)(sizeof(line) - (size_t)n - 3);
    }
    if (n < 0) return;
    if ((size_t)n > sizeof(line) - 2) n = (int)sizeof(line) - 2;
    line[n++] = '}';
    line[n++] = '\n';
    ssize_t ignored = write(STDERR_FILENO, line, (size_t)n);
    (void)ignored;
}
