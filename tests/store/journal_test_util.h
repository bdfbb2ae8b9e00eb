/*
 * journal_test_util.h -- what the journal store's tests share: a check macro that reports
 * the failing line and stops, scratch directories, row builders, a row collector and a
 * field-by-field row comparison.
 */
#ifndef JOURNAL_TEST_UTIL_H
#define JOURNAL_TEST_UTIL_H

#include <stdio.h>
#include <stdlib.h>

#include "bal_journal.h"

#define CHECK(condition)                                                                    \
    do {                                                                                    \
        if (!(condition)) {                                                                 \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #condition);  \
            abort();                                                                        \
        }                                                                                   \
    } while (0)

/* Runs a journal call that must succeed; ERR stands for its errstr arguments, and the
 * status and error text are printed if it fails. */
#define ERR check_errstr_, sizeof check_errstr_
#define CHECK_OK(call)                                                                      \
    do {                                                                                    \
        char check_errstr_[512] = "";                                                       \
        bal_journal_status check_status_ = (call);                                          \
        if (check_status_ != BAL_JOURNAL_OK) {                                              \
            fprintf(stderr, "%s:%d: %s -> %s: %s\n", __FILE__, __LINE__, #call,             \
                    bal_journal_status_name(check_status_), check_errstr_);                 \
            abort();                                                                        \
        }                                                                                   \
    } while (0)

/* A scratch directory with the journal's path inside; removed with everything in it. */
typedef struct test_dir {
    char dir[256];
    char path[300];
} test_dir;

void test_dir_create(test_dir *dir);
void test_dir_remove(const test_dir *dir);

/* Parses a signed decimal that the test knows to be valid. */
bal_amount test_amount(const char *text);

/* A row with every field set to a neutral value: DEPOSIT, result "ok", zero balances,
 * amount 1 unit, no memo. */
void test_row_init(bal_journal_row *row, uint32_t shard, uint64_t sequence, uint32_t leg,
                   bal_journal_type type, const char *transaction_id, uint64_t account_id,
                   const char *currency);
/* Sets before/after of both balances and the matching deltas. */
void test_row_balances(bal_journal_row *row, bal_amount available_before, bal_amount available_after,
                       bal_amount frozen_before, bal_amount frozen_after);
void test_row_memo(bal_journal_row *row, const char *memo, size_t length);

/* True if every field is equal (texts up to their terminator, memo up to its length). */
bool test_row_equal(const bal_journal_row *a, const bal_journal_row *b);
void test_row_print(const char *label, const bal_journal_row *row);

/* Collects rows handed to a callback. */
typedef struct test_rows {
    bal_journal_row *rows;
    size_t count;
    size_t capacity;
    size_t stop_after;      /* 0: never ask to stop */
} test_rows;

bool test_rows_collect(void *context, const bal_journal_row *row);
void test_rows_clear(test_rows *rows);
void test_rows_free(test_rows *rows);

/* Opens a writer (or reader) on dir->path with default options, checking success. */
bal_journal *test_open(const test_dir *dir, bool read_only);

/* Small deterministic generator (xorshift64*) so every run writes the same data. */
uint64_t test_random(uint64_t *state);

#endif
