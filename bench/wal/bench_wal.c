/*
 * bench_wal.c -- throughput and commit latency of the write-ahead log with group commit.
 *
 * For each batch size (1, 10, 100, 1000 records of 150 bytes, about one encoded command
 * each) it appends a batch and syncs it, over and over for a fixed time, in a fresh log:
 * the loop a shard thread runs. One line per batch size: records appended per second,
 * syncs per second, and the latency of bal_wal_sync (write + fdatasync) at p50/p99/max.
 * A last line measures append alone: the copy + CRC into the write buffer, no I/O.
 *
 * Usage: bench_wal [directory (default /tmp)] [seconds per batch size (default 3)]
 * The directory must be on the disk under test; a temporary log is made and removed in it.
 */
#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bal_wal.h"

#define BENCH_RECORD_BYTES 150
#define BENCH_SECONDS_DEFAULT 3.0
#define BENCH_SECONDS_MAX 3600.0
/* Sync latencies kept for percentiles (later ones only count). */
#define BENCH_SAMPLES_MAX (1u << 20)
/* Append-only: rounds of records that fit the 4 MiB write buffer, so that the timed part
 * does no I/O; the sync between rounds is not timed. */
#define BENCH_APPEND_ONLY_ROUNDS 100u
#define BENCH_APPEND_ONLY_RECORDS_PER_ROUND 20000u
#define BENCH_PATH_BYTES 1024

static const uint32_t bench_batch_sizes[] = {1, 10, 100, 1000};
static uint64_t samples_ns[BENCH_SAMPLES_MAX];

static double now_seconds(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + (double)now.tv_nsec / 1e9;
}

static int compare_u64(const void *left, const void *right) {
    uint64_t a = *(const uint64_t *)left, b = *(const uint64_t *)right;
    return (a > b) - (a < b);
}

static void remove_log(const char *dir) {
    char command[BENCH_PATH_BYTES + 16];
    snprintf(command, sizeof command, "rm -rf '%s'", dir);
    if (system(command) != 0) fprintf(stderr, "bench_wal: could not remove %s\n", dir);
}

static bal_wal *open_fresh(const char *base, char dir[BENCH_PATH_BYTES]) {
    snprintf(dir, BENCH_PATH_BYTES, "%s/bal-wal-bench-XXXXXX", base);
    if (mkdtemp(dir) == NULL) {
        perror("bench_wal: mkdtemp");
        exit(1);
    }
    char errstr[BAL_WAL_MESSAGE_BYTES];
    bal_wal *wal = NULL;
    if (bal_wal_open(dir, NULL, &wal, NULL, errstr, sizeof errstr) != BAL_WAL_OK) {
        fprintf(stderr, "bench_wal: %s\n", errstr);
        exit(1);
    }
    return wal;
}

static void check(bal_wal *wal, bal_wal_status status) {
    if (status == BAL_WAL_OK) return;
    fprintf(stderr, "bench_wal: %s: %s\n", bal_wal_status_name(status), bal_wal_errstr(wal));
    exit(1);
}

static void bench_batch(const char *base, uint32_t batch, double seconds, const uint8_t *record) {
    char dir[BENCH_PATH_BYTES];
    bal_wal *wal = open_fresh(base, dir);
    uint64_t batches = 0, records = 0;
    double start = now_seconds(), elapsed = 0;
    while (elapsed < seconds) {
        for (uint32_t i = 0; i < batch; i++) {
            uint64_t lsn = 0;
            check(wal, bal_wal_append(wal, record, BENCH_RECORD_BYTES, &lsn));
        }
        double sync_start = now_seconds();
        check(wal, bal_wal_sync(wal));
        double sync_end = now_seconds();
        if (batches < BENCH_SAMPLES_MAX) samples_ns[batches] = (uint64_t)((sync_end - sync_start) * 1e9);
        batches++;
        records += batch;
        elapsed = sync_end - start;
    }
    bal_wal_stats stats;
    bal_wal_stats_read(wal, &stats);
    size_t sample_count = batches < BENCH_SAMPLES_MAX ? (size_t)batches : BENCH_SAMPLES_MAX;
    qsort(samples_ns, sample_count, sizeof samples_ns[0], compare_u64);
    printf("batch %4" PRIu32 ": %10.0f appends/s %8.0f syncs/s | sync p50 %6.3f ms p99 %6.3f ms max %6.3f ms"
           " | fdatasync avg %6.3f ms | %6.1f MB/s\n",
           batch, (double)records / elapsed, (double)batches / elapsed, (double)samples_ns[sample_count / 2] / 1e6,
           (double)samples_ns[sample_count * 99 / 100] / 1e6, (double)samples_ns[sample_count - 1] / 1e6,
           (double)stats.sync_ns_total / (double)stats.sync_count / 1e6,
           (double)stats.write_bytes / elapsed / 1e6);
    fflush(stdout);
    char errstr[BAL_WAL_MESSAGE_BYTES];
    check(wal, bal_wal_close(wal, errstr, sizeof errstr));
    remove_log(dir);
}

static void bench_append_only(const char *base, const uint8_t *record) {
    char dir[BENCH_PATH_BYTES];
    bal_wal *wal = open_fresh(base, dir);
    double elapsed = 0;
    for (uint32_t round = 0; round < BENCH_APPEND_ONLY_ROUNDS; round++) {
        double start = now_seconds();
        for (uint32_t i = 0; i < BENCH_APPEND_ONLY_RECORDS_PER_ROUND; i++) {
            uint64_t lsn = 0;
            check(wal, bal_wal_append(wal, record, BENCH_RECORD_BYTES, &lsn));
        }
        elapsed += now_seconds() - start;
        check(wal, bal_wal_sync(wal));
    }
    bal_wal_stats stats;
    bal_wal_stats_read(wal, &stats);
    assert(stats.write_count == stats.sync_count); /* no flush happened inside the timed part */
    double count = (double)BENCH_APPEND_ONLY_ROUNDS * BENCH_APPEND_ONLY_RECORDS_PER_ROUND;
    printf("append only (into the buffer, no I/O): %10.0f appends/s, %.0f ns each\n", count / elapsed,
           elapsed / count * 1e9);
    char errstr[BAL_WAL_MESSAGE_BYTES];
    check(wal, bal_wal_close(wal, errstr, sizeof errstr));
    remove_log(dir);
}

int main(int argc, char **argv) {
    const char *base = argc > 1 ? argv[1] : "/tmp";
    double seconds = argc > 2 ? strtod(argv[2], NULL) : BENCH_SECONDS_DEFAULT;
    if (!(seconds > 0 && seconds <= BENCH_SECONDS_MAX) || strlen(base) > BENCH_PATH_BYTES - 32) {
        fprintf(stderr, "usage: bench_wal [directory] [seconds per batch size, 0..3600]\n");
        return 2;
    }
    uint8_t record[BENCH_RECORD_BYTES];
    for (size_t i = 0; i < sizeof record; i++) record[i] = (uint8_t)(i * 31 + 7);
    printf("bench_wal: %d-byte records, %.1f s per batch size, log in %s\n", BENCH_RECORD_BYTES, seconds, base);
    for (size_t i = 0; i < sizeof bench_batch_sizes / sizeof bench_batch_sizes[0]; i++) {
        bench_batch(base, bench_batch_sizes[i], seconds, record);
    }
    bench_append_only(base, record);
    return 0;
}
