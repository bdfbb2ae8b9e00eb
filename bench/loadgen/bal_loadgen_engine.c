/*
 * bal_loadgen_engine.c -- the load generator's engine (see bal_loadgen_engine.h).
 *
 * Per connection, a ring of "flights" remembers, in request order, when each request in
 * flight started (sent, or scheduled in open-loop mode) and how many operations it
 * carries; HTTP/1.1 answers in order, so each final response closes the oldest flight.
 * Requests are appended to the connection's output as they are made and written in one
 * send per loop turn, so a pipelined refill costs one system call.
 */
#include "bal_loadgen_engine.h"

#include <assert.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bal_loadgen_response.h"

/* Free input space kept per read. */
#define LG_READ_BYTES (64u * 1024u)
#define LG_EVENTS_MAX 256
/* The longest a loop sleeps: the end of the run is noticed within this. */
#define LG_WAIT_NS_MAX (50ull * 1000 * 1000)
#define LG_NS_PER_S 1000000000.0

typedef struct lg_flight {
    uint64_t start_ns;
    uint32_t operations;
} lg_flight;

typedef struct lg_thread lg_thread;

typedef struct lg_connection {
    lg_thread *thread;
    int fd;
    bool connecting;
    bool open;
    uint64_t retry_ns; /* closed: reconnect at this time */
    uint32_t events;
    bal_http_buffer out;
    size_t out_sent;
    bal_http_buffer in;
    lg_flight *flights; /* pipeline slots */
    uint32_t flight_head;
    uint32_t flight_count;
    bool dirty; /* has output to send this turn */
} lg_connection;

struct lg_thread {
    const bal_loadgen_options *options;
    const struct sockaddr_storage *address;
    socklen_t address_length;
    uint32_t index;
    pthread_t handle;
    int epoll_fd;
    lg_connection *connections;
    uint32_t connection_count;
    uint32_t closed_count;     /* connections without a socket, waiting to (re)connect */
    lg_connection **dirty;     /* connections with output to send this turn */
    uint32_t dirty_count;
    bal_workload_state state;
    bal_loadgen_report report;
    uint64_t now_ns;
    uint64_t measure_ns; /* warm-up ends */
    uint64_t end_ns;     /* sending stops */
    uint64_t send_budget; /* requests this thread may still send */
    uint64_t last_response_ns;
    double interval_ns;   /* open loop: between scheduled requests of this thread */
    double schedule_origin_ns;
    uint64_t scheduled;   /* open loop: index of the next scheduled request */
    uint64_t backlog;     /* open loop: due but not sent when scheduling last stopped */
    uint32_t cursor;      /* open loop: round-robin over connections */
};

static uint64_t lg_now_ns(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;
}

void bal_loadgen_options_init(bal_loadgen_options *options) {
    assert(options != NULL);
    memset(options, 0, sizeof *options);
    snprintf(options->host, sizeof options->host, "127.0.0.1");
    options->port = 8080;
    options->connections = 64;
    options->threads = 1;
    options->pipeline = 1;
    options->duration_s = 10.0;
    options->seed = 1;
}

static bool lg_open_loop(const lg_thread *thread) {
    return thread->options->rate > 0.0;
}

static void lg_set_events(lg_connection *connection, uint32_t events) {
    if (events == connection->events) return;
    struct epoll_event event = {.events = events, .data.ptr = connection};
    int result = epoll_ctl(connection->thread->epoll_fd, EPOLL_CTL_MOD, connection->fd, &event);
    assert(result == 0);
    (void)result;
    connection->events = events;
}

static void lg_mark_dirty(lg_connection *connection) {
    if (connection->dirty) return;
    lg_thread *thread = connection->thread;
    assert(thread->dirty_count < thread->connection_count);
    connection->dirty = true;
    thread->dirty[thread->dirty_count++] = connection;
}

static void lg_close(lg_connection *connection, bool server_closed) {
    lg_thread *thread = connection->thread;
    assert(connection->fd >= 0);
    close(connection->fd);
    connection->fd = -1;
    thread->closed_count++;
    thread->report.requests_lost += connection->flight_count;
    connection->flight_count = 0;
    connection->flight_head = 0;
    connection->open = false;
    connection->connecting = false;
    connection->out.length = 0;
    connection->out_sent = 0;
    connection->in.length = 0;
    connection->events = 0;
    /* A server that closes on purpose is reconnected at once; a failure waits a little. */
    connection->retry_ns = thread->now_ns + (server_closed ? 0 : BAL_LOADGEN_RETRY_MS * 1000000ull);
}

