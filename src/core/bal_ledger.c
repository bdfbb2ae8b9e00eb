/*
 * bal_ledger.c -- balances in a key table and a value array, currencies interned to small ids,
 * every operation expressed as legs and applied all-or-none.
 *
 * Every typed operation becomes one or two legs (DEPOSIT: +available; FREEZE: -available
 * +frozen; TRANSFER: -available on the source, +available on the target; ...), so one
 * planner checks every rule: no balance below zero, none above BAL_MONEY_MAX, room for
 * balances that a credit creates. Only when the whole command passes are the legs written.
 */
#include "bal_ledger.h"

#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "bal_hash.h"
#include "bal_idempotency.h"

#define CURRENCY_NONE UINT32_MAX
#define VALUE_NONE UINT32_MAX
/* Apply walks a batch in steps, each a few commands ahead of the next, so that the cache
 * misses of many commands overlap: staging resolves a command's legs (LOCATE_DISTANCE +
 * PREFETCH_DISTANCE commands ahead) and, for a table too large for the cache, starts
 * loading their key slots; for such a table only, locating finds each leg's key slot, which
 * by then is in cache, and starts loading the balance it points at (PREFETCH_DISTANCE
 * ahead); applying finds both loaded. A table that fits the cache skips locating. */
#define LOCATE_DISTANCE 8
#define PREFETCH_DISTANCE 8
#define LOOKAHEAD_RING 32
/* Tables smaller than this stay in cache: prefetching them only costs time. */
#define PREFETCH_TABLE_BYTES_MIN (8u << 20)
_Static_assert(LOOKAHEAD_RING > LOCATE_DISTANCE + PREFETCH_DISTANCE && (LOOKAHEAD_RING & (LOOKAHEAD_RING - 1)) == 0,
               "the look-ahead ring holds every command between staging and use");

/* A leg as apply needs it, resolved when its command was staged so that nothing is
 * looked up or hashed twice. The home slot stays right however the table fills up in the
 * meantime (keys never move); a currency that was not interned yet is looked up again, and
 * so is a balance that did not exist when located (an earlier command may create it). */
typedef struct staged_leg {
    bal_amount available_delta;
    bal_amount frozen_delta;
    uint64_t account_id;
    uint64_t currency_code;
    uint64_t home;               /* the key's home slot, when currency_id is known */
    uint32_t currency_id;        /* CURRENCY_NONE: not interned when staged */
    uint32_t value;              /* the balance's index, if it existed when located; else VALUE_NONE */
} staged_leg;

/* A command reduced to what apply reads: the legs this ledger applies, in leg order, and
 * the hash of its transaction id. */
typedef struct staged {
    uint64_t id_hash;
    unsigned leg_count;
    staged_leg legs[BAL_COMMAND_BALANCES_MAX];
} staged;
#define CURRENCY_INDEX_SLOTS (2 * BAL_CURRENCIES_MAX)

/* The balance table is two arrays. Keys: open addressing with linear probing over 16-byte
 * slots, two per balance of capacity (load factor at most 1/2: a look-up reads 1.5 slots on
 * average, nearly always within one cache line). Values: the amounts, dense in creation
 * order, 32 bytes aligned to 32 (always one cache line). 2 x 16 + 32 = 64 bytes per balance.
 * Balances are never removed, so neither a key nor a value ever moves. */
typedef struct key_slot {
    uint64_t account_id;         /* 0 marks an empty slot (valid accounts are > 0) */
    uint32_t currency_id;
    uint32_t value;              /* index into values */
} key_slot;
_Static_assert(sizeof(key_slot) == 16, "a key slot is 16 bytes");

typedef struct balance_value {
    _Alignas(32) bal_amount available; /* one cache line per value (table_alloc aligns more) */
    bal_amount frozen;
} balance_value;
_Static_assert(sizeof(balance_value) == 32, "a balance value is 32 bytes");
#define KEY_SLOTS_PER_BALANCE 2u
_Static_assert(BAL_BALANCES_MAX < VALUE_NONE, "value indexes fit 32 bits");

struct bal_ledger {
    key_slot *keys;
    balance_value *values;
    uint64_t slot_count;          /* balance_capacity * KEY_SLOTS_PER_BALANCE */
    uint64_t balance_count;
    uint64_t balance_capacity;
    uint64_t sequence;
    uint64_t seed;
    uint32_t currency_count;
    bool forgetful;               /* ids may have left memory: the look-up hook is needed */
    bool prefetch;                /* the table is too large for the cache: prefetch ahead */
    int64_t retention_ms;
    bal_idempotency *ids;
    uint64_t currency_codes[BAL_CURRENCIES_MAX];
    uint16_t currency_index[CURRENCY_INDEX_SLOTS]; /* id + 1; 0 = empty */
    staged ring[LOOKAHEAD_RING];
};

/* Where a planned leg's balance lives (NULL: nowhere yet) and whether the leg creates it.
 * The leg's values before and after are planned straight into its bal_change. */
typedef struct plan_slot {
    balance_value *slot;
    bool create;
} plan_slot;

const char *bal_ledger_status_name(bal_ledger_status status) {
    switch (status) {
    case BAL_LEDGER_OK: return "ok";
    case BAL_LEDGER_INVALID_CONFIG: return "invalid_config";
    case BAL_LEDGER_OUT_OF_MEMORY: return "out_of_memory";
    case BAL_LEDGER_SNAPSHOT_TRUNCATED: return "snapshot_truncated";
    case BAL_LEDGER_SNAPSHOT_BAD_MAGIC: return "snapshot_bad_magic";
    case BAL_LEDGER_SNAPSHOT_BAD_VERSION: return "snapshot_bad_version";
    case BAL_LEDGER_SNAPSHOT_BAD_CHECKSUM: return "snapshot_bad_checksum";
    case BAL_LEDGER_SNAPSHOT_CORRUPT: return "snapshot_corrupt";
    case BAL_LEDGER_SNAPSHOT_TOO_LARGE: return "snapshot_too_large";
    case BAL_LEDGER_NOT_EMPTY: return "not_empty";
    case BAL_LEDGER_BUFFER_TOO_SMALL: return "buffer_too_small";
    }
    return "unknown";
}

