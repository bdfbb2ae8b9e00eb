/*
 * test_wal_roundtrip.c -- records go in, the same records come back, across rotations and
 * reopens; group commit; the API's limits and refusals.
 *
 * Payloads are generated from (seed, lsn), so a replay can check every byte without
 * keeping a copy. A few LSNs get large payloads (up to the 1 MiB maximum) to force
 * segments that hold a single oversized record.
 */
#include <inttypes.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bal_wal.h"
#include "wal_test_support.h"

/* Records in the main round trip, and the size that makes it rotate often. */
#define ROUNDTRIP_RECORDS 6000
#define ROUNDTRIP_SEGMENT_BYTES (64u << 10)
/* Records in the group-commit test (one sync for all of them). */
#define GROUP_COMMIT_RECORDS 20000

static uint8_t payload_buffer[BAL_WAL_RECORD_PAYLOAD_BYTES_MAX];
static uint8_t scratch_buffer[BAL_WAL_RECORD_PAYLOAD_BYTES_MAX];

/* Mostly small records (0..2000 bytes); every 1009th is large, every 3001st maximal. */
static size_t roundtrip_payload(uint64_t seed, uint64_t lsn, uint8_t *buffer) {
    if (lsn % 3001 == 0) {
        memset(buffer, (int)(lsn & 0xff), BAL_WAL_RECORD_PAYLOAD_BYTES_MAX);
        return BAL_WAL_RECORD_PAYLOAD_BYTES_MAX;
    }
    size_t length_max = lsn % 1009 == 0 ? 200000 : 2000;
    return test_payload(seed, lsn, length_max, buffer);
}

static size_t small_payload(uint64_t seed, uint64_t lsn, uint8_t *buffer) {
    return test_payload(seed, lsn, 300, buffer);
}

static void append_records(bal_wal *wal, uint64_t seed, test_payload_fn payload_fn, uint64_t count,
                           uint64_t *random_state, uint32_t sync_every_max) {
    uint64_t until_sync = 1 + test_random_next(random_state) % sync_every_max;
    for (uint64_t i = 0; i < count; i++) {
        uint64_t expected = bal_wal_next_lsn(wal);
        size_t length = payload_fn(seed, expected, payload_buffer);
        uint64_t lsn = 0;
        CHECK_MESSAGE(bal_wal_append(wal, payload_buffer, length, &lsn) == BAL_WAL_OK, bal_wal_errstr(wal));
        CHECK(lsn == expected);
        if (--until_sync == 0) {
            CHECK_MESSAGE(bal_wal_sync(wal) == BAL_WAL_OK, bal_wal_errstr(wal));
            CHECK(bal_wal_synced_lsn(wal) == lsn);
            until_sync = 1 + test_random_next(random_state) % sync_every_max;
        }
    }
}

static uint64_t replay_and_check(bal_wal *wal, uint64_t seed, test_payload_fn payload_fn, uint64_t from_lsn) {
    test_replay_check check = {.seed = seed, .payload_fn = payload_fn, .expected_lsn = from_lsn,
                               .scratch = scratch_buffer};
    CHECK_MESSAGE(bal_wal_replay(wal, from_lsn, test_replay_verify, &check) == BAL_WAL_OK, bal_wal_errstr(wal));
    CHECK(check.expected_lsn == bal_wal_next_lsn(wal));
    return check.count;
}

static bal_wal *open_wal(const char *dir, const bal_wal_options *options, bal_wal_open_report *report) {
    char errstr[BAL_WAL_MESSAGE_BYTES];
    bal_wal *wal = NULL;
    bal_wal_status status = bal_wal_open(dir, options, &wal, report, errstr, sizeof errstr);
    CHECK_MESSAGE(status == BAL_WAL_OK, errstr);
    CHECK(wal != NULL);
    return wal;
}

static void close_wal(bal_wal *wal) {
    char errstr[BAL_WAL_MESSAGE_BYTES];
    CHECK_MESSAGE(bal_wal_close(wal, errstr, sizeof errstr) == BAL_WAL_OK, errstr);
}