static void lg_connect(lg_connection *connection) {
    lg_thread *thread = connection->thread;
    assert(connection->fd < 0 && thread->closed_count > 0);
    int fd = socket(thread->address->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        thread->report.errors_connect++;
        connection->retry_ns = thread->now_ns + BAL_LOADGEN_RETRY_MS * 1000000ull;
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    connection->fd = fd;
    connection->retry_ns = 0;
    thread->closed_count--;
    int result = connect(fd, (const struct sockaddr *)thread->address, thread->address_length);
    if (result != 0 && errno != EINPROGRESS) {
        thread->report.errors_connect++;
        lg_close(connection, false);
        return;
    }
    connection->connecting = true;
    connection->events = EPOLLOUT;
    struct epoll_event event = {.events = EPOLLOUT, .data.ptr = connection};
    if (epoll_ctl(thread->epoll_fd, EPOLL_CTL_ADD, fd, &event) != 0) {
        thread->report.errors_connect++;
        lg_close(connection, false);
    }
}

static bool lg_may_send(const lg_thread *thread) {
    return thread->send_budget > 0 && thread->now_ns < thread->end_ns;
}

/* Makes one request on this connection, started (or scheduled) at start_ns. */
static bool lg_send_one(lg_connection *connection, uint64_t start_ns) {
    lg_thread *thread = connection->thread;
    uint32_t pipeline = thread->options->pipeline;
    assert(connection->open && connection->flight_count < pipeline);
    uint32_t operations = 0;
    if (!bal_workload_append_request(thread->options->workload, &thread->state, &connection->out, &operations)) {
        return false;
    }
    lg_flight *flight = &connection->flights[(connection->flight_head + connection->flight_count) % pipeline];
    flight->start_ns = start_ns;
    flight->operations = operations;
    connection->flight_count++;
    lg_mark_dirty(connection);
    thread->send_budget--;
    return true;
}

/* Closed loop: fill the pipeline. */
static void lg_fill(lg_connection *connection) {
    lg_thread *thread = connection->thread;
    while (connection->open && connection->flight_count < thread->options->pipeline && lg_may_send(thread)) {
        if (!lg_send_one(connection, thread->now_ns)) break;
    }
}

static void lg_flush(lg_connection *connection) {
    lg_thread *thread = connection->thread;
    while (connection->out_sent < connection->out.length) {
        ssize_t sent = send(connection->fd, connection->out.data + connection->out_sent,
                            connection->out.length - connection->out_sent, MSG_NOSIGNAL);
        if (sent > 0) {
            connection->out_sent += (size_t)sent;
            continue;
        }
        if (sent < 0 && errno == EINTR) continue;
        if (sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            lg_set_events(connection, EPOLLIN | EPOLLOUT);
            return;
        }
        thread->report.errors_io++;
        lg_close(connection, false);
        return;
    }
    connection->out.length = 0;
    connection->out_sent = 0;
    lg_set_events(connection, EPOLLIN);
}

static void lg_record(lg_thread *thread, const lg_flight *flight, int status) {
    thread->last_response_ns = thread->now_ns;
    if (thread->now_ns < thread->measure_ns) return;
    bal_loadgen_report *report = &thread->report;
    report->requests++;
    report->status_counts[status]++;
    if (status >= 200 && status < 300) report->operations += flight->operations;
    uint64_t latency_ns = thread->now_ns > flight->start_ns ? thread->now_ns - flight->start_ns : 0;
    bal_histogram_record(&report->latency, latency_ns / 1000);
}

/* Takes every complete response off the front of the input; false if the connection closed. */
static bool lg_take_responses(lg_connection *connection) {
    lg_thread *thread = connection->thread;
    size_t offset = 0;
    bool close_after = false;
    while (!close_after) {
        bal_loadgen_response response;
        bal_loadgen_response_status status = bal_loadgen_response_parse(
            connection->in.data + offset, connection->in.length - offset, &response);
        if (status == BAL_LOADGEN_RESPONSE_INCOMPLETE) break;
        if (status != BAL_LOADGEN_RESPONSE_COMPLETE || connection->flight_count == 0) {
            thread->report.errors_protocol++;
            lg_close(connection, false);
            return false;
        }
        offset += response.total_length;
        if (response.status < 200) continue; /* 100 Continue and friends: not the answer */
        lg_record(thread, &connection->flights[connection->flight_head], response.status);
        connection->flight_head = (connection->flight_head + 1) % thread->options->pipeline;
        connection->flight_count--;
        close_after = response.close;
    }
    bal_http_buffer_consume(&connection->in, offset);
    if (close_after) {
        thread->report.reconnects++;
        lg_close(connection, true);
        return false;
    }
    return true;
}

static void lg_read(lg_connection *connection) {
    lg_thread *thread = connection->thread;
    if (!bal_http_buffer_reserve(&connection->in, connection->in.length + LG_READ_BYTES)) {
        thread->report.errors_io++;
        lg_close(connection, false);
        return;
    }
    ssize_t count = recv(connection->fd, connection->in.data + connection->in.length,
                         connection->in.capacity - connection->in.length, 0);
    if (count == 0 || (count < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        if (count < 0 || connection->flight_count > 0) thread->report.errors_io++;
        thread->report.reconnects++;
        lg_close(connection, true);
        return;
    }
    if (count < 0) return;
    connection->in.length += (size_t)count;
    if (!lg_take_responses(connection)) return;
    if (!lg_open_loop(thread)) lg_fill(connection);
}

static void lg_on_connected(lg_connection *connection) {
    lg_thread *thread = connection->thread;
    int error = 0;
    socklen_t length = sizeof error;
    getsockopt(connection->fd, SOL_SOCKET, SO_ERROR, &error, &length);
    if (error != 0) {
        thread->report.errors_connect++;
        lg_close(connection, false);
        return;
    }
    connection->connecting = false;
    connection->open = true;
    lg_set_events(connection, EPOLLIN);
    if (!lg_open_loop(thread)) lg_fill(connection);
}

static void lg_on_event(lg_connection *connection, uint32_t events) {
    if (connection->fd < 0) return;
    if (connection->connecting) {
        if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) lg_on_connected(connection);
        return;
    }
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
        lg_read(connection);
        if (connection->fd < 0) return;
    }
    if (events & EPOLLOUT) lg_mark_dirty(connection);
}

