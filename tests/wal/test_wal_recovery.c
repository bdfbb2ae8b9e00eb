/*
 * test_wal_recovery.c -- damaged logs: what open cuts, what it refuses, and what it says.
 *
 * Each case builds a log, damages its files the way a crash or a bad disk would, and
 * checks the outcome: a torn tail of the last segment is cut (and reported, and only that
 * record is lost); any other damage is refused with a message naming the file and the byte
 * offset. Record offsets are computed from the payload generator, so the tests know
 * exactly where each record lies.
 */
#include <inttypes.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bal_wal.h"
#include "wal_test_support.h"

/* Small segments so that a few hundred records make several of them. */
#define RECOVERY_SEGMENT_BYTES BAL_WAL_SEGMENT_BYTES_MIN
#define RECOVERY_PAYLOAD_MAX 300
/* The zeroed hole of the window-scan test: larger than the 4 MiB read buffer. */
#define HOLE_BYTES (5u << 20)

static uint8_t payload_buffer[BAL_WAL_RECORD_PAYLOAD_BYTES_MAX];
static uint8_t scratch_buffer[BAL_WAL_RECORD_PAYLOAD_BYTES_MAX];
static char names[TEST_NAMES_MAX][64];

static size_t small_payload(uint64_t seed, uint64_t lsn, uint8_t *buffer) {
    return test_payload(seed, lsn, RECOVERY_PAYLOAD_MAX, buffer);
}

static uint64_t record_bytes(uint64_t seed, uint64_t lsn) {
    return BAL_WAL_RECORD_HEADER_BYTES + small_payload(seed, lsn, scratch_buffer);
}

/* Byte offset of record `lsn` in the segment whose first record is `first_lsn`. */
static uint64_t record_offset(uint64_t seed, uint64_t first_lsn, uint64_t lsn) {
    uint64_t offset = BAL_WAL_SEGMENT_HEADER_BYTES;
    for (uint64_t k = first_lsn; k < lsn; k++) offset += record_bytes(seed, k);
    return offset;
}

static void build_log(const char *dir, const bal_wal_options *options, uint64_t seed, uint64_t count) {
    char errstr[BAL_WAL_MESSAGE_BYTES];
    bal_wal *wal = NULL;
    CHECK_MESSAGE(bal_wal_open(dir, options, &wal, NULL, errstr, sizeof errstr) == BAL_WAL_OK, errstr);
    for (uint64_t lsn = 1; lsn <= count; lsn++) {
        uint64_t got = 0;
        size_t length = small_payload(seed, lsn, payload_buffer);
        CHECK(bal_wal_append(wal, payload_buffer, length, &got) == BAL_WAL_OK && got == lsn);
        /* Several syncs per segment in small logs; fewer in the big ones, to keep it quick. */
        if (lsn % (count <= 1000 ? 7 : 1000) == 0) CHECK(bal_wal_sync(wal) == BAL_WAL_OK);
    }
    CHECK_MESSAGE(bal_wal_close(wal, errstr, sizeof errstr) == BAL_WAL_OK, errstr);
}

/* Opens, checks every record by replay, closes. Returns the status of open. */
static bal_wal_status open_and_verify(const char *dir, const bal_wal_options *options, uint64_t seed,
                                      bal_wal_open_report *report, char *errstr, size_t errstr_size) {
    bal_wal *wal = NULL;
    bal_wal_status status = bal_wal_open(dir, options, &wal, report, errstr, errstr_size);
    if (status != BAL_WAL_OK) {
        CHECK(wal == NULL && errstr[0] != '\0');
        return status;
    }
    test_replay_check check = {.seed = seed, .payload_fn = small_payload, .expected_lsn = bal_wal_first_lsn(wal),
                               .scratch = scratch_buffer};
    CHECK_MESSAGE(bal_wal_replay(wal, bal_wal_first_lsn(wal), test_replay_verify, &check) == BAL_WAL_OK,
                  bal_wal_errstr(wal));
    CHECK(check.expected_lsn == bal_wal_next_lsn(wal));
    char close_errstr[BAL_WAL_MESSAGE_BYTES];
    CHECK_MESSAGE(bal_wal_close(wal, close_errstr, sizeof close_errstr) == BAL_WAL_OK, close_errstr);
    return status;
}

