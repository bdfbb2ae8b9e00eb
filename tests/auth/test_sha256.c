/*
 * test_sha256.c -- bal_sha256 against published known answers (FIPS 180-4 examples,
 * RFC 4231 HMAC test cases) and against OpenSSL on random inputs split at random points,
 * with each block function this CPU has (SHA-NI and portable C).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "bal_sha256.h"
#include "bal_siphash.h"
#include "bal_sign.h"
#include "bal_test.h"

#define RANDOM_CASES 3000
#define RANDOM_LENGTH_MAX 1100

static void hex_to_bytes(const char *hex, uint8_t *out, size_t bytes) {
    CHECK(strlen(hex) == 2 * bytes);
    CHECK(bal_sign_hex_decode(hex, out, bytes));
}

static void check_digest(const void *data, size_t length, const char *expected_hex) {
    uint8_t expected[BAL_SHA256_DIGEST_BYTES], got[BAL_SHA256_DIGEST_BYTES];
    hex_to_bytes(expected_hex, expected, sizeof expected);
    bal_sha256_digest(data, length, got);
    if (memcmp(got, expected, sizeof got) != 0) fprintf(stderr, "expected %s\n", expected_hex);
    CHECK(memcmp(got, expected, sizeof got) == 0);
}

static void check_hmac(const void *key, size_t key_length, const void *data, size_t length, const char *expected_hex) {
    uint8_t expected[BAL_SHA256_DIGEST_BYTES], got[BAL_SHA256_DIGEST_BYTES];
    hex_to_bytes(expected_hex, expected, sizeof expected);
    bal_hmac_sha256_key hmac_key;
    bal_hmac_sha256_key_init(&hmac_key, key, key_length);
    bal_sha256 state;
    bal_hmac_sha256_start(&hmac_key, &state);
    bal_sha256_update(&state, data, length);
    bal_hmac_sha256_final(&hmac_key, &state, got);
    if (memcmp(got, expected, sizeof got) != 0) fprintf(stderr, "expected %s\n", expected_hex);
    CHECK(memcmp(got, expected, sizeof got) == 0);
    memset(got, 0, sizeof got);
    bal_hmac_sha256(&hmac_key, data, length, got); /* the one-call form */
    CHECK(memcmp(got, expected, sizeof got) == 0);
    bal_hmac_sha256_key_wipe(&hmac_key);
}

