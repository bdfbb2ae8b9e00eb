/*
 * bal_decode.c -- field-by-field validation of transaction requests (see bal_decode.h).
 */
#include "bal_decode.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char *const error_codes[BAL_DECODE_ERROR_COUNT] = {
    "ok", "invalid_json", "invalid_transaction_id", "invalid_type", "invalid_account",
    "invalid_currency", "invalid_amount", "invalid_memo", "invalid_legs", "too_many_legs",
    "unknown_field", "invalid_batch", "batch_too_large",
};

const char *bal_decode_error_code(bal_decode_error error) {
    assert((unsigned)error < BAL_DECODE_ERROR_COUNT);
    return error_codes[error];
}

__attribute__((format(printf, 3, 4)))
static bal_decode_error fail(bal_decode_diagnostic *d, bal_decode_error error, const char *format, ...) {
    va_list args;
    va_start(args, format);
    d->error = error;
    vsnprintf(d->message, sizeof(d->message), format, args);
    va_end(args);
    return error;
}

bool bal_decode_account_id(const char *text, size_t length, uint64_t *account_out) {
    assert(account_out != NULL);
    if (length == 0 || length > 20 || text[0] == '0') return false;
    uint64_t value = 0;
    for (size_t i = 0; i < length; i++) {
        if (text[i] < '0' || text[i] > '9') return false;
        uint64_t digit = (uint64_t)(text[i] - '0');
        if (value > (UINT64_MAX - digit) / 10) return false;
        value = value * 10 + digit;
    }
    *account_out = value;
    return true;
}

/* The fields a transaction object may carry, as token indexes (0 = absent). */
typedef struct fields {
    uint32_t transaction_id, type, account_id, to_account_id, currency, amount, memo, legs;
} fields;

static bal_decode_error collect_fields(const char *body, const bal_json_token *tokens, uint32_t index,
                                       fields *f, bal_decode_diagnostic *d) {
    static const char *const names[] = {"transaction_id", "type", "account_id", "to_account_id",
                                        "currency", "amount", "memo", "legs"};
    memset(f, 0, sizeof(*f));
    uint32_t *slots[] = {&f->transaction_id, &f->type, &f->account_id, &f->to_account_id,
                         &f->currency, &f->amount, &f->memo, &f->legs};
    if (tokens[index].type != BAL_JSON_OBJECT) return fail(d, BAL_DECODE_INVALID_JSON, "a transaction must be a JSON object");
    uint32_t key = index + 1;
    for (uint32_t m = 0; m < tokens[index].size; m++) {
        uint32_t value = key + 1;
        size_t k = 0;
        while (k < 8 && !bal_json_string_equals(body, &tokens[key], names[k])) k++;
        if (k == 8) {
            return fail(d, BAL_DECODE_UNKNOWN_FIELD, "unknown field \"%.*s\"",
                        (int)(tokens[key].length > 40 ? 40 : tokens[key].length), body + tokens[key].start);
        }
        if (*slots[k] != 0) return fail(d, BAL_DECODE_INVALID_JSON, "field \"%s\" appears twice", names[k]);
        *slots[k] = value;
        key = tokens[value].next;
    }
    return BAL_DECODE_OK;
}

static bal_decode_error decode_transaction_id(const char *body, const bal_json_token *tokens, uint32_t at,
                                              bal_command *c, bal_decode_diagnostic *d) {
    if (at == 0) return fail(d, BAL_DECODE_INVALID_TRANSACTION_ID, "transaction_id is required");
    char text[BAL_TRANSACTION_ID_LENGTH_MAX + 4];
    size_t length = 0;
    if (tokens[at].type != BAL_JSON_STRING ||
        !bal_json_string_copy(body, &tokens[at], text, sizeof(text), &length) ||
        !bal_transaction_id_valid(text, length)) {
        return fail(d, BAL_DECODE_INVALID_TRANSACTION_ID,
                    "transaction_id must be a string of 1 to 64 characters of A-Z a-z 0-9 . _ : -");
    }
    memcpy(c->transaction_id, text, length);
    c->transaction_id_length = (uint8_t)length;
    memcpy(d->transaction_id, text, length);
    d->transaction_id[length] = '\0';
    return BAL_DECODE_OK;
}

