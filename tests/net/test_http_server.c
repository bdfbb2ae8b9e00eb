/*
 * Integration tests of the HTTP server over real loopback sockets: keep-alive, pipelining
 * with deferred answers produced out of order on another thread, every protocol refusal,
 * the timeouts, the connection limit, the buffer budget, and stop() with work in flight.
 *
 * A "shard" thread stands in for the ledger: deferred requests queue to it, and it answers
 * a batch at a time in reverse order, so the server has to restore the request order.
 */
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#include "bal_http.h"
#include "bal_test.h"
#include "net_test_client.h"

#define SHARD_QUEUE_MAX 1024
/* A response larger than any socket buffer, for the write timeout. */
#define BIG_RESPONSE_BYTES (4 * 1024 * 1024)

typedef struct shard {
    pthread_mutex_t mutex;
    pthread_cond_t changed;
    bal_http_request *requests[SHARD_QUEUE_MAX];
    int ids[SHARD_QUEUE_MAX];
    size_t count;
    size_t count_max;   /* the most requests ever waiting at once */
    size_t batch;       /* answer once this many wait */
    bool hold;          /* answer nothing until released */
    bool quit;
    size_t answered;
    pthread_t thread;
} shard;

static shard the_shard;

static void shard_answer_all(shard *s) {
    /* Reverse order on purpose: the server must put the responses back in request order. */
    for (size_t i = s->count; i > 0; i--) {
        char body[64];
        int length = snprintf(body, sizeof body, "{\"deferred\":%d}", s->ids[i - 1]);
        bal_http_respond(s->requests[i - 1], 200, "application/json", NULL, body, (size_t)length);
        s->answered++;
    }
    s->count = 0;
}

static void *shard_main(void *argument) {
    shard *s = argument;
    pthread_mutex_lock(&s->mutex);
    for (;;) {
        while (!s->quit && (s->hold || s->count < s->batch || s->count == 0)) {
            pthread_cond_wait(&s->changed, &s->mutex);
        }
        if (s->quit && s->count == 0) break;
        shard_answer_all(s);
        pthread_cond_broadcast(&s->changed);
    }
    pthread_mutex_unlock(&s->mutex);
    return NULL;
}

static void shard_start(size_t batch, bool hold) {
    memset(&the_shard, 0, sizeof the_shard);
    pthread_mutex_init(&the_shard.mutex, NULL);
    pthread_cond_init(&the_shard.changed, NULL);
    the_shard.batch = batch;
    the_shard.hold = hold;
    pthread_create(&the_shard.thread, NULL, shard_main, &the_shard);
}

static void shard_set(size_t batch, bool hold) {
    pthread_mutex_lock(&the_shard.mutex);
    the_shard.batch = batch;
    the_shard.hold = hold;
    pthread_cond_broadcast(&the_shard.changed);
    pthread_mutex_unlock(&the_shard.mutex);
}

/* Waits until `count` requests are queued at the shard; false after 5 s. */
static bool shard_wait_queued(size_t count) {
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 5;
    pthread_mutex_lock(&the_shard.mutex);
    int result = 0;
    while (the_shard.count < count && result == 0) {
        result = pthread_cond_timedwait(&the_shard.changed, &the_shard.mutex, &deadline);
    }
    bool reached = the_shard.count >= count;
    pthread_mutex_unlock(&the_shard.mutex);
    return reached;
}

static void shard_stop(void) {
    pthread_mutex_lock(&the_shard.mutex);
    the_shard.quit = true;
    the_shard.hold = false;
    pthread_cond_broadcast(&the_shard.changed);
    pthread_mutex_unlock(&the_shard.mutex);
    pthread_join(the_shard.thread, NULL);
}

static void shard_enqueue(bal_http_request *request, int id) {
    pthread_mutex_lock(&the_shard.mutex);
    if (the_shard.count == SHARD_QUEUE_MAX) abort();
    the_shard.requests[the_shard.count] = request;
    the_shard.ids[the_shard.count] = id;
    the_shard.count++;
    if (the_shard.count > the_shard.count_max) the_shard.count_max = the_shard.count;
    pthread_cond_broadcast(&the_shard.changed);
    pthread_mutex_unlock(&the_shard.mutex);
}

