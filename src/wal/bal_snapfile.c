/*
 * bal_snapfile.c -- atomic snapshot files: write via temporary + fsync + rename, prune to
 * the newest K, load the newest valid one with fallback.
 *
 * Every call opens the directory afresh and keeps nothing between calls: snapshots are
 * rare (seconds to minutes apart), so clarity wins over saving a few system calls. The
 * listing array and the loaded payload are the only allocations.
 */
#include "bal_snapfile.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bal_crc32c.h"
#include "bal_wal_io.h"

#define BAL_SNAPFILE_SUFFIX ".snap"
#define BAL_SNAPFILE_TEMPORARY_SUFFIX ".snap.tmp"
#define BAL_SNAPFILE_CORRUPT_SUFFIX ".snap.corrupt"
#define BAL_SNAPFILE_MAGIC_BYTES 8u
/* Directory entries looked at in one listing. */
#define BAL_SNAPFILE_DIR_ENTRIES_MAX (16u * BAL_SNAPFILE_FILES_MAX)

/* Field offsets of the header (see bal_snapfile.h). */
enum {
    BAL_SNAPFILE_VERSION_AT = 8,
    BAL_SNAPFILE_SIZE_AT = 12,
    BAL_SNAPFILE_LSN_AT = 16,
    BAL_SNAPFILE_LENGTH_AT = 24,
    BAL_SNAPFILE_PAYLOAD_CRC_AT = 32,
    BAL_SNAPFILE_HEADER_CRC_AT = 36,  /* covers the bytes before it */
};
_Static_assert(BAL_SNAPFILE_HEADER_CRC_AT + 4 == BAL_SNAPFILE_HEADER_BYTES, "the header CRC ends the header");

static const uint8_t bal_snapfile_magic[BAL_SNAPFILE_MAGIC_BYTES] = {'b', 'a', 'l', '-', 's', 'n', 'p', '\n'};

_Static_assert(BAL_SNAPFILE_NAME_BYTES >= BAL_WAL_IO_NAME_BYTES, "names fit");
_Static_assert(BAL_SNAPFILE_KEEP_MAX < BAL_SNAPFILE_FILES_MAX, "kept snapshots fit a listing");

const char *bal_snapfile_status_name(bal_snapfile_status status) {
    switch (status) {
    case BAL_SNAPFILE_OK: return "ok";
    case BAL_SNAPFILE_NONE: return "none";
    case BAL_SNAPFILE_INVALID_ARGUMENT: return "invalid_argument";
    case BAL_SNAPFILE_NO_MEMORY: return "no_memory";
    case BAL_SNAPFILE_IO: return "io";
    case BAL_SNAPFILE_CORRUPT: return "corrupt";
    case BAL_SNAPFILE_TOO_MANY_FILES: return "too_many_files";
    }
    return "unknown";
}

/* Where a call reports its error: the caller's buffer (may be NULL when size is 0). */
typedef struct bal_snapfile_errstr {
    char *text;
    size_t size;
} bal_snapfile_errstr;

__attribute__((format(printf, 3, 4)))
static bal_snapfile_status snapfile_error(bal_snapfile_errstr *errstr, bal_snapfile_status status,
                                          const char *format, ...) {
    assert(errstr != NULL);
    assert(status != BAL_SNAPFILE_OK);
    if (errstr->text != NULL && errstr->size > 0) {
        va_list arguments;
        va_start(arguments, format);
        vsnprintf(errstr->text, errstr->size, format, arguments);
        va_end(arguments);
    }
    return status;
}

static void snapfile_name(uint64_t lsn, const char *suffix, char name[BAL_WAL_IO_NAME_BYTES]) {
    bal_wal_io_format_name(name, BAL_WAL_IO_NAME_BYTES, lsn, suffix);
}

static int snapfile_lsn_compare(const void *left, const void *right) {
    uint64_t a = *(const uint64_t *)left;
    uint64_t b = *(const uint64_t *)right;
    return (a > b) - (a < b);
}

/* Lists the snapshot LSNs of the directory, ascending, into lsns (capacity
 * BAL_SNAPFILE_FILES_MAX). With remove_temporary, deletes leftover temporary files. */
