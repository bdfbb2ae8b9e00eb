/*
 * bal_loadgen_sign.c -- HMAC-SHA256 request signing (see bal_loadgen_sign.h).
 */
#include "bal_loadgen_sign.h"

#include "bal_sign.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

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

/* The signature itself is the project's (src/auth/bal_sign.h), so the load generator signs
 * exactly as clients must and as the server checks. */
bool bal_loadgen_sign(void *context, const bal_loadgen_request_view *request, bal_http_buffer *headers) {
    const bal_loadgen_signer *signer = context;
    assert(signer != NULL && request != NULL && headers != NULL);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    unsigned long long timestamp_ms =
        (unsigned long long)now.tv_sec * 1000ull + (unsigned long long)now.tv_nsec / 1000000ull;
    char nonce[64], timestamp[24];
    snprintf(nonce, sizeof nonce, "%s-%u-%llu", signer->run_id, request->thread_index,
             (unsigned long long)request->sequence);
    int timestamp_length = snprintf(timestamp, sizeof timestamp, "%llu", timestamp_ms);
    char signature[BAL_SIGN_HEX_LENGTH + 1];
    bal_sign_request(signer->secret, strlen(signer->secret), request->method, strlen(request->method),
                     request->path, request->path_length, timestamp, (size_t)timestamp_length, nonce,
                     strlen(nonce), request->body, request->body_length, signature);
    char lines[512];
    int lines_length = snprintf(lines, sizeof lines,
                                "X-Api-Key: %s\r\nX-Timestamp: %llu\r\nX-Nonce: %s\r\nX-Signature: %s\r\n",
                                signer->key, timestamp_ms, nonce, signature);
    if (lines_length < 0 || (size_t)lines_length >= sizeof lines) return false;
    return bal_http_buffer_append(headers, lines, (size_t)lines_length);
}
