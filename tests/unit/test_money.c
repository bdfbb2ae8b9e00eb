/* Unit tests of bal_money: parse, format, checked arithmetic, and the round trip. */
#include "bal_money.h"
#include "bal_test.h"

static bal_money_status parse(const char *text, bal_amount *out) {
    return bal_money_parse(text, strlen(text), out);
}

static const char *fmt(bal_amount a) {
    static char buffer[BAL_MONEY_TEXT_MAX + 1];
    bal_money_format(a, buffer);
    return buffer;
}

static void test_edges(void) {
    bal_amount a = -1;
    CHECK(parse("0", &a) == BAL_MONEY_OK && a == 0);
    CHECK(parse("0.000000000000000001", &a) == BAL_MONEY_OK && a == 1);
    CHECK(parse("999999999999999999.999999999999999999", &a) == BAL_MONEY_OK && a == BAL_MONEY_MAX);
    CHECK(parse("1000000000000000000", &a) == BAL_MONEY_TOO_MANY_INTEGER_DIGITS); /* max + 1e-18 */
    CHECK(parse("0.0000000000000000001", &a) == BAL_MONEY_TOO_MANY_FRACTION_DIGITS);
    CHECK(parse("1234567890123456789", &a) == BAL_MONEY_TOO_MANY_INTEGER_DIGITS);
    CHECK(parse("007", &a) == BAL_MONEY_OK && a == 7 * BAL_MONEY_ONE);
    CHECK(parse("0000000000000000000000001.5", &a) == BAL_MONEY_OK && a == 15 * BAL_MONEY_ONE / 10);
    CHECK(parse("1.", &a) == BAL_MONEY_SYNTAX);
    CHECK(parse(".5", &a) == BAL_MONEY_SYNTAX);
    CHECK(parse("-1", &a) == BAL_MONEY_SIGN);
    CHECK(parse("+1", &a) == BAL_MONEY_SIGN);
    CHECK(parse("1e5", &a) == BAL_MONEY_SYNTAX);
    CHECK(parse(" 1", &a) == BAL_MONEY_SYNTAX);
    CHECK(parse("1 ", &a) == BAL_MONEY_SYNTAX);
    CHECK(parse("", &a) == BAL_MONEY_EMPTY);
    CHECK(parse("1.2.3", &a) == BAL_MONEY_SYNTAX);
    CHECK(parse("1,5", &a) == BAL_MONEY_SYNTAX);
    CHECK(parse("\xd9\xa1", &a) == BAL_MONEY_SYNTAX);            /* Arabic-Indic one */
    CHECK(parse("\xef\xbc\x91", &a) == BAL_MONEY_SYNTAX);        /* full-width one */
    CHECK(parse("0x10", &a) == BAL_MONEY_SYNTAX);
    CHECK(parse("NaN", &a) == BAL_MONEY_SYNTAX);
    char long_text[5000];
    memset(long_text, '9', sizeof(long_text) - 1);
    long_text[sizeof(long_text) - 1] = '\0';
    CHECK(parse(long_text, &a) == BAL_MONEY_TOO_MANY_INTEGER_DIGITS);
    memset(long_text, '0', sizeof(long_text) - 1);
    CHECK(parse(long_text, &a) == BAL_MONEY_OK && a == 0);
    CHECK(bal_money_parse("12", 1, &a) == BAL_MONEY_OK && a == BAL_MONEY_ONE); /* length bounds */
}

static void test_signed(void) {
    bal_amount a = 0;
    CHECK(bal_money_parse_signed("-1.5", 4, &a) == BAL_MONEY_OK && a == -15 * BAL_MONEY_ONE / 10);
    CHECK(bal_money_parse_signed("-0", 2, &a) == BAL_MONEY_OK && a == 0);
    CHECK(bal_money_parse_signed("-", 1, &a) == BAL_MONEY_SYNTAX);
    CHECK(bal_money_parse_signed("--1", 3, &a) == BAL_MONEY_SIGN);
    CHECK(bal_money_parse_signed("+1", 2, &a) == BAL_MONEY_SIGN);
    CHECK(bal_money_parse_signed("-999999999999999999.999999999999999999", 38, &a) == BAL_MONEY_OK &&
          a == -BAL_MONEY_MAX);
}