static void test_round_trip(uint64_t seed) {
    char root[TEST_PATH_BYTES], dir[TEST_PATH_BYTES];
    test_tempdir_create(root);
    test_path_join(dir, root, "wal"); /* open creates it */
    bal_wal_options options = {.segment_bytes = ROUNDTRIP_SEGMENT_BYTES};
    bal_wal_open_report report;
    bal_wal *wal = open_wal(dir, &options, &report);
    CHECK(report.created && report.next_lsn == 1 && report.first_lsn == 1 && !report.tail_truncated);
    uint64_t random_state = seed;
    append_records(wal, seed, roundtrip_payload, ROUNDTRIP_RECORDS, &random_state, 100);
    bal_wal_stats stats;
    bal_wal_stats_read(wal, &stats);
    CHECK(stats.append_count == ROUNDTRIP_RECORDS && stats.rotation_count > 10);
    CHECK(replay_and_check(wal, seed, roundtrip_payload, 1) == ROUNDTRIP_RECORDS); /* includes unsynced */
    close_wal(wal);

    wal = open_wal(dir, &options, &report);
    CHECK(!report.created && !report.tail_truncated && report.temporary_files_removed == 0);
    CHECK(report.next_lsn == ROUNDTRIP_RECORDS + 1 && bal_wal_next_lsn(wal) == ROUNDTRIP_RECORDS + 1);
    CHECK(report.segment_count == stats.segment_count && report.segment_count > 10);
    printf("round trip: %" PRIu32 " segments, %" PRIu64 " rotations\n", report.segment_count, stats.rotation_count);
    CHECK(replay_and_check(wal, seed, roundtrip_payload, 1) == ROUNDTRIP_RECORDS);
    CHECK(replay_and_check(wal, seed, roundtrip_payload, 3001) == ROUNDTRIP_RECORDS - 3000);
    CHECK(replay_and_check(wal, seed, roundtrip_payload, ROUNDTRIP_RECORDS) == 1);
    CHECK(replay_and_check(wal, seed, roundtrip_payload, ROUNDTRIP_RECORDS + 1) == 0);
    append_records(wal, seed, roundtrip_payload, 500, &random_state, 50); /* LSNs continue */
    close_wal(wal);

    wal = open_wal(dir, &options, &report);
    CHECK(report.next_lsn == ROUNDTRIP_RECORDS + 501);
    CHECK(replay_and_check(wal, seed, roundtrip_payload, 1) == ROUNDTRIP_RECORDS + 500);
    close_wal(wal);
    test_tempdir_remove(root);
}

/* Many appends, one sync: one fdatasync makes all of them durable. */
static void test_group_commit(uint64_t seed) {
    char dir[TEST_PATH_BYTES];
    test_tempdir_create(dir);
    bal_wal *wal = open_wal(dir, NULL, NULL);
    uint64_t random_state = seed;
    append_records(wal, seed, small_payload, GROUP_COMMIT_RECORDS, &random_state, UINT32_MAX);
    bal_wal_stats stats;
    bal_wal_stats_read(wal, &stats);
    CHECK(stats.sync_count == 0 && stats.synced_lsn == 0 && bal_wal_synced_lsn(wal) == 0);
    /* ~3.3 MB of records: they wait in the 4 MiB buffer, with no system call per record. */
    CHECK(stats.write_count <= 1 && stats.append_count == GROUP_COMMIT_RECORDS);
    CHECK(bal_wal_sync(wal) == BAL_WAL_OK);
    CHECK(bal_wal_sync(wal) == BAL_WAL_OK); /* nothing new: no second fdatasync */
    bal_wal_stats_read(wal, &stats);
    CHECK(stats.sync_count == 1 && stats.synced_lsn == GROUP_COMMIT_RECORDS);
    CHECK(stats.sync_ns_last > 0 && stats.sync_ns_total == stats.sync_ns_last);
    CHECK(stats.sync_ns_max == stats.sync_ns_last);
    uint64_t histogram_total = 0;
    for (uint32_t i = 0; i < BAL_WAL_SYNC_BUCKET_COUNT; i++) histogram_total += stats.sync_histogram[i];
    CHECK(histogram_total == 1);
    CHECK(bal_wal_synced_lsn(wal) == GROUP_COMMIT_RECORDS);
    close_wal(wal);
    wal = open_wal(dir, NULL, NULL);
    CHECK(bal_wal_next_lsn(wal) == GROUP_COMMIT_RECORDS + 1);
    CHECK(replay_and_check(wal, seed, small_payload, 1) == GROUP_COMMIT_RECORDS);
    close_wal(wal);
    test_tempdir_remove(dir);
}

/* A process appends and syncs, appends more without syncing, and dies without closing:
 * the synced records are all there; of the others, any that survive are intact. */
