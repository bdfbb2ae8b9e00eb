/*
 * bal_wal.c -- the write-ahead log: segment files, group commit, recovery and replay.
 *
 * The handle owns one write buffer (allocated at open) that holds the records appended
 * since the last write() to the active segment, and the sorted list of segment first LSNs.
 * Invariant: segment_written + buffer_used == segment_size, and segment_size is the
 * logical end of the active segment. Recovery and replay read through the same buffer
 * (they run when it is empty), so a handle allocates nothing after open.
 *
 * The file format and the recovery rules are described in bal_wal.h.
 */
#include "bal_wal.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bal_crc32c.h"
#include "bal_wal_io.h"

#define BAL_WAL_SEGMENT_SUFFIX ".wal"
#define BAL_WAL_TEMPORARY_SUFFIX ".wal.tmp"
#define BAL_WAL_LOCK_NAME "LOCK"
#define BAL_WAL_MAGIC_BYTES 8u
/* The active segment is kept zero-filled this far beyond what was written, and each
 * extension is made durable (fsync) at once: rewriting blocks that already belong to the
 * file makes fdatasync flush data only, while an append that grows the file also commits
 * the file system's metadata (its size and new extents) on every sync -- measured here at
 * twice the time, more with several logs syncing at once -- and in ext4's ordered mode such
 * a commit first waits for every other file's pending data (the journal store's: stalls of
 * 40-90 ms seen with perf sched). fallocate() is not enough on ext4: its extents stay
 * "unwritten" and the first write to each one is again a metadata change. One extension
 * writes about this many zeros (in BAL_WAL_ZERO_CHUNK_BYTES pieces) and fsyncs once, every
 * 16 MiB of records -- on the committing shard's thread. A segment smaller than this is
 * zero-filled only to its size target (wal_zero_ahead). */
#define BAL_WAL_ZERO_AHEAD_BYTES (16u << 20)
#define BAL_WAL_ZERO_CHUNK_BYTES (64u << 10)
#define BAL_WAL_ZERO_TAIL_REASON "zero-filled bytes"
/* Directory entries looked at during open: segments plus a generous allowance for others. */
#define BAL_WAL_DIR_ENTRIES_MAX (4u * BAL_WAL_SEGMENTS_MAX)

/* Field offsets of the segment header (see bal_wal.h). Its CRC covers the bytes before it. */
enum {
    BAL_WAL_HEADER_VERSION_AT = 8,
    BAL_WAL_HEADER_SIZE_AT = 12,
    BAL_WAL_HEADER_FIRST_LSN_AT = 16,
    BAL_WAL_HEADER_RESERVED_AT = 24,
    BAL_WAL_HEADER_CRC_AT = 28,
};
/* Field offsets of a record header. The CRC covers length, LSN and payload: everything
 * from BAL_WAL_RECORD_LENGTH_AT to the end of the record. */
enum {
    BAL_WAL_RECORD_CRC_AT = 0,
    BAL_WAL_RECORD_LENGTH_AT = 4,
    BAL_WAL_RECORD_LSN_AT = 8,
    BAL_WAL_RECORD_CHECKED_HEADER_BYTES = BAL_WAL_RECORD_HEADER_BYTES - BAL_WAL_RECORD_LENGTH_AT,
};
_Static_assert(BAL_WAL_HEADER_CRC_AT + 4 == BAL_WAL_SEGMENT_HEADER_BYTES, "the header CRC ends the header");
_Static_assert(BAL_WAL_RECORD_LSN_AT + 8 == BAL_WAL_RECORD_HEADER_BYTES, "the LSN ends the record header");

static const uint8_t bal_wal_magic[BAL_WAL_MAGIC_BYTES] = {'b', 'a', 'l', '-', 'w', 'a', 'l', '\n'};

const uint64_t bal_wal_sync_bucket_upper_ns[BAL_WAL_SYNC_BUCKET_COUNT] = {
    50000u,   100000u,   250000u,    500000u,     1000000u,    2500000u,
    5000000u, 10000000u, 25000000u, 100000000u, 1000000000u, UINT64_MAX,
};

_Static_assert(sizeof(bal_wal_stats) % sizeof(uint64_t) == 0, "stats are read word by word");
_Static_assert(BAL_WAL_RECORD_PAYLOAD_BYTES_MAX <= UINT32_MAX, "lengths are stored in 32 bits");

struct bal_wal {
    int dir_fd;
    int lock_fd;
    int segment_fd;                 /* the active (last) segment, read-write */
    bool failed;                    /* a write or sync failed: only close is allowed */
    bool replaying;                 /* the buffer is in use as the read buffer */
    uint64_t segment_bytes_target;
    uint32_t segments_max;
    uint32_t segment_count;
    uint64_t *segment_first_lsn;    /* ascending; the last entry is the active segment */
    uint8_t *buffer;
    size_t buffer_capacity;
    size_t buffer_used;
    uint64_t segment_size;          /* logical size of the active segment */
    uint64_t segment_written;       /* bytes of it handed to write() */
    uint64_t segment_zeroed;        /* the active file's size: zeros from segment_written on */
    uint64_t segment_record_count;
    uint64_t next_lsn;
    uint64_t synced_lsn;
    bal_wal_stats stats;            /* stored with relaxed atomics for bal_wal_stats_read */
    char dir_path[BAL_WAL_DIR_PATH_BYTES_MAX];
    char error[BAL_WAL_MESSAGE_BYTES];
};

/* The owner thread is the only writer, so a plain read plus an atomic store is enough. */
#define BAL_WAL_STAT_SET(wal, field, value) \
    __atomic_store_n(&(wal)->stats.field, (uint64_t)(value), __ATOMIC_RELAXED)
#define BAL_WAL_STAT_ADD(wal, field, amount) \
    BAL_WAL_STAT_SET(wal, field, (wal)->stats.field + (uint64_t)(amount))

const char *bal_wal_status_name(bal_wal_status status) {
    switch (status) {
    case BAL_WAL_OK: return "ok";
    case BAL_WAL_INVALID_ARGUMENT: return "invalid_argument";
    case BAL_WAL_NO_MEMORY: return "no_memory";
    case BAL_WAL_IO: return "io";
    case BAL_WAL_CORRUPT: return "corrupt";
    case BAL_WAL_LOCKED: return "locked";
    case BAL_WAL_FAILED: return "failed";
    case BAL_WAL_RECORD_TOO_LARGE: return "record_too_large";
    case BAL_WAL_SEGMENTS_FULL: return "segments_full";
    case BAL_WAL_NOT_AVAILABLE: return "not_available";
    case BAL_WAL_STOPPED: return "stopped";
    }
    return "unknown";
}

/* ---- messages ------------------------------------------------------------------------ */

__attribute__((format(printf, 3, 4)))
static bal_wal_status wal_error(bal_wal *wal, bal_wal_status status, const char *format, ...) {
    assert(wal != NULL);
    assert(status != BAL_WAL_OK);
    va_list arguments;
    va_start(arguments, format);
    vsnprintf(wal->error, sizeof wal->error, format, arguments);
    va_end(arguments);
    return status;
}

/* A write, sync or segment creation failed: the handle is failed for good (no retry of
 * fsync: after a failure the kernel may have dropped the dirty pages it could not write). */
static bal_wal_status wal_fail(bal_wal *wal, int error_number, const char *action, const char *name) {
    assert(wal != NULL && action != NULL && name != NULL);
    assert(error_number != 0);
    wal->failed = true;
    BAL_WAL_STAT_SET(wal, failed, 1);
    return wal_error(wal, BAL_WAL_IO,
                     "wal %s: %s of segment %s failed: %s; the log is failed, stop the shard and reopen it",
                     wal->dir_path, action, name, strerror(error_number));
}