void bal_ledger_config_default(bal_ledger_config *config) {
    assert(config != NULL);
    config->balance_capacity = 1u << 20;
    config->idempotency_count_max = 1u << 20;
    config->idempotency_bytes_max = 128ull << 20;
    config->idempotency_retention_ms = 24ll * 3600 * 1000;
    config->hash_seed = 0x5eed;
}

/* Large tables (those apply prefetches) are touched at random: back them with huge pages
 * where the kernel allows, so that a lookup costs one cache miss rather than a cache miss
 * plus a page walk. Small ones are only line-aligned: rounding each of a small ledger's two
 * arrays up to 2 MiB, and zeroing that, doubled the unit tests' time. */
static void *table_alloc(uint64_t bytes, bool large) {
    uint64_t alignment = large ? 2u << 20 : 64u;
    uint64_t rounded = (bytes + alignment - 1) / alignment * alignment;
    void *memory = aligned_alloc(alignment, rounded);
    if (memory == NULL) return NULL;
    if (large) (void)madvise(memory, rounded, MADV_HUGEPAGE); /* advice only: failure is harmless */
    memset(memory, 0, rounded);
    return memory;
}

bal_ledger_status bal_ledger_create(const bal_ledger_config *config, bal_ledger **ledger_out) {
    assert(config != NULL && ledger_out != NULL);
    if (config->balance_capacity == 0 || config->balance_capacity > BAL_BALANCES_MAX ||
        config->idempotency_count_max == 0 || config->idempotency_count_max > BAL_IDEMPOTENCY_COUNT_MAX ||
        config->idempotency_retention_ms <= 0 ||
        config->idempotency_bytes_max < 4 * bal_idempotency_record_bytes_max()) {
        return BAL_LEDGER_INVALID_CONFIG;
    }
    bal_ledger *ledger = calloc(1, sizeof(*ledger));
    if (ledger == NULL) return BAL_LEDGER_OUT_OF_MEMORY;
    ledger->balance_capacity = config->balance_capacity;
    ledger->slot_count = config->balance_capacity * KEY_SLOTS_PER_BALANCE;
    bool large = bal_ledger_balance_memory_bytes(ledger) >= PREFETCH_TABLE_BYTES_MIN;
    ledger->keys = table_alloc(ledger->slot_count * sizeof(key_slot), large);
    ledger->values = table_alloc(config->balance_capacity * sizeof(balance_value), large);
    ledger->ids = bal_idempotency_create(config->idempotency_count_max,
                                         config->idempotency_bytes_max, config->hash_seed);
    if (ledger->keys == NULL || ledger->values == NULL || ledger->ids == NULL) {
        bal_ledger_destroy(ledger);
        return BAL_LEDGER_OUT_OF_MEMORY;
    }
    ledger->seed = config->hash_seed;
    ledger->prefetch = large;
    ledger->retention_ms = config->idempotency_retention_ms;
    *ledger_out = ledger;
    return BAL_LEDGER_OK;
}

void bal_ledger_destroy(bal_ledger *ledger) {
    if (ledger == NULL) return;
    free(ledger->keys);
    free(ledger->values);
    bal_idempotency_destroy(ledger->ids);
    free(ledger);
}

static inline __attribute__((always_inline)) uint32_t currency_find(const bal_ledger *ledger, uint64_t code) {
    uint32_t i = (uint32_t)(bal_hash_u64(code, 0) & (CURRENCY_INDEX_SLOTS - 1));
    for (;; i = (i + 1) & (CURRENCY_INDEX_SLOTS - 1)) {
        uint16_t slot = ledger->currency_index[i];
        if (slot == 0) return CURRENCY_NONE;
        if (ledger->currency_codes[slot - 1] == code) return slot - 1u;
    }
}

static uint32_t currency_intern(bal_ledger *ledger, uint64_t code) {
    assert(ledger->currency_count < BAL_CURRENCIES_MAX);
    assert(currency_find(ledger, code) == CURRENCY_NONE);
    uint32_t id = ledger->currency_count++;
    ledger->currency_codes[id] = code;
    uint32_t i = (uint32_t)(bal_hash_u64(code, 0) & (CURRENCY_INDEX_SLOTS - 1));
    while (ledger->currency_index[i] != 0) i = (i + 1) & (CURRENCY_INDEX_SLOTS - 1);
    ledger->currency_index[i] = (uint16_t)(id + 1);
    return id;
}

/* Two mixing rounds: with one (bal_hash_u64), the top bits that pick the slot varied too
 * little across consecutive account ids, and at 1M accounts x 2 currencies a look-up (in the
 * earlier table at load 3/4) probed 11 entries on average instead of linear probing's 2.5. */
static uint64_t slot_home(const bal_ledger *ledger, uint64_t account_id, uint32_t currency_id) {
    uint64_t hash = bal_hash_mix(bal_hash_mix(account_id ^ ledger->seed ^ BAL_HASH_P0, BAL_HASH_P1) ^ currency_id,
                                 BAL_HASH_P2);
    return bal_hash_reduce(hash, ledger->slot_count);
}

/* Finds the key slot of (account, currency), or the empty slot where it would go,
 * probing from the key's home slot. */
static key_slot *slot_find_from(const bal_ledger *ledger, uint64_t home, uint64_t account_id, uint32_t currency_id) {
    assert(account_id != 0 && home < ledger->slot_count);
    uint64_t i = home;
    for (;;) {
        key_slot *k = &ledger->keys[i];
        if (k->account_id == 0 || (k->account_id == account_id && k->currency_id == currency_id)) return k;
        if (++i == ledger->slot_count) i = 0;
    }
}