/* Builds a multi-segment log in a fresh directory; returns the segment count. */
static size_t setup(char dir[TEST_PATH_BYTES], const bal_wal_options *options, uint64_t seed, uint64_t count) {
    test_tempdir_create(dir);
    build_log(dir, options, seed, count);
    size_t segment_count = test_list_names(dir, ".wal", names, TEST_NAMES_MAX);
    CHECK(segment_count >= 1);
    return segment_count;
}

static void segment_path(char path[TEST_PATH_BYTES], const char *dir, size_t index) {
    test_path_join(path, dir, names[index]);
}

static uint64_t segment_first_lsn(size_t index) {
    return strtoull(names[index], NULL, 10);
}

/* Expects open to refuse with BAL_WAL_CORRUPT and a message holding every given needle. */
static void expect_refusal(const char *dir, const bal_wal_options *options, uint64_t seed, const char *needle_1,
                           const char *needle_2, const char *needle_3) {
    char errstr[BAL_WAL_MESSAGE_BYTES];
    bal_wal_open_report report;
    bal_wal_status status = open_and_verify(dir, options, seed, &report, errstr, sizeof errstr);
    CHECK_MESSAGE(status == BAL_WAL_CORRUPT, errstr);
    CHECK_MESSAGE(strstr(errstr, needle_1) != NULL, errstr);
    CHECK_MESSAGE(needle_2 == NULL || strstr(errstr, needle_2) != NULL, errstr);
    CHECK_MESSAGE(needle_3 == NULL || strstr(errstr, needle_3) != NULL, errstr);
    printf("  refused as expected: %s\n", errstr);
}

static void test_truncated_tail_every_offset(uint64_t seed) {
    char dir[TEST_PATH_BYTES], path[TEST_PATH_BYTES], errstr[BAL_WAL_MESSAGE_BYTES];
    bal_wal_options options = {.segment_bytes = RECOVERY_SEGMENT_BYTES};
    const uint64_t last_lsn = 60;
    size_t count = setup(dir, &options, seed, last_lsn);
    CHECK(count >= 2);
    segment_path(path, dir, count - 1);
    size_t original_size = 0;
    uint8_t *original = test_file_read(path, &original_size);
    uint64_t start = record_offset(seed, segment_first_lsn(count - 1), last_lsn);
    CHECK(start + record_bytes(seed, last_lsn) == original_size);
    for (uint64_t cut = start; cut < original_size; cut++) {
        test_file_write(path, original, (size_t)cut);
        bal_wal_open_report report;
        CHECK_MESSAGE(open_and_verify(dir, &options, seed, &report, errstr, sizeof errstr) == BAL_WAL_OK, errstr);
        CHECK(report.next_lsn == last_lsn); /* only the torn record is gone */
        CHECK(report.tail_truncated == (cut > start));
        if (report.tail_truncated) {
            CHECK(report.tail_offset == start && report.tail_bytes_removed == cut - start);
            CHECK_MESSAGE(strstr(report.message, names[count - 1]) != NULL, report.message);
            CHECK_MESSAGE(strstr(report.message, "torn tail") != NULL, report.message);
        }
        CHECK(test_file_size(path) == start);
    }
    printf("truncated tail: %" PRIu64 " cut points, each cut back to offset %" PRIu64 "\n", original_size - start,
           start);
    free(original);
    test_tempdir_remove(dir);
}

