/*
 * cand_evhttp.c -- candidate: libevent 2.1 evhttp (Debian libevent-dev), one event base.
 *   cand_evhttp PORT [COMMIT_US]   (COMMIT_US given: deferred answers through a shard
 *                                   thread, handed back with event_active on a user event)
 */
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/thread.h>

#include <signal.h>

#include "cand_common.h"

static struct event_base *base;
static struct event *wake;
static cand_shard shard;
static pthread_mutex_t done_mutex = PTHREAD_MUTEX_INITIALIZER;
static void **done;
static size_t done_count;
static int deferred;

static void respond(struct evhttp_request *request) {
    struct evbuffer *body = evbuffer_new();
    evbuffer_add_reference(body, CAND_BODY, sizeof CAND_BODY - 1, NULL, NULL);
    evhttp_add_header(evhttp_request_get_output_headers(request), "Content-Type", "application/json");
    evhttp_send_reply(request, 200, "OK", body);
    evbuffer_free(body);
}

static void on_request(struct evhttp_request *request, void *unused) {
    (void)unused;
    if (deferred) cand_shard_push(&shard, request);
    else respond(request);
}

static void deliver(void **items, size_t count, void *unused) {
    (void)unused;
    pthread_mutex_lock(&done_mutex);
    if (done_count + count > CAND_BATCH_MAX) abort();
    memcpy(done + done_count, items, count * sizeof *items);
    done_count += count;
    pthread_mutex_unlock(&done_mutex);
    event_active(wake, EV_READ, 0); /* thread-safe once evthread_use_pthreads() ran */
}

static void on_wake(evutil_socket_t fd, short events, void *unused) {
    (void)fd;
    (void)events;
    (void)unused;
    static void *batch[CAND_BATCH_MAX];
    pthread_mutex_lock(&done_mutex);
    size_t count = done_count;
    memcpy(batch, done, count * sizeof *batch);
    done_count = 0;
    pthread_mutex_unlock(&done_mutex);
    for (size_t i = 0; i < count; i++) respond(batch[i]);
}

int main(int argc, char **argv) {
    int port = argc > 1 ? atoi(argv[1]) : 8080;
    deferred = argc > 2;
    signal(SIGPIPE, SIG_IGN); /* a client closing early must not kill the server */
    evthread_use_pthreads();
    base = event_base_new();
    struct evhttp *http = evhttp_new(base);
    evhttp_set_gencb(http, on_request, NULL);
    evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_POST);
    if (evhttp_bind_socket(http, "127.0.0.1", (uint16_t)port) != 0) return 1;
    if (deferred) {
        done = malloc(CAND_BATCH_MAX * sizeof *done);
        wake = event_new(base, -1, EV_PERSIST, on_wake, NULL);
        event_add(wake, NULL);
        cand_shard_start(&shard, (unsigned)atoi(argv[2]), deliver, NULL);
    }
    event_base_dispatch(base);
    return 0;
}
