/*
 * bal_siphash.c -- SipHash-2-4-128 (see bal_siphash.h): two compression rounds per 8-byte
 * word, four finalization rounds per 64-bit half of the output.
 */
#include "bal_siphash.h"

#include <assert.h>
#include <string.h>

static inline uint64_t rotl(uint64_t x, unsigned n) { return (x << n) | (x >> (64 - n)); }

static inline uint64_t load_le64(const uint8_t *p) {
    uint64_t v = 0;
    for (unsigned i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static inline void store_le64(uint8_t *p, uint64_t v) {
    for (unsigned i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

typedef struct sip_state {
    uint64_t v0, v1, v2, v3;
} sip_state;

static inline void sip_round(sip_state *s) {
    s->v0 += s->v1;
    s->v1 = rotl(s->v1, 13);
    s->v1 ^= s->v0;
    s->v0 = rotl(s->v0, 32);
    s->v2 += s->v3;
    s->v3 = rotl(s->v3, 16);
    s->v3 ^= s->v2;
    s->v0 += s->v3;
    s->v3 = rotl(s->v3, 21);
    s->v3 ^= s->v0;
    s->v2 += s->v1;
    s->v1 = rotl(s->v1, 17);
    s->v1 ^= s->v2;
    s->v2 = rotl(s->v2, 32);
}

static inline void sip_absorb(sip_state *s, uint64_t word) {
    s->v3 ^= word;
    sip_round(s);
    sip_round(s);
    s->v0 ^= word;
}

void bal_siphash128(const uint8_t key[BAL_SIPHASH_KEY_BYTES], const void *data, size_t length,
                    uint8_t out[BAL_SIPHASH_128_BYTES]) {
    assert(key != NULL && (data != NULL || length == 0) && out != NULL);
    const uint8_t *bytes = data;
    uint64_t k0 = load_le64(key), k1 = load_le64(key + 8);
    sip_state s = {
        .v0 = k0 ^ 0x736f6d6570736575ull,
        .v1 = k1 ^ 0x646f72616e646f6dull ^ 0xee, /* 0xee: the 128-bit variant */
        .v2 = k0 ^ 0x6c7967656e657261ull,
        .v3 = k1 ^ 0x7465646279746573ull,
    };
    size_t whole = length / 8 * 8;
    for (size_t i = 0; i < whole; i += 8) sip_absorb(&s, load_le64(bytes + i));
    /* The last word: the remaining bytes, little-endian, and the length's low byte on top. */
    uint64_t last = (uint64_t)length << 56;
    for (size_t i = whole; i < length; i++) last |= (uint64_t)bytes[i] << (8 * (i - whole));
    sip_absorb(&s, last);
    s.v2 ^= 0xee;
    for (unsigned r = 0; r < 4; r++) sip_round(&s);
    store_le64(out, s.v0 ^ s.v1 ^ s.v2 ^ s.v3);
    s.v1 ^= 0xdd;
    for (unsigned r = 0; r < 4; r++) sip_round(&s);
    store_le64(out + 8, s.v0 ^ s.v1 ^ s.v2 ^ s.v3);
}
