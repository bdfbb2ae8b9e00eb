/*
 * bal_histogram.c -- a log-linear latency histogram (see bal_histogram.h).
 *
 * Bucket layout, with S = 2^(SUB_BITS-1) = 64: values v < 2S map to bucket v. Above, let
 * e = msb(v) - (SUB_BITS-1), so that m = v >> e lies in [S, 2S); the bucket is e*S + m,
 * which continues the exact range without a gap and covers [m << e, ((m+1) << e) - 1].
 */
#include "bal_histogram.h"

#include <assert.h>
#include <math.h>
#include <string.h>

#define BAL_HISTOGRAM_HALF (1u << (BAL_HISTOGRAM_SUB_BITS - 1))

void bal_histogram_reset(bal_histogram *histogram) {
    assert(histogram != NULL);
    memset(histogram, 0, sizeof *histogram);
    histogram->min_us = UINT64_MAX;
}

uint32_t bal_histogram_bucket(uint64_t value_us) {
    if (value_us > BAL_HISTOGRAM_VALUE_MAX) value_us = BAL_HISTOGRAM_VALUE_MAX;
    if (value_us < 2u * BAL_HISTOGRAM_HALF) return (uint32_t)value_us;
    uint32_t msb = 63u - (uint32_t)__builtin_clzll(value_us);
    uint32_t exponent = msb - (BAL_HISTOGRAM_SUB_BITS - 1);
    uint32_t mantissa = (uint32_t)(value_us >> exponent);
    assert(mantissa >= BAL_HISTOGRAM_HALF && mantissa < 2u * BAL_HISTOGRAM_HALF);
    uint32_t bucket = exponent * BAL_HISTOGRAM_HALF + mantissa;
    assert(bucket < BAL_HISTOGRAM_BUCKETS);
    return bucket;
}

uint64_t bal_histogram_bucket_upper(uint32_t bucket) {
    assert(bucket < BAL_HISTOGRAM_BUCKETS);
    if (bucket < 2u * BAL_HISTOGRAM_HALF) return bucket;
    uint32_t exponent = bucket / BAL_HISTOGRAM_HALF - 1;
    uint64_t mantissa = bucket - exponent * BAL_HISTOGRAM_HALF;
    return ((mantissa + 1) << exponent) - 1;
}

void bal_histogram_record(bal_histogram *histogram, uint64_t value_us) {
    assert(histogram != NULL);
    histogram->counts[bal_histogram_bucket(value_us)]++;
    histogram->total++;
    histogram->sum_us += (double)value_us;
    if (value_us < histogram->min_us) histogram->min_us = value_us;
    if (value_us > histogram->max_us) histogram->max_us = value_us;
}

void bal_histogram_merge(bal_histogram *into, const bal_histogram *from) {
    assert(into != NULL && from != NULL);
    for (uint32_t i = 0; i < BAL_HISTOGRAM_BUCKETS; i++) into->counts[i] += from->counts[i];
    into->total += from->total;
    into->sum_us += from->sum_us;
    if (from->min_us < into->min_us) into->min_us = from->min_us;
    if (from->max_us > into->max_us) into->max_us = from->max_us;
}

uint64_t bal_histogram_percentile(const bal_histogram *histogram, double percentile) {
    assert(histogram != NULL);
    assert(percentile >= 0.0 && percentile <= 100.0);
    if (histogram->total == 0) return 0;
    /* The rank of the value asked for, counting from 1. */
    uint64_t rank = (uint64_t)ceil(percentile / 100.0 * (double)histogram->total);
    if (rank == 0) rank = 1;
    uint64_t seen = 0;
    for (uint32_t i = 0; i < BAL_HISTOGRAM_BUCKETS; i++) {
        seen += histogram->counts[i];
        if (seen >= rank) {
            uint64_t upper = bal_histogram_bucket_upper(i);
            /* Never report beyond what was seen. */
            return upper < histogram->max_us ? upper : histogram->max_us;
        }
    }
    return histogram->max_us;
}

double bal_histogram_mean(const bal_histogram *histogram) {
    assert(histogram != NULL);
    return histogram->total == 0 ? 0.0 : histogram->sum_us / (double)histogram->total;
}
