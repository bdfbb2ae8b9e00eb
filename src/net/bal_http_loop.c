/*
 * bal_http_loop.c -- one event loop per I/O thread.
 *
 * A loop waits in epoll_wait on its connections, its eventfd and (loop 0 only) the
 * listening socket. Loop 0 accepts and hands each new connection to the loop that owns the
 * fewest, so a handful of long-lived client connections still spread over every thread
 * (SO_REUSEPORT hashing would not guarantee that, and would let a second server on the
 * same port silently take half the traffic). The eventfd wakes a loop for three reasons:
 * deferred answers on its completion stack, connections on its incoming stack, and stop.
 * Timers are per-kind lists kept in deadline order; with one timeout per kind almost
 * every insertion is an append.
 *
 * A connection closed while a batch of events is being handled goes to the graveyard and
 * is freed after the batch, because a later event of the same batch may still name it.
 */
#include <assert.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bal_http_internal.h"

#define BAL_HTTP_REFUSAL_BODY \
    "{\"error\":\"too_many_connections\",\"message\":\"connection limit reached; retry\"}"
#define BAL_HTTP_REFUSAL_BODY_LENGTH "76"
static const char bal_http_refusal[] =
    "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    "Content-Length: " BAL_HTTP_REFUSAL_BODY_LENGTH "\r\nConnection: close\r\n\r\n" BAL_HTTP_REFUSAL_BODY;
_Static_assert(sizeof(BAL_HTTP_REFUSAL_BODY) - 1 == 76, "Content-Length of the refusal matches its body");

uint64_t bal_http_now_ms(void) {
    struct timespec now;
    int result = clock_gettime(CLOCK_MONOTONIC, &now);
    assert(result == 0);
    (void)result;
    return (uint64_t)now.tv_sec * 1000u + (uint64_t)now.tv_nsec / 1000000u;
}

static bool bal_http_epoll_add(int epoll_fd, int fd, uint64_t tag) {
    struct epoll_event event = {.events = EPOLLIN, .data.u64 = tag};
    return epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &event) == 0;
}

bal_http_status bal_http_loop_init(bal_http_loop *loop, bal_http_server *server, uint32_t index,
                                   int listen_fd, char *errstr, size_t errstr_size) {
    assert(loop != NULL && server != NULL);
    assert((index == 0) == (listen_fd >= 0));
    memset(loop, 0, sizeof *loop);
    loop->server = server;
    loop->index = index;
    loop->listen_fd = listen_fd;
    loop->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    loop->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    loop->scratch = malloc(BAL_HTTP_READ_BYTES);
    atomic_init(&loop->completed, NULL);
    atomic_init(&loop->incoming, NULL);
    atomic_init(&loop->open_count, 0);
    loop->now_ms = bal_http_now_ms();
    if (loop->epoll_fd < 0 || loop->wake_fd < 0 || loop->scratch == NULL ||
        !bal_http_epoll_add(loop->epoll_fd, loop->wake_fd, BAL_HTTP_TAG_WAKE)) {
        snprintf(errstr, errstr_size, "event loop %u: %s", index, strerror(errno));
        return loop->scratch == NULL ? BAL_HTTP_ERROR_MEMORY : BAL_HTTP_ERROR_SYSTEM;
    }
    if (listen_fd >= 0) {
        if (!bal_http_epoll_add(loop->epoll_fd, listen_fd, BAL_HTTP_TAG_LISTENER)) {
            snprintf(errstr, errstr_size, "event loop %u: %s", index, strerror(errno));
            return BAL_HTTP_ERROR_SYSTEM;
        }
        loop->listening = true;
    }
    return BAL_HTTP_OK;
}

void bal_http_loop_wake(bal_http_loop *loop) {
    assert(loop != NULL);
    uint64_t one = 1;
    /* Cannot fail short of a closed descriptor: the counter would need 2^64 wakes to fill. */
    ssize_t written = write(loop->wake_fd, &one, sizeof one);
    (void)written;
}

bal_http_request *bal_http_loop_request_take(bal_http_loop *loop) {
    bal_http_request *request = loop->free_requests;
    if (request != NULL) {
        loop->free_requests = request->next;
    } else {
        request = calloc(1, sizeof *request);
        if (request == NULL) return NULL;
    }
    assert(request->state == BAL_HTTP_REQUEST_FREE && request->response.length == 0);
    request->loop = loop;
    request->next = NULL;
    request->broken = false;
    request->omit_body = false;
    request->http10 = false;
    request->keep_alive = true;
    return request;
}

