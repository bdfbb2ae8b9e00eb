/*
 * bal_journal_read.c -- the journal store's queries: batched look-up by transaction id and
 * an account's history, newest first, in pages.
 *
 * Both decode stored rows back into bal_journal_row and check them against the same rules
 * the writer applied (and the stored transaction_hash against the id), so a damaged or
 * hand-edited file surfaces as BAL_JOURNAL_CORRUPT instead of as a wrong balance in an API
 * answer. The look-up binds the hashes of up to BAL_JOURNAL_LOOKUP_CHUNK_IDS ids per
 * statement (one prepared statement, unused slots bound to NULL, which matches nothing),
 * finds the id index's entries of those hashes in every run, reads every row of each
 * entry's (shard, sequence), keeps only the rows whose id is exactly one of the chunk's ids
 * (distinct ids may share a hash), and runs all chunks inside one read transaction, so the
 * answer is one snapshot of the file. A history page is one read transaction too: the
 * list of runs and each run's part of the page.
 */
#include "bal_journal.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "bal_journal_internal.h"

/* The look-up statement's text: the fixed part plus "?," per id. */
#define BAL_JOURNAL_LOOKUP_SQL_BYTES_MAX (1024 + 2 * BAL_JOURNAL_LOOKUP_CHUNK_IDS)

/* Finds every row of each transaction through the id index, in every run: a command
 * spanning shards stores its legs under each shard's own sequence, so rows are found by
 * id, not by key. Only the first row a shard stores of a transaction (its head) has an
 * index entry; all rows of one (shard, sequence) belong to one command, so the entry leads
 * to the rest by key. Rows of another id with the same hash come along and are dropped by
 * the caller; sorting by the id itself keeps the documented order (ids ascending, then
 * the key). CROSS JOIN fixes the loop order: runs, each run's entries of the hashes, then
 * the key range of each. */
static const char bal_journal_lookup_sql_head[] =
    "SELECT " BAL_JOURNAL_SELECT_COLUMNS " FROM journal_runs AS r "
    "CROSS JOIN journal_by_transaction_run AS head ON head.run = r.run "
    "CROSS JOIN journal AS j ON j.shard = head.shard AND j.sequence = head.sequence "
    "WHERE head.transaction_hash IN (";
static const char bal_journal_lookup_sql_tail[] = ") ORDER BY j.transaction_id, j.shard, j.sequence, j.leg";

static const char bal_journal_history_all_sql[] = BAL_JOURNAL_HISTORY_SQL("");
static const char bal_journal_history_currency_sql[] = BAL_JOURNAL_HISTORY_SQL("AND j.currency = ?5 ");

int bal_journal_prepare_queries(bal_journal *journal) {
    assert(journal != NULL && journal->db != NULL);
    char sql[BAL_JOURNAL_LOOKUP_SQL_BYTES_MAX];
    size_t length = strlen(bal_journal_lookup_sql_head);
    memcpy(sql, bal_journal_lookup_sql_head, length);
    for (int i = 0; i < BAL_JOURNAL_LOOKUP_CHUNK_IDS; i++) {
        if (i > 0) sql[length++] = ',';
        sql[length++] = '?';
    }
    assert(length + sizeof bal_journal_lookup_sql_tail <= sizeof sql);
    memcpy(sql + length, bal_journal_lookup_sql_tail, sizeof bal_journal_lookup_sql_tail);

    int rc = bal_journal_prepare(journal, sql, &journal->lookup_chunk);
    if (rc == SQLITE_OK) {
        rc = bal_journal_prepare(journal, "SELECT run FROM journal_runs ORDER BY level, run DESC",
                                 &journal->runs_newest_first);
    }
    if (rc == SQLITE_OK) rc = bal_journal_prepare(journal, bal_journal_history_all_sql, &journal->history_all);
    if (rc == SQLITE_OK) {
        rc = bal_journal_prepare(journal, bal_journal_history_currency_sql, &journal->history_currency);
    }
    assert(rc != SQLITE_OK || sqlite3_bind_parameter_count(journal->lookup_chunk) == BAL_JOURNAL_LOOKUP_CHUNK_IDS);
    return rc;
}

