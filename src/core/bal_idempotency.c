/*
 * bal_idempotency.c -- recent transaction ids in an arena ring with a hash index.
 *
 * Records are appended at the arena's head and evicted from its tail (FIFO = oldest
 * first, which matches both the count bound and the age bound, since commands arrive in
 * time order per shard). A record that does not fit before the arena's end leaves a wrap
 * marker and starts again at offset 0.
 *
 * The index is open addressing with linear probing over 64-bit slots: the low 32 bits of
 * the id's hash (the probe start is derived from them) and the record's offset in 8-byte
 * units plus one (0 = empty slot). Eviction deletes with backward shifting, so there are
 * no tombstones and probe lengths stay short at the fixed load factor of at most 1/2.
 */
#include "bal_idempotency.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "bal_hash.h"

/* Record layout (all little-endian, 8-byte aligned):
 *   u32 record_bytes (0 = wrap marker) | u8 id_length | u8 result | u8 change_count | u8 0
 *   u64 sequence | i64 time_ms | u64 digest_low | u64 digest_high | u64 id_hash
 *   id bytes padded to 8 | change_count x (u64 account, u64 currency, i128 available, i128 frozen)
 */
#define RECORD_HEADER_BYTES 48u
#define RECORD_CHANGE_BYTES 48u
#define ALIGN8(n) (((n) + 7u) & ~(uint64_t)7u)
/* Records ahead of the tail whose index slots eviction prefetches. */
#define EVICT_PREFETCH_DISTANCE 8u

struct bal_idempotency {
    uint8_t *arena;
    uint64_t arena_bytes;
    uint64_t head;     /* where the next record goes */
    uint64_t tail;     /* the oldest record (or a wrap marker) */
    uint64_t *slots;
    uint64_t slot_mask;
    uint32_t count;
    uint32_t count_max;
    uint64_t evicted;
    uint64_t seed;
};

size_t bal_idempotency_record_bytes_max(void) {
    return RECORD_HEADER_BYTES + ALIGN8(BAL_TRANSACTION_ID_LENGTH_MAX) +
           (size_t)BAL_COMMAND_BALANCES_MAX * RECORD_CHANGE_BYTES;
}

static uint32_t read_u32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t read_u64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }

bal_idempotency *bal_idempotency_create(uint32_t count_max, uint64_t bytes_max, uint64_t seed) {
    if (count_max == 0 || count_max > BAL_IDEMPOTENCY_COUNT_MAX) return NULL;
    if (bytes_max < 4 * bal_idempotency_record_bytes_max()) return NULL;
    bal_idempotency *memory = calloc(1, sizeof(*memory));
    if (memory == NULL) return NULL;
    uint64_t slot_count = 1;
    while (slot_count < 2ull * count_max) slot_count <<= 1;
    memory->arena_bytes = bytes_max & ~(uint64_t)7u;
    memory->arena = malloc(memory->arena_bytes);
    memory->slots = calloc(slot_count, sizeof(uint64_t));
    if (memory->arena == NULL || memory->slots == NULL) {
        bal_idempotency_destroy(memory);
        return NULL;
    }
    memory->slot_mask = slot_count - 1;
    memory->count_max = count_max;
    memory->seed = seed;
    return memory;
}

void bal_idempotency_destroy(bal_idempotency *memory) {
    if (memory == NULL) return;
    free(memory->arena);
    free(memory->slots);
    free(memory);
}

static uint64_t id_hash(const bal_idempotency *memory, const char *id, size_t length) {
    return bal_hash_bytes(id, length, memory->seed);
}

static bool record_matches(const bal_idempotency *memory, uint64_t slot, uint64_t hash,
                           const char *id, size_t length) {
    if ((uint32_t)slot != (uint32_t)hash) return false;
    const uint8_t *record = memory->arena + ((slot >> 32) - 1) * 8;
    return read_u64(record + 40) == hash && record[4] == length &&
           memcmp(record + RECORD_HEADER_BYTES, id, length) == 0;
}

static void view_of(const uint8_t *record, bal_idempotency_view *view) {
    view->transaction_id_length = record[4];
    view->result = record[5];
    view->change_count = record[6];
    view->sequence = read_u64(record + 8);
    view->time_ms = (int64_t)read_u64(record + 16);
    view->digest.low = read_u64(record + 24);
    view->digest.high = read_u64(record + 32);
    view->transaction_id = (const char *)record + RECORD_HEADER_BYTES;
    view->changes = record + RECORD_HEADER_BYTES + ALIGN8(record[4]);
}

