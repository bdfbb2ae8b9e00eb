/*
 * bal_itest.h -- what the integration tests share: settings from the same BALANCED_*
 * environment variables as scripts/services.sh, names that are unique per run, a clock,
 * and REQUIRE for steps that later steps depend on.
 *
 * CHECK (from tests/bal_test.h) records a failure and goes on; REQUIRE prints why and ends
 * the test at once, after running the cleanup hook (which drops what the test created on
 * the servers). A server that does not answer is a failure, never a skip: the message says
 * which server, where, and how to start it.
 */
#ifndef BAL_ITEST_H
#define BAL_ITEST_H

#include <stddef.h>
#include <stdint.h>

#include "bal_test.h"

#define REQUIRE(condition, ...)                                                           \
    do {                                                                                  \
        if (condition) {                                                                  \
            bal_test_passed++;                                                            \
        } else {                                                                          \
            bal_itest_fail(__FILE__, __LINE__, #condition, __VA_ARGS__);                  \
        }                                                                                 \
    } while (0)

/* Prints "file:line: REQUIRE failed: condition: message", runs the cleanup hook once and
 * exits with status 1. */
__attribute__((noreturn, format(printf, 4, 5))) void bal_itest_fail(const char *file, int line,
                                                                     const char *condition,
                                                                     const char *format, ...);

/* The hook that bal_itest_fail runs before exiting (NULL for none). */
void bal_itest_set_cleanup(void (*cleanup)(void));

/* The value of an environment variable, or fallback when it is unset or empty. */
const char *bal_itest_env(const char *name, const char *fallback);

/* The value of an environment variable as a port number, or fallback. */
unsigned bal_itest_env_port(const char *name, unsigned fallback);

/* A suffix that no other run on this machine uses at the same time: "<pid>_<unix seconds>". */
void bal_itest_run_suffix(char *buffer, size_t size);

/* Monotonic time in nanoseconds, for measuring steps. */
uint64_t bal_itest_now_ns(void);

/* Reads a whole file into a NUL-terminated heap buffer; returns NULL on failure. */
char *bal_itest_read_file(const char *path, size_t *length_out);

#endif