static key_slot *slot_find(const bal_ledger *ledger, uint64_t account_id, uint32_t currency_id) {
    return slot_find_from(ledger, slot_home(ledger, account_id, currency_id), account_id, currency_id);
}

static balance_value *value_of(const bal_ledger *ledger, const key_slot *k) {
    return k->account_id == 0 ? NULL : &ledger->values[k->value];
}

static const balance_value *entry_find(const bal_ledger *ledger, uint64_t account_id, uint64_t currency_code) {
    uint32_t currency_id = currency_find(ledger, currency_code);
    if (currency_id == CURRENCY_NONE) return NULL;
    return value_of(ledger, slot_find(ledger, account_id, currency_id));
}

/* Fills the empty key slot k with a new balance (zero) and returns its value. */
static balance_value *slot_fill(bal_ledger *ledger, key_slot *k, uint64_t account_id, uint32_t currency_id) {
    assert(k->account_id == 0 && ledger->balance_count < ledger->balance_capacity);
    k->account_id = account_id;
    k->currency_id = currency_id;
    k->value = (uint32_t)ledger->balance_count++;
    return &ledger->values[k->value]; /* zero since creation: balances are never removed */
}

static balance_value *entry_create(bal_ledger *ledger, uint64_t account_id, uint64_t currency_code) {
    uint32_t currency_id = currency_find(ledger, currency_code);
    if (currency_id == CURRENCY_NONE) currency_id = currency_intern(ledger, currency_code);
    return slot_fill(ledger, slot_find(ledger, account_id, currency_id), account_id, currency_id);
}

/* Looks a staged code up. A code the ledger has interned was checked when it was interned;
 * any other is checked here, so every code apply sees is known to be well-formed. */
static uint32_t stage_currency(const bal_ledger *ledger, bal_currency currency) {
    uint32_t currency_id = currency_find(ledger, currency.code);
    assert(currency_id != CURRENCY_NONE || bal_currency_valid(currency));
    return currency_id;
}

static void stage_leg(const bal_ledger *ledger, staged_leg *leg, uint64_t account_id, uint64_t currency_code,
                      uint32_t currency_id, bal_amount available_delta, bal_amount frozen_delta) {
    leg->available_delta = available_delta;
    leg->frozen_delta = frozen_delta;
    leg->account_id = account_id;
    leg->currency_code = currency_code;
    leg->currency_id = currency_id;
    leg->value = VALUE_NONE;
    leg->home = currency_id == CURRENCY_NONE ? 0 : slot_home(ledger, account_id, currency_id);
}

/* Stages the legs in leg_mask (bit i = leg i) of a command, in leg order. */
static void stage_legs(const bal_ledger *ledger, const bal_command *command, uint32_t leg_mask, staged *out) {
    bal_leg all[BAL_COMMAND_BALANCES_MAX];
    unsigned total = bal_command_legs(command, all), count = 0;
    for (unsigned i = 0; i < total; i++) {
        if (((leg_mask >> i) & 1u) == 0) continue;
        stage_leg(ledger, &out->legs[count++], all[i].account_id, all[i].currency.code,
                  stage_currency(ledger, all[i].currency), all[i].available_delta, all[i].frozen_delta);
    }
    out->leg_count = count;
}

/* The common case, without going through a leg array: all legs of a typed operation (the
 * same legs as bal_command_legs gives, from the same signs), one currency look-up. */
static void stage_typed(const bal_ledger *ledger, const bal_command *command, staged *out) {
    assert(command->type != BAL_OP_EVENT && command->leg_mask == 0);
    bal_op_signs signs = bal_op_leg_signs((bal_op)command->type);
    uint32_t currency_id = stage_currency(ledger, command->currency);
    stage_leg(ledger, &out->legs[0], command->account_id, command->currency.code, currency_id,
              bal_amount_signed(command->amount, signs.available), bal_amount_signed(command->amount, signs.frozen));
    out->leg_count = 1;
    if (command->type != BAL_OP_TRANSFER) return;
    stage_leg(ledger, &out->legs[1], command->to_account_id, command->currency.code, currency_id, command->amount, 0);
    out->leg_count = 2;
}

/* Finds a staged leg's balance; NULL if it does not exist (yet). */
static balance_value *leg_entry(const bal_ledger *ledger, staged_leg *leg) {
    if (leg->value != VALUE_NONE) return &ledger->values[leg->value]; /* located: it still is there */
    if (leg->currency_id == CURRENCY_NONE) {
        leg->currency_id = currency_find(ledger, leg->currency_code); /* interned since staged? */
        if (leg->currency_id == CURRENCY_NONE) return NULL;
        leg->home = slot_home(ledger, leg->account_id, leg->currency_id);
    }
    return value_of(ledger, slot_find_from(ledger, leg->home, leg->account_id, leg->currency_id));
}

/* Creates a staged leg's balance (interning its currency if needed). */
static balance_value *leg_create(bal_ledger *ledger, staged_leg *leg) {
    if (leg->currency_id == CURRENCY_NONE) {
        /* An earlier leg of the same command may have interned it. */
        leg->currency_id = currency_find(ledger, leg->currency_code);
        if (leg->currency_id == CURRENCY_NONE) leg->currency_id = currency_intern(ledger, leg->currency_code);
        leg->home = slot_home(ledger, leg->account_id, leg->currency_id);
    }
    key_slot *k = slot_find_from(ledger, leg->home, leg->account_id, leg->currency_id);
    return slot_fill(ledger, k, leg->account_id, leg->currency_id);
}

/* First rule a leg breaks, in the order: available, frozen, overflow. */
static bal_result leg_check(const bal_change *leg) {
    if (leg->available_after < 0) return BAL_RESULT_INSUFFICIENT_AVAILABLE;
    if (leg->frozen_after < 0) return BAL_RESULT_INSUFFICIENT_FROZEN;
    if (leg->available_after > BAL_MONEY_MAX || leg->frozen_after > BAL_MONEY_MAX) return BAL_RESULT_OVERFLOW;
    return BAL_RESULT_OK;
}