static bal_snapfile_status snapfile_list(int dir_fd, const char *dir, bool remove_temporary, uint64_t *lsns,
                                         uint32_t *count_out, uint32_t *removed_out, bal_snapfile_errstr *errstr) {
    assert(lsns != NULL && count_out != NULL && removed_out != NULL);
    *count_out = *removed_out = 0;
    int fd = fcntl(dir_fd, F_DUPFD_CLOEXEC, 0);
    DIR *listing = fd < 0 ? NULL : fdopendir(fd);
    if (listing == NULL) {
        int error = errno;
        if (fd >= 0) close(fd);
        return snapfile_error(errstr, BAL_SNAPFILE_IO, "snapshots %s: listing: %s", dir, strerror(error));
    }
    rewinddir(listing);
    bal_snapfile_status status = BAL_SNAPFILE_OK;
    for (uint32_t entry_count = 0; status == BAL_SNAPFILE_OK; entry_count++) {
        errno = 0;
        struct dirent *entry = entry_count < BAL_SNAPFILE_DIR_ENTRIES_MAX ? readdir(listing) : NULL;
        if (entry == NULL) {
            if (errno != 0) {
                status = snapfile_error(errstr, BAL_SNAPFILE_IO, "snapshots %s: listing: %s", dir, strerror(errno));
            }
            if (entry_count == BAL_SNAPFILE_DIR_ENTRIES_MAX) {
                status = snapfile_error(errstr, BAL_SNAPFILE_TOO_MANY_FILES, "snapshots %s: more than %u entries", dir,
                                        BAL_SNAPFILE_DIR_ENTRIES_MAX);
            }
            break;
        }
        uint64_t lsn = 0;
        if (remove_temporary && bal_wal_io_parse_name(entry->d_name, BAL_SNAPFILE_TEMPORARY_SUFFIX, &lsn)) {
            if (unlinkat(dir_fd, entry->d_name, 0) == 0) (*removed_out)++;
            continue;
        }
        if (!bal_wal_io_parse_name(entry->d_name, BAL_SNAPFILE_SUFFIX, &lsn)) continue;
        if (*count_out == BAL_SNAPFILE_FILES_MAX) {
            status = snapfile_error(errstr, BAL_SNAPFILE_TOO_MANY_FILES, "snapshots %s: more than %u snapshot files",
                                    dir, BAL_SNAPFILE_FILES_MAX);
            break;
        }
        lsns[(*count_out)++] = lsn;
    }
    closedir(listing);
    qsort(lsns, *count_out, sizeof lsns[0], snapfile_lsn_compare);
    return status;
}

static void snapfile_header_encode(uint8_t header[BAL_SNAPFILE_HEADER_BYTES], uint64_t lsn, const void *bytes,
                                   size_t length) {
    assert(header != NULL);
    assert(bytes != NULL || length == 0);
    memcpy(header, bal_snapfile_magic, BAL_SNAPFILE_MAGIC_BYTES);
    bal_wal_io_store_u32(header + BAL_SNAPFILE_VERSION_AT, BAL_SNAPFILE_FORMAT_VERSION);
    bal_wal_io_store_u32(header + BAL_SNAPFILE_SIZE_AT, BAL_SNAPFILE_HEADER_BYTES);
    bal_wal_io_store_u64(header + BAL_SNAPFILE_LSN_AT, lsn);
    bal_wal_io_store_u64(header + BAL_SNAPFILE_LENGTH_AT, (uint64_t)length);
    bal_wal_io_store_u32(header + BAL_SNAPFILE_PAYLOAD_CRC_AT, bal_crc32c(0, bytes, length));
    bal_wal_io_store_u32(header + BAL_SNAPFILE_HEADER_CRC_AT, bal_crc32c(0, header, BAL_SNAPFILE_HEADER_CRC_AT));
}

