/*
 * bal_sha256.h -- SHA-256 (FIPS 180-4) and HMAC-SHA256 (RFC 2104), allocation-free.
 *
 * Why our own: a signed request costs about six SHA-256 blocks (the body's hash, the
 * HMAC's inner and outer passes). Through OpenSSL 3's EVP layer
 * each call also copied contexts, allocated and cleansed -- measured as much again as the
 * blocks themselves (docs/benchmarks.md, Authenticated path). Here a state is a plain
 * struct on the stack, and an HMAC key is hashed into its inner and outer states once, so a
 * MAC costs only the blocks of the message plus one.
 *
 * The block function uses the CPU's SHA extensions (x86 SHA-NI) when it has them, found
 * once at run time, and portable C otherwise; both give the same digests (tests compare
 * them with each other and with OpenSSL on random inputs, and with FIPS 180-4's and
 * RFC 4231's known answers). Nothing here branches on the data's values.
 */
#ifndef BAL_SHA256_H
#define BAL_SHA256_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BAL_SHA256_DIGEST_BYTES 32
#define BAL_SHA256_BLOCK_BYTES 64

typedef struct bal_sha256 {
    uint32_t h[8];
    uint64_t length;                       /* bytes hashed so far */
    uint8_t block[BAL_SHA256_BLOCK_BYTES]; /* the partial block */
    uint32_t used;                         /* bytes in block */
} bal_sha256;

void bal_sha256_init(bal_sha256 *state);
void bal_sha256_update(bal_sha256 *state, const void *data, size_t length);
/* Writes the digest; the state is wiped (start again with bal_sha256_init). */
void bal_sha256_final(bal_sha256 *state, uint8_t out[BAL_SHA256_DIGEST_BYTES]);
void bal_sha256_digest(const void *data, size_t length, uint8_t out[BAL_SHA256_DIGEST_BYTES]);

/* A key hashed into HMAC's inner and outer states (RFC 2104; a key longer than a block is
 * hashed first). Holds secret material: wipe it with bal_hmac_sha256_key_wipe. */
typedef struct bal_hmac_sha256_key {
    bal_sha256 inner;
    bal_sha256 outer;
} bal_hmac_sha256_key;

void bal_hmac_sha256_key_init(bal_hmac_sha256_key *key, const void *secret, size_t secret_length);
void bal_hmac_sha256_key_wipe(bal_hmac_sha256_key *key);
/* Starts a MAC under key: continue it with bal_sha256_update, end with bal_hmac_sha256_final. */
void bal_hmac_sha256_start(const bal_hmac_sha256_key *key, bal_sha256 *state);
void bal_hmac_sha256_final(const bal_hmac_sha256_key *key, bal_sha256 *state, uint8_t out[BAL_SHA256_DIGEST_BYTES]);

/* HMAC-SHA256 of one message under key, in one call: the same MAC as start, update and
   final, without a state (whole blocks are hashed from data where they lie). */
void bal_hmac_sha256(const bal_hmac_sha256_key *key, const void *data, size_t length,
                     uint8_t out[BAL_SHA256_DIGEST_BYTES]);

/* Which block function is in use: "sha-ni" or "portable". */
const char *bal_sha256_implementation(void);
/* Tests only: use the portable block function (false) or the best available (true).
 * Returns false if the CPU extension was asked for but is not there. */
bool bal_sha256_use_extensions_for_testing(bool use);

#endif
