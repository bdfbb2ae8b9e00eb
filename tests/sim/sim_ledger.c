/*
 * sim_ledger.c -- a seeded randomized simulation of the ledger with an auditor.
 *
 * Generates random commands (hot and cold accounts, every type, extreme amounts,
 * deliberate duplicates and conflicts, jumps in time that expire ids from memory) and
 * checks every outcome against a reference model written the simple way: a chained hash
 * map of balances, a map of every id ever used (kept for ever), and plain if-statements
 * for the rules. The ledger under test runs with a small idempotency memory, so old ids
 * must come back through the look-up hook, which the reference's history answers like a
 * journal store would.
 *
 * After every batch: touched balances match the reference and are never negative; every
 * few batches: a full audit (all balances, per-currency conservation: the sum of all
 * balances equals deposits - withdrawals - deductions + EVENT net deltas), and a replay of
 * an earlier batch, which must change nothing. At the end the whole log is replayed into a
 * fresh ledger, which must reach the same state hash.
 *
 * Usage: sim_ledger SEED COUNT [--small]. It prints its seed; a failure prints the
 * command that reproduces it.
 */
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bal_ledger.h"
#include "bal_test.h"
#include "bal_test_outcome.h"

#define CURRENCY_COUNT 5
#define HOT_ACCOUNTS 8
#define COLD_ACCOUNTS 20000
#define BATCH_MAX 300

static uint64_t rng_state;
static uint64_t rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}
static uint64_t below(uint64_t n) { return rnd() % n; }

static const char *const currency_names[CURRENCY_COUNT] = {"USDT", "BTC", "ETH", "A1", "ZZZZZZZZZZ"};
static bal_currency currencies[CURRENCY_COUNT];

/* ---------------- the reference model ---------------- */
typedef struct ref_balance {
    uint64_t account_id;
    uint64_t currency_code;
    bal_amount available, frozen;
    struct ref_balance *next;
} ref_balance;

typedef struct ref_record {   /* an id, the request it was first used with, and its outcome */
    bal_command *command;     /* heap copy */
    bal_test_outcome *outcome;     /* heap copy */
    struct ref_record *next;
} ref_record;

#define REF_BUCKETS (1u << 20)
static ref_balance *balance_buckets[REF_BUCKETS];
static ref_record *id_buckets[REF_BUCKETS];
static ref_record **history;          /* in order, for duplicates and conflicts */
static size_t history_count, history_capacity;
static uint64_t ref_sequence;
static uint64_t ref_balance_count, ref_capacity;
/* Sums wrap modulo 2^128 on purpose: thousands of near-maximum balances exceed int128. */
static unsigned __int128 net_flow[CURRENCY_COUNT];

static uint32_t bucket_of(uint64_t a, uint64_t b) { return (uint32_t)((a * 1000003u + b * 7919u) % REF_BUCKETS); }

static ref_balance *ref_find(uint64_t account, uint64_t code, int create) {
    uint32_t b = bucket_of(account, code);
    for (ref_balance *r = balance_buckets[b]; r != NULL; r = r->next) {
        if (r->account_id == account && r->currency_code == code) return r;
    }
    if (!create) return NULL;
    ref_balance *r = calloc(1, sizeof(*r));
    r->account_id = account;
    r->currency_code = code;
    r->next = balance_buckets[b];
    balance_buckets[b] = r;
    return r;
}

static uint32_t id_bucket(const bal_command *c) {
    uint64_t h = 1469598103934665603ull;
    for (unsigned i = 0; i < c->transaction_id_length; i++) h = (h ^ (uint8_t)c->transaction_id[i]) * 1099511628211ull;
    return (uint32_t)(h % REF_BUCKETS);
}

static ref_record *ref_lookup(const bal_command *c) {
    for (ref_record *r = id_buckets[id_bucket(c)]; r != NULL; r = r->next) {
        if (r->command->transaction_id_length == c->transaction_id_length &&
            memcmp(r->command->transaction_id, c->transaction_id, c->transaction_id_length) == 0) return r;
    }
    return NULL;
}

