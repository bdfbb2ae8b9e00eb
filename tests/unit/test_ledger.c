/* Unit tests of bal_ledger: every operation's success and rejections, EVENT atomicity,
 * idempotency (duplicate, conflict, rejected-then-retried, eviction and the look-up hook),
 * capacity exhaustion, the state hash and the snapshot round trip. */
#include <stdlib.h>

#include "bal_hash.h"
#include "bal_idempotency.h"
#include "bal_ledger.h"
#include "bal_test.h"
#include "bal_test_outcome.h"

static bal_currency cur(const char *text) {
    bal_currency c = {0};
    bal_currency_parse(text, strlen(text), &c);
    return c;
}

static bal_amount units(long long whole) { return (bal_amount)whole * BAL_MONEY_ONE; }

static bal_command cmd(const char *id, bal_op type, uint64_t account, const char *currency, bal_amount amount) {
    bal_command c;
    memset(&c, 0, sizeof(c));
    c.type = (uint8_t)type;
    c.account_id = account;
    c.currency = cur(currency);
    c.amount = amount;
    c.time_ms = 1000;
    c.transaction_id_length = (uint8_t)strlen(id);
    memcpy(c.transaction_id, id, strlen(id));
    return c;
}

static bal_ledger *make(uint64_t capacity) {
    bal_ledger_config config;
    bal_ledger_config_default(&config);
    config.balance_capacity = capacity;
    config.idempotency_count_max = 1000;
    config.idempotency_bytes_max = 1 << 20;
    bal_ledger *ledger = NULL;
    CHECK(bal_ledger_create(&config, &ledger) == BAL_LEDGER_OK);
    return ledger;
}

static bal_test_outcome run(bal_ledger *ledger, bal_command c) {
    bal_test_outcome o;
    bal_test_apply(ledger, &c, 1, NULL, &o);
    return o;
}

static void balance(bal_ledger *ledger, uint64_t account, const char *currency, bal_amount *a, bal_amount *f) {
    bal_ledger_balance(ledger, account, cur(currency), a, f);
}

static void test_typed_operations(void) {
    bal_ledger *l = make(100);
    bal_amount a, f;
    bal_test_outcome o = run(l, cmd("d1", BAL_OP_DEPOSIT, 1, "USDT", units(100)));
    CHECK(o.result == BAL_RESULT_OK && o.sequence == 1 && !o.duplicate && o.change_count == 1);
    CHECK(o.changes[0].available_before == 0 && o.changes[0].available_after == units(100));
    o = run(l, cmd("w1", BAL_OP_WITHDRAW, 1, "USDT", units(30)));
    CHECK(o.result == BAL_RESULT_OK && o.changes[0].available_after == units(70));
    o = run(l, cmd("w2", BAL_OP_WITHDRAW, 1, "USDT", units(71)));
    CHECK(o.result == BAL_RESULT_INSUFFICIENT_AVAILABLE && o.sequence == 3);
    CHECK(o.changes[0].available_before == units(70) && o.changes[0].available_after == units(70));
    o = run(l, cmd("f1", BAL_OP_FREEZE, 1, "USDT", units(50)));
    CHECK(o.result == BAL_RESULT_OK && o.changes[0].available_after == units(20) && o.changes[0].frozen_after == units(50));
    o = run(l, cmd("f2", BAL_OP_FREEZE, 1, "USDT", units(21)));
    CHECK(o.result == BAL_RESULT_INSUFFICIENT_AVAILABLE);
    o = run(l, cmd("u1", BAL_OP_UNFREEZE, 1, "USDT", units(10)));
    CHECK(o.result == BAL_RESULT_OK && o.changes[0].available_after == units(30) && o.changes[0].frozen_after == units(40));
    o = run(l, cmd("u2", BAL_OP_UNFREEZE, 1, "USDT", units(41)));
    CHECK(o.result == BAL_RESULT_INSUFFICIENT_FROZEN);
    o = run(l, cmd("x1", BAL_OP_DEDUCT_FROZEN, 1, "USDT", units(15)));
    CHECK(o.result == BAL_RESULT_OK && o.changes[0].frozen_after == units(25) && o.changes[0].available_after == units(30));
    o = run(l, cmd("x2", BAL_OP_DEDUCT_FROZEN, 1, "USDT", units(26)));
    CHECK(o.result == BAL_RESULT_INSUFFICIENT_FROZEN);
    balance(l, 1, "USDT", &a, &f);
    CHECK(a == units(30) && f == units(25));
    /* A withdrawal from a balance that never existed is rejected and creates nothing. */
    o = run(l, cmd("w3", BAL_OP_WITHDRAW, 2, "USDT", 1));
    CHECK(o.result == BAL_RESULT_INSUFFICIENT_AVAILABLE && bal_ledger_balance_count(l) == 1);
    CHECK(!bal_ledger_balance(l, 2, cur("USDT"), &a, &f) && a == 0 && f == 0);
    bal_ledger_destroy(l);
}

