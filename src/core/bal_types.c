/*
 * bal_types.c -- names, currency codes, transaction id rules, the command digest and the
 * command validity check shared by the decoder and the ledger.
 */
#include "bal_types.h"

#include <assert.h>
#include <string.h>

#include "bal_hash.h"

static const char *const op_names[BAL_OP_COUNT] = {
    "DEPOSIT", "WITHDRAW", "FREEZE", "UNFREEZE", "TRANSFER", "DEDUCT_FROZEN", "EVENT",
};

static const char *const result_names[BAL_RESULT_COUNT] = {
    "ok", "insufficient_available", "insufficient_frozen", "overflow", "conflict",
    "capacity_exceeded",
};

const char *bal_op_name(bal_op op) {
    assert((unsigned)op < BAL_OP_COUNT);
    return op_names[op];
}

bool bal_op_from_name(const char *text, size_t length, bal_op *op_out) {
    assert(op_out != NULL);
    for (int op = 0; op < BAL_OP_COUNT; op++) {
        if (strlen(op_names[op]) == length && memcmp(op_names[op], text, length) == 0) {
            *op_out = (bal_op)op;
            return true;
        }
    }
    return false;
}

const char *bal_result_name(bal_result result) {
    assert((unsigned)result < BAL_RESULT_COUNT);
    return result_names[result];
}

/* Base-37 digit of a currency character: 1..10 for 0-9, 11..36 for A-Z, 0 if invalid. */
static unsigned currency_digit(char c) {
    if (c >= '0' && c <= '9') return (unsigned)(c - '0') + 1;
    if (c >= 'A' && c <= 'Z') return (unsigned)(c - 'A') + 11;
    return 0;
}

bool bal_currency_parse(const char *text, size_t length, bal_currency *currency_out) {
    assert(currency_out != NULL);
    if (length == 0 || length > BAL_CURRENCY_LENGTH_MAX) return false;
    uint64_t code = 0;
    for (size_t i = 0; i < BAL_CURRENCY_LENGTH_MAX; i++) {
        unsigned digit = 0;
        if (i < length) {
            digit = currency_digit(text[i]);
            if (digit == 0) return false;
        }
        code = code * 37 + digit;
    }
    assert(code != 0);
    currency_out->code = code;
    return true;
}

size_t bal_currency_format(bal_currency currency, char *buffer) {
    assert(buffer != NULL);
    static const char alphabet[] = "?0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    char digits[BAL_CURRENCY_LENGTH_MAX];
    uint64_t code = currency.code;
    for (int i = BAL_CURRENCY_LENGTH_MAX - 1; i >= 0; i--) {
        digits[i] = alphabet[code % 37];
        code /= 37;
    }
    assert(code == 0);
    size_t length = 0;
    while (length < BAL_CURRENCY_LENGTH_MAX && digits[length] != '?') {
        buffer[length] = digits[length];
        length++;
    }
    buffer[length] = '\0';
    return length;
}

bool bal_transaction_id_valid(const char *text, size_t length) {
    if (length == 0 || length > BAL_TRANSACTION_ID_LENGTH_MAX) return false;
    for (size_t i = 0; i < length; i++) {
        char c = text[i];
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == ':' || c == '-';
        if (!ok) return false;
    }
    return true;
}

/* Feeds the content fields, in a fixed order and fixed widths, into two seeded hashes. */
bal_digest bal_command_digest(const bal_command *command) {
    assert(command != NULL);
    uint8_t buffer[64 + BAL_MEMO_LENGTH_MAX + BAL_EVENT_LEGS_MAX * sizeof(bal_leg)];
    size_t length = 0;
#define PUT(value)                                              \
    do {                                                        \
        memcpy(buffer + length, &(value), sizeof(value));       \
        length += sizeof(value);                                \
    } while (0)
    PUT(command->type);
    PUT(command->account_id);
    PUT(command->to_account_id);
    PUT(command->currency.code);
    PUT(command->amount);
    PUT(command->has_memo);
    PUT(command->memo_length);
    memcpy(buffer + length, command->memo, command->memo_length);
    length += command->memo_length;
    PUT(command->leg_count);
    for (unsigned i = 0; i < command->leg_count; i++) PUT(command->legs[i]);
#undef PUT
    assert(length <= sizeof(buffer));
    bal_digest digest;
    bal_hash_bytes128(buffer, length, &digest.low, &digest.high);
    return digest;
}

static bool legs_valid(const bal_command *command) {
    if (command->leg_count < 1 || command->leg_count > BAL_EVENT_LEGS_MAX) return false;
    for (unsigned i = 0; i < command->leg_count; i++) {
        const bal_leg *leg = &command->legs[i];
        if (leg->account_id == 0 || leg->currency.code == 0) return false;
        if (!bal_money_in_range(leg->available_delta) || !bal_money_in_range(leg->frozen_delta)) return false;
        for (unsigned j = 0; j < i; j++) {
            if (command->legs[j].account_id == leg->account_id &&
                command->legs[j].currency.code == leg->currency.code) return false;
        }
    }
    return true;
}

bool bal_command_valid(const bal_command *command) {
    assert(command != NULL);
    if (command->type >= BAL_OP_COUNT) return false;
    if (command->transaction_id_length > BAL_TRANSACTION_ID_LENGTH_MAX) return false;
    if (command->memo_length > BAL_MEMO_LENGTH_MAX) return false;
    if (command->memo_length > 0 && !command->has_memo) return false;
    if (command->type == BAL_OP_EVENT) return legs_valid(command);
    if (command->leg_count != 0) return false;
    if (command->account_id == 0 || command->currency.code == 0) return false;
    if (command->amount <= 0 || command->amount > BAL_MONEY_MAX) return false;
    if (command->type == BAL_OP_TRANSFER) {
        return command->to_account_id != 0 && command->to_account_id != command->account_id;
    }
    return command->to_account_id == 0;
}
