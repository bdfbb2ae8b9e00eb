/*
 * test_journal.c -- the journal store against a real SQLite file in a scratch directory:
 * exact round trip of every field (amounts and account ids at their edges, memos NULL,
 * empty and 256 bytes), row validation, position and idempotency across reopen, history
 * paging, batched look-up, schema identity and readers running beside the writer.
 *
 * Usage: test_journal [case]; without a case every case runs. CTest runs one per case.
 */
#include <pthread.h>
#include <sqlite3.h>
#include <string.h>

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

static void check_raw_storage(const test_dir *dir) {
    sqlite3 *db = NULL;
    CHECK(sqlite3_open_v2(dir->path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK);
    sqlite3_stmt *s = NULL;
    /* Amounts are canonical text; account 2^64-1 is stored as -1, 2^63 as INT64_MIN. */
    CHECK(sqlite3_prepare_v2(db,
                             "SELECT (SELECT amount FROM journal WHERE sequence = 1),"
                             "       (SELECT account_id FROM journal WHERE sequence = 2),"
                             "       (SELECT account_id FROM journal WHERE sequence = 3),"
                             "       (SELECT typeof(memo) FROM journal WHERE sequence = 1),"
                             "       (SELECT frozen_delta FROM journal WHERE sequence = 7 AND leg = 2)",
                             -1, &s, NULL) == SQLITE_OK);
    CHECK(sqlite3_step(s) == SQLITE_ROW);
    CHECK(strcmp((const char *)sqlite3_column_text(s, 0), "0.000000000000000001") == 0);
    CHECK(sqlite3_column_int64(s, 1) == -1);
    CHECK(sqlite3_column_int64(s, 2) == INT64_MIN);
    CHECK(strcmp((const char *)sqlite3_column_text(s, 3), "null") == 0);
    CHECK(strcmp((const char *)sqlite3_column_text(s, 4), "-999999999999999999.999999999999999999") == 0);
    sqlite3_finalize(s);
    sqlite3_close(db);
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

static int64_t count_rows(const test_dir *dir) {
    sqlite3 *db = NULL;
    sqlite3_stmt *s = NULL;
    CHECK(sqlite3_open_v2(dir->path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK);
    CHECK(sqlite3_prepare_v2(db, "SELECT count(*) FROM journal", -1, &s, NULL) == SQLITE_OK);
    CHECK(sqlite3_step(s) == SQLITE_ROW);
    int64_t count = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(db);
    return count;
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
} history_data;

static history_data write_history(bal_journal *journal) {
    history_data data = {calloc((size_t)HISTORY_COMMANDS * 4 * 2, sizeof(bal_journal_row)), 0};
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
        if (row->shard != 3 || row->account_id != account) continue;
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

static void test_history(void) {
    test_dir dir;
    test_dir_create(&dir);
    bal_journal *journal = test_open(&dir, false);
    history_data data = write_history(journal);
    bal_journal *reader = test_open(&dir, true);
    const bal_journal_row **expected = calloc(data.count, sizeof *expected);
    CHECK(expected != NULL);
    static const uint32_t limits[] = {1, 3, 7, 100, 0, 999, 1000, 5000};
    size_t total = 0;
    for (size_t a = 0; a < HISTORY_ACCOUNTS; a++) {
        total += expected_history(&data, history_accounts[a], NULL, expected);
        for (size_t l = 0; l < sizeof limits / sizeof limits[0]; l++) {
            check_listing(reader, &data, history_accounts[a], NULL, limits[l], expected);
            for (size_t c = 0; c < HISTORY_CURRENCIES; c++) {
                check_listing(reader, &data, history_accounts[a], history_currencies[c], limits[l], expected);
            }
        }
    }
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
    free(expected);
    free(data.rows);
    bal_journal_close(reader);
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
    {"concurrent_readers", test_concurrent_readers}, {"corrupt", test_corrupt},
    {"checkpoint", test_checkpoint}, {"names", test_names},
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
