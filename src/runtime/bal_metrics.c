/*
 * bal_metrics.c -- observation and Prometheus rendering for bal_metrics.h.
 */
#include "bal_metrics.h"

#include <stdarg.h>
#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/statvfs.h>
#include <unistd.h>

/* Seconds: 10 us .. 5 s. */
static const double time_bounds[BAL_METRICS_TIME_BUCKETS] = {
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025,
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0,
};
/* Counts: 1 .. 8192. */
static const double size_bounds[BAL_METRICS_SIZE_BUCKETS] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 1024, 4096, 8192};

static const char *const auth_reasons[BAL_METRICS_AUTH_REASONS] = {
    "missing_headers", "malformed_header", "unknown_key", "stale_timestamp", "bad_signature",
    "replayed_nonce", "nonce_memory_full", "permission", "other",
};

int bal_metrics_auth_reason(const char *reason) {
    for (int i = 0; i < BAL_METRICS_AUTH_REASONS - 1; i++) {
        if (strcmp(reason, auth_reasons[i]) == 0) return i;
    }
    return BAL_METRICS_AUTH_REASONS - 1;
}

void bal_metrics_observe_ns(bal_histogram *h, uint64_t nanoseconds) {
    double seconds = (double)nanoseconds / 1e9;
    int i = 0;
    while (i < BAL_METRICS_TIME_BUCKETS && seconds > time_bounds[i]) i++;
    atomic_fetch_add_explicit(&h->buckets[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum, nanoseconds, memory_order_relaxed);
}

void bal_metrics_observe_count(bal_histogram *h, uint64_t count) {
    int i = 0;
    while (i < BAL_METRICS_SIZE_BUCKETS && (double)count > size_bounds[i]) i++;
    atomic_fetch_add_explicit(&h->buckets[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum, count, memory_order_relaxed);
}

static void line(bal_text *t, const char *format, ...) __attribute__((format(printf, 2, 3)));
static void line(bal_text *t, const char *format, ...) {
    char buffer[512];
    va_list args;
    va_start(args, format);
    int n = vsnprintf(buffer, sizeof(buffer), format, args);
    va_end(args);
    if (n > 0) bal_text_append(t, buffer, (size_t)n < sizeof(buffer) ? (size_t)n : sizeof(buffer) - 1);
}

/* One counter or gauge without labels: its HELP and TYPE lines and its value. */
static void scalar(bal_text *t, const char *name, const char *type, const char *help, uint64_t value) {
    line(t, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", name, help, name, type, name, (unsigned long long)value);
}

static void histogram(bal_text *t, const char *name, const char *help, const bal_histogram *h,
                      const double *bounds, int bucket_count, double scale) {
    line(t, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cumulative = 0;
    for (int i = 0; i < bucket_count; i++) {
        cumulative += atomic_load_explicit(&h->buckets[i], memory_order_relaxed);
        line(t, "%s_bucket{le=\"%g\"} %llu\n", name, bounds[i], (unsigned long long)cumulative);
    }
    cumulative += atomic_load_explicit(&h->buckets[bucket_count], memory_order_relaxed);
    line(t, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)cumulative);
    line(t, "%s_sum %.9g\n", name, (double)atomic_load_explicit(&h->sum, memory_order_relaxed) / scale);
    line(t, "%s_count %llu\n", name, (unsigned long long)cumulative);
}

static const char *const route_names[BAL_ROUTE_COUNT] = {
    "transactions", "transactions_batch", "balances", "balance", "transaction", "history",
    "health", "ready", "metrics", "other",
};

static void gauge_per_shard(bal_text *t, const char *name, const char *help, const uint64_t *values, uint32_t shards) {
    line(t, "# HELP %s %s\n# TYPE %s gauge\n", name, help, name);
    for (uint32_t s = 0; s < shards && s < 64; s++) line(t, "%s{shard=\"%u\"} %llu\n", name, s, (unsigned long long)values[s]);
}

void bal_metrics_process(bal_metrics_gauges *g, const char *data_dir, double start_time_seconds) {
    struct rusage usage;
    if (getrusage(RUSAGE_SELF, &usage) == 0) {
        g->cpu_seconds = (double)usage.ru_utime.tv_sec + (double)usage.ru_utime.tv_usec / 1e6 +
                         (double)usage.ru_stime.tv_sec + (double)usage.ru_stime.tv_usec / 1e6;
    }
    FILE *statm = fopen("/proc/self/statm", "r");
    unsigned long long pages_total = 0, pages_resident = 0;
    if (statm != NULL) {
        if (fscanf(statm, "%llu %llu", &pages_total, &pages_resident) == 2) {
            g->resident_bytes = pages_resident * (unsigned long long)sysconf(_SC_PAGESIZE);
        }
        fclose(statm);
    }
    DIR *fds = opendir("/proc/self/fd");
    if (fds != NULL) {
        uint64_t count = 0;
        while (readdir(fds) != NULL) count++;
        closedir(fds);
        g->open_fds = count > 3 ? count - 3 : 0; /* ".", ".." and the directory's own fd */
    }
    g->start_time_seconds = start_time_seconds;
    struct statvfs disk;
    if (statvfs(data_dir, &disk) == 0) {
        g->data_dir_free_bytes = (uint64_t)disk.f_bavail * disk.f_frsize;
        g->data_dir_size_bytes = (uint64_t)disk.f_blocks * disk.f_frsize;
    }
}

void bal_metrics_render(const bal_metrics *m, const bal_metrics_gauges *g, bal_text *t) {
    line(t, "# HELP balanced_requests_total HTTP requests by route and status class.\n# TYPE balanced_requests_total counter\n");
    for (int r = 0; r < BAL_ROUTE_COUNT; r++) {
        for (int c = 1; c <= 5; c++) {
            uint64_t v = atomic_load_explicit(&m->requests[r][c], memory_order_relaxed);
            if (v != 0) line(t, "balanced_requests_total{route=\"%s\",status=\"%dxx\"} %llu\n", route_names[r], c, (unsigned long long)v);
        }
    }
    line(t, "# HELP balanced_results_total Business results of processed transactions.\n# TYPE balanced_results_total counter\n");
    for (int r = 0; r < BAL_RESULT_COUNT; r++) {
        line(t, "balanced_results_total{result=\"%s\"} %llu\n", bal_result_name((bal_result)r),
             (unsigned long long)atomic_load_explicit(&m->results[r], memory_order_relaxed));
    }
    scalar(t, "balanced_duplicates_total", "counter", "Requests answered as duplicates.", atomic_load(&m->duplicates));
    scalar(t, "balanced_decode_errors_total", "counter", "Requests or batch items refused as malformed.", atomic_load(&m->decode_errors));
    line(t, "# HELP balanced_auth_rejected_total Requests refused by authentication or authorisation, by reason.\n# TYPE balanced_auth_rejected_total counter\n");
    for (int r = 0; r < BAL_METRICS_AUTH_REASONS; r++) {
        line(t, "balanced_auth_rejected_total{reason=\"%s\"} %llu\n", auth_reasons[r],
             (unsigned long long)atomic_load_explicit(&m->auth_rejected[r], memory_order_relaxed));
    }
    scalar(t, "balanced_rate_limited_total", "counter", "Requests refused (429) because a key exceeded its budget.", atomic_load(&m->rate_limited));
    scalar(t, "balanced_cross_shard_total", "counter", "Commands that spanned shards.", atomic_load(&m->cross_shard_commands));
    scalar(t, "balanced_id_lookups_total", "counter", "Transaction ids looked up in the journal store.", atomic_load(&m->id_lookups));
    scalar(t, "balanced_id_filter_skips_total", "counter", "Transaction ids missing from memory that the id filter showed new (no journal look-up).", atomic_load(&m->id_filter_skips));
    scalar(t, "balanced_id_claim_waits_total", "counter", "Transaction ids that waited for another use of the same id to reach the journal.", atomic_load(&m->id_claim_waits));
    scalar(t, "balanced_id_filter_ids", "gauge", "Transaction ids added to the id filter since start (with repeats).", g->id_filter_ids);
    scalar(t, "balanced_journal_lag_ids", "gauge", "Transaction ids logged but not yet in the journal, all shards.", g->journal_lag_ids);
    scalar(t, "balanced_journal_lag_waits_total", "counter", "Times a shard waited because the journal lag was at --journal-lag-max.", g->journal_lag_waits);
    scalar(t, "balanced_snapshots_total", "counter", "Snapshots written.", atomic_load(&m->snapshots_written));
    line(t, "# HELP balanced_last_snapshot_timestamp_seconds Unix time of the last snapshot (0: none yet).\n# TYPE balanced_last_snapshot_timestamp_seconds gauge\nbalanced_last_snapshot_timestamp_seconds %lld\n",
         (long long)atomic_load(&m->last_snapshot_unix));
    histogram(t, "balanced_request_duration_seconds", "Time from receipt to response of POST requests.",
              &m->request_duration, time_bounds, BAL_METRICS_TIME_BUCKETS, 1e9);
    histogram(t, "balanced_wal_fsync_seconds", "Write-ahead log fdatasync latency.", &m->wal_fsync, time_bounds,
              BAL_METRICS_TIME_BUCKETS, 1e9);
    histogram(t, "balanced_apply_seconds", "Time to apply one shard batch to the ledger.", &m->apply_duration,
              time_bounds, BAL_METRICS_TIME_BUCKETS, 1e9);
    histogram(t, "balanced_batch_size", "Commands per shard batch (one log sync each).", &m->batch_size,
              size_bounds, BAL_METRICS_SIZE_BUCKETS, 1);
    gauge_per_shard(t, "balanced_queue_depth", "Entries waiting in a shard's queue.", g->queue_depth, g->shard_count);
    gauge_per_shard(t, "balanced_persister_lag_records", "Log records applied but not yet in the journal store.",
                    g->persister_lag, g->shard_count);
    gauge_per_shard(t, "balanced_balances", "Balances held by a shard.", g->balances, g->shard_count);
    scalar(t, "balanced_ready", "gauge", "Whether the node serves its shards (1) or not (0).", g->ready);
    scalar(t, "balanced_data_dir_free_bytes", "gauge", "Bytes free for the data directory's file system.", g->data_dir_free_bytes);
    scalar(t, "balanced_data_dir_size_bytes", "gauge", "Size of the data directory's file system.", g->data_dir_size_bytes);
    line(t, "# HELP process_cpu_seconds_total User and system CPU time spent in seconds.\n# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total %.3f\n",
         g->cpu_seconds);
    scalar(t, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", g->resident_bytes);
    scalar(t, "process_open_fds", "gauge", "Number of open file descriptors.", g->open_fds);
    line(t, "# HELP process_start_time_seconds Start time of the process since the Unix epoch in seconds.\n# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds %.3f\n",
         g->start_time_seconds);
}