/* Writes the temporary file and renames it into place; the directory is synced after. */
static bal_snapfile_status snapfile_store(int dir_fd, const char *dir, uint64_t lsn, const void *bytes,
                                          size_t length, bal_snapfile_errstr *errstr) {
    char name[BAL_WAL_IO_NAME_BYTES];
    char temporary[BAL_WAL_IO_NAME_BYTES];
    snapfile_name(lsn, BAL_SNAPFILE_SUFFIX, name);
    snapfile_name(lsn, BAL_SNAPFILE_TEMPORARY_SUFFIX, temporary);
    int fd = openat(dir_fd, temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        return snapfile_error(errstr, BAL_SNAPFILE_IO, "snapshots %s: creating %s: %s", dir, temporary,
                              strerror(errno));
    }
    uint8_t header[BAL_SNAPFILE_HEADER_BYTES];
    snapfile_header_encode(header, lsn, bytes, length);
    const char *step = "writing";
    int error = bal_wal_io_write_all(fd, header, sizeof header, 0);
    if (error == 0) error = bal_wal_io_write_all(fd, bytes, length, BAL_SNAPFILE_HEADER_BYTES);
    if (error == 0 && fdatasync(fd) != 0) {
        error = errno;
        step = "fdatasync of";
    }
    if (close(fd) != 0 && error == 0) {
        error = errno;
        step = "closing";
    }
    if (error == 0 && renameat(dir_fd, temporary, dir_fd, name) != 0) {
        error = errno;
        step = "renaming";
    }
    if (error == 0 && (error = bal_wal_io_fsync_dir(dir_fd)) != 0) step = "fsync of the directory after renaming";
    if (error != 0) {
        unlinkat(dir_fd, temporary, 0); /* best effort; a leftover is removed at load */
        return snapfile_error(errstr, BAL_SNAPFILE_IO, "snapshots %s: %s %s: %s", dir, step, temporary,
                              strerror(error));
    }
    return BAL_SNAPFILE_OK;
}

/* Deletes all but the newest keep_count snapshots. */
static bal_snapfile_status snapfile_prune(int dir_fd, const char *dir, uint32_t keep_count,
                                          bal_snapfile_errstr *errstr) {
    assert(keep_count >= 1 && keep_count <= BAL_SNAPFILE_KEEP_MAX);
    uint64_t *lsns = malloc(BAL_SNAPFILE_FILES_MAX * sizeof *lsns);
    if (lsns == NULL) return snapfile_error(errstr, BAL_SNAPFILE_NO_MEMORY, "snapshots %s: out of memory", dir);
    uint32_t count = 0;
    uint32_t removed_temporary = 0;
    bal_snapfile_status status = snapfile_list(dir_fd, dir, false, lsns, &count, &removed_temporary, errstr);
    uint32_t removed = 0;
    for (uint32_t index = 0; status == BAL_SNAPFILE_OK && index + keep_count < count; index++) {
        char name[BAL_WAL_IO_NAME_BYTES];
        snapfile_name(lsns[index], BAL_SNAPFILE_SUFFIX, name);
        if (unlinkat(dir_fd, name, 0) != 0) {
            status = snapfile_error(errstr, BAL_SNAPFILE_IO, "snapshots %s: removing %s: %s", dir, name,
                                    strerror(errno));
        } else {
            removed++;
        }
    }
    free(lsns);
    int error = removed > 0 ? bal_wal_io_fsync_dir(dir_fd) : 0;
    if (status == BAL_SNAPFILE_OK && error != 0) {
        status = snapfile_error(errstr, BAL_SNAPFILE_IO, "snapshots %s: fsync: %s", dir, strerror(error));
    }
    return status;
}

static bal_snapfile_status snapfile_open_dir(const char *dir, bool create, int *dir_fd_out,
                                             bal_snapfile_errstr *errstr) {
    assert(dir != NULL && dir_fd_out != NULL);
    size_t dir_length = strlen(dir);
    if (dir_length == 0 || dir_length >= BAL_SNAPFILE_DIR_PATH_BYTES_MAX) {
        return snapfile_error(errstr, BAL_SNAPFILE_INVALID_ARGUMENT,
                              "snapshots: the directory path must have 1 to %u bytes",
                              BAL_SNAPFILE_DIR_PATH_BYTES_MAX - 1);
    }
    int error = bal_wal_io_open_dir(dir, create, dir_fd_out);
    if (error == ENOENT && !create) return BAL_SNAPFILE_NONE;
    if (error != 0) {
        return snapfile_error(errstr, BAL_SNAPFILE_IO, "snapshots %s: opening the directory: %s", dir, strerror(error));
    }
    return BAL_SNAPFILE_OK;
}

