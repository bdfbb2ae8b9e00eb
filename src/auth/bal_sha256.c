/*
 * bal_sha256.c -- SHA-256 and HMAC-SHA256 (bal_sha256.h): block functions in portable C
 * and with x86 SHA extensions, chosen once at run time.
 */
#include "bal_sha256.h"

#include <assert.h>
#include <stdatomic.h>
#include <string.h>

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#define BAL_SHA256_HAVE_X86 1
#else
#define BAL_SHA256_HAVE_X86 0
#endif

/* FIPS 180-4, 4.2.2: the first 32 bits of the fractional parts of the cube roots of the
 * first 64 primes. */
static const uint32_t round_constants[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

/* FIPS 180-4, 5.3.3. */
static const uint32_t initial_state[8] = {
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
};

static inline uint32_t rotr(uint32_t x, unsigned n) { return (x >> n) | (x << (32 - n)); }

static inline uint32_t load_be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* Byte-reversing stores: one instruction each where the compiler knows the host order (a
 * byte loop here was vectorised into a slow shuffle sequence). */
static inline void store_be32(uint8_t *p, uint32_t v) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    v = __builtin_bswap32(v);
    memcpy(p, &v, sizeof v);
#else
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
#endif
}

static inline void store_be64(uint8_t *p, uint64_t v) {
    store_be32(p, (uint32_t)(v >> 32));
    store_be32(p + 4, (uint32_t)v);
}

/* FIPS 180-4, 6.2.2, over `blocks` consecutive 64-byte blocks. */
static void compress_portable(uint32_t h[8], const uint8_t *data, size_t blocks) {
    for (; blocks > 0; blocks--, data += BAL_SHA256_BLOCK_BYTES) {
        uint32_t w[64];
        for (unsigned t = 0; t < 16; t++) w[t] = load_be32(data + 4 * t);
        for (unsigned t = 16; t < 64; t++) {
            uint32_t s0 = rotr(w[t - 15], 7) ^ rotr(w[t - 15], 18) ^ (w[t - 15] >> 3);
            uint32_t s1 = rotr(w[t - 2], 17) ^ rotr(w[t - 2], 19) ^ (w[t - 2] >> 10);
            w[t] = w[t - 16] + s0 + w[t - 7] + s1;
        }
        uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
        for (unsigned t = 0; t < 64; t++) {
            uint32_t t1 = k + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + round_constants[t] + w[t];
            uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
            k = g;
            g = f;
            f = e;
            e = d + t1;
            d = c;
            c = b;
            b = a;
            a = t1 + t2;
        }
        h[0] += a; h[1] += b; h[2] += c; h[3] += d;
        h[4] += e; h[5] += f; h[6] += g; h[7] += k;
    }
}

#if BAL_SHA256_HAVE_X86
/* The same with SHA-NI. The instructions keep the working variables in two registers as
 * (A,B,E,F) and (C,D,G,H), highest lane first; SHA256RNDS2 does two rounds and returns the
 * new (A,B,E,F), the old one becoming (C,D,G,H) -- so the two registers swap roles every two
 * rounds. Message words are scheduled four at a time: W[i..i+3] = MSG2(MSG1(W[i-16..],
 * W[i-12..]) + W[i-7..i-4], W[i-4..i-1]). */
