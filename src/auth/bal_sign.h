/*
 * bal_sign.h -- the request signature of SPEC's Security section, shared by the server
 * (verification), the command-line client and the load generator (signing).
 *
 *   X-Signature = lower-case hex of HMAC-SHA256(secret,
 *       METHOD + "\n" + PATH_WITH_QUERY + "\n" + TIMESTAMP + "\n" + NONCE + "\n" + hex(SHA256(body)))
 *
 * TIMESTAMP is the X-Timestamp header as sent (Unix milliseconds, decimal), NONCE the
 * X-Nonce header as sent. SHA-256 and HMAC come from bal_sha256.h.
 */
#ifndef BAL_SIGN_H
#define BAL_SIGN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BAL_SIGN_DIGEST_BYTES 32                      /* SHA-256 and HMAC-SHA256 */
#define BAL_SIGN_HEX_LENGTH (2 * BAL_SIGN_DIGEST_BYTES) /* as lower-case hex */
/* Secrets up to this length keep a keyed context per thread between calls. */
#define BAL_SIGN_SECRET_CACHE_MAX 256

/* SHA-256(data). */
void bal_sign_sha256(const void *data, size_t length, uint8_t out[BAL_SIGN_DIGEST_BYTES]);

/* Lower-case hex of SHA-256(data): 64 characters and a NUL. */
void bal_sign_sha256_hex(const void *data, size_t length, char out[BAL_SIGN_HEX_LENGTH + 1]);

/* The signature of a request, as the 32 bytes of the HMAC (what a verifier compares). */
void bal_sign_request_digest(const void *secret, size_t secret_length, const char *method, size_t method_length,
                             const char *path_with_query, size_t path_length, const char *timestamp,
                             size_t timestamp_length, const char *nonce, size_t nonce_length, const void *body,
                             size_t body_length, uint8_t out[BAL_SIGN_DIGEST_BYTES]);

/* The same, from the body's hash (bal_sign_sha256_hex of the body) instead of the body: the
   second half of the work, for a caller with something to do in between. */
void bal_sign_request_digest_hashed(const void *secret, size_t secret_length, const char *method,
                                    size_t method_length, const char *path_with_query, size_t path_length,
                                    const char *timestamp, size_t timestamp_length, const char *nonce,
                                    size_t nonce_length, const char body_hash[BAL_SIGN_HEX_LENGTH],
                                    uint8_t out[BAL_SIGN_DIGEST_BYTES]);

/* The signature of a request, as lower-case hex (64 characters and a NUL): X-Signature. */
void bal_sign_request(const void *secret, size_t secret_length, const char *method, size_t method_length,
                      const char *path_with_query, size_t path_length, const char *timestamp,
                      size_t timestamp_length, const char *nonce, size_t nonce_length, const void *body,
                      size_t body_length, char out[BAL_SIGN_HEX_LENGTH + 1]);

/* Decodes 2 * byte_count LOWER-CASE hex digits into out. False if any character is not
   one of 0-9 a-f (out is then unspecified). Runs without data-dependent branches. */
bool bal_sign_hex_decode(const char *hex, uint8_t *out, size_t byte_count);

/* Compares two byte strings in time that depends only on the length. */
bool bal_sign_equal(const void *a, const void *b, size_t length);

#endif
