/*
 * bal_crc32c.c -- CRC-32C in hardware (SSE4.2) with a slicing-by-8 software fallback.
 *
 * The software tables and the CPU feature check are initialised once, on first use, under
 * pthread_once, so no caller has to remember an init call. The hardware path consumes
 * unaligned leading bytes one at a time, then 8-byte words, then the remaining bytes; a
 * single dependency chain is enough here because WAL records are small (a few hundred
 * bytes) and the fdatasync that follows them costs a thousand times more.
 */
#include "bal_crc32c.h"

#include <assert.h>
#include <pthread.h>
#include <string.h>

/* The Castagnoli polynomial 0x1EDC6F41, bit-reversed for the LSB-first algorithm. */
#define BAL_CRC32C_POLYNOMIAL_REFLECTED 0x82F63B78u
/* Slicing-by-8: eight tables of 256 entries, 8 KiB in all. */
#define BAL_CRC32C_TABLE_COUNT 8
#define BAL_CRC32C_TABLE_ENTRIES 256

static uint32_t bal_crc32c_table[BAL_CRC32C_TABLE_COUNT][BAL_CRC32C_TABLE_ENTRIES];
static bool bal_crc32c_have_hardware;
static pthread_once_t bal_crc32c_once = PTHREAD_ONCE_INIT;

static void bal_crc32c_initialise(void) {
    for (uint32_t byte = 0; byte < BAL_CRC32C_TABLE_ENTRIES; byte++) {
        uint32_t crc = byte;
        for (int bit = 0; bit < 8; bit++) {
            crc = (crc >> 1) ^ (BAL_CRC32C_POLYNOMIAL_REFLECTED & (0u - (crc & 1u)));
        }
        bal_crc32c_table[0][byte] = crc;
    }
    /* Table t holds the CRC of a byte followed by t zero bytes. */
    for (uint32_t byte = 0; byte < BAL_CRC32C_TABLE_ENTRIES; byte++) {
        uint32_t crc = bal_crc32c_table[0][byte];
        for (int table = 1; table < BAL_CRC32C_TABLE_COUNT; table++) {
            crc = (crc >> 8) ^ bal_crc32c_table[0][crc & 0xffu];
            bal_crc32c_table[table][byte] = crc;
        }
    }
#if defined(__x86_64__)
    __builtin_cpu_init();
    bal_crc32c_have_hardware = __builtin_cpu_supports("sse4.2");
#else
    bal_crc32c_have_hardware = false;
#endif
    /* 0x80 reaches the low bit after seven shifts, so its entry is the polynomial itself. */
    assert(bal_crc32c_table[0][0x80] == BAL_CRC32C_POLYNOMIAL_REFLECTED);
    assert(bal_crc32c_table[0][0] == 0);
}

static inline uint64_t bal_crc32c_load_u64_le(const uint8_t *bytes) {
    uint64_t value = 0;
    for (int i = 7; i >= 0; i--) value = (value << 8) | bytes[i];
    return value;
}

uint32_t bal_crc32c_software(uint32_t crc, const void *data, size_t length) {
    assert(data != NULL || length == 0);
    pthread_once(&bal_crc32c_once, bal_crc32c_initialise);
    const uint8_t *bytes = data;
    uint32_t state = ~crc;
    while (length > 0 && ((uintptr_t)bytes & 7u) != 0) {
        state = (state >> 8) ^ bal_crc32c_table[0][(state ^ *bytes++) & 0xffu];
        length--;
    }
    while (length >= 8) {
        uint64_t word = bal_crc32c_load_u64_le(bytes) ^ state;
        state = bal_crc32c_table[7][word & 0xffu] ^ bal_crc32c_table[6][(word >> 8) & 0xffu] ^
                bal_crc32c_table[5][(word >> 16) & 0xffu] ^ bal_crc32c_table[4][(word >> 24) & 0xffu] ^
                bal_crc32c_table[3][(word >> 32) & 0xffu] ^ bal_crc32c_table[2][(word >> 40) & 0xffu] ^
                bal_crc32c_table[1][(word >> 48) & 0xffu] ^ bal_crc32c_table[0][word >> 56];
        bytes += 8;
        length -= 8;
    }
    while (length > 0) {
        state = (state >> 8) ^ bal_crc32c_table[0][(state ^ *bytes++) & 0xffu];
        length--;
    }
    return ~state;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2")))
static uint32_t bal_crc32c_sse42(uint32_t crc, const uint8_t *bytes, size_t length) {
    uint64_t state = (uint32_t)~crc;
    while (length > 0 && ((uintptr_t)bytes & 7u) != 0) {
        state = __builtin_ia32_crc32qi((uint32_t)state, *bytes++);
        length--;
    }
    while (length >= 8) {
        uint64_t word;
        memcpy(&word, bytes, sizeof word); /* x86-64 is little-endian, as the CRC expects */
        state = __builtin_ia32_crc32di(state, word);
        bytes += 8;
        length -= 8;
    }
    while (length > 0) {
        state = __builtin_ia32_crc32qi((uint32_t)state, *bytes++);
        length--;
    }
    return ~(uint32_t)state;
}
#endif

uint32_t bal_crc32c_hardware(uint32_t crc, const void *data, size_t length) {
    assert(data != NULL || length == 0);
    assert(bal_crc32c_hardware_available());
#if defined(__x86_64__)
    return bal_crc32c_sse42(crc, data, length);
#else
    return bal_crc32c_software(crc, data, length);
#endif
}

bool bal_crc32c_hardware_available(void) {
    pthread_once(&bal_crc32c_once, bal_crc32c_initialise);
    return bal_crc32c_have_hardware;
}

uint32_t bal_crc32c(uint32_t crc, const void *data, size_t length) {
    assert(data != NULL || length == 0);
    if (bal_crc32c_hardware_available()) return bal_crc32c_hardware(crc, data, length);
    return bal_crc32c_software(crc, data, length);
}
