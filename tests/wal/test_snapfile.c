/*
 * test_snapfile.c -- snapshot files: round trip, keep-K pruning, fallback past damaged
 * snapshots (with a report), leftover temporary files, and "none" versus "none valid".
 */
#include <inttypes.h>
#include <string.h>

#include "bal_snapfile.h"
#include "wal_test_support.h"

/* The large round trip: bigger than any single write() chunk the kernel might split. */
#define LARGE_SNAPSHOT_BYTES (8u << 20)

static char names[TEST_NAMES_MAX][64];

/* At least one byte, so that damaging "the last byte" always hits the payload. */
static size_t snapshot_payload(uint64_t seed, uint64_t lsn, uint8_t *buffer) {
    size_t length = test_payload(seed, lsn, 5000, buffer);
    if (length == 0) buffer[length++] = 1;
    return length;
}

static void write_snapshot(const char *dir, uint64_t seed, uint64_t lsn, uint32_t keep_count) {
    static uint8_t bytes[5001];
    char errstr[BAL_SNAPFILE_MESSAGE_BYTES];
    size_t length = snapshot_payload(seed, lsn, bytes);
    bal_snapfile_status status = bal_snapfile_write(dir, lsn, bytes, length, keep_count, errstr, sizeof errstr);
    CHECK_MESSAGE(status == BAL_SNAPFILE_OK, errstr);
}

/* Loads and expects the snapshot of `expected_lsn` with its generated content. */
static void expect_load(const char *dir, uint64_t seed, uint64_t expected_lsn, bal_snapfile_load_report *report) {
    static uint8_t expected[5001];
    char errstr[BAL_SNAPFILE_MESSAGE_BYTES];
    uint64_t lsn = 0;
    void *bytes = NULL;
    size_t length = 0;
    bal_snapfile_status status = bal_snapfile_load_latest(dir, &lsn, &bytes, &length, report, errstr, sizeof errstr);
    CHECK_MESSAGE(status == BAL_SNAPFILE_OK, errstr);
    CHECK(lsn == expected_lsn && bytes != NULL);
    size_t expected_length = snapshot_payload(seed, lsn, expected);
    CHECK(length == expected_length && memcmp(bytes, expected, length) == 0);
    bal_snapfile_free(bytes);
}

static void snapshot_path(char path[TEST_PATH_BYTES], const char *dir, uint64_t lsn, const char *suffix) {
    char name[64];
    snprintf(name, sizeof name, "%020" PRIu64 "%s", lsn, suffix);
    test_path_join(path, dir, name);
}

static void test_round_trip_and_none(uint64_t seed) {
    char root[TEST_PATH_BYTES], dir[TEST_PATH_BYTES], errstr[BAL_SNAPFILE_MESSAGE_BYTES];
    test_tempdir_create(root);
    test_path_join(dir, root, "snapshots");
    uint64_t lsn = 7;
    void *bytes = (void *)1;
    size_t length = 7;
    /* No directory, then an empty one: "none", start from the empty state. */
    CHECK(bal_snapfile_load_latest(dir, &lsn, &bytes, &length, NULL, errstr, sizeof errstr) == BAL_SNAPFILE_NONE);
    CHECK(lsn == 0 && bytes == NULL && length == 0);
    write_snapshot(dir, seed, 1000, 0); /* creates the directory */
    expect_load(dir, seed, 1000, NULL);
    /* Empty payload and LSN 0 (the state before any record) are valid snapshots. */
    CHECK(bal_snapfile_write(dir, 0, NULL, 0, 0, errstr, sizeof errstr) == BAL_SNAPFILE_OK);
    CHECK(bal_snapfile_write(dir, 2000, NULL, 0, 0, errstr, sizeof errstr) == BAL_SNAPFILE_OK);
    CHECK(bal_snapfile_load_latest(dir, &lsn, &bytes, &length, NULL, errstr, sizeof errstr) == BAL_SNAPFILE_OK);
    CHECK(lsn == 2000 && length == 0 && bytes != NULL);
    bal_snapfile_free(bytes);
    /* The same LSN again replaces the file. */
    write_snapshot(dir, seed, 2000, 0);
    expect_load(dir, seed, 2000, NULL);
    /* A large one. */
    uint8_t *large = malloc(LARGE_SNAPSHOT_BYTES);
    CHECK(large != NULL);
    uint64_t state = seed;
    for (size_t i = 0; i < LARGE_SNAPSHOT_BYTES; i++) large[i] = (uint8_t)test_random_next(&state);
    CHECK(bal_snapfile_write(dir, 3000, large, LARGE_SNAPSHOT_BYTES, 0, errstr, sizeof errstr) == BAL_SNAPFILE_OK);
    CHECK(bal_snapfile_load_latest(dir, &lsn, &bytes, &length, NULL, errstr, sizeof errstr) == BAL_SNAPFILE_OK);
    CHECK(lsn == 3000 && length == LARGE_SNAPSHOT_BYTES && memcmp(bytes, large, length) == 0);
    bal_snapfile_free(bytes);
    free(large);
    CHECK(bal_snapfile_write(dir, 1, "x", 1, BAL_SNAPFILE_KEEP_MAX + 1, errstr, sizeof errstr) ==
          BAL_SNAPFILE_INVALID_ARGUMENT);
    test_tempdir_remove(root);
}

