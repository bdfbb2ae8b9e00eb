/*
 * test_crc32c.c -- CRC-32C known answers and agreement of the hardware and software paths.
 *
 * Known answers: the standard check value ("123456789" -> 0xE3069283) and the iSCSI test
 * patterns of RFC 3720 (B.4). Agreement: random buffers of every length up to 1 KiB at
 * every alignment, and chaining (the CRC of a concatenation equals the chained CRCs).
 */
#include <inttypes.h>
#include <string.h>

#include "bal_crc32c.h"
#include "wal_test_support.h"

/* Lengths and alignments tried in the agreement test. */
#define TEST_CRC_LENGTH_MAX 1024
#define TEST_CRC_ALIGNMENTS 8

typedef uint32_t (*crc_fn)(uint32_t crc, const void *data, size_t length);

static void check_known_answers(const char *label, crc_fn crc) {
    printf("known answers: %s\n", label);
    CHECK(crc(0, "123456789", 9) == BAL_CRC32C_CHECK_VALUE);
    CHECK(crc(0, "", 0) == 0);
    CHECK(crc(0, NULL, 0) == 0);
    uint8_t bytes[32];
    memset(bytes, 0, sizeof bytes);
    CHECK(crc(0, bytes, sizeof bytes) == 0x8A9136AAu);
    memset(bytes, 0xff, sizeof bytes);
    CHECK(crc(0, bytes, sizeof bytes) == 0x62A8AB43u);
    for (int i = 0; i < 32; i++) bytes[i] = (uint8_t)i;
    CHECK(crc(0, bytes, sizeof bytes) == 0x46DD794Eu);
    for (int i = 0; i < 32; i++) bytes[i] = (uint8_t)(31 - i);
    CHECK(crc(0, bytes, sizeof bytes) == 0x113FDB5Cu);
    /* Chaining in two parts gives the same answer as one call. */
    CHECK(crc(crc(0, "1234", 4), "56789", 5) == BAL_CRC32C_CHECK_VALUE);
}

static void check_agreement(uint64_t seed) {
    static uint8_t buffer[TEST_CRC_LENGTH_MAX + TEST_CRC_ALIGNMENTS];
    uint64_t state = seed;
    for (size_t i = 0; i < sizeof buffer; i++) buffer[i] = (uint8_t)test_random_next(&state);
    bool hardware = bal_crc32c_hardware_available();
    for (size_t alignment = 0; alignment < TEST_CRC_ALIGNMENTS; alignment++) {
        for (size_t length = 0; length <= TEST_CRC_LENGTH_MAX; length++) {
            const uint8_t *data = buffer + alignment;
            uint32_t software = bal_crc32c_software(0, data, length);
            CHECK(bal_crc32c(0, data, length) == software);
            if (hardware) CHECK(bal_crc32c_hardware(0, data, length) == software);
            size_t split = length == 0 ? 0 : (size_t)(test_random_next(&state) % (length + 1));
            CHECK(bal_crc32c_software(bal_crc32c_software(0, data, split), data + split, length - split) == software);
            if (hardware) {
                CHECK(bal_crc32c_hardware(bal_crc32c_hardware(0, data, split), data + split, length - split) ==
                      software);
            }
        }
    }
}

int main(void) {
    uint64_t seed = test_seed("wal/crc32c");
    check_known_answers("software", bal_crc32c_software);
    check_known_answers("dispatch", bal_crc32c);
    if (bal_crc32c_hardware_available()) {
        check_known_answers("hardware (sse4.2)", bal_crc32c_hardware);
    } else {
        printf("hardware path: not available on this CPU, skipped\n");
    }
    check_agreement(seed);
    printf("wal/crc32c: ok\n");
    return 0;
}
