/*
 * bal_queue.h -- a bounded multi-producer, single-consumer queue of fixed-size items.
 *
 * The meeting point of threads: API threads push, a shard (or the coordinator, or the
 * persister) pops many at once. A mutex and two condition variables: simple, and the
 * consumer takes whole batches per lock, so the lock is not the bottleneck. A full queue
 * blocks its producers (backpressure); close() wakes everyone.
 */
#ifndef BAL_QUEUE_H
#define BAL_QUEUE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct bal_queue {
    pthread_mutex_t mutex;
    pthread_cond_t not_empty;
    pthread_cond_t not_full;
    uint8_t *items;
    size_t item_size;
    size_t capacity;
    size_t head;        /* next to pop */
    size_t count;
    bool closed;
} bal_queue;

bool bal_queue_init(bal_queue *queue, size_t item_size, size_t capacity);
void bal_queue_destroy(bal_queue *queue);
/* Blocks while full. False if the queue is closed (the item was not queued). */
bool bal_queue_push(bal_queue *queue, const void *item);
/* Pushes several items atomically (no other producer's item in between); blocks while
 * there is no room for all. count <= capacity. */
bool bal_queue_push_many(bal_queue *queue, const void *items, size_t count);
/* Waits up to timeout_ms (-1: for ever) for at least one item, then takes up to max.
 * Returns how many; 0 on timeout or when closed and empty. */
size_t bal_queue_pop(bal_queue *queue, void *items, size_t max, int timeout_ms);
void bal_queue_close(bal_queue *queue);
size_t bal_queue_depth(bal_queue *queue);

#endif