__attribute__((target("sha,sse4.1,ssse3")))
static void compress_sha_ni(uint32_t h[8], const uint8_t *data, size_t blocks) {
    const __m128i byte_swap = _mm_set_epi64x(0x0c0d0e0f08090a0bll, 0x0405060700010203ll);
    __m128i dcba = _mm_loadu_si128((const __m128i *)&h[0]); /* lanes: A B C D */
    __m128i hgfe = _mm_loadu_si128((const __m128i *)&h[4]); /* lanes: E F G H */
    dcba = _mm_shuffle_epi32(dcba, 0xB1);                   /* B A D C */
    hgfe = _mm_shuffle_epi32(hgfe, 0x1B);                   /* H G F E */
    __m128i abef = _mm_alignr_epi8(dcba, hgfe, 8);          /* F E B A */
    __m128i cdgh = _mm_blend_epi16(hgfe, dcba, 0xF0);       /* H G D C */
    for (; blocks > 0; blocks--, data += BAL_SHA256_BLOCK_BYTES) {
        const __m128i abef_start = abef, cdgh_start = cdgh;
        __m128i w[4];
        /* Unrolled, the four message registers stay registers (w[] indexes become constants). */
#pragma GCC unroll 16
        for (unsigned group = 0; group < 16; group++) {
            __m128i *slot = &w[group & 3];
            if (group < 4) {
                *slot = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(data + 16 * group)), byte_swap);
            } else {
                const __m128i w16 = w[group & 3], w12 = w[(group + 1) & 3], w8 = w[(group + 2) & 3],
                              w4 = w[(group + 3) & 3];
                __m128i sum = _mm_add_epi32(_mm_sha256msg1_epu32(w16, w12), _mm_alignr_epi8(w4, w8, 4));
                *slot = _mm_sha256msg2_epu32(sum, w4);
            }
            __m128i message = _mm_add_epi32(*slot, _mm_loadu_si128((const __m128i *)&round_constants[4 * group]));
            cdgh = _mm_sha256rnds2_epu32(cdgh, abef, message);
            message = _mm_shuffle_epi32(message, 0x0E);
            abef = _mm_sha256rnds2_epu32(abef, cdgh, message);
        }
        abef = _mm_add_epi32(abef, abef_start);
        cdgh = _mm_add_epi32(cdgh, cdgh_start);
    }
    __m128i feba = _mm_shuffle_epi32(abef, 0x1B);  /* lanes: A B E F */
    __m128i dchg = _mm_shuffle_epi32(cdgh, 0xB1);  /* lanes: G H C D */
    dcba = _mm_blend_epi16(feba, dchg, 0xF0);      /* A B C D */
    hgfe = _mm_alignr_epi8(dchg, feba, 8);         /* E F G H */
    _mm_storeu_si128((__m128i *)&h[0], dcba);
    _mm_storeu_si128((__m128i *)&h[4], hgfe);
}

static bool cpu_has_sha_ni(void) {
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (__get_cpuid(1, &a, &b, &c, &d) == 0) return false;
    bool ssse3 = (c >> 9) & 1u, sse41 = (c >> 19) & 1u;
    if (__get_cpuid_count(7, 0, &a, &b, &c, &d) == 0) return false;
    return ssse3 && sse41 && ((b >> 29) & 1u);
}
#endif

typedef void (*compress_fn)(uint32_t h[8], const uint8_t *data, size_t blocks);

/* 0: not chosen yet; 1: portable; 2: SHA-NI. Racing first calls choose the same. */
static _Atomic int chosen;

static int choose(void) {
#if BAL_SHA256_HAVE_X86
    return cpu_has_sha_ni() ? 2 : 1;
#else
    return 1;
#endif
}

static inline void compress(uint32_t h[8], const uint8_t *data, size_t blocks) {
    int which = atomic_load_explicit(&chosen, memory_order_relaxed);
    if (which == 0) {
        which = choose();
        atomic_store_explicit(&chosen, which, memory_order_relaxed);
    }
#if BAL_SHA256_HAVE_X86
    if (which == 2) {
        compress_sha_ni(h, data, blocks);
        return;
    }
#endif
    compress_portable(h, data, blocks);
}

const char *bal_sha256_implementation(void) {
    int which = atomic_load(&chosen);
    if (which == 0) which = choose();
    return which == 2 ? "sha-ni" : "portable";
}

bool bal_sha256_use_extensions_for_testing(bool use) {
    int best = choose();
    atomic_store(&chosen, use ? best : 1);
    return !use || best == 2;
}

void bal_sha256_init(bal_sha256 *state) {
    assert(state != NULL);
    memcpy(state->h, initial_state, sizeof state->h);
    state->length = 0;
    state->used = 0;
}

