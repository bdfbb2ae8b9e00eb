/*
 * test_wal_close.c -- what a clean close costs, and how it fails.
 *
 * A clean close leaves the active segment written, at its exact size and synced, with one
 * sync of the segment: none when nothing waits (every record synced, no zeros ahead). A
 * failing ftruncate (cutting the zeros ahead) fails the close with a message naming the
 * call and the file, and the records synced before are all there on the next open. A
 * failing fdatasync fails the handle for good (the kernel may have dropped the dirty pages,
 * so a retry could report success for data that is gone): every later call answers
 * BAL_WAL_FAILED, and the next open finds the records synced before the failure.
 *
 * This executable defines fsync, fdatasync and ftruncate itself: the statically linked log
 * calls these definitions instead of libc's, which count the calls (and fail ftruncate on
 * demand) and then make the system call.
 */
#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#include "bal_wal.h"
#include "wal_test_support.h"

static int sync_calls, truncate_calls;
static bool truncate_fails, datasync_fails;

int fsync(int fd) {
    sync_calls++;
    return (int)syscall(SYS_fsync, fd);
}

int fdatasync(int fd) {
    sync_calls++;
    if (datasync_fails) {
        errno = EIO;
        return -1;
    }
    return (int)syscall(SYS_fdatasync, fd);
}

int ftruncate(int fd, off_t length) {
    truncate_calls++;
    if (truncate_fails) {
        errno = EIO;
        return -1;
    }
    return (int)syscall(SYS_ftruncate, fd, length);
}

static uint8_t payload[256];

static bal_wal *open_wal_report(const char *dir, bal_wal_open_report *report) {
    char errstr[BAL_WAL_MESSAGE_BYTES];
    bal_wal *wal = NULL;
    bal_wal_options options = {.segment_bytes = 1u << 20};
    CHECK_MESSAGE(bal_wal_open(dir, &options, &wal, report, errstr, sizeof errstr) == BAL_WAL_OK, errstr);
    return wal;
}

/* Opens a log that a clean close left: no tail to cut. */
static bal_wal *open_wal(const char *dir, uint64_t *next_lsn_out) {
    bal_wal_open_report report;
    bal_wal *wal = open_wal_report(dir, &report);
    CHECK(!report.tail_truncated);
    if (next_lsn_out != NULL) *next_lsn_out = report.next_lsn;
    return wal;
}

static void append(bal_wal *wal, int count) {
    for (int i = 0; i < count; i++) {
        uint64_t lsn = 0;
        memset(payload, i & 0xff, sizeof payload);
        CHECK_MESSAGE(bal_wal_append(wal, payload, sizeof payload, &lsn) == BAL_WAL_OK, bal_wal_errstr(wal));
    }
}

static void close_counting(bal_wal *wal, int syncs_expected, int truncates_expected) {
    char errstr[BAL_WAL_MESSAGE_BYTES];
    sync_calls = truncate_calls = 0;
    CHECK_MESSAGE(bal_wal_close(wal, errstr, sizeof errstr) == BAL_WAL_OK, errstr);
    CHECK(sync_calls == syncs_expected);
    CHECK(truncate_calls == truncates_expected);
}

/* A new log in a new directory (written into dir) with count records appended and synced. */
static bal_wal *synced_log(char dir[TEST_PATH_BYTES], int count) {
    test_tempdir_create(dir);
    bal_wal *wal = open_wal(dir, NULL);
    append(wal, count);
    CHECK(bal_wal_sync(wal) == BAL_WAL_OK);
    return wal;
}

static void test_clean_close_syncs_once(void) {
    char dir[TEST_PATH_BYTES];
    /* Records waiting and zeros ahead (a new segment is zero-filled ahead of its records):
     * cut to size, one sync. */
    bal_wal *wal = synced_log(dir, 100);
    append(wal, 10);
    close_counting(wal, 1, 1);
    /* Reopened at its exact size: nothing appended, nothing to do. */
    uint64_t next_lsn = 0;
    wal = open_wal(dir, &next_lsn);
    CHECK(next_lsn == 111);
    close_counting(wal, 0, 0);
    /* Everything synced but zeros ahead again after new appends: the cut needs its sync. */
    wal = open_wal(dir, NULL);
    append(wal, 5);
    CHECK(bal_wal_sync(wal) == BAL_WAL_OK);
    close_counting(wal, 1, 1);
    wal = open_wal(dir, &next_lsn);
    CHECK(next_lsn == 116);
    close_counting(wal, 0, 0);
    test_tempdir_remove(dir);
}

static void test_failing_truncate(void) {
    char dir[TEST_PATH_BYTES], errstr[BAL_WAL_MESSAGE_BYTES];
    bal_wal *wal = synced_log(dir, 20);
    truncate_fails = true;
    CHECK(bal_wal_close(wal, errstr, sizeof errstr) == BAL_WAL_IO);
    truncate_fails = false;
    CHECK_MESSAGE(strstr(errstr, "ftruncate") != NULL && strstr(errstr, ".wal") != NULL, errstr);
    /* The synced records survive; the zeros left ahead are cut by the next open. */
    bal_wal_open_report report;
    wal = open_wal_report(dir, &report);
    CHECK(report.next_lsn == 21 && report.tail_truncated);
    close_counting(wal, 0, 0);
    test_tempdir_remove(dir);
}

static void test_failing_datasync(void) {
    char dir[TEST_PATH_BYTES], errstr[BAL_WAL_MESSAGE_BYTES];
    bal_wal *wal = synced_log(dir, 30);
    append(wal, 7);
    datasync_fails = true;
    CHECK(bal_wal_sync(wal) == BAL_WAL_IO);
    datasync_fails = false;
    CHECK_MESSAGE(strstr(bal_wal_errstr(wal), "fdatasync") != NULL, bal_wal_errstr(wal));
    CHECK(bal_wal_synced_lsn(wal) == 30);
    /* Failed for good, though the disk would now answer. */
    uint64_t lsn = 0;
    CHECK(bal_wal_append(wal, payload, sizeof payload, &lsn) == BAL_WAL_FAILED);
    CHECK(bal_wal_sync(wal) == BAL_WAL_FAILED);
    CHECK(bal_wal_close(wal, errstr, sizeof errstr) == BAL_WAL_FAILED);
    /* The 30 synced records are there; the 7 that were written but never confirmed may or
     * may not be (they were never acknowledged), and the next open is clean either way. */
    bal_wal_open_report report;
    wal = open_wal_report(dir, &report);
    CHECK(report.next_lsn == 31 || report.next_lsn == 38);
    append(wal, 1);
    CHECK(bal_wal_sync(wal) == BAL_WAL_OK);
    close_counting(wal, 1, 1);
    test_tempdir_remove(dir);
}

int main(void) {
    test_clean_close_syncs_once();
    test_failing_truncate();
    test_failing_datasync();
    printf("wal/close: ok\n");
    return 0;
}
