/*
 * bal_auth_bucket.h -- a token bucket in exact integer arithmetic (internal to src/auth).
 *
 * Tokens are counted in thousandths so that a rate of r tokens per second refills exactly
 * r thousandths per millisecond: no floating point, no rounding drift. A bucket starts
 * full on its first use. A cost larger than the burst is accepted from a full bucket and
 * leaves it in debt (negative), so the long-run rate holds and no cost is refused for ever.
 *
 * Pure functions over a plain struct; the caller provides the locking.
 */
#ifndef BAL_AUTH_BUCKET_H
#define BAL_AUTH_BUCKET_H

#include <stdbool.h>
#include <stdint.h>

#define BAL_AUTH_BUCKET_MILLI 1000 /* thousandths of a token per token */

typedef struct bal_auth_bucket {
    int64_t tokens_milli; /* at most burst * 1000; negative while in debt */
    int64_t updated_ms;   /* the clock at the last refill */
    bool started;         /* false until the first use, when the bucket fills */
} bal_auth_bucket;

/* Adds what the elapsed time earned, up to the burst (a lowered burst clips the tokens).
   A clock that went backwards (another thread's older reading) earns nothing. */
void bal_auth_bucket_refill(bal_auth_bucket *bucket, uint32_t rate_per_s, uint32_t burst, int64_t now_ms);

/* Milliseconds until a refilled bucket can pay `cost`; 0 if it can now. */
uint64_t bal_auth_bucket_wait_ms(const bal_auth_bucket *bucket, uint32_t rate_per_s, uint32_t burst,
                                 uint32_t cost);

/* Takes `cost` tokens; the caller checked bal_auth_bucket_wait_ms() == 0. */
void bal_auth_bucket_take(bal_auth_bucket *bucket, uint32_t cost);

#endif
