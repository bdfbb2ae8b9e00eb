/*
 * bal_auth_nonce.c -- bounded nonce memory with a timing wheel (see bal_auth_nonce.h).
 *
 * Entries live in one array allocated at creation; free entries form a list. Each used
 * entry is on two singly linked lists: its hash chain (buckets: a power of two at least
 * count_max, so chains stay about one entry long) and its wheel slot (by expiry second).
 * Entries never used yet are taken in order, so a large, mostly idle memory costs no
 * resident pages.
 */
#include "bal_auth_nonce.h"

#include <assert.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>

#include "bal_auth.h"
#include "bal_siphash.h"

#define BAL_AUTH_NONCE_NIL UINT32_MAX
#define BAL_AUTH_NONCE_SLOT_MS 1000
/* A fresh entry expires at most two windows after the clock that inserts it (its timestamp
   may be a window ahead), plus slack for the partial slots at both ends and for callers
   whose clock readings differ slightly. */
#define BAL_AUTH_NONCE_SLOTS (2 * BAL_AUTH_REPLAY_WINDOW_MS / BAL_AUTH_NONCE_SLOT_MS + 4)
/* The SipHash key: 128 random bits keep the digests unpredictable (a client cannot aim
   nonces at one hash chain, nor make two of them collide, without them). */
#define BAL_AUTH_NONCE_SEED_BYTES BAL_SIPHASH_KEY_BYTES

_Static_assert(BAL_AUTH_NONCE_COUNT_MAX < BAL_AUTH_NONCE_NIL, "entry indexes leave room for the nil link");
_Static_assert(BAL_AUTH_REPLAY_WINDOW_MS % BAL_AUTH_NONCE_SLOT_MS == 0, "the window is whole slots");

typedef struct bal_auth_nonce_entry {
    uint8_t digest[BAL_AUTH_NONCE_DIGEST_BYTES];
    int64_t expires_ms;  /* remembered while the clock is at or before this */
    uint32_t hash_next;  /* next in the hash chain, or in the free list */
    uint32_t wheel_next; /* next in the wheel slot */
} bal_auth_nonce_entry;

struct bal_auth_nonce_memory {
    pthread_mutex_t lock; /* guards everything below except seed, the sizes and the buckets pointer */
    uint8_t seed[BAL_AUTH_NONCE_SEED_BYTES];
    uint32_t count_max;
    uint32_t bucket_mask;
    uint32_t count;
    uint32_t free_head;  /* reclaimed entries */
    uint32_t fresh_next; /* entries from here on were never used: pages untouched until needed */
    int64_t cursor_slot; /* every slot before this absolute second was reclaimed; -1: never */
    uint32_t *buckets;
    bal_auth_nonce_entry *entries;
    uint32_t wheel[BAL_AUTH_NONCE_SLOTS];
};

/* The buckets and entries are looked up at random: on 2 MiB pages (advice only) a look-up
 * misses the TLB far less. Whole huge pages, untouched until used; a small array (tests,
 * tiny memories) stays on ordinary ones. */
#define BAL_AUTH_NONCE_PAGE_BYTES (2u << 20)

static void *bal_auth_nonce_alloc(size_t bytes) {
    if (bytes < BAL_AUTH_NONCE_PAGE_BYTES) return malloc(bytes);
    size_t rounded = (bytes + BAL_AUTH_NONCE_PAGE_BYTES - 1) / BAL_AUTH_NONCE_PAGE_BYTES * BAL_AUTH_NONCE_PAGE_BYTES;
    void *memory = aligned_alloc(BAL_AUTH_NONCE_PAGE_BYTES, rounded);
    if (memory != NULL) (void)madvise(memory, rounded, MADV_HUGEPAGE);
    return memory;
}

bal_auth_nonce_memory *bal_auth_nonce_create(uint32_t count_max) {
    assert(count_max >= 1 && count_max <= BAL_AUTH_NONCE_COUNT_MAX);
    bal_auth_nonce_memory *memory = calloc(1, sizeof *memory);
    if (memory == NULL) return NULL;
    uint32_t bucket_count = 1;
    while (bucket_count < count_max) bucket_count *= 2;
    memory->buckets = bal_auth_nonce_alloc((size_t)bucket_count * sizeof *memory->buckets);
    memory->entries = bal_auth_nonce_alloc((size_t)count_max * sizeof *memory->entries);
    bool seeded = getrandom(memory->seed, sizeof memory->seed, 0) == (ssize_t)sizeof memory->seed;
    if (memory->buckets == NULL || memory->entries == NULL || !seeded ||
        pthread_mutex_init(&memory->lock, NULL) != 0) {
        free(memory->buckets);
        free(memory->entries);
        free(memory);
        return NULL;
    }
    memory->count_max = count_max;
    memory->bucket_mask = bucket_count - 1;
    memory->cursor_slot = -1;
    for (uint32_t i = 0; i < bucket_count; i++) memory->buckets[i] = BAL_AUTH_NONCE_NIL;
    for (uint32_t i = 0; i < BAL_AUTH_NONCE_SLOTS; i++) memory->wheel[i] = BAL_AUTH_NONCE_NIL;
    memory->free_head = BAL_AUTH_NONCE_NIL;
    memory->fresh_next = 0;
    return memory;
}

