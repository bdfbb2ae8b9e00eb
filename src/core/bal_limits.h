/*
 * bal_limits.h -- every bound of the core in one place.
 *
 * Each limit is checked where data enters (the decoder, the ledger's configuration) and
 * asserted where it is relied upon. The relations between limits are static assertions.
 */
#ifndef BAL_LIMITS_H
#define BAL_LIMITS_H

/* Money: DECIMAL(36,18). 18 integer digits and 18 fractional digits. */
#define BAL_MONEY_SCALE_DIGITS 18
#define BAL_MONEY_INTEGER_DIGITS_MAX 18
/* Longest text of an amount: sign + 18 digits + '.' + 18 digits. */
#define BAL_MONEY_TEXT_MAX 38

/* transaction_id: 1 to 64 characters of A-Z a-z 0-9 . _ : - */
#define BAL_TRANSACTION_ID_LENGTH_MAX 64
/* currency: 1 to 10 characters of A-Z 0-9 */
#define BAL_CURRENCY_LENGTH_MAX 10
/* memo: at most 256 bytes, kept in the journal. */
#define BAL_MEMO_LENGTH_MAX 256
/* EVENT: 1 to 16 legs. */
#define BAL_EVENT_LEGS_MAX 16
/* A command touches at most this many balances (EVENT legs; TRANSFER touches 2). */
#define BAL_COMMAND_BALANCES_MAX BAL_EVENT_LEGS_MAX
/* POST /v1/transactions/batch: at most 8192 items. */
#define BAL_BATCH_ITEMS_MAX 8192
/* Request bodies up to 32 MiB (a full batch with memos and legs fits). */
#define BAL_BODY_BYTES_MAX (32u * 1024u * 1024u)

/* Ledger: interned currencies per shard; ids fit the balance entry's 32-bit field. */
#define BAL_CURRENCIES_MAX 4096
/* Ledger: balances per shard (configured capacity may be lower). */
#define BAL_BALANCES_MAX (1ull << 30)
/* Idempotency memory: recent ids per shard (configured count may be lower). */
#define BAL_IDEMPOTENCY_COUNT_MAX (1u << 26)

_Static_assert(BAL_COMMAND_BALANCES_MAX >= 2, "a TRANSFER touches two balances");
_Static_assert(BAL_MONEY_TEXT_MAX == 1 + BAL_MONEY_INTEGER_DIGITS_MAX + 1 + BAL_MONEY_SCALE_DIGITS,
               "money text bound follows from its digits");
_Static_assert(BAL_TRANSACTION_ID_LENGTH_MAX < 256, "id length fits a byte");
_Static_assert(BAL_EVENT_LEGS_MAX < 256, "leg count fits a byte");
_Static_assert(BAL_CURRENCIES_MAX <= 65535, "currency ids fit 16 bits in encodings");

#endif
