/*
 * bal_journal_internal.h -- what the journal store's source files share and nobody else
 * sees: the handle's layout, the table's column order, the account id mapping and the
 * error reporting. The contract is bal_journal.h.
 */
#ifndef BAL_JOURNAL_INTERNAL_H
#define BAL_JOURNAL_INTERNAL_H

#include <sqlite3.h>

#include "bal_journal.h"

/* Amount columns bound per row: amount, two EVENT leg deltas, four balances, two deltas. */
#define BAL_JOURNAL_ROW_AMOUNTS 9

/* The journal table's columns in the order of INSERT and SELECT (see the schema). */
#define BAL_JOURNAL_COLUMNS                                                                    \
    "shard, sequence, leg, transaction_id, type, account_id, currency, amount, to_account_id, " \
    "leg_available_delta, leg_frozen_delta, result, time_ms, memo, available_before, "          \
    "available_after, frozen_before, frozen_after, available_delta, frozen_delta"

enum bal_journal_column {
    BAL_JOURNAL_COLUMN_SHARD = 0,
    BAL_JOURNAL_COLUMN_SEQUENCE,
    BAL_JOURNAL_COLUMN_LEG,
    BAL_JOURNAL_COLUMN_TRANSACTION_ID,
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

struct bal_journal {
    sqlite3 *db;
    bool read_only;
    /* Prepared once at open and reused: no SQL is compiled on the hot paths. */
    sqlite3_stmt *begin_read;
    sqlite3_stmt *begin_write;
    sqlite3_stmt *commit;
    sqlite3_stmt *rollback;
    sqlite3_stmt *position_get;
    sqlite3_stmt *position_set;       /* writer only */
    sqlite3_stmt *insert_row;         /* writer only */
    sqlite3_stmt *lookup_chunk;       /* BAL_JOURNAL_LOOKUP_CHUNK_IDS placeholders */
    sqlite3_stmt *history_all;
    sqlite3_stmt *history_currency;
    /* Scratch, allocated at open: the look-up's sorted id list and the text of the amounts
     * bound for one row (bound SQLITE_STATIC, valid until that row's step). */
    const char **lookup_ids;
    char amount_text[BAL_JOURNAL_ROW_AMOUNTS][BAL_MONEY_TEXT_MAX + 1];
};

/* account_id <-> SQLite integer: the two's-complement bit pattern (see bal_journal.h). */
static inline int64_t bal_journal_account_to_sql(uint64_t account_id) {
    if (account_id <= (uint64_t)INT64_MAX) return (int64_t)account_id;
    return -(int64_t)(UINT64_MAX - account_id) - 1;
}

static inline uint64_t bal_journal_account_from_sql(int64_t value) {
    return (uint64_t)value; /* conversion to unsigned is modulo 2^64: the inverse above */
}

/* Writes a formatted description into errstr (if any). */
__attribute__((format(printf, 3, 4)))
void bal_journal_describe(char *errstr, size_t errstr_size, const char *format, ...);

/* Maps an SQLite result code to a status and describes it as "<what>: <sqlite message>". */
bal_journal_status bal_journal_sqlite_failure(const bal_journal *journal, int rc, const char *what,
                                              char *errstr, size_t errstr_size);

/* Runs one prepared statement that returns no rows (BEGIN, COMMIT, ...) and resets it. */
int bal_journal_step_done(sqlite3_stmt *statement);

/* Prepares a statement that lives as long as the connection. */
int bal_journal_prepare(bal_journal *journal, const char *sql, sqlite3_stmt **statement_out);

/* Prepares the look-up and history statements (bal_journal_read.c); every handle has them. */
int bal_journal_prepare_queries(bal_journal *journal);

#endif
