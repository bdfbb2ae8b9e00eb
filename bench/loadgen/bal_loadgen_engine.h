/*
 * bal_loadgen_engine.h -- the load generator's engine: connections, pacing, measurement.
 *
 * Each thread owns a share of the connections and its own epoll loop. Two modes:
 *   closed loop: every connection keeps `pipeline` requests in flight; a response makes
 *                room for the next request. Throughput is what the server sustains.
 *   open loop:   requests are scheduled at a constant total rate, whether or not the server
 *                keeps up; latency is measured from each request's SCHEDULED send time, so
 *                a stalled server shows up as latency instead of being hidden by the
 *                generator waiting (no coordinated omission). Requests scheduled but never
 *                sent because every connection was full are reported as `unsent`.
 * Responses that complete during the warm-up are not measured; the run stops sending at
 * the end of the duration (or after the request count) and ignores what is still in flight.
 * With `pregenerate` (request-count mode only) every request is rendered -- and signed, if
 * the workload signs -- before the clock starts, so the run itself only sends and receives.
 */
#ifndef BAL_LOADGEN_ENGINE_H
#define BAL_LOADGEN_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bal_histogram.h"
#include "bal_loadgen_workload.h"

#define BAL_LOADGEN_CONNECTIONS_MAX 100000u
#define BAL_LOADGEN_THREADS_MAX 64u
#define BAL_LOADGEN_PIPELINE_MAX 4096u
/* Statuses are counted one by one from 100 to 599. */
#define BAL_LOADGEN_STATUS_MAX 600
/* A refused or failed connection is retried after this long. */
#define BAL_LOADGEN_RETRY_MS 100u
/* In request-count mode, what is still in flight after the last send gets this long. */
#define BAL_LOADGEN_DRAIN_MS 10000u

typedef struct bal_loadgen_options {
    char host[256]; /* name or address, resolved once */
    uint16_t port;
    uint32_t connections;
    uint32_t threads;
    uint32_t pipeline;     /* requests in flight per connection */
    double duration_s;     /* measured time; with `requests` set, the time limit */
    double warmup_s;
    uint64_t requests;     /* 0: run for the duration */
    bool pregenerate;      /* render all `requests` before the clock starts */
    double rate;           /* total requests per second; 0: closed loop */
    uint64_t seed;
    const bal_workload *workload;
} bal_loadgen_options;

typedef struct bal_loadgen_report {
    double seconds;       /* the measured window */
    uint64_t requests;    /* final responses received in the window */
    uint64_t operations;  /* operations carried by 2xx responses in the window */
    uint64_t status_counts[BAL_LOADGEN_STATUS_MAX];
    uint64_t errors_connect;
    uint64_t errors_io;        /* reset or failed reads and writes */
    uint64_t errors_protocol;  /* responses that are not valid HTTP/1.1 */
    uint64_t requests_lost;    /* in flight on a connection that closed */
    uint64_t requests_unsent;  /* open loop: scheduled but no connection had room */
    uint64_t reconnects;
    bal_histogram latency;     /* microseconds */
} bal_loadgen_report;

void bal_loadgen_options_init(bal_loadgen_options *options);
/* Runs the load; false with a reason in errstr if it could not start (bad address). */
bool bal_loadgen_run(const bal_loadgen_options *options, bal_loadgen_report *report, char *errstr,
                     size_t errstr_size);

#endif