/* Counts the distinct currencies among creating legs that the ledger has never seen. */
static uint32_t new_currency_count(const staged *st, const plan_slot *plan) {
    uint32_t distinct = 0;
    for (unsigned i = 0; i < st->leg_count; i++) {
        if (!plan[i].create || st->legs[i].currency_id != CURRENCY_NONE) continue;
        bool seen = false;
        for (unsigned j = 0; j < i && !seen; j++) {
            seen = plan[j].create && st->legs[j].currency_code == st->legs[i].currency_code;
        }
        distinct += seen ? 0 : 1;
    }
    return distinct;
}

/* Plans every leg (its balance before and after, into changes) and decides the result;
 * changes nothing in the ledger. count is st->leg_count, passed as a constant where the
 * caller knows it (see apply_one). */
static inline __attribute__((always_inline)) bal_result plan_legs(const bal_ledger *ledger, staged *st, unsigned count,
                                                                 plan_slot *plan, bal_change *changes) {
    bal_result result = BAL_RESULT_OK;
    uint64_t creates = 0;
    for (unsigned i = 0; i < count; i++) {
        staged_leg *leg = &st->legs[i];
        bal_change *c = &changes[i];
        balance_value *e = leg_entry(ledger, leg);
        c->account_id = leg->account_id;
        c->currency.code = leg->currency_code;
        c->available_before = e ? e->available : 0;
        c->frozen_before = e ? e->frozen : 0;
        /* Operands are within +-BAL_MONEY_MAX < 2^120: the sums cannot wrap. */
        c->available_after = c->available_before + leg->available_delta;
        c->frozen_after = c->frozen_before + leg->frozen_delta;
        plan[i].slot = e;
        plan[i].create = e == NULL && (c->available_after > 0 || c->frozen_after > 0);
        creates += plan[i].create ? 1 : 0;
        if (result == BAL_RESULT_OK) result = leg_check(c);
    }
    if (result != BAL_RESULT_OK) return result;
    if (creates > ledger->balance_capacity - ledger->balance_count) return BAL_RESULT_CAPACITY_EXCEEDED;
    if (creates > 0 && new_currency_count(st, plan) > BAL_CURRENCIES_MAX - ledger->currency_count) {
        return BAL_RESULT_CAPACITY_EXCEEDED;
    }
    return BAL_RESULT_OK;
}

static inline __attribute__((always_inline)) void commit_legs(bal_ledger *ledger, staged *st, unsigned count,
                                                              const plan_slot *plan, const bal_change *changes) {
    for (unsigned i = 0; i < count; i++) {
        balance_value *e = plan[i].create ? leg_create(ledger, &st->legs[i]) : plan[i].slot;
        if (e == NULL) continue; /* a zero leg on a balance that does not exist */
        assert(changes[i].available_after >= 0 && changes[i].frozen_after >= 0);
        e->available = changes[i].available_after;
        e->frozen = changes[i].frozen_after;
    }
}

/* Applies a staged command of count legs and writes its outcome; its changes go to
 * changes[0..count). */
static inline __attribute__((always_inline)) void apply_legs(bal_ledger *ledger, const bal_command *command, staged *st,
                                                             unsigned count, bal_outcome *outcome, bal_change *changes) {
    plan_slot plan[BAL_COMMAND_BALANCES_MAX];
    assert(count == st->leg_count && count >= 1 && count <= BAL_COMMAND_BALANCES_MAX);
    bal_result result = plan_legs(ledger, st, count, plan, changes);
    if (command->decided != 0) {
        /* The coordinator checked these legs against this same state: they must pass. */
        assert(command->decided - 1 != BAL_RESULT_OK || result == BAL_RESULT_OK);
        result = (bal_result)(command->decided - 1);
    }
    if (result == BAL_RESULT_OK) {
        commit_legs(ledger, st, count, plan, changes);
    } else {
        for (unsigned i = 0; i < count; i++) { /* rejected: every balance stays as it was */
            changes[i].available_after = changes[i].available_before;
            changes[i].frozen_after = changes[i].frozen_before;
        }
    }
    outcome->sequence = ++ledger->sequence;
    outcome->result = (uint8_t)result;
    outcome->duplicate = false;
    outcome->change_count = (uint8_t)count;
}

/* apply_legs with the leg count as a constant for the common counts (one leg, or a
 * TRANSFER's two): the compiler then unrolls the per-leg loops. Measured: the loops'
 * bookkeeping was a tenth of a typed command's instructions, and instructions between the
 * prefetches of the table slow the memory-bound figures more than their own cost. */
static void apply_one(bal_ledger *ledger, const bal_command *command, staged *st, bal_outcome *outcome,
                      bal_change *changes) {
    switch (st->leg_count) {
    case 1: apply_legs(ledger, command, st, 1, outcome, changes); break;
    case 2: apply_legs(ledger, command, st, 2, outcome, changes); break;
    default: apply_legs(ledger, command, st, st->leg_count, outcome, changes); break;
    }
}

/* Answers a command whose id was used before: duplicate if same content, else conflict. */
static void answer_used(const bal_idempotency_view *view, bal_digest digest, bal_outcome *outcome,
                        bal_change *changes) {
    if (bal_digest_equal(view->digest, digest)) {
        bal_idempotency_outcome(view, outcome, changes);
        return;
    }
    outcome->sequence = view->sequence;
    outcome->result = BAL_RESULT_CONFLICT;
    outcome->duplicate = false;
    outcome->change_count = 0;
}