void bal_http_loop_request_give(bal_http_loop *loop, bal_http_request *request) {
    assert(loop != NULL && request != NULL && request->loop == loop);
    assert(request->state != BAL_HTTP_REQUEST_FREE);
    if (request->response.capacity > BAL_HTTP_RESPONSE_KEEP_BYTES) {
        bal_http_buffer_free(&request->response);
    }
    request->response.length = 0;
    request->state = BAL_HTTP_REQUEST_FREE;
    request->connection = NULL;
    request->next = loop->free_requests;
    loop->free_requests = request;
}

static void bal_http_timer_unlink(bal_http_loop *loop, bal_http_connection *connection) {
    bal_http_timer_list *list = &loop->timers[connection->timer];
    if (connection->timer_previous != NULL) connection->timer_previous->timer_next = connection->timer_next;
    else list->first = connection->timer_next;
    if (connection->timer_next != NULL) connection->timer_next->timer_previous = connection->timer_previous;
    else list->last = connection->timer_previous;
    connection->timer_previous = NULL;
    connection->timer_next = NULL;
}

void bal_http_loop_timer_set(bal_http_loop *loop, bal_http_connection *connection,
                             bal_http_timer timer, uint64_t deadline_ms) {
    assert(loop != NULL && connection != NULL && timer < BAL_HTTP_TIMER_COUNT);
    if (connection->timer != BAL_HTTP_TIMER_NONE) bal_http_timer_unlink(loop, connection);
    connection->timer = timer;
    connection->deadline_ms = deadline_ms;
    if (timer == BAL_HTTP_TIMER_NONE) return;
    /* Keep the list in deadline order, searching from the end where new deadlines go. */
    bal_http_timer_list *list = &loop->timers[timer];
    bal_http_connection *before = list->last;
    while (before != NULL && before->deadline_ms > deadline_ms) before = before->timer_previous;
    connection->timer_previous = before;
    connection->timer_next = before != NULL ? before->timer_next : list->first;
    if (connection->timer_next != NULL) connection->timer_next->timer_previous = connection;
    else list->last = connection;
    if (before != NULL) before->timer_next = connection;
    else list->first = connection;
}

void bal_http_loop_flush_later(bal_http_loop *loop, bal_http_connection *connection) {
    if (connection->in_flush_list) return;
    connection->in_flush_list = true;
    connection->flush_next = loop->flush_list;
    loop->flush_list = connection;
}

static void bal_http_push_incoming(bal_http_loop *loop, bal_http_connection *connection) {
    bal_http_connection *first = atomic_load_explicit(&loop->incoming, memory_order_relaxed);
    do {
        connection->incoming_next = first;
    } while (!atomic_compare_exchange_weak_explicit(&loop->incoming, &first, connection,
                                                    memory_order_release, memory_order_relaxed));
    if (first == NULL) bal_http_loop_wake(loop);
}

static bal_http_loop *bal_http_least_loaded(bal_http_server *server) {
    bal_http_loop *best = &server->loops[0];
    uint32_t best_count = atomic_load_explicit(&best->open_count, memory_order_relaxed);
    for (uint32_t i = 1; i < server->loop_count; i++) {
        uint32_t count = atomic_load_explicit(&server->loops[i].open_count, memory_order_relaxed);
        if (count < best_count) {
            best = &server->loops[i];
            best_count = count;
        }
    }
    return best;
}