static bool path_is(const bal_http_head *head, const char *path) {
    return head->path_length == strlen(path) && memcmp(head->path, path, head->path_length) == 0;
}

static int query_number(const bal_http_head *head) {
    char text[32] = {0};
    size_t length = head->query_length < sizeof text - 1 ? head->query_length : sizeof text - 1;
    if (head->query != NULL) memcpy(text, head->query, length);
    return atoi(text);
}

static void handler(void *context, bal_http_request *request, const bal_http_head *head,
                    const char *body, size_t body_length) {
    (void)context;
    char text[128];
    if (path_is(head, "/defer")) {
        bal_http_request_defer(request);
        shard_enqueue(request, query_number(head));
    } else if (path_is(head, "/echo")) {
        bal_http_respond(request, 200, "application/octet-stream", NULL, body, body_length);
    } else if (path_is(head, "/id")) {
        int length = snprintf(text, sizeof text, "{\"id\":%d}", query_number(head));
        bal_http_respond(request, 200, "application/json", "X-Test: yes\r\n", text, (size_t)length);
    } else if (path_is(head, "/header")) {
        const char *value = NULL;
        size_t length = 0;
        bal_http_head_find(head, "X-Api-Key", &value, &length);
        bal_http_respond(request, 200, "text/plain", NULL, value, length);
    } else if (path_is(head, "/big")) {
        static char big[BIG_RESPONSE_BYTES];
        bal_http_respond(request, 200, "application/octet-stream", NULL, big, sizeof big);
    } else if (path_is(head, "/thread")) {
        int length = snprintf(text, sizeof text, "%u", bal_http_request_thread_index(request));
        bal_http_respond(request, 200, "text/plain", NULL, text, (size_t)length);
    } else {
        bal_http_respond_error(request, 404, "not_found", "no such route");
    }
}

typedef struct running {
    bal_http_server *server;
    uint16_t port;
    pthread_t thread;
    atomic_bool returned;
} running;

static void *run_main(void *argument) {
    running *r = argument;
    bal_http_server_run(r->server);
    atomic_store(&r->returned, true);
    return NULL;
}

static bool server_start(running *r, const bal_http_config *config) {
    memset(r, 0, sizeof *r);
    char errstr[256];
    bal_http_status status = bal_http_server_create(config, handler, NULL, &r->server, errstr, sizeof errstr);
    if (status != BAL_HTTP_OK) {
        fprintf(stderr, "create: %s: %s\n", bal_http_status_string(status), errstr);
        return false;
    }
    r->port = bal_http_server_port(r->server);
    pthread_create(&r->thread, NULL, run_main, r);
    return true;
}

static void server_finish(running *r) {
    bal_http_server_stop(r->server);
    pthread_join(r->thread, NULL);
    bal_http_server_destroy(r->server);
}

static void test_config(bal_http_config *config) {
    bal_http_config_init(config);
    config->request_timeout_ms = 2000;
    config->linger_timeout_ms = 200;
}

static bool get_ok(net_test_client *client, const char *request, int status, const char *body) {
    net_test_response response;
    if (!net_test_send_text(client, request) || !net_test_read_response(client, &response)) return false;
    bool ok = response.status == status && (body == NULL || strcmp(response.body, body) == 0);
    if (!ok) fprintf(stderr, "got %d %s\n", response.status, response.body);
    net_test_response_free(&response);
    return ok;
}