static void test_flipped_byte_in_earlier_segment(uint64_t seed) {
    char dir[TEST_PATH_BYTES], path[TEST_PATH_BYTES], errstr[BAL_WAL_MESSAGE_BYTES], offset_text[64];
    bal_wal_options options = {.segment_bytes = RECOVERY_SEGMENT_BYTES};
    size_t count = setup(dir, &options, seed, 200);
    CHECK(count >= 4);
    uint64_t lsn = segment_first_lsn(1) + 2;
    uint64_t offset = record_offset(seed, segment_first_lsn(1), lsn);
    segment_path(path, dir, 1);
    test_file_xor_byte(path, offset + record_bytes(seed, lsn) / 2, 0x40);
    snprintf(offset_text, sizeof offset_text, "offset %" PRIu64 ":", offset);
    expect_refusal(dir, &options, seed, names[1], offset_text, "not a torn tail");
    test_file_xor_byte(path, offset + record_bytes(seed, lsn) / 2, 0x40); /* repaired: opens again */
    bal_wal_open_report report;
    CHECK_MESSAGE(open_and_verify(dir, &options, seed, &report, errstr, sizeof errstr) == BAL_WAL_OK, errstr);
    CHECK(report.next_lsn == 201 && !report.tail_truncated);
    test_tempdir_remove(dir);
}

static void test_flipped_byte_in_last_segment(uint64_t seed) {
    char dir[TEST_PATH_BYTES], path[TEST_PATH_BYTES], errstr[BAL_WAL_MESSAGE_BYTES], offset_text[64];
    const uint64_t last_lsn = 100;
    size_t count = setup(dir, NULL, seed, last_lsn); /* one segment */
    CHECK(count == 1);
    segment_path(path, dir, 0);
    /* A middle record: valid records follow, so this is not a torn write. */
    uint64_t offset = record_offset(seed, 1, 50);
    test_file_xor_byte(path, offset + record_bytes(seed, 50) / 2, 0x01);
    snprintf(offset_text, sizeof offset_text, "offset %" PRIu64 ":", offset);
    expect_refusal(dir, NULL, seed, names[0], offset_text, "follows at offset");
    test_file_xor_byte(path, offset + record_bytes(seed, 50) / 2, 0x01);
    /* The last record: a torn write, cut. */
    offset = record_offset(seed, 1, last_lsn);
    test_file_xor_byte(path, offset + record_bytes(seed, last_lsn) - 1, 0x80);
    bal_wal_open_report report;
    CHECK_MESSAGE(open_and_verify(dir, NULL, seed, &report, errstr, sizeof errstr) == BAL_WAL_OK, errstr);
    CHECK(report.tail_truncated && report.tail_offset == offset && report.next_lsn == last_lsn);
    CHECK_MESSAGE(strstr(report.message, "checksum mismatch") != NULL, report.message);
    /* Now record 99 is last; a huge length in its header is a torn write too. */
    offset = record_offset(seed, 1, last_lsn - 1);
    uint8_t huge[4] = {0xf0, 0xff, 0xff, 0xff};
    test_file_write_at(path, offset + 4, huge, sizeof huge);
    CHECK_MESSAGE(open_and_verify(dir, NULL, seed, &report, errstr, sizeof errstr) == BAL_WAL_OK, errstr);
    CHECK(report.tail_truncated && report.tail_offset == offset && report.next_lsn == last_lsn - 1);
    CHECK_MESSAGE(strstr(report.message, "over the maximum") != NULL, report.message);
    /* And a length that runs past the end of the file. */
    offset = record_offset(seed, 1, last_lsn - 2);
    uint8_t longer[4] = {0x00, 0x10, 0x00, 0x00}; /* 4096 bytes */
    test_file_write_at(path, offset + 4, longer, sizeof longer);
    CHECK_MESSAGE(open_and_verify(dir, NULL, seed, &report, errstr, sizeof errstr) == BAL_WAL_OK, errstr);
    CHECK(report.tail_truncated && report.next_lsn == last_lsn - 2);
    CHECK_MESSAGE(strstr(report.message, "payload cut short") != NULL, report.message);
    test_tempdir_remove(dir);
}

