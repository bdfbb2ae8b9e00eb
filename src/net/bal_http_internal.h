/*
 * bal_http_internal.h -- the server's inner types, shared by its modules only.
 *
 * bal_http.c         the server object: configuration, sockets, threads, stop, stats.
 * bal_http_loop.c    one event loop per I/O thread: wake-ups, deferred answers, timers;
 *                    loop 0 also accepts and hands each connection to the least loaded loop.
 * bal_http_connection.c  one connection: read, parse, dispatch, order, write.
 *
 * Threads: a loop and its connections and requests belong to the loop's thread. Other
 * threads touch exactly four things: the server's atomics, a deferred request they own
 * (to format its response), the loop's completion stack plus eventfd (to hand the request
 * back), and the loop's incoming stack (loop 0 handing over a new connection). A request's
 * `connection` is only read by the loop, after the hand-back.
 */
#ifndef BAL_HTTP_INTERNAL_H
#define BAL_HTTP_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "bal_http.h"
#include "bal_http_buffer.h"

/* Bytes read from a socket per call, into the loop's shared scratch buffer. */
#define BAL_HTTP_READ_BYTES 65536u
/* Events taken per epoll_wait. */
#define BAL_HTTP_EVENTS_MAX 256u
/* Connections accepted per readiness of the listening socket, for fairness. */
#define BAL_HTTP_ACCEPTS_PER_WAKE_MAX 64u
/* After EMFILE/ENFILE the listening socket rests this long instead of spinning. */
#define BAL_HTTP_ACCEPT_PAUSE_MS 100u
/* Buffers bigger than this are freed when they empty, so idle connections stay small. */
#define BAL_HTTP_BUFFER_KEEP_BYTES (64u * 1024u)
/* Longest JSON error body the server formats itself. */
#define BAL_HTTP_ERROR_BODY_MAX 1024u
/* Response buffers bigger than this are freed when their request is recycled. */
#define BAL_HTTP_RESPONSE_KEEP_BYTES 4096u
/* The longest the loop sleeps without checking its timers and the stop flag. */
#define BAL_HTTP_WAIT_MS_MAX 1000u

/* epoll tags that are not connection pointers. */
#define BAL_HTTP_TAG_LISTENER 1u
#define BAL_HTTP_TAG_WAKE 2u

typedef struct bal_http_loop bal_http_loop;
typedef struct bal_http_connection bal_http_connection;

typedef enum bal_http_request_state {
    BAL_HTTP_REQUEST_FREE = 0,
    BAL_HTTP_REQUEST_DISPATCHED, /* inside the handler */
    BAL_HTTP_REQUEST_DEFERRED,   /* owned by the handler's side until it responds */
    BAL_HTTP_REQUEST_WRITTEN,    /* response already in the connection's output */
    BAL_HTTP_REQUEST_READY,      /* response in request->response, waiting for its turn */
} bal_http_request_state;

struct bal_http_request {
    bal_http_loop *loop;
    bal_http_connection *connection; /* NULL once the connection closed (orphaned) */
    bal_http_request *next;          /* free list, or the loop's completion stack */
    bal_http_request_state state;
    bool omit_body;   /* HEAD */
    bool keep_alive;  /* the connection may carry further requests after this one */
    bool http10;      /* an HTTP/1.0 client: keep-alive must be confirmed in the response */
    bool broken;      /* formatting the response ran out of memory: close the connection */
    bal_http_buffer response;
};

typedef enum bal_http_timer {
    BAL_HTTP_TIMER_NONE = 0,
    BAL_HTTP_TIMER_IDLE,    /* no request in progress: idle_timeout_ms */
    BAL_HTTP_TIMER_REQUEST, /* a request is arriving: request_timeout_ms from its first byte */
    BAL_HTTP_TIMER_WRITE,   /* output is blocked: write_timeout_ms from the last progress */
    BAL_HTTP_TIMER_LINGER,  /* closing, draining input: linger_timeout_ms */
    BAL_HTTP_TIMER_COUNT,
} bal_http_timer;

typedef struct bal_http_timer_list {
    bal_http_connection *first;
    bal_http_connection *last;
} bal_http_timer_list;

struct bal_http_connection {
    int fd;
    bal_http_loop *loop;
    uint32_t events;        /* the epoll interest currently registered */
    bool closed;            /* closed; freed after the current batch of events */
    bool accepting;         /* further requests are parsed (false after close/error/stop) */
    bool peer_closed;       /* read returned 0: no more input will come */
    bool lingering;         /* output shut down, discarding input until EOF or timeout */
    bool expect_continue;   /* the request being received asked for 100 Continue */
    bool continue_sent;     /* 100 Continue sent for the request being received */
    bool wrote_progress;    /* the last flush wrote something */
    bal_http_buffer in;     /* input not yet consumed, when it could not stay in the scratch */
    size_t in_budget;       /* bytes of in.capacity counted in the server's buffer budget */
    size_t scan_offset;     /* head scan progress of the request at in.data[0] */
    uint64_t needed_bytes;  /* head + body size of that request, once its head is parsed */
    uint64_t request_deadline_ms; /* when that request must be complete; 0 = not started */
    bal_http_buffer out;
    size_t out_sent;
    bal_http_timer timer;
    uint64_t deadline_ms;
    bal_http_connection *timer_previous;
    bal_http_connection *timer_next;
    bal_http_connection *all_previous; /* every open connection of the loop */
    bal_http_connection *all_next;
    bal_http_connection *flush_next;   /* connections to flush after a batch of answers */
    bal_http_connection *incoming_next; /* handed from the accepting loop to this one */
    bool in_flush_list;
    uint32_t ring_head;                /* first request in flight, in request order */
    uint32_t ring_count;
    bal_http_request *ring[];          /* pipeline_depth_max slots */
};