static void test_transfer_and_overflow(void) {
    bal_ledger *l = make(100);
    bal_amount a, f;
    run(l, cmd("d1", BAL_OP_DEPOSIT, 1, "BTC", units(5)));
    bal_command t = cmd("t1", BAL_OP_TRANSFER, 1, "BTC", units(2));
    t.to_account_id = 2;
    bal_test_outcome o = run(l, t);
    CHECK(o.result == BAL_RESULT_OK && o.change_count == 2);
    CHECK(o.changes[0].account_id == 1 && o.changes[0].available_after == units(3));
    CHECK(o.changes[1].account_id == 2 && o.changes[1].available_before == 0 && o.changes[1].available_after == units(2));
    t = cmd("t2", BAL_OP_TRANSFER, 1, "BTC", units(4));
    t.to_account_id = 3;
    o = run(l, t);
    CHECK(o.result == BAL_RESULT_INSUFFICIENT_AVAILABLE && o.change_count == 2);
    CHECK(!bal_ledger_balance(l, 3, cur("BTC"), &a, &f)); /* nothing created */
    /* Overflow: deposit up to the maximum, then one unit more. */
    o = run(l, cmd("big", BAL_OP_DEPOSIT, 9, "ETH", BAL_MONEY_MAX));
    CHECK(o.result == BAL_RESULT_OK);
    o = run(l, cmd("big2", BAL_OP_DEPOSIT, 9, "ETH", 1));
    CHECK(o.result == BAL_RESULT_OVERFLOW && o.changes[0].available_after == BAL_MONEY_MAX);
    /* Transfer into a full balance overflows and leaves the source untouched. */
    run(l, cmd("d9", BAL_OP_DEPOSIT, 8, "ETH", units(1)));
    t = cmd("t3", BAL_OP_TRANSFER, 8, "ETH", units(1));
    t.to_account_id = 9;
    o = run(l, t);
    CHECK(o.result == BAL_RESULT_OVERFLOW);
    balance(l, 8, "ETH", &a, &f);
    CHECK(a == units(1));
    /* Unfreeze of frozen funds into a full available balance overflows too. */
    run(l, cmd("fz", BAL_OP_FREEZE, 9, "ETH", units(1)));
    run(l, cmd("d10", BAL_OP_DEPOSIT, 9, "ETH", units(1)));
    o = run(l, cmd("uf", BAL_OP_UNFREEZE, 9, "ETH", units(1)));
    CHECK(o.result == BAL_RESULT_OVERFLOW);
    bal_ledger_destroy(l);
}

static bal_command event(const char *id, unsigned legs, const bal_leg *leg) {
    bal_command c = cmd(id, BAL_OP_EVENT, 0, "X", 0);
    c.currency.code = 0;
    c.amount = 0;
    c.leg_count = (uint8_t)legs;
    memcpy(c.legs, leg, legs * sizeof(bal_leg));
    c.account_id = leg[0].account_id;
    c.currency = leg[0].currency;
    return c;
}

static void test_event_atomicity(void) {
    bal_ledger *l = make(100);
    bal_amount a, f;
    run(l, cmd("d1", BAL_OP_DEPOSIT, 1, "USDT", units(1000)));
    run(l, cmd("f1", BAL_OP_FREEZE, 1, "USDT", units(500)));
    run(l, cmd("d2", BAL_OP_DEPOSIT, 2, "BTC", units(1)));
    run(l, cmd("f2", BAL_OP_FREEZE, 2, "BTC", units(1)));
    /* A trade: buyer 1 pays 500 frozen USDT, gets 1 BTC; seller 2 the reverse. */
    bal_leg trade[4] = {
        {1, cur("USDT"), 0, -units(500)}, {1, cur("BTC"), units(1), 0},
        {2, cur("BTC"), 0, -units(1)}, {2, cur("USDT"), units(500), 0},
    };
    bal_test_outcome o = run(l, event("e1", 4, trade));
    CHECK(o.result == BAL_RESULT_OK && o.change_count == 4);
    balance(l, 1, "BTC", &a, &f);
    CHECK(a == units(1) && f == 0);
    balance(l, 2, "USDT", &a, &f);
    CHECK(a == units(500));
    /* The same trade again fails on the first leg's frozen; a later failing leg also
     * leaves no trace of the earlier legs. */
    bal_leg bad[3] = {
        {1, cur("USDT"), units(1), 0}, {3, cur("DOGE"), units(7), 0}, {2, cur("BTC"), -units(1), 0},
    };
    uint64_t count_before = bal_ledger_balance_count(l);
    bal_digest hash_before = bal_ledger_hash(l);
    o = run(l, event("e2", 3, bad));
    CHECK(o.result == BAL_RESULT_INSUFFICIENT_AVAILABLE);
    CHECK(bal_ledger_balance_count(l) == count_before);
    CHECK(!bal_ledger_balance(l, 3, cur("DOGE"), &a, &f));
    balance(l, 1, "USDT", &a, &f);
    CHECK(a == units(500) && f == 0);
    bal_digest hash_after = bal_ledger_hash(l);
    CHECK(hash_after.low != hash_before.low); /* only the sequence moved */
    bal_leg overflow[2] = {{5, cur("A"), units(1), 0}, {9, cur("B"), BAL_MONEY_MAX, 0}};
    run(l, cmd("dB", BAL_OP_DEPOSIT, 9, "B", 1));
    o = run(l, event("e3", 2, overflow));
    CHECK(o.result == BAL_RESULT_OVERFLOW && !bal_ledger_balance(l, 5, cur("A"), &a, &f));
    bal_leg frozen[1] = {{1, cur("BTC"), 0, -1}};
    o = run(l, event("e4", 1, frozen));
    CHECK(o.result == BAL_RESULT_INSUFFICIENT_FROZEN);
    bal_ledger_destroy(l);
}

