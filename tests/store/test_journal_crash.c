/*
 * test_journal_crash.c -- the journal store survives kill -9 with its position and its rows
 * in agreement.
 *
 * Each round forks a writer that resumes from the stored position (re-sending the two
 * batches before it, as a log replay would), writes batches in a loop and reports every
 * committed position through a pipe. The parent kills it with SIGKILL after a random number
 * of reports plus a random delay (so the kill lands anywhere, also inside a transaction),
 * reopens the file and checks: the position is the last reported one or the one after it
 * (committed, not yet reported), every sequence up to the position has all its rows, none
 * beyond it has any, the id and history indexes hold exactly one entry per head row, in
 * runs that exist, and SQLite's integrity check passes. The writer seals a run every few
 * batches and merges runs often, so kills also land inside merges. Rounds continue on the
 * same file.
 */
#include <signal.h>
#include <sqlite3.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bal_journal_internal.h"
#include "journal_test_util.h"

#define CRASH_ROUNDS 8
#define CRASH_COMMANDS_PER_BATCH 50
#define CRASH_REPORTS_MAX 150       /* reports before the kill: 1 .. this */
#define CRASH_DELAY_US_MAX 3000     /* extra delay before the kill */
#define CRASH_LSN_LIMIT 1000000     /* a writer whose parent vanished stops here */
#define CRASH_RUN_ROWS 500          /* a seal about every 8 batches ... */
#define CRASH_RUNS_PER_MERGE 4      /* ... a merge about every 30 */
#define CRASH_MERGE_STEP 100        /* entries per index and batch: a merge spans batches */

/* Rows of command `sequence`: every third is a TRANSFER (2 rows), the others DEPOSITs. */
static size_t build_command(bal_journal_row *rows, uint64_t sequence) {
    char id[32];
    snprintf(id, sizeof id, "crash-%llu", (unsigned long long)sequence);
    if (sequence % 3 != 0) {
        test_row_init(&rows[0], 0, sequence, 0, BAL_JOURNAL_TYPE_DEPOSIT, id, 1 + sequence % 10, "USDT");
        test_row_balances(&rows[0], 0, 1, 0, 0);
        return 1;
    }
    for (uint32_t leg = 0; leg < 2; leg++) {
        test_row_init(&rows[leg], 0, sequence, leg, BAL_JOURNAL_TYPE_TRANSFER, id, leg == 0 ? 20 : 21, "BTC");
        rows[leg].to_account_id = 21;
        test_row_balances(&rows[leg], leg == 0 ? 1 : 0, leg == 0 ? 0 : 1, 0, 0);
    }
    return 2;
}

static uint64_t rows_up_to(uint64_t sequence) {
    return sequence + sequence / 3;
}

static size_t build_batch(bal_journal_row *rows, uint64_t lsn) {
    size_t count = 0;
    for (uint64_t i = 1; i <= CRASH_COMMANDS_PER_BATCH; i++) {
        count += build_command(&rows[count], (lsn - 1) * CRASH_COMMANDS_PER_BATCH + i);
    }
    return count;
}

static void child_writer(const test_dir *dir, int report_fd) {
    static bal_journal_row rows[CRASH_COMMANDS_PER_BATCH * 2];
    bal_journal *journal = test_open(dir, false);
    bal_journal_set_runs_for_testing(journal, CRASH_RUN_ROWS, CRASH_RUNS_PER_MERGE, CRASH_MERGE_STEP);
    uint64_t position = 0;
    CHECK_OK(bal_journal_position(journal, 0, &position, ERR));
    for (uint64_t lsn = position > 2 ? position - 2 : 1; lsn < CRASH_LSN_LIMIT; lsn++) {
        size_t count = build_batch(rows, lsn);
        bal_journal_write_outcome outcome;
        CHECK_OK(bal_journal_write_batch(journal, 0, rows, count, lsn, &outcome, ERR));
        CHECK(outcome.skipped == (lsn <= position));
        if (write(report_fd, &lsn, sizeof lsn) != (ssize_t)sizeof lsn) _exit(3); /* parent gone */
    }
    _exit(4);
}

static int64_t query_int(sqlite3 *db, const char *sql) {
    sqlite3_stmt *s = NULL;
    CHECK(sqlite3_prepare_v2(db, sql, -1, &s, NULL) == SQLITE_OK);
    CHECK(sqlite3_step(s) == SQLITE_ROW);
    int64_t value = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return value;
}

