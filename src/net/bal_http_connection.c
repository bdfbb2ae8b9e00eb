/*
 * bal_http_connection.c -- one HTTP/1.1 connection: read, parse, dispatch, order, write.
 *
 * Input is read into the loop's shared scratch buffer; requests that arrived whole are
 * handled straight from there, and only the unfinished tail is copied into the
 * connection's own buffer (so an idle connection owns no input memory). Every handed-out
 * request takes the next slot of the connection's ring, in arrival order; the ring is the
 * pipeline: while it is full the socket is not read. A response produced for the request at
 * the head of the ring goes straight into the output buffer; one produced out of turn waits
 * in its request until every earlier one has gone out ("pump"). Errors queue a JSON error
 * response in the ring like any other response, stop the parsing, and close the connection
 * once everything before them has been written.
 *
 * Everything here runs on the loop's thread, except bal_http_respond() for a deferred
 * request, which only formats into the request's own buffer and pushes it onto the loop's
 * completion stack.
 */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bal_http_internal.h"
#include "bal_http_response.h"

static const char bal_http_continue_line[] = "HTTP/1.1 100 Continue\r\n\r\n";

static const bal_http_config *bal_http_config_of(const bal_http_connection *connection) {
    return &connection->loop->server->config;
}

static bool bal_http_ring_full(const bal_http_connection *connection) {
    return connection->ring_count == bal_http_config_of(connection)->pipeline_depth_max;
}

static void bal_http_ring_push(bal_http_connection *connection, bal_http_request *request) {
    uint32_t depth = bal_http_config_of(connection)->pipeline_depth_max;
    assert(connection->ring_count < depth);
    connection->ring[(connection->ring_head + connection->ring_count) % depth] = request;
    connection->ring_count++;
}

static bal_http_request *bal_http_ring_first(const bal_http_connection *connection) {
    assert(connection->ring_count > 0);
    return connection->ring[connection->ring_head];
}

static void bal_http_ring_pop(bal_http_connection *connection) {
    uint32_t depth = bal_http_config_of(connection)->pipeline_depth_max;
    assert(connection->ring_count > 0);
    connection->ring[connection->ring_head] = NULL;
    connection->ring_head = (connection->ring_head + 1) % depth;
    connection->ring_count--;
}

static bool bal_http_out_pending(const bal_http_connection *connection) {
    assert(connection->out_sent <= connection->out.length);
    return connection->out_sent < connection->out.length;
}

/* Input buffer capacity is counted against the server's budget before it is allocated. */
static bool bal_http_in_reserve(bal_http_connection *connection, size_t capacity) {
    if (capacity <= connection->in.capacity) return true;
    bal_http_server *server = connection->loop->server;
    size_t growth = capacity - connection->in.capacity;
    uint64_t before = atomic_fetch_add_explicit(&server->buffer_bytes, growth, memory_order_relaxed);
    if (before + growth > server->config.buffer_bytes_total_max ||
        !bal_http_buffer_reserve(&connection->in, capacity)) {
        atomic_fetch_sub_explicit(&server->buffer_bytes, growth, memory_order_relaxed);
        return false;
    }
    connection->in_budget += growth;
    assert(connection->in_budget == connection->in.capacity);
    return true;
}

static void bal_http_in_release(bal_http_connection *connection) {
    bal_http_server *server = connection->loop->server;
    atomic_fetch_sub_explicit(&server->buffer_bytes, connection->in_budget, memory_order_relaxed);
    connection->in_budget = 0;
    bal_http_buffer_free(&connection->in);
}

/* Forgets any partly received request. */
static void bal_http_in_discard(bal_http_connection *connection) {
    bal_http_in_release(connection);
    connection->scan_offset = 0;
    connection->needed_bytes = 0;
    connection->continue_sent = false;
    connection->expect_continue = false;
    connection->request_deadline_ms = 0;
}

