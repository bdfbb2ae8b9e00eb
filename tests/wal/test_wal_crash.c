/*
 * test_wal_crash.c -- kill -9 a process that writes the log; nothing it acknowledged is lost.
 *
 * Each round forks a child that opens the log (recovering whatever the previous round
 * left), then appends batches of records and syncs, and after each successful sync writes
 * the last LSN to a pipe: that is its acknowledgement. The parent kills it with SIGKILL at
 * a random moment, drains the pipe, reopens the log and checks that every acknowledged LSN
 * is present with exactly the bytes written (payloads derive from seed and LSN), in order
 * and without gaps. Small segments make kills during rotation likely; big batches make
 * kills in the middle of a write() likely.
 *
 * Seeded: the seed is printed; BAL_TEST_SEED=<seed> replays the same choices (the kill
 * timing still depends on the scheduler). BAL_CRASH_ROUNDS changes the number of rounds.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bal_wal.h"
#include "wal_test_support.h"

#define CRASH_ROUNDS_DEFAULT 30
#define CRASH_ROUNDS_MAX 10000
#define CRASH_SEGMENT_BYTES (256u << 10)
#define CRASH_PAYLOAD_MAX 400
#define CRASH_BATCH_MAX 64
/* Every third round writes big batches (hundreds of KiB per write): a SIGKILL can stop a
 * large write() between pages, leaving a torn record for recovery to cut. */
#define CRASH_BIG_BATCH_MAX 3000
/* The child runs between 0 and this long before it is killed. */
#define CRASH_DELAY_US_MAX 100000
/* Acknowledgements read from the pipe at once. */
#define CRASH_READ_WORDS 512

static uint8_t payload_buffer[CRASH_PAYLOAD_MAX + 1];
static uint8_t scratch_buffer[CRASH_PAYLOAD_MAX + 1];

static size_t crash_payload(uint64_t seed, uint64_t lsn, uint8_t *buffer) {
    return test_payload(seed, lsn, CRASH_PAYLOAD_MAX, buffer);
}

static const bal_wal_options crash_options = {.segment_bytes = CRASH_SEGMENT_BYTES};

/* The writer: runs until killed. Exit codes other than by SIGKILL mean a failure. */
__attribute__((noreturn)) static void child_run(const char *dir, uint64_t seed, uint64_t round, int ack_fd) {
    char errstr[BAL_WAL_MESSAGE_BYTES];
    bal_wal *wal = NULL;
    if (bal_wal_open(dir, &crash_options, &wal, NULL, errstr, sizeof errstr) != BAL_WAL_OK) {
        fprintf(stderr, "child: open: %s\n", errstr);
        _exit(2);
    }
    uint64_t random_state = seed ^ (round * 0x9E3779B97F4A7C15ull);
    uint64_t batch_max = round % 3 == 2 ? CRASH_BIG_BATCH_MAX : CRASH_BATCH_MAX;
    for (;;) {
        uint64_t batch = 1 + test_random_next(&random_state) % batch_max;
        for (uint64_t i = 0; i < batch; i++) {
            uint64_t expected = bal_wal_next_lsn(wal);
            uint64_t lsn = 0;
            size_t length = crash_payload(seed, expected, payload_buffer);
            if (bal_wal_append(wal, payload_buffer, length, &lsn) != BAL_WAL_OK || lsn != expected) _exit(3);
        }
        if (bal_wal_sync(wal) != BAL_WAL_OK) {
            fprintf(stderr, "child: sync: %s\n", bal_wal_errstr(wal));
            _exit(4);
        }
        uint64_t acknowledged = bal_wal_synced_lsn(wal);
        if (write(ack_fd, &acknowledged, sizeof acknowledged) != sizeof acknowledged) _exit(5);
    }
}

static uint64_t now_us(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (uint64_t)now.tv_sec * 1000000u + (uint64_t)now.tv_nsec / 1000u;
}

/* Reads acknowledgements until `deadline_us` (or end of file when it is 0). Returns false
 * at end of file. Acknowledgements must increase. */