static void test_idempotency(void) {
    bal_ledger *l = make(100);
    bal_test_outcome first = run(l, cmd("a", BAL_OP_DEPOSIT, 1, "USDT", units(10)));
    run(l, cmd("b", BAL_OP_DEPOSIT, 1, "USDT", units(5)));
    bal_test_outcome again = run(l, cmd("a", BAL_OP_DEPOSIT, 1, "USDT", units(10)));
    CHECK(again.result == BAL_RESULT_OK && again.duplicate && again.sequence == first.sequence);
    CHECK(again.changes[0].available_after == units(10)); /* as right after the original */
    bal_amount a, f;
    balance(l, 1, "USDT", &a, &f);
    CHECK(a == units(15));
    CHECK(bal_ledger_sequence(l) == 2);
    /* Same id, other content: conflict, no effect, no sequence. */
    bal_test_outcome conflict = run(l, cmd("a", BAL_OP_DEPOSIT, 1, "USDT", units(11)));
    CHECK(conflict.result == BAL_RESULT_CONFLICT && !conflict.duplicate && conflict.change_count == 0);
    CHECK(bal_ledger_sequence(l) == 2);
    /* Amounts compare by value: 10 and 10.000 are the same request (the decoder gives
     * the same integer); a memo makes a different one. */
    bal_command with_memo = cmd("a", BAL_OP_DEPOSIT, 1, "USDT", units(10));
    with_memo.has_memo = 1;
    with_memo.memo_length = 1;
    with_memo.memo[0] = 'x';
    CHECK(run(l, with_memo).result == BAL_RESULT_CONFLICT);
    /* A rejected transaction consumes its id: a retry after funding is still rejected. */
    bal_test_outcome rejected = run(l, cmd("w", BAL_OP_WITHDRAW, 1, "USDT", units(100)));
    CHECK(rejected.result == BAL_RESULT_INSUFFICIENT_AVAILABLE);
    run(l, cmd("c", BAL_OP_DEPOSIT, 1, "USDT", units(1000)));
    bal_test_outcome retried = run(l, cmd("w", BAL_OP_WITHDRAW, 1, "USDT", units(100)));
    CHECK(retried.result == BAL_RESULT_INSUFFICIENT_AVAILABLE && retried.duplicate);
    CHECK(retried.sequence == rejected.sequence);
    balance(l, 1, "USDT", &a, &f);
    CHECK(a == units(1015));
    /* Within one batch: the second copy is a duplicate. */
    bal_command pair[2] = {cmd("p", BAL_OP_DEPOSIT, 1, "USDT", 1), cmd("p", BAL_OP_DEPOSIT, 1, "USDT", 1)};
    bal_test_outcome outs[2];
    bal_test_apply(l, pair, 2, NULL, outs);
    CHECK(outs[0].result == BAL_RESULT_OK && !outs[0].duplicate && outs[1].duplicate);
    bal_ledger_destroy(l);
}