static bal_decode_error decode_type(const char *body, const bal_json_token *tokens, uint32_t at,
                                    bal_command *c, bal_decode_diagnostic *d) {
    if (at == 0) return fail(d, BAL_DECODE_INVALID_TYPE, "type is required");
    const bal_json_token *t = &tokens[at];
    bal_op op;
    if (t->type == BAL_JSON_STRING && !t->escaped && bal_op_from_name(body + t->start, t->length, &op)) {
        c->type = (uint8_t)op;
        return BAL_DECODE_OK;
    }
    if (t->type == BAL_JSON_NUMBER && t->length == 1 && body[t->start] >= '0' && body[t->start] <= '4') {
        c->type = (uint8_t)(body[t->start] - '0'); /* legacy codes 0..4 equal bal_op values */
        return BAL_DECODE_OK;
    }
    return fail(d, BAL_DECODE_INVALID_TYPE,
                "type must be DEPOSIT, WITHDRAW, FREEZE, UNFREEZE, DEDUCT_FROZEN, TRANSFER, EVENT or 0..4");
}

static bool account_value(const char *body, const bal_json_token *t, uint64_t *account_out) {
    if (t->type != BAL_JSON_NUMBER && (t->type != BAL_JSON_STRING || t->escaped)) return false;
    return bal_decode_account_id(body + t->start, t->length, account_out);
}

static bal_decode_error decode_account(const char *body, const bal_json_token *tokens, uint32_t at,
                                       const char *name, uint64_t *account_out, bal_decode_diagnostic *d) {
    if (at == 0) return fail(d, BAL_DECODE_INVALID_ACCOUNT, "%s is required", name);
    if (!account_value(body, &tokens[at], account_out)) {
        return fail(d, BAL_DECODE_INVALID_ACCOUNT, "%s must be an integer from 1 to 18446744073709551615", name);
    }
    return BAL_DECODE_OK;
}

static bal_decode_error decode_currency(const char *body, const bal_json_token *tokens, uint32_t at,
                                        bal_currency *currency_out, bal_decode_diagnostic *d) {
    if (at == 0) return fail(d, BAL_DECODE_INVALID_CURRENCY, "currency is required");
    const bal_json_token *t = &tokens[at];
    if (t->type != BAL_JSON_STRING || t->escaped || !bal_currency_parse(body + t->start, t->length, currency_out)) {
        return fail(d, BAL_DECODE_INVALID_CURRENCY, "currency must be 1 to 10 characters of A-Z 0-9");
    }
    return BAL_DECODE_OK;
}

static bal_decode_error decode_amount(const char *body, const bal_json_token *t, const char *name,
                                      bool is_signed, bal_amount *amount_out, bal_decode_diagnostic *d) {
    if (t->type != BAL_JSON_STRING || t->escaped) {
        return fail(d, BAL_DECODE_INVALID_AMOUNT, "%s must be a decimal string such as \"100.5\"", name);
    }
    bal_money_status status = is_signed ? bal_money_parse_signed(body + t->start, t->length, amount_out)
                                        : bal_money_parse(body + t->start, t->length, amount_out);
    if (status != BAL_MONEY_OK) {
        return fail(d, BAL_DECODE_INVALID_AMOUNT,
                    "%s must be a plain decimal%s with at most 18 integer and 18 fractional digits (%s)",
                    name, is_signed ? "" : " without sign", bal_money_status_name(status));
    }
    return BAL_DECODE_OK;
}

static bal_decode_error decode_memo(const char *body, const bal_json_token *tokens, uint32_t at,
                                    bal_command *c, bal_decode_diagnostic *d) {
    if (at == 0 || tokens[at].type == BAL_JSON_NULL) return BAL_DECODE_OK;
    size_t length = 0;
    char text[BAL_MEMO_LENGTH_MAX + 4];
    if (tokens[at].type != BAL_JSON_STRING) return fail(d, BAL_DECODE_INVALID_MEMO, "memo must be a string or null");
    if (!bal_json_string_copy(body, &tokens[at], text, sizeof(text), &length) || length > BAL_MEMO_LENGTH_MAX) {
        return fail(d, BAL_DECODE_INVALID_MEMO, "memo must be at most 256 bytes");
    }
    if (memchr(text, '\0', length) != NULL) return fail(d, BAL_DECODE_INVALID_MEMO, "memo must not contain NUL");
    memcpy(c->memo, text, length);
    c->memo_length = (uint16_t)length;
    c->has_memo = 1;
    return BAL_DECODE_OK;
}

