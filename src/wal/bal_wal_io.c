/*
 * bal_wal_io.c -- complete reads and writes, directory fsync and LSN file names.
 *
 * pwrite/pread at explicit offsets keep no hidden file position, so a failed or short
 * transfer leaves nothing to resynchronise. EINTR is retried (nothing was transferred);
 * any other error is returned to the caller, who decides whether it is fatal.
 */
#include "bal_wal_io.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Directory paths, including the parent computed when creating one. */
#define BAL_WAL_IO_PATH_BYTES_MAX PATH_MAX

int bal_wal_io_write_all(int fd, const void *data, size_t length, uint64_t offset) {
    assert(fd >= 0);
    assert(data != NULL || length == 0);
    const uint8_t *bytes = data;
    size_t done = 0;
    while (done < length) {
        ssize_t written = pwrite(fd, bytes + done, length - done, (off_t)(offset + done));
        if (written < 0) {
            if (errno == EINTR) continue;
            return errno;
        }
        if (written == 0) return ENOSPC;
        done += (size_t)written;
    }
    assert(done == length);
    return 0;
}

int bal_wal_io_read_full(int fd, void *data, size_t length, uint64_t offset, size_t *read_out) {
    assert(fd >= 0);
    assert(read_out != NULL && (data != NULL || length == 0));
    uint8_t *bytes = data;
    size_t done = 0;
    *read_out = 0;
    while (done < length) {
        ssize_t got = pread(fd, bytes + done, length - done, (off_t)(offset + done));
        if (got < 0) {
            if (errno == EINTR) continue;
            return errno;
        }
        if (got == 0) break;
        done += (size_t)got;
    }
    *read_out = done;
    return 0;
}

int bal_wal_io_fsync_dir(int dir_fd) {
    assert(dir_fd >= 0);
    if (fsync(dir_fd) != 0) return errno;
    return 0;
}

/* Creates `path` and makes its entry durable by fsyncing the parent directory. */
static int bal_wal_io_create_dir(const char *path) {
    assert(path != NULL && path[0] != '\0');
    if (mkdir(path, 0755) != 0 && errno != EEXIST) return errno;
    char parent[BAL_WAL_IO_PATH_BYTES_MAX];
    size_t length = strlen(path);
    if (length >= sizeof parent) return ENAMETOOLONG;
    memcpy(parent, path, length + 1);
    while (length > 1 && parent[length - 1] == '/') parent[--length] = '\0'; /* "a/b/" */
    char *slash = strrchr(parent, '/');
    if (slash == NULL) {
        memcpy(parent, ".", 2);
    } else if (slash == parent) {
        parent[1] = '\0'; /* "/a" -> "/" */
    } else {
        *slash = '\0';
    }
    int parent_fd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (parent_fd < 0) return errno;
    int error = bal_wal_io_fsync_dir(parent_fd);
    close(parent_fd);
    return error;
}

int bal_wal_io_open_dir(const char *path, bool create, int *fd_out) {
    assert(path != NULL);
    assert(fd_out != NULL);
    *fd_out = -1;
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT && create) {
        int error = bal_wal_io_create_dir(path);
        if (error != 0) return error;
        fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    }
    if (fd < 0) return errno;
    *fd_out = fd;
    return 0;
}

void bal_wal_io_format_name(char *buffer, size_t size, uint64_t lsn, const char *suffix) {
    assert(buffer != NULL && suffix != NULL);
    assert(size >= BAL_WAL_IO_NAME_BYTES && strlen(suffix) + BAL_WAL_IO_NAME_DIGITS < size);
    snprintf(buffer, size, "%020" PRIu64 "%s", lsn, suffix);
}

bool bal_wal_io_parse_name(const char *name, const char *suffix, uint64_t *lsn_out) {
    assert(name != NULL && suffix != NULL);
    assert(lsn_out != NULL);
    if (strlen(name) != BAL_WAL_IO_NAME_DIGITS + strlen(suffix)) return false;
    if (strcmp(name + BAL_WAL_IO_NAME_DIGITS, suffix) != 0) return false;
    uint64_t value = 0;
    for (int i = 0; i < BAL_WAL_IO_NAME_DIGITS; i++) {
        if (name[i] < '0' || name[i] > '9') return false;
        uint64_t digit = (uint64_t)(name[i] - '0');
        if (value > (UINT64_MAX - digit) / 10) return false;
        value = value * 10 + digit;
    }
    *lsn_out = value;
    return true;
}

uint64_t bal_wal_io_now_ns(void) {
    struct timespec now;
    int rc = clock_gettime(CLOCK_MONOTONIC, &now);
    assert(rc == 0);
    (void)rc;
    return (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
}