static void test_eviction_and_lookup_hook(void) {
    bal_ledger_config config;
    bal_ledger_config_default(&config);
    config.balance_capacity = 100;
    config.idempotency_count_max = 10;
    config.idempotency_retention_ms = 60000;
    bal_ledger *l = NULL;
    CHECK(bal_ledger_create(&config, &l) == BAL_LEDGER_OK);
    bal_command first = cmd("old", BAL_OP_DEPOSIT, 1, "USDT", units(1));
    bal_test_outcome first_outcome = run(l, first);
    uint32_t indexes[4];
    CHECK(bal_ledger_prepare(l, &first, 1, indexes) == 0); /* nothing forgotten yet */
    for (int i = 0; i < 20; i++) {
        char id[16];
        snprintf(id, sizeof(id), "n%d", i);
        run(l, cmd(id, BAL_OP_DEPOSIT, 1, "USDT", 1));
    }
    CHECK(bal_ledger_idempotency_count(l) == 10);
    /* "old" left memory: the hook must ask for it. */
    CHECK(bal_ledger_prepare(l, &first, 1, indexes) == 1 && indexes[0] == 0);
    /* An outcome from beyond the ledger's sequence is ignored (replay after restart):
     * then the command applies as new. Tried on a copy of the situation via a conflict-free
     * probe: the recall of the future makes "old" apply, so check with a fresh id. */
    bal_test_outcome future = first_outcome;
    future.sequence = bal_ledger_sequence(l) + 1;
    bal_command fresh = cmd("fresh", BAL_OP_DEPOSIT, 1, "USDT", 1);
    bal_outcome future_head = bal_test_outcome_head(&future);
    bal_ledger_recall future_recall = {&fresh, &future_head, future.changes};
    bal_test_outcome fresh_outcome;
    bal_test_apply(l, &fresh, 1, &future_recall, &fresh_outcome);
    CHECK(!fresh_outcome.duplicate && fresh_outcome.result == BAL_RESULT_OK);
    bal_outcome first_head = bal_test_outcome_head(&first_outcome);
    bal_ledger_recall recall = {&first, &first_head, first_outcome.changes};
    bal_test_outcome again;
    bal_test_apply(l, &first, 1, &recall, &again);
    CHECK(again.duplicate && again.sequence == first_outcome.sequence);
    CHECK(bal_ledger_prepare(l, &first, 1, indexes) == 0); /* back in memory */
    bal_command changed = first;
    changed.amount += 1;
    bal_test_outcome conflict;
    bal_test_apply(l, &changed, 1, NULL, &conflict);
    CHECK(conflict.result == BAL_RESULT_CONFLICT && conflict.sequence == first_outcome.sequence);
    bal_amount a, f;
    balance(l, 1, "USDT", &a, &f);
    CHECK(a == units(1) + 21);
    /* Age: a command 61 s later expires everything older than 60 s. */
    bal_command late = cmd("late", BAL_OP_DEPOSIT, 1, "USDT", 1);
    late.time_ms = 1000 + 61000;
    run(l, late);
    CHECK(bal_ledger_idempotency_count(l) == 1);
    bal_ledger_destroy(l);
}

static void test_idempotency_bytes_bound(void) {
    /* A small arena holds few records; many inserts wrap it many times. */
    bal_idempotency *m = bal_idempotency_create(1000, 4 * bal_idempotency_record_bytes_max(), 7);
    CHECK(m != NULL);
    bal_outcome o;
    bal_change changes[BAL_COMMAND_BALANCES_MAX];
    memset(&o, 0, sizeof(o));
    memset(changes, 0, sizeof(changes));
    for (int i = 0; i < 5000; i++) {
        char id[32];
        snprintf(id, sizeof(id), "id-%d", i);
        bal_command c = cmd(id, BAL_OP_DEPOSIT, 1, "USDT", 1);
        o.change_count = (uint8_t)(1 + i % BAL_COMMAND_BALANCES_MAX);
        o.sequence = (uint64_t)i;
        bal_idempotency_insert(m, &c, bal_command_digest(&c), &o, changes);
        bal_idempotency_view v;
        CHECK(bal_idempotency_find(m, id, strlen(id), &v) && v.sequence == (uint64_t)i);
    }
    CHECK(bal_idempotency_count(m) < 1000 && bal_idempotency_evicted(m) > 4000);
    bal_idempotency_view v;
    CHECK(!bal_idempotency_find(m, "id-0", 4, &v));
    bal_idempotency_destroy(m);
}

static void test_capacity(void) {
    bal_ledger *l = make(3);
    CHECK(run(l, cmd("1", BAL_OP_DEPOSIT, 1, "A", 1)).result == BAL_RESULT_OK);
    CHECK(run(l, cmd("2", BAL_OP_DEPOSIT, 2, "A", 1)).result == BAL_RESULT_OK);
    CHECK(run(l, cmd("3", BAL_OP_DEPOSIT, 3, "A", 1)).result == BAL_RESULT_OK);
    bal_test_outcome o = run(l, cmd("4", BAL_OP_DEPOSIT, 4, "A", 1));
    CHECK(o.result == BAL_RESULT_CAPACITY_EXCEEDED && bal_ledger_balance_count(l) == 3);
    /* Existing balances keep working. */
    CHECK(run(l, cmd("5", BAL_OP_DEPOSIT, 1, "A", 1)).result == BAL_RESULT_OK);
    bal_command t = cmd("6", BAL_OP_TRANSFER, 1, "A", 1);
    t.to_account_id = 4;
    CHECK(run(l, t).result == BAL_RESULT_CAPACITY_EXCEEDED);
    CHECK(bal_ledger_balance_memory_bytes(l) <= 64 * 3 + 64);
    bal_ledger_destroy(l);
    bal_ledger_config config;
    bal_ledger_config_default(&config);
    config.balance_capacity = 0;
    CHECK(bal_ledger_create(&config, &l) == BAL_LEDGER_INVALID_CONFIG);
}

