/*
 * bal_siphash.h -- SipHash-2-4 with a 128-bit output (Aumasson and Bernstein, "SipHash: a
 * fast short-input PRF", 2012), allocation-free.
 *
 * A keyed pseudorandom function for short inputs: without the 16-byte key, its outputs
 * cannot be predicted, so inputs cannot be chosen to collide or to pile into one hash
 * chain. The nonce memory keys its entries with it (bal_auth_nonce.h): a key id and a nonce
 * are a few dozen bytes, which SipHash digests in a fraction of one SHA-256 block's time.
 * Known answers: the reference implementation's vectors (tests/auth/test_sha256.c).
 */
#ifndef BAL_SIPHASH_H
#define BAL_SIPHASH_H

#include <stddef.h>
#include <stdint.h>

#define BAL_SIPHASH_KEY_BYTES 16
#define BAL_SIPHASH_128_BYTES 16

/* out = SipHash-2-4-128(key, data[0..length)), as the reference's 16 output bytes. */
void bal_siphash128(const uint8_t key[BAL_SIPHASH_KEY_BYTES], const void *data, size_t length,
                    uint8_t out[BAL_SIPHASH_128_BYTES]);

#endif
