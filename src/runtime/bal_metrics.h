/*
 * bal_metrics.h -- the node's counters and histograms, rendered in Prometheus text format.
 *
 * A fixed set of metrics in one struct of atomics: any thread increments without locks;
 * /metrics renders a consistent-enough view (each value read atomically). Histograms have
 * fixed buckets in seconds (or counts), from microseconds to seconds.
 */
#ifndef BAL_METRICS_H
#define BAL_METRICS_H

#include <stdatomic.h>
#include <stdint.h>

#include "bal_text.h"
#include "bal_types.h"

#define BAL_METRICS_TIME_BUCKETS 16
#define BAL_METRICS_SIZE_BUCKETS 12
#define BAL_METRICS_AUTH_REASONS 9

/* The index of an authentication refusal's reason (the last one collects unknown ones). */
int bal_metrics_auth_reason(const char *reason);

typedef struct bal_histogram {
    _Atomic uint64_t buckets[BAL_METRICS_TIME_BUCKETS + 1]; /* the last is +Inf */
    _Atomic uint64_t count;
    _Atomic uint64_t sum;   /* nanoseconds, or units for size histograms */
} bal_histogram;

enum bal_route_metric {
    BAL_ROUTE_TRANSACTION, BAL_ROUTE_BATCH, BAL_ROUTE_BALANCES, BAL_ROUTE_BALANCE,
    BAL_ROUTE_TRANSACTION_LOOKUP, BAL_ROUTE_HISTORY, BAL_ROUTE_HEALTH, BAL_ROUTE_READY,
    BAL_ROUTE_METRICS, BAL_ROUTE_OTHER, BAL_ROUTE_COUNT
};

typedef struct bal_metrics {
    _Atomic uint64_t requests[BAL_ROUTE_COUNT][6];   /* by route and status class 1xx..5xx (index 1..5) */
    _Atomic uint64_t results[BAL_RESULT_COUNT];
    _Atomic uint64_t duplicates;
    _Atomic uint64_t decode_errors;
    _Atomic uint64_t commands_applied;
    _Atomic uint64_t cross_shard_commands;
    _Atomic uint64_t id_lookups;               /* ids asked of the journal store */
    _Atomic uint64_t id_filter_skips;          /* ids not in memory that the id filter showed new */
    _Atomic uint64_t id_claim_waits;           /* ids that waited for another claim's journal rows */
    _Atomic uint64_t auth_rejected[BAL_METRICS_AUTH_REASONS]; /* by reason, see bal_metrics_auth_reason */
    _Atomic uint64_t rate_limited;             /* requests refused 429 by a key's budget */
    bal_histogram request_duration;            /* seconds, POST routes, receipt to response */
    bal_histogram wal_fsync;                   /* seconds */
    bal_histogram apply_duration;              /* seconds per batch */
    bal_histogram batch_size;                  /* commands per shard batch */
    _Atomic uint64_t snapshots_written;
    _Atomic int64_t last_snapshot_unix;        /* seconds */
} bal_metrics;

void bal_metrics_observe_ns(bal_histogram *histogram, uint64_t nanoseconds);
void bal_metrics_observe_count(bal_histogram *histogram, uint64_t count);

/* Gauges come from the node at render time. */
typedef struct bal_metrics_gauges {
    uint32_t shard_count;
    uint64_t queue_depth[64];       /* per shard (first 64) */
    uint64_t persister_lag[64];     /* log records applied but not yet in the journal store */
    uint64_t balances[64];
    uint64_t ready;
    uint64_t id_filter_ids;         /* ids added to the id filter (with repeats) */
    uint64_t journal_lag_ids;       /* ids claimed and not yet in the journal, node-wide */
    uint64_t journal_lag_waits;     /* times a shard waited because that lag was at its maximum */
    /* The process and its data directory. */
    double cpu_seconds;
    uint64_t resident_bytes;
    uint64_t open_fds;
    double start_time_seconds;
    uint64_t data_dir_free_bytes;
    uint64_t data_dir_size_bytes;
} bal_metrics_gauges;

/* Fills the process and disk fields of gauges (reads /proc and statvfs). */
void bal_metrics_process(bal_metrics_gauges *gauges, const char *data_dir, double start_time_seconds);

void bal_metrics_render(const bal_metrics *metrics, const bal_metrics_gauges *gauges, bal_text *text);

#endif
