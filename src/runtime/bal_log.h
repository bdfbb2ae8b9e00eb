/*
 * bal_log.h -- structured logs: one JSON object per line on stderr.
 *
 * Every line has "ts" (UTC, milliseconds), "level" and "event", then the caller's fields,
 * given as a printf-style fragment of JSON members (`"port":%u`). Lines below the
 * configured level are dropped. Thread-safe: a line is written with one write().
 * Secrets never go through here.
 */
#ifndef BAL_LOG_H
#define BAL_LOG_H

typedef enum bal_log_level {
    BAL_LOG_DEBUG = 0,
    BAL_LOG_INFO,
    BAL_LOG_WARN,
    BAL_LOG_ERROR,
} bal_log_level;

void bal_log_set_level(bal_log_level level);
/* Parses "debug", "info", "warn", "error"; false if none. */
int bal_log_level_parse(const char *text, bal_log_level *level_out);

/* fields: JSON members without braces, e.g. "\"port\":%u", or "" for none. */
__attribute__((format(printf, 3, 4)))
void bal_log(bal_log_level level, const char *event, const char *fields, ...);

#endif
