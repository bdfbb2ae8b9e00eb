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

/* OpenSSL 3 looks a digest implementation up by name on every EVP_sha256()-based call;
 * fetching it once saves most of a signature's cost. Fetched on first use (thread-safe
 * through pthread_once), kept for the life of the process. */
static EVP_MD *sha256_md;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

static void fetch_sha256(void) {
    sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
    if (sha256_md == NULL) abort();
}

static const EVP_MD *sha256(void) {
    pthread_once(&sha256_once, fetch_sha256);
    return sha256_md;
}

static void to_hex(const unsigned char *bytes, size_t length, char *out) {
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < length; i++) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 15];
    }
    out[2 * length] = '\0';
}

void bal_sign_sha256_hex(const void *data, size_t length, char out[BAL_SIGN_HEX_LENGTH + 1]) {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int digest_length = 0;
    if (EVP_Digest(data != NULL ? data : (const void *)"", length, digest, &digest_length, sha256(), NULL) != 1) abort();
    assert(digest_length == 32);
    to_hex(digest, digest_length, out);
}

/* A keyed HMAC context per thread, reused while the secret stays the same (a client signs
 * with one key; a server sees few): EVP_MAC_init with a NULL key restarts it without the
 * key schedule, which is most of the cost of a fresh context. */
typedef struct mac_cache {
    EVP_MAC_CTX *context;
    size_t secret_length;
    unsigned char secret[BAL_SIGN_SECRET_CACHE_MAX];
} mac_cache;

static EVP_MAC *hmac_algorithm;
static pthread_once_t hmac_once = PTHREAD_ONCE_INIT;
static pthread_key_t cache_key; /* each thread's mac_cache, freed when the thread ends */

static void free_cache(void *value) {
    mac_cache *cache = value;
    EVP_MAC_CTX_free(cache->context);
    OPENSSL_cleanse(cache->secret, sizeof(cache->secret));
    free(cache);
}

static void fetch_hmac(void) {
    hmac_algorithm = EVP_MAC_fetch(NULL, "HMAC", NULL);
    if (hmac_algorithm == NULL || pthread_key_create(&cache_key, free_cache) != 0) abort();
}

static mac_cache *thread_cache(void) {
    pthread_once(&hmac_once, fetch_hmac);
    mac_cache *cache = pthread_getspecific(cache_key);
    if (cache == NULL) {
        cache = calloc(1, sizeof(*cache));
        if (cache == NULL || pthread_setspecific(cache_key, cache) != 0) abort();
    }
    return cache;
}

static EVP_MAC_CTX *keyed_context(const void *secret, size_t secret_length) {
    mac_cache *cache = thread_cache();
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string("digest", (char *)"SHA256", 0), OSSL_PARAM_construct_end()};
    bool same = cache->context != NULL && secret_length <= sizeof(cache->secret) && cache->secret_length == secret_length &&
                memcmp(cache->secret, secret, secret_length) == 0;
    if (same) {
        if (EVP_MAC_init(cache->context, NULL, 0, NULL) != 1) abort();
        return cache->context;
    }
    if (cache->context == NULL) cache->context = EVP_MAC_CTX_new(hmac_algorithm);
    if (cache->context == NULL || EVP_MAC_init(cache->context, secret, secret_length, params) != 1) abort();
    if (secret_length <= sizeof(cache->secret)) {
        memcpy(cache->secret, secret, secret_length);
        cache->secret_length = secret_length;
    } else {
        cache->secret_length = SIZE_MAX; /* too long to remember: key it every time */
    }
    return cache->context;
}

void bal_sign_request(const void *secret, size_t secret_length, const char *method, size_t method_length,
                      const char *path, size_t path_length, const char *timestamp, size_t timestamp_length,
                      const char *nonce, size_t nonce_length, const void *body, size_t body_length,
                      char out[BAL_SIGN_HEX_LENGTH + 1]) {
    assert(secret != NULL && method != NULL && path != NULL && timestamp != NULL && nonce != NULL);
    char body_hash[BAL_SIGN_HEX_LENGTH + 1];
    bal_sign_sha256_hex(body, body_length, body_hash);
    EVP_MAC_CTX *context = keyed_context(secret, secret_length);
    const struct { const void *bytes; size_t length; } parts[] = {
        {method, method_length}, {"\n", 1}, {path, path_length}, {"\n", 1}, {timestamp, timestamp_length},
        {"\n", 1}, {nonce, nonce_length}, {"\n", 1}, {body_hash, BAL_SIGN_HEX_LENGTH},
    };
    for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
        if (EVP_MAC_update(context, parts[i].bytes, parts[i].length) != 1) abort();
    }
    unsigned char mac[EVP_MAX_MD_SIZE];
    size_t mac_length = 0;
    if (EVP_MAC_final(context, mac, &mac_length, sizeof(mac)) != 1) abort();
    assert(mac_length == 32);
    to_hex(mac, mac_length, out);
}

bool bal_sign_equal(const void *a, const void *b, size_t length) {
    const volatile unsigned char *x = a, *y = b;
    unsigned char difference = 0;
    for (size_t i = 0; i < length; i++) difference |= (unsigned char)(x[i] ^ y[i]);
    return difference == 0;
}
