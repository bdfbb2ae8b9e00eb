/*
 * bench_auth.c -- the server's cost of authenticating one request, in process, without
 * the network: bal_auth_check plus bal_auth_charge of a signed DEPOSIT (the body
 * bal_loadgen sends), each request with its own nonce, all signed before the clock starts.
 *
 *   bench_auth [REQUESTS]     (default 1000000)
 *
 * Prints "sign_us=<X> check_charge_us=<Y> by_name_us=<Z>": the client's signature
 * (bal_sign_request); the server's check plus charge as the node makes them (through a
 * reader, with a grant: bal_auth_check_grant, bal_auth_charge_grant); and the same with
 * bal_auth_check and bal_auth_charge by key name, a key-set reference each. Half of the
 * requests go each way, alternating in blocks. It sits beside the load generator because
 * scripts/bench_http.sh measures the same path end to end; this is the part of it that
 * src/auth owns.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bal_auth.h"
#include "bal_sign.h"

#define BENCH_AUTH_REQUESTS_DEFAULT 1000000ull
#define BENCH_AUTH_REQUESTS_MAX 10000000ull
#define BENCH_AUTH_NONCE_BYTES 48
#define BENCH_AUTH_BLOCK 10000 /* requests checked one way before switching to the other */
#define BENCH_AUTH_KEY "bench"
#define BENCH_AUTH_SECRET "bench-secret-0123456789abcdef0123456789abcdef"
#define BENCH_AUTH_PATH "/v1/transactions"
#define BENCH_AUTH_BODY                                                                                           \
    "{\"transaction_id\":\"lg18c0a1b2c3d4e5-0-123456\",\"type\":\"DEPOSIT\",\"account_id\":734211,"             \
    "\"currency\":\"USDT\",\"amount\":\"1\"}"

typedef struct bench_auth_signed {
    char nonce[BENCH_AUTH_NONCE_BYTES];
    char signature[BAL_SIGN_HEX_LENGTH + 1];
} bench_auth_signed;

static double bench_auth_seconds(clockid_t clock) {
    struct timespec now;
    clock_gettime(clock, &now);
    return (double)now.tv_sec + (double)now.tv_nsec / 1e9;
}

static bal_auth *bench_auth_create(uint64_t requests) {
    static const char keys[] = BENCH_AUTH_KEY " " BENCH_AUTH_SECRET " read,write 1000000000 1000000000 1000000000 1000000000\n";
    bal_auth_config config;
    bal_auth_config_default(&config);
    /* Room for every nonce of the run: a full memory would refuse, not measure. */
    config.nonce_count_max = requests > BAL_AUTH_NONCE_COUNT_DEFAULT ? (uint32_t)requests : BAL_AUTH_NONCE_COUNT_DEFAULT;
    bal_auth *auth = NULL;
    char errstr[256];
    if (bal_auth_create(&config, &auth, errstr, sizeof errstr) != BAL_AUTH_OK ||
        bal_auth_load_text(auth, keys, strlen(keys), "bench", errstr, sizeof errstr) != BAL_AUTH_OK) {
        fprintf(stderr, "bench_auth: %s\n", errstr);
        exit(1);
    }
    return auth;
}

int main(int argc, char **argv) {
    uint64_t requests = argc > 1 ? strtoull(argv[1], NULL, 10) : BENCH_AUTH_REQUESTS_DEFAULT;
    if (requests == 0 || requests > BENCH_AUTH_REQUESTS_MAX) {
        fprintf(stderr, "usage: bench_auth [REQUESTS, 1 to %llu]\n", (unsigned long long)BENCH_AUTH_REQUESTS_MAX);
        return 2;
    }
    bal_auth *auth = bench_auth_create(requests);
    bench_auth_signed *signed_requests = calloc(requests, sizeof *signed_requests);
    if (signed_requests == NULL) return 1;
    int64_t now_ms = (int64_t)(bench_auth_seconds(CLOCK_REALTIME) * 1000.0);
    char timestamp[24];
    int timestamp_length = snprintf(timestamp, sizeof timestamp, "%" PRId64, now_ms);
    const size_t body_length = strlen(BENCH_AUTH_BODY);
    double start = bench_auth_seconds(CLOCK_MONOTONIC);
    for (uint64_t i = 0; i < requests; i++) {
        bench_auth_signed *request = &signed_requests[i];
        snprintf(request->nonce, sizeof request->nonce, "lg18c0a1b2c3d4e5-0-%" PRIu64, i);
        bal_sign_request(BENCH_AUTH_SECRET, strlen(BENCH_AUTH_SECRET), "POST", 4, BENCH_AUTH_PATH,
                         strlen(BENCH_AUTH_PATH), timestamp, (size_t)timestamp_length, request->nonce,
                         strlen(request->nonce), BENCH_AUTH_BODY, body_length, request->signature);
    }
    double signed_at = bench_auth_seconds(CLOCK_MONOTONIC);
    bal_auth_reader *reader = bal_auth_reader_open(auth);
    if (reader == NULL) return 1;
    uint64_t refused = 0;
    double seconds[2] = {0, 0};
    uint64_t counts[2] = {0, 0};
    double block_start = signed_at;
    for (uint64_t i = 0; i < requests; i++) {
        const bench_auth_signed *request = &signed_requests[i];
        bal_auth_request check = {
            .method = "POST", .method_length = 4, .path_with_query = BENCH_AUTH_PATH,
            .path_length = strlen(BENCH_AUTH_PATH), .api_key = BENCH_AUTH_KEY, .api_key_length = strlen(BENCH_AUTH_KEY),
            .timestamp = timestamp, .timestamp_length = (size_t)timestamp_length, .nonce = request->nonce,
            .nonce_length = strlen(request->nonce), .signature = request->signature,
            .signature_length = BAL_SIGN_HEX_LENGTH, .body = BENCH_AUTH_BODY, .body_length = body_length,
            .now_ms = now_ms,
        };
        bal_auth_decision decision;
        unsigned way = (unsigned)((i / BENCH_AUTH_BLOCK) % 2); /* 0: as the node, 1: by name */
        bool allowed;
        if (way == 0) {
            bal_auth_grant grant;
            allowed = bal_auth_check_grant(auth, reader, &check, BAL_PERMISSION_WRITE, &decision, &grant) &&
                      bal_auth_charge_grant(&grant, 1, now_ms, &decision);
            bal_auth_grant_release(&grant);
        } else {
            allowed = bal_auth_check(auth, &check, BAL_PERMISSION_WRITE, &decision) &&
                      bal_auth_charge(auth, decision.key_id, 1, now_ms, &decision);
        }
        refused += allowed ? 0 : 1;
        counts[way]++;
        if ((i + 1) % BENCH_AUTH_BLOCK == 0 || i + 1 == requests) {
            double now = bench_auth_seconds(CLOCK_MONOTONIC);
            seconds[way] += now - block_start;
            block_start = now;
        }
    }
    printf("sign_us=%.3f check_charge_us=%.3f by_name_us=%.3f\n", (signed_at - start) * 1e6 / (double)requests,
           counts[0] ? seconds[0] * 1e6 / (double)counts[0] : 0.0, counts[1] ? seconds[1] * 1e6 / (double)counts[1] : 0.0);
    bal_auth_reader_close(reader);
    free(signed_requests);
    bal_auth_destroy(auth);
    if (refused != 0) {
        fprintf(stderr, "bench_auth: %llu requests refused\n", (unsigned long long)refused);
        return 1;
    }
    return 0;
}