static void bal_http_count_error(bal_http_loop *loop, int status) {
    if (status == 408) BAL_HTTP_COUNT(loop, errors_timeout);
    else if (status == 413 || status == 431) BAL_HTTP_COUNT(loop, errors_too_large);
    else if (status == 503) BAL_HTTP_COUNT(loop, errors_busy);
    else BAL_HTTP_COUNT(loop, errors_invalid);
}

/*
 * Answers a protocol error: the response takes the next ring slot (after every response
 * still owed), parsing stops, and the connection closes once that response is out.
 */
static void bal_http_fail(bal_http_connection *connection, int status, const char *code,
                          const char *message) {
    assert(status >= 400 && status <= 599);
    assert(connection->accepting && !bal_http_ring_full(connection));
    bal_http_loop *loop = connection->loop;
    bal_http_count_error(loop, status);
    connection->accepting = false;
    bal_http_in_discard(connection);
    char body[BAL_HTTP_ERROR_BODY_MAX];
    size_t body_length = bal_http_error_body(body, sizeof body, code, message);
    bal_http_request *request = bal_http_loop_request_take(loop);
    if (request == NULL) {
        bal_http_connection_close(connection);
        return;
    }
    request->connection = connection;
    request->keep_alive = false;
    bal_http_response_parts parts = {.status = status, .content_type = "application/json",
                                     .body = body, .body_length = body_length,
                                     .connection_close = true};
    request->state = BAL_HTTP_REQUEST_READY;
    request->broken = !bal_http_response_append(&request->response, &parts);
    bal_http_ring_push(connection, request);
}

static void bal_http_fail_parse(bal_http_connection *connection, bal_http_parse_status status,
                                const char *error) {
    switch (status) {
    case BAL_HTTP_PARSE_HEAD_TOO_LARGE:
    case BAL_HTTP_PARSE_TOO_MANY_HEADERS:
        bal_http_fail(connection, 431, "headers_too_large", error);
        return;
    case BAL_HTTP_PARSE_VERSION_UNSUPPORTED:
        bal_http_fail(connection, 505, "http_version_not_supported", error);
        return;
    case BAL_HTTP_PARSE_LENGTH_REQUIRED:
        bal_http_fail(connection, 411, "length_required", error);
        return;
    case BAL_HTTP_PARSE_CODING_UNSUPPORTED:
        bal_http_fail(connection, 501, "not_implemented", error);
        return;
    case BAL_HTTP_PARSE_INVALID:
        bal_http_fail(connection, 400, "invalid_http", error);
        return;
    case BAL_HTTP_PARSE_COMPLETE:
    case BAL_HTTP_PARSE_INCOMPLETE:
        break;
    }
    assert(0 && "not a parse error");
}

/* Moves answered requests from the head of the ring into the output, in order. */
static void bal_http_pump(bal_http_connection *connection) {
    while (connection->ring_count > 0) {
        bal_http_request *request = bal_http_ring_first(connection);
        if (request->state == BAL_HTTP_REQUEST_READY) {
            if (request->broken) {
                bal_http_connection_close(connection);
                return;
            }
            if (!bal_http_out_pending(connection)) {
                /* Nothing waiting: hand the formatted bytes over instead of copying them. */
                bal_http_buffer spare = connection->out;
                connection->out = request->response;
                connection->out_sent = 0;
                request->response = spare;
                request->response.length = 0;
            } else if (!bal_http_buffer_append(&connection->out, request->response.data,
                                               request->response.length)) {
                bal_http_connection_close(connection);
                return;
            }
        } else if (request->state != BAL_HTTP_REQUEST_WRITTEN) {
            assert(request->state == BAL_HTTP_REQUEST_DEFERRED);
            return;
        }
        bool keep_alive = request->keep_alive;
        bal_http_ring_pop(connection);
        bal_http_loop_request_give(connection->loop, request);
        assert(keep_alive || connection->ring_count == 0);
        if (!keep_alive) connection->accepting = false;
    }
}

/* Sends 100 Continue when no earlier response is owed; otherwise it would jump the queue. */
static void bal_http_maybe_continue(bal_http_connection *connection) {
    if (!connection->expect_continue || connection->continue_sent) return;
    if (connection->ring_count > 0) return;
    connection->continue_sent = true;
    if (!bal_http_buffer_append(&connection->out, bal_http_continue_line,
                                sizeof bal_http_continue_line - 1)) {
        bal_http_connection_close(connection);
    }
}

