/*
 * bench_core.c -- the ledger core alone: no I/O, no decoding, one thread.
 *
 * Each figure applies batches of BATCH commands; only the bal_ledger_apply calls are
 * timed (the commands of a batch are filled from pre-drawn random numbers before the
 * clock starts). Every figure runs ROUNDS times and reports the median.
 *
 *   uniform-1M-accounts      DEPOSIT/WITHDRAW/FREEZE/UNFREEZE/TRANSFER over 1M accounts, no ids
 *   hot-1K-accounts          the same over 1K accounts
 *   idempotent-1M-accounts   as uniform, each command with a fresh transaction id that is
 *                            checked and remembered (1M ids in memory, the oldest evicted)
 *   event-4-legs             trade settlements: 4 legs over 2 accounts x 2 currencies
 *   memory bytes/balance     the balance table's bytes divided by its capacity
 *
 * Usage: bench_core [FIGURE [OPS_PER_ROUND]]: one figure only, and fewer operations (for
 * profiling under callgrind, where the instruction counts per operation are what matters).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bal_ledger.h"

#define BATCH 4096
#define ROUNDS 3
#define OPS_PER_ROUND_DEFAULT (8u * 1000 * 1000)

static uint64_t ops_per_round = OPS_PER_ROUND_DEFAULT; /* argv[2]: fewer, for callgrind */

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* Wall-clock time; build with -DBENCH_CLOCK=CLOCK_THREAD_CPUTIME_ID on a machine shared
 * with other jobs to leave out the time the thread spends descheduled. */
#ifndef BENCH_CLOCK
#define BENCH_CLOCK CLOCK_MONOTONIC
#endif