static void test_zero_filled_tail(uint64_t seed) {
    char dir[TEST_PATH_BYTES], path[TEST_PATH_BYTES], errstr[BAL_WAL_MESSAGE_BYTES];
    bal_wal_options options = {.segment_bytes = RECOVERY_SEGMENT_BYTES};
    const uint64_t last_lsn = 80;
    size_t count = setup(dir, &options, seed, last_lsn);
    segment_path(path, dir, count - 1);
    uint64_t size = test_file_size(path);
    /* Zeros after the last record (a preallocated or extended-but-unwritten tail). */
    test_file_append_zeros(path, 10000);
    bal_wal_open_report report;
    CHECK_MESSAGE(open_and_verify(dir, &options, seed, &report, errstr, sizeof errstr) == BAL_WAL_OK, errstr);
    CHECK(report.tail_truncated && report.tail_offset == size && report.tail_bytes_removed == 10000);
    CHECK(report.next_lsn == last_lsn + 1 && test_file_size(path) == size);
    CHECK_MESSAGE(strstr(report.message, "zero-filled") != NULL, report.message);
    /* The last record's bytes zeroed in place (its pages never reached the disk). */
    uint64_t offset = record_offset(seed, segment_first_lsn(count - 1), last_lsn);
    test_file_truncate(path, offset);
    test_file_append_zeros(path, (size_t)(size - offset));
    CHECK_MESSAGE(open_and_verify(dir, &options, seed, &report, errstr, sizeof errstr) == BAL_WAL_OK, errstr);
    CHECK(report.tail_truncated && report.tail_offset == offset && report.next_lsn == last_lsn);
    CHECK_MESSAGE(strstr(report.message, "zero-filled") != NULL, report.message);
    test_tempdir_remove(dir);
}

/* Damage far from the next valid record: the tail scan must look across read windows. */
static void test_large_zeroed_regions(uint64_t seed) {
    char dir[TEST_PATH_BYTES], path[TEST_PATH_BYTES], errstr[BAL_WAL_MESSAGE_BYTES];
    const uint64_t last_lsn = 70000; /* about 11 MB in one segment */
    size_t count = setup(dir, NULL, seed, last_lsn);
    CHECK(count == 1);
    segment_path(path, dir, 0);
    uint64_t size = test_file_size(path);
    uint64_t offset = record_offset(seed, 1, 1000);
    CHECK(offset + HOLE_BYTES + (1u << 20) < size);
    uint8_t *zeros = calloc(1, HOLE_BYTES);
    CHECK(zeros != NULL);
    size_t original_size = 0;
    uint8_t *original = test_file_read(path, &original_size);
    test_file_write_at(path, offset, zeros, HOLE_BYTES);
    expect_refusal(dir, NULL, seed, names[0], "follows at offset", NULL);
    /* Zeros from there to the end of the file: nothing valid follows, so it is a tail. */
    test_file_truncate(path, offset);
    test_file_append_zeros(path, (size_t)(size - offset));
    bal_wal_open_report report;
    CHECK_MESSAGE(open_and_verify(dir, NULL, seed, &report, errstr, sizeof errstr) == BAL_WAL_OK, errstr);
    CHECK(report.tail_truncated && report.tail_offset == offset && report.next_lsn == 1000);
    CHECK_MESSAGE(strstr(report.message, "zero-filled") != NULL, report.message);
    /* A single damaged record just before the end of a long run of valid data is found. */
    test_file_write(path, original, original_size);
    uint64_t late = record_offset(seed, 1, last_lsn - 3);
    test_file_xor_byte(path, late + 2, 0x10);
    expect_refusal(dir, NULL, seed, "follows at offset", NULL, NULL);
    free(original);
    free(zeros);
    test_tempdir_remove(dir);
}