/* Hands one complete request to the handler. */
static void bal_http_dispatch_one(bal_http_connection *connection, const bal_http_head *head,
                                  const char *body) {
    bal_http_loop *loop = connection->loop;
    bal_http_request *request = bal_http_loop_request_take(loop);
    if (request == NULL) {
        bal_http_connection_close(connection);
        return;
    }
    request->connection = connection;
    request->state = BAL_HTTP_REQUEST_DISPATCHED;
    request->omit_body = head->method == BAL_HTTP_METHOD_HEAD;
    request->keep_alive = head->keep_alive;
    request->http10 = head->version_minor == 0;
    bal_http_ring_push(connection, request);
    if (!head->keep_alive) connection->accepting = false;
    BAL_HTTP_COUNT(loop, requests);
    bal_http_server *server = loop->server;
    server->handler(server->context, request, head, body, (size_t)head->content_length);
    assert(request->state != BAL_HTTP_REQUEST_DISPATCHED && "the handler must respond or defer");
    bal_http_pump(connection);
}

/* After a head is parsed: checks the body size; false if the request cannot proceed. */
static bool bal_http_check_head(bal_http_connection *connection, const bal_http_head *head) {
    const bal_http_config *config = bal_http_config_of(connection);
    if (head->content_length > config->body_bytes_max) {
        bal_http_fail(connection, 413, "body_too_large", "request body exceeds the limit");
        return false;
    }
    return true;
}

/*
 * Handles every complete request in data[0..length) while the ring has room; returns the
 * bytes consumed. The rest is an unfinished request (or requests waiting for ring room).
 */
static size_t bal_http_dispatch(bal_http_connection *connection, const char *data, size_t length) {
    const bal_http_config *config = bal_http_config_of(connection);
    bal_http_head *head = &connection->loop->head;
    size_t offset = 0;
    while (connection->accepting && !connection->closed && !bal_http_ring_full(connection) &&
           offset < length) {
        size_t available = length - offset;
        if (connection->needed_bytes != 0 && available < connection->needed_bytes) {
            bal_http_maybe_continue(connection);
            break;
        }
        bal_http_parse_status status = bal_http_parse_head(
            data + offset, available, config->head_bytes_max, &connection->scan_offset, head);
        if (status == BAL_HTTP_PARSE_INCOMPLETE) break;
        if (status != BAL_HTTP_PARSE_COMPLETE) {
            bal_http_fail_parse(connection, status, head->error);
            return length;
        }
        if (!bal_http_check_head(connection, head)) return length;
        uint64_t needed = head->head_length + head->content_length;
        if (available < needed) {
            connection->needed_bytes = needed;
            connection->expect_continue = head->expect_continue && head->version_minor == 1;
            bal_http_maybe_continue(connection);
            break;
        }
        connection->scan_offset = 0;
        connection->needed_bytes = 0;
        connection->continue_sent = false;
        connection->expect_continue = false;
        connection->request_deadline_ms = 0;
        bal_http_dispatch_one(connection, head, data + offset + head->head_length);
        offset += (size_t)needed;
    }
    return connection->accepting ? offset : length;
}

/* Room for the unfinished request: its whole size once known, else the head limit. */
static size_t bal_http_in_target(const bal_http_connection *connection) {
    const bal_http_config *config = bal_http_config_of(connection);
    if (connection->needed_bytes != 0) return (size_t)connection->needed_bytes;
    return config->head_bytes_max;
}

/* Keeps the unfinished tail of the scratch buffer in the connection's own buffer. */
static void bal_http_keep_tail(bal_http_connection *connection, const char *data, size_t length) {
    assert(connection->in.length == 0 && length > 0);
    size_t target = bal_http_in_target(connection);
    if (target < length) target = length;
    if (!bal_http_in_reserve(connection, target)) {
        bal_http_fail(connection, 503, "server_busy", "request buffers are full; retry later");
        return;
    }
    memcpy(connection->in.data, data, length);
    connection->in.length = length;
}

