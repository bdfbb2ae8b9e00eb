/*
 * bal_sign.c -- HMAC-SHA256 request signatures (bal_sign.h) on bal_sha256.
 */
#include "bal_sign.h"

#include <assert.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "bal_sha256.h"

_Static_assert(BAL_SIGN_DIGEST_BYTES == BAL_SHA256_DIGEST_BYTES, "a signature is one SHA-256 digest");

/* Per thread: the last secret's HMAC states, so that a MAC under the same key (a client
 * signs with one key; a server sees few) skips hashing the key's two padded blocks. */
typedef struct sign_cache {
    bal_hmac_sha256_key key;
    size_t secret_length; /* SIZE_MAX: nothing cached (or too long to remember) */
    unsigned char secret[BAL_SIGN_SECRET_CACHE_MAX];
} sign_cache;

/* Room for a usual string to sign: method, path with query, timestamp, nonce, body hash. */
#define BAL_SIGN_JOINED_BYTES 512

static _Thread_local sign_cache thread_cache = {.secret_length = SIZE_MAX};

/* The cache holds a secret and its HMAC states: wiped when its thread ends (a key whose
 * value is the thread's cache; the destructor runs for non-NULL values only). */
static pthread_key_t wipe_key;
static pthread_once_t wipe_once = PTHREAD_ONCE_INIT;

static void wipe_cache(void *value) {
    explicit_bzero(value, sizeof(sign_cache));
    ((sign_cache *)value)->secret_length = SIZE_MAX; /* and marked empty, not "a secret of length 0" */
}

static void create_wipe_key(void) {
    if (pthread_key_create(&wipe_key, wipe_cache) != 0) abort();
}

static void to_hex(const unsigned char *bytes, size_t length, char *out) {
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < length; i++) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 15];
    }
    out[2 * length] = '\0';
}

void bal_sign_sha256(const void *data, size_t length, uint8_t out[BAL_SIGN_DIGEST_BYTES]) {
    assert(data != NULL || length == 0);
    bal_sha256_digest(data, length, out);
}

void bal_sign_sha256_hex(const void *data, size_t length, char out[BAL_SIGN_HEX_LENGTH + 1]) {
    uint8_t digest[BAL_SIGN_DIGEST_BYTES];
    bal_sign_sha256(data, length, digest);
    to_hex(digest, sizeof(digest), out);
}

static const bal_hmac_sha256_key *keyed(const void *secret, size_t secret_length) {
    sign_cache *cache = &thread_cache;
    bool same = cache->secret_length == secret_length && secret_length <= sizeof(cache->secret) &&
                memcmp(cache->secret, secret, secret_length) == 0;
    if (!same) {
        pthread_once(&wipe_once, create_wipe_key);
        if (pthread_getspecific(wipe_key) == NULL && pthread_setspecific(wipe_key, cache) != 0) abort();
        bal_hmac_sha256_key_init(&cache->key, secret, secret_length);
        if (secret_length <= sizeof(cache->secret)) {
            memcpy(cache->secret, secret, secret_length);
            cache->secret_length = secret_length;
        } else {
            cache->secret_length = SIZE_MAX;
        }
    }
    return &cache->key;
}

void bal_sign_request_digest(const void *secret, size_t secret_length, const char *method, size_t method_length,
                             const char *path, size_t path_length, const char *timestamp, size_t timestamp_length,
                             const char *nonce, size_t nonce_length, const void *body, size_t body_length,
                             uint8_t out[BAL_SIGN_DIGEST_BYTES]) {
    char body_hash[BAL_SIGN_HEX_LENGTH + 1];
    bal_sign_sha256_hex(body, body_length, body_hash);
    bal_sign_request_digest_hashed(secret, secret_length, method, method_length, path, path_length, timestamp,
                                   timestamp_length, nonce, nonce_length, body_hash, out);
}

void bal_sign_request_digest_hashed(const void *secret, size_t secret_length, const char *method,
                                    size_t method_length, const char *path, size_t path_length,
                                    const char *timestamp, size_t timestamp_length, const char *nonce,
                                    size_t nonce_length, const char body_hash[BAL_SIGN_HEX_LENGTH],
                                    uint8_t out[BAL_SIGN_DIGEST_BYTES]) {
    assert(secret != NULL && method != NULL && path != NULL && timestamp != NULL && nonce != NULL);
    assert(body_hash != NULL);
    const bal_hmac_sha256_key *key = keyed(secret, secret_length);
    const struct { const void *bytes; size_t length; } parts[] = {
        {method, method_length}, {"\n", 1}, {path, path_length}, {"\n", 1}, {timestamp, timestamp_length},
        {"\n", 1}, {nonce, nonce_length}, {"\n", 1}, {body_hash, BAL_SIGN_HEX_LENGTH},
    };
    enum { PART_COUNT = sizeof(parts) / sizeof(parts[0]) };
    /* A usual request's string fits a small buffer: gathered there, it is MACed in one call
       (bal_hmac_sha256: no state, no partial-block copies) instead of nine updates. */
    char joined[BAL_SIGN_JOINED_BYTES];
    size_t total = 0;
    for (size_t i = 0; i < PART_COUNT; i++) total += parts[i].length;
    if (total <= sizeof(joined)) {
        size_t used = 0;
        for (size_t i = 0; i < PART_COUNT; i++) {
            memcpy(joined + used, parts[i].bytes, parts[i].length);
            used += parts[i].length;
        }
        bal_hmac_sha256(key, joined, used, out);
    } else {
        bal_sha256 state;
        bal_hmac_sha256_start(key, &state);
        for (size_t i = 0; i < PART_COUNT; i++) bal_sha256_update(&state, parts[i].bytes, parts[i].length);
        bal_hmac_sha256_final(key, &state, out);
    }
}

