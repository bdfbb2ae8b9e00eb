/*
 * Tests of the load generator's parts (bench/loadgen): the latency histogram's accuracy,
 * the response framer, the request templates, HMAC signing as a server would verify it,
 * and whole runs of the engine against an in-process bal_net server -- closed loop with
 * pipelining and batch bodies, deferred answers, and open loop at a fixed rate.
 */
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "bal_histogram.h"
#include "bal_http.h"
#include "bal_loadgen_engine.h"
#include "bal_loadgen_response.h"
#include "bal_loadgen_sign.h"
#include "bal_loadgen_workload.h"
#include "bal_test.h"

static void test_histogram(void) {
    /* Every value lands in a bucket whose upper edge is within 1/64 above it. */
    uint32_t previous = 0;
    for (uint64_t value = 0; value < 5000000; value += 1 + value / 50) {
        uint32_t bucket = bal_histogram_bucket(value);
        CHECK(bucket >= previous);
        previous = bucket;
        uint64_t upper = bal_histogram_bucket_upper(bucket);
        CHECK(upper >= value && (double)(upper - value) <= (double)value / 64.0 + 1e-9);
        CHECK(bucket == 0 || bal_histogram_bucket_upper(bucket - 1) < value);
    }
    CHECK(bal_histogram_bucket(BAL_HISTOGRAM_VALUE_MAX * 4) == BAL_HISTOGRAM_BUCKETS - 1);
    static bal_histogram histogram;
    bal_histogram_reset(&histogram);
    CHECK(bal_histogram_percentile(&histogram, 50) == 0);
    for (uint64_t value = 1; value <= 10000; value++) bal_histogram_record(&histogram, value);
    uint64_t p50 = bal_histogram_percentile(&histogram, 50);
    uint64_t p99 = bal_histogram_percentile(&histogram, 99);
    CHECK(p50 >= 5000 && p50 <= 5000 + 5000 / 64 + 1);
    CHECK(p99 >= 9900 && p99 <= 9900 + 9900 / 64 + 1);
    CHECK(bal_histogram_percentile(&histogram, 100) == 10000 && histogram.min_us == 1);
    CHECK(bal_histogram_percentile(&histogram, 0) == 1);
    static bal_histogram other;
    bal_histogram_reset(&other);
    bal_histogram_record(&other, 1000000);
    bal_histogram_merge(&histogram, &other);
    CHECK(histogram.total == 10001 && histogram.max_us == 1000000);
    CHECK(bal_histogram_percentile(&histogram, 100) == 1000000);
}

static void test_response_parse(void) {
    bal_loadgen_response response;
    const char *ok = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\nhelloHTTP/1.1";
    CHECK(bal_loadgen_response_parse(ok, strlen(ok), &response) == BAL_LOADGEN_RESPONSE_COMPLETE);
    CHECK(response.status == 200 && response.total_length == strlen(ok) - 8 && !response.close);
    CHECK(bal_loadgen_response_parse(ok, 30, &response) == BAL_LOADGEN_RESPONSE_INCOMPLETE);
    CHECK(bal_loadgen_response_parse(ok, 64, &response) == BAL_LOADGEN_RESPONSE_INCOMPLETE); /* body short */
    const char *closing = "HTTP/1.0 503 Service Unavailable\r\ncontent-length:2\r\nconnection: Close\r\n\r\n{}";
    CHECK(bal_loadgen_response_parse(closing, strlen(closing), &response) == BAL_LOADGEN_RESPONSE_COMPLETE);
    CHECK(response.status == 503 && response.close);
    const char *interim = "HTTP/1.1 100 Continue\r\n\r\n";
    CHECK(bal_loadgen_response_parse(interim, strlen(interim), &response) == BAL_LOADGEN_RESPONSE_COMPLETE);
    CHECK(response.status == 100 && response.total_length == strlen(interim));
    const char *chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    CHECK(bal_loadgen_response_parse(chunked, strlen(chunked), &response) == BAL_LOADGEN_RESPONSE_UNSUPPORTED);
    const char *garbage = "SSH-2.0-OpenSSH\r\n\r\n";
    CHECK(bal_loadgen_response_parse(garbage, strlen(garbage), &response) == BAL_LOADGEN_RESPONSE_INVALID);
    const char *no_content = "HTTP/1.1 204 No Content\r\n\r\n";
    CHECK(bal_loadgen_response_parse(no_content, strlen(no_content), &response) == BAL_LOADGEN_RESPONSE_COMPLETE);
}

