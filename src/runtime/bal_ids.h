/*
 * bal_ids.h -- what the node knows about transaction ids across its shards.
 *
 * A shard's ledger remembers recent ids in memory; older ids, and ids that another shard
 * used, live in the journal. Asking the journal about every id the ledger does not hold
 * would cost one SQLite look-up per new id (every id, once memory is full or with more
 * than one shard). Two node-wide structures make that unnecessary and close the window in
 * which the journal has not yet received an id:
 *
 *   - the filter: a blocked Bloom filter of every id ever consumed (loaded from the
 *     journal at start-up, then added to as shards consume ids). "No" is certain: such an
 *     id was never used, and needs no look-up. "Maybe" sends the id to the journal. It never
 *     forgets, so a duplicate is caught however late it comes; a filter fuller than its
 *     design load only answers "maybe" more often (more look-ups, never a wrong answer).
 *
 *   - the claims: every id a shard is about to log as new, until its journal rows are
 *     stored. A claim is checked and made under one mutex, so two shards cannot both take
 *     the same id as new; a shard that meets another's live claim (or an older one of its
 *     own, evicted from memory before it reached the journal) waits until the owner's rows
 *     are stored and then asks the journal. Claims live in a ring of claims_max entries:
 *     a shard that would overwrite a claim not yet stored waits for the persister, which
 *     bounds the journal's lag behind the logs to claims_max ids node-wide.
 *
 * A shard numbers its claims 1, 2, 3, ...; the persister reports, per shard, that every
 * claim below a mark is stored (the mark a batch was submitted with). A claim is live while
 * its number is at or above its shard's stored mark and it was not released.
 */
#ifndef BAL_IDS_H
#define BAL_IDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Filter sizes: a power of two from 1 MiB to 16 GiB. At 16 bits per id (64 MiB holds 32M
 * ids) a "maybe" is wrong 0.089% of the time (tests/runtime/test_ids.c). */
#define BAL_IDS_FILTER_BYTES_MIN (1ull << 20)
#define BAL_IDS_FILTER_BYTES_MAX (16ull << 30)
#define BAL_IDS_FILTER_BYTES_DEFAULT (64ull << 20)
#define BAL_IDS_CLAIMS_MIN 1024u
#define BAL_IDS_CLAIMS_MAX (1u << 26)
#define BAL_IDS_CLAIMS_DEFAULT (1u << 20)
#define BAL_IDS_SHARDS_MAX 64u

typedef struct bal_ids bal_ids;

/* Where a live claim was found: which shard holds it, and its number there. */
typedef struct bal_ids_owner {
    uint32_t shard;
    uint64_t number;
    uint64_t position;   /* in the ring, to tell the claim from a later one in its slot */
} bal_ids_owner;

/* What bal_ids_claim did with one id. */
typedef enum bal_ids_outcome {
    BAL_IDS_CLAIMED = 1,   /* claimed for the caller now: nobody holds it in flight */
    BAL_IDS_IN_BATCH,      /* the caller claimed it earlier in the same batch */
    BAL_IDS_CONTESTED,     /* a live claim of another shard, or an older one of the caller */
} bal_ids_outcome;

/* filter_bytes and claims_max as above (0: the defaults); false if out of range or out of
 * memory. */
bool bal_ids_create(uint64_t filter_bytes, uint32_t claims_max, uint32_t shard_count, bal_ids **ids_out);
void bal_ids_destroy(bal_ids *ids);

/* ---- filter (any thread, lock-free) ---- */
/* Adds hashes[i] for every i < count with fresh == NULL or fresh[i]; counts them once. */
void bal_ids_remember(bal_ids *ids, const uint64_t *hashes, const bool *fresh, size_t count);
bool bal_ids_may_know(const bal_ids *ids, uint64_t hash);
uint64_t bal_ids_remembered(const bal_ids *ids);   /* ids added (with repeats) */
uint64_t bal_ids_filter_bytes(const bal_ids *ids);

/* ---- claims ---- */
/* The number the shard's next claim will get; claims made before have smaller numbers.
 * A batch takes it at its start (claims at or above it are "in batch") and submits the
 * value it has after its claims to the persister as its mark. */
uint64_t bal_ids_next_number(bal_ids *ids, uint32_t shard);
/* For each of count hashes, in order, under the mutex: a live claim by another shard, or
 * by this shard below batch_first_number, is CONTESTED (its owner written to owners_out[i]);
 * one by this shard at or above batch_first_number is IN_BATCH; otherwise the id is claimed
 * for shard (owners_out[i] = the new claim) and CLAIMED. Waits while the ring's slot is
 * taken by a claim not yet stored. */
void bal_ids_claim(bal_ids *ids, uint32_t shard, uint64_t batch_first_number, const uint64_t *hashes,
                   size_t count, bal_ids_outcome *outcomes_out, bal_ids_owner *owners_out);
/* Gives up claims made by bal_ids_claim (their commands were not logged). */
void bal_ids_release(bal_ids *ids, const uint64_t *hashes, const bal_ids_owner *claims, size_t count);
/* The persister: every claim of shard numbered below mark has its rows stored. */
void bal_ids_stored(bal_ids *ids, uint32_t shard, uint64_t mark);
/* Waits until owner's claim is stored or released, at most timeout_ms; true if it is. */
bool bal_ids_wait_stored(bal_ids *ids, bal_ids_owner owner, uint32_t timeout_ms);
/* Claims made and not yet stored, over all shards (released ones count until stored). */
uint64_t bal_ids_unstored(const bal_ids *ids);
/* Times a claim waited for the ring (the journal's lag reached claims_max). */
uint64_t bal_ids_ring_waits(const bal_ids *ids);

#endif