/* Same request, compared field by field (not through the digest). */
static int same_request(const bal_command *a, const bal_command *b) {
    if (a->type != b->type || a->account_id != b->account_id || a->to_account_id != b->to_account_id ||
        a->currency.code != b->currency.code || a->amount != b->amount || a->has_memo != b->has_memo ||
        a->memo_length != b->memo_length || memcmp(a->memo, b->memo, a->memo_length) != 0 ||
        a->leg_count != b->leg_count) return 0;
    for (unsigned i = 0; i < a->leg_count; i++) {
        if (a->legs[i].account_id != b->legs[i].account_id || a->legs[i].currency.code != b->legs[i].currency.code ||
            a->legs[i].available_delta != b->legs[i].available_delta ||
            a->legs[i].frozen_delta != b->legs[i].frozen_delta) return 0;
    }
    return 1;
}

static int currency_index(uint64_t code) {
    for (int i = 0; i < CURRENCY_COUNT; i++) if (currencies[i].code == code) return i;
    return -1;
}

/* The rules, written out per type. Fills the expected outcome. */
static void ref_process(const bal_command *c, bal_test_outcome *o) {
    bal_leg legs[BAL_EVENT_LEGS_MAX];
    unsigned n = 1;
    memset(legs, 0, sizeof(legs));
    legs[0].account_id = c->account_id;
    legs[0].currency = c->currency;
    if (c->type == BAL_OP_DEPOSIT) legs[0].available_delta = c->amount;
    if (c->type == BAL_OP_WITHDRAW) legs[0].available_delta = -c->amount;
    if (c->type == BAL_OP_FREEZE) { legs[0].available_delta = -c->amount; legs[0].frozen_delta = c->amount; }
    if (c->type == BAL_OP_UNFREEZE) { legs[0].available_delta = c->amount; legs[0].frozen_delta = -c->amount; }
    if (c->type == BAL_OP_DEDUCT_FROZEN) legs[0].frozen_delta = -c->amount;
    if (c->type == BAL_OP_TRANSFER) {
        legs[0].available_delta = -c->amount;
        legs[1] = (bal_leg){c->to_account_id, c->currency, c->amount, 0};
        n = 2;
    }
    if (c->type == BAL_OP_EVENT) { n = c->leg_count; memcpy(legs, c->legs, n * sizeof(bal_leg)); }
    bal_result result = BAL_RESULT_OK;
    memset(o, 0, sizeof(*o));
    for (unsigned i = 0; i < n; i++) {
        ref_balance *b = ref_find(legs[i].account_id, legs[i].currency.code, 0);
        bal_amount a0 = b ? b->available : 0, f0 = b ? b->frozen : 0;
        bal_amount a1 = a0 + legs[i].available_delta, f1 = f0 + legs[i].frozen_delta;
        if (result == BAL_RESULT_OK) {
            if (a1 < 0) result = BAL_RESULT_INSUFFICIENT_AVAILABLE;
            else if (f1 < 0) result = BAL_RESULT_INSUFFICIENT_FROZEN;
            else if (a1 > BAL_MONEY_MAX || f1 > BAL_MONEY_MAX) result = BAL_RESULT_OVERFLOW;
        }
        o->changes[i] = (bal_change){legs[i].account_id, legs[i].currency, a0, a1, f0, f1};
    }
    if (result == BAL_RESULT_OK) {
        uint64_t creates = 0;
        for (unsigned i = 0; i < n; i++) {
            bal_change *ch = &o->changes[i];
            if ((ch->available_after > 0 || ch->frozen_after > 0) && !ref_find(ch->account_id, ch->currency.code, 0)) creates++;
        }
        if (creates > ref_capacity - ref_balance_count) result = BAL_RESULT_CAPACITY_EXCEEDED;
        ref_balance_count += result == BAL_RESULT_OK ? creates : 0;
    }
    o->change_count = (uint8_t)n;
    o->result = (uint8_t)result;
    o->sequence = ++ref_sequence;
    for (unsigned i = 0; i < n; i++) {
        bal_change *ch = &o->changes[i];
        if (result != BAL_RESULT_OK) {
            ch->available_after = ch->available_before;
            ch->frozen_after = ch->frozen_before;
            continue;
        }
        if (ch->available_after == 0 && ch->frozen_after == 0 && !ref_find(ch->account_id, ch->currency.code, 0)) continue;
        ref_balance *b = ref_find(ch->account_id, ch->currency.code, 1);
        b->available = ch->available_after;
        b->frozen = ch->frozen_after;
        net_flow[currency_index(ch->currency.code)] += (unsigned __int128)
            (ch->available_after - ch->available_before) + (ch->frozen_after - ch->frozen_before);
    }
}

