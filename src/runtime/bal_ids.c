/*
 * bal_ids.c -- the node-wide id filter and id claims (see bal_ids.h for the contract).
 *
 * The filter is split into 64-byte blocks, one cache line each: an id's hash picks a
 * block and then BAL_IDS_FILTER_PROBES bits inside it, so adding or testing an id touches
 * one line. Bits are set with an atomic OR and never cleared.
 *
 * Claims sit in a ring of claims_max entries indexed by a hash table of chains. Each entry
 * records its absolute ring position; a chain links newest to oldest by position, and a
 * link to a slot whose entry has a different position ends the chain: that slot was
 * reused, and everything older than it was too. The ring only overwrites an entry that is
 * no longer live, so no live claim is ever lost from a chain.
 */
#include "bal_ids.h"

#include <assert.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bal_hash.h"
#include "bal_wait.h"

#define BAL_IDS_FILTER_BLOCK_BYTES 64u
#define BAL_IDS_FILTER_BLOCK_WORDS (BAL_IDS_FILTER_BLOCK_BYTES / 8u)
/* Bits per id within its block: with 16 bits of filter per id, 8 probes are near the
 * optimum for a blocked filter (0.089% wrong "maybe"s measured, tests/runtime/test_ids.c). */
#define BAL_IDS_FILTER_PROBES 8u
#define BAL_IDS_SEED_BLOCK 0x6a09e667f3bcc909ull
#define BAL_IDS_SEED_BITS 0xbb67ae8584caa73bull

typedef struct bal_ids_entry {
    uint64_t hash;
    uint64_t number;     /* 0: released */
    uint64_t position;   /* absolute ring position + 1; 0: never used */
    uint64_t next;       /* position + 1 of the next older entry in the chain; 0: none */
    uint32_t shard;
} bal_ids_entry;

struct bal_ids {
    _Atomic uint64_t *filter;
    uint64_t block_count;          /* power of two */
    /* On a line of its own: every shard adds to it, and the two fields above are read by
     * every shard's look-ups. */
    _Alignas(64) _Atomic uint64_t remembered;
    _Alignas(64) pthread_mutex_t mutex; /* claims */
    pthread_cond_t stored_cond;    /* signalled when a mark advances or a claim is released */
    bal_ids_entry *ring;
    uint64_t ring_size;
    uint64_t *heads;               /* position + 1 of a chain's newest entry; 0: empty */
    uint64_t head_mask;
    uint64_t next_position;
    uint32_t shard_count;
    _Atomic uint64_t next_number[BAL_IDS_SHARDS_MAX];
    _Atomic uint64_t stored_mark[BAL_IDS_SHARDS_MAX];
    _Atomic uint64_t ring_waits;
    /* Threads in a wait on stored_cond: the persister takes the mutex to signal only when
     * one waits, so that it never holds up a shard's claims (it runs at a lower priority and
     * may lose the processor inside the mutex). Sequentially consistent with the marks. */
    _Atomic uint32_t waiters;
};

