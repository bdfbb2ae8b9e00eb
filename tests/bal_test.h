/*
 * bal_test.h -- the smallest test harness that does the job: CHECK records a failure with
 * its place and goes on; bal_test_finish prints "N passed, N failed" and gives the exit code.
 */
#ifndef BAL_TEST_H
#define BAL_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static unsigned bal_test_passed, bal_test_failed;

#define CHECK(condition)                                                                 \
    do {                                                                                 \
        if (condition) {                                                                 \
            bal_test_passed++;                                                           \
        } else {                                                                         \
            bal_test_failed++;                                                           \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #condition); \
        }                                                                                \
    } while (0)

#define CHECK_STR(actual, expected)                                                      \
    do {                                                                                 \
        const char *a_ = (actual), *e_ = (expected);                                     \
        if (strcmp(a_, e_) == 0) {                                                       \
            bal_test_passed++;                                                           \
        } else {                                                                         \
            bal_test_failed++;                                                           \
            fprintf(stderr, "%s:%d: expected \"%s\", got \"%s\"\n", __FILE__, __LINE__, e_, a_); \
        }                                                                                \
    } while (0)

static inline int bal_test_finish(const char *name) {
    printf("%s: %u passed, %u failed\n", name, bal_test_passed, bal_test_failed);
    return bal_test_failed == 0 ? 0 : 1;
}

#endif