static bal_wal_status wal_failed_status(bal_wal *wal) {
    assert(wal->failed);
    /* wal->error still describes the original failure. */
    return BAL_WAL_FAILED;
}

static void wal_segment_name(uint64_t first_lsn, char name[BAL_WAL_IO_NAME_BYTES]) {
    bal_wal_io_format_name(name, BAL_WAL_IO_NAME_BYTES, first_lsn, BAL_WAL_SEGMENT_SUFFIX);
}

static void wal_active_name(const bal_wal *wal, char name[BAL_WAL_IO_NAME_BYTES]) {
    assert(wal->segment_count > 0);
    wal_segment_name(wal->segment_first_lsn[wal->segment_count - 1], name);
}

/* ---- segment header and record frames ------------------------------------------------ */

static void wal_header_encode(uint8_t header[BAL_WAL_SEGMENT_HEADER_BYTES], uint64_t first_lsn) {
    assert(first_lsn >= 1);
    memcpy(header, bal_wal_magic, BAL_WAL_MAGIC_BYTES);
    bal_wal_io_store_u32(header + BAL_WAL_HEADER_VERSION_AT, BAL_WAL_FORMAT_VERSION);
    bal_wal_io_store_u32(header + BAL_WAL_HEADER_SIZE_AT, BAL_WAL_SEGMENT_HEADER_BYTES);
    bal_wal_io_store_u64(header + BAL_WAL_HEADER_FIRST_LSN_AT, first_lsn);
    bal_wal_io_store_u32(header + BAL_WAL_HEADER_RESERVED_AT, 0);
    bal_wal_io_store_u32(header + BAL_WAL_HEADER_CRC_AT, bal_crc32c(0, header, BAL_WAL_HEADER_CRC_AT));
}

/* NULL if the header is sound and names `name_lsn`, else what is wrong with it. */
static const char *wal_header_problem(const uint8_t *header, size_t length, uint64_t name_lsn) {
    assert(header != NULL);
    if (length < BAL_WAL_SEGMENT_HEADER_BYTES) return "the file is shorter than a segment header";
    if (memcmp(header, bal_wal_magic, BAL_WAL_MAGIC_BYTES) != 0) return "bad magic: not a wal segment";
    if (bal_wal_io_load_u32(header + BAL_WAL_HEADER_VERSION_AT) != BAL_WAL_FORMAT_VERSION) {
        return "unsupported format version (this build reads version 1)";
    }
    if (bal_wal_io_load_u32(header + BAL_WAL_HEADER_CRC_AT) != bal_crc32c(0, header, BAL_WAL_HEADER_CRC_AT)) {
        return "segment header checksum mismatch";
    }
    if (bal_wal_io_load_u32(header + BAL_WAL_HEADER_SIZE_AT) != BAL_WAL_SEGMENT_HEADER_BYTES) {
        return "unexpected header size";
    }
    if (bal_wal_io_load_u64(header + BAL_WAL_HEADER_FIRST_LSN_AT) != name_lsn) {
        return "the first lsn in the header differs from the file name";
    }
    if (name_lsn == 0) return "first lsn 0 (lsns start at 1)";
    return NULL;
}

typedef enum bal_wal_frame_result {
    BAL_WAL_FRAME_OK = 0,
    BAL_WAL_FRAME_END,             /* clean end of file */
    BAL_WAL_FRAME_IO,              /* read error; errno in the reader */
    BAL_WAL_FRAME_SHORT_HEADER,
    BAL_WAL_FRAME_LENGTH_TOO_LARGE,
    BAL_WAL_FRAME_SHORT_PAYLOAD,
    BAL_WAL_FRAME_BAD_CHECKSUM,
    BAL_WAL_FRAME_BAD_LSN,         /* checksum fine, LSN out of sequence */
} bal_wal_frame_result;

static const char *wal_frame_result_text(bal_wal_frame_result result) {
    switch (result) {
    case BAL_WAL_FRAME_OK: return "ok";
    case BAL_WAL_FRAME_END: return "end of file";
    case BAL_WAL_FRAME_IO: return "read error";
    case BAL_WAL_FRAME_SHORT_HEADER: return "record header cut short by the end of the file";
    case BAL_WAL_FRAME_LENGTH_TOO_LARGE: return "record length over the maximum";
    case BAL_WAL_FRAME_SHORT_PAYLOAD: return "record payload cut short by the end of the file";
    case BAL_WAL_FRAME_BAD_CHECKSUM: return "record checksum mismatch";
    case BAL_WAL_FRAME_BAD_LSN: return "record has a valid checksum but an out-of-sequence lsn";
    }
    return "unknown";
}

typedef struct bal_wal_frame {
    uint64_t lsn;
    const uint8_t *payload;
    uint32_t length;
} bal_wal_frame;

static void wal_frame_encode(uint8_t *target, uint64_t lsn, const void *payload, uint32_t length) {
    assert(target != NULL && lsn >= 1);
    assert(length <= BAL_WAL_RECORD_PAYLOAD_BYTES_MAX);
    bal_wal_io_store_u32(target + BAL_WAL_RECORD_LENGTH_AT, length);
    bal_wal_io_store_u64(target + BAL_WAL_RECORD_LSN_AT, lsn);
    if (length > 0) memcpy(target + BAL_WAL_RECORD_HEADER_BYTES, payload, length);
    size_t checked_bytes = BAL_WAL_RECORD_CHECKED_HEADER_BYTES + (size_t)length;
    uint32_t crc = bal_crc32c(0, target + BAL_WAL_RECORD_LENGTH_AT, checked_bytes);
    bal_wal_io_store_u32(target + BAL_WAL_RECORD_CRC_AT, crc);
}

/* Checks the record at `bytes`, of which `available` bytes exist before the end of file. */
static bal_wal_frame_result wal_frame_check(const uint8_t *bytes, uint64_t available, uint64_t expected_lsn,
                                            bal_wal_frame *frame_out) {
    assert(bytes != NULL && frame_out != NULL);
    if (available < BAL_WAL_RECORD_HEADER_BYTES) return BAL_WAL_FRAME_SHORT_HEADER;
    uint32_t length = bal_wal_io_load_u32(bytes + BAL_WAL_RECORD_LENGTH_AT);
    if (length > BAL_WAL_RECORD_PAYLOAD_BYTES_MAX) return BAL_WAL_FRAME_LENGTH_TOO_LARGE;
    if (available < BAL_WAL_RECORD_HEADER_BYTES + (uint64_t)length) return BAL_WAL_FRAME_SHORT_PAYLOAD;
    if (bal_wal_io_load_u32(bytes + BAL_WAL_RECORD_CRC_AT) !=
        bal_crc32c(0, bytes + BAL_WAL_RECORD_LENGTH_AT, BAL_WAL_RECORD_CHECKED_HEADER_BYTES + (size_t)length)) {
        return BAL_WAL_FRAME_BAD_CHECKSUM;
    }
    uint64_t lsn = bal_wal_io_load_u64(bytes + BAL_WAL_RECORD_LSN_AT);
    if (lsn != expected_lsn) return BAL_WAL_FRAME_BAD_LSN;
    frame_out->lsn = lsn;
    frame_out->payload = bytes + BAL_WAL_RECORD_HEADER_BYTES;
    frame_out->length = length;
    return BAL_WAL_FRAME_OK;
}

/* ---- sequential reader over one segment ---------------------------------------------- */