static double now_s(void) {
    struct timespec t;
    clock_gettime(BENCH_CLOCK, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static bal_currency currency(const char *text) {
    bal_currency c;
    bal_currency_parse(text, strlen(text), &c);
    return c;
}

static bal_ledger *make_ledger(uint64_t accounts) {
    bal_ledger_config config;
    bal_ledger_config_default(&config);
    config.balance_capacity = accounts * 2 + 1024;
    config.idempotency_count_max = 1u << 20;
    config.idempotency_bytes_max = 160ull << 20;
    bal_ledger *ledger = NULL;
    if (bal_ledger_create(&config, &ledger) != BAL_LEDGER_OK) abort();
    return ledger;
}

static bal_command *commands;
static bal_outcome *outcomes;
static bal_change *changes;

static void deposit(bal_command *c, uint64_t account_id, bal_currency currency) {
    memset(c, 0, offsetof(bal_command, memo));
    c->type = BAL_OP_DEPOSIT;
    c->account_id = account_id;
    c->currency = currency;
    c->amount = (bal_amount)1000000 * BAL_MONEY_ONE;
}

/* Funds every account in both currencies so that most operations succeed. */
static void fund(bal_ledger *ledger, uint64_t accounts) {
    bal_currency usdt = currency("USDT"), btc = currency("BTC");
    size_t n = 0;
    for (uint64_t a = 1; a <= accounts; a++) {
        deposit(&commands[n++], a, usdt);
        deposit(&commands[n++], a, btc);
        if (n + 2 > BATCH || a == accounts) {
            bal_ledger_apply(ledger, commands, n, NULL, outcomes, changes);
            n = 0;
        }
    }
}

typedef enum mode { MODE_TYPED, MODE_IDEMPOTENT, MODE_EVENT } mode;

static uint64_t id_counter;

static void fill(bal_command *c, mode m, uint64_t accounts, bal_currency usdt, bal_currency btc) {
    uint64_t r = rnd();
    memset(c, 0, offsetof(bal_command, memo));
    c->account_id = 1 + r % accounts;
    if (m == MODE_EVENT) {
        uint64_t other = 1 + (r >> 20) % accounts;
        if (other == c->account_id) other = other % accounts + 1;
        bal_amount price = (bal_amount)((r >> 40) % 1000 + 1) * BAL_MONEY_ONE / 100;
        bal_amount qty = BAL_MONEY_ONE / 1000;
        c->type = BAL_OP_EVENT;
        c->leg_count = 4;
        c->legs[0] = (bal_leg){c->account_id, usdt, -price, 0};
        c->legs[1] = (bal_leg){c->account_id, btc, qty, 0};
        c->legs[2] = (bal_leg){other, btc, -qty, 0};
        c->legs[3] = (bal_leg){other, usdt, price, 0};
        c->currency = usdt;
        return;
    }
    static const uint8_t types[8] = {BAL_OP_DEPOSIT, BAL_OP_WITHDRAW, BAL_OP_DEPOSIT, BAL_OP_WITHDRAW,
                                     BAL_OP_FREEZE, BAL_OP_UNFREEZE, BAL_OP_TRANSFER, BAL_OP_DEPOSIT};
    c->type = types[(r >> 61) & 7];
    c->currency = (r >> 60) & 1 ? usdt : btc;
    c->amount = (bal_amount)((r >> 24) % 1000 + 1) * BAL_MONEY_ONE / 1000;
    if (c->type == BAL_OP_TRANSFER) {
        c->to_account_id = 1 + (r >> 16) % accounts;
        if (c->to_account_id == c->account_id) c->to_account_id = c->to_account_id % accounts + 1;
    }
    if (m == MODE_IDEMPOTENT) {
        c->transaction_id_length = (uint8_t)snprintf(c->transaction_id, sizeof(c->transaction_id),
                                                     "bench-%" PRIu64, id_counter++);
        c->time_ms = (int64_t)(id_counter / 1000);
    }
}

__attribute__((noinline)) static double run_round(bal_ledger *ledger, mode m, uint64_t accounts) {
    bal_currency usdt = currency("USDT"), btc = currency("BTC");
    double elapsed = 0;
    uint64_t ops = m == MODE_EVENT ? ops_per_round / 4 : ops_per_round;
    for (uint64_t done = 0; done < ops; done += BATCH) {
        for (size_t i = 0; i < BATCH; i++) fill(&commands[i], m, accounts, usdt, btc);
        double start = now_s();
        bal_ledger_apply(ledger, commands, BATCH, NULL, outcomes, changes);
        elapsed += now_s() - start;
    }
    return (double)ops / elapsed;
}

static int compare(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static const char *only; /* argv[1]: run just this figure (for profiling) */

static void figure(const char *name, mode m, uint64_t accounts) {
    if (only != NULL && strcmp(only, name) != 0) return;
    bal_ledger *ledger = make_ledger(accounts);
    fund(ledger, accounts);
    double rates[ROUNDS];
    for (int r = 0; r < ROUNDS; r++) rates[r] = run_round(ledger, m, accounts);
    qsort(rates, ROUNDS, sizeof(double), compare);
    printf("core %s ops/s=%.0f\n", name, rates[ROUNDS / 2]);
    fflush(stdout);
    bal_ledger_destroy(ledger);
}

int main(int argc, char **argv) {
    only = argc > 1 ? argv[1] : NULL;
    if (argc > 2) ops_per_round = strtoull(argv[2], NULL, 10);
    if (ops_per_round < BATCH) ops_per_round = BATCH;
    commands = calloc(BATCH, sizeof(bal_command));
    outcomes = calloc(BATCH, sizeof(bal_outcome));
    changes = calloc((size_t)BATCH * BAL_COMMAND_BALANCES_MAX, sizeof(bal_change));
    figure("uniform-1M-accounts", MODE_TYPED, 1000000);
    figure("hot-1K-accounts", MODE_TYPED, 1000);
    figure("idempotent-1M-accounts", MODE_IDEMPOTENT, 1000000);
    figure("event-4-legs", MODE_EVENT, 1000000);
    bal_ledger_config config;
    bal_ledger_config_default(&config);
    config.balance_capacity = 1000000;
    bal_ledger *ledger = NULL;
    if (bal_ledger_create(&config, &ledger) != BAL_LEDGER_OK) abort();
    printf("core memory bytes/balance=%.0f\n",
           (double)bal_ledger_balance_memory_bytes(ledger) / (double)bal_ledger_balance_capacity(ledger));
    bal_ledger_destroy(ledger);
    free(commands);
    free(outcomes);
    free(changes);
    return 0;
}