static void ref_expect(const bal_command *c, bal_test_outcome *o) {
    ref_record *r = ref_lookup(c);
    if (r != NULL) {
        if (same_request(r->command, c)) {
            memset(o, 0, sizeof(*o));
            memcpy(o, r->outcome, offsetof(bal_test_outcome, changes) + r->outcome->change_count * sizeof(bal_change));
            o->duplicate = true;
            for (unsigned i = 0; i < o->change_count; i++) {
                o->changes[i].available_before = o->changes[i].available_after;
                o->changes[i].frozen_before = o->changes[i].frozen_after;
            }
        } else {
            memset(o, 0, sizeof(*o));
            o->result = BAL_RESULT_CONFLICT;
            o->sequence = r->outcome->sequence;
        }
        return;
    }
    ref_process(c, o);
    r = calloc(1, sizeof(*r));
    /* Compact copies: only the legs and changes in use (the history is large). */
    size_t command_bytes = offsetof(bal_command, legs) + c->leg_count * sizeof(bal_leg);
    size_t outcome_bytes = offsetof(bal_test_outcome, changes) + o->change_count * sizeof(bal_change);
    r->command = calloc(1, sizeof(bal_command));
    memcpy(r->command, c, command_bytes);
    r->outcome = calloc(1, outcome_bytes);
    memcpy(r->outcome, o, outcome_bytes);
    uint32_t b = id_bucket(c);
    r->next = id_buckets[b];
    id_buckets[b] = r;
    if (history_count == history_capacity) {
        history_capacity = history_capacity ? history_capacity * 2 : 4096;
        history = realloc(history, history_capacity * sizeof(*history));
    }
    history[history_count++] = r;
}

/* ---------------- the generator ---------------- */
static uint64_t next_id, seed;
static int64_t now_ms = 1700000000000;
static int64_t retention_ms;

static uint64_t pick_account(void) {
    return below(10) < 7 ? 1 + below(HOT_ACCOUNTS) : 100 + below(COLD_ACCOUNTS);
}

static bal_amount pick_amount(void) {
    uint64_t r = below(100);
    if (r < 70) return (bal_amount)(1 + below(1000000)) * 1000000000000ll;   /* up to 1M, 6 decimals */
    if (r < 80) return (bal_amount)(1 + below(1000)) * BAL_MONEY_ONE * 1000000;
    if (r < 88) return 1 + (bal_amount)below(10);                           /* a few 1e-18 */
    if (r < 95) return BAL_MONEY_MAX - (bal_amount)below(1000);            /* near the maximum */
    return BAL_MONEY_MAX;
}

static void gen_fresh(bal_command *c) {
    memset(c, 0, sizeof(*c));
    int n = snprintf(c->transaction_id, sizeof(c->transaction_id), "s%" PRIu64 "-%" PRIu64, seed, next_id++);
    c->transaction_id_length = (uint8_t)n;
    static const uint8_t weights[BAL_OP_COUNT] = {25, 12, 15, 10, 15, 8, 15}; /* by bal_op value */
    uint64_t r = below(100), acc = 0;
    for (int op = 0; op < BAL_OP_COUNT; op++) {
        acc += weights[op];
        if (r < acc) { c->type = (uint8_t)op; break; }
    }
    if (below(10) == 0) {
        c->has_memo = 1;
        c->memo_length = (uint16_t)snprintf(c->memo, sizeof(c->memo), "memo %" PRIu64, below(5));
    }
    if (c->type != BAL_OP_EVENT) {
        c->account_id = pick_account();
        c->currency = currencies[below(CURRENCY_COUNT)];
        c->amount = pick_amount();
        if (c->type == BAL_OP_TRANSFER) {
            do c->to_account_id = pick_account(); while (c->to_account_id == c->account_id);
        }
        return;
    }
    unsigned legs = below(20) == 0 ? BAL_EVENT_LEGS_MAX : 1 + (unsigned)below(6);
    for (unsigned i = 0; i < legs; i++) {
        bal_leg *leg = &c->legs[i];
        int unique;
        do {
            leg->account_id = pick_account();
            leg->currency = currencies[below(CURRENCY_COUNT)];
            unique = 1;
            for (unsigned j = 0; j < i; j++) {
                if (c->legs[j].account_id == leg->account_id && c->legs[j].currency.code == leg->currency.code) unique = 0;
            }
        } while (!unique);
        bal_amount a = pick_amount(), f = pick_amount();
        leg->available_delta = below(3) == 0 ? 0 : (below(2) ? a : -a);
        leg->frozen_delta = below(3) == 0 ? 0 : (below(2) ? f : -f);
    }
    c->leg_count = (uint8_t)legs;
    c->account_id = c->legs[0].account_id;
    c->currency = c->legs[0].currency;
}