static void test_missing_and_misnamed_segments(uint64_t seed) {
    char dir[TEST_PATH_BYTES], path[TEST_PATH_BYTES], other[TEST_PATH_BYTES];
    bal_wal_options options = {.segment_bytes = RECOVERY_SEGMENT_BYTES};
    size_t count = setup(dir, &options, seed, 200);
    CHECK(count >= 4);
    /* A middle segment vanished: a gap in the LSNs. */
    segment_path(path, dir, 2);
    test_path_join(other, dir, "moved-away");
    CHECK(rename(path, other) == 0);
    expect_refusal(dir, &options, seed, "missing", names[1], names[3]);
    CHECK(rename(other, path) == 0);
    /* A record with a valid checksum but the wrong LSN (a record copied to the end). */
    size_t last = count - 1;
    segment_path(path, dir, last);
    uint64_t first = segment_first_lsn(last);
    size_t size = 0;
    uint8_t *bytes = test_file_read(path, &size);
    test_file_write_at(path, size, bytes + BAL_WAL_SEGMENT_HEADER_BYTES, (size_t)record_bytes(seed, first));
    expect_refusal(dir, &options, seed, names[last], "out-of-sequence", NULL);
    test_file_write(path, bytes, size);
    free(bytes);
    /* The first segment renamed to LSN 0: its header disagrees with its name. */
    segment_path(path, dir, 0);
    test_path_join(other, dir, "00000000000000000000.wal");
    CHECK(rename(path, other) == 0);
    expect_refusal(dir, &options, seed, "00000000000000000000.wal", "offset 0", "differs from the file name");
    CHECK(rename(other, path) == 0);
    char errstr[BAL_WAL_MESSAGE_BYTES];
    CHECK_MESSAGE(open_and_verify(dir, &options, seed, NULL, errstr, sizeof errstr) == BAL_WAL_OK, errstr);
    test_tempdir_remove(dir);
}

static void test_bad_segment_headers(uint64_t seed) {
    char dir[TEST_PATH_BYTES], path[TEST_PATH_BYTES];
    bal_wal_options options = {.segment_bytes = RECOVERY_SEGMENT_BYTES};
    size_t count = setup(dir, &options, seed, 200);
    CHECK(count >= 3);
    segment_path(path, dir, 0);
    test_file_xor_byte(path, 0, 0x20);
    expect_refusal(dir, &options, seed, names[0], "offset 0", "bad magic");
    test_file_xor_byte(path, 0, 0x20);
    uint8_t version[4] = {2, 0, 0, 0};
    test_file_write_at(path, 8, version, sizeof version);
    expect_refusal(dir, &options, seed, names[0], "version", NULL);
    uint8_t version_one[4] = {1, 0, 0, 0};
    test_file_write_at(path, 8, version_one, sizeof version_one);
    test_file_xor_byte(path, 24, 0x01); /* reserved field: only the header CRC notices */
    expect_refusal(dir, &options, seed, names[0], "header checksum", NULL);
    test_file_xor_byte(path, 24, 0x01);
    /* The last segment's header is protected the same way (segments appear atomically). */
    segment_path(path, dir, count - 1);
    test_file_xor_byte(path, 17, 0x01);
    expect_refusal(dir, &options, seed, names[count - 1], "offset 0", NULL);
    test_file_truncate(path, 20);
    expect_refusal(dir, &options, seed, names[count - 1], "shorter than a segment header", NULL);
    test_file_truncate(path, 0);
    expect_refusal(dir, &options, seed, names[count - 1], "shorter than a segment header", NULL);
    test_tempdir_remove(dir);
}

/* A crash while a new segment was being created leaves "<lsn>.wal.tmp": removed. */
static void test_temporary_segment_removed(uint64_t seed) {
    char dir[TEST_PATH_BYTES], path[TEST_PATH_BYTES], errstr[BAL_WAL_MESSAGE_BYTES];
    size_t count = setup(dir, NULL, seed, 30);
    CHECK(count == 1);
    test_path_join(path, dir, "00000000000000000031.wal.tmp");
    test_file_write(path, "half a header", 13);
    bal_wal_open_report report;
    CHECK_MESSAGE(open_and_verify(dir, NULL, seed, &report, errstr, sizeof errstr) == BAL_WAL_OK, errstr);
    CHECK(report.temporary_files_removed == 1 && !test_file_exists(path) && report.next_lsn == 31);
    test_path_join(path, dir, "notes.txt"); /* unrelated files are left alone */
    test_file_write(path, "x", 1);
    CHECK_MESSAGE(open_and_verify(dir, NULL, seed, &report, errstr, sizeof errstr) == BAL_WAL_OK, errstr);
    CHECK(test_file_exists(path));
    test_tempdir_remove(dir);
}

