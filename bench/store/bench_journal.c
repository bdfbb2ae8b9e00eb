/*
 * bench_journal.c -- how fast the embedded journal store writes and answers.
 *
 * Writes an exchange-like mix (trade settlements as 4-leg EVENTs, freezes, deposits,
 * withdrawals, transfers, some rejected, some memos) over 100,000 accounts and 5
 * currencies into a fresh file in /tmp, in batches of 1,000, of 10,000 and (last, into the
 * full file) of 150 rows -- one shard's group commit under load -- and
 * reports rows per second (write_batch time only) and the per-batch latency. Then measures
 * from a reader handle: history pages (limit 100, with and without a currency, first pages
 * and deep pages, for ordinary accounts and for one busy account that takes part in 5% of
 * all commands, like a market maker) and batched look-ups of 1,000 ids. CPU time is
 * reported beside wall time because on a shared machine it is the steadier number.
 *
 * Usage: bench_journal [scale [cache_mib [write]]]  (scale 1 = 1.6M rows written, 0.1 for a
 * quick run; cache_mib = the writer's and reader's SQLite page cache, default 64; "write"
 * skips the reader measurements, so that a profile of the write path holds nothing else)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bal_journal.h"

#define BENCH_ACCOUNTS 100000
#define BENCH_CURRENCIES 5
#define BENCH_BATCH_ROWS_MAX 10000
#define BENCH_HISTORY_QUERIES 5000
#define BENCH_LOOKUPS 50
#define BENCH_LOOKUP_IDS 1000
#define BENCH_SAMPLES_MAX 100000
#define BENCH_BUSY_ACCOUNT 1        /* in 5% of the commands */

static const char *const bench_currencies[BENCH_CURRENCIES] = {"USDT", "BTC", "ETH", "SOL", "XRP"};

static uint64_t bench_random(uint64_t *state) {
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1Dull;
}

static double bench_now_us(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec * 1e6 + (double)now.tv_nsec / 1e3;
}

static double bench_cpu_us(void) {
    struct timespec now;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
    return (double)now.tv_sec * 1e6 + (double)now.tv_nsec / 1e3;
}

/* Bytes this process has handed to write(2) and pwrite(2) so far (Linux /proc/self/io
 * "wchar"; 0 where that is unavailable): the WAL frames and checkpoint copies a batch
 * costs, which is most of what bounds the write rate. */
static uint64_t bench_bytes_written(void) {
    FILE *file = fopen("/proc/self/io", "r");
    if (file == NULL) return 0;
    unsigned long long value = 0;
    char line[128];
    while (fgets(line, sizeof line, file) != NULL) {
        if (sscanf(line, "wchar: %llu", &value) == 1) break;
    }
    fclose(file);
    return value;
}

static int bench_compare_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* p50 / p99 / max of samples (sorted in place). */
static void bench_report(const char *label, double *samples, size_t count, const char *unit) {
    if (count == 0) return;
    qsort(samples, count, sizeof samples[0], bench_compare_double);
    printf("  %-64s p50 %8.1f %s  p99 %8.1f %s  max %8.1f %s\n", label, samples[count / 2], unit,
           samples[count * 99 / 100], unit, samples[count - 1], unit);
}

static void bench_check(bal_journal_status status, const char *what, const char *errstr) {
    if (status == BAL_JOURNAL_OK) return;
    fprintf(stderr, "bench_journal: %s: %s: %s\n", what, bal_journal_status_name(status), errstr);
    exit(1);
}

static void bench_fill(bal_journal_row *row, uint32_t shard, uint64_t sequence, uint32_t leg,
                       bal_journal_type type, uint64_t account, const char *currency, bal_amount change,
                       bool rejected) {
    memset(row, 0, sizeof *row);
    row->shard = shard;
    row->sequence = sequence;
    row->leg = leg;
    row->type = type;
    row->account_id = account;
    row->time_ms = 1700000000000 + (int64_t)sequence / 100;
    snprintf(row->transaction_id, sizeof row->transaction_id, "ord-%u-%llu", shard, (unsigned long long)sequence);
    strcpy(row->currency, currency);
    strcpy(row->result, rejected ? "insufficient_available" : "ok");
    bal_amount before = (bal_amount)(sequence % 1000000 + 1) * 1000000000000000ll; /* some 0.001s */
    bal_amount magnitude = change < 0 ? -change : change;
    if (type == BAL_JOURNAL_TYPE_EVENT) row->leg_available_delta = change;
    else row->amount = magnitude;
    row->available_before = before + magnitude;
    row->available_after = rejected ? row->available_before : row->available_before + change;
    row->frozen_before = row->frozen_after = 0;
    row->available_delta = row->available_after - row->available_before;
}