/* Rows for every sequence up to the position's last command, none beyond, file intact. */
static void check_file(const test_dir *dir, uint64_t position) {
    uint64_t last_sequence = position * CRASH_COMMANDS_PER_BATCH;
    sqlite3 *db = NULL;
    CHECK(sqlite3_open_v2(dir->path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK);
    CHECK(query_int(db, "SELECT count(*) FROM journal") == (int64_t)rows_up_to(last_sequence));
    CHECK(query_int(db, "SELECT count(DISTINCT sequence) FROM journal") == (int64_t)last_sequence);
    CHECK(query_int(db, "SELECT coalesce(max(sequence), 0) FROM journal") == (int64_t)last_sequence);
    CHECK(query_int(db, "SELECT coalesce(min(sequence), 1) FROM journal") == 1);
    CHECK(query_int(db, "SELECT count(*) FROM journal WHERE type = 'TRANSFER' AND leg = 1") ==
          (int64_t)(last_sequence / 3));
    /* The indexes: one entry per head row, nothing else, in runs the catalog lists. */
    CHECK(query_int(db, "SELECT count(*) FROM journal_by_transaction_run") ==
          query_int(db, "SELECT count(*) FROM journal WHERE transaction_hash IS NOT NULL"));
    CHECK(query_int(db, "SELECT count(*) FROM (SELECT transaction_hash, shard, sequence FROM journal "
                        "WHERE transaction_hash IS NOT NULL EXCEPT "
                        "SELECT transaction_hash, shard, sequence FROM journal_by_transaction_run)") == 0);
    CHECK(query_int(db, "SELECT count(*) FROM journal_by_account_run") ==
          query_int(db, "SELECT count(*) FROM journal WHERE account_head_leg = leg"));
    CHECK(query_int(db, "SELECT count(*) FROM (SELECT account_id, sequence, leg, shard FROM journal "
                        "WHERE account_head_leg = leg EXCEPT "
                        "SELECT account_id, sequence, leg, shard FROM journal_by_account_run)") == 0);
    CHECK(query_int(db, "SELECT count(*) FROM journal_by_transaction_run WHERE run NOT IN (SELECT run FROM journal_runs)") == 0);
    CHECK(query_int(db, "SELECT count(*) FROM journal_by_account_run WHERE run NOT IN (SELECT run FROM journal_runs)") == 0);
    CHECK(query_int(db, "SELECT coalesce(sum(rows), 0) FROM journal_runs WHERE merging_into IS NULL") ==
          (int64_t)rows_up_to(last_sequence));
    CHECK(query_int(db, "SELECT count(*) FROM journal_runs WHERE level = 0") <= 3 * CRASH_RUNS_PER_MERGE); /* merges keep up */
    sqlite3_stmt *s = NULL;
    CHECK(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &s, NULL) == SQLITE_OK);
    CHECK(sqlite3_step(s) == SQLITE_ROW && strcmp((const char *)sqlite3_column_text(s, 0), "ok") == 0);
    sqlite3_finalize(s);
    sqlite3_close(db);
}

/* One round: fork, let it write, kill it, return the last position it reported. */
static uint64_t crash_round(const test_dir *dir, uint64_t *seed) {
    int fds[2];
    CHECK(pipe(fds) == 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        child_writer(dir, fds[1]);
    }
    close(fds[1]);
    uint64_t reports_wanted = 1 + test_random(seed) % CRASH_REPORTS_MAX;
    uint64_t last_reported = 0, reports = 0, lsn = 0;
    while (reports < reports_wanted && read(fds[0], &lsn, sizeof lsn) == (ssize_t)sizeof lsn) {
        last_reported = lsn;
        reports++;
    }
    CHECK(reports == reports_wanted); /* the writer did not die on its own */
    struct timespec delay = {0, (long)(test_random(seed) % CRASH_DELAY_US_MAX) * 1000};
    nanosleep(&delay, NULL);
    CHECK(kill(pid, SIGKILL) == 0);
    int wait_status = 0;
    CHECK(waitpid(pid, &wait_status, 0) == pid);
    CHECK(WIFSIGNALED(wait_status) && WTERMSIG(wait_status) == SIGKILL);
    /* Reports written before the kill are still in the pipe. */
    while (read(fds[0], &lsn, sizeof lsn) == (ssize_t)sizeof lsn) last_reported = lsn;
    close(fds[0]);
    return last_reported;
}

int main(void) {
    test_dir dir;
    test_dir_create(&dir);
    uint64_t seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    fprintf(stderr, "seed %llu\n", (unsigned long long)seed);
    uint64_t previous = 0; /* the position the round started from */
    for (int round = 0; round < CRASH_ROUNDS; round++) {
        uint64_t last_reported = crash_round(&dir, &seed);
        /* The first reports of a round may be re-sent (skipped) batches below `previous`. */
        uint64_t committed = last_reported > previous ? last_reported : previous;
        bal_journal *journal = test_open(&dir, false); /* a restart: recovery of the WAL */
        uint64_t position = 0;
        CHECK_OK(bal_journal_position(journal, 0, &position, ERR));
        bal_journal_close(journal);
        fprintf(stderr, "round %d: last reported %llu, stored %llu\n", round,
                (unsigned long long)last_reported, (unsigned long long)position);
        CHECK(position == committed || position == committed + 1);
        check_file(&dir, position);
        previous = position;
    }
    test_dir_remove(&dir);
    fprintf(stderr, "ok: crash\n");
    return 0;
}
