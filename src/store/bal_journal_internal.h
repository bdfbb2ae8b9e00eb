/*
 * bal_journal_internal.h -- what the journal store's source files share and nobody else
 * sees: the handle's layout, the table's column order, the account id mapping and the
 * error reporting. The contract is bal_journal.h.
 */
#ifndef BAL_JOURNAL_INTERNAL_H
#define BAL_JOURNAL_INTERNAL_H

#include <sqlite3.h>

#include "bal_journal.h"
#include "bal_journal_ids.h"

/* Amount columns bound per row: amount, two EVENT leg deltas, four balances, two deltas. */
#define BAL_JOURNAL_ROW_AMOUNTS 9
/* Values an INSERT binds per row: the columns read back (BAL_JOURNAL_COLUMNS), then
 * account_head_leg and index_run, which only the writer sets and reads (bal_journal.h,
 * Indexes). */
#define BAL_JOURNAL_INSERT_PARAMETERS (BAL_JOURNAL_COLUMN_COUNT + 2)
/* Rows per multi-row INSERT statement: one statement's start (cursors opened on the table,
 * the transaction check) and its reset are shared by this many rows. 43 rows of 23 values
 * bind 989, below even the 999-variable limit of older SQLite builds. */
#define BAL_JOURNAL_INSERT_GROUP_ROWS 43

/* The journal table's columns in the order of INSERT and SELECT (see the schema). */
#define BAL_JOURNAL_COLUMNS                                                                      \
    "shard, sequence, leg, transaction_id, transaction_hash, type, account_id, currency, amount, " \
    "to_account_id, leg_available_delta, leg_frozen_delta, result, time_ms, memo, "               \
    "available_before, available_after, frozen_before, frozen_after, available_delta, frozen_delta"

/* The same columns of the table aliased "j", as the queries select them (the look-up joins
 * the table with itself). */
#define BAL_JOURNAL_SELECT_COLUMNS                                                                      \
    "j.shard, j.sequence, j.leg, j.transaction_id, j.transaction_hash, j.type, j.account_id, j.currency, " \
    "j.amount, j.to_account_id, j.leg_available_delta, j.leg_frozen_delta, j.result, j.time_ms, j.memo, "  \
    "j.available_before, j.available_after, j.frozen_before, j.frozen_after, j.available_delta, "         \
    "j.frozen_delta"

enum bal_journal_column {
    BAL_JOURNAL_COLUMN_SHARD = 0,
    BAL_JOURNAL_COLUMN_SEQUENCE,
    BAL_JOURNAL_COLUMN_LEG,
    BAL_JOURNAL_COLUMN_TRANSACTION_ID,
    BAL_JOURNAL_COLUMN_TRANSACTION_HASH,
    BAL_JOURNAL_COLUMN_TYPE,
    BAL_JOURNAL_COLUMN_ACCOUNT_ID,
    BAL_JOURNAL_COLUMN_CURRENCY,
    BAL_JOURNAL_COLUMN_AMOUNT,
    BAL_JOURNAL_COLUMN_TO_ACCOUNT_ID,
    BAL_JOURNAL_COLUMN_LEG_AVAILABLE_DELTA,
    BAL_JOURNAL_COLUMN_LEG_FROZEN_DELTA,
    BAL_JOURNAL_COLUMN_RESULT,
    BAL_JOURNAL_COLUMN_TIME_MS,
    BAL_JOURNAL_COLUMN_MEMO,
    BAL_JOURNAL_COLUMN_AVAILABLE_BEFORE,
    BAL_JOURNAL_COLUMN_AVAILABLE_AFTER,
    BAL_JOURNAL_COLUMN_FROZEN_BEFORE,
    BAL_JOURNAL_COLUMN_FROZEN_AFTER,
    BAL_JOURNAL_COLUMN_AVAILABLE_DELTA,
    BAL_JOURNAL_COLUMN_FROZEN_DELTA,
    BAL_JOURNAL_COLUMN_COUNT,
};

_Static_assert(BAL_JOURNAL_INSERT_GROUP_ROWS * BAL_JOURNAL_INSERT_PARAMETERS <= 999,
               "a group insert stays below SQLite's oldest variable limit");

/* The function that maps a transaction id to its stored hash (see bal_journal.h). */
typedef uint64_t (*bal_journal_hash_fn)(const char *id, size_t length);

/* One row of a batch as the writer orders it: the account index's key and where the row
 * is in the caller's array. The rows themselves (about 700 bytes each) never move. */
typedef struct bal_journal_order_key {
    int64_t account;   /* account_id as stored (bal_journal_account_to_sql) */
    uint64_t position; /* sequence * BAL_JOURNAL_LEGS_MAX + leg */
    uint32_t index;    /* into the batch's rows */
    bool head;         /* the batch's first row (lowest leg) of its sequence: carries the hash */
    /* The lowest leg among the batch's rows of this account in this sequence (the account's
     * head there; its own leg on the head itself): stored as account_head_leg. */
    uint32_t account_head_leg;
} bal_journal_order_key;