uint64_t bal_idempotency_hash(const bal_idempotency *memory, const char *transaction_id, size_t length) {
    assert(memory != NULL && length <= BAL_TRANSACTION_ID_LENGTH_MAX);
    return id_hash(memory, transaction_id, length);
}

bool bal_idempotency_find(const bal_idempotency *memory, const char *transaction_id,
                          size_t length, bal_idempotency_view *view_out) {
    return bal_idempotency_find_hashed(memory, id_hash(memory, transaction_id, length), transaction_id,
                                       length, view_out);
}

bool bal_idempotency_find_hashed(const bal_idempotency *memory, uint64_t hash, const char *transaction_id,
                                 size_t length, bal_idempotency_view *view_out) {
    assert(memory != NULL && view_out != NULL);
    assert(length > 0 && length <= BAL_TRANSACTION_ID_LENGTH_MAX);
    for (uint64_t i = hash & memory->slot_mask;; i = (i + 1) & memory->slot_mask) {
        uint64_t slot = memory->slots[i];
        if (slot == 0) return false;
        if (record_matches(memory, slot, hash, transaction_id, length)) {
            view_of(memory->arena + ((slot >> 32) - 1) * 8, view_out);
            return true;
        }
    }
}

void bal_idempotency_prefetch(const bal_idempotency *memory, uint64_t hash) {
    assert(memory != NULL);
    __builtin_prefetch(&memory->slots[hash & memory->slot_mask]);
}

/* Removes the index slot that points at offset, shifting later slots of the cluster back. */
static void index_remove(bal_idempotency *memory, uint64_t hash, uint64_t offset) {
    uint64_t mask = memory->slot_mask;
    uint64_t i = hash & mask;
    while ((memory->slots[i] >> 32) != offset / 8 + 1) {
        assert(memory->slots[i] != 0);
        i = (i + 1) & mask;
    }
    for (uint64_t j = (i + 1) & mask; memory->slots[j] != 0; j = (j + 1) & mask) {
        uint64_t home = (uint32_t)memory->slots[j] & mask;
        /* Move slot j back to the hole at i unless its home lies cyclically in (i, j]. */
        bool home_between = (i <= j) ? (home > i && home <= j) : (home > i || home <= j);
        if (!home_between) {
            memory->slots[i] = memory->slots[j];
            i = j;
        }
    }
    memory->slots[i] = 0;
}

static void evict_oldest(bal_idempotency *memory) {
    assert(memory->count > 0);
    uint8_t *record = memory->arena + memory->tail;
    if (memory->tail + 4 > memory->arena_bytes || read_u32(record) == 0) {
        memory->tail = 0; /* wrap marker, or too little room for one */
        record = memory->arena;
    }
    uint32_t bytes = read_u32(record);
    assert(bytes >= RECORD_HEADER_BYTES && bytes % 8 == 0);
    index_remove(memory, read_u64(record + 40), memory->tail);
    memory->tail += bytes;
    memory->count--;
    memory->evicted++;
    if (memory->count == 0) memory->head = memory->tail = 0;
}

/* Makes room for a contiguous record of `bytes` at head; returns its offset.
 * Records occupy [tail, head) when head > tail, else [tail, end) and [0, head); in the
 * second case (including head == tail with records present) the free space is [head, tail). */
static uint64_t reserve(bal_idempotency *memory, uint64_t bytes) {
    assert(bytes <= memory->arena_bytes / 4);
    while (memory->count >= memory->count_max) evict_oldest(memory);
    for (;;) {
        if (memory->count == 0) {
            memory->head = memory->tail = 0;
            return 0;
        }
        if (memory->head > memory->tail) {
            if (memory->arena_bytes - memory->head >= bytes) return memory->head;
            if (memory->arena_bytes - memory->head >= 4) {
                uint32_t marker = 0; /* readers skip from here to offset 0 */
                memcpy(memory->arena + memory->head, &marker, 4);
            }
            memory->head = 0;
            continue;
        }
        if (memory->tail - memory->head >= bytes) return memory->head;
        evict_oldest(memory);
    }
}

static void index_insert(bal_idempotency *memory, uint64_t hash, uint64_t offset) {
    uint64_t i = hash & memory->slot_mask;
    while (memory->slots[i] != 0) i = (i + 1) & memory->slot_mask;
    memory->slots[i] = ((offset / 8 + 1) << 32) | (uint32_t)hash;
}