static void test_account_listing(void) {
    bal_ledger *l = make(100);
    run(l, cmd("1", BAL_OP_DEPOSIT, 7, "USDT", 1));
    run(l, cmd("2", BAL_OP_DEPOSIT, 7, "BTC", 2));
    run(l, cmd("3", BAL_OP_DEPOSIT, 8, "ETH", 3));
    run(l, cmd("4", BAL_OP_DEPOSIT, 7, "ETH", 4));
    bal_balance list[8];
    size_t total = 0;
    size_t n = bal_ledger_account_balances(l, 7, list, 8, &total);
    CHECK(n == 3 && total == 3);
    char text[16];
    bal_currency_format(list[0].currency, text);
    CHECK_STR(text, "BTC");
    bal_currency_format(list[2].currency, text);
    CHECK_STR(text, "USDT");
    CHECK(bal_ledger_account_balances(l, 99, list, 8, &total) == 0 && total == 0);
    bal_ledger_destroy(l);
}

static void test_snapshot_round_trip(void) {
    bal_ledger *l = make(1000);
    for (int i = 0; i < 300; i++) {
        char id[16];
        snprintf(id, sizeof(id), "s%d", i);
        bal_command c = cmd(id, (bal_op)(i % 3 == 0 ? BAL_OP_DEPOSIT : BAL_OP_FREEZE), 1 + (uint64_t)(i % 50),
                            i % 2 ? "USDT" : "BTC", units(1 + i % 7));
        run(l, c);
    }
    uint64_t size = bal_ledger_snapshot_size(l), length = 0;
    uint8_t *buffer = malloc(size);
    CHECK(bal_ledger_snapshot_encode(l, buffer, size - 1, &length) == BAL_LEDGER_BUFFER_TOO_SMALL);
    CHECK(bal_ledger_snapshot_encode(l, buffer, size, &length) == BAL_LEDGER_OK && length == size);
    bal_ledger *copy = make(1000);
    CHECK(bal_ledger_snapshot_decode(copy, buffer, length) == BAL_LEDGER_OK);
    CHECK(bal_digest_equal(bal_ledger_hash(l), bal_ledger_hash(copy)));
    CHECK(bal_ledger_sequence(copy) == 300 && bal_ledger_idempotency_count(copy) == 300);
    /* The copy remembers ids, and goes on exactly like the original. */
    bal_test_outcome o = run(copy, cmd("s0", BAL_OP_DEPOSIT, 1, "BTC", units(1)));
    CHECK(o.duplicate && o.sequence == 1);
    run(l, cmd("next", BAL_OP_DEPOSIT, 3, "ETH", 5));
    run(copy, cmd("next", BAL_OP_DEPOSIT, 3, "ETH", 5));
    CHECK(bal_digest_equal(bal_ledger_hash(l), bal_ledger_hash(copy)));
    /* Re-encoding the copy gives a snapshot that loads too. */
    CHECK(bal_ledger_snapshot_decode(copy, buffer, length) == BAL_LEDGER_NOT_EMPTY);
    /* Every flipped byte and every truncation is refused. */
    unsigned accepted = 0;
    for (uint64_t i = 0; i < length; i += 7) {
        buffer[i] ^= 0x20;
        bal_ledger *bad = make(1000);
        if (bal_ledger_snapshot_decode(bad, buffer, length) == BAL_LEDGER_OK) accepted++;
        bal_ledger_destroy(bad);
        buffer[i] ^= 0x20;
    }
    CHECK(accepted == 0);
    bal_ledger *cut = make(1000);
    CHECK(bal_ledger_snapshot_decode(cut, buffer, length / 2) != BAL_LEDGER_OK);
    bal_ledger_destroy(cut);
    bal_ledger *small = make(10);
    CHECK(bal_ledger_snapshot_decode(small, buffer, length) == BAL_LEDGER_SNAPSHOT_TOO_LARGE);
    bal_ledger_destroy(small);
    free(buffer);
    bal_ledger_destroy(copy);
    bal_ledger_destroy(l);
}

static void test_names(void) {
    CHECK_STR(bal_result_name(BAL_RESULT_INSUFFICIENT_FROZEN), "insufficient_frozen");
    CHECK_STR(bal_op_name(BAL_OP_DEDUCT_FROZEN), "DEDUCT_FROZEN");
    bal_currency c;
    CHECK(!bal_currency_parse("usdt", 4, &c));
    CHECK(!bal_currency_parse("ABCDEFGHIJK", 11, &c));
    CHECK(bal_currency_parse("ZZZZZZZZZZ", 10, &c));
    char text[16];
    bal_currency_format(c, text);
    CHECK_STR(text, "ZZZZZZZZZZ");
    CHECK(bal_transaction_id_valid("a.b_c:d-E9", 10));
    CHECK(!bal_transaction_id_valid("a b", 3));
}