static bal_decode_error decode_leg(const char *body, const bal_json_token *tokens, uint32_t index,
                                   bal_leg *leg, bal_decode_diagnostic *d) {
    static const char *const names[] = {"account_id", "currency", "available_delta", "frozen_delta"};
    uint32_t at[4] = {0, 0, 0, 0};
    if (tokens[index].type != BAL_JSON_OBJECT) return fail(d, BAL_DECODE_INVALID_LEGS, "each leg must be an object");
    uint32_t key = index + 1;
    for (uint32_t m = 0; m < tokens[index].size; m++) {
        size_t k = 0;
        while (k < 4 && !bal_json_string_equals(body, &tokens[key], names[k])) k++;
        if (k == 4) return fail(d, BAL_DECODE_UNKNOWN_FIELD, "unknown field in leg");
        if (at[k] != 0) return fail(d, BAL_DECODE_INVALID_JSON, "leg field \"%s\" appears twice", names[k]);
        at[k] = key + 1;
        key = tokens[key + 1].next;
    }
    bal_decode_error e = decode_account(body, tokens, at[0], "leg account_id", &leg->account_id, d);
    if (e == BAL_DECODE_OK) e = decode_currency(body, tokens, at[1], &leg->currency, d);
    if (e == BAL_DECODE_OK && at[2] != 0) e = decode_amount(body, &tokens[at[2]], "available_delta", true, &leg->available_delta, d);
    if (e == BAL_DECODE_OK && at[3] != 0) e = decode_amount(body, &tokens[at[3]], "frozen_delta", true, &leg->frozen_delta, d);
    return e;
}

static bal_decode_error decode_legs(const char *body, const bal_json_token *tokens, uint32_t at,
                                    bal_command *c, bal_decode_diagnostic *d) {
    if (at == 0) return fail(d, BAL_DECODE_INVALID_LEGS, "legs is required for EVENT");
    const bal_json_token *array = &tokens[at];
    if (array->type != BAL_JSON_ARRAY || array->size == 0) return fail(d, BAL_DECODE_INVALID_LEGS, "legs must be a non-empty array");
    if (array->size > BAL_EVENT_LEGS_MAX) return fail(d, BAL_DECODE_TOO_MANY_LEGS, "an EVENT has at most 16 legs");
    uint32_t item = at + 1;
    for (uint32_t i = 0; i < array->size; i++, item = tokens[item].next) {
        bal_leg *leg = &c->legs[i];
        memset(leg, 0, sizeof(*leg));
        bal_decode_error e = decode_leg(body, tokens, item, leg, d);
        if (e != BAL_DECODE_OK) return e;
        for (uint32_t j = 0; j < i; j++) {
            if (c->legs[j].account_id == leg->account_id && c->legs[j].currency.code == leg->currency.code) {
                return fail(d, BAL_DECODE_INVALID_LEGS, "two legs touch the same account and currency");
            }
        }
    }
    c->leg_count = (uint8_t)array->size;
    c->account_id = c->legs[0].account_id;
    c->currency = c->legs[0].currency;
    return BAL_DECODE_OK;
}

static bal_decode_error decode_typed(const char *body, const bal_json_token *tokens, const fields *f,
                                     bal_command *c, bal_decode_diagnostic *d) {
    if (f->legs != 0) return fail(d, BAL_DECODE_INVALID_LEGS, "legs is only allowed for EVENT");
    bal_decode_error e = decode_account(body, tokens, f->account_id, "account_id", &c->account_id, d);
    if (e == BAL_DECODE_OK) e = decode_currency(body, tokens, f->currency, &c->currency, d);
    if (e != BAL_DECODE_OK) return e;
    if (f->amount == 0) return fail(d, BAL_DECODE_INVALID_AMOUNT, "amount is required");
    e = decode_amount(body, &tokens[f->amount], "amount", false, &c->amount, d);
    if (e != BAL_DECODE_OK) return e;
    if (c->amount == 0) return fail(d, BAL_DECODE_INVALID_AMOUNT, "amount must be greater than 0");
    if (c->type != BAL_OP_TRANSFER) {
        if (f->to_account_id != 0) return fail(d, BAL_DECODE_INVALID_ACCOUNT, "to_account_id is only allowed for TRANSFER");
        return BAL_DECODE_OK;
    }
    e = decode_account(body, tokens, f->to_account_id, "to_account_id", &c->to_account_id, d);
    if (e == BAL_DECODE_OK && c->to_account_id == c->account_id) {
        return fail(d, BAL_DECODE_INVALID_ACCOUNT, "a TRANSFER must go to another account");
    }
    return e;
}

/* Reads a valid transaction_id member, if any, so that an error about another field can
 * still name the transaction it belongs to. */