/* The id was found by the look-up hook: answer from the store's record, and remember it. */
static bool answer_recalled(bal_ledger *ledger, const bal_command *command, bal_digest digest,
                            const bal_ledger_recall *recall, bal_outcome *outcome, bal_change *changes) {
    if (recall == NULL || recall->original == NULL) return false;
    assert(recall->outcome != NULL);
    assert(recall->original->transaction_id_length == command->transaction_id_length &&
           memcmp(recall->original->transaction_id, command->transaction_id, command->transaction_id_length) == 0);
    if (recall->outcome->sequence > ledger->sequence) return false; /* from the future: see header */
    bal_digest original_digest = bal_command_digest(recall->original);
    assert(recall->changes != NULL || recall->outcome->change_count == 0);
    bal_idempotency_insert(ledger->ids, recall->original, original_digest, recall->outcome, recall->changes);
    bal_idempotency_view view;
    bool found = bal_idempotency_find(ledger->ids, command->transaction_id, command->transaction_id_length, &view);
    assert(found);
    answer_used(&view, digest, outcome, changes);
    return true;
}

/* Evicts ids by age (against the batch's latest time) and makes room for one record per
 * command, so that nothing leaves memory while the batch runs. */
static void make_room(bal_ledger *ledger, const bal_command *commands, size_t count) {
    assert(count <= bal_ledger_batch_max(ledger));
    int64_t latest_ms = INT64_MIN;
    for (size_t i = 0; i < count; i++) {
        if (commands[i].transaction_id_length > 0 && commands[i].time_ms > latest_ms) latest_ms = commands[i].time_ms;
    }
    if (latest_ms == INT64_MIN) return;
    bal_idempotency_expire(ledger->ids, latest_ms, ledger->retention_ms);
    bal_idempotency_make_room(ledger->ids, (uint32_t)count);
    if (bal_idempotency_evicted(ledger->ids) > 0) ledger->forgetful = true;
}

/* Resolves a command into the look-ahead ring and starts loading what it will touch, so
 * that the cache misses of several commands overlap. Asserts the command's validity: every
 * command is staged exactly once before it is applied. */
static void stage_command(bal_ledger *ledger, const bal_command *command, staged *st) {
    if (command->type != BAL_OP_EVENT) {
        assert(bal_command_typed_valid_except_currency(command));
    } else {
        assert(bal_command_valid_except_currencies(command));
    }
    if (command->type != BAL_OP_EVENT && command->leg_mask == 0) {
        stage_typed(ledger, command, st);
    } else {
        stage_legs(ledger, command, command->leg_mask == 0 ? UINT32_MAX : command->leg_mask, st);
    }
    if (ledger->prefetch) {
        for (unsigned i = 0; i < st->leg_count; i++) {
            if (st->legs[i].currency_id == CURRENCY_NONE) continue;
            uint64_t home = st->legs[i].home;
            /* The home slot's line, and the next slot's: the same line unless the home slot
             * ends its line, and then the probe goes on into the next often enough. Without a
             * branch (measured +5% over testing for the line's end); one past the last slot
             * is still a valid pointer, and a prefetch never faults. */
            __builtin_prefetch(&ledger->keys[home]);
            __builtin_prefetch(&ledger->keys[home] + 1);
        }
    }
    if (command->transaction_id_length > 0) {
        st->id_hash = bal_idempotency_hash(ledger->ids, command->transaction_id, command->transaction_id_length);
        if (ledger->prefetch) bal_idempotency_prefetch(ledger->ids, st->id_hash);
    }
}

/* The second step: finds each staged leg's balance, whose key slot staging loaded, and
 * starts loading its value for the update. */
static void locate_command(const bal_ledger *ledger, staged *st) {
    for (unsigned i = 0; i < st->leg_count; i++) {
        staged_leg *leg = &st->legs[i];
        if (leg->currency_id == CURRENCY_NONE) continue;
        const key_slot *k = slot_find_from(ledger, leg->home, leg->account_id, leg->currency_id);
        if (k->account_id == 0) continue;
        leg->value = k->value;
        __builtin_prefetch(&ledger->values[k->value], 1);
    }
}

void bal_ledger_apply(bal_ledger *ledger, const bal_command *commands, size_t count,
                      const bal_ledger_recall *recalled, bal_outcome *outcomes, bal_change *changes) {
    assert(ledger != NULL);
    assert(count == 0 || (commands != NULL && outcomes != NULL && changes != NULL));
    make_room(ledger, commands, count);
    uint64_t evicted_before = bal_idempotency_evicted(ledger->ids);
    const size_t stage_ahead = LOCATE_DISTANCE + PREFETCH_DISTANCE;
    for (size_t i = 0; i < count && i < stage_ahead; i++) {
        stage_command(ledger, &commands[i], &ledger->ring[i % LOOKAHEAD_RING]);
    }
    if (ledger->prefetch) {
        for (size_t i = 0; i < count && i < PREFETCH_DISTANCE; i++) locate_command(ledger, &ledger->ring[i % LOOKAHEAD_RING]);
    }
    uint32_t next_change = 0;
    for (size_t i = 0; i < count; i++) {
        const bal_command *command = &commands[i];
        bal_outcome *outcome = &outcomes[i];
        bal_change *here = &changes[next_change];
        outcome->first_change = next_change;
        if (i + stage_ahead < count) {
            stage_command(ledger, &commands[i + stage_ahead], &ledger->ring[(i + stage_ahead) % LOOKAHEAD_RING]);
        }
        if (ledger->prefetch && i + PREFETCH_DISTANCE < count) {
            locate_command(ledger, &ledger->ring[(i + PREFETCH_DISTANCE) % LOOKAHEAD_RING]);
        }
        staged *st = &ledger->ring[i % LOOKAHEAD_RING];
        next_change += st->leg_count; /* bal_command_balance_count: the most this command writes */
        if (command->transaction_id_length == 0) {
            apply_one(ledger, command, st, outcome, here);
            continue;
        }
        bal_digest digest = bal_command_digest(command);
        bal_idempotency_view view;
        if (bal_idempotency_find_hashed(ledger->ids, st->id_hash, command->transaction_id,
                                        command->transaction_id_length, &view)) {
            answer_used(&view, digest, outcome, here);
            continue;
        }
        if (answer_recalled(ledger, command, digest, recalled ? &recalled[i] : NULL, outcome, here)) continue;
        apply_one(ledger, command, st, outcome, here);
        bal_idempotency_insert_hashed(ledger->ids, st->id_hash, command, digest, outcome, here);
    }
    assert(bal_idempotency_evicted(ledger->ids) == evicted_before); /* room was made */
}