typedef struct bal_wal_reader {
    int fd;
    uint8_t *buffer;
    size_t capacity;
    size_t begin;              /* buffer[begin, end) holds file bytes not yet consumed */
    size_t end;
    uint64_t buffer_offset;    /* file offset of buffer[0] */
    uint64_t file_size;
    int error_number;
} bal_wal_reader;

static void wal_reader_init(bal_wal_reader *reader, int fd, uint8_t *buffer, size_t capacity,
                            uint64_t start, uint64_t file_size) {
    assert(reader != NULL && buffer != NULL);
    assert(capacity >= BAL_WAL_RECORD_BYTES_MAX && start <= file_size);
    *reader = (bal_wal_reader){.fd = fd, .buffer = buffer, .capacity = capacity,
                               .buffer_offset = start, .file_size = file_size};
}

static uint64_t wal_reader_position(const bal_wal_reader *reader) {
    return reader->buffer_offset + reader->begin;
}

/* Makes at least `need` unconsumed bytes available (need <= bytes left in the file). */
static int wal_reader_fill(bal_wal_reader *reader, size_t need) {
    assert(need <= reader->capacity);
    assert(wal_reader_position(reader) + need <= reader->file_size);
    if (reader->end - reader->begin >= need) return 0;
    if (reader->begin + need > reader->capacity) {
        memmove(reader->buffer, reader->buffer + reader->begin, reader->end - reader->begin);
        reader->buffer_offset += reader->begin;
        reader->end -= reader->begin;
        reader->begin = 0;
    }
    uint64_t file_left = reader->file_size - (reader->buffer_offset + reader->end);
    size_t want = reader->capacity - reader->end;
    if (want > file_left) want = (size_t)file_left;
    size_t got = 0;
    int error = bal_wal_io_read_full(reader->fd, reader->buffer + reader->end, want,
                                     reader->buffer_offset + reader->end, &got);
    if (error != 0) return error;
    reader->end += got;
    /* Fewer bytes than fstat promised: the file shrank under us. */
    if (reader->end - reader->begin < need) return EIO;
    return 0;
}

static bal_wal_frame_result wal_reader_next(bal_wal_reader *reader, uint64_t expected_lsn,
                                            bal_wal_frame *frame_out) {
    assert(reader != NULL && frame_out != NULL);
    uint64_t remaining = reader->file_size - wal_reader_position(reader);
    if (remaining == 0) return BAL_WAL_FRAME_END;
    size_t need = remaining < BAL_WAL_RECORD_HEADER_BYTES ? (size_t)remaining : BAL_WAL_RECORD_HEADER_BYTES;
    reader->error_number = wal_reader_fill(reader, need);
    if (reader->error_number != 0) return BAL_WAL_FRAME_IO;
    if (remaining >= BAL_WAL_RECORD_HEADER_BYTES) {
        uint32_t length = bal_wal_io_load_u32(reader->buffer + reader->begin + BAL_WAL_RECORD_LENGTH_AT);
        if (length <= BAL_WAL_RECORD_PAYLOAD_BYTES_MAX) {
            uint64_t frame_bytes = BAL_WAL_RECORD_HEADER_BYTES + (uint64_t)length;
            need = (size_t)(remaining < frame_bytes ? remaining : frame_bytes);
            reader->error_number = wal_reader_fill(reader, need);
            if (reader->error_number != 0) return BAL_WAL_FRAME_IO;
        }
    }
    bal_wal_frame_result result = wal_frame_check(reader->buffer + reader->begin, reader->end - reader->begin,
                                                  expected_lsn, frame_out);
    if (result == BAL_WAL_FRAME_OK) reader->begin += BAL_WAL_RECORD_HEADER_BYTES + frame_out->length;
    assert(reader->begin <= reader->end);
    return result;
}

/* ---- segment files ------------------------------------------------------------------- */

/* Reads and checks the header of an open segment. */
static bal_wal_status wal_check_segment_header(bal_wal *wal, int fd, const char *name, uint64_t name_lsn) {
    assert(fd >= 0 && name != NULL);
    uint8_t header[BAL_WAL_SEGMENT_HEADER_BYTES];
    size_t got = 0;
    int error = bal_wal_io_read_full(fd, header, sizeof header, 0, &got);
    if (error != 0) {
        return wal_error(wal, BAL_WAL_IO, "wal segment %s/%s: reading the header: %s", wal->dir_path, name,
                         strerror(error));
    }
    const char *problem = wal_header_problem(header, got, name_lsn);
    if (problem == NULL) return BAL_WAL_OK;
    return wal_error(wal, BAL_WAL_CORRUPT, "wal segment %s/%s: offset 0: %s; refusing to open", wal->dir_path,
                     name, problem);
}

/* Creates a segment atomically: header into "<name>.tmp", fdatasync, rename, fsync of the
 * directory. On success the new segment is durable and *fd_out is open read-write. */