void bal_sha256_update(bal_sha256 *state, const void *data, size_t length) {
    assert(state != NULL && (data != NULL || length == 0));
    const uint8_t *bytes = data;
    state->length += length;
    if (state->used > 0) {
        size_t take = BAL_SHA256_BLOCK_BYTES - state->used;
        if (take > length) take = length;
        memcpy(state->block + state->used, bytes, take);
        state->used += (uint32_t)take;
        bytes += take;
        length -= take;
        if (state->used < BAL_SHA256_BLOCK_BYTES) return;
        compress(state->h, state->block, 1);
        state->used = 0;
    }
    size_t blocks = length / BAL_SHA256_BLOCK_BYTES;
    if (blocks > 0) {
        compress(state->h, bytes, blocks);
        bytes += blocks * BAL_SHA256_BLOCK_BYTES;
        length -= blocks * BAL_SHA256_BLOCK_BYTES;
    }
    if (length > 0) memcpy(state->block, bytes, length);
    state->used = (uint32_t)length;
}

void bal_sha256_final(bal_sha256 *state, uint8_t out[BAL_SHA256_DIGEST_BYTES]) {
    assert(state != NULL && out != NULL && state->used < BAL_SHA256_BLOCK_BYTES);
    uint64_t bits = state->length * 8;
    uint32_t used = state->used;
    state->block[used++] = 0x80;
    if (used > BAL_SHA256_BLOCK_BYTES - 8) { /* no room for the length: one more block */
        memset(state->block + used, 0, BAL_SHA256_BLOCK_BYTES - used);
        compress(state->h, state->block, 1);
        used = 0;
    }
    memset(state->block + used, 0, BAL_SHA256_BLOCK_BYTES - 8 - used);
    for (unsigned i = 0; i < 8; i++) state->block[BAL_SHA256_BLOCK_BYTES - 1 - i] = (uint8_t)(bits >> (8 * i));
    compress(state->h, state->block, 1);
    for (unsigned i = 0; i < 8; i++) store_be32(out + 4 * i, state->h[i]);
    explicit_bzero(state, sizeof *state);
}

/* The last one or two blocks of a message: its tail bytes, 0x80, zeros and the length in
 * bits (of everything hashed, `total` bytes) big-endian. Returns the blocks written. */
static size_t pad_tail(const uint8_t *tail, size_t tail_length, uint64_t total,
                       uint8_t blocks[2 * BAL_SHA256_BLOCK_BYTES]) {
    assert(tail_length < BAL_SHA256_BLOCK_BYTES);
    size_t count = tail_length + 9 <= BAL_SHA256_BLOCK_BYTES ? 1 : 2;
    size_t end = count * BAL_SHA256_BLOCK_BYTES;
    if (tail_length > 0) memcpy(blocks, tail, tail_length); /* tail may be NULL when empty */
    blocks[tail_length] = 0x80;
    memset(blocks + tail_length + 1, 0, end - 8 - tail_length - 1);
    store_be64(blocks + end - 8, total * 8);
    return count;
}

/* Whole blocks straight from the data, then the padded tail: no state, no partial-block
 * copies, one block-function call for each part. */
static void digest_from(uint32_t h[8], const uint8_t *data, size_t length, uint64_t total) {
    size_t whole = length / BAL_SHA256_BLOCK_BYTES;
    if (whole > 0) compress(h, data, whole);
    uint8_t tail[2 * BAL_SHA256_BLOCK_BYTES];
    /* data is NULL for an empty message: no pointer arithmetic on it then. */
    const uint8_t *rest = length > 0 ? data + whole * BAL_SHA256_BLOCK_BYTES : NULL;
    size_t tail_blocks = pad_tail(rest, length % BAL_SHA256_BLOCK_BYTES, total, tail);
    compress(h, tail, tail_blocks);
    explicit_bzero(tail, sizeof tail);
}