static void test_codec(void) {
    bal_leg legs[2] = {{1, cur("USDT"), -units(5), 0}, {2, cur("USDT"), units(5), 1}};
    bal_command commands[3] = {cmd("c1", BAL_OP_DEPOSIT, 7, "BTC", 123), event("c2", 2, legs),
                               cmd("c3", BAL_OP_TRANSFER, 1, "ETH", BAL_MONEY_MAX)};
    commands[0].has_memo = 1;
    commands[0].memo_length = 3;
    memcpy(commands[0].memo, "a\0b", 3);
    commands[2].to_account_id = UINT64_MAX;
    commands[2].leg_mask = 2;
    commands[2].decided = 1 + BAL_RESULT_OK;
    for (int i = 0; i < 3; i++) {
        uint8_t buffer[BAL_COMMAND_ENCODED_MAX];
        size_t length = bal_command_encode(&commands[i], buffer);
        bal_command back;
        CHECK(bal_command_decode(buffer, length, &back));
        CHECK(bal_digest_equal(bal_command_digest(&back), bal_command_digest(&commands[i])));
        CHECK(back.time_ms == commands[i].time_ms && back.leg_mask == commands[i].leg_mask &&
              back.decided == commands[i].decided);
        CHECK(!bal_command_decode(buffer, length - 1, &back));
        buffer[0] = 9;
        CHECK(!bal_command_decode(buffer, length, &back));
    }
    uint8_t buffer[BAL_COMMAND_ENCODED_MAX];
    size_t length = bal_command_encode(&commands[0], buffer);
    buffer[1] = 77; /* no such type */
    bal_command back;
    CHECK(!bal_command_decode(buffer, length, &back));
}

/* bal_hash_bytes is part of stored formats (the journal's transaction_hash, with this
 * seed): its values may never change. Known answers for every length from 0 to 17, so
 * that each way the tail is read (1-3, 4-7 bytes alone, and after full words) is pinned. */
static void test_hash_values(void) {
    static const uint64_t known[18] = {
        0x51f54cd7ce4a5f6cull, 0x56c8e67f3883ed4dull, 0xb8976fefec97875aull, 0x6eea51c1b36aa7caull,
        0xce7180f3bfc07e94ull, 0x4b1f117d77d3256cull, 0x6ce5aa366196da52ull, 0x632ffa6d091817ffull,
        0x8de19cec85f2d2daull, 0xe33b13ba8cf650e5ull, 0x0acbf9541b3d1326ull, 0x90220bb2c59f881eull,
        0xda2951ace789ab03ull, 0x4236395771e1ed6cull, 0xc06d07f46ec005f3ull, 0x9e1d4fc3b1651783ull,
        0x27cd7ca56028ab05ull, 0x038ffc96e4db7828ull,
    };
    const char *text = "0123456789abcdefghijklmnopqrstuv";
    for (size_t length = 0; length < 18; length++) {
        CHECK(bal_hash_bytes(text, length, 0x31646978746C6162ull) == known[length]);
        /* Bytes beyond the length never count. */
        char copy[18];
        memcpy(copy, text, length);
        memset(copy + length, 'x', sizeof copy - length);
        CHECK(bal_hash_bytes(copy, length, 0x31646978746C6162ull) == known[length]);
    }
}

/* Digests are kept in snapshots: their values may never change. Known answers (computed
 * by the general path), and the fast path for typed commands against the general one. */
static void test_digest_values(void) {
    struct { bal_command c; uint64_t low, high; } known[4];
    known[0].c = cmd("k", BAL_OP_DEPOSIT, 42, "USDT", units(12345) / 100);
    known[0].low = 0xbb0660fc9cebe230ull, known[0].high = 0xf705044256a1d0a8ull;
    known[1].c = cmd("k", BAL_OP_TRANSFER, 0xfedcba9876543210ull, "BTC", BAL_MONEY_MAX);
    known[1].c.to_account_id = 7;
    known[1].low = 0xa32a1c024b2b183aull, known[1].high = 0xd2cd8548bb8580cdull;
    known[2].c = known[1].c;
    known[2].c.has_memo = 1, known[2].c.memo_length = 5;
    memcpy(known[2].c.memo, "hello", 5);
    known[2].low = 0xf1ac86477ddee72bull, known[2].high = 0x5969b05d85c460c0ull;
    known[3].c = known[1].c;
    known[3].c.has_memo = 1; /* an empty memo: not the same content as no memo */
    known[3].low = 0x49f678080e320393ull, known[3].high = 0x1afaf1e919936ff7ull;
    for (int i = 0; i < 4; i++) {
        bal_digest d = bal_command_digest(&known[i].c);
        CHECK(d.low == known[i].low && d.high == known[i].high);
        CHECK(bal_digest_equal(d, bal_command_digest_general(&known[i].c)));
    }
    uint64_t x = 0x243F6A8885A308D3ull;
    for (int i = 0; i < 20000; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        uint64_t y = x * 0x9E3779B97F4A7C15ull;
        bal_command c = cmd("r", (bal_op)(x % 6), 1 + (y >> 3), (x >> 40) & 1 ? "USDT" : "ETH", 1);
        c.amount = (bal_amount)(((unsigned __int128)y << 64 | x) % (unsigned __int128)BAL_MONEY_MAX) + 1;
        c.to_account_id = (x >> 20) & 1 ? y ^ x : 0;
        c.has_memo = (uint8_t)((x >> 30) & 1);
        if (c.has_memo && ((x >> 31) & 1)) {
            c.memo_length = (uint16_t)(1 + (x >> 33) % 16);
            memset(c.memo, 'a' + (int)(x % 26), c.memo_length);
        }
        CHECK(bal_digest_equal(bal_command_digest(&c), bal_command_digest_general(&c)));
    }
}