bool bal_ledger_check(const bal_ledger *ledger, const bal_command *command, uint16_t leg_mask,
                      uint8_t *leg_results, uint32_t *creates_out) {
    assert(ledger != NULL && command != NULL && leg_results != NULL && creates_out != NULL);
    staged st;
    plan_slot plan[BAL_COMMAND_BALANCES_MAX];
    bal_change legs[BAL_COMMAND_BALANCES_MAX];
    unsigned total = bal_command_leg_total(command), count = 0, index[BAL_COMMAND_BALANCES_MAX];
    for (unsigned i = 0; i < total; i++) {
        if ((leg_mask >> i) & 1u) index[count++] = i;
    }
    stage_legs(ledger, command, leg_mask, &st);
    assert(st.leg_count == count);
    bal_result overall = count > 0 ? plan_legs(ledger, &st, st.leg_count, plan, legs) : BAL_RESULT_OK;
    uint32_t creates = 0;
    for (unsigned k = 0; k < count; k++) {
        leg_results[index[k]] = (uint8_t)leg_check(&legs[k]);
        creates += plan[k].create ? 1 : 0;
    }
    *creates_out = creates;
    return overall != BAL_RESULT_CAPACITY_EXCEEDED;
}

bool bal_ledger_peek(const bal_ledger *ledger, const bal_command *command, const bal_ledger_recall *recall,
                     bal_outcome *outcome, bal_change *changes) {
    assert(ledger != NULL && command != NULL && outcome != NULL && changes != NULL);
    if (command->transaction_id_length == 0) return false;
    bal_digest digest = bal_command_digest(command);
    outcome->first_change = 0;
    bal_idempotency_view view;
    if (bal_idempotency_find(ledger->ids, command->transaction_id, command->transaction_id_length, &view)) {
        answer_used(&view, digest, outcome, changes);
        return true;
    }
    if (recall == NULL || recall->original == NULL || recall->outcome->sequence > ledger->sequence) return false;
    if (bal_digest_equal(bal_command_digest(recall->original), digest)) {
        *outcome = *recall->outcome;
        outcome->first_change = 0;
        outcome->duplicate = true;
        for (unsigned i = 0; i < outcome->change_count; i++) {
            changes[i] = recall->changes[i];
            changes[i].available_before = changes[i].available_after;
            changes[i].frozen_before = changes[i].frozen_after;
        }
    } else {
        *outcome = (bal_outcome){.sequence = recall->outcome->sequence, .result = BAL_RESULT_CONFLICT};
    }
    return true;
}

size_t bal_ledger_batch_max(const bal_ledger *ledger) {
    return bal_idempotency_batch_max(ledger->ids);
}

bool bal_ledger_balance(const bal_ledger *ledger, uint64_t account_id, bal_currency currency,
                        bal_amount *available_out, bal_amount *frozen_out) {
    assert(ledger != NULL && available_out != NULL && frozen_out != NULL);
    const balance_value *e = account_id == 0 ? NULL : entry_find(ledger, account_id, currency.code);
    *available_out = e ? e->available : 0;
    *frozen_out = e ? e->frozen : 0;
    return e != NULL;
}

size_t bal_ledger_account_balances(const bal_ledger *ledger, uint64_t account_id,
                                   bal_balance *balances_out, size_t max_count, size_t *total_out) {
    assert(ledger != NULL && total_out != NULL);
    size_t total = 0;
    for (uint32_t id = 0; id < ledger->currency_count && account_id != 0; id++) {
        const balance_value *e = value_of(ledger, slot_find(ledger, account_id, id));
        if (e == NULL) continue;
        /* Insertion sort by currency code: accounts hold few currencies. */
        if (total < max_count) {
            size_t j = total;
            bal_balance b = {{ledger->currency_codes[id]}, e->available, e->frozen};
            while (j > 0 && balances_out[j - 1].currency.code > b.currency.code) {
                balances_out[j] = balances_out[j - 1];
                j--;
            }
            balances_out[j] = b;
        }
        total++;
    }
    *total_out = total;
    return total < max_count ? total : max_count;
}

size_t bal_ledger_prepare(bal_ledger *ledger, const bal_command *commands, size_t count,
                          uint32_t *indexes_out) {
    assert(ledger != NULL && indexes_out != NULL);
    make_room(ledger, commands, count);
    if (!ledger->forgetful) return 0;
    size_t found = 0;
    for (size_t i = 0; i < count; i++) {
        const bal_command *c = &commands[i];
        if (c->transaction_id_length == 0) continue;
        bal_idempotency_view view;
        if (!bal_idempotency_find(ledger->ids, c->transaction_id, c->transaction_id_length, &view)) {
            indexes_out[found++] = (uint32_t)i;
        }
    }
    return found;
}

void bal_ledger_set_forgetful(bal_ledger *ledger) { ledger->forgetful = true; }

uint64_t bal_ledger_sequence(const bal_ledger *ledger) { return ledger->sequence; }
uint64_t bal_ledger_balance_count(const bal_ledger *ledger) { return ledger->balance_count; }
uint64_t bal_ledger_balance_capacity(const bal_ledger *ledger) { return ledger->balance_capacity; }
uint64_t bal_ledger_balance_memory_bytes(const bal_ledger *ledger) {
    return ledger->slot_count * sizeof(key_slot) + ledger->balance_capacity * sizeof(balance_value);
}
uint64_t bal_ledger_idempotency_memory_bytes(const bal_ledger *ledger) {
    return bal_idempotency_memory_bytes(ledger->ids);
}
uint32_t bal_ledger_idempotency_count(const bal_ledger *ledger) { return bal_idempotency_count(ledger->ids); }

