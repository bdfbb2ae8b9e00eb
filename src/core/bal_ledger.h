/*
 * bal_ledger.h -- the ledger state machine of one shard: balances, currencies, sequence
 * and the idempotency memory, changed only by bal_ledger_apply.
 *
 * Pure: apply does no I/O, reads no clock, draws no randomness and allocates nothing. Time
 * comes in with each command (time_ms), so replaying the same commands into a fresh ledger
 * gives the same state, the same outcomes and the same state hash.
 *
 * All memory is allocated by bal_ledger_create from the configuration: the balance table
 * holds balance_capacity balances (a 32-byte value each, and two 16-byte key slots, so 64
 * bytes per balance); a command that would create a balance beyond it, or a currency
 * beyond BAL_CURRENCIES_MAX, gets the result capacity_exceeded.
 *
 * Idempotency: recent ids are answered from memory (see bal_idempotency.h). Ids leave
 * memory only at the start of a batch (by age, measured against the batch's latest
 * command time, and to make room for the batch), never in the middle of one. For ids the
 * memory may have forgotten, the caller runs the look-up hook before apply:
 *   1. bal_ledger_prepare() makes that room, then lists the commands of the batch whose
 *      ids are not in memory but could have been seen before (the memory has evicted
 *      something, or the ledger was loaded from a snapshot that had);
 *   2. the caller asks its store for those ids in one batch;
 *   3. it passes what it found to bal_ledger_apply() as `recalled`, an array parallel to
 *      the commands: the original request and outcome of each id found, NULL elsewhere;
 *   4. apply answers those commands as duplicates (or conflicts) and puts the ids back in
 *      memory. Recalled outcomes from beyond the ledger's sequence are ignored: while a
 *      ledger replays its log after a restart, the store may already hold the very
 *      command being replayed, which is not an earlier use of its id.
 * Recalled records are consulted directly rather than inserted into memory beforehand,
 * so that no eviction during the batch can make a duplicate apply twice.
 */
#ifndef BAL_LEDGER_H
#define BAL_LEDGER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bal_types.h"

typedef struct bal_ledger bal_ledger;

typedef struct bal_ledger_config {
    uint64_t balance_capacity;          /* 1 .. BAL_BALANCES_MAX */
    uint32_t idempotency_count_max;     /* 1 .. BAL_IDEMPOTENCY_COUNT_MAX */
    uint64_t idempotency_bytes_max;     /* arena for id records */
    int64_t idempotency_retention_ms;   /* > 0: ids older than this leave memory */
    uint64_t hash_seed;                 /* table placement; any value, e.g. random per process */
} bal_ledger_config;

typedef enum bal_ledger_status {
    BAL_LEDGER_OK = 0,
    BAL_LEDGER_INVALID_CONFIG,
    BAL_LEDGER_OUT_OF_MEMORY,
    BAL_LEDGER_SNAPSHOT_TRUNCATED,
    BAL_LEDGER_SNAPSHOT_BAD_MAGIC,
    BAL_LEDGER_SNAPSHOT_BAD_VERSION,
    BAL_LEDGER_SNAPSHOT_BAD_CHECKSUM,
    BAL_LEDGER_SNAPSHOT_CORRUPT,
    BAL_LEDGER_SNAPSHOT_TOO_LARGE,      /* more balances than this ledger's capacity */
    BAL_LEDGER_NOT_EMPTY,
    BAL_LEDGER_BUFFER_TOO_SMALL,
} bal_ledger_status;

const char *bal_ledger_status_name(bal_ledger_status status);

/* Defaults sized for one shard of a small node. */
void bal_ledger_config_default(bal_ledger_config *config);

bal_ledger_status bal_ledger_create(const bal_ledger_config *config, bal_ledger **ledger_out);
void bal_ledger_destroy(bal_ledger *ledger);

/* A record found by the look-up hook: the original request and outcome of an id, with
 * the outcome's balances after (outcome->change_count of them). */
typedef struct bal_ledger_recall {
    const bal_command *original;   /* NULL: not found (or not looked up) */
    const bal_outcome *outcome;
    const bal_change *changes;
} bal_ledger_recall;