/* One command's rows (1, 2 or 4); returns the count. */
static size_t bench_command(bal_journal_row *rows, uint32_t shard, uint64_t sequence, uint64_t *seed) {
    uint64_t pick = bench_random(seed) % 100;
    bool rejected = bench_random(seed) % 20 == 0;
    uint64_t a = bench_random(seed) % 20 == 0 ? BENCH_BUSY_ACCOUNT : 1 + bench_random(seed) % BENCH_ACCOUNTS;
    uint64_t b = 1 + (a + 1 + bench_random(seed) % 1000) % BENCH_ACCOUNTS;
    const char *base = bench_currencies[1 + bench_random(seed) % (BENCH_CURRENCIES - 1)];
    bal_amount change = (bal_amount)(1 + bench_random(seed) % 1000000) * 1000000000000ll;
    size_t count = 1;
    if (pick < 40) { /* a trade settles: both sides, base and quote */
        bench_fill(&rows[0], shard, sequence, 0, BAL_JOURNAL_TYPE_EVENT, a, base, change, rejected);
        bench_fill(&rows[1], shard, sequence, 1, BAL_JOURNAL_TYPE_EVENT, a, "USDT", -change, rejected);
        bench_fill(&rows[2], shard, sequence, 2, BAL_JOURNAL_TYPE_EVENT, b, base, -change, rejected);
        bench_fill(&rows[3], shard, sequence, 3, BAL_JOURNAL_TYPE_EVENT, b, "USDT", change, rejected);
        count = 4;
    } else if (pick < 70) {
        bench_fill(&rows[0], shard, sequence, 0, pick < 55 ? BAL_JOURNAL_TYPE_DEPOSIT : BAL_JOURNAL_TYPE_WITHDRAW,
                   a, base, pick < 55 ? change : -change, rejected);
    } else if (pick < 90) {
        bench_fill(&rows[0], shard, sequence, 0, BAL_JOURNAL_TYPE_DEPOSIT, a, "USDT", change, rejected);
    } else {
        bench_fill(&rows[0], shard, sequence, 0, BAL_JOURNAL_TYPE_TRANSFER, a, base, -change, rejected);
        bench_fill(&rows[1], shard, sequence, 1, BAL_JOURNAL_TYPE_TRANSFER, b, base, change, rejected);
        rows[0].to_account_id = rows[1].to_account_id = b;
        count = 2;
    }
    if (bench_random(seed) % 10 == 0) {
        for (size_t i = 0; i < count; i++) {
            rows[i].has_memo = true;
            rows[i].memo_length = (uint16_t)snprintf(rows[i].memo, sizeof rows[i].memo, "settlement of order %llu",
                                                     (unsigned long long)sequence);
        }
    }
    return count;
}

typedef struct bench_writer {
    bal_journal *journal;
    bal_journal_row *rows;
    uint64_t sequence[2];   /* next sequence per shard */
    uint64_t lsn[2];
    uint64_t seed;
    double *samples;
} bench_writer;