static void test_keep_count(uint64_t seed) {
    char dir[TEST_PATH_BYTES];
    test_tempdir_create(dir);
    for (uint64_t lsn = 100; lsn <= 500; lsn += 100) write_snapshot(dir, seed, lsn, 0);
    CHECK(test_list_names(dir, ".snap", names, TEST_NAMES_MAX) == 2);
    CHECK(strcmp(names[0], "00000000000000000400.snap") == 0 && strcmp(names[1], "00000000000000000500.snap") == 0);
    for (uint64_t lsn = 600; lsn <= 900; lsn += 100) write_snapshot(dir, seed, lsn, 3);
    CHECK(test_list_names(dir, ".snap", names, TEST_NAMES_MAX) == 3);
    CHECK(strcmp(names[0], "00000000000000000700.snap") == 0);
    write_snapshot(dir, seed, 1000, 1);
    CHECK(test_list_names(dir, ".snap", names, TEST_NAMES_MAX) == 1);
    expect_load(dir, seed, 1000, NULL);
    CHECK(test_list_names(dir, ".tmp", names, TEST_NAMES_MAX) == 0); /* no temporary left */
    test_tempdir_remove(dir);
}

/* Damages the newest of (10, 20) with `damage`, then expects 10 with one rejection whose
 * reason contains `reason_needle`, and the damaged file moved aside. */
static void check_fallback(uint64_t seed, void (*damage)(const char *path), const char *reason_needle) {
    char dir[TEST_PATH_BYTES], path[TEST_PATH_BYTES], moved[TEST_PATH_BYTES];
    test_tempdir_create(dir);
    write_snapshot(dir, seed, 10, 0);
    write_snapshot(dir, seed, 20, 0);
    snapshot_path(path, dir, 20, ".snap");
    damage(path);
    bal_snapfile_load_report report;
    expect_load(dir, seed, 10, &report);
    CHECK(report.rejected_count == 1 && report.rejected[0].lsn == 20);
    CHECK(strcmp(report.rejected[0].name, "00000000000000000020.snap") == 0);
    CHECK_MESSAGE(strstr(report.rejected[0].reason, reason_needle) != NULL, report.rejected[0].reason);
    printf("  fell back past %s: %s\n", report.rejected[0].name, report.rejected[0].reason);
    snapshot_path(moved, dir, 20, ".snap.corrupt");
    CHECK(!test_file_exists(path) && test_file_exists(moved));
    expect_load(dir, seed, 10, &report); /* the next start does not trip over it again */
    CHECK(report.rejected_count == 0);
    /* A new snapshot counts only valid-looking names: 10 and 30 stay with keep 2. */
    write_snapshot(dir, seed, 30, 0);
    expect_load(dir, seed, 30, NULL);
    CHECK(test_list_names(dir, ".snap", names, TEST_NAMES_MAX) == 2);
    test_tempdir_remove(dir);
}

static void damage_payload_byte(const char *path) {
    test_file_xor_byte(path, test_file_size(path) - 1, 0x04);
}
static void damage_truncate_payload(const char *path) {
    test_file_truncate(path, test_file_size(path) - 1);
}
static void damage_truncate_header(const char *path) {
    test_file_truncate(path, BAL_SNAPFILE_HEADER_BYTES / 2);
}
static void damage_magic(const char *path) {
    test_file_xor_byte(path, 1, 0xff);
}
static void damage_header_lsn(const char *path) {
    test_file_xor_byte(path, 16, 0x01);
}
static void damage_trailing_bytes(const char *path) {
    test_file_append_zeros(path, 3);
}
static void damage_empty(const char *path) {
    test_file_truncate(path, 0);
}

