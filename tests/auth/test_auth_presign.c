/*
 * test_auth_presign.c -- requests pre-signed by the load generator (bal_loadgen
 * --pregenerate, bench/loadgen) pass the server's check one by one: each has its own nonce,
 * a timestamp from the clock when it was signed, and a signature over exactly the bytes
 * sent. The benchmark of the authenticated path (scripts/bench_http.sh) relies on it.
 *
 * Usage: test_auth_presign; one CTest test, auth/presigned.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "bal_auth.h"
#include "bal_http_parser.h"
#include "bal_loadgen_sign.h"
#include "bal_loadgen_workload.h"
#include "bal_test.h"

#define PRESIGN_KEY "bench"
#define PRESIGN_SECRET "bench-secret-0123456789abcdef0123456789abcdef"
/* Requests per generator thread: enough to cross many hash buckets and wheel slots. */
#define PRESIGN_REQUESTS 3000
#define PRESIGN_THREADS 2
#define PRESIGN_HEAD_BYTES_MAX 8192

static int64_t now_ms(void) {
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

static bal_auth *presign_auth(void) {
    static const char keys[] = PRESIGN_KEY " " PRESIGN_SECRET " read,write 1000000000 1000000000 1000000000 1000000000\n";
    bal_auth_config config;
    bal_auth_config_default(&config);
    bal_auth *auth = NULL;
    char errstr[256];
    if (bal_auth_create(&config, &auth, errstr, sizeof errstr) != BAL_AUTH_OK ||
        bal_auth_load_text(auth, keys, strlen(keys), "keys", errstr, sizeof errstr) != BAL_AUTH_OK) {
        fprintf(stderr, "auth: %s\n", errstr);
        exit(2);
    }
    return auth;
}

static void presign_workload(bal_workload *workload, bal_loadgen_signer *signer) {
    char errstr[256];
    memset(workload, 0, sizeof *workload);
    workload->method = "POST";
    workload->accounts = 1000;
    workload->operation_count = 1;
    workload->weights[0] = 1;
    snprintf(workload->host_header, sizeof workload->host_header, "127.0.0.1:1");
    snprintf(workload->run_id, sizeof workload->run_id, "presign");
    bool ok = bal_template_compile(&workload->path, "/v1/transactions?shard={seq}", "1", "USDT", errstr,
                                   sizeof errstr) &&
              bal_template_compile(&workload->operations[0], bal_workload_builtin("deposit"), "1", "USDT", errstr,
                                   sizeof errstr) &&
              bal_loadgen_signer_init(signer, PRESIGN_KEY ":" PRESIGN_SECRET, workload->run_id);
    CHECK(ok);
    workload->hook = bal_loadgen_sign;
    workload->hook_context = signer;
    CHECK(bal_workload_prepare(workload) && !workload->fixed);
}

static void header(const bal_http_head *head, const char *name, const char **value, size_t *length) {
    *value = NULL;
    *length = 0;
    for (size_t i = 0; i < head->header_count; i++) {
        const bal_http_header *h = &head->headers[i];
        if (h->name_length == strlen(name) && strncasecmp(h->name, name, h->name_length) == 0) {
            *value = h->value;
            *length = h->value_length;
        }
    }
}

/* Parses one whole request and checks it as the routes do (a POST needs write). */
static bool presign_check(bal_auth *auth, const char *data, size_t length, int64_t clock_ms,
                          bal_auth_decision *decision) {
    bal_http_head head;
    size_t scan = 0;
    if (bal_http_parse_head(data, length, PRESIGN_HEAD_BYTES_MAX, &scan, &head) != BAL_HTTP_PARSE_COMPLETE ||
        head.head_length + head.content_length != length) {
        fprintf(stderr, "  not one whole request\n");
        return false;
    }
    bal_auth_request request = {
        .method = head.method_text, .method_length = head.method_length,
        .path_with_query = head.target, .path_length = head.target_length,
        .body = data + head.head_length, .body_length = (size_t)head.content_length, .now_ms = clock_ms,
    };
    header(&head, "X-Api-Key", &request.api_key, &request.api_key_length);
    header(&head, "X-Timestamp", &request.timestamp, &request.timestamp_length);
    header(&head, "X-Nonce", &request.nonce, &request.nonce_length);
    header(&head, "X-Signature", &request.signature, &request.signature_length);
    return bal_auth_check(auth, &request, BAL_PERMISSION_WRITE, decision);
}

int main(void) {
    bal_auth *auth = presign_auth();
    static bal_workload workload;
    static bal_loadgen_signer signer;
    presign_workload(&workload, &signer);
    static bal_workload_state states[PRESIGN_THREADS];
    for (uint32_t t = 0; t < PRESIGN_THREADS; t++) {
        bal_workload_state_init(&states[t], t, 1);
        CHECK(bal_workload_pregenerate(&workload, &states[t], PRESIGN_REQUESTS));
    }
    /* Every request of both threads, interleaved as the engine would send them: allowed. */
    bal_http_buffer request = {0}, first = {0};
    bal_auth_decision decision;
    uint32_t refused = 0, operations = 0;
    for (uint32_t i = 0; i < PRESIGN_REQUESTS; i++) {
        for (uint32_t t = 0; t < PRESIGN_THREADS; t++) {
            request.length = 0;
            CHECK(bal_workload_append_request(&workload, &states[t], &request, &operations) && operations == 1);
            if (i == 0 && t == 0) CHECK(bal_http_buffer_append(&first, request.data, request.length));
            if (!presign_check(auth, request.data, request.length, now_ms(), &decision)) {
                if (refused++ == 0) fprintf(stderr, "  refused: %s (%s)\n", decision.reason, decision.message);
            } else {
                CHECK_STR(decision.key_id, PRESIGN_KEY);
            }
        }
    }
    CHECK(refused == 0);
    /* The pre-generated requests are used up: no request is ever sent twice. */
    request.length = 0;
    CHECK(!bal_workload_append_request(&workload, &states[0], &request, &operations));
    /* Sending one again is a replay; the timestamp is the clock at signing: 5 minutes and
       a second later it is stale. */
    CHECK(!presign_check(auth, first.data, first.length, now_ms(), &decision));
    CHECK_STR(decision.reason, "replayed_nonce");
    CHECK(!presign_check(auth, first.data, first.length, now_ms() + BAL_AUTH_REPLAY_WINDOW_MS + 1000, &decision));
    CHECK_STR(decision.reason, "stale_timestamp");
    /* One changed body byte: the signature no longer matches. */
    first.data[first.length - 3] = first.data[first.length - 3] == '1' ? '2' : '1';
    CHECK(!presign_check(auth, first.data, first.length, now_ms(), &decision));
    CHECK_STR(decision.reason, "bad_signature");

    bal_http_buffer_free(&request);
    bal_http_buffer_free(&first);
    for (uint32_t t = 0; t < PRESIGN_THREADS; t++) bal_workload_state_free(&states[t]);
    bal_workload_free(&workload);
    bal_auth_destroy(auth);
    return bal_test_finish("auth/presigned");
}
