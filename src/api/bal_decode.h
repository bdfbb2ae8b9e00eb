/*
 * bal_decode.h -- untrusted JSON requests to validated commands.
 *
 * The boundary between the wire and the core: every field is checked against SPEC and the
 * limits, and each failure has a stable error code (the `error` of the HTTP 400 body) and
 * a message that says what is wrong. A request that fails decoding is not processed and
 * does not consume its transaction id.
 *
 * Rules beyond SPEC's letter, chosen to be strict and unsurprising:
 * - unknown fields are refused (`unknown_field`), so that a misspelt field never silently
 *   drops a constraint; a field that does not belong to the type is refused with that
 *   field's own code (e.g. `to_account_id` on a DEPOSIT is `invalid_account`);
 * - a missing field gets its own field's code ("amount is required" is `invalid_amount`);
 * - duplicate keys are `invalid_json`;
 * - `account_id` may be a JSON integer or a string of digits, without leading zeros;
 * - `type` is a name ("DEPOSIT") or a legacy number 0..4;
 * - amounts must be strings; an EVENT leg's missing delta counts as "0"; two legs on the
 *   same (account, currency) are `invalid_legs`; `memo` may be null (no memo) and may not
 *   contain a NUL character.
 */
#ifndef BAL_DECODE_H
#define BAL_DECODE_H

#include <stddef.h>
#include <stdint.h>

#include "bal_json.h"
#include "bal_types.h"

/* Tokens needed for the largest valid body: 8192 EVENTs of 16 legs need about 1.3M. */
#define BAL_DECODE_TOKENS_MAX (1u << 21)
#define BAL_DECODE_MESSAGE_MAX 160

typedef enum bal_decode_error {
    BAL_DECODE_OK = 0,
    BAL_DECODE_INVALID_JSON,
    BAL_DECODE_INVALID_TRANSACTION_ID,
    BAL_DECODE_INVALID_TYPE,
    BAL_DECODE_INVALID_ACCOUNT,
    BAL_DECODE_INVALID_CURRENCY,
    BAL_DECODE_INVALID_AMOUNT,
    BAL_DECODE_INVALID_MEMO,
    BAL_DECODE_INVALID_LEGS,
    BAL_DECODE_TOO_MANY_LEGS,
    BAL_DECODE_UNKNOWN_FIELD,
    BAL_DECODE_INVALID_BATCH,
    BAL_DECODE_BATCH_TOO_LARGE,
} bal_decode_error;
#define BAL_DECODE_ERROR_COUNT 13

typedef struct bal_decode_diagnostic {
    bal_decode_error error;
    char message[BAL_DECODE_MESSAGE_MAX];
    /* The request's transaction_id when it could be read (for batch item errors). */
    char transaction_id[BAL_TRANSACTION_ID_LENGTH_MAX + 1];
} bal_decode_diagnostic;

/* The stable code string of an error, e.g. "invalid_amount". */
const char *bal_decode_error_code(bal_decode_error error);

/* Decodes a single-transaction body. tokens: scratch of token_max entries. */
bal_decode_error bal_decode_transaction(const char *body, size_t length, bal_json_token *tokens,
                                        uint32_t token_max, int64_t time_ms,
                                        bal_command *command_out, bal_decode_diagnostic *diagnostic);

/* Decodes one transaction object (token at index) of an already tokenized body. */
bal_decode_error bal_decode_object(const char *body, const bal_json_token *tokens, uint32_t index,
                                   int64_t time_ms, bal_command *command_out,
                                   bal_decode_diagnostic *diagnostic);

/* Tokenizes a batch body {"transactions": [...]}; on success gives the index of the first
 * item's token and the item count (<= BAL_BATCH_ITEMS_MAX). Walk items with tokens[i].next. */
bal_decode_error bal_decode_batch(const char *body, size_t length, bal_json_token *tokens,
                                  uint32_t token_max, uint32_t *first_item_out, uint32_t *count_out,
                                  bal_decode_diagnostic *diagnostic);

/* Parses an account id in text (digits, 1..2^64-1, no leading zeros). For URL paths too. */
bool bal_decode_account_id(const char *text, size_t length, uint64_t *account_out);

#endif