struct bal_journal {
    sqlite3 *db;
    bool read_only;
    /* bal_journal_transaction_hash, unless a test replaced it to force collisions. */
    bal_journal_hash_fn hash;
    /* Prepared once at open and reused: no SQL is compiled on the hot paths. */
    sqlite3_stmt *begin_read;
    sqlite3_stmt *begin_write;
    sqlite3_stmt *commit;
    sqlite3_stmt *rollback;
    sqlite3_stmt *position_get;
    sqlite3_stmt *position_set;       /* writer only */
    sqlite3_stmt *insert_row;         /* writer only: one row */
    sqlite3_stmt *insert_group;       /* writer only: BAL_JOURNAL_INSERT_GROUP_ROWS rows */
    sqlite3_stmt *entries_insert[2];  /* writer only: index entries by id [0], by account [1] */
    sqlite3_stmt *row_run_get;        /* writer only: a stored row's index_run */
    sqlite3_stmt *run_open_get;       /* writer only: the open run and its rows */
    sqlite3_stmt *run_rows_add;       /* writer only */
    sqlite3_stmt *run_open_new;       /* writer only: a new open run */
    sqlite3_stmt *merge_targets;      /* writer only: the targets of the merges under way */
    sqlite3_stmt *runs_newest_first;  /* every run, newest rows first (the history's order) */
    sqlite3_stmt *lookup_chunk;       /* BAL_JOURNAL_LOOKUP_CHUNK_IDS placeholders */
    sqlite3_stmt *history_all;
    sqlite3_stmt *history_currency;
    /* Scratch, allocated at open: the look-up's sorted id list with each id's hash, and the
     * text of the amounts bound for one insert statement's rows (bound SQLITE_STATIC, valid
     * until that statement's step). */
    const char **lookup_ids;
    int64_t *lookup_hashes;
    char amount_text[BAL_JOURNAL_INSERT_GROUP_ROWS][BAL_JOURNAL_ROW_AMOUNTS][BAL_MONEY_TEXT_MAX + 1];
    /* Writer scratch for the insert order, grown to the largest batch seen: sort keys and
     * the merge sort's second buffer. */
    bal_journal_order_key *order;
    bal_journal_order_key *order_scratch;
    size_t order_capacity;
    /* Writer: descriptors of the -wal and database files of our own, opened on first use
     * and kept until close (bal_journal_file_fd), for each committed batch's writeback and
     * for bal_journal_sync; -1 while not open. */
    int writeback_fds[2];
    uint64_t writeback_count;
    /* Writer: the open index run, read at the start of each batch's transaction (only this
     * handle writes, but a failed transaction must not leave a stale copy behind), its rows
     * before the batch, and when runs are sealed and merged (BAL_JOURNAL_RUN_ROWS and
     * BAL_JOURNAL_RUNS_PER_MERGE unless a test set others). */
    int64_t open_run;
    int64_t open_run_rows;
    /* Writer: index entries waiting for their INSERT, by id [0] (run, hash, shard,
     * sequence) and by account [1] (run, account, sequence, leg, shard). */
    int64_t entries[2][BAL_JOURNAL_INSERT_GROUP_ROWS][5];
    uint32_t entry_count[2];
    int64_t run_rows_max;
    int64_t runs_per_merge;
    int64_t merge_step;               /* 0: in proportion to each batch's rows */
    uint64_t merge_count;             /* merges finished in committed batches */
    uint64_t merges_pending;          /* finished in the batch being written */
};

/* Values of an index entry: by id (which 0) 4, by account (which 1) 5. */
#define BAL_JOURNAL_ENTRY_COLUMNS(which) ((which) == 0 ? 4 : 5)

/* A macro's value as SQL text. */
#define BAL_JOURNAL_TEXT_(x) #x
#define BAL_JOURNAL_TEXT(x) BAL_JOURNAL_TEXT_(x)

/* Inside the batch's write transaction, after its rows: moves each merge under way a step
 * (in proportion to rows_inserted) and, after a seal or a finished merge, starts the merges
 * that became due (bal_journal_runs.c). */
int bal_journal_runs_upkeep(bal_journal *journal, int64_t rows_inserted, bool sealed);

/* u64 -> SQLite integer: the two's-complement bit pattern (see bal_journal.h), written
 * without the implementation-defined conversion of an out-of-range value to int64_t. */
static inline int64_t bal_journal_u64_to_sql(uint64_t value) {
    if (value <= (uint64_t)INT64_MAX) return (int64_t)value;
    return -(int64_t)(UINT64_MAX - value) - 1;
}

/* account_id <-> SQLite integer: the two's-complement bit pattern (see bal_journal.h). */
static inline int64_t bal_journal_account_to_sql(uint64_t account_id) {
    return bal_journal_u64_to_sql(account_id);
}

static inline uint64_t bal_journal_account_from_sql(int64_t value) {
    return (uint64_t)value; /* conversion to unsigned is modulo 2^64: the inverse above */
}