static void test_keep_alive(void) {
    bal_http_config config;
    test_config(&config);
    running r;
    CHECK(server_start(&r, &config));
    net_test_client client;
    CHECK(net_test_connect(&client, r.port));
    for (int i = 0; i < 20; i++) {
        char request[128];
        snprintf(request, sizeof request, "GET /id?%d HTTP/1.1\r\nHost: t\r\n\r\n", i);
        char expected[64];
        snprintf(expected, sizeof expected, "{\"id\":%d}", i);
        CHECK(get_ok(&client, request, 200, expected));
    }
    net_test_response response;
    CHECK(net_test_send_text(&client, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello"));
    CHECK(net_test_read_response(&client, &response) && response.status == 200);
    CHECK(strcmp(response.body, "hello") == 0 && !response.connection_close);
    CHECK(net_test_has_header(&response, "Content-Type", "application/octet-stream"));
    CHECK(net_test_has_header(&response, "Date", ""));
    net_test_response_free(&response);
    CHECK(get_ok(&client, "GET /header HTTP/1.1\r\nHost: t\r\nX-Api-Key: k-123\r\n\r\n", 200, "k-123"));
    CHECK(get_ok(&client, "GET /nowhere HTTP/1.1\r\nHost: t\r\n\r\n", 404,
                 "{\"error\":\"not_found\",\"message\":\"no such route\"}"));
    /* HEAD: Content-Length of the body that GET would send, no body. */
    CHECK(net_test_send_text(&client, "HEAD /id?7 HTTP/1.1\r\nHost: t\r\n\r\nGET /id?8 HTTP/1.1\r\nHost: t\r\n\r\n"));
    CHECK(net_test_read_until(&client, "{\"id\":8}"));
    client.buffer[client.length] = '\0';
    const char *second = strstr(client.buffer, "\r\n\r\n");
    CHECK(strncmp(client.buffer, "HTTP/1.1 200 OK\r\n", 17) == 0);
    CHECK(strstr(client.buffer, "Content-Length: 8\r\n") != NULL);
    CHECK(second != NULL && strncmp(second + 4, "HTTP/1.1 200 OK\r\n", 17) == 0);
    net_test_close(&client);
    server_finish(&r);
}

static void test_pipelining_immediate(void) {
    bal_http_config config;
    test_config(&config);
    running r;
    CHECK(server_start(&r, &config));
    net_test_client client;
    CHECK(net_test_connect(&client, r.port));
    char requests[8192];
    size_t length = 0;
    for (int i = 0; i < 50; i++) {
        length += (size_t)snprintf(requests + length, sizeof requests - length,
                                   "GET /id?%d HTTP/1.1\r\nHost: t\r\n\r\n", i);
    }
    CHECK(net_test_send(&client, requests, length));
    for (int i = 0; i < 50; i++) {
        net_test_response response;
        char expected[64];
        snprintf(expected, sizeof expected, "{\"id\":%d}", i);
        CHECK(net_test_read_response(&client, &response) && strcmp(response.body, expected) == 0);
        net_test_response_free(&response);
    }
    net_test_close(&client);
    server_finish(&r);
}

/* Deferred answers come back in reverse order from another thread; responses still leave
 * in request order, and immediate answers queue behind deferred ones. */
static void test_pipelining_deferred(void) {
    bal_http_config config;
    test_config(&config);
    shard_start(8, false);
    running r;
    CHECK(server_start(&r, &config));
    net_test_client client;
    CHECK(net_test_connect(&client, r.port));
    char requests[8192];
    size_t length = 0;
    for (int i = 0; i < 8; i++) {
        length += (size_t)snprintf(requests + length, sizeof requests - length,
                                   "POST /defer?%d HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n{}", i);
        if (i == 3) {
            length += (size_t)snprintf(requests + length, sizeof requests - length,
                                       "GET /id?100 HTTP/1.1\r\nHost: t\r\n\r\n");
        }
    }
    CHECK(net_test_send(&client, requests, length));
    for (int i = 0; i < 9; i++) {
        net_test_response response;
        char expected[64];
        if (i == 4) snprintf(expected, sizeof expected, "{\"id\":100}");
        else snprintf(expected, sizeof expected, "{\"deferred\":%d}", i < 4 ? i : i - 1);
        CHECK(net_test_read_response(&client, &response) && strcmp(response.body, expected) == 0);
        net_test_response_free(&response);
    }
    net_test_close(&client);
    server_finish(&r);
    shard_stop();
}

/* With a pipeline depth of 4 the server never has more than 4 requests of a connection in
 * flight; the others wait in the socket until answers drain. */
static void test_pipeline_depth(void) {
    bal_http_config config;
    test_config(&config);
    config.pipeline_depth_max = 4;
    shard_start(1, false);
    running r;
    CHECK(server_start(&r, &config));
    shard_set(1, true);
    net_test_client client;
    CHECK(net_test_connect(&client, r.port));
    char requests[8192];
    size_t length = 0;
    for (int i = 0; i < 40; i++) {
        length += (size_t)snprintf(requests + length, sizeof requests - length,
                                   "GET /defer?%d HTTP/1.1\r\nHost: t\r\n\r\n", i);
    }
    CHECK(net_test_send(&client, requests, length));
    CHECK(shard_wait_queued(4));
    usleep(100 * 1000);
    pthread_mutex_lock(&the_shard.mutex);
    CHECK(the_shard.count == 4);
    pthread_mutex_unlock(&the_shard.mutex);
    shard_set(1, false);
    for (int i = 0; i < 40; i++) {
        net_test_response response;
        char expected[64];
        snprintf(expected, sizeof expected, "{\"deferred\":%d}", i);
        CHECK(net_test_read_response(&client, &response) && strcmp(response.body, expected) == 0);
        net_test_response_free(&response);
    }
    CHECK(the_shard.count_max <= 4);
    net_test_close(&client);
    server_finish(&r);
    shard_stop();
}

/* Sends a request and expects one error response with this status and code, then close. */
static void expect_refusal(uint16_t port, const char *request, size_t length, int status, const char *code) {
    net_test_client client;
    CHECK(net_test_connect(&client, port));
    CHECK(net_test_send(&client, request, length));
    net_test_response response;
    bool read = net_test_read_response(&client, &response);
    CHECK(read && response.status == status);
    if (read) {
        char expected[64];
        snprintf(expected, sizeof expected, "{\"error\":\"%s\"", code);
        CHECK(strncmp(response.body, expected, strlen(expected)) == 0);
        CHECK(response.connection_close);
        if (response.status != status) fprintf(stderr, "expected %d, got %d %s\n", status, response.status, response.body);
        net_test_response_free(&response);
    }
    CHECK(net_test_wait_closed(&client, 3000));
    net_test_close(&client);
}

static void test_refusals(void) {
    bal_http_config config;
    test_config(&config);
    config.body_bytes_max = 1000;
    running r;
    CHECK(server_start(&r, &config));
    net_test_client bystander;
    CHECK(net_test_connect(&bystander, r.port));
    CHECK(get_ok(&bystander, "GET /id?1 HTTP/1.1\r\nHost: t\r\n\r\n", 200, "{\"id\":1}"));

    const char garbage[] = "\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03 binary";
    expect_refusal(r.port, garbage, sizeof garbage - 1, 400, "invalid_http");
    const char *bad_header = "GET / HTTP/1.1\r\nHost: t\r\nBad Header: x\r\n\r\n";
    expect_refusal(r.port, bad_header, strlen(bad_header), 400, "invalid_http");
    char *big = malloc(40000);
    int offset = snprintf(big, 40000, "GET / HTTP/1.1\r\nHost: t\r\nX-Big: ");
    memset(big + offset, 'a', 20000);
    memcpy(big + offset + 20000, "\r\n\r\n", 4);
    expect_refusal(r.port, big, (size_t)offset + 20004, 431, "headers_too_large");
    free(big);
    const char *too_long = "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1001\r\n\r\n";
    expect_refusal(r.port, too_long, strlen(too_long), 413, "body_too_large");
    const char *chunked = "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    expect_refusal(r.port, chunked, strlen(chunked), 411, "length_required");
    const char *http2 = "GET / HTTP/2.0\r\nHost: t\r\n\r\n";
    expect_refusal(r.port, http2, strlen(http2), 505, "http_version_not_supported");
    /* An error after good pipelined requests: the good ones are answered first, in order. */
    net_test_client client;
    CHECK(net_test_connect(&client, r.port));
    CHECK(net_test_send_text(&client, "GET /id?5 HTTP/1.1\r\nHost: t\r\n\r\nBAD\x01 / HTTP/1.1\r\n\r\n"));
    net_test_response response;
    CHECK(net_test_read_response(&client, &response) && response.status == 200);
    net_test_response_free(&response);
    CHECK(net_test_read_response(&client, &response) && response.status == 400);
    net_test_response_free(&response);
    CHECK(net_test_wait_closed(&client, 3000));
    net_test_close(&client);

    /* The server is still up, and the connection opened before all this still works. */
    CHECK(get_ok(&bystander, "GET /id?2 HTTP/1.1\r\nHost: t\r\n\r\n", 200, "{\"id\":2}"));
    net_test_close(&bystander);
    bal_http_stats stats;
    bal_http_server_stats(r.server, &stats);
    CHECK(stats.errors_invalid == 5 && stats.errors_too_large == 2);
    server_finish(&r);
}

static void test_connection_semantics(void) {
    bal_http_config config;
    test_config(&config);
    running r;
    CHECK(server_start(&r, &config));
    net_test_client client;
    net_test_response response;
    /* HTTP/1.0 without keep-alive: answered, then closed. */
    CHECK(net_test_connect(&client, r.port));
    CHECK(net_test_send_text(&client, "GET /id?1 HTTP/1.0\r\n\r\n"));
    CHECK(net_test_read_response(&client, &response) && response.status == 200 && response.connection_close);
    net_test_response_free(&response);
    CHECK(net_test_wait_closed(&client, 3000));
    net_test_close(&client);
    /* HTTP/1.0 with keep-alive: confirmed and kept. */
    CHECK(net_test_connect(&client, r.port));
    CHECK(net_test_send_text(&client, "GET /id?2 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
    CHECK(net_test_read_response(&client, &response) && response.connection_keep_alive);
    net_test_response_free(&response);
    CHECK(get_ok(&client, "GET /id?3 HTTP/1.1\r\nHost: t\r\n\r\n", 200, "{\"id\":3}"));
    net_test_close(&client);
    /* Connection: close with more pipelined behind it: only the first is answered. */
    CHECK(net_test_connect(&client, r.port));
    CHECK(net_test_send_text(&client, "GET /id?4 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
                                      "GET /id?5 HTTP/1.1\r\nHost: t\r\n\r\n"));
    CHECK(net_test_read_response(&client, &response) && response.connection_close);
    CHECK(response.body != NULL && strcmp(response.body, "{\"id\":4}") == 0);
    net_test_response_free(&response);
    CHECK(net_test_wait_closed(&client, 3000));
    net_test_close(&client);
    /* Expect: 100-continue: the interim response comes before the body is sent. */
    CHECK(net_test_connect(&client, r.port));
    CHECK(net_test_send_text(&client, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n"));
    CHECK(net_test_read_response(&client, &response) && response.status == 100);
    net_test_response_free(&response);
    CHECK(net_test_send_text(&client, "abc"));
    CHECK(net_test_read_response(&client, &response) && response.status == 200 && strcmp(response.body, "abc") == 0);
    net_test_response_free(&response);
    net_test_close(&client);
    server_finish(&r);
}

static void test_large_body_and_budget(void) {
    bal_http_config config;
    test_config(&config);
    config.buffer_bytes_total_max = 1536 * 1024;
    running r;
    CHECK(server_start(&r, &config));
    size_t body_length = 1024 * 1024;
    char *request = malloc(body_length + 256);
    int head = snprintf(request, 256, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: %zu\r\n\r\n", body_length);
    for (size_t i = 0; i < body_length; i++) request[(size_t)head + i] = (char)('a' + i % 26);
    net_test_client client;
    CHECK(net_test_connect(&client, r.port));
    CHECK(net_test_send(&client, request, (size_t)head + body_length));
    net_test_response response;
    CHECK(net_test_read_response(&client, &response) && response.status == 200);
    CHECK(response.body_length == body_length && memcmp(response.body, request + head, body_length) == 0);
    net_test_response_free(&response);
    /* Two such bodies at once exceed the 1.5 MiB budget: the second waits for none, 503. */
    net_test_client other;
    CHECK(net_test_connect(&other, r.port));
    CHECK(net_test_send(&client, request, (size_t)head + 1000));
    usleep(100 * 1000);
    CHECK(net_test_send(&other, request, (size_t)head + 1000));
    CHECK(net_test_read_response(&other, &response) && response.status == 503);
    net_test_response_free(&response);
    CHECK(net_test_send(&client, request + head + 1000, body_length - 1000));
    CHECK(net_test_read_response(&client, &response) && response.status == 200);
    net_test_response_free(&response);
    net_test_close(&other);
    net_test_close(&client);
    free(request);
    server_finish(&r);
}

static void test_timeouts(void) {
    bal_http_config config;
    test_config(&config);
    config.request_timeout_ms = 300;
    config.idle_timeout_ms = 300;
    running r;
    CHECK(server_start(&r, &config));
    /* A slow client dribbling its request gets 408 and the connection closes. */
    net_test_client client;
    CHECK(net_test_connect(&client, r.port));
    const char *request = "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello";
    for (size_t i = 0; i < 12; i++) {
        if (!net_test_send(&client, request + i, 1)) break;
        struct pollfd poll_fd = {.fd = client.fd, .events = POLLIN};
        if (poll(&poll_fd, 1, 50) > 0) break; /* the answer came: stop sending */
    }
    net_test_response response;
    CHECK(net_test_read_response(&client, &response) && response.status == 408);
    net_test_response_free(&response);
    CHECK(net_test_wait_closed(&client, 3000));
    net_test_close(&client);
    /* An idle keep-alive connection is closed after the idle timeout. */
    CHECK(net_test_connect(&client, r.port));
    CHECK(get_ok(&client, "GET /id?1 HTTP/1.1\r\nHost: t\r\n\r\n", 200, "{\"id\":1}"));
    usleep(150 * 1000);
    CHECK(get_ok(&client, "GET /id?2 HTTP/1.1\r\nHost: t\r\n\r\n", 200, "{\"id\":2}"));
    CHECK(net_test_wait_closed(&client, 3000));
    net_test_close(&client);
    bal_http_stats stats;
    bal_http_server_stats(r.server, &stats);
    CHECK(stats.errors_timeout == 1 && stats.idle_closed == 1);
    server_finish(&r);
}

static void test_connection_limit(void) {
    bal_http_config config;
    test_config(&config);
    config.connections_max = 2;
    running r;
    CHECK(server_start(&r, &config));
    net_test_client first, second, third;
    CHECK(net_test_connect(&first, r.port) && net_test_connect(&second, r.port));
    CHECK(get_ok(&first, "GET /id?1 HTTP/1.1\r\nHost: t\r\n\r\n", 200, "{\"id\":1}"));
    CHECK(get_ok(&second, "GET /id?2 HTTP/1.1\r\nHost: t\r\n\r\n", 200, "{\"id\":2}"));
    CHECK(net_test_connect(&third, r.port));
    net_test_response response;
    CHECK(net_test_read_response(&third, &response) && response.status == 503);
    net_test_response_free(&response);
    CHECK(net_test_wait_closed(&third, 3000));
    net_test_close(&third);
    /* Room again once a connection closes. */
    net_test_close(&first);
    usleep(100 * 1000);
    CHECK(net_test_connect(&third, r.port));
    CHECK(get_ok(&third, "GET /id?3 HTTP/1.1\r\nHost: t\r\n\r\n", 200, "{\"id\":3}"));
    net_test_close(&third);
    net_test_close(&second);
    bal_http_stats stats;
    bal_http_server_stats(r.server, &stats);
    CHECK(stats.connections_refused == 1);
    server_finish(&r);
}

/* A client that leaves while its deferred request is pending: the late answer is dropped. */
static void test_orphaned_answer(void) {
    bal_http_config config;
    test_config(&config);
    shard_start(1, true);
    running r;
    CHECK(server_start(&r, &config));
    net_test_client client;
    CHECK(net_test_connect(&client, r.port));
    CHECK(net_test_send_text(&client, "GET /defer?1 HTTP/1.1\r\nHost: t\r\n\r\nGET /defer?2 HTTP/1.1\r\nHost: t\r\n\r\n"));
    CHECK(shard_wait_queued(2));
    net_test_reset(&client);
    usleep(100 * 1000);
    shard_set(1, false);
    usleep(100 * 1000);
    bal_http_stats stats;
    bal_http_server_stats(r.server, &stats);
    CHECK(stats.responses_dropped == 2 && stats.connections_open == 0);
    server_finish(&r);
    shard_stop();
}

/* stop() with deferred requests in flight: run() waits for them, the clients get their
 * answers, new connections are refused. */
static void test_stop_in_flight(void) {
    bal_http_config config;
    test_config(&config);
    config.thread_count = 2;
    shard_start(1, true);
    running r;
    CHECK(server_start(&r, &config));
    net_test_client clients[4];
    for (int i = 0; i < 4; i++) {
        CHECK(net_test_connect(&clients[i], r.port));
        char request[128];
        snprintf(request, sizeof request, "GET /defer?%d HTTP/1.1\r\nHost: t\r\n\r\n", i);
        CHECK(net_test_send_text(&clients[i], request));
    }
    CHECK(shard_wait_queued(4));
    bal_http_server_stop(r.server);
    usleep(200 * 1000);
    CHECK(!atomic_load(&r.returned));
    net_test_client late;
    bool late_connected = net_test_connect(&late, r.port);
    CHECK(!late_connected);
    if (late_connected) net_test_close(&late);
    shard_set(1, false);
    for (int i = 0; i < 4; i++) {
        net_test_response response;
        char expected[64];
        snprintf(expected, sizeof expected, "{\"deferred\":%d}", i);
        CHECK(net_test_read_response(&clients[i], &response) && strcmp(response.body, expected) == 0);
        net_test_response_free(&response);
        CHECK(net_test_wait_closed(&clients[i], 3000));
        net_test_close(&clients[i]);
    }
    pthread_join(r.thread, NULL);
    CHECK(atomic_load(&r.returned));
    bal_http_server_destroy(r.server);
    shard_stop();
}

/* A client that sends requests but never reads the answers is dropped after the write
 * timeout instead of holding its buffers for ever. */
static void test_write_timeout(void) {
    bal_http_config config;
    test_config(&config);
    config.write_timeout_ms = 300;
    running r;
    CHECK(server_start(&r, &config));
    net_test_client client;
    CHECK(net_test_connect(&client, r.port));
    for (int i = 0; i < 4; i++) CHECK(net_test_send_text(&client, "GET /big HTTP/1.1\r\nHost: t\r\n\r\n"));
    usleep(1000 * 1000);
    bal_http_stats stats;
    bal_http_server_stats(r.server, &stats);
    CHECK(stats.errors_timeout == 1 && stats.connections_open == 0);
    net_test_close(&client);
    server_finish(&r);
}

/* Many connections over two loops, each with a deep pipeline of deferred requests that the
 * shard answers newest first, in whatever batches it finds: every connection still gets
 * every answer, in its own request order. */
static void test_pipelining_stress(void) {
    enum { CONNECTIONS = 6, REQUESTS = 300 };
    bal_http_config config;
    test_config(&config);
    config.thread_count = 2;
    config.pipeline_depth_max = 32;
    shard_start(1, false);
    running r;
    CHECK(server_start(&r, &config));
    static net_test_client clients[CONNECTIONS];
    static char requests[REQUESTS * 64];
    for (int c = 0; c < CONNECTIONS; c++) {
        CHECK(net_test_connect(&clients[c], r.port));
        size_t length = 0;
        for (int i = 0; i < REQUESTS; i++) {
            length += (size_t)snprintf(requests + length, sizeof requests - length,
                                       "GET /defer?%d HTTP/1.1\r\nHost: t\r\n\r\n", c * 10000 + i);
        }
        CHECK(net_test_send(&clients[c], requests, length));
    }
    int in_order = 0;
    for (int c = 0; c < CONNECTIONS; c++) {
        for (int i = 0; i < REQUESTS; i++) {
            net_test_response response;
            char expected[64];
            snprintf(expected, sizeof expected, "{\"deferred\":%d}", c * 10000 + i);
            if (!net_test_read_response(&clients[c], &response)) break;
            if (strcmp(response.body, expected) == 0) in_order++;
            net_test_response_free(&response);
        }
        net_test_close(&clients[c]);
    }
    CHECK(in_order == CONNECTIONS * REQUESTS);
    server_finish(&r);
    shard_stop();
}

/* Several loops: connections spread over them, each request answered by its own loop. */
static void test_threads(void) {
    bal_http_config config;
    test_config(&config);
    config.thread_count = 3;
    running r;
    CHECK(server_start(&r, &config));
    net_test_client clients[6];
    int per_thread[3] = {0};
    for (int i = 0; i < 6; i++) {
        CHECK(net_test_connect(&clients[i], r.port));
        net_test_response response;
        CHECK(net_test_send_text(&clients[i], "GET /thread HTTP/1.1\r\nHost: t\r\n\r\n"));
        CHECK(net_test_read_response(&clients[i], &response) && response.status == 200);
        int index = atoi(response.body);
        CHECK(index >= 0 && index < 3);
        if (index >= 0 && index < 3) per_thread[index]++;
        net_test_response_free(&response);
    }
    CHECK(per_thread[0] == 2 && per_thread[1] == 2 && per_thread[2] == 2);
    for (int i = 0; i < 6; i++) net_test_close(&clients[i]);
    server_finish(&r);
}

static void test_create_errors(void) {
    bal_http_config config;
    bal_http_config_init(&config);
    bal_http_server *server = NULL;
    char errstr[256];
    config.pipeline_depth_max = 0;
    CHECK(bal_http_server_create(&config, handler, NULL, &server, errstr, sizeof errstr) == BAL_HTTP_ERROR_CONFIG);
    CHECK(server == NULL && strstr(errstr, "pipeline_depth_max") != NULL);
    bal_http_config_init(&config);
    config.host = "localhost";
    CHECK(bal_http_server_create(&config, handler, NULL, &server, errstr, sizeof errstr) == BAL_HTTP_ERROR_ADDRESS);
    bal_http_config_init(&config);
    CHECK(bal_http_server_create(&config, handler, NULL, &server, errstr, sizeof errstr) == BAL_HTTP_OK);
    config.port = bal_http_server_port(server);
    bal_http_server *second = NULL;
    CHECK(bal_http_server_create(&config, handler, NULL, &second, errstr, sizeof errstr) == BAL_HTTP_ERROR_SOCKET);
    bal_http_server_destroy(server);
    CHECK_STR(bal_http_status_string(BAL_HTTP_ERROR_THREAD), "thread");
}

int main(void) {
    test_create_errors();
    test_keep_alive();
    test_pipelining_immediate();
    test_pipelining_deferred();
    test_pipeline_depth();
    test_refusals();
    test_connection_semantics();
    test_large_body_and_budget();
    test_timeouts();
    test_connection_limit();
    test_orphaned_answer();
    test_stop_in_flight();
    test_threads();
    test_write_timeout();
    test_pipelining_stress();
    return bal_test_finish("test_http_server");
}