/* Applies commands in order; writes one outcome per command, and their balances densely
 * into changes, which must hold the sum of bal_command_balance_count() over the commands
 * (at most count * BAL_COMMAND_BALANCES_MAX). Every command must satisfy
 * bal_command_valid() (asserted); count <= bal_ledger_batch_max(). recalled is NULL or
 * holds count entries (see above). Apply makes room itself, exactly as prepare does (a
 * no-op after prepare), so a replay without prepare evicts at the same points. */
void bal_ledger_apply(bal_ledger *ledger, const bal_command *commands, size_t count,
                      const bal_ledger_recall *recalled, bal_outcome *outcomes, bal_change *changes);

/* Reads a balance; false (and zeros) if it was never credited. */
bool bal_ledger_balance(const bal_ledger *ledger, uint64_t account_id, bal_currency currency,
                        bal_amount *available_out, bal_amount *frozen_out);

typedef struct bal_balance {
    bal_currency currency;
    bal_amount available;
    bal_amount frozen;
} bal_balance;

/* Lists an account's balances ordered by currency; returns how many were written (at most
 * max_count) and the total through total_out. */
size_t bal_ledger_account_balances(const bal_ledger *ledger, uint64_t account_id,
                                   bal_balance *balances_out, size_t max_count, size_t *total_out);

/* The look-up hook's first step (see above). Writes indexes into commands; returns how many. */
size_t bal_ledger_prepare(bal_ledger *ledger, const bal_command *commands, size_t count,
                          uint32_t *indexes_out);
/* For a command spanning shards: checks the legs in leg_mask against this ledger without
 * changing it. Writes each such leg's result (bal_result: ok, insufficient_*, overflow)
 * at its leg index in leg_results, and how many balances the legs would create. Returns
 * false if those creations would not fit this ledger's capacity. The coordinator combines
 * the shards' answers: the first failing leg in leg order decides, then capacity. */
bool bal_ledger_check(const bal_ledger *ledger, const bal_command *command, uint16_t leg_mask,
                      uint8_t *leg_results, uint32_t *creates_out);

/* Answers a command whose id was used before, from memory or from recall (as apply
 * would, but changing nothing): true with a duplicate or conflict outcome (and its
 * changes) if the id is known, false if apply would process it as new. */
bool bal_ledger_peek(const bal_ledger *ledger, const bal_command *command, const bal_ledger_recall *recall,
                     bal_outcome *outcome_out, bal_change *changes_out);

/* The largest batch apply takes (bounded by the idempotency memory's size). */
size_t bal_ledger_batch_max(const bal_ledger *ledger);
/* From now on, ask the look-up hook about every id not in memory: for a ledger that is
 * one of several shards, whose ids may have been used in another shard's journal. */
void bal_ledger_set_forgetful(bal_ledger *ledger);

uint64_t bal_ledger_sequence(const bal_ledger *ledger);
uint64_t bal_ledger_balance_count(const bal_ledger *ledger);
uint64_t bal_ledger_balance_capacity(const bal_ledger *ledger);
/* Bytes allocated for balances (table), and for the idempotency memory. */
uint64_t bal_ledger_balance_memory_bytes(const bal_ledger *ledger);
uint64_t bal_ledger_idempotency_memory_bytes(const bal_ledger *ledger);
uint32_t bal_ledger_idempotency_count(const bal_ledger *ledger);

/* The state hash: balances (independent of table layout), currencies and sequence. */
bal_digest bal_ledger_hash(const bal_ledger *ledger);

/* Snapshot encoding, versioned and checksummed: balances, currencies, sequence and the
 * idempotency memory. size() gives an upper bound for the buffer. */
uint64_t bal_ledger_snapshot_size(const bal_ledger *ledger);
bal_ledger_status bal_ledger_snapshot_encode(const bal_ledger *ledger, uint8_t *buffer,
                                             uint64_t buffer_size, uint64_t *length_out);
/* Loads a snapshot into a freshly created (empty) ledger. */
bal_ledger_status bal_ledger_snapshot_decode(bal_ledger *ledger, const uint8_t *buffer,
                                             uint64_t length);

#endif
