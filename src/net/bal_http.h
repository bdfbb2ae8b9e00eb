/*
 * bal_http.h -- the HTTP/1.1 server: keep-alive, pipelining, deferred replies.
 *
 * The server runs config.thread_count event loops (epoll, one thread each). Loop 0 accepts
 * and hands every new connection to the loop that owns the fewest, so even a handful of
 * long-lived client connections use every thread. A loop reads requests, parses their
 * heads with the pure parser (bal_http_parser.h), waits for the whole body, and calls the
 * handler on its own thread. The handler answers at once with bal_http_respond(), or calls
 * bal_http_request_defer() and answers later from any thread: the response then travels
 * back to the owning loop through a lock-free queue and an eventfd. Responses on one
 * connection always leave in request order, whatever order they were produced in, so a
 * pipelining client can have many requests in the same group commit.
 *
 * Ownership: the server owns every request token. The head and body handed to the handler
 * point into the connection's buffer and are valid only until the handler returns; a handler
 * that defers copies what it needs. A deferred request must be answered exactly once, from
 * any thread, before bal_http_server_destroy(); if its connection closed in the meantime the
 * answer is dropped safely. bal_http_server_run() returns only when every deferred request
 * has been answered.
 *
 * Everything is bounded (see bal_http_config): head and body size, connections, requests in
 * flight per connection (the socket is not read while the pipeline is full), buffered bytes
 * across the server, and the time a client may take to send a request, to stay idle, or to
 * read its responses. Protocol errors get a JSON error body and close the connection:
 * 400 invalid_http, 408 request_timeout, 411 length_required (chunked request bodies are
 * refused: clients send Content-Length), 413 body_too_large, 431 headers_too_large,
 * 501 not_implemented (other transfer codings), 503 server_busy / too_many_connections,
 * 505 http_version_not_supported. Expect: 100-continue is answered when no earlier response
 * is outstanding on the connection, and ignored otherwise (the client then sends the body
 * after its own short wait).
 */
#ifndef BAL_HTTP_H
#define BAL_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bal_http_parser.h"

/* Defaults of bal_http_config, each with the reason for its size. */
#define BAL_HTTP_THREAD_COUNT_DEFAULT 1u
/* Beyond this, a thread per core is long exceeded on any machine we target. */
#define BAL_HTTP_THREAD_COUNT_MAX 256u
/* Exchange back ends keep a few hundred connections; ten thousand leaves room. */
#define BAL_HTTP_CONNECTIONS_MAX_DEFAULT 10000u
#define BAL_HTTP_CONNECTIONS_MAX_LIMIT 1000000u
/* Requests in flight per connection: a 64-deep pipeline fills a group commit. */
#define BAL_HTTP_PIPELINE_DEPTH_DEFAULT 64u
#define BAL_HTTP_PIPELINE_DEPTH_MAX 4096u
/* A full batch of 8192 operations with memos fits in 32 MiB (SPEC: HTTP API). */
#define BAL_HTTP_BODY_BYTES_MAX_DEFAULT (32ull * 1024 * 1024)
#define BAL_HTTP_BODY_BYTES_MAX_LIMIT (1ull << 32)
/* Request line plus fields; signed requests carry about 400 bytes of headers. */
#define BAL_HTTP_HEAD_BYTES_MAX_DEFAULT (16u * 1024)
#define BAL_HTTP_HEAD_BYTES_MAX_LIMIT (1u << 20)
#define BAL_HTTP_IDLE_TIMEOUT_MS_DEFAULT 60000u
/* Time from the first byte of a request to its last; slower clients get 408. */
#define BAL_HTTP_REQUEST_TIMEOUT_MS_DEFAULT 10000u
/* Time a client may leave its responses unread before the connection is dropped. */
#define BAL_HTTP_WRITE_TIMEOUT_MS_DEFAULT 10000u
/* After an error response, unread input is drained this long so the client sees the
 * response instead of a reset. */
#define BAL_HTTP_LINGER_TIMEOUT_MS_DEFAULT 2000u
/* Input buffered across all connections (large bodies); beyond it new bodies get 503. */
#define BAL_HTTP_BUFFER_BYTES_TOTAL_MAX_DEFAULT (1ull << 30)
#define BAL_HTTP_LISTEN_BACKLOG_DEFAULT 1024u
#define BAL_HTTP_TIMEOUT_MS_MAX (24u * 3600u * 1000u)