void bal_sign_request(const void *secret, size_t secret_length, const char *method, size_t method_length,
                      const char *path, size_t path_length, const char *timestamp, size_t timestamp_length,
                      const char *nonce, size_t nonce_length, const void *body, size_t body_length,
                      char out[BAL_SIGN_HEX_LENGTH + 1]) {
    uint8_t mac[BAL_SIGN_DIGEST_BYTES];
    bal_sign_request_digest(secret, secret_length, method, method_length, path, path_length, timestamp,
                            timestamp_length, nonce, nonce_length, body, body_length, mac);
    to_hex(mac, sizeof(mac), out);
    explicit_bzero(mac, sizeof(mac));
}

/* Each lower-case hex digit's value plus one; 0 for every other byte. A table instead of
 * comparisons: a signature's digits are random, so a branch per digit mispredicts half of
 * the time (that loop was the largest part of checking the headers). */
#define HEX_DIGIT(c, value) [(unsigned char)(c)] = (value) + 1
static const uint8_t hex_values[256] = {
    HEX_DIGIT('0', 0),   HEX_DIGIT('1', 1),   HEX_DIGIT('2', 2),   HEX_DIGIT('3', 3),   HEX_DIGIT('4', 4),
    HEX_DIGIT('5', 5),   HEX_DIGIT('6', 6),   HEX_DIGIT('7', 7),   HEX_DIGIT('8', 8),   HEX_DIGIT('9', 9),
    HEX_DIGIT('a', 10),  HEX_DIGIT('b', 11),  HEX_DIGIT('c', 12),  HEX_DIGIT('d', 13),  HEX_DIGIT('e', 14),
    HEX_DIGIT('f', 15),
};
#undef HEX_DIGIT

#if defined(__SSE2__)
/* 16 hex digits into 8 bytes, all SSE2: each digit's value is c - '0' if that is at most 9,
 * else c - 'a' + 10 if c - 'a' is at most 5 (unsigned, so anything below '0' or 'a' wraps
 * high); a byte that is neither marks the whole input invalid. Returns false if one is. */
static bool hex_decode_16(const char *hex, uint8_t out[8]) {
    const __m128i text = _mm_loadu_si128((const __m128i *)hex);
    const __m128i digit = _mm_sub_epi8(text, _mm_set1_epi8('0'));
    const __m128i letter = _mm_sub_epi8(text, _mm_set1_epi8('a'));
    const __m128i is_digit = _mm_cmpeq_epi8(_mm_min_epu8(digit, _mm_set1_epi8(9)), digit);
    const __m128i is_letter = _mm_cmpeq_epi8(_mm_min_epu8(letter, _mm_set1_epi8(5)), letter);
    const __m128i values = _mm_or_si128(_mm_and_si128(is_digit, digit),
                                        _mm_and_si128(is_letter, _mm_add_epi8(letter, _mm_set1_epi8(10))));
    /* Little-endian 16-bit lanes: the first digit of a pair (the high nibble) is the low byte. */
    const __m128i pairs = _mm_or_si128(_mm_slli_epi16(_mm_and_si128(values, _mm_set1_epi16(0x00ff)), 4),
                                       _mm_srli_epi16(values, 8));
    _mm_storel_epi64((__m128i *)out, _mm_packus_epi16(pairs, pairs));
    return _mm_movemask_epi8(_mm_or_si128(is_digit, is_letter)) == 0xffff;
}
#endif

bool bal_sign_hex_decode(const char *hex, uint8_t *out, size_t byte_count) {
    assert(hex != NULL && out != NULL);
    uint8_t invalid = 0;
    size_t start = 0;
#if defined(__SSE2__)
    bool valid = true;
    for (; start + 8 <= byte_count; start += 8) valid &= hex_decode_16(hex + 2 * start, out + start);
    if (!valid) invalid = 0xf0;
#endif
    for (size_t i = start; i < byte_count; i++) {
        /* value - 1: 0..15 for a digit, 0xff for anything else (its high bits mark it). */
        uint8_t high = (uint8_t)(hex_values[(unsigned char)hex[2 * i]] - 1);
        uint8_t low = (uint8_t)(hex_values[(unsigned char)hex[2 * i + 1]] - 1);
        invalid |= (uint8_t)(high | low);
        out[i] = (uint8_t)((uint8_t)(high << 4) | (low & 0x0f));
    }
    return (invalid & 0xf0) == 0;
}

bool bal_sign_equal(const void *a, const void *b, size_t length) {
    const volatile unsigned char *x = a, *y = b;
    unsigned char difference = 0;
    for (size_t i = 0; i < length; i++) difference |= (unsigned char)(x[i] ^ y[i]);
    return difference == 0;
}