static double lg_scheduled_ns(const lg_thread *thread, uint64_t index) {
    return thread->schedule_origin_ns + (double)index * thread->interval_ns;
}

/* Open loop: hands every request whose time has come to a connection with room. */
static void lg_schedule(lg_thread *thread) {
    uint32_t count = thread->connection_count;
    thread->backlog = 0;
    while (lg_may_send(thread) && lg_scheduled_ns(thread, thread->scheduled) <= (double)thread->now_ns) {
        lg_connection *chosen = NULL;
        for (uint32_t tried = 0; tried < count && chosen == NULL; tried++) {
            lg_connection *candidate = &thread->connections[thread->cursor];
            thread->cursor = (thread->cursor + 1) % count;
            if (candidate->open && candidate->flight_count < thread->options->pipeline) chosen = candidate;
        }
        if (chosen == NULL) {
            /* All full: the backlog waits, its latency keeps growing. */
            double due = ((double)thread->now_ns - thread->schedule_origin_ns) / thread->interval_ns + 1;
            thread->backlog = (uint64_t)due > thread->scheduled ? (uint64_t)due - thread->scheduled : 0;
            return;
        }
        if (!lg_send_one(chosen, (uint64_t)lg_scheduled_ns(thread, thread->scheduled))) return;
        thread->scheduled++;
    }
}

static uint64_t lg_in_flight(const lg_thread *thread) {
    uint64_t total = 0;
    for (uint32_t i = 0; i < thread->connection_count; i++) total += thread->connections[i].flight_count;
    return total;
}

static bool lg_finished(const lg_thread *thread) {
    if (thread->now_ns >= thread->end_ns) return true;
    /* Request-count mode: done when everything sent has been answered. */
    return thread->send_budget == 0 && lg_in_flight(thread) == 0;
}

static uint64_t lg_wait_ns(const lg_thread *thread) {
    uint64_t wait = LG_WAIT_NS_MAX;
    if (thread->end_ns > thread->now_ns && thread->end_ns - thread->now_ns < wait) {
        wait = thread->end_ns - thread->now_ns;
    }
    if (lg_open_loop(thread) && lg_may_send(thread)) {
        double next = lg_scheduled_ns(thread, thread->scheduled) - (double)thread->now_ns;
        if (next < 0) next = 0;
        if (next < (double)wait) wait = (uint64_t)next;
    }
    return wait;
}