/* Copies a TEXT column of at most capacity - 1 bytes, NUL-terminated. */
static bool bal_journal_column_text(sqlite3_stmt *statement, int column, char *buffer, size_t capacity,
                                    size_t *length_out) {
    assert(statement != NULL && buffer != NULL && capacity > 0);
    if (sqlite3_column_type(statement, column) != SQLITE_TEXT) return false;
    const unsigned char *text = sqlite3_column_text(statement, column);
    int bytes = sqlite3_column_bytes(statement, column);
    if (text == NULL || bytes < 0 || (size_t)bytes >= capacity) return false;
    memcpy(buffer, text, (size_t)bytes);
    buffer[bytes] = '\0';
    if (length_out != NULL) *length_out = (size_t)bytes;
    return true;
}

/* Parses an amount column; a NULL column is accepted only when absent is expected (then 0). */
static bool bal_journal_column_amount(sqlite3_stmt *statement, int column, bool present, bal_amount *amount_out) {
    assert(statement != NULL && amount_out != NULL);
    *amount_out = 0;
    if (!present) return sqlite3_column_type(statement, column) == SQLITE_NULL;
    char text[BAL_MONEY_TEXT_MAX + 1];
    size_t length = 0;
    if (!bal_journal_column_text(statement, column, text, sizeof text, &length)) return false;
    return bal_money_parse_signed(text, length, amount_out) == BAL_MONEY_OK;
}

static bool bal_journal_column_integer(sqlite3_stmt *statement, int column, int64_t min, int64_t max,
                                       int64_t *value_out) {
    assert(statement != NULL && value_out != NULL);
    assert(min <= max);
    if (sqlite3_column_type(statement, column) != SQLITE_INTEGER) return false;
    *value_out = sqlite3_column_int64(statement, column);
    return *value_out >= min && *value_out <= max;
}

/* The integer and name columns: where the row is, whose balance, which request. */
static bool bal_journal_decode_keys(sqlite3_stmt *s, bal_journal_row *row) {
    assert(s != NULL && row != NULL);
    int64_t shard = 0, sequence = 0, leg = 0, account = 0, to_account = 0, time_ms = 0;
    char type[sizeof "DEDUCT_FROZEN"];
    size_t type_length = 0;
    bool ok = bal_journal_column_integer(s, BAL_JOURNAL_COLUMN_SHARD, 0, BAL_JOURNAL_SHARDS_MAX - 1, &shard) &&
              bal_journal_column_integer(s, BAL_JOURNAL_COLUMN_SEQUENCE, 0, (int64_t)BAL_JOURNAL_SEQUENCE_MAX,
                                         &sequence) &&
              bal_journal_column_integer(s, BAL_JOURNAL_COLUMN_LEG, 0, BAL_JOURNAL_LEGS_MAX - 1, &leg) &&
              bal_journal_column_integer(s, BAL_JOURNAL_COLUMN_ACCOUNT_ID, INT64_MIN, INT64_MAX, &account) &&
              bal_journal_column_integer(s, BAL_JOURNAL_COLUMN_TIME_MS, 0, INT64_MAX, &time_ms) &&
              bal_journal_column_text(s, BAL_JOURNAL_COLUMN_TYPE, type, sizeof type, &type_length) &&
              bal_journal_type_parse(type, type_length, &row->type);
    if (!ok) return false;
    if (row->type == BAL_JOURNAL_TYPE_TRANSFER) {
        ok = bal_journal_column_integer(s, BAL_JOURNAL_COLUMN_TO_ACCOUNT_ID, INT64_MIN, INT64_MAX, &to_account);
    } else {
        ok = sqlite3_column_type(s, BAL_JOURNAL_COLUMN_TO_ACCOUNT_ID) == SQLITE_NULL;
    }
    row->shard = (uint32_t)shard;
    row->sequence = (uint64_t)sequence;
    row->leg = (uint32_t)leg;
    row->account_id = bal_journal_account_from_sql(account);
    row->to_account_id = row->type == BAL_JOURNAL_TYPE_TRANSFER ? bal_journal_account_from_sql(to_account) : 0;
    row->time_ms = time_ms;
    return ok;
}