bool bal_ids_create(uint64_t filter_bytes, uint32_t claims_max, uint32_t shard_count, bal_ids **ids_out) {
    assert(ids_out != NULL);
    *ids_out = NULL;
    if (filter_bytes == 0) filter_bytes = BAL_IDS_FILTER_BYTES_DEFAULT;
    if (claims_max == 0) claims_max = BAL_IDS_CLAIMS_DEFAULT;
    if (filter_bytes < BAL_IDS_FILTER_BYTES_MIN || filter_bytes > BAL_IDS_FILTER_BYTES_MAX ||
        (filter_bytes & (filter_bytes - 1)) != 0 || claims_max < BAL_IDS_CLAIMS_MIN || claims_max > BAL_IDS_CLAIMS_MAX ||
        shard_count == 0 || shard_count > BAL_IDS_SHARDS_MAX) {
        return false;
    }
    bal_ids *ids = aligned_alloc(_Alignof(bal_ids), sizeof(*ids)); /* its lines, as declared */
    if (ids == NULL) return false;
    memset(ids, 0, sizeof(*ids));
    ids->block_count = filter_bytes / BAL_IDS_FILTER_BLOCK_BYTES;
    ids->filter = aligned_alloc(BAL_IDS_FILTER_BLOCK_BYTES, filter_bytes);
    ids->ring_size = claims_max;
    ids->ring = calloc(claims_max, sizeof(bal_ids_entry));
    uint64_t head_count = 1;
    while (head_count < 2ull * claims_max) head_count <<= 1;
    ids->heads = calloc(head_count, sizeof(uint64_t));
    ids->head_mask = head_count - 1;
    ids->shard_count = shard_count;
    if (ids->filter == NULL || ids->ring == NULL || ids->heads == NULL) {
        bal_ids_destroy(ids);
        return false;
    }
    for (uint64_t w = 0; w < filter_bytes / 8; w++) atomic_init(&ids->filter[w], 0);
    for (uint32_t s = 0; s < BAL_IDS_SHARDS_MAX; s++) {
        atomic_init(&ids->next_number[s], 1);
        atomic_init(&ids->stored_mark[s], 1);
    }
    pthread_mutex_init(&ids->mutex, NULL);
    bal_wait_cond_init(&ids->stored_cond);
    *ids_out = ids;
    return true;
}

void bal_ids_destroy(bal_ids *ids) {
    if (ids == NULL) return;
    if (ids->filter != NULL && ids->ring != NULL && ids->heads != NULL) {
        pthread_mutex_destroy(&ids->mutex);
        pthread_cond_destroy(&ids->stored_cond);
    }
    free((void *)ids->filter);
    free(ids->ring);
    free(ids->heads);
    free(ids);
}

/* ---- filter ---- */

static _Atomic uint64_t *filter_block(const bal_ids *ids, uint64_t hash) {
    uint64_t block = bal_hash_reduce(bal_hash_u64(hash, BAL_IDS_SEED_BLOCK), ids->block_count);
    return &ids->filter[block * BAL_IDS_FILTER_BLOCK_WORDS];
}

/* The probe bits of an id in its block: 9-bit indexes from a second mix of the hash
 * (seven of them fill 63 bits; the eighth comes from a third). The block is chosen by the
 * high bits of the first mix, so the three are independent. */
static void filter_bits(uint64_t hash, uint64_t words[BAL_IDS_FILTER_BLOCK_WORDS]) {
    _Static_assert(BAL_IDS_FILTER_PROBES == 8 && BAL_IDS_FILTER_BLOCK_BYTES * 8 == 512, "9-bit probes into 512 bits");
    for (unsigned w = 0; w < BAL_IDS_FILTER_BLOCK_WORDS; w++) words[w] = 0;
    uint64_t bits = bal_hash_u64(hash, BAL_IDS_SEED_BITS);
    uint64_t last = bal_hash_u64(hash, BAL_IDS_SEED_BITS ^ BAL_IDS_SEED_BLOCK);
    for (unsigned p = 0; p < BAL_IDS_FILTER_PROBES; p++) {
        unsigned bit = p < 7 ? (unsigned)(bits >> (p * 9)) & 0x1ffu : (unsigned)last & 0x1ffu;
        words[bit >> 6] |= 1ull << (bit & 63u);
    }
}

static void remember_one(bal_ids *ids, uint64_t hash) {
    _Atomic uint64_t *block = filter_block(ids, hash);
    uint64_t words[BAL_IDS_FILTER_BLOCK_WORDS];
    filter_bits(hash, words);
    for (unsigned w = 0; w < BAL_IDS_FILTER_BLOCK_WORDS; w++) {
        if (words[w] != 0 && (atomic_load_explicit(&block[w], memory_order_relaxed) & words[w]) != words[w]) {
            atomic_fetch_or_explicit(&block[w], words[w], memory_order_relaxed);
        }
    }
}

/* Filter blocks prefetched ahead of the one being set: each is a cache miss at random. */
#define REMEMBER_PREFETCH_DISTANCE 8

