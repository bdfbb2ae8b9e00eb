/*
 * bal_persister.c -- the journal persister: shard batches in, journal rows out.
 *
 * Off the hot path: a shard hands over its applied batch (commands in log encoding,
 * outcomes, changes) and goes on; this thread turns them into rows and writes each
 * shard's rows together with its log position in one SQLite transaction, merging the
 * queued batches of a shard. Progress (persisted_lsn) wakes readers that wait for
 * read-your-writes, and the shard that waits before a snapshot.
 */
#include <assert.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include "bal_log.h"
#include "bal_node_internal.h"
#include "bal_wait.h"

/* Queue items popped at once; rows written per SQLite transaction at most. */
#define PERSIST_ITEMS_MAX 256u
#define PERSIST_ROWS_MAX BAL_JOURNAL_BATCH_ROWS_MAX

void bal_persister_submit(bal_node *node, bal_shard *shard, size_t count, const bal_outcome *outcomes,
                          const bal_change *changes, uint64_t last_lsn) {
    bal_persist_item item = {.shard = shard->index, .count = (uint32_t)count, .last_lsn = last_lsn,
                             .claims_mark = bal_ids_next_number(node->ids, shard->index)};
    size_t bytes = shard->offsets[count];
    uint32_t change_total = 0;
    for (size_t i = 0; i < count; i++) change_total += outcomes[i].change_count;
    item.encoded = malloc(bytes ? bytes : 1);
    item.offsets = malloc((count + 1) * sizeof(uint32_t));
    item.outcomes = malloc((count ? count : 1) * sizeof(bal_outcome));
    item.changes = malloc((change_total ? change_total : 1) * sizeof(bal_change));
    if (item.encoded == NULL || item.offsets == NULL || item.outcomes == NULL || item.changes == NULL) {
        bal_log(BAL_LOG_ERROR, "out_of_memory", "\"where\":\"persister_submit\"");
        abort(); /* the log holds everything: a restart replays it */
    }
    memcpy(item.encoded, shard->encoded, bytes);
    memcpy(item.offsets, shard->offsets, (count + 1) * sizeof(uint32_t));
    uint32_t next = 0;
    for (size_t i = 0; i < count; i++) {
        item.outcomes[i] = outcomes[i];
        item.outcomes[i].first_change = next;
        memcpy(&item.changes[next], &changes[outcomes[i].first_change], outcomes[i].change_count * sizeof(bal_change));
        next += outcomes[i].change_count;
    }
    if (!bal_queue_push(&node->persister_queue, &item)) {
        free(item.encoded); free(item.offsets); free(item.outcomes); free(item.changes);
    }
}

bool bal_persister_checkpoint(bal_node *node) {
    _Atomic int done = 0;
    bal_persist_item item = {.done = &done};
    if (!bal_queue_push(&node->persister_queue, &item)) return false;
    pthread_mutex_lock(&node->progress_mutex);
    while (atomic_load(&done) == 0) pthread_cond_wait(&node->progress_cond, &node->progress_mutex);
    pthread_mutex_unlock(&node->progress_mutex);
    return atomic_load(&done) == 1;
}

static void free_item(bal_persist_item *item) {
    free(item->encoded);
    free(item->offsets);
    free(item->outcomes);
    free(item->changes);
}

/* Appends an item's rows; returns false if they would not fit (the caller writes first). */
static bool item_rows(const bal_persist_item *item, bal_journal_row *rows, size_t *row_count) {
    size_t needed = 0;
    for (uint32_t i = 0; i < item->count; i++) needed += item->outcomes[i].change_count;
    if (*row_count + needed > PERSIST_ROWS_MAX) return false;
    for (uint32_t i = 0; i < item->count; i++) {
        const bal_outcome *o = &item->outcomes[i];
        if (o->duplicate || o->result == BAL_RESULT_CONFLICT) continue;
        bal_command command;
        bool decoded = bal_command_decode(item->encoded + item->offsets[i], item->offsets[i + 1] - item->offsets[i], &command);
        assert(decoded);
        *row_count += bal_bridge_rows(item->shard, &command, o, &item->changes[o->first_change], rows + *row_count);
    }
    return true;
}

static void write_rows(bal_node *node, uint32_t shard, const bal_journal_row *rows, size_t count, uint64_t last_lsn,
                       uint64_t claims_mark) {
    char error[512];
    bal_journal_status status = bal_journal_write_batch(node->writer, shard, rows, count, last_lsn, NULL, error, sizeof(error));
    if (status != BAL_JOURNAL_OK) {
        /* The log still holds these commands; a restart writes them again. */
        bal_log(BAL_LOG_ERROR, "journal_write_failed", "\"shard\":%u,\"status\":\"%s\",\"detail\":\"%.200s\"",
                shard, bal_journal_status_name(status), error);
        abort();
    }
    bal_ids_stored(node->ids, shard, claims_mark);
    pthread_mutex_lock(&node->progress_mutex);
    atomic_store(&node->shards[shard].persisted_lsn, last_lsn);
    pthread_cond_broadcast(&node->progress_cond);
    pthread_mutex_unlock(&node->progress_mutex);
}