static bool read_acks(int fd, uint64_t deadline_us, uint64_t *last_ack, uint64_t *ack_count) {
    for (;;) {
        if (deadline_us != 0) {
            uint64_t now = now_us();
            if (now >= deadline_us) return true;
            struct pollfd poll_fd = {.fd = fd, .events = POLLIN};
            int timeout_ms = (int)((deadline_us - now + 999) / 1000);
            if (poll(&poll_fd, 1, timeout_ms) == 0) continue;
        }
        uint64_t words[CRASH_READ_WORDS];
        ssize_t got = read(fd, words, sizeof words);
        if (got < 0 && errno == EINTR) continue;
        CHECK(got >= 0);
        if (got == 0) return false;
        CHECK(got % (ssize_t)sizeof words[0] == 0); /* 8-byte pipe writes are atomic */
        for (ssize_t i = 0; i < got / (ssize_t)sizeof words[0]; i++) {
            CHECK(words[i] > *last_ack || (*ack_count == 0 && words[i] >= *last_ack));
            *last_ack = words[i];
            (*ack_count)++;
        }
    }
}

static void run_round(const char *dir, uint64_t seed, uint64_t round, uint64_t *random_state, uint64_t *acked_total) {
    int pipe_fds[2];
    CHECK(pipe2(pipe_fds, O_CLOEXEC) == 0);
    pid_t child = fork();
    CHECK(child >= 0);
    if (child == 0) {
        close(pipe_fds[0]);
        child_run(dir, seed, round, pipe_fds[1]);
    }
    close(pipe_fds[1]);
    uint64_t delay_us = test_random_next(random_state) % CRASH_DELAY_US_MAX;
    if (round % 5 == 0) delay_us /= 50; /* sometimes very early: during open or the first batches */
    uint64_t last_ack = 0, ack_count = 0;
    read_acks(pipe_fds[0], now_us() + delay_us, &last_ack, &ack_count);
    CHECK(kill(child, SIGKILL) == 0);
    int wait_status = 0;
    CHECK(waitpid(child, &wait_status, 0) == child);
    CHECK_MESSAGE(WIFSIGNALED(wait_status) && WTERMSIG(wait_status) == SIGKILL, "the writer died on its own");
    while (read_acks(pipe_fds[0], 0, &last_ack, &ack_count)) {
    }
    close(pipe_fds[0]);

    char errstr[BAL_WAL_MESSAGE_BYTES];
    bal_wal *wal = NULL;
    bal_wal_open_report report;
    CHECK_MESSAGE(bal_wal_open(dir, &crash_options, &wal, &report, errstr, sizeof errstr) == BAL_WAL_OK, errstr);
    test_replay_check check = {.seed = seed, .payload_fn = crash_payload, .expected_lsn = 1, .scratch = scratch_buffer};
    CHECK_MESSAGE(bal_wal_replay(wal, 1, test_replay_verify, &check) == BAL_WAL_OK, bal_wal_errstr(wal));
    uint64_t recovered = bal_wal_next_lsn(wal) - 1;
    CHECK(check.count == recovered);
    if (recovered < last_ack) {
        fprintf(stderr, "round %" PRIu64 ": acknowledged lsn %" PRIu64 " but only %" PRIu64 " recovered\n", round,
                last_ack, recovered);
        CHECK(recovered >= last_ack);
    }
    CHECK(bal_wal_close(wal, errstr, sizeof errstr) == BAL_WAL_OK);
    printf("round %2" PRIu64 ": killed after %5" PRIu64 " us, %4" PRIu64 " syncs acknowledged up to lsn %6" PRIu64
           ", %6" PRIu64 " recovered, %2" PRIu32 " segments, temporary removed %" PRIu32 "%s%s\n",
           round, delay_us, ack_count, last_ack, recovered, report.segment_count, report.temporary_files_removed,
           report.tail_truncated ? ", " : "", report.tail_truncated ? report.message : "");
    *acked_total += ack_count;
}

int main(void) {
    uint64_t seed = test_seed("wal/crash");
    const char *rounds_text = getenv("BAL_CRASH_ROUNDS");
    uint64_t rounds = rounds_text != NULL ? strtoull(rounds_text, NULL, 10) : CRASH_ROUNDS_DEFAULT;
    CHECK(rounds >= 1 && rounds <= CRASH_ROUNDS_MAX);
    char dir[TEST_PATH_BYTES];
    test_tempdir_create(dir);
    uint64_t random_state = seed;
    uint64_t acked_total = 0;
    for (uint64_t round = 0; round < rounds; round++) run_round(dir, seed, round, &random_state, &acked_total);
    CHECK(acked_total > 0);
    test_tempdir_remove(dir);
    printf("wal/crash: ok (%" PRIu64 " rounds, %" PRIu64 " acknowledged syncs checked)\n", rounds, acked_total);
    return 0;
}