/* One turn: reconnect, schedule, write, then wait for events. */
static void lg_turn(lg_thread *thread, struct epoll_event *events) {
    for (uint32_t i = 0; i < thread->connection_count && thread->closed_count > 0; i++) {
        lg_connection *connection = &thread->connections[i];
        bool due = connection->fd < 0 && thread->now_ns >= connection->retry_ns;
        if (due && lg_may_send(thread)) lg_connect(connection);
    }
    if (lg_open_loop(thread)) lg_schedule(thread);
    for (uint32_t i = 0; i < thread->dirty_count; i++) {
        lg_connection *connection = thread->dirty[i];
        connection->dirty = false;
        if (connection->open) lg_flush(connection);
    }
    thread->dirty_count = 0;
    uint64_t wait_ns = lg_wait_ns(thread);
    struct timespec timeout = {.tv_sec = (time_t)(wait_ns / 1000000000ull),
                               .tv_nsec = (long)(wait_ns % 1000000000ull)};
    int count = epoll_pwait2(thread->epoll_fd, events, LG_EVENTS_MAX, &timeout, NULL);
    thread->now_ns = lg_now_ns();
    for (int i = 0; i < count; i++) lg_on_event(events[i].data.ptr, events[i].events);
}

static void *lg_thread_main(void *argument) {
    lg_thread *thread = argument;
    struct epoll_event events[LG_EVENTS_MAX];
    thread->now_ns = lg_now_ns();
    while (!lg_finished(thread)) lg_turn(thread, events);
    /* Open loop: what was due but had found no free connection when scheduling last ran.
     * (Requests falling due after that, in the last instant of the run, are not a backlog.) */
    thread->report.requests_unsent = thread->backlog;
    return NULL;
}