/* Counts in the record just written at offset (reserved there) and indexes it. */
static void commit(bal_idempotency *memory, uint64_t offset, uint32_t bytes, uint64_t hash) {
    memory->head = offset + bytes;
    memory->count++;
    index_insert(memory, hash, offset);
}

static uint64_t place(bal_idempotency *memory, const uint8_t *record, uint32_t bytes, uint64_t hash) {
    uint64_t offset = reserve(memory, bytes);
    memcpy(memory->arena + offset, record, bytes);
    commit(memory, offset, bytes, hash);
    return offset;
}

static uint64_t free_bytes(const bal_idempotency *memory) {
    if (memory->count == 0) return memory->arena_bytes;
    if (memory->head > memory->tail) return memory->arena_bytes - memory->head + memory->tail;
    return memory->tail - memory->head;
}

uint32_t bal_idempotency_batch_max(const bal_idempotency *memory) {
    uint64_t by_bytes = memory->arena_bytes / bal_idempotency_record_bytes_max() - 1;
    uint32_t by_count = memory->count_max;
    return by_bytes < by_count ? (uint32_t)by_bytes : by_count;
}

/* Free space of (n + 1) largest records holds n records of any size: at most one
 * largest record's worth is lost at the arena's end when the head wraps. */
void bal_idempotency_make_room(bal_idempotency *memory, uint32_t record_count) {
    assert(memory != NULL);
    assert(record_count <= bal_idempotency_batch_max(memory));
    uint64_t bytes_needed = ((uint64_t)record_count + 1) * bal_idempotency_record_bytes_max();
    /* Each eviction looks up its record's index slot: a cache miss. A cursor walks a few
     * records ahead of the tail and prefetches their slots, so those misses overlap. */
    uint64_t ahead = memory->tail;
    uint32_t ahead_count = 0;
    while (memory->count > 0 &&
           (memory->count + record_count > memory->count_max || free_bytes(memory) < bytes_needed)) {
        while (ahead_count < EVICT_PREFETCH_DISTANCE && ahead_count < memory->count) {
            if (ahead + 4 > memory->arena_bytes || read_u32(memory->arena + ahead) == 0) ahead = 0;
            const uint8_t *record = memory->arena + ahead;
            __builtin_prefetch(&memory->slots[read_u64(record + 40) & memory->slot_mask]);
            ahead += read_u32(record);
            ahead_count++;
        }
        evict_oldest(memory);
        ahead_count--;
    }
}

void bal_idempotency_insert(bal_idempotency *memory, const bal_command *command,
                            bal_digest digest, const bal_outcome *outcome, const bal_change *changes) {
    uint64_t hash = id_hash(memory, command->transaction_id, command->transaction_id_length);
    bal_idempotency_insert_hashed(memory, hash, command, digest, outcome, changes);
}

/* Writes a record straight into the arena (no staging copy): reserve, fill, then index. */
void bal_idempotency_insert_hashed(bal_idempotency *memory, uint64_t hash, const bal_command *command,
                                   bal_digest digest, const bal_outcome *outcome, const bal_change *changes) {
    assert(memory != NULL && command != NULL && outcome != NULL);
    assert(command->transaction_id_length > 0);
    assert(outcome->change_count <= BAL_COMMAND_BALANCES_MAX);
    uint32_t id_bytes = (uint32_t)ALIGN8(command->transaction_id_length);
    uint32_t bytes = RECORD_HEADER_BYTES + id_bytes + outcome->change_count * RECORD_CHANGE_BYTES;
    uint64_t offset = reserve(memory, bytes);
    uint8_t *record = memory->arena + offset;
    uint8_t flags[4] = {command->transaction_id_length, outcome->result, outcome->change_count, 0};
    memcpy(record, &bytes, 4);
    memcpy(record + 4, flags, 4);
    memcpy(record + 8, &outcome->sequence, 8);
    memcpy(record + 16, &command->time_ms, 8);
    memcpy(record + 24, &digest.low, 8);
    memcpy(record + 32, &digest.high, 8);
    memcpy(record + 40, &hash, 8);
    memset(record + RECORD_HEADER_BYTES + id_bytes - 8, 0, 8); /* the id's padding */
    memcpy(record + RECORD_HEADER_BYTES, command->transaction_id, command->transaction_id_length);
    uint8_t *change = record + RECORD_HEADER_BYTES + id_bytes;
    for (unsigned i = 0; i < outcome->change_count; i++, change += RECORD_CHANGE_BYTES) {
        const bal_change *c = &changes[i];
        memcpy(change, &c->account_id, 8);
        memcpy(change + 8, &c->currency.code, 8);
        memcpy(change + 16, &c->available_after, 16);
        memcpy(change + 32, &c->frozen_after, 16);
    }
    commit(memory, offset, bytes, hash);
}

