/*
 * bal_types.h -- the core's vocabulary: currencies, operations, commands, results, outcomes.
 *
 * A command is one validated request (the boundary decoder builds it; the ledger applies
 * it). An outcome is what applying it produced: the result code, the duplicate flag, the
 * command's sequence number, and every touched balance before and after. Commands and
 * outcomes are plain fixed-size structs: no pointers, no allocation, safe to copy.
 */
#ifndef BAL_TYPES_H
#define BAL_TYPES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bal_limits.h"
#include "bal_money.h"

/* A currency code packed into an integer: up to 10 characters of A-Z 0-9 in base 37,
 * first character most significant, so comparing codes compares the texts. 0 is "none". */
typedef struct bal_currency {
    uint64_t code;
} bal_currency;

/* Operation types. The first five values are the legacy numeric codes of the seed API. */
typedef enum bal_op {
    BAL_OP_DEPOSIT = 0,
    BAL_OP_WITHDRAW = 1,
    BAL_OP_FREEZE = 2,
    BAL_OP_UNFREEZE = 3,
    BAL_OP_TRANSFER = 4,
    BAL_OP_DEDUCT_FROZEN = 5,
    BAL_OP_EVENT = 6,
} bal_op;
#define BAL_OP_COUNT 7

/* Business outcomes, in order of how bad they are for the caller. Stable names. */
typedef enum bal_result {
    BAL_RESULT_OK = 0,
    BAL_RESULT_INSUFFICIENT_AVAILABLE,
    BAL_RESULT_INSUFFICIENT_FROZEN,
    BAL_RESULT_OVERFLOW,
    BAL_RESULT_CONFLICT,
    /* The shard's balance table (or currency table) is full: the command is processed and
     * consumes its id, like any rejection, so that replaying the log gives the same answer. */
    BAL_RESULT_CAPACITY_EXCEEDED,
} bal_result;
#define BAL_RESULT_COUNT 6

typedef struct bal_leg {
    uint64_t account_id;
    bal_currency currency;
    bal_amount available_delta;
    bal_amount frozen_delta;
} bal_leg;

typedef struct bal_command {
    bal_amount amount;          /* > 0 for typed operations; 0 for EVENT */
    uint64_t account_id;        /* > 0; the first leg's account for EVENT */
    uint64_t to_account_id;     /* TRANSFER only; else 0 */
    bal_currency currency;      /* typed operations; EVENT: the first leg's */
    int64_t time_ms;            /* Unix milliseconds, stamped when the request arrived */
    uint8_t type;               /* bal_op */
    uint8_t transaction_id_length; /* 0 only for internal commands that are never retried */
    uint8_t leg_count;          /* EVENT only: 1..BAL_EVENT_LEGS_MAX */
    uint8_t has_memo;
    uint16_t memo_length;
    /* Set only for a command that spans shards (see docs/embedded.md): the legs that this
     * shard applies (bit i = leg i; 0 = all legs) and the result decided by the
     * coordinator (0 = decide here, else 1 + bal_result). Not part of the content. */
    uint16_t leg_mask;
    uint8_t decided;
    char transaction_id[BAL_TRANSACTION_ID_LENGTH_MAX];
    char memo[BAL_MEMO_LENGTH_MAX];
    bal_leg legs[BAL_EVENT_LEGS_MAX];
} bal_command;

/* One touched balance, before and after the command. */
typedef struct bal_change {
    uint64_t account_id;
    bal_currency currency;
    bal_amount available_before;
    bal_amount available_after;
    bal_amount frozen_before;
    bal_amount frozen_after;
} bal_change;

/* What applying a command gave. Its balances are change_count entries of the batch's
 * changes array from first_change on: outcomes stay small and changes dense, which is
 * what keeps apply's stores in cache. */
typedef struct bal_outcome {
    uint64_t sequence;          /* the command's sequence in its shard; a duplicate's is the original's */
    uint32_t first_change;      /* index into the changes array passed to apply */
    uint8_t result;             /* bal_result */
    bool duplicate;
    uint8_t change_count;       /* 0 for conflict */
} bal_outcome;

/* 128 bits identifying a state or a request's content. */
typedef struct bal_digest {
    uint64_t low;
    uint64_t high;
} bal_digest;

static inline bool bal_digest_equal(bal_digest a, bal_digest b) {
    return a.low == b.low && a.high == b.high;
}

const char *bal_op_name(bal_op op);
/* Parses an operation name ("DEPOSIT"...); false if unknown. */
bool bal_op_from_name(const char *text, size_t length, bal_op *op_out);
const char *bal_result_name(bal_result result);

/* Validates and packs a currency text (1..10 of A-Z 0-9). */
bool bal_currency_parse(const char *text, size_t length, bal_currency *currency_out);
/* True if code is the packed form of a valid currency text (as bal_currency_parse makes). */
bool bal_currency_valid(bal_currency currency);
/* Writes the text of a currency (buffer of BAL_CURRENCY_LENGTH_MAX + 1); returns its length. */
size_t bal_currency_format(bal_currency currency, char *buffer);