static void make_workload(bal_workload *workload, const char *path, const char *operation, uint32_t batch) {
    char errstr[128];
    memset(workload, 0, sizeof *workload);
    workload->method = "POST";
    workload->accounts = 1000;
    workload->batch = batch;
    snprintf(workload->host_header, sizeof workload->host_header, "127.0.0.1");
    snprintf(workload->run_id, sizeof workload->run_id, "test");
    CHECK(bal_template_compile(&workload->path, path, "2.5", "BTC", errstr, sizeof errstr));
    if (operation != NULL) {
        const char *text = bal_workload_builtin(operation);
        CHECK(text != NULL);
        CHECK(bal_template_compile(&workload->operations[0], text != NULL ? text : operation, "2.5", "BTC", errstr,
                                   sizeof errstr));
        workload->operation_count = 1;
        workload->weights[0] = 1;
    }
    CHECK(bal_workload_prepare(workload));
}

static void test_workload(void) {
    bal_workload workload;
    make_workload(&workload, "/v1/transactions", "transfer", 0);
    CHECK(!workload.fixed);
    bal_workload_state state;
    bal_workload_state_init(&state, 3, 42);
    bal_http_buffer out = {0};
    for (int i = 0; i < 200; i++) {
        uint32_t operations = 0;
        out.length = 0;
        CHECK(bal_workload_append_request(&workload, &state, &out, &operations) && operations == 1);
        CHECK(bal_http_buffer_append(&out, "", 1));
        char expected_id[64];
        snprintf(expected_id, sizeof expected_id, "\"transaction_id\":\"test-3-%d\"", i);
        CHECK(strstr(out.data, expected_id) != NULL);
        CHECK(strncmp(out.data, "POST /v1/transactions HTTP/1.1\r\nHost: 127.0.0.1\r\n", 49) == 0);
        CHECK(strstr(out.data, "\"currency\":\"BTC\",\"amount\":\"2.5\"") != NULL);
        unsigned long long from = 0, to = 0;
        const char *account = strstr(out.data, "\"account_id\":");
        const char *other = strstr(out.data, "\"to_account_id\":");
        CHECK(account != NULL && other != NULL);
        if (account == NULL || other == NULL) break;
        sscanf(account, "\"account_id\":%llu", &from);
        sscanf(other, "\"to_account_id\":%llu", &to);
        CHECK(from >= 1 && from <= 1000 && to >= 1 && to <= 1000 && from != to);
        const char *body = strstr(out.data, "\r\n\r\n");
        unsigned long long length = 0;
        const char *content_length = strstr(out.data, "Content-Length: ");
        CHECK(body != NULL && content_length != NULL);
        if (body != NULL && content_length != NULL) {
            sscanf(content_length, "Content-Length: %llu", &length);
            CHECK(strlen(body + 4) == length);
        }
    }
    bal_workload_free(&workload);
    /* A batch of 3: one body with three operations and fresh ids. */
    make_workload(&workload, "/v1/transactions/batch", "deposit", 3);
    uint32_t operations = 0;
    out.length = 0;
    CHECK(bal_workload_append_request(&workload, &state, &out, &operations) && operations == 3);
    CHECK(bal_http_buffer_append(&out, "", 1));
    CHECK(strstr(out.data, "{\"transactions\":[{\"transaction_id\":\"test-3-200\"") != NULL);
    CHECK(strstr(out.data, "test-3-202") != NULL && strstr(out.data, "}]}") != NULL);
    bal_workload_free(&workload);
    /* No placeholders: the request is rendered once and copied. */
    make_workload(&workload, "/health", NULL, 0);
    CHECK(workload.fixed);
    bal_workload_free(&workload);
    bal_http_buffer_free(&out);
    bal_workload_state_free(&state);
    bal_template template_;
    char errstr[128];
    CHECK(bal_template_compile(&template_, "{\"a\":{x},\"b\":\"{seq}\"}", "1", "C", errstr, sizeof errstr));
    CHECK(!template_.fixed && template_.segment_count == 3);
    bal_template_free(&template_);
}