void bal_ids_remember(bal_ids *ids, const uint64_t *hashes, const bool *fresh, size_t count) {
    assert(ids != NULL && (count == 0 || hashes != NULL));
    uint64_t added = 0;
    for (size_t i = 0; i < count; i++) {
        if (i + REMEMBER_PREFETCH_DISTANCE < count) {
            __builtin_prefetch(filter_block(ids, hashes[i + REMEMBER_PREFETCH_DISTANCE]), 1);
        }
        if (fresh != NULL && !fresh[i]) continue;
        remember_one(ids, hashes[i]);
        added++;
    }
    if (added > 0) atomic_fetch_add_explicit(&ids->remembered, added, memory_order_relaxed);
}

bool bal_ids_may_know(const bal_ids *ids, uint64_t hash) {
    assert(ids != NULL);
    _Atomic uint64_t *block = filter_block(ids, hash);
    uint64_t words[BAL_IDS_FILTER_BLOCK_WORDS];
    filter_bits(hash, words);
    for (unsigned w = 0; w < BAL_IDS_FILTER_BLOCK_WORDS; w++) {
        if ((atomic_load_explicit(&block[w], memory_order_relaxed) & words[w]) != words[w]) return false;
    }
    return true;
}

uint64_t bal_ids_remembered(const bal_ids *ids) { return atomic_load_explicit(&ids->remembered, memory_order_relaxed); }

uint64_t bal_ids_filter_bytes(const bal_ids *ids) { return ids->block_count * BAL_IDS_FILTER_BLOCK_BYTES; }

/* ---- claims ---- */

static bool entry_live(const bal_ids *ids, const bal_ids_entry *entry) {
    return entry->position != 0 && entry->number != 0 && entry->number >= atomic_load(&ids->stored_mark[entry->shard]);
}

/* The newest live claim of hash, or NULL. Under the mutex. */
static const bal_ids_entry *find_live(const bal_ids *ids, uint64_t hash) {
    uint64_t link = ids->heads[hash & ids->head_mask];
    while (link != 0) {
        const bal_ids_entry *entry = &ids->ring[(link - 1) % ids->ring_size];
        if (entry->position != link) break; /* reused: the rest of the chain is older still */
        if (entry->hash == hash && entry_live(ids, entry)) return entry;
        link = entry->next;
    }
    return NULL;
}

/* Makes a claim of hash for shard at the ring's next position. Under the mutex. */
static bal_ids_owner add_claim(bal_ids *ids, uint32_t shard, uint64_t hash) {
    bal_ids_entry *slot = &ids->ring[ids->next_position % ids->ring_size];
    if (entry_live(ids, slot)) {
        atomic_fetch_add_explicit(&ids->ring_waits, 1, memory_order_relaxed);
        atomic_fetch_add(&ids->waiters, 1);
        while (entry_live(ids, slot)) pthread_cond_wait(&ids->stored_cond, &ids->mutex);
        atomic_fetch_sub(&ids->waiters, 1);
    }
    uint64_t position = ++ids->next_position; /* position + 1, so that 0 means unused */
    uint64_t number = atomic_fetch_add_explicit(&ids->next_number[shard], 1, memory_order_acq_rel);
    uint64_t *head = &ids->heads[hash & ids->head_mask];
    *slot = (bal_ids_entry){.hash = hash, .number = number, .position = position, .next = *head, .shard = shard};
    *head = position;
    return (bal_ids_owner){.shard = shard, .number = number, .position = position};
}

uint64_t bal_ids_next_number(bal_ids *ids, uint32_t shard) {
    assert(shard < ids->shard_count);
    return atomic_load_explicit(&ids->next_number[shard], memory_order_acquire);
}

