/*
 * bal_auth_nonce.h -- the memory of recently seen nonces (internal to src/auth).
 *
 * A request with timestamp t can be accepted while the server's clock is within
 * BAL_AUTH_REPLAY_WINDOW_MS of t, so its nonce must be remembered until t + window has
 * passed; after that the timestamp check alone refuses a replay and the entry is reclaimed.
 *
 * The memory holds at most count_max entries, allocated at creation. When it is full it
 * refuses new nonces: forgetting an entry early would let its request be replayed.
 *
 * Entries are 128-bit digests of (key id, nonce): SipHash-2-4-128 under a random
 * per-process key (bal_siphash.h), so nonces are per key, an entry is small (32 bytes with
 * its links), and a client cannot choose nonces that pile into one hash chain. A collision
 * between two different (key, nonce) pairs needs about 2^64 attempts.
 *
 * Reclamation is a timing wheel of one-second slots spanning twice the window (the
 * furthest expiry a fresh entry can have): each call first frees the entries of the slots
 * that have fully passed, so the cost is spread over the calls and bounded by the number
 * of entries that expire. Internally locked; the lock is held for the reclamation, one
 * hash-chain walk and one insertion.
 */
#ifndef BAL_AUTH_NONCE_H
#define BAL_AUTH_NONCE_H

#include <stddef.h>
#include <stdint.h>

#define BAL_AUTH_NONCE_DIGEST_BYTES 16

typedef struct bal_auth_nonce_memory bal_auth_nonce_memory;

typedef enum bal_auth_nonce_result {
    BAL_AUTH_NONCE_REMEMBERED = 0, /* new: now remembered until its expiry */
    BAL_AUTH_NONCE_REPLAYED,       /* seen, and not yet expired */
    BAL_AUTH_NONCE_FULL,           /* new, but the memory is full of unexpired entries */
} bal_auth_nonce_result;

/* NULL when out of memory (or the seed cannot be drawn). 1 <= count_max <= BAL_AUTH_NONCE_COUNT_MAX. */
bal_auth_nonce_memory *bal_auth_nonce_create(uint32_t count_max);
void bal_auth_nonce_destroy(bal_auth_nonce_memory *memory);

/* The digest that identifies (key id, nonce). Needs no lock. */
void bal_auth_nonce_digest(const bal_auth_nonce_memory *memory, const char *key_id, size_t key_id_length,
                           const char *nonce, size_t nonce_length, uint8_t digest[BAL_AUTH_NONCE_DIGEST_BYTES]);

/* Starts loading the digest's hash bucket into the cache. The bucket array is large (4 MiB
   for the default memory) and read at random, so its cache miss is most of the cost of
   bal_auth_nonce_remember; a caller that has other work to do first (the HMAC) hides it. */
void bal_auth_nonce_prefetch(const bal_auth_nonce_memory *memory, const uint8_t digest[BAL_AUTH_NONCE_DIGEST_BYTES]);

/* Once the bucket has had time to arrive: starts loading the first entry of its chain,
   which a look-up of a new nonce reads to rule it out (that miss was most of the rest). */
void bal_auth_nonce_prefetch_entry(const bal_auth_nonce_memory *memory,
                                   const uint8_t digest[BAL_AUTH_NONCE_DIGEST_BYTES]);

/*
 * Reclaims what has expired by now_ms, then looks the digest up and remembers it until
 * expires_ms (inclusive) unless it is there already. For FULL, *retry_after_ms (if not NULL)
 * gets the time until the next entries are reclaimed (at least 1).
 */
bal_auth_nonce_result bal_auth_nonce_remember(bal_auth_nonce_memory *memory,
                                              const uint8_t digest[BAL_AUTH_NONCE_DIGEST_BYTES],
                                              int64_t expires_ms, int64_t now_ms, int64_t *retry_after_ms);

/* Entries held now (expired ones count until they are reclaimed). */
uint32_t bal_auth_nonce_count(bal_auth_nonce_memory *memory);

#endif