/* --- a server for whole runs: answers at once, or deferred through a thread --- */

typedef struct test_server {
    bal_http_server *server;
    pthread_t thread;
    bool deferred;
    bool verify_signature;
    const bal_loadgen_signer *signer;
    atomic_uint bad_signatures;
    atomic_uint requests;
    pthread_mutex_t mutex;
    pthread_cond_t queued;
    bal_http_request *pending[4096];
    size_t pending_count;
    bool quit;
    pthread_t answerer;
} test_server;

static bool signature_valid(const test_server *self, const bal_http_head *head, const char *body, size_t length) {
    const char *timestamp = NULL, *nonce = NULL, *signature = NULL, *key = NULL;
    size_t timestamp_length = 0, nonce_length = 0, signature_length = 0, key_length = 0;
    if (!bal_http_head_find(head, "X-Timestamp", &timestamp, &timestamp_length) ||
        !bal_http_head_find(head, "X-Nonce", &nonce, &nonce_length) ||
        !bal_http_head_find(head, "X-Signature", &signature, &signature_length) ||
        !bal_http_head_find(head, "X-Api-Key", &key, &key_length)) {
        return false;
    }
    unsigned char digest[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)body, length, digest);
    char text[4096];
    int used = snprintf(text, sizeof text, "%.*s\n%.*s\n%.*s\n%.*s\n", (int)head->method_length, head->method_text,
                        (int)head->target_length, head->target, (int)timestamp_length, timestamp,
                        (int)nonce_length, nonce);
    for (int i = 0; i < SHA256_DIGEST_LENGTH; i++) used += snprintf(text + used, sizeof text - (size_t)used, "%02x", digest[i]);
    unsigned int mac_length = 0;
    HMAC(EVP_sha256(), self->signer->secret, (int)strlen(self->signer->secret), (const unsigned char *)text,
         (size_t)used, digest, &mac_length);
    char expected[2 * SHA256_DIGEST_LENGTH + 1];
    for (unsigned i = 0; i < mac_length; i++) snprintf(expected + 2 * i, 3, "%02x", digest[i]);
    return key_length == strlen(self->signer->key) && memcmp(key, self->signer->key, key_length) == 0 &&
           signature_length == 64 && memcmp(signature, expected, 64) == 0;
}

static void server_handle(void *context, bal_http_request *request, const bal_http_head *head, const char *body,
                          size_t length) {
    test_server *self = context;
    atomic_fetch_add(&self->requests, 1);
    if (self->verify_signature && !signature_valid(self, head, body, length)) atomic_fetch_add(&self->bad_signatures, 1);
    if (!self->deferred) {
        bal_http_respond(request, 200, "application/json", NULL, "{\"result\":\"ok\"}", 15);
        return;
    }
    bal_http_request_defer(request);
    pthread_mutex_lock(&self->mutex);
    if (self->pending_count == 4096) abort();
    self->pending[self->pending_count++] = request;
    pthread_cond_signal(&self->queued);
    pthread_mutex_unlock(&self->mutex);
}

static void *server_answerer(void *argument) {
    test_server *self = argument;
    pthread_mutex_lock(&self->mutex);
    while (!self->quit || self->pending_count > 0) {
        if (self->pending_count == 0) {
            pthread_cond_wait(&self->queued, &self->mutex);
            continue;
        }
        size_t count = self->pending_count;
        self->pending_count = 0;
        bal_http_request *batch[4096];
        memcpy(batch, self->pending, count * sizeof batch[0]);
        pthread_mutex_unlock(&self->mutex);
        usleep(200); /* a group commit */
        for (size_t i = 0; i < count; i++) bal_http_respond(batch[i], 200, "application/json", NULL, "{}", 2);
        pthread_mutex_lock(&self->mutex);
    }
    pthread_mutex_unlock(&self->mutex);
    return NULL;
}

static void *server_main(void *argument) {
    bal_http_server_run(((test_server *)argument)->server);
    return NULL;
}