static uint64_t entry_hash(const key_slot *k, const balance_value *e, uint64_t currency_code, uint64_t seed) {
    uint64_t words[6];
    words[0] = k->account_id;
    words[1] = currency_code;
    memcpy(&words[2], &e->available, 16);
    memcpy(&words[4], &e->frozen, 16);
    return bal_hash_bytes(words, sizeof(words), seed);
}

bal_digest bal_ledger_hash(const bal_ledger *ledger) {
    assert(ledger != NULL);
    /* A sum of per-balance hashes does not depend on where balances sit in the table. */
    uint64_t low = 0, high = 0;
    for (uint64_t i = 0; i < ledger->slot_count; i++) {
        const key_slot *k = &ledger->keys[i];
        if (k->account_id == 0) continue;
        const balance_value *e = &ledger->values[k->value];
        uint64_t code = ledger->currency_codes[k->currency_id];
        low += entry_hash(k, e, code, BAL_HASH_P1);
        high += entry_hash(k, e, code, BAL_HASH_P2);
    }
    uint64_t tail[4] = {low, high, ledger->sequence, ledger->balance_count};
    bal_digest digest = {
        .low = bal_hash_bytes(tail, sizeof(tail), BAL_HASH_P3),
        .high = bal_hash_bytes(tail, sizeof(tail), BAL_HASH_P0),
    };
    return digest;
}

/*
 * Snapshot encoding, version 1 (little-endian):
 *   "BALSNAP1" | u32 version | u32 flags (bit 0: forgetful) | u64 sequence
 *   u64 balance_count | u32 currency_count | u32 id_record_count | u64 id_record_bytes
 *   currency_count x u64 code (in id order)
 *   balance_count x (u64 account, u64 currency code, i128 available, i128 frozen)
 *   id records, oldest first, as bal_idempotency_each gives them
 *   16 bytes: the state hash (checked again after loading)
 *   16 bytes: checksum of everything before
 */
#define SNAPSHOT_MAGIC "BALSNAP1"
#define SNAPSHOT_VERSION 1u
#define SNAPSHOT_HEADER_BYTES 48u
#define SNAPSHOT_BALANCE_BYTES 48u
#define SNAPSHOT_TRAILER_BYTES 32u
#define SNAPSHOT_FLAG_FORGETFUL 1u

typedef struct snapshot_writer {
    uint8_t *buffer;
    uint64_t length;
    uint64_t id_records;
} snapshot_writer;

static void put_bytes(snapshot_writer *w, const void *bytes, uint64_t length) {
    memcpy(w->buffer + w->length, bytes, length);
    w->length += length;
}

static void put_id_record(void *context, const uint8_t *record, uint32_t length) {
    snapshot_writer *w = context;
    put_bytes(w, record, length);
    w->id_records++;
}

static void count_id_bytes(void *context, const uint8_t *record, uint32_t length) {
    (void)record;
    *(uint64_t *)context += length;
}

uint64_t bal_ledger_snapshot_size(const bal_ledger *ledger) {
    assert(ledger != NULL);
    uint64_t id_bytes = 0;
    bal_idempotency_each(ledger->ids, count_id_bytes, &id_bytes);
    return SNAPSHOT_HEADER_BYTES + (uint64_t)ledger->currency_count * 8 +
           ledger->balance_count * SNAPSHOT_BALANCE_BYTES + id_bytes + SNAPSHOT_TRAILER_BYTES;
}

static void put_checksum(snapshot_writer *w) {
    uint64_t sum[2] = {
        bal_hash_bytes(w->buffer, w->length, BAL_HASH_P0),
        bal_hash_bytes(w->buffer, w->length, BAL_HASH_P3),
    };
    put_bytes(w, sum, sizeof(sum));
}

bal_ledger_status bal_ledger_snapshot_encode(const bal_ledger *ledger, uint8_t *buffer,
                                             uint64_t buffer_size, uint64_t *length_out) {
    assert(ledger != NULL && buffer != NULL && length_out != NULL);
    uint64_t size = bal_ledger_snapshot_size(ledger);
    if (buffer_size < size) return BAL_LEDGER_BUFFER_TOO_SMALL;
    snapshot_writer w = {buffer, 0, 0};
    uint64_t id_bytes = size - SNAPSHOT_HEADER_BYTES - (uint64_t)ledger->currency_count * 8 -
                        ledger->balance_count * SNAPSHOT_BALANCE_BYTES - SNAPSHOT_TRAILER_BYTES;
    uint32_t version = SNAPSHOT_VERSION, flags = ledger->forgetful ? SNAPSHOT_FLAG_FORGETFUL : 0;
    uint32_t id_count = bal_idempotency_count(ledger->ids);
    put_bytes(&w, SNAPSHOT_MAGIC, 8);
    put_bytes(&w, &version, 4);
    put_bytes(&w, &flags, 4);
    put_bytes(&w, &ledger->sequence, 8);
    put_bytes(&w, &ledger->balance_count, 8);
    put_bytes(&w, &ledger->currency_count, 4);
    put_bytes(&w, &id_count, 4);
    put_bytes(&w, &id_bytes, 8);
    put_bytes(&w, ledger->currency_codes, (uint64_t)ledger->currency_count * 8);
    for (uint64_t i = 0; i < ledger->slot_count; i++) {
        const key_slot *k = &ledger->keys[i];
        if (k->account_id == 0) continue;
        const balance_value *e = &ledger->values[k->value];
        put_bytes(&w, &k->account_id, 8);
        put_bytes(&w, &ledger->currency_codes[k->currency_id], 8);
        put_bytes(&w, &e->available, 16);
        put_bytes(&w, &e->frozen, 16);
    }
    bal_idempotency_each(ledger->ids, put_id_record, &w);
    assert(w.id_records == id_count);
    bal_digest state = bal_ledger_hash(ledger);
    put_bytes(&w, &state, sizeof(state));
    put_checksum(&w);
    assert(w.length == size);
    *length_out = w.length;
    return BAL_LEDGER_OK;
}

