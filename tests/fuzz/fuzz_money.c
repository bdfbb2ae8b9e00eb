/* Fuzzes the money parser: whatever it accepts lies in range, formats canonically, and
 * parses back to the same value; the signed parser agrees with the unsigned one. */
#include <assert.h>
#include <stdint.h>
#include <string.h>

#include "bal_money.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *text = (const char *)data;
    bal_amount amount = -1;
    bal_money_status status = bal_money_parse(text, size, &amount);
    bal_amount signed_amount = 0;
    bal_money_status signed_status = bal_money_parse_signed(text, size, &signed_amount);
    if (status == BAL_MONEY_OK) {
        assert(amount >= 0 && amount <= BAL_MONEY_MAX);
        assert(signed_status == BAL_MONEY_OK && signed_amount == amount);
        char canonical[BAL_MONEY_TEXT_MAX + 1];
        size_t length = bal_money_format(amount, canonical);
        bal_amount back = -1;
        assert(bal_money_parse(canonical, length, &back) == BAL_MONEY_OK && back == amount);
        /* Canonical: no leading zero (unless "0..."), no trailing fractional zero or dot. */
        assert(length > 0 && canonical[length - 1] != '.');
        assert(!(length > 1 && canonical[0] == '0' && canonical[1] != '.'));
        if (memchr(canonical, '.', length) != NULL) assert(canonical[length - 1] != '0');
    }
    if (signed_status == BAL_MONEY_OK) {
        assert(bal_money_in_range(signed_amount));
        char canonical[BAL_MONEY_TEXT_MAX + 1];
        size_t length = bal_money_format(signed_amount, canonical);
        bal_amount back = 0;
        assert(bal_money_parse_signed(canonical, length, &back) == BAL_MONEY_OK && back == signed_amount);
    }
    return 0;
}