/* Handles what the connection's own buffer holds (after a read or when ring room frees). */
static void bal_http_dispatch_buffered(bal_http_connection *connection) {
    if (connection->in.length == 0) return;
    size_t consumed = bal_http_dispatch(connection, connection->in.data, connection->in.length);
    if (connection->closed) return;
    if (!connection->accepting || consumed == connection->in.length) {
        bal_http_in_discard(connection);
        return;
    }
    if (consumed > 0) {
        /* The scan offset belongs to the request now at the front; it moved with it. */
        bal_http_buffer_consume(&connection->in, consumed);
    }
}

static void bal_http_on_peer_closed(bal_http_connection *connection) {
    connection->peer_closed = true;
    /* An unfinished request can never finish now; finished ones are still answered. */
    if (connection->accepting) {
        connection->accepting = false;
        bal_http_in_discard(connection);
    }
}

/* Returns false when the connection was closed. */
static bool bal_http_read_result(bal_http_connection *connection, ssize_t count) {
    if (count > 0) return true;
    if (count == 0) {
        bal_http_on_peer_closed(connection);
        return false;
    }
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        bal_http_connection_close(connection);
    }
    return false;
}

static void bal_http_read_scratch(bal_http_connection *connection) {
    char *scratch = connection->loop->scratch;
    ssize_t count = recv(connection->fd, scratch, BAL_HTTP_READ_BYTES, 0);
    if (!bal_http_read_result(connection, count)) return;
    size_t consumed = bal_http_dispatch(connection, scratch, (size_t)count);
    if (connection->closed || !connection->accepting) return;
    if (consumed < (size_t)count) bal_http_keep_tail(connection, scratch + consumed, (size_t)count - consumed);
}

static void bal_http_read_buffered(bal_http_connection *connection) {
    size_t target = bal_http_in_target(connection);
    if (target <= connection->in.length) target = connection->in.length + 1;
    if (!bal_http_in_reserve(connection, target)) {
        bal_http_fail(connection, 503, "server_busy", "request buffers are full; retry later");
        return;
    }
    bal_http_buffer *in = &connection->in;
    ssize_t count = recv(connection->fd, in->data + in->length, in->capacity - in->length, 0);
    if (!bal_http_read_result(connection, count)) return;
    in->length += (size_t)count;
    bal_http_dispatch_buffered(connection);
}

