/*
 * bal_wait.h -- timed waits on condition variables, for the runtime's threads.
 *
 * Every condition variable that is waited on with a timeout uses the monotonic clock, so a
 * change of the wall clock can neither cut a wait short nor stretch it. Header only.
 */
#ifndef BAL_WAIT_H
#define BAL_WAIT_H

#include <pthread.h>
#include <stdint.h>
#include <time.h>

/* Initialises a condition variable whose timed waits use CLOCK_MONOTONIC. */
static inline void bal_wait_cond_init(pthread_cond_t *cond) {
    pthread_condattr_t attributes;
    pthread_condattr_init(&attributes);
    pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC);
    pthread_cond_init(cond, &attributes);
    pthread_condattr_destroy(&attributes);
}

/* The monotonic time timeout_ms from now, for pthread_cond_timedwait on such a variable. */
static inline struct timespec bal_wait_deadline(uint32_t timeout_ms) {
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    return deadline;
}

#endif
