/*
 * bal_test_outcome.h -- an outcome with its balance changes inline, for tests that want
 * to compare outcomes as values, and a wrapper around bal_ledger_apply that fills them.
 */
#ifndef BAL_TEST_OUTCOME_H
#define BAL_TEST_OUTCOME_H

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "bal_ledger.h"

typedef struct bal_test_outcome {
    uint64_t sequence;
    uint8_t result;
    bool duplicate;
    uint8_t change_count;
    bal_change changes[BAL_COMMAND_BALANCES_MAX];
} bal_test_outcome;

/* The head of a test outcome as the core's type, its changes starting at index 0. */
static inline bal_outcome bal_test_outcome_head(const bal_test_outcome *full) {
    bal_outcome head = {full->sequence, 0, full->result, full->duplicate, full->change_count};
    return head;
}

/* Applies n commands (n small: at most 512); recalled as bal_ledger_apply takes it. */
static inline void bal_test_apply(bal_ledger *ledger, const bal_command *commands, size_t n,
                                  const bal_ledger_recall *recalled, bal_test_outcome *out) {
    enum { MAX = 512 };
    static bal_outcome outcomes[MAX];
    static bal_change changes[MAX * BAL_COMMAND_BALANCES_MAX];
    assert(n <= MAX);
    bal_ledger_apply(ledger, commands, n, recalled, outcomes, changes);
    for (size_t i = 0; i < n; i++) {
        memset(&out[i], 0, sizeof(out[i]));
        out[i].sequence = outcomes[i].sequence;
        out[i].result = outcomes[i].result;
        out[i].duplicate = outcomes[i].duplicate;
        out[i].change_count = outcomes[i].change_count;
        memcpy(out[i].changes, &changes[outcomes[i].first_change], outcomes[i].change_count * sizeof(bal_change));
    }
}

#endif