static void known_answers(void) {
    /* FIPS 180-4 examples (NIST's SHA256.pdf) and the empty message. */
    check_digest("", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    check_digest(NULL, 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"); /* a GET's body */
    check_digest("abc", 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *two_blocks = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    check_digest(two_blocks, strlen(two_blocks), "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    static char million[1000000];
    memset(million, 'a', sizeof million);
    check_digest(million, sizeof million, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    /* RFC 4231 test cases 1, 2, 4 and 6 (a key longer than a block). */
    uint8_t key[131];
    memset(key, 0x0b, 20);
    check_hmac(key, 20, "Hi There", 8, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
    check_hmac("Jefe", 4, "what do ya want for nothing?", 28,
               "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    for (unsigned i = 0; i < 25; i++) key[i] = (uint8_t)(i + 1);
    uint8_t data[50];
    memset(data, 0xcd, sizeof data);
    check_hmac(key, 25, data, sizeof data, "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b");
    memset(key, 0xaa, sizeof key);
    const char *large = "Test Using Larger Than Block-Size Key - Hash Key First";
    check_hmac(key, sizeof key, large, strlen(large), "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
}

static uint64_t rng_state;
static uint64_t next_random(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* Random lengths around every block boundary, fed in random pieces; keys of every length
 * class (empty, short, a block, longer). */
static void against_openssl(void) {
    static uint8_t data[RANDOM_LENGTH_MAX], key[200];
    for (unsigned n = 0; n < RANDOM_CASES; n++) {
        size_t length = n < 200 ? n : (size_t)(next_random() % RANDOM_LENGTH_MAX);
        size_t key_length = (size_t)(next_random() % sizeof key);
        for (size_t i = 0; i < length; i++) data[i] = (uint8_t)next_random();
        for (size_t i = 0; i < key_length; i++) key[i] = (uint8_t)next_random();

        uint8_t expected[EVP_MAX_MD_SIZE], got[BAL_SHA256_DIGEST_BYTES];
        unsigned expected_length = 0;
        CHECK(EVP_Digest(data, length, expected, &expected_length, EVP_sha256(), NULL) == 1);
        bal_sha256 state;
        bal_sha256_init(&state);
        for (size_t at = 0; at < length;) {
            size_t piece = 1 + (size_t)(next_random() % 150);
            if (piece > length - at) piece = length - at;
            bal_sha256_update(&state, data + at, piece);
            at += piece;
        }
        bal_sha256_final(&state, got);
        CHECK(expected_length == sizeof got && memcmp(got, expected, sizeof got) == 0);
        memset(got, 0, sizeof got);
        bal_sha256_digest(data, length, got); /* the one-call form */
        CHECK(memcmp(got, expected, sizeof got) == 0);

        CHECK(HMAC(EVP_sha256(), key, (int)key_length, data, length, expected, &expected_length) != NULL);
        bal_hmac_sha256_key hmac_key;
        bal_hmac_sha256_key_init(&hmac_key, key, key_length);
        bal_hmac_sha256_start(&hmac_key, &state);
        size_t half = length / 2;
        bal_sha256_update(&state, data, half);
        bal_sha256_update(&state, data + half, length - half);
        bal_hmac_sha256_final(&hmac_key, &state, got);
        CHECK(memcmp(got, expected, sizeof got) == 0);
        memset(got, 0, sizeof got);
        bal_hmac_sha256(&hmac_key, data, length, got);
        CHECK(memcmp(got, expected, sizeof got) == 0);
        bal_hmac_sha256_key_wipe(&hmac_key);
    }
}

/* SipHash-2-4-128 (the nonce memory's digest): the reference implementation's vectors,
 * key 00..0f, message 00..(n-1). */
static void siphash_known_answers(void) {
    static const struct {
        size_t length;
        const char *hex;
    } vectors[] = {
        {0, "a3817f04ba25a8e66df67214c7550293"},  {1, "da87c1d86b99af44347659119b22fc45"},
        {7, "a1f1ebbed8dbc153c0b84aa61ff08239"},  {8, "3b62a9ba6258f5610f83e264f31497b4"},
        {15, "5493e99933b0a8117e08ec0f97cfc3d9"}, {16, "6ee2a4ca67b054bbfd3315bf85230577"},
        {63, "5150d1772f50834a503e069a973fbd7c"},
    };
    uint8_t key[BAL_SIPHASH_KEY_BYTES], message[64];
    for (unsigned i = 0; i < sizeof key; i++) key[i] = (uint8_t)i;
    for (unsigned i = 0; i < sizeof message; i++) message[i] = (uint8_t)i;
    for (size_t v = 0; v < sizeof vectors / sizeof vectors[0]; v++) {
        uint8_t expected[BAL_SIPHASH_128_BYTES], got[BAL_SIPHASH_128_BYTES];
        hex_to_bytes(vectors[v].hex, expected, sizeof expected);
        bal_siphash128(key, message, vectors[v].length, got);
        if (memcmp(got, expected, sizeof got) != 0) fprintf(stderr, "siphash length %zu\n", vectors[v].length);
        CHECK(memcmp(got, expected, sizeof got) == 0);
    }
    uint8_t empty[BAL_SIPHASH_128_BYTES], expected[BAL_SIPHASH_128_BYTES];
    bal_siphash128(key, NULL, 0, empty); /* an empty message may be NULL */
    hex_to_bytes(vectors[0].hex, expected, sizeof expected);
    CHECK(memcmp(empty, expected, sizeof empty) == 0);
    printf("auth/sha256: SipHash-2-4-128 known answers: ok\n");
}

int main(void) {
    const char *seed_text = getenv("BAL_TEST_SEED");
    rng_state = (seed_text != NULL ? strtoull(seed_text, NULL, 10) : 0x5eed5a256ull) | 1;
    printf("auth/sha256: seed %llu (rerun with BAL_TEST_SEED)\n", (unsigned long long)rng_state);
    bool extensions = bal_sha256_use_extensions_for_testing(true);
    const char *modes[2] = {"portable", extensions ? "sha-ni" : NULL};
    for (unsigned m = 0; m < 2; m++) {
        if (modes[m] == NULL) {
            printf("auth/sha256: this CPU has no SHA extensions; only the portable block function is tested\n");
            continue;
        }
        bal_sha256_use_extensions_for_testing(m == 1);
        CHECK(strcmp(bal_sha256_implementation(), modes[m]) == 0);
        known_answers();
        against_openssl();
        printf("auth/sha256: %s: known answers and %u random cases against OpenSSL: ok\n", modes[m], RANDOM_CASES);
    }
    siphash_known_answers();
    return bal_test_finish("auth/sha256");
}
