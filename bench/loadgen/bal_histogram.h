/*
 * bal_histogram.h -- a log-linear latency histogram in microseconds (HDR-style).
 *
 * Values below 128 us are counted exactly; above, each power of two is split into 64
 * buckets, so any recorded value is reported within 1/64 (1.6 %) of itself, from 1 us to
 * about 12 days, in a fixed 18 KiB array with no allocation. Percentiles report the upper
 * edge of their bucket (never optimistic); min and max are exact.
 */
#ifndef BAL_HISTOGRAM_H
#define BAL_HISTOGRAM_H

#include <stdint.h>

/* Exact below 2^BAL_HISTOGRAM_SUB_BITS; 2^(BAL_HISTOGRAM_SUB_BITS-1) buckets per octave above. */
#define BAL_HISTOGRAM_SUB_BITS 7
/* Largest value kept apart: 2^40 us is 12.7 days; larger values count as this. */
#define BAL_HISTOGRAM_VALUE_BITS 40
#define BAL_HISTOGRAM_VALUE_MAX ((1ull << BAL_HISTOGRAM_VALUE_BITS) - 1)
#define BAL_HISTOGRAM_BUCKETS \
    ((BAL_HISTOGRAM_VALUE_BITS - BAL_HISTOGRAM_SUB_BITS + 2) << (BAL_HISTOGRAM_SUB_BITS - 1))

typedef struct bal_histogram {
    uint64_t counts[BAL_HISTOGRAM_BUCKETS];
    uint64_t total;
    uint64_t min_us;
    uint64_t max_us;
    double sum_us;
} bal_histogram;

void bal_histogram_reset(bal_histogram *histogram);
void bal_histogram_record(bal_histogram *histogram, uint64_t value_us);
/* Adds every count of `from` into `into`. */
void bal_histogram_merge(bal_histogram *into, const bal_histogram *from);
/* The value at or below which `percentile` percent (0..100) of the values lie; 0 if empty. */
uint64_t bal_histogram_percentile(const bal_histogram *histogram, double percentile);
double bal_histogram_mean(const bal_histogram *histogram);

/* Bucket arithmetic, exposed for tests. */
uint32_t bal_histogram_bucket(uint64_t value_us);
uint64_t bal_histogram_bucket_upper(uint32_t bucket);

#endif
