/*
 * bal_money.c -- parse, format and checked arithmetic for DECIMAL(36,18) amounts.
 *
 * The parser is strict and allocation-free: it walks the text once, accumulating the
 * integer and fractional parts separately in 64-bit integers (18 digits fit), then
 * combines them into the 128-bit unit count. The formatter writes digits from the right.
 */
#include "bal_money.h"

#include <assert.h>
#include <string.h>

static const uint64_t pow10_u64[19] = {
    1ull, 10ull, 100ull, 1000ull, 10000ull, 100000ull, 1000000ull, 10000000ull,
    100000000ull, 1000000000ull, 10000000000ull, 100000000000ull, 1000000000000ull,
    10000000000000ull, 100000000000000ull, 1000000000000000ull, 10000000000000000ull,
    100000000000000000ull, 1000000000000000000ull,
};

bal_money_status bal_money_parse(const char *text, size_t length, bal_amount *amount_out) {
    assert(amount_out != NULL);
    if (length == 0) return BAL_MONEY_EMPTY;
    assert(text != NULL);
    if (text[0] == '-' || text[0] == '+') return BAL_MONEY_SIGN;

    size_t i = 0;
    /* Leading zeros never count towards the digit limit. */
    while (i + 1 < length && text[i] == '0' && text[i + 1] >= '0' && text[i + 1] <= '9') i++;

    uint64_t integer = 0;
    size_t integer_digits = 0;
    for (; i < length && text[i] >= '0' && text[i] <= '9'; i++) {
        if (integer_digits == BAL_MONEY_INTEGER_DIGITS_MAX) return BAL_MONEY_TOO_MANY_INTEGER_DIGITS;
        integer = integer * 10 + (uint64_t)(text[i] - '0');
        integer_digits++;
    }
    if (integer_digits == 0) return BAL_MONEY_SYNTAX; /* ".5", "", "abc" */

    uint64_t fraction = 0;
    size_t fraction_digits = 0;
    if (i < length && text[i] == '.') {
        i++;
        for (; i < length && text[i] >= '0' && text[i] <= '9'; i++) {
            if (fraction_digits == BAL_MONEY_SCALE_DIGITS) return BAL_MONEY_TOO_MANY_FRACTION_DIGITS;
            fraction = fraction * 10 + (uint64_t)(text[i] - '0');
            fraction_digits++;
        }
        if (fraction_digits == 0) return BAL_MONEY_SYNTAX; /* "1." */
    }
    if (i != length) {
        return (text[i] == '-' || text[i] == '+') ? BAL_MONEY_SIGN : BAL_MONEY_SYNTAX;
    }

    fraction *= pow10_u64[BAL_MONEY_SCALE_DIGITS - fraction_digits];
    bal_amount amount = (bal_amount)integer * BAL_MONEY_ONE + (bal_amount)fraction;
    assert(amount >= 0 && amount <= BAL_MONEY_MAX);
    *amount_out = amount;
    return BAL_MONEY_OK;
}

bal_money_status bal_money_parse_signed(const char *text, size_t length, bal_amount *amount_out) {
    assert(amount_out != NULL);
    if (length > 0 && text[0] == '-') {
        bal_amount magnitude = 0;
        bal_money_status status = bal_money_parse(text + 1, length - 1, &magnitude);
        if (status == BAL_MONEY_EMPTY) return BAL_MONEY_SYNTAX; /* a lone "-" */
        if (status != BAL_MONEY_OK) return status;
        *amount_out = -magnitude;
        return BAL_MONEY_OK;
    }
    return bal_money_parse(text, length, amount_out);
}

size_t bal_money_format(bal_amount amount, char *buffer) {
    assert(buffer != NULL);
    assert(bal_money_in_range(amount));
    char digits[BAL_MONEY_TEXT_MAX + 1];
    bool negative = amount < 0;
    /* |amount| <= 10^36 - 1 < 2^127: negation cannot overflow. */
    unsigned __int128 magnitude = negative ? (unsigned __int128)(-amount) : (unsigned __int128)amount;
    uint64_t integer = (uint64_t)(magnitude / (unsigned __int128)BAL_MONEY_ONE);
    uint64_t fraction = (uint64_t)(magnitude % (unsigned __int128)BAL_MONEY_ONE);

    size_t length = 0;
    if (negative) digits[length++] = '-';
    char integer_text[BAL_MONEY_INTEGER_DIGITS_MAX + 1];
    size_t integer_length = 0;
    do {
        integer_text[integer_length++] = (char)('0' + integer % 10);
        integer /= 10;
    } while (integer != 0);
    assert(integer_length <= BAL_MONEY_INTEGER_DIGITS_MAX);
    while (integer_length > 0) digits[length++] = integer_text[--integer_length];

    if (fraction != 0) {
        digits[length++] = '.';
        int fraction_digits = BAL_MONEY_SCALE_DIGITS;
        while (fraction % 10 == 0) {
            fraction /= 10;
            fraction_digits--;
        }
        for (int d = fraction_digits - 1; d >= 0; d--) {
            digits[length + (size_t)d] = (char)('0' + fraction % 10);
            fraction /= 10;
        }
        length += (size_t)fraction_digits;
    }
    assert(length <= BAL_MONEY_TEXT_MAX);
    memcpy(buffer, digits, length);
    buffer[length] = '\0';
    return length;
}

bool bal_money_add(bal_amount a, bal_amount b, bal_amount *result_out) {
    assert(bal_money_in_range(a) && bal_money_in_range(b));
    bal_amount sum = a + b; /* |a + b| < 2 * 10^36 < 2^127: no wrap. */
    if (!bal_money_in_range(sum)) return false;
    *result_out = sum;
    return true;
}

bool bal_money_sub(bal_amount a, bal_amount b, bal_amount *result_out) {
    assert(bal_money_in_range(a) && bal_money_in_range(b));
    bal_amount difference = a - b;
    if (!bal_money_in_range(difference)) return false;
    *result_out = difference;
    return true;
}

const char *bal_money_status_name(bal_money_status status) {
    switch (status) {
    case BAL_MONEY_OK: return "ok";
    case BAL_MONEY_EMPTY: return "empty";
    case BAL_MONEY_SYNTAX: return "syntax";
    case BAL_MONEY_SIGN: return "sign";
    case BAL_MONEY_TOO_MANY_INTEGER_DIGITS: return "too_many_integer_digits";
    case BAL_MONEY_TOO_MANY_FRACTION_DIGITS: return "too_many_fraction_digits";
    }
    return "unknown";
}