static void gen_command(bal_command *c) {
    uint64_t r = below(100);
    now_ms += (int64_t)below(3);
    if (below(20000) == 0) now_ms += retention_ms + 1; /* a quiet spell: ids age out */
    if (r < 5 && history_count > 0) {                   /* a retry of an earlier request */
        size_t k = below(4) ? history_count - 1 - below(history_count < 50 ? history_count : 50) : below(history_count);
        memset(c, 0, sizeof(*c));
        memcpy(c, history[k]->command, offsetof(bal_command, legs) + history[k]->command->leg_count * sizeof(bal_leg));
    } else if (r < 7 && history_count > 0) {            /* the same id, other content */
        size_t k = below(history_count);
        memset(c, 0, sizeof(*c));
        memcpy(c, history[k]->command, offsetof(bal_command, legs) + history[k]->command->leg_count * sizeof(bal_leg));
        if (c->type == BAL_OP_EVENT) c->legs[0].available_delta += c->legs[0].available_delta > 0 ? -1 : 1;
        else c->amount = c->amount == 1 ? 2 : c->amount - 1;
    } else {
        gen_fresh(c);
    }
    c->time_ms = now_ms;
}

/* ---------------- the auditor ---------------- */
static int same_outcome(const bal_test_outcome *a, const bal_test_outcome *b) {
    if (a->result != b->result || a->duplicate != b->duplicate || a->sequence != b->sequence ||
        a->change_count != b->change_count) return 0;
    for (unsigned i = 0; i < a->change_count; i++) {
        const bal_change *x = &a->changes[i], *y = &b->changes[i];
        if (x->account_id != y->account_id || x->currency.code != y->currency.code ||
            x->available_before != y->available_before || x->available_after != y->available_after ||
            x->frozen_before != y->frozen_before || x->frozen_after != y->frozen_after) return 0;
    }
    return 1;
}

static unsigned long failures;
static uint64_t count_total;

static void fail_at(const char *what, uint64_t index) {
    if (failures++ < 10) {
        fprintf(stderr, "sim: %s at command %" PRIu64 "; reproduce with: sim_ledger %" PRIu64 " %" PRIu64 "%s\n",
                what, index, seed, count_total, ref_capacity < 100000 ? " --small" : "");
    }
}

/* Every balance of the reference equals the ledger's; per currency, the sum of balances
 * equals the net flow in and out; none is negative. */
static void full_audit(const bal_ledger *ledger, uint64_t index) {
    unsigned __int128 sums[CURRENCY_COUNT] = {0};
    uint64_t counted = 0;
    for (uint32_t b = 0; b < REF_BUCKETS; b++) {
        for (ref_balance *r = balance_buckets[b]; r != NULL; r = r->next) {
            bal_amount a, f;
            bal_ledger_balance(ledger, r->account_id, (bal_currency){r->currency_code}, &a, &f);
            if (a != r->available || f != r->frozen) fail_at("balance differs from the reference", index);
            if (a < 0 || f < 0) fail_at("negative balance", index);
            sums[currency_index(r->currency_code)] += (unsigned __int128)a + (unsigned __int128)f;
            counted++;
        }
    }
    for (int i = 0; i < CURRENCY_COUNT; i++) if (sums[i] != net_flow[i]) fail_at("conservation broken", index);
    if (counted != bal_ledger_balance_count(ledger)) fail_at("balance count differs", index);
}

/* The log of every batch as applied, packed: the fixed part of each command up to its
 * memo, the memo's bytes, then its legs. */