void bal_auth_nonce_destroy(bal_auth_nonce_memory *memory) {
    if (memory == NULL) return;
    pthread_mutex_destroy(&memory->lock);
    free(memory->buckets);
    free(memory->entries);
    free(memory);
}

void bal_auth_nonce_digest(const bal_auth_nonce_memory *memory, const char *key_id, size_t key_id_length,
                           const char *nonce, size_t nonce_length, uint8_t digest[BAL_AUTH_NONCE_DIGEST_BYTES]) {
    assert(memory != NULL && key_id != NULL && nonce != NULL);
    assert(key_id_length <= BAL_AUTH_KEY_ID_LENGTH_MAX && nonce_length <= BAL_AUTH_NONCE_LENGTH_MAX);
    /* key id length | key id | nonce, under the secret seed: the length byte keeps ("ab","c")
       apart from ("a","bc"). SipHash-2-4-128, a keyed PRF for short inputs, takes about a
       third of the time of the seeded SHA-256 block that it replaced (docs/benchmarks.md). */
    uint8_t input[1 + BAL_AUTH_KEY_ID_LENGTH_MAX + BAL_AUTH_NONCE_LENGTH_MAX];
    size_t length = 0;
    input[length++] = (uint8_t)key_id_length;
    memcpy(input + length, key_id, key_id_length);
    length += key_id_length;
    memcpy(input + length, nonce, nonce_length);
    length += nonce_length;
    _Static_assert(BAL_AUTH_NONCE_DIGEST_BYTES == BAL_SIPHASH_128_BYTES, "a digest is one SipHash-128 output");
    bal_siphash128(memory->seed, input, length, digest);
}

static uint32_t bal_auth_nonce_bucket(const bal_auth_nonce_memory *memory, const uint8_t *digest) {
    uint64_t word;
    memcpy(&word, digest, sizeof word); /* a seeded SHA-256 output: already uniform */
    return (uint32_t)word & memory->bucket_mask;
}

void bal_auth_nonce_prefetch(const bal_auth_nonce_memory *memory, const uint8_t digest[BAL_AUTH_NONCE_DIGEST_BYTES]) {
    assert(memory != NULL && digest != NULL);
    /* Only a hint to the CPU; it reads nothing but fields fixed at creation, so no lock. */
    __builtin_prefetch(&memory->buckets[bal_auth_nonce_bucket(memory, digest)]);
}

void bal_auth_nonce_prefetch_entry(const bal_auth_nonce_memory *memory,
                                   const uint8_t digest[BAL_AUTH_NONCE_DIGEST_BYTES]) {
    assert(memory != NULL && digest != NULL);
    /* Without the lock: the value may be stale by the time it is used, which costs only a
       useless prefetch; the entries array never moves, and the index is checked. */
    uint32_t index = __atomic_load_n(&memory->buckets[bal_auth_nonce_bucket(memory, digest)], __ATOMIC_RELAXED);
    if (index < memory->count_max) __builtin_prefetch(&memory->entries[index]);
}

static uint32_t bal_auth_nonce_wheel_slot(int64_t time_ms) {
    assert(time_ms >= 0);
    return (uint32_t)((uint64_t)(time_ms / BAL_AUTH_NONCE_SLOT_MS) % BAL_AUTH_NONCE_SLOTS);
}

static void bal_auth_nonce_unlink_hash(bal_auth_nonce_memory *memory, uint32_t index) {
    uint32_t *link = &memory->buckets[bal_auth_nonce_bucket(memory, memory->entries[index].digest)];
    while (*link != index) {
        assert(*link != BAL_AUTH_NONCE_NIL); /* the entry must be on its chain */
        link = &memory->entries[*link].hash_next;
    }
    /* Atomic (relaxed) because bal_auth_nonce_prefetch_entry reads buckets without the lock. */
    __atomic_store_n(link, memory->entries[index].hash_next, __ATOMIC_RELAXED);
}

/* Frees the expired entries of one wheel slot; unexpired ones (inserted with an older clock
   reading, a lap behind) stay for the next lap, so nothing is ever forgotten early. */
static void bal_auth_nonce_reclaim_slot(bal_auth_nonce_memory *memory, uint32_t slot, int64_t now_ms) {
    uint32_t *link = &memory->wheel[slot];
    while (*link != BAL_AUTH_NONCE_NIL) {
        uint32_t index = *link;
        bal_auth_nonce_entry *entry = &memory->entries[index];
        if (entry->expires_ms >= now_ms) {
            link = &entry->wheel_next;
            continue;
        }
        *link = entry->wheel_next;
        bal_auth_nonce_unlink_hash(memory, index);
        entry->hash_next = memory->free_head;
        memory->free_head = index;
        assert(memory->count > 0);
        memory->count--;
    }
}

