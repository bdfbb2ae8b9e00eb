/*
 * bal_snapfile.h -- snapshot files: the ledger's encoded state, stored atomically.
 *
 * A snapshot is an opaque byte buffer (the core's encoding of its state) tagged with the
 * LSN it covers: every log record with LSN <= lsn is reflected in it, so start-up loads
 * the newest valid snapshot and replays the write-ahead log from lsn + 1. LSN 0 means the
 * empty state before the first record.
 *
 * Files, in one directory per shard (e.g. DATA/shard-3/snapshots/), named by LSN in 20
 * zero-padded decimal digits so that name order is LSN order:
 *   00000000000000120000.snap           a snapshot
 *   00000000000000120000.snap.tmp       being written, or left by a crash: ignored, removed
 *   00000000000000090000.snap.corrupt   a snapshot that failed its checks, moved aside
 *
 * Layout (little-endian), 40-byte header then the payload:
 *   magic "bal-snp\n" (8) | version u32 | header size u32 | lsn u64 | payload length u64 |
 *   CRC32C of the payload u32 | CRC32C of the 36 header bytes before it u32
 *
 * Writing is atomic: the bytes go to "<name>.tmp", which is fsynced, renamed to its final
 * name, and then the directory is fsynced. A crash at any point leaves either the previous
 * set of snapshots or the new one, never a partial file under a final name. After a write
 * only the newest `keep_count` snapshots stay; older ones are deleted.
 *
 * Loading takes the newest snapshot that passes every check. One that fails (bad magic,
 * checksum mismatch, truncated, wrong length) is reported, renamed to ".snap.corrupt" so
 * that it no longer counts, and the previous one is tried. BAL_SNAPFILE_NONE means the
 * directory has no snapshot at all (start from the empty state); BAL_SNAPFILE_CORRUPT
 * means snapshots exist but none is valid, which the caller must not treat as "empty".
 *
 * Falling back is only useful if the log still holds the records after the older snapshot:
 * trim the write-ahead log up to the OLDEST kept snapshot (bal_wal_remove_before with its
 * lsn + 1), not the newest one.
 *
 * One writer per directory at a time (the shard's snapshotter); functions are otherwise
 * independent and keep no state between calls. Errors are described into errstr.
 */
#ifndef BAL_SNAPFILE_H
#define BAL_SNAPFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BAL_SNAPFILE_HEADER_BYTES 40u
#define BAL_SNAPFILE_FORMAT_VERSION 1u
/* Largest payload: 1 TiB; a shard of BAL_BALANCES_MAX balances at 64 bytes is 64 GiB. */
#define BAL_SNAPFILE_PAYLOAD_BYTES_MAX (1ull << 40)
/* Snapshots kept after a write. */
#define BAL_SNAPFILE_KEEP_DEFAULT 2u
#define BAL_SNAPFILE_KEEP_MAX 64u
/* Snapshot files considered in one directory (a listing bound, well above keep_count). */
#define BAL_SNAPFILE_FILES_MAX 4096u
/* Rejected snapshots described in a load report (more are counted, not described). */
#define BAL_SNAPFILE_REJECTED_MAX 8u
#define BAL_SNAPFILE_NAME_BYTES 48u
#define BAL_SNAPFILE_REASON_BYTES 160u
#define BAL_SNAPFILE_DIR_PATH_BYTES_MAX 1024u
/* Size of error messages; errstr buffers should be this big. */
#define BAL_SNAPFILE_MESSAGE_BYTES 1536u

typedef enum bal_snapfile_status {
    BAL_SNAPFILE_OK = 0,
    BAL_SNAPFILE_NONE,              /* load: the directory has no snapshot: start empty */
    BAL_SNAPFILE_INVALID_ARGUMENT,
    BAL_SNAPFILE_NO_MEMORY,
    BAL_SNAPFILE_IO,                /* a system call failed; the message has errno's text */
    BAL_SNAPFILE_CORRUPT,           /* load: snapshots exist, none is valid */
    BAL_SNAPFILE_TOO_MANY_FILES,    /* more than BAL_SNAPFILE_FILES_MAX snapshot files */
} bal_snapfile_status;

typedef struct bal_snapfile_rejected {
    char name[BAL_SNAPFILE_NAME_BYTES];       /* the file's name before it was moved aside */
    uint64_t lsn;
    char reason[BAL_SNAPFILE_REASON_BYTES];
} bal_snapfile_rejected;

typedef struct bal_snapfile_load_report {
    uint32_t rejected_count;                  /* may exceed BAL_SNAPFILE_REJECTED_MAX */
    bal_snapfile_rejected rejected[BAL_SNAPFILE_REJECTED_MAX];
    uint32_t temporary_files_removed;
} bal_snapfile_load_report;

/* Stores `length` bytes as the snapshot covering `lsn`, atomically and durably (see above),
 * replacing a snapshot with the same LSN, then deletes all but the newest `keep_count`
 * snapshots (0: BAL_SNAPFILE_KEEP_DEFAULT). The directory is created if missing. When this
 * returns BAL_SNAPFILE_OK the snapshot survives a crash or power loss. */
bal_snapfile_status bal_snapfile_write(const char *dir, uint64_t lsn, const void *bytes, size_t length,
                                       uint32_t keep_count, char *errstr, size_t errstr_size);

/* Loads the newest valid snapshot: its LSN into *lsn_out, a malloc'd copy of its bytes into
 * *bytes_out (free with bal_snapfile_free; never NULL on success, even for 0 bytes) and
 * their count into *length_out. Rejected files and removed temporary files are listed in
 * *report_out (may be NULL); the caller logs them. BAL_SNAPFILE_NONE if the directory has
 * no snapshot or does not exist. */
bal_snapfile_status bal_snapfile_load_latest(const char *dir, uint64_t *lsn_out, void **bytes_out,
                                             size_t *length_out, bal_snapfile_load_report *report_out,
                                             char *errstr, size_t errstr_size);

void bal_snapfile_free(void *bytes);

const char *bal_snapfile_status_name(bal_snapfile_status status);

#endif
