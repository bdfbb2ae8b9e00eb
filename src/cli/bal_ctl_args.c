/*
 * bal_ctl_args.c -- local checks of command-line values, with the server's own rules.
 *
 * The client refuses what the server would refuse before sending anything, so that a
 * typo costs a usage message rather than a round trip; the checks reuse the core's
 * parsers (bal_money, bal_types, bal_decode) so that the two sides cannot drift apart.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "bal_ctl.h"
#include "bal_decode.h"
#include "bal_money.h"
#include "bal_types.h"

void bal_ctl_error_set(bal_ctl_error *error, const char *code, const char *format, ...) {
    snprintf(error->code, sizeof(error->code), "%s", code);
    error->message[0] = '\0';
    if (format == NULL) return;
    va_list args;
    va_start(args, format);
    vsnprintf(error->message, sizeof(error->message), format, args);
    va_end(args);
}

void bal_ctl_error_print(const bal_ctl_error *error) {
    fflush(stdout); /* what was printed before the error comes first in a shared log */
    fputs("balancectl: ", stderr);
    bal_ctl_print_safe(stderr, error->code);
    if (error->message[0] != '\0') {
        fputs(": ", stderr);
        bal_ctl_print_safe(stderr, error->message);
    }
    fputc('\n', stderr);
}

bool bal_ctl_check_account(const char *text, const char *what, uint64_t *account_out, bal_ctl_error *error) {
    if (bal_decode_account_id(text, strlen(text), account_out)) return true;
    bal_ctl_error_set(error, "usage", "%s must be an account id from 1 to 18446744073709551615 without leading "
                      "zeros, not \"%.40s\"", what, text);
    return false;
}

bool bal_ctl_check_currency(const char *text, const char *what, bal_ctl_error *error) {
    bal_currency currency;
    if (bal_currency_parse(text, strlen(text), &currency)) return true;
    bal_ctl_error_set(error, "usage", "%s must be 1 to 10 characters of A-Z 0-9 (upper case), not \"%.40s\"",
                      what, text);
    return false;
}

static bool check_money(const char *text, const char *what, bool is_signed, char *canonical_out,
                        bal_ctl_error *error) {
    bal_amount amount = 0;
    size_t length = strlen(text);
    bal_money_status status = is_signed ? bal_money_parse_signed(text, length, &amount)
                                        : bal_money_parse(text, length, &amount);
    if (status != BAL_MONEY_OK) {
        bal_ctl_error_set(error, "usage", "%s must be a plain decimal%s with at most 18 integer and 18 "
                          "fractional digits, not \"%.60s\" (%s)", what, is_signed ? "" : " without sign",
                          text, bal_money_status_name(status));
        return false;
    }
    if (!is_signed && amount == 0) {
        bal_ctl_error_set(error, "usage", "%s must be greater than zero", what);
        return false;
    }
    /* The canonical form is what the server answers with, so echoes compare equal. */
    bal_money_format(amount, canonical_out);
    return true;
}

bool bal_ctl_check_amount(const char *text, const char *what, char *canonical_out, bal_ctl_error *error) {
    return check_money(text, what, false, canonical_out, error);
}

bool bal_ctl_check_delta(const char *text, const char *what, char *canonical_out, bal_ctl_error *error) {
    return check_money(text, what, true, canonical_out, error);
}

bool bal_ctl_check_transaction_id(const char *text, bal_ctl_error *error) {
    if (bal_transaction_id_valid(text, strlen(text))) return true;
    bal_ctl_error_set(error, "usage", "transaction id must be 1 to 64 characters of A-Z a-z 0-9 . _ : -, "
                      "not \"%.80s\"", text);
    return false;
}

/* Length of a well-formed UTF-8 sequence at s (at most `available` bytes), or 0. */
static size_t utf8_sequence(const unsigned char *s, size_t available) {
    unsigned char c = s[0];
    size_t need;
    uint32_t min, cp;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) { need = 2; min = 0x80; cp = c & 0x1Fu; }
    else if (c >= 0xE0 && c <= 0xEF) { need = 3; min = 0x800; cp = c & 0x0Fu; }
    else if (c >= 0xF0 && c <= 0xF4) { need = 4; min = 0x10000; cp = c & 0x07u; }
    else return 0;
    if (available < need) return 0;
    for (size_t i = 1; i < need; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3Fu);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return need;
}

bool bal_ctl_utf8_valid(const char *bytes, size_t length) {
    const unsigned char *s = (const unsigned char *)bytes;
    for (size_t i = 0; i < length;) {
        size_t n = utf8_sequence(s + i, length - i);
        if (n == 0) return false;
        i += n;
    }
    return true;
}

bool bal_ctl_check_memo(const char *text, size_t length, bal_ctl_error *error) {
    if (length > BAL_MEMO_LENGTH_MAX) {
        bal_ctl_error_set(error, "usage", "memo must be at most %d bytes (it has %zu)", BAL_MEMO_LENGTH_MAX, length);
        return false;
    }
    if (memchr(text, '\0', length) != NULL) {
        bal_ctl_error_set(error, "usage", "memo must not contain NUL");
        return false;
    }
    /* JSON strings are UTF-8: the server refuses anything else as invalid_json. */
    if (!bal_ctl_utf8_valid(text, length)) {
        bal_ctl_error_set(error, "usage", "memo must be valid UTF-8");
        return false;
    }
    return true;
}

bool bal_ctl_random(void *buffer, size_t length, bal_ctl_error *error) {
    unsigned char *bytes = buffer;
    while (length > 0) {
        ssize_t n = getrandom(bytes, length, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            bal_ctl_error_set(error, "random_failed", "getrandom: %s", strerror(errno));
            return false;
        }
        bytes += n;
        length -= (size_t)n;
    }
    return true;
}

int64_t bal_ctl_now_ms(void) {
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

bool bal_ctl_generate_id(char *out, size_t size, bal_ctl_error *error) {
    /* Time orders ids for people reading a journal; 64 random bits make collisions
     * between concurrent invocations negligible. */
    static const char hex[] = "0123456789abcdef";
    uint8_t random[8];
    char digits[2 * sizeof(random) + 1];
    if (!bal_ctl_random(random, sizeof(random), error)) return false;
    for (size_t i = 0; i < sizeof(random); i++) {
        digits[2 * i] = hex[random[i] >> 4];
        digits[2 * i + 1] = hex[random[i] & 15];
    }
    digits[2 * sizeof(random)] = '\0';
    snprintf(out, size, "ctl-%lld-%s", (long long)bal_ctl_now_ms(), digits);
    return bal_ctl_check_transaction_id(out, error);
}