static void test_unsynced_records(uint64_t seed) {
    char dir[TEST_PATH_BYTES];
    test_tempdir_create(dir);
    const uint64_t synced = 1000, unsynced = 300;
    pid_t child = fork();
    CHECK(child >= 0);
    if (child == 0) {
        bal_wal *wal = open_wal(dir, NULL, NULL);
        uint64_t random_state = seed;
        append_records(wal, seed, small_payload, synced, &random_state, UINT32_MAX);
        CHECK(bal_wal_sync(wal) == BAL_WAL_OK);
        append_records(wal, seed, small_payload, unsynced, &random_state, UINT32_MAX);
        _exit(0); /* no close, no sync */
    }
    int wait_status = 0;
    CHECK(waitpid(child, &wait_status, 0) == child);
    CHECK(WIFEXITED(wait_status) && WEXITSTATUS(wait_status) == 0);
    bal_wal *wal = open_wal(dir, NULL, NULL);
    uint64_t last = bal_wal_next_lsn(wal) - 1;
    CHECK(last >= synced && last <= synced + unsynced);
    CHECK(replay_and_check(wal, seed, small_payload, 1) == last);
    printf("unsynced: %" PRIu64 " synced records kept, %" PRIu64 " unsynced ones survived\n", synced, last - synced);
    close_wal(wal);
    test_tempdir_remove(dir);
}

static int stop_at_ten(void *context, uint64_t lsn, const void *payload, size_t length) {
    (void)payload;
    (void)length;
    uint64_t *seen = context;
    *seen = lsn;
    return lsn == 10;
}

static void test_limits_and_refusals(uint64_t seed) {
    char dir[TEST_PATH_BYTES], errstr[BAL_WAL_MESSAGE_BYTES];
    test_tempdir_create(dir);
    bal_wal *wal = NULL;
    bal_wal_options bad = {.segment_bytes = 100};
    CHECK(bal_wal_open(dir, &bad, &wal, NULL, errstr, sizeof errstr) == BAL_WAL_INVALID_ARGUMENT);
    CHECK(wal == NULL && strstr(errstr, "segment_bytes") != NULL);
    bad = (bal_wal_options){.write_buffer_bytes = 4096};
    CHECK(bal_wal_open(dir, &bad, &wal, NULL, errstr, sizeof errstr) == BAL_WAL_INVALID_ARGUMENT);
    CHECK(bal_wal_open("", NULL, &wal, NULL, errstr, sizeof errstr) == BAL_WAL_INVALID_ARGUMENT);

    wal = open_wal(dir, NULL, NULL);
    bal_wal *second = NULL;
    CHECK(bal_wal_open(dir, NULL, &second, NULL, errstr, sizeof errstr) == BAL_WAL_LOCKED);
    CHECK(second == NULL && strstr(errstr, "LOCK") != NULL);

    uint64_t lsn = 0;
    CHECK(bal_wal_append(wal, payload_buffer, BAL_WAL_RECORD_PAYLOAD_BYTES_MAX + 1, &lsn) == BAL_WAL_RECORD_TOO_LARGE);
    CHECK(strstr(bal_wal_errstr(wal), "over the maximum") != NULL);
    CHECK(bal_wal_append(wal, payload_buffer, BAL_WAL_RECORD_PAYLOAD_BYTES_MAX, &lsn) == BAL_WAL_OK && lsn == 1);
    CHECK(bal_wal_append(wal, NULL, 0, &lsn) == BAL_WAL_OK && lsn == 2); /* empty records are records */
    for (int i = 0; i < 20; i++) CHECK(bal_wal_append(wal, "x", 1, &lsn) == BAL_WAL_OK);
    uint64_t seen = 0;
    CHECK(bal_wal_replay(wal, 1, stop_at_ten, &seen) == BAL_WAL_STOPPED && seen == 10);
    CHECK(bal_wal_append(wal, "y", 1, &lsn) == BAL_WAL_OK && lsn == 23); /* the log goes on */
    close_wal(wal);
    (void)seed;
    test_tempdir_remove(dir);
}

/* A new log can start at a given LSN (e.g. after a snapshot restored elsewhere). */
static void test_first_lsn_option(void) {
    char dir[TEST_PATH_BYTES];
    test_tempdir_create(dir);
    bal_wal_options options = {.first_lsn = 1000};
    bal_wal_open_report report;
    bal_wal *wal = open_wal(dir, &options, &report);
    CHECK(report.created && report.next_lsn == 1000 && bal_wal_first_lsn(wal) == 1000);
    CHECK(bal_wal_synced_lsn(wal) == 999);
    uint64_t lsn = 0;
    CHECK(bal_wal_append(wal, "a", 1, &lsn) == BAL_WAL_OK && lsn == 1000);
    uint64_t seen = 0;
    CHECK(bal_wal_replay(wal, 999, stop_at_ten, &seen) == BAL_WAL_NOT_AVAILABLE);
    close_wal(wal);
    options.first_lsn = 5; /* ignored: the log exists */
    wal = open_wal(dir, &options, &report);
    CHECK(!report.created && report.first_lsn == 1000 && report.next_lsn == 1001);
    close_wal(wal);
    test_tempdir_remove(dir);
}