/* The text columns and the amounts. */
static bool bal_journal_decode_values(sqlite3_stmt *s, bal_journal_row *row) {
    assert(s != NULL && row != NULL);
    bool event = row->type == BAL_JOURNAL_TYPE_EVENT;
    size_t memo_length = 0;
    bool ok = bal_journal_column_text(s, BAL_JOURNAL_COLUMN_TRANSACTION_ID, row->transaction_id,
                                      sizeof row->transaction_id, NULL) &&
              bal_journal_column_text(s, BAL_JOURNAL_COLUMN_CURRENCY, row->currency, sizeof row->currency, NULL) &&
              bal_journal_column_text(s, BAL_JOURNAL_COLUMN_RESULT, row->result, sizeof row->result, NULL) &&
              bal_journal_column_amount(s, BAL_JOURNAL_COLUMN_AMOUNT, !event, &row->amount) &&
              bal_journal_column_amount(s, BAL_JOURNAL_COLUMN_LEG_AVAILABLE_DELTA, event, &row->leg_available_delta) &&
              bal_journal_column_amount(s, BAL_JOURNAL_COLUMN_LEG_FROZEN_DELTA, event, &row->leg_frozen_delta);
    bal_amount *balances[6] = {&row->available_before, &row->available_after, &row->frozen_before,
                               &row->frozen_after, &row->available_delta, &row->frozen_delta};
    for (int i = 0; i < 6 && ok; i++) {
        ok = bal_journal_column_amount(s, BAL_JOURNAL_COLUMN_AVAILABLE_BEFORE + i, true, balances[i]);
    }
    if (!ok) return false;
    row->has_memo = sqlite3_column_type(s, BAL_JOURNAL_COLUMN_MEMO) != SQLITE_NULL;
    row->memo[0] = '\0';
    if (row->has_memo && !bal_journal_column_text(s, BAL_JOURNAL_COLUMN_MEMO, row->memo, sizeof row->memo,
                                                  &memo_length)) {
        return false;
    }
    row->memo_length = (uint16_t)memo_length;
    return true;
}

/* A head's stored hash must be the id's: a head whose hash is wrong can no longer be found
 * by its id, which is damage like any other. Other rows store none. */
static bool bal_journal_decode_hash(const bal_journal *journal, sqlite3_stmt *s, const bal_journal_row *row) {
    assert(journal != NULL && s != NULL && row != NULL);
    if (sqlite3_column_type(s, BAL_JOURNAL_COLUMN_TRANSACTION_HASH) == SQLITE_NULL) return true; /* not a head */
    int64_t stored = 0;
    if (!bal_journal_column_integer(s, BAL_JOURNAL_COLUMN_TRANSACTION_HASH, INT64_MIN, INT64_MAX, &stored)) {
        return false;
    }
    return stored == bal_journal_u64_to_sql(journal->hash(row->transaction_id, strlen(row->transaction_id)));
}

/* Decodes the current result row and checks it; CORRUPT with a description if it fails. */
static bal_journal_status bal_journal_decode_row(const bal_journal *journal, sqlite3_stmt *statement,
                                                 bal_journal_row *row, char *errstr, size_t errstr_size) {
    assert(statement != NULL && row != NULL);
    assert(sqlite3_column_count(statement) == BAL_JOURNAL_COLUMN_COUNT);
    memset(row, 0, sizeof *row);
    if (!bal_journal_decode_keys(statement, row) || !bal_journal_decode_values(statement, row) ||
        !bal_journal_decode_hash(journal, statement, row)) {
        bal_journal_describe(errstr, errstr_size, "journal row (shard %u, sequence %llu, leg %u) does not decode",
                             row->shard, (unsigned long long)row->sequence, row->leg);
        return BAL_JOURNAL_CORRUPT;
    }
    if (bal_journal_row_check(row, errstr, errstr_size) != BAL_JOURNAL_OK) return BAL_JOURNAL_CORRUPT;
    return BAL_JOURNAL_OK;
}

/* Byte order of id[0..length) against the NUL-terminated candidate, as strcmp orders
 * two NUL-terminated texts (bytes as unsigned char, a prefix first). */
