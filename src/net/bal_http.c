/*
 * bal_http.c -- the HTTP server object: configuration, listening socket, threads, stop.
 *
 * Creation does everything that can fail for a reason the operator must fix (a bad limit,
 * a taken port, too few file descriptors) so that run() has nothing left to refuse. The
 * connection, request and loop logic live in bal_http_connection.c and bal_http_loop.c.
 */
#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bal_http_internal.h"
#include "bal_thread.h"

/* Descriptors a server needs besides its connections: listener, epoll and eventfd per
 * loop, plus room for the rest of the process (logs, WAL files, store). */
#define BAL_HTTP_DESCRIPTORS_SPARE 256u

void bal_http_config_init(bal_http_config *config) {
    assert(config != NULL);
    memset(config, 0, sizeof *config);
    config->host = "127.0.0.1";
    config->port = 0;
    config->thread_count = BAL_HTTP_THREAD_COUNT_DEFAULT;
    config->connections_max = BAL_HTTP_CONNECTIONS_MAX_DEFAULT;
    config->pipeline_depth_max = BAL_HTTP_PIPELINE_DEPTH_DEFAULT;
    config->body_bytes_max = BAL_HTTP_BODY_BYTES_MAX_DEFAULT;
    config->head_bytes_max = BAL_HTTP_HEAD_BYTES_MAX_DEFAULT;
    config->idle_timeout_ms = BAL_HTTP_IDLE_TIMEOUT_MS_DEFAULT;
    config->request_timeout_ms = BAL_HTTP_REQUEST_TIMEOUT_MS_DEFAULT;
    config->write_timeout_ms = BAL_HTTP_WRITE_TIMEOUT_MS_DEFAULT;
    config->linger_timeout_ms = BAL_HTTP_LINGER_TIMEOUT_MS_DEFAULT;
    config->buffer_bytes_total_max = BAL_HTTP_BUFFER_BYTES_TOTAL_MAX_DEFAULT;
    config->listen_backlog = BAL_HTTP_LISTEN_BACKLOG_DEFAULT;
}

static bool bal_http_in_range(uint64_t value, uint64_t low, uint64_t high) {
    return value >= low && value <= high;
}

static const char *bal_http_config_problem(const bal_http_config *config) {
    if (config->host == NULL || strlen(config->host) >= sizeof(((bal_http_server *)0)->host)) {
        return "host must be a numeric address";
    }
    if (!bal_http_in_range(config->thread_count, 1, BAL_HTTP_THREAD_COUNT_MAX)) return "thread_count out of range";
    if (!bal_http_in_range(config->connections_max, 1, BAL_HTTP_CONNECTIONS_MAX_LIMIT)) {
        return "connections_max out of range";
    }
    if (!bal_http_in_range(config->pipeline_depth_max, 1, BAL_HTTP_PIPELINE_DEPTH_MAX)) {
        return "pipeline_depth_max out of range";
    }
    if (config->body_bytes_max > BAL_HTTP_BODY_BYTES_MAX_LIMIT) return "body_bytes_max out of range";
    /* The smallest head worth serving: "GET / HTTP/1.1\r\nHost: x\r\n\r\n". */
    if (!bal_http_in_range(config->head_bytes_max, 64, BAL_HTTP_HEAD_BYTES_MAX_LIMIT)) {
        return "head_bytes_max out of range";
    }
    if (!bal_http_in_range(config->idle_timeout_ms, 1, BAL_HTTP_TIMEOUT_MS_MAX) ||
        !bal_http_in_range(config->request_timeout_ms, 1, BAL_HTTP_TIMEOUT_MS_MAX) ||
        !bal_http_in_range(config->write_timeout_ms, 1, BAL_HTTP_TIMEOUT_MS_MAX) ||
        !bal_http_in_range(config->linger_timeout_ms, 1, BAL_HTTP_TIMEOUT_MS_MAX)) {
        return "a timeout is out of range";
    }
    if (config->buffer_bytes_total_max < (uint64_t)config->head_bytes_max) {
        return "buffer_bytes_total_max is below head_bytes_max";
    }
    if (!bal_http_in_range(config->listen_backlog, 1, 65535)) return "listen_backlog out of range";
    return NULL;
}