static bal_wal_status wal_segment_create(bal_wal *wal, uint64_t first_lsn, int *fd_out) {
    assert(first_lsn >= 1);
    assert(fd_out != NULL);
    char name[BAL_WAL_IO_NAME_BYTES];
    char temporary[BAL_WAL_IO_NAME_BYTES];
    wal_segment_name(first_lsn, name);
    bal_wal_io_format_name(temporary, sizeof temporary, first_lsn, BAL_WAL_TEMPORARY_SUFFIX);
    int fd = openat(wal->dir_fd, temporary, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return wal_fail(wal, errno, "creation", temporary);
    uint8_t header[BAL_WAL_SEGMENT_HEADER_BYTES];
    wal_header_encode(header, first_lsn);
    int error = bal_wal_io_write_all(fd, header, sizeof header, 0);
    if (error == 0 && fdatasync(fd) != 0) error = errno;
    if (error == 0 && renameat(wal->dir_fd, temporary, wal->dir_fd, name) != 0) error = errno;
    if (error == 0) error = bal_wal_io_fsync_dir(wal->dir_fd);
    if (error != 0) {
        close(fd);
        return wal_fail(wal, error, "creation", name);
    }
    *fd_out = fd;
    return BAL_WAL_OK;
}

/* ---- recovery ------------------------------------------------------------------------ */

static int wal_lsn_compare(const void *left, const void *right) {
    uint64_t a = *(const uint64_t *)left;
    uint64_t b = *(const uint64_t *)right;
    return (a > b) - (a < b);
}

/* Handles one directory entry during listing: a segment is recorded, a temporary segment
 * left by a crash during creation is removed, anything else is left alone. */
static bal_wal_status wal_list_entry(bal_wal *wal, const char *entry_name, bal_wal_open_report *report) {
    uint64_t lsn = 0;
    if (bal_wal_io_parse_name(entry_name, BAL_WAL_TEMPORARY_SUFFIX, &lsn)) {
        if (unlinkat(wal->dir_fd, entry_name, 0) != 0) {
            return wal_error(wal, BAL_WAL_IO, "wal %s: removing the temporary file %s: %s", wal->dir_path,
                             entry_name, strerror(errno));
        }
        report->temporary_files_removed++;
        return BAL_WAL_OK;
    }
    if (!bal_wal_io_parse_name(entry_name, BAL_WAL_SEGMENT_SUFFIX, &lsn)) return BAL_WAL_OK;
    if (wal->segment_count == wal->segments_max) {
        return wal_error(wal, BAL_WAL_INVALID_ARGUMENT, "wal %s: more than %" PRIu32 " segments; raise segments_max",
                         wal->dir_path, wal->segments_max);
    }
    wal->segment_first_lsn[wal->segment_count++] = lsn;
    return BAL_WAL_OK;
}

static bal_wal_status wal_list_segments(bal_wal *wal, bal_wal_open_report *report) {
    assert(wal->segment_count == 0);
    int fd = fcntl(wal->dir_fd, F_DUPFD_CLOEXEC, 0);
    DIR *dir = fd < 0 ? NULL : fdopendir(fd);
    if (dir == NULL) {
        int error = errno;
        if (fd >= 0) close(fd);
        return wal_error(wal, BAL_WAL_IO, "wal %s: listing the directory: %s", wal->dir_path, strerror(error));
    }
    rewinddir(dir);
    bal_wal_status status = BAL_WAL_OK;
    for (uint32_t entry_count = 0; status == BAL_WAL_OK; entry_count++) {
        if (entry_count == BAL_WAL_DIR_ENTRIES_MAX) {
            status = wal_error(wal, BAL_WAL_INVALID_ARGUMENT, "wal %s: more than %u directory entries",
                               wal->dir_path, BAL_WAL_DIR_ENTRIES_MAX);
            break;
        }
        errno = 0;
        struct dirent *entry = readdir(dir);
        if (entry == NULL) {
            if (errno != 0) status = wal_error(wal, BAL_WAL_IO, "wal %s: listing: %s", wal->dir_path, strerror(errno));
            break;
        }
        status = wal_list_entry(wal, entry->d_name, report);
    }
    closedir(dir);
    if (status == BAL_WAL_OK && report->temporary_files_removed > 0) {
        int error = bal_wal_io_fsync_dir(wal->dir_fd);
        if (error != 0) status = wal_error(wal, BAL_WAL_IO, "wal %s: fsync: %s", wal->dir_path, strerror(error));
    }
    qsort(wal->segment_first_lsn, wal->segment_count, sizeof wal->segment_first_lsn[0], wal_lsn_compare);
    return status;
}

typedef struct bal_wal_tail_scan {
    bool found;          /* a valid record lies after the damage */
    bool all_zero;       /* every byte from the damage to the end is zero */
    uint64_t offset;
    uint64_t lsn;
} bal_wal_tail_scan;

/* Looks at every byte offset of one window for a record that checks out. */
static bool wal_scan_window(const uint8_t *bytes, size_t length, size_t limit, uint64_t window_offset,
                            uint64_t lsn_min, uint64_t lsn_span, bal_wal_tail_scan *scan) {
    assert(limit <= length);
    for (size_t i = 0; i < limit; i++) {
        if (bytes[i] != 0) scan->all_zero = false;
        if (length - i < BAL_WAL_RECORD_HEADER_BYTES) continue;
        uint64_t lsn = bal_wal_io_load_u64(bytes + i + BAL_WAL_RECORD_LSN_AT);
        if (lsn < lsn_min || lsn - lsn_min > lsn_span) continue;
        bal_wal_frame frame;
        if (wal_frame_check(bytes + i, length - i, lsn, &frame) != BAL_WAL_FRAME_OK) continue;
        scan->found = true;
        scan->offset = window_offset + i;
        scan->lsn = lsn;
        return true;
    }
    return false;
}

/* After a damaged record at `start` in the last segment: is there any valid record (with
 * an LSN at or after the expected one) further on? If so the damage is not a torn tail.
 * Windows overlap by a maximal record so that no record straddles unseen. */
static bal_wal_status wal_scan_tail(bal_wal *wal, int fd, const char *name, uint64_t start, uint64_t file_size,
                                    uint64_t lsn_min, bal_wal_tail_scan *scan_out) {
    assert(wal->buffer_capacity >= 2 * (size_t)BAL_WAL_RECORD_BYTES_MAX);
    assert(start < file_size);
    *scan_out = (bal_wal_tail_scan){.all_zero = true};
    size_t step = wal->buffer_capacity - BAL_WAL_RECORD_BYTES_MAX;
    uint64_t lsn_span = file_size / BAL_WAL_RECORD_HEADER_BYTES; /* no more records fit */
    for (uint64_t window = start; window < file_size; window += step) {
        size_t want = file_size - window < wal->buffer_capacity ? (size_t)(file_size - window) : wal->buffer_capacity;
        size_t got = 0;
        int error = bal_wal_io_read_full(fd, wal->buffer, want, window, &got);
        if (error == 0 && got != want) error = EIO;
        if (error != 0) {
            return wal_error(wal, BAL_WAL_IO, "wal segment %s/%s: reading at offset %" PRIu64 ": %s", wal->dir_path,
                             name, window, strerror(error));
        }
        bool last_window = window + want == file_size;
        size_t limit = last_window ? want : step;
        if (wal_scan_window(wal->buffer, want, limit, window, lsn_min, lsn_span, scan_out) || last_window) break;
    }
    return BAL_WAL_OK;
}

static bal_wal_status wal_cut_tail(bal_wal *wal, int fd, const char *name, uint64_t file_size, uint64_t offset,
                                   uint64_t lsn, const char *reason, bal_wal_open_report *report) {
    assert(offset >= BAL_WAL_SEGMENT_HEADER_BYTES && offset < file_size);
    assert(reason != NULL && report != NULL);
    if (ftruncate(fd, (off_t)offset) != 0 || fsync(fd) != 0) {
        return wal_error(wal, BAL_WAL_IO, "wal segment %s/%s: cutting the torn tail at offset %" PRIu64 ": %s",
                         wal->dir_path, name, offset, strerror(errno));
    }
    report->tail_truncated = true;
    report->tail_offset = offset;
    report->tail_bytes_removed = file_size - offset;
    bool zeros = strcmp(reason, BAL_WAL_ZERO_TAIL_REASON) == 0;
    snprintf(report->message, sizeof report->message,
             "wal segment %s/%s: cut a %s at offset %" PRIu64 " (%" PRIu64 " bytes, %s): %s; the log now ends at lsn %" PRIu64,
             wal->dir_path, name, zeros ? "zero-filled tail" : "torn tail", offset, file_size - offset, reason,
             zeros ? "space prepared for records after the process stopped without closing the log, or writes that "
                     "never reached the disk"
                   : "a write interrupted by a crash, never synced",
             lsn - 1);
    return BAL_WAL_OK;
}

/* A record that does not check out at `offset`: cut it if it is a torn tail, else refuse. */
static bal_wal_status wal_scan_damage(bal_wal *wal, int fd, const char *name, uint64_t file_size, uint64_t offset,
                                      uint64_t lsn, bal_wal_frame_result result, bool is_last,
                                      bal_wal_open_report *report) {
    assert(result > BAL_WAL_FRAME_IO);
    assert(offset < file_size);
    const char *text = wal_frame_result_text(result);
    if (!is_last || result == BAL_WAL_FRAME_BAD_LSN) {
        return wal_error(wal, BAL_WAL_CORRUPT,
                         "wal segment %s/%s: offset %" PRIu64 ": expected record lsn %" PRIu64
                         ": %s; %s, refusing to open",
                         wal->dir_path, name, offset, lsn, text,
                         is_last ? "this is not a torn write" : "later segments follow, so this is not a torn tail");
    }
    bal_wal_tail_scan scan;
    bal_wal_status status = wal_scan_tail(wal, fd, name, offset, file_size, lsn, &scan);
    if (status != BAL_WAL_OK) return status;
    if (scan.found) {
        return wal_error(wal, BAL_WAL_CORRUPT,
                         "wal segment %s/%s: offset %" PRIu64 ": expected record lsn %" PRIu64
                         ": %s, but a valid record (lsn %" PRIu64 ") follows at offset %" PRIu64 "; refusing to open",
                         wal->dir_path, name, offset, lsn, text, scan.lsn, scan.offset);
    }
    return wal_cut_tail(wal, fd, name, file_size, offset, lsn, scan.all_zero ? BAL_WAL_ZERO_TAIL_REASON : text, report);
}

/* Reads every record of an open segment, from *lsn_inout on. On return *lsn_inout is the
 * LSN after the last good record and *valid_end_out the offset after it. */
static bal_wal_status wal_scan_records(bal_wal *wal, int fd, const char *name, uint64_t file_size, bool is_last,
                                       uint64_t *lsn_inout, uint64_t *valid_end_out, bal_wal_open_report *report) {
    assert(wal->buffer_used == 0);
    assert(file_size >= BAL_WAL_SEGMENT_HEADER_BYTES);
    bal_wal_reader reader;
    wal_reader_init(&reader, fd, wal->buffer, wal->buffer_capacity, BAL_WAL_SEGMENT_HEADER_BYTES, file_size);
    uint64_t lsn = *lsn_inout;
    uint64_t record_count_max = file_size / BAL_WAL_RECORD_HEADER_BYTES;
    for (uint64_t record_count = 0; record_count <= record_count_max; record_count++) {
        bal_wal_frame frame;
        bal_wal_frame_result result = wal_reader_next(&reader, lsn, &frame);
        uint64_t position = wal_reader_position(&reader);
        if (result == BAL_WAL_FRAME_OK) {
            lsn++;
            continue;
        }
        *lsn_inout = lsn;
        *valid_end_out = position;
        if (result == BAL_WAL_FRAME_END) return BAL_WAL_OK;
        if (result == BAL_WAL_FRAME_IO) {
            return wal_error(wal, BAL_WAL_IO, "wal segment %s/%s: reading at offset %" PRIu64 ": %s", wal->dir_path,
                             name, position, strerror(reader.error_number));
        }
        return wal_scan_damage(wal, fd, name, file_size, position, lsn, result, is_last, report);
    }
    assert(!"a segment holds at most size / 16 records");
    return BAL_WAL_CORRUPT;
}

/* Checks one segment; the last one stays open as the active segment. */
static bal_wal_status wal_scan_segment(bal_wal *wal, uint32_t index, uint64_t *next_lsn_out,
                                       bal_wal_open_report *report) {
    assert(index < wal->segment_count);
    assert(wal->segment_fd < 0);
    bool is_last = index + 1 == wal->segment_count;
    uint64_t first_lsn = wal->segment_first_lsn[index];
    char name[BAL_WAL_IO_NAME_BYTES];
    wal_segment_name(first_lsn, name);
    int fd = openat(wal->dir_fd, name, (is_last ? O_RDWR : O_RDONLY) | O_CLOEXEC);
    if (fd < 0) {
        return wal_error(wal, BAL_WAL_IO, "wal segment %s/%s: open: %s", wal->dir_path, name, strerror(errno));
    }
    struct stat file_stat;
    bal_wal_status status = BAL_WAL_OK;
    if (fstat(fd, &file_stat) != 0) {
        status = wal_error(wal, BAL_WAL_IO, "wal segment %s/%s: fstat: %s", wal->dir_path, name, strerror(errno));
    }
    if (status == BAL_WAL_OK) status = wal_check_segment_header(wal, fd, name, first_lsn);
    uint64_t lsn = first_lsn;
    uint64_t valid_end = 0;
    if (status == BAL_WAL_OK) {
        status = wal_scan_records(wal, fd, name, (uint64_t)file_stat.st_size, is_last, &lsn, &valid_end, report);
    }
    /* The previous process may have died between write() and fdatasync(): make what was
     * found durable before anything is built on it (replayed state, snapshots). */
    if (status == BAL_WAL_OK && is_last && fdatasync(fd) != 0) {
        status = wal_error(wal, BAL_WAL_IO, "wal segment %s/%s: fdatasync: %s", wal->dir_path, name, strerror(errno));
    }
    if (status != BAL_WAL_OK || !is_last) {
        close(fd);
        *next_lsn_out = lsn;
        return status;
    }
    wal->segment_fd = fd;
    wal->segment_size = valid_end;
    wal->segment_written = valid_end;
    wal->segment_zeroed = valid_end; /* a tail beyond it was cut */
    wal->segment_record_count = lsn - first_lsn;
    *next_lsn_out = lsn;
    return BAL_WAL_OK;
}

static bal_wal_status wal_recover(bal_wal *wal, uint64_t first_lsn_if_empty, bal_wal_open_report *report) {
    assert(first_lsn_if_empty >= 1);
    if (wal->segment_count == 0) {
        bal_wal_status status = wal_segment_create(wal, first_lsn_if_empty, &wal->segment_fd);
        if (status != BAL_WAL_OK) return status;
        wal->segment_first_lsn[0] = first_lsn_if_empty;
        wal->segment_count = 1;
        wal->segment_size = wal->segment_written = wal->segment_zeroed = BAL_WAL_SEGMENT_HEADER_BYTES;
        wal->next_lsn = first_lsn_if_empty;
        report->created = true;
        return BAL_WAL_OK;
    }
    uint64_t lsn = wal->segment_first_lsn[0];
    for (uint32_t index = 0; index < wal->segment_count; index++) {
        uint64_t first_lsn = wal->segment_first_lsn[index];
        if (first_lsn != lsn) {
            char previous[BAL_WAL_IO_NAME_BYTES];
            char name[BAL_WAL_IO_NAME_BYTES];
            wal_segment_name(wal->segment_first_lsn[index - 1], previous);
            wal_segment_name(first_lsn, name);
            return wal_error(wal, BAL_WAL_CORRUPT,
                             "wal %s: segment %s ends before lsn %" PRIu64 " but the next segment %s starts at lsn %"
                             PRIu64 " (offset 0): %s; refusing to open",
                             wal->dir_path, previous, lsn, name, first_lsn,
                             first_lsn > lsn ? "records are missing, a segment file was lost" : "segments overlap");
        }
        bal_wal_status status = wal_scan_segment(wal, index, &lsn, report);
        if (status != BAL_WAL_OK) return status;
    }
    wal->next_lsn = lsn;
    return BAL_WAL_OK;
}

/* ---- open and close ------------------------------------------------------------------ */

static bal_wal_status wal_configure(bal_wal *wal, const char *dir, const bal_wal_options *options,
                                    uint64_t *first_lsn_out) {
    bal_wal_options resolved = options != NULL ? *options : (bal_wal_options){0};
    if (resolved.segment_bytes == 0) resolved.segment_bytes = BAL_WAL_SEGMENT_BYTES_DEFAULT;
    if (resolved.write_buffer_bytes == 0) resolved.write_buffer_bytes = BAL_WAL_WRITE_BUFFER_BYTES_DEFAULT;
    if (resolved.segments_max == 0) resolved.segments_max = BAL_WAL_SEGMENTS_DEFAULT;
    if (resolved.first_lsn == 0) resolved.first_lsn = 1;
    size_t dir_length = strlen(dir);
    snprintf(wal->dir_path, sizeof wal->dir_path, "%s", dir);
    if (dir_length == 0 || dir_length >= BAL_WAL_DIR_PATH_BYTES_MAX) {
        return wal_error(wal, BAL_WAL_INVALID_ARGUMENT, "wal: the directory path must have 1 to %u bytes",
                         BAL_WAL_DIR_PATH_BYTES_MAX - 1);
    }
    if (resolved.segment_bytes < BAL_WAL_SEGMENT_BYTES_MIN || resolved.segment_bytes > BAL_WAL_SEGMENT_BYTES_MAX ||
        resolved.write_buffer_bytes < BAL_WAL_WRITE_BUFFER_BYTES_MIN ||
        resolved.write_buffer_bytes > BAL_WAL_WRITE_BUFFER_BYTES_MAX || resolved.segments_max > BAL_WAL_SEGMENTS_MAX ||
        resolved.segments_max < 2 || resolved.first_lsn == UINT64_MAX) {
        return wal_error(wal, BAL_WAL_INVALID_ARGUMENT,
                         "wal %s: options out of range (segment_bytes %llu..%llu, write_buffer_bytes %u..%u, "
                         "segments_max 2..%u)",
                         dir, BAL_WAL_SEGMENT_BYTES_MIN, BAL_WAL_SEGMENT_BYTES_MAX, BAL_WAL_WRITE_BUFFER_BYTES_MIN,
                         BAL_WAL_WRITE_BUFFER_BYTES_MAX, BAL_WAL_SEGMENTS_MAX);
    }
    wal->segment_bytes_target = resolved.segment_bytes;
    wal->segments_max = resolved.segments_max;
    wal->buffer_capacity = resolved.write_buffer_bytes;
    wal->buffer = malloc(wal->buffer_capacity);
    wal->segment_first_lsn = calloc(wal->segments_max, sizeof wal->segment_first_lsn[0]);
    if (wal->buffer == NULL || wal->segment_first_lsn == NULL) {
        return wal_error(wal, BAL_WAL_NO_MEMORY, "wal %s: cannot allocate the write buffer", dir);
    }
    *first_lsn_out = resolved.first_lsn;
    return BAL_WAL_OK;
}

/* Opens (creating) the directory and takes its lock, so that two processes never write
 * the same log. flock locks belong to the open file description, so a second open in the
 * same process is refused too. */
static bal_wal_status wal_open_directory(bal_wal *wal) {
    assert(wal->dir_fd < 0 && wal->lock_fd < 0);
    int error = bal_wal_io_open_dir(wal->dir_path, true, &wal->dir_fd);
    if (error != 0) {
        return wal_error(wal, BAL_WAL_IO, "wal %s: opening the directory: %s", wal->dir_path, strerror(error));
    }
    wal->lock_fd = openat(wal->dir_fd, BAL_WAL_LOCK_NAME, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (wal->lock_fd < 0) {
        return wal_error(wal, BAL_WAL_IO, "wal %s: creating the lock file: %s", wal->dir_path, strerror(errno));
    }
    if (flock(wal->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno == EWOULDBLOCK) {
            return wal_error(wal, BAL_WAL_LOCKED, "wal %s: the log is open elsewhere (%s/%s is locked)", wal->dir_path,
                             wal->dir_path, BAL_WAL_LOCK_NAME);
        }
        return wal_error(wal, BAL_WAL_IO, "wal %s: locking: %s", wal->dir_path, strerror(errno));
    }
    return BAL_WAL_OK;
}

static void wal_destroy(bal_wal *wal) {
    assert(wal != NULL);
    if (wal->segment_fd >= 0) close(wal->segment_fd);
    if (wal->lock_fd >= 0) close(wal->lock_fd); /* releases the flock */
    if (wal->dir_fd >= 0) close(wal->dir_fd);
    free(wal->buffer);
    free(wal->segment_first_lsn);
    free(wal);
}

static void wal_copy_message(const char *message, char *errstr, size_t errstr_size) {
    if (errstr != NULL && errstr_size > 0) snprintf(errstr, errstr_size, "%s", message);
}

bal_wal_status bal_wal_open(const char *dir, const bal_wal_options *options, bal_wal **wal_out,
                            bal_wal_open_report *report_out, char *errstr, size_t errstr_size) {
    assert(dir != NULL && wal_out != NULL);
    assert(errstr != NULL || errstr_size == 0);
    *wal_out = NULL;
    bal_wal_open_report local_report;
    bal_wal_open_report *report = report_out != NULL ? report_out : &local_report;
    memset(report, 0, sizeof *report);
    wal_copy_message("", errstr, errstr_size);
    bal_wal *wal = calloc(1, sizeof *wal);
    if (wal == NULL) {
        wal_copy_message("wal: cannot allocate the handle", errstr, errstr_size);
        return BAL_WAL_NO_MEMORY;
    }
    wal->dir_fd = wal->lock_fd = wal->segment_fd = -1;
    uint64_t first_lsn_if_empty = 1;
    bal_wal_status status = wal_configure(wal, dir, options, &first_lsn_if_empty);
    if (status == BAL_WAL_OK) status = wal_open_directory(wal);
    if (status == BAL_WAL_OK) status = wal_list_segments(wal, report);
    if (status == BAL_WAL_OK) status = wal_recover(wal, first_lsn_if_empty, report);
    if (status != BAL_WAL_OK) {
        wal_copy_message(wal->error, errstr, errstr_size);
        wal_destroy(wal);
        return status;
    }
    assert(wal->segment_fd >= 0 && wal->segment_count >= 1);
    wal->synced_lsn = wal->next_lsn - 1;
    wal->error[0] = '\0';
    BAL_WAL_STAT_SET(wal, segment_count, wal->segment_count);
    BAL_WAL_STAT_SET(wal, next_lsn, wal->next_lsn);
    BAL_WAL_STAT_SET(wal, synced_lsn, wal->synced_lsn);
    report->first_lsn = wal->segment_first_lsn[0];
    report->next_lsn = wal->next_lsn;
    report->segment_count = wal->segment_count;
    *wal_out = wal;
    return BAL_WAL_OK;
}

/* ---- append and sync ----------------------------------------------------------------- */

/* Extends the active segment with zeros up to BAL_WAL_ZERO_AHEAD_BYTES past `end`, but
 * not more than one chunk past the segment's size target (or past `end`, for a segment
 * whose first record alone is larger): a small segment is not filled with zeros it will
 * never use, to be cut off again when it is full. */
static int wal_zero_ahead(bal_wal *wal, uint64_t end) {
    static const uint8_t zeros[BAL_WAL_ZERO_CHUNK_BYTES];
    uint64_t limit = (wal->segment_bytes_target > end ? wal->segment_bytes_target : end) + BAL_WAL_ZERO_CHUNK_BYTES;
    uint64_t target = end + BAL_WAL_ZERO_AHEAD_BYTES < limit ? end + BAL_WAL_ZERO_AHEAD_BYTES : limit;
    target -= target % BAL_WAL_ZERO_CHUNK_BYTES;
    assert(target > end && target > wal->segment_zeroed);
    for (uint64_t at = wal->segment_zeroed; at < target;) {
        size_t length = target - at < sizeof zeros ? (size_t)(target - at) : sizeof zeros;
        int error = bal_wal_io_write_all(wal->segment_fd, zeros, length, at);
        if (error != 0) return error;
        at += length;
    }
    /* Make the extension durable now, size and block allocation included: later syncs of
     * records written into it then flush data only, and never wait for a file-system
     * journal commit (which, in ext4's ordered mode, also waits for every other file's
     * pending data -- the journal store's, here). */
    if (fsync(wal->segment_fd) != 0) return errno;
    wal->segment_zeroed = target;
    BAL_WAL_STAT_ADD(wal, zero_fill_count, 1);
    return 0;
}

/* write() of the buffered records to the active segment. */
static bal_wal_status wal_flush(bal_wal *wal) {
    assert(!wal->failed);
    assert(wal->segment_written + wal->buffer_used == wal->segment_size);
    if (wal->buffer_used == 0) return BAL_WAL_OK;
    int error = 0;
    if (wal->segment_size > wal->segment_zeroed) error = wal_zero_ahead(wal, wal->segment_size);
    if (error == 0) error = bal_wal_io_write_all(wal->segment_fd, wal->buffer, wal->buffer_used, wal->segment_written);
    if (error != 0) {
        char name[BAL_WAL_IO_NAME_BYTES];
        wal_active_name(wal, name);
        return wal_fail(wal, error, "write", name);
    }
    BAL_WAL_STAT_ADD(wal, write_count, 1);
    BAL_WAL_STAT_ADD(wal, write_bytes, wal->buffer_used);
    wal->segment_written += wal->buffer_used;
    wal->buffer_used = 0;
    return BAL_WAL_OK;
}

static void wal_record_sync_latency(bal_wal *wal, uint64_t elapsed_ns) {
    uint32_t bucket = 0;
    while (elapsed_ns > bal_wal_sync_bucket_upper_ns[bucket]) bucket++;
    assert(bucket < BAL_WAL_SYNC_BUCKET_COUNT);
    BAL_WAL_STAT_ADD(wal, sync_histogram[bucket], 1);
    BAL_WAL_STAT_ADD(wal, sync_count, 1);
    BAL_WAL_STAT_ADD(wal, sync_ns_total, elapsed_ns);
    BAL_WAL_STAT_SET(wal, sync_ns_last, elapsed_ns);
    if (elapsed_ns > wal->stats.sync_ns_max) BAL_WAL_STAT_SET(wal, sync_ns_max, elapsed_ns);
}

/* fdatasync (or, when full, fsync: the file's size too) of the active segment after a
 * flush, timed: everything appended is then durable. */
static bal_wal_status wal_sync_segment(bal_wal *wal, bool full) {
    assert(!wal->failed);
    assert(wal->buffer_used == 0);
    uint64_t start_ns = bal_wal_io_now_ns();
    int rc = full ? fsync(wal->segment_fd) : fdatasync(wal->segment_fd);
    uint64_t elapsed_ns = bal_wal_io_now_ns() - start_ns;
    if (rc != 0) {
        char name[BAL_WAL_IO_NAME_BYTES];
        wal_active_name(wal, name);
        return wal_fail(wal, errno, full ? "fsync" : "fdatasync", name);
    }
    wal_record_sync_latency(wal, elapsed_ns);
    wal->synced_lsn = wal->next_lsn - 1;
    BAL_WAL_STAT_SET(wal, synced_lsn, wal->synced_lsn);
    return BAL_WAL_OK;
}

/* Makes the flushed active segment final: cut to its logical size (the zeros ahead go)
 * and synced, size included -- one sync either way. Only then may a later segment exist
 * (every segment but the last is final). */
static bal_wal_status wal_finish_segment(bal_wal *wal) {
    assert(wal->buffer_used == 0);
    if (wal->segment_zeroed > wal->segment_size) {
        if (ftruncate(wal->segment_fd, (off_t)wal->segment_size) != 0) {
            char name[BAL_WAL_IO_NAME_BYTES];
            wal_active_name(wal, name);
            return wal_fail(wal, errno, "ftruncate", name);
        }
        wal->segment_zeroed = wal->segment_size;
        return wal_sync_segment(wal, true);
    }
    /* No zeros ahead: the size is durable already (the segment's creation or its last
     * extension synced it), so only unsynced records need a sync. */
    if (wal->synced_lsn + 1 == wal->next_lsn) return BAL_WAL_OK;
    return wal_sync_segment(wal, false);
}

/* Closes the full active segment (written and synced completely, so that only the last
 * segment can ever have a torn tail) and starts the next one at next_lsn. */
static bal_wal_status wal_rotate(bal_wal *wal) {
    assert(wal->segment_record_count > 0);
    assert(wal->segment_count <= wal->segments_max);
    if (wal->segment_count == wal->segments_max) {
        return wal_error(wal, BAL_WAL_SEGMENTS_FULL,
                         "wal %s: %" PRIu32 " segments, the maximum; take a snapshot and remove old segments",
                         wal->dir_path, wal->segments_max);
    }
    bal_wal_status status = wal_flush(wal);
    if (status == BAL_WAL_OK) status = wal_finish_segment(wal);
    int fd = -1;
    if (status == BAL_WAL_OK) status = wal_segment_create(wal, wal->next_lsn, &fd);
    if (status != BAL_WAL_OK) return status;
    close(wal->segment_fd);
    wal->segment_fd = fd;
    wal->segment_first_lsn[wal->segment_count++] = wal->next_lsn;
    wal->segment_size = wal->segment_written = wal->segment_zeroed = BAL_WAL_SEGMENT_HEADER_BYTES;
    wal->segment_record_count = 0;
    BAL_WAL_STAT_ADD(wal, rotation_count, 1);
    BAL_WAL_STAT_SET(wal, segment_count, wal->segment_count);
    return BAL_WAL_OK;
}

bal_wal_status bal_wal_append(bal_wal *wal, const void *payload, size_t length, uint64_t *lsn_out) {
    assert(wal != NULL && lsn_out != NULL);
    assert(payload != NULL || length == 0);
    assert(!wal->replaying);
    if (wal->failed) return wal_failed_status(wal);
    if (length > BAL_WAL_RECORD_PAYLOAD_BYTES_MAX) {
        return wal_error(wal, BAL_WAL_RECORD_TOO_LARGE, "wal %s: a record of %zu bytes is over the maximum of %u",
                         wal->dir_path, length, BAL_WAL_RECORD_PAYLOAD_BYTES_MAX);
    }
    size_t frame_bytes = BAL_WAL_RECORD_HEADER_BYTES + length;
    if (wal->segment_record_count > 0 && wal->segment_size + frame_bytes > wal->segment_bytes_target) {
        bal_wal_status status = wal_rotate(wal);
        if (status != BAL_WAL_OK) return status;
    }
    if (wal->buffer_used + frame_bytes > wal->buffer_capacity) {
        bal_wal_status status = wal_flush(wal);
        if (status != BAL_WAL_OK) return status;
    }
    assert(wal->buffer_used + frame_bytes <= wal->buffer_capacity);
    assert(wal->next_lsn < UINT64_MAX);
    wal_frame_encode(wal->buffer + wal->buffer_used, wal->next_lsn, payload, (uint32_t)length);
    wal->buffer_used += frame_bytes;
    wal->segment_size += frame_bytes;
    wal->segment_record_count++;
    *lsn_out = wal->next_lsn++;
    BAL_WAL_STAT_ADD(wal, append_count, 1);
    BAL_WAL_STAT_ADD(wal, append_payload_bytes, length);
    BAL_WAL_STAT_SET(wal, next_lsn, wal->next_lsn);
    return BAL_WAL_OK;
}

bal_wal_status bal_wal_sync(bal_wal *wal) {
    assert(wal != NULL);
    assert(!wal->replaying);
    if (wal->failed) return wal_failed_status(wal);
    if (wal->synced_lsn + 1 == wal->next_lsn) {
        assert(wal->buffer_used == 0);
        return BAL_WAL_OK;
    }
    bal_wal_status status = wal_flush(wal);
    if (status != BAL_WAL_OK) return status;
    return wal_sync_segment(wal, false);
}

/* ---- replay -------------------------------------------------------------------------- */

/* The index of the segment holding `lsn` (the last one whose first LSN is <= lsn). */
static uint32_t wal_segment_index(const bal_wal *wal, uint64_t lsn) {
    assert(wal->segment_count > 0);
    assert(lsn >= wal->segment_first_lsn[0]);
    uint32_t low = 0;
    uint32_t high = wal->segment_count - 1;
    while (low < high) {
        uint32_t middle = low + (high - low + 1) / 2;
        if (wal->segment_first_lsn[middle] <= lsn) low = middle;
        else high = middle - 1;
    }
    return low;
}

static bal_wal_status wal_replay_records(bal_wal *wal, int fd, const char *name, uint64_t file_size,
                                         uint32_t index, uint64_t from_lsn, bal_wal_replay_fn fn, void *context) {
    uint64_t first_lsn = wal->segment_first_lsn[index];
    uint64_t end_lsn = index + 1 < wal->segment_count ? wal->segment_first_lsn[index + 1] : wal->next_lsn;
    assert(first_lsn <= end_lsn);
    bal_wal_reader reader;
    wal_reader_init(&reader, fd, wal->buffer, wal->buffer_capacity, BAL_WAL_SEGMENT_HEADER_BYTES, file_size);
    for (uint64_t lsn = first_lsn; lsn < end_lsn; lsn++) {
        bal_wal_frame frame;
        bal_wal_frame_result result = wal_reader_next(&reader, lsn, &frame);
        if (result == BAL_WAL_FRAME_IO) {
            return wal_error(wal, BAL_WAL_IO, "wal segment %s/%s: reading at offset %" PRIu64 ": %s", wal->dir_path,
                             name, wal_reader_position(&reader), strerror(reader.error_number));
        }
        if (result != BAL_WAL_FRAME_OK) {
            return wal_error(wal, BAL_WAL_CORRUPT,
                             "wal segment %s/%s: offset %" PRIu64 ": record lsn %" PRIu64 ": %s (changed since open)",
                             wal->dir_path, name, wal_reader_position(&reader), lsn, wal_frame_result_text(result));
        }
        if (lsn >= from_lsn && fn(context, lsn, frame.payload, frame.length) != 0) {
            return wal_error(wal, BAL_WAL_STOPPED, "wal %s: replay stopped by its callback at lsn %" PRIu64,
                             wal->dir_path, lsn);
        }
    }
    return BAL_WAL_OK;
}

static bal_wal_status wal_replay_segment(bal_wal *wal, uint32_t index, uint64_t from_lsn, bal_wal_replay_fn fn,
                                         void *context) {
    assert(index < wal->segment_count);
    assert(wal->replaying && wal->buffer_used == 0);
    char name[BAL_WAL_IO_NAME_BYTES];
    wal_segment_name(wal->segment_first_lsn[index], name);
    int fd = openat(wal->dir_fd, name, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return wal_error(wal, BAL_WAL_IO, "wal segment %s/%s: open: %s", wal->dir_path, name, strerror(errno));
    }
    struct stat file_stat;
    bal_wal_status status = BAL_WAL_OK;
    if (fstat(fd, &file_stat) != 0) {
        status = wal_error(wal, BAL_WAL_IO, "wal segment %s/%s: fstat: %s", wal->dir_path, name, strerror(errno));
    }
    if (status == BAL_WAL_OK) status = wal_check_segment_header(wal, fd, name, wal->segment_first_lsn[index]);
    if (status == BAL_WAL_OK) {
        status = wal_replay_records(wal, fd, name, (uint64_t)file_stat.st_size, index, from_lsn, fn, context);
    }
    close(fd);
    return status;
}

bal_wal_status bal_wal_replay(bal_wal *wal, uint64_t from_lsn, bal_wal_replay_fn fn, void *context) {
    assert(wal != NULL && fn != NULL);
    assert(from_lsn >= 1 && !wal->replaying);
    if (wal->failed) return wal_failed_status(wal);
    if (from_lsn < wal->segment_first_lsn[0]) {
        return wal_error(wal, BAL_WAL_NOT_AVAILABLE,
                         "wal %s: replay from lsn %" PRIu64 " asked, but the oldest record kept is lsn %" PRIu64,
                         wal->dir_path, from_lsn, wal->segment_first_lsn[0]);
    }
    bal_wal_status status = wal_flush(wal);
    if (status != BAL_WAL_OK || from_lsn >= wal->next_lsn) return status;
    wal->replaying = true;
    for (uint32_t index = wal_segment_index(wal, from_lsn); index < wal->segment_count; index++) {
        status = wal_replay_segment(wal, index, from_lsn, fn, context);
        if (status != BAL_WAL_OK) break;
    }
    wal->replaying = false;
    return status;
}

/* ---- removal, close, accessors ------------------------------------------------------- */

bal_wal_status bal_wal_remove_before(bal_wal *wal, uint64_t lsn, uint32_t *removed_count_out) {
    assert(wal != NULL);
    assert(!wal->replaying);
    uint32_t removed = 0;
    if (removed_count_out != NULL) *removed_count_out = 0;
    if (wal->failed) return wal_failed_status(wal);
    bal_wal_status status = BAL_WAL_OK;
    /* Segment k holds [first[k], first[k+1]); it goes when first[k+1] <= lsn. The active
     * segment has no successor and stays. Oldest first, with a directory fsync after each,
     * so that a crash midway leaves a contiguous log (never a gap). */
    while (removed + 1 < wal->segment_count && wal->segment_first_lsn[removed + 1] <= lsn) {
        char name[BAL_WAL_IO_NAME_BYTES];
        wal_segment_name(wal->segment_first_lsn[removed], name);
        int error = unlinkat(wal->dir_fd, name, 0) != 0 ? errno : 0;
        if (error == 0) error = bal_wal_io_fsync_dir(wal->dir_fd);
        if (error != 0) {
            status = wal_error(wal, BAL_WAL_IO, "wal %s: removing segment %s: %s", wal->dir_path, name,
                               strerror(error));
            break;
        }
        removed++;
    }
    if (removed > 0) {
        memmove(wal->segment_first_lsn, wal->segment_first_lsn + removed,
                (wal->segment_count - removed) * sizeof wal->segment_first_lsn[0]);
        wal->segment_count -= removed;
        BAL_WAL_STAT_SET(wal, segment_count, wal->segment_count);
    }
    assert(wal->segment_count >= 1);
    if (removed_count_out != NULL) *removed_count_out = removed;
    return status;
}

bal_wal_status bal_wal_close(bal_wal *wal, char *errstr, size_t errstr_size) {
    assert(wal != NULL);
    assert(!wal->replaying);
    /* A clean close leaves the segment written, synced and at its exact size (one sync),
     * so the next open finds no tail. */
    bal_wal_status status = wal->failed ? BAL_WAL_FAILED : wal_flush(wal);
    if (status == BAL_WAL_OK && wal->segment_fd >= 0) status = wal_finish_segment(wal);
    if (status != BAL_WAL_OK) wal_copy_message(wal->error, errstr, errstr_size);
    else wal_copy_message("", errstr, errstr_size);
    wal_destroy(wal);
    return status;
}

uint64_t bal_wal_next_lsn(const bal_wal *wal) {
    assert(wal != NULL);
    return wal->next_lsn;
}

uint64_t bal_wal_synced_lsn(const bal_wal *wal) {
    assert(wal != NULL);
    assert(wal->synced_lsn < wal->next_lsn);
    return wal->synced_lsn;
}

uint64_t bal_wal_first_lsn(const bal_wal *wal) {
    assert(wal != NULL && wal->segment_count > 0);
    return wal->segment_first_lsn[0];
}

void bal_wal_stats_read(const bal_wal *wal, bal_wal_stats *stats_out) {
    assert(wal != NULL && stats_out != NULL);
    const uint64_t *source = (const uint64_t *)&wal->stats;
    uint64_t *target = (uint64_t *)stats_out;
    for (size_t i = 0; i < sizeof(bal_wal_stats) / sizeof(uint64_t); i++) {
        target[i] = __atomic_load_n(&source[i], __ATOMIC_RELAXED);
    }
}

const char *bal_wal_errstr(const bal_wal *wal) {
    assert(wal != NULL);
    return wal->error;
}
