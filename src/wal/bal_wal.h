/*
 * bal_wal.h -- a shard's write-ahead log: durable, checksummed, append-only records.
 *
 * The log stores opaque byte records (the ledger's encoded commands) in order. Each record
 * gets a log sequence number (LSN): a record counter that starts at 1 (or at the
 * `first_lsn` option for a new log) and grows by one per record, without gaps, for the
 * life of the log. A snapshot that covers LSN n means "records 1..n are applied"; start-up
 * loads it and replays from n + 1.
 *
 * Files, in one directory per shard (e.g. DATA/shard-3/wal/):
 *   00000000000000000001.wal    segments, named by the LSN of their first record in 20
 *   00000000000000052113.wal    zero-padded decimal digits, so name order is LSN order
 *   LOCK                        held with flock() while a process has the log open
 * A new segment is written as "<name>.tmp", synced and renamed, then the directory is
 * synced: a segment file either exists with a complete header or not at all.
 *
 * Segment layout (all integers little-endian):
 *   header, 32 bytes: magic "bal-wal\n" (8) | version u32 | header size u32 |
 *                     first LSN u64 | reserved u32 (0) | CRC32C of the 28 bytes before u32
 *   records, back to back, each: CRC32C u32 | payload length u32 | LSN u64 | payload
 *                     where the CRC covers length, LSN and payload.
 * A segment is rotated when the next record would take it past `segment_bytes`; a record
 * larger than that gets a segment of its own.
 *
 * Durability: append() only copies into a write buffer (allocated at open). sync() writes
 * the buffer and calls fdatasync once: group commit, one sync for any number of records.
 * The active segment is kept zero-filled 16 MiB ahead of its records, so that a sync
 * rewrites blocks the file already has instead of growing it (no metadata commit per
 * sync); a full segment is cut to its exact size before the next one is created, and a
 * clean close does the same to the last one.
 * When sync() returns BAL_WAL_OK every record appended before it is on stable storage.
 * Before a segment is left for the next one it is written and synced completely, so every
 * segment but the last is final.
 *
 * Recovery (open): every record of every segment is read and checked.
 *   - A damaged record at the end of the last segment, with no valid record after it (a
 *     crash during a write: a short record, a bad CRC, zero-filled bytes) is a torn tail:
 *     it was never synced. It is cut off (ftruncate + fsync) and described in the open
 *     report, whose message the caller logs. Zeros alone after the last record are the
 *     space prepared ahead after a crash (or kill -9): cut the same way.
 *   - Anything else refuses to open with BAL_WAL_CORRUPT and a message naming the file
 *     and the byte offset: a damaged record in an earlier segment; a damaged record
 *     followed by a valid record; a record with a valid CRC but the wrong LSN; a missing
 *     segment (the LSNs of consecutive segments do not join up); a bad segment header.
 *   Nothing is dropped silently. A missing LAST segment cannot be seen from the log alone:
 *   the caller checks that the log reaches the LSN of its newest snapshot.
 *
 * Errors: functions return a bal_wal_status. bal_wal_open and bal_wal_close describe an
 * error into the caller's errstr buffer; the other functions keep the description in the
 * handle (bal_wal_errstr). A failed write or fdatasync is fatal for the handle: the state
 * of the file after such a failure is unknown and the kernel may have dropped the dirty
 * pages ("fsyncgate"), so the handle never retries; it answers BAL_WAL_FAILED to every
 * later call but close. The owner stops the shard and recovers by reopening the log.
 *
 * Threads: a handle belongs to one thread (the shard's). Only bal_wal_stats_read may be
 * called from another thread (for /metrics) while the owner works.
 */
#ifndef BAL_WAL_H
#define BAL_WAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Largest record payload. A command is a few KiB at most (16 legs and a 256-byte memo);
 * the bound is fixed, not an option, so that any log can be read with any configuration. */
#define BAL_WAL_RECORD_PAYLOAD_BYTES_MAX (1u << 20)
/* CRC32C u32 + payload length u32 + LSN u64. */
#define BAL_WAL_RECORD_HEADER_BYTES 16u
#define BAL_WAL_RECORD_BYTES_MAX (BAL_WAL_RECORD_HEADER_BYTES + BAL_WAL_RECORD_PAYLOAD_BYTES_MAX)
#define BAL_WAL_SEGMENT_HEADER_BYTES 32u
#define BAL_WAL_FORMAT_VERSION 1u