void bal_ids_claim(bal_ids *ids, uint32_t shard, uint64_t batch_first_number, const uint64_t *hashes,
                   size_t count, bal_ids_outcome *outcomes_out, bal_ids_owner *owners_out) {
    assert(ids != NULL && shard < ids->shard_count);
    assert(count == 0 || (hashes != NULL && outcomes_out != NULL && owners_out != NULL));
    pthread_mutex_lock(&ids->mutex);
    for (size_t i = 0; i < count; i++) {
        const bal_ids_entry *live = find_live(ids, hashes[i]);
        if (live == NULL) {
            owners_out[i] = add_claim(ids, shard, hashes[i]);
            outcomes_out[i] = BAL_IDS_CLAIMED;
            continue;
        }
        owners_out[i] = (bal_ids_owner){.shard = live->shard, .number = live->number, .position = live->position};
        bool same_batch = live->shard == shard && live->number >= batch_first_number;
        outcomes_out[i] = same_batch ? BAL_IDS_IN_BATCH : BAL_IDS_CONTESTED;
    }
    pthread_mutex_unlock(&ids->mutex);
}

/* The ring entry of a claim, if it is still that claim. Under the mutex. */
static bal_ids_entry *claim_entry(bal_ids *ids, bal_ids_owner owner) {
    bal_ids_entry *entry = &ids->ring[(owner.position - 1) % ids->ring_size];
    return entry->position == owner.position && entry->number == owner.number ? entry : NULL;
}

void bal_ids_release(bal_ids *ids, const uint64_t *hashes, const bal_ids_owner *claims, size_t count) {
    assert(ids != NULL);
    if (count == 0) return;
    pthread_mutex_lock(&ids->mutex);
    for (size_t i = 0; i < count; i++) {
        bal_ids_entry *entry = claim_entry(ids, claims[i]);
        if (entry != NULL && entry->hash == hashes[i]) entry->number = 0;
    }
    pthread_cond_broadcast(&ids->stored_cond);
    pthread_mutex_unlock(&ids->mutex);
}

/* Only the persister raises a shard's mark, so no lock is needed to raise it; a waiter
 * either sees the new mark when it checks (under the mutex) or is counted in waiters before
 * this thread reads the count, and is then woken under the mutex. */
void bal_ids_stored(bal_ids *ids, uint32_t shard, uint64_t mark) {
    assert(ids != NULL && shard < ids->shard_count);
    if (mark <= atomic_load(&ids->stored_mark[shard])) return;
    assert(mark <= atomic_load(&ids->next_number[shard]));
    atomic_store(&ids->stored_mark[shard], mark);
    if (atomic_load(&ids->waiters) == 0) return;
    pthread_mutex_lock(&ids->mutex);
    pthread_cond_broadcast(&ids->stored_cond);
    pthread_mutex_unlock(&ids->mutex);
}

bool bal_ids_wait_stored(bal_ids *ids, bal_ids_owner owner, uint32_t timeout_ms) {
    assert(ids != NULL && owner.shard < ids->shard_count);
    struct timespec deadline = bal_wait_deadline(timeout_ms);
    pthread_mutex_lock(&ids->mutex);
    atomic_fetch_add(&ids->waiters, 1);
    bool done = false;
    for (;;) {
        const bal_ids_entry *entry = claim_entry(ids, owner);
        done = entry == NULL || !entry_live(ids, entry);
        if (done) break;
        if (pthread_cond_timedwait(&ids->stored_cond, &ids->mutex, &deadline) != 0) break;
    }
    atomic_fetch_sub(&ids->waiters, 1);
    pthread_mutex_unlock(&ids->mutex);
    return done;
}

uint64_t bal_ids_unstored(const bal_ids *ids) {
    uint64_t total = 0;
    for (uint32_t s = 0; s < ids->shard_count; s++) {
        uint64_t next = atomic_load_explicit(&ids->next_number[s], memory_order_relaxed);
        uint64_t mark = atomic_load_explicit(&ids->stored_mark[s], memory_order_relaxed);
        total += next > mark ? next - mark : 0;
    }
    return total;
}

uint64_t bal_ids_ring_waits(const bal_ids *ids) { return atomic_load_explicit(&ids->ring_waits, memory_order_relaxed); }
