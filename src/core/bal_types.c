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

/* A packed code is valid when its 10 base-37 digits are: a non-zero first digit, then
 * non-zero digits, then only zeros (padding). Arithmetic only: apply asserts it per command. */
bool bal_currency_valid(bal_currency currency) {
    uint64_t code = currency.code;
    if (code == 0 || code >= 4808584372417849ull /* 37^10 */) return false;
    bool padding = true; /* reading from the last digit: zeros first, then no zero */
    for (int i = 0; i < BAL_CURRENCY_LENGTH_MAX; i++, code /= 37) {
        bool zero = code % 37 == 0;
        if (!zero) padding = false;
        else if (!padding) return false;
    }
    return true;
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

/* The digest of a typed command without a memo -- nearly every command -- computed from
 * its fields in registers. Its value is the general path's below for the same 45 bytes
 * (type | account | to_account | currency | amount | has_memo | memo_length | leg_count):
 * writing those at odd offsets and reading them back as words stalled on store forwarding.
 * Digests are kept in snapshots, so the value may never change (tests/unit/test_ledger.c
 * pins it with known answers and compares both paths). */
static bal_digest digest_typed(const bal_command *command) {
    unsigned __int128 amount = (unsigned __int128)command->amount;
    uint64_t account = command->account_id, to = command->to_account_id, code = command->currency.code;
    uint64_t low = (uint64_t)amount, high = (uint64_t)(amount >> 64);
    bal_hash128_state h = bal_hash128_start(45);
    bal_hash128_word(&h, (uint64_t)command->type | account << 8);
    bal_hash128_word(&h, account >> 56 | to << 8);
    bal_hash128_word(&h, to >> 56 | code << 8);
    bal_hash128_word(&h, code >> 56 | low << 8);
    bal_hash128_word(&h, low >> 56 | high << 8);
    uint64_t tail = high >> 56 | (uint64_t)command->has_memo << 8; /* memo_length and leg_count: 0 */
    bal_digest digest;
    bal_hash128_finish(&h, tail, 5, &digest.low, &digest.high);
    return digest;
}

/* Feeds the content fields, in a fixed order and fixed widths, into two seeded hashes. */
bal_digest bal_command_digest(const bal_command *command) {
    assert(command != NULL);
    if (command->memo_length == 0 && command->leg_count == 0) return digest_typed(command);
    return bal_command_digest_general(command);
}

bal_digest bal_command_digest_general(const bal_command *command) {
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
    if (command->memo_length > 0) { /* a call for the common empty memo costs as much as the rest */
        memcpy(buffer + length, command->memo, command->memo_length);
        length += command->memo_length;
    }
    PUT(command->leg_count);
    for (unsigned i = 0; i < command->leg_count; i++) PUT(command->legs[i]);
#undef PUT
    assert(length <= sizeof(buffer));
    bal_digest digest;
    bal_hash_bytes128(buffer, length, &digest.low, &digest.high);
    return digest;
}

unsigned bal_command_legs(const bal_command *command, bal_leg *legs) {
    assert(command->type < BAL_OP_COUNT);
    if (command->type == BAL_OP_EVENT) {
        memcpy(legs, command->legs, command->leg_count * sizeof(bal_leg));
        return command->leg_count;
    }
    bal_op_signs signs = bal_op_leg_signs((bal_op)command->type);
    legs[0] = (bal_leg){command->account_id, command->currency, bal_amount_signed(command->amount, signs.available),
                        bal_amount_signed(command->amount, signs.frozen)};
    if (command->type != BAL_OP_TRANSFER) return 1;
    legs[1] = (bal_leg){command->to_account_id, command->currency, command->amount, 0};
    return 2;
}

static bool legs_valid(const bal_command *command, bool check_currencies) {
    if (command->leg_count < 1 || command->leg_count > BAL_EVENT_LEGS_MAX) return false;
    for (unsigned i = 0; i < command->leg_count; i++) {
        const bal_leg *leg = &command->legs[i];
        if (leg->account_id == 0 || (check_currencies && !bal_currency_valid(leg->currency))) return false;
        if (!bal_money_in_range(leg->available_delta) || !bal_money_in_range(leg->frozen_delta)) return false;
        for (unsigned j = 0; j < i; j++) {
            if (command->legs[j].account_id == leg->account_id &&
                command->legs[j].currency.code == leg->currency.code) return false;
        }
    }
    return true;
}

/* An EVENT's coordination fields (a typed command's are in bal_command_typed_valid_except_currency). */
static bool coordination_valid(const bal_command *command) {
    assert(command->type == BAL_OP_EVENT);
    if (command->decided > BAL_RESULT_COUNT || command->decided == 1 + BAL_RESULT_CONFLICT) return false;
    return command->leg_mask == 0 || (command->leg_mask >> command->leg_count) == 0;
}

static bool command_valid(const bal_command *command, bool check_currencies) {
    assert(command != NULL);
    if (command->type >= BAL_OP_COUNT) return false;
    if (command->type != BAL_OP_EVENT) {
        return bal_command_typed_valid_except_currency(command) &&
               (!check_currencies || bal_currency_valid(command->currency));
    }
    if (command->leg_count < 1 || command->leg_count > BAL_EVENT_LEGS_MAX) return false;
    if (!coordination_valid(command)) return false;
    if (command->transaction_id_length > BAL_TRANSACTION_ID_LENGTH_MAX) return false;
    if (command->memo_length > BAL_MEMO_LENGTH_MAX) return false;
    if (command->memo_length > 0 && !command->has_memo) return false;
    /* An EVENT's account and currency are its first leg's: they route it. */
    return legs_valid(command, check_currencies) && command->account_id == command->legs[0].account_id &&
           command->currency.code == command->legs[0].currency.code && command->amount == 0 &&
           command->to_account_id == 0;
}

bool bal_command_valid(const bal_command *command) {
    return command_valid(command, true);
}

bool bal_command_valid_except_currencies(const bal_command *command) {
    return command_valid(command, false);
}

/*
 * Command codec, version 1. Layout (little-endian):
 *   u8 version | u8 type | u8 has_memo | u8 transaction_id_length | u16 memo_length
 *   u8 leg_count | u8 decided | u16 leg_mask | u16 0 | u32 0
 *   i64 time_ms | u64 account_id | u64 to_account_id | u64 currency | i128 amount
 *   transaction id bytes | memo bytes | leg_count x (u64 account, u64 currency, i128, i128)
 */
#define CODEC_VERSION 1u
#define CODEC_HEADER_BYTES 72u
_Static_assert(sizeof(bal_leg) == 48, "a leg is encoded as its 48 bytes");

size_t bal_command_encode(const bal_command *command, uint8_t *buffer) {
    assert(command != NULL && buffer != NULL);
    assert(bal_command_valid(command));
    memset(buffer, 0, CODEC_HEADER_BYTES);
    buffer[0] = CODEC_VERSION;
    buffer[1] = command->type;
    buffer[2] = command->has_memo;
    buffer[3] = command->transaction_id_length;
    memcpy(buffer + 4, &command->memo_length, 2);
    buffer[6] = command->leg_count;
    buffer[7] = command->decided;
    memcpy(buffer + 8, &command->leg_mask, 2);
    memcpy(buffer + 16, &command->time_ms, 8);
    memcpy(buffer + 24, &command->account_id, 8);
    memcpy(buffer + 32, &command->to_account_id, 8);
    memcpy(buffer + 40, &command->currency.code, 8);
    memcpy(buffer + 48, &command->amount, 16);
    size_t length = CODEC_HEADER_BYTES - 8; /* bytes 64..71 reserved */
    memset(buffer + length, 0, 8);
    length += 8;
    memcpy(buffer + length, command->transaction_id, command->transaction_id_length);
    length += command->transaction_id_length;
    memcpy(buffer + length, command->memo, command->memo_length);
    length += command->memo_length;
    memcpy(buffer + length, command->legs, (size_t)command->leg_count * sizeof(bal_leg));
    length += (size_t)command->leg_count * sizeof(bal_leg);
    assert(length <= BAL_COMMAND_ENCODED_MAX);
    return length;
}

bool bal_command_decode(const uint8_t *buffer, size_t length, bal_command *command) {
    assert(buffer != NULL && command != NULL);
    if (length < CODEC_HEADER_BYTES || buffer[0] != CODEC_VERSION) return false;
    memset(command, 0, offsetof(bal_command, memo));
    command->type = buffer[1];
    command->has_memo = buffer[2];
    command->transaction_id_length = buffer[3];
    memcpy(&command->memo_length, buffer + 4, 2);
    command->leg_count = buffer[6];
    command->decided = buffer[7];
    memcpy(&command->leg_mask, buffer + 8, 2);
    memcpy(&command->time_ms, buffer + 16, 8);
    memcpy(&command->account_id, buffer + 24, 8);
    memcpy(&command->to_account_id, buffer + 32, 8);
    memcpy(&command->currency.code, buffer + 40, 8);
    memcpy(&command->amount, buffer + 48, 16);
    static const uint8_t zeros[8] = {0};
    if (memcmp(buffer + 10, zeros, 6) != 0 || memcmp(buffer + 64, zeros, 8) != 0) return false;
    if (command->has_memo > 1 || command->transaction_id_length > BAL_TRANSACTION_ID_LENGTH_MAX ||
        command->memo_length > BAL_MEMO_LENGTH_MAX || command->leg_count > BAL_EVENT_LEGS_MAX) return false;
    size_t expected = CODEC_HEADER_BYTES + command->transaction_id_length + command->memo_length +
                      (size_t)command->leg_count * sizeof(bal_leg);
    if (length != expected) return false;
    const uint8_t *p = buffer + CODEC_HEADER_BYTES;
    memcpy(command->transaction_id, p, command->transaction_id_length);
    p += command->transaction_id_length;
    memcpy(command->memo, p, command->memo_length);
    p += command->memo_length;
    memcpy(command->legs, p, (size_t)command->leg_count * sizeof(bal_leg));
    if (command->transaction_id_length > 0 &&
        !bal_transaction_id_valid(command->transaction_id, command->transaction_id_length)) return false;
    return bal_command_valid(command);
}
