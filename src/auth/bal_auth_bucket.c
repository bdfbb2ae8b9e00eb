/*
 * bal_auth_bucket.c -- token bucket arithmetic (see bal_auth_bucket.h).
 */
#include "bal_auth_bucket.h"

#include <assert.h>

#include "bal_auth.h"

static int64_t bal_auth_bucket_capacity_milli(uint32_t burst) {
    assert(burst >= 1 && burst <= BAL_AUTH_BURST_MAX);
    return (int64_t)burst * BAL_AUTH_BUCKET_MILLI;
}

void bal_auth_bucket_refill(bal_auth_bucket *bucket, uint32_t rate_per_s, uint32_t burst, int64_t now_ms) {
    assert(bucket != NULL);
    assert(rate_per_s >= 1 && rate_per_s <= BAL_AUTH_RATE_MAX);
    int64_t capacity = bal_auth_bucket_capacity_milli(burst);
    if (!bucket->started) {
        bucket->started = true;
        bucket->tokens_milli = capacity;
        bucket->updated_ms = now_ms;
        return;
    }
    if (now_ms > bucket->updated_ms && bucket->tokens_milli < capacity) {
        /* rate tokens per second are rate thousandths per millisecond. Compare the elapsed
           time with the time to fill before multiplying, so that a long idle period cannot
           overflow the product. */
        uint64_t elapsed_ms = (uint64_t)(now_ms - bucket->updated_ms);
        uint64_t missing = (uint64_t)(capacity - bucket->tokens_milli);
        uint64_t fill_ms = (missing + rate_per_s - 1) / rate_per_s;
        if (elapsed_ms >= fill_ms) {
            bucket->tokens_milli = capacity;
        } else {
            bucket->tokens_milli += (int64_t)(elapsed_ms * rate_per_s);
        }
    }
    if (bucket->tokens_milli > capacity) bucket->tokens_milli = capacity; /* the burst was lowered */
    if (now_ms > bucket->updated_ms) bucket->updated_ms = now_ms;
    assert(bucket->tokens_milli <= capacity);
}

uint64_t bal_auth_bucket_wait_ms(const bal_auth_bucket *bucket, uint32_t rate_per_s, uint32_t burst,
                                 uint32_t cost) {
    assert(bucket != NULL && bucket->started);
    assert(rate_per_s >= 1);
    /* A cost above the burst only needs a full bucket; otherwise it could never be paid. */
    uint32_t needed = cost < burst ? cost : burst;
    int64_t needed_milli = (int64_t)needed * BAL_AUTH_BUCKET_MILLI;
    if (bucket->tokens_milli >= needed_milli) return 0;
    uint64_t missing = (uint64_t)(needed_milli - bucket->tokens_milli);
    return (missing + rate_per_s - 1) / rate_per_s;
}

void bal_auth_bucket_take(bal_auth_bucket *bucket, uint32_t cost) {
    assert(bucket != NULL && bucket->started);
    /* The debt is bounded by one cost (at most 2^32 tokens), far inside int64. */
    bucket->tokens_milli -= (int64_t)cost * BAL_AUTH_BUCKET_MILLI;
    assert(bucket->tokens_milli > -((int64_t)UINT32_MAX + 1) * BAL_AUTH_BUCKET_MILLI);
}
