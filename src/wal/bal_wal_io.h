/*
 * bal_wal_io.h -- file helpers shared by the WAL and the snapshot files (internal header).
 *
 * Little-endian encoding of the on-disk integers, complete reads and writes at an offset
 * (looping over short transfers and EINTR), directory creation and fsync, and the
 * fixed-width decimal file names that make `ls` order equal LSN order. The functions
 * return 0 or an errno value; callers turn that into their own status and message.
 */
#ifndef BAL_WAL_IO_H
#define BAL_WAL_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* File names are the LSN in 20 zero-padded decimal digits (UINT64_MAX has 20) + a suffix. */
#define BAL_WAL_IO_NAME_DIGITS 20
/* Room for the digits, the longest suffix in use (".snap.corrupt") and the NUL. */
#define BAL_WAL_IO_NAME_BYTES 48

static inline void bal_wal_io_store_u32(uint8_t *bytes, uint32_t value) {
    for (int i = 0; i < 4; i++) bytes[i] = (uint8_t)(value >> (8 * i));
}

static inline void bal_wal_io_store_u64(uint8_t *bytes, uint64_t value) {
    for (int i = 0; i < 8; i++) bytes[i] = (uint8_t)(value >> (8 * i));
}

static inline uint32_t bal_wal_io_load_u32(const uint8_t *bytes) {
    uint32_t value = 0;
    for (int i = 3; i >= 0; i--) value = (value << 8) | bytes[i];
    return value;
}

static inline uint64_t bal_wal_io_load_u64(const uint8_t *bytes) {
    uint64_t value = 0;
    for (int i = 7; i >= 0; i--) value = (value << 8) | bytes[i];
    return value;
}

/* Writes all `length` bytes at `offset` (pwrite). 0, or errno (ENOSPC if no progress). */
int bal_wal_io_write_all(int fd, const void *data, size_t length, uint64_t offset);

/* Reads up to `length` bytes at `offset`, stopping early only at end of file; the count
 * read goes to *read_out. 0, or errno. */
int bal_wal_io_read_full(int fd, void *data, size_t length, uint64_t offset, size_t *read_out);

/* Opens `path` as a directory (O_DIRECTORY | O_CLOEXEC). If it does not exist and `create`
 * is set, creates it (one level) and fsyncs its parent so the new entry is durable. */
int bal_wal_io_open_dir(const char *path, bool create, int *fd_out);

/* fsync of a directory: makes created, renamed and removed entries durable. */
int bal_wal_io_fsync_dir(int dir_fd);

/* "<20 digits><suffix>". The buffer must hold BAL_WAL_IO_NAME_BYTES. */
void bal_wal_io_format_name(char *buffer, size_t size, uint64_t lsn, const char *suffix);

/* True if `name` is exactly 20 decimal digits followed by `suffix`, with a value that fits
 * 64 bits; the value goes to *lsn_out. */
bool bal_wal_io_parse_name(const char *name, const char *suffix, uint64_t *lsn_out);

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t bal_wal_io_now_ns(void);

#endif
