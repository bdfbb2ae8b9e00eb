/*
 * bal_money.h -- exact fixed-point money.
 *
 * An amount is a signed 128-bit integer counting units of 10^-18 (MySQL DECIMAL(36,18)).
 * Valid balances and operation amounts lie in [0, BAL_MONEY_MAX]; signed deltas (EVENT legs)
 * lie in [-BAL_MONEY_MAX, BAL_MONEY_MAX]. Arithmetic is checked: the add/subtract helpers
 * report overflow beyond BAL_MONEY_MAX in magnitude instead of wrapping.
 *
 * Text form (SPEC): plain decimal, no exponent, no sign (unless signed parsing is asked
 * for), at most 18 integer and 18 fractional digits. Output is canonical: no leading
 * zeros, no trailing fractional zeros, no trailing dot ("100.5", "0").
 */
#ifndef BAL_MONEY_H
#define BAL_MONEY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bal_limits.h"

__extension__ typedef __int128 bal_amount;

/* 10^18: one whole unit. */
#define BAL_MONEY_ONE ((bal_amount)1000000000000000000ll)
/* 10^36 - 1: the largest DECIMAL(36,18) value, 999999999999999999.999999999999999999. */
#define BAL_MONEY_MAX (BAL_MONEY_ONE * BAL_MONEY_ONE - 1)

typedef enum bal_money_status {
    BAL_MONEY_OK = 0,
    BAL_MONEY_EMPTY,          /* no characters */
    BAL_MONEY_SYNTAX,         /* a character that is not a digit or a single inner dot */
    BAL_MONEY_SIGN,           /* a sign where none is allowed, or '+' anywhere */
    BAL_MONEY_TOO_MANY_INTEGER_DIGITS,
    BAL_MONEY_TOO_MANY_FRACTION_DIGITS,
} bal_money_status;

/* Parses an unsigned amount ("0", "100", "0.000000000000000001"). Leading zeros are
 * accepted ("007" is 7) and count towards no limit; "1." and ".5" are syntax errors. */
bal_money_status bal_money_parse(const char *text, size_t length, bal_amount *amount_out);

/* Parses a signed amount: an optional leading '-' then an unsigned amount. "-0" is 0. */
bal_money_status bal_money_parse_signed(const char *text, size_t length, bal_amount *amount_out);

/* Writes the canonical text of amount (which must satisfy |amount| <= BAL_MONEY_MAX) into
 * buffer, which must hold at least BAL_MONEY_TEXT_MAX + 1 bytes; NUL-terminates; returns
 * the length. */
size_t bal_money_format(bal_amount amount, char *buffer);

/* Checked arithmetic: false (and *result_out untouched) if the exact result leaves
 * [-BAL_MONEY_MAX, BAL_MONEY_MAX]. Operands must lie in that range. */
bool bal_money_add(bal_amount a, bal_amount b, bal_amount *result_out);
bool bal_money_sub(bal_amount a, bal_amount b, bal_amount *result_out);

static inline bool bal_money_in_range(bal_amount a) {
    return a >= -BAL_MONEY_MAX && a <= BAL_MONEY_MAX;
}

const char *bal_money_status_name(bal_money_status status);

#endif