static void test_remove_before(uint64_t seed) {
    char dir[TEST_PATH_BYTES];
    test_tempdir_create(dir);
    bal_wal_options options = {.segment_bytes = BAL_WAL_SEGMENT_BYTES_MIN};
    bal_wal *wal = open_wal(dir, &options, NULL);
    uint64_t random_state = seed;
    append_records(wal, seed, small_payload, 400, &random_state, 20);
    char names[TEST_NAMES_MAX][64];
    size_t count = test_list_names(dir, ".wal", names, TEST_NAMES_MAX);
    CHECK(count >= 6);
    uint64_t first_lsns[TEST_NAMES_MAX];
    for (size_t i = 0; i < count; i++) first_lsns[i] = strtoull(names[i], NULL, 10);
    /* An LSN inside segment 3 (index 2): segments 0 and 1 hold only smaller LSNs. */
    uint32_t removed = 99;
    CHECK(bal_wal_remove_before(wal, first_lsns[2] + 1, &removed) == BAL_WAL_OK && removed == 2);
    CHECK(bal_wal_first_lsn(wal) == first_lsns[2]);
    CHECK(test_list_names(dir, ".wal", names, TEST_NAMES_MAX) == count - 2);
    /* Exactly the first LSN of a segment: the one before it goes, that one stays. */
    CHECK(bal_wal_remove_before(wal, first_lsns[4], &removed) == BAL_WAL_OK && removed == 2);
    CHECK(bal_wal_first_lsn(wal) == first_lsns[4]);
    CHECK(bal_wal_remove_before(wal, first_lsns[4], &removed) == BAL_WAL_OK && removed == 0);
    uint64_t seen = 0;
    CHECK(bal_wal_replay(wal, first_lsns[4] - 1, stop_at_ten, &seen) == BAL_WAL_NOT_AVAILABLE);
    CHECK(strstr(bal_wal_errstr(wal), "oldest record") != NULL);
    CHECK(replay_and_check(wal, seed, small_payload, first_lsns[4]) == 401 - first_lsns[4]);
    /* Everything: only the active segment stays, and appends go on. */
    CHECK(bal_wal_remove_before(wal, UINT64_MAX, &removed) == BAL_WAL_OK && removed == count - 5);
    CHECK(test_list_names(dir, ".wal", names, TEST_NAMES_MAX) == 1 && bal_wal_first_lsn(wal) == first_lsns[count - 1]);
    append_records(wal, seed, small_payload, 50, &random_state, 20);
    close_wal(wal);
    bal_wal_open_report report;
    wal = open_wal(dir, &options, &report);
    CHECK(report.first_lsn == first_lsns[count - 1] && report.next_lsn == 451);
    CHECK(replay_and_check(wal, seed, small_payload, report.first_lsn) == 451 - report.first_lsn);
    close_wal(wal);
    test_tempdir_remove(dir);
}

/* segments_max reached: append refuses without appending and without failing the log. */
static void test_segments_full(uint64_t seed) {
    char dir[TEST_PATH_BYTES];
    test_tempdir_create(dir);
    bal_wal_options options = {.segment_bytes = BAL_WAL_SEGMENT_BYTES_MIN, .segments_max = 3};
    bal_wal *wal = open_wal(dir, &options, NULL);
    bal_wal_status status = BAL_WAL_OK;
    uint64_t appended = 0;
    for (int i = 0; i < 10000 && status == BAL_WAL_OK; i++) {
        uint64_t lsn = 0;
        size_t length = small_payload(seed, bal_wal_next_lsn(wal), payload_buffer);
        status = bal_wal_append(wal, payload_buffer, length, &lsn);
        if (status == BAL_WAL_OK) appended = lsn;
    }
    CHECK(status == BAL_WAL_SEGMENTS_FULL && strstr(bal_wal_errstr(wal), "segments") != NULL);
    CHECK(bal_wal_next_lsn(wal) == appended + 1);
    CHECK(bal_wal_sync(wal) == BAL_WAL_OK && bal_wal_synced_lsn(wal) == appended);
    uint32_t removed = 0;
    CHECK(bal_wal_remove_before(wal, appended, &removed) == BAL_WAL_OK && removed == 2);
    uint64_t lsn = 0;
    size_t length = small_payload(seed, appended + 1, payload_buffer);
    CHECK(bal_wal_append(wal, payload_buffer, length, &lsn) == BAL_WAL_OK && lsn == appended + 1);
    close_wal(wal);
    test_tempdir_remove(dir);
}

int main(void) {
    uint64_t seed = test_seed("wal/roundtrip");
    signal(SIGPIPE, SIG_IGN);
    test_round_trip(seed);
    test_group_commit(seed);
    test_unsynced_records(seed);
    test_limits_and_refusals(seed);
    test_first_lsn_option();
    test_remove_before(seed);
    test_segments_full(seed);
    printf("wal/roundtrip: ok\n");
    return 0;
}
