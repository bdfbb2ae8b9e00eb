/*
 * bal_http_responder.c -- a benchmark responder on bal_net.
 *
 *   bal_http_responder [--port P] [--threads N] [--deferred] [--commit-us U] [--shards S]
 *
 * Answers every request with the same small JSON body as the baseline probe
 * (/work/shared/baselines/http_probe.c), either at once on the I/O thread, or --deferred:
 * the request is handed to one of S "shard" threads, which take whatever has queued, wait
 * U microseconds as a stand-in for the WAL's fdatasync (group commit), then answer the whole
 * batch from the shard thread. That is the shape of the real service, and it shows whether
 * pipelined requests share a commit. SIGINT/SIGTERM stop it cleanly.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bal_http.h"

#define RESPONDER_SHARDS_MAX 64
/* Requests a shard takes per commit; more wait for the next one. */
#define RESPONDER_BATCH_MAX 65536

static const char responder_body[] =
    "{\"transaction_id\":\"tx-000000001\",\"result\":\"ok\",\"duplicate\":false,\"sequence\":1,"
    "\"balances\":[{\"account_id\":1,\"currency\":\"USDT\"}]}";

typedef struct responder_shard {
    pthread_mutex_t mutex;
    pthread_cond_t queued;
    bal_http_request **requests; /* RESPONDER_BATCH_MAX */
    size_t count;
    bool quit;
    unsigned commit_us;
    pthread_t thread;
    unsigned long long commits;
    unsigned long long answered;
} responder_shard;

typedef struct responder {
    bool deferred;
    unsigned shard_count;
    responder_shard shards[RESPONDER_SHARDS_MAX];
    _Atomic unsigned long long next_shard;
} responder;

static bal_http_server *responder_server;

static void responder_on_signal(int signal_number) {
    (void)signal_number;
    if (responder_server != NULL) bal_http_server_stop(responder_server);
}

static void responder_handle(void *context, bal_http_request *request, const bal_http_head *head,
                             const char *body, size_t body_length) {
    responder *self = context;
    (void)head;
    (void)body;
    (void)body_length;
    if (!self->deferred) {
        bal_http_respond(request, 200, "application/json", NULL, responder_body, sizeof responder_body - 1);
        return;
    }
    bal_http_request_defer(request);
    unsigned long long ticket = atomic_fetch_add_explicit(&self->next_shard, 1, memory_order_relaxed);
    responder_shard *shard = &self->shards[ticket % self->shard_count];
    pthread_mutex_lock(&shard->mutex);
    while (shard->count == RESPONDER_BATCH_MAX) {
        /* Full: let the shard drain (bounded queue; the I/O thread waits). */
        pthread_mutex_unlock(&shard->mutex);
        struct timespec pause = {0, 100000};
        nanosleep(&pause, NULL);
        pthread_mutex_lock(&shard->mutex);
    }
    shard->requests[shard->count++] = request;
    if (shard->count == 1) pthread_cond_signal(&shard->queued);
    pthread_mutex_unlock(&shard->mutex);
}

static void *responder_shard_main(void *argument) {
    responder_shard *shard = argument;
    bal_http_request **batch = malloc(RESPONDER_BATCH_MAX * sizeof *batch);
    if (batch == NULL) abort();
    pthread_mutex_lock(&shard->mutex);
    for (;;) {
        while (shard->count == 0 && !shard->quit) pthread_cond_wait(&shard->queued, &shard->mutex);
        if (shard->count == 0 && shard->quit) break;
        size_t count = shard->count;
        memcpy(batch, shard->requests, count * sizeof *batch);
        shard->count = 0;
        pthread_mutex_unlock(&shard->mutex);
        if (shard->commit_us > 0) {
            struct timespec commit = {shard->commit_us / 1000000u, (long)(shard->commit_us % 1000000u) * 1000};
            nanosleep(&commit, NULL); /* the stand-in for fdatasync */
        }
        for (size_t i = 0; i < count; i++) {
            bal_http_respond(batch[i], 200, "application/json", NULL, responder_body, sizeof responder_body - 1);
        }
        pthread_mutex_lock(&shard->mutex);
        shard->commits++;
        shard->answered += count;
    }
    pthread_mutex_unlock(&shard->mutex);
    free(batch);
    return NULL;
}