/* Drains and drops input while lingering after the last response. */
static void bal_http_read_linger(bal_http_connection *connection) {
    ssize_t count = recv(connection->fd, connection->loop->scratch, BAL_HTTP_READ_BYTES, 0);
    if (count == 0 || (count < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        bal_http_connection_close(connection);
    }
}

static void bal_http_read(bal_http_connection *connection) {
    if (connection->lingering) {
        bal_http_read_linger(connection);
        return;
    }
    /* A stale readiness event: the ring filled or parsing stopped since it was reported. */
    if (!connection->accepting || connection->peer_closed || bal_http_ring_full(connection)) return;
    if (connection->in.length == 0) {
        bal_http_read_scratch(connection);
    } else {
        bal_http_read_buffered(connection);
    }
}

/* Writes as much output as the socket takes. */
static void bal_http_flush(bal_http_connection *connection) {
    connection->wrote_progress = false;
    while (bal_http_out_pending(connection)) {
        bal_http_buffer *out = &connection->out;
        ssize_t count = send(connection->fd, out->data + connection->out_sent,
                             out->length - connection->out_sent, MSG_NOSIGNAL);
        if (count > 0) {
            connection->out_sent += (size_t)count;
            connection->wrote_progress = true;
            continue;
        }
        if (count < 0 && errno == EINTR) continue;
        if (count < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        bal_http_connection_close(connection);
        return;
    }
    connection->out.length = 0;
    connection->out_sent = 0;
    if (connection->out.capacity > BAL_HTTP_BUFFER_KEEP_BYTES) bal_http_buffer_free(&connection->out);
}

static void bal_http_set_interest(bal_http_connection *connection) {
    uint32_t events = 0;
    if (connection->lingering) {
        events = EPOLLIN;
    } else {
        if (connection->accepting && !connection->peer_closed && !bal_http_ring_full(connection)) {
            events |= EPOLLIN;
        }
        if (bal_http_out_pending(connection)) events |= EPOLLOUT;
    }
    if (events == connection->events) return;
    struct epoll_event event = {.events = events, .data.ptr = connection};
    if (epoll_ctl(connection->loop->epoll_fd, EPOLL_CTL_MOD, connection->fd, &event) != 0) {
        bal_http_connection_close(connection);
        return;
    }
    connection->events = events;
}

/* Picks the one timer that matters now (see bal_http_timer). */
static void bal_http_set_timer(bal_http_connection *connection) {
    bal_http_loop *loop = connection->loop;
    const bal_http_config *config = &loop->server->config;
    if (connection->lingering) return; /* armed once, when lingering began */
    if (bal_http_out_pending(connection)) {
        if (connection->timer != BAL_HTTP_TIMER_WRITE || connection->wrote_progress) {
            bal_http_loop_timer_set(loop, connection, BAL_HTTP_TIMER_WRITE,
                                    loop->now_ms + config->write_timeout_ms);
        }
        return;
    }
    bool reading = connection->accepting && !connection->peer_closed && !bal_http_ring_full(connection);
    if (reading && connection->in.length > 0) {
        if (connection->request_deadline_ms == 0) {
            connection->request_deadline_ms = loop->now_ms + config->request_timeout_ms;
        }
        if (connection->timer != BAL_HTTP_TIMER_REQUEST) {
            bal_http_loop_timer_set(loop, connection, BAL_HTTP_TIMER_REQUEST,
                                    connection->request_deadline_ms);
        }
    } else if (connection->ring_count == 0 && reading) {
        bal_http_loop_timer_set(loop, connection, BAL_HTTP_TIMER_IDLE,
                                loop->now_ms + config->idle_timeout_ms);
    } else {
        /* Waiting for the handler's answers: the server is slow, not the client. A request
         * left half-read meanwhile gets a fresh allowance once reading resumes. */
        connection->request_deadline_ms = 0;
        bal_http_loop_timer_set(loop, connection, BAL_HTTP_TIMER_NONE, 0);
    }
}

/* Everything owed is written and nothing more will be parsed: close, or linger first. */
static void bal_http_finish(bal_http_connection *connection) {
    assert(!connection->accepting && connection->ring_count == 0);
    bal_http_loop *loop = connection->loop;
    if (connection->peer_closed || loop->stopping || connection->lingering) {
        bal_http_connection_close(connection);
        return;
    }
    /* Closing with unread input would reset the connection and could destroy the last
     * response in the client's receive buffer; shut down our side and drain theirs first. */
    bal_http_in_discard(connection);
    shutdown(connection->fd, SHUT_WR);
    connection->lingering = true;
    bal_http_loop_timer_set(loop, connection, BAL_HTTP_TIMER_LINGER,
                            loop->now_ms + loop->server->config.linger_timeout_ms);
}

void bal_http_connection_progress(bal_http_connection *connection) {
    assert(connection != NULL);
    if (connection->closed) return;
    if (!connection->lingering) {
        bal_http_pump(connection);
        if (connection->closed) return;
        if (connection->accepting && !bal_http_ring_full(connection)) {
            bal_http_dispatch_buffered(connection);
            if (connection->closed) return;
        }
        bal_http_flush(connection);
        if (connection->closed) return;
        bool drained = connection->ring_count == 0 && !bal_http_out_pending(connection);
        if (drained && (!connection->accepting || connection->peer_closed)) {
            connection->accepting = false;
            bal_http_finish(connection);
            if (connection->closed) return;
        }
    }
    bal_http_set_interest(connection);
    if (connection->closed) return;
    bal_http_set_timer(connection);
}

void bal_http_connection_on_event(bal_http_connection *connection, uint32_t events) {
    assert(connection != NULL);
    if (connection->closed) return;
    if (events & (EPOLLERR | EPOLLHUP)) {
        bal_http_connection_close(connection);
        return;
    }
    if (events & EPOLLIN) {
        bal_http_read(connection);
        if (connection->closed) return;
    }
    bal_http_connection_progress(connection);
}

void bal_http_connection_on_answer(bal_http_connection *connection) {
    assert(connection != NULL);
    bal_http_connection_progress(connection);
}

/* The loop has already disarmed the timer that fired. */
void bal_http_connection_on_timer(bal_http_connection *connection, bal_http_timer timer) {
    assert(connection != NULL && !connection->closed);
    assert(connection->timer == BAL_HTTP_TIMER_NONE);
    bal_http_loop *loop = connection->loop;
    switch (timer) {
    case BAL_HTTP_TIMER_IDLE:
        BAL_HTTP_COUNT(loop, idle_closed);
        bal_http_connection_close(connection);
        return;
    case BAL_HTTP_TIMER_REQUEST:
        bal_http_fail(connection, 408, "request_timeout", "the request did not arrive in time");
        bal_http_connection_progress(connection);
        return;
    case BAL_HTTP_TIMER_WRITE:
        BAL_HTTP_COUNT(loop, errors_timeout);
        bal_http_connection_close(connection);
        return;
    case BAL_HTTP_TIMER_LINGER:
        bal_http_connection_close(connection);
        return;
    case BAL_HTTP_TIMER_NONE:
    case BAL_HTTP_TIMER_COUNT:
        break;
    }
    assert(0 && "a timer fired that was not armed");
}

void bal_http_connection_stop(bal_http_connection *connection) {
    assert(connection != NULL && connection->loop->stopping);
    if (connection->closed) return;
    if (connection->accepting) {
        connection->accepting = false;
        bal_http_in_discard(connection);
    }
    bal_http_connection_progress(connection);
}

bal_http_connection *bal_http_connection_create(bal_http_loop *loop, int fd) {
    assert(loop != NULL && fd >= 0);
    uint32_t depth = loop->server->config.pipeline_depth_max;
    bal_http_connection *connection = calloc(1, sizeof *connection + depth * sizeof(bal_http_request *));
    if (connection == NULL) return NULL;
    connection->fd = fd;
    connection->loop = loop;
    connection->accepting = true;
    return connection;
}

bool bal_http_connection_start(bal_http_connection *connection) {
    assert(connection != NULL && connection->fd >= 0);
    bal_http_loop *loop = connection->loop;
    assert(pthread_equal(pthread_self(), loop->thread));
    struct epoll_event event = {.events = EPOLLIN, .data.ptr = connection};
    if (epoll_ctl(loop->epoll_fd, EPOLL_CTL_ADD, connection->fd, &event) != 0) return false;
    connection->events = EPOLLIN;
    connection->all_next = loop->connections;
    if (loop->connections != NULL) loop->connections->all_previous = connection;
    loop->connections = connection;
    loop->connection_count++;
    bal_http_loop_timer_set(loop, connection, BAL_HTTP_TIMER_IDLE,
                            loop->now_ms + loop->server->config.idle_timeout_ms);
    if (loop->stopping) bal_http_connection_stop(connection);
    return true;
}

/* Releases the ring: answered requests are recycled, deferred ones are orphaned (their
 * owner still holds them; the loop drops the answer when it comes back). */
static void bal_http_release_ring(bal_http_connection *connection) {
    while (connection->ring_count > 0) {
        bal_http_request *request = bal_http_ring_first(connection);
        bal_http_ring_pop(connection);
        if (request->state == BAL_HTTP_REQUEST_DEFERRED) {
            request->connection = NULL;
        } else {
            assert(request->state != BAL_HTTP_REQUEST_DISPATCHED);
            bal_http_loop_request_give(connection->loop, request);
        }
    }
}

void bal_http_connection_close(bal_http_connection *connection) {
    assert(connection != NULL);
    if (connection->closed) return;
    bal_http_loop *loop = connection->loop;
    connection->closed = true;
    close(connection->fd);
    connection->fd = -1;
    bal_http_release_ring(connection);
    bal_http_in_release(connection);
    bal_http_buffer_free(&connection->out);
    bal_http_loop_timer_set(loop, connection, BAL_HTTP_TIMER_NONE, 0);
    if (connection->all_previous != NULL) connection->all_previous->all_next = connection->all_next;
    else loop->connections = connection->all_next;
    if (connection->all_next != NULL) connection->all_next->all_previous = connection->all_previous;
    connection->all_previous = NULL;
    connection->all_next = loop->graveyard; /* freed after the current batch of events */
    loop->graveyard = connection;
    assert(loop->connection_count > 0);
    loop->connection_count--;
    atomic_fetch_sub_explicit(&loop->open_count, 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(&loop->server->connection_count, 1, memory_order_relaxed);
    BAL_HTTP_COUNT(loop, connections_closed);
}

void bal_http_connection_free(bal_http_connection *connection) {
    assert(connection != NULL && connection->closed);
    assert(connection->ring_count == 0 && connection->in.data == NULL);
    free(connection);
}

void bal_http_request_defer(bal_http_request *request) {
    assert(request != NULL);
    assert(request->state == BAL_HTTP_REQUEST_DISPATCHED);
    assert(pthread_equal(pthread_self(), request->loop->thread));
    request->state = BAL_HTTP_REQUEST_DEFERRED;
    request->loop->deferred_count++;
    BAL_HTTP_COUNT(request->loop, requests_deferred);
}

uint32_t bal_http_request_thread_index(const bal_http_request *request) {
    assert(request != NULL && request->loop != NULL);
    return request->loop->index;
}

/* Hands an answered deferred request back to its loop (any thread; lock-free). */
static void bal_http_complete(bal_http_request *request) {
    bal_http_loop *loop = request->loop;
    bal_http_request *first = atomic_load_explicit(&loop->completed, memory_order_relaxed);
    do {
        request->next = first;
    } while (!atomic_compare_exchange_weak_explicit(&loop->completed, &first, request,
                                                    memory_order_release, memory_order_relaxed));
    /* Only the push onto an empty stack wakes the loop: it takes the whole stack at once. */
    if (first == NULL) bal_http_loop_wake(loop);
}

void bal_http_respond(bal_http_request *request, int status, const char *content_type,
                      const char *extra_headers, const char *body, size_t body_length) {
    assert(request != NULL);
    assert(status >= 200 && status <= 599); /* a final response; 100 Continue is the server's */
    assert(body != NULL || body_length == 0);
    bal_http_response_parts parts = {
        .status = status, .content_type = content_type, .extra_headers = extra_headers,
        .body = body, .body_length = body_length, .omit_body = request->omit_body,
        .connection_close = !request->keep_alive,
        .connection_keep_alive = request->keep_alive && request->http10};
    if (request->state == BAL_HTTP_REQUEST_DEFERRED) {
        request->broken = !bal_http_response_append(&request->response, &parts);
        bal_http_complete(request);
        return;
    }
    assert(request->state == BAL_HTTP_REQUEST_DISPATCHED);
    assert(pthread_equal(pthread_self(), request->loop->thread));
    bal_http_connection *connection = request->connection;
    assert(connection != NULL && !connection->closed);
    if (bal_http_ring_first(connection) == request &&
        bal_http_response_append(&connection->out, &parts)) {
        request->state = BAL_HTTP_REQUEST_WRITTEN;
        return;
    }
    request->broken = !bal_http_response_append(&request->response, &parts);
    request->state = BAL_HTTP_REQUEST_READY;
}

void bal_http_respond_error(bal_http_request *request, int status, const char *code,
                            const char *message) {
    char body[BAL_HTTP_ERROR_BODY_MAX];
    size_t length = bal_http_error_body(body, sizeof body, code, message);
    bal_http_respond(request, status, "application/json", NULL, body, length);
}
