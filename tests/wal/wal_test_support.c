/*
 * wal_test_support.c -- see wal_test_support.h.
 */
#include "wal_test_support.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Open descriptors nftw may use while removing a test directory. */
#define TEST_NFTW_DESCRIPTORS 16

void test_fail(const char *file, int line, const char *condition, const char *message) {
    fprintf(stderr, "%s:%d: check failed: %s%s%s\n", file, line, condition, message ? "\n  message: " : "",
            message ? message : "");
    fflush(stderr);
    abort();
}

void test_tempdir_create(char path[TEST_PATH_BYTES]) {
    snprintf(path, TEST_PATH_BYTES, "/tmp/bal-wal-test-XXXXXX");
    CHECK(mkdtemp(path) != NULL);
}

static int test_remove_entry(const char *path, const struct stat *file_stat, int type, struct FTW *ftw) {
    (void)file_stat;
    (void)ftw;
    int rc = type == FTW_DP ? rmdir(path) : unlink(path);
    if (rc != 0) fprintf(stderr, "warning: cannot remove %s: %s\n", path, strerror(errno));
    return 0;
}

void test_tempdir_remove(const char *path) {
    CHECK(strncmp(path, "/tmp/bal-wal-", 13) == 0);
    nftw(path, test_remove_entry, TEST_NFTW_DESCRIPTORS, FTW_DEPTH | FTW_PHYS);
}

void test_path_join(char path[TEST_PATH_BYTES], const char *dir, const char *name) {
    int length = snprintf(path, TEST_PATH_BYTES, "%s/%s", dir, name);
    CHECK(length > 0 && length < TEST_PATH_BYTES);
}

uint64_t test_file_size(const char *path) {
    struct stat file_stat;
    CHECK_MESSAGE(stat(path, &file_stat) == 0, path);
    return (uint64_t)file_stat.st_size;
}

bool test_file_exists(const char *path) {
    struct stat file_stat;
    return stat(path, &file_stat) == 0;
}

void test_file_truncate(const char *path, uint64_t size) {
    CHECK_MESSAGE(truncate(path, (off_t)size) == 0, path);
}

void test_file_xor_byte(const char *path, uint64_t offset, uint8_t mask) {
    int fd = open(path, O_RDWR | O_CLOEXEC);
    CHECK_MESSAGE(fd >= 0, path);
    uint8_t byte = 0;
    CHECK(pread(fd, &byte, 1, (off_t)offset) == 1);
    byte ^= mask;
    CHECK(pwrite(fd, &byte, 1, (off_t)offset) == 1);
    close(fd);
}

void test_file_write_at(const char *path, uint64_t offset, const void *bytes, size_t length) {
    int fd = open(path, O_RDWR | O_CLOEXEC);
    CHECK_MESSAGE(fd >= 0, path);
    CHECK(pwrite(fd, bytes, length, (off_t)offset) == (ssize_t)length);
    close(fd);
}

void test_file_append_zeros(const char *path, size_t count) {
    uint8_t *zeros = calloc(1, count > 0 ? count : 1);
    CHECK(zeros != NULL);
    test_file_write_at(path, test_file_size(path), zeros, count);
    free(zeros);
}

uint8_t *test_file_read(const char *path, size_t *size_out) {
    size_t size = (size_t)test_file_size(path);
    uint8_t *bytes = malloc(size > 0 ? size : 1);
    CHECK(bytes != NULL);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    CHECK_MESSAGE(fd >= 0, path);
    CHECK(pread(fd, bytes, size, 0) == (ssize_t)size);
    close(fd);
    *size_out = size;
    return bytes;
}

void test_file_write(const char *path, const void *bytes, size_t length) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    CHECK_MESSAGE(fd >= 0, path);
    CHECK(write(fd, bytes, length) == (ssize_t)length);
    close(fd);
}

void test_file_create_empty(const char *path) {
    test_file_write(path, "", 0);
}

static int test_name_compare(const void *left, const void *right) {
    return strcmp((const char *)left, (const char *)right);
}

size_t test_list_names(const char *dir, const char *suffix, char names[][64], size_t names_max) {
    DIR *listing = opendir(dir);
    CHECK_MESSAGE(listing != NULL, dir);
    size_t count = 0;
    size_t suffix_length = strlen(suffix);
    for (struct dirent *entry = readdir(listing); entry != NULL; entry = readdir(listing)) {
        size_t length = strlen(entry->d_name);
        if (length < suffix_length || strcmp(entry->d_name + length - suffix_length, suffix) != 0) continue;
        CHECK(count < names_max && length < 64);
        memcpy(names[count++], entry->d_name, length + 1);
    }
    closedir(listing);
    qsort(names, count, 64, test_name_compare);
    return count;
}

uint64_t test_random_next(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

size_t test_payload(uint64_t seed, uint64_t lsn, size_t length_max, uint8_t *buffer) {
    uint64_t state = seed ^ (lsn * 0xD1B54A32D192ED03ull);
    size_t length = (size_t)(test_random_next(&state) % (length_max + 1));
    for (size_t i = 0; i < length; i += 8) {
        uint64_t word = test_random_next(&state);
        size_t chunk = length - i < 8 ? length - i : 8;
        memcpy(buffer + i, &word, chunk);
    }
    return length;
}

uint64_t test_seed(const char *test_name) {
    const char *text = getenv("BAL_TEST_SEED");
    uint64_t seed = 0;
    if (text != NULL && text[0] != '\0') {
        seed = strtoull(text, NULL, 0);
    } else {
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        seed = (uint64_t)now.tv_sec * 1000000007ull ^ (uint64_t)now.tv_nsec ^ ((uint64_t)getpid() << 32);
    }
    printf("%s: seed %" PRIu64 " (rerun with BAL_TEST_SEED=%" PRIu64 ")\n", test_name, seed, seed);
    fflush(stdout);
    return seed;
}

int test_replay_verify(void *context, uint64_t lsn, const void *payload, size_t length) {
    test_replay_check *check = context;
    if (lsn != check->expected_lsn) {
        fprintf(stderr, "replay: lsn %" PRIu64 " where %" PRIu64 " was expected\n", lsn, check->expected_lsn);
        CHECK(lsn == check->expected_lsn);
    }
    size_t expected_length = check->payload_fn(check->seed, lsn, check->scratch);
    if (expected_length != length || (length > 0 && memcmp(payload, check->scratch, length) != 0)) {
        fprintf(stderr, "replay: lsn %" PRIu64 ": payload of %zu bytes differs (expected %zu)\n", lsn, length,
                expected_length);
        CHECK(!"payload matches");
    }
    check->expected_lsn++;
    check->count++;
    return 0;
}