/* Over the limit: a best-effort 503 so the client knows why, then close. */
static void bal_http_refuse(bal_http_loop *loop, int fd) {
    ssize_t sent = send(fd, bal_http_refusal, sizeof bal_http_refusal - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
    (void)sent;
    close(fd);
    BAL_HTTP_COUNT(loop, connections_refused);
}

static void bal_http_admit(bal_http_loop *loop, int fd) {
    bal_http_server *server = loop->server;
    if (atomic_load_explicit(&server->stop_requested, memory_order_acquire)) {
        /* Accepted in the same batch as the stop: another loop may already have finished. */
        close(fd);
        return;
    }
    uint32_t count = atomic_fetch_add_explicit(&server->connection_count, 1, memory_order_relaxed);
    if (count >= server->config.connections_max) {
        atomic_fetch_sub_explicit(&server->connection_count, 1, memory_order_relaxed);
        bal_http_refuse(loop, fd);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    bal_http_loop *target = bal_http_least_loaded(server);
    bal_http_connection *connection = bal_http_connection_create(target, fd);
    if (connection == NULL) {
        atomic_fetch_sub_explicit(&server->connection_count, 1, memory_order_relaxed);
        close(fd);
        return;
    }
    atomic_fetch_add_explicit(&target->open_count, 1, memory_order_relaxed);
    BAL_HTTP_COUNT(loop, connections_accepted);
    bal_http_push_incoming(target, connection);
}

static void bal_http_pause_accepting(bal_http_loop *loop) {
    if (!loop->listening) return;
    epoll_ctl(loop->epoll_fd, EPOLL_CTL_DEL, loop->listen_fd, NULL);
    loop->listening = false;
    loop->accept_resume_ms = loop->now_ms + BAL_HTTP_ACCEPT_PAUSE_MS;
}

static void bal_http_accept(bal_http_loop *loop) {
    for (uint32_t i = 0; i < BAL_HTTP_ACCEPTS_PER_WAKE_MAX && loop->listening; i++) {
        int fd = accept4(loop->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            bal_http_admit(loop, fd);
            continue;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) return;
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
            /* Out of descriptors or memory: rest instead of spinning on a ready socket. */
            bal_http_pause_accepting(loop);
            return;
        }
        /* ECONNABORTED, EINTR, EPROTO and friends concern one connection: try the next. */
    }
}

static void bal_http_close_listener(bal_http_loop *loop) {
    if (loop->listen_fd < 0) return;
    if (loop->listening) epoll_ctl(loop->epoll_fd, EPOLL_CTL_DEL, loop->listen_fd, NULL);
    close(loop->listen_fd);
    loop->listen_fd = -1;
    loop->listening = false;
    loop->accept_resume_ms = 0;
}

static void bal_http_begin_stop(bal_http_loop *loop) {
    assert(!loop->stopping);
    loop->stopping = true;
    bal_http_close_listener(loop);
    bal_http_connection *connection = loop->connections;
    while (connection != NULL) {
        bal_http_connection *next = connection->all_next; /* stop may close and unlink it */
        bal_http_connection_stop(connection);
        connection = next;
    }
}

static void bal_http_take_incoming(bal_http_loop *loop) {
    bal_http_connection *connection = atomic_exchange_explicit(&loop->incoming, NULL, memory_order_acquire);
    while (connection != NULL) {
        bal_http_connection *next = connection->incoming_next;
        connection->incoming_next = NULL;
        if (!bal_http_connection_start(connection)) {
            close(connection->fd);
            atomic_fetch_sub_explicit(&loop->open_count, 1, memory_order_relaxed);
            atomic_fetch_sub_explicit(&loop->server->connection_count, 1, memory_order_relaxed);
            free(connection);
        }
        connection = next;
    }
}

/* Deferred answers came back: put them in their ring, then flush each connection once. */
static void bal_http_take_completed(bal_http_loop *loop) {
    bal_http_request *request = atomic_exchange_explicit(&loop->completed, NULL, memory_order_acquire);
    while (request != NULL) {
        bal_http_request *next = request->next;
        assert(request->state == BAL_HTTP_REQUEST_DEFERRED && request->loop == loop);
        assert(loop->deferred_count > 0);
        loop->deferred_count--;
        request->next = NULL;
        request->state = BAL_HTTP_REQUEST_READY;
        if (request->connection == NULL) {
            BAL_HTTP_COUNT(loop, responses_dropped);
            bal_http_loop_request_give(loop, request);
        } else {
            bal_http_loop_flush_later(loop, request->connection);
        }
        request = next;
    }
    while (loop->flush_list != NULL) {
        bal_http_connection *connection = loop->flush_list;
        loop->flush_list = connection->flush_next;
        connection->flush_next = NULL;
        connection->in_flush_list = false;
        bal_http_connection_on_answer(connection);
    }
}

static void bal_http_on_wake(bal_http_loop *loop) {
    uint64_t value = 0;
    /* Read before taking the stacks: a push after this read writes the eventfd again. */
    ssize_t count = read(loop->wake_fd, &value, sizeof value);
    (void)count;
    if (!loop->stopping && atomic_load_explicit(&loop->server->stop_requested, memory_order_acquire)) {
        bal_http_begin_stop(loop);
    }
    bal_http_take_incoming(loop);
    bal_http_take_completed(loop);
}

static void bal_http_run_timers(bal_http_loop *loop) {
    for (uint32_t kind = BAL_HTTP_TIMER_IDLE; kind < BAL_HTTP_TIMER_COUNT; kind++) {
        bal_http_timer_list *list = &loop->timers[kind];
        while (list->first != NULL && list->first->deadline_ms <= loop->now_ms) {
            bal_http_connection *connection = list->first;
            bal_http_loop_timer_set(loop, connection, BAL_HTTP_TIMER_NONE, 0);
            bal_http_connection_on_timer(connection, (bal_http_timer)kind);
        }
    }
    if (loop->accept_resume_ms != 0 && loop->accept_resume_ms <= loop->now_ms && loop->listen_fd >= 0) {
        loop->accept_resume_ms = 0;
        loop->listening = bal_http_epoll_add(loop->epoll_fd, loop->listen_fd, BAL_HTTP_TAG_LISTENER);
        if (!loop->listening) loop->accept_resume_ms = loop->now_ms + BAL_HTTP_ACCEPT_PAUSE_MS;
    }
}

/* Milliseconds until the earliest timer, bounded so the stop flag is seen regardless. */
static int bal_http_wait_ms(const bal_http_loop *loop) {
    uint64_t earliest = loop->now_ms + BAL_HTTP_WAIT_MS_MAX;
    for (uint32_t kind = BAL_HTTP_TIMER_IDLE; kind < BAL_HTTP_TIMER_COUNT; kind++) {
        const bal_http_connection *first = loop->timers[kind].first;
        if (first != NULL && first->deadline_ms < earliest) earliest = first->deadline_ms;
    }
    if (loop->accept_resume_ms != 0 && loop->accept_resume_ms < earliest) earliest = loop->accept_resume_ms;
    return earliest <= loop->now_ms ? 0 : (int)(earliest - loop->now_ms);
}

static void bal_http_bury(bal_http_loop *loop) {
    while (loop->graveyard != NULL) {
        bal_http_connection *connection = loop->graveyard;
        loop->graveyard = connection->all_next;
        bal_http_connection_free(connection);
    }
}

static bool bal_http_loop_finished(const bal_http_loop *loop) {
    return loop->stopping && loop->connection_count == 0 && loop->deferred_count == 0 &&
           atomic_load_explicit(&loop->incoming, memory_order_relaxed) == NULL;
}

static void bal_http_handle_events(bal_http_loop *loop, const struct epoll_event *events, int count) {
    for (int i = 0; i < count; i++) {
        uint64_t tag = events[i].data.u64;
        if (tag == BAL_HTTP_TAG_LISTENER) {
            if (loop->listening) bal_http_accept(loop);
        } else if (tag == BAL_HTTP_TAG_WAKE) {
            bal_http_on_wake(loop);
        } else {
            bal_http_connection_on_event(events[i].data.ptr, events[i].events);
        }
    }
}

void bal_http_loop_run(bal_http_loop *loop) {
    assert(loop != NULL);
    loop->thread = pthread_self();
    struct epoll_event events[BAL_HTTP_EVENTS_MAX];
    loop->now_ms = bal_http_now_ms();
    while (!bal_http_loop_finished(loop)) {
        if (!loop->stopping && atomic_load_explicit(&loop->server->stop_requested, memory_order_acquire)) {
            bal_http_begin_stop(loop);
            continue;
        }
        int count = epoll_wait(loop->epoll_fd, events, BAL_HTTP_EVENTS_MAX, bal_http_wait_ms(loop));
        if (count < 0) {
            assert(errno == EINTR);
            count = 0;
        }
        loop->now_ms = bal_http_now_ms();
        bal_http_handle_events(loop, events, count);
        bal_http_run_timers(loop);
        bal_http_bury(loop);
    }
}

void bal_http_loop_free(bal_http_loop *loop) {
    assert(loop != NULL);
    assert(loop->deferred_count == 0);
    /* Connections handed over after this loop had finished: never started. */
    bal_http_connection *incoming = atomic_exchange(&loop->incoming, NULL);
    while (incoming != NULL) {
        bal_http_connection *next = incoming->incoming_next;
        close(incoming->fd);
        free(incoming);
        incoming = next;
    }
    while (loop->connections != NULL) bal_http_connection_close(loop->connections);
    bal_http_bury(loop);
    while (loop->free_requests != NULL) {
        bal_http_request *request = loop->free_requests;
        loop->free_requests = request->next;
        bal_http_buffer_free(&request->response);
        free(request);
    }
    bal_http_close_listener(loop);
    if (loop->wake_fd >= 0) close(loop->wake_fd);
    if (loop->epoll_fd >= 0) close(loop->epoll_fd);
    free(loop->scratch);
    loop->scratch = NULL;
}