static int bal_journal_compare_id(const char *id, size_t length, const char *candidate) {
    size_t candidate_length = strlen(candidate);
    int order = memcmp(id, candidate, length < candidate_length ? length : candidate_length);
    if (order != 0) return order;
    return (length > candidate_length) - (length < candidate_length);
}

bool bal_journal_lookup_id_wanted(const char *const *sorted, size_t count, const char *id, size_t length) {
    assert(sorted != NULL || count == 0);
    assert(id != NULL || length == 0);
    size_t low = 0, high = count; /* the id, if present, is in sorted[low .. high) */
    while (low < high) {
        size_t middle = low + (high - low) / 2;
        int order = bal_journal_compare_id(id, length, sorted[middle]);
        if (order == 0) return true;
        if (order < 0) high = middle;
        else low = middle + 1;
    }
    return false;
}

/* Which rows a look-up chunk keeps: those whose id is one of the chunk's own ids. A row of
 * an id from another chunk that shares a hash with one of this chunk's is dropped here and
 * delivered by its own chunk, so that every row comes once and ids stay ascending. A row
 * reached twice -- through two heads of one (shard, sequence), which only a writer that
 * split a log position's rows over two calls can leave -- comes right after itself in the
 * query's order and is dropped the second time. */
typedef struct bal_journal_id_filter {
    const char *const *ids; /* sorted, unique */
    size_t count;
    bool kept_any;          /* a row was kept; its key follows */
    int64_t shard, sequence, leg;
} bal_journal_id_filter;

static bool bal_journal_filter_keeps(bal_journal_id_filter *filter, sqlite3_stmt *statement) {
    assert(filter != NULL && statement != NULL);
    /* Anything but text cannot be compared; the decoder then reports the row as corrupt. */
    if (sqlite3_column_type(statement, BAL_JOURNAL_COLUMN_TRANSACTION_ID) != SQLITE_TEXT) return true;
    const char *id = (const char *)sqlite3_column_text(statement, BAL_JOURNAL_COLUMN_TRANSACTION_ID);
    int length = sqlite3_column_bytes(statement, BAL_JOURNAL_COLUMN_TRANSACTION_ID);
    if (id == NULL || length < 0) return true;
    if (!bal_journal_lookup_id_wanted(filter->ids, filter->count, id, (size_t)length)) return false;
    int64_t shard = sqlite3_column_int64(statement, BAL_JOURNAL_COLUMN_SHARD);
    int64_t sequence = sqlite3_column_int64(statement, BAL_JOURNAL_COLUMN_SEQUENCE);
    int64_t leg = sqlite3_column_int64(statement, BAL_JOURNAL_COLUMN_LEG);
    if (filter->kept_any && shard == filter->shard && sequence == filter->sequence && leg == filter->leg) {
        return false;
    }
    filter->kept_any = true;
    filter->shard = shard;
    filter->sequence = sequence;
    filter->leg = leg;
    return true;
}

/* Steps a bound query to its end, handing each decoded row that passes the filter (if
 * any) to fn. */
static bal_journal_status bal_journal_run_query(bal_journal *journal, sqlite3_stmt *statement,
                                                bal_journal_id_filter *filter, bal_journal_row_fn fn,
                                                void *context, char *errstr, size_t errstr_size) {
    assert(journal != NULL && statement != NULL && fn != NULL);
    bal_journal_row row;
    bal_journal_status status = BAL_JOURNAL_OK;
    int rc = SQLITE_ROW;
    while (status == BAL_JOURNAL_OK && (rc = sqlite3_step(statement)) == SQLITE_ROW) {
        if (filter != NULL && !bal_journal_filter_keeps(filter, statement)) continue;
        status = bal_journal_decode_row(journal, statement, &row, errstr, errstr_size);
        if (status == BAL_JOURNAL_OK && !fn(context, &row)) status = BAL_JOURNAL_ABORTED;
    }
    if (status == BAL_JOURNAL_OK && rc != SQLITE_DONE) {
        status = bal_journal_sqlite_failure(journal, rc, "query journal", errstr, errstr_size);
    }
    sqlite3_reset(statement);
    sqlite3_clear_bindings(statement);
    return status;
}