/* One run's part of a history page: rows strictly older than (?2, ?3) in (sequence, leg)
 * order among the account's entries in run ?6; written so that the index range is
 * "sequence <= ?2" and the rest a filter, newest first, one extra row to learn whether
 * another page exists. The run holds the account's head row of each command (account_head_leg = leg); the head leads by
 * key to the account's rows of that (shard, sequence) that name it as their head -- each
 * row names exactly one, so each comes once. The key must be sought as (shard, sequence =,
 * leg >=): SQLite 3.40 would otherwise carry "head.sequence <= ?2" over to j and scan the
 * shard's older sequences instead, so the unary + keeps that inference out and "j.leg >=
 * head.leg" (true of every such row) completes the key (test_journal's history case checks
 * the plan of this very text). The run gives the order of the sequences; the rows of one
 * sequence (one head's, or two heads' when a log position's rows came in two calls) are
 * put in (leg, shard) order by a sorter over those few rows only, so LIMIT still stops the
 * walk early. The currency query walks the same range and filters on currency (?5): LIMIT
 * counts only rows that pass, so pages stay exact, but a currency that is rare in a busy
 * account costs a walk over the account's other rows (see bal_journal.h). */
#define BAL_JOURNAL_HISTORY_SQL(currency_filter)                                                        \
    "SELECT " BAL_JOURNAL_SELECT_COLUMNS " FROM journal_by_account_run AS head "                         \
    "CROSS JOIN journal AS j ON j.shard = head.shard AND j.sequence = +head.sequence AND j.leg >= head.leg " \
    "WHERE head.run = ?6 AND head.account_id = ?1 AND head.sequence <= ?2 "                             \
    "AND j.account_id = ?1 AND j.account_head_leg = head.leg AND (head.sequence < ?2 OR j.leg < ?3) "   \
    currency_filter "ORDER BY head.sequence DESC, j.leg DESC, j.shard DESC LIMIT ?4"


/* Tests only: seals a run after rows_per_run rows, merges runs_per_merge (2 ..
 * BAL_JOURNAL_RUNS_PER_MERGE_MAX) sealed runs, and, if merge_step > 0, moves exactly that
 * many entries of each index per merge and batch, instead of the defaults, so that a test
 * reaches many runs, merges and batches in the middle of a merge with few rows. Writer
 * handle, before its first batch. */
void bal_journal_set_runs_for_testing(bal_journal *journal, int64_t rows_per_run, int64_t runs_per_merge,
                                      int64_t merge_step);

/* Tests only: replaces the handle's id hash (before any row is written or read through it),
 * so that distinct ids can be given equal hashes and the look-up's collision handling can
 * be exercised; a 64-bit hash practically never collides on its own. Every handle on the
 * file must use the same function, or rows become unfindable and read back as corrupt. */
void bal_journal_set_hash_for_testing(bal_journal *journal, bal_journal_hash_fn hash);

/* True if id[0..length) is one of the count ids of sorted (ascending strcmp order, unique):
 * the look-up's exact filter over rows found by hash. */
bool bal_journal_lookup_id_wanted(const char *const *sorted, size_t count, const char *id, size_t length);

/* Orders a checked batch for insertion: fills keys[0..count) and returns how many remain
 * after dropping every row whose (sequence, leg) appeared earlier in the batch (INSERT OR
 * IGNORE would ignore it: the first occurrence is inserted or already stored), and marks
 * as head the remaining row with the lowest leg of each sequence. The rest is sorted by
 * (account as stored, sequence, leg), the journal_by_account index's order, so that index
 * is filled front to back, and each key gets the lowest leg of its account's rows in its
 * sequence (account_head_leg). scratch holds count keys. */
size_t bal_journal_order_batch(const bal_journal_row *rows, size_t count, bal_journal_order_key *keys,
                               bal_journal_order_key *scratch);

/* Writes a formatted description into errstr (if any). */
__attribute__((format(printf, 3, 4)))
void bal_journal_describe(char *errstr, size_t errstr_size, const char *format, ...);

/* Maps an SQLite result code to a status and describes it as "<what>: <sqlite message>". */
bal_journal_status bal_journal_sqlite_failure(const bal_journal *journal, int rc, const char *what,
                                              char *errstr, size_t errstr_size);

/* Runs one prepared statement that returns no rows (BEGIN, COMMIT, ...) and resets it. */
int bal_journal_step_done(sqlite3_stmt *statement);

/* Runs a query whose first row's first column is an integer ("PRAGMA name", count(*),
 * EXISTS, ...) into *value_out; SQLITE_DONE if it returns no row. */
int bal_journal_query_int(sqlite3 *db, const char *sql, int64_t *value_out);

/* Prepares a statement that lives as long as the connection. */
int bal_journal_prepare(bal_journal *journal, const char *sql, sqlite3_stmt **statement_out);

/* Prepares the look-up and history statements (bal_journal_read.c); every handle has them. */
int bal_journal_prepare_queries(bal_journal *journal);

#endif