static void responder_start_shards(responder *self, unsigned commit_us) {
    for (unsigned i = 0; i < self->shard_count; i++) {
        responder_shard *shard = &self->shards[i];
        pthread_mutex_init(&shard->mutex, NULL);
        pthread_cond_init(&shard->queued, NULL);
        shard->requests = malloc(RESPONDER_BATCH_MAX * sizeof *shard->requests);
        if (shard->requests == NULL) abort();
        shard->commit_us = commit_us;
        pthread_create(&shard->thread, NULL, responder_shard_main, shard);
    }
}

static void responder_stop_shards(responder *self) {
    unsigned long long commits = 0, answered = 0;
    for (unsigned i = 0; i < self->shard_count; i++) {
        responder_shard *shard = &self->shards[i];
        pthread_mutex_lock(&shard->mutex);
        shard->quit = true;
        pthread_cond_signal(&shard->queued);
        pthread_mutex_unlock(&shard->mutex);
        pthread_join(shard->thread, NULL);
        commits += shard->commits;
        answered += shard->answered;
        free(shard->requests);
    }
    if (commits > 0) {
        fprintf(stderr, "bal_http_responder: %llu answers in %llu commits (%.1f per commit)\n", answered, commits,
                (double)answered / (double)commits);
    }
}

static const struct option responder_options[] = {
    {"port", required_argument, NULL, 'p'},      {"threads", required_argument, NULL, 't'},
    {"deferred", no_argument, NULL, 'D'},        {"commit-us", required_argument, NULL, 'u'},
    {"shards", required_argument, NULL, 's'},    {"pipeline-depth", required_argument, NULL, 'P'},
    {NULL, 0, NULL, 0},
};

int main(int argc, char **argv) {
    static responder self;
    bal_http_config config;
    bal_http_config_init(&config);
    config.port = 8080;
    unsigned commit_us = 0;
    self.shard_count = 1;
    int option = 0;
    while ((option = getopt_long(argc, argv, "p:t:Du:s:P:", responder_options, NULL)) != -1) {
        switch (option) {
        case 'p': config.port = (uint16_t)atoi(optarg); break;
        case 't': config.thread_count = (uint32_t)atoi(optarg); break;
        case 'D': self.deferred = true; break;
        case 'u': commit_us = (unsigned)atoi(optarg); break;
        case 's': self.shard_count = (unsigned)atoi(optarg); break;
        case 'P': config.pipeline_depth_max = (uint32_t)atoi(optarg); break;
        default:
            fprintf(stderr, "usage: bal_http_responder [--port P] [--threads N] [--deferred] [--commit-us U] "
                            "[--shards S] [--pipeline-depth D]\n");
            return 2;
        }
    }
    if (self.shard_count == 0 || self.shard_count > RESPONDER_SHARDS_MAX) self.shard_count = 1;
    char errstr[256];
    bal_http_status status = bal_http_server_create(&config, responder_handle, &self, &responder_server, errstr,
                                                    sizeof errstr);
    if (status != BAL_HTTP_OK) {
        fprintf(stderr, "bal_http_responder: %s: %s\n", bal_http_status_string(status), errstr);
        return 1;
    }
    if (self.deferred) responder_start_shards(&self, commit_us);
    signal(SIGINT, responder_on_signal);
    signal(SIGTERM, responder_on_signal);
    fprintf(stderr, "bal_http_responder: port %u, %u threads, %s\n", bal_http_server_port(responder_server),
            config.thread_count, self.deferred ? "deferred" : "immediate");
    status = bal_http_server_run(responder_server);
    if (self.deferred) responder_stop_shards(&self);
    bal_http_server_destroy(responder_server);
    return status == BAL_HTTP_OK ? 0 : 1;
}