/* Opens the read transaction a query's statements share (one snapshot of the file). */
static bal_journal_status bal_journal_begin_read(bal_journal *journal, char *errstr, size_t errstr_size) {
    assert(sqlite3_get_autocommit(journal->db));
    int rc = bal_journal_step_done(journal->begin_read);
    if (rc != SQLITE_OK) return bal_journal_sqlite_failure(journal, rc, "begin read", errstr, errstr_size);
    return BAL_JOURNAL_OK;
}

/* Ends it, returning status, or the failure to end it if status was OK: ending a read
 * transaction cannot lose anything, but a failure is still reported. */
static bal_journal_status bal_journal_end_read(bal_journal *journal, bal_journal_status status, char *errstr,
                                               size_t errstr_size) {
    int rc = bal_journal_step_done(journal->commit);
    if (rc != SQLITE_OK) {
        if (!sqlite3_get_autocommit(journal->db)) (void)bal_journal_step_done(journal->rollback);
        if (status == BAL_JOURNAL_OK) status = bal_journal_sqlite_failure(journal, rc, "end read", errstr, errstr_size);
    }
    assert(sqlite3_get_autocommit(journal->db));
    return status;
}

static int bal_journal_compare_ids(const void *a, const void *b) {
    assert(a != NULL && b != NULL);
    /* strcmp orders bytes as unsigned char, shorter prefix first: SQLite's BINARY order. */
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Checks the ids, copies them into the handle's scratch list, sorts and de-duplicates it. */
static bal_journal_status bal_journal_prepare_ids(bal_journal *journal, const char *const *ids, size_t id_count,
                                                  size_t *unique_count_out, char *errstr, size_t errstr_size) {
    assert(journal != NULL && unique_count_out != NULL);
    if (id_count > BAL_JOURNAL_LOOKUP_IDS_MAX || (ids == NULL && id_count > 0)) {
        bal_journal_describe(errstr, errstr_size, "look-up of %zu ids (at most %d)", id_count,
                             BAL_JOURNAL_LOOKUP_IDS_MAX);
        return BAL_JOURNAL_INVALID_ARGUMENT;
    }
    for (size_t i = 0; i < id_count; i++) {
        if (ids[i] == NULL ||
            !bal_journal_transaction_id_valid(ids[i], strnlen(ids[i], BAL_TRANSACTION_ID_LENGTH_MAX + 1))) {
            bal_journal_describe(errstr, errstr_size, "look-up id %zu is not a valid transaction id", i);
            return BAL_JOURNAL_INVALID_ARGUMENT;
        }
        journal->lookup_ids[i] = ids[i];
    }
    if (id_count > 1) qsort(journal->lookup_ids, id_count, sizeof journal->lookup_ids[0], bal_journal_compare_ids);
    size_t unique_count = 0;
    for (size_t i = 0; i < id_count; i++) {
        if (unique_count == 0 || strcmp(journal->lookup_ids[unique_count - 1], journal->lookup_ids[i]) != 0) {
            journal->lookup_ids[unique_count++] = journal->lookup_ids[i];
        }
    }
    assert(unique_count <= id_count);
    for (size_t i = 0; i < unique_count; i++) {
        const char *id = journal->lookup_ids[i];
        journal->lookup_hashes[i] = bal_journal_u64_to_sql(journal->hash(id, strlen(id)));
    }
    *unique_count_out = unique_count;
    return BAL_JOURNAL_OK;
}

/* Runs the chunks over the sorted unique ids inside the open read transaction. */
static bal_journal_status bal_journal_lookup_chunks(bal_journal *journal, size_t id_count, bal_journal_row_fn fn,
                                                    void *context, char *errstr, size_t errstr_size) {
    assert(journal != NULL && fn != NULL);
    assert(!sqlite3_get_autocommit(journal->db));
    sqlite3_stmt *statement = journal->lookup_chunk;
    bal_journal_status status = BAL_JOURNAL_OK;
    for (size_t start = 0; start < id_count && status == BAL_JOURNAL_OK; start += BAL_JOURNAL_LOOKUP_CHUNK_IDS) {
        int rc = SQLITE_OK;
        for (int slot = 0; slot < BAL_JOURNAL_LOOKUP_CHUNK_IDS && rc == SQLITE_OK; slot++) {
            size_t index = start + (size_t)slot;
            rc = index < id_count ? sqlite3_bind_int64(statement, slot + 1, journal->lookup_hashes[index])
                                  : sqlite3_bind_null(statement, slot + 1);
        }
        if (rc != SQLITE_OK) {
            sqlite3_clear_bindings(statement);
            return bal_journal_sqlite_failure(journal, rc, "bind look-up hashes", errstr, errstr_size);
        }
        size_t remaining = id_count - start;
        bal_journal_id_filter filter = {
            .ids = journal->lookup_ids + start,
            .count = remaining < BAL_JOURNAL_LOOKUP_CHUNK_IDS ? remaining : BAL_JOURNAL_LOOKUP_CHUNK_IDS,
        };
        status = bal_journal_run_query(journal, statement, &filter, fn, context, errstr, errstr_size);
    }
    return status;
}

bal_journal_status bal_journal_find_transactions(bal_journal *journal, const char *const *ids,
                                                 size_t id_count, bal_journal_row_fn fn,
                                                 void *context, char *errstr, size_t errstr_size) {
    assert(journal != NULL && fn != NULL);
    assert(sqlite3_get_autocommit(journal->db));
    size_t unique_count = 0;
    bal_journal_status status = bal_journal_prepare_ids(journal, ids, id_count, &unique_count, errstr, errstr_size);
    if (status != BAL_JOURNAL_OK || unique_count == 0) return status;

    /* One read transaction: every chunk sees the same snapshot of the file. */
    status = bal_journal_begin_read(journal, errstr, errstr_size);
    if (status != BAL_JOURNAL_OK) return status;
    status = bal_journal_lookup_chunks(journal, unique_count, fn, context, errstr, errstr_size);
    return bal_journal_end_read(journal, status, errstr, errstr_size);
}

/* Remembers the last row handed out, so the next page can start after it. */
typedef struct bal_journal_history_page {
    bal_journal_row_fn fn;
    void *context;
    uint32_t limit;
    uint32_t delivered;
    bool more;               /* a row beyond the limit exists */
    uint64_t last_sequence;
    uint32_t last_leg;
} bal_journal_history_page;

static bool bal_journal_history_row(void *context, const bal_journal_row *row) {
    bal_journal_history_page *page = context;
    assert(page != NULL && row != NULL);
    if (page->delivered == page->limit) {
        page->more = true; /* the one extra row asked for: it only says "there is more" */
        return true;
    }
    assert(page->delivered < page->limit);
    page->delivered++;
    page->last_sequence = row->sequence;
    page->last_leg = row->leg;
    return page->fn(page->context, row);
}

/* Fills the page from the runs, newest first, inside the open read transaction. An
 * account's rows are all its shard's, and a shard's rows reach the runs in log order, so
 * every entry of a newer run is newer (a larger sequence) than every entry of an older
 * one: each run's part continues where the previous one's ended. */
static bal_journal_status bal_journal_history_runs(bal_journal *journal, const bal_journal_history_query *query,
                                                   uint64_t before_sequence, uint32_t before_leg,
                                                   bal_journal_history_page *page, char *errstr, size_t errstr_size) {
    assert(journal != NULL && query != NULL && page != NULL);
    assert(!sqlite3_get_autocommit(journal->db));
    sqlite3_stmt *runs = journal->runs_newest_first;
    sqlite3_stmt *statement = query->currency != NULL ? journal->history_currency : journal->history_all;
    bal_journal_status status = BAL_JOURNAL_OK;
    int rc = SQLITE_OK;
    while (status == BAL_JOURNAL_OK && !page->more && (rc = sqlite3_step(runs)) == SQLITE_ROW) {
        int64_t run = sqlite3_column_int64(runs, 0);
        assert(page->delivered <= page->limit);
        rc = sqlite3_bind_int64(statement, 1, bal_journal_account_to_sql(query->account_id));
        if (rc == SQLITE_OK) rc = sqlite3_bind_int64(statement, 2, (int64_t)before_sequence);
        if (rc == SQLITE_OK) rc = sqlite3_bind_int64(statement, 3, before_leg);
        if (rc == SQLITE_OK) rc = sqlite3_bind_int64(statement, 4, (int64_t)(page->limit - page->delivered) + 1);
        if (rc == SQLITE_OK && query->currency != NULL) {
            rc = sqlite3_bind_text(statement, 5, query->currency, -1, SQLITE_STATIC);
        }
        if (rc == SQLITE_OK) rc = sqlite3_bind_int64(statement, 6, run);
        if (rc != SQLITE_OK) {
            sqlite3_clear_bindings(statement);
            status = bal_journal_sqlite_failure(journal, rc, "bind history query", errstr, errstr_size);
            break;
        }
        status = bal_journal_run_query(journal, statement, NULL, bal_journal_history_row, page, errstr, errstr_size);
        rc = SQLITE_OK;
    }
    if (status == BAL_JOURNAL_OK && rc != SQLITE_OK && rc != SQLITE_ROW && rc != SQLITE_DONE) {
        status = bal_journal_sqlite_failure(journal, rc, "list index runs", errstr, errstr_size);
    }
    sqlite3_reset(runs);
    return status;
}

static bal_journal_status bal_journal_check_history_query(const bal_journal_history_query *query,
                                                          char *errstr, size_t errstr_size) {
    assert(query != NULL);
    bool currency_ok = query->currency == NULL ||
                       bal_journal_currency_valid(query->currency,
                                                  strnlen(query->currency, BAL_CURRENCY_LENGTH_MAX + 1));
    bool before_ok = query->before == BAL_JOURNAL_CURSOR_NONE ||
                     (query->before - 1) / BAL_JOURNAL_LEGS_MAX <= BAL_JOURNAL_SEQUENCE_MAX;
    if (query->account_id == 0 || !currency_ok || !before_ok) {
        bal_journal_describe(errstr, errstr_size, "history query: %s",
                             query->account_id == 0 ? "account_id is 0"
                             : !currency_ok         ? "invalid currency"
                                                    : "invalid cursor");
        return BAL_JOURNAL_INVALID_ARGUMENT;
    }
    return BAL_JOURNAL_OK;
}

bal_journal_status bal_journal_history(bal_journal *journal, const bal_journal_history_query *query,
                                       bal_journal_row_fn fn, void *context,
                                       uint64_t *next_before_out, char *errstr, size_t errstr_size) {
    assert(journal != NULL && query != NULL);
    assert(fn != NULL && next_before_out != NULL);
    *next_before_out = BAL_JOURNAL_CURSOR_NONE;
    bal_journal_status status = bal_journal_check_history_query(query, errstr, errstr_size);
    if (status != BAL_JOURNAL_OK) return status;

    bal_journal_history_page page = {.fn = fn, .context = context};
    page.limit = query->limit == 0 ? BAL_JOURNAL_HISTORY_LIMIT_DEFAULT : query->limit;
    if (page.limit > BAL_JOURNAL_HISTORY_LIMIT_MAX) page.limit = BAL_JOURNAL_HISTORY_LIMIT_MAX;
    /* No cursor: start above the largest sequence, so every row is "before" it. */
    uint64_t before_sequence = BAL_JOURNAL_SEQUENCE_MAX + 1;
    uint32_t before_leg = 0;
    if (query->before != BAL_JOURNAL_CURSOR_NONE) {
        before_sequence = (query->before - 1) / BAL_JOURNAL_LEGS_MAX;
        before_leg = (uint32_t)((query->before - 1) % BAL_JOURNAL_LEGS_MAX);
    }
    /* One read transaction: the runs and every run's part of the page are one snapshot. */
    status = bal_journal_begin_read(journal, errstr, errstr_size);
    if (status != BAL_JOURNAL_OK) return status;
    status = bal_journal_history_runs(journal, query, before_sequence, before_leg, &page, errstr, errstr_size);
    status = bal_journal_end_read(journal, status, errstr, errstr_size);
    if (status != BAL_JOURNAL_OK) return status;
    assert(page.delivered <= page.limit);
    if (page.more) *next_before_out = bal_journal_cursor_after(page.last_sequence, page.last_leg);
    return BAL_JOURNAL_OK;
}