/* A transfer across two ledgers, as the coordinator runs it: check both, then apply the
 * decided record with each ledger's own leg. */
static void test_cross_ledgers(void) {
    bal_ledger *source = make(10), *target = make(10);
    run(source, cmd("fund", BAL_OP_DEPOSIT, 1, "USDT", units(10)));
    bal_command t = cmd("x", BAL_OP_TRANSFER, 1, "USDT", units(4));
    t.to_account_id = 2;
    uint8_t leg_results[BAL_EVENT_LEGS_MAX];
    uint32_t creates = 0;
    CHECK(bal_ledger_check(source, &t, 1, leg_results, &creates) && creates == 0);
    CHECK(leg_results[0] == BAL_RESULT_OK);
    CHECK(bal_ledger_check(target, &t, 2, leg_results, &creates) && creates == 1);
    CHECK(leg_results[1] == BAL_RESULT_OK);
    bal_command on_source = t, on_target = t;
    on_source.leg_mask = 1;
    on_target.leg_mask = 2;
    on_source.decided = on_target.decided = 1 + BAL_RESULT_OK;
    bal_test_outcome a = run(source, on_source), b = run(target, on_target);
    CHECK(a.result == BAL_RESULT_OK && a.change_count == 1 && a.changes[0].available_after == units(6));
    CHECK(b.result == BAL_RESULT_OK && b.change_count == 1 && b.changes[0].account_id == 2 &&
          b.changes[0].available_after == units(4));
    /* A retry is a duplicate on each side; the decided fields are not content. */
    CHECK(run(source, t).duplicate && run(target, on_target).duplicate);
    /* Rejected by decision: nothing moves, the id is consumed on both sides. */
    bal_command big = cmd("y", BAL_OP_TRANSFER, 1, "USDT", units(100));
    big.to_account_id = 2;
    CHECK(bal_ledger_check(source, &big, 1, leg_results, &creates) && leg_results[0] == BAL_RESULT_INSUFFICIENT_AVAILABLE);
    big.leg_mask = 2;
    big.decided = 1 + BAL_RESULT_INSUFFICIENT_AVAILABLE;
    bal_test_outcome r = run(target, big);
    CHECK(r.result == BAL_RESULT_INSUFFICIENT_AVAILABLE && r.changes[0].available_after == units(4));
    bal_ledger_destroy(source);
    bal_ledger_destroy(target);
}

/* A table large enough to be prefetched (staging, locating, applying a few commands apart)
 * against one small enough not to be, over the same random batches: equal outcomes, changes
 * and state hashes. The batches are dense in balances that an earlier command of the same
 * batch creates (not found when located, found at apply), in currencies that appear in the
 * middle of a batch (not interned when staged), in transfers between two new balances and in
 * EVENTs over two accounts in two currencies. Batch sizes vary (1 to 512), so that batches
 * shorter than the look-ahead and every position of its ring are covered. (Both ledgers run
 * the same key-table code: the simulation's reference model checks that code itself.) */
static void test_pipeline_matches_unprefetched(void) {
    enum { BATCH = 512, ACCOUNTS = 300 };
    bal_ledger *large = make(200000), *small = make(20000); /* 12.8 MB and 1.3 MB of table */
    static const char *const currencies[] = {"USDT", "BTC", "ETH", "SOL", "XRP", "ADA"};
    static bal_command batch[BATCH];
    static bal_test_outcome a[BATCH], b[BATCH];
    uint64_t rng = 0x2545F4914F6CDD1Dull, id = 0;
    for (int round = 0; round < 80; round++) {
        unsigned currency_count = 2 + (unsigned)(round / 16); /* a new currency every 16 rounds */
        rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
        size_t n = round % 4 == 0 ? 1 + rng % 20 : 1 + rng % BATCH;
        for (size_t i = 0; i < n; i++) {
            rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
            char tid[32];
            snprintf(tid, sizeof(tid), "p-%llu", (unsigned long long)id++);
            /* Accounts in a narrow window that moves each round: many first credits. */
            uint64_t account = 1 + (uint64_t)round * 7 + rng % ACCOUNTS;
            const char *code = currencies[(rng >> 20) % currency_count];
            bal_op type = (bal_op)((rng >> 32) % 7);
            bal_command c = cmd(tid, type == BAL_OP_EVENT ? BAL_OP_DEPOSIT : type, account, code,
                                units(1 + (long long)((rng >> 40) % 50)));
            if (type == BAL_OP_TRANSFER) c.to_account_id = account + 1 + (rng >> 48) % 5;
            if (type == BAL_OP_EVENT) {
                const char *other = currencies[((rng >> 20) + 1) % currency_count];
                c.type = BAL_OP_EVENT;
                c.amount = 0;
                c.leg_count = 4;
                c.legs[0] = (bal_leg){account, cur(code), -units(2), 0};
                c.legs[1] = (bal_leg){account, cur(other), units(1), 0};
                c.legs[2] = (bal_leg){account + 1, cur(other), -units(1), 0};
                c.legs[3] = (bal_leg){account + 1, cur(code), units(2), 0};
            }
            if ((rng >> 56) % 16 == 0 && i > 0) c = batch[i - 1]; /* a retry inside the batch */
            batch[i] = c;
        }
        bal_test_apply(large, batch, n, NULL, a);
        bal_test_apply(small, batch, n, NULL, b);
        for (size_t i = 0; i < n; i++) {
            CHECK(a[i].sequence == b[i].sequence && a[i].result == b[i].result &&
                  a[i].duplicate == b[i].duplicate && a[i].change_count == b[i].change_count);
            CHECK(memcmp(a[i].changes, b[i].changes, a[i].change_count * sizeof(bal_change)) == 0);
        }
    }
    CHECK(bal_ledger_balance_count(large) == bal_ledger_balance_count(small));
    CHECK(bal_ledger_balance_count(large) > 1000);
    CHECK(bal_digest_equal(bal_ledger_hash(large), bal_ledger_hash(small)));
    bal_ledger_destroy(large);
    bal_ledger_destroy(small);
}

