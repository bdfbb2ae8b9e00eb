/*
 * test_journal.c -- the journal store against a real SQLite file in a scratch directory:
 * exact round trip of every field (amounts and account ids at their edges, memos NULL,
 * empty and 256 bytes), row validation, position and idempotency across reopen, history
 * paging, batched look-up (also when distinct ids share a hash), the writer's insert order,
 * schema identity and readers running beside the writer.
 *
 * Usage: test_journal [case]; without a case every case runs. CTest runs one per case.
 */
#include <dirent.h>
#include <pthread.h>
#include <sqlite3.h>
#include <string.h>
#include <unistd.h>

#include "bal_hash.h"
#include "bal_journal_internal.h"
#include "journal_test_util.h"

#define MAX BAL_MONEY_MAX
#define U64_TOP UINT64_MAX
#define U63 (1ull << 63)

/* ---------------------------------------------------------------- round trip */

/* A 256-byte memo with quotes, backslashes, a newline and multi-byte UTF-8. */
static size_t build_long_memo(char *memo) {
    static const char piece[] = "\"quoted\" 'single' \\back\\slash\n caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 ";
    size_t length = 0;
    while (length + sizeof piece - 1 <= BAL_MEMO_LENGTH_MAX) {
        memcpy(memo + length, piece, sizeof piece - 1);
        length += sizeof piece - 1;
    }
    while (length < BAL_MEMO_LENGTH_MAX) memo[length++] = 'x';
    return length;
}

/* One transaction of every type, with edge values everywhere. Returns the row count. */
static size_t build_edge_rows(bal_journal_row *rows) {
    static char memo[BAL_MEMO_LENGTH_MAX];
    size_t memo_length = build_long_memo(memo);
    bal_amount tiny = 1; /* 10^-18 */
    size_t n = 0;

    test_row_init(&rows[n], 0, 1, 0, BAL_JOURNAL_TYPE_DEPOSIT, "dep-1", 1, "USDT");
    rows[n].amount = tiny;
    rows[n].time_ms = 0;
    test_row_balances(&rows[n++], 0, tiny, 0, 0);

    test_row_init(&rows[n], 0, 2, 0, BAL_JOURNAL_TYPE_WITHDRAW, "wd.rejected:2", U64_TOP, "BTC");
    rows[n].amount = MAX;
    strcpy(rows[n].result, "insufficient_available");
    test_row_memo(&rows[n], "", 0);
    test_row_balances(&rows[n++], 5, 5, 0, 0);

    test_row_init(&rows[n], 0, 3, 0, BAL_JOURNAL_TYPE_FREEZE, "frz_3", U63, "ETH");
    rows[n].amount = test_amount("1.5");
    rows[n].time_ms = INT64_MAX;
    test_row_memo(&rows[n], memo, memo_length);
    test_row_balances(&rows[n++], test_amount("10"), test_amount("8.5"), 0, test_amount("1.5"));

    test_row_init(&rows[n], 0, 4, 0, BAL_JOURNAL_TYPE_UNFREEZE, "unf-4", U63 - 1, "A123456789");
    rows[n].amount = tiny;
    test_row_balances(&rows[n++], 0, tiny, MAX, MAX - 1);

    test_row_init(&rows[n], 0, 5, 0, BAL_JOURNAL_TYPE_DEDUCT_FROZEN, "ded-5", 42, "X");
    rows[n].amount = test_amount("1.5");
    test_row_balances(&rows[n++], 0, 0, test_amount("1.5"), 0);

    const char *long_id = "0123456789012345678901234567890123456789012345678901234567890123";
    for (uint32_t leg = 0; leg < 2; leg++) {
        test_row_init(&rows[n], 0, 6, leg, BAL_JOURNAL_TYPE_TRANSFER, long_id, leg == 0 ? 1 : U64_TOP, "USDT");
        rows[n].amount = MAX;
        rows[n].to_account_id = U64_TOP;
        test_row_memo(&rows[n], "a\0b", 3); /* an embedded NUL survives too */
        if (leg == 0) test_row_balances(&rows[n++], MAX, 0, 7, 7);
        else test_row_balances(&rows[n++], 0, MAX, 0, 0);
    }

    test_row_init(&rows[n], 0, 7, 0, BAL_JOURNAL_TYPE_EVENT, "ev-7", 1, "BTC");
    rows[n].leg_available_delta = -tiny;
    test_row_balances(&rows[n++], 1, 0, 0, 0);
    test_row_init(&rows[n], 0, 7, 1, BAL_JOURNAL_TYPE_EVENT, "ev-7", 1, "USDT");
    rows[n].leg_available_delta = test_amount("25000.000000000000000001");
    rows[n].leg_frozen_delta = test_amount("-3");
    test_row_balances(&rows[n++], 0, test_amount("25000.000000000000000001"), 3, 0);
    test_row_init(&rows[n], 0, 7, 2, BAL_JOURNAL_TYPE_EVENT, "ev-7", U64_TOP, "BTC");
    rows[n].leg_frozen_delta = -MAX;
    test_row_balances(&rows[n++], 0, 0, MAX, 0);

    for (uint32_t leg = 0; leg < 2; leg++) {
        test_row_init(&rows[n], 0, 8, leg, BAL_JOURNAL_TYPE_EVENT, "ev-8-rejected", 9 + leg, "ETH");
        strcpy(rows[n].result, "insufficient_frozen");
        rows[n].leg_available_delta = leg == 0 ? MAX : -MAX;
        rows[n].leg_frozen_delta = leg == 0 ? -1 : 1;
        test_row_balances(&rows[n++], 3, 3, 0, 0);
    }

    test_row_init(&rows[n], 0, BAL_JOURNAL_SEQUENCE_MAX, 0, BAL_JOURNAL_TYPE_DEPOSIT, "overflow-9", 1, "USDT");
    strcpy(rows[n].result, "overflow");
    test_row_balances(&rows[n++], MAX, MAX, 0, 0);
    return n;
}

/* Opens the journal file read-only and prepares one query on it (the tests below look at
 * the stored format itself). close_query finishes both. */
