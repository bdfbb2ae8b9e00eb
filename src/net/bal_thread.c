/*
 * bal_thread.c -- see bal_thread.h.
 */
#include "bal_thread.h"

#include <pthread.h>
#include <stdio.h>

void bal_thread_name(const char *prefix, int64_t index) {
    char name[16]; /* the kernel keeps 15 bytes */
    if (index >= 0) {
        snprintf(name, sizeof name, "%.9s-%u", prefix, (unsigned)(index % 1000));
    } else {
        snprintf(name, sizeof name, "%.15s", prefix);
    }
    (void)pthread_setname_np(pthread_self(), name);
}