static void test_fallbacks(uint64_t seed) {
    check_fallback(seed, damage_payload_byte, "payload checksum mismatch");
    check_fallback(seed, damage_truncate_payload, "truncated");
    check_fallback(seed, damage_truncate_header, "shorter than the header");
    check_fallback(seed, damage_magic, "bad magic");
    check_fallback(seed, damage_header_lsn, "header checksum");
    check_fallback(seed, damage_trailing_bytes, "trailing bytes");
    check_fallback(seed, damage_empty, "truncated");
}

/* The header's LSN must match the name: a file renamed by hand is not trusted. */
static void test_renamed_snapshot(uint64_t seed) {
    char dir[TEST_PATH_BYTES], from[TEST_PATH_BYTES], to[TEST_PATH_BYTES];
    test_tempdir_create(dir);
    write_snapshot(dir, seed, 10, 0);
    write_snapshot(dir, seed, 20, 0);
    snapshot_path(from, dir, 20, ".snap");
    snapshot_path(to, dir, 25, ".snap");
    CHECK(rename(from, to) == 0);
    bal_snapfile_load_report report;
    expect_load(dir, seed, 10, &report);
    CHECK(report.rejected_count == 1 && report.rejected[0].lsn == 25);
    CHECK(strstr(report.rejected[0].reason, "differs from the file name") != NULL);
    test_tempdir_remove(dir);
}

static void test_all_corrupt(uint64_t seed) {
    char dir[TEST_PATH_BYTES], path[TEST_PATH_BYTES], errstr[BAL_SNAPFILE_MESSAGE_BYTES];
    test_tempdir_create(dir);
    write_snapshot(dir, seed, 10, 0);
    write_snapshot(dir, seed, 20, 0);
    snapshot_path(path, dir, 10, ".snap");
    damage_magic(path);
    snapshot_path(path, dir, 20, ".snap");
    damage_truncate_payload(path);
    uint64_t lsn = 0;
    void *bytes = NULL;
    size_t length = 0;
    bal_snapfile_load_report report;
    bal_snapfile_status status = bal_snapfile_load_latest(dir, &lsn, &bytes, &length, &report, errstr, sizeof errstr);
    CHECK_MESSAGE(status == BAL_SNAPFILE_CORRUPT, errstr); /* never "none": that would start empty */
    CHECK(bytes == NULL && report.rejected_count == 2);
    CHECK(strstr(errstr, "none is valid") != NULL && strstr(errstr, "00000000000000000020.snap") != NULL);
    printf("  all corrupt: %s\n", errstr);
    test_tempdir_remove(dir);
}

/* A crash during a write leaves "<lsn>.snap.tmp": ignored, even if newer, and removed. */
static void test_leftover_temporary(uint64_t seed) {
    char dir[TEST_PATH_BYTES], path[TEST_PATH_BYTES];
    test_tempdir_create(dir);
    write_snapshot(dir, seed, 10, 0);
    write_snapshot(dir, seed, 20, 0);
    snapshot_path(path, dir, 30, ".snap.tmp");
    test_file_write(path, "partial", 7);
    bal_snapfile_load_report report;
    expect_load(dir, seed, 20, &report);
    CHECK(report.temporary_files_removed == 1 && report.rejected_count == 0 && !test_file_exists(path));
    /* A leftover with the same LSN as the next write is simply overwritten. */
    test_file_write(path, "partial", 7);
    write_snapshot(dir, seed, 30, 0);
    expect_load(dir, seed, 30, &report);
    CHECK(!test_file_exists(path));
    test_tempdir_remove(dir);
}

int main(void) {
    uint64_t seed = test_seed("wal/snapfile");
    test_round_trip_and_none(seed);
    test_keep_count(seed);
    test_fallbacks(seed);
    test_renamed_snapshot(seed);
    test_all_corrupt(seed);
    test_leftover_temporary(seed);
    printf("wal/snapfile: ok\n");
    return 0;
}
