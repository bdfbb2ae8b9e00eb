/*
 * bal_queue.c -- the bounded queue of bal_queue.h: a ring of item_size slots.
 */
#include "bal_queue.h"
#include "bal_wait.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

bool bal_queue_init(bal_queue *queue, size_t item_size, size_t capacity) {
    assert(queue != NULL && item_size > 0 && capacity > 0);
    memset(queue, 0, sizeof(*queue));
    queue->items = calloc(capacity, item_size);
    if (queue->items == NULL) return false;
    queue->item_size = item_size;
    queue->capacity = capacity;
    pthread_mutex_init(&queue->mutex, NULL);
    bal_wait_cond_init(&queue->not_empty);
    bal_wait_cond_init(&queue->not_full);
    return true;
}

void bal_queue_destroy(bal_queue *queue) {
    if (queue->items == NULL) return;
    pthread_mutex_destroy(&queue->mutex);
    pthread_cond_destroy(&queue->not_empty);
    pthread_cond_destroy(&queue->not_full);
    free(queue->items);
    queue->items = NULL;
}

bool bal_queue_push_many(bal_queue *queue, const void *items, size_t count) {
    assert(count <= queue->capacity);
    pthread_mutex_lock(&queue->mutex);
    while (!queue->closed && queue->capacity - queue->count < count) pthread_cond_wait(&queue->not_full, &queue->mutex);
    if (queue->closed) {
        pthread_mutex_unlock(&queue->mutex);
        return false;
    }
    for (size_t i = 0; i < count; i++) {
        size_t slot = (queue->head + queue->count) % queue->capacity;
        memcpy(queue->items + slot * queue->item_size, (const uint8_t *)items + i * queue->item_size, queue->item_size);
        queue->count++;
    }
    pthread_cond_signal(&queue->not_empty);
    pthread_mutex_unlock(&queue->mutex);
    return true;
}

bool bal_queue_push(bal_queue *queue, const void *item) { return bal_queue_push_many(queue, item, 1); }

size_t bal_queue_pop(bal_queue *queue, void *items, size_t max, int timeout_ms) {
    assert(max > 0);
    pthread_mutex_lock(&queue->mutex);
    if (queue->count == 0 && !queue->closed && timeout_ms != 0) {
        struct timespec deadline = bal_wait_deadline(timeout_ms > 0 ? (uint32_t)timeout_ms : 0);
        while (queue->count == 0 && !queue->closed) {
            if (timeout_ms < 0) {
                pthread_cond_wait(&queue->not_empty, &queue->mutex);
            } else if (pthread_cond_timedwait(&queue->not_empty, &queue->mutex, &deadline) == ETIMEDOUT) {
                break;
            }
        }
    }
    size_t n = queue->count < max ? queue->count : max;
    for (size_t i = 0; i < n; i++) {
        memcpy((uint8_t *)items + i * queue->item_size, queue->items + queue->head * queue->item_size, queue->item_size);
        queue->head = (queue->head + 1) % queue->capacity;
    }
    queue->count -= n;
    if (n > 0) pthread_cond_broadcast(&queue->not_full);
    pthread_mutex_unlock(&queue->mutex);
    return n;
}

void bal_queue_close(bal_queue *queue) {
    pthread_mutex_lock(&queue->mutex);
    queue->closed = true;
    pthread_cond_broadcast(&queue->not_empty);
    pthread_cond_broadcast(&queue->not_full);
    pthread_mutex_unlock(&queue->mutex);
}

size_t bal_queue_depth(bal_queue *queue) {
    pthread_mutex_lock(&queue->mutex);
    size_t n = queue->count;
    pthread_mutex_unlock(&queue->mutex);
    return n;
}