/* A write that fails (here: the file size limit) fails the log for good; reopening
 * recovers every record that was synced. Runs in a child because of setrlimit. */
static void test_write_failure(uint64_t seed) {
    char dir[TEST_PATH_BYTES], errstr[BAL_WAL_MESSAGE_BYTES];
    test_tempdir_create(dir);
    int pipe_fds[2];
    CHECK(pipe(pipe_fds) == 0);
    pid_t child = fork();
    CHECK(child >= 0);
    if (child == 0) {
        close(pipe_fds[0]);
        signal(SIGXFSZ, SIG_IGN);
        /* Above the log's first zero-filled extension (16 MiB), so that some syncs succeed
         * before a write fails. */
        struct rlimit limit = {.rlim_cur = 20u << 20, .rlim_max = 20u << 20};
        CHECK(setrlimit(RLIMIT_FSIZE, &limit) == 0);
        bal_wal *wal = NULL;
        CHECK_MESSAGE(bal_wal_open(dir, NULL, &wal, NULL, errstr, sizeof errstr) == BAL_WAL_OK, errstr);
        uint64_t synced = 0;
        bal_wal_status status = BAL_WAL_OK;
        for (uint64_t lsn = 1; status == BAL_WAL_OK; lsn++) {
            CHECK(lsn < 1000000);
            uint64_t got = 0;
            CHECK(bal_wal_append(wal, payload_buffer, small_payload(seed, lsn, payload_buffer), &got) == BAL_WAL_OK);
            if (lsn % 5 != 0) continue;
            status = bal_wal_sync(wal);
            if (status == BAL_WAL_OK) synced = lsn;
        }
        CHECK_MESSAGE(status == BAL_WAL_IO && strstr(bal_wal_errstr(wal), "write") != NULL, bal_wal_errstr(wal));
        uint64_t got = 0;
        CHECK(bal_wal_append(wal, "x", 1, &got) == BAL_WAL_FAILED);
        CHECK(bal_wal_sync(wal) == BAL_WAL_FAILED);
        CHECK(bal_wal_remove_before(wal, 1, NULL) == BAL_WAL_FAILED);
        bal_wal_stats stats;
        bal_wal_stats_read(wal, &stats);
        CHECK(stats.failed == 1);
        CHECK(bal_wal_close(wal, errstr, sizeof errstr) == BAL_WAL_FAILED && strstr(errstr, "failed") != NULL);
        CHECK(write(pipe_fds[1], &synced, sizeof synced) == sizeof synced);
        _exit(0);
    }
    close(pipe_fds[1]);
    uint64_t synced = 0;
    CHECK(read(pipe_fds[0], &synced, sizeof synced) == sizeof synced);
    close(pipe_fds[0]);
    int wait_status = 0;
    CHECK(waitpid(child, &wait_status, 0) == child && WIFEXITED(wait_status) && WEXITSTATUS(wait_status) == 0);
    bal_wal_open_report report;
    CHECK_MESSAGE(open_and_verify(dir, NULL, seed, &report, errstr, sizeof errstr) == BAL_WAL_OK, errstr);
    CHECK(synced > 0 && report.next_lsn > synced);
    printf("write failure: %" PRIu64 " records synced before the failure, %" PRIu64 " recovered%s\n", synced,
           report.next_lsn - 1, report.tail_truncated ? ", torn tail cut" : "");
    test_tempdir_remove(dir);
}

