/* Fuzzes the request decoder with arbitrary bodies, as a single transaction and as a
 * batch. Whatever it accepts must be a valid command, which a small ledger then applies
 * (its assertions check every invariant); whatever it refuses must carry a known code. */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bal_decode.h"
#include "bal_ledger.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_TOKENS_MAX 4096

static bal_ledger *ledger;
static bal_json_token tokens[FUZZ_TOKENS_MAX];

static void apply(const bal_command *command) {
    if (ledger == NULL) {
        bal_ledger_config config;
        bal_ledger_config_default(&config);
        config.balance_capacity = 64;
        config.idempotency_count_max = 64;
        config.idempotency_bytes_max = 1 << 16;
        if (bal_ledger_create(&config, &ledger) != BAL_LEDGER_OK) abort();
    }
    bal_outcome outcome;
    bal_change changes[BAL_COMMAND_BALANCES_MAX];
    bal_ledger_apply(ledger, command, 1, NULL, &outcome, changes);
    assert(outcome.result < BAL_RESULT_COUNT && outcome.first_change == 0);
    assert(outcome.change_count <= bal_command_balance_count(command));
    for (unsigned i = 0; i < outcome.change_count; i++) {
        assert(changes[i].available_after >= 0 && changes[i].frozen_after >= 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *body = (const char *)data;
    bal_command command;
    bal_decode_diagnostic diagnostic;
    bal_decode_error error = bal_decode_transaction(body, size, tokens, FUZZ_TOKENS_MAX, 1, &command, &diagnostic);
    assert((unsigned)error < BAL_DECODE_ERROR_COUNT);
    if (error == BAL_DECODE_OK) {
        assert(bal_command_valid(&command));
        apply(&command);
    } else {
        assert(diagnostic.error == error && strlen(diagnostic.message) > 0);
    }
    uint32_t first = 0, count = 0;
    if (bal_decode_batch(body, size, tokens, FUZZ_TOKENS_MAX, &first, &count, &diagnostic) == BAL_DECODE_OK) {
        uint32_t item = first;
        for (uint32_t i = 0; i < count; i++, item = tokens[item].next) {
            if (bal_decode_object(body, tokens, item, 1, &command, &diagnostic) == BAL_DECODE_OK) apply(&command);
        }
    }
    return 0;
}