typedef struct bal_http_counters {
    _Atomic uint64_t connections_accepted;
    _Atomic uint64_t connections_refused;
    _Atomic uint64_t connections_closed;
    _Atomic uint64_t requests;
    _Atomic uint64_t requests_deferred;
    _Atomic uint64_t responses_dropped;
    _Atomic uint64_t errors_invalid;
    _Atomic uint64_t errors_too_large;
    _Atomic uint64_t errors_timeout;
    _Atomic uint64_t errors_busy;
    _Atomic uint64_t idle_closed;
} bal_http_counters;

/* Counters have one writer (their loop): a relaxed load and store, no locked add. */
#define BAL_HTTP_COUNT(loop, field)                                                         \
    atomic_store_explicit(&(loop)->counters.field,                                         \
                          atomic_load_explicit(&(loop)->counters.field, memory_order_relaxed) + 1, \
                          memory_order_relaxed)

struct bal_http_loop {
    bal_http_server *server;
    uint32_t index;
    pthread_t thread;        /* set by the loop itself when it starts running */
    pthread_t handle;        /* from pthread_create, for the join (loops 1..n-1) */
    bool thread_started;
    int epoll_fd;
    int listen_fd;  /* loop 0 only; -1 elsewhere and once closed */
    int wake_fd;    /* eventfd: deferred answers and stop */
    bool listening; /* the listening socket is registered for accepts */
    uint64_t accept_resume_ms; /* when an accept pause ends; 0 = not paused */
    bool stopping;
    uint64_t now_ms;
    char *scratch; /* BAL_HTTP_READ_BYTES */
    bal_http_head head;
    uint32_t connection_count;
    bal_http_connection *connections; /* the list of open connections */
    bal_http_connection *graveyard;   /* closed during this batch, freed after it */
    bal_http_connection *flush_list;
    bal_http_timer_list timers[BAL_HTTP_TIMER_COUNT];
    bal_http_request *free_requests;
    uint32_t deferred_count; /* deferred and not yet handed back */
    _Atomic(bal_http_request *) completed; /* answered deferred requests, any order */
    _Atomic(bal_http_connection *) incoming; /* accepted connections handed to this loop */
    _Atomic uint32_t open_count; /* connections owned (incoming included), for balancing */
    bal_http_counters counters;
};

struct bal_http_server {
    bal_http_config config;
    char host[64];
    bal_http_handler handler;
    void *context;
    uint16_t port;
    atomic_bool stop_requested;
    atomic_bool running;
    _Atomic uint32_t connection_count;
    _Atomic uint64_t buffer_bytes; /* connection input buffers, bounded by the budget */
    uint32_t loop_count;
    bal_http_loop *loops;
};

/* bal_http_loop.c */
bal_http_status bal_http_loop_init(bal_http_loop *loop, bal_http_server *server, uint32_t index,
                                   int listen_fd, char *errstr, size_t errstr_size);
void bal_http_loop_run(bal_http_loop *loop);
void bal_http_loop_wake(bal_http_loop *loop);
void bal_http_loop_free(bal_http_loop *loop);
bal_http_request *bal_http_loop_request_take(bal_http_loop *loop);
void bal_http_loop_request_give(bal_http_loop *loop, bal_http_request *request);
void bal_http_loop_timer_set(bal_http_loop *loop, bal_http_connection *connection,
                             bal_http_timer timer, uint64_t deadline_ms);
void bal_http_loop_flush_later(bal_http_loop *loop, bal_http_connection *connection);
uint64_t bal_http_now_ms(void);

/* bal_http_connection.c */
bal_http_connection *bal_http_connection_create(bal_http_loop *loop, int fd);
bool bal_http_connection_start(bal_http_connection *connection);
void bal_http_connection_on_event(bal_http_connection *connection, uint32_t events);
void bal_http_connection_on_answer(bal_http_connection *connection);
void bal_http_connection_progress(bal_http_connection *connection);
void bal_http_connection_on_timer(bal_http_connection *connection, bal_http_timer timer);
void bal_http_connection_stop(bal_http_connection *connection);
void bal_http_connection_close(bal_http_connection *connection);
void bal_http_connection_free(bal_http_connection *connection);

#endif