/* Segments are kept zero-filled ahead of their records (so that a sync rewrites blocks
 * instead of growing the file). Every finished segment and a cleanly closed log are cut to
 * their exact size; a process that stops without closing leaves zeros, which the next open
 * cuts as a zero-filled tail without losing a synced record. */
static void test_zero_filled_ahead(uint64_t seed) {
    char dir[TEST_PATH_BYTES], path[TEST_PATH_BYTES], errstr[BAL_WAL_MESSAGE_BYTES];
    bal_wal_options options = {.segment_bytes = 64u << 10};
    const uint64_t last_lsn = 2000; /* several 64 KiB segments */
    size_t count = setup(dir, &options, seed, last_lsn);
    CHECK(count >= 3);
    for (size_t i = 0; i < count; i++) { /* clean close: every segment at its exact size */
        segment_path(path, dir, i);
        uint64_t first = segment_first_lsn(i);
        uint64_t end_lsn = i + 1 < count ? segment_first_lsn(i + 1) : last_lsn + 1;
        CHECK(test_file_size(path) == record_offset(seed, first, end_lsn));
    }
    pid_t child = fork();
    CHECK(child >= 0);
    if (child == 0) { /* appends and syncs more, then stops without closing */
        bal_wal *wal = NULL;
        if (bal_wal_open(dir, &options, &wal, NULL, errstr, sizeof errstr) != BAL_WAL_OK) _exit(2);
        for (uint64_t lsn = last_lsn + 1; lsn <= last_lsn + 10; lsn++) {
            uint64_t got = 0;
            if (bal_wal_append(wal, payload_buffer, small_payload(seed, lsn, payload_buffer), &got) != BAL_WAL_OK) _exit(3);
        }
        if (bal_wal_sync(wal) != BAL_WAL_OK) _exit(4);
        _exit(0);
    }
    int wait_status = 0;
    CHECK(waitpid(child, &wait_status, 0) == child && WIFEXITED(wait_status) && WEXITSTATUS(wait_status) == 0);
    /* The appends may have filled the last segment and begun another: the newest one holds
     * the zeros ahead. */
    size_t after = test_list_names(dir, ".wal", names, TEST_NAMES_MAX);
    CHECK(after == count || after == count + 1);
    segment_path(path, dir, after - 1);
    uint64_t logical = record_offset(seed, segment_first_lsn(after - 1), last_lsn + 11);
    /* The zeros ahead are there, up to about the segment's size target (64 KiB here), not
     * the 16 MiB a default segment is kept ahead by. */
    CHECK(test_file_size(path) > logical && test_file_size(path) <= options.segment_bytes + (64u << 10));
    bal_wal_open_report report;
    CHECK_MESSAGE(open_and_verify(dir, &options, seed, &report, errstr, sizeof errstr) == BAL_WAL_OK, errstr);
    CHECK(report.next_lsn == last_lsn + 11 && report.tail_truncated && report.tail_offset == logical);
    CHECK_MESSAGE(strstr(report.message, "zero-filled tail") != NULL, report.message);
    CHECK(test_file_size(path) == logical);
    CHECK_MESSAGE(open_and_verify(dir, &options, seed, &report, errstr, sizeof errstr) == BAL_WAL_OK, errstr);
    CHECK(!report.tail_truncated && report.next_lsn == last_lsn + 11);
    test_tempdir_remove(dir);
}

int main(void) {
    uint64_t seed = test_seed("wal/recovery");
    test_truncated_tail_every_offset(seed);
    test_flipped_byte_in_earlier_segment(seed);
    test_flipped_byte_in_last_segment(seed);
    test_zero_filled_tail(seed);
    test_zero_filled_ahead(seed);
    test_large_zeroed_regions(seed);
    test_missing_and_misnamed_segments(seed);
    test_bad_segment_headers(seed);
    test_temporary_segment_removed(seed);
    test_write_failure(seed);
    printf("wal/recovery: ok\n");
    return 0;
}