static uint8_t *log_bytes;
static size_t log_length, log_capacity;
static size_t *batch_ends;          /* byte offset where each batch ends */
static size_t batch_count, batch_capacity;

static void log_command(const bal_command *c) {
    size_t fixed = offsetof(bal_command, memo), legs = c->leg_count * sizeof(bal_leg);
    size_t need = fixed + c->memo_length + legs;
    if (log_length + need > log_capacity) {
        log_capacity = (log_capacity + need) * 2;
        log_bytes = realloc(log_bytes, log_capacity);
    }
    memcpy(log_bytes + log_length, c, fixed);
    memcpy(log_bytes + log_length + fixed, c->memo, c->memo_length);
    memcpy(log_bytes + log_length + fixed + c->memo_length, c->legs, legs);
    log_length += need;
}

static size_t unpack_command(size_t offset, bal_command *c) {
    size_t fixed = offsetof(bal_command, memo);
    memset(c, 0, sizeof(*c));
    memcpy(c, log_bytes + offset, fixed);
    memcpy(c->memo, log_bytes + offset + fixed, c->memo_length);
    memcpy(c->legs, log_bytes + offset + fixed + c->memo_length, c->leg_count * sizeof(bal_leg));
    return offset + fixed + c->memo_length + c->leg_count * sizeof(bal_leg);
}

static void log_batch_end(void) {
    if (batch_count == batch_capacity) {
        batch_capacity = batch_capacity ? batch_capacity * 2 : 4096;
        batch_ends = realloc(batch_ends, batch_capacity * sizeof(*batch_ends));
    }
    batch_ends[batch_count++] = log_length;
}

/* Unpacks batch b of the log into commands; returns its size. */
static size_t load_batch(size_t b, bal_command *commands) {
    size_t offset = b == 0 ? 0 : batch_ends[b - 1], n = 0;
    while (offset < batch_ends[b]) offset = unpack_command(offset, &commands[n++]);
    return n;
}

static void apply_with_hook(bal_ledger *ledger, const bal_command *batch, size_t n, bal_test_outcome *outcomes);

/* Replaying an earlier batch (through the look-up hook, as the service always does)
 * answers every command as a duplicate or conflict and changes nothing. */
static void replay_check(bal_ledger *ledger, size_t b, uint64_t index) {
    static bal_command batch[BATCH_MAX];
    static bal_test_outcome outcomes[BATCH_MAX];
    size_t n = load_batch(b, batch);
    bal_digest before = bal_ledger_hash(ledger);
    uint64_t sequence = bal_ledger_sequence(ledger);
    apply_with_hook(ledger, batch, n, outcomes);
    for (size_t i = 0; i < n; i++) {
        if (!outcomes[i].duplicate && outcomes[i].result != BAL_RESULT_CONFLICT) {
            fail_at("a replayed command applied again", index);
        }
    }
    if (bal_ledger_sequence(ledger) != sequence || !bal_digest_equal(before, bal_ledger_hash(ledger))) {
        fail_at("a replay changed the state", index);
    }
}

static bal_ledger *make_ledger(int small) {
    bal_ledger_config config;
    bal_ledger_config_default(&config);
    config.balance_capacity = small ? 3000 : 1000000;
    config.idempotency_count_max = small ? 500 : 20000;
    config.idempotency_bytes_max = small ? 300000 : 8 << 20;
    config.idempotency_retention_ms = small ? 5000 : 60000;
    config.hash_seed = seed;
    bal_ledger *ledger = NULL;
    if (bal_ledger_create(&config, &ledger) != BAL_LEDGER_OK) abort();
    retention_ms = config.idempotency_retention_ms;
    ref_capacity = config.balance_capacity;
    return ledger;
}

/* Runs a batch with the look-up hook answered from `lookup` (the reference history as of
 * before the batch, standing in for the journal store). */
static uint64_t recall_count;

static void apply_with_hook(bal_ledger *ledger, const bal_command *batch, size_t n, bal_test_outcome *outcomes) {
    static uint32_t indexes[BATCH_MAX];
    static bal_ledger_recall recalled[BATCH_MAX];
    static bal_outcome heads[BATCH_MAX];
    memset(recalled, 0, sizeof(recalled));
    size_t wanted = bal_ledger_prepare(ledger, batch, n, indexes);
    for (size_t k = 0; k < wanted; k++) {
        ref_record *r = ref_lookup(&batch[indexes[k]]);
        if (r != NULL) {
            heads[indexes[k]] = bal_test_outcome_head(r->outcome);
            recalled[indexes[k]] = (bal_ledger_recall){r->command, &heads[indexes[k]], r->outcome->changes};
            recall_count++;
        }
    }
    bal_test_apply(ledger, batch, n, recalled, outcomes);
}