typedef struct snapshot_reader {
    const uint8_t *buffer;
    uint64_t length;
    uint64_t offset;
} snapshot_reader;

static bool take(snapshot_reader *r, void *out, uint64_t length) {
    if (r->length - r->offset < length) return false;
    memcpy(out, r->buffer + r->offset, length);
    r->offset += length;
    return true;
}

static bal_ledger_status read_balances(bal_ledger *ledger, snapshot_reader *r, uint64_t count) {
    for (uint64_t i = 0; i < count; i++) {
        uint64_t account_id, code;
        bal_amount available, frozen;
        if (!take(r, &account_id, 8) || !take(r, &code, 8) || !take(r, &available, 16) ||
            !take(r, &frozen, 16)) return BAL_LEDGER_SNAPSHOT_TRUNCATED;
        uint32_t currency_id = currency_find(ledger, code);
        if (account_id == 0 || currency_id == CURRENCY_NONE || available < 0 || frozen < 0 ||
            available > BAL_MONEY_MAX || frozen > BAL_MONEY_MAX) return BAL_LEDGER_SNAPSHOT_CORRUPT;
        if (slot_find(ledger, account_id, currency_id)->account_id != 0) return BAL_LEDGER_SNAPSHOT_CORRUPT;
        balance_value *e = entry_create(ledger, account_id, code);
        e->available = available;
        e->frozen = frozen;
    }
    return BAL_LEDGER_OK;
}

static bal_ledger_status read_id_records(bal_ledger *ledger, snapshot_reader *r, uint32_t count,
                                         uint64_t bytes) {
    if (r->length - r->offset < bytes) return BAL_LEDGER_SNAPSHOT_TRUNCATED;
    uint64_t end = r->offset + bytes;
    for (uint32_t i = 0; i < count; i++) {
        uint32_t length;
        if (end - r->offset < 4) return BAL_LEDGER_SNAPSHOT_CORRUPT;
        memcpy(&length, r->buffer + r->offset, 4);
        if (length > end - r->offset) return BAL_LEDGER_SNAPSHOT_CORRUPT;
        if (!bal_idempotency_insert_raw(ledger->ids, r->buffer + r->offset, length)) {
            return BAL_LEDGER_SNAPSHOT_CORRUPT;
        }
        r->offset += length;
    }
    return r->offset == end ? BAL_LEDGER_OK : BAL_LEDGER_SNAPSHOT_CORRUPT;
}

static bal_ledger_status snapshot_check_frame(const uint8_t *buffer, uint64_t length) {
    if (length < SNAPSHOT_HEADER_BYTES + SNAPSHOT_TRAILER_BYTES) return BAL_LEDGER_SNAPSHOT_TRUNCATED;
    if (memcmp(buffer, SNAPSHOT_MAGIC, 8) != 0) return BAL_LEDGER_SNAPSHOT_BAD_MAGIC;
    uint64_t sum[2];
    memcpy(sum, buffer + length - 16, 16);
    if (sum[0] != bal_hash_bytes(buffer, length - 16, BAL_HASH_P0) ||
        sum[1] != bal_hash_bytes(buffer, length - 16, BAL_HASH_P3)) return BAL_LEDGER_SNAPSHOT_BAD_CHECKSUM;
    uint32_t version;
    memcpy(&version, buffer + 8, 4);
    if (version != SNAPSHOT_VERSION) return BAL_LEDGER_SNAPSHOT_BAD_VERSION;
    return BAL_LEDGER_OK;
}

bal_ledger_status bal_ledger_snapshot_decode(bal_ledger *ledger, const uint8_t *buffer, uint64_t length) {
    assert(ledger != NULL && buffer != NULL);
    if (ledger->sequence != 0 || ledger->balance_count != 0 || ledger->currency_count != 0 ||
        bal_idempotency_count(ledger->ids) != 0) return BAL_LEDGER_NOT_EMPTY;
    bal_ledger_status status = snapshot_check_frame(buffer, length);
    if (status != BAL_LEDGER_OK) return status;
    snapshot_reader r = {buffer, length - SNAPSHOT_TRAILER_BYTES, 12};
    uint32_t flags, currency_count, id_count;
    uint64_t sequence, balance_count, id_bytes;
    take(&r, &flags, 4);
    take(&r, &sequence, 8);
    take(&r, &balance_count, 8);
    take(&r, &currency_count, 4);
    take(&r, &id_count, 4);
    take(&r, &id_bytes, 8);
    if (currency_count > BAL_CURRENCIES_MAX) return BAL_LEDGER_SNAPSHOT_CORRUPT;
    if (balance_count > ledger->balance_capacity) return BAL_LEDGER_SNAPSHOT_TOO_LARGE;
    for (uint32_t i = 0; i < currency_count; i++) {
        uint64_t code;
        if (!take(&r, &code, 8)) return BAL_LEDGER_SNAPSHOT_TRUNCATED;
        if (!bal_currency_valid((bal_currency){code}) || currency_find(ledger, code) != CURRENCY_NONE) {
            return BAL_LEDGER_SNAPSHOT_CORRUPT;
        }
        currency_intern(ledger, code);
    }
    status = read_balances(ledger, &r, balance_count);
    if (status == BAL_LEDGER_OK) status = read_id_records(ledger, &r, id_count, id_bytes);
    if (status != BAL_LEDGER_OK) return status;
    if (r.offset != r.length) return BAL_LEDGER_SNAPSHOT_CORRUPT;
    ledger->sequence = sequence;
    ledger->forgetful = (flags & SNAPSHOT_FLAG_FORGETFUL) != 0;
    bal_digest expected;
    memcpy(&expected, buffer + length - SNAPSHOT_TRAILER_BYTES, 16);
    if (!bal_digest_equal(expected, bal_ledger_hash(ledger))) return BAL_LEDGER_SNAPSHOT_CORRUPT;
    return BAL_LEDGER_OK;
}
