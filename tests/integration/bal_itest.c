/*
 * bal_itest.c -- the shared helpers of the integration tests (see bal_itest.h).
 */
#include "bal_itest.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void (*bal_itest_cleanup)(void);

void bal_itest_set_cleanup(void (*cleanup)(void)) {
    bal_itest_cleanup = cleanup;
}

void bal_itest_fail(const char *file, int line, const char *condition, const char *format, ...) {
    va_list arguments;
    fprintf(stderr, "%s:%d: REQUIRE failed: %s: ", file, line, condition);
    va_start(arguments, format);
    vfprintf(stderr, format, arguments);
    va_end(arguments);
    fputc('\n', stderr);
    /* The hook may itself fail a REQUIRE; clearing it first keeps that from looping. */
    void (*cleanup)(void) = bal_itest_cleanup;
    bal_itest_cleanup = NULL;
    if (cleanup != NULL) {
        cleanup();
    }
    fflush(NULL);
    exit(1);
}

const char *bal_itest_env(const char *name, const char *fallback) {
    const char *value = getenv(name);
    return (value != NULL && value[0] != '\0') ? value : fallback;
}

unsigned bal_itest_env_port(const char *name, unsigned fallback) {
    const char *text = getenv(name);
    if (text == NULL || text[0] == '\0') {
        return fallback;
    }
    char *end = NULL;
    errno = 0;
    unsigned long port = strtoul(text, &end, 10);
    REQUIRE(errno == 0 && end != text && *end == '\0' && port > 0 && port <= 65535,
            "%s=%s is not a port number", name, text);
    return (unsigned)port;
}

void bal_itest_run_suffix(char *buffer, size_t size) {
    int written = snprintf(buffer, size, "%ld_%ld", (long)getpid(), (long)time(NULL));
    REQUIRE(written > 0 && (size_t)written < size, "run suffix buffer of %zu bytes too small",
            size);
}

uint64_t bal_itest_now_ns(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
}

char *bal_itest_read_file(const char *path, size_t *length_out) {
    FILE *file = fopen(path, "rb");
    if (file == NULL) {
        return NULL;
    }
    char *buffer = NULL;
    size_t length = 0;
    if (fseek(file, 0, SEEK_END) == 0) {
        long end = ftell(file);
        if (end >= 0 && fseek(file, 0, SEEK_SET) == 0) {
            buffer = malloc((size_t)end + 1);
            if (buffer != NULL) {
                length = fread(buffer, 1, (size_t)end, file);
                buffer[length] = '\0';
                if (length != (size_t)end) {
                    free(buffer);
                    buffer = NULL;
                }
            }
        }
    }
    fclose(file);
    if (buffer != NULL && length_out != NULL) {
        *length_out = length;
    }
    return buffer;
}