/* Makes sure the process may open a descriptor for every connection allowed. */
static bal_http_status bal_http_check_descriptors(const bal_http_config *config, char *errstr,
                                                  size_t errstr_size) {
    rlim_t needed = (rlim_t)config->connections_max + 3u * config->thread_count + BAL_HTTP_DESCRIPTORS_SPARE;
    struct rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) != 0) {
        snprintf(errstr, errstr_size, "getrlimit: %s", strerror(errno));
        return BAL_HTTP_ERROR_SYSTEM;
    }
    if (limit.rlim_cur >= needed) return BAL_HTTP_OK;
    if (limit.rlim_max == RLIM_INFINITY || limit.rlim_max >= needed) {
        limit.rlim_cur = needed;
        if (setrlimit(RLIMIT_NOFILE, &limit) == 0) return BAL_HTTP_OK;
    }
    snprintf(errstr, errstr_size,
             "connections_max %u needs %llu file descriptors; the limit is %llu (raise ulimit -n)",
             config->connections_max, (unsigned long long)needed, (unsigned long long)limit.rlim_max);
    return BAL_HTTP_ERROR_SYSTEM;
}

typedef union bal_http_address {
    struct sockaddr base;
    struct sockaddr_in v4;
    struct sockaddr_in6 v6;
} bal_http_address;

static bool bal_http_parse_address(const char *host, uint16_t port, bal_http_address *address,
                                   socklen_t *length) {
    memset(address, 0, sizeof *address);
    if (inet_pton(AF_INET, host, &address->v4.sin_addr) == 1) {
        address->v4.sin_family = AF_INET;
        address->v4.sin_port = htons(port);
        *length = sizeof address->v4;
        return true;
    }
    if (inet_pton(AF_INET6, host, &address->v6.sin6_addr) == 1) {
        address->v6.sin6_family = AF_INET6;
        address->v6.sin6_port = htons(port);
        *length = sizeof address->v6;
        return true;
    }
    return false;
}

static bal_http_status bal_http_listen(bal_http_server *server, int *out, char *errstr,
                                       size_t errstr_size) {
    bal_http_address address;
    socklen_t length = 0;
    if (!bal_http_parse_address(server->host, server->config.port, &address, &length)) {
        snprintf(errstr, errstr_size, "host '%s' is not a numeric IPv4 or IPv6 address", server->host);
        return BAL_HTTP_ERROR_ADDRESS;
    }
    int fd = socket(address.base.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(errstr, errstr_size, "socket: %s", strerror(errno));
        return BAL_HTTP_ERROR_SOCKET;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, &address.base, length) != 0 || listen(fd, (int)server->config.listen_backlog) != 0) {
        snprintf(errstr, errstr_size, "bind/listen %s:%u: %s", server->host, server->config.port,
                 strerror(errno));
        close(fd);
        return BAL_HTTP_ERROR_SOCKET;
    }
    bal_http_address bound;
    socklen_t bound_length = sizeof bound;
    if (getsockname(fd, &bound.base, &bound_length) != 0) {
        snprintf(errstr, errstr_size, "getsockname: %s", strerror(errno));
        close(fd);
        return BAL_HTTP_ERROR_SOCKET;
    }
    server->port = ntohs(bound.base.sa_family == AF_INET ? bound.v4.sin_port : bound.v6.sin6_port);
    *out = fd;
    return BAL_HTTP_OK;
}

static bal_http_status bal_http_prepare(bal_http_server *server, char *errstr, size_t errstr_size) {
    bal_http_status status = bal_http_check_descriptors(&server->config, errstr, errstr_size);
    if (status != BAL_HTTP_OK) return status;
    server->loops = calloc(server->config.thread_count, sizeof *server->loops);
    if (server->loops == NULL) {
        snprintf(errstr, errstr_size, "out of memory");
        return BAL_HTTP_ERROR_MEMORY;
    }
    int listen_fd = -1;
    status = bal_http_listen(server, &listen_fd, errstr, errstr_size);
    if (status != BAL_HTTP_OK) return status;
    for (uint32_t i = 0; i < server->config.thread_count; i++) {
        /* Counted before init: a loop that failed half-way still has descriptors to close. */
        server->loop_count = i + 1;
        status = bal_http_loop_init(&server->loops[i], server, i, i == 0 ? listen_fd : -1, errstr,
                                    errstr_size);
        if (status != BAL_HTTP_OK) return status;
    }
    return BAL_HTTP_OK;
}

