/*
 * bal_sign.c -- HMAC-SHA256 request signatures (bal_sign.h) on OpenSSL's libcrypto.
 */
#include "bal_sign.h"

#include <assert.h>
#include <openssl/evp.h>
#include <openssl/core_names.h>
#include <openssl/params.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Per thread: a digest context and a keyed HMAC context, reused from call to call.
 * OpenSSL 3's one-shot calls (EVP_Digest, SHA256) allocate a context on every call and
 * SHA256() also looks the algorithm up by name; the HMAC is keyed once per secret (the key
 * schedule is most of the cost of a fresh context), and EVP_MAC_init with a NULL key
 * restarts it. A client signs with one key; a server sees few. The algorithms are
 * fetched once (pthread_once), kept for the life of the process. */
typedef struct sign_cache {
    EVP_MD_CTX *digest;
    EVP_MAC_CTX *mac;
    size_t secret_length; /* SIZE_MAX: too long to remember, key it every time */
    unsigned char secret[BAL_SIGN_SECRET_CACHE_MAX];
} sign_cache;

static EVP_MD *sha256_md;
static EVP_MAC *hmac_algorithm;
static pthread_once_t fetch_once = PTHREAD_ONCE_INIT;
static pthread_key_t cache_key; /* each thread's sign_cache, freed when the thread ends */

static void free_cache(void *value) {
    sign_cache *cache = value;
    EVP_MD_CTX_free(cache->digest);
    EVP_MAC_CTX_free(cache->mac);
    OPENSSL_cleanse(cache->secret, sizeof(cache->secret));
    free(cache);
}

static void fetch_algorithms(void) {
    sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
    hmac_algorithm = EVP_MAC_fetch(NULL, "HMAC", NULL);
    if (sha256_md == NULL || hmac_algorithm == NULL || pthread_key_create(&cache_key, free_cache) != 0) abort();
}

static sign_cache *thread_cache(void) {
    pthread_once(&fetch_once, fetch_algorithms);
    sign_cache *cache = pthread_getspecific(cache_key);
    if (cache == NULL) {
        cache = calloc(1, sizeof(*cache));
        if (cache == NULL || pthread_setspecific(cache_key, cache) != 0) abort();
        cache->digest = EVP_MD_CTX_new();
        cache->mac = EVP_MAC_CTX_new(hmac_algorithm);
        cache->secret_length = SIZE_MAX; /* not keyed yet */
        if (cache->digest == NULL || cache->mac == NULL) abort();
    }
    return cache;
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
    sign_cache *cache = thread_cache();
    unsigned int digest_length = 0;
    if (EVP_DigestInit_ex2(cache->digest, sha256_md, NULL) != 1 ||
        EVP_DigestUpdate(cache->digest, data != NULL ? data : (const void *)"", length) != 1 ||
        EVP_DigestFinal_ex(cache->digest, out, &digest_length) != 1) {
        abort();
    }
    assert(digest_length == BAL_SIGN_DIGEST_BYTES);
}

void bal_sign_sha256_hex(const void *data, size_t length, char out[BAL_SIGN_HEX_LENGTH + 1]) {
    uint8_t digest[BAL_SIGN_DIGEST_BYTES];
    bal_sign_sha256(data, length, digest);
    to_hex(digest, sizeof(digest), out);
}

static EVP_MAC_CTX *keyed_context(sign_cache *cache, const void *secret, size_t secret_length) {
    bool same = cache->secret_length == secret_length && secret_length <= sizeof(cache->secret) &&
                memcmp(cache->secret, secret, secret_length) == 0;
    if (same) {
        if (EVP_MAC_init(cache->mac, NULL, 0, NULL) != 1) abort();
        return cache->mac;
    }
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string("digest", (char *)"SHA256", 0), OSSL_PARAM_construct_end()};
    if (EVP_MAC_init(cache->mac, secret, secret_length, params) != 1) abort();
    if (secret_length <= sizeof(cache->secret)) {
        memcpy(cache->secret, secret, secret_length);
        cache->secret_length = secret_length;
    } else {
        cache->secret_length = SIZE_MAX;
    }
    return cache->mac;
}

void bal_sign_request_digest(const void *secret, size_t secret_length, const char *method, size_t method_length,
                             const char *path, size_t path_length, const char *timestamp, size_t timestamp_length,
                             const char *nonce, size_t nonce_length, const void *body, size_t body_length,
                             uint8_t out[BAL_SIGN_DIGEST_BYTES]) {
    assert(secret != NULL && method != NULL && path != NULL && timestamp != NULL && nonce != NULL);
    char body_hash[BAL_SIGN_HEX_LENGTH + 1];
    bal_sign_sha256_hex(body, body_length, body_hash);
    sign_cache *cache = thread_cache();
    EVP_MAC_CTX *context = keyed_context(cache, secret, secret_length);
    const struct { const void *bytes; size_t length; } parts[] = {
        {method, method_length}, {"\n", 1}, {path, path_length}, {"\n", 1}, {timestamp, timestamp_length},
        {"\n", 1}, {nonce, nonce_length}, {"\n", 1}, {body_hash, BAL_SIGN_HEX_LENGTH},
    };
    for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
        if (EVP_MAC_update(context, parts[i].bytes, parts[i].length) != 1) abort();
    }
    size_t mac_length = 0;
    if (EVP_MAC_final(context, out, &mac_length, BAL_SIGN_DIGEST_BYTES) != 1) abort();
    assert(mac_length == BAL_SIGN_DIGEST_BYTES);
}

void bal_sign_request(const void *secret, size_t secret_length, const char *method, size_t method_length,
                      const char *path, size_t path_length, const char *timestamp, size_t timestamp_length,
                      const char *nonce, size_t nonce_length, const void *body, size_t body_length,
                      char out[BAL_SIGN_HEX_LENGTH + 1]) {
    uint8_t mac[BAL_SIGN_DIGEST_BYTES];
    bal_sign_request_digest(secret, secret_length, method, method_length, path, path_length, timestamp,
                            timestamp_length, nonce, nonce_length, body, body_length, mac);
    to_hex(mac, sizeof(mac), out);
    OPENSSL_cleanse(mac, sizeof(mac));
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

bool bal_sign_hex_decode(const char *hex, uint8_t *out, size_t byte_count) {
    assert(hex != NULL && out != NULL);
    uint8_t invalid = 0;
    for (size_t i = 0; i < byte_count; i++) {
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
