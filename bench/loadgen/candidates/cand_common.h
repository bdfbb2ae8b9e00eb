/*
 * cand_common.h -- shared by the HTTP server candidates measured in ../HTTP_CHOICE.md.
 *
 * Every candidate answers any request with the same 126-byte JSON body as the baseline
 * probe. With a commit time given, it does what the real service does: the request is
 * handed to a "shard" thread, which takes whatever has queued, sleeps the commit time
 * (a stand-in for the WAL's fdatasync, one per batch: group commit), and hands the batch
 * back through the candidate's own cross-thread mechanism, which answers each request.
 * Header-only so each candidate builds from one command line (see run_candidates.sh).
 */
#ifndef CAND_COMMON_H
#define CAND_COMMON_H

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CAND_BODY                                                                            \
    "{\"transaction_id\":\"tx-000000001\",\"result\":\"ok\",\"duplicate\":false,\"sequence\":1," \
    "\"balances\":[{\"account_id\":1,\"currency\":\"USDT\"}]}"
/* Requests a shard takes per commit. */
#define CAND_BATCH_MAX 65536

typedef void (*cand_deliver)(void **items, size_t count, void *context);

typedef struct cand_shard {
    pthread_mutex_t mutex;
    pthread_cond_t queued;
    void **items;
    size_t count;
    unsigned commit_us;
    cand_deliver deliver; /* called on the shard thread with a committed batch */
    void *context;
    unsigned long long commits, delivered;
} cand_shard;

static inline void cand_shard_push(cand_shard *shard, void *item) {
    pthread_mutex_lock(&shard->mutex);
    if (shard->count == CAND_BATCH_MAX) abort(); /* the benchmark never gets near it */
    shard->items[shard->count++] = item;
    if (shard->count == 1) pthread_cond_signal(&shard->queued);
    pthread_mutex_unlock(&shard->mutex);
}

static inline void *cand_shard_main(void *argument) {
    cand_shard *shard = argument;
    void **batch = malloc(CAND_BATCH_MAX * sizeof *batch);
    for (;;) {
        pthread_mutex_lock(&shard->mutex);
        while (shard->count == 0) pthread_cond_wait(&shard->queued, &shard->mutex);
        size_t count = shard->count;
        memcpy(batch, shard->items, count * sizeof *batch);
        shard->count = 0;
        pthread_mutex_unlock(&shard->mutex);
        struct timespec commit = {shard->commit_us / 1000000u, (long)(shard->commit_us % 1000000u) * 1000};
        nanosleep(&commit, NULL);
        shard->deliver(batch, count, shard->context);
        shard->commits++;
        shard->delivered += count;
    }
    return NULL;
}

static inline void cand_shard_start(cand_shard *shard, unsigned commit_us, cand_deliver deliver, void *context) {
    pthread_mutex_init(&shard->mutex, NULL);
    pthread_cond_init(&shard->queued, NULL);
    shard->items = malloc(CAND_BATCH_MAX * sizeof *shard->items);
    shard->commit_us = commit_us;
    shard->deliver = deliver;
    shard->context = context;
    pthread_t thread;
    pthread_create(&thread, NULL, cand_shard_main, shard);
    pthread_detach(thread);
}

#endif