static void bal_auth_nonce_reclaim(bal_auth_nonce_memory *memory, int64_t now_ms) {
    int64_t current_slot = now_ms / BAL_AUTH_NONCE_SLOT_MS;
    if (memory->cursor_slot < 0) memory->cursor_slot = current_slot; /* nothing inserted before */
    if (current_slot <= memory->cursor_slot) return;
    /* Every expiry in a slot before current_slot is before now. After a long pause one lap
       of the wheel covers every slot. */
    int64_t steps = current_slot - memory->cursor_slot;
    if (steps > BAL_AUTH_NONCE_SLOTS) steps = BAL_AUTH_NONCE_SLOTS;
    for (int64_t i = 0; i < steps; i++) {
        int64_t absolute_slot = memory->cursor_slot + i;
        bal_auth_nonce_reclaim_slot(memory, (uint32_t)(absolute_slot % BAL_AUTH_NONCE_SLOTS), now_ms);
    }
    memory->cursor_slot = current_slot;
}

/* When the memory is full: the time until the earliest slot holding entries is reclaimed. */
static int64_t bal_auth_nonce_retry_ms(const bal_auth_nonce_memory *memory, int64_t now_ms) {
    for (int64_t i = 0; i < BAL_AUTH_NONCE_SLOTS; i++) {
        int64_t absolute_slot = memory->cursor_slot + i;
        if (memory->wheel[absolute_slot % BAL_AUTH_NONCE_SLOTS] != BAL_AUTH_NONCE_NIL) {
            int64_t retry_ms = (absolute_slot + 1) * BAL_AUTH_NONCE_SLOT_MS - now_ms;
            return retry_ms > 0 ? retry_ms : 1;
        }
    }
    return 1; /* count_max entries exist, so a slot holds some; not reached */
}

static bool bal_auth_nonce_find(const bal_auth_nonce_memory *memory, const uint8_t *digest, int64_t now_ms) {
    for (uint32_t index = memory->buckets[bal_auth_nonce_bucket(memory, digest)]; index != BAL_AUTH_NONCE_NIL;
         index = memory->entries[index].hash_next) {
        const bal_auth_nonce_entry *entry = &memory->entries[index];
        /* An expired entry not reclaimed yet (its slot is the current one) no longer counts. */
        if (entry->expires_ms >= now_ms && memcmp(entry->digest, digest, BAL_AUTH_NONCE_DIGEST_BYTES) == 0) {
            return true;
        }
    }
    return false;
}

bal_auth_nonce_result bal_auth_nonce_remember(bal_auth_nonce_memory *memory,
                                              const uint8_t digest[BAL_AUTH_NONCE_DIGEST_BYTES],
                                              int64_t expires_ms, int64_t now_ms, int64_t *retry_after_ms) {
    assert(memory != NULL && digest != NULL);
    assert(now_ms >= 0 && expires_ms >= now_ms);
    assert(expires_ms - now_ms <= 2 * (int64_t)BAL_AUTH_REPLAY_WINDOW_MS);
    pthread_mutex_lock(&memory->lock);
    bal_auth_nonce_reclaim(memory, now_ms);
    bal_auth_nonce_result result;
    if (bal_auth_nonce_find(memory, digest, now_ms)) {
        result = BAL_AUTH_NONCE_REPLAYED;
    } else if (memory->count == memory->count_max) {
        assert(memory->free_head == BAL_AUTH_NONCE_NIL && memory->fresh_next == memory->count_max);
        if (retry_after_ms != NULL) *retry_after_ms = bal_auth_nonce_retry_ms(memory, now_ms);
        result = BAL_AUTH_NONCE_FULL;
    } else {
        uint32_t index = memory->free_head;
        if (index != BAL_AUTH_NONCE_NIL) {
            memory->free_head = memory->entries[index].hash_next;
        } else {
            assert(memory->fresh_next < memory->count_max);
            index = memory->fresh_next++;
        }
        bal_auth_nonce_entry *entry = &memory->entries[index];
        memcpy(entry->digest, digest, BAL_AUTH_NONCE_DIGEST_BYTES);
        entry->expires_ms = expires_ms;
        uint32_t *bucket = &memory->buckets[bal_auth_nonce_bucket(memory, digest)];
        entry->hash_next = *bucket;
        __atomic_store_n(bucket, index, __ATOMIC_RELAXED); /* read without the lock: prefetch_entry */
        uint32_t slot = bal_auth_nonce_wheel_slot(expires_ms);
        entry->wheel_next = memory->wheel[slot];
        memory->wheel[slot] = index;
        memory->count++;
        result = BAL_AUTH_NONCE_REMEMBERED;
    }
    pthread_mutex_unlock(&memory->lock);
    return result;
}

uint32_t bal_auth_nonce_count(bal_auth_nonce_memory *memory) {
    assert(memory != NULL);
    pthread_mutex_lock(&memory->lock);
    uint32_t count = memory->count;
    pthread_mutex_unlock(&memory->lock);
    return count;
}