/* Writes about total_rows rows in batches of batch_rows (alternating two shards); prints rows/s. */
static void bench_write(bench_writer *writer, const char *label, size_t batch_rows, size_t total_rows) {
    char errstr[256] = "";
    size_t written = 0, batches = 0;
    uint64_t commands = 0;
    double busy_us = 0, cpu_us = 0;
    uint64_t bytes_start = bench_bytes_written();
    while (written < total_rows) {
        uint32_t shard = (uint32_t)(batches % 2);
        size_t count = 0;
        while (count + BAL_JOURNAL_LEGS_MAX <= batch_rows && count < batch_rows - 3) {
            count += bench_command(&writer->rows[count], shard, ++writer->sequence[shard], &writer->seed);
            commands++;
        }
        double start = bench_now_us(), cpu_start = bench_cpu_us();
        bench_check(bal_journal_write_batch(writer->journal, shard, writer->rows, count, ++writer->lsn[shard], NULL,
                                            errstr, sizeof errstr),
                    "write_batch", errstr);
        double elapsed = bench_now_us() - start;
        busy_us += elapsed;
        cpu_us += bench_cpu_us() - cpu_start;
        if (batches < BENCH_SAMPLES_MAX) writer->samples[batches] = elapsed / 1000.0;
        written += count;
        batches++;
    }
    double bytes_per_row = (double)(bench_bytes_written() - bytes_start) / (double)written;
    printf("%s: %zu rows (%llu commands) in %zu batches: %.0f rows/s, %.0f commands/s; CPU %.2f us/row; "
           "%.0f bytes written/row\n",
           label, written, (unsigned long long)commands, batches, (double)written / (busy_us / 1e6),
           (double)commands / (busy_us / 1e6), cpu_us / (double)written, bytes_per_row);
    bench_report("batch latency", writer->samples, batches < BENCH_SAMPLES_MAX ? batches : BENCH_SAMPLES_MAX, "ms");
}

static bool bench_count_row(void *context, const bal_journal_row *row) {
    (void)row;
    (*(size_t *)context)++;
    return true;
}

/* One history mode: which account, which currency, how deep. */
typedef struct bench_history_mode {
    const char *label;
    bool busy;              /* the busy account instead of a random one */
    const char *currency;
    uint32_t limit;
    bool deep;              /* start behind a random cursor instead of at the newest row */
} bench_history_mode;

static const bench_history_mode bench_history_modes[] = {
    {"history, random account, first 100", false, NULL, 100, false},
    {"history, random account, USDT, first 100", false, "USDT", 100, false},
    {"history, busy account, first 100", true, NULL, 100, false},
    {"history, busy account, 100 from a random point", true, NULL, 100, true},
    {"history, busy account, SOL, 100 from a random point", true, "SOL", 100, true},
    {"history, busy account, 1000 from a random point", true, NULL, 1000, true},
};

/* History pages in each mode; rows/query shows how full the pages were. */
static void bench_history(bal_journal *reader, const bench_writer *writer, double *samples, uint64_t *seed) {
    char errstr[256] = "";
    for (size_t m = 0; m < sizeof bench_history_modes / sizeof bench_history_modes[0]; m++) {
        const bench_history_mode *mode = &bench_history_modes[m];
        size_t rows = 0;
        for (size_t i = 0; i < BENCH_HISTORY_QUERIES; i++) {
            bal_journal_history_query query = {.currency = mode->currency, .limit = mode->limit};
            query.account_id = mode->busy ? BENCH_BUSY_ACCOUNT : 1 + bench_random(seed) % BENCH_ACCOUNTS;
            if (mode->deep) query.before = bal_journal_cursor_after(1 + bench_random(seed) % writer->sequence[0], 0);
            uint64_t next = 0;
            double start = bench_now_us();
            bench_check(bal_journal_history(reader, &query, bench_count_row, &rows, &next, errstr, sizeof errstr),
                        "history", errstr);
            samples[i] = bench_now_us() - start;
        }
        char label[96];
        snprintf(label, sizeof label, "%s (%.0f rows/query)", mode->label, (double)rows / BENCH_HISTORY_QUERIES);
        bench_report(label, samples, BENCH_HISTORY_QUERIES, "us");
    }
}

/* Look-ups of 1,000 ids, half of them stored. */
static void bench_lookup(bal_journal *reader, const bench_writer *writer, double *samples) {
    static char names[BENCH_LOOKUP_IDS][32];
    const char *ids[BENCH_LOOKUP_IDS];
    char errstr[256] = "";
    uint64_t seed = 7;
    size_t rows = 0;
    for (size_t call = 0; call < BENCH_LOOKUPS; call++) {
        for (size_t i = 0; i < BENCH_LOOKUP_IDS; i++) {
            uint64_t sequence = 1 + bench_random(&seed) % writer->sequence[0];
            snprintf(names[i], sizeof names[i], i % 2 ? "ord-0-%llu" : "new-%llu", (unsigned long long)sequence);
            ids[i] = names[i];
        }
        double start = bench_now_us();
        bench_check(bal_journal_find_transactions(reader, ids, BENCH_LOOKUP_IDS, bench_count_row, &rows, errstr,
                                                  sizeof errstr),
                    "find_transactions", errstr);
        samples[call] = (bench_now_us() - start) / 1000.0;
    }
    char label[96];
    snprintf(label, sizeof label, "look-up of %d ids (%.0f rows found)", BENCH_LOOKUP_IDS, (double)rows / BENCH_LOOKUPS);
    bench_report(label, samples, BENCH_LOOKUPS, "ms");
}