bal_snapfile_status bal_snapfile_write(const char *dir, uint64_t lsn, const void *bytes, size_t length,
                                       uint32_t keep_count, char *errstr, size_t errstr_size) {
    assert(dir != NULL);
    assert(bytes != NULL || length == 0);
    bal_snapfile_errstr error_out = {.text = errstr, .size = errstr_size};
    if (errstr != NULL && errstr_size > 0) errstr[0] = '\0';
    if (keep_count == 0) keep_count = BAL_SNAPFILE_KEEP_DEFAULT;
    if (keep_count > BAL_SNAPFILE_KEEP_MAX || (uint64_t)length > BAL_SNAPFILE_PAYLOAD_BYTES_MAX) {
        return snapfile_error(&error_out, BAL_SNAPFILE_INVALID_ARGUMENT,
                              "snapshots %s: keep_count must be 1..%u and the payload at most %llu bytes", dir,
                              BAL_SNAPFILE_KEEP_MAX, BAL_SNAPFILE_PAYLOAD_BYTES_MAX);
    }
    int dir_fd = -1;
    bal_snapfile_status status = snapfile_open_dir(dir, true, &dir_fd, &error_out);
    if (status != BAL_SNAPFILE_OK) return status;
    status = snapfile_store(dir_fd, dir, lsn, bytes, length, &error_out);
    if (status == BAL_SNAPFILE_OK) status = snapfile_prune(dir_fd, dir, keep_count, &error_out);
    close(dir_fd);
    return status;
}

/* ---- loading ------------------------------------------------------------------------- */

/* Checks a header against the file it came from; false with a reason if it is bad. */
static bool snapfile_header_valid(const uint8_t *header, uint64_t file_size, uint64_t name_lsn,
                                  uint64_t *payload_length_out, char *reason, size_t reason_size) {
    assert(header != NULL && file_size >= BAL_SNAPFILE_HEADER_BYTES);
    assert(payload_length_out != NULL && reason != NULL);
    uint64_t payload_length = bal_wal_io_load_u64(header + BAL_SNAPFILE_LENGTH_AT);
    uint64_t payload_present = file_size - BAL_SNAPFILE_HEADER_BYTES;
    const char *problem = NULL;
    if (memcmp(header, bal_snapfile_magic, BAL_SNAPFILE_MAGIC_BYTES) != 0) {
        problem = "bad magic: not a snapshot file";
    } else if (bal_wal_io_load_u32(header + BAL_SNAPFILE_VERSION_AT) != BAL_SNAPFILE_FORMAT_VERSION) {
        problem = "unsupported format version";
    } else if (bal_wal_io_load_u32(header + BAL_SNAPFILE_HEADER_CRC_AT) !=
               bal_crc32c(0, header, BAL_SNAPFILE_HEADER_CRC_AT)) {
        problem = "header checksum mismatch";
    } else if (bal_wal_io_load_u32(header + BAL_SNAPFILE_SIZE_AT) != BAL_SNAPFILE_HEADER_BYTES) {
        problem = "unexpected header size";
    } else if (bal_wal_io_load_u64(header + BAL_SNAPFILE_LSN_AT) != name_lsn) {
        problem = "the lsn in the header differs from the file name";
    } else if (payload_length > BAL_SNAPFILE_PAYLOAD_BYTES_MAX || payload_length > SIZE_MAX) {
        problem = "payload length over the maximum";
    }
    if (problem != NULL) {
        snprintf(reason, reason_size, "%s", problem);
        return false;
    }
    if (payload_present != payload_length) {
        snprintf(reason, reason_size, "%s: %" PRIu64 " payload bytes present, %" PRIu64 " expected",
                 payload_present < payload_length ? "truncated" : "trailing bytes", payload_present, payload_length);
        return false;
    }
    *payload_length_out = payload_length;
    return true;
}