typedef enum bal_http_status {
    BAL_HTTP_OK = 0,
    BAL_HTTP_ERROR_CONFIG,  /* a configuration value is out of range */
    BAL_HTTP_ERROR_ADDRESS, /* the host is not a numeric IPv4 or IPv6 address */
    BAL_HTTP_ERROR_SOCKET,  /* socket, bind or listen failed (errstr says which and why) */
    BAL_HTTP_ERROR_SYSTEM,  /* epoll, eventfd or a resource limit failed */
    BAL_HTTP_ERROR_MEMORY,
    BAL_HTTP_ERROR_THREAD, /* an I/O thread could not be started */
} bal_http_status;

typedef struct bal_http_config {
    const char *host; /* numeric address to bind; default "127.0.0.1" */
    uint16_t port;    /* 0 picks a free port: read it with bal_http_server_port() */
    uint32_t thread_count;
    uint32_t connections_max;    /* beyond: accepted, answered 503, closed */
    uint32_t pipeline_depth_max; /* requests in flight per connection */
    uint64_t body_bytes_max;     /* larger: 413 */
    uint32_t head_bytes_max;     /* larger: 431 */
    uint32_t idle_timeout_ms;
    uint32_t request_timeout_ms;
    uint32_t write_timeout_ms;
    uint32_t linger_timeout_ms;
    uint64_t buffer_bytes_total_max;
    uint32_t listen_backlog;
} bal_http_config;

typedef struct bal_http_stats {
    uint64_t connections_accepted;
    uint64_t connections_refused; /* over connections_max */
    uint64_t connections_open;
    uint64_t requests;            /* handed to the handler */
    uint64_t requests_deferred;
    uint64_t responses_dropped; /* deferred answers whose connection had closed */
    uint64_t errors_invalid;    /* 400, 411, 501, 505 */
    uint64_t errors_too_large;  /* 413, 431 */
    uint64_t errors_timeout;    /* 408 and write timeouts */
    uint64_t errors_busy;       /* 503 for the buffer budget */
    uint64_t idle_closed;
} bal_http_stats;

typedef struct bal_http_server bal_http_server;
typedef struct bal_http_request bal_http_request;

/*
 * Called on an I/O thread for every complete request. It must, before returning, either
 * call bal_http_respond(request, ...) or bal_http_request_defer(request). head and body are
 * valid only during the call.
 */
typedef void (*bal_http_handler)(void *context, bal_http_request *request,
                                 const bal_http_head *head, const char *body, size_t body_length);

void bal_http_config_init(bal_http_config *config);

/* Validates the configuration, binds the listening sockets and prepares the loops. */
bal_http_status bal_http_server_create(const bal_http_config *config, bal_http_handler handler,
                                       void *context, bal_http_server **out, char *errstr,
                                       size_t errstr_size);
/* The bound port (useful with config.port = 0). */
uint16_t bal_http_server_port(const bal_http_server *server);
/* Runs the loops: thread_count - 1 new threads plus the caller's. Blocks until stopped and
 * every connection and deferred request is finished. Call once. */
bal_http_status bal_http_server_run(bal_http_server *server);
/* Thread-safe and async-signal-safe: stop accepting, finish the responses of the requests
 * already handed to the handler, close the connections, then make run() return. */
void bal_http_server_stop(bal_http_server *server);
/* After run() has returned (or when it was never called). */
void bal_http_server_destroy(bal_http_server *server);
/* A snapshot of the counters; safe from any thread at any time. */
void bal_http_server_stats(const bal_http_server *server, bal_http_stats *out);

/* The handler keeps the request to answer later, from any thread. */
void bal_http_request_defer(bal_http_request *request);
/* The index (0 .. thread_count-1) of the I/O thread that owns the request. */
uint32_t bal_http_request_thread_index(const bal_http_request *request);

/*
 * Sends the response: status line, Content-Type (omitted when NULL), Content-Length, Date,
 * the extra header lines ("Name: value\r\n" each, or NULL), then the body (not for HEAD).
 * Within the handler: on the I/O thread. After bal_http_request_defer(): from any thread,
 * exactly once; the request token is invalid afterwards. Never blocks.
 */
void bal_http_respond(bal_http_request *request, int status, const char *content_type,
                      const char *extra_headers, const char *body, size_t body_length);

/* Responds with a JSON error body {"error":code,"message":message}. code and message must
 * need no JSON escaping (no quote, no backslash) and fit in 1 KiB together. */
void bal_http_respond_error(bal_http_request *request, int status, const char *code,
                            const char *message);

const char *bal_http_status_string(bal_http_status status);

#endif
