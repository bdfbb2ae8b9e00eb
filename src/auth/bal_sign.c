/*
 * bal_sign.c -- HMAC-SHA256 request signatures (bal_sign.h) on OpenSSL's libcrypto.
 */
#include "bal_sign.h"

#include <assert.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>

static void to_hex(const unsigned char *bytes, size_t length, char *out) {
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < length; i++) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 15];
    }
    out[2 * length] = '\0';
}

void bal_sign_sha256_hex(const void *data, size_t length, char out[BAL_SIGN_HEX_LENGTH + 1]) {
    unsigned char digest[SHA256_DIGEST_LENGTH];
    SHA256(data != NULL ? data : (const void *)"", length, digest);
    to_hex(digest, sizeof(digest), out);
}

/* The canonical string is built in one buffer (on the stack when it fits) and signed with
 * the one-shot HMAC(), which OpenSSL 3 keeps (the HMAC_CTX calls are deprecated). */
void bal_sign_request(const void *secret, size_t secret_length, const char *method, size_t method_length,
                      const char *path, size_t path_length, const char *timestamp, size_t timestamp_length,
                      const char *nonce, size_t nonce_length, const void *body, size_t body_length,
                      char out[BAL_SIGN_HEX_LENGTH + 1]) {
    assert(secret != NULL && method != NULL && path != NULL && timestamp != NULL && nonce != NULL);
    char body_hash[BAL_SIGN_HEX_LENGTH + 1];
    bal_sign_sha256_hex(body, body_length, body_hash);
    size_t length = method_length + path_length + timestamp_length + nonce_length + BAL_SIGN_HEX_LENGTH + 4;
    char stack[4096];
    char *canonical = length <= sizeof(stack) ? stack : malloc(length);
    if (canonical == NULL) abort();
    size_t n = 0;
    memcpy(canonical + n, method, method_length), n += method_length, canonical[n++] = '\n';
    memcpy(canonical + n, path, path_length), n += path_length, canonical[n++] = '\n';
    memcpy(canonical + n, timestamp, timestamp_length), n += timestamp_length, canonical[n++] = '\n';
    memcpy(canonical + n, nonce, nonce_length), n += nonce_length, canonical[n++] = '\n';
    memcpy(canonical + n, body_hash, BAL_SIGN_HEX_LENGTH), n += BAL_SIGN_HEX_LENGTH;
    assert(n == length);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_length = 0;
    if (HMAC(EVP_sha256(), secret, (int)secret_length, (const unsigned char *)canonical, n, mac, &mac_length) == NULL) abort();
    if (canonical != stack) free(canonical);
    assert(mac_length == 32);
    to_hex(mac, mac_length, out);
}

bool bal_sign_equal(const void *a, const void *b, size_t length) {
    const volatile unsigned char *x = a, *y = b;
    unsigned char difference = 0;
    for (size_t i = 0; i < length; i++) difference |= (unsigned char)(x[i] ^ y[i]);
    return difference == 0;
}