/* Reads and checks one snapshot. BAL_SNAPFILE_CORRUPT with `reason` set if it is invalid;
 * BAL_SNAPFILE_IO or BAL_SNAPFILE_NO_MEMORY (errstr set) if it could not be judged. */
static bal_snapfile_status snapfile_read(int fd, const char *dir, const char *name, uint64_t lsn, void **bytes_out,
                                         size_t *length_out, char *reason, size_t reason_size,
                                         bal_snapfile_errstr *errstr) {
    assert(fd >= 0 && bytes_out != NULL && length_out != NULL);
    struct stat file_stat;
    if (fstat(fd, &file_stat) != 0) {
        return snapfile_error(errstr, BAL_SNAPFILE_IO, "snapshots %s: fstat %s: %s", dir, name, strerror(errno));
    }
    uint64_t file_size = (uint64_t)file_stat.st_size;
    uint8_t header[BAL_SNAPFILE_HEADER_BYTES];
    size_t got = 0;
    int error = file_size < sizeof header ? 0 : bal_wal_io_read_full(fd, header, sizeof header, 0, &got);
    if (error != 0) {
        return snapfile_error(errstr, BAL_SNAPFILE_IO, "snapshots %s: reading %s: %s", dir, name, strerror(error));
    }
    if (file_size < sizeof header || got != sizeof header) {
        snprintf(reason, reason_size, "truncated: %" PRIu64 " bytes, shorter than the header", file_size);
        return BAL_SNAPFILE_CORRUPT;
    }
    uint64_t length = 0;
    if (!snapfile_header_valid(header, file_size, lsn, &length, reason, reason_size)) return BAL_SNAPFILE_CORRUPT;
    void *bytes = malloc(length > 0 ? (size_t)length : 1);
    if (bytes == NULL) {
        return snapfile_error(errstr, BAL_SNAPFILE_NO_MEMORY, "snapshots %s: no memory for %s", dir, name);
    }
    error = bal_wal_io_read_full(fd, bytes, (size_t)length, BAL_SNAPFILE_HEADER_BYTES, &got);
    if (error == 0 && got != length) error = EIO; /* shorter than fstat said */
    if (error != 0) {
        free(bytes);
        return snapfile_error(errstr, BAL_SNAPFILE_IO, "snapshots %s: reading %s: %s", dir, name, strerror(error));
    }
    if (bal_crc32c(0, bytes, (size_t)length) != bal_wal_io_load_u32(header + BAL_SNAPFILE_PAYLOAD_CRC_AT)) {
        free(bytes);
        snprintf(reason, reason_size, "payload checksum mismatch");
        return BAL_SNAPFILE_CORRUPT;
    }
    *bytes_out = bytes;
    *length_out = (size_t)length;
    return BAL_SNAPFILE_OK;
}

/* Records a rejected snapshot and moves it aside so that it no longer counts as one. */
static void snapfile_reject(int dir_fd, const char *name, uint64_t lsn, const char *reason,
                            bal_snapfile_load_report *report) {
    assert(name != NULL && reason != NULL);
    char corrupt[BAL_WAL_IO_NAME_BYTES];
    snapfile_name(lsn, BAL_SNAPFILE_CORRUPT_SUFFIX, corrupt);
    bool moved = renameat(dir_fd, name, dir_fd, corrupt) == 0 && bal_wal_io_fsync_dir(dir_fd) == 0;
    int error = errno;
    if (report->rejected_count < BAL_SNAPFILE_REJECTED_MAX) {
        bal_snapfile_rejected *entry = &report->rejected[report->rejected_count];
        snprintf(entry->name, sizeof entry->name, "%s", name);
        entry->lsn = lsn;
        if (moved) snprintf(entry->reason, sizeof entry->reason, "%s; moved to %s", reason, corrupt);
        else snprintf(entry->reason, sizeof entry->reason, "%s; could not move it aside: %s", reason, strerror(error));
    }
    report->rejected_count++;
}