/* Segment size: rotate when the next record would pass it. Small values are for tests. */
#define BAL_WAL_SEGMENT_BYTES_DEFAULT (64ull << 20)
#define BAL_WAL_SEGMENT_BYTES_MIN (4ull << 10)
#define BAL_WAL_SEGMENT_BYTES_MAX (1ull << 30)
/* Write buffer: records wait here until sync() or until it is full. It also serves as the
 * read buffer of recovery and replay, which needs two maximal records of room. */
#define BAL_WAL_WRITE_BUFFER_BYTES_DEFAULT (4u << 20)
#define BAL_WAL_WRITE_BUFFER_BYTES_MIN (2u * BAL_WAL_RECORD_BYTES_MAX)
#define BAL_WAL_WRITE_BUFFER_BYTES_MAX (256u << 20)
/* Segments kept at once (the list is allocated at open): 4096 x 64 MiB = 256 GiB of log
 * between snapshots by default. remove_before() frees entries. */
#define BAL_WAL_SEGMENTS_DEFAULT 4096u
#define BAL_WAL_SEGMENTS_MAX (1u << 20)
/* Directory path length, and the size of messages (errstr buffers should be this big;
 * shorter ones get a truncated message). */
#define BAL_WAL_DIR_PATH_BYTES_MAX 1024u
#define BAL_WAL_MESSAGE_BYTES 1536u
/* fdatasync latency histogram: buckets with these upper bounds, the last unbounded. */
#define BAL_WAL_SYNC_BUCKET_COUNT 12u

_Static_assert(BAL_WAL_SEGMENT_BYTES_MIN > BAL_WAL_SEGMENT_HEADER_BYTES + BAL_WAL_RECORD_HEADER_BYTES,
               "a minimal segment holds a header and a record");
_Static_assert(BAL_WAL_WRITE_BUFFER_BYTES_DEFAULT >= BAL_WAL_WRITE_BUFFER_BYTES_MIN,
               "the default write buffer is big enough");
_Static_assert(BAL_WAL_MESSAGE_BYTES >= BAL_WAL_DIR_PATH_BYTES_MAX + 512,
               "a message holds a path and a sentence");

typedef struct bal_wal bal_wal;

typedef enum bal_wal_status {
    BAL_WAL_OK = 0,
    BAL_WAL_INVALID_ARGUMENT,  /* an option out of its range, a path too long */
    BAL_WAL_NO_MEMORY,
    BAL_WAL_IO,                /* a system call failed (message has errno's text); after a
                                  failed write or sync the handle is also failed */
    BAL_WAL_CORRUPT,           /* open: damage that is not a torn tail; refused */
    BAL_WAL_LOCKED,            /* open: another handle or process has the log open */
    BAL_WAL_FAILED,            /* an earlier write or sync failed; only close is allowed */
    BAL_WAL_RECORD_TOO_LARGE,  /* append: payload over BAL_WAL_RECORD_PAYLOAD_BYTES_MAX */
    BAL_WAL_SEGMENTS_FULL,     /* append: segments_max reached; take a snapshot and
                                  remove_before() first. Nothing was appended. */
    BAL_WAL_NOT_AVAILABLE,     /* replay: the records asked for were removed already */
    BAL_WAL_STOPPED,           /* replay: the callback returned nonzero */
} bal_wal_status;

typedef struct bal_wal_options {
    uint64_t segment_bytes;       /* 0: BAL_WAL_SEGMENT_BYTES_DEFAULT */
    uint32_t write_buffer_bytes;  /* 0: BAL_WAL_WRITE_BUFFER_BYTES_DEFAULT */
    uint32_t segments_max;        /* 0: BAL_WAL_SEGMENTS_DEFAULT */
    uint64_t first_lsn;           /* LSN of the first record of a new, empty log; 0: 1.
                                     Ignored when the directory already has segments. */
} bal_wal_options;

/* What open found and did; the caller logs `message` when `tail_truncated` is set. */
typedef struct bal_wal_open_report {
    uint64_t first_lsn;                /* oldest record still in the log */
    uint64_t next_lsn;                 /* the LSN the next append gets */
    uint32_t segment_count;
    uint32_t temporary_files_removed;  /* segment files left half-created by a crash */
    bool created;                      /* the directory had no segment; one was created */
    bool tail_truncated;               /* a torn tail was cut off the last segment */
    uint64_t tail_offset;              /* byte offset of the cut in that segment */
    uint64_t tail_bytes_removed;
    char message[BAL_WAL_MESSAGE_BYTES];
} bal_wal_open_report;