static bool lg_resolve(const bal_loadgen_options *options, struct sockaddr_storage *address,
                       socklen_t *length, char *errstr, size_t errstr_size) {
    char port[16];
    snprintf(port, sizeof port, "%u", options->port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *found = NULL;
    int result = getaddrinfo(options->host, port, &hints, &found);
    if (result != 0 || found == NULL) {
        snprintf(errstr, errstr_size, "cannot resolve %s: %s", options->host, gai_strerror(result));
        return false;
    }
    memcpy(address, found->ai_addr, found->ai_addrlen);
    *length = found->ai_addrlen;
    freeaddrinfo(found);
    return true;
}

static bool lg_thread_init(lg_thread *thread, const bal_loadgen_options *options, uint32_t index) {
    uint32_t threads = options->threads;
    uint32_t share = options->connections / threads + (index < options->connections % threads ? 1 : 0);
    thread->options = options;
    thread->index = index;
    thread->connection_count = share;
    thread->closed_count = share;
    thread->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    thread->connections = calloc(share, sizeof *thread->connections);
    thread->dirty = calloc(share, sizeof *thread->dirty);
    if (thread->epoll_fd < 0 || thread->connections == NULL || thread->dirty == NULL) return false;
    for (uint32_t i = 0; i < share; i++) {
        lg_connection *connection = &thread->connections[i];
        connection->thread = thread;
        connection->fd = -1;
        connection->flights = calloc(options->pipeline, sizeof *connection->flights);
        if (connection->flights == NULL) return false;
    }
    bal_workload_state_init(&thread->state, index, options->seed);
    bal_histogram_reset(&thread->report.latency);
    uint64_t requests = options->requests;
    thread->send_budget = requests == 0 ? UINT64_MAX : requests / threads + (index < requests % threads ? 1 : 0);
    /* A thread whose share is zero has nothing to render. */
    if (options->pregenerate && thread->send_budget > 0) {
        return bal_workload_pregenerate(options->workload, &thread->state, thread->send_budget);
    }
    return true;
}

/* The clock starts after every thread is set up (and has pre-generated its requests). */
static void lg_thread_start(lg_thread *thread, uint64_t start_ns) {
    const bal_loadgen_options *options = thread->options;
    uint32_t index = thread->index;
    thread->measure_ns = start_ns + (uint64_t)(options->warmup_s * LG_NS_PER_S);
    thread->end_ns = thread->measure_ns + (uint64_t)(options->duration_s * LG_NS_PER_S);
    if (options->rate > 0.0) {
        /* Threads interleave their schedules so the total rate is smooth. */
        thread->interval_ns = LG_NS_PER_S * options->threads / options->rate;
        thread->schedule_origin_ns = (double)start_ns + thread->interval_ns * index / options->threads;
    }
}

static void lg_thread_free(lg_thread *thread) {
    for (uint32_t i = 0; thread->connections != NULL && i < thread->connection_count; i++) {
        lg_connection *connection = &thread->connections[i];
        if (connection->fd >= 0) close(connection->fd);
        bal_http_buffer_free(&connection->in);
        bal_http_buffer_free(&connection->out);
        free(connection->flights);
    }
    free(thread->connections);
    free(thread->dirty);
    if (thread->epoll_fd >= 0) close(thread->epoll_fd);
    bal_workload_state_free(&thread->state);
}

static void lg_merge(bal_loadgen_report *into, const lg_thread *thread) {
    const bal_loadgen_report *from = &thread->report;
    into->requests += from->requests;
    into->operations += from->operations;
    for (int i = 0; i < BAL_LOADGEN_STATUS_MAX; i++) into->status_counts[i] += from->status_counts[i];
    into->errors_connect += from->errors_connect;
    into->errors_io += from->errors_io;
    into->errors_protocol += from->errors_protocol;
    into->requests_lost += from->requests_lost;
    into->requests_unsent += from->requests_unsent;
    into->reconnects += from->reconnects;
    bal_histogram_merge(&into->latency, &from->latency);
}

/* The measured window: to the end of the run, or to the last answer in request-count mode. */
static double lg_window_s(const lg_thread *threads, uint32_t count) {
    uint64_t measure = threads[0].measure_ns;
    uint64_t end = 0;
    for (uint32_t i = 0; i < count; i++) {
        uint64_t thread_end = threads[i].send_budget == 0 && threads[i].last_response_ns < threads[i].end_ns
                                  ? threads[i].last_response_ns : threads[i].end_ns;
        if (thread_end > end) end = thread_end;
    }
    return end > measure ? (double)(end - measure) / LG_NS_PER_S : 0.0;
}

static const char *lg_check(const bal_loadgen_options *options) {
    if (options->workload == NULL) return "no workload";
    if (options->connections == 0 || options->connections > BAL_LOADGEN_CONNECTIONS_MAX) {
        return "connections out of range";
    }
    if (options->threads == 0 || options->threads > BAL_LOADGEN_THREADS_MAX) return "threads out of range";
    if (options->threads > options->connections) return "more threads than connections";
    if (options->pipeline == 0 || options->pipeline > BAL_LOADGEN_PIPELINE_MAX) return "pipeline out of range";
    if (options->pregenerate && options->requests == 0) return "pre-generation needs a request count";
    if (!(options->duration_s > 0.0) || options->warmup_s < 0.0 || options->rate < 0.0) {
        return "bad duration, warm-up or rate";
    }
    return NULL;
}

bool bal_loadgen_run(const bal_loadgen_options *options, bal_loadgen_report *report, char *errstr,
                     size_t errstr_size) {
    assert(options != NULL && report != NULL && errstr != NULL);
    memset(report, 0, sizeof *report);
    bal_histogram_reset(&report->latency);
    const char *problem = lg_check(options);
    if (problem != NULL) {
        snprintf(errstr, errstr_size, "%s", problem);
        return false;
    }
    struct sockaddr_storage address;
    socklen_t address_length = 0;
    if (!lg_resolve(options, &address, &address_length, errstr, errstr_size)) return false;
    lg_thread *threads = calloc(options->threads, sizeof *threads);
    if (threads == NULL) return false;
    for (uint32_t i = 0; i < options->threads; i++) threads[i].epoll_fd = -1;
    bool ok = true;
    for (uint32_t i = 0; i < options->threads && ok; i++) {
        threads[i].address = &address;
        threads[i].address_length = address_length;
        ok = lg_thread_init(&threads[i], options, i);
    }
    uint64_t start_ns = lg_now_ns();
    for (uint32_t i = 0; i < options->threads && ok; i++) lg_thread_start(&threads[i], start_ns);
    uint32_t started = 1;
    while (ok && started < options->threads) {
        ok = pthread_create(&threads[started].handle, NULL, lg_thread_main, &threads[started]) == 0;
        if (ok) started++;
    }
    if (ok) {
        lg_thread_main(&threads[0]);
    } else {
        /* The started threads still run to the end of the duration; their results are dropped. */
    }
    for (uint32_t i = 1; i < started; i++) pthread_join(threads[i].handle, NULL);
    if (ok) {
        for (uint32_t i = 0; i < options->threads; i++) lg_merge(report, &threads[i]);
        report->seconds = lg_window_s(threads, options->threads);
    } else {
        snprintf(errstr, errstr_size, "out of memory or threads%s",
                 options->pregenerate ? " (or the pre-generated requests exceed their limit)" : "");
    }
    for (uint32_t i = 0; i < options->threads; i++) lg_thread_free(&threads[i]);
    free(threads);
    return ok;
}