uint64_t bal_idempotency_expire(bal_idempotency *memory, int64_t now_ms, int64_t retention_ms) {
    assert(memory != NULL && retention_ms > 0);
    uint64_t expired = 0;
    while (memory->count > 0) {
        const uint8_t *record = memory->arena + memory->tail;
        if (memory->tail + 4 > memory->arena_bytes || read_u32(record) == 0) record = memory->arena;
        int64_t time_ms = (int64_t)read_u64(record + 16);
        if (now_ms - time_ms <= retention_ms) break;
        evict_oldest(memory);
        expired++;
    }
    return expired;
}

void bal_idempotency_outcome(const bal_idempotency_view *view, bal_outcome *outcome_out, bal_change *changes_out) {
    assert(view != NULL && outcome_out != NULL);
    assert(view->change_count <= BAL_COMMAND_BALANCES_MAX);
    outcome_out->sequence = view->sequence;
    outcome_out->result = view->result;
    outcome_out->duplicate = true;
    outcome_out->change_count = view->change_count;
    const uint8_t *change = view->changes;
    for (unsigned i = 0; i < view->change_count; i++, change += RECORD_CHANGE_BYTES) {
        bal_change *c = &changes_out[i];
        memcpy(&c->account_id, change, 8);
        memcpy(&c->currency.code, change + 8, 8);
        memcpy(&c->available_after, change + 16, 16);
        memcpy(&c->frozen_after, change + 32, 16);
        c->available_before = c->available_after;
        c->frozen_before = c->frozen_after;
    }
}

uint32_t bal_idempotency_count(const bal_idempotency *memory) { return memory->count; }
uint64_t bal_idempotency_evicted(const bal_idempotency *memory) { return memory->evicted; }
uint64_t bal_idempotency_memory_bytes(const bal_idempotency *memory) {
    return memory->arena_bytes + (memory->slot_mask + 1) * sizeof(uint64_t);
}

void bal_idempotency_each(const bal_idempotency *memory, bal_idempotency_visit visit, void *context) {
    assert(memory != NULL && visit != NULL);
    uint64_t offset = memory->tail;
    for (uint32_t i = 0; i < memory->count; i++) {
        if (offset + 4 > memory->arena_bytes || read_u32(memory->arena + offset) == 0) offset = 0;
        uint32_t bytes = read_u32(memory->arena + offset);
        assert(bytes >= RECORD_HEADER_BYTES);
        visit(context, memory->arena + offset, bytes);
        offset += bytes;
    }
}

bool bal_idempotency_insert_raw(bal_idempotency *memory, const uint8_t *record, uint32_t length) {
    assert(memory != NULL && record != NULL);
    if (length < RECORD_HEADER_BYTES || length > bal_idempotency_record_bytes_max()) return false;
    if (read_u32(record) != length || length % 8 != 0) return false;
    uint8_t id_length = record[4];
    if (record[5] >= BAL_RESULT_COUNT || record[6] > BAL_COMMAND_BALANCES_MAX) return false;
    if (RECORD_HEADER_BYTES + ALIGN8(id_length) + (uint64_t)record[6] * RECORD_CHANGE_BYTES != length) return false;
    const char *id = (const char *)record + RECORD_HEADER_BYTES;
    if (!bal_transaction_id_valid(id, id_length)) return false;
    bal_idempotency_view existing;
    if (bal_idempotency_find(memory, id, id_length, &existing)) return false;
    /* The hash in the record depends on the seed of the memory that wrote it: recompute. */
    uint8_t copy[RECORD_HEADER_BYTES + ALIGN8(BAL_TRANSACTION_ID_LENGTH_MAX) +
                 BAL_COMMAND_BALANCES_MAX * RECORD_CHANGE_BYTES];
    memcpy(copy, record, length);
    uint64_t hash = id_hash(memory, id, id_length);
    memcpy(copy + 40, &hash, 8);
    place(memory, copy, length, hash);
    return true;
}
