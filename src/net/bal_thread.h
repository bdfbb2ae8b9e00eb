/*
 * bal_thread.h -- names for the process's threads, as top and ps -L show them.
 *
 * For top -H, ps -L, perf and /proc/PID/task/TID/comm. Here, in the lowest module that
 * starts threads, so that the HTTP loops and the runtime's threads are named by one rule.
 * The main thread keeps the program's name, which is the process's name; it runs HTTP
 * loop 0.
 */
#ifndef BAL_THREAD_H
#define BAL_THREAD_H

#include <stdint.h>

/* Names the calling thread prefix-index (index >= 0; kept to 3 digits) or prefix alone
 * (index < 0), cut to the kernel's 15 bytes. A name is a convenience: failure is ignored. */
void bal_thread_name(const char *prefix, int64_t index);

#endif