/* Makes every committed batch durable (bal_journal_sync: never waits for readers, unlike
 * a full checkpoint), so that log records up to the stored positions may be removed. */
static void checkpoint(bal_node *node, bal_persist_item *item) {
    char error[512];
    bal_journal_status status = bal_journal_sync(node->writer, error, sizeof(error));
    if (status != BAL_JOURNAL_OK) {
        bal_log(BAL_LOG_WARN, "journal_sync_failed", "\"status\":\"%s\",\"detail\":\"%.200s\"",
                bal_journal_status_name(status), error);
    }
    pthread_mutex_lock(&node->progress_mutex);
    atomic_store(item->done, status == BAL_JOURNAL_OK ? 1 : 2);
    pthread_cond_broadcast(&node->progress_cond);
    pthread_mutex_unlock(&node->progress_mutex);
}

/* Writes every item of one shard among items[0, n) (no checkpoints among them), in order,
 * in as few transactions as the row buffer allows; marks them written. A transaction of
 * many rows is much cheaper per row than several small ones (each commit rewrites the index
 * pages it touched), and with several shards the queue interleaves their batches. */
static void persist_shard(bal_node *node, bal_persist_item *items, size_t n, bool *written, uint32_t shard,
                          bal_journal_row *rows) {
    size_t row_count = 0;
    uint64_t last_lsn = 0, claims_mark = 0;
    for (size_t i = 0; i < n; i++) {
        if (written[i] || items[i].shard != shard) continue;
        if (!item_rows(&items[i], rows, &row_count)) {
            assert(row_count > 0 && last_lsn > 0);
            write_rows(node, shard, rows, row_count, last_lsn, claims_mark);
            row_count = 0;
            bool fits = item_rows(&items[i], rows, &row_count);
            assert(fits); /* one item's rows always fit an empty buffer */
            (void)fits;
        }
        last_lsn = items[i].last_lsn;
        claims_mark = items[i].claims_mark;
        free_item(&items[i]);
        written[i] = true;
    }
    assert(last_lsn > 0);
    write_rows(node, shard, rows, row_count, last_lsn, claims_mark);
}

/* Writes the popped items: each shard's batches together, a checkpoint request only after
 * everything queued before it. Within a shard the order is kept (positions only grow). */
static void persist(bal_node *node, bal_persist_item *items, size_t n, bal_journal_row *rows) {
    bool written[PERSIST_ITEMS_MAX] = {false};
    assert(n <= PERSIST_ITEMS_MAX);
    size_t start = 0;
    while (start < n) {
        size_t end = start;
        while (end < n && items[end].encoded != NULL) end++;
        for (size_t i = start; i < end; i++) {
            if (!written[i]) persist_shard(node, items + i, end - i, written + i, items[i].shard, rows);
        }
        if (end < n) checkpoint(node, &items[end]);
        start = end + 1;
    }
}

/* The journal is off the hot path: its lag is bounded (--journal-lag-max) and absorbs
 * bursts, while a request waits for the HTTP and shard threads. So the persister runs at a
 * lower priority. Measured (docs/benchmarks.md, 2026-11-21): on 2 busy cores it still takes
 * 0.7-0.8 of a core during a burst, nice 19 did no better, and SCHED_IDLE (fixed or only
 * while the lag is small) made bursts faster but sustained load or the latency tail worse. */
#define PERSIST_NICE 10

void *bal_persister_main(void *argument) {
    bal_node *node = argument;
    bal_thread_name("bal-persist", -1);
    if (setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), PERSIST_NICE) != 0) {
        bal_log(BAL_LOG_WARN, "persister_priority", "\"detail\":\"could not lower the persister's priority\"");
    }
    bal_persist_item *items = calloc(PERSIST_ITEMS_MAX, sizeof(bal_persist_item));
    bal_journal_row *rows = malloc(PERSIST_ROWS_MAX * sizeof(bal_journal_row));
    if (items == NULL || rows == NULL) abort();
    for (;;) {
        size_t n = bal_queue_pop(&node->persister_queue, items, PERSIST_ITEMS_MAX, -1);
        if (n == 0) break; /* closed and drained */
        persist(node, items, n, rows);
    }
    free(items);
    free(rows);
    return NULL;
}

bool bal_node_wait_persisted(bal_node *node, int64_t shard, uint32_t timeout_ms) {
    uint64_t targets[BAL_NODE_SHARDS_MAX];
    uint32_t first = shard < 0 ? 0 : (uint32_t)shard;
    uint32_t last = shard < 0 ? node->config.shard_count : (uint32_t)shard + 1;
    for (uint32_t s = first; s < last; s++) targets[s] = atomic_load(&node->shards[s].acked_lsn);
    struct timespec deadline = bal_wait_deadline(timeout_ms);
    pthread_mutex_lock(&node->progress_mutex);
    bool caught_up = false;
    for (;;) {
        caught_up = true;
        for (uint32_t s = first; s < last; s++) caught_up &= atomic_load(&node->shards[s].persisted_lsn) >= targets[s];
        if (caught_up) break;
        if (pthread_cond_timedwait(&node->progress_cond, &node->progress_mutex, &deadline) != 0) break;
    }
    pthread_mutex_unlock(&node->progress_mutex);
    return caught_up;
}