/* Validates a transaction id (1..64 of A-Z a-z 0-9 . _ : -). */
bool bal_transaction_id_valid(const char *text, size_t length);

/* The digest of a command's normalised content (type, accounts, currency, amounts, legs,
 * memo): equal digests mean "the same request" for idempotency. Time is excluded. */
bal_digest bal_command_digest(const bal_command *command);
/* The same digest by the general path alone (every field into a buffer, then hashed): for
 * tests that check the fast path for typed commands against it. */
bal_digest bal_command_digest_general(const bal_command *command);

/* A typed operation's first leg as the signs of its amount on available and on frozen:
 * DEPOSIT (+, 0), WITHDRAW (-, 0), FREEZE (-, +), UNFREEZE (+, -), DEDUCT_FROZEN (0, -),
 * TRANSFER (-, 0) on the source (its second leg is (+, 0) on the target). */
typedef struct bal_op_signs {
    int8_t available;
    int8_t frozen;
} bal_op_signs;

static inline bal_op_signs bal_op_leg_signs(bal_op op) {
    switch (op) {
    case BAL_OP_DEPOSIT: return (bal_op_signs){1, 0};
    case BAL_OP_WITHDRAW: return (bal_op_signs){-1, 0};
    case BAL_OP_FREEZE: return (bal_op_signs){-1, 1};
    case BAL_OP_UNFREEZE: return (bal_op_signs){1, -1};
    case BAL_OP_DEDUCT_FROZEN: return (bal_op_signs){0, -1};
    case BAL_OP_TRANSFER: return (bal_op_signs){-1, 0};
    case BAL_OP_EVENT: break; /* its legs say it */
    }
    return (bal_op_signs){0, 0};
}

/* amount times a sign of bal_op_leg_signs. */
static inline bal_amount bal_amount_signed(bal_amount amount, int8_t sign) {
    return sign > 0 ? amount : sign < 0 ? -amount : 0;
}

/* Expresses a command as legs (all of them, whatever leg_mask says): DEPOSIT is
 * +available, FREEZE -available +frozen, TRANSFER -available on the source and
 * +available on the target, ... Returns the leg count. */
unsigned bal_command_legs(const bal_command *command, bal_leg *legs_out);

static inline unsigned bal_command_leg_total(const bal_command *command) {
    return command->type == BAL_OP_EVENT ? command->leg_count : command->type == BAL_OP_TRANSFER ? 2 : 1;
}

static inline bool bal_command_has_leg(const bal_command *command, unsigned leg) {
    return command->leg_mask == 0 || (command->leg_mask >> leg) & 1u;
}

/* How many balances a command touches here (its changes in an outcome, conflicts aside). */
static inline unsigned bal_command_balance_count(const bal_command *command) {
    unsigned total = bal_command_leg_total(command);
    return command->leg_mask == 0 ? total : (unsigned)__builtin_popcount(command->leg_mask & ((1u << total) - 1));
}

/* The binary form of a command in the write-ahead log: versioned, little-endian, exact.
 * Decoding checks every field as strictly as bal_command_valid and the decoder do. */
#define BAL_COMMAND_ENCODED_MAX (72 + BAL_TRANSACTION_ID_LENGTH_MAX + BAL_MEMO_LENGTH_MAX + \
                                 BAL_EVENT_LEGS_MAX * 48)
size_t bal_command_encode(const bal_command *command, uint8_t *buffer);
bool bal_command_decode(const uint8_t *buffer, size_t length, bal_command *command_out);

/* Checks the invariants that the decoder establishes (types, ranges, leg rules). The
 * ledger asserts these rules on every command it stages (through the two functions below:
 * without the currency spelling, and inline for typed commands). */
bool bal_command_valid(const bal_command *command);
/* The same checks except the spelling of currency codes (bal_currency_valid), which costs
 * a few divisions per code: for the ledger, which checks a code only when it has not
 * interned it already (every interned code was checked when it was interned). */
bool bal_command_valid_except_currencies(const bal_command *command);

/* The whole of bal_command_valid_except_currencies for a typed (non-EVENT) command, inline:
 * the ledger asserts it for every command it stages, and out of line that assertion cost
 * about a sixth of a typed command's instructions. False for an EVENT. */
static inline bool bal_command_typed_valid_except_currency(const bal_command *command) {
    unsigned type = command->type, total = type == BAL_OP_TRANSFER ? 2u : 1u;
    bool coordination = command->decided <= BAL_RESULT_COUNT && command->decided != 1 + BAL_RESULT_CONFLICT &&
                        (command->leg_mask >> total) == 0;
    bool sizes = command->transaction_id_length <= BAL_TRANSACTION_ID_LENGTH_MAX &&
                 command->memo_length <= BAL_MEMO_LENGTH_MAX && (command->memo_length == 0 || command->has_memo) &&
                 command->leg_count == 0;
    bool fields = command->account_id != 0 && command->amount > 0 && command->amount <= BAL_MONEY_MAX &&
                  (type == BAL_OP_TRANSFER ? command->to_account_id != 0 && command->to_account_id != command->account_id
                                           : command->to_account_id == 0);
    return type < BAL_OP_EVENT && coordination && sizes && fields;
}

#endif