/* Replays the whole log into a fresh ledger: it must reach the same state hash. */
static void replay_all(const bal_ledger *original, int small) {
    static bal_command batch[BATCH_MAX];
    static bal_test_outcome outcomes[BATCH_MAX];
    bal_ledger *fresh = make_ledger(small);
    for (size_t b = 0; b < batch_count; b++) {
        size_t n = load_batch(b, batch);
        apply_with_hook(fresh, batch, n, outcomes);
    }
    if (!bal_digest_equal(bal_ledger_hash(fresh), bal_ledger_hash(original))) {
        fail_at("replaying the log gives another state hash", count_total);
    }
    bal_ledger_destroy(fresh);
}

int main(int argc, char **argv) {
    seed = argc > 1 ? strtoull(argv[1], NULL, 10) : 1;
    count_total = argc > 2 ? strtoull(argv[2], NULL, 10) : 1000000;
    int small = argc > 3 && strcmp(argv[3], "--small") == 0;
    rng_state = seed * 0x9E3779B97F4A7C15ull + 1;
    printf("sim: seed=%" PRIu64 " commands=%" PRIu64 "%s\n", seed, count_total, small ? " small-memory" : "");
    for (int i = 0; i < CURRENCY_COUNT; i++) bal_currency_parse(currency_names[i], strlen(currency_names[i]), &currencies[i]);
    bal_ledger *ledger = make_ledger(small);
    static bal_command batch[BATCH_MAX];
    static bal_test_outcome outcomes[BATCH_MAX];
    uint64_t done = 0, duplicates = 0, conflicts = 0, rejected = 0;
    while (done < count_total && failures == 0) {
        size_t n = 1 + below(small ? 100 : BATCH_MAX);
        if (n > count_total - done) n = (size_t)(count_total - done);
        for (size_t i = 0; i < n; i++) gen_command(&batch[i]);
        apply_with_hook(ledger, batch, n, outcomes);
        for (size_t i = 0; i < n; i++) {
            bal_test_outcome expected;
            ref_expect(&batch[i], &expected);
            if (!same_outcome(&expected, &outcomes[i])) {
                fail_at("outcome differs from the reference", done + i);
                fprintf(stderr, "  %.*s type=%d: expected result=%d dup=%d seq=%" PRIu64 " changes=%d; got result=%d dup=%d seq=%" PRIu64 " changes=%d\n",
                        batch[i].transaction_id_length, batch[i].transaction_id, batch[i].type, expected.result,
                        expected.duplicate, expected.sequence, expected.change_count, outcomes[i].result,
                        outcomes[i].duplicate, outcomes[i].sequence, outcomes[i].change_count);
            }
            if (outcomes[i].duplicate) duplicates++;
            else if (outcomes[i].result == BAL_RESULT_CONFLICT) conflicts++;
            else if (outcomes[i].result != BAL_RESULT_OK) rejected++;
            log_command(&batch[i]);
        }
        log_batch_end();
        done += n;
        if (batch_count % 500 == 0) full_audit(ledger, done);
        if (batch_count % 97 == 0) replay_check(ledger, batch_count - 1 - below(batch_count < 50 ? batch_count : 50), done);
    }
    full_audit(ledger, done);
    if (failures == 0) replay_all(ledger, small);
    printf("sim: applied=%" PRIu64 " duplicates=%" PRIu64 " conflicts=%" PRIu64 " rejected=%" PRIu64
           " balances=%" PRIu64 " ids_in_memory=%u recalled_from_store=%" PRIu64 "\n", done, duplicates,
           conflicts, rejected, bal_ledger_balance_count(ledger), bal_ledger_idempotency_count(ledger), recall_count);
    CHECK(recall_count > 0); /* the look-up hook was exercised */
    CHECK(failures == 0);
    bal_ledger_destroy(ledger);
    return bal_test_finish("sim_ledger");
}