static void test_format(void) {
    CHECK_STR(fmt(0), "0");
    CHECK_STR(fmt(1), "0.000000000000000001");
    CHECK_STR(fmt(BAL_MONEY_MAX), "999999999999999999.999999999999999999");
    CHECK_STR(fmt(-BAL_MONEY_MAX), "-999999999999999999.999999999999999999");
    CHECK_STR(fmt(100 * BAL_MONEY_ONE), "100");
    CHECK_STR(fmt(1005 * BAL_MONEY_ONE / 10), "100.5");
    CHECK_STR(fmt(BAL_MONEY_ONE / 10), "0.1");
    CHECK_STR(fmt(-BAL_MONEY_ONE / 1000), "-0.001");
}

static void test_arithmetic(void) {
    bal_amount r = 0;
    CHECK(bal_money_add(BAL_MONEY_MAX, 0, &r) && r == BAL_MONEY_MAX);
    CHECK(!bal_money_add(BAL_MONEY_MAX, 1, &r));
    CHECK(bal_money_sub(0, BAL_MONEY_MAX, &r) && r == -BAL_MONEY_MAX);
    CHECK(!bal_money_sub(-BAL_MONEY_MAX, 1, &r));
    CHECK(!bal_money_add(-BAL_MONEY_MAX, -BAL_MONEY_MAX, &r));
    CHECK(bal_money_add(BAL_MONEY_MAX, -BAL_MONEY_MAX, &r) && r == 0);
}

/* format(parse(x)) is the canonical x, for random texts with random padding. */
static void test_round_trip(void) {
    uint64_t state = 0x9E3779B97F4A7C15ull;
    unsigned failures = 0;
    for (int i = 0; i < 200000; i++) {
        state ^= state << 13; state ^= state >> 7; state ^= state << 17;
        int integer_digits = (int)(state % 19), fraction_digits = (int)((state >> 8) % 19);
        char canonical[64], padded[96];
        size_t n = 0;
        uint64_t r = state;
        for (int d = 0; d < integer_digits; d++, r = r * 6364136223846793005ull + 1) {
            canonical[n++] = (char)('0' + (d == 0 ? 1 + (r >> 60) % 9 : (r >> 59) % 10));
        }
        if (integer_digits == 0) canonical[n++] = '0';
        int last_nonzero = -1;
        char fraction[20];
        for (int d = 0; d < fraction_digits; d++, r = r * 6364136223846793005ull + 1) {
            fraction[d] = (char)('0' + (r >> 59) % 10);
            if (fraction[d] != '0') last_nonzero = d;
        }
        if (last_nonzero >= 0) {
            canonical[n++] = '.';
            for (int d = 0; d <= last_nonzero; d++) canonical[n++] = fraction[d];
        }
        canonical[n] = '\0';
        /* The padded form: leading zeros and trailing fractional zeros. */
        int lead = (int)((state >> 20) % 3);
        size_t p = 0;
        for (int k = 0; k < lead; k++) padded[p++] = '0';
        memcpy(padded + p, canonical, n);
        p += n;
        if (fraction_digits > 0) {
            if (last_nonzero < 0) padded[p++] = '.';
            for (int d = last_nonzero + 1; d < fraction_digits; d++) padded[p++] = '0';
        }
        bal_amount a;
        char out[BAL_MONEY_TEXT_MAX + 1];
        if (bal_money_parse(padded, p, &a) != BAL_MONEY_OK) { failures++; continue; }
        bal_money_format(a, out);
        if (strcmp(out, canonical) != 0) failures++;
        bal_amount back;
        if (bal_money_parse(out, strlen(out), &back) != BAL_MONEY_OK || back != a) failures++;
    }
    CHECK(failures == 0);
}

/* Every amount of up to 4 significant digits at every scale: parse(format(a)) == a. */
static void test_exhaustive_small(void) {
    unsigned failures = 0;
    bal_amount scale = 1;
    for (int s = 0; s <= 33; s++, scale *= 10) {
        for (int v = 0; v < 10000; v++) {
            bal_amount a = (bal_amount)v * scale;
            if (a > BAL_MONEY_MAX) break;
            char out[BAL_MONEY_TEXT_MAX + 1];
            size_t n = bal_money_format(a, out);
            bal_amount back;
            if (bal_money_parse(out, n, &back) != BAL_MONEY_OK || back != a) failures++;
        }
    }
    CHECK(failures == 0);
}

int main(void) {
    test_edges();
    test_signed();
    test_format();
    test_arithmetic();
    test_round_trip();
    test_exhaustive_small();
    return bal_test_finish("test_money");
}
