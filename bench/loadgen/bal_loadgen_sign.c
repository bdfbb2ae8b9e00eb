/*
 * bal_loadgen_sign.c -- HMAC-SHA256 request signing (see bal_loadgen_sign.h).
 */
#include "bal_loadgen_sign.h"

#include <assert.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* The text that is signed: method, path, timestamp, nonce and body hash, a few hundred bytes. */
#define BAL_LOADGEN_CANONICAL_MAX 4096

bool bal_loadgen_signer_init(bal_loadgen_signer *signer, const char *key_and_secret, const char *run_id) {
    assert(signer != NULL && key_and_secret != NULL && run_id != NULL);
    memset(signer, 0, sizeof *signer);
    const char *colon = strchr(key_and_secret, ':');
    if (colon == NULL || colon == key_and_secret || colon[1] == '\0') return false;
    if (strpbrk(key_and_secret, "\r\n") != NULL) return false; /* would break the header lines */
    size_t key_length = (size_t)(colon - key_and_secret);
    if (key_length >= sizeof signer->key || strlen(colon + 1) >= sizeof signer->secret) return false;
    memcpy(signer->key, key_and_secret, key_length);
    snprintf(signer->secret, sizeof signer->secret, "%s", colon + 1);
    snprintf(signer->run_id, sizeof signer->run_id, "%s", run_id);
    return true;
}

static void bal_loadgen_hex(const unsigned char *bytes, size_t length, char *out) {
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < length; i++) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 15];
    }
    out[2 * length] = '\0';
}

bool bal_loadgen_sign(void *context, const bal_loadgen_request_view *request, bal_http_buffer *headers) {
    const bal_loadgen_signer *signer = context;
    assert(signer != NULL && request != NULL && headers != NULL);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    unsigned long long timestamp_ms =
        (unsigned long long)now.tv_sec * 1000ull + (unsigned long long)now.tv_nsec / 1000000ull;
    char nonce[64];
    snprintf(nonce, sizeof nonce, "%s-%u-%llu", signer->run_id, request->thread_index,
             (unsigned long long)request->sequence);
    unsigned char digest[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)request->body, request->body_length, digest);
    char body_hash[2 * SHA256_DIGEST_LENGTH + 1];
    bal_loadgen_hex(digest, sizeof digest, body_hash);
    char canonical[BAL_LOADGEN_CANONICAL_MAX];
    int length = snprintf(canonical, sizeof canonical, "%s\n%.*s\n%llu\n%s\n%s", request->method,
                          (int)request->path_length, request->path, timestamp_ms, nonce, body_hash);
    if (length < 0 || (size_t)length >= sizeof canonical) return false;
    unsigned int mac_length = 0;
    if (HMAC(EVP_sha256(), signer->secret, (int)strlen(signer->secret), (const unsigned char *)canonical,
             (size_t)length, digest, &mac_length) == NULL) {
        return false;
    }
    char signature[2 * SHA256_DIGEST_LENGTH + 1];
    bal_loadgen_hex(digest, mac_length, signature);
    char lines[512];
    int lines_length = snprintf(lines, sizeof lines,
                                "X-Api-Key: %s\r\nX-Timestamp: %llu\r\nX-Nonce: %s\r\nX-Signature: %s\r\n",
                                signer->key, timestamp_ms, nonce, signature);
    if (lines_length < 0 || (size_t)lines_length >= sizeof lines) return false;
    return bal_http_buffer_append(headers, lines, (size_t)lines_length);
}