/* After a snapshot round trip every id the original still remembers is found again: a retry
 * of each is a duplicate with its original sequence, in a memory that is full and has been
 * evicting (so the index holds holes and wrapped records), with a larger id memory than the
 * unit tests' default. */
static bal_ledger *make_ids(uint32_t count_max) {
    bal_ledger_config config;
    bal_ledger_config_default(&config);
    config.balance_capacity = 4096;
    config.idempotency_count_max = count_max;
    config.idempotency_bytes_max = 64u << 20;
    bal_ledger *ledger = NULL;
    CHECK(bal_ledger_create(&config, &ledger) == BAL_LEDGER_OK);
    return ledger;
}

static void test_snapshot_keeps_every_remembered_id(void) {
    const uint32_t memory = 20000;
    const int total = 50000;
    bal_ledger *l = make_ids(memory);
    run(l, cmd("fund", BAL_OP_DEPOSIT, 7, "USDT", units(1000000)));
    for (int i = 0; i < total; i++) {
        char id[24];
        snprintf(id, sizeof(id), "id-%d", i);
        bal_command c = i % 4 == 3 ? cmd(id, BAL_OP_TRANSFER, 7, "USDT", units(1))
                                   : cmd(id, BAL_OP_DEPOSIT, 1 + (uint64_t)(i % 900), "USDT", units(1 + i % 5));
        if (c.type == BAL_OP_TRANSFER) c.to_account_id = 8 + (uint64_t)(i % 100);
        run(l, c);
    }
    CHECK(bal_ledger_idempotency_count(l) <= memory);
    uint64_t size = bal_ledger_snapshot_size(l), length = 0;
    uint8_t *buffer = malloc(size);
    CHECK(buffer != NULL && bal_ledger_snapshot_encode(l, buffer, size, &length) == BAL_LEDGER_OK);
    bal_ledger *copy = make_ids(memory);
    CHECK(bal_ledger_snapshot_decode(copy, buffer, length) == BAL_LEDGER_OK);
    CHECK(bal_ledger_idempotency_count(copy) == bal_ledger_idempotency_count(l));
    int found = 0;
    for (int i = total - 1; i >= 0 && found < (int)bal_ledger_idempotency_count(l) - 1; i--, found++) {
        char id[24];
        snprintf(id, sizeof(id), "id-%d", i);
        bal_command c = i % 4 == 3 ? cmd(id, BAL_OP_TRANSFER, 7, "USDT", units(1))
                                   : cmd(id, BAL_OP_DEPOSIT, 1 + (uint64_t)(i % 900), "USDT", units(1 + i % 5));
        if (c.type == BAL_OP_TRANSFER) c.to_account_id = 8 + (uint64_t)(i % 100);
        bal_ledger_recall recall = {0};
        bal_outcome mine;
        bal_change changes[BAL_COMMAND_BALANCES_MAX];
        CHECK(bal_ledger_peek(copy, &c, &recall, &mine, changes));
        CHECK(mine.duplicate && mine.result == BAL_RESULT_OK && mine.sequence == (uint64_t)i + 2);
    }
    free(buffer);
    bal_ledger_destroy(l);
    bal_ledger_destroy(copy);
}

int main(void) {
    test_codec();
    test_hash_values();
    test_digest_values();
    test_cross_ledgers();
    test_typed_operations();
    test_transfer_and_overflow();
    test_event_atomicity();
    test_idempotency();
    test_eviction_and_lookup_hook();
    test_idempotency_bytes_bound();
    test_capacity();
    test_account_listing();
    test_snapshot_round_trip();
    test_snapshot_keeps_every_remembered_id();
    test_pipeline_matches_unprefetched();
    test_names();
    return bal_test_finish("test_ledger");
}
