/*
 * journal_test_util.c -- scratch directories, row builders and comparisons shared by the
 * journal store's tests (see the header).
 */
#include "journal_test_util.h"

#include <string.h>
#include <unistd.h>

void test_dir_create(test_dir *dir) {
    CHECK(dir != NULL);
    snprintf(dir->dir, sizeof dir->dir, "/tmp/bal_journal_test.XXXXXX");
    CHECK(mkdtemp(dir->dir) != NULL);
    snprintf(dir->path, sizeof dir->path, "%s/%s", dir->dir, BAL_JOURNAL_FILE_NAME);
}

void test_dir_remove(const test_dir *dir) {
    CHECK(dir != NULL);
    static const char *const suffixes[] = {"", "-wal", "-shm", "-journal"};
    for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
        char file[320];
        snprintf(file, sizeof file, "%s%s", dir->path, suffixes[i]);
        unlink(file);
    }
    CHECK(rmdir(dir->dir) == 0);
}

bal_amount test_amount(const char *text) {
    bal_amount amount = 0;
    CHECK(bal_money_parse_signed(text, strlen(text), &amount) == BAL_MONEY_OK);
    return amount;
}

void test_row_init(bal_journal_row *row, uint32_t shard, uint64_t sequence, uint32_t leg,
                   bal_journal_type type, const char *transaction_id, uint64_t account_id,
                   const char *currency) {
    CHECK(row != NULL && transaction_id != NULL && currency != NULL);
    memset(row, 0, sizeof *row);
    row->shard = shard;
    row->sequence = sequence;
    row->leg = leg;
    row->type = type;
    row->account_id = account_id;
    row->time_ms = 1700000000000 + (int64_t)sequence;
    row->amount = type == BAL_JOURNAL_TYPE_EVENT ? 0 : 1;
    CHECK(strlen(transaction_id) < sizeof row->transaction_id && strlen(currency) < sizeof row->currency);
    strcpy(row->transaction_id, transaction_id);
    strcpy(row->currency, currency);
    strcpy(row->result, "ok");
}

void test_row_balances(bal_journal_row *row, bal_amount available_before, bal_amount available_after,
                       bal_amount frozen_before, bal_amount frozen_after) {
    CHECK(row != NULL);
    row->available_before = available_before;
    row->available_after = available_after;
    row->frozen_before = frozen_before;
    row->frozen_after = frozen_after;
    row->available_delta = available_after - available_before;
    row->frozen_delta = frozen_after - frozen_before;
}

void test_row_memo(bal_journal_row *row, const char *memo, size_t length) {
    CHECK(row != NULL && length <= BAL_MEMO_LENGTH_MAX);
    row->has_memo = memo != NULL;
    row->memo_length = (uint16_t)(memo != NULL ? length : 0);
    memset(row->memo, 0, sizeof row->memo);
    if (memo != NULL) memcpy(row->memo, memo, length);
}

bool test_row_equal(const bal_journal_row *a, const bal_journal_row *b) {
    CHECK(a != NULL && b != NULL);
    return a->shard == b->shard && a->sequence == b->sequence && a->leg == b->leg &&
           a->time_ms == b->time_ms && a->type == b->type && a->account_id == b->account_id &&
           a->to_account_id == b->to_account_id && a->amount == b->amount &&
           a->leg_available_delta == b->leg_available_delta && a->leg_frozen_delta == b->leg_frozen_delta &&
           a->available_before == b->available_before && a->available_after == b->available_after &&
           a->frozen_before == b->frozen_before && a->frozen_after == b->frozen_after &&
           a->available_delta == b->available_delta && a->frozen_delta == b->frozen_delta &&
           a->has_memo == b->has_memo && a->memo_length == b->memo_length &&
           memcmp(a->memo, b->memo, a->memo_length) == 0 && strcmp(a->transaction_id, b->transaction_id) == 0 &&
           strcmp(a->currency, b->currency) == 0 && strcmp(a->result, b->result) == 0;
}

void test_row_print(const char *label, const bal_journal_row *row) {
    char amount[BAL_MONEY_TEXT_MAX + 1], available[BAL_MONEY_TEXT_MAX + 1], frozen[BAL_MONEY_TEXT_MAX + 1];
    bal_money_format(row->amount, amount);
    bal_money_format(row->available_after, available);
    bal_money_format(row->frozen_after, frozen);
    fprintf(stderr, "%s: shard %u seq %llu leg %u %s %s account %llu %s amount %s result %s avail %s frozen %s\n",
            label, row->shard, (unsigned long long)row->sequence, row->leg, row->transaction_id,
            bal_journal_type_name(row->type), (unsigned long long)row->account_id, row->currency, amount,
            row->result, available, frozen);
}

bool test_rows_collect(void *context, const bal_journal_row *row) {
    test_rows *rows = context;
    CHECK(rows != NULL && row != NULL);
    if (rows->count == rows->capacity) {
        rows->capacity = rows->capacity == 0 ? 64 : rows->capacity * 2;
        rows->rows = realloc(rows->rows, rows->capacity * sizeof rows->rows[0]);
        CHECK(rows->rows != NULL);
    }
    rows->rows[rows->count++] = *row;
    return rows->stop_after == 0 || rows->count < rows->stop_after;
}

void test_rows_clear(test_rows *rows) {
    rows->count = 0;
}

void test_rows_free(test_rows *rows) {
    free(rows->rows);
    memset(rows, 0, sizeof *rows);
}

bal_journal *test_open(const test_dir *dir, bool read_only) {
    bal_journal_options options = bal_journal_options_default();
    options.read_only = read_only;
    bal_journal *journal = NULL;
    char errstr[256] = "";
    bal_journal_status status = bal_journal_open(dir->path, &options, &journal, errstr, sizeof errstr);
    if (status != BAL_JOURNAL_OK) fprintf(stderr, "open %s: %s: %s\n", dir->path, bal_journal_status_name(status), errstr);
    CHECK(status == BAL_JOURNAL_OK && journal != NULL);
    return journal;
}

uint64_t test_random(uint64_t *state) {
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1Dull;
}
