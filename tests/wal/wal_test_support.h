/*
 * wal_test_support.h -- helpers shared by the WAL and snapshot tests.
 *
 * Always-on checks that print where they failed, a private temporary directory per test
 * (mkdtemp under /tmp, removed at the end), small file surgery (truncate, flip a byte,
 * append zeros) for the damage tests, and a deterministic payload generator so that a
 * reader can verify every record from its LSN alone.
 */
#ifndef WAL_TEST_SUPPORT_H
#define WAL_TEST_SUPPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define TEST_PATH_BYTES 1024
/* Largest generated payload in most tests (records are up to 1 MiB in the format). */
#define TEST_PAYLOAD_BYTES_MAX 8192
/* Names listed from one directory. */
#define TEST_NAMES_MAX 4096

#define CHECK(condition)                                                                          \
    do {                                                                                          \
        if (!(condition)) test_fail(__FILE__, __LINE__, #condition, NULL);                        \
    } while (0)
#define CHECK_MESSAGE(condition, message)                                                         \
    do {                                                                                          \
        if (!(condition)) test_fail(__FILE__, __LINE__, #condition, (message));                   \
    } while (0)

__attribute__((noreturn)) void test_fail(const char *file, int line, const char *condition, const char *message);

/* Creates /tmp/bal-wal-test-XXXXXX; the path is written into `path`. */
void test_tempdir_create(char path[TEST_PATH_BYTES]);
/* Removes the directory and everything below it. */
void test_tempdir_remove(const char *path);

/* dir + "/" + name into `path`. */
void test_path_join(char path[TEST_PATH_BYTES], const char *dir, const char *name);

uint64_t test_file_size(const char *path);
bool test_file_exists(const char *path);
void test_file_truncate(const char *path, uint64_t size);
void test_file_xor_byte(const char *path, uint64_t offset, uint8_t mask);
void test_file_write_at(const char *path, uint64_t offset, const void *bytes, size_t length);
void test_file_append_zeros(const char *path, size_t count);
/* Reads the whole file into a malloc'd buffer; *size_out gets its size. */
uint8_t *test_file_read(const char *path, size_t *size_out);
/* Replaces the file's content. */
void test_file_write(const char *path, const void *bytes, size_t length);
void test_file_create_empty(const char *path);

/* Names in `dir` ending with `suffix`, sorted; returns the count. */
size_t test_list_names(const char *dir, const char *suffix, char names[][64], size_t names_max);

/* Deterministic pseudo-random numbers (splitmix64). */
uint64_t test_random_next(uint64_t *state);
/* The payload of record `lsn` in a run seeded with `seed`: a length in [0, length_max]
 * and bytes derived from (seed, lsn). Returns the length. */
size_t test_payload(uint64_t seed, uint64_t lsn, size_t length_max, uint8_t *buffer);
/* A replay callback that checks each record against the generator: LSNs must come in
 * order from `expected_lsn` on, each payload equal to payload_fn(seed, lsn). */
typedef size_t (*test_payload_fn)(uint64_t seed, uint64_t lsn, uint8_t *buffer);
typedef struct test_replay_check {
    uint64_t seed;
    test_payload_fn payload_fn;
    uint64_t expected_lsn;     /* the next LSN the callback expects */
    uint64_t count;            /* records seen */
    uint8_t *scratch;          /* room for the largest payload payload_fn makes */
} test_replay_check;
int test_replay_verify(void *context, uint64_t lsn, const void *payload, size_t length);

/* The seed from the environment variable BAL_TEST_SEED, else from the clock; printed. */
uint64_t test_seed(const char *test_name);

#endif
