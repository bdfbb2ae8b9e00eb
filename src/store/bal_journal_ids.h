/*
 * bal_journal_ids.h -- every transaction id hash the journal holds, for the node's id
 * filter (src/runtime/bal_ids.h), which is loaded from it at start-up.
 */
#ifndef BAL_JOURNAL_IDS_H
#define BAL_JOURNAL_IDS_H

#include "bal_journal.h"

/* The hash the journal stores for an id (bal_hash_bytes with
 * BAL_JOURNAL_TRANSACTION_HASH_SEED; kept in SQLite by the same two's-complement mapping as
 * account ids): what the scan below yields. */
uint64_t bal_journal_transaction_hash(const char *id, size_t length);

/* Called once per stored transaction (per shard that stored rows of it) with its hash,
 * bal_journal_transaction_hash() of its id, and that shard and its sequence there. */
typedef void (*bal_journal_hash_visit_fn)(void *context, uint64_t hash, uint32_t shard, uint64_t sequence);

/* Reads the hashes from the look-up index alone (it holds one entry per transaction and
 * shard), in one read transaction. *count_out: how many were visited. */
bal_journal_status bal_journal_scan_transaction_hashes(bal_journal *journal, bal_journal_hash_visit_fn fn, void *context,
                                                       uint64_t *count_out, char *errstr, size_t errstr_size);

#endif