static void bench_remove(const char *dir, const char *path) {
    static const char *const suffixes[] = {"", "-wal", "-shm"};
    for (size_t i = 0; i < 3; i++) {
        char file[512];
        snprintf(file, sizeof file, "%s%s", path, suffixes[i]);
        unlink(file);
    }
    rmdir(dir);
}

static uint32_t bench_cache_kib = BAL_JOURNAL_CACHE_KIB_DEFAULT;

static bal_journal *bench_open(const char *path, bool read_only, bool synchronous_full) {
    bal_journal_options options = bal_journal_options_default();
    options.cache_kib = bench_cache_kib;
    options.read_only = read_only;
    options.synchronous_full = synchronous_full;
    bal_journal *journal = NULL;
    char errstr[256] = "";
    bench_check(bal_journal_open(path, &options, &journal, errstr, sizeof errstr), "open", errstr);
    return journal;
}

int main(int argc, char **argv) {
    double scale = argc > 1 ? atof(argv[1]) : 1.0;
    bool write_only = argc > 3 && strcmp(argv[3], "write") == 0;
    if (scale <= 0 || scale > 100) scale = 1.0;
    if (argc > 2 && atoi(argv[2]) > 0 && atoi(argv[2]) <= (int)(BAL_JOURNAL_CACHE_KIB_MAX / 1024)) {
        bench_cache_kib = (uint32_t)atoi(argv[2]) * 1024;
    }
    char dir[] = "/tmp/bal_bench_journal.XXXXXX";
    if (mkdtemp(dir) == NULL) return 1;
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, BAL_JOURNAL_FILE_NAME);

    bench_writer writer = {.seed = 42};
    writer.rows = calloc(BENCH_BATCH_ROWS_MAX, sizeof *writer.rows);
    writer.samples = calloc(BENCH_SAMPLES_MAX, sizeof *writer.samples);
    if (writer.rows == NULL || writer.samples == NULL) return 1;
    printf("journal store benchmark: %s, page cache %u MiB\n", path, bench_cache_kib / 1024);

    writer.journal = bench_open(path, false, true);
    bench_write(&writer, "synchronous=FULL, batches of 1000 rows", 1000, (size_t)(100000 * scale));
    bal_journal_close(writer.journal);
    writer.journal = bench_open(path, false, false);
    bench_write(&writer, "synchronous=NORMAL, batches of 1000 rows", 1000, (size_t)(500000 * scale));
    bench_write(&writer, "synchronous=NORMAL, batches of 10000 rows", BENCH_BATCH_ROWS_MAX, (size_t)(1000000 * scale));
    /* What a shard hands the persister under load: about 64 commands per group commit. */
    bench_write(&writer, "synchronous=NORMAL, batches of 150 rows", 150, (size_t)(100000 * scale));
    char errstr[256] = "";
    double start = bench_now_us();
    bench_check(bal_journal_sync(writer.journal, errstr, sizeof errstr), "sync", errstr);
    double synced = bench_now_us();
    bench_check(bal_journal_checkpoint(writer.journal, errstr, sizeof errstr), "checkpoint", errstr);
    printf("sync: %.2f ms, then full checkpoint: %.1f ms\n", (synced - start) / 1000.0,
           (bench_now_us() - synced) / 1000.0);
    struct stat info;
    if (stat(path, &info) == 0) printf("file: %.1f MiB\n", (double)info.st_size / (1024.0 * 1024.0));

    if (!write_only) {
        bal_journal *reader = bench_open(path, true, false);
        uint64_t seed = 1;
        bench_history(reader, &writer, writer.samples, &seed);
        bench_lookup(reader, &writer, writer.samples);
        bal_journal_close(reader);
    }
    bal_journal_close(writer.journal);
    bench_remove(dir, path);
    free(writer.samples);
    free(writer.rows);
    return 0;
}