/* Counters for /metrics. Latencies in nanoseconds. The histogram counts each sync once, in
 * the first bucket whose bound (bal_wal_sync_bucket_upper_ns) is >= its latency
 * (Prometheus buckets are the running sums of these). */
typedef struct bal_wal_stats {
    uint64_t append_count;
    uint64_t append_payload_bytes;
    uint64_t write_count;       /* write system calls (buffer flushes) */
    uint64_t write_bytes;
    uint64_t sync_count;        /* fdatasync calls, including those at segment rotation */
    uint64_t sync_ns_total;
    uint64_t sync_ns_last;
    uint64_t sync_ns_max;
    uint64_t sync_histogram[BAL_WAL_SYNC_BUCKET_COUNT];
    uint64_t segment_count;     /* segments in the directory now */
    uint64_t rotation_count;
    uint64_t zero_fill_count;        /* extensions of the active segment with zeros */
    uint64_t next_lsn;
    uint64_t synced_lsn;        /* every record <= this one is durable */
    uint64_t failed;            /* 1 once a write or sync failed */
} bal_wal_stats;

extern const uint64_t bal_wal_sync_bucket_upper_ns[BAL_WAL_SYNC_BUCKET_COUNT];

/* Called by replay for each record, in LSN order. The payload is valid only during the
 * call. Return 0 to go on; nonzero stops the replay, which returns BAL_WAL_STOPPED. */
typedef int (*bal_wal_replay_fn)(void *context, uint64_t lsn, const void *payload, size_t length);

/* Opens (creating if needed) the log in `dir`, recovers it as described above and takes
 * the directory's lock. `options` may be NULL (all defaults); `report_out` may be NULL.
 * On success *wal_out is the handle; bal_wal_next_lsn() tells the next LSN. */
bal_wal_status bal_wal_open(const char *dir, const bal_wal_options *options, bal_wal **wal_out,
                            bal_wal_open_report *report_out, char *errstr, size_t errstr_size);

/* Appends one record: copies the payload into the write buffer and returns its LSN through
 * *lsn_out. No system call unless the buffer is full or the segment is rotated. The record
 * is durable only after the next successful bal_wal_sync. */
bal_wal_status bal_wal_append(bal_wal *wal, const void *payload, size_t length, uint64_t *lsn_out);

/* Writes what is buffered and fdatasyncs: on BAL_WAL_OK every appended record is durable.
 * Does nothing if nothing was appended since the last sync. */
bal_wal_status bal_wal_sync(bal_wal *wal);

/* Calls fn for every record with lsn >= from_lsn (from_lsn >= 1), oldest first, up to the
 * last appended one. Writes out buffered records first (without syncing) so that they are
 * read back too. Must not be called from inside fn; fn must not append. BAL_WAL_NOT_AVAILABLE
 * if from_lsn is older than the oldest record kept. */
bal_wal_status bal_wal_replay(bal_wal *wal, uint64_t from_lsn, bal_wal_replay_fn fn, void *context);

/* Deletes, oldest first, every segment whose records all have LSNs < lsn (call it after a
 * snapshot covering lsn - 1 is durable). Never deletes the segment being written. The
 * number of segments deleted goes to *removed_count_out (may be NULL). A failure here is
 * not fatal for the log. */
bal_wal_status bal_wal_remove_before(bal_wal *wal, uint64_t lsn, uint32_t *removed_count_out);

/* Syncs (unless failed), closes the files, releases the lock and frees the handle, which
 * is gone whatever the status. */
bal_wal_status bal_wal_close(bal_wal *wal, char *errstr, size_t errstr_size);

uint64_t bal_wal_next_lsn(const bal_wal *wal);
/* The newest LSN known durable (next_lsn - 1 right after a sync; first_lsn - 1 if none). */
uint64_t bal_wal_synced_lsn(const bal_wal *wal);
/* The oldest LSN still in the log (the first segment's first LSN). */
uint64_t bal_wal_first_lsn(const bal_wal *wal);
/* Snapshot of the counters; safe from any thread while the handle is open. */
void bal_wal_stats_read(const bal_wal *wal, bal_wal_stats *stats_out);
/* The description of the last error on this handle ("" if none). */
const char *bal_wal_errstr(const bal_wal *wal);
const char *bal_wal_status_name(bal_wal_status status);

#endif