bal_http_status bal_http_server_create(const bal_http_config *config, bal_http_handler handler,
                                       void *context, bal_http_server **out, char *errstr,
                                       size_t errstr_size) {
    assert(config != NULL && handler != NULL && out != NULL);
    assert(errstr != NULL && errstr_size > 0);
    *out = NULL;
    errstr[0] = '\0';
    const char *problem = bal_http_config_problem(config);
    if (problem != NULL) {
        snprintf(errstr, errstr_size, "%s", problem);
        return BAL_HTTP_ERROR_CONFIG;
    }
    bal_http_server *server = calloc(1, sizeof *server);
    if (server == NULL) {
        snprintf(errstr, errstr_size, "out of memory");
        return BAL_HTTP_ERROR_MEMORY;
    }
    server->config = *config;
    snprintf(server->host, sizeof server->host, "%s", config->host);
    server->config.host = server->host;
    server->handler = handler;
    server->context = context;
    atomic_init(&server->stop_requested, false);
    atomic_init(&server->running, false);
    atomic_init(&server->connection_count, 0);
    atomic_init(&server->buffer_bytes, 0);
    bal_http_status status = bal_http_prepare(server, errstr, errstr_size);
    if (status != BAL_HTTP_OK) {
        bal_http_server_destroy(server);
        return status;
    }
    *out = server;
    return BAL_HTTP_OK;
}

uint16_t bal_http_server_port(const bal_http_server *server) {
    assert(server != NULL);
    return server->port;
}

static void *bal_http_thread_main(void *argument) {
    bal_http_loop *loop = argument;
    bal_thread_name("bal-http", loop->index);
    bal_http_loop_run(argument);
    return NULL;
}

bal_http_status bal_http_server_run(bal_http_server *server) {
    assert(server != NULL);
    bool was_running = atomic_exchange(&server->running, true);
    assert(!was_running && "run() is called once");
    (void)was_running;
    bal_http_status status = BAL_HTTP_OK;
    for (uint32_t i = 1; i < server->loop_count; i++) {
        bal_http_loop *loop = &server->loops[i];
        if (pthread_create(&loop->handle, NULL, bal_http_thread_main, loop) != 0) {
            /* Without all its threads the server stops at once; run() reports why. */
            status = BAL_HTTP_ERROR_THREAD;
            bal_http_server_stop(server);
            break;
        }
        loop->thread_started = true;
    }
    bal_http_loop_run(&server->loops[0]);
    for (uint32_t i = 1; i < server->loop_count; i++) {
        if (server->loops[i].thread_started) pthread_join(server->loops[i].handle, NULL);
    }
    return status;
}

void bal_http_server_stop(bal_http_server *server) {
    assert(server != NULL);
    atomic_store_explicit(&server->stop_requested, true, memory_order_release);
    for (uint32_t i = 0; i < server->loop_count; i++) bal_http_loop_wake(&server->loops[i]);
}

void bal_http_server_destroy(bal_http_server *server) {
    if (server == NULL) return;
    for (uint32_t i = 0; i < server->loop_count; i++) bal_http_loop_free(&server->loops[i]);
    free(server->loops);
    free(server);
}

static uint64_t bal_http_read_counter(const _Atomic uint64_t *counter) {
    return atomic_load_explicit(counter, memory_order_relaxed);
}

void bal_http_server_stats(const bal_http_server *server, bal_http_stats *out) {
    assert(server != NULL && out != NULL);
    memset(out, 0, sizeof *out);
    for (uint32_t i = 0; i < server->loop_count; i++) {
        const bal_http_counters *counters = &server->loops[i].counters;
        out->connections_accepted += bal_http_read_counter(&counters->connections_accepted);
        out->connections_refused += bal_http_read_counter(&counters->connections_refused);
        out->requests += bal_http_read_counter(&counters->requests);
        out->requests_deferred += bal_http_read_counter(&counters->requests_deferred);
        out->responses_dropped += bal_http_read_counter(&counters->responses_dropped);
        out->errors_invalid += bal_http_read_counter(&counters->errors_invalid);
        out->errors_too_large += bal_http_read_counter(&counters->errors_too_large);
        out->errors_timeout += bal_http_read_counter(&counters->errors_timeout);
        out->errors_busy += bal_http_read_counter(&counters->errors_busy);
        out->idle_closed += bal_http_read_counter(&counters->idle_closed);
    }
    out->connections_open = atomic_load_explicit(&server->connection_count, memory_order_relaxed);
}

const char *bal_http_status_string(bal_http_status status) {
    switch (status) {
    case BAL_HTTP_OK: return "ok";
    case BAL_HTTP_ERROR_CONFIG: return "config";
    case BAL_HTTP_ERROR_ADDRESS: return "address";
    case BAL_HTTP_ERROR_SOCKET: return "socket";
    case BAL_HTTP_ERROR_SYSTEM: return "system";
    case BAL_HTTP_ERROR_MEMORY: return "memory";
    case BAL_HTTP_ERROR_THREAD: return "thread";
    }
    return "unknown";
}
