/*
 * bal_hash.h -- small, fast, deterministic 64-bit hashing for the core.
 *
 * Used for table placement (seeded, so that clients cannot aim at a slot), for the digest
 * that decides whether a retried request has the same content, for the order-independent
 * state hash and for the snapshot checksum. Not a cryptographic hash: nothing here defends
 * against a party that knows the seed. Byte order is little-endian (x86-64, ARM64).
 */
#ifndef BAL_HASH_H
#define BAL_HASH_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define BAL_HASH_P0 0xa0761d6478bd642full
#define BAL_HASH_P1 0xe7037ed1a0b428dbull
#define BAL_HASH_P2 0x8ebc6af09c88c6e3ull
#define BAL_HASH_P3 0x589965cc75374cc3ull

/* Multiply two words into 128 bits and fold the halves: the core mixing step. */
static inline uint64_t bal_hash_mix(uint64_t a, uint64_t b) {
    unsigned __int128 product = (unsigned __int128)a * b;
    return (uint64_t)product ^ (uint64_t)(product >> 64);
}

/* The last 1..7 bytes of an input as a little-endian word, zeros above: what a memcpy into
 * a zeroed word gives, in one or two loads instead of a byte loop. total is the input's whole
 * length: at 8 or more, the 8 bytes ending at the tail are all inside the input. */
static inline uint64_t bal_hash_tail(const uint8_t *tail, size_t length, size_t total) {
    uint64_t word;
    if (total >= 8) {
        memcpy(&word, tail + length - 8, 8);
        return word >> (64 - 8 * length);
    }
    if (length >= 4) {
        uint32_t low, high; /* overlapping reads: the shared bytes agree */
        memcpy(&low, tail, 4);
        memcpy(&high, tail + length - 4, 4);
        return low | ((uint64_t)high << (8 * (length - 4)));
    }
    return tail[0] | ((uint64_t)tail[length / 2] << (8 * (length / 2))) |
           ((uint64_t)tail[length - 1] << (8 * (length - 1)));
}

static inline uint64_t bal_hash_u64(uint64_t value, uint64_t seed) {
    return bal_hash_mix(value ^ seed ^ BAL_HASH_P0, BAL_HASH_P1 ^ (value >> 32)) ^ value;
}

static inline uint64_t bal_hash_bytes(const void *data, size_t length, uint64_t seed) {
    const uint8_t *bytes = (const uint8_t *)data;
    size_t total = length;
    uint64_t state = seed ^ bal_hash_mix(length ^ BAL_HASH_P0, BAL_HASH_P1);
    while (length >= 8) {
        uint64_t word;
        memcpy(&word, bytes, 8);
        state = bal_hash_mix(state ^ word, BAL_HASH_P2);
        bytes += 8;
        length -= 8;
    }
    if (length > 0) {
        uint64_t word = bal_hash_tail(bytes, length, total);
        state = bal_hash_mix(state ^ word ^ ((uint64_t)length << 56), BAL_HASH_P3);
    }
    return bal_hash_mix(state, BAL_HASH_P0 ^ BAL_HASH_P3);
}

/* bal_hash_bytes128 in three steps, for a caller that has its words in registers: start
 * with the total length, feed each full 8-byte word in order, finish with the last
 * 1..7 bytes (as bal_hash_tail would read them; tail_length 0: none). */
typedef struct bal_hash128_state {
    uint64_t a, b;
} bal_hash128_state;

static inline bal_hash128_state bal_hash128_start(size_t total_length) {
    bal_hash128_state h = {bal_hash_mix(total_length ^ BAL_HASH_P0, BAL_HASH_P1),
                           bal_hash_mix(total_length ^ BAL_HASH_P3, BAL_HASH_P2)};
    return h;
}

static inline void bal_hash128_word(bal_hash128_state *h, uint64_t word) {
    h->a = bal_hash_mix(h->a ^ word, BAL_HASH_P2);
    h->b = bal_hash_mix(h->b ^ word ^ BAL_HASH_P0, BAL_HASH_P3);
}

static inline void bal_hash128_finish(bal_hash128_state *h, uint64_t tail, size_t tail_length, uint64_t *low_out,
                                      uint64_t *high_out) {
    if (tail_length > 0) {
        uint64_t word = tail ^ ((uint64_t)tail_length << 56);
        h->a = bal_hash_mix(h->a ^ word, BAL_HASH_P3);
        h->b = bal_hash_mix(h->b ^ word ^ BAL_HASH_P1, BAL_HASH_P0);
    }
    *low_out = bal_hash_mix(h->a, BAL_HASH_P0 ^ BAL_HASH_P3);
    *high_out = bal_hash_mix(h->b, BAL_HASH_P1 ^ BAL_HASH_P2);
}

/* Two independent 64-bit lanes in one pass: a 128-bit digest for the cost of one walk. */
static inline void bal_hash_bytes128(const void *data, size_t length, uint64_t *low_out, uint64_t *high_out) {
    const uint8_t *bytes = (const uint8_t *)data;
    size_t total = length;
    bal_hash128_state h = bal_hash128_start(length);
    while (length >= 8) {
        uint64_t word;
        memcpy(&word, bytes, 8);
        bal_hash128_word(&h, word);
        bytes += 8;
        length -= 8;
    }
    bal_hash128_finish(&h, length > 0 ? bal_hash_tail(bytes, length, total) : 0, length, low_out, high_out);
}

/* Range reduction without a modulo: maps a 64-bit hash onto [0, range). */
static inline uint64_t bal_hash_reduce(uint64_t hash, uint64_t range) {
    return (uint64_t)(((unsigned __int128)hash * range) >> 64);
}

#endif