static uint16_t server_start(test_server *self, bool deferred) {
    memset(self, 0, sizeof *self);
    self->deferred = deferred;
    pthread_mutex_init(&self->mutex, NULL);
    pthread_cond_init(&self->queued, NULL);
    bal_http_config config;
    bal_http_config_init(&config);
    char errstr[128];
    CHECK(bal_http_server_create(&config, server_handle, self, &self->server, errstr, sizeof errstr) == BAL_HTTP_OK);
    pthread_create(&self->thread, NULL, server_main, self);
    if (deferred) pthread_create(&self->answerer, NULL, server_answerer, self);
    return bal_http_server_port(self->server);
}

static void server_stop(test_server *self) {
    bal_http_server_stop(self->server);
    pthread_join(self->thread, NULL);
    if (self->deferred) {
        pthread_mutex_lock(&self->mutex);
        self->quit = true;
        pthread_cond_signal(&self->queued);
        pthread_mutex_unlock(&self->mutex);
        pthread_join(self->answerer, NULL);
    }
    bal_http_server_destroy(self->server);
}

static void run_load(uint16_t port, const bal_workload *workload, uint32_t pipeline, double rate,
                     bal_loadgen_report *report) {
    bal_loadgen_options options;
    bal_loadgen_options_init(&options);
    options.port = port;
    options.connections = 4;
    options.threads = 2;
    options.pipeline = pipeline;
    options.duration_s = 1.0;
    options.warmup_s = 0.2;
    options.rate = rate;
    options.workload = workload;
    char errstr[128];
    CHECK(bal_loadgen_run(&options, report, errstr, sizeof errstr));
}

static void check_clean(const bal_loadgen_report *report) {
    CHECK(report->requests > 0 && report->status_counts[200] == report->requests);
    CHECK(report->errors_connect == 0 && report->errors_io == 0 && report->errors_protocol == 0);
    CHECK(report->requests_unsent == 0 && report->latency.total == report->requests);
}

static void test_runs(void) {
    static test_server server;
    static bal_loadgen_report report;
    bal_workload workload;
    make_workload(&workload, "/v1/transactions/batch", "deposit", 10);
    uint16_t port = server_start(&server, false);
    run_load(port, &workload, 8, 0, &report);
    check_clean(&report);
    CHECK(report.operations == 10 * report.requests);
    CHECK(report.seconds > 0.9 && report.seconds < 1.2);
    server_stop(&server);
    /* Deferred answers after a 200 us "commit": pipelining keeps 8 per connection in flight. */
    port = server_start(&server, true);
    run_load(port, &workload, 8, 0, &report);
    check_clean(&report);
    CHECK(bal_histogram_percentile(&report.latency, 50) >= 200);
    /* Open loop at 2000 requests/s: about 2000 answered in the 1 s window, none unsent. */
    run_load(port, &workload, 8, 2000, &report);
    check_clean(&report);
    CHECK(report.requests >= 1800 && report.requests <= 2200);
    server_stop(&server);
    bal_workload_free(&workload);
}

static void test_signed_run(void) {
    static test_server server;
    static bal_loadgen_report report;
    static bal_loadgen_signer signer;
    CHECK(bal_loadgen_signer_init(&signer, "key-1:s3cret", "run"));
    CHECK(!bal_loadgen_signer_init(&signer, "no-colon", "run"));
    CHECK(bal_loadgen_signer_init(&signer, "key-1:s3cret", "run"));
    bal_workload workload;
    memset(&workload, 0, sizeof workload);
    make_workload(&workload, "/v1/transactions?x=1", "withdraw", 0);
    workload.hook = bal_loadgen_sign;
    workload.hook_context = &signer;
    CHECK(bal_workload_prepare(&workload) && !workload.fixed);
    uint16_t port = server_start(&server, false);
    server.verify_signature = true;
    server.signer = &signer;
    run_load(port, &workload, 1, 0, &report);
    check_clean(&report);
    CHECK(atomic_load(&server.requests) > 0 && atomic_load(&server.bad_signatures) == 0);
    server_stop(&server);
    bal_workload_free(&workload);
}

int main(void) {
    test_histogram();
    test_response_parse();
    test_workload();
    test_runs();
    test_signed_run();
    return bal_test_finish("test_loadgen");
}
