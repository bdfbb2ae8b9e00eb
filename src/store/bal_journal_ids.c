/*
 * bal_journal_ids.c -- scans the journal's transaction hashes (see bal_journal_ids.h).
 *
 * The query reads the id index's runs alone, without a journal row: about 20 bytes of
 * index per transaction instead of a full row.
 */
#include "bal_journal_ids.h"

#include <assert.h>

#include "bal_journal_internal.h"

bal_journal_status bal_journal_scan_transaction_hashes(bal_journal *journal, bal_journal_hash_visit_fn fn, void *context,
                                                       uint64_t *count_out, char *errstr, size_t errstr_size) {
    assert(journal != NULL && fn != NULL && count_out != NULL);
    assert(sqlite3_get_autocommit(journal->db));
    *count_out = 0;
    sqlite3_stmt *statement = NULL;
    int rc = sqlite3_prepare_v2(journal->db,
                                "SELECT transaction_hash, shard, sequence FROM journal_by_transaction_run",
                                -1, &statement, NULL);
    if (rc != SQLITE_OK) return bal_journal_sqlite_failure(journal, rc, "prepare hash scan", errstr, errstr_size);
    uint64_t count = 0;
    while ((rc = sqlite3_step(statement)) == SQLITE_ROW) {
        fn(context, (uint64_t)sqlite3_column_int64(statement, 0), (uint32_t)sqlite3_column_int64(statement, 1),
           (uint64_t)sqlite3_column_int64(statement, 2));
        count++;
    }
    sqlite3_finalize(statement);
    if (rc != SQLITE_DONE) return bal_journal_sqlite_failure(journal, rc, "hash scan", errstr, errstr_size);
    *count_out = count;
    return BAL_JOURNAL_OK;
}