static void store_digest(const uint32_t h[8], uint8_t out[BAL_SHA256_DIGEST_BYTES]) {
    for (unsigned i = 0; i < 8; i++) store_be32(out + 4 * i, h[i]);
}

void bal_sha256_digest(const void *data, size_t length, uint8_t out[BAL_SHA256_DIGEST_BYTES]) {
    assert(data != NULL || length == 0);
    assert(out != NULL);
    uint32_t h[8];
    memcpy(h, initial_state, sizeof h);
    digest_from(h, data, length, length);
    store_digest(h, out);
    explicit_bzero(h, sizeof h);
}

void bal_hmac_sha256_key_init(bal_hmac_sha256_key *key, const void *secret, size_t secret_length) {
    assert(key != NULL && (secret != NULL || secret_length == 0));
    uint8_t block[BAL_SHA256_BLOCK_BYTES] = {0};
    if (secret_length > BAL_SHA256_BLOCK_BYTES) {
        bal_sha256_digest(secret, secret_length, block);
    } else if (secret_length > 0) {
        memcpy(block, secret, secret_length);
    }
    uint8_t pad[BAL_SHA256_BLOCK_BYTES];
    for (unsigned i = 0; i < BAL_SHA256_BLOCK_BYTES; i++) pad[i] = block[i] ^ 0x36;
    bal_sha256_init(&key->inner);
    bal_sha256_update(&key->inner, pad, sizeof pad);
    for (unsigned i = 0; i < BAL_SHA256_BLOCK_BYTES; i++) pad[i] = block[i] ^ 0x5c;
    bal_sha256_init(&key->outer);
    bal_sha256_update(&key->outer, pad, sizeof pad);
    explicit_bzero(block, sizeof block);
    explicit_bzero(pad, sizeof pad);
}

void bal_hmac_sha256_key_wipe(bal_hmac_sha256_key *key) {
    if (key != NULL) explicit_bzero(key, sizeof *key);
}

void bal_hmac_sha256_start(const bal_hmac_sha256_key *key, bal_sha256 *state) {
    assert(key != NULL && state != NULL);
    *state = key->inner;
}

void bal_hmac_sha256(const bal_hmac_sha256_key *key, const void *data, size_t length,
                     uint8_t out[BAL_SHA256_DIGEST_BYTES]) {
    assert(key != NULL && (data != NULL || length == 0) && out != NULL);
    /* The key's states have hashed exactly one block each. */
    assert(key->inner.used == 0 && key->inner.length == BAL_SHA256_BLOCK_BYTES);
    assert(key->outer.used == 0 && key->outer.length == BAL_SHA256_BLOCK_BYTES);
    uint32_t h[8];
    memcpy(h, key->inner.h, sizeof h);
    digest_from(h, data, length, BAL_SHA256_BLOCK_BYTES + (uint64_t)length);
    uint8_t block[BAL_SHA256_BLOCK_BYTES];
    store_digest(h, block);
    memcpy(h, key->outer.h, sizeof h);
    uint8_t tail[2 * BAL_SHA256_BLOCK_BYTES];
    size_t tail_blocks = pad_tail(block, BAL_SHA256_DIGEST_BYTES, BAL_SHA256_BLOCK_BYTES + BAL_SHA256_DIGEST_BYTES, tail);
    assert(tail_blocks == 1);
    compress(h, tail, tail_blocks);
    store_digest(h, out);
    explicit_bzero(h, sizeof h);
    explicit_bzero(block, sizeof block);
    explicit_bzero(tail, sizeof tail);
}

void bal_hmac_sha256_final(const bal_hmac_sha256_key *key, bal_sha256 *state, uint8_t out[BAL_SHA256_DIGEST_BYTES]) {
    assert(key != NULL && state != NULL && out != NULL);
    uint8_t inner[BAL_SHA256_DIGEST_BYTES];
    bal_sha256_final(state, inner);
    *state = key->outer;
    bal_sha256_update(state, inner, sizeof inner);
    bal_sha256_final(state, out);
    explicit_bzero(inner, sizeof inner);
}
