/*
 * bal_journal_row.c -- the journal row's rules, with no SQLite in sight: validation of a
 * row (before the writer stores it and after a reader decodes it), the type and status
 * names, the SPEC's character sets and the history cursor.
 *
 * The checks repeat what the core guarantees on purpose: the store is where data leaves
 * memory for years, so a row that breaks an invariant is refused with a reason instead of
 * becoming a journal that no longer replays to the balances.
 */
#include "bal_journal.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "bal_journal_internal.h"
#include "bal_types.h"

static const char *const bal_journal_type_names[BAL_JOURNAL_TYPE_COUNT] = {
    [BAL_JOURNAL_TYPE_DEPOSIT] = "DEPOSIT",
    [BAL_JOURNAL_TYPE_WITHDRAW] = "WITHDRAW",
    [BAL_JOURNAL_TYPE_FREEZE] = "FREEZE",
    [BAL_JOURNAL_TYPE_UNFREEZE] = "UNFREEZE",
    [BAL_JOURNAL_TYPE_DEDUCT_FROZEN] = "DEDUCT_FROZEN",
    [BAL_JOURNAL_TYPE_TRANSFER] = "TRANSFER",
    [BAL_JOURNAL_TYPE_EVENT] = "EVENT",
};

const char *bal_journal_type_name(bal_journal_type type) {
    if ((unsigned)type >= BAL_JOURNAL_TYPE_COUNT) return NULL;
    assert(bal_journal_type_names[type] != NULL);
    return bal_journal_type_names[type];
}

bool bal_journal_type_parse(const char *text, size_t length, bal_journal_type *type_out) {
    assert(type_out != NULL);
    assert(text != NULL || length == 0);
    for (unsigned type = 0; type < BAL_JOURNAL_TYPE_COUNT; type++) {
        const char *name = bal_journal_type_names[type];
        if (strlen(name) == length && memcmp(name, text, length) == 0) {
            *type_out = (bal_journal_type)type;
            return true;
        }
    }
    return false;
}

/* The character rules are SPEC's and the core's: one definition (bal_types.h). */
bool bal_journal_transaction_id_valid(const char *text, size_t length) {
    return bal_transaction_id_valid(text, length);
}

bool bal_journal_currency_valid(const char *text, size_t length) {
    bal_currency currency;
    return bal_currency_parse(text, length, &currency);
}

static bool bal_journal_result_valid(const char *text, size_t length) {
    assert(text != NULL);
    if (length == 0 || length > BAL_JOURNAL_RESULT_LENGTH_MAX) return false;
    for (size_t i = 0; i < length; i++) {
        if (!((text[i] >= 'a' && text[i] <= 'z') || text[i] == '_')) return false;
    }
    return true;
}

uint64_t bal_journal_cursor_after(uint64_t sequence, uint32_t leg) {
    assert(sequence <= BAL_JOURNAL_SEQUENCE_MAX);
    assert(leg < BAL_JOURNAL_LEGS_MAX);
    return sequence * BAL_JOURNAL_LEGS_MAX + leg + 1;
}

void bal_journal_describe(char *errstr, size_t errstr_size, const char *format, ...) {
    assert(format != NULL);
    if (errstr == NULL || errstr_size == 0) return;
    va_list arguments;
    va_start(arguments, format);
    vsnprintf(errstr, errstr_size, format, arguments);
    va_end(arguments);
}