/* Tries the snapshots from the newest down; lsns[] ascending. */
static bal_snapfile_status snapfile_load_newest(int dir_fd, const char *dir, const uint64_t *lsns, uint32_t count,
                                                uint64_t *lsn_out, void **bytes_out, size_t *length_out,
                                                bal_snapfile_load_report *report, bal_snapfile_errstr *errstr) {
    assert(count > 0 && lsns != NULL);
    char first_reason[BAL_SNAPFILE_NAME_BYTES + 2 + BAL_SNAPFILE_REASON_BYTES] = ""; /* "name: reason" */
    for (uint32_t index = count; index-- > 0;) {
        char name[BAL_WAL_IO_NAME_BYTES];
        char reason[BAL_SNAPFILE_REASON_BYTES] = "";
        snapfile_name(lsns[index], BAL_SNAPFILE_SUFFIX, name);
        int fd = openat(dir_fd, name, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            return snapfile_error(errstr, BAL_SNAPFILE_IO, "snapshots %s: opening %s: %s", dir, name, strerror(errno));
        }
        bal_snapfile_status status = snapfile_read(fd, dir, name, lsns[index], bytes_out, length_out, reason,
                                                   sizeof reason, errstr);
        close(fd);
        if (status == BAL_SNAPFILE_OK) {
            *lsn_out = lsns[index];
            return BAL_SNAPFILE_OK;
        }
        if (status != BAL_SNAPFILE_CORRUPT) return status;
        if (first_reason[0] == '\0') snprintf(first_reason, sizeof first_reason, "%s: %s", name, reason);
        snapfile_reject(dir_fd, name, lsns[index], reason, report);
    }
    return snapfile_error(errstr, BAL_SNAPFILE_CORRUPT,
                          "snapshots %s: %" PRIu32 " snapshot files and none is valid (newest: %s); refusing to start "
                          "from an empty state",
                          dir, count, first_reason);
}

bal_snapfile_status bal_snapfile_load_latest(const char *dir, uint64_t *lsn_out, void **bytes_out,
                                             size_t *length_out, bal_snapfile_load_report *report_out,
                                             char *errstr, size_t errstr_size) {
    assert(dir != NULL && lsn_out != NULL);
    assert(bytes_out != NULL && length_out != NULL);
    bal_snapfile_errstr error_out = {.text = errstr, .size = errstr_size};
    if (errstr != NULL && errstr_size > 0) errstr[0] = '\0';
    bal_snapfile_load_report local_report;
    bal_snapfile_load_report *report = report_out != NULL ? report_out : &local_report;
    memset(report, 0, sizeof *report);
    *lsn_out = 0;
    *bytes_out = NULL;
    *length_out = 0;
    int dir_fd = -1;
    bal_snapfile_status status = snapfile_open_dir(dir, false, &dir_fd, &error_out);
    if (status != BAL_SNAPFILE_OK) return status;
    uint64_t *lsns = malloc(BAL_SNAPFILE_FILES_MAX * sizeof *lsns);
    uint32_t count = 0;
    if (lsns == NULL) status = snapfile_error(&error_out, BAL_SNAPFILE_NO_MEMORY, "snapshots %s: out of memory", dir);
    if (status == BAL_SNAPFILE_OK) {
        status = snapfile_list(dir_fd, dir, true, lsns, &count, &report->temporary_files_removed, &error_out);
    }
    if (status == BAL_SNAPFILE_OK && report->temporary_files_removed > 0) bal_wal_io_fsync_dir(dir_fd);
    if (status == BAL_SNAPFILE_OK && count == 0) status = BAL_SNAPFILE_NONE;
    if (status == BAL_SNAPFILE_OK) {
        status = snapfile_load_newest(dir_fd, dir, lsns, count, lsn_out, bytes_out, length_out, report, &error_out);
    }
    free(lsns);
    close(dir_fd);
    assert(status != BAL_SNAPFILE_OK || *bytes_out != NULL);
    return status;
}

void bal_snapfile_free(void *bytes) {
    free(bytes);
}