static void note_transaction_id(const char *body, const bal_json_token *tokens, uint32_t index,
                                bal_decode_diagnostic *d) {
    if (tokens[index].type != BAL_JSON_OBJECT) return;
    uint32_t key = index + 1;
    for (uint32_t m = 0; m < tokens[index].size; m++) {
        const bal_json_token *value = &tokens[key + 1];
        if (bal_json_string_equals(body, &tokens[key], "transaction_id") && value->type == BAL_JSON_STRING &&
            !value->escaped && bal_transaction_id_valid(body + value->start, value->length)) {
            memcpy(d->transaction_id, body + value->start, value->length);
            d->transaction_id[value->length] = '\0';
            return;
        }
        key = value->next;
    }
}

bal_decode_error bal_decode_object(const char *body, const bal_json_token *tokens, uint32_t index,
                                   int64_t time_ms, bal_command *c, bal_decode_diagnostic *d) {
    assert(body != NULL && tokens != NULL && c != NULL && d != NULL);
    memset(d, 0, sizeof(*d));
    note_transaction_id(body, tokens, index, d);
    memset(c, 0, offsetof(bal_command, memo)); /* memo and legs are written when present */
    c->time_ms = time_ms;
    fields f;
    bal_decode_error e = collect_fields(body, tokens, index, &f, d);
    if (e == BAL_DECODE_OK) e = decode_transaction_id(body, tokens, f.transaction_id, c, d);
    if (e == BAL_DECODE_OK) e = decode_type(body, tokens, f.type, c, d);
    if (e == BAL_DECODE_OK) e = decode_memo(body, tokens, f.memo, c, d);
    if (e != BAL_DECODE_OK) return e;
    if (c->type != BAL_OP_EVENT) {
        e = decode_typed(body, tokens, &f, c, d);
    } else if (f.account_id != 0 || f.to_account_id != 0) {
        e = fail(d, BAL_DECODE_INVALID_ACCOUNT, "an EVENT names its accounts in its legs");
    } else if (f.currency != 0) {
        e = fail(d, BAL_DECODE_INVALID_CURRENCY, "an EVENT names its currencies in its legs");
    } else if (f.amount != 0) {
        e = fail(d, BAL_DECODE_INVALID_AMOUNT, "an EVENT carries deltas in its legs, not an amount");
    } else {
        e = decode_legs(body, tokens, f.legs, c, d);
    }
    assert(e != BAL_DECODE_OK || bal_command_valid(c));
    return e;
}

static bal_decode_error tokenize(const char *body, size_t length, bal_json_token *tokens,
                                 uint32_t token_max, bal_decode_diagnostic *d) {
    uint32_t count = 0;
    size_t offset = 0;
    bal_json_status status = bal_json_parse(body, length, tokens, token_max, &count, &offset);
    if (status == BAL_JSON_OK) return BAL_DECODE_OK;
    return fail(d, BAL_DECODE_INVALID_JSON, "body is not valid JSON (%s at byte %zu)",
                bal_json_status_name(status), offset);
}

bal_decode_error bal_decode_transaction(const char *body, size_t length, bal_json_token *tokens,
                                        uint32_t token_max, int64_t time_ms,
                                        bal_command *command_out, bal_decode_diagnostic *d) {
    assert(d != NULL);
    memset(d, 0, sizeof(*d));
    bal_decode_error e = tokenize(body, length, tokens, token_max, d);
    if (e != BAL_DECODE_OK) return e;
    return bal_decode_object(body, tokens, 0, time_ms, command_out, d);
}

bal_decode_error bal_decode_batch(const char *body, size_t length, bal_json_token *tokens,
                                  uint32_t token_max, uint32_t *first_item_out, uint32_t *count_out,
                                  bal_decode_diagnostic *d) {
    assert(first_item_out != NULL && count_out != NULL && d != NULL);
    memset(d, 0, sizeof(*d));
    bal_decode_error e = tokenize(body, length, tokens, token_max, d);
    if (e != BAL_DECODE_OK) return e;
    if (tokens[0].type != BAL_JSON_OBJECT || tokens[0].size != 1 ||
        !bal_json_string_equals(body, &tokens[1], "transactions") || tokens[2].type != BAL_JSON_ARRAY) {
        return fail(d, BAL_DECODE_INVALID_BATCH, "a batch is {\"transactions\": [ ... ]}");
    }
    if (tokens[2].size > BAL_BATCH_ITEMS_MAX) {
        return fail(d, BAL_DECODE_BATCH_TOO_LARGE, "a batch holds at most 8192 transactions");
    }
    *first_item_out = 3;
    *count_out = tokens[2].size;
    return BAL_DECODE_OK;
}
