/*
 * bal_idempotency.h -- the memory of recent transaction ids.
 *
 * Every processed command leaves a record here: its id, the digest of its content, its
 * result, sequence, time and the balances right after it. A retry with the same id is
 * answered from the record (duplicate, or conflict when the content differs).
 *
 * The memory is bounded three ways, all fixed at creation: a count of records, a number
 * of bytes for the records (an arena used as a ring, oldest evicted first), and an age
 * (records older than the retention, measured in command time, are evicted as commands
 * with later times arrive). Nothing is allocated after creation.
 *
 * Eviction forgets nothing for good: ids evicted here are found again through the
 * ledger's look-up hook, answered from the journal store before apply (see bal_ledger.h).
 */
#ifndef BAL_IDEMPOTENCY_H
#define BAL_IDEMPOTENCY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bal_types.h"

typedef struct bal_idempotency bal_idempotency;

/* A record as stored: a view into the arena, valid until the next insert or expiry. */
typedef struct bal_idempotency_view {
    const char *transaction_id;
    uint8_t transaction_id_length;
    uint8_t result;
    uint8_t change_count;
    uint64_t sequence;
    int64_t time_ms;
    bal_digest digest;
    const uint8_t *changes; /* change_count packed (account, currency, available, frozen) */
} bal_idempotency_view;

/* Largest record: header, the longest id, and a full EVENT's balances. */
size_t bal_idempotency_record_bytes_max(void);

/* Creates the memory. count_max >= 1; bytes_max >= a few largest records. NULL on
 * allocation failure or bad bounds. */
bal_idempotency *bal_idempotency_create(uint32_t count_max, uint64_t bytes_max, uint64_t seed);
void bal_idempotency_destroy(bal_idempotency *memory);

/* The seeded hash of an id; the *_hashed calls take it so that a caller computes it once. */
uint64_t bal_idempotency_hash(const bal_idempotency *memory, const char *transaction_id, size_t length);

/* Finds the record of an id; false if not remembered. */
bool bal_idempotency_find(const bal_idempotency *memory, const char *transaction_id,
                          size_t length, bal_idempotency_view *view_out);
bool bal_idempotency_find_hashed(const bal_idempotency *memory, uint64_t hash, const char *transaction_id,
                                 size_t length, bal_idempotency_view *view_out);

/* Starts loading the index slot of an id's hash (a hint; no effect on the contents). */
void bal_idempotency_prefetch(const bal_idempotency *memory, uint64_t hash);

/* Remembers a processed command and the balances after it (outcome->change_count of changes).
 * Evicts the oldest records as needed to respect the bounds. The id must not be present. */
void bal_idempotency_insert(bal_idempotency *memory, const bal_command *command,
                            bal_digest digest, const bal_outcome *outcome, const bal_change *changes);
void bal_idempotency_insert_hashed(bal_idempotency *memory, uint64_t hash, const bal_command *command,
                                   bal_digest digest, const bal_outcome *outcome, const bal_change *changes);

/* Evicts the oldest records until record_count more records of any size fit without
 * further eviction. record_count <= bal_idempotency_batch_max(). */
void bal_idempotency_make_room(bal_idempotency *memory, uint32_t record_count);
/* The most records one make_room can promise room for. */
uint32_t bal_idempotency_batch_max(const bal_idempotency *memory);

/* Evicts records whose time is older than now_ms - retention_ms. Returns how many. */
uint64_t bal_idempotency_expire(bal_idempotency *memory, int64_t now_ms, int64_t retention_ms);

/* Rebuilds an outcome (flagged duplicate) from a record: before = after = remembered.
 * Writes view->change_count changes; outcome_out->first_change is left to the caller. */
void bal_idempotency_outcome(const bal_idempotency_view *view, bal_outcome *outcome_out, bal_change *changes_out);

uint32_t bal_idempotency_count(const bal_idempotency *memory);
/* Records evicted since creation (by any bound). */
uint64_t bal_idempotency_evicted(const bal_idempotency *memory);
uint64_t bal_idempotency_memory_bytes(const bal_idempotency *memory);

/* Iterates records oldest first; for snapshots. The callback gets the raw record bytes. */
typedef void (*bal_idempotency_visit)(void *context, const uint8_t *record, uint32_t length);
void bal_idempotency_each(const bal_idempotency *memory, bal_idempotency_visit visit, void *context);
/* Appends a raw record produced by bal_idempotency_each (snapshot load). False if the bytes
 * are not a well-formed record or the id is already present. */
bool bal_idempotency_insert_raw(bal_idempotency *memory, const uint8_t *record, uint32_t length);

#endif