/* Where the row is and what it names: identifiers, texts and the request's shape. */
static bool bal_journal_row_check_fields(const bal_journal_row *row, const char **reason) {
    assert(row != NULL && reason != NULL);
    size_t id_length = strnlen(row->transaction_id, sizeof row->transaction_id);
    size_t currency_length = strnlen(row->currency, sizeof row->currency);
    size_t result_length = strnlen(row->result, sizeof row->result);
    bool transfer = row->type == BAL_JOURNAL_TYPE_TRANSFER;

    if (row->shard >= BAL_JOURNAL_SHARDS_MAX) *reason = "shard out of range";
    else if (row->sequence > BAL_JOURNAL_SEQUENCE_MAX) *reason = "sequence out of range";
    else if (row->leg >= BAL_JOURNAL_LEGS_MAX) *reason = "leg out of range";
    else if (row->time_ms < 0) *reason = "negative time_ms";
    else if ((unsigned)row->type >= BAL_JOURNAL_TYPE_COUNT) *reason = "unknown type";
    else if (row->account_id == 0) *reason = "account_id is 0";
    /* An unterminated text reads as one byte too long and fails its length check. */
    else if (!bal_journal_transaction_id_valid(row->transaction_id, id_length))
        *reason = "invalid transaction_id";
    else if (!bal_journal_currency_valid(row->currency, currency_length)) *reason = "invalid currency";
    else if (!bal_journal_result_valid(row->result, result_length)) *reason = "invalid result";
    else if (row->memo_length > BAL_MEMO_LENGTH_MAX) *reason = "memo longer than 256 bytes";
    else if (!row->has_memo && row->memo_length != 0) *reason = "memo length without a memo";
    else if (transfer && (row->to_account_id == 0 || row->leg > 1)) *reason = "TRANSFER with a bad leg or target";
    else if (transfer && (row->leg == 0) == (row->account_id == row->to_account_id))
        *reason = "TRANSFER leg 0 must be the source, leg 1 the destination";
    else if (!transfer && row->to_account_id != 0) *reason = "to_account_id outside a TRANSFER";
    else if (!transfer && row->type != BAL_JOURNAL_TYPE_EVENT && row->leg != 0)
        *reason = "one-balance type with leg > 0";
    else return true;
    return false;
}

/* The amounts: ranges, the request's amount by type, and delta == after - before. */
static bool bal_journal_row_check_amounts(const bal_journal_row *row, const char **reason) {
    assert(row != NULL && reason != NULL);
    bool event = row->type == BAL_JOURNAL_TYPE_EVENT;
    bool applied = strcmp(row->result, "ok") == 0;
    bal_amount balances[4] = {row->available_before, row->available_after, row->frozen_before,
                              row->frozen_after};
    for (int i = 0; i < 4; i++) {
        if (balances[i] < 0 || balances[i] > BAL_MONEY_MAX) {
            *reason = "balance out of [0, 10^36-1]";
            return false;
        }
    }
    if (!event && (row->amount <= 0 || row->amount > BAL_MONEY_MAX)) *reason = "amount out of (0, 10^36-1]";
    else if (event && row->amount != 0) *reason = "EVENT row with an amount";
    else if (!event && (row->leg_available_delta != 0 || row->leg_frozen_delta != 0))
        *reason = "leg deltas outside an EVENT";
    else if (!bal_money_in_range(row->leg_available_delta) || !bal_money_in_range(row->leg_frozen_delta))
        *reason = "leg delta out of range";
    else if (row->available_delta != row->available_after - row->available_before)
        *reason = "available_delta != available_after - available_before";
    else if (row->frozen_delta != row->frozen_after - row->frozen_before)
        *reason = "frozen_delta != frozen_after - frozen_before";
    else if (!applied && (row->available_delta != 0 || row->frozen_delta != 0))
        *reason = "rejected transaction with a balance change";
    else return true;
    return false;
}

bal_journal_status bal_journal_row_check(const bal_journal_row *row, char *errstr, size_t errstr_size) {
    assert(row != NULL);
    const char *reason = NULL;
    if (bal_journal_row_check_fields(row, &reason) && bal_journal_row_check_amounts(row, &reason)) {
        return BAL_JOURNAL_OK;
    }
    assert(reason != NULL);
    bal_journal_describe(errstr, errstr_size, "journal row (shard %u, sequence %llu, leg %u): %s",
                         row->shard, (unsigned long long)row->sequence, row->leg, reason);
    return BAL_JOURNAL_INVALID_ARGUMENT;
}

const char *bal_journal_status_name(bal_journal_status status) {
    switch (status) {
    case BAL_JOURNAL_OK: return "ok";
    case BAL_JOURNAL_INVALID_ARGUMENT: return "invalid_argument";
    case BAL_JOURNAL_SCHEMA: return "schema";
    case BAL_JOURNAL_CORRUPT: return "corrupt";
    case BAL_JOURNAL_BUSY: return "busy";
    case BAL_JOURNAL_NO_MEMORY: return "no_memory";
    case BAL_JOURNAL_STORAGE: return "storage";
    case BAL_JOURNAL_ABORTED: return "aborted";
    }
    return "unknown";
}