static void open_query(const test_dir *dir, const char *sql, sqlite3 **db_out, sqlite3_stmt **statement_out) {
    *db_out = NULL;
    *statement_out = NULL;
    CHECK(sqlite3_open_v2(dir->path, db_out, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK);
    CHECK(sqlite3_prepare_v2(*db_out, sql, -1, statement_out, NULL) == SQLITE_OK);
}

static void close_query(sqlite3 *db, sqlite3_stmt *statement) {
    sqlite3_finalize(statement);
    sqlite3_close(db);
}

static void check_raw_storage(const test_dir *dir) {
    sqlite3 *db = NULL;
    sqlite3_stmt *s = NULL;
    /* Amounts are canonical text; account 2^64-1 is stored as -1, 2^63 as INT64_MIN. */
    open_query(dir,
               "SELECT (SELECT amount FROM journal WHERE sequence = 1),"
               "       (SELECT account_id FROM journal WHERE sequence = 2),"
               "       (SELECT account_id FROM journal WHERE sequence = 3),"
               "       (SELECT typeof(memo) FROM journal WHERE sequence = 1),"
               "       (SELECT frozen_delta FROM journal WHERE sequence = 7 AND leg = 2)",
               &db, &s);
    CHECK(sqlite3_step(s) == SQLITE_ROW);
    CHECK(strcmp((const char *)sqlite3_column_text(s, 0), "0.000000000000000001") == 0);
    CHECK(sqlite3_column_int64(s, 1) == -1);
    CHECK(sqlite3_column_int64(s, 2) == INT64_MIN);
    CHECK(strcmp((const char *)sqlite3_column_text(s, 3), "null") == 0);
    CHECK(strcmp((const char *)sqlite3_column_text(s, 4), "-999999999999999999.999999999999999999") == 0);
    sqlite3_finalize(s);
    /* transaction_hash is bal_hash_bytes of the id with the documented seed, as a signed
     * 64-bit integer: the format other readers of the file can rely on. Only the first row
     * of each (shard, sequence) carries it. */
    CHECK(sqlite3_prepare_v2(db, "SELECT transaction_id, leg, transaction_hash FROM journal ORDER BY shard, sequence, leg",
                             -1, &s, NULL) == SQLITE_OK);
    size_t checked = 0;
    while (sqlite3_step(s) == SQLITE_ROW) {
        const char *id = (const char *)sqlite3_column_text(s, 0);
        if (sqlite3_column_int64(s, 1) == 0) {
            CHECK(sqlite3_column_type(s, 2) == SQLITE_INTEGER);
            CHECK((uint64_t)sqlite3_column_int64(s, 2) == bal_hash_bytes(id, strlen(id), BAL_JOURNAL_TRANSACTION_HASH_SEED));
        } else {
            CHECK(sqlite3_column_type(s, 2) == SQLITE_NULL);
        }
        checked++;
    }
    CHECK(checked == 13);
    close_query(db, s);
}

static void test_round_trip(void) {
    test_dir dir;
    test_dir_create(&dir);
    bal_journal *journal = test_open(&dir, false);
    bal_journal_row rows[32];
    size_t count = build_edge_rows(rows);
    bal_journal_write_outcome outcome;
    CHECK_OK(bal_journal_write_batch(journal, 0, rows, count, 1, &outcome, ERR));
    CHECK(!outcome.skipped && outcome.rows_inserted == count && outcome.rows_ignored == 0);

    /* Each transaction alone: its rows, in leg order, equal to what was written. */
    test_rows found = {0};
    for (size_t i = 0; i < count;) {
        const char *id = rows[i].transaction_id;
        test_rows_clear(&found);
        CHECK_OK(bal_journal_find_transactions(journal, &id, 1, test_rows_collect, &found, ERR));
        CHECK(found.count >= 1);
        for (size_t k = 0; k < found.count; k++) {
            if (!test_row_equal(&found.rows[k], &rows[i + k])) {
                test_row_print("stored", &found.rows[k]);
                test_row_print("expected", &rows[i + k]);
                CHECK(false);
            }
        }
        i += found.count;
    }
    bal_journal_close(journal);

    /* Reopened by a reader: the same bytes come back. */
    journal = test_open(&dir, true);
    const char *ids[] = {"frz_3", "ev-7", "missing"};
    test_rows_clear(&found);
    CHECK_OK(bal_journal_find_transactions(journal, ids, 3, test_rows_collect, &found, ERR));
    CHECK(found.count == 4); /* ev-7 sorts before frz_3 */
    CHECK(test_row_equal(&found.rows[0], &rows[7]) && test_row_equal(&found.rows[3], &rows[2]));
    CHECK(found.rows[3].memo_length == BAL_MEMO_LENGTH_MAX);
    bal_journal_close(journal);
    check_raw_storage(&dir);
    test_rows_free(&found);
    test_dir_remove(&dir);
}

/* ---------------------------------------------------------------- validation */

typedef void (*row_mutation)(bal_journal_row *row);
static void m_account_zero(bal_journal_row *r) { r->account_id = 0; }
static void m_id_empty(bal_journal_row *r) { r->transaction_id[0] = '\0'; }
static void m_id_space(bal_journal_row *r) { strcpy(r->transaction_id, "a b"); }
static void m_id_long(bal_journal_row *r) { memset(r->transaction_id, 'a', sizeof r->transaction_id); }
static void m_currency_lower(bal_journal_row *r) { strcpy(r->currency, "usdt"); }
static void m_currency_long(bal_journal_row *r) { memset(r->currency, 'A', sizeof r->currency); }
static void m_result_upper(bal_journal_row *r) { strcpy(r->result, "OK"); }
static void m_result_empty(bal_journal_row *r) { r->result[0] = '\0'; }
static void m_memo_long(bal_journal_row *r) { r->has_memo = true, r->memo_length = BAL_MEMO_LENGTH_MAX + 1; }
static void m_memo_phantom(bal_journal_row *r) { r->has_memo = false, r->memo_length = 3; }
static void m_type(bal_journal_row *r) { r->type = (bal_journal_type)99; }
static void m_leg_range(bal_journal_row *r) { r->leg = BAL_JOURNAL_LEGS_MAX; }
static void m_deposit_leg(bal_journal_row *r) { r->leg = 1; }
static void m_amount_zero(bal_journal_row *r) { r->amount = 0; }
static void m_amount_negative(bal_journal_row *r) { r->amount = -1; }
static void m_amount_big(bal_journal_row *r) { r->amount = MAX + 1; }
static void m_balance_negative(bal_journal_row *r) { test_row_balances(r, -1, 0, 0, 0); }
static void m_balance_big(bal_journal_row *r) { test_row_balances(r, 0, 0, 0, MAX + 1); }
static void m_delta_wrong(bal_journal_row *r) { r->available_delta += 1; }
static void m_rejected_change(bal_journal_row *r) { strcpy(r->result, "insufficient_available"); }
static void m_event_amount(bal_journal_row *r) { r->type = BAL_JOURNAL_TYPE_EVENT; }
static void m_leg_delta_deposit(bal_journal_row *r) { r->leg_frozen_delta = 1; }
static void m_transfer_no_target(bal_journal_row *r) { r->type = BAL_JOURNAL_TYPE_TRANSFER; }
static void m_transfer_self(bal_journal_row *r) { r->type = BAL_JOURNAL_TYPE_TRANSFER, r->to_account_id = r->account_id; }
static void m_transfer_leg1_other(bal_journal_row *r) { r->type = BAL_JOURNAL_TYPE_TRANSFER, r->leg = 1, r->to_account_id = 99; }
static void m_to_account_deposit(bal_journal_row *r) { r->to_account_id = 5; }
static void m_time_negative(bal_journal_row *r) { r->time_ms = -1; }
static void m_sequence_big(bal_journal_row *r) { r->sequence = BAL_JOURNAL_SEQUENCE_MAX + 1; }
static void m_other_shard(bal_journal_row *r) { r->shard = 1; }

static int64_t count_rows_where(const test_dir *dir, const char *condition) {
    sqlite3 *db = NULL;
    sqlite3_stmt *s = NULL;
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM journal WHERE %s", condition);
    open_query(dir, sql, &db, &s);
    CHECK(sqlite3_step(s) == SQLITE_ROW);
    int64_t count = sqlite3_column_int64(s, 0);
    close_query(db, s);
    return count;
}

static int64_t count_rows(const test_dir *dir) {
    return count_rows_where(dir, "1");
}

static void test_validation(void) {
    static const row_mutation mutations[] = {
        m_account_zero, m_id_empty, m_id_space, m_id_long, m_currency_lower, m_currency_long,
        m_result_upper, m_result_empty, m_memo_long, m_memo_phantom, m_type, m_leg_range,
        m_deposit_leg, m_amount_zero, m_amount_negative, m_amount_big, m_balance_negative,
        m_balance_big, m_delta_wrong, m_rejected_change, m_event_amount, m_leg_delta_deposit,
        m_transfer_no_target, m_transfer_self, m_transfer_leg1_other, m_to_account_deposit,
        m_time_negative, m_sequence_big, m_other_shard,
    };
    test_dir dir;
    test_dir_create(&dir);
    bal_journal *journal = test_open(&dir, false);
    bal_journal_row rows[2];
    for (size_t i = 0; i < sizeof mutations / sizeof mutations[0]; i++) {
        test_row_init(&rows[0], 0, 1, 0, BAL_JOURNAL_TYPE_DEPOSIT, "good-1", 1, "USDT");
        test_row_balances(&rows[0], 0, 1, 0, 0);
        test_row_init(&rows[1], 0, 2, 0, BAL_JOURNAL_TYPE_DEPOSIT, "bad-2", 1, "USDT");
        test_row_balances(&rows[1], 1, 2, 0, 0);
        CHECK(bal_journal_row_check(&rows[1], NULL, 0) == BAL_JOURNAL_OK);
        mutations[i](&rows[1]);
        char errstr[256] = "";
        bal_journal_status status = bal_journal_write_batch(journal, 0, rows, 2, 1, NULL, errstr, sizeof errstr);
        if (status != BAL_JOURNAL_INVALID_ARGUMENT) fprintf(stderr, "mutation %zu accepted\n", i);
        CHECK(status == BAL_JOURNAL_INVALID_ARGUMENT && errstr[0] != '\0');
    }
    /* Arguments: lsn 0, lsn beyond the maximum, too many rows, shard out of range. */
    CHECK(bal_journal_write_batch(journal, 0, rows, 1, 0, NULL, NULL, 0) == BAL_JOURNAL_INVALID_ARGUMENT);
    CHECK(bal_journal_write_batch(journal, 0, rows, 1, BAL_JOURNAL_LSN_MAX + 1, NULL, NULL, 0) ==
          BAL_JOURNAL_INVALID_ARGUMENT);
    CHECK(bal_journal_write_batch(journal, 0, rows, BAL_JOURNAL_BATCH_ROWS_MAX + 1, 1, NULL, NULL, 0) ==
          BAL_JOURNAL_INVALID_ARGUMENT);
    CHECK(bal_journal_write_batch(journal, BAL_JOURNAL_SHARDS_MAX, NULL, 0, 1, NULL, NULL, 0) ==
          BAL_JOURNAL_INVALID_ARGUMENT);
    /* Nothing of any refused batch was stored, the position did not move. */
    uint64_t lsn = 99;
    CHECK_OK(bal_journal_position(journal, 0, &lsn, ERR));
    CHECK(lsn == 0 && count_rows(&dir) == 0);
    bal_journal_close(journal);
    test_dir_remove(&dir);
}

/* ---------------------------------------------------------------- idempotency */

/* Rows for commands first..last of shard, one DEPOSIT each (ids "s<shard>-<sequence>"). */
static size_t build_deposits(bal_journal_row *rows, uint32_t shard, uint64_t first, uint64_t last) {
    size_t n = 0;
    for (uint64_t sequence = first; sequence <= last; sequence++, n++) {
        char id[32];
        snprintf(id, sizeof id, "s%u-%llu", shard, (unsigned long long)sequence);
        test_row_init(&rows[n], shard, sequence, 0, BAL_JOURNAL_TYPE_DEPOSIT, id, 100 + shard, "USDT");
        test_row_balances(&rows[n], (bal_amount)sequence - 1, (bal_amount)sequence, 0, 0);
    }
    return n;
}

static void check_position(bal_journal *journal, uint32_t shard, uint64_t expected) {
    uint64_t lsn = 0;
    CHECK_OK(bal_journal_position(journal, shard, &lsn, ERR));
    if (lsn != expected) fprintf(stderr, "shard %u position %llu, expected %llu\n", shard,
                                 (unsigned long long)lsn, (unsigned long long)expected);
    CHECK(lsn == expected);
}

static void test_idempotency(void) {
    test_dir dir;
    test_dir_create(&dir);
    bal_journal *journal = test_open(&dir, false);
    bal_journal_row rows[64];
    bal_journal_write_outcome outcome;
    check_position(journal, 0, 0);

    size_t n = build_deposits(rows, 0, 1, 10);
    CHECK_OK(bal_journal_write_batch(journal, 0, rows, n, 5, &outcome, ERR));
    CHECK(!outcome.skipped && outcome.rows_inserted == 10);
    /* The same batch again, and an older one: no-ops. */
    CHECK_OK(bal_journal_write_batch(journal, 0, rows, n, 5, &outcome, ERR));
    CHECK(outcome.skipped && outcome.rows_inserted == 0 && outcome.rows_ignored == 0);
    CHECK_OK(bal_journal_write_batch(journal, 0, rows, 3, 3, &outcome, ERR));
    CHECK(outcome.skipped);
    CHECK(count_rows(&dir) == 10);
    check_position(journal, 0, 5);

    /* A replay cut differently: sequences 8..20 under a newer position. 8..10 collide. */
    n = build_deposits(rows, 0, 8, 20);
    CHECK_OK(bal_journal_write_batch(journal, 0, rows, n, 9, &outcome, ERR));
    CHECK(!outcome.skipped && outcome.rows_inserted == 10 && outcome.rows_ignored == 3);
    CHECK(count_rows(&dir) == 20);
    /* A log batch without rows still moves the position. */
    CHECK_OK(bal_journal_write_batch(journal, 0, NULL, 0, 12, &outcome, ERR));
    CHECK(!outcome.skipped);
    check_position(journal, 0, 12);

    /* Shards keep separate positions; the same sequence numbers do not collide. */
    n = build_deposits(rows, 7, 1, 10);
    CHECK_OK(bal_journal_write_batch(journal, 7, rows, n, 3, &outcome, ERR));
    CHECK(outcome.rows_inserted == 10);
    check_position(journal, 7, 3);
    check_position(journal, 0, 12);
    check_position(journal, 1, 0);
    bal_journal_close(journal);

    /* Reopened (writer and reader): everything is still there. */
    journal = test_open(&dir, false);
    bal_journal *reader = test_open(&dir, true);
    check_position(journal, 0, 12);
    check_position(reader, 7, 3);
    CHECK(count_rows(&dir) == 30);
    n = build_deposits(rows, 7, 1, 10);
    CHECK_OK(bal_journal_write_batch(journal, 7, rows, n, 3, &outcome, ERR));
    CHECK(outcome.skipped);
    const char *id = "s7-10";
    test_rows found = {0};
    CHECK_OK(bal_journal_find_transactions(reader, &id, 1, test_rows_collect, &found, ERR));
    CHECK(found.count == 1 && test_row_equal(&found.rows[0], &rows[9]));
    CHECK_OK(bal_journal_checkpoint(journal, ERR));
    test_rows_free(&found);
    bal_journal_close(reader);
    bal_journal_close(journal);
    test_dir_remove(&dir);
}

/* ---------------------------------------------------------------- history */

#define HISTORY_COMMANDS 2400
#define HISTORY_ACCOUNTS 3
#define HISTORY_CURRENCIES 4
static const uint64_t history_accounts[HISTORY_ACCOUNTS] = {7, U64_TOP, 8};
static const char *const history_currencies[HISTORY_CURRENCIES] = {"USDT", "BTC", "ETH", "X1"};

/* Rows of one random command: 1 (one-balance types), 2 (TRANSFER) or 2..4 (EVENT) rows,
 * some rejected. The values only need to satisfy the row rules. */
static size_t build_random_command(bal_journal_row *rows, uint32_t shard, uint64_t sequence, uint64_t *seed) {
    char id[32];
    snprintf(id, sizeof id, "h%u-%llu", shard, (unsigned long long)sequence);
    bal_journal_type type = (bal_journal_type)(test_random(seed) % BAL_JOURNAL_TYPE_COUNT);
    uint32_t legs = type == BAL_JOURNAL_TYPE_TRANSFER ? 2 : type == BAL_JOURNAL_TYPE_EVENT ? 2 + (uint32_t)(test_random(seed) % 3) : 1;
    bool rejected = test_random(seed) % 5 == 0;
    uint64_t source = history_accounts[test_random(seed) % HISTORY_ACCOUNTS];
    uint64_t target = history_accounts[(source == 7 ? 1 : 0)];
    const char *currency = history_currencies[test_random(seed) % HISTORY_CURRENCIES];
    for (uint32_t leg = 0; leg < legs; leg++) {
        bal_journal_row *row = &rows[leg];
        uint64_t account = type == BAL_JOURNAL_TYPE_EVENT ? history_accounts[test_random(seed) % HISTORY_ACCOUNTS]
                           : leg == 0                     ? source
                                                          : target;
        if (type == BAL_JOURNAL_TYPE_EVENT) currency = history_currencies[test_random(seed) % HISTORY_CURRENCIES];
        test_row_init(row, shard, sequence, leg, type, id, account, currency);
        bal_amount before = (bal_amount)(test_random(seed) % 1000000) * 1000;
        bal_amount change = (bal_amount)(test_random(seed) % 1000) + 1;
        if (type == BAL_JOURNAL_TYPE_TRANSFER) row->to_account_id = target;
        if (type == BAL_JOURNAL_TYPE_EVENT) row->leg_available_delta = change;
        else row->amount = change;
        if (rejected) strcpy(row->result, "insufficient_available");
        test_row_balances(row, before, rejected ? before : before + change, 0, 0);
    }
    return legs;
}

typedef struct history_data {
    bal_journal_row *rows;
    size_t count;
    uint32_t shard;          /* the shard whose accounts are listed */
} history_data;

/* Called after each batch write_history stores, with the rows stored so far. */
typedef void (*history_batch_fn)(void *context, const history_data *data);

static history_data write_history(bal_journal *journal, history_batch_fn after_batch, void *context) {
    history_data data = {calloc((size_t)HISTORY_COMMANDS * 4 * 2, sizeof(bal_journal_row)), 0, 3};
    CHECK(data.rows != NULL);
    uint64_t seed = 12345;
    /* Two shards, each with its own sequence; one account lives in exactly one shard. */
    for (uint32_t shard = 2; shard <= 3; shard++) {
        size_t batch_start = data.count;
        uint64_t lsn = 0;
        for (uint64_t sequence = 1; sequence <= HISTORY_COMMANDS; sequence++) {
            size_t legs = build_random_command(&data.rows[data.count], shard, sequence, &seed);
            for (size_t i = 0; shard == 2 && i < legs; i++) {
                /* Shard 2's rows belong to other accounts (an account lives in one shard). */
                bal_journal_row *row = &data.rows[data.count + i];
                row->account_id += 1000;
                if (row->to_account_id != 0) row->to_account_id += 1000;
            }
            data.count += legs;
            if (sequence % 97 == 0 || sequence == HISTORY_COMMANDS) {
                CHECK_OK(bal_journal_write_batch(journal, shard, &data.rows[batch_start], data.count - batch_start,
                                                 ++lsn, NULL, ERR));
                batch_start = data.count;
                if (after_batch != NULL) after_batch(context, &data);
            }
        }
    }
    return data;
}

/* The expected listing: rows of account (and currency), newest first. */
static size_t expected_history(const history_data *data, uint64_t account, const char *currency,
                               const bal_journal_row **out) {
    size_t n = 0;
    for (size_t i = data->count; i-- > 0;) {
        const bal_journal_row *row = &data->rows[i];
        if (row->shard != data->shard || row->account_id != account) continue;
        if (currency != NULL && strcmp(row->currency, currency) != 0) continue;
        out[n++] = row;
    }
    /* Rows were built in (sequence, leg) order, so walking backwards is newest first. */
    return n;
}

static void check_listing(bal_journal *journal, const history_data *data, uint64_t account,
                          const char *currency, uint32_t limit, const bal_journal_row **expected) {
    size_t expected_count = expected_history(data, account, currency, expected);
    uint32_t page_size = limit == 0 ? BAL_JOURNAL_HISTORY_LIMIT_DEFAULT
                         : limit > BAL_JOURNAL_HISTORY_LIMIT_MAX ? BAL_JOURNAL_HISTORY_LIMIT_MAX
                                                                 : limit;
    bal_journal_history_query query = {.account_id = account, .currency = currency, .limit = limit};
    test_rows page = {0};
    size_t seen = 0;
    for (;;) {
        uint64_t next = 12345;
        test_rows_clear(&page);
        CHECK_OK(bal_journal_history(journal, &query, test_rows_collect, &page, &next, ERR));
        CHECK(page.count <= page_size);
        for (size_t i = 0; i < page.count; i++, seen++) {
            CHECK(seen < expected_count);
            CHECK(test_row_equal(&page.rows[i], expected[seen]));
        }
        if (next == BAL_JOURNAL_CURSOR_NONE) break;
        CHECK(page.count == page_size); /* only the last page may be short */
        query.before = next;
    }
    CHECK(seen == expected_count);
    test_rows_free(&page);
}

static void exec_sql(const char *path, const char *sql);
static bal_journal_status open_status(const test_dir *dir, bool read_only);
static void check_indexes(const test_dir *dir);
static void check_lookup_exact(bal_journal *journal, const bal_journal_row *rows, size_t row_count,
                               const char *const *ids, size_t id_count);

/* Every account's listing in every currency and at several page sizes; returns the rows
 * listed without a currency. */
static size_t check_all_listings(bal_journal *reader, const history_data *data, const bal_journal_row **expected) {
    static const uint32_t limits[] = {1, 3, 7, 100, 0, 999, 1000, 5000};
    size_t total = 0;
    for (size_t a = 0; a < HISTORY_ACCOUNTS; a++) {
        total += expected_history(data, history_accounts[a], NULL, expected);
        for (size_t l = 0; l < sizeof limits / sizeof limits[0]; l++) {
            check_listing(reader, data, history_accounts[a], NULL, limits[l], expected);
            for (size_t c = 0; c < HISTORY_CURRENCIES; c++) {
                check_listing(reader, data, history_accounts[a], history_currencies[c], limits[l], expected);
            }
        }
    }
    return total;
}

/* The history's plan seeks each head's rows by (shard, sequence =, leg): a range on sequence
 * there would scan the shard's older rows for every head. */
static void check_history_plan(const test_dir *dir) {
    sqlite3 *db = NULL;
    sqlite3_stmt *s = NULL;
    /* The statement the reader prepares, not a copy of it. */
    open_query(dir, "EXPLAIN QUERY PLAN " BAL_JOURNAL_HISTORY_SQL(""), &db, &s);
    bool seeks_key = false;
    while (sqlite3_step(s) == SQLITE_ROW) {
        const char *detail = (const char *)sqlite3_column_text(s, 3);
        if (detail != NULL && strstr(detail, "SEARCH j USING PRIMARY KEY (shard=? AND sequence=?") != NULL) {
            seeks_key = true;
        }
    }
    CHECK(seeks_key);
    close_query(db, s);
}

/* Turns a current file back into schema version 2 (both indexes on the journal table, no
 * runs) or 1 (also every row in journal_by_account, no account_head_leg), as the earlier
 * versions wrote them. */
static void downgrade(const test_dir *dir, int version) {
    exec_sql(dir->path, "DROP TABLE journal_by_transaction_run; DROP TABLE journal_by_account_run; "
                        "DROP TABLE journal_runs; ALTER TABLE journal DROP COLUMN index_run; "
                        "CREATE INDEX journal_by_transaction ON journal (transaction_hash) "
                        "WHERE transaction_hash IS NOT NULL;");
    if (version == 2) {
        exec_sql(dir->path, "CREATE INDEX journal_by_account ON journal (account_id, sequence, leg) "
                            "WHERE account_head_leg = leg; PRAGMA user_version = 2;");
    } else {
        exec_sql(dir->path, "ALTER TABLE journal DROP COLUMN account_head_leg; "
                            "CREATE INDEX journal_by_account ON journal (account_id, sequence, leg); "
                            "PRAGMA user_version = 1;");
    }
}

/* Every listing of the history data, read through a fresh reader of dir. */
static void check_listings_again(const test_dir *dir, const history_data *data, const bal_journal_row **expected,
                                 size_t total) {
    bal_journal *reader = test_open(dir, true);
    CHECK(check_all_listings(reader, data, expected) == total);
    bal_journal_close(reader);
}

static void test_history(void) {
    test_dir dir;
    test_dir_create(&dir);
    bal_journal *journal = test_open(&dir, false);
    history_data data = write_history(journal, NULL, NULL);
    bal_journal *reader = test_open(&dir, true);
    const bal_journal_row **expected = calloc(data.count, sizeof *expected);
    CHECK(expected != NULL);
    check_history_plan(&dir);
    size_t total = check_all_listings(reader, &data, expected);
    /* Every row of shard 3 lies in exactly one account's listing. */
    size_t shard3 = 0;
    for (size_t i = 0; i < data.count; i++) shard3 += data.rows[i].shard == 3;
    CHECK(total == shard3 && total > HISTORY_COMMANDS); /* about 1.4 rows per command */

    /* An unknown account: nothing, no cursor. Bad queries are refused. */
    test_rows page = {0};
    uint64_t next = 1;
    bal_journal_history_query query = {.account_id = 123456};
    CHECK_OK(bal_journal_history(reader, &query, test_rows_collect, &page, &next, ERR));
    CHECK(page.count == 0 && next == BAL_JOURNAL_CURSOR_NONE);
    query.account_id = 0;
    CHECK(bal_journal_history(reader, &query, test_rows_collect, &page, &next, NULL, 0) == BAL_JOURNAL_INVALID_ARGUMENT);
    query = (bal_journal_history_query){.account_id = 7, .currency = "usdt"};
    CHECK(bal_journal_history(reader, &query, test_rows_collect, &page, &next, NULL, 0) == BAL_JOURNAL_INVALID_ARGUMENT);
    query = (bal_journal_history_query){.account_id = 7, .before = UINT64_MAX};
    CHECK(bal_journal_history(reader, &query, test_rows_collect, &page, &next, NULL, 0) == BAL_JOURNAL_INVALID_ARGUMENT);
    /* A callback that stops: ABORTED. */
    page.stop_after = 2;
    query = (bal_journal_history_query){.account_id = 7};
    CHECK(bal_journal_history(reader, &query, test_rows_collect, &page, &next, NULL, 0) == BAL_JOURNAL_ABORTED);
    CHECK(page.count == 2);
    test_rows_free(&page);

    /* Files of schema versions 2 and 1 are migrated by the writer and list the same pages. */
    bal_journal_close(reader);
    bal_journal_close(journal);
    for (int version = 2; version >= 1; version--) {
        downgrade(&dir, version);
        CHECK(open_status(&dir, true) == BAL_JOURNAL_SCHEMA);
        journal = test_open(&dir, false);
        check_indexes(&dir);
        check_listings_again(&dir, &data, expected, total);
        bal_journal_close(journal);
    }
    free(expected);
    free(data.rows);
    test_dir_remove(&dir);
}

/* A one-integer query on dir's file. */
static int64_t query_file(const test_dir *dir, const char *sql) {
    sqlite3 *db = NULL;
    sqlite3_stmt *s = NULL;
    open_query(dir, sql, &db, &s);
    CHECK(sqlite3_step(s) == SQLITE_ROW);
    int64_t value = sqlite3_column_int64(s, 0);
    close_query(db, s);
    return value;
}

typedef struct runs_probe {
    const test_dir *dir;
    bal_journal *reader;
    const bal_journal_row **expected;
    size_t batches;
    size_t checked_during_merge;
} runs_probe;

/* Every third batch: one account's listing and the ids of the newest rows, against what was
 * written so far, counting the checks made while a merge was under way. */
static void check_between_batches(void *context, const history_data *data) {
    runs_probe *probe = context;
    if (++probe->batches % 3 != 0) return;
    check_listing(probe->reader, data, history_accounts[probe->batches % HISTORY_ACCOUNTS], NULL, 7, probe->expected);
    const char *ids[200];
    size_t id_count = 0;
    for (size_t i = data->count; i-- > 0 && id_count < 200;) ids[id_count++] = data->rows[i].transaction_id;
    for (size_t i = 0; i < data->count && id_count < 200; i += 37) ids[id_count++] = data->rows[i].transaction_id;
    check_lookup_exact(probe->reader, data->rows, data->count, ids, id_count);
    probe->checked_during_merge +=
        query_file(probe->dir, "SELECT count(*) FROM journal_runs WHERE merging_into IS NOT NULL") > 0;
}

/* The same history written with runs of 120 rows merged 3 at a time, each merge moving 150
 * entries of each index per batch, so that it spans several batches: pages continue across runs, seals and merges (of two levels), and every
 * id is found in whichever run holds it, also while merges are under way. */
static void test_history_runs(void) {
    test_dir dir;
    test_dir_create(&dir);
    bal_journal *journal = test_open(&dir, false);
    bal_journal_set_runs_for_testing(journal, 120, 3, 150);
    const bal_journal_row **expected = calloc((size_t)HISTORY_COMMANDS * 4 * 2, sizeof *expected);
    CHECK(expected != NULL);
    runs_probe probe = {&dir, test_open(&dir, true), expected, 0, 0};
    history_data data = write_history(journal, check_between_batches, &probe);
    /* About 3,100 rows in 50 batches: a seal every batch or so, merges into levels 1 and 2. */
    CHECK(bal_journal_merge_count(journal) >= 5);
    CHECK(query_file(&dir, "SELECT count(*) FROM journal_runs WHERE level = 2") >= 1);
    CHECK(probe.checked_during_merge >= 3);
    /* Every entry is in a run the catalog lists. */
    CHECK(query_file(&dir, "SELECT count(*) FROM journal_by_account_run WHERE run NOT IN (SELECT run FROM journal_runs)") == 0);
    size_t total = check_all_listings(probe.reader, &data, expected);
    CHECK(total > HISTORY_COMMANDS);
    const char *ids[BAL_JOURNAL_LOOKUP_IDS_MAX];
    size_t id_count = 0;
    for (size_t i = 0; i < data.count && id_count < BAL_JOURNAL_LOOKUP_IDS_MAX; i += 2) {
        ids[id_count++] = data.rows[i].transaction_id;
    }
    check_lookup_exact(probe.reader, data.rows, data.count, ids, id_count);
    bal_journal_close(probe.reader);
    free(expected);
    free(data.rows);
    bal_journal_close(journal);
    test_dir_remove(&dir);
}

/* Replays that overlap stored rows inside one multi-row INSERT statement (43 rows): the
 * rows it stores get their index entries, the rows it finds stored keep theirs and get no
 * second -- whether they were stored in a sealed run or in the open one. */
static void test_replay_entries(void) {
    test_dir dir;
    test_dir_create(&dir);
    bal_journal *journal = test_open(&dir, false);
    bal_journal_set_runs_for_testing(journal, 50, 2, 0);
    static bal_journal_row all[140], rows[64];
    size_t total = build_deposits(all, 0, 1, 140);
    bal_journal_write_outcome outcome;
    /* Sequences 1..60: 60 rows seal the first run. */
    CHECK_OK(bal_journal_write_batch(journal, 0, all, 60, 1, &outcome, ERR));
    CHECK(outcome.rows_inserted == 60);
    /* 41..100: the first statement holds 41..83, of which 41..60 are stored in the sealed run. */
    size_t n = build_deposits(rows, 0, 41, 100);
    CHECK_OK(bal_journal_write_batch(journal, 0, rows, n, 2, &outcome, ERR));
    CHECK(outcome.rows_inserted == 40 && outcome.rows_ignored == 20);
    /* 81..140: the first statement holds 81..123, of which 81..100 are stored in the open run. */
    n = build_deposits(rows, 0, 81, 140);
    CHECK_OK(bal_journal_write_batch(journal, 0, rows, n, 3, &outcome, ERR));
    CHECK(outcome.rows_inserted == 40 && outcome.rows_ignored == 20);
    /* One entry per row in each index (every deposit row is a head of both kinds). */
    CHECK(query_file(&dir, "SELECT count(*) FROM journal_by_transaction_run") == 140);
    CHECK(query_file(&dir, "SELECT count(*) FROM journal_by_account_run") == 140);
    CHECK(query_file(&dir, "SELECT count(DISTINCT sequence) FROM journal_by_account_run") == 140);
    const char *ids[140];
    for (size_t i = 0; i < total; i++) ids[i] = all[i].transaction_id;
    check_lookup_exact(journal, all, total, ids, total);
    test_rows page = {0};
    uint64_t next = 0;
    bal_journal_history_query query = {.account_id = 100, .limit = 1000};
    CHECK_OK(bal_journal_history(journal, &query, test_rows_collect, &page, &next, ERR));
    CHECK(page.count == 140 && next == BAL_JOURNAL_CURSOR_NONE);
    for (size_t i = 0; i < page.count; i++) CHECK(page.rows[i].sequence == 140 - i);
    test_rows_free(&page);
    bal_journal_close(journal);
    test_dir_remove(&dir);
}

/* A log position's rows split over two calls (which the contract forbids, but a replay cut
 * differently must not duplicate anything): an account then has two heads in one sequence,
 * and its listing still holds each row once, in (sequence, leg) order. */
static void test_history_split_position(void) {
    test_dir dir;
    test_dir_create(&dir);
    bal_journal *journal = test_open(&dir, false);
    bal_journal_row rows[4];
    for (uint32_t leg = 0; leg < 4; leg++) {
        test_row_init(&rows[leg], 0, 9, leg, BAL_JOURNAL_TYPE_EVENT, "split-1", 77, leg % 2 ? "USDT" : "BTC");
        rows[leg].leg_available_delta = 5;
        test_row_balances(&rows[leg], 10, 15, 0, 0);
    }
    const bal_journal_row first[2] = {rows[0], rows[2]}, second[2] = {rows[1], rows[3]};
    CHECK_OK(bal_journal_write_batch(journal, 0, first, 2, 1, NULL, ERR));
    CHECK_OK(bal_journal_write_batch(journal, 0, second, 2, 2, NULL, ERR));
    test_rows page = {0};
    uint64_t next = 1;
    bal_journal_history_query query = {.account_id = 77};
    CHECK_OK(bal_journal_history(journal, &query, test_rows_collect, &page, &next, ERR));
    CHECK(page.count == 4 && next == BAL_JOURNAL_CURSOR_NONE);
    for (uint32_t i = 0; i < 4; i++) CHECK(test_row_equal(&page.rows[i], &rows[3 - i]));
    /* Paging one row at a time walks the same order. */
    query.limit = 1;
    for (uint32_t i = 0; i < 4; i++) {
        test_rows_clear(&page);
        CHECK_OK(bal_journal_history(journal, &query, test_rows_collect, &page, &next, ERR));
        CHECK(page.count == 1 && test_row_equal(&page.rows[0], &rows[3 - i]));
        CHECK((next == BAL_JOURNAL_CURSOR_NONE) == (i == 3));
        query.before = next;
    }
    test_rows_free(&page);
    bal_journal_close(journal);
    test_dir_remove(&dir);
}

/* ---------------------------------------------------------------- batched look-up */

#define LOOKUP_COMMANDS 1500

/* Checks a look-up's answer: ascending ids, each wanted transaction once with all its rows
 * (first_row[s - 1] .. first_row[s] of rows), the twin in shard 6. Returns the count of
 * shard-5 transactions. */
static size_t check_lookup_rows(const test_rows *found, const bal_journal_row *rows, const size_t *first_row,
                                bool *wanted, const bal_journal_row *twin) {
    size_t transactions = 0;
    for (size_t i = 0; i < found->count;) {
        const bal_journal_row *row = &found->rows[i];
        CHECK(i == 0 || strcmp(found->rows[i - 1].transaction_id, row->transaction_id) <= 0);
        if (row->shard == 6) {
            CHECK(strcmp(row->transaction_id, "h5-1") == 0 && test_row_equal(row, twin));
            i++;
            continue;
        }
        CHECK(row->leg == 0 && wanted[row->sequence]);
        wanted[row->sequence] = false; /* once only */
        size_t legs = first_row[row->sequence] - first_row[row->sequence - 1];
        for (size_t k = 0; k < legs; k++) {
            CHECK(test_row_equal(&found->rows[i + k], &rows[first_row[row->sequence - 1] + k]));
        }
        i += legs;
        transactions++;
    }
    /* "h5-1" sorts first: shard 5's transaction, then its twin in shard 6. */
    size_t legs_of_first = first_row[1] - first_row[0];
    CHECK(strcmp(found->rows[0].transaction_id, "h5-1") == 0 && found->rows[legs_of_first].shard == 6);
    return transactions;
}

static void test_lookup(void) {
    test_dir dir;
    test_dir_create(&dir);
    bal_journal *journal = test_open(&dir, false);
    bal_journal_row *rows = calloc((size_t)LOOKUP_COMMANDS * 4 + 2, sizeof *rows);
    size_t *first_row = calloc(LOOKUP_COMMANDS + 1, sizeof *first_row);
    CHECK(rows != NULL && first_row != NULL);
    uint64_t seed = 99;
    size_t count = 0;
    for (uint64_t sequence = 1; sequence <= LOOKUP_COMMANDS; sequence++) {
        first_row[sequence - 1] = count;
        count += build_random_command(&rows[count], 5, sequence, &seed);
    }
    first_row[LOOKUP_COMMANDS] = count;
    CHECK_OK(bal_journal_write_batch(journal, 5, rows, count, 1, NULL, ERR));
    /* The same id in another shard (e.g. both steps of a cross-shard saga): both come back. */
    bal_journal_row twin;
    test_row_init(&twin, 6, 1, 0, BAL_JOURNAL_TYPE_DEPOSIT, "h5-1", 77, "USDT");
    test_row_balances(&twin, 0, 1, 0, 0);
    CHECK_OK(bal_journal_write_batch(journal, 6, &twin, 1, 1, NULL, ERR));

    /* 1000 known ids, 300 unknown, 60 repeats:
     * 1360 ids, three chunks. */
    enum { KNOWN = 1000, UNKNOWN = 300, REPEATS = 60, TOTAL = KNOWN + UNKNOWN + REPEATS };
    static char names[TOTAL][24];
    const char *ids[TOTAL];
    bool wanted[LOOKUP_COMMANDS + 1] = {false};
    for (size_t i = 0; i < KNOWN; i++) {
        uint64_t sequence = (i * 7) % LOOKUP_COMMANDS + 1; /* 7 is prime to 1500: distinct */
        CHECK(!wanted[sequence]);
        wanted[sequence] = true;
        snprintf(names[i], sizeof names[i], "h5-%llu", (unsigned long long)sequence);
    }
    for (size_t i = 0; i < UNKNOWN; i++) snprintf(names[KNOWN + i], sizeof names[0], "h5-%zu", 100000 + i);
    for (size_t i = 0; i < REPEATS; i++) memcpy(names[KNOWN + UNKNOWN + i], names[i * 7], sizeof names[0]);
    for (size_t i = 0; i < TOTAL; i++) ids[i] = names[(i * 733) % TOTAL]; /* a permutation: 733 is prime to 1360 */

    test_rows found = {0};
    CHECK_OK(bal_journal_find_transactions(journal, ids, TOTAL, test_rows_collect, &found, ERR));
    CHECK(check_lookup_rows(&found, rows, first_row, wanted, &twin) == KNOWN);

    /* Empty, too many, malformed ids, a callback that stops. */
    test_rows_clear(&found);
    CHECK_OK(bal_journal_find_transactions(journal, NULL, 0, test_rows_collect, &found, ERR));
    CHECK(found.count == 0);
    CHECK(bal_journal_find_transactions(journal, ids, BAL_JOURNAL_LOOKUP_IDS_MAX + 1, test_rows_collect, &found,
                                        NULL, 0) == BAL_JOURNAL_INVALID_ARGUMENT);
    const char *bad[] = {"ok-1", "not ok"};
    CHECK(bal_journal_find_transactions(journal, bad, 2, test_rows_collect, &found, NULL, 0) ==
          BAL_JOURNAL_INVALID_ARGUMENT);
    found.stop_after = 3;
    CHECK(bal_journal_find_transactions(journal, ids, TOTAL, test_rows_collect, &found, NULL, 0) ==
          BAL_JOURNAL_ABORTED);
    CHECK(found.count == 3);
    /* The handle is usable after an abort. */
    test_rows_clear(&found);
    found.stop_after = 0;
    CHECK_OK(bal_journal_find_transactions(journal, ids, 10, test_rows_collect, &found, ERR));
    test_rows_free(&found);
    free(first_row);
    free(rows);
    bal_journal_close(journal);
    test_dir_remove(&dir);
}

/* ---------------------------------------------------------------- schema */

static void exec_sql(const char *path, const char *sql) {
    sqlite3 *db = NULL;
    CHECK(sqlite3_open(path, &db) == SQLITE_OK);
    CHECK(sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(db);
}

static bal_journal_status open_status(const test_dir *dir, bool read_only) {
    bal_journal_options options = bal_journal_options_default();
    options.read_only = read_only;
    bal_journal *journal = NULL;
    char errstr[256] = "";
    bal_journal_status status = bal_journal_open(dir->path, &options, &journal, errstr, sizeof errstr);
    CHECK((status == BAL_JOURNAL_OK) == (journal != NULL));
    CHECK(status == BAL_JOURNAL_OK || errstr[0] != '\0');
    bal_journal_close(journal);
    return status;
}

/* The file has no index on the journal table itself: the id and history indexes are the
 * two run tables, keyed as bal_journal.h documents (and no trigger: the writer fills them). */
static void check_indexes(const test_dir *dir) {
    sqlite3 *db = NULL;
    sqlite3_stmt *s = NULL;
    open_query(dir,
               "SELECT m.type, m.name, (SELECT group_concat(name, ',') FROM (SELECT name FROM pragma_table_info(m.name) "
               "WHERE pk > 0 ORDER BY pk)) FROM sqlite_schema AS m "
               "WHERE m.type IN ('index', 'trigger') OR m.name LIKE 'journal_by_%' ORDER BY m.type, m.name",
               &db, &s);
    static const char *const expected[][3] = {
        {"table", "journal_by_account_run", "run,account_id,sequence,leg,shard"},
        {"table", "journal_by_transaction_run", "run,transaction_hash,shard,sequence"},
    };
    for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++) {
        CHECK(sqlite3_step(s) == SQLITE_ROW);
        CHECK(strcmp((const char *)sqlite3_column_text(s, 0), expected[i][0]) == 0);
        if (strcmp((const char *)sqlite3_column_text(s, 1), expected[i][1]) != 0) {
            fprintf(stderr, "schema object %s, expected %s\n", sqlite3_column_text(s, 1), expected[i][1]);
            CHECK(false);
        }
        if (expected[i][2] != NULL) CHECK(strcmp((const char *)sqlite3_column_text(s, 2), expected[i][2]) == 0);
    }
    CHECK(sqlite3_step(s) == SQLITE_DONE);
    close_query(db, s);
}

static void test_schema(void) {
    test_dir dir;
    test_dir_create(&dir);
    /* A reader needs an existing file. */
    CHECK(open_status(&dir, true) == BAL_JOURNAL_STORAGE);
    /* A foreign SQLite file is refused, not altered. */
    exec_sql(dir.path, "CREATE TABLE other (x INTEGER)");
    CHECK(open_status(&dir, false) == BAL_JOURNAL_SCHEMA);
    CHECK(open_status(&dir, true) == BAL_JOURNAL_SCHEMA);
    test_dir_remove(&dir);

    test_dir_create(&dir);
    CHECK(open_status(&dir, false) == BAL_JOURNAL_OK);
    CHECK(open_status(&dir, true) == BAL_JOURNAL_OK);
    CHECK(open_status(&dir, false) == BAL_JOURNAL_OK); /* reopening migrates nothing */
    check_indexes(&dir);
    /* A file from a newer version is refused by both kinds of handle. */
    exec_sql(dir.path, "PRAGMA user_version = 99");
    CHECK(open_status(&dir, false) == BAL_JOURNAL_SCHEMA);
    CHECK(open_status(&dir, true) == BAL_JOURNAL_SCHEMA);
    /* A file that is not SQLite at all. */
    exec_sql(dir.path, "PRAGMA user_version = 1");
    FILE *file = fopen(dir.path, "r+b");
    CHECK(file != NULL);
    CHECK(fwrite("garbage, not a database header", 1, 30, file) == 30);
    fclose(file);
    bal_journal_status status = open_status(&dir, false);
    CHECK(status == BAL_JOURNAL_CORRUPT);
    /* Options out of range. */
    bal_journal_options options = bal_journal_options_default();
    options.busy_timeout_ms = BAL_JOURNAL_BUSY_TIMEOUT_MS_MAX + 1;
    bal_journal *journal = NULL;
    CHECK(bal_journal_open(dir.path, &options, &journal, NULL, 0) == BAL_JOURNAL_INVALID_ARGUMENT);
    CHECK(journal == NULL);
    test_dir_remove(&dir);
}

/* ---------------------------------------------------------------- look-up when ids share a hash */

/* Hashes that make distinct ids collide: every id, or ids of the same length modulo 3. */
static uint64_t hash_constant(const char *id, size_t length) {
    (void)id;
    (void)length;
    return 42;
}

static uint64_t hash_length(const char *id, size_t length) {
    (void)id;
    return UINT64_MAX - length % 3; /* stored as negative integers */
}

static int compare_texts(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Look-up order: ids ascending, then (shard, sequence, leg). */
static int compare_rows_lookup(const void *a, const void *b) {
    const bal_journal_row *x = *(const bal_journal_row *const *)a, *y = *(const bal_journal_row *const *)b;
    int order = strcmp(x->transaction_id, y->transaction_id);
    if (order != 0) return order;
    if (x->shard != y->shard) return x->shard < y->shard ? -1 : 1;
    if (x->sequence != y->sequence) return x->sequence < y->sequence ? -1 : 1;
    return (x->leg > y->leg) - (x->leg < y->leg);
}

/* Looks the ids up and checks the answer against every stored row: exactly the rows of the
 * wanted ids, each once, in the documented order. */
static void check_lookup_exact(bal_journal *journal, const bal_journal_row *rows, size_t row_count,
                               const char *const *ids, size_t id_count) {
    const char **wanted = calloc(id_count + 1, sizeof *wanted);
    const bal_journal_row **expected = calloc(row_count + 1, sizeof *expected);
    CHECK(wanted != NULL && expected != NULL);
    memcpy(wanted, ids, id_count * sizeof *wanted);
    qsort(wanted, id_count, sizeof *wanted, compare_texts);
    size_t expected_count = 0;
    for (size_t i = 0; i < row_count; i++) {
        const char *id = rows[i].transaction_id;
        if (bsearch(&id, wanted, id_count, sizeof *wanted, compare_texts) != NULL) expected[expected_count++] = &rows[i];
    }
    qsort(expected, expected_count, sizeof *expected, compare_rows_lookup);
    test_rows found = {0};
    CHECK_OK(bal_journal_find_transactions(journal, ids, id_count, test_rows_collect, &found, ERR));
    if (found.count != expected_count) fprintf(stderr, "found %zu rows, expected %zu\n", found.count, expected_count);
    CHECK(found.count == expected_count);
    for (size_t i = 0; i < expected_count; i++) {
        if (!test_row_equal(&found.rows[i], expected[i])) {
            test_row_print("found", &found.rows[i]);
            test_row_print("expected", expected[i]);
            CHECK(false);
        }
    }
    test_rows_free(&found);
    free(expected);
    free(wanted);
}

#define COLLISION_COMMANDS 700
#define COLLISION_SPLITS 20

/* Shards 5 and 6 with random commands, plus EVENTs whose legs 0-1 are stored by shard 5 and
 * leg 2 by shard 6 under other sequences, all written through handles using hash. */
static size_t write_collision_data(const test_dir *dir, bal_journal_hash_fn hash, bal_journal_row *rows) {
    bal_journal *writer = test_open(dir, false);
    if (hash != NULL) bal_journal_set_hash_for_testing(writer, hash);
    uint64_t seed = 31;
    size_t count = 0;
    for (uint32_t shard = 5; shard <= 6; shard++) {
        size_t first = count;
        for (uint64_t sequence = 1; sequence <= COLLISION_COMMANDS; sequence++) {
            count += build_random_command(&rows[count], shard, sequence, &seed);
        }
        for (uint64_t k = 1; k <= COLLISION_SPLITS; k++) {
            char id[32];
            snprintf(id, sizeof id, "split-%llu", (unsigned long long)k);
            uint32_t first_leg = shard == 5 ? 0 : 2, last_leg = shard == 5 ? 1 : 2;
            for (uint32_t leg = first_leg; leg <= last_leg; leg++) {
                bal_journal_row *row = &rows[count++];
                test_row_init(row, shard, COLLISION_COMMANDS + (shard == 5 ? k : 2 * k), leg, BAL_JOURNAL_TYPE_EVENT, id,
                              10 + leg, "USDT");
                row->leg_available_delta = 1;
                test_row_balances(row, 4, 5, 0, 0);
            }
        }
        CHECK_OK(bal_journal_write_batch(writer, shard, &rows[first], count - first, 1, NULL, ERR));
    }
    bal_journal_close(writer);
    return count;
}

/* The exact filter itself: a binary search in bytes order over (id, length). */
static void check_id_filter(void) {
    static const char *const sorted[] = {"a", "ab", "b", "h5-1", "h5-10"};
    const size_t n = sizeof sorted / sizeof sorted[0];
    CHECK(bal_journal_lookup_id_wanted(sorted, n, "a", 1) && bal_journal_lookup_id_wanted(sorted, n, "ab", 2));
    CHECK(bal_journal_lookup_id_wanted(sorted, n, "abc", 2)); /* only length bytes count */
    CHECK(bal_journal_lookup_id_wanted(sorted, n, "h5-10", 5) && bal_journal_lookup_id_wanted(sorted, n, "b", 1));
    CHECK(!bal_journal_lookup_id_wanted(sorted, n, "aa", 2) && !bal_journal_lookup_id_wanted(sorted, n, "abc", 3));
    CHECK(!bal_journal_lookup_id_wanted(sorted, n, "", 0) && !bal_journal_lookup_id_wanted(sorted, n, "h5-100", 6));
    CHECK(!bal_journal_lookup_id_wanted(sorted, n, "h5-", 3) && !bal_journal_lookup_id_wanted(sorted, n, "c", 1));
    CHECK(!bal_journal_lookup_id_wanted(sorted, 0, "a", 1));
}

static void test_lookup_collisions(void) {
    check_id_filter();
    static const bal_journal_hash_fn hashes[] = {hash_constant, hash_length};
    bal_journal_row *rows = calloc((size_t)COLLISION_COMMANDS * 4 * 2 + COLLISION_SPLITS * 3, sizeof *rows);
    CHECK(rows != NULL);
    /* 1,300 ids, 1,100 of them distinct (three chunks): known ids of both shards, the split
     * EVENTs, unknown ids that share a hash with known ones, repeats; in a scrambled order. */
    enum { TOTAL = 1300 };
    static char names[TOTAL][24];
    const char *ids[TOTAL];
    for (size_t i = 0; i < TOTAL; i++) {
        /* 3 is prime to 700: i = 0 .. 699 give distinct ids, h5 with odd sequences and h6
         * with even ones; 700 .. 799 repeat some. */
        if (i < 800) snprintf(names[i], sizeof names[i], "h%d-%zu", 5 + (int)(i % 2), 1 + (i * 3) % COLLISION_COMMANDS);
        else if (i < 800 + COLLISION_SPLITS) snprintf(names[i], sizeof names[i], "split-%zu", i - 799);
        else if (i < 1200) snprintf(names[i], sizeof names[i], "h5-%zu", 100000 + i);
        else memcpy(names[i], names[i - 1200], sizeof names[i]);
    }
    for (size_t i = 0; i < TOTAL; i++) ids[i] = names[(i * 373) % TOTAL]; /* 373 is prime to 1300 */
    const char *unique[TOTAL];
    memcpy(unique, ids, sizeof unique);
    qsort(unique, TOTAL, sizeof unique[0], compare_texts);
    size_t unique_count = 1;
    for (size_t i = 1; i < TOTAL; i++) unique_count += strcmp(unique[i - 1], unique[i]) != 0;
    CHECK(unique_count > 2 * BAL_JOURNAL_LOOKUP_CHUNK_IDS); /* three chunks */

    for (size_t h = 0; h < sizeof hashes / sizeof hashes[0]; h++) {
        test_dir dir;
        test_dir_create(&dir);
        size_t count = write_collision_data(&dir, hashes[h], rows);
        bal_journal *reader = test_open(&dir, true);
        bal_journal_set_hash_for_testing(reader, hashes[h]);
        check_lookup_exact(reader, rows, count, ids, TOTAL);
        check_lookup_exact(reader, rows, count, ids, 1);
        check_lookup_exact(reader, rows, count, ids + 7, 501); /* a chunk and one id */
        const char *split[] = {"split-3"};
        check_lookup_exact(reader, rows, count, split, 1);
        /* A split EVENT: legs 0 and 1 from shard 5, leg 2 from shard 6. */
        test_rows found = {0};
        CHECK_OK(bal_journal_find_transactions(reader, split, 1, test_rows_collect, &found, ERR));
        CHECK(found.count == 3 && found.rows[0].shard == 5 && found.rows[1].leg == 1 && found.rows[2].shard == 6);
        test_rows_free(&found);
        bal_journal_close(reader);
        test_dir_remove(&dir);
    }

    /* With the real hash, a collision forced into the file: the rows of "h6-3" (an id never
     * asked for) are given the hash of "h5-1". Looking up "h5-1" finds both by hash and
     * keeps only its own rows. */
    test_dir dir;
    test_dir_create(&dir);
    size_t count = write_collision_data(&dir, NULL, rows);
    exec_sql(dir.path, "UPDATE journal SET transaction_hash = (SELECT transaction_hash FROM journal "
                       "WHERE transaction_id = 'h5-1' LIMIT 1) WHERE transaction_id = 'h6-3'");
    CHECK(count_rows_where(&dir, "transaction_id = 'h6-3'") > 0);
    bal_journal *reader = test_open(&dir, true);
    const char *one[] = {"h5-1"};
    check_lookup_exact(reader, rows, count, one, 1);
    check_lookup_exact(reader, rows, count, ids, TOTAL);
    bal_journal_close(reader);
    test_dir_remove(&dir);
    free(rows);
}

/* ---------------------------------------------------------------- the writer's insert order */

#define ORDER_COMMANDS 400
#define ORDER_ACCOUNTS 5
static const uint64_t order_accounts[ORDER_ACCOUNTS] = {U64_TOP, 1000, U63, 2, 1};

/* Commands whose rows interleave accounts, in descending, ascending and mixed account order
 * within a command and from one command to the next, and with accounts at and above 2^63
 * (stored as negative integers, so they come first in the index). */
static size_t build_interleaved(bal_journal_row *rows, uint32_t shard, uint64_t first_sequence) {
    size_t n = 0;
    for (uint64_t c = 0; c < ORDER_COMMANDS; c++) {
        uint64_t sequence = first_sequence + c;
        char id[32];
        snprintf(id, sizeof id, "ord-%llu", (unsigned long long)sequence);
        uint64_t a = order_accounts[sequence % ORDER_ACCOUNTS], b = order_accounts[(sequence + 2) % ORDER_ACCOUNTS];
        const char *currency = sequence % 3 == 0 ? "BTC" : "USDT";
        switch (sequence % 3) {
        case 0:
            test_row_init(&rows[n], shard, sequence, 0, BAL_JOURNAL_TYPE_DEPOSIT, id, a, currency);
            test_row_balances(&rows[n++], (bal_amount)sequence, (bal_amount)sequence + 1, 0, 0);
            break;
        case 1:
            for (uint32_t leg = 0; leg < 2; leg++) {
                test_row_init(&rows[n], shard, sequence, leg, BAL_JOURNAL_TYPE_TRANSFER, id, leg == 0 ? a : b, currency);
                rows[n].to_account_id = b;
                test_row_balances(&rows[n++], leg == 0 ? 9 : 0, leg == 0 ? 8 : 1, 0, 0);
            }
            break;
        default:
            for (uint32_t leg = 0; leg < 4; leg++) {
                uint64_t account = order_accounts[(sequence + 4 * leg) % ORDER_ACCOUNTS];
                test_row_init(&rows[n], shard, sequence, leg, BAL_JOURNAL_TYPE_EVENT, id, account,
                              leg % 2 ? "BTC" : "USDT");
                rows[n].leg_frozen_delta = (bal_amount)leg + 1;
                test_row_balances(&rows[n++], 0, 0, 0, (bal_amount)leg + 1);
            }
        }
    }
    return n;
}

/* bal_journal_order_batch: (account as stored, sequence, leg); repeated keys dropped, the
 * first occurrence kept. */
static void check_order_batch(void) {
    bal_journal_order_key keys[8], scratch[8];
    bal_journal_row rows[6];
    static const struct { uint64_t account, sequence; uint32_t leg; } ascending[6] = {
        {5, 1, 0}, {U64_TOP, 1, 1}, {3, 2, 0}, {U63, 3, 0}, {5, 3, 1}, {1, 4, 0},
    };
    for (size_t i = 0; i < 6; i++) {
        test_row_init(&rows[i], 0, ascending[i].sequence, ascending[i].leg, BAL_JOURNAL_TYPE_EVENT, "x",
                      ascending[i].account, "USDT");
    }
    CHECK(bal_journal_order_batch(rows, 6, keys, scratch) == 6);
    static const uint32_t expected[6] = {3, 1, 5, 2, 0, 4}; /* 2^63, 2^64-1, 1, 3, 5@1, 5@3 */
    static const bool heads[6] = {true, false, true, true, true, false}; /* lowest leg of its sequence */
    for (size_t i = 0; i < 6; i++) CHECK(keys[i].index == expected[i] && keys[i].head == heads[i]);

    static const struct { uint64_t account, sequence; uint32_t leg; } unordered[4] = {
        {7, 2, 0}, {9, 1, 0}, {8, 2, 0}, {7, 1, 1}, /* the third repeats the first one's key */
    };
    for (size_t i = 0; i < 4; i++) {
        test_row_init(&rows[i], 0, unordered[i].sequence, unordered[i].leg, BAL_JOURNAL_TYPE_EVENT, "x",
                      unordered[i].account, "USDT");
    }
    CHECK(bal_journal_order_batch(rows, 4, keys, scratch) == 3);
    CHECK(keys[0].index == 3 && keys[1].index == 0 && keys[2].index == 1);
    CHECK(!keys[0].head && keys[1].head && keys[2].head); /* sequence 1's head is leg 0 (row 1) */
    CHECK(keys[0].account_head_leg == 1 && keys[1].account_head_leg == 0 && keys[2].account_head_leg == 0);
    CHECK(bal_journal_order_batch(rows, 0, keys, scratch) == 0);

    /* Each account's rows of a sequence name the lowest of their legs as their head. */
    static const struct { uint64_t account; uint32_t leg; } legs[5] = {{6, 1}, {2, 0}, {6, 3}, {2, 2}, {6, 4}};
    for (size_t i = 0; i < 5; i++) {
        test_row_init(&rows[i], 0, 5, legs[i].leg, BAL_JOURNAL_TYPE_EVENT, "x", legs[i].account, "USDT");
    }
    CHECK(bal_journal_order_batch(rows, 5, keys, scratch) == 5);
    static const uint32_t head_legs[5] = {0, 0, 1, 1, 1}; /* account 2: legs 0, 2; account 6: 1, 3, 4 */
    for (size_t i = 0; i < 5; i++) CHECK(keys[i].account_head_leg == head_legs[i]);
}

static void test_sorted_insert(void) {
    check_order_batch();
    test_dir dir;
    test_dir_create(&dir);
    bal_journal *journal = test_open(&dir, false);
    history_data data = {calloc((size_t)ORDER_COMMANDS * 4 + 8, sizeof(bal_journal_row)), 0, 0};
    CHECK(data.rows != NULL);
    data.count = build_interleaved(data.rows, 0, 1);
    bal_journal_write_outcome outcome;
    CHECK_OK(bal_journal_write_batch(journal, 0, data.rows, data.count, 1, &outcome, ERR));
    CHECK(outcome.rows_inserted == data.count && outcome.rows_ignored == 0);

    /* History of every account, all currencies and each, in pages of several sizes. */
    bal_journal *reader = test_open(&dir, true);
    const bal_journal_row **expected = calloc(data.count, sizeof *expected);
    CHECK(expected != NULL);
    static const uint32_t limits[] = {1, 3, 7, 0};
    static const char *const currencies[] = {NULL, "USDT", "BTC", "ETH"};
    size_t total = 0;
    for (size_t a = 0; a < ORDER_ACCOUNTS; a++) {
        total += expected_history(&data, order_accounts[a], NULL, expected);
        for (size_t l = 0; l < sizeof limits / sizeof limits[0]; l++) {
            for (size_t c = 0; c < sizeof currencies / sizeof currencies[0]; c++) {
                check_listing(reader, &data, order_accounts[a], currencies[c], limits[l], expected);
            }
        }
    }
    CHECK(total == data.count);

    /* Every transaction by id, alone and all together. */
    const char **ids = calloc(ORDER_COMMANDS, sizeof *ids);
    CHECK(ids != NULL);
    size_t id_count = 0;
    for (size_t i = 0; i < data.count; i++) {
        if (data.rows[i].leg == 0) ids[id_count++] = data.rows[i].transaction_id;
    }
    CHECK(id_count == ORDER_COMMANDS);
    for (size_t i = 0; i < id_count; i++) check_lookup_exact(reader, data.rows, data.count, &ids[i], 1);
    check_lookup_exact(reader, data.rows, data.count, ids, id_count);

    /* A batch out of log order that repeats a key within itself and one already stored: the
     * first occurrence is the one stored, the others count as ignored. */
    bal_journal_row extra[4];
    test_row_init(&extra[0], 0, 1000, 0, BAL_JOURNAL_TYPE_DEPOSIT, "first-1000", 1, "USDT");
    test_row_balances(&extra[0], 0, 1, 0, 0);
    test_row_init(&extra[1], 0, 999, 0, BAL_JOURNAL_TYPE_DEPOSIT, "ok-999", 2, "USDT");
    test_row_balances(&extra[1], 0, 1, 0, 0);
    test_row_init(&extra[2], 0, 1000, 0, BAL_JOURNAL_TYPE_DEPOSIT, "late-1000", U64_TOP, "USDT");
    test_row_balances(&extra[2], 0, 1, 0, 0);
    test_row_init(&extra[3], 0, 1, 0, BAL_JOURNAL_TYPE_DEPOSIT, "late-1", U63, "USDT");
    test_row_balances(&extra[3], 0, 1, 0, 0);
    CHECK_OK(bal_journal_write_batch(journal, 0, extra, 4, 2, &outcome, ERR));
    CHECK(!outcome.skipped && outcome.rows_inserted == 2 && outcome.rows_ignored == 2);
    const char *check_ids[] = {"first-1000", "ok-999", "late-1000", "late-1"};
    test_rows found = {0};
    CHECK_OK(bal_journal_find_transactions(reader, check_ids, 4, test_rows_collect, &found, ERR));
    CHECK(found.count == 2 && test_row_equal(&found.rows[0], &extra[0]) && test_row_equal(&found.rows[1], &extra[1]));
    CHECK(count_rows(&dir) == (int64_t)data.count + 2);

    /* Legs of one sequence written by two calls (which bal_journal.h forbids): each call
     * makes its first row a head, and a look-up still returns every row once. */
    bal_journal_row split[3];
    for (uint32_t leg = 0; leg < 3; leg++) {
        test_row_init(&split[leg], 0, 2000, leg, BAL_JOURNAL_TYPE_EVENT, "split-calls", 2 + leg, "USDT");
        split[leg].leg_available_delta = 1;
        test_row_balances(&split[leg], 0, 1, 0, 0);
    }
    CHECK_OK(bal_journal_write_batch(journal, 0, split, 1, 3, NULL, ERR));
    CHECK_OK(bal_journal_write_batch(journal, 0, split + 1, 2, 4, NULL, ERR));
    CHECK(count_rows_where(&dir, "transaction_id = 'split-calls' AND transaction_hash IS NOT NULL") == 2);
    const char *split_id = "split-calls";
    test_rows_clear(&found);
    CHECK_OK(bal_journal_find_transactions(reader, &split_id, 1, test_rows_collect, &found, ERR));
    CHECK(found.count == 3);
    for (uint32_t leg = 0; leg < 3; leg++) CHECK(test_row_equal(&found.rows[leg], &split[leg]));
    test_rows_free(&found);
    free(ids);
    free(expected);
    free(data.rows);
    bal_journal_close(reader);
    bal_journal_close(journal);
    test_dir_remove(&dir);
}

/* ---------------------------------------------------------------- readers beside the writer */

#define CONCURRENT_BATCHES 300
#define CONCURRENT_EVENTS_PER_BATCH 20
#define CONCURRENT_LEGS 4

typedef struct concurrent_state {
    const test_dir *dir;
    volatile int writer_done; /* set once by the writer; read by the readers */
    uint64_t lookups;
} concurrent_state;

static void build_event_batch(bal_journal_row *rows, uint64_t lsn) {
    for (uint64_t e = 0; e < CONCURRENT_EVENTS_PER_BATCH; e++) {
        uint64_t sequence = (lsn - 1) * CONCURRENT_EVENTS_PER_BATCH + e + 1;
        char id[32];
        snprintf(id, sizeof id, "ev-%llu", (unsigned long long)sequence);
        for (uint32_t leg = 0; leg < CONCURRENT_LEGS; leg++) {
            bal_journal_row *row = &rows[e * CONCURRENT_LEGS + leg];
            test_row_init(row, 1, sequence, leg, BAL_JOURNAL_TYPE_EVENT, id, 1 + leg, "USDT");
            row->leg_available_delta = 5;
            test_row_balances(row, 10, 15, 0, 0);
        }
    }
}

static void *concurrent_reader(void *argument) {
    concurrent_state *state = argument;
    bal_journal *reader = test_open(state->dir, true);
    test_rows found = {0};
    while (!__atomic_load_n(&state->writer_done, __ATOMIC_ACQUIRE)) {
        uint64_t position = 0;
        CHECK_OK(bal_journal_position(reader, 1, &position, ERR));
        if (position == 0) continue;
        /* Everything up to the position read is visible, and never half a transaction. */
        char names[CONCURRENT_EVENTS_PER_BATCH][32];
        const char *ids[CONCURRENT_EVENTS_PER_BATCH];
        for (uint64_t e = 0; e < CONCURRENT_EVENTS_PER_BATCH; e++) {
            snprintf(names[e], sizeof names[e], "ev-%llu",
                     (unsigned long long)((position - 1) * CONCURRENT_EVENTS_PER_BATCH + e + 1));
            ids[e] = names[e];
        }
        test_rows_clear(&found);
        CHECK_OK(bal_journal_find_transactions(reader, ids, CONCURRENT_EVENTS_PER_BATCH, test_rows_collect, &found, ERR));
        CHECK(found.count == CONCURRENT_EVENTS_PER_BATCH * CONCURRENT_LEGS);
        bal_journal_history_query query = {.account_id = 2, .limit = 50};
        uint64_t next = 0;
        test_rows_clear(&found);
        CHECK_OK(bal_journal_history(reader, &query, test_rows_collect, &found, &next, ERR));
        CHECK(found.count == 50 || next == BAL_JOURNAL_CURSOR_NONE);
        state->lookups++;
    }
    test_rows_free(&found);
    bal_journal_close(reader);
    return NULL;
}

static void test_concurrent_readers(void) {
    test_dir dir;
    test_dir_create(&dir);
    bal_journal *journal = test_open(&dir, false);
    concurrent_state states[2] = {{.dir = &dir}, {.dir = &dir}};
    pthread_t threads[2];
    for (int i = 0; i < 2; i++) CHECK(pthread_create(&threads[i], NULL, concurrent_reader, &states[i]) == 0);
    static bal_journal_row rows[CONCURRENT_EVENTS_PER_BATCH * CONCURRENT_LEGS];
    for (uint64_t lsn = 1; lsn <= CONCURRENT_BATCHES; lsn++) {
        build_event_batch(rows, lsn);
        CHECK_OK(bal_journal_write_batch(journal, 1, rows, CONCURRENT_EVENTS_PER_BATCH * CONCURRENT_LEGS, lsn,
                                         NULL, ERR));
        if (lsn % 50 == 0) CHECK_OK(bal_journal_sync(journal, ERR)); /* never waits for readers */
    }
    for (int i = 0; i < 2; i++) __atomic_store_n(&states[i].writer_done, 1, __ATOMIC_RELEASE);
    for (int i = 0; i < 2; i++) CHECK(pthread_join(threads[i], NULL) == 0);
    fprintf(stderr, "concurrent readers: %llu + %llu look-ups during %d batches\n",
            (unsigned long long)states[0].lookups, (unsigned long long)states[1].lookups, CONCURRENT_BATCHES);
    CHECK(count_rows(&dir) == (int64_t)CONCURRENT_BATCHES * CONCURRENT_EVENTS_PER_BATCH * CONCURRENT_LEGS);
    bal_journal_close(journal);
    test_dir_remove(&dir);
}

/* ---------------------------------------------------------------- damaged rows */

/* A row changed behind the store's back is reported, not returned. */
static void test_corrupt(void) {
    static const char *const damage[] = {
        "UPDATE journal SET amount = '1e5' WHERE sequence = 1",              /* not a decimal */
        "UPDATE journal SET available_after = '2' WHERE sequence = 1",        /* delta no longer matches */
        "UPDATE journal SET type = 'EVENT' WHERE sequence = 1",              /* EVENT with an amount */
        "UPDATE journal SET to_account_id = 5 WHERE sequence = 1",           /* target outside TRANSFER */
        "UPDATE journal SET currency = 'usdt' WHERE sequence = 1",
        "UPDATE journal SET memo = substr(hex(zeroblob(200)), 1, 257) WHERE sequence = 1", /* 257 bytes */
    };
    for (size_t i = 0; i < sizeof damage / sizeof damage[0]; i++) {
        test_dir dir;
        test_dir_create(&dir);
        bal_journal *journal = test_open(&dir, false);
        bal_journal_row row;
        test_row_init(&row, 0, 1, 0, BAL_JOURNAL_TYPE_DEPOSIT, "dep-1", 3, "USDT");
        test_row_balances(&row, 0, 1, 0, 0);
        CHECK_OK(bal_journal_write_batch(journal, 0, &row, 1, 1, NULL, ERR));
        exec_sql(dir.path, damage[i]);
        test_rows found = {0};
        const char *id = "dep-1";
        char errstr[256] = "";
        bal_journal_status status = bal_journal_find_transactions(journal, &id, 1, test_rows_collect, &found, errstr,
                                                                  sizeof errstr);
        if (status != BAL_JOURNAL_CORRUPT) fprintf(stderr, "damage %zu: %s\n", i, bal_journal_status_name(status));
        CHECK(status == BAL_JOURNAL_CORRUPT && found.count == 0 && errstr[0] != '\0');
        uint64_t next = 0;
        bal_journal_history_query query = {.account_id = 3};
        CHECK(bal_journal_history(journal, &query, test_rows_collect, &found, &next, NULL, 0) == BAL_JOURNAL_CORRUPT);
        test_rows_free(&found);
        bal_journal_close(journal);
        test_dir_remove(&dir);
    }
    /* A stored hash that is not the id's: the row reads back as damaged, by its id (the
     * index still leads to it) and in the history. */
    test_dir dir;
    test_dir_create(&dir);
    bal_journal *journal = test_open(&dir, false);
    bal_journal_row row;
    test_row_init(&row, 0, 1, 0, BAL_JOURNAL_TYPE_DEPOSIT, "dep-1", 3, "USDT");
    test_row_balances(&row, 0, 1, 0, 0);
    CHECK_OK(bal_journal_write_batch(journal, 0, &row, 1, 1, NULL, ERR));
    exec_sql(dir.path, "UPDATE journal SET transaction_hash = transaction_hash + 1 WHERE sequence = 1");
    test_rows found = {0};
    const char *id = "dep-1";
    CHECK(bal_journal_find_transactions(journal, &id, 1, test_rows_collect, &found, NULL, 0) == BAL_JOURNAL_CORRUPT);
    CHECK(found.count == 0);
    uint64_t next = 0;
    bal_journal_history_query query = {.account_id = 3};
    CHECK(bal_journal_history(journal, &query, test_rows_collect, &found, &next, NULL, 0) == BAL_JOURNAL_CORRUPT);
    /* An id index entry whose hash is not the id's: the row is unknown to the look-up. */
    exec_sql(dir.path, "UPDATE journal SET transaction_hash = transaction_hash - 1 WHERE sequence = 1; "
                       "UPDATE journal_by_transaction_run SET transaction_hash = transaction_hash + 1");
    CHECK_OK(bal_journal_find_transactions(journal, &id, 1, test_rows_collect, &found, ERR));
    CHECK(found.count == 0);
    test_rows_free(&found);
    bal_journal_close(journal);
    test_dir_remove(&dir);
}

/* ---------------------------------------------------------------- sync, checkpoint, durability options */

typedef struct checkpoint_probe {
    bal_journal *writer;
    bal_journal_status status_inside;
} checkpoint_probe;

/* Runs inside a reader's look-up, i.e. while the reader holds its snapshot: the writer
 * commits a new batch, then a checkpoint must wait for the reader and gives up. */
static bool checkpoint_inside_read(void *context, const bal_journal_row *row) {
    checkpoint_probe *probe = context;
    bal_journal_row next;
    test_row_init(&next, 0, row->sequence + 1, 0, BAL_JOURNAL_TYPE_DEPOSIT, "dep-2", 3, "USDT");
    test_row_balances(&next, 1, 2, 0, 0);
    CHECK_OK(bal_journal_write_batch(probe->writer, 0, &next, 1, 2, NULL, ERR));
    probe->status_inside = bal_journal_checkpoint(probe->writer, NULL, 0);
    CHECK_OK(bal_journal_sync(probe->writer, ERR)); /* durability does not wait for the reader */
    return true;
}

static void test_checkpoint(void) {
    test_dir dir;
    test_dir_create(&dir);
    bal_journal_options options = bal_journal_options_default();
    options.synchronous_full = true;
    options.busy_timeout_ms = 100;
    bal_journal *writer = NULL;
    CHECK_OK(bal_journal_open(dir.path, &options, &writer, ERR));
    bal_journal *reader = test_open(&dir, true);
    bal_journal_row row;
    test_row_init(&row, 0, 1, 0, BAL_JOURNAL_TYPE_DEPOSIT, "dep-1", 3, "USDT");
    test_row_balances(&row, 0, 1, 0, 0);
    CHECK_OK(bal_journal_sync(writer, ERR));
    CHECK_OK(bal_journal_write_batch(writer, 0, &row, 1, 1, NULL, ERR));
    CHECK_OK(bal_journal_checkpoint(writer, ERR));
    CHECK_OK(bal_journal_sync(writer, ERR)); /* the -wal file may be empty now */

    checkpoint_probe probe = {.writer = writer, .status_inside = BAL_JOURNAL_OK};
    const char *id = "dep-1";
    CHECK_OK(bal_journal_find_transactions(reader, &id, 1, checkpoint_inside_read, &probe, ERR));
    CHECK(probe.status_inside == BAL_JOURNAL_BUSY);
    CHECK_OK(bal_journal_checkpoint(writer, ERR)); /* the reader has let go */
    check_position(reader, 0, 2);

    /* A reader cannot ask for durability settings. */
    options.read_only = true;
    bal_journal *invalid = NULL;
    CHECK(bal_journal_open(dir.path, &options, &invalid, NULL, 0) == BAL_JOURNAL_INVALID_ARGUMENT);
    bal_journal_close(reader);
    bal_journal_close(writer);
    test_dir_remove(&dir);
}

/* ---------------------------------------------------------------- writeback */

/* Descriptors of this process open on a path that starts with prefix. */
static int fds_open_on(const char *prefix) {
    int count = 0;
    DIR *fds = opendir("/proc/self/fd");
    if (fds == NULL) return -1;
    for (struct dirent *entry; (entry = readdir(fds)) != NULL;) {
        char link[300], target[512];
        snprintf(link, sizeof link, "/proc/self/fd/%s", entry->d_name);
        ssize_t length = readlink(link, target, sizeof target - 1);
        if (length <= 0) continue;
        target[length] = '\0';
        if (strncmp(target, prefix, strlen(prefix)) == 0) count++;
    }
    closedir(fds);
    return count;
}

/* Each committed batch hands its pages to the disk through two descriptors of the writer's
 * own (-wal and database), opened once and closed with the handle; a refused batch and a
 * replayed one (nothing written) do not. bal_journal_sync uses the same descriptors. */
static void test_writeback(void) {
    test_dir dir;
    test_dir_create(&dir);
    bal_journal *writer = test_open(&dir, false);
    int sqlite_fds = fds_open_on(dir.path);
    CHECK(sqlite_fds > 0);
    CHECK(bal_journal_writeback_count(writer) == 0);
    CHECK_OK(bal_journal_sync(writer, ERR)); /* the descriptors it opens stay (the -wal one if it exists) */
    int kept = fds_open_on(dir.path);
    CHECK(kept == sqlite_fds + 1 || kept == sqlite_fds + 2);
    bal_journal_row row;
    test_row_init(&row, 0, 1, 0, BAL_JOURNAL_TYPE_DEPOSIT, "wb-1", 3, "USDT");
    test_row_balances(&row, 0, 1, 0, 0);
    CHECK_OK(bal_journal_write_batch(writer, 0, &row, 1, 1, NULL, ERR));
    CHECK(bal_journal_writeback_count(writer) == 1);
    CHECK(fds_open_on(dir.path) == sqlite_fds + 2);
    test_row_init(&row, 0, 2, 0, BAL_JOURNAL_TYPE_DEPOSIT, "wb-2", 3, "USDT");
    test_row_balances(&row, 1, 2, 0, 0);
    CHECK_OK(bal_journal_write_batch(writer, 0, &row, 1, 2, NULL, ERR));
    CHECK(bal_journal_writeback_count(writer) == 2);
    CHECK(fds_open_on(dir.path) == sqlite_fds + 2); /* opened once */
    CHECK_OK(bal_journal_sync(writer, ERR)); /* through the same descriptors: none closed (that
                                                would drop this process's POSIX locks on the file) */
    CHECK(fds_open_on(dir.path) == sqlite_fds + 2);
    CHECK(bal_journal_write_batch(writer, 0, &row, 1, 0, NULL, NULL, 0) != BAL_JOURNAL_OK); /* refused */
    CHECK(bal_journal_writeback_count(writer) == 2);
    bal_journal_write_outcome outcome;
    CHECK_OK(bal_journal_write_batch(writer, 0, &row, 1, 2, &outcome, ERR)); /* a replay: nothing written */
    CHECK(outcome.skipped && bal_journal_writeback_count(writer) == 2);
    bal_journal_close(writer);
    CHECK(fds_open_on(dir.path) == 0);
    test_dir_remove(&dir);
}

/* ---------------------------------------------------------------- names */

static void test_names(void) {
    for (unsigned type = 0; type < BAL_JOURNAL_TYPE_COUNT; type++) {
        const char *name = bal_journal_type_name((bal_journal_type)type);
        bal_journal_type parsed;
        CHECK(name != NULL && bal_journal_type_parse(name, strlen(name), &parsed) && parsed == type);
    }
    bal_journal_type parsed;
    CHECK(!bal_journal_type_parse("deposit", 7, &parsed) && !bal_journal_type_parse("DEPOSITS", 8, &parsed));
    CHECK(bal_journal_type_name(BAL_JOURNAL_TYPE_COUNT) == NULL);
    CHECK(strcmp(bal_journal_status_name(BAL_JOURNAL_CORRUPT), "corrupt") == 0);
    CHECK(bal_journal_cursor_after(0, 0) == 1 && bal_journal_cursor_after(1, 15) == 32);
    CHECK(bal_journal_cursor_after(BAL_JOURNAL_SEQUENCE_MAX, BAL_JOURNAL_LEGS_MAX - 1) ==
          (BAL_JOURNAL_SEQUENCE_MAX + 1) * BAL_JOURNAL_LEGS_MAX);
}

typedef struct test_case {
    const char *name;
    void (*run)(void);
} test_case;

static const test_case test_cases[] = {
    {"round_trip", test_round_trip}, {"validation", test_validation}, {"idempotency", test_idempotency},
    {"history", test_history},       {"lookup", test_lookup},         {"schema", test_schema},
    {"history_split_position", test_history_split_position}, {"history_runs", test_history_runs},
    {"replay_entries", test_replay_entries},
    {"lookup_collisions", test_lookup_collisions}, {"sorted_insert", test_sorted_insert},
    {"concurrent_readers", test_concurrent_readers}, {"corrupt", test_corrupt},
    {"checkpoint", test_checkpoint}, {"writeback", test_writeback}, {"names", test_names},
};

int main(int argc, char **argv) {
    bool ran = false;
    for (size_t i = 0; i < sizeof test_cases / sizeof test_cases[0]; i++) {
        if (argc > 1 && strcmp(argv[1], test_cases[i].name) != 0) continue;
        test_cases[i].run();
        fprintf(stderr, "ok: %s\n", test_cases[i].name);
        ran = true;
    }
    if (!ran) {
        fprintf(stderr, "unknown case %s\n", argc > 1 ? argv[1] : "");
        return 2;
    }
    return 0;
}
