/*
 * bal_crc32c.h -- CRC-32C (Castagnoli), the checksum of every WAL record and snapshot file.
 *
 * CRC-32C is used rather than zlib's CRC-32 because x86-64 computes it in hardware (the
 * SSE4.2 crc32 instruction, about 8 bytes per 3 cycles), and it detects more error patterns
 * in storage-sized blocks. The hardware path is chosen at run time; a table-driven software
 * path (slicing-by-8) serves CPUs without SSE4.2. Both give identical results, which the
 * tests check on the standard test vector ("123456789" -> 0xE3069283) and random data.
 *
 * Chaining: pass the value returned for the preceding bytes as `crc` (0 to start), so that
 * crc(a ++ b) == bal_crc32c(bal_crc32c(0, a), b). All functions are thread-safe.
 */
#ifndef BAL_CRC32C_H
#define BAL_CRC32C_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The CRC-32C of "123456789", the standard check value of the algorithm. */
#define BAL_CRC32C_CHECK_VALUE 0xE3069283u

/* The fastest implementation available on this CPU. */
uint32_t bal_crc32c(uint32_t crc, const void *data, size_t length);

/* The table-driven implementation; always available. */
uint32_t bal_crc32c_software(uint32_t crc, const void *data, size_t length);

/* The SSE4.2 implementation. Call only when bal_crc32c_hardware_available() is true. */
uint32_t bal_crc32c_hardware(uint32_t crc, const void *data, size_t length);

/* Whether this CPU has the SSE4.2 crc32 instruction. */
bool bal_crc32c_hardware_available(void);

#endif
